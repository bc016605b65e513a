//! Golden state vectors: a short chain with one block of each transaction
//! kind, a block that clears and blocks that settle (measured, estimated and
//! trued-up meters), each block's bytes with its hash, roots and the bytes
//! its state root hashes, checked in (`tests/vectors/states.txt`). An
//! implementation written from docs/PROTOCOL.md replays the blocks and must
//! reproduce every line (PROTOCOL.md §10). The encoding of the state root is
//! spelled out here field by field, as §5.1 lists it, and checked against
//! `State::root`, so the document and the code cannot drift apart.
//! Regenerate with `UPDATE_EXPECT=1 cargo test -p gridshare-ledger --test states`
//! only for a deliberate, versioned change of the protocol.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use expect_test::expect_file;
use gridshare_ledger::block::{Block, Receipt};
use gridshare_ledger::encoding::{Domain, domain_bytes, to_bytes};
use gridshare_ledger::execute::{Signatures, execute};
use gridshare_ledger::genesis::Tariffs;
use gridshare_ledger::ids::{Keypair, PublicKey};
use gridshare_ledger::state::State;
use gridshare_ledger::testkit::{LocalValidator, TestCommunity, test_market};
use gridshare_ledger::tx::{Side, SignedTx, Tx};
use gridshare_ledger::{Hash, NANOS_PER_UNIT};

/// The genesis time of the vector community (the one of `objects.txt`).
const T0: u64 = 1_700_000_000_000;
/// The meters' power both ways: 1,000 Wh per 1-second interval, a capacity
/// (5 % tolerance) of 1,050 Wh.
const METER_W: u64 = 3_600_000;

/// The bytes the state root hashes after the domain prefix: the fields of
/// §5.1 in the order and grouping PROTOCOL.md gives, written out here by
/// hand rather than by calling `State::root`.
fn root_preimage(state: &State) -> Vec<u8> {
    to_bytes(&(
        (
            &state.height,
            &state.last_timestamp_ms,
            &state.accounts,
            &state.registrar_nonces,
            &state.meters,
            &state.readings,
            &state.offers,
        ),
        (
            &state.offers_by_interval,
            &state.offer_counts,
            &state.positions,
            &state.contracts,
            &state.tariffs,
            &state.next_clearing_interval,
        ),
        (
            &state.next_settlement_interval,
            &state.grid_balance_nano,
            &state.network_balance_nano,
            &state.credits_nano,
            &state.debits_nano,
        ),
    ))
}

/// `hash("gridshare/state", community, preimage)`, from the preimage.
fn root_from_preimage(community: &TestCommunity, preimage: &[u8]) -> Hash {
    let mut bytes = domain_bytes(Domain::State, &community.genesis.community_id, &());
    bytes.extend_from_slice(preimage);
    Hash::of(&bytes)
}

/// One step of the chain: a label, the block's time and its transactions.
struct Step {
    label: &'static str,
    offset_ms: u64,
    transactions: Vec<SignedTx>,
}

