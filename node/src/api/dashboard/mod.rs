//! The dashboard (docs/API.md, "The dashboard"): read-only pages the node
//! serves at `/` on its API address, for the community (prices and volumes
//! over time, an interval's supply and demand curves, savings), a household
//! (its offers, trades and bills against grid-only prices), the operator
//! (readiness, validators, peers, mempool, evidence) and the regulator (the
//! audit of this node's ledger, the export). Server-rendered HTML with SVG
//! charts, one stylesheet and one small script from the node itself (no
//! CDN, no build step), so it works offline on a LAN. Every page reads the
//! node through the same loaders as the JSON API, so a page and
//! `GET /v1/...` never disagree. Pages answer GET only; an unknown account
//! or interval is a page with a 404 status.

mod chart;
mod html;

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use gridshare_api::decimal::{format_kwh, format_money, format_price};
use gridshare_api::report::{Per, Report, ReportFormat, ReportKind, Request, time_zone};
use gridshare_api::{ErrorCode, NotReady, OffersQuery, Role, SpanQuery, SyncStatus};
use gridshare_ledger::audit::Auditor;
use gridshare_ledger::genesis::grid_only_nano;
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::store::Store;

use self::chart::{Mark, Series};
use self::html::{Cell, Page, Text, View, account_link, facts, interval_link, table, time};
use super::accounts::{account_of, offers_of};
use super::blocks::evidence_of;
use super::intervals::{account_trades, clearings_of, interval_of, settlements_of};
use super::status::{health_of, status_of};
use super::{ApiError, off_loop, parse_key, query, read, storage};
use crate::node::Client;

/// Intervals the community's and a household's charts show.
const CHART_INTERVALS: u64 = 48;
/// Rows of the community's table of recent clearings.
const RECENT_ROWS: usize = 12;
/// Accounts the household view lists to pick from.
const ACCOUNTS_LISTED: usize = 100;
/// Blocks the operator view looks back through for each validator's last
/// proposal.
const PROPOSALS_LOOKBACK_BLOCKS: u64 = 256;

/// What every page answer carries: the page may not be framed, run or load
/// anything that is not the node's own, or send a referrer.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One audit or report at a time for the whole node: each reads the chain
/// (an audit re-executes all of it), so a page asked for many times must
/// not run many.
static LEDGER_READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
/// The largest report the node writes; a wider one is refused with a
/// request to narrow the range (`gridshare report` over the export has no
/// such bound).
const REPORT_BYTES_MAX: usize = 64 << 20;

