//! Property tests of the state machine (docs/PROTOCOL.md §5), with proptest.
//!
//! 1. A model-based test: random chains of blocks holding every kind of
//!    transaction, with hostile values at every bound, built from candidates
//!    with `build_block`. After each block: it builds, `execute` of it gives
//!    the same state and receipts, a replay of the chain from its start gives
//!    the same state root, the invariants hold, and an independent model of
//!    registration, the physics bound and settlement (written from §5.4 and
//!    §5.6, in the closed form of §5.6's proof) predicts every admission and
//!    every bill exactly.
//! 2. Withholding never pays: a household that withholds or delays readings
//!    of an honest trace never ends with more money than by reporting them.
//!
//! Each test runs `PROPTEST_CASES` cases (64 by default: a few seconds in
//! the dev profile). A longer run, about a minute a thousand cases:
//! `PROPTEST_CASES=5000 cargo test --release -p gridshare-ledger --test properties`.
//! A failure prints the minimal case, which proptest also saves under
//! `tests/properties.proptest-regressions` to replay first next time.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::collections::BTreeMap;

use gridshare_ledger::block::{Bill, Block, Receipt, SettlementReceipt, ZoneSettlement};
use gridshare_ledger::execute::{
    ACCOUNT_POWER_MAX_W, CREDITS_TOTAL_MAX_NANO, METER_POWER_MAX_W, Rejection, Signatures, admit,
    build_block, cleared, execute,
};
use gridshare_ledger::genesis::{
    Genesis, IntervalTariffs, MarketParams, Mechanism, PRICE_MAX_MICRO_PER_KWH, Tariffs, Zone, ZoneLimits,
};
use gridshare_ledger::ids::{AccountId, Keypair, MeterId};
use gridshare_ledger::state::{Account, Contract, State};
use gridshare_ledger::testkit::{SplitMix64, TestCommunity, derived_key, test_market};
use gridshare_ledger::tx::{MeterReading, Offer, Side, SignedMeterReading, SignedTx, Tx};
use gridshare_ledger::{Hash, NANOS_PER_UNIT};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000;
const WEEK_MS: u64 = 7 * 86_400_000;
/// Keys the actions pick from: more than get registered, so that unknown
/// accounts and meters come up too.
const ACCOUNTS: usize = 6;
const METERS: usize = 9;
const KEY_MIN: AccountId = gridshare_ledger::ids::PublicKey([0; 32]);
const KEY_MAX: AccountId = gridshare_ledger::ids::PublicKey([0xff; 32]);
/// The most money a credit, a debit or a credit limit may be.
/// The community's zones; a third name that is none of them.
const ZONE_NAMES: [&str; 3] = ["north", "south", "nowhere"];
const AMOUNT_MAX_NANO: i128 = 1_000_000_000_000_000_000_000_000_000_000;

/// An index of the few keys as an action's byte.
fn small(index: usize) -> u8 {
    u8::try_from(index).unwrap()
}

/// `PROPTEST_CASES`, or `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|text| text.parse().ok()).unwrap_or(default)
}

/// A value drawn for a field: `kind` picks typical or extreme values
/// (zero, one, the bound, one above it), `raw` a random one.
#[derive(Clone, Copy, Debug)]
struct Pick {
    kind: u8,
    raw: u64,
}

fn pick() -> impl Strategy<Value = Pick> {
    (any::<u8>(), any::<u64>()).prop_map(|(kind, raw)| Pick { kind, raw })
}

/// A pick of the kinds that are valid for every field (one, the bound, a
/// random value): the community's first block registers with these.
fn valid_pick() -> impl Strategy<Value = Pick> {
    (prop_oneof![Just(1_u8), Just(2), Just(6)], any::<u64>()).prop_map(|(kind, raw)| Pick { kind, raw })
}

impl Pick {
    /// A value in `0..=bound`, or just above it now and then.
    fn up_to(self, bound: u64) -> u64 {
        match self.kind % 8 {
            0 => 0,
            1 => 1.min(bound),
            2 | 3 => bound,
            4 => bound.saturating_add(1),
            _ => self.raw % bound.saturating_add(1).max(1),
        }
    }

    fn amount_nano(self) -> i128 {
        match self.kind % 8 {
            0 => 0,
            1 => 1,
            2 | 3 => AMOUNT_MAX_NANO,
            4 => AMOUNT_MAX_NANO + 1,
            5 => -1,
            _ => i128::from(self.raw) * i128::from(self.raw % 1_000_000_000),
        }
    }

    fn power_w(self) -> u64 {
        match self.kind % 8 {
            0 => 0,
            1 | 2 => METER_POWER_MAX_W,
            3 => METER_POWER_MAX_W + 1,
            4 => 11_000,
            _ => self.raw % (METER_POWER_MAX_W + 1),
        }
    }

    fn price_micro_per_kwh(self) -> u64 {
        match self.kind % 8 {
            0 => 0,
            1 | 2 => PRICE_MAX_MICRO_PER_KWH,
            3 => PRICE_MAX_MICRO_PER_KWH + 1,
            _ => self.raw % (PRICE_MAX_MICRO_PER_KWH + 1),
        }
    }
}

/// What a block may hold, before it is made concrete against the state.
#[derive(Clone, Debug)]
enum Action {
    RegisterAccount {
        account: u8,
        credit_limit: Pick,
    },
    RegisterMeter {
        meter: u8,
        owner: u8,
        import: Pick,
        export: Pick,
        /// `ZONE_NAMES[zone % 3]`.
        zone: u8,
    },
    Credit {
        account: u8,
        amount: Pick,
    },
    Debit {
        account: u8,
        amount: Pick,
    },
    SetTariffs {
        ahead: u8,
        import: Pick,
        feed_in: Pick,
        fee: Pick,
    },
    Offer {
        account: u8,
        foreign_meter: bool,
        ahead: u8,
        sell: bool,
        energy: Pick,
        price: Pick,
        age: u8,
    },
    /// A sell and a buy that cross, by two accounts, for one interval.
    Cross {
        seller: u8,
        buyer: u8,
        ahead: u8,
        energy: Pick,
        price: Pick,
    },
    Cancel {
        account: u8,
        pick: u8,
    },
    Reading {
        meter: u8,
        back: u8,
        import: Pick,
        export: Pick,
    },
    /// Every registered meter reports the latest ended interval, within its
    /// capacity: the honest households. `skip` drops some of them.
    ReportAll {
        skip: u16,
        seed: u64,
    },
    /// Zone limits for `intervals` intervals from `ahead` after the current
    /// one, signed by the DSO or (`by_dso` false) by the registrar.
    SetZoneLimits {
        by_dso: bool,
        zone: u8,
        ahead: u8,
        intervals: u16,
        import: Pick,
        export: Pick,
    },
    /// A zone meter, by the DSO or (`by_dso` false) by the registrar, with
    /// a key of the meters' pool (some a household's already).
    RegisterZoneMeter {
        by_dso: bool,
        meter: u8,
        zone: u8,
        import: Pick,
        export: Pick,
    },
    /// Tariffs of `count` intervals from `ahead` after the current one,
    /// signed by the DSO (0), the registrar (1) or a household (2); each
    /// part set when its pick's kind is odd.
    SetIntervalTariffs {
        by: u8,
        ahead: u8,
        count: u16,
        import: Pick,
        feed_in: Pick,
        fee: Pick,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => (any::<u8>(), pick()).prop_map(|(account, credit_limit)| Action::RegisterAccount { account, credit_limit }),
        3 => (any::<u8>(), any::<u8>(), pick(), pick(), any::<u8>())
            .prop_map(|(meter, owner, import, export, zone)| Action::RegisterMeter { meter, owner, import, export, zone }),
        2 => (any::<u8>(), pick()).prop_map(|(account, amount)| Action::Credit { account, amount }),
        1 => (any::<u8>(), pick()).prop_map(|(account, amount)| Action::Debit { account, amount }),
        1 => (0_u8..=4, pick(), pick(), pick())
            .prop_map(|(ahead, import, feed_in, fee)| Action::SetTariffs { ahead, import, feed_in, fee }),
        8 => (any::<u8>(), prop::bool::weighted(0.1), 0_u8..=22, any::<bool>(), pick(), pick(), 0_u8..=14).prop_map(
            |(account, foreign_meter, ahead, sell, energy, price, age)| Action::Offer {
                account, foreign_meter, ahead, sell, energy, price, age
            }
        ),
        6 => (any::<u8>(), any::<u8>(), 0_u8..=2, pick(), pick())
            .prop_map(|(seller, buyer, ahead, energy, price)| Action::Cross { seller, buyer, ahead, energy, price }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(account, pick)| Action::Cancel { account, pick }),
        3 => (any::<u8>(), 0_u8..=3, pick(), pick())
            .prop_map(|(meter, back, import, export)| Action::Reading { meter, back, import, export }),
        5 => (any::<u16>(), any::<u64>()).prop_map(|(skip, seed)| Action::ReportAll { skip, seed }),
        2 => (prop::bool::weighted(0.9), any::<u8>(), 0_u8..=24, prop_oneof![0_u16..=4, Just(97), Just(96)], pick(), pick())
            .prop_map(|(by_dso, zone, ahead, intervals, import, export)| Action::SetZoneLimits {
                by_dso, zone, ahead, intervals, import, export
            }),
        1 => (prop::bool::weighted(0.9), any::<u8>(), any::<u8>(), pick(), pick())
            .prop_map(|(by_dso, meter, zone, import, export)| Action::RegisterZoneMeter {
                by_dso, meter, zone, import, export
            }),
        2 => (0_u8..=2, 0_u8..=24, prop_oneof![0_u16..=4, Just(97), Just(96)], pick(), pick(), pick())
            .prop_map(|(by, ahead, count, import, feed_in, fee)| Action::SetIntervalTariffs {
                by, ahead, count, import, feed_in, fee
            }),
    ]
}

