//! `gridshare-testnet run`: sets the community up, runs the households and
//! the perturbations while showing progress, lets the last interval settle,
//! runs the end checks against the live nodes and the exported ledger, and
//! builds the report.
//!
//! The rule for acknowledged transactions: each one must be on the ledger,
//! or have been dropped by a node's mempool with a logged reason that time
//! or the signer's own other transactions explain (`interval_closed`: its
//! gate passed while it waited; `stale_nonce` or `reading_not_increasing`:
//! a later transaction of the same signer was committed first; `nonce_gap`,
//! where the ledger wants consecutive nonces: an earlier transaction of the
//! same signer was dropped, so this one skips ahead), or have
//! been acknowledged by a node that the testnet restarted afterwards (killed,
//! or stopped to restart it with a skewed clock): a 202 admits a transaction
//! to a mempool held in memory, and promises no durability.
//! Anything else, a transaction still waiting at the end included, fails
//! the check.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gridshare_api::TransactionState;
use gridshare_api::client::{ClientError, Timeouts};
use gridshare_api::stats::percentile;
use gridshare_ledger::Hash;
use gridshare_ledger::audit::audit_export;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::Keypair;

use crate::agent::{Agent, Market};
use crate::chain::{Chain, Drop, drops_in_log, warnings_in_log};
use crate::journal::{Journal, Snapshot, now_ms};
use crate::manifest::{Manifest, ManifestError, Perturbation};
use crate::monitor::{Board, Progress, poll, watch_events};
use crate::nodes::{Node, ProcessError, Role, node_binary};
use crate::perturb::{self, FaultLog};
use crate::profile::{Household, Simulation, community_traits};
use crate::report::{self, Check, Flood, NodeReport, Report, Transactions};
use crate::setup::{self, Keys, SetupError};

/// Requests of the agents and checks give up after these (a paused node
/// must not stall an agent).
const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    request: Duration::from_secs(3),
    // An event stream or export that sends nothing for this long is given up.
    stream_read: Duration::from_secs(30),
};
/// Drop reasons the rule accepts for an acknowledged transaction.
const ACCEPTED_DROPS: [&str; 4] = ["interval_closed", "stale_nonce", "reading_not_increasing", "nonce_gap"];
/// At most this many examples are quoted in a check's detail.
const EXAMPLES_MAX: usize = 5;
/// Included transactions whose status is asked from the API.
const STATUS_SAMPLES: usize = 50;

/// What `run` is told.
#[derive(Clone, Debug)]
pub struct Options {
    pub manifest: PathBuf,
    pub seed: Option<u64>,
    pub report: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    pub node_binary: Option<PathBuf>,
}

/// Why a run could not be carried out (as opposed to a check failing).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("work directory {path}: {reason}")]
    Workdir { path: String, reason: String },
    #[error("writing the report {path}: {error}")]
    Report { path: String, error: std::io::Error },
}

/// A finished run.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    pub report_path: Option<PathBuf>,
    pub manifest_text: String,
}

fn workdir(options: &Options, seed: u64) -> Result<(PathBuf, bool), RunError> {
    let bad = |path: &Path, reason: String| RunError::Workdir { path: path.display().to_string(), reason };
    match &options.workdir {
        Some(path) => {
            if path.exists()
                && std::fs::read_dir(path).map_err(|error| bad(path, error.to_string()))?.next().is_some()
            {
                return Err(bad(path, "exists and is not empty: choose a new or empty directory".into()));
            }
            std::fs::create_dir_all(path).map_err(|error| bad(path, error.to_string()))?;
            Ok((path.clone(), true))
        }
        None => {
            let path = std::env::temp_dir().join(format!(
                "gridshare-testnet-seed{seed}-{}-{}",
                std::process::id(),
                now_ms()
            ));
            std::fs::create_dir_all(&path).map_err(|error| bad(&path, error.to_string()))?;
            Ok((path, false))
        }
    }
}

/// Everything the phases of a run share once the community is set up.
struct Community {
    manifest: Manifest,
    seed: u64,
    workdir: PathBuf,
    keep_workdir: bool,
    genesis: Genesis,
    keys: Keys,
    nodes: Arc<Vec<Arc<Node>>>,
    journal: Arc<Journal>,
    /// The meters' zero readings from their registration until the agents
    /// take over.
    idle_meters: setup::IdleMeters,
}

/// What trading left behind.
struct Trading {
    market: Arc<Market>,
    start_ms: u64,
    end_ms: u64,
    faults: Vec<FaultLog>,
    flooders: BTreeSet<u32>,
}

/// Where the nodes are once the last interval settled.
struct Drained {
    /// The validator's height when the last interval had settled.
    target: u64,
    /// Each node's height after catching up (or the deadline).
    heights: Vec<Option<u64>>,
}

