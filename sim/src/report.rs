//! The end checks of a run and its report: the testnet's checks that apply
//! to a simulation (one chain and state root on every node, every
//! acknowledged transaction on the ledger or dropped with a reason the
//! core reported, the export passing the audit, the community trading and
//! settling, a flood refused) and the figures (transactions, blocks,
//! clearing latency after gate closure, messages, bytes and modelled CPU
//! per node). Every figure is a function of the run's inputs: no wall-clock
//! time is in a report, so the same arguments give the same report byte
//! for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;

use gridshare_ledger::Hash;
use gridshare_ledger::audit::audit_export;
use gridshare_ledger::export::export_store;
use gridshare_ledger::store::Store;
use serde::Serialize;

use crate::faults::{Planned, faults_text};
use crate::network::NodeId;
use crate::node::NodeStats;
use crate::world::{World, market_receipts};

/// One end check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &str, passed: bool, detail: String) -> Check {
        Check { name: name.to_string(), passed, detail }
    }
}

/// What the nodes of one role cost, each on average, per interval of
/// trading (and CPU per transaction committed during trading).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RoleCost {
    pub nodes: u64,
    pub messages_sent_per_interval: u64,
    pub bytes_sent_per_interval: u64,
    pub messages_received_per_interval: u64,
    pub bytes_received_per_interval: u64,
    /// Modelled CPU per transaction committed during trading, µs.
    pub cpu_us_per_transaction: u64,
    /// Modelled CPU busy during trading, per mille of the time.
    pub cpu_busy_per_mille: u64,
    /// The busiest node's CPU, per mille of the time.
    pub cpu_busy_per_mille_max: u64,
    /// Gossip each node dropped on average during trading: its link queue
    /// full, or past its timeout; and copies dropped as duplicates.
    pub gossip_dropped_queue_full: u64,
    pub gossip_dropped_timeout: u64,
    pub gossip_duplicates: u64,
    /// Gossip each node could not queue to a peer, on average.
    pub gossip_publish_failed: u64,
    pub gossip_forward_failed: u64,
    /// Verdicts on gossiped transactions over the whole run, summed over
    /// the nodes of the role, by label and reason.
    pub verdicts: BTreeMap<String, u64>,
}

/// The hostile peer's flood and what became of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FloodReport {
    pub sent: u64,
    pub accepted: u64,
    pub refused_by_ban: u64,
    pub banned_by: Vec<String>,
    pub verdicts: BTreeMap<String, u64>,
}

/// A run's report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub passed: bool,
    pub seed: u64,
    pub households: u32,
    pub validators: u32,
    pub household_nodes: u32,
    pub intervals: u64,
    pub faults: String,
    /// How many times the default modelled CPU costs are.
    pub cpu_slowdown: u64,
    /// The faults as the seed planned them.
    pub faults_applied: Vec<String>,
    /// The offers each household makes per interval.
    pub offers_per_interval: u32,
    /// The length of a delivery interval.
    pub interval_ms: u64,
    pub first_interval: u64,
    pub last_interval: u64,
    pub blocks: u64,
    pub rounds_timed_out: u64,
    pub intervals_cleared: u64,
    pub trades: u64,
    pub settlements: u64,
    pub transactions_acknowledged: u64,
    /// Acknowledged transactions that are on the ledger.
    pub transactions_committed: u64,
    /// Every transaction on the ledger (the registrations included).
    pub transactions_in_blocks: u64,
    pub transactions_committed_during_trading: u64,
    /// Acknowledged, not on the ledger, and dropped from a mempool with a
    /// reason the core reported: by reason.
    pub transactions_dropped_with_reason: BTreeMap<String, u64>,
    /// Acknowledged by a node that crashed afterwards, and neither on the
    /// ledger nor accounted for (a node restores what it acknowledged, so
    /// this fails the run like `transactions_lost`).
    pub transactions_lost_with_crashed_node: u64,
    /// Acknowledged and neither on the ledger nor accounted for.
    pub transactions_lost: u64,
    pub offers_acknowledged: u64,
    /// Acknowledged offers not on the ledger: none was in a block before
    /// its interval's gate closed, whatever the reason its mempool gave.
    pub offers_missed_gate: u64,
    /// Acknowledged transactions not on the ledger that no validator ever
    /// admitted from gossip (the rest reached one, but no block took them
    /// in time).
    pub not_on_ledger_never_reached_a_validator: u64,
    /// Refused at submission, by "kind reason".
    pub refused: BTreeMap<String, u64>,
    pub unanswered: u64,
    pub skipped_node_down: u64,
    /// Heights at which some node's block differs from the reference chain.
    pub forks: u64,
    pub final_height: u64,
    pub final_state_root: String,
    /// From an interval's gate closure until a node committed its clearing,
    /// simulated ms: every node, and the validators alone.
    pub clearing_after_gate_closure_ms_p50: u64,
    pub clearing_after_gate_closure_ms_p99: u64,
    pub clearing_after_gate_closure_validators_ms_p50: u64,
    pub clearing_after_gate_closure_validators_ms_p99: u64,
    pub validator_cost: RoleCost,
    pub household_node_cost: RoleCost,
    pub network_messages_sent: u64,
    pub network_messages_lost: u64,
    pub network_messages_duplicated: u64,
    pub network_messages_reordered: u64,
    pub network_messages_cut: u64,
    pub proposals_refused_for_time: u64,
    pub proposals_refused_invalid: u64,
    pub flood: Option<FloodReport>,
    pub checks: Vec<Check>,
    /// Problems that stopped the run or a node (none in a passing run).
    pub problems: Vec<String>,
    /// The command that reproduces this run.
    pub command: String,
}

