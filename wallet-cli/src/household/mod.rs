//! A household's commands: offer to buy or sell energy, list and cancel
//! offers (`offers`), see the balance, trades and bills (`account`), and
//! report meter readings (`meter`). Keys stay in the keystore: transactions
//! are built and signed here and the node only receives them.

mod account;
mod meter;
mod offers;

pub use account::{
    BalanceArgs, BillArgs, IntervalRange, SPAN_REQUESTS_MAX, TradesArgs, balance, balance_text, bill,
    bill_text, bills_text, trades, trades_text,
};
pub use meter::{MeterReportArgs, meter_report};
pub use offers::{
    CancelArgs, OfferArgs, OfferTerms, OffersArgs, build_attested_offer, build_offer, cancel, offer, offers,
    offers_text, parse_offer_energy,
};
