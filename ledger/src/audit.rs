//! The audit: verifies a whole ledger from its genesis alone, as a regulator
//! would (docs/PROTOCOL.md §9). Every hash link, every certificate against
//! the genesis validator set, every signature (batched, in parallel across
//! cores), and every block re-executed, which re-runs every clearing and
//! settlement and compares receipts and state roots byte for byte and checks
//! the conservation invariants. Each problem becomes a finding with the height
//! and the object it is about.

use std::io::Read;

use rayon::prelude::*;

use crate::Hash;
use crate::block::CertifiedBlock;
use crate::block::Receipt;
use crate::consensus::Equivocation;
use crate::execute::{Signatures, execute};
use crate::export::{ExportError, ExportReader};
use crate::genesis::Genesis;
use crate::ids::SignatureError;
use crate::state::State;
use crate::store::{Store, StoreError};
use crate::tx::{SignatureCheck, verify_batch};

/// At most this many findings are listed; the rest are counted.
pub const FINDINGS_MAX: usize = 10_000;
/// Blocks are read ahead until their signatures number this many, then
/// verified together: large batches keep every core busy.
const SIGNATURES_PER_WINDOW: usize = 16_384;
/// Signatures per batch verification on one core.
const SIGNATURES_PER_BATCH: usize = 256;

/// One problem the audit found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The block it is in, if it is in one.
    pub height: Option<u64>,
    /// What it is about: "block", "certificate", "transaction 3 (offer)", ...
    pub object: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.height {
            Some(height) => write!(f, "block {height}, {}: {}", self.object, self.message),
            None => write!(f, "{}: {}", self.object, self.message),
        }
    }
}

/// What the audit saw and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub genesis_hash: Hash,
    pub blocks: u64,
    pub transactions: u64,
    pub signatures_verified: u64,
    pub intervals_cleared: u64,
    pub trades: u64,
    pub energy_traded_wh: u64,
    pub settlements: u64,
    pub bills: u64,
    /// Accounts in the last state the audit could compute.
    pub accounts: u64,
    /// The height the audit re-executed up to, and the state root there.
    pub executed_height: u64,
    pub state_root: Hash,
    pub findings: Vec<Finding>,
    /// Findings beyond [`FINDINGS_MAX`].
    pub findings_omitted: u64,
    /// Equivocations the ledger's evidence proves, of votes and of proposals
    /// (each checked against the genesis; evidence that does not hold is a
    /// finding).
    pub equivocations: u64,
}

impl Report {
    /// True when the audit found nothing.
    pub fn passed(&self) -> bool {
        self.findings.is_empty() && self.findings_omitted == 0
    }
}

/// Audits blocks one window at a time. Feed it blocks in height order.
#[derive(Debug)]
pub struct Auditor {
    genesis: Genesis,
    /// The state after the last block re-executed; `None` once a block could
    /// not be executed, after which only links, certificates and signatures
    /// are checked.
    state: Option<State>,
    /// Height and header hash of the last block seen.
    height: u64,
    tip: Hash,
    window: Vec<CertifiedBlock>,
    window_signatures: usize,
    report: Report,
}

impl Auditor {
    pub fn new(genesis: Genesis) -> Auditor {
        let mut report = Report { genesis_hash: genesis.hash(), ..Report::default() };
        let valid = match genesis.validate() {
            Ok(()) => true,
            Err(error) => {
                let message = error.to_string();
                push(&mut report, Finding { height: None, object: "genesis".into(), message });
                false
            }
        };
        let state = State::genesis(&genesis);
        report.state_root = state.root(&genesis.community_id);
        Auditor {
            tip: genesis.hash(),
            // The state machine is defined only under a valid genesis (its
            // market-time arithmetic divides by the interval length, for
            // one), and an export may hold any genesis: under an invalid one
            // no block is executed, and only links, certificates and
            // signatures are checked.
            state: valid.then_some(state),
            genesis,
            height: 0,
            window: Vec::new(),
            window_signatures: 0,
            report,
        }
    }

