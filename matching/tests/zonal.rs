//! Zonal clearing (docs/AUCTION.md §6): a worked split, and properties over
//! random books in random zones: the limits hold, every zone's fills follow
//! its price, open limits change nothing, the gains from trade never exceed
//! the plain clearing's (the volume can), and on small books no other fills under the limits
//! gain more from trade (a brute force over every integer fill).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use gridshare_matching::{
    ClearError, Limits, Mechanism, Order, Params, Side, ZonalClearing, ZonalOrder, ZoneLimits, clear,
    clear_zonal,
};
use proptest::prelude::*;

fn zonal(id: u32, zone: u32, side: Side, energy_wh: u64, price_micro_per_kwh: u64) -> ZonalOrder<u32> {
    ZonalOrder { order: Order { id, side, energy_wh, price_micro_per_kwh }, zone }
}

#[test]
fn a_congested_exporting_zone_gets_its_own_lower_price() {
    // Zone 0 has cheap supply; zone 1 a buyer and dearer supply. Without
    // limits the buyer takes zone 0's 1000 Wh at 0.175; zone 0 may export
    // only 400 Wh, so it keeps 0.10 and zone 1 pays 0.25 for the rest.
    let orders = vec![
        zonal(1, 0, Side::Sell, 1_000, 100_000),
        zonal(2, 1, Side::Buy, 1_000, 300_000),
        zonal(3, 1, Side::Sell, 1_000, 250_000),
    ];
    let zones = [ZoneLimits { import_wh_max: 0, export_wh_max: 400 }, ZoneLimits::OPEN];
    let plain =
        clear(orders.iter().map(|zonal| zonal.order.clone()).collect(), &Params::uniform(500)).unwrap();
    assert_eq!((plain.volume_wh, plain.clearing_price_micro_per_kwh), (1_000, Some(175_000)));

    let result = clear_zonal(orders, &zones, &Params::uniform(500)).unwrap();
    check_zonal(&result, &book_of(&result), &zones, &Params::uniform(500)).unwrap();
    let clearing = &result.clearing;
    assert_eq!((clearing.volume_wh, clearing.clearing_price_micro_per_kwh), (1_000, Some(250_000)));
    let fills: Vec<u64> = clearing.fills.iter().map(|fill| fill.filled_wh).collect();
    assert_eq!(fills, [400, 1_000, 600]);
    let zone = |index: usize| {
        let zone = result.zones[index];
        (zone.price_micro_per_kwh, zone.net_export_wh, zone.congested)
    };
    assert_eq!(zone(0), (Some(100_000), 400, true));
    assert_eq!(zone(1), (Some(250_000), -400, false));
    // Within zone 1 first, then across: each seller gets its zone's price.
    let trades: Vec<(usize, usize, u64, u64)> = clearing
        .trades
        .iter()
        .map(|trade| (trade.buy, trade.sell, trade.energy_wh, trade.price_micro_per_kwh))
        .collect();
    assert_eq!(trades, [(1, 2, 600, 250_000), (1, 0, 400, 100_000)]);
}

