//! The clearing algorithm of `docs/AUCTION.md`: validate, sort, walk the price
//! levels, share the marginal levels pro rata, pair fills into trades.
//!
//! For a million orders the work is a few passes over memory, and each pass
//! counts: the orders are read to validate them and to build the sort keys
//! and rewritten in place into the fills, the keys take 16 bytes, and each
//! order's fill is computed where it is needed rather than stored and
//! scattered back. [`clear`] is generic, so it is compiled in the caller's
//! crate, where this crate's non-generic functions are inlined only when
//! marked `#[inline]`: those called once per order or key are.

use crate::{ClearError, Clearing, Fill, Mechanism, Order, Params, Side, Trade, radix};

/// Clears one book.
///
/// The result depends only on the set of orders and `params`, never on the
/// order of `orders`. Takes the orders by value so that, for large books, the
/// fills are written into the input's allocation.
pub fn clear<Id: Ord>(mut orders: Vec<Order<Id>>, params: &Params) -> Result<Clearing<Id>, ClearError> {
    let summary = validate(&orders, params)?;
    let fee = params.network_fee_micro_per_kwh;
    let packing = Packing::new(orders.len(), summary.max_energy_wh);

    // Canonical order first: from here on an order's position is its rank by id,
    // so sorting (price, position) pairs sorts by price and then by id. Orders
    // that come in strictly ascending id order, as the ledger passes them, are
    // sorted and unique already, which building their keys checks in passing.
    let ascending = |previous: &Id, next: &Id| previous < next;
    let (mut bids, mut asks) = match build_keys(&orders, fee, &summary, packing, ascending) {
        Some(keys) => keys,
        None => {
            orders.sort_unstable_by(|a, b| a.id.cmp(&b.id));
            // Sorted ids are unique when neighbours differ, which an equality
            // test tells more cheaply than an ordering one.
            let differ = |previous: &Id, next: &Id| previous != next;
            build_keys(&orders, fee, &summary, packing, differ).ok_or(ClearError::DuplicateId)?
        }
    };
    let mut scratch = Vec::with_capacity(bids.keys.len().max(asks.keys.len()));
    radix::sort_by_price_rank(&mut bids.keys, &mut scratch, bids.ranks.varying());
    radix::sort_by_price_rank(&mut asks.keys, &mut scratch, asks.ranks.varying());
    let (bids, asks) = (bids.keys, asks.keys);
    drop(scratch);
    let bid_price = |price_rank: u64| u64::MAX - price_rank;

    let walk = walk_levels(&bids, &asks, packing);
    let clearing_price = match (params.mechanism, &walk) {
        (Mechanism::Uniform, Some(walk)) => {
            // Every price in [low, high] clears the market (docs/AUCTION.md §3).
            let bid_traded = bid_price(walk.bid_marginal.price_rank);
            let ask_traded = walk.ask_marginal.price_rank;
            let low = ask_traded.max(walk.bid_untraded.map_or(0, |key| bid_price(bids[key].price_rank)));
            let high = bid_traded.min(walk.ask_untraded.map_or(u64::MAX, |key| asks[key].price_rank));
            assert!(low <= high, "the walk stops before bid and ask levels cross");
            let offset = mul_div_floor(high - low, u64::from(params.k_thousandths), 1000);
            Some(low + offset)
        }
        _ => None,
    };

    let mut trades = Vec::new();
    if let Some(walk) = &walk {
        let filled_bids = || filled(&bids, walk.bid_marginal, packing);
        let filled_asks = || filled(&asks, walk.ask_marginal, packing);
        // Count the trades first so that their vector is allocated once, exactly.
        // (Reserving a bound and shrinking the vector afterwards saves this
        // pass, but then the size freed differs from the size asked for next
        // time, and in the benchmarks glibc mapped fresh pages for the trades
        // on every call.)
        let mut trade_count = 0;
        pair(filled_bids(), filled_asks(), |_, _, _| trade_count += 1);
        trades.reserve_exact(trade_count);
        pair(filled_bids(), filled_asks(), |bid, ask, energy_wh| {
            // A key's position is its order's rank by id: its index in the fills.
            trades.push(Trade {
                buy: bid.position,
                sell: ask.position,
                energy_wh,
                price_micro_per_kwh: clearing_price.unwrap_or_else(|| bid_price(bid.price_rank)),
            });
        });
    }
    drop((bids, asks));

    // Each order's fill follows from its price and energy alone, given the
    // marginal levels; the marginal levels' leftover Wh go in ascending id
    // order, which is the order of this pass.
    let mut side_fills = walk.map(|walk| [Fills::new(walk.bid_marginal), Fills::new(walk.ask_marginal)]);
    // `into_iter().map()` collects in place: the fills reuse the orders'
    // allocation, which keeps peak memory near the input's size.
    let fills = orders
        .into_iter()
        .map(|order| {
            let price_rank = match order.side {
                Side::Buy => bid_rank(order.price_micro_per_kwh, fee),
                Side::Sell => Some(order.price_micro_per_kwh),
            };
            let filled_wh = match (&mut side_fills, price_rank) {
                (Some(side_fills), Some(price_rank)) => {
                    side_fills[order.side as usize].fill(price_rank, order.energy_wh)
                }
                _ => 0,
            };
            Fill { id: order.id, side: order.side, filled_wh }
        })
        .collect();
    for fills in side_fills.iter().flatten() {
        fills.assert_done();
    }
    Ok(Clearing {
        mechanism: params.mechanism,
        clearing_price_micro_per_kwh: clearing_price,
        volume_wh: walk.map_or(0, |walk| walk.volume_wh),
        fills,
        trades,
    })
}