    /// Queues the next block; audits the queued window when it is full.
    pub fn block(&mut self, block: CertifiedBlock) {
        self.window_signatures += block.block.transactions.len() * 2 + block.certificate.signatures.len();
        self.window.push(block);
        if self.window_signatures >= SIGNATURES_PER_WINDOW {
            self.flush();
        }
    }

    /// Records a problem that is not about one block's content, e.g. an
    /// export that cannot be read further.
    pub fn finding(&mut self, object: &str, message: String) {
        self.flush();
        let height = Some(self.height + 1);
        push(&mut self.report, Finding { height, object: object.into(), message });
    }

    /// Checks evidence that a validator equivocated, of either kind.
    pub fn evidence(&mut self, evidence: &Equivocation) {
        match evidence.verify(&self.genesis) {
            Ok(()) => self.report.equivocations += 1,
            Err(error) => {
                let kind = match evidence {
                    Equivocation::Votes(_) => "vote",
                    Equivocation::Proposals(_) => "proposal",
                };
                let message = format!("{kind} equivocation evidence of {}: {error}", evidence.validator());
                push(
                    &mut self.report,
                    Finding { height: Some(evidence.height()), object: "evidence".into(), message },
                );
            }
        }
    }

    pub fn finish(mut self) -> Report {
        self.flush();
        self.report
    }

    fn flush(&mut self) {
        let window = std::mem::take(&mut self.window);
        self.window_signatures = 0;
        if window.is_empty() {
            return;
        }
        let community = self.genesis.community_id;
        // Every transaction signature of the window, tagged with its block
        // and transaction, verified in parallel batches.
        let checks: Vec<(usize, usize, SignatureCheck)> = window
            .par_iter()
            .enumerate()
            .flat_map_iter(|(block, certified)| {
                certified.block.transactions.iter().enumerate().flat_map(move |(index, tx)| {
                    tx.signature_checks(&community).into_iter().map(move |check| (block, index, check))
                })
            })
            .collect();
        let failures: Vec<(usize, usize, SignatureError)> = checks
            .par_chunks(SIGNATURES_PER_BATCH)
            .flat_map_iter(|chunk| verify_chunk(chunk).into_iter())
            .collect();
        self.report.signatures_verified += u64::try_from(checks.len()).unwrap_or(u64::MAX);
        drop(checks);
        for (offset, certified) in window.into_iter().enumerate() {
            let bad: Vec<&(usize, usize, SignatureError)> =
                failures.iter().filter(|(block, _, _)| *block == offset).collect();
            self.audit_block(certified, &bad);
        }
    }

    fn audit_block(&mut self, certified: CertifiedBlock, bad_signatures: &[&(usize, usize, SignatureError)]) {
        let CertifiedBlock { block, certificate } = certified;
        let header = &block.header;
        let height = Some(header.height);
        let mut findings = Vec::new();
        let mut finding =
            |object: String, message: String| findings.push(Finding { height, object, message });
        if header.height != self.height + 1 {
            finding("block".into(), format!("height {} follows height {}", header.height, self.height));
        }
        if header.previous_hash != self.tip {
            finding(
                "block".into(),
                format!("links to {}, but the previous block is {}", header.previous_hash, self.tip),
            );
        }
        if let Err(error) = certificate.verify(&self.genesis, header) {
            finding("certificate".into(), error.to_string());
        }
        for (_, index, error) in bad_signatures {
            let kind = block.transactions[*index].tx.kind();
            finding(format!("transaction {index} ({kind})"), error.to_string());
        }
        self.report.signatures_verified += u64::try_from(certificate.signatures.len()).unwrap_or(u64::MAX);

        // Re-execute while the chain so far executed; a block with a bad
        // signature is not executed (its state would be meaningless).
        if let Some(state) = &self.state {
            if !bad_signatures.is_empty() {
                finding("block".into(), "not re-executed: it carries invalid signatures".into());
                self.state = None;
            } else {
                match execute(&self.genesis, state, &block, Signatures::AlreadyVerified) {
                    Ok((next, receipts)) => {
                        self.count(&receipts);
                        self.report.executed_height = header.height;
                        self.report.state_root = next.root(&self.genesis.community_id);
                        self.report.accounts = u64::try_from(next.accounts.len()).unwrap_or(u64::MAX);
                        self.state = Some(next);
                    }
                    Err(error) => {
                        finding("block".into(), format!("re-execution fails: {error}"));
                        self.state = None;
                    }
                }
            }
        }
        for finding in findings {
            push(&mut self.report, finding);
        }
        self.report.blocks += 1;
        self.report.transactions += u64::try_from(block.transactions.len()).unwrap_or(u64::MAX);
        self.height = header.height;
        self.tip = header.hash();
    }

