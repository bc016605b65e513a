//! gridshare-testnet: a local community of real `gridshare-node` processes
//! on loopback, driven by simulated households, perturbed by the faults of
//! a manifest, checked at the end (one chain everywhere, certificates, the
//! audit, every acknowledged transaction accounted for) and reported. A
//! seed reproduces the community: keys, households, profiles and prices.

pub mod agent;
pub mod chain;
mod checks;
pub mod journal;
pub mod manifest;
pub mod monitor;
pub mod nodes;
pub mod perturb;
pub mod report;
pub mod run;
pub mod setup;

// The households (physics and strategy) live in their own crate, shared
// with the simulator.
pub use gridshare_households::{profile, strategy};
