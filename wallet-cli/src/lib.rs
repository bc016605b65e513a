//! The library behind the `gridshare` command: parsing of what people type,
//! the commands themselves and their output. `main.rs` only wires arguments
//! to these functions, so tests reach everything here.

pub mod amount;
pub mod audit;
pub mod clear;
pub mod keystore;
pub mod table;