/// Runs the manifest's testnet.
pub fn run(options: &Options) -> Result<Outcome, RunError> {
    let manifest_text = std::fs::read_to_string(&options.manifest).unwrap_or_default();
    let community = set_up(options)?;
    let stop_monitors = Arc::new(AtomicBool::new(false));
    let board = spawn_monitors(&community, &stop_monitors);
    let trading = trade(&community, &board)?;
    println!("Trading over; waiting for the last interval to settle and every node to catch up");
    let drained = drain(&community, &trading);

    // Checks against the live nodes and the export.
    let Community { nodes, journal, workdir, .. } = &community;
    let export_path = workdir.join("ledger.export");
    let chain = match nodes[0].api().export_to_file(&export_path) {
        Ok(_) => Chain::read(&export_path).map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    let snapshot = journal.snapshot();
    let mut checks = Vec::new();
    let live = match &chain {
        Ok(chain) => live_checks(chain, nodes, &drained.heights, drained.target, &snapshot),
        Err(error) => {
            let detail = format!("the validator's export could not be read: {error}");
            checks.push(Check::new("export", false, detail));
            LiveChecks::default()
        }
    };
    checks.extend(live.checks.iter().cloned());
    checks.push(exits_check(nodes));

    // Stop everyone, then read the logs.
    stop_monitors.store(true, Ordering::Relaxed);
    let mut findings = Vec::new();
    let stopped: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = nodes.iter().map(|node| scope.spawn(|| node.stop())).collect();
        handles.into_iter().map(|handle| handle.join().unwrap_or(false)).collect()
    });
    for (node, clean) in nodes.iter().zip(&stopped) {
        if !clean {
            findings.push(format!("{} did not stop cleanly on SIGTERM within the deadline", node.name));
        }
    }
    let mut drops: BTreeMap<String, Vec<Drop>> = BTreeMap::new();
    for node in nodes.iter() {
        let log = std::fs::read_to_string(&node.log_path).unwrap_or_default();
        drops_in_log(&node.name, &log, &mut drops);
        for (warning, count) in warnings_in_log(&log) {
            findings.push(format!("{} logged {count}× {warning}", node.name));
        }
    }
    let ended = Ended { chain, snapshot, drops, live, checks, findings, export_path };
    let report = build_report(options, &community, trading, &drained, ended);
    let report_path =
        options.report.clone().or_else(|| report.workdir_kept.then(|| workdir.join("report.json")));
    if let Some(path) = &report_path {
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        std::fs::write(path, json + "\n")
            .map_err(|error| RunError::Report { path: path.display().to_string(), error })?;
    }
    if !report.workdir_kept {
        let _ = std::fs::remove_dir_all(workdir);
    }
    Ok(Outcome { report, report_path, manifest_text })
}

/// Reads the manifest, writes the genesis and data directories, starts the
/// nodes and registers the households.
fn set_up(options: &Options) -> Result<Community, RunError> {
    let manifest = Manifest::load(&options.manifest)?;
    let seed = options.seed.unwrap_or(manifest.seed);
    let binary = node_binary(options.node_binary.as_deref())?;
    let (workdir, keep_workdir) = workdir(options, seed)?;
    println!(
        "{}: seed {seed}, {} validator(s), {} households on {} household nodes, {} intervals of {} ms ({} s of trading)",
        manifest.name,
        manifest.validators,
        manifest.households,
        manifest.household_nodes,
        manifest.intervals,
        manifest.interval_ms,
        manifest.trading_ms() / 1_000
    );
    println!("Work dir: {}", workdir.display());
    let keys = Keys::derive(seed, manifest.validators, manifest.households);
    let (genesis, _, nodes) = setup::prepare(&manifest, &keys, &workdir, &binary, TIMEOUTS)?;
    let nodes = Arc::new(nodes);
    // Clock skews from the start are how those nodes start.
    let skews: Vec<(usize, i64)> = manifest
        .perturbations
        .iter()
        .filter_map(|perturbation| match perturbation {
            Perturbation::ClockSkew { at_s: 0, node, skew_ms, .. } => {
                nodes.iter().position(|candidate| &candidate.name == node).map(|index| (index, *skew_ms))
            }
            _ => None,
        })
        .collect();
    setup::start(&manifest, &nodes, &skews)?;
    println!(
        "Started {} nodes; validator-0 at {} (API {})",
        nodes.len(),
        nodes[0].p2p(),
        nodes[0].api().url()
    );
    let journal = Arc::new(Journal::default());
    let idle_meters = setup::IdleMeters::start(&genesis, &keys, nodes[0].clone(), &journal);
    setup::register(&manifest, &genesis, &keys, &nodes, &journal)?;
    println!("Registered {} households with their meters and credits", manifest.households);
    Ok(Community { manifest, seed, workdir, keep_workdir, genesis, keys, nodes, journal, idle_meters })
}