/// A bid's price rank: bids sort by descending effective price, so the rank is
/// its complement. `None` for a bid that cannot pay the fee.
#[inline]
fn bid_rank(price_micro_per_kwh: u64, fee: u64) -> Option<u64> {
    price_micro_per_kwh.checked_sub(fee).map(|effective| u64::MAX - effective)
}

/// One side's keys, and which bits of their price ranks differ.
struct SideKeys {
    keys: Vec<Key>,
    ranks: RankBits,
}

impl SideKeys {
    fn with_capacity(capacity: usize) -> Self {
        SideKeys { keys: Vec::with_capacity(capacity), ranks: RankBits::default() }
    }

    #[inline]
    fn push(&mut self, price_rank: u64, energy_position: u64) {
        self.ranks.add(price_rank);
        self.keys.push(Key { price_rank, energy_position });
    }
}

/// Each side's keys, or `None` as soon as two neighbouring ids fail `in_order`.
/// Sized exactly: growing by doubling would copy and page-fault them anew.
fn build_keys<Id: Ord>(
    orders: &[Order<Id>],
    fee: u64,
    summary: &Summary,
    packing: Packing,
    in_order: impl Fn(&Id, &Id) -> bool,
) -> Option<(SideKeys, SideKeys)> {
    let mut bids = SideKeys::with_capacity(summary.bid_keys);
    let mut asks = SideKeys::with_capacity(summary.ask_keys);
    let mut previous: Option<&Id> = None;
    for (position, order) in orders.iter().enumerate() {
        if previous.is_some_and(|previous| !in_order(previous, &order.id)) {
            return None;
        }
        previous = Some(&order.id);
        let energy_position = packing.pack(position, order.energy_wh);
        match order.side {
            Side::Buy => {
                if let Some(price_rank) = bid_rank(order.price_micro_per_kwh, fee) {
                    bids.push(price_rank, energy_position);
                }
            }
            Side::Sell => asks.push(order.price_micro_per_kwh, energy_position),
        }
    }
    Some((bids, asks))
}

/// Which bits of a side's price ranks differ between keys: the radix sort
/// skips the others.
#[derive(Clone, Copy, Debug)]
struct RankBits {
    any: u64,
    all: u64,
}

