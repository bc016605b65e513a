//! Canonical bytes: borsh, decoded strictly, and the domain-separated
//! messages that are signed or hashed (docs/PROTOCOL.md §2).
//!
//! Every signed or hashed object is `tag length (u8) ‖ tag ‖ community id (32
//! bytes) ‖ protocol version (u16, little endian) ‖ borsh(object)`, so that no
//! signature or hash can be replayed across object types, communities or
//! protocol versions.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::Hash;
use crate::ids::CommunityId;

/// The version in every domain-separated message. Bumped on any change of
/// the bytes of an object or of the rules: version 2 added the meters'
/// physics bound, estimated settlement and the bounds that keep clearing
/// and settlement inside their integers (docs/PROTOCOL.md §5); version 3
/// bounds each block's clearing and settlement work and transaction bytes,
/// so that every block fits in `BLOCK_BYTES_MAX`; version 4 lets tariffs
/// change only for an interval still open for offers and bounds the tariff
/// schedule (`TARIFF_SCHEDULE_MAX`).
pub const PROTOCOL_VERSION: u16 = 5;

/// What a domain-separated message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    Genesis,
    /// The bytes an account or registrar signs.
    Transaction,
    /// A transaction's id (and an offer's id): the hash of the unsigned body.
    TransactionId,
    /// The bytes a meter signs.
    MeterReading,
    BlockHeader,
    /// The bytes a validator signs.
    Vote,
    State,
    /// A validator's proposal of a block for a height and round.
    Proposal,
    /// The proposer's signature at the end of a streamed block.
    StreamedBlock,
}

impl Domain {
    pub fn tag(self) -> &'static str {
        match self {
            Domain::Genesis => "gridshare/genesis",
            Domain::Transaction => "gridshare/transaction",
            Domain::TransactionId => "gridshare/transaction-id",
            Domain::MeterReading => "gridshare/meter-reading",
            Domain::BlockHeader => "gridshare/block-header",
            Domain::Vote => "gridshare/vote",
            Domain::State => "gridshare/state",
            Domain::Proposal => "gridshare/proposal",
            Domain::StreamedBlock => "gridshare/streamed-block",
        }
    }
}

/// Canonical bytes of `value`.
pub fn to_bytes<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("serializing into a Vec cannot fail")
}

/// Decodes exactly one `T` from all of `bytes`: trailing bytes, unknown enum
/// tags, booleans other than 0 and 1 and invalid UTF-8 are errors.
pub fn from_bytes<T: BorshDeserialize>(bytes: &[u8]) -> Result<T, DecodeError> {
    borsh::from_slice(bytes)
        .map_err(|error| DecodeError { type_name: std::any::type_name::<T>(), message: error.to_string() })
}

/// Bytes that are not a canonical encoding of the expected type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {type_name}: {message}")]
pub struct DecodeError {
    pub type_name: &'static str,
    pub message: String,
}

/// The domain-separated message for `value`.
pub fn domain_bytes<T: BorshSerialize>(domain: Domain, community: &CommunityId, value: &T) -> Vec<u8> {
    let tag = domain.tag().as_bytes();
    let mut bytes = Vec::with_capacity(1 + tag.len() + 32 + 2 + 64);
    bytes.push(u8::try_from(tag.len()).expect("tags are short"));
    bytes.extend_from_slice(tag);
    bytes.extend_from_slice(&community.0);
    bytes.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    value.serialize(&mut bytes).expect("serializing into a Vec cannot fail");
    bytes
}

/// blake3 of the domain-separated message for `value`.
pub fn domain_hash<T: BorshSerialize>(domain: Domain, community: &CommunityId, value: &T) -> Hash {
    Hash::of(&domain_bytes(domain, community, value))
}
