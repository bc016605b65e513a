//! Measures a local community of real `gridshare-node` processes (N
//! validators running consensus, four household replicas unless told
//! otherwise) under load:
//! offers signed by many accounts are submitted through the households' APIs
//! and reach the validators by gossip. Reports the admitted and committed
//! transactions per second, the block time, the time from gate closure to
//! the clearing block on every household (p50/p99) and each node's peak
//! memory, and the CPU time each node spent per committed offer (what
//! bounds throughput when all of them share one machine's cores). Then it
//! accounts for every offer a household's node acknowledged (202): on the
//! ledger, or dropped with a reason the node gives at
//! `GET /v1/transactions/{id}`; anything else is lost, and the example
//! exits 1.
//! BENCHMARKS.md has the figures.
//!
//! ```text
//! cargo build --release -p gridshare-node --bins --examples
//! target/release/examples/throughput [SECONDS] [ACCOUNTS] [VALIDATORS] [HOUSEHOLDS] [THREADS] [SUBMITTERS]
//! ```
//!
//! Every node runs on THREADS runtime threads (default 1, as suits nodes
//! that share a machine; 0 leaves the node's default, one per core).
//! SUBMITTERS threads (default 8) sign and submit offers, each waiting for
//! its answer: how many submissions a node has in hand at once.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // A measuring tool: a panic is the report.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridshare_api::client::{Client, Submission};
use gridshare_api::harness::{NodeLaunch, NodeProcess, find_node_binary, loopback_ports};
use gridshare_api::stats::percentile;
use gridshare_api::{TransactionState, TransactionStatus, TxKind};
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::genesis::MarketParams;
use gridshare_ledger::testkit::{TestCommunity, test_market};
use gridshare_ledger::tx::Side;
use gridshare_node::node::now_ms;

const INTERVAL_MS: u64 = 2_000;
const GATE_CLOSURE_LEAD_MS: u64 = 500;
const BLOCK_TIME_MS: &str = "250";

/// A node under load and a client of its API.
struct Node {
    process: NodeProcess,
    api: Client,
}

