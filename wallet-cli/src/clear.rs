//! `gridshare clear`: reads a book of orders from CSV, runs the auction and
//! prints the clearing as a table or as JSON.
//!
//! The CSV has the header `id,side,energy_kwh,price_per_kwh`; ids are 1 to 64
//! printable ASCII characters, energies positive kWh with at most 3 decimals,
//! prices currency per kWh with at most 6 decimals. Every refusal names the
//! line it is about.

use std::collections::BTreeMap;
use std::io::Read;

use gridshare_matching::{ClearError, Clearing, Mechanism, Order, Params, Side};
use serde::Serialize;

use crate::amount::{AmountError, format_scaled, parse_scaled, scale};
use crate::table::{self, Align};

/// The header every order file starts with.
pub const HEADER: &str = "id,side,energy_kwh,price_per_kwh";
/// The longest id accepted, in bytes.
pub const ID_LEN_MAX: usize = 64;

/// Why an order file was refused. `line` counts from 1, the header included.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    #[error("line {line}: expected the header `{HEADER}`, found `{found}`")]
    Header { line: u64, found: String },
    #[error("the file is empty: expected the header `{HEADER}`")]
    Empty,
    #[error("line {line}: expected 4 fields ({HEADER}), found {found}")]
    FieldCount { line: u64, found: usize },
    #[error("line {line}: id `{id}` must be 1 to {ID_LEN_MAX} printable ASCII characters")]
    Id { line: u64, id: String },
    #[error("line {line}: side `{side}` is neither `buy` nor `sell`")]
    Side { line: u64, side: String },
    #[error("line {line}: energy_kwh {source}")]
    Energy { line: u64, source: AmountError },
    #[error("line {line}: energy_kwh must be positive, found `{text}`")]
    ZeroEnergy { line: u64, text: String },
    #[error("line {line}: price_per_kwh {source}")]
    Price { line: u64, source: AmountError },
    #[error("line {line}: id `{id}` is already used on line {first_line}")]
    DuplicateId { line: u64, id: String, first_line: u64 },
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("cannot read the orders: {0}")]
    Io(#[from] std::io::Error),
}

/// The orders of a file with the line each came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Book {
    pub orders: Vec<Order<String>>,
    pub lines: Vec<u64>,
}

/// Reads and checks a whole order file.
pub fn read_orders(mut input: impl Read) -> Result<Book, OrdersError> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    let mut lines = LineCounter { bytes: &bytes, offset: 0, line: 1 };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let mut records = reader.records();

    let header = records.next().ok_or(OrdersError::Empty)?.map_err(|error| lines.csv_error(error))?;
    let found: Vec<&str> = header.iter().collect();
    if found.join(",") != HEADER {
        return Err(OrdersError::Header { line: lines.of(header.position()), found: found.join(",") });
    }

    let mut book = Book { orders: Vec::new(), lines: Vec::new() };
    let mut first_line_of: BTreeMap<String, u64> = BTreeMap::new();
    for record in records {
        let record = record.map_err(|error| lines.csv_error(error))?;
        let line = lines.of(record.position());
        let [id, side, energy, price] = record.iter().collect::<Vec<_>>()[..] else {
            return Err(OrdersError::FieldCount { line, found: record.len() });
        };
        if id.is_empty() || id.len() > ID_LEN_MAX || !id.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(OrdersError::Id { line, id: id.to_string() });
        }
        let side = match side {
            "buy" => Side::Buy,
            "sell" => Side::Sell,
            other => return Err(OrdersError::Side { line, side: other.to_string() }),
        };
        let energy_wh =
            parse_scaled(energy, scale::KWH_TO_WH).map_err(|source| OrdersError::Energy { line, source })?;
        if energy_wh == 0 {
            return Err(OrdersError::ZeroEnergy { line, text: energy.to_string() });
        }
        let price_micro_per_kwh = parse_scaled(price, scale::CURRENCY_TO_MICRO)
            .map_err(|source| OrdersError::Price { line, source })?;
        if let Some(&first_line) = first_line_of.get(id) {
            return Err(OrdersError::DuplicateId { line, id: id.to_string(), first_line });
        }
        first_line_of.insert(id.to_string(), line);
        book.orders.push(Order { id: id.to_string(), side, energy_wh, price_micro_per_kwh });
        book.lines.push(line);
    }
    Ok(book)
}

/// Turns csv byte offsets into line numbers. The csv crate's own line count
/// does not count blank lines, so count newlines in the input instead; records
/// come in order, so the count goes on from the last one.
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: u64,
}

