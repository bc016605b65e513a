//! What an account has: its balance, trades and bills (`gridshare
//! balance`, `trades`, `bill`), fetched in bounded spans of intervals.

use std::io::Write;

use gridshare_api::bounds::INTERVAL_SPAN_MAX;
use gridshare_api::{
    Account, AccountBill, AccountTrade, Bill, IntervalStatus, Side as WireSide, SpanQuery, Tariffs,
};
use gridshare_ledger::ids::PublicKey;

use crate::amount::{format_kw, format_kwh, format_money, format_price, format_signed_kwh};
use crate::keystore::Role;
use crate::market_time::{IntervalSpec, format_utc, now_ms};
use crate::table::{self, Align};
use crate::wallet::{CommandError, Wallet, bad_input, plural, write_json};

/// At most this many requests of `INTERVAL_SPAN_MAX` intervals for one
/// listing of trades or bills.
pub const SPAN_REQUESTS_MAX: u64 = 100;

/// `gridshare balance`.
#[derive(Debug, Clone, clap::Args)]
pub struct BalanceArgs {
    /// The account (default: the only account key).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// An account's balance for people.
pub fn balance_text(wallet: &Wallet, account: &Account, name: &str) -> String {
    let currency = &account.currency;
    let money = |nano| format_money(nano, currency);
    let mut rows = vec![
        vec!["Account".to_string(), format!("{name} ({})", account.account)],
        vec!["Balance".to_string(), money(account.balance_nano)],
        vec!["Reserved".to_string(), money(account.reserved_nano)],
        vec!["Credit limit".to_string(), money(account.credit_limit_nano)],
        vec!["Available".to_string(), money(account.available_nano)],
        vec!["Open offers".to_string(), account.open_offers.to_string()],
    ];
    for meter in &account.meters {
        let reading = match &meter.last_reading {
            Some(reading) => format!(
                "last reading interval {}: import {} kWh, export {} kWh",
                reading.interval,
                format_kwh(reading.import_wh_total),
                format_kwh(reading.export_wh_total)
            ),
            None => "no reading yet".to_string(),
        };
        let zone = if meter.zone.is_empty() { String::new() } else { format!(", zone {}", meter.zone) };
        rows.push(vec![
            "Meter".to_string(),
            format!(
                "{}: import up to {} kW, export up to {} kW{zone}; billed from interval {} on, every interval; {reading}",
                wallet.label(&meter.meter.to_string()),
                format_kw(meter.max_import_w),
                format_kw(meter.max_export_w),
                meter.registered_interval + 1
            ),
        ]);
    }
    table::render_rows(&[Align::Left, Align::Left], &rows)
}

/// `gridshare balance`: balance, reservations, credit limit and meters.
pub fn balance(wallet: &Wallet, args: &BalanceArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let account_file = wallet.key_file(args.from.as_deref(), Role::Account, "--from")?;
    let account_key = account_file.public_key()?;
    let Some(account) = wallet.node().account(&account_key)? else {
        return Err(not_registered(&account_file.name, &account_key));
    };
    if args.json {
        return write_json(out, &account);
    }
    write!(out, "{}", balance_text(wallet, &account, &account_file.name))?;
    Ok(())
}

fn not_registered(name: &str, key: &PublicKey) -> CommandError {
    CommandError::Rejected(format!(
        "account `{name}` ({key}) is not registered on this node's community: a registrar registers it with `gridshare register account {key} --credit-limit AMOUNT`"
    ))
}

/// Which intervals a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalRange {
    /// The node's default: the last 24 cleared or settled intervals.
    Recent,
    /// `from..=to`.
    Span { from: u64, to: u64 },
}

