//! The node's one event loop and the handles to it. The loop `select!`s
//! over the market swarm, the consensus engine's messages (on a validator),
//! commands from the HTTP API, a tick timer and the shutdown signal; it
//! reads its [`Clock`] once per event, hands the event to the chain core
//! ([`ChainCore`], which decides everything about the chain and does no
//! I/O) and carries out the core's [`Effect`]s: gossip published and
//! verdicts reported on the swarm, peers blocked and unblocked, sync
//! requests and responses sent, transactions fetched from, announced to and
//! served to peers directly, submissions answered, events broadcast,
//! metrics updated. The swarm's own business (discovery, bootstrap redials,
//! isolation for testnet faults) stays here. A shutdown signal is handled
//! between events, so the block being stored is finished.
//!
//! The rest of the node talks to the loop through a [`Client`]; start-up
//! (`start.rs`) assembles it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gridshare_ledger::Hash;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::state::State;
use gridshare_ledger::store::{RedbStore, StoreError};
use gridshare_ledger::tx::SignedTx;
use libp2p::futures::{FutureExt, StreamExt};
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns, request_response};
use malachitebft_app_channel::AppMsg;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::acknowledged::{Acknowledged, AcknowledgedError};
pub use crate::chain::Event;
use crate::chain::{ChainCore, Count, Effect, Ignored, OpenError, Submission, Topic, Verdict, sync_response};
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::consensus::app::{Consensus, ConsensusError};
use crate::consensus::context::GridshareContext;
use crate::index::{Index, IndexError};
use crate::mempool::{Mempool, SubmitError};
use crate::metrics::Metrics;
use crate::network::{
    Behaviour, BehaviourEvent, DirectRequest, PortTaken, SyncRequest, SyncResponse, Topics,
    TransactionsResponse,
};

/// How often the loop ticks: the core publishes again what no peer could
/// be sent and lifts the bans that ended; the loop ends an isolation that
/// is over and redials bootstrap peers that are not connected.
const TICK_INTERVAL: Duration = Duration::from_secs(2);
/// Commands waiting for the event loop at most.
pub const COMMANDS_MAX: usize = 1_024;
/// Events kept for slow event-stream subscribers.
pub const EVENTS_BUFFER: usize = 1_024;
/// Peers' catch-up requests served at once, each on a blocking thread off
/// the event loop (reading up to `SYNC_RESPONSE_BYTES_MAX` of blocks), one
/// per peer; one more is answered at once with no blocks, and the peer asks
/// another.
pub const SYNC_SERVING_MAX: usize = 2;

/// A catch-up response read off the event loop for a peer, for the loop to
/// send.
type Served = (PeerId, request_response::ResponseChannel<SyncResponse>, SyncResponse);

/// A read of the node's state, run inside the event loop.
pub type Read = Box<dyn FnOnce(View<'_>) + Send>;

/// A request to the event loop, with where to send the answer.
pub enum Command {
    Submit {
        tx: Box<SignedTx>,
        reply: oneshot::Sender<Result<Hash, SubmitError>>,
    },
    Read(Read),
    /// Cut the node off from every peer for a while (testnet faults).
    Isolate {
        duration: Duration,
        reply: oneshot::Sender<()>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Submit { .. } => f.write_str("Submit"),
            Command::Read(_) => f.write_str("Read"),
            Command::Isolate { duration, .. } => write!(f, "Isolate({duration:?})"),
        }
    }
}

/// What a read sees: the committed chain, the index and the mempool.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub genesis: &'a Genesis,
    pub state: &'a State,
    pub store: &'a RedbStore,
    pub index: &'a Index,
    pub mempool: &'a Mempool,
    /// The transactions acknowledged here that wait, and the recent drops.
    pub acknowledged: &'a Acknowledged,
    pub peers: usize,
    pub validator: bool,
    /// The highest height a peer has shown us.
    pub best_seen_height: u64,
    /// The node's clock, read by the event loop for this read.
    pub now_ms: u64,
}

/// The event loop has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the node is shutting down")]
pub struct NodeGone;

/// A handle to the event loop, its event stream and its metrics.
#[derive(Clone, Debug)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    pub metrics: Arc<Metrics>,
    pub genesis: Arc<Genesis>,
}

