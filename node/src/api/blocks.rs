//! `GET /v1/blocks/{height}` (or `latest`) and `GET /v1/evidence`.

use axum::extract::{Path, State};
use gridshare_api::{Block, Equivocation, ErrorCode, EvidenceList};
use gridshare_ledger::store::Store;

use super::{ApiError, LIST_MAX, Reply, json, parse_u64, read, storage};
use crate::node::Client;

pub(super) async fn block(State(client): State<Client>, Path(height): Path<String>) -> Reply {
    let requested = if height == "latest" { None } else { Some(parse_u64("height", &height)?) };
    let block = read(&client, move |view| {
        let height = requested.unwrap_or(view.state.height);
        let block = view
            .store
            .block(height)
            .map_err(storage)?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no block at height {height}")))?;
        Ok(Block::from(&block))
    })
    .await?;
    json(&block)
}

/// `GET /v1/evidence`: every equivocation the validators' consensus
/// reported, two conflicting votes or two conflicting proposals, each
/// checked against the genesis before it was kept.
pub(super) async fn evidence(State(client): State<Client>) -> Reply {
    json(&evidence_of(&client).await?)
}

/// The equivocations the store holds (up to `LIST_MAX`).
pub(super) async fn evidence_of(client: &Client) -> Result<EvidenceList, ApiError> {
    read(client, |view| {
        let evidence = view.store.evidence().map_err(storage)?;
        Ok(EvidenceList { equivocations: evidence.iter().take(LIST_MAX).map(Equivocation::from).collect() })
    })
    .await
}
