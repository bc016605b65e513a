//! The application side of Malachite's channel API: it answers the engine's
//! `AppMsg`s with Gridshare blocks. A proposer builds a block from the
//! mempool and streams it in parts; the others reassemble it, check the
//! builder's signature and execute it with `ledger` before consensus votes
//! on it; a decided block is committed with its certificate; lagging
//! validators get certified blocks through Malachite's sync; the
//! equivocations the engine reports (double votes and double proposals) are
//! turned into ledger evidence, verified and kept.
//!
//! The node's event loop calls [`Consensus::handle`] for each message, with
//! the chain core behind the [`Chain`] boundary (`ChainCore::at`, at the
//! time the loop read for that message), so consensus never touches the
//! store or the mempool directly; what committing a block asks for (its
//! events, its gossip to the replicas) leaves the core as effects. This
//! side keeps its own files: the WAL in `DATA_DIR/consensus/wal/` and the
//! blocks this validator built, in `DATA_DIR/consensus/built/` until
//! decided.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gridshare_ledger::block::{Block, CertificateError, CertifiedBlock, CommitCertificate, CommitSignature};
use gridshare_ledger::consensus::{Equivocation, ProposalEquivocation, StreamedBlock, VoteEquivocation};
use gridshare_ledger::encoding::{DecodeError, from_bytes, to_bytes};
use gridshare_ledger::execute::BlockError;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::{Keypair, Signature, SignatureError};
use gridshare_ledger::state::State;
use gridshare_ledger::store::StoreError;
use gridshare_ledger::tx::SignedTx;
use malachitebft_app_channel::app::config::{ConsensusConfig, NodeConfig, ValueSyncConfig};
use malachitebft_app_channel::app::engine::host::{HeightParams, Next, SyncedValueOutcome};
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::core::{
    CommitCertificate as EngineCertificate, ExtendedCommitCertificate, ExtendedCommitSignature,
    LinearTimeouts, Round, Validity,
};
use malachitebft_app_channel::app::types::sync::RawDecidedValue;
use malachitebft_app_channel::app::types::{
    LocallyProposedValue, MisbehaviorEvidence, PeerId, ProposedValue,
};
use malachitebft_app_channel::{
    AppMsg, Channels, ConsensusContext, EngineHandle, NetworkContext, NetworkIdentity, NetworkMsg,
    RequestContext, SyncContext, WalContext,
};
use malachitebft_signing::{Error as SigningError, Signer};

use super::codec::{BorshCodec, CodecError};
use super::context::{
    Address, BlockId, GridshareContext, Height, ProposalPart, ValidatorSet, ValidatorSigner,
    ValidatorVerifier,
};
use super::peers::{self, PeerError};
use super::streams::{PART_BYTES, Streams};
use crate::config::ConfigError;

/// Why a block does not execute on the tip.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("a transaction's signature: {0}")]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Block(#[from] BlockError),
}

/// Why a final block could not be committed: the store refused it or
/// failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot store block {height}: {source}")]
pub struct CommitError {
    pub height: u64,
    #[source]
    pub source: StoreError,
}

/// Why consensus may not decide a block at a height.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBlock {
    #[error("block {found} is not the next block")]
    NotNext { found: u64 },
    #[error(
        "the block's time {time_ms} ms is outside this validator's clock {clock_ms} ms ± the genesis's \
         block-time tolerance of {tolerance_ms} ms"
    )]
    OutsideClock { time_ms: u64, clock_ms: u64, tolerance_ms: u64 },
    #[error(transparent)]
    Check(#[from] CheckError),
}

/// Why this validator could not propose a block.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("the block built before for this height and round cannot be read back: {0}")]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Build(#[from] BlockError),
    #[error("cannot keep the block built: {0}")]
    Keep(#[from] ConfigError),
}

