//! The on-disk [`Store`]: a redb file (the store's path) with `meta`
//! (format and genesis), `block_index` (height → where the block's record is
//! in the blocks file, and its blake3), `state_snapshots` (the state after
//! the latest block of a height that is a multiple of
//! [`SNAPSHOT_EVERY_BLOCKS`], only the latest kept) and `evidence` (sequence
//! number → the canonical borsh of an [`Equivocation`], votes or proposals;
//! small and rare, so not compressed); and the blocks file next to it
//! (`<path>.blocks`, see `block_file`), which holds every block's record in
//! height order. Records and snapshots are in the at-rest encoding of
//! [`super::at_rest`].
//!
//! A commit writes the block's record to the blocks file and syncs it, then
//! makes one redb write transaction with [`Durability::Immediate`] (the index
//! entry and, if due, the snapshot): when it returns, both are on disk, and a
//! crash before the transaction leaves only bytes past the indexed records,
//! which opening cuts off. Opening checks the whole redb file's checksums
//! first (so a damaged file is an error, not a panic inside redb), checks
//! each record against its blake3 and decodes it strictly, and recovers the
//! latest state by re-executing the blocks after the snapshot.
//!
//! Older layouts are moved to this one when they are opened: layout 2
//! (`gridshare-ledger/2`: the same tables, but `evidence` held only
//! `VoteEquivocation`s) and layout 1 (`gridshare-ledger/1`: blocks and
//! uncompressed snapshots inside redb, evidence as in layout 2).

mod block_file;

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::backends::FileBackend;
use redb::{
    Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    StorageError, TableDefinition, TableError, TableHandle,
};

use crate::Hash;
use crate::block::CertifiedBlock;
use crate::consensus::Equivocation;
use crate::encoding::{from_bytes, to_bytes};
use crate::execute::{Signatures, execute};
use crate::export::RECORD_BYTES_MAX;
use crate::genesis::Genesis;
use crate::state::State;

use super::{
    BLOCKS_FILE_SUFFIX, EVIDENCE_MAX, SNAPSHOT_EVERY_BLOCKS, Store, StoreError, at_rest, check_next,
};
use block_file::{BlockFile, RecordLocation};

/// The `meta` record that names the store's layout; bumped on any change of
/// the tables, the blocks file or what they hold.
const FORMAT: &str = "gridshare-ledger/3";
/// Layout 2: the tables and blocks file of layout 3, with a borsh
/// `VoteEquivocation` (the only kind of evidence then) in each `evidence`
/// entry. Moved to layout 3 on open.
const FORMAT_2: &str = "gridshare-ledger/2";
/// Layout 1: blocks (borsh) and every snapshot (borsh) inside redb, evidence
/// as in layout 2. Moved to layout 3 on open.
const FORMAT_1: &str = "gridshare-ledger/1";
const FORMAT_KEY: &str = "format";
const GENESIS_KEY: &str = "genesis";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Height → the block's [`RecordLocation`] in the blocks file.
const BLOCK_INDEX: TableDefinition<u64, &[u8]> = TableDefinition::new("block_index");
/// Height → the at-rest record of the state after that block; one entry.
const STATE_SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("state_snapshots");
/// Sequence number → an `Equivocation`, in the order recorded.
const EVIDENCE: TableDefinition<u64, &[u8]> = TableDefinition::new("evidence");
/// borsh's tag of `Equivocation::Votes`: put before a layout-2 entry's
/// `VoteEquivocation` bytes, it makes them the `Equivocation` they are.
const VOTES_TAG: u8 = 0;
/// Layout 1's tables, read only to move a store to the current layout.
const BLOCKS_1: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const SNAPSHOTS_1: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");

/// A stored block is at most this long in canonical bytes: what an export
/// record can hold.
const BLOCK_BYTES_MAX: usize = RECORD_BYTES_MAX as usize;

/// The first bytes of every redb file (redb's file header).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// redb's page cache. The default (1 GiB) is more than a ledger node needs.
const CACHE_BYTES: usize = 64 << 20;

