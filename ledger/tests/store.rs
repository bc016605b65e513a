//! Tests of the chain stores: both stores keep a chain and refuse blocks
//! that do not follow it; the redb store survives reopening, keeps one state
//! snapshot, reports damaged and foreign files as errors (never panics),
//! keeps equivocation evidence of both kinds, moves stores of layouts 1 and
//! 2 to its own, and loses no acknowledged commit when its process is killed
//! at an arbitrary instant.
//!
//! The crash test runs 200 kills by default; a longer run:
//! `GRIDSHARE_CRASH_ITERATIONS=1000 cargo test -p gridshare-ledger --test store crash`
//! (`GRIDSHARE_CRASH_SEED=N` replays the plan of a reported seed; the kill
//! instants themselves are up to the scheduler). Kills land right after an
//! acknowledged commit, at a random instant of start-up, or as soon as the
//! store file starts changing for the next commit.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gridshare_ledger::Hash;
use gridshare_ledger::block::CertifiedBlock;
use gridshare_ledger::block::CommitCertificate;
use gridshare_ledger::block::{Vote, VoteKind};
use gridshare_ledger::consensus::{Equivocation, Proposal, ProposalEquivocation, VoteEquivocation};
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::execute::{Signatures, execute};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::state::State;
use gridshare_ledger::store::{MemoryStore, RedbStore, SNAPSHOT_EVERY_BLOCKS, Store, StoreError, at_rest};
use gridshare_ledger::testkit::derived_key;
use gridshare_ledger::tx::Tx;

#[allow(dead_code)] // Its `main` is the child process's; the tests share its workload.
#[path = "../src/bin/crash_child.rs"]
mod crash_child;

use crash_child::{SplitMix64, community, next_block};

/// A chain of `blocks` blocks of the test community of `seed`, with the
/// state after each block.
fn chain(seed: u64, blocks: u64) -> (Genesis, Vec<(CertifiedBlock, State)>) {
    let (mut community, validator) = community(seed);
    let mut rng = SplitMix64(seed);
    let mut state = State::genesis(&community.genesis);
    let mut chain = Vec::new();
    for _ in 0..blocks {
        let (block, built) = next_block(&mut community, &validator, &state, &mut rng);
        state = built.state;
        chain.push((block, state.clone()));
    }
    (community.genesis, chain)
}

/// Block `height` of a chain.
fn at(chain: &[(CertifiedBlock, State)], height: u64) -> &(CertifiedBlock, State) {
    &chain[usize::try_from(height - 1).unwrap()]
}

