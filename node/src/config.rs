//! A node's data directory: its commented `config.toml`, the community's
//! genesis, the libp2p identity and the validator key, and how `init`
//! creates them. Everything a node needs to restart is in this directory.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use gridshare_ledger::encoding::{from_bytes, to_bytes};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::Keypair;
use libp2p::Multiaddr;
use serde::Deserialize;

/// The configuration file in a data directory.
pub const CONFIG_FILE_NAME: &str = "config.toml";
/// The genesis file in a data directory: the genesis's canonical bytes.
pub const GENESIS_FILE_NAME: &str = "genesis.bin";
/// The node's libp2p identity in a data directory (protobuf-encoded key).
pub const NODE_KEY_FILE_NAME: &str = "node.key";
/// The node's validator key: the hex seed of an ed25519 ledger key. It signs
/// blocks only if its public key is one of the genesis validators.
pub const VALIDATOR_KEY_FILE_NAME: &str = "validator.key";
/// The index of blocks by transaction and interval, derived from the ledger.
pub const INDEX_FILE_NAME: &str = "index.redb";
/// The record of the transactions the node acknowledged and dropped.
pub const ACKNOWLEDGED_FILE_NAME: &str = "acknowledged.redb";
/// The bearer token of the admin API, made on first use when the admin API
/// is enabled without a token file of the operator's.
pub const ADMIN_TOKEN_FILE_NAME: &str = "admin.token";
/// The largest admin token file read.
const ADMIN_TOKEN_BYTES_MAX: u64 = 1024;
/// An admin token the operator chose has at least this many characters.
const ADMIN_TOKEN_CHARS_MIN: usize = 16;
/// The largest config file read.
const CONFIG_BYTES_MAX: u64 = 64 * 1024;
/// The largest genesis file read.
const GENESIS_BYTES_MAX: u64 = 1 << 20;

/// The settings of `config.toml`. Every field has a default, so an empty
/// file is a valid configuration; command-line flags override it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the local HTTP API.
    pub api: SocketAddr,
    /// Where the market swarm listens.
    pub p2p_listen: Multiaddr,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Market connections accepted from one IP address at most.
    pub p2p_connections_per_ip_max: NonZeroUsize,
    /// Target time between blocks, for a validator.
    pub block_time_ms: u64,
    /// Where a validator's consensus swarm listens.
    pub consensus_listen: Multiaddr,
    /// The other validators' consensus addresses.
    pub consensus_peers: Vec<Multiaddr>,
    /// Consensus connections accepted from one IP address at most.
    pub consensus_connections_per_ip_max: NonZeroUsize,
    /// Threads of the async runtime: 1 runs the whole node on one thread;
    /// absent, one per core.
    pub worker_threads: Option<NonZeroUsize>,
    /// Serve the admin API (`POST /v1/admin/isolate`, for test networks).
    pub enable_admin_api: bool,
    /// The file holding the admin API's bearer token; absent, the data
    /// directory's `admin.token`, made on first use.
    pub admin_token_file: Option<PathBuf>,
    /// Host names the API answers to besides IP addresses and `localhost`.
    pub api_hosts: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            api: SocketAddr::from(([127, 0, 0, 1], 8700)),
            p2p_listen: "/ip4/0.0.0.0/tcp/4700".parse().unwrap_or_else(|_| Multiaddr::empty()),
            bootstrap: Vec::new(),
            mdns: true,
            p2p_connections_per_ip_max: NonZeroUsize::new(32).unwrap_or(NonZeroUsize::MIN),
            block_time_ms: 1_000,
            consensus_listen: "/ip4/0.0.0.0/tcp/4800".parse().unwrap_or_else(|_| Multiaddr::empty()),
            consensus_peers: Vec::new(),
            consensus_connections_per_ip_max: NonZeroUsize::new(16).unwrap_or(NonZeroUsize::MIN),
            worker_threads: None,
            enable_admin_api: false,
            admin_token_file: None,
            api_hosts: Vec::new(),
        }
    }
}

/// The commented file `init` writes: every setting, with its default.
pub const CONFIG_TEMPLATE: &str = r#"# gridshare-node configuration. Flags of `gridshare-node run` override these.

