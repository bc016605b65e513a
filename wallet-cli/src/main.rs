//! `gridshare`: the command line for households, registrars and auditors.
//! Parses arguments and wires them to the library; no logic lives here.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use gridshare_api::client::{CA_CERT_ENV, Client, DEFAULT_NODE_URL, NODE_ENV, Timeouts};
use gridshare_api::report::{Per, Report, ReportFormat, ReportKind, Request, time_zone};
use gridshare_cli::agent::{AgentArgs, AgentRunArgs};
use gridshare_cli::amount::{AmountError, parse_fraction_thousandths, parse_scaled, scale};
use gridshare_cli::audit::{Blocks, LedgerAccessError, LedgerSource};
use gridshare_cli::bulk::BulkArgs;
use gridshare_cli::gateway::MeterRunArgs;
use gridshare_cli::grid::{LimitsArgs, ZoneArgs, ZoneMeterArgs, ZonesArgs};
use gridshare_cli::household::{
    BalanceArgs, BillArgs, CancelArgs, MeterReportArgs, OfferArgs, OffersArgs, TradesArgs,
};
use gridshare_cli::keystore::{KeyFile, Keystore, PassphraseSource, Role, parse_seed};
use gridshare_cli::market::MarketArgs;
use gridshare_cli::market_time::parse_when;
use gridshare_cli::openadr::BridgeArgs;
use gridshare_cli::prove::ProveArgs;
use gridshare_cli::registrar::{
    Direction, MoneyArgs, RegisterAccountArgs, RegisterMeterArgs, TariffsSetArgs,
};
use gridshare_cli::table::{self, Align};
use gridshare_cli::wallet::{CommandError, EXIT_BAD_INPUT, EXIT_FINDING, EXIT_TRANSIENT, Wallet};
use gridshare_cli::watch::WatchArgs;
use gridshare_cli::{
    agent, audit, bulk, clear, gateway, grid, household, market, openadr, prove, registrar, tariffs, watch,
};
use gridshare_ledger::tx::Side;
use gridshare_matching::{Limits, Mechanism, Params};

