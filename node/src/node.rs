//! The node's one event loop: a timer produces blocks, commands from the
//! HTTP API are answered, a shutdown signal ends the loop after the block
//! being stored. The rest of the node talks to it through a [`Client`].
//!
//! This version produces blocks with a single local validator (the dev
//! community); BFT consensus replaces `produce_block` behind the same loop.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gridshare_ledger::Hash;
use gridshare_ledger::block::{CertifiedBlock, Receipt};
use gridshare_ledger::encoding::{from_bytes, to_bytes};
use gridshare_ledger::execute::{Rejection, Signatures, execute};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::state::State;
use gridshare_ledger::store::{RedbStore, STORE_FILE_NAME, Store, StoreError};
use gridshare_ledger::testkit::{LocalValidator, TestCommunity};
use gridshare_ledger::tx::SignedTx;
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify, identity, mdns, request_response};
use tokio::sync::{mpsc, oneshot};

use crate::dev::{DevHouseholds, dev_market};
use crate::mempool::{Mempool, SubmitError};
use crate::network::{
    Behaviour, BehaviourEvent, SYNC_BLOCKS_MAX, SyncRequest, SyncResponse, Topics, build_swarm,
};

/// The genesis file in a data directory: the genesis's canonical bytes.
pub const GENESIS_FILE_NAME: &str = "genesis.bin";
/// The node's libp2p identity in a data directory (protobuf-encoded key).
pub const NODE_KEY_FILE_NAME: &str = "node.key";
/// How long start-up waits for the swarm to report its listen addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Commands waiting for the event loop at most.
pub const COMMANDS_MAX: usize = 1_024;

/// A request to the event loop, with where to send the answer.
#[derive(Debug)]
pub enum Command {
    Submit { tx: Box<SignedTx>, reply: oneshot::Sender<Result<Hash, SubmitError>> },
    Status { reply: oneshot::Sender<Status> },
    Block { height: u64, reply: oneshot::Sender<Result<Option<CertifiedBlock>, String>> },
    Account { key: gridshare_ledger::ids::PublicKey, reply: oneshot::Sender<Option<AccountView>> },
}

/// What `GET /v1/accounts/{key}` reports, in nano-currency.
#[derive(Clone, Debug)]
pub struct AccountView {
    pub currency: String,
    pub balance_nano: i128,
    pub reserved_nano: i128,
    pub credit_limit_nano: i128,
    pub available_nano: i128,
    pub open_offers: u32,
    pub last_nonce: u64,
}

/// What `GET /v1/status` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    pub community_id: String,
    pub name: String,
    pub height: u64,
    pub last_block_hash: String,
    pub last_block_time_ms: u64,
    pub next_clearing_interval: u64,
    pub next_settlement_interval: u64,
    pub role: &'static str,
    pub peers: usize,
    pub mempool_transactions: usize,
    pub accounts: usize,
    pub intervals_cleared: u64,
    pub trades: u64,
    pub energy_traded_wh: u64,
    pub settlements: u64,
}

/// The event loop has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the node is shutting down")]
pub struct NodeGone;

/// A handle to the event loop.
#[derive(Clone, Debug)]
pub struct Client {
    commands: mpsc::Sender<Command>,
}

impl Client {
    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NodeGone> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.map_err(|_| NodeGone)?;
        answer.await.map_err(|_| NodeGone)
    }

    pub async fn submit(&self, tx: SignedTx) -> Result<Result<Hash, SubmitError>, NodeGone> {
        self.ask(|reply| Command::Submit { tx: Box::new(tx), reply }).await
    }

    pub async fn status(&self) -> Result<Status, NodeGone> {
        self.ask(|reply| Command::Status { reply }).await
    }

    pub async fn block(&self, height: u64) -> Result<Result<Option<CertifiedBlock>, String>, NodeGone> {
        self.ask(|reply| Command::Block { height, reply }).await
    }

    pub async fn account(
        &self,
        key: gridshare_ledger::ids::PublicKey,
    ) -> Result<Option<AccountView>, NodeGone> {
        self.ask(|reply| Command::Account { key, reply }).await
    }
}

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The directory of the store (and, for a dev validator, the genesis).
    pub data_dir: PathBuf,
    pub block_time_ms: u64,
    /// Where the market swarm listens, e.g. `/ip4/127.0.0.1/tcp/0`.
    pub p2p_listen: Multiaddr,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
}

/// The node's event loop, to be awaited until shutdown.
pub type EventLoop = std::pin::Pin<Box<dyn Future<Output = Result<(), NodeError>> + Send>>;

