//! Fuzz target: any book and any parameters give a typed error or a clearing
//! that passes `check` and does not depend on the order of the input.

#![no_main]

use arbitrary::Arbitrary;
use gridshare_matching::{Limits, Mechanism, Order, Params, Side, check, clear};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    orders: Vec<(u16, bool, u64, u64)>,
    pay_as_bid: bool,
    k_thousandths: u16,
    network_fee_micro_per_kwh: u64,
    /// Squeeze energies and prices into a few levels so ties are common.
    small_numbers: bool,
}

fuzz_target!(|input: Input| {
    // With `small_numbers`, values fall on a few levels; otherwise they are raw.
    let squeeze =
        |value: u64, levels: u64, step: u64| if input.small_numbers { value % levels * step } else { value };
    let orders: Vec<Order<u16>> = input
        .orders
        .iter()
        .map(|&(id, buy, energy_wh, price)| Order {
            id,
            side: if buy { Side::Buy } else { Side::Sell },
            energy_wh: squeeze(energy_wh, 1_000, 1),
            price_micro_per_kwh: squeeze(price, 8, 10_000),
        })
        .collect();
    let params = Params {
        mechanism: if input.pay_as_bid { Mechanism::PayAsBid } else { Mechanism::Uniform },
        k_thousandths: input.k_thousandths,
        network_fee_micro_per_kwh: squeeze(input.network_fee_micro_per_kwh, 4, 10_000),
        limits: Limits::default(),
    };
    let Ok(clearing) = clear(orders.clone(), &params) else { return };
    if let Err(violation) = check(&orders, &params, &clearing) {
        panic!("invariant broken: {violation}\n{orders:?}\n{params:?}\n{clearing:?}");
    }
    let reversed: Vec<Order<u16>> = orders.iter().rev().cloned().collect();
    assert_eq!(clear(reversed, &params).as_ref(), Ok(&clearing), "depends on the input order");
});
