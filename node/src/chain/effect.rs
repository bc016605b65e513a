//! What the chain core asks its driver to do ([`Effect`]), and the values
//! effects carry: gossip topics, verdicts with their reasons, API events,
//! submission tokens, counts for the metrics and the reasons transactions
//! leave the mempool without a block.

use std::sync::Arc;

use gridshare_ledger::Hash;
use gridshare_ledger::block::{ClearingReceipt, SettlementReceipt};
use gridshare_ledger::encoding::DecodeError;
use gridshare_ledger::ids::SignatureError;
use libp2p::PeerId;
use libp2p::gossipsub::MessageId;

use super::ApplyError;
use crate::acknowledged::Dropped;
use crate::mempool::SubmitError;
use crate::network::{SyncRequest, TransactionsRequest};

/// Something the core wants done, in the order it is returned. The node's
/// event loop carries each out on the swarm, the API's channels and the
/// metrics; a test or a simulator inspects them or delivers them to other
/// cores.
#[derive(Debug)]
pub enum Effect {
    /// Gossip `bytes` on `topic`. `transaction` names a submitted
    /// transaction: if no peer can be sent it (none subscribed yet), the
    /// driver says so with [`ChainCore::publish_failed`](super::ChainCore::publish_failed)
    /// and the core publishes it again later.
    Publish { topic: Topic, bytes: Vec<u8>, transaction: Option<Hash> },
    /// The verdict on a gossip message, given exactly once per message: the
    /// message is forwarded only if accepted.
    Verdict { topic: Topic, message_id: MessageId, source: PeerId, verdict: Verdict },
    /// Disconnect `peer` and refuse it until [`Effect::Unban`].
    Ban { peer: PeerId },
    /// `peer`'s ban is over.
    Unban { peer: PeerId },
    /// Ask `peer` for certified blocks.
    RequestBlocks { peer: PeerId, request: SyncRequest },
    /// Tell the API's event stream.
    Event(Event),
    /// Answer the submission the driver handed in as `submission`.
    Answer { submission: Submission, result: Result<Hash, SubmitError> },
    /// Count something in the metrics.
    Count(Count),
    /// Ask `peer` for the transactions it holds behind a gap in a signer's
    /// nonces: `peer` sent one that skips ahead of what this mempool has
    /// (its predecessors were lost on the way, or overtaken). The driver
    /// sends the request directly (not by gossip), and hands the answer to
    /// [`ChainCore::handle_transactions`](super::ChainCore::handle_transactions);
    /// the peer answers with [`ChainCore::serve_transactions`](super::ChainCore::serve_transactions).
    RequestTransactions { peer: PeerId, request: TransactionsRequest },
    /// Send these transactions, submitted here and still waiting after
    /// [`REANNOUNCE_AFTER_MS`](super::REANNOUNCE_AFTER_MS), directly to every
    /// connected peer: gossip took them once, and gossipsub neither sends a
    /// message again nor lets a peer that dropped it (its queue was full)
    /// have it from anyone else. Peers hand them to
    /// [`ChainCore::handle_transactions`](super::ChainCore::handle_transactions).
    Announce { transactions: Vec<Vec<u8>> },
    /// The waiting transaction `id` left the mempool without a block: after
    /// a block it no longer fits (its interval's gate passed, its nonce was
    /// used or skips ahead, its funds are gone), or, acknowledged before a
    /// restart, it could not be admitted again. Whoever was told it was
    /// admitted learns here why it will not be on the ledger; the core has
    /// recorded it for `GET /v1/transactions/{id}`.
    Dropped { id: Hash, dropped: Dropped },
}

/// A gossip topic of the community.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    Transactions,
    Blocks,
}

impl Topic {
    /// The topic's label in the metrics.
    pub fn label(self) -> &'static str {
        match self {
            Topic::Transactions => "tx",
            Topic::Blocks => "blocks",
        }
    }
}

