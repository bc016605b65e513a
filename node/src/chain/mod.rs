//! The chain core: everything a node decides about its chain, with no I/O.
//!
//! [`ChainCore`] owns the genesis, the store, the index, the record of
//! what it acknowledged ([`Acknowledged`]), the committed state, the
//! mempool, the peer book and the transactions waiting for one batch
//! verification of their signatures. Its inputs are typed methods,
//! each handed the time as `now_ms` where it matters: a gossip message
//! ([`ChainCore::handle_gossip`]), a submission ([`ChainCore::handle_submission`]),
//! a batch to verify ([`ChainCore::verify_batch`]), a new connection, a sync
//! request or response, transactions a peer sent directly
//! ([`ChainCore::handle_transactions`]) or asks for
//! ([`ChainCore::serve_transactions`]), the periodic [`ChainCore::tick`],
//! the restart ([`ChainCore::restore`]) and consensus's [`Chain`] calls
//! through [`ChainCore::at`]. What it wants done
//! leaves as [`Effect`]s (publish, verdict, ban, unban, request blocks,
//! request transactions, announce, event, answer, count, dropped), returned
//! by each `handle_*` method and, for the `Chain` calls, by
//! [`ChainCore::take_effects`].
//!
//! Transactions are not lost between nodes without a trace: a gossiped
//! transaction whose nonce skips ahead of what this mempool has (its
//! predecessors were dropped on the way by a slow peer's queue, or
//! overtaken) makes the core ask the peer that sent it for the signer's
//! waiting transactions from the missing nonce on; a transaction submitted
//! here that still waits [`REANNOUNCE_AFTER_MS`] after a block is announced
//! again, directly to the peers (gossip sends a message once), with pauses
//! that double up to [`REANNOUNCE_PAUSE_MAX_MS`], until a block includes it
//! or makes it inadmissible; and a
//! waiting transaction that a block makes inadmissible leaves with
//! [`Effect::Dropped`] and its reason, which it records. A submission is
//! answered only once what it admitted is recorded on disk, so a node
//! restarts with everything it acknowledged. It never touches a swarm, a
//! socket, a channel, tokio or the clock, and it iterates only ordered
//! maps; it is generic over the ledger's [`Store`], so tests and
//! simulations run it on a `MemoryStore` with an index and a record of
//! acknowledgements in memory.
//!
//! The node's event loop (`node.rs`) is its one driver in production: it
//! reads its clock once per event, calls the core and carries out the
//! effects.

mod effect;
mod peers;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gridshare_ledger::Hash;
use gridshare_ledger::block::{Block, CertificateError, CertifiedBlock, Receipt};
use gridshare_ledger::consensus::Equivocation;
use gridshare_ledger::encoding::{DecodeError, from_bytes, to_bytes};
use gridshare_ledger::execute::{BlockError, Rejection, Signatures, build_block, execute};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::{Keypair, PublicKey};
use gridshare_ledger::state::State;
use gridshare_ledger::store::{Store, StoreError};
use gridshare_ledger::tx::{SignedTx, Tx, verify_batch};
use libp2p::PeerId;
use libp2p::gossipsub::MessageId;

pub use effect::{Count, Effect, Event, Ignored, Invalid, Submission, Topic, Verdict};
pub use peers::{BAN_DURATION_MS, Banned, INVALID_MESSAGES_BAN, PeerBook, WASTED_BURST, WASTED_PER_S};

use crate::acknowledged::{Acknowledged, AcknowledgedError, Dropped, Waiting};
use crate::consensus::app::{Chain, CheckError, CommitError};
use crate::dev::DevHouseholds;
use crate::index::{Index, IndexError};
use crate::mempool::{Checked, Mempool, SubmitError};
use crate::network::{
    SYNC_BLOCKS_MAX, SYNC_RESPONSE_BYTES_MAX, SyncRequest, SyncResponse, TRANSACTIONS_RESPONSE_MAX,
    TX_BYTES_MAX, TransactionsRequest, TransactionsResponse,
};

/// Transactions (gossiped or submitted) whose signatures are verified
/// together at most: a batch is about twice as fast as one by one.
pub const VERIFY_BATCH_MAX: usize = 64;
/// After a sync request failed, blocks are asked for again (of another
/// peer if there is one) at most this often.
pub const SYNC_RETRY_MS: u64 = 1_000;
/// A signer's nonce gap is asked for again at most this often.
pub const FETCH_RETRY_MS: u64 = 1_000;
/// Signers whose nonce gap is being asked for, at most.
pub const FETCHES_MAX: usize = 1_024;
/// A transaction submitted here that still waits this long after it was
/// published (or last announced) is announced again, directly to the
/// peers.
pub const REANNOUNCE_AFTER_MS: u64 = 1_000;
/// Transactions announced again after one block, at most.
pub const ANNOUNCE_PER_BLOCK_MAX: usize = 4 * TRANSACTIONS_RESPONSE_MAX;
/// The longest pause between two announcements of one transaction: the
/// pause doubles after each (1 s, 2 s, 4 s, ...), so that what still waits
/// because the validators are overloaded or away does not add to their
/// load, yet is announced again until a block includes it or drops it.
pub const REANNOUNCE_PAUSE_MAX_MS: u64 = 30_000;
/// While a transaction submitted here has waited this long for a block,
/// new submissions are refused (`SubmitError::Backlog`, HTTP 429): the
/// node cannot get what it admits into blocks, and an acknowledgement
/// would promise what it cannot keep. Eight block times of 250 ms.
pub const BACKLOG_MAX_MS: u64 = 2_000;

