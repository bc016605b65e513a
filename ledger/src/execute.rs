//! The state machine: `execute(state, block) -> (state', receipts)`, a pure,
//! deterministic function (docs/PROTOCOL.md §5). A block first clears the
//! intervals whose gate has closed, then applies its transactions in order,
//! then settles the intervals whose settlement time has come (so that a
//! meter reading in the block counts for the interval it settles), each
//! within a budget of work, so that every block fits in
//! [`BLOCK_BYTES_MAX`]: after an outage the backlog drains block by block.
//!
//! Why this cannot overflow (docs/PROTOCOL.md §5.7): admission bounds what
//! clearing and settlement compute with, so that every amount fits with
//! orders of magnitude to spare. A meter has at most [`METER_POWER_MAX_W`]
//! (10⁹ W) per direction, so one interval (at most 24 h, tolerance at most
//! 100 %) moves at most `cap_wh ≤ 10⁹ × 86.4·10⁶ × 2 / 3.6·10⁹ = 4.8·10¹⁰`
//! Wh per register; an account at most ten times that
//! ([`ACCOUNT_POWER_MAX_W`]), a community at most [`METERS_MAX`] (2¹⁴)
//! meters. Blocks end at genesis + [`LIFETIME_MS`] (2⁵⁰ ms), so over the
//! whole lifetime a register rises at most `10⁹ W × 2⁵⁰ ms × 2 / 3.6·10⁶ ≈
//! 6.3·10¹⁷` Wh (an estimate's `import_wh` fits a `u64`), an account's
//! meters ten times that (6.3·10¹⁸ < 2⁶⁴: a bill's refunded energy fits), and
//! all meters together ≈ 6.6·10²³ Wh. Every price and tariff is at most 10⁹
//! micro per kWh, so all the money clearing and settlement ever move is
//! below 2 × 6.6·10²³ × 2·10⁹ ≈ 2.6·10³³ nano, and credits are at most
//! [`CREDITS_TOTAL_MAX_NANO`] (10³⁶) in total: every balance, the grid's and
//! the network's included, stays below 10³⁷ in magnitude, far inside
//! `i128::MAX` ≈ 1.7·10³⁸. A bill's energies are per account and interval,
//! at most 10 × 4.8·10¹⁰ Wh per direction: they fit an `i64`. The checked
//! arithmetic stays as a second line of defence; the property tests in
//! `tests/properties.rs` assert that no block ever fails to build or to
//! execute.

use std::collections::BTreeMap;

use gridshare_matching as matching;

use crate::Hash;
use crate::block::{
    Bill, Block, BlockHeader, ClearingReceipt, Receipt, SettlementReceipt, TradeReceipt, ZoneReceipt,
    ZoneSettlement, receipt_root, tx_root,
};
use crate::genesis::{Genesis, Mechanism, Tariffs};
use crate::ids::{AccountId, KeyError, MeterId, PublicKey, SignatureError};
use crate::state::{Account, Contract, Estimate, Meter, OpenOffer, Position, State, ZoneMeter};
use crate::tx::{MeterReading, Offer, Side, SignedTx, Tx};

/// The longest text field (zone, payment reference), in bytes.
pub const TEXT_LEN_MAX: usize = 64;
/// The most power a meter may be registered with, per direction: 1 GW.
pub const METER_POWER_MAX_W: u64 = 1_000_000_000;
/// The most power an account's meters may add up to, per direction.
pub const ACCOUNT_POWER_MAX_W: u64 = 10_000_000_000;
/// The most meters a community may register: one interval's settlement
/// then fits in a block (docs/PROTOCOL.md §5.7).
pub const METERS_MAX: usize = 1 << 14;
/// At most this many tariff entries (the one in force for the next
/// interval to settle, and the changes to come): a day of 15-minute
/// dynamic prices ten times over.
pub const TARIFF_SCHEDULE_MAX: usize = 1 << 10;
/// The most (interval, zone) limits the DSO may have set for intervals not
/// yet cleared: also the most a block can set.
pub const ZONE_LIMITS_MAX: usize = 1 << 14;
/// The most intervals one `SetZoneLimits` or `SetIntervalTariffs` covers: a
/// day of 15-minute intervals. With the bound on a block's transactions, it
/// bounds the entries a block writes.
pub const ZONE_LIMIT_INTERVALS_MAX: u32 = 96;
/// At most this many intervals have tariffs of their own
/// (`SetIntervalTariffs`) waiting to be settled.
pub const INTERVAL_TARIFFS_MAX: usize = 1 << 14;
/// The most money the registrars may ever credit, in total, in nano.
pub const CREDITS_TOTAL_MAX_NANO: i128 = 1_000_000_000_000_000_000_000_000_000_000_000_000;
/// How long a community lives: no block is later than the genesis time
/// plus this (2^50 ms, about 35,700 years), which bounds every sum over
/// intervals.
pub const LIFETIME_MS: u64 = 1 << 50;
/// A block clears intervals, in order, while the open offers and zones of
/// those it cleared add up to at most this; it always clears the first due one, and
/// later blocks go on where it stopped. Also the most offers an interval
/// may have (the genesis's `max_offers_per_interval`).
pub const CLEARING_WORK_PER_BLOCK_MAX: usize = 1 << 14;
/// A block settles intervals, in order, while the meters and contracts of
/// those it settled add up to at most this; it always settles the first
/// due one, and later blocks go on where it stopped.
pub const SETTLEMENT_WORK_PER_BLOCK_MAX: usize = 1 << 14;
/// The most bytes a block's transactions may have, their canonical
/// encodings summed.
pub const TRANSACTION_BYTES_PER_BLOCK_MAX: usize = 2 << 20;
/// No valid block is larger, canonically encoded: what the bounds above
/// and [`METERS_MAX`] add up to, with room to spare (docs/PROTOCOL.md §5.7).
pub const BLOCK_BYTES_MAX: usize = 16 << 20;

/// Whether `execute` checks signatures. A node that verified every
/// transaction when it entered its mempool may skip them; everyone else
/// (validators voting on a proposal from another, replicas, the audit) checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signatures {
    Verify,
    AlreadyVerified,
}

