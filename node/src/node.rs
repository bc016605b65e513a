//! The node's one event loop: a timer produces blocks (on the community's
//! validator), the market swarm delivers gossip and catch-up responses,
//! commands from the HTTP API are answered, and a shutdown signal ends the
//! loop after the block being stored. The rest of the node talks to it
//! through a [`Client`].
//!
//! Blocks are made by a single validator ([`Producer`]); BFT consensus
//! replaces `produce_block` behind the same loop (docs/NODE-PLAN.md).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gridshare_ledger::Hash;
use gridshare_ledger::block::{Block, CertifiedBlock, ClearingReceipt, Receipt, SettlementReceipt};
use gridshare_ledger::encoding::{from_bytes, to_bytes};
use gridshare_ledger::execute::{Rejection, Signatures, build_block, execute};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::state::State;
use gridshare_ledger::store::{RedbStore, STORE_FILE_NAME, Store, StoreError};
use gridshare_ledger::testkit::TestCommunity;
use gridshare_ledger::tx::{SignedTx, verify_batch};
use libp2p::futures::{FutureExt, StreamExt};
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns, request_response};
use malachitebft_app_channel::AppMsg;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::{self, ConfigError, GENESIS_FILE_NAME, INDEX_FILE_NAME, VALIDATOR_KEY_FILE_NAME};
use crate::consensus::app::{Chain, Consensus, ConsensusNetwork};
use crate::consensus::context::GridshareContext;
use crate::dev::{DevHouseholds, dev_market};
use crate::index::{Index, IndexError};
use crate::mempool::{Checked, MEMPOOL_PER_SIGNER_MAX, MEMPOOL_TRANSACTIONS_MAX, Mempool, SubmitError};
use crate::metrics::Metrics;
use crate::network::{
    BANNED_PEERS_MAX, Behaviour, BehaviourEvent, GOSSIP_BYTES_MAX, SYNC_BLOCKS_MAX, SyncRequest,
    SyncResponse, TX_BYTES_MAX, Topics, build_swarm,
};

/// How long start-up waits for the swarm to report its listen addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often peers' gossip scores are checked; one below the graylist
/// threshold is disconnected and banned.
const PEER_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Invalid messages (garbage, oversized, bad signatures, invalid blocks)
/// after which a peer is banned.
const INVALID_MESSAGES_BAN: u32 = 3;
/// How long a peer that sent invalid data stays banned.
const BAN_DURATION: Duration = Duration::from_secs(600);
/// Transactions (gossiped or submitted) whose signatures are verified
/// together at most: a batch is about twice as fast as one by one.
pub const VERIFY_BATCH_MAX: usize = 64;
/// The directory of a dev community's keys for wallets (the registrar's).
pub const DEV_KEYS_DIR_NAME: &str = "dev-keys";

/// Commands waiting for the event loop at most.
pub const COMMANDS_MAX: usize = 1_024;
/// Events kept for slow event-stream subscribers.
pub const EVENTS_BUFFER: usize = 1_024;

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
    pub peers: usize,
    pub validator: bool,
    /// The highest height a peer has shown us.
    pub best_seen_height: u64,
}

/// What the event stream reports.
#[derive(Clone, Debug)]
pub enum Event {
    Block { height: u64, hash: Hash, timestamp_ms: u64, transactions: usize },
    Clearing { height: u64, receipt: Arc<ClearingReceipt> },
    Settlement { height: u64, receipt: Arc<SettlementReceipt> },
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
    /// Where a validator's consensus swarm listens.
    pub consensus_listen: Multiaddr,
    /// The other validators' consensus addresses.
    pub consensus_peers: Vec<Multiaddr>,
    /// Consensus connections accepted from one IP address at most.
    pub consensus_connections_per_ip_max: std::num::NonZeroUsize,
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
    #[error("consensus failed: {0}")]
    Consensus(String),
    #[error("invalid dev community: {0}")]
    Dev(String),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: Multiaddr, reason: String },
}

