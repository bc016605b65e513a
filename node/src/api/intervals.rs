//! `GET /v1/intervals/{n}` (an interval's book, clearing and settlement),
//! an account's trades and bills and a meter's signed readings over a span
//! of intervals. Trades, bills and readings decode up to
//! `INTERVAL_SPAN_MAX` blocks: the event loop only looks them up in the
//! index and hands over a `BlockReader`; the blocks are read on a blocking
//! thread (`off_loop`).

use axum::extract::{Path, RawQuery, State};
use gridshare_api::intervals::SpanError;
use gridshare_api::{
    AccountBill, AccountTrade, Bill, Bills, BookEntry, Clearing, ErrorCode, Interval, IntervalStatus,
    MeterReadings, SettlementSummary, Side, SignedReading, SpanQuery, Trades,
};
use gridshare_ledger::block::{CertifiedBlock, ClearingReceipt, Receipt, SettlementReceipt};
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::store::{BlockReader, StoreError};
use gridshare_ledger::tx::{Side as LedgerSide, SignedMeterReading, Tx};

use super::{
    ApiError, INTERVAL_SPAN_DEFAULT, INTERVAL_SPAN_MAX, LIST_MAX, Reply, count, json, off_loop, parse_key,
    parse_u64, query, read, storage,
};
use crate::index::{IndexError, Location};
use crate::node::{Client, View};

/// The block at `height` the index named, read with `block`.
fn stored(
    block: impl FnOnce(u64) -> Result<Option<CertifiedBlock>, StoreError>,
    height: u64,
) -> Result<CertifiedBlock, ApiError> {
    block(height)
        .map_err(storage)?
        .ok_or_else(|| storage(format!("the index names block {height}, which is not stored")))
}

/// Reads the receipt at a location with `block`, the store's or a
/// reader's.
fn receipt_at(
    block: impl FnOnce(u64) -> Result<Option<CertifiedBlock>, StoreError>,
    height: u64,
    index: u32,
) -> Result<(CertifiedBlock, Receipt), ApiError> {
    let block = stored(block, height)?;
    let receipt = usize::try_from(index)
        .ok()
        .and_then(|index| block.block.receipts.get(index))
        .cloned()
        .ok_or_else(|| storage(format!("the index names receipt {index} of block {height}")))?;
    Ok((block, receipt))
}

pub(super) async fn interval(State(client): State<Client>, Path(interval): Path<String>) -> Reply {
    json(&interval_of(&client, parse_u64("interval", &interval)?).await?)
}

/// An interval's times, status, tariffs, book (up to `LIST_MAX` offers),
/// clearing and settlement: what the index says is read on the event loop,
/// the blocks that hold the receipts are decoded off it.
pub(super) async fn interval_of(client: &Client, interval: u64) -> Result<Interval, ApiError> {
    let (mut body, clearing, settlement, reader) = read(client, move |view| {
        let genesis = view.genesis;
        let times = (
            genesis.interval_start_ms(interval),
            genesis.interval_end_ms(interval),
            genesis.gate_closure_ms(interval),
            genesis.settlement_ms(interval),
        );
        let (Some(start_ms), Some(end_ms), Some(gate_closure_ms), Some(settlement_ms)) = times else {
            return Err(ApiError::new(
                ErrorCode::BadInterval,
                format!("interval {interval} is beyond the market's time"),
            ));
        };
        let (book, book_truncated) = view.index.book(interval, LIST_MAX).map_err(storage)?;
        let clearing = view.index.clearing(interval).map_err(storage)?;
        let settlement = view.index.settlement(interval).map_err(storage)?;
        let status = if settlement.is_some() {
            IntervalStatus::Settled
        } else if clearing.is_some() {
            IntervalStatus::Cleared
        } else if view.now_ms >= gate_closure_ms {
            IntervalStatus::Closed
        } else {
            IntervalStatus::Open
        };
        let body = Interval {
            interval,
            start_ms,
            end_ms,
            gate_closure_ms,
            settlement_ms,
            status,
            // The schedule as it stands; a settled interval's are its
            // settlement's (set below: the schedule drops what no interval
            // left to settle uses).
            tariffs: (&view.state.tariffs_for(interval)).into(),
            book: book
                .iter()
                .map(|entry| BookEntry {
                    id: entry.id,
                    account: entry.account,
                    side: entry.side.into(),
                    energy_wh: entry.energy_wh,
                    price_micro_per_kwh: entry.price_micro_per_kwh,
                })
                .collect(),
            book_truncated,
            clearing: None,
            settlement: None,
        };
        let reader = if clearing.is_some() || settlement.is_some() {
            Some(view.store.reader().map_err(storage)?)
        } else {
            None
        };
        Ok((body, clearing, settlement, reader))
    })
    .await?;
    let Some(reader) = reader else { return Ok(body) };
    off_loop(move || {
        if let Some(found) = clearing {
            let Receipt::Clearing(receipt) =
                receipt_at(|height| reader.block(height), found.height, found.index)?.1
            else {
                return Err(storage("the index names a settlement as a clearing"));
            };
            body.clearing = Some(Clearing { height: found.height, receipt: (&receipt).into() });
        }
        if let Some(found) = settlement {
            let Receipt::Settlement(receipt) =
                receipt_at(|height| reader.block(height), found.height, found.index)?.1
            else {
                return Err(storage("the index names a clearing as a settlement"));
            };
            let tariffs = (&receipt.tariffs).into();
            body.tariffs = tariffs;
            body.settlement = Some(SettlementSummary {
                height: found.height,
                bills: count(receipt.bills.len()),
                tariffs,
                zones: receipt.zones.iter().map(Into::into).collect(),
            });
        }
        Ok(body)
    })
    .await
}

