//! `gridshare dso bridge`: an OpenADR 3 VEN for the DSO (docs/OPENADR.md).
//! It reads the DSO's events from a VTN, maps the capacity limits of the
//! events that target the community's zones onto the ledger's zone limits
//! and their prices onto the intervals' own tariffs, and reconciles: what
//! the events ask for, interval by interval and zone by zone (the
//! highest-priority event deciding), against what the ledger already holds
//! (`GET /v1/zones`, `GET /v1/tariffs`), so that each event reaches the
//! ledger once and a rerun submits nothing new. Events it cannot map are
//! reported with the reason and change nothing.
//!
//! The mapping ([`plan`]) is pure: events, the genesis, the ledger's limits
//! and the time in, transactions to make and reasons out. The shell
//! ([`bridge`]) talks to the VTN over its REST API (`Vtn`) and to the node.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use gridshare_api::decimal::parse_scaled;
use gridshare_api::{TariffSchedule, Zones};
use gridshare_ledger::execute::{INTERVAL_TARIFFS_MAX, ZONE_LIMIT_INTERVALS_MAX, ZONE_LIMITS_MAX};
use gridshare_ledger::genesis::{Genesis, IntervalTariffs, PRICE_MAX_MICRO_PER_KWH, ZoneLimits};
use gridshare_ledger::tx::Tx;
use serde::Deserialize;

use crate::market_time::now_ms;
use crate::registrar::describe_key;
use crate::wallet::{CommandError, Wallet};

/// At most this many events are read from the VTN (50 a page).
pub const EVENTS_MAX: usize = 1_000;
/// An event with more intervals is not mapped.
pub const EVENT_INTERVALS_MAX: usize = 1_024;
/// The most zone-intervals one round plans: the community's zones over
/// the offer horizon, with room (an event asking for more is reported).
pub const PLAN_ZONE_INTERVALS_MAX: u64 = 1 << 20;
/// The largest answer read from the VTN.
const VTN_RESPONSE_BYTES_MAX: u64 = 16 << 20;

/// An OpenADR 3 event, the fields the bridge reads (unknown ones ignored).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    #[serde(default)]
    pub event_name: Option<String>,
    #[serde(default)]
    pub modification_date_time: Option<String>,
    /// Lower is more important; none is the least.
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    #[serde(default)]
    pub payload_descriptors: Option<Vec<PayloadDescriptor>>,
    #[serde(default)]
    pub interval_period: Option<IntervalPeriod>,
    #[serde(default)]
    pub intervals: Vec<EventInterval>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadDescriptor {
    pub payload_type: String,
    #[serde(default)]
    pub units: Option<String>,
    /// A price's currency (ISO 4217).
    #[serde(default)]
    pub currency: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntervalPeriod {
    pub start: String,
    #[serde(default)]
    pub duration: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventInterval {
    #[serde(default)]
    pub interval_period: Option<IntervalPeriod>,
    #[serde(default)]
    pub payloads: Vec<Payload>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Payload {
    #[serde(rename = "type")]
    pub payload_type: String,
    #[serde(default)]
    pub values: Vec<serde_json::Value>,
}

impl Event {
    fn name(&self) -> String {
        match &self.event_name {
            Some(name) => format!("event {} ({})", printable(&self.id), printable(name)),
            None => format!("event {}", printable(&self.id)),
        }
    }
}

/// The VTN's text as it may be printed: no control characters (a terminal's
/// escape sequences), at most 200 characters.
fn printable(text: &str) -> String {
    let mut shown: String = text.chars().filter(|character| !character.is_control()).take(200).collect();
    if text.chars().count() > 200 {
        shown.push('…');
    }
    shown
}

/// A duration of ISO 8601 (`PT15M`, `P0Y0M0DT0H15M0S`, `PT0.25H`) in ms:
/// days, hours, minutes and seconds, each a decimal; years and months
/// (whose length varies) only as 0. `None` when it is none of these or not
/// a whole number of ms.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let rest = text.strip_prefix('P')?;
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    let mut total: u64 = 0;
    let mut add = |part: &str, units: &[(char, u64)]| -> Option<()> {
        let mut number = String::new();
        let mut unit_index = 0;
        for character in part.chars() {
            if character.is_ascii_digit() || character == '.' {
                number.push(character);
                continue;
            }
            // Units come in order, each at most once.
            let position = units[unit_index..].iter().position(|(unit, _)| *unit == character)?;
            let (_, unit_ms) = units[unit_index + position];
            unit_index += position + 1;
            let thousandths = parse_scaled(&number, 3).ok()?;
            number.clear();
            if unit_ms == 0 {
                // Years and months: only none of them.
                if thousandths != 0 {
                    return None;
                }
                continue;
            }
            let product = u128::from(thousandths) * u128::from(unit_ms);
            if product % 1_000 != 0 {
                return None;
            }
            total = total.checked_add(u64::try_from(product / 1_000).ok()?)?;
        }
        number.is_empty().then_some(())
    };
    add(date, &[('Y', 0), ('M', 0), ('W', 7 * 86_400_000), ('D', 86_400_000)])?;
    add(time, &[('H', 3_600_000), ('M', 60_000), ('S', 1_000)])?;
    Some(total)
}

/// What an event asks of one zone: the limits of a run of ledger intervals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub zone: String,
    pub first_interval: u64,
    pub intervals: u64,
    pub import_wh_max: Option<u64>,
    pub export_wh_max: Option<u64>,
}

/// What an event asks of the community's tariffs: a run of ledger
/// intervals' import (PRICE) and feed-in (EXPORT_PRICE) tariffs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedTariffs {
    pub first_interval: u64,
    pub intervals: u64,
    pub import_micro_per_kwh: Option<u64>,
    pub feed_in_micro_per_kwh: Option<u64>,
}

/// What an event asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    pub limits: Vec<Wanted>,
    pub tariffs: Vec<WantedTariffs>,
}

/// Why an event is not mapped: what the DSO reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{event}: {reason}")]
pub struct Unmapped {
    pub event: String,
    pub reason: Unmappable,
}