/// The chain's steps. Times are offsets from the genesis time; the market is
/// `test_market()`: 1-second intervals, gate closure 500 ms before the start,
/// settlement 1.5 s after the end. Household 0 (A) sells, household 1 (B)
/// buys, in interval 2.
fn steps(community: &mut TestCommunity) -> Vec<Step> {
    let id = community.genesis.community_id;
    let a = community.households[0].account.public();
    let a_meter = community.households[0].meter.public();
    let b = community.households[1].account.public();
    let b_meter = community.households[1].meter.public();
    let register_meter = |meter: PublicKey, owner: PublicKey| {
        move |registrar, nonce| Tx::RegisterMeter {
            registrar,
            nonce,
            meter,
            owner,
            max_import_w: METER_W,
            max_export_w: METER_W,
            zone: "feeder-1".into(),
        }
    };
    let credit = |account: PublicKey, amount_nano: i128, reference: &str| {
        let reference = reference.to_string();
        move |registrar, nonce| Tx::Credit { registrar, nonce, account, amount_nano, reference }
    };
    let mut steps = Vec::new();
    let mut step = |label, offset_ms, transactions| steps.push(Step { label, offset_ms, transactions });

    step(
        "register-account",
        100,
        vec![community.registrar_tx(|registrar, nonce| Tx::RegisterAccount {
            registrar,
            nonce,
            account: a,
            credit_limit_nano: 2 * NANOS_PER_UNIT,
        })],
    );
    step("register-meter", 200, vec![community.registrar_tx(register_meter(a_meter, a))]);
    step("credit", 300, vec![community.registrar_tx(credit(a, 100 * NANOS_PER_UNIT, "deposit A"))]);
    step(
        "debit",
        400,
        vec![community.registrar_tx(|registrar, nonce| Tx::Debit {
            registrar,
            nonce,
            account: a,
            amount_nano: NANOS_PER_UNIT,
            reference: "withdrawal A".into(),
        })],
    );
    // At 500 ms intervals 0 and 1 have closed (start ≤ t + 500): the
    // earliest interval tariffs may change for is 3.
    let tariffs = Tariffs {
        effective_from_interval: 3,
        grid_import_micro_per_kwh: 250_000,
        grid_feed_in_micro_per_kwh: 90_000,
        network_fee_micro_per_kwh: 10_000,
    };
    step(
        "set-tariffs",
        500,
        vec![community.registrar_tx(|registrar, nonce| Tx::SetTariffs { registrar, nonce, tariffs })],
    );
    let b_registration = vec![
        community.registrar_tx(|registrar, nonce| Tx::RegisterAccount {
            registrar,
            nonce,
            account: b,
            credit_limit_nano: 0,
        }),
        community.registrar_tx(register_meter(b_meter, b)),
        community.registrar_tx(credit(b, 50 * NANOS_PER_UNIT, "deposit B")),
    ];
    step("setup: register household B", 600, b_registration);
    // A's readings: interval 0, 1 and 2, every one measured.
    step("meter-reading", 1_100, vec![community.reading_tx(0, 0, 1_000, 5_000)]);
    let attestation = community.reading(0, 0, 1_000, 5_000);
    step("offer", 1_200, vec![community.offer_tx(0, 1, 2, Side::Sell, 600, 100_000, attestation)]);
    let b_attestation = community.reading(1, 0, 0, 0);
    step(
        "setup: B bids for interval 2",
        1_300,
        vec![community.offer_tx(1, 1, 2, Side::Buy, 500, 200_000, b_attestation)],
    );
    let withdrawn = community.offer_tx(0, 2, 2, Side::Sell, 100, 300_000, attestation);
    let offer_id = withdrawn.id(&id);
    step("setup: A offers more, to withdraw it", 1_400, vec![withdrawn]);
    let cancel = SignedTx::sign(
        Tx::CancelOffer { account: a, nonce: 3, offer_id },
        &community.households[0].account,
        &id,
    );
    step("cancel-offer", 1_450, vec![cancel]);
    // Gate closure of interval 2 is at 1,500 ms.
    step("clears interval 2", 1_600, Vec::new());
    step(
        "setup: readings of interval 1",
        2_100,
        vec![community.reading_tx(0, 1, 1_100, 5_600), community.reading_tx(1, 1, 200, 0)],
    );
    // Settles interval 0 (both meters registered in it: nobody is billed).
    step("settles interval 0: no receipt", 3_100, vec![community.reading_tx(0, 2, 1_150, 6_200)]);
    // A measured (readings of 0 and 1), B estimated (no reading before 1).
    step("settles interval 1", 4_100, Vec::new());
    // The traded interval: A measured, B estimated (no reading of 2); B's
    // reading of 3 in the block is kept for interval 3's settlement.
    step("settles interval 2", 5_100, vec![community.reading_tx(1, 3, 900, 100)]);
    // A estimated (no reading of 3); B's gap (2 and 3) trued up and refunded.
    step("settles interval 3", 6_100, Vec::new());
    steps
}

