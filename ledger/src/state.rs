//! The ledger state: accounts, meters, open offers, contracts awaiting
//! settlement and the market cursors. Ordered maps only, so the state has one
//! canonical encoding and its root is a plain hash of it.

use std::collections::{BTreeMap, BTreeSet};

use borsh::{BorshDeserialize, BorshSerialize};

use crate::Hash;
use crate::encoding::{Domain, domain_hash};
use crate::genesis::{Genesis, IntervalTariffs, Tariffs, ZoneLimits};
use crate::ids::{AccountId, CommunityId, MeterId, PublicKey};
use crate::tx::{MeterReading, Side};

/// A registered account. Money is in nano-currency.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Account {
    pub balance_nano: i128,
    /// Held for open buy offers: energy × limit price.
    pub reserved_nano: i128,
    /// How far the balance may go below zero.
    pub credit_limit_nano: i128,
    /// The highest nonce used; a transaction needs a larger one.
    pub last_nonce: u64,
    pub open_offers: u32,
    /// Σ of the account's meters' limits, for the per-interval energy bound.
    pub max_import_w: u64,
    pub max_export_w: u64,
    /// The zone (index) of the account's meters, all in one; none before
    /// its first meter.
    pub zone: Option<u32>,
}

impl Account {
    /// What the account may still commit: balance plus credit minus reservations.
    pub fn available_nano(&self) -> i128 {
        self.balance_nano.saturating_add(self.credit_limit_nano).saturating_sub(self.reserved_nano)
    }
}

/// A registered meter.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Meter {
    pub owner: AccountId,
    pub max_import_w: u64,
    pub max_export_w: u64,
    pub zone: String,
    /// The latest reading admitted, kept or not: the next reading is
    /// bounded against it (docs/PROTOCOL.md §5.4).
    pub last_reading: Option<MeterReading>,
    /// The interval the meter was registered in; it is billed from the
    /// next one on.
    pub registered_interval: u64,
    /// The reading the meter's settlement continues from. Set and moved
    /// only by settlement, never by admission.
    pub base: Option<MeterReading>,
    /// Import estimated since `base` and not yet trued up by a reading.
    pub estimate: Option<Estimate>,
}

/// A zone's own meter (a transformer's), registered by a DSO: it bills
/// nobody; settlement reports what it measured beside the sum of the
/// zone's household meters, the difference being the zone's losses.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ZoneMeter {
    /// The DSO that registered it.
    pub dso: PublicKey,
    /// The index of its zone.
    pub zone: u32,
    pub max_import_w: u64,
    pub max_export_w: u64,
    /// As a household meter's (§5.4 bounds its readings the same way).
    pub last_reading: Option<MeterReading>,
    pub registered_interval: u64,
    /// The reading its measurement continues from, moved by settlement.
    pub base: Option<MeterReading>,
}

/// Energy a meter was billed as imported for intervals without a reading,
/// refundable when a later reading shows how much it really moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Estimate {
    /// Σ of the meter's capacity over the estimated intervals, in Wh.
    pub import_wh: u64,
    /// The lowest of the feed-in and import tariffs over those intervals:
    /// a refund at this rate never pays more than honest bills would have.
    pub rate_micro_per_kwh: u64,
}

/// An admitted offer waiting for its interval's gate closure.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct OpenOffer {
    pub account: AccountId,
    pub interval: u64,
    pub side: Side,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
    pub reserved_nano: i128,
    /// The zone of the meter that attested the offer (its index in the
    /// genesis's zones): where the auction places it.
    pub zone: u32,
}

/// One account's position in one interval: its offers' side and energy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Position {
    pub side: Side,
    pub energy_wh: u64,
}

/// What an account traded in a cleared interval, kept until settlement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Contract {
    pub sold_wh: u64,
    pub bought_wh: u64,
    pub sold_nano: i128,
    pub bought_nano: i128,
    pub fees_nano: i128,
}