/// What a node is in its community.
#[derive(Debug)]
pub enum Role {
    /// One of the genesis's validators: it gets every block through
    /// consensus, and in a dev community it runs the simulated households,
    /// whose transactions enter the mempool when it builds a block.
    Validator { households: Option<Box<DevHouseholds>> },
    /// A replica: it follows the validators' certified blocks, verifying
    /// each certificate and re-executing each block.
    Replica,
}

/// Why the core cannot open on its store and index.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Acknowledged(#[from] AcknowledgedError),
}

/// What a certified block from a peer is not.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("not a certified block: {0}")]
    Decode(#[from] DecodeError),
    #[error("its certificate: {0}")]
    Certificate(#[from] CertificateError),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Commit(#[from] CommitError),
}

impl ApplyError {
    /// Whether the peer that sent the block is to blame: not for this
    /// node's own storage failing to keep a valid block.
    fn is_peers_fault(&self) -> bool {
        !matches!(self, ApplyError::Commit(_))
    }
}

/// What became of a certified block from a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applied {
    New,
    /// At or below our height: nothing to do.
    Old,
    /// Above our height + 1: we need the blocks in between.
    Gap,
}

/// A transaction submitted here, waiting in the mempool.
#[derive(Clone, Copy, Debug)]
struct Submitted {
    admitted_ms: u64,
    /// When it was last published or announced, and how often it was
    /// announced again.
    announced_ms: u64,
    announces: u32,
}

/// A transaction that passed every check but its signatures, and who waits
/// for the verdict.
#[derive(Debug)]
struct Unverified {
    tx: SignedTx,
    checked: Checked,
    from: Origin,
}

#[derive(Debug)]
enum Origin {
    /// A gossip message, to be given a verdict exactly once.
    Gossip { message_id: MessageId, source: PeerId },
    /// A submission through the API.
    Api { submission: Submission },
    /// Sent directly by `peer`: fetched behind a nonce gap, or announced.
    Direct { peer: PeerId },
}

/// A node's chain and everything it decides about it; see the module doc.
pub struct ChainCore<S> {
    genesis: Genesis,
    store: S,
    index: Index,
    state: State,
    mempool: Mempool,
    validator: bool,
    /// The simulated households of a dev community's validator.
    households: Option<Box<DevHouseholds>>,
    /// The highest height a peer has shown us.
    best_seen_height: u64,
    peers: PeerBook,
    /// Transactions waiting for one batch verification of their signatures
    /// (at most [`VERIFY_BATCH_MAX`]).
    unverified: Vec<Unverified>,
    /// Submitted transactions no peer could be sent yet (none subscribed to
    /// transactions, as when the node has just started): published again
    /// when a peer subscribes and at each tick, while they wait in the
    /// mempool (so at most `MEMPOOL_TRANSACTIONS_MAX`).
    unpublished: Vec<Hash>,
    /// Signers whose nonce gap was asked for: the nonce wanted, and the time
    /// before which it is not asked for again (at most [`FETCHES_MAX`]).
    fetches: BTreeMap<PublicKey, (u64, u64)>,
    /// Transactions submitted here that wait in the mempool (so at most
    /// `MEMPOOL_TRANSACTIONS_MAX`), and in the order they were admitted.
    submitted: BTreeMap<Hash, Submitted>,
    submitted_by_age: BTreeSet<(u64, Hash)>,
    /// How long transactions submitted here took from admission to a
    /// committed block, lately (a moving average, ms).
    inclusion_delay_ms: u64,
    /// The transactions acknowledged here that wait, and the recent drops,
    /// kept across restarts.
    acknowledged: Acknowledged,
    /// No failed sync request is retried before this time.
    sync_retry_ms: u64,
    /// Effects not yet taken by the driver.
    effects: Vec<Effect>,
}

impl<S> std::fmt::Debug for ChainCore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainCore")
            .field("community", &self.genesis.community_id)
            .field("height", &self.state.height)
            .field("validator", &self.validator)
            .field("mempool", &self.mempool.len())
            .finish_non_exhaustive()
    }
}

