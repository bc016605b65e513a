//! What every household of a community shares: the grid tariffs as a
//! household sees them, the mix of installations and the simulated day,
//! and the market's calendar (the genesis, the first and last interval
//! traded, when agents wake).

use gridshare_ledger::genesis::Genesis;

use crate::profile::{Simulation, draw};

/// Random stream of the agents' wake-up offsets.
const STREAM_OFFSET: u64 = 50;

/// Grid tariffs in micro-currency per kWh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tariffs {
    pub import_micro_per_kwh: u64,
    pub feed_in_micro_per_kwh: u64,
    pub network_fee_micro_per_kwh: u64,
}

/// Which households have what, and the simulated day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileMix {
    /// Households with rooftop PV, per mille.
    pub pv_per_mille: u64,
    /// Households with a home battery, per mille.
    pub battery_per_mille: u64,
    /// Households with an electric vehicle, per mille.
    pub ev_per_mille: u64,
    /// Simulated days that are cloudy, per mille.
    pub cloudy_day_per_mille: u64,
    /// How many intervals make one simulated day (24: an interval is an hour).
    pub day_intervals: u64,
    /// The simulated hour of day the run starts at.
    pub start_hour: u64,
}

/// What every agent shares: the market's rules and calendar.
#[derive(Debug)]
pub struct Market {
    pub genesis: Genesis,
    pub simulation: Simulation,
    pub tariffs: Tariffs,
    pub seed: u64,
    pub offers_per_interval: u32,
    /// The interval trading starts in; the simulated day starts with it.
    pub first_interval: u64,
    /// The last interval offered for; its reading is the agents' last act.
    pub last_interval: u64,
    /// The largest offset of an agent after an interval boundary.
    pub offset_spread_ms: u64,
}

impl Market {
    /// The simulated slot of `interval`.
    pub fn slot(&self, interval: u64) -> u64 {
        self.simulation.start_slot + interval.saturating_sub(self.first_interval)
    }

    /// The first interval whose gate closes after `time_ms`.
    pub fn next_open_interval(&self, time_ms: u64) -> u64 {
        self.genesis.first_open_interval(time_ms)
    }

    /// How long after each interval boundary household `household` wakes:
    /// seeded, so that a community's households do not all act at once.
    pub fn offset_ms(&self, household: u32) -> u64 {
        100 + draw(&[self.seed, STREAM_OFFSET, u64::from(household)]) % self.offset_spread_ms.max(1)
    }
}