impl Default for RankBits {
    fn default() -> Self {
        RankBits { any: 0, all: u64::MAX }
    }
}

impl RankBits {
    #[inline]
    fn add(&mut self, price_rank: u64) {
        self.any |= price_rank;
        self.all &= price_rank;
    }

    fn varying(self) -> u64 {
        self.any & !self.all
    }
}

/// Sort key of an order on its side of the book: price rank (ascending is
/// best first), then position in id order; with the order's energy, packed
/// with the position (see [`Packing`]) so that a key takes 16 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) price_rank: u64,
    pub(crate) energy_position: u64,
}

/// How a key packs its order's position and energy into one word:
/// `position × modulus + energy − 1`, where the modulus is at least the book's
/// largest energy. With the largest energy itself it always fits, since the
/// limits keep `orders × largest energy` within a `u64`; rounded up to a power
/// of two, as it is wherever that fits too (always, within the default
/// limits), it unpacks with a shift and a mask instead of a division.
#[derive(Clone, Copy, Debug)]
struct Packing {
    modulus: u64,
    /// `log2(modulus)` when the modulus is a power of two.
    shift: Option<u32>,
}

impl Packing {
    fn new(order_count: usize, max_energy_wh: u64) -> Self {
        let max_energy_wh = max_energy_wh.max(1);
        let shift = u64::BITS - (max_energy_wh - 1).leading_zeros();
        // The largest packed word is `order_count × modulus − 1`.
        let order_count = u128::try_from(order_count).expect("a usize fits a u128");
        if order_count << shift <= 1 << u64::BITS {
            Packing { modulus: 1 << shift, shift: Some(shift) }
        } else {
            Packing { modulus: max_energy_wh, shift: None }
        }
    }

    /// Packs a position below the order count and an energy from 1 Wh up to
    /// the largest energy the packing was made for.
    #[inline]
    fn pack(self, position: usize, energy_wh: u64) -> u64 {
        let position = u64::try_from(position).expect("a usize fits a u64");
        position * self.modulus + (energy_wh - 1)
    }

    #[inline]
    fn position(self, energy_position: u64) -> usize {
        let position = match self.shift {
            Some(shift) => energy_position >> shift,
            None => energy_position / self.modulus,
        };
        usize::try_from(position).expect("positions were usizes")
    }

    #[inline]
    fn energy_wh(self, energy_position: u64) -> u64 {
        1 + match self.shift {
            Some(_) => energy_position & (self.modulus - 1),
            None => energy_position % self.modulus,
        }
    }
}

/// The last level of a side that trades, and how its traded volume is shared.
#[derive(Clone, Copy, Debug)]
struct Marginal {
    price_rank: u64,
    /// The end of the level's keys.
    end: usize,
    level_energy_wh: u64,
    traded_wh: u64,
    /// What is left of `traded_wh` once every order has its share rounded down.
    leftover_wh: u64,
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

/// What the validation pass learns about a valid book.
#[derive(Clone, Copy, Debug)]
struct Summary {
    /// Keys of each side: every ask, and the bids that can pay the fee.
    bid_keys: usize,
    ask_keys: usize,
    max_energy_wh: u64,
}

fn validate<Id>(orders: &[Order<Id>], params: &Params) -> Result<Summary, ClearError> {
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
    let mut summary = Summary { bid_keys: 0, ask_keys: 0, max_energy_wh: 0 };
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
        // Without branches: sides come in no pattern, so branches on them
        // would be mispredicted half the time.
        let pays_fee = order.price_micro_per_kwh >= params.network_fee_micro_per_kwh;
        summary.bid_keys += usize::from((order.side == Side::Buy) & pays_fee);
        summary.ask_keys += usize::from(order.side == Side::Sell);
        summary.max_energy_wh = summary.max_energy_wh.max(order.energy_wh);
    }
    Ok(summary)
}