/// A chain store in one redb file.
pub struct RedbStore {
    path: PathBuf,
    /// Shared with the [`BlockReader`]s handed out.
    db: Arc<Database>,
    blocks: BlockFile,
    genesis: Genesis,
    /// The hash the next block must link to: the tip block's header hash,
    /// or the genesis hash before the first block.
    tip: Hash,
    height: u64,
    state: State,
}

/// The committed blocks of a [`RedbStore`] up to a height, readable from
/// any thread (`RedbStore::reader`).
pub struct BlockReader {
    path: PathBuf,
    db: Arc<Database>,
    blocks: BlockFile,
    height: u64,
}

impl BlockReader {
    /// The height it reads up to.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The certified block at `height`, if committed when the reader was made.
    pub fn block(&self, height: u64) -> Result<Option<CertifiedBlock>, StoreError> {
        if height == 0 || height > self.height {
            return Ok(None);
        }
        let read = self.db.begin_read().map_err(|error| database_error(&self.path, error))?;
        let index = open_table(&self.path, &read, BLOCK_INDEX)?;
        read_block(&self.path, &self.blocks, &index, height).map(Some)
    }
}

impl std::fmt::Debug for BlockReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockReader")
            .field("path", &self.path)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("blocks", &self.blocks.path())
            .field("community", &self.genesis.community_id)
            .field("height", &self.height)
            .field("tip", &self.tip)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Creates a store of `genesis` at `path`. If a file is already there, it
    /// is opened if it is a store of the same genesis and refused otherwise.
    ///
    /// The new file is prepared under a staging name and published with a
    /// hard link, so a crash during creation never leaves a half-made store
    /// at `path`.
    pub fn create(path: impl AsRef<Path>, genesis: &Genesis) -> Result<RedbStore, StoreError> {
        let path = path.as_ref();
        let expected = genesis.hash();
        let open_existing = || {
            let store = RedbStore::open(path)?;
            let found = store.genesis.hash();
            if found != expected {
                return Err(StoreError::GenesisMismatch { expected, found });
            }
            Ok(store)
        };
        match fs::symlink_metadata(path) {
            Ok(_) => return open_existing(),
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(path, &error)),
        }
        // A staging name of this creation's own: a concurrent creator cannot
        // touch it. A creation that crashed leaves it behind (about 1 MiB); a
        // file with the same name is from a dead process that had our id.
        let staging = staging_path(path);
        match fs::remove_file(&staging) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(&staging, &error)),
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&staging)
            .map_err(|error| io_error(&staging, &error))?;
        let prepared = prepare(&staging, file, genesis);
        // A hard link never replaces an existing file: if another process
        // published a store meanwhile, open that one instead.
        let linked = prepared.and_then(|()| fs::hard_link(&staging, path).map_err(|e| io_error(path, &e)));
        let _ = fs::remove_file(&staging);
        match linked {
            Ok(()) => sync_parent(path)?,
            Err(_) if fs::symlink_metadata(path).is_ok() => {}
            Err(error) => return Err(error),
        }
        open_existing()
    }

    /// Opens the store at `path`, which must exist, and recovers the latest
    /// state: the last snapshot and the blocks after it, re-executed. A store
    /// of layout 1 or 2 is moved to the current layout first.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref();
        check_magic(path)?;
        let mut db = builder().open(path).map_err(|error| open_error(path, error))?;
        let blocks_path = RedbStore::blocks_path_of(path);
        let (genesis, layout) = read_meta(path, &db)?;
        match layout {
            Layout::One => move_from_layout_1(path, &blocks_path, &mut db, &genesis)?,
            Layout::Two => move_from_layout_2(path, &db)?,
            Layout::Current => {}
        }
        let committed_end = index_end(path, &db)?;
        let blocks = BlockFile::open(blocks_path, genesis.hash(), committed_end)?;
        let (height, tip, state) = recover(path, &db, &blocks, &genesis)?;
        Ok(RedbStore { path: path.to_path_buf(), db: Arc::new(db), blocks, genesis, tip, height, state })
    }

    /// A reader of the blocks committed so far, for another thread (a peer's
    /// catch-up request served off the event loop) while this store goes
    /// on committing: it sees the chain up to the current height.
    pub fn reader(&self) -> Result<BlockReader, StoreError> {
        Ok(BlockReader {
            path: self.path.clone(),
            db: self.db.clone(),
            blocks: self.blocks.snapshot()?,
            height: self.height,
        })
    }

    /// The redb file of the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The blocks file of the store.
    pub fn blocks_path(&self) -> &Path {
        self.blocks.path()
    }

    /// The blocks file of the store whose redb file is `path`: the same name
    /// with [`BLOCKS_FILE_SUFFIX`] appended.
    pub fn blocks_path_of(path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        let mut name = path.file_name().map(|name| name.to_os_string()).unwrap_or_default();
        name.push(BLOCKS_FILE_SUFFIX);
        path.with_file_name(name)
    }

    fn read_block(&self, height: u64) -> Result<CertifiedBlock, StoreError> {
        let read = self.db.begin_read().map_err(|error| database_error(&self.path, error))?;
        let index = open_table(&self.path, &read, BLOCK_INDEX)?;
        read_block(&self.path, &self.blocks, &index, height)
    }

    /// Writes the block's record and syncs it, then, in one redb
    /// transaction, its index entry and the snapshot if one is given.
    fn write_commit(
        &mut self,
        height: u64,
        record: &[u8],
        snapshot: Option<&[u8]>,
    ) -> Result<RecordLocation, StoreError> {
        let path = &self.path;
        let location = self.blocks.write(record)?;
        self.blocks.sync()?;
        let mut write = self.db.begin_write().map_err(|error| database_error(path, error))?;
        // The default, stated: the commit is on disk (fsync) when it returns.
        write.set_durability(Durability::Immediate).map_err(|error| database_error(path, error))?;
        {
            let mut index =
                write.open_table(BLOCK_INDEX).map_err(|error| table_error(path, "block_index", error))?;
            let previous =
                index.insert(height, location.to_bytes().as_slice()).map_err(|e| storage(path, e))?;
            if previous.is_some() {
                // The cache said this height was free: the file changed under us.
                return Err(StoreError::Corrupt(format!(
                    "{}: block_index[{height}] already exists above the tip {}",
                    path.display(),
                    self.height
                )));
            }
            if let Some(snapshot) = snapshot {
                let mut snapshots = write
                    .open_table(STATE_SNAPSHOTS)
                    .map_err(|error| table_error(path, "state_snapshots", error))?;
                snapshots.insert(height, snapshot).map_err(|e| storage(path, e))?;
                // Only the latest is needed to recover, and each is as large
                // as the whole state.
                snapshots.retain(|key, _| key >= height).map_err(|e| storage(path, e))?;
            }
        }
        write.commit().map_err(|error| database_error(path, error))?;
        Ok(location)
    }
}

