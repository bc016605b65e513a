//! Real `gridshare-node` processes: finding (or building) the binary,
//! `init` and `genesis new`, and each node of the community started,
//! restarted on the same addresses and signalled (SIGKILL and restart,
//! SIGSTOP/SIGCONT, SIGTERM) through the API crate's process harness, which
//! reads each child's stdout until it exits (a node whose stdout is closed
//! dies on its next print) and keeps its stderr (the log) in a file the
//! checks read; and a client of each node's API at its current address.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use gridshare_api::client::{Client, Timeouts};
use gridshare_api::harness::{self, HarnessError, NodeLaunch, NodeProcess, STOP_TIMEOUT, Signal, log_tail};

/// The node binary's name.
pub const NODE_BINARY: &str = harness::NODE_BINARY;
/// The log filter of every node: warnings, and the node's own info lines
/// (among them every transaction dropped from a mempool, with its reason).
const NODE_LOG_FILTER: &str = "warn,gridshare_node=info";

/// Why a node process could not be made, started or signalled.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{path} does not exist; build it with: {command}")]
    NodeBinaryMissing { path: String, command: String },
    #[error("building gridshare-node failed ({status}); the command was: {command}")]
    Build { command: String, status: String },
    #[error("cannot start {what}: {error}")]
    Spawn { what: String, error: std::io::Error },
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("{node} is not running")]
    NotRunning { node: String },
}

/// The profile directory (`target/release`, `target/debug`) the testnet
/// binary runs from, if it runs from a cargo target directory.
fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.to_path_buf())
}

/// The `cargo build` command that builds the node next to this binary.
fn build_command(profile: &Path) -> (String, Vec<String>) {
    let cargo = std::env::var("CARGO")
        .ok()
        .or_else(|| option_env!("CARGO").map(str::to_string))
        .unwrap_or_else(|| "cargo".into());
    let mut args = vec!["build".to_string(), "--locked".to_string()];
    match profile.file_name().and_then(|name| name.to_str()) {
        Some("release") => args.push("--release".into()),
        Some("debug") | None => {}
        Some(other) => args.extend(["--profile".into(), other.to_string()]),
    }
    // The pair the README's first command builds in one go: cargo unifies
    // the features of the packages one invocation builds, so each shared
    // crate is compiled once, and this build is then a no-op. Building the
    // node alone would compile every crate the two share a second time,
    // with the node's features.
    args.extend(["-p".into(), "gridshare-node".into(), "-p".into(), "gridshare-testnet".into()]);
    if let Some(target_dir) = profile.parent() {
        args.extend(["--target-dir".into(), target_dir.display().to_string()]);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("Cargo.toml");
    args.extend(["--manifest-path".into(), workspace.display().to_string()]);
    (cargo, args)
}

/// The `gridshare-node` binary: `explicit` if given; otherwise the one next
/// to this binary, which is first brought up to date with `cargo build`
/// when this binary runs from the workspace's target directory (a no-op
/// when nothing changed, as after the README's `cargo build -p
/// gridshare-node -p gridshare-testnet`). `cargo run -p gridshare-testnet`
/// does not build other packages' binaries, so without this a fresh
/// checkout would have no node, and an old checkout a stale one.
pub fn node_binary(explicit: Option<&Path>) -> Result<PathBuf, ProcessError> {
    if let Some(path) = explicit {
        if !path.exists() {
            return Err(ProcessError::NodeBinaryMissing {
                path: path.display().to_string(),
                command: "cargo build --release --locked -p gridshare-node".into(),
            });
        }
        return Ok(path.to_path_buf());
    }
    let profile = profile_dir().unwrap_or_else(|| PathBuf::from("."));
    let binary = profile.join(NODE_BINARY);
    let (cargo, args) = build_command(&profile);
    let command = format!("{cargo} {}", args.join(" "));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("Cargo.toml");
    if workspace.exists() {
        eprintln!("Building gridshare-node (up to date in a second if nothing changed): {command}");
        let mut build = Command::new(&cargo);
        build.args(&args);
        // `cargo run` gives this process the package's variables
        // (`CARGO_PKG_NAME`, ...); build scripts that read them (ring's)
        // would see them change from a build started in a shell, and
        // rebuild it and everything above it (the node's whole network
        // stack) every time the two alternate.
        for (name, _) in std::env::vars_os().filter(|(name, _)| is_run_variable(name)) {
            build.env_remove(name);
        }
        let status = build.status().map_err(|error| ProcessError::Spawn { what: command.clone(), error })?;
        if !status.success() {
            return Err(ProcessError::Build { command, status: status.to_string() });
        }
    }
    if !binary.exists() {
        return Err(ProcessError::NodeBinaryMissing { path: binary.display().to_string(), command });
    }
    Ok(binary)
}

/// Whether `name` is one of the variables `cargo run` and `cargo test` set
/// for the package they run (the ones Cargo sets for a crate it compiles).
fn is_run_variable(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with("CARGO_PKG_")
        || matches!(
            name.as_ref(),
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
        )
}

/// Runs a `gridshare-node` subcommand to completion; returns its stdout.
pub fn run_to_end(binary: &Path, args: &[&str]) -> Result<String, ProcessError> {
    Ok(harness::run_to_end(binary, args, &[("RUST_LOG", "warn")])?)
}

/// A validator or a household's node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Validator,
    Household,
}

