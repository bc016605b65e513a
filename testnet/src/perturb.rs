//! The perturbations of the manifest, each on its own thread at its time:
//! kill and restart, pause and resume, disconnect, a restart with a skewed
//! clock, and a household flooding its node with invalid transactions
//! (garbage bytes, text that is not hex, bad signatures, replays of its own
//! committed transactions), and the DSO limiting a zone. Each fault is logged with when it started and
//! ended and what went wrong applying it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gridshare_api::TransactionState;
use gridshare_api::client::{ClientError, Submission};
use gridshare_ledger::genesis::ZoneLimits;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::testkit::SplitMix64;
use gridshare_ledger::tx::{MeterReading, Offer, Side, SignedMeterReading, SignedTx, Tx};

use crate::agent::{Market, sleep_until, verdict};
use crate::journal::{Acknowledged, FloodOutcome, Journal, now_ms};
use crate::manifest::{Manifest, Perturbation};
use crate::nodes::{Node, Role};

/// How often a restart is tried before the fault is reported as failed.
const START_ATTEMPTS: u32 = 3;

/// What became of one perturbation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FaultLog {
    pub fault: String,
    /// Seconds after trading started.
    pub applied_at_s: Option<u64>,
    pub healed_at_s: Option<u64>,
    /// Empty when it went as planned.
    pub problems: Vec<String>,
}

/// Everything a perturbation thread needs.
#[derive(Debug, Clone)]
pub struct Context {
    pub nodes: Arc<Vec<Arc<Node>>>,
    pub journal: Arc<Journal>,
    pub market: Arc<Market>,
    pub stop: Arc<AtomicBool>,
    /// When trading started, in ms since the epoch.
    pub start_ms: u64,
    /// Each household's account and meter key, for floods.
    pub accounts: Arc<Vec<(Keypair, Keypair)>>,
    /// The DSO's key, for zone limits.
    pub dso: Arc<Keypair>,
    pub manifest: Manifest,
}

impl Context {
    fn seconds_since_start(&self) -> u64 {
        now_ms().saturating_sub(self.start_ms) / 1_000
    }

    fn node(&self, name: &str) -> Option<(usize, Arc<Node>)> {
        self.nodes.iter().position(|node| node.name == name).map(|index| (index, self.nodes[index].clone()))
    }
}

