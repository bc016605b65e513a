//! A long outage's backlog drains block by block (docs/PROTOCOL.md §5.3):
//! a community of 1,100 households, each with offers for the same 16
//! intervals (17,600 offers, more than one block's clearing work), sees no
//! block for 200 intervals. The first block after the outage clears as many
//! of those intervals as fit in `CLEARING_WORK_PER_BLOCK_MAX` and no more,
//! settles nothing it has not cleared, and stays within its settlement work
//! and `BLOCK_BYTES_MAX`; the blocks after it go on where it stopped until
//! every interval is cleared and settled exactly once, in order.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::collections::BTreeSet;

use gridshare_ledger::Hash;
use gridshare_ledger::block::{
    Bill, BlockHeader, ClearingReceipt, Receipt, SettlementReceipt, TradeReceipt, ZoneReceipt, ZoneSettlement,
};
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::execute::{
    BLOCK_BYTES_MAX, CLEARING_WORK_PER_BLOCK_MAX, METERS_MAX, SETTLEMENT_WORK_PER_BLOCK_MAX, Signatures,
    TRANSACTION_BYTES_PER_BLOCK_MAX, build_block, execute,
};
use gridshare_ledger::genesis::{MarketParams, Mechanism, Tariffs, ZONES_MAX, ZoneLimits};
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::state::State;
use gridshare_ledger::testkit::{TestCommunity, test_market};
use gridshare_ledger::tx::{Side, SignedTx};

const HOUSEHOLDS: u32 = 1_100;
/// Intervals every household offers in: 16 × 1,100 offers in all.
const OFFERED_INTERVALS: u64 = 16;
const T0: u64 = 1_700_000_000_000;

/// Builds the next block at `time_ms` and checks it executes as built.
fn next_block(
    community: &TestCommunity,
    state: &State,
    candidates: Vec<SignedTx>,
    time_ms: u64,
) -> (State, Vec<Receipt>, usize) {
    let genesis = &community.genesis;
    let proposer = community.validator.public();
    let count = candidates.len();
    let built =
        build_block(genesis, state, candidates, time_ms, proposer, Signatures::AlreadyVerified).unwrap();
    assert!(built.left_out.is_empty(), "{:?}", built.left_out.first().map(|(_, rejection)| rejection));
    assert_eq!(built.block.transactions.len(), count, "every candidate fits");
    let (next, receipts) = execute(genesis, state, &built.block, Signatures::AlreadyVerified).unwrap();
    let bytes = to_bytes(&built.block).len();
    assert!(bytes <= BLOCK_BYTES_MAX, "a block of {bytes} bytes");
    (next, receipts, bytes)
}

