//! Two real processes on loopback: a dev validator and a replica that
//! bootstraps from it over libp2p, verifies every certified block and
//! re-executes it, and ends with the same chain; killed, it restarts from
//! its own store with the same identity and catches up; its own ledger
//! passes the audit.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use gridshare_ledger::audit::audit_store;
use gridshare_ledger::store::RedbStore;

struct Node {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    api: String,
    p2p: Option<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str], data_dir: &Path) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridshare-node"))
        .arg("run")
        .args(args)
        .args(["--api", "127.0.0.1:0", "--p2p", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut api, mut p2p) = (None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("API:") {
            api = Some(url.trim().trim_start_matches("http://").trim_end_matches("/v1/status").to_string());
        } else if let Some(address) = line.strip_prefix("P2P:") {
            p2p = Some(address.trim().to_string());
        } else if line.starts_with("Data dir:") {
            break;
        }
    }
    Node { child, lines, api: api.unwrap(), p2p }
}

fn get(address: &str, path: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let (start, end) = (body.find('{').unwrap(), body.rfind('}').unwrap());
    serde_json::from_str(&body[start..=end]).unwrap()
}

fn stop(node: &mut Node) {
    let pid = node.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    for line in node.lines.by_ref() {
        line.unwrap();
    }
    assert!(node.child.wait().unwrap().success());
}

#[test]
fn a_replica_follows_the_validator_and_catches_up_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (validator_dir, replica_dir) = (dir.path().join("validator"), dir.path().join("replica"));
    let mut validator = start(&["--dev", "--block-time-ms", "100", "--interval-ms", "1000"], &validator_dir);
    let bootstrap = validator.p2p.clone().unwrap();
    let genesis = validator_dir.join("genesis.bin");
    let mut replica =
        start(&["--genesis", genesis.to_str().unwrap(), "--bootstrap", &bootstrap], &replica_dir);

    // Until the replica has executed a clearing with a trade and a settlement.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = get(&replica.api, "/v1/status");
        if status["trades"].as_u64().unwrap() > 0 && status["settlements"].as_u64().unwrap() > 1 {
            break status;
        }
        assert!(Instant::now() < deadline, "the replica did not follow within 60 s: {status}");
        std::thread::yield_now();
    };
    assert_eq!(status["role"], "replica");
    assert!(status["peers"].as_u64().unwrap() >= 1, "{status}");
    let validator_status = get(&validator.api, "/v1/status");
    assert_eq!(status["community_id"], validator_status["community_id"]);

    // The same block at the same height on both.
    let height = status["height"].as_u64().unwrap();
    let on_replica = get(&replica.api, &format!("/v1/blocks/{height}"));
    let on_validator = get(&validator.api, &format!("/v1/blocks/{height}"));
    assert_eq!(on_replica["hash"], on_validator["hash"]);
    assert_eq!(on_replica["state_root"], on_validator["state_root"]);

    // Killed (SIGKILL), the replica misses blocks; restarted on the same
    // data directory it keeps its identity and catches up.
    let replica_p2p = replica.p2p.clone().unwrap();
    replica.child.kill().unwrap();
    replica.child.wait().unwrap();
    let missed_until = loop {
        let height_now = get(&validator.api, "/v1/status")["height"].as_u64().unwrap();
        if height_now >= height + 10 {
            break height_now;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(30), "the validator stalled");
        std::thread::yield_now();
    };
    let mut replica =
        start(&["--genesis", genesis.to_str().unwrap(), "--bootstrap", &bootstrap], &replica_dir);
    let peer_id = |address: &str| address.rsplit('/').next().unwrap().to_string();
    assert_eq!(peer_id(replica.p2p.as_ref().unwrap()), peer_id(&replica_p2p), "the node key persists");
    let caught_up = Instant::now() + Duration::from_secs(60);
    while get(&replica.api, "/v1/status")["height"].as_u64().unwrap() < missed_until {
        assert!(Instant::now() < caught_up, "the restarted replica did not catch up within 60 s");
        std::thread::yield_now();
    }
    let on_replica = get(&replica.api, &format!("/v1/blocks/{missed_until}"));
    let on_validator = get(&validator.api, &format!("/v1/blocks/{missed_until}"));
    assert_eq!(on_replica["hash"], on_validator["hash"]);

    stop(&mut replica);
    stop(&mut validator);
    let store = RedbStore::open(replica_dir.join("ledger.redb")).unwrap();
    let report = audit_store(&store, |_| ()).unwrap();
    assert!(report.passed(), "{:?}", report.findings);
    assert!(report.blocks >= height && report.trades > 0, "{report:?}");
}
