//! End to end: dynamic tariffs against a real dev node. A DSO gives the
//! next intervals tariffs of their own, the node lists them and shows them
//! as the intervals' tariffs in force, the intervals settle at them, the
//! registrar removes one interval's again, and every bad request (a key
//! that is neither a DSO's nor a registrar's, a closed interval, too many
//! intervals) is refused with its reason and exit status.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::time::Duration;

use common::{DevNode, Gridshare, poll, text};
use gridshare_api::client::Client;

#[test]
fn a_dso_sets_the_next_intervals_tariffs_and_they_settle_at_them() {
    let dir = tempfile::tempdir().unwrap();
    let node = DevNode::start(dir.path());
    let gridshare = Gridshare::with_dev_registrar_and_dso(&node, &dir.path().join("keys"));
    let api = Client::new(&node.api).unwrap();
    let schedule = api.tariffs().unwrap().schedule[0];

    // Bad requests: refused before signing (exit 2) or by the ledger (exit 1).
    gridshare.fails(&["tariffs", "interval", "--import", "0.42", "--intervals", "97"], 2, "1 to 96");
    gridshare.fails(
        &["tariffs", "interval", "--import", "0.42", "--from-interval", "0", "--as", "dso"],
        1,
        "interval_closed",
    );
    gridshare.fails(&["tariffs", "interval", "--import", "1001", "--as", "dso"], 1, "tariff_too_high");
    let made = gridshare.run(&["keys", "new", "someone", "--insecure-plaintext"]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    gridshare.fails(
        &["tariffs", "interval", "--import", "0.42", "--as", "someone"],
        2,
        "DSO or registrar key",
    );

    // The DSO's import tariff and fee for the next three intervals.
    let submitted = gridshare.json(&[
        "tariffs",
        "interval",
        "--import",
        "0.42",
        "--network-fee",
        "0.01",
        "--intervals",
        "3",
        "--as",
        "dso",
        "--json",
    ]);
    assert_eq!(submitted["status"], "admitted", "{submitted}");
    assert_eq!(submitted["kind"], "set-interval-tariffs", "{submitted}");
    let own = poll("the intervals' own tariffs on the ledger", Duration::from_secs(30), &node, || {
        let tariffs = api.tariffs().unwrap();
        (tariffs.intervals.len() == 3).then_some(tariffs.intervals)
    });
    let first = own[0].interval;
    assert_eq!(own.iter().map(|entry| entry.interval).collect::<Vec<_>>(), [first, first + 1, first + 2]);
    assert!(own.iter().all(|entry| entry.grid_import_micro_per_kwh == Some(420_000)
        && entry.network_fee_micro_per_kwh == Some(10_000)
        && entry.grid_feed_in_micro_per_kwh.is_none()));
    let in_force = api.interval(first).unwrap().tariffs;
    assert_eq!(
        (
            in_force.grid_import_micro_per_kwh,
            in_force.grid_feed_in_micro_per_kwh,
            in_force.network_fee_micro_per_kwh
        ),
        (420_000, schedule.grid_feed_in_micro_per_kwh, 10_000),
        "the interval's import tariff and fee, the schedule's feed-in"
    );
    let table = gridshare.ok(&["tariffs", "show"]);
    assert!(table.contains("0.420000") && table.contains(&first.to_string()), "{table}");

    // The registrar takes the last one back: no tariff given.
    let last = (first + 2).to_string();
    let removed = gridshare.ok(&["tariffs", "interval", "--from-interval", &last, "--as", "registrar"]);
    assert!(removed.contains("the schedule's"), "{removed}");
    poll("the last interval's own tariffs removed", Duration::from_secs(30), &node, || {
        (api.tariffs().unwrap().intervals.len() == 2).then_some(())
    });

    // The first interval settles at its own tariffs, and its entry goes.
    let settled = poll("the first interval settled", Duration::from_secs(90), &node, || {
        let interval = api.interval(first).unwrap();
        interval.settlement.map(|settlement| settlement.tariffs)
    });
    assert_eq!((settled.grid_import_micro_per_kwh, settled.network_fee_micro_per_kwh), (420_000, 10_000));
    let after = api.tariffs().unwrap();
    assert!(
        after.intervals.iter().all(|entry| entry.interval >= after.next_settlement_interval),
        "{after:?}"
    );
    let third = api.interval(first + 2).unwrap().tariffs;
    assert_eq!(third.grid_import_micro_per_kwh, schedule.grid_import_micro_per_kwh, "the schedule's again");
}
