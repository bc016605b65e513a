//! Two real processes on loopback: a dev validator and a replica that
//! bootstraps from it over libp2p, verifies every certified block and
//! re-executes it, and ends with the same chain; killed, it restarts from
//! its own store with the same identity and catches up; with the admin API
//! enabled it answers only its bearer token and JSON, and cut off from its
//! peers it catches up after; its own ledger passes the audit.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::time::Duration;

use common::{Method, height, kill, start, stop, wait_for};
use gridshare_api::{ErrorBody, ErrorCode, Role};
use gridshare_ledger::audit::audit_store;
use gridshare_ledger::store::RedbStore;

#[test]
fn a_replica_follows_the_validator_and_catches_up_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (validator_dir, replica_dir) = (dir.path().join("validator"), dir.path().join("replica"));
    let mut validator = start(&["--dev", "--block-time-ms", "100", "--interval-ms", "1000"], &validator_dir);
    let bootstrap = validator.p2p.clone();
    let genesis = validator_dir.join("genesis.bin");
    // The replica's config file runs it on one thread, with the admin API.
    std::fs::create_dir_all(&replica_dir).unwrap();
    std::fs::write(replica_dir.join("config.toml"), "worker_threads = 1\nenable_admin_api = true\n").unwrap();
    let replica_args = ["--genesis", genesis.to_str().unwrap(), "--bootstrap", &bootstrap];
    let mut replica = start(&replica_args, &replica_dir);

    // Until the replica has executed a clearing with a trade and a settlement.
    let status = wait_for(
        "the replica to follow a trade and two settlements",
        &validator.api,
        Duration::from_secs(60),
        || {
            let status = replica.api.status().unwrap();
            (status.trades > 0 && status.settlements > 1).then_some(status)
        },
    );
    assert_eq!(status.role, Role::Replica);
    assert_eq!(status.worker_threads, 1);
    assert!(status.peers >= 1, "{status:?}");
    assert_eq!(status.community_id, validator.api.status().unwrap().community_id);

    // The same block at the same height on both.
    let on_replica = replica.api.block(status.height).unwrap();
    let on_validator = validator.api.block(status.height).unwrap();
    assert_eq!((on_replica.hash, on_replica.state_root), (on_validator.hash, on_validator.state_root));

    // Killed (SIGKILL), the replica misses blocks; restarted on the same
    // data directory it keeps its identity and catches up.
    let replica_p2p = replica.p2p.clone();
    kill(&mut replica);
    let missed_until = wait_for("the validator to go on", &validator.api, Duration::from_secs(30), || {
        let now = height(&validator.api);
        (now >= status.height + 10).then_some(now)
    });
    let mut replica = start(&replica_args, &replica_dir);
    let peer_id = |address: &str| address.rsplit('/').next().unwrap().to_string();
    assert_eq!(peer_id(&replica.p2p), peer_id(&replica_p2p), "the node key persists");
    wait_for("the restarted replica to catch up", &validator.api, Duration::from_secs(60), || {
        (height(&replica.api) >= missed_until).then_some(())
    });
    assert_eq!(
        replica.api.block(missed_until).unwrap().hash,
        validator.api.block(missed_until).unwrap().hash
    );

    // The admin API answers only the token the node made in its data
    // directory (owner-only), and only with a JSON body.
    assert!(replica.process.printed("Admin:").is_some_and(|line| line.contains("admin.token")));
    let token = std::fs::read_to_string(replica_dir.join("admin.token")).unwrap().trim().to_string();
    let body = br#"{"duration_ms": 1500}"#;
    let bearer = format!("Bearer {token}");
    let json = Some("application/json");
    for (headers, content_type, status, code) in [
        (vec![], json, 401, ErrorCode::Unauthorized),
        (vec![("authorization", "Bearer not-the-token")], json, 401, ErrorCode::Unauthorized),
        (vec![("authorization", token.as_str())], json, 401, ErrorCode::Unauthorized),
        (vec![("authorization", bearer.as_str())], Some("text/plain"), 415, ErrorCode::UnsupportedMediaType),
    ] {
        let response =
            replica.api.raw(Method::Post, "/v1/admin/isolate", content_type, &headers, body).unwrap();
        assert_eq!(response.status, status, "{headers:?} {content_type:?}: {:?}", response.json());
        let error: ErrorBody = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(error.code, code);
    }
    let refused = replica.api.isolate(1_500, "not-the-token").unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Unauthorized), "{refused}");

    // Cut off from its peers for a while, it reconnects and catches up.
    assert_eq!(replica.api.isolate(1_500, &token).unwrap().isolated_ms, 1_500);
    wait_for("the replica to be cut off", &validator.api, Duration::from_secs(10), || {
        (replica.api.status().unwrap().peers == 0).then_some(())
    });
    let target = height(&validator.api) + 10;
    wait_for("the isolated replica to catch up", &validator.api, Duration::from_secs(60), || {
        (height(&replica.api) >= target).then_some(())
    });
    let response = replica
        .api
        .raw(Method::Post, "/v1/admin/isolate", json, &[("authorization", &bearer)], b"{}")
        .unwrap();
    let error: ErrorBody = serde_json::from_slice(&response.body).unwrap();
    assert_eq!((response.status, error.code), (400, ErrorCode::BadRequest), "{error:?}");

    stop(&mut replica);
    stop(&mut validator);
    let store = RedbStore::open(replica_dir.join("ledger.redb")).unwrap();
    let report = audit_store(&store, |_| ()).unwrap();
    assert!(report.passed(), "{:?}", report.findings);
    assert!(report.blocks >= status.height && report.trades > 0, "{report:?}");
}
