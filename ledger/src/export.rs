//! The export format: a whole ledger in one streamable file, the genesis
//! then every certified block in height order (docs/PROTOCOL.md §8).
//!
//! `magic (24 bytes) ‖ format version (u16 LE) ‖ record*`, where a record is
//! `kind (u8) ‖ length (u32 LE) ‖ borsh bytes`: kind 0 is the genesis (first
//! and once), 1 a certified block, 3 a `VoteEquivocation` (version 2 on), 4 a
//! `ProposalEquivocation` (version 3 on), 2 the end (a u64 block count), so
//! that a truncated file is told apart from a short chain. Files of versions
//! 1 (without evidence) and 2 (with vote evidence only) are still read; a
//! record of a kind its file's version does not have is malformed.

use std::io::{Read, Write};

use crate::block::CertifiedBlock;
use crate::consensus::{Equivocation, ProposalEquivocation, VoteEquivocation};
use crate::encoding::{DecodeError, from_bytes, to_bytes};
use crate::genesis::Genesis;
use crate::store::{EVIDENCE_MAX, Store, StoreError};

/// The first bytes of every export.
pub const MAGIC: &[u8; 24] = b"GRIDSHARE-LEDGER-EXPORT\n";
pub const FORMAT_VERSION: u16 = 3;
/// The oldest version this build reads.
pub const OLDEST_FORMAT_VERSION: u16 = 1;
/// The largest record accepted: a bound so garbage cannot ask for gigabytes.
pub const RECORD_BYTES_MAX: u32 = 256 << 20;

const KIND_GENESIS: u8 = 0;
const KIND_BLOCK: u8 = 1;
const KIND_END: u8 = 2;
const KIND_VOTE_EVIDENCE: u8 = 3;
const KIND_PROPOSAL_EVIDENCE: u8 = 4;

/// The first format version with each kind of evidence record.
const VOTE_EVIDENCE_SINCE_VERSION: u16 = 2;
const PROPOSAL_EVIDENCE_SINCE_VERSION: u16 = 3;

