//! `gridshare meter run`: the meter gateway. It reads a smart meter through
//! a meter interface (`source.rs`; DSMR 5 P1 in `p1.rs`) and signs one
//! reading per interval end with the meter's key, kept in a keystore of
//! the gateway's own: the registers of the latest valid telegram read in
//! the interval. A telegram that fails a check is skipped, counted and
//! logged, never signed; an interval with no valid telegram gets no
//! reading, and the gateway says so. docs/METER.md has the trust model.
//!
//! [`Gateway`] decides, without I/O or a clock; [`meter_run`] is the shell:
//! the interface's thread, the clock, the signing and the node.

pub mod p1;
pub mod source;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::Duration;

use gridshare_api::client::Submission;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::tx::{MeterReading, SignedTx, Tx};

use crate::amount::format_kwh;
use crate::keystore::{PassphraseSource, Role};
use crate::market_time::{format_utc, now_ms};
use crate::wallet::{CommandError, Wallet, until_the_node_answers, write_json};
use p1::Registers;
use source::{MeterInterface, Observation, P1, P1Port, Skip};

/// Observations waiting for the gateway, at most (the interface waits).
const OBSERVATIONS_QUEUED_MAX: usize = 256;
/// A reading the node could not be reached for is sent again this often,
/// until it is on its way or a later one replaces it.
const RESEND_PAUSE: Duration = Duration::from_secs(5);

/// `gridshare meter run`.
#[derive(Debug, Clone, clap::Args)]
pub struct MeterRunArgs {
    /// The meter key that signs the readings: the only meter key of the
    /// gateway's keystore if none is named.
    #[arg(long, value_name = "NAME")]
    pub meter: Option<String>,
    /// The meter's DSMR 5 P1 port: `tcp://HOST:PORT` (a P1 dongle) or a
    /// serial device such as `/dev/ttyUSB0` (115,200 baud, 8N1).
    #[arg(long, value_name = "PORT")]
    pub p1: P1Port,
    /// A file whose first line is the meter key's passphrase (for example
    /// a systemd credential); without it, $GRIDSHARE_PASSPHRASE or a prompt.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Stop after this many interval ends (default: run until stopped).
    #[arg(long, value_name = "COUNT")]
    pub intervals: Option<u64>,
    /// One JSON object per interval end instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// Telegrams counted since the gateway started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub valid: u64,
    pub skipped: BTreeMap<Skip, u64>,
}

impl Counts {
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({ "valid": self.valid });
        for skip in Skip::ALL {
            json[skip.code()] = self.skipped.get(&skip).copied().unwrap_or(0).into();
        }
        json
    }
}

/// What the gateway makes of an interval's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// These registers are the reading for the interval.
    Sign { interval: u64, registers: Registers },
    /// No valid telegram was read in the interval: nothing is signed.
    Nothing { interval: u64 },
}

/// The gateway's decisions: which registers to sign for which interval.
#[derive(Debug)]
pub struct Gateway {
    /// The interval whose end comes next.
    interval: u64,
    /// The latest valid registers read in it.
    latest: Option<Registers>,
    /// The highest registers accepted so far (at first, the ledger's last
    /// reading): a telegram below them is skipped.
    floor: Option<Registers>,
    counts: Counts,
}

impl Gateway {
    /// A gateway that signs first for `interval`, above the registers of
    /// `floor` (the meter's last reading on the ledger, if any).
    pub fn new(interval: u64, floor: Option<Registers>) -> Gateway {
        Gateway { interval, latest: None, floor, counts: Counts::default() }
    }

