//! A hostile client of a real node's API (a dev validator on loopback):
//! 1,000 event-stream subscribers and 50 connections that trickle their
//! headers, all at once. The node serves at most `STREAMS_MAX` streams and
//! refuses the rest (429 `busy`, or the connection closed at the server's
//! cap), keeps committing blocks all along (a served stream sees them), and
//! answers a newcomer again once the hostile connections are gone.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::start;
use gridshare_api::bounds::STREAMS_MAX;
use gridshare_api::harness::BlockWatch;

const SUBSCRIBERS: usize = 1_000;
const TRICKLERS: usize = 50;

/// What a subscription got: the status line's code, or `None` if the
/// server closed the connection without one.
fn status_of(stream: &mut TcpStream) -> Option<u16> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    String::from_utf8_lossy(&head).split(' ').nth(1)?.parse().ok()
}

/// The block events a watched event stream has shown, waited for one at a
/// time with a deadline.
struct BlockEvents {
    seen: Vec<u8>,
    blocks: usize,
    deadline: Instant,
}

impl Default for BlockEvents {
    fn default() -> BlockEvents {
        BlockEvents { seen: Vec::new(), blocks: 0, deadline: Instant::now() + Duration::from_secs(60) }
    }
}

impl BlockEvents {
    /// Reads `stream` until one more block event has come.
    fn next(&mut self, stream: &mut TcpStream, when: &str) {
        let target = self.blocks + 1;
        let mut chunk = [0_u8; 4096];
        while self.blocks < target {
            assert!(Instant::now() < self.deadline, "only {} blocks seen {when}", self.blocks);
            let read = stream.read(&mut chunk).unwrap();
            assert!(read > 0, "the stream ended {when}");
            self.seen.extend_from_slice(&chunk[..read]);
            self.blocks = String::from_utf8_lossy(&self.seen).matches("event: block").count();
        }
    }
}

#[test]
fn a_flood_of_subscribers_and_slow_clients_neither_stops_the_chain_nor_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&["--dev", "--block-time-ms", "100", "--interval-ms", "1000"], dir.path());
    let address = node.api.url().trim_start_matches("http://").to_string();

    let mut subscribers: Vec<TcpStream> = (0..SUBSCRIBERS)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(&address).ok()?;
            stream.write_all(b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
            Some(stream)
        })
        .collect();
    let tricklers: Vec<TcpStream> = (0..TRICKLERS)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(&address).ok()?;
            stream.write_all(b"GET /v1/status HTTP/1.1\r\nHost: 127.0").ok()?;
            Some(stream)
        })
        .collect();
    let statuses: Vec<Option<u16>> = subscribers.iter_mut().map(status_of).collect();
    let served: Vec<usize> = (0..statuses.len()).filter(|index| statuses[*index] == Some(200)).collect();
    let busy = statuses.iter().filter(|status| **status == Some(429)).count();
    let closed = statuses.iter().filter(|status| status.is_none()).count();
    assert!(!served.is_empty() && served.len() <= STREAMS_MAX, "{} streams served", served.len());
    assert_eq!(served.len() + busy + closed, statuses.len(), "{statuses:?}");
    assert!(busy + closed >= SUBSCRIBERS - STREAMS_MAX, "{busy} busy, {closed} closed");

    // Under all of it, a served stream goes on seeing new blocks.
    let mut watched = subscribers.swap_remove(served[0]);
    watched.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut events = BlockEvents::default();
    while events.blocks < 10 {
        events.next(&mut watched, "under the flood");
    }

    // Once the hostile clients are gone, a newcomer is answered again: asked
    // after each block the watched stream sees (the server notices closed
    // streams as it writes the next event to them).
    drop(subscribers);
    drop(tricklers);
    let status = loop {
        if let Ok(status) = node.api.status() {
            break status;
        }
        events.next(&mut watched, "after the flood without an answer to a newcomer");
    };
    assert!(status.height > 0);
    // And streams are served again, their slots given back.
    let blocks = BlockWatch::subscribe(&node.api).unwrap();
    assert!(
        blocks.next_before(Instant::now() + Duration::from_secs(30)).is_some(),
        "no block event after the flood"
    );
}