impl Store for RedbStore {
    fn genesis(&self) -> Result<Genesis, StoreError> {
        Ok(self.genesis.clone())
    }

    fn height(&self) -> Result<u64, StoreError> {
        Ok(self.height)
    }

    fn block(&self, height: u64) -> Result<Option<CertifiedBlock>, StoreError> {
        if height == 0 || height > self.height {
            return Ok(None);
        }
        self.read_block(height).map(Some)
    }

    fn commit(&mut self, block: &CertifiedBlock, state: &State) -> Result<(), StoreError> {
        check_next(&self.genesis, self.height, self.tip, block, state)?;
        let header = &block.block.header;
        let height = header.height;
        let hash = header.hash();
        let mut state = state.clone();
        // The root does not cover `last_block_hash`: it is by definition the
        // hash of this block's header (what `execute` sets), so it is set here
        // rather than trusted. A snapshot with another would not load.
        state.last_block_hash = hash;
        let canonical = to_bytes(block);
        if canonical.len() > BLOCK_BYTES_MAX {
            return Err(StoreError::BlockTooLarge {
                height,
                bytes: u64::try_from(canonical.len()).unwrap_or(u64::MAX),
                max_bytes: u64::from(RECORD_BYTES_MAX),
            });
        }
        let record = at_rest::encode(&canonical);
        let snapshot =
            height.is_multiple_of(SNAPSHOT_EVERY_BLOCKS).then(|| at_rest::encode(&to_bytes(&state)));
        if let Err(error) = self.write_commit(height, &record, snapshot.as_deref()) {
            self.blocks.rewind();
            return Err(error);
        }
        self.blocks.commit();
        self.height = height;
        self.tip = hash;
        self.state = state;
        Ok(())
    }

