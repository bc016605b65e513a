//! Faults: what `--faults LIST` names (each kind with a default intensity,
//! `KIND=N` for another) and the plan a seed makes of them: which node
//! crashes or is cut off, when and for how long, whose clock is off, when a
//! hostile peer floods. Timed faults get disjoint windows of the trading
//! phase, so at most one of them is in force at a time and a community of
//! four validators always has a quorum when no other fault hides one, and
//! a skewed validator is never also crashed or cut off.

use std::collections::BTreeSet;
use std::fmt;

use gridshare_households::profile::draw;

use crate::network::NodeId;
use crate::scheduler::TimeUs;

/// Random stream of the fault plan.
const STREAM_FAULTS: u64 = 900;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Messages lost, per mille (default 10).
    Loss,
    /// Messages delivered twice, per mille (default 20).
    Duplicate,
    /// Messages held back up to 20 ms so that later ones overtake them, per
    /// mille (default 100).
    Reorder,
    /// How many times a node or a group of household nodes is cut off from
    /// the rest for 3 to 8 s (default 2).
    Partition,
    /// How many times a node crashes and restarts 2 to 6 s later from its
    /// store, its mempool and queue lost (default 2).
    Crash,
    /// A validator's and a household node's clocks are off by this many
    /// ms, ahead or behind (default 7,000: beyond a validator's tolerance
    /// of 5 s).
    Skew,
    /// A hostile peer sends this many invalid transactions a second
    /// (garbage, bad signatures, replays) for a fifth of the trading phase,
    /// moving to another node each time one bans it (default 50).
    Flood,
    /// Each household offers this many times its ladder every interval, all
    /// at once (default 16): more than the validators can take in.
    Overload,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Loss,
        FaultKind::Duplicate,
        FaultKind::Reorder,
        FaultKind::Partition,
        FaultKind::Crash,
        FaultKind::Skew,
        FaultKind::Flood,
        FaultKind::Overload,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Loss => "loss",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Reorder => "reorder",
            FaultKind::Partition => "partition",
            FaultKind::Crash => "crash",
            FaultKind::Skew => "skew",
            FaultKind::Flood => "flood",
            FaultKind::Overload => "overload",
        }
    }

    pub fn default_intensity(self) -> u64 {
        match self {
            FaultKind::Loss => 10,
            FaultKind::Duplicate => 20,
            FaultKind::Reorder => 100,
            FaultKind::Partition | FaultKind::Crash => 2,
            FaultKind::Skew => 7_000,
            FaultKind::Flood => 50,
            FaultKind::Overload => 16,
        }
    }

    /// The largest intensity accepted.
    fn intensity_max(self) -> u64 {
        match self {
            FaultKind::Loss | FaultKind::Duplicate | FaultKind::Reorder => 1_000,
            FaultKind::Partition | FaultKind::Crash => 20,
            FaultKind::Skew => 600_000,
            FaultKind::Flood => 10_000,
            FaultKind::Overload => 64,
        }
    }
}

/// A fault of a run and its intensity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fault {
    pub kind: FaultKind,
    pub intensity: u64,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind.name(), self.intensity)
    }
}

/// Why `--faults` cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error(
        "--faults: no fault `{0}`; the faults are loss, duplicate, reorder, partition, crash, skew, flood, overload, or all"
    )]
    Unknown(String),
    #[error("--faults: `{0}` needs a whole number after `=`")]
    NotANumber(String),
    #[error("--faults: {kind} must be 1 to {max}, not {value}")]
    OutOfRange { kind: &'static str, value: u64, max: u64 },
    #[error("--faults: {0} is named twice")]
    Twice(&'static str),
}

/// The faults of `text`: comma-separated kinds, each optionally `=N`;
/// `all` is every kind at its default. Sorted by kind.
pub fn parse_faults(text: &str) -> Result<Vec<Fault>, FaultError> {
    let mut faults: Vec<Fault> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        if item == "all" {
            for kind in FaultKind::ALL {
                if faults.iter().any(|fault| fault.kind == kind) {
                    return Err(FaultError::Twice(kind.name()));
                }
                faults.push(Fault { kind, intensity: kind.default_intensity() });
            }
            continue;
        }
        let (name, value) = match item.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (item, None),
        };
        let kind = FaultKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| FaultError::Unknown(name.to_string()))?;
        let intensity = match value {
            None => kind.default_intensity(),
            Some(value) => value.parse::<u64>().map_err(|_| FaultError::NotANumber(item.to_string()))?,
        };
        if intensity == 0 || intensity > kind.intensity_max() {
            return Err(FaultError::OutOfRange {
                kind: kind.name(),
                value: intensity,
                max: kind.intensity_max(),
            });
        }
        if faults.iter().any(|fault| fault.kind == kind) {
            return Err(FaultError::Twice(kind.name()));
        }
        faults.push(Fault { kind, intensity });
    }
    faults.sort();
    Ok(faults)
}

