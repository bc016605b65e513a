//! The one blocking client of a node's API (docs/API.md), for wallets,
//! tests, benchmarks and the testnet: every endpoint as a method returning
//! its type, the event stream as an iterator of typed events, the export
//! as a streamed download, and errors that tell a node that cannot be
//! reached from one that refused from an answer that is not the API's.
//! Plain http for a node on loopback, https (rustls) for one behind a
//! reverse proxy: with the public web's roots (webpki), or with only the
//! certificates of a private CA ([`Client::with_ca`]).

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use gridshare_ledger::Hash;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::tx::SignedTx;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::accounts::{Account, Meter, MeterReadings, Nonce, Offer, Offers, OffersQuery, SignedReading};
use crate::admin::{IsolateRequest, Isolated};
use crate::blocks::{Block, Equivocation, EvidenceList};
use crate::bounds::{EVENT_BYTES_MAX, RESPONSE_BYTES_MAX};
use crate::error::{ErrorBody, ErrorCode};
use crate::events::{Event, EventError, SseLine, SseParser, read_line_bounded};
use crate::intervals::{AccountBill, AccountTrade, Bills, Interval, SpanQuery, Trades};
use crate::proofs::{Proof, ProofTarget};
use crate::status::{GenesisError, GenesisResponse, Health, Status};
use crate::tariffs::TariffSchedule;
use crate::transactions::{Admitted, SubmitRequest, TransactionStatus};
use crate::zones::{ZoneFlows, Zones};

/// Where a node's API is when nothing else is said.
pub const DEFAULT_NODE_URL: &str = "http://127.0.0.1:8700";
/// The environment variable that names a node's API for the CLI.
pub const NODE_ENV: &str = "GRIDSHARE_NODE";
/// The environment variable that names a private CA's certificate (PEM)
/// for the CLI's https.
pub const CA_CERT_ENV: &str = "GRIDSHARE_CA_CERT";
/// How much of an answer that is not the API's is quoted in an error.
const QUOTE_CHARS_MAX: usize = 200;
/// Bytes copied at a time from an export.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

/// How long a client waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// To connect.
    pub connect: Duration,
    /// For a whole request and its answer (not for streams).
    pub request: Duration,
    /// For the next bytes of a stream (events, export): the node sends a
    /// keep-alive comment every 15 s on an idle event stream.
    pub stream_read: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            stream_read: Duration::from_secs(120),
        }
    }
}

/// What went wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{url}` is not a node address: {reason}")]
    BadUrl { url: String, reason: &'static str },
    /// No connection, or it broke: the node is down, or the address wrong.
    #[error("node not reachable at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("the node at {url} did not answer within {seconds} s: is it overloaded or stuck?")]
    Timeout { url: String, seconds: u64 },
    /// The node answered with an API error: it refused the request.
    #[error("{method} {path}: {message} ({code})")]
    Refused { method: &'static str, path: String, status: u16, code: ErrorCode, message: String },
    /// An answer that is not the API's: another server, an older node, or
    /// JSON that does not follow docs/API.md.
    #[error("the answer of {url} to {method} {path} (HTTP {status}) does not follow docs/API.md: {problem}")]
    BadResponse { url: String, method: &'static str, path: String, status: u16, problem: String },
    /// The node's genesis does not check out.
    #[error("the genesis of the node at {url}: {error}")]
    Genesis { url: String, error: GenesisError },
    #[error("writing what the node sent: {0}")]
    Write(std::io::Error),
    /// The TLS handshake failed: a certificate that does not check out (a
    /// node behind a private CA needs that CA), or no TLS at the address.
    /// Trying again does not help.
    #[error(
        "TLS with {url} failed: {cause} (for a node whose certificate a private CA signed, give that CA's certificate)"
    )]
    Tls { url: String, cause: String },
    /// A private CA's certificates that cannot be used.
    #[error("the CA certificates are not usable: {reason}")]
    BadCa { reason: String },
}