/// The whole state after a block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct State {
    pub height: u64,
    /// Hash of the last block's header; the genesis hash before block 1.
    pub last_block_hash: Hash,
    /// The last block's timestamp; the genesis time before block 1.
    pub last_timestamp_ms: u64,
    pub accounts: BTreeMap<AccountId, Account>,
    /// The highest nonce each registrar or DSO has used.
    pub registrar_nonces: BTreeMap<PublicKey, u64>,
    pub meters: BTreeMap<MeterId, Meter>,
    /// Readings kept for settlement: (interval, meter) → (import, export)
    /// totals, only for intervals at or after `next_settlement_interval`.
    pub readings: BTreeMap<(u64, MeterId), (u64, u64)>,
    pub offers: BTreeMap<Hash, OpenOffer>,
    /// Open offers by interval, in ascending id order within each.
    pub offers_by_interval: BTreeSet<(u64, Hash)>,
    /// How many offers are open in each interval (the per-interval bound).
    pub offer_counts: BTreeMap<u64, u32>,
    pub positions: BTreeMap<(AccountId, u64), Position>,
    pub contracts: BTreeMap<(u64, AccountId), Contract>,
    /// Tariff schedule, ascending by `effective_from_interval`.
    pub tariffs: Vec<Tariffs>,
    /// Intervals below this have been cleared.
    pub next_clearing_interval: u64,
    /// Intervals below this have been settled.
    pub next_settlement_interval: u64,
    pub grid_balance_nano: i128,
    pub network_balance_nano: i128,
    pub credits_nano: i128,
    pub debits_nano: i128,
    /// The DSO's limits: (interval, zone index) → the zone's limits in that
    /// interval, for intervals not yet cleared; a zone without an entry has
    /// its genesis limits.
    pub zone_limits: BTreeMap<(u64, u32), ZoneLimits>,
    /// Tariffs set for single intervals (`SetIntervalTariffs`), for
    /// intervals not yet settled; they take precedence over the schedule.
    pub interval_tariffs: BTreeMap<u64, IntervalTariffs>,
    /// The zones' own meters, at most one per zone.
    pub zone_meters: BTreeMap<MeterId, ZoneMeter>,
}

impl State {
    /// The state before the first block.
    pub fn genesis(genesis: &Genesis) -> State {
        State {
            height: 0,
            last_block_hash: genesis.hash(),
            last_timestamp_ms: genesis.genesis_time_ms,
            accounts: BTreeMap::new(),
            registrar_nonces: BTreeMap::new(),
            meters: BTreeMap::new(),
            readings: BTreeMap::new(),
            offers: BTreeMap::new(),
            offers_by_interval: BTreeSet::new(),
            offer_counts: BTreeMap::new(),
            positions: BTreeMap::new(),
            contracts: BTreeMap::new(),
            tariffs: vec![genesis.tariffs],
            next_clearing_interval: 0,
            next_settlement_interval: 0,
            grid_balance_nano: 0,
            network_balance_nano: 0,
            credits_nano: 0,
            debits_nano: 0,
            zone_limits: BTreeMap::new(),
            interval_tariffs: BTreeMap::new(),
            zone_meters: BTreeMap::new(),
        }
    }

    /// The hash committing to the whole state (O(size of the state)), except
    /// `last_block_hash`: the root is in the header of that very block, so it
    /// cannot commit to the block's own hash. It commits to everything else,
    /// the previous block's hash included through the header that holds it.
    pub fn root(&self, community: &CommunityId) -> Hash {
        // Destructured so that a new field cannot be left out by accident.
        let State {
            height,
            last_block_hash: _,
            last_timestamp_ms,
            accounts,
            registrar_nonces,
            meters,
            readings,
            offers,
            offers_by_interval,
            offer_counts,
            positions,
            contracts,
            tariffs,
            next_clearing_interval,
            next_settlement_interval,
            grid_balance_nano,
            network_balance_nano,
            credits_nano,
            debits_nano,
            zone_limits,
            interval_tariffs,
            zone_meters,
        } = self;
        domain_hash(
            Domain::State,
            community,
            &(
                (height, last_timestamp_ms, accounts, registrar_nonces, meters, readings, offers),
                (offers_by_interval, offer_counts, positions, contracts, tariffs, next_clearing_interval),
                (
                    next_settlement_interval,
                    grid_balance_nano,
                    network_balance_nano,
                    credits_nano,
                    debits_nano,
                    zone_limits,
                    interval_tariffs,
                    zone_meters,
                ),
            ),
        )
    }

    /// The tariffs in force for `interval`, for an interval not yet settled:
    /// the schedule's, with the interval's own entry in place of the parts
    /// it sets. Both drop what settled intervals used (a settled interval's
    /// are in its `SettlementReceipt`).
    pub fn tariffs_for(&self, interval: u64) -> Tariffs {
        let schedule = *self
            .tariffs
            .iter()
            .rev()
            .find(|tariffs| tariffs.effective_from_interval <= interval)
            .unwrap_or(&self.tariffs[0]);
        match self.interval_tariffs.get(&interval) {
            Some(set) => set.apply(interval, schedule),
            None => schedule,
        }
    }

