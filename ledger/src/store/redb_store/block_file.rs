//! The store's blocks file (`<store file>.blocks`): the at-rest record of
//! every certified block, one after another, after a 50-byte header. It is
//! only appended to, and it holds what the redb `block_index` points to:
//! bytes after the last indexed record belong to a commit that a crash or an
//! error cut short, and are cut off when the store opens.
//!
//! The blocks are here and not in redb because redb grows its file by
//! doubling it (and rounds a large value up to a power-of-two number of
//! pages), so a chain that only grows would leave up to half of that file
//! unused; this file is exactly as long as its records (BENCHMARKS.md).
//!
//! Header: `"gridshare-blocks"` (16 bytes) ‖ version `u16 LE` (= 1) ‖ the
//! genesis hash (32 bytes), so a blocks file is never read as another
//! store's.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::Hash;
use crate::store::StoreError;

use super::{corrupt, io_error, not_a_store, sync_parent};

const MAGIC: &[u8; 16] = b"gridshare-blocks";
const VERSION: u16 = 1;
/// Bytes of the header: the magic, the version and the genesis hash.
pub(super) const HEADER_BYTES: u64 = 16 + 2 + 32;
/// Bytes of an encoded [`RecordLocation`].
const LOCATION_BYTES: usize = 8 + 4 + 32;

/// Where one block's record is in the blocks file, as the index keeps it:
/// `offset u64 LE ‖ length u32 LE ‖ blake3 of the record`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RecordLocation {
    pub(super) offset: u64,
    pub(super) length_bytes: u32,
    pub(super) hash: Hash,
}

impl RecordLocation {
    /// The location of `record` written at `offset`, or `None` if it is too
    /// long to index (more than 4 GiB).
    pub(super) fn of(record: &[u8], offset: u64) -> Option<RecordLocation> {
        let length_bytes = u32::try_from(record.len()).ok()?;
        Some(RecordLocation { offset, length_bytes, hash: Hash::of(record) })
    }

    /// The first byte after the record.
    pub(super) fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.length_bytes))
    }

    pub(super) fn to_bytes(self) -> [u8; LOCATION_BYTES] {
        let mut bytes = [0_u8; LOCATION_BYTES];
        bytes[..8].copy_from_slice(&self.offset.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.length_bytes.to_le_bytes());
        bytes[12..].copy_from_slice(self.hash.as_bytes());
        bytes
    }

    /// Decodes an index value; `None` if it is not exactly one location.
    pub(super) fn from_bytes(bytes: &[u8]) -> Option<RecordLocation> {
        let bytes: &[u8; LOCATION_BYTES] = bytes.try_into().ok()?;
        let (offset, rest) = bytes.split_first_chunk::<8>()?;
        let (length, hash) = rest.split_first_chunk::<4>()?;
        Some(RecordLocation {
            offset: u64::from_le_bytes(*offset),
            length_bytes: u32::from_le_bytes(*length),
            hash: Hash(hash.try_into().ok()?),
        })
    }
}

/// The open blocks file of a store.
#[derive(Debug)]
pub(super) struct BlockFile {
    path: PathBuf,
    /// Behind a lock because reading seeks, and reads come through `&self`.
    file: Mutex<File>,
    /// The end of the committed records.
    end: u64,
    /// The end of what was written: where the next record goes.
    written: u64,
}

