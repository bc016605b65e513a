//! Fuzz target: transactions with hostile values, from any signer, built into
//! blocks. Nothing a transaction can carry makes a block fail to build or a
//! built block fail to execute (docs/PROTOCOL.md §5.7): every amount
//! clearing and settlement compute with was bounded at admission. Whatever
//! is admitted, the state machine's invariants hold after every block (it
//! asserts them itself), and the built block executes to the built state.
//!
//! Input: records of `kind u8 ‖ advance u16 LE ‖ fields`, each a block at
//! `advance` ms (at least 1) after the one before, with one transaction of
//! the fixed community made from `kind` and the following bytes (missing
//! bytes read as zeros). Signatures are not checked (`AlreadyVerified`):
//! every signer is as good as the registrar.

#![no_main]

use gridshare_ledger::Hash;
use gridshare_ledger::execute::{Signatures, build_block, execute};
use gridshare_ledger::genesis::Tariffs;
use gridshare_ledger::ids::{PublicKey, Signature};
use gridshare_ledger::state::State;
use gridshare_ledger::testkit::derived_key;
use gridshare_ledger::tx::{MeterReading, Offer, Side, SignedMeterReading, SignedTx, Tx};
use gridshare_ledger_fuzz::fixed;
use libfuzzer_sys::fuzz_target;

/// Blocks per input, at most: enough to register, report, offer, clear and
/// settle.
const BLOCKS_MAX: usize = 24;

/// Reads fixed-size fields from the fuzzer's bytes, zeros past the end.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let taken = self.0.len().min(N);
        out[..taken].copy_from_slice(&self.0[..taken]);
        self.0 = &self.0[taken..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
    fn i128(&mut self) -> i128 {
        i128::from_le_bytes(self.bytes())
    }
    /// A small number or, with its top bit, any `u64`: hostile values and
    /// ones near the state's get equal chances.
    fn near(&mut self, base: u64) -> u64 {
        let pick = self.u8();
        if pick & 0x80 != 0 { self.u64() } else { base.saturating_add(u64::from(pick & 0x0f)) }
    }
}

fn unsigned(tx: Tx) -> SignedTx {
    SignedTx { tx, signature: Signature([0; 64]) }
}

/// A transaction of kind `kind` from `fields`, about the fixed community's
/// households (the first two) or accounts and meters it registers.
fn transaction(state: &State, kind: u8, fields: &mut Fields) -> SignedTx {
    let (community, _) = fixed();
    let genesis = &community.genesis;
    let registrar = community.registrar.public();
    let registrar_nonce = state.registrar_nonces.get(&registrar).copied().unwrap_or(0) + 1;
    // A household, or a key the input registers (role 5 and 6 of the
    // derived keys are the fuzzer's).
    let who = fields.u8();
    let account = match community.households.get(usize::from(who % 4)) {
        Some(household) if who < 128 => household.account.public(),
        _ => derived_key(99, 5, u32::from(who % 8)).public(),
    };
    let meter = match community.households.get(usize::from(who % 4)) {
        Some(household) if who < 128 => household.meter.public(),
        _ => derived_key(99, 6, u32::from(who % 8)).public(),
    };
    let now_interval = genesis.interval_at(state.last_timestamp_ms);
    let nonce = state.accounts.get(&account).map_or(1, |a| a.last_nonce + 1);
    match kind % 8 {
        0 => unsigned(Tx::RegisterAccount {
            registrar,
            nonce: registrar_nonce,
            account,
            credit_limit_nano: fields.i128(),
        }),
        1 => unsigned(Tx::RegisterMeter {
            registrar,
            nonce: registrar_nonce,
            meter,
            owner: account,
            max_import_w: fields.u64(),
            max_export_w: fields.u64(),
            zone: "main".into(),
        }),
        2 => unsigned(Tx::Credit {
            registrar,
            nonce: registrar_nonce,
            account,
            amount_nano: fields.i128(),
            reference: String::new(),
        }),
        3 => unsigned(Tx::Debit {
            registrar,
            nonce: registrar_nonce,
            account,
            amount_nano: fields.i128(),
            reference: String::new(),
        }),
        4 => unsigned(Tx::SetTariffs {
            registrar,
            nonce: registrar_nonce,
            tariffs: Tariffs {
                effective_from_interval: fields.near(now_interval),
                grid_import_micro_per_kwh: fields.u64(),
                grid_feed_in_micro_per_kwh: fields.u64(),
                network_fee_micro_per_kwh: fields.u64(),
            },
        }),
        5 => {
            let interval = fields.near(now_interval);
            let side = if fields.u8() % 2 == 0 { Side::Buy } else { Side::Sell };
            let last = state.meters.get(&meter).and_then(|m| m.last_reading);
            let attestation = last.unwrap_or(MeterReading {
                meter,
                interval: now_interval,
                import_wh_total: 0,
                export_wh_total: 0,
            });
            unsigned(Tx::Offer(Offer {
                account,
                nonce,
                interval,
                side,
                energy_wh: fields.near(1),
                price_micro_per_kwh: fields.near(100_000),
                attestation: SignedMeterReading { reading: attestation, signature: Signature([0; 64]) },
            }))
        }
        6 => {
            let offer_id = state.offers.keys().nth(usize::from(fields.u8())).copied().unwrap_or(Hash::ZERO);
            unsigned(Tx::CancelOffer { account, nonce, offer_id })
        }
        _ => {
            let last = state.meters.get(&meter).and_then(|m| m.last_reading);
            let (import, export) = last.map_or((0, 0), |r| (r.import_wh_total, r.export_wh_total));
            unsigned(Tx::MeterReading(MeterReading {
                meter,
                interval: fields.near(last.map_or(now_interval.saturating_sub(1), |r| r.interval + 1)),
                import_wh_total: fields.near(import),
                export_wh_total: fields.near(export),
            }))
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    let (community, first) = fixed();
    let genesis = &community.genesis;
    let proposer: PublicKey = community.validator.public();
    let mut state = execute(genesis, &State::genesis(genesis), &first.block, Signatures::Verify)
        .expect("the fixed community's first block executes")
        .0;
    let mut fields = Fields(bytes);
    for _ in 0..BLOCKS_MAX {
        if fields.0.is_empty() {
            break;
        }
        let kind = fields.u8();
        let advance_ms = u64::from(fields.u16()).max(1);
        let tx = transaction(&state, kind, &mut fields);
        let time_ms = state.last_timestamp_ms + advance_ms;
        let built = build_block(genesis, &state, vec![tx], time_ms, proposer, Signatures::AlreadyVerified)
            .unwrap_or_else(|error| panic!("a block at {time_ms} fails to build: {error}"));
        let (next, receipts) = execute(genesis, &state, &built.block, Signatures::AlreadyVerified)
            .unwrap_or_else(|error| panic!("a built block does not execute: {error}"));
        assert_eq!(next, built.state, "execution and building disagree");
        assert_eq!(receipts, built.block.receipts);
        state = next;
    }
});