impl ClientError {
    /// The API error code, if the node refused with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether asking again later may succeed: the node was not reached,
    /// did not answer in time, or answered that it is busy or failing
    /// (429, 5xx). A refusal of the request itself is not.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } | ClientError::Timeout { .. } => true,
            ClientError::Refused { status, .. } | ClientError::BadResponse { status, .. } => {
                *status == 429 || *status >= 500
            }
            ClientError::BadUrl { .. }
            | ClientError::Genesis { .. }
            | ClientError::Write(_)
            | ClientError::Tls { .. }
            | ClientError::BadCa { .. } => false,
        }
    }

    /// The HTTP status, if the node answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } | ClientError::BadResponse { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What the node did with a submitted transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submission {
    /// 202: in the mempool, waiting for a block.
    Admitted { id: Hash },
    /// Not admitted: a rejection by the ledger's rules (422 `rejected`, with
    /// the rejection code as `reason`), a duplicate (409) or a full mempool
    /// (429). Malformed requests are errors, not submissions.
    Refused { status: u16, code: ErrorCode, reason: Option<String>, message: String },
}

impl Submission {
    /// Whether the node was too busy to take it (429: its mempool, a
    /// signer's or an interval's share of it is full, or its backlog too
    /// long): the same transaction may be taken later.
    pub fn is_busy(&self) -> bool {
        matches!(self, Submission::Refused { status: 429, .. })
    }

    /// The refusal as an error of the request, for a caller that asks again
    /// while `ClientError::is_transient`.
    pub fn refusal_error(&self) -> Option<ClientError> {
        match self {
            Submission::Admitted { .. } => None,
            Submission::Refused { status, code, message, .. } => Some(ClientError::Refused {
                method: "POST",
                path: "/v1/transactions".to_string(),
                status: *status,
                code: *code,
                message: message.clone(),
            }),
        }
    }

    /// The rejection code (`insufficient_funds`, ...), or the API code
    /// (`duplicate`, `mempool_full`) when there is none.
    pub fn refusal_code(&self) -> Option<&str> {
        match self {
            Submission::Admitted { .. } => None,
            Submission::Refused { code, reason, .. } => Some(reason.as_deref().unwrap_or(code.as_str())),
        }
    }
}

/// The community a node serves: its genesis, decoded and checked against
/// the hash and community id the node names.
#[derive(Clone, Debug)]
pub struct Community {
    pub genesis: Genesis,
    pub genesis_hash: Hash,
}

impl Community {
    pub fn currency(&self) -> &str {
        &self.genesis.currency
    }
}

/// An answer read whole: status, content type and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as JSON, for checks of what exactly the node sent.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// The methods the API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A node's API. Cheap to clone; [`Client::at`] points a clone at another
/// node, sharing connections.
#[derive(Clone, Debug)]
pub struct Client {
    url: String,
    agent: ureq::Agent,
    stream_agent: ureq::Agent,
    timeouts: Timeouts,
}

/// `http://HOST:PORT`, `https://HOST[:PORT][/PREFIX]` or `HOST:PORT` (http),
/// without a trailing slash.
fn normalize_url(url: &str) -> Result<String, ClientError> {
    let trimmed = url.trim();
    let bad = |reason| ClientError::BadUrl { url: url.to_string(), reason };
    let (scheme, rest) = if let Some(rest) = trimmed.strip_prefix("http://") {
        ("http", rest)
    } else if let Some(rest) = trimmed.strip_prefix("https://") {
        ("https", rest)
    } else if trimmed.contains("://") {
        return Err(bad("only http:// and https:// addresses are supported"));
    } else {
        ("http", trimmed)
    };
    let rest = rest.trim_end_matches('/');
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(bad("expected http://HOST:PORT or https://HOST[:PORT][/PATH]"));
    }
    Ok(format!("{scheme}://{rest}"))
}

