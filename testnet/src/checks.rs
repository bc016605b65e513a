//! The end checks of a testnet run: no unexpected exits, one chain and
//! state root on every node, every certificate, the audit of the export,
//! the flood refused, and every acknowledged transaction accounted for.
//!
//! The rule for acknowledged transactions: each one must be on the ledger,
//! or the node that acknowledged it must say, at `GET /v1/transactions/{id}`,
//! that it dropped it from its mempool, for a reason that time or the
//! signer's own other transactions explain (`interval_closed`: its gate
//! passed while it waited; `stale_nonce` or `reading_not_increasing`: a
//! later transaction of the same signer was committed first; `nonce_gap`,
//! where the ledger wants consecutive nonces: an earlier transaction of the
//! same signer was dropped, so this one skips ahead). A node keeps what it
//! acknowledged and what it dropped across restarts (`acknowledged.redb`),
//! so the rule holds for a node the testnet killed or restarted with a
//! skewed clock too; such a transaction is counted apart, as lost with a
//! restarted node, if the rule fails for it. Anything else, a transaction
//! still waiting at the end included, fails the check as well.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;

use gridshare_api::TransactionState;
use gridshare_api::client::ClientError;
use gridshare_ledger::Hash;
use gridshare_ledger::audit::audit_export;
use gridshare_ledger::genesis::ZoneLimits;

use crate::chain::{Chain, Drop};
use crate::journal::Snapshot;
use crate::nodes::Node;
use crate::report::{Check, Flood, Transactions};

/// Drop reasons the rule accepts for an acknowledged transaction.
const ACCEPTED_DROPS: [&str; 4] = ["interval_closed", "stale_nonce", "reading_not_increasing", "nonce_gap"];
/// At most this many examples are quoted in a check's detail.
const EXAMPLES_MAX: usize = 5;
/// Included transactions whose status is asked from the API.
const STATUS_SAMPLES: usize = 50;