    /// The interval whose end comes next.
    pub fn interval(&self) -> u64 {
        self.interval
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Takes one observation of the interface; the reason if a reading is
    /// skipped here (a register went down).
    pub fn observe(&mut self, observation: &Observation) -> Option<Skip> {
        match observation {
            Observation::Registers(registers) => {
                if let Some(floor) = self.floor
                    && (registers.import_wh < floor.import_wh || registers.export_wh < floor.export_wh)
                {
                    *self.counts.skipped.entry(Skip::RegisterDown).or_default() += 1;
                    return Some(Skip::RegisterDown);
                }
                self.counts.valid += 1;
                self.floor = Some(*registers);
                self.latest = Some(*registers);
                None
            }
            Observation::Skipped { skip, .. } => {
                *self.counts.skipped.entry(*skip).or_default() += 1;
                None
            }
            Observation::Connected { .. } | Observation::Disconnected { .. } => None,
        }
    }

    /// The current interval has ended: what to sign for it. The next
    /// interval starts with nothing read.
    pub fn close(&mut self) -> Closed {
        let interval = self.interval;
        self.interval += 1;
        match self.latest.take() {
            Some(registers) => Closed::Sign { interval, registers },
            None => Closed::Nothing { interval },
        }
    }
}

/// `gridshare meter run`: reads the meter and signs a reading at every
/// interval end, until stopped (or after `--intervals`).
pub fn meter_run(wallet: &Wallet, args: &MeterRunArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    // The meter's key only: a gateway holds no key that spends money.
    let others: Vec<String> = wallet
        .keys()?
        .iter()
        .filter(|file| file.role != Role::Meter)
        .map(|file| format!("{} ({})", file.name, file.role.as_str()))
        .collect();
    if !others.is_empty() {
        return Err(CommandError::BadInput(format!(
            "the keystore {} holds keys other than meter keys: {}; a gateway keeps its meter key in a \
             keystore of its own (--keystore DIR)",
            wallet.keystore().dir().display(),
            others.join(", ")
        )));
    }
    let meter_file = wallet.key_file(args.meter.as_deref(), Role::Meter, "--meter")?;
    let meter_key = meter_file.public_key()?;
    let source = PassphraseSource::from_file_or_env(args.passphrase_file.as_deref())?;
    let meter = wallet.keystore().unlock(&meter_file.name, &source)?;
    let (genesis, registered) =
        until_the_node_answers("meter gateway: asking the node for the meter", || {
            Ok((wallet.community()?.genesis.clone(), wallet.node().meter(&meter_key)?))
        })?;
    let Some(registered) = registered else {
        return Err(CommandError::BadInput(format!(
            "meter {} ({meter_key}) is not registered in this community: the registrar registers it with \
             `gridshare register meter {meter_key} --owner ACCOUNT ...`",
            meter_file.name
        )));
    };
    let last = registered.last_reading;
    let floor = last
        .map(|reading| Registers { import_wh: reading.import_wh_total, export_wh: reading.export_wh_total });
    // A restart resumes at the next interval end.
    let first = genesis.interval_at(now_ms()).max(last.map_or(0, |reading| reading.interval + 1));
    let mut gateway = Gateway::new(first, floor);

    let (sink, observations) = sync_channel(OBSERVATIONS_QUEUED_MAX);
    let interface: Box<dyn MeterInterface> = Box::new(P1 { port: args.p1.clone() });
    std::thread::Builder::new().name("meter".into()).spawn(move || interface.run(sink))?;
    log(&format!(
        "meter {}: reading {}; the first reading is for interval {first}",
        meter_file.name, args.p1
    ));

    // A signed reading the node could not be reached for, and when to send
    // it again.
    let mut unsent: Option<(SignedTx, u64)> = None;
    let mut closed = 0_u64;
    while args.intervals.is_none_or(|intervals| closed < intervals) {
        let now = now_ms();
        if let Some((tx, resend_ms)) = unsent.take() {
            unsent = if now >= resend_ms { send(wallet, tx, out, args.json)? } else { Some((tx, resend_ms)) };
        }
        let end_ms = genesis.interval_end_ms(gateway.interval()).unwrap_or(u64::MAX);
        if now < end_ms {
            let until_ms = unsent.as_ref().map_or(end_ms, |(_, resend_ms)| end_ms.min(*resend_ms));
            match observations.recv_timeout(Duration::from_millis(until_ms.saturating_sub(now))) {
                Ok(observation) => report_observation(&observation, gateway.observe(&observation)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(CommandError::BadInput("the meter interface stopped".into()));
                }
            }
            continue;
        }
        closed += 1;
        let outcome = gateway.close();
        let tx = match outcome {
            Closed::Sign { interval, registers } => {
                let reading = MeterReading {
                    meter: meter_key,
                    interval,
                    import_wh_total: registers.import_wh,
                    export_wh_total: registers.export_wh,
                };
                Some(SignedTx::sign(Tx::MeterReading(reading), &meter, &genesis.community_id))
            }
            Closed::Nothing { .. } => None,
        };
        report_interval(&genesis, out, args.json, &outcome, gateway.counts(), tx.as_ref())?;
        // A reading not sent yet is replaced: readings must follow each
        // other, and the new one says more.
        if let Some(tx) = tx {
            unsent = send(wallet, tx, out, args.json)?;
        }
    }
    if let Some((tx, _)) = unsent {
        send(wallet, tx, out, args.json)?;
    }
    Ok(())
}

/// Submits a signed reading: back with the time to send it again if the
/// node could not be reached or was busy, `None` once it admitted or
/// refused it.
fn send(
    wallet: &Wallet,
    tx: SignedTx,
    out: &mut dyn Write,
    json: bool,
) -> Result<Option<(SignedTx, u64)>, CommandError> {
    let interval = match &tx.tx {
        Tx::MeterReading(reading) => reading.interval,
        _ => 0,
    };
    let submitted = match wallet.submit(tx.clone()) {
        // Busy (429) or away: the same reading goes again later.
        Ok(submitted) if submitted.outcome.is_busy() => {
            Err(format!("the node is busy: {}", submitted.outcome.refusal_code().unwrap_or("429")))
        }
        Err(CommandError::Node(error)) if error.is_transient() => Err(error.to_string()),
        Ok(submitted) => Ok(submitted),
        Err(error) => return Err(error),
    };
    let submitted = match submitted {
        Ok(submitted) => submitted,
        Err(why) => {
            log(&format!(
                "the reading of interval {interval} did not reach the node ({why}); sending it again in {} s",
                RESEND_PAUSE.as_secs()
            ));
            let resend_ms =
                now_ms().saturating_add(u64::try_from(RESEND_PAUSE.as_millis()).unwrap_or(u64::MAX));
            return Ok(Some((tx, resend_ms)));
        }
    };
    if let Submission::Refused { code, message, .. } = &submitted.outcome {
        log(&format!("the node refused the reading for interval {interval}: {message} ({code})"));
    }
    if json {
        let mut answer = submitted.to_json();
        answer["interval"] = interval.into();
        write_json(out, &serde_json::json!({ "submitted": answer }))?;
        out.flush()?;
    }
    Ok(None)
}

/// One line to standard error, for the logs.
fn log(line: &str) {
    eprintln!("{} {line}", format_utc(now_ms()));
}

fn report_observation(observation: &Observation, skipped_here: Option<Skip>) {
    match (observation, skipped_here) {
        (Observation::Registers(registers), Some(skip)) => log(&format!(
            "skipped ({}): a telegram with import {} kWh, export {} kWh, below what was read before",
            skip.code(),
            format_kwh(registers.import_wh),
            format_kwh(registers.export_wh)
        )),
        (Observation::Skipped { skip, detail }, _) => log(&format!("skipped ({}): {detail}", skip.code())),
        (Observation::Connected { port }, _) => log(&format!("connected to {port}")),
        (Observation::Disconnected { detail, retry_in }, _) => {
            log(&format!("meter port: {detail}; trying again in {} s", retry_in.as_secs()));
        }
        (Observation::Registers(_), None) => {}
    }
}

fn report_interval(
    genesis: &Genesis,
    out: &mut dyn Write,
    json: bool,
    outcome: &Closed,
    counts: &Counts,
    tx: Option<&SignedTx>,
) -> Result<(), CommandError> {
    let (interval, registers) = match outcome {
        Closed::Sign { interval, registers } => (*interval, Some(*registers)),
        Closed::Nothing { interval } => (*interval, None),
    };
    let end_ms = genesis.interval_end_ms(interval).unwrap_or(u64::MAX);
    let id = tx.map(|tx| tx.id(&genesis.community_id).to_string());
    if json {
        let mut line = serde_json::json!({
            "interval": interval,
            "end": format_utc(end_ms),
            "signed": registers.is_some(),
            "telegrams": counts.to_json(),
        });
        if let (Some(registers), Some(id)) = (registers, &id) {
            line["import_wh_total"] = registers.import_wh.into();
            line["export_wh_total"] = registers.export_wh.into();
            line["transaction"] = id.as_str().into();
        }
        write_json(out, &line)?;
        out.flush()?;
        return Ok(());
    }
    match (registers, id) {
        (Some(registers), Some(id)) => writeln!(
            out,
            "Interval {interval} (ended {}): signed import {} kWh, export {} kWh as transaction {id}",
            format_utc(end_ms),
            format_kwh(registers.import_wh),
            format_kwh(registers.export_wh)
        )?,
        _ => writeln!(
            out,
            "Interval {interval} (ended {}): no valid telegram was read in it; nothing signed",
            format_utc(end_ms)
        )?,
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn registers(import_wh: u64, export_wh: u64) -> Observation {
        Observation::Registers(Registers { import_wh, export_wh })
    }

    #[test]
    fn the_latest_valid_registers_of_an_interval_are_signed_for_it() {
        let mut gateway = Gateway::new(7, None);
        gateway.observe(&registers(100, 5));
        gateway.observe(&Observation::Skipped { skip: Skip::BadCrc, detail: String::new() });
        gateway.observe(&registers(120, 5));
        assert_eq!(
            gateway.close(),
            Closed::Sign { interval: 7, registers: Registers { import_wh: 120, export_wh: 5 } }
        );
        // Nothing valid in the next: nothing signed.
        gateway.observe(&Observation::Skipped { skip: Skip::Truncated, detail: String::new() });
        assert_eq!(gateway.close(), Closed::Nothing { interval: 8 });
        gateway.observe(&registers(130, 6));
        assert_eq!(
            gateway.close(),
            Closed::Sign { interval: 9, registers: Registers { import_wh: 130, export_wh: 6 } }
        );
        let counts = gateway.counts();
        assert_eq!(counts.valid, 3);
        assert_eq!(counts.skipped, BTreeMap::from([(Skip::BadCrc, 1), (Skip::Truncated, 1)]));
    }

    #[test]
    fn a_register_below_one_read_before_or_the_ledger_s_is_skipped() {
        // The ledger's last reading is the first floor.
        let mut gateway = Gateway::new(3, Some(Registers { import_wh: 1_000, export_wh: 50 }));
        assert_eq!(gateway.observe(&registers(999, 60)), Some(Skip::RegisterDown));
        assert_eq!(gateway.observe(&registers(1_000, 49)), Some(Skip::RegisterDown));
        assert_eq!(gateway.close(), Closed::Nothing { interval: 3 });
        assert_eq!(gateway.observe(&registers(1_500, 50)), None);
        // A later telegram lower than an earlier one in the same interval
        // is skipped: the earlier one stays the reading.
        assert_eq!(gateway.observe(&registers(1_400, 50)), Some(Skip::RegisterDown));
        assert_eq!(
            gateway.close(),
            Closed::Sign { interval: 4, registers: Registers { import_wh: 1_500, export_wh: 50 } }
        );
        assert_eq!(gateway.counts().skipped.get(&Skip::RegisterDown), Some(&3));
    }
}
