//! The mempool: transactions admitted against the state the next block will
//! start from, waiting for a block.
//!
//! Rules (what docs/API.md says of submissions follows from these):
//! - Bounds: [`MEMPOOL_TRANSACTIONS_MAX`] transactions and
//!   [`MEMPOOL_BYTES_MAX`] bytes in total, [`MEMPOOL_PER_SIGNER_MAX`] per
//!   signer, [`MEMPOOL_PER_INTERVAL_MAX`] offers per delivery interval. A
//!   transaction beyond a bound is refused (never another one evicted), so
//!   an admitted transaction stays admitted: the sender retries after the
//!   next block.
//! - Admission: a used nonce is refused first (a gossiped copy of a
//!   transaction that a block already holds is common, and costs nothing
//!   then), then signatures verified, then the ledger's own admission rules
//!   on the committed state with every waiting transaction applied, so the
//!   waiting set is always a valid block body in arrival order.
//! - A transaction leaves when a block includes it, or when, re-admitted on
//!   the new state after a block, it no longer fits: its interval's gate
//!   closed (expired), its nonce was used, its funds are gone (invalidated).

use std::collections::{BTreeMap, BTreeSet};

use gridshare_ledger::Hash;
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::execute::{Rejection, admit};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::state::State;
use gridshare_ledger::tx::{SignedTx, Tx};

/// At most this many transactions wait for a block.
pub const MEMPOOL_TRANSACTIONS_MAX: usize = 20_000;
/// At most this many bytes (canonical encodings) wait.
pub const MEMPOOL_BYTES_MAX: usize = 16 << 20;
/// At most this many from one signer.
pub const MEMPOOL_PER_SIGNER_MAX: usize = 64;
/// At most this many offers for one delivery interval.
pub const MEMPOOL_PER_INTERVAL_MAX: usize = 10_000;

/// Why the mempool refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error(
        "the mempool is full ({MEMPOOL_TRANSACTIONS_MAX} transactions or {MEMPOOL_BYTES_MAX} bytes): try again after the next block"
    )]
    Full,
    #[error("{0} already has {MEMPOOL_PER_SIGNER_MAX} transactions waiting: try again after the next block")]
    SignerFull(PublicKey),
    #[error(
        "interval {0} already has {MEMPOOL_PER_INTERVAL_MAX} offers waiting: try again after the next block"
    )]
    IntervalFull(u64),
    #[error("transaction {0} is already waiting")]
    Duplicate(Hash),
    /// The node cannot get what it admitted into blocks: a transaction
    /// submitted to it has waited longer than the chain core accepts
    /// (`chain::BACKLOG_MAX_MS`), so a new one would wait too.
    #[error(
        "a transaction submitted to this node has waited {waited_ms} ms for a block: the validators are not taking them in fast enough; try again later"
    )]
    Backlog { waited_ms: u64 },
    /// The node's transactions reach a block about `delay_ms` after it
    /// admits them, and this offer's interval closes before that.
    #[error(
        "transactions submitted to this node reach a block about {delay_ms} ms later, after interval {interval}'s gate closes: offer for a later interval"
    )]
    TooLate { interval: u64, delay_ms: u64 },
    /// The node could not record on its disk that it admitted the
    /// transaction, so it does not acknowledge it.
    #[error("the node could not record the transaction on its disk ({0}); it may still reach a block")]
    Unrecorded(String),
    /// Bytes recorded as acknowledged before a restart that no longer
    /// decode as a transaction (a damaged store).
    #[error("the transaction recorded before the restart does not decode")]
    Unreadable,
}

