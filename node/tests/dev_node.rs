//! The dev node as a user runs it: the real `gridshare-node` process on a
//! loopback port; an interval clears with a trade and settles; every API
//! endpoint answers, and with malformed input a JSON 4xx; a proof verifies
//! against the certified header; the event stream and the export work;
//! SIGTERM stops it cleanly, and it resumes from its data directory; the
//! ledger it wrote passes the audit.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{get, height, http, request, start, stop, wait_for};
use gridshare_ledger::audit::{audit_export, audit_store};
use gridshare_ledger::block::{BlockHeader, CommitCertificate, Receipt};
use gridshare_ledger::encoding::from_bytes;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::merkle::InclusionProof;
use gridshare_ledger::store::RedbStore;
use gridshare_ledger::tx::SignedTx;

fn decode<T: borsh::BorshDeserialize>(value: &serde_json::Value) -> T {
    from_bytes(&hex::decode(value.as_str().unwrap()).unwrap()).unwrap()
}

#[test]
fn a_dev_community_clears_settles_answers_its_api_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("dev");
    let dev = ["--dev", "--block-time-ms", "100", "--interval-ms", "1000"];
    let mut node = start(&dev, &data_dir);
    let api = node.api.clone();

    // The event stream, subscribed before anything clears.
    let mut events = TcpStream::connect(&api).unwrap();
    events.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(events, "GET /v1/events HTTP/1.1\r\nHost: {api}\r\n\r\n").unwrap();

    let status = wait_for("a trade and two settlements", &api, Duration::from_secs(60), || {
        let status = get(&api, "/v1/status");
        (status["trades"].as_u64().unwrap() > 0 && status["settlements"].as_u64().unwrap() > 1)
            .then_some(status)
    });
    assert_eq!(status["name"], "Gridshare dev community");
    assert_eq!((status["role"].as_str(), status["sync"].as_str()), (Some("validator"), Some("synced")));
    assert_eq!(status["accounts"], 2);

    // The genesis a wallet signs for.
    let genesis_json = get(&api, "/v1/genesis");
    let genesis: Genesis = decode(&genesis_json["genesis_hex"]);
    assert_eq!(genesis.hash().to_string(), genesis_json["genesis_hash"]);
    assert_eq!(genesis.community_id.to_string(), status["community_id"]);

    // A cleared interval: its book, clearing and the trades of both sides.
    let cleared = status["next_clearing_interval"].as_u64().unwrap() - 1;
    let interval = (0..=cleared)
        .rev()
        .map(|interval| get(&api, &format!("/v1/intervals/{interval}")))
        .find(|interval| interval["clearing"]["volume_wh"].as_u64().is_some_and(|volume| volume > 0))
        .unwrap();
    assert!(matches!(interval["status"].as_str(), Some("cleared" | "settled")), "{interval}");
    let clearing = &interval["clearing"];
    assert_eq!(interval["book"].as_array().unwrap().len() as u64, clearing["offers"].as_u64().unwrap());
    let trade = &clearing["trades"][0];
    let number = interval["interval"].as_u64().unwrap();
    let seller = trade["seller"].as_str().unwrap();
    let trades =
        get(&api, &format!("/v1/accounts/{seller}/trades?from_interval={number}&to_interval={number}"));
    let sold = &trades["trades"][0];
    assert_eq!(sold["side"], "sell");
    assert_eq!(sold["counterparty"], trade["buyer"]);
    let expected = trade["energy_wh"].as_u64().unwrap() * trade["price_micro_per_kwh"].as_u64().unwrap();
    assert_eq!(sold["amount_nano"], expected.to_string());

    // The seller's account, meters and bills.
    let account = get(&api, &format!("/v1/accounts/{seller}"));
    assert_eq!(account["currency"], "EUR");
    let balance: i128 = account["balance_nano"].as_str().unwrap().parse().unwrap();
    assert!(balance > 100_000_000_000, "the seller earned beyond its 100 EUR: {account}");
    let meter = account["meters"][0]["meter"].as_str().unwrap();
    assert_eq!(get(&api, &format!("/v1/meters/{meter}"))["owner"], seller);
    assert!(get(&api, &format!("/v1/nonces/{seller}"))["last_nonce"].as_u64().unwrap() > 0);
    let bills = get(&api, &format!("/v1/accounts/{seller}/bills"));
    let bill = &bills["bills"].as_array().unwrap().last().unwrap();
    assert!(bill["total_nano"].as_str().unwrap().parse::<i128>().is_ok(), "{bill}");

    // A proof of the clearing, checked against the certified header.
    let proof = get(&api, &format!("/v1/proofs/clearings/{number}"));
    let header: BlockHeader = decode(&proof["header_hex"]);
    let certificate: CommitCertificate = decode(&proof["certificate_hex"]);
    let receipt: Receipt = decode(&proof["item_hex"]);
    let inclusion: InclusionProof = decode(&proof["proof_hex"]);
    certificate.verify(&genesis, &header).unwrap();
    header.verify_receipt(&receipt, &inclusion).unwrap();
    assert!(matches!(&receipt, Receipt::Clearing(clearing) if clearing.interval == number));
    // And of a transaction, found by its id.
    let block = get(&api, &format!("/v1/blocks/{}", proof["height"]));
    let tx_id = block["transactions"].as_array().and_then(|txs| txs.first()).map(|tx| tx["id"].clone());
    if let Some(tx_id) = tx_id {
        let tx_id = tx_id.as_str().unwrap();
        assert_eq!(get(&api, &format!("/v1/transactions/{tx_id}"))["status"], "included");
        let proof = get(&api, &format!("/v1/proofs/transactions/{tx_id}"));
        let header: BlockHeader = decode(&proof["header_hex"]);
        let tx: SignedTx = decode(&proof["item_hex"]);
        header.verify_transaction(&tx, &decode(&proof["proof_hex"])).unwrap();
        assert_eq!(tx.id(&genesis.community_id).to_string(), tx_id);
    }
    assert_eq!(get(&api, "/v1/blocks/latest")["certificate_signatures"], 1);
    assert_eq!(get(&api, "/v1/evidence")["equivocations"], serde_json::json!([]));
    let offers = get(&api, "/v1/offers");
    assert!(offers["offers"].as_array().is_some(), "{offers}");

    // Bad input gets 4xx JSON errors with a machine code.
    let unknown = "ab".repeat(32);
    let big = format!("{{\"transaction_hex\": \"{}\"}}", "00".repeat(40_000));
    for (method, path, body, code, expected) in [
        ("POST", "/v1/transactions", "not json", 400, "bad_json"),
        ("POST", "/v1/transactions", "{\"transaction_hex\": \"zz\"}", 400, "bad_hex"),
        ("POST", "/v1/transactions", "{\"transaction_hex\": \"0700\"}", 400, "bad_encoding"),
        ("POST", "/v1/transactions", "{\"transaction_hex\": 7}", 400, "bad_request"),
        ("POST", "/v1/transactions", "{}", 400, "bad_request"),
        ("POST", "/v1/transactions", &big, 413, "bad_body"),
        ("GET", "/v1/transactions", "", 405, "method_not_allowed"),
        ("GET", "/v1/nowhere", "", 404, "not_found"),
        ("GET", "/v1/blocks/x", "", 400, "bad_number"),
        ("GET", "/v1/blocks/-1", "", 400, "bad_number"),
        ("GET", "/v1/blocks/99999999", "", 404, "not_found"),
        ("GET", "/v1/accounts/xyz", "", 400, "bad_key"),
        ("GET", &format!("/v1/accounts/{unknown}"), "", 404, "unknown_account"),
        (
            "GET",
            &format!("/v1/accounts/{unknown}/trades?from_interval=9&to_interval=1"),
            "",
            400,
            "bad_range",
        ),
        (
            "GET",
            &format!("/v1/accounts/{unknown}/bills?from_interval=0&to_interval=500"),
            "",
            400,
            "bad_range",
        ),
        ("GET", &format!("/v1/accounts/{unknown}/bills?day=1"), "", 400, "bad_query"),
        ("GET", &format!("/v1/nonces/{unknown}"), "", 404, "unknown_key"),
        ("GET", &format!("/v1/meters/{unknown}"), "", 404, "unknown_meter"),
        ("GET", "/v1/offers?interval=soon", "", 400, "bad_number"),
        ("GET", "/v1/offers?account=42", "", 400, "bad_key"),
        ("GET", "/v1/intervals/x", "", 400, "bad_number"),
        ("GET", "/v1/intervals/18446744073709551615", "", 400, "bad_interval"),
        ("GET", &format!("/v1/transactions/{unknown}"), "", 404, "unknown_transaction"),
        ("GET", "/v1/transactions/12", "", 400, "bad_id"),
        ("GET", &format!("/v1/proofs/transactions/{unknown}"), "", 404, "unknown_transaction"),
        ("GET", "/v1/proofs/clearings/999999999", "", 404, "not_cleared"),
        ("GET", "/v1/proofs/settlements/999999999", "", 404, "not_settled"),
    ] {
        let (status, response) = request(&api, method, path, body.as_bytes());
        assert_eq!(status, code, "{method} {path}: {response}");
        assert_eq!(response["code"], expected, "{method} {path}: {response}");
        assert!(response["message"].as_str().is_some_and(|message| !message.is_empty()), "{response}");
    }

    // The event stream reported blocks and a clearing.
    let mut seen = Vec::new();
    for line in BufReader::new(events).lines() {
        let line = line.unwrap();
        if let Some(name) = line.strip_prefix("event: ") {
            seen.push(name.to_string());
            if seen.iter().any(|name| name == "clearing") {
                break;
            }
        }
    }
    assert!(seen.iter().any(|name| name == "block"), "{seen:?}");

    // Prometheus metrics.
    let (code, metrics) = http(&api, "GET", "/metrics", b"");
    let metrics = String::from_utf8(metrics).unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("gridshare_blocks_committed_total"), "{metrics}");
    assert!(metrics.contains("gridshare_bound{bound=\"mempool_transactions_max\"} 20000"), "{metrics}");

    // The export over HTTP is a whole ledger that passes the audit.
    let (code, export) = http(&api, "GET", "/v1/export", b"");
    assert_eq!(code, 200);
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
    let resumed = get(&node.api, "/v1/status");
    assert_eq!(resumed["community_id"], status["community_id"]);
    assert!(resumed["height"].as_u64().unwrap() >= stopped_at);
    wait_for("a trade after resuming", &node.api, Duration::from_secs(60), || {
        (get(&node.api, "/v1/status")["trades"].as_u64().unwrap() > 0).then_some(())
    });
    assert!(height(&node.api) > stopped_at);
}