/// Why a transaction is not admitted. It never enters a block, and a block
/// that contains one is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("bad signature: {0}")]
    BadSignature(#[from] SignatureError),
    #[error("{key} cannot be registered: {reason}")]
    InvalidKey { key: PublicKey, reason: KeyError },
    #[error("{0} is not a registrar of this community")]
    NotARegistrar(PublicKey),
    #[error("account {0} is not registered")]
    UnknownAccount(AccountId),
    #[error("account {0} is already registered")]
    AccountExists(AccountId),
    #[error("meter {0} is not registered")]
    UnknownMeter(MeterId),
    #[error("meter {0} is already registered")]
    MeterExists(MeterId),
    #[error("nonce {nonce} of {signer} is not above its last nonce {last}")]
    StaleNonce { signer: PublicKey, nonce: u64, last: u64 },
    #[error("nonce {nonce} of {signer} skips ahead: the next is {expected}")]
    NonceGap { signer: PublicKey, nonce: u64, expected: u64 },
    #[error("interval {interval} closed for offers at {gate_closure_ms} ms; the block time is {time_ms} ms")]
    IntervalClosed { interval: u64, gate_closure_ms: u64, time_ms: u64 },
    #[error("interval {interval} is beyond the offer horizon (interval {horizon_interval})")]
    IntervalTooFarAhead { interval: u64, horizon_interval: u64 },
    #[error("energy must be between 1 Wh and {max_wh} Wh, not {energy_wh} Wh")]
    EnergyOutOfRange { energy_wh: u64, max_wh: u64 },
    #[error("{requested_wh} Wh offered in interval {interval} exceeds the meters' limit of {limit_wh} Wh")]
    EnergyAboveMeterLimit { interval: u64, requested_wh: u64, limit_wh: u64 },
    #[error(
        "price {price_micro_per_kwh} is outside the floor {floor_micro_per_kwh} and cap {cap_micro_per_kwh} (micro per kWh)"
    )]
    PriceOutOfRange { price_micro_per_kwh: u64, floor_micro_per_kwh: u64, cap_micro_per_kwh: u64 },
    #[error("the account already has {existing:?} offers in interval {interval}: no self trades")]
    BothSides { interval: u64, existing: Side },
    #[error("insufficient funds: {needed_nano} nano needed, {available_nano} nano available")]
    InsufficientFunds { needed_nano: i128, available_nano: i128 },
    #[error("the attestation's meter {meter} does not belong to account {account}")]
    ForeignMeter { meter: MeterId, account: AccountId },
    #[error(
        "the attestation of interval {reading_interval} is too old for interval {offer_interval} (at most {max_age} intervals)"
    )]
    StaleAttestation { reading_interval: u64, offer_interval: u64, max_age: u64 },
    #[error(
        "meter {meter}: reading for interval {interval} is not after its last reading, for interval {last_interval}"
    )]
    ReadingNotIncreasing { meter: MeterId, interval: u64, last_interval: u64 },
    #[error(
        "meter {meter}: the {register} register went down from {last_wh} Wh to {value_wh} Wh (tamper evidence)"
    )]
    RegisterDecreased { meter: MeterId, register: &'static str, value_wh: u64, last_wh: u64 },
    #[error(
        "meter reading for interval {interval}, which ends at {end_ms} ms, after the block time {time_ms} ms"
    )]
    ReadingBeforeIntervalEnd { interval: u64, end_ms: u64, time_ms: u64 },
    #[error("account {account} already has {max} open offers")]
    TooManyOpenOffers { account: AccountId, max: u32 },
    #[error("interval {interval} already has {max} offers")]
    TooManyOffersInInterval { interval: u64, max: u32 },
    #[error("offer {0} is not open")]
    UnknownOffer(Hash),
    #[error("offer {offer} belongs to {owner}")]
    NotYourOffer { offer: Hash, owner: AccountId },
    #[error("{field} must be positive and at most 10^30 nano, not {value}")]
    InvalidAmount { field: &'static str, value: i128 },
    #[error("{field} is longer than {TEXT_LEN_MAX} bytes")]
    TextTooLong { field: &'static str },
    #[error(
        "tariffs may only change for an interval still open for offers: interval {effective_from} closed at {gate_closure_ms} ms, the block's time is {time_ms} ms"
    )]
    TariffsNotInFuture { effective_from: u64, gate_closure_ms: u64, time_ms: u64 },
    #[error(
        "the tariff schedule holds {TARIFF_SCHEDULE_MAX} changes to come; no more until some take effect"
    )]
    TariffScheduleFull,
    #[error("tariffs must be at most 1000 per kWh")]
    TariffTooHigh,
    #[error("an amount overflowed")]
    Overflow,
    #[error("{0} is not a DSO of this community")]
    NotADso(PublicKey),
    #[error("{0} is neither a registrar nor a DSO of this community: only they set tariffs")]
    NotATariffSetter(PublicKey),
    #[error("interval tariffs must cover 1 to {ZONE_LIMIT_INTERVALS_MAX} intervals, not {intervals}")]
    TariffIntervals { intervals: usize },
    #[error("{INTERVAL_TARIFFS_MAX} intervals to come have tariffs of their own; no more until some settle")]
    IntervalTariffsFull,
    #[error("zone `{zone}` already has its zone meter")]
    ZoneMeterExists { zone: String },
    #[error("zone `{0}` is not one of the community's zones")]
    UnknownZone(String),
    #[error("account {account} has its meters in zone `{zone}`: an account trades in one zone")]
    AccountInAnotherZone { account: AccountId, zone: String },
    #[error("zone limits must cover 1 to {ZONE_LIMIT_INTERVALS_MAX} intervals, not {intervals}")]
    ZoneLimitIntervals { intervals: u32 },
    #[error("the DSO has set {ZONE_LIMITS_MAX} zone limits for intervals to come; no more until some clear")]
    ZoneLimitsFull,
    #[error("meter {meter}: its {direction} power of {power_w} W exceeds the bound of {max_w} W per meter")]
    MeterPowerAboveBound { meter: MeterId, direction: &'static str, power_w: u64, max_w: u64 },
    #[error(
        "account {account}: its meters' {direction} power would be {power_w} W, above the bound of {max_w} W per account"
    )]
    AccountPowerAboveBound { account: AccountId, direction: &'static str, power_w: u128, max_w: u64 },
    #[error("the community already has {max} meters, the most it may have")]
    TooManyMeters { max: usize },
    #[error(
        "crediting {amount_nano} nano would bring the credits to {credits_nano} nano, above the bound of {max_nano} nano"
    )]
    CreditsAboveBound { amount_nano: i128, credits_nano: i128, max_nano: i128 },
    #[error(
        "meter {meter}: reading for interval {interval}, before the meter was registered in interval {registered_interval}"
    )]
    ReadingBeforeRegistration { meter: MeterId, interval: u64, registered_interval: u64 },
    #[error(
        "meter {meter}: the {register} register rose {increase_wh} Wh in {intervals} interval(s); its {power_w} W allow at most {bound_wh} Wh"
    )]
    ReadingAboveCapacity {
        meter: MeterId,
        register: &'static str,
        increase_wh: u64,
        intervals: u64,
        power_w: u64,
        bound_wh: u128,
    },
}

impl Rejection {
    /// A stable machine code for the reason, as the node's API reports it.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::BadSignature(_) => "bad_signature",
            Rejection::InvalidKey { .. } => "invalid_key",
            Rejection::NotARegistrar(_) => "not_a_registrar",
            Rejection::UnknownAccount(_) => "unknown_account",
            Rejection::AccountExists(_) => "account_exists",
            Rejection::UnknownMeter(_) => "unknown_meter",
            Rejection::MeterExists(_) => "meter_exists",
            Rejection::StaleNonce { .. } => "stale_nonce",
            Rejection::NonceGap { .. } => "nonce_gap",
            Rejection::IntervalClosed { .. } => "interval_closed",
            Rejection::IntervalTooFarAhead { .. } => "interval_too_far_ahead",
            Rejection::EnergyOutOfRange { .. } => "energy_out_of_range",
            Rejection::EnergyAboveMeterLimit { .. } => "energy_above_meter_limit",
            Rejection::PriceOutOfRange { .. } => "price_out_of_range",
            Rejection::BothSides { .. } => "both_sides",
            Rejection::InsufficientFunds { .. } => "insufficient_funds",
            Rejection::ForeignMeter { .. } => "foreign_meter",
            Rejection::StaleAttestation { .. } => "stale_attestation",
            Rejection::ReadingNotIncreasing { .. } => "reading_not_increasing",
            Rejection::RegisterDecreased { .. } => "register_decreased",
            Rejection::ReadingBeforeIntervalEnd { .. } => "reading_before_interval_end",
            Rejection::TooManyOpenOffers { .. } => "too_many_open_offers",
            Rejection::TooManyOffersInInterval { .. } => "too_many_offers_in_interval",
            Rejection::UnknownOffer(_) => "unknown_offer",
            Rejection::NotYourOffer { .. } => "not_your_offer",
            Rejection::InvalidAmount { .. } => "invalid_amount",
            Rejection::TextTooLong { .. } => "text_too_long",
            Rejection::TariffsNotInFuture { .. } => "tariffs_not_in_future",
            Rejection::TariffTooHigh => "tariff_too_high",
            Rejection::TariffScheduleFull => "tariff_schedule_full",
            Rejection::Overflow => "overflow",
            Rejection::NotADso(_) => "not_a_dso",
            Rejection::NotATariffSetter(_) => "not_a_tariff_setter",
            Rejection::TariffIntervals { .. } => "tariff_intervals",
            Rejection::IntervalTariffsFull => "interval_tariffs_full",
            Rejection::ZoneMeterExists { .. } => "zone_meter_exists",
            Rejection::UnknownZone(_) => "unknown_zone",
            Rejection::AccountInAnotherZone { .. } => "account_in_another_zone",
            Rejection::ZoneLimitIntervals { .. } => "zone_limit_intervals",
            Rejection::ZoneLimitsFull => "zone_limits_full",
            Rejection::MeterPowerAboveBound { .. } => "meter_power_above_bound",
            Rejection::AccountPowerAboveBound { .. } => "account_power_above_bound",
            Rejection::TooManyMeters { .. } => "too_many_meters",
            Rejection::CreditsAboveBound { .. } => "credits_above_bound",
            Rejection::ReadingBeforeRegistration { .. } => "reading_before_registration",
            Rejection::ReadingAboveCapacity { .. } => "reading_above_capacity",
        }
    }
}

/// Why a block is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block for community {found}, expected {expected}")]
    WrongCommunity { expected: crate::ids::CommunityId, found: crate::ids::CommunityId },
    #[error("block height {found}, expected {expected}")]
    WrongHeight { expected: u64, found: u64 },
    #[error("block links to {found}, expected {expected}")]
    WrongPrevious { expected: Hash, found: Hash },
    #[error("block time {found} ms is not after the previous block's {previous} ms")]
    TimeNotIncreasing { previous: u64, found: u64 },
    #[error("block time {found} ms is after the community's lifetime, which ends at {end} ms")]
    BeyondLifetime { end: u64, found: u64 },
    #[error("proposer {0} is not a validator")]
    NotAValidator(PublicKey),
    #[error("{count} transactions exceed the bound of {max} per block")]
    TooManyTransactions { count: usize, max: u32 },
    #[error("the transactions have {bytes} bytes, more than the {max} a block may carry")]
    TooManyTransactionBytes { bytes: usize, max: usize },
    #[error("the transaction root does not match the transactions")]
    WrongTxRoot,
    #[error("transaction {index} ({kind}) is not admissible: {rejection}")]
    Inadmissible { index: usize, kind: &'static str, rejection: Box<Rejection> },
    #[error("the block's receipts differ from what executing it derives")]
    WrongReceipts,
    #[error("the receipt root does not match the receipts")]
    WrongReceiptRoot,
    #[error("the state root {found} differs from the computed {expected}")]
    WrongStateRoot { expected: Hash, found: Hash },
    #[error("an amount overflowed while clearing or settling")]
    Overflow,
}

