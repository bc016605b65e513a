//! A real home's trading decisions (`gridshare agent run`, docs/AGENT.md):
//! a forecast of its net export by time of day learned from its own meter
//! readings, a home battery and an EV as flexible resources, and the offers
//! that follow, priced by the strategy every simulated household uses
//! (`strategy::plan`). No I/O, no clock, no floats: the caller hands it
//! readings, times and the market's prices.

use std::collections::VecDeque;

use gridshare_ledger::tx::Side;

use crate::market::Tariffs;
use crate::strategy::{Bidder, PlannedOffer, plan};

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;
/// Time-of-day slots at most (intervals shorter than 15 s share slots).
pub const SLOTS_PER_DAY_MAX: u64 = 5_760;
/// Each new observation moves its slot's estimate this share of the way
/// (1/4): an exponential moving average over the days seen.
const SMOOTHING_DIVISOR: i64 = 4;
/// Forecast errors kept for the stated accuracy.
pub const ERRORS_KEPT: usize = 96;

/// Energy of `power_w` sustained for `duration_ms`, in Wh (rounded down).
pub fn energy_wh(power_w: u64, duration_ms: u64) -> u64 {
    u64::try_from(u128::from(power_w) * u128::from(duration_ms) / 3_600_000).unwrap_or(u64::MAX)
}

/// The UTC time-of-day slots of a community's intervals: how many a day
/// has, and which one each interval starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSlots {
    genesis_time_ms: u64,
    interval_length_ms: u64,
    per_day: u64,
}

impl ClockSlots {
    /// The slots of intervals of `interval_length_ms` from
    /// `genesis_time_ms`; intervals shorter than a day's
    /// [`SLOTS_PER_DAY_MAX`]th share slots.
    pub fn new(genesis_time_ms: u64, interval_length_ms: u64) -> ClockSlots {
        let interval_length_ms = interval_length_ms.max(1);
        let per_day = (DAY_MS / interval_length_ms).clamp(1, SLOTS_PER_DAY_MAX);
        ClockSlots { genesis_time_ms, interval_length_ms, per_day }
    }

    pub fn per_day(&self) -> u64 {
        self.per_day
    }

    /// The slot `interval` starts in.
    pub fn of(&self, interval: u64) -> u64 {
        let start_ms = self.genesis_time_ms.saturating_add(interval.saturating_mul(self.interval_length_ms));
        (start_ms % DAY_MS) * self.per_day / DAY_MS
    }
}

/// A household's net export (export − import, Wh per interval) by time of
/// day, learned from its metered intervals: one estimate per slot of the
/// day (the caller says which slot an interval is in: [`ClockSlots`] for a
/// real home, the simulated day for a simulated one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forecaster {
    /// One estimate per slot, once a slot was seen.
    slots: Vec<Option<i64>>,
    /// The absolute errors of the latest forecasts, at most [`ERRORS_KEPT`].
    errors: VecDeque<u64>,
}

impl Forecaster {
    /// A forecaster of `per_day` slots (at most [`SLOTS_PER_DAY_MAX`]).
    pub fn new(per_day: u64) -> Forecaster {
        let slots = usize::try_from(per_day.clamp(1, SLOTS_PER_DAY_MAX)).unwrap_or(1);
        Forecaster { slots: vec![None; slots], errors: VecDeque::with_capacity(ERRORS_KEPT) }
    }

    fn index(&self, slot: u64) -> usize {
        usize::try_from(slot % self.slots.len() as u64).unwrap_or(0)
    }

    /// The forecast net export of an interval in `slot`: the slot's
    /// estimate, else that of the latest slot before it that was seen (on
    /// the first day, the interval before: persistence), else 0.
    pub fn forecast_wh(&self, slot: u64) -> i64 {
        let index = self.index(slot);
        let slots = self.slots.len();
        (0..slots).find_map(|back| self.slots[(index + slots - back) % slots]).unwrap_or(0)
    }

    /// Learns that an interval in `slot` had a net export of `actual_wh`,
    /// counting the error of what it would have forecast.
    pub fn learn(&mut self, slot: u64, actual_wh: i64) {
        let forecast = self.forecast_wh(slot);
        if self.slots.iter().any(Option::is_some) {
            if self.errors.len() == ERRORS_KEPT {
                self.errors.pop_front();
            }
            self.errors.push_back(actual_wh.abs_diff(forecast));
        }
        let index = self.index(slot);
        self.slots[index] = Some(match self.slots[index] {
            Some(estimate) => estimate + (actual_wh - estimate) / SMOOTHING_DIVISOR,
            None => actual_wh,
        });
    }

