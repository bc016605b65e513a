//! The node's Prometheus metrics (`GET /metrics`): chain progress, peers,
//! the mempool, gossip verdicts, sync and API traffic, and, as the
//! `gridshare_bound` gauge, the capacity of the bounds that start-up names
//! (`start.rs`: commands, events, mempool transactions and per signer,
//! gossip and transaction bytes, the verification batch, sync blocks, bans,
//! API request bytes), so that an operator can hold a level against its
//! bound. The event loop updates them as it carries out the chain core's
//! effects.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A gossip message's topic and the verdict it got.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GossipLabels {
    pub topic: &'static str,
    pub verdict: &'static str,
}

/// A submitted transaction's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// This build: its release and the protocol version it speaks.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    protocol: u16,
}

/// A bounded queue or size by name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BoundLabels {
    pub bound: &'static str,
}

/// A latency in milliseconds: buckets from 50 ms doubling to 51.2 s.
#[derive(Clone, Debug)]
pub struct LatencyMs(Histogram);

impl Default for LatencyMs {
    fn default() -> LatencyMs {
        LatencyMs(Histogram::new(exponential_buckets(50.0, 2.0, 11)))
    }
}

impl LatencyMs {
    pub fn observe(&self, latency_ms: u64) {
        // Exact up to 49 days; a longer latency counts in the last bucket.
        self.0.observe(f64::from(u32::try_from(latency_ms).unwrap_or(u32::MAX)));
    }
}

/// Every metric; cheap to update from the event loop (atomics).
#[derive(Debug, Default)]
pub struct Metrics {
    pub height: Gauge,
    pub peers: Gauge,
    pub mempool_transactions: Gauge,
    pub blocks_committed: Counter,
    pub transactions_committed: Counter,
    pub intervals_cleared: Counter,
    pub trades: Counter,
    pub settlements: Counter,
    pub gossip_messages: Family<GossipLabels, Counter>,
    pub gossip_messages_dropped: Counter,
    pub gossip_replays: Counter,
    pub verify_batches: Counter,
    pub submissions: Family<OutcomeLabels, Counter>,
    pub sync_requests_sent: Counter,
    pub sync_blocks_received: Counter,
    pub transactions_announced: Counter,
    pub direct_transactions_received: Counter,
    pub api_requests: Counter,
    pub events_dropped: Counter,
    pub bounds: Family<BoundLabels, Gauge>,
    /// Between the timestamps of consecutive committed blocks.
    pub block_interval_ms: LatencyMs,
    /// From a transaction's acknowledgement here to the commit of the block
    /// that holds it.
    pub offer_to_ledger_ms: LatencyMs,
    /// From an interval's gate closure to the commit of its clearing, on
    /// this node's clock.
    pub clearing_after_gate_closure_ms: LatencyMs,
}