#[derive(Debug, Parser)]
#[command(name = "gridshare", version, about = "Trade energy with your neighbours on a Gridshare ledger")]
struct Cli {
    /// The keystore directory (default: $GRIDSHARE_KEYSTORE, else the user's
    /// data directory's gridshare/keys).
    #[arg(long, global = true, value_name = "DIR")]
    keystore: Option<PathBuf>,
    /// The node's HTTP API (default: $GRIDSHARE_NODE, else http://127.0.0.1:8700).
    #[arg(long, global = true, value_name = "URL")]
    node: Option<String>,
    /// For a node behind https whose certificate a private CA signed: that
    /// CA's certificate (PEM), the only one trusted then (default:
    /// $GRIDSHARE_CA_CERT, else the public web's roots).
    #[arg(long, global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Appends the exit statuses of a command that submits a transaction to its
/// examples.
macro_rules! with_exit_status {
    ($examples:literal) => {
        concat!(
            $examples,
            "\n\nExit status: 0 admitted; 1 the node rejected it (the reason is printed);\n",
            "2 bad usage or input (nothing was sent); 3 the node could not be reached or was\n",
            "busy or failing (try again later)."
        )
    };
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a shell's completion script for gridshare.
    #[command(after_help = "Examples:
  gridshare completions bash > ~/.local/share/bash-completion/completions/gridshare
  gridshare completions zsh > ~/.zfunc/_gridshare")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages of gridshare and each of its commands.
    #[command(after_help = "Example:
  gridshare man --out ./man && man ./man/gridshare-offer.1")]
    Man {
        /// The directory to write the pages to (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Offer to buy or sell energy in a delivery interval.
    #[command(
        subcommand,
        after_help = "Examples:
  gridshare offer sell 2.5kWh --price 0.11
  gridshare offer buy 800Wh --price 0.30 --interval +1"
    )]
    Offer(OfferCommand),
    /// List your open offers.
    #[command(after_help = "Examples:
  gridshare offers
  gridshare offers --from home --interval next --json")]
    Offers(OffersArgs),
    /// Cancel an open offer before its interval's gate closure.
    #[command(after_help = with_exit_status!("Example:
  gridshare cancel 3f2a...c9 (the id as `gridshare offers` lists it)"))]
    Cancel(CancelArgs),
    /// Show your balance, reservations, credit limit and what is available.
    #[command(after_help = "Examples:
  gridshare balance
  gridshare balance --from home --json")]
    Balance(BalanceArgs),
    /// List your trades in cleared intervals.
    #[command(after_help = "Examples:
  gridshare trades                              (the last 24 cleared intervals)
  gridshare trades --interval 1234
  gridshare trades --from-interval 1200 --to-interval 1290 --json")]
    Trades(TradesArgs),
    /// Show your itemised bills: traded energy and money, fees, the
    /// deviation from what you traded, grid import and feed-in at tariff.
    #[command(after_help = "Examples:
  gridshare bill                                (the last 24 settled intervals)
  gridshare bill --interval 1234                (one interval, line by line)
  gridshare bill --day 2026-11-21 --json        (a UTC day)
  gridshare bill --day 2026-11-21 --tz Europe/Amsterdam")]
    Bill(BillArgs),
    /// Show an interval's market: clearing price, volume, the supply and
    /// demand curves as a chart, the book and the trades.
    #[command(after_help = "Examples:
  gridshare market                              (the latest cleared interval)
  gridshare market --interval next              (the book so far)
  gridshare market --interval 2026-11-21T17:20Z --json")]
    Market(MarketArgs),
    /// Report meter readings.
    #[command(
        subcommand,
        after_help = "Example:
  gridshare meter report --meter home-meter --import-kwh 1520.4 --export-kwh 3310.25"
    )]
    Meter(MeterCommand),
    /// Run the household's trading agent, or see what it did.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Verify, here, that an offer, your trades or your bill are in a block
    /// the validators certified.
    #[command(after_help = "Examples:
  gridshare prove 3f2a...c9                     (an offer, or any transaction, by id)
  gridshare prove trade 1234                    (your trades in interval 1234)
  gridshare prove bill 1234 --genesis dev-ledger/genesis.bin

The proof is checked with the genesis only: the commit certificate against
the validators, then the Merkle inclusion against the certified header.
Exit status: 0 verified; 1 verification failed; 2 bad input or no node.")]
    Prove(ProveArgs),
    /// Follow the node and print clearings and settlements as they happen.
    #[command(after_help = "Examples:
  gridshare watch
  gridshare watch --json | jq .                 (one JSON object a line)

Runs until Ctrl-C.")]
    Watch(WatchArgs),
    /// Registrar: register an account or a meter.
    #[command(
        subcommand,
        after_help = "Examples:
  gridshare register account home --credit-limit 0
  gridshare register meter home-meter --owner home --max-import-kw 11 --max-export-kw 7.4"
    )]
    Register(RegisterCommand),
    /// Registrar: credit an account with money paid in outside the ledger.
    #[command(after_help = with_exit_status!("Examples:
  gridshare credit home 50 --reference \"transfer 2026-11-21\"
  gridshare credit 3f2a...c9 12.50EUR --reference INV-0042 --as registrar"))]
    Credit(MoneyArgs),
    /// Registrar: debit an account for money paid out outside the ledger.
    #[command(after_help = with_exit_status!("Example:
  gridshare debit home 20 --reference \"payout 2026-11\""))]
    Debit(MoneyArgs),
    /// Grid tariffs and the network fee: the registrar's schedule, the
    /// intervals' own (dynamic) tariffs.
    #[command(
        subcommand,
        after_help = "Example:
  gridshare tariffs set --import 0.30 --feed-in 0.08 --network-fee 0.02 --from-interval next"
    )]
    Tariffs(TariffsCommand),
    /// The grid's zones: their limits and flows, and the DSO's limits.
    #[command(
        subcommand,
        after_help = "Examples:
  gridshare grid zones
  gridshare grid zone feeder-2 --from-interval 1200
  gridshare grid limits --zone feeder-2 --import-max 5kWh --export-max none --intervals 4 --as dso"
    )]
    Grid(GridCommand),
    /// DSO: bring the grid operator's OpenADR 3 events onto the ledger.
    #[command(subcommand)]
    Dso(DsoCommand),
    /// Clear a book of orders with the Gridshare auction and print the trades.
    #[command(after_help = "Examples:
  gridshare clear --orders examples/community-book.csv
  gridshare clear --orders book.csv --mechanism pay-as-bid --fee 0.03 --json
  gridshare clear --orders examples/zonal-book.csv --zones examples/zones.csv

