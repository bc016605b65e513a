//! Fuzz target: a certified block as it arrives by block gossip or sync.
//! Decoding never panics; what decodes was canonical; checking its
//! certificate against the fixed test genesis never panics.

#![no_main]

use gridshare_ledger::block::CertifiedBlock;
use gridshare_ledger_fuzz::{decode_canonical, fixed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some(certified) = decode_canonical::<CertifiedBlock>(bytes) else { return };
    let community = &fixed().0;
    let (certificate, header) = (&certified.certificate, &certified.block.header);
    if certificate.verify(&community.genesis, header).is_ok() {
        // The fixed genesis has one validator: only its precommit for this
        // very header can make the block final.
        assert_eq!((certificate.height, certificate.block_hash), (header.height, header.hash()));
        let validator = community.validator.public();
        assert!(certificate.signatures.iter().any(|commit| commit.validator == validator));
    }
});
