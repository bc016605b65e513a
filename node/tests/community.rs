//! A community set up as operators do it, with real processes on loopback:
//! `init` gives the validator key, `genesis new` writes the genesis, every
//! data directory is initialized with it; one validator and four household
//! replicas. Offers submitted at different households reach the validator
//! and clear in one auction; every node ends with the same chain and state
//! root; a household offline for many blocks catches up; a new household
//! syncs from genesis through another household; the validator, killed
//! with SIGKILL, restarts with every block it had committed; a household
//! killed while the validator is down restarts with the offer it had
//! acknowledged, which reaches the ledger once the validator is back.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Node, Submission, admit, height, init, kill, run_to_end, start, stop, wait_for};
use gridshare_api::{Role, SpanQuery, TransactionState};
use gridshare_ledger::audit::audit_store;
use gridshare_ledger::encoding::from_bytes;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::store::RedbStore;
use gridshare_ledger::testkit::{TestCommunity, test_market};
use gridshare_ledger::tx::Side;

const INTERVAL_MS: u64 = 2_000;

fn household(dir: &Path, bootstrap: &str) -> Node {
    start(&["--bootstrap", bootstrap], dir)
}

/// The block at `height` on every node has the same hash and state root.
fn assert_same_block(nodes: &[&Node], height: u64) {
    let blocks: Vec<_> = nodes.iter().map(|node| node.api.block(height).unwrap()).collect();
    for block in &blocks[1..] {
        assert_eq!(block.hash, blocks[0].hash, "height {height}");
        assert_eq!(block.state_root, blocks[0].state_root, "height {height}");
    }
}

