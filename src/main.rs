//! `tributary`: the command-line interface. A thin layer: it parses flags, wires the crates
//! together and prints results; the work happens in the library crates.

mod cmd;
mod config;
mod factory;
mod inference;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// mimalloc: a server answer makes many small allocations on many threads, where glibc's
/// allocator spent a fifth of a lineage page's time (`make bench`, GraphQL part).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Traceable, community-owned AI data and models.
///
/// Datanet contributions are signed by their contributors, land in Delta tables and are
/// anchored on an EVM chain; the indexer rebuilds the lineage graph from chain events; a
/// GraphQL API answers who contributed what.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `tributary_indexer=debug`.
    #[arg(long, global = true, env = "TRIBUTARY_LOG", default_value = "warn")]
    log: String,
    /// Log format: `text` for people, `json` (one object per line) for log collectors.
    #[arg(long, global = true, env = "TRIBUTARY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Config file (see `tributary init`); default: $TRIBUTARY_CONFIG, else ./tributary.toml
    /// when it exists. Flags beat environment variables, which beat the file.
    #[arg(long = "config-file", global = true, value_name = "FILE")]
    config_file: Option<PathBuf>,
}

/// Where state lives and which chain to use.
#[derive(Debug, Clone, clap::Args)]
struct Common {
    /// Data directory: deployment record, lake, index store, embedded anvil state.
    #[arg(long, env = "TRIBUTARY_DATA_DIR", default_value = ".tributary")]
    data_dir: PathBuf,
    /// JSON-RPC URL of the chain (http(s):// or ws(s)://; over WebSocket `index --follow`
    /// wakes on each new head); without it a local anvil is started (state in the data dir).
    #[arg(long, env = "TRIBUTARY_RPC_URL")]
    rpc_url: Option<url::Url>,
    /// At most this many JSON-RPC requests a second, retries included (default: no limit),
    /// for endpoints with a request quota.
    #[arg(long, env = "TRIBUTARY_RPC_RATE", value_name = "PER_SECOND")]
    rpc_rate: Option<f64>,
    /// File holding the signer's hex private key (else TRIBUTARY_PRIVATE_KEY, else anvil's dev
    /// key on a local chain).
    #[arg(long, env = "TRIBUTARY_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Lake root: a directory or s3://bucket/prefix (default: `lake` in the data dir). S3 is
    /// configured by the AWS_* environment variables (AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP=true for plain HTTP).
    #[arg(long, env = "TRIBUTARY_LAKE")]
    lake: Option<String>,
    /// Index store URL: sqlite://PATH or postgres://… (default: sqlite in the data dir).
    #[arg(long, env = "TRIBUTARY_STORE")]
    store: Option<String>,
    /// An existing deployment's record (a deployment.json, as `tributary deploy` writes) to use
    /// instead of the data directory's; or name the contracts in `[chain]` of tributary.toml.
    /// Without either, only a local dev chain gets contracts deployed on first use.
    #[arg(long, env = "TRIBUTARY_DEPLOYMENT", value_name = "FILE")]
    deployment: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole flow on embedded defaults: anvil, deploy, a sample Datanet signed by dev
    /// contributors, Delta write, on-chain anchor, index, GraphQL answer; then serve GraphQL.
    Demo(cmd::demo::Args),
    /// Create or show a Datanet (a community dataset with its manifest of rules).
    Datanet(cmd::datanet::Args),
    /// Sign (or verify pre-signed) records from files, validate them against the Datanet,
    /// write them to the lake in batches and anchor each batch on chain.
    Contribute(cmd::contribute::Args),
    /// Check a contribution end to end (the lake's row is what its contributor signed, the
    /// manifest lists it, the Merkle proof leads to the root on chain, not revoked) and print the
    /// proof. Exit 0 verified, 1 not verified (the reason is printed), 2 could not check.
    Verify(cmd::verify::Args),
    /// Record a validator's verdicts on an anchored batch, on chain and in the lake.
    Validate(cmd::validate::Args),
    /// Revoke a contribution (as its contributor or the Datanet's owner).
    Revoke(cmd::revoke::Args),
    /// Freeze a training set: the anchored, unrejected, unrevoked contributions of Datanets
    /// at a pinned lake version, listed in the lake and committed on chain.
    Snapshot(cmd::snapshot::Args),
    /// Train a LoRA adapter on a snapshot (fresh, from a parent or a merge of parents), store
    /// it in the lake under its content address and publish it on chain as LINE@VERSION.
    Train(cmd::train::Args),
    /// Which contributions shaped an answer of an adapter: top contributions by gradient
    /// influence with contributor, Datanet, score and share, and the answer's spans found
    /// verbatim in the training data.
    Attribute(cmd::attribute::Args),
    /// Rewards: settle an epoch's fees by policy and attribution, claim, show earnings.
    Rewards(cmd::rewards::Args),
    /// Index chain events into the lineage graph, from the last checkpoint to the head.
    Index(cmd::index::Args),
    /// Deploy a fresh set of Tributary's contracts on the chain (needs a signer key) and record
    /// them in the data directory; prints the record and its `[chain]` form.
    Deploy(cmd::deploy::Args),
    /// Serve the GraphQL API (with GraphiQL), SQL (HTTP and the PostgreSQL wire protocol) and
    /// OpenAI-compatible inference over the published adapters (/v1/completions,
    /// /v1/chat/completions, /v1/models), each answer with its ancestry and attribution. Lineage
    /// walks come from an in-memory index kept in the data dir (lineage-index-CHAIN.bin).
    Serve(Box<cmd::serve::Args>),
    /// Run a read-only SQL query over the lake's Delta tables and views.
    Sql(cmd::sql::Args),
    /// Scheduled training jobs: list them with their history, run one now, pause, resume.
    Jobs(cmd::jobs::Args),
    /// Write a commented tributary.toml with every setting and create the data folder.
    Init(cmd::init::Args),
    /// Check the installed tools: anvil, and libtorch computing on the chosen device.
    Doctor(cmd::doctor::Args),
}

