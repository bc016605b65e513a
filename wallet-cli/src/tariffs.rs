//! The tariffs to come: the schedule with the intervals' own tariffs
//! (`tariffs show`), and dynamic tariffs for a run of intervals (`tariffs
//! interval`, signed here by a DSO or registrar key; the node only receives
//! the transaction). `tariffs set` (the schedule) is the registrar's, in
//! `registrar`.

use std::io::Write;

use gridshare_api::TariffSchedule;
use gridshare_ledger::execute::ZONE_LIMIT_INTERVALS_MAX;
use gridshare_ledger::genesis::IntervalTariffs;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::tx::Tx;

use crate::amount::{format_price, parse_price_micro_per_kwh};
use crate::keystore::Role;
use crate::market_time::format_utc;
use crate::registrar::{TariffStart, describe_key, report};
use crate::table::{self, Align};
use crate::wallet::{CommandError, Wallet, write_json};

/// `gridshare tariffs show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// Print JSON for programs.
    #[arg(long)]
    pub json: bool,
}

/// `gridshare tariffs interval`.
#[derive(Debug, Clone, clap::Args)]
pub struct IntervalArgs {
    /// The import tariff in these intervals (currency per kWh); none keeps
    /// the schedule's.
    #[arg(long = "import", value_name = "PRICE", value_parser = parse_price_micro_per_kwh)]
    pub import: Option<u64>,
    /// The feed-in tariff in these intervals.
    #[arg(long = "feed-in", value_name = "PRICE", value_parser = parse_price_micro_per_kwh)]
    pub feed_in: Option<u64>,
    /// The network fee in these intervals.
    #[arg(long = "network-fee", value_name = "PRICE", value_parser = parse_price_micro_per_kwh)]
    pub network_fee: Option<u64>,
    /// The first interval: a number still open for offers, or next.
    #[arg(long, value_name = "N|next", default_value = "next")]
    pub from_interval: TariffStart,
    /// How many intervals from the first (1 to 96).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub intervals: u32,
    /// The DSO or registrar key that signs (default: the only DSO key, or
    /// without one the only registrar key).
    #[arg(long = "as", value_name = "NAME")]
    pub signer: Option<String>,
    /// Print JSON for programs.
    #[arg(long)]
    pub json: bool,
}

/// One interval's own tariffs in words: the parts set, `-` for the
/// schedule's.
fn rate(rate: Option<u64>) -> String {
    rate.map_or_else(|| "-".to_string(), format_price)
}

/// What a `SetIntervalTariffs` sets, in words: its one entry when all are
/// the same, else how many differ.
pub(crate) fn describe_interval_tariffs(tariffs: &[IntervalTariffs], currency: &str) -> String {
    match tariffs.first() {
        Some(first) if tariffs.iter().all(|entry| entry == first) => {
            if first.is_empty() {
                return "the schedule's (the intervals' own removed)".to_string();
            }
            format!(
                "import {}, feed-in {}, network fee {} {currency}/kWh (- the schedule's)",
                rate(first.grid_import_micro_per_kwh),
                rate(first.grid_feed_in_micro_per_kwh),
                rate(first.network_fee_micro_per_kwh)
            )
        }
        _ => format!("{} intervals of dynamic tariffs", tariffs.len()),
    }
}

/// The key that signs tariffs: `name`, or the only DSO key, or without
/// one the only registrar key; a registrar or DSO of the community.
fn tariff_key(wallet: &Wallet, name: Option<&str>) -> Result<Keypair, CommandError> {
    let role = match name {
        Some(name) => match wallet.keys()?.iter().find(|file| file.name == name) {
            Some(file) => file.role,
            // The keystore says what is wrong with the name.
            None => Role::Registrar,
        },
        None if wallet.keys()?.iter().any(|file| file.role == Role::Dso) => Role::Dso,
        None => Role::Registrar,
    };
    if role != Role::Dso && role != Role::Registrar {
        return Err(CommandError::BadInput(format!(
            "key `{}` is a {} key: tariffs are signed by a DSO or registrar key (--as)",
            name.unwrap_or_default(),
            role.as_str()
        )));
    }
    let file = wallet.key_file(name, role, "--as")?;
    let key = file.public_key()?;
    let genesis = &wallet.community()?.genesis;
    if !genesis.is_dso(&key) && !genesis.is_registrar(&key) {
        return Err(CommandError::BadInput(format!(
            "key `{}` ({key}) is neither a DSO nor a registrar of {} (community {})",
            file.name, genesis.name, genesis.community_id
        )));
    }
    wallet.unlock(&file)
}