impl BlockFile {
    /// Opens the blocks file at `path` of the store of `genesis_hash`, whose
    /// committed records end at `committed_end` (`None` before the first
    /// block, when a missing file is made). Bytes after the end are cut off.
    pub(super) fn open(
        path: PathBuf,
        genesis_hash: Hash,
        committed_end: Option<u64>,
    ) -> Result<BlockFile, StoreError> {
        let expected = header(genesis_hash);
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => match committed_end {
                None => create(&path, &expected)?,
                Some(end) => {
                    return Err(StoreError::Corrupt(format!(
                        "{}: the blocks file is missing, and the store's index has records up to byte {end} in it",
                        path.display()
                    )));
                }
            },
            Err(error) => return Err(io_error(&path, &error)),
        };
        let mut length = file.metadata().map_err(|error| io_error(&path, &error))?.len();
        let mut head = Vec::new();
        (&mut file).take(HEADER_BYTES).read_to_end(&mut head).map_err(|error| io_error(&path, &error))?;
        if head != expected {
            let cut_short = expected.starts_with(&head);
            match committed_end {
                // The creation of this file was cut short: nothing is in it yet.
                None if cut_short => {
                    write_header(&path, &mut file, &expected)?;
                    length = HEADER_BYTES;
                }
                // Truncated: the length check below says so.
                Some(_) if cut_short => {}
                None => return Err(not_a_store(&path, &header_problem(&head, &expected))),
                Some(_) => {
                    return Err(StoreError::Corrupt(format!(
                        "{}: {}",
                        path.display(),
                        header_problem(&head, &expected)
                    )));
                }
            }
        }
        let end = committed_end.unwrap_or(HEADER_BYTES);
        if length < end {
            return Err(StoreError::Corrupt(format!(
                "{}: the blocks file has {length} bytes, but the store's index has records up to byte {end} (truncated?)",
                path.display()
            )));
        }
        if length > end {
            // A record written by a commit that did not complete.
            file.set_len(end).and_then(|()| file.sync_data()).map_err(|error| io_error(&path, &error))?;
        }
        Ok(BlockFile { path, file: Mutex::new(file), end, written: end })
    }

    /// A read-only handle of the same file that reads the records committed
    /// so far, from any thread.
    pub(super) fn snapshot(&self) -> Result<BlockFile, StoreError> {
        let file = File::open(&self.path).map_err(|error| io_error(&self.path, &error))?;
        Ok(BlockFile { path: self.path.clone(), file: Mutex::new(file), end: self.end, written: self.end })
    }

    /// The file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The end of the committed records.
    #[cfg(test)]
    fn end(&self) -> u64 {
        self.end
    }

    /// Writes `record` after the records written so far, not yet durably
    /// (see [`BlockFile::sync`]) nor committed (see [`BlockFile::commit`]).
    /// Returns where it is.
    pub(super) fn write(&mut self, record: &[u8]) -> Result<RecordLocation, StoreError> {
        let path = &self.path;
        let location = RecordLocation::of(record, self.written).ok_or_else(|| {
            StoreError::Database(format!(
                "{}: a record of {} bytes is too long",
                path.display(),
                record.len()
            ))
        })?;
        let file = self.file.get_mut().unwrap_or_else(PoisonError::into_inner);
        file.seek(SeekFrom::Start(location.offset))
            .and_then(|_| file.write_all(record))
            .map_err(|error| io_error(path, &error))?;
        self.written = location.end();
        Ok(location)
    }

    /// Makes what was written durable.
    pub(super) fn sync(&mut self) -> Result<(), StoreError> {
        let file = self.file.get_mut().unwrap_or_else(PoisonError::into_inner);
        file.sync_data().map_err(|error| io_error(&self.path, &error))
    }

    /// Counts what was written as committed: the index now points to it.
    pub(super) fn commit(&mut self) {
        self.end = self.written;
    }

    /// Forgets what was written since the last commit, after a commit
    /// failed: the next record goes right after the committed ones. The
    /// bytes stay until then (or until the next open cuts them off), since
    /// a commit whose redb transaction reported an error may still have
    /// reached the disk and point to them.
    pub(super) fn rewind(&mut self) {
        self.written = self.end;
    }

    /// The record of block `height` at `location`, checked against the
    /// committed length and the location's hash.
    pub(super) fn read(&self, height: u64, location: RecordLocation) -> Result<Vec<u8>, StoreError> {
        let key = height.to_string();
        if location.offset < HEADER_BYTES || location.end() > self.end {
            return Err(corrupt(
                &self.path,
                "blocks",
                &key,
                &format!(
                    "its record (bytes {} to {}) is outside the committed records (bytes {HEADER_BYTES} to {})",
                    location.offset,
                    location.end(),
                    self.end
                ),
            ));
        }
        let length = usize::try_from(location.length_bytes)
            .map_err(|_| corrupt(&self.path, "blocks", &key, "its record is too long for this machine"))?;
        let mut record = vec![0_u8; length];
        {
            let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
            file.seek(SeekFrom::Start(location.offset)).and_then(|_| file.read_exact(&mut record)).map_err(
                |error| match error.kind() {
                    ErrorKind::UnexpectedEof => {
                        corrupt(&self.path, "blocks", &key, "the file ends inside its record (truncated?)")
                    }
                    _ => io_error(&self.path, &error),
                },
            )?;
        }
        if Hash::of(&record) != location.hash {
            return Err(corrupt(
                &self.path,
                "blocks",
                &key,
                "its record does not match its checksum (damaged)",
            ));
        }
        Ok(record)
    }
}

fn header(genesis_hash: Hash) -> Vec<u8> {
    [&MAGIC[..], &VERSION.to_le_bytes(), genesis_hash.as_bytes()].concat()
}

/// Makes the blocks file with its header, durably (the file and its name).
fn create(path: &Path, header: &[u8]) -> Result<File, StoreError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|error| io_error(path, &error))?;
    write_header(path, &mut file, header)?;
    sync_parent(path)?;
    Ok(file)
}

fn write_header(path: &Path, file: &mut File, header: &[u8]) -> Result<(), StoreError> {
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(header))
        .and_then(|()| file.sync_all())
        .map_err(|error| io_error(path, &error))
}

