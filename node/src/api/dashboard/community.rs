//! The community's page (`/`) and an interval's (`/intervals/{n}`).

use axum::extract::{Path, State};
use axum::response::Response;
use gridshare_api::ErrorCode;
use gridshare_api::decimal::{format_kwh, format_signed_kwh};
use gridshare_ledger::block::ZoneReceipt;

use super::chart::{self, Mark, Series};
use super::html::{Cell, Page, Text, View, account_link, facts, interval_link, short_key, table, time};
use super::{answer, money, price, recent};
use crate::api::ApiError;
use crate::api::intervals::{clearings_of, interval_of, settlements_of};
use crate::api::status::status_of;
use crate::api::zones::zones_of;
use crate::node::Client;

/// What the community page shows of a clearing.
#[derive(Debug)]
struct Cleared {
    interval: u64,
    height: u64,
    price_micro_per_kwh: Option<u64>,
    volume_wh: u64,
    trades: usize,
    offers: u32,
    /// Each zone's outcome, in genesis order.
    zones: Vec<ZoneReceipt>,
}

/// Rows of the community's table of recent clearings.
const RECENT_ROWS: usize = 12;

pub(super) async fn community(State(client): State<Client>) -> Response {
    answer(&client.genesis.name, community_page(&client).await)
}

async fn community_page(client: &Client) -> Result<Page, ApiError> {
    let status = status_of(client).await?;
    let clearings =
        clearings_of(client, recent(status.next_clearing_interval), |interval, height, clearing| Cleared {
            interval,
            height,
            price_micro_per_kwh: clearing.clearing_price_micro_per_kwh,
            volume_wh: clearing.volume_wh,
            trades: clearing.trades.len(),
            offers: clearing.offers,
            zones: clearing.zones,
        })
        .await?;
    // What each settled interval's households saved, all of them together.
    let settlements =
        settlements_of(client, recent(status.next_settlement_interval), |interval, _, settlement| {
            let saved = settlement.bills.iter().map(|bill| bill.total_nano - settlement.grid_only_nano(bill));
            (interval, saved.sum::<i128>())
        })
        .await?;
    let zones = zones_of(client).await?;

    let mut page = Page::new(&client.genesis.name, "The community's market", View::Community)
        .reload_on("clearing settlement")
        .at_height(status.height);
    let traded_wh: u64 = clearings.iter().map(|cleared| cleared.volume_wh).sum();
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
                    Text(&money(client, settlements.iter().map(|(_, saved)| saved).sum())),
                    settlements.len()
                ),
            ),
        ],
    ));

    let intervals: Vec<u64> = clearings.iter().map(|cleared| cleared.interval).collect();
    page.section("prices", "Prices and volumes");
    if clearings.is_empty() {
        page.push("<p class=\"empty\">No interval has cleared yet.</p>");
    } else {
        let prices = clearings.iter().map(|cleared| cleared.price_micro_per_kwh.map(i128::from)).collect();
        let volumes = clearings.iter().map(|cleared| Some(i128::from(cleared.volume_wh))).collect();
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
        .map(|cleared| {
            vec![
                Cell::html(interval_link(cleared.interval)),
                Cell::html(time(client.genesis.interval_start_ms(cleared.interval).unwrap_or_default())),
                Cell::number(price(client, cleared.price_micro_per_kwh)),
                Cell::number(format_kwh(cleared.volume_wh)),
                Cell::number(cleared.trades.to_string()),
                Cell::number(cleared.offers.to_string()),
                Cell::number(cleared.height.to_string()),
            ]
        })
        .collect();
    page.push(table(
        "Recent clearings, latest first",
        &["Interval", "Starts", "Price", "Traded (kWh)", "Trades", "Offers", "Block"],
        &rows,
        "Nothing cleared yet.",
    ));

    if !settlements.is_empty() {
        let intervals: Vec<u64> = settlements.iter().map(|(interval, _)| *interval).collect();
        page.section("savings", "Savings");
        page.push(chart::over_intervals(
            "What the community saved against grid-only prices, per settled interval",
            &intervals,
            &[Series {
                name: "Saved",
                mark: Mark::Bars,
                class: "a",
                values: settlements.iter().map(|(_, saved)| Some(*saved)).collect(),
            }],
            &|nano| money(client, nano),
        ));
    }

    page.section("zones", "Zones");
    let last = clearings.last();
    let rows: Vec<Vec<Cell>> = zones
        .zones
        .iter()
        .enumerate()
        .map(|(index, zone)| {
            let dso: Vec<String> = zone
                .limits
                .iter()
                .map(|run| {
                    format!(
                        "{}–{}: {} / {}",
                        run.first_interval,
                        run.last_interval,
                        limit(run.import_wh_max),
                        limit(run.export_wh_max)
                    )
                })
                .collect();
            let outcome = last.and_then(|cleared| cleared.zones.get(index));
            vec![
                Cell::text(&zone.name),
                Cell::number(zone.meters.to_string()),
                Cell::text(zone.zone_meter.map_or_else(|| "-".to_string(), |key| short_key(&key))),
                Cell::number(format!("{} / {}", limit(zone.import_wh_max), limit(zone.export_wh_max))),
                Cell::text(if dso.is_empty() { "-".to_string() } else { dso.join("; ") }),
                Cell::number(
                    outcome.map_or_else(String::new, |zone| price(client, zone.price_micro_per_kwh)),
                ),
                Cell::number(outcome.map_or_else(String::new, |zone| format_signed_kwh(zone.net_export_wh))),
                Cell::text(match outcome {
                    Some(zone) if zone.congested => "congested",
                    Some(_) => "within limits",
                    None => "",
                }),
            ]
        })
        .collect();
    let caption = match last {
        Some(cleared) => {
            format!("The grid's zones; their outcome in interval {}, the last cleared", cleared.interval)
        }
        None => "The grid's zones".to_string(),
    };
    page.push(table(
        &caption,
        &[
            "Zone",
            "Meters",
            "Zone meter",
            "Limits, import / export (kWh per interval)",
            "The DSO's limits to come (intervals: import / export)",
            "Price",
            "Net export (kWh)",
            "Limits",
        ],
        &rows,
        "",
    ));
    account_form(&mut page);
    Ok(page)
}

