//! The grid's zones as the API shows them (docs/API.md, "Zones"): each
//! zone's default limits, meters and the DSO's limits for the intervals to
//! come (`GET /v1/zones`), and one zone's flows interval by interval: what
//! its offers traded at which price against its limits, and what its meters
//! measured (`GET /v1/zones/{zone}`).

use serde::{Deserialize, Serialize};

use crate::blocks::ZoneSettlement;
use crate::text::limit_wh;

/// `GET /v1/zones`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zones {
    /// Intervals below it are cleared: `limits` are for it and later ones.
    pub next_clearing_interval: u64,
    /// In the order the auction numbers them.
    pub zones: Vec<ZoneSummary>,
}

/// A zone: its genesis limits, its meters and the DSO's limits to come.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneSummary {
    pub name: String,
    /// The limits on the zone's net import and export per interval, in Wh,
    /// where the DSO set none (`null`: no limit).
    #[serde(with = "limit_wh")]
    pub import_wh_max: u64,
    #[serde(with = "limit_wh")]
    pub export_wh_max: u64,
    /// Meters registered in the zone.
    pub meters: u32,
    /// The zone's own meter (its transformer's), `null` when it has none.
    #[serde(with = "crate::text::hex_option")]
    pub zone_meter: Option<gridshare_ledger::ids::PublicKey>,
    /// The DSO's limits for intervals not cleared yet, ascending, runs of
    /// intervals with the same limits as one entry.
    pub limits: Vec<ZoneLimitsRun>,
}

/// The same limits over `first_interval..=last_interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneLimitsRun {
    pub first_interval: u64,
    pub last_interval: u64,
    #[serde(with = "limit_wh")]
    pub import_wh_max: u64,
    #[serde(with = "limit_wh")]
    pub export_wh_max: u64,
}

/// `GET /v1/zones/{zone}?from_interval=A&to_interval=B`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneFlows {
    pub zone: String,
    /// Each interval of the span that was cleared (with offers) or settled,
    /// ascending.
    pub intervals: Vec<ZoneInterval>,
}

/// One zone in one interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneInterval {
    pub interval: u64,
    /// The clearing; `null` when the interval had no offers.
    pub cleared: Option<ZoneCleared>,
    /// The settlement; `null` until the interval settled.
    pub measured: Option<ZoneMeasured>,
}

/// What the zone's offers traded, from the clearing receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneCleared {
    /// The block of the clearing.
    pub height: u64,
    /// The zone's price; `null` under pay-as-bid or when nothing traded.
    pub price_micro_per_kwh: Option<u64>,
    /// The community's (hub) price.
    pub clearing_price_micro_per_kwh: Option<u64>,
    /// Sold out of the zone less bought into it.
    pub net_export_wh: i64,
    /// The limits the interval was cleared with.
    #[serde(with = "limit_wh")]
    pub import_wh_max: u64,
    #[serde(with = "limit_wh")]
    pub export_wh_max: u64,
    pub congested: bool,
}

/// What the zone's meters measured: its part of the settlement receipt,
/// with the block that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneMeasured {
    /// The block of the settlement.
    pub height: u64,
    #[serde(flatten)]
    pub settlement: ZoneSettlement,
}

/// A zone's name as one path segment: every byte but the unreserved ones
/// (`A-Z a-z 0-9 - . _ ~`) percent-encoded, so any name reaches the node
/// whole.
pub fn path_segment(name: &str) -> String {
    let mut segment = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            segment.push(char::from(byte));
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    segment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_path_segment() {
        assert_eq!(path_segment("feeder-1"), "feeder-1");
        assert_eq!(path_segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }
}
