//! `gridshare register bulk FILE`: a street of households registered from
//! one CSV file, `account,credit_limit,meter,max_import_kw,max_export_kw,zone`
//! (a line per meter; an account with several meters on several lines, one
//! without a meter with the meter columns empty). The whole file is checked
//! before anything is sent, every refusal naming the file's line and field.
//! Then each account, then each meter, is registered unless the ledger
//! already has it (the node refuses a registration twice, pending ones
//! included: `account_exists`, `meter_exists`), so a run that stopped half
//! way is run again as it is. A node that is away or busy (a registrar has
//! at most 64 transactions waiting) is waited for.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use gridshare_ledger::execute::TEXT_LEN_MAX;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::tx::Tx;

use crate::amount::{parse_money, parse_power_w};
use crate::registrar::{RegistrarOptions, registrar_key};
use crate::wallet::{CommandError, Wallet, submit_when_taken, until_the_node_answers, write_json};

/// The header a bulk file starts with.
pub const HEADER: &str = "account,credit_limit,meter,max_import_kw,max_export_kw,zone";
/// Lines a bulk file may have: a large community's households and meters.
pub const LINES_MAX: usize = 100_000;

/// `gridshare register bulk`.
#[derive(Debug, Clone, clap::Args)]
pub struct BulkArgs {
    /// The CSV file of accounts and meters.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub options: RegistrarOptions,
}

/// One account or meter of the file, in the order registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Account {
        line: u64,
        account: PublicKey,
        credit_limit_nano: i128,
    },
    Meter {
        line: u64,
        meter: PublicKey,
        owner: PublicKey,
        max_import_w: u64,
        max_export_w: u64,
        zone: String,
    },
}

/// Why a bulk file was refused: the line (the header is line 1) and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {field}: {problem}")]
pub struct BulkError {
    pub line: u64,
    pub field: &'static str,
    pub problem: String,
}

fn refuse(line: u64, field: &'static str, problem: impl Into<String>) -> BulkError {
    BulkError { line, field, problem: problem.into() }
}

/// Parses and checks a whole bulk file: accounts first (in order of first
/// mention), then meters (in file order), for `genesis`'s community (its
/// currency and zones; an empty zone is the community's only one).
pub fn read_bulk(text: &str, genesis: &Genesis) -> Result<Vec<Entry>, BulkError> {
    let currency = genesis.currency.as_str();
    let mut lines = text.lines().enumerate().map(|(index, line)| (index as u64 + 1, line.trim()));
    match lines.next() {
        Some((_, header)) if header == HEADER => {}
        Some((line, found)) => {
            return Err(refuse(line, "header", format!("expected `{HEADER}`, found `{found}`")));
        }
        None => return Err(refuse(1, "header", format!("the file is empty: expected `{HEADER}`"))),
    }
    let mut accounts: BTreeMap<PublicKey, (u64, i128)> = BTreeMap::new();
    let mut account_order = Vec::new();
    let mut meters: BTreeMap<PublicKey, u64> = BTreeMap::new();
    let mut entries_meters = Vec::new();
    for (line, text) in lines.filter(|(_, text)| !text.is_empty()) {
        if line > LINES_MAX as u64 + 1 {
            return Err(refuse(line, "file", format!("more than {LINES_MAX} lines: split the file")));
        }
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        let [account, credit_limit, meter, import_kw, export_kw, zone] = fields[..] else {
            return Err(refuse(
                line,
                "line",
                format!("expected 6 fields ({HEADER}), found {}", fields.len()),
            ));
        };
        let key = |field, text: &str| {
            text.parse::<PublicKey>()
                .map_err(|_| refuse(line, field, format!("`{text}` is not a 64-digit hex public key")))
        };
        let account = key("account", account)?;
        let money =
            parse_money(credit_limit).map_err(|error| refuse(line, "credit_limit", error.to_string()))?;
        if money.currency.as_deref().is_some_and(|named| named != currency) {
            return Err(refuse(line, "credit_limit", format!("the community's currency is {currency}")));
        }
        match accounts.get(&account) {
            Some(&(first, limit)) if limit != money.nano => {
                return Err(refuse(
                    line,
                    "credit_limit",
                    format!("differs from line {first} for the same account"),
                ));
            }
            Some(_) => {}
            None => {
                accounts.insert(account, (line, money.nano));
                account_order.push(account);
            }
        }
        if meter.is_empty() {
            if !(import_kw.is_empty() && export_kw.is_empty() && zone.is_empty()) {
                return Err(refuse(line, "meter", "empty, but the line has the meter's limits or zone"));
            }
            continue;
        }
        let meter = key("meter", meter)?;
        if let Some(first) = meters.insert(meter, line) {
            return Err(refuse(line, "meter", format!("already on line {first}")));
        }
        let power =
            |field, text: &str| parse_power_w(text).map_err(|error| refuse(line, field, error.to_string()));
        let (max_import_w, max_export_w) =
            (power("max_import_kw", import_kw)?, power("max_export_kw", export_kw)?);
        if zone.len() > TEXT_LEN_MAX {
            return Err(refuse(line, "zone", format!("{} bytes long: at most {TEXT_LEN_MAX}", zone.len())));
        }
        let zone = crate::registrar::meter_zone(genesis, Some(zone).filter(|zone| !zone.is_empty()))
            .map_err(|problem| refuse(line, "zone", problem.to_string()))?;
        entries_meters.push(Entry::Meter { line, meter, owner: account, max_import_w, max_export_w, zone });
    }
    let mut entries: Vec<Entry> = account_order
        .into_iter()
        .map(|account| {
            let (line, credit_limit_nano) = accounts[&account];
            Entry::Account { line, account, credit_limit_nano }
        })
        .collect();
    entries.extend(entries_meters);
    Ok(entries)
}

