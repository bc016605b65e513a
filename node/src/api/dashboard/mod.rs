//! The dashboard (docs/API.md, "The dashboard"): read-only pages the node
//! serves at `/` on its API address, for the community (prices and volumes
//! over time, an interval's supply and demand curves, savings), a household
//! (its offers, trades and bills against grid-only prices), the operator
//! (readiness, validators, peers, mempool, evidence) and the regulator (the
//! audit of this node's ledger, the export). Server-rendered HTML with SVG
//! charts, one stylesheet and one small script from the node itself (no
//! CDN, no build step), so it works offline on a LAN. Every page reads the
//! node through the same loaders as the JSON API, so a page and
//! `GET /v1/...` never disagree. Pages answer GET only; an unknown account
//! or interval is a page with a 404 status.

mod chart;
mod community;
mod household;
mod html;
mod operator;
mod regulator;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gridshare_api::SpanQuery;
use gridshare_api::decimal::{format_money, format_price};

use self::html::{Page, Text, View};
use super::ApiError;
use crate::node::Client;

/// Intervals the community's and a household's charts show.
const CHART_INTERVALS: u64 = 48;

/// What every page answer carries: the page may not be framed, run or load
/// anything that is not the node's own, or send a referrer.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes, for the API's router.
pub(super) fn routes() -> Router<Client> {
    Router::new()
        .route("/", get(community::community))
        .route("/intervals/{interval}", get(community::interval))
        .route("/accounts", get(household::households))
        .route("/accounts/{key}", get(household::household))
        .route("/operator", get(operator::operator))
        .route("/regulator", get(regulator::regulator))
        .route("/regulator/audit", get(regulator::audit))
        .route("/regulator/report", get(regulator::report))
        .route("/assets/dashboard.css", get(|| asset("text/css", include_str!("assets/dashboard.css"))))
        .route("/assets/dashboard.js", get(|| asset("text/javascript", include_str!("assets/dashboard.js"))))
        .layer(axum::middleware::map_response(|mut response: Response| async move {
            let headers = response.headers_mut();
            headers
                .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// A page, or the error page of why not: the API error's status, message
/// and code.
fn answer(community: &str, page: Result<Page, ApiError>) -> Response {
    let (status, html) = match page {
        Ok(page) => (StatusCode::OK, page.finish()),
        Err(error) => {
            let title = match error.status {
                StatusCode::NOT_FOUND => "Not found",
                status if status.is_client_error() => "Not understood",
                _ => "Not available",
            };
            let mut page = Page::new(community, title, View::Community);
            page.push(format!(
                "<p class=\"error\">{}</p><p class=\"muted\">Status {}, code <code>{}</code>. \
                 <a href=\"/\">Back to the community</a>.</p>",
                Text(&error.body.message),
                error.status.as_u16(),
                error.body.code
            ));
            (error.status, page.finish())
        }
    };
    let mut response = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
        response.headers_mut().insert(header::RETRY_AFTER, super::RETRY_AFTER_S.into());
    }
    response
}

/// Money for people in the community's currency.
fn money(client: &Client, nano: i128) -> String {
    format_money(nano, &client.genesis.currency)
}

/// A price per kWh for people, or a dash.
fn price(client: &Client, micro: Option<u64>) -> String {
    match micro {
        Some(micro) => format!("{} {}/kWh", format_price(micro), client.genesis.currency),
        None => "–".to_string(),
    }
}

/// The recent span of intervals before `next` that the charts show.
fn recent(next: u64) -> SpanQuery {
    SpanQuery { from_interval: Some(next.saturating_sub(CHART_INTERVALS)), to_interval: next.checked_sub(1) }
}