impl<S: Store> ChainCore<S> {
    /// The core of the chain in `store` (of the community `genesis`), with
    /// `index` caught up with it.
    /// What the node acknowledged before it stopped waits in `acknowledged`
    /// until [`ChainCore::restore`].
    pub fn new(
        genesis: Genesis,
        store: S,
        index: Index,
        acknowledged: Acknowledged,
        role: Role,
    ) -> Result<ChainCore<S>, OpenError> {
        let state = store.state()?;
        let (validator, households) = match role {
            Role::Validator { households } => (true, households),
            Role::Replica => (false, None),
        };
        let mut core = ChainCore {
            mempool: Mempool::new(state.clone()),
            best_seen_height: state.height,
            state,
            genesis,
            store,
            index,
            validator,
            households,
            peers: PeerBook::default(),
            unverified: Vec::with_capacity(VERIFY_BATCH_MAX),
            unpublished: Vec::new(),
            fetches: BTreeMap::new(),
            submitted: BTreeMap::new(),
            submitted_by_age: BTreeSet::new(),
            inclusion_delay_ms: 0,
            acknowledged,
            sync_retry_ms: 0,
            effects: Vec::new(),
        };
        core.catch_up_index(None)?;
        Ok(core)
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The state after the last committed block.
    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store and what the node acknowledged, the core dropped: what a
    /// node that stops leaves behind and opens again (a simulator's crashed
    /// node restarts from them).
    pub fn into_stores(self) -> (S, Acknowledged) {
        (self.store, self.acknowledged)
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    pub fn is_validator(&self) -> bool {
        self.validator
    }

    /// The highest height a peer has shown us (our own at least).
    pub fn best_seen_height(&self) -> u64 {
        self.best_seen_height
    }

    pub fn peers(&self) -> &PeerBook {
        &self.peers
    }

    /// The transactions acknowledged here that wait, and why those that
    /// left the mempool without a block lately left.
    pub fn acknowledged(&self) -> &Acknowledged {
        &self.acknowledged
    }

    /// Admits again, at `now_ms`, what this node acknowledged before it
    /// stopped and still waits, in the order it was admitted, to be
    /// published as soon as a peer subscribes; what no longer fits the
    /// chain leaves with [`Effect::Dropped`] and its reason. The driver
    /// calls it once, when it starts.
    pub fn restore(&mut self, now_ms: u64) -> Result<Vec<Effect>, AcknowledgedError> {
        let mut waiting = self.acknowledged.waiting()?;
        let mut decoded: Vec<(Waiting, Option<SignedTx>)> = waiting
            .drain(..)
            .map(|waiting| {
                let tx = from_bytes::<SignedTx>(&waiting.bytes).ok();
                (waiting, tx)
            })
            .collect();
        // A signer's transactions were admitted in nonce order.
        decoded.sort_by_key(|(waiting, tx)| {
            (waiting.admitted_ms, tx.as_ref().and_then(|tx| tx.tx.nonce()), waiting.id)
        });
        let time_ms = self.next_block_time_ms(now_ms);
        let mut dropped = Vec::new();
        for (waiting, tx) in decoded {
            let result = match tx {
                Some(tx) => self.mempool.submit(&self.genesis, time_ms, tx),
                None => Err(SubmitError::Unreadable),
            };
            match result {
                Ok(id) => {
                    self.submitted
                        .insert(id, Submitted { admitted_ms: now_ms, announced_ms: now_ms, announces: 0 });
                    self.submitted_by_age.insert((now_ms, id));
                    self.unpublished.push(id);
                }
                Err(error) => {
                    let reason = error.code().to_string();
                    let drop = Dropped { height: self.state.height, reason, message: error.to_string() };
                    dropped.push((waiting.id, drop));
                }
            }
        }
        if !self.submitted.is_empty() || !dropped.is_empty() {
            tracing::info!(
                waiting = self.submitted.len(),
                dropped = dropped.len(),
                "transactions acknowledged before the restart"
            );
        }
        self.acknowledged.settle(&[], &dropped)?;
        for (id, drop) in dropped {
            self.effects.push(Effect::Dropped { id, dropped: drop });
        }
        Ok(self.take_effects())
    }

    /// The effects queued since they were last taken: those of consensus's
    /// [`Chain`] calls (each `handle_*` method returns its own).
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The chain as consensus sees it at `now_ms`, for one engine message.
    pub fn at(&mut self, now_ms: u64) -> ChainAt<'_, S> {
        ChainAt { core: self, now_ms }
    }

    /// A gossip message `message_id` on `topic` from `source`: a certified
    /// block is applied (or requested blocks fill a gap) and judged at
    /// once; a transaction is judged at once if it is garbage, too large or
    /// refused without its signatures checked, and otherwise joins the batch
    /// to be verified ([`ChainCore::verify_batch`]).
    pub fn handle_gossip(
        &mut self,
        now_ms: u64,
        topic: Topic,
        message_id: MessageId,
        source: PeerId,
        data: &[u8],
    ) -> Vec<Effect> {
        match topic {
            Topic::Blocks => {
                let verdict = self.gossiped_block(now_ms, source, data);
                self.verdict(now_ms, topic, message_id, source, verdict);
            }
            Topic::Transactions => match self.check_gossiped_transaction(data) {
                Ok((tx, checked)) => self.unverified.push(Unverified {
                    tx,
                    checked,
                    from: Origin::Gossip { message_id, source },
                }),
                Err(verdict) => self.verdict(now_ms, topic, message_id, source, verdict),
            },
        }
        self.take_effects()
    }

    /// A transaction submitted through the API at `now_ms`: answered at once
    /// if the mempool refuses it without its signatures checked (a
    /// duplicate, a bound, a used nonce: a replay is told it is one, not to
    /// come back later) or the node cannot get it into a block in time (a
    /// transaction submitted here has waited [`BACKLOG_MAX_MS`] for a
    /// block; or it is an offer whose gate closes before the time this
    /// node's transactions take to reach a block), and otherwise joins the
    /// batch to be verified.
    pub fn handle_submission(&mut self, now_ms: u64, submission: Submission, tx: SignedTx) -> Vec<Effect> {
        let checked = self.mempool.check(&self.genesis, &tx).and_then(|checked| {
            self.in_time(now_ms, &tx)?;
            Ok(checked)
        });
        match checked {
            Ok(checked) => self.unverified.push(Unverified { tx, checked, from: Origin::Api { submission } }),
            Err(error) => self.effects.push(Effect::Answer { submission, result: Err(error) }),
        }
        self.take_effects()
    }

    /// Whether the batch waits for more transactions: it holds some, and
    /// has room. The driver then hands in the inputs already queued before
    /// it calls [`ChainCore::verify_batch`].
    pub fn batch_open(&self) -> bool {
        !self.unverified.is_empty() && self.unverified.len() < VERIFY_BATCH_MAX
    }

    /// Verifies the waiting transactions' signatures in one batch (one by
    /// one only if the batch fails), admits the valid ones in arrival order,
    /// publishes the submitted ones and gives every sender its verdict or
    /// answer.
    pub fn verify_batch(&mut self, now_ms: u64) -> Vec<Effect> {
        if self.unverified.is_empty() {
            return self.take_effects();
        }
        let batch = std::mem::replace(&mut self.unverified, Vec::with_capacity(VERIFY_BATCH_MAX));
        self.effects.push(Effect::Count(Count::VerifyBatch));
        let community = self.genesis.community_id;
        let checks: Vec<_> = batch.iter().map(|waiting| waiting.tx.signature_checks(&community)).collect();
        let all_valid = verify_batch(checks.iter().flatten()).is_ok();
        let time_ms = self.next_block_time_ms(now_ms);
        // Submissions are answered once what they were admitted is on disk.
        let mut answers = Vec::new();
        let mut acknowledged = Vec::new();
        for (Unverified { tx, checked, from }, checks) in batch.into_iter().zip(&checks) {
            let verified = if all_valid { Ok(()) } else { verify_batch(checks) };
            let result = match verified {
                Ok(()) => {
                    let bytes = matches!(from, Origin::Api { .. }).then(|| to_bytes(&tx));
                    let result = self.mempool.admit_verified(&self.genesis, time_ms, tx, checked);
                    if let (Ok(id), Some(bytes)) = (&result, bytes) {
                        let submitted = Submitted { admitted_ms: now_ms, announced_ms: now_ms, announces: 0 };
                        self.submitted.insert(*id, submitted);
                        self.submitted_by_age.insert((now_ms, *id));
                        acknowledged.push(Waiting { id: *id, admitted_ms: now_ms, bytes: bytes.clone() });
                        // Relayed so that the validators (and every mempool) have it.
                        self.effects.push(Effect::Publish {
                            topic: Topic::Transactions,
                            bytes,
                            transaction: Some(*id),
                        });
                    }
                    result
                }
                Err(error) => Err(SubmitError::Rejected(Rejection::from(error))),
            };
            match from {
                Origin::Api { submission } => answers.push((submission, result)),
                Origin::Gossip { message_id, source } => {
                    if let Err(SubmitError::Rejected(Rejection::NonceGap { signer, expected, .. })) = &result
                    {
                        self.fetch_gap(now_ms, source, *signer, *expected);
                    }
                    let verdict = match result {
                        Ok(_) => Verdict::Accept,
                        Err(error) => self.refused(&checked.id, error),
                    };
                    self.verdict(now_ms, Topic::Transactions, message_id, source, verdict);
                }
                Origin::Direct { peer } => {
                    // Only a bad signature is held against the sender: the
                    // rest may have changed since it was asked for.
                    if let Err(SubmitError::Rejected(Rejection::BadSignature(_))) = &result {
                        self.punish(now_ms, peer);
                    }
                }
            }
        }
        if let Err(error) = self.acknowledged.record(&acknowledged) {
            // Not acknowledged, though admitted: it may still reach a block.
            tracing::error!(%error, "cannot record admitted transactions");
            for (_, result) in answers.iter_mut().filter(|(_, result)| result.is_ok()) {
                *result = Err(SubmitError::Unrecorded(error.to_string()));
            }
        }
        for (submission, result) in answers {
            self.effects.push(Effect::Answer { submission, result });
        }
        self.take_effects()
    }

    /// The transactions `request` asks for: those of its signer waiting
    /// here from its nonce on, in nonce order.
    pub fn serve_transactions(&self, request: &TransactionsRequest) -> TransactionsResponse {
        let signer = PublicKey(request.signer);
        let waiting = self.mempool.waiting_from(&signer, request.from_nonce, TRANSACTIONS_RESPONSE_MAX);
        TransactionsResponse { transactions: waiting.into_iter().map(to_bytes).collect() }
    }

    /// Transactions `peer` sent directly (the answer to our request behind
    /// a nonce gap, or its announcement of what waits there): checked as
    /// gossiped ones are, and those worth verifying join the batch
    /// ([`ChainCore::verify_batch`]). Garbage, oversized transactions and
    /// bad signatures count against `peer`; the rest that does not fit
    /// (already waiting, already used) is dropped, counted only as useless
    /// work (`PeerBook::count_wasted`).
    pub fn handle_transactions(
        &mut self,
        now_ms: u64,
        peer: PeerId,
        response: TransactionsResponse,
    ) -> Vec<Effect> {
        let mut received = 0_u64;
        for bytes in response.transactions.iter().take(TRANSACTIONS_RESPONSE_MAX) {
            // A full batch is verified first: it never holds more.
            if self.unverified.len() >= VERIFY_BATCH_MAX {
                let effects = self.verify_batch(now_ms);
                self.effects.extend(effects);
            }
            if bytes.len() > TX_BYTES_MAX {
                self.punish(now_ms, peer);
                continue;
            }
            let Ok(tx) = from_bytes::<SignedTx>(bytes) else {
                self.punish(now_ms, peer);
                continue;
            };
            match self.mempool.check(&self.genesis, &tx) {
                Ok(checked) if !self.unverified.iter().any(|waiting| waiting.checked.id == checked.id) => {
                    self.unverified.push(Unverified { tx, checked, from: Origin::Direct { peer } });
                    received += 1;
                }
                Ok(_) => {}
                Err(error) => {
                    if error.wastes() && self.wasted(now_ms, peer) {
                        self.punish(now_ms, peer);
                    }
                }
            }
        }
        if received > 0 {
            self.effects.push(Effect::Count(Count::TransactionsReceived(received)));
        }
        self.take_effects()
    }

    /// A connection to `peer` was established: a replica asks it for the
    /// blocks after its tip.
    pub fn handle_peer_connected(&mut self, peer: PeerId) -> Vec<Effect> {
        if !self.validator {
            self.request_blocks(peer);
        }
        self.take_effects()
    }

    /// A peer subscribed to the transaction topic: what no peer could be
    /// sent is published again.
    pub fn handle_subscribed(&mut self) -> Vec<Effect> {
        self.republish();
        self.take_effects()
    }

    /// A [`Effect::Publish`] of the submitted transaction `transaction`
    /// reached no peer: it is published again later, while it waits in the
    /// mempool.
    pub fn publish_failed(&mut self, transaction: Hash) {
        self.unpublished.push(transaction);
    }

    /// The answer to a peer's sync request: the certified blocks from its
    /// height on, at most [`SYNC_BLOCKS_MAX`] and [`SYNC_RESPONSE_BYTES_MAX`]
    /// bytes of them (one at least), and our height.
    pub fn serve_sync(&self, request: &SyncRequest) -> SyncResponse {
        sync_response(request, self.state.height, |height| self.store.block(height).ok().flatten())
    }

    /// Our sync request to a peer failed (it timed out, the peer left or
    /// its answer did not decode). While certified blocks show we are
    /// behind, blocks are asked for again of `peer` (another one, if the
    /// driver has one), at most every [`SYNC_RETRY_MS`].
    pub fn handle_sync_failed(&mut self, now_ms: u64, peer: PeerId) -> Vec<Effect> {
        if !self.validator && self.best_seen_height > self.state.height && now_ms >= self.sync_retry_ms {
            self.sync_retry_ms = now_ms.saturating_add(SYNC_RETRY_MS);
            self.request_blocks(peer);
        }
        self.take_effects()
    }

    /// `peer`'s answer to our sync request: its blocks are applied in order
    /// until one is invalid (the rest are then dropped, and the peer is held
    /// to account for it) or leaves a gap; if some were new and the peer
    /// says it has more, more are requested. The height it claims is not
    /// believed otherwise: only certified blocks raise the best height seen.
    pub fn handle_sync_response(&mut self, now_ms: u64, peer: PeerId, response: SyncResponse) -> Vec<Effect> {
        let mut applied = 0_u64;
        for bytes in response.blocks.iter().take(usize::try_from(SYNC_BLOCKS_MAX).unwrap_or(usize::MAX)) {
            match self.apply(now_ms, bytes) {
                Ok(Applied::New) => applied += 1,
                Ok(Applied::Old) => {}
                Ok(Applied::Gap) => break,
                Err(problem) => {
                    if problem.is_peers_fault() {
                        tracing::warn!(%peer, %problem, "invalid block in a sync response");
                        self.punish(now_ms, peer);
                    } else {
                        tracing::error!(%problem, "cannot store a valid block");
                    }
                    return self.take_effects();
                }
            }
        }
        if applied > 0 {
            self.effects.push(Effect::Count(Count::SyncBlocksReceived(applied)));
        }
        if applied > 0 && self.state.height < response.tip_height {
            self.request_blocks(peer);
        }
        self.take_effects()
    }

    /// The periodic tick: what no peer could be sent is published again,
    /// bans that ended by `now_ms` are lifted, and nonce gaps may be asked
    /// for again.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect> {
        self.republish();
        self.fetches.retain(|_, (_, until_ms)| *until_ms > now_ms);
        for peer in self.peers.lift_expired(now_ms) {
            self.effects.push(Effect::Unban { peer });
        }
        self.take_effects()
    }

