//! The regulator's pages: `/regulator`, the audit of this node's ledger
//! (`/regulator/audit`) and report files (`/regulator/report`).

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use gridshare_api::ErrorCode;
use gridshare_api::decimal::format_kwh;
use gridshare_api::report::{
    Per, Report, ReportError, ReportFormat, ReportKind, Request, local_days, time_zone,
};
use gridshare_ledger::audit::Auditor;
use gridshare_ledger::store::Store;

use super::html::{Cell, Page, Text, View, facts, table, time};
use super::{answer, price};
use crate::api::{ApiError, off_loop, query, read, storage};
use crate::node::Client;

/// One audit or report at a time in this process (a node is one process):
/// each reads the chain (an audit re-executes all of it), so a page asked
/// for many times must not run many. The permit goes with the read off the
/// loop, which runs to its end even if its client goes away.
static LEDGER_READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
/// The largest report the node writes; a wider one is refused with a
/// request to narrow the range (`gridshare report` over the export has no
/// such bound).
const REPORT_BYTES_MAX: usize = 64 << 20;

pub(super) async fn regulator(State(client): State<Client>) -> Response {
    let genesis = &client.genesis;
    let market = &genesis.market;
    let mut page = Page::new(&genesis.name, "Regulator", View::Regulator);
    page.push(facts(
        "The market's rules",
        &[
            (
                "Mechanism",
                format!(
                    "{} (k = {}‰)",
                    gridshare_api::Mechanism::from(market.mechanism).as_str(),
                    market.k_thousandths
                ),
            ),
            ("Interval", format!("{} s", market.interval_length_ms / 1_000)),
            ("Gate closure", format!("{} s before delivery", market.gate_closure_lead_ms / 1_000)),
            (
                "Prices",
                Text(&format!(
                    "floor {}, cap {}",
                    price(&client, Some(market.price_floor_micro_per_kwh)),
                    price(&client, Some(market.price_cap_micro_per_kwh))
                ))
                .to_string(),
            ),
            ("Validators", genesis.validators.len().to_string()),
            ("Genesis", time(genesis.genesis_time_ms)),
        ],
    ));
    page.section("check", "Check the ledger");
    page.push(
        "<p><a class=\"button\" href=\"/regulator/audit\">Audit this node's ledger</a> re-verifies every \
         block from the genesis: links, certificates, signatures, and every clearing and settlement \
         re-run (docs/PROTOCOL.md §9).</p>\
         <p><a class=\"button\" href=\"/v1/export\" download=\"ledger.gridshare\">Download the export</a>: \
         the whole ledger in the export format of docs/PROTOCOL.md, for `gridshare audit` and \
         `gridshare report` on your own machine.</p>",
    );
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
    let week_ago = today.checked_sub(jiff::Span::new().days(7)).unwrap_or(today);
    page.section("reports", "Reports");
    let form = format!(
        "<p>The intervals that start from the first day to the last, in the time zone given, \
         as CSV for a spreadsheet or JSON: the same as <code>gridshare report</code>.</p>\
         <form action=\"/regulator/report\" method=\"get\" class=\"report\">\
         <label>Report <select name=\"kind\">{kinds}</select></label>\
         <label>First day <input type=\"date\" name=\"from\" required value=\"{week_ago}\"></label>\
         <label>Last day <input type=\"date\" name=\"to\" required value=\"{today}\"></label>\
         <label>Time zone <input name=\"tz\" value=\"UTC\" data-local-zone autocomplete=\"off\"></label>\
         <label>Bills per <select name=\"per\"><option value=\"interval\">interval</option>\
         <option value=\"day\">day</option><option value=\"month\">month</option></select></label>\
         <label>Format <select name=\"format\"><option value=\"csv\">CSV</option>\
         <option value=\"json\">JSON</option></select></label>\
         <button type=\"submit\">Download</button></form>",
        kinds = ReportKind::ALL
            .iter()
            .map(|kind| format!("<option value=\"{0}\">{0}</option>", kind.as_str()))
            .collect::<String>(),
    );
    page.push(form);
    answer(&genesis.name, Ok(page))
}

/// `/regulator/report?kind=&from=DAY&to=DAY&tz=&per=&format=`: a report
/// file of the intervals that start from the local midnight of `from` to
/// the one after `to`.
pub(super) async fn report(State(client): State<Client>, RawQuery(raw): RawQuery) -> Response {
    let result = match query(raw, &REPORT_PARAMETERS) {
        Ok(parameters) => report_file(&client, &parameters).await,
        Err(error) => Err(error),
    };
    result.unwrap_or_else(|error| answer(&client.genesis.name, Err(error)))
}

/// What a report request takes.
const REPORT_PARAMETERS: [&str; 6] = ["kind", "from", "to", "tz", "per", "format"];

