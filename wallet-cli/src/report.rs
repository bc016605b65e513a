//! `gridshare report`: a ledger's clearings, trades, bills or meter
//! readings between two times, as CSV a spreadsheet opens (or JSON): each
//! interval's start and end in RFC 3339 in a chosen time zone, energy in
//! kWh with 3 decimals, prices per kWh with 6 and money with 9 (exact: the
//! ledger's nano-currency); bills also summed per account by local day or
//! month. It reads an export file, a node's data directory or a node's
//! export (`audit::read_blocks`), in one pass.
//!
//! An interval belongs to a report when its start is in `[from, to)`. A
//! range is at most [`REPORT_DAYS_MAX`] days, and `from` comes first.

use std::collections::BTreeMap;
use std::io::Write;

use gridshare_api::decimal::{format_kwh, format_price, format_signed_kwh};
use gridshare_ledger::block::{Bill, CertifiedBlock, Receipt};
use gridshare_ledger::genesis::{Genesis, Mechanism, grid_only_nano};
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::tx::Tx;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};

use crate::market_time::{parse_duration, parse_utc};

/// The widest range a report covers, in days.
pub const REPORT_DAYS_MAX: i64 = 366;
const MS_PER_DAY: i64 = 86_400_000;

/// What a report lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportKind {
    /// Each interval's clearing: price, volume, offers and trades.
    Clearings,
    /// Each trade: seller, buyer, energy, price and amount.
    Trades,
    /// Each account's bill, per interval or summed per local day or month.
    Bills,
    /// Each meter reading the ledger holds.
    Readings,
}

/// How a report is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Csv,
    Json,
}

/// What a bills report sums over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Per {
    Interval,
    Day,
    Month,
}

