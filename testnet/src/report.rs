//! The run's report: the figures computed from the exported ledger and the
//! journal (trades, energy traded locally and with the grid, the
//! community's savings against grid-only bills, latencies, throughput),
//! the checks, the faults and the findings, as JSON and as a summary for
//! people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use gridshare_households::agent::Flexibility;
use gridshare_ledger::NANOS_PER_UNIT;
use serde::Serialize;

use crate::chain::Chain;
use crate::journal::Snapshot;
use crate::manifest::format_decimal;
use crate::perturb::FaultLog;

/// One end check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, passed: bool, detail: String) -> Check {
        Check { name: name.to_string(), passed, detail }
    }
}

/// One node at the end of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub role: &'static str,
    pub api: String,
    pub restarts: u32,
    pub clock_skew_ms: i64,
    pub final_height: Option<u64>,
    /// The highest resident memory of its processes (VmHWM), in MiB.
    pub peak_memory_mib: u64,
}

/// What became of the acknowledged transactions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Transactions {
    pub acknowledged: u64,
    pub on_ledger: u64,
    /// Dropped from a mempool with a logged reason the rule accepts, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Acknowledged by a node the testnet then restarted (its mempool is in
    /// memory), and nowhere since.
    pub lost_with_restarted_node: u64,
    /// Neither on the ledger nor accounted for: each one fails the check.
    pub unaccounted: u64,
    /// Refused at submission, by kind, status and reason.
    pub refused: BTreeMap<String, u64>,
    /// Submissions that got no answer (a paused or dying node).
    pub unanswered: u64,
    /// Submissions not sent because the household's node was down.
    pub skipped_node_down: u64,
}

/// The flood's submissions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Flood {
    pub sent: u64,
    pub admitted: u64,
    /// `kind → answer → count`.
    pub outcomes: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The report of a run (`--report FILE`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub passed: bool,
    pub seed: u64,
    pub manifest: String,
    pub name: String,
    pub checks: Vec<Check>,
    pub nodes: Vec<NodeReport>,
    pub households: u32,
    pub first_interval: u64,
    pub last_interval: u64,
    pub trading_s: u64,
    pub height: u64,
    pub intervals_cleared: u64,
    pub trades: u64,
    /// Each zone of the grid over the run.
    pub zones: Vec<ZoneReport>,
    pub energy_traded_wh: u64,
    pub average_trade_price_micro_per_kwh: Option<u64>,
    pub settlements: u64,
    pub bills: u64,
    /// Bought from the grid beyond trades, per the bills.
    pub grid_import_wh: u64,
    pub grid_feed_in_wh: u64,
    /// What the households would have imported with no local trading.
    pub grid_only_import_wh: u64,
    /// Bills with an interval a meter had no reading for: billed at the
    /// meter's import capacity (some refunded when a later reading came).
    pub bills_with_estimates: u64,
    pub estimated_import_wh: u64,
    pub estimate_refund_wh: u64,
    /// Σ bill totals (negative: the households paid), nano-currency.
    pub bills_total_nano: String,
    /// The same energy at the grid tariffs alone.
    pub grid_only_total_nano: String,
    pub community_savings_nano: String,
    /// The households' agents forecast from their own meters
    /// (`gridshare_households::home`): the mean over them of each one's
    /// mean absolute error per interval, in Wh.
    pub forecast_error_wh: Option<u64>,
    pub forecasting_households: usize,
    pub flexibility: FlexibilityReport,
    pub currency: String,
    pub transactions: Transactions,
    pub tx_per_s: u64,
    pub acknowledged_per_s: u64,
    pub offer_to_ledger_ms_p50: Option<u64>,
    pub offer_to_ledger_ms_p99: Option<u64>,
    /// Gate closure until each node's event stream showed the clearing.
    pub finality_ms_p50: Option<u64>,
    pub finality_ms_p99: Option<u64>,
    pub finality_validator_ms_p50: Option<u64>,
    pub finality_validator_ms_p99: Option<u64>,
    pub finality_samples: usize,
    pub restarts: u32,
    pub restarts_survived: u32,
    pub faults: Vec<FaultLog>,
    pub flood: Flood,
    pub findings: Vec<String>,
    pub export_path: String,
    pub workdir: String,
    pub workdir_kept: bool,
}

