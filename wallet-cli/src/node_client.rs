//! A blocking client of a node's HTTP API (docs/API.md): typed requests and
//! answers, and typed errors that say what went wrong and what to do. Plain
//! HTTP only: a node serves its API on loopback.

use std::io::{Read, Write};
use std::time::Duration;

use gridshare_ledger::Hash;
use gridshare_ledger::encoding::{from_bytes, to_bytes};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::tx::SignedTx;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Where a node's API is when nothing else is said.
pub const DEFAULT_NODE_URL: &str = "http://127.0.0.1:8700";
/// The environment variable naming the node's API.
pub const NODE_ENV: &str = "GRIDSHARE_NODE";
/// Ranges of intervals in one request are at most this long (docs/API.md).
pub const INTERVAL_SPAN_MAX: u64 = 96;
/// The largest JSON answer read; lists are at most 1,000 items.
const JSON_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// How much of an unexpected answer is quoted in an error.
const QUOTE_CHARS_MAX: usize = 200;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request and answer; exports and event streams have no such limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A stream (events, export) that sends nothing for this long is given up.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// What went wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "node not reachable at {url}: {cause} (is gridshare-node running? start one with: gridshare-node run --dev)"
    )]
    Unreachable { url: String, cause: String },
    #[error("the node at {url} did not answer within {seconds} s: is it overloaded or stuck?")]
    Timeout { url: String, seconds: u64 },
    #[error("`{url}` is not a node address: {reason}")]
    BadUrl { url: String, reason: &'static str },
    /// The node refused the request with an API error.
    #[error("{method} {path}: {message} ({code})")]
    Api { method: &'static str, path: String, status: u16, code: String, message: String },
    /// An answer that is not the API's: another server, or an older node.
    #[error(
        "the node at {url} answered {method} {path} with HTTP {status} and no API error ({quote}): is it a gridshare-node that serves this API (docs/API.md)?"
    )]
    Unexpected { url: String, method: &'static str, path: String, status: u16, quote: String },
    #[error("the node's answer to {method} {path} does not follow docs/API.md: {message}")]
    BadAnswer { method: &'static str, path: String, message: String },
    #[error(
        "the node's genesis does not hash to the genesis hash it names ({claimed}): do not trust this node"
    )]
    GenesisMismatch { claimed: String },
    #[error("writing what the node sent: {0}")]
    Write(std::io::Error),
}

impl NodeError {
    /// The API error code, if the node answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            NodeError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the node said it does not know what was asked for.
    pub fn is_not_found(&self) -> bool {
        matches!(self, NodeError::Api { status: 404, .. })
    }
}

/// The JSON body of an API error.
#[derive(Debug, Deserialize)]
struct ApiErrorJson {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Money on the wire: a JSON string holding a decimal integer of
/// nano-currency (docs/API.md), an `i128` here.
pub mod nano_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(nano: &i128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&nano.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i128, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|_| serde::de::Error::custom(format!("`{text}` is not an amount of nano")))
    }
}

/// `GET /v1/genesis`.
#[derive(Debug, Clone, Deserialize)]
pub struct GenesisJson {
    pub community_id: String,
    pub genesis_hash: String,
    pub genesis_hex: String,
}

/// The community a node serves: its genesis, decoded and checked against
/// the hash the node names.
#[derive(Debug, Clone)]
pub struct Community {
    pub genesis: Genesis,
    pub genesis_hash: Hash,
}

impl Community {
    pub fn currency(&self) -> &str {
        &self.genesis.currency
    }
}

/// `GET /v1/status` (the fields the wallet uses).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusJson {
    pub height: u64,
    pub current_interval: u64,
    pub next_clearing_interval: u64,
    pub next_settlement_interval: u64,
}

/// A meter's cumulative registers at the end of an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadingJson {
    pub interval: u64,
    pub import_wh_total: u64,
    pub export_wh_total: u64,
}

/// `GET /v1/meters/{key}` and an account's meters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeterJson {
    pub meter: String,
    #[serde(default)]
    pub owner: Option<String>,
    pub max_import_w: u64,
    pub max_export_w: u64,
    #[serde(default)]
    pub zone: String,
    /// The interval the meter was registered in: it is billed from the
    /// next one on, every interval.
    pub registered_interval: u64,
    pub last_reading: Option<ReadingJson>,
}

/// `GET /v1/accounts/{key}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountJson {
    pub account: String,
    pub currency: String,
    #[serde(with = "nano_string")]
    pub balance_nano: i128,
    #[serde(with = "nano_string")]
    pub reserved_nano: i128,
    #[serde(with = "nano_string")]
    pub credit_limit_nano: i128,
    #[serde(with = "nano_string")]
    pub available_nano: i128,
    pub open_offers: u64,
    pub last_nonce: u64,
    #[serde(default)]
    pub meters: Vec<MeterJson>,
}