    fn state(&self) -> Result<State, StoreError> {
        Ok(self.state.clone())
    }

    fn record_equivocation(&mut self, evidence: &Equivocation) -> Result<(), StoreError> {
        let recorded = self.evidence()?;
        if recorded.len() >= EVIDENCE_MAX || recorded.contains(evidence) {
            return Ok(());
        }
        let path = &self.path;
        let mut write = self.db.begin_write().map_err(|error| database_error(path, error))?;
        write.set_durability(Durability::Immediate).map_err(|error| database_error(path, error))?;
        {
            let mut table =
                write.open_table(EVIDENCE).map_err(|error| table_error(path, "evidence", error))?;
            let sequence = u64::try_from(recorded.len()).unwrap_or(u64::MAX);
            table.insert(sequence, to_bytes(evidence).as_slice()).map_err(|e| storage(path, e))?;
        }
        write.commit().map_err(|error| database_error(path, error))
    }

    fn evidence(&self) -> Result<Vec<Equivocation>, StoreError> {
        let path = &self.path;
        let read = self.db.begin_read().map_err(|error| database_error(path, error))?;
        let table = match read.open_table(EVIDENCE) {
            Ok(table) => table,
            // A store made before evidence was recorded has none.
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(table_error(path, "evidence", error)),
        };
        let mut evidence = Vec::new();
        for entry in table.iter().map_err(|e| storage(path, e))? {
            let (key, value) = entry.map_err(|e| storage(path, e))?;
            let decoded = from_bytes::<Equivocation>(value.value())
                .map_err(|error| corrupt(path, "evidence", &key.value().to_string(), &error.to_string()))?;
            evidence.push(decoded);
        }
        Ok(evidence)
    }
}

fn builder() -> redb::Builder {
    let mut builder = redb::Builder::new();
    // redb trusts a cleanly closed file and may panic on one damaged since;
    // with the check it verifies every page's checksum and reports
    // corruption as an error. The cost is one read of the file per open.
    builder.set_check_integrity_on_open(true).set_cache_size(CACHE_BYTES);
    builder
}

/// Makes a new store of `genesis` in `file`, the empty file at `staging`,
/// durably: written, synced and closed.
fn prepare(staging: &Path, file: File, genesis: &Genesis) -> Result<(), StoreError> {
    let backend = FileBackend::new(file).map_err(|error| database_error(staging, error))?;
    let db = builder().create_with_backend(backend).map_err(|error| database_error(staging, error))?;
    let written = initialize(&db, genesis).map_err(|error| database_error(staging, error));
    // Closing reports a failure to flush that dropping would ignore.
    let closed = db.close().map_err(|error| database_error(staging, error));
    written.and(closed)
}

/// Writes the format record, the genesis and the empty tables.
fn initialize(db: &Database, genesis: &Genesis) -> Result<(), redb::Error> {
    let mut write = db.begin_write()?;
    write.set_durability(Durability::Immediate)?;
    {
        let mut meta = write.open_table(META)?;
        meta.insert(FORMAT_KEY, FORMAT.as_bytes())?;
        meta.insert(GENESIS_KEY, to_bytes(genesis).as_slice())?;
        write.open_table(BLOCK_INDEX)?;
        write.open_table(STATE_SNAPSHOTS)?;
        write.open_table(EVIDENCE)?;
    }
    write.commit()?;
    Ok(())
}