/// What is wrong with a header that is not the expected one.
fn header_problem(head: &[u8], expected: &[u8]) -> String {
    let length = usize::try_from(HEADER_BYTES).unwrap_or(usize::MAX);
    if head.len() < length || !head.starts_with(MAGIC) {
        return "the file next to the store is not a Gridshare blocks file (no header)".to_string();
    }
    let version = u16::from_le_bytes([head[16], head[17]]);
    if version != VERSION {
        return format!("a blocks file of version {version}, and this build reads version {VERSION}");
    }
    let found = Hash(head[18..].try_into().unwrap_or_default());
    let wanted = Hash(expected[18..].try_into().unwrap_or_default());
    format!("a blocks file of the store of genesis {found}, not of this store's genesis {wanted}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

    use super::*;

    #[test]
    fn locations_round_trip_and_refuse_other_lengths() {
        let location = RecordLocation { offset: 50, length_bytes: 7, hash: Hash::of(b"record") };
        assert_eq!(RecordLocation::from_bytes(&location.to_bytes()), Some(location));
        assert_eq!(location.end(), 57);
        assert_eq!(RecordLocation::from_bytes(&location.to_bytes()[1..]), None);
        assert_eq!(RecordLocation::from_bytes(&[0; LOCATION_BYTES + 1]), None);
    }

    #[test]
    fn a_crash_before_the_first_commit_leaves_a_file_that_opens_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.blocks");
        let genesis = Hash::of(b"genesis");
        for partial in [0, 5, 49] {
            std::fs::write(&path, &header(genesis)[..partial]).unwrap();
            let file = BlockFile::open(path.clone(), genesis, None).unwrap();
            assert_eq!(file.end(), HEADER_BYTES);
            drop(file);
            assert_eq!(std::fs::read(&path).unwrap(), header(genesis));
        }
        // An uncommitted record is cut off.
        let mut file = BlockFile::open(path.clone(), genesis, None).unwrap();
        file.write(b"uncommitted").unwrap();
        file.sync().unwrap();
        drop(file);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), HEADER_BYTES + 11);
        BlockFile::open(path.clone(), genesis, None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), HEADER_BYTES);
        // Another store's file, garbage, another version: refused, untouched.
        let error = BlockFile::open(path.clone(), Hash::of(b"other"), None).unwrap_err();
        assert!(error.to_string().contains("of the store of genesis"), "{error}");
        let mut newer = header(genesis);
        newer[16] = 2;
        for (bytes, needle) in [(newer, "version 2"), (vec![7; 100], "not a Gridshare blocks file")] {
            std::fs::write(&path, &bytes).unwrap();
            let error = BlockFile::open(path.clone(), genesis, None).unwrap_err();
            assert!(
                matches!(error, StoreError::NotAStore { .. }) && error.to_string().contains(needle),
                "{error}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
        }
    }

    #[test]
    fn after_a_failed_commit_the_next_record_takes_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.blocks");
        let genesis = Hash::of(b"genesis");
        let mut file = BlockFile::open(path.clone(), genesis, None).unwrap();
        let first = file.write(b"first").unwrap();
        file.commit();
        file.write(b"a record whose commit failed").unwrap();
        file.rewind();
        let second = file.write(b"second").unwrap();
        assert_eq!(second.offset, first.end());
        file.commit();
        assert_eq!(file.read(2, second).unwrap(), b"second");
        drop(file);
        // What is left of the failed record is cut off on open.
        BlockFile::open(path.clone(), genesis, Some(second.end())).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), second.end());
    }

    #[test]
    fn committed_records_read_back_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.blocks");
        let genesis = Hash::of(b"genesis");
        let mut file = BlockFile::open(path.clone(), genesis, None).unwrap();
        let first = file.write(b"first").unwrap();
        let second = file.write(b"second").unwrap();
        assert_eq!((first.offset, second.offset), (HEADER_BYTES, HEADER_BYTES + 5));
        file.sync().unwrap();
        // Not committed yet: not readable.
        assert!(file.read(1, first).is_err());
        file.commit();
        assert_eq!(file.read(1, first).unwrap(), b"first");
        assert_eq!(file.read(2, second).unwrap(), b"second");
        let outside = RecordLocation { offset: second.end(), ..second };
        assert!(file.read(2, outside).unwrap_err().to_string().contains("blocks[2]: its record"));
        drop(file);
        // A missing or truncated file, when the index has records in it.
        let error = BlockFile::open(path.clone(), genesis, Some(second.end() + 1)).unwrap_err();
        assert!(error.to_string().contains("truncated"), "{error}");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[usize::try_from(first.offset).unwrap()] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let file = BlockFile::open(path.clone(), genesis, Some(second.end())).unwrap();
        assert!(file.read(1, first).unwrap_err().to_string().contains("checksum"));
        drop(file);
        // A damaged header, when blocks are committed: damage, not a foreign file.
        bytes[usize::try_from(first.offset).unwrap()] ^= 1;
        bytes[3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let error = BlockFile::open(path.clone(), genesis, Some(second.end())).unwrap_err();
        assert!(
            matches!(error, StoreError::Corrupt(_)) && error.to_string().contains("no header"),
            "{error}"
        );
        std::fs::remove_file(&path).unwrap();
        let error = BlockFile::open(path.clone(), genesis, Some(second.end())).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt(_)) && error.to_string().contains("missing"), "{error}");
        assert!(!path.exists());
    }
}