#[test]
fn a_split_can_trade_more_than_the_plain_clearing_but_never_gains_more() {
    // Zone 0 sells 1000 Wh at 0; zone 1 bids 1000 Wh at 0.10 and may not
    // import; zone 2 bids 1000 Wh at 0.05. Without limits zone 1 takes it
    // all and 1000 Wh trade. With them, zone 1 trades its own 300 Wh at
    // 0.08, and zone 0's energy goes to zone 2: 1300 Wh trade, for less.
    let orders = vec![
        zonal(1, 0, Side::Sell, 1_000, 0),
        zonal(2, 1, Side::Buy, 1_000, 100_000),
        zonal(3, 1, Side::Sell, 300, 80_000),
        zonal(4, 2, Side::Buy, 1_000, 50_000),
    ];
    let rows = rows(&orders);
    let zones = [ZoneLimits::OPEN, ZoneLimits { import_wh_max: 0, export_wh_max: 0 }, ZoneLimits::OPEN];
    let params = Params::uniform(500);
    let plain = clear(orders.iter().map(|zonal| zonal.order.clone()).collect(), &params).unwrap();
    let result = clear_zonal(orders, &zones, &params).unwrap();
    check_zonal(&result, &rows, &zones, &params).unwrap();
    assert_eq!((plain.volume_wh, result.clearing.volume_wh), (1_000, 1_300));
    let fills = |clearing: &gridshare_matching::Clearing<u32>| -> Vec<u64> {
        clearing.fills.iter().map(|fill| fill.filled_wh).collect()
    };
    assert_eq!(fills(&result.clearing), [1_000, 300, 300, 1_000]);
    // Gains: 1000 Wh × 0.10 without limits; 300 × (0.10 − 0.08) + 1000 × 0.05 with them.
    assert_eq!(gains(&rows, &fills(&plain), 0), 100_000_000);
    assert_eq!(gains(&rows, &fills(&result.clearing), 0), 6_000_000 + 50_000_000);
}

/// A zone that may not export, beside one with demand only: the market
/// splits, and no price goes beyond the book's highest (the bound of the
/// price search, docs/AUCTION.md §6.2).
#[test]
fn no_price_goes_beyond_the_books_highest() {
    let orders = vec![
        zonal(1, 0, Side::Sell, 100, 100_000),
        zonal(2, 0, Side::Buy, 50, 300_000),
        zonal(3, 1, Side::Buy, 100, 400_000),
    ];
    let zones = [ZoneLimits { import_wh_max: 0, export_wh_max: 0 }, ZoneLimits::OPEN];
    let params = Params::uniform(500);
    let book = rows(&orders);
    let result = clear_zonal(orders, &zones, &params).unwrap();
    check_zonal(&result, &book, &zones, &params).unwrap();
    // The first zone trades 50 Wh within itself; the second gets nothing.
    assert_eq!(result.clearing.volume_wh, 50);
    assert!(result.zones[0].congested);
    let highest = 400_000;
    assert!(result.clearing.clearing_price_micro_per_kwh.is_some_and(|price| price <= highest), "{result:?}");
    assert!(result.zones.iter().all(|zone| zone.price_micro_per_kwh.is_some_and(|price| price <= highest)));
}

#[test]
fn unknown_zones_and_too_many_are_refused() {
    let orders = vec![zonal(1, 0, Side::Sell, 10, 1), zonal(2, 2, Side::Buy, 10, 5)];
    let error = clear_zonal(orders, &[ZoneLimits::OPEN; 2], &Params::uniform(500)).unwrap_err();
    assert_eq!(error, ClearError::UnknownZone { position: 1, zone: 2, zones: 2 });
    let many = vec![ZoneLimits::OPEN; gridshare_matching::ZONES_MAX + 1];
    assert!(matches!(
        clear_zonal(Vec::<ZonalOrder<u32>>::new(), &many, &Params::uniform(500)),
        Err(ClearError::TooManyZones { .. })
    ));
}

/// What the checks need of each order, by rank (the fills' order).
#[derive(Clone, Copy, Debug)]
struct Row {
    side: Side,
    energy_wh: u64,
    price_micro_per_kwh: u64,
    zone: usize,
}

/// The test's book by rank, recovered from the golden test's ids.
fn book_of(result: &ZonalClearing<u32>) -> Vec<Row> {
    let golden =
        [(Side::Sell, 1_000, 100_000, 0), (Side::Buy, 1_000, 300_000, 1), (Side::Sell, 1_000, 250_000, 1)];
    result
        .clearing
        .fills
        .iter()
        .map(|fill| {
            let (side, energy_wh, price_micro_per_kwh, zone) = golden[fill.id as usize - 1];
            Row { side, energy_wh, price_micro_per_kwh, zone }
        })
        .collect()
}