/// The block producer of a community with one validator, and in a dev
/// community its simulated households.
struct Producer {
    /// The validator's ledger key: it signs each block's certificate.
    key: Keypair,
    households: Option<DevHouseholds>,
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

/// The state the event loop owns.
struct Node {
    genesis: Genesis,
    store: RedbStore,
    index: Index,
    state: State,
    mempool: Mempool,
    /// `None` on a replica.
    producer: Option<Producer>,
    swarm: Swarm<Behaviour>,
    topics: Topics,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<Event>,
    best_seen_height: u64,
    /// Banned peers and when their ban ends.
    banned: BTreeMap<PeerId, tokio::time::Instant>,
    /// Invalid messages each peer sent, for bans (bounded like the bans).
    invalid_messages: BTreeMap<PeerId, u32>,
    /// Dialled again while disconnected, so a restarted peer is found.
    bootstrap: Vec<Multiaddr>,
    /// While set, every connection is closed at once (testnet faults).
    isolated_until: Option<tokio::time::Instant>,
    /// Malachite, on a validator.
    consensus: Option<Consensus>,
    /// Transactions waiting for one batch verification of their signatures
    /// (at most [`VERIFY_BATCH_MAX`]).
    unverified: Vec<Unverified>,
    /// Submitted transactions no peer has been sent yet (none subscribed to
    /// transactions, as when the node has just started): published again
    /// when a peer subscribes and at each peer check, while they wait in the
    /// mempool (so at most [`MEMPOOL_TRANSACTIONS_MAX`]).
    unpublished: Vec<Hash>,
}

/// A transaction that passed every check but its signatures, and who waits
/// for the verdict.
struct Unverified {
    tx: SignedTx,
    checked: Checked,
    from: Origin,
}

enum Origin {
    /// A gossip message, to be reported on exactly once.
    Gossip { message_id: gossipsub::MessageId, source: PeerId },
    /// A submission through the API.
    Api { reply: oneshot::Sender<Result<Hash, SubmitError>> },
}

/// What became of a certified block from a peer.
enum Applied {
    New,
    /// At or below our height: nothing to do.
    Old,
    /// Above our height + 1: we need the blocks in between.
    Gap,
}

/// The skew added to the system clock (`run --clock-skew-ms`, for testnets
/// that exercise a node whose clock is wrong).
static CLOCK_SKEW_MS: AtomicI64 = AtomicI64::new(0);

/// Skews this process's clock by `skew_ms` from now on.
pub fn set_clock_skew_ms(skew_ms: i64) {
    CLOCK_SKEW_MS.store(skew_ms, Ordering::Relaxed);
}

/// Milliseconds since the Unix epoch, from the system clock plus the skew
/// (the node is an edge: the state machine never reads a clock).
pub fn now_ms() -> u64 {
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    system.saturating_add_signed(CLOCK_SKEW_MS.load(Ordering::Relaxed))
}

/// Starts the dev community in `config.data_dir`: a new one (writing its
/// genesis, validator key and registrar key there), or the one already in
/// it, whose simulated households resume from the ledger.
pub async fn start_dev(
    config: NodeConfig,
    interval_ms: u64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, NodeError> {
    let data_dir = &config.data_dir;
    if interval_ms < 100 {
        return Err(NodeError::Dev("intervals must be at least 100 ms".into()));
    }
    let existing = config::installed_genesis(data_dir)?;
    let (market, genesis_time_ms) = match &existing {
        Some(genesis) => (genesis.market.clone(), genesis.genesis_time_ms),
        // Intervals are aligned to wall-clock multiples of their length.
        None => (dev_market(interval_ms), now_ms() / interval_ms * interval_ms),
    };
    let mut community = TestCommunity::new(1, 2, market, genesis_time_ms);
    community.genesis.name = "Gridshare dev community".into();
    let genesis = community.genesis.clone();
    if let Some(existing) = existing {
        if existing != genesis {
            return Err(NodeError::Dev(format!("{} holds another community", data_dir.display())));
        }
    } else {
        std::fs::create_dir_all(data_dir.join(DEV_KEYS_DIR_NAME))
            .map_err(|error| ConfigError::Io { path: data_dir.clone(), error })?;
        let seed = |keypair: &Keypair| format!("{}\n", hex::encode(keypair.seed()));
        config::write_private(
            &data_dir.join(VALIDATOR_KEY_FILE_NAME),
            seed(&community.validator).as_bytes(),
        )?;
        let registrar = data_dir.join(DEV_KEYS_DIR_NAME).join("registrar.seed");
        config::write_private(&registrar, seed(&community.registrar).as_bytes())?;
        let path = data_dir.join(GENESIS_FILE_NAME);
        std::fs::write(&path, to_bytes(&genesis)).map_err(|error| ConfigError::Io { path, error })?;
    }
    let store = RedbStore::create(data_dir.join(STORE_FILE_NAME), &genesis)?;
    let key = Keypair::from_seed(community.validator.seed());
    let households = DevHouseholds::resume(community, &store.state()?);
    let producer = Producer { key, households: Some(households) };
    launch(config, genesis, store, Some(producer), shutdown).await
}

/// Starts the node of the data directory (made by `init`): the community's
/// validator if the directory's validator key is the genesis's only
/// validator, otherwise a replica that verifies and executes every
/// certified block. An existing ledger is reopened and the node catches up.
pub async fn start(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, NodeError> {
    let data_dir = &config.data_dir;
    let genesis =
        config::installed_genesis(data_dir)?.ok_or_else(|| ConfigError::NoGenesis(data_dir.clone()))?;
    let key = config::validator_key(data_dir)?;
    let producer = genesis.voting_power_of(&key.public()).map(|_| Producer { key, households: None });
    let store = RedbStore::create(data_dir.join(STORE_FILE_NAME), &genesis)?;
    tracing::info!(height = store.height()?, "opened the ledger");
    launch(config, genesis, store, producer, shutdown).await
}

async fn launch(
    config: NodeConfig,
    genesis: Genesis,
    store: RedbStore,
    producer: Option<Producer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, NodeError> {
    let state = store.state()?;
    let index = Index::open(&config.data_dir.join(INDEX_FILE_NAME), &genesis.hash())?;
    let identity = config::node_identity(&config.data_dir)?;
    for address in
        [&config.p2p_listen].into_iter().chain(producer.is_some().then_some(&config.consensus_listen))
    {
        crate::network::check_port_free(address)
            .map_err(|reason| NodeError::Listen { address: address.clone(), reason })?;
    }
    let (mut swarm, topics) = build_swarm(identity, &genesis.community_id, config.mdns)?;
    swarm.listen_on(config.p2p_listen.clone()).map_err(|error| NodeError::Listen {
        address: config.p2p_listen.clone(),
        reason: error.to_string(),
    })?;
    let listen_addresses = wait_for_listen_addresses(&mut swarm).await;
    for address in &config.bootstrap {
        if let Err(error) = swarm.dial(address.clone()) {
            tracing::warn!(%address, %error, "cannot dial a bootstrap peer");
        }
    }
    let peer_id = *swarm.local_peer_id();
    let metrics = Arc::new(Metrics::new(&[
        ("commands_max", COMMANDS_MAX),
        ("events_buffer", EVENTS_BUFFER),
        ("mempool_transactions_max", MEMPOOL_TRANSACTIONS_MAX),
        ("mempool_per_signer_max", MEMPOOL_PER_SIGNER_MAX),
        ("gossip_bytes_max", GOSSIP_BYTES_MAX),
        ("verify_batch_max", VERIFY_BATCH_MAX),
        ("gossip_transaction_bytes_max", TX_BYTES_MAX),
        ("sync_blocks_max", usize::try_from(SYNC_BLOCKS_MAX).unwrap_or(usize::MAX)),
        ("banned_peers_max", BANNED_PEERS_MAX),
        ("api_request_bytes_max", crate::api::REQUEST_BYTES_MAX),
    ]));
    metrics.height.set(i64::try_from(state.height).unwrap_or(i64::MAX));
    let (events, _) = broadcast::channel(EVENTS_BUFFER);
    let validator = producer.is_some();
    let mut node = Node {
        mempool: Mempool::new(state.clone()),
        genesis: genesis.clone(),
        store,
        index,
        best_seen_height: state.height,
        state,
        producer,
        swarm,
        topics,
        metrics: metrics.clone(),
        events: events.clone(),
        banned: BTreeMap::new(),
        invalid_messages: BTreeMap::new(),
        bootstrap: config.bootstrap.clone(),
        isolated_until: None,
        consensus: None,
        unverified: Vec::with_capacity(VERIFY_BATCH_MAX),
        unpublished: Vec::new(),
    };
    if let Some(producer) = &node.producer {
        let network = ConsensusNetwork {
            listen: config.consensus_listen.clone(),
            peers: config.consensus_peers.clone(),
            connections_per_ip_max: config.consensus_connections_per_ip_max,
        };
        let consensus = Consensus::start(
            &node.genesis,
            Keypair::from_seed(producer.key.seed()),
            config::node_identity(&config.data_dir)?,
            network,
            &config.data_dir,
            Duration::from_millis(config.block_time_ms.max(1)),
        )
        .await
        .map_err(|error| NodeError::Consensus(error.to_string()))?;
        node.consensus = Some(consensus);
    }
    node.catch_up_index(None)?;
    let (commands, inbox) = mpsc::channel(COMMANDS_MAX);
    Ok(Started {
        client: Client { commands, events, metrics, genesis: Arc::new(genesis.clone()) },
        genesis,
        peer_id,
        listen_addresses,
        validator,
        event_loop: Box::pin(node.run(inbox, shutdown)),
    })
}

/// Polls the swarm until it reports where it listens (bounded by a timeout).
async fn wait_for_listen_addresses(swarm: &mut Swarm<Behaviour>) -> Vec<Multiaddr> {
    let mut addresses = Vec::new();
    let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
    while addresses.is_empty() {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => addresses.push(address),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    addresses
}

impl Node {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Command>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NodeError> {
        let mut peer_checks = tokio::time::interval(PEER_CHECK_INTERVAL);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = peer_checks.tick() => self.check_peers(),
                Some(command) = inbox.recv() => self.on_commands(command, &mut inbox),
                message = consensus_message(&mut self.consensus) => self.on_consensus(message),
                event = self.swarm.select_next_some() => self.on_swarm_events(event),
                () = &mut shutdown => break,
            }
        }
        tracing::info!(height = self.state.height, "stopped after the last stored block");
        Ok(())
    }

    /// Handles `first` and the commands already waiting after it, up to a
    /// batch of submissions; then verifies the batch.
    fn on_commands(&mut self, first: Command, inbox: &mut mpsc::Receiver<Command>) {
        self.handle(first);
        while !self.unverified.is_empty() && self.unverified.len() < VERIFY_BATCH_MAX {
            match inbox.try_recv() {
                Ok(command) => self.handle(command),
                Err(_) => break,
            }
        }
        self.verify_waiting();
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Submit { tx, reply } => match self.mempool.check(&self.genesis, &tx) {
                Ok(checked) => {
                    self.unverified.push(Unverified { tx: *tx, checked, from: Origin::Api { reply } })
                }
                Err(error) => self.answer(reply, Err(error)),
            },
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
                genesis: &self.genesis,
                state: &self.state,
                store: &self.store,
                index: &self.index,
                mempool: &self.mempool,
                peers: self.swarm.connected_peers().count(),
                validator: self.producer.is_some(),
                best_seen_height: self.best_seen_height,
            }),
        }
    }

