//! One harness for running `gridshare-node` processes in tests, benchmarks
//! and the testnet: start one with arguments, read the addresses it prints
//! (`API:` and `P2P:`) with a deadline, keep reading its stdout until it
//! exits (a node whose stdout is closed dies on its next print), keep its
//! stderr (the log) in a file, signal it (SIGSTOP, SIGCONT, SIGTERM with a
//! deadline then SIGKILL), and wait for its blocks with a deadline.
//! Signals are sent with kill(1): the workspace forbids unsafe code, so no
//! libc call.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The node binary's name.
pub const NODE_BINARY: &str = "gridshare-node";
/// How long a node may take to print its addresses, unless told otherwise.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed,
/// unless told otherwise.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The lines a node prints after its addresses that are kept (the last).
const LINES_KEPT_MAX: usize = 256;
/// The banner lines read before giving up on the addresses.
const BANNER_LINES_MAX: usize = 64;
/// How often a stopping process is checked.
const STOP_POLL: Duration = Duration::from_millis(20);

/// Why a node process could not be run, started or signalled.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("no {name} in the target directory of {exe}: build it first (cargo build -p gridshare-node)")]
    BinaryMissing { name: String, exe: String },
    #[error("cannot start {what}: {error}")]
    Spawn { what: String, error: std::io::Error },
    #[error("{what} failed ({status}): {stderr}")]
    Command { what: String, status: String, stderr: String },
    #[error(
        "{name} did not print its API and P2P addresses within {seconds} s ({why}); its log {log} ends with:\n{tail}"
    )]
    NoAddresses { name: String, seconds: u64, why: String, log: String, tail: String },
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |error| HarnessError::Io { what, error }
}

/// A signal the harness sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Pause the process.
    Stop,
    /// Resume a paused process.
    Cont,
    /// Ask it to finish its block and exit.
    Term,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
            Signal::Term => "TERM",
        }
    }
}