/// What makes an event one the bridge cannot map.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unmappable {
    #[error("it is not an OpenADR 3.1 event the bridge reads: {0}")]
    NotAnEvent(String),
    #[error("it targets no zone (an event for every VEN): name the zones as its targets")]
    NoTarget,
    #[error("target `{target}` is none of the community's zones ({zones})")]
    UnknownZone { target: String, zones: String },
    #[error("it has {count} intervals, more than {EVENT_INTERVALS_MAX}")]
    TooManyIntervals { count: usize },
    #[error("it has no intervals")]
    NoIntervals,
    #[error("`{text}` is not an RFC 3339 time after 1970")]
    BadTime { text: String },
    #[error("interval {index} has no period and the event none")]
    NoPeriod { index: usize },
    #[error("interval {index} has no start")]
    NoStart { index: usize },
    #[error("interval {index}: `{text}` is no fixed, positive duration")]
    BadDuration { index: usize, text: String },
    #[error(
        "interval {index} does not cover whole intervals of the ledger ({length_ms} ms each, from the genesis time)"
    )]
    Misaligned { index: usize, length_ms: u64 },
    #[error("payload type {payload_type} does not map to zone limits or tariffs")]
    PayloadType { payload_type: String },
    #[error(
        "it prices some of the community's zones: tariffs are the whole community's, so a price event targets every zone or none"
    )]
    PartialTariff,
    #[error("interval {index}: {problem}")]
    Value { index: usize, problem: Box<ValueProblem> },
    #[error("interval {index} has no capacity limit and no price")]
    NoLimit { index: usize },
    #[error("it asks for {size} zone-intervals, more than the {PLAN_ZONE_INTERVALS_MAX} a round takes")]
    TooLarge { size: u64 },
}

/// What is wrong with a capacity limit's value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueProblem {
    #[error("{payload_type} has {count} values, not one")]
    Count { payload_type: String, count: usize },
    #[error("{payload_type} is {value}, not a number")]
    NotANumber { payload_type: String, value: String },
    #[error(
        "{payload_type} of `{text}` is not a plain, non-negative number of {unit} with at most 3 decimals"
    )]
    NotPlain { payload_type: String, text: String, unit: &'static str },
    #[error(
        "{payload_type} of `{text}` is energy over several ledger intervals: use KW, or one interval each"
    )]
    KwhOverSeveral { payload_type: String, text: String },
    #[error("{payload_type} of `{text}` is in {unit}: the bridge takes KW or KWH")]
    OtherUnit { payload_type: String, text: String, unit: String },
    #[error("{payload_type} of `{text}` has no units (payloadDescriptors): the bridge takes KW or KWH")]
    NoUnits { payload_type: String, text: String },
    #[error(
        "{payload_type} of `{text}` is not a price per KWH in {currency} with at most 6 decimals, at most 1000"
    )]
    NotAPrice { payload_type: String, text: String, currency: String },
    #[error("{payload_type} of `{text}` is in {currency:?}, not the community's {expected}")]
    OtherCurrency { payload_type: String, text: String, currency: Option<String>, expected: String },
}

/// The capacity limits and prices `event` asks for, in the ledger's
/// intervals, or why it cannot be mapped. Each of its intervals must cover
/// whole intervals of the ledger, aligned to them. An event names the
/// zones it limits by its targets; a limit is `IMPORT_CAPACITY_LIMIT` or
/// `EXPORT_CAPACITY_LIMIT` in KW (over each ledger interval) or KWH (per
/// ledger interval, for an event interval of exactly one); an interval's
/// other direction keeps the zone's genesis limit. A price is the whole
/// community's (the event targets every zone or none): `PRICE` the import
/// tariff, `EXPORT_PRICE` the feed-in tariff, per KWH in the community's
/// currency; a tariff it does not price keeps the schedule's.
pub fn wanted(genesis: &Genesis, event: &Event) -> Result<Asked, Unmapped> {
    let fail = |reason: Unmappable| Unmapped { event: event.name(), reason };
    let mut targets: Vec<&String> = event.targets.iter().flatten().collect();
    targets.sort_unstable();
    targets.dedup();
    if let Some(unknown) = targets.iter().find(|target| genesis.zone_index(target).is_none()) {
        let names: Vec<&str> = genesis.zones.iter().map(|zone| zone.name.as_str()).collect();
        return Err(fail(Unmappable::UnknownZone { target: printable(unknown), zones: names.join(", ") }));
    }
    if event.intervals.len() > EVENT_INTERVALS_MAX {
        return Err(fail(Unmappable::TooManyIntervals { count: event.intervals.len() }));
    }
    let descriptors: BTreeMap<&str, &PayloadDescriptor> = event
        .payload_descriptors
        .iter()
        .flatten()
        .map(|descriptor| (descriptor.payload_type.as_str(), descriptor))
        .collect();
    let length_ms = genesis.market.interval_length_ms;
    let default = event.interval_period.as_ref();
    let mut start_ms = match default {
        Some(period) => Some(parse_time_ms(&period.start).map_err(fail)?),
        None => None,
    };
    let mut asked = Asked::default();
    for (index, interval) in event.intervals.iter().enumerate() {
        let period = interval.interval_period.as_ref().or(default);
        let Some(period) = period else {
            return Err(fail(Unmappable::NoPeriod { index }));
        };
        if interval.interval_period.is_some() {
            start_ms = Some(parse_time_ms(&period.start).map_err(fail)?);
        }
        let start = start_ms.ok_or_else(|| fail(Unmappable::NoStart { index }))?;
        let duration_text = period.duration.as_deref().unwrap_or_default();
        let duration_ms = parse_duration_ms(duration_text)
            .filter(|&ms| ms > 0)
            .ok_or_else(|| fail(Unmappable::BadDuration { index, text: printable(duration_text) }))?;
        let offset = start.checked_sub(genesis.genesis_time_ms).filter(|offset| offset % length_ms == 0);
        let Some(offset) = offset.filter(|_| duration_ms % length_ms == 0) else {
            return Err(fail(Unmappable::Misaligned { index, length_ms }));
        };
        start_ms = start.checked_add(duration_ms);
        let (first_interval, intervals) = (offset / length_ms, duration_ms / length_ms);
        let (mut import, mut export, mut price, mut export_price) = (None, None, None, None);
        for payload in &interval.payloads {
            let descriptor = descriptors.get(payload.payload_type.as_str()).copied();
            let unit = descriptor.and_then(|descriptor| descriptor.units.as_deref());
            let value = match payload.payload_type.as_str() {
                "IMPORT_CAPACITY_LIMIT" => (&mut import, energy_wh(payload, unit, intervals, length_ms)),
                "EXPORT_CAPACITY_LIMIT" => (&mut export, energy_wh(payload, unit, intervals, length_ms)),
                "PRICE" => (&mut price, price_micro_per_kwh(genesis, payload, descriptor)),
                "EXPORT_PRICE" => (&mut export_price, price_micro_per_kwh(genesis, payload, descriptor)),
                other => return Err(fail(Unmappable::PayloadType { payload_type: printable(other) })),
            };
            let (slot, parsed) = value;
            *slot = Some(
                parsed.map_err(|problem| fail(Unmappable::Value { index, problem: Box::new(problem) }))?,
            );
        }
        if import.is_some() || export.is_some() {
            if targets.is_empty() {
                return Err(fail(Unmappable::NoTarget));
            }
            for zone in &targets {
                asked.limits.push(Wanted {
                    zone: (*zone).clone(),
                    first_interval,
                    intervals,
                    import_wh_max: import,
                    export_wh_max: export,
                });
            }
        }
        if price.is_some() || export_price.is_some() {
            if !targets.is_empty() && targets.len() != genesis.zones.len() {
                return Err(fail(Unmappable::PartialTariff));
            }
            asked.tariffs.push(WantedTariffs {
                first_interval,
                intervals,
                import_micro_per_kwh: price,
                feed_in_micro_per_kwh: export_price,
            });
        }
        if [import, export, price, export_price].iter().all(Option::is_none) {
            return Err(fail(Unmappable::NoLimit { index }));
        }
    }
    if asked == Asked::default() {
        return Err(fail(Unmappable::NoIntervals));
    }
    Ok(asked)
}

