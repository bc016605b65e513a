//! End to end: the real `gridshare` binary against a real dev node
//! (`gridshare-node run --dev`): keys, registration, a credit, a meter
//! reading, offers (one cancelled, one traded), trades, the market, bills,
//! proofs checked locally, the event stream, an export and an audit over the
//! API; and the messages and exit statuses of bad input and rejections.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{DevNode, Gridshare, poll, text};
use gridshare_api::client::Client;

#[test]
fn a_household_trades_with_the_dev_community() {
    let dir = tempfile::tempdir().unwrap();
    let node = DevNode::start(dir.path());
    let gridshare = Gridshare { keystore: dir.path().join("keys"), node: node.api.clone() };

    // The dev registrar's key, and a new household's account and meter keys.
    let seed_file = node.data_dir.join("dev-keys").join("registrar.seed");
    let seed = std::fs::read_to_string(&seed_file)
        .unwrap_or_else(|error| panic!("{}: {error}; the node's log:\n{}", seed_file.display(), node.log()));
    let imported = gridshare.run_with_stdin(
        &["keys", "import", "registrar", "--role", "registrar", "--insecure-plaintext"],
        &seed,
    );
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    gridshare.ok(&["keys", "new", "home"]);
    gridshare.ok(&["keys", "new", "home-meter", "--role", "meter", "--insecure-plaintext"]);

    // The registrar registers them and credits the account, one after the
    // other without waiting: nonces come from the node, then the next free.
    let stdout = gridshare.ok(&["register", "account", "home", "--credit-limit", "0"]);
    assert!(stdout.starts_with("Admitted: register account home ("), "{stdout}");
    let stdout = gridshare.ok(&[
        "register",
        "meter",
        "home-meter",
        "--owner",
        "home",
        "--max-import-kw",
        "7000",
        "--max-export-kw",
        "7000",
        "--zone",
        "main",
    ]);
    assert!(stdout.contains("register meter home-meter"), "{stdout}");
    let credited = gridshare.json(&["credit", "home", "50", "--reference", "e2e deposit", "--json"]);
    assert_eq!(credited["status"], "admitted", "{credited}");
    // A rejection says why with the amounts, and exits with status 1.
    let stderr =
        gridshare.fails(&["debit", "home", "1000EUR", "--reference", "too much"], 1, "insufficient funds");
    assert!(stderr.contains("EUR"), "{stderr}");

    let balance = poll("the credit to be committed", Duration::from_secs(30), &node, || {
        let output = gridshare.run(&["balance", "--json"]);
        if !output.status.success() {
            // Until the registration is in a block.
            assert!(text(&output.stderr).contains("is not registered"), "{}", text(&output.stderr));
            return None;
        }
        let balance: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        (balance["balance_nano"] == "50000000000").then_some(balance)
    });
    assert_eq!(balance["meters"][0]["zone"], "main", "{balance}");
    let stdout = gridshare.ok(&["balance"]);
    assert!(stdout.contains("Balance") && stdout.contains("50.00 EUR"), "{stdout}");

    // A meter reading for the latest ended interval (the first one may not
    // have ended yet, and the interval before the meter's registration is
    // refused: a meter reports from its registration interval on).
    poll("an interval to end for a meter reading", Duration::from_secs(30), &node, || {
        let output = gridshare.run(&[
            "meter",
            "report",
            "--meter",
            "home-meter",
            "--import-kwh",
            "0",
            "--export-kwh",
            "0",
        ]);
        let stderr = text(&output.stderr);
        if output.status.success() {
            return Some(());
        }
        assert!(
            stderr.contains("has not ended")
                || stderr.contains("no interval has ended")
                || stderr.contains("(reading_before_registration)"),
            "{stderr}"
        );
        None
    });

    // A household that claims its meter imported 9.3·10¹⁵ kWh in the next
    // interval (a register jump that once halted the chain for good) is
    // refused with the bound its meter allows; the chain goes on making
    // blocks.
    let attack =
        ["meter", "report", "--meter", "home-meter", "--import-kwh", "9300000000000000", "--export-kwh", "0"];
    let refused =
        poll("the next interval to end for the impossible reading", Duration::from_secs(30), &node, || {
            let output = gridshare.run(&attack);
            let stderr = text(&output.stderr);
            (!stderr.contains("(reading_not_increasing)")).then_some(output)
        });
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("(reading_above_capacity)") && stderr.contains("at most"), "{stderr}");
    let api = Client::new(&node.api).unwrap();
    let height_after_attack = api.status().unwrap().height;
    poll("blocks after the impossible reading", Duration::from_secs(30), &node, || {
        (api.status().unwrap().height >= height_after_attack + 3).then_some(())
    });

    // An offer to cancel, and one to trade, a few intervals ahead so that
    // they are still open while they are listed.
    let cancelled =
        gridshare.json(&["offer", "buy", "500Wh", "--price", "0.5", "--interval", "+5", "--json"]);
    assert_eq!(cancelled["status"], "admitted", "{cancelled}");
    let cancelled_id = cancelled["id"].as_str().unwrap().to_string();
    let offered = gridshare.json(&["offer", "buy", "1kWh", "--price", "0.9", "--interval", "+3", "--json"]);
    assert_eq!(offered["status"], "admitted", "{offered}");
    assert_eq!((offered["side"].as_str(), offered["energy_wh"].as_u64()), (Some("buy"), Some(1_000)));
    assert_eq!(offered["price_micro_per_kwh"], 900_000);
    let offer_id = offered["id"].as_str().unwrap().to_string();
    poll("both offers to be listed", Duration::from_secs(10), &node, || {
        let listed = gridshare.ok(&["offers", "--json"]);
        (listed.contains(&offer_id) && listed.contains(&cancelled_id)).then_some(())
    });
    let stdout = gridshare.ok(&["cancel", &cancelled_id]);
    assert!(stdout.starts_with(&format!("Cancellation of offer {cancelled_id} admitted")), "{stdout}");
    poll("the cancelled offer to go", Duration::from_secs(10), &node, || {
        (!gridshare.ok(&["offers", "--json"]).contains(&cancelled_id)).then_some(())
    });

    // The node timed its acknowledged offers into the ledger.
    let metrics = api.metrics().unwrap();
    let counted = metrics
        .lines()
        .find_map(|line| line.strip_prefix("gridshare_offer_to_ledger_ms_count ")?.parse::<u64>().ok());
    assert!(counted.is_some_and(|count| count >= 2), "{metrics}");

    // The dev community's solar household sells about 1 kWh an interval at
    // 0.09 to 0.13: a bid of 0.90 trades.
    let trade = poll("the offer to trade", Duration::from_secs(60), &node, || {
        let trades = gridshare.json(&["trades", "--json"]);
        trades["trades"].as_array().unwrap().iter().find(|trade| trade["offer"] == offer_id.as_str()).cloned()
    });
    assert_eq!(trade["side"], "buy", "{trade}");
    let energy_wh = trade["energy_wh"].as_u64().unwrap();
    assert!((1..=1_000).contains(&energy_wh), "{trade}");
    assert!(trade["price_micro_per_kwh"].as_u64().unwrap() <= 900_000, "{trade}");
    let interval = trade["interval"].as_u64().unwrap().to_string();
    let stdout = gridshare.ok(&["trades", "--interval", &interval]);
    assert!(stdout.starts_with("INTERVAL  SIDE") && stdout.contains(" buy "), "{stdout}");
    let stdout = gridshare.ok(&["market", "--interval", &interval]);
    assert!(stdout.contains("Clearing price  0.") && stdout.contains("S supply"), "{stdout}");

    // Proofs, checked here against the genesis file the node wrote.
    let genesis_file = node.genesis_file.to_str().unwrap();
    let stdout = gridshare.ok(&["prove", &offer_id, "--genesis", genesis_file]);
    assert!(stdout.starts_with(&format!("Verified: transaction {offer_id} is final.")), "{stdout}");
    assert!(stdout.contains("offer by home: buy 1.000 kWh at 0.900000 EUR/kWh"), "{stdout}");
    let stdout = gridshare.ok(&["prove", "trade", &interval]);
    assert!(stdout.contains("Trade        home bought"), "{stdout}");
    let proven = gridshare.json(&["prove", "trade", &interval, "--json"]);
    assert_eq!(proven["verified"], true);

    // The bill once the interval settles.
    let bill = poll("the interval to settle", Duration::from_secs(30), &node, || {
        let bills = gridshare.json(&["bill", "--interval", &interval, "--json"]);
        bills["bills"].as_array().unwrap().first().cloned()
    });
    assert_eq!(bill["bought_wh"].as_u64(), Some(energy_wh), "{bill}");
    let stdout = gridshare.ok(&["bill", "--interval", &interval]);
    assert!(stdout.starts_with(&format!("Bill of home for interval {interval}")), "{stdout}");
    assert!(stdout.contains("Bought (traded)") && stdout.contains("Total"), "{stdout}");
    let stdout = gridshare.ok(&["prove", "bill", &interval]);
    assert!(stdout.contains("Bill of home for interval"), "{stdout}");
    // The same bill among those of its local day, wherever that day is.
    let start_ms = node_status_start_ms(&node, &interval);
    for zone in ["UTC", "Pacific/Kiritimati", "America/Adak"] {
        let tz = jiff::tz::TimeZone::get(zone).unwrap();
        let day = jiff::Timestamp::from_millisecond(start_ms).unwrap().to_zoned(tz).date().to_string();
        let bills = gridshare.json(&["bill", "--day", &day, "--tz", zone, "--json"]);
        let intervals: Vec<String> =
            bills["bills"].as_array().unwrap().iter().map(|bill| bill["interval"].to_string()).collect();
        assert!(intervals.contains(&interval), "{zone} {day}: {intervals:?}");
    }
    let balance = gridshare.json(&["balance", "--json"]);
    let balance_nano: i128 = balance["balance_nano"].as_str().unwrap().parse().unwrap();
    assert!(balance_nano < 50_000_000_000, "{balance}");

    // The event stream: a clearing or a settlement arrives within seconds.
    let mut watcher =
        gridshare.command(&["watch", "--json"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let line = received.recv_timeout(Duration::from_secs(30));
    let _ = watcher.kill();
    let _ = watcher.wait();
    let line = line.unwrap_or_else(|_| {
        panic!("no event from `gridshare watch` in 30 s; the node's log:\n{}", node.log())
    });
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(matches!(event["event"].as_str(), Some("clearing" | "settlement")), "{event}");
    assert!(event["data"]["interval"].is_u64(), "{event}");

    // The auditor: the export over the API, and an audit of it.
    let export = dir.path().join("ledger.export");
    let stdout = gridshare.ok(&["export", "--out", export.to_str().unwrap()]);
    assert!(
        stdout.starts_with("Exported ") && stdout.contains(&format!(" blocks from {}", node.api)),
        "{stdout}"
    );
    let stdout = gridshare.ok(&["audit"]);
    assert!(stdout.starts_with("Audit           PASSED: no finding"), "{stdout}");

    // Input refused before anything is sent.
    gridshare.fails(
        &["offer", "buy", "1", "--price", "0.5", "--interval", "0"],
        2,
        "already closed for offers at",
    );
    gridshare.fails(&["offer", "buy", "1", "--price", "0.5", "--from", "nobody"], 2, "unknown key `nobody`");
    gridshare.fails(&["credit", "nobody", "1", "--reference", "x"], 2, "unknown key `nobody`");
    gridshare.fails(
        &["credit", "home", "1usd", "--reference", "x"],
        2,
        "the community's currency is EUR, not USD",
    );
}

#[test]
fn bad_input_exits_2_and_an_unreachable_node_3() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: whatever reaches the node fails to connect.
    let gridshare = Gridshare { keystore: dir.path().join("keys"), node: "http://127.0.0.1:1".into() };
    gridshare.ok(&["keys", "new", "home", "--insecure-plaintext"]);
    let cases: &[(&[&str], &str)] = &[
        (&["offer", "buy", "2.5kwhh", "--price", "0.1"], "bad amount `2.5kwhh`: the unit must be kWh or Wh"),
        (&["offer", "sell", "0", "--price", "0.1"], "bad amount `0`: an offer is for at least 1 Wh"),
        (&["offer", "sell", "1", "--price", "0.1234567"], "bad amount `0.1234567`"),
        (&["offer", "sell", "1", "--price", "0.1", "--interval", "soon"], "bad interval `soon`"),
        (
            &["offer", "sell", "1", "--price", "0.1", "--interval", "2026-11-21T17:20"],
            "a time needs its zone",
        ),
        (&["offer", "sell", "1", "--price", "0.1", "--from", "nobody"], "unknown key `nobody`"),
        (
            &["register", "meter", "m", "--owner", "home", "--max-import-kw", "7kVA", "--max-export-kw", "1"],
            "bad amount `7kVA`",
        ),
        (&["bill", "--day", "2026-02-30"], "bad day `2026-02-30`"),
        (&["bill", "--day", "2026-11-21", "--tz", "Mars/Olympus"], "unknown time zone `Mars/Olympus`"),
        (&["report", "bills", "--from", "yesterday"], "is not a time"),
        (&["prove", "cafe"], "cannot prove `cafe`"),
        (&["trades", "--from-interval", "3"], "--to-interval"),
        (&["--node", "ftp://example.org", "balance"], "only http:// and https:// addresses are supported"),
    ];
    for (args, expected) in cases {
        gridshare.fails(args, 2, expected);
    }
    // A node that cannot be reached is worth trying again: exit status 3.
    gridshare.fails(&["balance"], 3, "node not reachable at http://127.0.0.1:1");
    let stderr = gridshare.fails(&["balance"], 3, "start one with: gridshare-node run --dev");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Every command explains itself with examples.
    for command in [
        &["offer"][..],
        &["meter"],
        &["register"],
        &["tariffs"],
        &["offer", "sell"],
        &["offer", "buy"],
        &["offers"],
        &["cancel"],
        &["balance"],
        &["trades"],
        &["bill"],
        &["market"],
        &["meter", "report"],
        &["prove"],
        &["watch"],
        &["register", "account"],
        &["register", "meter"],
        &["credit"],
        &["debit"],
        &["tariffs", "set"],
        &["export"],
        &["audit"],
        &["report"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let stdout = gridshare.ok(&args);
        assert!(stdout.contains("Example"), "{command:?} --help has no example:\n{stdout}");
    }
}

/// The start (ms since the epoch) of interval `interval` of the node's
/// community.
fn node_status_start_ms(node: &DevNode, interval: &str) -> i64 {
    let client = Client::new(&node.api).unwrap();
    let start_ms = client.interval(interval.parse().unwrap()).unwrap().start_ms;
    i64::try_from(start_ms).unwrap()
}
