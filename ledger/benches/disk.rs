//! Bytes on disk per offer in a redb store: 1,000 households each offer in
//! every interval, blocks one interval apart, clearings and settlements
//! included. Run with `cargo bench -p gridshare-ledger --bench disk`
//! (`GRIDSHARE_DISK_BLOCKS=200` for 200,000 offers).
//!
//! The store's files are measured after every commit, as a node leaves
//! them: no compaction or other step afterwards. *File bytes* are their
//! lengths (what `ls -l` shows), *allocated* the blocks the file system
//! holds for them (what `du` shows).

use std::path::Path;
use std::time::{Duration, Instant};

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
/// The worst file size per offer is taken from this many offers on, where
/// the store's fixed part no longer dominates.
const WORST_FROM_OFFERS: u64 = 10_000;
const T0: u64 = 1_000_000;

/// The length of a file and the bytes allocated for it.
#[derive(Clone, Copy, Debug, Default)]
struct Size {
    length_bytes: u64,
    allocated_bytes: u64,
}

impl Size {
    fn of(path: &Path) -> Size {
        let metadata = std::fs::metadata(path).expect("a store file");
        #[cfg(unix)]
        let allocated_bytes = std::os::unix::fs::MetadataExt::blocks(&metadata) * 512;
        #[cfg(not(unix))]
        let allocated_bytes = metadata.len();
        Size { length_bytes: metadata.len(), allocated_bytes }
    }

    fn plus(self, other: Size) -> Size {
        Size {
            length_bytes: self.length_bytes + other.length_bytes,
            allocated_bytes: self.allocated_bytes + other.allocated_bytes,
        }
    }
}

fn main() {
    let blocks_with_offers: u64 = std::env::var("GRIDSHARE_DISK_BLOCKS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(BLOCKS_WITH_OFFERS_DEFAULT);
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("ledger.redb");
    let blocks_path = RedbStore::blocks_path_of(&path);
    let mut community = TestCommunity::new(21, HOUSEHOLDS, test_market(), T0);
    let genesis = community.genesis.clone();
    let proposer = community.validator.public();
    let mut store = RedbStore::create(&path, &genesis).expect("a new store");
    let mut state = State::genesis(&genesis);
    let registrations = community.registrations();
    let validator = gridshare_ledger::ids::Keypair::from_seed(community.validator.seed());
    let raw_bytes = std::cell::Cell::new(0_u64);
    let tx_bytes = std::cell::Cell::new(0_u64);
    // Time in `commit` (encoding, writes, fsyncs) for the blocks of offers.
    let commit_time = std::cell::Cell::new((Duration::ZERO, Duration::ZERO));
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
        let started = Instant::now();
        store.commit(&certified, &built.state).expect("a commit");
        let elapsed = started.elapsed();
        let (total, longest) = commit_time.get();
        commit_time.set((total + elapsed, longest.max(elapsed)));
        *state = built.state;
    };
    commit(&mut store, &mut state, registrations, T0 + 100);
    let sizes = || (Size::of(&path), Size::of(&blocks_path));
    let (redb_before, blocks_before) = sizes();
    let before = redb_before.plus(blocks_before);
    let (raw_before, tx_before) = (raw_bytes.get(), tx_bytes.get());
    commit_time.set((Duration::ZERO, Duration::ZERO));

    let mut random = SplitMix64(3);
    let mut offers = 0_u64;
    // The largest file length per offer seen after a commit, and where.
    let mut worst = (0_u64, 0_u64);
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
        let (redb, blocks) = sizes();
        let per_offer = (redb.plus(blocks).length_bytes - before.length_bytes) / offers;
        if offers >= WORST_FROM_OFFERS.min(u64::from(HOUSEHOLDS) * blocks_with_offers) && per_offer > worst.0
        {
            worst = (per_offer, offers);
        }
    }
    let (redb, blocks) = sizes();
    let after = redb.plus(blocks);
    let height = store.height().expect("a height");
    drop(store);
    // What reading it back costs: opening (redb's integrity check, recovery
    // from the snapshot) and every block read, checked and decoded.
    let started = Instant::now();
    let store = RedbStore::open(&path).expect("the store reopens");
    let open_time = started.elapsed();
    let started = Instant::now();
    for h in 1..=height {
        store.block(h).expect("a block").expect("a stored block");
    }
    let read_time = started.elapsed();
    drop(store);
    // redb's own accounting of what its file holds.
    let db = redb::Database::open(&path).expect("the store reopens");
    let write = db.begin_write().expect("a write transaction");
    let stats = write.stats().expect("redb statistics");
    write.abort().expect("an abort");
    let redb_live = stats.stored_bytes() + stats.metadata_bytes();
    let per_offer = |bytes: u64| bytes / offers;
    println!("disk: {offers} offers in {blocks_with_offers} blocks of {HOUSEHOLDS} offers (height {height})");
    println!(
        "disk: per offer: {} canonical bytes in blocks ({} of them the offer transaction); \
         {} bytes of blocks file, {} bytes of redb file ({} live in redb)",
        per_offer(raw_bytes.get() - raw_before),
        per_offer(tx_bytes.get() - tx_before),
        per_offer(blocks.length_bytes - blocks_before.length_bytes),
        // redb may have shrunk its file meanwhile.
        (i128::from(redb.length_bytes) - i128::from(redb_before.length_bytes)) / i128::from(offers),
        per_offer(redb_live),
    );
    println!(
        "disk: per offer: {} file bytes ({} allocated), {} with the files' size before the first offer; \
         the most after any commit from {} offers on: {} (at {} offers)",
        per_offer(after.length_bytes - before.length_bytes),
        per_offer(after.allocated_bytes.saturating_sub(before.allocated_bytes)),
        per_offer(after.length_bytes),
        WORST_FROM_OFFERS,
        worst.0,
        worst.1,
    );
    println!(
        "disk: files: {} bytes of blocks file, {} bytes of redb file ({} allocated)",
        blocks.length_bytes, redb.length_bytes, redb.allocated_bytes
    );
    let (total, longest) = commit_time.get();
    let average = total / u32::try_from(blocks_with_offers.max(1)).unwrap_or(u32::MAX);
    println!(
        "disk: commit: {average:.1?} per block on average, {longest:.1?} at most; \
         open: {open_time:.1?}; reading every block: {read_time:.1?}"
    );
}