    fn count(&mut self, receipts: &[Receipt]) {
        for receipt in receipts {
            match receipt {
                Receipt::Clearing(clearing) => {
                    self.report.intervals_cleared += 1;
                    self.report.trades += u64::try_from(clearing.trades.len()).unwrap_or(u64::MAX);
                    self.report.energy_traded_wh =
                        self.report.energy_traded_wh.saturating_add(clearing.volume_wh);
                }
                Receipt::Settlement(settlement) => {
                    self.report.settlements += 1;
                    self.report.bills += u64::try_from(settlement.bills.len()).unwrap_or(u64::MAX);
                }
            }
        }
    }
}

fn push(report: &mut Report, finding: Finding) {
    if report.findings.len() < FINDINGS_MAX {
        report.findings.push(finding);
    } else {
        report.findings_omitted += 1;
    }
}

/// Batch-verifies a chunk; on failure, verifies one by one to name the bad
/// ones. Batch and single verification agree under the rule of
/// docs/PROTOCOL.md §3, so grouping never changes a verdict.
fn verify_chunk(chunk: &[(usize, usize, SignatureCheck)]) -> Vec<(usize, usize, SignatureError)> {
    if verify_batch(chunk.iter().map(|(_, _, check)| check)).is_ok() {
        return Vec::new();
    }
    chunk
        .iter()
        .filter_map(|(block, index, check)| check.verify().err().map(|error| (*block, *index, error)))
        .collect()
}

/// Audits an export; `progress` is called with the number of blocks read.
/// A file that is not an export, or whose genesis cannot be read, is an
/// error: nothing can be audited without the genesis. Anything wrong after
/// it is a finding.
pub fn audit_export(input: impl Read, mut progress: impl FnMut(u64)) -> Result<Report, ExportError> {
    let (mut reader, genesis) = ExportReader::open(input)?;
    let mut auditor = Auditor::new(genesis);
    let mut read = 0;
    loop {
        match reader.next_block() {
            Ok(Some(block)) => {
                auditor.block(block);
                read += 1;
                progress(read);
            }
            Ok(None) => break,
            Err(error) => {
                auditor.finding("export", error.to_string());
                break;
            }
        }
    }
    for evidence in reader.evidence() {
        auditor.evidence(evidence);
    }
    Ok(auditor.finish())
}

/// Audits the chain in a store. Storage errors are errors; a store whose
/// content does not verify gives findings.
pub fn audit_store(store: &dyn Store, mut progress: impl FnMut(u64)) -> Result<Report, StoreError> {
    let mut auditor = Auditor::new(store.genesis()?);
    for height in 1..=store.height()? {
        match store.block(height)? {
            Some(block) => auditor.block(block),
            None => auditor.finding("store", format!("block {height} is missing below the tip")),
        }
        progress(height);
    }
    for evidence in store.evidence()? {
        auditor.evidence(&evidence);
    }
    Ok(auditor.finish())
}
