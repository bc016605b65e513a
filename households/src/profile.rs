//! Seeded household profiles: rooftop PV under sunny and cloudy days, load
//! with morning and evening peaks, home batteries that store midday surplus
//! for the evening and EVs charged at noon under PV or in the evening
//! without. One simulated day is `day_intervals` intervals, so a run of a
//! few minutes shows a day's shape. Integer arithmetic only (Wh, W, per
//! mille), and every random draw is a function of (seed, household, slot,
//! stream), so a household that misses an interval does not shift what
//! follows and a seed reproduces every reading and every forecast.

use gridshare_ledger::testkit::SplitMix64;

use crate::market::ProfileMix;

/// Minutes in a day.
const DAY_MINUTES: u64 = 1_440;
/// Sunrise and sunset of the simulated summer day, in minutes after midnight.
const SUNRISE_MINUTE: u64 = 6 * 60;
const SUNSET_MINUTE: u64 = 20 * 60;
/// Random streams, so that each quantity has its own draws.
const STREAM_PV: u64 = 1;
const STREAM_BATTERY: u64 = 2;
const STREAM_EV: u64 = 3;
const STREAM_TRAITS: u64 = 4;
const STREAM_WEATHER: u64 = 5;
const STREAM_CLOUDS: u64 = 6;
const STREAM_LOAD: u64 = 7;
const STREAM_EV_DAY: u64 = 8;
/// Shared by every household: the weather.
const COMMUNITY: u64 = u64::MAX;

/// A pseudo-random number that depends only on `values` (and mixes all of
/// them): splitmix64 over each value in turn.
pub fn draw(values: &[u64]) -> u64 {
    let mut state = 0x243F_6A88_85A3_08D3_u64;
    for value in values {
        state = SplitMix64(state ^ value).next_u64();
    }
    state
}

/// A number in `low..=high` from a draw.
pub fn between(random: u64, low: u64, high: u64) -> u64 {
    low + random % (high - low + 1)
}

/// What one household has: its installations, its habits and how it prices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traits {
    /// Peak PV power, 0 without PV.
    pub pv_peak_w: u64,
    /// Battery capacity, 0 without a battery.
    pub battery_capacity_wh: u64,
    pub battery_power_w: u64,
    /// Energy an EV needs on a driving day, 0 without an EV.
    pub ev_daily_wh: u64,
    pub ev_power_w: u64,
    pub base_load_w: u64,
    pub morning_peak_w: u64,
    pub evening_peak_w: u64,
    /// Where a seller asks, from the feed-in tariff (0) towards the import
    /// tariff (1000), per mille.
    pub ask_per_mille: u64,
    /// Where a buyer bids, from the import tariff (0) down towards the
    /// feed-in tariff (1000), per mille.
    pub bid_per_mille: u64,
}

impl Traits {
    pub fn has_pv(&self) -> bool {
        self.pv_peak_w > 0
    }

    pub fn has_battery(&self) -> bool {
        self.battery_capacity_wh > 0
    }

    pub fn has_ev(&self) -> bool {
        self.ev_daily_wh > 0
    }
}

/// The households that get an installation: the `share_per_mille` of them
/// (rounded) that come first in a seeded shuffle.
fn chosen(seed: u64, stream: u64, households: u32, share_per_mille: u64) -> Vec<bool> {
    let count =
        usize::try_from((u64::from(households) * share_per_mille + 500) / 1_000).unwrap_or(usize::MAX);
    let mut order: Vec<(u64, u32)> =
        (0..households).map(|index| (draw(&[seed, stream, u64::from(index)]), index)).collect();
    order.sort_unstable();
    let mut chosen = vec![false; households as usize];
    for (_, index) in order.into_iter().take(count) {
        chosen[index as usize] = true;
    }
    chosen
}

