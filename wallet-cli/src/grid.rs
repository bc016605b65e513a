//! The grid's commands: the zones with their limits and meters (`grid
//! zones`), one zone's flows and losses interval by interval (`grid zone
//! NAME`), the DSO's limits on what a zone carries (`grid limits`) and a
//! zone's own meter (`grid zone-meter`), both signed here by a DSO key; the
//! node only receives the transaction.

use std::io::Write;

use gridshare_api::{SpanQuery, ZoneFlows, Zones};
use gridshare_ledger::genesis::{Genesis, ZoneLimits};
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::tx::Tx;

use crate::amount::{
    BadAmount, format_kw, format_kwh, format_price, format_signed_kwh, parse_energy_wh, parse_power_w,
};
use crate::keystore::Role;
use crate::market_time::format_utc;
use crate::registrar::{TariffStart, describe_key, meter_zone, report};
use crate::table::{self, Align};
use crate::wallet::{CommandError, Wallet, write_json};

/// `gridshare grid zones`.
#[derive(Debug, Clone, clap::Args)]
pub struct ZonesArgs {
    /// Print JSON for programs.
    #[arg(long)]
    pub json: bool,
}

/// `gridshare grid zone NAME`.
#[derive(Debug, Clone, clap::Args)]
pub struct ZoneArgs {
    /// The zone's name, as `gridshare grid zones` lists it.
    pub name: String,
    /// The first interval (default: 24 intervals before the last).
    #[arg(long, value_name = "N")]
    pub from_interval: Option<u64>,
    /// The last interval (default: the last cleared).
    #[arg(long, value_name = "N")]
    pub to_interval: Option<u64>,
    /// Print JSON for programs.
    #[arg(long)]
    pub json: bool,
}

/// `gridshare grid limits`.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsArgs {
    /// The zone the limits are for.
    #[arg(long, value_name = "NAME")]
    pub zone: String,
    /// The most the zone may import per interval: 5kWh, 5000Wh, or `none`.
    #[arg(long, value_name = "ENERGY|none", value_parser = parse_limit_wh)]
    pub import_max: u64,
    /// The most the zone may export per interval.
    #[arg(long, value_name = "ENERGY|none", value_parser = parse_limit_wh)]
    pub export_max: u64,
    /// The first interval: a number still open for offers, or next (the
    /// earliest that will still be open when the transaction reaches a
    /// block, with a margin of one interval).
    #[arg(long, value_name = "N|next", default_value = "next")]
    pub from_interval: TariffStart,
    /// How many intervals from the first (1 to 96).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub intervals: u32,
    /// The DSO key that signs (default: the only DSO key).
    #[arg(long = "as", value_name = "NAME")]
    pub dso: Option<String>,
    /// Print JSON for programs.
    #[arg(long)]
    pub json: bool,
}

/// `gridshare grid zone-meter`.
#[derive(Debug, Clone, clap::Args)]
pub struct ZoneMeterArgs {
    /// The meter's device key (64 hex digits) or its keystore name.
    #[arg(value_name = "METER_KEY|NAME")]
    pub meter: String,
    /// The zone whose flow it measures (at its transformer).
    #[arg(long, value_name = "NAME")]
    pub zone: String,
    /// The most it measures coming into the zone, in kW (its rating).
    #[arg(long, value_name = "KW", value_parser = parse_power_w)]
    pub max_import_kw: u64,
    /// The most it measures leaving the zone, in kW.
    #[arg(long, value_name = "KW", value_parser = parse_power_w)]
    pub max_export_kw: u64,
    /// The DSO key that signs (default: the only DSO key).
    #[arg(long = "as", value_name = "NAME")]
    pub dso: Option<String>,
    /// Print JSON for programs.
    #[arg(long)]
    pub json: bool,
}

/// An energy limit, or `none` for no limit.
fn parse_limit_wh(text: &str) -> Result<u64, BadAmount> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(ZoneLimits::OPEN.import_wh_max);
    }
    parse_energy_wh(text)
}

