//! `gridshare-node`: parses arguments, starts the event loop and the HTTP
//! API, and stops both on Ctrl-C or SIGTERM. No logic lives here.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gridshare_node::node::{GENESIS_FILE_NAME, NodeConfig, Started, start_dev, start_replica};
use libp2p::Multiaddr;

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
  gridshare-node run --genesis ./dev-ledger/genesis.bin --api 127.0.0.1:8701 \\
      --bootstrap /ip4/127.0.0.1/tcp/PORT/p2p/PEER_ID

A dev community has one validator, a registrar and two households with
simulated meters; an interval clears every 10 seconds. A replica follows it:
it verifies each block's certificate and re-executes it. Stop a node with
Ctrl-C, then audit what it wrote: gridshare audit --data-dir DIR")]
    Run {
        /// Run a one-validator dev community that writes its genesis into
        /// the data directory for replicas.
        #[arg(long, required_unless_present = "genesis", conflicts_with = "genesis")]
        dev: bool,
        /// Run a replica (a household's non-voting node) of the community of
        /// this genesis file; it verifies and executes every certified block.
        #[arg(long, value_name = "FILE")]
        genesis: Option<PathBuf>,
        /// Where the ledger is stored (default: a new directory under the
        /// system's temporary directory).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address of the local HTTP API.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8700")]
        api: SocketAddr,
        /// Where the market swarm listens.
        #[arg(long, value_name = "MULTIADDR", default_value = "/ip4/0.0.0.0/tcp/0")]
        p2p: Multiaddr,
        /// Peers to dial at start, e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<Multiaddr>,
        /// Do not discover peers on the LAN with mDNS.
        #[arg(long)]
        no_mdns: bool,
        /// Target time between blocks (dev validator).
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
            // Kademlia warns at start when a lone validator has no peer to
            // bootstrap from, which is normal here; RUST_LOG overrides this.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,libp2p_kad=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Run { dev, genesis, data_dir, api, p2p, bootstrap, no_mdns, block_time_ms, interval_ms } =
        Cli::parse().command;
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("gridshare-node-{}", std::process::id())),
    };
    let config =
        NodeConfig { data_dir: data_dir.clone(), block_time_ms, p2p_listen: p2p, bootstrap, mdns: !no_mdns };
    // Bind the API first, so a busy port fails before anything is written.
    let listener =
        tokio::net::TcpListener::bind(api).await.with_context(|| format!("cannot listen on {api}"))?;
    let started = match (dev, genesis) {
        (true, _) => start_dev(config, interval_ms, shutdown_signal()).await?,
        (false, Some(genesis)) => start_replica(config, &genesis, shutdown_signal()).await?,
        (false, None) => anyhow::bail!("give --dev or --genesis FILE"),
    };
    let Started { client, genesis, peer_id, listen_addresses, event_loop } = started;
    let address = listener.local_addr()?;
    let role = if dev { "validator" } else { "replica" };
    println!("{} {} is running ({role})", genesis.name, genesis.community_id);
    println!("API:      http://{address}/v1/status");
    for listen in &listen_addresses {
        println!("P2P:      {listen}/p2p/{peer_id}");
    }
    println!("Data dir: {}", data_dir.display());
    if dev {
        println!("Genesis:  {}", data_dir.join(GENESIS_FILE_NAME).display());
    }
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
