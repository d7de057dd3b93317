//! A training job, as `tributary train --config train.toml` runs it: resolve the base model
//! (registering it on chain the first time), freeze or load the snapshot, read its
//! contributions through Delta time travel, train (fresh, continued from a parent, or from a
//! merge of parents), write the adapter in PEFT's format with its manifest and loss curve,
//! store it in the lake under its content address and publish it on chain with the next
//! version of its line.
//!
//! Everything that can be checked is checked before training starts: the spec, the LoRA
//! targets against the base model, the snapshot on chain, the parents, the tokenizer.
//! Publishing is idempotent: the same spec on the same snapshot gives the same adapter id,
//! and a second run returns the adapter already published instead of a second one.

use std::path::{Path, PathBuf};

use alloy::primitives::{B256, keccak256};
use serde::{Deserialize, Serialize};
use tch::Device;
use tributary_chain::Chain;
use tributary_chain::bindings::ModelRegistry::ModelRegistryErrors as E;
use tributary_lake::Lake;
use tributary_pipeline::{datanet, snapshot};
use tributary_schemas::manifest::{
    AdapterManifest, AdapterParent, SnapshotManifest, TrainingMetrics,
};

use crate::attribute;
use crate::catalog::{self, OnChain, find, load_manifest, published, semver};
use crate::{DeviceChoice, Error, Result};
use tributary_trainer::base::{self, Recipe};
use tributary_trainer::influence::{self, InfluenceConfig, SetInfluence};
use tributary_trainer::lora::{Lora, LoraConfig};
use tributary_trainer::model::{Arch, Config, Model};
use tributary_trainer::plot;
use tributary_trainer::spans::SpanIndex;
use tributary_trainer::tokenizer::Tokenizer;
use tributary_trainer::train::{
    Progress, TrainConfig, TrainReport, held_out, train_with_checkpoints,
};

/// `train.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The model line the adapter is a version of (for example `kitchen-assistant`).
    pub line: String,
    /// Its semantic version; default: the line's latest with the minor part raised, or 1.0.0.
    #[serde(default)]
    pub version: Option<String>,
    /// `tiny` (the project's own base model) or a Hugging Face checkpoint folder (relative
    /// paths are relative to the spec file).
    #[serde(default = "tiny")]
    pub base_model: String,
    /// A committed snapshot to train on.
    #[serde(default)]
    pub snapshot: Option<B256>,
    /// Or Datanets (names or ids) to freeze into a snapshot now.
    #[serde(default)]
    pub datanets: Vec<String>,
    /// Parent adapters, by id or `line@version`: one to continue training, several to merge.
    #[serde(default)]
    pub parents: Vec<String>,
    /// Merge weights of the parents (default: equal, summing to 1).
    #[serde(default)]
    pub merge_weights: Vec<f64>,
    /// Publish the merge of the parents without training (no snapshot).
    #[serde(default)]
    pub merge_only: bool,
    /// How a contribution's JSON becomes text: `{field}` placeholders; default: its `text`
    /// field, else `question: …\nanswer: …`, else every field as `key: value` lines.
    #[serde(default)]
    pub template: Option<String>,
    /// LoRA settings.
    #[serde(default)]
    pub lora: LoraConfig,
    /// Training settings (its `lora` is not read from here: [`Spec::train_config`] takes
    /// `lora`).
    #[serde(default)]
    pub train: TrainConfig,
    /// How the adapter's influence index is built (`[attribution]`: `dim`, `checkpoints`,
    /// `passes`, `damping`, `max_tokens`, `seed`). It does not shape the weights, so it is not part of
    /// the config hash; the index records the settings it was built with.
    #[serde(default)]
    pub attribution: InfluenceConfig,
}

/// The default `base_model`: the project's own tiny model.
pub(crate) fn tiny() -> String {
    "tiny".into()
}

impl Spec {
    /// Parses `train.toml` text; errors name the key and the fix.
    pub fn parse(text: &str) -> Result<Self> {
        let spec: Spec =
            toml::from_str(text).map_err(|e| Error::InvalidInput(format!("train config: {e}")))?;
        spec.check()?;
        Ok(spec)
    }