/// A started node: its API client, its community, its libp2p identity and
/// addresses, and the event loop to run.
pub struct Started {
    pub client: Client,
    pub genesis: Genesis,
    pub peer_id: PeerId,
    pub listen_addresses: Vec<Multiaddr>,
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
    #[error("{0} already holds a ledger: a dev community starts fresh; use another --data-dir")]
    DataDirInUse(PathBuf),
    #[error("cannot create the data directory {path}: {error}")]
    DataDir { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the block producer failed: {0}")]
    Producer(String),
    #[error("invalid dev community: {0}")]
    Genesis(String),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error("the node key {path} cannot be read or written: {reason}")]
    NodeKey { path: PathBuf, reason: String },
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: Multiaddr, reason: String },
    #[error("cannot read the genesis {path}: {reason}")]
    GenesisFile { path: PathBuf, reason: String },
}

/// The dev market must make a valid genesis (e.g. a positive interval).
fn market_fits(market: &gridshare_ledger::genesis::MarketParams) -> Result<(), NodeError> {
    if market.interval_length_ms < 100 {
        return Err(NodeError::Genesis("intervals must be at least 100 ms".into()));
    }
    Ok(())
}

/// The state the event loop owns.
struct Node {
    genesis: Genesis,
    store: RedbStore,
    state: State,
    mempool: Mempool,
    /// The dev validator and its households; `None` on a replica.
    producer: Option<Producer>,
    swarm: Swarm<Behaviour>,
    topics: Topics,
    counters: Counters,
}

struct Producer {
    validator: LocalValidator,
    households: DevHouseholds,
}

/// What became of a certified block from a peer.
enum Applied {
    New,
    /// At or below our height: nothing to do.
    Old,
    /// Above our height + 1: we need the blocks in between.
    Gap,
}

#[derive(Default)]
struct Counters {
    intervals_cleared: u64,
    trades: u64,
    energy_traded_wh: u64,
    settlements: u64,
}