/// A thread per node following its event stream, and the status poller.
fn spawn_monitors(community: &Community, stop: &Arc<AtomicBool>) -> Arc<Board> {
    let board = Arc::new(Board::new(community.nodes.len()));
    for (index, node) in community.nodes.iter().enumerate() {
        let (node, journal, stop) = (node.clone(), community.journal.clone(), stop.clone());
        std::thread::spawn(move || watch_events(&node, index, &journal, &stop));
    }
    let (nodes, poll_board, stop) = (community.nodes.clone(), board.clone(), stop.clone());
    std::thread::spawn(move || poll(&nodes, &poll_board, &stop));
    board
}

/// Runs an agent per household and a thread per perturbation, showing
/// progress, until the agents have reported the last interval.
fn trade(community: &Community, board: &Board) -> Result<Trading, RunError> {
    let Community { manifest, seed, genesis, keys, nodes, journal, idle_meters, .. } = community;
    let seed = *seed;
    // The agents report from here on, each from its meter's last reading.
    idle_meters.finish();
    let start_ms = now_ms();
    let first_interval = genesis.interval_at(start_ms);
    let market = Arc::new(Market {
        genesis: genesis.clone(),
        simulation: Simulation::new(seed, &manifest.profiles),
        tariffs: manifest.tariffs,
        seed,
        offers_per_interval: manifest.offers_per_interval,
        first_interval,
        last_interval: first_interval + manifest.intervals,
        offset_spread_ms: (manifest.interval_ms / 4)
            .min(manifest.settlement_delay_ms / 2)
            .saturating_sub(100)
            .max(1),
    });
    let flooders: BTreeSet<u32> = manifest
        .perturbations
        .iter()
        .filter_map(|perturbation| match perturbation {
            Perturbation::Flood { household, .. } => Some(*household),
            _ => None,
        })
        .collect();
    let stop_agents = Arc::new(AtomicBool::new(false));
    let copy = |key: &Keypair| Keypair::from_seed(key.seed());
    let mut agents = Vec::with_capacity(keys.accounts.len());
    for (index, traits) in community_traits(seed, &manifest.profiles, manifest.households).iter().enumerate()
    {
        let household = u32::try_from(index).unwrap_or(u32::MAX);
        let node_index = manifest.node_of_household(household);
        let agent = Agent {
            household: Household::new(household, *traits),
            account: copy(&keys.accounts[index]),
            meter: copy(&keys.meters[index]),
            node: nodes[node_index].clone(),
            node_index,
            keep_for_replay: flooders.contains(&household),
        };
        let (market, journal, stop) = (market.clone(), journal.clone(), stop_agents.clone());
        let handle = std::thread::Builder::new()
            .name(format!("household-agent-{index}"))
            .stack_size(256 * 1024)
            .spawn(move || agent.run(&market, &journal, &stop))
            .map_err(|error| ProcessError::Io { what: "starting an agent thread".into(), error })?;
        agents.push(handle);
    }
    let context = perturb::Context {
        nodes: nodes.clone(),
        journal: journal.clone(),
        market: market.clone(),
        stop: stop_agents.clone(),
        start_ms,
        accounts: Arc::new(
            keys.accounts
                .iter()
                .zip(&keys.meters)
                .map(|(account, meter)| (copy(account), copy(meter)))
                .collect(),
        ),
        manifest: manifest.clone(),
    };
    let faults: Vec<_> = manifest
        .perturbations
        .iter()
        .map(|perturbation| {
            let (context, perturbation) = (context.clone(), perturbation.clone());
            std::thread::spawn(move || perturb::apply(&context, &perturbation))
        })
        .collect();
    let trading_ms =
        genesis.interval_end_ms(market.last_interval).unwrap_or(start_ms).saturating_sub(start_ms);
    let mut progress = Progress::new(trading_ms / 1_000, manifest.interval_ms.max(5_000));
    let elapsed_s = || now_ms().saturating_sub(start_ms) / 1_000;
    while agents.iter().any(|agent| !agent.is_finished()) {
        progress.update(elapsed_s(), journal, board, nodes.len());
        std::thread::sleep(Duration::from_millis(250));
    }
    progress.update(elapsed_s(), journal, board, nodes.len());
    progress.finish();
    let end_ms = now_ms();
    for agent in agents {
        let _ = agent.join();
    }
    let faults = faults
        .into_iter()
        .map(|fault| {
            fault.join().unwrap_or_else(|_| FaultLog {
                fault: "a perturbation".into(),
                applied_at_s: None,
                healed_at_s: None,
                problems: vec!["its thread panicked".into()],
            })
        })
        .collect();
    Ok(Trading { market, start_ms, end_ms, faults, flooders })
}