/// The nearest-rank percentile `p` of `values`.
pub fn percentile(values: &[u64], p: u64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (p * sorted.len() as u64).div_ceil(100).max(1);
    sorted[usize::try_from(rank - 1).unwrap_or(0).min(sorted.len() - 1)]
}

/// At most this many examples in a check's detail.
const EXAMPLES_MAX: usize = 5;

/// Checks the world at the end of a run and reports.
pub fn report(world: &World, command: String) -> Report {
    let config = &world.config;
    let community = world.genesis.community_id;
    let mut checks = Vec::new();
    let mut report = Report {
        seed: config.seed,
        households: config.households,
        validators: config.validators,
        household_nodes: config.household_nodes,
        intervals: config.intervals,
        faults: faults_text(&config.faults),
        cpu_slowdown: config.cpu_slowdown,
        faults_applied: world.planned.iter().map(|planned| describe(world, planned)).collect(),
        offers_per_interval: world.ladder,
        interval_ms: config.market.interval_ms,
        rounds_timed_out: world.sequencer.rounds_timed_out,
        problems: world.problems.clone(),
        command,
        ..Report::default()
    };
    if let Some(trading) = &world.trading {
        report.first_interval = trading.first_interval;
        report.last_interval = trading.last_interval;
    }

    // The reference chain: the validator that is up with the highest
    // height (the first of them on a tie).
    let reference = (0..config.validators as usize)
        .filter(|node| world.nodes[*node].is_up())
        .max_by_key(|node| (world.nodes[*node].height(), std::cmp::Reverse(*node)));
    let Some(reference) = reference.and_then(|node| world.nodes[node].core.as_ref().map(|core| (node, core)))
    else {
        checks.push(Check::new("a validator is up at the end", false, "every validator is down".into()));
        return finish(report, checks);
    };
    let (reference_node, reference_core) = reference;
    let store = reference_core.store();
    let height = reference_core.state().height;
    report.final_height = height;
    report.blocks = height;
    report.final_state_root = reference_core.state().root(&community).to_string();
    let mut hashes = Vec::with_capacity(usize::try_from(height).unwrap_or(0));
    let mut roots = Vec::with_capacity(hashes.capacity());
    let mut on_ledger: BTreeSet<Hash> = BTreeSet::new();
    for block_height in 1..=height {
        let Some(block) = store.block(block_height).ok().flatten() else { break };
        hashes.push(block.block.header.hash());
        roots.push(block.block.header.state_root);
        on_ledger.extend(block.block.transactions.iter().map(|tx| tx.id(&community)));
    }
    report.transactions_in_blocks = on_ledger.len() as u64;
    (report.intervals_cleared, report.settlements, report.trades) = market_receipts(reference_core);

    // Same chain and state root on every node that is up: each reached the
    // height at which the last interval had settled, holds the reference's
    // blocks up to its own height and the state root the reference's block
    // at that height commits to.
    let target = world.drain_target.unwrap_or(height).min(height);
    let mut problems = Vec::new();
    let mut fork_heights = BTreeSet::new();
    for (node, state) in world.nodes.iter().enumerate() {
        let Some(core) = state.core.as_ref() else { continue };
        let node_height = core.state().height;
        if node_height < target {
            problems.push(format!(
                "{} is at height {node_height}, below {target}, where the last interval had settled",
                state.name
            ));
        }
        for block_height in 1..=node_height.min(height) {
            let index = usize::try_from(block_height - 1).unwrap_or(usize::MAX);
            let hash = core.store().block(block_height).ok().flatten().map(|block| block.block.header.hash());
            if hash != hashes.get(index).copied() {
                fork_heights.insert(block_height);
                problems.push(format!("{} has another block at height {block_height}", state.name));
                break;
            }
        }
        if node_height >= 1 && node_height <= height {
            let expected = roots[usize::try_from(node_height - 1).unwrap_or(0)];
            if core.state().root(&community) != expected {
                problems.push(format!("{} has another state root at height {node_height}", state.name));
            }
        }
        let _ = node;
    }
    report.forks = fork_heights.len() as u64;
    let up = world.nodes.iter().filter(|node| node.is_up()).count();
    let detail = if problems.is_empty() {
        format!(
            "{up} nodes at height ≥ {target} (the reference {} at {height}), each with the reference's blocks and state root at its height",
            world.nodes[reference_node].name
        )
    } else {
        let count = problems.len();
        problems.truncate(EXAMPLES_MAX);
        format!("{count} problems: {}", problems.join("; "))
    };
    checks.push(Check::new("every node has the same chain and state root", problems.is_empty(), detail));

    account_transactions(world, &on_ledger, &mut report, &mut checks);

    // The export of the reference validator's store passes the audit (every
    // certificate, signature and block re-executed, the conservation
    // invariants asserted).
    let mut export = Vec::new();
    let audit = std::panic::catch_unwind(AssertUnwindSafe(|| {
        export_store(store as &dyn Store, &mut export).map_err(|error| error.to_string())?;
        audit_export(&export[..], |_| ()).map_err(|error| error.to_string())
    }));
    let name = "the exported ledger passes the audit (certificates, signatures, re-execution, invariants)";
    checks.push(match audit {
        Ok(Ok(audit)) => {
            let passed = audit.passed() && audit.executed_height == height;
            let mut detail = format!(
                "{} blocks, {} transactions, {} signatures verified, re-executed to height {}, {} findings",
                audit.blocks,
                audit.transactions,
                audit.signatures_verified,
                audit.executed_height,
                audit.findings.len() as u64 + audit.findings_omitted
            );
            for finding in audit.findings.iter().take(EXAMPLES_MAX) {
                let _ = write!(detail, "; {finding}");
            }
            Check::new(name, passed, detail)
        }
        Ok(Err(error)) => Check::new(name, false, format!("the export could not be audited: {error}")),
        Err(_) => Check::new(name, false, "the audit panicked (an invariant broke)".into()),
    });

    // Trades need offers that cross: a street of ten or more households
    // without faults always has some, but one whose household nodes are
    // crashed, cut off or skewed much of the time may not (a liveness
    // figure then, not a check); the market must still clear and settle.
    let traded = report.settlements > 0
        && report.intervals_cleared > 0
        && (config.households < 10 || !config.faults.is_empty() || report.trades > 0);
    checks.push(Check::new(
        "the community traded and settled",
        traded,
        format!(
            "{} intervals cleared with {} trades; {} intervals settled",
            report.intervals_cleared, report.trades, report.settlements
        ),
    ));

    if let Some(flood) = &world.flood {
        let banned_by: Vec<String> =
            flood.banned_by.iter().map(|node| world.nodes[*node].name.clone()).collect();
        let passed = flood.sent > 0 && flood.accepted == 0 && !banned_by.is_empty();
        checks.push(Check::new(
            "invalid transactions rejected and the flooding peer banned",
            passed,
            format!(
                "{} sent, {} accepted, banned by {}; {:?}",
                flood.sent,
                flood.accepted,
                if banned_by.is_empty() { "nobody".to_string() } else { banned_by.join(", ") },
                flood.verdicts
            ),
        ));
        report.flood = Some(FloodReport {
            sent: flood.sent,
            accepted: flood.accepted,
            refused_by_ban: flood.refused_by_ban,
            banned_by,
            verdicts: flood.verdicts.clone(),
        });
    }

    costs(world, &mut report);
    finish(report, checks)
}