/// The faults as the command line names them: `loss=10,crash=2`.
pub fn faults_text(faults: &[Fault]) -> String {
    faults.iter().map(Fault::to_string).collect::<Vec<_>>().join(",")
}

/// One timed or lasting fault of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Planned {
    /// `node` crashes at `at_us` and restarts `down_us` later.
    Crash { node: NodeId, at_us: TimeUs, down_us: TimeUs },
    /// `group` is cut off from the rest from `at_us` for `duration_us`.
    Partition { group: BTreeSet<NodeId>, at_us: TimeUs, duration_us: TimeUs },
    /// `node`'s clock is `skew_ms` off for the whole run.
    Skew { node: NodeId, skew_ms: i64 },
    /// The hostile peer floods from `at_us` for `duration_us`, starting at
    /// `first_target`.
    Flood { first_target: NodeId, at_us: TimeUs, duration_us: TimeUs, rate_per_s: u64 },
}

/// The nodes of a run, for planning.
#[derive(Clone, Copy, Debug)]
pub struct Nodes {
    pub validators: usize,
    pub household_nodes: usize,
}

/// The plan `seed` makes of `faults` over the trading phase
/// `start_us..end_us`.
pub fn plan(seed: u64, faults: &[Fault], nodes: Nodes, start_us: TimeUs, end_us: TimeUs) -> Vec<Planned> {
    let total = nodes.validators + nodes.household_nodes;
    let mut counter = 0_u64;
    let mut random = |low: u64, high: u64| {
        counter += 1;
        let value = draw(&[seed, STREAM_FAULTS, counter]);
        if high <= low { low } else { low + value % (high - low + 1) }
    };
    let intensity =
        |kind: FaultKind| faults.iter().find(|fault| fault.kind == kind).map(|fault| fault.intensity);
    let mut planned = Vec::new();
    // The skewed validator is not also crashed or cut off: two faulty
    // validators of four stop the chain.
    let mut skewed_validator = None;
    if let Some(skew) = intensity(FaultKind::Skew) {
        let validator = usize::try_from(random(0, nodes.validators as u64 - 1)).unwrap_or(0);
        let household_node =
            nodes.validators + usize::try_from(random(0, nodes.household_nodes as u64 - 1)).unwrap_or(0);
        for node in [validator, household_node] {
            let ahead = random(0, 1) == 1;
            let skew_ms = i64::try_from(skew).unwrap_or(i64::MAX);
            planned.push(Planned::Skew { node, skew_ms: if ahead { skew_ms } else { -skew_ms } });
        }
        if nodes.validators > 1 {
            skewed_validator = Some(validator);
        }
    }
    let crashes = intensity(FaultKind::Crash).unwrap_or(0);
    let partitions = intensity(FaultKind::Partition).unwrap_or(0);
    let timed = crashes + partitions;
    if timed > 0 && end_us > start_us {
        let slot_us = (end_us - start_us) / timed;
        // A validator skewed beyond the block-time tolerance refuses every
        // proposal and is refused as proposer: it is the one faulty
        // validator that fewer than seven tolerate, so no other validator
        // is also crashed or cut off then (that would stop the chain, as it
        // would a real community: not what these faults are for).
        let tolerated = nodes.validators.saturating_sub(1) / 3;
        let first_target = if skewed_validator.is_some() && tolerated <= 1 { nodes.validators } else { 0 };
        let targets: Vec<NodeId> =
            (first_target..total).filter(|node| Some(*node) != skewed_validator).collect();
        for number in 0..timed {
            let slot_start = start_us + number * slot_us;
            let longest_us = (slot_us * 3 / 4).max(1);
            let node = targets[usize::try_from(random(0, targets.len() as u64 - 1)).unwrap_or(0)];
            if number < crashes {
                let down_us = random(2_000_000, 6_000_000).min(longest_us);
                let at_us = slot_start + random(0, slot_us - down_us.min(slot_us)) / 2;
                planned.push(Planned::Crash { node, at_us, down_us });
            } else {
                let duration_us = random(3_000_000, 8_000_000).min(longest_us);
                let at_us = slot_start + random(0, slot_us - duration_us.min(slot_us)) / 2;
                // Half the time a group: the household nodes from one on.
                let group = if nodes.household_nodes > 1 && random(0, 1) == 1 {
                    let first = nodes.validators + nodes.household_nodes / 2;
                    (first..total).collect()
                } else {
                    BTreeSet::from([node])
                };
                planned.push(Planned::Partition { group, at_us, duration_us });
            }
        }
    }
    if let Some(rate_per_s) = intensity(FaultKind::Flood) {
        let span_us = end_us.saturating_sub(start_us);
        let duration_us = (span_us / 5).max(1);
        let at_us = start_us + random(0, span_us - duration_us);
        let first_target = usize::try_from(random(0, total as u64 - 1)).unwrap_or(0);
        planned.push(Planned::Flood { first_target, at_us, duration_us, rate_per_s });
    }
    planned
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

    use super::*;

    #[test]
    fn faults_parse_with_defaults_intensities_and_all() {
        let faults = parse_faults("crash, loss=25,skew").unwrap();
        assert_eq!(faults_text(&faults), "loss=25,crash=2,skew=7000");
        assert_eq!(parse_faults("all").unwrap().len(), 8);
        assert!(parse_faults("").unwrap().is_empty());
        assert_eq!(parse_faults("lose"), Err(FaultError::Unknown("lose".into())));
        assert_eq!(parse_faults("loss=x"), Err(FaultError::NotANumber("loss=x".into())));
        assert_eq!(
            parse_faults("loss=1001"),
            Err(FaultError::OutOfRange { kind: "loss", value: 1_001, max: 1_000 })
        );
        assert_eq!(parse_faults("crash,crash=3"), Err(FaultError::Twice("crash")));
    }

    #[test]
    fn a_seed_plans_the_same_faults_in_disjoint_windows_within_the_trading_phase() {
        let faults = parse_faults("all").unwrap();
        let nodes = Nodes { validators: 4, household_nodes: 6 };
        let (start_us, end_us) = (10_000_000, 70_000_000);
        let planned = plan(5, &faults, nodes, start_us, end_us);
        assert_eq!(planned, plan(5, &faults, nodes, start_us, end_us));
        assert_ne!(planned, plan(6, &faults, nodes, start_us, end_us));
        let mut windows: Vec<(TimeUs, TimeUs)> = planned
            .iter()
            .filter_map(|fault| match fault {
                Planned::Crash { at_us, down_us, .. } => Some((*at_us, at_us + down_us)),
                Planned::Partition { at_us, duration_us, .. } => Some((*at_us, at_us + duration_us)),
                _ => None,
            })
            .collect();
        assert_eq!(windows.len(), 4);
        windows.sort();
        assert!(windows.windows(2).all(|pair| pair[0].1 <= pair[1].0), "{windows:?}");
        assert!(windows.iter().all(|(from, to)| *from >= start_us && *to <= end_us), "{windows:?}");
        let skewed: Vec<(NodeId, i64)> = planned
            .iter()
            .filter_map(|fault| match fault {
                Planned::Skew { node, skew_ms } => Some((*node, *skew_ms)),
                _ => None,
            })
            .collect();
        assert_eq!(skewed.len(), 2);
        assert!(skewed[0].0 < 4 && skewed[1].0 >= 4 && skewed.iter().all(|(_, skew)| skew.abs() == 7_000));
        for fault in &planned {
            if let Planned::Crash { node, .. } = fault {
                assert_ne!(*node, skewed[0].0, "the skewed validator is not crashed too");
            }
        }
    }
}