/// A price per kWh in micro-currency: one value, per KWH, in the
/// community's currency, at most 6 decimals and the ledger's bound.
fn price_micro_per_kwh(
    genesis: &Genesis,
    payload: &Payload,
    descriptor: Option<&PayloadDescriptor>,
) -> Result<u64, ValueProblem> {
    let payload_type = printable(&payload.payload_type);
    let text = single_number(payload)?;
    let currency = descriptor.and_then(|descriptor| descriptor.currency.as_deref());
    if currency != Some(genesis.currency.as_str()) {
        return Err(ValueProblem::OtherCurrency {
            payload_type,
            text,
            currency: currency.map(printable),
            expected: genesis.currency.clone(),
        });
    }
    let units = descriptor.and_then(|descriptor| descriptor.units.as_deref());
    parse_scaled(&text, 6)
        .ok()
        .filter(|&micro| micro <= PRICE_MAX_MICRO_PER_KWH && units == Some("KWH"))
        .ok_or_else(|| ValueProblem::NotAPrice { payload_type, text, currency: genesis.currency.clone() })
}

/// A payload's one value, a JSON number, as written.
fn single_number(payload: &Payload) -> Result<String, ValueProblem> {
    let payload_type = printable(&payload.payload_type);
    let [value] = payload.values.as_slice() else {
        return Err(ValueProblem::Count { payload_type, count: payload.values.len() });
    };
    match value {
        serde_json::Value::Number(number) => Ok(number.to_string()),
        other => Err(ValueProblem::NotANumber { payload_type, value: printable(&other.to_string()) }),
    }
}

/// A limit in Wh per ledger interval: a KW value × the interval's length,
/// or a KWH value when the event interval is one ledger interval.
fn energy_wh(
    payload: &Payload,
    unit: Option<&str>,
    intervals: u64,
    length_ms: u64,
) -> Result<u64, ValueProblem> {
    let payload_type = printable(&payload.payload_type);
    let text = single_number(payload)?;
    let plain = |unit| {
        parse_scaled(&text, 3).map_err(|_| ValueProblem::NotPlain {
            payload_type: payload_type.clone(),
            text: text.clone(),
            unit,
        })
    };
    match unit {
        Some("KW") => {
            let watts = plain("kW")?;
            Ok(u64::try_from(u128::from(watts) * u128::from(length_ms) / 3_600_000).unwrap_or(u64::MAX))
        }
        Some("KWH") if intervals == 1 => plain("kWh"),
        Some("KWH") => Err(ValueProblem::KwhOverSeveral { payload_type, text }),
        Some(other) => Err(ValueProblem::OtherUnit { payload_type, text, unit: printable(other) }),
        None => Err(ValueProblem::NoUnits { payload_type, text }),
    }
}

/// An RFC 3339 time as ms since the epoch.
fn parse_time_ms(text: &str) -> Result<u64, Unmappable> {
    let bad = || Unmappable::BadTime { text: printable(text) };
    let timestamp: jiff::Timestamp = text.parse().map_err(|_| bad())?;
    u64::try_from(timestamp.as_millisecond()).map_err(|_| bad())
}

/// One `SetZoneLimits` to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub zone: String,
    pub first_interval: u64,
    pub intervals: u32,
    pub limits: ZoneLimits,
}

/// One `SetIntervalTariffs` to make: consecutive intervals' own tariffs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TariffChange {
    pub first_interval: u64,
    pub tariffs: Vec<IntervalTariffs>,
}

/// What the bridge does: the transactions, and what it leaves and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub tariff_changes: Vec<TariffChange>,
    pub unmapped: Vec<Unmapped>,
    /// Zone- or tariff-intervals an event asks for whose gate closed: they
    /// stay as they were.
    pub closed: u64,
    /// Those beyond the offer horizon: a later run applies them.
    pub later: u64,
}

