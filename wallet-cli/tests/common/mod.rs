//! What the end-to-end tests of `gridshare` share: a dev node process, the
//! `gridshare` binary run with a keystore and a node, and waiting on blocks.

#![allow(dead_code)] // Each test binary uses its own part of it.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gridshare_api::client::Client;
use gridshare_api::harness::{BlockWatch, NodeLaunch, NodeProcess, find_node_binary};

pub(crate) const PASSPHRASE: &str = "correct horse battery staple";

/// A running dev node (the `gridshare-node` binary of the same target
/// directory), killed when dropped.
pub(crate) struct DevNode {
    pub(crate) process: NodeProcess,
    /// `http://127.0.0.1:PORT`.
    pub(crate) api: String,
    pub(crate) genesis_file: PathBuf,
    pub(crate) data_dir: PathBuf,
}

impl DevNode {
    pub(crate) fn start(dir: &Path) -> DevNode {
        let data_dir = dir.join("node");
        let binary = find_node_binary().unwrap_or_else(|error| panic!("{error}"));
        let process = NodeLaunch::new("dev node", &binary, &dir.join("node.log"))
            .args(["run", "--dev", "--data-dir"])
            .arg(&data_dir)
            .args([
                "--api",
                "127.0.0.1:0",
                "--p2p",
                "/ip4/127.0.0.1/tcp/0",
                "--no-mdns",
                "--interval-ms",
                "2000",
            ])
            .start()
            .unwrap_or_else(|error| panic!("{error}"));
        let genesis_file =
            PathBuf::from(process.printed("Genesis:").expect("a dev node prints its genesis file"));
        DevNode { api: process.url(), process, genesis_file, data_dir }
    }

    pub(crate) fn log(&self) -> String {
        self.process.log_tail(200)
    }
}

/// Runs `gridshare` with a keystore and a node from the environment.
pub(crate) struct Gridshare {
    pub(crate) keystore: PathBuf,
    pub(crate) node: String,
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Gridshare {
    /// A keystore at `keystore` holding `node`'s dev registrar key, as
    /// `registrar`.
    pub(crate) fn with_dev_registrar(node: &DevNode, keystore: &Path) -> Gridshare {
        let gridshare = Gridshare { keystore: keystore.to_path_buf(), node: node.api.clone() };
        let seed = std::fs::read_to_string(node.data_dir.join("dev-keys").join("registrar.seed")).unwrap();
        let imported = gridshare.run_with_stdin(
            &["keys", "import", "registrar", "--role", "registrar", "--insecure-plaintext"],
            &seed,
        );
        assert!(imported.status.success(), "{}", text(&imported.stderr));
        gridshare
    }

    /// The same, with `node`'s dev DSO key too, as `dso`.
    pub(crate) fn with_dev_registrar_and_dso(node: &DevNode, keystore: &Path) -> Gridshare {
        let gridshare = Gridshare::with_dev_registrar(node, keystore);
        let seed = std::fs::read_to_string(node.data_dir.join("dev-keys").join("dso.seed")).unwrap();
        let imported = gridshare
            .run_with_stdin(&["keys", "import", "dso", "--role", "dso", "--insecure-plaintext"], &seed);
        assert!(imported.status.success(), "{}", text(&imported.stderr));
        gridshare
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gridshare"));
        command
            .args(args)
            .env("GRIDSHARE_KEYSTORE", &self.keystore)
            .env("GRIDSHARE_NODE", &self.node)
            .env("GRIDSHARE_PASSPHRASE", PASSPHRASE);
        command
    }

    pub(crate) fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    /// Runs a command that must succeed; its standard output.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "gridshare {args:?} failed with {:?}:\n{}{}",
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let stdout = self.ok(args);
        serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("gridshare {args:?}: {error}: {stdout}"))
    }

    /// Runs a command that must fail with `code` and say `expected`.
    pub(crate) fn fails(&self, args: &[&str], code: i32, expected: &str) -> String {
        let output = self.run(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "gridshare {args:?}: {stderr}{}", text(&output.stdout));
        assert!(stderr.contains(expected), "gridshare {args:?}: expected {expected:?} in {stderr:?}");
        stderr
    }
}

