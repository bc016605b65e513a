//! The genesis of a community: its market rules, tariffs, zones, validators,
//! registrars and DSOs, and the market-time arithmetic derived from them.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::encoding::{Domain, domain_hash};
use crate::ids::{CommunityId, PublicKey};
use crate::{Hash, MICROS_PER_UNIT};

/// The auction mechanism, as recorded on the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Mechanism {
    Uniform,
    PayAsBid,
}

/// Grid tariffs and the network fee, in force from an interval on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Tariffs {
    pub effective_from_interval: u64,
    /// What a household pays the grid per kWh it imports beyond its trades.
    pub grid_import_micro_per_kwh: u64,
    /// What the grid pays per kWh exported beyond trades.
    pub grid_feed_in_micro_per_kwh: u64,
    /// Paid by buyers on top of the clearing price, to the network account.
    pub network_fee_micro_per_kwh: u64,
}

/// Tariffs set for one interval ahead of time (`SetIntervalTariffs`): each
/// part that is set replaces the schedule's for that interval alone, so a
/// dynamic price changes nothing before or after it. `None` keeps the
/// schedule's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct IntervalTariffs {
    pub grid_import_micro_per_kwh: Option<u64>,
    pub grid_feed_in_micro_per_kwh: Option<u64>,
    pub network_fee_micro_per_kwh: Option<u64>,
}

impl IntervalTariffs {
    /// Sets nothing: what removes an interval's entry.
    pub fn is_empty(&self) -> bool {
        *self == IntervalTariffs::default()
    }

    /// `schedule`, the schedule's tariffs for `interval`, with this entry's
    /// parts in place of its own; effective from `interval` when it sets
    /// any.
    pub fn apply(&self, interval: u64, schedule: Tariffs) -> Tariffs {
        if self.is_empty() {
            return schedule;
        }
        Tariffs {
            effective_from_interval: interval,
            grid_import_micro_per_kwh: self
                .grid_import_micro_per_kwh
                .unwrap_or(schedule.grid_import_micro_per_kwh),
            grid_feed_in_micro_per_kwh: self
                .grid_feed_in_micro_per_kwh
                .unwrap_or(schedule.grid_feed_in_micro_per_kwh),
            network_fee_micro_per_kwh: self
                .network_fee_micro_per_kwh
                .unwrap_or(schedule.network_fee_micro_per_kwh),
        }
    }

    /// The parts that are set, each at most `max`.
    pub fn at_most(&self, max: u64) -> bool {
        [self.grid_import_micro_per_kwh, self.grid_feed_in_micro_per_kwh, self.network_fee_micro_per_kwh]
            .into_iter()
            .flatten()
            .all(|rate| rate <= max)
    }
}

/// What a household whose meters measured `metered_net_export_wh` in an
/// interval would get (positive) or pay (negative) at the grid tariffs
/// alone, with no local trading: its export at the feed-in tariff, its
/// import at the import tariff, in nano-currency (Wh × micro per kWh,
/// exact). What reports compare a bill's total with.
pub fn grid_only_nano(
    metered_net_export_wh: i64,
    feed_in_micro_per_kwh: u64,
    import_micro_per_kwh: u64,
) -> i128 {
    let metered = i128::from(metered_net_export_wh);
    let tariff = if metered >= 0 { feed_in_micro_per_kwh } else { import_micro_per_kwh };
    metered * i128::from(tariff)
}

/// The rules of the market.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct MarketParams {
    pub interval_length_ms: u64,
    /// Gate closure of interval i is this long before its start.
    pub gate_closure_lead_ms: u64,
    /// Interval i settles this long after its end.
    pub settlement_delay_ms: u64,
    /// How many intervals ahead an offer may be for.
    pub offer_horizon_intervals: u64,
    /// How many intervals older than the offer's interval its attestation may be.
    pub attestation_max_age_intervals: u64,
    pub price_floor_micro_per_kwh: u64,
    pub price_cap_micro_per_kwh: u64,
    pub mechanism: Mechanism,
    pub k_thousandths: u16,
    pub max_open_offers_per_account: u32,
    pub max_offers_per_interval: u32,
    pub max_transactions_per_block: u32,
    /// How far a meter may exceed its registered power, per mille: the
    /// meter's accuracy and the timing of interval-end readings. It widens
    /// the physics bound on readings (`Genesis::meter_capacity_wh`).
    pub meter_tolerance_permille: u16,
    /// δ, the clock synchronisation the community needs: a validator
    /// refuses a proposal whose time is outside its own clock ± δ. The
    /// node enforces it; the state machine never reads a clock.
    pub block_time_tolerance_ms: u64,
}