/// Executes `block` on `state`: the next state and the receipts it derived.
/// Pure and deterministic: the same inputs give the same outputs everywhere.
pub fn execute(
    genesis: &Genesis,
    state: &State,
    block: &Block,
    signatures: Signatures,
) -> Result<(State, Vec<Receipt>), BlockError> {
    let header = &block.header;
    check_header(genesis, state, header, block.transactions.len())?;
    let bytes = block.transactions.iter().map(transaction_bytes).fold(0_usize, usize::saturating_add);
    if bytes > TRANSACTION_BYTES_PER_BLOCK_MAX {
        return Err(BlockError::TooManyTransactionBytes { bytes, max: TRANSACTION_BYTES_PER_BLOCK_MAX });
    }
    if tx_root(&block.transactions) != header.tx_root
        || u32::try_from(block.transactions.len()).ok() != Some(header.tx_count)
    {
        return Err(BlockError::WrongTxRoot);
    }
    let mut next = state.clone();
    let mut receipts = clear_due(genesis, &mut next, header.timestamp_ms)?;
    for (index, tx) in block.transactions.iter().enumerate() {
        if let Err(rejection) = admit_signed(genesis, &mut next, header.timestamp_ms, tx, signatures) {
            return Err(BlockError::Inadmissible {
                index,
                kind: tx.tx.kind(),
                rejection: Box::new(rejection),
            });
        }
    }
    settle_due(genesis, &mut next, header.timestamp_ms, &mut receipts)?;
    if receipts != block.receipts {
        return Err(BlockError::WrongReceipts);
    }
    if receipt_root(&receipts) != header.receipt_root
        || u32::try_from(receipts.len()).ok() != Some(header.receipt_count)
    {
        return Err(BlockError::WrongReceiptRoot);
    }
    finish(&mut next, header);
    let state_root = next.root(&genesis.community_id);
    if state_root != header.state_root {
        return Err(BlockError::WrongStateRoot { expected: state_root, found: header.state_root });
    }
    Ok((next, receipts))
}

/// A block built from candidates, the state after it, and the candidates that
/// were left out with the reason.
#[derive(Clone, Debug)]
pub struct BuiltBlock {
    pub block: Block,
    pub state: State,
    pub left_out: Vec<(SignedTx, Rejection)>,
}

/// Builds the next block from candidate transactions, in order, leaving out
/// those that are not admissible. Used by the block producer.
pub fn build_block(
    genesis: &Genesis,
    state: &State,
    candidates: Vec<SignedTx>,
    timestamp_ms: u64,
    proposer: PublicKey,
    signatures: Signatures,
) -> Result<BuiltBlock, BlockError> {
    let mut header = BlockHeader {
        community_id: genesis.community_id,
        height: state.height + 1,
        previous_hash: state.last_block_hash,
        timestamp_ms,
        proposer,
        tx_root: Hash::ZERO,
        tx_count: 0,
        receipt_root: Hash::ZERO,
        receipt_count: 0,
        state_root: Hash::ZERO,
    };
    check_header(genesis, state, &header, 0)?;
    let mut next = state.clone();
    let mut receipts = clear_due(genesis, &mut next, timestamp_ms)?;
    let max = usize::try_from(genesis.market.max_transactions_per_block).unwrap_or(usize::MAX);
    let mut transactions = Vec::new();
    let mut left_out = Vec::new();
    let mut bytes = 0_usize;
    for tx in candidates {
        let tx_bytes = transaction_bytes(&tx);
        if transactions.len() == max || bytes.saturating_add(tx_bytes) > TRANSACTION_BYTES_PER_BLOCK_MAX {
            break;
        }
        // Admission checks every rule before it changes anything, so a
        // rejection leaves `next` as it was.
        match admit_signed(genesis, &mut next, timestamp_ms, &tx, signatures) {
            Ok(()) => {
                bytes += tx_bytes;
                transactions.push(tx);
            }
            Err(rejection) => left_out.push((tx, rejection)),
        }
    }
    settle_due(genesis, &mut next, timestamp_ms, &mut receipts)?;
    header.tx_root = tx_root(&transactions);
    header.tx_count = u32::try_from(transactions.len()).expect("bounded by max_transactions_per_block");
    header.receipt_root = receipt_root(&receipts);
    header.receipt_count = u32::try_from(receipts.len()).unwrap_or(u32::MAX);
    finish(&mut next, &header);
    header.state_root = next.root(&genesis.community_id);
    next.last_block_hash = header.hash();
    debug_assert_eq!(next.root(&genesis.community_id), header.state_root);
    Ok(BuiltBlock { block: Block { header, transactions, receipts }, state: next, left_out })
}

/// The length of a transaction's canonical encoding.
fn transaction_bytes(tx: &SignedTx) -> usize {
    borsh::object_length(tx).unwrap_or(usize::MAX)
}

fn check_header(
    genesis: &Genesis,
    state: &State,
    header: &BlockHeader,
    tx_count: usize,
) -> Result<(), BlockError> {
    if header.community_id != genesis.community_id {
        return Err(BlockError::WrongCommunity {
            expected: genesis.community_id,
            found: header.community_id,
        });
    }
    if header.height != state.height + 1 {
        return Err(BlockError::WrongHeight { expected: state.height + 1, found: header.height });
    }
    if header.previous_hash != state.last_block_hash {
        return Err(BlockError::WrongPrevious {
            expected: state.last_block_hash,
            found: header.previous_hash,
        });
    }
    if header.timestamp_ms <= state.last_timestamp_ms {
        return Err(BlockError::TimeNotIncreasing {
            previous: state.last_timestamp_ms,
            found: header.timestamp_ms,
        });
    }
    // Bounds every sum over intervals (module docs: why this cannot overflow).
    let end = genesis.genesis_time_ms.saturating_add(LIFETIME_MS);
    if header.timestamp_ms > end {
        return Err(BlockError::BeyondLifetime { end, found: header.timestamp_ms });
    }
    if genesis.voting_power_of(&header.proposer).is_none() {
        return Err(BlockError::NotAValidator(header.proposer));
    }
    let max = genesis.market.max_transactions_per_block;
    if tx_count > usize::try_from(max).unwrap_or(usize::MAX) {
        return Err(BlockError::TooManyTransactions { count: tx_count, max });
    }
    Ok(())
}

/// Records the block in the state and asserts the conservation invariants.
fn finish(next: &mut State, header: &BlockHeader) {
    next.height = header.height;
    next.last_block_hash = header.hash();
    next.last_timestamp_ms = header.timestamp_ms;
    if let Err(broken) = next.check_invariants() {
        panic!("state machine invariant broken at height {}: {broken}", header.height);
    }
}

/// The state a block at `time_ms` admits its transactions against: `state`
/// with every interval whose gate closed by then cleared (docs/PROTOCOL.md
/// §5.3, step 2), and the clearing receipts. What a block builder or a
/// mempool checks candidates with; the block's settlements come after them.
pub fn cleared(genesis: &Genesis, state: &State, time_ms: u64) -> Result<(State, Vec<Receipt>), BlockError> {
    let mut next = state.clone();
    let receipts = clear_due(genesis, &mut next, time_ms)?;
    Ok((next, receipts))
}

/// Clears the intervals whose gate closed by `time_ms`, in interval order,
/// within the block's clearing work. Runs before the block's transactions:
/// none of them can be an offer or a cancellation for an interval due here,
/// cleared or not (its gate is closed).
fn clear_due(genesis: &Genesis, state: &mut State, time_ms: u64) -> Result<Vec<Receipt>, BlockError> {
    let mut receipts = Vec::new();
    // Intervals with gate(i) ≤ t, i.e. start(i) ≤ t + lead, are due.
    let due_below =
        intervals_started_by(genesis, time_ms.saturating_add(genesis.market.gate_closure_lead_ms));
    if due_below > state.next_clearing_interval {
        // The due intervals with open offers, each with their count.
        let mut due: BTreeMap<u64, usize> = BTreeMap::new();
        for (interval, _) in state
            .offers_by_interval
            .range((state.next_clearing_interval, Hash::ZERO)..(due_below, Hash::ZERO))
        {
            *due.entry(*interval).or_default() += 1;
        }
        // Bounded work: after an outage the backlog clears over several
        // blocks, each within what a block can carry.
        // An interval's work is its offers and its receipt's zones.
        let mut cleared_below = due_below;
        let mut work = 0_usize;
        for (interval, offers) in due {
            let interval_work = offers.saturating_add(genesis.zones.len());
            if work > 0 && work.saturating_add(interval_work) > CLEARING_WORK_PER_BLOCK_MAX {
                cleared_below = interval;
                break;
            }
            receipts.push(Receipt::Clearing(clear_interval(genesis, state, interval)?));
            work = work.saturating_add(interval_work);
        }
        state.next_clearing_interval = cleared_below;
        // Cleared intervals, with offers or not, need their limits no more.
        state.zone_limits = state.zone_limits.split_off(&(cleared_below, 0));
    }
    Ok(receipts)
}

