//! The dev community of `gridshare-node run --dev`: one validator, one
//! registrar and two households with simulated meters (a rooftop-solar home
//! and a neighbour who buys), so that a newcomer sees intervals clear and
//! settle within a minute. Simulation only: the households sign their own
//! transactions exactly as real wallets and meters do.

use gridshare_ledger::genesis::{MarketParams, Mechanism};
use gridshare_ledger::ids::PublicKey;
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

/// The two simulated households and what they did so far.
#[derive(Debug)]
pub struct DevHouseholds {
    pub community: TestCommunity,
    registered: bool,
    /// Cumulative (import, export) registers of each household's meter.
    registers: [(u64, u64); 2],
    last_read: Option<u64>,
    last_offered: Option<u64>,
}

impl DevHouseholds {
    pub fn new(community: TestCommunity) -> DevHouseholds {
        DevHouseholds {
            community,
            registered: false,
            registers: [(0, 0), (0, 0)],
            last_read: None,
            last_offered: None,
        }
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
        for (index, household) in households.community.households.iter().enumerate().take(2) {
            if !state.accounts.contains_key(&household.account.public()) {
                continue;
            }
            households.registered = true;
            if let Some(reading) =
                state.meters.get(&household.meter.public()).and_then(|meter| meter.last_reading)
            {
                households.registers[index] = (reading.import_wh_total, reading.export_wh_total);
                households.last_read = Some(reading.interval);
            }
        }
        households
    }

    /// What the households and the registrar submit at `time_ms`: the
    /// registrations first, then each interval's meter readings once it has
    /// ended, and offers for two intervals ahead.
    /// `last_nonce` gives an account's last nonce, waiting transactions
    /// included, so that a refused offer leaves no gap.
    pub fn transactions(&mut self, time_ms: u64, last_nonce: impl Fn(&PublicKey) -> u64) -> Vec<SignedTx> {
        if !self.registered {
            self.registered = true;
            return self.community.registrations();
        }
        let genesis = &self.community.genesis;
        let mut txs = Vec::new();
        let current = genesis.interval_at(time_ms);
        if let Some(ended) = current.checked_sub(1)
            && self.last_read.is_none_or(|read| read < ended)
            && genesis.interval_end_ms(ended).is_some_and(|end| end <= time_ms)
        {
            // The solar home exports 1.2 to 1.7 kWh an interval and imports a
            // little; the neighbour imports 0.8 to 1.3 kWh.
            let wobble = (ended % 6) * 100;
            self.registers[0].0 += 50;
            self.registers[0].1 += 1_200 + wobble;
            self.registers[1].0 += 800 + wobble;
            for (household, (import, export)) in self.registers.iter().enumerate() {
                txs.push(self.community.reading_tx(household, ended, *import, *export));
            }
            self.last_read = Some(ended);
        }
        let target = current + 2;
        if let Some(read) = self.last_read
            && self.last_offered.is_none_or(|offered| offered < target)
        {
            let prices = [90_000 + (target % 5) * 10_000, 260_000 - (target % 3) * 20_000];
            let energies = [1_000 + (target % 4) * 100, 900 + (target % 3) * 150];
            for household in 0..2 {
                let nonce = last_nonce(&self.community.households[household].account.public()) + 1;
                let side = if household == 0 { Side::Sell } else { Side::Buy };
                let (import, export) = self.registers[household];
                let attestation = self.community.reading(household, read, import, export);
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