/// The blocks that clear and settle derive what their labels say, so the
/// vectors keep covering a trade, measured and estimated meters and a refund.
fn check_receipts(label: &str, receipts: &[Receipt]) {
    let bills = || {
        receipts.iter().flat_map(|receipt| match receipt {
            Receipt::Settlement(settlement) => settlement.bills.clone(),
            Receipt::Clearing(_) => Vec::new(),
        })
    };
    match label {
        "clears interval 2" => assert!(
            matches!(receipts, [Receipt::Clearing(clearing)] if clearing.trades.len() == 1 && clearing.offers == 2),
            "{label}: {receipts:?}"
        ),
        "settles interval 0: no receipt" => assert!(receipts.is_empty(), "{label}: {receipts:?}"),
        "settles interval 1" | "settles interval 2" => {
            let estimated: Vec<u64> = bills().map(|bill| bill.estimated_import_wh).collect();
            // A measured, B estimated at its meter's capacity.
            assert!(
                estimated.len() == 2 && estimated.contains(&0) && estimated.contains(&1_050),
                "{label}: {receipts:?}"
            );
        }
        "settles interval 3" => assert!(
            bills().any(|bill| bill.estimate_refund_wh == 1_500 && bill.estimate_refund_nano == 120_000_000),
            "{label}: {receipts:?}"
        ),
        _ => assert!(receipts.is_empty(), "{label}: {receipts:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[test]
fn state_vectors() {
    let mut community = TestCommunity::new(1, 2, test_market(), T0);
    let validator = LocalValidator { keypair: Keypair::from_seed(community.validator.seed()) };
    let genesis = community.genesis.clone();
    let id = genesis.community_id;
    let mut state = State::genesis(&genesis);
    let mut out = String::new();
    out.push_str(&format!(
        "== genesis\nbytes {}\nhash  {}\nstate {}\nroot  {}\n",
        hex(&to_bytes(&genesis)),
        genesis.hash(),
        hex(&root_preimage(&state)),
        state.root(&id)
    ));
    assert_eq!(root_from_preimage(&community, &root_preimage(&state)), state.root(&id));
    let mut kinds_seen = Vec::new();
    for (index, step) in steps(&mut community).into_iter().enumerate() {
        let (certified, built) =
            validator.produce(&genesis, &state, step.transactions, T0 + step.offset_ms).unwrap();
        assert!(built.left_out.is_empty(), "{}: left out {:?}", step.label, built.left_out);
        let block: Block = certified.block;
        // What a replica or the audit does: execute it, every signature checked.
        let (executed, receipts) = execute(&genesis, &state, &block, Signatures::Verify).unwrap();
        assert_eq!((&executed, &receipts), (&built.state, &block.receipts), "{}", step.label);
        let preimage = root_preimage(&executed);
        assert_eq!(root_from_preimage(&community, &preimage), block.header.state_root, "{}", step.label);
        kinds_seen.extend(block.transactions.iter().map(|tx| tx.tx.kind()));
        check_receipts(step.label, &block.receipts);
        out.push_str(&format!(
            "== block {}: {}\ntime  {}\nbytes {}\nhash  {}\ntx-root {}\nreceipts {}\nreceipt-root {}\nstate {}\nroot  {}\n",
            index + 1,
            step.label,
            block.header.timestamp_ms,
            hex(&to_bytes(&block)),
            block.hash(),
            block.header.tx_root,
            block.receipts.len(),
            block.header.receipt_root,
            hex(&preimage),
            block.header.state_root,
        ));
        state = executed;
    }
    // The chain covers every transaction kind, a clearing with a trade, and
    // settlements that measure, estimate and true up.
    for kind in [
        "register-account",
        "register-meter",
        "credit",
        "debit",
        "set-tariffs",
        "offer",
        "cancel-offer",
        "meter-reading",
    ] {
        assert!(kinds_seen.contains(&kind), "no {kind} in the state vectors");
    }
    expect_file!["vectors/states.txt"].assert_eq(&out);
}