impl LineCounter<'_> {
    /// The line a record starts on. A record's offset can point at blank lines
    /// skipped before it: those belong to the count, not to the record.
    fn of(&mut self, position: Option<&csv::Position>) -> u64 {
        let target = position.and_then(|position| usize::try_from(position.byte()).ok()).unwrap_or(0);
        let mut end = target.clamp(self.offset, self.bytes.len());
        while self.bytes.get(end).is_some_and(|byte| matches!(byte, b'\n' | b'\r')) {
            end += 1;
        }
        let newlines = self.bytes[self.offset..end].iter().filter(|&&byte| byte == b'\n').count();
        self.line += u64::try_from(newlines).unwrap_or(u64::MAX);
        self.offset = end;
        self.line
    }

    fn csv_error(&mut self, error: csv::Error) -> OrdersError {
        let line = self.of(error.position());
        match error.into_kind() {
            csv::ErrorKind::Io(error) => OrdersError::Io(error),
            csv::ErrorKind::Utf8 { .. } => {
                OrdersError::Malformed { line, message: "is not valid UTF-8".into() }
            }
            other => OrdersError::Malformed { line, message: format!("{other:?}") },
        }
    }
}

/// Why `gridshare clear` failed.
#[derive(Debug, thiserror::Error)]
pub enum ClearCommandError {
    #[error(transparent)]
    Orders(#[from] OrdersError),
    #[error("line {line}: {message}")]
    Order { line: u64, message: String },
    #[error("{0}")]
    Params(ClearError),
}

/// Clears a book, turning the auction's refusals into messages that name the
/// line of the offending order.
pub fn clear_book(book: Book, params: &Params) -> Result<Clearing<String>, ClearCommandError> {
    let Book { orders, lines } = book;
    gridshare_matching::clear(orders, params).map_err(|error| {
        let position = match &error {
            ClearError::ZeroEnergy { position }
            | ClearError::EnergyAboveMax { position, .. }
            | ClearError::PriceAboveMax { position, .. } => Some(*position),
            _ => None,
        };
        match position.and_then(|position| lines.get(position)) {
            Some(&line) => {
                let message = error.to_string();
                let message = message.split_once(" has ").map_or(message.as_str(), |(_, rest)| rest);
                ClearCommandError::Order { line, message: format!("the order has {message}") }
            }
            None => ClearCommandError::Params(error),
        }
    })
}

/// The `--json` output. Field order and names are part of the interface.
#[derive(Debug, Serialize)]
pub struct ClearingJson<'a> {
    pub mechanism: &'static str,
    pub clearing_price_micro_per_kwh: Option<u64>,
    pub volume_wh: u64,
    pub fills: Vec<FillJson<'a>>,
    pub trades: Vec<TradeJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct FillJson<'a> {
    pub id: &'a str,
    pub side: &'static str,
    pub filled_wh: u64,
}

#[derive(Debug, Serialize)]
pub struct TradeJson<'a> {
    pub buy_id: &'a str,
    pub sell_id: &'a str,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
}

/// The JSON form of a clearing: the filled orders in ascending id order and
/// the trades in pairing order.
pub fn to_json(clearing: &Clearing<String>) -> ClearingJson<'_> {
    ClearingJson {
        mechanism: clearing.mechanism.as_str(),
        clearing_price_micro_per_kwh: clearing.clearing_price_micro_per_kwh,
        volume_wh: clearing.volume_wh,
        fills: clearing
            .fills
            .iter()
            .filter(|fill| fill.filled_wh > 0)
            .map(|fill| FillJson { id: &fill.id, side: fill.side.as_str(), filled_wh: fill.filled_wh })
            .collect(),
        trades: clearing
            .trades
            .iter()
            .map(|trade| TradeJson {
                buy_id: &clearing.fills[trade.buy].id,
                sell_id: &clearing.fills[trade.sell].id,
                energy_wh: trade.energy_wh,
                price_micro_per_kwh: trade.price_micro_per_kwh,
            })
            .collect(),
    }
}