fn finish(mut report: Report, mut checks: Vec<Check>) -> Report {
    let detail = if report.problems.is_empty() { "none".to_string() } else { report.problems.join("; ") };
    checks.push(Check::new("the run ended without a problem", report.problems.is_empty(), detail));
    report.passed = checks.iter().all(|check| check.passed);
    report.checks = checks;
    report
}

/// What became of every acknowledged transaction.
fn account_transactions(
    world: &World,
    on_ledger: &BTreeSet<Hash>,
    report: &mut Report,
    checks: &mut Vec<Check>,
) {
    let journal = &world.journal;
    report.transactions_acknowledged = journal.acknowledged.len() as u64;
    report.refused = journal.refused.clone();
    report.unanswered = journal.unanswered;
    report.skipped_node_down = journal.skipped_node_down;
    let mut examples = Vec::new();
    for (id, acknowledged) in &journal.acknowledged {
        let offer = acknowledged.kind == "offer";
        report.offers_acknowledged += u64::from(offer);
        if on_ledger.contains(id) {
            report.transactions_committed += 1;
            continue;
        }
        report.offers_missed_gate += u64::from(offer);
        report.not_on_ledger_never_reached_a_validator +=
            u64::from(!world.reached_validator.contains(&acknowledged.message_id));
        let drops = journal.dropped.get(id);
        // The acknowledging node's reason first: its mempool promised it.
        let reason = drops.and_then(|drops| {
            drops
                .iter()
                .find(|drop| drop.node == acknowledged.node)
                .or_else(|| drops.first())
                .map(|drop| drop.reason.as_str())
        });
        if let Some(reason) = reason {
            *report.transactions_dropped_with_reason.entry(reason.to_string()).or_default() += 1;
            continue;
        }
        if journal
            .crashes
            .iter()
            .any(|(node, at_us)| *node == acknowledged.node && *at_us >= acknowledged.acknowledged_us)
        {
            report.transactions_lost_with_crashed_node += 1;
            continue;
        }
        report.transactions_lost += 1;
        if examples.len() < EXAMPLES_MAX {
            let waiting: Vec<&str> = world
                .nodes
                .iter()
                .filter(|node| node.core.as_ref().is_some_and(|core| core.mempool().contains(id)))
                .map(|node| node.name.as_str())
                .collect();
            examples.push(format!(
                "{} {id} (household {:?}, interval {:?}) acknowledged by {} at {} ms, waiting at [{}]",
                acknowledged.kind,
                acknowledged.household,
                acknowledged.interval,
                world.nodes[acknowledged.node].name,
                acknowledged.acknowledged_us / 1_000,
                waiting.join(", ")
            ));
        }
    }
    let dropped: u64 = report.transactions_dropped_with_reason.values().sum();
    let mut detail = format!(
        "{} acknowledged: {} on the ledger, {dropped} dropped with a reason {:?}, {} lost with a crashed node, {} lost",
        report.transactions_acknowledged,
        report.transactions_committed,
        report.transactions_dropped_with_reason,
        report.transactions_lost_with_crashed_node,
        report.transactions_lost
    );
    if !examples.is_empty() {
        let _ = write!(detail, ": {}", examples.join(" | "));
    }
    checks.push(Check::new(
        "every acknowledged transaction is on the ledger or was dropped with a reason",
        report.transactions_lost == 0 && report.transactions_lost_with_crashed_node == 0,
        detail,
    ));
}

