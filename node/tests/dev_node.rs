//! The dev node as a user runs it: the real `gridshare-node` process on a
//! loopback port; an interval clears with a trade and settles; every API
//! endpoint answers with exactly the JSON of its `gridshare-api` type, and
//! with malformed input a JSON 4xx; the admin API does not exist unless
//! enabled; a proof verifies against the certified header; the event stream
//! and the export work; SIGTERM stops it cleanly, and it resumes from its
//! data directory; the ledger it wrote passes the audit.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::time::Duration;

use common::{Method, exact, height, start, stop, wait_for};
use gridshare_api::bounds::STREAMS_MAX;
use gridshare_api::client::StreamError;
use gridshare_api::events::Event;
use gridshare_api::{
    Account, Bills, Block, ErrorBody, ErrorCode, EvidenceList, GenesisResponse, Health, Interval,
    IntervalStatus, Meter, Nonce, Offers, Proof, Receipt as WireReceipt, Role, Side, SpanQuery, Status,
    SyncStatus, Trades, TransactionState, TransactionStatus,
};
use gridshare_ledger::audit::{audit_export, audit_store};
use gridshare_ledger::block::Receipt;
use gridshare_ledger::store::RedbStore;
use gridshare_ledger::tx::SignedTx;

#[test]
fn a_dev_community_clears_settles_answers_its_api_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("dev");
    let dev = ["--dev", "--block-time-ms", "100", "--interval-ms", "1000"];
    let mut node = start(&dev, &data_dir);
    let api = node.api.clone();

    // The event stream, subscribed before anything clears.
    let events = api.events().unwrap();

    wait_for("a trade and two settlements", &api, Duration::from_secs(60), || {
        let status = api.status().unwrap();
        (status.trades > 0 && status.settlements > 1).then_some(())
    });
    let status: Status = exact(&api, "/v1/status");
    assert_eq!(status.name, "Gridshare dev community");
    assert_eq!((status.role, status.sync), (Role::Validator, SyncStatus::Synced));
    assert_eq!(status.accounts, 2);
    assert_eq!(
        (status.version.as_str(), status.best_seen_height),
        (env!("CARGO_PKG_VERSION"), status.height)
    );
    // A validator alone is ready; both probes say so.
    let health: Health = exact(&api, "/health");
    assert!(health.ready && health.reason.is_none(), "{health:?}");
    let ready = api.ready().unwrap();
    assert_eq!((ready.ready, ready.peers, ready.version.as_str()), (true, 0, env!("CARGO_PKG_VERSION")));

    // The genesis a wallet signs for, checked against the hash it names.
    let genesis_json: GenesisResponse = exact(&api, "/v1/genesis");
    let genesis = genesis_json.genesis().unwrap();
    assert_eq!(genesis.community_id, status.community_id);
    assert_eq!(api.community().unwrap().genesis, genesis);

    // A cleared interval: its book, clearing and the trades of both sides.
    let cleared = status.next_clearing_interval - 1;
    let interval: Interval = (0..=cleared)
        .rev()
        .map(|interval| exact::<Interval>(&api, &format!("/v1/intervals/{interval}")))
        .find(|interval| interval.clearing.as_ref().is_some_and(|clearing| clearing.receipt.volume_wh > 0))
        .unwrap();
    assert!(matches!(interval.status, IntervalStatus::Cleared | IntervalStatus::Settled), "{interval:?}");
    let clearing = interval.clearing.as_ref().unwrap();
    assert_eq!(interval.book.len() as u64, u64::from(clearing.receipt.offers));
    let trade = &clearing.receipt.trades[0];
    let number = interval.interval;
    let seller = trade.seller;
    let trades: Trades =
        exact(&api, &format!("/v1/accounts/{seller}/trades?from_interval={number}&to_interval={number}"));
    assert_eq!(api.trades(&seller, &SpanQuery::between(number, number)).unwrap(), trades.trades);
    let sold = &trades.trades[0];
    assert_eq!(sold.side, Side::Sell);
    assert_eq!(sold.counterparty, trade.buyer);
    assert_eq!(sold.amount_nano, i128::from(trade.energy_wh) * i128::from(trade.price_micro_per_kwh));
    let _: Interval = exact(&api, &format!("/v1/intervals/{}", status.next_clearing_interval + 3));

    // The seller's account, meters and bills.
    let account: Account = exact(&api, &format!("/v1/accounts/{seller}"));
    assert_eq!(account.currency, "EUR");
    assert!(account.balance_nano > 100_000_000_000, "the seller earned beyond its 100 EUR: {account:?}");
    let meter = account.meters[0].meter;
    assert_eq!(exact::<Meter>(&api, &format!("/v1/meters/{meter}")).owner, seller);
    assert!(exact::<Nonce>(&api, &format!("/v1/nonces/{seller}")).last_nonce > 0);
    let bills: Bills = exact(&api, &format!("/v1/accounts/{seller}/bills"));
    let bill = bills.bills.last().unwrap();
    assert_eq!(bill.bill.account, seller);
    assert_eq!(api.bills(&seller, &SpanQuery::default()).unwrap(), bills.bills);

    // A proof of the clearing, checked against the certified header.
    let proof: Proof = exact(&api, &format!("/v1/proofs/clearings/{number}"));
    let header = proof.header().unwrap();
    let receipt: Receipt = proof.item().unwrap();
    proof.certificate().unwrap().verify(&genesis, &header).unwrap();
    header.verify_receipt(&receipt, &proof.inclusion().unwrap()).unwrap();
    assert!(matches!(&receipt, Receipt::Clearing(clearing) if clearing.interval == number));
    // The blocks holding the clearing and the settlement list their receipts.
    let block: Block = exact(&api, &format!("/v1/blocks/{}", proof.height));
    assert!(block.receipts.iter().any(|receipt| matches!(receipt, WireReceipt::Clearing(_))), "{block:?}");
    let settled = wait_for("the interval to settle", &api, Duration::from_secs(30), || {
        api.interval(number).unwrap().settlement
    });
    let block: Block = exact(&api, &format!("/v1/blocks/{}", settled.height));
    assert!(block.receipts.iter().any(|receipt| matches!(receipt, WireReceipt::Settlement(_))), "{block:?}");
    let _: Proof = exact(&api, &format!("/v1/proofs/settlements/{number}"));
    // And of a transaction, found by its id: the first of the latest block
    // that has one.
    let block = (1..=status.height)
        .rev()
        .map(|height| api.block(height).unwrap())
        .find(|block| !block.transactions.is_empty())
        .unwrap();
    let id = block.transactions[0].id;
    let _: Block = exact(&api, &format!("/v1/blocks/{}", block.height));
    let found: TransactionStatus = exact(&api, &format!("/v1/transactions/{id}"));
    assert_eq!(found.state, TransactionState::Included { height: block.height, index: 0 });
    let proof: Proof = exact(&api, &format!("/v1/proofs/transactions/{id}"));
    let header = proof.header().unwrap();
    let tx: SignedTx = proof.item().unwrap();
    header.verify_transaction(&tx, &proof.inclusion().unwrap()).unwrap();
    assert_eq!(tx.id(&genesis.community_id), id);
    assert_eq!(exact::<Block>(&api, "/v1/blocks/latest").certificate_signatures, 1);
    assert_eq!(exact::<EvidenceList>(&api, "/v1/evidence").equivocations, []);
    let _: Offers = exact(&api, "/v1/offers");

    // Bad input gets 4xx JSON errors with a machine code; the admin API is
    // not there without --enable-admin-api.
    let unknown = "ab".repeat(32);
    let big = format!("{{\"transaction_hex\": \"{}\"}}", "00".repeat(40_000));
    let (get, post) = (Method::Get, Method::Post);
    for (method, path, body, status, code) in [
        (post, "/v1/transactions", "not json", 400, ErrorCode::BadJson),
        (post, "/v1/transactions", "{\"transaction_hex\": \"zz\"}", 400, ErrorCode::BadHex),
        (post, "/v1/transactions", "{\"transaction_hex\": \"0700\"}", 400, ErrorCode::BadEncoding),
        (post, "/v1/transactions", "{\"transaction_hex\": 7}", 400, ErrorCode::BadRequest),
        (post, "/v1/transactions", "{}", 400, ErrorCode::BadRequest),
        (post, "/v1/transactions", &big, 413, ErrorCode::BadBody),
        (get, "/v1/transactions", "", 405, ErrorCode::MethodNotAllowed),
        (get, "/v1/nowhere", "", 404, ErrorCode::NotFound),
        (post, "/v1/admin/isolate", "{\"duration_ms\": 10}", 404, ErrorCode::NotFound),
        (get, "/v1/blocks/x", "", 400, ErrorCode::BadNumber),
        (get, "/v1/blocks/-1", "", 400, ErrorCode::BadNumber),
        (get, "/v1/blocks/99999999", "", 404, ErrorCode::NotFound),
        (get, "/v1/accounts/xyz", "", 400, ErrorCode::BadKey),
        (get, &format!("/v1/accounts/{unknown}"), "", 404, ErrorCode::UnknownAccount),
        (
            get,
            &format!("/v1/accounts/{unknown}/trades?from_interval=9&to_interval=1"),
            "",
            400,
            ErrorCode::BadRange,
        ),
        (
            get,
            &format!("/v1/accounts/{unknown}/bills?from_interval=0&to_interval=500"),
            "",
            400,
            ErrorCode::BadRange,
        ),
        (get, &format!("/v1/accounts/{unknown}/bills?day=1"), "", 400, ErrorCode::BadQuery),
        (get, &format!("/v1/nonces/{unknown}"), "", 404, ErrorCode::UnknownKey),
        (get, &format!("/v1/meters/{unknown}"), "", 404, ErrorCode::UnknownMeter),
        (get, "/v1/offers?interval=soon", "", 400, ErrorCode::BadNumber),
        (get, "/v1/offers?account=42", "", 400, ErrorCode::BadKey),
        (get, "/v1/intervals/x", "", 400, ErrorCode::BadNumber),
        (get, "/v1/intervals/18446744073709551615", "", 400, ErrorCode::BadInterval),
        (get, &format!("/v1/transactions/{unknown}"), "", 404, ErrorCode::UnknownTransaction),
        (get, "/v1/transactions/12", "", 400, ErrorCode::BadId),
        (get, &format!("/v1/proofs/transactions/{unknown}"), "", 404, ErrorCode::UnknownTransaction),
        (get, "/v1/proofs/clearings/999999999", "", 404, ErrorCode::NotCleared),
        (get, "/v1/proofs/settlements/999999999", "", 404, ErrorCode::NotSettled),
    ] {
        let response = api.raw(method, path, Some("application/json"), &[], body.as_bytes()).unwrap();
        let text = String::from_utf8_lossy(&response.body);
        assert_eq!(response.status, status, "{method:?} {path}: {text}");
        let error: ErrorBody = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(error.code, code, "{method:?} {path}: {text}");
        assert_eq!(error.code.status(), status, "{method:?} {path}");
        assert!(!error.message.is_empty(), "{text}");
    }
    // A page reaching the node under a name of its own (DNS rebinding) is
    // refused, whatever it asks.
    for (method, path) in [(get, "/v1/status"), (post, "/v1/transactions")] {
        let headers = [("host", "rebind.attacker.example:8700")];
        let response = api.raw(method, path, Some("text/plain"), &headers, b"{}").unwrap();
        let error: ErrorBody = serde_json::from_slice(&response.body).unwrap();
        assert_eq!((response.status, error.code), (421, ErrorCode::BadHost), "{method:?} {path}");
    }
    // A page of another site, or a browser form or `text/plain` fetch (sent
    // without a preflight), is refused before any endpoint sees it; the
    // node's own origin is answered.
    let foreign = [("origin", "https://attacker.example")];
    for (headers, content_type, status, code) in [
        (&foreign[..], Some("application/json"), 403, ErrorCode::BadOrigin),
        (&[][..], Some("text/plain"), 415, ErrorCode::UnsupportedMediaType),
        (&[][..], Some("application/x-www-form-urlencoded"), 415, ErrorCode::UnsupportedMediaType),
    ] {
        let response = api.raw(post, "/v1/transactions", content_type, headers, b"{}").unwrap();
        let error: ErrorBody = serde_json::from_slice(&response.body).unwrap();
        assert_eq!((response.status, error.code), (status, code), "{headers:?} {content_type:?}");
    }
    let own = api.url().trim_start_matches("http://").to_string();
    let own_origin = format!("http://{own}");
    let response = api.raw(get, "/v1/status", None, &[("origin", own_origin.as_str())], b"").unwrap();
    assert_eq!(response.status, 200, "the node's own origin");
    // The client's typed calls say what was refused.
    let refused = api.block(99_999_999).unwrap_err();
    assert_eq!((refused.code(), refused.status()), (Some(ErrorCode::NotFound), Some(404)), "{refused}");
    assert_eq!(api.account(&gridshare_ledger::ids::PublicKey([0xab; 32])).unwrap(), None);

    // The event stream reported blocks and a clearing, each as its type.
    let mut seen = Vec::new();
    for event in events {
        match event {
            Ok(event) => {
                seen.push(event.name());
                if matches!(event, Event::Clearing(_)) {
                    break;
                }
            }
            Err(StreamError::Event(error)) => panic!("{error}"),
            Err(error @ StreamError::Broken { .. }) => panic!("{error}; seen {seen:?}"),
        }
    }
    assert!(seen.contains(&"block"), "{seen:?}");

    // Event streams and exports are served STREAMS_MAX at once; the next
    // is told to come back later.
    let mut streams = Vec::new();
    let refused = loop {
        match api.events() {
            Ok(stream) => streams.push(stream),
            Err(error) => break error,
        }
        assert!(streams.len() <= STREAMS_MAX, "more than {STREAMS_MAX} streams at once");
    };
    assert_eq!((refused.code(), refused.status()), (Some(ErrorCode::Busy), Some(429)), "{refused}");
    assert!(streams.len() + 1 >= STREAMS_MAX, "refused after {} streams", streams.len());
    drop(streams);

    // Prometheus metrics.
    let metrics = api.metrics().unwrap();
    assert!(metrics.contains("gridshare_blocks_committed_total"), "{metrics}");
    assert!(metrics.contains("gridshare_bound{bound=\"mempool_transactions_max\"} 20000"), "{metrics}");
    // Latency histograms: blocks and clearings happened.
    let count = |name: &str| -> u64 {
        let prefix = format!("{name}_count ");
        metrics.lines().find_map(|line| line.strip_prefix(&prefix)?.parse().ok()).unwrap_or(0)
    };
    assert!(count("gridshare_block_interval_ms") > 0, "{metrics}");
    assert!(count("gridshare_clearing_after_gate_closure_ms") > 0, "{metrics}");

    // The export over HTTP is a whole ledger that passes the audit.
    let mut export = Vec::new();
    let bytes = api.export(&mut export).unwrap();
    assert_eq!(bytes, export.len() as u64);
    let report = audit_export(export.as_slice(), |_| ()).unwrap();
    assert!(report.passed() && report.trades > 0, "{report:?}");

    // SIGTERM: the node finishes and says how to audit.
    let rest = stop(&mut node);
    assert!(rest.iter().any(|line| line.starts_with("Stopped. Audit the ledger with")), "{rest:?}");
    let stopped_at = {
        let store = RedbStore::open(data_dir.join("ledger.redb")).unwrap();
        let report = audit_store(&store, |_| ()).unwrap();
        assert!(report.passed(), "{:?}", report.findings);
        assert!(report.trades > 0 && report.settlements > 1, "{report:?}");
        report.blocks
    };

    // Run again on the same directory: the same community resumes, and its
    // households go on trading.
    let node = start(&dev, &data_dir);
    let resumed = node.api.status().unwrap();
    assert_eq!(resumed.community_id, status.community_id);
    assert!(resumed.height >= stopped_at);
    wait_for("a trade after resuming", &node.api, Duration::from_secs(60), || {
        (node.api.status().unwrap().trades > 0).then_some(())
    });
    assert!(height(&node.api) > stopped_at);
}