async fn report_file(client: &Client, parameters: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    let bad = |message: String| ApiError::new(ErrorCode::BadQuery, message);
    let get = |name: &str| parameters.get(name).map(String::as_str);
    let kind: ReportKind = get("kind").unwrap_or_default().parse().map_err(bad)?;
    let per: Per = get("per").unwrap_or("interval").parse().map_err(bad)?;
    let format: ReportFormat = get("format").unwrap_or("csv").parse().map_err(bad)?;
    let tz = time_zone(get("tz").unwrap_or("UTC")).map_err(|error| bad(error.to_string()))?;
    let day = |name: &str| -> Result<jiff::civil::Date, ApiError> {
        let text = get(name).unwrap_or_default();
        text.parse().map_err(|_| bad(format!("{name}: `{text}` is not a day (YYYY-MM-DD)")))
    };
    let (from, to) = local_days(day("from")?, day("to")?, &tz)
        .ok_or_else(|| bad("the days are beyond the representable times".to_string()))?;
    let request = Request::new(kind, (from, to), tz, per, format).map_err(|error| bad(error.to_string()))?;
    // Held until the read off the loop ends, even if the client goes away.
    let permit = LEDGER_READS.try_acquire().map_err(|_| busy())?;
    // The last block to read: the one that settles the range's last
    // interval (its clearing comes before), or the tip; readings may come
    // after settlement, so a readings report reads to the tip.
    let last_interval =
        client.genesis.interval_at(u64::try_from(to.as_millisecond() - 1).unwrap_or_default());
    let (reader, last_height) = read(client, move |view| {
        let settled = match kind {
            ReportKind::Readings => None,
            _ => view.index.settlement(last_interval).map_err(storage)?,
        };
        let tip = view.state.height;
        Ok((view.store.reader().map_err(storage)?, settled.map_or(tip, |found| found.height.min(tip))))
    })
    .await?;
    let genesis = (*client.genesis).clone();
    // What concerns an interval is in a block at or after its gate
    // closure, and block times increase: the report starts there.
    let first_ms = u64::try_from(from.as_millisecond())
        .unwrap_or_default()
        .saturating_sub(genesis.market.gate_closure_lead_ms);
    let file_name = request.file_name();
    let body = off_loop(move || {
        let _permit = permit;
        let block = |height: u64| {
            reader
                .block(height)
                .map_err(storage)?
                .ok_or_else(|| storage(format!("block {height} is missing below the tip")))
        };
        let (mut low, mut high) = (1, last_height.saturating_add(1));
        while low < high {
            let middle = low + (high - low) / 2;
            if block(middle)?.block.header.timestamp_ms < first_ms { low = middle + 1 } else { high = middle }
        }
        let mut out = Bounded(Vec::new());
        let mut report = Report::new(&request, genesis, &mut out).map_err(storage)?;
        for height in low..=last_height {
            report.block(&block(height)?).map_err(too_large)?;
        }
        report.finish().map_err(too_large)?;
        Ok(out.0)
    })
    .await?;
    let content_type = match format {
        ReportFormat::Csv => "text/csv; charset=utf-8",
        ReportFormat::Json => "application/json",
    };
    let disposition = format!("attachment; filename=\"{file_name}\"");
    Ok(([(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response())
}

/// Why a report was not written: the only failures of writing to memory
/// are the bounds, on its bytes or on its bills' periods.
fn too_large(error: ReportError) -> ApiError {
    let why = match error {
        ReportError::TooManyPeriods => error.to_string(),
        _ => format!("the report is larger than the {} MiB a node writes", REPORT_BYTES_MAX >> 20),
    };
    ApiError::new(
        ErrorCode::BadRange,
        format!("{why}: narrow the range, or run `gridshare report` on the export"),
    )
}

/// A buffer that refuses to grow past [`REPORT_BYTES_MAX`].
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len().saturating_add(bytes.len()) > REPORT_BYTES_MAX {
            return Err(std::io::Error::other("the report is too large"));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn busy() -> ApiError {
    ApiError::new(
        ErrorCode::Busy,
        "an audit or a report is already running on this node: try again when it ends",
    )
}

pub(super) async fn audit(State(client): State<Client>) -> Response {
    answer(&client.genesis.name, audit_page(&client).await)
}

async fn audit_page(client: &Client) -> Result<Page, ApiError> {
    // Held until the audit off the loop ends, even if the client goes away.
    let permit = LEDGER_READS.try_acquire().map_err(|_| busy())?;
    let (reader, evidence) = read(client, |view| {
        Ok((view.store.reader().map_err(storage)?, view.store.evidence().map_err(storage)?))
    })
    .await?;
    let genesis = (*client.genesis).clone();
    let report = off_loop(move || {
        let _permit = permit;
        let mut auditor = Auditor::new(genesis);
        for height in 1..=reader.height() {
            match reader.block(height).map_err(storage)? {
                Some(block) => auditor.block(block),
                None => auditor.finding("store", format!("block {height} is missing below the tip")),
            }
        }
        for evidence in &evidence {
            auditor.evidence(evidence);
        }
        Ok(auditor.finish())
    })
    .await?;
    let mut page = Page::new(&client.genesis.name, "Audit of this node's ledger", View::Regulator);
    let verdict = if report.passed() {
        "<span class=\"ok\" data-test=\"verdict\">passed: no findings</span>".to_string()
    } else {
        format!(
            "<span class=\"bad\" data-test=\"verdict\">{} findings</span>",
            report.findings.len() as u64 + report.findings_omitted
        )
    };
    page.push(facts(
        "The audit",
        &[
            ("Verdict", verdict),
            ("Blocks", report.blocks.to_string()),
            ("Transactions", report.transactions.to_string()),
            ("Signatures verified", report.signatures_verified.to_string()),
            ("Intervals cleared", report.intervals_cleared.to_string()),
            ("Trades", format!("{} ({} kWh)", report.trades, format_kwh(report.energy_traded_wh))),
            ("Settlements", format!("{} ({} bills)", report.settlements, report.bills)),
            ("Equivocations proven", report.equivocations.to_string()),
            (
                "State root",
                format!(
                    "<code class=\"key\">{}</code> at height {}",
                    report.state_root, report.executed_height
                ),
            ),
        ],
    ));
    let rows: Vec<Vec<Cell>> = report
        .findings
        .iter()
        .map(|finding| {
            vec![
                Cell::number(finding.height.map_or("–".to_string(), |height| height.to_string())),
                Cell::text(&finding.object),
                Cell::text(&finding.message),
            ]
        })
        .collect();
    page.push(table("Findings", &["Block", "About", "Finding"], &rows, "The audit found nothing wrong."));
    Ok(page)
}