/// Refuses, before redb sees it, a file that does not start like a redb
/// database: an empty file, a short one, or another kind of file.
fn check_magic(path: &Path) -> Result<(), StoreError> {
    let mut file = File::open(path).map_err(|error| io_error(path, &error))?;
    let mut head = [0_u8; REDB_MAGIC.len()];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(io_error(path, &error)),
        }
    }
    let reason = if filled == 0 {
        "the file is empty"
    } else if filled < head.len() || head != REDB_MAGIC {
        "the file is not a redb database (no redb header)"
    } else {
        return Ok(());
    };
    Err(not_a_store(path, reason))
}

/// The layouts this build opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Layout 1, moved to the current one on open.
    One,
    /// Layout 2, moved to the current one on open.
    Two,
    Current,
}

/// Reads and checks the format record; returns the genesis and the layout.
fn read_meta(path: &Path, db: &Database) -> Result<(Genesis, Layout), StoreError> {
    let read = db.begin_read().map_err(|error| database_error(path, error))?;
    let meta = match read.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            return Err(not_a_store(path, "a redb database without the `meta` table"));
        }
        Err(
            error @ (TableError::TableTypeMismatch { .. }
            | TableError::TableIsMultimap(_)
            | TableError::TypeDefinitionChanged { .. }),
        ) => {
            return Err(not_a_store(
                path,
                &format!("a redb database whose `meta` table is not ours: {error}"),
            ));
        }
        Err(error) => return Err(table_error(path, "meta", error)),
    };
    let format = meta.get(FORMAT_KEY).map_err(|error| storage(path, error))?;
    let Some(format) = format else {
        return Err(not_a_store(path, "a redb database without a format record in `meta`"));
    };
    let layout = if format.value() == FORMAT.as_bytes() {
        Layout::Current
    } else if format.value() == FORMAT_2.as_bytes() {
        Layout::Two
    } else if format.value() == FORMAT_1.as_bytes() {
        Layout::One
    } else {
        let found = String::from_utf8_lossy(format.value()).into_owned();
        return Err(not_a_store(
            path,
            &format!(
                "its format is {found:?}, and this build reads {FORMAT:?} (and moves {FORMAT_2:?} and \
                 {FORMAT_1:?} to it)"
            ),
        ));
    };
    let genesis = meta.get(GENESIS_KEY).map_err(|error| storage(path, error))?;
    let Some(genesis) = genesis else {
        return Err(corrupt(path, "meta", "genesis", "missing"));
    };
    let genesis = from_bytes::<Genesis>(genesis.value())
        .map_err(|error| corrupt(path, "meta", "genesis", &error.to_string()))?;
    Ok((genesis, layout))
}

/// Moves a store of layout 1 to the current layout: every block's record
/// into a new blocks file (synced), then one redb transaction that indexes
/// them, keeps the latest snapshot in the at-rest encoding, makes the
/// evidence `Equivocation`s, drops layout 1's tables and sets the format;
/// then compacts the redb file, which held the blocks. A crash before the
/// transaction leaves a store of layout 1 (and bytes in the blocks file that
/// the next attempt cuts off); after it, a store of the current layout.
fn move_from_layout_1(
    path: &Path,
    blocks_path: &Path,
    db: &mut Database,
    genesis: &Genesis,
) -> Result<(), StoreError> {
    let mut blocks = BlockFile::open(blocks_path.to_path_buf(), genesis.hash(), None)?;
    let mut locations = Vec::new();
    let mut snapshot = None;
    {
        let read = db.begin_read().map_err(|error| database_error(path, error))?;
        let old_blocks = open_table(path, &read, BLOCKS_1)?;
        // Copied as they are, not decoded: a damaged block is reported when
        // it is read, as layout 1 did, and the rest of the chain stays usable.
        for entry in old_blocks.iter().map_err(|error| storage(path, error))? {
            let (key, value) = entry.map_err(|error| storage(path, error))?;
            locations.push((key.value(), blocks.write(&at_rest::encode(value.value()))?));
        }
        let old_snapshots = open_table(path, &read, SNAPSHOTS_1)?;
        if let Some((key, value)) = old_snapshots.last().map_err(|error| storage(path, error))? {
            snapshot = Some((key.value(), at_rest::encode(value.value())));
        }
    }
    blocks.sync()?;
    let mut write = db.begin_write().map_err(|error| database_error(path, error))?;
    write.set_durability(Durability::Immediate).map_err(|error| database_error(path, error))?;
    {
        let mut index =
            write.open_table(BLOCK_INDEX).map_err(|error| table_error(path, "block_index", error))?;
        for (height, location) in &locations {
            index.insert(*height, location.to_bytes().as_slice()).map_err(|e| storage(path, e))?;
        }
        let mut snapshots =
            write.open_table(STATE_SNAPSHOTS).map_err(|error| table_error(path, "state_snapshots", error))?;
        if let Some((height, record)) = &snapshot {
            snapshots.insert(*height, record.as_slice()).map_err(|e| storage(path, e))?;
        }
        tag_vote_evidence(path, &write)?;
        let mut meta = write.open_table(META).map_err(|error| table_error(path, "meta", error))?;
        meta.insert(FORMAT_KEY, FORMAT.as_bytes()).map_err(|e| storage(path, e))?;
    }
    write.delete_table(BLOCKS_1).map_err(|error| table_error(path, "blocks", error))?;
    write.delete_table(SNAPSHOTS_1).map_err(|error| table_error(path, "snapshots", error))?;
    write.commit().map_err(|error| database_error(path, error))?;
    db.compact().map_err(|error| database_error(path, error))?;
    Ok(())
}