/// The dashboard's routes, for the API's router.
pub(super) fn routes() -> Router<Client> {
    Router::new()
        .route("/", get(community))
        .route("/intervals/{interval}", get(interval))
        .route("/accounts", get(households))
        .route("/accounts/{key}", get(household))
        .route("/operator", get(operator))
        .route("/regulator", get(regulator))
        .route("/regulator/audit", get(audit))
        .route("/regulator/report", get(report))
        .route("/assets/dashboard.css", get(|| asset("text/css", include_str!("assets/dashboard.css"))))
        .route("/assets/dashboard.js", get(|| asset("text/javascript", include_str!("assets/dashboard.js"))))
        .layer(axum::middleware::map_response(|mut response: Response| async move {
            let headers = response.headers_mut();
            headers
                .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// A page, or the error page of why not: the API error's status, message
/// and code.
fn answer(community: &str, page: Result<Page, ApiError>) -> Response {
    let (status, html) = match page {
        Ok(page) => (StatusCode::OK, page.finish()),
        Err(error) => {
            let title = match error.status {
                StatusCode::NOT_FOUND => "Not found",
                status if status.is_client_error() => "Not understood",
                _ => "Not available",
            };
            let mut page = Page::new(community, title, View::Community);
            page.push(format!(
                "<p class=\"error\">{}</p><p class=\"muted\">Status {}, code <code>{}</code>. \
                 <a href=\"/\">Back to the community</a>.</p>",
                Text(&error.body.message),
                error.status.as_u16(),
                error.body.code
            ));
            (error.status, page.finish())
        }
    };
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// Money for people in the community's currency.
fn money(client: &Client, nano: i128) -> String {
    format_money(nano, &client.genesis.currency)
}

/// A price per kWh for people, or a dash.
fn price(client: &Client, micro: Option<u64>) -> String {
    match micro {
        Some(micro) => format!("{} {}/kWh", format_price(micro), client.genesis.currency),
        None => "–".to_string(),
    }
}

// ---- Community ------------------------------------------------------------

async fn community(State(client): State<Client>) -> Response {
    answer(&client.genesis.name, community_page(&client).await)
}

async fn community_page(client: &Client) -> Result<Page, ApiError> {
    let status = status_of(client).await?;
    let recent = |next: u64| SpanQuery {
        from_interval: Some(next.saturating_sub(CHART_INTERVALS)),
        to_interval: next.checked_sub(1),
    };
    let clearings = clearings_of(client, recent(status.next_clearing_interval)).await?;
    let settlements = settlements_of(client, recent(status.next_settlement_interval)).await?;
    let zones = read(client, |view| {
        let mut zones: BTreeMap<String, u64> = BTreeMap::new();
        for meter in view.state.meters.values() {
            *zones.entry(meter.zone.clone()).or_default() += 1;
        }
        Ok(zones)
    })
    .await?;

    let mut page = Page::new(&client.genesis.name, "The community's market", View::Community)
        .reload_on("clearing settlement");
    let traded_wh: u64 = clearings.iter().map(|(_, _, clearing)| clearing.volume_wh).sum();
    let (bills_nano, grid_only): (i128, i128) = settlements
        .iter()
        .flat_map(|(_, _, settlement)| settlement.bills.iter().map(move |bill| (settlement, bill)))
        .map(|(settlement, bill)| {
            let tariffs = &settlement.tariffs;
            (
                bill.total_nano,
                grid_only_nano(
                    bill.metered_net_export_wh,
                    tariffs.grid_feed_in_micro_per_kwh,
                    tariffs.grid_import_micro_per_kwh,
                ),
            )
        })
        .fold((0, 0), |(bills, grid), (bill, alone)| (bills + bill, grid + alone));
    page.push(facts(
        "The market now",
        &[
            ("Interval now", interval_link(status.current_interval)),
            ("Next to clear", interval_link(status.next_clearing_interval)),
            ("Intervals cleared", status.intervals_cleared.to_string()),
            ("Households", status.accounts.to_string()),
            (
                "Traded, last intervals",
                format!("{} kWh in {} intervals", format_kwh(traded_wh), clearings.len()),
            ),
            (
                "Saved against grid-only prices",
                format!(
                    "<span data-test=\"saved\">{}</span> over {} settled intervals",
                    Text(&money(client, bills_nano - grid_only)),
                    settlements.len()
                ),
            ),
        ],
    ));

    let intervals: Vec<u64> = clearings.iter().map(|(interval, _, _)| *interval).collect();
    page.push("<section aria-labelledby=\"prices\"><h2 id=\"prices\">Prices and volumes</h2>");
    if clearings.is_empty() {
        page.push("<p class=\"empty\">No interval has cleared yet.</p>");
    } else {
        let prices =
            clearings.iter().map(|(_, _, c)| c.clearing_price_micro_per_kwh.map(i128::from)).collect();
        let volumes = clearings.iter().map(|(_, _, c)| Some(i128::from(c.volume_wh))).collect();
        page.push(chart::over_intervals(
            "Clearing price per interval",
            &intervals,
            &[Series { name: "Clearing price per kWh", mark: Mark::Line, class: "a", values: prices }],
            &chart::price_label,
        ));
        page.push(chart::over_intervals(
            "Energy traded per interval",
            &intervals,
            &[Series { name: "Energy traded (kWh)", mark: Mark::Bars, class: "b", values: volumes }],
            &|wh| format!("{} kWh", format_kwh(u64::try_from(wh).unwrap_or_default())),
        ));
    }
    let rows: Vec<Vec<Cell>> = clearings
        .iter()
        .rev()
        .take(RECENT_ROWS)
        .map(|(interval, height, clearing)| {
            vec![
                Cell::html(interval_link(*interval)),
                Cell::html(time(client.genesis.interval_start_ms(*interval).unwrap_or_default())),
                Cell::number(price(client, clearing.clearing_price_micro_per_kwh)),
                Cell::number(format_kwh(clearing.volume_wh)),
                Cell::number(clearing.trades.len().to_string()),
                Cell::number(clearing.offers.to_string()),
                Cell::number(height.to_string()),
            ]
        })
        .collect();
    page.push(table(
        "Recent clearings, latest first",
        &["Interval", "Starts", "Price", "Traded (kWh)", "Trades", "Offers", "Block"],
        &rows,
        "Nothing cleared yet.",
    ));
    page.push("</section>");

    if !settlements.is_empty() {
        let intervals: Vec<u64> = settlements.iter().map(|(interval, _, _)| *interval).collect();
        let saved = settlements
            .iter()
            .map(|(_, _, settlement)| {
                let tariffs = &settlement.tariffs;
                Some(
                    settlement
                        .bills
                        .iter()
                        .map(|bill| {
                            bill.total_nano
                                - grid_only_nano(
                                    bill.metered_net_export_wh,
                                    tariffs.grid_feed_in_micro_per_kwh,
                                    tariffs.grid_import_micro_per_kwh,
                                )
                        })
                        .sum(),
                )
            })
            .collect();
        page.push("<section aria-labelledby=\"savings\"><h2 id=\"savings\">Savings</h2>");
        page.push(chart::over_intervals(
            "What the community saved against grid-only prices, per settled interval",
            &intervals,
            &[Series { name: "Saved", mark: Mark::Bars, class: "a", values: saved }],
            &|nano| money(client, nano),
        ));
        page.push("</section>");
    }

    page.push("<section aria-labelledby=\"zones\"><h2 id=\"zones\">Zones</h2>");
    let rows: Vec<Vec<Cell>> =
        zones.iter().map(|(zone, meters)| vec![Cell::text(zone), Cell::number(meters.to_string())]).collect();
    page.push(table("Meters per zone", &["Zone", "Meters"], &rows, "No meter is registered yet."));
    page.push("</section>");
    page.push(account_form());
    Ok(page)
}

/// The form that opens a household's page by its account key.
fn account_form() -> &'static str {
    "<section aria-labelledby=\"find\"><h2 id=\"find\">A household</h2>\
     <form action=\"/accounts\" method=\"get\" class=\"find\"><label for=\"key\">Account key \
     (64 hex digits)</label><input id=\"key\" name=\"key\" required minlength=\"64\" maxlength=\"64\" \
     pattern=\"[0-9a-fA-F]{64}\" autocomplete=\"off\" spellcheck=\"false\"><button type=\"submit\">Show \
     the household</button></form></section>"
}

// ---- Interval -------------------------------------------------------------

async fn interval(State(client): State<Client>, Path(interval): Path<String>) -> Response {
    answer(&client.genesis.name, interval_page(&client, &interval).await)
}

async fn interval_page(client: &Client, text: &str) -> Result<Page, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("there is no interval `{text}` to show"));
    let interval: u64 = text.parse().map_err(|_| not_found())?;
    let now = status_of(client).await?.current_interval;
    if interval > now.saturating_add(client.genesis.market.offer_horizon_intervals) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "interval {interval} is not open for offers yet: the market takes offers up to interval {}",
                now.saturating_add(client.genesis.market.offer_horizon_intervals)
            ),
        ));
    }
    let body = interval_of(client, interval).await.map_err(|error| match error.body.code {
        ErrorCode::BadInterval => not_found(),
        _ => error,
    })?;
    let mut page = Page::new(&client.genesis.name, format!("Interval {interval}"), View::Community)
        .reload_on("clearing settlement");
    let clearing = body.clearing.as_ref().map(|clearing| &clearing.receipt);
    page.push(format!(
        "<nav aria-label=\"Intervals\" class=\"pager\"><a href=\"/intervals/{}\" rel=\"prev\">← Interval {}</a> \
         <a href=\"/intervals/{}\" rel=\"next\">Interval {} →</a></nav>",
        interval.saturating_sub(1),
        interval.saturating_sub(1),
        interval.saturating_add(1),
        interval.saturating_add(1)
    ));
    page.push(facts(
        "The interval",
        &[
            ("Status", format!("<span data-test=\"status\">{}</span>", body.status.as_str())),
            ("Delivery", format!("{} to {}", time(body.start_ms), time(body.end_ms))),
            ("Gate closure", time(body.gate_closure_ms)),
            ("Settlement", time(body.settlement_ms)),
            (
                "Clearing price",
                format!(
                    "<span data-test=\"price\">{}</span>",
                    Text(&price(client, clearing.and_then(|clearing| clearing.clearing_price_micro_per_kwh)))
                ),
            ),
            (
                "Traded",
                format!("{} kWh", format_kwh(clearing.map(|clearing| clearing.volume_wh).unwrap_or(0))),
            ),
            (
                "Grid tariffs",
                Text(&format!(
                    "import {}, feed-in {}, network fee {}",
                    price(client, Some(body.tariffs.grid_import_micro_per_kwh)),
                    price(client, Some(body.tariffs.grid_feed_in_micro_per_kwh)),
                    price(client, Some(body.tariffs.network_fee_micro_per_kwh))
                ))
                .to_string(),
            ),
        ],
    ));
    page.push("<section aria-labelledby=\"curves\"><h2 id=\"curves\">Supply and demand</h2>");
    if body.book.is_empty() {
        page.push("<p class=\"empty\">No offers in this interval's book.</p>");
    } else {
        page.push(chart::curves(
            &body.book,
            clearing.and_then(|clearing| clearing.clearing_price_micro_per_kwh),
        ));
    }
    let rows: Vec<Vec<Cell>> = body
        .book
        .iter()
        .map(|entry| {
            vec![
                Cell::text(entry.side.as_str()),
                Cell::html(account_link(&entry.account)),
                Cell::number(format_kwh(entry.energy_wh)),
                Cell::number(price(client, Some(entry.price_micro_per_kwh))),
            ]
        })
        .collect();
    let caption = if body.book_truncated { "The book (the first offers only)" } else { "The book" };
    page.push(table(caption, &["Side", "Account", "Energy (kWh)", "Limit price"], &rows, ""));
    page.push("</section><section aria-labelledby=\"trades\"><h2 id=\"trades\">Trades</h2>");
    let rows: Vec<Vec<Cell>> = clearing
        .map(|clearing| clearing.trades.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|trade| {
            vec![
                Cell::html(account_link(&trade.seller)),
                Cell::html(account_link(&trade.buyer)),
                Cell::number(format_kwh(trade.energy_wh)),
                Cell::number(price(client, Some(trade.price_micro_per_kwh))),
            ]
        })
        .collect();
    let none = if clearing.is_some() { "Nothing traded in this interval." } else { "Not cleared yet." };
    page.push(table("Trades", &["Seller", "Buyer", "Energy (kWh)", "Price"], &rows, none));
    page.push("</section>");
    Ok(page)
}