/// A limit in words.
pub(crate) fn limit(wh: u64) -> String {
    if wh == u64::MAX { "none".to_string() } else { format!("{} kWh", format_kwh(wh)) }
}

/// `zone`, when it is one of the community's zones (`--zone`).
fn known_zone(genesis: &Genesis, zone: &str) -> Result<(), CommandError> {
    meter_zone(genesis, Some(zone))
        .map(drop)
        .map_err(|problem| CommandError::BadInput(format!("{problem} (--zone)")))
}

/// The DSO key `name` (default: the only DSO key), which must be a DSO of
/// the community, unlocked.
pub(crate) fn dso_key(wallet: &Wallet, name: Option<&str>) -> Result<Keypair, CommandError> {
    let file = wallet.key_file(name, Role::Dso, "--as")?;
    let key = file.public_key()?;
    let genesis = &wallet.community()?.genesis;
    if !genesis.is_dso(&key) {
        return Err(CommandError::BadInput(format!(
            "key `{}` ({key}) is not a DSO of {} (community {})",
            file.name, genesis.name, genesis.community_id
        )));
    }
    wallet.unlock(&file)
}

/// `gridshare grid zones`.
pub fn zones(wallet: &Wallet, args: &ZonesArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let zones: Zones = wallet.node().zones()?;
    if args.json {
        return write_json(out, &zones);
    }
    let rows: Vec<Vec<String>> = zones
        .zones
        .iter()
        .map(|zone| {
            let set: Vec<String> = zone
                .limits
                .iter()
                .map(|run| {
                    format!(
                        "{}-{}: import {}, export {}",
                        run.first_interval,
                        run.last_interval,
                        limit(run.import_wh_max),
                        limit(run.export_wh_max)
                    )
                })
                .collect();
            vec![
                zone.name.clone(),
                limit(zone.import_wh_max),
                limit(zone.export_wh_max),
                zone.meters.to_string(),
                zone.zone_meter.map_or_else(|| "-".to_string(), |key| describe_key(wallet, &key)),
                if set.is_empty() { "-".to_string() } else { set.join("; ") },
            ]
        })
        .collect();
    let header = [
        ("ZONE", Align::Left),
        ("IMPORT LIMIT", Align::Right),
        ("EXPORT LIMIT", Align::Right),
        ("METERS", Align::Right),
        ("ZONE METER", Align::Left),
        ("DSO LIMITS (INTERVALS)", Align::Left),
    ];
    out.write_all(table::render(&header, &rows).as_bytes())?;
    writeln!(out, "Limits per interval on each zone's net import and export; the DSO's hold where set.")?;
    Ok(())
}