/// A client of the API at `url` (one the node printed, or loopback port 1).
fn client_of(url: &str, node: &str, timeouts: Timeouts) -> Result<Client, ProcessError> {
    Client::with_timeouts(url, timeouts).map_err(|error| ProcessError::Io {
        what: format!("{node}: its API at {url}"),
        error: std::io::Error::other(error.to_string()),
    })
}

/// How a node is started, kept for its restarts.
#[derive(Debug)]
struct Launch {
    process: Option<NodeProcess>,
    pid: u32,
    /// The API port, reused on restart (0 before the first start).
    api_port: u16,
    /// Where the swarm listens, reused on restart.
    listen: String,
    /// The P2P address with the peer id, for others to bootstrap from.
    p2p: String,
    bootstrap: Vec<String>,
    block_time_ms: Option<u64>,
    clock_skew_ms: i64,
    /// A validator's consensus swarm: where it listens and the other
    /// validators' consensus addresses, fixed for every start.
    consensus: Option<ConsensusAddresses>,
}

/// Where a validator's consensus swarm listens and where the others do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsensusAddresses {
    pub listen: String,
    pub peers: Vec<String>,
}

/// Which process of a node is expected to end, and the ends that were not:
/// shared with the thread that reads each process's stdout, which sees the
/// process end.
#[derive(Debug, Default)]
struct Lifecycle {
    /// False while killed, paused or ended.
    up: AtomicBool,
    /// The latest process started (1, 2, ...).
    generation: AtomicU64,
    /// Processes up to this generation were ended by the testnet.
    ended_on_purpose: AtomicU64,
    /// Processes that ended on their own: when, and the end of the log.
    unexpected: Mutex<Vec<String>>,
}

impl Lifecycle {
    /// Called when process `generation`'s stdout closes.
    fn ended(&self, generation: u64, node: &str, log_path: &Path) {
        if self.ended_on_purpose.load(Ordering::Relaxed) >= generation {
            return;
        }
        if self.generation.load(Ordering::Relaxed) == generation {
            self.up.store(false, Ordering::Relaxed);
        }
        // Let the process finish writing its log.
        std::thread::sleep(Duration::from_millis(200));
        let tail = log_tail(log_path, 3).replace('\n', " | ");
        self.unexpected.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(format!(
            "{node} ended at {} ms without the testnet stopping it; its log ends: {tail}",
            crate::journal::now_ms()
        ));
    }

