//! Durable storage of the chain behind a small trait: certified blocks in
//! order, the genesis, and snapshots of the state (docs/PROTOCOL.md §7).
//!
//! A block, its receipts (in the block), its certificate and the state after
//! it are committed together. The state is written as a snapshot every
//! [`SNAPSHOT_EVERY_BLOCKS`] blocks, and only the latest is kept; between
//! snapshots it is recovered by re-executing the blocks after the last one,
//! which also re-verifies them. The chain is checked when a block is stored
//! (height, link, certificate, state root) and again when it is loaded.

use crate::Hash;
use crate::block::CertificateError;
use crate::block::CertifiedBlock;
use crate::consensus::Equivocation;
use crate::execute::BlockError;
use crate::genesis::Genesis;
use crate::state::State;

pub mod at_rest;
mod memory;
mod redb_store;

pub use memory::MemoryStore;
pub use redb_store::{BlockReader, RedbStore};

/// How often the whole state is written with a block.
pub const SNAPSHOT_EVERY_BLOCKS: u64 = 64;

/// The store's file name inside a node's data directory.
pub const STORE_FILE_NAME: &str = "ledger.redb";

/// What a [`RedbStore`]'s blocks file adds to the name of its redb file
/// (`ledger.redb.blocks` in a node's data directory).
pub const BLOCKS_FILE_SUFFIX: &str = ".blocks";

/// A chain store. Implementations: [`RedbStore`] on disk, [`MemoryStore`]
/// for tests.
pub trait Store {
    /// The genesis the store was created with.
    fn genesis(&self) -> Result<Genesis, StoreError>;
    /// The height of the last committed block, 0 before the first.
    fn height(&self) -> Result<u64, StoreError>;
    /// The certified block at `height` (1-based), if committed.
    fn block(&self, height: u64) -> Result<Option<CertifiedBlock>, StoreError>;
    /// Appends the next block and the state after it, durably: when this
    /// returns `Ok`, a crash at any later instant loses neither.
    fn commit(&mut self, block: &CertifiedBlock, state: &State) -> Result<(), StoreError>;
    /// The state after the last committed block.
    fn state(&self) -> Result<State, StoreError>;
    /// Records, durably, evidence that a validator equivocated (checked by
    /// the caller against the genesis); a copy already recorded is ignored.
    /// At most [`EVIDENCE_MAX`] are kept, of both kinds together.
    fn record_equivocation(&mut self, evidence: &Equivocation) -> Result<(), StoreError>;
    /// Every recorded equivocation, of either kind, in the order recorded.
    fn evidence(&self) -> Result<Vec<Equivocation>, StoreError>;
}

/// Equivocations a store keeps at most (each validator's first few are
/// what matters; the engine reports at most three per validator a height).
pub const EVIDENCE_MAX: usize = 10_000;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Database(String),
    #[error("{path} is not a Gridshare ledger store: {reason}")]
    NotAStore { path: String, reason: String },
    #[error("the store holds community {found}, not {expected}")]
    GenesisMismatch { expected: Hash, found: Hash },
    #[error("block {found} cannot follow height {height}")]
    NotNext { height: u64, found: u64 },
    #[error("block {height} links to {found}, but the chain tip is {expected}")]
    WrongPrevious { height: u64, expected: Hash, found: Hash },
    #[error("block {height}: {source}")]
    BadCertificate { height: u64, source: CertificateError },
    #[error("block {height}: the state root {found} differs from the header's {expected}")]
    StateRootMismatch { height: u64, expected: Hash, found: Hash },
    #[error("block {height} has {bytes} canonical bytes, more than the {max_bytes} a store keeps")]
    BlockTooLarge { height: u64, bytes: u64, max_bytes: u64 },
    #[error("stored block {height} does not re-execute: {source}")]
    Replay { height: u64, source: Box<BlockError> },
    #[error("the store is damaged: {0}")]
    Corrupt(String),
}

/// The checks every store makes before it commits `block` on top of `tip`
/// (the previous block's header hash, or the genesis hash at height 0).
pub fn check_next(
    genesis: &Genesis,
    height: u64,
    tip: Hash,
    block: &CertifiedBlock,
    state: &State,
) -> Result<(), StoreError> {
    let header = &block.block.header;
    if header.height != height + 1 {
        return Err(StoreError::NotNext { height, found: header.height });
    }
    if header.previous_hash != tip {
        return Err(StoreError::WrongPrevious {
            height: header.height,
            expected: tip,
            found: header.previous_hash,
        });
    }
    block
        .certificate
        .verify(genesis, header)
        .map_err(|source| StoreError::BadCertificate { height: header.height, source })?;
    let root = state.root(&genesis.community_id);
    if root != header.state_root || state.height != header.height {
        return Err(StoreError::StateRootMismatch {
            height: header.height,
            expected: header.state_root,
            found: root,
        });
    }
    Ok(())
}