/// What becomes of a gossip message.
#[derive(Debug)]
pub enum Verdict {
    /// Valid and new here: forwarded.
    Accept,
    /// Invalid: dropped and counted against the peer that sent it.
    Reject(Invalid),
    /// Not forwarded and not held against the sender: an honest peer can
    /// send it too.
    Ignore(Ignored),
}

impl Verdict {
    /// The verdict's label in the metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Reject(_) => "reject",
            Verdict::Ignore(_) => "ignore",
        }
    }
}

/// Why a gossip message is invalid: nothing an honest peer sends.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("a transaction of {bytes} bytes, more than gossip carries")]
    Oversized { bytes: usize },
    #[error("not a transaction: {0}")]
    Garbage(#[from] DecodeError),
    #[error("a transaction's signature: {0}")]
    BadSignature(#[from] SignatureError),
    #[error("an invalid block: {0}")]
    Block(#[from] Box<ApplyError>),
}

impl Invalid {
    /// The reason's code in counters and reports.
    pub fn code(&self) -> &'static str {
        match self {
            Invalid::Oversized { .. } => "oversized",
            Invalid::Garbage(_) => "garbage",
            Invalid::BadSignature(_) => "bad_signature",
            Invalid::Block(_) => "invalid_block",
        }
    }
}

/// Why a gossip message is ignored. Honest peers see transactions in
/// different orders and at different heights, and a loaded node validates
/// its queue late, so what does not fit here may be honest elsewhere.
#[derive(Debug)]
pub enum Ignored {
    /// A transaction already in a committed block (a late copy, or a
    /// replay: they look the same).
    Replay,
    /// A transaction the mempool refused (a used nonce, a gap, a duplicate,
    /// a full mempool, a rule of the ledger).
    Refused(SubmitError),
    /// A block at or below this node's height.
    OldBlock,
    /// A block above the next height: the blocks in between are requested.
    AheadBlock,
    /// A block gossiped to a validator, which gets every block through
    /// consensus.
    ByValidator,
    /// A valid block this node could not store (its own disk failed): not
    /// the sender's fault.
    NotStored,
}

impl Ignored {
    /// Whether a transaction ignored for this reason was useless work that
    /// its sender could have known of: not when this node's mempool had no
    /// room, the node's own disk failed, or the signer's nonces arrived out
    /// of order (the gap is fetched).
    pub fn wastes(&self) -> bool {
        match self {
            Ignored::Replay => true,
            Ignored::Refused(error) => error.wastes(),
            Ignored::OldBlock | Ignored::AheadBlock | Ignored::ByValidator | Ignored::NotStored => false,
        }
    }

    /// The reason's code in counters and reports.
    pub fn code(&self) -> &'static str {
        match self {
            Ignored::Replay => "replay",
            Ignored::Refused(error) => error.code(),
            Ignored::OldBlock => "old_block",
            Ignored::AheadBlock => "ahead_block",
            Ignored::ByValidator => "by_validator",
            Ignored::NotStored => "not_stored",
        }
    }
}

/// What the API's event stream reports.
#[derive(Clone, Debug)]
pub enum Event {
    Block { height: u64, hash: Hash, timestamp_ms: u64, transactions: usize },
    Clearing { height: u64, receipt: Arc<ClearingReceipt> },
    Settlement { height: u64, receipt: Arc<SettlementReceipt> },
}

/// The driver's token for a submission it is waiting to answer (the node's
/// loop maps it to the reply channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Submission(pub u64);

/// Something counted in the metrics that no other effect shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// One batch of signatures verified together.
    VerifyBatch,
    /// Blocks applied from one sync response.
    SyncBlocksReceived(u64),
    /// Transactions a peer sent directly (fetched or announced) that were
    /// new here and joined the batch to verify.
    TransactionsReceived(u64),
    /// A transaction acknowledged here is in a committed block, this many
    /// ms after its acknowledgement.
    Included(u64),
}