/// A zone's limit in kWh per interval, `none` for no limit.
fn limit(wh: u64) -> String {
    if wh == u64::MAX { "none".to_string() } else { format_kwh(wh) }
}

/// The form that opens a household's page by its account key, a section
/// of its own.
pub(super) fn account_form(page: &mut Page) {
    page.section("find", "A household");
    page.push(
        "<form action=\"/accounts\" method=\"get\" class=\"find\"><label for=\"key\">Account key \
     (64 hex digits)</label><input id=\"key\" name=\"key\" required minlength=\"64\" maxlength=\"64\" \
     pattern=\"[0-9a-fA-F]{64}\" autocomplete=\"off\" spellcheck=\"false\"><button type=\"submit\">Show \
     the household</button></form>",
    );
    page.end_section();
}

pub(super) async fn interval(State(client): State<Client>, Path(interval): Path<String>) -> Response {
    answer(&client.genesis.name, interval_page(&client, &interval).await)
}

async fn interval_page(client: &Client, text: &str) -> Result<Page, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("there is no interval `{text}` to show"));
    let interval: u64 = text.parse().map_err(|_| not_found())?;
    let status = status_of(client).await?;
    let now = status.current_interval;
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
        .reload_on("clearing settlement")
        .at_height(status.height);
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
    page.section("curves", "Supply and demand");
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
    page.section("trades", "Trades");
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
                Cell::number(price(client, Some(trade.buyer_price_micro_per_kwh))),
            ]
        })
        .collect();
    let none = if clearing.is_some() { "Nothing traded in this interval." } else { "Not cleared yet." };
    page.push(table(
        "Trades",
        &["Seller", "Buyer", "Energy (kWh)", "Seller's price", "Buyer's price"],
        &rows,
        none,
    ));
    if let Some(clearing) = clearing {
        page.section("zones", "Zones");
        let rows: Vec<Vec<Cell>> = client
            .genesis
            .zones
            .iter()
            .zip(&clearing.zones)
            .map(|(zone, outcome)| {
                vec![
                    Cell::text(&zone.name),
                    Cell::number(price(client, outcome.price_micro_per_kwh)),
                    Cell::number(format_signed_kwh(outcome.net_export_wh)),
                    Cell::number(format!(
                        "{} / {}",
                        limit(outcome.import_wh_max),
                        limit(outcome.export_wh_max)
                    )),
                    Cell::text(if outcome.congested { "congested" } else { "within limits" }),
                ]
            })
            .collect();
        page.push(table(
            "Each zone's price and net export against the limits it was cleared with",
            &["Zone", "Price", "Net export (kWh)", "Limits, import / export (kWh)", "Limits"],
            &rows,
            "",
        ));
    }
    if let Some(settlement) = &body.settlement {
        let kwh = |wh: Option<i64>| wh.map_or_else(|| "-".to_string(), format_signed_kwh);
        let rows: Vec<Vec<Cell>> = client
            .genesis
            .zones
            .iter()
            .zip(&settlement.zones)
            .map(|(zone, measured)| {
                vec![
                    Cell::text(&zone.name),
                    Cell::number(format_signed_kwh(measured.measured_net_export_wh)),
                    Cell::number(format!("{} / {}", measured.measured_meters, measured.estimated_meters)),
                    Cell::number(kwh(measured.zone_meter_net_export_wh)),
                    Cell::number(kwh(measured.losses_wh)),
                ]
            })
            .collect();
        page.push(table(
            "What each zone's meters measured, its own meter (its transformer's) and the difference: its losses",
            &[
                "Zone",
                "Measured net export (kWh)",
                "Meters measured / estimated",
                "Zone meter net export (kWh)",
                "Losses (kWh)",
            ],
            &rows,
            "",
        ));
    }
    Ok(page)
}