/// Why a report was refused or could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "`{text}` is not a time: give RFC 3339 (2026-11-21T17:20Z, 2026-11-21T18:20+01:00), a date \
         (2026-11-21, midnight in --tz), a time without zone (2026-11-21T18:20, in --tz), `now`, or a \
         duration from now (-24h, -P1D, +15m, PT15M)"
    )]
    BadTime { text: String },
    #[error("unknown time zone `{name}`: give an IANA name such as Europe/Amsterdam, or UTC")]
    BadZone { name: String },
    #[error("the range is backwards: --from {from} is not before --to {to}")]
    Backwards { from: String, to: String },
    #[error("the range is {days} days; a report covers at most {REPORT_DAYS_MAX} days")]
    TooWide { days: i64 },
    #[error("--per {per} sums bills only; other reports list each interval")]
    PerNotBills { per: &'static str },
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot write the report: {0}")]
    Csv(#[from] csv::Error),
}

/// A report's range and how its times are written.
#[derive(Clone, Debug)]
pub struct Request {
    pub kind: ReportKind,
    pub from: Timestamp,
    pub to: Timestamp,
    pub tz: TimeZone,
    pub per: Per,
    pub format: ReportFormat,
}

/// A time zone by its IANA name (or `UTC`).
pub fn time_zone(name: &str) -> Result<TimeZone, ReportError> {
    if name.eq_ignore_ascii_case("utc") || name == "Z" {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| ReportError::BadZone { name: name.to_string() })
}

/// Reads a time as people write it (see [`ReportError::BadTime`]); civil
/// times and durations are in `tz`, from `now`.
pub fn parse_when(text: &str, now: Timestamp, tz: &TimeZone) -> Result<Timestamp, ReportError> {
    let bad = || ReportError::BadTime { text: text.to_string() };
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(ms) = parse_utc(trimmed) {
        return i64::try_from(ms).ok().and_then(|ms| Timestamp::from_millisecond(ms).ok()).ok_or_else(bad);
    }
    // A date alone is its midnight.
    if let Ok(civil) = trimmed.parse::<jiff::civil::DateTime>() {
        return civil.to_zoned(tz.clone()).map(|zoned| zoned.timestamp()).map_err(|_| bad());
    }
    let duration = parse_duration(trimmed).ok_or_else(bad)?;
    now.to_zoned(tz.clone()).checked_add(duration).map(|zoned| zoned.timestamp()).map_err(|_| bad())
}

impl Request {
    /// A request for `from..to` (as people write them) in the zone named
    /// `tz`, refused when backwards or wider than [`REPORT_DAYS_MAX`].
    pub fn new(
        kind: ReportKind,
        (from, to): (&str, &str),
        tz: &str,
        per: Per,
        format: ReportFormat,
        now: Timestamp,
    ) -> Result<Request, ReportError> {
        let tz = time_zone(tz)?;
        let (from_text, to_text) = (from, to);
        let from = parse_when(from_text, now, &tz)?;
        let to = parse_when(to_text, now, &tz)?;
        if from >= to {
            return Err(ReportError::Backwards { from: from_text.to_string(), to: to_text.to_string() });
        }
        let width_ms = to.as_millisecond() - from.as_millisecond();
        if width_ms > REPORT_DAYS_MAX * MS_PER_DAY {
            return Err(ReportError::TooWide { days: (width_ms + MS_PER_DAY - 1) / MS_PER_DAY });
        }
        if kind != ReportKind::Bills && per != Per::Interval {
            let per = if per == Per::Day { "day" } else { "month" };
            return Err(ReportError::PerNotBills { per });
        }
        Ok(Request { kind, from, to, tz, per, format })
    }

    fn local(&self, time_ms: u64) -> Zoned {
        let timestamp = i64::try_from(time_ms)
            .ok()
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .unwrap_or(Timestamp::MAX);
        timestamp.to_zoned(self.tz.clone())
    }

    /// RFC 3339 with the zone's offset at that time: `2026-11-21T18:20:00+01:00`.
    fn rfc3339(&self, time_ms: u64) -> String {
        self.local(time_ms).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// One value of a row: a count, or text (decimals, keys, times).
#[derive(Clone, Debug)]
enum Value {
    Count(u64),
    Text(String),
}

impl From<u64> for Value {
    fn from(count: u64) -> Value {
        Value::Count(count)
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Text(text)
    }
}

/// Writes rows as CSV with a header, or as a JSON array of objects.
struct Sink<'a> {
    header: Vec<String>,
    csv: Option<csv::Writer<&'a mut dyn Write>>,
    json: Option<&'a mut dyn Write>,
    rows: u64,
}

impl<'a> Sink<'a> {
    fn new(
        format: ReportFormat,
        header: Vec<String>,
        out: &'a mut dyn Write,
    ) -> Result<Sink<'a>, ReportError> {
        let mut sink = Sink { header, csv: None, json: None, rows: 0 };
        match format {
            ReportFormat::Csv => {
                let mut writer = csv::Writer::from_writer(out);
                writer.write_record(&sink.header)?;
                sink.csv = Some(writer);
            }
            ReportFormat::Json => {
                out.write_all(b"[")?;
                sink.json = Some(out);
            }
        }
        Ok(sink)
    }

    fn row(&mut self, values: Vec<Value>) -> Result<(), ReportError> {
        if let Some(writer) = &mut self.csv {
            writer.write_record(values.iter().map(|value| match value {
                Value::Count(count) => count.to_string(),
                Value::Text(text) => text.clone(),
            }))?;
        }
        if let Some(out) = &mut self.json {
            let object: serde_json::Map<String, serde_json::Value> = self
                .header
                .iter()
                .zip(values)
                .map(|(name, value)| {
                    let value = match value {
                        Value::Count(count) => serde_json::Value::from(count),
                        Value::Text(text) => serde_json::Value::from(text),
                    };
                    (name.clone(), value)
                })
                .collect();
            out.write_all(if self.rows == 0 { b"\n" } else { b",\n" })?;
            serde_json::to_writer(&mut **out, &object).map_err(std::io::Error::from)?;
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(self) -> Result<u64, ReportError> {
        if let Some(mut writer) = self.csv {
            writer.flush()?;
        }
        if let Some(out) = self.json {
            out.write_all(b"\n]\n")?;
            out.flush()?;
        }
        Ok(self.rows)
    }
}

/// Money with 9 decimals, exact: `-0.275500000`.
fn money(nano: i128) -> String {
    const NANOS_PER_UNIT: u128 = 1_000_000_000;
    let magnitude = nano.unsigned_abs();
    let sign = if nano < 0 { "-" } else { "" };
    format!("{sign}{}.{:09}", magnitude / NANOS_PER_UNIT, magnitude % NANOS_PER_UNIT)
}

/// An account's bill lines summed over a period.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    intervals: u64,
    sold_wh: u64,
    bought_wh: u64,
    sold_nano: i128,
    bought_nano: i128,
    fees_nano: i128,
    grid_import_wh: u64,
    grid_import_nano: i128,
    feed_in_wh: u64,
    feed_in_nano: i128,
    metered_net_export_wh: i64,
    deviation_wh: i64,
    total_nano: i128,
    grid_only_nano: i128,
}

impl Sums {
    fn add(&mut self, bill: &Bill, grid_only: i128) {
        self.intervals += 1;
        self.sold_wh = self.sold_wh.saturating_add(bill.sold_wh);
        self.bought_wh = self.bought_wh.saturating_add(bill.bought_wh);
        self.sold_nano += bill.sold_nano;
        self.bought_nano += bill.bought_nano;
        self.fees_nano += bill.fees_nano;
        self.grid_import_wh = self.grid_import_wh.saturating_add(bill.grid_import_wh);
        self.grid_import_nano += bill.grid_import_nano;
        self.feed_in_wh = self.feed_in_wh.saturating_add(bill.feed_in_wh);
        self.feed_in_nano += bill.feed_in_nano;
        self.metered_net_export_wh = self.metered_net_export_wh.saturating_add(bill.metered_net_export_wh);
        self.deviation_wh = self.deviation_wh.saturating_add(bill.deviation_wh);
        self.total_nano += bill.total_nano;
        self.grid_only_nano += grid_only;
    }

    fn values(&self) -> Vec<Value> {
        vec![
            format_kwh(self.sold_wh).into(),
            format_kwh(self.bought_wh).into(),
            money(self.sold_nano).into(),
            money(self.bought_nano).into(),
            money(self.fees_nano).into(),
            format_kwh(self.grid_import_wh).into(),
            money(self.grid_import_nano).into(),
            format_kwh(self.feed_in_wh).into(),
            money(self.feed_in_nano).into(),
            format_signed_kwh(self.metered_net_export_wh).into(),
            format_signed_kwh(self.deviation_wh).into(),
            money(self.total_nano).into(),
            money(self.grid_only_nano).into(),
            money(self.total_nano - self.grid_only_nano).into(),
        ]
    }
}

/// The bill columns after the period and account; money in `currency`.
fn bill_columns(currency: &str) -> Vec<String> {
    let c = currency.to_ascii_lowercase();
    [
        "sold_kwh".to_string(),
        "bought_kwh".to_string(),
        format!("sold_{c}"),
        format!("bought_{c}"),
        format!("fees_{c}"),
        "grid_import_kwh".to_string(),
        format!("grid_import_{c}"),
        "feed_in_kwh".to_string(),
        format!("feed_in_{c}"),
        "metered_net_export_kwh".to_string(),
        "deviation_kwh".to_string(),
        format!("total_{c}"),
        format!("grid_only_{c}"),
        format!("saved_{c}"),
    ]
    .into()
}

fn header(names: &[&str], rest: Vec<String>) -> Vec<String> {
    names.iter().map(|name| name.to_string()).chain(rest).collect()
}

/// Writes the report of `request` over the blocks `visit` hands over, in
/// height order; returns the rows written.
pub struct Report<'a> {
    request: &'a Request,
    genesis: Genesis,
    sink: Sink<'a>,
    /// Bills summed per (period start, account), for `--per day|month`.
    periods: BTreeMap<(Timestamp, PublicKey), Sums>,
}

impl std::fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report")
            .field("request", self.request)
            .field("rows", &self.sink.rows)
            .finish_non_exhaustive()
    }
}

