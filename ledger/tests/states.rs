//! Golden state vectors: a short chain with one block of each transaction
//! kind, a block that clears and blocks that settle (measured, estimated and
//! trued-up meters), each block's bytes with its hash, roots and the bytes
//! its state root hashes, checked in (`tests/vectors/states.txt`). An
//! implementation written from docs/PROTOCOL.md replays the blocks and must
//! reproduce every line (PROTOCOL.md §10); and transactions offered to that
//! chain that break several rules at once, with the rejection the first rule
//! in §5.4's order gives (`tests/vectors/rejections.txt`), or at a bound they
//! just meet. The encoding of the state root is spelled out here field by
//! field, as §5.1 lists it, and checked against `State::root`, so the
//! document and the code cannot drift apart. A second chain, of a pay-as-bid
//! community, is in `tests/vectors/states_pay_as_bid.txt`. Regenerate them
//! with `UPDATE_EXPECT=1 cargo test -p gridshare-ledger --test states` only
//! for a deliberate, versioned change of the protocol.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use expect_test::expect_file;
use gridshare_ledger::block::{Block, ClearingReceipt, Receipt};
use gridshare_ledger::encoding::{Domain, domain_bytes, to_bytes};
use gridshare_ledger::execute::{Signatures, build_block, execute};
use gridshare_ledger::genesis::{IntervalTariffs, MarketParams, Mechanism, Tariffs, Zone, ZoneLimits};
use gridshare_ledger::ids::{Keypair, PublicKey};
use gridshare_ledger::state::State;
use gridshare_ledger::testkit::{LocalValidator, TestCommunity, test_market};
use gridshare_ledger::tx::{Side, SignedTx, Tx};
use gridshare_ledger::{Hash, NANOS_PER_UNIT};

/// Feeder 1's own meter (its transformer's), which the DSO registers.
fn zone_meter() -> Keypair {
    Keypair::from_seed([71; 32])
}