    /// Reads and parses a `train.toml`; a relative `base_model` folder is taken relative to it.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidInput(format!(
                "{}: {e}: give a train.toml (see README.md, \"Training\")",
                path.display()
            ))
        })?;
        let mut spec = Self::parse(&text)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
        if spec.base_model != "tiny" && Path::new(&spec.base_model).is_relative() {
            let dir = path.parent().unwrap_or(Path::new("."));
            spec.base_model = dir.join(&spec.base_model).display().to_string();
        }
        Ok(spec)
    }

    /// Checks the spec without touching the chain or the lake.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        if self.line.is_empty()
            || self.line.contains('@')
            || self.line.contains(char::is_whitespace)
        {
            return bad(format!(
                "line {:?} must be a non-empty name without '@' or spaces",
                self.line
            ));
        }
        if let Some(v) = &self.version {
            semver(v)?;
        }
        self.attribution.check()?;
        match (
            self.merge_only,
            self.snapshot.is_some(),
            self.datanets.is_empty(),
        ) {
            (true, _, _) if self.parents.len() < 2 => {
                return bad("merge_only needs at least two parents".into());
            }
            (true, true, _) | (true, _, false) => {
                return bad("merge_only trains on nothing: remove snapshot and datanets".into());
            }
            (false, true, false) => {
                return bad("give either snapshot or datanets, not both".into());
            }
            (false, false, true) => {
                return bad(
                    "nothing to train on: set snapshot = \"0x…\" (from `tributary snapshot`) or datanets = [\"name\"]"
                        .into(),
                );
            }
            _ => {}
        }
        if !self.merge_weights.is_empty() && self.merge_weights.len() != self.parents.len() {
            return bad(format!(
                "{} merge_weights for {} parents: give one per parent, or none for equal weights",
                self.merge_weights.len(),
                self.parents.len()
            ));
        }
        Ok(())
    }

    /// Each parent's weight: 1 for a single parent (continued training), else the merge
    /// weights, equal when none are given.
    fn parent_weights(&self) -> Vec<f64> {
        match (self.parents.len(), self.merge_weights.as_slice()) {
            (1, _) => vec![1.0],
            (n, []) => vec![1.0 / n as f64; n],
            (_, w) => w.to_vec(),
        }
    }

    /// The LoRA and training settings as the trainer takes them.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            lora: self.lora.clone(),
            ..self.train.clone()
        }
    }

    /// What the adapter's config hash covers: everything that shapes the weights.
    fn hashed_config(&self) -> serde_json::Value {
        serde_json::json!({
            "lora": self.lora,
            "train": if self.merge_only { serde_json::Value::Null } else { serde_json::to_value(&self.train).expect("json") },
            "template": self.template,
            "merge_weights": self.merge_weights,
        })
    }
}

/// The files of an adapter's folder besides `manifest.json` (those that exist are stored).
pub const ADAPTER_FILES: [&str; 7] = [
    "adapter_model.safetensors",
    "adapter_config.json",
    "loss.png",
    "influence.safetensors",
    "influence.json",
    "spans.bin",
    "spans.json",
];

/// How a job runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to compute.
    pub device: DeviceChoice,
    /// Local folder for the adapter's files (a copy of what goes to the lake).
    pub out: PathBuf,
    /// Where the tiny base model is cached.
    pub model_cache: PathBuf,
}

/// What a job did.
#[derive(Debug, Clone)]
pub struct Published {
    /// The adapter's manifest.
    pub manifest: AdapterManifest,
    /// Its folder in the lake, as an absolute URI (on chain: its key).
    pub uri: String,
    /// The local folder with its files.
    pub dir: PathBuf,
    /// The publishing transaction and block (of the earlier run when already published).
    pub tx: B256,
    /// Block of `tx`.
    pub block: u64,
    /// False when this exact adapter was already published.
    pub newly_published: bool,
    /// True when this run registered the base model.
    pub base_registered: bool,
}

/// The version to publish: the spec's, or the line's latest with the minor part raised.
fn next_version(all: &[OnChain], line: &str, wanted: Option<&str>) -> Result<String> {
    if let Some(v) = wanted {
        return Ok(v.to_string());
    }
    let prefix = format!("{line}@");
    let latest = all
        .iter()
        .filter_map(|a| a.version.strip_prefix(&prefix))
        .filter_map(|v| semver(v).ok())
        .max();
    Ok(match latest {
        Some([major, minor, _]) => {
            let next = minor.checked_add(1).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{line}@{major}.{minor}.x has no next minor version: give `version` in the spec"
                ))
            })?;
            format!("{major}.{next}.0")
        }
        None => "1.0.0".into(),
    })
}

