//! A household agent's decisions as a pure function of the market, the
//! household and the time: which meter readings to sign and which offers to
//! make, and when to wake next. It decides as a real home's agent does
//! (`home::decide`, which `gridshare agent run` runs): it forecasts from
//! its own meter's readings, by time of the simulated day, never from the
//! simulation's weather. No I/O and no clock: the simulator calls it
//! on simulated time and hands the transactions to a simulated node; the
//! testnet's agent threads call it on the system clock and submit to real
//! nodes (asking the node first what the meter reported last).
//! A meter is billed every interval from its registration on (an interval
//! without a reading settles at an estimate), so the agent reports one
//! reading for every interval: those before trading at zero, then one for
//! each interval the household lives through. Submitting, retrying and
//! nonces (which only the node knows, its mempool included) stay with the
//! caller.

use std::collections::BTreeMap;

use gridshare_ledger::genesis::grid_only_nano;
use gridshare_ledger::ids::{Keypair, PublicKey};
use gridshare_ledger::tx::{MeterReading, Offer, SignedMeterReading};

use crate::home::{Battery, Ev, Forecaster, Limits, Situation, decide};
use crate::market::{Market, Tariffs};
use crate::profile::{Dispatch, Flows, Household};
use crate::strategy::{Bidder, PlannedOffer};

/// Offers are made for an interval whose gate closes at least this long
/// after they are sent, so that they reach the validators in time.
pub const OFFER_MARGIN_MS: u64 = 1_000;
/// At most this many readings are reported at one wake-up (an agent that
/// wakes later than that skips the oldest: their intervals have settled as
/// estimates anyway).
pub const UNREPORTED_MAX: u64 = 64;

/// What a household does at one wake-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Meter readings to submit now, in order: the registers at the end of
    /// an interval, signed by the meter.
    pub readings: Vec<SignedMeterReading>,
    /// Offers to sign and submit now, after the readings.
    pub offers: Option<Offers>,
    /// The household has reported the last interval: it is done.
    pub finished: bool,
    /// When to wake next (its seeded offset after the next boundary).
    pub wake_ms: u64,
}

/// The offers of one wake-up, for one delivery interval, attested by the
/// household's latest signed reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offers {
    pub interval: u64,
    pub attestation: SignedMeterReading,
    pub planned: Vec<PlannedOffer>,
}

impl Offers {
    /// The offer of `planned` by `account` with `nonce` (which its node
    /// knows: the account's last nonce, waiting transactions included).
    pub fn offer(&self, account: PublicKey, nonce: u64, planned: &PlannedOffer) -> Offer {
        Offer {
            account,
            nonce,
            interval: self.interval,
            side: planned.side,
            energy_wh: planned.energy_wh,
            price_micro_per_kwh: planned.price_micro_per_kwh,
            attestation: self.attestation,
        }
    }
}

/// What a household's battery and EV, as its agent planned them, did to
/// what its energy is worth at the grid tariffs alone, against the same
/// home with no battery and its EV charging at full power from arrival.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flexibility {
    pub batteries: u32,
    pub evs: u32,
    /// Σ over the intervals lived through of `grid_only_nano` of the
    /// metered net export (negative: the home paid).
    pub grid_only_nano: i128,
    /// The same for the home without its flexibility.
    pub baseline_grid_only_nano: i128,
    /// How much more the battery holds than when it started (negative:
    /// less).
    pub battery_change_wh: i64,
    /// What the EV drew charging on arrival beyond what the agent's plan
    /// drew so far (negative: the plan drew more): charging still owed.
    pub ev_owed_wh: i64,
    /// What the end state is worth at the grid tariffs: the battery's
    /// change (`grid_only_nano`: more at the feed-in tariff, less at the
    /// import tariff) and the EV's charging still owed, as an import.
    pub end_state_nano: i128,
    /// What EVs still needed when they left: a plan not carried out.
    pub ev_short_wh: u64,
}

impl Flexibility {
    /// What the plans saved against the baseline, the end state counted,
    /// in nano-currency.
    pub fn saved_nano(&self) -> i128 {
        self.grid_only_nano + self.end_state_nano - self.baseline_grid_only_nano
    }

