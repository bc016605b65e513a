//! The local HTTP API of docs/API.md (bound to 127.0.0.1 by default),
//! rendered from and parsed into the types of `gridshare-api`, the one
//! definition of the wire: JSON in and out, units in field names, money as
//! strings of nano-currency; errors are JSON with a machine code and a
//! message, and bad input always gets a 4xx. Every handler reads the node
//! through the [`Client`], so the event loop stays the only owner of the
//! state. One file per resource.

mod accounts;
mod admin;
mod blocks;
mod intervals;
mod metrics;
mod proofs;
mod status;
mod streams;
mod transactions;

use std::collections::BTreeMap;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gridshare_api::{ErrorBody, ErrorCode};
use gridshare_ledger::Hash;
use gridshare_ledger::ids::PublicKey;
use serde::Serialize;

pub use admin::AdminToken;
pub use gridshare_api::bounds::{
    INTERVAL_SPAN_DEFAULT, INTERVAL_SPAN_MAX, ISOLATION_MS_MAX, LIST_MAX, REQUEST_BYTES_MAX,
};

use crate::node::{Client, NodeGone, View};

/// What the router serves beyond the public API.
#[derive(Clone, Debug, Default)]
pub struct ApiOptions {
    /// Serve `POST /v1/admin/isolate` to requests bearing this token
    /// (`--enable-admin-api`); without it the route does not exist.
    pub admin_token: Option<AdminToken>,
}

pub fn router(client: Client, options: ApiOptions) -> Router {
    let metrics = client.metrics.clone();
    let mut router = Router::new()
        .route("/v1/genesis", get(status::genesis))
        .route("/v1/status", get(status::status))
        .route("/v1/transactions", post(transactions::submit))
        .route("/v1/transactions/{id}", get(transactions::transaction))
        .route("/v1/blocks/{height}", get(blocks::block))
        .route("/v1/evidence", get(blocks::evidence))
        .route("/v1/accounts/{key}", get(accounts::account))
        .route("/v1/accounts/{key}/trades", get(intervals::trades))
        .route("/v1/accounts/{key}/bills", get(intervals::bills))
        .route("/v1/nonces/{key}", get(accounts::nonce))
        .route("/v1/meters/{key}", get(accounts::meter))
        .route("/v1/offers", get(accounts::offers))
        .route("/v1/intervals/{interval}", get(intervals::interval))
        .route("/v1/proofs/transactions/{id}", get(proofs::prove_transaction))
        .route("/v1/proofs/clearings/{interval}", get(proofs::prove_clearing))
        .route("/v1/proofs/settlements/{interval}", get(proofs::prove_settlement))
        .route("/v1/events", get(streams::events))
        .route("/v1/export", get(streams::export))
        .route("/metrics", get(metrics::prometheus));
    if let Some(token) = options.admin_token {
        router = router.route("/v1/admin/isolate", admin::route(token));
    }
    router
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint: see docs/API.md") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "this endpoint takes another method")
        })
        .layer(axum::middleware::from_fn(move |request, next: axum::middleware::Next| {
            metrics.api_requests.inc();
            next.run(request)
        }))
        .layer(axum::extract::DefaultBodyLimit::max(REQUEST_BYTES_MAX))
        .with_state(client)
}

/// An error answer: its status and the `ErrorBody`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    /// An error with its code's status.
    fn new(code: ErrorCode, message: impl std::fmt::Display) -> ApiError {
        let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::with_status(status, code, message)
    }

    fn with_status(status: StatusCode, code: ErrorCode, message: impl std::fmt::Display) -> ApiError {
        ApiError { status, body: ErrorBody { code, reason: None, message: message.to_string() } }
    }
}

/// What a 429 or 503 asks the client to wait before it tries again, in
/// seconds: about four block times, after which a backlog has moved.
const RETRY_AFTER_S: u64 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if matches!(self.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, RETRY_AFTER_S.into());
        }
        response
    }
}

impl From<NodeGone> for ApiError {
    fn from(gone: NodeGone) -> ApiError {
        ApiError::new(ErrorCode::NodeUnavailable, gone)
    }
}

fn storage(problem: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Storage, problem)
}

/// A handler's result: an answer, or an error.
type Reply = Result<Response, ApiError>;

/// A 200 answer with `body` as JSON.
fn json(body: &impl Serialize) -> Reply {
    Ok(axum::Json(body).into_response())
}

/// Runs a read in the event loop; a read's own error is its response.
async fn read<T: Send + 'static>(
    client: &Client,
    read: impl FnOnce(View<'_>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    client.read(read).await?
}

/// A count for the wire.
fn count(items: usize) -> u64 {
    u64::try_from(items).unwrap_or(u64::MAX)
}

fn parse_key(text: &str) -> Result<PublicKey, ApiError> {
    text.parse()
        .map_err(|_| ApiError::new(ErrorCode::BadKey, format!("`{text}` is not a 64-digit hex public key")))
}

fn parse_hash(text: &str) -> Result<Hash, ApiError> {
    text.parse().map_err(|_| ApiError::new(ErrorCode::BadId, format!("`{text}` is not a 64-digit hex id")))
}

fn parse_u64(what: &str, text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(ErrorCode::BadNumber, format!("{what}: `{text}` is not a non-negative integer"))
    })
}

/// The query string's parameters; unknown ones are refused so that a typo
/// is not silently ignored.
fn query(raw: Option<String>, known: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut parameters = BTreeMap::new();
    for pair in raw.as_deref().unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !known.contains(&name) {
            return Err(ApiError::new(
                ErrorCode::BadQuery,
                format!("unknown parameter `{name}`; this endpoint takes {}", known.join(", ")),
            ));
        }
        parameters.insert(name.to_string(), value.to_string());
    }
    Ok(parameters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_to_come_back_later_says_when() {
        for (code, retry) in [
            (ErrorCode::Backlog, true),
            (ErrorCode::MempoolFull, true),
            (ErrorCode::NodeUnavailable, true),
            (ErrorCode::Rejected, false),
            (ErrorCode::BadJson, false),
        ] {
            let response = ApiError::new(code, "").into_response();
            let header = response.headers().get(axum::http::header::RETRY_AFTER);
            assert_eq!(header.and_then(|value| value.to_str().ok()), retry.then_some("1"), "{code}");
        }
    }
}