// ---- Household ------------------------------------------------------------

/// `/accounts`: the form, the registered accounts to pick from, or (with
/// `?key=`) the way to that account's page.
async fn households(State(client): State<Client>, RawQuery(raw): RawQuery) -> Response {
    let key = match query(raw, &["key"]) {
        Ok(parameters) => parameters.get("key").cloned(),
        Err(error) => return answer(&client.genesis.name, Err(error)),
    };
    if let Some(key) = key {
        return match parse_key(key.trim()) {
            Ok(key) => Redirect::to(&format!("/accounts/{key}")).into_response(),
            Err(error) => answer(&client.genesis.name, Err(error)),
        };
    }
    let accounts = read(&client, |view| {
        Ok(view.state.accounts.keys().take(ACCOUNTS_LISTED).copied().collect::<Vec<PublicKey>>())
    })
    .await;
    let page = accounts.map(|accounts| {
        let mut page = Page::new(&client.genesis.name, "Households", View::Household);
        page.push(account_form());
        let rows: Vec<Vec<Cell>> = accounts.iter().map(|key| vec![Cell::html(account_link(key))]).collect();
        page.push(table(
            "Registered accounts (the first 100)",
            &["Account"],
            &rows,
            "No account is registered yet.",
        ));
        page
    });
    answer(&client.genesis.name, page)
}

