//! `POST /v1/transactions` and `GET /v1/transactions/{id}`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use gridshare_api::{
    Admitted, AdmittedStatus, ErrorBody, ErrorCode, SubmitRequest, TransactionState, TransactionStatus,
};
use gridshare_ledger::encoding::from_bytes;
use gridshare_ledger::tx::SignedTx;

use super::{ApiError, REQUEST_BYTES_MAX, Reply, json, parse_hash, read, storage};
use crate::mempool::SubmitError;
use crate::node::Client;

/// `POST /v1/transactions` with `{"transaction_hex": "<canonical bytes of a signed transaction>"}`.
pub(super) async fn submit(State(client): State<Client>, body: Result<Bytes, BytesRejection>) -> Reply {
    let body = body.map_err(|rejection| {
        ApiError::with_status(
            rejection.status(),
            ErrorCode::BadBody,
            format!("{rejection} (at most {REQUEST_BYTES_MAX} bytes)"),
        )
    })?;
    let request: serde_json::Value =
        serde_json::from_slice(&body).map_err(|problem| ApiError::new(ErrorCode::BadJson, problem))?;
    let request: SubmitRequest = serde_json::from_value(request).map_err(|_| {
        ApiError::new(
            ErrorCode::BadRequest,
            "expected {\"transaction_hex\": \"<hex of a signed transaction>\"}",
        )
    })?;
    let bytes =
        hex::decode(&request.transaction_hex).map_err(|problem| ApiError::new(ErrorCode::BadHex, problem))?;
    let tx =
        from_bytes::<SignedTx>(&bytes).map_err(|problem| ApiError::new(ErrorCode::BadEncoding, problem))?;
    match client.submit(tx).await? {
        Ok(id) => Ok((StatusCode::ACCEPTED, axum::Json(Admitted { id, status: AdmittedStatus::Admitted }))
            .into_response()),
        Err(SubmitError::Rejected(rejection)) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody {
                code: ErrorCode::Rejected,
                reason: Some(rejection.code().to_string()),
                message: rejection.to_string(),
            },
        }),
        Err(refusal @ SubmitError::Duplicate(_)) => Err(ApiError::new(ErrorCode::Duplicate, refusal)),
        Err(refusal @ (SubmitError::Backlog { .. } | SubmitError::TooLate { .. })) => {
            Err(ApiError::new(ErrorCode::Backlog, refusal))
        }
        Err(refusal @ SubmitError::Unrecorded(_)) => Err(ApiError::new(ErrorCode::Storage, refusal)),
        Err(refusal) => Err(ApiError::new(ErrorCode::MempoolFull, refusal)),
    }
}

/// `GET /v1/transactions/{id}`: waiting, in a block, dropped with a
/// reason, or unknown.
pub(super) async fn transaction(State(client): State<Client>, Path(id): Path<String>) -> Reply {
    let id = parse_hash(&id)?;
    let status = read(&client, move |view| {
        if view.mempool.contains(&id) {
            return Ok(TransactionStatus { id, state: TransactionState::Pending });
        }
        if let Some(found) = view.index.transaction(&id).map_err(storage)? {
            let state = TransactionState::Included { height: found.height, index: found.index };
            return Ok(TransactionStatus { id, state });
        }
        match view.acknowledged.dropped(&id).map_err(storage)? {
            Some(dropped) => Ok(TransactionStatus {
                id,
                state: TransactionState::Dropped {
                    height: dropped.height,
                    reason: dropped.reason,
                    message: dropped.message,
                },
            }),
            None => Err(ApiError::new(
                ErrorCode::UnknownTransaction,
                format!("transaction {id} is neither waiting, nor in a block, nor dropped lately"),
            )),
        }
    })
    .await?;
    json(&status)
}