/// Why a decided block could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("block {0} was decided but never received")]
    NeverReceived(BlockId),
    #[error("the decided block is invalid here: {0}")]
    Invalid(#[from] InvalidBlock),
    #[error("a certificate without a round")]
    NoRound,
    #[error("the engine's certificate does not certify the block: {0}")]
    Certificate(#[from] CertificateError),
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// What consensus needs from the node's chain: read the tip, take the
/// mempool's candidates, check and commit blocks, keep evidence. Each error
/// is typed, so consensus can tell an invalid block ([`CheckError`]) from a
/// store that failed ([`CommitError`], [`StoreError`]).
pub trait Chain {
    fn genesis(&self) -> &Genesis;
    fn state(&self) -> &State;
    fn block(&self, height: u64) -> Option<CertifiedBlock>;
    /// The transactions for a block built at `time_ms`.
    fn candidates(&mut self, time_ms: u64) -> Vec<SignedTx>;
    /// The time of a block built now: strictly after the tip's.
    fn next_block_time_ms(&self) -> u64;
    /// The time of the engine message being handled: the node's clock as
    /// the event loop read it (a simulator's time in a simulation).
    fn now_ms(&self) -> u64;
    /// Executes `block` on the tip, verifying signatures the mempool has not.
    fn check(&self, block: &Block) -> Result<State, CheckError>;
    /// Builds a block on the tip from `candidates` (verified by the mempool).
    fn build(
        &self,
        candidates: Vec<SignedTx>,
        time_ms: u64,
        proposer: &Keypair,
    ) -> Result<(Block, State), BlockError>;
    /// Commits a certified block and the state after it, durably, and
    /// tells everyone (mempool, index, API, replicas).
    fn commit(&mut self, block: CertifiedBlock, state: State) -> Result<(), CommitError>;
    /// Keeps evidence that a validator equivocated (two conflicting
    /// proposals or votes), durably.
    fn record_equivocation(&mut self, evidence: &Equivocation) -> Result<(), StoreError>;
}

/// Blocks kept for heights ahead of ours, at most.
const PENDING_MAX: usize = 64;
/// How far ahead of ours a block's height may be to be kept for later (a
/// validator restarting behind the others keeps what they stream while it
/// catches up), and the rounds of such blocks kept.
const PENDING_HEIGHTS_AHEAD: u64 = 64;
const PENDING_ROUNDS_MAX: u32 = 4;
/// Blocks kept for the next height, at most: one per round streamed by its
/// proposer, and those that came by sync. Past it, new ones are dropped.
const CANDIDATES_MAX: usize = 64;
/// Decided blocks per answer to the consensus engine's sync (validators
/// catching up with each other), at most; the market swarm's catch-up has
/// its own bound (`network::SYNC_BLOCKS_MAX`).
const VALUE_SYNC_BLOCKS_MAX: u64 = 32;
/// How often a validator tells the others its height. A validator that
/// judged a decided block untimely (or missed its stream) cannot decide it
/// from the proposal (the engine decides only values it found valid): it
/// learns the block by sync, once a peer's status says the height is
/// decided. Every second keeps such a validator at most about a second
/// behind (the engine's default, 10 s, left it proposing for heights the
/// others had decided); a status is a few bytes per peer.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// A block as a validator streamed it: the block, who built it and the
/// builder's signature over the `StreamedBlock`.
#[derive(Clone, Debug)]
struct Streamed {
    block: Block,
    builder: Address,
    signature: Signature,
    round: Round,
    pol_round: Round,
}

/// A block consensus may decide this height, and what executing it gave.
#[derive(Clone, Debug)]
struct Candidate {
    block: Block,
    /// The state after it, or why it is invalid.
    outcome: Result<State, InvalidBlock>,
    /// Whether its time was within this validator's clock ± δ when it
    /// arrived (docs/PROTOCOL.md §6). An untimely block gets no vote from
    /// this validator, but is committed if consensus decides it.
    timely: Result<(), InvalidBlock>,
    builder: Address,
    /// The builder's stream signature; `None` for a block that came by
    /// sync with its certificate (it is never streamed again).
    signature: Option<Signature>,
    /// The round it was proposed in, and the proof-of-lock round it was
    /// re-proposed under (`Nil` for a new block).
    round: Round,
    pol_round: Round,
}

/// The consensus engine's handle and the application's state for it.
pub struct Consensus {
    channels: Channels<GridshareContext>,
    /// Kept so the engine runs as long as the node.
    _engine: EngineHandle,
    key: Arc<Keypair>,
    address: Address,
    context: GridshareContext,
    validators: ValidatorSet,
    /// The configured peers: the only publishers whose proposal parts are
    /// taken.
    peers: BTreeSet<PeerId>,
    block_time: Duration,
    /// Blocks for the next height, by id.
    candidates: BTreeMap<BlockId, Candidate>,
    /// Blocks for later heights, checked when their height comes.
    pending: BTreeMap<(u64, BlockId), Streamed>,
    streams: Streams,
    next_stream: u64,
    /// Where the blocks this validator built are kept until decided, so that
    /// after a crash it proposes the very same block again.
    built_dir: PathBuf,
    /// A decided block could not be committed: restart the height.
    failed: bool,
}

impl std::fmt::Debug for Consensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consensus").field("address", &self.address).finish_non_exhaustive()
    }
}

/// Where a validator's consensus swarm listens and whom it dials.
#[derive(Clone, Debug)]
pub struct ConsensusNetwork {
    pub listen: libp2p::Multiaddr,
    pub peers: Vec<libp2p::Multiaddr>,
    /// Connections accepted from one IP address at most.
    pub connections_per_ip_max: std::num::NonZeroUsize,
}

/// Malachite's configuration.
#[derive(Clone, Debug)]
struct EngineConfig {
    moniker: String,
    consensus: ConsensusConfig,
    value_sync: ValueSyncConfig,
}

impl NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }

    fn consensus(&self) -> &ConsensusConfig {
        &self.consensus
    }

    fn consensus_mut(&mut self) -> &mut ConsensusConfig {
        &mut self.consensus
    }

    fn value_sync(&self) -> &ValueSyncConfig {
        &self.value_sync
    }

    fn value_sync_mut(&mut self) -> &mut ValueSyncConfig {
        &mut self.value_sync
    }
}

