//! `gridshare market`: one interval's market, its clearing price and volume,
//! and the supply and demand curves of its book drawn as a text chart.

use std::io::Write;

use gridshare_api::{BookEntry, Interval, Side};

use crate::amount::{format_kwh, format_money, format_price};
use crate::market_time::{IntervalSpec, format_utc, now_ms};
use crate::table::{self, Align};
use crate::wallet::{CommandError, Wallet, bad_input, plural, write_json};

/// The chart's plot area, in characters.
pub const CHART_WIDTH: usize = 56;
pub const CHART_HEIGHT: usize = 14;

/// `gridshare market`.
#[derive(Debug, Clone, clap::Args)]
pub struct MarketArgs {
    /// The interval (default: the latest cleared one): a number, next, +N or
    /// a time with its zone (2026-11-21T17:20Z, 2026-11-21T18:20+01:00).
    #[arg(long, value_name = "INTERVAL")]
    pub interval: Option<IntervalSpec>,
    #[arg(long)]
    pub json: bool,
}

/// A curve of the book: offers of one side in merit order (cheapest sells
/// first, dearest buys first) as (energy, price) steps.
fn curve(book: &[BookEntry], side: Side) -> Vec<(u64, u64)> {
    let mut steps: Vec<(u64, u64)> = book
        .iter()
        .filter(|offer| offer.side == side)
        .map(|offer| (offer.energy_wh, offer.price_micro_per_kwh))
        .collect();
    if side == Side::Buy {
        steps.sort_by_key(|step| std::cmp::Reverse(step.1));
    } else {
        steps.sort_by_key(|step| step.1);
    }
    steps
}

/// The price of a curve at cumulative energy `energy` (u128 so that sums of
/// many offers cannot overflow), `None` past its end.
fn price_at(steps: &[(u64, u64)], energy: u128) -> Option<u64> {
    let mut cumulative: u128 = 0;
    for (energy_wh, price) in steps {
        cumulative += u128::from(*energy_wh);
        if energy <= cumulative {
            return Some(*price);
        }
    }
    None
}

/// Draws supply (`S`) and demand (`D`) as step curves of price over
/// cumulative energy, `*` where they meet, and the clearing price as a line
/// of `-`. Integer arithmetic only.
pub fn chart(
    book: &[BookEntry],
    clearing_price: Option<u64>,
    currency: &str,
    width: usize,
    height: usize,
) -> String {
    let supply = curve(book, Side::Sell);
    let demand = curve(book, Side::Buy);
    let total = |steps: &[(u64, u64)]| steps.iter().map(|(energy, _)| u128::from(*energy)).sum::<u128>();
    let energy_max = total(&supply).max(total(&demand));
    if energy_max == 0 || width == 0 || height < 2 {
        return "No offers: nothing to draw.\n".to_string();
    }
    let prices = book.iter().map(|offer| offer.price_micro_per_kwh).chain(clearing_price);
    let (low, high) = prices.fold((u64::MAX, 0), |(low, high), price| (low.min(price), high.max(price)));
    let rows = u128::try_from(height - 1).unwrap_or(1);
    // Row 0 is the lowest price; rounded to the nearest row.
    let row_of = |price: u64| -> usize {
        if high == low {
            return (height - 1) / 2;
        }
        let span = u128::from(high - low);
        let row = (u128::from(price - low) * rows + span / 2) / span;
        usize::try_from(row).unwrap_or(height - 1)
    };
    let mut grid = vec![vec![' '; width]; height];
    if let Some(price) = clearing_price {
        grid[row_of(price)].iter_mut().for_each(|cell| *cell = '-');
    }
    let columns = u128::try_from(width).unwrap_or(1);
    for column in 0..width {
        // The energy at the middle of the column.
        let energy = (2 * u128::try_from(column).unwrap_or(0) + 1) * energy_max / (2 * columns);
        for (steps, mark) in [(&supply, 'S'), (&demand, 'D')] {
            let cell = price_at(steps, energy).and_then(|price| grid.get_mut(row_of(price))?.get_mut(column));
            if let Some(cell) = cell {
                *cell = if matches!(*cell, 'S' | 'D') && *cell != mark { '*' } else { mark };
            }
        }
    }
    let label = |row: usize| -> String {
        let price = if row == height - 1 {
            Some(high)
        } else if row == 0 {
            Some(low)
        } else {
            clearing_price.filter(|price| row_of(*price) == row)
        };
        price.map_or_else(String::new, format_price)
    };
    let label_width = (0..height).map(|row| label(row).len()).max().unwrap_or(0);
    let mut out = format!("{:>label_width$}\n", format!("{currency}/kWh"));
    for row in (0..height).rev() {
        let line: String = grid[row].iter().collect();
        out += &format!("{:>label_width$} |{}", label(row), line.trim_end());
        out += "\n";
    }
    out += &format!("{:>label_width$} +{}\n", "", "-".repeat(width));
    let energy_label = format!("{} kWh", format_kwh(u64::try_from(energy_max).unwrap_or(u64::MAX)));
    let gap = width.saturating_sub(energy_label.len() + 1);
    out += &format!("{:>label_width$}  0{}{energy_label}\n", "", " ".repeat(gap));
    out += &format!(
        "{:>label_width$}  S supply (sell offers, cheapest first)  D demand (buy offers, dearest first)  - clearing price\n",
        ""
    );
    out
}

