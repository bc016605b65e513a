//! The Gridshare double auction: clears one delivery interval's book of buy and
//! sell orders into fills, a clearing price and bilateral trades.
//!
//! This crate is a pure function of its input, written to be re-run by a
//! regulator years later with byte-identical output. It has no dependencies and
//! knows nothing of keys, time, storage or the network. Everything is integer
//! arithmetic (Wh and micro-currency per kWh); the same orders in any input
//! order give the same [`Clearing`]; no input makes it panic.
//!
//! The rules are normative and written down in `docs/AUCTION.md` at the root of
//! the repository; [`clear`] is their implementation and [`check`] verifies the
//! economic invariants of any result independently of it.
//!
//! ```
//! use gridshare_matching::{clear, Mechanism, Order, Params, Side};
//!
//! let orders = vec![
//!     Order { id: "alice", side: Side::Sell, energy_wh: 2_000, price_micro_per_kwh: 100_000 },
//!     Order { id: "bob", side: Side::Buy, energy_wh: 1_500, price_micro_per_kwh: 200_000 },
//! ];
//! let clearing = clear(orders, &Params::uniform(500)).unwrap();
//! assert_eq!(clearing.volume_wh, 1_500);
//! // Alice's unsold 500 Wh would undercut any higher price: it clears at her ask.
//! assert_eq!(clearing.clearing_price_micro_per_kwh, Some(100_000));
//! ```

mod auction;
mod error;
mod invariants;
mod radix;
mod types;
mod zonal;

pub use auction::clear;
pub use error::ClearError;
pub use invariants::{Violation, check};
pub use types::{Clearing, Fill, Limits, Mechanism, Order, Params, Side, Trade};
pub use zonal::{ZONES_MAX, ZonalClearing, ZonalOrder, ZoneClearing, ZoneLimits, clear_zonal};