/// How far a block is after the previous one.
#[derive(Clone, Copy, Debug)]
enum Advance {
    /// A fraction of an interval, per mille (at least 1 ms).
    Within(u16),
    /// Whole intervals plus a fraction; long ones are cut to a few days.
    Intervals { count: u16, per_mille: u16 },
}

fn advance() -> impl Strategy<Value = Advance> {
    prop_oneof![
        3 => (0_u16..1000).prop_map(Advance::Within),
        5 => (1_u16..=3, 0_u16..1000).prop_map(|(count, per_mille)| Advance::Intervals { count, per_mille }),
        2 => (4_u16..=40, 0_u16..1000).prop_map(|(count, per_mille)| Advance::Intervals { count, per_mille }),
        1 => (41_u16..=2_000, 0_u16..1000).prop_map(|(count, per_mille)| Advance::Intervals { count, per_mille }),
    ]
}

impl Advance {
    fn ms(self, interval_ms: u64) -> u64 {
        // Days of intervals at most, and never more than 400 of them: each
        // is settled for every meter, one receipt each.
        let long = (3 * 86_400_000 / interval_ms).clamp(1, 400);
        match self {
            Advance::Within(per_mille) => (interval_ms * u64::from(per_mille) / 1000).max(1),
            Advance::Intervals { count, per_mille } => {
                u64::from(count).min(long) * interval_ms + interval_ms * u64::from(per_mille) / 1000
            }
        }
    }
}

/// Market rules: interval lengths from 1 ms to a day, any lead and delay
/// up to two intervals, any tolerance, prices up to the protocol's cap.
fn market() -> impl Strategy<Value = MarketParams> {
    (
        prop_oneof![Just(1_000_u64), Just(60_000), Just(900_000), Just(86_400_000), 1_u64..=5_000],
        0_u64..=8,
        0_u64..=8,
        prop_oneof![Just(0_u16), Just(50), Just(1_000), 0_u16..=1_000],
        any::<bool>(),
        0_u16..=1_000,
        prop_oneof![Just(1_000_000_u64), Just(PRICE_MAX_MICRO_PER_KWH)],
        0_u64..=12,
    )
        .prop_map(|(interval_length_ms, lead, delay, tolerance, pay_as_bid, k_thousandths, cap, age)| {
            MarketParams {
                interval_length_ms,
                gate_closure_lead_ms: (interval_length_ms * lead / 4).min(WEEK_MS),
                settlement_delay_ms: (interval_length_ms * delay / 4).min(WEEK_MS),
                offer_horizon_intervals: 20,
                attestation_max_age_intervals: age,
                price_floor_micro_per_kwh: 0,
                price_cap_micro_per_kwh: cap,
                mechanism: if pay_as_bid { Mechanism::PayAsBid } else { Mechanism::Uniform },
                k_thousandths,
                max_open_offers_per_account: 6,
                max_offers_per_interval: 24,
                max_transactions_per_block: 10_000,
                meter_tolerance_permille: tolerance,
                block_time_tolerance_ms: 2_000,
            }
        })
}

/// A meter as the model sees it.
#[derive(Clone, Debug)]
struct ModelMeter {
    owner: AccountId,
    import_w: u64,
    export_w: u64,
    registered_interval: u64,
    /// Its zone's index.
    zone: usize,
    last: Option<MeterReading>,
    /// Readings on the ledger when their interval settled (or before).
    kept: BTreeMap<u64, (u64, u64)>,
    /// A zone's own meter (`owner` the DSO): it bills nobody.
    zone_meter: bool,
}

/// An independent model of what the state machine must do with meters and
/// settlement, written from docs/PROTOCOL.md §5.4 and §5.6.
#[derive(Clone, Debug, Default)]
struct Model {
    /// Registered accounts and their meters' summed (import, export) power.
    accounts: BTreeMap<AccountId, (u64, u64)>,
    meters: BTreeMap<MeterId, ModelMeter>,
    tariffs: Vec<Tariffs>,
    contracts: BTreeMap<(u64, AccountId), Contract>,
    /// Each account's meters' zone.
    account_zones: BTreeMap<AccountId, usize>,
    /// Each zone's genesis limits, and the DSO's by (interval, zone).
    zones: Vec<ZoneLimits>,
    zone_limits: BTreeMap<(u64, u32), ZoneLimits>,
    /// The intervals' own tariffs.
    interval_tariffs: BTreeMap<u64, IntervalTariffs>,
}

impl Model {
    fn tariffs_for(&self, interval: u64) -> Tariffs {
        let schedule = *self
            .tariffs
            .iter()
            .rev()
            .find(|t| t.effective_from_interval <= interval)
            .unwrap_or(&self.tariffs[0]);
        let Some(own) = self.interval_tariffs.get(&interval) else { return schedule };
        Tariffs {
            effective_from_interval: interval,
            grid_import_micro_per_kwh: own
                .grid_import_micro_per_kwh
                .unwrap_or(schedule.grid_import_micro_per_kwh),
            grid_feed_in_micro_per_kwh: own
                .grid_feed_in_micro_per_kwh
                .unwrap_or(schedule.grid_feed_in_micro_per_kwh),
            network_fee_micro_per_kwh: own
                .network_fee_micro_per_kwh
                .unwrap_or(schedule.network_fee_micro_per_kwh),
        }
    }

