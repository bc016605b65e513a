//! The state machine end to end: registration, offers, clearing through the
//! auction, metered settlement with hand-computed bills, replay from genesis,
//! tampered blocks, and every admission rejection.

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
    // Interval 2 has ended; interval 0 settles (nothing to bill: no base reading).
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
    assert!(receipts[3].is_empty(), "interval 0 has no base reading: {:?}", receipts[3]);

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
        matches!(error, BlockError::Inadmissible { index: 5, rejection: Rejection::BadSignature(_), .. }),
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