/// `gridshare grid zone NAME`.
pub fn zone(wallet: &Wallet, args: &ZoneArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let span = SpanQuery { from_interval: args.from_interval, to_interval: args.to_interval };
    let flows: ZoneFlows = wallet.node().zone_flows(&args.name, &span)?.ok_or_else(|| {
        CommandError::BadInput(format!(
            "`{}` is none of the community's zones (gridshare grid zones)",
            args.name
        ))
    })?;
    if args.json {
        return write_json(out, &flows);
    }
    if flows.intervals.is_empty() {
        writeln!(out, "Zone {}: no cleared or settled interval in the span.", flows.zone)?;
        return Ok(());
    }
    let price = |price: Option<u64>| price.map_or_else(|| "-".to_string(), format_price);
    let rows: Vec<Vec<String>> = flows
        .intervals
        .iter()
        .map(|entry| {
            let (price, hub, traded, limits, congested) = match &entry.cleared {
                Some(cleared) => (
                    price(cleared.price_micro_per_kwh),
                    price(cleared.clearing_price_micro_per_kwh),
                    format_signed_kwh(cleared.net_export_wh),
                    format!("{} / {}", limit(cleared.import_wh_max), limit(cleared.export_wh_max)),
                    if cleared.congested { "yes" } else { "no" }.to_string(),
                ),
                None => ["-"; 5].map(str::to_string).into(),
            };
            let signed = |wh: Option<i64>| wh.map_or_else(|| "-".to_string(), format_signed_kwh);
            let (measured, meters, zone_meter, losses) =
                match entry.measured.map(|measured| measured.settlement) {
                    Some(measured) => (
                        format_signed_kwh(measured.measured_net_export_wh),
                        format!("{} / {}", measured.measured_meters, measured.estimated_meters),
                        signed(measured.zone_meter_net_export_wh),
                        signed(measured.losses_wh),
                    ),
                    None => ["-"; 4].map(str::to_string).into(),
                };
            vec![
                entry.interval.to_string(),
                price,
                hub,
                traded,
                limits,
                congested,
                measured,
                meters,
                zone_meter,
                losses,
            ]
        })
        .collect();
    let header = [
        ("INTERVAL", Align::Right),
        ("PRICE", Align::Right),
        ("HUB PRICE", Align::Right),
        ("TRADED NET EXPORT (kWh)", Align::Right),
        ("LIMITS IMPORT / EXPORT", Align::Right),
        ("CONGESTED", Align::Left),
        ("MEASURED NET EXPORT (kWh)", Align::Right),
        ("METERS MEASURED / ESTIMATED", Align::Right),
        ("ZONE METER NET EXPORT (kWh)", Align::Right),
        ("LOSSES (kWh)", Align::Right),
    ];
    writeln!(out, "Zone {}", flows.zone)?;
    out.write_all(table::render(&header, &rows).as_bytes())?;
    Ok(())
}

/// `gridshare grid limits`: the DSO's limits on a zone for intervals to come.
pub fn set_limits(wallet: &Wallet, args: &LimitsArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let community = wallet.community()?;
    let genesis = &community.genesis;
    known_zone(genesis, &args.zone)?;
    let first_interval = args.from_interval.interval(genesis);
    let dso = dso_key(wallet, args.dso.as_deref())?;
    let key = dso.public();
    let limits = ZoneLimits { import_wh_max: args.import_max, export_wh_max: args.export_max };
    let submitted = wallet.submit_with_nonce(&dso, |nonce| Tx::SetZoneLimits {
        dso: key,
        nonce,
        zone: args.zone.clone(),
        first_interval,
        intervals: args.intervals,
        limits,
    })?;
    let last_interval = first_interval.saturating_add(u64::from(args.intervals.max(1)) - 1);
    let what = format!(
        "limits of zone {} by {} for intervals {first_interval} to {last_interval} (starting {}): import {}, export {} per interval",
        args.zone,
        describe_key(wallet, &key),
        format_utc(genesis.interval_start_ms(first_interval).unwrap_or(0)),
        limit(args.import_max),
        limit(args.export_max)
    );
    report(wallet, args.json, &what, &submitted, out)
}

/// `gridshare grid zone-meter`: the DSO registers a zone's own meter.
pub fn register_zone_meter(
    wallet: &Wallet,
    args: &ZoneMeterArgs,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let genesis = &wallet.community()?.genesis;
    known_zone(genesis, &args.zone)?;
    let meter = wallet.resolve_key(&args.meter)?;
    let dso = dso_key(wallet, args.dso.as_deref())?;
    let key = dso.public();
    let submitted = wallet.submit_with_nonce(&dso, |nonce| Tx::RegisterZoneMeter {
        dso: key,
        nonce,
        meter,
        zone: args.zone.clone(),
        max_import_w: args.max_import_kw,
        max_export_w: args.max_export_kw,
    })?;
    let what = format!(
        "zone meter {} of zone {} by {}, into the zone up to {} kW, out of it up to {} kW",
        describe_key(wallet, &meter),
        args.zone,
        describe_key(wallet, &key),
        format_kw(args.max_import_kw),
        format_kw(args.max_export_kw)
    );
    report(wallet, args.json, &what, &submitted, out)
}
