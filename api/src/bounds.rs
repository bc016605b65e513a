//! The API's bounds, shared by the node that enforces them and the clients
//! that stay within them (docs/API.md, Conventions).

/// The largest request body a node accepts.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// The most items in one list of an answer (offers, a book, trades, bills,
/// evidence, an account's meters).
pub const LIST_MAX: usize = 1_000;
/// The most intervals one trades or bills query spans.
pub const INTERVAL_SPAN_MAX: u64 = 96;
/// The intervals a trades or bills query spans when it names no range.
pub const INTERVAL_SPAN_DEFAULT: u64 = 24;
/// Event streams (`/v1/events`) and exports (`/v1/export`) a node serves at
/// once at most: each holds a connection and its buffers for as long as
/// its client wants.
pub const STREAMS_MAX: usize = 64;
/// The longest isolation `POST /v1/admin/isolate` accepts.
pub const ISOLATION_MS_MAX: u64 = 3_600_000;
/// The largest JSON answer a client reads. The largest answers are blocks
/// and cleared intervals, whose size the genesis bounds rather than
/// [`LIST_MAX`] (`max_transactions_per_block`, 100,000 in the test
/// communities): a block lists each transaction (about 170 bytes of JSON)
/// and carries it in `certified_block_hex` (about 500 hex digits for an
/// offer), about 67 MB for a block of 100,000 offers; a clearing lists each
/// trade (about 330 bytes). Exports and event streams are read as streams,
/// not held whole.
pub const RESPONSE_BYTES_MAX: u64 = 128 * 1024 * 1024;
/// The longest line of the event stream, and the most data of one event, a
/// client accepts: a settlement event lists a bill per account (about 500
/// bytes each).
pub const EVENT_BYTES_MAX: usize = 16 * 1024 * 1024;
