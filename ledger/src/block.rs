//! Blocks, receipts (clearings and settlements), votes and commit
//! certificates: the objects that make the hash-chained ledger.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::encoding::{Domain, domain_bytes, domain_hash, to_bytes};
use crate::genesis::{Genesis, Mechanism, Tariffs, ZoneLimits};
use crate::ids::{AccountId, CommunityId, Keypair, PublicKey, Signature};
use crate::tx::SignedTx;
use crate::{Hash, merkle};

/// What a block commits to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockHeader {
    pub community_id: CommunityId,
    pub height: u64,
    /// Hash of the previous header; the genesis hash for height 1.
    pub previous_hash: Hash,
    pub timestamp_ms: u64,
    pub proposer: PublicKey,
    /// RFC 6962 root over the canonical bytes of the transactions.
    pub tx_root: Hash,
    /// The number of transactions: an inclusion proof's tree size must equal
    /// it, since RFC 6962 proofs do not bind the size themselves.
    pub tx_count: u32,
    /// RFC 6962 root over the canonical bytes of the receipts.
    pub receipt_root: Hash,
    pub receipt_count: u32,
    /// Hash of the state after this block.
    pub state_root: Hash,
}

impl BlockHeader {
    pub fn hash(&self) -> Hash {
        domain_hash(Domain::BlockHeader, &self.community_id, self)
    }
}

/// A block: header, transactions and the receipts that executing it derived.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub transactions: Vec<SignedTx>,
    pub receipts: Vec<Receipt>,
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }
}

/// A block with the certificate that makes it final: what is stored,
/// exported and served to syncing peers.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CertifiedBlock {
    pub block: Block,
    pub certificate: CommitCertificate,
}

/// RFC 6962 leaf hashes of the canonical bytes of `items`.
fn leaf_hashes<T: BorshSerialize>(items: &[T]) -> Vec<Hash> {
    items.iter().map(|item| merkle::leaf_hash(&to_bytes(item))).collect()
}

/// RFC 6962 root over the canonical bytes of the transactions.
pub fn tx_root(transactions: &[SignedTx]) -> Hash {
    merkle::root(&leaf_hashes(transactions))
}

/// RFC 6962 root over the canonical bytes of the receipts.
pub fn receipt_root(receipts: &[Receipt]) -> Hash {
    merkle::root(&leaf_hashes(receipts))
}

/// What executing a block derived. Variant order is part of the format.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Receipt {
    Clearing(ClearingReceipt),
    Settlement(SettlementReceipt),
}

/// The auction of one interval.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ClearingReceipt {
    pub interval: u64,
    pub mechanism: Mechanism,
    pub k_thousandths: u16,
    pub network_fee_micro_per_kwh: u64,
    /// Offers that took part, in ascending id order.
    pub offers: u32,
    pub clearing_price_micro_per_kwh: Option<u64>,
    pub volume_wh: u64,
    pub trades: Vec<TradeReceipt>,
    /// Every zone of the genesis, in its order.
    pub zones: Vec<ZoneReceipt>,
}

/// One zone's outcome in a clearing (docs/AUCTION.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ZoneReceipt {
    /// The zone's uniform price: the clearing price unless the zone is
    /// congested. `None` under pay-as-bid and when nothing trades.
    pub price_micro_per_kwh: Option<u64>,
    /// What the zone's offers sold less what they bought, in Wh.
    pub net_export_wh: i64,
    /// The limits the interval was cleared with.
    pub limits: ZoneLimits,
    /// A limit bound: the zone's price differs from the clearing price.
    pub congested: bool,
}

/// One bilateral trade of a clearing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TradeReceipt {
    pub buy_offer: Hash,
    pub sell_offer: Hash,
    pub buyer: AccountId,
    pub seller: AccountId,
    pub energy_wh: u64,
    /// What the seller receives per kWh.
    pub price_micro_per_kwh: u64,
    /// What the buyer pays per kWh before the network fee: the seller's
    /// price, but for a trade out of or into a congested zone the buyer's
    /// zone's price, which is higher (the difference, the congestion rent,
    /// goes to the network account).
    pub buyer_price_micro_per_kwh: u64,
}

impl TradeReceipt {
    /// What the party on `side` pays (buy, before the fee) or receives
    /// (sell) per kWh.
    pub fn price_of(&self, side: crate::tx::Side) -> u64 {
        match side {
            crate::tx::Side::Buy => self.buyer_price_micro_per_kwh,
            crate::tx::Side::Sell => self.price_micro_per_kwh,
        }
    }

    /// The congestion rent, in nano-currency: what the buyer pays beyond
    /// what the seller receives, fee aside.
    pub fn congestion_rent_nano(&self) -> i128 {
        i128::from(self.energy_wh)
            * (i128::from(self.buyer_price_micro_per_kwh) - i128::from(self.price_micro_per_kwh))
    }
}