/// What a zone's feeder carries in one interval, in Wh: the zone's net
/// export (what its offers sell less what they buy) stays within
/// `[-import_wh_max, export_wh_max]` (docs/AUCTION.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ZoneLimits {
    pub import_wh_max: u64,
    pub export_wh_max: u64,
}

impl ZoneLimits {
    /// No limit: more than any interval's offers can add up to.
    pub const OPEN: ZoneLimits = ZoneLimits { import_wh_max: u64::MAX, export_wh_max: u64::MAX };
}

/// A zone of the community's grid: a feeder or a secondary substation,
/// connected to the community's point of connection, with the limits that
/// hold in every interval the DSO sets none for.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Zone {
    pub name: String,
    pub limits: ZoneLimits,
}

/// A validator and its voting power.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Validator {
    pub key: PublicKey,
    pub voting_power: u64,
}

/// Everything that is fixed when a community starts.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Genesis {
    pub community_id: CommunityId,
    pub name: String,
    /// ISO 4217 code, e.g. "EUR": amounts are in millionths (prices) and
    /// billionths (money) of it.
    pub currency: String,
    pub genesis_time_ms: u64,
    pub market: MarketParams,
    pub tariffs: Tariffs,
    pub validators: Vec<Validator>,
    pub registrars: Vec<PublicKey>,
    /// The zones, in the order the auction numbers them; every meter is in
    /// one (docs/PROTOCOL.md §4).
    pub zones: Vec<Zone>,
    /// The distribution system operators' keys: who may set zone limits
    /// (`Tx::SetZoneLimits`). May be empty.
    pub dsos: Vec<PublicKey>,
}

/// A genesis that cannot start a community.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid genesis: {0}")]
pub struct GenesisError(pub String);

/// Bounds of genesis values, so that market-time arithmetic cannot overflow.
pub const NAME_LEN_MAX: usize = 64;
pub const INTERVAL_LENGTH_MS_MAX: u64 = 24 * 3_600_000;
pub const VALIDATORS_MAX: usize = 100;
pub const PRICE_MAX_MICRO_PER_KWH: u64 = 1_000 * MICROS_PER_UNIT;
/// A meter may exceed its registered power by at most 100 %.
pub const METER_TOLERANCE_PERMILLE_MAX: u16 = 1_000;
/// The widest clock tolerance a community may choose: an hour.
pub const BLOCK_TIME_TOLERANCE_MS_MAX: u64 = 3_600_000;
/// At most this many zones (and every receipt lists each).
pub const ZONES_MAX: usize = 256;
/// At most this many DSO keys.
pub const DSOS_MAX: usize = 16;

impl Genesis {
    pub fn hash(&self) -> Hash {
        domain_hash(Domain::Genesis, &self.community_id, self)
    }

