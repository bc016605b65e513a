//! The at-rest encoding of what the on-disk store keeps (docs/PROTOCOL.md
//! §7): a block's or a state's canonical borsh bytes, compressed with LZ4
//! when that makes them shorter. Only the bytes on disk change: what is
//! hashed, signed and exported is the canonical borsh, which decoding gives
//! back byte for byte.
//!
//! A record is `encoding u8 ‖ body`:
//! - [`RAW`] (0): the body is the canonical bytes;
//! - [`LZ4`] (1): `canonical length u32 LE ‖ an LZ4 block` (the LZ4 block
//!   format, without a frame).
//!
//! Decoding is strict and bounded: an unknown encoding, a declared length
//! above the caller's bound or beyond what LZ4 can expand the body to, and an
//! LZ4 block that does not decode to exactly the declared length are each an
//! [`AtRestError`], never a panic.

/// Encoding byte: the body is the canonical bytes themselves.
pub const RAW: u8 = 0;
/// Encoding byte: the body is the canonical length and an LZ4 block.
pub const LZ4: u8 = 1;

/// LZ4 writes at most 255 output bytes per input byte (a run length is
/// extended one byte at a time), so a declared length above this many
/// times the body is garbage, refused before anything is allocated for it.
const LZ4_EXPANSION_MAX: usize = 256;

/// Why an at-rest record does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AtRestError {
    #[error("the record is empty (no encoding byte)")]
    Empty,
    #[error("unknown at-rest encoding {0} (this build reads 0 = raw and 1 = LZ4)")]
    UnknownEncoding(u8),
    #[error("the LZ4 record is shorter than its 4-byte length")]
    MissingLength,
    #[error("the record holds {declared_bytes} bytes, more than the {max_bytes} allowed")]
    TooLarge { declared_bytes: u64, max_bytes: u64 },
    #[error("the LZ4 record declares {declared_bytes} bytes, more than its {body_bytes}-byte block can hold")]
    Implausible { declared_bytes: u64, body_bytes: u64 },
    #[error("the LZ4 block does not decode: {0}")]
    Lz4(String),
    #[error("the LZ4 block decodes to {found_bytes} bytes, not the declared {declared_bytes}")]
    LengthMismatch { declared_bytes: u64, found_bytes: u64 },
}

/// The at-rest record of `canonical`: LZ4 if that is shorter, raw otherwise.
pub fn encode(canonical: &[u8]) -> Vec<u8> {
    if let Ok(length) = u32::try_from(canonical.len()) {
        let compressed = lz4_flex::block::compress(canonical);
        if 4 + compressed.len() < canonical.len() {
            let mut record = Vec::with_capacity(1 + 4 + compressed.len());
            record.push(LZ4);
            record.extend_from_slice(&length.to_le_bytes());
            record.extend_from_slice(&compressed);
            return record;
        }
    }
    let mut record = Vec::with_capacity(1 + canonical.len());
    record.push(RAW);
    record.extend_from_slice(canonical);
    record
}

/// The canonical bytes of `record`, which must be at most
/// `canonical_bytes_max` long.
pub fn decode(record: &[u8], canonical_bytes_max: usize) -> Result<Vec<u8>, AtRestError> {
    let (&encoding, body) = record.split_first().ok_or(AtRestError::Empty)?;
    let too_large = |declared_bytes: usize| AtRestError::TooLarge {
        declared_bytes: widen(declared_bytes),
        max_bytes: widen(canonical_bytes_max),
    };
    match encoding {
        RAW => {
            if body.len() > canonical_bytes_max {
                return Err(too_large(body.len()));
            }
            Ok(body.to_vec())
        }
        LZ4 => {
            let (length, block) = body.split_first_chunk::<4>().ok_or(AtRestError::MissingLength)?;
            let declared = usize::try_from(u32::from_le_bytes(*length)).unwrap_or(usize::MAX);
            if declared > canonical_bytes_max {
                return Err(too_large(declared));
            }
            if declared > block.len().saturating_mul(LZ4_EXPANSION_MAX) {
                return Err(AtRestError::Implausible {
                    declared_bytes: widen(declared),
                    body_bytes: widen(block.len()),
                });
            }
            // A fresh, zeroed buffer: nothing of earlier data can leak into
            // the output of a malformed block.
            let mut canonical = vec![0_u8; declared];
            let found = lz4_flex::block::decompress_into(block, &mut canonical)
                .map_err(|error| AtRestError::Lz4(error.to_string()))?;
            if found != declared {
                return Err(AtRestError::LengthMismatch {
                    declared_bytes: widen(declared),
                    found_bytes: widen(found),
                });
            }
            Ok(canonical)
        }
        other => Err(AtRestError::UnknownEncoding(other)),
    }
}