/// Moves a store of layout 2 to the current layout in one redb transaction:
/// its evidence entries become `Equivocation`s and the format is set. A
/// crash before the commit leaves a store of layout 2.
fn move_from_layout_2(path: &Path, db: &Database) -> Result<(), StoreError> {
    let mut write = db.begin_write().map_err(|error| database_error(path, error))?;
    write.set_durability(Durability::Immediate).map_err(|error| database_error(path, error))?;
    {
        tag_vote_evidence(path, &write)?;
        let mut meta = write.open_table(META).map_err(|error| table_error(path, "meta", error))?;
        meta.insert(FORMAT_KEY, FORMAT.as_bytes()).map_err(|e| storage(path, e))?;
    }
    write.commit().map_err(|error| database_error(path, error))
}

/// Turns every `evidence` entry of layout 1 or 2, a borsh `VoteEquivocation`,
/// into the borsh `Equivocation::Votes` of it by putting the variant's tag
/// before it (creating the table if the store had none). Entries are copied
/// as they are, not decoded: a damaged one is reported when it is read, as
/// before, and the rest of the evidence stays readable.
fn tag_vote_evidence(path: &Path, write: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut table = write.open_table(EVIDENCE).map_err(|error| table_error(path, "evidence", error))?;
    let mut entries = Vec::new();
    for entry in table.iter().map_err(|error| storage(path, error))? {
        let (key, value) = entry.map_err(|error| storage(path, error))?;
        entries.push((key.value(), [&[VOTES_TAG][..], value.value()].concat()));
    }
    for (key, value) in &entries {
        table.insert(*key, value.as_slice()).map_err(|error| storage(path, error))?;
    }
    Ok(())
}

/// Where the committed records in the blocks file end, by the index's last
/// entry; `None` before the first block.
fn index_end(path: &Path, db: &Database) -> Result<Option<u64>, StoreError> {
    let read = db.begin_read().map_err(|error| database_error(path, error))?;
    let index = open_table(path, &read, BLOCK_INDEX)?;
    let last = index.last().map_err(|error| storage(path, error))?;
    let Some((key, value)) = last else {
        return Ok(None);
    };
    let location = RecordLocation::from_bytes(value.value())
        .ok_or_else(|| corrupt(path, "block_index", &key.value().to_string(), "not a record location"))?;
    Ok(Some(location.end()))
}

