//! What a node promised (`acknowledged.redb` in the data directory): every
//! transaction it acknowledged through its API (202) that waits for a
//! block, and the most recent transactions that left its mempool without
//! one, with the reason. An acknowledgement is written durably before it
//! is answered, so a node that is killed restarts with everything it
//! acknowledged: the chain core admits the waiting ones again and
//! publishes them, and records as dropped, with the reason, those the chain
//! has made inadmissible meanwhile. Unlike the index, this is not derived
//! from the ledger: a damaged file stops the node rather than being
//! replaced. Tests and simulations of the chain core keep it in memory
//! ([`Acknowledged::in_memory`]); a simulated crash keeps it, as a disk
//! would.

use std::path::{Path, PathBuf};

use gridshare_ledger::Hash;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// Transaction id → (when it was admitted, ms; its canonical bytes).
const WAITING: TableDefinition<[u8; 32], (u64, &[u8])> = TableDefinition::new("waiting");
/// Transaction id → (sequence, height, rejection code, message).
const DROPPED: TableDefinition<[u8; 32], (u64, u64, &str, &str)> = TableDefinition::new("dropped");
/// Sequence → transaction id: the drops in the order they were recorded.
const DROP_ORDER: TableDefinition<u64, [u8; 32]> = TableDefinition::new("drop_order");

/// Dropped transactions remembered at most: two full mempools' worth.
pub const DROPPED_REMEMBERED_MAX: u64 = 2 * crate::mempool::MEMPOOL_TRANSACTIONS_MAX as u64;
/// Every this many settlements one is made durable (an acknowledgement
/// makes everything before it durable too): a crash forgets at most the
/// drops of this many blocks on a node that acknowledges nothing.
const DURABLE_EVERY_SETTLEMENTS: u32 = 32;
/// What a store in memory is called in its errors, in place of a path.
const IN_MEMORY: &str = "(in memory)";

/// Why a transaction left the mempool without a block, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The height of the block after which it no longer fitted (or the
    /// height the node restarted at, for one it could not admit again).
    pub height: u64,
    /// The ledger's rejection code (docs/PROTOCOL.md).
    pub reason: String,
    /// The rejection in words.
    pub message: String,
}

/// A transaction acknowledged here that waits for a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub id: Hash,
    pub admitted_ms: u64,
    /// Its canonical bytes.
    pub bytes: Vec<u8>,
}

/// The store of what the node acknowledged failed.
#[derive(Debug, thiserror::Error)]
#[error("the store of acknowledged transactions {path}: {reason}")]
pub struct AcknowledgedError {
    path: PathBuf,
    reason: String,
}

/// The acknowledged transactions that wait, and the recent drops.
pub struct Acknowledged {
    path: PathBuf,
    db: Database,
    /// The sequence number of the next drop recorded.
    next_sequence: u64,
    /// Settlements committed since the last durable commit.
    settlements_not_durable: u32,
}