The file is CSV with the header `id,side,energy_kwh,price_per_kwh`, e.g.
  id,side,energy_kwh,price_per_kwh
  h01,sell,2.5,0.11
  h02,buy,1.2,0.25
Energies have at most 3 decimals (Wh), prices at most 6 (micro-currency).
With a last `zone` column, --zones gives each zone's limits per interval:
  zone,import_wh_max,export_wh_max
  feeder-a,0,400
and a congested zone gets its own price (docs/AUCTION.md §6).")]
    Clear(ClearArgs),
    /// Verify a whole ledger as a regulator would: every block, certificate
    /// and signature, every clearing and settlement re-run and compared.
    #[command(after_help = "Examples:
  gridshare audit ledger.export
  gridshare audit --data-dir ~/.local/share/gridshare-node --json
  gridshare audit --node http://127.0.0.1:8700  (downloads the node's export)

Exit status: 0 when the audit finds nothing, 1 when it finds anything,
2 when the ledger cannot be read at all.")]
    Audit(AuditArgs),
    /// Write a node's ledger to one export file: from its data directory, or
    /// over its API.
    #[command(after_help = "Examples:
  gridshare export --data-dir ~/.local/share/gridshare-node --out ledger.export
  gridshare export --node http://127.0.0.1:8700 --out ledger.export

With --data-dir the node must be stopped: its store is opened exclusively.
With --node it keeps running.")]
    Export(ExportArgs),
    /// Write a report a spreadsheet opens: clearings, trades, bills or meter
    /// readings of the intervals that start between two times.
    #[command(after_help = "Examples:
  gridshare report bills --from 2026-11-01 --to 2026-12-01 --tz Europe/Amsterdam --per day > bills.csv
  gridshare report trades --from -24h                  (the last day, from the node of --node)
  gridshare report clearings ledger.export --from 2026-11-21T00:00+01:00 --to 2026-11-22T00:00+01:00
  gridshare report readings --data-dir ./node --from 2026-11-21 --format json

Times: RFC 3339 (2026-11-21T17:20Z, 2026-11-21T18:20+01:00), a date (midnight in
--tz), a time without zone (in --tz), now, or a duration from now (-24h, -P1D,
+15m, PT15M). An interval is in the report when its start is in [--from, --to);
a report covers at most 366 days. Interval times are written in --tz with
their offset; energy in kWh (3 decimals), prices per kWh (6), money in the
currency (9 decimals, exact).")]
    Report(ReportArgs),
    /// Create, list, show, import and export keys: accounts, meters,
    /// registrars, validators.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum OfferCommand {
    /// Offer to sell energy: at least --price per kWh.
    #[command(after_help = with_exit_status!("Examples:
  gridshare offer sell 2.5kWh --price 0.11
  gridshare offer sell 2500Wh --price 0.11 --interval +2 --from home --meter home-meter
  gridshare offer sell 1.2 --price 0.10 --interval 2026-11-21T17:20Z --json

Intervals: next (the first whose gate closes at least 2 s from now), +N
(N after next), an interval number, or a time in the interval with its zone
(2026-11-21T17:20Z, 2026-11-21T18:20+01:00)."))]
    Sell(OfferArgs),
    /// Offer to buy energy: at most --price per kWh, network fee included.
    #[command(after_help = with_exit_status!("Examples:
  gridshare offer buy 2.5kWh --price 0.25
  gridshare offer buy 800Wh --price 0.30 --interval +1 --from home