fn rows(orders: &[ZonalOrder<u32>]) -> Vec<Row> {
    let mut sorted: Vec<&ZonalOrder<u32>> = orders.iter().collect();
    sorted.sort_by_key(|zonal| zonal.order.id);
    sorted
        .into_iter()
        .map(|zonal| Row {
            side: zonal.order.side,
            energy_wh: zonal.order.energy_wh,
            price_micro_per_kwh: zonal.order.price_micro_per_kwh,
            zone: zonal.zone as usize,
        })
        .collect()
}

/// A bid's effective price, `None` if it cannot pay the fee; an ask's price.
fn effective(row: &Row, fee: u64) -> Option<u64> {
    match row.side {
        Side::Buy => row.price_micro_per_kwh.checked_sub(fee),
        Side::Sell => Some(row.price_micro_per_kwh),
    }
}

/// The gains from trade of `fills`: what buyers would pay at their
/// effective prices less what sellers ask, in micro-currency × Wh.
fn gains(rows: &[Row], fills: &[u64], fee: u64) -> i128 {
    rows.iter()
        .zip(fills)
        .map(|(row, fill)| {
            let value = i128::from(effective(row, fee).unwrap_or(0)) * i128::from(*fill);
            if row.side == Side::Buy { value } else { -value }
        })
        .sum()
}

/// The invariants of §6, checked without the algorithm.
fn check_zonal(
    result: &ZonalClearing<u32>,
    rows: &[Row],
    zones: &[ZoneLimits],
    params: &Params,
) -> Result<(), String> {
    let clearing = &result.clearing;
    let fee = params.network_fee_micro_per_kwh;
    let fills: Vec<u64> = clearing.fills.iter().map(|fill| fill.filled_wh).collect();
    let mut bought = 0;
    let mut sold = 0;
    let mut net = vec![0_i128; zones.len()];
    for (row, fill) in rows.iter().zip(&fills) {
        if *fill > row.energy_wh {
            return Err(format!("{row:?} filled {fill}"));
        }
        if effective(row, fee).is_none() && *fill > 0 {
            return Err(format!("{row:?} cannot pay the fee but filled {fill}"));
        }
        match row.side {
            Side::Buy => {
                bought += fill;
                net[row.zone] -= i128::from(*fill);
            }
            Side::Sell => {
                sold += fill;
                net[row.zone] += i128::from(*fill);
            }
        }
    }
    if bought != sold || bought != clearing.volume_wh {
        return Err(format!("bought {bought}, sold {sold}, volume {}", clearing.volume_wh));
    }
    for (zone, (limits, outcome)) in zones.iter().zip(&result.zones).enumerate() {
        if i128::from(outcome.net_export_wh) != net[zone] {
            return Err(format!(
                "zone {zone} reports {} but its fills make {}",
                outcome.net_export_wh, net[zone]
            ));
        }
        if net[zone] > i128::from(limits.export_wh_max) || -net[zone] > i128::from(limits.import_wh_max) {
            return Err(format!("zone {zone} exports {} beyond {limits:?}", net[zone]));
        }
    }
    // Under uniform pricing with trades: every order follows its zone's price.
    if params.mechanism == Mechanism::Uniform && clearing.volume_wh > 0 {
        let hub = clearing.clearing_price_micro_per_kwh.ok_or("no community price")?;
        for (zone, (outcome, limits)) in result.zones.iter().zip(zones).enumerate() {
            let price = outcome.price_micro_per_kwh.ok_or("no zone price")?;
            let expected = if outcome.congested {
                (net[zone] == i128::from(limits.export_wh_max) && price < hub)
                    || (net[zone] == -i128::from(limits.import_wh_max) && price > hub)
            } else {
                price == hub
            };
            if !expected {
                return Err(format!("zone {zone}: {outcome:?} against the community's {hub}"));
            }
        }
        for (row, fill) in rows.iter().zip(&fills) {
            let (Some(own), Some(price)) = (effective(row, fee), result.zones[row.zone].price_micro_per_kwh)
            else {
                continue;
            };
            let better = match row.side {
                Side::Buy => own > price,
                Side::Sell => own < price,
            };
            if (better && *fill != row.energy_wh) || (own != price && !better && *fill != 0) {
                return Err(format!("{row:?} filled {fill} at its zone's price {price}"));
            }
        }
    }
    // No price beyond every order's: the book's highest ask or effective bid.
    let highest = rows
        .iter()
        .filter_map(|row| match row.side {
            Side::Buy => effective(row, fee),
            Side::Sell => Some(row.price_micro_per_kwh),
        })
        .max()
        .unwrap_or(0);
    let prices = result
        .zones
        .iter()
        .map(|zone| zone.price_micro_per_kwh)
        .chain([clearing.clearing_price_micro_per_kwh]);
    if let Some(price) = prices.flatten().find(|price| *price > highest) {
        return Err(format!("a price of {price} above the book's highest, {highest}"));
    }
    // A buyer's zone's price is never below its seller's (uniform).
    if params.mechanism == Mechanism::Uniform {
        for trade in &clearing.trades {
            let price = |index: usize| result.zones[rows[index].zone].price_micro_per_kwh;
            if price(trade.buy) < price(trade.sell) {
                return Err(format!("{trade:?}: the buyer's zone's price is below the seller's"));
            }
        }
    }
    // Trades add up to the fills; sellers get their zone's price (uniform)
    // or the buyer's effective price (pay-as-bid).
    let mut traded = vec![0_u64; rows.len()];
    for trade in &clearing.trades {
        traded[trade.buy] += trade.energy_wh;
        traded[trade.sell] += trade.energy_wh;
        let expected = match params.mechanism {
            Mechanism::Uniform => result.zones[rows[trade.sell].zone].price_micro_per_kwh,
            Mechanism::PayAsBid => effective(&rows[trade.buy], fee),
        };
        if Some(trade.price_micro_per_kwh) != expected {
            return Err(format!("{trade:?} priced unlike its seller's zone"));
        }
    }
    if traded != fills {
        return Err(format!("trades {traded:?} against fills {fills:?}"));
    }
    Ok(())
}

