//! Zonal clearing (docs/AUCTION.md §6): the same auction on a star of zones
//! around the community's bus, each zone's net export bounded. When the
//! plain clearing keeps every zone within its limits it is the result; when
//! it does not, the market splits: a congested zone gets its own price, at
//! which its net flow equals its limit, and the rest clear at one hub price.
//!
//! The split is a competitive equilibrium: every zone's net export is its
//! net supply at its price, clamped to its limits, and the hub price makes
//! the clamped net exports sum to zero. It maximises the gains from trade
//! under the limits (`tests/zonal.rs` checks that against a brute force).

use std::ops::Range;

use crate::auction::mul_div_floor;
use crate::{ClearError, Clearing, Fill, Mechanism, Order, Params, Side, Trade, clear};

/// At most this many zones.
pub const ZONES_MAX: usize = 1 << 16;

/// What a zone's feeder carries per interval: its net export (sold out of the
/// zone less bought into it) stays within `[-import_wh_max, export_wh_max]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ZoneLimits {
    pub import_wh_max: u64,
    pub export_wh_max: u64,
}

impl ZoneLimits {
    /// No limit at all.
    pub const OPEN: ZoneLimits = ZoneLimits { import_wh_max: u64::MAX, export_wh_max: u64::MAX };

    fn clamp(self, net_export_wh: i128) -> i128 {
        net_export_wh.clamp(-i128::from(self.import_wh_max), i128::from(self.export_wh_max))
    }

    fn holds(self, net_export_wh: i128) -> bool {
        self.clamp(net_export_wh) == net_export_wh
    }
}

/// An order and the zone (an index into the zone list) it is in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ZonalOrder<Id> {
    pub order: Order<Id>,
    pub zone: u32,
}

/// One zone's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ZoneClearing {
    /// The zone's uniform price: the community's unless the zone is
    /// congested. `None` under pay-as-bid and when nothing trades.
    pub price_micro_per_kwh: Option<u64>,
    /// Sold out of the zone less bought into it.
    pub net_export_wh: i64,
    pub limits: ZoneLimits,
    /// A limit binds: the zone's price differs from the community's.
    pub congested: bool,
}

/// The result of clearing a book of zones.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ZonalClearing<Id> {
    /// Fills, trades and volume as for one zone. `clearing_price` is the
    /// community's (hub) price; a trade's price is what its seller receives,
    /// its seller's zone's price under uniform pricing; the buyer pays its own
    /// zone's price plus the fee.
    pub clearing: Clearing<Id>,
    /// One per zone, in zone order.
    pub zones: Vec<ZoneClearing>,
}

/// Clears a book of orders in `zones` (docs/AUCTION.md §6). The result
/// depends only on the set of orders, the zone list and `params`.
pub fn clear_zonal<Id: Ord>(
    mut orders: Vec<ZonalOrder<Id>>,
    zones: &[ZoneLimits],
    params: &Params,
) -> Result<ZonalClearing<Id>, ClearError> {
    if zones.len() > ZONES_MAX {
        return Err(ClearError::TooManyZones { count: zones.len(), max_zones: ZONES_MAX });
    }
    // Every zone's net export must fit an i64.
    let limits = &params.limits;
    let worst_sum = u128::try_from(limits.max_orders)
        .unwrap_or(u128::MAX)
        .saturating_mul(u128::from(limits.max_energy_wh));
    if worst_sum > u128::from(i64::MAX.unsigned_abs()) {
        return Err(ClearError::LimitsTooLarge {
            max_orders: limits.max_orders,
            max_energy_wh: limits.max_energy_wh,
        });
    }
    // Ranks are packed into 32 bits (`zone_books`).
    if u32::try_from(orders.len()).is_err() {
        return Err(ClearError::TooManyOrders { count: orders.len(), max_orders: u32::MAX as usize });
    }
    if let Some(position) = orders.iter().position(|zonal| zonal.zone as usize >= zones.len()) {
        return Err(ClearError::UnknownZone { position, zone: orders[position].zone, zones: zones.len() });
    }
    // Canonical (id) order, which `clear` keeps: an order's rank by id is its
    // index in the fills. (Duplicate ids are `clear`'s to reject.)
    if orders.windows(2).any(|pair| pair[0].order.id >= pair[1].order.id) {
        orders.sort_unstable_by(|a, b| a.order.id.cmp(&b.order.id));
    }
    let book: Vec<Entry> = orders
        .iter()
        .map(|zonal| Entry {
            side: zonal.order.side,
            price_micro_per_kwh: zonal.order.price_micro_per_kwh,
            energy_wh: zonal.order.energy_wh,
            zone: zonal.zone,
        })
        .collect();
    let plain = clear(orders.into_iter().map(|zonal| zonal.order).collect(), params)?;

    let mut flows = vec![0_i128; zones.len()];
    for (fill, entry) in plain.fills.iter().zip(&book) {
        flows[entry.zone as usize] += signed(fill.side, fill.filled_wh);
    }
    if zones.iter().zip(&flows).all(|(limits, flow)| limits.holds(*flow)) {
        let zones = zones
            .iter()
            .zip(flows)
            .map(|(limits, flow)| ZoneClearing {
                price_micro_per_kwh: plain.clearing_price_micro_per_kwh,
                net_export_wh: wh(flow),
                limits: *limits,
                congested: false,
            })
            .collect();
        return Ok(ZonalClearing { clearing: plain, zones });
    }
    Ok(split(plain.fills, &book, zones, params))
}

