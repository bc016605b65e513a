//! Fuzz target: the at-rest encoding of stored blocks and snapshots, as read
//! back from a possibly damaged disk. Decoding never panics and respects the
//! caller's bound; every encoding decodes to what was encoded.

#![no_main]

use gridshare_ledger::store::at_rest::{AtRestError, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // The bytes as a record read from disk, without a bound (as snapshots
    // are read) and with the tightest bounds around what it decodes to.
    match decode(bytes, usize::MAX) {
        Ok(canonical) => {
            assert_eq!(decode(bytes, canonical.len()).as_ref(), Ok(&canonical));
            if let Some(below) = canonical.len().checked_sub(1) {
                assert!(
                    matches!(decode(bytes, below), Err(AtRestError::TooLarge { .. })),
                    "a record longer than the bound was accepted"
                );
            }
        }
        Err(error) => {
            let bounded = decode(bytes, 1 << 20);
            assert!(bounded.is_err(), "a bound made a bad record decode ({error})");
        }
    }
    // The bytes as canonical bytes to store: they come back exactly, and LZ4
    // is used only when it saves space.
    let record = encode(bytes);
    assert!(record.len() <= bytes.len() + 1);
    assert_eq!(decode(&record, bytes.len()).as_deref(), Ok(bytes));
});
