//! The `gridshare-sim` command: parses `run` and `sweep`, runs the library
//! and prints the report (text, or JSON with `--json`). A failing run
//! prints its seed and the command that reproduces it and exits 1; bad
//! arguments exit 2.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gridshare_sim::config::default_household_nodes;
use gridshare_sim::faults::parse_faults;
use gridshare_sim::{Config, Report, command, report};

#[derive(Debug, Parser)]
#[command(
    name = "gridshare-sim",
    version,
    about = "A deterministic simulation of a whole Gridshare community"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one community with one seed and prints its report.
    Run {
        #[command(flatten)]
        community: Community,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Runs the community with each seed of a range, one line each, and
    /// stops at the first that fails.
    Sweep {
        #[command(flatten)]
        community: Community,
        /// Seeds `A..B` (B excluded) or `A..=B`.
        #[arg(long, value_name = "A..B")]
        seeds: String,
    },
}

#[derive(Debug, Args)]
struct Community {
    #[arg(long, default_value_t = 100)]
    households: u32,
    #[arg(long, default_value_t = 4)]
    validators: u32,
    /// Household nodes (households share them round robin); default one per
    /// 50 households, at most 20.
    #[arg(long)]
    household_nodes: Option<u32>,
    /// Intervals of trading.
    #[arg(long, default_value_t = 12)]
    intervals: u64,
    /// Offers per household per interval (a price ladder).
    #[arg(long, default_value_t = 1)]
    offers_per_interval: u32,
    /// The length of a delivery interval (gate closure 1.5 s before it
    /// starts, settlement 2 s after it ends).
    #[arg(long, default_value_t = 4_000)]
    interval_ms: u64,
    /// Faults, comma separated, each KIND or KIND=N: loss, duplicate,
    /// reorder, partition, crash, skew, flood, overload; or all.
    #[arg(long, default_value = "")]
    faults: String,
    /// Every node's modelled CPU cost this many times as high (4: nodes that
    /// get a quarter of a core, as eight processes on two cores do).
    #[arg(long, default_value_t = 1)]
    cpu_slowdown: u64,
}

/// Why the arguments describe no runnable community.
#[derive(Debug, thiserror::Error)]
enum BadArguments {
    #[error(transparent)]
    Faults(#[from] gridshare_sim::faults::FaultError),
    #[error(transparent)]
    Config(#[from] gridshare_sim::config::ConfigError),
}

/// Why a run ended without a report.
#[derive(Debug, thiserror::Error)]
enum RunFailure {
    #[error(transparent)]
    Run(#[from] gridshare_sim::RunError),
    /// A broken invariant of the simulated code, with the panic's message.
    #[error("the run panicked: {0}")]
    Panicked(String),
}

impl Community {
    fn config(&self, seed: u64) -> Result<Config, BadArguments> {
        let mut config = Config::new(seed, self.households, self.validators, self.intervals);
        config.household_nodes =
            self.household_nodes.unwrap_or_else(|| default_household_nodes(self.households));
        config.market.offers_per_interval = self.offers_per_interval.clamp(1, 32);
        config.market.interval_ms = self.interval_ms;
        config.faults = parse_faults(&self.faults)?;
        config.cpu_slowdown = self.cpu_slowdown;
        config.costs = config.costs.slowed(self.cpu_slowdown);
        config.check()?;
        Ok(config)
    }
}

/// Runs `config`, a panic (a broken invariant) included in what fails.
fn run(config: &Config) -> Result<Report, RunFailure> {
    match std::panic::catch_unwind(|| gridshare_sim::run(config)) {
        Ok(result) => Ok(result?),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_string()))
                .unwrap_or_default();
            Err(RunFailure::Panicked(message))
        }
    }
}

fn failed(config: &Config, why: &str) -> ExitCode {
    eprintln!("FAILED with seed {}: {why}", config.seed);
    eprintln!("reproduce with: {}", command(config));
    ExitCode::from(1)
}

/// `A..B` or `A..=B`.
fn parse_seeds(text: &str) -> Result<std::ops::RangeInclusive<u64>, String> {
    let bad = || format!("--seeds: `{text}` is not a range such as 1..50 or 1..=50");
    let (start, end, inclusive) = match text.split_once("..=") {
        Some((start, end)) => (start, end, true),
        None => {
            let (start, end) = text.split_once("..").ok_or_else(bad)?;
            (start, end, false)
        }
    };
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    let end = if inclusive { end } else { end.checked_sub(1).ok_or_else(bad)? };
    if end < start {
        return Err(bad());
    }
    Ok(start..=end)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { community, seed, json } => {
            let config = match community.config(seed) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::from(2);
                }
            };
            let report = match run(&config) {
                Ok(report) => report,
                Err(why) => return failed(&config, &why.to_string()),
            };
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(error) => return failed(&config, &error.to_string()),
                }
            } else {
                print!("{}", report::text(&report));
            }
            if report.passed { ExitCode::SUCCESS } else { failed(&config, "a check failed") }
        }
        Command::Sweep { community, seeds } => {
            let seeds = match parse_seeds(&seeds) {
                Ok(seeds) => seeds,
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::from(2);
                }
            };
            let (mut runs, mut transactions) = (0_u64, 0_u64);
            for seed in seeds {
                let config = match community.config(seed) {
                    Ok(config) => config,
                    Err(error) => {
                        eprintln!("{error}");
                        return ExitCode::from(2);
                    }
                };
                let report = match run(&config) {
                    Ok(report) => report,
                    Err(why) => return failed(&config, &why.to_string()),
                };
                println!(
                    "seed {seed}: {} blocks, {} acknowledged, {} committed, {} dropped with a reason, {} lost: {}",
                    report.blocks,
                    report.transactions_acknowledged,
                    report.transactions_committed,
                    report.transactions_dropped_with_reason.values().sum::<u64>(),
                    report.transactions_lost,
                    if report.passed { "passed" } else { "FAILED" }
                );
                if !report.passed {
                    print!("{}", report::text(&report));
                    return failed(&config, "a check failed");
                }
                runs += 1;
                transactions += report.transactions_acknowledged;
            }
            println!("{runs} seeds passed ({transactions} acknowledged transactions)");
            ExitCode::SUCCESS
        }
    }
}
