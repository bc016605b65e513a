//! The Gridshare ledger: protocol objects and their canonical bytes,
//! signatures, the deterministic state machine, Merkle proofs, storage and
//! the audit. Every rule that decides what is valid lives here, so the node
//! and the auditor cannot disagree. See `docs/PROTOCOL.md`.

pub mod audit;
pub mod block;
pub mod consensus;
pub mod encoding;
pub mod execute;
pub mod export;
pub mod genesis;
pub mod hash;
pub mod ids;
pub mod merkle;
pub mod state;
pub mod store;
pub mod testkit;
pub mod tx;

pub use hash::Hash;

/// Millionths of the currency in one unit: prices are micro-currency per kWh.
pub const MICROS_PER_UNIT: u64 = 1_000_000;
/// Billionths of the currency in one unit: money is nano-currency, and
/// Wh × micro-currency per kWh = nano-currency exactly.
pub const NANOS_PER_UNIT: i128 = 1_000_000_000;
