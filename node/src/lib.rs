//! gridshare-node: the libp2p market swarm, block production with one
//! validator, verifying replicas, the mempool, the query index and the local
//! HTTP API of a Gridshare community. BFT consensus among several validators
//! (docs/NODE-PLAN.md) plugs into the same event loop.

pub mod api;
pub mod config;
pub mod dev;
pub mod genesis_file;
pub mod index;
pub mod mempool;
pub mod metrics;
pub mod network;
pub mod node;
