//! One agent per household, on its own thread: at each interval boundary
//! (plus a seeded offset) the household lives through the interval that
//! ended, its meter signs the cumulative readings and submits them, and
//! the household offers its forecast surplus or deficit for the next
//! interval still open, attested by that latest reading. Everything goes
//! through the API of the household's own node; every acknowledged
//! transaction is journaled with when it was sent and acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gridshare_ledger::ids::Keypair;
use gridshare_ledger::tx::{SignedMeterReading, SignedTx, Tx};

use crate::http::{Api, Verdict};
use crate::journal::{Acknowledged, Journal, now_ms};
use crate::nodes::Node;
use crate::profile::Household;

/// The market's rules and calendar, shared by every agent: the households
/// crate's, which decides what a household does.
pub use gridshare_households::Market;
/// A meter reading the node finds early (its clock is behind) is retried
/// this often, until shortly before the interval settles.
const READING_RETRY: Duration = Duration::from_millis(250);
/// Sleeps are cut into slices this long, so a stop is noticed.
const SLEEP_SLICE: Duration = Duration::from_millis(100);

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

impl Agent {
    fn index(&self) -> u32 {
        self.household.index
    }

    /// Submits `tx` to the household's node and journals the outcome; the
    /// verdict, or `None` without an answer.
    fn submit(&self, api: &Api, journal: &Journal, tx: &SignedTx, interval: u64) -> Option<Verdict> {
        if !self.node.is_up() {
            journal.skipped_node_down.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let sent_ms = now_ms();
        match api.submit(&self.node.api(), tx) {
            Ok(Verdict::Admitted(id)) => {
                journal.acknowledged(Acknowledged {
                    id: id.clone(),
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
                Some(Verdict::Admitted(id))
            }
            Ok(refused @ Verdict::Refused { .. }) => {
                if let Verdict::Refused { status, code, reason, .. } = &refused {
                    let why = reason.as_deref().unwrap_or(code);
                    journal.refused(format!("{} {status} {why}", tx.tx.kind()));
                }
                Some(refused)
            }
            Err(_) => {
                journal.unanswered();
                None
            }
        }
    }

    /// Submits a reading, retrying while the node's clock says the interval
    /// has not ended yet (a node whose clock is behind).
    fn report_reading(
        &self,
        market: &Market,
        api: &Api,
        journal: &Journal,
        signed: SignedMeterReading,
        stop: &AtomicBool,
    ) {
        let tx = SignedTx { tx: Tx::MeterReading(signed.reading), signature: signed.signature };
        let interval = signed.reading.interval;
        let give_up_ms = market.genesis.settlement_ms(interval).unwrap_or(0).saturating_sub(500);
        loop {
            let verdict = self.submit(api, journal, &tx, interval);
            let early = matches!(&verdict, Some(Verdict::Refused { reason: Some(reason), .. }) if reason == "reading_before_interval_end");
            if !early || now_ms() + 250 > give_up_ms || stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(READING_RETRY);
        }
    }

    /// The agent's life: until the last interval's reading or `stop`. What
    /// to read and offer is the households crate's decision at each wake-up.
    pub fn run(self, market: &Market, api: &Api, journal: &Journal, stop: &AtomicBool) {
        let genesis = &market.genesis;
        let mut decisions = gridshare_households::Agent::new(self.household.clone(), market);
        let nonce_path = format!("/v1/nonces/{}", self.account.public());
        // The last nonce used: what the node reports (its mempool included),
        // or, when it cannot say, what this agent last had acknowledged.
        let mut nonce = 0;
        // The meter's first reading, at zero, for the interval before
        // trading, comes after the agent's offset.
        if market.first_interval > 0 && !sleep_until(now_ms() + market.offset_ms(self.index()), stop) {
            return;
        }
        loop {
            let decision = decisions.decide(market, &self.meter, now_ms());
            for signed in decision.readings {
                self.report_reading(market, api, journal, signed, stop);
            }
            if decision.finished {
                return;
            }
            if let Some(offers) = decision.offers {
                // Each round starts from the node's count: a transaction
                // acknowledged and then lost (a restarted node's mempool)
                // leaves no gap, and a refused one uses up no nonce.
                if self.node.is_up() {
                    nonce = api.get_u64(&self.node.api(), &nonce_path, "last_nonce").unwrap_or(nonce);
                }
                for planned in &offers.planned {
                    let offer = offers.offer(self.account.public(), nonce + 1, planned);
                    let tx = SignedTx::sign(Tx::Offer(offer), &self.account, &genesis.community_id);
                    match self.submit(api, journal, &tx, offers.interval) {
                        Some(Verdict::Admitted(_)) => nonce += 1,
                        // Refused: the nonce is still free.
                        Some(Verdict::Refused { .. }) => {}
                        // No answer: it may have been admitted; ask again
                        // next round.
                        None => break,
                    }
                }
            }
            if !sleep_until(decision.wake_ms, stop) {
                return;
            }
        }
    }
}
