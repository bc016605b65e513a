//! End to end: the grid's commands against a real dev node. A DSO limits
//! the dev community's zone for intervals to come, the node shows the
//! limits to come and then the intervals cleared under them, and every bad
//! request (an unknown zone, a key that is no DSO's, a closed interval) is
//! refused with its reason and exit status.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::time::Duration;

use common::{DevNode, Gridshare, poll, text};

#[test]
fn a_dso_limits_a_zone_and_the_clearings_keep_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = DevNode::start(dir.path());
    let gridshare = Gridshare::with_dev_registrar_and_dso(&node, &dir.path().join("keys"));

    // The dev community's one zone, without limits, with its households' meters.
    let zones = poll("the dev households' meters", Duration::from_secs(30), &node, || {
        let zones = gridshare.json(&["grid", "zones", "--json"]);
        (zones["zones"][0]["meters"] == 2).then_some(zones)
    });
    assert_eq!(zones["zones"].as_array().unwrap().len(), 1, "{zones}");
    assert_eq!(zones["zones"][0]["name"], "main", "{zones}");
    // No limit is `null`.
    assert!(zones["zones"][0]["import_wh_max"].is_null(), "{zones}");
    let table = gridshare.ok(&["grid", "zones"]);
    assert!(table.contains("main") && table.contains("none"), "{table}");

    // Bad requests: refused before signing (exit 2) or by the ledger (exit 1).
    let limits = |zone: &str, signer: &str, from: &str| {
        vec![
            "grid".to_string(),
            "limits".into(),
            "--zone".into(),
            zone.into(),
            "--import-max".into(),
            "20Wh".into(),
            "--export-max".into(),
            "none".into(),
            "--intervals".into(),
            "4".into(),
            "--from-interval".into(),
            from.into(),
            "--as".into(),
            signer.into(),
        ]
    };
    gridshare.fails(
        &as_args(&limits("feeder-9", "dso", "next")),
        2,
        "zone `feeder-9` is not one of the community's zones: main",
    );
    gridshare.fails(&as_args(&limits("main", "registrar", "next")), 2, "registrar");
    gridshare.fails(&as_args(&limits("main", "dso", "0")), 1, "interval_closed");
    gridshare.fails(&["grid", "zone", "feeder-9"], 2, "`feeder-9` is none of the community's zones");

    // The DSO's limits for the next intervals: on the ledger, then cleared under.
    let mut admitted = limits("main", "dso", "next");
    admitted.push("--json".into());
    let submitted = gridshare.json(&as_args(&admitted));
    assert_eq!(submitted["status"], "admitted", "{submitted}");
    assert_eq!(submitted["kind"], "set-zone-limits", "{submitted}");
    let run = poll("the DSO's limits on the ledger", Duration::from_secs(30), &node, || {
        let zones = gridshare.json(&["grid", "zones", "--json"]);
        let run = zones["zones"][0]["limits"][0].clone();
        (!run.is_null()).then_some(run)
    });
    assert_eq!(run["import_wh_max"].as_u64(), Some(20), "{run}");
    assert!(run["export_wh_max"].is_null(), "{run}");
    let first = run["first_interval"].as_u64().unwrap();
    assert_eq!(run["last_interval"].as_u64(), Some(first + 3), "{run}");
    let cleared = poll("an interval cleared under the limits", Duration::from_secs(60), &node, || {
        let flows = gridshare.json(&["grid", "zone", "main", "--json"]);
        flows["intervals"].as_array().unwrap().iter().find_map(|entry| {
            let cleared = &entry["cleared"];
            (entry["interval"].as_u64()? >= first && cleared["import_wh_max"] == 20).then(|| cleared.clone())
        })
    });
    // One zone trades only within itself: its net export is nil.
    assert_eq!(cleared["net_export_wh"], 0, "{cleared}");
    assert_eq!(cleared["congested"], false, "{cleared}");
    let table = gridshare.ok(&["grid", "zone", "main"]);
    assert!(table.starts_with("Zone main") && table.contains("0.020 kWh"), "{table}");
}