    /// Each zone's limits in `interval`: the DSO's where it set some, else
    /// the genesis's; in zone order.
    pub fn zone_limits_for(&self, genesis: &Genesis, interval: u64) -> Vec<ZoneLimits> {
        let mut limits: Vec<ZoneLimits> = genesis.zones.iter().map(|zone| zone.limits).collect();
        for (&(_, zone), set) in self.zone_limits.range((interval, 0)..=(interval, u32::MAX)) {
            if let Some(entry) = limits.get_mut(zone as usize) {
                *entry = *set;
            }
        }
        limits
    }

    /// Checks the invariants of docs/PROTOCOL.md §5.7 (conservation of
    /// money, reservations, the offer index) and that settlement's cursors
    /// agree (kept readings, meters' bases and estimates). A failure is a
    /// bug in the state machine, never bad input: callers assert on it.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let mut balances = self.grid_balance_nano.checked_add(self.network_balance_nano);
        for account in self.accounts.values() {
            balances = balances.and_then(|sum| sum.checked_add(account.balance_nano));
        }
        let issued = self.credits_nano.checked_sub(self.debits_nano);
        if balances.is_none() || balances != issued {
            return Err(InvariantError::Money { balances, issued });
        }
        let mut reserved: BTreeMap<&AccountId, i128> = BTreeMap::new();
        for offer in self.offers.values() {
            *reserved.entry(&offer.account).or_default() += offer.reserved_nano;
        }
        for (key, account) in &self.accounts {
            if account.reserved_nano != reserved.get(key).copied().unwrap_or(0) {
                return Err(InvariantError::Reservations(*key));
            }
        }
        if self.offers.len() != self.offers_by_interval.len()
            || self.offer_counts.values().map(|&count| u64::from(count)).sum::<u64>()
                != u64::try_from(self.offers.len()).unwrap_or(u64::MAX)
        {
            return Err(InvariantError::OfferIndex);
        }
        // Keys are ordered by interval first: the first is the lowest.
        if let Some(&(interval, meter)) = self.readings.keys().next()
            && interval < self.next_settlement_interval
        {
            return Err(InvariantError::StaleReading {
                meter,
                interval,
                next: self.next_settlement_interval,
            });
        }
        for (key, meter) in &self.meters {
            check_settlement_cursor(key, meter, self.next_settlement_interval)?;
        }
        Ok(())
    }
}

/// An invariant of docs/PROTOCOL.md §5.7 that a state breaks: a bug in the
/// state machine, never bad input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvariantError {
    #[error("money: balances sum to {balances:?}, credits minus debits are {issued:?}")]
    Money { balances: Option<i128>, issued: Option<i128> },
    #[error("reservations of {0} do not match its open offers")]
    Reservations(AccountId),
    #[error("the offer index or counts do not match the offers")]
    OfferIndex,
    #[error(
        "meter {meter}: a reading of interval {interval} is kept, below the next settlement interval {next}"
    )]
    StaleReading { meter: MeterId, interval: u64, next: u64 },
    #[error("meter {0} has an estimate but no base")]
    EstimateWithoutBase(MeterId),
    #[error("meter {0} has a base before any settlement")]
    BaseBeforeSettlement(MeterId),
    #[error(
        "meter {meter}: base of interval {base_interval} and estimate {estimate:?} after settling interval {last_settled}"
    )]
    SettlementCursor { meter: MeterId, base_interval: u64, estimate: Option<Estimate>, last_settled: u64 },
}

/// A meter's base and estimate agree with the settled intervals: an
/// estimate covers exactly the intervals after the base up to the last one
/// settled (docs/PROTOCOL.md §5.6), which is what makes its refund safe.
fn check_settlement_cursor(
    key: &MeterId,
    meter: &Meter,
    next_settlement_interval: u64,
) -> Result<(), InvariantError> {
    let settled_any = meter.registered_interval < next_settlement_interval;
    match (&meter.base, &meter.estimate) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(InvariantError::EstimateWithoutBase(*key)),
        (Some(_), _) if !settled_any => Err(InvariantError::BaseBeforeSettlement(*key)),
        (Some(base), estimate) => {
            let last_settled = next_settlement_interval - 1;
            let expects_estimate = base.interval < last_settled;
            if base.interval > last_settled || expects_estimate != estimate.is_some() {
                return Err(InvariantError::SettlementCursor {
                    meter: *key,
                    base_interval: base.interval,
                    estimate: *estimate,
                    last_settled,
                });
            }
            Ok(())
        }
    }
}
