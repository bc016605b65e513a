//! End to end: a household left alone with `gridshare meter run` (reading a
//! P1 port on loopback whose meter exports 100 Wh every interval) and
//! `gridshare agent run` against a dev node. The agent learns the surplus
//! from the readings on the ledger, forecasts it, and sells it; its offers
//! are admitted with the gateway's signed readings as their attestation, an
//! open offer it did not make for an interval it decides is cancelled, it
//! prices from the tariffs the registrar scheduled,
//! `agent status` shows what it did, a dry run submits nothing, and a
//! configuration with a field it does not know is refused, the field named.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{DevNode, Gridshare, Household, P1Port, PASSPHRASE, poll};
use gridshare_api::client::Client;
use gridshare_cli::gateway::p1::telegram;

/// Export grows this much every interval.
const SURPLUS_WH: u64 = 100;

#[test]
fn an_agent_left_alone_sells_the_surplus_it_learned_from_the_meter() {
    let dir = tempfile::tempdir().unwrap();
    let node = DevNode::start(dir.path());
    let api = Client::new(&node.api).unwrap();
    let Household { keys: household, gateway, meter: key } =
        Household::register(&node, dir.path(), "50", "500");
    household.ok(&["credit", "home", "100", "--reference", "deposit"]);

    // The gateway, reading the meter.
    let genesis = api.community().unwrap().genesis;
    // A meter whose export register grows SURPLUS_WH every interval.
    let port = {
        let genesis = genesis.clone();
        P1Port::serve(Duration::from_millis(200), move |now_ms| {
            let export_wh = 50_000 + SURPLUS_WH * genesis.interval_at(now_ms);
            Some(telegram([700_000, 0], [export_wh, 0]))
        })
    };
    let gateway_log = dir.path().join("gateway.log");
    let log_file = std::fs::File::create(&gateway_log).unwrap();
    let mut gateway_run = gateway
        .command(&["meter", "run", "--p1", &port.address])
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let gateway_said = || std::fs::read_to_string(&gateway_log).unwrap_or_default();
    poll_or("three readings on the ledger", &node, gateway_said, || {
        let last = api.meter(&key).unwrap()?.last_reading?;
        let first = api.meter_readings(&key, &gridshare_api::SpanQuery::default()).unwrap().first()?.interval;
        (last.interval >= first + 2).then_some(())
    });

    // A configuration with a field it does not know: refused, named.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "account = \"home\"\n[strategy]\nask_per_mile = 200\n").unwrap();
    household.fails(&["agent", "run", "--config", bad.to_str().unwrap()], 2, "ask_per_mile");

    // A dry run decides and submits nothing.
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "account = \"home\"\n[strategy]\nask_per_mille = 200\n").unwrap();
    let config = config.to_str().unwrap();
    let dry = household.ok(&["agent", "run", "--config", config, "--dry-run", "--intervals", "1"]);
    assert!(dry.contains("dry run") || dry.contains("no offer"), "{dry}");
    let home = household_key(&household);
    let mine = gridshare_api::OffersQuery { account: Some(home), interval: None };
    assert!(api.offers(&mine).unwrap().is_empty(), "{dry}");

    // The registrar lowers the tariffs (feed-in 0.08 to 0.01, import 0.30
    // to 0.20) from an interval the agent will decide: it prices from the
    // tariffs in force for each interval, so from then on its asks sit
    // below the dev seller's (0.09 to 0.13) and clear against the dev
    // buyer's bids (0.22 to 0.26).
    let lowered_from = genesis.interval_at(common::now_ms()) + 3;
    household.ok(&[
        "tariffs",
        "set",
        "--import",
        "0.2",
        "--feed-in",
        "0.01",
        "--network-fee",
        "0.01",
        "--from-interval",
        &lowered_from.to_string(),
    ]);
    poll("the new tariffs in a block", Duration::from_secs(10), &node, || {
        (api.interval(lowered_from).unwrap().tariffs.grid_feed_in_micro_per_kwh == 10_000).then_some(())
    });
    assert_eq!(api.interval(lowered_from - 1).unwrap().tariffs.grid_feed_in_micro_per_kwh, 80_000);

    // An open offer the agent did not make, for an interval it will decide
    // (as a run stopped before writing its state would leave one), made
    // just before the agent starts: it is cancelled before the agent offers
    // for that interval.
    let stale = household.json(&["offer", "buy", "20Wh", "--price", "0.2", "--interval", "+2", "--json"]);
    assert_eq!(stale["status"], "admitted", "{stale}");
    let (stale_id, stale_interval) = (stale["id"].as_str().unwrap().to_string(), stale["interval"].clone());
    poll("the hand-made offer in a block", Duration::from_secs(10), &node, || {
        (!api.offers(&mine).unwrap().is_empty()).then_some(())
    });

    // Left alone for four intervals, unlocking its key from a file.
    let passphrase_file = dir.path().join("passphrase");
    std::fs::write(&passphrase_file, format!("{PASSPHRASE}\n")).unwrap();
    let mut run = household
        .command(&[
            "agent",
            "run",
            "--config",
            config,
            "--passphrase-file",
            passphrase_file.to_str().unwrap(),
            "--intervals",
            "4",
            "--json",
        ])
        .env_remove("GRIDSHARE_PASSPHRASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let decisions: Vec<serde_json::Value> = BufReader::new(run.stdout.take().unwrap())
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
        .collect();
    let output = run.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", common::text(&output.stderr));
    gateway_run.kill().unwrap();
    gateway_run.wait().unwrap();
    drop(port);

    // Four intervals in a row, each forecast at the surplus the meter
    // measured, and sold: every offer admitted, none beyond the surplus.
    assert_eq!(decisions.len(), 4, "{decisions:?}");
    let first = decisions[0]["interval"].as_u64().unwrap();
    let mut sold = 0;
    for (offset, decision) in (0..).zip(&decisions) {
        assert_eq!(decision["interval"], first + offset, "{decision}");
        let cancelled = decision["cancelled"].as_array().unwrap();
        if decision["interval"] == stale_interval {
            assert_eq!(cancelled.len(), 1, "{decision}");
            assert_eq!(
                (&cancelled[0]["offer"], &cancelled[0]["outcome"]),
                (&stale_id.clone().into(), &"admitted".into())
            );
        } else {
            assert!(cancelled.is_empty(), "{decision}");
        }
        assert_eq!(decision["forecast_wh"], SURPLUS_WH, "{decision}");
        let lowered = decision["interval"].as_u64().unwrap() >= lowered_from;
        for offer in decision["offers"].as_array().unwrap() {
            assert_eq!(
                (&offer["side"], &offer["outcome"]),
                (&"sell".into(), &"admitted".into()),
                "{decision}"
            );
            // Asks sit a fifth of the way from the feed-in tariff in force
            // towards its import tariff (±5 %): 0.113 to 0.135 before,
            // 0.038 to 0.058 after.
            let price = offer["price_micro_per_kwh"].as_u64().unwrap();
            assert_eq!(price < 60_000, lowered, "{decision}");
            sold += offer["energy_wh"].as_u64().unwrap();
        }
    }
    assert_eq!(sold, 4 * SURPLUS_WH, "{decisions:?}");
    assert!(decisions.iter().any(|decision| decision["interval"] == stale_interval), "{decisions:?}");
    let last = first + 3;
    assert!(last >= lowered_from, "{decisions:?}");
    // The hand-made offer and its cancellation, then the agent's four.
    let nonce = poll("the agent's offers in blocks", Duration::from_secs(30), &node, || {
        let account = api.account(&home).unwrap()?;
        (account.last_nonce >= 6).then_some(account.last_nonce)
    });
    assert_eq!(nonce, 6);
    let open: Vec<String> = api.offers(&mine).unwrap().iter().map(|offer| offer.id.to_string()).collect();
    assert!(!open.contains(&stale_id), "{open:?}");

    // Under the lower tariffs its offers clear: each such interval sold
    // the 100 Wh, and the bill of the last one shows it.
    let sold_in = poll("the agent's last interval to settle", Duration::from_secs(30), &node, || {
        api.bills(&home, &gridshare_api::SpanQuery::between(last, last)).unwrap().first()?;
        Some(api.trades(&home, &gridshare_api::SpanQuery::between(first, last)).unwrap())
    });
    for interval in lowered_from.max(first)..=last {
        let sold: u64 = sold_in
            .iter()
            .filter(|trade| trade.interval == interval && trade.side == gridshare_api::Side::Sell)
            .map(|trade| trade.energy_wh)
            .sum();
        assert_eq!(sold, SURPLUS_WH, "interval {interval}: {sold_in:?}");
    }
    let bills = household.json(&["bill", "--interval", &last.to_string(), "--json"]);
    assert_eq!(bills["bills"][0]["sold_wh"], SURPLUS_WH, "{bills}");
    let bill = household.ok(&["bill", "--interval", &last.to_string()]);
    assert!(bill.lines().any(|line| line.contains("Sold (traded)") && line.contains("0.100")), "{bill}");

    // `agent status` shows the decisions and the forecast's accuracy.
    let status = household.ok(&["agent", "status", "--config", config]);
    assert!(status.contains(&format!("last decided interval {}", first + 3)), "{status}");
    assert!(status.contains("Forecast error: 0.000 kWh"), "{status}");
    assert!(status.contains("sell 0.100 kWh"), "{status}");
    assert!(status.contains("Saved against grid-only prices:"), "{status}");
    // In JSON, the savings are the bills less the same energy at the grid
    // tariffs alone.
    let json = household.json(&["agent", "status", "--config", config, "--json"]);
    let nano = |field: &str| json["savings"][field].as_str().unwrap().parse::<i128>().unwrap();
    assert_eq!(nano("saved_nano"), nano("bills_nano") - nano("grid_only_nano"), "{json}");
    assert!(json["savings"]["intervals"].as_u64().unwrap() > 0, "{json}");
}

/// `poll` for a minute, with what the gateway said if it fails.
fn poll_or<T>(
    what: &str,
    node: &DevNode,
    said: impl Fn() -> String,
    condition: impl FnMut() -> Option<T>,
) -> T {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll(what, Duration::from_secs(60), node, condition)
    }));
    result.unwrap_or_else(|_| panic!("waited for {what}; the gateway said:\n{}", said()))
}

/// The household's account key.
fn household_key(household: &Gridshare) -> gridshare_ledger::ids::PublicKey {
    household.json(&["keys", "show", "home", "--json"])["public_key"].as_str().unwrap().parse().unwrap()
}
