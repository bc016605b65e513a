//! `POST /v1/transactions` and `GET /v1/transactions/{id}`: submitting a
//! signed transaction and following it into a block.

use gridshare_ledger::Hash;
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::tx::SignedTx;
use serde::{Deserialize, Serialize};

use crate::text::hex;

/// The body of `POST /v1/transactions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// The canonical bytes of a `SignedTx`, in hex.
    pub transaction_hex: String,
}

impl SubmitRequest {
    pub fn of(tx: &SignedTx) -> SubmitRequest {
        SubmitRequest { transaction_hex: ::hex::encode(to_bytes(tx)) }
    }
}

/// What `admitted` says: the transaction waits in the mempool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdmittedStatus {
    Admitted,
}

/// 202 to `POST /v1/transactions`: admitted to the mempool against the
/// state the next block starts from, and gossiped to the validators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admitted {
    #[serde(with = "hex")]
    pub id: Hash,
    pub status: AdmittedStatus,
}

/// `GET /v1/transactions/{id}`: the transaction and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionStatus {
    #[serde(with = "hex")]
    pub id: Hash,
    #[serde(flatten)]
    pub state: TransactionState,
}

/// Where a known transaction is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum TransactionState {
    /// Waiting in this node's mempool.
    Pending,
    /// Transaction `index` of the block at `height`.
    Included { height: u64, index: u32 },
    /// Left this node's mempool without a block: after the block at
    /// `height` it no longer fitted. `reason` is the ledger's rejection
    /// code (docs/PROTOCOL.md), `message` says it in words. It will not be
    /// on the ledger unless submitted again.
    Dropped { height: u64, reason: String, message: String },
}
