//! `gridshare-node`: parses arguments, starts the event loop and the HTTP
//! API, and stops both on Ctrl-C or SIGTERM. No logic lives here.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gridshare_node::node::{DevConfig, start_dev};

#[derive(Debug, Parser)]
#[command(name = "gridshare-node", version, about = "A node of a Gridshare energy community")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node.
    #[command(after_help = "Example:
  gridshare-node run --dev
  gridshare-node run --dev --data-dir ./dev-ledger --api 127.0.0.1:8700

A dev community has one validator, a registrar and two households with
simulated meters; an interval clears every 10 seconds. Stop it with Ctrl-C,
then audit what it wrote: gridshare audit --data-dir DIR")]
    Run {
        /// Run a one-validator dev community (this version runs only these).
        #[arg(long, required = true)]
        dev: bool,
        /// Where the ledger is stored (default: a new directory under the
        /// system's temporary directory).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address of the local HTTP API.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8700")]
        api: SocketAddr,
        /// Target time between blocks.
        #[arg(long, value_name = "MS", default_value_t = 1_000)]
        block_time_ms: u64,
        /// Length of a delivery interval in the dev community.
        #[arg(long, value_name = "MS", default_value_t = gridshare_node::dev::DEV_INTERVAL_MS)]
        interval_ms: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Run { dev: _, data_dir, api, block_time_ms, interval_ms } = Cli::parse().command;
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("gridshare-dev-{}", std::process::id())),
    };
    let (client, genesis, event_loop) =
        start_dev(DevConfig { data_dir: data_dir.clone(), block_time_ms, interval_ms }, shutdown_signal())?;
    let listener =
        tokio::net::TcpListener::bind(api).await.with_context(|| format!("cannot listen on {api}"))?;
    let address = listener.local_addr()?;
    println!("{} {} is running", genesis.name, genesis.community_id);
    println!("API:      http://{address}/v1/status");
    println!("Data dir: {}", data_dir.display());
    let server = axum::serve(listener, gridshare_node::api::router(client));
    tokio::select! {
        result = event_loop => result?,
        result = server => result?,
    }
    println!("Stopped. Audit the ledger with: gridshare audit --data-dir {}", data_dir.display());
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