/// Fetches a listing over a range in requests of at most
/// `INTERVAL_SPAN_MAX` intervals, clamped to the intervals the node can
/// have (`last`: the latest cleared or settled interval, if any).
fn fetch_span<T>(
    range: IntervalRange,
    last: Option<u64>,
    fetch: impl Fn(SpanQuery) -> Result<Vec<T>, CommandError>,
) -> Result<Vec<T>, CommandError> {
    let (from, to) = match range {
        IntervalRange::Recent => return fetch(SpanQuery::default()),
        IntervalRange::Span { from, to } => (from, to),
    };
    let Some(to) = last.map(|last| last.min(to)).filter(|to| *to >= from) else {
        return Ok(Vec::new());
    };
    if (to - from) / INTERVAL_SPAN_MAX >= SPAN_REQUESTS_MAX {
        return Err(CommandError::BadInput(format!(
            "{} intervals are too many at once: ask for at most {}",
            (to - from).saturating_add(1),
            INTERVAL_SPAN_MAX * SPAN_REQUESTS_MAX
        )));
    }
    let mut items = Vec::new();
    let mut start = from;
    loop {
        let end = start.saturating_add(INTERVAL_SPAN_MAX - 1).min(to);
        items.extend(fetch(SpanQuery::between(start, end))?);
        if end == to {
            return Ok(items);
        }
        start = end + 1;
    }
}