/// Checks `store` holds exactly the first `height` blocks of `chain`.
fn assert_holds(store: &impl Store, genesis: &Genesis, chain: &[(CertifiedBlock, State)], height: u64) {
    assert_eq!(store.genesis().unwrap(), *genesis);
    assert_eq!(store.height().unwrap(), height);
    for h in 1..=height {
        assert_eq!(store.block(h).unwrap().as_ref(), Some(&at(chain, h).0), "block {h}");
    }
    assert_eq!(store.block(0).unwrap(), None);
    assert_eq!(store.block(height + 1).unwrap(), None);
    let state = store.state().unwrap();
    let expected = if height == 0 { State::genesis(genesis) } else { at(chain, height).1.clone() };
    assert_eq!(state.root(&genesis.community_id), expected.root(&genesis.community_id));
    assert_eq!(state, expected);
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn both_stores_keep_the_chain_and_redb_recovers_it_on_open() {
    // Crosses two snapshots, and reopens on, before and after them.
    let blocks = 2 * SNAPSHOT_EVERY_BLOCKS + 10;
    let (genesis, chain) = chain(1, blocks);
    let offers: usize = chain
        .iter()
        .map(|(block, _)| block.block.transactions.iter().filter(|tx| matches!(tx.tx, Tx::Offer(_))).count())
        .sum();
    assert!(offers > 100, "the workload made only {offers} offers");
    let dir = temp_dir();
    let path = dir.path().join("chain.redb");
    let mut memory = MemoryStore::new(genesis.clone());
    let mut redb = RedbStore::create(&path, &genesis).unwrap();
    assert_holds(&redb, &genesis, &chain, 0);
    let reopen_at = [1, 2, SNAPSHOT_EVERY_BLOCKS - 1, SNAPSHOT_EVERY_BLOCKS, SNAPSHOT_EVERY_BLOCKS + 1];
    for (height, (block, state)) in (1..).zip(&chain) {
        memory.commit(block, state).unwrap();
        redb.commit(block, state).unwrap();
        assert_eq!(memory.height().unwrap(), height);
        assert_eq!(redb.height().unwrap(), height);
        if reopen_at.contains(&height) || height == 2 * SNAPSHOT_EVERY_BLOCKS {
            drop(redb);
            redb = RedbStore::open(&path).unwrap();
            assert_holds(&redb, &genesis, &chain, height);
        }
    }
    assert_holds(&memory, &genesis, &chain, blocks);
    assert_holds(&redb, &genesis, &chain, blocks);
    drop(redb);
    // `create` on the store of the same genesis opens it.
    let redb = RedbStore::create(&path, &genesis).unwrap();
    assert_holds(&redb, &genesis, &chain, blocks);
    assert_eq!(redb.blocks_path(), RedbStore::blocks_path_of(&path));
    drop(redb);
    // Only the latest snapshot is kept.
    let db = redb::Database::open(&path).unwrap();
    let read = redb::ReadableDatabase::begin_read(&db).unwrap();
    let snapshots = read.open_table(SNAPSHOTS).unwrap();
    let heights: Vec<u64> =
        redb::ReadableTable::iter(&snapshots).unwrap().map(|entry| entry.unwrap().0.value()).collect();
    assert_eq!(heights, [2 * SNAPSHOT_EVERY_BLOCKS]);
    drop((snapshots, read, db));
    let size = std::fs::metadata(&path).unwrap().len()
        + std::fs::metadata(RedbStore::blocks_path_of(&path)).unwrap().len();
    let per_offer = size / u64::try_from(offers).unwrap();
    eprintln!("{blocks} blocks with {offers} offers: {size} bytes on disk, {per_offer} bytes per offer");
}

/// A reader reads, from another thread, the blocks committed when it was
/// made, while the store goes on committing; a reader made later sees the
/// later ones.
#[test]
fn a_reader_reads_committed_blocks_from_another_thread_while_the_store_commits() {
    let (genesis, chain) = chain(3, 20);
    let dir = temp_dir();
    let mut redb = RedbStore::create(dir.path().join("chain.redb"), &genesis).unwrap();
    for (block, state) in &chain[..10] {
        redb.commit(block, state).unwrap();
    }
    let reader = redb.reader().unwrap();
    let reading = std::thread::spawn(move || {
        let blocks: Vec<Option<CertifiedBlock>> =
            (0..=12).map(|height| reader.block(height).unwrap()).collect();
        (reader.height(), blocks)
    });
    for (block, state) in &chain[10..] {
        redb.commit(block, state).unwrap();
    }
    let (height, blocks) = reading.join().unwrap();
    assert_eq!(height, 10);
    assert_eq!(blocks[0], None);
    for h in 1..=10 {
        assert_eq!(blocks[usize::try_from(h).unwrap()].as_ref(), Some(&at(&chain, h).0), "block {h}");
    }
    assert_eq!((blocks[11].as_ref(), blocks[12].as_ref()), (None, None), "beyond the reader's height");
    let later = redb.reader().unwrap();
    assert_eq!(later.height(), 20);
    assert_eq!(later.block(20).unwrap().as_ref(), Some(&at(&chain, 20).0));
}

/// `block` linked to `previous_hash` instead, and certified by the
/// validator of the community of `seed`: well formed except for its link.
fn relinked(block: &CertifiedBlock, previous_hash: Hash, seed: u64) -> CertifiedBlock {
    let (community, _) = community(seed);
    let mut block = block.clone();
    block.block.header.previous_hash = previous_hash;
    block.certificate = CommitCertificate::sign(&block.block.header, 0, &[&community.validator]);
    block
}

/// Commits three blocks, then checks `store` refuses wrong ones and still
/// takes the right fourth.
fn refuses_blocks_that_do_not_follow(
    store: &mut impl Store,
    genesis: &Genesis,
    chain: &[(CertifiedBlock, State)],
) {
    for h in 1..=3 {
        let (block, state) = at(chain, h);
        store.commit(block, state).unwrap();
    }
    let (fourth, fourth_state) = at(chain, 4);
    // Wrong heights: a gap and a repeat.
    let (fifth, fifth_state) = at(chain, 5);
    let error = store.commit(fifth, fifth_state).unwrap_err();
    assert!(matches!(error, StoreError::NotNext { height: 3, found: 5 }), "{error}");
    let (third, third_state) = at(chain, 3);
    let error = store.commit(third, third_state).unwrap_err();
    assert!(matches!(error, StoreError::NotNext { height: 3, found: 3 }), "{error}");
    // A wrong link, even with a valid certificate.
    let wrong_link = relinked(fourth, at(chain, 2).0.block.header.hash(), 1);
    let error = store.commit(&wrong_link, fourth_state).unwrap_err();
    assert!(matches!(error, StoreError::WrongPrevious { height: 4, .. }), "{error}");
    // A certificate by a key that is not a validator.
    let outsider = derived_key(999, 2, 0);
    let mut forged = fourth.clone();
    forged.certificate = CommitCertificate::sign(&fourth.block.header, 0, &[&outsider]);
    let error = store.commit(&forged, fourth_state).unwrap_err();
    assert!(matches!(error, StoreError::BadCertificate { height: 4, .. }), "{error}");
    // Another block's certificate.
    let mut swapped = fourth.clone();
    swapped.certificate = third.certificate.clone();
    let error = store.commit(&swapped, fourth_state).unwrap_err();
    assert!(matches!(error, StoreError::BadCertificate { height: 4, .. }), "{error}");
    // A state whose root is not the header's.
    let mut state = fourth_state.clone();
    state.grid_balance_nano += 1;
    let error = store.commit(fourth, &state).unwrap_err();
    assert!(matches!(error, StoreError::StateRootMismatch { height: 4, .. }), "{error}");
    let error = store.commit(fourth, third_state).unwrap_err();
    assert!(matches!(error, StoreError::StateRootMismatch { height: 4, .. }), "{error}");
    // Nothing was stored by the refusals.
    assert_holds(store, genesis, chain, 3);
    store.commit(fourth, fourth_state).unwrap();
    assert_holds(store, genesis, chain, 4);
}

#[test]
fn both_stores_refuse_blocks_that_do_not_follow() {
    let (genesis, chain) = chain(1, 5);
    refuses_blocks_that_do_not_follow(&mut MemoryStore::new(genesis.clone()), &genesis, &chain);
    let dir = temp_dir();
    let path = dir.path().join("chain.redb");
    let mut redb = RedbStore::create(&path, &genesis).unwrap();
    refuses_blocks_that_do_not_follow(&mut redb, &genesis, &chain);
    drop(redb);
    assert_holds(&RedbStore::open(&path).unwrap(), &genesis, &chain, 4);
}

/// The redb file of a store holding `chain`.
fn store_file(dir: &Path, genesis: &Genesis, chain: &[(CertifiedBlock, State)]) -> PathBuf {
    let path = dir.join("original.redb");
    let mut store = RedbStore::create(&path, genesis).unwrap();
    for (block, state) in chain {
        store.commit(block, state).unwrap();
    }
    path
}

/// A copy of the store `original` (its redb file and its blocks file, if
/// there is one) named `name`.
fn copied(original: &Path, name: &str) -> PathBuf {
    let path = original.with_file_name(name);
    std::fs::copy(original, &path).unwrap();
    let blocks = RedbStore::blocks_path_of(original);
    if blocks.exists() {
        std::fs::copy(&blocks, RedbStore::blocks_path_of(&path)).unwrap();
    }
    path
}

/// A copy of the store `original` named `name`, changed through redb by
/// `change`.
fn altered(original: &Path, name: &str, change: impl FnOnce(&redb::WriteTransaction)) -> PathBuf {
    let path = copied(original, name);
    let db = redb::Database::open(&path).unwrap();
    let write = db.begin_write().unwrap();
    change(&write);
    write.commit().unwrap();
    path
}

const BLOCK_INDEX: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("block_index");
const SNAPSHOTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("state_snapshots");
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
const EVIDENCE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("evidence");
/// Layout 1's tables: blocks and snapshots in borsh.
const BLOCKS_1: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("blocks");
const SNAPSHOTS_1: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("snapshots");
/// The blocks file's header: magic, version, genesis hash.
const BLOCKS_HEADER_BYTES: usize = 50;

/// A copy of the store `original` named `name` whose block records (the
/// at-rest bytes of each height) `change` rewrites: the blocks file is
/// written again in height order and every index entry (offset, length,
/// blake3) with it, so the store's own checksums hold.
fn with_records(original: &Path, name: &str, change: impl FnOnce(&mut BTreeMap<u64, Vec<u8>>)) -> PathBuf {
    let path = copied(original, name);
    let blocks_path = RedbStore::blocks_path_of(&path);
    let file = std::fs::read(&blocks_path).unwrap();
    let db = redb::Database::open(&path).unwrap();
    let write = db.begin_write().unwrap();
    {
        let mut index = write.open_table(BLOCK_INDEX).unwrap();
        let mut records = BTreeMap::new();
        for entry in redb::ReadableTable::iter(&index).unwrap() {
            let (height, location) = entry.unwrap();
            let location = location.value();
            let offset = usize::try_from(u64::from_le_bytes(location[..8].try_into().unwrap())).unwrap();
            let length = usize::try_from(u32::from_le_bytes(location[8..12].try_into().unwrap())).unwrap();
            records.insert(height.value(), file[offset..offset + length].to_vec());
        }
        change(&mut records);
        let mut rewritten = file[..BLOCKS_HEADER_BYTES].to_vec();
        for (height, record) in &records {
            let offset = u64::try_from(rewritten.len()).unwrap();
            let length = u32::try_from(record.len()).unwrap();
            let location =
                [&offset.to_le_bytes()[..], &length.to_le_bytes(), blake3::hash(record).as_bytes()].concat();
            index.insert(*height, location.as_slice()).unwrap();
            rewritten.extend_from_slice(record);
        }
        std::fs::write(&blocks_path, rewritten).unwrap();
    }
    write.commit().unwrap();
    path
}

/// A copy of the store `original` named `name` with block `height`'s
/// record replaced by `record`.
fn with_record(original: &Path, name: &str, height: u64, record: Vec<u8>) -> PathBuf {
    with_records(original, name, |records| {
        records.insert(height, record);
    })
}

/// The at-rest record of `block`, as the store writes it.
fn record_of(block: &CertifiedBlock) -> Vec<u8> {
    at_rest::encode(&to_bytes(block))
}

/// `result`'s error, which must be `Corrupt` and mention `needle`.
fn assert_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, needle: &str) {
    let error = result.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
    assert!(error.to_string().contains(needle), "{error} does not mention {needle}");
}