A buy reserves energy × price until the interval clears."))]
    Buy(OfferArgs),
}

#[derive(Debug, Subcommand)]
enum MeterCommand {
    /// Sign and submit a meter's cumulative registers at the end of an interval.
    #[command(after_help = with_exit_status!("Examples:
  gridshare meter report --meter home-meter --import-kwh 1520.4 --export-kwh 3310.25
  gridshare meter report --meter home-meter --import-kwh 1520.4 --export-kwh 3310.25 --interval 1233"))]
    Report(MeterReportArgs),
    /// Run a meter gateway: read a smart meter's DSMR 5 P1 port and sign its
    /// registers at every interval end, unattended.
    #[command(after_help = "Examples:
  gridshare --keystore ~/.local/share/gridshare/gateway meter run --p1 tcp://192.168.1.40:23
  gridshare --keystore /var/lib/gridshare/gateway meter run --p1 /dev/ttyUSB0 \\
      --passphrase-file \"$CREDENTIALS_DIRECTORY/meter-passphrase\" --json

The meter key must be the keystore's only kind of key: a gateway holds no
account key. A telegram with a bad CRC, a missing register or a register
that went down is skipped, counted and logged (standard error), never signed.

A node that cannot be reached is waited for (1 s, 2 s, ... up to 30 s).

Exit status: 0 after --intervals interval ends; 2 bad usage or input, or an
unregistered meter.")]
    Run(MeterRunArgs),
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Every interval, before gate closure: forecast the household's net
    /// export from its meters' readings, plan its battery and EV, and offer
    /// the rest (docs/AGENT.md).
    #[command(after_help = "Examples:
  gridshare agent run --config agent.toml --dry-run
  gridshare agent run --config /etc/gridshare/agent.toml \\
      --passphrase-file \"$CREDENTIALS_DIRECTORY/account-passphrase\" --json

A node that cannot be reached is waited for (1 s, 2 s, ... up to 30 s).

Exit status: 0 after --intervals decisions; 2 bad usage, a bad configuration
(the field is named), an unknown account or a wrong passphrase.")]
    Run(AgentRunArgs),
    /// The agent's last decisions, its forecast's accuracy and its battery.
    #[command(after_help = "Example:
  gridshare agent status --config agent.toml")]
    Status(AgentArgs),
}

#[derive(Debug, Subcommand)]
enum RegisterCommand {
    /// Register an account with a credit limit.
    #[command(after_help = with_exit_status!("Examples:
  gridshare register account home --credit-limit 0
  gridshare register account 3f2a...c9 --credit-limit 50 --as registrar"))]
    Account(RegisterAccountArgs),
    /// Register a meter of an account with its power limits.
    #[command(after_help = with_exit_status!("Example:
  gridshare register meter home-meter --owner home --max-import-kw 11 --max-export-kw 7.4 --zone north

An account may offer, per interval, what its meters can move at their limits."))]
    Meter(RegisterMeterArgs),
    /// Register a street of accounts and meters from a CSV file, skipping
    /// what the ledger has already (run it again after a stop).
    #[command(after_help = "Example:
  gridshare register bulk street.csv

The file is CSV with the header account,credit_limit,meter,max_import_kw,max_export_kw,zone,
a line per meter (an account without a meter leaves the meter columns empty):
  account,credit_limit,meter,max_import_kw,max_export_kw,zone
  3f2a...c9,0,8b1e...07,11,7.4,north
A line with a bad field is refused before anything is sent, naming the line and
field. Exit status: 0 every entry registered or already registered; 1 the node
refused some (each is printed); 2 bad input; 3 the node could not be reached.")]
    Bulk(BulkArgs),
}