    /// The time of a block built at `now_ms`: now, but strictly after the
    /// last block.
    fn next_block_time_ms(&self, now_ms: u64) -> u64 {
        now_ms.max(self.state.last_timestamp_ms + 1)
    }

    fn request_blocks(&mut self, peer: PeerId) {
        let request = SyncRequest { from_height: self.state.height + 1, max_blocks: SYNC_BLOCKS_MAX };
        self.effects.push(Effect::RequestBlocks { peer, request });
    }

    /// Publishes the submitted transactions no peer was sent yet, if they
    /// still wait in the mempool.
    fn republish(&mut self) {
        for id in std::mem::take(&mut self.unpublished) {
            let Some(bytes) = self.mempool.get(&id).map(to_bytes) else { continue };
            self.effects.push(Effect::Publish { topic: Topic::Transactions, bytes, transaction: Some(id) });
        }
    }

    /// Asks `peer`, which sent a transaction of `signer` that skips ahead,
    /// for the signer's waiting transactions from `expected` on, unless the
    /// same was asked for within [`FETCH_RETRY_MS`] (or too many signers'
    /// gaps are being asked for already).
    fn fetch_gap(&mut self, now_ms: u64, peer: PeerId, signer: PublicKey, expected: u64) {
        match self.fetches.get(&signer) {
            Some((wanted, until_ms)) if *wanted == expected && *until_ms > now_ms => return,
            None if self.fetches.len() >= FETCHES_MAX => return,
            _ => {}
        }
        self.fetches.insert(signer, (expected, now_ms.saturating_add(FETCH_RETRY_MS)));
        let request = TransactionsRequest { signer: signer.0, from_nonce: expected };
        self.effects.push(Effect::RequestTransactions { peer, request });
    }

