//! Two real processes on loopback: a dev validator and a replica that
//! bootstraps from it over libp2p, verifies every certified block and
//! re-executes it, and ends with the same chain; killed, it restarts from
//! its own store with the same identity and catches up; its own ledger
//! passes the audit.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::time::Duration;

use common::{get, kill, start, stop, wait_for};
use gridshare_ledger::audit::audit_store;
use gridshare_ledger::store::RedbStore;

#[test]
fn a_replica_follows_the_validator_and_catches_up_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (validator_dir, replica_dir) = (dir.path().join("validator"), dir.path().join("replica"));
    let mut validator = start(&["--dev", "--block-time-ms", "100", "--interval-ms", "1000"], &validator_dir);
    let bootstrap = validator.p2p.clone();
    let genesis = validator_dir.join("genesis.bin");
    // The replica's config file runs it on one thread.
    std::fs::create_dir_all(&replica_dir).unwrap();
    std::fs::write(replica_dir.join("config.toml"), "worker_threads = 1\n").unwrap();
    let mut replica =
        start(&["--genesis", genesis.to_str().unwrap(), "--bootstrap", &bootstrap], &replica_dir);

    // Until the replica has executed a clearing with a trade and a settlement.
    let status = wait_for(
        "the replica to follow a trade and two settlements",
        &validator.api,
        Duration::from_secs(60),
        || {
            let status = get(&replica.api, "/v1/status");
            (status["trades"].as_u64().unwrap() > 0 && status["settlements"].as_u64().unwrap() > 1)
                .then_some(status)
        },
    );
    assert_eq!(status["role"], "replica");
    assert_eq!(status["worker_threads"], 1);
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
    let replica_p2p = replica.p2p.clone();
    kill(&mut replica);
    let missed_until = wait_for("the validator to go on", &validator.api, Duration::from_secs(30), || {
        let now = common::height(&validator.api);
        (now >= height + 10).then_some(now)
    });
    let mut replica =
        start(&["--genesis", genesis.to_str().unwrap(), "--bootstrap", &bootstrap], &replica_dir);
    let peer_id = |address: &str| address.rsplit('/').next().unwrap().to_string();
    assert_eq!(peer_id(&replica.p2p), peer_id(&replica_p2p), "the node key persists");
    wait_for("the restarted replica to catch up", &validator.api, Duration::from_secs(60), || {
        (common::height(&replica.api) >= missed_until).then_some(())
    });
    let on_replica = get(&replica.api, &format!("/v1/blocks/{missed_until}"));
    let on_validator = get(&validator.api, &format!("/v1/blocks/{missed_until}"));
    assert_eq!(on_replica["hash"], on_validator["hash"]);

    // Cut off from its peers for a while, it reconnects and catches up.
    let (status, response) =
        common::request(&replica.api, "POST", "/v1/admin/isolate", br#"{"duration_ms": 1500}"#);
    assert_eq!(status, 200, "{response}");
    wait_for("the replica to be cut off", &validator.api, Duration::from_secs(10), || {
        (get(&replica.api, "/v1/status")["peers"] == 0).then_some(())
    });
    let target = common::height(&validator.api) + 10;
    wait_for("the isolated replica to catch up", &validator.api, Duration::from_secs(60), || {
        (common::height(&replica.api) >= target).then_some(())
    });
    let (status, response) = common::request(&replica.api, "POST", "/v1/admin/isolate", b"{}");
    assert_eq!((status, response["code"].as_str()), (400, Some("bad_request")), "{response}");

    stop(&mut replica);
    stop(&mut validator);
    let store = RedbStore::open(replica_dir.join("ledger.redb")).unwrap();
    let report = audit_store(&store, |_| ()).unwrap();
    assert!(report.passed(), "{:?}", report.findings);
    assert!(report.blocks >= height && report.trades > 0, "{report:?}");
}
