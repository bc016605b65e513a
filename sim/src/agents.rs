//! The API clients of a run: one agent per household (the households
//! crate's decisions, submitted one at a time through the household's node,
//! as the testnet's agent threads do) and the registrar that registers
//! every household in waves; and the journal of what each submission got.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use gridshare_households::{Agent, Offers};
use gridshare_ledger::Hash;
use gridshare_ledger::execute::Rejection;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::tx::{SignedTx, Tx};
use gridshare_node::mempool::SubmitError;

use crate::network::NodeId;
use crate::scheduler::TimeUs;

/// An agent gives up on an answer after this long (the testnet's request
/// timeout).
pub const REQUEST_TIMEOUT_US: TimeUs = 3_000_000;
/// A meter reading the node finds early (its clock is behind) is tried
/// again after this long, until shortly before its interval settles.
pub const READING_RETRY_US: TimeUs = 250_000;

/// Something a client will submit.
#[derive(Clone, Debug)]
pub enum Pending {
    /// A transaction signed already (a meter reading, a registration), and
    /// the interval it is about. A reading is retried while it is early,
    /// until `give_up_ms` on the agent's clock.
    Signed { tx: Box<SignedTx>, interval: Option<u64>, give_up_ms: u64 },
    /// Offer `slice` of a round, signed with the next nonce when it is sent.
    Offer { offers: Arc<Offers>, slice: usize },
}

/// A submission waiting for its answer.
#[derive(Clone, Debug)]
pub struct Outstanding {
    pub attempt: u64,
    pub pending: Pending,
    pub tx: SignedTx,
}

/// A household's agent.
#[derive(Debug)]
pub struct HouseholdAgent {
    pub decisions: Agent,
    pub account: Keypair,
    pub meter: Keypair,
    pub node: NodeId,
    /// The account's last nonce as its node said, plus what was admitted
    /// since.
    pub nonce: u64,
    pub queue: VecDeque<Pending>,
    pub outstanding: Option<Outstanding>,
    pub attempts: u64,
    pub finished: bool,
}

/// The registrar: every household's account, meter and credit, submitted
/// to the first validator in waves.
#[derive(Debug)]
pub struct Registrar {
    pub key: Keypair,
    pub transactions: Vec<SignedTx>,
    pub queue: VecDeque<Pending>,
    pub outstanding: Option<Outstanding>,
    pub attempts: u64,
    pub done: bool,
}

/// An acknowledged transaction (a node answered "admitted").
#[derive(Clone, Debug)]
pub struct Acknowledged {
    pub kind: &'static str,
    /// Its gossip message id (the blake3 of its bytes).
    pub message_id: libp2p::gossipsub::MessageId,
    pub household: Option<u32>,
    pub node: NodeId,
    pub interval: Option<u64>,
    pub acknowledged_us: TimeUs,
}

/// A mempool dropped a transaction, and why.
#[derive(Clone, Debug)]
pub struct Dropped {
    pub node: NodeId,
    pub reason: String,
    pub at_us: TimeUs,
}

/// What every submission got, and what the mempools dropped.
#[derive(Debug, Default)]
pub struct Journal {
    pub acknowledged: BTreeMap<Hash, Acknowledged>,
    /// Refusals at submission, by "kind reason".
    pub refused: BTreeMap<String, u64>,
    pub unanswered: u64,
    pub skipped_node_down: u64,
    pub dropped: BTreeMap<Hash, Vec<Dropped>>,
    /// When each node crashed (its mempool lost).
    pub crashes: Vec<(NodeId, TimeUs)>,
}

impl Journal {
    pub fn acknowledge(&mut self, id: Hash, acknowledged: Acknowledged) {
        self.acknowledged.entry(id).or_insert(acknowledged);
    }

    pub fn refuse(&mut self, kind: &str, error: &SubmitError) {
        *self.refused.entry(format!("{kind} {}", error.code())).or_default() += 1;
    }

    pub fn drop(&mut self, id: Hash, dropped: Dropped) {
        self.dropped.entry(id).or_default().push(dropped);
    }
}

/// Whether a refusal means "not now, try after the next block" (HTTP 429).
pub fn is_busy(error: &SubmitError) -> bool {
    matches!(
        error,
        SubmitError::Full
            | SubmitError::SignerFull(_)
            | SubmitError::IntervalFull(_)
            | SubmitError::Backlog { .. }
            | SubmitError::TooLate { .. }
    )
}

/// Whether a refusal says the reading came before its interval ended on
/// the node's clock.
pub fn is_early_reading(error: &SubmitError) -> bool {
    matches!(error, SubmitError::Rejected(Rejection::ReadingBeforeIntervalEnd { .. }))
}

/// The interval a transaction is about, if any.
pub fn interval_of(tx: &SignedTx) -> Option<u64> {
    match &tx.tx {
        Tx::Offer(offer) => Some(offer.interval),
        Tx::MeterReading(reading) => Some(reading.interval),
        _ => None,
    }
}
