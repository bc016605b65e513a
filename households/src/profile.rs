//! Seeded household physics: rooftop PV under sunny and cloudy days, load
//! with morning and evening peaks, and the home batteries and EVs, which do
//! what each household's agent planned (`home::decide`) within their power
//! and charge, home at midday with PV or overnight without. One simulated
//! day is `day_intervals` intervals, so a run of a
//! few minutes shows a day's shape. Integer arithmetic only (Wh, W, per
//! mille), and every random draw is a function of (seed, household, slot,
//! stream), so a household that misses an interval does not shift what
//! follows and a seed reproduces every reading and every forecast.

use gridshare_ledger::testkit::SplitMix64;

use crate::home::{Battery, Ev, energy_wh};
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
/// A simulated battery's round-trip efficiency.
const BATTERY_EFFICIENCY_PER_MILLE: u64 = 900;
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

    /// Its battery, half full, as its agent models it too: 90 % round
    /// trip, a tenth kept in reserve.
    pub fn battery(&self) -> Option<Battery> {
        self.has_battery().then_some(Battery {
            capacity_wh: self.battery_capacity_wh,
            power_w: self.battery_power_w,
            efficiency_per_mille: BATTERY_EFFICIENCY_PER_MILLE,
            reserve_wh: self.battery_capacity_wh / 10,
            charge_wh: self.battery_capacity_wh / 2,
        })
    }

    /// Its EV, needing its daily energy by departure: home at midday with
    /// PV (09:00 to 16:00), else overnight (18:00 to 07:00).
    pub fn ev(&self) -> Option<Ev> {
        let (connected_minute, departure_minute) =
            if self.has_pv() { (9 * 60, 16 * 60) } else { (18 * 60, 7 * 60) };
        self.has_ev().then_some(Ev {
            connected_minute,
            departure_minute,
            needed_wh: self.ev_daily_wh,
            power_w: self.ev_power_w,
            charged_wh: 0,
            was_connected: false,
        })
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

    /// How long one slot lasts in the simulated day.
    pub fn slot_ms(&self) -> u64 {
        self.slot_minutes() * 60_000
    }

    /// The minute of day `slot` starts at.
    pub fn start_minute(&self, slot: u64) -> u64 {
        (slot % self.day_slots) * self.slot_minutes()
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

    /// PV output and household load (without the EV) of household
    /// `household` in `slot`, in Wh.
    pub fn pv_and_load_wh(&self, household: u32, traits: &Traits, slot: u64) -> (u64, u64) {
        let (day, minute) = self.time_of(slot);
        let (cloudy, weather) = self.weather(day);
        let pv_w = traits.pv_peak_w * Simulation::sun_per_mille(minute) / 1_000 * weather / 1_000;
        let spread = if cloudy { 350 } else { 50 };
        let clouds = between(draw(&[self.seed, STREAM_CLOUDS, u64::from(household), slot]), 0, 2 * spread);
        let pv_w = (pv_w * (1_000 - spread + clouds) / 1_000).min(traits.pv_peak_w);
        let noise = between(draw(&[self.seed, STREAM_LOAD, u64::from(household), slot]), 850, 1_150);
        let load_w = Simulation::expected_load_w(traits, minute) * noise / 1_000;
        (self.slot_energy_wh(pv_w), self.slot_energy_wh(load_w))
    }
}

/// What a household's agent planned for its battery and its EV in one
/// interval (`home::decide`); the physics carries it out within what they
/// can do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dispatch {
    /// Drawn into the battery (positive) or taken from it (negative).
    pub battery_wh: i64,
    pub ev_wh: u64,
}

/// The energy that crossed a household's meter in one slot, and what the
/// same home would have measured without its flexibility.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flows {
    pub pv_wh: u64,
    /// The household's load, the EV not included.
    pub load_wh: u64,
    /// What the battery drew (positive) or gave (negative).
    pub battery_wh: i64,
    pub ev_wh: u64,
    pub import_wh: u64,
    pub export_wh: u64,
    /// The net export of the same home with no battery and its EV charged
    /// at full power from arrival: what flexibility is measured against.
    pub baseline_net_export_wh: i64,
}

impl Flows {
    /// Export minus import.
    pub fn net_export_wh(&self) -> i64 {
        wh(self.export_wh) - wh(self.import_wh)
    }

    /// The net export of the home without its battery and its EV: the
    /// metered net plus what they drew, as a real agent that knows their
    /// flows computes it. This is what a forecast of the home learns.
    pub fn inflexible_net_export_wh(&self) -> i64 {
        self.net_export_wh() + self.battery_wh + wh(self.ev_wh)
    }
}

fn wh(energy_wh: u64) -> i64 {
    i64::try_from(energy_wh).unwrap_or(i64::MAX)
}

/// A household's physical state: its battery, its EV and its meter's
/// registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Household {
    pub index: u32,
    pub traits: Traits,
    /// The battery as it is (its charge moves with what it is told to do).
    pub battery: Option<Battery>,
    pub ev: Option<Ev>,
    pub import_total_wh: u64,
    pub export_total_wh: u64,
}

impl Household {
    /// A household with its battery half full and its meter at zero.
    pub fn new(index: u32, traits: Traits) -> Household {
        Household {
            index,
            traits,
            battery: traits.battery(),
            ev: traits.ev(),
            import_total_wh: 0,
            export_total_wh: 0,
        }
    }