/// What became of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Registered,
    AlreadyRegistered,
    Refused,
}

/// `gridshare register bulk`: registers what the file names and the ledger
/// lacks; a line per entry (`--json`: an object per entry). Refusals by the
/// node are reported and the rest goes on; they make the exit status 1.
pub fn register_bulk(wallet: &Wallet, args: &BulkArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let mut text = String::new();
    std::fs::File::open(&args.file)
        .and_then(|mut file| file.read_to_string(&mut text))
        .map_err(|error| CommandError::BadInput(format!("cannot read {}: {error}", args.file.display())))?;
    let community = wallet.community()?.clone();
    let entries = read_bulk(&text, &community.genesis)
        .map_err(|error| CommandError::BadInput(format!("{}: {error}", args.file.display())))?;
    let (_, registrar) = registrar_key(wallet, &args.options)?;
    let registrar_public = registrar.public();
    let mut refused = 0_usize;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in &entries {
        let (line, what, tx): (u64, String, Box<dyn Fn(u64) -> Tx>) = match entry.clone() {
            Entry::Account { line, account, credit_limit_nano } => (
                line,
                format!("account {account}"),
                Box::new(move |nonce| Tx::RegisterAccount {
                    registrar: registrar_public,
                    nonce,
                    account,
                    credit_limit_nano,
                }),
            ),
            Entry::Meter { line, meter, owner, max_import_w, max_export_w, zone } => (
                line,
                format!("meter {meter} of account {owner}"),
                Box::new(move |nonce| Tx::RegisterMeter {
                    registrar: registrar_public,
                    nonce,
                    meter,
                    owner,
                    max_import_w,
                    max_export_w,
                    zone: zone.clone(),
                }),
            ),
        };
        let submitted = submit_when_taken(wallet, "register bulk: the node", &registrar, &tx)?;
        let (outcome, reason) = match submitted.outcome.refusal_code() {
            None => (Outcome::Registered, None),
            Some("account_exists" | "meter_exists") => match entry {
                // A meter of another account is not what the file says.
                Entry::Meter { meter, owner, .. } => {
                    match until_the_node_answers("register bulk: the node", || {
                        Ok(wallet.node().meter(meter)?)
                    })? {
                        Some(registered) if registered.owner != *owner => {
                            (Outcome::Refused, Some(format!("registered to account {}", registered.owner)))
                        }
                        _ => (Outcome::AlreadyRegistered, None),
                    }
                }
                Entry::Account { .. } => (Outcome::AlreadyRegistered, None),
            },
            Some(code) => (Outcome::Refused, Some(code.to_string())),
        };
        let status = match outcome {
            Outcome::Registered => "registered",
            Outcome::AlreadyRegistered => "already registered",
            Outcome::Refused => "refused",
        };
        *counts.entry(status).or_default() += 1;
        refused += usize::from(outcome == Outcome::Refused);
        if args.options.json {
            write_json(
                out,
                &serde_json::json!({"line": line, "entry": what, "status": status, "reason": reason}),
            )?;
        } else {
            let reason = reason.map(|reason| format!(": {reason}")).unwrap_or_default();
            writeln!(out, "line {line}: {what}: {status}{reason}")?;
        }
    }
    if !args.options.json {
        let summary: Vec<String> = counts.iter().map(|(status, count)| format!("{count} {status}")).collect();
        writeln!(out, "{} entries: {}", entries.len(), summary.join(", "))?;
    }
    if refused > 0 {
        return Err(CommandError::Rejected(format!(
            "{refused} of {} entries were refused by the node",
            entries.len()
        )));
    }
    Ok(())
}