#[derive(Debug, Subcommand)]
enum TariffsCommand {
    /// Set the grid import and feed-in tariffs and the network fee from an interval on.
    #[command(after_help = with_exit_status!("Examples:
  gridshare tariffs set --import 0.30 --feed-in 0.08 --network-fee 0.02 --from-interval next
  gridshare tariffs set --import 0.28 --feed-in 0.07 --network-fee 0.02 --from-interval 5000"))]
    Set(TariffsSetArgs),
    /// Show the tariff schedule and the intervals with tariffs of their own.
    Show(tariffs::ShowArgs),
    /// DSO or registrar: tariffs for a run of intervals still open for
    /// offers (dynamic tariffs), in place of the schedule's for them alone.
    #[command(after_help = with_exit_status!("Examples:
  gridshare tariffs interval --import 0.42 --from-interval next --intervals 4
  gridshare tariffs interval --network-fee 0.01 --feed-in 0.02 --from-interval 5000 --intervals 8 --as dso
  gridshare tariffs interval --from-interval 5000   # removes interval 5000's own tariffs

A tariff left out keeps the schedule's in those intervals."))]
    Interval(tariffs::IntervalArgs),
}

#[derive(Debug, Subcommand)]
enum GridCommand {
    /// List the zones: limits, meters and the DSO's limits to come.
    Zones(ZonesArgs),
    /// Show a zone interval by interval: price, traded and measured flows
    /// against its limits.
    Zone(ZoneArgs),
    /// DSO: limit what a zone imports and exports per interval, for
    /// intervals still open for offers.
    #[command(after_help = with_exit_status!("Examples:
  gridshare grid limits --zone feeder-2 --import-max 5kWh --export-max 25kWh
  gridshare grid limits --zone feeder-2 --import-max 0 --export-max none --from-interval 5000 --intervals 8"))]
    Limits(LimitsArgs),
    /// DSO: register a zone's own meter (its transformer's), which bills
    /// nobody: settlement sets what it measured beside the zone's household
    /// meters, and `grid zone` shows the difference as the zone's losses.
    #[command(after_help = with_exit_status!("Example:
  gridshare keys new feeder-2-meter --role meter --insecure-plaintext
  gridshare grid zone-meter feeder-2-meter --zone feeder-2 --max-import-kw 400 --max-export-kw 400

Its readings are sent like any meter's: a meter gateway (gridshare meter run) with the key
in its own keystore, or gridshare meter report --meter feeder-2-meter --import-kwh ... --export-kwh ..."))]
    ZoneMeter(ZoneMeterArgs),
}