/// `GET /v1/nonces/{key}`.
#[derive(Debug, Clone, Deserialize)]
struct NonceJson {
    last_nonce: u64,
}

/// One open offer of `GET /v1/offers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfferJson {
    pub id: String,
    pub account: String,
    pub interval: u64,
    pub side: String,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
    #[serde(with = "nano_string")]
    pub reserved_nano: i128,
}

#[derive(Debug, Deserialize)]
struct OffersJson {
    offers: Vec<OfferJson>,
}

/// One offer of an interval's book.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BookEntryJson {
    pub id: String,
    pub account: String,
    pub side: String,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
}

/// One trade of a clearing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TradeReceiptJson {
    pub buy_offer: String,
    pub sell_offer: String,
    pub buyer: String,
    pub seller: String,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
}

/// An interval's clearing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClearingJson {
    pub height: u64,
    pub mechanism: String,
    pub k_thousandths: u64,
    pub network_fee_micro_per_kwh: u64,
    pub offers: u64,
    pub clearing_price_micro_per_kwh: Option<u64>,
    pub volume_wh: u64,
    #[serde(default)]
    pub trades: Vec<TradeReceiptJson>,
}

/// Tariffs in force for an interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TariffsJson {
    pub grid_import_micro_per_kwh: u64,
    pub grid_feed_in_micro_per_kwh: u64,
    pub network_fee_micro_per_kwh: u64,
}

/// An interval's settlement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettlementJson {
    pub height: u64,
    pub bills: u64,
    pub tariffs: TariffsJson,
}

/// `GET /v1/intervals/{n}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntervalJson {
    pub interval: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    pub gate_closure_ms: u64,
    pub settlement_ms: u64,
    pub status: String,
    #[serde(default)]
    pub book: Vec<BookEntryJson>,
    pub clearing: Option<ClearingJson>,
    pub settlement: Option<SettlementJson>,
}

/// One of an account's trades.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TradeJson {
    pub interval: u64,
    pub height: u64,
    pub side: String,
    pub offer: String,
    pub counterparty: String,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
    #[serde(with = "nano_string")]
    pub amount_nano: i128,
}

#[derive(Debug, Deserialize)]
struct TradesJson {
    trades: Vec<TradeJson>,
}

/// One of an account's itemised bills.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillJson {
    pub interval: u64,
    pub height: u64,
    pub sold_wh: u64,
    pub bought_wh: u64,
    #[serde(with = "nano_string")]
    pub sold_nano: i128,
    #[serde(with = "nano_string")]
    pub bought_nano: i128,
    #[serde(with = "nano_string")]
    pub fees_nano: i128,
    pub metered_net_export_wh: i64,
    pub deviation_wh: i64,
    pub grid_import_wh: u64,
    #[serde(with = "nano_string")]
    pub grid_import_nano: i128,
    pub feed_in_wh: u64,
    #[serde(with = "nano_string")]
    pub feed_in_nano: i128,
    #[serde(with = "nano_string")]
    pub total_nano: i128,
    /// The part of the metered net export estimated at the meters' import
    /// capacity, for intervals without the readings to measure them.
    pub estimated_import_wh: u64,
    /// Energy estimated earlier that a later reading showed was not
    /// imported, and the grid's refund for it.
    pub estimate_refund_wh: u64,
    #[serde(with = "nano_string")]
    pub estimate_refund_nano: i128,
}

#[derive(Debug, Deserialize)]
struct BillsJson {
    bills: Vec<BillJson>,
}

/// A proof that an item is in a certified block (docs/API.md, Proofs).
#[derive(Debug, Clone, Deserialize)]
pub struct ProofJson {
    pub height: u64,
    pub index: u64,
    pub header_hex: String,
    pub certificate_hex: String,
    pub item_hex: String,
    pub proof_hex: String,
}

/// What a proof is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofTarget {
    Transaction(Hash),
    Clearing(u64),
    Settlement(u64),
}

/// What the node did with a submitted transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// In the mempool, waiting for a block.
    Admitted { id: String },
    /// Not admitted: a rejection by the ledger's rules (422), a duplicate
    /// (409) or a full mempool (429).
    Refused { status: u16, code: String, reason: Option<String>, message: String },
}