/// Waits (with deadlines) for the last interval to settle on the
/// validator, then for every node to reach the validator's height.
fn drain(community: &Community, trading: &Trading) -> Drained {
    let Community { genesis, nodes, .. } = community;
    let last = trading.market.last_interval;
    let settled_by = genesis.settlement_ms(last).unwrap_or(trading.end_ms) + 60_000;
    while now_ms() < settled_by {
        let next = nodes[0].api().status().map_or(0, |status| status.next_settlement_interval);
        if next > last {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let target = nodes[0].api().status().map_or(0, |status| status.height);
    let caught_up_by = now_ms() + 60_000 + nodes.len() as u64 * 200;
    let mut heights: Vec<Option<u64>> = vec![None; nodes.len()];
    loop {
        for (index, node) in nodes.iter().enumerate() {
            heights[index] = node.api().status().ok().map(|status| status.height);
        }
        if heights.iter().all(|height| height.is_some_and(|height| height >= target))
            || now_ms() > caught_up_by
        {
            return Drained { target, heights };
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// No node process ended unless the testnet ended it.
fn exits_check(nodes: &[Arc<Node>]) -> Check {
    let exits: Vec<String> = nodes.iter().flat_map(|node| node.unexpected_exits()).collect();
    let detail = if exits.is_empty() {
        "every process ended only when a perturbation or the end of the run ended it".to_string()
    } else {
        format!(
            "{} (a log ending \"stopped after the last stored block\" means a SIGTERM or SIGINT from outside the testnet)",
            exits.join(" || ")
        )
    };
    Check::new("no node ended unless the testnet ended it", exits.is_empty(), detail)
}

/// What the end of a run collected for the report.
struct Ended {
    chain: Result<Chain, String>,
    snapshot: Snapshot,
    drops: BTreeMap<String, Vec<Drop>>,
    live: LiveChecks,
    checks: Vec<Check>,
    findings: Vec<String>,
    export_path: PathBuf,
}

/// The checks that read the export and the logs, the figures, and the report.
fn build_report(
    options: &Options,
    community: &Community,
    trading: Trading,
    drained: &Drained,
    ended: Ended,
) -> Report {
    let Community { manifest, nodes, .. } = community;
    let Trading { market, start_ms, end_ms, faults, flooders } = trading;
    let Ended { chain, snapshot, drops, live, mut checks, mut findings, export_path } = ended;
    let first_interval = market.first_interval;
    let mut report_market = report::Market::default();
    let mut transactions = Transactions::default();
    let (mut offer_latencies, mut finality, mut finality_validator) = (Vec::new(), Vec::new(), Vec::new());
    let mut height = 0;
    if let Ok(chain) = &chain {
        height = chain.height();
        checks.push(certificate_check(chain));
        checks.push(audit_check(&export_path, chain, &mut findings));
        let (check, accounted) = transactions_check(chain, &snapshot, &drops, &live.not_on_ledger, nodes);
        checks.push(check);
        transactions = accounted;
        report_market = report::market(chain);
        checks.push(Check::new(
            "the community traded and settled",
            report_market.trades > 0 && report_market.settlements > 0,
            format!(
                "{} intervals cleared with {} trades; {} intervals settled with {} bills",
                report_market.intervals_cleared,
                report_market.trades,
                report_market.settlements,
                report_market.bills
            ),
        ));
        (offer_latencies, finality) =
            report::latencies(chain, &snapshot, first_interval, market.last_interval, 0..nodes.len());
        (_, finality_validator) = report::latencies(
            chain,
            &snapshot,
            first_interval,
            market.last_interval,
            0..manifest.validators as usize,
        );
    }
    let flood = flood_report(&snapshot);
    if !flooders.is_empty() {
        checks.push(flood_check(&flood));
    }
    if !faults.is_empty() {
        let failed: Vec<String> = faults
            .iter()
            .filter(|fault| !fault.problems.is_empty())
            .map(|fault| format!("{}: {}", fault.fault, fault.problems.join("; ")))
            .collect();
        let detail = if failed.is_empty() {
            format!("{} faults applied and healed", faults.len())
        } else {
            failed.join(" | ")
        };
        checks.push(Check::new("faults applied as planned", failed.is_empty(), detail));
    }
    findings.extend(transaction_findings(&transactions, &drops, &snapshot, &chain));
    if snapshot.events_lagged > 0 {
        findings.push(format!(
            "event streams lagged and skipped {} events (the finality figures miss them)",
            snapshot.events_lagged
        ));
    }

    let restarts: u32 = nodes.iter().map(|node| node.restarts.load(Ordering::Relaxed)).sum();
    let planned_restarts: usize = manifest
        .perturbations
        .iter()
        .map(|perturbation| match perturbation {
            Perturbation::Kill { .. } => 1,
            Perturbation::ClockSkew { at_s, duration_s, .. } => {
                usize::from(*at_s > 0) + usize::from(duration_s.is_some())
            }
            _ => 0,
        })
        .sum();
    let restarts_survived: u32 = nodes
        .iter()
        .zip(&drained.heights)
        .filter(|(_, height)| height.is_some_and(|height| height >= drained.target))
        .map(|(node, _)| node.restarts.load(Ordering::Relaxed))
        .sum();
    let trading_s = end_ms.saturating_sub(start_ms) / 1_000;
    let committed: u64 = chain.as_ref().map_or(0, |chain| {
        chain
            .blocks
            .iter()
            .filter(|block| (start_ms..=end_ms).contains(&block.timestamp_ms))
            .map(|block| block.transactions as u64)
            .sum()
    });
    let acknowledged_in_window =
        snapshot.acknowledged.iter().filter(|ack| (start_ms..=end_ms).contains(&ack.acknowledged_ms)).count()
            as u64;
    let passed = checks.iter().all(|check| check.passed);
    let node_reports = nodes
        .iter()
        .zip(&drained.heights)
        .map(|(node, height)| NodeReport {
            name: node.name.clone(),
            role: if node.role == Role::Validator { "validator" } else { "household" },
            api: node.address(),
            restarts: node.restarts.load(Ordering::Relaxed),
            clock_skew_ms: node.clock_skew_ms(),
            final_height: *height,
            peak_memory_mib: node.peak_memory_kib() / 1_024,
        })
        .collect();
    Report {
        passed,
        seed: community.seed,
        manifest: options.manifest.display().to_string(),
        name: manifest.name.clone(),
        checks,
        nodes: node_reports,
        households: manifest.households,
        first_interval,
        last_interval: market.last_interval,
        trading_s,
        height,
        intervals_cleared: report_market.intervals_cleared,
        trades: report_market.trades,
        energy_traded_wh: report_market.energy_traded_wh,
        average_trade_price_micro_per_kwh: report_market.average_price_micro_per_kwh,
        settlements: report_market.settlements,
        bills: report_market.bills,
        grid_import_wh: report_market.grid_import_wh,
        grid_feed_in_wh: report_market.grid_feed_in_wh,
        grid_only_import_wh: report_market.grid_only_import_wh,
        bills_with_estimates: report_market.bills_with_estimates,
        estimated_import_wh: report_market.estimated_import_wh,
        estimate_refund_wh: report_market.estimate_refund_wh,
        bills_total_nano: report_market.bills_total_nano.to_string(),
        grid_only_total_nano: report_market.grid_only_total_nano.to_string(),
        community_savings_nano: (report_market.bills_total_nano - report_market.grid_only_total_nano)
            .to_string(),
        currency: community.genesis.currency.clone(),
        transactions,
        tx_per_s: committed / trading_s.max(1),
        acknowledged_per_s: acknowledged_in_window / trading_s.max(1),
        offer_to_ledger_ms_p50: percentile(&offer_latencies, 50),
        offer_to_ledger_ms_p99: percentile(&offer_latencies, 99),
        finality_ms_p50: percentile(&finality, 50),
        finality_ms_p99: percentile(&finality, 99),
        finality_validator_ms_p50: percentile(&finality_validator, 50),
        finality_validator_ms_p99: percentile(&finality_validator, 99),
        finality_samples: finality.len(),
        restarts: u32::try_from(planned_restarts).unwrap_or(u32::MAX).max(restarts),
        restarts_survived,
        faults,
        flood,
        findings,
        export_path: export_path.display().to_string(),
        workdir: community.workdir.display().to_string(),
        workdir_kept: community.keep_workdir || !passed,
    }
}

/// The flood's transactions were all refused.
fn flood_check(flood: &Flood) -> Check {
    let answers: Vec<String> = flood
        .outcomes
        .iter()
        .map(|(kind, answers)| {
            let list: Vec<String> =
                answers.iter().map(|(answer, count)| format!("{answer} ×{count}")).collect();
            format!("{kind}: {}", list.join(", "))
        })
        .collect();
    Check::new(
        "invalid transactions rejected",
        flood.sent > 0 && flood.admitted == 0,
        format!("{} sent, {} admitted; {}", flood.sent, flood.admitted, answers.join("; ")),
    )
}

/// The results of the checks that need the nodes running.
#[derive(Debug, Default)]
struct LiveChecks {
    checks: Vec<Check>,
    /// Acknowledged transactions not on the ledger: what the acknowledging
    /// node and the validator said about them.
    not_on_ledger: BTreeMap<String, String>,
}

/// The heights compared on every node: the first, quarters, the last two
/// and the validator's height at each restart.
fn sample_heights(common: u64, restarts: &[u64]) -> Vec<u64> {
    let mut heights: BTreeSet<u64> =
        [1, common / 4, common / 2, common * 3 / 4, common.saturating_sub(1), common].into_iter().collect();
    heights
        .extend(restarts.iter().flat_map(|height| [*height, height + 1]).filter(|height| *height <= common));
    heights.into_iter().filter(|height| (1..=common).contains(height)).collect()
}

fn live_checks(
    chain: &Chain,
    nodes: &[Arc<Node>],
    heights: &[Option<u64>],
    target: u64,
    snapshot: &Snapshot,
) -> LiveChecks {
    let mut live = LiveChecks::default();
    // Same chain: every node reached the validator's height, and at the
    // sampled heights serves the block the export has (hash and state
    // root). Blocks link by hash, so equal hashes at a height mean equal
    // chains up to it.
    let mut problems = Vec::new();
    for (node, height) in nodes.iter().zip(heights) {
        match height {
            Some(height) if *height >= target => {}
            Some(height) => problems.push(format!("{} is at height {height}, below {target}", node.name)),
            None => problems.push(format!("{} does not answer", node.name)),
        }
    }
    let common = heights.iter().flatten().copied().min().unwrap_or(0).min(chain.height());
    let samples = sample_heights(common, &snapshot.restart_heights);
    for node in nodes {
        for height in &samples {
            let Some(expected) = chain.block(*height) else {
                problems.push(format!("the export has no block {height}"));
                continue;
            };
            match node.api().block(*height) {
                Ok(block) => {
                    if block.hash != expected.hash || block.state_root != expected.state_root {
                        problems.push(format!(
                            "{} block {height}: hash {} state root {}, the export has {} and {}",
                            node.name, block.hash, block.state_root, expected.hash, expected.state_root
                        ));
                    }
                }
                Err(error) => problems.push(format!("{} block {height}: {error}", node.name)),
            }
        }
    }
    let same = problems.is_empty();
    let detail = if same {
        format!(
            "{} nodes at height ≥ {target}; blocks {} identical (hash and state root) on every node and in the export",
            nodes.len(),
            samples.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        )
    } else {
        let count = problems.len();
        problems.truncate(EXAMPLES_MAX);
        format!("{count} problems: {}", problems.join("; "))
    };
    live.checks.push(Check::new("every node has the same chain and state root", same, detail));

    // What the nodes say about acknowledged transactions: those not on the
    // ledger (is anything still waiting?), and a sample of those on it.
    let mut mismatches = Vec::new();
    let included: Vec<_> =
        snapshot.acknowledged.iter().filter(|ack| chain.transactions.contains_key(&ack.id)).collect();
    let step = (included.len() / STATUS_SAMPLES).max(1);
    let mut asked = 0;
    for ack in included.iter().step_by(step) {
        asked += 1;
        let expected = chain.transactions[&ack.id];
        let found = ack
            .id
            .parse::<Hash>()
            .map_err(|error| error.to_string())
            .and_then(|id| nodes[ack.node].api().transaction(&id).map_err(|error| error.to_string()));
        match found.map(|found| found.map(|found| found.state)) {
            Ok(Some(TransactionState::Included { height, .. })) if height == expected => {}
            Ok(state) => mismatches.push(format!(
                "{} at {}: {state:?}, the ledger has height {expected}",
                ack.id, nodes[ack.node].name
            )),
            Err(error) => mismatches.push(format!("{}: {error}", ack.id)),
        }
    }
    for ack in snapshot.acknowledged.iter().filter(|ack| !chain.transactions.contains_key(&ack.id)) {
        let mut said = Vec::new();
        for index in BTreeSet::from([0, ack.node]) {
            let answer = match ack.id.parse::<Hash>().map(|id| nodes[index].api().transaction(&id)) {
                Ok(Ok(Some(found))) => match found.state {
                    TransactionState::Pending => "pending".to_string(),
                    TransactionState::Included { .. } => "included".to_string(),
                },
                Ok(Ok(None)) => "unknown".to_string(),
                Ok(Err(ClientError::Refused { status, .. } | ClientError::BadResponse { status, .. })) => {
                    format!("HTTP {status}")
                }
                Ok(Err(_)) => "no answer".to_string(),
                Err(_) => "not an id".to_string(),
            };
            said.push(format!("{}: {answer}", nodes[index].name));
        }
        live.not_on_ledger.insert(ack.id.clone(), said.join(", "));
    }
    let detail = if mismatches.is_empty() {
        format!(
            "{asked} of {} included transactions asked at the node that acknowledged them: all included at the export's height",
            included.len()
        )
    } else {
        let count = mismatches.len();
        mismatches.truncate(EXAMPLES_MAX);
        format!("{count} of {asked} disagree: {}", mismatches.join("; "))
    };
    live.checks.push(Check::new(
        "the transaction status API agrees with the ledger",
        mismatches.is_empty(),
        detail,
    ));
    live
}

/// Every block's certificate verifies against the genesis validators:
/// more than two thirds of the voting power signed, each signer a
/// validator, once. With several validators a certificate holds the
/// precommits its proposer had when the block was decided, a quorum or more.
fn certificate_check(chain: &Chain) -> Check {
    let bad: Vec<u64> =
        chain.blocks.iter().filter(|block| !block.certificate_valid).map(|block| block.height).collect();
    let signatures = chain.blocks.iter().map(|block| block.certificate_signatures);
    let (fewest, most) = (signatures.clone().min().unwrap_or(0), signatures.max().unwrap_or(0));
    let signed = if fewest == most { fewest.to_string() } else { format!("{fewest} to {most}") };
    let mut detail = format!(
        "{} blocks, each with a certificate of {signed} of {} validators' signatures that verifies \
         against the genesis validators",
        chain.blocks.len(),
        chain.genesis.validators.len()
    );
    if !bad.is_empty() {
        detail = format!(
            "{} blocks without one valid certificate, first at heights {:?}",
            bad.len(),
            &bad[..bad.len().min(EXAMPLES_MAX)]
        );
    }
    if let Some(error) = &chain.read_error {
        detail.push_str(&format!("; the export could not be read to its end: {error}"));
    }
    Check::new("every block has one valid certificate", bad.is_empty() && chain.read_error.is_none(), detail)
}

/// `gridshare_ledger::audit::audit_export` on the export: every link,
/// certificate and signature, every block re-executed (clearings,
/// settlements, receipts, state roots) with the conservation invariants
/// asserted after each block. An invariant broken panics in the state
/// machine; the panic is caught and fails the check.
fn audit_check(path: &Path, chain: &Chain, findings: &mut Vec<String>) -> Check {
    let name = "the exported ledger passes the audit (certificates, signatures, re-execution, invariants)";
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
        audit_export(std::io::BufReader::new(file), |_| ()).map_err(|error| error.to_string())
    }));
    match result {
        Ok(Ok(audit)) => {
            for finding in audit.findings.iter().take(EXAMPLES_MAX) {
                findings.push(format!("audit: {finding}"));
            }
            let passed = audit.passed() && audit.executed_height == chain.height();
            Check::new(
                name,
                passed,
                format!(
                    "{} blocks, {} transactions, {} signatures verified, re-executed to height {} (state root {}), {} intervals cleared, {} settled; {} findings",
                    audit.blocks,
                    audit.transactions,
                    audit.signatures_verified,
                    audit.executed_height,
                    audit.state_root,
                    audit.intervals_cleared,
                    audit.settlements,
                    audit.findings.len() as u64 + audit.findings_omitted
                ),
            )
        }
        Ok(Err(error)) => Check::new(name, false, format!("the audit could not read the export: {error}")),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_string()))
                .unwrap_or_default();
            Check::new(name, false, format!("the audit panicked: {message}"))
        }
    }
}

