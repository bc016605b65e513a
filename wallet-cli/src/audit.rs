//! `gridshare audit` and `gridshare export`: the regulator's commands. They
//! read ledgers only through `gridshare-ledger`: an export file or a node's
//! data directory.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use gridshare_ledger::audit::{Report, audit_export, audit_store};
use gridshare_ledger::block::CertifiedBlock;
use gridshare_ledger::export::{ExportError, ExportReader, export_store};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::store::{RedbStore, STORE_FILE_NAME, Store, StoreError};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::amount::{format_scaled, scale};
use gridshare_api::client::{Client, ClientError};

/// Why a ledger could not be read or written at all (as opposed to findings
/// inside a ledger that was read). The cause is part of the message, not a
/// chained source, so that it is printed once.
#[derive(Debug, thiserror::Error)]
pub enum LedgerAccessError {
    #[error("cannot open {path}: {error}")]
    Open { path: PathBuf, error: std::io::Error },
    #[error("{path}: {error}")]
    Export { path: PathBuf, error: ExportError },
    /// Store errors name their file themselves.
    #[error("{error}")]
    Store { path: PathBuf, error: StoreError },
    #[error("{data_dir} holds no ledger (no {STORE_FILE_NAME}): is it a node's data directory?")]
    NoStore { data_dir: PathBuf },
    #[error("{}", crate::wallet::node_error_text(.0))]
    Node(ClientError),
}

/// The store file of a data directory.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STORE_FILE_NAME)
}

fn open_store(data_dir: &Path) -> Result<RedbStore, LedgerAccessError> {
    let path = store_path(data_dir);
    if !path.exists() {
        return Err(LedgerAccessError::NoStore { data_dir: data_dir.into() });
    }
    RedbStore::open(&path).map_err(|error| LedgerAccessError::Store { path, error })
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn progress_bar(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{spinner} auditing block {pos}/{len} {wide_bar} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} auditing block {pos}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    // indicatif hides itself when stderr is not a terminal.
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar
}

/// Audits an export file.
pub fn audit_file(path: &Path) -> Result<Report, LedgerAccessError> {
    let file = File::open(path).map_err(|error| LedgerAccessError::Open { path: path.into(), error })?;
    let bar = progress_bar(None);
    let report = audit_export(BufReader::new(file), |done| bar.set_position(done))
        .map_err(|error| LedgerAccessError::Export { path: path.into(), error })?;
    bar.finish_and_clear();
    Ok(report)
}

/// Audits the store in a node's data directory.
pub fn audit_data_dir(data_dir: &Path) -> Result<Report, LedgerAccessError> {
    let store = open_store(data_dir)?;
    let path = store_path(data_dir);
    let total = store.height().map_err(|error| LedgerAccessError::Store { path: path.clone(), error })?;
    let bar = progress_bar(Some(total));
    let report = audit_store(&store, |done| bar.set_position(done))
        .map_err(|error| LedgerAccessError::Store { path, error })?;
    bar.finish_and_clear();
    Ok(report)
}

/// Writes the ledger of a data directory to one export file; returns the
/// number of blocks. The file is written under a temporary name and renamed
/// when complete, so a failed export leaves no half file behind.
pub fn export_data_dir(data_dir: &Path, out: &Path) -> Result<u64, LedgerAccessError> {
    let store = open_store(data_dir)?;
    let partial = out.with_extension("partial");
    let file =
        File::create(&partial).map_err(|error| LedgerAccessError::Open { path: partial.clone(), error })?;
    let blocks = export_store(&store, BufWriter::new(file))
        .map_err(|error| LedgerAccessError::Export { path: out.into(), error })?;
    std::fs::rename(&partial, out).map_err(|error| LedgerAccessError::Open { path: out.into(), error })?;
    Ok(blocks)
}