    /// The mean absolute error of the latest forecasts, in Wh, once there
    /// was one.
    pub fn mean_absolute_error_wh(&self) -> Option<u64> {
        let count = self.errors.len() as u64;
        (count > 0).then(|| self.errors.iter().sum::<u64>() / count)
    }

    /// How many forecast errors the accuracy is over.
    pub fn errors_counted(&self) -> usize {
        self.errors.len()
    }
}

/// A home battery as the agent models it: it does what the agent plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Battery {
    pub capacity_wh: u64,
    pub power_w: u64,
    /// Round-trip efficiency, per mille, charged on the way in.
    pub efficiency_per_mille: u64,
    /// Charge never used: kept for an outage.
    pub reserve_wh: u64,
    /// Its state of charge.
    pub charge_wh: u64,
}

impl Battery {
    /// The most energy it can draw in an interval of `interval_ms`.
    pub fn room_wh(&self, interval_ms: u64) -> u64 {
        let headroom = self.capacity_wh.saturating_sub(self.charge_wh);
        let drawn_for_headroom = headroom.saturating_mul(1_000) / self.efficiency_per_mille.max(1);
        energy_wh(self.power_w, interval_ms).min(drawn_for_headroom)
    }

    /// The most energy it can give in an interval of `interval_ms`.
    pub fn available_wh(&self, interval_ms: u64) -> u64 {
        energy_wh(self.power_w, interval_ms).min(self.charge_wh.saturating_sub(self.reserve_wh))
    }

    /// Draws (positive) or gives (negative) `flow_wh`.
    pub fn apply(&mut self, flow_wh: i64) {
        let stored = flow_wh.unsigned_abs().saturating_mul(self.efficiency_per_mille) / 1_000;
        self.charge_wh = if flow_wh >= 0 {
            self.charge_wh.saturating_add(stored).min(self.capacity_wh)
        } else {
            self.charge_wh.saturating_sub(flow_wh.unsigned_abs())
        };
    }
}

/// An electric vehicle: connected every day from `connected_minute` to
/// `departure_minute` (UTC minutes of day; the window may cross midnight),
/// needing `needed_wh` by departure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ev {
    pub connected_minute: u64,
    pub departure_minute: u64,
    pub needed_wh: u64,
    pub power_w: u64,
    /// Charged since it was connected.
    pub charged_wh: u64,
    /// Whether it was connected at the last interval planned.
    pub was_connected: bool,
}

impl Ev {
    /// Whether it is connected at `minute` of day.
    pub fn is_connected(&self, minute: u64) -> bool {
        let (from, to) = (self.connected_minute, self.departure_minute);
        if from <= to { (from..to).contains(&minute) } else { minute >= from || minute < to }
    }

    /// Minutes from `minute` to departure, if connected at `minute`.
    fn minutes_left(&self, minute: u64) -> Option<u64> {
        self.is_connected(minute).then(|| (self.departure_minute + 1_440 - minute) % 1_440)
    }

    /// What it would draw in the interval of `interval_ms` starting at
    /// `minute` charging at full power from arrival until it has what it
    /// needs: an EV without an agent, the baseline its plan is measured
    /// against.
    pub fn on_arrival_wh(&self, minute: u64, interval_ms: u64) -> u64 {
        if !self.is_connected(minute) {
            return 0;
        }
        let since_ms = (minute + 1_440 - self.connected_minute) % 1_440 * 60_000;
        let before = energy_wh(self.power_w, since_ms).min(self.needed_wh);
        energy_wh(self.power_w, interval_ms).min(self.needed_wh - before)
    }

    /// What it still needed when it left, if it leaves by `minute` after
    /// having been connected: a plan that was not carried out in full.
    pub fn short_at_departure_wh(&self, minute: u64) -> Option<u64> {
        (self.was_connected && !self.is_connected(minute))
            .then(|| self.needed_wh.saturating_sub(self.charged_wh))
    }

    /// What it must and what it may draw in the interval starting at
    /// `minute` of day, of `interval_ms`: (must, may), must ≤ may. Must is
    /// what spreads the rest of its need over the intervals to departure.
    pub fn need_wh(&mut self, minute: u64, interval_ms: u64) -> (u64, u64) {
        let Some(minutes_left) = self.minutes_left(minute) else {
            self.was_connected = false;
            return (0, 0);
        };
        if !self.was_connected {
            self.was_connected = true;
            self.charged_wh = 0;
        }
        let remaining = self.needed_wh.saturating_sub(self.charged_wh);
        let may = energy_wh(self.power_w, interval_ms).min(remaining);
        let intervals_left = (minutes_left.saturating_mul(60_000) / interval_ms.max(1)).max(1);
        let must = remaining.div_ceil(intervals_left).min(may);
        (must, may)
    }
}

