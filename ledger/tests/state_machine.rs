//! The state machine end to end: registration, offers, clearing through the
//! auction, metered settlement with hand-computed bills (measured,
//! estimated, trued up after a gap), replay from genesis, tampered blocks,
//! every admission rejection, the physics bound on readings and the bounds
//! that keep clearing and settlement inside their integers.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use gridshare_ledger::block::{Bill, Block, Receipt};
use gridshare_ledger::execute::{BlockError, Rejection, Signatures, admit, execute};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::{Keypair, PublicKey};
use gridshare_ledger::state::State;
use gridshare_ledger::testkit::{LocalValidator, TestCommunity, derived_key, test_market};
use gridshare_ledger::tx::{Side, SignedTx, Tx};
use gridshare_ledger::{Hash, NANOS_PER_UNIT};

const T0: u64 = 1_000_000;

/// A community of four households and the chain built so far.
struct Scenario {
    community: TestCommunity,
    validator: LocalValidator,
    state: State,
    blocks: Vec<Block>,
}

impl Scenario {
    fn new() -> Scenario {
        let community = TestCommunity::new(7, 4, test_market(), T0);
        community.genesis.validate().unwrap();
        let validator = LocalValidator { keypair: Keypair::from_seed(community.validator.seed()) };
        let state = State::genesis(&community.genesis);
        Scenario { community, validator, state, blocks: Vec::new() }
    }

    fn genesis(&self) -> &Genesis {
        &self.community.genesis
    }

    /// Produces a block; every candidate must be admitted.
    fn block(&mut self, candidates: Vec<SignedTx>, timestamp_ms: u64) -> Vec<Receipt> {
        let (certified, built) =
            self.validator.produce(&self.community.genesis, &self.state, candidates, timestamp_ms).unwrap();
        assert!(built.left_out.is_empty(), "left out: {:?}", built.left_out);
        certified.certificate.verify(self.genesis(), &certified.block.header).unwrap();
        self.state = built.state;
        self.blocks.push(certified.block);
        self.blocks.last().unwrap().receipts.clone()
    }

    fn balance(&self, household: usize) -> i128 {
        self.state.accounts[&self.community.households[household].account.public()].balance_nano
    }
}

/// Meter registers (import, export) of the four households at the end of
/// intervals 0, 1 and 2.
const REGISTERS: [[(u64, u64); 3]; 4] = [
    [(5_000, 2_000), (5_000, 2_600), (5_000, 3_700)],
    [(1_000, 1_000), (1_000, 1_000), (1_000, 1_400)],
    [(3_000, 0), (3_300, 0), (4_100, 0)],
    [(2_000, 0), (2_000, 0), (2_500, 0)],
];

fn readings(scenario: &Scenario, interval: u64) -> Vec<SignedTx> {
    (0..4)
        .map(|h| {
            let (import, export) = REGISTERS[h][usize::try_from(interval).unwrap()];
            scenario.community.reading_tx(h, interval, import, export)
        })
        .collect()
}

/// Runs the whole scenario and returns it with the receipts of each block.
fn run_scenario() -> (Scenario, Vec<Vec<Receipt>>) {
    let mut s = Scenario::new();
    let mut receipts = Vec::new();
    let registrations = s.community.registrations();
    receipts.push(s.block(registrations, T0 + 100));

    // Interval 1 runs; interval 0 has ended. Offers for interval 2 (gate at
    // T0 + 1500), attested by the readings of interval 0.
    let mut txs = readings(&s, 0);
    let offer = |s: &Scenario, h: usize, side, energy_wh, price| {
        let (import, export) = REGISTERS[h][0];
        s.community.offer_tx(h, 1, 2, side, energy_wh, price, s.community.reading(h, 0, import, export))
    };
    txs.push(offer(&s, 0, Side::Sell, 1_000, 100_000));
    txs.push(offer(&s, 1, Side::Sell, 500, 150_000));
    txs.push(offer(&s, 2, Side::Buy, 800, 300_000));
    txs.push(offer(&s, 3, Side::Buy, 1_000, 120_000));
    receipts.push(s.block(txs, T0 + 1_050));

    // Past the gate of interval 2: it clears. Interval 1 has ended.
    receipts.push(s.block(readings(&s, 1), T0 + 2_050));
    // Interval 2 has ended; interval 0 settles: the meters were registered
    // in it, so nobody is billed, and its readings become the bases.
    receipts.push(s.block(readings(&s, 2), T0 + 3_050));
    // Intervals 1 and 2 settle.
    receipts.push(s.block(Vec::new(), T0 + 4_600));
    (s, receipts)
}

#[test]
fn an_interval_clears_and_settles_as_computed_by_hand() {
    let (s, receipts) = run_scenario();
    let [h0, h1, h2, h3] = [0, 1, 2, 3].map(|h| s.community.households[h].account.public());

    // Effective bids net of the 0.02 fee: h2 0.28, h3 0.10. Asks: h0 0.10,
    // h1 0.15. h2 takes 800 Wh of h0, h3 the remaining 200 Wh of h0; h3's
    // unfilled bid and h1's ask pin the price range to [0.10, 0.10].
    assert!(receipts[0].is_empty() && receipts[1].is_empty());
    let [Receipt::Clearing(clearing)] = &receipts[2][..] else { panic!("{:?}", receipts[2]) };
    assert_eq!(clearing.interval, 2);
    assert_eq!(clearing.clearing_price_micro_per_kwh, Some(100_000));
    assert_eq!(clearing.volume_wh, 1_000);
    let trades: Vec<_> = clearing.trades.iter().map(|t| (t.buyer, t.seller, t.energy_wh)).collect();
    assert_eq!(trades, vec![(h2, h0, 800), (h3, h0, 200)]);
    assert!(receipts[3].is_empty(), "interval 0 is the meters' registration interval: {:?}", receipts[3]);

    let [Receipt::Settlement(one), Receipt::Settlement(two)] = &receipts[4][..] else {
        panic!("{:?}", receipts[4])
    };
    assert_eq!((one.interval, two.interval), (1, 2));
    let bill = |bills: &[Bill], account: PublicKey| *bills.iter().find(|b| b.account == account).unwrap();
    let nano = |micro_per_kwh: i128, wh: i128| micro_per_kwh * wh;

    // Interval 1, no trades: h0 fed in 600 Wh at 0.08; h2 imported 300 Wh at 0.30.
    assert_eq!(bill(&one.bills, h0).feed_in_nano, nano(80_000, 600));
    assert_eq!(bill(&one.bills, h2).grid_import_nano, -nano(300_000, 300));
    assert_eq!(bill(&one.bills, h1).total_nano, 0);
    assert_eq!(one.bills.len(), 4);

    // Interval 2. h0 sold 1000 Wh at 0.10 and exported 1100: 100 Wh fed in.
    let b0 = bill(&two.bills, h0);
    assert_eq!((b0.sold_wh, b0.metered_net_export_wh, b0.deviation_wh), (1_000, 1_100, 100));
    assert_eq!(b0.sold_nano, nano(100_000, 1_000));
    assert_eq!(b0.feed_in_nano, nano(80_000, 100));
    assert_eq!(b0.total_nano, nano(100_000, 1_000) + nano(80_000, 100));
    // h1 sold nothing and exported 400 Wh: all fed in.
    assert_eq!(bill(&two.bills, h1).feed_in_wh, 400);
    // h2 bought 800 Wh at 0.10 plus 0.02 fee and imported exactly 800.
    let b2 = bill(&two.bills, h2);
    assert_eq!((b2.bought_wh, b2.deviation_wh, b2.grid_import_wh), (800, 0, 0));
    assert_eq!((b2.bought_nano, b2.fees_nano), (-nano(100_000, 800), -nano(20_000, 800)));
    // h3 bought 200 Wh and imported 500: 300 Wh from the grid at 0.30.
    let b3 = bill(&two.bills, h3);
    assert_eq!((b3.bought_wh, b3.metered_net_export_wh, b3.deviation_wh), (200, -500, -300));
    assert_eq!(b3.grid_import_nano, -nano(300_000, 300));
    assert_eq!(b3.total_nano, -nano(120_000, 200) - nano(300_000, 300));

    // Balances: 100 units each plus every bill.
    let start = 100 * NANOS_PER_UNIT;
    for h in 0..4 {
        let account = s.community.households[h].account.public();
        let billed: i128 = [one, two].iter().map(|r| bill(&r.bills, account).total_nano).sum();
        assert_eq!(s.balance(h), start + billed, "household {h}");
        assert_eq!(s.state.accounts[&account].reserved_nano, 0, "reservations are released");
    }
    assert_eq!(s.state.network_balance_nano, nano(20_000, 1_000));
    assert!(s.state.offers.is_empty() && s.state.contracts.is_empty());
    s.state.check_invariants().unwrap();
}

