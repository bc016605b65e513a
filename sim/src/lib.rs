//! gridshare-sim: a deterministic simulator of a whole Gridshare community.
//!
//! Every node runs the real chain core of the node (`ChainCore` on a
//! `MemoryStore` with its index in memory: the same admission, batch
//! verification, mempool, gossip verdicts, bans, sync and block execution
//! as a `gridshare-node` process), every household the testnet's agent
//! decisions (`gridshare-households`), all in one process on simulated
//! time and a simulated network, driven by one seeded PRNG. What is
//! modelled rather than real: the network (latency, loss, duplication,
//! reordering, partitions: `network.rs`), gossipsub's per-peer queues and
//! duplicate cache and each node's CPU (a modelled cost per message, so
//! that overload emerges: `inbox.rs`, `config::Costs`), and the ordering of
//! blocks, which a deterministic sequencer does behind consensus's `Chain`
//! seam instead of Malachite's BFT consensus (`sequencer.rs`).
//!
//! The same configuration and seed give the same report byte for byte: no
//! wall clock, no OS randomness and no hash-map order decides anything.
//! [`run`] runs one configuration; the binary (`main.rs`) parses
//! `gridshare-sim run` and `gridshare-sim sweep`.

pub mod agents;
pub mod config;
pub mod faults;
pub mod inbox;
pub mod network;
pub mod node;
pub mod report;
pub mod scheduler;
pub mod sequencer;
pub mod world;

pub use config::{Config, ConfigError};
pub use report::Report;

/// Why a run could not be carried out (a failing check is a report, not
/// an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot set the simulation up: {0}")]
    Setup(#[from] world::SetupError),
}

/// The command line that reproduces `config` (with the default market,
/// links and costs, as the binary runs them).
pub fn command(config: &Config) -> String {
    let mut command = format!(
        "gridshare-sim run --households {} --validators {} --household-nodes {} --intervals {} --offers-per-interval {} --seed {}",
        config.households,
        config.validators,
        config.household_nodes,
        config.intervals,
        config.market.offers_per_interval,
        config.seed
    );
    if config.market.interval_ms != config::Market::default().interval_ms {
        command.push_str(&format!(" --interval-ms {}", config.market.interval_ms));
    }
    if config.cpu_slowdown != 1 {
        command.push_str(&format!(" --cpu-slowdown {}", config.cpu_slowdown));
    }
    if !config.faults.is_empty() {
        command.push_str(&format!(" --faults {}", faults::faults_text(&config.faults)));
    }
    command
}

/// Runs `config` to its end and checks it.
pub fn run(config: &Config) -> Result<Report, RunError> {
    config.check()?;
    let mut world = world::World::new(config.clone())?;
    world.run();
    Ok(report::report(&world, command(config)))
}
