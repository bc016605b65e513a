//! Fuzz target: a signed transaction as it arrives by gossip or through the
//! API. Decoding never panics; what decodes was canonical; checking its
//! signatures never panics, and batch and one-by-one verification agree.

#![no_main]

use gridshare_ledger::tx::{SignedTx, verify_batch};
use gridshare_ledger_fuzz::{decode_canonical, fixed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some(tx) = decode_canonical::<SignedTx>(bytes) else { return };
    let community = &fixed().0.genesis.community_id;
    let checks = tx.signature_checks(community);
    let one_by_one = checks.iter().map(|check| check.verify()).find(Result::is_err).unwrap_or(Ok(()));
    assert_eq!(tx.verify(community), one_by_one);
    // docs/PROTOCOL.md §3: the batch's random coefficients cannot change the verdict.
    assert_eq!(verify_batch(&checks).is_ok(), one_by_one.is_ok(), "batch and single verification disagree");
    let _ = (tx.id(community), tx.tx.kind(), tx.tx.nonce(), tx.tx.signer());
});