/// Milliseconds since the Unix epoch, from the system clock (the node is
/// an edge: the state machine never reads a clock).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// Creates the dev community in `config.data_dir` (writing its genesis
/// there for replicas) and starts its validator node.
pub async fn start_dev(
    config: NodeConfig,
    interval_ms: u64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, NodeError> {
    let path = prepare_data_dir(&config)?;
    let market = dev_market(interval_ms);
    market_fits(&market)?;
    // Intervals are aligned to wall-clock multiples of their length.
    let genesis_time_ms = now_ms() / interval_ms * interval_ms;
    let mut community = TestCommunity::new(1, 2, market, genesis_time_ms);
    community.genesis.name = "Gridshare dev community".into();
    let genesis = community.genesis.clone();
    let genesis_path = config.data_dir.join(GENESIS_FILE_NAME);
    std::fs::write(&genesis_path, to_bytes(&genesis))
        .map_err(|error| NodeError::DataDir { path: genesis_path, error })?;
    let validator = LocalValidator { keypair: Keypair::from_seed(community.validator.seed()) };
    let producer = Producer { validator, households: DevHouseholds::new(community) };
    let store = RedbStore::create(&path, &genesis)?;
    start(config, genesis, store, Some(producer), shutdown).await
}

/// Starts a replica (a household's non-voting node) of the community of
/// `genesis_path`: it receives certified blocks, verifies and executes them.
/// A data directory that already holds this community's ledger is reopened:
/// the store recovers its last committed block and the replica catches up.
pub async fn start_replica(
    config: NodeConfig,
    genesis_path: &std::path::Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, NodeError> {
    let bytes = std::fs::read(genesis_path)
        .map_err(|error| NodeError::GenesisFile { path: genesis_path.into(), reason: error.to_string() })?;
    let genesis = from_bytes::<Genesis>(&bytes)
        .map_err(|error| NodeError::GenesisFile { path: genesis_path.into(), reason: error.to_string() })?;
    genesis
        .validate()
        .map_err(|error| NodeError::GenesisFile { path: genesis_path.into(), reason: error.to_string() })?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|error| NodeError::DataDir { path: config.data_dir.clone(), error })?;
    let path = config.data_dir.join(STORE_FILE_NAME);
    let store = if path.exists() {
        let store = RedbStore::open(&path)?;
        let found = store.genesis()?.hash();
        if found != genesis.hash() {
            return Err(StoreError::GenesisMismatch { expected: genesis.hash(), found }.into());
        }
        tracing::info!(height = store.height()?, "reopened the ledger");
        store
    } else {
        RedbStore::create(&path, &genesis)?
    };
    start(config, genesis, store, None, shutdown).await
}

/// The node's libp2p identity, kept in the data directory so that peers
/// know it across restarts (it is separate from every ledger key).
fn node_identity(data_dir: &std::path::Path) -> Result<identity::Keypair, NodeError> {
    let path = data_dir.join(NODE_KEY_FILE_NAME);
    let damaged = |reason: String| NodeError::NodeKey { path: path.clone(), reason };
    match std::fs::read(&path) {
        Ok(bytes) => {
            identity::Keypair::from_protobuf_encoding(&bytes).map_err(|error| damaged(error.to_string()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let keypair = identity::Keypair::generate_ed25519();
            let bytes = keypair.to_protobuf_encoding().map_err(|error| damaged(error.to_string()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(|error| damaged(error.to_string()))?;
            std::io::Write::write_all(&mut file, &bytes).map_err(|error| damaged(error.to_string()))?;
            file.sync_all().map_err(|error| damaged(error.to_string()))?;
            Ok(keypair)
        }
        Err(error) => Err(damaged(error.to_string())),
    }
}

fn prepare_data_dir(config: &NodeConfig) -> Result<PathBuf, NodeError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|error| NodeError::DataDir { path: config.data_dir.clone(), error })?;
    let path = config.data_dir.join(STORE_FILE_NAME);
    if path.exists() {
        return Err(NodeError::DataDirInUse(config.data_dir.clone()));
    }
    Ok(path)
}

async fn start(
    config: NodeConfig,
    genesis: Genesis,
    store: RedbStore,
    producer: Option<Producer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, NodeError> {
    let state = store.state()?;
    let identity = node_identity(&config.data_dir)?;
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
    let node = Node {
        mempool: Mempool::new(state.clone()),
        genesis: genesis.clone(),
        store,
        state,
        producer,
        swarm,
        topics,
        counters: Counters::default(),
    };
    let (commands, inbox) = mpsc::channel(COMMANDS_MAX);
    let block_time = Duration::from_millis(config.block_time_ms.max(1));
    Ok(Started {
        client: Client { commands },
        genesis,
        peer_id,
        listen_addresses,
        event_loop: Box::pin(node.run(inbox, block_time, shutdown)),
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
        block_time: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NodeError> {
        let mut ticks = tokio::time::interval(block_time);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let producing = self.producer.is_some();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticks.tick(), if producing => self.produce_block()?,
                Some(command) = inbox.recv() => self.handle(command),
                event = self.swarm.select_next_some() => self.on_swarm_event(event)?,
                () = &mut shutdown => break,
            }
        }
        tracing::info!(height = self.state.height, "stopped after the last stored block");
        Ok(())
    }

    fn handle(&mut self, command: Command) {
        // A requester that went away does not care about the answer.
        match command {
            Command::Submit { tx, reply } => {
                let bytes = to_bytes(&*tx);
                let result = self.mempool.submit(&self.genesis, self.next_block_time_ms(), *tx);
                if result.is_ok() && self.producer.is_none() {
                    self.publish(true, bytes);
                }
                let _ = reply.send(result);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Block { height, reply } => {
                let _ = reply.send(self.store.block(height).map_err(|error| error.to_string()));
            }
            Command::Account { key, reply } => {
                let view = self.state.accounts.get(&key).map(|account| AccountView {
                    currency: self.genesis.currency.clone(),
                    balance_nano: account.balance_nano,
                    reserved_nano: account.reserved_nano,
                    credit_limit_nano: account.credit_limit_nano,
                    available_nano: account.available_nano(),
                    open_offers: account.open_offers,
                    last_nonce: account.last_nonce,
                });
                let _ = reply.send(view);
            }
        }
    }

    /// The next block's time: now, but strictly after the last block.
    fn next_block_time_ms(&self) -> u64 {
        now_ms().max(self.state.last_timestamp_ms + 1)
    }

    fn produce_block(&mut self) -> Result<(), NodeError> {
        let time_ms = self.next_block_time_ms();
        let Some(producer) = &mut self.producer else { return Ok(()) };
        for tx in producer.households.transactions(time_ms) {
            if let Err(error) = self.mempool.submit(&self.genesis, time_ms, tx) {
                tracing::warn!(%error, "a dev household's transaction was refused");
            }
        }
        let candidates = self.mempool.candidates();
        let (certified, built) = producer
            .validator
            .produce(&self.genesis, &self.state, candidates, time_ms)
            .map_err(|error| NodeError::Producer(error.to_string()))?;
        for (tx, rejection) in &built.left_out {
            tracing::warn!(kind = tx.tx.kind(), %rejection, "left out of the block");
        }
        self.store.commit(&certified, &built.state)?;
        self.state = built.state;
        self.after_block(&certified);
        self.publish(false, to_bytes(&certified));
        Ok(())
    }

    fn after_block(&mut self, certified: &CertifiedBlock) {
        let time_ms = self.next_block_time_ms();
        let dropped =
            self.mempool.after_block(&self.genesis, &self.state, &certified.block.transactions, time_ms);
        for (id, rejection) in dropped {
            tracing::info!(%id, %rejection, "dropped from the mempool");
        }
        self.report(certified);
    }

    /// Gossips a transaction or a certified block; with no peer yet there
    /// is nobody to tell, which is not an error.
    fn publish(&mut self, transaction: bool, bytes: Vec<u8>) {
        let topic = if transaction { self.topics.transactions.clone() } else { self.topics.blocks.clone() };
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(error) => tracing::warn!(%error, "cannot gossip"),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> Result<(), NodeError> {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let acceptance = if message.topic == self.topics.blocks.hash() {
                    self.on_gossiped_block(propagation_source, &message.data)
                } else {
                    self.on_gossiped_transaction(&message.data)
                };
                // Reported exactly once per message: forwarded only if accepted.
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    acceptance,
                );
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
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                tracing::info!(%peer_id, "connected");
                if self.producer.is_none() {
                    self.request_blocks(peer_id);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening"),
            _ => {}
        }
        Ok(())
    }

    fn request_blocks(&mut self, peer: PeerId) {
        let request = SyncRequest { from_height: self.state.height + 1, max_blocks: SYNC_BLOCKS_MAX };
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
        SyncResponse { blocks }
    }

    fn on_sync_response(&mut self, peer: PeerId, response: SyncResponse) {
        let full = u32::try_from(response.blocks.len()).is_ok_and(|count| count >= SYNC_BLOCKS_MAX);
        for bytes in &response.blocks {
            match self.apply(bytes) {
                Ok(Applied::New | Applied::Old) => {}
                Ok(Applied::Gap) => break,
                Err(problem) => {
                    tracing::warn!(%peer, %problem, "invalid block in a sync response");
                    return;
                }
            }
        }
        if full {
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

    fn on_gossiped_transaction(&mut self, bytes: &[u8]) -> MessageAcceptance {
        let Ok(tx) = from_bytes::<SignedTx>(bytes) else { return MessageAcceptance::Reject };
        match self.mempool.submit(&self.genesis, self.next_block_time_ms(), tx) {
            Ok(_) => MessageAcceptance::Accept,
            Err(SubmitError::Rejected(Rejection::BadSignature(_))) => MessageAcceptance::Reject,
            Err(_) => MessageAcceptance::Ignore,
        }
    }

    /// Verifies, executes and stores a certified block from a peer.
    fn apply(&mut self, bytes: &[u8]) -> Result<Applied, String> {
        let certified = from_bytes::<CertifiedBlock>(bytes).map_err(|error| error.to_string())?;
        let header = &certified.block.header;
        if header.height <= self.state.height {
            return Ok(Applied::Old);
        }
        if header.height > self.state.height + 1 {
            return Ok(Applied::Gap);
        }
        certified.certificate.verify(&self.genesis, header).map_err(|error| error.to_string())?;
        let (next, _) = execute(&self.genesis, &self.state, &certified.block, Signatures::Verify)
            .map_err(|error| error.to_string())?;
        self.store.commit(&certified, &next).map_err(|error| error.to_string())?;
        self.state = next;
        self.after_block(&certified);
        Ok(Applied::New)
    }

    fn report(&mut self, certified: &CertifiedBlock) {
        let block = &certified.block;
        for receipt in &block.receipts {
            match receipt {
                Receipt::Clearing(clearing) => {
                    self.counters.intervals_cleared += 1;
                    self.counters.trades += clearing.trades.len() as u64;
                    self.counters.energy_traded_wh += clearing.volume_wh;
                    tracing::info!(
                        height = block.header.height,
                        interval = clearing.interval,
                        offers = clearing.offers,
                        volume_wh = clearing.volume_wh,
                        price_micro_per_kwh = ?clearing.clearing_price_micro_per_kwh,
                        trades = clearing.trades.len(),
                        "interval cleared"
                    );
                }
                Receipt::Settlement(settlement) => {
                    self.counters.settlements += 1;
                    tracing::info!(
                        height = block.header.height,
                        interval = settlement.interval,
                        bills = settlement.bills.len(),
                        "interval settled"
                    );
                }
            }
        }
        if !block.transactions.is_empty() {
            tracing::debug!(
                height = block.header.height,
                transactions = block.transactions.len(),
                "block stored"
            );
        }
    }

    fn status(&self) -> Status {
        Status {
            community_id: self.genesis.community_id.to_string(),
            name: self.genesis.name.clone(),
            role: if self.producer.is_some() { "validator" } else { "replica" },
            peers: self.swarm.connected_peers().count(),
            height: self.state.height,
            last_block_hash: self.state.last_block_hash.to_string(),
            last_block_time_ms: self.state.last_timestamp_ms,
            next_clearing_interval: self.state.next_clearing_interval,
            next_settlement_interval: self.state.next_settlement_interval,
            mempool_transactions: self.mempool.len(),
            accounts: self.state.accounts.len(),
            intervals_cleared: self.counters.intervals_cleared,
            trades: self.counters.trades,
            energy_traded_wh: self.counters.energy_traded_wh,
            settlements: self.counters.settlements,
        }
    }
}
