//! `GET /v1/genesis` and `GET /v1/status`.

use axum::extract::State;
use gridshare_api::{GenesisResponse, Role, Status, SyncStatus};

use super::{Reply, count, json, read};
use crate::node::Client;

pub(super) async fn genesis(State(client): State<Client>) -> Reply {
    json(&GenesisResponse::of(&client.genesis))
}

pub(super) async fn status(State(client): State<Client>) -> Reply {
    let metrics = client.metrics.clone();
    let worker_threads = tokio::runtime::Handle::current().metrics().num_workers();
    let status = read(&client, move |view| {
        let state = view.state;
        Ok(Status {
            community_id: view.genesis.community_id,
            name: view.genesis.name.clone(),
            height: state.height,
            last_block_hash: state.last_block_hash,
            last_block_time_ms: state.last_timestamp_ms,
            current_interval: view.genesis.interval_at(view.now_ms),
            next_clearing_interval: state.next_clearing_interval,
            next_settlement_interval: state.next_settlement_interval,
            role: if view.validator { Role::Validator } else { Role::Replica },
            sync: if view.best_seen_height > state.height {
                SyncStatus::CatchingUp
            } else {
                SyncStatus::Synced
            },
            peers: count(view.peers),
            mempool_transactions: count(view.mempool.len()),
            accounts: count(state.accounts.len()),
            intervals_cleared: metrics.intervals_cleared.get(),
            trades: metrics.trades.get(),
            settlements: metrics.settlements.get(),
            worker_threads: count(worker_threads),
        })
    })
    .await?;
    json(&status)
}
