//! `gridshare clear`: reads a book of orders from CSV, runs the auction and
//! prints the clearing as a table or as JSON.
//!
//! The CSV has the header `id,side,energy_kwh,price_per_kwh`, or with a last
//! `zone` column for zonal clearing (docs/AUCTION.md §6, with `--zones`); ids
//! and zone names are 1 to 64 printable ASCII characters, energies positive
//! kWh with at most 3 decimals, prices currency per kWh with at most 6
//! decimals. The zones file has the header `zone,import_wh_max,export_wh_max`
//! (whole Wh). Every refusal names the line it is about.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;

use gridshare_matching::{
    ClearError, Clearing, Mechanism, Order, Params, Side, ZonalClearing, ZonalOrder, ZoneLimits,
};
use serde::Serialize;

use crate::amount::{AmountError, format_scaled, parse_scaled, scale};
use crate::table::{self, Align};

/// The header every order file starts with.
pub const HEADER: &str = "id,side,energy_kwh,price_per_kwh";
/// The header of an order file whose orders name their zones.
pub const ZONED_HEADER: &str = "id,side,energy_kwh,price_per_kwh,zone";
/// The header of a zones file.
pub const ZONES_HEADER: &str = "zone,import_wh_max,export_wh_max";
/// The longest id accepted, in bytes.
pub const ID_LEN_MAX: usize = 64;

/// Why an order file was refused. `line` counts from 1, the header included.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    #[error("line {line}: expected the header `{HEADER}` or `{ZONED_HEADER}`, found `{found}`")]
    Header { line: u64, found: String },
    #[error("the file is empty: expected the header `{HEADER}`")]
    Empty,
    #[error("line {line}: expected {expected} fields (as the header), found {found}")]
    FieldCount { line: u64, expected: usize, found: usize },
    #[error("line {line}: zone `{zone}` must be 1 to {ID_LEN_MAX} printable ASCII characters")]
    Zone { line: u64, zone: String },
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

/// The orders of a file with the line each came from, and each one's zone
/// if the file has a zone column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Book {
    pub orders: Vec<Order<String>>,
    pub lines: Vec<u64>,
    pub zones: Option<Vec<String>>,
}

