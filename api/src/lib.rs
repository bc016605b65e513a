//! gridshare-api: the one definition of a node's HTTP API (docs/API.md).
//! Every request and response body is a serde type here, with the API's
//! bounds and error codes; the node renders and parses them, and every
//! client (the CLI, the testnet, tests, benchmarks) parses and builds them,
//! through the one blocking [`client::Client`] (feature `client`). Beside
//! the wire: the process [`harness`] that starts and stops `gridshare-node`
//! for tests and benchmarks, the exact [`decimal`] conversions people's
//! amounts go through, [`report`] (a ledger's trades, clearings, bills and
//! readings as CSV or JSON in local time) and [`stats::percentile`].
//!
//! Money is a JSON string of nano-currency (an `i128` here); keys, ids and
//! hashes are the ledger's types, 64 hex digits on the wire; canonical
//! objects travel as `*_hex` borsh bytes that `gridshare-ledger` decodes.

pub mod accounts;
pub mod admin;
pub mod blocks;
pub mod bounds;
#[cfg(feature = "client")]
pub mod client;
pub mod decimal;
pub mod error;
pub mod events;
pub mod harness;
pub mod intervals;
pub mod market;
pub mod proofs;
pub mod report;
pub mod stats;
pub mod status;
pub mod tariffs;
mod text;
pub mod transactions;
pub mod zones;

pub use accounts::{
    Account, Meter, MeterReadings, Nonce, Offer, Offers, OffersQuery, Reading, SignedReading,
};
pub use admin::{IsolateRequest, Isolated};
pub use blocks::{
    Bill, Block, BlockTransaction, ClearingReceipt, Equivocation, EvidenceList, ProposalSummary, Receipt,
    SettlementReceipt, TradeReceipt, VoteSummary,
};
pub use error::{ErrorBody, ErrorCode};
pub use events::{BlockEvent, Event, Lagged, SettlementEvent};
pub use intervals::{
    AccountBill, AccountTrade, Bills, BookEntry, Clearing, Interval, IntervalStatus, SettlementSummary,
    SpanQuery, Tariffs, Trades,
};
pub use market::{Mechanism, Side, TxKind, VoteKind};
pub use proofs::{Proof, ProofTarget};
pub use status::{GenesisResponse, GenesisSummary, Health, NotReady, Role, Status, SyncStatus, Validator};
pub use tariffs::{IntervalTariffs, ScheduledTariffs, TariffSchedule};
pub use transactions::{Admitted, AdmittedStatus, SubmitRequest, TransactionState, TransactionStatus};
pub use zones::{ZoneCleared, ZoneFlows, ZoneInterval, ZoneLimitsRun, ZoneMeasured, ZoneSummary, Zones};