/// The changes that bring the ledger's limits and tariffs to what `events`
/// ask for: per (zone, interval), and per interval for tariffs, the most
/// important event (lowest priority number, then the latest modified, then
/// the greatest id) decides each direction; intervals whose gate has
/// closed by `now_ms` plus `margin_ms` (the time to reach a block) and
/// those beyond the horizon are left; what the ledger already holds is not
/// sent again; runs of equal limits, and runs of consecutive intervals'
/// tariffs, go in one transaction each (at most `ZONE_LIMIT_INTERVALS_MAX`
/// intervals).
pub fn plan(
    genesis: &Genesis,
    events: &[Event],
    ledger: &Zones,
    ledger_tariffs: &TariffSchedule,
    now_ms: u64,
    margin_ms: u64,
) -> Plan {
    let mut plan = Plan::default();
    let mut ranked: Vec<&Event> = events.iter().collect();
    // Modification times as times (an unreadable one is the oldest).
    let modified = |event: &Event| {
        event.modification_date_time.as_deref().and_then(|text| text.parse::<jiff::Timestamp>().ok())
    };
    ranked.sort_by(|a, b| {
        let rank = |event: &Event| event.priority.unwrap_or(u32::MAX);
        rank(a).cmp(&rank(b)).then_with(|| modified(b).cmp(&modified(a))).then_with(|| b.id.cmp(&a.id))
    });
    // (zone index, interval) → (import, export) limits, each direction
    // decided by the most important event that limits it.
    let mut desired: BTreeMap<(u32, u64), (Option<u64>, Option<u64>)> = BTreeMap::new();
    // interval → (import, feed-in) tariffs, likewise.
    let mut desired_tariffs: BTreeMap<u64, (Option<u64>, Option<u64>)> = BTreeMap::new();
    let mut budget = PLAN_ZONE_INTERVALS_MAX;
    let open_from = genesis.first_open_interval(now_ms.saturating_add(margin_ms));
    let horizon = genesis.interval_at(now_ms).saturating_add(genesis.market.offer_horizon_intervals);
    for event in ranked {
        let asked = match wanted(genesis, event) {
            Ok(asked) => asked,
            Err(unmapped) => {
                plan.unmapped.push(unmapped);
                continue;
            }
        };
        // Only the intervals open now are visited, within a budget: a VTN
        // cannot make a round loop over years of intervals.
        let open = |first_interval: u64, intervals: u64| {
            let last = first_interval.saturating_add(intervals - 1);
            (first_interval.max(open_from), last.min(horizon), last)
        };
        let runs = asked.limits.iter().map(|want| (want.first_interval, want.intervals));
        let runs = runs.chain(asked.tariffs.iter().map(|want| (want.first_interval, want.intervals)));
        let size: u64 = runs
            .map(|(first_interval, intervals)| {
                let (from, to, _) = open(first_interval, intervals);
                (to + 1).saturating_sub(from)
            })
            .fold(0, u64::saturating_add);
        if size > budget {
            plan.unmapped.push(Unmapped { event: event.name(), reason: Unmappable::TooLarge { size } });
            continue;
        }
        budget -= size;
        let mut visit = |first_interval: u64, intervals: u64| {
            let (from, to, last) = open(first_interval, intervals);
            plan.closed += from.min(last.saturating_add(1)).saturating_sub(first_interval);
            plan.later += last.saturating_sub(to.max(from.saturating_sub(1)));
            from..=to
        };
        for want in asked.limits {
            let zone = genesis.zone_index(&want.zone).expect("wanted names known zones");
            for interval in visit(want.first_interval, want.intervals) {
                let (import, export) = desired.entry((zone, interval)).or_default();
                *import = import.or(want.import_wh_max);
                *export = export.or(want.export_wh_max);
            }
        }
        for want in asked.tariffs {
            for interval in visit(want.first_interval, want.intervals) {
                let (import, feed_in) = desired_tariffs.entry(interval).or_default();
                *import = import.or(want.import_micro_per_kwh);
                *feed_in = feed_in.or(want.feed_in_micro_per_kwh);
            }
        }
    }
    plan_tariffs(&mut plan, desired_tariffs, ledger_tariffs);
    // What the ledger holds for the intervals to come, by zone and interval.
    let mut held: BTreeMap<(u32, u64), ZoneLimits> = BTreeMap::new();
    for (index, zone) in (0_u32..).zip(&ledger.zones) {
        for run in &zone.limits {
            for interval in run.first_interval.max(open_from)..=run.last_interval.min(horizon) {
                held.insert(
                    (index, interval),
                    ZoneLimits { import_wh_max: run.import_wh_max, export_wh_max: run.export_wh_max },
                );
            }
        }
    }
    let mut current: Option<Change> = None;
    for ((zone, interval), (import, export)) in desired {
        // A direction no event limits keeps the zone's genesis limit.
        let defaults = genesis.zones[zone as usize].limits;
        let limits = ZoneLimits {
            import_wh_max: import.unwrap_or(defaults.import_wh_max),
            export_wh_max: export.unwrap_or(defaults.export_wh_max),
        };
        if held.get(&(zone, interval)) == Some(&limits) {
            continue;
        }
        let name = &genesis.zones[zone as usize].name;
        match &mut current {
            Some(change)
                if change.zone == *name
                    && change.limits == limits
                    && change.first_interval + u64::from(change.intervals) == interval
                    && change.intervals < ZONE_LIMIT_INTERVALS_MAX =>
            {
                change.intervals += 1;
            }
            _ => {
                plan.changes.extend(current.take());
                current = Some(Change { zone: name.clone(), first_interval: interval, intervals: 1, limits });
            }
        }
    }
    plan.changes.extend(current);
    // No more than the ledger has room for (`ZONE_LIMITS_MAX` entries in
    // all): the rest waits for a later round, after some intervals cleared.
    let held_entries: u64 = ledger
        .zones
        .iter()
        .flat_map(|zone| &zone.limits)
        .map(|run| (run.last_interval + 1).saturating_sub(run.first_interval))
        .fold(0, u64::saturating_add);
    let mut room = u64::try_from(ZONE_LIMITS_MAX).unwrap_or(u64::MAX).saturating_sub(held_entries);
    plan.changes.retain(|change| {
        let fits = u64::from(change.intervals) <= room;
        if fits {
            room -= u64::from(change.intervals);
        } else {
            plan.later += u64::from(change.intervals);
        }
        fits
    });
    plan
}

/// The `SetIntervalTariffs` that bring the intervals' own tariffs to
/// `desired`: a tariff no event prices (the network fee always) stays what
/// the ledger holds for the interval, what it holds is not sent again, and no
/// more than it has room for (`INTERVAL_TARIFFS_MAX` in all) is sent.
fn plan_tariffs(
    plan: &mut Plan,
    desired: BTreeMap<u64, (Option<u64>, Option<u64>)>,
    ledger: &TariffSchedule,
) {
    let held: BTreeMap<u64, IntervalTariffs> =
        ledger.intervals.iter().map(|entry| (entry.interval, entry.to_ledger())).collect();
    let mut room = INTERVAL_TARIFFS_MAX.saturating_sub(held.len());
    let mut current: Option<TariffChange> = None;
    for (interval, (import, feed_in)) in desired {
        let before = held.get(&interval);
        let before_part = |part: fn(&IntervalTariffs) -> Option<u64>| before.and_then(part);
        let entry = IntervalTariffs {
            grid_import_micro_per_kwh: import.or(before_part(|entry| entry.grid_import_micro_per_kwh)),
            grid_feed_in_micro_per_kwh: feed_in.or(before_part(|entry| entry.grid_feed_in_micro_per_kwh)),
            network_fee_micro_per_kwh: before_part(|entry| entry.network_fee_micro_per_kwh),
        };
        if before == Some(&entry) {
            continue;
        }
        if before.is_none() {
            if room == 0 {
                plan.later += 1;
                continue;
            }
            room -= 1;
        }
        match &mut current {
            Some(change)
                if change.first_interval + change.tariffs.len() as u64 == interval
                    && change.tariffs.len() < ZONE_LIMIT_INTERVALS_MAX as usize =>
            {
                change.tariffs.push(entry);
            }
            _ => {
                plan.tariff_changes.extend(current.take());
                current = Some(TariffChange { first_interval: interval, tariffs: vec![entry] });
            }
        }
    }
    plan.tariff_changes.extend(current);
}

/// Why the VTN could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VtnError {
    #[error("the VTN at {url} cannot be reached: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("the VTN's answer to {request} could not be read: {cause}")]
    Unreadable { request: String, cause: String },
    #[error("the VTN refused {request} (HTTP {status}): {body}")]
    Refused { request: String, status: u16, body: String },
    #[error("the VTN's answer to {request} is not what OpenADR 3 says: {cause}")]
    Malformed { request: String, cause: String },
    #[error("`{url}` is no VTN address the bridge takes: {reason}")]
    BadUrl { url: String, reason: &'static str },
}