/// Messages, bytes and modelled CPU per node, clearing latency.
fn costs(world: &World, report: &mut Report) {
    let validators = world.config.validators as usize;
    let mut all = Vec::new();
    let mut of_validators = Vec::new();
    for ((node, interval), latency_ms) in &world.clearings {
        let in_trading = world
            .trading
            .as_ref()
            .is_some_and(|trading| (trading.first_interval..=trading.last_interval).contains(interval));
        if in_trading {
            all.push(*latency_ms);
            if *node < validators {
                of_validators.push(*latency_ms);
            }
        }
    }
    report.clearing_after_gate_closure_ms_p50 = percentile(&all, 50);
    report.clearing_after_gate_closure_ms_p99 = percentile(&all, 99);
    report.clearing_after_gate_closure_validators_ms_p50 = percentile(&of_validators, 50);
    report.clearing_after_gate_closure_validators_ms_p99 = percentile(&of_validators, 99);

    let stats = &world.network.stats;
    report.network_messages_sent = stats.sent;
    report.network_messages_lost = stats.lost;
    report.network_messages_duplicated = stats.duplicated;
    report.network_messages_reordered = stats.reordered;
    report.network_messages_cut = stats.cut;
    report.proposals_refused_for_time =
        world.nodes.iter().map(|node| node.stats.proposals_refused_time).sum();
    report.proposals_refused_invalid =
        world.nodes.iter().map(|node| node.stats.proposals_refused_invalid).sum();

    let Some(trading) = &world.trading else { return };
    let Some(at_end) = &trading.stats_at_end else { return };
    let committed = trading.committed_at_end.saturating_sub(trading.committed_at_start);
    report.transactions_committed_during_trading = committed;
    let span_us = at_end_span(world).max(1);
    let intervals = world.config.intervals.max(1);
    let during: Vec<NodeStats> =
        at_end.iter().zip(&trading.stats_at_start).map(|(end, start)| end.since(start)).collect();
    let role = |nodes: &[NodeStats]| -> RoleCost {
        let count = nodes.len() as u64;
        if count == 0 {
            return RoleCost::default();
        }
        let sum = |field: fn(&NodeStats) -> u64| nodes.iter().map(field).sum::<u64>();
        let cpu = sum(|stats| stats.cpu_us);
        RoleCost {
            nodes: count,
            messages_sent_per_interval: sum(|stats| stats.messages_sent) / count / intervals,
            bytes_sent_per_interval: sum(|stats| stats.bytes_sent) / count / intervals,
            messages_received_per_interval: sum(|stats| stats.messages_received) / count / intervals,
            bytes_received_per_interval: sum(|stats| stats.bytes_received) / count / intervals,
            cpu_us_per_transaction: cpu / count / committed.max(1),
            cpu_busy_per_mille: cpu * 1_000 / count / span_us,
            cpu_busy_per_mille_max: nodes
                .iter()
                .map(|stats| stats.cpu_us * 1_000 / span_us)
                .max()
                .unwrap_or(0),
            gossip_dropped_queue_full: sum(|stats| stats.gossip_refused_full) / count,
            gossip_dropped_timeout: sum(|stats| stats.gossip_expired) / count,
            gossip_duplicates: sum(|stats| stats.duplicates) / count,
            gossip_publish_failed: sum(|stats| stats.publish_failed) / count,
            gossip_forward_failed: sum(|stats| stats.forward_failed) / count,
            verdicts: BTreeMap::new(),
        }
    };
    let split = validators.min(during.len());
    report.validator_cost = role(&during[..split]);
    report.household_node_cost = role(&during[split..]);
    let verdicts = |nodes: &[crate::node::SimNode]| {
        let mut sum: BTreeMap<String, u64> = BTreeMap::new();
        for node in nodes {
            for (key, count) in &node.verdicts {
                *sum.entry(key.clone()).or_default() += count;
            }
        }
        sum
    };
    report.validator_cost.verdicts = verdicts(&world.nodes[..split]);
    report.household_node_cost.verdicts = verdicts(&world.nodes[split..]);
}

