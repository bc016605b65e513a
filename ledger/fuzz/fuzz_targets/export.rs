//! Fuzz target: an export file as a user hands it to the audit. Opening it
//! and reading every block never panics and stays within its bounds, and the
//! audit of the same bytes agrees with the reader on how far it got.

#![no_main]

use gridshare_ledger::audit::audit_export;
use gridshare_ledger::export::ExportReader;
use gridshare_ledger::store::EVIDENCE_MAX;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok((mut reader, _genesis)) = ExportReader::open(bytes) else {
        assert!(audit_export(bytes, |_| ()).is_err(), "the audit read an export the reader refused");
        return;
    };
    let mut blocks = 0_u64;
    // Every block record holds at least a header, so a reader that yields
    // more blocks than the input has bytes is looping.
    while let Ok(Some(_block)) = reader.next_block() {
        blocks += 1;
        assert!(blocks <= bytes.len() as u64, "more blocks than bytes");
    }
    assert!(reader.evidence().len() <= EVIDENCE_MAX);
    let report = audit_export(bytes, |_| ()).expect("the audit opens what the reader opened");
    assert_eq!(report.blocks, blocks, "the audit and the reader read different numbers of blocks");
    assert!(report.equivocations <= reader.evidence().len() as u64, "the audit proved more than was read");
});