impl std::fmt::Debug for Acknowledged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acknowledged").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Acknowledged {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Acknowledged, AcknowledgedError> {
        let mut builder = redb::Builder::new();
        builder.set_check_integrity_on_open(true);
        let db = builder.create(path).map_err(|error| fail(path, error))?;
        Acknowledged::initialize(path, db)
    }

    /// An empty store in memory.
    pub fn in_memory() -> Result<Acknowledged, AcknowledgedError> {
        let path = Path::new(IN_MEMORY);
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|error| fail(path, error))?;
        Acknowledged::initialize(path, db)
    }

    fn initialize(path: &Path, db: Database) -> Result<Acknowledged, AcknowledgedError> {
        let write = db.begin_write().map_err(|error| fail(path, error))?;
        write.open_table(WAITING).map_err(|error| fail(path, error))?;
        write.open_table(DROPPED).map_err(|error| fail(path, error))?;
        let next_sequence = {
            let order = write.open_table(DROP_ORDER).map_err(|error| fail(path, error))?;
            let last = order.last().map_err(|error| fail(path, error))?;
            last.map_or(0, |(sequence, _)| sequence.value() + 1)
        };
        write.commit().map_err(|error| fail(path, error))?;
        Ok(Acknowledged { path: path.to_path_buf(), db, next_sequence, settlements_not_durable: 0 })
    }

    /// Every acknowledged transaction that waits, in id order.
    pub fn waiting(&self) -> Result<Vec<Waiting>, AcknowledgedError> {
        let path = &self.path;
        let read = self.db.begin_read().map_err(|error| fail(path, error))?;
        let table = read.open_table(WAITING).map_err(|error| fail(path, error))?;
        let mut waiting = Vec::new();
        for entry in table.iter().map_err(|error| fail(path, error))? {
            let (id, value) = entry.map_err(|error| fail(path, error))?;
            let (admitted_ms, bytes) = value.value();
            waiting.push(Waiting { id: Hash(id.value()), admitted_ms, bytes: bytes.to_vec() });
        }
        Ok(waiting)
    }

    /// Records, durably, that `acknowledged` were admitted: when this
    /// returns, they survive a crash.
    pub fn record(&mut self, acknowledged: &[Waiting]) -> Result<(), AcknowledgedError> {
        if acknowledged.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let mut write = self.db.begin_write().map_err(|error| fail(path, error))?;
        write.set_durability(Durability::Immediate).map_err(|error| fail(path, error))?;
        {
            let mut table = write.open_table(WAITING).map_err(|error| fail(path, error))?;
            for waiting in acknowledged {
                table
                    .insert(waiting.id.0, (waiting.admitted_ms, waiting.bytes.as_slice()))
                    .map_err(|error| fail(path, error))?;
            }
        }
        write.commit().map_err(|error| fail(path, error))?;
        self.settlements_not_durable = 0;
        Ok(())
    }

    /// Records that `included` reached a block and `dropped` left the
    /// mempool without one (whether acknowledged here or not), forgetting
    /// the oldest drops beyond [`DROPPED_REMEMBERED_MAX`]. Made durable only
    /// with the next acknowledgement, or every
    /// [`DURABLE_EVERY_SETTLEMENTS`]: after a crash, a transaction found
    /// waiting that a block already holds is refused again on restart, and
    /// dropped then (its status is still `included`: the index comes first).
    pub fn settle(
        &mut self,
        included: &[Hash],
        dropped: &[(Hash, Dropped)],
    ) -> Result<(), AcknowledgedError> {
        if included.is_empty() && dropped.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let mut write = self.db.begin_write().map_err(|error| fail(path, error))?;
        let durable = self.settlements_not_durable + 1 >= DURABLE_EVERY_SETTLEMENTS;
        let durability = if durable { Durability::Immediate } else { Durability::None };
        write.set_durability(durability).map_err(|error| fail(path, error))?;
        {
            let mut waiting = write.open_table(WAITING).map_err(|error| fail(path, error))?;
            let mut by_id = write.open_table(DROPPED).map_err(|error| fail(path, error))?;
            let mut order = write.open_table(DROP_ORDER).map_err(|error| fail(path, error))?;
            for id in included {
                waiting.remove(id.0).map_err(|error| fail(path, error))?;
            }
            for (id, drop) in dropped {
                waiting.remove(id.0).map_err(|error| fail(path, error))?;
                let sequence = self.next_sequence;
                self.next_sequence += 1;
                let record = (sequence, drop.height, drop.reason.as_str(), drop.message.as_str());
                by_id.insert(id.0, record).map_err(|error| fail(path, error))?;
                order.insert(sequence, id.0).map_err(|error| fail(path, error))?;
            }
            while order.len().map_err(|error| fail(path, error))? > DROPPED_REMEMBERED_MAX {
                let Some((sequence, id)) = order.pop_first().map_err(|error| fail(path, error))? else {
                    break;
                };
                let (sequence, id) = (sequence.value(), id.value());
                let newest = by_id.get(id).map_err(|error| fail(path, error))?.map(|record| record.value().0);
                // A transaction dropped twice keeps its newest record.
                if newest == Some(sequence) {
                    by_id.remove(id).map_err(|error| fail(path, error))?;
                }
            }
        }
        write.commit().map_err(|error| fail(path, error))?;
        self.settlements_not_durable = if durable { 0 } else { self.settlements_not_durable + 1 };
        Ok(())
    }

    /// Why `id` was dropped, if it was lately.
    pub fn dropped(&self, id: &Hash) -> Result<Option<Dropped>, AcknowledgedError> {
        let path = &self.path;
        let read = self.db.begin_read().map_err(|error| fail(path, error))?;
        let table = read.open_table(DROPPED).map_err(|error| fail(path, error))?;
        let found = table.get(id.0).map_err(|error| fail(path, error))?;
        Ok(found.map(|record| {
            let (_, height, reason, message) = record.value();
            Dropped { height, reason: reason.to_string(), message: message.to_string() }
        }))
    }
}

