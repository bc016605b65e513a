//! `GET /metrics`: the node's metrics in the Prometheus text format.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::node::Client;

pub(super) async fn prometheus(State(client): State<Client>) -> Response {
    let _ = client.read(|view| view.mempool.len()).await.map(|len| {
        client.metrics.mempool_transactions.set(i64::try_from(len).unwrap_or(i64::MAX));
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], client.metrics.encode())
        .into_response()
}