    /// The next block's time: now, but strictly after the last block.
    fn next_block_time_ms(&self) -> u64 {
        now_ms().max(self.state.last_timestamp_ms + 1)
    }

    fn on_consensus(&mut self, message: AppMsg<GridshareContext>) {
        if let Some(mut consensus) = self.consensus.take() {
            consensus.handle(message, self);
            self.consensus = Some(consensus);
        }
    }

    /// Hands the dev households' transactions of `time_ms` to the mempool.
    fn dev_transactions(&mut self, time_ms: u64) {
        let Some(households) = self.producer.as_mut().and_then(|producer| producer.households.as_mut())
        else {
            return;
        };
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
    ) -> Result<(Block, State), String> {
        let built = build_block(
            &self.genesis,
            &self.state,
            candidates,
            time_ms,
            key.public(),
            Signatures::AlreadyVerified,
        )
        .map_err(|error| error.to_string())?;
        for (tx, rejection) in &built.left_out {
            tracing::warn!(kind = tx.tx.kind(), %rejection, "left out of the block");
        }
        Ok((built.block, built.state))
    }

    /// Executes `block` on the tip: the state after it, or why it is
    /// invalid. Transactions waiting in the mempool were verified on
    /// admission; the others are verified here, in one batch.
    fn check_block(&self, block: &Block) -> Result<State, String> {
        let community = &self.genesis.community_id;
        let checks: Vec<_> = block
            .transactions
            .iter()
            .filter(|tx| !self.mempool.holds(&tx.id(community), tx))
            .flat_map(|tx| tx.signature_checks(community))
            .collect();
        verify_batch(&checks).map_err(|error| format!("a transaction's signature: {error}"))?;
        let (next, _) = execute(&self.genesis, &self.state, block, Signatures::AlreadyVerified)
            .map_err(|error| error.to_string())?;
        Ok(next)
    }