/// Iterates one side's price levels: runs of keys with the same price rank.
struct Levels<'a> {
    keys: &'a [Key],
    packing: Packing,
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
            energy_wh += self.packing.energy_wh(key.energy_position);
            end += 1;
        }
        self.next = end;
        Some(Level { price_rank, start, end, energy_wh })
    }
}

/// Matches the best bid level against the best ask level while they cross
/// (docs/AUCTION.md §2). Returns `None` when nothing trades.
fn walk_levels(bids: &[Key], asks: &[Key], packing: Packing) -> Option<Walk> {
    let mut bid_levels = Levels { keys: bids, packing, next: 0 };
    let mut ask_levels = Levels { keys: asks, packing, next: 0 };
    let mut bid = bid_levels.next();
    let mut ask = ask_levels.next();
    let mut bid_left_wh = bid.map_or(0, |level| level.energy_wh);
    let mut ask_left_wh = ask.map_or(0, |level| level.energy_wh);
    let mut volume_wh = 0;
    let mut last: Option<(Level, u64, Level, u64)> = None;

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
            bid_level,
            bid_level.energy_wh - bid_left_wh,
            ask_level,
            ask_level.energy_wh - ask_left_wh,
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

    let (bid_level, bid_traded_wh, ask_level, ask_traded_wh) = last?;
    Some(Walk {
        volume_wh,
        bid_marginal: marginal(bids, bid_level, bid_traded_wh, packing),
        ask_marginal: marginal(asks, ask_level, ask_traded_wh, packing),
        bid_untraded: bid.map(|level| level.start),
        ask_untraded: ask.map(|level| level.start),
    })
}

/// The marginal level `level` of a side whose keys are `keys`, trading
/// `traded_wh`.
fn marginal(keys: &[Key], level: Level, traded_wh: u64, packing: Packing) -> Marginal {
    let mut marginal = Marginal {
        price_rank: level.price_rank,
        end: level.end,
        level_energy_wh: level.energy_wh,
        traded_wh,
        leftover_wh: 0,
    };
    let level_keys = &keys[level.start..level.end];
    let shared_wh: u64 =
        level_keys.iter().map(|key| marginal.share(packing.energy_wh(key.energy_position)).0).sum();
    marginal.leftover_wh = traded_wh - shared_wh;
    marginal
}

impl Marginal {
    /// An order's pro rata share of the traded volume, rounded down, and
    /// whether it was rounded down.
    fn share(&self, energy_wh: u64) -> (u64, bool) {
        let exact = u128::from(self.traded_wh) * u128::from(energy_wh);
        let level_energy = u128::from(self.level_energy_wh);
        let share =
            u64::try_from(exact / level_energy).expect("a share is at most the level's traded volume");
        (share, exact % level_energy != 0)
    }
}

/// The fills of one side (docs/AUCTION.md §4): every level before the marginal
/// one fills completely, levels after it do not trade, and the marginal level
/// shares its traded volume pro rata by energy, rounded down; the Wh left over
/// go one each, in ascending id order, to the orders whose share was rounded
/// down. So `fill` must see the marginal level's orders in ascending id order,
/// as both the keys (within a level) and the orders are.
#[derive(Clone, Copy, Debug)]
struct Fills {
    marginal: Marginal,
    /// Leftover Wh not given out yet.
    leftover_wh: u64,
}

impl Fills {
    fn new(marginal: Marginal) -> Self {
        Fills { marginal, leftover_wh: marginal.leftover_wh }
    }

    #[inline]
    fn fill(&mut self, price_rank: u64, energy_wh: u64) -> u64 {
        if price_rank == self.marginal.price_rank {
            self.fill_marginal(energy_wh)
        } else {
            // Without a branch: in id order, better and worse orders come at
            // random, and mispredicted branches cost more than this product.
            energy_wh * u64::from(price_rank < self.marginal.price_rank)
        }
    }