/// An id or a zone name: 1 to 64 printable ASCII characters.
fn is_name(text: &str) -> bool {
    !text.is_empty() && text.len() <= ID_LEN_MAX && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

/// The CLI's CSV files are read whole: the header checked by hand, any
/// number of fields (refused by line), each field trimmed.
fn csv_reader(bytes: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(bytes)
}

/// Reads and checks a whole order file.
pub fn read_orders(mut input: impl Read) -> Result<Book, OrdersError> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    let mut lines = LineCounter { bytes: &bytes, offset: 0, line: 1 };
    let mut reader = csv_reader(&bytes);
    let mut records = reader.records();

    let header = records.next().ok_or(OrdersError::Empty)?.map_err(|error| lines.csv_error(error))?;
    let found = header.iter().collect::<Vec<&str>>().join(",");
    let zoned = found == ZONED_HEADER;
    if found != HEADER && !zoned {
        return Err(OrdersError::Header { line: lines.of(header.position()), found });
    }

    let mut book = Book { orders: Vec::new(), lines: Vec::new(), zones: zoned.then(Vec::new) };
    for record in records {
        let record = record.map_err(|error| lines.csv_error(error))?;
        let line = lines.of(record.position());
        let fields: Vec<&str> = record.iter().collect();
        let expected = if zoned { 5 } else { 4 };
        let (&[id, side, energy, price], zone) = (&fields[..fields.len().min(4)], fields.get(4)) else {
            return Err(OrdersError::FieldCount { line, expected, found: fields.len() });
        };
        if fields.len() != expected {
            return Err(OrdersError::FieldCount { line, expected, found: fields.len() });
        }
        if !is_name(id) {
            return Err(OrdersError::Id { line, id: id.to_string() });
        }
        if let (Some(zones), Some(zone)) = (&mut book.zones, zone) {
            if !is_name(zone) {
                return Err(OrdersError::Zone { line, zone: zone.to_string() });
            }
            zones.push(zone.to_string());
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
        book.orders.push(Order { id: id.to_string(), side, energy_wh, price_micro_per_kwh });
        book.lines.push(line);
    }
    book.into_id_order()
}

impl Book {
    /// The book in ascending id order, the auction's canonical order (which
    /// saves it a sort), refusing a repeated id: the line that repeats an
    /// earlier id first, with that id's first line.
    fn into_id_order(self) -> Result<Book, OrdersError> {
        let Book { orders, lines, zones } = self;
        // The first 8 bytes of an id, big-endian, decide most comparisons
        // without reading the ids (ids are printable, so the zero padding
        // of a shorter id sorts it first, as comparing the ids would).
        let prefix = |id: &str| {
            let mut bytes = [0_u8; 8];
            let length = id.len().min(8);
            bytes[..length].copy_from_slice(&id.as_bytes()[..length]);
            u64::from_be_bytes(bytes)
        };
        let mut sorted: Vec<(u64, usize)> =
            orders.iter().enumerate().map(|(position, order)| (prefix(&order.id), position)).collect();
        sorted.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| orders[a.1].id.cmp(&orders[b.1].id)).then(a.1.cmp(&b.1))
        });
        // Equal ids are neighbours, in file order: each repeat is the one
        // after its group's first.
        let mut repeated: Option<(usize, usize)> = None;
        let mut group_first = 0;
        for (index, pair) in sorted.windows(2).enumerate() {
            if orders[pair[0].1].id == orders[pair[1].1].id {
                let (first, repeat) = (sorted[group_first].1, pair[1].1);
                if repeated.is_none_or(|(_, earliest)| repeat < earliest) {
                    repeated = Some((first, repeat));
                }
            } else {
                group_first = index + 1;
            }
        }
        if let Some((first, repeat)) = repeated {
            return Err(OrdersError::DuplicateId {
                line: lines[repeat],
                id: orders[repeat].id.clone(),
                first_line: lines[first],
            });
        }
        let mut slots: Vec<Option<Order<String>>> = orders.into_iter().map(Some).collect();
        let orders = sorted
            .iter()
            .map(|&(_, position)| slots[position].take().expect("each position is taken once"))
            .collect();
        let lines = sorted.iter().map(|&(_, position)| lines[position]).collect();
        let zones = zones.map(|mut zones| {
            sorted.iter().map(|&(_, position)| std::mem::take(&mut zones[position])).collect()
        });
        Ok(Book { orders, lines, zones })
    }
}

/// Why a zones file was refused. `line` counts from 1, the header included.
#[derive(Debug, thiserror::Error)]
pub enum ZonesError {
    #[error("the file is empty: expected the header `{ZONES_HEADER}`")]
    Empty,
    #[error("line {line}: expected the header `{ZONES_HEADER}`, found `{found}`")]
    Header { line: u64, found: String },
    #[error("line {line}: expected 3 fields ({ZONES_HEADER}), found {found}")]
    FieldCount { line: u64, found: usize },
    #[error("line {line}: zone `{zone}` must be 1 to {ID_LEN_MAX} printable ASCII characters")]
    Zone { line: u64, zone: String },
    #[error("line {line}: {field} `{text}` is not a whole number of Wh")]
    Limit { line: u64, field: &'static str, text: String },
    #[error("line {line}: zone `{zone}` is already listed on line {first_line}")]
    Duplicate { line: u64, zone: String, first_line: u64 },
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("cannot read the zones: {0}")]
    Io(#[from] std::io::Error),
}

/// A community's zones by name (in ascending name order, which is their
/// index order in the auction), with their limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Zones {
    pub by_name: BTreeMap<String, ZoneLimits>,
}

