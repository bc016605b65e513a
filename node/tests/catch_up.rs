//! A replica far behind a community of large blocks catches up, with real
//! processes on loopback: a validator's store holds 20 certified blocks of
//! 1,000 offers each (about 9 MB of blocks, more than the 10 MiB the old
//! catch-up could carry in one answer once encoded), made here with the
//! ledger's own builder and the validator's key, as if the replica had been
//! stopped while the community traded. The validator goes on from there;
//! a new replica that bootstraps from it asks for blocks, gets them in
//! answers of at most `SYNC_RESPONSE_BYTES_MAX` read off the validator's
//! event loop, verifies and re-executes them, and reaches the same chain.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::time::Duration;

use common::{height, init, start, wait_for};
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::genesis::MarketParams;
use gridshare_ledger::state::State;
use gridshare_ledger::store::{RedbStore, STORE_FILE_NAME, Store};
use gridshare_ledger::testkit::{LocalValidator, TestCommunity, test_market};
use gridshare_ledger::tx::Side;
use gridshare_node::node::now_ms;

const HOUSEHOLDS: u32 = 1_000;
const BLOCKS: u64 = 20;
const INTERVAL_MS: u64 = 2_000;

#[test]
fn a_replica_far_behind_large_blocks_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (validator_dir, replica_dir) = (dir.path().join("validator"), dir.path().join("replica"));
    std::fs::create_dir_all(&validator_dir).unwrap();

    // A community whose history started well before now: one block of
    // registrations, then a block per interval, each with an offer of every
    // household for the interval after next.
    let market = MarketParams { interval_length_ms: INTERVAL_MS, gate_closure_lead_ms: 500, ..test_market() };
    let genesis_time_ms = (now_ms() / INTERVAL_MS - BLOCKS - 5) * INTERVAL_MS;
    let mut community = TestCommunity::new(61, HOUSEHOLDS, market, genesis_time_ms);
    let validator =
        LocalValidator { keypair: gridshare_ledger::ids::Keypair::from_seed(community.validator.seed()) };
    let genesis = community.genesis.clone();
    let genesis_file = dir.path().join("genesis.bin");
    std::fs::write(&genesis_file, to_bytes(&genesis)).unwrap();
    std::fs::write(validator_dir.join("validator.key"), hex::encode(community.validator.seed())).unwrap();
    init(&validator_dir, Some(&genesis_file));

    let mut store = RedbStore::create(validator_dir.join(STORE_FILE_NAME), &genesis).unwrap();
    let mut state = State::genesis(&genesis);
    let registrations = community.registrations();
    let (block, built) = validator.produce(&genesis, &state, registrations, genesis_time_ms + 10).unwrap();
    store.commit(&block, &built.state).unwrap();
    state = built.state;
    let mut largest = 0;
    for interval in 1..=BLOCKS {
        let time_ms = genesis_time_ms + interval * INTERVAL_MS + 10;
        let offers = (0..HOUSEHOLDS as usize)
            .map(|index| {
                let side = if index % 2 == 0 { Side::Sell } else { Side::Buy };
                let attestation = community.reading(index, interval, 0, 0);
                community.offer_tx(index, interval, interval + 2, side, 100, 100_000, attestation)
            })
            .collect();
        let (block, built) = validator.produce(&genesis, &state, offers, time_ms).unwrap();
        assert!(built.left_out.is_empty(), "{:?}", built.left_out.first().map(|(_, rejection)| rejection));
        largest = largest.max(to_bytes(&block).len());
        store.commit(&block, &built.state).unwrap();
        state = built.state;
    }
    let behind = store.height().unwrap();
    assert_eq!(behind, BLOCKS + 1);
    assert!(largest > 400_000, "blocks of {largest} bytes are not large");
    drop(store);

    // The validator goes on from its stored chain; a new replica catches up.
    let validator_node = start(&["--block-time-ms", "500"], &validator_dir);
    let replica_args = ["--genesis", genesis_file.to_str().unwrap(), "--bootstrap", &validator_node.p2p];
    let replica = start(&replica_args, &replica_dir);
    // Not ready at first: it knows no peer yet, or it is behind the one it
    // knows (docs/API.md `GET /ready`, 503).
    let first = replica.api.ready().unwrap();
    assert!(!first.ready && first.height <= behind, "{first:?}");
    let caught_up =
        wait_for("the replica to catch up", &validator_node.api, Duration::from_secs(180), || {
            let replica_height = height(&replica.api);
            (replica_height > behind).then_some(replica_height)
        });
    for at in [1, behind / 2, behind, caught_up] {
        let (on_replica, on_validator) =
            (replica.api.block(at).unwrap(), validator_node.api.block(at).unwrap());
        assert_eq!(
            (on_replica.hash, on_replica.state_root),
            (on_validator.hash, on_validator.state_root),
            "block {at}"
        );
    }
    // Caught up and peered: ready.
    let ready = wait_for("the replica to be ready", &validator_node.api, Duration::from_secs(30), || {
        let ready = replica.api.ready().unwrap();
        ready.ready.then_some(ready)
    });
    assert!(ready.reason.is_none() && ready.height >= caught_up && ready.peers > 0, "{ready:?}");
    // It came by catch-up, in answers of several blocks, not one by one.
    let metrics = replica.api.metrics().unwrap();
    let received = metric(&metrics, "gridshare_sync_blocks_received_total");
    let requests = metric(&metrics, "gridshare_sync_requests_sent_total");
    assert!(received >= behind, "{received} blocks received by catch-up:\n{metrics}");
    assert!(requests < behind, "{requests} requests for {received} blocks");
}

/// The value of the unlabelled counter `name` in Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0)
}
