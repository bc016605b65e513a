//! Shared by the process tests: a `gridshare-node` child process on
//! loopback ports, a minimal HTTP client, and polling with a deadline.

#![allow(dead_code)] // Each test binary uses a part of this.

use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `gridshare-node`, killed if the test fails before stopping it.
pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) lines: Lines<BufReader<ChildStdout>>,
    /// `127.0.0.1:PORT` of the HTTP API.
    pub(crate) api: String,
    /// The first libp2p address, with `/p2p/PEER_ID`.
    pub p2p: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `gridshare-node` binary with `args`.
pub(crate) fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridshare-node"));
    command.args(args).env("RUST_LOG", "warn,arc_malachitebft=error,arc_malachitebft_network=off");
    command
}

/// Runs a `gridshare-node` subcommand to completion; returns its stdout.
pub(crate) fn run_to_end(args: &[&str]) -> Vec<String> {
    let output = command(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout.lines().map(Result::unwrap).collect()
}

/// `gridshare-node init` of `dir`, with `genesis` if given; returns its stdout.
pub(crate) fn init(dir: &Path, genesis: Option<&Path>) -> Vec<String> {
    let mut args = vec!["init", "--data-dir", dir.to_str().unwrap()];
    if let Some(genesis) = genesis {
        args.extend(["--genesis", genesis.to_str().unwrap()]);
    }
    run_to_end(&args)
}

/// A loopback port the OS hands out now, for a validator's consensus
/// swarm: the others must know it before it starts.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `gridshare-node run ARGS --data-dir DIR` on loopback with
/// OS-assigned ports, and reads its API and P2P addresses from stdout.
pub(crate) fn start(args: &[&str], data_dir: &Path) -> Node {
    let mut run = command(&["run"]);
    run.args(args).args(["--api", "127.0.0.1:0", "--no-mdns", "--data-dir"]).arg(data_dir);
    if !args.contains(&"--p2p") {
        run.args(["--p2p", "/ip4/127.0.0.1/tcp/0"]);
    }
    if !args.contains(&"--consensus-p2p") {
        run.args(["--consensus-p2p", "/ip4/127.0.0.1/tcp/0"]);
    }
    let mut child = run.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut api, mut p2p) = (None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("API:") {
            api = Some(url.trim().trim_start_matches("http://").trim_end_matches("/v1/status").to_string());
        } else if let Some(address) = line.strip_prefix("P2P:") {
            p2p.get_or_insert_with(|| address.trim().to_string());
        } else if line.starts_with("Data dir:") {
            break;
        }
    }
    let api = api.unwrap_or_else(|| panic!("the node printed no API address: {:?}", child.wait()));
    Node { child, lines, api, p2p: p2p.unwrap() }
}

/// SIGTERM, then waits for a clean exit; returns what the node printed.
pub(crate) fn stop(node: &mut Node) -> Vec<String> {
    let pid = node.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let rest = node.lines.by_ref().map(Result::unwrap).collect();
    assert!(node.child.wait().unwrap().success());
    rest
}

/// SIGKILL: the node gets no chance to clean up.
pub(crate) fn kill(node: &mut Node) {
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}

/// A minimal HTTP/1.1 request; returns the status code and the raw body.
pub(crate) fn http(address: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|window| window == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = response[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

/// The payload of a chunked HTTP body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|window| window == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 2 + size + 2..];
    }
}

/// `GET path` that must succeed, as JSON.
pub(crate) fn get(address: &str, path: &str) -> serde_json::Value {
    let (status, body) = http(address, "GET", path, b"");
    assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// A request's status and JSON body.
pub(crate) fn request(address: &str, method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let (status, body) = http(address, method, path, body);
    let json = serde_json::from_slice(&body).unwrap_or_else(|error| {
        panic!("{method} {path}: not JSON ({error}): {}", String::from_utf8_lossy(&body))
    });
    (status, json)
}

/// Submits a signed transaction; returns the status and response.
pub(crate) fn submit(address: &str, tx: &gridshare_ledger::tx::SignedTx) -> (u16, serde_json::Value) {
    let body =
        serde_json::json!({ "transaction_hex": hex::encode(gridshare_ledger::encoding::to_bytes(tx)) });
    request(address, "POST", "/v1/transactions", body.to_string().as_bytes())
}

/// A node's event stream, to wait for its next block rather than for a time.
pub(crate) struct Blocks {
    stream: BufReader<TcpStream>,
}

impl Blocks {
    /// Subscribes to the blocks of the node at `address`.
    pub(crate) fn subscribe(address: &str) -> Blocks {
        let mut stream = TcpStream::connect(address).unwrap();
        write!(stream, "GET /v1/events HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
        Blocks { stream: BufReader::new(stream) }
    }

    /// Waits for the next block, until `deadline`; false if none came.
    pub(crate) fn next(&mut self, deadline: Instant) -> bool {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.get_ref().set_read_timeout(Some(left)).unwrap();
            let mut line = String::new();
            match self.stream.read_line(&mut line) {
                Ok(0) | Err(_) => return false, // the node went away, or the deadline passed
                Ok(_) if line.trim_end() == "event: block" => return true,
                Ok(_) => {}
            }
        }
    }
}

/// Checks `probe` now and after each new block of the node at `pace` (whose
/// blocks are what changes the state probed), failing after `limit`.
pub(crate) fn wait_for<T>(
    what: &str,
    pace: &str,
    limit: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    let mut blocks = Blocks::subscribe(pace);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(blocks.next(deadline), "timed out after {limit:?} waiting for {what}");
    }
}

/// The height a node reports.
pub(crate) fn height(address: &str) -> u64 {
    get(address, "/v1/status")["height"].as_u64().unwrap()
}