/// What limits an interval's offers: the meters' power and the account's
/// money.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub import_wh_max: u64,
    pub export_wh_max: u64,
    /// What the account may still reserve for buying, in nano-currency.
    pub budget_nano: i128,
}

/// The plan for one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub interval: u64,
    /// The forecast net export before the battery and the EV.
    pub forecast_wh: i64,
    /// Drawn into the battery (positive) or taken from it (negative).
    pub battery_wh: i64,
    pub ev_wh: u64,
    /// Bought to charge the battery because the market was cheap.
    pub bought_for_battery_wh: u64,
    pub offers: Vec<PlannedOffer>,
}

/// What one interval's decision knows.
#[derive(Clone, Copy, Debug)]
pub struct Situation {
    pub interval: u64,
    pub interval_ms: u64,
    /// The UTC minute of day the interval starts at.
    pub minute: u64,
    pub forecast_wh: i64,
    pub tariffs: Tariffs,
    /// The latest clearing price seen, if any.
    pub last_price_micro_per_kwh: Option<u64>,
    pub limits: Limits,
}

/// The interval's plan: the EV takes what it must, then own surplus; the
/// battery stores what surplus is left and covers what deficit is left; a
/// clearing price below what stored energy saves later (the import tariff
/// less the battery's losses) buys into its remaining room; what is left is
/// offered, at `bidder`'s prices between the tariffs, within `limits`. The
/// battery and the EV are updated as if the plan were followed.
pub fn decide(
    situation: &Situation,
    bidder: &Bidder,
    offers_per_interval: u32,
    battery: Option<&mut Battery>,
    ev: Option<&mut Ev>,
) -> Step {
    let Situation { interval, interval_ms, minute, forecast_wh, tariffs, last_price_micro_per_kwh, limits } =
        *situation;
    let mut net = forecast_wh;
    let mut ev_wh = 0;
    if let Some(ev) = ev {
        let (must, may) = ev.need_wh(minute, interval_ms);
        let from_surplus =
            u64::try_from(net - i64::try_from(must).unwrap_or(i64::MAX)).unwrap_or(0).min(may - must);
        ev_wh = must + from_surplus;
        ev.charged_wh += ev_wh;
        net -= i64::try_from(ev_wh).unwrap_or(i64::MAX);
    }
    let (mut battery_wh, mut bought_for_battery_wh) = (0_i64, 0_u64);
    if let Some(battery) = battery {
        if net > 0 {
            let stored = net.unsigned_abs().min(battery.room_wh(interval_ms));
            battery_wh = i64::try_from(stored).unwrap_or(0);
        } else if net < 0 {
            let given = net.unsigned_abs().min(battery.available_wh(interval_ms));
            battery_wh = -i64::try_from(given).unwrap_or(0);
        }
        net -= battery_wh;
        // Cheap energy now saves the import tariff later, less the losses.
        let worth_micro = tariffs.import_micro_per_kwh * battery.efficiency_per_mille / 1_000;
        if let Some(price) = last_price_micro_per_kwh
            && price < worth_micro
            && battery_wh >= 0
        {
            bought_for_battery_wh = battery.room_wh(interval_ms).saturating_sub(battery_wh.unsigned_abs());
            battery_wh += i64::try_from(bought_for_battery_wh).unwrap_or(0);
            net -= i64::try_from(bought_for_battery_wh).unwrap_or(0);
        }
        battery.apply(battery_wh);
    }
    let mut offers = plan(bidder, &tariffs, interval, net, offers_per_interval);
    limit(&mut offers, &limits);
    Step { interval, forecast_wh, battery_wh, ev_wh, bought_for_battery_wh, offers }
}