/// The VTN's base URL without a trailing slash: `https://` anywhere, plain
/// `http://` only on loopback, where the VEN's client secret and token
/// cross no network in clear text.
pub fn vtn_url(url: &str) -> Result<String, VtnError> {
    let url = url.trim();
    let bad = |reason| VtnError::BadUrl { url: printable(url), reason };
    let (scheme, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => ("https", rest),
        (None, Some(rest)) => ("http", rest),
        (None, None) => return Err(bad("it is neither https:// nor http://")),
    };
    let rest = rest.trim_end_matches('/');
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || rest.contains(['?', '#', ' ', '@']) {
        return Err(bad("expected https://HOST[:PORT][/PATH]"));
    }
    if scheme == "http" {
        // The host without its port: `[::1]:3000`, `127.0.0.1:3000`, `localhost`.
        let host = match authority.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
            None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
        };
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host.parse::<std::net::IpAddr>().is_ok_and(|address| address.is_loopback());
        if !loopback {
            return Err(bad(
                "plain http would send the VEN's client secret in clear text: use https://, or http:// on loopback only",
            ));
        }
    }
    Ok(format!("{scheme}://{rest}"))
}

/// An OpenADR 3 VTN, as a VEN reaches it: client credentials for a bearer
/// token (`POST /auth/token`), then `GET /events` page by page.
#[derive(Debug)]
pub struct Vtn {
    url: String,
    agent: ureq::Agent,
    token: String,
}

/// The body of the VTN's answer to `request` (at most
/// `VTN_RESPONSE_BYTES_MAX`) when it is a 200, else why not.
fn answer(
    request: &str,
    sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    url: &str,
) -> Result<String, VtnError> {
    let mut response =
        sent.map_err(|error| VtnError::Unreachable { url: url.to_string(), cause: error.to_string() })?;
    let status = response.status().as_u16();
    let body =
        response.body_mut().with_config().limit(VTN_RESPONSE_BYTES_MAX).read_to_string().map_err(
            |error| VtnError::Unreadable { request: request.to_string(), cause: error.to_string() },
        )?;
    if status != 200 {
        return Err(VtnError::Refused { request: request.to_string(), status, body: printable(&body) });
    }
    Ok(body)
}

impl Vtn {
    /// Logs in at `url` with the VEN's client credentials.
    pub fn connect(url: &str, client_id: &str, client_secret: &str) -> Result<Vtn, VtnError> {
        let url = vtn_url(url)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            // A redirect could carry the secret or the token elsewhere.
            .max_redirects(0)
            .build()
            .into();
        let sent = agent.post(&format!("{url}/auth/token")).send_form([
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ]);
        let request = format!("the login of `{}`", printable(client_id));
        let body = answer(&request, sent, &url)?;
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
        }
        let token: Token = serde_json::from_str(&body)
            .map_err(|error| VtnError::Malformed { request, cause: error.to_string() })?;
        Ok(Vtn { url, agent, token: token.access_token })
    }

    /// Every event the VEN may see (at most `EVENTS_MAX`), each read or
    /// why not.
    pub fn events(&self) -> Result<Vec<Result<Event, Unmapped>>, VtnError> {
        let request = "GET /events";
        let mut events = Vec::new();
        loop {
            let path = format!("{}/events?skip={}&limit=50", self.url, events.len());
            let sent =
                self.agent.get(&path).header("Authorization", &format!("Bearer {}", self.token)).call();
            let body = answer(request, sent, &self.url)?;
            // Each event on its own: one the bridge cannot read is reported,
            // the others still mapped.
            let page: Vec<serde_json::Value> = serde_json::from_str(&body)
                .map_err(|error| VtnError::Malformed { request: request.into(), cause: error.to_string() })?;
            let full = page.len() == 50;
            for value in page {
                let id = value.get("id").and_then(serde_json::Value::as_str).map(printable);
                events.push(serde_json::from_value::<Event>(value).map_err(|error| Unmapped {
                    event: format!("event {}", id.unwrap_or_else(|| "without an id".into())),
                    reason: Unmappable::NotAnEvent(error.to_string()),
                }));
            }
            if !full || events.len() >= EVENTS_MAX {
                return Ok(events);
            }
        }
    }
}

/// `gridshare dso bridge`.
#[derive(Debug, Clone, clap::Args)]
pub struct BridgeArgs {
    /// The VTN's base URL: https://vtn.example[:PORT][/PATH], or http:// on
    /// loopback only (the client secret must not cross a network in clear).
    #[arg(long, value_name = "URL")]
    pub vtn: String,
    /// The VEN's OAuth client id at the VTN.
    #[arg(long, value_name = "ID")]
    pub client_id: String,
    /// The VEN's client secret (default: $GRIDSHARE_VTN_SECRET).
    #[arg(long, value_name = "SECRET", env = "GRIDSHARE_VTN_SECRET", hide_env_values = true)]
    pub client_secret: String,
    /// Read the events and reconcile this often; once when not given.
    #[arg(long, value_name = "SECONDS")]
    pub every: Option<u64>,
    /// The DSO key that signs (default: the only DSO key).
    #[arg(long = "as", value_name = "NAME")]
    pub dso: Option<String>,
}

/// `gridshare dso bridge`: reconciles once, or every `--every` seconds (a
/// failed round is reported and the next one tried).
pub fn bridge(wallet: &Wallet, args: &BridgeArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    vtn_url(&args.vtn).map_err(|error| CommandError::BadInput(error.to_string()))?;
    let dso = crate::grid::dso_key(wallet, args.dso.as_deref())?;
    loop {
        let round = reconcile(wallet, args, &dso, out);
        match (args.every, round) {
            (None, Ok(0)) => return Ok(()),
            (None, Ok(refused)) => {
                return Err(CommandError::Rejected(format!("{refused} of the limits were refused")));
            }
            (None, Err(error)) => return Err(error),
            (Some(_), Ok(_)) => {}
            (Some(seconds), Err(error)) => writeln!(out, "Failed: {error}; trying again in {seconds} s")?,
        }
        std::thread::sleep(Duration::from_secs(args.every.unwrap_or(1).max(1)));
    }
}

/// A VTN that cannot be read fails the round (exit status 1).
fn rejected(error: VtnError) -> CommandError {
    CommandError::Rejected(error.to_string())
}

