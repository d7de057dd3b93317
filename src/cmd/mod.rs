//! One module per command.

pub(crate) mod attribute;
pub(crate) mod contribute;
pub(crate) mod datanet;
pub(crate) mod demo;
pub(crate) mod doctor;
pub(crate) mod index;
pub(crate) mod init;
pub(crate) mod jobs;
pub(crate) mod revoke;
pub(crate) mod rewards;
pub(crate) mod serve;
pub(crate) mod snapshot;
pub(crate) mod sql;
pub(crate) mod train;
pub(crate) mod validate;
pub(crate) mod verify;

use anyhow::Context;
use tributary_chain::{Chain, ChainConfig, keys};
use tributary_lake::Lake;
use tributary_pipeline::openlineage::{Dataset, Emitter};
use tributary_sql::Store;

use crate::Common;

/// Connects to the chain the flags name (starting anvil when none is given).
pub(crate) async fn chain(common: &Common) -> anyhow::Result<Chain> {
    let mut config = match &common.rpc_url {
        Some(url) => ChainConfig::rpc(url.clone(), &common.data_dir),
        None => ChainConfig::embedded(&common.data_dir),
    };
    config.max_requests_per_second = common.rpc_rate;
    config.signer = match (&common.key_file, std::env::var("TRIBUTARY_PRIVATE_KEY")) {
        (Some(path), _) => Some(keys::key_from_file(path)?),
        (None, Ok(hex)) => Some(keys::parse_key(&hex).context("TRIBUTARY_PRIVATE_KEY")?),
        (None, Err(_)) => None,
    };
    Chain::connect(config)
        .await
        .context("connecting to the chain")
}

/// Opens the lake the flags name (`lake` in the data directory by default).
pub(crate) fn lake(common: &Common) -> anyhow::Result<Lake> {
    let root = match &common.lake {
        Some(root) => root.clone(),
        None => common.data_dir.join("lake").to_string_lossy().into_owned(),
    };
    Lake::open(&root).with_context(|| format!("opening the lake at {root}"))
}

/// Opens the index store the flags name (SQLite in the data directory by default).
pub(crate) async fn store(common: &Common) -> anyhow::Result<Store> {
    let url = match &common.store {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", common.data_dir.join("index.db").display()),
    };
    Store::connect(&url)
        .await
        .with_context(|| format!("opening the index store {url}"))
}

/// Where OpenLineage events go (`[openlineage]`, TRIBUTARY_OPENLINEAGE_*), if anywhere.
pub(crate) fn lineage() -> anyhow::Result<Option<Emitter>> {
    Ok(Emitter::from_env()?)
}

/// The lake dataset `name` (a table, or an object key) for OpenLineage.
pub(crate) fn dataset(lake: &Lake, name: &str) -> Dataset {
    Dataset::new(lake.root().as_str().trim_end_matches('/'), name)
}

/// Parses a contribution or batch id given on the command line.
/// `--device`: auto, cpu or cuda.
pub(crate) fn parse_device(s: &str) -> Result<tributary_trainer::DeviceChoice, String> {
    use tributary_trainer::DeviceChoice;
    match s {
        "auto" => Ok(DeviceChoice::Auto),
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" => Ok(DeviceChoice::Cuda),
        other => Err(format!("unknown device {other:?}: use auto, cpu or cuda")),
    }
}

pub(crate) fn parse_id(text: &str) -> anyhow::Result<tributary_schemas::B256> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not an id: expected 0x and 64 hex digits"))
}

/// Resolves when the user presses Ctrl-C or the process gets SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