/// The intervals of a trades or bills query: `from_interval..=to_interval`,
/// by default the last [`INTERVAL_SPAN_DEFAULT`] before `next`.
pub(super) fn interval_span(raw: Option<String>) -> Result<SpanQuery, ApiError> {
    let parameters = query(raw, &SpanQuery::PARAMETERS)?;
    let span = SpanQuery {
        from_interval: parameters
            .get("from_interval")
            .map(|text| parse_u64("from_interval", text))
            .transpose()?,
        to_interval: parameters.get("to_interval").map(|text| parse_u64("to_interval", text)).transpose()?,
    };
    span.check().map_err(|error: SpanError| ApiError::new(ErrorCode::BadRange, error))?;
    Ok(span)
}

/// On the event loop: where the index puts the receipts of the intervals of
/// `span` (from, to), with `find` (the clearings' or the settlements'), and
/// a reader of the blocks that hold them, for reading them off the loop.
fn located(
    view: &View<'_>,
    span: Option<(u64, u64)>,
    mut find: impl FnMut(u64) -> Result<Option<Location>, IndexError>,
) -> Result<(Vec<(u64, Location)>, BlockReader), ApiError> {
    let mut found = Vec::new();
    if let Some((from, to)) = span {
        for interval in from..=to {
            if let Some(location) = find(interval).map_err(storage)? {
                found.push((interval, location));
            }
        }
    }
    Ok((found, view.store.reader().map_err(storage)?))
}

/// Resolves a span against the first interval not yet done (cleared or
/// settled): the default span ends just before it.
fn resolve_span(span: SpanQuery, next: u64) -> Option<(u64, u64)> {
    let to = match (span.from_interval, span.to_interval) {
        (_, Some(to)) => to,
        (Some(from), None) => from.saturating_add(INTERVAL_SPAN_MAX - 1).min(next.checked_sub(1)?),
        (None, None) => next.checked_sub(1)?,
    };
    let from = span.from_interval.unwrap_or(to.saturating_sub(INTERVAL_SPAN_DEFAULT - 1));
    (from <= to).then_some((from, to))
}

pub(super) async fn trades(
    State(client): State<Client>,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let key = parse_key(&key)?;
    let span = interval_span(raw)?;
    let trades = clearings_of(&client, span, move |interval, height, clearing| {
        account_trades(interval, height, &clearing, &key)
    });
    let mut trades = trades.await?.concat();
    trades.truncate(LIST_MAX);
    json(&Trades { trades })
}

pub(super) async fn bills(
    State(client): State<Client>,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let key = parse_key(&key)?;
    let span = interval_span(raw)?;
    let bills = settlements_of(&client, span, move |interval, height, settlement| {
        let bill = settlement.bills.iter().find(|bill| bill.account == key)?;
        Some(AccountBill { interval, height, bill: Bill::from(bill) })
    });
    json(&Bills { bills: bills.await?.into_iter().flatten().collect() })
}

/// The trades of `account` in the clearing of `interval` at `height`, in
/// their order.
pub(super) fn account_trades(
    interval: u64,
    height: u64,
    clearing: &ClearingReceipt,
    account: &PublicKey,
) -> Vec<AccountTrade> {
    let theirs = clearing.trades.iter().filter(|trade| trade.buyer == *account || trade.seller == *account);
    theirs
        .map(|trade| {
            let selling = trade.seller == *account;
            let price = trade.price_of(if selling { LedgerSide::Sell } else { LedgerSide::Buy });
            let amount = i128::from(trade.energy_wh) * i128::from(price);
            AccountTrade {
                interval,
                height,
                side: if selling { Side::Sell } else { Side::Buy },
                offer: if selling { trade.sell_offer } else { trade.buy_offer },
                counterparty: if selling { trade.buyer } else { trade.seller },
                energy_wh: trade.energy_wh,
                price_micro_per_kwh: price,
                amount_nano: if selling { amount } else { -amount },
            }
        })
        .collect()
}

