//! gridshare-households: the households of a simulated community, shared by
//! the testnet (real node processes) and the simulator (real chain cores on
//! simulated time), and a real home's decisions for `gridshare agent run`
//! (`home`): seeded physics of PV, load, batteries and EVs
//! (`profile`), the offer strategy (`strategy`), the market's calendar and
//! tariffs as a household sees them (`market`) and an agent's decisions as
//! a pure function of the time (`agent`). No I/O, no clock, no floats:
//! integer arithmetic only, and every random draw a function of (seed,
//! household, slot, stream).

pub mod agent;
pub mod home;
pub mod market;
pub mod profile;
pub mod strategy;

pub use agent::{Agent, Decision, OFFER_MARGIN_MS, Offers};
pub use market::{Market, ProfileMix, Tariffs};