/// `gridshare trades`.
#[derive(Debug, Clone, clap::Args)]
pub struct TradesArgs {
    /// The account (default: the only account key).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// One interval: a number, next, +N or a time with its zone.
    #[arg(long, value_name = "INTERVAL", conflicts_with_all = ["from_interval", "to_interval"])]
    pub interval: Option<IntervalSpec>,
    /// The first interval of a range (with --to-interval).
    #[arg(long, value_name = "N", requires = "to_interval")]
    pub from_interval: Option<u64>,
    /// The last interval of a range (with --from-interval).
    #[arg(long, value_name = "N", requires = "from_interval")]
    pub to_interval: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

fn range_of(
    wallet: &Wallet,
    interval: Option<IntervalSpec>,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<IntervalRange, CommandError> {
    match (interval, from, to) {
        (Some(spec), _, _) => {
            let interval = spec.resolve(&wallet.community()?.genesis, now_ms()).map_err(bad_input)?;
            Ok(IntervalRange::Span { from: interval, to: interval })
        }
        (None, Some(from), Some(to)) if from <= to => Ok(IntervalRange::Span { from, to }),
        (None, Some(from), Some(to)) => {
            Err(CommandError::BadInput(format!("--from-interval {from} is after --to-interval {to}")))
        }
        _ => Ok(IntervalRange::Recent),
    }
}

/// The table of an account's trades, with totals.
pub fn trades_text(wallet: &Wallet, trades: &[AccountTrade], currency: &str) -> String {
    if trades.is_empty() {
        return "No trades.\n".to_string();
    }
    let mut rows: Vec<Vec<String>> = trades
        .iter()
        .map(|trade| {
            vec![
                trade.interval.to_string(),
                trade.side.to_string(),
                format_kwh(trade.energy_wh),
                format_price(trade.price_micro_per_kwh),
                format_money(trade.amount_nano, currency),
                wallet.label(&trade.counterparty.to_string()),
                trade.height.to_string(),
            ]
        })
        .collect();
    let total = |side: WireSide| -> (u64, i128) {
        trades
            .iter()
            .filter(|trade| trade.side == side)
            .fold((0, 0), |(wh, nano), trade| (wh + trade.energy_wh, nano + trade.amount_nano))
    };
    for side in [WireSide::Buy, WireSide::Sell] {
        let (wh, nano) = total(side);
        if wh > 0 {
            let label = if side == WireSide::Buy { "bought" } else { "sold" };
            rows.push(vec![
                "total".into(),
                label.into(),
                format_kwh(wh),
                String::new(),
                format_money(nano, currency),
            ]);
        }
    }
    let price_title = format!("PRICE ({currency}/kWh)");
    table::render(
        &[
            ("INTERVAL", Align::Right),
            ("SIDE", Align::Left),
            ("ENERGY (kWh)", Align::Right),
            (&price_title, Align::Right),
            ("AMOUNT", Align::Right),
            ("COUNTERPARTY", Align::Left),
            ("HEIGHT", Align::Right),
        ],
        &rows,
    )
}

/// `gridshare trades`: the account's trades in cleared intervals.
pub fn trades(wallet: &Wallet, args: &TradesArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let account_file = wallet.key_file(args.from.as_deref(), Role::Account, "--from")?;
    let account_key = account_file.public_key()?;
    let community = wallet.community()?;
    let range = range_of(wallet, args.interval, args.from_interval, args.to_interval)?;
    let last_cleared = match range {
        IntervalRange::Recent => None,
        IntervalRange::Span { .. } => wallet.node().status()?.next_clearing_interval.checked_sub(1),
    };
    let trades = fetch_span(range, last_cleared, |span| Ok(wallet.node().trades(&account_key, &span)?))?;
    if args.json {
        return write_json(out, &serde_json::json!({ "trades": trades }));
    }
    if trades.is_empty() {
        match range {
            IntervalRange::Recent => {
                writeln!(out, "No trades of {} in the last cleared intervals.", account_file.name)?
            }
            IntervalRange::Span { from, to } if from == to => {
                writeln!(out, "No trades of {} in interval {from}.", account_file.name)?;
            }
            IntervalRange::Span { from, to } => {
                writeln!(out, "No trades of {} in intervals {from} to {to}.", account_file.name)?;
            }
        }
        return Ok(());
    }
    write!(out, "{}", trades_text(wallet, &trades, community.currency()))?;
    Ok(())
}

/// `gridshare bill`.
#[derive(Debug, Clone, clap::Args)]
pub struct BillArgs {
    /// The account (default: the only account key).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// One interval, itemised: a number, or a time in it with its zone.
    #[arg(long, value_name = "INTERVAL", conflicts_with = "day")]
    pub interval: Option<IntervalSpec>,
    /// Every settled interval of a day, YYYY-MM-DD, in --tz.
    #[arg(long, value_name = "DAY")]
    pub day: Option<String>,
    /// The time zone --day is a day in: an IANA name.
    #[arg(long, value_name = "ZONE", default_value = "UTC", requires = "day")]
    pub tz: String,
    #[arg(long)]
    pub json: bool,
}

/// The tariff a bill line was priced at, derived exactly from the line
/// (nano ÷ Wh = micro per kWh) when it has energy.
fn tariff_of(amount_nano: i128, energy_wh: u64) -> Option<u64> {
    let energy = i128::from(energy_wh);
    if energy == 0 || amount_nano % energy != 0 {
        return None;
    }
    u64::try_from((amount_nano / energy).unsigned_abs()).ok()
}

/// One interval's bill, itemised line by line.
pub fn bill_text(bill: &Bill, tariffs: Option<&Tariffs>, currency: &str) -> String {
    let money = |nano| format_money(nano, currency);
    let price = |micro: Option<u64>| micro.map_or_else(String::new, format_price);
    let import_price = tariffs
        .map(|t| t.grid_import_micro_per_kwh)
        .or_else(|| tariff_of(bill.grid_import_nano, bill.grid_import_wh));
    let feed_in_price = tariffs
        .map(|t| t.grid_feed_in_micro_per_kwh)
        .or_else(|| tariff_of(bill.feed_in_nano, bill.feed_in_wh));
    let fee_price =
        tariffs.map(|t| t.network_fee_micro_per_kwh).or_else(|| tariff_of(bill.fees_nano, bill.bought_wh));
    let contracted_wh =
        i64::try_from(i128::from(bill.sold_wh) - i128::from(bill.bought_wh)).unwrap_or(i64::MAX);
    let mut rows = vec![
        vec!["Sold (traded)".into(), format_kwh(bill.sold_wh), String::new(), money(bill.sold_nano)],
        vec!["Bought (traded)".into(), format_kwh(bill.bought_wh), String::new(), money(bill.bought_nano)],
        vec!["Network fees".into(), format_kwh(bill.bought_wh), price(fee_price), money(bill.fees_nano)],
        vec!["Contracted net export".into(), format_signed_kwh(contracted_wh)],
        vec!["Metered net export".into(), format_signed_kwh(bill.metered_net_export_wh)],
    ];
    // A meter without the readings to measure the interval counts its full
    // import capacity: say how much of the metered energy that is.
    if bill.estimated_import_wh > 0 {
        rows.push(vec!["Estimated import".into(), format_kwh(bill.estimated_import_wh)]);
    }
    rows.extend([
        vec!["Deviation".into(), format_signed_kwh(bill.deviation_wh)],
        vec![
            "Grid import".into(),
            format_kwh(bill.grid_import_wh),
            price(import_price),
            money(bill.grid_import_nano),
        ],
        vec!["Feed-in".into(), format_kwh(bill.feed_in_wh), price(feed_in_price), money(bill.feed_in_nano)],
    ]);
    if bill.estimate_refund_wh > 0 || bill.estimate_refund_nano != 0 {
        rows.push(vec![
            "Estimate refund".into(),
            format_kwh(bill.estimate_refund_wh),
            price(tariff_of(bill.estimate_refund_nano, bill.estimate_refund_wh)),
            money(bill.estimate_refund_nano),
        ]);
    }
    rows.push(vec!["Total".into(), String::new(), String::new(), money(bill.total_nano)]);
    let price_title = format!("AT ({currency}/kWh)");
    table::render(
        &[
            ("ITEM", Align::Left),
            ("ENERGY (kWh)", Align::Right),
            (&price_title, Align::Right),
            ("AMOUNT", Align::Right),
        ],
        &rows,
    )
}

/// Several intervals' bills, one a row, with a total row.
pub fn bills_text(bills: &[AccountBill], currency: &str) -> String {
    let money = |nano| format_money(nano, currency);
    let mut rows: Vec<Vec<String>> = bills
        .iter()
        .map(|AccountBill { interval, bill, .. }| {
            vec![
                interval.to_string(),
                format_kwh(bill.sold_wh),
                format_kwh(bill.bought_wh),
                money(bill.sold_nano + bill.bought_nano),
                money(bill.fees_nano),
                format_signed_kwh(bill.deviation_wh),
                money(bill.grid_import_nano),
                money(bill.feed_in_nano),
                money(bill.total_nano),
            ]
        })
        .collect();
    let sum_wh = |field: fn(&Bill) -> u64| bills.iter().map(|listed| field(&listed.bill)).sum::<u64>();
    let sum_nano = |field: fn(&Bill) -> i128| bills.iter().map(|listed| field(&listed.bill)).sum::<i128>();
    let deviation: i64 = bills.iter().map(|listed| listed.bill.deviation_wh).sum();
    rows.push(vec![
        "total".into(),
        format_kwh(sum_wh(|bill| bill.sold_wh)),
        format_kwh(sum_wh(|bill| bill.bought_wh)),
        money(sum_nano(|bill| bill.sold_nano + bill.bought_nano)),
        money(sum_nano(|bill| bill.fees_nano)),
        format_signed_kwh(deviation),
        money(sum_nano(|bill| bill.grid_import_nano)),
        money(sum_nano(|bill| bill.feed_in_nano)),
        money(sum_nano(|bill| bill.total_nano)),
    ]);
    table::render(
        &[
            ("INTERVAL", Align::Right),
            ("SOLD (kWh)", Align::Right),
            ("BOUGHT (kWh)", Align::Right),
            ("TRADED", Align::Right),
            ("FEES", Align::Right),
            ("DEVIATION (kWh)", Align::Right),
            ("GRID IMPORT", Align::Right),
            ("FEED-IN", Align::Right),
            ("TOTAL", Align::Right),
        ],
        &rows,
    )
}

/// The start and end (ms since the epoch) of a day, YYYY-MM-DD, in the time
/// zone named `tz`: 23 or 25 hours on a day the clocks change.
fn local_day_ms(day: &str, tz: &str) -> Result<(u64, u64), CommandError> {
    let zone =
        gridshare_api::report::time_zone(tz).map_err(|error| CommandError::BadInput(error.to_string()))?;
    let bad = || CommandError::BadInput(format!("bad day `{day}`: use YYYY-MM-DD, e.g. 2026-11-21"));
    let date: jiff::civil::Date = day.parse().map_err(|_| bad())?;
    let (start, end) = gridshare_api::report::local_days(date, date, &zone).ok_or_else(bad)?;
    let ms = |time: jiff::Timestamp| u64::try_from(time.as_millisecond()).map_err(|_| bad());
    Ok((ms(start)?, ms(end)?))
}

/// `gridshare bill`: itemised bills of settled intervals.
pub fn bill(wallet: &Wallet, args: &BillArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    // Input is checked before anything is asked of the node.
    let day = args.day.as_deref().map(|day| local_day_ms(day, &args.tz)).transpose()?;
    let account_file = wallet.key_file(args.from.as_deref(), Role::Account, "--from")?;
    let account_key = account_file.public_key()?;
    let community = wallet.community()?;
    let genesis = &community.genesis;
    let range = match (&args.day, day) {
        (Some(day), Some((start_ms, end_ms))) => {
            if end_ms <= genesis.genesis_time_ms {
                return Err(CommandError::BadInput(format!(
                    "{day} is before the community began ({})",
                    format_utc(genesis.genesis_time_ms)
                )));
            }
            // The intervals that start on the day (as `gridshare report
            // --per day` counts them): one that straddles midnight is the
            // day's it starts on.
            let start_ms = start_ms.max(genesis.genesis_time_ms);
            let first = genesis.interval_at(start_ms);
            let first = if genesis.interval_start_ms(first) == Some(start_ms) { first } else { first + 1 };
            let last = genesis.interval_at(end_ms - 1);
            if first > last {
                return Err(CommandError::BadInput(format!("no interval starts on {day} in {}", args.tz)));
            }
            IntervalRange::Span { from: first, to: last }
        }
        _ => range_of(wallet, args.interval, None, None)?,
    };
    let last_settled = match range {
        IntervalRange::Recent => None,
        IntervalRange::Span { .. } => wallet.node().status()?.next_settlement_interval.checked_sub(1),
    };
    let bills = fetch_span(range, last_settled, |span| Ok(wallet.node().bills(&account_key, &span)?))?;
    if args.json {
        return write_json(out, &serde_json::json!({ "bills": bills }));
    }
    let currency = community.currency();
    match (range, &bills[..]) {
        (IntervalRange::Span { from, to }, []) if from == to => {
            let why = match wallet.node().interval(from).map(|interval| interval.status) {
                Ok(IntervalStatus::Settled) => {
                    "the account had no trade and no metered energy in it".to_string()
                }
                Err(_) => "it is not settled".to_string(),
                Ok(other) => format!(
                    "it is {}, not settled yet (it settles at {})",
                    other.as_str(),
                    settle_time(wallet, from)
                ),
            };
            writeln!(out, "No bill of {} for interval {from}: {why}.", account_file.name)?;
        }
        (IntervalRange::Recent, []) => {
            writeln!(out, "No bills of {} in the last settled intervals.", account_file.name)?;
        }
        (_, []) => writeln!(out, "No bills of {} in these intervals.", account_file.name)?,
        (IntervalRange::Span { from, to }, [bill]) if from == to => {
            let tariffs = wallet
                .node()
                .interval(bill.interval)
                .ok()
                .and_then(|interval| interval.settlement)
                .map(|settlement| settlement.tariffs);
            writeln!(
                out,
                "Bill of {} for interval {} (delivery {} to {}), settled at height {}",
                account_file.name,
                bill.interval,
                format_utc(genesis.interval_start_ms(bill.interval).unwrap_or(0)),
                format_utc(genesis.interval_end_ms(bill.interval).unwrap_or(0)),
                bill.height
            )?;
            writeln!(out)?;
            write!(out, "{}", bill_text(&bill.bill, tariffs.as_ref(), currency))?;
        }
        (_, bills) => {
            let count = u64::try_from(bills.len()).unwrap_or(u64::MAX);
            writeln!(
                out,
                "Bills of {} ({})",
                account_file.name,
                plural(count, "settled interval", "settled intervals")
            )?;
            writeln!(out)?;
            write!(out, "{}", bills_text(bills, currency))?;
        }
    }
    Ok(())
}

fn settle_time(wallet: &Wallet, interval: u64) -> String {
    wallet
        .community()
        .ok()
        .and_then(|community| community.genesis.settlement_ms(interval))
        .map_or_else(String::new, format_utc)
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn bills_are_itemised() {
        let bill = Bill {
            account: PublicKey([1; 32]),
            sold_wh: 0,
            bought_wh: 1_000,
            sold_nano: 0,
            bought_nano: -175_000_000,
            fees_nano: -20_000_000,
            metered_net_export_wh: -800,
            deviation_wh: 200,
            grid_import_wh: 0,
            grid_import_nano: 0,
            feed_in_wh: 200,
            feed_in_nano: 16_000_000,
            total_nano: -179_000_000,
            estimated_import_wh: 0,
            estimate_refund_wh: 0,
            estimate_refund_nano: 0,
        };
        expect_test::expect![[r#"
            ITEM                   ENERGY (kWh)  AT (EUR/kWh)      AMOUNT
            Sold (traded)                 0.000                  0.00 EUR
            Bought (traded)               1.000                -0.175 EUR
            Network fees                  1.000      0.020000   -0.02 EUR
            Contracted net export        -1.000
            Metered net export           -0.800
            Deviation                     0.200
            Grid import                   0.000                  0.00 EUR
            Feed-in                       0.200      0.080000   0.016 EUR
            Total                                              -0.179 EUR
        "#]]
        .assert_eq(&bill_text(&bill, None, "EUR"));
        let first = AccountBill { interval: 14, height: 31, bill };
        let mut second = first.clone();
        second.interval = 15;
        expect_test::expect![[r#"
            INTERVAL  SOLD (kWh)  BOUGHT (kWh)      TRADED       FEES  DEVIATION (kWh)  GRID IMPORT    FEED-IN       TOTAL
                  14       0.000         1.000  -0.175 EUR  -0.02 EUR            0.200     0.00 EUR  0.016 EUR  -0.179 EUR
                  15       0.000         1.000  -0.175 EUR  -0.02 EUR            0.200     0.00 EUR  0.016 EUR  -0.179 EUR
               total       0.000         2.000   -0.35 EUR  -0.04 EUR            0.400     0.00 EUR  0.032 EUR  -0.358 EUR
        "#]]
        .assert_eq(&bills_text(&[first, second], "EUR"));
    }

    #[test]
    fn estimates_and_refunds_are_their_own_lines() {
        // A meter without a reading for the interval, billed its 2041 Wh of
        // capacity, and an earlier gap trued up: 3882 Wh back at 0.08.
        let bill = Bill {
            account: PublicKey([1; 32]),
            sold_wh: 0,
            bought_wh: 0,
            sold_nano: 0,
            bought_nano: 0,
            fees_nano: 0,
            metered_net_export_wh: -2_041,
            deviation_wh: -2_041,
            grid_import_wh: 2_041,
            grid_import_nano: -612_300_000,
            feed_in_wh: 0,
            feed_in_nano: 0,
            total_nano: -301_740_000,
            estimated_import_wh: 2_041,
            estimate_refund_wh: 3_882,
            estimate_refund_nano: 310_560_000,
        };
        expect_test::expect![[r#"
            ITEM                   ENERGY (kWh)  AT (EUR/kWh)        AMOUNT
            Sold (traded)                 0.000                    0.00 EUR
            Bought (traded)               0.000                    0.00 EUR
            Network fees                  0.000                    0.00 EUR
            Contracted net export         0.000
            Metered net export           -2.041
            Estimated import              2.041
            Deviation                    -2.041
            Grid import                   2.041      0.300000   -0.6123 EUR
            Feed-in                       0.000                    0.00 EUR
            Estimate refund               3.882      0.080000   0.31056 EUR
            Total                                              -0.30174 EUR
        "#]]
        .assert_eq(&bill_text(&bill, None, "EUR"));
    }

    #[test]
    fn spans_are_fetched_in_bounded_requests() {
        let requests = std::cell::RefCell::new(Vec::new());
        let fetch = |span: SpanQuery| {
            let span = span.from_interval.zip(span.to_interval);
            requests.borrow_mut().push(span);
            Ok(vec![span])
        };
        // Clamped to the last interval the node can have, 96 at a time.
        let spans = fetch_span(IntervalRange::Span { from: 10, to: 300 }, Some(200), fetch).unwrap();
        assert_eq!(spans, vec![Some((10, 105)), Some((106, 200))]);
        assert_eq!(
            fetch_span(IntervalRange::Span { from: 7, to: 7 }, Some(9), fetch).unwrap(),
            vec![Some((7, 7))]
        );
        assert!(fetch_span(IntervalRange::Span { from: 10, to: 20 }, None, fetch).unwrap().is_empty());
        assert!(fetch_span(IntervalRange::Span { from: 10, to: 20 }, Some(9), fetch).unwrap().is_empty());
        assert_eq!(fetch_span(IntervalRange::Recent, None, fetch).unwrap(), vec![None]);
        let requests_before = requests.borrow().len();
        assert!(fetch_span(IntervalRange::Span { from: 0, to: u64::MAX }, Some(u64::MAX), fetch).is_err());
        assert_eq!(requests.borrow().len(), requests_before, "a refused range sends nothing");
    }
}