#[derive(Debug, Subcommand)]
enum DsoCommand {
    /// An OpenADR 3 VEN: read the DSO's events from a VTN and put the
    /// capacity limits of the events that target the community's zones, and
    /// the prices of those for the whole community, on the ledger, once;
    /// report the events it cannot map.
    #[command(after_help = with_exit_status!("Examples:
  gridshare dso bridge --vtn https://vtn.example:8443 --client-id gridshare-ven --as dso
  GRIDSHARE_VTN_SECRET=... gridshare dso bridge --vtn https://vtn.example --client-id ven --every 60

An event's targets name the zones it limits; its intervals must cover whole
intervals of the ledger; IMPORT_CAPACITY_LIMIT and EXPORT_CAPACITY_LIMIT in
KW (or KWH for one interval) become each zone's limits; PRICE and EXPORT_PRICE
per KWH in the community's currency become the intervals' import and feed-in
tariffs (docs/OPENADR.md). The VTN is https://, or http:// on loopback only."))]
    Bridge(BridgeArgs),
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
    /// An export file written by `gridshare export` (or give --data-dir, or
    /// --node to audit what a running node serves).
    #[arg(value_name = "FILE", conflicts_with = "data_dir")]
    file: Option<PathBuf>,
    /// A node's data directory instead of an export file.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print the report as JSON for programs.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// What to report: clearings, trades, bills or readings.
    #[arg(value_parser = |text: &str| text.parse::<ReportKind>())]
    kind: ReportKind,
    /// An export file (or give --data-dir, or --node to read what a running
    /// node serves; by default the node of --node or $GRIDSHARE_NODE).
    #[arg(value_name = "FILE", conflicts_with = "data_dir")]
    file: Option<PathBuf>,
    /// A node's data directory instead of an export file (the node stopped).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The first time of the range (see Times below).
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    from: String,
    /// The end of the range, excluded.
    #[arg(long, value_name = "WHEN", default_value = "now", allow_hyphen_values = true)]
    to: String,
    /// The time zone times are read and written in: an IANA name.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    tz: String,
    /// Bills only: one row per account and interval (interval), or summed
    /// per local day (day) or month (month).
    #[arg(long, default_value = "interval", value_parser = |text: &str| text.parse::<Per>())]
    per: Per,
    /// csv or json.
    #[arg(long, default_value = "csv", value_parser = |text: &str| text.parse::<ReportFormat>())]
    format: ReportFormat,
    /// Write the report to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// The node's data directory (or give --node to export over its API).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The export file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ClearArgs {
    /// The order book: a CSV file with the header id,side,energy_kwh,price_per_kwh.
    #[arg(long, value_name = "FILE")]
    orders: PathBuf,
    /// The zones' limits, for orders with a zone column (docs/AUCTION.md
    /// §6): a CSV file with the header zone,import_wh_max,export_wh_max.
    #[arg(long, value_name = "FILE")]
    zones: Option<PathBuf>,
    /// How trades are priced.
    #[arg(long, value_enum, default_value_t = MechanismArg::Uniform)]
    mechanism: MechanismArg,
    /// Where the uniform price lies between the lowest (0) and highest (1)
    /// price that clears the market, with at most 3 decimals.
    #[arg(long, default_value = "0.5", value_parser = parse_fraction_thousandths)]
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

fn parse_price(text: &str) -> Result<u64, AmountError> {
    parse_scaled(text, scale::CURRENCY_TO_MICRO)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Completions { shell } => {
            // Made in memory, where writing cannot fail; a closed pipe then
            // is an error, not a panic.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "gridshare", &mut script);
            std::io::stdout()
                .lock()
                .write_all(&script)
                .map_err(anyhow::Error::from)
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Man { out } => write_manual(&out).map(|()| ExitCode::SUCCESS),
        Command::Clear(args) => run_clear(&args).map(|()| ExitCode::SUCCESS),
        Command::Audit(args) => run_audit(&args, &NodeChoice::of(cli.node, cli.ca_cert)),
        Command::Export(args) => {
            run_export(&args, &NodeChoice::of(cli.node, cli.ca_cert)).map(|()| ExitCode::SUCCESS)
        }
        Command::Report(args) => {
            run_report(&args, &NodeChoice::of(cli.node, cli.ca_cert)).map(|()| ExitCode::SUCCESS)
        }
        Command::Keys(command) => run_keys(cli.keystore, command).map(|()| ExitCode::SUCCESS),
        command => run_node_command(cli.keystore, &NodeChoice::of(cli.node, cli.ca_cert), command)
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            let code = match (error.downcast_ref::<CommandError>(), error.downcast_ref::<LedgerAccessError>())
            {
                (Some(error), _) => error.exit_code(),
                (None, Some(LedgerAccessError::Node(error))) if error.is_transient() => EXIT_TRANSIENT,
                _ => EXIT_BAD_INPUT,
            };
            ExitCode::from(code)
        }
    }
}

/// The node a command talks to and how its https is trusted: --node or
/// $GRIDSHARE_NODE, and --ca-cert or $GRIDSHARE_CA_CERT.
#[derive(Debug)]
struct NodeChoice {
    url: Option<String>,
    ca_cert: Option<PathBuf>,
}

impl NodeChoice {
    fn of(url: Option<String>, ca_cert: Option<PathBuf>) -> NodeChoice {
        let from_env = |name| std::env::var(name).ok().filter(|value: &String| !value.trim().is_empty());
        NodeChoice {
            url: url.or_else(|| from_env(NODE_ENV)),
            ca_cert: ca_cert.or_else(|| from_env(CA_CERT_ENV).map(PathBuf::from)),
        }
    }

    /// A client of the node named, if one was.
    fn explicit(&self) -> anyhow::Result<Option<Client>> {
        self.url.as_deref().map(|url| self.client_of(url)).transpose()
    }