    /// Counts an invalid message from `peer`, and bans it at
    /// [`INVALID_MESSAGES_BAN`].
    fn punish(&mut self, now_ms: u64, peer: PeerId) {
        if let Some(banned) = self.peers.count_invalid(peer, now_ms) {
            tracing::warn!(%peer, invalid = banned.count, "banning a peer that sent invalid data");
            if let Some(unbanned) = banned.unbanned {
                self.effects.push(Effect::Unban { peer: unbanned });
            }
            self.effects.push(Effect::Ban { peer });
        }
    }

    /// Whether `tx`, submitted at `now_ms`, can reach a block in time: not
    /// while the oldest transaction submitted here that still waits has
    /// waited more than [`BACKLOG_MAX_MS`], nor an offer whose gate closes
    /// sooner than this node's transactions take to reach a block (lately,
    /// or the oldest waiting one's wait so far, whichever is longer).
    fn in_time(&mut self, now_ms: u64, tx: &SignedTx) -> Result<(), SubmitError> {
        // Those that left the mempool are forgotten from the oldest on.
        let mut oldest_wait_ms = 0;
        while let Some(&(admitted_ms, id)) = self.submitted_by_age.first() {
            if self.mempool.contains(&id) {
                oldest_wait_ms = now_ms.saturating_sub(admitted_ms);
                break;
            }
            self.submitted_by_age.pop_first();
            self.submitted.remove(&id);
        }
        if oldest_wait_ms > BACKLOG_MAX_MS {
            return Err(SubmitError::Backlog { waited_ms: oldest_wait_ms });
        }
        let delay_ms = (2 * self.inclusion_delay_ms).max(oldest_wait_ms);
        if let Tx::Offer(offer) = &tx.tx
            && self
                .genesis
                .gate_closure_ms(offer.interval)
                .is_some_and(|gate_ms| gate_ms <= now_ms + delay_ms)
        {
            return Err(SubmitError::TooLate { interval: offer.interval, delay_ms });
        }
        Ok(())
    }