/// One round: the VTN's events against the ledger's limits, the changes
/// submitted; how many the node refused.
fn reconcile(
    wallet: &Wallet,
    args: &BridgeArgs,
    dso: &gridshare_ledger::ids::Keypair,
    out: &mut dyn Write,
) -> Result<usize, CommandError> {
    let genesis = &wallet.community()?.genesis;
    let key = dso.public();
    let vtn = Vtn::connect(&args.vtn, &args.client_id, &args.client_secret).map_err(rejected)?;
    let (events, unread): (Vec<_>, Vec<_>) =
        vtn.events().map_err(rejected)?.into_iter().partition(Result::is_ok);
    let events: Vec<Event> = events.into_iter().flatten().collect();
    let node = wallet.node();
    let (ledger, ledger_tariffs) = (node.zones()?, node.tariffs()?);
    let plan = plan(genesis, &events, &ledger, &ledger_tariffs, now_ms(), genesis.market.interval_length_ms);
    writeln!(out, "{} events read from {}", events.len() + unread.len(), args.vtn)?;
    for unmapped in unread.into_iter().filter_map(Result::err).chain(plan.unmapped.iter().cloned()) {
        writeln!(out, "Not mapped: {unmapped}")?;
    }
    if plan.closed + plan.later > 0 {
        writeln!(
            out,
            "Left: {} zone- or tariff-intervals whose gate has closed, {} beyond the offer horizon or the ledger's room (a later run takes them)",
            plan.closed, plan.later
        )?;
    }
    let mut refused = Vec::new();
    let mut submit = |tx: &dyn Fn(u64) -> Tx, what: String| -> Result<(), CommandError> {
        let submitted = wallet.submit_with_nonce(dso, tx)?;
        if submitted.admitted() {
            writeln!(out, "Submitted: {what} (transaction {})", submitted.id)?;
        } else {
            refused.push(wallet.refusal(&what, &submitted).to_string());
        }
        Ok(())
    };
    let by = describe_key(wallet, &key);
    for change in &plan.changes {
        let tx = |nonce| Tx::SetZoneLimits {
            dso: key,
            nonce,
            zone: change.zone.clone(),
            first_interval: change.first_interval,
            intervals: change.intervals,
            limits: change.limits,
        };
        let what = format!(
            "zone {} intervals {} to {}: import up to {} Wh, export up to {} Wh, by {by}",
            change.zone,
            change.first_interval,
            change.first_interval + u64::from(change.intervals) - 1,
            change.limits.import_wh_max,
            change.limits.export_wh_max,
        );
        submit(&tx, what)?;
    }
    let currency = &genesis.currency;
    for change in &plan.tariff_changes {
        let tx = |nonce| Tx::SetIntervalTariffs {
            signer: key,
            nonce,
            first_interval: change.first_interval,
            tariffs: change.tariffs.clone(),
        };
        let what = format!(
            "tariffs of intervals {} to {}: {}, by {by}",
            change.first_interval,
            change.first_interval + change.tariffs.len() as u64 - 1,
            crate::tariffs::describe_interval_tariffs(&change.tariffs, currency)
        );
        submit(&tx, what)?;
    }
    let made = plan.changes.len() + plan.tariff_changes.len();
    writeln!(out, "{} transactions submitted", made - refused.len())?;
    for refusal in &refused {
        writeln!(out, "Refused: {refusal}")?;
    }
    Ok(refused.len())
}

#[cfg(test)]
mod tests {
    use gridshare_api::{ZoneLimitsRun, ZoneSummary};
    use gridshare_ledger::genesis::Zone;
    use gridshare_ledger::testkit::{TestCommunity, test_market};

    use super::*;

    /// 15-minute intervals from 2026-12-06T00:00Z, two feeders.
    fn genesis() -> Genesis {
        let market = gridshare_ledger::genesis::MarketParams { interval_length_ms: 900_000, ..test_market() };
        let mut community = TestCommunity::new(7, 0, market, 1_796_515_200_000);
        community.genesis.zones = vec![
            Zone { name: "feeder-1".into(), limits: ZoneLimits::OPEN },
            Zone {
                name: "feeder-2".into(),
                limits: ZoneLimits { import_wh_max: 30_000, export_wh_max: 30_000 },
            },
        ];
        community.genesis
    }

    fn event(json: serde_json::Value) -> Event {
        serde_json::from_value(json).unwrap()
    }

    /// An export limit on feeder-2 in KW over `intervals` 15-minute intervals from `start`.
    fn export_limit(id: &str, priority: u32, start: &str, kw: &[f64]) -> Event {
        let intervals: Vec<serde_json::Value> = kw
            .iter()
            .enumerate()
            .map(|(index, kw)| serde_json::json!({"id": index, "payloads": [{"type": "EXPORT_CAPACITY_LIMIT", "values": [kw]}]}))
            .collect();
        event(serde_json::json!({
            "id": id, "priority": priority, "modificationDateTime": "2026-12-06T00:00:00Z",
            "targets": ["feeder-2"],
            "payloadDescriptors": [{"payloadType": "EXPORT_CAPACITY_LIMIT", "units": "KW"}],
            "intervalPeriod": {"start": start, "duration": "P0Y0M0DT0H15M0S"},
            "intervals": intervals,
        }))
    }

    fn no_limits(genesis: &Genesis) -> Zones {
        let zones = genesis
            .zones
            .iter()
            .map(|zone| ZoneSummary {
                name: zone.name.clone(),
                import_wh_max: zone.limits.import_wh_max,
                export_wh_max: zone.limits.export_wh_max,
                meters: 0,
                zone_meter: None,
                limits: Vec::new(),
            })
            .collect();
        Zones { next_clearing_interval: 0, zones }
    }

    fn no_tariffs() -> TariffSchedule {
        TariffSchedule { next_settlement_interval: 0, schedule: Vec::new(), intervals: Vec::new() }
    }

    /// Import prices (PRICE, EUR per KWH) for 15-minute intervals from `start`, for every zone.
    fn prices(id: &str, priority: u32, start: &str, eur: &[f64]) -> Event {
        let intervals: Vec<serde_json::Value> = eur
            .iter()
            .enumerate()
            .map(|(index, eur)| serde_json::json!({"id": index, "payloads": [{"type": "PRICE", "values": [eur]}]}))
            .collect();
        event(serde_json::json!({
            "id": id, "priority": priority, "modificationDateTime": "2026-12-06T00:00:00Z",
            "payloadDescriptors": [{"payloadType": "PRICE", "units": "KWH", "currency": "EUR"}],
            "intervalPeriod": {"start": start, "duration": "PT15M"},
            "intervals": intervals,
        }))
    }

