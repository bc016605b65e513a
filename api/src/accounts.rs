//! `GET /v1/accounts/{key}`, `/v1/nonces/{key}`, `/v1/meters/{key}`,
//! `/v1/meters/{key}/readings` and `/v1/offers`: accounts with their money
//! and meters, nonces, meters with their last reading, a meter's signed
//! readings, and open offers.

use gridshare_ledger::Hash;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::ids::{CommunityId, Signature};
use gridshare_ledger::state::{Account as LedgerAccount, Meter as LedgerMeter, OpenOffer, ZoneMeter};
use gridshare_ledger::tx::{MeterReading, SignedMeterReading};
use serde::{Deserialize, Serialize};

use crate::market::Side;
use crate::text::{hex, nano};

/// `GET /v1/accounts/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    #[serde(with = "hex")]
    pub account: PublicKey,
    pub currency: String,
    #[serde(with = "nano")]
    pub balance_nano: i128,
    /// Held for open buy offers.
    #[serde(with = "nano")]
    pub reserved_nano: i128,
    #[serde(with = "nano")]
    pub credit_limit_nano: i128,
    /// Balance plus credit limit minus reservations.
    #[serde(with = "nano")]
    pub available_nano: i128,
    pub open_offers: u32,
    pub last_nonce: u64,
    /// The meters the account owns (at most `LIST_MAX`).
    pub meters: Vec<Meter>,
}

impl Account {
    /// The wire form of the ledger's account `key`, in `currency`, with its
    /// meters.
    pub fn of(key: PublicKey, account: &LedgerAccount, currency: &str, meters: Vec<Meter>) -> Account {
        // Destructured whole: a field added to the ledger's account stops
        // the build here until it is on the wire or said not to be.
        let LedgerAccount {
            balance_nano,
            reserved_nano,
            credit_limit_nano,
            last_nonce,
            open_offers,
            // The sums of the meters' limits, and their zone, which the
            // meters list.
            max_import_w: _,
            max_export_w: _,
            zone: _,
        } = *account;
        Account {
            account: key,
            currency: currency.to_string(),
            balance_nano,
            reserved_nano,
            credit_limit_nano,
            available_nano: account.available_nano(),
            open_offers,
            last_nonce,
            meters,
        }
    }
}

/// Whose a meter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeterKind {
    /// A household's: billed to its owner's account.
    Household,
    /// A zone's own (a transformer's), registered by a DSO: it bills
    /// nobody, and settlement sets it beside the zone's household meters.
    Zone,
}

/// `GET /v1/meters/{key}`, and each of an account's meters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meter {
    #[serde(with = "hex")]
    pub meter: PublicKey,
    pub kind: MeterKind,
    /// The account it bills; for a zone meter, the DSO that registered it.
    #[serde(with = "hex")]
    pub owner: PublicKey,
    pub max_import_w: u64,
    pub max_export_w: u64,
    pub zone: String,
    /// `null` before the meter's first reading.
    pub last_reading: Option<Reading>,
    /// The interval the meter was registered in: it is billed every
    /// interval after it (docs/PROTOCOL.md §5.6).
    pub registered_interval: u64,
    /// The reading its settlement continues from: `null` until a reading
    /// was on the ledger when its interval settled.
    pub base: Option<Reading>,
    /// Import billed by estimate since the base, refunded when a later
    /// reading closes the gap; `null` when none is pending.
    pub estimate: Option<Estimate>,
}

/// A meter's pending estimate: the import billed at its capacity since its
/// base, and the rate a later reading's refund is paid at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    pub import_wh: u64,
    pub rate_micro_per_kwh: u64,
}

impl Meter {
    /// The wire form of the ledger's meter `key`. The ledger's type is
    /// destructured whole, so that a field added to it stops the build here
    /// until the wire has it too.
    pub fn of(key: PublicKey, meter: &LedgerMeter) -> Meter {
        let LedgerMeter {
            owner,
            max_import_w,
            max_export_w,
            zone,
            last_reading,
            registered_interval,
            base,
            estimate,
        } = meter;
        Meter {
            meter: key,
            kind: MeterKind::Household,
            owner: *owner,
            max_import_w: *max_import_w,
            max_export_w: *max_export_w,
            zone: zone.clone(),
            last_reading: last_reading.as_ref().map(Reading::from),
            registered_interval: *registered_interval,
            base: base.as_ref().map(Reading::from),
            estimate: estimate.map(|estimate| Estimate {
                import_wh: estimate.import_wh,
                rate_micro_per_kwh: estimate.rate_micro_per_kwh,
            }),
        }
    }
}