#[test]
fn redb_reports_damaged_records_by_table_and_key() {
    let height = SNAPSHOT_EVERY_BLOCKS + 6;
    let (genesis, chain) = chain(2, height);
    let dir = temp_dir();
    let original = store_file(dir.path(), &genesis, &chain);

    // Garbage in an old block: the store opens, reading the block fails.
    let path = with_record(&original, "old-block.redb", 5, b"garbage".to_vec());
    let store = RedbStore::open(&path).unwrap();
    assert_corrupt(store.block(5), "blocks[5]: unknown at-rest encoding");
    // A valid encoding with bytes left over is refused as well.
    let mut trailing = to_bytes(&at(&chain, 6).0);
    trailing.push(0);
    let path = with_record(&original, "trailing.redb", 6, at_rest::encode(&trailing));
    assert_corrupt(RedbStore::open(&path).unwrap().block(6), "blocks[6]");
    // A record changed in the blocks file, not in the index: its checksum.
    let path = copied(&original, "flipped.redb");
    let blocks_path = RedbStore::blocks_path_of(&path);
    let mut bytes = std::fs::read(&blocks_path).unwrap();
    bytes[BLOCKS_HEADER_BYTES + 10] ^= 1;
    std::fs::write(&blocks_path, &bytes).unwrap();
    assert_corrupt(
        RedbStore::open(&path).unwrap().block(1),
        "blocks[1]: its record does not match its checksum",
    );
    // An index entry that is not a location, or points past the records.
    let path = altered(&original, "index.redb", |write| {
        write.open_table(BLOCK_INDEX).unwrap().insert(7, b"garbage".as_slice()).unwrap();
    });
    assert_corrupt(RedbStore::open(&path).unwrap().block(7), "block_index[7]: not a record location");
    let path = altered(&original, "outside.redb", |write| {
        let location = [&u64::MAX.to_le_bytes()[..], &[0; 36]].concat();
        write.open_table(BLOCK_INDEX).unwrap().insert(8, location.as_slice()).unwrap();
    });
    assert_corrupt(RedbStore::open(&path).unwrap().block(8), "blocks[8]: its record (bytes");

    // Garbage in the snapshot, in a block after it, in the tip, in the genesis.
    let path = altered(&original, "snapshot.redb", |write| {
        write.open_table(SNAPSHOTS).unwrap().insert(SNAPSHOT_EVERY_BLOCKS, b"garbage".as_slice()).unwrap();
    });
    assert_corrupt(RedbStore::open(&path), &format!("snapshots[{SNAPSHOT_EVERY_BLOCKS}]"));
    let path = with_record(&original, "replayed.redb", height - 2, vec![1, 2, 3]);
    assert_corrupt(RedbStore::open(&path), &format!("blocks[{}]", height - 2));
    let path = with_record(&original, "tip.redb", height, Vec::new());
    assert_corrupt(RedbStore::open(&path), &format!("blocks[{height}]"));
    let path = altered(&original, "genesis.redb", |write| {
        write.open_table(META).unwrap().insert("genesis", b"garbage".as_slice()).unwrap();
    });
    assert_corrupt(RedbStore::open(&path), "meta[genesis]");

    // A block stored under another height.
    let misplaced = record_of(&at(&chain, height - 1).0);
    let path = with_record(&original, "misplaced.redb", height - 2, misplaced);
    assert_corrupt(RedbStore::open(&path), "holds block");
    // A gap in the blocks.
    let path = altered(&original, "gap.redb", |write| {
        write.open_table(BLOCK_INDEX).unwrap().remove(3).unwrap();
    });
    assert_corrupt(RedbStore::open(&path), "blocks");
    // A snapshot that is not the state of its block.
    let wrong_state = at_rest::encode(&to_bytes(&at(&chain, SNAPSHOT_EVERY_BLOCKS - 1).1));
    let path = altered(&original, "wrong-snapshot.redb", |write| {
        write.open_table(SNAPSHOTS).unwrap().insert(SNAPSHOT_EVERY_BLOCKS, wrong_state.as_slice()).unwrap();
    });
    assert_corrupt(RedbStore::open(&path), &format!("snapshots[{SNAPSHOT_EVERY_BLOCKS}]"));

    // A well-formed block after the snapshot that does not re-execute.
    let mut emptied = at(&chain, height - 2).0.clone();
    emptied.block.transactions.clear();
    let path = with_record(&original, "replay.redb", height - 2, record_of(&emptied));
    let error = RedbStore::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::Replay { height: h, .. } if h == height - 2), "{error}");
    // A tip whose certificate a non-validator signed.
    let mut forged = at(&chain, height).0.clone();
    forged.certificate = CommitCertificate::sign(&forged.block.header, 0, &[&derived_key(999, 2, 0)]);
    let path = with_record(&original, "forged.redb", height, record_of(&forged));
    let error = RedbStore::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::BadCertificate { height: h, .. } if h == height), "{error}");
    // A tip that does not link to the block before: the tip is the snapshot's
    // block, so nothing is re-executed and only the tip check sees it.
    let snapshot_chain = &chain[..usize::try_from(SNAPSHOT_EVERY_BLOCKS).unwrap()];
    std::fs::create_dir(dir.path().join("at-snapshot")).unwrap();
    let at_snapshot = store_file(&dir.path().join("at-snapshot"), &genesis, snapshot_chain);
    let mut replaced = at(&chain, SNAPSHOT_EVERY_BLOCKS - 1).0.clone();
    replaced.block.header.timestamp_ms += 1;
    replaced.certificate = CommitCertificate::sign(&replaced.block.header, 0, &[&community(2).0.validator]);
    let path = with_record(&at_snapshot, "unlinked.redb", SNAPSHOT_EVERY_BLOCKS - 1, record_of(&replaced));
    let error = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(error, StoreError::WrongPrevious { height: h, .. } if h == SNAPSHOT_EVERY_BLOCKS),
        "{error}"
    );
}

