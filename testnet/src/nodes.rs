//! Real `gridshare-node` processes: finding (or building) the binary,
//! `init` and `genesis new`, starting a node on loopback and reading its
//! addresses, and the signals of the perturbations (SIGKILL and restart on
//! the same addresses, SIGSTOP/SIGCONT, SIGTERM). Each child's stdout is
//! read until it exits, since a node whose stdout is closed dies on its next
//! print; its stderr (the log) goes to a file the checks read.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, mpsc};
use std::time::{Duration, Instant};

/// The node binary's name.
pub const NODE_BINARY: &str = "gridshare-node";
/// How long a node may take to print its addresses after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
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
    #[error("{what} failed ({status}): {stderr}")]
    Command { what: String, status: String, stderr: String },
    #[error(
        "{node} did not print its API and P2P addresses within {seconds} s; its log {log} ends with:\n{tail}"
    )]
    NoAddresses { node: String, seconds: u64, log: String, tail: String },
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ProcessError {
    let what = what.into();
    move |error| ProcessError::Io { what, error }
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
    args.extend(["-p".into(), "gridshare-node".into()]);
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
/// when nothing changed). `cargo run -p gridshare-testnet` does not build
/// other packages' binaries, so without this a fresh checkout would have no
/// node, and an old checkout a stale one.
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
        let status = Command::new(&cargo)
            .args(&args)
            .status()
            .map_err(|error| ProcessError::Spawn { what: command.clone(), error })?;
        if !status.success() {
            return Err(ProcessError::Build { command, status: status.to_string() });
        }
    }
    if !binary.exists() {
        return Err(ProcessError::NodeBinaryMissing { path: binary.display().to_string(), command });
    }
    Ok(binary)
}

/// Runs a `gridshare-node` subcommand to completion; returns its stdout.
pub fn run_to_end(binary: &Path, args: &[&str]) -> Result<String, ProcessError> {
    let what = format!("gridshare-node {}", args.join(" "));
    let output = Command::new(binary)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .map_err(|error| ProcessError::Spawn { what: what.clone(), error })?;
    if !output.status.success() {
        return Err(ProcessError::Command {
            what,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).to_string())
}

/// Sends `signal` (`TERM`, `STOP`, `CONT`) to `pid` with kill(1): the
/// workspace forbids unsafe code, so no libc call.
fn signal(pid: u32, signal: &str) -> Result<(), ProcessError> {
    let what = format!("kill -{signal} {pid}");
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .map_err(|error| ProcessError::Spawn { what: what.clone(), error })?;
    if !status.success() {
        return Err(ProcessError::Command { what, status: status.to_string(), stderr: String::new() });
    }
    Ok(())
}

/// The kernel's high-water mark of a process's resident memory, in KiB.
pub fn peak_memory_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A validator or a household's node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Validator,
    Household,
}

/// How a node is started, kept for its restarts.
#[derive(Debug)]
struct Launch {
    child: Option<Child>,
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
    /// `127.0.0.1:PORT` of the API.
    api: RwLock<String>,
    lifecycle: Arc<Lifecycle>,
    pub restarts: AtomicU32,
    peak_memory_kib: AtomicU64,
}

