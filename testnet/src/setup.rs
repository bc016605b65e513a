//! Setting a community up as its operators would: keys derived from the
//! seed, the genesis written by `gridshare-node genesis new`, a data
//! directory per node made by `gridshare-node init` (each validator's ledger
//! key written first, so that the genesis validators are theirs), the nodes
//! started on loopback and connected (validators also on their consensus
//! ports), and the registrar registering and crediting every household's
//! account and meter in waves, while the idle meters report zero readings
//! from their registration until the agents take over.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gridshare_api::client::{ClientError, Submission, Timeouts};
use gridshare_api::harness::loopback_ports;
use gridshare_ledger::NANOS_PER_UNIT;
use gridshare_ledger::encoding::from_bytes;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::testkit::derived_key;
use gridshare_ledger::tx::{MeterReading, SignedMeterReading, SignedTx, Tx};

use crate::journal::{Acknowledged, Journal, now_ms};
use crate::manifest::{Manifest, format_decimal};
use crate::nodes::{ConsensusAddresses, Node, ProcessError, run_to_end};

/// Each household starts with this much money, in currency units.
pub const INITIAL_CREDIT_UNITS: i128 = 1_000;
/// The meter limits, as the power they stand for in the simulated day (the
/// ledger bounds the energy per interval by a meter's power; a compressed
/// day moves an hour's energy in a few seconds, so the registrar scales
/// the limits by the compression).
pub const METER_IMPORT_W: u64 = 25_000;
pub const METER_EXPORT_W: u64 = 15_000;
/// How long the nodes may take to connect, and the registrations to land.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// Why the community could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the genesis written by gridshare-node cannot be read: {0}")]
    Genesis(String),
    #[error("{what} was refused: {message}")]
    Refused { what: String, message: String },
    #[error("timed out after {seconds} s waiting for {what}{hint}")]
    Timeout { what: String, seconds: u64, hint: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SetupError {
    let what = what.into();
    move |error| SetupError::Io { what, error }
}

/// What the nodes' logs say that may explain a wait that timed out: each
/// node's own warnings and errors, counted.
fn hint(nodes: &[Arc<Node>]) -> String {
    let mut lines = Vec::new();
    for node in nodes {
        let log = std::fs::read_to_string(&node.log_path).unwrap_or_default();
        for (warning, count) in crate::chain::warnings_in_log(&log) {
            lines.push(format!("{} logged {count}× {warning}", node.name));
        }
    }
    if lines.is_empty() {
        return String::new();
    }
    lines.truncate(8);
    format!("; the nodes' logs say: {}", lines.join("; "))
}

/// Every key of the community, derived from the seed with the roles of the
/// ledger's testkit (1 registrar, 2 validators, 3 accounts, 4 meters, 5 the
/// DSO).
#[derive(Debug)]
pub struct Keys {
    pub registrar: Keypair,
    pub dso: Keypair,
    pub validators: Vec<Keypair>,
    pub accounts: Vec<Keypair>,
    pub meters: Vec<Keypair>,
}

impl Keys {
    pub fn derive(seed: u64, validators: u32, households: u32) -> Keys {
        Keys {
            registrar: derived_key(seed, 1, 0),
            dso: derived_key(seed, 5, 0),
            validators: (0..validators).map(|index| derived_key(seed, 2, index)).collect(),
            accounts: (0..households).map(|index| derived_key(seed, 3, index)).collect(),
            meters: (0..households).map(|index| derived_key(seed, 4, index)).collect(),
        }
    }
}

/// A meter limit in W for the ledger: `power_w` of the simulated day,
/// scaled by how much faster than real time an interval runs.
pub fn meter_limit_w(manifest: &Manifest, power_w: u64) -> u64 {
    let slot_ms = 86_400_000 / manifest.profiles.day_intervals;
    power_w.saturating_mul(slot_ms) / manifest.interval_ms
}

/// Writes the genesis and every data directory; returns the genesis and
/// the nodes, not started.
pub fn prepare(
    manifest: &Manifest,
    keys: &Keys,
    workdir: &Path,
    binary: &Path,
    timeouts: Timeouts,
) -> Result<(Genesis, PathBuf, Vec<Arc<Node>>), SetupError> {
    let nodes_dir = workdir.join("nodes");
    let logs_dir = workdir.join("logs");
    for dir in [&nodes_dir, &logs_dir] {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let names = manifest.node_names();
    // The validators' ledger keys go in first, so `init` keeps them.
    for (index, key) in keys.validators.iter().enumerate() {
        let dir = nodes_dir.join(&names[index]);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let path = dir.join("validator.key");
        std::fs::write(&path, format!("{}\n", hex::encode(key.seed())))
            .map_err(io(format!("writing {}", path.display())))?;
    }
    let genesis_file = workdir.join("genesis.bin");
    let tariffs = &manifest.tariffs;
    let text = |value: &dyn ToString| value.to_string();
    let mut args: Vec<String> = vec![
        "genesis".into(),
        "new".into(),
        "--name".into(),
        manifest.name.clone(),
        "--registrar".into(),
        keys.registrar.public().to_string(),
        "--dso".into(),
        keys.dso.public().to_string(),
        "--interval-ms".into(),
        text(&manifest.interval_ms),
        "--gate-closure-lead-ms".into(),
        text(&manifest.gate_closure_lead_ms),
        "--settlement-delay-ms".into(),
        text(&manifest.settlement_delay_ms),
        "--mechanism".into(),
        manifest.mechanism.as_str().into(),
        "--k".into(),
        format_decimal(manifest.k_thousandths, 3),
        "--price-floor".into(),
        "0".into(),
        "--price-cap".into(),
        format_decimal(tariffs.import_micro_per_kwh, 6),
        "--import-tariff".into(),
        format_decimal(tariffs.import_micro_per_kwh, 6),
        "--feed-in-tariff".into(),
        format_decimal(tariffs.feed_in_micro_per_kwh, 6),
        "--network-fee".into(),
        format_decimal(tariffs.network_fee_micro_per_kwh, 6),
        // Interval 0 starts an interval ago, so that trading starts in
        // interval 1 or later and meters have an interval 0 to report first.
        "--genesis-time-ms".into(),
        text(&(now_ms() / manifest.interval_ms * manifest.interval_ms).saturating_sub(manifest.interval_ms)),
        "--max-open-offers-per-account".into(),
        text(&(4 * manifest.offers_per_interval).max(16)),
        "--out".into(),
        genesis_file.display().to_string(),
    ];
    for key in &keys.validators {
        args.extend(["--validator".into(), key.public().to_string()]);
    }
    for zone in &manifest.zones {
        args.extend(["--zone".into(), zone.flag()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_to_end(binary, &args)?;
    let bytes = std::fs::read(&genesis_file).map_err(io(format!("reading {}", genesis_file.display())))?;
    let genesis: Genesis = from_bytes(&bytes).map_err(|error| SetupError::Genesis(error.to_string()))?;

    let validators = keys.validators.len();
    let mut consensus_ids = Vec::with_capacity(validators);
    for (index, name) in names.iter().enumerate() {
        let dir_text = nodes_dir.join(name).display().to_string();
        let printed = run_to_end(
            binary,
            &["init", "--data-dir", &dir_text, "--genesis", &genesis_file.display().to_string()],
        )?;
        let expected = if index < validators { "(validator)" } else { "(replica)" };
        let consensus_id = printed
            .lines()
            .find_map(|line| line.strip_prefix("Consensus id:"))
            .map(|id| id.trim().to_string());
        match consensus_id {
            Some(id) if printed.lines().any(|line| line.trim_end().ends_with(expected)) => {
                if index < validators {
                    consensus_ids.push(id);
                }
            }
            _ => {
                return Err(SetupError::Refused {
                    what: format!("gridshare-node init for {name}"),
                    message: format!("it did not make a {expected} node:\n{printed}"),
                });
            }
        }
    }
    let mut consensus = consensus_addresses(&consensus_ids)?.into_iter();
    let mut nodes = Vec::with_capacity(names.len());
    for name in &names {
        let log = logs_dir.join(format!("{name}.log"));
        let dir = nodes_dir.join(name);
        nodes.push(Arc::new(Node::new(name, consensus.next(), dir, log, binary, timeouts)?));
    }
    Ok((genesis, genesis_file, nodes))
}

/// The consensus addresses of the validators with consensus peer ids
/// `ids`: a lone validator listens on a port the OS picks; several get
/// loopback ports the OS hands out now, kept for every restart, since each
/// dials the others, by address and peer id (`ADDRESS/p2p/ID`).
fn consensus_addresses(ids: &[String]) -> Result<Vec<ConsensusAddresses>, SetupError> {
    if ids.len() == 1 {
        return Ok(vec![ConsensusAddresses { listen: "/ip4/127.0.0.1/tcp/0".into(), peers: Vec::new() }]);
    }
    let listen: Vec<String> = loopback_ports(ids.len())
        .map_err(ProcessError::from)?
        .into_iter()
        .map(|port| format!("/ip4/127.0.0.1/tcp/{port}"))
        .collect();
    Ok((0..ids.len())
        .map(|own| ConsensusAddresses {
            listen: listen[own].clone(),
            peers: (0..ids.len())
                .filter(|other| *other != own)
                .map(|other| format!("{}/p2p/{}", listen[other], ids[other]))
                .collect(),
        })
        .collect())
}

/// Starts the validators (each bootstrapping from the ones before it),
/// then every household node bootstrapping from all of them, and waits
/// until each household node has a peer.
pub fn start(manifest: &Manifest, nodes: &[Arc<Node>], skews: &[(usize, i64)]) -> Result<(), SetupError> {
    let skew_of =
        |index: usize| skews.iter().rev().find(|(node, _)| *node == index).map_or(0, |(_, skew)| *skew);
    let validators = manifest.validators as usize;
    let mut bootstrap = Vec::with_capacity(validators);
    for (index, validator) in nodes[..validators].iter().enumerate() {
        validator.configure(bootstrap.clone(), Some(manifest.block_time_ms), skew_of(index));
        validator.start()?;
        bootstrap.push(validator.p2p());
    }
    // Start household nodes a few at a time: each start waits for the
    // node's addresses, which takes a moment.
    for (chunk_index, chunk) in nodes[validators..].chunks(8).enumerate() {
        let results: Vec<Result<(), ProcessError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(offset, node)| {
                    let bootstrap = bootstrap.clone();
                    let skew = skew_of(validators + chunk_index * 8 + offset);
                    scope.spawn(move || {
                        node.configure(bootstrap, None, skew);
                        node.start()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(ProcessError::Io {
                            what: "starting a node".into(),
                            error: std::io::Error::other("panicked"),
                        })
                    })
                })
                .collect()
        });
        for result in results {
            result?;
        }
    }
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    // A lone validator has no one to wait for; every other node needs a peer.
    let needs_peer = if validators == 1 { &nodes[1..] } else { nodes };
    for node in needs_peer {
        loop {
            let peers = node.api().status().map_or(0, |status| status.peers);
            if peers >= 1 {
                break;
            }
            if Instant::now() > deadline {
                return Err(SetupError::Timeout {
                    what: format!("{} to connect to a peer", node.name),
                    seconds: CONNECT_TIMEOUT.as_secs(),
                    hint: hint(nodes),
                });
            }
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

/// The registrar's transactions: for each household its account, its
/// meter (limits scaled to the compressed day) and its first credit, with
/// nonces 1, 2, 3, ... in that order.
pub fn registrations(manifest: &Manifest, genesis: &Genesis, keys: &Keys) -> Vec<SignedTx> {
    let registrar = keys.registrar.public();
    let community = &genesis.community_id;
    let mut nonce = 0;
    let mut next = || {
        nonce += 1;
        nonce
    };
    let mut txs = Vec::with_capacity(keys.accounts.len() * 3);
    for (household, (account, meter)) in (0_u32..).zip(keys.accounts.iter().zip(&keys.meters)) {
        let account = account.public();
        let bodies = [
            Tx::RegisterAccount { registrar, nonce: next(), account, credit_limit_nano: 0 },
            Tx::RegisterMeter {
                registrar,
                nonce: next(),
                meter: meter.public(),
                owner: account,
                max_import_w: meter_limit_w(manifest, METER_IMPORT_W),
                max_export_w: meter_limit_w(manifest, METER_EXPORT_W),
                zone: manifest.zone_of_household(household).into(),
            },
            Tx::Credit {
                registrar,
                nonce: next(),
                account,
                amount_nano: INITIAL_CREDIT_UNITS * NANOS_PER_UNIT,
                reference: "testnet deposit".into(),
            },
        ];
        txs.extend(bodies.into_iter().map(|body| SignedTx::sign(body, &keys.registrar, community)));
    }
    txs
}

/// Submits the registrations to the validator in waves: a signer has at
/// most 64 transactions waiting in a mempool, so a wave goes in order and
/// stops at the first 429; the next wave starts after the registrar's last
/// nonce the node reports (waiting transactions included), which also
/// recovers from an answer lost to a timeout. Then waits until every node
/// knows every account.
pub fn register(
    manifest: &Manifest,
    genesis: &Genesis,
    keys: &Keys,
    nodes: &[Arc<Node>],
    journal: &Journal,
) -> Result<(), SetupError> {
    let txs = registrations(manifest, genesis, keys);
    let validator = &nodes[0];
    let seconds = 60 + txs.len() as u64 / 20;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        // A registrar is known with no transaction yet: nonce 0.
        let last = validator.api().last_nonce(&keys.registrar.public())?.unwrap_or(0);
        let done = usize::try_from(last).unwrap_or(usize::MAX).min(txs.len());
        if done == txs.len() {
            break;
        }
        for tx in &txs[done..] {
            let sent_ms = now_ms();
            match validator.api().submit(tx)? {
                Submission::Admitted { id } => journal.acknowledged(Acknowledged {
                    id: id.to_string(),
                    kind: tx.tx.kind(),
                    household: None,
                    node: 0,
                    interval: None,
                    sent_ms,
                    acknowledged_ms: now_ms(),
                }),
                Submission::Refused { status: 429, .. } => break,
                // Already waiting: its answer was lost.
                Submission::Refused { status: 409, .. } => {}
                Submission::Refused { status, code, message, .. } => {
                    return Err(SetupError::Refused {
                        what: format!(
                            "the registrar's {} (nonce {:?}, HTTP {status} {code})",
                            tx.tx.kind(),
                            tx.tx.nonce()
                        ),
                        message,
                    });
                }
            }
        }
        if Instant::now() > deadline {
            return Err(SetupError::Timeout { what: "the registrations".into(), seconds, hint: hint(nodes) });
        }
        std::thread::sleep(Duration::from_millis(manifest.block_time_ms));
    }
    // The last credit is the registrar's last transaction: once every node
    // shows it, every account, meter and credit is committed there.
    let households = u64::from(manifest.households);
    let last_account = keys.accounts.last().map(Keypair::public);
    for node in nodes {
        loop {
            let accounts = node.api().status().map_or(0, |status| status.accounts);
            let credited = last_account.is_some_and(|account| {
                node.api()
                    .account(&account)
                    .is_ok_and(|found| found.is_some_and(|found| found.balance_nano != 0))
            });
            if accounts >= households && credited {
                break;
            }
            if Instant::now() > deadline {
                let status = |node: &Node| {
                    node.api().status().map_or_else(
                        |error| format!("{}: {error}", node.name),
                        |status| {
                            format!("{} at height {} with {} peers", node.name, status.height, status.peers)
                        },
                    )
                };
                return Err(SetupError::Timeout {
                    what: format!(
                        "{} to know all {households} accounts and credits (it knows {accounts}; {}, {})",
                        node.name,
                        status(node),
                        status(&nodes[0])
                    ),
                    seconds,
                    hint: hint(nodes),
                });
            }
            std::thread::sleep(POLL);
        }
    }
    Ok(())
}

/// Until the agents take over, every registered meter reports a zero
/// reading for each interval that ends, from the interval it was
/// registered in on: a meter is billed every interval after its
/// registration, and an interval without a reading at its full import
/// capacity (docs/PROTOCOL.md §5.6), while registering a whole street and
/// starting its agents takes several intervals. The households' registers
/// start at zero, so these readings are what their meters say.
#[derive(Debug)]
pub struct IdleMeters {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// How often the idle meters look for an interval that ended.
const IDLE_METERS_POLL: Duration = Duration::from_millis(200);

impl IdleMeters {
    /// Starts reporting for `keys`' meters through `validator`'s API.
    pub fn start(genesis: &Genesis, keys: &Keys, validator: Arc<Node>, journal: &Arc<Journal>) -> IdleMeters {
        let stop = Arc::new(AtomicBool::new(false));
        let meters: Vec<Keypair> = keys.meters.iter().map(|meter| Keypair::from_seed(meter.seed())).collect();
        let (genesis, journal, stopped) = (genesis.clone(), journal.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // The last interval reported for each meter.
            let mut reported: Vec<Option<u64>> = vec![None; meters.len()];
            while !stopped.load(Ordering::Relaxed) {
                let Some(ended) = genesis.interval_at(now_ms()).checked_sub(1) else {
                    std::thread::sleep(IDLE_METERS_POLL);
                    continue;
                };
                for (index, meter) in meters.iter().enumerate() {
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    if reported[index].is_some_and(|last| last >= ended) {
                        continue;
                    }
                    // Not registered yet (or the node is busy): next round.
                    let Ok(Some(json)) = validator.api().meter(&meter.public()) else {
                        continue;
                    };
                    let registered = json.registered_interval;
                    let after_last = json.last_reading.map(|last| last.interval + 1);
                    let after_reported = reported[index].map(|last| last + 1);
                    let first = registered.max(after_last.unwrap_or(0)).max(after_reported.unwrap_or(0));
                    for interval in first..=ended {
                        let household = u32::try_from(index).unwrap_or(u32::MAX);
                        if !report_zero(&genesis, meter, interval, household, &validator, &journal) {
                            break;
                        }
                        reported[index] = Some(interval);
                    }
                }
                std::thread::sleep(IDLE_METERS_POLL);
            }
        });
        IdleMeters { stop, thread: Mutex::new(Some(thread)) }
    }

    /// Stops reporting and waits until the last report is answered.
    pub fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.lock().map(|mut thread| thread.take()).unwrap_or(None);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for IdleMeters {
    /// A run that ends before trading (a failed setup) stops them too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Submits `meter`'s zero reading of `interval` to `validator`; false if it
/// was not admitted (it is tried again next round, or by the agent).
fn report_zero(
    genesis: &Genesis,
    meter: &Keypair,
    interval: u64,
    household: u32,
    validator: &Node,
    journal: &Journal,
) -> bool {
    let reading = MeterReading { meter: meter.public(), interval, import_wh_total: 0, export_wh_total: 0 };
    let signed = SignedMeterReading::sign(reading, meter, &genesis.community_id);
    let tx = SignedTx { tx: Tx::MeterReading(reading), signature: signed.signature };
    let sent_ms = now_ms();
    match validator.api().submit(&tx) {
        Ok(Submission::Admitted { id }) => {
            journal.acknowledged(Acknowledged {
                id: id.to_string(),
                kind: tx.tx.kind(),
                household: Some(household),
                node: 0,
                interval: Some(interval),
                sent_ms,
                acknowledged_ms: now_ms(),
            });
            true
        }
        // Already waiting there: its answer was lost.
        Ok(Submission::Refused { status: 409, .. }) => true,
        Ok(Submission::Refused { .. }) | Err(_) => false,
    }
}