#[test]
fn redb_create_and_open_refuse_what_is_not_their_store() {
    let (genesis, chain) = chain(3, 3);
    let dir = temp_dir();
    let path = store_file(dir.path(), &genesis, &chain);
    let not_a_store = |result: Result<RedbStore, StoreError>, needle: &str| {
        let error = result.unwrap_err();
        assert!(matches!(error, StoreError::NotAStore { .. }), "{error:?}");
        assert!(error.to_string().contains(needle), "{error} does not mention {needle}");
        eprintln!("{error}");
    };

    let missing = dir.path().join("missing.redb");
    let error = RedbStore::open(&missing).unwrap_err();
    assert!(
        matches!(error, StoreError::Database(_)) && error.to_string().contains("missing.redb"),
        "{error}"
    );
    assert!(!missing.exists(), "open created a file");

    // One store file, one user at a time.
    let first = RedbStore::open(&path).unwrap();
    let error = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(error, StoreError::Database(_)) && error.to_string().contains("already open"),
        "{error}"
    );
    drop(first);

    // Another community's genesis: refused by create, and the store is intact.
    let (other, _) = community(4);
    let error = RedbStore::create(&path, &other.genesis).unwrap_err();
    assert!(matches!(error, StoreError::GenesisMismatch { .. }), "{error}");
    assert_holds(&RedbStore::create(&path, &genesis).unwrap(), &genesis, &chain, 3);

    // Files that are not redb databases.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    not_a_store(RedbStore::open(&empty), "empty");
    not_a_store(RedbStore::create(&empty, &genesis), "empty");
    let mut rng = SplitMix64(5);
    let random: Vec<u8> = (0..100_000).map(|_| rng.next_u64().to_le_bytes()[0]).collect();
    let random_file = dir.path().join("random");
    std::fs::write(&random_file, &random).unwrap();
    not_a_store(RedbStore::open(&random_file), "not a redb database");
    not_a_store(RedbStore::create(&random_file, &genesis), "not a redb database");
    assert_eq!(std::fs::read(&random_file).unwrap(), random, "create changed a foreign file");

    // redb databases that are not stores.
    let foreign = dir.path().join("foreign.redb");
    {
        let db = redb::Database::create(&foreign).unwrap();
        let write = db.begin_write().unwrap();
        let table: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("accounts");
        write.open_table(table).unwrap().insert("alice", 5).unwrap();
        write.commit().unwrap();
    }
    not_a_store(RedbStore::open(&foreign), "without the `meta` table");
    not_a_store(RedbStore::create(&foreign, &genesis), "without the `meta` table");
    let typed = dir.path().join("typed.redb");
    {
        let db = redb::Database::create(&typed).unwrap();
        let write = db.begin_write().unwrap();
        let table: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("meta");
        write.open_table(table).unwrap().insert(1, 5).unwrap();
        write.commit().unwrap();
    }
    not_a_store(RedbStore::open(&typed), "`meta` table is not ours");
    let unformatted = altered(&path, "unformatted.redb", |write| {
        write.open_table(META).unwrap().remove("format").unwrap();
    });
    not_a_store(RedbStore::open(&unformatted), "format record");
    let newer = altered(&path, "newer.redb", |write| {
        write.open_table(META).unwrap().insert("format", b"gridshare-ledger/4".as_slice()).unwrap();
    });
    not_a_store(RedbStore::open(&newer), "gridshare-ledger/4");

    // The blocks file: missing, truncated, another store's, not one at all.
    let missing_blocks = copied(&path, "missing-blocks.redb");
    std::fs::remove_file(RedbStore::blocks_path_of(&missing_blocks)).unwrap();
    let error = RedbStore::open(&missing_blocks).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)) && error.to_string().contains("missing"), "{error}");
    let truncated = copied(&path, "truncated.redb");
    let blocks = RedbStore::blocks_path_of(&truncated);
    let length = std::fs::metadata(&blocks).unwrap().len();
    std::fs::File::options().write(true).open(&blocks).unwrap().set_len(length - 1).unwrap();
    let error = RedbStore::open(&truncated).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)) && error.to_string().contains("truncated"), "{error}");
    let other_store = dir.path().join("other.redb");
    drop(RedbStore::create(&other_store, &other.genesis).unwrap());
    std::fs::copy(RedbStore::blocks_path_of(&path), RedbStore::blocks_path_of(&other_store)).unwrap();
    not_a_store(RedbStore::open(&other_store), "a blocks file of the store of genesis");
    std::fs::write(RedbStore::blocks_path_of(&other_store), &random).unwrap();
    not_a_store(RedbStore::open(&other_store), "not a Gridshare blocks file");
    assert_eq!(std::fs::read(RedbStore::blocks_path_of(&other_store)).unwrap(), random);
}

