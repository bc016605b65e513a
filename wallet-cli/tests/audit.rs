//! End-to-end tests of `gridshare export` and `gridshare audit` on a real
//! redb data directory: a clean ledger passes, a changed byte fails with
//! findings, and unreadable input exits with status 2.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::path::Path;
use std::process::{Command, Output};

use gridshare_ledger::execute::{Signatures, execute};
use gridshare_ledger::state::State;
use gridshare_ledger::store::{RedbStore, Store};
use gridshare_ledger::testkit::trading_chain;

fn gridshare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridshare")).args(args).env_remove("GRIDSHARE_NODE").output().unwrap()
}

/// A data directory holding a trading chain of `blocks` blocks.
fn data_dir(dir: &Path, blocks: u64) {
    let (community, chain) = trading_chain(12, 4, blocks);
    let mut store = RedbStore::create(dir.join("ledger.redb"), &community.genesis).unwrap();
    let mut state = State::genesis(&community.genesis);
    for block in &chain {
        state = execute(&community.genesis, &state, &block.block, Signatures::Verify).unwrap().0;
        store.commit(block, &state).unwrap();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn export_then_audit_passes_and_a_changed_byte_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    std::fs::create_dir(&data).unwrap();
    data_dir(&data, 12);
    let export = dir.path().join("ledger.export");
    let (data_arg, export_arg) = (data.to_str().unwrap(), export.to_str().unwrap());

    let output = gridshare(&["export", "--data-dir", data_arg, "--out", export_arg]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("Exported 13 blocks to {export_arg}\n"));

    let output = gridshare(&["audit", export_arg]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("Audit           PASSED: no finding\n"), "{stdout}");
    assert!(stdout.contains("Blocks          13 (13 re-executed"), "{stdout}");
    assert!(stdout.contains("Findings        0"), "{stdout}");

    let output = gridshare(&["audit", "--data-dir", data_arg, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["blocks"], 13);
    assert!(json["intervals_cleared"].as_u64().unwrap() > 0);
    assert_eq!(json["findings"], serde_json::json!([]));

    // One changed byte in the middle of the export.
    let mut bytes = std::fs::read(&export).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    let changed = dir.path().join("changed.export");
    std::fs::write(&changed, bytes).unwrap();
    let output = gridshare(&["audit", changed.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("Audit           FAILED\n"), "{stdout}");
    assert!(stdout.contains("  - block "), "a finding names its block: {stdout}");
}

#[test]
fn unreadable_ledgers_exit_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.export");
    std::fs::write(&garbage, b"this is not a ledger").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["audit".into(), garbage.display().to_string()], "not a Gridshare ledger export"),
        (vec!["audit".into(), "no/such.export".into()], "cannot open no/such.export"),
        (vec!["audit".into(), "--data-dir".into(), dir.path().display().to_string()], "ledger.redb"),
        (
            vec![
                "export".into(),
                "--data-dir".into(),
                dir.path().display().to_string(),
                "--out".into(),
                "x".into(),
            ],
            "ledger.redb",
        ),
        (vec!["audit".into(), "a".into(), "--data-dir".into(), "b".into()], "cannot be used with"),
        (vec!["audit".into()], "name an export file, a --data-dir or a --node URL"),
        (
            vec!["export".into(), "--out".into(), "x".into()],
            "name the node's --data-dir, or its API with --node URL",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = gridshare(&args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr:?}");
    }
}