async fn household(State(client): State<Client>, Path(key): Path<String>) -> Response {
    let page = match parse_key(&key) {
        Ok(key) => household_page(&client, key).await,
        Err(_) => Err(ApiError::new(ErrorCode::NotFound, format!("`{key}` is not an account key"))),
    };
    answer(&client.genesis.name, page)
}

async fn household_page(client: &Client, key: PublicKey) -> Result<Page, ApiError> {
    let account = account_of(client, key).await?;
    let offers = offers_of(client, OffersQuery { account: Some(key), interval: None }).await?;
    let status = status_of(client).await?;
    let recent = |next: u64| SpanQuery {
        from_interval: Some(next.saturating_sub(CHART_INTERVALS)),
        to_interval: next.checked_sub(1),
    };
    let trades = account_trades(&clearings_of(client, recent(status.next_clearing_interval)).await?, &key);
    let span = recent(status.next_settlement_interval);
    let bills: Vec<(u64, i128, i128, u64, u64)> = settlements_of(client, span)
        .await?
        .iter()
        .filter_map(|(interval, _, settlement)| {
            let bill = settlement.bills.iter().find(|bill| bill.account == key)?;
            let tariffs = &settlement.tariffs;
            let alone = grid_only_nano(
                bill.metered_net_export_wh,
                tariffs.grid_feed_in_micro_per_kwh,
                tariffs.grid_import_micro_per_kwh,
            );
            Some((*interval, bill.total_nano, alone, bill.sold_wh, bill.bought_wh))
        })
        .collect();
    let mut page = Page::new(&client.genesis.name, "A household", View::Household).reload_on("settlement");
    let (billed, alone): (i128, i128) = bills.iter().fold((0, 0), |(b, g), bill| (b + bill.1, g + bill.2));
    page.push(facts(
        "The account",
        &[
            ("Account", format!("<code class=\"key\">{key}</code>")),
            ("Balance", Text(&money(client, account.balance_nano)).to_string()),
            ("Available", Text(&money(client, account.available_nano)).to_string()),
            ("Open offers", account.open_offers.to_string()),
            ("Sold locally", format!("{} kWh", format_kwh(bills.iter().map(|bill| bill.3).sum()))),
            ("Bought locally", format!("{} kWh", format_kwh(bills.iter().map(|bill| bill.4).sum()))),
            (
                "Saved against grid-only prices",
                format!(
                    "<span data-test=\"saved\" data-from-interval=\"{}\" data-to-interval=\"{}\">{}</span> \
                     over {} settled intervals",
                    span.from_interval.unwrap_or_default(),
                    span.to_interval.map_or(String::new(), |to| to.to_string()),
                    Text(&money(client, billed - alone)),
                    bills.len()
                ),
            ),
        ],
    ));
    page.push("<section aria-labelledby=\"bills\"><h2 id=\"bills\">Bills against grid-only prices</h2>");
    if !bills.is_empty() {
        let intervals: Vec<u64> = bills.iter().map(|bill| bill.0).collect();
        page.push(chart::over_intervals(
            "The household's bill and what the grid alone would have come to, per settled interval",
            &intervals,
            &[
                Series {
                    name: "Bill (money in, or out when negative)",
                    mark: Mark::Line,
                    class: "a",
                    values: bills.iter().map(|bill| Some(bill.1)).collect(),
                },
                Series {
                    name: "The grid alone",
                    mark: Mark::Line,
                    class: "b",
                    values: bills.iter().map(|bill| Some(bill.2)).collect(),
                },
            ],
            &|nano| money(client, nano),
        ));
    }
    let rows: Vec<Vec<Cell>> = bills
        .iter()
        .rev()
        .map(|(interval, total, alone, sold, bought)| {
            vec![
                Cell::html(interval_link(*interval)),
                Cell::number(format_kwh(*sold)),
                Cell::number(format_kwh(*bought)),
                Cell::number(money(client, *total)),
                Cell::number(money(client, *alone)),
                Cell::number(money(client, total - alone)),
            ]
        })
        .collect();
    page.push(table(
        "Bills, latest first",
        &["Interval", "Sold (kWh)", "Bought (kWh)", "Bill", "Grid alone", "Saved"],
        &rows,
        "No settled bill yet.",
    ));
    page.push("</section><section aria-labelledby=\"offers\"><h2 id=\"offers\">Open offers</h2>");
    let rows: Vec<Vec<Cell>> = offers
        .offers
        .iter()
        .map(|offer| {
            vec![
                Cell::html(interval_link(offer.interval)),
                Cell::text(offer.side.as_str()),
                Cell::number(format_kwh(offer.energy_wh)),
                Cell::number(price(client, Some(offer.price_micro_per_kwh))),
            ]
        })
        .collect();
    page.push(table(
        "Open offers",
        &["Interval", "Side", "Energy (kWh)", "Limit price"],
        &rows,
        "No open offer.",
    ));
    page.push("</section><section aria-labelledby=\"trades\"><h2 id=\"trades\">Trades</h2>");
    let rows: Vec<Vec<Cell>> = trades
        .iter()
        .rev()
        .map(|trade| {
            vec![
                Cell::html(interval_link(trade.interval)),
                Cell::text(trade.side.as_str()),
                Cell::html(account_link(&trade.counterparty)),
                Cell::number(format_kwh(trade.energy_wh)),
                Cell::number(price(client, Some(trade.price_micro_per_kwh))),
                Cell::number(money(client, trade.amount_nano)),
            ]
        })
        .collect();
    page.push(table(
        "Trades, latest first",
        &["Interval", "Side", "With", "Energy (kWh)", "Price", "Amount"],
        &rows,
        "No trade in the last intervals.",
    ));
    page.push("</section>");
    Ok(page)
}