/// Checks `condition` now and after each block the node makes (what
/// changes what the commands see) until it gives a value or `limit` passes.
pub(crate) fn poll<T>(
    what: &str,
    limit: Duration,
    node: &DevNode,
    mut condition: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    let blocks = BlockWatch::subscribe(&Client::new(&node.api).unwrap()).unwrap();
    loop {
        if let Some(value) = condition() {
            return value;
        }
        if blocks.next_before(deadline).is_none() {
            panic!("waited {limit:?} for {what}; the node's log:\n{}", node.log());
        }
    }
}

/// A household of `node` with a meter gateway: the dev registrar and the
/// account `home` in one keystore (`DIR/keys`), the meter key `meter`,
/// encrypted, in the gateway's own (`DIR/gateway`); the account registered
/// and the meter registered for it with `max_import_kw` and
/// `max_export_kw`, once the node has it.
pub(crate) struct Household {
    pub(crate) keys: Gridshare,
    pub(crate) gateway: Gridshare,
    pub(crate) meter: gridshare_ledger::ids::PublicKey,
}

impl Household {
    pub(crate) fn register(
        node: &DevNode,
        dir: &Path,
        max_import_kw: &str,
        max_export_kw: &str,
    ) -> Household {
        let keys = Gridshare::with_dev_registrar(node, &dir.join("keys"));
        let gateway = Gridshare { keystore: dir.join("gateway"), node: node.api.clone() };
        keys.ok(&["keys", "new", "home"]);
        gateway.ok(&["keys", "new", "meter", "--role", "meter"]);
        let meter =
            gateway.json(&["keys", "show", "meter", "--json"])["public_key"].as_str().unwrap().to_string();
        keys.ok(&["register", "account", "home", "--credit-limit", "0"]);
        let power = ["--max-import-kw", max_import_kw, "--max-export-kw", max_export_kw];
        keys.ok(&[["register", "meter", &meter, "--owner", "home"].as_slice(), &power].concat());
        let meter = meter.parse().unwrap();
        let api = Client::new(&node.api).unwrap();
        poll("the meter's registration", Duration::from_secs(30), node, || api.meter(&meter).unwrap());
        Household { keys, gateway, meter }
    }
}

/// The system clock in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis())
        .unwrap()
}

/// A P1 port on loopback, as a dongle serves one: every `period` it writes
/// what `telegram(now_ms)` gives to each connection (`None`: no meter, and
/// connections are closed as they come), until it is dropped.
pub(crate) struct P1Port {
    /// `tcp://127.0.0.1:PORT`.
    pub(crate) address: String,
    stop: Option<mpsc::Sender<()>>,
    serving: Option<JoinHandle<()>>,
}

impl P1Port {
    pub(crate) fn serve(
        period: Duration,
        mut telegram: impl FnMut(u64) -> Option<Vec<u8>> + Send + 'static,
    ) -> P1Port {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = format!("tcp://{}", listener.local_addr().unwrap());
        let (stop, stopped) = mpsc::channel::<()>();
        let serving = std::thread::spawn(move || {
            let mut clients: Vec<TcpStream> = Vec::new();
            // Each wait for the stop lasts the meter's period at most.
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                while let Ok((stream, _)) = listener.accept() {
                    stream.set_nonblocking(false).unwrap();
                    clients.push(stream);
                }
                match telegram(now_ms()) {
                    Some(bytes) => clients.retain_mut(|client| client.write_all(&bytes).is_ok()),
                    None => clients.clear(),
                }
            }
        });
        P1Port { address, stop: Some(stop), serving: Some(serving) }
    }
}

impl Drop for P1Port {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(serving) = self.serving.take() {
            let _ = serving.join();
        }
    }
}