    #[test]
    fn price_events_become_the_intervals_tariffs() {
        let genesis = genesis();
        let asked = wanted(&genesis, &prices("p1", 1, "2026-12-06T12:00:00Z", &[0.315, 0.1])).unwrap();
        assert!(asked.limits.is_empty());
        assert_eq!(
            asked.tariffs,
            vec![
                WantedTariffs {
                    first_interval: 48,
                    intervals: 1,
                    import_micro_per_kwh: Some(315_000),
                    feed_in_micro_per_kwh: None
                },
                WantedTariffs {
                    first_interval: 49,
                    intervals: 1,
                    import_micro_per_kwh: Some(100_000),
                    feed_in_micro_per_kwh: None
                },
            ]
        );
        // A price event that also targets every zone by name, with a feed-in price.
        let mut both = prices("p2", 1, "2026-12-06T12:00:00Z", &[0.3]);
        both.targets = Some(vec!["feeder-2".into(), "feeder-1".into()]);
        both.intervals[0]
            .payloads
            .push(Payload { payload_type: "EXPORT_PRICE".into(), values: vec![serde_json::json!(0.05)] });
        both.payload_descriptors.as_mut().unwrap().push(PayloadDescriptor {
            payload_type: "EXPORT_PRICE".into(),
            units: Some("KWH".into()),
            currency: Some("EUR".into()),
        });
        assert_eq!(
            wanted(&genesis, &both).unwrap().tariffs,
            vec![WantedTariffs {
                first_interval: 48,
                intervals: 1,
                import_micro_per_kwh: Some(300_000),
                feed_in_micro_per_kwh: Some(50_000)
            }]
        );
        let base = serde_json::to_value(serde_json::json!({
            "id": "bad",
            "payloadDescriptors": [{"payloadType": "PRICE", "units": "KWH", "currency": "EUR"}],
            "intervalPeriod": {"start": "2026-12-06T12:00:00Z", "duration": "PT15M"},
            "intervals": [{"id": 0, "payloads": [{"type": "PRICE", "values": [0.3]}]}],
        }))
        .unwrap();
        let with = |path: &str, value: serde_json::Value| {
            let mut json = base.clone();
            match json.pointer_mut(path) {
                Some(slot) => *slot = value,
                None => {
                    json[path.trim_start_matches('/')] = value;
                }
            }
            event(json)
        };
        let cases = [
            (with("/targets", serde_json::json!(["feeder-2"])), "a price event targets every zone or none"),
            (
                with("/payloadDescriptors/0/currency", serde_json::json!("USD")),
                "in Some(\"USD\"), not the community's EUR",
            ),
            (with("/payloadDescriptors/0/units", serde_json::json!("MWH")), "is not a price per KWH in EUR"),
            (with("/intervals/0/payloads/0/values", serde_json::json!([-0.05])), "is not a price per KWH"),
            (with("/intervals/0/payloads/0/values", serde_json::json!([0.1234567])), "at most 6 decimals"),
            (with("/intervals/0/payloads/0/values", serde_json::json!([1000.5])), "at most 1000"),
        ];
        for (event, expected) in cases {
            let error = wanted(&genesis, &event).unwrap_err().to_string();
            assert!(error.starts_with("event bad: ") && error.contains(expected), "{expected:?} in {error}");
        }
    }

    #[test]
    fn the_tariff_plan_follows_priority_keeps_the_fee_and_sends_nothing_twice() {
        let genesis = genesis();
        let now = 1_796_515_200_000 + 11 * 3_600_000;
        let events = [
            prices("low", 5, "2026-12-06T12:00:00Z", &[0.30, 0.30, 0.30]),
            prices("high", 1, "2026-12-06T12:15:00Z", &[0.50]),
            prices("past", 1, "2026-12-06T10:00:00Z", &[0.10]),
        ];
        // The registrar gave interval 50 a network fee of its own.
        let mut ledger = no_tariffs();
        ledger.intervals.push(gridshare_api::IntervalTariffs {
            interval: 50,
            grid_import_micro_per_kwh: None,
            grid_feed_in_micro_per_kwh: None,
            network_fee_micro_per_kwh: Some(10_000),
        });
        let plan = plan(&genesis, &events, &no_limits(&genesis), &ledger, now, 900_000);
        let import = |micro, fee| IntervalTariffs {
            grid_import_micro_per_kwh: Some(micro),
            grid_feed_in_micro_per_kwh: None,
            network_fee_micro_per_kwh: fee,
        };
        assert_eq!(
            plan.tariff_changes,
            vec![TariffChange {
                first_interval: 48,
                tariffs: vec![import(300_000, None), import(500_000, None), import(300_000, Some(10_000))],
            }]
        );
        assert!(plan.changes.is_empty());
        assert_eq!((plan.closed, plan.later), (1, 0));
        // Once the ledger holds them, a rerun sends nothing.
        let held = TariffSchedule {
            intervals: (48..)
                .zip(&plan.tariff_changes[0].tariffs)
                .map(|(interval, entry)| gridshare_api::IntervalTariffs::new(interval, entry))
                .collect(),
            ..no_tariffs()
        };
        let again = super::plan(&genesis, &events, &no_limits(&genesis), &held, now, 900_000);
        assert!(again.tariff_changes.is_empty(), "{again:?}");
    }

    #[test]
    fn the_secret_crosses_a_network_only_over_https() {
        for url in [
            "https://vtn.dso.example",
            "https://vtn.dso.example:8443/openadr3/",
            "http://127.0.0.1:3000",
            "http://localhost:3000/",
            "http://[::1]:3000",
        ] {
            assert_eq!(vtn_url(url).unwrap(), url.trim_end_matches('/'), "{url}");
        }
        for (url, reason) in [
            ("http://vtn.dso.example:3000", "clear text"),
            ("http://10.0.0.7", "clear text"),
            ("http://127.0.0.1.evil.example", "clear text"),
            ("http://user@127.0.0.1:3000", "expected https://"),
            ("ftp://vtn.dso.example", "neither"),
            ("https://", "expected https://"),
        ] {
            let error = vtn_url(url).unwrap_err().to_string();
            assert!(error.contains(reason), "{url}: {error}");
        }
    }

    #[test]
    fn durations_are_read_exactly_or_not_at_all() {
        for (text, ms) in [
            ("PT15M", 900_000),
            ("P0Y0M0DT0H15M0S", 900_000),
            ("PT0.25H", 900_000),
            ("P1D", 86_400_000),
            ("PT1.5S", 1_500),
        ] {
            assert_eq!(parse_duration_ms(text), Some(ms), "{text}");
        }
        for text in ["P1M", "P1Y", "15M", "PT1.0005S", "PT15", "PT5M3H", "P9999Y", "PTxM"] {
            assert_eq!(parse_duration_ms(text), None, "{text}");
        }
    }