    /// Lives through `slot` doing `dispatch` as far as the battery's power,
    /// room and charge and the EV's charger and presence allow: the
    /// battery and the meter's registers move.
    pub fn step(&mut self, simulation: &Simulation, slot: u64, dispatch: Dispatch) -> Flows {
        let (pv_wh, load_wh) = simulation.pv_and_load_wh(self.index, &self.traits, slot);
        let (slot_ms, minute) = (simulation.slot_ms(), simulation.start_minute(slot));
        let battery_wh = match &mut self.battery {
            Some(battery) => {
                let done = if dispatch.battery_wh >= 0 {
                    wh(dispatch.battery_wh.unsigned_abs().min(battery.room_wh(slot_ms)))
                } else {
                    -wh(dispatch.battery_wh.unsigned_abs().min(battery.available_wh(slot_ms)))
                };
                battery.apply(done);
                done
            }
            None => 0,
        };
        let (ev_wh, baseline_ev_wh) = match &self.ev {
            Some(ev) if ev.is_connected(minute) => {
                (dispatch.ev_wh.min(energy_wh(ev.power_w, slot_ms)), ev.on_arrival_wh(minute, slot_ms))
            }
            _ => (0, 0),
        };
        let inflexible = wh(pv_wh) - wh(load_wh);
        let net = inflexible - battery_wh - wh(ev_wh);
        let flows = Flows {
            pv_wh,
            load_wh,
            battery_wh,
            ev_wh,
            import_wh: u64::try_from(-net).unwrap_or(0),
            export_wh: u64::try_from(net).unwrap_or(0),
            baseline_net_export_wh: inflexible - wh(baseline_ev_wh),
        };
        self.import_total_wh += flows.import_wh;
        self.export_total_wh += flows.export_wh;
        flows
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

    fn traits(pv_peak_w: u64, battery_capacity_wh: u64, ev_daily_wh: u64) -> Traits {
        Traits {
            pv_peak_w,
            battery_capacity_wh,
            battery_power_w: 3_000,
            ev_daily_wh,
            ev_power_w: 7_400,
            base_load_w: 300,
            morning_peak_w: 1_000,
            evening_peak_w: 2_000,
            ask_per_mille: 100,
            bid_per_mille: 100,
        }
    }

    #[test]
    fn a_pv_household_exports_at_noon_and_imports_in_the_evening() {
        let simulation = Simulation::new(3, &mix());
        // Find a sunny day and look at its noon and its evening.
        let day = (0..50).find(|day| !simulation.weather(*day).0).expect("a sunny day in fifty");
        let mut household = Household::new(0, traits(6_000, 0, 0));
        let noon = household.step(&simulation, day * 24 + 12, Dispatch::default());
        let evening = household.step(&simulation, day * 24 + 19, Dispatch::default());
        assert!(noon.export_wh > 3_000, "{noon:?}");
        assert!(evening.import_wh > 1_500 && evening.export_wh == 0, "{evening:?}");
        assert_eq!(household.export_total_wh, noon.export_wh);
        assert_eq!(household.import_total_wh, noon.import_wh + evening.import_wh);
        assert_eq!(noon.baseline_net_export_wh, noon.net_export_wh(), "nothing flexible");
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
    fn the_battery_and_the_ev_do_what_was_planned_within_what_they_can() {
        let simulation = Simulation::new(5, &mix());
        // Hourly slots; the EV (no PV) is home from 18:00 to 07:00.
        let mut household = Household::new(0, traits(0, 10_000, 12_000));
        assert_eq!(household.battery.map(|battery| battery.charge_wh), Some(5_000));
        // Told to draw far more than its 3 kW: it draws 3 kWh; the EV, not
        // home at noon, draws nothing.
        let noon = household.step(&simulation, 12, Dispatch { battery_wh: 50_000, ev_wh: 5_000 });
        assert_eq!((noon.battery_wh, noon.ev_wh), (3_000, 0));
        assert_eq!(household.battery.map(|battery| battery.charge_wh), Some(5_000 + 2_700), "90 % stored");
        // The meter sees the load and what the battery drew.
        assert_eq!(
            noon.net_export_wh(),
            i64::try_from(noon.pv_wh).unwrap() - i64::try_from(noon.load_wh).unwrap() - 3_000
        );
        assert_eq!(noon.inflexible_net_export_wh(), noon.baseline_net_export_wh);
        // In the evening the EV draws at most its charger's 7.4 kWh an
        // hour, and the battery gives at most down to its reserve.
        let evening = household.step(&simulation, 19, Dispatch { battery_wh: -50_000, ev_wh: 50_000 });
        assert_eq!((evening.battery_wh, evening.ev_wh), (-3_000, 7_400));
        let night = household.step(&simulation, 20, Dispatch { battery_wh: -50_000, ev_wh: 0 });
        let late = household.step(&simulation, 21, Dispatch { battery_wh: -50_000, ev_wh: 0 });
        assert_eq!(
            (night.battery_wh, late.battery_wh),
            (-3_000, -(7_700 - 6_000 - 1_000)),
            "down to its reserve"
        );
        // Without the agent the EV would have charged at full power from
        // 18:00: 7.4 kWh in the first hour, the 4.6 kWh left in the second.
        let baseline_ev = |flows: &Flows| flows.inflexible_net_export_wh() - flows.baseline_net_export_wh;
        assert_eq!(baseline_ev(&evening), 4_600);
        assert_eq!(baseline_ev(&night), 0);
    }

    #[test]
    fn draws_are_reproducible_and_mix_every_value() {
        assert_eq!(draw(&[1, 2, 3]), draw(&[1, 2, 3]));
        assert_ne!(draw(&[1, 2, 3]), draw(&[1, 3, 2]));
    }
}
