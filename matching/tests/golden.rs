//! Golden tests: readable books in, the clearing out, checked as text.
//! Regenerate the expectations with `UPDATE_EXPECT=1 cargo test -p gridshare-matching`
//! and review the diff by hand: each one is a statement of the rules.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use expect_test::{Expect, expect};
use gridshare_matching::{Clearing, Order, Params, Side, check, clear};

/// Parses `id side energy_wh price_micro_per_kwh` lines, clears, checks the
/// invariants and renders the result.
fn run(params: Params, book: &str, expected: Expect) {
    let orders: Vec<Order<String>> = book
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [id, side, energy_wh, price] = fields[..] else { panic!("bad line {line:?}") };
            Order {
                id: id.to_string(),
                side: if side == "buy" { Side::Buy } else { Side::Sell },
                energy_wh: energy_wh.parse().unwrap(),
                price_micro_per_kwh: price.parse().unwrap(),
            }
        })
        .collect();
    let clearing = clear(orders.clone(), &params).unwrap();
    check(&orders, &params, &clearing).unwrap();
    // The result does not depend on the input order.
    let reversed = orders.iter().rev().cloned().collect();
    assert_eq!(clear(reversed, &params).unwrap(), clearing);
    expected.assert_eq(&render(&clearing));
}

fn render(clearing: &Clearing<String>) -> String {
    let mut out = String::new();
    let price = clearing.clearing_price_micro_per_kwh.map_or("none".to_string(), |p| p.to_string());
    out += &format!("{} price={price} volume={}\n", clearing.mechanism.as_str(), clearing.volume_wh);
    for fill in clearing.fills.iter().filter(|fill| fill.filled_wh > 0) {
        out += &format!("fill  {:<4} {:<4} {}\n", fill.id, fill.side.as_str(), fill.filled_wh);
    }
    for trade in &clearing.trades {
        let (buy_id, sell_id) = clearing.trade_ids(trade);
        out +=
            &format!("trade {buy_id} <- {sell_id} {} Wh @ {}\n", trade.energy_wh, trade.price_micro_per_kwh);
    }
    out
}

