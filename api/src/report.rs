//! Reports of a ledger (`gridshare report`, and the node dashboard's
//! downloads): clearings, trades, bills or meter readings between two
//! times, as CSV a spreadsheet opens (or JSON): each interval's start and
//! end in RFC 3339 in a chosen time zone with its offset, energy in kWh
//! with 3 decimals, prices per kWh with 6 and money with 9 (exact: the
//! ledger's nano-currency); bills also summed per account by local day or
//! month. A [`Report`] is handed a ledger's blocks in height order, once.
//!
//! An interval belongs to a report when its start is in `[from, to)`. A
//! range is at most [`REPORT_DAYS_MAX`] days, and `from` comes first.

use std::collections::BTreeMap;
use std::io::Write;

use crate::decimal::{format_kwh, format_money_fixed, format_price, format_signed_kwh};
use gridshare_ledger::block::{Bill, CertifiedBlock, Receipt};
use gridshare_ledger::genesis::{Genesis, Mechanism};
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::tx::Tx;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};

/// At most this many (account, day or month) sums a bills report keeps in
/// memory until it writes them.
pub const PERIODS_MAX: usize = 1 << 20;
/// The widest range a report covers, in days.
pub const REPORT_DAYS_MAX: i64 = 366;

/// What a report lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// Each interval's clearing: price, volume, offers and trades.
    Clearings,
    /// Each trade: seller, buyer, energy, the seller's and the buyer's
    /// prices and the seller's amount.
    Trades,
    /// Each account's bill, per interval or summed per local day or month.
    Bills,
    /// Each meter reading the ledger holds.
    Readings,
}

/// How a report is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Csv,
    Json,
}

/// What a bills report sums over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    Interval,
    Day,
    Month,
}

impl ReportKind {
    pub const ALL: [ReportKind; 4] =
        [ReportKind::Clearings, ReportKind::Trades, ReportKind::Bills, ReportKind::Readings];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Clearings => "clearings",
            ReportKind::Trades => "trades",
            ReportKind::Bills => "bills",
            ReportKind::Readings => "readings",
        }
    }
}

impl std::str::FromStr for ReportKind {
    type Err = String;

    fn from_str(text: &str) -> Result<ReportKind, String> {
        ReportKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("`{text}` is not a report: clearings, trades, bills or readings"))
    }
}

impl std::str::FromStr for ReportFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<ReportFormat, String> {
        match text {
            "csv" => Ok(ReportFormat::Csv),
            "json" => Ok(ReportFormat::Json),
            _ => Err(format!("`{text}` is not a format: csv or json")),
        }
    }
}

impl Per {
    pub fn as_str(self) -> &'static str {
        match self {
            Per::Interval => "interval",
            Per::Day => "day",
            Per::Month => "month",
        }
    }
}

impl std::str::FromStr for Per {
    type Err = String;

    fn from_str(text: &str) -> Result<Per, String> {
        [Per::Interval, Per::Day, Per::Month]
            .into_iter()
            .find(|per| per.as_str() == text)
            .ok_or_else(|| format!("`{text}` is not a period: interval, day or month"))
    }
}

