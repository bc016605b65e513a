//! `GET /v1/proofs/transactions/{id}`, `/v1/proofs/clearings/{interval}` and
//! `/v1/proofs/settlements/{interval}`: an item of a block with its
//! inclusion proof, the header and its certificate.

use axum::extract::{Path, State};
use gridshare_api::{ErrorCode, Proof};
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::store::Store;

use super::{ApiError, Reply, json, parse_hash, parse_u64, read, storage};
use crate::node::{Client, View};

/// A proof of item `index` of the block at `height` (a transaction or a
/// receipt), with the header and certificate to check it against.
fn proof(view: &View<'_>, height: u64, index: u32, transaction: bool) -> Result<Proof, ApiError> {
    let block = view
        .store
        .block(height)
        .map_err(storage)?
        .ok_or_else(|| storage(format!("the index names block {height}, which is not stored")))?;
    let position = usize::try_from(index).map_err(storage)?;
    let (item, inclusion) = if transaction {
        let tx = block.block.transactions.get(position).ok_or_else(|| storage("no such transaction"))?;
        (to_bytes(tx), block.block.prove_transaction(position))
    } else {
        let receipt = block.block.receipts.get(position).ok_or_else(|| storage("no such receipt"))?;
        (to_bytes(receipt), block.block.prove_receipt(position))
    };
    let inclusion = inclusion.ok_or_else(|| storage("cannot prove an item of the block"))?;
    Ok(Proof {
        height,
        index,
        header_hex: hex::encode(to_bytes(&block.block.header)),
        certificate_hex: hex::encode(to_bytes(&block.certificate)),
        item_hex: hex::encode(item),
        proof_hex: hex::encode(to_bytes(&inclusion)),
    })
}

pub(super) async fn prove_transaction(State(client): State<Client>, Path(id): Path<String>) -> Reply {
    let id = parse_hash(&id)?;
    let body = read(&client, move |view| {
        let found = view.index.transaction(&id).map_err(storage)?.ok_or_else(|| {
            ApiError::new(ErrorCode::UnknownTransaction, format!("transaction {id} is not in a block (yet)"))
        })?;
        proof(&view, found.height, found.index, true)
    })
    .await?;
    json(&body)
}

pub(super) async fn prove_clearing(State(client): State<Client>, Path(interval): Path<String>) -> Reply {
    prove_receipt(client, interval, false).await
}

pub(super) async fn prove_settlement(State(client): State<Client>, Path(interval): Path<String>) -> Reply {
    prove_receipt(client, interval, true).await
}

/// A proof of an interval's clearing or settlement receipt.
async fn prove_receipt(client: Client, interval: String, settlement: bool) -> Reply {
    let interval = parse_u64("interval", &interval)?;
    let body = read(&client, move |view| {
        let (found, code, done) = if settlement {
            (view.index.settlement(interval), ErrorCode::NotSettled, "settled")
        } else {
            (view.index.clearing(interval), ErrorCode::NotCleared, "cleared")
        };
        let found = found
            .map_err(storage)?
            .ok_or_else(|| ApiError::new(code, format!("interval {interval} has not been {done}")))?;
        proof(&view, found.height, found.index, false)
    })
    .await?;
    json(&body)
}