/// What the split needs of an order, at its rank by id.
#[derive(Clone, Copy, Debug)]
struct Entry {
    side: Side,
    price_micro_per_kwh: u64,
    energy_wh: u64,
    zone: u32,
}

/// A price level of one side of one zone: its price (a bid's effective
/// price), energy and orders (`members[orders]`, ascending rank).
#[derive(Clone, Debug)]
struct Level {
    price: u64,
    energy_wh: u64,
    orders: Range<usize>,
}

/// One zone's book: asks by ascending price, bids by descending effective
/// price, with the energy of all levels before each (`…_before[i]`).
#[derive(Clone, Debug, Default)]
struct ZoneBook {
    asks: Vec<Level>,
    bids: Vec<Level>,
    asks_before: Vec<u64>,
    bids_before: Vec<u64>,
}

impl ZoneBook {
    /// Asks with price below `price`.
    fn supply_below(&self, price: u64) -> u64 {
        self.asks_before[self.asks.partition_point(|level| level.price < price)]
    }

    /// Asks with price at most `price`.
    fn supply_at(&self, price: u64) -> u64 {
        self.asks_before[self.asks.partition_point(|level| level.price <= price)]
    }

    /// Bids with effective price above `price`.
    fn demand_above(&self, price: u64) -> u64 {
        self.bids_before[self.bids.partition_point(|level| level.price > price)]
    }

    /// Bids with effective price at least `price`.
    fn demand_at(&self, price: u64) -> u64 {
        self.bids_before[self.bids.partition_point(|level| level.price >= price)]
    }

    /// The least net export the zone takes at `price` (orders priced exactly
    /// at it trade none on the ask side, all on the bid side).
    fn low(&self, price: u64) -> i128 {
        i128::from(self.supply_below(price)) - i128::from(self.demand_at(price))
    }

    /// The most net export the zone takes at `price`.
    fn high(&self, price: u64) -> i128 {
        i128::from(self.supply_at(price)) - i128::from(self.demand_above(price))
    }

    /// The prices `[L, H]` at which the zone takes `net_export_wh`: `L` the
    /// least with `high ≥ net`, `H` the greatest with `low ≤ net`.
    fn prices_for(&self, net_export_wh: i128, max_price: u64) -> (u64, u64) {
        let low = first_price(max_price, |price| self.high(price) >= net_export_wh);
        let high = last_price(max_price, |price| self.low(price) <= net_export_wh);
        (low, high)
    }
}

/// The least price in `0..=max_price` where the nondecreasing `reached`
/// holds (`max_price` when none does).
fn first_price(max_price: u64, reached: impl Fn(u64) -> bool) -> u64 {
    let (mut low, mut high) = (0, max_price);
    while low < high {
        let middle = low + (high - low) / 2;
        if reached(middle) { high = middle } else { low = middle + 1 }
    }
    low
}

/// The greatest price in `0..=max_price` where the nonincreasing `holds`
/// holds (0 when none does).
fn last_price(max_price: u64, holds: impl Fn(u64) -> bool) -> u64 {
    let (mut low, mut high) = (0, max_price);
    while low < high {
        let middle = low + (high - low).div_ceil(2);
        if holds(middle) { low = middle } else { high = middle - 1 }
    }
    low
}