/// What `project` takes from the clearing receipt of each cleared interval
/// of `span` (by default the last `INTERVAL_SPAN_DEFAULT` cleared), given
/// the interval and the height of its block: the receipts are decoded and
/// projected off the event loop, and only the projections are kept.
pub(super) async fn clearings_of<T: Send + 'static>(
    client: &Client,
    span: SpanQuery,
    project: impl Fn(u64, u64, ClearingReceipt) -> T + Send + 'static,
) -> Result<Vec<T>, ApiError> {
    receipts_of(client, span, Done::Cleared, move |interval, height, receipt| match receipt {
        Receipt::Clearing(clearing) => Ok(project(interval, height, clearing)),
        Receipt::Settlement(_) => Err(storage("the index names a settlement as a clearing")),
    })
    .await
}

/// What `project` takes from the settlement receipt (bills and tariffs) of
/// each settled interval of `span` (by default the last
/// `INTERVAL_SPAN_DEFAULT` settled), given the interval and the height of
/// its block; decoded and projected off the event loop.
pub(super) async fn settlements_of<T: Send + 'static>(
    client: &Client,
    span: SpanQuery,
    project: impl Fn(u64, u64, SettlementReceipt) -> T + Send + 'static,
) -> Result<Vec<T>, ApiError> {
    receipts_of(client, span, Done::Settled, move |interval, height, receipt| match receipt {
        Receipt::Settlement(settlement) => Ok(project(interval, height, settlement)),
        Receipt::Clearing(_) => Err(storage("the index names a clearing as a settlement")),
    })
    .await
}

/// Which receipts a span's intervals are read for.
#[derive(Clone, Copy, Debug)]
enum Done {
    Cleared,
    Settled,
}

/// The receipts the index names for the intervals of `span` that are
/// `done`, located on the event loop, read and projected off it.
async fn receipts_of<T: Send + 'static>(
    client: &Client,
    span: SpanQuery,
    done: Done,
    project: impl Fn(u64, u64, Receipt) -> Result<T, ApiError> + Send + 'static,
) -> Result<Vec<T>, ApiError> {
    let (found, reader) = read(client, move |view| match done {
        Done::Cleared => {
            let span = resolve_span(span, view.state.next_clearing_interval);
            located(&view, span, |interval| view.index.clearing(interval))
        }
        Done::Settled => {
            let span = resolve_span(span, view.state.next_settlement_interval);
            located(&view, span, |interval| view.index.settlement(interval))
        }
    })
    .await?;
    off_loop(move || {
        let mut projected = Vec::with_capacity(found.len());
        for (interval, found) in found {
            let receipt = receipt_at(|height| reader.block(height), found.height, found.index)?.1;
            projected.push(project(interval, found.height, receipt)?);
        }
        Ok(projected)
    })
    .await
}

/// `GET /v1/meters/{key}/readings`: the meter's readings in a span (by
/// default the latest, up to its last reading), each with its signature.
pub(super) async fn readings(
    State(client): State<Client>,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let key = parse_key(&key)?;
    let span = interval_span(raw)?;
    let (found, reader) = read(&client, move |view| {
        let meter = view.state.meters.get(&key).ok_or_else(|| {
            ApiError::new(ErrorCode::UnknownMeter, format!("meter {key} is not registered"))
        })?;
        let next = meter.last_reading.map_or(0, |reading| reading.interval.saturating_add(1));
        located(&view, resolve_span(span, next), |interval| view.index.reading(&key, interval))
    })
    .await?;
    let body = off_loop(move || {
        let mut readings = Vec::with_capacity(found.len());
        for (interval, found) in found {
            let block = stored(|height| reader.block(height), found.height)?;
            let tx = usize::try_from(found.index).ok().and_then(|index| block.block.transactions.get(index));
            let Some((Tx::MeterReading(reading), signature)) = tx.map(|tx| (&tx.tx, tx.signature)) else {
                return Err(storage(format!(
                    "the index names no reading of interval {interval} in block {}",
                    found.height
                )));
            };
            readings.push(SignedReading::of(&SignedMeterReading { reading: *reading, signature }));
        }
        Ok(MeterReadings { meter: key, readings })
    })
    .await?;
    json(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(from: Option<u64>, to: Option<u64>) -> SpanQuery {
        SpanQuery { from_interval: from, to_interval: to }
    }

    #[test]
    fn spans_default_to_the_last_done_intervals_and_are_bounded() {
        assert_eq!(resolve_span(span(None, None), 0), None, "nothing done yet");
        assert_eq!(resolve_span(span(None, None), 10), Some((0, 9)));
        assert_eq!(resolve_span(span(None, None), 100), Some((76, 99)));
        assert_eq!(resolve_span(span(Some(5), None), 8), Some((5, 7)));
        assert_eq!(resolve_span(span(Some(9), None), 8), None);
        assert_eq!(resolve_span(span(Some(3), Some(4)), 0), Some((3, 4)));
        assert!(interval_span(Some("from_interval=0&to_interval=96".into())).is_err());
        assert!(interval_span(Some("from_interval=5&to_interval=4".into())).is_err());
        assert!(interval_span(Some("from=1".into())).is_err());
        assert!(interval_span(Some("from_interval=x".into())).is_err());
        assert_eq!(
            interval_span(Some("from_interval=0&to_interval=95".into())).ok(),
            Some(span(Some(0), Some(95)))
        );
    }
}
