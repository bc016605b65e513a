//! One agent per household, on its own thread, on the system clock: the
//! households crate's [`HouseholdAgent`] decides, at each interval boundary
//! (plus a seeded offset), which meter readings to sign and which offers to
//! make, as it does for the simulator; this thread submits them through
//! the API of the household's own node, retries a reading the node finds
//! early (its clock is behind), takes each offer's nonce from the node, and
//! journals every acknowledged transaction with when it was sent and
//! acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gridshare_api::client::{ClientError, Submission};
use gridshare_households::Agent as HouseholdAgent;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::tx::{SignedMeterReading, SignedTx, Tx};

use crate::journal::{Acknowledged, Journal, now_ms};
use crate::nodes::Node;
use crate::profile::Household;

/// A meter reading the node finds early (its clock is behind) is retried
/// this often, until shortly before the interval settles.
const READING_RETRY: Duration = Duration::from_millis(250);
/// Sleeps are cut into slices this long, so a stop is noticed.
const SLEEP_SLICE: Duration = Duration::from_millis(100);

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

    /// The first interval before trading the meter has not reported (its
    /// registration, or after its last reading: the setup reports while the
    /// street registers), as its node says; `None` when it cannot say.
    fn unreported_from(&self) -> Option<u64> {
        match self.node.api().meter(&self.meter.public()) {
            Ok(Some(meter)) => {
                let after_last = meter.last_reading.map_or(0, |last| last.interval + 1);
                Some(meter.registered_interval.max(after_last))
            }
            Ok(None) | Err(_) => None,
        }
    }

    /// Submits a reading, retrying while the node's clock says the interval
    /// has not ended yet (a node whose clock is behind) or the node asks to
    /// come back later (429), until shortly before the interval settles.
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
            let again = match &verdict {
                Some(Submission::Refused { status: 429, .. }) => true,
                Some(Submission::Refused { reason: Some(reason), .. }) => {
                    reason == "reading_before_interval_end"
                }
                _ => false,
            };
            if !again || now_ms() + 250 > give_up_ms || stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(READING_RETRY);
        }
    }

    /// The agent's life: until the last interval's reading or `stop`. The
    /// household's agent as it ended (its forecast error and what its
    /// battery and EV did), if it started.
    pub fn run(self, market: &Market, journal: &Journal, stop: &AtomicBool) -> Option<HouseholdAgent> {
        let genesis = &market.genesis;
        if market.first_interval > 0 && !sleep_until(now_ms() + market.offset_ms(self.index()), stop) {
            return None;
        }
        let mut agent = match self.unreported_from() {
            Some(interval) => HouseholdAgent::reporting_from(self.household.clone(), market, interval),
            None => HouseholdAgent::new(self.household.clone(), market),
        };
        // The last nonce used: what the node reports (its mempool included),
        // or, when it cannot say, what this agent last had acknowledged.
        let mut nonce = 0;
        loop {
            let decision = agent.decide(market, &self.meter, now_ms());
            for signed in decision.readings {
                self.report_reading(market, journal, signed, stop);
            }
            if decision.finished {
                return Some(agent);
            }
            if let Some(offers) = decision.offers {
                // Each round starts from the node's count: a refused offer
                // uses up no nonce.
                if self.node.is_up() {
                    let reported = self.node.api().last_nonce(&self.account.public());
                    nonce = reported.ok().flatten().unwrap_or(nonce);
                }
                for planned in &offers.planned {
                    let offer = offers.offer(self.account.public(), nonce + 1, planned);
                    let tx = SignedTx::sign(Tx::Offer(offer), &self.account, &genesis.community_id);
                    match self.submit(journal, &tx, offers.interval) {
                        Some(Submission::Admitted { .. }) => nonce += 1,
                        // Refused: the nonce is still free.
                        Some(Submission::Refused { .. }) => {}
                        // No answer: it may have been admitted; ask again
                        // next round.
                        None => break,
                    }
                }
            }
            if !sleep_until(decision.wake_ms, stop) {
                return Some(agent);
            }
        }
    }
}