    /// The expected outcome of registering `meter`.
    fn register_meter(
        &self,
        meter: &MeterId,
        owner: &AccountId,
        (import_w, export_w): (u64, u64),
        zone: &str,
    ) -> Result<(), &'static str> {
        if !ZONE_NAMES[..2].contains(&zone) {
            return Err("unknown_zone");
        }
        if self.meters.contains_key(meter) {
            return Err("meter_exists");
        }
        if import_w > METER_POWER_MAX_W || export_w > METER_POWER_MAX_W {
            return Err("meter_power_above_bound");
        }
        let Some(&(import_sum, export_sum)) = self.accounts.get(owner) else { return Err("unknown_account") };
        let index = ZONE_NAMES.iter().position(|name| *name == zone).unwrap();
        if self.account_zones.get(owner).is_some_and(|known| *known != index) {
            return Err("account_in_another_zone");
        }
        if import_sum + import_w > ACCOUNT_POWER_MAX_W || export_sum + export_w > ACCOUNT_POWER_MAX_W {
            return Err("account_power_above_bound");
        }
        Ok(())
    }

    /// The expected outcome of a meter reading at block time `time_ms`.
    fn reading(&self, genesis: &Genesis, reading: &MeterReading, time_ms: u64) -> Result<(), &'static str> {
        let Some(meter) = self.meters.get(&reading.meter) else { return Err("unknown_meter") };
        if reading.interval < meter.registered_interval {
            return Err("reading_before_registration");
        }
        if genesis.interval_end_ms(reading.interval).is_none_or(|end| end > time_ms) {
            return Err("reading_before_interval_end");
        }
        if let Some(last) = meter.last {
            if reading.interval <= last.interval {
                return Err("reading_not_increasing");
            }
            let gap = u128::from(reading.interval - last.interval);
            for (value, before, power_w) in [
                (reading.import_wh_total, last.import_wh_total, meter.import_w),
                (reading.export_wh_total, last.export_wh_total, meter.export_w),
            ] {
                if value < before {
                    return Err("register_decreased");
                }
                if u128::from(value - before) > gap * u128::from(genesis.meter_capacity_wh(power_w)) {
                    return Err("reading_above_capacity");
                }
            }
        }
        Ok(())
    }

    /// The settlement receipts of intervals `from..to`, in the closed form
    /// of PROTOCOL §5.6: a meter's base before interval i is its latest kept
    /// reading before i.
    fn settlements(&self, genesis: &Genesis, from: u64, to: u64) -> Vec<SettlementReceipt> {
        let mut receipts = Vec::new();
        for interval in from..to {
            let tariffs = self.tariffs_for(interval);
            // (net export, estimated import, refund Wh, refund nano)
            let mut metered: BTreeMap<AccountId, (i128, u64, u64, i128)> = BTreeMap::new();
            let mut zones = vec![ZoneSettlement::default(); genesis.zones.len()];
            for meter in
                self.meters.values().filter(|meter| meter.zone_meter && meter.registered_interval < interval)
            {
                // Measured when its base (its latest kept reading before the
                // interval) ends the interval before and it has a reading.
                let base = meter.kept.range(meter.registered_interval..interval).next_back();
                if let (Some((&base_interval, before)), Some(after)) = (base, meter.kept.get(&interval))
                    && base_interval + 1 == interval
                {
                    let net = i64::try_from(after.1 - before.1).unwrap()
                        - i64::try_from(after.0 - before.0).unwrap();
                    zones[meter.zone].zone_meter_net_export_wh = Some(net);
                }
            }
            for meter in
                self.meters.values().filter(|meter| !meter.zone_meter && meter.registered_interval < interval)
            {
                let capacity = genesis.meter_capacity_wh(meter.import_w);
                let entry = metered.entry(meter.owner).or_default();
                let base = meter.kept.range(meter.registered_interval..interval).next_back();
                let reading = meter.kept.get(&interval);
                match (base, reading) {
                    (Some((&base_interval, before)), Some(after)) => {
                        let net = i128::from(after.1 - before.1) - i128::from(after.0 - before.0);
                        if base_interval + 1 == interval {
                            entry.0 += net;
                            zones[meter.zone].measured_net_export_wh += i64::try_from(net).unwrap();
                            zones[meter.zone].measured_meters += 1;
                        } else {
                            zones[meter.zone].estimated_meters += 1;
                            entry.0 -= i128::from(capacity);
                            entry.1 += capacity;
                            let estimated = i128::from(interval - base_interval) * i128::from(capacity);
                            let refund = estimated.min(estimated + net);
                            assert!(refund >= 0, "the physics bound keeps the import within the estimate");
                            let rate = (base_interval + 1..=interval)
                                .map(|j| {
                                    let t = self.tariffs_for(j);
                                    t.grid_feed_in_micro_per_kwh.min(t.grid_import_micro_per_kwh)
                                })
                                .min()
                                .unwrap();
                            entry.2 += u64::try_from(refund).unwrap();
                            entry.3 += refund * i128::from(rate);
                        }
                    }
                    _ => {
                        entry.0 -= i128::from(capacity);
                        entry.1 += capacity;
                        zones[meter.zone].estimated_meters += 1;
                    }
                }
            }
            // Accounts with a contract in the interval are billed too.
            for ((_, account), _) in self.contracts.range((interval, KEY_MIN)..=(interval, KEY_MAX)) {
                metered.entry(*account).or_default();
            }
            if metered.is_empty() {
                continue;
            }
            let bills = metered
                .into_iter()
                .map(|(account, (net, estimated, refund_wh, refund_nano))| {
                    let contract = self.contracts.get(&(interval, account)).copied().unwrap_or_default();
                    let deviation = net - (i128::from(contract.sold_wh) - i128::from(contract.bought_wh));
                    let (grid_import_wh, feed_in_wh) =
                        if deviation < 0 { (-deviation, 0) } else { (0, deviation) };
                    let grid_import_nano = -grid_import_wh * i128::from(tariffs.grid_import_micro_per_kwh);
                    let feed_in_nano = feed_in_wh * i128::from(tariffs.grid_feed_in_micro_per_kwh);
                    Bill {
                        account,
                        sold_wh: contract.sold_wh,
                        bought_wh: contract.bought_wh,
                        sold_nano: contract.sold_nano,
                        bought_nano: contract.bought_nano,
                        fees_nano: contract.fees_nano,
                        metered_net_export_wh: i64::try_from(net).unwrap(),
                        deviation_wh: i64::try_from(deviation).unwrap(),
                        grid_import_wh: u64::try_from(grid_import_wh).unwrap(),
                        grid_import_nano,
                        feed_in_wh: u64::try_from(feed_in_wh).unwrap(),
                        feed_in_nano,
                        total_nano: contract.sold_nano
                            + contract.bought_nano
                            + contract.fees_nano
                            + grid_import_nano
                            + feed_in_nano
                            + refund_nano,
                        estimated_import_wh: estimated,
                        estimate_refund_wh: refund_wh,
                        estimate_refund_nano: refund_nano,
                    }
                })
                .collect();
            receipts.push(SettlementReceipt { interval, tariffs, bills, zones });
        }
        receipts
    }

    /// Checks a clearing's zones against the limits set for its interval
    /// (docs/AUCTION.md §6) and records its trades as contracts, the buyer
    /// at its zone's price.
    fn clearing(&mut self, receipt: &gridshare_ledger::block::ClearingReceipt) -> Result<(), TestCaseError> {
        prop_assert_eq!(receipt.zones.len(), self.zones.len());
        let mut net_sum = 0_i128;
        for (index, zone) in receipt.zones.iter().enumerate() {
            let key = (receipt.interval, u32::try_from(index).unwrap());
            let limits = self.zone_limits.get(&key).copied().unwrap_or(self.zones[index]);
            prop_assert_eq!(zone.limits, limits, "zone {} of interval {}", index, receipt.interval);
            let net = i128::from(zone.net_export_wh);
            prop_assert!(
                -i128::from(limits.import_wh_max) <= net && net <= i128::from(limits.export_wh_max),
                "zone {} of interval {} moves {} Wh past its limits {:?}",
                index,
                receipt.interval,
                net,
                limits
            );
            net_sum += net;
        }
        prop_assert_eq!(net_sum, 0, "the zones' net exports of interval {} do not balance", receipt.interval);
        let congested = receipt.zones.iter().any(|zone| zone.congested);
        for trade in &receipt.trades {
            prop_assert!(trade.buyer_price_micro_per_kwh >= trade.price_micro_per_kwh);
            if !congested {
                prop_assert_eq!(trade.buyer_price_micro_per_kwh, trade.price_micro_per_kwh);
            }
            let energy = i128::from(trade.energy_wh);
            let fee = energy * i128::from(receipt.network_fee_micro_per_kwh);
            let buyer = self.contracts.entry((receipt.interval, trade.buyer)).or_default();
            buyer.bought_wh += trade.energy_wh;
            buyer.bought_nano -= energy * i128::from(trade.buyer_price_micro_per_kwh);
            buyer.fees_nano -= fee;
            let seller = self.contracts.entry((receipt.interval, trade.seller)).or_default();
            seller.sold_wh += trade.energy_wh;
            seller.sold_nano += energy * i128::from(trade.price_micro_per_kwh);
        }
        Ok(())
    }

    /// The expected outcome of a DSO's zone limits at block time `time_ms`
    /// (the nonce is always the next).
    fn zone_limits(&self, genesis: &Genesis, tx: &Tx, time_ms: u64) -> Result<(), &'static str> {
        let Tx::SetZoneLimits { dso, zone, first_interval, intervals, .. } = tx else { unreachable!() };
        if !genesis.dsos.contains(dso) {
            return Err("not_a_dso");
        }
        if !ZONE_NAMES[..2].contains(&zone.as_str()) {
            return Err("unknown_zone");
        }
        if *intervals == 0 || *intervals > 96 {
            return Err("zone_limit_intervals");
        }
        if time_ms >= genesis.gate_closure_ms(*first_interval).unwrap() {
            return Err("interval_closed");
        }
        let last = first_interval.saturating_add(u64::from(*intervals) - 1);
        if last > genesis.interval_at(time_ms) + genesis.market.offer_horizon_intervals {
            return Err("interval_too_far_ahead");
        }
        Ok(())
    }

    /// The expected outcome of registering a zone meter (the nonce is
    /// always the next).
    fn register_zone_meter(
        &self,
        genesis: &Genesis,
        dso: &AccountId,
        meter: &MeterId,
        (import_w, export_w): (u64, u64),
        zone: &str,
    ) -> Result<(), &'static str> {
        if !genesis.dsos.contains(dso) {
            return Err("not_a_dso");
        }
        let Some(index) = ZONE_NAMES[..2].iter().position(|name| *name == zone) else {
            return Err("unknown_zone");
        };
        if self.meters.contains_key(meter) {
            return Err("meter_exists");
        }
        if import_w > METER_POWER_MAX_W || export_w > METER_POWER_MAX_W {
            return Err("meter_power_above_bound");
        }
        if self.meters.values().any(|meter| meter.zone_meter && meter.zone == index) {
            return Err("zone_meter_exists");
        }
        Ok(())
    }

    /// The expected outcome of an interval's own tariffs at `time_ms` (the
    /// nonce is always the next; the bound on entries is never met here).
    fn interval_tariffs(&self, genesis: &Genesis, tx: &Tx, time_ms: u64) -> Result<(), &'static str> {
        let Tx::SetIntervalTariffs { signer, first_interval, tariffs, .. } = tx else { unreachable!() };
        if !genesis.dsos.contains(signer) && !genesis.registrars.contains(signer) {
            return Err("not_a_tariff_setter");
        }
        if tariffs.is_empty() || tariffs.len() > 96 {
            return Err("tariff_intervals");
        }
        let parts = tariffs.iter().flat_map(|entry| {
            [
                entry.grid_import_micro_per_kwh,
                entry.grid_feed_in_micro_per_kwh,
                entry.network_fee_micro_per_kwh,
            ]
        });
        if parts.flatten().any(|rate| rate > PRICE_MAX_MICRO_PER_KWH) {
            return Err("tariff_too_high");
        }
        if time_ms >= genesis.gate_closure_ms(*first_interval).unwrap() {
            return Err("interval_closed");
        }
        let last = first_interval + tariffs.len() as u64 - 1;
        if last > genesis.interval_at(time_ms) + genesis.market.offer_horizon_intervals {
            return Err("interval_too_far_ahead");
        }
        Ok(())
    }
}

