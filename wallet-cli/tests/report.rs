//! End-to-end tests of `gridshare report` on a real ledger (a redb data
//! directory of a trading chain, and its export): every row against the
//! ledger's own receipts and readings, times in the chosen zone with its
//! offset, bills summed per local day equal to the per-interval rows, the
//! same report from the data directory and the export, JSON as well as
//! CSV; and refusals (backwards, too wide, an unknown zone, a node that is
//! not there) with the status that tells a script whether to retry.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use gridshare_ledger::block::Receipt;
use gridshare_ledger::execute::{Signatures, execute};
use gridshare_ledger::state::State;
use gridshare_ledger::store::{RedbStore, Store};
use gridshare_ledger::testkit::trading_chain;
use gridshare_ledger::tx::Tx;

fn gridshare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridshare")).args(args).env_remove("GRIDSHARE_NODE").output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The CSV a command printed: its header and rows as maps.
fn csv_rows(args: &[&str]) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let output = gridshare(args);
    assert!(output.status.success(), "gridshare {args:?}: {}", text(&output.stderr));
    let mut reader = csv::Reader::from_reader(output.stdout.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    let rows = reader
        .records()
        .map(|record| header.iter().cloned().zip(record.unwrap().iter().map(str::to_string)).collect())
        .collect();
    (header, rows)
}

/// Nano-currency from a report's fixed 9-decimal money.
fn nano(text: &str) -> i128 {
    let negative = text.starts_with('-');
    let (whole, fraction) = text.trim_start_matches('-').split_once('.').unwrap();
    assert_eq!(fraction.len(), 9, "money has 9 decimals: {text}");
    let value = whole.parse::<i128>().unwrap() * 1_000_000_000 + fraction.parse::<i128>().unwrap();
    if negative { -value } else { value }
}