fn agent(
    timeouts: &Timeouts,
    whole: Option<Duration>,
    per_read: Option<Duration>,
    roots: &ureq::tls::RootCerts,
) -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots.clone()).build())
        .http_status_as_error(false)
        .timeout_connect(Some(timeouts.connect))
        .timeout_global(whole)
        .timeout_per_read(per_read)
        // A node never redirects; a proxy that does is misconfigured.
        .max_redirects(0)
        .user_agent(concat!("gridshare/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

impl Client {
    /// A client of the node at `url` with the default timeouts. Nothing is
    /// sent yet.
    pub fn new(url: &str) -> Result<Client, ClientError> {
        Client::with_timeouts(url, Timeouts::default())
    }

    pub fn with_timeouts(url: &str, timeouts: Timeouts) -> Result<Client, ClientError> {
        Client::build(url, timeouts, &ureq::tls::RootCerts::WebPki)
    }

    /// A client that trusts only the certificates of `ca_pem` (PEM, one or
    /// more) for https: a node behind a reverse proxy whose certificate a
    /// private CA signed. Plain http is unaffected.
    pub fn with_ca(url: &str, timeouts: Timeouts, ca_pem: &[u8]) -> Result<Client, ClientError> {
        let mut certificates = Vec::new();
        for item in ureq::tls::parse_pem(ca_pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(certificate)) => certificates.push(certificate),
                Ok(_) => {}
                Err(error) => return Err(ClientError::BadCa { reason: error.to_string() }),
            }
        }
        if certificates.is_empty() {
            return Err(ClientError::BadCa { reason: "no PEM certificate (BEGIN CERTIFICATE) in it".into() });
        }
        Client::build(url, timeouts, &ureq::tls::RootCerts::new_with_certs(&certificates))
    }

    fn build(url: &str, timeouts: Timeouts, roots: &ureq::tls::RootCerts) -> Result<Client, ClientError> {
        Ok(Client {
            url: normalize_url(url)?,
            agent: agent(&timeouts, Some(timeouts.request), None, roots),
            stream_agent: agent(&timeouts, None, Some(timeouts.stream_read), roots),
            timeouts,
        })
    }

    /// The same client pointed at another node (its connections shared).
    pub fn at(&self, url: &str) -> Result<Client, ClientError> {
        Ok(Client { url: normalize_url(url)?, ..self.clone() })
    }

    /// `http://HOST:PORT` (or the https URL) of the node.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn transport(&self, error: ureq::Error, timeout: Duration) -> ClientError {
        let url = self.url.clone();
        match error {
            ureq::Error::Timeout(_) => ClientError::Timeout { url, seconds: timeout.as_secs() },
            // rustls reports a handshake that failed as invalid data.
            ureq::Error::Io(error)
                if error.kind() == std::io::ErrorKind::InvalidData
                    && error.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) =>
            {
                ClientError::Tls { url, cause: error.to_string() }
            }
            ureq::Error::Rustls(error) => ClientError::Tls { url, cause: error.to_string() },
            ureq::Error::Tls(cause) => ClientError::Tls { url, cause: cause.to_string() },
            ureq::Error::Io(error) => ClientError::Unreachable { url, cause: error.to_string() },
            ureq::Error::HostNotFound => ClientError::Unreachable { url, cause: "host not found".into() },
            ureq::Error::BadUri(_) => ClientError::BadUrl { url, reason: "not a valid URL" },
            other => ClientError::Unreachable { url, cause: other.to_string() },
        }
    }

    fn bad_response(&self, method: Method, path: &str, status: u16, problem: impl ToString) -> ClientError {
        ClientError::BadResponse {
            url: self.url.clone(),
            method: method.as_str(),
            path: path.to_string(),
            status,
            problem: problem.to_string(),
        }
    }

    /// Sends a request and reads the whole answer (at most
    /// `RESPONSE_BYTES_MAX`).
    fn exchange(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<RawResponse, ClientError> {
        let url = format!("{}{path}", self.url);
        let response = match method {
            Method::Get => {
                let mut request = self.agent.get(&url).header("accept", "application/json");
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            Method::Post => {
                let mut request = self.agent.post(&url).header("accept", "application/json");
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                if let Some(content_type) = content_type {
                    request = request.content_type(content_type);
                }
                request.send(body)
            }
        };
        let mut response = response.map_err(|error| self.transport(error, self.timeouts.request))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = match response.body_mut().with_config().limit(RESPONSE_BYTES_MAX).read_to_vec() {
            Ok(body) => body,
            Err(ureq::Error::BodyExceedsLimit(limit)) => {
                return Err(self.bad_response(
                    method,
                    path,
                    status,
                    format!("the answer is larger than {limit} bytes"),
                ));
            }
            Err(error) => return Err(self.transport(error, self.timeouts.request)),
        };
        Ok(RawResponse { status, content_type, body })
    }

    /// Any request, answered whole: for tests of what exactly a node says to
    /// malformed input, and for `/metrics`.
    pub fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<RawResponse, ClientError> {
        self.exchange(method, path, content_type, headers, body)
    }

    /// The error of a non-success answer: the API's, or one saying the
    /// answer is not the API's.
    fn error_of(&self, method: Method, path: &str, response: &RawResponse) -> ClientError {
        match serde_json::from_slice::<ErrorBody>(&response.body) {
            Ok(error) => ClientError::Refused {
                method: method.as_str(),
                path: path.to_string(),
                status: response.status,
                code: error.code,
                message: error.message,
            },
            Err(_) => self.bad_response(
                method,
                path,
                response.status,
                format!(
                    "no API error but {}: is it a gridshare-node that serves this API?",
                    quote(&response.body)
                ),
            ),
        }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        response: &RawResponse,
    ) -> Result<T, ClientError> {
        serde_json::from_slice(&response.body)
            .map_err(|error| self.bad_response(method, path, response.status, error))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.exchange(Method::Get, path, None, &[], b"")?;
        if !(200..300).contains(&response.status) {
            return Err(self.error_of(Method::Get, path, &response));
        }
        self.decode(Method::Get, path, &response)
    }

    /// A `GET` whose 404 with `unknown` means there is no such thing.
    fn get_optional<T: DeserializeOwned>(
        &self,
        path: &str,
        unknown: ErrorCode,
    ) -> Result<Option<T>, ClientError> {
        match self.get(path) {
            Ok(value) => Ok(Some(value)),
            Err(ClientError::Refused { code, .. }) if code == unknown => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let response = self.exchange(Method::Post, path, Some("application/json"), headers, &bytes)?;
        if !(200..300).contains(&response.status) {
            return Err(self.error_of(Method::Post, path, &response));
        }
        self.decode(Method::Post, path, &response)
    }

    /// `GET /v1/genesis` as the node sent it.
    pub fn genesis(&self) -> Result<GenesisResponse, ClientError> {
        self.get("/v1/genesis")
    }

    /// `GET /v1/genesis`: the community, its genesis decoded and checked
    /// against the hash the node names, so that what is signed is for the
    /// right community.
    pub fn community(&self) -> Result<Community, ClientError> {
        let response = self.genesis()?;
        let genesis =
            response.genesis().map_err(|error| ClientError::Genesis { url: self.url.clone(), error })?;
        Ok(Community { genesis, genesis_hash: response.summary.genesis_hash })
    }

    /// `GET /v1/status`.
    /// `GET /ready`: whether the node can serve its community's current
    /// state, and if not why (its 503 answer carries the same body).
    pub fn ready(&self) -> Result<Health, ClientError> {
        let response = self.exchange(Method::Get, "/ready", None, &[], b"")?;
        if response.status != 200 && response.status != 503 {
            return Err(self.error_of(Method::Get, "/ready", &response));
        }
        self.decode(Method::Get, "/ready", &response)
    }

    pub fn status(&self) -> Result<Status, ClientError> {
        self.get("/v1/status")
    }

    /// `POST /v1/transactions`: what the node did with `tx`. Refusals of the
    /// transaction (by the ledger's rules, a duplicate, a full mempool) are a
    /// [`Submission`]; a malformed request is an error.
    pub fn submit(&self, tx: &SignedTx) -> Result<Submission, ClientError> {
        self.submit_request(&SubmitRequest::of(tx))
    }

    /// `POST /v1/transactions` with hex as given, well-formed or not (a
    /// testnet's flood sends garbage on purpose).
    pub fn submit_hex(&self, transaction_hex: &str) -> Result<Submission, ClientError> {
        self.submit_request(&SubmitRequest { transaction_hex: transaction_hex.to_string() })
    }

    fn submit_request(&self, request: &SubmitRequest) -> Result<Submission, ClientError> {
        let path = "/v1/transactions";
        let bytes = serde_json::to_vec(request).unwrap_or_default();
        let response = self.exchange(Method::Post, path, Some("application/json"), &[], &bytes)?;
        if (200..300).contains(&response.status) {
            let admitted: Admitted = self.decode(Method::Post, path, &response)?;
            return Ok(Submission::Admitted { id: admitted.id });
        }
        if matches!(response.status, 409 | 422 | 429)
            && let Ok(error) = serde_json::from_slice::<ErrorBody>(&response.body)
        {
            return Ok(Submission::Refused {
                status: response.status,
                code: error.code,
                reason: error.reason,
                message: error.message,
            });
        }
        Err(self.error_of(Method::Post, path, &response))
    }

    /// `GET /v1/transactions/{id}`; `None` if the node knows no such
    /// transaction (never seen, or dropped from its mempool).
    pub fn transaction(&self, id: &Hash) -> Result<Option<TransactionStatus>, ClientError> {
        self.get_optional(&format!("/v1/transactions/{id}"), ErrorCode::UnknownTransaction)
    }

    /// `GET /v1/blocks/{height}`.
    pub fn block(&self, height: u64) -> Result<Block, ClientError> {
        self.get(&format!("/v1/blocks/{height}"))
    }

    /// `GET /v1/blocks/latest`.
    pub fn latest_block(&self) -> Result<Block, ClientError> {
        self.get("/v1/blocks/latest")
    }

    /// `GET /v1/accounts/{key}`; `None` if it is not registered.
    pub fn account(&self, key: &PublicKey) -> Result<Option<Account>, ClientError> {
        self.get_optional(&format!("/v1/accounts/{key}"), ErrorCode::UnknownAccount)
    }

    /// `GET /v1/nonces/{key}`: the highest nonce `key` has used; `None` if
    /// it is neither an account, a registrar nor a DSO.
    pub fn last_nonce(&self, key: &PublicKey) -> Result<Option<u64>, ClientError> {
        let nonce: Option<Nonce> = self.get_optional(&format!("/v1/nonces/{key}"), ErrorCode::UnknownKey)?;
        Ok(nonce.map(|nonce| nonce.last_nonce))
    }

    /// `GET /v1/meters/{key}`; `None` if it is not registered.
    pub fn meter(&self, key: &PublicKey) -> Result<Option<Meter>, ClientError> {
        self.get_optional(&format!("/v1/meters/{key}"), ErrorCode::UnknownMeter)
    }

    /// `GET /v1/meters/{key}/readings`: the meter's signed readings in a
    /// span of intervals (by default the latest ones).
    pub fn meter_readings(
        &self,
        key: &PublicKey,
        span: &SpanQuery,
    ) -> Result<Vec<SignedReading>, ClientError> {
        let path = format!("/v1/meters/{key}/readings{}", span.to_query_string());
        Ok(self.get::<MeterReadings>(&path)?.readings)
    }

    /// `GET /v1/offers`: open offers, optionally of one account and interval.
    pub fn offers(&self, query: &OffersQuery) -> Result<Vec<Offer>, ClientError> {
        Ok(self.get::<Offers>(&format!("/v1/offers{}", query.to_query_string()))?.offers)
    }

    /// `GET /v1/intervals/{n}`.
    pub fn interval(&self, interval: u64) -> Result<Interval, ClientError> {
        self.get(&format!("/v1/intervals/{interval}"))
    }

    /// `GET /v1/accounts/{key}/trades`: the account's trades in the cleared
    /// intervals of `span` (at most `INTERVAL_SPAN_MAX`), or of the node's
    /// default span.
    pub fn trades(&self, key: &PublicKey, span: &SpanQuery) -> Result<Vec<AccountTrade>, ClientError> {
        Ok(self.get::<Trades>(&format!("/v1/accounts/{key}/trades{}", span.to_query_string()))?.trades)
    }

    /// `GET /v1/accounts/{key}/bills`: the account's bills in the settled
    /// intervals of `span`.
    pub fn bills(&self, key: &PublicKey, span: &SpanQuery) -> Result<Vec<AccountBill>, ClientError> {
        Ok(self.get::<Bills>(&format!("/v1/accounts/{key}/bills{}", span.to_query_string()))?.bills)
    }

    /// `GET /v1/zones`: the zones, their meters and the DSO's limits to come.
    /// `GET /v1/tariffs`: the schedule and the intervals' own tariffs to come.
    pub fn tariffs(&self) -> Result<TariffSchedule, ClientError> {
        self.get("/v1/tariffs")
    }

    pub fn zones(&self) -> Result<Zones, ClientError> {
        self.get("/v1/zones")
    }

    /// `GET /v1/zones/{zone}`: the zone's flows in the intervals of `span`;
    /// `None` for a name that is none of the community's zones.
    pub fn zone_flows(&self, zone: &str, span: &SpanQuery) -> Result<Option<ZoneFlows>, ClientError> {
        let path = format!("/v1/zones/{}{}", crate::zones::path_segment(zone), span.to_query_string());
        self.get_optional(&path, ErrorCode::UnknownZone)
    }

    /// `GET /v1/proofs/...`.
    pub fn proof(&self, target: ProofTarget) -> Result<Proof, ClientError> {
        self.get(&target.path())
    }

    /// `GET /v1/evidence`.
    pub fn evidence(&self) -> Result<Vec<Equivocation>, ClientError> {
        Ok(self.get::<EvidenceList>("/v1/evidence")?.equivocations)
    }

    /// `POST /v1/admin/isolate` with the node's admin token: cuts the node
    /// off from its peers for `duration_ms`.
    pub fn isolate(&self, duration_ms: u64, admin_token: &str) -> Result<Isolated, ClientError> {
        let authorization = format!("Bearer {admin_token}");
        self.post("/v1/admin/isolate", &[("authorization", &authorization)], &IsolateRequest { duration_ms })
    }

    /// `GET /metrics`: Prometheus text.
    pub fn metrics(&self) -> Result<String, ClientError> {
        let path = "/metrics";
        let response = self.exchange(Method::Get, path, None, &[], b"")?;
        if response.status != 200 {
            return Err(self.error_of(Method::Get, path, &response));
        }
        String::from_utf8(response.body).map_err(|error| self.bad_response(Method::Get, path, 200, error))
    }

    /// Opens a streaming `GET` and checks its status.
    fn open_stream(&self, path: &str, accept: &str) -> Result<ureq::Body, ClientError> {
        let response = self
            .stream_agent
            .get(format!("{}{path}", self.url))
            .header("accept", accept)
            .call()
            .map_err(|error| self.transport(error, self.timeouts.stream_read))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        if !(200..300).contains(&status) {
            let body = body.with_config().limit(RESPONSE_BYTES_MAX).read_to_vec().unwrap_or_default();
            let response = RawResponse { status, content_type: String::new(), body };
            return Err(self.error_of(Method::Get, path, &response));
        }
        Ok(body)
    }

    /// `GET /v1/events`: the event stream, read as it comes.
    pub fn events(&self) -> Result<EventStream, ClientError> {
        let body = self.open_stream("/v1/events", "text/event-stream")?;
        Ok(EventStream::from_reader(body.into_reader(), &self.url))
    }

    /// `GET /v1/export`: copies the ledger's export into `out` as it comes;
    /// returns the number of bytes.
    pub fn export(&self, out: &mut impl Write) -> Result<u64, ClientError> {
        let mut reader = self.open_stream("/v1/export", "application/octet-stream")?.into_reader();
        let mut buffer = vec![0_u8; EXPORT_CHUNK_BYTES];
        let mut total: u64 = 0;
        loop {
            let read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(self.transport(ureq::Error::from(error), self.timeouts.stream_read)),
            };
            out.write_all(&buffer[..read]).map_err(ClientError::Write)?;
            total = total.saturating_add(u64::try_from(read).unwrap_or(u64::MAX));
        }
        out.flush().map_err(ClientError::Write)?;
        Ok(total)
    }

    /// `GET /v1/export` into a new file at `path`; returns the bytes written.
    pub fn export_to_file(&self, path: &Path) -> Result<u64, ClientError> {
        let file = std::fs::File::create(path).map_err(ClientError::Write)?;
        let mut out = std::io::BufWriter::new(file);
        self.export(&mut out)
    }
}

/// The start of an answer that is not the API's, for an error message.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "an empty body".to_string();
    }
    let mut quoted: String = text.chars().take(QUOTE_CHARS_MAX).collect();
    if text.chars().count() > QUOTE_CHARS_MAX {
        quoted.push('…');
    }
    format!("`{quoted}`")
}

