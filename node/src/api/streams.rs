//! `GET /v1/events` (server-sent events) and `GET /v1/export` (the ledger
//! in the export format, streamed).

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::sse::{self, Sse};
use gridshare_api::bounds::STREAMS_MAX;
use gridshare_api::{Bill, BlockEvent, Clearing, ErrorCode, Event as WireEvent, Lagged, SettlementEvent};
use gridshare_ledger::export::ExportWriter;
use gridshare_ledger::store::Store;
use libp2p::futures::stream;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, Reply, count, read, storage};
use crate::node::{Client, Event};

/// The event streams and exports being served, at most [`STREAMS_MAX`].
#[derive(Clone, Debug, Default)]
pub(super) struct StreamSlots(Arc<AtomicUsize>);

/// One stream's place among [`StreamSlots`], given back when the stream
/// ends or its client goes away (the stream, and this with it, is dropped).
#[derive(Debug)]
pub(super) struct Slot(Arc<AtomicUsize>);

impl StreamSlots {
    fn take(&self) -> Result<Slot, ApiError> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < STREAMS_MAX).then_some(taken + 1)
            })
            .map(|_| Slot(self.0.clone()))
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::Busy,
                    format!(
                        "this node serves {STREAMS_MAX} event streams and exports at once: try again later"
                    ),
                )
            })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The wire form of an event of the node.
fn wire_event(event: &Event) -> WireEvent {
    match event {
        Event::Block { height, hash, timestamp_ms, transactions } => WireEvent::Block(BlockEvent {
            height: *height,
            hash: *hash,
            timestamp_ms: *timestamp_ms,
            transactions: count(*transactions),
        }),
        Event::Clearing { height, receipt } => {
            WireEvent::Clearing(Clearing { height: *height, receipt: receipt.as_ref().into() })
        }
        Event::Settlement { height, receipt } => WireEvent::Settlement(SettlementEvent {
            interval: receipt.interval,
            height: *height,
            bills: receipt.bills.iter().map(Bill::from).collect(),
        }),
    }
}

fn sse_event(event: &WireEvent) -> sse::Event {
    sse::Event::default().event(event.name()).data(event.data_json())
}

pub(super) async fn events(State(client): State<Client>, Extension(slots): Extension<StreamSlots>) -> Reply {
    let slot = slots.take()?;
    let metrics = client.metrics.clone();
    let receiver = client.subscribe();
    let events = stream::unfold((receiver, metrics, slot), |(mut receiver, metrics, slot)| async move {
        let event = match receiver.recv().await {
            Ok(event) => sse_event(&wire_event(&event)),
            Err(RecvError::Lagged(missed)) => {
                metrics.events_dropped.inc_by(missed);
                sse_event(&WireEvent::Lagged(Lagged { missed }))
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), (receiver, metrics, slot)))
    });
    Ok(Sse::new(events).keep_alive(sse::KeepAlive::default()).into_response())
}

/// Why an export stopped before its end.
#[derive(Debug, thiserror::Error)]
enum ExportStopped {
    #[error(transparent)]
    Write(#[from] gridshare_ledger::export::ExportError),
    #[error(transparent)]
    Store(#[from] gridshare_ledger::store::StoreError),
    #[error("block {0}, below the tip, is missing")]
    Missing(u64),
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
/// the export format, read and streamed on a blocking thread with a
/// `BlockReader`, off the event loop.
pub(super) async fn export(State(client): State<Client>, Extension(slots): Extension<StreamSlots>) -> Reply {
    let slot = slots.take()?;
    let (reader, evidence) = read(&client, |view| {
        Ok((view.store.reader().map_err(storage)?, view.store.evidence().map_err(storage)?))
    })
    .await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::task::spawn_blocking(move || {
        // Held until the export is written or its client went away.
        let _slot = slot;
        let result = (|| -> Result<(), ExportStopped> {
            let buffered = std::io::BufWriter::with_capacity(64 * 1024, ChannelWriter(sender.clone()));
            let mut writer = ExportWriter::new(buffered, &client.genesis)?;
            for height in 1..=reader.height() {
                writer.block(&reader.block(height)?.ok_or(ExportStopped::Missing(height))?)?;
            }
            for evidence in &evidence {
                writer.evidence(evidence)?;
            }
            writer.finish()?;
            Ok(())
        })();
        if let Err(problem) = result {
            tracing::warn!(%problem, "export stopped");
            // The body ends with an error, so the client sees a broken transfer.
            let _ = sender.blocking_send(Err(std::io::Error::other(problem.to_string())));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_given_back_when_its_stream_is_dropped() {
        let slots = StreamSlots::default();
        let mut taken: Vec<Slot> = (0..STREAMS_MAX).map(|_| slots.take().unwrap()).collect();
        let refused = slots.take().unwrap_err();
        assert_eq!(refused.body.code, ErrorCode::Busy);
        taken.pop();
        assert!(slots.take().is_ok(), "a dropped stream's place is free again");
    }
}