/// The interval for people: status, clearing, chart and book.
pub fn market_text(wallet: &Wallet, interval: &Interval, currency: &str) -> String {
    let mut out = format!(
        "Interval {}: {}\n  delivery {} to {}\n  gate closure {}, settlement {}\n",
        interval.interval,
        interval.status.as_str(),
        format_utc(interval.start_ms),
        format_utc(interval.end_ms),
        format_utc(interval.gate_closure_ms),
        format_utc(interval.settlement_ms)
    );
    match &interval.clearing {
        Some(clearing) => {
            let (height, clearing) = (clearing.height, &clearing.receipt);
            let price = match clearing.clearing_price_micro_per_kwh {
                Some(price) => format!("{} {currency}/kWh", format_price(price)),
                None if clearing.volume_wh > 0 => "none: each trade at its buyer's price (pay-as-bid)".into(),
                None => "none: no bid met an ask".into(),
            };
            let k = format!("{}.{:03}", clearing.k_thousandths / 1_000, clearing.k_thousandths % 1_000);
            out += &format!(
                "Cleared at height {height}: {} (k = {k}), network fee {} {currency}/kWh\n",
                clearing.mechanism,
                format_price(clearing.network_fee_micro_per_kwh)
            );
            out += &format!("Clearing price  {price}\n");
            out += &format!(
                "Volume          {} kWh in {} from {}\n",
                format_kwh(clearing.volume_wh),
                plural(u64::try_from(clearing.trades.len()).unwrap_or(u64::MAX), "trade", "trades"),
                plural(clearing.offers, "offer", "offers")
            );
        }
        None => out += "Not cleared yet.\n",
    }
    if let Some(settlement) = &interval.settlement {
        out += &format!(
            "Settled at height {}: {}\n",
            settlement.height,
            plural(settlement.bills, "bill", "bills")
        );
    }
    out += "\n";
    let clearing_price =
        interval.clearing.as_ref().and_then(|clearing| clearing.receipt.clearing_price_micro_per_kwh);
    out += &chart(&interval.book, clearing_price, currency, CHART_WIDTH, CHART_HEIGHT);
    if !interval.book.is_empty() {
        let mut book = interval.book.clone();
        book.sort_by(|a, b| a.side.cmp(&b.side).then(a.price_micro_per_kwh.cmp(&b.price_micro_per_kwh)));
        let rows: Vec<Vec<String>> = book
            .iter()
            .map(|offer| {
                vec![
                    offer.side.to_string(),
                    format_kwh(offer.energy_wh),
                    format_price(offer.price_micro_per_kwh),
                    wallet.label(&offer.account.to_string()),
                    crate::wallet::short_key(&offer.id.to_string()),
                ]
            })
            .collect();
        let price_title = format!("PRICE ({currency}/kWh)");
        out += "\n";
        out += &table::render(
            &[
                ("SIDE", Align::Left),
                ("ENERGY (kWh)", Align::Right),
                (&price_title, Align::Right),
                ("ACCOUNT", Align::Left),
                ("OFFER", Align::Left),
            ],
            &rows,
        );
    }
    if let Some(clearing) = interval
        .clearing
        .as_ref()
        .map(|clearing| &clearing.receipt)
        .filter(|clearing| !clearing.trades.is_empty())
    {
        let rows: Vec<Vec<String>> = clearing
            .trades
            .iter()
            .map(|trade| {
                let amount = i128::from(trade.energy_wh) * i128::from(trade.price_micro_per_kwh);
                vec![
                    wallet.label(&trade.buyer.to_string()),
                    wallet.label(&trade.seller.to_string()),
                    format_kwh(trade.energy_wh),
                    format_price(trade.price_micro_per_kwh),
                    format_money(amount, currency),
                ]
            })
            .collect();
        let price_title = format!("PRICE ({currency}/kWh)");
        out += "\n";
        out += &table::render(
            &[
                ("BUYER", Align::Left),
                ("SELLER", Align::Left),
                ("ENERGY (kWh)", Align::Right),
                (&price_title, Align::Right),
                ("AMOUNT", Align::Right),
            ],
            &rows,
        );
    }
    out
}