    /// Stores a final block and the state after it, then tells everyone;
    /// `gossip`: the block is new to the network (this node made it final).
    fn commit_block(
        &mut self,
        certified: &CertifiedBlock,
        state: State,
        gossip: bool,
    ) -> Result<(), NodeError> {
        self.store.commit(certified, &state)?;
        self.state = state;
        self.after_block(certified);
        if gossip {
            self.publish(false, to_bytes(certified));
        }
        Ok(())
    }

    /// Everything that follows a committed block: the mempool, the index,
    /// metrics, logs and the event stream.
    fn after_block(&mut self, certified: &CertifiedBlock) {
        let time_ms = self.next_block_time_ms();
        let dropped =
            self.mempool.after_block(&self.genesis, &self.state, &certified.block.transactions, time_ms);
        for (id, rejection) in dropped {
            tracing::info!(%id, %rejection, "dropped from the mempool");
        }
        if let Err(error) = self.catch_up_index(Some(certified)) {
            // Derived data: the node goes on and rebuilds it on restart.
            tracing::error!(%error, "cannot index a block");
        }
        self.best_seen_height = self.best_seen_height.max(self.state.height);
        self.report(certified);
    }

    /// Indexes the committed blocks the index lacks (`just_committed`, the
    /// tip, is used as it is rather than read back).
    fn catch_up_index(&mut self, just_committed: Option<&CertifiedBlock>) -> Result<(), NodeError> {
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

    /// Gossips a transaction or a certified block; whether some peer was
    /// sent it (or had it already). With no peer yet there is nobody to
    /// tell, which is not an error.
    fn publish(&mut self, transaction: bool, bytes: Vec<u8>) -> bool {
        let topic = if transaction { self.topics.transactions.clone() } else { self.topics.blocks.clone() };
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => true,
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => false,
            Err(error) => {
                tracing::warn!(%error, "cannot gossip");
                false
            }
        }
    }