impl SubmitError {
    /// The code a refusal is known by in the metrics, logs and drop
    /// records: the ledger's rejection code, or the bound or condition. (The
    /// API's error codes are coarser: `mempool_full` for the three bounds,
    /// `backlog` for `backlog` and `too_late`.)
    pub fn code(&self) -> &'static str {
        match self {
            SubmitError::Rejected(rejection) => rejection.code(),
            SubmitError::Full => "mempool_full",
            SubmitError::SignerFull(_) => "signer_full",
            SubmitError::IntervalFull(_) => "interval_full",
            SubmitError::Duplicate(_) => "duplicate",
            SubmitError::Backlog { .. } => "backlog",
            SubmitError::TooLate { .. } => "too_late",
            SubmitError::Unrecorded(_) => "storage",
            SubmitError::Unreadable => "unreadable",
        }
    }

    /// Whether a peer that sent a transaction refused for this reason gave
    /// useless work (`chain::PeerBook::count_wasted`): a rule of the ledger
    /// but a nonce gap (nonces overtake each other on the way, and the gap
    /// is fetched). A bound of this mempool, a duplicate of what waits
    /// (announced again while gossip was on its way) or this node's own
    /// failure is not the sender's doing.
    pub fn wastes(&self) -> bool {
        match self {
            SubmitError::Rejected(rejection) => !matches!(rejection, Rejection::NonceGap { .. }),
            SubmitError::Full
            | SubmitError::SignerFull(_)
            | SubmitError::IntervalFull(_)
            | SubmitError::Duplicate(_)
            | SubmitError::Backlog { .. }
            | SubmitError::TooLate { .. }
            | SubmitError::Unrecorded(_)
            | SubmitError::Unreadable => false,
        }
    }
}

/// A transaction [`Mempool::check`] passed: its id and encoded size.
#[derive(Clone, Copy, Debug)]
pub struct Checked {
    pub id: Hash,
    pub size: usize,
}

/// Waiting transactions in arrival order, and the state after them.
#[derive(Debug)]
pub struct Mempool {
    transactions: Vec<(Hash, SignedTx)>,
    /// Where each waiting transaction is in `transactions`.
    ids: BTreeMap<Hash, usize>,
    bytes: usize,
    per_signer: BTreeMap<PublicKey, usize>,
    per_interval: BTreeMap<u64, usize>,
    /// The committed state with every waiting transaction applied.
    pending: State,
}

impl Mempool {
    pub fn new(committed: State) -> Mempool {
        Mempool {
            transactions: Vec::new(),
            ids: BTreeMap::new(),
            bytes: 0,
            per_signer: BTreeMap::new(),
            per_interval: BTreeMap::new(),
            pending: committed,
        }
    }

    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// The committed state with every waiting transaction applied: what the
    /// next transaction is admitted against (its nonces, balances, offers).
    pub fn pending(&self) -> &State {
        &self.pending
    }

    pub fn contains(&self, id: &Hash) -> bool {
        self.ids.contains_key(id)
    }

    /// The waiting transaction with id `id`.
    pub fn get(&self, id: &Hash) -> Option<&SignedTx> {
        self.ids.get(id).and_then(|&position| self.transactions.get(position)).map(|(_, tx)| tx)
    }

    /// The waiting transactions of `signer` with a nonce from `from_nonce`
    /// on, in arrival order (which is nonce order: nonces are admitted
    /// consecutively), at most `max`.
    pub fn waiting_from(&self, signer: &PublicKey, from_nonce: u64, max: usize) -> Vec<&SignedTx> {
        if !self.per_signer.contains_key(signer) {
            return Vec::new();
        }
        self.transactions
            .iter()
            .map(|(_, tx)| tx)
            .filter(|tx| tx.tx.signer() == *signer && tx.tx.nonce().is_some_and(|nonce| nonce >= from_nonce))
            .take(max)
            .collect()
    }

    /// Whether exactly `tx` (signatures included) is waiting: its signatures
    /// were verified when it was admitted.
    pub fn holds(&self, id: &Hash, tx: &SignedTx) -> bool {
        self.ids
            .get(id)
            .and_then(|&position| self.transactions.get(position))
            .is_some_and(|(_, waiting)| waiting == tx)
    }

    /// Verifies the signatures and admits `tx` at `time_ms` (the earliest
    /// time of the next block) on top of everything already waiting.
    pub fn submit(&mut self, genesis: &Genesis, time_ms: u64, tx: SignedTx) -> Result<Hash, SubmitError> {
        let checked = self.check(genesis, &tx)?;
        tx.verify(&genesis.community_id).map_err(Rejection::from)?;
        self.admit_verified(genesis, time_ms, tx, checked)
    }