// ---- Operator -------------------------------------------------------------

async fn operator(State(client): State<Client>) -> Response {
    answer(&client.genesis.name, operator_page(&client).await)
}

async fn operator_page(client: &Client) -> Result<Page, ApiError> {
    let health = health_of(client).await?;
    let status = status_of(client).await?;
    let evidence = evidence_of(client).await?;
    // Each validator's last proposal in the latest blocks, and whether it
    // signed the tip's certificate.
    let (reader, tip) =
        read(client, |view| Ok((view.store.reader().map_err(storage)?, view.state.height))).await?;
    let validators = client.genesis.validators.clone();
    let seen = off_loop(move || {
        let mut proposed: BTreeMap<PublicKey, u64> = BTreeMap::new();
        let mut signed = Vec::new();
        for height in (tip.saturating_sub(PROPOSALS_LOOKBACK_BLOCKS) + 1..=tip).rev() {
            let Some(block) = reader.block(height).map_err(storage)? else { continue };
            if height == tip {
                signed = block.certificate.signatures.iter().map(|signature| signature.validator).collect();
            }
            proposed.entry(block.block.header.proposer).or_insert(height);
        }
        Ok((proposed, signed))
    })
    .await?;
    let (proposed, signed) = seen;

    let mut page = Page::new(&client.genesis.name, "Operator", View::Operator).reload_on("clearing");
    let readiness = match &health.reason {
        None => "<span class=\"ok\" data-test=\"ready\">ready</span>".to_string(),
        Some(NotReady::CatchingUp) => {
            "<span class=\"bad\" data-test=\"ready\">not ready: catching up</span>".to_string()
        }
        Some(NotReady::NoPeers) => {
            "<span class=\"bad\" data-test=\"ready\">not ready: no peer</span>".to_string()
        }
    };
    let sync = match status.sync {
        SyncStatus::Synced => "synced".to_string(),
        SyncStatus::CatchingUp => format!("catching up to {}", status.best_seen_height),
    };
    page.push(facts(
        "The node",
        &[
            ("Readiness", readiness),
            (
                "Role",
                match status.role {
                    Role::Validator => "validator".to_string(),
                    Role::Replica => "replica".to_string(),
                },
            ),
            ("Height", format!("{} ({})", status.height, Text(&sync))),
            ("Last block", time(status.last_block_time_ms)),
            ("Peers", status.peers.to_string()),
            ("Mempool", format!("{} transactions", status.mempool_transactions)),
            ("Version", format!("{} (protocol {})", Text(&status.version), status.protocol_version)),
        ],
    ));
    page.push("<section aria-labelledby=\"validators\"><h2 id=\"validators\">Validators</h2>");
    let rows: Vec<Vec<Cell>> = validators
        .iter()
        .map(|validator| {
            let key = validator.key.to_string();
            vec![
                Cell::html(format!("<code title=\"{key}\">{}…</code>", key.get(..12).unwrap_or(&key))),
                Cell::number(validator.voting_power.to_string()),
                Cell::number(proposed.get(&validator.key).map_or("–".to_string(), u64::to_string)),
                Cell::text(if signed.contains(&validator.key) { "yes" } else { "no" }),
            ]
        })
        .collect();
    page.push(table(
        "Validators: the last block each proposed (of the latest 256) and whether each signed the tip",
        &["Validator", "Voting power", "Last proposed block", "Signed the tip"],
        &rows,
        "",
    ));
    page.push("</section><section aria-labelledby=\"evidence\"><h2 id=\"evidence\">Evidence</h2>");
    let rows: Vec<Vec<Cell>> = evidence
        .equivocations
        .iter()
        .map(|equivocation| {
            let (kind, validator) = match equivocation {
                gridshare_api::Equivocation::Votes { validator, .. } => ("two votes", validator),
                gridshare_api::Equivocation::Proposals { validator, .. } => ("two proposals", validator),
            };
            vec![Cell::text(kind), Cell::html(format!("<code>{validator}</code>"))]
        })
        .collect();
    page.push(table("Equivocations", &["What", "Validator"], &rows, "No validator has equivocated."));
    page.push(
        "</section><p>Metrics for Prometheus: <a href=\"/metrics\">/metrics</a>; probes: \
         <a href=\"/health\">/health</a>, <a href=\"/ready\">/ready</a>.</p>",
    );
    Ok(page)
}