/// The clearing for people: a summary and the table of trades.
pub fn to_text(params: &Params, clearing: &Clearing<String>) -> String {
    let kwh = |wh| format_scaled(wh, scale::KWH_TO_WH);
    let price = |micro| format_scaled(micro, scale::CURRENCY_TO_MICRO);
    let count = |side: Side| clearing.fills.iter().filter(|fill| fill.side == side).count();
    let filled =
        |side: Side| clearing.fills.iter().filter(|fill| fill.side == side && fill.filled_wh > 0).count();

    let mut out = String::new();
    let mechanism = match params.mechanism {
        Mechanism::Uniform => format!("uniform price, k = {}", format_scaled(params.k_thousandths.into(), 3)),
        Mechanism::PayAsBid => "pay-as-bid".to_string(),
    };
    out += &format!(
        "Mechanism       {mechanism}, network fee {} per kWh\n",
        price(params.network_fee_micro_per_kwh)
    );
    out += &format!(
        "Orders          {} buy ({} filled), {} sell ({} filled)\n",
        count(Side::Buy),
        filled(Side::Buy),
        count(Side::Sell),
        filled(Side::Sell)
    );
    match clearing.clearing_price_micro_per_kwh {
        Some(micro) => out += &format!("Clearing price  {} per kWh\n", price(micro)),
        None if params.mechanism == Mechanism::PayAsBid && clearing.volume_wh > 0 => {
            out += "Clearing price  none: each trade at its buyer's price net of the fee\n"
        }
        None => out += "Clearing price  none: no bid meets an ask\n",
    }
    out += &format!("Volume          {} kWh in {} trades\n", kwh(clearing.volume_wh), clearing.trades.len());
    if !clearing.trades.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = clearing
            .trades
            .iter()
            .map(|trade| {
                let (buy_id, sell_id) = clearing.trade_ids(trade);
                vec![buy_id.clone(), sell_id.clone(), kwh(trade.energy_wh), price(trade.price_micro_per_kwh)]
            })
            .collect();
        out += &table::render(
            &[
                ("BUYER", Align::Left),
                ("SELLER", Align::Left),
                ("ENERGY (kWh)", Align::Right),
                ("PRICE (per kWh)", Align::Right),
            ],
            &rows,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Book, OrdersError> {
        read_orders(text.as_bytes())
    }

    #[test]
    fn reads_a_book_exactly() {
        let book =
            read("id,side,energy_kwh,price_per_kwh\nh1,sell,2.5,0.11\n\r\n\n h2 , buy ,0.001,0.000001\n")
                .unwrap();
        assert_eq!(
            book.orders,
            vec![
                Order { id: "h1".into(), side: Side::Sell, energy_wh: 2_500, price_micro_per_kwh: 110_000 },
                Order { id: "h2".into(), side: Side::Buy, energy_wh: 1, price_micro_per_kwh: 1 },
            ]
        );
        assert_eq!(book.lines, vec![2, 5]);
    }

    #[test]
    fn refuses_bad_lines_by_number() {
        let cases = [
            ("", "the file is empty"),
            ("id,side,energy,price\n", "line 1: expected the header"),
            ("id,side,energy_kwh,price_per_kwh\nh1,sell,2.5\n", "line 2: expected 4 fields"),
            ("id,side,energy_kwh,price_per_kwh\nh1,sell,2.5,0.1,x\n", "line 2: expected 4 fields"),
            ("id,side,energy_kwh,price_per_kwh\n,sell,2.5,0.1\n", "line 2: id `` must be"),
            ("id,side,energy_kwh,price_per_kwh\nh1,hold,2.5,0.1\n", "line 2: side `hold`"),
            ("id,side,energy_kwh,price_per_kwh\nh1,sell,2.5001,0.1\n", "more than 3 decimal places"),
            ("id,side,energy_kwh,price_per_kwh\nh1,sell,0,0.1\n", "line 2: energy_kwh must be positive"),
            ("id,side,energy_kwh,price_per_kwh\nh1,sell,-1,0.1\n", "line 2: energy_kwh `-1` is negative"),
            ("id,side,energy_kwh,price_per_kwh\nh1,sell,1,0.1234567\n", "more than 6 decimal places"),
            ("id,side,energy_kwh,price_per_kwh\nh1,sell,1,cheap\n", "line 2: price_per_kwh `cheap` is not"),
            (
                "id,side,energy_kwh,price_per_kwh\nh1,sell,1,0.1\nh1,buy,1,0.1\n",
                "line 3: id `h1` is already used on line 2",
            ),
        ];
        for (text, expected) in cases {
            let message = read(text).unwrap_err().to_string();
            assert!(message.contains(expected), "{text:?} gave {message:?}, expected {expected:?}");
        }
        let long_id = format!("id,side,energy_kwh,price_per_kwh\n{},sell,1,0.1\n", "x".repeat(65));
        assert!(matches!(read(&long_id), Err(OrdersError::Id { line: 2, .. })));
        let bad_utf8 = b"id,side,energy_kwh,price_per_kwh\n\nh\xff,sell,1,0.1\n";
        assert!(matches!(read_orders(&bad_utf8[..]), Err(OrdersError::Malformed { line: 3, .. })));
    }
}
