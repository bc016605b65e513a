//! Whole runs of the simulator: a small community gives the same report
//! byte for byte twice, passes every end check with every fault at once,
//! and each fault shows in the report.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use gridshare_sim::faults::parse_faults;
use gridshare_sim::{Config, run};

/// Twelve households on three household nodes and four validators, six
/// intervals: small enough for a debug build.
fn small(seed: u64) -> Config {
    let mut config = Config::new(seed, 12, 4, 6);
    config.household_nodes = 3;
    config
}

#[test]
fn a_small_community_gives_the_same_report_byte_for_byte_twice() {
    let config = small(7);
    let first = serde_json::to_string_pretty(&run(&config).unwrap()).unwrap();
    let second = serde_json::to_string_pretty(&run(&config).unwrap()).unwrap();
    assert_eq!(first, second);
    let report = run(&small(8)).unwrap();
    assert_ne!(serde_json::to_string_pretty(&report).unwrap(), first, "another seed, another run");

    let report: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(report["passed"], true, "{first}");
    assert_eq!(report["transactions_lost"], 0);
    assert_eq!(report["forks"], 0);
    assert!(report["transactions_committed"].as_u64().unwrap() > 12 * 6, "{first}");
    assert!(report["trades"].as_u64().unwrap() > 0, "{first}");
}

#[test]
fn a_small_community_passes_every_check_with_every_fault_at_once() {
    let mut config = small(3);
    config.faults = parse_faults("all").unwrap();
    let report = run(&config).unwrap();
    let text = gridshare_sim::report::text(&report);
    assert!(report.passed, "{text}");
    assert_eq!((report.transactions_lost, report.forks), (0, 0), "{text}");
    // Each fault left its trace.
    assert!(report.network_messages_lost > 0 && report.network_messages_duplicated > 0, "{text}");
    assert!(report.network_messages_reordered > 0 && report.network_messages_cut > 0, "{text}");
    assert_eq!(report.faults_applied.iter().filter(|fault| fault.starts_with("crash")).count(), 2, "{text}");
    assert_eq!(report.faults_applied.iter().filter(|fault| fault.starts_with("partition")).count(), 2);
    assert_eq!(report.faults_applied.iter().filter(|fault| fault.starts_with("skew")).count(), 2);
    let flood = report.flood.as_ref().unwrap();
    assert!(flood.sent > 0 && flood.accepted == 0 && !flood.banned_by.is_empty(), "{text}");
    assert!(report.proposals_refused_for_time > 0, "a validator 7 s off refuses and is refused: {text}");
    assert_eq!(report.offers_per_interval, 16, "overload multiplies the ladder");
}

#[test]
fn longer_intervals_are_run_and_named_in_the_command_that_reproduces_them() {
    let mut config = small(5);
    config.market.interval_ms = 10_000;
    let report = run(&config).unwrap();
    assert!(report.passed, "{}", gridshare_sim::report::text(&report));
    assert_eq!(report.interval_ms, 10_000);
    assert!(report.command.contains("--interval-ms 10000"), "{}", report.command);
    config.market.interval_ms = 3_999;
    let refused = run(&config).unwrap_err();
    assert!(refused.to_string().contains("--interval-ms must be"), "{refused}");
}