    /// The sum of two households' figures.
    pub fn add(&mut self, other: &Flexibility) {
        self.batteries += other.batteries;
        self.evs += other.evs;
        self.grid_only_nano += other.grid_only_nano;
        self.baseline_grid_only_nano += other.baseline_grid_only_nano;
        self.battery_change_wh += other.battery_change_wh;
        self.ev_owed_wh += other.ev_owed_wh;
        self.end_state_nano += other.end_state_nano;
        self.ev_short_wh += other.ev_short_wh;
    }

    fn count(&mut self, flows: &Flows, tariffs: &Tariffs) {
        self.grid_only_nano += worth(flows.net_export_wh(), tariffs);
        self.baseline_grid_only_nano += worth(flows.baseline_net_export_wh, tariffs);
        let baseline_ev_wh = flows.inflexible_net_export_wh() - flows.baseline_net_export_wh;
        self.ev_owed_wh += baseline_ev_wh - i64::try_from(flows.ev_wh).unwrap_or(i64::MAX);
    }
}

/// `net_export_wh` at the grid tariffs alone (`genesis::grid_only_nano`).
fn worth(net_export_wh: i64, tariffs: &Tariffs) -> i128 {
    grid_only_nano(net_export_wh, tariffs.feed_in_micro_per_kwh, tariffs.import_micro_per_kwh)
}

/// One household's agent: its physics, its model of its battery and EV,
/// and what it last reported, planned and offered.
#[derive(Clone, Debug)]
pub struct Agent {
    pub household: Household,
    /// The battery and the EV as the agent plans them (it assumes they do
    /// what it planned, as a real agent does: docs/AGENT.md).
    battery: Option<Battery>,
    ev: Option<Ev>,
    /// What it planned for the intervals it has not lived through yet.
    planned: BTreeMap<u64, Dispatch>,
    flexibility: Flexibility,
    /// Whether the first wake-up (and its reading at zero) happened.
    started: bool,
    /// The next interval the household has not lived through yet.
    stepped: u64,
    /// The meter's latest signed reading: it attests the offers.
    attestation: Option<SignedMeterReading>,
    /// The last interval offered for (0: none yet).
    offered: u64,
    /// The first interval before trading the meter has not reported yet
    /// (its registration, or after its last reading); `None`: just the
    /// interval before trading.
    unreported_from: Option<u64>,
    /// The household's net export by time of the simulated day, learned
    /// from its own readings of the intervals it traded in.
    forecaster: Forecaster,
}

impl Agent {
    /// The agent of `household`, before trading starts at the market's first
    /// interval.
    pub fn new(household: Household, market: &Market) -> Agent {
        let flexibility = Flexibility {
            batteries: u32::from(household.battery.is_some()),
            evs: u32::from(household.ev.is_some()),
            ..Flexibility::default()
        };
        Agent {
            started: false,
            stepped: market.first_interval,
            attestation: None,
            offered: 0,
            unreported_from: None,
            forecaster: Forecaster::new(market.simulation.day_slots),
            battery: household.battery,
            ev: household.ev,
            planned: BTreeMap::new(),
            flexibility,
            household,
        }
    }

    /// The agent of `household` whose meter has not reported the intervals
    /// from `interval` on (its registration, or after its last reading): the
    /// first wake-up reports each of them up to the interval before trading,
    /// at zero.
    pub fn reporting_from(household: Household, market: &Market, interval: u64) -> Agent {
        Agent { unreported_from: Some(interval), ..Agent::new(household, market) }
    }

    pub fn index(&self) -> u32 {
        self.household.index
    }

    /// The meter's latest signed reading, if any.
    pub fn attestation(&self) -> Option<SignedMeterReading> {
        self.attestation
    }

    /// The mean absolute error of its forecasts so far, in Wh.
    pub fn forecast_error_wh(&self) -> Option<u64> {
        self.forecaster.mean_absolute_error_wh()
    }