/// Counts the blocks of an export file, reading it to its end record: a
/// download that broke off is caught here.
fn count_blocks(path: &Path) -> Result<u64, LedgerAccessError> {
    let file = File::open(path).map_err(|error| LedgerAccessError::Open { path: path.into(), error })?;
    let export = |error| LedgerAccessError::Export { path: path.into(), error };
    let (mut reader, _) = ExportReader::open(BufReader::new(file)).map_err(export)?;
    let mut blocks = 0;
    while reader.next_block().map_err(export)?.is_some() {
        blocks += 1;
    }
    Ok(blocks)
}

/// Downloads a node's ledger (`GET /v1/export`) to one export file and
/// checks that it is complete; returns the number of blocks. As with a data
/// directory, the file appears under its name only when complete.
pub fn export_node(node: &Client, out: &Path) -> Result<u64, LedgerAccessError> {
    let partial = out.with_extension("partial");
    let result = (|| {
        let file = File::create(&partial)
            .map_err(|error| LedgerAccessError::Open { path: partial.clone(), error })?;
        let mut writer = BufWriter::new(file);
        node.export(&mut writer).map_err(LedgerAccessError::Node)?;
        drop(writer);
        let blocks = count_blocks(&partial)?;
        std::fs::rename(&partial, out)
            .map_err(|error| LedgerAccessError::Open { path: out.into(), error })?;
        Ok(blocks)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Where a ledger is read from.
#[derive(Clone, Copy, Debug)]
pub enum LedgerSource<'a> {
    /// An export file.
    File(&'a Path),
    /// A node's data directory.
    DataDir(&'a Path),
    /// A node's API: its export, downloaded to a temporary file first.
    Node(&'a Client),
}

/// A ledger's genesis and its blocks in height order, from any source.
#[derive(Debug)]
pub struct Blocks {
    genesis: Genesis,
    path: PathBuf,
    inner: BlocksFrom,
    /// A node's export while it is read (removed when dropped).
    _download: Option<tempfile::NamedTempFile>,
}

#[derive(Debug)]
enum BlocksFrom {
    Export(ExportReader<BufReader<File>>),
    Store { store: Box<RedbStore>, next: u64, tip: u64 },
}

impl Blocks {
    pub fn open(source: LedgerSource<'_>) -> Result<Blocks, LedgerAccessError> {
        match source {
            LedgerSource::File(path) => Blocks::export(path, None),
            LedgerSource::DataDir(data_dir) => {
                let store = open_store(data_dir)?;
                let path = store_path(data_dir);
                let store_error = |error| LedgerAccessError::Store { path: path.clone(), error };
                let genesis = store.genesis().map_err(store_error)?;
                let tip = store.height().map_err(store_error)?;
                Ok(Blocks {
                    genesis,
                    path: path.clone(),
                    inner: BlocksFrom::Store { store: Box::new(store), next: 1, tip },
                    _download: None,
                })
            }
            LedgerSource::Node(node) => {
                let download = download(node)?;
                let path = download.path().to_path_buf();
                Blocks::export(&path, Some(download))
            }
        }
    }

    fn export(path: &Path, download: Option<tempfile::NamedTempFile>) -> Result<Blocks, LedgerAccessError> {
        let file = File::open(path).map_err(|error| LedgerAccessError::Open { path: path.into(), error })?;
        let (reader, genesis) = ExportReader::open(BufReader::new(file))
            .map_err(|error| LedgerAccessError::Export { path: path.into(), error })?;
        Ok(Blocks { genesis, path: path.into(), inner: BlocksFrom::Export(reader), _download: download })
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The next block, or `None` after the last.
    pub fn next_block(&mut self) -> Result<Option<CertifiedBlock>, LedgerAccessError> {
        match &mut self.inner {
            BlocksFrom::Export(reader) => reader
                .next_block()
                .map_err(|error| LedgerAccessError::Export { path: self.path.clone(), error }),
            BlocksFrom::Store { store, next, tip } => {
                if *next > *tip {
                    return Ok(None);
                }
                let height = *next;
                *next += 1;
                let store_error = |error| LedgerAccessError::Store { path: self.path.clone(), error };
                match store.block(height).map_err(store_error)? {
                    Some(block) => Ok(Some(block)),
                    None => Err(LedgerAccessError::Store {
                        path: self.path.clone(),
                        error: StoreError::Corrupt(format!("block {height} is missing below the tip")),
                    }),
                }
            }
        }
    }
}

/// Downloads a node's ledger (`GET /v1/export`) to a temporary file,
/// removed when dropped.
fn download(node: &Client) -> Result<tempfile::NamedTempFile, LedgerAccessError> {
    let temporary = tempfile::Builder::new()
        .prefix("gridshare-ledger-")
        .suffix(".export")
        .tempfile()
        .map_err(|error| LedgerAccessError::Open { path: std::env::temp_dir(), error })?;
    let mut writer = BufWriter::new(temporary.as_file());
    node.export(&mut writer).map_err(LedgerAccessError::Node)?;
    drop(writer);
    Ok(temporary)
}

/// Downloads a node's ledger to a temporary file and audits it.
pub fn audit_node(node: &Client) -> Result<Report, LedgerAccessError> {
    audit_file(download(node)?.path())
}

/// The `--json` form of a report.
#[derive(Debug, Serialize)]
pub struct ReportJson {
    pub passed: bool,
    pub genesis_hash: String,
    pub blocks: u64,
    pub transactions: u64,
    pub signatures_verified: u64,
    pub intervals_cleared: u64,
    pub trades: u64,
    pub energy_traded_wh: u64,
    pub settlements: u64,
    pub bills: u64,
    pub accounts: u64,
    pub executed_height: u64,
    pub state_root: String,
    /// Validators proven to have equivocated (verified evidence).
    pub equivocations: u64,
    pub findings: Vec<FindingJson>,
    pub findings_omitted: u64,
}

#[derive(Debug, Serialize)]
pub struct FindingJson {
    pub height: Option<u64>,
    pub object: String,
    pub message: String,
}

pub fn to_json(report: &Report) -> ReportJson {
    ReportJson {
        passed: report.passed(),
        genesis_hash: report.genesis_hash.to_string(),
        blocks: report.blocks,
        transactions: report.transactions,
        signatures_verified: report.signatures_verified,
        intervals_cleared: report.intervals_cleared,
        trades: report.trades,
        energy_traded_wh: report.energy_traded_wh,
        settlements: report.settlements,
        bills: report.bills,
        accounts: report.accounts,
        executed_height: report.executed_height,
        state_root: report.state_root.to_string(),
        equivocations: report.equivocations,
        findings: report
            .findings
            .iter()
            .map(|finding| FindingJson {
                height: finding.height,
                object: finding.object.clone(),
                message: finding.message.clone(),
            })
            .collect(),
        findings_omitted: report.findings_omitted,
    }
}

/// The report for people: a summary, then every finding.
pub fn to_text(report: &Report) -> String {
    let mut out = String::new();
    let verdict = if report.passed() { "PASSED: no finding" } else { "FAILED" };
    out += &format!("Audit           {verdict}\n");
    out += &format!("Genesis         {}\n", report.genesis_hash);
    out += &format!(
        "Blocks          {} ({} re-executed, state root {})\n",
        report.blocks, report.executed_height, report.state_root
    );
    out += &format!(
        "Transactions    {} ({} signatures verified)\n",
        report.transactions, report.signatures_verified
    );
    out += &format!(
        "Intervals       {} cleared, {} trades, {} kWh traded\n",
        report.intervals_cleared,
        report.trades,
        format_scaled(report.energy_traded_wh, scale::KWH_TO_WH)
    );
    out += &format!("Settlements     {} ({} bills)\n", report.settlements, report.bills);
    out += &format!("Accounts        {}\n", report.accounts);
    if report.equivocations > 0 {
        out += &format!(
            "Equivocations   {} (verified evidence of validators signing conflicting votes or proposals)\n",
            report.equivocations
        );
    }
    let count = report.findings.len() as u64 + report.findings_omitted;
    out += &format!("Findings        {count}\n");
    for finding in &report.findings {
        out += &format!("  - {finding}\n");
    }
    if report.findings_omitted > 0 {
        out += &format!("  ... and {} more\n", report.findings_omitted);
    }
    out
}
