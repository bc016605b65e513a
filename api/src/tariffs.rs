//! The tariffs to come as the API shows them (docs/API.md, "Tariffs"): the
//! schedule, each entry in force from its interval on, and the tariffs set
//! for single intervals (dynamic tariffs), for the intervals not settled
//! yet (`GET /v1/tariffs`). An interval's tariffs in force are in
//! `GET /v1/intervals/{n}`.

use gridshare_ledger::genesis::{IntervalTariffs as LedgerIntervalTariffs, Tariffs as LedgerTariffs};
use serde::{Deserialize, Serialize};

/// `GET /v1/tariffs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TariffSchedule {
    /// Intervals below it are settled: what follows is for it and later
    /// ones.
    pub next_settlement_interval: u64,
    /// Ascending; the first entry is in force for `next_settlement_interval`.
    pub schedule: Vec<ScheduledTariffs>,
    /// Ascending; each in place of the schedule for its interval alone.
    pub intervals: Vec<IntervalTariffs>,
}

/// A schedule entry: tariffs in force from `effective_from_interval` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledTariffs {
    pub effective_from_interval: u64,
    pub grid_import_micro_per_kwh: u64,
    pub grid_feed_in_micro_per_kwh: u64,
    pub network_fee_micro_per_kwh: u64,
}

impl From<&LedgerTariffs> for ScheduledTariffs {
    fn from(tariffs: &LedgerTariffs) -> ScheduledTariffs {
        ScheduledTariffs {
            effective_from_interval: tariffs.effective_from_interval,
            grid_import_micro_per_kwh: tariffs.grid_import_micro_per_kwh,
            grid_feed_in_micro_per_kwh: tariffs.grid_feed_in_micro_per_kwh,
            network_fee_micro_per_kwh: tariffs.network_fee_micro_per_kwh,
        }
    }
}

/// The tariffs set for one interval; `null` parts are the schedule's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalTariffs {
    pub interval: u64,
    pub grid_import_micro_per_kwh: Option<u64>,
    pub grid_feed_in_micro_per_kwh: Option<u64>,
    pub network_fee_micro_per_kwh: Option<u64>,
}

impl IntervalTariffs {
    pub fn new(interval: u64, set: &LedgerIntervalTariffs) -> IntervalTariffs {
        IntervalTariffs {
            interval,
            grid_import_micro_per_kwh: set.grid_import_micro_per_kwh,
            grid_feed_in_micro_per_kwh: set.grid_feed_in_micro_per_kwh,
            network_fee_micro_per_kwh: set.network_fee_micro_per_kwh,
        }
    }

    /// The ledger's entry: what a `SetIntervalTariffs` carries.
    pub fn to_ledger(&self) -> LedgerIntervalTariffs {
        LedgerIntervalTariffs {
            grid_import_micro_per_kwh: self.grid_import_micro_per_kwh,
            grid_feed_in_micro_per_kwh: self.grid_feed_in_micro_per_kwh,
            network_fee_micro_per_kwh: self.network_fee_micro_per_kwh,
        }
    }
}