/// Settles the intervals whose settlement time has come by `time_ms` and
/// that are cleared, in interval order, within the block's settlement
/// work, appending the receipts. Runs after the block's transactions, so a reading that reaches
/// the block that settles its interval counts: after a stall, readings sent
/// on time are not billed as missing because the chain was late.
fn settle_due(
    genesis: &Genesis,
    state: &mut State,
    time_ms: u64,
    receipts: &mut Vec<Receipt>,
) -> Result<(), BlockError> {
    // Intervals with end(i) + delay ≤ t, i.e. start(i + 1) ≤ t − delay, are settled.
    let due_below = match time_ms.checked_sub(genesis.market.settlement_delay_ms) {
        Some(time) => intervals_started_by(genesis, time).saturating_sub(1),
        None => 0,
    };
    // Never an interval not cleared yet: its trades are not known.
    let settled_below = due_below.min(state.next_clearing_interval);
    if settled_below > state.next_settlement_interval {
        let from = state.next_settlement_interval;
        // Every interval is settled, but before the first meter's
        // registration (a household's or a zone's) only contracts can bill
        // anyone: skip to them, so a community without meters does not walk
        // through empty intervals.
        let household_meters = state.meters.values().map(|meter| meter.registered_interval);
        let zone_meters = state.zone_meters.values().map(|meter| meter.registered_interval);
        let meters_from = household_meters.chain(zone_meters).min();
        let every_interval_from = meters_from.map_or(settled_below, |first| first.clamp(from, settled_below));
        let contract_intervals: std::collections::BTreeSet<u64> = state
            .contracts
            .range((from, PublicKey([0; 32]))..(every_interval_from, PublicKey([0; 32])))
            .map(|((interval, _), _)| *interval)
            .collect();
        // The work is bounded: after a long halt (or under a block time an
        // audit is shown and cannot trust) settlement catches up over
        // several blocks instead of billing every meter for millions of
        // intervals in one.
        let mut settled_to = settled_below;
        let mut work = 0_usize;
        let mut first = true;
        // Settling registers no meter: their registration intervals, sorted
        // once, count the meters of every interval visited.
        let mut registered: Vec<u64> = state.meters.values().map(|meter| meter.registered_interval).collect();
        registered.sort_unstable();
        for interval in contract_intervals.into_iter().chain(every_interval_from..settled_below) {
            let interval_work = settlement_work(genesis, state, &registered, interval);
            if !first && work.saturating_add(interval_work) > SETTLEMENT_WORK_PER_BLOCK_MAX {
                settled_to = interval;
                break;
            }
            first = false;
            if let Some(receipt) = settle_interval(genesis, state, interval)? {
                receipts.push(Receipt::Settlement(receipt));
            }
            work = work.saturating_add(interval_work);
        }
        state.next_settlement_interval = settled_to;
        // A settled interval's readings are in the meters' bases now, and
        // its tariffs in its receipt.
        state.readings = state.readings.split_off(&(settled_to, PublicKey([0; 32])));
        state.interval_tariffs = state.interval_tariffs.split_off(&settled_to);
    }
    Ok(())
}

/// The work of settling `interval`: the meters registered by then (those
/// registered in it included; `registered` holds every meter's registration
/// interval, sorted), the interval's contracts and the zones. It bounds the
/// interval's bills (one per account with a meter or a contract) and its
/// receipt's zones.
fn settlement_work(genesis: &Genesis, state: &State, registered: &[u64], interval: u64) -> usize {
    let meters = registered.partition_point(|&registered| registered <= interval);
    let contracts =
        state.contracts.range((interval, PublicKey([0; 32]))..=(interval, PublicKey([0xff; 32]))).count();
    meters + contracts + genesis.zones.len()
}

/// How many intervals have started by `time_ms`: the index of the first
/// interval that starts after it.
fn intervals_started_by(genesis: &Genesis, time_ms: u64) -> u64 {
    match time_ms.checked_sub(genesis.genesis_time_ms) {
        Some(elapsed) => elapsed / genesis.market.interval_length_ms + 1,
        None => 0,
    }
}

/// Runs the auction of one interval over its open offers and moves the money.
fn clear_interval(
    genesis: &Genesis,
    state: &mut State,
    interval: u64,
) -> Result<ClearingReceipt, BlockError> {
    let tariffs = state.tariffs_for(interval);
    let ids: Vec<Hash> = state
        .offers_by_interval
        .range((interval, Hash::ZERO)..=(interval, Hash([0xff; 32])))
        .map(|(_, id)| *id)
        .collect();
    let mut offers = Vec::with_capacity(ids.len());
    for id in &ids {
        let offer = state.offers.remove(id).expect("the interval index names open offers only");
        state.offers_by_interval.remove(&(interval, *id));
        offers.push((*id, offer));
    }
    let orders: Vec<matching::ZonalOrder<Hash>> = offers
        .iter()
        .map(|(id, offer)| matching::ZonalOrder {
            order: matching::Order {
                id: *id,
                side: match offer.side {
                    Side::Buy => matching::Side::Buy,
                    Side::Sell => matching::Side::Sell,
                },
                energy_wh: offer.energy_wh,
                price_micro_per_kwh: offer.price_micro_per_kwh,
            },
            zone: offer.zone,
        })
        .collect();
    let limits = state.zone_limits_for(genesis, interval);
    let zones: Vec<matching::ZoneLimits> = limits
        .iter()
        .map(|limits| matching::ZoneLimits {
            import_wh_max: limits.import_wh_max,
            export_wh_max: limits.export_wh_max,
        })
        .collect();
    let params = matching::Params {
        mechanism: match genesis.market.mechanism {
            Mechanism::Uniform => matching::Mechanism::Uniform,
            Mechanism::PayAsBid => matching::Mechanism::PayAsBid,
        },
        k_thousandths: genesis.market.k_thousandths,
        network_fee_micro_per_kwh: tariffs.network_fee_micro_per_kwh,
        limits: matching::Limits::default(),
    };
    // Admission keeps every order inside the auction's bounds and in a zone.
    let matching::ZonalClearing { clearing, zones: zone_clearings } =
        matching::clear_zonal(orders, &zones, &params).expect("admitted offers are valid auction input");

    // Offers are in ascending id order, as are the fills: index i is offer i.
    let mut trades = Vec::with_capacity(clearing.trades.len());
    for trade in &clearing.trades {
        let (buy_id, buy) = &offers[trade.buy];
        let (sell_id, sell) = &offers[trade.sell];
        // Under uniform pricing the buyer pays its zone's price (§6.5).
        let buyer_price = match genesis.market.mechanism {
            Mechanism::Uniform => {
                zone_clearings[buy.zone as usize].price_micro_per_kwh.unwrap_or(trade.price_micro_per_kwh)
            }
            Mechanism::PayAsBid => trade.price_micro_per_kwh,
        };
        let energy = i128::from(trade.energy_wh);
        let paid_to_seller = energy * i128::from(trade.price_micro_per_kwh);
        let paid_by_buyer = energy * i128::from(buyer_price);
        let fee = energy * i128::from(tariffs.network_fee_micro_per_kwh);
        move_money(state, &buy.account, -(paid_by_buyer + fee))?;
        move_money(state, &sell.account, paid_to_seller)?;
        // The fee and the congestion rent go to the network account.
        let to_network = fee + (paid_by_buyer - paid_to_seller);
        state.network_balance_nano =
            state.network_balance_nano.checked_add(to_network).ok_or(BlockError::Overflow)?;
        let buyer = state.contracts.entry((interval, buy.account)).or_default();
        buyer.bought_wh += trade.energy_wh;
        buyer.bought_nano -= paid_by_buyer;
        buyer.fees_nano -= fee;
        let seller = state.contracts.entry((interval, sell.account)).or_default();
        seller.sold_wh += trade.energy_wh;
        seller.sold_nano += paid_to_seller;
        trades.push(TradeReceipt {
            buy_offer: *buy_id,
            sell_offer: *sell_id,
            buyer: buy.account,
            seller: sell.account,
            energy_wh: trade.energy_wh,
            price_micro_per_kwh: trade.price_micro_per_kwh,
            buyer_price_micro_per_kwh: buyer_price,
        });
    }
    state.offer_counts.remove(&interval);
    for (_, offer) in &offers {
        let account = state.accounts.get_mut(&offer.account).expect("offers belong to registered accounts");
        account.reserved_nano -= offer.reserved_nano;
        account.open_offers -= 1;
        state.positions.remove(&(offer.account, interval));
    }
    Ok(ClearingReceipt {
        interval,
        mechanism: genesis.market.mechanism,
        k_thousandths: genesis.market.k_thousandths,
        network_fee_micro_per_kwh: tariffs.network_fee_micro_per_kwh,
        offers: u32::try_from(offers.len()).unwrap_or(u32::MAX),
        clearing_price_micro_per_kwh: clearing.clearing_price_micro_per_kwh,
        volume_wh: clearing.volume_wh,
        trades,
        zones: zone_clearings
            .iter()
            .zip(&limits)
            .map(|(zone, limits)| ZoneReceipt {
                price_micro_per_kwh: zone.price_micro_per_kwh,
                net_export_wh: zone.net_export_wh,
                limits: *limits,
                congested: zone.congested,
            })
            .collect(),
    })
}

