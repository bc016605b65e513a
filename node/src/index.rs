//! The node's query index (`index.redb` in the data directory): where each
//! transaction, clearing and settlement is, and each interval's order book.
//! It is derived from the certified blocks alone, so it is never trusted
//! over the ledger: a missing, damaged or lagging index is rebuilt or caught
//! up from the store when the node starts. Tests and simulations of the
//! chain core open it in memory ([`Index::in_memory`]).
//!
//! The book of an interval is every offer included for it minus the ones
//! cancelled: blocks hold only admissible transactions, and after gate
//! closure no offer can join or leave, so after clearing this is exactly the
//! set of offers the auction cleared.

use std::path::{Path, PathBuf};

use gridshare_ledger::Hash;
use gridshare_ledger::block::{CertifiedBlock, Receipt};
use gridshare_ledger::ids::{CommunityId, PublicKey};
use gridshare_ledger::tx::{Side, Tx};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Transaction id → (height, index in the block).
const TRANSACTIONS: TableDefinition<[u8; 32], (u64, u32)> = TableDefinition::new("transactions");
/// Interval → (height, index of the clearing receipt in the block).
const CLEARINGS: TableDefinition<u64, (u64, u32)> = TableDefinition::new("clearings");
/// Interval → (height, index of the settlement receipt).
const SETTLEMENTS: TableDefinition<u64, (u64, u32)> = TableDefinition::new("settlements");
/// A book entry as stored: (account, sell, energy_wh, price_micro_per_kwh).
type StoredOffer = ([u8; 32], bool, u64, u64);
/// (interval, offer id) → the offer.
const BOOK: TableDefinition<(u64, [u8; 32]), StoredOffer> = TableDefinition::new("book");
/// Offer id → its interval, to find a cancelled offer in the book.
const OFFER_INTERVALS: TableDefinition<[u8; 32], u64> = TableDefinition::new("offer_intervals");
/// (meter, interval) → the block and position of the meter's reading of
/// that interval: its signed registers, which attest offers.
const READINGS: TableDefinition<([u8; 32], u64), (u64, u32)> = TableDefinition::new("readings");

const HEIGHT_KEY: &str = "height";
const GENESIS_KEY: &str = "genesis";
/// The index is made durable at least this often; after a crash the blocks
/// since are indexed again from the store.
const DURABLE_EVERY_BLOCKS: u64 = 32;
/// redb's page cache for the index.
const CACHE_BYTES: usize = 16 << 20;
/// What an index in memory is called in its errors, in place of a path.
const IN_MEMORY: &str = "(in memory)";

/// An offer in an interval's book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookEntry {
    pub id: Hash,
    pub account: PublicKey,
    pub side: Side,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
}

/// Where an item is: a block height and a position in that block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub height: u64,
    pub index: u32,
}

/// The index failed; the node reports it and rebuilds on the next start.
#[derive(Debug, thiserror::Error)]
#[error("the index {path}: {reason}")]
pub struct IndexError {
    path: PathBuf,
    reason: String,
}

pub struct Index {
    path: PathBuf,
    db: Database,
    height: u64,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("path", &self.path).field("height", &self.height).finish()
    }
}

impl Index {
    /// Opens the index of the community of `genesis_hash` at `path`; one that
    /// is damaged or of another ledger is replaced by an empty one.
    pub fn open(path: &Path, genesis_hash: &Hash) -> Result<Index, IndexError> {
        if path.exists() {
            match Index::open_existing(path, genesis_hash) {
                Ok(index) => return Ok(index),
                Err(error) => {
                    tracing::warn!(%error, "rebuilding the index");
                    std::fs::remove_file(path).map_err(|error| fail(path, error))?;
                }
            }
        }
        let mut builder = redb::Builder::new();
        builder.set_cache_size(CACHE_BYTES);
        let db = builder.create(path).map_err(|error| fail(path, error))?;
        Index::initialize(path, db, genesis_hash)
    }

