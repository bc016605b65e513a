//! `GET /v1/zones` and `GET /v1/zones/{zone}`: the grid's zones with the
//! DSO's limits to come, and one zone's flows interval by interval, from
//! the clearing and settlement receipts (docs/API.md, "Zones").

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use gridshare_api::{
    ErrorCode, ZoneCleared, ZoneFlows, ZoneInterval, ZoneLimitsRun, ZoneMeasured, ZoneSummary, Zones,
};

use super::intervals::{clearings_of, interval_span, settlements_of};
use super::{ApiError, Reply, json, read};
use crate::node::Client;

pub(super) async fn zones(State(client): State<Client>) -> Reply {
    json(&zones_of(&client).await?)
}

/// Every zone with its meters and the DSO's limits for the intervals not
/// cleared yet (at most `ZONE_LIMITS_MAX` entries, as runs).
pub(super) async fn zones_of(client: &Client) -> Result<Zones, ApiError> {
    read(client, |view| {
        let (genesis, state) = (view.genesis, view.state);
        let mut meters = vec![0_u32; genesis.zones.len()];
        for meter in state.meters.values() {
            if let Some(zone) = genesis.zone_index(&meter.zone).and_then(|zone| meters.get_mut(zone as usize))
            {
                *zone += 1;
            }
        }
        let mut runs: Vec<Vec<ZoneLimitsRun>> = vec![Vec::new(); genesis.zones.len()];
        // Keys are (interval, zone): each zone's entries come in interval order.
        for (&(interval, zone), limits) in &state.zone_limits {
            let Some(runs) = runs.get_mut(zone as usize) else { continue };
            match runs.last_mut() {
                Some(run)
                    if run.last_interval + 1 == interval
                        && (run.import_wh_max, run.export_wh_max)
                            == (limits.import_wh_max, limits.export_wh_max) =>
                {
                    run.last_interval = interval;
                }
                _ => runs.push(ZoneLimitsRun {
                    first_interval: interval,
                    last_interval: interval,
                    import_wh_max: limits.import_wh_max,
                    export_wh_max: limits.export_wh_max,
                }),
            }
        }
        let mut zone_meters = vec![None; genesis.zones.len()];
        for (key, meter) in &state.zone_meters {
            if let Some(slot) = zone_meters.get_mut(meter.zone as usize) {
                *slot = Some(*key);
            }
        }
        let zones = genesis
            .zones
            .iter()
            .zip(meters)
            .zip(runs)
            .zip(zone_meters)
            .map(|(((zone, meters), limits), zone_meter)| ZoneSummary {
                name: zone.name.clone(),
                import_wh_max: zone.limits.import_wh_max,
                export_wh_max: zone.limits.export_wh_max,
                meters,
                zone_meter,
                limits,
            })
            .collect();
        Ok(Zones { next_clearing_interval: state.next_clearing_interval, zones })
    })
    .await
}

pub(super) async fn zone(
    State(client): State<Client>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let span = interval_span(raw)?;
    json(&zone_flows_of(&client, name, span).await?)
}

/// What zone `name` traded and measured in the intervals of `span`.
pub(super) async fn zone_flows_of(
    client: &Client,
    name: String,
    span: gridshare_api::SpanQuery,
) -> Result<ZoneFlows, ApiError> {
    let looked_up = name.clone();
    let index = read(client, move |view| {
        view.genesis.zone_index(&looked_up).ok_or_else(|| {
            ApiError::new(ErrorCode::UnknownZone, format!("`{looked_up}` is none of the community's zones"))
        })
    })
    .await? as usize;
    let cleared = clearings_of(client, span, move |interval, height, clearing| {
        let zone = clearing.zones.get(index)?;
        Some((
            interval,
            ZoneCleared {
                height,
                price_micro_per_kwh: zone.price_micro_per_kwh,
                clearing_price_micro_per_kwh: clearing.clearing_price_micro_per_kwh,
                net_export_wh: zone.net_export_wh,
                import_wh_max: zone.limits.import_wh_max,
                export_wh_max: zone.limits.export_wh_max,
                congested: zone.congested,
            },
        ))
    })
    .await?;
    let measured = settlements_of(client, span, move |interval, height, settlement| {
        let zone = settlement.zones.get(index)?;
        Some((interval, ZoneMeasured { height, settlement: zone.into() }))
    })
    .await?;
    let mut intervals: BTreeMap<u64, ZoneInterval> = BTreeMap::new();
    for (interval, cleared) in cleared.into_iter().flatten() {
        intervals
            .entry(interval)
            .or_insert(ZoneInterval { interval, cleared: None, measured: None })
            .cleared = Some(cleared);
    }
    for (interval, measured) in measured.into_iter().flatten() {
        intervals
            .entry(interval)
            .or_insert(ZoneInterval { interval, cleared: None, measured: None })
            .measured = Some(measured);
    }
    Ok(ZoneFlows { zone: name, intervals: intervals.into_values().collect() })
}