// ---- Regulator ------------------------------------------------------------

async fn regulator(State(client): State<Client>) -> Response {
    let genesis = &client.genesis;
    let market = &genesis.market;
    let mut page = Page::new(&genesis.name, "Regulator", View::Regulator);
    page.push(facts(
        "The market's rules",
        &[
            (
                "Mechanism",
                format!(
                    "{} (k = {}‰)",
                    gridshare_api::Mechanism::from(market.mechanism).as_str(),
                    market.k_thousandths
                ),
            ),
            ("Interval", format!("{} s", market.interval_length_ms / 1_000)),
            ("Gate closure", format!("{} s before delivery", market.gate_closure_lead_ms / 1_000)),
            (
                "Prices",
                Text(&format!(
                    "floor {}, cap {}",
                    price(&client, Some(market.price_floor_micro_per_kwh)),
                    price(&client, Some(market.price_cap_micro_per_kwh))
                ))
                .to_string(),
            ),
            ("Validators", genesis.validators.len().to_string()),
            ("Genesis", time(genesis.genesis_time_ms)),
        ],
    ));
    let mut html = String::new();
    let _ = write!(
        html,
        "<section aria-labelledby=\"check\"><h2 id=\"check\">Check the ledger</h2>\
         <p><a class=\"button\" href=\"/regulator/audit\">Audit this node's ledger</a> re-verifies every \
         block from the genesis: links, certificates, signatures, and every clearing and settlement \
         re-run (docs/PROTOCOL.md §9).</p>\
         <p><a class=\"button\" href=\"/v1/export\" download=\"ledger.gridshare\">Download the export</a>: \
         the whole ledger in the export format of docs/PROTOCOL.md, for `gridshare audit` and \
         `gridshare report` on your own machine.</p></section>"
    );
    page.push(html);
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
    let week_ago = today.checked_sub(jiff::Span::new().days(7)).unwrap_or(today);
    let mut form = String::new();
    let _ = write!(
        form,
        "<section aria-labelledby=\"reports\"><h2 id=\"reports\">Reports</h2>\
         <p>The intervals that start from the first day to the last, in the time zone given, \
         as CSV for a spreadsheet or JSON: the same as <code>gridshare report</code>.</p>\
         <form action=\"/regulator/report\" method=\"get\" class=\"report\">\
         <label>Report <select name=\"kind\">{kinds}</select></label>\
         <label>First day <input type=\"date\" name=\"from\" required value=\"{week_ago}\"></label>\
         <label>Last day <input type=\"date\" name=\"to\" required value=\"{today}\"></label>\
         <label>Time zone <input name=\"tz\" value=\"UTC\" data-local-zone autocomplete=\"off\"></label>\
         <label>Bills per <select name=\"per\"><option value=\"interval\">interval</option>\
         <option value=\"day\">day</option><option value=\"month\">month</option></select></label>\
         <label>Format <select name=\"format\"><option value=\"csv\">CSV</option>\
         <option value=\"json\">JSON</option></select></label>\
         <button type=\"submit\">Download</button></form></section>",
        kinds = ReportKind::ALL
            .iter()
            .map(|kind| format!("<option value=\"{0}\">{0}</option>", kind.as_str()))
            .collect::<String>(),
    );
    page.push(form);
    answer(&genesis.name, Ok(page))
}