    /// Publishes the submitted transactions no peer was sent yet, if they
    /// still wait in the mempool.
    fn publish_again(&mut self) {
        for id in std::mem::take(&mut self.unpublished) {
            let Some(bytes) = self.mempool.get(&id).map(to_bytes) else { continue };
            if !self.publish(true, bytes) {
                self.unpublished.push(id);
            }
        }
    }

    /// Lifts expired bans and redials bootstrap peers that are not
    /// connected.
    fn check_peers(&mut self) {
        self.publish_again();
        let now = tokio::time::Instant::now();
        let expired: Vec<PeerId> =
            self.banned.iter().filter(|(_, until)| **until <= now).map(|(peer, _)| *peer).collect();
        for peer in expired {
            self.banned.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
        if self.isolated_until.is_some_and(|until| until <= now) {
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

    /// Counts an invalid message from `peer` and bans it (which disconnects
    /// it) at [`INVALID_MESSAGES_BAN`]. Only invalid data counts, never the
    /// gossip score as a whole: its delivery and behaviour penalties also
    /// sink an honest peer that is merely overloaded.
    fn ban_if_hostile(&mut self, peer: PeerId) {
        if !self.invalid_messages.contains_key(&peer) && self.invalid_messages.len() >= BANNED_PEERS_MAX {
            return;
        }
        let count = self.invalid_messages.entry(peer).or_default();
        *count += 1;
        if *count >= INVALID_MESSAGES_BAN
            && self.banned.len() < BANNED_PEERS_MAX
            && self.banned.insert(peer, tokio::time::Instant::now() + BAN_DURATION).is_none()
        {
            tracing::warn!(%peer, invalid = *count, "banning a peer that sent invalid data");
            self.invalid_messages.remove(&peer);
            self.swarm.behaviour_mut().blocked.block_peer(peer);
        }
    }

    /// Handles `first` and, while gossiped transactions wait for their
    /// signatures to be verified, the swarm events already there after it
    /// (up to a batch); then verifies the batch.
    fn on_swarm_events(&mut self, first: SwarmEvent<BehaviourEvent>) {
        self.on_swarm_event(first);
        while !self.unverified.is_empty() && self.unverified.len() < VERIFY_BATCH_MAX {
            match self.swarm.select_next_some().now_or_never() {
                Some(event) => self.on_swarm_event(event),
                None => break,
            }
        }
        self.verify_waiting();
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                if message.topic == self.topics.blocks.hash() {
                    let acceptance = self.on_gossiped_block(propagation_source, &message.data);
                    self.report_gossip("blocks", &message_id, propagation_source, acceptance);
                } else {
                    match self.check_gossiped_transaction(&message.data) {
                        Ok((tx, checked)) => self.unverified.push(Unverified {
                            tx,
                            checked,
                            from: Origin::Gossip { message_id, source: propagation_source },
                        }),
                        Err(acceptance) => {
                            self.report_gossip("tx", &message_id, propagation_source, acceptance)
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                topic, ..
            })) if topic == self.topics.transactions.hash() => {
                self.publish_again();
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
                    let response = self.blocks_from(&request);
                    if self.swarm.behaviour_mut().sync.send_response(channel, response).is_err() {
                        tracing::debug!(%peer, "the peer left before the sync response");
                    }
                }
                request_response::Message::Response { response, .. } => self.on_sync_response(peer, response),
            },
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
                if self.producer.is_none() {
                    self.request_blocks(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                tracing::info!(%peer_id, "disconnected");
                self.metrics.peers.set(gauge(self.swarm.connected_peers().count()));
            }
            SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening"),
            _ => {}
        }
    }

    fn request_blocks(&mut self, peer: PeerId) {
        let request = SyncRequest { from_height: self.state.height + 1, max_blocks: SYNC_BLOCKS_MAX };
        self.metrics.sync_requests_sent.inc();
        self.swarm.behaviour_mut().sync.send_request(&peer, request);
    }

    /// Up to the bounded number of certified blocks from a height on.
    fn blocks_from(&self, request: &SyncRequest) -> SyncResponse {
        let count = u64::from(request.max_blocks.min(SYNC_BLOCKS_MAX));
        let from = request.from_height.max(1);
        let last = self.state.height.min(from.saturating_add(count).saturating_sub(1));
        let blocks = (from..=last)
            .map_while(|height| self.store.block(height).ok().flatten())
            .map(|block| to_bytes(&block))
            .collect();
        SyncResponse { blocks, tip_height: self.state.height }
    }

    fn on_sync_response(&mut self, peer: PeerId, response: SyncResponse) {
        self.best_seen_height = self.best_seen_height.max(response.tip_height);
        let mut applied = 0_u64;
        for bytes in response.blocks.iter().take(usize::try_from(SYNC_BLOCKS_MAX).unwrap_or(usize::MAX)) {
            match self.apply(bytes) {
                Ok(Applied::New) => applied += 1,
                Ok(Applied::Old) => {}
                Ok(Applied::Gap) => break,
                Err(problem) => {
                    tracing::warn!(%peer, %problem, "invalid block in a sync response");
                    return;
                }
            }
        }
        self.metrics.sync_blocks_received.inc_by(applied);
        if applied > 0 && self.state.height < response.tip_height {
            self.request_blocks(peer);
        }
    }

    fn on_gossiped_block(&mut self, source: PeerId, bytes: &[u8]) -> MessageAcceptance {
        if self.producer.is_some() {
            // A single local validator makes every block itself.
            return MessageAcceptance::Ignore;
        }
        match self.apply(bytes) {
            Ok(Applied::New) => MessageAcceptance::Accept,
            Ok(Applied::Old) => MessageAcceptance::Ignore,
            Ok(Applied::Gap) => {
                self.request_blocks(source);
                MessageAcceptance::Ignore
            }
            Err(problem) => {
                tracing::warn!(%source, %problem, "invalid block gossiped");
                MessageAcceptance::Reject
            }
        }
    }

    /// Reports the verdict on a gossip message, exactly once: forwarded
    /// only if accepted; a peer that sends invalid ones is banned.
    fn report_gossip(
        &mut self,
        topic: &'static str,
        message_id: &gossipsub::MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
    ) {
        self.metrics.gossip(
            topic,
            match acceptance {
                MessageAcceptance::Accept => "accept",
                MessageAcceptance::Reject => "reject",
                MessageAcceptance::Ignore => "ignore",
            },
        );
        let rejected = matches!(acceptance, MessageAcceptance::Reject);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, &source, acceptance);
        if rejected {
            self.ban_if_hostile(source);
        }
    }

    /// A gossiped transaction that is worth verifying, or the verdict on it
    /// without that (garbage, too large, a duplicate, a replay, no room).
    fn check_gossiped_transaction(&mut self, bytes: &[u8]) -> Result<(SignedTx, Checked), MessageAcceptance> {
        if bytes.len() > TX_BYTES_MAX {
            return Err(MessageAcceptance::Reject);
        }
        let tx = from_bytes::<SignedTx>(bytes).map_err(|_| MessageAcceptance::Reject)?;
        match self.mempool.check(&self.genesis, &tx) {
            Ok(checked) => Ok((tx, checked)),
            Err(error) => Err(self.verdict(&tx.id(&self.genesis.community_id), error)),
        }
    }

    /// Verifies the waiting transactions' signatures in one batch (one by
    /// one only if the batch fails), admits the valid ones in arrival order,
    /// relays the submitted ones and gives every sender its verdict.
    fn verify_waiting(&mut self) {
        if self.unverified.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.unverified, Vec::with_capacity(VERIFY_BATCH_MAX));
        self.metrics.verify_batches.inc();
        let community = self.genesis.community_id;
        let checks: Vec<_> = batch.iter().map(|waiting| waiting.tx.signature_checks(&community)).collect();
        let all_valid = verify_batch(checks.iter().flatten()).is_ok();
        for (Unverified { tx, checked, from }, checks) in batch.into_iter().zip(&checks) {
            let verified = if all_valid { Ok(()) } else { verify_batch(checks) };
            let result = match verified {
                Ok(()) => {
                    let bytes = matches!(from, Origin::Api { .. }).then(|| to_bytes(&tx));
                    let result =
                        self.mempool.admit_verified(&self.genesis, self.next_block_time_ms(), tx, checked);
                    if let (Ok(id), Some(bytes)) = (&result, bytes) {
                        // Relayed so that the validators (and every mempool) have it.
                        if !self.publish(true, bytes) {
                            self.unpublished.push(*id);
                        }
                    }
                    result
                }
                Err(error) => Err(SubmitError::Rejected(Rejection::from(error))),
            };
            match from {
                Origin::Api { reply } => self.answer(reply, result),
                Origin::Gossip { message_id, source } => {
                    let acceptance = match result {
                        Ok(_) => MessageAcceptance::Accept,
                        Err(error) => self.verdict(&checked.id, error),
                    };
                    self.report_gossip("tx", &message_id, source, acceptance);
                }
            }
        }
        self.metrics.mempool_transactions.set(gauge(self.mempool.len()));
    }

