//! An in-memory [`Store`] for tests: the blocks in a vector and the latest
//! state, with the same commit checks as the on-disk store.

use crate::Hash;
use crate::block::CertifiedBlock;
use crate::consensus::Equivocation;
use crate::genesis::Genesis;
use crate::state::State;

use super::{EVIDENCE_MAX, Store, StoreError, check_next};

/// A chain store that lives in memory and is lost with the process.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    genesis: Genesis,
    genesis_hash: Hash,
    blocks: Vec<CertifiedBlock>,
    state: State,
    evidence: Vec<Equivocation>,
}

impl MemoryStore {
    /// An empty store of the community `genesis` starts.
    pub fn new(genesis: Genesis) -> MemoryStore {
        let state = State::genesis(&genesis);
        MemoryStore { genesis_hash: genesis.hash(), genesis, blocks: Vec::new(), state, evidence: Vec::new() }
    }

    /// The hash the next block must link to.
    fn tip(&self) -> Hash {
        self.blocks.last().map_or(self.genesis_hash, |last| last.block.header.hash())
    }
}

impl Store for MemoryStore {
    fn genesis(&self) -> Result<Genesis, StoreError> {
        Ok(self.genesis.clone())
    }

    fn height(&self) -> Result<u64, StoreError> {
        Ok(self.state.height)
    }

    fn block(&self, height: u64) -> Result<Option<CertifiedBlock>, StoreError> {
        let Some(index) = height.checked_sub(1).and_then(|index| usize::try_from(index).ok()) else {
            return Ok(None);
        };
        Ok(self.blocks.get(index).cloned())
    }

    fn commit(&mut self, block: &CertifiedBlock, state: &State) -> Result<(), StoreError> {
        check_next(&self.genesis, self.state.height, self.tip(), block, state)?;
        self.blocks.push(block.clone());
        self.state = state.clone();
        // The root does not cover `last_block_hash`: it is by definition the
        // hash of this block's header (what `execute` sets), so it is set here
        // rather than trusted, like the on-disk store does.
        self.state.last_block_hash = block.block.header.hash();
        Ok(())
    }

    fn state(&self) -> Result<State, StoreError> {
        Ok(self.state.clone())
    }

    fn record_equivocation(&mut self, evidence: &Equivocation) -> Result<(), StoreError> {
        if self.evidence.len() < EVIDENCE_MAX && !self.evidence.contains(evidence) {
            self.evidence.push(*evidence);
        }
        Ok(())
    }

    fn evidence(&self) -> Result<Vec<Equivocation>, StoreError> {
        Ok(self.evidence.clone())
    }
}