impl Metrics {
    /// The metrics with the node's bounds recorded.
    pub fn new(bounds: &[(&'static str, usize)]) -> Metrics {
        let metrics = Metrics::default();
        for &(bound, value) in bounds {
            metrics
                .bounds
                .get_or_create(&BoundLabels { bound })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        metrics
    }

    pub fn gossip(&self, topic: &'static str, verdict: &'static str) {
        self.gossip_messages.get_or_create(&GossipLabels { topic, verdict }).inc();
    }

    pub fn submission(&self, outcome: &'static str) {
        self.submissions.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("gridshare");
        registry.register("height", "Height of the last committed block", self.height.clone());
        registry.register("peers", "Connected libp2p peers", self.peers.clone());
        registry.register(
            "mempool_transactions",
            "Transactions waiting for a block",
            self.mempool_transactions.clone(),
        );
        registry.register("blocks_committed", "Blocks committed", self.blocks_committed.clone());
        registry.register(
            "transactions_committed",
            "Transactions in committed blocks",
            self.transactions_committed.clone(),
        );
        registry.register("intervals_cleared", "Intervals cleared", self.intervals_cleared.clone());
        registry.register("trades", "Trades in cleared intervals", self.trades.clone());
        registry.register("settlements", "Intervals settled", self.settlements.clone());
        registry.register(
            "gossip_messages",
            "Gossip messages by topic and verdict",
            self.gossip_messages.clone(),
        );
        registry.register(
            "gossip_messages_dropped",
            "Gossip messages not sent to a slow peer in time or for a full queue",
            self.gossip_messages_dropped.clone(),
        );
        registry.register(
            "gossip_replays",
            "Gossiped transactions already in a block (ignored)",
            self.gossip_replays.clone(),
        );
        registry.register(
            "verify_batches",
            "Batches in which transactions' signatures were verified together (gossiped and submitted)",
            self.verify_batches.clone(),
        );
        registry.register("submissions", "API submissions by outcome", self.submissions.clone());
        registry.register("sync_requests_sent", "Catch-up requests sent", self.sync_requests_sent.clone());
        registry.register(
            "sync_blocks_received",
            "Blocks received in catch-up responses",
            self.sync_blocks_received.clone(),
        );
        registry.register(
            "transactions_announced",
            "Transactions sent directly to a peer again, because they waited for a block too long (one per peer)",
            self.transactions_announced.clone(),
        );
        registry.register(
            "direct_transactions_received",
            "Transactions new here that a peer sent directly (fetched behind a nonce gap, or announced)",
            self.direct_transactions_received.clone(),
        );
        registry.register("api_requests", "HTTP API requests", self.api_requests.clone());
        registry.register(
            "events_dropped",
            "Events a slow event-stream client missed",
            self.events_dropped.clone(),
        );
        registry.register("bound", "Capacity of each bounded queue, cache and size", self.bounds.clone());
        registry.register(
            "block_interval_ms",
            "Time between consecutive committed blocks' timestamps, ms",
            self.block_interval_ms.0.clone(),
        );
        registry.register(
            "offer_to_ledger_ms",
            "From a transaction's acknowledgement by this node to the commit of its block, ms",
            self.offer_to_ledger_ms.0.clone(),
        );
        registry.register(
            "clearing_after_gate_closure_ms",
            "From an interval's gate closure to the commit of its clearing on this node's clock, ms",
            self.clearing_after_gate_closure_ms.0.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                protocol: gridshare_ledger::encoding::PROTOCOL_VERSION,
            })
            .set(1);
        registry.register("build_info", "This build's release and protocol version (always 1)", build);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn metrics_are_exposed_with_their_labels() {
        let metrics = Metrics::new(&[("mempool_transactions_max", 20_000)]);
        metrics.height.set(7);
        metrics.gossip("tx", "reject");
        metrics.offer_to_ledger_ms.observe(120);
        metrics.offer_to_ledger_ms.observe(70_000);
        let text = metrics.encode();
        assert!(text.contains("gridshare_height 7"), "{text}");
        assert!(
            text.contains("gridshare_gossip_messages_total{topic=\"tx\",verdict=\"reject\"} 1"),
            "{text}"
        );
        assert!(text.contains("gridshare_bound{bound=\"mempool_transactions_max\"} 20000"), "{text}");
        let build = format!(
            "gridshare_build_info{{version=\"{}\",protocol=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            gridshare_ledger::encoding::PROTOCOL_VERSION
        );
        assert!(text.contains(&build), "{text}");
        // 120 ms falls in the 200 ms bucket; 70 s only in +Inf.
        assert!(text.contains("gridshare_offer_to_ledger_ms_bucket{le=\"100.0\"} 0"), "{text}");
        assert!(text.contains("gridshare_offer_to_ledger_ms_bucket{le=\"200.0\"} 1"), "{text}");
        assert!(text.contains("gridshare_offer_to_ledger_ms_bucket{le=\"51200.0\"} 1"), "{text}");
        assert!(text.contains("gridshare_offer_to_ledger_ms_count 2"), "{text}");
    }

    #[test]
    #[allow(clippy::unwrap_used)] // Test code: a panic is the failure report.
    fn the_grafana_dashboard_queries_only_metrics_the_node_exposes() {
        let text = Metrics::new(&[("mempool_transactions_max", 1)]).encode();
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../deploy/grafana-dashboard.json")).unwrap();
        let exprs: Vec<&str> = dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|panel| panel["targets"].as_array().unwrap())
            .map(|target| target["expr"].as_str().unwrap())
            .collect();
        assert!(exprs.len() >= 10, "{exprs:?}");
        for expr in exprs {
            let mut rest = expr;
            while let Some(start) = rest.find("gridshare_") {
                let name: String =
                    rest[start..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                rest = &rest[start + name.len()..];
                // A counter is declared under its name without `_total`, a
                // histogram without `_bucket`, `_sum` or `_count`.
                let declared = ["", "_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .filter_map(|suffix| name.strip_suffix(suffix))
                    .any(|declared| text.contains(&format!("# TYPE {declared} ")));
                assert!(declared, "{name} (in `{expr}`) is not among the node's metrics:\n{text}");
            }
        }
    }
}
