//! gridshare-node: the libp2p market swarm, BFT consensus among the
//! community's validators (Malachite), verifying replicas, the mempool, the
//! query index, the record of what it acknowledged and the local HTTP API of a Gridshare community; its chain
//! decisions in a core with no I/O (`chain`), driven by one event loop
//! (`node`).

pub mod acknowledged;
pub mod api;
pub mod chain;
pub mod clock;
pub mod config;
pub mod consensus;
pub mod dev;
pub mod genesis_file;
pub mod index;
pub mod ip_limits;
pub mod mempool;
pub mod metrics;
pub mod network;
pub mod node;
pub mod start;
