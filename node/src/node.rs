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
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::state::State;
use gridshare_ledger::store::{RedbStore, STORE_FILE_NAME, Store, StoreError};
use gridshare_ledger::testkit::{LocalValidator, TestCommunity};
use gridshare_ledger::tx::SignedTx;
use tokio::sync::{mpsc, oneshot};

use crate::dev::{DevHouseholds, dev_market};
use crate::mempool::{Mempool, SubmitError};

/// Commands waiting for the event loop at most.
pub const COMMANDS_MAX: usize = 1_024;

/// A request to the event loop, with where to send the answer.
#[derive(Debug)]
pub enum Command {
    Submit { tx: Box<SignedTx>, reply: oneshot::Sender<Result<Hash, SubmitError>> },
    Status { reply: oneshot::Sender<Status> },
    Block { height: u64, reply: oneshot::Sender<Result<Option<CertifiedBlock>, String>> },
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
}

/// How a dev node runs.
#[derive(Clone, Debug)]
pub struct DevConfig {
    /// A new or empty directory for the store.
    pub data_dir: PathBuf,
    pub block_time_ms: u64,
    pub interval_ms: u64,
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
    validator: LocalValidator,
    households: DevHouseholds,
    counters: Counters,
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

/// Creates the dev community in `config.data_dir` and returns the client,
/// the genesis and the event loop to run.
pub fn start_dev(
    config: DevConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Client, Genesis, impl Future<Output = Result<(), NodeError>>), NodeError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|error| NodeError::DataDir { path: config.data_dir.clone(), error })?;
    let path = config.data_dir.join(STORE_FILE_NAME);
    if path.exists() {
        return Err(NodeError::DataDirInUse(config.data_dir));
    }
    // Intervals are aligned to wall-clock multiples of their length.
    let market = dev_market(config.interval_ms);
    market_fits(&market)?;
    let interval_ms = market.interval_length_ms;
    let genesis_time_ms = now_ms() / interval_ms * interval_ms;
    let mut community = TestCommunity::new(1, 2, market, genesis_time_ms);
    community.genesis.name = "Gridshare dev community".into();
    let genesis = community.genesis.clone();
    let store = RedbStore::create(&path, &genesis)?;
    let state = State::genesis(&genesis);
    let validator = LocalValidator { keypair: Keypair::from_seed(community.validator.seed()) };
    let node = Node {
        mempool: Mempool::new(state.clone()),
        genesis: genesis.clone(),
        store,
        state,
        validator,
        households: DevHouseholds::new(community),
        counters: Counters::default(),
    };
    let (commands, inbox) = mpsc::channel(COMMANDS_MAX);
    let block_time = Duration::from_millis(config.block_time_ms.max(1));
    Ok((Client { commands }, genesis, node.run(inbox, block_time, shutdown)))
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
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.produce_block()?,
                Some(command) = inbox.recv() => self.handle(command),
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
                let result = self.mempool.submit(&self.genesis, self.next_block_time_ms(), *tx);
                let _ = reply.send(result);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Block { height, reply } => {
                let _ = reply.send(self.store.block(height).map_err(|error| error.to_string()));
            }
        }
    }

    /// The next block's time: now, but strictly after the last block.
    fn next_block_time_ms(&self) -> u64 {
        now_ms().max(self.state.last_timestamp_ms + 1)
    }

    fn produce_block(&mut self) -> Result<(), NodeError> {
        let time_ms = self.next_block_time_ms();
        for tx in self.households.transactions(time_ms) {
            if let Err(error) = self.mempool.submit(&self.genesis, time_ms, tx) {
                tracing::warn!(%error, "a dev household's transaction was refused");
            }
        }
        let candidates = self.mempool.candidates();
        let (certified, built) = self
            .validator
            .produce(&self.genesis, &self.state, candidates, time_ms)
            .map_err(|error| NodeError::Producer(error.to_string()))?;
        for (tx, rejection) in &built.left_out {
            tracing::warn!(kind = tx.tx.kind(), %rejection, "left out of the block");
        }
        self.store.commit(&certified, &built.state)?;
        self.state = built.state;
        let dropped =
            self.mempool.after_block(&self.genesis, &self.state, &certified.block.transactions, time_ms + 1);
        for (id, rejection) in dropped {
            tracing::info!(%id, %rejection, "dropped from the mempool");
        }
        self.report(&certified);
        Ok(())
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
