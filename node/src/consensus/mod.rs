//! BFT consensus among the community's validators with Malachite 0.8.2
//! (every `arc-malachitebft-*` crate pinned exactly in the root
//! `Cargo.toml`): the context (`context`), the wire and WAL codec
//! (`codec`), who may speak on the consensus swarm (`peers`), bounded
//! reassembly of proposal streams (`streams`), and the application side of
//! Malachite's channel API (`app`), which builds, streams, checks and
//! commits Gridshare blocks.

pub mod app;
pub mod codec;
pub mod context;
pub mod peers;
pub mod streams;
