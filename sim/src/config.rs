//! What a run is: the community (households, validators, household nodes,
//! intervals, market rules), the seed, the faults, the links and the
//! modelled CPU costs. Checked into a [`Config`] with typed errors.

use gridshare_households::{ProfileMix, Tariffs};

use crate::faults::Fault;
use crate::network::LinkConfig;

/// The most households one run may simulate.
pub const HOUSEHOLDS_MAX: u32 = 100_000;
/// The most validators (the ledger's genesis allows 100).
pub const VALIDATORS_MAX: u32 = 100;
/// Intervals of 4 s at least (a gate 1.5 s before each interval and
/// settlement 2 s after its end need room) and of an hour at most.
pub const INTERVAL_MS_MIN: u64 = 4_000;
pub const INTERVAL_MS_MAX: u64 = 3_600_000;
/// How many households share a household node by default: a street's
/// households on one community node, as the testnet's `scale.toml` has
/// 200 households on 12 nodes. Every node verifies every transaction and
/// re-executes every block, so the simulator's own CPU grows with nodes ×
/// transactions; [`HOUSEHOLD_NODES_DEFAULT_MAX`] keeps large runs in
/// minutes.
pub const HOUSEHOLDS_PER_NODE: u32 = 50;
/// Household nodes by default at most.
pub const HOUSEHOLD_NODES_DEFAULT_MAX: u32 = 20;

/// The modelled CPU a node spends on what it handles, in µs. The figures
/// are BENCHMARKS.md's measured CPU per offer (four validators and one
/// household on this machine, one runtime thread per node): a validator
/// about 130 to 170 µs per offer, the household node that takes the
/// submissions 230 to 300 µs, a household node that only relays and
/// replicates about 160 µs. They are split over what a node does with an
/// offer: receive and verify it (gossip) or take it through the API, then
/// execute, store and index it in a block, so that a validator's total is
/// `gossip_tx_us + block_tx_us` (160 µs) and the submitting node's
/// `submission_us + block_tx_us` (300 µs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Costs {
    /// A gossiped transaction: decode, checks, its share of a batch
    /// verification, admission, forwarding.
    pub gossip_tx_us: u64,
    /// A submission through the API: HTTP, checks, verification, admission,
    /// publishing.
    pub submission_us: u64,
    /// A message refused before any signature is checked (a duplicate, a
    /// used nonce, garbage), or a vote.
    pub cheap_us: u64,
    /// A block checked, applied or committed: a base and each transaction.
    pub block_base_us: u64,
    pub block_tx_us: u64,
    /// Building a proposal, per transaction, on top of the block costs.
    pub build_tx_us: u64,
    /// Serving or receiving a batch of transactions or a sync request.
    pub serve_us: u64,
}

impl Costs {
    /// Every cost `factor` times as high: nodes that share a core (8 node
    /// processes on 2 cores, as BENCHMARKS.md's throughput runs had them,
    /// get a quarter of a core each: factor 4).
    pub fn slowed(self, factor: u64) -> Costs {
        Costs {
            gossip_tx_us: self.gossip_tx_us * factor,
            submission_us: self.submission_us * factor,
            cheap_us: self.cheap_us * factor,
            block_base_us: self.block_base_us * factor,
            block_tx_us: self.block_tx_us * factor,
            build_tx_us: self.build_tx_us * factor,
            serve_us: self.serve_us * factor,
        }
    }
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            gossip_tx_us: 120,
            submission_us: 260,
            cheap_us: 10,
            block_base_us: 500,
            block_tx_us: 40,
            build_tx_us: 10,
            serve_us: 50,
        }
    }
}

/// The market rules of the simulated community (the testnet's
/// `scale.toml` by default: 4-second intervals, gates 1.5 s before, a
/// quarter-second block time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Market {
    pub interval_ms: u64,
    pub gate_closure_lead_ms: u64,
    pub settlement_delay_ms: u64,
    pub block_time_ms: u64,
    /// Offers per household per interval (a price ladder).
    pub offers_per_interval: u32,
    pub tariffs: Tariffs,
    pub profiles: ProfileMix,
}