impl Meter {
    /// The wire form of the ledger's zone meter `key` of zone `zone`.
    pub fn of_zone(key: PublicKey, meter: &ZoneMeter, zone: &str) -> Meter {
        let ZoneMeter { dso, zone: _, max_import_w, max_export_w, last_reading, registered_interval, base } =
            meter;
        Meter {
            meter: key,
            kind: MeterKind::Zone,
            owner: *dso,
            max_import_w: *max_import_w,
            max_export_w: *max_export_w,
            zone: zone.to_string(),
            last_reading: last_reading.as_ref().map(Reading::from),
            registered_interval: *registered_interval,
            base: base.as_ref().map(Reading::from),
            estimate: None,
        }
    }
}

/// A meter's cumulative registers at the end of an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    pub interval: u64,
    pub import_wh_total: u64,
    pub export_wh_total: u64,
}

impl From<&MeterReading> for Reading {
    fn from(reading: &MeterReading) -> Reading {
        Reading {
            interval: reading.interval,
            import_wh_total: reading.import_wh_total,
            export_wh_total: reading.export_wh_total,
        }
    }
}

/// `GET /v1/meters/{key}/readings?from_interval=A&to_interval=B`: the
/// meter's readings on the ledger in a span of intervals (by default the
/// `INTERVAL_SPAN_DEFAULT` up to its last reading), ascending, each with the
/// meter's signature: what an offer's attestation is (docs/PROTOCOL.md §3),
/// so that a household whose meter key lives in a gateway can offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterReadings {
    #[serde(with = "hex")]
    pub meter: PublicKey,
    pub readings: Vec<SignedReading>,
}

/// A reading with the meter's signature over it, as its block holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReading {
    pub interval: u64,
    pub import_wh_total: u64,
    pub export_wh_total: u64,
    /// The meter's ed25519 signature, 128 hex digits.
    pub signature_hex: String,
}

impl SignedReading {
    pub fn of(signed: &SignedMeterReading) -> SignedReading {
        SignedReading {
            interval: signed.reading.interval,
            import_wh_total: signed.reading.import_wh_total,
            export_wh_total: signed.reading.export_wh_total,
            signature_hex: ::hex::encode(signed.signature.0),
        }
    }

    /// The signed reading of `meter`, checked to verify in `community`:
    /// `None` if the signature is not 64 bytes of hex or does not verify.
    pub fn attestation(&self, meter: PublicKey, community: &CommunityId) -> Option<SignedMeterReading> {
        let signature: [u8; 64] = ::hex::decode(&self.signature_hex).ok()?.try_into().ok()?;
        let signed = SignedMeterReading {
            reading: MeterReading {
                meter,
                interval: self.interval,
                import_wh_total: self.import_wh_total,
                export_wh_total: self.export_wh_total,
            },
            signature: Signature(signature),
        };
        signed.verify(community).is_ok().then_some(signed)
    }
}

/// `GET /v1/nonces/{key}`: the highest nonce an account or registrar has
/// used, counting what waits in this node's mempool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nonce {
    #[serde(with = "hex")]
    pub key: PublicKey,
    pub last_nonce: u64,
}

/// `GET /v1/offers`: open offers, ascending by interval then id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offers {
    pub offers: Vec<Offer>,
}

/// An open offer: in a committed block, its interval not cleared yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The offer's transaction id.
    #[serde(with = "hex")]
    pub id: Hash,
    #[serde(with = "hex")]
    pub account: PublicKey,
    pub interval: u64,
    pub side: Side,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
    /// Held from the account's balance until the interval clears (buy).
    #[serde(with = "nano")]
    pub reserved_nano: i128,
    /// The zone the auction places it in: its attesting meter's.
    pub zone: String,
}

impl Offer {
    /// The offer `id` of `genesis`'s community as the API shows it.
    pub fn of(id: Hash, offer: &OpenOffer, genesis: &Genesis) -> Offer {
        let OpenOffer { account, interval, side, energy_wh, price_micro_per_kwh, reserved_nano, zone } =
            *offer;
        let zone = genesis.zones.get(zone as usize).map_or_else(String::new, |zone| zone.name.clone());
        Offer {
            id,
            account,
            interval,
            side: side.into(),
            energy_wh,
            price_micro_per_kwh,
            reserved_nano,
            zone,
        }
    }
}

/// The query of `GET /v1/offers`: both filters optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffersQuery {
    pub account: Option<PublicKey>,
    pub interval: Option<u64>,
}

impl OffersQuery {
    /// The parameter names the endpoint takes.
    pub const PARAMETERS: [&str; 2] = ["account", "interval"];

    /// `?account=KEY&interval=N`, or nothing without filters.
    pub fn to_query_string(&self) -> String {
        let mut parameters = Vec::new();
        if let Some(account) = &self.account {
            parameters.push(format!("account={account}"));
        }
        if let Some(interval) = self.interval {
            parameters.push(format!("interval={interval}"));
        }
        if parameters.is_empty() { String::new() } else { format!("?{}", parameters.join("&")) }
    }
}
