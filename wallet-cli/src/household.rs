//! A household's commands: offer to buy or sell energy, list and cancel
//! offers, see the balance, trades and bills, and report meter readings.
//! Keys stay in the keystore: transactions are built and signed here and the
//! node only receives them.

use std::io::Write;

use gridshare_api::bounds::INTERVAL_SPAN_MAX;
use gridshare_api::client::Submission;
use gridshare_api::{
    Account, AccountBill, AccountTrade, Bill, IntervalStatus, Offer as OpenOffer, OffersQuery,
    Side as WireSide, SpanQuery, Tariffs,
};
use gridshare_ledger::Hash;
use gridshare_ledger::ids::{CommunityId, Keypair, PublicKey};
use gridshare_ledger::tx::{MeterReading, Offer, Side, SignedMeterReading, SignedTx, Tx};
use serde::Serialize;

use crate::amount::{
    BadAmount, format_kw, format_kwh, format_money, format_price, format_signed_kwh, parse_energy_wh,
    parse_price_micro_per_kwh,
};
use crate::keystore::{KeyFile, Role};
use crate::market_time::{
    DAY_MS, IntervalSpec, OFFER_MARGIN_MS, format_utc, latest_ended_interval, next_open_interval, now_ms,
    parse_day,
};
use crate::table::{self, Align};
use crate::wallet::{CommandError, Wallet, bad_input, plural, write_json};

/// At most this many requests of `INTERVAL_SPAN_MAX` intervals for one
/// listing of trades or bills.
pub const SPAN_REQUESTS_MAX: u64 = 100;

/// An offer's energy: positive.
pub fn parse_offer_energy(text: &str) -> Result<u64, BadAmount> {
    let energy_wh = parse_energy_wh(text)?;
    if energy_wh == 0 {
        return Err(BadAmount { text: text.to_string(), reason: "an offer is for at least 1 Wh".into() });
    }
    Ok(energy_wh)
}

/// `gridshare offer buy|sell`.
#[derive(Debug, Clone, clap::Args)]
pub struct OfferArgs {
    /// The energy: 2.5kWh, 2500Wh, or 2.5 (kWh, at most 3 decimals).
    #[arg(value_name = "ENERGY", value_parser = parse_offer_energy)]
    pub energy_wh: u64,
    /// Currency per kWh (at most 6 decimals): the most you pay, network fee
    /// included (buy), or the least you accept (sell).
    #[arg(long, value_name = "PRICE", value_parser = parse_price_micro_per_kwh)]
    pub price: u64,
    /// The delivery interval: next (the first whose gate closes at least 2 s
    /// from now, time for the offer to reach a block), +N (N after next), an
    /// interval number, or a UTC time such as 2026-11-21T17:20Z.
    #[arg(long, value_name = "INTERVAL", default_value = "next")]
    pub interval: IntervalSpec,
    /// The account key that offers (default: the only account key).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// The meter key that attests the offer (default: the account's meter
    /// whose key is in the keystore).
    #[arg(long, value_name = "NAME")]
    pub meter: Option<String>,
    /// Print JSON for programs.
    #[arg(long)]
    pub json: bool,
}

/// The terms of an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferTerms {
    pub interval: u64,
    pub side: Side,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
}

/// Signs an offer: the meter signs the attestation, a reading of its
/// registers, and the account signs the offer that embeds it.
pub fn build_offer(
    community: &CommunityId,
    account: &Keypair,
    meter: &Keypair,
    nonce: u64,
    terms: OfferTerms,
    reading: MeterReading,
) -> SignedTx {
    assert_eq!(reading.meter, meter.public(), "the attestation is the meter's own reading");
    let attestation = SignedMeterReading::sign(reading, meter, community);
    let offer = Offer {
        account: account.public(),
        nonce,
        interval: terms.interval,
        side: terms.side,
        energy_wh: terms.energy_wh,
        price_micro_per_kwh: terms.price_micro_per_kwh,
        attestation,
    };
    SignedTx::sign(Tx::Offer(offer), account, community)
}

fn side_name(side: Side) -> &'static str {
    WireSide::from(side).as_str()
}

