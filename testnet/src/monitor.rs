//! Watching the community while it runs: a thread per node follows its
//! event stream (`GET /v1/events`) and journals when each block and each
//! clearing is first seen there; a poller reads every node's status and
//! peak memory each second; and the progress display shows intervals
//! cleared, trades, the last clearing price, nodes up and height, as a
//! progress bar on a terminal and as plain lines otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridshare_api::client::StreamError;
use gridshare_api::events::Event;

use crate::journal::{ClearingSeen, Journal, now_ms};
use crate::manifest::format_decimal;
use crate::nodes::Node;

/// How long a watcher waits before reconnecting to a node's stream.
const RECONNECT: Duration = Duration::from_millis(250);
/// How often the poller reads statuses.
const POLL: Duration = Duration::from_secs(1);

/// Follows `node`'s event stream until `stop`, reconnecting after restarts.
pub fn watch_events(node: &Node, index: usize, journal: &Journal, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        if !node.is_up() {
            std::thread::sleep(RECONNECT);
            continue;
        }
        let Ok(events) = node.api().events() else {
            std::thread::sleep(RECONNECT);
            continue;
        };
        for event in events {
            let seen_ms = now_ms();
            match event {
                Ok(event) => record(journal, index, &event, seen_ms),
                // One event skipped (it did not follow the docs): go on.
                Err(StreamError::Event(_)) => {}
                Err(StreamError::Broken { .. }) => break,
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
        std::thread::sleep(RECONNECT);
    }
}

fn record(journal: &Journal, node: usize, event: &Event, seen_ms: u64) {
    match event {
        Event::Block(block) => journal.block_seen(block.height, seen_ms),
        Event::Clearing(clearing) => {
            let receipt = &clearing.receipt;
            journal.clearing_seen(ClearingSeen {
                interval: receipt.interval,
                node,
                seen_ms,
                price_micro_per_kwh: receipt.clearing_price_micro_per_kwh,
                volume_wh: receipt.volume_wh,
                trades: u64::try_from(receipt.trades.len()).unwrap_or(u64::MAX),
            });
        }
        Event::Lagged(lagged) => journal.events_lagged(lagged.missed),
        Event::Settlement(_) => {}
    }
}

/// The latest status of every node, for the progress display.
#[derive(Debug, Default)]
pub struct Board {
    heights: Mutex<Vec<Option<u64>>>,
    pub validator_height: AtomicU64,
}

impl Board {
    pub fn new(nodes: usize) -> Board {
        Board { heights: Mutex::new(vec![None; nodes]), validator_height: AtomicU64::new(0) }
    }

    /// Nodes that answered the last poll, and the highest height.
    pub fn summary(&self) -> (usize, u64) {
        let heights = self.heights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (heights.iter().flatten().count(), heights.iter().flatten().copied().max().unwrap_or(0))
    }
}

/// Polls every node's status and memory until `stop`.
pub fn poll(nodes: &[Arc<Node>], board: &Board, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let mut heights = Vec::with_capacity(nodes.len());
        for node in nodes {
            node.sample_memory();
            let height =
                if node.is_up() { node.api().status().ok().map(|status| status.height) } else { None };
            heights.push(height);
        }
        if let Some(Some(height)) = heights.first() {
            board.validator_height.store(*height, Ordering::Relaxed);
        }
        *board.heights.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = heights;
        std::thread::sleep(POLL);
    }
}

/// The progress display: a bar on a terminal, a line per interval otherwise.
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line_ms: u64,
    line_every_ms: u64,
}

impl Progress {
    pub fn new(total_s: u64, line_every_ms: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total_s);
            let style = indicatif::ProgressStyle::with_template("{pos:>4}/{len} s [{wide_bar}] {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        // The first plain line comes after one period, when there is news.
        Progress { bar, last_line_ms: now_ms(), line_every_ms }
    }

    /// Shows the state `elapsed_s` seconds into trading.
    pub fn update(&mut self, elapsed_s: u64, journal: &Journal, board: &Board, nodes: usize) {
        let (cleared, trades, price) = journal.progress();
        let (up, height) = board.summary();
        let price = price.map_or_else(|| "-".to_string(), |price| format_decimal(price, 6));
        let message = format!(
            "{cleared} intervals cleared, {trades} trades, last price {price}, {up}/{nodes} nodes up, height {height}"
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(elapsed_s);
                bar.set_message(message);
            }
            None => {
                let now = now_ms();
                if now >= self.last_line_ms + self.line_every_ms {
                    self.last_line_ms = now;
                    println!("[{elapsed_s:>4} s] {message}");
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }

    /// Prints a line above the bar (or as a plain line).
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }
}