/// A contribution's text for training (see [`Spec::template`]).
pub fn render(template: Option<&str>, content: &str) -> Result<String> {
    let v: serde_json::Value = match serde_json::from_str(content) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => return Ok(content.to_string()),
    };
    let field = |k: &str| match &v[k] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    };
    if let Some(t) = template {
        let mut out = String::new();
        let mut rest = t;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').ok_or_else(|| {
                Error::InvalidInput(format!("template {t:?} has an unclosed '{{'"))
            })?;
            let key = &rest[open + 1..open + close];
            out.push_str(&field(key).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "template field {{{key}}} is missing from a contribution: fix the template or the Datanet's schema"
                ))
            })?);
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        return Ok(out.replace("\\n", "\n"));
    }
    if let Some(text) = field("text") {
        return Ok(text);
    }
    if let (Some(q), Some(a)) = (field("question"), field("answer")) {
        return Ok(format!("question: {q}\nanswer: {a}"));
    }
    let obj = v.as_object().expect("checked");
    Ok(obj
        .keys()
        .filter_map(|k| field(k).map(|x| format!("{k}: {x}")))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The base model folder and its registry id; registers it (and stores it in the lake) the
/// first time. Registered already, its record must name these weights and architecture: the
/// registry does not derive ids, so another publisher may have taken this one first.
async fn base_model(
    chain: &Chain,
    lake: &Lake,
    dir: &Path,
    arch: Arch,
) -> Result<(B256, String, bool)> {
    let files = base::checkpoint_file_hashes(dir)?;
    let id = B256::from(base::checkpoint_id(&files));
    let weights_hash = B256::from(base::weights_hash(&files));
    let arch = arch_name(arch);
    let folder = format!("models/{id}/");
    // Recorded on chain and in adapter_config.json by its key, relative to the lake root.
    let uri = folder.clone();
    let registry = chain.model_registry();
    if registry
        .isBaseModel(id)
        .call()
        .await
        .map_err(tributary_chain::Error::from)?
    {
        same_base(chain, id, weights_hash, arch).await?;
        return Ok((id, uri, false));
    }
    for (name, _) in &files {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| Error::Io(p.display().to_string(), e))?;
        lake.put(&format!("{folder}{name}"), bytes).await?;
    }
    let call = registry.registerBaseModel(id, weights_hash, arch.into(), uri.clone());
    match tributary_chain::send(call).await {
        Ok(_) => Ok((id, uri, true)),
        Err(e) if matches!(e.revert::<E>(), Some(E::AlreadyRegistered(_))) => {
            same_base(chain, id, weights_hash, arch).await?;
            Ok((id, uri, false))
        }
        Err(e) => Err(e.into()),
    }
}

/// Refuses base model `id` when the chain registered it with other weights or another
/// architecture than this folder's.
async fn same_base(chain: &Chain, id: B256, weights_hash: B256, arch: &str) -> Result<()> {
    let filter = chain
        .model_registry()
        .BaseModelRegistered_filter()
        .topic1(id)
        .filter;
    let found = chain
        .events::<tributary_chain::bindings::ModelRegistry::BaseModelRegistered>(&filter)
        .await?;
    let (e, log) = found
        .first()
        .ok_or_else(|| Error::NotFound(format!("the BaseModelRegistered event of {id}")))?;
    if e.weightsHash != weights_hash || e.architecture != arch {
        return Err(Error::InvalidInput(format!(
            "base model {id} was registered by transaction {} with other contents (weights {}, \
             architecture {:?}; this folder's: weights {weights_hash}, {arch:?}): adapters \
             trained on it would name weights the chain does not hold; ask who holds the \
             ModelRegistry's publisher role",
            log.transaction_hash.unwrap_or_default(),
            e.weightsHash,
            e.architecture
        )));
    }
    Ok(())
}

/// Refuses a signer without the ModelRegistry's publisher role at once, not after training.
async fn may_publish(chain: &Chain) -> Result<()> {
    let signer = chain.signer();
    if signer.is_zero() {
        return Err(Error::InvalidInput(
            "publishing an adapter needs a signer key with PUBLISHER_ROLE: TRIBUTARY_PRIVATE_KEY \
             or --key-file"
                .into(),
        ));
    }
    let registry = chain.model_registry();
    let role = registry
        .PUBLISHER_ROLE()
        .call()
        .await
        .map_err(tributary_chain::Error::from)?;
    if registry
        .hasRole(role, signer)
        .call()
        .await
        .map_err(tributary_chain::Error::from)?
    {
        return Ok(());
    }
    Err(Error::InvalidInput(format!(
        "{signer} may not publish adapters: it lacks PUBLISHER_ROLE on the ModelRegistry at {}; \
         an account with ADMIN_ROLE there grants it (grantRole(keccak256(\"PUBLISHER_ROLE\"), \
         {signer})), or sign with a publisher's key",
        registry.address()
    )))
}

fn arch_name(a: Arch) -> &'static str {
    match a {
        Arch::Gpt2 => "gpt2",
        Arch::Llama => "llama",
    }
}

/// Runs `spec` to a published adapter. `progress` sees every training step.
pub async fn run(
    chain: &Chain,
    lake: &Lake,
    spec: &Spec,
    opts: &Options,
    progress: Box<dyn FnMut(&Progress) + Send>,
) -> Result<Published> {
    match run_gated(chain, lake, spec, opts, None, None, progress).await? {
        Outcome::Published { published, .. } => Ok(published),
        Outcome::NotPromoted(_) => unreachable!("no promotion rule, no refusal"),
    }
}

/// What a job with a promotion rule did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Published (or found published already).
    Published {
        /// What was published.
        published: Published,
        /// The parent's held-out loss on this snapshot's held-out split (with one parent).
        current_loss: Option<f64>,
    },
    /// Trained and evaluated, but not published: it did not beat its parent by the rule.
    NotPromoted(NotPromoted),
}

/// An adapter trained but not published.
#[derive(Debug, Clone)]
pub struct NotPromoted {
    /// Its manifest, with the version it would have had.
    pub manifest: AdapterManifest,
    /// Its local folder (files written, nothing in the lake).
    pub dir: PathBuf,
    /// The parent's (current version's) held-out loss on this snapshot's held-out split.
    pub current_loss: f64,
    /// The new adapter's held-out loss on the same split.
    pub eval_loss: f64,
}