/// Every household's traits for a seed and a mix: exactly the mix's shares
/// have PV, batteries and EVs.
pub fn community_traits(seed: u64, mix: &ProfileMix, households: u32) -> Vec<Traits> {
    let pv = chosen(seed, STREAM_PV, households, mix.pv_per_mille);
    let battery = chosen(seed, STREAM_BATTERY, households, mix.battery_per_mille);
    let ev = chosen(seed, STREAM_EV, households, mix.ev_per_mille);
    (0..households)
        .map(|index| {
            let i = index as usize;
            let pick = |what: u64, low: u64, high: u64| {
                between(draw(&[seed, STREAM_TRAITS, u64::from(index), what]), low, high)
            };
            Traits {
                pv_peak_w: if pv[i] { pick(1, 30, 90) * 100 } else { 0 },
                battery_capacity_wh: if battery[i] { pick(2, 5, 14) * 1_000 } else { 0 },
                battery_power_w: if battery[i] { pick(3, 25, 50) * 100 } else { 0 },
                ev_daily_wh: if ev[i] { pick(4, 6, 20) * 1_000 } else { 0 },
                ev_power_w: if ev[i] {
                    [3_700, 7_400, 11_000][usize::try_from(pick(5, 0, 2)).unwrap_or(0)]
                } else {
                    0
                },
                base_load_w: pick(6, 15, 45) * 10,
                morning_peak_w: pick(7, 6, 20) * 100,
                evening_peak_w: pick(8, 10, 30) * 100,
                ask_per_mille: pick(9, 50, 600),
                bid_per_mille: pick(10, 50, 600),
            }
        })
        .collect()
}

/// The simulated calendar and weather of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Simulation {
    pub seed: u64,
    /// Slots (intervals) per simulated day.
    pub day_slots: u64,
    /// The slot the run starts at (slot 0 is midnight of day 0).
    pub start_slot: u64,
    pub cloudy_day_per_mille: u64,
}

impl Simulation {
    pub fn new(seed: u64, mix: &ProfileMix) -> Simulation {
        Simulation {
            seed,
            day_slots: mix.day_intervals,
            start_slot: mix.start_hour * mix.day_intervals / 24,
            cloudy_day_per_mille: mix.cloudy_day_per_mille,
        }
    }

    fn slot_minutes(&self) -> u64 {
        DAY_MINUTES / self.day_slots
    }

    /// The energy of `power_w` sustained over one slot.
    pub fn slot_energy_wh(&self, power_w: u64) -> u64 {
        power_w * self.slot_minutes() / 60
    }

    /// The minute of day at the middle of `slot`, and the day.
    pub fn time_of(&self, slot: u64) -> (u64, u64) {
        let minute = (slot % self.day_slots) * self.slot_minutes() + self.slot_minutes() / 2;
        (slot / self.day_slots, minute)
    }

    /// The day's weather: whether it is cloudy, and the share of clear-sky
    /// PV it gives, per mille.
    pub fn weather(&self, day: u64) -> (bool, u64) {
        let random = draw(&[self.seed, STREAM_WEATHER, COMMUNITY, day]);
        let cloudy = random % 1_000 < self.cloudy_day_per_mille;
        let factor = if cloudy { between(random >> 16, 200, 500) } else { between(random >> 16, 850, 1_000) };
        (cloudy, factor)
    }

    /// Clear-sky PV output at `minute`, per mille of peak: a parabola from
    /// sunrise to sunset.
    pub fn sun_per_mille(minute: u64) -> u64 {
        if minute <= SUNRISE_MINUTE || minute >= SUNSET_MINUTE {
            return 0;
        }
        let half = (SUNSET_MINUTE - SUNRISE_MINUTE) / 2;
        let noon = SUNRISE_MINUTE + half;
        let distance = noon.abs_diff(minute);
        1_000 - 1_000 * distance * distance / (half * half)
    }

    /// Expected household load at `minute`, before EV charging, in W.
    fn expected_load_w(traits: &Traits, minute: u64) -> u64 {
        let mut load = traits.base_load_w;
        if minute < 6 * 60 {
            load = load * 7 / 10;
        }
        if (6 * 60 + 30..9 * 60).contains(&minute) {
            load += traits.morning_peak_w;
        }
        if (12 * 60..13 * 60 + 30).contains(&minute) {
            load += traits.morning_peak_w * 3 / 10;
        }
        if (17 * 60 + 30..21 * 60 + 30).contains(&minute) {
            load += traits.evening_peak_w;
        }
        load
    }

