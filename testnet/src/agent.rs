//! One agent per household, on its own thread: at each interval boundary
//! (plus a seeded offset) the household lives through the interval that
//! ended, its meter signs the cumulative readings and submits them (one for
//! every interval since its registration: a meter is billed every interval,
//! one without a reading at its full import capacity), and the household
//! offers its forecast surplus or deficit for the next interval still open,
//! attested by that latest reading. Everything goes
//! through the API of the household's own node; every acknowledged
//! transaction is journaled with when it was sent and acknowledged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gridshare_api::client::{ClientError, Submission};
use gridshare_households::OFFER_MARGIN_MS;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::tx::{MeterReading, Offer, SignedMeterReading, SignedTx, Tx};

use crate::journal::{Acknowledged, Journal, now_ms};
use crate::nodes::Node;
use crate::profile::{Household, draw};
use crate::strategy::{Bidder, plan};

/// A meter reading the node finds early (its clock is behind) is retried
/// this often, until shortly before the interval settles.
const READING_RETRY: Duration = Duration::from_millis(250);
/// Sleeps are cut into slices this long, so a stop is noticed.
const SLEEP_SLICE: Duration = Duration::from_millis(100);
/// At most this many readings wait to be reported (a node down for longer
/// loses the oldest: their intervals have settled as estimates anyway).
const UNREPORTED_MAX: usize = 64;

/// The market's rules and calendar, shared by every agent: the households
/// crate's, which the simulator's agents share too.
pub use gridshare_households::Market;

/// One household's agent.
#[derive(Debug)]
pub struct Agent {
    pub household: Household,
    pub account: Keypair,
    pub meter: Keypair,
    pub node: Arc<Node>,
    pub node_index: usize,
    /// Whether its acknowledged transactions are kept for a flood's replays.
    pub keep_for_replay: bool,
}

/// Sleeps until `time_ms` or until `stop` is set; false if stopped.
pub fn sleep_until(time_ms: u64, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = now_ms();
        if now >= time_ms {
            return true;
        }
        std::thread::sleep(SLEEP_SLICE.min(Duration::from_millis(time_ms - now)));
    }
}

/// What a node answered to a submission: its verdict, with the refusal of
/// a malformed request (a 400) a refusal too; `None` without an answer (a
/// paused or restarting node, a timeout).
pub fn verdict(answer: Result<Submission, ClientError>) -> Option<Submission> {
    match answer {
        Ok(submission) => Some(submission),
        Err(ClientError::Refused { status, code, message, .. }) => {
            Some(Submission::Refused { status, code, reason: None, message })
        }
        Err(_) => None,
    }
}

impl Agent {
    fn index(&self) -> u32 {
        self.household.index
    }