    /// What can be said of `tx` without checking its signatures: refused
    /// for a signer nobody knows, a bound, as a duplicate or for a nonce
    /// already used, or worth verifying.
    pub fn check(&self, genesis: &Genesis, tx: &SignedTx) -> Result<Checked, SubmitError> {
        // A stranger first, before hashing: however full the mempool, its
        // flood is known for what it is (`SubmitError::wastes`).
        if let Some(unknown) = self.unknown_signer(genesis, tx) {
            return Err(unknown.into());
        }
        let checked = Checked { id: tx.id(&genesis.community_id), size: to_bytes(tx).len() };
        self.room(tx, &checked)?;
        Ok(checked)
    }

    /// Refuses a transaction whose signer is nobody here: not a registered
    /// account (offers, cancellations), a registered meter (readings), a
    /// DSO of the genesis (zone limits) or a registrar of the
    /// genesis (the rest), against the committed state with
    /// what waits applied. Checked before signatures, so a stranger's keys
    /// cost a lookup, not a verification; a registration still waiting
    /// counts, so a household's first offer may follow it at once.
    fn unknown_signer(&self, genesis: &Genesis, tx: &SignedTx) -> Option<Rejection> {
        let signer = tx.tx.signer();
        match &tx.tx {
            Tx::Offer(_) | Tx::CancelOffer { .. } => {
                (!self.pending.accounts.contains_key(&signer)).then_some(Rejection::UnknownAccount(signer))
            }
            Tx::MeterReading(_) => {
                let known = self.pending.meters.contains_key(&signer)
                    || self.pending.zone_meters.contains_key(&signer);
                (!known).then_some(Rejection::UnknownMeter(signer))
            }
            Tx::SetZoneLimits { .. } | Tx::RegisterZoneMeter { .. } => {
                (!genesis.is_dso(&signer)).then_some(Rejection::NotADso(signer))
            }
            Tx::SetIntervalTariffs { .. } => (!genesis.is_registrar(&signer) && !genesis.is_dso(&signer))
                .then_some(Rejection::NotATariffSetter(signer)),
            _ => (!genesis.is_registrar(&signer)).then_some(Rejection::NotARegistrar(signer)),
        }
    }

    /// Refuses `tx` for a duplicate, a bound or a used nonce.
    fn room(&self, tx: &SignedTx, &Checked { id, size }: &Checked) -> Result<(), SubmitError> {
        if self.ids.contains_key(&id) {
            return Err(SubmitError::Duplicate(id));
        }
        if self.transactions.len() >= MEMPOOL_TRANSACTIONS_MAX || self.bytes + size > MEMPOOL_BYTES_MAX {
            return Err(SubmitError::Full);
        }
        let signer = tx.tx.signer();
        if self.per_signer.get(&signer).copied().unwrap_or(0) >= MEMPOOL_PER_SIGNER_MAX {
            return Err(SubmitError::SignerFull(signer));
        }
        if let Some(interval) = offer_interval(tx)
            && self.per_interval.get(&interval).copied().unwrap_or(0) >= MEMPOOL_PER_INTERVAL_MAX
        {
            return Err(SubmitError::IntervalFull(interval));
        }
        match self.used_nonce(tx) {
            Some(stale) => Err(stale.into()),
            None => Ok(()),
        }
    }

    /// Admits `tx`, whose signatures the caller has verified and which
    /// [`Mempool::check`] passed (checked again: others may have been
    /// admitted since), like [`Mempool::submit`].
    pub fn admit_verified(
        &mut self,
        genesis: &Genesis,
        time_ms: u64,
        tx: SignedTx,
        checked: Checked,
    ) -> Result<Hash, SubmitError> {
        self.room(&tx, &checked)?;
        admit(genesis, &mut self.pending, time_ms, &tx)?;
        let Checked { id, size } = checked;
        self.insert(id, tx, size);
        Ok(id)
    }

    /// The rejection `admit` would give `tx` for a nonce its signer has
    /// already used, found without checking signatures.
    fn used_nonce(&self, tx: &SignedTx) -> Option<Rejection> {
        let nonce = tx.tx.nonce()?;
        let signer = tx.tx.signer();
        let last = match &tx.tx {
            Tx::Offer(_) | Tx::CancelOffer { .. } => self.pending.accounts.get(&signer)?.last_nonce,
            _ => *self.pending.registrar_nonces.get(&signer)?,
        };
        (nonce <= last).then_some(Rejection::StaleNonce { signer, nonce, last })
    }