/// Random books in up to three zones with few price levels.
fn zonal_book(max_orders: usize, max_energy_wh: u64) -> impl Strategy<Value = Vec<ZonalOrder<u32>>> {
    prop::collection::vec((any::<bool>(), 1..=max_energy_wh, 0_u64..=8, 0_u32..3), 0..=max_orders).prop_map(
        |rows| {
            rows.into_iter()
                .enumerate()
                .map(|(index, (buy, energy_wh, price_step, zone))| {
                    let side = if buy { Side::Buy } else { Side::Sell };
                    let id = u32::try_from(index).unwrap().wrapping_mul(2_654_435_761);
                    zonal(id, zone, side, energy_wh, price_step * 25_000)
                })
                .collect()
        },
    )
}

/// Limits from none to generous, so that some bind and some do not.
fn zone_limits(max_wh: u64) -> impl Strategy<Value = Vec<ZoneLimits>> {
    prop::collection::vec((0..=max_wh, 0..=max_wh), 3).prop_map(|limits| {
        limits
            .into_iter()
            .map(|(import_wh_max, export_wh_max)| ZoneLimits { import_wh_max, export_wh_max })
            .collect()
    })
}

fn params() -> impl Strategy<Value = Params> {
    (any::<bool>(), 0_u16..=1000, prop_oneof![Just(0_u64), Just(25_000_u64), 0_u64..=60_000]).prop_map(
        |(uniform, k_thousandths, network_fee_micro_per_kwh)| Params {
            mechanism: if uniform { Mechanism::Uniform } else { Mechanism::PayAsBid },
            k_thousandths,
            network_fee_micro_per_kwh,
            limits: Limits::default(),
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_limits_hold_and_every_zone_follows_its_price(
        orders in zonal_book(40, 3_000),
        zones in zone_limits(6_000),
        params in params(),
    ) {
        let rows = rows(&orders);
        let plain = clear(orders.iter().map(|zonal| zonal.order.clone()).collect(), &params).unwrap();
        let result = clear_zonal(orders.clone(), &zones, &params).unwrap();
        check_zonal(&result, &rows, &zones, &params).map_err(TestCaseError::fail)?;
        // Never more gains from trade than without limits (more volume can
        // happen: see the test below).
        let fills = |clearing: &gridshare_matching::Clearing<u32>| -> Vec<u64> {
            clearing.fills.iter().map(|fill| fill.filled_wh).collect()
        };
        let fee = params.network_fee_micro_per_kwh;
        prop_assert!(gains(&rows, &fills(&result.clearing), fee) <= gains(&rows, &fills(&plain), fee));
        // The other mechanism fills the same.
        let other = Params {
            mechanism: match params.mechanism {
                Mechanism::Uniform => Mechanism::PayAsBid,
                Mechanism::PayAsBid => Mechanism::Uniform,
            },
            ..params
        };
        let other = clear_zonal(orders.clone(), &zones, &other).unwrap();
        prop_assert_eq!(&other.clearing.fills, &result.clearing.fills);
        // The same orders in another order clear the same.
        let mut reversed = orders;
        reversed.reverse();
        prop_assert_eq!(clear_zonal(reversed, &zones, &params).unwrap(), result);
    }

    #[test]
    fn without_binding_limits_it_is_the_plain_clearing(
        orders in zonal_book(60, 5_000),
        params in params(),
    ) {
        let plain = clear(orders.iter().map(|zonal| zonal.order.clone()).collect(), &params).unwrap();
        let result = clear_zonal(orders, &[ZoneLimits::OPEN; 3], &params).unwrap();
        prop_assert!(result.zones.iter().all(|zone| !zone.congested));
        prop_assert_eq!(result.clearing, plain);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn no_other_fills_under_the_limits_gain_more_from_trade(
        orders in zonal_book(5, 3),
        zones in zone_limits(4),
        params in params(),
    ) {
        let rows = rows(&orders);
        let result = clear_zonal(orders, &zones, &params).unwrap();
        let fills: Vec<u64> = result.clearing.fills.iter().map(|fill| fill.filled_wh).collect();
        let fee = params.network_fee_micro_per_kwh;
        let best = best_gains(&rows, &zones, fee);
        prop_assert_eq!(gains(&rows, &fills, fee), best, "fills {:?} of {:?}", fills, rows);
    }
}

/// The most gains from trade of any integer fills that balance and keep
/// every zone within its limits (every combination: for small books only).
fn best_gains(rows: &[Row], zones: &[ZoneLimits], fee: u64) -> i128 {
    let mut fills = vec![0_u64; rows.len()];
    let mut best = 0;
    loop {
        let mut net = vec![0_i128; zones.len()];
        let mut balance = 0_i128;
        let mut payable = true;
        for (row, fill) in rows.iter().zip(&fills) {
            let signed = if row.side == Side::Sell { i128::from(*fill) } else { -i128::from(*fill) };
            net[row.zone] += signed;
            balance += signed;
            payable &= *fill == 0 || effective(row, fee).is_some();
        }
        let within = zones.iter().zip(&net).all(|(limits, net)| {
            *net <= i128::from(limits.export_wh_max) && -*net <= i128::from(limits.import_wh_max)
        });
        if balance == 0 && payable && within {
            best = best.max(gains(rows, &fills, fee));
        }
        // The next combination, as an odometer.
        let mut position = 0;
        loop {
            if position == rows.len() {
                return best;
            }
            if fills[position] < rows[position].energy_wh {
                fills[position] += 1;
                break;
            }
            fills[position] = 0;
            position += 1;
        }
    }
}