/// Asked right before the publishing transaction is sent; an `Err` stops the run unpublished
/// (a scheduled run checks that its worker still holds the lease).
pub type PublishGuard<'a> = dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>
    + Send
    + Sync
    + 'a;

/// Like [`run`], with a promotion rule: when the job continues from one parent (the line's
/// current version), the new adapter is published only if its held-out loss is below the
/// parent's on the same held-out split by at least the fraction `min_improvement` (0: any
/// improvement). Without a parent there is nothing to beat and it is published. `guard`, when
/// given, must pass right before publishing.
#[tracing::instrument(name = "train_job", skip_all)]
pub async fn run_gated(
    chain: &Chain,
    lake: &Lake,
    spec: &Spec,
    opts: &Options,
    min_improvement: Option<f64>,
    guard: Option<&PublishGuard<'_>>,
    progress: Box<dyn FnMut(&Progress) + Send>,
) -> Result<Outcome> {
    if let Some(m) = min_improvement.filter(|m| !(0.0..1.0).contains(m)) {
        return Err(Error::InvalidInput(format!(
            "min_improvement {m} is not a fraction in [0, 1): use for example 0.02 for 2% lower held-out loss"
        )));
    }
    spec.check()?;
    let device = opts.device.device()?;

    // Resolve: everything that can be checked, before any costly work.
    may_publish(chain).await?;
    let base = resolve_base(spec, opts).await?;
    let all = published(chain).await?;
    let parents = spec
        .parents
        .iter()
        .map(|p| find(&all, p, "parent adapter").cloned())
        .collect::<Result<Vec<_>>>()?;
    let version = next_version(&all, &spec.line, spec.version.as_deref())?;
    let full_version = format!("{}@{version}", spec.line);

    // Snapshot: frozen now or loaded, and its text read through time travel.
    let snapshot = resolve_snapshot(chain, lake, spec).await?;
    let docs = match &snapshot {
        Some(m) => read_documents(lake, m, spec.template.as_deref()).await?,
        None => Vec::new(),
    };

    // Train, on a worker thread.
    let (base_id, base_uri, base_registered) =
        base_model(chain, lake, &base.folder, base.config.arch).await?;
    let trained = train(
        lake, spec, base, device, docs, &parents, base_id, &base_uri, opts, progress,
    )
    .await?;

    // The adapter's manifest; its id says whether this exact adapter is already published.
    let parent_ids: Vec<B256> = parents.iter().map(|p| p.id).collect();
    let manifest = describe(
        spec,
        &version,
        base_id,
        snapshot.as_ref(),
        &parent_ids,
        &trained,
        device,
    );
    let adapter_id = manifest.adapter_id;
    if let Some(done) = all.iter().find(|a| a.id == adapter_id) {
        // The same training of the same data: already published (by an earlier run, unless
        // another publisher took its id with other contents).
        same_record(&manifest, done)?;
        let mut m = load_manifest(lake, done).await?;
        // Its version is the one on chain, whatever the manifest says (a run that found its
        // id published under another version stored its own before it stopped).
        if let Some((line, version)) = done.version.split_once('@')
            && (m.line.as_str(), m.version.as_str()) != (line, version)
        {
            tracing::warn!(%adapter_id, on_chain = %done.version, manifest = %format!("{}@{}", m.line, m.version), "the adapter's manifest names another version than the chain: the chain's is reported");
            (m.line, m.version) = (line.to_string(), version.to_string());
        }
        return Ok(Outcome::Published {
            current_loss: None,
            published: Published {
                manifest: m,
                uri: lake.uri(&AdapterManifest::folder(adapter_id)).to_string(),
                dir: opts.out.clone(),
                tx: done.tx,
                block: done.block,
                newly_published: false,
                base_registered,
            },
        });
    }
    if let Some(taken) = all.iter().find(|a| a.version == full_version) {
        return Err(Error::InvalidInput(format!(
            "{full_version} is already adapter {}: give another version, or leave `version` out to take the next",
            taken.id
        )));
    }
    let bytes = manifest.to_bytes();
    let manifest_path = opts.out.join("manifest.json");
    std::fs::write(&manifest_path, &bytes)
        .map_err(|e| Error::Io(manifest_path.display().to_string(), e))?;
    if let (Some(min), [_], Some(r)) = (min_improvement, parents.as_slice(), &trained.report) {
        let beats = r.eval_loss_best < r.start_eval_loss
            && r.eval_loss_best <= r.start_eval_loss * (1.0 - min);
        if !beats {
            tracing::info!(%adapter_id, current = r.start_eval_loss, new = r.eval_loss_best, "not promoted");
            return Ok(Outcome::NotPromoted(NotPromoted {
                manifest,
                dir: opts.out.clone(),
                current_loss: r.start_eval_loss,
                eval_loss: r.eval_loss_best,
            }));
        }
    }

    // Store in the lake, then publish on chain.
    store(
        lake,
        &opts.out,
        &manifest,
        bytes,
        &trained,
        snapshot.as_ref(),
    )
    .await?;
    if let Some(guard) = guard {
        guard().await?;
    }
    let (tx, block, newly) = publish(chain, &manifest, &full_version).await?;
    let current_loss = match parents.as_slice() {
        [_] => trained.report.as_ref().map(|r| r.start_eval_loss),
        _ => None,
    };
    Ok(Outcome::Published {
        current_loss,
        published: Published {
            uri: lake.uri(&AdapterManifest::folder(adapter_id)).to_string(),
            manifest,
            dir: opts.out.clone(),
            tx,
            block,
            newly_published: newly,
            base_registered,
        },
    })
}