fn move_money(state: &mut State, account: &AccountId, amount_nano: i128) -> Result<(), BlockError> {
    let account = state.accounts.get_mut(account).expect("trading accounts are registered");
    account.balance_nano = account.balance_nano.checked_add(amount_nano).ok_or(BlockError::Overflow)?;
    Ok(())
}

/// What an account's meters measured or were estimated at in one interval.
#[derive(Clone, Copy, Debug, Default)]
struct Metered {
    /// Σ of the meters' net export, estimates included (as minus the
    /// capacity).
    net_export_wh: i128,
    estimated_import_wh: u64,
    refund_wh: u64,
    refund_nano: i128,
}

/// Settles one interval (docs/PROTOCOL.md §5.6): every meter registered
/// before it is billed, measured where its readings allow it and estimated
/// at its full import capacity where they do not, with earlier estimates
/// trued up when a reading closes a gap; then each account's metered net
/// export against what it traded, the deviation bought from or sold to the
/// grid at the tariffs. The receipt, `None` when nobody is billed, and the
/// work done: the meters and contracts settled.
fn settle_interval(
    genesis: &Genesis,
    state: &mut State,
    interval: u64,
) -> Result<Option<SettlementReceipt>, BlockError> {
    let tariffs = state.tariffs_for(interval);
    // The lowest price of this interval's energy: what an estimate is
    // refunded at, so that a refund never beats an honest bill.
    let rate_micro_per_kwh = tariffs.grid_feed_in_micro_per_kwh.min(tariffs.grid_import_micro_per_kwh);
    let mut metered: BTreeMap<AccountId, Metered> = BTreeMap::new();
    let mut zones = vec![ZoneSettlement::default(); genesis.zones.len()];
    let zone_of: BTreeMap<&str, usize> =
        genesis.zones.iter().enumerate().map(|(index, zone)| (zone.name.as_str(), index)).collect();
    let readings = &state.readings;
    for (key, meter) in &mut state.meters {
        if meter.registered_interval > interval {
            continue;
        }
        let reading = readings.get(&(interval, *key)).map(|&(import_wh_total, export_wh_total)| {
            MeterReading { meter: *key, interval, import_wh_total, export_wh_total }
        });
        if meter.registered_interval == interval {
            // Registered during the interval: nothing to bill yet, but its
            // reading at the end is where measuring starts.
            if reading.is_some() {
                meter.base = reading;
            }
            continue;
        }
        let entry = metered.entry(meter.owner).or_default();
        let measured = settle_meter(genesis, meter, reading, interval, rate_micro_per_kwh, entry)?;
        // What the zone's meters measured; an estimated one counts apart.
        let zone = *zone_of
            .get(meter.zone.as_str())
            .expect("registration admits meters in the genesis's zones only");
        let zone = &mut zones[zone];
        match measured {
            Some(net) => {
                zone.measured_net_export_wh = i64::try_from(i128::from(zone.measured_net_export_wh) + net)
                    .map_err(|_| BlockError::Overflow)?;
                zone.measured_meters += 1;
            }
            None => zone.estimated_meters += 1,
        }
    }
    for (key, meter) in &mut state.zone_meters {
        let reading = readings.get(&(interval, *key)).map(|&(import_wh_total, export_wh_total)| {
            MeterReading { meter: *key, interval, import_wh_total, export_wh_total }
        });
        if let Some(zone) = zones.get_mut(meter.zone as usize) {
            zone.zone_meter_net_export_wh = settle_zone_meter(meter, reading, interval)?;
        }
    }
    let contracts: Vec<(AccountId, Contract)> = state
        .contracts
        .range((interval, PublicKey([0; 32]))..=(interval, PublicKey([0xff; 32])))
        .map(|((_, account), contract)| (*account, *contract))
        .collect();
    for (account, _) in &contracts {
        state.contracts.remove(&(interval, *account));
        metered.entry(*account).or_default();
    }
    let contracts: BTreeMap<AccountId, Contract> = contracts.into_iter().collect();
    if metered.is_empty() {
        return Ok(None);
    }
    let mut bills = Vec::with_capacity(metered.len());
    for (account, measured) in metered {
        let contract = contracts.get(&account).copied().unwrap_or_default();
        let bill = bill(account, &contract, &measured, &tariffs).ok_or(BlockError::Overflow)?;
        let grid_money = bill
            .grid_import_nano
            .checked_add(bill.feed_in_nano)
            .and_then(|sum| sum.checked_add(bill.estimate_refund_nano))
            .ok_or(BlockError::Overflow)?;
        move_money(state, &account, grid_money)?;
        state.grid_balance_nano =
            state.grid_balance_nano.checked_sub(grid_money).ok_or(BlockError::Overflow)?;
        bills.push(bill);
    }
    Ok(Some(SettlementReceipt { interval, tariffs, bills, zones }))
}

/// Bills one meter registered before `interval` for it, moving its base and
/// estimate, into its owner's `entry` (cases 1 to 4 of docs/PROTOCOL.md
/// §5.6). Its measured net export, `None` when it was estimated.
fn settle_meter(
    genesis: &Genesis,
    meter: &mut Meter,
    reading: Option<MeterReading>,
    interval: u64,
    rate_micro_per_kwh: u64,
    entry: &mut Metered,
) -> Result<Option<i128>, BlockError> {
    let capacity_wh = genesis.meter_capacity_wh(meter.max_import_w);
    let estimated = |entry: &mut Metered| -> Result<(), BlockError> {
        entry.net_export_wh =
            entry.net_export_wh.checked_sub(i128::from(capacity_wh)).ok_or(BlockError::Overflow)?;
        entry.estimated_import_wh =
            entry.estimated_import_wh.checked_add(capacity_wh).ok_or(BlockError::Overflow)?;
        Ok(())
    };
    let extend = |estimate: Option<Estimate>| -> Result<Estimate, BlockError> {
        let estimate = estimate.unwrap_or(Estimate { import_wh: 0, rate_micro_per_kwh: u64::MAX });
        Ok(Estimate {
            import_wh: estimate.import_wh.checked_add(capacity_wh).ok_or(BlockError::Overflow)?,
            rate_micro_per_kwh: estimate.rate_micro_per_kwh.min(rate_micro_per_kwh),
        })
    };
    let measured = match (meter.base, reading) {
        // 1. Nothing to measure from: the least the physics bound allows,
        //    and not refundable, since no reading before it bounds a refund.
        (None, reading) => {
            estimated(entry)?;
            if reading.is_some() {
                meter.base = reading;
            }
            None
        }
        // 2. Readings at both ends of the interval: measured exactly.
        (Some(base), Some(reading)) if base.interval + 1 == interval => {
            assert!(meter.estimate.is_none(), "a base at the interval before leaves no estimate");
            let net = register_rise(base.export_wh_total, reading.export_wh_total)
                - register_rise(base.import_wh_total, reading.import_wh_total);
            entry.net_export_wh = entry.net_export_wh.checked_add(net).ok_or(BlockError::Overflow)?;
            meter.base = Some(reading);
            Some(net)
        }
        // 3. A reading closes a gap: this interval is estimated like the
        //    ones before it, then the whole gap is trued up.
        (Some(base), Some(reading)) => {
            assert!(base.interval + 1 < interval, "the base is of an earlier interval");
            estimated(entry)?;
            let estimate = extend(meter.estimate)?;
            // The estimate covers exactly the intervals since the base.
            assert_eq!(
                Some(u128::from(estimate.import_wh)),
                u128::from(interval - base.interval).checked_mul(u128::from(capacity_wh)),
                "an estimate covers the intervals after its base"
            );
            let estimated_wh = i128::from(estimate.import_wh);
            // Two u64 rises: their difference cannot overflow an i128.
            let measured_net = register_rise(base.export_wh_total, reading.export_wh_total)
                - register_rise(base.import_wh_total, reading.import_wh_total);
            // The import the estimate billed and the meter did not take,
            // less any export it did not bill: the physics bound keeps the
            // import rise within the estimate, so this is never negative.
            let refund_wh =
                estimated_wh.min(estimated_wh.checked_add(measured_net).ok_or(BlockError::Overflow)?);
            assert!(refund_wh >= 0, "the physics bound keeps the import within the estimate");
            let refund_wh = u64::try_from(refund_wh).map_err(|_| BlockError::Overflow)?;
            let refund_nano = i128::from(refund_wh)
                .checked_mul(i128::from(estimate.rate_micro_per_kwh))
                .ok_or(BlockError::Overflow)?;
            entry.refund_wh = entry.refund_wh.checked_add(refund_wh).ok_or(BlockError::Overflow)?;
            entry.refund_nano = entry.refund_nano.checked_add(refund_nano).ok_or(BlockError::Overflow)?;
            meter.base = Some(reading);
            meter.estimate = None;
            None
        }
        // 4. No reading yet for the interval: estimated, refundable later.
        (Some(_), None) => {
            estimated(entry)?;
            meter.estimate = Some(extend(meter.estimate)?);
            None
        }
    };
    Ok(measured)
}