fn start(dir: &Path, extra: &[&str], threads: usize) -> Node {
    let binary = find_node_binary()
        .unwrap_or_else(|error| panic!("{error}: cargo build --release -p gridshare-node --bins --examples"));
    let mut launch = NodeLaunch::new(&dir.display().to_string(), &binary, &dir.with_extension("log"))
        .arg("run")
        .arg("--data-dir")
        .arg(dir)
        .args(["--api", "127.0.0.1:0", "--p2p", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        // Every node here shares 127.0.0.1.
        .args(["--p2p-connections-per-ip-max", "1024"])
        .args(extra)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()));
    if threads > 0 {
        launch = launch.arg(format!("--worker-threads={threads}"));
    }
    let process = launch.start().unwrap();
    Node { api: process.client(), process }
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

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(30, |text| text.parse().unwrap());
    let accounts: u32 = args.next().map_or(1_000, |text| text.parse().unwrap());
    let validator_count: u32 = args.next().map_or(1, |text| text.parse().unwrap());
    let household_count: usize = args.next().map_or(4, |text| text.parse().unwrap());
    let threads: usize = args.next().map_or(1, |text| text.parse().unwrap());
    let submitter_count: usize = args.next().map_or(8, |text| text.parse().unwrap());
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
    let consensus: Vec<String> = loopback_ports(validator_count as usize)
        .unwrap()
        .into_iter()
        .map(|port| format!("/ip4/127.0.0.1/tcp/{port}"))
        .collect();
    // Validators also meet on the market swarm, where transactions travel.
    let mut validators: Vec<Node> = Vec::new();
    // Each validator's consensus id, from the node key made in its data
    // directory now, for the others to name it by.
    let consensus_ids: Vec<String> = (0..validator_keys.len())
        .map(|index| {
            let dir = dir.path().join(format!("validator-{index}"));
            std::fs::create_dir_all(&dir).unwrap();
            gridshare_node::config::node_identity(&dir).unwrap().public().to_peer_id().to_string()
        })
        .collect();
    for (index, (key, listen)) in validator_keys.iter().zip(&consensus).enumerate() {
        let dir = dir.path().join(format!("validator-{index}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("validator.key"), hex::encode(key.seed())).unwrap();
        let genesis = genesis_file.to_str().unwrap();
        let mut args =
            vec!["--genesis", genesis, "--block-time-ms", BLOCK_TIME_MS, "--consensus-p2p", listen];
        let peers: Vec<String> = consensus
            .iter()
            .zip(0..)
            .filter(|(peer, _)| *peer != listen)
            .map(|(peer, index)| format!("{peer}/p2p/{}", consensus_ids[index]))
            .collect();
        for peer in &peers {
            args.extend(["--consensus-peer", peer]);
        }
        let earlier: Vec<String> = validators.iter().map(|node| node.process.p2p().to_string()).collect();
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
                args.extend(["--bootstrap", node.process.p2p()]);
            }
            start(&dir, &args, threads)
        })
        .collect();

    // Register every account and meter, the registrar's transactions in
    // waves of what its mempool share allows.
    println!("registering {accounts} accounts");
    let mut pending = community.registrations();
    let api = &validator.api;
    while !pending.is_empty() {
        // In order: a meter needs its account, so a wave stops at the first
        // refusal and the rest waits for the next block.
        let mut sent = 0;
        for tx in &pending {
            match api.submit(tx).unwrap() {
                Submission::Admitted { .. } => sent += 1,
                Submission::Refused { status: 429, .. } => break,
                refused => panic!("registration refused: {refused:?}"),
            }
        }
        pending.drain(..sent);
        std::thread::sleep(Duration::from_millis(100));
    }
    let registered = Instant::now();
    while api.status().unwrap().accounts < u64::from(accounts) {
        if registered.elapsed() > Duration::from_secs(120) {
            for node in &validators {
                eprintln!("{:?}", node.api.status());
            }
            panic!("registrations did not land");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for node in &households {
        while node.api.status().unwrap().accounts < u64::from(accounts) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // Watch every household for clearings: (interval, ms after gate closure).
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let watchers: Vec<_> = households
        .iter()
        .map(|node| {
            // A client of its own: its connection is not shared with the load.
            let (api, stop, latencies, genesis) =
                (Client::new(node.api.url()).unwrap(), stop.clone(), latencies.clone(), genesis.clone());
            std::thread::spawn(move || {
                let mut next = api.status().unwrap().next_clearing_interval;
                while !stop.load(Ordering::Relaxed) {
                    let now_next = api.status().unwrap().next_clearing_interval;
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
    println!("loading for {seconds} s with {submitter_count} submitters");
    let start_height = api.status().unwrap().height;
    let nodes: Vec<&Node> = validators.iter().chain(&households).collect();
    let cpu_start_ms: Vec<u64> = nodes.iter().map(|node| cpu_ms(node.process.pid())).collect();
    // What each submitter got a 202 for: the offer's id and the household
    // node that acknowledged it.
    let acknowledged = Arc::new(Mutex::new(Vec::<(gridshare_ledger::Hash, usize)>::new()));
    // Refusals by the API's error code: how many, and the first message.
    let refused = Arc::new(Mutex::new(std::collections::BTreeMap::<String, (u64, String)>::new()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let community = Arc::new(community);
    let submitters: Vec<_> = (0..submitter_count)
        .map(|submitter| {
            let urls: Vec<String> = households.iter().map(|node| node.api.url().to_string()).collect();
            let (community, acknowledged, refused) =
                (community.clone(), acknowledged.clone(), refused.clone());
            std::thread::spawn(move || {
                // Clients of their own: a kept-alive connection per node and submitter.
                let clients: Vec<Client> = urls.iter().map(|url| Client::new(url).unwrap()).collect();
                let mine: Vec<usize> = (0..community.households.len())
                    .filter(|index| index % submitter_count == submitter)
                    .collect();
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
                        let node = index % clients.len();
                        let (code, message) = match clients[node].submit(&offer) {
                            Ok(Submission::Admitted { id }) => {
                                acknowledged.lock().unwrap().push((id, node));
                                continue;
                            }
                            Ok(Submission::Refused { code, message, .. }) => (code.to_string(), message),
                            Err(error) => {
                                (error.code().map_or("error", |code| code.as_str()).into(), error.to_string())
                            }
                        };
                        // Nonces have no gaps: the next offer reuses it.
                        nonces[index] -= 1;
                        let mut refused = refused.lock().unwrap();
                        let (count, _) = refused.entry(code).or_insert_with(|| (0, message));
                        *count += 1;
                    }
                }
            })
        })
        .collect();
    for submitter in submitters {
        submitter.join().unwrap();
    }
    let cpu_used_ms: Vec<u64> =
        nodes.iter().zip(&cpu_start_ms).map(|(node, start)| cpu_ms(node.process.pid()) - start).collect();
    let load_ms = seconds * 1_000;
    // Let the last offers clear.
    std::thread::sleep(Duration::from_millis(3 * INTERVAL_MS));
    stop.store(true, Ordering::Relaxed);
    for watcher in watchers {
        watcher.join().unwrap();
    }
    let end_height = api.status().unwrap().height;
    let mut committed = 0_u64;
    let mut on_ledger = std::collections::BTreeSet::new();
    let (mut first_ms, mut last_ms) = (u64::MAX, 0);
    let (mut first_block_ms, mut last_block_ms) = (u64::MAX, 0);
    for height in start_height + 1..=end_height {
        let block = api.block(height).unwrap();
        let time = block.timestamp_ms;
        first_block_ms = first_block_ms.min(time);
        last_block_ms = last_block_ms.max(time);
        on_ledger.extend(block.transactions.iter().map(|tx| tx.id));
        let offers = block.transactions.iter().filter(|tx| tx.kind == TxKind::Offer).count();
        if offers > 0 {
            first_ms = first_ms.min(time);
            last_ms = last_ms.max(time);
            committed += offers as u64;
        }
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let admitted = acknowledged.len() as u64;
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
            "gate closure to clearing seen on a household (nearest rank): p50 {} ms, p99 {} ms, max {} ms ({} samples)",
            percentile(&latencies, 50).unwrap_or(0),
            percentile(&latencies, 99).unwrap_or(0),
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
        let metrics = node.api.metrics().unwrap();
        let gossip: Vec<&str> = metrics
            .lines()
            .filter(|line| {
                [
                    "gridshare_gossip",
                    "gridshare_height",
                    "gridshare_transactions_announced",
                    "gridshare_direct",
                ]
                .iter()
                .any(|name| line.starts_with(name))
            })
            .collect();
        println!("{} gossip: {}", node.api.url(), gossip.join(" "));
    }
    for (index, node) in validators.iter().enumerate() {
        println!("peak memory: validator {index} {} MiB", node.process.peak_memory_kib() / 1024);
    }
    for (index, node) in households.iter().enumerate() {
        println!("peak memory: household {index} {} MiB", node.process.peak_memory_kib() / 1024);
    }
    if account(&acknowledged, &on_ledger, &households) > 0 {
        std::process::exit(1);
    }
}

/// Accounts for every acknowledged offer: on the ledger, or dropped with
/// the reason the node that acknowledged it gives; prints the tally and
/// the first few others; returns how many are neither.
fn account(
    acknowledged: &[(gridshare_ledger::Hash, usize)],
    on_ledger: &std::collections::BTreeSet<gridshare_ledger::Hash>,
    households: &[Node],
) -> u64 {
    let mut included = acknowledged.iter().filter(|(id, _)| on_ledger.contains(id)).count();
    let mut dropped = std::collections::BTreeMap::<String, u64>::new();
    let mut lost = Vec::new();
    for (id, node) in acknowledged.iter().filter(|(id, _)| !on_ledger.contains(id)) {
        match households[*node].api.transaction(id) {
            Ok(Some(TransactionStatus { state: TransactionState::Dropped { reason, .. }, .. })) => {
                *dropped.entry(reason).or_default() += 1;
            }
            // In a block after the last one read.
            Ok(Some(TransactionStatus { state: TransactionState::Included { .. }, .. })) => included += 1,
            // Still waiting after its gate passed, unknown, or no answer.
            answer => lost.push(format!("{id} at household {node}: {answer:?}")),
        }
    }
    println!(
        "acknowledged offers: {}: {included} on the ledger, dropped with a reason {dropped:?}, lost {}",
        acknowledged.len(),
        lost.len()
    );
    for line in lost.iter().take(10) {
        println!("  lost: {line}");
    }
    lost.len() as u64
}