/// Money for people: nano-currency as currency with two decimals.
/// What the households' batteries and EVs did as their agents planned
/// them (`gridshare_households::agent::Flexibility`), summed: the energy of
/// the households that have either, at the grid tariffs alone, against the
/// same homes with no battery and their EVs charging at full power from
/// arrival, the end state counted (energy the batteries gained at the
/// feed-in tariff or lost at the import tariff, EV charging still owed at
/// the import tariff). Nano-currency, as decimal strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlexibilityReport {
    pub batteries: u32,
    pub evs: u32,
    pub grid_only_nano: String,
    pub baseline_grid_only_nano: String,
    pub end_state_nano: String,
    pub saved_nano: String,
    pub battery_change_wh: i64,
    pub ev_owed_wh: i64,
    pub ev_short_wh: u64,
}

impl From<&Flexibility> for FlexibilityReport {
    fn from(flexibility: &Flexibility) -> FlexibilityReport {
        FlexibilityReport {
            batteries: flexibility.batteries,
            evs: flexibility.evs,
            grid_only_nano: flexibility.grid_only_nano.to_string(),
            baseline_grid_only_nano: flexibility.baseline_grid_only_nano.to_string(),
            end_state_nano: flexibility.end_state_nano.to_string(),
            saved_nano: flexibility.saved_nano().to_string(),
            battery_change_wh: flexibility.battery_change_wh,
            ev_owed_wh: flexibility.ev_owed_wh,
            ev_short_wh: flexibility.ev_short_wh,
        }
    }
}

pub fn money(nano: i128) -> String {
    let cents = nano / (NANOS_PER_UNIT / 100);
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// Energy for people: Wh as kWh with one decimal.
pub fn kwh(wh: u64) -> String {
    format!("{}.{}", wh / 1_000, wh % 1_000 / 100)
}

fn milliseconds(value: Option<u64>) -> String {
    value.map_or_else(|| "-".into(), |ms| format!("{ms} ms"))
}

/// The market figures of the ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Market {
    pub intervals_cleared: u64,
    pub trades: u64,
    pub energy_traded_wh: u64,
    pub average_price_micro_per_kwh: Option<u64>,
    pub settlements: u64,
    pub bills: u64,
    pub grid_import_wh: u64,
    pub grid_feed_in_wh: u64,
    pub grid_only_import_wh: u64,
    pub bills_with_estimates: u64,
    pub estimated_import_wh: u64,
    pub estimate_refund_wh: u64,
    pub bills_total_nano: i128,
    pub grid_only_total_nano: i128,
}

/// Trades and bills from the ledger. A household's grid-only bill for an
/// interval is its metered net export at the feed-in tariff, or its net
/// import at the import tariff (the settlement's tariffs); its actual bill
/// is what the ledger settled: trades, network fees and the deviation at
/// the grid tariffs.
pub fn market(chain: &Chain) -> Market {
    let mut market = Market::default();
    let mut price_weighted: u128 = 0;
    for (_, clearing) in &chain.clearings {
        market.intervals_cleared += 1;
        market.trades += clearing.trades.len() as u64;
        market.energy_traded_wh += clearing.volume_wh;
        for trade in &clearing.trades {
            price_weighted += u128::from(trade.energy_wh) * u128::from(trade.price_micro_per_kwh);
        }
    }
    if market.energy_traded_wh > 0 {
        market.average_price_micro_per_kwh =
            u64::try_from(price_weighted / u128::from(market.energy_traded_wh)).ok();
    }
    for (_, settlement) in &chain.settlements {
        market.settlements += 1;
        for bill in &settlement.bills {
            market.bills += 1;
            market.grid_import_wh += bill.grid_import_wh;
            market.grid_feed_in_wh += bill.feed_in_wh;
            market.bills_total_nano += bill.total_nano;
            if bill.estimated_import_wh > 0 {
                market.bills_with_estimates += 1;
            }
            market.estimated_import_wh += bill.estimated_import_wh;
            market.estimate_refund_wh += bill.estimate_refund_wh;
            market.grid_only_total_nano += settlement.grid_only_nano(bill);
            if bill.metered_net_export_wh < 0 {
                market.grid_only_import_wh += bill.metered_net_export_wh.unsigned_abs();
            }
        }
    }
    market
}

/// One zone over the run, from the clearing and settlement receipts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ZoneReport {
    pub name: String,
    pub intervals_cleared: u64,
    /// Intervals in which one of its limits bound.
    pub congested: u64,
    /// Its lowest and highest price over the intervals with trades.
    pub min_price_micro_per_kwh: Option<u64>,
    pub max_price_micro_per_kwh: Option<u64>,
    /// Σ of its traded net exports.
    pub traded_net_export_wh: i64,
    /// Σ of what its meters measured, the measured ones.
    pub measured_net_export_wh: i64,
}