/// Measures a zone meter over `interval`: its net export when its base is
/// the reading that ends the interval before and `reading` ends this one;
/// a reading becomes the base either way. Nobody is billed.
fn settle_zone_meter(
    meter: &mut ZoneMeter,
    reading: Option<MeterReading>,
    interval: u64,
) -> Result<Option<i64>, BlockError> {
    if meter.registered_interval > interval {
        return Ok(None);
    }
    let Some(reading) = reading else { return Ok(None) };
    let measured = match meter.base {
        Some(base) if base.interval + 1 == interval => {
            let net = register_rise(base.export_wh_total, reading.export_wh_total)
                - register_rise(base.import_wh_total, reading.import_wh_total);
            Some(i64::try_from(net).map_err(|_| BlockError::Overflow)?)
        }
        _ => None,
    };
    meter.base = Some(reading);
    Ok(measured)
}

/// How much a register rose from `before` to `after`. Admission refuses a
/// register that goes down, so a fall is a broken invariant.
fn register_rise(before: u64, after: u64) -> i128 {
    assert!(after >= before, "admission keeps registers from going down");
    i128::from(after - before)
}

fn bill(account: AccountId, contract: &Contract, metered: &Metered, tariffs: &Tariffs) -> Option<Bill> {
    let contracted = i128::from(contract.sold_wh) - i128::from(contract.bought_wh);
    let deviation = metered.net_export_wh.checked_sub(contracted)?;
    let (grid_import_wh, feed_in_wh) =
        if deviation < 0 { (deviation.unsigned_abs(), 0) } else { (0, deviation.unsigned_abs()) };
    let grid_import_nano =
        -i128::try_from(grid_import_wh).ok()?.checked_mul(i128::from(tariffs.grid_import_micro_per_kwh))?;
    let feed_in_nano =
        i128::try_from(feed_in_wh).ok()?.checked_mul(i128::from(tariffs.grid_feed_in_micro_per_kwh))?;
    let total_nano = contract
        .sold_nano
        .checked_add(contract.bought_nano)?
        .checked_add(contract.fees_nano)?
        .checked_add(grid_import_nano)?
        .checked_add(feed_in_nano)?
        .checked_add(metered.refund_nano)?;
    Some(Bill {
        account,
        sold_wh: contract.sold_wh,
        bought_wh: contract.bought_wh,
        sold_nano: contract.sold_nano,
        bought_nano: contract.bought_nano,
        fees_nano: contract.fees_nano,
        metered_net_export_wh: i64::try_from(metered.net_export_wh).ok()?,
        deviation_wh: i64::try_from(deviation).ok()?,
        grid_import_wh: u64::try_from(grid_import_wh).ok()?,
        grid_import_nano,
        feed_in_wh: u64::try_from(feed_in_wh).ok()?,
        feed_in_nano,
        total_nano,
        estimated_import_wh: metered.estimated_import_wh,
        estimate_refund_wh: metered.refund_wh,
        estimate_refund_nano: metered.refund_nano,
    })
}

/// Verifies `tx`'s signatures when `signatures` asks for it, then admits it.
fn admit_signed(
    genesis: &Genesis,
    state: &mut State,
    time_ms: u64,
    tx: &SignedTx,
    signatures: Signatures,
) -> Result<(), Rejection> {
    if signatures == Signatures::Verify {
        tx.verify(&genesis.community_id)?;
    }
    admit(genesis, state, time_ms, tx)
}

