//! gridshare-node: block production, storage, the mempool and the local
//! HTTP API of a Gridshare community. This version runs a dev community
//! with a single local validator; the libp2p market swarm and BFT consensus
//! (docs/NODE-PLAN.md) plug into the same event loop.

pub mod api;
pub mod dev;
pub mod mempool;
pub mod network;
pub mod node;
