//! The API's errors: `{"code": ..., "message": ...}` with a machine code,
//! and for a rejected transaction the ledger's rejection `reason`.

use serde::{Deserialize, Serialize};

/// Every machine code of an API error, with the HTTP status the node
/// answers it with. 4xx is the caller's doing, 5xx the node's own trouble.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON.
    BadJson,
    /// 400: JSON, but not the request the endpoint takes.
    BadRequest,
    /// 400: a `*_hex` field that is not hex.
    BadHex,
    /// 400: hex that does not decode as the canonical object.
    BadEncoding,
    /// 413 (or 400): the body could not be read, or is larger than
    /// `REQUEST_BYTES_MAX`.
    BadBody,
    /// 400: a path or query number that is not a non-negative integer.
    BadNumber,
    /// 400: a key that is not 64 hex digits.
    BadKey,
    /// 400: an id that is not 64 hex digits.
    BadId,
    /// 400: a query parameter the endpoint does not take.
    BadQuery,
    /// 400: a range of intervals backwards or longer than `INTERVAL_SPAN_MAX`.
    BadRange,
    /// 400: an interval beyond the market's time.
    BadInterval,
    /// 401: an admin request without the right bearer token.
    Unauthorized,
    /// 403: a request a web page of another site sent (its `Origin` is not
    /// the node's own).
    BadOrigin,
    /// 404: no such endpoint, or no block at that height.
    NotFound,
    /// 404: a transaction neither waiting nor in a block.
    UnknownTransaction,
    /// 404: a key that is not a registered account.
    UnknownAccount,
    /// 404: a key that is neither an account, a registrar nor a DSO.
    UnknownKey,
    /// 404: a key that is not a registered meter.
    UnknownMeter,
    /// 404: a name that is none of the community's zones.
    UnknownZone,
    /// 404: an interval that has not been cleared.
    NotCleared,
    /// 404: an interval that has not been settled.
    NotSettled,
    /// 405: the endpoint takes another method.
    MethodNotAllowed,
    /// 409: the transaction is already waiting.
    Duplicate,
    /// 415: a request whose body is not `application/json`.
    UnsupportedMediaType,
    /// 421: a `Host` header that names none of the node's names (a web page
    /// reaching a household's node through DNS rebinding).
    BadHost,
    /// 422: the ledger's rules refuse the transaction (`reason` says which).
    Rejected,
    /// 429: the mempool is full, for everyone or for this signer.
    MempoolFull,
    /// 429: the node cannot get what it admitted into blocks fast enough (a
    /// transaction submitted to it has waited too long, or would reach a
    /// block after its interval's gate): try again later.
    Backlog,
    /// 429: the node serves as many event streams and exports at once as it
    /// allows (`STREAMS_MAX`): try again later.
    Busy,
    /// 500: the node's storage failed.
    Storage,
    /// 503: the node is shutting down.
    NodeUnavailable,
}

impl ErrorCode {
    /// Every code, in declaration order: what tests of the codes and of
    /// docs/API.md walk through.
    pub const ALL: [ErrorCode; 31] = [
        ErrorCode::BadJson,
        ErrorCode::BadRequest,
        ErrorCode::BadHex,
        ErrorCode::BadEncoding,
        ErrorCode::BadBody,
        ErrorCode::BadNumber,
        ErrorCode::BadKey,
        ErrorCode::BadId,
        ErrorCode::BadQuery,
        ErrorCode::BadRange,
        ErrorCode::BadInterval,
        ErrorCode::Unauthorized,
        ErrorCode::BadOrigin,
        ErrorCode::NotFound,
        ErrorCode::UnknownTransaction,
        ErrorCode::UnknownAccount,
        ErrorCode::UnknownKey,
        ErrorCode::UnknownMeter,
        ErrorCode::UnknownZone,
        ErrorCode::NotCleared,
        ErrorCode::NotSettled,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Duplicate,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::BadHost,
        ErrorCode::Rejected,
        ErrorCode::MempoolFull,
        ErrorCode::Backlog,
        ErrorCode::Busy,
        ErrorCode::Storage,
        ErrorCode::NodeUnavailable,
    ];

    /// The machine code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadHex => "bad_hex",
            ErrorCode::BadEncoding => "bad_encoding",
            ErrorCode::BadBody => "bad_body",
            ErrorCode::BadNumber => "bad_number",
            ErrorCode::BadKey => "bad_key",
            ErrorCode::BadId => "bad_id",
            ErrorCode::BadQuery => "bad_query",
            ErrorCode::BadRange => "bad_range",
            ErrorCode::BadInterval => "bad_interval",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadOrigin => "bad_origin",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownTransaction => "unknown_transaction",
            ErrorCode::UnknownAccount => "unknown_account",
            ErrorCode::UnknownKey => "unknown_key",
            ErrorCode::UnknownMeter => "unknown_meter",
            ErrorCode::UnknownZone => "unknown_zone",
            ErrorCode::NotCleared => "not_cleared",
            ErrorCode::NotSettled => "not_settled",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Duplicate => "duplicate",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::BadHost => "bad_host",
            ErrorCode::Rejected => "rejected",
            ErrorCode::MempoolFull => "mempool_full",
            ErrorCode::Backlog => "backlog",
            ErrorCode::Busy => "busy",
            ErrorCode::Storage => "storage",
            ErrorCode::NodeUnavailable => "node_unavailable",
        }
    }

    /// The HTTP status the node answers with (`bad_body` is 413 for a body
    /// over the limit, 400 for one that could not be read).
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadJson
            | ErrorCode::BadRequest
            | ErrorCode::BadHex
            | ErrorCode::BadEncoding
            | ErrorCode::BadNumber
            | ErrorCode::BadKey
            | ErrorCode::BadId
            | ErrorCode::BadQuery
            | ErrorCode::BadRange
            | ErrorCode::BadInterval => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::BadOrigin => 403,
            ErrorCode::NotFound
            | ErrorCode::UnknownTransaction
            | ErrorCode::UnknownAccount
            | ErrorCode::UnknownKey
            | ErrorCode::UnknownMeter
            | ErrorCode::UnknownZone
            | ErrorCode::NotCleared
            | ErrorCode::NotSettled => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Duplicate => 409,
            ErrorCode::BadBody => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::BadHost => 421,
            ErrorCode::Rejected => 422,
            ErrorCode::MempoolFull | ErrorCode::Backlog | ErrorCode::Busy => 429,
            ErrorCode::Storage => 500,
            ErrorCode::NodeUnavailable => 503,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// The ledger's rejection code (docs/PROTOCOL.md), for `rejected` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What went wrong, in words.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code's name on the wire is the one `as_str` gives.
    #[test]
    fn codes_serialize_as_their_names() {
        let all = ErrorCode::ALL;
        for code in all {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert!((400..600).contains(&code.status()), "{code}");
        }
        assert!(serde_json::from_str::<ErrorCode>("\"no_such_code\"").is_err());
    }
}
