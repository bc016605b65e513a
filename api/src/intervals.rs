//! `GET /v1/intervals/{n}` and an account's trades and bills over a range
//! of intervals: the market of an interval (its book, clearing and
//! settlement) and what an account traded and was billed.

use gridshare_ledger::Hash;
use gridshare_ledger::genesis::Tariffs as LedgerTariffs;
use gridshare_ledger::ids::PublicKey;
use serde::{Deserialize, Serialize};

use crate::blocks::{Bill, ClearingReceipt};
use crate::bounds::INTERVAL_SPAN_MAX;
use crate::market::Side;
use crate::text::{hex, nano};

/// Where an interval is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntervalStatus {
    /// Before its gate closure: offers are taken.
    Open,
    /// Its gate closure passed; the clearing block is not committed yet.
    Closed,
    Cleared,
    Settled,
}

impl IntervalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IntervalStatus::Open => "open",
            IntervalStatus::Closed => "closed",
            IntervalStatus::Cleared => "cleared",
            IntervalStatus::Settled => "settled",
        }
    }
}

/// `GET /v1/intervals/{n}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    pub interval: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    pub gate_closure_ms: u64,
    pub settlement_ms: u64,
    pub status: IntervalStatus,
    /// The grid tariffs in force for the interval: a settled interval's
    /// settlement's, any other's under the ledger's schedule and the
    /// interval's own tariffs as they stand (a registrar or DSO may still
    /// change them for an interval open for offers).
    pub tariffs: Tariffs,
    /// The open offers before clearing; after it, the offers that took part
    /// in the auction (at most `LIST_MAX`).
    pub book: Vec<BookEntry>,
    /// Whether the book has more offers than it lists.
    pub book_truncated: bool,
    pub clearing: Option<Clearing>,
    pub settlement: Option<SettlementSummary>,
}

/// An offer of an interval's book.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookEntry {
    #[serde(with = "hex")]
    pub id: Hash,
    #[serde(with = "hex")]
    pub account: PublicKey,
    pub side: Side,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
}

/// An interval's clearing and the height of the block that holds it: in
/// `GET /v1/intervals/{n}` and as a `clearing` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clearing {
    pub height: u64,
    #[serde(flatten)]
    pub receipt: ClearingReceipt,
}

/// An interval's settlement, counted: the block, the bills and the tariffs
/// they were priced at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementSummary {
    pub height: u64,
    pub bills: u64,
    pub tariffs: Tariffs,
    /// What each zone's meters measured, in genesis zone order.
    pub zones: Vec<crate::blocks::ZoneSettlement>,
}

/// The grid tariffs and network fee in force for an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tariffs {
    pub grid_import_micro_per_kwh: u64,
    pub grid_feed_in_micro_per_kwh: u64,
    pub network_fee_micro_per_kwh: u64,
}

impl From<&LedgerTariffs> for Tariffs {
    fn from(tariffs: &LedgerTariffs) -> Tariffs {
        Tariffs {
            grid_import_micro_per_kwh: tariffs.grid_import_micro_per_kwh,
            grid_feed_in_micro_per_kwh: tariffs.grid_feed_in_micro_per_kwh,
            network_fee_micro_per_kwh: tariffs.network_fee_micro_per_kwh,
        }
    }
}

/// `GET /v1/accounts/{key}/trades`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trades {
    pub trades: Vec<AccountTrade>,
}

/// One of an account's trades, from its side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountTrade {
    pub interval: u64,
    pub height: u64,
    pub side: Side,
    /// The account's offer that traded.
    #[serde(with = "hex")]
    pub offer: Hash,
    #[serde(with = "hex")]
    pub counterparty: PublicKey,
    pub energy_wh: u64,
    /// What the account received per kWh (sell) or paid before the fee
    /// (buy): its own zone's price, so across a congested zone's limit
    /// the two sides of a trade differ.
    pub price_micro_per_kwh: u64,
    /// What the account received (sell), or paid (buy, negative), network
    /// fee excluded: the fee is on the bill.
    #[serde(with = "nano")]
    pub amount_nano: i128,
}

/// `GET /v1/accounts/{key}/bills`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bills {
    pub bills: Vec<AccountBill>,
}

/// One of an account's bills, with the interval and the block that settled
/// it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBill {
    pub interval: u64,
    pub height: u64,
    #[serde(flatten)]
    pub bill: Bill,
}

/// The range of a trades or bills query: `from_interval..=to_interval`,
/// either end optional (the node fills it in from the intervals done).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanQuery {
    pub from_interval: Option<u64>,
    pub to_interval: Option<u64>,
}

/// Why a range of intervals is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    #[error("from_interval {from} is after to_interval {to}")]
    Backwards { from: u64, to: u64 },
    #[error("at most {INTERVAL_SPAN_MAX} intervals at a time")]
    TooLong,
}

impl SpanQuery {
    /// The parameter names the endpoints take.
    pub const PARAMETERS: [&str; 2] = ["from_interval", "to_interval"];

    /// `from..=to`.
    pub fn between(from: u64, to: u64) -> SpanQuery {
        SpanQuery { from_interval: Some(from), to_interval: Some(to) }
    }

    /// Refuses a range that runs backwards or is longer than
    /// [`INTERVAL_SPAN_MAX`].
    pub fn check(&self) -> Result<(), SpanError> {
        if let (Some(from), Some(to)) = (self.from_interval, self.to_interval) {
            if from > to {
                return Err(SpanError::Backwards { from, to });
            }
            if to - from >= INTERVAL_SPAN_MAX {
                return Err(SpanError::TooLong);
            }
        }
        Ok(())
    }

    /// `?from_interval=A&to_interval=B`, as far as they are given.
    pub fn to_query_string(&self) -> String {
        let mut parameters = Vec::new();
        if let Some(from) = self.from_interval {
            parameters.push(format!("from_interval={from}"));
        }
        if let Some(to) = self.to_interval {
            parameters.push(format!("to_interval={to}"));
        }
        if parameters.is_empty() { String::new() } else { format!("?{}", parameters.join("&")) }
    }
}