#[test]
fn a_long_outage_s_backlog_drains_block_by_block() {
    let market = MarketParams { attestation_max_age_intervals: 20, ..test_market() };
    let mut community = TestCommunity::new(77, HOUSEHOLDS, market, T0);
    let length_ms = community.genesis.market.interval_length_ms;
    let mut state = State::genesis(&community.genesis);
    let mut time_ms = T0 + 10;

    // Registered in interval 0.
    let registrations = community.registrations();
    (state, _, _) = next_block(&community, &state, registrations, time_ms);

    // Every household offers in intervals 2..18, attested by a reading of
    // interval 0: sellers and buyers alternate, so every interval trades.
    let first = 2;
    let mut offers = Vec::new();
    for index in 0..HOUSEHOLDS as usize {
        let attestation = community.reading(index, 0, 0, 0);
        let (side, price) = if index % 2 == 0 { (Side::Sell, 50_000) } else { (Side::Buy, 150_000) };
        for (nonce, interval) in (first..first + OFFERED_INTERVALS).enumerate() {
            let nonce = u64::try_from(nonce).unwrap() + 1;
            offers.push(community.offer_tx(index, nonce, interval, side, 100, price, attestation));
        }
    }
    let offers_total = offers.len();
    // In blocks of 4,000 offers (within a block's transaction bytes).
    for chunk in offers.chunks(4_000) {
        time_ms += 1;
        (state, _, _) = next_block(&community, &state, chunk.to_vec(), time_ms);
    }
    assert!(state.next_clearing_interval <= first, "no offered interval is due yet");

    // No block for 200 intervals; then one block every interval.
    time_ms = T0 + 200 * length_ms;
    let intervals = usize::try_from(OFFERED_INTERVALS).unwrap();
    let per_interval = offers_total / intervals;
    let fit = CLEARING_WORK_PER_BLOCK_MAX / per_interval;
    assert!(fit < intervals, "the backlog must not fit in one block");
    let (mut cleared, mut settled) = (Vec::new(), Vec::new());
    let mut blocks = 0;
    while state.next_settlement_interval < first + OFFERED_INTERVALS {
        let before = (state.next_clearing_interval, state.next_settlement_interval);
        let (next, receipts, _) = next_block(&community, &state, Vec::new(), time_ms);
        state = next;
        blocks += 1;
        let clearings: Vec<u64> = receipts
            .iter()
            .filter_map(|receipt| match receipt {
                Receipt::Clearing(clearing) => Some(clearing.interval),
                Receipt::Settlement(_) => None,
            })
            .collect();
        let settlements: Vec<(u64, usize)> = receipts
            .iter()
            .filter_map(|receipt| match receipt {
                Receipt::Settlement(settlement) => Some((settlement.interval, settlement.bills.len())),
                Receipt::Clearing(_) => None,
            })
            .collect();
        if blocks == 1 {
            assert_eq!(clearings.len(), fit, "the first block clears what fits in its work and no more");
            assert_eq!(state.next_clearing_interval, first + u64::try_from(fit).unwrap());
        }
        // Clearing work: offers of the intervals cleared.
        assert!(clearings.len() * per_interval <= CLEARING_WORK_PER_BLOCK_MAX.max(per_interval));
        // Settlement work bounds the bills; never an interval not cleared.
        let bills: usize = settlements.iter().map(|(_, bills)| bills).sum();
        assert!(bills <= SETTLEMENT_WORK_PER_BLOCK_MAX, "{bills} bills in one block");
        assert!(state.next_settlement_interval <= state.next_clearing_interval);
        assert!(
            (state.next_clearing_interval, state.next_settlement_interval) > before,
            "every block makes progress"
        );
        cleared.extend(clearings);
        settled.extend(settlements.iter().map(|(interval, _)| *interval));
        time_ms += length_ms;
        assert!(blocks < 100, "the backlog does not drain");
    }
    assert!(blocks > 2, "draining took {blocks} blocks");
    let expected: Vec<u64> = (first..first + OFFERED_INTERVALS).collect();
    assert_eq!(cleared, expected, "every offered interval cleared once, in order");
    let settled_set: BTreeSet<u64> = settled.iter().copied().collect();
    assert_eq!(settled_set.len(), settled.len(), "no interval settled twice");
    assert!(settled.windows(2).all(|pair| pair[0] < pair[1]), "settled in order");
    assert!(expected.iter().all(|interval| settled_set.contains(interval)), "every offered interval settled");
}