/// The height, the tip hash and the state after the tip: the last snapshot
/// and the later blocks re-executed, then the tip re-verified.
fn recover(
    path: &Path,
    db: &Database,
    blocks: &BlockFile,
    genesis: &Genesis,
) -> Result<(u64, Hash, State), StoreError> {
    let read = db.begin_read().map_err(|error| database_error(path, error))?;
    let index = open_table(path, &read, BLOCK_INDEX)?;
    let snapshots = open_table(path, &read, STATE_SNAPSHOTS)?;
    let last = index.last().map_err(|error| storage(path, error))?;
    let height = last.map_or(0, |(key, _)| key.value());
    let count = index.len().map_err(|error| storage(path, error))?;
    if count != height {
        return Err(StoreError::Corrupt(format!(
            "{}: the `block_index` table holds {count} blocks but its last is block {height}",
            path.display()
        )));
    }
    let last_snapshot = snapshots.last().map_err(|error| storage(path, error))?;
    let (base, mut state) = match last_snapshot {
        None => (0, State::genesis(genesis)),
        Some((key, record)) => {
            let key = key.value();
            let snapshot_error = |problem: &dyn std::fmt::Display| {
                corrupt(path, "state_snapshots", &key.to_string(), &problem.to_string())
            };
            // A snapshot is bounded by its record (LZ4 expands at most 256 times).
            let canonical =
                at_rest::decode(record.value(), usize::MAX).map_err(|error| snapshot_error(&error))?;
            let state = from_bytes::<State>(&canonical).map_err(|error| snapshot_error(&error))?;
            (key, state)
        }
    };
    if base > height {
        return Err(corrupt(
            path,
            "state_snapshots",
            &base.to_string(),
            &format!("above the last block {height}"),
        ));
    }
    if base > 0 {
        let block = read_block(path, blocks, &index, base)?;
        let header = &block.block.header;
        if state.height != base
            || state.root(&genesis.community_id) != header.state_root
            || state.last_block_hash != header.hash()
        {
            return Err(corrupt(
                path,
                "state_snapshots",
                &base.to_string(),
                "does not match the block at its height",
            ));
        }
    }
    for next in base + 1..=height {
        let block = read_block(path, blocks, &index, next)?;
        // Checks the link, the transaction and receipt roots and the state root.
        let (after, _receipts) = execute(genesis, &state, &block.block, Signatures::AlreadyVerified)
            .map_err(|source| StoreError::Replay { height: next, source: Box::new(source) })?;
        state = after;
    }
    if height == 0 {
        return Ok((0, genesis.hash(), state));
    }
    // Re-verify the tip: its certificate and its link to the block before.
    let tip = read_block(path, blocks, &index, height)?;
    let header = &tip.block.header;
    tip.certificate
        .verify(genesis, header)
        .map_err(|source| StoreError::BadCertificate { height, source })?;
    let previous = if height == 1 {
        genesis.hash()
    } else {
        read_block(path, blocks, &index, height - 1)?.block.header.hash()
    };
    if header.previous_hash != previous {
        return Err(StoreError::WrongPrevious { height, expected: previous, found: header.previous_hash });
    }
    Ok((height, header.hash(), state))
}

/// Block `height`: its index entry, its record (checked against the entry's
/// blake3), decoded strictly. A missing or malformed one is `Corrupt`, named
/// by the file it is in.
fn read_block(
    path: &Path,
    blocks: &BlockFile,
    index: &impl ReadableTable<u64, &'static [u8]>,
    height: u64,
) -> Result<CertifiedBlock, StoreError> {
    let key = height.to_string();
    let location = index.get(height).map_err(|error| storage(path, error))?;
    let location = location.ok_or_else(|| corrupt(path, "block_index", &key, "missing"))?;
    let location = RecordLocation::from_bytes(location.value())
        .ok_or_else(|| corrupt(path, "block_index", &key, "not a record location"))?;
    let record = blocks.read(height, location)?;
    let damaged =
        |problem: &dyn std::fmt::Display| corrupt(blocks.path(), "blocks", &key, &problem.to_string());
    let canonical = at_rest::decode(&record, BLOCK_BYTES_MAX).map_err(|error| damaged(&error))?;
    let block = from_bytes::<CertifiedBlock>(&canonical).map_err(|error| damaged(&error))?;
    if block.block.header.height != height {
        let found = block.block.header.height;
        return Err(damaged(&format!("holds block {found}")));
    }
    Ok(block)
}