fn as_args(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

#[test]
fn a_dso_registers_a_zone_meter_and_the_zone_shows_its_losses() {
    let dir = tempfile::tempdir().unwrap();
    let node = DevNode::start(dir.path());
    let gridshare = Gridshare::with_dev_registrar_and_dso(&node, &dir.path().join("keys"));
    gridshare.ok(&["keys", "new", "transformer", "--role", "meter", "--insecure-plaintext"]);
    fn register<'a>(meter: &'a str, signer: &'a str) -> [&'a str; 11] {
        [
            "grid",
            "zone-meter",
            meter,
            "--zone",
            "main",
            "--max-import-kw",
            "4000",
            "--max-export-kw",
            "4000",
            "--as",
            signer,
        ]
    }
    // Only a DSO registers one (exit 2 before signing), one per zone.
    gridshare.fails(&register("transformer", "registrar"), 2, "registrar");
    let registered = gridshare.ok(&register("transformer", "dso"));
    assert!(registered.contains("zone meter transformer"), "{registered}");
    let zones = poll("the zone meter on the ledger", Duration::from_secs(30), &node, || {
        let zones = gridshare.json(&["grid", "zones", "--json"]);
        (!zones["zones"][0]["zone_meter"].is_null()).then_some(zones)
    });
    let key = zones["zones"][0]["zone_meter"].as_str().unwrap().to_string();
    gridshare.ok(&["keys", "new", "spare", "--role", "meter", "--insecure-plaintext"]);
    gridshare.fails(&register("spare", "dso"), 1, "zone_meter_exists");
    let api = gridshare_api::client::Client::new(&node.api).unwrap();
    let zone_meter = api.meter(&key.parse().unwrap()).unwrap().expect("the zone meter is registered");
    assert_eq!(zone_meter.kind, gridshare_api::accounts::MeterKind::Zone);
    // Its readings at the end of the interval it was registered in and of
    // the three after: each 0.1 kWh in, 0.4 kWh out.
    let first = zone_meter.registered_interval;
    // Each is sent the moment its interval ends, as a meter gateway does:
    // a reading counts if it is on the ledger when its interval settles,
    // 0.8 s after its end here (one that misses it leaves its interval and
    // the next unmeasured, which the checks below allow for).
    for step in 0..4_u64 {
        let interval = (first + step).to_string();
        let (import, export) = (format!("{}", step * 100), format!("{}", step * 400));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let reported = gridshare.run(&[
                "meter",
                "report",
                "--meter",
                "transformer",
                "--interval",
                &interval,
                "--import-kwh",
                &format!("{import}Wh"),
                "--export-kwh",
                &format!("{export}Wh"),
            ]);
            if reported.status.success() {
                break;
            }
            let said = text(&reported.stderr);
            assert!(said.contains("has not ended yet"), "{said}");
            assert!(std::time::Instant::now() < deadline, "interval {interval} never ended: {said}");
        }
    }
    let (from, to) = ((first + 1).to_string(), (first + 3).to_string());
    let settled = poll("the zone meter's intervals settled", Duration::from_secs(60), &node, || {
        let flows = gridshare.json(&[
            "grid",
            "zone",
            "main",
            "--from-interval",
            &from,
            "--to-interval",
            &to,
            "--json",
        ]);
        let measured: Vec<serde_json::Value> =
            flows["intervals"].as_array()?.iter().map(|entry| entry["measured"].clone()).collect();
        (measured.len() == 3 && measured.iter().all(|entry| !entry.is_null())).then_some(measured)
    });
    let zone_metered: Vec<&serde_json::Value> =
        settled.iter().filter(|measured| !measured["zone_meter_net_export_wh"].is_null()).collect();
    assert!(!zone_metered.is_empty(), "no interval measured by the zone meter: {settled:?}");
    for measured in zone_metered {
        assert_eq!(measured["zone_meter_net_export_wh"], 300, "{measured}");
        let households = measured["measured_net_export_wh"].as_i64().unwrap();
        if measured["estimated_meters"] == 0 {
            assert_eq!(measured["losses_wh"].as_i64(), Some(households - 300), "{measured}");
        } else {
            assert!(measured["losses_wh"].is_null(), "{measured}");
        }
    }
    let table = gridshare.ok(&["grid", "zone", "main", "--from-interval", &from, "--to-interval", &to]);
    assert!(table.contains("LOSSES") && table.contains("0.300"), "{table}");
}