    /// The EV's charging window: at noon under one's own PV, else the evening.
    fn ev_window(traits: &Traits) -> std::ops::Range<u64> {
        if traits.has_pv() { 10 * 60..15 * 60 } else { 18 * 60..23 * 60 }
    }

    /// EV charging energy in `slot`: the day's need spread over the window's
    /// slots, at most the charger's power; none on days without driving.
    fn ev_wh(&self, household: u32, traits: &Traits, slot: u64) -> u64 {
        if !traits.has_ev() {
            return 0;
        }
        let (day, minute) = self.time_of(slot);
        let window = Simulation::ev_window(traits);
        // Five driving days in seven.
        if !window.contains(&minute) || draw(&[self.seed, STREAM_EV_DAY, u64::from(household), day]) % 7 >= 5
        {
            return 0;
        }
        let window_slots = (0..self.day_slots)
            .filter(|slot| window.contains(&(slot * self.slot_minutes() + self.slot_minutes() / 2)))
            .count() as u64;
        (traits.ev_daily_wh / window_slots.max(1)).min(self.slot_energy_wh(traits.ev_power_w))
    }

    /// PV and load (EV included) of household `household` in `slot`, in Wh:
    /// the actual values, or the forecast (the day's weather and habits
    /// without the slot's clouds and noise).
    pub fn pv_and_load_wh(&self, household: u32, traits: &Traits, slot: u64, forecast: bool) -> (u64, u64) {
        let (day, minute) = self.time_of(slot);
        let (cloudy, weather) = self.weather(day);
        let mut pv_w = traits.pv_peak_w * Simulation::sun_per_mille(minute) / 1_000 * weather / 1_000;
        let mut load_w = Simulation::expected_load_w(traits, minute);
        if !forecast {
            let spread = if cloudy { 350 } else { 50 };
            let clouds =
                between(draw(&[self.seed, STREAM_CLOUDS, u64::from(household), slot]), 0, 2 * spread);
            pv_w = (pv_w * (1_000 - spread + clouds) / 1_000).min(traits.pv_peak_w);
            let noise = between(draw(&[self.seed, STREAM_LOAD, u64::from(household), slot]), 850, 1_150);
            load_w = load_w * noise / 1_000;
        }
        let ev_wh = self.ev_wh(household, traits, slot);
        (self.slot_energy_wh(pv_w), self.slot_energy_wh(load_w) + ev_wh)
    }
}

/// The energy that crossed a household's meter in one slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flows {
    pub pv_wh: u64,
    pub load_wh: u64,
    pub battery_charge_wh: u64,
    pub battery_discharge_wh: u64,
    pub import_wh: u64,
    pub export_wh: u64,
}

impl Flows {
    /// Export minus import.
    pub fn net_export_wh(&self) -> i64 {
        i64::try_from(self.export_wh).unwrap_or(i64::MAX) - i64::try_from(self.import_wh).unwrap_or(i64::MAX)
    }
}

/// A household's physical state: its battery and its meter's registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Household {
    pub index: u32,
    pub traits: Traits,
    pub battery_wh: u64,
    pub import_total_wh: u64,
    pub export_total_wh: u64,
}

impl Household {
    /// A household with its battery half full and its meter at zero.
    pub fn new(index: u32, traits: Traits) -> Household {
        Household {
            index,
            traits,
            battery_wh: traits.battery_capacity_wh / 2,
            import_total_wh: 0,
            export_total_wh: 0,
        }
    }