impl Default for Market {
    fn default() -> Self {
        Market {
            interval_ms: 4_000,
            gate_closure_lead_ms: 1_500,
            settlement_delay_ms: 2_000,
            block_time_ms: 250,
            offers_per_interval: 1,
            tariffs: Tariffs {
                import_micro_per_kwh: 300_000,
                feed_in_micro_per_kwh: 80_000,
                network_fee_micro_per_kwh: 10_000,
            },
            profiles: ProfileMix {
                pv_per_mille: 500,
                battery_per_mille: 250,
                ev_per_mille: 250,
                cloudy_day_per_mille: 300,
                day_intervals: 24,
                start_hour: 8,
            },
        }
    }
}

/// One run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub seed: u64,
    pub households: u32,
    pub validators: u32,
    pub household_nodes: u32,
    /// Intervals of trading.
    pub intervals: u64,
    pub faults: Vec<Fault>,
    pub market: Market,
    pub links: LinkConfig,
    pub costs: Costs,
    /// How much slower than [`Costs::default`] `costs` are (for the command
    /// that reproduces a run).
    pub cpu_slowdown: u64,
    /// Gossip waiting from one peer at most (see `inbox.rs`).
    pub gossip_queue_per_link_max: usize,
}

/// Why a configuration cannot be run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--households must be 1 to {HOUSEHOLDS_MAX}, not {0}")]
    Households(u32),
    #[error("--validators must be 1 to {VALIDATORS_MAX}, not {0}")]
    Validators(u32),
    #[error("--household-nodes must be 1 to the number of households ({households}), not {nodes}")]
    HouseholdNodes { nodes: u32, households: u32 },
    #[error("--intervals must be 2 to 100000, not {0}")]
    Intervals(u64),
    #[error("--cpu-slowdown must be 1 to 1000, not {0}")]
    CpuSlowdown(u64),
    #[error("--interval-ms must be {INTERVAL_MS_MIN} to {INTERVAL_MS_MAX}, not {0}")]
    IntervalMs(u64),
}

/// The default number of household nodes for `households` households:
/// one per [`HOUSEHOLDS_PER_NODE`], at least one, at most
/// [`HOUSEHOLD_NODES_DEFAULT_MAX`].
pub fn default_household_nodes(households: u32) -> u32 {
    households.div_ceil(HOUSEHOLDS_PER_NODE).clamp(1, HOUSEHOLD_NODES_DEFAULT_MAX).min(households.max(1))
}

impl Config {
    /// A run of `households` households on `validators` validators with the
    /// default market, links and costs.
    pub fn new(seed: u64, households: u32, validators: u32, intervals: u64) -> Config {
        Config {
            seed,
            households,
            validators,
            household_nodes: default_household_nodes(households),
            intervals,
            faults: Vec::new(),
            market: Market::default(),
            links: LinkConfig::default(),
            costs: Costs::default(),
            cpu_slowdown: 1,
            gossip_queue_per_link_max: crate::inbox::GOSSIP_QUEUE_PER_LINK_MAX,
        }
    }

    /// Refuses what cannot be run.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.households == 0 || self.households > HOUSEHOLDS_MAX {
            return Err(ConfigError::Households(self.households));
        }
        if self.validators == 0 || self.validators > VALIDATORS_MAX {
            return Err(ConfigError::Validators(self.validators));
        }
        if self.household_nodes == 0 || self.household_nodes > self.households {
            return Err(ConfigError::HouseholdNodes {
                nodes: self.household_nodes,
                households: self.households,
            });
        }
        if !(2..=100_000).contains(&self.intervals) {
            return Err(ConfigError::Intervals(self.intervals));
        }
        if !(1..=1_000).contains(&self.cpu_slowdown) {
            return Err(ConfigError::CpuSlowdown(self.cpu_slowdown));
        }
        if !(INTERVAL_MS_MIN..=INTERVAL_MS_MAX).contains(&self.market.interval_ms) {
            return Err(ConfigError::IntervalMs(self.market.interval_ms));
        }
        Ok(())
    }

    pub fn fault(&self, kind: crate::faults::FaultKind) -> Option<&Fault> {
        self.faults.iter().find(|fault| fault.kind == kind)
    }
}