/// Each zone's book, and the ranks of each level's orders.
fn zone_books(book: &[Entry], zone_count: usize, fee: u64) -> (Vec<ZoneBook>, Vec<usize>) {
    // Each order goes into its zone's bucket as a key (side, price rank,
    // rank) packed into a u128 as side · 2⁹⁶ + price rank · 2³² + rank: a
    // bid's price rank is the complement of its effective price, so
    // ascending is best first on both sides, asks before bids. Bids that
    // cannot pay the fee take no part. Each bucket is then sorted alone.
    let key = |rank: usize, entry: &Entry| -> Option<u128> {
        let (side, price_rank) = match entry.side {
            Side::Sell => (0, entry.price_micro_per_kwh),
            Side::Buy => (1, u64::MAX - entry.price_micro_per_kwh.checked_sub(fee)?),
        };
        let rank = u32::try_from(rank).expect("the order bound keeps ranks within a u32");
        Some((side << 96) | (u128::from(price_rank) << 32) | u128::from(rank))
    };
    let mut starts = vec![0_usize; zone_count + 1];
    for entry in book {
        starts[entry.zone as usize + 1] += 1;
    }
    for zone in 0..zone_count {
        starts[zone + 1] += starts[zone];
    }
    let mut ends = starts.clone();
    let mut packed = vec![0_u128; book.len()];
    for (rank, entry) in book.iter().enumerate() {
        if let Some(key) = key(rank, entry) {
            let end = &mut ends[entry.zone as usize];
            packed[*end] = key;
            *end += 1;
        }
    }
    let mut books = vec![ZoneBook::default(); zone_count];
    let mut members: Vec<usize> = Vec::with_capacity(book.len());
    for (zone, zone_book) in books.iter_mut().enumerate() {
        let keys = &mut packed[starts[zone]..ends[zone]];
        keys.sort_unstable();
        // A level: keys with the same side and price rank (the bits above the rank).
        for level in keys.chunk_by(|a, b| a >> 32 == b >> 32) {
            let first = level[0];
            let price_rank = u64::try_from((first >> 32) & u128::from(u64::MAX)).expect("masked to 64 bits");
            let start = members.len();
            let mut energy_wh = 0;
            for &key in level {
                let rank = usize::try_from(key & u128::from(u32::MAX)).expect("masked to 32 bits");
                energy_wh += book[rank].energy_wh;
                members.push(rank);
            }
            let (levels, price) = if first >> 96 == 0 {
                (&mut zone_book.asks, price_rank)
            } else {
                (&mut zone_book.bids, u64::MAX - price_rank)
            };
            levels.push(Level { price, energy_wh, orders: start..members.len() });
        }
    }
    for zone_book in &mut books {
        let prefix = |levels: &[Level]| {
            let mut before = Vec::with_capacity(levels.len() + 1);
            before.push(0);
            for level in levels {
                before.push(before.last().copied().unwrap_or(0) + level.energy_wh);
            }
            before
        };
        zone_book.asks_before = prefix(&zone_book.asks);
        zone_book.bids_before = prefix(&zone_book.bids);
    }
    (books, members)
}

