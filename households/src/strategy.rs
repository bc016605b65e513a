//! A household's bidding strategy: sell the forecast surplus, buy the
//! forecast deficit, with limit prices between the feed-in and the import
//! tariff (selling to a neighbour only pays above feed-in, buying only
//! below import), split into a small price ladder when the manifest asks
//! for several offers per interval.

use gridshare_ledger::tx::Side;

use crate::market::Tariffs;
use crate::profile::{between, draw};

/// Below this a forecast surplus or deficit is not worth an offer.
pub const MIN_OFFER_WH: u64 = 10;
/// Each further offer of a ladder asks (bids) this share of the spread
/// higher (lower), per mille.
const LADDER_STEP_PER_MILLE: u64 = 20;
/// How far a household's price moves from interval to interval, per mille
/// of the spread either way.
const PRICE_JITTER_PER_MILLE: u64 = 50;
const STREAM_PRICE: u64 = 40;

/// One offer to sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedOffer {
    pub side: Side,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
}

/// What a household knows when it bids.
#[derive(Clone, Copy, Debug)]
pub struct Bidder {
    pub seed: u64,
    pub household: u32,
    /// From feed-in (0) to import (1000): where its first ask sits.
    pub ask_per_mille: u64,
    /// From import (0) down to feed-in (1000): where its first bid sits.
    pub bid_per_mille: u64,
}

/// The offers for `interval` given the forecast net export: a surplus is
/// sold, a deficit bought, in `offers` slices at laddered prices.
pub fn plan(
    bidder: &Bidder,
    tariffs: &Tariffs,
    interval: u64,
    forecast_net_export_wh: i64,
    offers: u32,
) -> Vec<PlannedOffer> {
    let energy_wh = forecast_net_export_wh.unsigned_abs();
    if energy_wh < MIN_OFFER_WH {
        return Vec::new();
    }
    let side = if forecast_net_export_wh > 0 { Side::Sell } else { Side::Buy };
    let feed_in = tariffs.feed_in_micro_per_kwh;
    let import = tariffs.import_micro_per_kwh;
    let spread = import - feed_in;
    let jitter = between(
        draw(&[bidder.seed, STREAM_PRICE, u64::from(bidder.household), interval]),
        0,
        2 * PRICE_JITTER_PER_MILLE,
    );
    let position = |base: u64| (base + jitter).saturating_sub(PRICE_JITTER_PER_MILLE).clamp(10, 990);
    // Never a slice under MIN_OFFER_WH: fewer, larger slices instead.
    let slices = u64::from(offers.max(1)).min(energy_wh / MIN_OFFER_WH).max(1);
    (0..slices)
        .map(|slice| {
            let step = slice * LADDER_STEP_PER_MILLE;
            let price = match side {
                // A seller asks above feed-in, never as much as import.
                Side::Sell => feed_in + spread * (position(bidder.ask_per_mille) + step).min(990) / 1_000,
                // A buyer bids below import, never as little as feed-in.
                Side::Buy => import - spread * (position(bidder.bid_per_mille) + step).min(990) / 1_000,
            };
            let share = energy_wh / slices + u64::from(slice < energy_wh % slices);
            PlannedOffer { side, energy_wh: share, price_micro_per_kwh: price.max(1) }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Tariffs of the strategy's tests, and of `home`'s.
    pub(crate) const TARIFFS: Tariffs = Tariffs {
        import_micro_per_kwh: 300_000,
        feed_in_micro_per_kwh: 80_000,
        network_fee_micro_per_kwh: 10_000,
    };

    fn bidder(household: u32) -> Bidder {
        Bidder { seed: 1, household, ask_per_mille: 200, bid_per_mille: 200 }
    }

    #[test]
    fn surplus_is_sold_and_deficit_bought_between_the_tariffs() {
        for interval in 0..50 {
            let sell = plan(&bidder(1), &TARIFFS, interval, 2_500, 1);
            assert_eq!(sell.len(), 1);
            assert_eq!((sell[0].side, sell[0].energy_wh), (Side::Sell, 2_500));
            assert!((80_001..300_000).contains(&sell[0].price_micro_per_kwh), "{sell:?}");
            let buy = plan(&bidder(1), &TARIFFS, interval, -1_200, 1);
            assert_eq!((buy[0].side, buy[0].energy_wh), (Side::Buy, 1_200));
            assert!((80_001..300_000).contains(&buy[0].price_micro_per_kwh), "{buy:?}");
            // With these positions the bid is above the ask plus the fee:
            // neighbours trade rather than both going to the grid.
            assert!(
                buy[0].price_micro_per_kwh > sell[0].price_micro_per_kwh + TARIFFS.network_fee_micro_per_kwh
            );
        }
    }

    #[test]
    fn nothing_is_offered_for_a_negligible_forecast() {
        assert!(plan(&bidder(0), &TARIFFS, 3, 0, 4).is_empty());
        assert!(plan(&bidder(0), &TARIFFS, 3, 9, 4).is_empty());
        assert!(plan(&bidder(0), &TARIFFS, 3, -9, 4).is_empty());
    }

    #[test]
    fn a_ladder_splits_the_energy_exactly_and_steps_the_price() {
        let offers = plan(&bidder(2), &TARIFFS, 7, 1_003, 4);
        assert_eq!(offers.len(), 4);
        assert_eq!(offers.iter().map(|offer| offer.energy_wh).sum::<u64>(), 1_003);
        assert!(offers.windows(2).all(|pair| pair[0].price_micro_per_kwh < pair[1].price_micro_per_kwh));
        let bids = plan(&bidder(2), &TARIFFS, 7, -1_003, 4);
        assert!(bids.windows(2).all(|pair| pair[0].price_micro_per_kwh > pair[1].price_micro_per_kwh));
        // Small amounts make fewer slices, none below the minimum.
        let small = plan(&bidder(2), &TARIFFS, 7, 25, 8);
        assert_eq!(small.len(), 2);
        assert!(small.iter().all(|offer| offer.energy_wh >= MIN_OFFER_WH));
    }

    #[test]
    fn prices_are_deterministic_and_vary_between_intervals() {
        let prices: Vec<u64> = (0..20)
            .map(|interval| plan(&bidder(3), &TARIFFS, interval, 500, 1)[0].price_micro_per_kwh)
            .collect();
        let again: Vec<u64> = (0..20)
            .map(|interval| plan(&bidder(3), &TARIFFS, interval, 500, 1)[0].price_micro_per_kwh)
            .collect();
        assert_eq!(prices, again);
        assert!(prices.iter().any(|price| *price != prices[0]));
        // Extreme positions stay strictly inside the tariffs.
        let greedy = Bidder { seed: 1, household: 0, ask_per_mille: 1_000, bid_per_mille: 1_000 };
        for offer in plan(&greedy, &TARIFFS, 1, 5_000, 8).iter().chain(&plan(&greedy, &TARIFFS, 1, -5_000, 8))
        {
            assert!((80_001..300_000).contains(&offer.price_micro_per_kwh), "{offer:?}");
        }
    }
}