#[test]
fn replaying_the_chain_from_genesis_gives_the_same_states_and_receipts() {
    let (s, receipts) = run_scenario();
    let mut state = State::genesis(s.genesis());
    for (block, expected) in s.blocks.iter().zip(&receipts) {
        let (next, derived) = execute(s.genesis(), &state, block, Signatures::Verify).unwrap();
        assert_eq!(&derived, expected);
        assert_eq!(next.root(&s.genesis().community_id), block.header.state_root);
        state = next;
    }
    assert_eq!(state, s.state);
}

#[test]
fn tampered_blocks_are_invalid() {
    let (s, _) = run_scenario();
    let genesis = s.genesis();
    // The state before block 2 (offers) and block 3 (the clearing).
    let mut states = vec![State::genesis(genesis)];
    for block in &s.blocks {
        let next = execute(genesis, states.last().unwrap(), block, Signatures::Verify).unwrap().0;
        states.push(next);
    }
    let check = |height: usize, tamper: &dyn Fn(&mut Block), expected: &dyn Fn(&BlockError) -> bool| {
        let mut block = s.blocks[height - 1].clone();
        tamper(&mut block);
        let error = execute(genesis, &states[height - 1], &block, Signatures::Verify).unwrap_err();
        assert!(expected(&error), "block {height}: unexpected {error:?}");
    };
    check(2, &|b| b.header.timestamp_ms = T0, &|e| matches!(e, BlockError::TimeNotIncreasing { .. }));
    check(2, &|b| b.header.height = 3, &|e| matches!(e, BlockError::WrongHeight { .. }));
    check(2, &|b| b.header.previous_hash = Hash::ZERO, &|e| matches!(e, BlockError::WrongPrevious { .. }));
    check(2, &|b| b.header.state_root.0[0] ^= 1, &|e| matches!(e, BlockError::WrongStateRoot { .. }));
    check(2, &|b| b.header.proposer = PublicKey([1; 32]), &|e| matches!(e, BlockError::NotAValidator(_)));
    check(2, &|b| b.transactions.pop().map_or((), drop), &|e| matches!(e, BlockError::WrongTxRoot));
    check(2, &|b| b.transactions[5].signature.0[3] ^= 1, &|e| matches!(e, BlockError::WrongTxRoot));
    // A receipt changed and its root recomputed: re-execution derives the
    // original receipts, so the difference is found.
    check(
        3,
        &|b| {
            let Receipt::Clearing(clearing) = &mut b.receipts[0] else { panic!() };
            clearing.trades[0].energy_wh += 1;
            b.header.receipt_root = gridshare_ledger::block::receipt_root(&b.receipts);
        },
        &|e| matches!(e, BlockError::WrongReceipts),
    );
    check(3, &|b| b.receipts.clear(), &|e| matches!(e, BlockError::WrongReceipts));
}

#[test]
fn a_forged_signature_makes_a_block_invalid() {
    let (s, _) = run_scenario();
    let genesis = s.genesis();
    let state = execute(genesis, &State::genesis(genesis), &s.blocks[0], Signatures::Verify).unwrap().0;
    let mut block = s.blocks[1].clone();
    // Swap the offer's signature for one over other bytes, then fix the root:
    // only the signature check can catch it.
    block.transactions[5].signature = Keypair::from_seed([9; 32]).sign(b"something else");
    block.header.tx_root = gridshare_ledger::block::tx_root(&block.transactions);
    let error = execute(genesis, &state, &block, Signatures::Verify).unwrap_err();
    assert!(
        matches!(&error, BlockError::Inadmissible { index: 5, rejection, .. } if matches!(**rejection, Rejection::BadSignature(_))),
        "{error:?}"
    );
}

/// A registered community after block 1, for admission tests.
fn registered() -> Scenario {
    let mut s = Scenario::new();
    let registrations = s.community.registrations();
    s.block(registrations, T0 + 100);
    s
}

fn rejection(s: &Scenario, tx: &SignedTx, time_ms: u64) -> Rejection {
    let mut state = s.state.clone();
    let rejection = admit(s.genesis(), &mut state, time_ms, tx).unwrap_err();
    assert_eq!(state, s.state, "a rejected transaction changes nothing");
    rejection
}