/// Why an export could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a Gridshare ledger export (the file does not start with the export magic)")]
    NotAnExport,
    #[error(
        "export format version {0} is not supported (this build reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
    )]
    Version(u16),
    #[error("record {index}: {message}")]
    Malformed { index: u64, message: String },
    #[error("the export ends after {blocks} blocks without its end record: it is truncated")]
    Truncated { blocks: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes an export record by record.
#[derive(Debug)]
pub struct ExportWriter<W: Write> {
    out: W,
    blocks: u64,
}

impl<W: Write> ExportWriter<W> {
    pub fn new(mut out: W, genesis: &Genesis) -> Result<ExportWriter<W>, ExportError> {
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        let mut writer = ExportWriter { out, blocks: 0 };
        writer.record(KIND_GENESIS, &to_bytes(genesis))?;
        Ok(writer)
    }

    pub fn block(&mut self, block: &CertifiedBlock) -> Result<(), ExportError> {
        self.record(KIND_BLOCK, &to_bytes(block))?;
        self.blocks += 1;
        Ok(())
    }

    /// Writes evidence that a validator equivocated: a record of its kind.
    pub fn evidence(&mut self, evidence: &Equivocation) -> Result<(), ExportError> {
        match evidence {
            Equivocation::Votes(votes) => self.record(KIND_VOTE_EVIDENCE, &to_bytes(votes)),
            Equivocation::Proposals(proposals) => self.record(KIND_PROPOSAL_EVIDENCE, &to_bytes(proposals)),
        }
    }

    /// Writes the end record and flushes; returns the number of blocks.
    pub fn finish(mut self) -> Result<u64, ExportError> {
        let blocks = self.blocks;
        self.record(KIND_END, &blocks.to_le_bytes())?;
        self.out.flush()?;
        Ok(blocks)
    }

    fn record(&mut self, kind: u8, bytes: &[u8]) -> Result<(), ExportError> {
        let length =
            u32::try_from(bytes.len()).ok().filter(|&length| length <= RECORD_BYTES_MAX).ok_or_else(
                || ExportError::Malformed { index: self.blocks + 1, message: "record too large".into() },
            )?;
        self.out.write_all(&[kind])?;
        self.out.write_all(&length.to_le_bytes())?;
        self.out.write_all(bytes)?;
        Ok(())
    }
}

/// Writes the whole chain of `store` to `out`; returns the number of blocks.
pub fn export_store(store: &dyn Store, out: impl Write) -> Result<u64, ExportError> {
    let mut writer = ExportWriter::new(out, &store.genesis()?)?;
    for height in 1..=store.height()? {
        let block = store.block(height)?.ok_or_else(|| {
            ExportError::Store(StoreError::Corrupt(format!("block {height} is missing below the tip")))
        })?;
        writer.block(&block)?;
    }
    for evidence in store.evidence()? {
        writer.evidence(&evidence)?;
    }
    writer.finish()
}

/// Reads an export record by record; blocks come one at a time, so an export
/// of any length streams in bounded memory.
#[derive(Debug)]
pub struct ExportReader<R: Read> {
    input: R,
    /// The file's format version.
    version: u16,
    /// Records read so far, the genesis included.
    records: u64,
    blocks: u64,
    ended: bool,
    evidence: Vec<Equivocation>,
}

impl<R: Read> ExportReader<R> {
    /// Checks the magic and version and reads the genesis.
    pub fn open(mut input: R) -> Result<(ExportReader<R>, Genesis), ExportError> {
        let mut magic = [0_u8; 24];
        input.read_exact(&mut magic).map_err(|_| ExportError::NotAnExport)?;
        if &magic != MAGIC {
            return Err(ExportError::NotAnExport);
        }
        let mut version = [0_u8; 2];
        input.read_exact(&mut version).map_err(|_| ExportError::NotAnExport)?;
        let version = u16::from_le_bytes(version);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(ExportError::Version(version));
        }
        let mut reader =
            ExportReader { input, version, records: 0, blocks: 0, ended: false, evidence: Vec::new() };
        let (kind, bytes) = reader.record()?.ok_or(ExportError::Truncated { blocks: 0 })?;
        if kind != KIND_GENESIS {
            return Err(ExportError::Malformed {
                index: 0,
                message: "the first record is not the genesis".into(),
            });
        }
        let genesis = from_bytes::<Genesis>(&bytes)
            .map_err(|error| ExportError::Malformed { index: 0, message: error.to_string() })?;
        Ok((reader, genesis))
    }

    /// The file's format version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The equivocation evidence read so far, of both kinds in file order
    /// (all of it once `next_block` has returned `None`).
    pub fn evidence(&self) -> &[Equivocation] {
        &self.evidence
    }

    /// The next block, or `None` after the end record. Evidence records on
    /// the way are collected (see [`ExportReader::evidence`]).
    pub fn next_block(&mut self) -> Result<Option<CertifiedBlock>, ExportError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let index = self.records;
            let (kind, bytes) = self.record()?.ok_or(ExportError::Truncated { blocks: self.blocks })?;
            type Decode = fn(&[u8]) -> Result<Equivocation, DecodeError>;
            let (since, decode): (u16, Decode) = match kind {
                KIND_VOTE_EVIDENCE => (VOTE_EVIDENCE_SINCE_VERSION, |bytes| {
                    from_bytes::<VoteEquivocation>(bytes).map(Equivocation::Votes)
                }),
                KIND_PROPOSAL_EVIDENCE => (PROPOSAL_EVIDENCE_SINCE_VERSION, |bytes| {
                    from_bytes::<ProposalEquivocation>(bytes).map(Equivocation::Proposals)
                }),
                _ => return self.block_or_end(index, kind, bytes),
            };
            if self.version < since {
                return Err(ExportError::Malformed {
                    index,
                    message: format!(
                        "an evidence record of kind {kind} in a file of format version {}, which has none",
                        self.version
                    ),
                });
            }
            if self.evidence.len() >= EVIDENCE_MAX {
                return Err(ExportError::Malformed {
                    index,
                    message: format!("more than {EVIDENCE_MAX} evidence records"),
                });
            }
            let evidence = decode(&bytes)
                .map_err(|error| ExportError::Malformed { index, message: error.to_string() })?;
            self.evidence.push(evidence);
        }
    }

    fn block_or_end(
        &mut self,
        index: u64,
        kind: u8,
        bytes: Vec<u8>,
    ) -> Result<Option<CertifiedBlock>, ExportError> {
        match kind {
            KIND_BLOCK => {
                let block = from_bytes::<CertifiedBlock>(&bytes)
                    .map_err(|error| ExportError::Malformed { index, message: error.to_string() })?;
                self.blocks += 1;
                Ok(Some(block))
            }
            KIND_END => {
                let count: [u8; 8] = bytes.as_slice().try_into().map_err(|_| ExportError::Malformed {
                    index,
                    message: "the end record is not an 8-byte block count".into(),
                })?;
                let count = u64::from_le_bytes(count);
                if count != self.blocks {
                    return Err(ExportError::Malformed {
                        index,
                        message: format!(
                            "the end record counts {count} blocks, the file holds {}",
                            self.blocks
                        ),
                    });
                }
                let mut rest = [0_u8; 1];
                if self.input.read(&mut rest)? != 0 {
                    return Err(ExportError::Malformed {
                        index,
                        message: "bytes follow the end record".into(),
                    });
                }
                self.ended = true;
                Ok(None)
            }
            other => Err(ExportError::Malformed { index, message: format!("unknown record kind {other}") }),
        }
    }

    /// One record, or `None` at a clean end of input.
    fn record(&mut self) -> Result<Option<(u8, Vec<u8>)>, ExportError> {
        let index = self.records;
        let mut kind = [0_u8; 1];
        if self.input.read(&mut kind)? == 0 {
            return Ok(None);
        }
        let mut length = [0_u8; 4];
        self.input
            .read_exact(&mut length)
            .map_err(|_| ExportError::Malformed { index, message: "the record length is cut off".into() })?;
        let length = u32::from_le_bytes(length);
        if length > RECORD_BYTES_MAX {
            return Err(ExportError::Malformed {
                index,
                message: format!("a record of {length} bytes is above the bound of {RECORD_BYTES_MAX}"),
            });
        }
        // Memory follows the bytes that are there, not the length a record
        // claims: a short file that claims 256 MiB does not get 256 MiB.
        let mut bytes = Vec::new();
        let cut_off =
            || ExportError::Malformed { index, message: format!("the record is cut off ({length} bytes)") };
        (&mut self.input).take(u64::from(length)).read_to_end(&mut bytes).map_err(|_| cut_off())?;
        if bytes.len() != usize::try_from(length).unwrap_or(usize::MAX) {
            return Err(cut_off());
        }
        self.records += 1;
        Ok(Some((kind[0], bytes)))
    }
}
