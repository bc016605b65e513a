//! The deterministic sequencer that orders blocks in a simulation, behind
//! the same `Chain` seam as consensus. It is not BFT: Malachite runs its
//! actors on tokio and cannot be driven deterministically, so the
//! simulator orders blocks with a simpler protocol of the same shape. At
//! each height, rounds go round robin over the validators ordered as
//! consensus orders them (by voting power, then key). The round's proposer
//! builds a block from its mempool at its own clock (`ChainCore::at(now)`:
//! `candidates`, `build`) and sends it to the other validators through the
//! simulated network; each checks it (`check`) and refuses one whose time is
//! outside its own clock ± the genesis's block-time tolerance
//! (`block_time_tolerance_ms`, δ); each that accepts
//! sends the proposer its precommit signature, and a block with more than
//! two thirds of the voting power is certified with those signatures (a
//! ledger `CommitCertificate`, as the audit checks it) and sent to every
//! validator, which commits it (`commit`) and gossips it to the household
//! nodes. A proposer that is down, behind or refused lets the round time
//! out, and the next round's proposer tries.
//!
//! What makes it a sequencer: the round in force is one value for the
//! whole run, so a certificate can only be made in the current round and a
//! height is decided at most once (where Tendermint needs locks and two
//! voting steps among byzantine validators). Validators are honest here;
//! their faults are crashes, partitions and skewed clocks.

use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::PublicKey;

use crate::network::NodeId;
use crate::scheduler::TimeUs;

/// A round's proposer has this long to get its block certified, plus
/// [`ROUND_TIMEOUT_STEP_US`] for each round before it at the height.
pub const ROUND_TIMEOUT_US: TimeUs = 1_000_000;
pub const ROUND_TIMEOUT_STEP_US: TimeUs = 500_000;

/// The height and round in force, and what the sequencer counted.
#[derive(Debug)]
pub struct Sequencer {
    /// Validators in consensus order: by voting power, then key.
    pub order: Vec<NodeId>,
    /// Voting power by node (validators only).
    pub power: Vec<u64>,
    pub total_power: u64,
    /// The height being decided and its round.
    pub height: u64,
    pub round: u32,
    /// When the current height's first round started.
    pub height_started_us: TimeUs,
    /// No new height is started (the run is ending).
    pub stopped: bool,
    pub block_time_us: TimeUs,
    pub rounds_timed_out: u64,
    pub heights_decided: u64,
}

impl Sequencer {
    /// The sequencer of `genesis`'s validators, run by the nodes whose keys
    /// are `validator_keys` (node `i` holds key `i`).
    pub fn new(genesis: &Genesis, validator_keys: &[PublicKey], block_time_ms: u64) -> Sequencer {
        let power: Vec<u64> =
            validator_keys.iter().map(|key| genesis.voting_power_of(key).unwrap_or(0)).collect();
        let mut order: Vec<NodeId> = (0..validator_keys.len()).collect();
        // As consensus/context.rs orders them: power descending, then key.
        order.sort_by(|a, b| power[*b].cmp(&power[*a]).then(validator_keys[*a].cmp(&validator_keys[*b])));
        Sequencer {
            order,
            power,
            total_power: genesis.total_voting_power(),
            height: 1,
            round: 0,
            height_started_us: 0,
            stopped: false,
            block_time_us: block_time_ms * 1_000,
            rounds_timed_out: 0,
            heights_decided: 0,
        }
    }

    /// The proposer of `round` at `height`: round robin over the ordered
    /// validators, as consensus selects it.
    pub fn proposer(&self, height: u64, round: u32) -> NodeId {
        let count = self.order.len().max(1) as u64;
        let index = height.saturating_sub(1).wrapping_add(u64::from(round)) % count;
        self.order[usize::try_from(index).unwrap_or(0)]
    }

    /// Whether `power` is more than two thirds of the total.
    pub fn quorum(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total_power) * 2
    }

    /// How long `round` may take.
    pub fn timeout_us(round: u32) -> TimeUs {
        ROUND_TIMEOUT_US + ROUND_TIMEOUT_STEP_US * u64::from(round)
    }

    /// Whether (`height`, `round`) is the round in force.
    pub fn current(&self, height: u64, round: u32) -> bool {
        self.height == height && self.round == round
    }

    /// `height` was decided at `now_us`: when the next height starts (a
    /// block time after this one started, at the earliest now).
    pub fn decided(&mut self, height: u64, now_us: TimeUs) -> TimeUs {
        debug_assert_eq!(height, self.height);
        self.heights_decided += 1;
        self.height = height + 1;
        self.round = 0;
        let next_us = now_us.max(self.height_started_us + self.block_time_us);
        self.height_started_us = next_us;
        next_us
    }
}

/// Whether a block stamped `timestamp_ms` is within `tolerance_ms` (the
/// genesis's block-time tolerance) of a validator's clock `clock_ms`, either
/// way: a proposer whose clock is behind is refused too.
pub fn timely(timestamp_ms: u64, clock_ms: u64, tolerance_ms: u64) -> bool {
    timestamp_ms.abs_diff(clock_ms) <= tolerance_ms
}

#[cfg(test)]
mod tests {
    use gridshare_ledger::genesis::Validator;
    use gridshare_ledger::testkit::{TestCommunity, test_market};

    use super::*;

    #[test]
    fn proposers_rotate_over_the_validators_in_consensus_order_and_a_quorum_is_over_two_thirds() {
        let mut genesis = TestCommunity::new(1, 0, test_market(), 0).genesis;
        // Node 0 has key 3, node 1 key 1, node 2 key 2, node 3 key 4 with
        // twice the power: consensus order is 3, 1, 2, 0.
        let keys: Vec<PublicKey> = [3_u8, 1, 2, 4].into_iter().map(|byte| PublicKey([byte; 32])).collect();
        genesis.validators = keys
            .iter()
            .map(|key| Validator { key: *key, voting_power: if key.0[0] == 4 { 2 } else { 1 } })
            .collect();
        let sequencer = Sequencer::new(&genesis, &keys, 250);
        assert_eq!(sequencer.order, [3, 1, 2, 0]);
        assert_eq!(sequencer.proposer(1, 0), 3);
        assert_eq!(sequencer.proposer(2, 0), 1);
        assert_eq!(sequencer.proposer(1, 1), 1, "the next round's proposer is the next validator");
        assert_eq!(sequencer.proposer(4, 1), 3);
        assert_eq!(sequencer.total_power, 5);
        assert!(!sequencer.quorum(3) && sequencer.quorum(4));
    }

    #[test]
    fn a_decided_height_starts_the_next_a_block_time_after_it_started() {
        let community = TestCommunity::new(1, 0, test_market(), 0);
        let mut sequencer = Sequencer::new(&community.genesis, &[community.validator.public()], 250);
        assert!(sequencer.current(1, 0));
        assert_eq!(sequencer.decided(1, 40_000), 250_000);
        assert!(sequencer.current(2, 0));
        // A slow height starts the next at once.
        sequencer.round = 2;
        assert_eq!(sequencer.decided(2, 900_000), 900_000);
        assert!(sequencer.current(3, 0));
        assert_eq!(Sequencer::timeout_us(2), 2_000_000);
        assert!(timely(10_000, 15_000, 5_000) && timely(20_000, 15_000, 5_000));
        assert!(!timely(9_999, 15_000, 5_000) && !timely(20_001, 15_000, 5_000));
        assert!(timely(13_000, 15_000, 2_000) && !timely(12_999, 15_000, 2_000));
    }
}