/// `/regulator/report?kind=&from=DAY&to=DAY&tz=&per=&format=`: a report
/// file of the intervals that start from the local midnight of `from` to
/// the one after `to`.
async fn report(
    State(client): State<Client>,
    axum::extract::Query(parameters): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    match report_file(&client, &parameters).await {
        Ok(response) => response,
        Err(error) => answer(&client.genesis.name, Err(error)),
    }
}

async fn report_file(client: &Client, parameters: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    const KNOWN: [&str; 6] = ["kind", "from", "to", "tz", "per", "format"];
    let bad = |message: String| ApiError::new(ErrorCode::BadQuery, message);
    if let Some(unknown) = parameters.keys().find(|name| !KNOWN.contains(&name.as_str())) {
        return Err(bad(format!("unknown parameter `{unknown}`; a report takes {}", KNOWN.join(", "))));
    }
    let get = |name: &str| parameters.get(name).map(String::as_str);
    let kind: ReportKind = get("kind").unwrap_or_default().parse().map_err(bad)?;
    let per: Per = get("per").unwrap_or("interval").parse().map_err(bad)?;
    let format: ReportFormat = get("format").unwrap_or("csv").parse().map_err(bad)?;
    let tz = time_zone(get("tz").unwrap_or("UTC")).map_err(|error| bad(error.to_string()))?;
    let day = |name: &str| -> Result<jiff::civil::Date, ApiError> {
        let text = get(name).unwrap_or_default();
        text.parse().map_err(|_| bad(format!("{name}: `{text}` is not a day (YYYY-MM-DD)")))
    };
    let midnight = |date: jiff::civil::Date| {
        date.to_zoned(tz.clone()).map(|zoned| zoned.timestamp()).map_err(|error| bad(error.to_string()))
    };
    let from = midnight(day("from")?)?;
    let to =
        midnight(day("to")?.checked_add(jiff::Span::new().days(1)).map_err(|error| bad(error.to_string()))?)?;
    let request = Request::new(kind, (from, to), tz, per, format).map_err(|error| bad(error.to_string()))?;
    let _permit = LEDGER_READS.try_acquire().map_err(|_| busy())?;
    let reader = read(client, |view| view.store.reader().map_err(storage)).await?;
    let genesis = (*client.genesis).clone();
    // What concerns an interval is in a block at or after its gate
    // closure, and block times increase: the report starts there.
    let first_ms = u64::try_from(from.as_millisecond())
        .unwrap_or_default()
        .saturating_sub(genesis.market.gate_closure_lead_ms);
    let file_name = request.file_name();
    let body = off_loop(move || {
        let timestamp = |height: u64| -> Result<u64, ApiError> {
            let block = reader.block(height).map_err(storage)?;
            Ok(block.map_or(u64::MAX, |block| block.block.header.timestamp_ms))
        };
        let (mut low, mut high) = (1, reader.height().saturating_add(1));
        while low < high {
            let middle = low + (high - low) / 2;
            if timestamp(middle)? < first_ms { low = middle + 1 } else { high = middle }
        }
        let mut out = Bounded(Vec::new());
        let mut report = Report::new(&request, genesis, &mut out).map_err(storage)?;
        for height in low..=reader.height() {
            let Some(block) = reader.block(height).map_err(storage)? else { continue };
            report.block(&block).map_err(|_| too_large())?;
        }
        report.finish().map_err(|_| too_large())?;
        Ok(out.0)
    })
    .await?;
    let content_type = match format {
        ReportFormat::Csv => "text/csv; charset=utf-8",
        ReportFormat::Json => "application/json",
    };
    let disposition = format!("attachment; filename=\"{file_name}\"");
    Ok(([(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response())
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::BadRange,
        format!(
            "the report is larger than the {} MiB a node writes: narrow the range, or run `gridshare report` on the export",
            REPORT_BYTES_MAX >> 20
        ),
    )
}

/// A buffer that refuses to grow past [`REPORT_BYTES_MAX`].
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len().saturating_add(bytes.len()) > REPORT_BYTES_MAX {
            return Err(std::io::Error::other("the report is too large"));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn busy() -> ApiError {
    ApiError::new(
        ErrorCode::Busy,
        "an audit or a report is already running on this node: try again when it ends",
    )
}

async fn audit(State(client): State<Client>) -> Response {
    answer(&client.genesis.name, audit_page(&client).await)
}

async fn audit_page(client: &Client) -> Result<Page, ApiError> {
    let _permit = LEDGER_READS.try_acquire().map_err(|_| busy())?;
    let (reader, evidence) = read(client, |view| {
        Ok((view.store.reader().map_err(storage)?, view.store.evidence().map_err(storage)?))
    })
    .await?;
    let genesis = (*client.genesis).clone();
    let report = off_loop(move || {
        let mut auditor = Auditor::new(genesis);
        for height in 1..=reader.height() {
            match reader.block(height).map_err(storage)? {
                Some(block) => auditor.block(block),
                None => auditor.finding("store", format!("block {height} is missing below the tip")),
            }
        }
        for evidence in &evidence {
            auditor.evidence(evidence);
        }
        Ok(auditor.finish())
    })
    .await?;
    let mut page = Page::new(&client.genesis.name, "Audit of this node's ledger", View::Regulator);
    let verdict = if report.passed() {
        "<span class=\"ok\" data-test=\"verdict\">passed: no findings</span>".to_string()
    } else {
        format!(
            "<span class=\"bad\" data-test=\"verdict\">{} findings</span>",
            report.findings.len() as u64 + report.findings_omitted
        )
    };
    page.push(facts(
        "The audit",
        &[
            ("Verdict", verdict),
            ("Blocks", report.blocks.to_string()),
            ("Transactions", report.transactions.to_string()),
            ("Signatures verified", report.signatures_verified.to_string()),
            ("Intervals cleared", report.intervals_cleared.to_string()),
            ("Trades", format!("{} ({} kWh)", report.trades, format_kwh(report.energy_traded_wh))),
            ("Settlements", format!("{} ({} bills)", report.settlements, report.bills)),
            ("Equivocations proven", report.equivocations.to_string()),
            (
                "State root",
                format!(
                    "<code class=\"key\">{}</code> at height {}",
                    report.state_root, report.executed_height
                ),
            ),
        ],
    ));
    let rows: Vec<Vec<Cell>> = report
        .findings
        .iter()
        .map(|finding| {
            vec![
                Cell::number(finding.height.map_or("–".to_string(), |height| height.to_string())),
                Cell::text(&finding.object),
                Cell::text(&finding.message),
            ]
        })
        .collect();
    page.push(table("Findings", &["Block", "About", "Finding"], &rows, "The audit found nothing wrong."));
    Ok(page)
}