    fn fill_marginal(&mut self, energy_wh: u64) -> u64 {
        let (share, rounded_down) = self.marginal.share(energy_wh);
        if rounded_down && self.leftover_wh > 0 {
            self.leftover_wh -= 1;
            share + 1
        } else {
            share
        }
    }

    fn assert_done(&self) {
        assert_eq!(self.leftover_wh, 0, "fewer Wh are left over than orders were rounded down");
    }
}

/// A key that trades, and how much.
#[derive(Clone, Copy, Debug)]
struct Filled {
    price_rank: u64,
    position: usize,
    filled_wh: u64,
}

/// The keys of one side that trade, with their fills, in (price, id) order:
/// the keys up to the end of the marginal level.
#[inline]
fn filled(keys: &[Key], marginal: Marginal, packing: Packing) -> impl Iterator<Item = Filled> {
    let mut fills = Fills::new(marginal);
    keys[..marginal.end].iter().filter_map(move |key| {
        let filled_wh = fills.fill(key.price_rank, packing.energy_wh(key.energy_position));
        (filled_wh > 0).then(|| Filled {
            price_rank: key.price_rank,
            position: packing.position(key.energy_position),
            filled_wh,
        })
    })
}

/// Pairs filled bids (best price first, then ascending id) with filled asks
/// (best price first, then ascending id) greedily (docs/AUCTION.md §5),
/// calling `trade(bid, ask, energy_wh)` for each pair in order.
fn pair(
    mut filled_bids: impl Iterator<Item = Filled>,
    mut filled_asks: impl Iterator<Item = Filled>,
    mut trade: impl FnMut(&Filled, &Filled, u64),
) {
    let mut bid = filled_bids.next();
    let mut ask = filled_asks.next();
    while let (Some(bid_now), Some(ask_now)) = (&mut bid, &mut ask) {
        let energy_wh = bid_now.filled_wh.min(ask_now.filled_wh);
        trade(bid_now, ask_now, energy_wh);
        bid_now.filled_wh -= energy_wh;
        ask_now.filled_wh -= energy_wh;
        if bid_now.filled_wh == 0 {
            bid = filled_bids.next();
        }
        if ask_now.filled_wh == 0 {
            ask = filled_asks.next();
        }
    }
    assert!(bid.is_none() && ask.is_none(), "buy and sell fills have equal sums");
}

/// `⌊value × numerator / denominator⌋` for `numerator ≤ denominator`, exactly.
pub(crate) fn mul_div_floor(value: u64, numerator: u64, denominator: u64) -> u64 {
    assert!(numerator <= denominator && denominator > 0);
    let quotient = u128::from(value) * u128::from(numerator) / u128::from(denominator);
    u64::try_from(quotient).expect("a fraction of at most one of a u64 fits a u64")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    #[test]
    fn packing_round_trips_at_the_extremes() {
        let cases = [
            // (orders, largest energy, whether it shifts)
            (0, 0, true),
            (1, 1, true),
            (1_000_000, 10_000, true),
            (Limits::MAX_ORDERS_DEFAULT, Limits::MAX_ENERGY_WH_DEFAULT, true),
            // 2 × 2⁶³ words: exactly a u64.
            (2, 1 << 63, true),
            // 3 × 2⁶³ words would not fit; 3 × (2⁶⁴ − 1) / 3 do.
            (3, u64::MAX / 3, false),
            (usize::MAX, 1, true),
        ];
        for (order_count, max_energy_wh, shifts) in cases {
            let packing = Packing::new(order_count, max_energy_wh);
            assert_eq!(packing.shift.is_some(), shifts, "{order_count} orders of up to {max_energy_wh} Wh");
            let last = order_count.saturating_sub(1);
            for position in [0, last / 2, last] {
                for energy_wh in [1, max_energy_wh / 2, max_energy_wh].into_iter().filter(|&e| e > 0) {
                    let packed = packing.pack(position, energy_wh);
                    assert_eq!((packing.position(packed), packing.energy_wh(packed)), (position, energy_wh));
                }
            }
        }
    }
}