    /// Answers a submission through the API.
    fn answer(&self, reply: oneshot::Sender<Result<Hash, SubmitError>>, result: Result<Hash, SubmitError>) {
        self.metrics.submission(match &result {
            Ok(_) => "admitted",
            Err(SubmitError::Rejected(_)) => "rejected",
            Err(SubmitError::Duplicate(_)) => "duplicate",
            Err(_) => "mempool_full",
        });
        // A requester that went away does not care about the answer.
        let _ = reply.send(result);
    }

    /// The verdict on a gossiped transaction the mempool refused. A
    /// gossiped transaction is forwarded only if this node admits it.
    /// Garbage, oversized messages and bad signatures count against the
    /// peer that sent them. Anything else that does not fit is ignored, not
    /// forwarded and not held against the sender: honest peers see
    /// transactions in different orders and at different heights, and a
    /// loaded node validates its queue late, so a replay of a committed
    /// transaction (counted in `gridshare_gossip_replays_total`) cannot be
    /// told from a late copy. A used nonce is found before the signatures
    /// are checked, so a forged replay is ignored too: it cost a lookup.
    fn verdict(&self, id: &Hash, error: SubmitError) -> MessageAcceptance {
        match error {
            SubmitError::Rejected(Rejection::BadSignature(_)) => MessageAcceptance::Reject,
            SubmitError::Rejected(Rejection::StaleNonce { .. }) => {
                if self.index.transaction(id).is_ok_and(|found| found.is_some()) {
                    self.metrics.gossip_replays.inc();
                }
                MessageAcceptance::Ignore
            }
            _ => MessageAcceptance::Ignore,
        }
    }

