//! `GET /v1/events`: the server-sent events a node streams (a block, a
//! clearing, a settlement, or `lagged` for a client that fell behind), and
//! a parser of the event-stream format that bounds every line and event.

use std::io::BufRead;

use gridshare_ledger::Hash;
use serde::{Deserialize, Serialize};

use crate::blocks::Bill;
use crate::bounds::EVENT_BYTES_MAX;
use crate::intervals::Clearing;
use crate::text::hex;

/// One event of the stream; as JSON, `{"event": NAME, "data": DATA}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "lowercase")]
pub enum Event {
    /// A block was committed.
    Block(BlockEvent),
    /// An interval cleared: the clearing receipt with its block's height.
    Clearing(Clearing),
    /// An interval settled: every bill.
    Settlement(SettlementEvent),
    /// The client fell more than the node's buffer behind: `missed` events
    /// were skipped and the stream goes on with the newest.
    Lagged(Lagged),
}

/// `event: block`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEvent {
    pub height: u64,
    #[serde(with = "hex")]
    pub hash: Hash,
    pub timestamp_ms: u64,
    /// How many transactions the block holds.
    pub transactions: u64,
}

/// `event: settlement`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementEvent {
    pub interval: u64,
    pub height: u64,
    pub bills: Vec<Bill>,
}

/// `event: lagged`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lagged {
    pub missed: u64,
}

/// An event's data that does not follow docs/API.md.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("a `{name}` event does not follow docs/API.md: {problem}")]
    BadData { name: String, problem: String },
    #[error("a `{name}` event larger than {EVENT_BYTES_MAX} bytes was skipped")]
    TooLarge { name: String },
}

impl Event {
    /// The `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Block(_) => "block",
            Event::Clearing(_) => "clearing",
            Event::Settlement(_) => "settlement",
            Event::Lagged(_) => "lagged",
        }
    }

    /// The `data:` JSON.
    pub fn data_json(&self) -> String {
        let data = match self {
            Event::Block(block) => serde_json::to_string(block),
            Event::Clearing(clearing) => serde_json::to_string(clearing),
            Event::Settlement(settlement) => serde_json::to_string(settlement),
            Event::Lagged(lagged) => serde_json::to_string(lagged),
        };
        // Serializing these types cannot fail: no maps with non-string keys.
        data.unwrap_or_default()
    }

    /// The event of a raw server-sent event; `Ok(None)` for a name this
    /// version does not know (a newer node's), which a client skips.
    pub fn parse(raw: &SseEvent) -> Result<Option<Event>, EventError> {
        let bad = |problem: serde_json::Error| EventError::BadData {
            name: raw.event.clone(),
            problem: problem.to_string(),
        };
        Ok(Some(match raw.event.as_str() {
            "block" => Event::Block(serde_json::from_str(&raw.data).map_err(bad)?),
            "clearing" => Event::Clearing(serde_json::from_str(&raw.data).map_err(bad)?),
            "settlement" => Event::Settlement(serde_json::from_str(&raw.data).map_err(bad)?),
            "lagged" => Event::Lagged(serde_json::from_str(&raw.data).map_err(bad)?),
            _ => return Ok(None),
        }))
    }
}

/// One server-sent event as it came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when there is none.
    pub event: String,
    /// The `data:` lines joined with newlines.
    pub data: String,
}

/// What one line did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseLine {
    /// Nothing complete yet.
    Pending,
    /// A blank line completed this event.
    Event(SseEvent),
    /// A blank line ended an event whose data exceeded [`EVENT_BYTES_MAX`];
    /// it was dropped.
    Dropped { event: String },
}

/// The server-sent events parser of the WHATWG HTML standard (§9.2.6), fed
/// one line at a time. Comments (the node's keep-alives), `id:` and
/// `retry:` are ignored.
#[derive(Debug, Default)]
pub struct SseParser {
    event: String,
    data: String,
    has_data: bool,
    overflowed: bool,
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

#[cfg(test)]
mod tests {
    use std::io::BufReader;

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

    /// Each event parses into its type and names itself; an unknown name is
    /// skipped, and data that does not follow the docs is an error.
    #[test]
    fn events_parse_into_their_types() {
        let raw = |event: &str, data: &str| SseEvent { event: event.into(), data: data.into() };
        let hash = "ab".repeat(32);
        let block = raw(
            "block",
            &format!("{{\"height\":20,\"hash\":\"{hash}\",\"timestamp_ms\":1,\"transactions\":3}}"),
        );
        let parsed = Event::parse(&block).unwrap().unwrap();
        assert_eq!(parsed.name(), "block");
        assert!(matches!(&parsed, Event::Block(block) if block.height == 20 && block.transactions == 3));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&parsed.data_json()).unwrap()["height"], 20);
        let json = serde_json::to_value(&parsed).unwrap();
        assert_eq!((json["event"].as_str(), json["data"]["height"].as_u64()), (Some("block"), Some(20)));
        assert_eq!(
            Event::parse(&raw("lagged", "{\"missed\":7}")),
            Ok(Some(Event::Lagged(Lagged { missed: 7 })))
        );
        assert_eq!(Event::parse(&raw("vote", "{}")), Ok(None));
        assert!(matches!(
            Event::parse(&raw("clearing", "{\"interval\":1}")),
            Err(EventError::BadData { .. })
        ));
    }
}