    /// The battery covers what it can: it stores surplus and discharges into
    /// deficit, within its power and capacity.
    fn balance(&mut self, simulation: &Simulation, pv_wh: u64, load_wh: u64) -> Flows {
        let limit = simulation.slot_energy_wh(self.traits.battery_power_w);
        let mut flows = Flows { pv_wh, load_wh, ..Flows::default() };
        if pv_wh >= load_wh {
            let surplus = pv_wh - load_wh;
            flows.battery_charge_wh =
                surplus.min(limit).min(self.traits.battery_capacity_wh - self.battery_wh);
            self.battery_wh += flows.battery_charge_wh;
            flows.export_wh = surplus - flows.battery_charge_wh;
        } else {
            let deficit = load_wh - pv_wh;
            flows.battery_discharge_wh = deficit.min(limit).min(self.battery_wh);
            self.battery_wh -= flows.battery_discharge_wh;
            flows.import_wh = deficit - flows.battery_discharge_wh;
        }
        flows
    }

    /// Lives through `slot`: the battery and the meter's registers move.
    pub fn step(&mut self, simulation: &Simulation, slot: u64) -> Flows {
        let (pv_wh, load_wh) = simulation.pv_and_load_wh(self.index, &self.traits, slot, false);
        let flows = self.balance(simulation, pv_wh, load_wh);
        self.import_total_wh += flows.import_wh;
        self.export_total_wh += flows.export_wh;
        flows
    }

