//! `tributary.toml`: one file for every setting, under environment variables, under flags.
//!
//! The file is `--config-file PATH`, else `$TRIBUTARY_CONFIG`, else `tributary.toml` in the
//! current directory when there is one. Its settings reach the commands through the same
//! environment variables the flags read (`TRIBUTARY_DATA_DIR`, …), set only where the
//! environment has none, so a flag beats the environment, which beats the file, which beats
//! the built-in default. Relative paths in the file are relative to the file's folder.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use tributary_models::schedule::JobSpec;

/// The file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    data_dir: Option<PathBuf>,
    rpc_url: Option<String>,
    rpc_rate: Option<f64>,
    key_file: Option<PathBuf>,
    lake: Option<String>,
    store: Option<String>,
    #[serde(default)]
    log: Log,
    #[serde(default)]
    serve: Serve,
    /// An existing deployment of the contracts.
    #[serde(default)]
    pub(crate) chain: ChainSection,
    #[serde(default)]
    openlineage: OpenLineage,
    /// Scheduled training jobs.
    #[serde(default)]
    pub(crate) jobs: Vec<JobSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Log {
    level: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Serve {
    listen: Option<String>,
    pg_listen: Option<String>,
    only: Option<Vec<String>>,
    cors_origins: Option<Vec<String>>,
    api_token_file: Option<PathBuf>,
}

/// `[chain]`: the contracts of an existing deployment, as a deployment file or inline.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChainSection {
    /// A `deployment.json` (as `tributary deploy` writes).
    deployment: Option<PathBuf>,
    /// Inline: the block the contracts were deployed at (indexers start there).
    pub(crate) start_block: Option<u64>,
    /// Inline: the chain id (checked when given).
    pub(crate) chain_id: Option<u64>,
    pub(crate) datanet_registry: Option<String>,
    pub(crate) model_registry: Option<String>,
    pub(crate) inference_ledger: Option<String>,
    pub(crate) reward_token: Option<String>,
    pub(crate) reward_distributor: Option<String>,
}

impl ChainSection {
    /// The inline deployment, when `datanet_registry` is given (then every address and the
    /// start block must be).
    pub(crate) fn inline(&self) -> anyhow::Result<Option<tributary_chain::Deployment>> {
        let Some(registry) = &self.datanet_registry else {
            return Ok(None);
        };
        let address = |key: &str,
                       v: &Option<String>|
         -> anyhow::Result<tributary_schemas::Address> {
            let v = v.as_deref().ok_or_else(|| {
                anyhow::anyhow!("[chain] gives datanet_registry but not {key}: give every contract address and start_block")
            })?;
            v.parse().map_err(|_| {
                anyhow::anyhow!("[chain] {key} = {v:?} is not an address (0x + 40 hex digits)")
            })
        };
        Ok(Some(tributary_chain::Deployment {
            chain_id: self.chain_id.unwrap_or(0),
            start_block_hash: tributary_schemas::B256::ZERO,
            deployer: tributary_schemas::Address::ZERO,
            start_block: self.start_block.ok_or_else(|| {
                anyhow::anyhow!("[chain] gives the contracts but not start_block: the block they were deployed at")
            })?,
            datanet_registry: address("datanet_registry", &Some(registry.clone()))?,
            model_registry: address("model_registry", &self.model_registry)?,
            inference_ledger: address("inference_ledger", &self.inference_ledger)?,
            reward_token: address("reward_token", &self.reward_token)?,
            reward_distributor: address("reward_distributor", &self.reward_distributor)?,
        }))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenLineage {
    url: Option<String>,
    file: Option<PathBuf>,
    namespace: Option<String>,
}

static LOADED: OnceLock<(Option<PathBuf>, File)> = OnceLock::new();

/// The loaded file (empty when there is none) and its path.
pub(crate) fn get() -> &'static (Option<PathBuf>, File) {
    LOADED.get_or_init(|| (None, File::default()))
}

/// The path `--config-file` names in `args`, if any.
fn flag(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config-file" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config-file=") {
            return Some(PathBuf::from(p));
        }
    }
    None
}

