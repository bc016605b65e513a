//! The mempool: transactions admitted against the state the next block will
//! start from, waiting for a block. Bounded in total and per signer; a
//! transaction stays until it is included, or is dropped when a block makes
//! it inadmissible (its interval's gate closed, its nonce used, ...).

use std::collections::BTreeMap;

use gridshare_ledger::Hash;
use gridshare_ledger::execute::{Rejection, admit};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::state::State;
use gridshare_ledger::tx::SignedTx;

/// At most this many transactions wait for a block.
pub const MEMPOOL_TRANSACTIONS_MAX: usize = 20_000;
/// At most this many from one signer.
pub const MEMPOOL_PER_SIGNER_MAX: usize = 64;

/// Why the mempool refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the transaction is not admissible: {0}")]
    Rejected(#[from] Rejection),
    #[error("the mempool is full ({MEMPOOL_TRANSACTIONS_MAX} transactions): try again after the next block")]
    Full,
    #[error("{0} already has {MEMPOOL_PER_SIGNER_MAX} transactions waiting")]
    SignerFull(PublicKey),
    #[error("transaction {0} is already waiting")]
    Duplicate(Hash),
}

/// Waiting transactions in arrival order, and the state after them.
#[derive(Debug)]
pub struct Mempool {
    transactions: Vec<(Hash, SignedTx)>,
    per_signer: BTreeMap<PublicKey, usize>,
    /// The committed state with every waiting transaction applied.
    pending: State,
}

impl Mempool {
    pub fn new(committed: State) -> Mempool {
        Mempool { transactions: Vec::new(), per_signer: BTreeMap::new(), pending: committed }
    }

    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// Verifies the signatures and admits `tx` at `time_ms` (the earliest
    /// time of the next block) on top of everything already waiting.
    pub fn submit(&mut self, genesis: &Genesis, time_ms: u64, tx: SignedTx) -> Result<Hash, SubmitError> {
        let id = tx.id(&genesis.community_id);
        if self.transactions.iter().any(|(waiting, _)| *waiting == id) {
            return Err(SubmitError::Duplicate(id));
        }
        if self.transactions.len() >= MEMPOOL_TRANSACTIONS_MAX {
            return Err(SubmitError::Full);
        }
        let signer = tx.tx.signer();
        if self.per_signer.get(&signer).copied().unwrap_or(0) >= MEMPOOL_PER_SIGNER_MAX {
            return Err(SubmitError::SignerFull(signer));
        }
        tx.verify(&genesis.community_id).map_err(Rejection::from)?;
        admit(genesis, &mut self.pending, time_ms, &tx)?;
        *self.per_signer.entry(signer).or_default() += 1;
        self.transactions.push((id, tx));
        Ok(id)
    }

    /// The waiting transactions, in arrival order, for the next block.
    pub fn candidates(&self) -> Vec<SignedTx> {
        self.transactions.iter().map(|(_, tx)| tx.clone()).collect()
    }

    /// After a block: drops what it included and re-admits the rest on the
    /// new state at `time_ms`; returns what no longer fits, with the reason.
    pub fn after_block(
        &mut self,
        genesis: &Genesis,
        committed: &State,
        included: &[SignedTx],
        time_ms: u64,
    ) -> Vec<(Hash, Rejection)> {
        let included: Vec<Hash> = included.iter().map(|tx| tx.id(&genesis.community_id)).collect();
        let waiting = std::mem::take(&mut self.transactions);
        self.per_signer.clear();
        self.pending = committed.clone();
        let mut dropped = Vec::new();
        for (id, tx) in waiting {
            if included.contains(&id) {
                continue;
            }
            // Signatures were verified on submission.
            match admit(genesis, &mut self.pending, time_ms, &tx) {
                Ok(()) => {
                    *self.per_signer.entry(tx.tx.signer()).or_default() += 1;
                    self.transactions.push((id, tx));
                }
                Err(rejection) => dropped.push((id, rejection)),
            }
        }
        dropped
    }
}
