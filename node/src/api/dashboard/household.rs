//! A household's pages: `/accounts` (the form and the accounts) and
//! `/accounts/{key}`.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use gridshare_api::decimal::format_kwh;
use gridshare_api::{ErrorCode, OffersQuery};
use gridshare_ledger::ids::PublicKey;

use super::chart::{self, Mark, Series};
use super::community::account_form;
use super::html::{Cell, Page, Text, View, account_link, facts, interval_link, table};
use super::{answer, money, price, recent};
use crate::api::accounts::{account_of, offers_of};
use crate::api::intervals::{account_trades, clearings_of, settlements_of};
use crate::api::status::status_of;
use crate::api::{ApiError, parse_key, query, read};
use crate::node::Client;

/// Accounts the household view lists to pick from.
const ACCOUNTS_LISTED: usize = 100;

/// `/accounts`: the form, the registered accounts to pick from, or (with
/// `?key=`) the way to that account's page.
pub(super) async fn households(State(client): State<Client>, RawQuery(raw): RawQuery) -> Response {
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
        account_form(&mut page);
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

pub(super) async fn household(State(client): State<Client>, Path(key): Path<String>) -> Response {
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
    let trades =
        clearings_of(client, recent(status.next_clearing_interval), move |interval, height, clearing| {
            account_trades(interval, height, &clearing, &key)
        });
    let trades = trades.await?.concat();
    let span = recent(status.next_settlement_interval);
    // Each settled bill: interval, what it came to, the grid alone, sold
    // and bought.
    let bills = settlements_of(client, span, move |interval, _, settlement| {
        let bill = settlement.bills.iter().find(|bill| bill.account == key)?;
        Some((interval, bill.total_nano, settlement.grid_only_nano(bill), bill.sold_wh, bill.bought_wh))
    });
    let bills: Vec<(u64, i128, i128, u64, u64)> = bills.await?.into_iter().flatten().collect();
    let mut page = Page::new(&client.genesis.name, "A household", View::Household)
        .reload_on("settlement")
        .at_height(status.height);
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
    page.section("bills", "Bills against grid-only prices");
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
    page.section("offers", "Open offers");
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
    page.section("trades", "Trades");
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
    Ok(page)
}
