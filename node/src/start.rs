//! Start-up: a node of a data directory (`start`) or a dev community
//! (`start_dev`) is opened (genesis, keys, store, index, chain core),
//! its market swarm listens, a validator starts consensus, and the event
//! loop is assembled with its client; and the data directory's defaults.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::store::{RedbStore, STORE_FILE_NAME, Store};
use gridshare_ledger::testkit::TestCommunity;
use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm};

use crate::acknowledged::{Acknowledged, DROPPED_REMEMBERED_MAX};
use crate::chain::{ChainCore, Role, VERIFY_BATCH_MAX};
use crate::config::{
    self, ACKNOWLEDGED_FILE_NAME, ConfigError, GENESIS_FILE_NAME, INDEX_FILE_NAME, VALIDATOR_KEY_FILE_NAME,
};
use crate::consensus::app::{Consensus, ConsensusNetwork};
use crate::dev::{DevHouseholds, dev_market};
use crate::index::Index;
use crate::mempool::{MEMPOOL_PER_SIGNER_MAX, MEMPOOL_TRANSACTIONS_MAX};
use crate::metrics::Metrics;
use crate::network::{
    BANNED_PEERS_MAX, Behaviour, GOSSIP_BYTES_MAX, SYNC_BLOCKS_MAX, TX_BYTES_MAX, build_swarm,
};
use crate::node::{COMMANDS_MAX, DevError, EVENTS_BUFFER, NodeConfig, NodeError, Parts, Started, event_loop};

/// How long start-up waits for the swarm to report its listen addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The directory of a dev community's keys for wallets (the registrar's and
/// the DSO's).
pub const DEV_KEYS_DIR_NAME: &str = "dev-keys";
/// The shortest delivery interval of a dev community.
pub const DEV_INTERVAL_MIN_MS: u64 = 100;

/// Starts the dev community in `config.data_dir`: a new one (writing its
/// genesis, validator key, registrar key and DSO key there), or the one already in
/// it, whose simulated households resume from the ledger.
pub async fn start_dev(
    config: NodeConfig,
    interval_ms: u64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, NodeError> {
    let data_dir = &config.data_dir;
    if interval_ms < DEV_INTERVAL_MIN_MS {
        return Err(DevError::IntervalTooShort { interval_ms, min_ms: DEV_INTERVAL_MIN_MS }.into());
    }
    let existing = config::installed_genesis(data_dir)?;
    let (market, genesis_time_ms) = match &existing {
        Some(genesis) => (genesis.market.clone(), genesis.genesis_time_ms),
        // Intervals are aligned to wall-clock multiples of their length.
        None => (dev_market(interval_ms), config.clock.now_ms() / interval_ms * interval_ms),
    };
    let mut community = TestCommunity::new(1, 2, market, genesis_time_ms);
    community.genesis.name = "Gridshare dev community".into();
    let genesis = community.genesis.clone();
    if let Some(existing) = existing {
        if existing != genesis {
            return Err(DevError::OtherCommunity { data_dir: data_dir.clone() }.into());
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
        let dso = data_dir.join(DEV_KEYS_DIR_NAME).join("dso.seed");
        config::write_private(&dso, seed(&community.dso).as_bytes())?;
        let path = data_dir.join(GENESIS_FILE_NAME);
        std::fs::write(&path, to_bytes(&genesis)).map_err(|error| ConfigError::Io { path, error })?;
    }
    let store = RedbStore::create(data_dir.join(STORE_FILE_NAME), &genesis)?;
    let key = Keypair::from_seed(community.validator.seed());
    let households = DevHouseholds::resume(community, &store.state()?);
    launch(config, genesis, store, Some(key), Some(households), shutdown).await
}

/// Starts the node of the data directory (made by `init`): the community's
/// validator if the directory's validator key is one of the genesis's
/// validators, otherwise a replica that verifies and executes every
/// certified block. An existing ledger is reopened and the node catches up.
pub async fn start(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, NodeError> {
    let data_dir = &config.data_dir;
    let genesis =
        config::installed_genesis(data_dir)?.ok_or_else(|| ConfigError::NoGenesis(data_dir.clone()))?;
    let key = config::validator_key(data_dir)?;
    let validator_key = genesis.voting_power_of(&key.public()).map(|_| key);
    let store = RedbStore::create(data_dir.join(STORE_FILE_NAME), &genesis)?;
    tracing::info!(height = store.height()?, "opened the ledger");
    launch(config, genesis, store, validator_key, None, shutdown).await
}

/// Opens the chain core on `store` and the index, starts the market swarm
/// and, with a `validator_key`, consensus; returns the client and the event
/// loop to run.
async fn launch(
    config: NodeConfig,
    genesis: Genesis,
    store: RedbStore,
    validator_key: Option<Keypair>,
    households: Option<DevHouseholds>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, NodeError> {
    let index = Index::open(&config.data_dir.join(INDEX_FILE_NAME), &genesis.hash())?;
    let role = match validator_key {
        Some(_) => Role::Validator { households: households.map(Box::new) },
        None => Role::Replica,
    };
    let acknowledged = Acknowledged::open(&config.data_dir.join(ACKNOWLEDGED_FILE_NAME))?;
    let core = ChainCore::new(genesis.clone(), store, index, acknowledged, role)?;
    let identity = config::node_identity(&config.data_dir)?;
    for address in
        [&config.p2p_listen].into_iter().chain(validator_key.is_some().then_some(&config.consensus_listen))
    {
        crate::network::check_port_free(address)
            .map_err(|error| NodeError::Listen { address: address.clone(), source: error.into() })?;
    }
    let (mut swarm, topics) =
        build_swarm(identity, &genesis.community_id, config.mdns, config.p2p_connections_per_ip_max)?;
    swarm
        .listen_on(config.p2p_listen.clone())
        .map_err(|error| NodeError::Listen { address: config.p2p_listen.clone(), source: error.into() })?;
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
        ("dropped_remembered_max", usize::try_from(DROPPED_REMEMBERED_MAX).unwrap_or(usize::MAX)),
        ("api_request_bytes_max", crate::api::REQUEST_BYTES_MAX),
        ("api_streams_max", gridshare_api::bounds::STREAMS_MAX),
    ]));
    metrics.height.set(i64::try_from(core.state().height).unwrap_or(i64::MAX));
    let consensus = match validator_key {
        Some(key) => {
            let network = ConsensusNetwork {
                listen: config.consensus_listen.clone(),
                peers: config.consensus_peers.clone(),
                connections_per_ip_max: config.consensus_connections_per_ip_max,
            };
            let consensus = Consensus::start(
                &genesis,
                key,
                config::node_identity(&config.data_dir)?,
                network,
                &config.data_dir,
                Duration::from_millis(config.block_time_ms.max(1)),
            )
            .await?;
            Some(consensus)
        }
        None => None,
    };
    let validator = core.is_validator();
    let parts = Parts {
        core,
        swarm,
        topics,
        consensus,
        bootstrap: config.bootstrap.clone(),
        clock: config.clock,
        metrics,
    };
    let (client, event_loop) = event_loop(parts, shutdown);
    Ok(Started { client, genesis, peer_id, listen_addresses, validator, event_loop })
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

/// The data directory a node uses when none is given.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(std::env::temp_dir).join("gridshare-node")
}

/// Whether `dir` holds a ledger already.
pub fn has_ledger(dir: &Path) -> bool {
    dir.join(STORE_FILE_NAME).exists()
}