impl Client {
    pub async fn submit(&self, tx: SignedTx) -> Result<Result<Hash, SubmitError>, NodeGone> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Submit { tx: Box::new(tx), reply }).await.map_err(|_| NodeGone)?;
        answer.await.map_err(|_| NodeGone)
    }

    /// Runs `read` in the event loop and returns what it returns.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(View<'_>) -> T + Send + 'static,
    ) -> Result<T, NodeGone> {
        let (reply, answer) = oneshot::channel();
        let read: Read = Box::new(move |view| {
            // A requester that went away does not care about the answer.
            let _ = reply.send(read(view));
        });
        self.commands.send(Command::Read(read)).await.map_err(|_| NodeGone)?;
        answer.await.map_err(|_| NodeGone)
    }

    /// Disconnects every peer and refuses connections for `duration`.
    pub async fn isolate(&self, duration: Duration) -> Result<(), NodeGone> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Isolate { duration, reply }).await.map_err(|_| NodeGone)?;
        answer.await.map_err(|_| NodeGone)
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The data directory: genesis, keys, the ledger and its index.
    pub data_dir: PathBuf,
    pub block_time_ms: u64,
    /// Where the market swarm listens, e.g. `/ip4/127.0.0.1/tcp/0`.
    pub p2p_listen: Multiaddr,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Market connections accepted from one IP address at most.
    pub p2p_connections_per_ip_max: std::num::NonZeroUsize,
    /// Where a validator's consensus swarm listens.
    pub consensus_listen: Multiaddr,
    /// The other validators' consensus addresses.
    pub consensus_peers: Vec<Multiaddr>,
    /// Consensus connections accepted from one IP address at most.
    pub consensus_connections_per_ip_max: std::num::NonZeroUsize,
    /// The node's clock (the system clock, or a skewed one for testnets).
    pub clock: Clock,
}

/// The node's event loop, to be awaited until shutdown.
pub type EventLoop = std::pin::Pin<Box<dyn Future<Output = Result<(), NodeError>> + Send>>;

/// A started node: its API client, its community, its libp2p identity and
/// addresses, its role, and the event loop to run.
pub struct Started {
    pub client: Client,
    pub genesis: Genesis,
    pub peer_id: PeerId,
    pub listen_addresses: Vec<Multiaddr>,
    pub validator: bool,
    pub event_loop: EventLoop,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("community", &self.genesis.community_id)
            .field("peer_id", &self.peer_id)
            .field("listen_addresses", &self.listen_addresses)
            .finish_non_exhaustive()
    }
}

/// Why the node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Acknowledged(#[from] AcknowledgedError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("consensus failed: {0}")]
    Consensus(#[from] ConsensusError),
    #[error("invalid dev community: {0}")]
    Dev(#[from] DevError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: Multiaddr, source: ListenError },
}

/// Why a dev community cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("intervals must be at least {min_ms} ms, not {interval_ms} ms")]
    IntervalTooShort { interval_ms: u64, min_ms: u64 },
    #[error("{} holds another community", data_dir.display())]
    OtherCommunity { data_dir: PathBuf },
}

/// Why the market swarm cannot listen on an address.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(transparent)]
    PortTaken(#[from] PortTaken),
    #[error(transparent)]
    Transport(#[from] libp2p::TransportError<std::io::Error>),
}

/// Milliseconds since the Unix epoch from the system clock, without the
/// skew a node may be configured with: for tools and tests that need the
/// wall-clock time. A node reads its own [`Clock`].
pub fn now_ms() -> u64 {
    Clock::system().now_ms()
}

/// What start-up hands the event loop.
pub(crate) struct Parts {
    pub(crate) core: ChainCore<RedbStore>,
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) topics: Topics,
    /// Malachite, on a validator.
    pub(crate) consensus: Option<Consensus>,
    /// Dialled again while disconnected, so a restarted peer is found.
    pub(crate) bootstrap: Vec<Multiaddr>,
    pub(crate) clock: Clock,
    pub(crate) metrics: Arc<Metrics>,
}