#[test]
fn one_validator_and_households_trade_agree_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);

    // The operator: a validator key from `init`, then the genesis.
    let printed = init(&path("validator"), None);
    let key_line = printed.iter().find(|line| line.starts_with("Validator key:")).unwrap();
    let validator_key = key_line.trim_start_matches("Validator key:").trim().to_string();
    let mut community = TestCommunity::new(11, 4, test_market(), 0);
    let registrar = community.registrar.public().to_string();
    let genesis_file = path("genesis.bin");
    let interval = INTERVAL_MS.to_string();
    run_to_end(&[
        "genesis",
        "new",
        "--name",
        "Test Street",
        "--validator",
        &validator_key,
        "--registrar",
        &registrar,
        "--interval-ms",
        &interval,
        "--gate-closure-lead-ms",
        "800",
        "--settlement-delay-ms",
        "1000",
        "--out",
        genesis_file.to_str().unwrap(),
    ]);
    let genesis: Genesis = from_bytes(&std::fs::read(&genesis_file).unwrap()).unwrap();
    // The households sign for this community.
    community.genesis = genesis.clone();
    let printed = init(&path("validator"), Some(&genesis_file));
    assert!(printed.iter().any(|line| line.ends_with("(validator)")), "{printed:?}");
    for name in ["h0", "h1", "h2", "h3", "h4"] {
        let printed = init(&path(name), Some(&genesis_file));
        assert!(printed.iter().any(|line| line.ends_with("(replica)")), "{printed:?}");
    }

    // The validator runs on one thread, the households on one per core.
    let mut validator = start(&["--block-time-ms", "100", "--worker-threads", "1"], &path("validator"));
    let status = validator.api.status().unwrap();
    assert_eq!(status.role, Role::Validator);
    assert_eq!(status.worker_threads, 1);
    let bootstrap = validator.p2p.clone();
    let mut households: Vec<Node> =
        ["h0", "h1", "h2", "h3"].iter().map(|name| household(&path(name), &bootstrap)).collect();
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(households[0].api.status().unwrap().worker_threads, cores as u64);
    for node in &households {
        wait_for("households to connect", &validator.api, Duration::from_secs(30), || {
            (node.api.status().unwrap().peers >= 1).then_some(())
        });
    }

    // The registrar registers and funds everyone through the first household.
    for tx in community.registrations() {
        admit(&households[0].api, &tx);
    }
    wait_for("the registrations on the validator", &validator.api, Duration::from_secs(30), || {
        (validator.api.status().unwrap().accounts == 4).then_some(())
    });

    // Two sell and two buy, each through its own node, for one interval.
    let target = genesis.interval_at(gridshare_node::node::now_ms()) + 3;
    for (index, node) in households.iter().enumerate() {
        wait_for("the household's node to know its account", &validator.api, Duration::from_secs(30), || {
            let account = community.households[index].account.public();
            node.api.account(&account).unwrap().map(|_| ())
        });
        let (side, price) =
            if index < 2 { (Side::Sell, 80_000 + index as u64 * 10_000) } else { (Side::Buy, 250_000) };
        let attestation = community.reading(index, target - 3, 0, 0);
        let offer = community.offer_tx(index, 1, target, side, 500, price, attestation);
        let Submission::Admitted { id } = node.api.submit(&offer).unwrap() else {
            panic!("household {index}'s offer was refused");
        };
        assert_eq!(
            node.api.transaction(&id).unwrap().map(|found| found.state),
            Some(TransactionState::Pending)
        );
    }

    // One auction cleared all four offers; every node has the same clearing.
    let clearings: Vec<_> = std::iter::once(&validator)
        .chain(&households)
        .map(|node| {
            wait_for("the clearing on every node", &node.api, Duration::from_secs(30), || {
                node.api.interval(target).unwrap().clearing
            })
        })
        .collect();
    assert_eq!(clearings[0].receipt.offers, 4, "{:?}", clearings[0]);
    assert_eq!(clearings[0].receipt.volume_wh, 1_000, "{:?}", clearings[0]);
    assert!(clearings.iter().all(|clearing| *clearing == clearings[0]));
    let cleared_at = clearings[0].height;
    let nodes: Vec<&Node> = std::iter::once(&validator).chain(&households).collect();
    assert_same_block(&nodes, cleared_at);
    for (index, node) in households.iter().enumerate() {
        let account = community.households[index].account.public();
        let span = SpanQuery { from_interval: Some(target), to_interval: None };
        assert!(!node.api.trades(&account, &span).unwrap().is_empty(), "household {index}");
    }

    // A household offline for many blocks catches up.
    let offline_at = height(&households[3].api);
    kill(&mut households[3]);
    let missed =
        wait_for("blocks while a household is down", &validator.api, Duration::from_secs(30), || {
            let now = height(&validator.api);
            (now >= offline_at + 20).then_some(now)
        });
    households[3] = household(&path("h3"), &bootstrap);
    wait_for("the offline household to catch up", &validator.api, Duration::from_secs(60), || {
        (height(&households[3].api) >= missed).then_some(())
    });

    // A new household syncs from genesis through another household.
    let mut newcomer = household(&path("h4"), &households[0].p2p);
    let tip = height(&validator.api);
    wait_for("the new household to sync", &validator.api, Duration::from_secs(60), || {
        (height(&newcomer.api) >= tip).then_some(())
    });

    // The validator, killed with SIGKILL, restarts with every block it had
    // acknowledged, and the chain goes on.
    let acknowledged = height(&validator.api);
    let block_before = validator.api.block(acknowledged).unwrap();
    kill(&mut validator);

    // While it is down, a household acknowledges an offer and is killed
    // too: restarted, it still holds the offer.
    let later = genesis.interval_at(gridshare_node::node::now_ms()) + 6;
    let attestation = community.reading(0, later - 3, 0, 0);
    let offer = community.offer_tx(0, 2, later, Side::Sell, 300, 90_000, attestation);
    let Submission::Admitted { id: offer_id } = households[0].api.submit(&offer).unwrap() else {
        panic!("the offer was refused while the validator was down");
    };
    // On the same address: the newcomer knows it by that one.
    let listen = households[0].p2p.split("/p2p/").next().unwrap().to_string();
    kill(&mut households[0]);
    households[0] = start(&["--bootstrap", &bootstrap, "--p2p", &listen], &path("h0"));
    assert_eq!(
        households[0].api.transaction(&offer_id).unwrap().map(|found| found.state),
        Some(TransactionState::Pending),
        "the restarted household lost the offer it acknowledged"
    );

    // On the same address, as a validator with a configured port restarts.
    let listen = bootstrap.split("/p2p/").next().unwrap().to_string();
    validator =
        start(&["--block-time-ms", "100", "--worker-threads", "1", "--p2p", &listen], &path("validator"));
    assert_eq!(validator.api.block(acknowledged).unwrap().hash, block_before.hash);
    wait_for("the restored offer on the ledger", &validator.api, Duration::from_secs(30), || {
        let found = validator.api.transaction(&offer_id).unwrap()?;
        matches!(found.state, TransactionState::Included { .. }).then_some(())
    });
    let resumed = height(&validator.api);
    let goal = resumed + 5;
    for node in std::iter::once(&newcomer).chain(&households) {
        wait_for(
            "every node to follow the restarted validator",
            &validator.api,
            Duration::from_secs(60),
            || (height(&node.api) >= goal).then_some(()),
        );
    }
    let nodes: Vec<&Node> = std::iter::once(&validator).chain(&households).chain([&newcomer]).collect();
    assert_same_block(&nodes, goal);

    stop(&mut validator);
    for node in households.iter_mut().chain([&mut newcomer]) {
        stop(node);
    }
    let store = RedbStore::open(path("h4").join("ledger.redb")).unwrap();
    let report = audit_store(&store, |_| ()).unwrap();
    assert!(report.passed(), "{:?}", report.findings);
    assert!(report.blocks >= goal && report.trades >= 2, "{report:?}");
}