fn fail(path: &Path, reason: impl std::fmt::Display) -> AcknowledgedError {
    AcknowledgedError { path: path.to_path_buf(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn closed(height: u64) -> Dropped {
        Dropped { height, reason: "interval_closed".into(), message: "closed".into() }
    }

    fn id(n: u64) -> Hash {
        let mut bytes = [0_u8; 32];
        bytes[..8].copy_from_slice(&n.to_be_bytes());
        Hash(bytes)
    }

    #[test]
    fn what_was_acknowledged_survives_reopening_until_it_is_included_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acknowledged.redb");
        let mut store = Acknowledged::open(&path).unwrap();
        let acknowledged: Vec<Waiting> = (1..=3)
            .map(|n| Waiting { id: id(n), admitted_ms: 100 + n, bytes: n.to_le_bytes().to_vec() })
            .collect();
        store.record(&acknowledged).unwrap();
        drop(store);

        let mut store = Acknowledged::open(&path).unwrap();
        assert_eq!(store.waiting().unwrap(), acknowledged);
        store.settle(&[id(1)], &[(id(2), closed(7))]).unwrap();
        assert_eq!(store.waiting().unwrap(), acknowledged[2..]);
        assert_eq!(store.dropped(&id(2)).unwrap(), Some(closed(7)));
        assert_eq!(store.dropped(&id(1)).unwrap(), None);
        drop(store);

        // Drops are numbered on from where the file left off.
        let mut store = Acknowledged::open(&path).unwrap();
        assert_eq!(store.next_sequence, 1);
        store.settle(&[], &[(id(3), closed(8))]).unwrap();
        assert_eq!(store.dropped(&id(3)).unwrap(), Some(closed(8)));
        assert!(store.waiting().unwrap().is_empty());
    }

    #[test]
    fn the_oldest_drops_are_forgotten_and_a_transaction_keeps_its_newest_record() {
        let mut store = Acknowledged::in_memory().unwrap();
        store.settle(&[], &[(id(0), closed(1)), (id(0), closed(2))]).unwrap();
        assert_eq!(store.dropped(&id(0)).unwrap(), Some(closed(2)));
        let many: Vec<(Hash, Dropped)> = (1..=DROPPED_REMEMBERED_MAX).map(|n| (id(n), closed(3))).collect();
        store.settle(&[], &many).unwrap();
        // Both records of the first transaction were the oldest two.
        assert_eq!(store.dropped(&id(0)).unwrap(), None);
        assert_eq!(store.dropped(&id(1)).unwrap(), Some(closed(3)));
        assert_eq!(store.dropped(&id(DROPPED_REMEMBERED_MAX)).unwrap(), Some(closed(3)));
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acknowledged.redb");
        std::fs::write(&path, b"not a database").unwrap();
        let error = Acknowledged::open(&path).unwrap_err();
        assert!(error.to_string().starts_with("the store of acknowledged transactions"), "{error}");
    }
}