# Address of the local HTTP API (wallets, dashboards, auditors). Keep it on
# loopback unless a reverse proxy with authentication is in front of it.
api = "127.0.0.1:8700"

# Host names the API answers to besides IP addresses and localhost, such as
# a reverse proxy's public name. A request naming another host is refused,
# so a web page cannot reach this node through a domain of its own that
# points at this machine (DNS rebinding).
api_hosts = []

# Where the market swarm (libp2p: TCP + Noise + Yamux) listens.
p2p_listen = "/ip4/0.0.0.0/tcp/4700"

# Peers to dial at start: the community's validators or any other node, as
# "/ip4/ADDRESS/tcp/PORT/p2p/PEER_ID" (each node prints its own at start).
bootstrap = []

# Discover peers on the local network with mDNS.
mdns = true

# Market connections accepted from one IP address at most, so that one host
# cannot take every incoming slot. Raise it when many nodes share an
# address: a test network on one host, households behind one carrier NAT.
p2p_connections_per_ip_max = 32

# Target time between blocks, when this node is one of the community's validators.
block_time_ms = 1000

# Validators only: where the consensus swarm (Malachite) listens, and the
# other validators' consensus addresses with the `Consensus id` that
# `gridshare-node init` printed for each, as "/ip4/ADDRESS/tcp/PORT/p2p/ID".
# Only these peers may connect to the consensus swarm.
consensus_listen = "/ip4/0.0.0.0/tcp/4800"
consensus_peers = []

# Validators only: consensus connections accepted from one IP address at most
# (against a host that opens many with made-up peer ids). Validators that
# share a host, as in a test network, count against it together.
consensus_connections_per_ip_max = 16

# Threads that run the node (network, consensus, API); one per core unless
# set. Nodes that share a machine, as in a test network, do best with 1 each
# (fewer threads waking each other on the same cores).
# worker_threads = 1

# The admin API (POST /v1/admin/isolate, which cuts the node off from its
# peers for a while) is for test networks. Enabled, it answers only requests
# with `Authorization: Bearer TOKEN`, the token in admin_token_file or, by
# default, in admin.token in the data directory (made on first use, readable
# by the owner only).
enable_admin_api = false
# admin_token_file = "/path/to/token"
"#;

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{dir} holds the genesis of another community ({found}); this one is {expected}: use another --data-dir"
    )]
    OtherCommunity { dir: PathBuf, expected: String, found: String },
    #[error("{0} has no genesis: run `gridshare-node init --data-dir DIR --genesis FILE` first")]
    NoGenesis(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |error| ConfigError::Io { path: path.to_path_buf(), error }
}

/// Reads a file of at most `max` bytes.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, ConfigError> {
    let length = std::fs::metadata(path).map_err(io(path))?.len();
    if length > max {
        return Err(ConfigError::TooLarge { path: path.to_path_buf(), max });
    }
    std::fs::read(path).map_err(io(path))
}

/// Reads `config.toml` from `data_dir`; a missing file means the defaults.
pub fn read_config(data_dir: &Path) -> Result<Config, ConfigError> {
    let path = data_dir.join(CONFIG_FILE_NAME);
    if !path.exists() {
        return Ok(Config::default());
    }
    let bytes = read_bounded(&path, CONFIG_BYTES_MAX)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigError::Invalid { path: path.clone(), reason: "not UTF-8 text".into() })?;
    toml::from_str(&text).map_err(|error| ConfigError::Invalid { path, reason: error.to_string() })
}

/// Reads and validates a genesis file (canonical bytes).
pub fn read_genesis(path: &Path) -> Result<Genesis, ConfigError> {
    let bytes = read_bounded(path, GENESIS_BYTES_MAX)?;
    let invalid = |reason: String| ConfigError::Invalid { path: path.to_path_buf(), reason };
    let genesis = from_bytes::<Genesis>(&bytes).map_err(|error| invalid(error.to_string()))?;
    genesis.validate().map_err(|error| invalid(error.to_string()))?;
    Ok(genesis)
}