/// `gridshare tariffs show`.
pub fn show(wallet: &Wallet, args: &ShowArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let tariffs: TariffSchedule = wallet.node().tariffs()?;
    if args.json {
        return write_json(out, &tariffs);
    }
    let community = wallet.community()?;
    let genesis = &community.genesis;
    // An interval, when it starts, and its three tariffs (`-`: the schedule's).
    let row = |interval: u64, rates: [Option<u64>; 3]| {
        let mut row =
            vec![interval.to_string(), format_utc(genesis.interval_start_ms(interval).unwrap_or(0))];
        row.extend(rates.map(rate));
        row
    };
    let header = |first: &'static str| {
        [
            (first, Align::Right),
            ("STARTS", Align::Left),
            ("IMPORT", Align::Right),
            ("FEED-IN", Align::Right),
            ("NETWORK FEE", Align::Right),
        ]
    };
    writeln!(
        out,
        "Schedule ({}/kWh), from interval {} on:",
        community.currency(),
        tariffs.next_settlement_interval
    )?;
    let rows: Vec<Vec<String>> = tariffs
        .schedule
        .iter()
        .map(|entry| {
            row(
                entry.effective_from_interval,
                [
                    Some(entry.grid_import_micro_per_kwh),
                    Some(entry.grid_feed_in_micro_per_kwh),
                    Some(entry.network_fee_micro_per_kwh),
                ],
            )
        })
        .collect();
    out.write_all(table::render(&header("FROM INTERVAL"), &rows).as_bytes())?;
    if tariffs.intervals.is_empty() {
        writeln!(out, "No interval has tariffs of its own.")?;
        return Ok(());
    }
    writeln!(out, "Intervals with tariffs of their own (- the schedule's):")?;
    let rows: Vec<Vec<String>> = tariffs
        .intervals
        .iter()
        .map(|entry| {
            row(
                entry.interval,
                [
                    entry.grid_import_micro_per_kwh,
                    entry.grid_feed_in_micro_per_kwh,
                    entry.network_fee_micro_per_kwh,
                ],
            )
        })
        .collect();
    out.write_all(table::render(&header("INTERVAL"), &rows).as_bytes())?;
    Ok(())
}

/// `gridshare tariffs interval`: the same tariffs in each of a run of
/// intervals still open for offers; with no tariff given, the intervals'
/// own are removed.
pub fn set_interval(wallet: &Wallet, args: &IntervalArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    if args.intervals == 0 || args.intervals > ZONE_LIMIT_INTERVALS_MAX {
        return Err(CommandError::BadInput(format!(
            "--intervals must be 1 to {ZONE_LIMIT_INTERVALS_MAX}, not {}",
            args.intervals
        )));
    }
    let community = wallet.community()?;
    let genesis = &community.genesis;
    let first_interval = args.from_interval.interval(genesis);
    let signer = tariff_key(wallet, args.signer.as_deref())?;
    let key = signer.public();
    let entry = IntervalTariffs {
        grid_import_micro_per_kwh: args.import,
        grid_feed_in_micro_per_kwh: args.feed_in,
        network_fee_micro_per_kwh: args.network_fee,
    };
    let tariffs = vec![entry; args.intervals as usize];
    let currency = community.currency();
    let last_interval = first_interval.saturating_add(u64::from(args.intervals) - 1);
    let what = format!(
        "tariffs by {} for intervals {first_interval} to {last_interval} (starting {}): {}",
        describe_key(wallet, &key),
        format_utc(genesis.interval_start_ms(first_interval).unwrap_or(0)),
        describe_interval_tariffs(&tariffs, currency)
    );
    let submitted = wallet.submit_with_nonce(&signer, |nonce| Tx::SetIntervalTariffs {
        signer: key,
        nonce,
        first_interval,
        tariffs: tariffs.clone(),
    })?;
    report(wallet, args.json, &what, &submitted, out)
}
