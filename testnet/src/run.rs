//! `gridshare-testnet run`: sets the community up, runs the households and
//! the perturbations while showing progress, lets the last interval settle,
//! runs the end checks against the live nodes and the exported ledger, and
//! builds the report. The end checks themselves are in `checks.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gridshare_api::client::Timeouts;
use gridshare_api::stats::percentile;
use gridshare_households::Agent as HouseholdAgent;
use gridshare_households::agent::Flexibility;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::Keypair;

use crate::agent::{Agent, Market};
use crate::chain::{Chain, Drop, drops_in_log, warnings_in_log};
use crate::checks::{
    LiveChecks, audit_check, certificate_check, exits_check, flood_check, flood_report, live_checks,
    transaction_findings, transactions_check, zones_check,
};
use crate::journal::{Journal, Snapshot, now_ms};
use crate::manifest::{Manifest, ManifestError, Perturbation};
use crate::monitor::{Board, Progress, poll, watch_events};
use crate::nodes::{Node, ProcessError, Role, node_binary};
use crate::perturb::{self, FaultLog};
use crate::profile::{Household, Simulation, community_traits};
use crate::report::{self, Check, FlexibilityReport, NodeReport, Report, Transactions};
use crate::setup::{self, Keys, SetupError};

/// Requests of the agents and checks give up after these (a paused node
/// must not stall an agent).
const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    request: Duration::from_secs(3),
    // An event stream or export that sends nothing for this long is given up.
    stream_read: Duration::from_secs(30),
};

/// What `run` is told.
#[derive(Clone, Debug)]
pub struct Options {
    pub manifest: PathBuf,
    pub seed: Option<u64>,
    pub report: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    pub node_binary: Option<PathBuf>,
    /// After the checks, leave the community running until Enter is pressed
    /// (or stdin ends), for exploring its dashboard.
    pub keep: bool,
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
    /// Each agent's forecast error (Wh, the mean of its absolute errors),
    /// for the agents that forecast at least one interval it then measured.
    forecast_errors_wh: Vec<u64>,
    /// What the agents' batteries and EVs did, summed over the households.
    flexibility: Flexibility,
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
    if options.keep {
        let passed = checks.iter().all(|check| check.passed);
        println!(
            "Checks done ({}). The community keeps running: its dashboard is at {}",
            if passed { "all passed" } else { "one failed; the report says which" },
            dashboard_node(nodes).api().url()
        );
        println!("Press Enter to stop it and print the report.");
        let _ = std::io::stdin().read_line(&mut String::new());
    }

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

/// The node whose dashboard a run points at: the first household node (no
/// perturbation a manifest names stops it in the demo), else validator-0.
fn dashboard_node(nodes: &[Arc<Node>]) -> &Arc<Node> {
    nodes.iter().find(|node| node.name.starts_with("household-")).unwrap_or(&nodes[0])
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
    println!(
        "Dashboard: {} (open it in a browser while the community trades)",
        dashboard_node(&nodes).api().url()
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
        dso: Arc::new(copy(&keys.dso)),
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
    let ended: Vec<HouseholdAgent> =
        agents.into_iter().filter_map(|agent| agent.join().ok().flatten()).collect();
    let forecast_errors_wh = ended.iter().filter_map(HouseholdAgent::forecast_error_wh).collect();
    let mut flexibility = Flexibility::default();
    for household in ended.iter().filter_map(|agent| agent.flexibility(&market.tariffs)) {
        flexibility.add(&household);
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
    Ok(Trading { market, start_ms, end_ms, faults, flooders, forecast_errors_wh, flexibility })
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
    let Trading { market, start_ms, end_ms, faults, flooders, forecast_errors_wh, flexibility } = trading;
    let Ended { chain, snapshot, drops, live, mut checks, mut findings, export_path } = ended;
    let first_interval = market.first_interval;
    let mut report_market = report::Market::default();
    let mut zones = Vec::new();
    let mut transactions = Transactions::default();
    let (mut offer_latencies, mut finality, mut finality_validator) = (Vec::new(), Vec::new(), Vec::new());
    let mut height = 0;
    if let Ok(chain) = &chain {
        height = chain.height();
        checks.push(certificate_check(chain));
        checks.push(audit_check(&export_path, chain, &mut findings));
        checks.push(zones_check(chain));
        let (check, accounted) = transactions_check(chain, &snapshot, &drops, &live.not_on_ledger, nodes);
        checks.push(check);
        transactions = accounted;
        report_market = report::market(chain);
        zones = report::zones(chain);
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
        zones,
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
        forecast_error_wh: (!forecast_errors_wh.is_empty())
            .then(|| forecast_errors_wh.iter().sum::<u64>() / forecast_errors_wh.len() as u64),
        forecasting_households: forecast_errors_wh.len(),
        flexibility: FlexibilityReport::from(&flexibility),
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