/// The client of an event loop over `parts`, and the loop, which runs until
/// `shutdown` resolves.
pub(crate) fn event_loop(
    parts: Parts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (Client, EventLoop) {
    let Parts { core, swarm, topics, consensus, bootstrap, clock, metrics } = parts;
    let (events, _) = broadcast::channel(EVENTS_BUFFER);
    let (commands, inbox) = mpsc::channel(COMMANDS_MAX);
    let (served, served_inbox) = mpsc::channel(SYNC_SERVING_MAX);
    let client = Client {
        commands,
        events: events.clone(),
        metrics: metrics.clone(),
        genesis: Arc::new(core.genesis().clone()),
    };
    let node = Node {
        core,
        swarm,
        topics,
        consensus,
        bootstrap,
        clock,
        metrics,
        events,
        replies: BTreeMap::new(),
        next_submission: 0,
        isolated_until: None,
        served,
        serving: BTreeSet::new(),
        last_block_ms: None,
    };
    (client, Box::pin(node.run(inbox, served_inbox, shutdown)))
}

/// The engine's next message; never, on a replica.
async fn consensus_message(slot: &mut Option<Consensus>) -> AppMsg<GridshareContext> {
    if let Some(consensus) = slot
        && let Some(message) = consensus.next().await
    {
        return message;
    }
    std::future::pending().await
}

/// The event loop's state: the chain core and the I/O around it.
struct Node {
    core: ChainCore<RedbStore>,
    swarm: Swarm<Behaviour>,
    topics: Topics,
    consensus: Option<Consensus>,
    bootstrap: Vec<Multiaddr>,
    clock: Clock,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<Event>,
    /// Where to answer the submissions the core holds, by the token it was
    /// handed: each is answered by the end of the batch it joined, so at
    /// most `VERIFY_BATCH_MAX` wait here.
    replies: BTreeMap<Submission, oneshot::Sender<Result<Hash, SubmitError>>>,
    next_submission: u64,
    /// While set, every connection is closed at once (testnet faults).
    isolated_until: Option<tokio::time::Instant>,
    /// Where catch-up responses read off the loop come back, and the peers
    /// whose responses are being read.
    served: mpsc::Sender<Served>,
    serving: BTreeSet<PeerId>,
    /// The timestamp of the last block committed, for the block interval.
    last_block_ms: Option<u64>,
}

impl Node {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Command>,
        mut served: mpsc::Receiver<Served>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NodeError> {
        let effects = self.core.restore(self.clock.now_ms())?;
        self.carry_out(effects);
        let mut ticks = tokio::time::interval(TICK_INTERVAL);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.on_tick(),
                Some(command) = inbox.recv() => self.on_commands(command, &mut inbox),
                Some((peer, channel, response)) = served.recv() => {
                    self.serving.remove(&peer);
                    if self.swarm.behaviour_mut().sync.send_response(channel, response).is_err() {
                        tracing::debug!("a peer left before its sync response");
                    }
                }
                message = consensus_message(&mut self.consensus) => self.on_consensus(message),
                event = self.swarm.select_next_some() => self.on_swarm_events(event),
                () = &mut shutdown => break,
            }
            self.metrics.mempool_transactions.set(gauge(self.core.mempool().len()));
        }
        tracing::info!(height = self.core.state().height, "stopped after the last stored block");
        Ok(())
    }

    /// Handles `first` and the commands already waiting after it, up to a
    /// batch of submissions; then has the core verify the batch.
    fn on_commands(&mut self, first: Command, inbox: &mut mpsc::Receiver<Command>) {
        let now_ms = self.clock.now_ms();
        self.on_command(now_ms, first);
        while self.core.batch_open() {
            match inbox.try_recv() {
                Ok(command) => self.on_command(now_ms, command),
                Err(_) => break,
            }
        }
        let effects = self.core.verify_batch(now_ms);
        self.carry_out(effects);
    }

    fn on_command(&mut self, now_ms: u64, command: Command) {
        match command {
            Command::Submit { tx, reply } => {
                let submission = Submission(self.next_submission);
                self.next_submission = self.next_submission.wrapping_add(1);
                self.replies.insert(submission, reply);
                let effects = self.core.handle_submission(now_ms, submission, *tx);
                self.carry_out(effects);
            }
            Command::Isolate { duration, reply } => {
                tracing::warn!(?duration, "isolated from every peer");
                self.isolated_until = Some(tokio::time::Instant::now() + duration);
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                for peer in peers {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                let _ = reply.send(());
            }
            Command::Read(read) => read(View {
                genesis: self.core.genesis(),
                state: self.core.state(),
                store: self.core.store(),
                index: self.core.index(),
                mempool: self.core.mempool(),
                acknowledged: self.core.acknowledged(),
                peers: self.swarm.connected_peers().count(),
                validator: self.core.is_validator(),
                best_seen_height: self.core.best_seen_height(),
                now_ms,
            }),
        }
    }

    /// Hands an engine message to consensus, with the core as its chain at
    /// this event's time.
    fn on_consensus(&mut self, message: AppMsg<GridshareContext>) {
        let now_ms = self.clock.now_ms();
        if let Some(consensus) = self.consensus.as_mut() {
            consensus.handle(message, &mut self.core.at(now_ms));
        }
        let effects = self.core.take_effects();
        self.carry_out(effects);
    }

    /// The core's tick, then the swarm's: an isolation that is over ends,
    /// and bootstrap peers that are not connected are dialled again.
    /// Serves a peer's catch-up request on a blocking thread, off this loop
    /// (reading and encoding up to `SYNC_RESPONSE_BYTES_MAX` of blocks
    /// would hold up consensus); the response comes back to the loop, which
    /// sends it. Past `SYNC_SERVING_MAX` at once, or while the peer's last
    /// request is still being read, the peer gets no blocks at once and asks
    /// again, of another peer or later.
    fn serve_sync(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        channel: request_response::ResponseChannel<SyncResponse>,
    ) {
        let tip_height = self.core.state().height;
        let reader = if self.serving.len() < SYNC_SERVING_MAX && !self.serving.contains(&peer) {
            self.core
                .store()
                .reader()
                .map_err(|problem| tracing::warn!(%problem, "cannot read blocks for a peer"))
                .ok()
        } else {
            None
        };
        let Some(reader) = reader else {
            tracing::debug!(%peer, serving = self.serving.len(), "a sync request answered without blocks");
            let empty = SyncResponse { blocks: Vec::new(), tip_height };
            if self.swarm.behaviour_mut().sync.send_response(channel, empty).is_err() {
                tracing::debug!(%peer, "the peer left before the sync response");
            }
            return;
        };
        self.serving.insert(peer);
        let served = self.served.clone();
        tokio::task::spawn_blocking(move || {
            let response =
                sync_response(&request, reader.height(), |height| reader.block(height).ok().flatten());
            // The channel has room for every response being read.
            let _ = served.blocking_send((peer, channel, response));
        });
    }

    /// A connected peer other than `peer` to ask for blocks, or `peer` if
    /// there is none.
    fn another_peer(&self, peer: PeerId) -> PeerId {
        self.swarm.connected_peers().find(|other| **other != peer).copied().unwrap_or(peer)
    }

    fn on_tick(&mut self) {
        let effects = self.core.tick(self.clock.now_ms());
        self.carry_out(effects);
        if self.isolated_until.is_some_and(|until| until <= tokio::time::Instant::now()) {
            tracing::warn!("isolation over: reconnecting");
            self.isolated_until = None;
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        self.metrics.peers.set(gauge(peers.len()));
        if self.isolated_until.is_some() {
            return;
        }
        for address in &self.bootstrap {
            let peer = address.iter().find_map(|protocol| match protocol {
                libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
                _ => None,
            });
            let connected = match peer {
                Some(peer) => self.swarm.is_connected(&peer),
                None => !peers.is_empty(),
            };
            if !connected && let Err(error) = self.swarm.dial(address.clone()) {
                tracing::debug!(%address, %error, "cannot redial a bootstrap peer");
            }
        }
    }

    /// Handles `first` and, while gossiped transactions wait for their
    /// signatures to be verified, the swarm events already there after it
    /// (up to a batch); then has the core verify the batch.
    fn on_swarm_events(&mut self, first: SwarmEvent<BehaviourEvent>) {
        let now_ms = self.clock.now_ms();
        self.on_swarm_event(now_ms, first);
        while self.core.batch_open() {
            match self.swarm.select_next_some().now_or_never() {
                Some(event) => self.on_swarm_event(now_ms, event),
                None => break,
            }
        }
        let effects = self.core.verify_batch(now_ms);
        self.carry_out(effects);
    }

    fn on_swarm_event(&mut self, now_ms: u64, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let topic = if message.topic == self.topics.blocks.hash() {
                    Topic::Blocks
                } else {
                    Topic::Transactions
                };
                let effects =
                    self.core.handle_gossip(now_ms, topic, message_id, propagation_source, &message.data);
                self.carry_out(effects);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                topic, ..
            })) if topic == self.topics.transactions.hash() => {
                let effects = self.core.handle_subscribed();
                self.carry_out(effects);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            })) => {
                let dropped = failed_messages.total_queue_full() + failed_messages.timeout;
                self.metrics.gossip_messages_dropped.inc_by(dropped as u64);
                tracing::debug!(%peer_id, dropped, "gossip to a slow peer was dropped");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.serve_sync(peer, request, channel);
                }
                request_response::Message::Response { response, .. } => {
                    let effects = if response.blocks.is_empty() {
                        // A peer serving as many as it will, or with nothing
                        // new: ask again, of another peer if there is one.
                        self.core.handle_sync_failed(now_ms, self.another_peer(peer))
                    } else {
                        self.core.handle_sync_response(now_ms, peer, response)
                    };
                    self.carry_out(effects);
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                peer,
                error,
                ..
            })) => {
                tracing::warn!(%peer, %error, "a sync request failed");
                let effects = self.core.handle_sync_failed(now_ms, self.another_peer(peer));
                self.carry_out(effects);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Transactions(request_response::Event::Message {
                peer,
                message,
                ..
            })) => {
                let effects = match message {
                    request_response::Message::Request { request, channel, .. } => {
                        let (response, announced) = match request {
                            DirectRequest::Fetch(request) => (self.core.serve_transactions(&request), None),
                            DirectRequest::Announce(announced) => {
                                (TransactionsResponse::default(), Some(announced))
                            }
                        };
                        if self.swarm.behaviour_mut().transactions.send_response(channel, response).is_err() {
                            tracing::debug!(%peer, "the peer left before the transactions response");
                        }
                        match announced {
                            Some(announced) => self.core.handle_transactions(now_ms, peer, announced),
                            None => Vec::new(),
                        }
                    }
                    request_response::Message::Response { response, .. } => {
                        self.core.handle_transactions(now_ms, peer, response)
                    }
                };
                self.carry_out(effects);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Transactions(
                request_response::Event::OutboundFailure { peer, error, .. },
            )) => {
                tracing::debug!(%peer, %error, "transactions sent directly did not arrive");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(peers))) => {
                for (peer, address) in peers {
                    self.swarm.behaviour_mut().kademlia.add_address(&peer, address.clone());
                    if let Err(error) = self.swarm.dial(address) {
                        tracing::debug!(%peer, %error, "cannot dial a discovered peer");
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for address in info.listen_addrs {
                    self.swarm.behaviour_mut().kademlia.add_address(&peer_id, address);
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } if self.isolated_until.is_some() => {
                let _ = self.swarm.disconnect_peer_id(peer_id);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                tracing::info!(%peer_id, "connected");
                self.metrics.peers.set(gauge(self.swarm.connected_peers().count()));
                let effects = self.core.handle_peer_connected(peer_id);
                self.carry_out(effects);
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                tracing::info!(%peer_id, "disconnected");
                self.metrics.peers.set(gauge(self.swarm.connected_peers().count()));
            }
            SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening"),
            _ => {}
        }
    }

    /// Carries out the core's effects in order.
    fn carry_out(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Publish { topic, bytes, transaction } => {
                    if !self.publish(topic, bytes)
                        && let Some(id) = transaction
                    {
                        self.core.publish_failed(id);
                    }
                }
                Effect::Verdict { topic, message_id, source, verdict } => {
                    self.metrics.gossip(topic.label(), verdict.label());
                    if matches!(verdict, Verdict::Ignore(Ignored::Replay)) {
                        self.metrics.gossip_replays.inc();
                    }
                    let acceptance = match verdict {
                        Verdict::Accept => MessageAcceptance::Accept,
                        Verdict::Reject(_) => MessageAcceptance::Reject,
                        Verdict::Ignore(_) => MessageAcceptance::Ignore,
                    };
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                        &message_id,
                        &source,
                        acceptance,
                    );
                }
                Effect::Ban { peer } => {
                    // Blocking a peer disconnects it.
                    self.swarm.behaviour_mut().blocked.block_peer(peer);
                }
                Effect::Unban { peer } => {
                    self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                }
                Effect::RequestBlocks { peer, request } => {
                    self.metrics.sync_requests_sent.inc();
                    self.swarm.behaviour_mut().sync.send_request(&peer, request);
                }
                Effect::Event(event) => self.broadcast(event),
                Effect::Answer { submission, result } => self.answer(submission, result),
                Effect::Count(Count::VerifyBatch) => {
                    self.metrics.verify_batches.inc();
                }
                Effect::Count(Count::SyncBlocksReceived(blocks)) => {
                    self.metrics.sync_blocks_received.inc_by(blocks);
                }
                Effect::RequestTransactions { peer, request } => {
                    self.swarm
                        .behaviour_mut()
                        .transactions
                        .send_request(&peer, DirectRequest::Fetch(request));
                }
                Effect::Announce { transactions } => {
                    let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                    self.metrics.transactions_announced.inc_by((transactions.len() * peers.len()) as u64);
                    let announced = DirectRequest::Announce(TransactionsResponse { transactions });
                    for peer in peers {
                        self.swarm.behaviour_mut().transactions.send_request(&peer, announced.clone());
                    }
                }
                Effect::Count(Count::TransactionsReceived(transactions)) => {
                    self.metrics.direct_transactions_received.inc_by(transactions);
                }
                Effect::Count(Count::Included(delay_ms)) => {
                    self.metrics.offer_to_ledger_ms.observe(delay_ms);
                }
                Effect::Dropped { id, dropped } => {
                    // The testnet reads these lines for its findings (the
                    // drops by reason, and at how many nodes).
                    tracing::info!(%id, rejection = %dropped.message, "dropped from the mempool");
                }
            }
        }
    }

    /// Gossips a transaction or a certified block; whether some peer was
    /// sent it (or had it already). With no peer yet there is nobody to
    /// tell, which is not an error.
    fn publish(&mut self, topic: Topic, bytes: Vec<u8>) -> bool {
        let topic = match topic {
            Topic::Transactions => self.topics.transactions.clone(),
            Topic::Blocks => self.topics.blocks.clone(),
        };
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => true,
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => false,
            Err(error) => {
                tracing::warn!(%error, "cannot gossip");
                false
            }
        }
    }

    /// Counts what a committed block brought in the metrics, then tells
    /// the event stream.
    fn broadcast(&mut self, event: Event) {
        let metrics = &self.metrics;
        match &event {
            Event::Block { height, transactions, timestamp_ms, .. } => {
                if let Some(last_ms) = self.last_block_ms {
                    metrics.block_interval_ms.observe(timestamp_ms.saturating_sub(last_ms));
                }
                self.last_block_ms = Some(*timestamp_ms);
                metrics.height.set(i64::try_from(*height).unwrap_or(i64::MAX));
                metrics.blocks_committed.inc();
                metrics.transactions_committed.inc_by(*transactions as u64);
                metrics.mempool_transactions.set(gauge(self.core.mempool().len()));
            }
            Event::Clearing { receipt, .. } => {
                if let Some(gate_ms) = self.core.genesis().gate_closure_ms(receipt.interval) {
                    metrics
                        .clearing_after_gate_closure_ms
                        .observe(self.clock.now_ms().saturating_sub(gate_ms));
                }
                metrics.intervals_cleared.inc();
                metrics.trades.inc_by(receipt.trades.len() as u64);
            }
            Event::Settlement { .. } => {
                metrics.settlements.inc();
            }
        }
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    /// Answers a submission through the API.
    fn answer(&mut self, submission: Submission, result: Result<Hash, SubmitError>) {
        self.metrics.submission(match &result {
            Ok(_) => "admitted",
            Err(SubmitError::Rejected(_)) => "rejected",
            Err(error) => error.code(),
        });
        // A requester that went away does not care about the answer.
        if let Some(reply) = self.replies.remove(&submission) {
            let _ = reply.send(result);
        }
    }
}

fn gauge(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
