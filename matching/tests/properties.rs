//! Property tests of the auction's invariants over random books.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::collections::BTreeSet;

use gridshare_matching::{ClearError, Limits, Mechanism, Order, Params, Side, check, clear};
use proptest::prelude::*;

/// A book with unique ids, few price levels (so ties and shared marginal
/// levels are common) and energies from 1 Wh.
fn book(max_orders: usize) -> impl Strategy<Value = Vec<Order<u32>>> {
    prop::collection::vec((any::<bool>(), 1_u64..=5_000, 0_u64..=12), 0..=max_orders).prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(index, (buy, energy_wh, price_step))| Order {
                id: u32::try_from(index).unwrap().wrapping_mul(2_654_435_761),
                side: if buy { Side::Buy } else { Side::Sell },
                energy_wh,
                price_micro_per_kwh: price_step * 25_000,
            })
            .collect()
    })
}

fn params() -> impl Strategy<Value = Params> {
    (any::<bool>(), 0_u16..=1000, prop_oneof![Just(0_u64), 0_u64..=100_000]).prop_map(
        |(uniform, k_thousandths, network_fee_micro_per_kwh)| Params {
            mechanism: if uniform { Mechanism::Uniform } else { Mechanism::PayAsBid },
            k_thousandths,
            network_fee_micro_per_kwh,
            limits: Limits::default(),
        },
    )
}