/// The metered settlement of one interval: every account's bill.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SettlementReceipt {
    pub interval: u64,
    /// The tariffs in force for the interval.
    pub tariffs: Tariffs,
    /// One bill per account with trades or metered energy, ascending account.
    pub bills: Vec<Bill>,
    /// What each zone's meters measured, in genesis zone order.
    pub zones: Vec<ZoneSettlement>,
}

/// What a zone's meters measured in a settled interval: beside the zone's
/// traded net export (its `ZoneReceipt`), the energy that really flowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ZoneSettlement {
    /// Σ of the net export (export less import) of the zone's meters that
    /// were measured in the interval, in Wh.
    pub measured_net_export_wh: i64,
    /// The zone's meters billed from readings.
    pub measured_meters: u32,
    /// The zone's meters billed at an estimate (no reading): their energy
    /// is not in `measured_net_export_wh`.
    pub estimated_meters: u32,
    /// The net export of the zone's own meter (its transformer's) over the
    /// interval, when it has one with readings at both ends of it.
    pub zone_meter_net_export_wh: Option<i64>,
}

impl ZoneSettlement {
    /// The zone's losses (and any theft) in Wh: what its households' meters
    /// measured leaving less what its zone meter saw arrive, when both are
    /// complete (every household meter measured, the zone meter too).
    pub fn losses_wh(&self) -> Option<i64> {
        let zone_meter = self.zone_meter_net_export_wh?;
        (self.estimated_meters == 0).then(|| self.measured_net_export_wh.saturating_sub(zone_meter))
    }
}

impl SettlementReceipt {
    /// What `bill`'s metered energy would have come to at this interval's
    /// grid tariffs alone, with no local trading (`genesis::grid_only_nano`):
    /// what reports set beside the bill's `total_nano`.
    pub fn grid_only_nano(&self, bill: &Bill) -> i128 {
        crate::genesis::grid_only_nano(
            bill.metered_net_export_wh,
            self.tariffs.grid_feed_in_micro_per_kwh,
            self.tariffs.grid_import_micro_per_kwh,
        )
    }
}

/// One account's itemised bill for one interval. Money is in nano-currency,
/// positive when the account receives it, negative when it pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Bill {
    pub account: AccountId,
    pub sold_wh: u64,
    pub bought_wh: u64,
    /// Received from buyers at the clearing (≥ 0).
    pub sold_nano: i128,
    /// Paid to sellers at the clearing (≤ 0).
    pub bought_nano: i128,
    /// Network fees paid at the clearing (≤ 0).
    pub fees_nano: i128,
    /// Σ over the account's meters of export minus import in the interval;
    /// a meter without the readings to measure it counts minus its import
    /// capacity (`estimated_import_wh`).
    pub metered_net_export_wh: i64,
    /// Metered minus contracted net export.
    pub deviation_wh: i64,
    pub grid_import_wh: u64,
    /// Paid to the grid for the import (≤ 0).
    pub grid_import_nano: i128,
    pub feed_in_wh: u64,
    /// Received from the grid for the feed-in (≥ 0).
    pub feed_in_nano: i128,
    /// The sum of the money lines, the refund included.
    pub total_nano: i128,
    /// The part of `metered_net_export_wh` that is estimated: the import
    /// capacity of the meters without the readings to measure the interval.
    pub estimated_import_wh: u64,
    /// Energy estimated in earlier intervals that a reading in this one
    /// showed was not imported.
    pub estimate_refund_wh: u64,
    /// What the grid refunds for it (≥ 0), at the lowest tariff of the
    /// estimated intervals.
    pub estimate_refund_nano: i128,
}

/// A consensus vote. Validators sign its domain-separated bytes; a
/// precommit for a block hash is what commit certificates collect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    pub kind: VoteKind,
    pub height: u64,
    pub round: u32,
    /// `None` is a vote for no block (nil).
    pub block_hash: Option<Hash>,
    pub validator: PublicKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum VoteKind {
    Prevote,
    Precommit,
}

impl Vote {
    pub fn signing_bytes(&self, community: &CommunityId) -> Vec<u8> {
        domain_bytes(Domain::Vote, community, self)
    }
}

/// One validator's precommit signature in a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommitSignature {
    pub validator: PublicKey,
    pub signature: Signature,
}

/// Proof that a block is final: precommits for it from validators holding
/// more than two thirds of the voting power.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommitCertificate {
    pub height: u64,
    pub round: u32,
    pub block_hash: Hash,
    pub signatures: Vec<CommitSignature>,
}