/// A case: the community, whether it starts with the credits near their
/// bound, and its blocks. The first block registers and credits some
/// accounts and meters (with hostile values too), so that the random
/// blocks after it find a community that trades and reports.
#[derive(Clone, Debug)]
struct Chain {
    market: MarketParams,
    funded: bool,
    blocks: Vec<(Advance, Vec<Action>)>,
}

fn chain() -> impl Strategy<Value = Chain> {
    let setup = (
        prop::collection::vec((valid_pick(), valid_pick()), 2..=ACCOUNTS),
        prop::collection::vec((any::<u8>(), valid_pick(), valid_pick()), 1..=METERS),
    )
        .prop_map(|(accounts, meters)| {
            let mut actions = Vec::new();
            for (index, (credit_limit, _)) in accounts.iter().enumerate() {
                actions.push(Action::RegisterAccount { account: small(index), credit_limit: *credit_limit });
            }
            for (index, (owner, import, export)) in meters.iter().enumerate() {
                let owner = owner % small(accounts.len());
                actions.push(Action::RegisterMeter {
                    meter: small(index),
                    owner,
                    import: *import,
                    export: *export,
                    zone: small(index % 2),
                });
            }
            for (index, (_, amount)) in accounts.iter().enumerate() {
                actions.push(Action::Credit { account: small(index), amount: *amount });
            }
            actions
        });
    (
        market(),
        prop::bool::weighted(0.25),
        setup,
        prop::collection::vec((advance(), prop::collection::vec(action(), 0..=12)), 2..=12),
    )
        .prop_map(|(market, funded, setup, mut blocks)| {
            blocks.insert(0, (Advance::Within(100), setup));
            Chain { market, funded, blocks }
        })
}

struct Runner {
    community: TestCommunity,
    accounts: Vec<Keypair>,
    meters: Vec<Keypair>,
    start: State,
    state: State,
    blocks: Vec<Block>,
    model: Model,
}

impl Runner {
    fn new(case: &Chain) -> Runner {
        let mut community = TestCommunity::new(21, 0, case.market.clone(), T0);
        // Two feeders: one open, one that carries little.
        let tight = ZoneLimits { import_wh_max: 3_000, export_wh_max: 2_000 };
        community.genesis.zones = vec![
            Zone { name: ZONE_NAMES[0].into(), limits: ZoneLimits::OPEN },
            Zone { name: ZONE_NAMES[1].into(), limits: tight },
        ];
        community.genesis.tariffs = Tariffs {
            effective_from_interval: 0,
            grid_import_micro_per_kwh: 300_000,
            grid_feed_in_micro_per_kwh: 80_000,
            network_fee_micro_per_kwh: 20_000,
        };
        community.genesis.validate().unwrap();
        let accounts: Vec<Keypair> =
            (0..ACCOUNTS).map(|index| derived_key(21, 3, u32::try_from(index).unwrap())).collect();
        let meters: Vec<Keypair> =
            (0..METERS).map(|index| derived_key(21, 4, u32::try_from(index).unwrap())).collect();
        let mut state = State::genesis(&community.genesis);
        let mut model = Model {
            tariffs: vec![community.genesis.tariffs],
            zones: community.genesis.zones.iter().map(|zone| zone.limits).collect(),
            ..Model::default()
        };
        if case.funded {
            // Credits a hair below their bound, held by account 0: the state
            // a million credits of 10^30 would leave, which no test can sign.
            let credits = CREDITS_TOTAL_MAX_NANO - 3 * AMOUNT_MAX_NANO;
            state.credits_nano = credits;
            state.accounts.insert(
                accounts[0].public(),
                Account {
                    balance_nano: credits,
                    reserved_nano: 0,
                    credit_limit_nano: AMOUNT_MAX_NANO,
                    last_nonce: 0,
                    open_offers: 0,
                    max_import_w: 0,
                    max_export_w: 0,
                    zone: None,
                },
            );
            model.accounts.insert(accounts[0].public(), (0, 0));
            state.check_invariants().unwrap();
        }
        Runner { community, accounts, meters, start: state.clone(), state, blocks: Vec::new(), model }
    }