/// Why consensus could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error("cannot start consensus: cannot sign the validator proof: {0}")]
    Sign(#[from] SigningError),
    #[error("cannot start consensus: cannot encode the validator proof: {0}")]
    Encode(#[from] CodecError),
    #[error("cannot start consensus: cannot create {path}: {source}")]
    Directory { path: PathBuf, source: std::io::Error },
    #[error("cannot start consensus: the engine did not start: {0}")]
    Engine(Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot start consensus: {0}")]
    Peers(#[from] PeerError),
}

impl Consensus {
    /// Starts Malachite for the validator `key` of `genesis`, its WAL and
    /// built blocks under `data_dir`, accepting connections only from
    /// `network.peers`, each one of the genesis's other validators.
    pub async fn start(
        genesis: &Genesis,
        key: Keypair,
        identity: libp2p::identity::Keypair,
        network: ConsensusNetwork,
        data_dir: &Path,
        block_time: Duration,
    ) -> Result<Consensus, ConsensusError> {
        let community = genesis.community_id;
        let key = Arc::new(key);
        let address = Address(key.public());
        let context = GridshareContext { community };
        let allowed = peers::allowed(&identity.public().to_peer_id(), &network.peers)?;
        let mut consensus = ConsensusConfig::default();
        consensus.p2p.listen_addr = network.listen;
        consensus.p2p.persistent_peers = network.peers;
        consensus.p2p.persistent_peers_only = true;
        // A sync response and an RPC carry at least one block of the
        // largest size (Malachite's default, 10 MiB, is less).
        let frame_bytes =
            bytesize::ByteSize::b(u64::try_from(crate::network::SYNC_FRAME_BYTES_MAX).unwrap_or(u64::MAX));
        consensus.p2p.rpc_max_size = frame_bytes;
        let value_sync = ValueSyncConfig {
            max_response_size: frame_bytes,
            status_update_interval: STATUS_INTERVAL,
            ..ValueSyncConfig::default()
        };
        consensus.p2p.discovery.max_connections_per_ip = network.connections_per_ip_max.get();
        let config = EngineConfig { moniker: address.to_string(), consensus, value_sync };
        let signer = ValidatorSigner { key: key.clone(), community };
        let peer_id = identity.public().to_peer_id();
        let proof = signer.sign_validator_proof(key.public().0.to_vec(), peer_id.to_bytes()).await?;
        let proof_bytes = malachitebft_app_channel::app::types::codec::Codec::encode(&BorshCodec, &proof)?;
        let identity =
            NetworkIdentity::new_validator(address.to_string(), identity, address.to_string(), proof_bytes);
        let consensus_dir = data_dir.join("consensus");
        let built_dir = consensus_dir.join("built");
        std::fs::create_dir_all(&built_dir)
            .map_err(|source| ConsensusError::Directory { path: built_dir.clone(), source })?;
        let (channels, engine) = malachitebft_app_channel::start_engine(
            context,
            config,
            WalContext::new(consensus_dir.join("wal").join("consensus.wal"), BorshCodec),
            NetworkContext::new(identity, BorshCodec),
            ConsensusContext::new_validator(
                address,
                Box::new(ValidatorVerifier::new(genesis)),
                Box::new(signer),
            ),
            SyncContext::new(BorshCodec),
            RequestContext::new(16),
        )
        .await
        .map_err(|report| ConsensusError::Engine(report.into()))?;
        Ok(Consensus {
            channels,
            _engine: engine,
            key,
            address,
            context: GridshareContext { community },
            validators: ValidatorSet::from_genesis(genesis),
            peers: allowed,
            block_time,
            candidates: BTreeMap::new(),
            pending: BTreeMap::new(),
            streams: Streams::default(),
            next_stream: 0,
            built_dir,
            failed: false,
        })
    }

    /// The next message from the engine.
    pub async fn next(&mut self) -> Option<AppMsg<GridshareContext>> {
        self.channels.consensus.recv().await
    }

    fn params(&self) -> HeightParams<GridshareContext> {
        HeightParams::new(self.validators.clone(), LinearTimeouts::default(), Some(self.block_time))
    }

    /// Answers one message of the engine. A reply the engine no longer
    /// waits for is dropped: the engine moved on.
    pub fn handle(&mut self, message: AppMsg<GridshareContext>, chain: &mut impl Chain) {
        match message {
            AppMsg::ConsensusReady { reply } => {
                let start = Height(chain.state().height + 1);
                tracing::info!(height = start.0, "consensus ready");
                let _ = reply.send((start, self.params()));
            }
            AppMsg::StartedRound { height, round, proposer, reply_value, .. } => {
                tracing::debug!(height = height.0, %round, %proposer, "round started");
                self.check_pending(height, chain);
                let values = self
                    .candidates
                    .iter()
                    .filter(|(_, candidate)| {
                        candidate.block.header.height == height.0 && candidate.round == round
                    })
                    .map(|(id, candidate)| proposed(height, candidate, *id))
                    .collect();
                let _ = reply_value.send(values);
            }
            AppMsg::GetValue { height, round, reply, .. } => match self.propose(height, round, chain) {
                Ok((id, parts)) => {
                    let _ = reply.send(LocallyProposedValue::new(height, round, id));
                    self.publish(parts);
                }
                Err(problem) => tracing::error!(height = height.0, %problem, "cannot build a block"),
            },
            AppMsg::ReceivedProposalPart { from, published_by, part, reply } => {
                // Parts may come through different peers: a stream is its
                // publisher's, and only the configured peers publish.
                let publisher = published_by.unwrap_or(from);
                let value = if self.peers.contains(&publisher) {
                    self.streams.receive(publisher, part).and_then(|parts| self.assemble(parts, chain))
                } else {
                    tracing::debug!(%publisher, %from, "a proposal part from a peer not configured");
                    None
                };
                let _ = reply.send(value);
            }
            AppMsg::RestreamProposal { height, round, valid_round, value_id, .. } => {
                if let Some(candidate) = self.candidates.get(&value_id).cloned()
                    && let Some(signature) = candidate.signature
                {
                    let parts = self.stream(
                        height,
                        round,
                        valid_round,
                        candidate.builder,
                        &candidate.block,
                        signature,
                    );
                    self.publish(parts);
                }
            }
            AppMsg::ExtendVote { reply, .. } => {
                let _ = reply.send(None);
            }
            AppMsg::VerifyVoteExtensions { reply, .. } => {
                let _ = reply.send(Vec::new());
            }
            AppMsg::Decided { certificate, reply, .. } => {
                if let Err(problem) = self.decided(&certificate, chain) {
                    tracing::error!(height = certificate.height.0, %problem, "cannot commit the decided block");
                    self.failed = true;
                }
                let _ = reply.send(());
            }
            AppMsg::Finalized { certificate, evidence, reply, .. } => {
                for evidence in equivocations(&evidence) {
                    let validator = evidence.validator();
                    let kind = evidence.kind();
                    // Kept only if it holds up: anyone can check it later.
                    match evidence.verify(chain.genesis()) {
                        Ok(()) => {
                            tracing::warn!(%validator, height = evidence.height(), kind, "a validator equivocated");
                            if let Err(problem) = chain.record_equivocation(&evidence) {
                                tracing::error!(%validator, kind, %problem, "cannot store equivocation evidence");
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%validator, kind, %error, "the engine's evidence does not verify");
                        }
                    }
                }
                let height = chain.state().height + 1;
                let next = if std::mem::take(&mut self.failed) {
                    Next::Restart(Height(height), self.params())
                } else {
                    Next::Start(Height(height), self.params())
                };
                tracing::debug!(decided = certificate.height.0, next = height, "finalized");
                let _ = reply.send(next);
            }
            AppMsg::GetHistoryMinHeight { reply } => {
                let _ = reply.send(Height(1));
            }
            AppMsg::GetDecidedValues { range, reply } => {
                let from = range.start().0.max(1);
                let to = range.end().0.min(from.saturating_add(VALUE_SYNC_BLOCKS_MAX - 1));
                let values = (from..=to)
                    .map_while(|height| chain.block(height))
                    .map(|block| {
                        RawDecidedValue::new(Bytes::from(to_bytes(&block.block)), engine_certificate(&block))
                    })
                    .collect();
                let _ = reply.send(values);
            }
            AppMsg::ProcessSyncedValue { height, round, proposer, value_bytes, reply } => {
                let outcome = match from_bytes::<Block>(&value_bytes) {
                    Err(_) => SyncedValueOutcome::PeerFault,
                    Ok(block) => {
                        let id = BlockId(block.hash());
                        // Certified: its time was judged when it was decided.
                        let candidate = Candidate {
                            outcome: self.validate(&block, height, chain),
                            timely: Ok(()),
                            block,
                            builder: proposer,
                            signature: None,
                            round,
                            pol_round: Round::Nil,
                        };
                        let value = proposed(height, &candidate, id);
                        self.candidates.insert(id, candidate);
                        SyncedValueOutcome::Verdict(value)
                    }
                };
                let _ = reply.send(outcome);
            }
        }
    }

    /// The block this validator proposes for `height` and `round`: the one it
    /// built before for them (kept on disk, so a restart cannot make it
    /// propose another), or a new one from the mempool.
    fn propose(
        &mut self,
        height: Height,
        round: Round,
        chain: &mut impl Chain,
    ) -> Result<(BlockId, Vec<StreamMessage<ProposalPart>>), ProposeError> {
        let file = self.built_dir.join(format!("{}-{}.block", height.0, round.as_i64()));
        let (block, outcome) = match std::fs::read(&file) {
            Ok(bytes) => {
                let block = from_bytes::<Block>(&bytes)?;
                let outcome = chain.check(&block).map_err(InvalidBlock::from);
                (block, outcome)
            }
            Err(_) => {
                let time_ms = chain.next_block_time_ms();
                let candidates = chain.candidates(time_ms);
                let (block, state) = chain.build(candidates, time_ms, &self.key)?;
                // Durable before anyone hears of it.
                crate::config::write_private(&file, &to_bytes(&block))?;
                (block, Ok(state))
            }
        };
        let id = BlockId(block.hash());
        let streamed = StreamedBlock { height: height.0, block_hash: id.0, builder: self.address.0 };
        let signature = self.key.sign(&streamed.signing_bytes(&chain.genesis().community_id));
        // Its own block: built at its clock, or read back from disk after a
        // restart, when the others judge whether it is still timely.
        let candidate = Candidate {
            outcome,
            timely: Ok(()),
            block: block.clone(),
            builder: self.address,
            signature: Some(signature),
            round,
            pol_round: Round::Nil,
        };
        self.candidates.insert(id, candidate);
        Ok((id, self.stream(height, round, Round::Nil, self.address, &block, signature)))
    }

    /// The parts of a stream of `block`.
    fn stream(
        &mut self,
        height: Height,
        round: Round,
        pol_round: Round,
        builder: Address,
        block: &Block,
        signature: Signature,
    ) -> Vec<StreamMessage<ProposalPart>> {
        self.next_stream += 1;
        let mut id = Vec::with_capacity(24);
        id.extend_from_slice(&height.0.to_be_bytes());
        id.extend_from_slice(&round.as_i64().to_be_bytes());
        id.extend_from_slice(&self.next_stream.to_be_bytes());
        let stream_id = StreamId::new(Bytes::from(id));
        let bytes = to_bytes(block);
        let mut parts = vec![ProposalPart::Init { height, round, pol_round, builder }];
        parts.extend(bytes.chunks(PART_BYTES).map(|chunk| ProposalPart::Data(chunk.to_vec())));
        parts.push(ProposalPart::Fin(signature));
        let mut messages: Vec<StreamMessage<ProposalPart>> = parts
            .into_iter()
            .zip(0_u64..)
            .map(|(part, sequence)| {
                StreamMessage::new(stream_id.clone(), sequence, StreamContent::Data(part))
            })
            .collect();
        let end = u64::try_from(messages.len()).unwrap_or(u64::MAX);
        messages.push(StreamMessage::new(stream_id, end, StreamContent::Fin));
        messages
    }

    /// Hands parts to the engine's network without blocking the event loop.
    fn publish(&self, parts: Vec<StreamMessage<ProposalPart>>) {
        let network = self.channels.network.clone();
        tokio::spawn(async move {
            for part in parts {
                if network.send(NetworkMsg::PublishProposalPart(part)).await.is_err() {
                    return;
                }
            }
        });
    }

    /// Checks a complete stream: a new block must be built by the round's
    /// proposer, a block re-proposed under a proof-of-lock by a validator;
    /// the builder signed it and names itself in the header; each round
    /// gets one block executed. Returns the value to vote on for the next
    /// height.
    fn assemble(
        &mut self,
        parts: Vec<ProposalPart>,
        chain: &mut impl Chain,
    ) -> Option<ProposedValue<GridshareContext>> {
        let mut parts = parts.into_iter();
        let Some(ProposalPart::Init { height, round, pol_round, builder }) = parts.next() else {
            return None;
        };
        let mut bytes = Vec::new();
        let mut signature = None;
        for part in parts {
            match part {
                ProposalPart::Data(chunk) => bytes.extend_from_slice(&chunk),
                ProposalPart::Fin(fin) => signature = Some(fin),
                ProposalPart::Init { .. } => return None,
            }
        }
        let signature = signature?;
        let block = from_bytes::<Block>(&bytes).ok()?;
        let id = BlockId(block.hash());
        let proposer = self.proposer(height, round);
        if let Err(problem) = attributed(&block, builder, pol_round, proposer) {
            tracing::warn!(height = height.0, %round, %builder, %proposer, problem, "a streamed block is refused");
            return None;
        }
        let community = chain.genesis().community_id;
        let streamed = StreamedBlock { height: height.0, block_hash: id.0, builder: builder.0 };
        if chain.genesis().voting_power_of(&builder.0).is_none()
            || builder.0.verify(&streamed.signing_bytes(&community), &signature).is_err()
        {
            tracing::warn!(height = height.0, %builder, "a streamed block's signature does not verify");
            return None;
        }
        let next = chain.state().height + 1;
        if height.0 > next {
            // Kept for the next heights and first rounds, one per round;
            // when full, the nearest heights are kept: the next ones come
            // first, and a validator further behind catches up by sync.
            let round_taken = self
                .pending
                .iter()
                .any(|((other, _), streamed)| *other == height.0 && streamed.round == round);
            let early_round = round.as_u32().is_some_and(|round| round < PENDING_ROUNDS_MAX);
            if height.0 - next <= PENDING_HEIGHTS_AHEAD && early_round && !round_taken {
                if self.pending.len() >= PENDING_MAX {
                    match self.pending.keys().next_back().copied() {
                        Some(furthest) if furthest.0 > height.0 => {
                            self.pending.remove(&furthest);
                        }
                        _ => return None,
                    }
                }
                self.pending.insert((height.0, id), Streamed { block, builder, signature, round, pol_round });
            }
            return None;
        }
        if height.0 < next {
            return None;
        }
        if let Some(known) = self.candidates.get(&id) {
            // Streamed again (a new round, or a re-proposal): executed once,
            // its time judged as the new stream says (PROTOCOL.md §6).
            let timely = timely(&known.block, pol_round, chain);
            let candidate =
                Candidate { round, pol_round, timely, signature: Some(signature), ..known.clone() };
            let value = proposed(height, &candidate, id);
            self.candidates.insert(id, candidate);
            return Some(value);
        }
        if self.candidates.values().any(|other| {
            other.block.header.height == height.0 && other.round == round && other.signature.is_some()
        }) {
            tracing::warn!(height = height.0, %round, %builder, "a second block for one round; not executed");
            return None;
        }
        if self.candidates.len() >= CANDIDATES_MAX {
            tracing::warn!(height = height.0, %round, "too many blocks for one height; this one is dropped");
            return None;
        }
        let candidate = Candidate {
            outcome: self.validate(&block, height, chain),
            timely: timely(&block, pol_round, chain),
            block,
            builder,
            signature: Some(signature),
            round,
            pol_round,
        };
        let value = proposed(height, &candidate, id);
        self.candidates.insert(id, candidate);
        Some(value)
    }

    /// The proposer of `height` and `round`, by the context's rotation.
    fn proposer(&self, height: Height, round: Round) -> Address {
        use malachitebft_app_channel::app::types::core::Context;
        self.context.select_proposer(&self.validators, height, round).address
    }

    /// Forgets blocks of decided heights and checks blocks that arrived for
    /// `height` before it started.
    fn check_pending(&mut self, height: Height, chain: &mut impl Chain) {
        self.candidates.retain(|_, candidate| candidate.block.header.height >= height.0);
        self.pending.retain(|(pending, _), _| *pending >= height.0);
        let ready: Vec<(u64, BlockId)> =
            self.pending.keys().filter(|key| key.0 == height.0).copied().collect();
        for key in ready {
            if let Some(Streamed { block, builder, signature, round, pol_round }) = self.pending.remove(&key)
            {
                let outcome = self.validate(&block, height, chain);
                let timely = timely(&block, pol_round, chain);
                let signature = Some(signature);
                self.candidates.insert(
                    key.1,
                    Candidate { block, outcome, timely, builder, signature, round, pol_round },
                );
            }
        }
    }

    /// Whether `block` may be decided at `height`: it is the next block and
    /// it executes. Whether this validator votes for it also takes
    /// [`timely`].
    fn validate(&self, block: &Block, height: Height, chain: &impl Chain) -> Result<State, InvalidBlock> {
        if block.header.height != height.0 || height.0 != chain.state().height + 1 {
            return Err(InvalidBlock::NotNext { found: block.header.height });
        }
        Ok(chain.check(block)?)
    }

    /// Commits the decided block with the certificate consensus made.
    fn decided(
        &mut self,
        certificate: &EngineCertificate<GridshareContext>,
        chain: &mut impl Chain,
    ) -> Result<(), DecideError> {
        let candidate = self
            .candidates
            .remove(&certificate.value_id)
            .ok_or(DecideError::NeverReceived(certificate.value_id))?;
        let state = candidate.outcome?;
        let round = certificate.round.as_u32().ok_or(DecideError::NoRound)?;
        let mut signatures: Vec<CommitSignature> = certificate
            .commit_signatures
            .iter()
            .map(|signature| CommitSignature {
                validator: signature.address.0,
                signature: signature.signature,
            })
            .collect();
        signatures.sort_by_key(|signature| signature.validator);
        let ledger = CommitCertificate {
            height: certificate.height.0,
            round,
            block_hash: certificate.value_id.0,
            signatures,
        };
        ledger.verify(chain.genesis(), &candidate.block.header)?;
        let height = certificate.height.0;
        chain.commit(CertifiedBlock { block: candidate.block, certificate: ledger }, state)?;
        self.candidates.clear();
        // Blocks built for this height are no longer needed.
        if let Ok(entries) = std::fs::read_dir(&self.built_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let decided =
                    name.to_str().and_then(|name| name.split('-').next()).and_then(|h| h.parse::<u64>().ok());
                if decided.is_some_and(|built| built <= height) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }
}

/// The equivocations the engine reports at the end of a height, as ledger
/// evidence: its double proposals, then its double votes, each pair in the
/// engine's order (validators by address). A message without a round, which
/// no validator signs, is skipped.
fn equivocations(evidence: &MisbehaviorEvidence<GridshareContext>) -> Vec<Equivocation> {
    let proposals = evidence.proposals.iter().flat_map(|(_, pairs)| pairs).filter_map(|(first, second)| {
        Some(Equivocation::Proposals(ProposalEquivocation {
            first: first.message.ledger()?,
            first_signature: first.signature,
            second: second.message.ledger()?,
            second_signature: second.signature,
        }))
    });
    let votes = evidence.votes.iter().flat_map(|(_, pairs)| pairs).filter_map(|(first, second)| {
        Some(Equivocation::Votes(VoteEquivocation {
            first: first.message.ledger()?,
            first_signature: first.signature,
            second: second.message.ledger()?,
            second_signature: second.signature,
        }))
    });
    proposals.chain(votes).collect()
}

/// Whether a block proposed with `pol_round` is timely at this validator's
/// clock (docs/PROTOCOL.md §6): a new block (no proof-of-lock round) must
/// have its time within the clock ± the genesis's `block_time_tolerance_ms`,
/// so that no proposer can move gate closure or backdate a block by more
/// than the clock synchronisation the community needs. A block re-proposed
/// under a proof-of-lock was prevoted by more than two thirds of the voting
/// power, so honest validators found it timely when it was new; judging it
/// again by a later clock could stall a locked round.
fn timely(block: &Block, pol_round: Round, chain: &impl Chain) -> Result<(), InvalidBlock> {
    if pol_round.is_defined() {
        return Ok(());
    }
    let (time_ms, clock_ms) = (block.header.timestamp_ms, chain.now_ms());
    let tolerance_ms = chain.genesis().market.block_time_tolerance_ms;
    if time_ms.abs_diff(clock_ms) > tolerance_ms {
        return Err(InvalidBlock::OutsideClock { time_ms, clock_ms, tolerance_ms });
    }
    Ok(())
}

/// Whether a streamed block is the round's: a new block (no proof-of-lock
/// round) must be built by the round's `proposer`, and every block names
/// its builder as its proposer.
fn attributed(
    block: &Block,
    builder: Address,
    pol_round: Round,
    proposer: Address,
) -> Result<(), &'static str> {
    if pol_round == Round::Nil && builder != proposer {
        return Err("a new block not built by the round's proposer");
    }
    if block.header.proposer != builder.0 {
        return Err("the block names another proposer than its builder");
    }
    Ok(())
}

/// The value consensus votes on for `candidate`: valid if it executes and
/// is timely; an invalid one is logged with the reason.
fn proposed(height: Height, candidate: &Candidate, id: BlockId) -> ProposedValue<GridshareContext> {
    let round = candidate.round;
    let problem = candidate.outcome.as_ref().err().or(candidate.timely.as_ref().err());
    if let Some(problem) = problem {
        tracing::warn!(height = height.0, %round, builder = %candidate.builder, %problem, "an invalid block was proposed");
    }
    ProposedValue {
        height,
        round,
        valid_round: candidate.pol_round,
        proposer: candidate.builder,
        value: id,
        validity: if problem.is_none() { Validity::Valid } else { Validity::Invalid },
    }
}

/// A stored block's certificate as Malachite's sync carries it.
fn engine_certificate(block: &CertifiedBlock) -> ExtendedCommitCertificate<GridshareContext> {
    let certificate = &block.certificate;
    ExtendedCommitCertificate {
        height: Height(certificate.height),
        round: Round::new(certificate.round),
        value_id: BlockId(certificate.block_hash),
        commit_signatures: certificate
            .signatures
            .iter()
            .map(|signature| ExtendedCommitSignature {
                address: Address(signature.validator),
                signature: signature.signature,
                extension: None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::context::{Proposal, Vote};
    use gridshare_ledger::testkit::{TestCommunity, test_market};
    use malachitebft_app_channel::app::types::core::{NilOrVal, VoteType};

    /// A new block is taken only from the round's proposer; a re-proposed
    /// one from any builder; either must name its builder as proposer.
    #[test]
    fn a_streamed_block_must_be_the_round_proposer_s() {
        let community = TestCommunity::new(6, 0, test_market(), 1_000_000);
        let genesis = &community.genesis;
        let validator = gridshare_ledger::testkit::LocalValidator {
            keypair: Keypair::from_seed(community.validator.seed()),
        };
        let block =
            validator.produce(genesis, &State::genesis(genesis), Vec::new(), 1_000_500).unwrap().0.block;
        let (builder, other) =
            (Address(community.validator.public()), Address(gridshare_ledger::ids::PublicKey([9; 32])));
        assert_eq!(attributed(&block, builder, Round::Nil, builder), Ok(()));
        assert!(attributed(&block, builder, Round::Nil, other).is_err(), "a new block from a non-proposer");
        assert_eq!(attributed(&block, builder, Round::new(0), other), Ok(()), "re-proposed under a lock");
        assert!(attributed(&block, other, Round::new(0), other).is_err(), "names another proposer");
    }

    /// A new block is timely within the clock ± δ, on both sides and at
    /// both ends; a block re-proposed under a proof-of-lock is not judged by
    /// the clock again.
    #[test]
    fn a_new_block_must_be_within_the_clock_plus_or_minus_the_tolerance() {
        let community = TestCommunity::new(5, 0, test_market(), 1_000_000);
        let genesis = &community.genesis;
        let tolerance_ms = genesis.market.block_time_tolerance_ms;
        assert_eq!(tolerance_ms, 2_000);
        let index = crate::index::Index::in_memory(&genesis.hash()).unwrap();
        let acknowledged = crate::acknowledged::Acknowledged::in_memory().unwrap();
        let store = gridshare_ledger::store::MemoryStore::new(genesis.clone());
        let mut core = crate::chain::ChainCore::new(
            genesis.clone(),
            store,
            index,
            acknowledged,
            crate::chain::Role::Replica,
        )
        .unwrap();
        let validator = gridshare_ledger::testkit::LocalValidator {
            keypair: Keypair::from_seed(community.validator.seed()),
        };
        let block_at = |time_ms| {
            validator.produce(genesis, &State::genesis(genesis), Vec::new(), time_ms).unwrap().0.block
        };
        let clock_ms = 1_100_000;
        for (time_ms, is_timely) in [
            (clock_ms, true),
            (clock_ms - tolerance_ms, true),
            (clock_ms + tolerance_ms, true),
            (clock_ms - tolerance_ms - 1, false),
            (clock_ms + tolerance_ms + 1, false),
            (clock_ms - 60_000, false),
        ] {
            let block = block_at(time_ms);
            let verdict = timely(&block, Round::Nil, &core.at(clock_ms));
            assert_eq!(verdict.is_ok(), is_timely, "{time_ms}: {verdict:?}");
            if let Err(error) = verdict {
                assert_eq!(error, InvalidBlock::OutsideClock { time_ms, clock_ms, tolerance_ms });
            }
            assert_eq!(timely(&block, Round::new(0), &core.at(clock_ms)), Ok(()), "{time_ms}");
        }
    }

    /// The engine's double proposals and double votes become ledger evidence
    /// that the ledger verifies: the signed bytes are the ledger's.
    #[tokio::test]
    async fn the_engine_s_equivocations_become_evidence_the_ledger_verifies() {
        let community = TestCommunity::new(5, 0, test_market(), 0);
        let genesis = &community.genesis;
        let key = Arc::new(Keypair::from_seed(community.validator.seed()));
        let signer = ValidatorSigner { key: key.clone(), community: genesis.community_id };
        let address = Address(key.public());
        let proposal = |byte, pol_round| Proposal {
            height: Height(4),
            round: Round::new(1),
            value: BlockId(gridshare_ledger::Hash([byte; 32])),
            pol_round,
            proposer: address,
        };
        let vote = |value| Vote {
            kind: VoteType::Prevote,
            height: Height(4),
            round: Round::new(1),
            value,
            validator: address,
        };
        let mut evidence = MisbehaviorEvidence::<GridshareContext> {
            proposals: Default::default(),
            votes: Default::default(),
        };
        let (first, second) = (proposal(1, Round::Nil), proposal(1, Round::new(0)));
        let signed_first = signer.sign_proposal(first.clone()).await.unwrap();
        let signed_second = signer.sign_proposal(second.clone()).await.unwrap();
        assert!(evidence.proposals.add(signed_first, signed_second));
        let block = NilOrVal::Val(BlockId(gridshare_ledger::Hash([2; 32])));
        let signed_block = signer.sign_vote(vote(block)).await.unwrap();
        let signed_nil = signer.sign_vote(vote(NilOrVal::Nil)).await.unwrap();
        evidence.votes.add(signed_block, signed_nil);

        let found = equivocations(&evidence);
        assert_eq!(found.len(), 2, "{found:?}");
        let Equivocation::Proposals(proposals) = &found[0] else { panic!("{found:?}") };
        assert_eq!((proposals.first, proposals.second), (first.ledger().unwrap(), second.ledger().unwrap()));
        assert_eq!(proposals.second.pol_round, Some(0));
        let Equivocation::Votes(votes) = &found[1] else { panic!("{found:?}") };
        assert_eq!(
            (votes.first.block_hash, votes.second.block_hash),
            (Some(gridshare_ledger::Hash([2; 32])), None)
        );
        for evidence in &found {
            assert_eq!(evidence.verify(genesis), Ok(()));
            assert_eq!(evidence.validator(), key.public());
        }
        // A signature over other bytes (the streamed block's) is refused.
        let mut forged = *proposals;
        forged.second_signature = key.sign(
            &StreamedBlock { height: 4, block_hash: forged.second.block_hash, builder: key.public() }
                .signing_bytes(&genesis.community_id),
        );
        assert!(Equivocation::Proposals(forged).verify(genesis).is_err());
    }
}