/// Writes `bytes` to a new file at `path` that only the owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io(path))?;
    std::io::Write::write_all(&mut file, bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// The node's validator key, created on first use.
pub fn validator_key(data_dir: &Path) -> Result<Keypair, ConfigError> {
    let path = data_dir.join(VALIDATOR_KEY_FILE_NAME);
    if path.exists() {
        let text = read_bounded(&path, 1024)?;
        let mut seed = [0_u8; 32];
        hex::decode_to_slice(String::from_utf8_lossy(&text).trim(), &mut seed).map_err(|error| {
            ConfigError::Invalid { path: path.clone(), reason: format!("not a 64-digit hex seed: {error}") }
        })?;
        return Ok(Keypair::from_seed(seed));
    }
    let mut seed = [0_u8; 32];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut seed).map_err(|error| {
        ConfigError::Io { path: path.clone(), error: std::io::Error::other(error.to_string()) }
    })?;
    write_private(&path, format!("{}\n", hex::encode(seed)).as_bytes())?;
    Ok(Keypair::from_seed(seed))
}

/// The node's libp2p identity, created on first use and kept so that peers
/// know the node across restarts (it is separate from every ledger key).
pub fn node_identity(data_dir: &Path) -> Result<libp2p::identity::Keypair, ConfigError> {
    let path = data_dir.join(NODE_KEY_FILE_NAME);
    let invalid = |reason: String| ConfigError::Invalid { path: path.clone(), reason };
    if path.exists() {
        let bytes = read_bounded(&path, 1024)?;
        return libp2p::identity::Keypair::from_protobuf_encoding(&bytes)
            .map_err(|error| invalid(error.to_string()));
    }
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let bytes = keypair.to_protobuf_encoding().map_err(|error| invalid(error.to_string()))?;
    write_private(&path, &bytes)?;
    Ok(keypair)
}

