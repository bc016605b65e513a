//! Shared by the process tests: `gridshare-node` processes started and
//! stopped through the API crate's harness (each one's log in a file beside
//! its data directory), their APIs through the one client, and waits for a
//! node's next block with a deadline.

#![allow(dead_code)] // Each test binary uses a part of this.

use std::path::Path;
use std::time::Duration;

pub(crate) use gridshare_api::client::{Client, Method, Submission};
use gridshare_api::harness::{self, NodeLaunch, NodeProcess, STOP_TIMEOUT, Signal};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The log filter of the nodes under test.
const LOG_FILTER: &str = "warn,arc_malachitebft=error,arc_malachitebft_network=off";

/// A running `gridshare-node`, killed if the test fails before stopping it.
pub(crate) struct Node {
    pub(crate) process: NodeProcess,
    /// A client of its API.
    pub(crate) api: Client,
    /// The first libp2p address, with `/p2p/PEER_ID`.
    pub(crate) p2p: String,
}

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_gridshare-node");

/// Runs a `gridshare-node` subcommand to completion; returns its stdout.
pub(crate) fn run_to_end(args: &[&str]) -> Vec<String> {
    let stdout = harness::run_to_end(Path::new(BINARY), args, &[("RUST_LOG", "warn")])
        .unwrap_or_else(|error| panic!("{error}"));
    stdout.lines().map(str::to_string).collect()
}

/// `gridshare-node init` of `dir`, with `genesis` if given; returns its stdout.
pub(crate) fn init(dir: &Path, genesis: Option<&Path>) -> Vec<String> {
    let mut args = vec!["init", "--data-dir", dir.to_str().unwrap()];
    if let Some(genesis) = genesis {
        args.extend(["--genesis", genesis.to_str().unwrap()]);
    }
    run_to_end(&args)
}

/// A loopback port the OS hands out now, for a validator's consensus
/// swarm: the others must know it before it starts.
pub(crate) fn free_port() -> u16 {
    harness::loopback_ports(1).unwrap()[0]
}

/// Starts `gridshare-node run ARGS --data-dir DIR` on loopback with
/// OS-assigned ports, and reads its API and P2P addresses from stdout. Its
/// log is `DIR.log`.
pub(crate) fn start(args: &[&str], data_dir: &Path) -> Node {
    let mut launch = NodeLaunch::new(
        &data_dir.file_name().unwrap().to_string_lossy(),
        Path::new(BINARY),
        &data_dir.with_extension("log"),
    )
    .arg("run")
    .args(args)
    .args(["--api", "127.0.0.1:0", "--no-mdns", "--data-dir"])
    .arg(data_dir)
    .env("RUST_LOG", LOG_FILTER);
    if !args.contains(&"--p2p") {
        launch = launch.args(["--p2p", "/ip4/127.0.0.1/tcp/0"]);
    }
    if !args.contains(&"--consensus-p2p") {
        launch = launch.args(["--consensus-p2p", "/ip4/127.0.0.1/tcp/0"]);
    }
    let process = launch.start().unwrap_or_else(|error| panic!("{error}"));
    Node { api: process.client(), p2p: process.p2p().to_string(), process }
}

/// SIGTERM, then waits for a clean exit; returns what the node printed.
pub(crate) fn stop(node: &mut Node) -> Vec<String> {
    let stopped = node.process.stop(STOP_TIMEOUT);
    assert!(
        stopped.clean,
        "{} did not stop cleanly: {:?}; its log:\n{}",
        node.process.name(),
        stopped.status,
        node.log()
    );
    stopped.lines
}

/// SIGKILL: the node gets no chance to clean up.
pub(crate) fn kill(node: &mut Node) {
    node.process.kill();
}

/// SIGSTOP or SIGCONT.
pub(crate) fn signal(node: &Node, signal: Signal) {
    node.process.signal(signal).unwrap();
}

impl Node {
    /// The end of its log, for a failure's message.
    pub(crate) fn log(&self) -> String {
        self.process.log_tail(40)
    }
}

/// Checks `probe` now and after each new block of the node `pace` (whose
/// blocks are what changes the state probed), failing after `limit`.
pub(crate) fn wait_for<T>(what: &str, pace: &Client, limit: Duration, probe: impl FnMut() -> Option<T>) -> T {
    harness::wait_for(what, pace, limit, probe).unwrap_or_else(|error| panic!("{error}"))
}

/// The height a node reports.
pub(crate) fn height(api: &Client) -> u64 {
    api.status().unwrap().height
}

/// Submits a signed transaction that must be admitted.
pub(crate) fn admit(api: &Client, tx: &gridshare_ledger::tx::SignedTx) {
    match api.submit(tx).unwrap() {
        Submission::Admitted { .. } => {}
        refused => panic!("{} refused {:?}: {refused:?}", api.url(), tx.tx.kind()),
    }
}

/// `GET path` as `T`, checked to be exactly what the node sent: the JSON
/// parsed into `T` and serialized back is the JSON that came, so no field
/// the node sends is missing from the type (the check `deny_unknown_fields`
/// would make) and none is renamed.
pub(crate) fn exact<T: DeserializeOwned + Serialize>(api: &Client, path: &str) -> T {
    let response = api.raw(Method::Get, path, None, &[], b"").unwrap();
    assert_eq!(response.status, 200, "GET {path}: {}", String::from_utf8_lossy(&response.body));
    let sent = response.json().unwrap_or_else(|error| panic!("GET {path}: not JSON: {error}"));
    let parsed: T =
        serde_json::from_value(sent.clone()).unwrap_or_else(|error| panic!("GET {path}: {error}: {sent}"));
    assert_eq!(serde_json::to_value(&parsed).unwrap(), sent, "GET {path}: the type does not hold all of it");
    parsed
}

/// The consensus id (peer id) that `gridshare-node init` printed: what the
/// other validators name this one by, `ADDRESS/p2p/ID`.
pub(crate) fn printed_consensus_id(printed: &[String]) -> String {
    let line = printed.iter().find(|line| line.starts_with("Consensus id:")).unwrap();
    line.trim_start_matches("Consensus id:").trim().to_string()
}
