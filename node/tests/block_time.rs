//! Block time no proposer controls, with real processes on loopback: of four
//! validators of equal power, validator 3's clock runs 4 s ahead, twice the
//! genesis's block-time tolerance δ (2 s). Its proposals carry its clock's
//! time, which would close gates early for everyone; the honest validators
//! refuse them, the round moves on to the next proposer, and no committed
//! block is ever validator 3's. It judges the honest blocks 4 s behind its
//! clock and votes against them, yet commits every decided block (it
//! learns each by sync, a second or so late, so it proposes only when it
//! has caught up in time for its height): timeliness decides votes, never
//! whether a certified block is applied.
//! (A clock that runs behind cannot backdate a block by more than the
//! chain allows: a block's time must exceed its parent's, and the honest
//! validators refuse one more than δ behind their clocks, which the unit
//! tests of `consensus::app` check at both ends.)

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Node, free_port, height, init, printed_consensus_id, run_to_end, start, stop, wait_for};
use gridshare_ledger::encoding::from_bytes;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::testkit::{TestCommunity, test_market};
use gridshare_node::consensus::context::{Address, ValidatorSet};

const VALIDATORS: usize = 4;
/// The validator whose clock is off.
const SKEWED: usize = 3;
/// How far its clock is ahead: twice the default tolerance.
const SKEW_MS: &str = "4000";
/// Heights whose first round the skewed validator proposes that the chain
/// must pass.
const SKEWED_PROPOSALS: usize = 3;

fn printed_key(printed: &[String]) -> PublicKey {
    let line = printed.iter().find(|line| line.starts_with("Validator key:")).unwrap();
    PublicKey(hex::decode(line.trim_start_matches("Validator key:").trim()).unwrap().try_into().unwrap())
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn start_validator(dir: &Path, consensus: &str, everyone: &[String], clock_skew_ms: &str) -> Node {
    let mut args =
        vec!["--block-time-ms", "300", "--consensus-p2p", consensus, "--clock-skew-ms", clock_skew_ms];
    let own = format!("{consensus}/p2p/");
    for peer in everyone.iter().filter(|peer| !peer.starts_with(&own)) {
        args.extend(["--consensus-peer", peer.as_str()]);
    }
    start(&args, dir)
}

#[test]
fn a_proposer_whose_clock_is_off_by_more_than_the_tolerance_never_makes_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let dirs: Vec<PathBuf> = (0..VALIDATORS).map(|index| path(&format!("v{index}"))).collect();
    let printed: Vec<Vec<String>> = dirs.iter().map(|dir| init(dir, None)).collect();
    let keys: Vec<PublicKey> = printed.iter().map(|printed| printed_key(printed)).collect();
    let community = TestCommunity::new(41, 0, test_market(), 0);
    let registrar = community.registrar.public().to_string();
    let genesis_file = path("genesis.bin");
    let key_args: Vec<String> = keys.iter().map(ToString::to_string).collect();
    let mut args = vec!["genesis", "new", "--name", "Fast Clock Lane", "--registrar", &registrar];
    for key in &key_args {
        args.extend(["--validator", key]);
    }
    args.extend(["--out", genesis_file.to_str().unwrap()]);
    run_to_end(&args);
    let genesis: Genesis = from_bytes(&std::fs::read(&genesis_file).unwrap()).unwrap();
    let tolerance_ms = genesis.market.block_time_tolerance_ms;
    assert_eq!(tolerance_ms, 2_000, "the default tolerance, half the skew");
    for dir in &dirs {
        init(dir, Some(&genesis_file));
    }

    let addresses: Vec<String> = dirs.iter().map(|_| format!("/ip4/127.0.0.1/tcp/{}", free_port())).collect();
    let peers: Vec<String> = addresses
        .iter()
        .zip(&printed)
        .map(|(address, printed)| format!("{address}/p2p/{}", printed_consensus_id(printed)))
        .collect();
    let mut nodes: Vec<Node> = dirs
        .iter()
        .zip(&addresses)
        .enumerate()
        .map(|(index, (dir, consensus))| {
            start_validator(dir, consensus, &peers, if index == SKEWED { SKEW_MS } else { "0" })
        })
        .collect();

    // The heights whose first round the skewed validator proposes.
    let set = ValidatorSet::from_genesis(&genesis);
    let position = set.validators.iter().position(|v| v.address == Address(keys[SKEWED])).unwrap();
    let skewed_heights: Vec<u64> =
        (1_u64..).filter(|h| (h - 1) % VALIDATORS as u64 == position as u64).take(SKEWED_PROPOSALS).collect();
    let goal = skewed_heights.last().unwrap() + 1;

    // The honest validators refuse the skewed validator's block (which
    // it proposes whenever it has caught up in time for its height), and
    // it refuses theirs; a log line is written as the judgement is made.
    let logs = |dirs: &[PathBuf]| -> Vec<String> {
        dirs.iter()
            .map(|dir| std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default())
            .collect()
    };
    let refused = |log: &String| log.contains("outside this validator's clock");
    wait_for("a block refused by its time on both sides", &nodes[0].api, Duration::from_secs(120), || {
        let logs = logs(&dirs);
        (refused(&logs[SKEWED]) && logs[..SKEWED].iter().any(refused)).then_some(())
    });

    // Every validator, the skewed one included, commits past the goal.
    let apis: Vec<_> = nodes.iter().map(|node| node.api.clone()).collect();
    let goal = goal.max(height(&apis[0]));
    wait_for(&format!("every validator past height {goal}"), &apis[0], Duration::from_secs(120), || {
        apis.iter().all(|api| height(api) >= goal).then_some(())
    });
    let checked_at_ms = now_ms();

    // No block is the skewed validator's, block times strictly increase,
    // and none is later than the honest clock + δ.
    let mut previous_ms = genesis.genesis_time_ms;
    for height in 1..=goal {
        let block = apis[0].block(height).unwrap();
        assert_ne!(block.proposer, keys[SKEWED], "block {height} is the skewed validator's");
        assert!(block.timestamp_ms > previous_ms, "block {height}");
        assert!(block.timestamp_ms <= checked_at_ms + tolerance_ms, "block {height} is in the future");
        previous_ms = block.timestamp_ms;
        // The skewed validator holds the same chain.
        assert_eq!(apis[SKEWED].block(height).unwrap().hash, block.hash, "height {height}");
    }
    for node in &mut nodes {
        stop(node);
    }
}
