//! `GET /v1/tariffs`: the tariff schedule and the tariffs set for single
//! intervals, for the intervals not settled yet (docs/API.md, "Tariffs").

use axum::extract::State;
use gridshare_api::{IntervalTariffs, ScheduledTariffs, TariffSchedule};

use super::{ApiError, Reply, json, read};
use crate::node::Client;

pub(super) async fn tariffs(State(client): State<Client>) -> Reply {
    json(&tariffs_of(&client).await?)
}

/// At most `TARIFF_SCHEDULE_MAX` schedule entries and `INTERVAL_TARIFFS_MAX`
/// interval entries: the ledger's bounds.
async fn tariffs_of(client: &Client) -> Result<TariffSchedule, ApiError> {
    read(client, |view| {
        let state = view.state;
        Ok(TariffSchedule {
            next_settlement_interval: state.next_settlement_interval,
            schedule: state.tariffs.iter().map(ScheduledTariffs::from).collect(),
            intervals: state
                .interval_tariffs
                .iter()
                .map(|(&interval, set)| IntervalTariffs::new(interval, set))
                .collect(),
        })
    })
    .await
}