/// `gridshare market`.
pub fn market(wallet: &Wallet, args: &MarketArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let community = wallet.community()?;
    let interval = match args.interval {
        Some(spec) => spec.resolve(&community.genesis, now_ms()).map_err(bad_input)?,
        None => match wallet.node().status()?.next_clearing_interval.checked_sub(1) {
            Some(last_cleared) => last_cleared,
            None => community.genesis.first_open_interval(now_ms()),
        },
    };
    let json = wallet.node().interval(interval)?;
    if args.json {
        return write_json(out, &json);
    }
    write!(out, "{}", market_text(wallet, &json, community.currency()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(side: &str, energy_wh: u64, price_micro_per_kwh: u64) -> BookEntry {
        BookEntry {
            id: gridshare_ledger::Hash([0; 32]),
            account: gridshare_ledger::ids::PublicKey([0; 32]),
            side: if side == "buy" { Side::Buy } else { Side::Sell },
            energy_wh,
            price_micro_per_kwh,
        }
    }

    #[test]
    fn draws_supply_and_demand() {
        let book = [
            offer("sell", 1_000, 90_000),
            offer("sell", 1_000, 150_000),
            offer("buy", 1_500, 250_000),
            offer("buy", 500, 100_000),
        ];
        expect_test::expect![[r#"
             EUR/kWh
            0.250000 |DDDDDDDDDDDDDDDDDDDD
                     |
                     |
            0.170000 |--------------------------
                     |             SSSSSSSSSSSSS
                     |
            0.090000 |SSSSSSSSSSSSS       DDDDDD
                     +--------------------------
                      0                2.000 kWh
                      S supply (sell offers, cheapest first)  D demand (buy offers, dearest first)  - clearing price
        "#]]
        .assert_eq(&chart(&book, Some(170_000), "EUR", 26, 7));
        assert_eq!(chart(&[], None, "EUR", 26, 7), "No offers: nothing to draw.\n");
    }

    #[test]
    fn a_curve_is_merit_ordered() {
        let book = [offer("sell", 1, 30), offer("sell", 2, 10), offer("buy", 1, 5), offer("buy", 1, 50)];
        assert_eq!(curve(&book, Side::Sell), vec![(2, 10), (1, 30)]);
        assert_eq!(curve(&book, Side::Buy), vec![(1, 50), (1, 5)]);
        assert_eq!(price_at(&curve(&book, Side::Sell), 2), Some(10));
        assert_eq!(price_at(&curve(&book, Side::Sell), 3), Some(30));
        assert_eq!(price_at(&curve(&book, Side::Sell), 4), None);
    }
}
