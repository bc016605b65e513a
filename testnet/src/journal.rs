//! What the testnet saw, shared by its threads: every transaction a node
//! acknowledged (with when and where), every refusal by reason, and what
//! the event streams showed (when each block and each clearing was first
//! seen at each node). The end checks and the report read it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use gridshare_ledger::tx::{SignedTx, Tx};

/// Milliseconds since the Unix epoch from the system clock. The testnet
/// runs unskewed: it is the reference the perturbed nodes are measured
/// against.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// A transaction a node acknowledged with 202.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    pub id: String,
    pub kind: &'static str,
    pub household: Option<u32>,
    /// Index of the node that acknowledged it.
    pub node: usize,
    /// An offer's delivery interval or a reading's interval.
    pub interval: Option<u64>,
    pub sent_ms: u64,
    pub acknowledged_ms: u64,
}

/// One clearing as an event stream showed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClearingSeen {
    pub interval: u64,
    pub node: usize,
    pub seen_ms: u64,
    pub price_micro_per_kwh: Option<u64>,
    pub volume_wh: u64,
    pub trades: u64,
}

/// A flood submission's outcome.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FloodOutcome {
    /// What was sent: garbage, not_hex, bad_signature, replay.
    pub sent: &'static str,
    /// `202`, `400 bad_encoding`, `422 bad_signature`, `timeout`, ...
    pub answer: String,
}

#[derive(Debug, Default)]
struct Inner {
    acknowledged: Vec<Acknowledged>,
    refused: BTreeMap<String, u64>,
    /// Earliest time each height was seen on any node's event stream.
    block_seen_ms: BTreeMap<u64, u64>,
    clearings: Vec<ClearingSeen>,
    flood: BTreeMap<FloodOutcome, u64>,
    /// Acknowledged transactions of flooding households, to replay.
    replayable: BTreeMap<u32, Vec<SignedTx>>,
    /// When the testnet ended a node's process to restart it (node index,
    /// ms): its mempool, held in memory, was lost.
    ended: Vec<(usize, u64)>,
    /// Height of the validator when each node was restarted.
    restart_heights: Vec<u64>,
    events_lagged: u64,
}

/// The shared record of a run.
#[derive(Debug, Default)]
pub struct Journal {
    inner: Mutex<Inner>,
    /// Submissions that got no answer (timeout, connection refused).
    pub unanswered: AtomicU64,
    /// Submissions skipped because the household's node was down or paused.
    pub skipped_node_down: AtomicU64,
}

impl Journal {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn acknowledged(&self, record: Acknowledged) {
        self.lock().acknowledged.push(record);
    }

    pub fn refused(&self, what: String) {
        *self.lock().refused.entry(what).or_default() += 1;
    }

    pub fn unanswered(&self) {
        self.unanswered.fetch_add(1, Ordering::Relaxed);
    }

    pub fn block_seen(&self, height: u64, seen_ms: u64) {
        let mut inner = self.lock();
        let entry = inner.block_seen_ms.entry(height).or_insert(seen_ms);
        *entry = (*entry).min(seen_ms);
    }

    pub fn clearing_seen(&self, clearing: ClearingSeen) {
        self.lock().clearings.push(clearing);
    }

    pub fn events_lagged(&self, missed: u64) {
        self.lock().events_lagged += missed;
    }

    pub fn flood(&self, outcome: FloodOutcome) {
        *self.lock().flood.entry(outcome).or_default() += 1;
    }

    pub fn keep_for_replay(&self, household: u32, tx: SignedTx) {
        self.lock().replayable.entry(household).or_default().push(tx);
    }

    /// An acknowledged transaction of `household` to replay, taken in turn
    /// from the older half of those it has, which are committed by now.
    pub fn replay_candidate(&self, household: u32, turn: usize) -> Option<SignedTx> {
        let inner = self.lock();
        let list = inner.replayable.get(&household)?;
        let old = list.len().div_ceil(2);
        if old == 0 {
            return None;
        }
        list.get(turn % old).cloned()
    }

    pub fn ended_by_testnet(&self, node: usize, at_ms: u64) {
        self.lock().ended.push((node, at_ms));
    }

    pub fn restarted_at_height(&self, height: u64) {
        self.lock().restart_heights.push(height);
    }

    /// A copy of everything, for the checks and the report.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            acknowledged: inner.acknowledged.clone(),
            refused: inner.refused.clone(),
            block_seen_ms: inner.block_seen_ms.clone(),
            clearings: inner.clearings.clone(),
            flood: inner.flood.clone(),
            ended: inner.ended.clone(),
            restart_heights: inner.restart_heights.clone(),
            events_lagged: inner.events_lagged,
            unanswered: self.unanswered.load(Ordering::Relaxed),
            skipped_node_down: self.skipped_node_down.load(Ordering::Relaxed),
        }
    }

    /// The intervals cleared so far, the trades and the last clearing price
    /// (from the event streams), for the progress line.
    pub fn progress(&self) -> (usize, u64, Option<u64>) {
        let inner = self.lock();
        let mut intervals: BTreeMap<u64, (u64, Option<u64>)> = BTreeMap::new();
        for clearing in &inner.clearings {
            intervals.insert(clearing.interval, (clearing.trades, clearing.price_micro_per_kwh));
        }
        let trades = intervals.values().map(|(trades, _)| trades).sum();
        let price = intervals.values().rev().find_map(|(_, price)| *price);
        (intervals.len(), trades, price)
    }
}

/// A copy of the journal.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub acknowledged: Vec<Acknowledged>,
    pub refused: BTreeMap<String, u64>,
    pub block_seen_ms: BTreeMap<u64, u64>,
    pub clearings: Vec<ClearingSeen>,
    pub flood: BTreeMap<FloodOutcome, u64>,
    pub ended: Vec<(usize, u64)>,
    pub restart_heights: Vec<u64>,
    pub events_lagged: u64,
    pub unanswered: u64,
    pub skipped_node_down: u64,
}

/// The interval a transaction is about, if any.
pub fn interval_of(tx: &SignedTx) -> Option<u64> {
    match &tx.tx {
        Tx::Offer(offer) => Some(offer.interval),
        Tx::MeterReading(reading) => Some(reading.interval),
        _ => None,
    }
}