/// Admits one transaction at block time `time_ms`: checks every rule, then
/// applies it. On a rejection `state` is unchanged.
pub fn admit(genesis: &Genesis, state: &mut State, time_ms: u64, tx: &SignedTx) -> Result<(), Rejection> {
    match &tx.tx {
        Tx::RegisterAccount { registrar, nonce, account, credit_limit_nano } => {
            check_registrar(genesis, state, registrar, *nonce)?;
            check_amount("credit limit", *credit_limit_nano, true)?;
            account.validate().map_err(|reason| Rejection::InvalidKey { key: *account, reason })?;
            if state.accounts.contains_key(account) {
                return Err(Rejection::AccountExists(*account));
            }
            state.accounts.insert(
                *account,
                Account {
                    balance_nano: 0,
                    reserved_nano: 0,
                    credit_limit_nano: *credit_limit_nano,
                    last_nonce: 0,
                    open_offers: 0,
                    max_import_w: 0,
                    max_export_w: 0,
                    zone: None,
                },
            );
            state.registrar_nonces.insert(*registrar, *nonce);
        }
        Tx::RegisterMeter { registrar, nonce, meter, owner, max_import_w, max_export_w, zone } => {
            check_registrar(genesis, state, registrar, *nonce)?;
            check_text("zone", zone)?;
            if genesis.zone_index(zone).is_none() {
                return Err(Rejection::UnknownZone(zone.clone()));
            }
            check_new_meter(state, meter, *max_import_w, *max_export_w)?;
            if state.meters.len() >= METERS_MAX {
                return Err(Rejection::TooManyMeters { max: METERS_MAX });
            }
            let account = state.accounts.get(owner).ok_or(Rejection::UnknownAccount(*owner))?;
            // An account trades in one zone: its offers' zone is its meters'.
            let zone_index = genesis.zone_index(zone).expect("checked above");
            if let Some(account_zone) = account.zone
                && account_zone != zone_index
            {
                let name = genesis
                    .zones
                    .get(account_zone as usize)
                    .map_or_else(String::new, |zone| zone.name.clone());
                return Err(Rejection::AccountInAnotherZone { account: *owner, zone: name });
            }
            for (direction, sum_w, power_w) in [
                ("import", account.max_import_w, *max_import_w),
                ("export", account.max_export_w, *max_export_w),
            ] {
                let power_w = u128::from(sum_w) + u128::from(power_w);
                if power_w > u128::from(ACCOUNT_POWER_MAX_W) {
                    return Err(Rejection::AccountPowerAboveBound {
                        account: *owner,
                        direction,
                        power_w,
                        max_w: ACCOUNT_POWER_MAX_W,
                    });
                }
            }
            // Both sums are at most ACCOUNT_POWER_MAX_W, checked above.
            let account = state.accounts.get_mut(owner).expect("checked above");
            account.max_import_w += max_import_w;
            account.max_export_w += max_export_w;
            account.zone = Some(zone_index);
            state.meters.insert(
                *meter,
                Meter {
                    owner: *owner,
                    max_import_w: *max_import_w,
                    max_export_w: *max_export_w,
                    zone: zone.clone(),
                    last_reading: None,
                    registered_interval: genesis.interval_at(time_ms),
                    base: None,
                    estimate: None,
                },
            );
            state.registrar_nonces.insert(*registrar, *nonce);
        }
        Tx::Credit { registrar, nonce, account, amount_nano, reference } => {
            check_registrar(genesis, state, registrar, *nonce)?;
            check_amount("amount", *amount_nano, false)?;
            check_text("reference", reference)?;
            let credits = state.credits_nano.checked_add(*amount_nano).ok_or(Rejection::Overflow)?;
            if credits > CREDITS_TOTAL_MAX_NANO {
                return Err(Rejection::CreditsAboveBound {
                    amount_nano: *amount_nano,
                    credits_nano: credits,
                    max_nano: CREDITS_TOTAL_MAX_NANO,
                });
            }
            let entry = state.accounts.get_mut(account).ok_or(Rejection::UnknownAccount(*account))?;
            entry.balance_nano = entry.balance_nano.checked_add(*amount_nano).ok_or(Rejection::Overflow)?;
            state.credits_nano = credits;
            state.registrar_nonces.insert(*registrar, *nonce);
        }
        Tx::Debit { registrar, nonce, account, amount_nano, reference } => {
            check_registrar(genesis, state, registrar, *nonce)?;
            check_amount("amount", *amount_nano, false)?;
            check_text("reference", reference)?;
            let debits = state.debits_nano.checked_add(*amount_nano).ok_or(Rejection::Overflow)?;
            let entry = state.accounts.get_mut(account).ok_or(Rejection::UnknownAccount(*account))?;
            if entry.available_nano() < *amount_nano {
                return Err(Rejection::InsufficientFunds {
                    needed_nano: *amount_nano,
                    available_nano: entry.available_nano(),
                });
            }
            entry.balance_nano -= amount_nano;
            state.debits_nano = debits;
            state.registrar_nonces.insert(*registrar, *nonce);
        }
        Tx::SetTariffs { registrar, nonce, tariffs } => {
            check_registrar(genesis, state, registrar, *nonce)?;
            // Not retroactive: every offer for the interval was made knowing
            // its tariffs, and cleared and settled intervals keep theirs.
            let effective_from = tariffs.effective_from_interval;
            let gate_closure_ms = genesis.gate_closure_ms(effective_from).unwrap_or(u64::MAX);
            if time_ms >= gate_closure_ms {
                return Err(Rejection::TariffsNotInFuture { effective_from, gate_closure_ms, time_ms });
            }
            let bound = crate::genesis::PRICE_MAX_MICRO_PER_KWH;
            if tariffs.grid_import_micro_per_kwh > bound
                || tariffs.grid_feed_in_micro_per_kwh > bound
                || tariffs.network_fee_micro_per_kwh > bound
            {
                return Err(Rejection::TariffTooHigh);
            }
            // A later change replaces any scheduled one from the same interval
            // on; an entry that no interval left to settle uses is dropped.
            let mut schedule: Vec<Tariffs> = state
                .tariffs
                .iter()
                .copied()
                .filter(|existing| existing.effective_from_interval < effective_from)
                .collect();
            schedule.push(*tariffs);
            let settling = state.next_settlement_interval;
            let in_force =
                schedule.iter().rposition(|entry| entry.effective_from_interval <= settling).unwrap_or(0);
            schedule.drain(..in_force);
            if schedule.len() > TARIFF_SCHEDULE_MAX {
                return Err(Rejection::TariffScheduleFull);
            }
            state.tariffs = schedule;
            state.registrar_nonces.insert(*registrar, *nonce);
        }
        Tx::Offer(offer) => admit_offer(genesis, state, time_ms, tx.id(&genesis.community_id), offer)?,
        Tx::CancelOffer { account, nonce, offer_id } => {
            check_account_nonce(state, account, *nonce)?;
            let offer = state.offers.get(offer_id).ok_or(Rejection::UnknownOffer(*offer_id))?;
            if offer.account != *account {
                return Err(Rejection::NotYourOffer { offer: *offer_id, owner: offer.account });
            }
            check_open(genesis, offer.interval, time_ms)?;
            let offer = state.offers.remove(offer_id).expect("checked above");
            state.offers_by_interval.remove(&(offer.interval, *offer_id));
            let count = state.offer_counts.get_mut(&offer.interval).expect("open offers are counted");
            *count -= 1;
            if *count == 0 {
                state.offer_counts.remove(&offer.interval);
            }
            let key = (offer.account, offer.interval);
            let position = state.positions.get_mut(&key).expect("open offers have a position");
            position.energy_wh -= offer.energy_wh;
            if position.energy_wh == 0 {
                state.positions.remove(&key);
            }
            let entry = state.accounts.get_mut(account).expect("checked above");
            entry.reserved_nano -= offer.reserved_nano;
            entry.open_offers -= 1;
            entry.last_nonce = *nonce;
        }
        Tx::MeterReading(reading) => admit_reading(genesis, state, time_ms, reading)?,
        Tx::SetZoneLimits { dso, nonce, zone, first_interval, intervals, limits } => {
            check_dso(genesis, state, dso, *nonce)?;
            // An operating envelope (docs/PROTOCOL.md §5.4): for a known
            // zone, only for intervals still open for offers (never one
            // cleared or clearing) and within the offer horizon, replacing
            // what was set for them, the schedule bounded.
            check_text("zone", zone)?;
            let index = genesis.zone_index(zone).ok_or_else(|| Rejection::UnknownZone(zone.to_string()))?;
            if *intervals == 0 || *intervals > ZONE_LIMIT_INTERVALS_MAX {
                return Err(Rejection::ZoneLimitIntervals { intervals: *intervals });
            }
            let last_interval = check_window(genesis, *first_interval, u64::from(*intervals), time_ms)?;
            let new_entries = (*first_interval..=last_interval)
                .filter(|interval| !state.zone_limits.contains_key(&(*interval, index)))
                .count();
            if state.zone_limits.len().saturating_add(new_entries) > ZONE_LIMITS_MAX {
                return Err(Rejection::ZoneLimitsFull);
            }
            for interval in *first_interval..=last_interval {
                state.zone_limits.insert((interval, index), *limits);
            }
            state.registrar_nonces.insert(*dso, *nonce);
        }
        Tx::SetIntervalTariffs { signer, nonce, first_interval, tariffs } => {
            if !genesis.is_registrar(signer) && !genesis.is_dso(signer) {
                return Err(Rejection::NotATariffSetter(*signer));
            }
            let last = state.registrar_nonces.get(signer).copied().unwrap_or(0);
            check_next_nonce(signer, *nonce, last)?;
            // Dynamic tariffs (docs/PROTOCOL.md §5.4): like a zone's limits,
            // only for intervals still open for offers and within the
            // horizon, replacing what was set for them, bounded in count.
            if tariffs.is_empty() || tariffs.len() > ZONE_LIMIT_INTERVALS_MAX as usize {
                return Err(Rejection::TariffIntervals { intervals: tariffs.len() });
            }
            if !tariffs.iter().all(|entry| entry.at_most(crate::genesis::PRICE_MAX_MICRO_PER_KWH)) {
                return Err(Rejection::TariffTooHigh);
            }
            check_window(genesis, *first_interval, tariffs.len() as u64, time_ms)?;
            let entries = (*first_interval..).zip(tariffs);
            let mut held = state.interval_tariffs.len();
            for (interval, entry) in entries.clone() {
                match (state.interval_tariffs.contains_key(&interval), entry.is_empty()) {
                    (false, false) => held += 1,
                    (true, true) => held -= 1,
                    _ => {}
                }
            }
            if held > INTERVAL_TARIFFS_MAX {
                return Err(Rejection::IntervalTariffsFull);
            }
            for (interval, entry) in entries {
                if entry.is_empty() {
                    state.interval_tariffs.remove(&interval);
                } else {
                    state.interval_tariffs.insert(interval, *entry);
                }
            }
            state.registrar_nonces.insert(*signer, *nonce);
        }
        Tx::RegisterZoneMeter { dso, nonce, meter, zone, max_import_w, max_export_w } => {
            check_dso(genesis, state, dso, *nonce)?;
            check_text("zone", zone)?;
            let index = genesis.zone_index(zone).ok_or_else(|| Rejection::UnknownZone(zone.to_string()))?;
            check_new_meter(state, meter, *max_import_w, *max_export_w)?;
            // One per zone: with at most 256 zones, the map stays small.
            if state.zone_meters.values().any(|existing| existing.zone == index) {
                return Err(Rejection::ZoneMeterExists { zone: zone.clone() });
            }
            state.zone_meters.insert(
                *meter,
                ZoneMeter {
                    dso: *dso,
                    zone: index,
                    max_import_w: *max_import_w,
                    max_export_w: *max_export_w,
                    last_reading: None,
                    registered_interval: genesis.interval_at(time_ms),
                    base: None,
                },
            );
            state.registrar_nonces.insert(*dso, *nonce);
        }
    }
    Ok(())
}

/// A meter key to register: a valid key, neither a household's meter nor a
/// zone's, within the bound on a meter's power.
fn check_new_meter(
    state: &State,
    meter: &MeterId,
    max_import_w: u64,
    max_export_w: u64,
) -> Result<(), Rejection> {
    meter.validate().map_err(|reason| Rejection::InvalidKey { key: *meter, reason })?;
    if state.meters.contains_key(meter) || state.zone_meters.contains_key(meter) {
        return Err(Rejection::MeterExists(*meter));
    }
    for (direction, power_w) in [("import", max_import_w), ("export", max_export_w)] {
        if power_w > METER_POWER_MAX_W {
            return Err(Rejection::MeterPowerAboveBound {
                meter: *meter,
                direction,
                power_w,
                max_w: METER_POWER_MAX_W,
            });
        }
    }
    Ok(())
}

/// A run of `count` (≥ 1) intervals from `first_interval` that a schedule
/// may still change: the first still open for offers at `time_ms`, the last
/// within the offer horizon. The last interval.
fn check_window(genesis: &Genesis, first_interval: u64, count: u64, time_ms: u64) -> Result<u64, Rejection> {
    check_open(genesis, first_interval, time_ms)?;
    let last_interval = first_interval.saturating_add(count.saturating_sub(1));
    let horizon_interval =
        genesis.interval_at(time_ms).saturating_add(genesis.market.offer_horizon_intervals);
    if last_interval > horizon_interval {
        return Err(Rejection::IntervalTooFarAhead { interval: last_interval, horizon_interval });
    }
    Ok(last_interval)
}

