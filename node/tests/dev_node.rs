//! The dev node as a user runs it: the real `gridshare-node` process on a
//! loopback port; an interval clears with a trade and settles; bad requests
//! get JSON errors; SIGTERM stops it cleanly; the ledger it wrote passes the
//! audit.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridshare_ledger::audit::audit_store;
use gridshare_ledger::store::RedbStore;

/// Kills the node if the test fails before it stops it.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A minimal HTTP/1.1 request; returns the status code and the body.
fn http(address: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    // Bodies may be chunked; the JSON object is between the outer braces.
    let start = body.find('{').unwrap();
    let end = body.rfind('}').unwrap();
    serde_json::from_str(&body[start..=end]).unwrap()
}

#[test]
fn a_dev_community_clears_settles_stops_and_passes_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("dev");
    let child = Command::new(env!("CARGO_BIN_EXE_gridshare-node"))
        .args(["run", "--dev", "--api", "127.0.0.1:0", "--block-time-ms", "100", "--interval-ms", "1000"])
        .args(["--p2p", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut node = Node(child);
    let mut lines = BufReader::new(node.0.stdout.take().unwrap()).lines();
    let api_line = lines.by_ref().map(Result::unwrap).find(|line| line.starts_with("API:")).unwrap();
    let address = api_line
        .trim_start_matches("API:")
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches("/v1/status")
        .to_string();

    // Poll until an interval has cleared with a trade and one has settled.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (code, body) = http(&address, "GET", "/v1/status", "");
        assert_eq!(code, 200, "{body}");
        let status = json(&body);
        if status["trades"].as_u64().unwrap() > 0 && status["settlements"].as_u64().unwrap() > 1 {
            break status;
        }
        assert!(Instant::now() < deadline, "no trade and settlement within 60 s: {status}");
        std::thread::yield_now();
    };
    assert_eq!(status["name"], "Gridshare dev community");
    assert_eq!(status["accounts"], 2);
    assert!(status["energy_traded_wh"].as_u64().unwrap() > 0);

    // A block with a clearing receipt is served.
    let height = status["height"].as_u64().unwrap();
    let clearing = (1..=height).find_map(|h| {
        let (code, body) = http(&address, "GET", &format!("/v1/blocks/{h}"), "");
        assert_eq!(code, 200, "{body}");
        let block = json(&body);
        block["receipts"].as_array().unwrap().iter().find(|r| r["kind"] == "clearing").cloned()
    });
    let clearing = clearing.unwrap();
    assert!(clearing["volume_wh"].as_u64().unwrap() > 0, "{clearing}");

    // The households' accounts: 100 units credited, then trades and bills.
    let household = gridshare_ledger::testkit::derived_key(1, 3, 0).public();
    let (code, body) = http(&address, "GET", &format!("/v1/accounts/{household}"), "");
    assert_eq!(code, 200, "{body}");
    let account = json(&body);
    assert_eq!(account["currency"], "EUR");
    let balance = account["balance"].as_str().unwrap();
    assert!(balance.contains('.') && balance.split('.').nth(1).unwrap().len() == 9, "{balance}");
    // The seller has earned from its trades and feed-in: more than the 100 credited.
    let units: i64 = balance.split('.').next().unwrap().parse().unwrap();
    assert!(units >= 100 && balance != "100.000000000", "{balance}");

    // Bad input gets 4xx JSON errors.
    for (method, path, body, code, expected) in [
        ("POST", "/v1/transactions", "not json", 400, "bad_json"),
        ("POST", "/v1/transactions", "{\"transaction_hex\": \"zz\"}", 400, "bad_hex"),
        ("POST", "/v1/transactions", "{\"transaction_hex\": \"0700\"}", 400, "bad_encoding"),
        ("POST", "/v1/transactions", "{}", 400, "bad_request"),
        ("GET", "/v1/blocks/x", "", 400, "bad_height"),
        ("GET", "/v1/blocks/99999999", "", 404, "not_found"),
        ("GET", "/v1/accounts/xyz", "", 400, "bad_key"),
        ("GET", &format!("/v1/accounts/{}", "ab".repeat(32)), "", 404, "unknown_account"),
    ] {
        let (status, response) = http(&address, method, path, body);
        assert_eq!(status, code, "{method} {path} {body}: {response}");
        assert_eq!(json(&response)["code"], expected, "{response}");
    }

    // SIGTERM: the node finishes and says how to audit.
    let pid = node.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(node.0.wait().unwrap().success());
    assert!(rest.iter().any(|line| line.starts_with("Stopped. Audit the ledger with")), "{rest:?}");

    let store = RedbStore::open(data_dir.join("ledger.redb")).unwrap();
    let report = audit_store(&store, |_| ()).unwrap();
    assert!(report.passed(), "{:?}", report.findings);
    assert!(report.blocks >= height && report.trades > 0 && report.settlements > 1, "{report:?}");
}
