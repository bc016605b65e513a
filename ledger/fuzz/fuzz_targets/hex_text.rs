//! Fuzz target: keys and hashes as users type them (CLI arguments, API
//! paths). Parsing never panics, and what parses prints back as the input
//! in lowercase.

#![no_main]

use gridshare_ledger::Hash;
use gridshare_ledger::ids::PublicKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if let Ok(key) = text.parse::<PublicKey>() {
        assert_eq!(key.to_string(), text.to_ascii_lowercase());
    }
    if let Ok(hash) = text.parse::<Hash>() {
        assert_eq!(hash.to_string(), text.to_ascii_lowercase());
    }
});