/// How long the trading phase lasted, µs.
fn at_end_span(world: &World) -> u64 {
    world.trading.as_ref().map_or(0, |trading| trading.end_us.saturating_sub(trading.start_us))
}

/// A planned fault in words.
fn describe(world: &World, planned: &Planned) -> String {
    let name = |node: &NodeId| world.nodes.get(*node).map_or("?", |node| node.name.as_str()).to_string();
    let seconds = |us: u64| format!("{}.{:03} s", us / 1_000_000, us / 1_000 % 1_000);
    match planned {
        Planned::Crash { node, at_us, down_us } => {
            format!("crash {} at {}, restarted {} later", name(node), seconds(*at_us), seconds(*down_us))
        }
        Planned::Partition { group, at_us, duration_us } => {
            let names: Vec<String> = group.iter().map(name).collect();
            format!("partition [{}] at {} for {}", names.join(", "), seconds(*at_us), seconds(*duration_us))
        }
        Planned::Skew { node, skew_ms } => format!("skew {} by {skew_ms} ms", name(node)),
        Planned::Flood { first_target, at_us, duration_us, rate_per_s } => format!(
            "flood {rate_per_s}/s from {} for {}, first at {}",
            seconds(*at_us),
            seconds(*duration_us),
            name(first_target)
        ),
    }
}