#[test]
fn redb_cuts_off_a_record_whose_commit_did_not_complete() {
    let (genesis, chain) = chain(9, 4);
    let dir = temp_dir();
    let path = store_file(dir.path(), &genesis, &chain[..3]);
    let blocks = RedbStore::blocks_path_of(&path);
    let committed = std::fs::read(&blocks).unwrap();
    // What a crash between the record's write and the index's commit leaves.
    let mut interrupted = committed.clone();
    interrupted.extend_from_slice(&record_of(&at(&chain, 4).0)[..100]);
    std::fs::write(&blocks, &interrupted).unwrap();
    let mut store = RedbStore::open(&path).unwrap();
    assert_holds(&store, &genesis, &chain, 3);
    assert_eq!(std::fs::read(&blocks).unwrap(), committed);
    let (fourth, state) = at(&chain, 4);
    store.commit(fourth, state).unwrap();
    drop(store);
    assert_holds(&RedbStore::open(&path).unwrap(), &genesis, &chain, 4);
}

/// Writes the store of layout 1 (`gridshare-ledger/1`, blocks and every
/// snapshot in borsh inside redb) that the build before layout 2 made of
/// `chain`, at `path`.
fn write_layout_1(
    path: &Path,
    genesis: &Genesis,
    chain: &[(CertifiedBlock, State)],
    evidence: &[VoteEquivocation],
) {
    let db = redb::Database::create(path).unwrap();
    let write = db.begin_write().unwrap();
    {
        let mut meta = write.open_table(META).unwrap();
        meta.insert("format", b"gridshare-ledger/1".as_slice()).unwrap();
        meta.insert("genesis", to_bytes(genesis).as_slice()).unwrap();
        let mut blocks = write.open_table(BLOCKS_1).unwrap();
        let mut snapshots = write.open_table(SNAPSHOTS_1).unwrap();
        for (height, (block, state)) in (1..).zip(chain) {
            blocks.insert(height, to_bytes(block).as_slice()).unwrap();
            if height % SNAPSHOT_EVERY_BLOCKS == 0 {
                snapshots.insert(height, to_bytes(state).as_slice()).unwrap();
            }
        }
        let mut table = write.open_table(EVIDENCE).unwrap();
        for (sequence, votes) in (0..).zip(evidence) {
            table.insert(sequence, to_bytes(votes).as_slice()).unwrap();
        }
    }
    write.commit().unwrap();
}

/// The format a store's `meta` table names.
fn format_of(path: &Path) -> String {
    let db = redb::Database::open(path).unwrap();
    let read = redb::ReadableDatabase::begin_read(&db).unwrap();
    let format = read.open_table(META).unwrap().get("format").unwrap().unwrap().value().to_vec();
    String::from_utf8(format).unwrap()
}

/// Evidence of both kinds against the validator of the community of `seed`:
/// two vote equivocations (a prevote and a precommit pair) and a double
/// proposal.
fn evidence_of(seed: u64) -> (Genesis, [VoteEquivocation; 2], ProposalEquivocation) {
    let (community, _) = community(seed);
    let key = &community.validator;
    let id = community.genesis.community_id;
    let votes = |kind| {
        let vote = |byte| Vote {
            kind,
            height: 5,
            round: 2,
            block_hash: (byte > 0).then_some(Hash([byte; 32])),
            validator: key.public(),
        };
        let (first, second) = (vote(1), vote(0));
        VoteEquivocation {
            first,
            first_signature: key.sign(&first.signing_bytes(&id)),
            second,
            second_signature: key.sign(&second.signing_bytes(&id)),
        }
    };
    let proposal = |byte| Proposal {
        height: 6,
        round: 0,
        block_hash: Hash([byte; 32]),
        pol_round: None,
        proposer: key.public(),
    };
    let (first, second) = (proposal(7), proposal(8));
    let proposals = ProposalEquivocation {
        first,
        first_signature: key.sign(&first.signing_bytes(&id)),
        second,
        second_signature: key.sign(&second.signing_bytes(&id)),
    };
    (community.genesis, [votes(VoteKind::Prevote), votes(VoteKind::Precommit)], proposals)
}

#[test]
fn both_stores_keep_evidence_of_both_kinds_once_in_the_order_recorded() {
    let (genesis, [prevotes, precommits], proposals) = evidence_of(11);
    let dir = temp_dir();
    let path = dir.path().join("evidence.redb");
    let mut memory = MemoryStore::new(genesis.clone());
    let mut redb = RedbStore::create(&path, &genesis).unwrap();
    let recorded = [
        Equivocation::Proposals(proposals),
        Equivocation::Votes(prevotes),
        Equivocation::Proposals(proposals),
        Equivocation::Votes(precommits),
        Equivocation::Votes(prevotes),
    ];
    for evidence in &recorded {
        memory.record_equivocation(evidence).unwrap();
        redb.record_equivocation(evidence).unwrap();
    }
    // A copy already recorded is ignored.
    memory.record_equivocation(&Equivocation::Votes(precommits)).unwrap();
    redb.record_equivocation(&Equivocation::Votes(precommits)).unwrap();
    let expected = vec![
        Equivocation::Proposals(proposals),
        Equivocation::Votes(prevotes),
        Equivocation::Votes(precommits),
    ];
    assert_eq!(memory.evidence().unwrap(), expected);
    assert_eq!(redb.evidence().unwrap(), expected);
    drop(redb);
    assert_eq!(RedbStore::open(&path).unwrap().evidence().unwrap(), expected);
    for evidence in &expected {
        evidence.verify(&genesis).unwrap();
    }
}

/// A store that the build before proposal evidence wrote: the current
/// layout's tables and blocks file (which layout 2 had too), named layout 2,
/// with a borsh `VoteEquivocation` in each evidence entry.
fn as_layout_2(original: &Path, name: &str, evidence: &[&[u8]]) -> PathBuf {
    altered(original, name, |write| {
        write.open_table(META).unwrap().insert("format", b"gridshare-ledger/2".as_slice()).unwrap();
        let mut table = write.open_table(EVIDENCE).unwrap();
        for (sequence, bytes) in (0..).zip(evidence) {
            table.insert(sequence, *bytes).unwrap();
        }
    })
}