/// The base model's folder, configuration and tokenizer, checked against the spec's LoRA
/// targets (the tiny model is built on first use).
struct Base {
    folder: PathBuf,
    config: Config,
    tokenizer: Tokenizer,
}

/// Whether `spec`'s adapter (or merge) fits a base model of shape `config`.
fn check_shape(spec: &Spec, config: &Config) -> Result<()> {
    let cfg = spec.train_config();
    if spec.merge_only {
        Ok(cfg.lora.validate(config)?)
    } else {
        Ok(cfg.validate(config)?)
    }
}

/// The tiny base model's folder when `spec` trains on it (`base_model = "tiny"`), pretrained
/// into `cache` first (on a worker thread) if it is not there: once per machine, about a minute
/// and a half on two cores, `progress` seeing each pretraining step; `None` for any other base
/// model. The spec, and its shape against the tiny model's, are checked before anything is
/// built. A caller that shows progress runs it before [`run`], which then finds it cached.
pub async fn pretrain_tiny(
    spec: &Spec,
    cache: &Path,
    mut progress: Box<dyn FnMut(&Progress) + Send>,
) -> Result<Option<PathBuf>> {
    if spec.base_model != "tiny" {
        return Ok(None);
    }
    spec.check()?;
    let recipe = Recipe::tiny();
    check_shape(spec, &recipe.config)?;
    let cache = cache.to_path_buf();
    let built =
        tokio::task::spawn_blocking(move || base::build_cached(&recipe, &cache, &mut *progress))
            .await
            .map_err(Error::joined)??;
    Ok(Some(built))
}

async fn resolve_base(spec: &Spec, opts: &Options) -> Result<Base> {
    let folder = pretrain_tiny(spec, &opts.model_cache, Box::new(|_| {}))
        .await?
        .unwrap_or_else(|| PathBuf::from(&spec.base_model));
    let config = Config::from_hf(&read_json(&folder.join("config.json"))?)?;
    check_shape(spec, &config)?;
    let tokenizer = Tokenizer::load(&folder.join("tokenizer.json"))?;
    tokenizer.check(&config)?;
    Ok(Base {
        folder,
        config,
        tokenizer,
    })
}

/// The snapshot to train on: the committed one the spec names, or its Datanets frozen now;
/// none for a merge.
async fn resolve_snapshot(
    chain: &Chain,
    lake: &Lake,
    spec: &Spec,
) -> Result<Option<SnapshotManifest>> {
    if spec.merge_only {
        return Ok(None);
    }
    if let Some(id) = spec.snapshot {
        return Ok(Some(snapshot::load_committed(chain, lake, id).await?));
    }
    let mut ids = Vec::new();
    for d in &spec.datanets {
        ids.push(datanet::load(chain, lake, d).await?.id);
    }
    Ok(Some(
        snapshot::snapshot(chain, lake, &ids, None).await?.manifest,
    ))
}

/// (contribution id, training text) of every contribution in the snapshot, read through
/// time travel at its pinned versions, in id order whatever the file layout.
async fn read_documents(
    lake: &Lake,
    m: &SnapshotManifest,
    template: Option<&str>,
) -> Result<Vec<(String, String)>> {
    use arrow::array::AsArray;
    let mut docs = Vec::new();
    for b in snapshot::read(lake, m).await? {
        let ids = b
            .column_by_name("contribution_id")
            .expect("schema")
            .as_string::<i32>();
        let content = b
            .column_by_name("content")
            .expect("schema")
            .as_string::<i32>();
        for i in 0..b.num_rows() {
            docs.push((
                ids.value(i).to_string(),
                render(template, content.value(i))?,
            ));
        }
    }
    docs.sort();
    Ok(docs)
}