/// The report as text: a summary, then the checks.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gridshare-sim: seed {}, {} households on {} household nodes, {} validators, {} intervals of {} ms (offers per interval {}), CPU costs ×{}, faults [{}]",
        report.seed,
        report.households,
        report.household_nodes,
        report.validators,
        report.intervals,
        report.interval_ms,
        report.offers_per_interval,
        report.cpu_slowdown,
        report.faults
    );
    for fault in &report.faults_applied {
        let _ = writeln!(out, "  fault         {fault}");
    }
    let _ = writeln!(
        out,
        "  chain         {} blocks ({} rounds timed out), state root {}",
        report.blocks, report.rounds_timed_out, report.final_state_root
    );
    let _ = writeln!(
        out,
        "  market        {} intervals cleared, {} trades, {} intervals settled",
        report.intervals_cleared, report.trades, report.settlements
    );
    let _ = writeln!(
        out,
        "  transactions  {} acknowledged: {} committed, {} dropped with a reason {:?}, {} lost with a crashed node, {} lost; {} offers acknowledged, {} missed their gate; {} of those not on the ledger never reached a validator",
        report.transactions_acknowledged,
        report.transactions_committed,
        report.transactions_dropped_with_reason.values().sum::<u64>(),
        report.transactions_dropped_with_reason,
        report.transactions_lost_with_crashed_node,
        report.transactions_lost,
        report.offers_acknowledged,
        report.offers_missed_gate,
        report.not_on_ledger_never_reached_a_validator
    );
    if !report.refused.is_empty() || report.unanswered > 0 || report.skipped_node_down > 0 {
        let _ = writeln!(
            out,
            "  refused       {:?}; {} unanswered, {} not sent (node down)",
            report.refused, report.unanswered, report.skipped_node_down
        );
    }
    let _ = writeln!(
        out,
        "  clearing      after gate closure p50 {} ms, p99 {} ms (validators {} / {} ms)",
        report.clearing_after_gate_closure_ms_p50,
        report.clearing_after_gate_closure_ms_p99,
        report.clearing_after_gate_closure_validators_ms_p50,
        report.clearing_after_gate_closure_validators_ms_p99
    );
    for (role, cost) in
        [("validator", &report.validator_cost), ("household node", &report.household_node_cost)]
    {
        let _ = writeln!(
            out,
            "  per {role:<14} {} msgs / {} bytes sent and {} / {} received per interval; CPU {} µs per transaction, busy {}‰ (max {}‰); gossip dropped {} (queue full) + {} (timeout), {} duplicates, {} + {} not queued (publish + forward); verdicts {:?}",
            cost.messages_sent_per_interval,
            cost.bytes_sent_per_interval,
            cost.messages_received_per_interval,
            cost.bytes_received_per_interval,
            cost.cpu_us_per_transaction,
            cost.cpu_busy_per_mille,
            cost.cpu_busy_per_mille_max,
            cost.gossip_dropped_queue_full,
            cost.gossip_dropped_timeout,
            cost.gossip_duplicates,
            cost.gossip_publish_failed,
            cost.gossip_forward_failed,
            cost.verdicts
        );
    }
    let _ = writeln!(
        out,
        "  network       {} messages sent, {} lost, {} duplicated, {} reordered, {} cut; proposals refused {} for their time, {} as invalid",
        report.network_messages_sent,
        report.network_messages_lost,
        report.network_messages_duplicated,
        report.network_messages_reordered,
        report.network_messages_cut,
        report.proposals_refused_for_time,
        report.proposals_refused_invalid
    );
    if let Some(flood) = &report.flood {
        let _ = writeln!(
            out,
            "  flood         {} sent, {} accepted, {} refused by a ban, banned by [{}]",
            flood.sent,
            flood.accepted,
            flood.refused_by_ban,
            flood.banned_by.join(", ")
        );
    }
    let _ = writeln!(out, "Checks:");
    for check in &report.checks {
        let _ = writeln!(
            out,
            "  [{}] {}: {}",
            if check.passed { "ok" } else { "FAILED" },
            check.name,
            check.detail
        );
    }
    let _ = writeln!(out, "{}", if report.passed { "PASSED" } else { "FAILED" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[7], 99), 7);
        let values: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&values, 50), 50);
        assert_eq!(percentile(&values, 99), 99);
        assert_eq!(percentile(&values, 100), 100);
    }
}