    fn genesis(&self) -> &Genesis {
        &self.community.genesis
    }

    fn registrar_tx(&self, scratch: &State, body: impl FnOnce(u64) -> Tx) -> SignedTx {
        let registrar = &self.community.registrar;
        let nonce = scratch.registrar_nonces.get(&registrar.public()).copied().unwrap_or(0) + 1;
        SignedTx::sign(body(nonce), registrar, &self.genesis().community_id)
    }

    fn reading_tx(&self, meter: &Keypair, interval: u64, import: u64, export: u64) -> SignedTx {
        let reading = MeterReading {
            meter: meter.public(),
            interval,
            import_wh_total: import,
            export_wh_total: export,
        };
        let signed = SignedMeterReading::sign(reading, meter, &self.genesis().community_id);
        SignedTx { tx: Tx::MeterReading(reading), signature: signed.signature }
    }

    /// Registers for a reading of `meter` for `interval`: `import` and
    /// `export` pick the rise against its last reading (up to, at and above
    /// the physics bound, or below it), or any value for a first reading.
    fn registers(&self, meter: &MeterId, interval: u64, import: Pick, export: Pick) -> (u64, u64) {
        let genesis = self.genesis();
        let Some(model) = self.model.meters.get(meter) else { return (import.raw, export.raw) };
        let Some(last) = model.last else {
            let first = |p: Pick| if p.kind.is_multiple_of(3) { u64::MAX } else { p.raw >> (p.kind % 64) };
            return (first(import), first(export));
        };
        let gap = interval.saturating_sub(last.interval).max(1);
        let next = |before: u64, power_w: u64, p: Pick| {
            if p.kind % 16 == 15 {
                return before.saturating_sub(1);
            }
            let bound = u64::try_from(u128::from(gap) * u128::from(genesis.meter_capacity_wh(power_w)))
                .unwrap_or(u64::MAX);
            before.saturating_add(p.up_to(bound))
        };
        (
            next(last.import_wh_total, model.import_w, import),
            next(last.export_wh_total, model.export_w, export),
        )
    }