/// Why a report was refused or could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("unknown time zone `{name}`: give an IANA name such as Europe/Amsterdam, or UTC")]
    BadZone { name: String },
    #[error("the range is backwards: its start {from} is not before its end {to}")]
    Backwards { from: String, to: String },
    #[error("the range is {days} days; a report covers at most {REPORT_DAYS_MAX} days")]
    TooWide { days: i64 },
    #[error("per {per} sums bills only; other reports list each interval")]
    PerNotBills { per: &'static str },
    #[error("the bills fill more than {PERIODS_MAX} account periods; a report sums at most that many")]
    TooManyPeriods,
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

/// The local days `first` through `last` in `tz`: from the midnight that
/// starts `first` to the one that ends `last` (a day is 23 or 25 hours when
/// the clocks change); `None` beyond the representable times.
pub fn local_days(
    first: jiff::civil::Date,
    last: jiff::civil::Date,
    tz: &TimeZone,
) -> Option<(Timestamp, Timestamp)> {
    let midnight = |date: jiff::civil::Date| date.to_zoned(tz.clone()).ok().map(|zoned| zoned.timestamp());
    Some((midnight(first)?, midnight(last.tomorrow().ok()?)?))
}

/// A time zone by its IANA name (or `UTC`).
pub fn time_zone(name: &str) -> Result<TimeZone, ReportError> {
    if name.eq_ignore_ascii_case("utc") || name == "Z" {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| ReportError::BadZone { name: name.to_string() })
}

impl Request {
    /// A request for `from..to` in `tz`, refused when backwards or wider
    /// than [`REPORT_DAYS_MAX`], or summed per day or month when it does
    /// not list bills.
    pub fn new(
        kind: ReportKind,
        (from, to): (Timestamp, Timestamp),
        tz: TimeZone,
        per: Per,
        format: ReportFormat,
    ) -> Result<Request, ReportError> {
        if from >= to {
            return Err(ReportError::Backwards { from: from.to_string(), to: to.to_string() });
        }
        // Local days, so that a year across a change of the clocks is a
        // year: the days from the first to the last the range touches.
        let last = to.checked_sub(jiff::SignedDuration::from_millis(1)).unwrap_or(to);
        let (first_day, last_day) = (from.to_zoned(tz.clone()).date(), last.to_zoned(tz.clone()).date());
        let days =
            first_day.until(last_day).map_or(i64::MAX, |span| i64::from(span.get_days()).saturating_add(1));
        if days > REPORT_DAYS_MAX {
            return Err(ReportError::TooWide { days });
        }
        if kind != ReportKind::Bills && per != Per::Interval {
            return Err(ReportError::PerNotBills { per: per.as_str() });
        }
        Ok(Request { kind, from, to, tz, per, format })
    }

    /// A name for the report's file, with its first and last day:
    /// `gridshare-trades-2026-11-21-2026-11-22.csv`.
    pub fn file_name(&self) -> String {
        let day = |time: Timestamp| time.to_zoned(self.tz.clone()).strftime("%Y-%m-%d").to_string();
        let last = self.to.checked_sub(jiff::SignedDuration::from_millis(1)).unwrap_or(self.to);
        let extension = match self.format {
            ReportFormat::Csv => "csv",
            ReportFormat::Json => "json",
        };
        format!("gridshare-{}-{}-{}.{extension}", self.kind.as_str(), day(self.from), day(last))
    }

    fn local(&self, time_ms: u64) -> Zoned {
        local(time_ms, &self.tz)
    }

    fn rfc3339(&self, time_ms: u64) -> String {
        rfc3339_in(time_ms, &self.tz)
    }
}

/// A time (ms since the epoch) in `tz`.
fn local(time_ms: u64, tz: &TimeZone) -> Zoned {
    let timestamp = i64::try_from(time_ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::MAX);
    timestamp.to_zoned(tz.clone())
}

/// RFC 3339 in `tz` with its offset at that time:
/// `2026-11-21T18:20:00+01:00`.
pub fn rfc3339_in(time_ms: u64, tz: &TimeZone) -> String {
    rfc3339_in_zoned(&local(time_ms, tz))
}

fn rfc3339_in_zoned(zoned: &Zoned) -> String {
    zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
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
            format_money_fixed(self.sold_nano).into(),
            format_money_fixed(self.bought_nano).into(),
            format_money_fixed(self.fees_nano).into(),
            format_kwh(self.grid_import_wh).into(),
            format_money_fixed(self.grid_import_nano).into(),
            format_kwh(self.feed_in_wh).into(),
            format_money_fixed(self.feed_in_nano).into(),
            format_signed_kwh(self.metered_net_export_wh).into(),
            format_signed_kwh(self.deviation_wh).into(),
            format_money_fixed(self.total_nano).into(),
            format_money_fixed(self.grid_only_nano).into(),
            format_money_fixed(self.total_nano - self.grid_only_nano).into(),
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
                    format!("buyer_price_{currency}_per_kwh"),
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
                        format_price(trade.buyer_price_micro_per_kwh).into(),
                        format_money_fixed(amount).into(),
                        height.into(),
                    ]);
                    self.sink.row(values)?;
                }
            }
            (ReportKind::Bills, Receipt::Settlement(settlement)) => {
                let Some(times) = self.times(settlement.interval) else { return Ok(()) };
                for bill in &settlement.bills {
                    let grid_only = settlement.grid_only_nano(bill);
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
                            let key = (period, bill.account);
                            if !self.periods.contains_key(&key) && self.periods.len() >= PERIODS_MAX {
                                return Err(ReportError::TooManyPeriods);
                            }
                            self.periods.entry(key).or_default().add(bill, grid_only);
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
            // A period covers no more than the range does.
            let start = zoned.timestamp().max(self.request.from).to_zoned(self.request.tz.clone());
            let end = end.map(|end| end.timestamp().min(self.request.to).to_zoned(self.request.tz.clone()));
            let end = end.map_or(String::new(), |end| rfc3339_in_zoned(&end));
            let mut values: Vec<Value> = vec![
                name.into(),
                rfc3339_in_zoned(&start).into(),
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

    #[test]
    fn ranges_are_refused_backwards_or_too_wide_with_the_limit_named() {
        let time = |text: &str| text.parse::<Timestamp>().unwrap();
        let request = |from: &str, to: &str, kind: ReportKind, per: Per| {
            Request::new(kind, (time(from), time(to)), TimeZone::UTC, per, ReportFormat::Csv)
        };
        let trades = |from: &str, to: &str| request(from, to, ReportKind::Trades, Per::Interval);
        assert!(trades("2026-11-01T00:00Z", "2026-11-21T00:00Z").is_ok());
        let backwards = trades("2026-11-21T00:00Z", "2026-11-01T00:00Z").unwrap_err().to_string();
        assert!(backwards.contains("not before"), "{backwards}");
        assert!(trades("2026-11-21T00:00Z", "2026-11-21T00:00Z").is_err());
        let wide = trades("2025-01-01T00:00Z", "2026-11-21T00:00Z").unwrap_err().to_string();
        assert!(wide.contains("at most 366 days"), "{wide}");
        // 366 local days across the end of summer time are 366 days (and
        // an hour more than 366 × 24 hours); one more day is too many.
        let amsterdam = time_zone("Europe/Amsterdam").unwrap();
        let local =
            |text: &str| text.parse::<jiff::civil::DateTime>().unwrap().to_zoned(amsterdam.clone()).unwrap();
        let year = |to: &str| {
            let range = (local("2027-10-30T00:00").timestamp(), local(to).timestamp());
            Request::new(ReportKind::Trades, range, amsterdam.clone(), Per::Interval, ReportFormat::Csv)
        };
        assert!(year("2028-10-30T00:00").is_ok());
        assert!(year("2028-10-31T00:00").unwrap_err().to_string().contains("the range is 367 days"));
        let per = request("2026-11-01T00:00Z", "2026-11-21T00:00Z", ReportKind::Trades, Per::Day);
        assert!(per.unwrap_err().to_string().contains("sums bills only"));
        let bills = request("2026-11-01T00:00Z", "2026-11-21T00:00Z", ReportKind::Bills, Per::Month).unwrap();
        assert_eq!(
            bills.file_name(),
            "gridshare-bills-2026-11-01-2026-11-20.csv",
            "the last day, not the end"
        );
        assert!(time_zone("Mars/Olympus").unwrap_err().to_string().contains("Mars/Olympus"));
        assert_eq!("readings".parse(), Ok(ReportKind::Readings));
        assert!("bill".parse::<ReportKind>().is_err());
    }
}
