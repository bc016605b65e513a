//! `gridshare-node`: parses arguments, writes genesis files and data
//! directories, starts the event loop and the HTTP API, and stops both on
//! Ctrl-C or SIGTERM. No logic lives here.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use gridshare_ledger::encoding::to_bytes;
use gridshare_node::api::{AdminToken, ApiOptions};
use gridshare_node::clock::Clock;
use gridshare_node::config::{self, CONFIG_FILE_NAME, GENESIS_FILE_NAME};
use gridshare_node::genesis_file::{self, CommunityFile, GenesisOptions};
use gridshare_node::node::{NodeConfig, Started};
use gridshare_node::start::{DEV_KEYS_DIR_NAME, default_data_dir, has_ledger, start, start_dev};
use libp2p::Multiaddr;

#[derive(Debug, Parser)]
#[command(name = "gridshare-node", version, about = "A node of a Gridshare energy community")]
struct Cli {
    /// How log lines on standard error are written: `text` for people,
    /// `json` (one object a line) for a log collector.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a shell's completion script for gridshare-node.
    #[command(after_help = "Example:
  gridshare-node completions bash > ~/.local/share/bash-completion/completions/gridshare-node")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages of gridshare-node and each of its commands.
    #[command(after_help = "Example:
  gridshare-node man --out ./man && man ./man/gridshare-node-run.1")]
    Man {
        /// The directory to write the pages to (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Run a node: the community's validator or a household's replica.
    #[command(after_help = "Examples:
  gridshare-node run --dev
  gridshare-node run --data-dir ./node
  gridshare-node run --genesis ./dev/genesis.bin --data-dir ./replica --api 127.0.0.1:8701 \\
      --bootstrap /ip4/127.0.0.1/tcp/PORT/p2p/PEER_ID

--dev runs a one-validator dev community with a registrar and two households
with simulated meters; an interval clears every 10 seconds. Its registrar key
is written to DATA_DIR/dev-keys/registrar.seed for `gridshare keys import`.
Without --dev the data directory (made by `gridshare-node init`) decides: the
node is the validator if its validator key is the genesis's validator, and a
replica otherwise, which verifies each block's certificate and re-executes
it. Stop a node with Ctrl-C; it finishes the block being stored.")]
    Run(Box<RunArgs>),
    /// Create a data directory: node key, validator key and a commented
    /// config file, and the community's genesis if given.
    #[command(after_help = "Examples:
  gridshare-node init --data-dir ./validator          (prints the validator key for the genesis)
  gridshare-node init --data-dir ./validator --genesis genesis.bin

Running it again keeps the keys and config; a genesis of another community
is refused.")]
    Init {
        /// The data directory (default: the platform's data directory).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The community's genesis file, from `gridshare-node genesis new`.
        #[arg(long, value_name = "FILE")]
        genesis: Option<PathBuf>,
    },
    /// Write or inspect a community's genesis.
    #[command(subcommand)]
    Genesis(GenesisCommand),
}

#[derive(Debug, Subcommand)]
enum GenesisCommand {
    /// Write the genesis of a new community.
    #[command(after_help = "Example:
  gridshare-node genesis new --name \"Sunny Street\" --currency EUR \\
      --validator $(cat validator-key.hex) --registrar REGISTRAR_KEY \\
      --interval-ms 900000 --import-tariff 0.30 --feed-in-tariff 0.08 --network-fee 0.01 \\
      --out genesis.bin

Validator keys come from `gridshare-node init` (it prints them); registrar
keys from `gridshare keys new NAME --role registrar`. Prices are in currency
per kWh with at most 6 decimals.

Or from a reviewable file, with the same choices as fields:
  gridshare-node genesis new --from community.toml --out genesis.bin
  gridshare-node genesis show genesis.bin --toml   (prints such a file back)")]
    New {
        /// A community file (TOML): the choices below as fields, e.g. what
        /// `genesis show --toml` prints.
        #[arg(long, value_name = "FILE", conflicts_with = "GenesisOptions")]
        from: Option<PathBuf>,
        #[command(flatten)]
        options: Box<GenesisOptions>,
        /// Where to write the genesis (canonical bytes).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print a genesis file as JSON, or as the community file that makes it.
    #[command(
        after_help = "Examples:\n  gridshare-node genesis show genesis.bin\n  gridshare-node genesis show genesis.bin --toml > community.toml"
    )]
    Show {
        file: PathBuf,
        /// Print the community file (TOML) that `genesis new --from` turns
        /// back into this genesis.
        #[arg(long)]
        toml: bool,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Run a one-validator dev community (a new one, or the one already in
    /// the data directory).
    #[arg(long)]
    dev: bool,
    /// Join the community of this genesis file (the data directory is
    /// initialized with it first).
    #[arg(long, value_name = "FILE", conflicts_with = "dev")]
    genesis: Option<PathBuf>,
    /// The data directory (default: the platform's data directory; with
    /// --dev a new directory under the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the local HTTP API [config: api].
    #[arg(long, value_name = "ADDR")]
    api: Option<SocketAddr>,
    /// Where the market swarm listens [config: p2p_listen].
    #[arg(long, value_name = "MULTIADDR")]
    p2p: Option<Multiaddr>,
    /// Peers to dial at start, in addition to the config's [config: bootstrap].
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// Do not discover peers on the LAN with mDNS [config: mdns].
    #[arg(long)]
    no_mdns: bool,
    /// Market connections accepted from one IP address at most
    /// [config: p2p_connections_per_ip_max].
    #[arg(long, value_name = "COUNT")]
    p2p_connections_per_ip_max: Option<std::num::NonZeroUsize>,
    /// Where a validator's consensus swarm listens [config: consensus_listen].
    #[arg(long, value_name = "MULTIADDR")]
    consensus_p2p: Option<Multiaddr>,
    /// Another validator's consensus address and id, ADDRESS/p2p/ID (its
    /// `Consensus id` from `init`) [config: consensus_peers].
    #[arg(long, value_name = "MULTIADDR")]
    consensus_peer: Vec<Multiaddr>,
    /// Consensus connections accepted from one IP address at most
    /// [config: consensus_connections_per_ip_max].
    #[arg(long, value_name = "COUNT")]
    consensus_connections_per_ip_max: Option<std::num::NonZeroUsize>,
    /// Threads that run the node; 1 runs it all on one thread (default: one
    /// per core) [config: worker_threads].
    #[arg(long, value_name = "COUNT")]
    worker_threads: Option<std::num::NonZeroUsize>,
    /// Target time between blocks, for a validator [config: block_time_ms].
    #[arg(long, value_name = "MS")]
    block_time_ms: Option<u64>,
    /// Run with the clock this many ms ahead (negative: behind), to test how
    /// a community copes with a node whose clock is wrong.
    #[arg(long, value_name = "MS", default_value_t = 0, allow_hyphen_values = true)]
    clock_skew_ms: i64,
    /// Length of a delivery interval in a new dev community.
    #[arg(long, value_name = "MS", default_value_t = gridshare_node::dev::DEV_INTERVAL_MS)]
    interval_ms: u64,
    /// Serve the admin API (POST /v1/admin/isolate), for test networks; it
    /// answers only requests with the admin token [config: enable_admin_api].
    #[arg(long)]
    enable_admin_api: bool,
    /// The file holding the admin API's bearer token (default: DATA_DIR/admin.token,
    /// made on first use) [config: admin_token_file].
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// A host name the API answers to besides IP addresses and localhost (a
    /// reverse proxy's public name); repeatable [config: api_hosts].
    #[arg(long = "api-host", value_name = "NAME")]
    api_hosts: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Kademlia warns at start when a lone validator has no peer to
    // bootstrap from, Malachite logs every vote at info, and its network
    // logs an error for every message a lone validator cannot publish: all
    // normal. RUST_LOG overrides this (e.g.
    // RUST_LOG=info,arc_malachitebft=info to follow consensus).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        "info,libp2p_kad=error,arc_malachitebft=warn,arc_malachitebft_network=off".into()
    });
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match cli.command {
        Command::Completions { shell } => {
            // Made in memory, where writing cannot fail.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "gridshare-node", &mut script);
            std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
            Ok(())
        }
        Command::Man { out } => {
            std::fs::create_dir_all(&out)?;
            clap_mangen::generate_to(Cli::command(), &out)?;
            Ok(())
        }
        Command::Run(args) => {
            let (data_dir, file) = prepare(&args)?;
            runtime(args.worker_threads.or(file.worker_threads))?.block_on(run(*args, data_dir, file))
        }
        Command::Init { data_dir, genesis } => {
            let data_dir = data_dir.unwrap_or_else(default_data_dir);
            let made = config::init(&data_dir, genesis.as_deref())?;
            println!("Data dir:      {}", data_dir.display());
            println!("Config:        {}", data_dir.join(CONFIG_FILE_NAME).display());
            println!("Validator key: {}", made.validator_key.public());
            // What the other validators name this one by in `consensus_peers`.
            println!("Consensus id:  {}", config::node_identity(&data_dir)?.public().to_peer_id());
            match made.genesis {
                Some(genesis) => {
                    let role = if genesis.voting_power_of(&made.validator_key.public()).is_some() {
                        "validator"
                    } else {
                        "replica"
                    };
                    println!("Community:     {} {} ({role})", genesis.name, genesis.community_id);
                    println!("Next:          gridshare-node run --data-dir {}", data_dir.display());
                }
                None => println!(
                    "Next:          put the validator key in the genesis (gridshare-node genesis new --validator KEY ...),\n               then: gridshare-node init --data-dir {} --genesis FILE",
                    data_dir.display()
                ),
            }
            Ok(())
        }
        Command::Genesis(GenesisCommand::New { from, options, out }) => {
            let options = match from {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let file = CommunityFile::parse(&text).with_context(|| format!("{}", path.display()))?;
                    Box::new(file.options())
                }
                None => options,
            };
            let genesis = genesis_file::build(&options, Clock::system().now_ms())?;
            if out.exists() {
                anyhow::bail!("{} exists; choose another --out", out.display());
            }
            std::fs::write(&out, to_bytes(&genesis))
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("{}", serde_json::to_string_pretty(&genesis_file::summary(&genesis))?);
            eprintln!("Wrote {}", out.display());
            Ok(())
        }
        Command::Genesis(GenesisCommand::Show { file, toml }) => {
            let genesis = config::read_genesis(&file)?;
            if toml {
                print!("{}", CommunityFile::of(&genesis).to_toml());
            } else {
                println!("{}", serde_json::to_string_pretty(&genesis_file::summary(&genesis))?);
            }
            Ok(())
        }
    }
}

