//! A small blocking client of a node's HTTP API (docs/API.md) for the
//! testnet's agents, monitors and checks: JSON requests with short
//! timeouts (a paused node must not stall an agent), transaction
//! submission with the node's verdict, the event stream and the export.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::tx::SignedTx;
use serde_json::Value;

/// A JSON answer is at most this large (lists are at most 1,000 items).
const JSON_BYTES_MAX: u64 = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// An event stream or export that sends nothing for this long is given up.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no answer from the API.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: no answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error("{url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: the answer is not the JSON docs/API.md describes: {cause}")]
    BadAnswer { url: String, cause: String },
    #[error("writing {path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// What a node said to a submitted transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 202: admitted to its mempool, with the id it reported.
    Admitted(String),
    /// Any other status, with the error code and (for a rejection) the
    /// ledger's reason code.
    Refused { status: u16, code: String, reason: Option<String>, message: String },
}

/// A client with one timeout for every request.
#[derive(Clone, Debug)]
pub struct Api {
    agent: ureq::Agent,
    stream_agent: ureq::Agent,
    timeout: Duration,
}

impl Api {
    /// A client whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Api {
        let config = |global: Option<Duration>, per_read: Option<Duration>| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_global(global)
                .timeout_per_read(per_read)
                .max_redirects(0)
                .user_agent(concat!("gridshare-testnet/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Api {
            agent: config(Some(timeout), None).into(),
            stream_agent: config(None, Some(STREAM_READ_TIMEOUT)).into(),
            timeout,
        }
    }

    fn failure(&self, url: &str, error: ureq::Error) -> HttpError {
        match error {
            ureq::Error::Timeout(_) => {
                HttpError::Timeout { url: url.to_string(), seconds: self.timeout.as_secs() }
            }
            other => HttpError::Unreachable { url: url.to_string(), cause: other.to_string() },
        }
    }

    /// A request to `address` (`127.0.0.1:PORT`): the status and the JSON
    /// body (`Value::Null` for a body that is not JSON).
    pub fn request(
        &self,
        address: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), HttpError> {
        let url = format!("http://{address}{path}");
        let response = match (method, body) {
            ("POST", body) => {
                let text = body.map(Value::to_string).unwrap_or_default();
                self.agent.post(&url).content_type("application/json").send(text.as_bytes())
            }
            _ => self.agent.get(&url).call(),
        };
        let mut response = response.map_err(|error| self.failure(&url, error))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(JSON_BYTES_MAX)
            .read_to_vec()
            .map_err(|error| self.failure(&url, error))?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// `GET path`, which must answer 200 with JSON.
    pub fn get(&self, address: &str, path: &str) -> Result<Value, HttpError> {
        let (status, body) = self.request(address, "GET", path, None)?;
        if status != 200 {
            return Err(HttpError::Status {
                url: format!("http://{address}{path}"),
                status,
                body: body.to_string(),
            });
        }
        Ok(body)
    }

    /// `GET path` and one unsigned integer field of the answer.
    pub fn get_u64(&self, address: &str, path: &str, field: &str) -> Result<u64, HttpError> {
        let body = self.get(address, path)?;
        body[field].as_u64().ok_or_else(|| HttpError::BadAnswer {
            url: format!("http://{address}{path}"),
            cause: format!("no unsigned integer `{field}` in {body}"),
        })
    }

    /// `POST /v1/transactions` with raw hex, as a client would send it.
    pub fn submit_hex(&self, address: &str, transaction_hex: &str) -> Result<Verdict, HttpError> {
        let body = serde_json::json!({ "transaction_hex": transaction_hex });
        let (status, answer) = self.request(address, "POST", "/v1/transactions", Some(&body))?;
        if status == 202 {
            return match answer["id"].as_str() {
                Some(id) => Ok(Verdict::Admitted(id.to_string())),
                None => Err(HttpError::BadAnswer {
                    url: format!("http://{address}/v1/transactions"),
                    cause: format!("202 without an id: {answer}"),
                }),
            };
        }
        Ok(Verdict::Refused {
            status,
            code: answer["code"].as_str().unwrap_or("").to_string(),
            reason: answer["reason"].as_str().map(str::to_string),
            message: answer["message"].as_str().unwrap_or("").to_string(),
        })
    }

    /// Submits a signed transaction.
    pub fn submit(&self, address: &str, tx: &SignedTx) -> Result<Verdict, HttpError> {
        self.submit_hex(address, &hex::encode(to_bytes(tx)))
    }

    /// `GET /v1/events`: the server-sent event stream, line by line.
    pub fn events(&self, address: &str) -> Result<impl BufRead + use<>, HttpError> {
        let url = format!("http://{address}/v1/events");
        let response = self.stream_agent.get(&url).header("accept", "text/event-stream").call();
        let response = response.map_err(|error| self.failure(&url, error))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(HttpError::Status { url, status, body: String::new() });
        }
        Ok(BufReader::new(response.into_body().into_reader()))
    }

    /// `GET /v1/export` into `file`; returns the bytes written.
    pub fn download_export(&self, address: &str, file: &Path) -> Result<u64, HttpError> {
        let url = format!("http://{address}/v1/export");
        let response = self.stream_agent.get(&url).call().map_err(|error| self.failure(&url, error))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(HttpError::Status { url, status, body: String::new() });
        }
        let write = |error| HttpError::Write { path: file.display().to_string(), error };
        let mut out = std::io::BufWriter::new(std::fs::File::create(file).map_err(write)?);
        let mut reader = response.into_body().into_reader();
        let bytes = std::io::copy(&mut reader, &mut out)
            .map_err(|error| HttpError::Unreachable { url: url.clone(), cause: error.to_string() })?;
        out.flush().map_err(write)?;
        Ok(bytes)
    }
}