impl Submission {
    /// The rejection code (`insufficient_funds`, ...), or the API code
    /// (`duplicate`, `mempool_full`) when there is none.
    pub fn refusal_code(&self) -> Option<&str> {
        match self {
            Submission::Admitted { .. } => None,
            Submission::Refused { code, reason, .. } => Some(reason.as_deref().unwrap_or(code)),
        }
    }
}

/// A node's API.
#[derive(Debug, Clone)]
pub struct NodeClient {
    url: String,
    agent: ureq::Agent,
    stream_agent: ureq::Agent,
}

impl NodeClient {
    /// A client of the node at `url` (`http://HOST:PORT`; `HOST:PORT` alone
    /// means http). Nothing is sent yet.
    pub fn new(url: &str) -> Result<NodeClient, NodeError> {
        let trimmed = url.trim();
        let bad = |reason| NodeError::BadUrl { url: url.to_string(), reason };
        let rest = if let Some(rest) = trimmed.strip_prefix("http://") {
            rest
        } else if trimmed.starts_with("https://") {
            return Err(bad(
                "https is not supported: a node serves its API on loopback, use http://127.0.0.1:PORT (or an SSH tunnel)",
            ));
        } else if trimmed.contains("://") {
            return Err(bad("only http:// addresses are supported"));
        } else {
            trimmed
        };
        let address = rest.trim_end_matches('/');
        if address.is_empty() {
            return Err(bad("expected http://HOST:PORT"));
        }
        let url = format!("http://{address}");
        let config = |timeout: Option<Duration>, per_read: Option<Duration>| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_global(timeout)
                .timeout_per_read(per_read)
                .max_redirects(0)
                .user_agent(concat!("gridshare/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Ok(NodeClient {
            url,
            agent: config(Some(REQUEST_TIMEOUT), None).into(),
            stream_agent: config(None, Some(STREAM_READ_TIMEOUT)).into(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn transport(&self, error: ureq::Error, seconds: u64) -> NodeError {
        match error {
            ureq::Error::Timeout(_) => NodeError::Timeout { url: self.url.clone(), seconds },
            ureq::Error::Io(error) => {
                NodeError::Unreachable { url: self.url.clone(), cause: error.to_string() }
            }
            ureq::Error::HostNotFound => {
                NodeError::Unreachable { url: self.url.clone(), cause: "host not found".into() }
            }
            ureq::Error::BadUri(_) => NodeError::BadUrl { url: self.url.clone(), reason: "not a valid URL" },
            other => NodeError::Unreachable { url: self.url.clone(), cause: other.to_string() },
        }
    }

    /// Sends a request (a POST with `body`, else a GET) and reads the whole
    /// answer: the status and the body.
    fn exchange(&self, path: &str, body: Option<&serde_json::Value>) -> Result<(u16, Vec<u8>), NodeError> {
        let url = format!("{}{path}", self.url);
        let seconds = REQUEST_TIMEOUT.as_secs();
        let response = match body {
            None => self.agent.get(&url).header("accept", "application/json").call(),
            Some(body) => self
                .agent
                .post(&url)
                .header("accept", "application/json")
                .content_type("application/json")
                .send(body.to_string().as_bytes()),
        };
        let mut response = response.map_err(|error| self.transport(error, seconds))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(JSON_BYTES_MAX)
            .read_to_vec()
            .map_err(|error| self.transport(error, seconds))?;
        Ok((status, bytes))
    }

    /// The error for a non-success answer: the API's, or a quote of what came.
    fn error_of(&self, method: &'static str, path: &str, status: u16, bytes: &[u8]) -> NodeError {
        match serde_json::from_slice::<ApiErrorJson>(bytes) {
            Ok(error) => NodeError::Api {
                method,
                path: path.to_string(),
                status,
                code: error.code,
                message: error.message,
            },
            Err(_) => NodeError::Unexpected {
                url: self.url.clone(),
                method,
                path: path.to_string(),
                status,
                quote: quote(bytes),
            },
        }
    }

    fn decode<T: DeserializeOwned>(method: &'static str, path: &str, bytes: &[u8]) -> Result<T, NodeError> {
        serde_json::from_slice(bytes).map_err(|error| NodeError::BadAnswer {
            method,
            path: path.to_string(),
            message: error.to_string(),
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, NodeError> {
        let (status, bytes) = self.exchange(path, None)?;
        if !(200..300).contains(&status) {
            return Err(self.error_of("GET", path, status, &bytes));
        }
        Self::decode("GET", path, &bytes)
    }

    /// `GET /v1/genesis`: the community, with its genesis decoded and its
    /// hash checked, so that what is signed is for the right community.
    pub fn community(&self) -> Result<Community, NodeError> {
        let path = "/v1/genesis";
        let json: GenesisJson = self.get(path)?;
        let bad = |message: String| NodeError::BadAnswer { method: "GET", path: path.into(), message };
        let bytes = hex::decode(&json.genesis_hex).map_err(|error| bad(format!("genesis_hex: {error}")))?;
        let genesis: Genesis = from_bytes(&bytes).map_err(|error| bad(format!("genesis_hex: {error}")))?;
        let claimed: Hash = json.genesis_hash.parse().map_err(|error: String| bad(error))?;
        if genesis.hash() != claimed {
            return Err(NodeError::GenesisMismatch { claimed: json.genesis_hash });
        }
        if genesis.community_id.to_string() != json.community_id {
            return Err(bad(format!(
                "community_id {} is not the genesis's {}",
                json.community_id, genesis.community_id
            )));
        }
        genesis.validate().map_err(|error| bad(error.to_string()))?;
        Ok(Community { genesis, genesis_hash: claimed })
    }

    pub fn status(&self) -> Result<StatusJson, NodeError> {
        self.get("/v1/status")
    }

    /// The highest nonce `key` has used, `None` if the node knows no such
    /// account or registrar.
    pub fn last_nonce(&self, key: &PublicKey) -> Result<Option<u64>, NodeError> {
        match self.get::<NonceJson>(&format!("/v1/nonces/{key}")) {
            Ok(json) => Ok(Some(json.last_nonce)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// An account, `None` if it is not registered.
    pub fn account(&self, key: &PublicKey) -> Result<Option<AccountJson>, NodeError> {
        match self.get(&format!("/v1/accounts/{key}")) {
            Ok(json) => Ok(Some(json)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// A meter, `None` if it is not registered.
    pub fn meter(&self, key: &PublicKey) -> Result<Option<MeterJson>, NodeError> {
        match self.get(&format!("/v1/meters/{key}")) {
            Ok(json) => Ok(Some(json)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Open offers, optionally of one account and one interval.
    pub fn offers(
        &self,
        account: Option<&PublicKey>,
        interval: Option<u64>,
    ) -> Result<Vec<OfferJson>, NodeError> {
        let mut query = Vec::new();
        if let Some(account) = account {
            query.push(format!("account={account}"));
        }
        if let Some(interval) = interval {
            query.push(format!("interval={interval}"));
        }
        let path = if query.is_empty() {
            "/v1/offers".to_string()
        } else {
            format!("/v1/offers?{}", query.join("&"))
        };
        Ok(self.get::<OffersJson>(&path)?.offers)
    }

    pub fn interval(&self, interval: u64) -> Result<IntervalJson, NodeError> {
        self.get(&format!("/v1/intervals/{interval}"))
    }

    fn range_query(range: Option<(u64, u64)>) -> String {
        match range {
            Some((from, to)) => format!("?from_interval={from}&to_interval={to}"),
            None => String::new(),
        }
    }

    /// An account's trades in cleared intervals `from..=to` (at most
    /// `INTERVAL_SPAN_MAX` of them), or in the node's default range.
    pub fn trades(&self, key: &PublicKey, range: Option<(u64, u64)>) -> Result<Vec<TradeJson>, NodeError> {
        Ok(self.get::<TradesJson>(&format!("/v1/accounts/{key}/trades{}", Self::range_query(range)))?.trades)
    }

    /// An account's bills in settled intervals `from..=to` (at most
    /// `INTERVAL_SPAN_MAX` of them), or in the node's default range.
    pub fn bills(&self, key: &PublicKey, range: Option<(u64, u64)>) -> Result<Vec<BillJson>, NodeError> {
        Ok(self.get::<BillsJson>(&format!("/v1/accounts/{key}/bills{}", Self::range_query(range)))?.bills)
    }

    pub fn proof(&self, target: ProofTarget) -> Result<ProofJson, NodeError> {
        let path = match target {
            ProofTarget::Transaction(id) => format!("/v1/proofs/transactions/{id}"),
            ProofTarget::Clearing(interval) => format!("/v1/proofs/clearings/{interval}"),
            ProofTarget::Settlement(interval) => format!("/v1/proofs/settlements/{interval}"),
        };
        self.get(&path)
    }

    /// `POST /v1/transactions`: what the node did with `tx`. Refusals by the
    /// ledger's rules are a `Submission`, not an error.
    pub fn submit(&self, tx: &SignedTx) -> Result<Submission, NodeError> {
        let path = "/v1/transactions";
        let body = serde_json::json!({ "transaction_hex": hex::encode(to_bytes(tx)) });
        let (status, bytes) = self.exchange(path, Some(&body))?;
        if (200..300).contains(&status) {
            #[derive(Deserialize)]
            struct Admitted {
                id: String,
            }
            let admitted: Admitted = Self::decode("POST", path, &bytes)?;
            return Ok(Submission::Admitted { id: admitted.id });
        }
        if matches!(status, 409 | 422 | 429)
            && let Ok(error) = serde_json::from_slice::<ApiErrorJson>(&bytes)
        {
            return Ok(Submission::Refused {
                status,
                code: error.code,
                reason: error.reason,
                message: error.message,
            });
        }
        Err(self.error_of("POST", path, status, &bytes))
    }

    /// Opens a streaming `GET` and checks its status.
    fn open_stream(&self, path: &str, accept: &str) -> Result<ureq::Body, NodeError> {
        let response = self
            .stream_agent
            .get(format!("{}{path}", self.url))
            .header("accept", accept)
            .call()
            .map_err(|error| self.transport(error, STREAM_READ_TIMEOUT.as_secs()))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        if !(200..300).contains(&status) {
            let bytes = body.with_config().limit(JSON_BYTES_MAX).read_to_vec().unwrap_or_default();
            return Err(self.error_of("GET", path, status, &bytes));
        }
        Ok(body)
    }

    /// `GET /v1/events`: the server-sent event stream, to be read
    /// incrementally (`crate::watch`).
    pub fn events(&self) -> Result<ureq::BodyReader<'static>, NodeError> {
        Ok(self.open_stream("/v1/events", "text/event-stream")?.into_reader())
    }

    /// `GET /v1/export`: copies the ledger's export into `out`; returns the
    /// number of bytes.
    pub fn export(&self, out: &mut impl Write) -> Result<u64, NodeError> {
        let mut reader = self.open_stream("/v1/export", "application/octet-stream")?.into_reader();
        let mut buffer = vec![0_u8; 64 * 1024];
        let mut total: u64 = 0;
        loop {
            let read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    let error = ureq::Error::from(error);
                    return Err(self.transport(error, STREAM_READ_TIMEOUT.as_secs()));
                }
            };
            out.write_all(&buffer[..read]).map_err(NodeError::Write)?;
            total += u64::try_from(read).unwrap_or(u64::MAX);
        }
        out.flush().map_err(NodeError::Write)?;
        Ok(total)
    }
}

/// The start of an unexpected body, for an error message.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "empty body".to_string();
    }
    let mut quoted: String = text.chars().take(QUOTE_CHARS_MAX).collect();
    if text.chars().count() > QUOTE_CHARS_MAX {
        quoted.push('…');
    }
    format!("`{quoted}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(NodeClient::new("http://127.0.0.1:8700/").unwrap().url(), "http://127.0.0.1:8700");
        assert_eq!(NodeClient::new("localhost:8701").unwrap().url(), "http://localhost:8701");
        for bad in ["https://node.example", "ftp://x", "http://", ""] {
            assert!(matches!(NodeClient::new(bad), Err(NodeError::BadUrl { .. })), "{bad:?}");
        }
    }

    #[test]
    fn an_unreachable_node_says_what_to_do() {
        // Port 1 on loopback: nothing listens there.
        let client = NodeClient::new("http://127.0.0.1:1").unwrap();
        let error = client.status().unwrap_err();
        assert!(matches!(error, NodeError::Unreachable { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.starts_with("node not reachable at http://127.0.0.1:1: "), "{message}");
        assert!(message.ends_with("start one with: gridshare-node run --dev)"), "{message}");
    }

    #[test]
    fn money_is_a_decimal_string() {
        let json = r#"{"interval":3,"height":9,"side":"buy","offer":"a","counterparty":"b","energy_wh":1000,
            "price_micro_per_kwh":175000,"amount_nano":"-170141183460469231731687303715884105728"}"#;
        let trade: TradeJson = serde_json::from_str(json).unwrap();
        assert_eq!(trade.amount_nano, i128::MIN);
        assert!(
            serde_json::to_string(&trade)
                .unwrap()
                .contains(r#""amount_nano":"-170141183460469231731687303715884105728""#)
        );
        let number = json.replace(r#""-170141183460469231731687303715884105728""#, "12");
        assert!(serde_json::from_str::<TradeJson>(&number).is_err());
    }

    #[test]
    fn quotes_are_short() {
        assert_eq!(quote(b""), "empty body");
        assert_eq!(quote(b" Not Found \n"), "`Not Found`");
        assert!(quote("x".repeat(500).as_bytes()).ends_with("…`"));
    }
}