/// Reads and checks a whole zones file.
pub fn read_zones(mut input: impl Read) -> Result<Zones, ZonesError> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    let mut lines = LineCounter { bytes: &bytes, offset: 0, line: 1 };
    let mut reader = csv_reader(&bytes);
    let malformed = |lines: &mut LineCounter, error: csv::Error| match lines.csv_error(error) {
        OrdersError::Io(error) => ZonesError::Io(error),
        other => ZonesError::Malformed { line: lines.line, message: other.to_string() },
    };
    let mut records = reader.records();
    let header = records.next().ok_or(ZonesError::Empty)?.map_err(|error| malformed(&mut lines, error))?;
    let found = header.iter().collect::<Vec<&str>>().join(",");
    if found != ZONES_HEADER {
        return Err(ZonesError::Header { line: lines.of(header.position()), found });
    }
    let mut zones = Zones::default();
    let mut first_line_of: BTreeMap<String, u64> = BTreeMap::new();
    for record in records {
        let record = record.map_err(|error| malformed(&mut lines, error))?;
        let line = lines.of(record.position());
        let [zone, import, export] = record.iter().collect::<Vec<_>>()[..] else {
            return Err(ZonesError::FieldCount { line, found: record.len() });
        };
        if !is_name(zone) {
            return Err(ZonesError::Zone { line, zone: zone.to_string() });
        }
        let limit = |field: &'static str, text: &str| {
            text.parse::<u64>().map_err(|_| ZonesError::Limit { line, field, text: text.to_string() })
        };
        let limits = ZoneLimits {
            import_wh_max: limit("import_wh_max", import)?,
            export_wh_max: limit("export_wh_max", export)?,
        };
        if let Some(&first_line) = first_line_of.get(zone) {
            return Err(ZonesError::Duplicate { line, zone: zone.to_string(), first_line });
        }
        first_line_of.insert(zone.to_string(), line);
        zones.by_name.insert(zone.to_string(), limits);
    }
    Ok(zones)
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
    #[error("{0}")]
    Zones(String),
}

/// Clears a book, turning the auction's refusals into messages that name the
/// line of the offending order.
pub fn clear_book(book: Book, params: &Params) -> Result<Clearing<String>, ClearCommandError> {
    let Book { orders, lines, zones } = book;
    if zones.is_some() {
        return Err(ClearCommandError::Zones(
            "the orders name zones: give the zones' limits with --zones FILE".into(),
        ));
    }
    gridshare_matching::clear(orders, params).map_err(|error| order_error(error, &lines))
}

/// Clears a book of orders in `zones` (docs/AUCTION.md §6).
pub fn clear_zonal_book(
    book: Book,
    zones: &Zones,
    params: &Params,
) -> Result<ZonalClearing<String>, ClearCommandError> {
    let Book { orders, lines, zones: order_zones } = book;
    let Some(order_zones) = order_zones else {
        let problem = format!("the orders have no zone column: the header must be `{ZONED_HEADER}`");
        return Err(ClearCommandError::Zones(problem));
    };
    // A zone's index is its place in name order.
    let index: BTreeMap<&str, u32> = zones.by_name.keys().map(String::as_str).zip(0..).collect();
    let mut zonal = Vec::with_capacity(orders.len());
    for ((order, zone), line) in orders.into_iter().zip(order_zones).zip(&lines) {
        let Some(&zone) = index.get(zone.as_str()) else {
            return Err(ClearCommandError::Order {
                line: *line,
                message: format!("zone `{zone}` is not in the zones file"),
            });
        };
        zonal.push(ZonalOrder { order, zone });
    }
    let limits: Vec<ZoneLimits> = zones.by_name.values().copied().collect();
    gridshare_matching::clear_zonal(zonal, &limits, params).map_err(|error| order_error(error, &lines))
}

/// An auction's refusal, naming the line of the order it is about.
fn order_error(error: ClearError, lines: &[u64]) -> ClearCommandError {
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
}

/// The `--json` output. Field order and names are part of the interface.
#[derive(Debug, Serialize)]
pub struct ClearingJson<'a> {
    pub mechanism: &'static str,
    pub clearing_price_micro_per_kwh: Option<u64>,
    pub volume_wh: u64,
    pub fills: Vec<FillJson<'a>>,
    pub trades: Vec<TradeJson<'a>>,
    /// With `--zones`: each zone's outcome, in name order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<ZoneJson<'a>>>,
}

#[derive(Debug, Serialize)]
pub struct ZoneJson<'a> {
    pub zone: &'a str,
    pub price_micro_per_kwh: Option<u64>,
    pub net_export_wh: i64,
    pub import_wh_max: u64,
    pub export_wh_max: u64,
    pub congested: bool,
}

