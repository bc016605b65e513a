//! `gridshare`: the command line for households, registrars and auditors.
//! Parses arguments and wires them to the library; no logic lives here.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use gridshare_cli::amount::{parse_scaled, scale};
use gridshare_cli::keystore::{KeyFile, Keystore, PassphraseSource, Role, parse_seed};
use gridshare_cli::table::{self, Align};
use gridshare_cli::{audit, clear};
use gridshare_matching::{Limits, Mechanism, Params};

/// Exit status when an audit has findings or a request was rejected.
const EXIT_FINDING: u8 = 1;
/// Exit status for bad usage or input.
const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "gridshare", version, about = "Trade energy with your neighbours on a Gridshare ledger")]
struct Cli {
    /// The keystore directory (default: $GRIDSHARE_KEYSTORE, else the user's
    /// data directory's gridshare/keys).
    #[arg(long, global = true, value_name = "DIR")]
    keystore: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Clear a book of orders with the Gridshare auction and print the trades.
    #[command(after_help = "Examples:
  gridshare clear --orders examples/community-book.csv
  gridshare clear --orders book.csv --mechanism pay-as-bid --fee 0.03 --json

The file is CSV with the header `id,side,energy_kwh,price_per_kwh`, e.g.
  id,side,energy_kwh,price_per_kwh
  h01,sell,2.5,0.11
  h02,buy,1.2,0.25
Energies have at most 3 decimals (Wh), prices at most 6 (micro-currency).")]
    Clear(ClearArgs),
    /// Verify a whole ledger as a regulator would: every block, certificate
    /// and signature, every clearing and settlement re-run and compared.
    #[command(after_help = "Examples:
  gridshare audit ledger.export
  gridshare audit --data-dir ~/.local/share/gridshare-node --json

Exit status: 0 when the audit finds nothing, 1 when it finds anything,
2 when the ledger cannot be read at all.")]
    Audit(AuditArgs),
    /// Write the ledger in a node's data directory to one export file.
    #[command(after_help = "Example:
  gridshare export --data-dir ~/.local/share/gridshare-node --out ledger.export

The node must be stopped: its store is opened exclusively.")]
    Export(ExportArgs),
    /// Create, list, show, import and export keys: accounts, meters,
    /// registrars, validators.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key from a fresh random seed, encrypted with a passphrase.
    #[command(after_help = "Examples:
  gridshare keys new home
  gridshare keys new home-meter --role meter
  GRIDSHARE_PASSPHRASE=... gridshare keys new home    (scripts)
  gridshare keys new testnet-1 --insecure-plaintext   (testnets only)")]
    New {
        name: String,
        #[arg(long, value_enum, default_value_t = Role::Account)]
        role: Role,
        /// Store the secret unencrypted. Only for throwaway testnet keys.
        #[arg(long)]
        insecure_plaintext: bool,
    },
    /// List every key with its role and public key.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one key's role and public key.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Store an existing secret key, read as 64 hex digits from standard input.
    #[command(after_help = "Example:
  gridshare keys export old-name | gridshare keys import new-name --role account")]
    Import {
        name: String,
        #[arg(long, value_enum, default_value_t = Role::Account)]
        role: Role,
        #[arg(long)]
        insecure_plaintext: bool,
    },
    /// Print a key's secret seed as 64 hex digits (after its passphrase).
    Export { name: String },
}
#[derive(Debug, clap::Args)]
struct AuditArgs {
    /// An export file written by `gridshare export`.
    #[arg(value_name = "FILE", required_unless_present = "data_dir", conflicts_with = "data_dir")]
    file: Option<PathBuf>,
    /// A node's data directory instead of an export file.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print the report as JSON for programs.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// The node's data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The export file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ClearArgs {
    /// The order book: a CSV file with the header id,side,energy_kwh,price_per_kwh.
    #[arg(long, value_name = "FILE")]
    orders: PathBuf,
    /// How trades are priced.
    #[arg(long, value_enum, default_value_t = MechanismArg::Uniform)]
    mechanism: MechanismArg,
    /// Where the uniform price lies between the lowest (0) and highest (1)
    /// price that clears the market, with at most 3 decimals.
    #[arg(long, default_value = "0.5", value_parser = parse_k)]
    k: u16,
    /// Network fee in currency per kWh, paid by buyers on top of the price.
    #[arg(long, default_value = "0", value_parser = parse_price)]
    fee: u64,
    /// Print JSON for programs instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MechanismArg {
    /// Pay-as-clear: every trade at one clearing price.
    Uniform,
    /// Each trade at its buyer's limit price net of the fee.
    PayAsBid,
}

fn parse_k(text: &str) -> Result<u16, String> {
    let thousandths =
        parse_scaled(text, scale::FRACTION_TO_THOUSANDTHS).map_err(|error| error.to_string())?;
    u16::try_from(thousandths)
        .ok()
        .filter(|&k| k <= Params::K_THOUSANDTHS_MAX)
        .ok_or_else(|| format!("`{text}` is not between 0 and 1"))
}

