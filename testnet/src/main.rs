//! `gridshare-testnet`: parses arguments, runs a manifest and prints the
//! summary; exit status 0 only if every check passed (1 if one failed, 2 if
//! the run could not be carried out). No logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gridshare_testnet::run::{Options, run};

#[derive(Debug, Parser)]
#[command(
    name = "gridshare-testnet",
    version,
    about = "A local Gridshare community of real nodes, with faults and checks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the testnet a manifest describes.
    #[command(after_help = "Examples:
  gridshare-testnet run testnet/manifests/demo.toml
  gridshare-testnet run testnet/manifests/faults.toml --seed 7 --report report.json --workdir ./run
  gridshare-testnet run testnet/manifests/demo.toml --keep   (then explore the dashboard it prints)

The seed (default: the manifest's) derives every key, household, profile and
price, so a seed and a manifest reproduce a run's community. Without
--workdir the run happens in a temporary directory that is removed when every
check passes and kept otherwise.")]
    Run {
        /// The manifest (TOML): see testnet/manifests/.
        manifest: PathBuf,
        /// The seed of the community (default: the manifest's `seed`, else 1).
        #[arg(long)]
        seed: Option<u64>,
        /// Write the JSON report here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Keep every node's data directory, log and the exported ledger here.
        #[arg(long, value_name = "DIR")]
        workdir: Option<PathBuf>,
        /// Use this gridshare-node binary instead of building the workspace's.
        #[arg(long, value_name = "PATH")]
        node_binary: Option<PathBuf>,
        /// After the checks, leave the community running (with its dashboard)
        /// until Enter is pressed.
        #[arg(long)]
        keep: bool,
    },
}

fn main() -> ExitCode {
    let Command::Run { manifest, seed, report, workdir, node_binary, keep } = Cli::parse().command;
    let options = Options { manifest: manifest.clone(), seed, report, workdir, node_binary, keep };
    let outcome = match run(&options) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("gridshare-testnet: {:#}", anyhow::Error::from(error));
            return ExitCode::from(2);
        }
    };
    let report = &outcome.report;
    print!("{}", report.summary());
    match &outcome.report_path {
        Some(path) => println!("Report: {}", path.display()),
        None => println!("Report: not written (pass --report FILE to keep it)"),
    }
    if report.workdir_kept {
        println!("Work dir: {} (node data, logs, the exported ledger)", report.workdir);
    }
    if report.passed {
        if !keep {
            println!(
                "To explore: run again with --keep to leave the community running after its checks, \
                 with the dashboard printed above open in a browser"
            );
        }
        return ExitCode::SUCCESS;
    }
    println!(
        "\nA check failed. To reproduce: gridshare-testnet run {} --seed {}",
        manifest.display(),
        report.seed
    );
    println!("The manifest ({}):\n{}", manifest.display(), outcome.manifest_text);
    ExitCode::from(1)
}
