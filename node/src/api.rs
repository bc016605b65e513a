//! The local HTTP API of docs/API.md (bound to 127.0.0.1 by default): JSON
//! in and out, units in field names, money as strings of nano-currency;
//! errors are JSON with a machine code and a message, and bad input always
//! gets a 4xx. Every handler reads the node through the [`Client`], so the
//! event loop stays the only owner of the state.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{self, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gridshare_ledger::Hash;
use gridshare_ledger::block::{Bill, CertifiedBlock, ClearingReceipt, Receipt, TradeReceipt, Vote, VoteKind};
use gridshare_ledger::consensus::{Equivocation, Proposal};
use gridshare_ledger::encoding::{from_bytes, to_bytes};
use gridshare_ledger::export::ExportWriter;
use gridshare_ledger::genesis::Mechanism;
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::state::Meter;
use gridshare_ledger::store::Store;
use gridshare_ledger::tx::{Side, SignedTx};
use libp2p::futures::stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::mempool::SubmitError;
use crate::node::{Client, Event, NodeGone, View};

/// The largest request body accepted.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// The most intervals one trades or bills query spans.
pub const INTERVAL_SPAN_MAX: u64 = 96;
/// The intervals a trades or bills query spans by default.
pub const INTERVAL_SPAN_DEFAULT: u64 = 24;
/// The most items in one list.
pub const LIST_MAX: usize = 1_000;
/// The longest isolation `POST /v1/admin/isolate` accepts.
pub const ISOLATION_MS_MAX: u64 = 3_600_000;
/// Blocks read from the event loop at a time while exporting.
const EXPORT_CHUNK_BLOCKS: u64 = 64;

pub fn router(client: Client) -> Router {
    let metrics = client.metrics.clone();
    Router::new()
        .route("/v1/genesis", get(genesis))
        .route("/v1/status", get(status))
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/{id}", get(transaction))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/accounts/{key}", get(account))
        .route("/v1/accounts/{key}/trades", get(trades))
        .route("/v1/accounts/{key}/bills", get(bills))
        .route("/v1/nonces/{key}", get(nonce))
        .route("/v1/meters/{key}", get(meter))
        .route("/v1/offers", get(offers))
        .route("/v1/intervals/{interval}", get(interval))
        .route("/v1/proofs/transactions/{id}", get(prove_transaction))
        .route("/v1/proofs/clearings/{interval}", get(prove_clearing))
        .route("/v1/proofs/settlements/{interval}", get(prove_settlement))
        .route("/v1/events", get(events))
        .route("/v1/evidence", get(evidence))
        .route("/v1/export", get(export))
        .route("/v1/admin/isolate", post(isolate))
        .route("/metrics", get(prometheus))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint: see docs/API.md") })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint takes another method")
        })
        .layer(axum::middleware::from_fn(move |request, next: axum::middleware::Next| {
            metrics.api_requests.inc();
            next.run(request)
        }))
        .layer(axum::extract::DefaultBodyLimit::max(REQUEST_BYTES_MAX))
        .with_state(client)
}

/// An error response: `{"code": ..., "message": ...}`, and for a rejected
/// transaction the ledger's `reason` code.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    reason: Option<&'static str>,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Some(reason) = self.reason {
            body["reason"] = json!(reason);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<NodeGone> for ApiError {
    fn from(gone: NodeGone) -> ApiError {
        error(StatusCode::SERVICE_UNAVAILABLE, "node_unavailable", gone)
    }
}

fn error(status: StatusCode, code: &'static str, message: impl std::fmt::Display) -> ApiError {
    ApiError { status, code, reason: None, message: message.to_string() }
}

fn bad_request(code: &'static str, message: impl std::fmt::Display) -> ApiError {
    error(StatusCode::BAD_REQUEST, code, message)
}

fn not_found(code: &'static str, message: impl std::fmt::Display) -> ApiError {
    error(StatusCode::NOT_FOUND, code, message)
}

fn storage(problem: impl std::fmt::Display) -> ApiError {
    error(StatusCode::INTERNAL_SERVER_ERROR, "storage", problem)
}

/// A handler's result: JSON, or an error.
type Reply = Result<Response, ApiError>;

/// Runs a read in the event loop; a read's own error is its response.
async fn read<T: Send + 'static>(
    client: &Client,
    read: impl FnOnce(View<'_>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    client.read(read).await?
}

fn parse_key(text: &str) -> Result<PublicKey, ApiError> {
    text.parse().map_err(|_| bad_request("bad_key", format!("`{text}` is not a 64-digit hex public key")))
}

