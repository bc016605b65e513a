//! Measures a local community of real `gridshare-node` processes (N
//! validators running consensus, four household replicas unless told
//! otherwise) under load:
//! offers signed by many accounts are submitted through the households' APIs
//! and reach the validators by gossip. Reports the admitted and committed
//! transactions per second, the block time, the time from gate closure to
//! the clearing block on every household (p50/p99) and each node's peak
//! memory, and the CPU time each node spent per committed offer (what
//! bounds throughput when all of them share one machine's cores).
//! BENCHMARKS.md has the figures.
//!
//! ```text
//! cargo build --release -p gridshare-node --bins --examples
//! target/release/examples/throughput [SECONDS] [ACCOUNTS] [VALIDATORS] [HOUSEHOLDS] [THREADS]
//! ```
//!
//! Every node runs on THREADS runtime threads (default 1, as suits nodes
//! that share a machine; 0 leaves the node's default, one per core).

#![allow(clippy::unwrap_used, clippy::print_stdout)] // A measuring tool: a panic is the report.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::genesis::MarketParams;
use gridshare_ledger::testkit::{TestCommunity, test_market};
use gridshare_ledger::tx::{Side, SignedTx};
use gridshare_node::node::now_ms;

const SUBMITTERS: usize = 8;
const INTERVAL_MS: u64 = 2_000;
const GATE_CLOSURE_LEAD_MS: u64 = 500;
const BLOCK_TIME_MS: &str = "250";

/// A keep-alive HTTP/1.1 connection to one node's API.
struct Connection {
    address: String,
    stream: BufReader<TcpStream>,
}

impl Connection {
    fn open(address: &str) -> Connection {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_nodelay(true).unwrap();
        Connection { address: address.to_string(), stream: BufReader::new(stream) }
    }

    fn request(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let address = &self.address;
        write!(
            self.stream.get_mut(),
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line).unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }

    fn json(&mut self, path: &str) -> serde_json::Value {
        let (status, body) = self.request("GET", path, "");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn submit(&mut self, tx: &SignedTx) -> (u16, String) {
        let body = format!("{{\"transaction_hex\":\"{}\"}}", hex::encode(to_bytes(tx)));
        self.request("POST", "/v1/transactions", &body)
    }
}

struct Node {
    child: Child,
    api: String,
    p2p: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("gridshare-node");
    assert!(path.exists(), "build it first: cargo build --release -p gridshare-node --bins --examples");
    path
}

fn start(dir: &Path, extra: &[&str], threads: usize) -> Node {
    let mut command = Command::new(binary());
    command
        .args(["run", "--data-dir"])
        .arg(dir)
        .args(["--api", "127.0.0.1:0", "--p2p", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        .args(extra);
    if threads > 0 {
        command.arg(format!("--worker-threads={threads}"));
    }
    let mut child = command
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.with_extension("log")).unwrap())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut api, mut p2p) = (String::new(), String::new());
    for line in lines {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("API:") {
            api = url.trim().trim_start_matches("http://").trim_end_matches("/v1/status").to_string();
        } else if let Some(address) = line.strip_prefix("P2P:") {
            p2p = address.trim().to_string();
        } else if line.starts_with("Data dir:") {
            break;
        }
    }
    Node { child, api, p2p }
}

/// The kernel's high-water mark of a process's resident memory, in KiB.
fn peak_memory_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The CPU time a process has used so far (user and system), in ms.
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime and
    // stime are the 12th and 13th, in clock ticks of 10 ms on Linux.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) * 10
}