/// The bounds add up to less than `BLOCK_BYTES_MAX` (PROTOCOL.md §5.7): a
/// header; transactions of at most `TRANSACTION_BYTES_PER_BLOCK_MAX`; at
/// most one clearing receipt and one trade per offer of the block's clearing
/// work; at most one settlement receipt and one bill per unit of settlement
/// work, which is `SETTLEMENT_WORK_PER_BLOCK_MAX`, or one interval's alone:
/// its zones, meters (at most `METERS_MAX`) and contracts (at most one per account
/// that traded, so at most its offers).
#[test]
fn a_block_within_every_work_bound_fits_in_block_bytes_max() {
    let key = PublicKey([0xff; 32]);
    let header = BlockHeader {
        community_id: gridshare_ledger::ids::CommunityId([0xff; 32]),
        height: u64::MAX,
        previous_hash: Hash::ZERO,
        timestamp_ms: u64::MAX,
        proposer: key,
        tx_root: Hash::ZERO,
        tx_count: u32::MAX,
        receipt_root: Hash::ZERO,
        receipt_count: u32::MAX,
        state_root: Hash::ZERO,
    };
    let clearing = Receipt::Clearing(ClearingReceipt {
        interval: u64::MAX,
        mechanism: Mechanism::PayAsBid,
        k_thousandths: u16::MAX,
        network_fee_micro_per_kwh: u64::MAX,
        offers: u32::MAX,
        clearing_price_micro_per_kwh: Some(u64::MAX),
        volume_wh: u64::MAX,
        trades: Vec::new(),
        zones: Vec::new(),
    });
    let zone = ZoneReceipt {
        price_micro_per_kwh: Some(u64::MAX),
        net_export_wh: i64::MIN,
        limits: ZoneLimits::OPEN,
        congested: true,
    };
    let trade = TradeReceipt {
        buy_offer: Hash::ZERO,
        sell_offer: Hash::ZERO,
        buyer: key,
        seller: key,
        energy_wh: u64::MAX,
        price_micro_per_kwh: u64::MAX,
        buyer_price_micro_per_kwh: u64::MAX,
    };
    let tariffs = Tariffs {
        effective_from_interval: u64::MAX,
        grid_import_micro_per_kwh: u64::MAX,
        grid_feed_in_micro_per_kwh: u64::MAX,
        network_fee_micro_per_kwh: u64::MAX,
    };
    let settlement = Receipt::Settlement(SettlementReceipt {
        interval: u64::MAX,
        tariffs,
        bills: Vec::new(),
        zones: Vec::new(),
    });
    let zone_settlement = ZoneSettlement {
        measured_net_export_wh: i64::MIN,
        measured_meters: u32::MAX,
        estimated_meters: u32::MAX,
        zone_meter_net_export_wh: Some(i64::MIN),
    };
    let bill = Bill {
        account: key,
        sold_wh: u64::MAX,
        bought_wh: u64::MAX,
        sold_nano: i128::MAX,
        bought_nano: i128::MIN,
        fees_nano: i128::MIN,
        metered_net_export_wh: i64::MIN,
        deviation_wh: i64::MIN,
        grid_import_wh: u64::MAX,
        grid_import_nano: i128::MIN,
        feed_in_wh: u64::MAX,
        feed_in_nano: i128::MAX,
        total_nano: i128::MIN,
        estimated_import_wh: u64::MAX,
        estimate_refund_wh: u64::MAX,
        estimate_refund_nano: i128::MAX,
    };
    let size = |bytes: Vec<u8>| bytes.len();
    // The sizes PROTOCOL.md §5.7 gives.
    assert_eq!(
        [
            &to_bytes(&header),
            &to_bytes(&clearing),
            &to_bytes(&trade),
            &to_bytes(&zone),
            &to_bytes(&settlement),
            &to_bytes(&bill),
            &to_bytes(&zone_settlement)
        ]
        .map(|bytes| bytes.len()),
        [216, 49, 152, 34, 49, 208, 25]
    );
    // Vec lengths are u32 prefixes. A unit of clearing work is an offer
    // (at most one trade) or a zone of an interval's receipt.
    // The first interval alone may have 2^14 offers and every zone.
    let clearing_bytes = (CLEARING_WORK_PER_BLOCK_MAX + ZONES_MAX)
        * (size(to_bytes(&clearing)) + size(to_bytes(&trade)) + size(to_bytes(&zone)));
    // A unit of settlement work is a meter or a contract (at most one
    // bill) or a zone of the receipt.
    let settlement_work =
        SETTLEMENT_WORK_PER_BLOCK_MAX.max(METERS_MAX + CLEARING_WORK_PER_BLOCK_MAX) + ZONES_MAX;
    let settlement_bytes = settlement_work
        * (size(to_bytes(&settlement)) + size(to_bytes(&bill)) + size(to_bytes(&zone_settlement)));
    let total =
        size(to_bytes(&header)) + 4 + TRANSACTION_BYTES_PER_BLOCK_MAX + 4 + clearing_bytes + settlement_bytes;
    assert!(total <= BLOCK_BYTES_MAX, "the bounds allow a block of {total} bytes");
}
