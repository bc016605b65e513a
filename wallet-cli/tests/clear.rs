//! End-to-end tests of `gridshare clear`: the real binary on real files,
//! checking output, JSON shape and exit status.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::path::PathBuf;
use std::process::{Command, Output};

use expect_test::expect;

const HEADER: &str = "id,side,energy_kwh,price_per_kwh\n";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Writes `contents` to a file of its own under cargo's scratch directory.
fn book_file(name: &str, contents: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("clear-{name}.csv"));
    std::fs::write(&path, contents).unwrap();
    path
}

fn gridshare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridshare")).args(args).output().unwrap()
}

fn clear(path: &std::path::Path, extra: &[&str]) -> Output {
    let mut args = vec!["clear", "--orders", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    gridshare(&args)
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn clears_the_example_book_as_a_table() {
    let output = clear(&repo_root().join("examples/community-book.csv"), &[]);
    expect![[r#"
        Mechanism       uniform price, k = 0.500, network fee 0.000000 per kWh
        Orders          13 buy (10 filled), 11 sell (10 filled)
        Clearing price  0.200000 per kWh
        Volume          19.250 kWh in 19 trades

        BUYER             SELLER          ENERGY (kWh)  PRICE (per kWh)
        elm-row-14        elm-row-10             0.350         0.200000
        cedar-court-3     elm-row-10             0.480         0.200000
        birch-lane-4      elm-row-10             0.620         0.200000
        bakery            elm-row-10             1.650         0.200000
        bakery            school-roof            2.150         0.200000
        cedar-court-1     school-roof            1.150         0.200000
        village-hall      school-roof            1.200         0.200000
        village-hall      birch-lane-2           1.400         0.200000
        elm-row-12        birch-lane-2           0.450         0.200000
        elm-row-12        oak-street-8           1.600         0.200000
        elm-row-12        birch-lane-7           0.150         0.200000
        maple-ave-11      birch-lane-7           2.250         0.200000
        maple-ave-11      hazel-way-9            1.150         0.200000
        ev-charger-north  hazel-way-9            0.900         0.200000
        ev-charger-north  cedar-court-5          0.900         0.200000
        ev-charger-north  fern-close-1           1.100         0.200000
        fern-close-6      fern-close-1           0.100         0.200000
        fern-close-6      fern-close-8           0.650         0.200000
        fern-close-6      willow-green-4         1.000         0.200000
    "#]]
    .assert_eq(&stdout(&output));
}

#[test]
fn json_has_exactly_the_documented_shape() {
    let path = book_file(
        "json",
        &format!("{HEADER}s1,sell,1,0.10\nb1,buy,0.6,0.30\nb2,buy,0.6,0.30\nb3,buy,1,0.05\n"),
    );
    let output = clear(&path, &["--json", "--k", "1", "--fee", "0.03"]);
    expect![[r#"
        {"mechanism":"uniform","clearing_price_micro_per_kwh":270000,"volume_wh":1000,"fills":[{"id":"b1","side":"buy","filled_wh":500},{"id":"b2","side":"buy","filled_wh":500},{"id":"s1","side":"sell","filled_wh":1000}],"trades":[{"buy_id":"b1","sell_id":"s1","energy_wh":500,"price_micro_per_kwh":270000},{"buy_id":"b2","sell_id":"s1","energy_wh":500,"price_micro_per_kwh":270000}]}
    "#]]
    .assert_eq(&stdout(&output));
}

#[test]
fn json_of_a_book_that_does_not_cross_has_a_null_price() {
    let path = book_file("nocross", &format!("{HEADER}s1,sell,1,0.30\nb1,buy,1,0.10\n"));
    let output = clear(&path, &["--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "mechanism": "uniform", "clearing_price_micro_per_kwh": null, "volume_wh": 0,
            "fills": [], "trades": [],
        })
    );
}

#[test]
fn pay_as_bid_prices_at_each_buyer() {
    let path = book_file("pab", &format!("{HEADER}s1,sell,2,0.10\nb1,buy,1,0.30\nb2,buy,1,0.20\n"));
    let output = clear(&path, &["--json", "--mechanism", "pay-as-bid"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let prices: Vec<u64> = json["trades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["price_micro_per_kwh"].as_u64().unwrap())
        .collect();
    assert_eq!(prices, vec![300_000, 200_000]);
    assert_eq!(json["mechanism"], "pay-as-bid");
    assert_eq!(json["clearing_price_micro_per_kwh"], serde_json::Value::Null);
}

/// Every kind of bad input: exit status 2 and a message that names the line.
#[test]
fn bad_books_are_refused_naming_the_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "precise-energy",
            "h1,sell,2.5001,0.1\n",
            "line 2: energy_kwh `2.5001` has more than 3 decimal places",
        ),
        (
            "precise-price",
            "h1,sell,1,0.1000001\n",
            "line 2: price_per_kwh `0.1000001` has more than 6 decimal places",
        ),
        ("negative-energy", "h1,sell,-1,0.1\n", "line 2: energy_kwh `-1` is negative"),
        ("zero-energy", "h1,sell,0.000,0.1\n", "line 2: energy_kwh must be positive, found `0.000`"),
        ("negative-price", "h1,sell,1,-0.1\n", "line 2: price_per_kwh `-0.1` is negative"),
        ("side", "h1,sel,1,0.1\n", "line 2: side `sel` is neither `buy` nor `sell`"),
        (
            "duplicate",
            "h1,sell,1,0.1\nh2,buy,1,0.1\nh1,buy,1,0.2\n",
            "line 4: id `h1` is already used on line 2",
        ),
        ("fields", "h1,sell,1\n", "line 2: expected 4 fields (as the header), found 3"),
        ("garbage-energy", "h1,sell,2.5kwhh,0.1\n", "line 2: energy_kwh `2.5kwhh` is not a decimal number"),
        ("empty-id", ",sell,1,0.1\n", "line 2: id `` must be 1 to 64 printable ASCII characters"),
        ("price-bound", "h1,sell,1,1000000.000001\n", "line 2: the order has a price of 1000000000001"),
    ];
    for (name, rows, expected) in cases {
        let path = book_file(name, &format!("{HEADER}{rows}"));
        let output = clear(&path, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: expected {expected:?} in {stderr:?}");
        assert!(output.stdout.is_empty(), "{name}: printed a result");
    }
    let path = book_file("header", "id,side,kwh,price\nh1,sell,1,0.1\n");
    let stderr = String::from_utf8(clear(&path, &[]).stderr).unwrap();
    assert!(stderr.contains(
        "line 1: expected the header `id,side,energy_kwh,price_per_kwh` or `id,side,energy_kwh,price_per_kwh,zone`, found `id,side,kwh,price`"
    ));
}

#[test]
fn a_zonal_book_splits_the_market_at_a_congested_feeder() {
    let (orders, zones) =
        (repo_root().join("examples/zonal-book.csv"), repo_root().join("examples/zones.csv"));
    let output = clear(&orders, &["--zones", zones.to_str().unwrap(), "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    // The hill may export 3 kWh: it keeps 0.095 and the valley pays 0.25.
    assert_eq!(json["volume_wh"], 4_600, "{json}");
    let zone = |index: usize| {
        let zone = &json["zones"][index];
        (
            zone["zone"].clone(),
            zone["price_micro_per_kwh"].clone(),
            zone["net_export_wh"].clone(),
            zone["congested"].clone(),
        )
    };
    assert_eq!(zone(0), ("hill".into(), 95_000.into(), 3_000.into(), true.into()));
    assert_eq!(zone(1), ("valley".into(), 250_000.into(), (-3_000).into(), true.into()));
    assert_eq!(json["zones"][0]["export_wh_max"], 3_000);
    let table = stdout(&clear(&orders, &["--zones", zones.to_str().unwrap()]));
    assert!(table.lines().any(|line| line.starts_with("hill") && line.ends_with("congested")), "{table}");

    // Bad zone input is refused, naming the file's line.
    let zoned =
        |name: &str, rows: &str| book_file(name, &format!("id,side,energy_kwh,price_per_kwh,zone\n{rows}"));
    let zones_file =
        |name: &str, rows: &str| book_file(name, &format!("zone,import_wh_max,export_wh_max\n{rows}"));
    let good_zones = zones_file("zones-good", "hill,0,10\n");
    let cases = [
        (
            zoned("zone-unknown", "h1,sell,1,0.1,mountain\n"),
            good_zones.clone(),
            "line 2: zone `mountain` is not in the zones file",
        ),
        (
            zoned("zone-fields", "h1,sell,1,0.1\n"),
            good_zones.clone(),
            "line 2: expected 5 fields (as the header), found 4",
        ),
        (
            book_file("zone-none", &format!("{HEADER}h1,sell,1,0.1\n")),
            good_zones.clone(),
            "the orders have no zone column",
        ),
        (
            zoned("zone-ok", "h1,sell,1,0.1,hill\n"),
            zones_file("zones-negative", "hill,0,-5\n"),
            "line 2: export_wh_max `-5` is not a whole number of Wh",
        ),
        (
            zoned("zone-ok", "h1,sell,1,0.1,hill\n"),
            zones_file("zones-twice", "hill,0,5\nhill,1,1\n"),
            "line 3: zone `hill` is already listed on line 2",
        ),
        (
            zoned("zone-ok", "h1,sell,1,0.1,hill\n"),
            book_file("zones-header", "zone,import,export\n"),
            "line 1: expected the header `zone,import_wh_max,export_wh_max`",
        ),
    ];
    for (orders, zones, expected) in cases {
        let output = clear(&orders, &["--zones", zones.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{expected}: {stderr}");
        assert!(stderr.contains(expected), "expected {expected:?} in {stderr:?}");
    }
    // Orders with zones need the zones' limits.
    let output = clear(&zoned("zone-alone", "h1,sell,1,0.1,hill\n"), &[]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("give the zones' limits with --zones"));
}

#[test]
fn bad_arguments_exit_with_status_2() {
    let path = book_file("args", &format!("{HEADER}h1,sell,1,0.1\n"));
    for (args, expected) in [
        (&["--k", "1.5"][..], "`1.5` is not between 0 and 1"),
        (&["--k", "0.0005"][..], "more than 3 decimal places"),
        (&["--fee", "cheap"][..], "`cheap` is not a decimal number"),
        (&["--mechanism", "dutch"][..], "invalid value 'dutch'"),
    ] {
        let output = clear(&path, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr:?}");
    }
    let missing = gridshare(&["clear", "--orders", "no/such/book.csv"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot open no/such/book.csv"));
}