    /// The transaction an action stands for, made against `scratch` (the
    /// state with the block's earlier candidates applied) at `time_ms`.
    fn transaction(&self, scratch: &State, action: &Action, time_ms: u64) -> Vec<SignedTx> {
        let genesis = self.genesis();
        let account = |index: u8| &self.accounts[usize::from(index) % ACCOUNTS];
        let meter = |index: u8| &self.meters[usize::from(index) % METERS];
        let ended = genesis.interval_at(time_ms).checked_sub(1);
        // Mostly a registered account or meter, now and then any key.
        let registered_account = |index: u8| {
            let registered: Vec<&Keypair> =
                self.accounts.iter().filter(|key| scratch.accounts.contains_key(&key.public())).collect();
            if index % 8 == 7 || registered.is_empty() {
                account(index)
            } else {
                registered[usize::from(index) % registered.len()]
            }
        };
        let registered_meter = |index: u8| {
            let registered: Vec<&Keypair> = self
                .meters
                .iter()
                .filter(|key| {
                    scratch.meters.contains_key(&key.public())
                        || scratch.zone_meters.contains_key(&key.public())
                })
                .collect();
            if index % 8 == 7 || registered.is_empty() {
                meter(index)
            } else {
                registered[usize::from(index) % registered.len()]
            }
        };
        match *action {
            Action::RegisterAccount { account: index, credit_limit } => {
                let account = account(index).public();
                let credit_limit_nano = credit_limit.amount_nano();
                vec![self.registrar_tx(scratch, |nonce| Tx::RegisterAccount {
                    registrar: self.community.registrar.public(),
                    nonce,
                    account,
                    credit_limit_nano,
                })]
            }
            Action::RegisterMeter { meter: index, owner, import, export, zone } => {
                let (meter, owner) = (meter(index).public(), account(owner).public());
                vec![self.registrar_tx(scratch, |nonce| Tx::RegisterMeter {
                    registrar: self.community.registrar.public(),
                    nonce,
                    meter,
                    owner,
                    max_import_w: import.power_w(),
                    max_export_w: export.power_w(),
                    zone: ZONE_NAMES[usize::from(zone) % 3].into(),
                })]
            }
            Action::Credit { account: index, amount } => {
                let account = registered_account(index).public();
                vec![self.registrar_tx(scratch, |nonce| Tx::Credit {
                    registrar: self.community.registrar.public(),
                    nonce,
                    account,
                    amount_nano: amount.amount_nano(),
                    reference: String::new(),
                })]
            }
            Action::Debit { account: index, amount } => {
                let key = registered_account(index).public();
                // Often all that is available, to reach the edge.
                let amount_nano = match (amount.kind % 4, scratch.accounts.get(&key)) {
                    (0, Some(entry)) => entry.available_nano(),
                    (1, Some(entry)) => entry.available_nano() + 1,
                    _ => amount.amount_nano(),
                };
                vec![self.registrar_tx(scratch, |nonce| Tx::Debit {
                    registrar: self.community.registrar.public(),
                    nonce,
                    account: key,
                    amount_nano,
                    reference: String::new(),
                })]
            }
            Action::SetTariffs { ahead, import, feed_in, fee } => {
                let earliest = genesis.interval_at(time_ms).max(scratch.next_clearing_interval);
                let tariffs = Tariffs {
                    effective_from_interval: earliest + u64::from(ahead),
                    grid_import_micro_per_kwh: import.price_micro_per_kwh(),
                    grid_feed_in_micro_per_kwh: feed_in.price_micro_per_kwh(),
                    network_fee_micro_per_kwh: fee.price_micro_per_kwh() / 4,
                };
                vec![self.registrar_tx(scratch, |nonce| Tx::SetTariffs {
                    registrar: self.community.registrar.public(),
                    nonce,
                    tariffs,
                })]
            }
            Action::Offer { account: index, foreign_meter, ahead, sell, energy, price, age } => {
                let keypair = registered_account(index);
                let key = keypair.public();
                let entry = scratch.accounts.get(&key);
                let nonce = entry.map_or(1, |entry| entry.last_nonce + 1);
                // Mostly one of the next three open intervals, so that
                // offers meet; now and then closed or beyond the horizon.
                let next_open = genesis.interval_at(time_ms + genesis.market.gate_closure_lead_ms) + 1;
                let interval = if ahead < 18 {
                    next_open + u64::from(ahead % 3)
                } else {
                    genesis.interval_at(time_ms) + u64::from(ahead)
                };
                let side = if sell { Side::Sell } else { Side::Buy };
                let limit_w =
                    entry.map_or(0, |entry| if sell { entry.max_export_w } else { entry.max_import_w });
                let open_wh =
                    scratch.positions.get(&(key, interval)).map_or(0, |position| position.energy_wh);
                let room_wh =
                    genesis.energy_per_interval_wh(limit_w).saturating_sub(open_wh).min(1_000_000_000);
                let energy_wh = energy.up_to(room_wh);
                let price = price.up_to(genesis.market.price_cap_micro_per_kwh);
                let own = self
                    .meters
                    .iter()
                    .find(|m| scratch.meters.get(&m.public()).is_some_and(|m| m.owner == key));
                let attesting = match own {
                    Some(own) if !foreign_meter => own,
                    _ => meter(index),
                };
                let reading = MeterReading {
                    meter: attesting.public(),
                    interval: interval.saturating_sub(u64::from(age)),
                    import_wh_total: 0,
                    export_wh_total: 0,
                };
                let attestation = SignedMeterReading::sign(reading, attesting, &genesis.community_id);
                let offer = Offer {
                    account: key,
                    nonce,
                    interval,
                    side,
                    energy_wh,
                    price_micro_per_kwh: price,
                    attestation,
                };
                vec![SignedTx::sign(Tx::Offer(offer), keypair, &genesis.community_id)]
            }
            Action::Cross { seller, buyer, ahead, energy, price } => {
                // The ask at `price`, the bid above it by the network fee
                // and more, each for as much as the picks allow.
                let cap = genesis.market.price_cap_micro_per_kwh;
                let ask = Pick { kind: 5, raw: price.up_to(cap / 2) };
                let bid = Pick { kind: 2, raw: 0 };
                // The bound or a random energy, never zero or above it.
                let energy = Pick { kind: if energy.kind % 2 == 0 { 2 } else { 6 }, raw: energy.raw };
                let sell = Action::Offer {
                    account: seller,
                    foreign_meter: false,
                    ahead,
                    sell: true,
                    energy,
                    price: ask,
                    age: 0,
                };
                let buy = Action::Offer {
                    account: buyer,
                    foreign_meter: false,
                    ahead,
                    sell: false,
                    energy,
                    price: bid,
                    age: 0,
                };
                let mut txs = self.transaction(scratch, &sell, time_ms);
                txs.extend(self.transaction(scratch, &buy, time_ms));
                txs
            }
            Action::Cancel { account: index, pick } => {
                let keypair = registered_account(index);
                let key = keypair.public();
                let own: Vec<Hash> = scratch
                    .offers
                    .iter()
                    .filter(|(_, offer)| offer.account == key)
                    .map(|(id, _)| *id)
                    .collect();
                let offer_id =
                    if own.is_empty() { Hash([pick; 32]) } else { own[usize::from(pick) % own.len()] };
                let nonce = scratch.accounts.get(&key).map_or(1, |entry| entry.last_nonce + 1);
                vec![SignedTx::sign(
                    Tx::CancelOffer { account: key, nonce, offer_id },
                    keypair,
                    &genesis.community_id,
                )]
            }
            Action::SetZoneLimits { by_dso, zone, ahead, intervals, import, export } => {
                let signer = if by_dso { &self.community.dso } else { &self.community.registrar };
                let nonce = scratch.registrar_nonces.get(&signer.public()).copied().unwrap_or(0) + 1;
                let tx = Tx::SetZoneLimits {
                    dso: signer.public(),
                    nonce,
                    zone: ZONE_NAMES[usize::from(zone) % 3].into(),
                    first_interval: genesis.interval_at(time_ms) + u64::from(ahead),
                    intervals: u32::from(intervals),
                    limits: ZoneLimits {
                        import_wh_max: import.up_to(50_000),
                        export_wh_max: export.up_to(50_000),
                    },
                };
                vec![SignedTx::sign(tx, signer, &genesis.community_id)]
            }
            Action::RegisterZoneMeter { by_dso, meter: index, zone, import, export } => {
                let signer = if by_dso { &self.community.dso } else { &self.community.registrar };
                let nonce = scratch.registrar_nonces.get(&signer.public()).copied().unwrap_or(0) + 1;
                let tx = Tx::RegisterZoneMeter {
                    dso: signer.public(),
                    nonce,
                    meter: meter(index).public(),
                    zone: ZONE_NAMES[usize::from(zone) % 3].into(),
                    max_import_w: import.power_w(),
                    max_export_w: export.power_w(),
                };
                vec![SignedTx::sign(tx, signer, &genesis.community_id)]
            }
            Action::SetIntervalTariffs { by, ahead, count, import, feed_in, fee } => {
                let signer = match by {
                    0 => &self.community.dso,
                    1 => &self.community.registrar,
                    _ => account(0),
                };
                let nonce = scratch.registrar_nonces.get(&signer.public()).copied().unwrap_or(0) + 1;
                let part = |pick: Pick| (pick.kind % 2 == 1).then(|| pick.price_micro_per_kwh());
                let entry = IntervalTariffs {
                    grid_import_micro_per_kwh: part(import),
                    grid_feed_in_micro_per_kwh: part(feed_in),
                    network_fee_micro_per_kwh: part(fee).map(|fee| fee / 4),
                };
                let tx = Tx::SetIntervalTariffs {
                    signer: signer.public(),
                    nonce,
                    first_interval: genesis.interval_at(time_ms) + u64::from(ahead),
                    tariffs: vec![entry; usize::from(count)],
                };
                vec![SignedTx::sign(tx, signer, &genesis.community_id)]
            }
            Action::Reading { meter: index, back, import, export } => {
                let keypair = registered_meter(index);
                let interval = ended.unwrap_or(0).saturating_sub(u64::from(back));
                let (import, export) = self.registers(&keypair.public(), interval, import, export);
                vec![self.reading_tx(keypair, interval, import, export)]
            }
            Action::ReportAll { skip, seed } => {
                let Some(ended) = ended else { return Vec::new() };
                let mut random = SplitMix64(seed);
                let mut txs = Vec::new();
                for (index, keypair) in self.meters.iter().enumerate() {
                    let Some(model) = self.model.meters.get(&keypair.public()) else { continue };
                    // Now and then a few meters miss the intervals.
                    if skip % 4 == 0 && skip & (1 << (4 + index)) != 0 {
                        continue;
                    }
                    // Every interval since the last reading (the last 8 at
                    // most), registers rising within the meter's capacity.
                    let first = model.last.map_or(model.registered_interval, |last| last.interval + 1);
                    let mut last = model.last;
                    for interval in first.max(ended.saturating_sub(7))..=ended {
                        let mut rise = |before: u64, power_w: u64| {
                            let capacity = self.genesis().meter_capacity_wh(power_w);
                            let gap = last.map_or(1, |last: MeterReading| interval - last.interval);
                            before.saturating_add(
                                random.next_u64() % (capacity.saturating_mul(gap).saturating_add(1)),
                            )
                        };
                        let (import, export) = match last {
                            Some(last) => (
                                rise(last.import_wh_total, model.import_w),
                                rise(last.export_wh_total, model.export_w),
                            ),
                            None => (random.next_u64() >> 8, random.next_u64() >> 8),
                        };
                        let tx = self.reading_tx(keypair, interval, import, export);
                        let Tx::MeterReading(reading) = tx.tx else { unreachable!() };
                        last = Some(reading);
                        txs.push(tx);
                    }
                }
                txs
            }
        }
    }