/// Why an event stream yielded no event.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// One event was skipped; the stream goes on.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The stream broke off (or a line exceeded `EVENT_BYTES_MAX`); it ends.
    #[error("the event stream of {url} broke off: {cause}")]
    Broken { url: String, cause: String },
}

/// A node's event stream: an iterator of typed events, read incrementally
/// with every line and event bounded, so it runs for as long as wanted in
/// bounded memory. It ends (`None`) when the node closes the stream, after
/// a [`StreamError::Broken`]; events of names this version does not know
/// are skipped.
pub struct EventStream {
    reader: BufReader<Box<dyn Read + Send>>,
    parser: SseParser,
    line: Vec<u8>,
    url: String,
    ended: bool,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").field("url", &self.url).field("ended", &self.ended).finish()
    }
}

impl EventStream {
    /// The events of a stream read from `reader` (a node's, or a recorded
    /// one); `url` names it in errors.
    pub fn from_reader(reader: impl Read + Send + 'static, url: &str) -> EventStream {
        EventStream {
            reader: BufReader::new(Box::new(reader)),
            parser: SseParser::default(),
            line: Vec::new(),
            url: url.to_string(),
            ended: false,
        }
    }
}

impl Iterator for EventStream {
    type Item = Result<Event, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.ended {
            let more = match read_line_bounded(&mut self.reader, &mut self.line, EVENT_BYTES_MAX) {
                Ok(more) => more,
                Err(error) => {
                    self.ended = true;
                    return Some(Err(StreamError::Broken {
                        url: self.url.clone(),
                        cause: error.to_string(),
                    }));
                }
            };
            if !more {
                self.ended = true;
                return None;
            }
            let text = String::from_utf8_lossy(&self.line);
            match self.parser.line(&text) {
                SseLine::Pending => {}
                SseLine::Dropped { event } => return Some(Err(EventError::TooLarge { name: event }.into())),
                SseLine::Event(raw) => match Event::parse(&raw) {
                    Ok(Some(event)) => return Some(Ok(event)),
                    Ok(None) => {}
                    Err(error) => return Some(Err(error.into())),
                },
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = |text: &str| Client::new(text).map(|client| client.url().to_string());
        assert_eq!(url("http://127.0.0.1:8700/").unwrap(), "http://127.0.0.1:8700");
        assert_eq!(url("localhost:8701").unwrap(), "http://localhost:8701");
        assert_eq!(url("https://node.example/gridshare/").unwrap(), "https://node.example/gridshare");
        for bad in ["ftp://x", "http://", "https:///x", "", "http://a b"] {
            assert!(matches!(Client::new(bad), Err(ClientError::BadUrl { .. })), "{bad:?}");
        }
        let client = Client::new("http://127.0.0.1:1").unwrap();
        assert_eq!(client.at("127.0.0.1:2").unwrap().url(), "http://127.0.0.1:2");
    }

    #[test]
    fn an_unreachable_node_is_told_from_one_that_refused() {
        // Port 1 on loopback: nothing listens there.
        let client = Client::new("http://127.0.0.1:1").unwrap();
        let error = client.status().unwrap_err();
        assert!(matches!(error, ClientError::Unreachable { .. }), "{error:?}");
        assert!(error.to_string().starts_with("node not reachable at http://127.0.0.1:1: "), "{error}");
        assert_eq!(error.code(), None);
    }

    #[test]
    fn quotes_are_short() {
        assert_eq!(quote(b""), "an empty body");
        assert_eq!(quote(b" Not Found \n"), "`Not Found`");
        assert!(quote("x".repeat(500).as_bytes()).ends_with("…`"));
    }

    #[test]
    fn a_recorded_stream_yields_typed_events_and_skips_what_it_does_not_know() {
        let hash = "ab".repeat(32);
        let key = "cd".repeat(32);
        let stream = format!(
            ": keep-alive\n\nevent: block\ndata: {{\"height\":20,\"hash\":\"{hash}\",\"timestamp_ms\":1,\"transactions\":0}}\n\n\
             event: vote\ndata: {{}}\n\n\
             event: settlement\ndata: {{\"interval\":10,\"height\":31,\"bills\":[{{\"account\":\"{key}\"}}]}}\n\n\
             event: lagged\ndata: {{\"missed\":3}}\n\n"
        );
        let mut events = EventStream::from_reader(std::io::Cursor::new(stream.into_bytes()), "http://node");
        assert!(matches!(events.next(), Some(Ok(Event::Block(block))) if block.height == 20));
        assert!(matches!(events.next(), Some(Err(StreamError::Event(EventError::BadData { .. })))));
        assert!(matches!(events.next(), Some(Ok(Event::Lagged(lagged))) if lagged.missed == 3));
        assert!(events.next().is_none());
        assert!(events.next().is_none());
    }
}