#[test]
fn empty_book() {
    run(
        Params::uniform(500),
        "",
        expect![[r#"
        uniform price=none volume=0
    "#]],
    );
}

#[test]
fn one_side_only() {
    run(
        Params::uniform(500),
        "
        s1 sell 1000 100000
        s2 sell 2000 120000
        ",
        expect![[r#"
            uniform price=none volume=0
        "#]],
    );
}

#[test]
fn no_crossing() {
    run(
        Params::uniform(500),
        "
        b1 buy  1000 100000
        s1 sell 1000 100001
        ",
        expect![[r#"
            uniform price=none volume=0
        "#]],
    );
}

#[test]
fn crossing_at_a_single_price() {
    run(
        Params::uniform(500),
        "
        b1 buy  1000 200000
        s1 sell 1000 200000
        ",
        expect![[r#"
            uniform price=200000 volume=1000
            fill  b1   buy  1000
            fill  s1   sell 1000
            trade b1 <- s1 1000 Wh @ 200000
        "#]],
    );
}

#[test]
fn all_orders_tied_at_one_price() {
    run(
        Params::uniform(500),
        "
        b1 buy  300 150000
        b2 buy  500 150000
        s1 sell 400 150000
        s2 sell 200 150000
        ",
        expect![[r#"
            uniform price=150000 volume=600
            fill  b1   buy  225
            fill  b2   buy  375
            fill  s1   sell 400
            fill  s2   sell 200
            trade b1 <- s1 225 Wh @ 150000
            trade b2 <- s1 175 Wh @ 150000
            trade b2 <- s2 200 Wh @ 150000
        "#]],
    );
}

#[test]
fn partial_marginal_bid_level() {
    // The asks (1500 Wh) fill completely; the bid level at 0.20 shares what is
    // left after the level at 0.30 (1500 - 1000 = 500 Wh) in proportion 1:3.
    run(
        Params::uniform(500),
        "
        b1 buy  1000 300000
        b2 buy   400 200000
        b3 buy  1200 200000
        b4 buy  1000 100000
        s1 sell  700 120000
        s2 sell  800 150000
        ",
        expect![[r#"
            uniform price=200000 volume=1500
            fill  b1   buy  1000
            fill  b2   buy  125
            fill  b3   buy  375
            fill  s1   sell 700
            fill  s2   sell 800
            trade b1 <- s1 700 Wh @ 200000
            trade b1 <- s2 300 Wh @ 200000
            trade b2 <- s2 125 Wh @ 200000
            trade b3 <- s2 375 Wh @ 200000
        "#]],
    );
}

#[test]
fn partial_marginal_ask_level() {
    run(
        Params::uniform(500),
        "
        b1 buy  1000 300000
        s1 sell  600 100000
        s2 sell  300 200000
        s3 sell  900 200000
        s4 sell 1000 250000
        ",
        expect![[r#"
            uniform price=200000 volume=1000
            fill  b1   buy  1000
            fill  s1   sell 600
            fill  s2   sell 100
            fill  s3   sell 300
            trade b1 <- s1 600 Wh @ 200000
            trade b1 <- s2 100 Wh @ 200000
            trade b1 <- s3 300 Wh @ 200000
        "#]],
    );
}

#[test]
fn pro_rata_leftovers_go_in_ascending_id_order() {
    // 200 Wh over three equal bids: 66 each and two left over, for "a" and "b".
    run(
        Params::uniform(500),
        "
        c  buy  100 200000
        a  buy  100 200000
        b  buy  100 200000
        s1 sell 200 100000
        ",
        expect![[r#"
            uniform price=200000 volume=200
            fill  a    buy  67
            fill  b    buy  67
            fill  c    buy  66
            fill  s1   sell 200
            trade a <- s1 67 Wh @ 200000
            trade b <- s1 67 Wh @ 200000
            trade c <- s1 66 Wh @ 200000
        "#]],
    );
}

#[test]
fn leftovers_skip_orders_whose_share_was_exact() {
    // 7 Wh over bids of 4, 1 and 5 Wh: exact shares 2.8, 0.7 and 3.5, rounded
    // down to 2, 0 and 3, and two left over: one each for a and b, the orders
    // rounded down in ascending id order.
    run(
        Params::uniform(500),
        "
        a  buy  4 200000
        b  buy  1 200000
        c  buy  5 200000
        s1 sell 7 100000
        ",
        expect![[r#"
            uniform price=200000 volume=7
            fill  a    buy  3
            fill  b    buy  1
            fill  c    buy  3
            fill  s1   sell 7
            trade a <- s1 3 Wh @ 200000
            trade b <- s1 1 Wh @ 200000
            trade c <- s1 3 Wh @ 200000
        "#]],
    );
}

#[test]
fn fee_above_a_bid() {
    // With a fee of 0.05, b2's limit of 0.04 cannot pay it and b1's effective
    // price is 0.25.
    run(
        Params::uniform(500).with_network_fee(50000),
        "
        b1 buy  1000 300000
        b2 buy  1000  40000
        s1 sell 2000  10000
        ",
        expect![[r#"
            uniform price=10000 volume=1000
            fill  b1   buy  1000
            fill  s1   sell 1000
            trade b1 <- s1 1000 Wh @ 10000
        "#]],
    );
}

const PRICE_RANGE_BOOK: &str = "
    b1 buy  1000 300000
    b2 buy  1000 180000
    s1 sell 1000 100000
    s2 sell 1000 220000
";

#[test]
fn k_zero_picks_the_lowest_clearing_price() {
    // Every price in [max(0.10, 0.18), min(0.30, 0.22)] = [0.18, 0.22] clears.
    run(
        Params::uniform(0),
        PRICE_RANGE_BOOK,
        expect![[r#"
        uniform price=180000 volume=1000
        fill  b1   buy  1000
        fill  s1   sell 1000
        trade b1 <- s1 1000 Wh @ 180000
    "#]],
    );
}

#[test]
fn k_half_picks_the_middle() {
    run(
        Params::uniform(500),
        PRICE_RANGE_BOOK,
        expect![[r#"
        uniform price=200000 volume=1000
        fill  b1   buy  1000
        fill  s1   sell 1000
        trade b1 <- s1 1000 Wh @ 200000
    "#]],
    );
}

#[test]
fn k_one_picks_the_highest_clearing_price() {
    run(
        Params::uniform(1000),
        PRICE_RANGE_BOOK,
        expect![[r#"
        uniform price=220000 volume=1000
        fill  b1   buy  1000
        fill  s1   sell 1000
        trade b1 <- s1 1000 Wh @ 220000
    "#]],
    );
}

#[test]
fn pay_as_bid_prices_each_trade_at_the_buyers_effective_price() {
    run(
        Params::pay_as_bid().with_network_fee(10000),
        "
        b1 buy  1000 300000
        b2 buy   500 250000
        s1 sell  800 100000
        s2 sell  900 200000
        ",
        expect![[r#"
            pay-as-bid price=none volume=1500
            fill  b1   buy  1000
            fill  b2   buy  500
            fill  s1   sell 800
            fill  s2   sell 700
            trade b1 <- s1 800 Wh @ 290000
            trade b1 <- s2 200 Wh @ 290000
            trade b2 <- s2 500 Wh @ 240000
        "#]],
    );
}

#[test]
fn one_bid_against_many_asks_pairs_cheapest_first() {
    run(
        Params::uniform(500),
        "
        b1 buy  2500 400000
        s3 sell 1000 300000
        s1 sell 1000 100000
        s2 sell 1000 200000
        ",
        expect![[r#"
            uniform price=300000 volume=2500
            fill  b1   buy  2500
            fill  s1   sell 1000
            fill  s2   sell 1000
            fill  s3   sell 500
            trade b1 <- s1 1000 Wh @ 300000
            trade b1 <- s2 1000 Wh @ 300000
            trade b1 <- s3 500 Wh @ 300000
        "#]],
    );
}

#[test]
fn energies_near_the_bound_of_a_u64() {
    // Three orders of (2⁶⁴ − 1) / 3 Wh, the most the limits allow for three
    // orders: the ask level shares the bid's volume, and the odd Wh left over
    // from halving it goes to s1, the lower id. The ask level keeps volume,
    // so it also bounds the price from above: P = 0.10.
    use gridshare_matching::Limits;
    let limits = Limits { max_orders: 3, max_energy_wh: u64::MAX / 3, ..Limits::default() };
    run(
        Params { limits, ..Params::uniform(500) },
        "
        b1 buy  6148914691236517205 200000
        s2 sell 6148914691236517205 100000
        s1 sell 6148914691236517205 100000
        ",
        expect![[r#"
            uniform price=100000 volume=6148914691236517205
            fill  b1   buy  6148914691236517205
            fill  s1   sell 3074457345618258603
            fill  s2   sell 3074457345618258602
            trade b1 <- s1 3074457345618258603 Wh @ 100000
            trade b1 <- s2 3074457345618258602 Wh @ 100000
        "#]],
    );
}

#[test]
fn bad_input_gets_typed_errors() {
    use gridshare_matching::{ClearError, Limits};
    let order = |id: &'static str, energy_wh, price_micro_per_kwh| Order {
        id,
        side: Side::Buy,
        energy_wh,
        price_micro_per_kwh,
    };
    let params = Params::uniform(500);
    assert_eq!(clear(vec![order("a", 0, 1)], &params), Err(ClearError::ZeroEnergy { position: 0 }));
    assert_eq!(clear(vec![order("a", 1, 1), order("a", 2, 2)], &params), Err(ClearError::DuplicateId));
    assert_eq!(
        clear(vec![order("a", 1, 1)], &Params::uniform(1001)),
        Err(ClearError::KOutOfRange { k_thousandths: 1001 })
    );
    let small = Params {
        limits: Limits { max_orders: 1, max_energy_wh: 10, max_price_micro_per_kwh: 100 },
        ..params
    };
    assert_eq!(
        clear(vec![order("a", 1, 1), order("b", 1, 1)], &small),
        Err(ClearError::TooManyOrders { count: 2, max_orders: 1 })
    );
    assert_eq!(
        clear(vec![order("a", 11, 1)], &small),
        Err(ClearError::EnergyAboveMax { position: 0, energy_wh: 11, max_energy_wh: 10 })
    );
    assert_eq!(
        clear(vec![order("a", 1, 101)], &small),
        Err(ClearError::PriceAboveMax {
            position: 0,
            price_micro_per_kwh: 101,
            max_price_micro_per_kwh: 100
        })
    );
    assert!(matches!(
        clear(vec![order("a", 1, 1)], &small.with_network_fee(101)),
        Err(ClearError::FeeAboveMax { .. })
    ));
    let huge = Params {
        limits: Limits { max_orders: usize::MAX, max_energy_wh: u64::MAX, max_price_micro_per_kwh: u64::MAX },
        ..params
    };
    assert!(matches!(clear(vec![order("a", 1, 1)], &huge), Err(ClearError::LimitsTooLarge { .. })));
}