/// No node process ended unless the testnet ended it.
pub(crate) fn exits_check(nodes: &[Arc<Node>]) -> Check {
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

/// The flood's transactions were all refused.
pub(crate) fn flood_check(flood: &Flood) -> Check {
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
pub(crate) struct LiveChecks {
    pub(crate) checks: Vec<Check>,
    /// Acknowledged transactions not on the ledger: what the acknowledging
    /// node and the validator said about them.
    pub(crate) not_on_ledger: BTreeMap<String, NotOnLedger>,
}

/// What the nodes say about an acknowledged transaction that is not on the
/// ledger.
#[derive(Debug, Default)]
pub(crate) struct NotOnLedger {
    /// The acknowledging node's and the first validator's answers, in words.
    said: String,
    /// The reason the acknowledging node gives, if it says it dropped it.
    dropped_reason: Option<String>,
}

/// The heights compared on every node: the first, quarters, the last two
/// and the validator's height at each restart.
pub(crate) fn sample_heights(common: u64, restarts: &[u64]) -> Vec<u64> {
    let mut heights: BTreeSet<u64> =
        [1, common / 4, common / 2, common * 3 / 4, common.saturating_sub(1), common].into_iter().collect();
    heights
        .extend(restarts.iter().flat_map(|height| [*height, height + 1]).filter(|height| *height <= common));
    heights.into_iter().filter(|height| (1..=common).contains(height)).collect()
}

pub(crate) fn live_checks(
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
        let mut dropped_reason = None;
        for index in BTreeSet::from([0, ack.node]) {
            let answer = match ack.id.parse::<Hash>().map(|id| nodes[index].api().transaction(&id)) {
                Ok(Ok(Some(found))) => match found.state {
                    TransactionState::Pending => "pending".to_string(),
                    TransactionState::Included { .. } => "included".to_string(),
                    TransactionState::Dropped { reason, .. } => {
                        let answer = format!("dropped ({reason})");
                        if index == ack.node {
                            dropped_reason = Some(reason);
                        }
                        answer
                    }
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
        live.not_on_ledger.insert(ack.id.clone(), NotOnLedger { said: said.join(", "), dropped_reason });
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
pub(crate) fn certificate_check(chain: &Chain) -> Check {
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

/// The grid's limits held: in every clearing each zone's traded net export
/// is within the limits the receipt names, and those are the limits the
/// ledger says hold for the zone in that interval, the genesis's or the
/// DSO's latest `SetZoneLimits` for it (re-derived here from the
/// transactions, not from the state machine).
pub(crate) fn zones_check(chain: &Chain) -> Check {
    let genesis = &chain.genesis;
    let mut set: BTreeMap<(u64, usize), ZoneLimits> = BTreeMap::new();
    for change in &chain.zone_limits {
        let Some(zone) = genesis.zones.iter().position(|zone| zone.name == change.zone) else { continue };
        let last = change.first_interval.saturating_add(u64::from(change.intervals).saturating_sub(1));
        for interval in change.first_interval..=last {
            set.insert((interval, zone), change.limits);
        }
    }
    let mut problems = Vec::new();
    let (mut zone_intervals, mut congested, mut under_dso) = (0_u64, 0_u64, 0_u64);
    for (height, clearing) in &chain.clearings {
        if clearing.zones.len() != genesis.zones.len() {
            problems.push(format!(
                "the clearing of interval {} at height {height} lists {} zones",
                clearing.interval,
                clearing.zones.len()
            ));
            continue;
        }
        for (index, (zone, receipt)) in genesis.zones.iter().zip(&clearing.zones).enumerate() {
            zone_intervals += 1;
            let dso = set.get(&(clearing.interval, index));
            let expected = dso.copied().unwrap_or(zone.limits);
            under_dso += u64::from(dso.is_some());
            congested += u64::from(receipt.congested);
            let net = i128::from(receipt.net_export_wh);
            if receipt.limits != expected {
                problems.push(format!(
                    "zone {} in interval {} was cleared with {:?}, not its limits {expected:?}",
                    zone.name, clearing.interval, receipt.limits
                ));
            }
            if net > i128::from(expected.export_wh_max) || -net > i128::from(expected.import_wh_max) {
                problems.push(format!(
                    "zone {} in interval {} moved {net} Wh past its limits {expected:?}",
                    zone.name, clearing.interval
                ));
            }
        }
    }
    let detail = if problems.is_empty() {
        format!(
            "{} zones, {zone_intervals} zone-intervals cleared within their limits ({under_dso} under the DSO's {} changes), {congested} congested",
            genesis.zones.len(),
            chain.zone_limits.len()
        )
    } else {
        let count = problems.len();
        problems.truncate(EXAMPLES_MAX);
        format!("{count} problems: {}", problems.join("; "))
    };
    Check::new("no zone's flow passed its limits, the genesis's or the DSO's", problems.is_empty(), detail)
}

/// `gridshare_ledger::audit::audit_export` on the export: every link,
/// certificate and signature, every block re-executed (clearings,
/// settlements, receipts, state roots) with the conservation invariants
/// asserted after each block. An invariant broken panics in the state
/// machine; the panic is caught and fails the check.
pub(crate) fn audit_check(path: &Path, chain: &Chain, findings: &mut Vec<String>) -> Check {
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
pub(crate) fn transactions_check(
    chain: &Chain,
    snapshot: &Snapshot,
    drops: &BTreeMap<String, Vec<Drop>>,
    not_on_ledger: &BTreeMap<String, NotOnLedger>,
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
        let answer = not_on_ledger.get(&ack.id);
        if let Some(reason) = answer
            .and_then(|answer| answer.dropped_reason.as_deref())
            .filter(|reason| ACCEPTED_DROPS.contains(reason))
        {
            *accounted.dropped.entry(reason.to_string()).or_default() += 1;
            continue;
        }
        let found = drops.get(&ack.id);
        if snapshot.ended.iter().any(|(node, at_ms)| *node == ack.node && *at_ms >= ack.acknowledged_ms) {
            accounted.lost_with_restarted_node += 1;
        } else {
            accounted.unaccounted += 1;
        }
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
                answer.map_or("?", |answer| answer.said.as_str())
            ));
        }
    }
    let dropped: u64 = accounted.dropped.values().sum();
    let mut detail = format!(
        "{} acknowledged: {} on the ledger, {dropped} dropped with an accepted reason {:?}, {} lost with a restarted node, {} unaccounted",
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
            accounted.unaccounted == 0 && accounted.lost_with_restarted_node == 0,
            detail,
        ),
        accounted,
    )
}

pub(crate) fn flood_report(snapshot: &Snapshot) -> Flood {
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
pub(crate) fn transaction_findings(
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
             transaction when it admits it and sends it to its peers again, ever less often, while it waits; one \
             that the proposing validators could not take in time (down, paused, restarting, cut off, or finding \
             it early: a validator whose clock is behind refuses a meter reading as early) waits until a block \
             makes it inadmissible",
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