#[test]
fn every_admission_rule_rejects_with_its_reason() {
    let mut s = registered();
    let t = T0 + 200;
    fn att(c: &TestCommunity, h: usize) -> gridshare_ledger::tx::SignedMeterReading {
        c.reading(h, 0, 0, 0)
    }
    let c = &s.community;
    let offer = |h, nonce, interval, side, energy, price| {
        c.offer_tx(h, nonce, interval, side, energy, price, att(c, h))
    };
    let is = |r: Rejection, expected: &dyn Fn(&Rejection) -> bool| assert!(expected(&r), "unexpected {r:?}");

    // Interval 0's gate closed at T0 − 500; interval 1's at T0 + 500.
    is(rejection(&s, &offer(0, 1, 0, Side::Sell, 100, 100_000), t), &|r| {
        matches!(r, Rejection::IntervalClosed { interval: 0, .. })
    });
    is(rejection(&s, &offer(0, 1, 500, Side::Sell, 100, 100_000), t), &|r| {
        matches!(r, Rejection::IntervalTooFarAhead { .. })
    });
    is(rejection(&s, &offer(0, 1, 5, Side::Sell, 0, 100_000), t), &|r| {
        matches!(r, Rejection::EnergyOutOfRange { .. })
    });
    // The test meters allow 7 MW, so that 1-second intervals hold 1944 Wh.
    is(rejection(&s, &offer(0, 1, 5, Side::Sell, 1_945, 100_000), t), &|r| {
        matches!(r, Rejection::EnergyAboveMeterLimit { limit_wh: 1_944, .. })
    });
    is(rejection(&s, &offer(0, 1, 5, Side::Sell, 100, 1_000_001), t), &|r| {
        matches!(r, Rejection::PriceOutOfRange { .. })
    });
    let poor = derived_key(99, 3, 0);
    is(rejection(&s, &offer(0, 0, 5, Side::Sell, 100, 100_000), t), &|r| {
        matches!(r, Rejection::StaleNonce { .. })
    });
    is(rejection(&s, &offer(0, 2, 5, Side::Sell, 100, 100_000), t), &|r| {
        matches!(r, Rejection::NonceGap { nonce: 2, expected: 1, .. })
    });
    let attestation_of_other = c.offer_tx(0, 1, 5, Side::Sell, 100, 100_000, att(c, 1));
    is(rejection(&s, &attestation_of_other, t), &|r| matches!(r, Rejection::ForeignMeter { .. }));
    let stale = c.offer_tx(0, 1, 50, Side::Sell, 100, 100_000, att(c, 0));
    is(rejection(&s, &stale, t), &|r| matches!(r, Rejection::StaleAttestation { max_age: 10, .. }));

    // One side per account and interval.
    let sell = offer(0, 1, 5, Side::Sell, 100, 100_000);
    let mut state = s.state.clone();
    admit(s.genesis(), &mut state, t, &sell).unwrap();
    let buy = offer(0, 2, 5, Side::Buy, 100, 100_000);
    let both = admit(s.genesis(), &mut state.clone(), t, &buy).unwrap_err();
    assert!(matches!(both, Rejection::BothSides { interval: 5, existing: Side::Sell }), "{both:?}");
    // Cancelling someone else's offer, or an unknown one.
    let id = sell.id(&s.genesis().community_id);
    // Household 0 used nonce 1 for its offer; household 1 none yet.
    let cancel = |h: usize, offer_id| {
        let nonce = if h == 0 { 2 } else { 1 };
        SignedTx::sign(
            Tx::CancelOffer { account: c.households[h].account.public(), nonce, offer_id },
            &c.households[h].account,
            &s.genesis().community_id,
        )
    };
    let not_yours = admit(s.genesis(), &mut state.clone(), t, &cancel(1, id)).unwrap_err();
    assert!(matches!(not_yours, Rejection::NotYourOffer { .. }), "{not_yours:?}");
    let unknown = admit(s.genesis(), &mut state.clone(), t, &cancel(0, Hash([7; 32]))).unwrap_err();
    assert!(matches!(unknown, Rejection::UnknownOffer(_)), "{unknown:?}");
    // Cancelling after the gate closed.
    let late = admit(s.genesis(), &mut state.clone(), T0 + 4_600, &cancel(0, id)).unwrap_err();
    assert!(matches!(late, Rejection::IntervalClosed { interval: 5, .. }), "{late:?}");
    admit(s.genesis(), &mut state, t, &cancel(0, id)).unwrap();
    assert!(state.offers.is_empty() && state.positions.is_empty());

    // Insufficient funds: debit everything, then bid.
    let account = s.community.households[2].account.public();
    let debit = s.community.registrar_tx(|registrar, nonce| Tx::Debit {
        registrar,
        nonce,
        account,
        amount_nano: 100 * NANOS_PER_UNIT,
        reference: "payout".into(),
    });
    let mut state = s.state.clone();
    admit(s.genesis(), &mut state, t, &debit).unwrap();
    let c = &s.community;
    let bid = c.offer_tx(2, 1, 5, Side::Buy, 1_000, 500_000, c.reading(2, 0, 0, 0));
    let funds = admit(s.genesis(), &mut state.clone(), t, &bid).unwrap_err();
    assert_eq!(funds, Rejection::InsufficientFunds { needed_nano: 500_000_000, available_nano: 0 });
    let overdraw = s.community.registrar_tx(|registrar, nonce| Tx::Debit {
        registrar,
        nonce,
        account,
        amount_nano: 1,
        reference: "again".into(),
    });
    assert!(matches!(admit(s.genesis(), &mut state, t, &overdraw), Err(Rejection::InsufficientFunds { .. })));

    // Registrar rules.
    let c = &s.community;
    let impostor = SignedTx::sign(
        Tx::RegisterAccount {
            registrar: poor.public(),
            nonce: 1,
            account: poor.public(),
            credit_limit_nano: 0,
        },
        &poor,
        &s.genesis().community_id,
    );
    is(rejection(&s, &impostor, t), &|r| matches!(r, Rejection::NotARegistrar(_)));
    let replay = s.blocks[0].transactions[0].clone();
    is(rejection(&s, &replay, t), &|r| matches!(r, Rejection::StaleNonce { .. }));
    let unknown_account = c.offer_tx(0, 1, 5, Side::Sell, 100, 100_000, att(c, 0)).tx.clone();
    let Tx::Offer(mut unknown_offer) = unknown_account else { panic!() };
    unknown_offer.account = poor.public();
    let unknown_offer = SignedTx::sign(Tx::Offer(unknown_offer), &poor, &s.genesis().community_id);
    is(rejection(&s, &unknown_offer, t), &|r| matches!(r, Rejection::UnknownAccount(_)));
}

#[test]
fn meter_readings_must_increase_and_never_go_down() {
    let mut s = registered();
    let c = &s.community;
    is_reading(&s, &c.reading_tx(0, 5, 0, 0), T0 + 200, "ends at");
    let first = c.reading_tx(0, 0, 1_000, 2_000);
    let t = T0 + 1_100;
    s.block(vec![first], t);
    let c = &s.community;
    is_reading(&s, &c.reading_tx(0, 0, 1_000, 2_000), t + 1, "is not after its last reading");
    is_reading(&s, &c.reading_tx(0, 0, 1_000, 1_999).clone(), t + 1, "is not after");
    is_reading(&s, &c.reading_tx(0, 1, 999, 2_000), T0 + 2_100, "import register went down");
    is_reading(&s, &c.reading_tx(0, 1, 1_000, 1_999), T0 + 2_100, "export register went down");
    let unknown = derived_key(5, 4, 77);
    let foreign = SignedTx {
        tx: Tx::MeterReading(gridshare_ledger::tx::MeterReading {
            meter: unknown.public(),
            interval: 0,
            import_wh_total: 0,
            export_wh_total: 0,
        }),
        signature: unknown.sign(b"x"),
    };
    is_reading(&s, &foreign, t, "is not registered");
}

fn is_reading(s: &Scenario, tx: &SignedTx, time_ms: u64, expected: &str) {
    let message = rejection(s, tx, time_ms).to_string();
    assert!(message.contains(expected), "{message:?} does not say {expected:?}");
}

// Protocol version 2: meters obey physics, every interval is settled, and
// an interval without a reading is billed at the meter's import capacity.

/// The test meters' capacity in a 1-second interval: 7 MW × 1 s × 1.05.
const CAPACITY_WH: u64 = 2_041;
/// The test tariffs: import 0.30, feed-in 0.08 per kWh.
const IMPORT: i128 = 300_000;
const FEED_IN: i128 = 80_000;