    /// What its battery and EV did so far, if it has either, the end
    /// state valued at `tariffs`.
    pub fn flexibility(&self, tariffs: &Tariffs) -> Option<Flexibility> {
        let charge = |battery: Option<Battery>| {
            i64::try_from(battery.map_or(0, |battery| battery.charge_wh)).unwrap_or(i64::MAX)
        };
        let battery_change_wh = charge(self.household.battery) - charge(self.household.traits.battery());
        let end_state_nano = worth(battery_change_wh, tariffs) + worth(-self.flexibility.ev_owed_wh, tariffs);
        (self.flexibility.batteries + self.flexibility.evs > 0).then_some(Flexibility {
            battery_change_wh,
            end_state_nano,
            ..self.flexibility
        })
    }

    /// What to do at `now_ms`. The first wake-up reads the meter (at zero)
    /// for the intervals before trading it has not reported; each later one
    /// lives through the intervals that ended, reads the meter for each of
    /// them, and offers the forecast surplus or deficit of the next interval
    /// still open (once per interval), planning its battery and EV for it.
    /// `meter` signs the readings.
    pub fn decide(&mut self, market: &Market, meter: &Keypair, now_ms: u64) -> Decision {
        let genesis = &market.genesis;
        let mut readings = Vec::new();
        if !self.started {
            self.started = true;
            if let Some(before) = market.first_interval.checked_sub(1) {
                let first =
                    self.unreported_from.unwrap_or(before).max(before.saturating_sub(UNREPORTED_MAX - 1));
                for interval in first..=before {
                    readings.push(self.read(market, meter, interval));
                }
            }
        }
        let current = genesis.interval_at(now_ms);
        let wake_ms = genesis
            .interval_start_ms(current + 1)
            .map_or(u64::MAX, |boundary| boundary.saturating_add(market.offset_ms(self.index())));
        let ended = current.min(market.last_interval + 1);
        // Only the newest UNREPORTED_MAX intervals are read; the household
        // lives through every one of them all the same.
        let read_from = ended.saturating_sub(UNREPORTED_MAX);
        while self.stepped < ended {
            // What crossed the meter: what its registers rose by, with the
            // battery and the EV doing what was planned.
            let slot = market.slot(self.stepped);
            let dispatch = self.planned.remove(&self.stepped).unwrap_or_default();
            let flows = self.household.step(&market.simulation, slot, dispatch);
            self.forecaster.learn(slot, flows.inflexible_net_export_wh());
            self.flexibility.count(&flows, &market.tariffs);
            if self.stepped >= read_from {
                readings.push(self.read(market, meter, self.stepped));
            }
            self.stepped += 1;
        }
        if current > market.last_interval {
            return Decision { readings, offers: None, finished: true, wake_ms };
        }
        let target = market.next_open_interval(now_ms + OFFER_MARGIN_MS).max(current + 1);
        let mut offers = None;
        if let Some(attestation) = self.attestation
            && target <= market.last_interval
            && target > self.offered
        {
            let bidder = Bidder {
                seed: market.seed,
                household: self.index(),
                ask_per_mille: self.household.traits.ask_per_mille,
                bid_per_mille: self.household.traits.bid_per_mille,
            };
            // Simulated time: an interval is a slot of the simulated day.
            // The ledger bounds the offers by the meter.
            let simulation = &market.simulation;
            let minute = simulation.start_minute(market.slot(target));
            let situation = Situation {
                interval: target,
                interval_ms: simulation.slot_ms(),
                minute,
                forecast_wh: self.forecaster.forecast_wh(market.slot(target)),
                tariffs: market.tariffs,
                last_price_micro_per_kwh: None,
                limits: Limits { import_wh_max: u64::MAX, export_wh_max: u64::MAX, budget_nano: i128::MAX },
            };
            if let Some(short_wh) = self.ev.and_then(|ev| ev.short_at_departure_wh(minute)) {
                self.flexibility.ev_short_wh += short_wh;
            }
            let step = decide(
                &situation,
                &bidder,
                market.offers_per_interval,
                self.battery.as_mut(),
                self.ev.as_mut(),
            );
            self.planned.insert(target, Dispatch { battery_wh: step.battery_wh, ev_wh: step.ev_wh });
            offers = Some(Offers { interval: target, attestation, planned: step.offers });
            self.offered = target;
        }
        Decision { readings, offers, finished: false, wake_ms }
    }