    /// An empty index of the community of `genesis_hash` that lives in
    /// memory, for tests and simulations of the node's chain core.
    pub fn in_memory(genesis_hash: &Hash) -> Result<Index, IndexError> {
        let path = Path::new(IN_MEMORY);
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|error| fail(path, error))?;
        Index::initialize(path, db, genesis_hash)
    }

    /// Writes the tables of an empty index into the new database `db`.
    fn initialize(path: &Path, db: Database, genesis_hash: &Hash) -> Result<Index, IndexError> {
        let mut write = db.begin_write().map_err(|error| fail(path, error))?;
        write.set_durability(Durability::Immediate).map_err(|error| fail(path, error))?;
        {
            let mut meta = write.open_table(META).map_err(|error| fail(path, error))?;
            meta.insert(GENESIS_KEY, genesis_hash.0.as_slice()).map_err(|error| fail(path, error))?;
            meta.insert(HEIGHT_KEY, 0_u64.to_le_bytes().as_slice()).map_err(|error| fail(path, error))?;
            write.open_table(TRANSACTIONS).map_err(|error| fail(path, error))?;
            write.open_table(CLEARINGS).map_err(|error| fail(path, error))?;
            write.open_table(SETTLEMENTS).map_err(|error| fail(path, error))?;
            write.open_table(BOOK).map_err(|error| fail(path, error))?;
            write.open_table(OFFER_INTERVALS).map_err(|error| fail(path, error))?;
            write.open_table(READINGS).map_err(|error| fail(path, error))?;
        }
        write.commit().map_err(|error| fail(path, error))?;
        Ok(Index { path: path.to_path_buf(), db, height: 0 })
    }

    fn open_existing(path: &Path, genesis_hash: &Hash) -> Result<Index, IndexError> {
        let mut builder = redb::Builder::new();
        builder.set_check_integrity_on_open(true).set_cache_size(CACHE_BYTES);
        let db = builder.open(path).map_err(|error| fail(path, error))?;
        let read = db.begin_read().map_err(|error| fail(path, error))?;
        let meta = read.open_table(META).map_err(|error| fail(path, error))?;
        let genesis = meta.get(GENESIS_KEY).map_err(|error| fail(path, error))?;
        if genesis.as_ref().map(|value| value.value().to_vec()) != Some(genesis_hash.0.to_vec()) {
            return Err(fail(path, "it indexes another community"));
        }
        let height = meta
            .get(HEIGHT_KEY)
            .map_err(|error| fail(path, error))?
            .and_then(|value| <[u8; 8]>::try_from(value.value()).ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| fail(path, "no height"))?;
        drop(meta);
        // An index made before a table existed is rebuilt with it.
        read.open_table(READINGS).map_err(|error| fail(path, error))?;
        drop(read);
        Ok(Index { path: path.to_path_buf(), db, height })
    }

    /// The height of the last indexed block.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Indexes the next block.
    pub fn add(&mut self, certified: &CertifiedBlock, community: &CommunityId) -> Result<(), IndexError> {
        let path = &self.path;
        let block = &certified.block;
        let height = block.header.height;
        if height != self.height + 1 {
            return Err(fail(path, format!("block {height} does not follow {}", self.height)));
        }
        let mut write = self.db.begin_write().map_err(|error| fail(path, error))?;
        let durability = if height.is_multiple_of(DURABLE_EVERY_BLOCKS) {
            Durability::Immediate
        } else {
            Durability::None
        };
        write.set_durability(durability).map_err(|error| fail(path, error))?;
        {
            let mut transactions = write.open_table(TRANSACTIONS).map_err(|error| fail(path, error))?;
            let mut book = write.open_table(BOOK).map_err(|error| fail(path, error))?;
            let mut offer_intervals = write.open_table(OFFER_INTERVALS).map_err(|error| fail(path, error))?;
            let mut readings = write.open_table(READINGS).map_err(|error| fail(path, error))?;
            for (position, tx) in block.transactions.iter().enumerate() {
                let id = tx.id(community);
                let position = u32::try_from(position).map_err(|error| fail(path, error))?;
                transactions.insert(id.0, (height, position)).map_err(|error| fail(path, error))?;
                match &tx.tx {
                    Tx::Offer(offer) => {
                        let entry = (
                            offer.account.0,
                            offer.side == Side::Sell,
                            offer.energy_wh,
                            offer.price_micro_per_kwh,
                        );
                        book.insert((offer.interval, id.0), entry).map_err(|error| fail(path, error))?;
                        offer_intervals.insert(id.0, offer.interval).map_err(|error| fail(path, error))?;
                    }
                    Tx::MeterReading(reading) => {
                        readings
                            .insert((reading.meter.0, reading.interval), (height, position))
                            .map_err(|error| fail(path, error))?;
                    }
                    Tx::CancelOffer { offer_id, .. } => {
                        let interval = offer_intervals
                            .remove(offer_id.0)
                            .map_err(|error| fail(path, error))?
                            .map(|value| value.value());
                        if let Some(interval) = interval {
                            book.remove((interval, offer_id.0)).map_err(|error| fail(path, error))?;
                        }
                    }
                    _ => {}
                }
            }
            let mut clearings = write.open_table(CLEARINGS).map_err(|error| fail(path, error))?;
            let mut settlements = write.open_table(SETTLEMENTS).map_err(|error| fail(path, error))?;
            for (position, receipt) in block.receipts.iter().enumerate() {
                let position = u32::try_from(position).map_err(|error| fail(path, error))?;
                match receipt {
                    Receipt::Clearing(clearing) => clearings.insert(clearing.interval, (height, position)),
                    Receipt::Settlement(settlement) => {
                        settlements.insert(settlement.interval, (height, position))
                    }
                }
                .map_err(|error| fail(path, error))?;
            }
            let mut meta = write.open_table(META).map_err(|error| fail(path, error))?;
            meta.insert(HEIGHT_KEY, height.to_le_bytes().as_slice()).map_err(|error| fail(path, error))?;
        }
        write.commit().map_err(|error| fail(path, error))?;
        self.height = height;
        Ok(())
    }

    /// Where transaction `id` was included.
    pub fn transaction(&self, id: &Hash) -> Result<Option<Location>, IndexError> {
        self.get(TRANSACTIONS, id.0)
    }

    /// Where `meter`'s reading of `interval` was included.
    pub fn reading(&self, meter: &PublicKey, interval: u64) -> Result<Option<Location>, IndexError> {
        self.get(READINGS, (meter.0, interval))
    }

    /// The block and receipt position of an interval's clearing.
    pub fn clearing(&self, interval: u64) -> Result<Option<Location>, IndexError> {
        self.get(CLEARINGS, interval)
    }

    /// The block and receipt position of an interval's settlement.
    pub fn settlement(&self, interval: u64) -> Result<Option<Location>, IndexError> {
        self.get(SETTLEMENTS, interval)
    }

    fn get<K: redb::Key + 'static>(
        &self,
        table: TableDefinition<K, (u64, u32)>,
        key: impl std::borrow::Borrow<K::SelfType<'static>>,
    ) -> Result<Option<Location>, IndexError> {
        let path = &self.path;
        let read = self.db.begin_read().map_err(|error| fail(path, error))?;
        let table = read.open_table(table).map_err(|error| fail(path, error))?;
        let found = table.get(key).map_err(|error| fail(path, error))?;
        Ok(found.map(|value| {
            let (height, index) = value.value();
            Location { height, index }
        }))
    }

    /// Up to `max` offers of an interval's book, in ascending id order, and
    /// whether there were more.
    pub fn book(&self, interval: u64, max: usize) -> Result<(Vec<BookEntry>, bool), IndexError> {
        let path = &self.path;
        let read = self.db.begin_read().map_err(|error| fail(path, error))?;
        let table = read.open_table(BOOK).map_err(|error| fail(path, error))?;
        let range = table
            .range((interval, [0_u8; 32])..=(interval, [0xff_u8; 32]))
            .map_err(|error| fail(path, error))?;
        let mut entries = Vec::new();
        for item in range {
            if entries.len() == max {
                return Ok((entries, true));
            }
            let (key, value) = item.map_err(|error| fail(path, error))?;
            let (_, id) = key.value();
            let (account, sell, energy_wh, price_micro_per_kwh) = value.value();
            entries.push(BookEntry {
                id: Hash(id),
                account: PublicKey(account),
                side: if sell { Side::Sell } else { Side::Buy },
                energy_wh,
                price_micro_per_kwh,
            });
        }
        Ok((entries, false))
    }
}