/// The split (docs/AUCTION.md §6.2 to §6.5), given the plain clearing's
/// fills (for the ids) and the book by rank.
fn split<Id>(
    fills: Vec<Fill<Id>>,
    book: &[Entry],
    zones: &[ZoneLimits],
    params: &Params,
) -> ZonalClearing<Id> {
    let fee = params.network_fee_micro_per_kwh;
    let k = u64::from(params.k_thousandths);
    let (books, members) = zone_books(book, zones.len(), fee);
    // Prices are searched up to the book's highest (an ask's, or a bid's
    // effective price): above it nothing changes, and no zone's price may
    // go beyond every order's.
    let max_price = books
        .iter()
        .flat_map(|zone_book| {
            zone_book
                .asks
                .last()
                .map(|level| level.price)
                .into_iter()
                .chain(zone_book.bids.first().map(|level| level.price))
        })
        .max()
        .unwrap_or(0);
    let clamped = |price: u64, take: fn(&ZoneBook, u64) -> i128| -> i128 {
        books.iter().zip(zones).map(|(zone_book, limits)| limits.clamp(take(zone_book, price))).sum()
    };

    // §6.2 The hub price: where the zones' clamped net exports can sum to 0.
    let low = first_price(max_price, |price| clamped(price, ZoneBook::high) >= 0);
    let high = last_price(max_price, |price| clamped(price, ZoneBook::low) <= 0);
    assert!(low <= high, "the clamped net supply crosses zero between the two searches");
    let hub_price = low + mul_div_floor(high - low, k, 1000);

    // §6.3 Each zone's net export and price.
    let mut ranges: Vec<(i128, i128)> = books
        .iter()
        .zip(zones)
        .map(|(zone_book, limits)| {
            (limits.clamp(zone_book.low(hub_price)), limits.clamp(zone_book.high(hub_price)))
        })
        .collect();
    // Congested: even the least net export the zone takes at the hub price
    // is above its export limit, or the most below its import limit.
    let congested: Vec<bool> = books
        .iter()
        .zip(zones)
        .map(|(zone_book, limits)| {
            zone_book.low(hub_price) > i128::from(limits.export_wh_max)
                || zone_book.high(hub_price) < -i128::from(limits.import_wh_max)
        })
        .collect();
    let short: i128 = -ranges.iter().map(|range| range.0).sum::<i128>();
    let widths: Vec<u128> =
        ranges.iter().map(|(low, high)| u128::try_from(high - low).unwrap_or(0)).collect();
    let shares = pro_rata(u128::try_from(short).unwrap_or(0), &widths);
    for (range, share) in ranges.iter_mut().zip(shares) {
        range.0 += i128::try_from(share).unwrap_or(0);
    }
    let net_exports: Vec<i128> = ranges.iter().map(|range| range.0).collect();
    let prices: Vec<u64> = books
        .iter()
        .zip(&net_exports)
        .zip(&congested)
        .map(|((zone_book, net), congested)| {
            if *congested {
                let (low, high) = zone_book.prices_for(*net, max_price);
                low + mul_div_floor(high - low, k, 1000)
            } else {
                hub_price
            }
        })
        .collect();

    // §6.4 Fills: within each zone at its price, the levels at the price
    // trading what makes the zone's net export.
    let mut filled = vec![0_u64; book.len()];
    for ((zone_book, net), price) in books.iter().zip(&net_exports).zip(&prices) {
        fill_zone(zone_book, *net, *price, &members, book, &mut filled);
    }

    // §6.5 Trades: within each zone first, then across zones.
    let trades = pair_zones(&books, &members, &filled, book, &prices, params);
    let volume_wh =
        book.iter().zip(&filled).filter(|(entry, _)| entry.side == Side::Buy).map(|(_, fill)| fill).sum();
    let uniform = params.mechanism == Mechanism::Uniform && volume_wh > 0;
    let zones = zones
        .iter()
        .enumerate()
        .map(|(zone, limits)| ZoneClearing {
            price_micro_per_kwh: uniform.then_some(prices[zone]),
            net_export_wh: wh(net_exports[zone]),
            limits: *limits,
            congested: congested[zone],
        })
        .collect();
    let fills = fills.into_iter().zip(filled).map(|(fill, filled_wh)| Fill { filled_wh, ..fill }).collect();
    ZonalClearing {
        clearing: Clearing {
            mechanism: params.mechanism,
            clearing_price_micro_per_kwh: uniform.then_some(hub_price),
            volume_wh,
            fills,
            trades,
        },
        zones,
    }
}

/// A zone's fills at `price` making `net_export_wh`: asks below the price
/// and bids above it fill completely; of the levels exactly at it, the ask
/// level trades `x` and the bid level `y` with `x − y` what the net export
/// needs and `x` as large as can be, each shared pro rata.
fn fill_zone(
    zone_book: &ZoneBook,
    net_export_wh: i128,
    price: u64,
    members: &[usize],
    book: &[Entry],
    filled: &mut [u64],
) {
    let asks_below = zone_book.asks.partition_point(|level| level.price < price);
    let bids_above = zone_book.bids.partition_point(|level| level.price > price);
    for level in zone_book.asks[..asks_below].iter().chain(&zone_book.bids[..bids_above]) {
        for &rank in &members[level.orders.clone()] {
            filled[rank] = book[rank].energy_wh;
        }
    }
    let ask_level = zone_book.asks.get(asks_below).filter(|level| level.price == price);
    let bid_level = zone_book.bids.get(bids_above).filter(|level| level.price == price);
    let ask_wh = i128::from(ask_level.map_or(0, |level| level.energy_wh));
    let bid_wh = i128::from(bid_level.map_or(0, |level| level.energy_wh));
    // What the levels at the price must add to the net export.
    let needed =
        net_export_wh - i128::from(zone_book.supply_below(price)) + i128::from(zone_book.demand_above(price));
    assert!((-bid_wh..=ask_wh).contains(&needed), "the zone takes its net export at its price");
    let sold = ask_wh.min(bid_wh + needed);
    let bought = sold - needed;
    for (level, traded) in [(ask_level, sold), (bid_level, bought)] {
        if let Some(level) = level {
            let ranks = &members[level.orders.clone()];
            let energies: Vec<u128> = ranks.iter().map(|&rank| u128::from(book[rank].energy_wh)).collect();
            for (&rank, share) in ranks.iter().zip(pro_rata(u128::try_from(traded).unwrap_or(0), &energies)) {
                filled[rank] = u64::try_from(share).expect("a share is at most its order's energy");
            }
        }
    }
}