    /// The meter's signed reading of the registers at the end of `interval`,
    /// which attests the offers from now on.
    fn read(&mut self, market: &Market, meter: &Keypair, interval: u64) -> SignedMeterReading {
        let reading = MeterReading {
            meter: meter.public(),
            interval,
            import_wh_total: self.household.import_total_wh,
            export_wh_total: self.household.export_total_wh,
        };
        let signed = SignedMeterReading::sign(reading, meter, &market.genesis.community_id);
        self.attestation = Some(signed);
        signed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

    use gridshare_ledger::testkit::{TestCommunity, derived_key, test_market};

    use super::*;
    use crate::market::{ProfileMix, Tariffs};
    use crate::profile::{Simulation, Traits};

    const T0: u64 = 1_000_000;

    fn market(first_interval: u64, last_interval: u64) -> Market {
        let mix = ProfileMix {
            pv_per_mille: 500,
            battery_per_mille: 250,
            ev_per_mille: 250,
            cloudy_day_per_mille: 300,
            day_intervals: 24,
            start_hour: 12,
        };
        Market {
            genesis: TestCommunity::new(3, 1, test_market(), T0).genesis,
            simulation: Simulation::new(3, &mix),
            tariffs: Tariffs {
                import_micro_per_kwh: 300_000,
                feed_in_micro_per_kwh: 80_000,
                network_fee_micro_per_kwh: 10_000,
            },
            seed: 3,
            offers_per_interval: 2,
            first_interval,
            last_interval,
            offset_spread_ms: 200,
        }
    }

    /// A household with PV and no battery: at noon it has a surplus to sell.
    fn sunny_household() -> Household {
        Household::new(
            0,
            Traits {
                pv_peak_w: 8_000,
                battery_capacity_wh: 0,
                battery_power_w: 0,
                ev_daily_wh: 0,
                ev_power_w: 0,
                base_load_w: 300,
                morning_peak_w: 1_000,
                evening_peak_w: 2_000,
                ask_per_mille: 100,
                bid_per_mille: 100,
            },
        )
    }

    #[test]
    fn the_first_wake_up_reads_the_meter_at_zero_and_offers_for_the_next_open_interval() {
        // Intervals of 1 s from T0, gates 500 ms before their start.
        let market = market(5, 9);
        let meter = derived_key(3, 4, 0);
        let mut agent = Agent::new(sunny_household(), &market);
        let now_ms = T0 + 5_100;
        let decision = agent.decide(&market, &meter, now_ms);
        assert_eq!(decision.readings.len(), 1, "{decision:?}");
        let reading = decision.readings[0].reading;
        assert_eq!((reading.interval, reading.import_wh_total, reading.export_wh_total), (4, 0, 0));
        assert!(decision.readings[0].verify(&market.genesis.community_id).is_ok());
        // 5,100 + the 1,000 ms margin + the 500 ms lead is in interval 6.
        let offers = decision.offers.unwrap();
        assert_eq!(offers.interval, 7);
        assert_eq!(offers.attestation, decision.readings[0]);
        assert!(offers.planned.is_empty(), "nothing measured yet, nothing offered");
        assert!(!decision.finished);
        assert_eq!(decision.wake_ms, T0 + 6_000 + market.offset_ms(0));

        // Again in the same interval: nothing new to read or offer.
        let again = agent.decide(&market, &meter, now_ms + 200);
        assert!(again.readings.is_empty() && again.offers.is_none(), "{again:?}");
    }

    #[test]
    fn each_later_wake_up_reads_the_interval_that_ended_and_the_last_one_finishes() {
        let market = market(5, 7);
        let meter = derived_key(3, 4, 0);
        let mut agent = Agent::new(sunny_household(), &market);
        agent.decide(&market, &meter, T0 + 5_100);
        let decision = agent.decide(&market, &meter, T0 + 6_100);
        let readings: Vec<u64> = decision.readings.iter().map(|signed| signed.reading.interval).collect();
        assert_eq!(readings, [5]);
        assert!(decision.readings[0].reading.export_wh_total > 0, "noon PV exports: {decision:?}");
        assert_eq!(decision.offers.as_ref().map(|offers| offers.interval), None, "7 was offered already");
        // A late wake-up two intervals on reads every interval that ended:
        // each is billed.
        let late = agent.decide(&market, &meter, T0 + 8_100);
        let readings: Vec<u64> = late.readings.iter().map(|signed| signed.reading.interval).collect();
        assert_eq!(readings, [6, 7]);
        assert!(late.finished && late.offers.is_none(), "{late:?}");
    }

    #[test]
    fn a_meter_registered_earlier_reports_every_interval_before_trading_at_zero() {
        let market = market(5, 9);
        let meter = derived_key(3, 4, 0);
        let mut agent = Agent::reporting_from(sunny_household(), &market, 2);
        let decision = agent.decide(&market, &meter, T0 + 5_100);
        let readings: Vec<(u64, u64, u64)> = decision
            .readings
            .iter()
            .map(|signed| {
                (signed.reading.interval, signed.reading.import_wh_total, signed.reading.export_wh_total)
            })
            .collect();
        assert_eq!(readings, [(2, 0, 0), (3, 0, 0), (4, 0, 0)]);
        assert_eq!(decision.offers.map(|offers| offers.attestation), decision.readings.last().copied());
    }

    #[test]
    fn it_offers_what_its_own_meter_measured_not_what_the_simulation_knows() {
        let market = market(5, 12);
        let meter = derived_key(3, 4, 0);
        let mut agent = Agent::new(sunny_household(), &market);
        agent.decide(&market, &meter, T0 + 5_100);
        // Interval 5 (noon) lived through: its measured net export is the
        // forecast for interval 8, the next open one (the simulated day has
        // not come round yet: the slot before persists).
        let later = agent.decide(&market, &meter, T0 + 6_100);
        let reading = later.readings[0].reading;
        assert_eq!(reading.interval, 5);
        let measured = reading.export_wh_total - reading.import_wh_total;
        assert!(measured > 0, "noon PV exports");
        let offers = later.offers.unwrap();
        assert_eq!(offers.interval, 8);
        assert_eq!(offers.planned.iter().map(|offer| offer.energy_wh).sum::<u64>(), measured);
        assert!(offers.planned.iter().all(|offer| offer.side == gridshare_ledger::tx::Side::Sell));
        assert_eq!(agent.forecast_error_wh(), None, "one interval learned, nothing forecast yet");
        // The next interval learned is compared with that forecast.
        agent.decide(&market, &meter, T0 + 7_100);
        assert!(agent.forecast_error_wh().is_some());
    }

    #[test]
    fn its_battery_does_what_it_planned_and_saves_against_none() {
        // A simulated day and a half from noon, one wake-up per interval.
        let market = market(5, 40);
        let meter = derived_key(3, 4, 0);
        let traits =
            Traits { battery_capacity_wh: 10_000, battery_power_w: 3_000, ..sunny_household().traits };
        let mut agent = Agent::new(Household::new(0, traits), &market);
        let mut battery_used = false;
        for step in 0..37 {
            let decision = agent.decide(&market, &meter, T0 + 5_100 + 1_000 * step);
            battery_used |= agent.planned.values().any(|dispatch| dispatch.battery_wh != 0);
            if decision.finished {
                break;
            }
        }
        assert!(battery_used);
        // Every plan was lived through, and the battery is where the plans
        // said it would be.
        assert!(agent.planned.is_empty(), "{:?}", agent.planned);
        assert_eq!(agent.battery, agent.household.battery);
        let flexibility = agent.flexibility(&market.tariffs).unwrap();
        assert_eq!((flexibility.batteries, flexibility.evs), (1, 0));
        assert!(flexibility.saved_nano() > 0, "{flexibility:?}");
        // A home without a battery or an EV has no such figure.
        assert_eq!(Agent::new(sunny_household(), &market).flexibility(&market.tariffs), None);
    }

    #[test]
    fn the_same_inputs_make_the_same_decisions() {
        let market = market(5, 9);
        let meter = derived_key(3, 4, 0);
        let run = || {
            let mut agent = Agent::new(sunny_household(), &market);
            (0..5).map(|step| agent.decide(&market, &meter, T0 + 5_100 + 1_000 * step)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