/// The largest volume any single price clears: max over candidate prices p of
/// min(bids with effective price ≥ p, asks with price ≤ p).
fn brute_force_volume(orders: &[Order<u32>], fee: u64) -> u64 {
    let effective = |order: &Order<u32>| match order.side {
        Side::Buy => order.price_micro_per_kwh.checked_sub(fee),
        Side::Sell => Some(order.price_micro_per_kwh),
    };
    let candidates: BTreeSet<u64> = orders.iter().filter_map(effective).collect();
    candidates
        .into_iter()
        .map(|price| {
            let sum = |side: Side, accept: &dyn Fn(u64) -> bool| -> u64 {
                orders
                    .iter()
                    .filter(|order| order.side == side)
                    .filter(|order| effective(order).is_some_and(accept))
                    .map(|order| order.energy_wh)
                    .sum()
            };
            sum(Side::Buy, &|bid| bid >= price).min(sum(Side::Sell, &|ask| ask <= price))
        })
        .max()
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold(orders in book(40), params in params()) {
        let clearing = clear(orders.clone(), &params).unwrap();
        if let Err(violation) = check(&orders, &params, &clearing) {
            prop_assert!(false, "{violation}");
        }
    }

    #[test]
    fn output_is_identical_under_any_permutation(
        (orders, shuffled) in book(40).prop_flat_map(|orders| (Just(orders.clone()), Just(orders).prop_shuffle())),
        params in params(),
    ) {
        prop_assert_eq!(clear(orders, &params).unwrap(), clear(shuffled, &params).unwrap());
    }

    #[test]
    fn volume_is_the_brute_force_maximum(orders in book(12), params in params()) {
        let clearing = clear(orders.clone(), &params).unwrap();
        prop_assert_eq!(clearing.volume_wh, brute_force_volume(&orders, params.network_fee_micro_per_kwh));
    }

    #[test]
    fn pay_as_bid_has_the_same_fills_as_uniform(orders in book(40), params in params()) {
        let uniform = clear(orders.clone(), &Params { mechanism: Mechanism::Uniform, ..params }).unwrap();
        let pay_as_bid = clear(orders, &Params { mechanism: Mechanism::PayAsBid, ..params }).unwrap();
        prop_assert_eq!(uniform.fills, pay_as_bid.fills);
        prop_assert_eq!(uniform.volume_wh, pay_as_bid.volume_wh);
    }

    /// A fee is the same as lowering every bid by it and dropping the bids
    /// below it: the fills do not change.
    #[test]
    fn a_fee_lowers_bids(orders in book(40), fee in 0_u64..=100_000) {
        let with_fee = clear(orders.clone(), &Params::uniform(500).with_network_fee(fee)).unwrap();
        let lowered: Vec<Order<u32>> = orders
            .into_iter()
            .filter_map(|order| match order.side {
                Side::Buy => order
                    .price_micro_per_kwh
                    .checked_sub(fee)
                    .map(|price_micro_per_kwh| Order { price_micro_per_kwh, ..order }),
                Side::Sell => Some(order),
            })
            .collect();
        let without_fee = clear(lowered, &Params::uniform(500)).unwrap();
        let filled = |fills: &[gridshare_matching::Fill<u32>]| -> Vec<(u32, u64)> {
            fills.iter().filter(|fill| fill.filled_wh > 0).map(|fill| (fill.id, fill.filled_wh)).collect()
        };
        prop_assert_eq!(filled(&with_fee.fills), filled(&without_fee.fills));
        prop_assert_eq!(with_fee.clearing_price_micro_per_kwh, without_fee.clearing_price_micro_per_kwh);
    }

    /// Two orders with one id are an error wherever they are in the book and
    /// whatever their sides and prices, in any input order.
    #[test]
    fn a_duplicate_id_is_rejected(
        (mut orders, copied, copy) in book(40)
            .prop_filter("two orders at least", |orders| orders.len() >= 2)
            .prop_flat_map(|orders| {
                let count = orders.len();
                (Just(orders), 0..count, 0..count)
            })
            .prop_filter("two different orders", |(_, copied, copy)| copied != copy),
        in_id_order in any::<bool>(),
        params in params(),
    ) {
        orders[copy].id = orders[copied].id;
        if in_id_order {
            orders.sort_by_key(|order| order.id);
        }
        prop_assert_eq!(clear(orders, &params), Err(ClearError::DuplicateId));
    }

    /// Energies so large that only a few orders fit the limits, as a node
    /// with custom limits could have: the invariants and the maximal volume
    /// still hold.
    #[test]
    fn energies_near_the_bound_of_a_u64(
        rows in prop::collection::vec((any::<bool>(), 1..=u64::MAX / 3, 0_u64..=4), 0..=3),
        params in params(),
    ) {
        let limits = Limits { max_orders: 3, max_energy_wh: u64::MAX / 3, ..Limits::default() };
        let params = Params { limits, ..params };
        let orders: Vec<Order<u32>> = (0..)
            .zip(rows)
            .map(|(id, (buy, energy_wh, price_step))| Order {
                id,
                side: if buy { Side::Buy } else { Side::Sell },
                energy_wh,
                price_micro_per_kwh: price_step * 50_000,
            })
            .collect();
        let clearing = clear(orders.clone(), &params).unwrap();
        if let Err(violation) = check(&orders, &params, &clearing) {
            prop_assert!(false, "{violation}");
        }
        prop_assert_eq!(clearing.volume_wh, brute_force_volume(&orders, params.network_fee_micro_per_kwh));
        let reversed = orders.into_iter().rev().collect();
        prop_assert_eq!(clear(reversed, &params).unwrap(), clearing);
    }

    /// Any input, however wild, gives a result or a typed error, never a panic.
    #[test]
    fn arbitrary_input_never_panics(
        rows in prop::collection::vec((any::<u8>(), any::<bool>(), any::<u64>(), any::<u64>()), 0..30),
        k_thousandths in any::<u16>(),
        network_fee_micro_per_kwh in any::<u64>(),
    ) {
        let orders: Vec<Order<u8>> = rows
            .into_iter()
            .map(|(id, buy, energy_wh, price_micro_per_kwh)| Order {
                id,
                side: if buy { Side::Buy } else { Side::Sell },
                energy_wh,
                price_micro_per_kwh,
            })
            .collect();
        let params = Params { k_thousandths, network_fee_micro_per_kwh, ..Params::uniform(0) };
        if let Ok(clearing) = clear(orders.clone(), &params)
            && let Err(violation) = check(&orders, &params, &clearing)
        {
            prop_assert!(false, "{violation}");
        }
    }
}
