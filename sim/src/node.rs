//! One simulated node: the real chain core (`ChainCore<MemoryStore>` with its
//! index in memory), its clock (the simulated time plus a skew), its inbox
//! and CPU, gossipsub's duplicate cache, the validator's part in the
//! sequencer, and its counters. What a node does with each message is the
//! world's (`world.rs`); this file holds its state and the messages.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use gridshare_ledger::Hash;
use gridshare_ledger::block::{Block, CertifiedBlock, CommitSignature};
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::state::State;
use gridshare_ledger::store::MemoryStore;
use gridshare_ledger::tx::SignedTx;
use gridshare_node::acknowledged::Acknowledged;
use gridshare_node::chain::{ChainCore, Submission, Topic};
use gridshare_node::network::{SyncRequest, SyncResponse, TransactionsRequest, TransactionsResponse};
use libp2p::PeerId;
use libp2p::gossipsub::MessageId;

use crate::inbox::{Gossip, Inbox, Source};
use crate::network::NodeId;
use crate::scheduler::TimeUs;

/// How long gossipsub remembers a message id it has seen, so that copies
/// through other peers are dropped unseen (`duplicate_cache_time`).
pub const DUPLICATE_CACHE_US: TimeUs = 60_000_000;

/// Who sent an inbound item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum From {
    /// A peer, over a link.
    Peer(NodeId),
    /// An API client (a household's agent or the registrar).
    Client(Client),
    /// The node itself: a timer, the sequencer's turn to propose, a
    /// connection.
    Local,
}

/// An API client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Client {
    Household(u32),
    Registrar,
}

/// What a node handles.
#[derive(Clone, Debug)]
pub enum Message {
    /// A gossip message (a transaction or a certified block), published or
    /// forwarded by its sender.
    Gossip {
        topic: Topic,
        id: MessageId,
        bytes: Arc<[u8]>,
        kind: Gossip,
    },
    SyncRequest(SyncRequest),
    SyncResponse(Arc<SyncResponse>),
    /// A request for the transactions behind a nonce gap.
    TransactionsRequest(TransactionsRequest),
    /// Transactions sent directly: fetched, or announced again.
    Transactions(Arc<TransactionsResponse>),
    /// A submission through the API, with the client's attempt number.
    Submit {
        tx: Box<SignedTx>,
        attempt: u64,
    },
    /// The sequencer's turn for this validator to propose.
    Propose {
        height: u64,
        round: u32,
    },
    /// A proposed block, from its proposer.
    Proposal {
        height: u64,
        round: u32,
        block: Arc<Block>,
        bytes: usize,
    },
    /// A validator's precommit for a proposal, to its proposer.
    Vote {
        height: u64,
        round: u32,
        block_hash: Hash,
        signature: CommitSignature,
    },
    /// A certified block, from its proposer to every validator.
    Commit {
        certified: Arc<CertifiedBlock>,
        bytes: usize,
    },
    /// A connection to a peer was established (at start, after a restart or
    /// a partition healed).
    Connected(NodeId),
    /// The periodic tick.
    Tick,
}

impl Message {
    /// The bytes it takes on the wire (the encodings' lengths; a small
    /// constant for the fixed-size ones).
    pub fn wire_bytes(&self) -> u64 {
        let bytes = match self {
            Message::Gossip { bytes, .. } => bytes.len(),
            Message::SyncRequest(_) => 16,
            Message::SyncResponse(response) => response.blocks.iter().map(Vec::len).sum::<usize>() + 16,
            Message::TransactionsRequest(_) => 48,
            Message::Transactions(response) => response.transactions.iter().map(Vec::len).sum::<usize>() + 8,
            Message::Proposal { bytes, .. } | Message::Commit { bytes, .. } => *bytes,
            Message::Vote { .. } => 128,
            Message::Submit { .. } | Message::Propose { .. } | Message::Connected(_) | Message::Tick => 0,
        };
        bytes as u64
    }

    /// The source the node's loop gets it from.
    pub fn source(&self) -> Source {
        match self {
            Message::Gossip { .. }
            | Message::SyncRequest(_)
            | Message::SyncResponse(_)
            | Message::TransactionsRequest(_)
            | Message::Transactions(_)
            | Message::Connected(_) => Source::Swarm,
            Message::Submit { .. } => Source::Api,
            Message::Propose { .. }
            | Message::Proposal { .. }
            | Message::Vote { .. }
            | Message::Commit { .. } => Source::Consensus,
            Message::Tick => Source::Tick,
        }
    }

    /// Whether it is a transaction the core puts in its batch to verify.
    pub fn is_transaction(&self) -> bool {
        matches!(
            self,
            Message::Gossip { topic: Topic::Transactions, .. }
                | Message::Submit { .. }
                | Message::Transactions(_)
        )
    }
}

/// An inbound item: who sent it and what.
#[derive(Clone, Debug)]
pub struct Inbound {
    pub from: From,
    pub message: Message,
}

/// A gossip message handed to the core, waiting for its verdict: forwarded
/// to the other peers if accepted.
#[derive(Debug)]
pub struct AwaitingVerdict {
    pub topic: Topic,
    pub bytes: Arc<[u8]>,
    pub from: NodeId,
}