    /// Submits `tx` to the household's node and journals the outcome; the
    /// verdict, or `None` without an answer.
    fn submit(&self, journal: &Journal, tx: &SignedTx, interval: u64) -> Option<Submission> {
        if !self.node.is_up() {
            journal.skipped_node_down.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let sent_ms = now_ms();
        match verdict(self.node.api().submit(tx)) {
            Some(Submission::Admitted { id }) => {
                journal.acknowledged(Acknowledged {
                    id: id.to_string(),
                    kind: tx.tx.kind(),
                    household: Some(self.index()),
                    node: self.node_index,
                    interval: Some(interval),
                    sent_ms,
                    acknowledged_ms: now_ms(),
                });
                if self.keep_for_replay {
                    journal.keep_for_replay(self.index(), tx.clone());
                }
                Some(Submission::Admitted { id })
            }
            Some(refused @ Submission::Refused { .. }) => {
                if let Some(why) = refused.refusal_code()
                    && let Submission::Refused { status, .. } = &refused
                {
                    journal.refused(format!("{} {status} {why}", tx.tx.kind()));
                }
                Some(refused)
            }
            None => {
                journal.unanswered();
                None
            }
        }
    }

    /// The meter's reading of the registers as they are now, for the end
    /// of `interval`.
    fn reading(&self, interval: u64) -> MeterReading {
        MeterReading {
            meter: self.meter.public(),
            interval,
            import_wh_total: self.household.import_total_wh,
            export_wh_total: self.household.export_total_wh,
        }
    }

    /// The intervals before trading the meter still has to report, at
    /// zero (the registers start there): from its registration, or after
    /// its last reading (the setup reports while the street registers),
    /// up to the interval before trading. Just that one when the node
    /// cannot say.
    fn readings_before_trading(&self, market: &Market) -> Vec<MeterReading> {
        let Some(before) = market.first_interval.checked_sub(1) else { return Vec::new() };
        let first = match self.node.api().meter(&self.meter.public()) {
            Ok(Some(meter)) => {
                let after_last = meter.last_reading.map_or(0, |last| last.interval + 1);
                meter.registered_interval.max(after_last)
            }
            Ok(None) | Err(_) => before,
        };
        let first = first.max(before.saturating_sub(UNREPORTED_MAX as u64 - 1));
        (first..=before).map(|interval| self.reading(interval)).collect()
    }

    /// Submits a reading, retrying while the node's clock says the interval
    /// has not ended yet (a node whose clock is behind).
    fn report_reading(
        &self,
        market: &Market,
        journal: &Journal,
        signed: SignedMeterReading,
        stop: &AtomicBool,
    ) {
        let tx = SignedTx { tx: Tx::MeterReading(signed.reading), signature: signed.signature };
        let interval = signed.reading.interval;
        let give_up_ms = market.genesis.settlement_ms(interval).unwrap_or(0).saturating_sub(500);
        loop {
            let verdict = self.submit(journal, &tx, interval);
            let early = matches!(&verdict, Some(Submission::Refused { reason: Some(reason), .. }) if reason == "reading_before_interval_end");
            if !early || now_ms() + 250 > give_up_ms || stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(READING_RETRY);
        }
    }

    /// The agent's life: until the last interval's reading or `stop`.
    pub fn run(mut self, market: &Market, journal: &Journal, stop: &AtomicBool) {
        let genesis = &market.genesis;
        let index = self.index();
        let offset_ms = 100 + draw(&[market.seed, 50, u64::from(index)]) % market.offset_spread_ms.max(1);
        // The last nonce used: what the node reports (its mempool included),
        // or, when it cannot say, what this agent last had acknowledged.
        let mut nonce = 0;
        // Every interval's reading, in order: those before trading at zero,
        // then one for each interval the household lives through.
        let mut stepped = market.first_interval;
        let mut attestation: Option<SignedMeterReading> = None;
        let mut last_offered = 0;
        let mut unreported: VecDeque<MeterReading> = VecDeque::new();
        if market.first_interval > 0 {
            if !sleep_until(now_ms() + offset_ms, stop) {
                return;
            }
            unreported.extend(self.readings_before_trading(market));
        }
        loop {
            let current = genesis.interval_at(now_ms());
            while stepped < current && stepped <= market.last_interval {
                self.household.step(&market.simulation, market.slot(stepped));
                unreported.push_back(self.reading(stepped));
                if unreported.len() > UNREPORTED_MAX {
                    unreported.pop_front();
                }
                stepped += 1;
            }
            while let Some(reading) = unreported.pop_front() {
                let signed = SignedMeterReading::sign(reading, &self.meter, &genesis.community_id);
                self.report_reading(market, journal, signed, stop);
                attestation = Some(signed);
            }
            // The last interval's reading was the agent's last act.
            if current > market.last_interval {
                return;
            }
            let target = market.next_open_interval(now_ms() + OFFER_MARGIN_MS).max(current + 1);
            if let Some(attestation) = attestation
                && target <= market.last_interval
                && target > last_offered
            {
                let forecast = self.household.forecast_net_export_wh(
                    &market.simulation,
                    market.slot(current),
                    market.slot(target),
                );
                let bidder = Bidder {
                    seed: market.seed,
                    household: index,
                    ask_per_mille: self.household.traits.ask_per_mille,
                    bid_per_mille: self.household.traits.bid_per_mille,
                };
                // Each round starts from the node's count: a transaction
                // acknowledged and then lost (a restarted node's mempool)
                // leaves no gap, and a refused one uses up no nonce.
                if self.node.is_up() {
                    let reported = self.node.api().last_nonce(&self.account.public());
                    nonce = reported.ok().flatten().unwrap_or(nonce);
                }
                for planned in plan(&bidder, &market.tariffs, target, forecast, market.offers_per_interval) {
                    let offer = Offer {
                        account: self.account.public(),
                        nonce: nonce + 1,
                        interval: target,
                        side: planned.side,
                        energy_wh: planned.energy_wh,
                        price_micro_per_kwh: planned.price_micro_per_kwh,
                        attestation,
                    };
                    let tx = SignedTx::sign(Tx::Offer(offer), &self.account, &genesis.community_id);
                    match self.submit(journal, &tx, target) {
                        Some(Submission::Admitted { .. }) => nonce += 1,
                        // Refused: the nonce is still free.
                        Some(Submission::Refused { .. }) => {}
                        // No answer: it may have been admitted; ask again
                        // next round.
                        None => break,
                    }
                }
                last_offered = target;
            }
            let next_boundary = genesis.interval_start_ms(current + 1).unwrap_or(u64::MAX);
            if !sleep_until(next_boundary + offset_ms, stop) {
                return;
            }
        }
    }
}
