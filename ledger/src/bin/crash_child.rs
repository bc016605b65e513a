//! The child process of the store's crash test (ledger/tests/store.rs):
//! `ledger-crash-child STORE SEED` creates or opens the store of the test
//! community of SEED and commits blocks until it is killed, printing each
//! committed height on its own line once `commit` has returned.
//!
//! The test also includes this file as a module for its block workload.

use std::io::Write;
use std::process::ExitCode;

use gridshare_ledger::block::CertifiedBlock;
use gridshare_ledger::execute::BuiltBlock;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::state::State;
use gridshare_ledger::store::{RedbStore, Store};
use gridshare_ledger::testkit::{LocalValidator, TestCommunity, test_market};
use gridshare_ledger::tx::{Side, SignedTx, Tx};
use gridshare_ledger::{MICROS_PER_UNIT, NANOS_PER_UNIT};

/// Households of the test community.
pub(crate) const HOUSEHOLDS: u32 = 4;
/// The genesis time: a whole second, so one-second blocks start intervals.
pub(crate) const GENESIS_TIME_MS: u64 = 1_750_000_000_000;
/// Time between blocks: one market interval.
pub(crate) const BLOCK_SPACING_MS: u64 = 1_000;
/// Every this many blocks the registrar tops every account up.
const CREDIT_EVERY_BLOCKS: u64 = 50;

/// splitmix64: a small seeded generator, enough for test workloads.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `low..=high` (the modulo bias is irrelevant here).
    pub(crate) fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// The test community of `seed` and its block producer.
pub(crate) fn community(seed: u64) -> (TestCommunity, LocalValidator) {
    let community = TestCommunity::new(seed, HOUSEHOLDS, test_market(), GENESIS_TIME_MS);
    let validator = LocalValidator { keypair: Keypair::from_seed(community.validator.seed()) };
    (community, validator)
}

/// Produces the block after `state`: the registrations first, then meter
/// readings, buy and sell offers for the next intervals (which later blocks
/// clear and settle) and, now and then, credits. `rng` picks the amounts.
pub(crate) fn next_block(
    community: &mut TestCommunity,
    validator: &LocalValidator,
    state: &State,
    rng: &mut SplitMix64,
) -> (CertifiedBlock, BuiltBlock) {
    let time_ms = state.last_timestamp_ms + BLOCK_SPACING_MS;
    let candidates = if state.accounts.is_empty() {
        community.registrations()
    } else {
        transactions(community, state, time_ms, rng)
    };
    let genesis: &Genesis = &community.genesis;
    let (block, built) = validator.produce(genesis, state, candidates, time_ms).expect("a valid block");
    assert!(built.left_out.is_empty(), "the workload made inadmissible transactions: {:?}", built.left_out);
    (block, built)
}

fn transactions(
    community: &TestCommunity,
    state: &State,
    time_ms: u64,
    rng: &mut SplitMix64,
) -> Vec<SignedTx> {
    let genesis = &community.genesis;
    let current = genesis.interval_at(time_ms);
    let mut txs = Vec::new();
    if state.height.is_multiple_of(CREDIT_EVERY_BLOCKS) {
        let registrar = community.registrar.public();
        let last_nonce = state.registrar_nonces.get(&registrar).copied().unwrap_or(0);
        for (nonce, household) in (last_nonce + 1..).zip(&community.households) {
            let tx = Tx::Credit {
                registrar,
                nonce,
                account: household.account.public(),
                amount_nano: 10 * NANOS_PER_UNIT,
                reference: "top-up".to_string(),
            };
            txs.push(SignedTx::sign(tx, &community.registrar, &genesis.community_id));
        }
    }
    for (index, household) in community.households.iter().enumerate() {
        let meter = &state.meters[&household.meter.public()];
        let (last_interval, import_wh, export_wh) = meter
            .last_reading
            .map_or((None, 0, 0), |r| (Some(r.interval), r.import_wh_total, r.export_wh_total));
        // The reading at the end of the interval that just ended.
        let ended = current - 1;
        let (import_wh, export_wh) = if last_interval.is_none_or(|last| last < ended) && rng.between(0, 2) > 0
        {
            let import_wh = import_wh + rng.between(0, 20);
            let export_wh = export_wh + rng.between(0, 20);
            txs.push(community.reading_tx(index, ended, import_wh, export_wh));
            (import_wh, export_wh)
        } else {
            (import_wh, export_wh)
        };
        if rng.between(0, 1) == 0 {
            continue;
        }
        let account = &state.accounts[&household.account.public()];
        let side = if index % 2 == 0 { Side::Sell } else { Side::Buy };
        let attestation = community.reading(index, ended, import_wh, export_wh);
        txs.push(community.offer_tx(
            index,
            account.last_nonce + 1,
            current + rng.between(1, 3),
            side,
            rng.between(1, 60),
            rng.between(0, MICROS_PER_UNIT),
            attestation,
        ));
    }
    txs
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, seed] = &args[..] else {
        eprintln!("usage: ledger-crash-child STORE SEED");
        return ExitCode::from(2);
    };
    let Ok(seed) = seed.parse::<u64>() else {
        eprintln!("the seed must be a number, not {seed:?}");
        return ExitCode::from(2);
    };
    let (mut community, validator) = community(seed);
    let mut store = match RedbStore::create(path, &community.genesis) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("cannot open the store: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut state = match store.state() {
        Ok(state) => state,
        Err(error) => {
            eprintln!("cannot read the state: {error}");
            return ExitCode::FAILURE;
        }
    };
    // A different workload after every restart.
    let mut rng = SplitMix64(seed ^ state.height.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut stdout = std::io::stdout().lock();
    loop {
        let (block, built) = next_block(&mut community, &validator, &state, &mut rng);
        if let Err(error) = store.commit(&block, &built.state) {
            eprintln!("commit of block {} failed: {error}", block.block.header.height);
            return ExitCode::FAILURE;
        }
        state = built.state;
        // The parent stops listening when it kills us; stop if it went away.
        if writeln!(stdout, "{}", state.height).and_then(|()| stdout.flush()).is_err() {
            return ExitCode::SUCCESS;
        }
    }
}