fn rfc3339(time_ms: u64, zone: &str) -> String {
    let tz = jiff::tz::TimeZone::get(zone).unwrap();
    jiff::Timestamp::from_millisecond(i64::try_from(time_ms).unwrap())
        .unwrap()
        .to_zoned(tz)
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

#[test]
fn reports_list_what_the_ledger_holds_in_local_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    std::fs::create_dir(&data).unwrap();
    let (community, chain) = trading_chain(12, 4, 30);
    let genesis = &community.genesis;
    let mut store = RedbStore::create(data.join("ledger.redb"), genesis).unwrap();
    let mut state = State::genesis(genesis);
    for block in &chain {
        state = execute(genesis, &state, &block.block, Signatures::Verify).unwrap().0;
        store.commit(block, &state).unwrap();
    }
    drop(store);
    let export = dir.path().join("ledger.export");
    let (data_arg, export_arg) = (data.to_str().unwrap(), export.to_str().unwrap());
    assert!(gridshare(&["export", "--data-dir", data_arg, "--out", export_arg]).status.success());

    // What the ledger holds.
    let receipts: Vec<&Receipt> = chain.iter().flat_map(|block| &block.block.receipts).collect();
    let clearings: Vec<_> = receipts
        .iter()
        .filter_map(|receipt| match receipt {
            Receipt::Clearing(clearing) => Some(clearing),
            Receipt::Settlement(_) => None,
        })
        .collect();
    let settlements: Vec<_> = receipts
        .iter()
        .filter_map(|receipt| match receipt {
            Receipt::Settlement(settlement) => Some(settlement),
            Receipt::Clearing(_) => None,
        })
        .collect();
    let readings = chain
        .iter()
        .flat_map(|block| &block.block.transactions)
        .filter(|signed| matches!(signed.tx, Tx::MeterReading(_)))
        .count();
    let trades: usize = clearings.iter().map(|clearing| clearing.trades.len()).sum();
    assert!(trades > 0 && !settlements.is_empty() && readings > 0, "the chain trades and settles");

    // The whole chain: from its genesis, a day long, in Amsterdam's time.
    let from = rfc3339(genesis.genesis_time_ms, "UTC");
    let zone = ["--tz", "Europe/Amsterdam"];
    // `+P1D` from now reaches far past the chain: the range is its genesis
    // to now plus a day, wider than a report's 366 days.
    let wide = gridshare(&["report", "trades", export_arg, "--from", &from, "--to", "+P1D"]);
    assert_eq!(wide.status.code(), Some(2), "{}", text(&wide.stderr));
    assert!(text(&wide.stderr).contains("at most 366 days"), "{}", text(&wide.stderr));
    let to = rfc3339(genesis.genesis_time_ms + 86_400_000, "UTC");
    let range = ["--from", from.as_str(), "--to", to.as_str()];
    let report = |kind: &str, source: &[&str], extra: &[&str]| {
        let mut args = vec!["report", kind];
        args.extend(source);
        args.extend(range);
        args.extend(zone);
        args.extend(extra);
        csv_rows(&args)
    };

    let (header, rows) = report("clearings", &[export_arg], &[]);
    let currency = genesis.currency.to_ascii_lowercase();
    assert_eq!(
        header,
        [
            "interval",
            "start",
            "end",
            "mechanism",
            "offers",
            &format!("price_{currency}_per_kwh"),
            "volume_kwh",
            "trades",
            "block"
        ]
    );
    assert_eq!(rows.len(), clearings.len());
    for (row, clearing) in rows.iter().zip(&clearings) {
        assert_eq!(row["interval"], clearing.interval.to_string());
        let start = genesis.interval_start_ms(clearing.interval).unwrap();
        assert_eq!(row["start"], rfc3339(start, "Europe/Amsterdam"));
        assert!(row["start"].ends_with("+01:00"), "{}", row["start"]);
        assert_eq!(row["volume_kwh"], gridshare_api::decimal::format_kwh(clearing.volume_wh));
        assert_eq!(row["trades"], clearing.trades.len().to_string());
    }
    let (_, rows) = report("trades", &[export_arg], &[]);
    assert_eq!(rows.len(), trades);
    let amount = format!("amount_{currency}");
    let traded: i128 = rows.iter().map(|row| nano(&row[&amount])).sum();
    let expected: i128 = clearings
        .iter()
        .flat_map(|clearing| &clearing.trades)
        .map(|trade| i128::from(trade.energy_wh) * i128::from(trade.price_micro_per_kwh))
        .sum();
    assert_eq!(traded, expected);
    let (_, rows) = report("readings", &[export_arg], &[]);
    assert_eq!(rows.len(), readings);

    // Bills: per interval, then per local day, the same money per account.
    let total = format!("total_{currency}");
    let (_, per_interval) = report("bills", &[export_arg], &[]);
    assert_eq!(
        per_interval.len(),
        settlements.iter().map(|settlement| settlement.bills.len()).sum::<usize>()
    );
    let mut by_account: BTreeMap<String, i128> = BTreeMap::new();
    for row in &per_interval {
        *by_account.entry(row["account"].clone()).or_default() += nano(&row[&total]);
    }
    let (header, per_day) = report("bills", &[export_arg], &["--per", "day"]);
    assert_eq!(&header[..5], ["period", "start", "end", "account", "intervals"]);
    let mut daily: BTreeMap<String, i128> = BTreeMap::new();
    for row in &per_day {
        // A local day, or what of it the range covers.
        let clamped = row["start"] == rfc3339(genesis.genesis_time_ms, "Europe/Amsterdam");
        assert!(clamped || row["start"].ends_with("T00:00:00+01:00"), "a local day: {}", row["start"]);
        assert!(row["start"].starts_with(&row["period"]), "{row:?}");
        *daily.entry(row["account"].clone()).or_default() += nano(&row[&total]);
    }
    assert_eq!(daily, by_account);
    let counted: u64 = per_day.iter().map(|row| row["intervals"].parse::<u64>().unwrap()).sum();
    assert_eq!(counted, per_interval.len() as u64);

    // The data directory says the same, byte for byte; JSON the same rows.
    let args = |source: &[&str], extra: &[&str]| -> Vec<String> {
        let words = ["report", "bills"].iter().chain(source).chain(&range).chain(extra);
        words.map(|word| word.to_string()).collect()
    };
    let run = |args: Vec<String>| gridshare(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let from_file = run(args(&[export_arg], &[]));
    let from_store = run(args(&["--data-dir", data_arg], &[]));
    assert!(from_file.status.success() && from_store.status.success(), "{}", text(&from_store.stderr));
    assert!(text(&from_file.stdout).lines().count() > per_interval.len(), "a header and every bill");
    assert_eq!(from_file.stdout, from_store.stdout);
    let json: serde_json::Value =
        serde_json::from_slice(&run(args(&[export_arg], &["--format", "json"])).stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), per_interval.len());
    assert!(json[0]["interval"].is_u64() && json[0][&total].is_string(), "{}", json[0]);

    // A file of its own.
    let out = dir.path().join("bills.csv");
    let output = run(args(&[export_arg], &["--out", out.to_str().unwrap()]));
    assert!(text(&output.stderr).contains(&format!("Wrote {} rows", per_interval.len())));
    assert_eq!(std::fs::read(&out).unwrap(), from_file.stdout);
}
#[test]
fn bad_ranges_and_sources_are_refused_with_the_reason() {
    let cases: [(&[&str], i32, &str); 6] = [
        (&["report", "trades", "x.export", "--from", "2026-11-21", "--to", "2026-11-01"], 2, "not before"),
        (
            &["report", "trades", "x.export", "--from", "2024-01-01", "--to", "2026-01-01"],
            2,
            "at most 366 days",
        ),
        (&["report", "trades", "x.export", "--from", "yesterday"], 2, "is not a time"),
        (&["report", "bills", "x.export", "--from", "-1d", "--tz", "Mars/Olympus"], 2, "unknown time zone"),
        (&["report", "trades", "x.export", "--from", "-1d", "--per", "day"], 2, "sums bills only"),
        (&["report", "trades", "--from", "-1d", "--node", "http://127.0.0.1:1"], 3, "gridshare-node running"),
    ];
    for (args, code, says) in cases {
        let output = gridshare(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
