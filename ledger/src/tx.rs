//! Transactions: the eleven kinds of docs/PROTOCOL.md §4, their signers, signed bytes
//! and ids, and meter readings with their attestations.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::Hash;
use crate::encoding::{Domain, domain_bytes, domain_hash};
use crate::genesis::{IntervalTariffs, Tariffs, ZoneLimits};
use crate::ids::{AccountId, CommunityId, Keypair, MeterId, PublicKey, Signature, SignatureError};

/// Which way an offer trades.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub enum Side {
    Buy,
    Sell,
}

/// A meter's cumulative registers at the end of an interval, signed by the
/// meter's device key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct MeterReading {
    pub meter: MeterId,
    pub interval: u64,
    /// Energy imported from the grid since the meter was installed, in Wh.
    pub import_wh_total: u64,
    /// Energy exported to the grid since the meter was installed, in Wh.
    pub export_wh_total: u64,
}

impl MeterReading {
    pub fn signing_bytes(&self, community: &CommunityId) -> Vec<u8> {
        domain_bytes(Domain::MeterReading, community, self)
    }
}

/// A reading with the meter's signature: what an offer embeds as its
/// attestation, and what a `MeterReading` transaction carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedMeterReading {
    pub reading: MeterReading,
    pub signature: Signature,
}

impl SignedMeterReading {
    pub fn sign(reading: MeterReading, meter: &Keypair, community: &CommunityId) -> SignedMeterReading {
        SignedMeterReading { reading, signature: meter.sign(&reading.signing_bytes(community)) }
    }

    pub fn verify(&self, community: &CommunityId) -> Result<(), SignatureError> {
        self.reading.meter.verify(&self.reading.signing_bytes(community), &self.signature)
    }
}

/// An offer to buy or sell energy in one delivery interval.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Offer {
    pub account: AccountId,
    pub nonce: u64,
    pub interval: u64,
    pub side: Side,
    pub energy_wh: u64,
    /// The most a buyer pays, network fee included, or the least a seller
    /// accepts, in micro-currency per kWh.
    pub price_micro_per_kwh: u64,
    /// The latest reading of one of the account's meters.
    pub attestation: SignedMeterReading,
}

/// A transaction body. Variant order is part of the format: only append.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Tx {
    RegisterAccount {
        registrar: PublicKey,
        nonce: u64,
        account: AccountId,
        credit_limit_nano: i128,
    },
    RegisterMeter {
        registrar: PublicKey,
        nonce: u64,
        meter: MeterId,
        owner: AccountId,
        max_import_w: u64,
        max_export_w: u64,
        zone: String,
    },
    Credit {
        registrar: PublicKey,
        nonce: u64,
        account: AccountId,
        amount_nano: i128,
        reference: String,
    },
    Debit {
        registrar: PublicKey,
        nonce: u64,
        account: AccountId,
        amount_nano: i128,
        reference: String,
    },
    SetTariffs {
        registrar: PublicKey,
        nonce: u64,
        tariffs: Tariffs,
    },
    Offer(Offer),
    CancelOffer {
        account: AccountId,
        nonce: u64,
        offer_id: Hash,
    },
    MeterReading(MeterReading),
    /// A DSO's operating envelope: `limits` for `zone` in each of the
    /// `intervals` intervals from `first_interval` on, all still open for
    /// offers.
    SetZoneLimits {
        dso: PublicKey,
        nonce: u64,
        zone: String,
        first_interval: u64,
        intervals: u32,
        limits: ZoneLimits,
    },
    /// A registrar's or DSO's tariffs for the intervals from
    /// `first_interval` on, one entry each (dynamic tariffs), all still open
    /// for offers; an entry that sets nothing removes the interval's.
    SetIntervalTariffs {
        signer: PublicKey,
        nonce: u64,
        first_interval: u64,
        tariffs: Vec<IntervalTariffs>,
    },
    /// A DSO registers a zone's own meter (a transformer's): it bills
    /// nobody, and settlement reports what it measured beside the zone's
    /// household meters.
    RegisterZoneMeter {
        dso: PublicKey,
        nonce: u64,
        meter: MeterId,
        zone: String,
        max_import_w: u64,
        max_export_w: u64,
    },
}

impl Tx {
    /// The key that must sign this transaction.
    pub fn signer(&self) -> PublicKey {
        match self {
            Tx::RegisterAccount { registrar, .. }
            | Tx::RegisterMeter { registrar, .. }
            | Tx::Credit { registrar, .. }
            | Tx::Debit { registrar, .. }
            | Tx::SetTariffs { registrar, .. } => *registrar,
            Tx::Offer(offer) => offer.account,
            Tx::CancelOffer { account, .. } => *account,
            Tx::MeterReading(reading) => reading.meter,
            Tx::SetZoneLimits { dso, .. } => *dso,
            Tx::SetIntervalTariffs { signer, .. } => *signer,
            Tx::RegisterZoneMeter { dso, .. } => *dso,
        }
    }

