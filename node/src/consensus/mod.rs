//! BFT consensus among the community's validators with Malachite
//! (docs/NODE-PLAN.md): the context (`context`), the wire and WAL codec
//! (`codec`), and the application side of Malachite's channel API
//! (`app`), which builds, streams, checks and commits Gridshare blocks.

pub mod app;
pub mod codec;
pub mod context;
