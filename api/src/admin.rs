//! `POST /v1/admin/isolate`: the testnet's hook to cut a node off from its
//! peers. A node serves it only when run with `--enable-admin-api`, and then
//! only to a request with its bearer token and a JSON body.

use serde::{Deserialize, Serialize};

/// The body of `POST /v1/admin/isolate`: at most `ISOLATION_MS_MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolateRequest {
    pub duration_ms: u64,
}

/// 200 to `POST /v1/admin/isolate`: every peer is disconnected, and
/// connections are refused this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolated {
    pub isolated_ms: u64,
}