/// Fetches the parents and trains on a worker thread (see [`train_blocking`]).
#[allow(clippy::too_many_arguments)]
async fn train(
    lake: &Lake,
    spec: &Spec,
    base: Base,
    device: Device,
    docs: Vec<(String, String)>,
    parents: &[OnChain],
    base_id: B256,
    base_uri: &str,
    opts: &Options,
    progress: Box<dyn FnMut(&Progress) + Send>,
) -> Result<Trained> {
    let mut parent_dirs = Vec::new();
    for p in parents {
        parent_dirs.push(fetch_adapter(lake, p, base_id).await?);
    }
    let out = opts.out.clone();
    let spec = spec.clone();
    let base_uri = base_uri.to_string();
    let parent_paths: Vec<PathBuf> = parent_dirs.iter().map(|d| d.path().to_path_buf()).collect();
    let span = tracing::Span::current();
    // `parent_dirs` lives until training is done with the files.
    let trained = tokio::task::spawn_blocking(move || {
        let _job = span.entered();
        train_blocking(
            &spec,
            &base.folder,
            device,
            &base.tokenizer,
            &docs,
            &parent_paths,
            &out,
            &base_uri,
            progress,
        )
    })
    .await
    .map_err(Error::joined)?;
    drop(parent_dirs);
    trained
}

/// The manifest of what was trained, with its content address.
fn describe(
    spec: &Spec,
    version: &str,
    base_id: B256,
    snapshot: Option<&SnapshotManifest>,
    parent_ids: &[B256],
    trained: &Trained,
    device: Device,
) -> AdapterManifest {
    let config = spec.hashed_config();
    let config_hash = keccak256(serde_json::to_vec(&config).expect("json"));
    let snapshot_id = snapshot.map_or(B256::ZERO, |m| m.snapshot_id);
    let adapter_id = AdapterManifest::id_of(
        base_id,
        snapshot_id,
        config_hash,
        trained.weights_hash,
        parent_ids,
    );
    AdapterManifest {
        adapter_id,
        line: spec.line.clone(),
        version: version.to_string(),
        base_model_id: base_id,
        architecture: arch_name(trained.arch).into(),
        snapshot_id,
        parents: parent_ids
            .iter()
            .zip(spec.parent_weights())
            .map(|(id, weight)| AdapterParent { id: *id, weight })
            .collect(),
        config,
        config_hash,
        weights_hash: trained.weights_hash,
        metrics: trained
            .report
            .as_ref()
            .map(|r| metrics(r, trained.documents)),
        device: format!("{device:?}").to_lowercase(),
        code_version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// Puts the adapter's files in the lake under its id, the manifest last (its presence says
/// the folder is complete), and records its attribution over the held-out set. Before
/// publishing, so a run that stops in between writes them on its rerun (once: the append
/// is idempotent per adapter).
async fn store(
    lake: &Lake,
    dir: &Path,
    manifest: &AdapterManifest,
    bytes: Vec<u8>,
    trained: &Trained,
    snapshot: Option<&SnapshotManifest>,
) -> Result<()> {
    let adapter_id = manifest.adapter_id;
    let folder_key = AdapterManifest::folder(adapter_id);
    for name in ADAPTER_FILES {
        let p = dir.join(name);
        if p.exists() {
            let b = std::fs::read(&p).map_err(|e| Error::Io(p.display().to_string(), e))?;
            lake.put(&format!("{folder_key}{name}"), b).await?;
        }
    }
    lake.put(&AdapterManifest::key(adapter_id), bytes).await?;
    if let (Some((ids, on)), Some(m)) = (&trained.influence, snapshot) {
        attribute::record_adapter(lake, adapter_id, m, ids, on).await?;
    }
    Ok(())
}

/// Publishes the adapter on chain as `full_version`: (tx, block, newly published). An
/// adapter already published (by an earlier run that stopped before it could say so) is
/// found; a version another run took first is refused with what to do.
async fn publish(
    chain: &Chain,
    m: &AdapterManifest,
    full_version: &str,
) -> Result<(B256, u64, bool)> {
    let adapter_id = m.adapter_id;
    // Recorded on chain by its key, relative to the lake root.
    let uri = AdapterManifest::folder(adapter_id);
    let registry = chain.model_registry();
    let call = registry.publishAdapter(
        adapter_id,
        m.base_model_id,
        m.parents.iter().map(|p| p.id).collect(),
        m.snapshot_id,
        m.config_hash,
        m.weights_hash,
        uri,
        full_version.to_string(),
    );
    let published = match tributary_chain::send(call).await {
        Ok(r) => (r.transaction_hash, r.block_number.unwrap_or_default(), true),
        Err(e) if matches!(e.revert::<E>(), Some(E::AlreadyRegistered(_))) => {
            let done = published(chain).await?;
            let a = done.iter().find(|a| a.id == adapter_id).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "adapter {adapter_id} is registered but its event was not found"
                ))
            })?;
            same_record(m, a)?;
            if a.version != full_version {
                return Err(Error::InvalidInput(format!(
                    "adapter {adapter_id} is already published as {} (transaction {}), not as \
                     {full_version} as this run meant to: it keeps that version (its manifest in \
                     the lake says {full_version}; the chain's version is the one shown)",
                    a.version, a.tx
                )));
            }
            (a.tx, a.block, false)
        }
        Err(e) => {
            if let Some(E::VersionTaken(t)) = e.revert::<E>() {
                return Err(Error::InvalidInput(format!(
                    "version {} is already published as adapter {} (another run published it first): nothing was published; run again to train the next version",
                    t.version, t.adapterId
                )));
            }
            return Err(e.into());
        }
    };
    tracing::info!(%adapter_id, version = %full_version, tx = %published.0, "adapter published");
    Ok(published)
}