/// Applies the rule of the module's documentation to every acknowledged
/// transaction.
fn transactions_check(
    chain: &Chain,
    snapshot: &Snapshot,
    drops: &BTreeMap<String, Vec<Drop>>,
    not_on_ledger: &BTreeMap<String, String>,
    nodes: &[Arc<Node>],
) -> (Check, Transactions) {
    let mut accounted = Transactions {
        acknowledged: snapshot.acknowledged.len() as u64,
        refused: snapshot.refused.clone(),
        unanswered: snapshot.unanswered,
        skipped_node_down: snapshot.skipped_node_down,
        ..Transactions::default()
    };
    let mut examples = Vec::new();
    for ack in &snapshot.acknowledged {
        if chain.transactions.contains_key(&ack.id) {
            accounted.on_ledger += 1;
            continue;
        }
        let found = drops.get(&ack.id);
        if let Some(drop) =
            found.and_then(|drops| drops.iter().find(|drop| ACCEPTED_DROPS.contains(&drop.reason)))
        {
            *accounted.dropped.entry(drop.reason.to_string()).or_default() += 1;
            continue;
        }
        if snapshot.ended.iter().any(|(node, at_ms)| *node == ack.node && *at_ms >= ack.acknowledged_ms) {
            accounted.lost_with_restarted_node += 1;
            continue;
        }
        accounted.unaccounted += 1;
        if examples.len() < EXAMPLES_MAX {
            let dropped = found.map_or_else(String::new, |drops| {
                let reasons: Vec<String> =
                    drops.iter().map(|drop| format!("{} dropped it: {}", drop.node, drop.message)).collect();
                format!("; {}", reasons.join("; "))
            });
            examples.push(format!(
                "{} {} (household {:?}, interval {:?}) acknowledged by {} at {} ms; now {}{dropped}",
                ack.kind,
                ack.id,
                ack.household,
                ack.interval,
                nodes[ack.node].name,
                ack.acknowledged_ms,
                not_on_ledger.get(&ack.id).map_or("?", String::as_str)
            ));
        }
    }
    let dropped: u64 = accounted.dropped.values().sum();
    let mut detail = format!(
        "{} acknowledged: {} on the ledger, {dropped} dropped with an accepted reason {:?}, {} lost with a restarted node's mempool, {} unaccounted",
        accounted.acknowledged,
        accounted.on_ledger,
        accounted.dropped,
        accounted.lost_with_restarted_node,
        accounted.unaccounted
    );
    if !examples.is_empty() {
        detail.push_str(&format!(": {}", examples.join(" | ")));
    }
    (
        Check::new(
            "every acknowledged transaction is on the ledger or was dropped with a reason",
            accounted.unaccounted == 0,
            detail,
        ),
        accounted,
    )
}

