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
mod dashboard;
mod intervals;
mod metrics;
mod proofs;
pub mod serve;
mod status;
mod streams;
mod tariffs;
mod transactions;
mod zones;

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
    /// Host names answered besides IP addresses and `localhost`.
    pub api_hosts: Vec<String>,
}

/// Whether a request's `Host` header names this node: an IP address, with
/// or without a port (no page can rebind a literal address), `localhost`,
/// or one of `names` (compared without case or port). A request without
/// one is refused too.
fn host_allowed(host: Option<&str>, names: &[String]) -> bool {
    let Some(host) = host else { return false };
    let name = match host.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8700`.
        Some(rest) => {
            return rest.split_once(']').is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host
            .rsplit_once(':')
            .filter(|(_, port)| port.parse::<u16>().is_ok())
            .map_or(host, |(name, _)| name),
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
}

/// Why a request is refused before any endpoint sees it, if it is: a `Host`
/// that does not name this node (421, DNS rebinding), an `Origin` that is
/// not the node's own (403, a page of another site), or a POST whose body
/// is not JSON (415, a form or `text/plain` fetch a browser sends without
/// asking). Clients that are not browsers send no `Origin`.
fn refusal(request: &axum::extract::Request, names: &[String]) -> Option<ApiError> {
    let headers = request.headers();
    let text = |name| headers.get(name).and_then(|value: &axum::http::HeaderValue| value.to_str().ok());
    // HTTP/1.1's Host, or HTTP/2's authority.
    let host = text(axum::http::header::HOST)
        .or_else(|| request.uri().authority().map(|authority| authority.as_str()));
    if !host_allowed(host, names) {
        return Some(ApiError::new(ErrorCode::BadHost, "this node answers only its own host names"));
    }
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let origin = origin.to_str().ok().and_then(|origin| origin.split_once("://")).map(|(_, rest)| rest);
        let same = origin.is_some_and(|origin| {
            host.is_some_and(|host| origin.eq_ignore_ascii_case(host))
                || names
                    .iter()
                    .any(|name| origin.split(':').next().is_some_and(|site| site.eq_ignore_ascii_case(name)))
        });
        if !same {
            return Some(ApiError::new(ErrorCode::BadOrigin, "this node answers only its own pages"));
        }
    }
    if cross_site_fetch(request) {
        return Some(ApiError::new(
            ErrorCode::BadOrigin,
            "this node answers another site's pages only with a link to its dashboard",
        ));
    }
    if request.method() == axum::http::Method::POST {
        let json = text(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Some(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "a POST body must be `Content-Type: application/json`",
            ));
        }
    }
    None
}

/// The paths whose answer reads the whole ledger (or streams it): not for
/// another site to start, even with a link.
const LEDGER_READING_PATHS: [&str; 3] = ["/regulator/audit", "/regulator/report", "/v1/export"];

/// Whether a browser sent this for a page of another site (its
/// `Sec-Fetch-Site` is `cross-site` or `same-site`) as anything but a link
/// the user followed to one of the dashboard's pages: an image, a script, a
/// frame, a `no-cors` fetch, which send no `Origin` and would otherwise
/// make the node read blocks or hold a stream for that page. Requests
/// without the header (the CLI, older browsers) are not this.
fn cross_site_fetch(request: &axum::extract::Request) -> bool {
    let header = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok());
    match header("sec-fetch-site") {
        None | Some("same-origin" | "none") => false,
        Some(_) => {
            let followed_link = header("sec-fetch-mode") == Some("navigate")
                && header("sec-fetch-dest") == Some("document")
                && request.method() == axum::http::Method::GET;
            !followed_link || LEDGER_READING_PATHS.contains(&request.uri().path())
        }
    }
}

pub fn router(client: Client, options: ApiOptions) -> Router {
    let metrics = client.metrics.clone();
    let api_hosts = std::sync::Arc::new(options.api_hosts);
    let mut router = Router::new()
        .route("/v1/genesis", get(status::genesis))
        .route("/v1/status", get(status::status))
        .route("/health", get(status::health))
        .route("/ready", get(status::ready))
        .route("/v1/transactions", post(transactions::submit))
        .route("/v1/transactions/{id}", get(transactions::transaction))
        .route("/v1/blocks/{height}", get(blocks::block))
        .route("/v1/evidence", get(blocks::evidence))
        .route("/v1/accounts/{key}", get(accounts::account))
        .route("/v1/accounts/{key}/trades", get(intervals::trades))
        .route("/v1/accounts/{key}/bills", get(intervals::bills))
        .route("/v1/nonces/{key}", get(accounts::nonce))
        .route("/v1/meters/{key}", get(accounts::meter))
        .route("/v1/meters/{key}/readings", get(intervals::readings))
        .route("/v1/offers", get(accounts::offers))
        .route("/v1/intervals/{interval}", get(intervals::interval))
        .route("/v1/tariffs", get(tariffs::tariffs))
        .route("/v1/zones", get(zones::zones))
        .route("/v1/zones/{zone}", get(zones::zone))
        .route("/v1/proofs/transactions/{id}", get(proofs::prove_transaction))
        .route("/v1/proofs/clearings/{interval}", get(proofs::prove_clearing))
        .route("/v1/proofs/settlements/{interval}", get(proofs::prove_settlement))
        .route("/v1/events", get(streams::events))
        .route("/v1/export", get(streams::export))
        .route("/metrics", get(metrics::prometheus))
        .merge(dashboard::routes());
    if let Some(token) = options.admin_token {
        router = router.route("/v1/admin/isolate", admin::route(token));
    }
    router
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint: see docs/API.md") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "this endpoint takes another method")
        })
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                metrics.api_requests.inc();
                let refused = refusal(&request, &api_hosts);
                async move {
                    match refused {
                        Some(error) => error.into_response(),
                        None => next.run(request).await,
                    }
                }
            },
        ))
        .layer(axum::Extension(streams::StreamSlots::default()))
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

/// Runs `work` on a blocking thread, off the event loop: a read that
/// decodes many blocks, with what the loop handed it (a `BlockReader`).
async fn off_loop<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| storage("a read off the event loop did not finish"))?
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

/// The query string's parameters, percent-decoded (`+` is a space);
/// unknown ones are refused so that a typo is not silently ignored.
fn query(raw: Option<String>, known: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut parameters = BTreeMap::new();
    for pair in raw.as_deref().unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (percent_decoded(name)?, percent_decoded(value)?);
        if !known.contains(&name.as_str()) {
            return Err(ApiError::new(
                ErrorCode::BadQuery,
                format!("unknown parameter `{name}`; this endpoint takes {}", known.join(", ")),
            ));
        }
        parameters.insert(name, value);
    }
    Ok(parameters)
}

/// A query string's part with `%XX` and `+` decoded, as UTF-8.
fn percent_decoded(text: &str) -> Result<String, ApiError> {
    let bad = || ApiError::new(ErrorCode::BadQuery, format!("`{text}` is not a well-formed query part"));
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        rest = after;
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = rest.get(..2).and_then(|hex| std::str::from_utf8(hex).ok()).ok_or_else(bad)?;
                bytes.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                rest = &rest[2..];
            }
            byte => bytes.push(byte),
        }
    }
    String::from_utf8(bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_localhost_and_the_configured_names_are_answered() {
        let names = vec!["gridshare.example.org".to_string()];
        for (host, allowed) in [
            (Some("127.0.0.1:8700"), true),
            (Some("192.168.1.20"), true),
            (Some("[::1]:8700"), true),
            (Some("[::1]"), true),
            (Some("localhost:8700"), true),
            (Some("LOCALHOST"), true),
            (Some("gridshare.example.org"), true),
            (Some("GridShare.Example.org:443"), true),
            (Some("rebind.attacker.example:8700"), false),
            (Some("127.0.0.1.attacker.example"), false),
            (Some("gridshare.example.org.attacker.example"), false),
            (Some("[not-an-address]:8700"), false),
            (Some(""), false),
            (None, false),
        ] {
            assert_eq!(host_allowed(host, &names), allowed, "{host:?}");
        }
        assert!(!host_allowed(Some("gridshare.example.org"), &[]));
    }

    /// A browser's cross-site request never reaches an endpoint: a page of
    /// another site (even one served from a literal address) is refused by
    /// its `Origin`, a form or `text/plain` POST by its content type; the
    /// node's own pages, its configured name and clients that send no
    /// `Origin` (the CLI) are served.
    #[test]
    fn cross_site_requests_and_bodies_that_are_not_json_are_refused() {
        let names = vec!["gridshare.example.org".to_string()];
        let request = |method: &str, host: &str, origin: Option<&str>, content_type: Option<&str>| {
            let mut builder =
                axum::http::Request::builder().method(method).uri("/v1/transactions").header("host", host);
            if let Some(origin) = origin {
                builder = builder.header("origin", origin);
            }
            if let Some(content_type) = content_type {
                builder = builder.header("content-type", content_type);
            }
            builder.body(axum::body::Body::empty()).unwrap()
        };
        let code = |request: axum::extract::Request| refusal(&request, &names).map(|error| error.body.code);
        let json = Some("application/json");
        for (method, host, origin, content_type, expected) in [
            ("POST", "127.0.0.1:8700", None, json, None),
            ("POST", "127.0.0.1:8700", None, Some("application/json; charset=utf-8"), None),
            ("POST", "127.0.0.1:8700", Some("http://127.0.0.1:8700"), json, None),
            ("GET", "127.0.0.1:8700", Some("http://127.0.0.1:8700"), None, None),
            ("POST", "gridshare.example.org", Some("https://gridshare.example.org"), json, None),
            ("GET", "127.0.0.1:8700", None, None, None),
            (
                "POST",
                "127.0.0.1:8700",
                Some("https://attacker.example"),
                Some("text/plain"),
                Some(ErrorCode::BadOrigin),
            ),
            ("GET", "127.0.0.1:8700", Some("http://203.0.113.5"), None, Some(ErrorCode::BadOrigin)),
            ("POST", "127.0.0.1:8700", Some("http://127.0.0.1:9999"), json, Some(ErrorCode::BadOrigin)),
            ("POST", "127.0.0.1:8700", Some("null"), json, Some(ErrorCode::BadOrigin)),
            ("POST", "127.0.0.1:8700", None, Some("text/plain"), Some(ErrorCode::UnsupportedMediaType)),
            (
                "POST",
                "127.0.0.1:8700",
                None,
                Some("application/x-www-form-urlencoded"),
                Some(ErrorCode::UnsupportedMediaType),
            ),
            ("POST", "127.0.0.1:8700", None, None, Some(ErrorCode::UnsupportedMediaType)),
            ("POST", "rebind.attacker.example", None, json, Some(ErrorCode::BadHost)),
        ] {
            assert_eq!(
                code(request(method, host, origin, content_type)),
                expected,
                "{method} {host} {origin:?} {content_type:?}"
            );
        }
    }

    /// Another site's page may link to the dashboard, but not load the
    /// node's answers as images, scripts or frames, nor start an audit, a
    /// report or an export even with a link; the node's own pages and
    /// clients that send no `Sec-Fetch-Site` are served.
    #[test]
    fn another_sites_page_can_only_link_to_the_dashboard() {
        let names: Vec<String> = Vec::new();
        let request = |path: &str, site: Option<&str>, mode: &str, dest: &str| {
            let mut builder = axum::http::Request::builder().uri(path).header("host", "127.0.0.1:8700");
            if let Some(site) = site {
                builder = builder
                    .header("sec-fetch-site", site)
                    .header("sec-fetch-mode", mode)
                    .header("sec-fetch-dest", dest);
            }
            builder.body(axum::body::Body::empty()).unwrap()
        };
        let code = |request: axum::extract::Request| refusal(&request, &names).map(|error| error.body.code);
        let refused = Some(ErrorCode::BadOrigin);
        for (path, site, mode, dest, expected) in [
            ("/", Some("cross-site"), "navigate", "document", None),
            ("/accounts/ab", Some("same-site"), "navigate", "document", None),
            ("/", Some("cross-site"), "no-cors", "image", refused),
            ("/v1/status", Some("cross-site"), "no-cors", "script", refused),
            ("/operator", Some("cross-site"), "navigate", "iframe", refused),
            ("/regulator/audit", Some("cross-site"), "navigate", "document", refused),
            ("/regulator/report", Some("same-site"), "navigate", "document", refused),
            ("/v1/export", Some("cross-site"), "navigate", "document", refused),
            ("/regulator/audit", Some("same-origin"), "navigate", "document", None),
            ("/v1/events", Some("same-origin"), "cors", "empty", None),
            ("/regulator/audit", Some("none"), "navigate", "document", None),
            ("/v1/export", None, "", "", None),
        ] {
            assert_eq!(code(request(path, site, mode, dest)), expected, "{path} {site:?} {mode} {dest}");
        }
    }

    #[test]
    fn query_parts_are_percent_decoded_and_unknown_names_refused() {
        let known = ["tz", "key"];
        let parsed = query(Some("tz=Europe%2FAmsterdam&key=a+b%20c".into()), &known).unwrap();
        assert_eq!(parsed.get("tz").map(String::as_str), Some("Europe/Amsterdam"));
        assert_eq!(parsed.get("key").map(String::as_str), Some("a b c"));
        for bad in ["tz=%FF", "tz=%2", "tz=%zz", "t%7A=x%", "color=red"] {
            let error = query(Some(bad.into()), &known).unwrap_err();
            assert_eq!(error.body.code, ErrorCode::BadQuery, "{bad}");
        }
        assert_eq!(
            query(Some("t%7A=UTC".into()), &known).unwrap().get("tz").map(String::as_str),
            Some("UTC")
        );
    }

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