/// Refuses adapter `m` when the chain records its id with other contents: the registry does
/// not derive ids, so another publisher may take this one first with another lineage.
fn same_record(m: &AdapterManifest, on_chain: &OnChain) -> Result<()> {
    m.check(&on_chain.record()).map_err(|differs| {
        Error::InvalidInput(format!(
            "adapter {} was published by transaction {} with other contents ({differs}): \
             nothing was published; ask who holds the ModelRegistry's publisher role, and train \
             with another `[train] seed` to get a new id",
            m.adapter_id, on_chain.tx
        ))
    })
}

fn metrics(r: &TrainReport, documents: (u64, u64)) -> TrainingMetrics {
    TrainingMetrics {
        steps: r.steps as u64,
        tokens: r.tokens,
        seconds: r.seconds,
        base_eval_loss: r.base_eval_loss,
        eval_loss: r.eval_loss_best,
        perplexity: r.perplexity,
        stopped_early: r.stopped_early,
        documents,
        train_loss: r.train_loss.iter().map(|&(s, l)| (s as u64, l)).collect(),
        eval_loss_curve: r.eval_loss.iter().map(|&(s, l)| (s as u64, l)).collect(),
    }
}

/// Downloads a published adapter's PEFT files into a temporary folder, checking that it was
/// trained on `base`.
async fn fetch_adapter(lake: &Lake, a: &OnChain, base: B256) -> Result<tempfile::TempDir> {
    let m = catalog::load_manifest(lake, a).await?;
    if m.base_model_id != base {
        return Err(Error::InvalidInput(format!(
            "parent {} ({}) was trained on base model {}, not {base}: use the same base_model",
            a.version, a.id, m.base_model_id
        )));
    }
    let dir = tempfile::tempdir().map_err(|e| Error::Io("temporary folder".into(), e))?;
    catalog::fetch_files(
        lake,
        &catalog::adapter_folder(lake, a.id)?,
        &["adapter_model.safetensors", "adapter_config.json"],
        dir.path(),
    )
    .await?;
    Ok(dir)
}