fn flood_report(snapshot: &Snapshot) -> Flood {
    let mut flood = Flood::default();
    for (outcome, count) in &snapshot.flood {
        flood.sent += count;
        if outcome.answer.starts_with("202") {
            flood.admitted += count;
        }
        *flood
            .outcomes
            .entry(outcome.sent.to_string())
            .or_default()
            .entry(outcome.answer.clone())
            .or_default() += count;
    }
    flood
}

/// Facts worth reading that are not failures.
fn transaction_findings(
    transactions: &Transactions,
    drops: &BTreeMap<String, Vec<Drop>>,
    snapshot: &Snapshot,
    chain: &Result<Chain, String>,
) -> Vec<String> {
    let mut findings = Vec::new();
    let acknowledged: BTreeSet<&str> = snapshot.acknowledged.iter().map(|ack| ack.id.as_str()).collect();
    let on_ledger = |id: &str| chain.as_ref().is_ok_and(|chain| chain.transactions.contains_key(id));
    // Per reason: how many acknowledged transactions, dropped at how many nodes.
    let mut by_reason: BTreeMap<&'static str, (u64, BTreeSet<String>)> = BTreeMap::new();
    for (id, list) in drops {
        if acknowledged.contains(id.as_str()) && !on_ledger(id) {
            let Some(first) = list.first() else { continue };
            let entry = by_reason.entry(first.reason).or_default();
            entry.0 += 1;
            entry.1.extend(list.iter().map(|drop| drop.node.clone()));
        }
    }
    if !by_reason.is_empty() {
        let list: Vec<String> = by_reason
            .iter()
            .map(|(reason, (count, nodes))| format!("{reason}: {count} (dropped at {} nodes)", nodes.len()))
            .collect();
        findings.push(format!(
            "acknowledged transactions that never reached a block, dropped from mempools: {}. A node gossips a \
             transaction once, when it admits it; one admitted while the proposing validators could not take it \
             (down, paused, restarting, cut off, or finding it early: a validator whose clock is behind \
             refuses a meter reading as early) is not gossiped again and waits until a block makes it inadmissible",
            list.join(", ")
        ));
    }
    if !transactions.refused.is_empty() {
        let list: Vec<String> =
            transactions.refused.iter().map(|(what, count)| format!("{what} ×{count}")).collect();
        findings.push(format!("refused at submission: {}", list.join(", ")));
    }
    if transactions.unanswered > 0 || transactions.skipped_node_down > 0 {
        findings.push(format!(
            "{} submissions got no answer and {} were not sent while the household's node was down or paused",
            transactions.unanswered, transactions.skipped_node_down
        ));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_heights_cover_the_chain_and_the_restarts() {
        assert_eq!(sample_heights(100, &[40, 200]), [1, 25, 40, 41, 50, 75, 99, 100]);
        assert_eq!(sample_heights(1, &[]), [1]);
        assert!(sample_heights(0, &[]).is_empty());
    }
}
