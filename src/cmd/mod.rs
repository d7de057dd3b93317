//! One module per command.

pub(crate) mod attribute;
pub(crate) mod contribute;
pub(crate) mod datanet;
pub(crate) mod demo;
pub(crate) mod deploy;
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

/// What the explorer's pages read from the chain themselves: `rpc` if given, else the
/// chain's RPC when it is plain HTTP on this machine (a remote one's URL may carry an API key,
/// and is not handed to browsers unasked); and the Datanet registry.
pub(crate) fn explorer_chain(
    chain: &Chain,
    rpc: Option<&url::Url>,
) -> tributary_api::ExplorerChain {
    let own = chain.url();
    let local = matches!(own.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
        && matches!(own.scheme(), "http" | "https")
        && own.username().is_empty()
        && own.password().is_none()
        && own.query().is_none();
    let rpc = rpc.or(local.then_some(own));
    tributary_api::ExplorerChain {
        rpc: rpc.map(|u| u.to_string()),
        registry: Some(chain.deployment().datanet_registry.to_string()),
    }
}

/// Connects to the chain the flags name (starting anvil when none is given), to send
/// transactions: a signer key is needed except on a local dev chain.
pub(crate) async fn chain(common: &Common) -> anyhow::Result<Chain> {
    connect(chain_config(common)?).await
}

/// Connects to read only (index, verify, serving the API): no signer key is needed.
pub(crate) async fn chain_read_only(common: &Common) -> anyhow::Result<Chain> {
    let mut config = chain_config(common)?;
    config.read_only = true;
    connect(config).await
}

async fn connect(config: ChainConfig) -> anyhow::Result<Chain> {
    Chain::connect(config)
        .await
        .context("connecting to the chain")
}

/// The chain settings of `common`: RPC URL, rate, signer, and a deployment named by
/// `--deployment` / `[chain]`.
pub(crate) fn chain_config(common: &Common) -> anyhow::Result<ChainConfig> {
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
    config.deployment = match &common.deployment {
        Some(path) => Some(
            serde_json::from_slice(&std::fs::read(path).with_context(|| {
                format!(
                    "reading the deployment record {}: fix --deployment / TRIBUTARY_DEPLOYMENT",
                    path.display()
                )
            })?)
            .with_context(|| format!("{} is not a deployment record", path.display()))?,
        ),
        None => crate::config::get().1.chain.inline()?,
    };
    Ok(config)
}

/// Opens the lake the flags name (`lake` in the data directory by default), moving artifacts a
/// lake written by an earlier version kept inside table folders to `artifacts/` first.
pub(crate) async fn lake(common: &Common) -> anyhow::Result<Lake> {
    open_lake(common, false).await
}

/// [`lake`] for commands that read what Tributary wrote there (`sql`, `verify`): a root named
/// by `--lake` (or `TRIBUTARY_LAKE`, `lake =` in tributary.toml) that holds none of Tributary's
/// tables (a mistyped one) is an error that says so, before anything is written there, instead
/// of empty answers, "not found" verdicts and empty tables made at that root. The data
/// directory's own lake is opened as [`lake`] opens it.
pub(crate) async fn existing_lake(common: &Common) -> anyhow::Result<Lake> {
    open_lake(common, common.lake.is_some()).await
}

async fn open_lake(common: &Common, must_exist: bool) -> anyhow::Result<Lake> {
    let root = match &common.lake {
        Some(root) => root.clone(),
        None => common.data_dir.join("lake").to_string_lossy().into_owned(),
    };
    let hint = "check --lake (TRIBUTARY_LAKE, or `lake =` in tributary.toml); `tributary datanet create` sets a lake up";
    if must_exist && !root.contains("://") && !std::path::Path::new(&root).exists() {
        anyhow::bail!("no Tributary lake at {root}: the directory does not exist; {hint}");
    }
    let lake = Lake::open(&root).with_context(|| format!("opening the lake at {root}"))?;
    if must_exist
        && !lake
            .is_set_up()
            .await
            .with_context(|| format!("reading the lake at {root}"))?
    {
        anyhow::bail!("no Tributary lake at {root}: it holds none of its tables; {hint}");
    }
    tributary_pipeline::layout::migrate(&lake)
        .await
        .with_context(|| format!("moving the artifacts of the lake at {root} to artifacts/"))?;
    Ok(lake)
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

/// The bearer token `/v1/completions` and `/v1/chat/completions` require, and where it comes
/// from: `TRIBUTARY_API_TOKEN`, else the file `file` (`--api-token-file`), else `api-token` in
/// the data directory, created with a random token (readable by its owner only) on first use.
pub(crate) fn api_token(
    file: Option<&std::path::Path>,
    data_dir: &std::path::Path,
) -> anyhow::Result<(tributary_api::v1::ApiToken, String)> {
    use tributary_api::v1::ApiToken;
    let token = |t: &str| ApiToken::new(t).map_err(anyhow::Error::msg);
    if let Ok(t) = std::env::var("TRIBUTARY_API_TOKEN") {
        return Ok((token(&t)?, "TRIBUTARY_API_TOKEN".into()));
    }
    if let Some(f) = file {
        let t = std::fs::read_to_string(f).with_context(|| {
            format!(
                "reading the API token file {}: create it, or fix --api-token-file",
                f.display()
            )
        })?;
        return Ok((token(&t)?, f.display().to_string()));
    }
    let path = data_dir.join("api-token");
    if !path.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(data_dir)?;
        let mut secret = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)?;
        let fresh = tributary_schemas::B256::from(secret).to_string();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .or_else(|e| match e.kind() {
                // another process created it first: use theirs
                std::io::ErrorKind::AlreadyExists => std::fs::File::open(&path),
                _ => Err(e),
            })
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(fresh.trim_start_matches("0x").as_bytes())?;
    }
    let t = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the API token file {}", path.display()))?;
    Ok((token(&t)?, path.display().to_string()))
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