/// A meter reading (docs/PROTOCOL.md §5.4): after the meter's registration
/// and the interval's end, after its last reading, registers never down and
/// never up faster than the meter's power allows.
fn admit_reading(
    genesis: &Genesis,
    state: &mut State,
    time_ms: u64,
    reading: &MeterReading,
) -> Result<(), Rejection> {
    // A household's meter or a zone's: the same rules.
    let (registered_interval, max_import_w, max_export_w, last_reading) =
        match (state.meters.get(&reading.meter), state.zone_meters.get(&reading.meter)) {
            (Some(meter), _) => {
                (meter.registered_interval, meter.max_import_w, meter.max_export_w, meter.last_reading)
            }
            (None, Some(meter)) => {
                (meter.registered_interval, meter.max_import_w, meter.max_export_w, meter.last_reading)
            }
            (None, None) => return Err(Rejection::UnknownMeter(reading.meter)),
        };
    if reading.interval < registered_interval {
        return Err(Rejection::ReadingBeforeRegistration {
            meter: reading.meter,
            interval: reading.interval,
            registered_interval,
        });
    }
    let end_ms = genesis.interval_end_ms(reading.interval).unwrap_or(u64::MAX);
    if end_ms > time_ms {
        return Err(Rejection::ReadingBeforeIntervalEnd { interval: reading.interval, end_ms, time_ms });
    }
    // A first reading has nothing to be bounded against: it can only become
    // the base that later readings are measured from, and credits nothing.
    if let Some(last) = &last_reading {
        if reading.interval <= last.interval {
            return Err(Rejection::ReadingNotIncreasing {
                meter: reading.meter,
                interval: reading.interval,
                last_interval: last.interval,
            });
        }
        let intervals = reading.interval - last.interval;
        for (register, value_wh, last_wh, power_w) in [
            ("import", reading.import_wh_total, last.import_wh_total, max_import_w),
            ("export", reading.export_wh_total, last.export_wh_total, max_export_w),
        ] {
            if value_wh < last_wh {
                return Err(Rejection::RegisterDecreased {
                    meter: reading.meter,
                    register,
                    value_wh,
                    last_wh,
                });
            }
            let increase_wh = value_wh - last_wh;
            let bound_wh = u128::from(intervals) * u128::from(genesis.meter_capacity_wh(power_w));
            if u128::from(increase_wh) > bound_wh {
                return Err(Rejection::ReadingAboveCapacity {
                    meter: reading.meter,
                    register,
                    increase_wh,
                    intervals,
                    power_w,
                    bound_wh,
                });
            }
        }
    }
    // A reading of an interval already settled is admitted, so that the
    // physics bound chains through it, but it can settle nothing.
    if reading.interval >= state.next_settlement_interval {
        state
            .readings
            .insert((reading.interval, reading.meter), (reading.import_wh_total, reading.export_wh_total));
    }
    match state.meters.get_mut(&reading.meter) {
        Some(meter) => meter.last_reading = Some(*reading),
        None => {
            state.zone_meters.get_mut(&reading.meter).expect("checked above").last_reading = Some(*reading)
        }
    }
    Ok(())
}

fn admit_offer(
    genesis: &Genesis,
    state: &mut State,
    time_ms: u64,
    id: Hash,
    offer: &Offer,
) -> Result<(), Rejection> {
    let market = &genesis.market;
    let account = check_account_nonce(state, &offer.account, offer.nonce)?;
    check_open(genesis, offer.interval, time_ms)?;
    let horizon_interval = genesis.interval_at(time_ms).saturating_add(market.offer_horizon_intervals);
    if offer.interval > horizon_interval {
        return Err(Rejection::IntervalTooFarAhead { interval: offer.interval, horizon_interval });
    }
    let max_wh = matching::Limits::MAX_ENERGY_WH_DEFAULT;
    if offer.energy_wh == 0 || offer.energy_wh > max_wh {
        return Err(Rejection::EnergyOutOfRange { energy_wh: offer.energy_wh, max_wh });
    }
    if offer.price_micro_per_kwh < market.price_floor_micro_per_kwh
        || offer.price_micro_per_kwh > market.price_cap_micro_per_kwh
    {
        return Err(Rejection::PriceOutOfRange {
            price_micro_per_kwh: offer.price_micro_per_kwh,
            floor_micro_per_kwh: market.price_floor_micro_per_kwh,
            cap_micro_per_kwh: market.price_cap_micro_per_kwh,
        });
    }
    let reading = &offer.attestation.reading;
    let meter = state.meters.get(&reading.meter).ok_or(Rejection::UnknownMeter(reading.meter))?;
    if meter.owner != offer.account {
        return Err(Rejection::ForeignMeter { meter: reading.meter, account: offer.account });
    }
    let zone =
        genesis.zone_index(&meter.zone).expect("registration admits meters in the genesis's zones only");
    let max_age = market.attestation_max_age_intervals;
    if reading.interval > offer.interval || offer.interval - reading.interval > max_age {
        return Err(Rejection::StaleAttestation {
            reading_interval: reading.interval,
            offer_interval: offer.interval,
            max_age,
        });
    }
    let position = state.positions.get(&(offer.account, offer.interval)).copied();
    if let Some(position) = position
        && position.side != offer.side
    {
        return Err(Rejection::BothSides { interval: offer.interval, existing: position.side });
    }
    let requested_wh =
        position.map_or(0, |p| p.energy_wh).checked_add(offer.energy_wh).ok_or(Rejection::Overflow)?;
    let limit_w = match offer.side {
        Side::Buy => account.max_import_w,
        Side::Sell => account.max_export_w,
    };
    let limit_wh = genesis.energy_per_interval_wh(limit_w);
    if requested_wh > limit_wh {
        return Err(Rejection::EnergyAboveMeterLimit { interval: offer.interval, requested_wh, limit_wh });
    }
    if account.open_offers >= market.max_open_offers_per_account {
        return Err(Rejection::TooManyOpenOffers {
            account: offer.account,
            max: market.max_open_offers_per_account,
        });
    }
    if state.offer_counts.get(&offer.interval).copied().unwrap_or(0) >= market.max_offers_per_interval {
        return Err(Rejection::TooManyOffersInInterval {
            interval: offer.interval,
            max: market.max_offers_per_interval,
        });
    }
    let reserved_nano = match offer.side {
        // Wh × micro per kWh = nano, exactly; both are bounded, so no overflow.
        Side::Buy => i128::from(offer.energy_wh) * i128::from(offer.price_micro_per_kwh),
        Side::Sell => 0,
    };
    if reserved_nano > account.available_nano() {
        return Err(Rejection::InsufficientFunds {
            needed_nano: reserved_nano,
            available_nano: account.available_nano(),
        });
    }
    if state.offers.contains_key(&id) {
        // Ids hash the signer's nonce, which is fresh: this cannot happen.
        return Err(Rejection::StaleNonce { signer: offer.account, nonce: offer.nonce, last: offer.nonce });
    }
    let entry = state.accounts.get_mut(&offer.account).expect("checked above");
    entry.reserved_nano += reserved_nano;
    entry.open_offers += 1;
    entry.last_nonce = offer.nonce;
    state
        .positions
        .insert((offer.account, offer.interval), Position { side: offer.side, energy_wh: requested_wh });
    state.offers_by_interval.insert((offer.interval, id));
    *state.offer_counts.entry(offer.interval).or_default() += 1;
    state.offers.insert(
        id,
        OpenOffer {
            account: offer.account,
            interval: offer.interval,
            side: offer.side,
            energy_wh: offer.energy_wh,
            price_micro_per_kwh: offer.price_micro_per_kwh,
            reserved_nano,
            zone,
        },
    );
    Ok(())
}

fn check_registrar(
    genesis: &Genesis,
    state: &State,
    registrar: &PublicKey,
    nonce: u64,
) -> Result<(), Rejection> {
    if !genesis.is_registrar(registrar) {
        return Err(Rejection::NotARegistrar(*registrar));
    }
    let last = state.registrar_nonces.get(registrar).copied().unwrap_or(0);
    check_next_nonce(registrar, nonce, last)
}

fn check_dso(genesis: &Genesis, state: &State, dso: &PublicKey, nonce: u64) -> Result<(), Rejection> {
    if !genesis.is_dso(dso) {
        return Err(Rejection::NotADso(*dso));
    }
    let last = state.registrar_nonces.get(dso).copied().unwrap_or(0);
    check_next_nonce(dso, nonce, last)
}

/// A signer's transactions are numbered 1, 2, 3, ... with no gap, so that
/// validators that see them in different orders cannot include a later one
/// first and make the earlier ones invalid.
fn check_next_nonce(signer: &PublicKey, nonce: u64, last: u64) -> Result<(), Rejection> {
    if nonce <= last {
        return Err(Rejection::StaleNonce { signer: *signer, nonce, last });
    }
    if nonce != last + 1 {
        return Err(Rejection::NonceGap { signer: *signer, nonce, expected: last + 1 });
    }
    Ok(())
}

fn check_account_nonce<'a>(
    state: &'a State,
    account: &AccountId,
    nonce: u64,
) -> Result<&'a Account, Rejection> {
    let entry = state.accounts.get(account).ok_or(Rejection::UnknownAccount(*account))?;
    check_next_nonce(account, nonce, entry.last_nonce)?;
    Ok(entry)
}

/// An interval is open for offers and cancellations strictly before its gate.
fn check_open(genesis: &Genesis, interval: u64, time_ms: u64) -> Result<(), Rejection> {
    let gate_closure_ms = genesis.gate_closure_ms(interval).unwrap_or(u64::MAX);
    if time_ms >= gate_closure_ms {
        return Err(Rejection::IntervalClosed { interval, gate_closure_ms, time_ms });
    }
    Ok(())
}

/// Amounts are positive (or, for limits, non-negative) and at most 10^30
/// nano, so that sums of many of them stay far inside i128.
fn check_amount(field: &'static str, value: i128, zero_allowed: bool) -> Result<(), Rejection> {
    const MAX_NANO: i128 = 1_000_000_000_000_000_000_000_000_000_000;
    if !(0..=MAX_NANO).contains(&value) || (value == 0 && !zero_allowed) {
        return Err(Rejection::InvalidAmount { field, value });
    }
    Ok(())
}

fn check_text(field: &'static str, text: &str) -> Result<(), Rejection> {
    if text.len() > TEXT_LEN_MAX {
        return Err(Rejection::TextTooLong { field });
    }
    Ok(())
}