fn main() -> std::process::ExitCode {
    tributary_lake::return_large_frees();
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = config::load(&args) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }

    tracing::debug!(
        flag = ?cli.config_file,
        loaded = ?config::get().0,
        "config file"
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // `verify` tells "does not hold" (1) from "could not check" (2).
    let error_code = if matches!(cli.command, Command::Verify(_)) {
        2
    } else {
        1
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(a) => cmd::demo::run(a).await.map(|()| true),
            Command::Datanet(a) => cmd::datanet::run(a).await.map(|()| true),
            Command::Contribute(a) => cmd::contribute::run(a).await.map(|()| true),
            Command::Verify(a) => cmd::verify::run(a).await,
            Command::Validate(a) => cmd::validate::run(a).await.map(|()| true),
            Command::Revoke(a) => cmd::revoke::run(a).await.map(|()| true),
            Command::Snapshot(a) => cmd::snapshot::run(a).await.map(|()| true),
            Command::Train(a) => cmd::train::run(a).await.map(|()| true),
            Command::Attribute(a) => cmd::attribute::run(a).await.map(|()| true),
            Command::Rewards(a) => cmd::rewards::run(a).await.map(|()| true),
            Command::Index(a) => cmd::index::run(a).await.map(|()| true),
            Command::Deploy(a) => cmd::deploy::run(a).await.map(|()| true),
            Command::Serve(a) => cmd::serve::run(*a).await.map(|()| true),
            Command::Sql(a) => cmd::sql::run(a).await.map(|()| true),
            Command::Jobs(a) => cmd::jobs::run(a).await.map(|()| true),
            Command::Init(a) => cmd::init::run(a).map(|()| true),
            Command::Doctor(a) => cmd::doctor::run(a).await.map(|()| true),
        }
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(error_code)
        }
    }
}
