//! The clearing algorithm of `docs/AUCTION.md`: validate, sort, walk the price
//! levels, share the marginal levels pro rata, pair fills into trades.

use crate::{ClearError, Clearing, Fill, Mechanism, Order, Params, Side, Trade, radix};

/// Clears one book.
///
/// The result depends only on the set of orders and `params`, never on the
/// order of `orders`. Takes the orders by value so that, for large books, the
/// fills are written into the input's allocation.
pub fn clear<Id: Ord>(mut orders: Vec<Order<Id>>, params: &Params) -> Result<Clearing<Id>, ClearError> {
    validate(&orders, params)?;

    // Canonical order first: from here on an order's position is its rank by id,
    // so sorting (price, position) pairs sorts by price and then by id.
    orders.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    if orders.windows(2).any(|pair| pair[0].id == pair[1].id) {
        return Err(ClearError::DuplicateId);
    }

    // Each side's keys, built in id order and then sorted stably by price, so
    // that they are in (price, id) order. They carry the energy, so that the
    // walk, the shares and the pairing read memory in sequence.
    let fee = params.network_fee_micro_per_kwh;
    // Sized exactly: growing by doubling would copy and page-fault them anew.
    let bid_count = orders.iter().filter(|order| order.side == Side::Buy).count();
    let mut bids: Vec<Key> = Vec::with_capacity(bid_count);
    let mut asks: Vec<Key> = Vec::with_capacity(orders.len() - bid_count);
    for (position, order) in orders.iter().enumerate() {
        let key = |price_rank| Key { price_rank, energy_wh: order.energy_wh, position };
        match order.side {
            // Bids sort by descending effective price: store its complement.
            Side::Buy => {
                if let Some(effective) = order.price_micro_per_kwh.checked_sub(fee) {
                    bids.push(key(u64::MAX - effective));
                }
            }
            Side::Sell => asks.push(key(order.price_micro_per_kwh)),
        }
    }
    let mut scratch = Vec::new();
    radix::sort_by_price_rank(&mut bids, &mut scratch);
    radix::sort_by_price_rank(&mut asks, &mut scratch);
    drop(scratch);
    let bid_price = |key: &Key| u64::MAX - key.price_rank;
    let ask_price = |key: &Key| key.price_rank;

    // Fills parallel to each side's keys.
    let walk = walk_levels(&bids, &asks);
    let mut bid_fills_wh = vec![0_u64; bids.len()];
    let mut ask_fills_wh = vec![0_u64; asks.len()];
    if let Some(walk) = &walk {
        fill_side(&bids, walk.bid_marginal, &mut bid_fills_wh);
        fill_side(&asks, walk.ask_marginal, &mut ask_fills_wh);
    }

    let clearing_price = match (params.mechanism, &walk) {
        (Mechanism::Uniform, Some(walk)) => {
            // Every price in [low, high] clears the market (docs/AUCTION.md §3).
            let bid_traded = bid_price(&bids[walk.bid_marginal.start]);
            let ask_traded = ask_price(&asks[walk.ask_marginal.start]);
            let low = ask_traded.max(walk.bid_untraded.map_or(0, |key| bid_price(&bids[key])));
            let high = bid_traded.min(walk.ask_untraded.map_or(u64::MAX, |key| ask_price(&asks[key])));
            assert!(low <= high, "the walk stops before bid and ask levels cross");
            let offset = mul_div_floor(high - low, u64::from(params.k_thousandths), 1000);
            Some(low + offset)
        }
        _ => None,
    };

    // Count the trades first so that their vector is allocated once, exactly.
    let bid_side = (bids.as_slice(), bid_fills_wh.as_slice());
    let ask_side = (asks.as_slice(), ask_fills_wh.as_slice());
    let mut trade_count = 0;
    pair(bid_side, ask_side, |_, _, _| trade_count += 1);
    let mut trades = Vec::with_capacity(trade_count);
    pair(bid_side, ask_side, |bid, ask, energy_wh| {
        // A key's position is its order's rank by id: its index in the fills.
        trades.push(Trade {
            buy: bid.position,
            sell: ask.position,
            energy_wh,
            price_micro_per_kwh: clearing_price.unwrap_or_else(|| bid_price(bid)),
        });
    });

    let mut fills_wh = vec![0_u64; orders.len()];
    for (key, filled_wh) in bids.iter().zip(bid_fills_wh).chain(asks.iter().zip(ask_fills_wh)) {
        fills_wh[key.position] = filled_wh;
    }
    drop((bids, asks));
    let volume_wh = walk.map_or(0, |walk| walk.volume_wh);

    // `into_iter().enumerate().map()` collects in place: the fills reuse the
    // orders' allocation, which keeps peak memory near the input's size.
    let fills = orders
        .into_iter()
        .enumerate()
        .map(|(position, order)| Fill { id: order.id, side: order.side, filled_wh: fills_wh[position] })
        .collect();
    Ok(Clearing {
        mechanism: params.mechanism,
        clearing_price_micro_per_kwh: clearing_price,
        volume_wh,
        fills,
        trades,
    })
}

