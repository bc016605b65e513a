//! The API's text encodings for serde: money as a JSON string holding a
//! decimal integer of nano-currency (an `i128` on the ledger, which a JSON
//! number would round), keys, ids and hashes as 64 hex digits, and a zone's
//! limit with `null` for none.

use std::fmt::Display;
use std::str::FromStr;

use gridshare_ledger::ids::CommunityId;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

/// `#[serde(with = "nano")]`: money in nano-currency as a decimal string.
/// `#[serde(with = "limit_wh")]`: a zone's limit in Wh, `null` for no limit
/// (the ledger's `u64::MAX`, which a JSON number would round).
pub(crate) mod limit_wh {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        match *value {
            u64::MAX => serializer.serialize_none(),
            wh => serializer.serialize_some(&wh),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.unwrap_or(u64::MAX))
    }
}

pub(crate) mod nano {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(nano: &i128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(nano)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i128, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|_| {
            D::Error::custom(format!("`{text}` is not an amount of nano-currency (a decimal integer)"))
        })
    }
}

/// `#[serde(with = "hex")]`: a key, id or hash (anything shown as hex and
/// parsed back with `FromStr`) as 64 hex digits.
pub(crate) mod hex {
    use super::*;

    pub(crate) fn serialize<T: Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub(crate) fn deserialize<'de, T: FromStr, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(D::Error::custom)
    }

    pub(crate) fn parse<T: FromStr>(text: &str) -> Result<T, NotHex> {
        text.parse().map_err(|_| NotHex(text.to_string()))
    }

    /// Text where 64 hex digits belong.
    #[derive(Debug, thiserror::Error)]
    #[error("`{0}` is not 64 hex digits")]
    pub(crate) struct NotHex(pub(crate) String);
}

/// `#[serde(with = "hex_option")]`: an optional hash, `null` for none.
pub(crate) mod hex_option {
    use super::*;

    pub(crate) fn serialize<T: Display, S: Serializer>(
        value: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.collect_str(value),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, T: FromStr, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<T>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| hex::parse(&text).map_err(D::Error::custom))
            .transpose()
    }
}

/// `#[serde(with = "hex_list")]`: a list of keys.
pub(crate) mod hex_list {
    use serde::ser::SerializeSeq;

    use super::*;

    pub(crate) fn serialize<T: Display, S: Serializer>(
        values: &[T],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut sequence = serializer.serialize_seq(Some(values.len()))?;
        for value in values {
            sequence.serialize_element(&value.to_string())?;
        }
        sequence.end()
    }

    pub(crate) fn deserialize<'de, T: FromStr, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<T>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| hex::parse(text).map_err(D::Error::custom))
            .collect()
    }
}

/// `#[serde(with = "community_id")]`: a community id (the ledger's type
/// shows as hex but has no `FromStr`).
pub(crate) mod community_id {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(id: &CommunityId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<CommunityId, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut bytes = [0_u8; 32];
        ::hex::decode_to_slice(&text, &mut bytes)
            .map_err(|_| D::Error::custom(format!("`{text}` is not a 64-digit hex community id")))?;
        Ok(CommunityId(bytes))
    }
}