    /// The forecast net export of slot `target`, simulating the battery
    /// through the slots `from..target` on forecasts.
    pub fn forecast_net_export_wh(&self, simulation: &Simulation, from: u64, target: u64) -> i64 {
        let mut future = self.clone();
        let mut flows = Flows::default();
        for slot in from..=target {
            let (pv_wh, load_wh) = simulation.pv_and_load_wh(self.index, &self.traits, slot, true);
            flows = future.balance(simulation, pv_wh, load_wh);
        }
        flows.net_export_wh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix() -> ProfileMix {
        ProfileMix {
            pv_per_mille: 500,
            battery_per_mille: 250,
            ev_per_mille: 250,
            cloudy_day_per_mille: 300,
            day_intervals: 24,
            start_hour: 0,
        }
    }

    #[test]
    fn traits_are_deterministic_and_follow_the_mix() {
        let a = community_traits(7, &mix(), 40);
        assert_eq!(a, community_traits(7, &mix(), 40));
        assert_ne!(a, community_traits(8, &mix(), 40));
        assert_eq!(a.iter().filter(|t| t.has_pv()).count(), 20);
        assert_eq!(a.iter().filter(|t| t.has_battery()).count(), 10);
        assert_eq!(a.iter().filter(|t| t.has_ev()).count(), 10);
        for traits in &a {
            assert!(traits.ask_per_mille <= 600 && traits.bid_per_mille <= 600);
            assert!(traits.base_load_w >= 150 && traits.evening_peak_w >= 1_000);
        }
    }

    #[test]
    fn the_sun_rises_peaks_at_noon_and_sets() {
        assert_eq!(Simulation::sun_per_mille(3 * 60), 0);
        assert_eq!(Simulation::sun_per_mille(13 * 60), 1_000);
        assert!(Simulation::sun_per_mille(9 * 60) < Simulation::sun_per_mille(11 * 60));
        assert_eq!(Simulation::sun_per_mille(21 * 60), 0);
    }

    #[test]
    fn a_pv_household_exports_at_noon_and_imports_in_the_evening() {
        let simulation = Simulation::new(3, &mix());
        let traits = Traits {
            pv_peak_w: 6_000,
            battery_capacity_wh: 0,
            battery_power_w: 0,
            ev_daily_wh: 0,
            ev_power_w: 0,
            base_load_w: 300,
            morning_peak_w: 1_000,
            evening_peak_w: 2_000,
            ask_per_mille: 100,
            bid_per_mille: 100,
        };
        // Find a sunny day and look at its noon and its evening.
        let day = (0..50).find(|day| !simulation.weather(*day).0).expect("a sunny day in fifty");
        let mut household = Household::new(0, traits);
        let noon = household.step(&simulation, day * 24 + 12);
        let evening = household.step(&simulation, day * 24 + 19);
        assert!(noon.export_wh > 3_000, "{noon:?}");
        assert!(evening.import_wh > 1_500 && evening.export_wh == 0, "{evening:?}");
        assert_eq!(household.export_total_wh, noon.export_wh);
        assert_eq!(household.import_total_wh, noon.import_wh + evening.import_wh);
    }

    #[test]
    fn cloudy_days_give_less_sun_and_more_noise() {
        let simulation = Simulation::new(11, &mix());
        let (sunny, cloudy): (Vec<u64>, Vec<u64>) = (0..200).partition(|day| !simulation.weather(*day).0);
        assert!(!sunny.is_empty() && !cloudy.is_empty());
        assert!(sunny.iter().all(|day| simulation.weather(*day).1 >= 850));
        assert!(cloudy.iter().all(|day| simulation.weather(*day).1 <= 500));
        // About the configured share of cloudy days.
        assert!((40..=80).contains(&cloudy.len()), "{}", cloudy.len());
    }

    #[test]
    fn a_battery_moves_surplus_into_the_evening() {
        let simulation = Simulation::new(5, &mix());
        let traits = |battery: u64| Traits {
            pv_peak_w: 8_000,
            battery_capacity_wh: battery,
            battery_power_w: 5_000,
            ev_daily_wh: 0,
            ev_power_w: 0,
            base_load_w: 300,
            morning_peak_w: 1_000,
            evening_peak_w: 2_500,
            ask_per_mille: 100,
            bid_per_mille: 100,
        };
        let mut with = Household::new(0, traits(10_000));
        let mut without = Household::new(0, traits(0));
        for slot in 0..48 {
            with.step(&simulation, slot);
            without.step(&simulation, slot);
        }
        assert!(with.import_total_wh < without.import_total_wh);
        assert!(with.export_total_wh < without.export_total_wh);
        assert!(with.battery_wh <= 10_000);
    }

    #[test]
    fn an_ev_charges_in_its_window_on_driving_days() {
        let simulation = Simulation::new(9, &mix());
        let traits = Traits {
            pv_peak_w: 0,
            battery_capacity_wh: 0,
            battery_power_w: 0,
            ev_daily_wh: 12_000,
            ev_power_w: 7_400,
            base_load_w: 300,
            morning_peak_w: 1_000,
            evening_peak_w: 2_000,
            ask_per_mille: 100,
            bid_per_mille: 100,
        };
        let mut charged_days = 0;
        for day in 0..14 {
            let daily: u64 = (0..24).map(|hour| simulation.ev_wh(0, &traits, day * 24 + hour)).sum();
            let outside: u64 = (0..18).map(|hour| simulation.ev_wh(0, &traits, day * 24 + hour)).sum();
            assert_eq!(outside, 0, "no EV charging before 18:00 without PV");
            assert!(daily == 0 || daily == 12_000, "{daily}");
            charged_days += u64::from(daily > 0);
        }
        assert!((6..=13).contains(&charged_days), "{charged_days}");
    }

    #[test]
    fn forecasts_are_close_to_actuals_and_reproducible() {
        let simulation = Simulation::new(21, &mix());
        let traits = community_traits(21, &mix(), 12);
        let mut total_error = 0_u64;
        let mut total_energy = 0_u64;
        for (index, traits) in traits.iter().enumerate() {
            let index = u32::try_from(index).unwrap();
            let mut household = Household::new(index, *traits);
            for slot in 0..48 {
                let forecast = household.forecast_net_export_wh(&simulation, slot, slot);
                let actual = household.step(&simulation, slot).net_export_wh();
                total_error += forecast.abs_diff(actual);
                total_energy += actual.unsigned_abs();
            }
        }
        assert!(total_energy > 0);
        assert!(total_error * 100 / total_energy < 35, "forecast error {total_error} of {total_energy}");
        assert_eq!(draw(&[1, 2, 3]), draw(&[1, 2, 3]));
        assert_ne!(draw(&[1, 2, 3]), draw(&[1, 3, 2]));
    }
}