/// Sort key of an order on its side of the book: price rank (ascending is
/// best first), then position in id order; with the order's energy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) price_rank: u64,
    pub(crate) energy_wh: u64,
    pub(crate) position: usize,
}

/// A run of keys with one price, and how much of it trades.
#[derive(Clone, Copy, Debug)]
struct Marginal {
    start: usize,
    end: usize,
    traded_wh: u64,
}

/// What the walk over the price levels found. Exists only when something trades.
#[derive(Clone, Copy, Debug)]
struct Walk {
    volume_wh: u64,
    /// The last bid level that trades: every key before it fills completely.
    bid_marginal: Marginal,
    ask_marginal: Marginal,
    /// The first key of the best bid level with volume left, if any.
    bid_untraded: Option<usize>,
    ask_untraded: Option<usize>,
}

fn validate<Id>(orders: &[Order<Id>], params: &Params) -> Result<(), ClearError> {
    let limits = &params.limits;
    if params.k_thousandths > Params::K_THOUSANDTHS_MAX {
        return Err(ClearError::KOutOfRange { k_thousandths: params.k_thousandths });
    }
    if params.network_fee_micro_per_kwh > limits.max_price_micro_per_kwh {
        return Err(ClearError::FeeAboveMax {
            network_fee_micro_per_kwh: params.network_fee_micro_per_kwh,
            max_price_micro_per_kwh: limits.max_price_micro_per_kwh,
        });
    }
    // With this bound no sum of energies below can overflow.
    let worst_sum = u128::try_from(limits.max_orders)
        .unwrap_or(u128::MAX)
        .saturating_mul(u128::from(limits.max_energy_wh));
    if worst_sum > u128::from(u64::MAX) {
        return Err(ClearError::LimitsTooLarge {
            max_orders: limits.max_orders,
            max_energy_wh: limits.max_energy_wh,
        });
    }
    if orders.len() > limits.max_orders {
        return Err(ClearError::TooManyOrders { count: orders.len(), max_orders: limits.max_orders });
    }
    for (position, order) in orders.iter().enumerate() {
        if order.energy_wh == 0 {
            return Err(ClearError::ZeroEnergy { position });
        }
        if order.energy_wh > limits.max_energy_wh {
            return Err(ClearError::EnergyAboveMax {
                position,
                energy_wh: order.energy_wh,
                max_energy_wh: limits.max_energy_wh,
            });
        }
        if order.price_micro_per_kwh > limits.max_price_micro_per_kwh {
            return Err(ClearError::PriceAboveMax {
                position,
                price_micro_per_kwh: order.price_micro_per_kwh,
                max_price_micro_per_kwh: limits.max_price_micro_per_kwh,
            });
        }
    }
    Ok(())
}

/// Iterates one side's price levels: runs of keys with the same price rank.
struct Levels<'a> {
    keys: &'a [Key],
    next: usize,
}

#[derive(Clone, Copy, Debug)]
struct Level {
    price_rank: u64,
    start: usize,
    end: usize,
    energy_wh: u64,
}

impl Iterator for Levels<'_> {
    type Item = Level;

    fn next(&mut self) -> Option<Level> {
        let start = self.next;
        let price_rank = self.keys.get(start)?.price_rank;
        let mut energy_wh = 0;
        let mut end = start;
        while let Some(key) = self.keys.get(end).filter(|key| key.price_rank == price_rank) {
            energy_wh += key.energy_wh;
            end += 1;
        }
        self.next = end;
        Some(Level { price_rank, start, end, energy_wh })
    }
}