#[test]
fn logs_can_be_one_json_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("dev");
    let node = start(
        &["--dev", "--block-time-ms", "100", "--interval-ms", "1000", "--log-format", "json"],
        &data_dir,
    );
    wait_for("a cleared interval", &node.api, Duration::from_secs(60), || {
        (node.api.status().unwrap().intervals_cleared > 0).then_some(())
    });
    let log = std::fs::read_to_string(data_dir.with_extension("log")).unwrap();
    let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "nothing logged");
    for line in lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        assert!(entry["level"].is_string() && entry["timestamp"].is_string(), "{line}");
        assert!(entry["fields"]["message"].is_string(), "{line}");
    }
}

#[test]
fn completions_and_manual_pages_are_written() {
    let binary = std::path::Path::new(common::BINARY);
    let zsh = std::process::Command::new(binary).args(["completions", "zsh"]).output().unwrap();
    assert!(zsh.status.success());
    let script = String::from_utf8(zsh.stdout).unwrap();
    assert!(script.starts_with("#compdef gridshare-node") && script.contains("genesis"), "{script}");
    let dir = tempfile::tempdir().unwrap();
    let man = std::process::Command::new(binary).args(["man", "--out"]).arg(dir.path()).output().unwrap();
    assert!(man.status.success(), "{}", String::from_utf8_lossy(&man.stderr));
    let run = std::fs::read_to_string(dir.path().join("gridshare-node-run.1")).unwrap();
    assert!(run.contains(".TH") && run.contains("log\\-format"), "{run}");
}

#[test]
fn a_genesis_from_a_community_file_prints_back_as_the_same_file() {
    let binary = std::path::Path::new(common::BINARY);
    let dir = tempfile::tempdir().unwrap();
    let node = |args: &[&str]| std::process::Command::new(binary).args(args).output().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/community.toml");
    let (first, second) = (dir.path().join("first.bin"), dir.path().join("second.bin"));
    let made = node(&["genesis", "new", "--from", example, "--out", first.to_str().unwrap()]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let printed = node(&["genesis", "show", first.to_str().unwrap(), "--toml"]);
    let file = dir.path().join("community.toml");
    std::fs::write(&file, &printed.stdout).unwrap();
    let again =
        node(&["genesis", "new", "--from", file.to_str().unwrap(), "--out", second.to_str().unwrap()]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
    // A file and flags at once: refused.
    let both = node(&["genesis", "new", "--from", example, "--name", "X", "--out", "x.bin"]);
    assert_eq!(both.status.code(), Some(2));
}