/// Finds and reads the config file, checks it, and sets the environment variables its
/// settings stand for (where unset). Call before parsing the flags, before any thread starts.
pub(crate) fn load(args: &[String]) -> anyhow::Result<()> {
    let named = flag(args).or_else(|| std::env::var_os("TRIBUTARY_CONFIG").map(PathBuf::from));
    let path = match named {
        Some(p) => {
            if !p.exists() {
                anyhow::bail!(
                    "config file {} does not exist: create one with `tributary init`, or fix --config-file / TRIBUTARY_CONFIG",
                    p.display()
                );
            }
            Some(p)
        }
        None => Some(PathBuf::from("tributary.toml")).filter(|p| p.exists()),
    };
    let Some(path) = path else {
        let _ = LOADED.set((None, File::default()));
        return Ok(());
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let file = parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    apply(&file, &dir);
    let _ = LOADED.set((Some(path), file));
    Ok(())
}

/// Parses and checks a config file's text; errors name the key and the fix.
pub(crate) fn parse(text: &str) -> anyhow::Result<File> {
    let file: File = toml::from_str(text).map_err(|e| {
        anyhow::anyhow!("{e}(`tributary init` writes a commented example of every key)")
    })?;
    file.chain.inline()?;
    if file.chain.deployment.is_some() && file.chain.datanet_registry.is_some() {
        anyhow::bail!("[chain] gives both a deployment file and inline addresses: keep one");
    }
    if let Some(f) = &file.log.format
        && f != "text"
        && f != "json"
    {
        anyhow::bail!("[log] format = {f:?}: use \"text\" or \"json\"");
    }
    if let Some(level) = &file.log.level {
        tracing_subscriber::EnvFilter::try_new(level).map_err(|e| {
            anyhow::anyhow!("[log] level = {level:?} is not a log filter ({e}): use e.g. \"info\" or \"warn,tributary_indexer=debug\"")
        })?;
    }
    if let Some(u) = &file.rpc_url {
        url::Url::parse(u).map_err(|e| {
            anyhow::anyhow!(
                "rpc_url = {u:?} is not a URL ({e}): use e.g. \"http://127.0.0.1:8545\""
            )
        })?;
    }
    for (key, v) in [
        ("listen", &file.serve.listen),
        ("pg_listen", &file.serve.pg_listen),
    ] {
        if let Some(v) = v {
            v.parse::<std::net::SocketAddr>().map_err(|e| {
                anyhow::anyhow!("[serve] {key} = {v:?} is not an address ({e}): use IP:PORT, e.g. \"127.0.0.1:8080\"")
            })?;
        }
    }
    if let Some(only) = &file.serve.only {
        for part in only {
            crate::cmd::serve::Part::parse(part)
                .map_err(|e| anyhow::anyhow!("[serve] only: {e}"))?;
        }
    }
    if let Some(u) = &file.openlineage.url {
        url::Url::parse(u).map_err(|e| {
            anyhow::anyhow!("[openlineage] url = {u:?} is not a URL ({e}): use e.g. \"http://localhost:5000\" (Marquez)")
        })?;
    }
    let mut names = std::collections::HashSet::new();
    for j in &file.jobs {
        j.check().map_err(|e| anyhow::anyhow!("[[jobs]] {e}"))?;
        if !names.insert(&j.name) {
            anyhow::bail!(
                "[[jobs]] two jobs are named {:?}: give each its own name",
                j.name
            );
        }
    }
    Ok(file)
}

/// Sets the variables `file` stands for, where the environment has none.
fn apply(file: &File, dir: &Path) {
    let path = |p: &PathBuf| dir.join(p).display().to_string();
    let join = |v: &Vec<String>| v.join(",");
    let settings: [(&str, Option<String>); 16] = [
        ("TRIBUTARY_DATA_DIR", file.data_dir.as_ref().map(path)),
        ("TRIBUTARY_RPC_URL", file.rpc_url.clone()),
        ("TRIBUTARY_RPC_RATE", file.rpc_rate.map(|r| r.to_string())),
        ("TRIBUTARY_KEY_FILE", file.key_file.as_ref().map(path)),
        ("TRIBUTARY_LAKE", file.lake.clone()),
        ("TRIBUTARY_STORE", file.store.clone()),
        (
            "TRIBUTARY_DEPLOYMENT",
            file.chain.deployment.as_ref().map(path),
        ),
        ("TRIBUTARY_LOG", file.log.level.clone()),
        ("TRIBUTARY_LOG_FORMAT", file.log.format.clone()),
        ("TRIBUTARY_LISTEN", file.serve.listen.clone()),
        ("TRIBUTARY_PG_LISTEN", file.serve.pg_listen.clone()),
        ("TRIBUTARY_SERVE_ONLY", file.serve.only.as_ref().map(join)),
        (
            "TRIBUTARY_API_TOKEN_FILE",
            file.serve.api_token_file.as_ref().map(path),
        ),
        (
            "TRIBUTARY_CORS_ORIGINS",
            file.serve.cors_origins.as_ref().map(join),
        ),
        ("TRIBUTARY_OPENLINEAGE_URL", file.openlineage.url.clone()),
        (
            "TRIBUTARY_OPENLINEAGE_FILE",
            file.openlineage.file.as_ref().map(path),
        ),
    ];
    for (var, value) in settings {
        if let Some(v) = value
            && std::env::var_os(var).is_none()
        {
            // SAFETY: called from `main` before the runtime or any other thread starts.
            unsafe { std::env::set_var(var, v) };
        }
    }
    if let Some(ns) = &file.openlineage.namespace
        && std::env::var_os("TRIBUTARY_OPENLINEAGE_NAMESPACE").is_none()
    {
        // SAFETY: as above.
        unsafe { std::env::set_var("TRIBUTARY_OPENLINEAGE_NAMESPACE", ns) };
    }
}

/// What `tributary init` writes: every key, commented, with its default.
pub(crate) const TEMPLATE: &str = r#"# Tributary's configuration. Precedence: command-line flags, then environment variables
# (TRIBUTARY_*), then this file, then the built-in defaults shown here. Relative paths are
# relative to this file's folder.

# Data directory: deployment record, lake, index store, embedded anvil state.
data_dir = ".tributary"
# JSON-RPC URL of the chain; without it a local anvil is started (state in the data dir).
# rpc_url = "http://127.0.0.1:8545"
# At most this many JSON-RPC requests a second (default: no limit).
# rpc_rate = 25.0
# File holding the signer's hex private key (else TRIBUTARY_PRIVATE_KEY, else anvil's dev key).
# key_file = "signer.key"
# Lake root: a directory or s3://bucket/prefix (default: `lake` in the data dir).
# lake = "s3://tributary/lake"
# Index and job store: sqlite://PATH (default: index.db in the data dir) or postgres://…;
# several scheduler workers on several machines share one PostgreSQL store.
# store = "postgres://tributary@db.internal/tributary"

[log]
# tracing filter, e.g. "info" or "warn,tributary_indexer=debug".
level = "warn"
# "text" for people, "json" (one object per line) for log collectors.
format = "text"

[serve]
# GraphQL (/graphql), SQL (/sql), inference (/v1/*), /metrics, /healthz and /readyz.
listen = "127.0.0.1:8080"
# SQL over the PostgreSQL wire protocol (psql, Grafana, Metabase).
pg_listen = "127.0.0.1:5433"
# Which parts `tributary serve` runs: any of api, indexer, scheduler, inference.
only = ["api", "indexer", "scheduler", "inference"]
# Browser origins allowed to call the API (CORS); "*" allows any.
# cors_origins = ["https://explorer.example.org"]
# File holding the bearer token that /v1/completions and /v1/chat/completions require (they
# record every answer on chain). Default: api-token in the data dir, created with a random
# token on first start; TRIBUTARY_API_TOKEN gives the token itself.
# api_token_file = "api-token"

[chain]
# An existing deployment of Tributary's contracts (`tributary deploy` prints this section).
# Without one, contracts are deployed on first use only on a local dev chain (id 31337);
# anywhere else name them, as a deployment record:
# deployment = "deployment.json"
# or inline, every address and the block they were deployed at:
#   chain_id = 8453
#   start_block = 1234567
#   datanet_registry = "0x…"    and model_registry, inference_ledger, reward_token,
#                                reward_distributor likewise

[openlineage]
# Where OpenLineage run events go (ingest, snapshot, training, settlement): an HTTP endpoint
# (events are POSTed to URL/api/v1/lineage, as Marquez takes them) and/or a JSON-lines file.
# url = "http://localhost:5000"
# file = "openlineage.jsonl"
namespace = "tributary"

# Scheduled training: one [[jobs]] table per job. Each due occurrence (cron: six fields,
# seconds first, UTC) runs when at least min_new_contributions accepted contributions are new
# since the job's last run: snapshot -> train (from the line's current version) -> evaluate
# -> publish only if the held-out loss is min_improvement (a fraction) below the current
# version's -> attribution index.
#
# [[jobs]]
# name = "kitchen-nightly"
# cron = "0 0 3 * * *"
# line = "kitchen-assistant"
# datanets = ["kitchen-conversions"]
# min_new_contributions = 50
# min_improvement = 0.01
# base_model = "tiny"
# [jobs.lora]                 # a child keeps its parent's shape (the demo's, here)
# rank = 16
# targets = ["q", "k", "v", "o", "gate", "up", "down"]
# [jobs.train]
# max_steps = 200
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_and_bad_keys_name_the_fix() {
        let f = parse(TEMPLATE).unwrap();
        assert_eq!(f.serve.only.as_ref().unwrap().len(), 4);
        let uncommented: String = TEMPLATE
            .lines()
            .map(|l| {
                let setting = |r: &&str| {
                    r.starts_with('[')
                        || r.split_once(" = ").is_some_and(|(k, _)| {
                            k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        })
                };
                l.strip_prefix("# ").filter(setting).unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let f = parse(&uncommented).unwrap();
        assert_eq!(f.jobs.len(), 1);
        assert_eq!(f.jobs[0].min_new_contributions, 50);

        let err = parse("data_dirr = \"x\"").unwrap_err().to_string();
        assert!(
            err.contains("data_dirr") && err.contains("tributary init"),
            "{err}"
        );
        let err = parse("[log]\nformat = \"xml\"").unwrap_err().to_string();
        assert!(err.contains("\"text\" or \"json\""), "{err}");
        let err = parse("[serve]\nonly = [\"api\", \"web\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("web") && err.contains("scheduler"), "{err}");
        let job = "[[jobs]]\nname = \"n\"\ncron = \"0 0 3 * *\"\nline = \"l\"\ndatanets = [\"d\"]";
        let err = parse(job).unwrap_err().to_string();
        assert!(err.contains("six fields"), "{err}");
        let err = parse(
            &job.replace("0 0 3 * *", "0 0 3 * * *")
                .replace("datanets = [\"d\"]", "datanets = []"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("datanets is empty"), "{err}");
    }

    #[test]
    fn a_chain_section_names_a_deployment_completely_or_is_refused() {
        let a = |b: u8| format!("\"0x{}\"", format!("{b:02x}").repeat(20));
        let full = format!(
            "[chain]\nstart_block = 7\ndatanet_registry = {}\nmodel_registry = {}\n\
             inference_ledger = {}\nreward_token = {}\nreward_distributor = {}\n",
            a(1),
            a(2),
            a(3),
            a(4),
            a(5)
        );
        let d = parse(&full).unwrap().chain.inline().unwrap().unwrap();
        assert_eq!((d.start_block, d.chain_id), (7, 0));
        assert_eq!(
            d.reward_distributor,
            tributary_schemas::Address::repeat_byte(5)
        );
        for (bad, says) in [
            (full.replace("start_block = 7\n", ""), "start_block"),
            (
                full.replace("model_registry", "# model_registry"),
                "not model_registry",
            ),
            (
                full.replace(&a(3), "\"0x12\""),
                "inference_ledger = \"0x12\" is not an address",
            ),
            (format!("{full}deployment = \"d.json\"\n"), "keep one"),
        ] {
            let err = parse(&bad).unwrap_err().to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
    }
}