fn parse_hash(text: &str) -> Result<Hash, ApiError> {
    text.parse().map_err(|_| bad_request("bad_id", format!("`{text}` is not a 64-digit hex id")))
}

fn parse_u64(what: &str, text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| bad_request("bad_number", format!("{what}: `{text}` is not a non-negative integer")))
}

/// The query string's parameters; unknown ones are refused so that a typo
/// is not silently ignored.
fn query(raw: Option<String>, known: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut parameters = BTreeMap::new();
    for pair in raw.as_deref().unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !known.contains(&name) {
            return Err(bad_request(
                "bad_query",
                format!("unknown parameter `{name}`; this endpoint takes {}", known.join(", ")),
            ));
        }
        parameters.insert(name.to_string(), value.to_string());
    }
    Ok(parameters)
}

/// Money in nano-currency as a JSON string (an i128 loses precision as a
/// JSON number).
fn nano(amount: i128) -> Value {
    Value::String(amount.to_string())
}

fn side(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

async fn genesis(State(client): State<Client>) -> Response {
    let mut body = crate::genesis_file::summary(&client.genesis);
    body["genesis_hex"] = json!(hex::encode(to_bytes(&*client.genesis)));
    axum::Json(body).into_response()
}

async fn status(State(client): State<Client>) -> Reply {
    let metrics = client.metrics.clone();
    let worker_threads = tokio::runtime::Handle::current().metrics().num_workers();
    let body = read(&client, move |view| {
        let state = view.state;
        Ok(json!({
            "community_id": view.genesis.community_id.to_string(),
            "name": view.genesis.name,
            "height": state.height,
            "last_block_hash": state.last_block_hash.to_string(),
            "last_block_time_ms": state.last_timestamp_ms,
            "current_interval": view.genesis.interval_at(view.now_ms),
            "next_clearing_interval": state.next_clearing_interval,
            "next_settlement_interval": state.next_settlement_interval,
            "role": if view.validator { "validator" } else { "replica" },
            "sync": if view.best_seen_height > state.height { "catching_up" } else { "synced" },
            "peers": view.peers,
            "mempool_transactions": view.mempool.len(),
            "accounts": state.accounts.len(),
            "intervals_cleared": metrics.intervals_cleared.get(),
            "trades": metrics.trades.get(),
            "settlements": metrics.settlements.get(),
            "worker_threads": worker_threads,
        }))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

/// `POST /v1/transactions` with `{"transaction_hex": "<canonical bytes of a signed transaction>"}`.
async fn submit(State(client): State<Client>, body: Result<Bytes, BytesRejection>) -> Reply {
    let body = body.map_err(|rejection| {
        error(rejection.status(), "bad_body", format!("{rejection} (at most {REQUEST_BYTES_MAX} bytes)"))
    })?;
    let request: Value = serde_json::from_slice(&body).map_err(|problem| bad_request("bad_json", problem))?;
    let text = request.get("transaction_hex").and_then(Value::as_str).ok_or_else(|| {
        bad_request("bad_request", "expected {\"transaction_hex\": \"<hex of a signed transaction>\"}")
    })?;
    let bytes = hex::decode(text).map_err(|problem| bad_request("bad_hex", problem))?;
    let tx = from_bytes::<SignedTx>(&bytes).map_err(|problem| bad_request("bad_encoding", problem))?;
    match client.submit(tx).await? {
        Ok(id) => {
            Ok((StatusCode::ACCEPTED, axum::Json(json!({ "id": id.to_string(), "status": "admitted" })))
                .into_response())
        }
        Err(SubmitError::Rejected(rejection)) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "rejected",
            reason: Some(rejection.code()),
            message: rejection.to_string(),
        }),
        Err(refusal @ SubmitError::Duplicate(_)) => Err(error(StatusCode::CONFLICT, "duplicate", refusal)),
        Err(refusal @ (SubmitError::Backlog { .. } | SubmitError::TooLate { .. })) => {
            Err(error(StatusCode::TOO_MANY_REQUESTS, "backlog", refusal))
        }
        Err(refusal) => Err(error(StatusCode::TOO_MANY_REQUESTS, "mempool_full", refusal)),
    }
}

async fn transaction(State(client): State<Client>, Path(id): Path<String>) -> Reply {
    let id = parse_hash(&id)?;
    let body = read(&client, move |view| {
        if view.mempool.contains(&id) {
            return Ok(json!({ "id": id.to_string(), "status": "pending" }));
        }
        match view.index.transaction(&id).map_err(storage)? {
            Some(found) => Ok(json!({
                "id": id.to_string(), "status": "included", "height": found.height, "index": found.index,
            })),
            None => Err(not_found(
                "unknown_transaction",
                format!("transaction {id} is neither waiting nor in a block"),
            )),
        }
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

async fn block(State(client): State<Client>, Path(height): Path<String>) -> Reply {
    let requested = if height == "latest" { None } else { Some(parse_u64("height", &height)?) };
    let body = read(&client, move |view| {
        let height = requested.unwrap_or(view.state.height);
        let block = view
            .store
            .block(height)
            .map_err(storage)?
            .ok_or_else(|| not_found("not_found", format!("no block at height {height}")))?;
        Ok(block_json(&block))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

fn clearing_json(clearing: &ClearingReceipt) -> Value {
    json!({
        "interval": clearing.interval,
        "mechanism": match clearing.mechanism { Mechanism::Uniform => "uniform", Mechanism::PayAsBid => "pay-as-bid" },
        "k_thousandths": clearing.k_thousandths,
        "network_fee_micro_per_kwh": clearing.network_fee_micro_per_kwh,
        "offers": clearing.offers,
        "clearing_price_micro_per_kwh": clearing.clearing_price_micro_per_kwh,
        "volume_wh": clearing.volume_wh,
        "trades": clearing.trades.iter().map(trade_json).collect::<Vec<_>>(),
    })
}

fn trade_json(trade: &TradeReceipt) -> Value {
    json!({
        "buy_offer": trade.buy_offer.to_string(),
        "sell_offer": trade.sell_offer.to_string(),
        "buyer": trade.buyer.to_string(),
        "seller": trade.seller.to_string(),
        "energy_wh": trade.energy_wh,
        "price_micro_per_kwh": trade.price_micro_per_kwh,
    })
}

fn bill_json(bill: &Bill) -> Value {
    json!({
        "account": bill.account.to_string(),
        "sold_wh": bill.sold_wh,
        "bought_wh": bill.bought_wh,
        "sold_nano": nano(bill.sold_nano),
        "bought_nano": nano(bill.bought_nano),
        "fees_nano": nano(bill.fees_nano),
        "metered_net_export_wh": bill.metered_net_export_wh,
        "deviation_wh": bill.deviation_wh,
        "grid_import_wh": bill.grid_import_wh,
        "grid_import_nano": nano(bill.grid_import_nano),
        "feed_in_wh": bill.feed_in_wh,
        "feed_in_nano": nano(bill.feed_in_nano),
        "total_nano": nano(bill.total_nano),
    })
}

fn block_json(certified: &CertifiedBlock) -> Value {
    let block = &certified.block;
    let header = &block.header;
    let community = &header.community_id;
    let receipts: Vec<Value> = block
        .receipts
        .iter()
        .map(|receipt| match receipt {
            Receipt::Clearing(clearing) => {
                let mut value = clearing_json(clearing);
                value["kind"] = json!("clearing");
                value
            }
            Receipt::Settlement(settlement) => json!({
                "kind": "settlement",
                "interval": settlement.interval,
                "bills": settlement.bills.iter().map(bill_json).collect::<Vec<_>>(),
            }),
        })
        .collect();
    json!({
        "height": header.height,
        "hash": header.hash().to_string(),
        "previous_hash": header.previous_hash.to_string(),
        "timestamp_ms": header.timestamp_ms,
        "proposer": header.proposer.to_string(),
        "state_root": header.state_root.to_string(),
        "transactions": block.transactions.iter().map(|tx| json!({
            "id": tx.id(community).to_string(),
            "kind": tx.tx.kind(),
            "signer": tx.tx.signer().to_string(),
        })).collect::<Vec<_>>(),
        "receipts": receipts,
        "certificate_signatures": certified.certificate.signatures.len(),
        "certified_block_hex": hex::encode(to_bytes(certified)),
    })
}

fn meter_json(key: &PublicKey, meter: &Meter) -> Value {
    json!({
        "meter": key.to_string(),
        "owner": meter.owner.to_string(),
        "max_import_w": meter.max_import_w,
        "max_export_w": meter.max_export_w,
        "zone": meter.zone,
        "last_reading": meter.last_reading.map(|reading| json!({
            "interval": reading.interval,
            "import_wh_total": reading.import_wh_total,
            "export_wh_total": reading.export_wh_total,
        })),
    })
}

async fn account(State(client): State<Client>, Path(key): Path<String>) -> Reply {
    let key = parse_key(&key)?;
    let body = read(&client, move |view| {
        let account = view
            .state
            .accounts
            .get(&key)
            .ok_or_else(|| not_found("unknown_account", format!("account {key} is not registered")))?;
        let meters: Vec<Value> = view
            .state
            .meters
            .iter()
            .filter(|(_, meter)| meter.owner == key)
            .take(LIST_MAX)
            .map(|(id, meter)| meter_json(id, meter))
            .collect();
        Ok(json!({
            "account": key.to_string(),
            "currency": view.genesis.currency,
            "balance_nano": nano(account.balance_nano),
            "reserved_nano": nano(account.reserved_nano),
            "credit_limit_nano": nano(account.credit_limit_nano),
            "available_nano": nano(account.available_nano()),
            "open_offers": account.open_offers,
            "last_nonce": account.last_nonce,
            "meters": meters,
        }))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

async fn nonce(State(client): State<Client>, Path(key): Path<String>) -> Reply {
    let key = parse_key(&key)?;
    let body = read(&client, move |view| {
        // Waiting transactions count: a wallet's next nonce follows them.
        let pending = view.mempool.pending();
        let last = match pending.accounts.get(&key) {
            Some(account) => account.last_nonce,
            None if view.genesis.is_registrar(&key) => {
                pending.registrar_nonces.get(&key).copied().unwrap_or(0)
            }
            None => {
                return Err(not_found("unknown_key", format!("{key} is neither an account nor a registrar")));
            }
        };
        Ok(json!({ "key": key.to_string(), "last_nonce": last }))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

async fn meter(State(client): State<Client>, Path(key): Path<String>) -> Reply {
    let key = parse_key(&key)?;
    let body = read(&client, move |view| {
        let meter = view
            .state
            .meters
            .get(&key)
            .ok_or_else(|| not_found("unknown_meter", format!("meter {key} is not registered")))?;
        Ok(meter_json(&key, meter))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

async fn offers(State(client): State<Client>, RawQuery(raw): RawQuery) -> Reply {
    let parameters = query(raw, &["account", "interval"])?;
    let account = parameters.get("account").map(|text| parse_key(text)).transpose()?;
    let interval = parameters.get("interval").map(|text| parse_u64("interval", text)).transpose()?;
    let body = read(&client, move |view| {
        let state = view.state;
        let ids: Box<dyn Iterator<Item = &Hash>> = match interval {
            Some(interval) => Box::new(
                state
                    .offers_by_interval
                    .range((interval, Hash([0; 32]))..=(interval, Hash([0xff; 32])))
                    .map(|(_, id)| id),
            ),
            None => Box::new(state.offers_by_interval.iter().map(|(_, id)| id)),
        };
        let offers: Vec<Value> = ids
            .filter_map(|id| state.offers.get(id).map(|offer| (id, offer)))
            .filter(|(_, offer)| account.is_none_or(|account| offer.account == account))
            .take(LIST_MAX)
            .map(|(id, offer)| {
                json!({
                    "id": id.to_string(),
                    "account": offer.account.to_string(),
                    "interval": offer.interval,
                    "side": side(offer.side),
                    "energy_wh": offer.energy_wh,
                    "price_micro_per_kwh": offer.price_micro_per_kwh,
                    "reserved_nano": nano(offer.reserved_nano),
                })
            })
            .collect();
        Ok(json!({ "offers": offers }))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

/// Reads the receipt at a location, checking it is of the kind expected.
fn receipt_at(view: &View<'_>, height: u64, index: u32) -> Result<(CertifiedBlock, Receipt), ApiError> {
    let block = view
        .store
        .block(height)
        .map_err(storage)?
        .ok_or_else(|| storage(format!("the index names block {height}, which is not stored")))?;
    let receipt = usize::try_from(index)
        .ok()
        .and_then(|index| block.block.receipts.get(index))
        .cloned()
        .ok_or_else(|| storage(format!("the index names receipt {index} of block {height}")))?;
    Ok((block, receipt))
}

async fn interval(State(client): State<Client>, Path(interval): Path<String>) -> Reply {
    let interval = parse_u64("interval", &interval)?;
    let body = read(&client, move |view| {
        let genesis = view.genesis;
        let times = (
            genesis.interval_start_ms(interval),
            genesis.interval_end_ms(interval),
            genesis.gate_closure_ms(interval),
            genesis.settlement_ms(interval),
        );
        let (Some(start_ms), Some(end_ms), Some(gate_closure_ms), Some(settlement_ms)) = times else {
            return Err(bad_request(
                "bad_interval",
                format!("interval {interval} is beyond the market's time"),
            ));
        };
        let (book, truncated) = view.index.book(interval, LIST_MAX).map_err(storage)?;
        let clearing = match view.index.clearing(interval).map_err(storage)? {
            Some(found) => match receipt_at(&view, found.height, found.index)?.1 {
                Receipt::Clearing(clearing) => {
                    let mut value = clearing_json(&clearing);
                    value["height"] = json!(found.height);
                    Some(value)
                }
                Receipt::Settlement(_) => return Err(storage("the index names a settlement as a clearing")),
            },
            None => None,
        };
        let settlement = match view.index.settlement(interval).map_err(storage)? {
            Some(found) => match receipt_at(&view, found.height, found.index)?.1 {
                Receipt::Settlement(settlement) => Some(json!({
                    "height": found.height,
                    "bills": settlement.bills.len(),
                    "tariffs": {
                        "grid_import_micro_per_kwh": settlement.tariffs.grid_import_micro_per_kwh,
                        "grid_feed_in_micro_per_kwh": settlement.tariffs.grid_feed_in_micro_per_kwh,
                        "network_fee_micro_per_kwh": settlement.tariffs.network_fee_micro_per_kwh,
                    },
                })),
                Receipt::Clearing(_) => return Err(storage("the index names a clearing as a settlement")),
            },
            None => None,
        };
        let status = if settlement.is_some() {
            "settled"
        } else if clearing.is_some() {
            "cleared"
        } else if view.now_ms >= gate_closure_ms {
            "closed"
        } else {
            "open"
        };
        Ok(json!({
            "interval": interval,
            "start_ms": start_ms,
            "end_ms": end_ms,
            "gate_closure_ms": gate_closure_ms,
            "settlement_ms": settlement_ms,
            "status": status,
            "book": book.iter().map(|entry| json!({
                "id": entry.id.to_string(),
                "account": entry.account.to_string(),
                "side": side(entry.side),
                "energy_wh": entry.energy_wh,
                "price_micro_per_kwh": entry.price_micro_per_kwh,
            })).collect::<Vec<_>>(),
            "book_truncated": truncated,
            "clearing": clearing,
            "settlement": settlement,
        }))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

/// The intervals of a trades or bills query: `from_interval..=to_interval`,
/// by default the last [`INTERVAL_SPAN_DEFAULT`] before `next`.
fn interval_span(raw: Option<String>) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let parameters = query(raw, &["from_interval", "to_interval"])?;
    let from = parameters.get("from_interval").map(|text| parse_u64("from_interval", text)).transpose()?;
    let to = parameters.get("to_interval").map(|text| parse_u64("to_interval", text)).transpose()?;
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(bad_request("bad_range", format!("from_interval {from} is after to_interval {to}")));
        }
        if to - from >= INTERVAL_SPAN_MAX {
            return Err(bad_request("bad_range", format!("at most {INTERVAL_SPAN_MAX} intervals at a time")));
        }
    }
    Ok((from, to))
}

/// Resolves a span against the first interval not yet done (cleared or
/// settled): the default span ends just before it.
fn resolve_span((from, to): (Option<u64>, Option<u64>), next: u64) -> Option<(u64, u64)> {
    let to = match (from, to) {
        (_, Some(to)) => to,
        (Some(from), None) => from.saturating_add(INTERVAL_SPAN_MAX - 1).min(next.checked_sub(1)?),
        (None, None) => next.checked_sub(1)?,
    };
    let from = from.unwrap_or(to.saturating_sub(INTERVAL_SPAN_DEFAULT - 1));
    (from <= to).then_some((from, to))
}

async fn trades(State(client): State<Client>, Path(key): Path<String>, RawQuery(raw): RawQuery) -> Reply {
    let key = parse_key(&key)?;
    let span = interval_span(raw)?;
    let body = read(&client, move |view| {
        let mut trades = Vec::new();
        if let Some((from, to)) = resolve_span(span, view.state.next_clearing_interval) {
            for interval in from..=to {
                let Some(found) = view.index.clearing(interval).map_err(storage)? else { continue };
                let Receipt::Clearing(clearing) = receipt_at(&view, found.height, found.index)?.1 else {
                    return Err(storage("the index names a settlement as a clearing"));
                };
                for trade in clearing.trades.iter().filter(|trade| trade.buyer == key || trade.seller == key)
                {
                    let selling = trade.seller == key;
                    let amount = i128::from(trade.energy_wh) * i128::from(trade.price_micro_per_kwh);
                    trades.push(json!({
                        "interval": interval,
                        "height": found.height,
                        "side": if selling { "sell" } else { "buy" },
                        "offer": if selling { trade.sell_offer } else { trade.buy_offer }.to_string(),
                        "counterparty": if selling { trade.buyer } else { trade.seller }.to_string(),
                        "energy_wh": trade.energy_wh,
                        "price_micro_per_kwh": trade.price_micro_per_kwh,
                        "amount_nano": nano(if selling { amount } else { -amount }),
                    }));
                }
            }
        }
        trades.truncate(LIST_MAX);
        Ok(json!({ "trades": trades }))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

async fn bills(State(client): State<Client>, Path(key): Path<String>, RawQuery(raw): RawQuery) -> Reply {
    let key = parse_key(&key)?;
    let span = interval_span(raw)?;
    let body = read(&client, move |view| {
        let mut bills = Vec::new();
        if let Some((from, to)) = resolve_span(span, view.state.next_settlement_interval) {
            for interval in from..=to {
                let Some(found) = view.index.settlement(interval).map_err(storage)? else { continue };
                let Receipt::Settlement(settlement) = receipt_at(&view, found.height, found.index)?.1 else {
                    return Err(storage("the index names a clearing as a settlement"));
                };
                if let Some(bill) = settlement.bills.iter().find(|bill| bill.account == key) {
                    let mut value = bill_json(bill);
                    value["interval"] = json!(interval);
                    value["height"] = json!(found.height);
                    bills.push(value);
                }
            }
        }
        Ok(json!({ "bills": bills }))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

/// A proof of item `index` of the block at `height` (a transaction or a
/// receipt), with the header and certificate to check it against.
fn proof_json(view: &View<'_>, height: u64, index: u32, transaction: bool) -> Result<Value, ApiError> {
    let block = view
        .store
        .block(height)
        .map_err(storage)?
        .ok_or_else(|| storage(format!("the index names block {height}, which is not stored")))?;
    let position = usize::try_from(index).map_err(storage)?;
    let (item, proof) = if transaction {
        let tx = block.block.transactions.get(position).ok_or_else(|| storage("no such transaction"))?;
        (to_bytes(tx), block.block.prove_transaction(position))
    } else {
        let receipt = block.block.receipts.get(position).ok_or_else(|| storage("no such receipt"))?;
        (to_bytes(receipt), block.block.prove_receipt(position))
    };
    let proof = proof.ok_or_else(|| storage("cannot prove an item of the block"))?;
    Ok(json!({
        "height": height,
        "index": index,
        "header_hex": hex::encode(to_bytes(&block.block.header)),
        "certificate_hex": hex::encode(to_bytes(&block.certificate)),
        "item_hex": hex::encode(item),
        "proof_hex": hex::encode(to_bytes(&proof)),
    }))
}

async fn prove_transaction(State(client): State<Client>, Path(id): Path<String>) -> Reply {
    let id = parse_hash(&id)?;
    let body = read(&client, move |view| {
        let found = view.index.transaction(&id).map_err(storage)?.ok_or_else(|| {
            not_found("unknown_transaction", format!("transaction {id} is not in a block (yet)"))
        })?;
        proof_json(&view, found.height, found.index, true)
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

async fn prove_clearing(State(client): State<Client>, Path(interval): Path<String>) -> Reply {
    prove_receipt(client, interval, false).await
}

async fn prove_settlement(State(client): State<Client>, Path(interval): Path<String>) -> Reply {
    prove_receipt(client, interval, true).await
}

/// A proof of an interval's clearing or settlement receipt.
async fn prove_receipt(client: Client, interval: String, settlement: bool) -> Reply {
    let interval = parse_u64("interval", &interval)?;
    let body = read(&client, move |view| {
        let (found, code, done) = if settlement {
            (view.index.settlement(interval), "not_settled", "settled")
        } else {
            (view.index.clearing(interval), "not_cleared", "cleared")
        };
        let found = found
            .map_err(storage)?
            .ok_or_else(|| not_found(code, format!("interval {interval} has not been {done}")))?;
        proof_json(&view, found.height, found.index, false)
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

/// `GET /v1/evidence`: every equivocation the validators' consensus
/// reported, two conflicting votes or two conflicting proposals, each
/// checked against the genesis before it was kept.
async fn evidence(State(client): State<Client>) -> Reply {
    let body = read(&client, |view| {
        let evidence = view.store.evidence().map_err(storage)?;
        let items: Vec<Value> = evidence.iter().take(LIST_MAX).map(equivocation_json).collect();
        Ok(json!({ "equivocations": items }))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

/// One piece of evidence: its kind, the validator, the two messages, and
/// `evidence_hex`, the canonical bytes of the `VoteEquivocation` or
/// `ProposalEquivocation` (as in an export record of its kind).
fn equivocation_json(evidence: &Equivocation) -> Value {
    let vote = |vote: &Vote| {
        json!({
            "kind": match vote.kind {
                VoteKind::Prevote => "prevote",
                VoteKind::Precommit => "precommit",
            },
            "height": vote.height,
            "round": vote.round,
            "block_hash": vote.block_hash.map(|hash| hash.to_string()),
        })
    };
    let proposal = |proposal: &Proposal| {
        json!({
            "height": proposal.height,
            "round": proposal.round,
            "block_hash": proposal.block_hash.to_string(),
            "pol_round": proposal.pol_round,
        })
    };
    let (first, second, bytes) = match evidence {
        Equivocation::Votes(votes) => (vote(&votes.first), vote(&votes.second), to_bytes(votes)),
        Equivocation::Proposals(proposals) => {
            (proposal(&proposals.first), proposal(&proposals.second), to_bytes(proposals))
        }
    };
    json!({
        "kind": evidence.kind(),
        "validator": evidence.validator().to_string(),
        "first": first,
        "second": second,
        "evidence_hex": hex::encode(bytes),
    })
}

fn event_json(event: &Event) -> sse::Event {
    let (name, data) = match event {
        Event::Block { height, hash, timestamp_ms, transactions } => (
            "block",
            json!({ "height": height, "hash": hash.to_string(), "timestamp_ms": timestamp_ms, "transactions": transactions }),
        ),
        Event::Clearing { height, receipt } => {
            let mut value = clearing_json(receipt);
            value["height"] = json!(height);
            ("clearing", value)
        }
        Event::Settlement { height, receipt } => (
            "settlement",
            json!({
                "interval": receipt.interval,
                "height": height,
                "bills": receipt.bills.iter().map(bill_json).collect::<Vec<_>>(),
            }),
        ),
    };
    sse::Event::default().event(name).data(data.to_string())
}

async fn events(State(client): State<Client>) -> Response {
    let metrics = client.metrics.clone();
    let receiver = client.subscribe();
    let events = stream::unfold((receiver, metrics), |(mut receiver, metrics)| async move {
        let event = match receiver.recv().await {
            Ok(event) => event_json(&event),
            Err(RecvError::Lagged(missed)) => {
                metrics.events_dropped.inc_by(missed);
                sse::Event::default().event("lagged").data(json!({ "missed": missed }).to_string())
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), (receiver, metrics)))
    });
    Sse::new(events).keep_alive(sse::KeepAlive::default()).into_response()
}

/// A `Write` that hands each chunk to the HTTP response body.
struct ChannelWriter(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>);

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(bytes)))
            .map_err(|_| std::io::Error::other("the client went away"))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `GET /v1/export`: the chain up to the height when the request came, in
/// the export format, streamed in chunks of blocks read from the event loop.
async fn export(State(client): State<Client>) -> Reply {
    let tip = read(&client, |view| Ok(view.state.height)).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let result = (|| -> Result<(), String> {
            let buffered = std::io::BufWriter::with_capacity(64 * 1024, ChannelWriter(sender.clone()));
            let mut writer =
                ExportWriter::new(buffered, &client.genesis).map_err(|error| error.to_string())?;
            let mut from = 1;
            while from <= tip {
                let to = tip.min(from + EXPORT_CHUNK_BLOCKS - 1);
                let blocks = runtime
                    .block_on(client.read(move |view| {
                        (from..=to).map(|height| view.store.block(height)).collect::<Result<Vec<_>, _>>()
                    }))
                    .map_err(|error| error.to_string())?
                    .map_err(|error| error.to_string())?;
                for block in blocks {
                    let block = block.ok_or("a block below the tip is missing")?;
                    writer.block(&block).map_err(|error| error.to_string())?;
                }
                from = to + 1;
            }
            let evidence = runtime
                .block_on(client.read(|view| view.store.evidence()))
                .map_err(|error| error.to_string())?
                .map_err(|error| error.to_string())?;
            for evidence in &evidence {
                writer.evidence(evidence).map_err(|error| error.to_string())?;
            }
            writer.finish().map_err(|error| error.to_string())?;
            Ok(())
        })();
        if let Err(problem) = result {
            tracing::warn!(%problem, "export stopped");
            // The body ends with an error, so the client sees a broken transfer.
            let _ = sender.blocking_send(Err(std::io::Error::other(problem)));
        }
    });
    let body = Body::from_stream(tokio_stream_from(receiver));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

fn tokio_stream_from<T: Send + 'static>(
    receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl libp2p::futures::Stream<Item = T> + Send {
    stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) })
}

/// `POST /v1/admin/isolate` with `{"duration_ms": N}`: cuts the node off from
/// every peer for N ms (at most an hour), for testnets' disconnect faults.
async fn isolate(State(client): State<Client>, body: Result<Bytes, BytesRejection>) -> Reply {
    let body = body.map_err(|rejection| error(rejection.status(), "bad_body", rejection))?;
    let request: Value = serde_json::from_slice(&body).map_err(|problem| bad_request("bad_json", problem))?;
    let duration_ms =
        request.get("duration_ms").and_then(Value::as_u64).filter(|&ms| ms <= ISOLATION_MS_MAX).ok_or_else(
            || bad_request("bad_request", format!("expected {{\"duration_ms\": 0..={ISOLATION_MS_MAX}}}")),
        )?;
    client.isolate(std::time::Duration::from_millis(duration_ms)).await?;
    Ok(axum::Json(json!({ "isolated_ms": duration_ms })).into_response())
}

async fn prometheus(State(client): State<Client>) -> Response {
    let _ = client.read(|view| view.mempool.len()).await.map(|len| {
        client.metrics.mempool_transactions.set(i64::try_from(len).unwrap_or(i64::MAX));
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], client.metrics.encode())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_default_to_the_last_done_intervals_and_are_bounded() {
        assert_eq!(resolve_span((None, None), 0), None, "nothing done yet");
        assert_eq!(resolve_span((None, None), 10), Some((0, 9)));
        assert_eq!(resolve_span((None, None), 100), Some((76, 99)));
        assert_eq!(resolve_span((Some(5), None), 8), Some((5, 7)));
        assert_eq!(resolve_span((Some(9), None), 8), None);
        assert_eq!(resolve_span((Some(3), Some(4)), 0), Some((3, 4)));
        assert!(interval_span(Some("from_interval=0&to_interval=96".into())).is_err());
        assert!(interval_span(Some("from_interval=5&to_interval=4".into())).is_err());
        assert!(interval_span(Some("from=1".into())).is_err());
        assert!(interval_span(Some("from_interval=x".into())).is_err());
        assert_eq!(
            interval_span(Some("from_interval=0&to_interval=95".into())).ok(),
            Some((Some(0), Some(95)))
        );
    }

    /// Each kind of evidence says its kind, the validator and both messages,
    /// and `evidence_hex` decodes as the type its kind names.
    #[test]
    fn evidence_of_both_kinds_is_listed_with_its_kind_and_canonical_bytes() {
        use gridshare_ledger::consensus::{ProposalEquivocation, VoteEquivocation};
        use gridshare_ledger::ids::Signature;
        let validator = PublicKey([7; 32]);
        let vote = Vote { kind: VoteKind::Precommit, height: 9, round: 2, block_hash: None, validator };
        let votes = VoteEquivocation {
            first: vote,
            first_signature: Signature([1; 64]),
            second: Vote { block_hash: Some(Hash([3; 32])), ..vote },
            second_signature: Signature([2; 64]),
        };
        let proposal =
            Proposal { height: 9, round: 2, block_hash: Hash([4; 32]), pol_round: None, proposer: validator };
        let proposals = ProposalEquivocation {
            first: proposal,
            first_signature: Signature([5; 64]),
            second: Proposal { pol_round: Some(1), ..proposal },
            second_signature: Signature([6; 64]),
        };
        let listed = equivocation_json(&Equivocation::Votes(votes));
        assert_eq!(listed["kind"], "votes");
        assert_eq!(listed["validator"], validator.to_string());
        assert_eq!(
            listed["first"],
            json!({ "kind": "precommit", "height": 9, "round": 2, "block_hash": null })
        );
        assert_eq!(listed["second"]["block_hash"], Hash([3; 32]).to_string());
        let bytes = hex::decode(listed["evidence_hex"].as_str().unwrap()).unwrap();
        assert_eq!(from_bytes::<VoteEquivocation>(&bytes), Ok(votes));

        let listed = equivocation_json(&Equivocation::Proposals(proposals));
        assert_eq!(listed["kind"], "proposals");
        assert_eq!(listed["validator"], validator.to_string());
        let block_hash = Hash([4; 32]).to_string();
        assert_eq!(
            listed["first"],
            json!({ "height": 9, "round": 2, "block_hash": block_hash.clone(), "pol_round": null })
        );
        assert_eq!(
            listed["second"],
            json!({ "height": 9, "round": 2, "block_hash": block_hash, "pol_round": 1 })
        );
        let bytes = hex::decode(listed["evidence_hex"].as_str().unwrap()).unwrap();
        assert_eq!(from_bytes::<ProposalEquivocation>(&bytes), Ok(proposals));
    }
}