/// Restarts `node`, a few attempts; records the chain's height then (the
/// highest of the other validators that are up, or the node's own).
fn restart(context: &Context, node: &Node, log: &mut FaultLog) {
    for attempt in 1..=START_ATTEMPTS {
        match node.start() {
            Ok(()) => {
                node.restarts.fetch_add(1, Ordering::Relaxed);
                let height = context
                    .nodes
                    .iter()
                    .filter(|other| other.role == Role::Validator && other.name != node.name && other.is_up())
                    .filter_map(|validator| validator.api().status().ok().map(|status| status.height))
                    .max()
                    .or_else(|| node.api().status().ok().map(|status| status.height))
                    .unwrap_or(0);
                context.journal.restarted_at_height(height);
                return;
            }
            Err(error) => {
                log.problems.push(format!("restart attempt {attempt}: {error}"));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Stops `node` with SIGTERM and restarts it with its clock `skew_ms` off.
fn restart_skewed(context: &Context, index: usize, node: &Node, skew_ms: i64, log: &mut FaultLog) {
    context.journal.ended_by_testnet(index, now_ms());
    if !node.stop() {
        log.problems.push("the node did not stop cleanly on SIGTERM".into());
    }
    node.set_clock_skew_ms(skew_ms);
    restart(context, node, log);
}

/// Applies one perturbation at its time (a clock skew at 0 s was applied
/// when the node started) and returns its log.
pub fn apply(context: &Context, perturbation: &Perturbation) -> FaultLog {
    let mut log = FaultLog {
        fault: perturbation.to_string(),
        applied_at_s: None,
        healed_at_s: None,
        problems: Vec::new(),
    };
    if let Perturbation::ClockSkew { at_s: 0, duration_s: None, .. } = perturbation {
        log.applied_at_s = Some(0);
        log.healed_at_s = Some(0);
        return log;
    }
    if !sleep_until(context.start_ms + perturbation.at_s() * 1_000, &context.stop) {
        log.problems.push("the run stopped before the fault's time".into());
        return log;
    }
    log.applied_at_s = Some(context.seconds_since_start());
    let node = perturbation.node().and_then(|name| context.node(name));
    match (perturbation, node) {
        (Perturbation::Kill { down_s, .. }, Some((index, node))) => {
            context.journal.ended_by_testnet(index, now_ms());
            node.kill();
            sleep_until(now_ms() + down_s * 1_000, &context.stop);
            restart(context, &node, &mut log);
        }
        (Perturbation::Pause { duration_s, .. }, Some((_, node))) => {
            if let Err(error) = node.pause() {
                log.problems.push(error.to_string());
            }
            sleep_until(now_ms() + duration_s * 1_000, &context.stop);
            if let Err(error) = node.resume() {
                log.problems.push(error.to_string());
            }
        }
        (Perturbation::Disconnect { duration_s, .. }, Some((_, node))) => {
            let isolated = node.admin_token().map_err(|error| error.to_string()).and_then(|token| {
                node.api().isolate(duration_s * 1_000, &token).map_err(|error| error.to_string())
            });
            if let Err(problem) = isolated {
                log.problems.push(format!("isolate: {problem}"));
            }
            sleep_until(now_ms() + duration_s * 1_000, &context.stop);
        }
        (Perturbation::ClockSkew { at_s, skew_ms, duration_s, .. }, Some((index, node))) => {
            // At 0 s the node started skewed.
            if *at_s > 0 {
                restart_skewed(context, index, &node, *skew_ms, &mut log);
            }
            if let Some(duration_s) = duration_s {
                sleep_until(context.start_ms + (at_s + duration_s) * 1_000, &context.stop);
                restart_skewed(context, index, &node, 0, &mut log);
            }
        }
        (Perturbation::Flood { household, duration_s, rate_per_s, .. }, _) => {
            flood(context, *household, *duration_s, *rate_per_s, &mut log);
        }
        (Perturbation::ZoneLimits { zone, import_wh_max, export_wh_max, intervals, .. }, _) => {
            let limits = ZoneLimits { import_wh_max: *import_wh_max, export_wh_max: *export_wh_max };
            if let Err(problem) = zone_limits(context, zone, limits, *intervals) {
                log.problems.push(problem.to_string());
            }
        }
        (_, None) => log.problems.push("no such node".into()),
    }
    log.healed_at_s = Some(context.seconds_since_start());
    log
}

/// The DSO's `SetZoneLimits` for `zone`, from the first interval still
/// open for offers when the transaction reaches a block (an interval of
/// margin), submitted to the first validator that is up and journaled as
/// acknowledged, so that the end checks find it on the ledger.
/// Why the DSO's zone limits did not reach a node.
#[derive(Debug, thiserror::Error)]
enum ZoneLimitsError {
    #[error("no validator is up")]
    NoValidator,
    #[error("the DSO's nonce: {0}")]
    Nonce(ClientError),
    #[error("submitting the zone limits: {0}")]
    Submit(ClientError),
    #[error("the zone limits were refused: HTTP {status} {code}: {message}")]
    Refused { status: u16, code: String, message: String },
}

fn zone_limits(
    context: &Context,
    zone: &str,
    limits: ZoneLimits,
    intervals: u32,
) -> Result<(), ZoneLimitsError> {
    let genesis = &context.market.genesis;
    let (index, node) = context
        .nodes
        .iter()
        .enumerate()
        .find(|(_, node)| node.role == Role::Validator && node.is_up())
        .ok_or(ZoneLimitsError::NoValidator)?;
    let first_interval = genesis.first_open_interval(now_ms() + genesis.market.interval_length_ms);
    let dso = context.dso.public();
    let last = node.api().last_nonce(&dso).map_err(ZoneLimitsError::Nonce)?;
    let tx = Tx::SetZoneLimits {
        dso,
        nonce: last.unwrap_or(0) + 1,
        zone: zone.to_string(),
        first_interval,
        intervals,
        limits,
    };
    let tx = SignedTx::sign(tx, &context.dso, &genesis.community_id);
    let sent_ms = now_ms();
    match node.api().submit(&tx).map_err(ZoneLimitsError::Submit)? {
        Submission::Admitted { id } => {
            context.journal.acknowledged(Acknowledged {
                id: id.to_string(),
                kind: tx.tx.kind(),
                household: None,
                node: index,
                interval: Some(first_interval),
                sent_ms,
                acknowledged_ms: now_ms(),
            });
            Ok(())
        }
        Submission::Refused { status, code, message, .. } => {
            Err(ZoneLimitsError::Refused { status, code: code.to_string(), message })
        }
    }
}

/// Household `household` sends invalid transactions to its node at
/// `rate_per_s`, cycling through four kinds.
fn flood(context: &Context, household: u32, duration_s: u64, rate_per_s: u32, log: &mut FaultLog) {
    let node = context.nodes[context.manifest.node_of_household(household)].clone();
    let (account, meter) = &context.accounts[household as usize];
    let mut random = SplitMix64(context.market.seed ^ 0xF100D);
    let period_ms = (1_000 / u64::from(rate_per_s)).max(1);
    let end_ms = now_ms() + duration_s * 1_000;
    let mut turn = 0_u64;
    let mut next_ms = now_ms();
    while now_ms() < end_ms && !context.stop.load(Ordering::Relaxed) {
        // The fourth kind replays a committed transaction when there is one,
        // else sends a bad signature like the third.
        let replayed = if turn % 4 == 3 { replay(context, household, &node, turn) } else { None };
        let (sent, hex_text) = match (turn % 4, replayed) {
            (_, Some(tx)) => ("replay", hex::encode(gridshare_ledger::encoding::to_bytes(&tx))),
            (0, None) => {
                let length = usize::try_from(random.between(8, 300)).unwrap_or(8);
                let bytes: Vec<u8> = (0..length).map(|_| random.next_u64().to_le_bytes()[0]).collect();
                ("garbage", hex::encode(bytes))
            }
            (1, None) => {
                ("not_hex", format!("zz{}", "g".repeat(usize::try_from(random.between(1, 64)).unwrap_or(1))))
            }
            (_, None) => (
                "bad_signature",
                hex::encode(gridshare_ledger::encoding::to_bytes(&bad_signature(
                    context,
                    account,
                    meter,
                    &mut random,
                ))),
            ),
        };
        let answer = if node.is_up() {
            match verdict(node.api().submit_hex(&hex_text)) {
                Some(Submission::Admitted { .. }) => "202 admitted".to_string(),
                Some(refused @ Submission::Refused { status, .. }) => {
                    format!("{status} {}", refused.refusal_code().unwrap_or_default())
                }
                None => "no answer".to_string(),
            }
        } else {
            "node down".to_string()
        };
        context.journal.flood(FloodOutcome { sent, answer });
        turn += 1;
        next_ms += period_ms;
        if !sleep_until(next_ms, &context.stop) {
            break;
        }
    }
    if turn == 0 {
        log.problems.push("the flood sent nothing".into());
    }
}

/// A well-formed offer whose signature is not the account's (the meter
/// signed it): the node must refuse it as a bad signature.
fn bad_signature(context: &Context, account: &Keypair, meter: &Keypair, random: &mut SplitMix64) -> SignedTx {
    let market = &context.market;
    let community = &market.genesis.community_id;
    let interval = market.next_open_interval(now_ms() + 1_000);
    let reading = MeterReading {
        meter: meter.public(),
        interval: interval.saturating_sub(2),
        import_wh_total: 0,
        export_wh_total: 0,
    };
    let offer = Offer {
        account: account.public(),
        nonce: u64::MAX - random.between(0, 1 << 20),
        interval,
        side: Side::Sell,
        energy_wh: random.between(1, 1_000),
        price_micro_per_kwh: market.tariffs.feed_in_micro_per_kwh + 1,
        attestation: SignedMeterReading::sign(reading, meter, community),
    };
    SignedTx::sign(Tx::Offer(offer), meter, community)
}

/// One of the household's own transactions that is committed already.
fn replay(context: &Context, household: u32, node: &Node, turn: u64) -> Option<SignedTx> {
    let community = &context.market.genesis.community_id;
    for attempt in 0..4 {
        let tx = context.journal.replay_candidate(household, usize::try_from(turn + attempt).unwrap_or(0))?;
        let found = node.api().transaction(&tx.id(community));
        if found.is_ok_and(|found| {
            found.is_some_and(|found| matches!(found.state, TransactionState::Included { .. }))
        }) {
            return Some(tx);
        }
    }
    None
}