    /// Announces again, directly to the peers, the transactions submitted
    /// here that still wait after they were last published or announced:
    /// [`REANNOUNCE_AFTER_MS`] the first time, twice as long after each
    /// announcement, at most [`REANNOUNCE_PAUSE_MAX_MS`]; at most
    /// [`ANNOUNCE_PER_BLOCK_MAX`] after one block; an offer whose gate has
    /// passed is not announced (it will be dropped).
    fn announce(&mut self, now_ms: u64) {
        let mempool = &self.mempool;
        self.submitted.retain(|id, _| mempool.contains(id));
        let submitted = &self.submitted;
        self.submitted_by_age.retain(|(_, id)| submitted.contains_key(id));
        let genesis = &self.genesis;
        let due: Vec<Hash> = self
            .submitted
            .iter()
            .filter(|(_, submitted)| {
                submitted.announced_ms.saturating_add(reannounce_pause_ms(submitted.announces)) <= now_ms
            })
            .map(|(id, _)| *id)
            .filter(|id| {
                mempool.get(id).is_some_and(|tx| match &tx.tx {
                    Tx::Offer(offer) => {
                        genesis.gate_closure_ms(offer.interval).is_some_and(|gate| gate > now_ms)
                    }
                    _ => true,
                })
            })
            .take(ANNOUNCE_PER_BLOCK_MAX)
            .collect();
        for chunk in due.chunks(TRANSACTIONS_RESPONSE_MAX) {
            let transactions = chunk.iter().filter_map(|id| self.mempool.get(id)).map(to_bytes).collect();
            self.effects.push(Effect::Announce { transactions });
        }
        for id in due {
            if let Some(submitted) = self.submitted.get_mut(&id) {
                submitted.announced_ms = now_ms;
                submitted.announces += 1;
            }
        }
    }

    /// Gives a gossip message its verdict; an invalid one counts against
    /// its sender, which is banned at [`INVALID_MESSAGES_BAN`].
    fn verdict(
        &mut self,
        now_ms: u64,
        topic: Topic,
        message_id: MessageId,
        source: PeerId,
        verdict: Verdict,
    ) {
        let punished = match &verdict {
            Verdict::Reject(_) => true,
            Verdict::Ignore(ignored) => ignored.wastes() && self.wasted(now_ms, source),
            Verdict::Accept => false,
        };
        self.effects.push(Effect::Verdict { topic, message_id, source, verdict });
        if punished {
            self.punish(now_ms, source);
        }
    }

    /// Counts a transaction from `peer` this node ignored as useless work,
    /// unless this node is catching up (then what it ignores may well be
    /// valid); whether `peer`'s budget overflowed (one invalid message).
    fn wasted(&mut self, now_ms: u64, peer: PeerId) -> bool {
        self.best_seen_height <= self.state.height && self.peers.count_wasted(peer, now_ms)
    }

    /// A gossiped transaction that is worth verifying, or the verdict on it
    /// without that (garbage, too large, a duplicate, a replay, no room).
    fn check_gossiped_transaction(&self, bytes: &[u8]) -> Result<(SignedTx, Checked), Verdict> {
        if bytes.len() > TX_BYTES_MAX {
            return Err(Verdict::Reject(Invalid::Oversized { bytes: bytes.len() }));
        }
        let tx = from_bytes::<SignedTx>(bytes).map_err(|error| Verdict::Reject(error.into()))?;
        match self.mempool.check(&self.genesis, &tx) {
            Ok(checked) => Ok((tx, checked)),
            Err(error) => Err(self.refused(&tx.id(&self.genesis.community_id), error)),
        }
    }

    /// The verdict on a gossiped transaction the mempool refused. A
    /// gossiped transaction is forwarded only if this node admits it. A bad
    /// signature counts against the peer that sent it. Anything else that
    /// does not fit is ignored and not forwarded: a replay of a committed
    /// transaction cannot be told from a late copy. A used nonce is found
    /// before the signatures are checked, so a forged replay is ignored
    /// too: it cost a lookup. What was useless work counts against the
    /// sender's budget only in a flood ([`WASTED_BURST`]).
    fn refused(&self, id: &Hash, error: SubmitError) -> Verdict {
        match error {
            SubmitError::Rejected(Rejection::BadSignature(error)) => Verdict::Reject(error.into()),
            SubmitError::Rejected(Rejection::StaleNonce { .. })
                if self.index.transaction(id).is_ok_and(|found| found.is_some()) =>
            {
                Verdict::Ignore(Ignored::Replay)
            }
            error => Verdict::Ignore(Ignored::Refused(error)),
        }
    }

    /// The verdict on a certified block gossiped by `source`, applied if it
    /// is the next one.
    fn gossiped_block(&mut self, now_ms: u64, source: PeerId, bytes: &[u8]) -> Verdict {
        if self.validator {
            return Verdict::Ignore(Ignored::ByValidator);
        }
        match self.apply(now_ms, bytes) {
            Ok(Applied::New) => Verdict::Accept,
            Ok(Applied::Old) => Verdict::Ignore(Ignored::OldBlock),
            Ok(Applied::Gap) => {
                self.request_blocks(source);
                Verdict::Ignore(Ignored::AheadBlock)
            }
            Err(problem) if problem.is_peers_fault() => {
                tracing::warn!(%source, %problem, "invalid block gossiped");
                Verdict::Reject(Invalid::Block(Box::new(problem)))
            }
            Err(problem) => {
                tracing::error!(%problem, "cannot store a valid block");
                Verdict::Ignore(Ignored::NotStored)
            }
        }
    }