fn percentile(sorted: &[u64], percent: usize) -> u64 {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(30, |text| text.parse().unwrap());
    let accounts: u32 = args.next().map_or(1_000, |text| text.parse().unwrap());
    let validator_count: u32 = args.next().map_or(1, |text| text.parse().unwrap());
    let household_count: usize = args.next().map_or(4, |text| text.parse().unwrap());
    let threads: usize = args.next().map_or(1, |text| text.parse().unwrap());
    assert!(household_count > 0, "offers are submitted through at least one household");
    let dir = tempfile::tempdir().unwrap();
    let market = MarketParams {
        interval_length_ms: INTERVAL_MS,
        gate_closure_lead_ms: GATE_CLOSURE_LEAD_MS,
        settlement_delay_ms: 1_000,
        max_open_offers_per_account: 64,
        ..test_market()
    };
    let mut community = TestCommunity::new(99, accounts, market, now_ms() / INTERVAL_MS * INTERVAL_MS);
    let validator_keys: Vec<_> =
        (0..validator_count).map(|index| gridshare_ledger::testkit::derived_key(99, 2, index)).collect();
    community.genesis.validators = validator_keys
        .iter()
        .map(|key| gridshare_ledger::genesis::Validator { key: key.public(), voting_power: 1 })
        .collect();
    let genesis = community.genesis.clone();
    let genesis_file = dir.path().join("genesis.bin");
    std::fs::write(&genesis_file, to_bytes(&genesis)).unwrap();
    let consensus: Vec<String> = (0..validator_count)
        .map(|_| {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            format!("/ip4/127.0.0.1/tcp/{port}")
        })
        .collect();
    // Validators also meet on the market swarm, where transactions travel.
    let mut validators: Vec<Node> = Vec::new();
    for (index, (key, listen)) in validator_keys.iter().zip(&consensus).enumerate() {
        let dir = dir.path().join(format!("validator-{index}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("validator.key"), hex::encode(key.seed())).unwrap();
        let genesis = genesis_file.to_str().unwrap();
        let mut args =
            vec!["--genesis", genesis, "--block-time-ms", BLOCK_TIME_MS, "--consensus-p2p", listen];
        for peer in consensus.iter().filter(|peer| *peer != listen) {
            args.extend(["--consensus-peer", peer]);
        }
        let earlier: Vec<String> = validators.iter().map(|node| node.p2p.clone()).collect();
        for address in &earlier {
            args.extend(["--bootstrap", address]);
        }
        validators.push(start(&dir, &args, threads));
    }
    let validator = &validators[0];
    let households: Vec<Node> = (0..household_count)
        .map(|index| {
            let dir = dir.path().join(format!("household-{index}"));
            let mut args = vec!["--genesis", genesis_file.to_str().unwrap()];
            for node in &validators {
                args.extend(["--bootstrap", node.p2p.as_str()]);
            }
            start(&dir, &args, threads)
        })
        .collect();

    // Register every account and meter, the registrar's transactions in
    // waves of what its mempool share allows.
    println!("registering {accounts} accounts");
    let mut pending = community.registrations();
    let mut connection = Connection::open(&validator.api);
    while !pending.is_empty() {
        // In order: a meter needs its account, so a wave stops at the first
        // refusal and the rest waits for the next block.
        let mut sent = 0;
        for tx in &pending {
            let (status, body) = connection.submit(tx);
            match status {
                202 => sent += 1,
                429 => break,
                _ => panic!("registration refused: {body}"),
            }
        }
        pending.drain(..sent);
        std::thread::sleep(Duration::from_millis(100));
    }
    let registered = Instant::now();
    while connection.json("/v1/status")["accounts"].as_u64().unwrap() < u64::from(accounts) {
        if registered.elapsed() > Duration::from_secs(120) {
            for node in &validators {
                eprintln!("{}", Connection::open(&node.api).request("GET", "/v1/status", "").1);
            }
            panic!("registrations did not land");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for node in &households {
        let mut connection = Connection::open(&node.api);
        while connection.json("/v1/status")["accounts"].as_u64().unwrap() < u64::from(accounts) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // Watch every household for clearings: (interval, ms after gate closure).
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let watchers: Vec<_> = households
        .iter()
        .map(|node| {
            let (api, stop, latencies, genesis) =
                (node.api.clone(), stop.clone(), latencies.clone(), genesis.clone());
            std::thread::spawn(move || {
                let mut connection = Connection::open(&api);
                let mut next = connection.json("/v1/status")["next_clearing_interval"].as_u64().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let now_next = connection.json("/v1/status")["next_clearing_interval"].as_u64().unwrap();
                    let seen = now_ms();
                    for interval in next..now_next {
                        let gate = genesis.gate_closure_ms(interval).unwrap();
                        latencies.lock().unwrap().push(seen.saturating_sub(gate));
                    }
                    next = now_next;
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();

    // Load: each submitter signs offers for its accounts and submits them
    // through the household nodes, each account always through the same one.
    println!("loading for {seconds} s with {SUBMITTERS} submitters");
    let start_height = connection.json("/v1/status")["height"].as_u64().unwrap();
    let nodes: Vec<&Node> = validators.iter().chain(&households).collect();
    let cpu_start_ms: Vec<u64> = nodes.iter().map(|node| cpu_ms(node.child.id())).collect();
    let admitted = Arc::new(AtomicU64::new(0));
    // Refusals by the API's error code: how many, and the first message.
    let refused = Arc::new(Mutex::new(std::collections::BTreeMap::<String, (u64, String)>::new()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let community = Arc::new(community);
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|submitter| {
            let apis: Vec<String> = households.iter().map(|node| node.api.clone()).collect();
            let (community, admitted, refused) = (community.clone(), admitted.clone(), refused.clone());
            std::thread::spawn(move || {
                let mut connections: Vec<Connection> = apis.iter().map(|api| Connection::open(api)).collect();
                let mine: Vec<usize> =
                    (0..community.households.len()).filter(|index| index % SUBMITTERS == submitter).collect();
                let mut nonces = vec![0_u64; community.households.len()];
                // A meter signs one reading per interval, which all of its
                // household's offers in the next ones carry.
                let mut attestations = std::collections::HashMap::new();
                while Instant::now() < deadline {
                    let interval = community.genesis.interval_at(now_ms()) + 2;
                    attestations.retain(|&(_, read), _| read + 2 >= interval);
                    for &index in &mine {
                        if Instant::now() >= deadline {
                            break;
                        }
                        nonces[index] += 1;
                        let side = if index % 2 == 0 { Side::Sell } else { Side::Buy };
                        let price = 100_000 + (nonces[index] % 50) * 2_000;
                        let attestation = *attestations
                            .entry((index, interval - 2))
                            .or_insert_with(|| community.reading(index, interval - 2, 0, 0));
                        let offer =
                            community.offer_tx(index, nonces[index], interval, side, 100, price, attestation);
                        // Each household submits through its own node.
                        let node = index % connections.len();
                        let (status, body) = connections[node].submit(&offer);
                        if status == 202 {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        } else {
                            // Nonces have no gaps: the next offer reuses it.
                            nonces[index] -= 1;
                            let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                            let code =
                                error["code"].as_str().map_or_else(|| status.to_string(), str::to_string);
                            let mut refused = refused.lock().unwrap();
                            let (count, _) =
                                refused.entry(code).or_insert_with(|| (0, error["message"].to_string()));
                            *count += 1;
                        }
                    }
                }
            })
        })
        .collect();
    for submitter in submitters {
        submitter.join().unwrap();
    }
    let cpu_used_ms: Vec<u64> =
        nodes.iter().zip(&cpu_start_ms).map(|(node, start)| cpu_ms(node.child.id()) - start).collect();
    let load_ms = seconds * 1_000;
    // Let the last offers clear.
    std::thread::sleep(Duration::from_millis(3 * INTERVAL_MS));
    stop.store(true, Ordering::Relaxed);
    for watcher in watchers {
        watcher.join().unwrap();
    }
    let end_height = connection.json("/v1/status")["height"].as_u64().unwrap();
    let mut committed = 0_u64;
    let (mut first_ms, mut last_ms) = (u64::MAX, 0);
    let (mut first_block_ms, mut last_block_ms) = (u64::MAX, 0);
    for height in start_height + 1..=end_height {
        let block = connection.json(&format!("/v1/blocks/{height}"));
        let time = block["timestamp_ms"].as_u64().unwrap();
        first_block_ms = first_block_ms.min(time);
        last_block_ms = last_block_ms.max(time);
        let offers =
            block["transactions"].as_array().unwrap().iter().filter(|tx| tx["kind"] == "offer").count();
        if offers > 0 {
            let time = block["timestamp_ms"].as_u64().unwrap();
            first_ms = first_ms.min(time);
            last_ms = last_ms.max(time);
            committed += offers as u64;
        }
    }
    let admitted = admitted.load(Ordering::Relaxed);
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort_unstable();
    println!(
        "validators: {validator_count}, accounts: {accounts}, household nodes: {household_count}, runtime threads per node: {}, interval: {INTERVAL_MS} ms, target block time: {BLOCK_TIME_MS} ms",
        if threads == 0 { "one per core".to_string() } else { threads.to_string() }
    );
    let blocks = end_height.saturating_sub(start_height).max(1);
    println!(
        "block time: {} ms on average over {blocks} blocks",
        last_block_ms.saturating_sub(first_block_ms) / blocks
    );
    let refused = refused.lock().unwrap();
    println!(
        "admitted through the API: {admitted} in {seconds} s = {} tx/s (refused: {} {refused:?})",
        admitted * 1_000 / load_ms,
        refused.values().map(|(count, _)| count).sum::<u64>(),
    );
    let span_ms = last_ms.saturating_sub(first_ms).max(1);
    println!(
        "committed offers: {committed} over {span_ms} ms of blocks = {} tx/s",
        committed * 1_000 / span_ms
    );
    if !latencies.is_empty() {
        println!(
            "gate closure to clearing seen on a household: p50 {} ms, p99 {} ms, max {} ms ({} samples)",
            percentile(&latencies, 50),
            percentile(&latencies, 99),
            latencies[latencies.len() - 1],
            latencies.len()
        );
    }
    // CPU per committed offer, over the load (the last blocks come after).
    let per_offer_us =
        |used: &[u64]| used.iter().sum::<u64>() * 1_000 / used.len().max(1) as u64 / committed.max(1);
    let (validators_cpu, households_cpu) = cpu_used_ms.split_at(validators.len());
    println!(
        "CPU per committed offer and node: validators {} µs, households {} µs; CPU of all nodes during the load {} ms of {} ms",
        per_offer_us(validators_cpu),
        per_offer_us(households_cpu),
        cpu_used_ms.iter().sum::<u64>(),
        load_ms
    );
    for node in validators.iter().chain(&households) {
        let (_, metrics) = Connection::open(&node.api).request("GET", "/metrics", "");
        let gossip: Vec<&str> = metrics
            .lines()
            .filter(|line| line.starts_with("gridshare_gossip") || line.starts_with("gridshare_height"))
            .collect();
        println!("{} gossip: {}", node.api, gossip.join(" "));
    }
    for (index, node) in validators.iter().enumerate() {
        println!("peak memory: validator {index} {} MiB", peak_memory_kib(node.child.id()) / 1024);
    }
    for (index, node) in households.iter().enumerate() {
        println!("peak memory: household {index} {} MiB", peak_memory_kib(node.child.id()) / 1024);
    }
}