/// Each zone's figures from the ledger.
pub fn zones(chain: &Chain) -> Vec<ZoneReport> {
    let mut zones: Vec<ZoneReport> = chain
        .genesis
        .zones
        .iter()
        .map(|zone| ZoneReport { name: zone.name.clone(), ..ZoneReport::default() })
        .collect();
    for (_, clearing) in &chain.clearings {
        for (report, zone) in zones.iter_mut().zip(&clearing.zones) {
            report.intervals_cleared += 1;
            report.congested += u64::from(zone.congested);
            report.traded_net_export_wh += zone.net_export_wh;
            if let Some(price) = zone.price_micro_per_kwh {
                report.min_price_micro_per_kwh =
                    Some(report.min_price_micro_per_kwh.map_or(price, |min| min.min(price)));
                report.max_price_micro_per_kwh =
                    Some(report.max_price_micro_per_kwh.map_or(price, |max| max.max(price)));
            }
        }
    }
    for (_, settlement) in &chain.settlements {
        for (report, zone) in zones.iter_mut().zip(&settlement.zones) {
            report.measured_net_export_wh += zone.measured_net_export_wh;
        }
    }
    zones
}

/// Sorted latencies from the journal: offer to ledger (acknowledged offers
/// found on the ledger: sent until the block was first seen on an event
/// stream, or the block's time if no stream saw it), and gate closure to
/// clearing per node, for the nodes whose index is in `nodes` (the
/// validators come first).
pub fn latencies(
    chain: &Chain,
    snapshot: &Snapshot,
    first: u64,
    last: u64,
    nodes: std::ops::Range<usize>,
) -> (Vec<u64>, Vec<u64>) {
    let block_time: BTreeMap<u64, u64> =
        chain.blocks.iter().map(|block| (block.height, block.timestamp_ms)).collect();
    let mut offers: Vec<u64> = snapshot
        .acknowledged
        .iter()
        .filter(|ack| ack.kind == "offer")
        .filter_map(|ack| {
            let height = chain.transactions.get(&ack.id)?;
            let seen = snapshot.block_seen_ms.get(height).or_else(|| block_time.get(height))?;
            Some(seen.saturating_sub(ack.sent_ms))
        })
        .collect();
    offers.sort_unstable();
    let mut finality: Vec<u64> = snapshot
        .clearings
        .iter()
        .filter(|clearing| (first..=last).contains(&clearing.interval) && nodes.contains(&clearing.node))
        .filter_map(|clearing| {
            let gate = chain.genesis.gate_closure_ms(clearing.interval)?;
            Some(clearing.seen_ms.saturating_sub(gate))
        })
        .collect();
    finality.sort_unstable();
    (offers, finality)
}