    /// Verifies, executes and stores a certified block from a peer. A block
    /// ahead of the next height is believed (and the blocks between asked
    /// for) only with a valid certificate: a forged height would otherwise
    /// cost nothing and leave the node thinking it is behind.
    fn apply(&mut self, now_ms: u64, bytes: &[u8]) -> Result<Applied, ApplyError> {
        let certified = from_bytes::<CertifiedBlock>(bytes)?;
        let header = &certified.block.header;
        if header.height <= self.state.height {
            return Ok(Applied::Old);
        }
        certified.certificate.verify(&self.genesis, header)?;
        self.best_seen_height = self.best_seen_height.max(header.height);
        if header.height > self.state.height + 1 {
            return Ok(Applied::Gap);
        }
        let next = self.check_block(&certified.block)?;
        self.commit_block(now_ms, &certified, next, false)?;
        Ok(Applied::New)
    }

    /// Hands the dev households' transactions of `time_ms` to the mempool.
    fn dev_transactions(&mut self, time_ms: u64) {
        let Some(households) = self.households.as_mut() else { return };
        for tx in households.transactions(time_ms, self.mempool.pending()) {
            if let Err(error) = self.mempool.submit(&self.genesis, time_ms, tx) {
                tracing::warn!(%error, "a dev household's transaction was refused");
            }
        }
    }

    /// Builds the next block at `time_ms` from `candidates` (from the
    /// mempool, so their signatures were verified on admission), proposed by
    /// `key`.
    fn build_block(
        &self,
        candidates: Vec<SignedTx>,
        time_ms: u64,
        key: &Keypair,
    ) -> Result<(Block, State), BlockError> {
        let built = build_block(
            &self.genesis,
            &self.state,
            candidates,
            time_ms,
            key.public(),
            Signatures::AlreadyVerified,
        )?;
        for (tx, rejection) in &built.left_out {
            tracing::warn!(kind = tx.tx.kind(), %rejection, "left out of the block");
        }
        Ok((built.block, built.state))
    }

    /// Executes `block` on the tip: the state after it, or why it is
    /// invalid. Transactions waiting in the mempool were verified on
    /// admission; the others are verified here, in one batch.
    fn check_block(&self, block: &Block) -> Result<State, CheckError> {
        let community = &self.genesis.community_id;
        let checks: Vec<_> = block
            .transactions
            .iter()
            .filter(|tx| !self.mempool.holds(&tx.id(community), tx))
            .flat_map(|tx| tx.signature_checks(community))
            .collect();
        verify_batch(&checks)?;
        let (next, _) = execute(&self.genesis, &self.state, block, Signatures::AlreadyVerified)?;
        Ok(next)
    }

    /// Stores a final block and the state after it, then tells everyone;
    /// `gossip`: the block is new to the network (this node made it final).
    fn commit_block(
        &mut self,
        now_ms: u64,
        certified: &CertifiedBlock,
        state: State,
        gossip: bool,
    ) -> Result<(), CommitError> {
        self.store
            .commit(certified, &state)
            .map_err(|source| CommitError { height: certified.block.header.height, source })?;
        self.state = state;
        self.after_block(now_ms, certified);
        if gossip {
            self.effects.push(Effect::Publish {
                topic: Topic::Blocks,
                bytes: to_bytes(certified),
                transaction: None,
            });
        }
        Ok(())
    }

    /// Everything that follows a committed block: the mempool, the index,
    /// logs and the event stream.
    fn after_block(&mut self, now_ms: u64, certified: &CertifiedBlock) {
        let time_ms = self.next_block_time_ms(now_ms);
        let dropped: Vec<(Hash, Dropped)> = self
            .mempool
            .after_block(&self.genesis, &self.state, &certified.block.transactions, time_ms)
            .into_iter()
            .map(|(id, rejection)| {
                let reason = rejection.code().to_string();
                (id, Dropped { height: self.state.height, reason, message: rejection.to_string() })
            })
            .collect();
        let mut included = Vec::new();
        let mut delays_ms = Vec::new();
        if !self.submitted.is_empty() {
            for tx in &certified.block.transactions {
                let id = tx.id(&self.genesis.community_id);
                if let Some(submitted) = self.submitted.remove(&id) {
                    self.submitted_by_age.remove(&(submitted.admitted_ms, id));
                    let delay_ms = now_ms.saturating_sub(submitted.admitted_ms);
                    self.inclusion_delay_ms = (3 * self.inclusion_delay_ms + delay_ms) / 4;
                    included.push(id);
                    delays_ms.push(delay_ms);
                }
            }
        }
        if let Err(error) = self.acknowledged.settle(&included, &dropped) {
            // What was acknowledged stays recorded as waiting: after a
            // restart it is refused again, and dropped then.
            tracing::error!(%error, "cannot record what left the mempool");
        }
        self.effects.extend(dropped.into_iter().map(|(id, dropped)| Effect::Dropped { id, dropped }));
        self.announce(now_ms);
        if let Err(error) = self.catch_up_index(Some(certified)) {
            // Derived data: the node goes on and rebuilds it on restart.
            tracing::error!(%error, "cannot index a block");
        }
        self.best_seen_height = self.best_seen_height.max(self.state.height);
        self.report(certified);
        // After the block's own events.
        self.effects.extend(delays_ms.into_iter().map(|delay_ms| Effect::Count(Count::Included(delay_ms))));
    }

