//! Tests of the chain stores: both stores keep a chain and refuse blocks
//! that do not follow it; the redb store survives reopening, reports damaged
//! and foreign files as errors (never panics), and loses no acknowledged
//! commit when its process is killed at an arbitrary instant.
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
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::execute::{Signatures, execute};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::state::State;
use gridshare_ledger::store::{MemoryStore, RedbStore, SNAPSHOT_EVERY_BLOCKS, Store, StoreError};
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
    let size = std::fs::metadata(&path).unwrap().len();
    let per_offer = size / u64::try_from(offers).unwrap();
    eprintln!("{blocks} blocks with {offers} offers: {size} bytes on disk, {per_offer} bytes per offer");
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

/// A copy of `original` named `name`, changed through redb by `change`.
fn altered(original: &Path, name: &str, change: impl FnOnce(&redb::WriteTransaction)) -> PathBuf {
    let path = original.with_file_name(name);
    std::fs::copy(original, &path).unwrap();
    let db = redb::Database::open(&path).unwrap();
    let write = db.begin_write().unwrap();
    change(&write);
    write.commit().unwrap();
    path
}

const BLOCKS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("blocks");
const SNAPSHOTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("snapshots");
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");

fn put_block(write: &redb::WriteTransaction, height: u64, bytes: &[u8]) {
    write.open_table(BLOCKS).unwrap().insert(height, bytes).unwrap();
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
    let path = altered(&original, "old-block.redb", |write| put_block(write, 5, b"garbage"));
    let store = RedbStore::open(&path).unwrap();
    assert_corrupt(store.block(5), "blocks[5]");
    // A valid encoding with bytes left over is refused as well.
    let mut trailing = to_bytes(&at(&chain, 6).0);
    trailing.push(0);
    let path = altered(&original, "trailing.redb", |write| put_block(write, 6, &trailing));
    assert_corrupt(RedbStore::open(&path).unwrap().block(6), "blocks[6]");

    // Garbage in the snapshot, in a block after it, in the tip, in the genesis.
    let path = altered(&original, "snapshot.redb", |write| {
        write.open_table(SNAPSHOTS).unwrap().insert(SNAPSHOT_EVERY_BLOCKS, b"garbage".as_slice()).unwrap();
    });
    assert_corrupt(RedbStore::open(&path), &format!("snapshots[{SNAPSHOT_EVERY_BLOCKS}]"));
    let path = altered(&original, "replayed.redb", |write| put_block(write, height - 2, &[1, 2, 3]));
    assert_corrupt(RedbStore::open(&path), &format!("blocks[{}]", height - 2));
    let path = altered(&original, "tip.redb", |write| put_block(write, height, &[]));
    assert_corrupt(RedbStore::open(&path), &format!("blocks[{height}]"));
    let path = altered(&original, "genesis.redb", |write| {
        write.open_table(META).unwrap().insert("genesis", b"garbage".as_slice()).unwrap();
    });
    assert_corrupt(RedbStore::open(&path), "meta[genesis]");

    // A block stored under another height.
    let misplaced = to_bytes(&at(&chain, height - 1).0);
    let path = altered(&original, "misplaced.redb", |write| put_block(write, height - 2, &misplaced));
    assert_corrupt(RedbStore::open(&path), "holds block");
    // A gap in the blocks.
    let path = altered(&original, "gap.redb", |write| {
        write.open_table(BLOCKS).unwrap().remove(3).unwrap();
    });
    assert_corrupt(RedbStore::open(&path), "blocks");
    // A snapshot that is not the state of its block.
    let wrong_state = to_bytes(&at(&chain, SNAPSHOT_EVERY_BLOCKS - 1).1);
    let path = altered(&original, "wrong-snapshot.redb", |write| {
        write.open_table(SNAPSHOTS).unwrap().insert(SNAPSHOT_EVERY_BLOCKS, wrong_state.as_slice()).unwrap();
    });
    assert_corrupt(RedbStore::open(&path), &format!("snapshots[{SNAPSHOT_EVERY_BLOCKS}]"));

    // A well-formed block after the snapshot that does not re-execute.
    let mut emptied = at(&chain, height - 2).0.clone();
    emptied.block.transactions.clear();
    let path = altered(&original, "replay.redb", |write| put_block(write, height - 2, &to_bytes(&emptied)));
    let error = RedbStore::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::Replay { height: h, .. } if h == height - 2), "{error}");
    // A tip whose certificate a non-validator signed.
    let mut forged = at(&chain, height).0.clone();
    forged.certificate = CommitCertificate::sign(&forged.block.header, 0, &[&derived_key(999, 2, 0)]);
    let path = altered(&original, "forged.redb", |write| put_block(write, height, &to_bytes(&forged)));
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
    let path = altered(&at_snapshot, "unlinked.redb", |write| {
        put_block(write, SNAPSHOT_EVERY_BLOCKS - 1, &to_bytes(&replaced));
    });
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
        write.open_table(META).unwrap().insert("format", b"gridshare-ledger/2".as_slice()).unwrap();
    });
    not_a_store(RedbStore::open(&newer), "gridshare-ledger/2");
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

/// Opens damaged copies of the store file `bytes`, written at `path`:
/// truncated ones and ones with a byte flipped. Counts the outcomes.
fn open_damaged_copies(bytes: &[u8], path: &Path, rng: &mut SplitMix64) -> BTreeMap<String, usize> {
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
    for keep in [1, 8, 9, 100, 4096, 4097, len / 3, len / 2, len - 4096, len - 1] {
        std::fs::write(path, &bytes[..keep]).unwrap();
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
        std::fs::write(path, &damaged).unwrap();
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
    let bytes = std::fs::read(&original).unwrap();
    let outcomes = open_damaged_copies(&bytes, &dir.path().join("damaged.redb"), &mut rng);
    for (outcome, count) in &outcomes {
        eprintln!("{count:>4} × {outcome}");
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
    let bytes = std::fs::read(&killed).unwrap();
    let outcomes = open_damaged_copies(&bytes, &dir.path().join("damaged-after-kill.redb"), &mut rng);
    for (outcome, count) in &outcomes {
        eprintln!("{count:>4} × {outcome}");
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

/// What the parent can see of the store file: its length and modification
/// time, or nothing while it does not exist.
fn look(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
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