impl<'a> Report<'a> {
    pub fn new(
        request: &'a Request,
        genesis: Genesis,
        out: &'a mut dyn Write,
    ) -> Result<Report<'a>, ReportError> {
        let currency = genesis.currency.to_ascii_lowercase();
        let times = ["interval", "start", "end"];
        let columns = match (request.kind, request.per) {
            (ReportKind::Clearings, _) => header(
                &times,
                vec![
                    "mechanism".into(),
                    "offers".into(),
                    format!("price_{currency}_per_kwh"),
                    "volume_kwh".into(),
                    "trades".into(),
                    "block".into(),
                ],
            ),
            (ReportKind::Trades, _) => header(
                &times,
                vec![
                    "seller".into(),
                    "buyer".into(),
                    "energy_kwh".into(),
                    format!("price_{currency}_per_kwh"),
                    format!("amount_{currency}"),
                    "block".into(),
                ],
            ),
            (ReportKind::Bills, Per::Interval) => {
                header(&times, ["account".to_string()].into_iter().chain(bill_columns(&currency)).collect())
            }
            (ReportKind::Bills, Per::Day | Per::Month) => {
                header(&["period", "start", "end", "account", "intervals"], bill_columns(&currency))
            }
            (ReportKind::Readings, _) => header(
                &times,
                vec!["meter".into(), "import_kwh_total".into(), "export_kwh_total".into(), "block".into()],
            ),
        };
        let sink = Sink::new(request.format, columns, out)?;
        Ok(Report { request, genesis, sink, periods: BTreeMap::new() })
    }

    /// The interval's start and end, if its start is in the range.
    fn times(&self, interval: u64) -> Option<(u64, u64)> {
        let start = self.genesis.interval_start_ms(interval)?;
        let end = self.genesis.interval_end_ms(interval)?;
        let start_ms = i64::try_from(start).ok()?;
        (self.request.from.as_millisecond() <= start_ms && start_ms < self.request.to.as_millisecond())
            .then_some((start, end))
    }

    fn interval_values(&self, interval: u64, (start, end): (u64, u64)) -> Vec<Value> {
        vec![interval.into(), self.request.rfc3339(start).into(), self.request.rfc3339(end).into()]
    }

    /// Takes the next block's rows.
    pub fn block(&mut self, block: &CertifiedBlock) -> Result<(), ReportError> {
        let height = block.block.header.height;
        match self.request.kind {
            ReportKind::Readings => {
                for signed in &block.block.transactions {
                    let Tx::MeterReading(reading) = &signed.tx else { continue };
                    let Some(times) = self.times(reading.interval) else { continue };
                    let mut values = self.interval_values(reading.interval, times);
                    values.extend([
                        reading.meter.to_string().into(),
                        format_kwh(reading.import_wh_total).into(),
                        format_kwh(reading.export_wh_total).into(),
                        height.into(),
                    ]);
                    self.sink.row(values)?;
                }
            }
            ReportKind::Clearings | ReportKind::Trades | ReportKind::Bills => {
                for receipt in &block.block.receipts {
                    self.receipt(receipt, height)?;
                }
            }
        }
        Ok(())
    }

    fn receipt(&mut self, receipt: &Receipt, height: u64) -> Result<(), ReportError> {
        match (self.request.kind, receipt) {
            (ReportKind::Clearings, Receipt::Clearing(clearing)) => {
                let Some(times) = self.times(clearing.interval) else { return Ok(()) };
                let mut values = self.interval_values(clearing.interval, times);
                let mechanism = match clearing.mechanism {
                    Mechanism::Uniform => "uniform",
                    Mechanism::PayAsBid => "pay_as_bid",
                };
                values.extend([
                    mechanism.to_string().into(),
                    u64::from(clearing.offers).into(),
                    clearing.clearing_price_micro_per_kwh.map(format_price).unwrap_or_default().into(),
                    format_kwh(clearing.volume_wh).into(),
                    u64::try_from(clearing.trades.len()).unwrap_or(u64::MAX).into(),
                    height.into(),
                ]);
                self.sink.row(values)?;
            }
            (ReportKind::Trades, Receipt::Clearing(clearing)) => {
                let Some(times) = self.times(clearing.interval) else { return Ok(()) };
                for trade in &clearing.trades {
                    let mut values = self.interval_values(clearing.interval, times);
                    let amount = i128::from(trade.energy_wh) * i128::from(trade.price_micro_per_kwh);
                    values.extend([
                        trade.seller.to_string().into(),
                        trade.buyer.to_string().into(),
                        format_kwh(trade.energy_wh).into(),
                        format_price(trade.price_micro_per_kwh).into(),
                        money(amount).into(),
                        height.into(),
                    ]);
                    self.sink.row(values)?;
                }
            }
            (ReportKind::Bills, Receipt::Settlement(settlement)) => {
                let Some(times) = self.times(settlement.interval) else { return Ok(()) };
                let tariffs = &settlement.tariffs;
                for bill in &settlement.bills {
                    let grid_only = grid_only_nano(
                        bill.metered_net_export_wh,
                        tariffs.grid_feed_in_micro_per_kwh,
                        tariffs.grid_import_micro_per_kwh,
                    );
                    match self.request.per {
                        Per::Interval => {
                            let mut values = self.interval_values(settlement.interval, times);
                            values.push(bill.account.to_string().into());
                            let mut sums = Sums::default();
                            sums.add(bill, grid_only);
                            values.extend(sums.values());
                            self.sink.row(values)?;
                        }
                        Per::Day | Per::Month => {
                            let period = self.period_start(times.0);
                            self.periods.entry((period, bill.account)).or_default().add(bill, grid_only);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The start of the local day or month that holds `time_ms`.
    fn period_start(&self, time_ms: u64) -> Timestamp {
        let local = self.request.local(time_ms);
        let day = local.date();
        let first = match self.request.per {
            Per::Month => day.first_of_month(),
            Per::Day | Per::Interval => day,
        };
        first.to_zoned(self.request.tz.clone()).map_or(local.timestamp(), |zoned| zoned.timestamp())
    }

    /// Writes what was summed and ends the report; returns the rows.
    pub fn finish(mut self) -> Result<u64, ReportError> {
        let periods = std::mem::take(&mut self.periods);
        for ((start, account), sums) in periods {
            let zoned = start.to_zoned(self.request.tz.clone());
            let (name, end) = match self.request.per {
                Per::Month => (zoned.strftime("%Y-%m").to_string(), zoned.checked_add(Span::new().months(1))),
                Per::Day | Per::Interval => {
                    (zoned.strftime("%Y-%m-%d").to_string(), zoned.checked_add(Span::new().days(1)))
                }
            };
            let end = end.map_or(String::new(), |end| end.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string());
            let mut values: Vec<Value> = vec![
                name.into(),
                zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string().into(),
                end.into(),
                account.to_string().into(),
                sums.intervals.into(),
            ];
            values.extend(sums.values());
            self.sink.row(values)?;
        }
        self.sink.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-21T17:20:00Z".parse().unwrap()
    }

    fn at(text: &str, tz: &str) -> String {
        parse_when(text, now(), &time_zone(tz).unwrap())
            .map(|time| time.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn times_are_read_in_every_form_people_write() {
        assert_eq!(at("2026-11-21T18:20+01:00", "UTC"), "2026-11-21T17:20:00Z");
        assert_eq!(at("2026-11-21T17:20Z", "Europe/Amsterdam"), "2026-11-21T17:20:00Z");
        assert_eq!(at("2026-11-21", "Europe/Amsterdam"), "2026-11-20T23:00:00Z", "local midnight");
        assert_eq!(at("2026-07-01", "Europe/Amsterdam"), "2026-06-30T22:00:00Z", "summer time");
        assert_eq!(at("2026-11-21T18:20", "Europe/Amsterdam"), "2026-11-21T17:20:00Z");
        assert_eq!(at("now", "UTC"), "2026-11-21T17:20:00Z");
        assert_eq!(at("-24h", "UTC"), "2026-11-20T17:20:00Z");
        assert_eq!(at("+15m", "UTC"), "2026-11-21T17:35:00Z");
        assert_eq!(at("PT15M", "UTC"), "2026-11-21T17:35:00Z");
        assert_eq!(at("-P1D", "UTC"), "2026-11-20T17:20:00Z");
        assert!(at("yesterday-ish", "UTC").contains("is not a time"));
        assert!(time_zone("Mars/Olympus").unwrap_err().to_string().contains("Mars/Olympus"));
    }

    #[test]
    fn ranges_are_refused_backwards_or_too_wide_with_the_limit_named() {
        let request = |from: &str, to: &str| {
            Request::new(ReportKind::Trades, (from, to), "UTC", Per::Interval, ReportFormat::Csv, now())
        };
        assert!(request("2026-11-01", "2026-11-21").is_ok());
        let backwards = request("2026-11-21", "2026-11-01").unwrap_err().to_string();
        assert!(backwards.contains("not before"), "{backwards}");
        assert!(request("now", "now").is_err());
        let wide = request("2025-01-01", "2026-11-21").unwrap_err().to_string();
        assert!(wide.contains("at most 366 days"), "{wide}");
        let per = Request::new(ReportKind::Trades, ("-1d", "now"), "UTC", Per::Day, ReportFormat::Csv, now());
        assert!(per.unwrap_err().to_string().contains("sums bills only"));
    }

    #[test]
    fn money_has_fixed_decimals() {
        assert_eq!(money(-275_500_000), "-0.275500000");
        assert_eq!(money(12_000_000_000), "12.000000000");
        assert_eq!(money(i128::MIN), "-170141183460469231731687303715.884105728");
    }
}