/// Cuts `offers` to what the meters can carry and the account can pay:
/// each side's total energy at most its limit, and the buys' reservations
/// (energy × price) at most the budget, the most expensive bids cut first.
fn limit(offers: &mut Vec<PlannedOffer>, limits: &Limits) {
    let mut sold = 0_u64;
    let mut bought = 0_u64;
    let mut budget = limits.budget_nano.max(0);
    for offer in offers.iter_mut() {
        match offer.side {
            Side::Sell => {
                offer.energy_wh = offer.energy_wh.min(limits.export_wh_max.saturating_sub(sold));
                sold += offer.energy_wh;
            }
            Side::Buy => {
                let price = i128::from(offer.price_micro_per_kwh.max(1));
                let affordable = u64::try_from(budget / price).unwrap_or(u64::MAX);
                offer.energy_wh =
                    offer.energy_wh.min(limits.import_wh_max.saturating_sub(bought)).min(affordable);
                bought += offer.energy_wh;
                budget -= i128::from(offer.energy_wh) * price;
            }
        }
    }
    offers.retain(|offer| offer.energy_wh > 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::tests::TARIFFS;

    /// An hour.
    const HOUR_MS: u64 = 3_600_000;
    const BIDDER: Bidder = Bidder { seed: 0, household: 0, ask_per_mille: 300, bid_per_mille: 300 };
    const OPEN: Limits =
        Limits { import_wh_max: 1_000_000, export_wh_max: 1_000_000, budget_nano: i128::MAX };

    fn situation(forecast_wh: i64) -> Situation {
        Situation {
            interval: 12,
            interval_ms: HOUR_MS,
            minute: 12 * 60,
            forecast_wh,
            tariffs: TARIFFS,
            last_price_micro_per_kwh: None,
            limits: OPEN,
        }
    }

    fn battery() -> Battery {
        Battery {
            capacity_wh: 10_000,
            power_w: 3_000,
            efficiency_per_mille: 900,
            reserve_wh: 1_000,
            charge_wh: 5_000,
        }
    }

    #[test]
    fn the_forecast_learns_each_time_of_day_and_states_its_error() {
        // Hourly intervals from midnight: the same day twice, then a third.
        let clock = ClockSlots::new(0, HOUR_MS);
        let mut forecaster = Forecaster::new(clock.per_day());
        assert_eq!(forecaster.forecast_wh(clock.of(5)), 0, "nothing seen");
        assert_eq!(forecaster.mean_absolute_error_wh(), None);
        let day = |hour: u64| if (9..17).contains(&hour) { 2_000 } else { -500 };
        for interval in 0..24 {
            forecaster.learn(clock.of(interval), day(interval));
        }
        // Day two, by time of day: exact.
        for interval in 24..48 {
            assert_eq!(forecaster.forecast_wh(clock.of(interval)), day(interval % 24));
        }
        // On the first day it could only persist the hour before: its error
        // is that of the two switches (at 9 and 17) over 23 forecasts.
        assert_eq!(forecaster.mean_absolute_error_wh(), Some(2 * 2_500 / 23));
        // A different day moves each estimate a quarter of the way.
        forecaster.learn(clock.of(24 + 12), 1_000);
        assert_eq!(forecaster.forecast_wh(clock.of(48 + 12)), 2_000 - 250);
        // An hour not seen yet takes the latest hour before it.
        let mut young = Forecaster::new(clock.per_day());
        young.learn(clock.of(3), -700);
        assert_eq!(young.forecast_wh(clock.of(4)), -700);
        assert_eq!(young.forecast_wh(clock.of(2)), -700, "around the clock");
    }

    #[test]
    fn short_intervals_share_slots_and_slots_follow_the_utc_clock() {
        let clock = ClockSlots::new(0, 1_000);
        assert_eq!(clock.per_day(), SLOTS_PER_DAY_MAX);
        assert_eq!(clock.of(14), clock.of(0), "15 intervals of 1 s share a slot");
        assert_ne!(clock.of(15), clock.of(0));
        // A genesis at 06:00 makes interval 0 a 06:00 slot.
        let shifted = ClockSlots::new(6 * HOUR_MS, HOUR_MS);
        assert_eq!(shifted.of(0), ClockSlots::new(0, HOUR_MS).of(6));
        let mut forecaster = Forecaster::new(shifted.per_day());
        forecaster.learn(shifted.of(0), 42);
        assert_eq!(forecaster.forecast_wh(shifted.of(24)), 42);
    }

    #[test]
    fn surplus_charges_the_battery_first_and_deficit_draws_it_down_to_the_reserve() {
        let mut stored = battery();
        let step = decide(&situation(2_000), &BIDDER, 1, Some(&mut stored), None);
        assert_eq!((step.battery_wh, step.offers.len()), (2_000, 0), "{step:?}");
        assert_eq!(stored.charge_wh, 5_000 + 1_800, "90 % of what it drew");
        // More surplus than its power: the rest is sold above feed-in.
        let mut stored = battery();
        let step = decide(&situation(5_000), &BIDDER, 1, Some(&mut stored), None);
        assert_eq!(step.battery_wh, 3_000);
        assert_eq!((step.offers[0].side, step.offers[0].energy_wh), (Side::Sell, 2_000));
        assert!(step.offers[0].price_micro_per_kwh > TARIFFS.feed_in_micro_per_kwh);
        // A deficit: the battery gives down to its reserve, the rest is bought
        // below import.
        let mut stored = Battery { charge_wh: 2_500, ..battery() };
        let step = decide(&situation(-4_000), &BIDDER, 1, Some(&mut stored), None);
        assert_eq!(step.battery_wh, -1_500);
        assert_eq!((step.offers[0].side, step.offers[0].energy_wh), (Side::Buy, 2_500));
        assert!(step.offers[0].price_micro_per_kwh < TARIFFS.import_micro_per_kwh);
        assert_eq!(stored.charge_wh, 1_000);
    }

    #[test]
    fn a_cheap_market_fills_the_battery_and_a_dear_one_does_not() {
        let cheap = Situation { last_price_micro_per_kwh: Some(100_000), ..situation(0) };
        let mut stored = battery();
        let step = decide(&cheap, &BIDDER, 1, Some(&mut stored), None);
        assert_eq!(step.bought_for_battery_wh, 3_000, "its power for an hour");
        assert_eq!((step.offers[0].side, step.offers[0].energy_wh), (Side::Buy, 3_000));
        // At 0.28, stored energy saves 0.30 × 0.9 = 0.27 later: not worth it.
        let dear = Situation { last_price_micro_per_kwh: Some(280_000), ..situation(0) };
        let step = decide(&dear, &BIDDER, 1, Some(&mut battery()), None);
        assert_eq!((step.bought_for_battery_wh, step.offers.len()), (0, 0));
    }

    #[test]
    fn the_ev_gets_what_it_needs_by_departure_and_own_surplus_first() {
        // Connected 18:00 to 06:00, 12 kWh, 11 kW: 1 kWh an hour at least.
        let mut ev = Ev {
            connected_minute: 18 * 60,
            departure_minute: 6 * 60,
            needed_wh: 12_000,
            power_w: 11_000,
            charged_wh: 0,
            was_connected: false,
        };
        let at = |hour: u64, forecast_wh: i64| Situation { minute: hour * 60, ..situation(forecast_wh) };
        // Away at noon: nothing.
        let step = decide(&at(12, -300), &BIDDER, 1, None, Some(&mut ev));
        assert_eq!(step.ev_wh, 0);
        // 18:00 with no surplus: its share, bought.
        let step = decide(&at(18, 0), &BIDDER, 1, None, Some(&mut ev));
        assert_eq!(step.ev_wh, 1_000);
        assert_eq!((step.offers[0].side, step.offers[0].energy_wh), (Side::Buy, 1_000));
        // 19:00 with 3 kWh of surplus (say a sunny evening): all of it.
        let step = decide(&at(19, 3_000), &BIDDER, 1, None, Some(&mut ev));
        assert_eq!((step.ev_wh, step.offers.len()), (3_000, 0));
        // Through the night it finishes by departure, crossing midnight.
        let mut total = 4_000;
        for hour in [20, 21, 22, 23, 0, 1, 2, 3, 4, 5] {
            total += decide(&at(hour, 0), &BIDDER, 1, None, Some(&mut ev)).ev_wh;
        }
        assert_eq!(total, 12_000);
        // The next evening is a new session.
        assert_eq!(decide(&at(6, 0), &BIDDER, 1, None, Some(&mut ev)).ev_wh, 0);
        assert_eq!(decide(&at(18, 0), &BIDDER, 1, None, Some(&mut ev)).ev_wh, 1_000);
    }

    #[test]
    fn offers_stay_within_the_meters_and_the_budget() {
        let limited = Situation {
            limits: Limits { import_wh_max: 800, export_wh_max: 600, budget_nano: 0 },
            ..situation(5_000)
        };
        let step = decide(&limited, &BIDDER, 3, None, None);
        assert_eq!(step.offers.iter().map(|offer| offer.energy_wh).sum::<u64>(), 600);
        // A budget of 0.1 currency at bids near 0.23: about 430 Wh, never more.
        let poor = Situation {
            limits: Limits { import_wh_max: 10_000, export_wh_max: 0, budget_nano: 100_000_000 },
            ..situation(-5_000)
        };
        let step = decide(&poor, &BIDDER, 2, None, None);
        let reserved: i128 = step
            .offers
            .iter()
            .map(|offer| i128::from(offer.energy_wh) * i128::from(offer.price_micro_per_kwh))
            .sum();
        assert!(reserved <= 100_000_000 && reserved > 90_000_000, "{step:?}");
        assert!(step.offers.iter().all(|offer| offer.side == Side::Buy));
    }
}
