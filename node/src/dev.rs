//! The dev community of `gridshare-node run --dev`: one validator, one
//! registrar and two households with simulated meters (a rooftop-solar home
//! and a neighbour who buys), so that a newcomer sees intervals clear and
//! settle within a minute. Simulation only: the households sign their own
//! transactions exactly as real wallets and meters do.

use gridshare_ledger::genesis::{MarketParams, Mechanism};
use gridshare_ledger::state::State;
use gridshare_ledger::testkit::{TestCommunity, test_market};
use gridshare_ledger::tx::{Side, SignedTx};

/// The default dev interval: 10 s, so a full cycle (offers, gate closure,
/// clearing, delivery, settlement) is visible in under a minute.
pub const DEV_INTERVAL_MS: u64 = 10_000;

/// Dev market rules for intervals of `interval_ms`: gate closure 40% of an
/// interval before its start, settlement 40% of an interval after its end.
pub fn dev_market(interval_ms: u64) -> MarketParams {
    MarketParams {
        interval_length_ms: interval_ms,
        gate_closure_lead_ms: interval_ms * 2 / 5,
        settlement_delay_ms: interval_ms * 2 / 5,
        mechanism: Mechanism::Uniform,
        ..test_market()
    }
}

/// At most this many readings a meter reports at once when it catches up
/// (after the node was down): well inside the mempool's bound per signer.
const CATCH_UP_READINGS_MAX: u64 = 16;

/// The two simulated households and what they did so far.
#[derive(Debug)]
pub struct DevHouseholds {
    pub community: TestCommunity,
    registered: bool,
    last_offered: Option<u64>,
}

impl DevHouseholds {
    pub fn new(community: TestCommunity) -> DevHouseholds {
        DevHouseholds { community, registered: false, last_offered: None }
    }

    /// The households of a dev community that already has a ledger: what
    /// they did so far is read back from its state.
    pub fn resume(community: TestCommunity, state: &State) -> DevHouseholds {
        let mut households = DevHouseholds::new(community);
        let seller = households.community.households.first().map(|household| household.account.public());
        households.last_offered = state
            .offers
            .values()
            .filter(|offer| Some(offer.account) == seller)
            .map(|offer| offer.interval)
            .max();
        households.registered = households
            .community
            .households
            .iter()
            .take(2)
            .any(|household| state.accounts.contains_key(&household.account.public()));
        households
    }

    /// What the households and the registrar submit at `time_ms`, given
    /// `pending`, the state the next block starts from with every waiting
    /// transaction applied: the registrations first, then each meter's
    /// readings of every interval that ended since its registration or its
    /// last reading (a meter is billed every interval, and one without a
    /// reading at its full import capacity), and offers for two intervals
    /// ahead.
    pub fn transactions(&mut self, time_ms: u64, pending: &State) -> Vec<SignedTx> {
        if !self.registered {
            self.registered = true;
            return self.community.registrations();
        }
        let genesis = &self.community.genesis;
        let mut txs = Vec::new();
        let current = genesis.interval_at(time_ms);
        let mut attestations = Vec::with_capacity(2);
        for (index, household) in self.community.households.iter().enumerate().take(2) {
            let Some(meter) = pending.meters.get(&household.meter.public()) else { continue };
            let (mut import, mut export) = meter
                .last_reading
                .map_or((0, 0), |reading| (reading.import_wh_total, reading.export_wh_total));
            // Intervals already settled can no longer count: start after
            // the last reading, at the registration or the first unsettled
            // interval.
            let first = meter
                .last_reading
                .map_or(meter.registered_interval, |reading| reading.interval + 1)
                .max(pending.next_settlement_interval.min(current));
            let mut last = meter.last_reading;
            for interval in first..current.min(first + CATCH_UP_READINGS_MAX) {
                // The solar home exports 1.2 to 1.7 kWh an interval and
                // imports a little; the neighbour imports 0.8 to 1.3 kWh.
                let wobble = (interval % 6) * 100;
                if index == 0 {
                    import += 50;
                    export += 1_200 + wobble;
                } else {
                    import += 800 + wobble;
                }
                let tx = self.community.reading_tx(index, interval, import, export);
                if let gridshare_ledger::tx::Tx::MeterReading(reading) = tx.tx {
                    last = Some(reading);
                }
                txs.push(tx);
            }
            attestations.push(last);
        }
        let target = current + 2;
        if let [Some(seller), Some(buyer)] = attestations[..]
            && self.last_offered.is_none_or(|offered| offered < target)
        {
            let prices = [90_000 + (target % 5) * 10_000, 260_000 - (target % 3) * 20_000];
            let energies = [1_000 + (target % 4) * 100, 900 + (target % 3) * 150];
            for (household, reading) in [seller, buyer].into_iter().enumerate() {
                let account = self.community.households[household].account.public();
                let nonce = pending.accounts.get(&account).map_or(0, |account| account.last_nonce) + 1;
                let side = if household == 0 { Side::Sell } else { Side::Buy };
                let attestation = self.community.reading(
                    household,
                    reading.interval,
                    reading.import_wh_total,
                    reading.export_wh_total,
                );
                txs.push(self.community.offer_tx(
                    household,
                    nonce,
                    target,
                    side,
                    energies[household],
                    prices[household],
                    attestation,
                ));
            }
            self.last_offered = Some(target);
        }
        txs
    }
}