/// `total` shared by `weights` as §4 shares a level: each `⌊total × w / W⌋`,
/// then one more each, in order, to those rounded down, until `total` is
/// given out. `total ≤ W`.
fn pro_rata(total: u128, weights: &[u128]) -> Vec<u128> {
    let sum: u128 = weights.iter().sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let mut shares: Vec<u128> = weights.iter().map(|weight| total * weight / sum).collect();
    let mut leftover = total - shares.iter().sum::<u128>();
    for (share, weight) in shares.iter_mut().zip(weights) {
        if leftover > 0 && !(total * weight).is_multiple_of(sum) {
            *share += 1;
            leftover -= 1;
        }
    }
    shares
}

/// Pairs fills into trades (§6.5): in each zone, its filled bids (best first,
/// then by id) with its filled asks (likewise) while both last; then what
/// is left, the exporting zones' asks with the importing zones' bids, zones
/// in index order.
fn pair_zones(
    books: &[ZoneBook],
    members: &[usize],
    filled: &[u64],
    book: &[Entry],
    prices: &[u64],
    params: &Params,
) -> Vec<Trade> {
    let fee = params.network_fee_micro_per_kwh;
    let price_of = |buy: usize, sell: usize| match params.mechanism {
        Mechanism::Uniform => prices[book[sell].zone as usize],
        Mechanism::PayAsBid => book[buy].price_micro_per_kwh - fee,
    };
    let side = |levels: &[Level]| -> Vec<(usize, u64)> {
        levels
            .iter()
            .flat_map(|level| &members[level.orders.clone()])
            .filter(|&&rank| filled[rank] > 0)
            .map(|&rank| (rank, filled[rank]))
            .collect()
    };
    let mut trades = Vec::new();
    let mut exported: Vec<(usize, u64)> = Vec::new();
    let mut imported: Vec<(usize, u64)> = Vec::new();
    for zone_book in books {
        let (mut bids, mut asks) = (side(&zone_book.bids), side(&zone_book.asks));
        let (bids_left, asks_left) = pair_greedily(&mut bids, &mut asks, |buy, sell, energy_wh| {
            trades.push(Trade { buy, sell, energy_wh, price_micro_per_kwh: price_of(buy, sell) });
        });
        imported.extend_from_slice(&bids[bids_left..]);
        exported.extend_from_slice(&asks[asks_left..]);
    }
    let (bids_left, asks_left) = pair_greedily(&mut imported, &mut exported, |buy, sell, energy_wh| {
        trades.push(Trade { buy, sell, energy_wh, price_micro_per_kwh: price_of(buy, sell) });
    });
    assert!(bids_left == imported.len() && asks_left == exported.len(), "buy and sell fills have equal sums");
    trades
}

/// Pairs `bids` with `asks` (rank, Wh left) in order while both last; each
/// step trades the smaller of the two. Returns where each side stopped: the
/// first entry with Wh left, whose Wh are reduced in place.
fn pair_greedily(
    bids: &mut [(usize, u64)],
    asks: &mut [(usize, u64)],
    mut trade: impl FnMut(usize, usize, u64),
) -> (usize, usize) {
    let (mut bid, mut ask) = (0, 0);
    while bid < bids.len() && ask < asks.len() {
        let energy_wh = bids[bid].1.min(asks[ask].1);
        trade(bids[bid].0, asks[ask].0, energy_wh);
        bids[bid].1 -= energy_wh;
        asks[ask].1 -= energy_wh;
        bid += usize::from(bids[bid].1 == 0);
        ask += usize::from(asks[ask].1 == 0);
    }
    (bid, ask)
}

fn signed(side: Side, energy_wh: u64) -> i128 {
    match side {
        Side::Sell => i128::from(energy_wh),
        Side::Buy => -i128::from(energy_wh),
    }
}

/// A net export, which the order bounds keep within an `i64`.
fn wh(net_export_wh: i128) -> i64 {
    i64::try_from(net_export_wh).expect("the bounds keep every energy sum within an i64")
}