    /// What the model expects of a registration or a reading; `None` for
    /// the transactions it leaves to the state machine.
    fn predict(&self, tx: &SignedTx, time_ms: u64) -> Option<Result<(), &'static str>> {
        match &tx.tx {
            Tx::RegisterMeter { meter, owner, max_import_w, max_export_w, zone, .. } => {
                Some(self.model.register_meter(meter, owner, (*max_import_w, *max_export_w), zone))
            }
            Tx::SetZoneLimits { .. } => Some(self.model.zone_limits(self.genesis(), &tx.tx, time_ms)),
            Tx::SetIntervalTariffs { .. } => {
                Some(self.model.interval_tariffs(self.genesis(), &tx.tx, time_ms))
            }
            Tx::RegisterZoneMeter { dso, meter, zone, max_import_w, max_export_w, .. } => {
                Some(self.model.register_zone_meter(
                    self.genesis(),
                    dso,
                    meter,
                    (*max_import_w, *max_export_w),
                    zone,
                ))
            }
            Tx::RegisterAccount { account, credit_limit_nano, .. } => {
                Some(if !(0..=AMOUNT_MAX_NANO).contains(credit_limit_nano) {
                    Err("invalid_amount")
                } else if self.model.accounts.contains_key(account) {
                    Err("account_exists")
                } else {
                    Ok(())
                })
            }
            Tx::MeterReading(reading) => Some(self.model.reading(self.genesis(), reading, time_ms)),
            _ => None,
        }
    }

    /// Updates the model with an admitted transaction; `kept_from` is the
    /// settlement cursor of the block.
    fn admitted(&mut self, tx: &SignedTx, time_ms: u64, kept_from: u64) {
        let genesis = self.community.genesis.clone();
        match &tx.tx {
            Tx::RegisterAccount { account, .. } => {
                self.model.accounts.insert(*account, (0, 0));
            }
            Tx::RegisterMeter { meter, owner, max_import_w, max_export_w, zone, .. } => {
                let index = usize::try_from(genesis.zone_index(zone).unwrap()).unwrap();
                self.model.account_zones.insert(*owner, index);
                let sums = self.model.accounts.get_mut(owner).unwrap();
                sums.0 += max_import_w;
                sums.1 += max_export_w;
                self.model.meters.insert(
                    *meter,
                    ModelMeter {
                        owner: *owner,
                        import_w: *max_import_w,
                        export_w: *max_export_w,
                        registered_interval: genesis.interval_at(time_ms),
                        zone: usize::try_from(genesis.zone_index(zone).unwrap()).unwrap(),
                        last: None,
                        kept: BTreeMap::new(),
                        zone_meter: false,
                    },
                );
            }
            Tx::SetTariffs { tariffs, .. } => {
                self.model.tariffs.retain(|t| t.effective_from_interval < tariffs.effective_from_interval);
                self.model.tariffs.push(*tariffs);
            }
            Tx::SetZoneLimits { zone, first_interval, intervals, limits, .. } => {
                let zone = genesis.zone_index(zone).unwrap();
                for interval in *first_interval..first_interval + u64::from(*intervals) {
                    self.model.zone_limits.insert((interval, zone), *limits);
                }
            }
            Tx::RegisterZoneMeter { dso, meter, zone, max_import_w, max_export_w, .. } => {
                self.model.meters.insert(
                    *meter,
                    ModelMeter {
                        owner: *dso,
                        import_w: *max_import_w,
                        export_w: *max_export_w,
                        registered_interval: genesis.interval_at(time_ms),
                        zone: usize::try_from(genesis.zone_index(zone).unwrap()).unwrap(),
                        last: None,
                        kept: BTreeMap::new(),
                        zone_meter: true,
                    },
                );
            }
            Tx::SetIntervalTariffs { first_interval, tariffs, .. } => {
                for (interval, entry) in (*first_interval..).zip(tariffs) {
                    if entry.is_empty() {
                        self.model.interval_tariffs.remove(&interval);
                    } else {
                        self.model.interval_tariffs.insert(interval, *entry);
                    }
                }
            }
            Tx::MeterReading(reading) => {
                let meter = self.model.meters.get_mut(&reading.meter).unwrap();
                meter.last = Some(*reading);
                if reading.interval >= kept_from {
                    meter.kept.insert(reading.interval, (reading.import_wh_total, reading.export_wh_total));
                }
            }
            _ => {}
        }
    }

    /// Builds, checks and appends one block.
    fn block(&mut self, advance: Advance, actions: &[Action]) -> Result<(), TestCaseError> {
        let genesis = self.community.genesis.clone();
        let proposer = self.community.validator.public();
        let time_ms = self.state.last_timestamp_ms + advance.ms(genesis.market.interval_length_ms);
        // The clearings come first: the candidates are admitted against the
        // state they leave, the same with or without transactions.
        let (mut scratch, clearings) = cleared(&genesis, &self.state, time_ms)
            .map_err(|error| TestCaseError::fail(format!("clearing at {time_ms} fails: {error}")))?;
        for receipt in &clearings {
            if let Receipt::Clearing(clearing) = receipt {
                self.model.clearing(clearing)?;
            }
        }
        let settled_from = self.state.next_settlement_interval;

        // The candidates, each admitted or refused against the state the
        // ones before it left, as the block builder will.
        let mut candidates = Vec::new();
        let mut refused = Vec::new();
        for action in actions {
            for tx in self.transaction(&scratch, action, time_ms) {
                let predicted = self.predict(&tx, time_ms);
                let outcome = admit(&genesis, &mut scratch, time_ms, &tx);
                if let Some(predicted) = predicted {
                    prop_assert_eq!(
                        outcome.as_ref().map_err(Rejection::code).copied(),
                        predicted,
                        "{} at {}: {:?}",
                        tx.tx.kind(),
                        time_ms,
                        outcome
                    );
                }
                match outcome {
                    Ok(()) => self.admitted(&tx, time_ms, settled_from),
                    Err(rejection) => refused.push((tx.clone(), rejection)),
                }
                candidates.push(tx);
            }
        }
        let built = build_block(&genesis, &self.state, candidates, time_ms, proposer, Signatures::Verify)
            .map_err(|error| {
                TestCaseError::fail(format!("the block at {time_ms} fails to build: {error}"))
            })?;
        prop_assert_eq!(&built.left_out, &refused);
        // Then the settlements, which count the readings of this block.
        let settled_to = built.state.next_settlement_interval;
        let mut expected = clearings;
        expected.extend(
            self.model.settlements(&genesis, settled_from, settled_to).into_iter().map(Receipt::Settlement),
        );
        prop_assert_eq!(
            &built.block.receipts,
            &expected,
            "settlements of intervals {}..{}",
            settled_from,
            settled_to
        );
        self.model.contracts = self.model.contracts.split_off(&(settled_to, KEY_MIN));
        let (next, receipts) = execute(&genesis, &self.state, &built.block, Signatures::Verify)
            .map_err(|error| TestCaseError::fail(format!("the built block does not execute: {error}")))?;
        prop_assert_eq!(&next, &built.state);
        prop_assert_eq!(&receipts, &built.block.receipts);
        prop_assert_eq!(next.check_invariants(), Ok(()));
        self.blocks.push(built.block);
        self.state = next;

        // The whole chain again from its start.
        let mut replayed = self.start.clone();
        for block in &self.blocks {
            replayed = execute(&genesis, &replayed, block, Signatures::AlreadyVerified)
                .map_err(|error| TestCaseError::fail(format!("replay: {error}")))?
                .0;
        }
        prop_assert_eq!(replayed.root(&genesis.community_id), self.state.root(&genesis.community_id));
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    #[test]
    fn every_block_builds_executes_replays_and_settles_as_the_model_says(case in chain()) {
        let mut runner = Runner::new(&case);
        for (advance, actions) in &case.blocks {
            runner.block(*advance, actions)?;
        }
        // The chain did something: at least the first registrations.
        prop_assert!(runner.state.height == case.blocks.len() as u64);
    }
}

// Withholding never pays.

/// What a household does with the reading of one interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Report {
    OnTime,
    Withheld,
    /// Sent this many intervals late (after the interval settled from 2 on).
    Late(u64),
}

fn report() -> impl Strategy<Value = Report> {
    prop_oneof![2 => Just(Report::OnTime), 1 => Just(Report::Withheld), 1 => (1_u64..=3).prop_map(Report::Late)]
}