#[test]
fn a_store_of_layout_2_is_moved_to_the_current_layout_on_open() {
    let height = SNAPSHOT_EVERY_BLOCKS + 3;
    let (genesis, chain) = chain(11, height + 1);
    let (_, [prevotes, precommits], proposals) = evidence_of(11);
    let dir = temp_dir();
    let original = store_file(dir.path(), &genesis, &chain[..usize::try_from(height).unwrap()]);
    let path = as_layout_2(&original, "layout-2.redb", &[&to_bytes(&prevotes), &to_bytes(&precommits)]);
    assert_eq!(format_of(&path), "gridshare-ledger/2");
    let mut store = RedbStore::open(&path).unwrap();
    assert_holds(&store, &genesis, &chain, height);
    let votes = vec![Equivocation::Votes(prevotes), Equivocation::Votes(precommits)];
    assert_eq!(store.evidence().unwrap(), votes);
    // It goes on as a store of the current layout: blocks and evidence of
    // both kinds.
    let (block, state) = at(&chain, height + 1);
    store.commit(block, state).unwrap();
    store.record_equivocation(&Equivocation::Proposals(proposals)).unwrap();
    drop(store);
    assert_eq!(format_of(&path), "gridshare-ledger/3");
    // Opened again, nothing is moved twice.
    let store = RedbStore::open(&path).unwrap();
    assert_holds(&store, &genesis, &chain, height + 1);
    let all = [&votes[..], &[Equivocation::Proposals(proposals)]].concat();
    assert_eq!(store.evidence().unwrap(), all);
    drop(store);

    // A damaged evidence entry is moved as it is: the store opens, and the
    // damage is reported, by table and key, when the evidence is read.
    let damaged = to_bytes(&precommits)[..40].to_vec();
    let path = as_layout_2(&original, "layout-2-damaged.redb", &[&to_bytes(&prevotes), &damaged]);
    let store = RedbStore::open(&path).unwrap();
    assert_holds(&store, &genesis, &chain, height);
    assert_corrupt(store.evidence(), "evidence[1]");
}

#[test]
fn a_store_of_layout_1_is_moved_to_the_current_layout_on_open() {
    let height = 2 * SNAPSHOT_EVERY_BLOCKS + 5;
    let (genesis, chain) = chain(10, height + 1);
    let dir = temp_dir();
    let path = dir.path().join("layout-1.redb");
    let (_, [prevotes, _], _) = evidence_of(10);
    write_layout_1(&path, &genesis, &chain[..usize::try_from(height).unwrap()], &[prevotes]);
    let before = std::fs::metadata(&path).unwrap().len();
    let mut store = RedbStore::open(&path).unwrap();
    assert_holds(&store, &genesis, &chain, height);
    assert_eq!(store.evidence().unwrap(), [Equivocation::Votes(prevotes)]);
    let (block, state) = at(&chain, height + 1);
    store.commit(block, state).unwrap();
    drop(store);
    assert_holds(&RedbStore::open(&path).unwrap(), &genesis, &chain, height + 1);
    // The old tables are gone, one snapshot is left, and the redb file,
    // compacted, no longer holds the blocks.
    let db = redb::Database::open(&path).unwrap();
    let read = redb::ReadableDatabase::begin_read(&db).unwrap();
    let format = read.open_table(META).unwrap().get("format").unwrap().unwrap().value().to_vec();
    assert_eq!(format, b"gridshare-ledger/3");
    assert!(matches!(read.open_table(BLOCKS_1), Err(redb::TableError::TableDoesNotExist(_))));
    assert!(matches!(read.open_table(SNAPSHOTS_1), Err(redb::TableError::TableDoesNotExist(_))));
    assert_eq!(redb::ReadableTableMetadata::len(&read.open_table(SNAPSHOTS).unwrap()).unwrap(), 1);
    drop((read, db));
    let after = std::fs::metadata(&path).unwrap().len();
    eprintln!("layout 1: {before} bytes of redb file; moved: {after} bytes and a blocks file");
    assert!(after < before, "{after} bytes after, {before} before");

    // A move cut short by a crash before its transaction: the store is still
    // of layout 1, with bytes in the blocks file that the next move replaces.
    let path = dir.path().join("cut-short.redb");
    write_layout_1(&path, &genesis, &chain[..10], &[]);
    let header = [&b"gridshare-blocks"[..], &1_u16.to_le_bytes(), genesis.hash().as_bytes()].concat();
    let cut_short = [&header[..], b"records of a move that did not finish"].concat();
    std::fs::write(RedbStore::blocks_path_of(&path), cut_short).unwrap();
    assert_holds(&RedbStore::open(&path).unwrap(), &genesis, &chain, 10);
}

/// Opens `path` and reads every block: the height, or the error's message.
/// A damaged file may give any error, and must not panic.
fn open_and_read_everything(path: &Path) -> Result<u64, String> {
    let message = |error: StoreError| error.to_string();
    let store = RedbStore::open(path).map_err(message)?;
    let height = store.height().map_err(message)?;
    for h in 1..=height {
        store.block(h).map_err(message)?;
    }
    store.state().map_err(message)?;
    Ok(height)
}

/// Which of a store's two files to damage.
#[derive(Clone, Copy, Debug)]
enum Damaged {
    Redb,
    Blocks,
}

