//! `gridshare watch`: follows a node's server-sent events and prints each
//! clearing and settlement as it happens. The stream is parsed line by line
//! as it arrives, with every line and event bounded, so nothing is buffered
//! without limit however long it runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};

use serde::Deserialize;

use crate::amount::{format_kwh, format_money, format_price};
use crate::keystore::Role;
use crate::market_time::{format_utc, now_ms};
use crate::node_client::NodeError;
use crate::wallet::{CommandError, Wallet, plural, write_json};

/// The longest line, and the most data of one event, accepted.
pub const EVENT_BYTES_MAX: usize = 1024 * 1024;

/// `gridshare watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Print one JSON object a line for programs: {"event": ..., "data": ...}.
    #[arg(long)]
    pub json: bool,
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when there is none.
    pub event: String,
    /// The `data:` lines joined with newlines.
    pub data: String,
}

/// The server-sent events parser of the WHATWG HTML standard (§9.2.6),
/// fed one line at a time. Comments, `id:` and `retry:` are ignored.
#[derive(Debug, Default)]
pub struct SseParser {
    event: String,
    data: String,
    has_data: bool,
    overflowed: bool,
}

/// What one line did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseLine {
    /// Nothing complete yet.
    Pending,
    /// A blank line completed this event.
    Event(SseEvent),
    /// A blank line ended an event whose data exceeded `EVENT_BYTES_MAX`;
    /// it was dropped.
    Dropped { event: String },
}

impl SseParser {
    /// Feeds one line, without its line ending.
    pub fn line(&mut self, line: &str) -> SseLine {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            let (has_data, overflowed) = (self.has_data, self.overflowed);
            self.has_data = false;
            self.overflowed = false;
            let event = if event.is_empty() { "message".to_string() } else { event };
            if overflowed {
                return SseLine::Dropped { event };
            }
            return if has_data { SseLine::Event(SseEvent { event, data }) } else { SseLine::Pending };
        }
        if line.starts_with(':') {
            return SseLine::Pending;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.data.len() + value.len() + 1 > EVENT_BYTES_MAX {
                    self.overflowed = true;
                    self.data.clear();
                } else if !self.overflowed {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                }
                self.has_data = true;
            }
            _ => {}
        }
        SseLine::Pending
    }
}

/// Reads one line (ending in `\n`, `\r\n` or at the end of the stream) of at
/// most `max` bytes into `line`, without its ending. `Ok(false)` at the end
/// of the stream; an error for a longer line.
pub fn read_line_bounded(reader: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> std::io::Result<bool> {
    line.clear();
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok(!line.is_empty());
        }
        let (taken, done) = match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => (end + 1, true),
            None => (available.len(), false),
        };
        if line.len() + taken > max + 2 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line of the event stream is longer than {max} bytes"),
            ));
        }
        line.extend_from_slice(&available[..taken]);
        reader.consume(taken);
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(true);
        }
    }
}