    #[test]
    fn a_capacity_event_becomes_each_intervals_limits() {
        let genesis = genesis();
        // 40 kW over 15 minutes is 10 kWh per interval; interval 48 starts at 12:00.
        let two =
            wanted(&genesis, &export_limit("e1", 1, "2026-12-06T12:00:00Z", &[40.0, 35.5])).unwrap().limits;
        assert_eq!(
            two,
            vec![
                Wanted {
                    zone: "feeder-2".into(),
                    first_interval: 48,
                    intervals: 1,
                    import_wh_max: None,
                    export_wh_max: Some(10_000)
                },
                Wanted {
                    zone: "feeder-2".into(),
                    first_interval: 49,
                    intervals: 1,
                    import_wh_max: None,
                    export_wh_max: Some(8_875)
                },
            ]
        );
        // KWH per ledger interval, an hour-long interval in KW.
        let hourly = event(serde_json::json!({
            "id": "e2", "targets": ["feeder-1"],
            "payloadDescriptors": [{"payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW"}],
            "intervalPeriod": {"start": "2026-12-06T01:00:00Z", "duration": "PT1H"},
            "intervals": [{"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [8]}]}],
        }));
        assert_eq!(
            wanted(&genesis, &hourly).unwrap().limits,
            vec![Wanted {
                zone: "feeder-1".into(),
                first_interval: 4,
                intervals: 4,
                import_wh_max: Some(2_000),
                export_wh_max: None
            }]
        );
    }

    #[test]
    fn events_the_bridge_cannot_map_say_why() {
        let genesis = genesis();
        let base = serde_json::json!({
            "id": "bad", "targets": ["feeder-2"],
            "payloadDescriptors": [{"payloadType": "EXPORT_CAPACITY_LIMIT", "units": "KW"}],
            "intervalPeriod": {"start": "2026-12-06T12:00:00Z", "duration": "PT15M"},
            "intervals": [{"id": 0, "payloads": [{"type": "EXPORT_CAPACITY_LIMIT", "values": [40]}]}],
        });
        let with = |path: &str, value: serde_json::Value| {
            let mut json = base.clone();
            *json.pointer_mut(path).unwrap() = value;
            event(json)
        };
        let cases = [
            (with("/targets", serde_json::json!([])), "targets no zone"),
            (
                with("/targets", serde_json::json!(["feeder-9"])),
                "target `feeder-9` is none of the community's zones (feeder-1, feeder-2)",
            ),
            (
                with("/intervalPeriod/start", serde_json::json!("2026-12-06T12:05:00Z")),
                "does not cover whole intervals",
            ),
            (
                with("/intervalPeriod/duration", serde_json::json!("P1M")),
                "`P1M` is no fixed, positive duration",
            ),
            (with("/intervalPeriod/start", serde_json::json!("noon")), "`noon` is not an RFC 3339 time"),
            (
                with("/intervals/0/payloads/0/type", serde_json::json!("GHG")),
                "payload type GHG does not map to zone limits or tariffs",
            ),
            (
                with("/intervals/0/payloads/0/values", serde_json::json!([-4])),
                "is not a plain, non-negative number of kW",
            ),
            (with("/intervals/0/payloads/0/values", serde_json::json!(["40"])), "is \"40\", not a number"),
            (with("/payloadDescriptors/0/units", serde_json::json!("KVAR")), "is in KVAR"),
            (with("/intervals", serde_json::json!([])), "it has no intervals"),
        ];
        for (event, expected) in cases {
            let error = wanted(&genesis, &event).unwrap_err().to_string();
            assert!(error.starts_with("event bad: ") && error.contains(expected), "{expected:?} in {error}");
        }
    }

    #[test]
    fn the_plan_follows_priority_skips_what_the_ledger_holds_and_merges_runs() {
        let genesis = genesis();
        // Now: 11:00; interval 48 (12:00) and later are open.
        let now = 1_796_515_200_000 + 11 * 3_600_000;
        let events = [
            export_limit("low", 5, "2026-12-06T12:00:00Z", &[40.0, 40.0, 40.0, 40.0]),
            export_limit("high", 1, "2026-12-06T12:30:00Z", &[20.0]),
            export_limit("past", 1, "2026-12-06T10:00:00Z", &[1.0]),
        ];
        let plan = plan(&genesis, &events, &no_limits(&genesis), &no_tariffs(), now, 900_000);
        let limits = |export_wh_max| ZoneLimits { import_wh_max: 30_000, export_wh_max };
        assert_eq!(
            plan.changes,
            vec![
                Change { zone: "feeder-2".into(), first_interval: 48, intervals: 2, limits: limits(10_000) },
                Change { zone: "feeder-2".into(), first_interval: 50, intervals: 1, limits: limits(5_000) },
                Change { zone: "feeder-2".into(), first_interval: 51, intervals: 1, limits: limits(10_000) },
            ]
        );
        assert_eq!((plan.closed, plan.later, plan.unmapped.len()), (1, 0, 0));
        // Once the ledger holds them, a rerun changes nothing.
        let mut ledger = no_limits(&genesis);
        ledger.zones[1].limits = vec![
            ZoneLimitsRun {
                first_interval: 48,
                last_interval: 49,
                import_wh_max: 30_000,
                export_wh_max: 10_000,
            },
            ZoneLimitsRun {
                first_interval: 50,
                last_interval: 50,
                import_wh_max: 30_000,
                export_wh_max: 5_000,
            },
            ZoneLimitsRun {
                first_interval: 51,
                last_interval: 51,
                import_wh_max: 30_000,
                export_wh_max: 10_000,
            },
        ];
        let again = super::plan(&genesis, &events, &ledger, &no_tariffs(), now, 900_000);
        assert!(again.changes.is_empty(), "{again:?}");
        // Each direction is decided on its own: an import limit of a less
        // important event holds beside a more important export limit.
        let mut import = export_limit("import", 9, "2026-12-06T12:00:00Z", &[8.0]);
        import.intervals[0].payloads[0].payload_type = "IMPORT_CAPACITY_LIMIT".into();
        import.payload_descriptors.as_mut().unwrap()[0].payload_type = "IMPORT_CAPACITY_LIMIT".into();
        let both = super::plan(
            &genesis,
            &[events[0].clone(), import],
            &no_limits(&genesis),
            &no_tariffs(),
            now,
            900_000,
        );
        assert_eq!(
            both.changes[0],
            Change {
                zone: "feeder-2".into(),
                first_interval: 48,
                intervals: 1,
                limits: ZoneLimits { import_wh_max: 2_000, export_wh_max: 10_000 },
            }
        );
        // A century-long interval is clipped to the horizon, not walked.
        let mut century = export_limit("century", 1, "2026-12-06T12:00:00Z", &[40.0]);
        century.interval_period.as_mut().unwrap().duration = Some("P36500D".into());
        let far = super::plan(&genesis, &[century], &no_limits(&genesis), &no_tariffs(), now, 900_000);
        let horizon = genesis.interval_at(now) + genesis.market.offer_horizon_intervals;
        assert_eq!(
            far.changes.iter().map(|change| u64::from(change.intervals)).sum::<u64>(),
            horizon - 48 + 1
        );
        assert_eq!(far.later, 36_500 * 96 - (horizon - 48 + 1));
    }
}