/// The data directory of `run` (initialized with `--genesis` if given) and
/// its config file.
fn prepare(args: &RunArgs) -> anyhow::Result<(PathBuf, config::Config)> {
    let data_dir = match (&args.data_dir, args.dev) {
        (Some(dir), _) => dir.clone(),
        (None, true) => std::env::temp_dir().join(format!("gridshare-dev-{}", std::process::id())),
        (None, false) => default_data_dir(),
    };
    if let Some(genesis) = &args.genesis {
        config::init(&data_dir, Some(genesis))?;
    }
    let file = config::read_config(&data_dir)?;
    Ok((data_dir, file))
}

/// The async runtime: on one thread, or on `threads` (default: one per core).
fn runtime(threads: Option<std::num::NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match threads.map(std::num::NonZeroUsize::get) {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(count) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(count);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

async fn run(args: RunArgs, data_dir: PathBuf, file: config::Config) -> anyhow::Result<()> {
    let api = args.api.unwrap_or(file.api);
    let mut bootstrap = file.bootstrap;
    bootstrap.extend(args.bootstrap);
    let mut consensus_peers = file.consensus_peers;
    consensus_peers.extend(args.consensus_peer);
    let config = NodeConfig {
        data_dir: data_dir.clone(),
        block_time_ms: args.block_time_ms.unwrap_or(file.block_time_ms),
        p2p_listen: args.p2p.unwrap_or(file.p2p_listen),
        bootstrap,
        mdns: file.mdns && !args.no_mdns,
        p2p_connections_per_ip_max: args
            .p2p_connections_per_ip_max
            .unwrap_or(file.p2p_connections_per_ip_max),
        // A dev community's lone validator needs no known consensus port.
        consensus_listen: args.consensus_p2p.unwrap_or(if args.dev {
            "/ip4/127.0.0.1/tcp/0".parse()?
        } else {
            file.consensus_listen
        }),
        consensus_peers,
        consensus_connections_per_ip_max: args
            .consensus_connections_per_ip_max
            .unwrap_or(file.consensus_connections_per_ip_max),
        clock: Clock::skewed(args.clock_skew_ms),
    };
    // Bind the API first, so a busy port fails before anything is written.
    let listener =
        tokio::net::TcpListener::bind(api).await.with_context(|| format!("cannot listen on {api}"))?;
    let resumed = has_ledger(&data_dir);
    let started = if args.dev {
        start_dev(config, args.interval_ms, shutdown_signal()).await?
    } else {
        start(config, shutdown_signal()).await?
    };
    let Started { client, genesis, peer_id, listen_addresses, validator, event_loop } = started;
    // The data directory exists now (a new dev community's included).
    let admin_token_file = args.admin_token_file.or(file.admin_token_file);
    let admin = if args.enable_admin_api || file.enable_admin_api {
        let token = config::admin_token(&data_dir, admin_token_file.as_deref())?;
        let path = admin_token_file.unwrap_or_else(|| data_dir.join(config::ADMIN_TOKEN_FILE_NAME));
        Some((AdminToken::new(&token), path))
    } else {
        None
    };
    let address = listener.local_addr()?;
    let role = if validator { "validator" } else { "replica" };
    let how = if resumed { "resumed" } else { "started" };
    println!("{} {} {how} ({role})", genesis.name, genesis.community_id);
    println!("API:      http://{address}/v1/status");
    for listen in &listen_addresses {
        println!("P2P:      {listen}/p2p/{peer_id}");
    }
    if args.dev {
        println!("Genesis:  {}", data_dir.join(GENESIS_FILE_NAME).display());
        println!("Registrar key: {}", data_dir.join(DEV_KEYS_DIR_NAME).join("registrar.seed").display());
    }
    if let Some((_, path)) = &admin {
        println!("Admin:    POST http://{address}/v1/admin/isolate (bearer token in {})", path.display());
    }
    println!("Data dir: {}", data_dir.display());
    let api_hosts = args.api_hosts.iter().chain(&file.api_hosts).cloned().collect();
    let options = ApiOptions { admin_token: admin.map(|(token, _)| token), api_hosts };
    let router = gridshare_node::api::router(client, options);
    let server = gridshare_node::api::serve::serve(listener, router, Default::default());
    tokio::select! {
        result = event_loop => result?,
        () = server => {}
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