fn parse_price(text: &str) -> Result<u64, String> {
    parse_scaled(text, scale::CURRENCY_TO_MICRO).map_err(|error| error.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Clear(args) => run_clear(&args).map(|()| ExitCode::SUCCESS),
        Command::Audit(args) => run_audit(&args),
        Command::Export(args) => run_export(&args).map(|()| ExitCode::SUCCESS),
        Command::Keys(command) => run_keys(cli.keystore, command).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn run_clear(args: &ClearArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.orders)
        .map_err(|error| anyhow::anyhow!("cannot open {}: {error}", args.orders.display()))?;
    let book = clear::read_orders(std::io::BufReader::new(file))
        .map_err(|error| anyhow::anyhow!("{}: {error}", args.orders.display()))?;
    let params = Params {
        mechanism: match args.mechanism {
            MechanismArg::Uniform => Mechanism::Uniform,
            MechanismArg::PayAsBid => Mechanism::PayAsBid,
        },
        k_thousandths: args.k,
        network_fee_micro_per_kwh: args.fee,
        limits: Limits::default(),
    };
    let clearing = clear::clear_book(book, &params)
        .map_err(|error| anyhow::anyhow!("{}: {error}", args.orders.display()))?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut stdout, &clear::to_json(&clearing))?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", clear::to_text(&params, &clearing))?;
    }
    stdout.flush()?;
    Ok(())
}

fn run_audit(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let report = match (&args.file, &args.data_dir) {
        (Some(file), _) => audit::audit_file(file)?,
        (None, Some(data_dir)) => audit::audit_data_dir(data_dir)?,
        (None, None) => anyhow::bail!("name an export file or a --data-dir"),
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut stdout, &audit::to_json(&report))?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", audit::to_text(&report))?;
    }
    stdout.flush()?;
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FINDING) })
}

fn run_export(args: &ExportArgs) -> anyhow::Result<()> {
    let blocks = audit::export_data_dir(&args.data_dir, &args.out)?;
    println!("Exported {blocks} blocks to {}", args.out.display());
    Ok(())
}

fn run_keys(dir: Option<PathBuf>, command: KeysCommand) -> anyhow::Result<()> {
    let keystore = Keystore::new(match dir {
        Some(dir) => dir,
        None => Keystore::default_dir()?,
    });
    let passphrase = |plaintext: bool| (!plaintext).then(PassphraseSource::from_env);
    let describe = |file: &KeyFile| {
        serde_json::json!({
            "name": file.name,
            "role": file.role.as_str(),
            "public_key": file.public_key,
            "encrypted": file.is_encrypted(),
        })
    };
    let mut stdout = std::io::stdout().lock();
    match command {
        KeysCommand::New { name, role, insecure_plaintext } => {
            let file = keystore.generate(&name, role, passphrase(insecure_plaintext).as_ref())?;
            writeln!(stdout, "Created {} key `{}`: {}", role.as_str(), file.name, file.public_key)?;
        }
        KeysCommand::Import { name, role, insecure_plaintext } => {
            let mut text = String::new();
            std::io::stdin().read_line(&mut text)?;
            let seed = parse_seed(&text)?;
            let file = keystore.import(&name, role, seed, passphrase(insecure_plaintext).as_ref())?;
            writeln!(stdout, "Imported {} key `{}`: {}", role.as_str(), file.name, file.public_key)?;
        }
        KeysCommand::Export { name } => {
            let keypair = keystore.unlock(&name, &PassphraseSource::from_env())?;
            writeln!(stdout, "{}", hex::encode(keypair.seed()))?;
        }
        KeysCommand::List { json } => {
            let files = keystore.list()?;
            if json {
                let keys: Vec<serde_json::Value> = files.iter().map(describe).collect();
                writeln!(stdout, "{}", serde_json::Value::Array(keys))?;
            } else if files.is_empty() {
                writeln!(
                    stdout,
                    "No keys in {}: create one with `gridshare keys new NAME`.",
                    keystore.dir().display()
                )?;
            } else {
                let rows: Vec<Vec<String>> = files
                    .iter()
                    .map(|file| {
                        let encrypted = if file.is_encrypted() { "yes" } else { "NO" };
                        vec![
                            file.name.clone(),
                            file.role.as_str().into(),
                            file.public_key.clone(),
                            encrypted.into(),
                        ]
                    })
                    .collect();
                let header = [
                    ("NAME", Align::Left),
                    ("ROLE", Align::Left),
                    ("PUBLIC KEY", Align::Left),
                    ("ENCRYPTED", Align::Left),
                ];
                write!(stdout, "{}", table::render(&header, &rows))?;
            }
        }
        KeysCommand::Show { name, json } => {
            let file = keystore.get(&name)?;
            if json {
                writeln!(stdout, "{}", describe(&file))?;
            } else {
                writeln!(stdout, "Name        {}", file.name)?;
                writeln!(stdout, "Role        {}", file.role.as_str())?;
                writeln!(stdout, "Public key  {}", file.public_key)?;
                writeln!(
                    stdout,
                    "Encrypted   {}",
                    if file.is_encrypted() { "yes" } else { "no (plain text)" }
                )?;
            }
        }
    }
    stdout.flush()?;
    Ok(())
}
