//! `GET /v1/proofs/...`: that a transaction, a clearing or a settlement is
//! in a block the validators certified, checkable with nothing but the
//! genesis.

use gridshare_ledger::Hash;
use gridshare_ledger::block::{BlockHeader, CommitCertificate};
use gridshare_ledger::encoding::from_bytes;
use gridshare_ledger::merkle::InclusionProof;
use serde::{Deserialize, Serialize};

/// A proof of item `index` of the block at `height`; every `*_hex` is the
/// hex of canonical (borsh) bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub height: u64,
    pub index: u32,
    /// The `BlockHeader`.
    pub header_hex: String,
    /// Its `CommitCertificate`.
    pub certificate_hex: String,
    /// The proven `SignedTx` or `Receipt`.
    pub item_hex: String,
    /// The RFC 6962 `InclusionProof`.
    pub proof_hex: String,
}

/// A part of a proof that does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} does not decode: {problem}")]
pub struct ProofDecodeError {
    pub field: &'static str,
    pub problem: String,
}

fn decode<T: borsh::BorshDeserialize>(field: &'static str, text: &str) -> Result<T, ProofDecodeError> {
    let bytes =
        ::hex::decode(text).map_err(|error| ProofDecodeError { field, problem: error.to_string() })?;
    from_bytes(&bytes).map_err(|error| ProofDecodeError { field, problem: error.to_string() })
}

impl Proof {
    pub fn header(&self) -> Result<BlockHeader, ProofDecodeError> {
        decode("header_hex", &self.header_hex)
    }

    pub fn certificate(&self) -> Result<CommitCertificate, ProofDecodeError> {
        decode("certificate_hex", &self.certificate_hex)
    }

    pub fn inclusion(&self) -> Result<InclusionProof, ProofDecodeError> {
        decode("proof_hex", &self.proof_hex)
    }

    /// The proven item, as the `SignedTx` or `Receipt` it is.
    pub fn item<T: borsh::BorshDeserialize>(&self) -> Result<T, ProofDecodeError> {
        decode("item_hex", &self.item_hex)
    }
}

/// What a proof is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofTarget {
    /// A transaction by id (an offer's id is its transaction's).
    Transaction(Hash),
    /// An interval's clearing receipt, which proves every trade in it.
    Clearing(u64),
    /// An interval's settlement receipt, which proves every bill in it.
    Settlement(u64),
}

impl ProofTarget {
    pub fn path(&self) -> String {
        match self {
            ProofTarget::Transaction(id) => format!("/v1/proofs/transactions/{id}"),
            ProofTarget::Clearing(interval) => format!("/v1/proofs/clearings/{interval}"),
            ProofTarget::Settlement(interval) => format!("/v1/proofs/settlements/{interval}"),
        }
    }
}