    /// Checks the genesis is usable: positive interval length, consistent
    /// prices, at least one validator with power, at least one registrar.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let market = &self.market;
        let fail = |message: &str| Err(GenesisError(message.to_string()));
        if self.name.is_empty() || self.name.len() > NAME_LEN_MAX {
            return fail("the name must be 1 to 64 bytes");
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return fail("the currency must be a three-letter ISO 4217 code such as EUR");
        }
        if market.interval_length_ms == 0 || market.interval_length_ms > INTERVAL_LENGTH_MS_MAX {
            return fail("the interval length must be between 1 ms and 24 hours");
        }
        if market.gate_closure_lead_ms > 7 * INTERVAL_LENGTH_MS_MAX
            || market.settlement_delay_ms > 7 * INTERVAL_LENGTH_MS_MAX
        {
            return fail("gate closure lead and settlement delay must be at most a week");
        }
        if market.offer_horizon_intervals == 0 || market.offer_horizon_intervals > 10_000 {
            return fail("the offer horizon must be 1 to 10000 intervals");
        }
        if market.price_floor_micro_per_kwh > market.price_cap_micro_per_kwh
            || market.price_cap_micro_per_kwh > PRICE_MAX_MICRO_PER_KWH
        {
            return fail("the price floor must not exceed the cap, and the cap must be at most 1000 per kWh");
        }
        if market.k_thousandths > 1000 {
            return fail("k must be at most 1000 thousandths");
        }
        if market.max_open_offers_per_account == 0
            || market.max_offers_per_interval == 0
            || market.max_transactions_per_block == 0
        {
            return fail("the offer and block bounds must be positive");
        }
        // Within the auction's bound too (2²¹ orders).
        let offers_max = crate::execute::CLEARING_WORK_PER_BLOCK_MAX;
        if usize::try_from(market.max_offers_per_interval).map_or(true, |max| max > offers_max) {
            return fail("at most 16384 offers per interval: a block's clearing work");
        }
        if market.meter_tolerance_permille > METER_TOLERANCE_PERMILLE_MAX {
            return fail("the meter tolerance must be at most 1000 per mille");
        }
        if market.block_time_tolerance_ms == 0 || market.block_time_tolerance_ms > BLOCK_TIME_TOLERANCE_MS_MAX
        {
            return fail("the block time tolerance must be 1 ms to 3600000 ms (an hour)");
        }
        let tariffs = &self.tariffs;
        if tariffs.grid_import_micro_per_kwh > PRICE_MAX_MICRO_PER_KWH
            || tariffs.grid_feed_in_micro_per_kwh > PRICE_MAX_MICRO_PER_KWH
            || tariffs.network_fee_micro_per_kwh > PRICE_MAX_MICRO_PER_KWH
        {
            return fail("tariffs must be at most 1000 per kWh");
        }
        if self.validators.is_empty() || self.validators.len() > VALIDATORS_MAX {
            return fail("there must be 1 to 100 validators");
        }
        if self.validators.iter().any(|validator| validator.voting_power == 0) {
            return fail("every validator needs positive voting power");
        }
        // Quorum arithmetic (here and in the BFT engine) computes 3 × total.
        if self.validators.iter().map(|v| u128::from(v.voting_power)).sum::<u128>() > u128::from(u64::MAX / 3)
        {
            return fail("the total voting power must be at most a third of 2^64");
        }
        let mut keys: Vec<PublicKey> = self.validators.iter().map(|validator| validator.key).collect();
        keys.sort();
        if keys.windows(2).any(|pair| pair[0] == pair[1]) {
            return fail("a validator is listed twice");
        }
        if self.registrars.is_empty() {
            return fail("there must be at least one registrar");
        }
        if self.zones.is_empty() || self.zones.len() > ZONES_MAX {
            return fail("there must be 1 to 256 zones");
        }
        if self
            .zones
            .iter()
            .any(|zone| zone.name.is_empty() || zone.name.len() > crate::execute::TEXT_LEN_MAX)
        {
            return fail("a zone's name must be 1 to 64 bytes");
        }
        let mut names: Vec<&str> = self.zones.iter().map(|zone| zone.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|pair| pair[0] == pair[1]) {
            return fail("a zone is listed twice");
        }
        if self.dsos.len() > DSOS_MAX {
            return fail("there must be at most 16 DSO keys");
        }
        // Every key must be a canonical encoding that is not of a point of
        // small order (docs/PROTOCOL.md §3.3).
        let keys = self
            .validators
            .iter()
            .map(|v| ("validator", v.key))
            .chain(self.registrars.iter().map(|r| ("registrar", *r)))
            .chain(self.dsos.iter().map(|d| ("DSO", *d)));
        for (role, key) in keys {
            if let Err(reason) = key.validate() {
                return Err(GenesisError(format!("{role} {key} is not a valid key: {reason}")));
            }
        }
        // 2^62 ms is 146 million years: market time arithmetic cannot overflow.
        if self.genesis_time_ms > 1 << 62 {
            return fail("the genesis time is too far in the future");
        }
        Ok(())
    }

    /// The sum of the validators' voting powers. It saturates: `validate`
    /// bounds it by a third of 2^64, but a certificate may be checked
    /// against a genesis that did not pass (the audit of an export does).
    pub fn total_voting_power(&self) -> u64 {
        self.validators.iter().fold(0, |total, validator| total.saturating_add(validator.voting_power))
    }

    pub fn voting_power_of(&self, key: &PublicKey) -> Option<u64> {
        self.validators.iter().find(|validator| validator.key == *key).map(|validator| validator.voting_power)
    }

    pub fn is_registrar(&self, key: &PublicKey) -> bool {
        self.registrars.contains(key)
    }

    pub fn is_dso(&self, key: &PublicKey) -> bool {
        self.dsos.contains(key)
    }

    /// The index of the zone named `name`: its place in `zones`.
    pub fn zone_index(&self, name: &str) -> Option<u32> {
        let index = self.zones.iter().position(|zone| zone.name == name)?;
        u32::try_from(index).ok()
    }

    /// Start of interval `interval`, or `None` past any representable time.
    pub fn interval_start_ms(&self, interval: u64) -> Option<u64> {
        interval.checked_mul(self.market.interval_length_ms)?.checked_add(self.genesis_time_ms)
    }

    pub fn interval_end_ms(&self, interval: u64) -> Option<u64> {
        self.interval_start_ms(interval.checked_add(1)?)
    }

    /// Gate closure: offers for the interval are accepted strictly before it.
    /// Saturates at zero for intervals that start within the lead of genesis.
    pub fn gate_closure_ms(&self, interval: u64) -> Option<u64> {
        Some(self.interval_start_ms(interval)?.saturating_sub(self.market.gate_closure_lead_ms))
    }

    /// The first interval still open for offers at `time_ms` (its gate
    /// closure is after it): the earliest an offer, a tariff change or a
    /// zone limit made then can be for.
    pub fn first_open_interval(&self, time_ms: u64) -> u64 {
        // gate(i) > t ⇔ start(i) > t + lead: the intervals started by then are closed.
        let after_lead = time_ms.saturating_add(self.market.gate_closure_lead_ms);
        let mut interval = match after_lead.checked_sub(self.genesis_time_ms) {
            Some(elapsed) => elapsed / self.market.interval_length_ms + 1,
            None => 0,
        };
        // Gates saturate at 0 for the intervals within the lead of genesis.
        while self.gate_closure_ms(interval).is_some_and(|gate_ms| gate_ms <= time_ms) {
            interval += 1;
        }
        interval
    }

    /// Interval `interval` settles in the first block at or after this time.
    pub fn settlement_ms(&self, interval: u64) -> Option<u64> {
        self.interval_end_ms(interval)?.checked_add(self.market.settlement_delay_ms)
    }

    /// The interval that contains time `time_ms` (0 before genesis).
    pub fn interval_at(&self, time_ms: u64) -> u64 {
        time_ms.saturating_sub(self.genesis_time_ms) / self.market.interval_length_ms
    }

    /// The energy a meter of `power_w` can move in one interval, in Wh: the
    /// bound on the energy an account offers in an interval.
    pub fn energy_per_interval_wh(&self, power_w: u64) -> u64 {
        let energy = u128::from(power_w) * u128::from(self.market.interval_length_ms) / 3_600_000;
        u64::try_from(energy).unwrap_or(u64::MAX)
    }

    /// A meter's capacity in one interval, in Wh: what a register of a
    /// meter of `power_w` can rise by at most in one interval, tolerance
    /// included, `⌊w × len_ms × (1000 + tolerance‰) / 3,600,000,000⌋`. It
    /// bounds readings and is what an interval without a reading is
    /// billed (docs/PROTOCOL.md §5.4, §5.6). Saturates for a genesis or a
    /// power that admission would refuse.
    pub fn meter_capacity_wh(&self, power_w: u64) -> u64 {
        let per_mille = 1_000 + u128::from(self.market.meter_tolerance_permille);
        let energy = u128::from(power_w)
            .saturating_mul(u128::from(self.market.interval_length_ms))
            .saturating_mul(per_mille)
            / 3_600_000_000;
        u64::try_from(energy).unwrap_or(u64::MAX)
    }
}
