//! The local HTTP API (bound to 127.0.0.1 by default): JSON in and out;
//! errors are JSON with a machine code and a message, and bad input always
//! gets a 4xx. Every handler talks to the event loop through the [`Client`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gridshare_ledger::block::{CertifiedBlock, Receipt};
use gridshare_ledger::encoding::from_bytes;
use gridshare_ledger::tx::SignedTx;
use serde_json::{Value, json};

use crate::mempool::SubmitError;
use crate::node::Client;

/// The largest request body accepted.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;

pub fn router(client: Client) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/transactions", post(submit))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/accounts/{key}", get(account))
        .layer(axum::extract::DefaultBodyLimit::max(REQUEST_BYTES_MAX))
        .with_state(client)
}

/// A JSON error: `{"code": ..., "message": ...}`.
fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "code": code, "message": message.to_string() }))).into_response()
}

fn unavailable() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "node_unavailable", "the node is shutting down")
}

async fn status(State(client): State<Client>) -> Response {
    match client.status().await {
        Ok(status) => axum::Json(status).into_response(),
        Err(_) => unavailable(),
    }
}

/// `POST /v1/transactions` with `{"transaction_hex": "<canonical bytes of a signed transaction>"}`.
async fn submit(State(client): State<Client>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(problem) => return error(StatusCode::BAD_REQUEST, "bad_json", problem),
    };
    let Some(text) = request.get("transaction_hex").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "expected {\"transaction_hex\": \"...\"}");
    };
    let bytes = match hex::decode(text) {
        Ok(bytes) => bytes,
        Err(problem) => return error(StatusCode::BAD_REQUEST, "bad_hex", problem),
    };
    let tx = match from_bytes::<SignedTx>(&bytes) {
        Ok(tx) => tx,
        Err(problem) => return error(StatusCode::BAD_REQUEST, "bad_encoding", problem),
    };
    match client.submit(tx).await {
        Ok(Ok(id)) => {
            (StatusCode::ACCEPTED, axum::Json(json!({ "id": id.to_string(), "status": "admitted" })))
                .into_response()
        }
        Ok(Err(refusal @ (SubmitError::Full | SubmitError::SignerFull(_)))) => {
            error(StatusCode::TOO_MANY_REQUESTS, "mempool_full", refusal)
        }
        Ok(Err(refusal @ SubmitError::Duplicate(_))) => error(StatusCode::CONFLICT, "duplicate", refusal),
        Ok(Err(SubmitError::Rejected(rejection))) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "rejected", rejection)
        }
        Err(_) => unavailable(),
    }
}

async fn block(State(client): State<Client>, Path(height): Path<String>) -> Response {
    let Ok(height) = height.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "bad_height", format!("`{height}` is not a block height"));
    };
    match client.block(height).await {
        Ok(Ok(Some(block))) => axum::Json(block_json(&block)).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "not_found", format!("no block at height {height}")),
        Ok(Err(problem)) => error(StatusCode::INTERNAL_SERVER_ERROR, "storage", problem),
        Err(_) => unavailable(),
    }
}

fn block_json(certified: &CertifiedBlock) -> Value {
    let header = &certified.block.header;
    let receipts: Vec<Value> = certified
        .block
        .receipts
        .iter()
        .map(|receipt| match receipt {
            Receipt::Clearing(clearing) => json!({
                "kind": "clearing",
                "interval": clearing.interval,
                "offers": clearing.offers,
                "clearing_price_micro_per_kwh": clearing.clearing_price_micro_per_kwh,
                "volume_wh": clearing.volume_wh,
                "trades": clearing.trades.iter().map(|trade| json!({
                    "buy_offer": trade.buy_offer.to_string(),
                    "sell_offer": trade.sell_offer.to_string(),
                    "buyer": trade.buyer.to_string(),
                    "seller": trade.seller.to_string(),
                    "energy_wh": trade.energy_wh,
                    "price_micro_per_kwh": trade.price_micro_per_kwh,
                })).collect::<Vec<_>>(),
            }),
            Receipt::Settlement(settlement) => json!({
                "kind": "settlement",
                "interval": settlement.interval,
                "bills": settlement.bills.iter().map(|bill| json!({
                    "account": bill.account.to_string(),
                    "sold_wh": bill.sold_wh,
                    "bought_wh": bill.bought_wh,
                    "deviation_wh": bill.deviation_wh,
                    "grid_import_wh": bill.grid_import_wh,
                    "feed_in_wh": bill.feed_in_wh,
                    // i128 nano amounts as decimal strings: JSON numbers lose precision.
                    "total_nano": bill.total_nano.to_string(),
                })).collect::<Vec<_>>(),
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
        "transactions": certified.block.transactions.iter().map(|tx| json!({
            "kind": tx.tx.kind(),
            "signer": tx.tx.signer().to_string(),
        })).collect::<Vec<_>>(),
        "receipts": receipts,
        "certificate_signatures": certified.certificate.signatures.len(),
    })
}

/// An amount of nano-currency as an exact decimal string: `-1.500000000`.
pub fn nano_to_decimal(nano: i128) -> String {
    let sign = if nano < 0 { "-" } else { "" };
    let magnitude = nano.unsigned_abs();
    format!("{sign}{}.{:09}", magnitude / 1_000_000_000, magnitude % 1_000_000_000)
}

async fn account(State(client): State<Client>, Path(key): Path<String>) -> Response {
    let Ok(public_key) = key.parse::<gridshare_ledger::ids::PublicKey>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_key",
            format!("`{key}` is not a 64-digit hex public key"),
        );
    };
    match client.account(public_key).await {
        Ok(Some(view)) => axum::Json(json!({
            "account": public_key.to_string(),
            "currency": view.currency,
            "balance": nano_to_decimal(view.balance_nano),
            "reserved": nano_to_decimal(view.reserved_nano),
            "credit_limit": nano_to_decimal(view.credit_limit_nano),
            "available": nano_to_decimal(view.available_nano),
            "open_offers": view.open_offers,
            "last_nonce": view.last_nonce,
        }))
        .into_response(),
        Ok(None) => {
            error(StatusCode::NOT_FOUND, "unknown_account", format!("account {public_key} is not registered"))
        }
        Err(_) => unavailable(),
    }
}

#[cfg(test)]
mod tests {
    use super::nano_to_decimal;

    #[test]
    fn nano_amounts_are_exact_decimal_strings() {
        assert_eq!(nano_to_decimal(0), "0.000000000");
        assert_eq!(nano_to_decimal(100_000_000_000), "100.000000000");
        assert_eq!(nano_to_decimal(-1_500_000_000), "-1.500000000");
        assert_eq!(nano_to_decimal(1), "0.000000001");
        assert_eq!(nano_to_decimal(i128::MIN), "-170141183460469231731687303715.884105728");
    }
}