/// The JSON form of a zonal clearing: the clearing's, with the zones.
pub fn to_zonal_json<'a>(clearing: &'a ZonalClearing<String>, zones: &'a Zones) -> ClearingJson<'a> {
    ClearingJson {
        zones: Some(
            zones
                .by_name
                .keys()
                .zip(&clearing.zones)
                .map(|(zone, outcome)| ZoneJson {
                    zone,
                    price_micro_per_kwh: outcome.price_micro_per_kwh,
                    net_export_wh: outcome.net_export_wh,
                    import_wh_max: outcome.limits.import_wh_max,
                    export_wh_max: outcome.limits.export_wh_max,
                    congested: outcome.congested,
                })
                .collect(),
        ),
        ..to_json(&clearing.clearing)
    }
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
        zones: None,
    }
}

/// The zones of a zonal clearing for people: a table after the clearing's.
pub fn zones_to_text(clearing: &ZonalClearing<String>, zones: &Zones) -> String {
    let kwh = |wh: u64| format_scaled(wh, scale::KWH_TO_WH);
    let signed_kwh = |wh: i64| format!("{}{}", if wh < 0 { "-" } else { "" }, kwh(wh.unsigned_abs()));
    let limit = |wh: u64| if wh == u64::MAX { "none".to_string() } else { kwh(wh) };
    let rows: Vec<Vec<String>> = zones
        .by_name
        .keys()
        .zip(&clearing.zones)
        .map(|(zone, outcome)| {
            vec![
                zone.clone(),
                outcome
                    .price_micro_per_kwh
                    .map_or_else(|| "-".to_string(), |micro| format_scaled(micro, scale::CURRENCY_TO_MICRO)),
                signed_kwh(outcome.net_export_wh),
                limit(outcome.limits.import_wh_max),
                limit(outcome.limits.export_wh_max),
                if outcome.congested { "congested".to_string() } else { String::new() },
            ]
        })
        .collect();
    let mut out = String::from(
        "\nZones: the clearing price is the community's; a congested zone trades at its own (docs/AUCTION.md §6).\n",
    );
    out += &table::render(
        &[
            ("ZONE", Align::Left),
            ("PRICE (per kWh)", Align::Right),
            ("NET EXPORT (kWh)", Align::Right),
            ("IMPORT MAX (kWh)", Align::Right),
            ("EXPORT MAX (kWh)", Align::Right),
            ("", Align::Left),
        ],
        &rows,
    );
    out
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
        // The ids borrowed: a million trades are a million rows.
        let rows: Vec<Vec<Cow<'_, str>>> = clearing
            .trades
            .iter()
            .map(|trade| {
                let (buy_id, sell_id) = clearing.trade_ids(trade);
                vec![
                    Cow::Borrowed(buy_id.as_str()),
                    Cow::Borrowed(sell_id.as_str()),
                    Cow::Owned(kwh(trade.energy_wh)),
                    Cow::Owned(price(trade.price_micro_per_kwh)),
                ]
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
    fn a_book_comes_back_in_id_order_and_the_first_repeat_is_named() {
        let text = "id,side,energy_kwh,price_per_kwh,zone\nhouse-b,sell,1,0.1,x\nhouse-a,buy,2,0.2,y\nh,buy,3,0.3,z\n";
        let book = read(text).unwrap();
        let ids: Vec<&str> = book.orders.iter().map(|order| order.id.as_str()).collect();
        assert_eq!(ids, ["h", "house-a", "house-b"]);
        assert_eq!(book.lines, [4, 3, 2]);
        assert_eq!(book.zones.unwrap(), ["z", "y", "x"]);
        // `b` repeats on line 4 before `a` does on line 5.
        let repeats = "id,side,energy_kwh,price_per_kwh\nb,sell,1,0.1\na,buy,1,0.1\nb,buy,1,0.1\na,buy,1,0.1\nb,buy,1,0.1\n";
        let message = read(repeats).unwrap_err().to_string();
        assert_eq!(message, "line 4: id `b` is already used on line 2");
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
