//! Bytes on disk per offer in a redb store: 1,000 households each offer in
//! every interval, blocks one interval apart, clearings and settlements
//! included. Run with `cargo bench -p gridshare-ledger --bench disk`.

use gridshare_ledger::block::CertifiedBlock;
use gridshare_ledger::block::CommitCertificate;
use gridshare_ledger::execute::{Signatures, build_block};
use gridshare_ledger::state::State;
use gridshare_ledger::store::{RedbStore, Store};
use gridshare_ledger::testkit::{SplitMix64, TestCommunity, test_market};
use gridshare_ledger::tx::Side;

const HOUSEHOLDS: u32 = 1_000;
/// Blocks of offers; `GRIDSHARE_DISK_BLOCKS` overrides it for longer runs.
const BLOCKS_WITH_OFFERS_DEFAULT: u64 = 40;
const T0: u64 = 1_000_000;

fn main() {
    let blocks_with_offers: u64 = std::env::var("GRIDSHARE_DISK_BLOCKS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(BLOCKS_WITH_OFFERS_DEFAULT);
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("ledger.redb");
    let mut community = TestCommunity::new(21, HOUSEHOLDS, test_market(), T0);
    let genesis = community.genesis.clone();
    let proposer = community.validator.public();
    let mut store = RedbStore::create(&path, &genesis).expect("a new store");
    let mut state = State::genesis(&genesis);
    let registrations = community.registrations();
    let validator = gridshare_ledger::ids::Keypair::from_seed(community.validator.seed());
    let raw_bytes = std::cell::Cell::new(0_u64);
    let tx_bytes = std::cell::Cell::new(0_u64);
    let commit = |store: &mut RedbStore, state: &mut State, candidates, time_ms| {
        let built = build_block(&genesis, state, candidates, time_ms, proposer, Signatures::AlreadyVerified)
            .expect("a valid block");
        assert!(built.left_out.is_empty(), "{:?}", &built.left_out[..1]);
        let certificate = CommitCertificate::sign(&built.block.header, 0, &[&validator]);
        let certified = CertifiedBlock { block: built.block, certificate };
        raw_bytes.set(raw_bytes.get() + gridshare_ledger::encoding::to_bytes(&certified).len() as u64);
        tx_bytes.set(
            tx_bytes.get() + gridshare_ledger::encoding::to_bytes(&certified.block.transactions).len() as u64,
        );
        store.commit(&certified, &built.state).expect("a commit");
        *state = built.state;
    };
    commit(&mut store, &mut state, registrations, T0 + 100);
    let size = || std::fs::metadata(&path).expect("the store file").len();
    let before = size();
    let (raw_before, tx_before) = (raw_bytes.get(), tx_bytes.get());

    let mut random = SplitMix64(3);
    let mut offers = 0_u64;
    for block in 0..blocks_with_offers {
        let time_ms = T0 + 1_000 * (block + 1) + 100;
        let interval = genesis.interval_at(time_ms) + 2;
        let candidates = (0..community.households.len())
            .map(|h| {
                let side = if h % 2 == 0 { Side::Sell } else { Side::Buy };
                let attestation = community.reading(h, interval - 2, 0, 0);
                let energy_wh = random.between(100, 1_500);
                let price = random.between(50_000, 400_000);
                community.offer_tx(h, block + 1, interval, side, energy_wh, price, attestation)
            })
            .collect();
        offers += u64::from(HOUSEHOLDS);
        commit(&mut store, &mut state, candidates, time_ms);
    }
    let after = size();
    let height = store.height().expect("a height");
    drop(store);
    // redb's own accounting: live bytes versus the file, which grows in
    // large steps and keeps freed pages for reuse.
    let mut db = redb::Database::open(&path).expect("the store reopens");
    let write = db.begin_write().expect("a write transaction");
    let stats = write.stats().expect("redb statistics");
    write.abort().expect("an abort");
    let live = stats.stored_bytes() + stats.metadata_bytes();
    db.compact().expect("a compaction");
    drop(db);
    let compacted = size();
    println!("disk: {offers} offers in {blocks_with_offers} blocks of {HOUSEHOLDS} offers (height {height})");
    println!(
        "disk: per offer: {} canonical bytes in blocks ({} of them the offer transaction), \
         {} live bytes in redb, {} bytes of file ({} after compaction)",
        (raw_bytes.get() - raw_before) / offers,
        (tx_bytes.get() - tx_before) / offers,
        live / offers,
        (after - before) / offers,
        compacted.saturating_sub(before) / offers,
    );
}