/// Sends `signal` to `pid` with kill(1).
pub fn signal(pid: u32, signal: Signal) -> Result<(), HarnessError> {
    let what = format!("kill -{} {pid}", signal.name());
    let output = Command::new("kill")
        .args([format!("-{}", signal.name()), pid.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| HarnessError::Spawn { what: what.clone(), error })?;
    if !output.status.success() {
        return Err(HarnessError::Command {
            what,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The kernel's high-water mark of a process's resident memory, in KiB (0
/// where `/proc` does not say).
pub fn peak_memory_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The `gridshare-node` binary in the cargo target directory this process
/// runs from (a test's `target/debug/deps/..`, an example's
/// `target/release/examples/..`): the first one found going up.
pub fn find_node_binary() -> Result<PathBuf, HarnessError> {
    let exe = std::env::current_exe().map_err(io("finding the running executable"))?;
    let name = format!("{NODE_BINARY}{}", std::env::consts::EXE_SUFFIX);
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join(&name))
        .find(|path| path.is_file())
        .ok_or_else(|| HarnessError::BinaryMissing { name, exe: exe.display().to_string() })
}

/// Runs a `gridshare-node` subcommand (`init`, `genesis new`) to completion
/// with `envs`; returns its stdout.
pub fn run_to_end(binary: &Path, args: &[&str], envs: &[(&str, &str)]) -> Result<String, HarnessError> {
    let what = format!("{} {}", binary.display(), args.join(" "));
    let output = Command::new(binary)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|error| HarnessError::Spawn { what: what.clone(), error })?;
    if !output.status.success() {
        return Err(HarnessError::Command {
            what,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `count` distinct loopback ports free now, for addresses that others must
/// know before a node starts (a validator's consensus port). They are below
/// the OS's ephemeral range (32768 and up on Linux), so that no port the OS
/// hands to another `:0` bind meanwhile (a node's API, say) takes one before
/// its node binds it; the search starts at a place of this process's own.
/// Every listener is held until all are found, so none repeats.
pub fn loopback_ports(count: usize) -> Result<Vec<u16>, HarnessError> {
    const FIRST: u64 = 20_000;
    const SPAN: u64 = 12_000;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let start = u64::from(std::process::id()).wrapping_mul(31).wrapping_add(u64::from(nanos));
    let mut listeners = Vec::with_capacity(count);
    // 7919 is prime to SPAN: the steps visit every port of the span once.
    for step in 0..SPAN {
        if listeners.len() == count {
            break;
        }
        let port = u16::try_from(FIRST + start.wrapping_add(step * 7_919) % SPAN).unwrap_or(0);
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(listener);
        }
    }
    if listeners.len() < count {
        return Err(io("reserving a loopback port")(std::io::Error::other("no free port below 32000")));
    }
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|address| address.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io("reading a reserved port"))
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Called on the thread that reads a node's stdout once the process has
/// ended (its stdout closed).
type OnExit = Box<dyn FnOnce() + Send>;

/// How to start a `gridshare-node` process: `run` and its arguments (the
/// caller's, e.g. `--api 127.0.0.1:0` for an OS-assigned port), where its
/// log goes, and what to do when it ends.
pub struct NodeLaunch {
    name: String,
    binary: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    log_path: PathBuf,
    start_timeout: Duration,
    stdout_to_log: bool,
    on_exit: Option<OnExit>,
}

impl std::fmt::Debug for NodeLaunch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLaunch")
            .field("name", &self.name)
            .field("binary", &self.binary)
            .field("args", &self.args)
            .field("log_path", &self.log_path)
            .finish_non_exhaustive()
    }
}

impl NodeLaunch {
    /// `binary` (run with the arguments to come), called `name` in messages,
    /// its stderr appended to `log_path`.
    pub fn new(name: &str, binary: &Path, log_path: &Path) -> NodeLaunch {
        NodeLaunch {
            name: name.to_string(),
            binary: binary.to_path_buf(),
            args: Vec::new(),
            envs: Vec::new(),
            log_path: log_path.to_path_buf(),
            start_timeout: START_TIMEOUT,
            stdout_to_log: false,
            on_exit: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> NodeLaunch {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> NodeLaunch {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> NodeLaunch {
        self.envs.push((name.into(), value.into()));
        self
    }

    /// How long the node may take to print its addresses.
    pub fn start_timeout(mut self, timeout: Duration) -> NodeLaunch {
        self.start_timeout = timeout;
        self
    }

    /// Also append every stdout line to the log, as `stdout: LINE`.
    pub fn stdout_to_log(mut self) -> NodeLaunch {
        self.stdout_to_log = true;
        self
    }

    /// Calls `on_exit` when the process ends, however it ends.
    pub fn on_exit(mut self, on_exit: impl FnOnce() + Send + 'static) -> NodeLaunch {
        self.on_exit = Some(Box::new(on_exit));
        self
    }

    /// Starts the process and waits (at most the start timeout) for the
    /// lines it prints at start, up to `Data dir:`, which name its API and
    /// P2P addresses. A process that prints no addresses is killed.
    pub fn start(self) -> Result<NodeProcess, HarnessError> {
        let NodeLaunch { name, binary, args, envs, log_path, start_timeout, stdout_to_log, on_exit } = self;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("opening {}", log_path.display())))?;
        let mut child = Command::new(&binary)
            .args(&args)
            .envs(envs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|error| HarnessError::Spawn { what: format!("{name} ({})", binary.display()), error })?;
        let stdout = child.stdout.take().ok_or_else(|| HarnessError::Io {
            what: format!("{name}: no stdout"),
            error: std::io::Error::other("stdout not captured"),
        })?;
        let (banner_sender, banner) = mpsc::sync_channel::<String>(BANNER_LINES_MAX);
        let later = Arc::new(Mutex::new(VecDeque::new()));
        let reader = {
            let (later, log_path) = (later.clone(), log_path.clone());
            std::thread::Builder::new()
                .name(format!("{name}-stdout"))
                .spawn(move || {
                    read_stdout(stdout, banner_sender, &later, stdout_to_log.then_some(log_path.as_path()));
                    if let Some(on_exit) = on_exit {
                        on_exit();
                    }
                })
                .map_err(io("starting a thread"))?
        };
        let deadline = Instant::now() + start_timeout;
        let mut printed = Vec::new();
        let why = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match banner.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with("Data dir:");
                    printed.push(line);
                    if done || printed.len() >= BANNER_LINES_MAX {
                        break String::new();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break "timed out".to_string(),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status =
                        child.wait().map_or_else(|error| error.to_string(), |status| status.to_string());
                    break format!("it ended: {status}");
                }
            }
        };
        let api = printed
            .iter()
            .find_map(|line| line.strip_prefix("API:"))
            .map(|url| url.trim().trim_start_matches("http://").trim_end_matches("/v1/status").to_string());
        let p2p: Vec<String> = printed
            .iter()
            .filter_map(|line| line.strip_prefix("P2P:"))
            .map(|address| address.trim().to_string())
            .collect();
        let (Some(api), false) = (api, p2p.is_empty()) else {
            let _ = child.kill();
            let _ = child.wait();
            let why = if why.is_empty() { format!("it printed {printed:?}") } else { why };
            return Err(HarnessError::NoAddresses {
                name,
                seconds: start_timeout.as_secs(),
                why,
                log: log_path.display().to_string(),
                tail: log_tail(&log_path, 12),
            });
        };
        Ok(NodeProcess {
            name,
            pid: child.id(),
            child: Some(child),
            api,
            p2p,
            banner: printed,
            later,
            reader: Some(reader),
            log_path,
        })
    }
}

/// Reads a node's stdout until it exits: the start lines to `banner` (until
/// `Data dir:`), the later ones kept (the last [`LINES_KEPT_MAX`]), every
/// line to the log if asked.
fn read_stdout(
    stdout: ChildStdout,
    banner: mpsc::SyncSender<String>,
    later: &Mutex<VecDeque<String>>,
    log_path: Option<&Path>,
) {
    let mut log = log_path.and_then(|path| std::fs::OpenOptions::new().append(true).open(path).ok());
    let mut banner = Some(banner);
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(log) = log.as_mut() {
            let _ = writeln!(log, "stdout: {line}");
        }
        match &banner {
            Some(sender) => {
                let done = line.starts_with("Data dir:");
                // A receiver that gave up (a start that timed out) is gone.
                if sender.try_send(line).is_err() || done {
                    banner = None;
                }
            }
            None => {
                let mut later = later.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if later.len() == LINES_KEPT_MAX {
                    later.pop_front();
                }
                later.push_back(line);
            }
        }
    }
}

/// How a node ended when it was stopped.
#[derive(Debug)]
pub struct Stopped {
    /// Whether it exited successfully by itself within the deadline.
    pub clean: bool,
    pub status: Option<ExitStatus>,
    /// What it printed after its start lines (the last ones).
    pub lines: Vec<String>,
}

/// A running `gridshare-node`, killed when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    name: String,
    pid: u32,
    child: Option<Child>,
    api: String,
    p2p: Vec<String>,
    banner: Vec<String>,
    later: Arc<Mutex<VecDeque<String>>>,
    reader: Option<JoinHandle<()>>,
    log_path: PathBuf,
}

impl NodeProcess {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `HOST:PORT` of the API.
    pub fn api(&self) -> &str {
        &self.api
    }

    /// `http://HOST:PORT` of the API.
    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// The first P2P address, with `/p2p/PEER_ID`.
    pub fn p2p(&self) -> &str {
        self.p2p.first().map_or("", String::as_str)
    }

    /// Every P2P address it listens on.
    pub fn p2p_addresses(&self) -> &[String] {
        &self.p2p
    }

    /// What a start line `PREFIX ...` says, e.g. `Genesis:` of a dev node.
    pub fn printed(&self, prefix: &str) -> Option<&str> {
        self.banner.iter().find_map(|line| line.strip_prefix(prefix)).map(str::trim)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log's last `lines` lines, for a failure's message.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// A client of its API.
    #[cfg(feature = "client")]
    pub fn client(&self) -> crate::client::Client {
        // A `HOST:PORT` the node printed is always a valid address.
        crate::client::Client::new(&self.url()).unwrap_or_else(|error| panic!("{error}"))
    }

    pub fn signal(&self, signal: Signal) -> Result<(), HarnessError> {
        self::signal(self.pid, signal)
    }

    /// Whether the process is still alive (it may have ended on its own).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn peak_memory_kib(&self) -> u64 {
        peak_memory_kib(self.pid)
    }

    /// Waits for the stdout reader to see the end and takes what it kept.
    fn finish(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let mut later = self.later.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        later.drain(..).collect()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        let status = child.wait().ok();
        self.finish();
        status
    }

    /// SIGCONT (a paused node must run to handle it), SIGTERM, then waits
    /// until `timeout` for it to exit, and kills it if it has not.
    pub fn stop(&mut self, timeout: Duration) -> Stopped {
        let Some(mut child) = self.child.take() else {
            return Stopped { clean: true, status: None, lines: Vec::new() };
        };
        let _ = signal(self.pid, Signal::Cont);
        let clean = if signal(self.pid, Signal::Term).is_ok() {
            let deadline = Instant::now() + timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(STOP_POLL),
                    _ => break None,
                }
            }
        } else {
            None
        };
        let (clean, status) = match clean {
            Some(status) => (status.success(), Some(status)),
            None => {
                let _ = child.kill();
                (false, child.wait().ok())
            }
        };
        Stopped { clean, status, lines: self.finish() }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = signal(self.pid, Signal::Cont);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A node's blocks as its event stream reports them, read on a thread of
/// their own so that a wait for the next one has a deadline.
#[cfg(feature = "client")]
#[derive(Debug)]
pub struct BlockWatch {
    heights: mpsc::Receiver<u64>,
}

/// How many reported heights wait to be taken before the reading thread
/// waits in turn (the node then reports that the stream lagged).
#[cfg(feature = "client")]
const BLOCKS_WAITING_MAX: usize = 1_024;

#[cfg(feature = "client")]
impl BlockWatch {
    /// Subscribes to the node's event stream.
    pub fn subscribe(client: &crate::client::Client) -> Result<BlockWatch, crate::client::ClientError> {
        let events = client.events()?;
        let (sender, heights) = mpsc::sync_channel(BLOCKS_WAITING_MAX);
        std::thread::Builder::new()
            .name("block-watch".into())
            .spawn(move || {
                for event in events {
                    match event {
                        Ok(crate::events::Event::Block(block)) => {
                            if sender.send(block.height).is_err() {
                                return;
                            }
                        }
                        Ok(_) | Err(crate::client::StreamError::Event(_)) => {}
                        Err(crate::client::StreamError::Broken { .. }) => return,
                    }
                }
            })
            .map_err(|error| crate::client::ClientError::Unreachable {
                url: client.url().to_string(),
                cause: format!("cannot start a thread: {error}"),
            })?;
        Ok(BlockWatch { heights })
    }

    /// The height of the next block, or `None` if none came before
    /// `deadline` or the stream ended (the node went away).
    pub fn next_before(&self, deadline: Instant) -> Option<u64> {
        self.heights.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
    }
}

/// A wait that ran out.
#[cfg(feature = "client")]
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("timed out after {limit:?} waiting for {what}")]
    Timeout { what: String, limit: Duration },
    #[error("waiting for {what}: {error}")]
    Client { what: String, error: Box<crate::client::ClientError> },
}

/// Checks `probe` now and after each new block of the node `pace` (whose
/// blocks are what changes the state probed) until it gives a value or
/// `limit` has passed.
#[cfg(feature = "client")]
pub fn wait_for<T>(
    what: &str,
    pace: &crate::client::Client,
    limit: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T, WaitError> {
    let deadline = Instant::now() + limit;
    let blocks = BlockWatch::subscribe(pace)
        .map_err(|error| WaitError::Client { what: what.to_string(), error: Box::new(error) })?;
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if blocks.next_before(deadline).is_none() {
            // One last look: the state may have changed with the last block.
            return probe().ok_or_else(|| WaitError::Timeout { what: what.to_string(), limit });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for `gridshare-node`: a shell script printing what a node
    /// prints.
    fn fake(dir: &Path, script: &str) -> NodeLaunch {
        NodeLaunch::new("fake node", Path::new("/bin/sh"), &dir.join("fake.log")).args(["-c", script])
    }

    const BANNER: &str = "echo 'Fake Street 1a0d started (validator)'; \
        echo 'API:      http://127.0.0.1:8799/v1/status'; \
        echo 'P2P:      /ip4/127.0.0.1/tcp/4799/p2p/12D3KooFake'; \
        echo 'P2P:      /ip4/10.0.0.2/tcp/4799/p2p/12D3KooFake'; \
        echo 'Genesis:  /tmp/fake/genesis.bin'; \
        echo 'Data dir: /tmp/fake'; \
        echo 'a log line' >&2;";

    #[test]
    fn reads_the_addresses_and_stops_a_node_with_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let script = format!("{BANNER} trap 'echo Stopped.; exit 0' TERM; while :; do sleep 0.05; done");
        let (ended, exits) = mpsc::channel();
        let mut process = fake(dir, &script).on_exit(move || ended.send(()).unwrap_or(())).start().unwrap();
        assert_eq!(process.api(), "127.0.0.1:8799");
        assert_eq!(process.url(), "http://127.0.0.1:8799");
        assert_eq!(process.p2p(), "/ip4/127.0.0.1/tcp/4799/p2p/12D3KooFake");
        assert_eq!(process.p2p_addresses().len(), 2);
        assert_eq!(process.printed("Genesis:"), Some("/tmp/fake/genesis.bin"));
        assert!(process.is_running());
        let stopped = process.stop(Duration::from_secs(20));
        assert!(stopped.clean, "{stopped:?}");
        assert_eq!(stopped.lines, ["Stopped."]);
        assert!(!process.is_running());
        exits.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(process.log_tail(5).contains("a log line"), "{}", process.log_tail(5));
    }

    #[test]
    fn a_node_killed_is_gone_and_one_ignoring_sigterm_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let script = format!("{BANNER} trap '' TERM; while :; do sleep 0.05; done");
        let mut process = fake(dir, &script).start().unwrap();
        let stopped = process.stop(Duration::from_millis(300));
        assert!(!stopped.clean, "it ignored SIGTERM: {stopped:?}");
        let mut process = fake(dir, &format!("{BANNER} while :; do sleep 0.05; done")).start().unwrap();
        assert!(process.kill().is_some_and(|status| !status.success()));
        assert!(!process.is_running());
        assert!(process.kill().is_none(), "killed once");
    }

    #[test]
    fn a_node_without_addresses_is_an_error_that_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let ended = fake(dir, "echo 'no addresses here'; echo 'it failed' >&2; exit 3").start().unwrap_err();
        let message = ended.to_string();
        assert!(matches!(ended, HarnessError::NoAddresses { .. }), "{message}");
        assert!(message.contains("it ended: exit status: 3") && message.contains("it failed"), "{message}");
        let slow = fake(dir, "sleep 30").start_timeout(Duration::from_millis(200)).start().unwrap_err();
        assert!(slow.to_string().contains("within 0 s (timed out)"), "{slow}");
        let missing = NodeLaunch::new("nothing", &dir.join("no-such-binary"), &dir.join("x.log")).start();
        assert!(matches!(missing, Err(HarnessError::Spawn { .. })), "{missing:?}");
    }

    #[test]
    fn subcommands_run_to_their_end() {
        let out = run_to_end(Path::new("/bin/sh"), &["-c", "echo \"$GREETING\""], &[("GREETING", "hello")])
            .unwrap();
        assert_eq!(out, "hello\n");
        let failed = run_to_end(Path::new("/bin/sh"), &["-c", "echo bad >&2; exit 2"], &[]).unwrap_err();
        assert!(failed.to_string().ends_with("failed (exit status: 2): bad"), "{failed}");
        let ports = loopback_ports(3).unwrap();
        assert_eq!(ports.iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "{ports:?}");
        assert!(peak_memory_kib(std::process::id()) > 0);
        assert_eq!(peak_memory_kib(u32::MAX), 0);
    }
}