/// One interval of the household's honest trace.
#[derive(Clone, Copy, Debug)]
struct Step {
    /// Energy imported and exported in the interval, per mille of what the
    /// meter's power moves in it (physics, without the tolerance).
    import_per_mille: u64,
    export_per_mille: u64,
    /// Its offer for the interval three ahead: side, per mille of its
    /// limit, and price.
    sell: bool,
    energy_per_mille: u64,
    price_micro_per_kwh: u64,
    /// New tariffs from two intervals ahead, if any.
    tariffs: Option<(u64, u64)>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0_u64..=1_000,
        0_u64..=1_000,
        any::<bool>(),
        1_u64..=1_000,
        0_u64..=1_000_000,
        prop::option::weighted(0.3, (0_u64..=1_000_000, 0_u64..=1_000_000)),
    )
        .prop_map(
            |(import_per_mille, export_per_mille, sell, energy_per_mille, price_micro_per_kwh, tariffs)| {
                Step {
                    import_per_mille,
                    export_per_mille,
                    sell,
                    energy_per_mille,
                    price_micro_per_kwh,
                    tariffs,
                }
            },
        )
}

/// A household (0) that trades with a counterparty (1), its meter of
/// `power_w` starting at `start` registers and moving as `steps` say, then
/// idle for the intervals its last offers are for; it reports its readings
/// as `reports` says (the counterparty reports every one on time). Its
/// balance once every interval of the trace has settled, and its bills.
fn household_balance(
    power_w: u64,
    start: (u64, u64),
    steps: &[Step],
    reports: &[Report],
) -> (i128, Vec<Bill>) {
    let mut community = TestCommunity::new(33, 2, test_market(), T0);
    let genesis = community.genesis.clone();
    let proposer = community.validator.public();
    let per_interval_wh = genesis.energy_per_interval_wh(power_w);
    let mut txs = Vec::new();
    for (h, power_w) in [(0, power_w), (1, 7_000_000)] {
        let (account, meter) =
            (community.households[h].account.public(), community.households[h].meter.public());
        txs.push(community.registrar_tx(|registrar, nonce| Tx::RegisterAccount {
            registrar,
            nonce,
            account,
            credit_limit_nano: 0,
        }));
        txs.push(community.registrar_tx(|registrar, nonce| Tx::RegisterMeter {
            registrar,
            nonce,
            meter,
            owner: account,
            max_import_w: power_w,
            max_export_w: power_w,
            zone: "main".into(),
        }));
        txs.push(community.registrar_tx(|registrar, nonce| Tx::Credit {
            registrar,
            nonce,
            account,
            amount_nano: 1_000_000 * NANOS_PER_UNIT,
            reference: String::new(),
        }));
    }
    let mut state = State::genesis(&genesis);
    let mut receipts = Vec::new();
    let mut produce = |state: &mut State, txs: Vec<SignedTx>, time_ms: u64| {
        let built = build_block(&genesis, state, txs, time_ms, proposer, Signatures::Verify).unwrap();
        for (tx, rejection) in &built.left_out {
            // Only a late reading overtaken by a later one may be refused.
            assert!(
                matches!(rejection, Rejection::ReadingNotIncreasing { .. }),
                "{} refused: {rejection}",
                tx.tx.kind()
            );
        }
        receipts.extend(built.block.receipts.clone());
        *state = built.state;
    };
    // Registered in interval 0.
    produce(&mut state, txs, T0 + 100);

    // The honest registers at the end of each interval: `start` at the end
    // of interval 0, then the steps, then idle until the last interval
    // offered for (two after the last step).
    let mut registers = vec![start];
    for step in steps.iter().map(Some).chain([None, None]) {
        let (import, export) = *registers.last().unwrap();
        let (import_per_mille, export_per_mille) =
            step.map_or((0, 0), |s| (s.import_per_mille, s.export_per_mille));
        registers.push((
            import + per_interval_wh * import_per_mille / 1_000,
            export + per_interval_wh * export_per_mille / 1_000,
        ));
    }
    let intervals = registers.len() as u64;
    let mut counterparty = (0_u64, 0_u64);
    let mut nonces = [0_u64; 2];
    // The block in interval k holds the readings of interval k − 1 (and the
    // late ones due then), and offers for interval k + 2.
    for k in 1..=intervals + 1 {
        let time_ms = T0 + 1_000 * k + 50;
        let mut due: Vec<(u64, SignedTx)> = Vec::new();
        for (interval, report) in reports.iter().enumerate().take(registers.len()) {
            let interval = interval as u64;
            let when = match report {
                Report::OnTime => interval + 1,
                Report::Withheld => continue,
                Report::Late(late) => interval + 1 + late,
            };
            if when == k {
                let (import, export) = registers[usize::try_from(interval).unwrap()];
                due.push((interval, community.reading_tx(0, interval, import, export)));
            }
        }
        due.sort_by_key(|(interval, _)| *interval);
        let mut txs: Vec<SignedTx> = due.into_iter().map(|(_, tx)| tx).collect();
        if k <= intervals {
            txs.push(community.reading_tx(1, k - 1, counterparty.0, counterparty.1));
            counterparty.0 += 100;
        }
        if let Some(step) = steps.get(usize::try_from(k - 1).unwrap()) {
            // The counterparty takes the other side at a price that crosses.
            let target = k + 2;
            let energy_wh = (per_interval_wh * step.energy_per_mille / 1_000).max(1);
            let (own, other) = if step.sell { (Side::Sell, Side::Buy) } else { (Side::Buy, Side::Sell) };
            let other_price = if step.sell { 1_000_000 } else { 0 };
            for (h, side, price) in [(0, own, step.price_micro_per_kwh), (1, other, other_price)] {
                nonces[h] += 1;
                let (import, export) =
                    if h == 0 { registers[usize::try_from(k - 1).unwrap()] } else { counterparty };
                let attestation = community.reading(h, k - 1, import, export);
                txs.push(community.offer_tx(h, nonces[h], target, side, energy_wh, price, attestation));
            }
            if let Some((import, feed_in)) = step.tariffs {
                let tariffs = Tariffs {
                    effective_from_interval: k + 2,
                    grid_import_micro_per_kwh: import,
                    grid_feed_in_micro_per_kwh: feed_in,
                    network_fee_micro_per_kwh: 10_000,
                };
                txs.push(community.registrar_tx(|registrar, nonce| Tx::SetTariffs {
                    registrar,
                    nonce,
                    tariffs,
                }));
            }
        }
        produce(&mut state, txs, time_ms);
    }
    // Intervals 0 to `intervals − 1` settle, and no later one.
    produce(&mut state, Vec::new(), T0 + 1_000 * intervals + 1_600);
    assert_eq!(state.next_settlement_interval, intervals);
    let account = community.households[0].account.public();
    let bills = receipts
        .iter()
        .filter_map(|receipt| match receipt {
            Receipt::Settlement(settlement) => {
                settlement.bills.iter().find(|bill| bill.account == account).copied()
            }
            Receipt::Clearing(_) => None,
        })
        .collect();
    (state.accounts[&account].balance_nano, bills)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    #[test]
    fn withholding_or_delaying_readings_never_pays(
        power_w in prop_oneof![Just(3_600_u64), 3_600_u64..=30_000, Just(7_000_000)],
        start in (0_u64..=1_000_000, 0_u64..=1_000_000),
        steps in prop::collection::vec(step(), 3..=10),
        reports in prop::collection::vec(report(), 13),
    ) {
        let honest = vec![Report::OnTime; reports.len()];
        let (honest_balance, honest_bills) = household_balance(power_w, start, &steps, &honest);
        // Reporting every interval from registration on is billed exactly.
        prop_assert!(honest_bills.iter().all(|bill| bill.estimated_import_wh == 0 && bill.estimate_refund_wh == 0));
        let (balance, bills) = household_balance(power_w, start, &steps, &reports);
        prop_assert!(
            balance <= honest_balance,
            "withholding {:?} paid: {} > {} nano\nbills {:?}\nhonest {:?}",
            reports, balance, honest_balance, bills, honest_bills
        );
    }
}
