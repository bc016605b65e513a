//! The operator's page: `/operator`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use gridshare_api::{NotReady, Role, SyncStatus};
use gridshare_ledger::ids::PublicKey;

use super::answer;
use super::html::{Cell, Page, Text, View, facts, short_key, table, time};
use crate::api::blocks::evidence_of;
use crate::api::status::{health_of, status_of};
use crate::api::{ApiError, off_loop, read, storage};
use crate::node::Client;

/// Blocks the operator view looks back through for each validator's last
/// proposal.
const PROPOSALS_LOOKBACK_BLOCKS: u64 = 256;

pub(super) async fn operator(State(client): State<Client>) -> Response {
    answer(&client.genesis.name, operator_page(&client).await)
}

async fn operator_page(client: &Client) -> Result<Page, ApiError> {
    let health = health_of(client).await?;
    let status = status_of(client).await?;
    let evidence = evidence_of(client).await?;
    // Each validator's last proposal in the latest blocks, and whether it
    // signed the tip's certificate.
    let (reader, tip) =
        read(client, |view| Ok((view.store.reader().map_err(storage)?, view.state.height))).await?;
    let validators = client.genesis.validators.clone();
    let seen = off_loop(move || {
        let mut proposed: BTreeMap<PublicKey, u64> = BTreeMap::new();
        let mut signed = Vec::new();
        for height in (tip.saturating_sub(PROPOSALS_LOOKBACK_BLOCKS) + 1..=tip).rev() {
            let Some(block) = reader.block(height).map_err(storage)? else { continue };
            if height == tip {
                signed = block.certificate.signatures.iter().map(|signature| signature.validator).collect();
            }
            proposed.entry(block.block.header.proposer).or_insert(height);
        }
        Ok((proposed, signed))
    })
    .await?;
    let (proposed, signed) = seen;

    let mut page = Page::new(&client.genesis.name, "Operator", View::Operator)
        .reload_on("clearing")
        .at_height(status.height);
    let readiness = match &health.reason {
        None => "<span class=\"ok\" data-test=\"ready\">ready</span>".to_string(),
        Some(NotReady::CatchingUp) => {
            "<span class=\"bad\" data-test=\"ready\">not ready: catching up</span>".to_string()
        }
        Some(NotReady::NoPeers) => {
            "<span class=\"bad\" data-test=\"ready\">not ready: no peer</span>".to_string()
        }
    };
    let sync = match status.sync {
        SyncStatus::Synced => "synced".to_string(),
        SyncStatus::CatchingUp => format!("catching up to {}", status.best_seen_height),
    };
    page.push(facts(
        "The node",
        &[
            ("Readiness", readiness),
            (
                "Role",
                match status.role {
                    Role::Validator => "validator".to_string(),
                    Role::Replica => "replica".to_string(),
                },
            ),
            ("Height", format!("{} ({})", status.height, Text(&sync))),
            ("Last block", time(status.last_block_time_ms)),
            ("Peers", status.peers.to_string()),
            ("Mempool", format!("{} transactions", status.mempool_transactions)),
            ("Version", format!("{} (protocol {})", Text(&status.version), status.protocol_version)),
        ],
    ));
    page.section("validators", "Validators");
    let rows: Vec<Vec<Cell>> = validators
        .iter()
        .map(|validator| {
            vec![
                Cell::html(short_key(&validator.key)),
                Cell::number(validator.voting_power.to_string()),
                Cell::number(proposed.get(&validator.key).map_or("–".to_string(), u64::to_string)),
                Cell::text(if signed.contains(&validator.key) { "yes" } else { "no" }),
            ]
        })
        .collect();
    page.push(table(
        "Validators: the last block each proposed (of the latest 256) and whether each signed the tip",
        &["Validator", "Voting power", "Last proposed block", "Signed the tip"],
        &rows,
        "",
    ));
    page.section("evidence", "Evidence");
    let rows: Vec<Vec<Cell>> = evidence
        .equivocations
        .iter()
        .map(|equivocation| {
            let (kind, validator) = match equivocation {
                gridshare_api::Equivocation::Votes { validator, .. } => ("two votes", validator),
                gridshare_api::Equivocation::Proposals { validator, .. } => ("two proposals", validator),
            };
            vec![Cell::text(kind), Cell::html(format!("<code>{validator}</code>"))]
        })
        .collect();
    page.push(table("Equivocations", &["What", "Validator"], &rows, "No validator has equivocated."));
    page.end_section();
    page.push(
        "<p>Metrics for Prometheus: <a href=\"/metrics\">/metrics</a>; probes: \
         <a href=\"/health\">/health</a>, <a href=\"/ready\">/ready</a>.</p>",
    );
    Ok(page)
}