fn fail(path: &Path, reason: impl std::fmt::Display) -> IndexError {
    IndexError { path: path.to_path_buf(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridshare_ledger::testkit::trading_chain;

    #[test]
    fn a_chain_is_indexed_and_a_reopened_index_resumes() {
        let (community, blocks) = trading_chain(7, 4, 24);
        let genesis = &community.genesis;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let mut index = Index::open(&path, &genesis.hash()).unwrap();
        for block in &blocks[..12] {
            index.add(block, &genesis.community_id).unwrap();
        }
        assert!(index.add(&blocks[13], &genesis.community_id).is_err(), "a gap is refused");
        drop(index);
        let mut index = Index::open(&path, &genesis.hash()).unwrap();
        assert!(index.height() <= 12);
        for block in &blocks[usize::try_from(index.height()).unwrap()..] {
            index.add(block, &genesis.community_id).unwrap();
        }
        let mut cleared = 0;
        for block in &blocks {
            for (position, tx) in block.block.transactions.iter().enumerate() {
                let found = index.transaction(&tx.id(&genesis.community_id)).unwrap().unwrap();
                assert_eq!(
                    found,
                    Location { height: block.block.header.height, index: u32::try_from(position).unwrap() }
                );
            }
            for receipt in &block.block.receipts {
                if let Receipt::Clearing(clearing) = receipt {
                    cleared += 1;
                    let found = index.clearing(clearing.interval).unwrap().unwrap();
                    assert_eq!(found.height, block.block.header.height);
                    let (book, more) = index.book(clearing.interval, 100_000).unwrap();
                    assert!(!more);
                    assert_eq!(
                        u32::try_from(book.len()).unwrap(),
                        clearing.offers,
                        "the book is what the auction cleared"
                    );
                }
            }
        }
        assert!(cleared > 0);
        assert_eq!(index.clearing(1 << 40).unwrap(), None);
    }

    #[test]
    fn an_index_in_memory_indexes_like_one_on_disk() {
        let (community, blocks) = trading_chain(5, 2, 6);
        let genesis = &community.genesis;
        let mut index = Index::in_memory(&genesis.hash()).unwrap();
        for block in &blocks {
            index.add(block, &genesis.community_id).unwrap();
        }
        assert_eq!(index.height(), blocks.last().unwrap().block.header.height);
        let last = &blocks.last().unwrap().block;
        let tx = last.transactions.first().unwrap();
        let found = index.transaction(&tx.id(&genesis.community_id)).unwrap().unwrap();
        assert_eq!(found, Location { height: last.header.height, index: 0 });
        let error = index.add(&blocks[0], &genesis.community_id).unwrap_err();
        assert!(error.to_string().starts_with("the index (in memory): block 1 does not follow"), "{error}");
    }

    #[test]
    fn an_index_of_another_community_or_damaged_is_rebuilt() {
        let (community, blocks) = trading_chain(3, 2, 4);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let mut index = Index::open(&path, &community.genesis.hash()).unwrap();
        index.add(&blocks[0], &community.genesis.community_id).unwrap();
        drop(index);
        let other = Index::open(&path, &Hash([9; 32])).unwrap();
        assert_eq!(other.height(), 0);
        drop(other);
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(Index::open(&path, &Hash([9; 32])).unwrap().height(), 0);
    }

    #[test]
    fn readings_are_found_by_meter_and_interval_and_an_index_without_them_is_rebuilt() {
        let (community, blocks) = trading_chain(3, 2, 4);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let genesis_hash = community.genesis.hash();
        let mut index = Index::open(&path, &genesis_hash).unwrap();
        let mut readings = 0;
        for block in &blocks {
            index.add(block, &community.genesis.community_id).unwrap();
            for (position, tx) in block.block.transactions.iter().enumerate() {
                if let Tx::MeterReading(reading) = &tx.tx {
                    let location = Location {
                        height: block.block.header.height,
                        index: u32::try_from(position).unwrap(),
                    };
                    assert_eq!(index.reading(&reading.meter, reading.interval).unwrap(), Some(location));
                    assert_eq!(index.reading(&reading.meter, reading.interval + 1000).unwrap(), None);
                    readings += 1;
                }
            }
        }
        assert!(readings > 0, "the chain has readings");
        drop(index);
        // An index made before the table existed is rebuilt from nothing.
        let db = Database::open(&path).unwrap();
        let write = db.begin_write().unwrap();
        assert!(write.delete_table(READINGS).unwrap());
        write.commit().unwrap();
        drop(db);
        let reopened = Index::open(&path, &genesis_hash).unwrap();
        assert_eq!(reopened.height(), 0);
        let reading = blocks.iter().flat_map(|block| &block.block.transactions).find_map(|tx| match &tx.tx {
            Tx::MeterReading(reading) => Some(*reading),
            _ => None,
        });
        let reading = reading.unwrap();
        assert_eq!(reopened.reading(&reading.meter, reading.interval).unwrap(), None);
    }
}