fn read_json(p: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(p).map_err(|e| {
        Error::InvalidInput(format!(
            "{}: {e}: base_model must be `tiny` or a folder with config.json, model.safetensors and tokenizer.json",
            p.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| Error::InvalidInput(format!("{}: {e}", p.display())))
}

struct Trained {
    /// The base model's architecture.
    arch: Arch,
    weights_hash: B256,
    report: Option<TrainReport>,
    documents: (u64, u64),
    /// Contribution ids trained on, with their influence on the held-out set.
    influence: Option<(Vec<String>, SetInfluence)>,
}

#[allow(clippy::too_many_arguments)]
fn train_blocking(
    spec: &Spec,
    folder: &Path,
    device: Device,
    tokenizer: &Tokenizer,
    docs: &[(String, String)],
    parents: &[PathBuf],
    out: &Path,
    base_uri: &str,
    mut progress: Box<dyn FnMut(&Progress) + Send>,
) -> Result<Trained> {
    // Files of an earlier run in the same folder must not be stored with this adapter.
    for name in ADAPTER_FILES {
        let _ = std::fs::remove_file(out.join(name));
    }
    let cfg = spec.train_config();
    let model = Model::load_as(folder, device, cfg.precision)?;
    let loaded: Vec<Lora> = parents
        .iter()
        .map(|p| Lora::load_peft(&model, p))
        .collect::<tributary_trainer::Result<_>>()?;
    let start = match loaded.len() {
        0 => None,
        1 => Some(loaded.into_iter().next().expect("one")),
        _ => {
            let pairs: Vec<(&Lora, f64)> = loaded.iter().zip(spec.parent_weights()).collect();
            Some(Lora::merge(&model, &pairs)?)
        }
    };
    let (lora, report, documents, influence) = if spec.merge_only {
        (start.expect("merge_only has parents"), None, (0, 0), None)
    } else {
        let ids: Vec<Vec<i64>> = docs
            .iter()
            .map(|(_, t)| tokenizer.encode(t))
            .collect::<tributary_trainer::Result<_>>()?;
        let ids_all = ids.clone();
        let (lora, report, checkpoints) = train_with_checkpoints(
            &model,
            &ids,
            tokenizer.eot(),
            &cfg,
            start.as_ref(),
            &mut *progress,
        )?;
        // Attribution indexes over the contributions trained on (not the held-out ones).
        let trained: Vec<(String, Vec<i64>)> = docs
            .iter()
            .zip(ids)
            .enumerate()
            .filter(|(i, _)| !held_out(*i, cfg.eval_fraction))
            .map(|(_, ((id, _), t))| (id.clone(), t))
            .collect();
        let icfg = &spec.attribution;
        let picked = influence::pick(checkpoints, report.best_step, icfg.checkpoints);
        std::fs::create_dir_all(out).map_err(|e| Error::Io(out.display().to_string(), e))?;
        let index = influence::build(&model, &lora, picked, &trained, icfg)?;
        index.save(out)?;
        // The adapter's own attribution: every contribution against the held-out set.
        let queries: Vec<Vec<i64>> = ids_all
            .iter()
            .enumerate()
            .filter(|(i, _)| held_out(*i, cfg.eval_fraction))
            .map(|(_, t)| t.clone())
            .collect();
        let on_held_out = index.over(&model, &lora, &queries)?;
        SpanIndex::build(&trained, tokenizer.eot())?.save(out)?;
        let documents = (trained.len() as u64, (docs.len() - trained.len()) as u64);
        let ids = index.meta.ids.clone();
        (lora, Some(report), documents, Some((ids, on_held_out)))
    };
    lora.save_peft(&model, out, base_uri)?;
    if let Some(r) = &report {
        plot::loss_curve(&r.train_loss, &r.eval_loss, &out.join("loss.png"))?;
    }
    Ok(Trained {
        arch: model.config.arch,
        weights_hash: B256::from(lora.weights_hash()?),
        report,
        documents,
        influence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_defaults_and_bad_ones_say_how_to_fix_them() {
        let s = Spec::parse("line = \"kitchen\"\ndatanets = [\"recipes\"]\n").unwrap();
        assert_eq!(
            (s.base_model.as_str(), s.lora.rank, s.train.max_steps),
            ("tiny", 8, 150)
        );
        let err = |t: &str| Spec::parse(t).unwrap_err().to_string();
        assert!(err("line = \"k\"").contains("nothing to train on"));
        assert!(
            err("line = \"k\"\ndatanets=[\"a\"]\n[lora]\nrnk = 4").contains("unknown field `rnk`")
        );
        assert!(err("line = \"k@1\"\ndatanets=[\"a\"]").contains("without '@'"));
        assert!(
            err("line = \"k\"\ndatanets=[\"a\"]\nversion=\"1.2\"").contains("major.minor.patch")
        );
        assert!(err("line = \"k\"\nmerge_only = true\nparents=[\"a\"]").contains("two parents"));
        // `[attribution]`: keys left out keep their defaults; bad ones name the key.
        let ok = |t: &str| Spec::parse(&format!("line = \"k\"\ndatanets=[\"a\"]\n{t}"));
        let s = ok("[attribution]\ndim = 64").unwrap();
        let defaults = InfluenceConfig::default();
        assert_eq!(
            (s.attribution.dim, s.attribution.checkpoints),
            (64, defaults.checkpoints)
        );
        let bad = |t: &str| ok(t).unwrap_err().to_string();
        assert!(bad("[attribution]\ndim = 0").contains("attribution.dim 0"));
        assert!(bad("[attribution]\ndamping = -1.0").contains("attribution.damping"));
        assert!(bad("[attribution]\ncheckpoints = 0").contains("attribution.checkpoints"));
        assert!(bad("[attribution]\npasses = 65").contains("attribution.passes"));
        assert!(bad("[attribution]\nprojection = 8").contains("unknown field `projection`"));
    }

    #[test]
    fn contributions_render_to_text() {
        let qa = r#"{"answer":"4 cups","question":"How much?"}"#;
        assert_eq!(
            render(None, qa).unwrap(),
            "question: How much?\nanswer: 4 cups"
        );
        assert_eq!(
            render(Some("Q {question} A {answer}"), qa).unwrap(),
            "Q How much? A 4 cups"
        );
        assert_eq!(render(None, r#"{"text":"hello","x":1}"#).unwrap(), "hello");
        assert_eq!(render(None, r#"{"b":2,"a":"x"}"#).unwrap(), "a: x\nb: 2");
        assert_eq!(render(None, "plain").unwrap(), "plain");
        assert!(
            render(Some("{missing}"), qa)
                .unwrap_err()
                .to_string()
                .contains("{missing}")
        );
    }

    #[test]
    fn versions_follow_the_line() {
        let a = |v: &str| OnChain {
            id: B256::ZERO,
            version: v.into(),
            uri: String::new(),
            snapshot: B256::ZERO,
            base_model: B256::ZERO,
            parents: vec![],
            config_hash: B256::ZERO,
            weights_hash: B256::ZERO,
            tx: B256::ZERO,
            block: 0,
        };
        let all = [a("k@1.0.0"), a("k@1.10.0"), a("k@1.9.3"), a("other@7.0.0")];
        assert_eq!(next_version(&all, "k", None).unwrap(), "1.11.0");
        assert_eq!(next_version(&all, "new", None).unwrap(), "1.0.0");
        assert_eq!(next_version(&all, "k", Some("2.0.0")).unwrap(), "2.0.0");
        // A version anyone may publish straight to the registry: no next minor, said plainly.
        let top = [a(&format!("k@1.{}.0", u64::MAX))];
        let e = next_version(&top, "k", None).unwrap_err().to_string();
        assert!(e.contains("no next minor") && e.contains("version"), "{e}");
    }
}
