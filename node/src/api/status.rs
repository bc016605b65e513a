//! `GET /v1/genesis`, `GET /v1/status`, and `GET /health` and `GET /ready`
//! for an operator's probes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use gridshare_api::{GenesisResponse, Health, NotReady, Role, Status, SyncStatus};
use gridshare_ledger::encoding::PROTOCOL_VERSION;

use super::{ApiError, Reply, count, json, read};
use crate::node::Client;

/// This build's release.
pub(super) const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(super) async fn genesis(State(client): State<Client>) -> Reply {
    json(&GenesisResponse::of(&client.genesis))
}

pub(super) async fn status(State(client): State<Client>) -> Reply {
    json(&status_of(&client).await?)
}

/// The node's status, read in its event loop.
pub(super) async fn status_of(client: &Client) -> Result<Status, ApiError> {
    let metrics = client.metrics.clone();
    let worker_threads = tokio::runtime::Handle::current().metrics().num_workers();
    read(client, move |view| {
        let state = view.state;
        Ok(Status {
            community_id: view.genesis.community_id,
            name: view.genesis.name.clone(),
            version: VERSION.to_string(),
            protocol_version: PROTOCOL_VERSION,
            height: state.height,
            best_seen_height: view.best_seen_height,
            last_block_hash: state.last_block_hash,
            last_block_time_ms: state.last_timestamp_ms,
            current_interval: view.genesis.interval_at(view.now_ms),
            next_clearing_interval: state.next_clearing_interval,
            next_settlement_interval: state.next_settlement_interval,
            role: if view.validator { Role::Validator } else { Role::Replica },
            sync: SyncStatus::of(state.height, view.best_seen_height),
            peers: count(view.peers),
            mempool_transactions: count(view.mempool.len()),
            accounts: count(state.accounts.len()),
            intervals_cleared: metrics.intervals_cleared.get(),
            trades: metrics.trades.get(),
            settlements: metrics.settlements.get(),
            worker_threads: count(worker_threads),
        })
    })
    .await
}

/// The node's readiness, read in its event loop: an answer at all means
/// the loop runs.
pub(super) async fn health_of(client: &Client) -> Result<Health, ApiError> {
    read(client, move |view| {
        let (height, peers) = (view.state.height, count(view.peers));
        let reason = NotReady::of(height, view.best_seen_height, peers, view.validator);
        Ok(Health {
            ready: reason.is_none(),
            reason,
            height,
            best_seen_height: view.best_seen_height,
            peers,
            version: VERSION.to_string(),
        })
    })
    .await
}

/// `GET /health`: 200 while the event loop answers, ready or not.
pub(super) async fn health(State(client): State<Client>) -> Reply {
    json(&health_of(&client).await?)
}

/// `GET /ready`: 200 when the node is ready, else 503 with the reason.
pub(super) async fn ready(State(client): State<Client>) -> Reply {
    let health = health_of(&client).await?;
    let status = if health.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok((status, axum::Json(health)).into_response())
}