/// A length as `u64` for messages (lossless on every supported target).
fn widen(bytes: usize) -> u64 {
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

    use super::*;

    #[test]
    fn repetitive_bytes_are_compressed_and_come_back() {
        let canonical: Vec<u8> = (0..10_000_u32).flat_map(|i| (i % 7).to_le_bytes()).collect();
        let record = encode(&canonical);
        assert_eq!(record[0], LZ4);
        assert!(record.len() < canonical.len() / 4, "{} bytes", record.len());
        assert_eq!(decode(&record, canonical.len()).unwrap(), canonical);
    }

    #[test]
    fn incompressible_and_empty_bytes_are_stored_raw() {
        let random: Vec<u8> = (0..1_000_u32).map(|i| blake3::hash(&i.to_le_bytes()).as_bytes()[0]).collect();
        for canonical in [random, Vec::new()] {
            let record = encode(&canonical);
            assert_eq!(record[0], RAW);
            assert_eq!(record.len(), canonical.len() + 1);
            assert_eq!(decode(&record, canonical.len()).unwrap(), canonical);
        }
    }

    /// Golden records: the decoder must read these bytes forever, whatever
    /// the compressor in use writes today.
    #[test]
    fn golden_records_decode() {
        assert_eq!(decode(&[RAW, 1, 2, 3], 3).unwrap(), [1, 2, 3]);
        // 18 bytes: 3 literals and a 10-byte match at offset 3 (token 0x36),
        // then 5 literals (token 0x50).
        let record =
            [&[LZ4, 18, 0, 0, 0][..], &[0x36, b'a', b'b', b'c', 3, 0], &[0x50, b'b', b'c', b'a', b'b', b'c']]
                .concat();
        assert_eq!(decode(&record, 18).unwrap(), b"abcabcabcabcabcabc");
    }

    #[test]
    fn bad_records_are_typed_errors() {
        assert_eq!(decode(&[], 100), Err(AtRestError::Empty));
        assert_eq!(decode(&[7, 1, 2], 100), Err(AtRestError::UnknownEncoding(7)));
        assert_eq!(decode(&[LZ4, 1, 0], 100), Err(AtRestError::MissingLength));
        assert_eq!(
            decode(&[RAW, 1, 2, 3], 2),
            Err(AtRestError::TooLarge { declared_bytes: 3, max_bytes: 2 })
        );
        assert_eq!(
            decode(&[LZ4, 0, 0, 0, 1, 0], 1 << 30),
            Err(AtRestError::Implausible { declared_bytes: 1 << 24, body_bytes: 1 })
        );
        let mut record = encode(&[5_u8; 1_000]);
        assert_eq!(record[0], LZ4);
        record[1] = 0xE9; // declares 1,001 bytes
        record[2] = 0x03;
        assert!(matches!(
            decode(&record, 2_000),
            Err(AtRestError::Lz4(_) | AtRestError::LengthMismatch { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(record in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(canonical) = decode(&record, 1 << 20) {
                proptest::prop_assert!(canonical.len() <= (1 << 20));
            }
        }

        #[test]
        fn every_encoding_decodes_to_its_input(canonical in proptest::collection::vec(0_u8..4, 0..3_000)) {
            proptest::prop_assert_eq!(decode(&encode(&canonical), canonical.len()).unwrap(), canonical);
        }
    }
}