/// The admin API's bearer token: the contents of `file` if the operator
/// names one, else the data directory's `admin.token`, made with a fresh
/// random token (owner-only) if it does not exist yet.
pub fn admin_token(data_dir: &Path, file: Option<&Path>) -> Result<String, ConfigError> {
    let generated = data_dir.join(ADMIN_TOKEN_FILE_NAME);
    let path = file.unwrap_or(&generated);
    if file.is_some() || path.exists() {
        let bytes = read_bounded(path, ADMIN_TOKEN_BYTES_MAX)?;
        let token = String::from_utf8_lossy(&bytes).trim().to_string();
        if token.chars().count() < ADMIN_TOKEN_CHARS_MIN || token.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                reason: format!(
                    "an admin token is at least {ADMIN_TOKEN_CHARS_MIN} printable ASCII characters without spaces"
                ),
            });
        }
        return Ok(token);
    }
    let mut secret = [0_u8; 32];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut secret).map_err(|error| {
        ConfigError::Io { path: path.to_path_buf(), error: std::io::Error::other(error.to_string()) }
    })?;
    let token = hex::encode(secret);
    write_private(path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// What `init` made.
#[derive(Debug)]
pub struct Initialized {
    pub validator_key: Keypair,
    pub genesis: Option<Genesis>,
}

/// Creates (or completes) a data directory: the config file and validator
/// key if missing, and the genesis if given. Re-running it is harmless; a
/// genesis of another community is refused.
pub fn init(data_dir: &Path, genesis: Option<&Path>) -> Result<Initialized, ConfigError> {
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let config = data_dir.join(CONFIG_FILE_NAME);
    if !config.exists() {
        std::fs::write(&config, CONFIG_TEMPLATE).map_err(io(&config))?;
    }
    let validator_key = validator_key(data_dir)?;
    node_identity(data_dir)?;
    let genesis = match genesis {
        None => installed_genesis(data_dir)?,
        Some(source) => {
            let genesis = read_genesis(source)?;
            let target = data_dir.join(GENESIS_FILE_NAME);
            match installed_genesis(data_dir)? {
                Some(installed) if installed.hash() != genesis.hash() => {
                    return Err(ConfigError::OtherCommunity {
                        dir: data_dir.to_path_buf(),
                        expected: genesis.community_id.to_string(),
                        found: installed.community_id.to_string(),
                    });
                }
                Some(_) => {}
                None => std::fs::write(&target, to_bytes(&genesis)).map_err(io(&target))?,
            }
            Some(genesis)
        }
    };
    Ok(Initialized { validator_key, genesis })
}

/// The genesis installed in a data directory, if any.
pub fn installed_genesis(data_dir: &Path) -> Result<Option<Genesis>, ConfigError> {
    let path = data_dir.join(GENESIS_FILE_NAME);
    if !path.exists() {
        return Ok(None);
    }
    read_genesis(&path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_to_the_defaults() {
        assert_eq!(toml::from_str::<Config>(CONFIG_TEMPLATE).unwrap(), Config::default());
    }

    #[test]
    fn unknown_settings_and_bad_values_are_named() {
        let error = toml::from_str::<Config>("blocktime = 5").unwrap_err().to_string();
        assert!(error.contains("unknown field `blocktime`"), "{error}");
        let error = toml::from_str::<Config>("api = \"localhost\"").unwrap_err().to_string();
        assert!(error.contains("api"), "{error}");
        let error = toml::from_str::<Config>("consensus_connections_per_ip_max = 0").unwrap_err().to_string();
        assert!(error.contains("consensus_connections_per_ip_max") && error.contains("nonzero"), "{error}");
        let error = toml::from_str::<Config>("worker_threads = 0").unwrap_err().to_string();
        assert!(error.contains("worker_threads") && error.contains("nonzero"), "{error}");
        let config = toml::from_str::<Config>("worker_threads = 1").unwrap();
        assert_eq!(config.worker_threads, NonZeroUsize::new(1));
    }

    #[test]
    fn init_keeps_its_keys_and_refuses_another_community() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(dir.path(), None).unwrap();
        let again = init(dir.path(), None).unwrap();
        assert_eq!(first.validator_key.public(), again.validator_key.public());
        assert!(again.genesis.is_none());

        let community =
            gridshare_ledger::testkit::TestCommunity::new(1, 1, gridshare_ledger::testkit::test_market(), 0);
        let other =
            gridshare_ledger::testkit::TestCommunity::new(2, 1, gridshare_ledger::testkit::test_market(), 0);
        let file = dir.path().join("one.bin");
        std::fs::write(&file, to_bytes(&community.genesis)).unwrap();
        let other_file = dir.path().join("other.bin");
        std::fs::write(&other_file, to_bytes(&other.genesis)).unwrap();
        assert_eq!(init(dir.path(), Some(&file)).unwrap().genesis, Some(community.genesis.clone()));
        assert!(init(dir.path(), Some(&file)).is_ok());
        let refused = init(dir.path(), Some(&other_file)).unwrap_err();
        assert!(matches!(refused, ConfigError::OtherCommunity { .. }), "{refused}");
    }

    #[test]
    fn the_admin_token_is_made_once_owner_only_or_read_from_the_operators_file() {
        let dir = tempfile::tempdir().unwrap();
        let made = admin_token(dir.path(), None).unwrap();
        assert_eq!(made.len(), 64, "{made}");
        assert_eq!(admin_token(dir.path(), None).unwrap(), made, "kept across restarts");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE_NAME)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let chosen = dir.path().join("chosen.token");
        std::fs::write(&chosen, "correct-horse-battery-staple\n").unwrap();
        assert_eq!(admin_token(dir.path(), Some(&chosen)).unwrap(), "correct-horse-battery-staple");
        std::fs::write(&chosen, "short").unwrap();
        assert!(matches!(admin_token(dir.path(), Some(&chosen)), Err(ConfigError::Invalid { .. })));
        let missing = dir.path().join("missing.token");
        assert!(matches!(admin_token(dir.path(), Some(&missing)), Err(ConfigError::Io { .. })));
    }

    #[test]
    fn a_damaged_genesis_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("genesis.bin");
        std::fs::write(&file, b"not a genesis").unwrap();
        let error = read_genesis(&file).unwrap_err().to_string();
        assert!(error.contains("genesis.bin"), "{error}");
    }
}