/// The meter that attests an offer of `account`: the one named, else the
/// account's meter whose key is in the keystore, else the only meter key.
fn choose_meter(
    wallet: &Wallet,
    name: Option<&str>,
    account: Option<&Account>,
) -> Result<KeyFile, CommandError> {
    if name.is_some() {
        return wallet.key_file(name, Role::Meter, "--meter");
    }
    let Some(account) = account.filter(|account| !account.meters.is_empty()) else {
        return wallet.key_file(None, Role::Meter, "--meter");
    };
    let keys = wallet.keys()?;
    let mut owned = keys
        .iter()
        .filter(|file| account.meters.iter().any(|meter| meter.meter.to_string() == file.public_key));
    match owned.next() {
        Some(file) => Ok(file.clone()),
        None => Err(CommandError::BadInput(format!(
            "none of the account's meters ({}) has its key in the keystore: import one with `gridshare keys import NAME --role meter`, or name one with --meter NAME",
            account.meters.iter().map(|meter| meter.meter.to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The `--json` form of a submitted offer.
#[derive(Debug, Serialize)]
struct OfferJsonOut {
    id: String,
    status: &'static str,
    account: String,
    meter: String,
    interval: u64,
    side: &'static str,
    energy_wh: u64,
    price_micro_per_kwh: u64,
    gate_closure_ms: u64,
    nonce: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// `gridshare offer buy|sell`: builds, signs and submits an offer.
pub fn offer(wallet: &Wallet, side: Side, args: &OfferArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let account_file = wallet.key_file(args.from.as_deref(), Role::Account, "--from")?;
    let account_key = account_file.public_key()?;
    let community = wallet.community()?;
    let genesis = &community.genesis;
    let now = now_ms();
    let interval = args.interval.resolve_for_offer(genesis, now).map_err(bad_input)?;
    let gate_closure_ms = genesis.gate_closure_ms(interval).ok_or_else(|| bad_input("no such interval"))?;
    if gate_closure_ms <= now {
        return Err(CommandError::BadInput(format!(
            "interval {interval} already closed for offers at {} (its gate closure): offer for a later one, e.g. --interval next (interval {})",
            format_utc(gate_closure_ms),
            next_open_interval(genesis, now.saturating_add(OFFER_MARGIN_MS))
        )));
    }
    let market = &genesis.market;
    let currency = community.currency();
    if !(market.price_floor_micro_per_kwh..=market.price_cap_micro_per_kwh).contains(&args.price) {
        return Err(CommandError::BadInput(format!(
            "the price {} {currency}/kWh is outside this market's floor {} and cap {} {currency}/kWh",
            format_price(args.price),
            format_price(market.price_floor_micro_per_kwh),
            format_price(market.price_cap_micro_per_kwh)
        )));
    }
    let horizon_interval = genesis.interval_at(now).saturating_add(market.offer_horizon_intervals);
    if interval > horizon_interval {
        return Err(CommandError::BadInput(format!(
            "interval {interval} is too far ahead: offers are for at most {} intervals ahead (up to interval {horizon_interval})",
            market.offer_horizon_intervals
        )));
    }
    // The attestation is of the latest ended interval; admission takes it
    // only if at most `attestation_max_age_intervals` older than the offer.
    let reading_interval = latest_ended_interval(genesis, now).unwrap_or(0).min(interval);
    let max_age = market.attestation_max_age_intervals;
    if interval - reading_interval > max_age {
        return Err(CommandError::BadInput(format!(
            "interval {interval} is too far ahead: an offer's meter attestation (of interval {reading_interval}, the latest ended) may be at most {max_age} intervals older than the offer"
        )));
    }
    let account_json = wallet.node().account(&account_key)?;
    let meter_file = choose_meter(wallet, args.meter.as_deref(), account_json.as_ref())?;
    let meter_key = meter_file.public_key()?;
    // Its registers are the meter's last reading (zeros before the first):
    // admission asks only for the signature of one of the account's meters.
    let (import_wh_total, export_wh_total) = wallet
        .node()
        .meter(&meter_key)?
        .and_then(|meter| meter.last_reading)
        .map_or((0, 0), |reading| (reading.import_wh_total, reading.export_wh_total));
    let reading =
        MeterReading { meter: meter_key, interval: reading_interval, import_wh_total, export_wh_total };
    let terms = OfferTerms { interval, side, energy_wh: args.energy_wh, price_micro_per_kwh: args.price };
    let account = wallet.unlock(&account_file)?;
    let meter = wallet.unlock(&meter_file)?;
    let community_id = genesis.community_id;
    let submitted = wallet.submit_with_nonce(&account, |nonce| {
        build_offer(&community_id, &account, &meter, nonce, terms, reading).tx
    })?;
    let nonce = submitted.tx.tx.nonce().unwrap_or(0);
    if args.json {
        let (reason, message) = match &submitted.outcome {
            Submission::Admitted { .. } => (None, None),
            Submission::Refused { message, .. } => {
                (submitted.outcome.refusal_code().map(str::to_string), Some(message.clone()))
            }
        };
        write_json(
            out,
            &OfferJsonOut {
                id: submitted.id.to_string(),
                status: if submitted.admitted() { "admitted" } else { "rejected" },
                account: account_key.to_string(),
                meter: meter_key.to_string(),
                interval,
                side: side_name(side),
                energy_wh: args.energy_wh,
                price_micro_per_kwh: args.price,
                gate_closure_ms,
                nonce,
                reason,
                message,
            },
        )?;
    }
    if !submitted.admitted() {
        return Err(wallet.refusal(&format!("the offer {}", submitted.id), &submitted));
    }
    if !args.json {
        let start_ms = genesis.interval_start_ms(interval).unwrap_or(0);
        let end_ms = genesis.interval_end_ms(interval).unwrap_or(0);
        writeln!(out, "Offer {}", submitted.id)?;
        writeln!(
            out,
            "  {} {} kWh at {} {currency}/kWh in interval {interval}",
            side_name(side),
            format_kwh(args.energy_wh),
            format_price(args.price)
        )?;
        writeln!(out, "  delivery {} to {}", format_utc(start_ms), format_utc(end_ms))?;
        writeln!(out, "  gate closure {}", format_utc(gate_closure_ms))?;
        if side == Side::Buy {
            let reserved = i128::from(args.energy_wh) * i128::from(args.price);
            writeln!(out, "  reserves {} until the interval clears", format_money(reserved, currency))?;
        }
        writeln!(
            out,
            "  from account {}, attested by meter {} (interval {reading_interval}: import {} kWh, export {} kWh)",
            account_file.name,
            meter_file.name,
            format_kwh(import_wh_total),
            format_kwh(export_wh_total)
        )?;
        writeln!(out, "Admitted by the node: it waits for the next block.")?;
    }
    Ok(())
}

/// `gridshare offers`.
#[derive(Debug, Clone, clap::Args)]
pub struct OffersArgs {
    /// The account (default: the only account key).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// Only offers for this interval.
    #[arg(long, value_name = "INTERVAL")]
    pub interval: Option<IntervalSpec>,
    #[arg(long)]
    pub json: bool,
}

/// The table of open offers.
pub fn offers_text(offers: &[OpenOffer], currency: &str, gate_ms: impl Fn(u64) -> Option<u64>) -> String {
    if offers.is_empty() {
        return "No open offers.\n".to_string();
    }
    let rows: Vec<Vec<String>> = offers
        .iter()
        .map(|offer| {
            vec![
                offer.id.to_string(),
                offer.interval.to_string(),
                offer.side.to_string(),
                format_kwh(offer.energy_wh),
                format_price(offer.price_micro_per_kwh),
                format_money(offer.reserved_nano, currency),
                gate_ms(offer.interval).map_or_else(String::new, format_utc),
            ]
        })
        .collect();
    let price_title = format!("PRICE ({currency}/kWh)");
    table::render(
        &[
            ("ID", Align::Left),
            ("INTERVAL", Align::Right),
            ("SIDE", Align::Left),
            ("ENERGY (kWh)", Align::Right),
            (&price_title, Align::Right),
            ("RESERVED", Align::Right),
            ("GATE CLOSURE", Align::Left),
        ],
        &rows,
    )
}

/// `gridshare offers`: the account's open offers.
pub fn offers(wallet: &Wallet, args: &OffersArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let account_file = wallet.key_file(args.from.as_deref(), Role::Account, "--from")?;
    let account_key = account_file.public_key()?;
    let community = wallet.community()?;
    let interval = match args.interval {
        Some(spec) => Some(spec.resolve(&community.genesis, now_ms()).map_err(bad_input)?),
        None => None,
    };
    let offers = wallet.node().offers(&OffersQuery { account: Some(account_key), interval })?;
    if args.json {
        return write_json(out, &serde_json::json!({ "offers": offers }));
    }
    let genesis = &community.genesis;
    write!(
        out,
        "{}",
        offers_text(&offers, community.currency(), |interval| genesis.gate_closure_ms(interval))
    )?;
    Ok(())
}

/// `gridshare cancel`.
#[derive(Debug, Clone, clap::Args)]
pub struct CancelArgs {
    /// The offer's id (64 hex digits, as `gridshare offers` lists it).
    #[arg(value_name = "OFFER_ID")]
    pub offer_id: Hash,
    /// The account that made the offer (default: the only account key).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// `gridshare cancel`: withdraws an open offer before its gate closure.
pub fn cancel(wallet: &Wallet, args: &CancelArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let account_file = wallet.key_file(args.from.as_deref(), Role::Account, "--from")?;
    let account_key = account_file.public_key()?;
    wallet.community()?;
    let account = wallet.unlock(&account_file)?;
    let offer_id = args.offer_id;
    let submitted = wallet.submit_with_nonce(&account, |nonce| Tx::CancelOffer {
        account: account_key,
        nonce,
        offer_id,
    })?;
    if args.json {
        let mut json = submitted.to_json();
        json["offer"] = serde_json::Value::String(offer_id.to_string());
        write_json(out, &json)?;
    }
    if !submitted.admitted() {
        return Err(wallet.refusal(&format!("the cancellation of offer {offer_id}"), &submitted));
    }
    if !args.json {
        writeln!(out, "Cancellation of offer {offer_id} admitted (transaction {}).", submitted.id)?;
        writeln!(out, "The offer is withdrawn and its reservation released in the next block.")?;
    }
    Ok(())
}

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
    /// One interval: a number, next, +N or a UTC time.
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
    /// One interval, itemised: a number, or a UTC time in it.
    #[arg(long, value_name = "INTERVAL", conflicts_with = "day")]
    pub interval: Option<IntervalSpec>,
    /// Every settled interval of a UTC day, YYYY-MM-DD.
    #[arg(long, value_name = "DAY")]
    pub day: Option<String>,
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

/// `gridshare bill`: itemised bills of settled intervals.
pub fn bill(wallet: &Wallet, args: &BillArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    // Input is checked before anything is asked of the node.
    let day_start_ms = args.day.as_deref().map(parse_day).transpose().map_err(bad_input)?;
    let account_file = wallet.key_file(args.from.as_deref(), Role::Account, "--from")?;
    let account_key = account_file.public_key()?;
    let community = wallet.community()?;
    let genesis = &community.genesis;
    let range = match (&args.day, day_start_ms) {
        (Some(day), Some(start_ms)) => {
            let end_ms = start_ms + DAY_MS - 1;
            if end_ms < genesis.genesis_time_ms {
                return Err(CommandError::BadInput(format!(
                    "{day} is before the community began ({})",
                    format_utc(genesis.genesis_time_ms)
                )));
            }
            IntervalRange::Span { from: genesis.interval_at(start_ms), to: genesis.interval_at(end_ms) }
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

/// `gridshare meter report`.
#[derive(Debug, Clone, clap::Args)]
pub struct MeterReportArgs {
    /// The meter key that signs the reading.
    #[arg(long, value_name = "NAME")]
    pub meter: String,
    /// The import register: energy taken from the grid since the meter was
    /// installed, in kWh (at most 3 decimals).
    #[arg(long, value_name = "KWH", value_parser = parse_energy_wh)]
    pub import_kwh: u64,
    /// The export register: energy fed into the grid since installation, in kWh.
    #[arg(long, value_name = "KWH", value_parser = parse_energy_wh)]
    pub export_kwh: u64,
    /// The interval at whose end the registers were read (default: the
    /// latest ended interval).
    #[arg(long, value_name = "INTERVAL")]
    pub interval: Option<IntervalSpec>,
    #[arg(long)]
    pub json: bool,
}

/// `gridshare meter report`: signs and submits a cumulative reading.
pub fn meter_report(
    wallet: &Wallet,
    args: &MeterReportArgs,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let meter_file = wallet.key_file(Some(&args.meter), Role::Meter, "--meter")?;
    let meter_key = meter_file.public_key()?;
    let community = wallet.community()?;
    let genesis = &community.genesis;
    let now = now_ms();
    let interval = match args.interval {
        Some(spec) => spec.resolve(genesis, now).map_err(bad_input)?,
        None => latest_ended_interval(genesis, now).ok_or_else(|| {
            CommandError::BadInput(format!(
                "no interval has ended yet: interval 0 ends at {}",
                format_utc(genesis.interval_end_ms(0).unwrap_or(0))
            ))
        })?,
    };
    let end_ms = genesis.interval_end_ms(interval).ok_or_else(|| bad_input("no such interval"))?;
    if end_ms > now {
        return Err(CommandError::BadInput(format!(
            "interval {interval} has not ended yet (it ends at {}): a reading is for an interval that has ended",
            format_utc(end_ms)
        )));
    }
    let reading = MeterReading {
        meter: meter_key,
        interval,
        import_wh_total: args.import_kwh,
        export_wh_total: args.export_kwh,
    };
    let meter = wallet.unlock(&meter_file)?;
    let submitted =
        wallet.submit(SignedTx::sign(Tx::MeterReading(reading), &meter, &genesis.community_id))?;
    if args.json {
        let mut json = submitted.to_json();
        json["meter"] = serde_json::Value::String(meter_key.to_string());
        json["interval"] = interval.into();
        json["import_wh_total"] = args.import_kwh.into();
        json["export_wh_total"] = args.export_kwh.into();
        write_json(out, &json)?;
    }
    if !submitted.admitted() {
        return Err(wallet.refusal(&format!("the reading of meter {}", meter_file.name), &submitted));
    }
    if !args.json {
        writeln!(
            out,
            "Reading of meter {} for interval {interval} (ended {}): import {} kWh, export {} kWh",
            meter_file.name,
            format_utc(end_ms),
            format_kwh(args.import_kwh),
            format_kwh(args.export_kwh)
        )?;
        writeln!(out, "Admitted by the node as transaction {}: it waits for the next block.", submitted.id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use gridshare_ledger::testkit::derived_key;

    use super::*;

    #[test]
    fn a_built_offer_verifies_and_says_what_was_asked() {
        let community = CommunityId([5; 32]);
        let (account, meter) = (derived_key(1, 3, 0), derived_key(1, 4, 0));
        let terms =
            OfferTerms { interval: 42, side: Side::Sell, energy_wh: 2_500, price_micro_per_kwh: 110_000 };
        let reading = MeterReading {
            meter: meter.public(),
            interval: 40,
            import_wh_total: 800,
            export_wh_total: 1_200,
        };
        let signed = build_offer(&community, &account, &meter, 7, terms, reading);
        assert_eq!(signed.verify(&community), Ok(()));
        assert!(signed.verify(&CommunityId([6; 32])).is_err(), "signed for one community only");
        let Tx::Offer(offer) = &signed.tx else { panic!("not an offer: {signed:?}") };
        assert_eq!(offer.account, account.public());
        assert_eq!(offer.nonce, 7);
        assert_eq!(
            (offer.interval, offer.side, offer.energy_wh, offer.price_micro_per_kwh),
            (42, Side::Sell, 2_500, 110_000)
        );
        assert_eq!(offer.attestation.reading, reading);
        assert_eq!(offer.attestation.verify(&community), Ok(()));
        assert_eq!(signed.tx.signer(), account.public());
        // The id is the offer's: the hash of the unsigned body.
        assert_eq!(signed.id(&community), Tx::Offer(offer.clone()).id(&community));
    }

    #[test]
    fn offer_energy_is_positive() {
        assert_eq!(parse_offer_energy("1Wh"), Ok(1));
        assert_eq!(
            parse_offer_energy("0").unwrap_err().to_string(),
            "bad amount `0`: an offer is for at least 1 Wh"
        );
    }

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
