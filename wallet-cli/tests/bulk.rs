//! `gridshare register bulk`: a street of households from one CSV file,
//! against a dev node. Everything registers; the same file again registers
//! nothing twice; a longer file registers only what is new; a meter that
//! belongs to another account is reported and makes the exit status 1; more
//! entries than a registrar may have waiting wait for blocks; a
//! bad line is refused before anything is sent, naming its line and field.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::time::Duration;

use common::{DevNode, Gridshare, poll, text};
use gridshare_api::client::Client;
use gridshare_ledger::ids::Keypair;

const HEADER: &str = "account,credit_limit,meter,max_import_kw,max_export_kw,zone\n";

fn key(seed: u8) -> String {
    Keypair::from_seed([seed; 32]).public().to_string()
}

#[test]
fn a_street_registers_once_and_a_stopped_run_is_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let node = DevNode::start(dir.path());
    let api = Client::new(&node.api).unwrap();
    let registrar = Gridshare::with_dev_registrar(&node, &dir.path().join("keys"));

    // Three households: one with two meters, one without a meter.
    let street = format!(
        "{HEADER}{a},0,{m1},11,7.4,main\n{a},0,{m2},3.7,0,main\n{b},50,{m3},11,0,\n{c},0,,,,\n",
        a = key(11),
        b = key(12),
        c = key(13),
        m1 = key(21),
        m2 = key(22),
        m3 = key(23),
    );
    let file = dir.path().join("street.csv");
    std::fs::write(&file, &street).unwrap();
    let file = file.to_str().unwrap();
    let first = registrar.ok(&["register", "bulk", file]);
    assert!(first.contains("6 entries: 6 registered"), "{first}");
    poll("the street on the ledger", Duration::from_secs(30), &node, || {
        let meter = api.meter(&key(23).parse().unwrap()).unwrap()?;
        let account = api.account(&key(13).parse().unwrap()).unwrap()?;
        Some((meter, account))
    });
    let meter = api.meter(&key(22).parse().unwrap()).unwrap().unwrap();
    assert_eq!((meter.owner.to_string(), meter.max_import_w, meter.zone.as_str()), (key(11), 3_700, "main"));
    // A zone the community does not have is refused before anything is sent.
    let elsewhere = dir.path().join("elsewhere.csv");
    std::fs::write(&elsewhere, format!("{HEADER}{a},0,{m},11,7.4,north\n", a = key(15), m = key(25)))
        .unwrap();
    registrar.fails(
        &["register", "bulk", elsewhere.to_str().unwrap()],
        2,
        "line 2: zone: zone `north` is not one of the community's zones: main",
    );

    // Run again, and with one more household: only that one is new.
    let again = registrar.ok(&["register", "bulk", file]);
    assert!(again.contains("6 entries: 6 already registered"), "{again}");
    let longer = dir.path().join("longer.csv");
    std::fs::write(&longer, format!("{street}{d},0,{m4},11,7.4,main\n", d = key(14), m4 = key(24))).unwrap();
    let json = registrar.ok(&["register", "bulk", longer.to_str().unwrap(), "--json"]);
    let statuses: Vec<serde_json::Value> =
        json.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let registered: Vec<u64> = statuses
        .iter()
        .filter(|entry| entry["status"] == "registered")
        .map(|entry| entry["line"].as_u64().unwrap())
        .collect();
    assert_eq!(registered, [6, 6], "{json}");

    // A meter of another account: reported, exit status 1.
    let stolen = dir.path().join("stolen.csv");
    std::fs::write(&stolen, format!("{HEADER}{e},0,{m1},11,7.4,main\n", e = key(15), m1 = key(21))).unwrap();
    let stderr =
        registrar.fails(&["register", "bulk", stolen.to_str().unwrap()], 1, "1 of 2 entries were refused");
    assert!(!stderr.is_empty());
    let output = registrar.run(&["register", "bulk", stolen.to_str().unwrap()]);
    assert!(
        text(&output.stdout).contains(&format!("refused: registered to account {}", key(11))),
        "{}",
        text(&output.stdout)
    );

    // More than a registrar may have waiting (64): it waits for blocks.
    let many = dir.path().join("many.csv");
    let rows: String = (100..180_u8).map(|seed| format!("{},0,,,,\n", key(seed))).collect();
    std::fs::write(&many, format!("{HEADER}{rows}")).unwrap();
    let output = registrar.run(&["register", "bulk", many.to_str().unwrap()]);
    assert!(output.status.success(), "{}{}", text(&output.stdout), text(&output.stderr));
    assert!(text(&output.stdout).contains("80 entries: 80 registered"), "{}", text(&output.stdout));
    assert!(text(&output.stderr).contains("trying again"), "it never had to wait: {}", text(&output.stderr));

    // Bad lines: refused by line and field, nothing sent.
    for (rows, expected) in [
        (format!("{},0,{},11,x,main\n", key(16), key(26)), "line 2: max_export_kw"),
        (
            format!("{},0,{},11,1,main\n{},5,,,,\n", key(16), key(26), key(16)),
            "line 3: credit_limit: differs from line 2",
        ),
        (
            format!("{},0,{},11,1,main\n{},0,{},1,1,main\n", key(16), key(26), key(17), key(26)),
            "line 3: meter: already on line 2",
        ),
        ("cafe,0,,,,\n".to_string(), "line 2: account: `cafe` is not a 64-digit hex public key"),
        (format!("{},0,,11,,\n", key(16)), "line 2: meter: empty"),
    ] {
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, format!("{HEADER}{rows}")).unwrap();
        registrar.fails(&["register", "bulk", bad.to_str().unwrap()], 2, expected);
    }
    assert!(api.account(&key(16).parse().unwrap()).unwrap().is_none());
}