/// Why a certificate does not make a block final.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error(
        "the certificate is for height {certificate} and block {certificate_hash}, not height {height} and block {block_hash}"
    )]
    WrongBlock { certificate: u64, certificate_hash: Hash, height: u64, block_hash: Hash },
    #[error("{0} signed but is not a validator")]
    NotAValidator(PublicKey),
    #[error("{0} signed twice")]
    Duplicate(PublicKey),
    #[error("the precommit signature of {0} does not verify")]
    BadSignature(PublicKey),
    #[error("signers hold {signed} of {total} voting power, not more than two thirds")]
    NotEnoughPower { signed: u64, total: u64 },
}

impl CommitCertificate {
    /// The precommit a signer of this certificate signed.
    pub fn vote(&self, validator: PublicKey) -> Vote {
        Vote {
            kind: VoteKind::Precommit,
            height: self.height,
            round: self.round,
            block_hash: Some(self.block_hash),
            validator,
        }
    }

    /// Signs a certificate for `header` by every key in `signers`: for tests
    /// and the dev-mode chain builder.
    pub fn sign(header: &BlockHeader, round: u32, signers: &[&Keypair]) -> CommitCertificate {
        let mut certificate = CommitCertificate {
            height: header.height,
            round,
            block_hash: header.hash(),
            signatures: Vec::new(),
        };
        for signer in signers {
            let vote = certificate.vote(signer.public());
            certificate.signatures.push(CommitSignature {
                validator: signer.public(),
                signature: signer.sign(&vote.signing_bytes(&header.community_id)),
            });
        }
        certificate
    }

    /// Checks that this certificate makes `header` final under `genesis`.
    pub fn verify(&self, genesis: &Genesis, header: &BlockHeader) -> Result<(), CertificateError> {
        let block_hash = header.hash();
        if self.height != header.height || self.block_hash != block_hash {
            return Err(CertificateError::WrongBlock {
                certificate: self.height,
                certificate_hash: self.block_hash,
                height: header.height,
                block_hash,
            });
        }
        let mut signed: u64 = 0;
        let mut seen: Vec<PublicKey> = Vec::with_capacity(self.signatures.len());
        for commit in &self.signatures {
            let power = genesis
                .voting_power_of(&commit.validator)
                .ok_or(CertificateError::NotAValidator(commit.validator))?;
            if seen.contains(&commit.validator) {
                return Err(CertificateError::Duplicate(commit.validator));
            }
            seen.push(commit.validator);
            let vote = self.vote(commit.validator);
            commit
                .validator
                .verify(&vote.signing_bytes(&genesis.community_id), &commit.signature)
                .map_err(|_| CertificateError::BadSignature(commit.validator))?;
            signed = signed.saturating_add(power);
        }
        let total = genesis.total_voting_power();
        if u128::from(signed) * 3 <= u128::from(total) * 2 {
            return Err(CertificateError::NotEnoughPower { signed, total });
        }
        Ok(())
    }
}

/// Why an inclusion proof does not prove what it claims.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InclusionError {
    #[error("the proof is for a tree of {proof} items, the header commits to {header}")]
    WrongTreeSize { proof: u64, header: u32 },
    #[error(transparent)]
    Proof(#[from] merkle::ProofError),
}

impl Block {
    /// An inclusion proof of transaction `index` against this block's header.
    pub fn prove_transaction(&self, index: usize) -> Option<merkle::InclusionProof> {
        merkle::prove(&leaf_hashes(&self.transactions), index)
    }

    /// An inclusion proof of receipt `index` against this block's header.
    pub fn prove_receipt(&self, index: usize) -> Option<merkle::InclusionProof> {
        merkle::prove(&leaf_hashes(&self.receipts), index)
    }
}

impl BlockHeader {
    /// Checks that `tx` is in the block of this header. The header itself
    /// must be certified (`CommitCertificate::verify`) for this to mean the
    /// transaction is final.
    pub fn verify_transaction(
        &self,
        tx: &SignedTx,
        proof: &merkle::InclusionProof,
    ) -> Result<(), InclusionError> {
        verify_inclusion(tx, proof, &self.tx_root, self.tx_count)
    }

    /// Checks that `receipt` is in the block of this header.
    pub fn verify_receipt(
        &self,
        receipt: &Receipt,
        proof: &merkle::InclusionProof,
    ) -> Result<(), InclusionError> {
        verify_inclusion(receipt, proof, &self.receipt_root, self.receipt_count)
    }
}

/// Checks `proof` for `item` against a root and the item count the header
/// commits to: RFC 6962 proofs do not bind the tree size themselves.
fn verify_inclusion<T: BorshSerialize>(
    item: &T,
    proof: &merkle::InclusionProof,
    root: &Hash,
    count: u32,
) -> Result<(), InclusionError> {
    if proof.tree_size != u64::from(count) {
        return Err(InclusionError::WrongTreeSize { proof: proof.tree_size, header: count });
    }
    Ok(proof.verify(&to_bytes(item), root)?)
}