    /// The signer's nonce; meter readings are ordered by interval instead.
    pub fn nonce(&self) -> Option<u64> {
        match self {
            Tx::RegisterAccount { nonce, .. }
            | Tx::RegisterMeter { nonce, .. }
            | Tx::Credit { nonce, .. }
            | Tx::Debit { nonce, .. }
            | Tx::SetTariffs { nonce, .. }
            | Tx::CancelOffer { nonce, .. }
            | Tx::SetZoneLimits { nonce, .. }
            | Tx::SetIntervalTariffs { nonce, .. }
            | Tx::RegisterZoneMeter { nonce, .. } => Some(*nonce),
            Tx::Offer(offer) => Some(offer.nonce),
            Tx::MeterReading(_) => None,
        }
    }

    /// The bytes the signer signs. A meter reading is signed exactly as an
    /// attestation is, so a reading transaction can be embedded in offers.
    pub fn signing_bytes(&self, community: &CommunityId) -> Vec<u8> {
        match self {
            Tx::MeterReading(reading) => reading.signing_bytes(community),
            other => domain_bytes(Domain::Transaction, community, other),
        }
    }

    /// The id of the transaction: the hash of the unsigned body, so that it
    /// does not depend on the encoding of the signature. An offer's id.
    pub fn id(&self, community: &CommunityId) -> Hash {
        domain_hash(Domain::TransactionId, community, self)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Tx::RegisterAccount { .. } => "register-account",
            Tx::RegisterMeter { .. } => "register-meter",
            Tx::Credit { .. } => "credit",
            Tx::Debit { .. } => "debit",
            Tx::SetTariffs { .. } => "set-tariffs",
            Tx::Offer(_) => "offer",
            Tx::CancelOffer { .. } => "cancel-offer",
            Tx::MeterReading(_) => "meter-reading",
            Tx::SetZoneLimits { .. } => "set-zone-limits",
            Tx::SetIntervalTariffs { .. } => "set-interval-tariffs",
            Tx::RegisterZoneMeter { .. } => "register-zone-meter",
        }
    }
}

/// A transaction with its signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedTx {
    pub tx: Tx,
    pub signature: Signature,
}

impl SignedTx {
    pub fn sign(tx: Tx, signer: &Keypair, community: &CommunityId) -> SignedTx {
        let signature = signer.sign(&tx.signing_bytes(community));
        SignedTx { tx, signature }
    }

    /// Every signature the transaction carries: its own and, for an offer,
    /// the meter's on the attestation.
    pub fn signature_checks(&self, community: &CommunityId) -> Vec<SignatureCheck> {
        let mut checks = vec![SignatureCheck {
            key: self.tx.signer(),
            message: self.tx.signing_bytes(community),
            signature: self.signature,
        }];
        if let Tx::Offer(offer) = &self.tx {
            checks.push(SignatureCheck {
                key: offer.attestation.reading.meter,
                message: offer.attestation.reading.signing_bytes(community),
                signature: offer.attestation.signature,
            });
        }
        checks
    }

    /// Verifies every signature of the transaction.
    pub fn verify(&self, community: &CommunityId) -> Result<(), SignatureError> {
        self.signature_checks(community).iter().try_for_each(SignatureCheck::verify)
    }

    pub fn id(&self, community: &CommunityId) -> Hash {
        self.tx.id(community)
    }
}

/// One signature to verify: key, message and signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureCheck {
    pub key: PublicKey,
    pub message: Vec<u8>,
    pub signature: Signature,
}

impl SignatureCheck {
    pub fn verify(&self) -> Result<(), SignatureError> {
        self.key.verify(&self.message, &self.signature)
    }
}

/// Verifies `checks` as one batch (about twice as fast as one by one); on a
/// failure, one by one, so the result names the first bad one. Each
/// signature's encodings are checked before it is queued (the batch, like
/// ed25519-zebra's single check, would take any encoding of a point); what
/// is left, `S < ℓ` and the cofactored equation, holds for the batch's
/// random combination whenever it holds for each signature, and fails for
/// it whenever it fails for one, except with a probability of about 2^-128:
/// the random coefficients cannot change the verdict (docs/PROTOCOL.md §3).
pub fn verify_batch<'a>(
    checks: impl IntoIterator<Item = &'a SignatureCheck> + Clone,
) -> Result<(), SignatureError> {
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for check in checks.clone() {
        if check.key.check_encodings(&check.signature).is_err() {
            return checks.into_iter().try_for_each(SignatureCheck::verify);
        }
        let key = ed25519_zebra::VerificationKeyBytes::from(check.key.0);
        batch.queue((key, ed25519_zebra::Signature::from(check.signature.0), &check.message));
    }
    if batch.verify(rand_core::OsRng).is_ok() {
        return Ok(());
    }
    checks.into_iter().try_for_each(SignatureCheck::verify)
}
