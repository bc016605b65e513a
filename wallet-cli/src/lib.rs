//! The library behind the `gridshare` command: parsing of what people type,
//! the commands themselves and their output. `main.rs` only wires arguments
//! to these functions, so tests reach everything here.

pub mod agent;
pub mod amount;
pub mod audit;
pub mod bulk;
pub mod clear;
pub mod gateway;
pub mod grid;
pub mod household;
pub mod keystore;
pub mod market;
pub mod market_time;
pub mod openadr;
pub mod prove;
pub mod registrar;
pub mod table;
pub mod tariffs;
pub mod wallet;
pub mod watch;
