//! A byzantine validator, with real processes on loopback: of four
//! validators of equal power, validator 3 runs twice, as an operator who
//! starts the same validator key on two machines would ("twins": two data
//! directories with one `validator.key`, each with its own libp2p
//! identity). At the heights where it proposes, each twin builds, proposes
//! and prevotes its own block, so the honest validators see one validator
//! sign two proposals and two prevotes for one round. The honest three keep
//! committing, agree on every block, and each ends up with verified evidence
//! naming validator 3 in `GET /v1/evidence`, which an export of its chain
//! carries and the audit checks.
//!
//! Two things make the twins equivocate on every such height, as twins on
//! two machines would, rather than now and then:
//! - Malachite proposes a value it already holds, signed with its own key,
//!   instead of asking for a new one, so a twin that starts the height a few
//!   milliseconds after its sibling (the sibling's proposal and block are
//!   there first) proposes the sibling's block. Under a target block time a
//!   height ends at its start plus the target, so a lag between the twins
//!   lasts; with the minimal target each twin ends a height when it decides
//!   it, on the same precommits as its sibling, and the two stay in step.
//!   The honest validators keep the usual target, which paces the chain.
//! - Twins in step build on the same parent from the same (empty) mempool;
//!   in the same millisecond that is the same block, byte for byte, and so
//!   the same proposal and votes (ed25519 is deterministic): no conflict.
//!   Two machines have two clocks: the twin's runs 200 ms ahead.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    Client, Node, free_port, height, init, printed_consensus_id, run_to_end, start, stop, wait_for,
};
use gridshare_api::Role;
use gridshare_api::blocks::Equivocation as Listed;
use gridshare_ledger::audit::audit_export;
use gridshare_ledger::consensus::{Equivocation, ProposalEquivocation, VoteEquivocation};
use gridshare_ledger::encoding::from_bytes;
use gridshare_ledger::export::ExportReader;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::testkit::{TestCommunity, test_market};
use gridshare_node::config::VALIDATOR_KEY_FILE_NAME;
use gridshare_node::consensus::context::{Address, ValidatorSet};

const VALIDATORS: usize = 4;
/// The validator whose key runs twice.
const TWINNED: usize = 3;
/// The honest validators' target time of a height, which paces the chain.
const BLOCK_TIME_MS: &str = "300";
/// The twins' target time of a height: so short that each starts a height as
/// soon as it decides the one before.
const TWIN_BLOCK_TIME_MS: &str = "1";
/// How far the twin's clock is ahead of the others' (well within the 2 s a
/// block may be ahead of a validator's clock).
const TWIN_CLOCK_SKEW_MS: &str = "200";
/// Heights at which the twinned validator proposes that the chain must pass.
const TWINNED_PROPOSALS: usize = 3;

fn start_validator(
    dir: &Path,
    consensus: &str,
    peers: &[String],
    block_time_ms: &str,
    clock_skew_ms: &str,
) -> Node {
    let mut args = vec![
        "--block-time-ms",
        block_time_ms,
        "--consensus-p2p",
        consensus,
        "--clock-skew-ms",
        clock_skew_ms,
    ];
    for peer in peers {
        args.extend(["--consensus-peer", peer.as_str()]);
    }
    start(&args, dir)
}

fn printed_key(printed: &[String]) -> String {
    let line = printed.iter().find(|line| line.starts_with("Validator key:")).unwrap();
    line.trim_start_matches("Validator key:").trim().to_string()
}

/// The validator an item of `GET /v1/evidence` accuses.
fn accused(item: &Listed) -> PublicKey {
    match item {
        Listed::Votes { validator, .. } | Listed::Proposals { validator, .. } => *validator,
    }
}

/// The equivocations `api` lists against `validator`, as the API shows them.
fn evidence_against(api: &Client, validator: &PublicKey) -> Vec<Listed> {
    api.evidence().unwrap().into_iter().filter(|item| accused(item) == *validator).collect()
}