/// Matches the best bid level against the best ask level while they cross
/// (docs/AUCTION.md §2). Returns `None` when nothing trades.
fn walk_levels(bids: &[Key], asks: &[Key]) -> Option<Walk> {
    let mut bid_levels = Levels { keys: bids, next: 0 };
    let mut ask_levels = Levels { keys: asks, next: 0 };
    let mut bid = bid_levels.next();
    let mut ask = ask_levels.next();
    let mut bid_left_wh = bid.map_or(0, |level| level.energy_wh);
    let mut ask_left_wh = ask.map_or(0, |level| level.energy_wh);
    let mut volume_wh = 0;
    let mut last: Option<(Marginal, Marginal)> = None;

    while let (Some(bid_level), Some(ask_level)) = (bid, ask) {
        let bid_price = u64::MAX - bid_level.price_rank;
        if bid_price < ask_level.price_rank {
            break;
        }
        let traded_wh = bid_left_wh.min(ask_left_wh);
        volume_wh += traded_wh;
        bid_left_wh -= traded_wh;
        ask_left_wh -= traded_wh;
        last = Some((
            Marginal {
                start: bid_level.start,
                end: bid_level.end,
                traded_wh: bid_level.energy_wh - bid_left_wh,
            },
            Marginal {
                start: ask_level.start,
                end: ask_level.end,
                traded_wh: ask_level.energy_wh - ask_left_wh,
            },
        ));
        if bid_left_wh == 0 {
            bid = bid_levels.next();
            bid_left_wh = bid.map_or(0, |level| level.energy_wh);
        }
        if ask_left_wh == 0 {
            ask = ask_levels.next();
            ask_left_wh = ask.map_or(0, |level| level.energy_wh);
        }
    }

    let (bid_marginal, ask_marginal) = last?;
    Some(Walk {
        volume_wh,
        bid_marginal,
        ask_marginal,
        bid_untraded: bid.map(|level| level.start),
        ask_untraded: ask.map(|level| level.start),
    })
}

/// Writes the fills of one side, parallel to its keys: every level before the
/// marginal one fills completely; the marginal level shares its traded volume
/// pro rata by energy, rounded down, and the Wh left over go one each, in
/// ascending id order, to the orders whose share was rounded down
/// (docs/AUCTION.md §4).
fn fill_side(keys: &[Key], marginal: Marginal, fills_wh: &mut [u64]) {
    for (fill_wh, key) in fills_wh.iter_mut().zip(&keys[..marginal.start]) {
        *fill_wh = key.energy_wh;
    }
    let level = &keys[marginal.start..marginal.end];
    let level_fills_wh = &mut fills_wh[marginal.start..marginal.end];
    let level_energy_wh: u64 = level.iter().map(|key| key.energy_wh).sum();
    let mut shared_wh = 0;
    for (fill_wh, key) in level_fills_wh.iter_mut().zip(level) {
        *fill_wh = mul_div_floor(marginal.traded_wh, key.energy_wh, level_energy_wh);
        shared_wh += *fill_wh;
    }
    let mut leftover_wh = marginal.traded_wh - shared_wh;
    // Keys within a level are in ascending id order.
    for (fill_wh, key) in level_fills_wh.iter_mut().zip(level) {
        if leftover_wh == 0 {
            break;
        }
        let exact = u128::from(marginal.traded_wh) * u128::from(key.energy_wh);
        if exact % u128::from(level_energy_wh) != 0 {
            *fill_wh += 1;
            leftover_wh -= 1;
        }
    }
    assert_eq!(leftover_wh, 0, "fewer Wh are left over than orders were rounded down");
}

/// Pairs filled bids (best price first, then ascending id) with filled asks
/// (best price first, then ascending id) greedily (docs/AUCTION.md §5),
/// calling `trade(bid, ask, energy_wh)` for each pair in order. Each side is
/// its keys and the fills parallel to them.
fn pair(
    (bids, bid_fills_wh): (&[Key], &[u64]),
    (asks, ask_fills_wh): (&[Key], &[u64]),
    mut trade: impl FnMut(&Key, &Key, u64),
) {
    fn filled<'a>((key, &fill_wh): (&'a Key, &u64)) -> Option<(&'a Key, u64)> {
        (fill_wh > 0).then_some((key, fill_wh))
    }
    let mut filled_bids = bids.iter().zip(bid_fills_wh).filter_map(filled);
    let mut filled_asks = asks.iter().zip(ask_fills_wh).filter_map(filled);
    let mut bid = filled_bids.next();
    let mut ask = filled_asks.next();
    while let (Some((bid_key, bid_left_wh)), Some((ask_key, ask_left_wh))) = (&mut bid, &mut ask) {
        let energy_wh = (*bid_left_wh).min(*ask_left_wh);
        trade(bid_key, ask_key, energy_wh);
        *bid_left_wh -= energy_wh;
        *ask_left_wh -= energy_wh;
        if *bid_left_wh == 0 {
            bid = filled_bids.next();
        }
        if *ask_left_wh == 0 {
            ask = filled_asks.next();
        }
    }
    assert!(bid.is_none() && ask.is_none(), "buy and sell fills have equal sums");
}

/// `⌊value × numerator / denominator⌋` for `numerator ≤ denominator`, exactly.
fn mul_div_floor(value: u64, numerator: u64, denominator: u64) -> u64 {
    assert!(numerator <= denominator && denominator > 0);
    let quotient = u128::from(value) * u128::from(numerator) / u128::from(denominator);
    u64::try_from(quotient).expect("a fraction of at most one of a u64 fits a u64")
}