    fn ending_on_purpose(&self) {
        self.up.store(false, Ordering::Relaxed);
        self.ended_on_purpose.fetch_max(self.generation.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// One `gridshare-node` process, restartable. Shared between the
/// perturbations, the monitors and the agents.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub role: Role,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    binary: PathBuf,
    launch: Mutex<Launch>,
    /// The testnet's timeouts for requests to the API.
    timeouts: Timeouts,
    /// A client of the API at its current address.
    client: RwLock<Client>,
    lifecycle: Arc<Lifecycle>,
    pub restarts: AtomicU32,
    peak_memory_kib: AtomicU64,
}

impl Node {
    /// A node; `consensus` is set for a validator. Requests to its API
    /// give up after `timeouts`.
    pub fn new(
        name: &str,
        consensus: Option<ConsensusAddresses>,
        data_dir: PathBuf,
        log_path: PathBuf,
        binary: &Path,
        timeouts: Timeouts,
    ) -> Result<Node, ProcessError> {
        let role = if consensus.is_some() { Role::Validator } else { Role::Household };
        // Port 1 on loopback, where nothing listens, until the node runs.
        let client = client_of("http://127.0.0.1:1", name, timeouts)?;
        Ok(Node {
            name: name.to_string(),
            role,
            data_dir,
            log_path,
            binary: binary.to_path_buf(),
            launch: Mutex::new(Launch {
                process: None,
                pid: 0,
                api_port: 0,
                listen: "/ip4/127.0.0.1/tcp/0".into(),
                p2p: String::new(),
                bootstrap: Vec::new(),
                block_time_ms: None,
                clock_skew_ms: 0,
                consensus,
            }),
            timeouts,
            client: RwLock::new(client),
            lifecycle: Arc::new(Lifecycle::default()),
            restarts: AtomicU32::new(0),
            peak_memory_kib: AtomicU64::new(0),
        })
    }

    fn launch(&self) -> MutexGuard<'_, Launch> {
        // A panic while holding the lock leaves plain data behind: keep going.
        self.launch.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets what the next start passes: bootstrap peers, block time, skew.
    pub fn configure(&self, bootstrap: Vec<String>, block_time_ms: Option<u64>, clock_skew_ms: i64) {
        let mut launch = self.launch();
        launch.bootstrap = bootstrap;
        launch.block_time_ms = block_time_ms;
        launch.clock_skew_ms = clock_skew_ms;
    }

    pub fn set_clock_skew_ms(&self, skew_ms: i64) {
        self.launch().clock_skew_ms = skew_ms;
    }

    pub fn clock_skew_ms(&self) -> i64 {
        self.launch().clock_skew_ms
    }

    /// A client of the API (its address stays the same across restarts
    /// unless the port was taken meanwhile).
    pub fn api(&self) -> Client {
        self.client.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// `127.0.0.1:PORT` of the API.
    pub fn address(&self) -> String {
        self.api().url().trim_start_matches("http://").to_string()
    }

    /// The admin API's bearer token (the node makes it in its data
    /// directory when it first runs with the admin API).
    pub fn admin_token(&self) -> Result<String, ProcessError> {
        let path = self.data_dir.join("admin.token");
        std::fs::read_to_string(&path)
            .map(|token| token.trim().to_string())
            .map_err(|error| ProcessError::Io { what: format!("reading {}", path.display()), error })
    }

    /// The P2P address with the peer id.
    pub fn p2p(&self) -> String {
        self.launch().p2p.clone()
    }

    pub fn pid(&self) -> u32 {
        self.launch().pid
    }

    pub fn is_up(&self) -> bool {
        self.lifecycle.up.load(Ordering::Relaxed)
    }

    pub fn peak_memory_kib(&self) -> u64 {
        self.peak_memory_kib.load(Ordering::Relaxed)
    }

    /// Records the process's peak memory (kept across restarts: the highest).
    pub fn sample_memory(&self) {
        let pid = self.pid();
        if pid != 0 {
            self.peak_memory_kib.fetch_max(harness::peak_memory_kib(pid), Ordering::Relaxed);
        }
    }

    /// Starts the process and waits for its addresses. A restart reuses the
    /// API port and the P2P address, as an operator's configured node does;
    /// if the API port was taken meanwhile, another is used.
    pub fn start(&self) -> Result<(), ProcessError> {
        let mut launch = self.launch();
        let port = launch.api_port;
        let result = match self.spawn(&mut launch, port) {
            Err(_) if port != 0 => self.spawn(&mut launch, 0),
            other => other,
        };
        result?;
        self.lifecycle.up.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn spawn(&self, launch: &mut Launch, api_port: u16) -> Result<(), ProcessError> {
        let mut node = NodeLaunch::new(&self.name, &self.binary, &self.log_path)
            .arg("run")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "--api",
                &format!("127.0.0.1:{api_port}"),
                "--p2p",
                &launch.listen,
                "--no-mdns",
                // Every node of a testnet shares 127.0.0.1: one address for
                // them all, so the per-address bound is the swarm's own.
                "--p2p-connections-per-ip-max",
                "1024",
                // Every node of a testnet shares this machine's cores: one
                // thread each spares them waking each other's threads.
                "--worker-threads",
                "1",
                // The disconnect fault isolates a node through the admin API,
                // with the token the node keeps in its data directory.
                "--enable-admin-api",
            ])
            .env("RUST_LOG", NODE_LOG_FILTER)
            .env("NO_COLOR", "1")
            .stdout_to_log();
        for peer in &launch.bootstrap {
            node = node.args(["--bootstrap", peer]);
        }
        if let Some(block_time_ms) = launch.block_time_ms {
            node = node.args(["--block-time-ms".to_string(), block_time_ms.to_string()]);
        }
        if launch.clock_skew_ms != 0 {
            node = node.arg(format!("--clock-skew-ms={}", launch.clock_skew_ms));
        }
        // A validator listens for the other validators on its own port, by
        // default a fixed one on every interface: the testnet gives each a
        // port on loopback, the same on every restart, since the others dial it.
        if let Some(consensus) = &launch.consensus {
            node = node.args(["--consensus-p2p", &consensus.listen]);
            for peer in &consensus.peers {
                node = node.args(["--consensus-peer", peer]);
            }
        }
        let lifecycle = self.lifecycle.clone();
        let generation = lifecycle.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let (name, log_path) = (self.name.clone(), self.log_path.clone());
        let started = node.on_exit(move || lifecycle.ended(generation, &name, &log_path)).start();
        let process = match started {
            Ok(process) => process,
            Err(error) => {
                // The harness killed it: that end is no surprise.
                self.lifecycle.ending_on_purpose();
                return Err(error.into());
            }
        };
        let client = client_of(&process.url(), &self.name, self.timeouts)?;
        launch.api_port = process.api().rsplit(':').next().and_then(|port| port.parse().ok()).unwrap_or(0);
        launch.listen = process.p2p().split("/p2p/").next().unwrap_or(process.p2p()).to_string();
        launch.p2p = process.p2p().to_string();
        launch.pid = process.pid();
        launch.process = Some(process);
        *self.client.write().unwrap_or_else(std::sync::PoisonError::into_inner) = client;
        Ok(())
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&self) {
        self.lifecycle.ending_on_purpose();
        let mut launch = self.launch();
        if let Some(mut process) = launch.process.take() {
            self.peak_memory_kib.fetch_max(process.peak_memory_kib(), Ordering::Relaxed);
            process.kill();
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after a deadline); true if
    /// the node stopped by itself.
    pub fn stop(&self) -> bool {
        self.lifecycle.ending_on_purpose();
        let mut launch = self.launch();
        let Some(mut process) = launch.process.take() else { return true };
        self.peak_memory_kib.fetch_max(process.peak_memory_kib(), Ordering::Relaxed);
        process.stop(STOP_TIMEOUT).clean
    }

    fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        let launch = self.launch();
        let process =
            launch.process.as_ref().ok_or_else(|| ProcessError::NotRunning { node: self.name.clone() })?;
        Ok(process.signal(signal)?)
    }

    /// SIGSTOP.
    pub fn pause(&self) -> Result<(), ProcessError> {
        self.lifecycle.up.store(false, Ordering::Relaxed);
        self.signal(Signal::Stop)
    }

    /// SIGCONT.
    pub fn resume(&self) -> Result<(), ProcessError> {
        self.signal(Signal::Cont)?;
        self.lifecycle.up.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The processes of this node that ended without the testnet ending them.
    pub fn unexpected_exits(&self) -> Vec<String> {
        self.lifecycle.unexpected.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Whether the process is still alive (it may have died on its own).
    pub fn is_running(&self) -> bool {
        let mut launch = self.launch();
        launch.process.as_mut().is_some_and(NodeProcess::is_running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The package's variables are left out of the nested build; the
    /// user's settings for cargo are not.
    #[test]
    fn the_variables_of_cargo_run_are_told_from_the_users() {
        for name in ["CARGO_PKG_NAME", "CARGO_PKG_VERSION_MAJOR", "CARGO_MANIFEST_DIR", "CARGO_BIN_NAME"] {
            assert!(is_run_variable(std::ffi::OsStr::new(name)), "{name}");
        }
        for name in ["CARGO", "CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_TERM_COLOR", "PATH", "RUSTFLAGS"] {
            assert!(!is_run_variable(std::ffi::OsStr::new(name)), "{name}");
        }
    }
}