/// An item of `GET /v1/evidence` decoded from its `evidence_hex` by its kind,
/// with the height and round of its two messages.
fn decoded(item: &Listed) -> (Equivocation, [(u64, u32); 2]) {
    match item {
        Listed::Votes { first, second, evidence_hex, .. } => {
            let bytes = hex::decode(evidence_hex).unwrap();
            let evidence = Equivocation::Votes(from_bytes::<VoteEquivocation>(&bytes).unwrap());
            (evidence, [(first.height, first.round), (second.height, second.round)])
        }
        Listed::Proposals { first, second, evidence_hex, .. } => {
            let bytes = hex::decode(evidence_hex).unwrap();
            let evidence = Equivocation::Proposals(from_bytes::<ProposalEquivocation>(&bytes).unwrap());
            (evidence, [(first.height, first.round), (second.height, second.round)])
        }
    }
}

#[test]
fn a_twinned_validator_is_caught_equivocating_while_the_honest_ones_commit_without_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);

    // Four validator keys, one genesis.
    let printed: Vec<Vec<String>> =
        (0..VALIDATORS).map(|index| init(&path(&format!("v{index}")), None)).collect();
    let keys: Vec<String> = printed.iter().map(|printed| printed_key(printed)).collect();
    let mut ids: Vec<String> = printed.iter().map(|printed| printed_consensus_id(printed)).collect();
    let community = TestCommunity::new(31, 0, test_market(), 0);
    let registrar = community.registrar.public().to_string();
    let genesis_file = path("genesis.bin");
    let mut args = vec!["genesis", "new", "--name", "Twin Oaks", "--registrar", &registrar];
    for key in &keys {
        args.extend(["--validator", key]);
    }
    args.extend(["--out", genesis_file.to_str().unwrap()]);
    run_to_end(&args);
    let genesis: Genesis = from_bytes(&std::fs::read(&genesis_file).unwrap()).unwrap();

    // The twin: validator 3's key in a data directory of its own, whose
    // libp2p identity `init` makes anew.
    let twin_dir = path(&format!("v{TWINNED}-twin"));
    std::fs::create_dir(&twin_dir).unwrap();
    let key_file = path(&format!("v{TWINNED}")).join(VALIDATOR_KEY_FILE_NAME);
    std::fs::copy(&key_file, twin_dir.join(VALIDATOR_KEY_FILE_NAME)).unwrap();
    let twin_printed = init(&twin_dir, Some(&genesis_file));
    assert_eq!(printed_key(&twin_printed), keys[TWINNED]);
    ids.push(printed_consensus_id(&twin_printed));
    let dirs: Vec<PathBuf> =
        (0..VALIDATORS).map(|index| path(&format!("v{index}"))).chain([twin_dir.clone()]).collect();
    for dir in &dirs[..VALIDATORS] {
        init(dir, Some(&genesis_file));
    }

    // Five processes, each a peer of the other four.
    let addresses: Vec<String> = dirs.iter().map(|_| format!("/ip4/127.0.0.1/tcp/{}", free_port())).collect();
    let peers: Vec<String> =
        addresses.iter().zip(&ids).map(|(address, id)| format!("{address}/p2p/{id}")).collect();
    let mut nodes: Vec<Node> = dirs
        .iter()
        .zip(&addresses)
        .enumerate()
        .map(|(index, (dir, consensus))| {
            let block_time_ms = if index < TWINNED { BLOCK_TIME_MS } else { TWIN_BLOCK_TIME_MS };
            let clock_skew_ms = if *dir == twin_dir { TWIN_CLOCK_SKEW_MS } else { "0" };
            let others: Vec<String> = peers
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, peer)| peer.clone())
                .collect();
            start_validator(dir, consensus, &others, block_time_ms, clock_skew_ms)
        })
        .collect();
    for (node, dir) in nodes.iter().zip(&dirs) {
        assert_eq!(node.api.status().unwrap().role, Role::Validator, "{}", dir.display());
    }
    let honest: Vec<Client> = nodes[..TWINNED].iter().map(|node| node.api.clone()).collect();
    let twins: Vec<Client> = nodes[TWINNED..].iter().map(|node| node.api.clone()).collect();

    // The heights whose first round the twinned validator proposes: round
    // robin over the validators as consensus orders them.
    let twinned_key = PublicKey(hex::decode(&keys[TWINNED]).unwrap().try_into().unwrap());
    let set = ValidatorSet::from_genesis(&genesis);
    let position = set.validators.iter().position(|v| v.address == Address(twinned_key)).unwrap();
    let twinned_heights: Vec<u64> = (1_u64..)
        .filter(|h| (h - 1) % VALIDATORS as u64 == position as u64)
        .take(TWINNED_PROPOSALS)
        .collect();
    let goal = twinned_heights.last().unwrap() + 1;

    // The honest three commit past three heights the twins both propose at:
    // the equivocation does not stop the chain.
    wait_for(
        &format!("the honest validators past height {goal}"),
        &honest[0],
        Duration::from_secs(90),
        || honest.iter().all(|api| height(api) >= goal).then_some(()),
    );

    // At each height the twins propose at, the engine reports a double
    // proposal and a double prevote of validator 3: every honest validator
    // keeps evidence of both kinds against it.
    let has_votes = |items: &[Listed]| items.iter().any(|item| matches!(item, Listed::Votes { .. }));
    let has_proposals = |items: &[Listed]| items.iter().any(|item| matches!(item, Listed::Proposals { .. }));
    let evidence: Vec<Vec<Listed>> = wait_for(
        "proposal and vote evidence on every honest validator",
        &honest[0],
        Duration::from_secs(60),
        || {
            let found: Vec<Vec<Listed>> =
                honest.iter().map(|api| evidence_against(api, &twinned_key)).collect();
            found.iter().all(|items| has_votes(items) && has_proposals(items)).then_some(found)
        },
    );
    for (api, items) in honest.iter().zip(&evidence) {
        let url = api.url();
        for item in items {
            // The node verified it before keeping it; so does anyone with the genesis.
            let (equivocation, [first, second]) = decoded(item);
            assert_eq!(equivocation.verify(&genesis), Ok(()), "{url}: {item:?}");
            assert_eq!(equivocation.validator(), twinned_key, "{item:?}");
            assert_eq!(first, second, "one height and round: {item:?}");
        }
        // No honest validator is accused.
        let all = api.evidence().unwrap();
        assert!(all.iter().all(|item| accused(item) == twinned_key), "{url}: {all:?}");
        eprintln!(
            "{url}: evidence against the twinned validator: {:?}",
            items.iter().map(|item| (decoded(item).0.kind(), decoded(item).1[0].0)).collect::<Vec<_>>()
        );
    }

    // No fork: the honest validators hold the same block at every height,
    // and so do the twins (which commit only certified blocks) as far as
    // they got.
    let common = honest.iter().map(height).min().unwrap();
    let reached: Vec<(Client, u64)> =
        honest.iter().chain(&twins).skip(1).map(|api| (api.clone(), height(api).min(common))).collect();
    for height in 1..=common {
        let reference = honest[0].block(height).unwrap();
        for (api, _) in reached.iter().filter(|(_, reached)| *reached >= height) {
            let block = api.block(height).unwrap();
            assert_eq!(block.hash, reference.hash, "{} forked at height {height}", api.url());
        }
    }

    // An export of an honest validator's chain carries the evidence, and the
    // audit checks it and passes.
    let mut export = Vec::new();
    honest[0].export(&mut export).unwrap();
    let (mut reader, exported_genesis) = ExportReader::open(export.as_slice()).unwrap();
    assert_eq!(exported_genesis, genesis);
    let mut blocks = 0;
    while reader.next_block().unwrap().is_some() {
        blocks += 1;
    }
    for item in &evidence[0] {
        assert!(reader.evidence().contains(&decoded(item).0), "not exported: {item:?}");
    }
    let report = audit_export(export.as_slice(), |_| ()).unwrap();
    assert!(report.passed(), "{:?}", report.findings);
    assert_eq!(report.blocks, blocks);
    assert!(blocks >= goal, "{blocks} blocks");
    assert_eq!(report.equivocations, reader.evidence().len() as u64, "{report:?}");

    for node in &mut nodes {
        stop(node);
    }
}