/// What a node counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub messages_received: u64,
    pub bytes_received: u64,
    /// Modelled CPU time spent, in µs.
    pub cpu_us: u64,
    /// Gossip copies dropped unseen: the id was in the duplicate cache.
    pub duplicates: u64,
    /// Gossip refused because the link's queue was full, or dropped because
    /// it waited past its publish or forward timeout.
    pub gossip_refused_full: u64,
    /// Gossip this node could not queue to a peer (that peer's queue from
    /// it was full): published and forwarded messages.
    pub publish_failed: u64,
    pub forward_failed: u64,
    pub gossip_expired: u64,
    /// Messages that arrived while the node was down.
    pub lost_while_down: u64,
    /// Proposals this validator refused for their time, or as invalid.
    pub proposals_refused_time: u64,
    pub proposals_refused_invalid: u64,
}

impl NodeStats {
    /// What was counted since `before`.
    pub fn since(&self, before: &NodeStats) -> NodeStats {
        NodeStats {
            messages_sent: self.messages_sent - before.messages_sent,
            bytes_sent: self.bytes_sent - before.bytes_sent,
            messages_received: self.messages_received - before.messages_received,
            bytes_received: self.bytes_received - before.bytes_received,
            cpu_us: self.cpu_us - before.cpu_us,
            duplicates: self.duplicates - before.duplicates,
            gossip_refused_full: self.gossip_refused_full - before.gossip_refused_full,
            publish_failed: self.publish_failed - before.publish_failed,
            forward_failed: self.forward_failed - before.forward_failed,
            gossip_expired: self.gossip_expired - before.gossip_expired,
            lost_while_down: self.lost_while_down - before.lost_while_down,
            proposals_refused_time: self.proposals_refused_time - before.proposals_refused_time,
            proposals_refused_invalid: self.proposals_refused_invalid - before.proposals_refused_invalid,
        }
    }
}

/// A validator's own block for the round it proposes in, and the votes
/// for it so far.
#[derive(Debug)]
pub struct Proposing {
    pub height: u64,
    pub round: u32,
    pub block: Arc<Block>,
    pub votes: Vec<CommitSignature>,
    pub power: u64,
    /// A certificate was made: later votes change nothing.
    pub decided: bool,
}

/// A validator's part in the sequencer.
#[derive(Debug, Default)]
pub struct ValidatorState {
    /// Blocks checked for the next height, by hash, with the state after.
    pub checked: BTreeMap<Hash, State>,
    pub proposing: Option<Proposing>,
}

/// One node of the community.
pub struct SimNode {
    pub name: String,
    pub peer_id: PeerId,
    /// The validator's ledger key, on a validator.
    pub key: Option<Keypair>,
    /// The chain core; `None` while the node is down.
    pub core: Option<ChainCore<MemoryStore>>,
    /// The store of a node that is down, which it restarts from.
    pub parked: Option<(MemoryStore, Acknowledged)>,
    pub skew_ms: i64,
    pub inbox: Inbox<Inbound>,
    /// When the CPU is free again.
    pub busy_until_us: TimeUs,
    /// Whether a wake-up to handle the inbox is scheduled.
    pub wake_scheduled: bool,
    /// gossipsub's duplicate cache: ids seen, with when they were first seen.
    pub seen: BTreeSet<MessageId>,
    pub seen_order: VecDeque<(TimeUs, MessageId)>,
    pub awaiting: BTreeMap<MessageId, AwaitingVerdict>,
    /// Submissions the core holds, by token: who waits for the answer.
    pub submissions: BTreeMap<Submission, (Client, u64)>,
    pub next_submission: u64,
    /// Peers this node has banned (their links are closed until unbanned).
    pub banned: BTreeSet<NodeId>,
    pub validator: ValidatorState,
    /// A sync request was sent; no other before this time.
    pub sync_quiet_until_us: TimeUs,
    pub stats: NodeStats,
    /// The verdicts the core gave gossiped transactions, by label and
    /// reason ("ignore nonce_gap", "accept", ...).
    pub verdicts: BTreeMap<String, u64>,
}

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("name", &self.name)
            .field("up", &self.core.is_some())
            .field("inbox", &self.inbox.len())
            .finish_non_exhaustive()
    }
}

impl SimNode {
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }

    pub fn is_validator(&self) -> bool {
        self.key.is_some()
    }

    /// The node's clock at simulated time `now_us`: the run's origin plus
    /// the time, plus its skew.
    pub fn clock_ms(&self, origin_ms: u64, now_us: TimeUs) -> u64 {
        let true_ms = origin_ms + now_us / 1_000;
        true_ms.saturating_add_signed(self.skew_ms)
    }

    /// The committed height (0 while down).
    pub fn height(&self) -> u64 {
        self.core.as_ref().map_or(0, |core| core.state().height)
    }

    /// Remembers `id` as seen at `now_us`; false if it was seen already.
    pub fn see(&mut self, id: &MessageId, now_us: TimeUs) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        self.seen.insert(id.clone());
        self.seen_order.push_back((now_us, id.clone()));
        true
    }

    /// Forgets ids seen longer ago than the duplicate cache keeps them.
    pub fn forget_seen(&mut self, now_us: TimeUs) {
        while let Some((at_us, _)) = self.seen_order.front() {
            if at_us + DUPLICATE_CACHE_US > now_us {
                break;
            }
            if let Some((_, id)) = self.seen_order.pop_front() {
                self.seen.remove(&id);
            }
        }
    }

    /// The counters, with the inbox's drops.
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            gossip_refused_full: self.inbox.refused_full,
            gossip_expired: self.inbox.expired,
            ..self.stats
        }
    }
}