    /// A client of the node named, else of the default address.
    fn client(&self) -> anyhow::Result<Client> {
        self.client_of(self.url.as_deref().unwrap_or(DEFAULT_NODE_URL))
    }

    fn client_of(&self, url: &str) -> anyhow::Result<Client> {
        let client = match &self.ca_cert {
            None => Client::new(url),
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
                Client::with_ca(url, Timeouts::default(), &pem)
            }
        };
        Ok(client.map_err(CommandError::from)?)
    }
}

fn keystore_of(dir: Option<PathBuf>) -> anyhow::Result<Keystore> {
    Ok(Keystore::new(match dir {
        Some(dir) => dir,
        None => Keystore::default_dir()?,
    }))
}

/// The commands that talk to a node.
fn run_node_command(keystore: Option<PathBuf>, node: &NodeChoice, command: Command) -> anyhow::Result<()> {
    let node = node.client()?;
    let wallet = Wallet::new(keystore_of(keystore)?, node);
    let mut stdout = std::io::stdout().lock();
    let out: &mut dyn Write = &mut stdout;
    let result = match &command {
        Command::Offer(OfferCommand::Sell(args)) => household::offer(&wallet, Side::Sell, args, out),
        Command::Offer(OfferCommand::Buy(args)) => household::offer(&wallet, Side::Buy, args, out),
        Command::Offers(args) => household::offers(&wallet, args, out),
        Command::Cancel(args) => household::cancel(&wallet, args, out),
        Command::Balance(args) => household::balance(&wallet, args, out),
        Command::Trades(args) => household::trades(&wallet, args, out),
        Command::Bill(args) => household::bill(&wallet, args, out),
        Command::Market(args) => market::market(&wallet, args, out),
        Command::Meter(MeterCommand::Report(args)) => household::meter_report(&wallet, args, out),
        Command::Meter(MeterCommand::Run(args)) => gateway::meter_run(&wallet, args, out),
        Command::Agent(AgentCommand::Run(args)) => agent::agent_run(&wallet, args, out),
        Command::Agent(AgentCommand::Status(args)) => agent::agent_status(&wallet, args, out),
        Command::Prove(args) => prove::prove(&wallet, args, out),
        Command::Watch(args) => watch::watch(&wallet, args, out),
        Command::Register(RegisterCommand::Account(args)) => registrar::register_account(&wallet, args, out),
        Command::Register(RegisterCommand::Meter(args)) => registrar::register_meter(&wallet, args, out),
        Command::Register(RegisterCommand::Bulk(args)) => bulk::register_bulk(&wallet, args, out),
        Command::Credit(args) => registrar::move_money(&wallet, Direction::Credit, args, out),
        Command::Debit(args) => registrar::move_money(&wallet, Direction::Debit, args, out),
        Command::Tariffs(TariffsCommand::Set(args)) => registrar::set_tariffs(&wallet, args, out),
        Command::Tariffs(TariffsCommand::Show(args)) => tariffs::show(&wallet, args, out),
        Command::Tariffs(TariffsCommand::Interval(args)) => tariffs::set_interval(&wallet, args, out),
        Command::Grid(GridCommand::Zones(args)) => grid::zones(&wallet, args, out),
        Command::Grid(GridCommand::Zone(args)) => grid::zone(&wallet, args, out),
        Command::Grid(GridCommand::Limits(args)) => grid::set_limits(&wallet, args, out),
        Command::Grid(GridCommand::ZoneMeter(args)) => grid::register_zone_meter(&wallet, args, out),
        Command::Dso(DsoCommand::Bridge(args)) => openadr::bridge(&wallet, args, out),
        Command::Clear(_)
        | Command::Audit(_)
        | Command::Export(_)
        | Command::Report(_)
        | Command::Keys(_)
        | Command::Completions { .. }
        | Command::Man { .. } => {
            unreachable!("dispatched in main")
        }
    };
    let flushed = out.flush().map_err(CommandError::from);
    result.and(flushed)?;
    Ok(())
}