/// A count that the node may send as a number or as the list itself.
fn count(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(number) => number.as_u64(),
        serde_json::Value::Array(items) => u64::try_from(items.len()).ok(),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
struct ClearingEvent {
    interval: u64,
    height: u64,
    clearing_price_micro_per_kwh: Option<u64>,
    volume_wh: u64,
    #[serde(default)]
    trades: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct SettlementEvent {
    interval: u64,
    height: u64,
    #[serde(default)]
    bills: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct LaggedEvent {
    missed: u64,
}

/// Who is watching: the currency, and the keystore's accounts by public key,
/// whose trades and bills are pointed out.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    pub currency: String,
    pub accounts: BTreeMap<String, String>,
}

impl Audience {
    /// `; yours: home bought 1.000 kWh at 0.550000 EUR/kWh` for the trades of
    /// the audience's accounts in a clearing's list of trades.
    fn own_trades(&self, trades: &serde_json::Value) -> String {
        let mut parts = Vec::new();
        for trade in trades.as_array().into_iter().flatten() {
            let (Some(energy_wh), Some(price)) =
                (trade["energy_wh"].as_u64(), trade["price_micro_per_kwh"].as_u64())
            else {
                continue;
            };
            for (role, verb) in [("buyer", "bought"), ("seller", "sold")] {
                if let Some(name) = trade[role].as_str().and_then(|key| self.accounts.get(key)) {
                    parts.push(format!(
                        "{name} {verb} {} kWh at {} {}/kWh",
                        format_kwh(energy_wh),
                        format_price(price),
                        self.currency
                    ));
                }
            }
        }
        if parts.is_empty() { String::new() } else { format!("; yours: {}", parts.join(", ")) }
    }

    /// `; yours: home -0.49 EUR` for the bills of the audience's accounts.
    fn own_bills(&self, bills: &serde_json::Value) -> String {
        let parts: Vec<String> = bills
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|bill| {
                let name = self.accounts.get(bill["account"].as_str()?)?;
                let total: i128 = bill["total_nano"].as_str()?.parse().ok()?;
                Some(format!("{name} {}", format_money(total, &self.currency)))
            })
            .collect();
        if parts.is_empty() { String::new() } else { format!("; yours: {}", parts.join(", ")) }
    }
}

/// An event for people, `None` for events `watch` does not show (blocks).
pub fn describe(event: &SseEvent, audience: &Audience) -> Result<Option<String>, String> {
    let currency = &audience.currency;
    let bad =
        |error: serde_json::Error| format!("a `{}` event does not follow docs/API.md: {error}", event.event);
    Ok(Some(match event.event.as_str() {
        "clearing" => {
            let clearing: ClearingEvent = serde_json::from_str(&event.data).map_err(bad)?;
            let trades = count(&clearing.trades);
            if clearing.volume_wh == 0 {
                format!("interval {} cleared at height {}: no trade", clearing.interval, clearing.height)
            } else {
                let price = clearing.clearing_price_micro_per_kwh.map_or_else(
                    || "pay-as-bid prices".to_string(),
                    |p| format!("{} {currency}/kWh", format_price(p)),
                );
                let trades =
                    trades.map_or_else(String::new, |n| format!(" in {}", plural(n, "trade", "trades")));
                format!(
                    "interval {} cleared at height {}: {} kWh at {price}{trades}{}",
                    clearing.interval,
                    clearing.height,
                    format_kwh(clearing.volume_wh),
                    audience.own_trades(&clearing.trades)
                )
            }
        }
        "settlement" => {
            let settlement: SettlementEvent = serde_json::from_str(&event.data).map_err(bad)?;
            let bills = count(&settlement.bills)
                .map_or_else(String::new, |n| format!(": {}", plural(n, "bill", "bills")));
            format!(
                "interval {} settled at height {}{bills}{}",
                settlement.interval,
                settlement.height,
                audience.own_bills(&settlement.bills)
            )
        }
        "lagged" => {
            let lagged: LaggedEvent = serde_json::from_str(&event.data).map_err(bad)?;
            format!("fell behind the node: {} missed", plural(lagged.missed, "event", "events"))
        }
        _ => return Ok(None),
    }))
}

/// Whether writing failed because the reader went away (`watch | head`).
fn closed(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::BrokenPipe
}

/// Follows `stream`, writing each clearing and settlement to `out`, until
/// the stream ends (an error) or `out` is closed (success).
pub fn follow(
    stream: impl std::io::Read,
    url: &str,
    audience: &Audience,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let gone = |cause: String| CommandError::Node(NodeError::Unreachable { url: url.to_string(), cause });
    let mut reader = BufReader::new(stream);
    let mut parser = SseParser::default();
    let mut line = Vec::new();
    loop {
        let more = read_line_bounded(&mut reader, &mut line, EVENT_BYTES_MAX)
            .map_err(|error| gone(format!("the event stream broke off: {error}")))?;
        if !more {
            return Err(gone("it closed the event stream".to_string()));
        }
        let text = String::from_utf8_lossy(&line);
        let event = match parser.line(&text) {
            SseLine::Pending => continue,
            SseLine::Dropped { event } => {
                eprintln!("warning: skipped a `{event}` event larger than {EVENT_BYTES_MAX} bytes");
                continue;
            }
            SseLine::Event(event) => event,
        };
        let written = if json {
            if !matches!(event.event.as_str(), "clearing" | "settlement" | "lagged") {
                continue;
            }
            let data: serde_json::Value = match serde_json::from_str(&event.data) {
                Ok(data) => data,
                Err(error) => {
                    eprintln!("warning: a `{}` event is not JSON: {error}", event.event);
                    continue;
                }
            };
            write_json(out, &serde_json::json!({ "event": event.event, "data": data }))
        } else {
            match describe(&event, audience) {
                Ok(Some(text)) if event.event == "lagged" => {
                    eprintln!("warning: {text}");
                    continue;
                }
                Ok(Some(text)) => {
                    writeln!(out, "{}  {text}", format_utc(now_ms())).map_err(CommandError::from)
                }
                Ok(None) => continue,
                Err(message) => {
                    eprintln!("warning: {message}");
                    continue;
                }
            }
        };
        match written.and_then(|()| out.flush().map_err(CommandError::from)) {
            Ok(()) => {}
            Err(CommandError::Output(error)) if closed(&error) => return Ok(()),
            Err(error) => return Err(error),
        }
    }
}

/// `gridshare watch`: until Ctrl-C.
pub fn watch(wallet: &Wallet, args: &WatchArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let currency = wallet.community()?.currency().to_string();
    // A keystore that cannot be read only means no trade is pointed out.
    let accounts = wallet
        .keys()
        .map(|keys| {
            keys.iter()
                .filter(|file| file.role == Role::Account)
                .map(|file| (file.public_key.clone(), file.name.clone()))
                .collect()
        })
        .unwrap_or_default();
    let audience = Audience { currency, accounts };
    let stream = wallet.node().events()?;
    if !args.json {
        eprintln!("Watching {} for clearings and settlements (Ctrl-C to stop).", wallet.node().url());
    }
    follow(stream, wallet.node().url(), &audience, args.json, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(parser: &mut SseParser, text: &str) -> Vec<SseLine> {
        text.split('\n').map(|line| parser.line(line)).filter(|line| *line != SseLine::Pending).collect()
    }

    #[test]
    fn parses_events_line_by_line() {
        let mut parser = SseParser::default();
        let events = feed(
            &mut parser,
            ": keep-alive\nevent: clearing\ndata: {\"a\":\ndata:1}\nid: 7\n\ndata: plain\n\nevent: block\n\n",
        );
        assert_eq!(
            events,
            vec![
                SseLine::Event(SseEvent { event: "clearing".into(), data: "{\"a\":\n1}".into() }),
                SseLine::Event(SseEvent { event: "message".into(), data: "plain".into() }),
            ]
        );
        // The event name does not carry over to the next event.
        assert_eq!(
            feed(&mut parser, "data: x\n\n"),
            vec![SseLine::Event(SseEvent { event: "message".into(), data: "x".into() })]
        );
    }

    #[test]
    fn oversized_events_are_dropped_not_buffered() {
        let mut parser = SseParser::default();
        let chunk = "x".repeat(EVENT_BYTES_MAX / 2);
        assert_eq!(parser.line("event: settlement"), SseLine::Pending);
        for _ in 0..5 {
            assert_eq!(parser.line(&format!("data: {chunk}")), SseLine::Pending);
            assert!(parser.data.len() <= EVENT_BYTES_MAX);
        }
        assert_eq!(parser.line(""), SseLine::Dropped { event: "settlement".into() });
        assert_eq!(parser.line("data: ok"), SseLine::Pending);
        assert_eq!(parser.line(""), SseLine::Event(SseEvent { event: "message".into(), data: "ok".into() }));
    }

    #[test]
    fn lines_are_bounded() {
        let mut reader = std::io::Cursor::new(b"one\r\ntwo\nthree".to_vec());
        let mut line = Vec::new();
        let mut lines = Vec::new();
        while read_line_bounded(&mut reader, &mut line, 10).unwrap() {
            lines.push(String::from_utf8(line.clone()).unwrap());
        }
        assert_eq!(lines, ["one", "two", "three"]);
        let mut long = BufReader::with_capacity(4, std::io::Cursor::new(vec![b'x'; 100]));
        assert!(read_line_bounded(&mut long, &mut line, 10).is_err());
        assert!(line.len() <= 12);
    }

    #[test]
    fn follows_a_stream_until_it_ends() {
        let stream = "event: block\ndata: {\"height\":20,\"hash\":\"h\",\"timestamp_ms\":1,\"transactions\":0}\n\n\
            event: clearing\ndata: {\"interval\":14,\"height\":20,\"clearing_price_micro_per_kwh\":175000,\"volume_wh\":1000,\"trades\":[\
            {\"buyer\":\"b1\",\"seller\":\"s1\",\"energy_wh\":1000,\"price_micro_per_kwh\":175000}]}\n\n\
            event: clearing\ndata: {\"interval\":15,\"height\":22,\"clearing_price_micro_per_kwh\":null,\"volume_wh\":0,\"trades\":[]}\n\n\
            event: settlement\ndata: {\"interval\":10,\"height\":31,\"bills\":[{\"account\":\"b1\",\"total_nano\":\"-179000000\"},\
            {\"account\":\"s1\",\"total_nano\":\"175000000\"}]}\n\n\
            event: settlement\ndata: {\"interval\":11,\"height\":32,\"bills\":2}\n\n\
            event: clearing\ndata: not json\n\n";
        let mut out = Vec::new();
        let audience =
            Audience { currency: "EUR".into(), accounts: [("b1".to_string(), "home".to_string())].into() };
        let error = follow(stream.as_bytes(), "http://node", &audience, false, &mut out).unwrap_err();
        assert!(
            error.to_string().starts_with("node not reachable at http://node: it closed the event stream"),
            "{error}"
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().map(|line| line.split_once(" UTC  ").unwrap().1).collect();
        assert_eq!(
            lines,
            [
                "interval 14 cleared at height 20: 1.000 kWh at 0.175000 EUR/kWh in 1 trade; yours: home bought 1.000 kWh at 0.175000 EUR/kWh",
                "interval 15 cleared at height 22: no trade",
                "interval 10 settled at height 31: 2 bills; yours: home -0.179 EUR",
                "interval 11 settled at height 32: 2 bills",
            ]
        );
        let mut out = Vec::new();
        assert!(follow(stream.as_bytes(), "http://node", &audience, true, &mut out).is_err());
        let json: Vec<serde_json::Value> =
            String::from_utf8(out).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(json.len(), 4);
        assert_eq!(json[0]["event"], "clearing");
        assert_eq!(json[0]["data"]["interval"], 14);
        assert_eq!(json[2]["event"], "settlement");
    }
}