    /// Verifies, executes and stores a certified block from a peer.
    fn apply(&mut self, bytes: &[u8]) -> Result<Applied, String> {
        let certified = from_bytes::<CertifiedBlock>(bytes).map_err(|error| error.to_string())?;
        let header = &certified.block.header;
        self.best_seen_height = self.best_seen_height.max(header.height);
        if header.height <= self.state.height {
            return Ok(Applied::Old);
        }
        if header.height > self.state.height + 1 {
            return Ok(Applied::Gap);
        }
        certified.certificate.verify(&self.genesis, header).map_err(|error| error.to_string())?;
        let next = self.check_block(&certified.block)?;
        self.commit_block(&certified, next, false).map_err(|error| error.to_string())?;
        Ok(Applied::New)
    }

    fn report(&mut self, certified: &CertifiedBlock) {
        let block = &certified.block;
        let height = block.header.height;
        let metrics = &self.metrics;
        metrics.height.set(i64::try_from(height).unwrap_or(i64::MAX));
        metrics.blocks_committed.inc();
        metrics.transactions_committed.inc_by(block.transactions.len() as u64);
        metrics.mempool_transactions.set(gauge(self.mempool.len()));
        let mut events = vec![Event::Block {
            height,
            hash: block.header.hash(),
            timestamp_ms: block.header.timestamp_ms,
            transactions: block.transactions.len(),
        }];
        for receipt in &block.receipts {
            match receipt {
                Receipt::Clearing(clearing) => {
                    metrics.intervals_cleared.inc();
                    metrics.trades.inc_by(clearing.trades.len() as u64);
                    tracing::info!(
                        height,
                        interval = clearing.interval,
                        offers = clearing.offers,
                        volume_wh = clearing.volume_wh,
                        price_micro_per_kwh = ?clearing.clearing_price_micro_per_kwh,
                        trades = clearing.trades.len(),
                        "interval cleared"
                    );
                    events.push(Event::Clearing { height, receipt: Arc::new(clearing.clone()) });
                }
                Receipt::Settlement(settlement) => {
                    metrics.settlements.inc();
                    tracing::info!(
                        height,
                        interval = settlement.interval,
                        bills = settlement.bills.len(),
                        "interval settled"
                    );
                    events.push(Event::Settlement { height, receipt: Arc::new(settlement.clone()) });
                }
            }
        }
        for event in events {
            // No subscriber is not an error.
            let _ = self.events.send(event);
        }
        if !block.transactions.is_empty() {
            tracing::debug!(height, transactions = block.transactions.len(), "block stored");
        }
    }
}