/// The bill of household `h` in the settlement of `interval` among `receipts`.
fn bill_of(s: &Scenario, receipts: &[Receipt], interval: u64, h: usize) -> Bill {
    let account = s.community.households[h].account.public();
    receipts
        .iter()
        .find_map(|receipt| match receipt {
            Receipt::Settlement(settlement) if settlement.interval == interval => {
                settlement.bills.iter().find(|bill| bill.account == account).copied()
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no bill of household {h} for interval {interval} in {receipts:?}"))
}

fn meter_of(s: &Scenario, h: usize) -> &gridshare_ledger::state::Meter {
    &s.state.meters[&s.community.households[h].meter.public()]
}

#[test]
fn the_capacity_of_the_test_meters_is_computed_as_specified() {
    let s = Scenario::new();
    // ⌊7,000,000 W × 1,000 ms × 1,050 / 3,600,000,000⌋ = ⌊2041.67⌋.
    assert_eq!(s.genesis().meter_capacity_wh(7_000_000), CAPACITY_WH);
    assert_eq!(s.genesis().meter_capacity_wh(0), 0);
}

/// Household 0 reports intervals 0, 2 and 5 only; the others report every
/// interval with nothing imported or exported. The tariffs change from
/// interval 4 on (feed-in 0.04, import 0.20), inside household 0's second
/// gap. Household 3 registers a second meter late.
#[test]
fn estimates_gaps_refunds_and_a_tariff_change_are_billed_as_computed_by_hand() {
    let mut s = registered();
    let c = &s.community;
    let zero = |s: &Scenario, h: usize, interval: u64| s.community.reading_tx(h, interval, 0, 0);
    let mut txs = vec![c.reading_tx(0, 0, 5_000, 2_000)];
    txs.extend((1..4).map(|h| zero(&s, h, 0)));
    let tariffs = gridshare_ledger::genesis::Tariffs {
        effective_from_interval: 4,
        grid_import_micro_per_kwh: 200_000,
        grid_feed_in_micro_per_kwh: 40_000,
        network_fee_micro_per_kwh: 20_000,
    };
    txs.push(s.community.registrar_tx(|registrar, nonce| Tx::SetTariffs { registrar, nonce, tariffs }));
    s.block(txs, T0 + 1_050);
    // Interval 1: household 0 is silent.
    let txs = (1..4).map(|h| zero(&s, h, 1)).collect();
    s.block(txs, T0 + 2_050);
    // Interval 2: household 0 reports 300 Wh imported and 100 Wh exported
    // since interval 0.
    let mut txs = vec![s.community.reading_tx(0, 2, 5_300, 2_100)];
    txs.extend((1..4).map(|h| zero(&s, h, 2)));
    let receipts = s.block(txs, T0 + 3_050);

    // Interval 0 settled: the meters were registered in it, nobody is
    // billed, and the readings became the bases.
    assert!(receipts.is_empty(), "{receipts:?}");
    assert_eq!(meter_of(&s, 0).base.map(|base| base.interval), Some(0));
    assert_eq!(s.state.next_settlement_interval, 1);

    let receipts = s.block((1..4).map(|h| zero(&s, h, 3)).collect(), T0 + 4_050);
    // Interval 1: household 0 is billed its meter's full import capacity.
    let b = bill_of(&s, &receipts, 1, 0);
    let capacity = i128::from(CAPACITY_WH);
    assert_eq!((b.metered_net_export_wh, b.estimated_import_wh), (-2_041, CAPACITY_WH));
    assert_eq!((b.grid_import_wh, b.grid_import_nano), (CAPACITY_WH, -capacity * IMPORT));
    assert_eq!((b.estimate_refund_wh, b.estimate_refund_nano, b.total_nano), (0, 0, -capacity * IMPORT));
    let estimate = meter_of(&s, 0).estimate.unwrap();
    assert_eq!((estimate.import_wh, estimate.rate_micro_per_kwh), (CAPACITY_WH, 80_000));
    // The others measured nothing: billed zero, not estimated.
    let b1 = bill_of(&s, &receipts, 1, 1);
    assert_eq!((b1.metered_net_export_wh, b1.estimated_import_wh, b1.total_nano), (0, 0, 0));

    let receipts = s.block((1..4).map(|h| zero(&s, h, 4)).collect(), T0 + 5_050);
    // Interval 2 closes the gap: estimated like interval 1, then trued up.
    // The estimate is 2 × 2041 = 4082 Wh; the meter moved 300 Wh in and
    // 100 Wh out, so R = min(4082, 4082 + 100 − 300) = 3882 Wh, refunded at
    // min(0.08, 0.30).
    let b = bill_of(&s, &receipts, 2, 0);
    assert_eq!((b.metered_net_export_wh, b.estimated_import_wh), (-2_041, CAPACITY_WH));
    assert_eq!((b.estimate_refund_wh, b.estimate_refund_nano), (3_882, 3_882 * FEED_IN));
    assert_eq!(b.total_nano, -capacity * IMPORT + 3_882 * FEED_IN);
    assert_eq!(meter_of(&s, 0).estimate, None);
    assert_eq!(meter_of(&s, 0).base.map(|base| (base.interval, base.import_wh_total)), Some((2, 5_300)));
    // Over intervals 1 and 2 it paid 2 × 2041 Wh at 0.30 less 3882 Wh at
    // 0.08; an honest meter would have paid at most 300 Wh at 0.30.
    let withheld = 2 * -capacity * IMPORT + 3_882 * FEED_IN;
    assert!(withheld < -300 * IMPORT, "{withheld}");

    // Intervals 3 and 4 are estimated (tariffs change from interval 4 on),
    // interval 5 closes the gap: 3 × 2041 = 6123 Wh estimated, 1000 Wh
    // imported, 500 Wh exported, refunded at the lowest rate of the gap,
    // min(0.08, 0.30, 0.04, 0.20) = 0.04.
    let mut txs: Vec<SignedTx> = (1..4).map(|h| zero(&s, h, 5)).collect();
    txs.push(s.community.reading_tx(0, 5, 6_300, 2_600));
    let mut receipts = s.block(txs, T0 + 6_050);
    // Intervals 4 and 5 settle (interval 6 not yet).
    receipts.extend(s.block(Vec::new(), T0 + 7_600));
    assert_eq!(s.state.next_settlement_interval, 6);
    let b3 = bill_of(&s, &receipts, 3, 0);
    assert_eq!((b3.estimated_import_wh, b3.grid_import_nano), (CAPACITY_WH, -capacity * IMPORT));
    let b4 = bill_of(&s, &receipts, 4, 0);
    assert_eq!((b4.estimated_import_wh, b4.grid_import_nano), (CAPACITY_WH, -capacity * 200_000));
    let b5 = bill_of(&s, &receipts, 5, 0);
    let refund_wh = 3 * 2_041 + 500 - 1_000;
    assert_eq!((b5.estimate_refund_wh, b5.estimate_refund_nano), (5_623, 5_623 * 40_000));
    assert_eq!(refund_wh, 5_623);
    assert_eq!(b5.total_nano, -capacity * 200_000 + 5_623 * 40_000);

    // The balance is the deposit plus every bill: the grid paid the refunds.
    let billed: i128 = [1, 2, 3, 4, 5]
        .iter()
        .map(|&interval| {
            let all: Vec<Receipt> = s.blocks.iter().flat_map(|block| block.receipts.clone()).collect();
            bill_of(&s, &all, interval, 0).total_nano
        })
        .sum();
    assert_eq!(s.balance(0), 100 * NANOS_PER_UNIT + billed);
    s.state.check_invariants().unwrap();
}

#[test]
fn a_meter_is_estimated_without_refund_until_its_first_reading() {
    let mut s = registered();
    // Household 0 reports nothing until interval 2; household 1 reports
    // every interval and is billed exactly.
    let mut receipts = Vec::new();
    for interval in 0..4 {
        let mut txs = vec![s.community.reading_tx(1, interval, 10 * interval, 0)];
        if interval >= 2 {
            txs.push(s.community.reading_tx(0, interval, 1_000 + 100 * interval, 0));
        }
        receipts.extend(s.block(txs, T0 + 1_050 + 1_000 * interval));
    }
    receipts.extend(s.block(Vec::new(), T0 + 5_600));
    assert_eq!(s.state.next_settlement_interval, 4);
    // Interval 1: no base, so an estimate with nothing to refund it against.
    let b1 = bill_of(&s, &receipts, 1, 0);
    assert_eq!((b1.metered_net_export_wh, b1.estimated_import_wh), (-2_041, CAPACITY_WH));
    // Interval 2: its first reading (of unknown registers before) only
    // becomes the base; the interval is still estimated, and nothing is
    // refunded.
    let b2 = bill_of(&s, &receipts, 2, 0);
    assert_eq!((b2.estimated_import_wh, b2.estimate_refund_wh, b2.estimate_refund_nano), (CAPACITY_WH, 0, 0));
    // Interval 3: measured from the base, 100 Wh imported.
    let b3 = bill_of(&s, &receipts, 3, 0);
    assert_eq!((b3.metered_net_export_wh, b3.estimated_import_wh, b3.grid_import_wh), (-100, 0, 100));
    // Household 1 reported from its registration on: exact from interval 1.
    for interval in 1..4 {
        let b = bill_of(&s, &receipts, interval, 1);
        assert_eq!((b.metered_net_export_wh, b.estimated_import_wh), (-10, 0), "interval {interval}");
    }
    // Households 2 and 3 never report: every interval estimated.
    assert_eq!(bill_of(&s, &receipts, 3, 2).estimated_import_wh, CAPACITY_WH);
    assert_eq!(meter_of(&s, 2).base, None);
    assert_eq!(meter_of(&s, 2).estimate, None);
}

/// After a stall, the first block comes when interval 1 is already due for
/// settlement, and carries the readings of interval 1 the households sent on
/// time: settlement runs after the block's transactions, so they count.
#[test]
fn readings_in_the_block_that_settles_their_interval_count() {
    let mut s = registered();
    let zero = |s: &Scenario, h: usize, interval: u64| s.community.reading_tx(h, interval, 0, 0);
    s.block((0..4).map(|h| zero(&s, h, 0)).collect(), T0 + 1_050);
    // No block from T0 + 1,050 until after settle(1) = T0 + 3,500.
    let mut txs = vec![s.community.reading_tx(0, 1, 400, 100)];
    txs.extend((1..4).map(|h| zero(&s, h, 1)));
    let receipts = s.block(txs, T0 + 3_600);
    assert_eq!(s.state.next_settlement_interval, 2);
    let b = bill_of(&s, &receipts, 1, 0);
    assert_eq!((b.metered_net_export_wh, b.estimated_import_wh, b.grid_import_wh), (-300, 0, 300));
    assert_eq!(meter_of(&s, 0).base.map(|base| base.interval), Some(1));
    assert_eq!(meter_of(&s, 0).estimate, None);
    // The block replays to the same state.
    let (replayed, _) =
        execute(s.genesis(), &State::genesis(s.genesis()), &s.blocks[0], Signatures::Verify).unwrap();
    let mut state = replayed;
    for block in &s.blocks[1..] {
        state = execute(s.genesis(), &state, block, Signatures::Verify).unwrap().0;
    }
    assert_eq!(state, s.state);
}

#[test]
fn a_reading_before_the_meters_registration_is_refused() {
    let mut s = registered();
    // A second meter for household 0, registered in interval 3.
    let late = derived_key(7, 9, 0);
    let (owner, meter) = (s.community.households[0].account.public(), late.public());
    let register = s.community.registrar_tx(|registrar, nonce| Tx::RegisterMeter {
        registrar,
        nonce,
        meter,
        owner,
        max_import_w: 5_000,
        max_export_w: 5_000,
        zone: "main".into(),
    });
    s.block(vec![register], T0 + 3_200);
    assert_eq!(s.state.meters[&meter].registered_interval, 3);
    let reading = |interval| {
        let reading =
            gridshare_ledger::tx::MeterReading { meter, interval, import_wh_total: 0, export_wh_total: 0 };
        let signed =
            gridshare_ledger::tx::SignedMeterReading::sign(reading, &late, &s.genesis().community_id);
        SignedTx { tx: Tx::MeterReading(reading), signature: signed.signature }
    };
    let refused = rejection(&s, &reading(2), T0 + 4_100);
    assert_eq!(
        refused,
        Rejection::ReadingBeforeRegistration { meter, interval: 2, registered_interval: 3 },
        "{refused}"
    );
    assert_eq!(refused.code(), "reading_before_registration");
    let mut state = s.state.clone();
    admit(s.genesis(), &mut state, T0 + 4_100, &reading(3)).unwrap();
}

#[test]
fn a_register_may_rise_by_the_meters_capacity_per_interval_and_not_one_wh_more() {
    let mut s = registered();
    s.block(vec![s.community.reading_tx(0, 0, 1_000, 500)], T0 + 1_050);
    let t = T0 + 5_100;
    let check = |interval: u64, import: u64, export: u64| {
        let mut state = s.state.clone();
        admit(s.genesis(), &mut state, t, &s.community.reading_tx(0, interval, import, export))
    };
    // One interval later: exactly the capacity, then one Wh more.
    assert_eq!(check(1, 1_000 + CAPACITY_WH, 500 + CAPACITY_WH), Ok(()));
    let meter = s.community.households[0].meter.public();
    assert_eq!(
        check(1, 1_000 + CAPACITY_WH + 1, 500),
        Err(Rejection::ReadingAboveCapacity {
            meter,
            register: "import",
            increase_wh: CAPACITY_WH + 1,
            intervals: 1,
            power_w: 7_000_000,
            bound_wh: 2_041,
        })
    );
    let above = check(1, 1_000, 500 + CAPACITY_WH + 1).unwrap_err();
    assert!(matches!(above, Rejection::ReadingAboveCapacity { register: "export", .. }), "{above:?}");
    assert_eq!(above.code(), "reading_above_capacity");
    // Three intervals later: three times the capacity.
    assert_eq!(check(3, 1_000 + 3 * CAPACITY_WH, 500), Ok(()));
    assert!(matches!(
        check(3, 1_000 + 3 * CAPACITY_WH + 1, 500),
        Err(Rejection::ReadingAboveCapacity { .. })
    ));
}

/// The attack that halted protocol 1 for good: 0 kWh for interval k, then
/// 9,300,000,000,000,000 kWh for interval k + 1.
#[test]
fn a_reading_no_meter_could_make_is_refused_and_the_chain_keeps_settling() {
    let market = gridshare_ledger::genesis::MarketParams { interval_length_ms: 10_000, ..test_market() };
    let mut community = TestCommunity::new(8, 1, market, T0);
    let validator = LocalValidator { keypair: Keypair::from_seed(community.validator.seed()) };
    let (account, meter) = (community.households[0].account.public(), community.households[0].meter.public());
    let mut txs = vec![community.registrar_tx(|registrar, nonce| Tx::RegisterAccount {
        registrar,
        nonce,
        account,
        credit_limit_nano: 0,
    })];
    // The README's meter: 11 kW in, 7 kW out.
    txs.push(community.registrar_tx(|registrar, nonce| Tx::RegisterMeter {
        registrar,
        nonce,
        meter,
        owner: account,
        max_import_w: 11_000,
        max_export_w: 7_000,
        zone: "main".into(),
    }));
    let genesis = community.genesis.clone();
    let mut state = State::genesis(&genesis);
    let produce = |state: &mut State, txs, time_ms| {
        let (_, built) = validator.produce(&genesis, state, txs, time_ms).unwrap();
        *state = built.state;
        (built.block.receipts, built.left_out)
    };
    produce(&mut state, txs, T0 + 100);
    let (_, left_out) = produce(&mut state, vec![community.reading_tx(0, 0, 0, 0)], T0 + 10_100);
    assert!(left_out.is_empty());
    let attack = community.reading_tx(0, 1, 9_300_000_000_000_000_000, 0);
    let (_, left_out) = produce(&mut state, vec![attack], T0 + 20_100);
    let [(_, rejection)] = &left_out[..] else { panic!("{left_out:?}") };
    assert_eq!(
        rejection.to_string(),
        format!(
            "meter {meter}: the import register rose 9300000000000000000 Wh in 1 interval(s); its 11000 W allow at most 32 Wh"
        )
    );
    // The chain goes on: the interval is estimated, the next ones measured.
    let mut settled = Vec::new();
    for interval in 2..6 {
        let (receipts, left_out) = produce(
            &mut state,
            vec![community.reading_tx(0, interval, 10 * interval, 0)],
            T0 + 100 + 10_000 * (interval + 1),
        );
        assert!(left_out.is_empty(), "{left_out:?}");
        settled.extend(receipts);
    }
    let bills: Vec<(u64, i64, u64)> = settled
        .iter()
        .filter_map(|receipt| match receipt {
            Receipt::Settlement(settlement) => Some((
                settlement.interval,
                settlement.bills[0].metered_net_export_wh,
                settlement.bills[0].estimated_import_wh,
            )),
            Receipt::Clearing(_) => None,
        })
        .collect();
    // Interval 1 without its reading: 32 Wh estimated; interval 2 closes
    // the gap (estimated, then 44 Wh refunded); 3 and 4 measured.
    assert_eq!(bills, vec![(1, -32, 32), (2, -32, 32), (3, -10, 0), (4, -10, 0)]);
    let refund = settled.iter().find_map(|receipt| match receipt {
        Receipt::Settlement(settlement) if settlement.interval == 2 => Some(settlement.bills[0]),
        _ => None,
    });
    let refund = refund.map(|bill| (bill.estimate_refund_wh, bill.estimate_refund_nano));
    assert_eq!(refund, Some((44, 44 * FEED_IN)));
    state.check_invariants().unwrap();
}

#[test]
fn registrations_and_credits_beyond_the_bounds_are_refused() {
    use gridshare_ledger::execute::{
        ACCOUNT_POWER_MAX_W, CREDITS_TOTAL_MAX_NANO, METER_POWER_MAX_W, METERS_MAX,
    };
    let s = registered();
    let owner = s.community.households[0].account.public();
    let t = T0 + 200;
    // Registrar transactions with explicit nonces: each is admitted (or
    // refused) on a state whose registrar nonce is known.
    let registrar = s.community.registrar.public();
    let sign = |s: &Scenario, tx: Tx| SignedTx::sign(tx, &s.community.registrar, &s.genesis().community_id);
    let next_nonce = |state: &State| state.registrar_nonces.get(&registrar).copied().unwrap_or(0) + 1;
    let register = |s: &Scenario, state: &State, index: u32, import: u64, export: u64| {
        let meter = derived_key(7, 9, index).public();
        let tx = Tx::RegisterMeter {
            registrar,
            nonce: next_nonce(state),
            meter,
            owner,
            max_import_w: import,
            max_export_w: export,
            zone: "main".into(),
        };
        (meter, sign(s, tx))
    };
    // A meter of 1 GW is admitted, one W more is not.
    let (meter, tx) = register(&s, &s.state, 0, METER_POWER_MAX_W + 1, 0);
    let refused = rejection(&s, &tx, t);
    assert_eq!(
        refused,
        Rejection::MeterPowerAboveBound {
            meter,
            direction: "import",
            power_w: 1_000_000_001,
            max_w: 1_000_000_000
        }
    );
    assert_eq!(refused.code(), "meter_power_above_bound");
    let (_, tx) = register(&s, &s.state, 0, 0, METER_POWER_MAX_W + 1);
    assert!(matches!(rejection(&s, &tx, t), Rejection::MeterPowerAboveBound { direction: "export", .. }));

    // An account's meters add up to at most 10 GW per direction: it has
    // 7 MW already, then nine meters of 1 GW fit, and a tenth of 1 GW less
    // 7 MW fits for import but not with one W more for export.
    let mut state = s.state.clone();
    for index in 1..=9 {
        let (_, tx) = register(&s, &state, index, METER_POWER_MAX_W, METER_POWER_MAX_W);
        admit(s.genesis(), &mut state, t, &tx).unwrap();
    }
    let rest = METER_POWER_MAX_W - 7_000_000;
    let (_, tx) = register(&s, &state, 10, rest, rest + 1);
    let refused = admit(s.genesis(), &mut state.clone(), t, &tx).unwrap_err();
    assert_eq!(
        refused,
        Rejection::AccountPowerAboveBound {
            account: owner,
            direction: "export",
            power_w: u128::from(ACCOUNT_POWER_MAX_W) + 1,
            max_w: ACCOUNT_POWER_MAX_W,
        }
    );
    assert_eq!(refused.code(), "account_power_above_bound");
    let (_, tx) = register(&s, &state, 10, rest, rest);
    admit(s.genesis(), &mut state, t, &tx).unwrap();
    assert_eq!(state.accounts[&owner].max_import_w, ACCOUNT_POWER_MAX_W);

    // Credits: at most 10^36 nano in total, ever.
    let credit = |s: &Scenario, state: &State, amount_nano| {
        let nonce = next_nonce(state);
        sign(s, Tx::Credit { registrar, nonce, account: owner, amount_nano, reference: String::new() })
    };
    let limit: i128 = 1_000_000_000_000_000_000_000_000_000_000;
    let mut state = s.state.clone();
    state.credits_nano = CREDITS_TOTAL_MAX_NANO - limit;
    let tx = credit(&s, &state, limit);
    admit(s.genesis(), &mut state, t, &tx).unwrap();
    assert_eq!(state.credits_nano, CREDITS_TOTAL_MAX_NANO);
    let refused = admit(s.genesis(), &mut state.clone(), t, &credit(&s, &state, 1)).unwrap_err();
    assert_eq!(
        refused,
        Rejection::CreditsAboveBound {
            amount_nano: 1,
            credits_nano: CREDITS_TOTAL_MAX_NANO + 1,
            max_nano: CREDITS_TOTAL_MAX_NANO
        }
    );
    assert_eq!(refused.code(), "credits_above_bound");

    // At most 2^14 meters: the state is filled directly (registering them
    // one by one would take a while), then one more is refused.
    let mut state = s.state.clone();
    let template = state.meters.values().next().unwrap().clone();
    let mut key = [0_u8; 32];
    while state.meters.len() < METERS_MAX {
        let index = u32::try_from(state.meters.len()).unwrap();
        key[..4].copy_from_slice(&index.to_le_bytes());
        state.meters.insert(PublicKey(key), template.clone());
    }
    let (_, tx) = register(&s, &state, 11, 1, 1);
    let refused = admit(s.genesis(), &mut state, t, &tx).unwrap_err();
    assert_eq!(refused, Rejection::TooManyMeters { max: 1 << 14 });
    assert_eq!(refused.code(), "too_many_meters");
}

#[test]
fn no_block_is_later_than_the_communitys_lifetime() {
    use gridshare_ledger::execute::LIFETIME_MS;
    let s = registered();
    let validator = &s.validator;
    let end = T0 + LIFETIME_MS;
    let error = validator.produce(s.genesis(), &s.state, Vec::new(), end + 1).unwrap_err();
    assert_eq!(error, BlockError::BeyondLifetime { end, found: end + 1 });
    // At the very end a block is still valid: settlement catches up in
    // bounded steps, a block at a time.
    let (_, built) = validator.produce(s.genesis(), &s.state, Vec::new(), end).unwrap();
    let settled = built.state.next_settlement_interval;
    assert!(settled > 0 && settled < s.genesis().interval_at(end), "{settled}");
    built.state.check_invariants().unwrap();
}

/// The largest refund the bounds allow: a 1 GW meter with a 100 %
/// tolerance in 24-hour intervals, estimated from interval 1 to the last
/// interval of the community's lifetime and then trued up by a reading that
/// shows it exported at full power all along, at tariffs of 1000 per kWh.
/// Walking 13 million intervals block by block would take hours, so the
/// state before the last settlement is built directly: it is the state
/// those blocks would leave.
#[test]
fn the_largest_refund_the_lifetime_allows_fits() {
    use gridshare_ledger::execute::{LIFETIME_MS, METER_POWER_MAX_W};
    use gridshare_ledger::genesis::{MarketParams, PRICE_MAX_MICRO_PER_KWH, Tariffs};
    use gridshare_ledger::state::{Account, Estimate, Meter};
    use gridshare_ledger::tx::MeterReading;
    let market = MarketParams {
        interval_length_ms: 86_400_000,
        gate_closure_lead_ms: 0,
        settlement_delay_ms: 0,
        meter_tolerance_permille: 1_000,
        ..test_market()
    };
    let mut community = TestCommunity::new(9, 1, market, T0);
    community.genesis.tariffs = Tariffs {
        effective_from_interval: 0,
        grid_import_micro_per_kwh: PRICE_MAX_MICRO_PER_KWH,
        grid_feed_in_micro_per_kwh: PRICE_MAX_MICRO_PER_KWH,
        network_fee_micro_per_kwh: PRICE_MAX_MICRO_PER_KWH,
    };
    let genesis = community.genesis.clone();
    genesis.validate().unwrap();
    let capacity_wh = genesis.meter_capacity_wh(METER_POWER_MAX_W);
    assert_eq!(capacity_wh, 48_000_000_000);
    let end = T0 + LIFETIME_MS;
    let last = genesis.interval_at(end) - 1;
    assert_eq!(last, 13_031_247);

    let (account, meter) = (community.households[0].account.public(), community.households[0].meter.public());
    let reading =
        |interval, export_wh_total| MeterReading { meter, interval, import_wh_total: 0, export_wh_total };
    let mut state = State::genesis(&genesis);
    state.last_timestamp_ms = end - 1;
    state.accounts.insert(
        account,
        Account {
            balance_nano: 0,
            reserved_nano: 0,
            credit_limit_nano: 0,
            last_nonce: 0,
            open_offers: 0,
            max_import_w: METER_POWER_MAX_W,
            max_export_w: METER_POWER_MAX_W,
            zone: Some(0),
        },
    );
    let exported = last * capacity_wh;
    state.meters.insert(
        meter,
        Meter {
            owner: account,
            max_import_w: METER_POWER_MAX_W,
            max_export_w: METER_POWER_MAX_W,
            zone: "main".into(),
            last_reading: Some(reading(last, exported)),
            registered_interval: 0,
            base: Some(reading(0, 0)),
            estimate: Some(Estimate {
                import_wh: (last - 1) * capacity_wh,
                rate_micro_per_kwh: PRICE_MAX_MICRO_PER_KWH,
            }),
        },
    );
    state.readings.insert((last, meter), (0, exported));
    state.next_clearing_interval = last;
    state.next_settlement_interval = last;
    state.check_invariants().unwrap();

    let validator = LocalValidator { keypair: Keypair::from_seed(community.validator.seed()) };
    let (_, built) = validator.produce(&genesis, &state, Vec::new(), end).unwrap();
    let [Receipt::Settlement(settlement)] = &built.block.receipts[..] else {
        panic!("{:?}", built.block.receipts)
    };
    let bill = settlement.bills[0];
    // The whole estimate, 13,031,247 × 48·10⁹ Wh ≈ 6.3·10¹⁷ Wh, comes back at
    // 1000 per kWh: ≈ 6.3·10²⁶ nano.
    let refund_wh = last * capacity_wh;
    assert_eq!((bill.estimated_import_wh, bill.estimate_refund_wh), (capacity_wh, refund_wh));
    let price = i128::from(PRICE_MAX_MICRO_PER_KWH);
    assert_eq!(bill.estimate_refund_nano, i128::from(refund_wh) * price);
    assert_eq!(bill.total_nano, i128::from(refund_wh) * price - i128::from(capacity_wh) * price);
    assert_eq!(built.state.accounts[&account].balance_nano, bill.total_nano);
    let (next, receipts) = execute(&genesis, &state, &built.block, Signatures::Verify).unwrap();
    assert_eq!((next, receipts), (built.state, built.block.receipts));
}

/// Tariffs change only for an interval still open for offers; the schedule
/// holds at most `TARIFF_SCHEDULE_MAX` entries, and an entry no interval
/// left to settle uses is dropped when the schedule changes.
#[test]
fn tariffs_change_only_ahead_and_their_schedule_is_bounded() {
    use gridshare_ledger::execute::TARIFF_SCHEDULE_MAX;
    use gridshare_ledger::genesis::Tariffs;
    let s = registered();
    let genesis = s.genesis().clone();
    let registrar = &s.community.registrar;
    let tariffs = |effective_from_interval, grid_import_micro_per_kwh| Tariffs {
        effective_from_interval,
        grid_import_micro_per_kwh,
        grid_feed_in_micro_per_kwh: 50_000,
        network_fee_micro_per_kwh: 10_000,
    };
    // The registrar's next transaction on `state`.
    let set = |state: &State, tariffs: Tariffs| {
        let nonce = state.registrar_nonces.get(&registrar.public()).copied().unwrap_or(0) + 1;
        let tx = Tx::SetTariffs { registrar: registrar.public(), nonce, tariffs };
        SignedTx::sign(tx, registrar, &genesis.community_id)
    };
    // Interval 3 closes at T0 + 2_500: a change for it is refused from then
    // on, and taken just before.
    let gate = genesis.gate_closure_ms(3).unwrap();
    let mut state = s.state.clone();
    let late = set(&state, tariffs(3, 300_000));
    let refused = admit(&genesis, &mut state, gate, &late).unwrap_err();
    assert!(matches!(refused, Rejection::TariffsNotInFuture { effective_from: 3, .. }), "{refused:?}");
    assert_eq!(state, s.state, "a rejected transaction changes nothing");
    admit(&genesis, &mut state, gate - 1, &late).unwrap();
    assert_eq!(state.tariffs_for(3).grid_import_micro_per_kwh, 300_000);
    assert_eq!(state.tariffs_for(2), s.state.tariffs_for(2), "earlier intervals keep theirs");

    // A schedule of every interval ahead fills up, then refuses the next.
    let first = 10;
    let time = genesis.gate_closure_ms(first).unwrap() - 1;
    let entries = u64::try_from(TARIFF_SCHEDULE_MAX).unwrap();
    for interval in first..first + entries - 2 {
        let tx = set(&state, tariffs(interval, interval));
        admit(&genesis, &mut state, time, &tx).unwrap();
    }
    assert_eq!(state.tariffs.len(), TARIFF_SCHEDULE_MAX, "the genesis entry, interval 3's and those to come");
    let one_more = set(&state, tariffs(first + entries, 1));
    let full = admit(&genesis, &mut state.clone(), time, &one_more).unwrap_err();
    assert!(matches!(full, Rejection::TariffScheduleFull), "{full:?}");
    // A change from an interval already scheduled replaces the rest of the
    // schedule, so it is taken.
    let replace = set(&state, tariffs(first + 5, 7));
    admit(&genesis, &mut state, time, &replace).unwrap();
    assert_eq!(state.tariffs.len(), 8, "the genesis entry, 3, 10 to 14, and 15 on");
    assert_eq!(state.tariffs_for(first + 100).grid_import_micro_per_kwh, 7);

    // Once intervals settle, what they used is dropped at the next change.
    state.next_settlement_interval = first + 3;
    let later = set(&state, tariffs(first + 50, 9));
    admit(&genesis, &mut state, time, &later).unwrap();
    let kept: Vec<u64> = state.tariffs.iter().map(|entry| entry.effective_from_interval).collect();
    assert_eq!(
        kept,
        [first + 3, first + 4, first + 5, first + 50],
        "the one in force at 13 and the changes after"
    );
    assert_eq!(state.tariffs_for(first + 3).grid_import_micro_per_kwh, first + 3);
}

/// An interval's own tariffs (`SetIntervalTariffs`) replace the schedule's
/// parts they set for that interval alone, come from a registrar or a DSO
/// only, an entry that sets nothing removes one, their count is bounded,
/// and settling an interval drops its entry (its tariffs are in the receipt).
#[test]
fn interval_tariffs_replace_the_schedule_for_their_interval_alone_and_are_bounded() {
    use gridshare_ledger::execute::INTERVAL_TARIFFS_MAX;
    use gridshare_ledger::genesis::IntervalTariffs;
    let mut s = registered();
    let genesis = s.genesis().clone();
    let t = genesis.gate_closure_ms(5).unwrap() - 1;
    let state = {
        let (registrar, dso) = (&s.community.registrar, &s.community.dso);
        let set = |state: &State, signer: &Keypair, first_interval, tariffs: Vec<IntervalTariffs>| {
            let nonce = state.registrar_nonces.get(&signer.public()).copied().unwrap_or(0) + 1;
            let tx = Tx::SetIntervalTariffs { signer: signer.public(), nonce, first_interval, tariffs };
            SignedTx::sign(tx, signer, &genesis.community_id)
        };
        let import =
            |micro| IntervalTariffs { grid_import_micro_per_kwh: Some(micro), ..IntervalTariffs::default() };
        let schedule = s.state.tariffs_for(5);

        // A household may not; the DSO and the registrar may.
        let household = &s.community.households[0].account;
        let refused = rejection(&s, &set(&s.state, household, 5, vec![import(1)]), t);
        assert!(matches!(refused, Rejection::NotATariffSetter(_)), "{refused:?}");
        let mut state = s.state.clone();
        let tx = set(&state, dso, 5, vec![import(300_000), IntervalTariffs::default()]);
        admit(&genesis, &mut state, t, &tx).unwrap();
        let fee = IntervalTariffs { network_fee_micro_per_kwh: Some(1), ..IntervalTariffs::default() };
        let tx = set(&state, registrar, 6, vec![fee]);
        admit(&genesis, &mut state, t, &tx).unwrap();
        let five = state.tariffs_for(5);
        assert_eq!(
            (five.effective_from_interval, five.grid_import_micro_per_kwh, five.grid_feed_in_micro_per_kwh),
            (5, 300_000, schedule.grid_feed_in_micro_per_kwh),
            "interval 5's import tariff, the schedule's feed-in"
        );
        assert_eq!(state.tariffs_for(6).network_fee_micro_per_kwh, 1);
        assert_eq!(state.tariffs_for(4), s.state.tariffs_for(4), "the intervals around keep the schedule's");
        assert_eq!(state.tariffs_for(7), s.state.tariffs_for(7));
        // An entry that sets nothing removes the interval's.
        let tx = set(&state, dso, 6, vec![IntervalTariffs::default()]);
        admit(&genesis, &mut state, t, &tx).unwrap();
        assert_eq!(state.tariffs_for(6), s.state.tariffs_for(6));
        assert_eq!(state.interval_tariffs.keys().copied().collect::<Vec<_>>(), [5]);

        // The bound: one short of it, two new entries are refused, one taken,
        // and a replacement of a held one always.
        let mut full = state.clone();
        for interval in 0..u64::try_from(INTERVAL_TARIFFS_MAX).unwrap() - 2 {
            full.interval_tariffs.insert(1_000_000 + interval, import(2));
        }
        assert_eq!(full.interval_tariffs.len(), INTERVAL_TARIFFS_MAX - 1);
        let two = set(&full, dso, 7, vec![import(3), import(3)]);
        let refused = admit(&genesis, &mut full.clone(), t, &two).unwrap_err();
        assert!(matches!(refused, Rejection::IntervalTariffsFull), "{refused:?}");
        let tx = set(&full, dso, 5, vec![import(4), import(4)]);
        admit(&genesis, &mut full, t, &tx).unwrap();
        assert_eq!(full.interval_tariffs.len(), INTERVAL_TARIFFS_MAX);
        state
    };

    // Settling interval 5 drops its entry; its bills were at its tariffs.
    s.state = state;
    let mut settled = Vec::new();
    let mut time = t;
    while s.state.next_settlement_interval <= 5 {
        time += 1_000;
        let readings =
            (0..4).map(|h| s.community.reading_tx(h, genesis.interval_at(time) - 1, 0, 0)).collect();
        settled.extend(s.block(readings, time));
    }
    assert!(s.state.interval_tariffs.is_empty(), "{:?}", s.state.interval_tariffs);
    let five = settled
        .iter()
        .find_map(|receipt| match receipt {
            Receipt::Settlement(settlement) if settlement.interval == 5 => Some(settlement.tariffs),
            _ => None,
        })
        .expect("interval 5 settled");
    assert_eq!(five.grid_import_micro_per_kwh, 300_000);
}

/// A zone's own meter (`RegisterZoneMeter`) is read like a household's,
/// bounded the same way, attests no offer and bills nobody; settlement
/// sets what it measured beside the zone's household meters, and an
/// interval it has no reading for (or one after a gap) is not measured.
#[test]
fn a_zone_meter_measures_the_zones_losses_and_bills_nobody() {
    use gridshare_ledger::tx::{MeterReading, SignedMeterReading};
    let mut s = registered();
    let genesis = s.genesis().clone();
    let id = genesis.community_id;
    let zone_meter = Keypair::from_seed([71; 32]);
    let register = Tx::RegisterZoneMeter {
        dso: s.community.dso.public(),
        nonce: 1,
        meter: zone_meter.public(),
        zone: genesis.zones[0].name.clone(),
        max_import_w: 7_000_000,
        max_export_w: 7_000_000,
    };
    s.block(vec![SignedTx::sign(register, &s.community.dso, &id)], T0 + 200);
    let reading = |interval, export_wh_total| {
        SignedMeterReading::sign(
            MeterReading { meter: zone_meter.public(), interval, import_wh_total: 0, export_wh_total },
            &zone_meter,
            &id,
        )
    };
    // It attests no offer: it is no household's meter.
    let offer = s.community.offer_tx(0, 1, 5, Side::Sell, 100, 100_000, reading(0, 0));
    let refused = rejection(&s, &offer, T0 + 1_100);
    assert!(matches!(refused, Rejection::UnknownMeter(meter) if meter == zone_meter.public()), "{refused:?}");

    // Households export 100 Wh each per interval; the zone meter sees 390
    // Wh of the 400 leave the zone, and has no reading of interval 2.
    let balances: Vec<i128> = (0..4).map(|h| s.balance(h)).collect();
    let mut zones = std::collections::BTreeMap::new();
    for interval in 0..8_u64 {
        let time = T0 + (interval + 1) * 1_000 + 50;
        let mut txs: Vec<SignedTx> =
            (0..4).map(|h| s.community.reading_tx(h, interval, 0, 100 * (interval + 1))).collect();
        if interval != 2 {
            let signed = reading(interval, 390 * (interval + 1));
            txs.push(SignedTx { tx: Tx::MeterReading(signed.reading), signature: signed.signature });
        }
        if interval == 3 {
            // The physics bound holds for it too: 2,041 Wh per interval
            // since its last reading, of interval 1.
            let too_much = reading(4, 390 * 2 + 3 * 2_041 + 1);
            let tx = SignedTx { tx: Tx::MeterReading(too_much.reading), signature: too_much.signature };
            let refused = rejection(&s, &tx, T0 + 5_050);
            assert!(matches!(refused, Rejection::ReadingAboveCapacity { .. }), "{refused:?}");
        }
        for receipt in s.block(txs, time) {
            if let Receipt::Settlement(settlement) = receipt {
                zones.insert(settlement.interval, settlement.zones[0]);
            }
        }
    }
    // Interval 1: 400 Wh measured, 390 Wh at the transformer, 10 Wh lost.
    assert_eq!(zones[&1].measured_net_export_wh, 400);
    assert_eq!((zones[&1].zone_meter_net_export_wh, zones[&1].losses_wh()), (Some(390), Some(10)));
    // Interval 2 has no reading; interval 3 closes a gap: neither measured.
    assert_eq!(zones[&2].zone_meter_net_export_wh, None);
    assert_eq!(zones[&3].zone_meter_net_export_wh, None);
    assert_eq!(zones[&4].losses_wh(), Some(10));
    // It bills nobody: every bill is a household's, and the households'
    // money moved as their own meters say.
    assert!(s.state.zone_meters[&zone_meter.public()].base.is_some());
    assert!(!s.state.accounts.contains_key(&zone_meter.public()));
    for (h, before) in balances.iter().enumerate() {
        assert!(s.balance(h) > *before, "household {h} was paid its feed-in");
    }
}
