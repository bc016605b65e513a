//! Start-up: a node of a data directory (`start`) or a dev community
//! (`start_dev`), and the data directory's defaults.

use std::future::Future;
use std::path::{Path, PathBuf};

use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::store::{RedbStore, STORE_FILE_NAME, Store};
use gridshare_ledger::testkit::TestCommunity;

use crate::config::{self, ConfigError, GENESIS_FILE_NAME, VALIDATOR_KEY_FILE_NAME};
use crate::dev::{DevHouseholds, dev_market};
use crate::node::{DevError, NodeConfig, NodeError, Producer, Started, launch};

/// The directory of a dev community's keys for wallets (the registrar's).
pub const DEV_KEYS_DIR_NAME: &str = "dev-keys";
/// The shortest delivery interval of a dev community.
pub const DEV_INTERVAL_MIN_MS: u64 = 100;

/// Starts the dev community in `config.data_dir`: a new one (writing its
/// genesis, validator key and registrar key there), or the one already in
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

/// The data directory a node uses when none is given.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(std::env::temp_dir).join("gridshare-node")
}

/// Whether `dir` holds a ledger already.
pub fn has_ledger(dir: &Path) -> bool {
    dir.join(STORE_FILE_NAME).exists()
}