impl Chain for Node {
    fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    fn state(&self) -> &State {
        &self.state
    }

    fn block(&self, height: u64) -> Option<CertifiedBlock> {
        self.store.block(height).ok().flatten()
    }

    fn candidates(&mut self, time_ms: u64) -> Vec<SignedTx> {
        self.dev_transactions(time_ms);
        self.mempool.candidates()
    }

    fn next_block_time_ms(&self) -> u64 {
        Node::next_block_time_ms(self)
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn check(&self, block: &Block) -> Result<State, String> {
        self.check_block(block)
    }

    fn build(
        &self,
        candidates: Vec<SignedTx>,
        time_ms: u64,
        proposer: &Keypair,
    ) -> Result<(Block, State), String> {
        self.build_block(candidates, time_ms, proposer)
    }

    fn commit(&mut self, block: CertifiedBlock, state: State) -> Result<(), String> {
        self.commit_block(&block, state, true).map_err(|error| error.to_string())
    }

    fn record_equivocation(
        &mut self,
        evidence: &gridshare_ledger::consensus::Equivocation,
    ) -> Result<(), String> {
        self.store.record_equivocation(evidence).map_err(|error| error.to_string())
    }
}

fn gauge(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The data directory a node uses when none is given.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(std::env::temp_dir).join("gridshare-node")
}

/// Whether `dir` holds a ledger already.
pub fn has_ledger(dir: &Path) -> bool {
    dir.join(STORE_FILE_NAME).exists()
}
