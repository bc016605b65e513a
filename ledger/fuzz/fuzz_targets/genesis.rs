//! Fuzz target: a genesis as read from a file a user names (`init`, the
//! audit of an export) or fetched from a node by the wallet. Decoding never
//! panics; what decodes was canonical; validating it never panics, and
//! neither does auditing a block linked to it, valid genesis or not (the
//! audit reads a genesis it has not validated: an export may hold any). On
//! a valid genesis (its meter tolerance and clock tolerance included) the
//! bounds of the overflow argument hold.
//!
//! Input: `borsh(Genesis) ‖ u64 LE`, the second part the block's time after
//! the genesis time.

#![no_main]

use gridshare_ledger::Hash;
use gridshare_ledger::audit::Auditor;
use gridshare_ledger::block::{Block, BlockHeader, CertifiedBlock, CommitCertificate, receipt_root, tx_root};
use gridshare_ledger::execute::{LIFETIME_MS, METER_POWER_MAX_W};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::state::State;
use gridshare_ledger_fuzz::decode_canonical;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((genesis_bytes, after)) = bytes.split_last_chunk::<8>() else { return };
    let Some(genesis) = decode_canonical::<Genesis>(genesis_bytes) else { return };
    let after_ms = u64::from_le_bytes(*after);
    let valid = genesis.validate().is_ok();
    if valid {
        // Market-time arithmetic is total on a valid genesis.
        for time_ms in [0, genesis.genesis_time_ms, after_ms, u64::MAX] {
            let interval = genesis.interval_at(time_ms);
            let _ = (genesis.gate_closure_ms(interval), genesis.settlement_ms(interval));
        }
        let _ = (genesis.energy_per_interval_wh(u64::MAX), genesis.meter_capacity_wh(u64::MAX));
        assert!(genesis.total_voting_power() > 0);
        // The overflow argument of docs/PROTOCOL.md §5.7 holds for every
        // valid genesis: ten meters of the largest power, estimated for
        // every interval of the lifetime, fit a u64 (a bill's refunded
        // energy), and an interval's capacity of an account fits an i64.
        let capacity = u128::from(genesis.meter_capacity_wh(METER_POWER_MAX_W));
        let intervals = u128::from(LIFETIME_MS / genesis.market.interval_length_ms + 1);
        assert!(10 * capacity * intervals <= u128::from(u64::MAX), "{capacity} Wh × {intervals} intervals");
        assert!(10 * capacity <= i64::MAX as u128);
    }
    let state = State::genesis(&genesis);
    let _ = state.root(&genesis.community_id);

    // An empty block that passes every check of its header, so that the
    // audit executes it under this genesis.
    let proposer = genesis.validators.first().map_or(PublicKey([0; 32]), |validator| validator.key);
    let header = BlockHeader {
        community_id: genesis.community_id,
        height: 1,
        previous_hash: genesis.hash(),
        timestamp_ms: genesis.genesis_time_ms.saturating_add(after_ms.max(1)),
        proposer,
        tx_root: tx_root(&[]),
        tx_count: 0,
        receipt_root: receipt_root(&[]),
        receipt_count: 0,
        state_root: Hash::ZERO,
    };
    let certificate =
        CommitCertificate { height: 1, round: 0, block_hash: header.hash(), signatures: Vec::new() };
    let block = Block { header, transactions: Vec::new(), receipts: Vec::new() };
    let mut auditor = Auditor::new(genesis);
    auditor.block(CertifiedBlock { block, certificate });
    let report = auditor.finish();
    // No signatures, a made-up state root: never a clean audit.
    assert!(!report.passed());
    assert_eq!(report.blocks, 1);
});