/// Opens damaged copies of the store `original` at `path`: copies with one
/// of its files truncated or with a byte of it flipped. Counts the outcomes.
fn open_damaged_copies(
    original: &Path,
    path: &Path,
    damaged: Damaged,
    rng: &mut SplitMix64,
) -> BTreeMap<String, usize> {
    let (target, intact, intact_target) = match damaged {
        Damaged::Redb => {
            (path.to_path_buf(), RedbStore::blocks_path_of(original), RedbStore::blocks_path_of(path))
        }
        Damaged::Blocks => (RedbStore::blocks_path_of(path), original.to_path_buf(), path.to_path_buf()),
    };
    let bytes = match damaged {
        Damaged::Redb => std::fs::read(original).unwrap(),
        Damaged::Blocks => std::fs::read(RedbStore::blocks_path_of(original)).unwrap(),
    };
    let intact = std::fs::read(intact).unwrap();
    let len = bytes.len();
    let name = path.file_name().unwrap().to_str().unwrap();
    let mut outcomes = BTreeMap::<String, usize>::new();
    let mut record = |result: Result<u64, String>| {
        let outcome = match result {
            Ok(h) => format!("opened at height {h}"),
            Err(message) => {
                assert!(message.contains(name), "the error does not name the file: {message}");
                // Group messages by their kind, without numbers.
                message.replace(|c: char| c.is_ascii_digit(), "#")
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
    };
    let write = |damaged_bytes: &[u8]| {
        std::fs::write(&target, damaged_bytes).unwrap();
        std::fs::write(&intact_target, &intact).unwrap();
    };
    for keep in [1, 8, 9, 100, 4096, 4097, len / 3, len / 2, len - 4096, len - 1] {
        write(&bytes[..keep]);
        record(open_and_read_everything(path));
    }
    // At positions spread over the file and at random ones.
    let step = len / 64;
    let positions: Vec<usize> = (0..64)
        .map(|i| i * step + step / 2)
        .chain((0..64).map(|_| usize::try_from(rng.next_u64()).unwrap() % len))
        .collect();
    for position in positions {
        let mut damaged = bytes.to_vec();
        damaged[position] ^= 1 << (rng.next_u64() % 8);
        write(&damaged);
        record(open_and_read_everything(path));
    }
    outcomes
}

#[test]
fn opening_damaged_files_gives_errors_not_panics() {
    let height = SNAPSHOT_EVERY_BLOCKS + 6;
    let (genesis, chain) = chain(6, height);
    let dir = temp_dir();
    let mut rng = SplitMix64(7);
    // A store closed cleanly.
    let original = store_file(dir.path(), &genesis, &chain);
    for damaged in [Damaged::Redb, Damaged::Blocks] {
        let outcomes = open_damaged_copies(&original, &dir.path().join("damaged.redb"), damaged, &mut rng);
        for (outcome, count) in &outcomes {
            eprintln!("{damaged:?}: {count:>4} × {outcome}");
        }
    }
    // A store whose process was killed: opening it repairs it first.
    let killed = dir.path().join("killed.redb");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-crash-child"))
        .arg(&killed)
        .arg("8")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..height {
        lines.next().unwrap().unwrap();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for damaged in [Damaged::Redb, Damaged::Blocks] {
        let outcomes =
            open_damaged_copies(&killed, &dir.path().join("damaged-after-kill.redb"), damaged, &mut rng);
        for (outcome, count) in &outcomes {
            eprintln!("{damaged:?}: {count:>4} × {outcome}");
        }
    }
}

/// What the parent has verified of one store file: its blocks and the state
/// after them, checked from genesis with signatures.
struct Verified {
    genesis: Genesis,
    blocks: Vec<CertifiedBlock>,
    state: State,
}

impl Verified {
    fn new(genesis: Genesis) -> Verified {
        let state = State::genesis(&genesis);
        Verified { genesis, blocks: Vec::new(), state }
    }

    fn height(&self) -> u64 {
        u64::try_from(self.blocks.len()).unwrap()
    }

    /// Checks `store` extends what was verified: the verified blocks are
    /// unchanged, each new one links to the one before, carries a valid
    /// certificate and executes (signatures checked) to its state root, and
    /// the store's state is the state after the last.
    fn extend(&mut self, store: &RedbStore) -> Result<(), String> {
        let genesis = &self.genesis;
        if store.genesis().map_err(|e| e.to_string())? != *genesis {
            return Err("the store holds another genesis".to_string());
        }
        let height = store.height().map_err(|e| e.to_string())?;
        if height < self.height() {
            return Err(format!("the store went back from height {} to {height}", self.height()));
        }
        for (h, verified) in (1..).zip(&self.blocks) {
            if store.block(h).map_err(|e| e.to_string())?.as_ref() != Some(verified) {
                return Err(format!("block {h} changed after it was verified"));
            }
        }
        for h in self.height() + 1..=height {
            let block = store.block(h).map_err(|e| e.to_string())?.ok_or(format!("block {h} is missing"))?;
            let header = &block.block.header;
            let tip = self.blocks.last().map_or(genesis.hash(), |last| last.block.header.hash());
            if header.previous_hash != tip {
                return Err(format!("block {h} does not link to block {}", h - 1));
            }
            block.certificate.verify(genesis, header).map_err(|e| format!("block {h}: {e}"))?;
            let (state, _receipts) = execute(genesis, &self.state, &block.block, Signatures::Verify)
                .map_err(|e| format!("block {h} does not execute: {e}"))?;
            self.state = state;
            self.blocks.push(block);
        }
        let state = store.state().map_err(|e| e.to_string())?;
        if state.root(&genesis.community_id) != self.state.root(&genesis.community_id) || state != self.state
        {
            return Err(format!("the store's state at height {height} is not the re-executed one"));
        }
        Ok(())
    }
}

/// When the parent kills the child: after it acknowledged `commits`
/// commits, and then at once or at the moment `then` says.
#[derive(Debug)]
struct Kill {
    commits: u64,
    then: Then,
}

#[derive(Debug)]
enum Then {
    /// Right after the last acknowledged commit (or at start).
    Now,
    /// After this many looks at the store file: a random instant in the
    /// child's start (creating or opening the store, recovery, first blocks),
    /// without sleeping.
    AfterLooks(u64),
    /// As soon as the store file changes after the last acknowledged commit:
    /// the child is writing its next commit.
    WhenTheFileChanges,
}

/// What the parent can see of the store's files: their lengths and
/// modification times (the blocks file changes first in a commit), or
/// nothing while the redb file does not exist.
fn look(path: &Path) -> Option<[(u64, std::time::SystemTime); 2]> {
    let seen = |path: &Path| {
        let metadata = std::fs::metadata(path).ok()?;
        Some((metadata.len(), metadata.modified().ok()?))
    };
    let redb = seen(path)?;
    let blocks = seen(&RedbStore::blocks_path_of(path)).unwrap_or((0, std::time::SystemTime::UNIX_EPOCH));
    Some([redb, blocks])
}

/// Where a kill landed, as far as the parent can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Landed {
    /// Before the store file was published: nothing to check but its absence.
    BeforeTheFile,
    /// The store holds exactly what the child acknowledged.
    AfterAcknowledged,
    /// The store holds one more block: the kill came after a commit
    /// returned and before the child printed it.
    AfterUnacknowledgedCommit,
}

/// How many kills share one store file before the test starts a new one.
const KILLS_PER_FILE: u64 = 50;
/// No single child run, nor reading its output, may take longer.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// One crash-test file in use: its path, community and what was verified.
struct CrashFile {
    path: PathBuf,
    seed: u64,
    kills: u64,
    verified: Verified,
}

#[test]
fn crash_at_random_instants_loses_no_acknowledged_commit() {
    let iterations: u64 =
        std::env::var("GRIDSHARE_CRASH_ITERATIONS").map_or(200, |value| value.parse().unwrap());
    let seed: u64 = std::env::var("GRIDSHARE_CRASH_SEED").map_or_else(
        |_| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
            u64::try_from(now.as_nanos() % (1 << 63)).unwrap()
        },
        |value| value.parse().unwrap(),
    );
    eprintln!("crash test: {iterations} kills, GRIDSHARE_CRASH_SEED={seed}");
    let started = Instant::now();
    let dir = temp_dir();
    let mut rng = SplitMix64(seed);
    let mut file: Option<CrashFile> = None;
    let mut commits = 0;
    let mut landed_counts = BTreeMap::<Landed, u64>::new();
    for iteration in 0..iterations {
        if file.as_ref().is_none_or(|file| file.kills == KILLS_PER_FILE) {
            let seed = rng.next_u64();
            let genesis = community(seed).0.genesis;
            let path = dir.path().join(format!("crash-{iteration}.redb"));
            file = Some(CrashFile { path, seed, kills: 0, verified: Verified::new(genesis) });
        }
        let file = file.as_mut().unwrap();
        let kill = match rng.between(0, 9) {
            // Anywhere in the start: process, create or open and recovery, first blocks.
            0..=1 => Kill { commits: 0, then: Then::AfterLooks(rng.between(0, 20_000)) },
            // Inside the write of a later commit.
            2..=3 => Kill { commits: rng.between(0, 5), then: Then::WhenTheFileChanges },
            4..=5 => Kill { commits: rng.between(0, 1), then: Then::Now },
            _ => Kill { commits: rng.between(2, 40), then: Then::Now },
        };
        let before = file.verified.height();
        match crash_once(file, &kill) {
            Ok(landed) => *landed_counts.entry(landed).or_default() += 1,
            Err(message) => panic!(
                "crash test failed at kill {iteration} ({kill:?}, store {}, community seed {}): {message}\n\
                 replay the plan with GRIDSHARE_CRASH_SEED={seed}",
                file.path.display(),
                file.seed
            ),
        }
        file.kills += 1;
        commits += file.verified.height() - before;
    }
    eprintln!(
        "crash test: {iterations} kills ({landed_counts:?}), {commits} commits verified in {:?}",
        started.elapsed()
    );
}

/// Runs the child on `file` until `kill`, kills it, and verifies the store.
fn crash_once(file: &mut CrashFile, kill: &Kill) -> Result<Landed, String> {
    let deadline = Instant::now() + CHILD_DEADLINE;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-crash-child"))
        .arg(&file.path)
        .arg(file.seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    // A thread reads the child's lines, so the parent can wait with a deadline.
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed: Vec<u64> = Vec::new();
    let mut waited = Ok(());
    while waited.is_ok() && u64::try_from(printed.len()).unwrap() < kill.commits {
        let left = deadline.saturating_duration_since(Instant::now());
        waited = match lines.recv_timeout(left) {
            Ok(line) => receive(&mut printed, line),
            Err(mpsc::RecvTimeoutError::Timeout) => Err("no commit within the deadline".to_string()),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("the child stopped by itself".to_string()),
        };
    }
    if waited.is_ok() {
        match kill.then {
            Then::Now => {}
            Then::AfterLooks(looks) => {
                for _ in 0..looks {
                    std::hint::black_box(look(&file.path));
                }
            }
            Then::WhenTheFileChanges => {
                // The file as the last acknowledged commit left it; the child
                // may still be printing, so a change means the next commit.
                let acknowledged = look(&file.path);
                while look(&file.path) == acknowledged && Instant::now() < deadline {
                    std::hint::spin_loop();
                }
            }
        }
    }
    // Child::kill sends SIGKILL: no destructor, no flush, no redb close.
    child.kill().map_err(|e| format!("cannot kill the child: {e}"))?;
    let status = child.wait().map_err(|e| format!("cannot wait for the child: {e}"))?;
    reader.join().map_err(|_| "the reader thread panicked".to_string())?;
    // What the child printed before it died, read to the end of its output.
    while let Ok(line) = lines.try_recv() {
        receive(&mut printed, line)?;
    }
    waited?;
    if status.signal() != Some(9) {
        return Err(format!("the child ended with {status} before it was killed"));
    }
    let before = file.verified.height();
    for (at, height) in printed.iter().enumerate() {
        let expected = printed.first().unwrap() + u64::try_from(at).unwrap();
        if *height != expected || *height <= before {
            return Err(format!("the child printed heights {printed:?} on a store verified to {before}"));
        }
    }
    let acknowledged = printed.last().copied().unwrap_or(before);
    if !file.path.exists() {
        // Killed while creating the store: it must not have acknowledged anything.
        return if acknowledged == 0 {
            Ok(Landed::BeforeTheFile)
        } else {
            Err("the store file is gone".to_string())
        };
    }
    let store = RedbStore::open(&file.path).map_err(|e| format!("the store does not open: {e}"))?;
    let height = store.height().map_err(|e| e.to_string())?;
    if height < acknowledged {
        return Err(format!("the child acknowledged height {acknowledged}, the store has {height}"));
    }
    // At most the commit in progress when the kill came is there unacknowledged.
    if height > acknowledged + 1 {
        return Err(format!("the store has height {height}, the child acknowledged {acknowledged}"));
    }
    file.verified.extend(&store)?;
    Ok(if height > acknowledged { Landed::AfterUnacknowledgedCommit } else { Landed::AfterAcknowledged })
}

/// Records one line the child printed: a committed height.
fn receive(printed: &mut Vec<u64>, line: std::io::Result<String>) -> Result<(), String> {
    let line = line.map_err(|e| format!("reading the child's output: {e}"))?;
    printed.push(line.parse().map_err(|_| format!("the child printed {line:?}"))?);
    Ok(())
}