/// A reading of feeder 1's zone meter.
fn zone_meter_reading(
    community: &TestCommunity,
    interval: u64,
    import_wh_total: u64,
    export_wh_total: u64,
) -> SignedTx {
    let reading = gridshare_ledger::tx::MeterReading {
        meter: zone_meter().public(),
        interval,
        import_wh_total,
        export_wh_total,
    };
    SignedTx::sign(Tx::MeterReading(reading), &zone_meter(), &community.genesis.community_id)
}

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
            &state.zone_limits,
            &state.interval_tariffs,
            &state.zone_meters,
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
/// settlement 1.5 s after the end. Household 0 (A, on feeder 1) sells,
/// household 1 (B, on feeder 2) buys, in interval 2, for which the DSO
/// limits what feeder 2 imports: the trade crosses a congested boundary.
fn steps(community: &mut TestCommunity) -> Vec<Step> {
    let id = community.genesis.community_id;
    let a = community.households[0].account.public();
    let a_meter = community.households[0].meter.public();
    let b = community.households[1].account.public();
    let b_meter = community.households[1].meter.public();
    let register_meter = |meter: PublicKey, owner: PublicKey, zone: &str| {
        let zone = zone.to_string();
        move |registrar, nonce| Tx::RegisterMeter {
            registrar,
            nonce,
            meter,
            owner,
            max_import_w: METER_W,
            max_export_w: METER_W,
            zone,
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
    step("register-meter", 200, vec![community.registrar_tx(register_meter(a_meter, a, "feeder-1"))]);
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
        community.registrar_tx(register_meter(b_meter, b, "feeder-2")),
        community.registrar_tx(credit(b, 50 * NANOS_PER_UNIT, "deposit B")),
    ];
    let limits = Tx::SetZoneLimits {
        dso: community.dso.public(),
        nonce: 1,
        zone: "feeder-2".into(),
        first_interval: 2,
        intervals: 1,
        limits: ZoneLimits { import_wh_max: 300, export_wh_max: u64::MAX },
    };
    // The DSO's dynamic tariffs in the same block: interval 2's import
    // tariff and network fee, interval 3's feed-in tariff.
    let interval_tariffs = Tx::SetIntervalTariffs {
        signer: community.dso.public(),
        nonce: 2,
        first_interval: 2,
        tariffs: vec![
            IntervalTariffs {
                grid_import_micro_per_kwh: Some(270_000),
                grid_feed_in_micro_per_kwh: None,
                network_fee_micro_per_kwh: Some(5_000),
            },
            IntervalTariffs {
                grid_import_micro_per_kwh: None,
                grid_feed_in_micro_per_kwh: Some(20_000),
                network_fee_micro_per_kwh: None,
            },
        ],
    };
    // And feeder 1's own meter, whose readings are A's less the feeder's
    // losses: 120 Wh in interval 1, 80 Wh in interval 2.
    let zone_meter = Tx::RegisterZoneMeter {
        dso: community.dso.public(),
        nonce: 3,
        meter: zone_meter().public(),
        zone: "feeder-1".into(),
        max_import_w: METER_W,
        max_export_w: METER_W,
    };
    step(
        "set-zone-limits, set-interval-tariffs, register-zone-meter",
        550,
        vec![
            SignedTx::sign(limits, &community.dso, &id),
            SignedTx::sign(interval_tariffs, &community.dso, &id),
            SignedTx::sign(zone_meter, &community.dso, &id),
        ],
    );
    step("setup: register household B", 600, b_registration);
    // A's readings: interval 0, 1 and 2, every one measured.
    step(
        "meter-reading",
        1_100,
        vec![community.reading_tx(0, 0, 1_000, 5_000), zone_meter_reading(community, 0, 10_000, 20_000)],
    );
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
        vec![
            community.reading_tx(0, 1, 1_100, 5_600),
            community.reading_tx(1, 1, 200, 0),
            zone_meter_reading(community, 1, 10_100, 20_480),
        ],
    );
    // Settles interval 0 (both meters registered in it: nobody is billed).
    step(
        "settles interval 0: no receipt",
        3_100,
        vec![community.reading_tx(0, 2, 1_150, 6_200), zone_meter_reading(community, 2, 10_150, 21_000)],
    );
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
        "clears interval 2" => {
            // 300 Wh, as feeder 2's limit allows, the buyer paying more than
            // the seller gets, and the DSO's network fee for the interval.
            let traded = |clearing: &ClearingReceipt| {
                let [trade] = clearing.trades[..] else { return false };
                clearing.offers == 2
                    && clearing.network_fee_micro_per_kwh == 5_000
                    && trade.energy_wh == 300
                    && trade.buyer_price_micro_per_kwh > trade.price_micro_per_kwh
                    && clearing.zones.iter().map(|zone| zone.net_export_wh).eq([300, -300])
                    && clearing.zones[1].congested
            };
            assert!(
                matches!(receipts, [Receipt::Clearing(clearing)] if traded(clearing)),
                "{label}: {receipts:?}"
            );
        }
        "settles interval 0: no receipt" => assert!(receipts.is_empty(), "{label}: {receipts:?}"),
        "settles interval 1" | "settles interval 2" => {
            let estimated: Vec<u64> = bills().map(|bill| bill.estimated_import_wh).collect();
            // A measured, B estimated at its meter's capacity.
            assert!(
                estimated.len() == 2 && estimated.contains(&0) && estimated.contains(&1_050),
                "{label}: {receipts:?}"
            );
            // So is each's feeder: A's measured, B's estimated.
            let [Receipt::Settlement(settlement)] = receipts else { panic!("{label}: {receipts:?}") };
            let counts: Vec<(u32, u32)> =
                settlement.zones.iter().map(|zone| (zone.measured_meters, zone.estimated_meters)).collect();
            assert_eq!(counts, [(1, 0), (0, 1)], "{label}");
            // Feeder 1's zone meter measured what A's meter did, less the
            // losses; feeder 2 has no zone meter and an estimated meter.
            let losses: Vec<Option<i64>> = settlement.zones.iter().map(|zone| zone.losses_wh()).collect();
            let expected = if label == "settles interval 1" { 120 } else { 80 };
            assert_eq!(losses, [Some(expected), None], "{label}");
            // Interval 2 at the DSO's own import tariff and fee, the
            // registrar's feed-in tariff.
            if label == "settles interval 2" {
                let tariffs = settlement.tariffs;
                assert_eq!(
                    (
                        tariffs.effective_from_interval,
                        tariffs.grid_import_micro_per_kwh,
                        tariffs.network_fee_micro_per_kwh
                    ),
                    (2, 270_000, 5_000),
                    "{label}"
                );
            }
        }
        // The refund is at the lowest tariff over the estimated intervals:
        // interval 3's own feed-in tariff of 20,000 micro per kWh.
        "settles interval 3" => assert!(
            bills().any(|bill| bill.estimate_refund_wh == 1_500 && bill.estimate_refund_nano == 30_000_000),
            "{label}: {receipts:?}"
        ),
        _ => assert!(receipts.is_empty(), "{label}: {receipts:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// One block of the chain and the state after it.
struct Link {
    label: &'static str,
    block: Block,
    state: State,
}

/// The community, its genesis state and the chain of `steps`: the uniform
/// price community of `objects.txt`.
fn chain() -> (TestCommunity, State, Vec<Link>) {
    let mut community = TestCommunity::new(1, 2, test_market(), T0);
    community.genesis.zones =
        ["feeder-1", "feeder-2"].map(|name| Zone { name: name.into(), limits: ZoneLimits::OPEN }).into();
    let steps = steps(&mut community);
    let (first, links) = replay(&community, steps);
    for link in &links {
        check_receipts(link.label, &link.block.receipts);
    }
    (community, first, links)
}

/// The genesis state and the blocks of `steps`, each built by the local
/// validator and then executed as a replica would, every signature checked.
fn replay(community: &TestCommunity, steps: Vec<Step>) -> (State, Vec<Link>) {
    let validator = LocalValidator { keypair: Keypair::from_seed(community.validator.seed()) };
    let genesis = &community.genesis;
    let first = State::genesis(genesis);
    let mut state = first.clone();
    let mut links = Vec::new();
    for step in steps {
        let (certified, built) =
            validator.produce(genesis, &state, step.transactions, T0 + step.offset_ms).unwrap();
        assert!(built.left_out.is_empty(), "{}: left out {:?}", step.label, built.left_out);
        let block: Block = certified.block;
        let (executed, receipts) = execute(genesis, &state, &block, Signatures::Verify).unwrap();
        assert_eq!((&executed, &receipts), (&built.state, &block.receipts), "{}", step.label);
        state = executed.clone();
        links.push(Link { label: step.label, block, state: executed });
    }
    (first, links)
}

/// The vector text of a chain: the genesis, then each block with its roots
/// and the bytes its state root hashes, checked against the header here.
fn render(community: &TestCommunity, first: &State, links: &[Link]) -> String {
    let genesis = &community.genesis;
    let id = genesis.community_id;
    let mut out = String::new();
    out.push_str(&format!(
        "== genesis\nbytes {}\nhash  {}\nstate {}\nroot  {}\n",
        hex(&to_bytes(genesis)),
        genesis.hash(),
        hex(&root_preimage(first)),
        first.root(&id)
    ));
    assert_eq!(root_from_preimage(community, &root_preimage(first)), first.root(&id));
    for (index, Link { label, block, state }) in links.iter().enumerate() {
        let preimage = root_preimage(state);
        assert_eq!(root_from_preimage(community, &preimage), block.header.state_root, "{label}");
        out.push_str(&format!(
            concat!(
                "== block {}: {}\ntime  {}\nbytes {}\nhash  {}\ntx-root {}\n",
                "receipts {}\nreceipt-root {}\nstate {}\nroot  {}\n"
            ),
            index + 1,
            label,
            block.header.timestamp_ms,
            hex(&to_bytes(block)),
            block.hash(),
            block.header.tx_root,
            block.receipts.len(),
            block.header.receipt_root,
            hex(&preimage),
            block.header.state_root,
        ));
    }
    out
}

#[test]
fn state_vectors() {
    let (community, first, links) = chain();
    // The chain covers every transaction kind, a clearing with a trade, and
    // settlements that measure, estimate and true up.
    let kinds_seen: Vec<&str> =
        links.iter().flat_map(|link| link.block.transactions.iter().map(|tx| tx.tx.kind())).collect();
    for kind in [
        "register-account",
        "register-meter",
        "credit",
        "debit",
        "set-tariffs",
        "offer",
        "cancel-offer",
        "meter-reading",
        "set-zone-limits",
    ] {
        assert!(kinds_seen.contains(&kind), "no {kind} in the state vectors");
    }
    expect_file!["vectors/states.txt"].assert_eq(&render(&community, &first, &links));
}

/// A pay-as-bid community of five households: two asks at one price share
/// the marginal level pro rata (one Wh left over, given by id), two bids at
/// two prices, and a bid that cannot pay the network fee; then one block
/// settles three intervals, the traded one with contracts.
#[test]
fn pay_as_bid_vectors() {
    let market = MarketParams { mechanism: Mechanism::PayAsBid, ..test_market() };
    let mut community = TestCommunity::new(2, 5, market, T0);
    let registrations = community.registrations();
    // Every offer is attested by a reading of interval 0 that never reached
    // the ledger: admission asks only for the meter's signature and age.
    let offer = |household: usize, side, energy_wh, price| {
        let attestation = community.reading(household, 0, 0, 0);
        community.offer_tx(household, 1, 2, side, energy_wh, price, attestation)
    };
    // The fee is 20,000 micro per kWh: effective bids 180,000, 130,000 and
    // none (10,000 cannot pay it).
    let offers = vec![
        offer(0, Side::Sell, 1_000, 100_000),
        offer(1, Side::Sell, 700, 100_000),
        offer(2, Side::Buy, 900, 200_000),
        offer(3, Side::Buy, 500, 150_000),
        offer(4, Side::Buy, 300, 10_000),
    ];
    let steps = vec![
        Step { label: "setup: register five households", offset_ms: 100, transactions: registrations },
        Step { label: "offers for interval 2", offset_ms: 200, transactions: offers },
        Step { label: "clears interval 2 pay-as-bid", offset_ms: 1_600, transactions: Vec::new() },
        Step { label: "settles intervals 0, 1 and 2", offset_ms: 4_600, transactions: Vec::new() },
    ];
    let (first, links) = replay(&community, steps);
    let [Receipt::Clearing(clearing)] = &links[2].block.receipts[..] else {
        panic!("one clearing: {:?}", links[2].block.receipts)
    };
    // 1,400 Wh of 1,700 offered at 100,000: 823.5 and 576.5 Wh, rounded down
    // to 823 and 576, and the Wh left over to the lower id.
    assert_eq!(
        (clearing.offers, clearing.volume_wh, clearing.clearing_price_micro_per_kwh),
        (5, 1_400, None)
    );
    let prices: Vec<u64> = clearing.trades.iter().map(|trade| trade.price_micro_per_kwh).collect();
    assert!(prices.contains(&180_000) && prices.contains(&130_000), "{clearing:?}");
    let sold = |household: usize| -> u64 {
        let seller = community.households[household].account.public();
        clearing.trades.iter().filter(|trade| trade.seller == seller).map(|trade| trade.energy_wh).sum()
    };
    let lower_id_first = links[1].block.transactions[0].id(&community.genesis.community_id)
        < links[1].block.transactions[1].id(&community.genesis.community_id);
    assert_eq!((sold(0), sold(1)), if lower_id_first { (824, 576) } else { (823, 577) });
    let settled: Vec<u64> = links[3]
        .block
        .receipts
        .iter()
        .map(|receipt| match receipt {
            Receipt::Settlement(settlement) => settlement.interval,
            Receipt::Clearing(clearing) => panic!("a clearing in the settling block: {clearing:?}"),
        })
        .collect();
    // Interval 0 bills nobody (every meter was registered in it).
    assert_eq!(settled, vec![1, 2]);
    expect_file!["vectors/states_pay_as_bid.txt"].assert_eq(&render(&community, &first, &links));
}

/// A transaction offered to the block after block `after` of the chain, at
/// `offset_ms`, and the rejection code it must get ("admitted" if none).
struct Verdict {
    label: &'static str,
    after: usize,
    offset_ms: u64,
    tx: SignedTx,
    code: &'static str,
}

/// Transactions that break more than one rule, so that the rejection names
/// the first rule in PROTOCOL.md §5.4's order, and a few at a boundary.
fn verdicts(community: &TestCommunity, links: &[Link]) -> Vec<Verdict> {
    let id = community.genesis.community_id;
    let registrar = &community.registrar;
    let r = registrar.public();
    let (a_key, b_key) = (&community.households[0].account, &community.households[1].account);
    let (a, b) = (a_key.public(), b_key.public());
    let (a_meter, b_meter) = (community.households[0].meter.public(), community.households[1].meter.public());
    // y = 0: a canonical encoding of a point of order 4.
    let small_order = PublicKey([0; 32]);
    let by_registrar = |tx| SignedTx::sign(tx, registrar, &id);
    let account = |registrar, nonce, account, credit_limit_nano| Tx::RegisterAccount {
        registrar,
        nonce,
        account,
        credit_limit_nano,
    };
    let meter = |nonce, meter, owner, power_w: u64, zone: &str| Tx::RegisterMeter {
        registrar: r,
        nonce,
        meter,
        owner,
        max_import_w: power_w,
        max_export_w: power_w,
        zone: zone.into(),
    };
    let a_read = community.reading(0, 0, 1_000, 5_000);
    let offer = |nonce, interval, side, energy_wh, price, attestation| {
        community.offer_tx(0, nonce, interval, side, energy_wh, price, attestation)
    };
    let reading = |household: usize, interval, import, export| {
        community.reading_tx(household, interval, import, export)
    };
    let b_bid = links[9].block.transactions[0].id(&id);
    let withdrawn = links[10].block.transactions[0].id(&id);
    let stranger = Keypair::from_seed([9; 32]);
    let stranger_reading = gridshare_ledger::tx::SignedMeterReading::sign(
        gridshare_ledger::tx::MeterReading {
            meter: stranger.public(),
            interval: 0,
            import_wh_total: 0,
            export_wh_total: 0,
        },
        &stranger,
        &id,
    );
    let mut misread = reading(0, 1, 1_100, 5_600);
    misread.signature = community.reading(1, 1, 1_100, 5_600).signature;
    let mut verdicts = Vec::new();
    let mut verdict =
        |label, after, offset_ms, tx, code| verdicts.push(Verdict { label, after, offset_ms, tx, code });

    verdict(
        "register-account: stale nonce 0, key of small order",
        0,
        50,
        by_registrar(account(r, 0, small_order, -1)),
        "stale_nonce",
    );
    verdict(
        "register-account: nonce 2 skips 1, key of small order",
        0,
        50,
        by_registrar(account(r, 2, small_order, -1)),
        "nonce_gap",
    );
    verdict(
        "register-account: negative credit limit, key of small order",
        0,
        50,
        by_registrar(account(r, 1, small_order, -1)),
        "invalid_amount",
    );
    verdict(
        "register-account: key of small order",
        0,
        50,
        by_registrar(account(r, 1, small_order, 0)),
        "invalid_key",
    );
    // The key rule's edges (PROTOCOL.md §3.3): decided by the bytes alone,
    // so mixed order and bytes that are no point are valid keys.
    for (label, hex_key, code) in [
        (
            "register-account: key y = p + 1 (not canonical)",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "invalid_key",
        ),
        (
            "register-account: key y = 1 with the sign bit (not canonical)",
            "0100000000000000000000000000000000000000000000000000000000000080",
            "invalid_key",
        ),
        (
            "register-account: key of mixed order",
            "ba05a99a3f398d7305fc29825b8c8108aac06c9b31b4e0b4ea9febd84ba18975",
            "admitted",
        ),
        (
            "register-account: key y = 2, no point",
            "0200000000000000000000000000000000000000000000000000000000000000",
            "admitted",
        ),
    ] {
        let key: PublicKey = hex_key.parse().unwrap();
        verdict(label, 0, 50, by_registrar(account(r, 1, key, 0)), code);
    }
    verdict(
        "register-account: by an account key, not a registrar",
        0,
        50,
        SignedTx::sign(account(a, 1, b, 0), a_key, &id),
        "not_a_registrar",
    );
    verdict(
        "register-account: the registrar's, signed by another key",
        0,
        50,
        SignedTx::sign(account(r, 1, b, 0), a_key, &id),
        "bad_signature",
    );
    verdict("register-account: A again", 2, 250, by_registrar(account(r, 3, a, 0)), "account_exists");
    let long_zone = "z".repeat(65);
    verdict(
        "register-meter: A's meter again, zone of 65 bytes",
        2,
        250,
        by_registrar(meter(3, a_meter, a, 1, &long_zone)),
        "text_too_long",
    );
    verdict(
        "register-meter: zone of 64 bytes, none of the community's, A's meter again",
        2,
        250,
        by_registrar(meter(3, a_meter, a, 1, &long_zone[1..])),
        "unknown_zone",
    );
    verdict(
        "register-meter: A's meter again",
        2,
        250,
        by_registrar(meter(3, a_meter, a, 1, "feeder-2")),
        "meter_exists",
    );
    verdict(
        "register-meter: above 10^9 W, unregistered owner",
        2,
        250,
        by_registrar(meter(3, b_meter, b, 1_000_000_001, "feeder-1")),
        "meter_power_above_bound",
    );
    verdict(
        "register-meter: unregistered owner",
        2,
        250,
        by_registrar(meter(3, b_meter, b, 1_000_000_000, "feeder-1")),
        "unknown_account",
    );
    verdict(
        "register-meter: A's second meter, on another feeder",
        2,
        250,
        by_registrar(meter(3, b_meter, a, 1, "feeder-2")),
        "account_in_another_zone",
    );
    verdict(
        "register-meter: A's second meter of 10^9 W",
        2,
        250,
        by_registrar(meter(3, b_meter, a, 1_000_000_000, "feeder-1")),
        "admitted",
    );
    let credit = |nonce, account, amount_nano| Tx::Credit {
        registrar: r,
        nonce,
        account,
        amount_nano,
        reference: String::new(),
    };
    verdict(
        "credit: zero, to an unregistered account",
        2,
        250,
        by_registrar(credit(3, b, 0)),
        "invalid_amount",
    );
    verdict("credit: to an unregistered account", 2, 250, by_registrar(credit(3, b, 1)), "unknown_account");
    let debit = |nonce, amount_nano| Tx::Debit {
        registrar: r,
        nonce,
        account: a,
        amount_nano,
        reference: String::new(),
    };
    // A: 99 units, a credit limit of 2, nothing reserved.
    verdict(
        "debit: A's balance and credit limit and 1 nano",
        4,
        450,
        by_registrar(debit(5, 101 * NANOS_PER_UNIT + 1)),
        "insufficient_funds",
    );
    verdict(
        "debit: exactly A's balance and credit limit",
        4,
        450,
        by_registrar(debit(5, 101 * NANOS_PER_UNIT)),
        "admitted",
    );
    let tariffs = |effective_from_interval, grid_import_micro_per_kwh| Tx::SetTariffs {
        registrar: r,
        nonce: 5,
        tariffs: Tariffs {
            effective_from_interval,
            grid_import_micro_per_kwh,
            grid_feed_in_micro_per_kwh: 0,
            network_fee_micro_per_kwh: 0,
        },
    };
    // At 450 ms interval 0 has closed and interval 1 closes at 500 ms: tariffs
    // may change from interval 1 on.
    verdict(
        "set-tariffs: from interval 0, closed, above 10^9",
        4,
        450,
        by_registrar(tariffs(0, 1_000_000_001)),
        "tariffs_not_in_future",
    );
    verdict(
        "set-tariffs: from interval 1 at its gate closure",
        4,
        500,
        by_registrar(tariffs(1, 100)),
        "tariffs_not_in_future",
    );
    let dso_tariffs = Tx::SetTariffs {
        registrar: community.dso.public(),
        nonce: 1,
        tariffs: Tariffs {
            effective_from_interval: 1,
            grid_import_micro_per_kwh: 100,
            grid_feed_in_micro_per_kwh: 0,
            network_fee_micro_per_kwh: 0,
        },
    };
    verdict(
        "set-tariffs: by the DSO, from interval 1",
        4,
        450,
        SignedTx::sign(dso_tariffs, &community.dso, &id),
        "not_a_registrar",
    );
    verdict(
        "set-tariffs: from interval 1, above 10^9",
        4,
        450,
        by_registrar(tariffs(1, 1_000_000_001)),
        "tariff_too_high",
    );
    let zone_limits = |signer: &Keypair, nonce, zone: &str, first_interval, intervals| {
        let tx = Tx::SetZoneLimits {
            dso: signer.public(),
            nonce,
            zone: zone.into(),
            first_interval,
            intervals,
            limits: ZoneLimits { import_wh_max: 0, export_wh_max: 0 },
        };
        SignedTx::sign(tx, signer, &id)
    };
    let dso = &community.dso;
    // At 550 ms intervals 0 and 1 have closed; the horizon is interval 100.
    verdict(
        "set-zone-limits: by the registrar, unknown zone",
        5,
        550,
        zone_limits(registrar, 5, "feeder-9", 2, 1),
        "not_a_dso",
    );
    verdict(
        "set-zone-limits: nonce 2 skips 1, unknown zone",
        5,
        550,
        zone_limits(dso, 2, "feeder-9", 2, 1),
        "nonce_gap",
    );
    verdict(
        "set-zone-limits: unknown zone, no intervals",
        5,
        550,
        zone_limits(dso, 1, "feeder-9", 2, 0),
        "unknown_zone",
    );
    verdict(
        "set-zone-limits: no intervals, from a closed one",
        5,
        550,
        zone_limits(dso, 1, "feeder-1", 1, 0),
        "zone_limit_intervals",
    );
    verdict(
        "set-zone-limits: 97 intervals",
        5,
        550,
        zone_limits(dso, 1, "feeder-1", 2, 97),
        "zone_limit_intervals",
    );
    verdict(
        "set-zone-limits: from interval 1, closed",
        5,
        550,
        zone_limits(dso, 1, "feeder-1", 1, 96),
        "interval_closed",
    );
    verdict(
        "set-zone-limits: from the last interval there is, past the horizon",
        5,
        550,
        zone_limits(dso, 1, "feeder-1", u64::MAX, 96),
        "interval_too_far_ahead",
    );
    verdict(
        "set-zone-limits: intervals 10 to 105, past the horizon",
        5,
        550,
        zone_limits(dso, 1, "feeder-1", 10, 96),
        "interval_too_far_ahead",
    );
    verdict(
        "set-zone-limits: intervals 5 to 100, the horizon",
        5,
        550,
        zone_limits(dso, 1, "feeder-1", 5, 96),
        "admitted",
    );
    let zone_meter = |signer: &Keypair, nonce, meter, zone: &str, max_import_w| {
        let tx = Tx::RegisterZoneMeter {
            dso: signer.public(),
            nonce,
            meter,
            zone: zone.into(),
            max_import_w,
            max_export_w: 0,
        };
        SignedTx::sign(tx, signer, &id)
    };
    let long_name = "f".repeat(65);
    verdict(
        "register-zone-meter: by the registrar, unknown zone",
        5,
        550,
        zone_meter(registrar, 6, small_order, "feeder-9", 0),
        "not_a_dso",
    );
    verdict(
        "register-zone-meter: nonce 2 skips 1, unknown zone",
        5,
        550,
        zone_meter(dso, 2, small_order, "feeder-9", 0),
        "nonce_gap",
    );
    verdict(
        "register-zone-meter: a zone name of 65 bytes, a key of small order",
        5,
        550,
        zone_meter(dso, 1, small_order, &long_name, 0),
        "text_too_long",
    );
    verdict(
        "register-zone-meter: unknown zone, a key of small order",
        5,
        550,
        zone_meter(dso, 1, small_order, "feeder-9", 0),
        "unknown_zone",
    );
    verdict(
        "register-zone-meter: a key of small order, above 10^9 W",
        5,
        550,
        zone_meter(dso, 1, small_order, "feeder-1", 1_000_000_001),
        "invalid_key",
    );
    verdict(
        "register-zone-meter: A's meter, above 10^9 W",
        5,
        550,
        zone_meter(dso, 1, a_meter, "feeder-1", 1_000_000_001),
        "meter_exists",
    );
    verdict(
        "register-zone-meter: above 10^9 W",
        5,
        550,
        zone_meter(dso, 1, self::zone_meter().public(), "feeder-1", 1_000_000_001),
        "meter_power_above_bound",
    );
    verdict(
        "register-zone-meter: 10^9 W",
        5,
        550,
        zone_meter(dso, 1, self::zone_meter().public(), "feeder-1", 1_000_000_000),
        "admitted",
    );
    // After block 6 feeder 1 has its zone meter; the DSO's last nonce is 3.
    verdict(
        "register-zone-meter: a second one for feeder 1",
        6,
        650,
        zone_meter(dso, 4, Keypair::from_seed([72; 32]).public(), "feeder-1", 0),
        "zone_meter_exists",
    );
    verdict(
        "register-meter: feeder 1's zone meter as a household's",
        6,
        650,
        by_registrar(Tx::RegisterMeter {
            registrar: r,
            nonce: 6,
            meter: self::zone_meter().public(),
            owner: a,
            max_import_w: 0,
            max_export_w: 0,
            zone: "feeder-1".into(),
        }),
        "meter_exists",
    );
    let interval_tariffs = |signer: &Keypair, nonce, first_interval, count: usize, import| {
        let entry = IntervalTariffs {
            grid_import_micro_per_kwh: Some(import),
            grid_feed_in_micro_per_kwh: None,
            network_fee_micro_per_kwh: None,
        };
        let tx = Tx::SetIntervalTariffs {
            signer: signer.public(),
            nonce,
            first_interval,
            tariffs: vec![entry; count],
        };
        SignedTx::sign(tx, signer, &id)
    };
    verdict(
        "set-interval-tariffs: by household A, no entries",
        5,
        550,
        interval_tariffs(a_key, 1, 2, 0, 0),
        "not_a_tariff_setter",
    );
    verdict(
        "set-interval-tariffs: nonce 2 skips 1, no entries",
        5,
        550,
        interval_tariffs(dso, 2, 2, 0, 0),
        "nonce_gap",
    );
    verdict(
        "set-interval-tariffs: no entries, from a closed interval",
        5,
        550,
        interval_tariffs(dso, 1, 1, 0, 0),
        "tariff_intervals",
    );
    verdict(
        "set-interval-tariffs: 97 entries",
        5,
        550,
        interval_tariffs(dso, 1, 2, 97, 0),
        "tariff_intervals",
    );
    verdict(
        "set-interval-tariffs: above 10^9, from interval 1, closed",
        5,
        550,
        interval_tariffs(dso, 1, 1, 1, 1_000_000_001),
        "tariff_too_high",
    );
    verdict(
        "set-interval-tariffs: from interval 1, closed",
        5,
        550,
        interval_tariffs(dso, 1, 1, 1, 0),
        "interval_closed",
    );
    verdict(
        "set-interval-tariffs: from the last interval there is, past the horizon",
        5,
        550,
        interval_tariffs(dso, 1, u64::MAX, 1, 0),
        "interval_too_far_ahead",
    );
    verdict(
        "set-interval-tariffs: intervals 10 to 105, past the horizon",
        5,
        550,
        interval_tariffs(dso, 1, 10, 96, 0),
        "interval_too_far_ahead",
    );
    verdict(
        "set-interval-tariffs: by the registrar, intervals 5 to 100, the horizon, 10^9",
        5,
        550,
        interval_tariffs(registrar, 6, 5, 96, 1_000_000_000),
        "admitted",
    );
    // After block 10: A sells 600 Wh and B buys 500 Wh in interval 2; A's
    // last nonce is 1.
    verdict(
        "offer: A buys in interval 2 where it sells, nonce 3 skips 2",
        10,
        1_350,
        offer(3, 2, Side::Buy, 100, 100_000, a_read),
        "nonce_gap",
    );
    verdict(
        "offer: A sells in interval 1, whose gate closed, 0 Wh",
        10,
        1_350,
        offer(2, 1, Side::Sell, 0, 100_000, a_read),
        "interval_closed",
    );
    verdict(
        "offer: interval 102, beyond the horizon, 0 Wh",
        10,
        1_350,
        offer(2, 102, Side::Sell, 0, 100_000, a_read),
        "interval_too_far_ahead",
    );
    verdict(
        "offer: interval 101, the horizon, 0 Wh",
        10,
        1_350,
        offer(2, 101, Side::Sell, 0, 100_000, a_read),
        "energy_out_of_range",
    );
    verdict(
        "offer: above the price cap, attested by B's meter",
        10,
        1_350,
        offer(2, 3, Side::Sell, 1, 1_000_001, community.reading(1, 0, 0, 0)),
        "price_out_of_range",
    );
    verdict(
        "offer: attested by an unregistered meter",
        10,
        1_350,
        offer(2, 3, Side::Sell, 1, 1, stranger_reading),
        "unknown_meter",
    );
    verdict(
        "offer: attested by B's meter",
        10,
        1_350,
        offer(2, 3, Side::Sell, 1, 1, community.reading(1, 0, 0, 0)),
        "foreign_meter",
    );
    verdict(
        "offer: attestation 11 intervals older",
        10,
        1_350,
        offer(2, 11, Side::Sell, 1, 1, a_read),
        "stale_attestation",
    );
    verdict(
        "offer: attestation of a later interval",
        10,
        1_350,
        offer(2, 3, Side::Sell, 1, 1, community.reading(0, 4, 0, 0)),
        "stale_attestation",
    );
    verdict(
        "offer: A buys in interval 2, where it sells, above its limit",
        10,
        1_350,
        offer(2, 2, Side::Buy, 2_000, 100_000, a_read),
        "both_sides",
    );
    verdict(
        "offer: A sells 401 Wh more in interval 2 (limit 1,000)",
        10,
        1_350,
        offer(2, 2, Side::Sell, 401, 100_000, a_read),
        "energy_above_meter_limit",
    );
    verdict(
        "offer: A sells 400 Wh more in interval 2 (limit 1,000)",
        10,
        1_350,
        offer(2, 2, Side::Sell, 400, 100_000, a_read),
        "admitted",
    );
    let cancel =
        |nonce, offer_id| SignedTx::sign(Tx::CancelOffer { account: a, nonce, offer_id }, a_key, &id);
    verdict("cancel-offer: an offer already withdrawn", 12, 1_460, cancel(4, withdrawn), "unknown_offer");
    verdict("cancel-offer: B's bid", 12, 1_460, cancel(4, b_bid), "not_your_offer");
    verdict("cancel-offer: B's bid, stale nonce", 12, 1_460, cancel(3, b_bid), "stale_nonce");
    verdict("meter-reading: A's, signed by B's meter", 10, 1_350, misread, "bad_signature");
    verdict(
        "meter-reading: of an unregistered meter",
        10,
        1_350,
        SignedTx { tx: Tx::MeterReading(stranger_reading.reading), signature: stranger_reading.signature },
        "unknown_meter",
    );
    // After block 14: A's last reading is of interval 1, 1,100 Wh imported
    // and 5,600 exported; its capacity is 1,050 Wh an interval.
    verdict(
        "meter-reading: A's of interval 3, before its end, registers down",
        14,
        2_200,
        reading(0, 3, 0, 0),
        "reading_before_interval_end",
    );
    verdict(
        "meter-reading: A's of interval 1 again",
        14,
        2_200,
        reading(0, 1, 1_100, 5_600),
        "reading_not_increasing",
    );
    verdict(
        "meter-reading: A's import down, export too fast",
        14,
        3_050,
        reading(0, 2, 1_099, 9_000),
        "register_decreased",
    );
    verdict("meter-reading: A's export down", 14, 3_050, reading(0, 2, 1_100, 5_599), "register_decreased");
    verdict(
        "meter-reading: A's import 1,051 Wh up in one interval",
        14,
        3_050,
        reading(0, 2, 2_151, 5_600),
        "reading_above_capacity",
    );
    verdict(
        "meter-reading: A's export 1,051 Wh up in one interval",
        14,
        3_050,
        reading(0, 2, 1_100, 6_651),
        "reading_above_capacity",
    );
    verdict(
        "meter-reading: A's registers 1,050 Wh up in one interval",
        14,
        3_050,
        reading(0, 2, 2_150, 6_650),
        "admitted",
    );
    verdicts
}

#[test]
fn rejection_vectors() {
    let (community, first, links) = chain();
    let genesis = &community.genesis;
    let proposer = community.validator.public();
    let mut out = String::new();
    for Verdict { label, after, offset_ms, tx, code } in verdicts(&community, &links) {
        let state = if after == 0 { &first } else { &links[after - 1].state };
        let time_ms = T0 + offset_ms;
        assert!(time_ms > state.last_timestamp_ms, "{label}: the block must be later");
        let built =
            build_block(genesis, state, vec![tx.clone()], time_ms, proposer, Signatures::Verify).unwrap();
        let found = built.left_out.first().map_or("admitted", |(_, rejection)| rejection.code());
        assert_eq!(found, code, "{label}: {:?}", built.left_out);
        out.push_str(&format!(
            "== {label}\nafter block {after}\ntime  {time_ms}\nbytes {}\ncode  {code}\n",
            hex(&to_bytes(&tx))
        ));
    }
    expect_file!["vectors/rejections.txt"].assert_eq(&out);
}