/// One page for gridshare and one for each of its commands, in `out`.
fn write_manual(out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)
        .map_err(|error| anyhow::anyhow!("cannot make {}: {error}", out.display()))?;
    clap_mangen::generate_to(Cli::command(), out)
        .map_err(|error| anyhow::anyhow!("cannot write the pages to {}: {error}", out.display()))?;
    Ok(())
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
    let orders_error = |error| anyhow::anyhow!("{}: {error}", args.orders.display());
    // A million fills make one JSON line: buffered, not line by line.
    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match &args.zones {
        None => {
            let clearing = clear::clear_book(book, &params).map_err(orders_error)?;
            if args.json {
                serde_json::to_writer(&mut stdout, &clear::to_json(&clearing))?;
                writeln!(stdout)?;
            } else {
                write!(stdout, "{}", clear::to_text(&params, &clearing))?;
            }
        }
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|error| anyhow::anyhow!("cannot open {}: {error}", path.display()))?;
            let zones = clear::read_zones(std::io::BufReader::new(file))
                .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
            let clearing = clear::clear_zonal_book(book, &zones, &params).map_err(orders_error)?;
            if args.json {
                serde_json::to_writer(&mut stdout, &clear::to_zonal_json(&clearing, &zones))?;
                writeln!(stdout)?;
            } else {
                write!(stdout, "{}", clear::to_text(&params, &clearing.clearing))?;
                write!(stdout, "{}", clear::zones_to_text(&clearing, &zones))?;
            }
        }
    }
    stdout.flush()?;
    Ok(())
}

fn run_audit(args: &AuditArgs, node: &NodeChoice) -> anyhow::Result<ExitCode> {
    let client = if args.file.is_none() && args.data_dir.is_none() { node.explicit()? } else { None };
    let report = match (&args.file, &args.data_dir, client) {
        (Some(file), _, _) => audit::audit_file(file)?,
        (None, Some(data_dir), _) => audit::audit_data_dir(data_dir)?,
        (None, None, Some(client)) => audit::audit_node(&client)?,
        (None, None, None) => anyhow::bail!("name an export file, a --data-dir or a --node URL"),
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

fn run_report(args: &ReportArgs, node: &NodeChoice) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let tz = time_zone(&args.tz)?;
    let range = (parse_when(&args.from, now, &tz)?, parse_when(&args.to, now, &tz)?);
    let request = Request::new(args.kind, range, tz, args.per, args.format)?;
    // Without a file or a data directory, the node (by default the local one).
    let client = if args.file.is_none() && args.data_dir.is_none() { Some(node.client()?) } else { None };
    let source = match (&args.file, &args.data_dir, &client) {
        (Some(file), _, _) => LedgerSource::File(file),
        (None, Some(data_dir), _) => LedgerSource::DataDir(data_dir),
        (None, None, Some(client)) => LedgerSource::Node(client),
        (None, None, None) => anyhow::bail!("name an export file, a --data-dir or a --node URL"),
    };
    let mut blocks = Blocks::open(source)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut report = Report::new(&request, blocks.genesis().clone(), &mut out)?;
    while let Some(block) = blocks.next_block()? {
        report.block(&block)?;
    }
    let rows = report.finish()?;
    if let Some(path) = &args.out {
        eprintln!("Wrote {rows} rows to {}", path.display());
    }
    Ok(())
}

fn run_export(args: &ExportArgs, node: &NodeChoice) -> anyhow::Result<()> {
    let client = if args.data_dir.is_none() { node.explicit()? } else { None };
    match (&args.data_dir, client) {
        (Some(data_dir), _) => {
            let blocks = audit::export_data_dir(data_dir, &args.out)?;
            println!("Exported {blocks} blocks to {}", args.out.display());
        }
        (None, Some(client)) => {
            let blocks = audit::export_node(&client, &args.out)?;
            println!("Exported {blocks} blocks from {} to {}", client.url(), args.out.display());
        }
        (None, None) => anyhow::bail!("name the node's --data-dir, or its API with --node URL"),
    }
    Ok(())
}

fn run_keys(dir: Option<PathBuf>, command: KeysCommand) -> anyhow::Result<()> {
    let keystore = keystore_of(dir)?;
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
