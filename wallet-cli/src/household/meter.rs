//! Reporting a meter's cumulative registers at an interval's end
//! (`gridshare meter report`).

use std::io::Write;

use gridshare_ledger::tx::{MeterReading, SignedTx, Tx};

use crate::amount::{format_kwh, parse_energy_wh};
use crate::keystore::Role;
use crate::market_time::{IntervalSpec, format_utc, latest_ended_interval, now_ms};
use crate::wallet::{CommandError, Wallet, bad_input, write_json};

/// `gridshare meter report`.
#[derive(Debug, Clone, clap::Args)]
pub struct MeterReportArgs {
    /// The meter key that signs the reading.
    #[arg(long, value_name = "NAME")]
    pub meter: String,
    /// The import register: energy taken from the grid since the meter was
    /// installed, in kWh (at most 3 decimals).
    #[arg(long, value_name = "KWH", value_parser = parse_energy_wh)]
    pub import_kwh: u64,
    /// The export register: energy fed into the grid since installation, in kWh.
    #[arg(long, value_name = "KWH", value_parser = parse_energy_wh)]
    pub export_kwh: u64,
    /// The interval at whose end the registers were read (default: the
    /// latest ended interval).
    #[arg(long, value_name = "INTERVAL")]
    pub interval: Option<IntervalSpec>,
    #[arg(long)]
    pub json: bool,
}

/// `gridshare meter report`: signs and submits a cumulative reading.
pub fn meter_report(
    wallet: &Wallet,
    args: &MeterReportArgs,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let meter_file = wallet.key_file(Some(&args.meter), Role::Meter, "--meter")?;
    let meter_key = meter_file.public_key()?;
    let community = wallet.community()?;
    let genesis = &community.genesis;
    let now = now_ms();
    let interval = match args.interval {
        Some(spec) => spec.resolve(genesis, now).map_err(bad_input)?,
        None => latest_ended_interval(genesis, now).ok_or_else(|| {
            CommandError::BadInput(format!(
                "no interval has ended yet: interval 0 ends at {}",
                format_utc(genesis.interval_end_ms(0).unwrap_or(0))
            ))
        })?,
    };
    let end_ms = genesis.interval_end_ms(interval).ok_or_else(|| bad_input("no such interval"))?;
    if end_ms > now {
        return Err(CommandError::BadInput(format!(
            "interval {interval} has not ended yet (it ends at {}): a reading is for an interval that has ended",
            format_utc(end_ms)
        )));
    }
    let reading = MeterReading {
        meter: meter_key,
        interval,
        import_wh_total: args.import_kwh,
        export_wh_total: args.export_kwh,
    };
    let meter = wallet.unlock(&meter_file)?;
    let submitted =
        wallet.submit(SignedTx::sign(Tx::MeterReading(reading), &meter, &genesis.community_id))?;
    if args.json {
        let mut json = submitted.to_json();
        json["meter"] = serde_json::Value::String(meter_key.to_string());
        json["interval"] = interval.into();
        json["import_wh_total"] = args.import_kwh.into();
        json["export_wh_total"] = args.export_kwh.into();
        write_json(out, &json)?;
    }
    if !submitted.admitted() {
        return Err(wallet.refusal(&format!("the reading of meter {}", meter_file.name), &submitted));
    }
    if !args.json {
        writeln!(
            out,
            "Reading of meter {} for interval {interval} (ended {}): import {} kWh, export {} kWh",
            meter_file.name,
            format_utc(end_ms),
            format_kwh(args.import_kwh),
            format_kwh(args.export_kwh)
        )?;
        writeln!(out, "Admitted by the node as transaction {}: it waits for the next block.", submitted.id)?;
    }
    Ok(())
}