fn open_table(
    path: &Path,
    read: &redb::ReadTransaction,
    table: TableDefinition<u64, &'static [u8]>,
) -> Result<redb::ReadOnlyTable<u64, &'static [u8]>, StoreError> {
    read.open_table(table).map_err(|error| table_error(path, table.name(), error))
}

/// Where this process prepares a new store before it publishes it at
/// `path`: a name no other creation running now uses.
fn staging_path(path: &Path) -> PathBuf {
    static CREATIONS: AtomicU64 = AtomicU64::new(0);
    let creation = CREATIONS.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(format!(".creating.{}.{creation}", std::process::id()));
    path.with_file_name(name)
}

/// Makes the new directory entry of `path` durable.
fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent).and_then(|dir| dir.sync_all()).map_err(|error| io_error(parent, &error))
}

fn not_a_store(path: &Path, reason: &str) -> StoreError {
    StoreError::NotAStore { path: path.display().to_string(), reason: reason.to_string() }
}

fn corrupt(path: &Path, table: &str, key: &str, problem: &str) -> StoreError {
    StoreError::Corrupt(format!("{}: {table}[{key}]: {problem}", path.display()))
}

fn io_error(path: &Path, error: &std::io::Error) -> StoreError {
    StoreError::Database(format!("{}: {error}", path.display()))
}

/// A redb failure: corruption it detected is `Corrupt`, the rest `Database`.
fn storage(path: &Path, error: StorageError) -> StoreError {
    match error {
        StorageError::Corrupted(message) => {
            StoreError::Corrupt(format!("{}: redb found the file damaged: {message}", path.display()))
        }
        StorageError::Io(error) if error.kind() == ErrorKind::UnexpectedEof => StoreError::Corrupt(format!(
            "{}: the file ends before the data its redb header points to (truncated?): {error}",
            path.display()
        )),
        other => StoreError::Database(format!("{}: {other}", path.display())),
    }
}

fn table_error(path: &Path, table: &str, error: TableError) -> StoreError {
    match error {
        TableError::Storage(error) => storage(path, error),
        TableError::TableDoesNotExist(_) => {
            StoreError::Corrupt(format!("{}: the `{table}` table is missing", path.display()))
        }
        other => StoreError::Corrupt(format!("{}: the `{table}` table: {other}", path.display())),
    }
}

fn open_error(path: &Path, error: DatabaseError) -> StoreError {
    match error {
        DatabaseError::Storage(error) => storage(path, error),
        DatabaseError::UpgradeRequired(version) => not_a_store(
            path,
            &format!("a redb database in file format {version}, which this build's redb cannot open"),
        ),
        DatabaseError::DatabaseAlreadyOpen => StoreError::Database(format!(
            "{}: the store is already open, in this or another process",
            path.display()
        )),
        other => database_error(path, other),
    }
}

fn database_error(path: &Path, error: impl Into<redb::Error>) -> StoreError {
    match error.into() {
        redb::Error::Corrupted(message) => {
            StoreError::Corrupt(format!("{}: redb found the file damaged: {message}", path.display()))
        }
        other => StoreError::Database(format!("{}: {other}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::VOTES_TAG;
    use crate::block::{Vote, VoteKind};
    use crate::consensus::{Equivocation, VoteEquivocation};
    use crate::encoding::to_bytes;
    use crate::ids::{PublicKey, Signature};

    #[test]
    fn the_votes_tag_makes_vote_evidence_an_equivocation() {
        let vote = Vote {
            kind: VoteKind::Precommit,
            height: 3,
            round: 1,
            block_hash: None,
            validator: PublicKey([4; 32]),
        };
        let votes = VoteEquivocation {
            first: vote,
            first_signature: Signature([5; 64]),
            second: Vote { block_hash: Some(crate::Hash([6; 32])), ..vote },
            second_signature: Signature([7; 64]),
        };
        let tagged = [&[VOTES_TAG][..], &to_bytes(&votes)].concat();
        assert_eq!(tagged, to_bytes(&Equivocation::Votes(votes)));
    }
}