impl Node {
    /// A node; `consensus` is set for a validator.
    pub fn new(
        name: &str,
        consensus: Option<ConsensusAddresses>,
        data_dir: PathBuf,
        log_path: PathBuf,
        binary: &Path,
    ) -> Node {
        let role = if consensus.is_some() { Role::Validator } else { Role::Household };
        Node {
            name: name.to_string(),
            role,
            data_dir,
            log_path,
            binary: binary.to_path_buf(),
            launch: Mutex::new(Launch {
                child: None,
                pid: 0,
                api_port: 0,
                listen: "/ip4/127.0.0.1/tcp/0".into(),
                p2p: String::new(),
                bootstrap: Vec::new(),
                block_time_ms: None,
                clock_skew_ms: 0,
                consensus,
            }),
            api: RwLock::new(String::new()),
            lifecycle: Arc::new(Lifecycle::default()),
            restarts: AtomicU32::new(0),
            peak_memory_kib: AtomicU64::new(0),
        }
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

    /// `127.0.0.1:PORT` of the API (it stays the same across restarts
    /// unless the port was taken meanwhile).
    pub fn api(&self) -> String {
        self.api.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
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
            self.peak_memory_kib.fetch_max(peak_memory_kib(pid), Ordering::Relaxed);
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(io(format!("opening {}", self.log_path.display())))?;
        let mut command = Command::new(&self.binary);
        command.arg("run").arg("--data-dir").arg(&self.data_dir).args([
            "--api",
            &format!("127.0.0.1:{api_port}"),
            "--p2p",
            &launch.listen,
            "--no-mdns",
            // Every node of a testnet shares this machine's cores: one
            // thread each spares them waking each other's threads.
            "--worker-threads",
            "1",
        ]);
        for peer in &launch.bootstrap {
            command.args(["--bootstrap", peer]);
        }
        if let Some(block_time_ms) = launch.block_time_ms {
            command.args(["--block-time-ms", &block_time_ms.to_string()]);
        }
        if launch.clock_skew_ms != 0 {
            command.arg(format!("--clock-skew-ms={}", launch.clock_skew_ms));
        }
        // A validator listens for the other validators on its own port, by
        // default a fixed one on every interface: the testnet gives each a
        // port on loopback, the same on every restart, since the others dial it.
        if let Some(consensus) = &launch.consensus {
            command.args(["--consensus-p2p", &consensus.listen]);
            for peer in &consensus.peers {
                command.args(["--consensus-peer", peer]);
            }
        }
        let what = format!("{} ({})", self.name, self.binary.display());
        let mut child = command
            .env("RUST_LOG", NODE_LOG_FILTER)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|error| ProcessError::Spawn { what, error })?;
        let stdout = child.stdout.take().ok_or_else(|| ProcessError::Io {
            what: format!("{}: no stdout", self.name),
            error: std::io::Error::other("stdout not captured"),
        })?;
        let (sender, addresses) = mpsc::sync_channel::<(String, String)>(16);
        let log_path = self.log_path.clone();
        let lifecycle = self.lifecycle.clone();
        let generation = lifecycle.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("{}-stdout", self.name))
            .spawn(move || {
                read_stdout(stdout, &sender, &log_path);
                lifecycle.ended(generation, &name, &log_path);
            })
            .map_err(io("starting a thread"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut api, mut p2p) = (None, None);
        while api.is_none() || p2p.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match addresses.recv_timeout(left) {
                Ok((kind, value)) if kind == "API" => api = Some(value),
                Ok((_, value)) => {
                    p2p.get_or_insert(value);
                }
                Err(_) => break,
            }
        }
        let (Some(api), Some(p2p)) = (api, p2p) else {
            self.lifecycle.ending_on_purpose();
            let _ = child.kill();
            let _ = child.wait();
            return Err(ProcessError::NoAddresses {
                node: self.name.clone(),
                seconds: START_TIMEOUT.as_secs(),
                log: self.log_path.display().to_string(),
                tail: log_tail(&self.log_path, 12),
            });
        };
        launch.api_port = api.rsplit(':').next().and_then(|port| port.parse().ok()).unwrap_or(0);
        launch.listen = p2p.split("/p2p/").next().unwrap_or(&p2p).to_string();
        launch.p2p = p2p;
        launch.pid = child.id();
        launch.child = Some(child);
        *self.api.write().unwrap_or_else(std::sync::PoisonError::into_inner) = api;
        Ok(())
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&self) {
        self.lifecycle.ending_on_purpose();
        let mut launch = self.launch();
        if let Some(mut child) = launch.child.take() {
            self.peak_memory_kib.fetch_max(peak_memory_kib(child.id()), Ordering::Relaxed);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after a deadline); true if
    /// the node stopped by itself.
    pub fn stop(&self) -> bool {
        self.lifecycle.ending_on_purpose();
        let mut launch = self.launch();
        let Some(mut child) = launch.child.take() else { return true };
        self.peak_memory_kib.fetch_max(peak_memory_kib(child.id()), Ordering::Relaxed);
        // A paused node must run to handle SIGTERM.
        let _ = signal(child.id(), "CONT");
        if signal(child.id(), "TERM").is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// SIGSTOP.
    pub fn pause(&self) -> Result<(), ProcessError> {
        self.lifecycle.up.store(false, Ordering::Relaxed);
        signal(self.pid(), "STOP")
    }

    /// SIGCONT.
    pub fn resume(&self) -> Result<(), ProcessError> {
        signal(self.pid(), "CONT")?;
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
        match launch.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let launch = self.launch.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mut child) = launch.child.take() {
            let _ = signal(child.id(), "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads a node's stdout until it exits: the addresses go to `addresses`,
/// every line to the log.
fn read_stdout(
    stdout: std::process::ChildStdout,
    addresses: &mpsc::SyncSender<(String, String)>,
    log_path: &Path,
) {
    let mut log = std::fs::OpenOptions::new().append(true).open(log_path).ok();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(url) = line.strip_prefix("API:") {
            let address = url.trim().trim_start_matches("http://").trim_end_matches("/v1/status").to_string();
            let _ = addresses.try_send(("API".into(), address));
        } else if let Some(address) = line.strip_prefix("P2P:") {
            let _ = addresses.try_send(("P2P".into(), address.trim().to_string()));
        }
        if let Some(log) = log.as_mut() {
            let _ = writeln!(log, "stdout: {line}");
        }
    }
}

/// The last `lines` lines of a log.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