    fn insert(&mut self, id: Hash, tx: SignedTx, size: usize) {
        *self.per_signer.entry(tx.tx.signer()).or_default() += 1;
        if let Some(interval) = offer_interval(&tx) {
            *self.per_interval.entry(interval).or_default() += 1;
        }
        self.ids.insert(id, self.transactions.len());
        self.bytes += size;
        self.transactions.push((id, tx));
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
        let included: BTreeSet<Hash> = included.iter().map(|tx| tx.id(&genesis.community_id)).collect();
        let waiting = std::mem::take(&mut self.transactions);
        self.ids.clear();
        self.bytes = 0;
        self.per_signer.clear();
        self.per_interval.clear();
        self.pending = committed.clone();
        let mut dropped = Vec::new();
        for (id, tx) in waiting {
            if included.contains(&id) {
                continue;
            }
            // Signatures were verified on submission.
            match admit(genesis, &mut self.pending, time_ms, &tx) {
                Ok(()) => {
                    let size = to_bytes(&tx).len();
                    self.insert(id, tx, size);
                }
                Err(rejection) => dropped.push((id, rejection)),
            }
        }
        dropped
    }
}

fn offer_interval(tx: &SignedTx) -> Option<u64> {
    match &tx.tx {
        Tx::Offer(offer) => Some(offer.interval),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridshare_ledger::testkit::{TestCommunity, test_market};
    use gridshare_ledger::tx::Side;

    #[test]
    fn admitted_transactions_wait_until_included_or_expired() {
        let mut community = TestCommunity::new(5, 2, test_market(), 0);
        let genesis = community.genesis.clone();
        let mut state = State::genesis(&genesis);
        for tx in community.registrations() {
            admit(&genesis, &mut state, 1, &tx).unwrap();
        }
        let mut mempool = Mempool::new(state.clone());
        let attestation = community.reading(0, 0, 0, 0);
        let offer = community.offer_tx(0, 1, 3, Side::Sell, 100, 50_000, attestation);
        let id = mempool.submit(&genesis, 1_000, offer.clone()).unwrap();
        assert!(mempool.contains(&id));
        assert_eq!(mempool.submit(&genesis, 1_000, offer.clone()), Err(SubmitError::Duplicate(id)));
        // Replayed nonce: the same account's next offer needs a larger one.
        let replay = community.offer_tx(0, 1, 4, Side::Sell, 100, 50_000, attestation);
        assert!(matches!(
            mempool.submit(&genesis, 1_000, replay),
            Err(SubmitError::Rejected(Rejection::StaleNonce { .. }))
        ));
        // A used nonce is refused before the signatures are checked: a forged
        // copy of the admitted offer is stale, not a bad signature.
        let mut forged = offer.clone();
        forged.signature.0[0] ^= 1;
        let committed = mempool.pending().clone();
        assert!(mempool.after_block(&genesis, &committed, std::slice::from_ref(&offer), 1_000).is_empty());
        assert!(matches!(
            mempool.check(&genesis, &forged),
            Err(SubmitError::Rejected(Rejection::StaleNonce { .. }))
        ));
        // With a fresh nonce the forgery is worth verifying, and fails it.
        let fresh = community.offer_tx(0, 2, 3, Side::Sell, 100, 50_000, attestation);
        let mut forged = fresh.clone();
        forged.signature.0[0] ^= 1;
        assert!(mempool.check(&genesis, &forged).is_ok());
        assert!(matches!(
            mempool.submit(&genesis, 1_000, forged),
            Err(SubmitError::Rejected(Rejection::BadSignature(_)))
        ));
        let id = mempool.submit(&genesis, 1_000, fresh).unwrap();
        // A block without it, after gate closure of interval 3 (3,000 - 500 ms).
        let dropped = mempool.after_block(&genesis, &committed, &[], 2_600);
        assert_eq!(dropped.len(), 1);
        assert!(matches!(dropped[0].1, Rejection::IntervalClosed { .. }), "{:?}", dropped[0].1);
        assert!(mempool.is_empty() && !mempool.contains(&id));
    }
}