    /// Indexes the committed blocks the index lacks (`just_committed`, the
    /// tip, is used as it is rather than read back).
    fn catch_up_index(&mut self, just_committed: Option<&CertifiedBlock>) -> Result<(), OpenError> {
        while self.index.height() < self.state.height {
            let height = self.index.height() + 1;
            match just_committed {
                Some(block) if block.block.header.height == height => {
                    self.index.add(block, &self.genesis.community_id)?;
                }
                _ => {
                    let block = self.store.block(height)?.ok_or_else(|| {
                        StoreError::Corrupt(format!("block {height} is missing below the tip"))
                    })?;
                    self.index.add(&block, &self.genesis.community_id)?;
                }
            }
        }
        Ok(())
    }

    /// The events of a committed block, and its clearings and settlements
    /// in the log.
    fn report(&mut self, certified: &CertifiedBlock) {
        let block = &certified.block;
        let height = block.header.height;
        self.effects.push(Effect::Event(Event::Block {
            height,
            hash: block.header.hash(),
            timestamp_ms: block.header.timestamp_ms,
            transactions: block.transactions.len(),
        }));
        for receipt in &block.receipts {
            match receipt {
                Receipt::Clearing(clearing) => {
                    tracing::info!(
                        height,
                        interval = clearing.interval,
                        offers = clearing.offers,
                        volume_wh = clearing.volume_wh,
                        price_micro_per_kwh = ?clearing.clearing_price_micro_per_kwh,
                        trades = clearing.trades.len(),
                        "interval cleared"
                    );
                    self.effects
                        .push(Effect::Event(Event::Clearing { height, receipt: Arc::new(clearing.clone()) }));
                }
                Receipt::Settlement(settlement) => {
                    tracing::info!(
                        height,
                        interval = settlement.interval,
                        bills = settlement.bills.len(),
                        "interval settled"
                    );
                    self.effects.push(Effect::Event(Event::Settlement {
                        height,
                        receipt: Arc::new(settlement.clone()),
                    }));
                }
            }
        }
        if !block.transactions.is_empty() {
            tracing::debug!(height, transactions = block.transactions.len(), "block stored");
        }
    }
}

/// The answer to a peer's sync request on a chain of `tip_height` blocks,
/// read with `block`: the certified blocks from the peer's height on, at
/// most [`SYNC_BLOCKS_MAX`] and [`SYNC_RESPONSE_BYTES_MAX`] bytes of them
/// (one at least). The event loop's [`ChainCore::serve_sync`] and the node's
/// readers off the loop answer alike.
pub fn sync_response(
    request: &SyncRequest,
    tip_height: u64,
    mut block: impl FnMut(u64) -> Option<CertifiedBlock>,
) -> SyncResponse {
    let count = u64::from(request.max_blocks.min(SYNC_BLOCKS_MAX));
    let from = request.from_height.max(1);
    let last = tip_height.min(from.saturating_add(count).saturating_sub(1));
    let blocks = (from..=last).map_while(&mut block).map(|block| to_bytes(&block));
    SyncResponse { blocks: within_bytes(blocks, SYNC_RESPONSE_BYTES_MAX), tip_height }
}

/// The first of `encoded` while they total at most `max_bytes`, and the
/// first one at least.
fn within_bytes(encoded: impl Iterator<Item = Vec<u8>>, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut taken: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0_usize;
    for item in encoded {
        if !taken.is_empty() && bytes.saturating_add(item.len()) > max_bytes {
            break;
        }
        bytes = bytes.saturating_add(item.len());
        taken.push(item);
    }
    taken
}

/// How long a transaction announced `announces` times waits before it is
/// announced again: [`REANNOUNCE_AFTER_MS`], doubled per announcement, at
/// most [`REANNOUNCE_PAUSE_MAX_MS`].
fn reannounce_pause_ms(announces: u32) -> u64 {
    REANNOUNCE_AFTER_MS
        .checked_shl(announces)
        .map_or(REANNOUNCE_PAUSE_MAX_MS, |pause| pause.min(REANNOUNCE_PAUSE_MAX_MS))
}

/// The chain as consensus sees it while it handles one engine message at
/// `now_ms`: the core's [`Chain`], with the time it was handed. Effects of
/// its calls (a committed block's events and gossip) wait in the core for
/// [`ChainCore::take_effects`].
#[derive(Debug)]
pub struct ChainAt<'a, S> {
    core: &'a mut ChainCore<S>,
    now_ms: u64,
}

impl<S: Store> Chain for ChainAt<'_, S> {
    fn genesis(&self) -> &Genesis {
        &self.core.genesis
    }

    fn state(&self) -> &State {
        &self.core.state
    }

    fn block(&self, height: u64) -> Option<CertifiedBlock> {
        self.core.store.block(height).ok().flatten()
    }

    fn candidates(&mut self, time_ms: u64) -> Vec<SignedTx> {
        self.core.dev_transactions(time_ms);
        self.core.mempool.candidates()
    }

    fn next_block_time_ms(&self) -> u64 {
        self.core.next_block_time_ms(self.now_ms)
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn check(&self, block: &Block) -> Result<State, CheckError> {
        self.core.check_block(block)
    }

    fn build(
        &self,
        candidates: Vec<SignedTx>,
        time_ms: u64,
        proposer: &Keypair,
    ) -> Result<(Block, State), BlockError> {
        self.core.build_block(candidates, time_ms, proposer)
    }

    fn commit(&mut self, block: CertifiedBlock, state: State) -> Result<(), CommitError> {
        self.core.commit_block(self.now_ms, &block, state, true)
    }

    fn record_equivocation(&mut self, evidence: &Equivocation) -> Result<(), StoreError> {
        self.core.store.record_equivocation(evidence)
    }
}