impl Report {
    /// The summary for people.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let passed = self.checks.iter().filter(|check| check.passed).count();
        let _ = writeln!(
            out,
            "\n{}: {verdict} ({passed} of {} checks), seed {}",
            self.name,
            self.checks.len(),
            self.seed
        );
        let currency = &self.currency;
        let price = self.average_trade_price_micro_per_kwh.map_or_else(String::new, |price| {
            format!(" at {} {currency}/kWh on average", format_decimal(price, 6))
        });
        let _ = writeln!(
            out,
            "  Market        {} intervals cleared, {} trades, {} kWh traded locally{price}",
            self.intervals_cleared,
            self.trades,
            kwh(self.energy_traded_wh)
        );
        for zone in &self.zones {
            let prices = match (zone.min_price_micro_per_kwh, zone.max_price_micro_per_kwh) {
                (Some(low), Some(high)) => format!(
                    ", prices {} to {} {currency}/kWh",
                    format_decimal(low, 6),
                    format_decimal(high, 6)
                ),
                _ => String::new(),
            };
            let signed = |wh: i64| format!("{}{}", if wh < 0 { "-" } else { "" }, kwh(wh.unsigned_abs()));
            let _ = writeln!(
                out,
                "  Zone          {}: {} intervals, {} congested{prices}; net export {} kWh traded, {} kWh measured",
                zone.name,
                zone.intervals_cleared,
                zone.congested,
                signed(zone.traded_net_export_wh),
                signed(zone.measured_net_export_wh)
            );
        }
        let _ = writeln!(
            out,
            "  Grid          {} kWh bought from the grid ({} kWh without local trading), {} kWh fed in",
            kwh(self.grid_import_wh),
            kwh(self.grid_only_import_wh),
            kwh(self.grid_feed_in_wh)
        );
        let _ = writeln!(
            out,
            "  Estimates     {} bills with an interval a meter did not report: {} kWh billed at meter capacity, {} kWh refunded later",
            self.bills_with_estimates,
            kwh(self.estimated_import_wh),
            kwh(self.estimate_refund_wh)
        );
        let actual: i128 = self.bills_total_nano.parse().unwrap_or(0);
        let grid_only: i128 = self.grid_only_total_nano.parse().unwrap_or(0);
        let savings: i128 = self.community_savings_nano.parse().unwrap_or(0);
        // A share of the grid-only cost only means something when both are costs.
        let share = if grid_only < 0 && actual < 0 {
            format!(" ({}%)", savings * 100 / -grid_only)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  Bills         {} settled intervals, {} bills: the households' net is {} {currency}, {} {currency} at grid tariffs alone: {} {currency} saved{share}",
            self.settlements,
            self.bills,
            money(actual),
            money(grid_only),
            money(savings)
        );
        match self.forecast_error_wh {
            Some(error_wh) => {
                let _ = writeln!(
                    out,
                    "  Agents        forecast from their own meters: {error_wh} Wh off per interval on average ({} households)",
                    self.forecasting_households
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  Agents        forecast from their own meters: no interval to compare yet"
                );
            }
        }
        let flexibility = &self.flexibility;
        if flexibility.batteries + flexibility.evs > 0 {
            let nano = |text: &str| text.parse::<i128>().unwrap_or(0);
            let baseline = nano(&flexibility.baseline_grid_only_nano);
            let saved = nano(&flexibility.saved_nano);
            let share = if baseline < 0 { format!(" ({}%)", saved * 100 / -baseline) } else { String::new() };
            let signed = |wh: i64| format!("{}{}", if wh < 0 { "-" } else { "+" }, kwh(wh.unsigned_abs()));
            let _ = writeln!(
                out,
                "  Flexibility   {} batteries and {} EVs as their agents planned them: {} {currency} saved{share} against no battery and EVs charging on arrival ({} {currency} at grid tariffs, {} {currency} without them; end state {} {currency}: batteries {} kWh, EV charging owed {} kWh); EVs short at departure {} kWh",
                flexibility.batteries,
                flexibility.evs,
                money(saved),
                money(nano(&flexibility.grid_only_nano)),
                money(baseline),
                money(nano(&flexibility.end_state_nano)),
                signed(flexibility.battery_change_wh),
                signed(flexibility.ev_owed_wh),
                kwh(flexibility.ev_short_wh)
            );
        }
        let _ = writeln!(
            out,
            "  Latency       offer to ledger p50 {}, p99 {}; clearing seen after gate closure p50 {}, p99 {} (all nodes), validators p50 {}, p99 {}",
            milliseconds(self.offer_to_ledger_ms_p50),
            milliseconds(self.offer_to_ledger_ms_p99),
            milliseconds(self.finality_ms_p50),
            milliseconds(self.finality_ms_p99),
            milliseconds(self.finality_validator_ms_p50),
            milliseconds(self.finality_validator_ms_p99),
        );
        let _ = writeln!(
            out,
            "  Throughput    {} tx/s committed, {} tx/s acknowledged over {} s of trading; height {}",
            self.tx_per_s, self.acknowledged_per_s, self.trading_s, self.height
        );
        let t = &self.transactions;
        let dropped: u64 = t.dropped.values().sum();
        let reasons: Vec<String> =
            t.dropped.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
        let _ = writeln!(
            out,
            "  Transactions  {} acknowledged: {} on the ledger, {dropped} dropped{}, {} lost with a restarted node, {} unaccounted; {} refused, {} unanswered, {} skipped (node down)",
            t.acknowledged,
            t.on_ledger,
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
            t.lost_with_restarted_node,
            t.unaccounted,
            t.refused.values().sum::<u64>(),
            t.unanswered,
            t.skipped_node_down
        );
        let _ = writeln!(out, "  Restarts      {} of {} survived", self.restarts_survived, self.restarts);
        for fault in &self.faults {
            let status =
                if fault.problems.is_empty() { "done".to_string() } else { fault.problems.join("; ") };
            let _ = writeln!(out, "  Fault         {}: {status}", fault.fault);
        }
        if self.flood.sent > 0 {
            let _ = writeln!(
                out,
                "  Flood         {} invalid transactions sent, {} admitted",
                self.flood.sent, self.flood.admitted
            );
        }
        let _ = writeln!(out, "  Checks");
        for check in &self.checks {
            let mark = if check.passed { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "    [{mark}] {}: {}", check.name, check.detail);
        }
        if !self.findings.is_empty() {
            let _ = writeln!(out, "  Findings");
            for finding in &self.findings {
                let _ = writeln!(out, "    - {finding}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_energy_read_well() {
        assert_eq!(money(12_345_678_901), "12.34");
        assert_eq!(money(-5_000_000), "0.00");
        assert_eq!(money(-1_230_000_000), "-1.23");
        assert_eq!(kwh(12_345), "12.3");
        assert_eq!(kwh(999), "0.9");
    }
}
