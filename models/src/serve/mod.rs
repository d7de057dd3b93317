//! Serving: many published adapters on one base model, each answer with its ancestry and
//! attribution, recorded in the inference ledger.
//!
//! - the batched decoder (`tributary_trainer::engine`: per-row LoRA gather, continuous
//!   batching, LRU adapter cache) runs on its own thread, which owns every tensor it uses.
//! - [`Server::account`]: an answer's `ancestry`, `attribution` and ledger record, the fields
//!   Tributary adds to every answer (`tributary-api`'s `/v1` routes call it).
//! - [`ledger`]: every answer is journaled on disk, then posted in batches to the lake and
//!   the chain (`InferencesRecorded`).
//!
//! Attribution runs on a second thread with its own copy of the base model, on the same
//! device (CUDA when visible), so scoring an answer never stalls decoding. The answers
//! waiting when it turns to them are scored together: their gradients come in batched
//! passes, one row per answer with its own adapter's weights (`influence::scores_batch`).
//! It keeps adapters' indexes within `attribution_budget` bytes.

pub mod answer;
pub mod ledger;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::{Address, B256};
use serde_json::{Value, json};
use tch::Device;
use tokio::sync::{Mutex, OnceCell, mpsc, oneshot};
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_pipeline::chain_state::ChainState;
use tributary_pipeline::snapshot;
use tributary_schemas::manifest::{AdapterManifest, SnapshotManifest};

use crate::attribute::{self, Found};
use crate::catalog::{self, OnChain};
use crate::{Error, Result};
use tributary_trainer::attribute::{self as scoring, Loaded};
use tributary_trainer::engine::{Engine, Event, Request, Sampling};
use tributary_trainer::model::Model;
use tributary_trainer::tokenizer::Tokenizer;

/// How the inference server runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Local cache of base models and adapter files.
    pub cache_dir: PathBuf,
    /// Where the ledger keeps its journal of answers not yet posted.
    pub ledger_dir: PathBuf,
    /// Sequences decoded at once.
    pub slots: i64,
    /// Longest context a sequence may reach (capped by the base model's positions): the
    /// key/value cache holds this many positions per slot.
    pub max_context: i64,
    /// Bytes of adapters kept in memory.
    pub adapter_budget: i64,
    /// Fee per token (prompt and answer), in integer token units.
    pub fee_per_token: u128,
    /// Ledger batching.
    pub ledger: ledger::LedgerConfig,
    /// Contributions listed per answer.
    pub top_k: usize,
    /// Bytes of adapters and their influence indexes the attribution thread keeps in memory
    /// (at least the adapters of the batch it is scoring).
    pub attribution_budget: i64,
    /// Prometheus metrics (register them with [`ServeMetrics::register`] to export them).
    pub metrics: ServeMetrics,
}

/// The inference server's Prometheus metrics (`tributary_inference_*`).
#[derive(Debug, Clone)]
pub struct ServeMetrics {
    /// Seconds from a request's submission to its last token.
    pub latency: prometheus_client::metrics::histogram::Histogram,
    /// Tokens generated.
    pub tokens: prometheus_client::metrics::counter::Counter,
    /// Adapter lookups answered from memory.
    pub cache_hits: prometheus_client::metrics::counter::Counter,
    /// Adapters loaded into memory (cache misses).
    pub cache_loads: prometheus_client::metrics::counter::Counter,
    /// Answers attributed.
    pub attributed: prometheus_client::metrics::counter::Counter,
    /// Batches they were attributed in (answers finished together share gradient passes).
    pub attribution_batches: prometheus_client::metrics::counter::Counter,
}

impl Default for ServeMetrics {
    fn default() -> Self {
        Self {
            latency: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.01, 2.0, 14),
            ),
            tokens: Default::default(),
            cache_hits: Default::default(),
            cache_loads: Default::default(),
            attributed: Default::default(),
            attribution_batches: Default::default(),
        }
    }
}

impl ServeMetrics {
    /// New metrics registered in `registry`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("tributary_inference");
        r.register(
            "request_seconds",
            "Seconds from a completion request's submission to its last token",
            m.latency.clone(),
        );
        r.register("tokens", "Tokens generated", m.tokens.clone());
        r.register(
            "adapter_cache_hits",
            "Adapter lookups answered from memory",
            m.cache_hits.clone(),
        );
        r.register(
            "adapter_cache_loads",
            "Adapters loaded into memory (cache misses)",
            m.cache_loads.clone(),
        );
        r.register("attributed", "Answers attributed", m.attributed.clone());
        r.register(
            "attribution_batches",
            "Batches answers were attributed in (answers finished together share passes)",
            m.attribution_batches.clone(),
        );
        m
    }
}

impl ServeConfig {
    /// Defaults under `data_dir`.
    pub fn new(data_dir: &Path, cache_dir: &Path) -> Self {
        ServeConfig {
            cache_dir: cache_dir.to_path_buf(),
            ledger_dir: data_dir.join("ledger"),
            slots: 64,
            max_context: 4096,
            adapter_budget: 256 << 20,
            fee_per_token: 1_000_000_000_000,
            ledger: ledger::LedgerConfig::default(),
            top_k: 5,
            attribution_budget: 1 << 30,
            metrics: ServeMetrics::default(),
        }
    }
}

/// Commands to the engine thread.
enum Cmd {
    Submit(Request<mpsc::UnboundedSender<Event>>),
}

/// The running base model: its id, tokenizer and engine thread.
struct Base {
    id: B256,
    tokenizer: Arc<Tokenizer>,
    engine: std::sync::mpsc::Sender<Cmd>,
    attribution: std::sync::mpsc::Sender<AttributionJob>,
}

fn spawn_engine(
    model: Model,
    eot: i64,
    slots: i64,
    budget: i64,
    metrics: ServeMetrics,
) -> std::sync::mpsc::Sender<Cmd> {
    let (tx, rx) = std::sync::mpsc::channel::<Cmd>();
    std::thread::Builder::new()
        .name("tributary-engine".into())
        .spawn(move || {
            let mut engine = Engine::new(model, eot, slots, budget);
            let mut seen = (0, 0);
            loop {
                let now = engine.cache_stats();
                metrics.cache_hits.inc_by(now.0 - seen.0);
                metrics.cache_loads.inc_by(now.1 - seen.1);
                seen = now;
                if engine.idle() {
                    match rx.recv() {
                        Ok(cmd) => handle(&mut engine, cmd),
                        Err(_) => return,
                    }
                }
                while let Ok(cmd) = rx.try_recv() {
                    handle(&mut engine, cmd);
                }
                // A failed pass has already failed its own requests; the engine goes on.
                if let Err(e) = engine.step() {
                    tracing::error!(error = %e, "a decoding step failed; its requests failed");
                }
            }
        })
        .expect("a thread starts");
    tx
}

fn handle(engine: &mut Engine<mpsc::UnboundedSender<Event>>, cmd: Cmd) {
    match cmd {
        Cmd::Submit(r) => engine.submit(r),
    }
}

/// An answer to attribute on the attribution thread.
struct AttributionJob {
    adapter: B256,
    dir: PathBuf,
    prompt: String,
    output: String,
    entries: Arc<BTreeMap<String, (Address, u64)>>,
    revoked: Arc<HashSet<String>>,
    top_k: usize,
    reply: oneshot::Sender<Result<Found>>,
}

/// Answers scored in one batch at most (each batch runs in as many gradient passes as its
/// memory needs).
const ATTRIBUTION_BATCH: usize = 256;

fn spawn_attribution(
    folder: PathBuf,
    tokenizer: Arc<Tokenizer>,
    budget: i64,
    metrics: ServeMetrics,
) -> std::sync::mpsc::Sender<AttributionJob> {
    let (tx, rx) = std::sync::mpsc::channel::<AttributionJob>();
    std::thread::Builder::new()
        .name("tributary-attribution".into())
        .spawn(move || {
            // Influence gradients run where the answers are generated (CUDA when visible).
            let model = match Model::load(&folder, Device::cuda_if_available()) {
                Ok(m) => m,
                Err(e) => {
                    for job in rx {
                        let _ = job.reply.send(Err(Error::Internal(format!(
                            "the attribution model did not load: {e}"
                        ))));
                    }
                    return;
                }
            };
            let mut indexes = Indexes {
                budget,
                loaded: Vec::new(),
            };
            while let Ok(first) = rx.recv() {
                // Every answer waiting joins the batch: they share gradient passes.
                let mut jobs = vec![first];
                while jobs.len() < ATTRIBUTION_BATCH
                    && let Ok(job) = rx.try_recv()
                {
                    jobs.push(job);
                }
                metrics.attribution_batches.inc();
                metrics.attributed.inc_by(jobs.len() as u64);
                attribute_batch(&model, &tokenizer, &mut indexes, jobs);
            }
        })
        .expect("a thread starts");
    tx
}

/// The adapters (with their influence and span indexes) the attribution thread keeps, most
/// recently used last, within a budget of bytes.
struct Indexes {
    budget: i64,
    loaded: Vec<(B256, Loaded)>,
}

impl Indexes {
    /// Loads `adapter` unless kept, making room by dropping the least recently used adapters
    /// that `keep` (the batch at hand) does not name.
    fn load(&mut self, model: &Model, adapter: B256, dir: &Path, keep: &[B256]) -> Result<()> {
        if let Some(i) = self.loaded.iter().position(|(id, _)| *id == adapter) {
            let hit = self.loaded.remove(i);
            self.loaded.push(hit);
            return Ok(());
        }
        let l = Loaded::load(model, dir)?;
        let mut held: i64 = self.loaded.iter().map(|(_, l)| l.bytes()).sum::<i64>() + l.bytes();
        let mut i = 0;
        while held > self.budget && i < self.loaded.len() {
            if keep.contains(&self.loaded[i].0) {
                i += 1;
            } else {
                held -= self.loaded.remove(i).1.bytes();
            }
        }
        self.loaded.push((adapter, l));
        Ok(())
    }

    fn get(&self, adapter: B256) -> Option<&Loaded> {
        self.loaded
            .iter()
            .find(|(id, _)| *id == adapter)
            .map(|(_, l)| l)
    }
}

/// Scores a batch of answers together and replies to each.
fn attribute_batch(
    model: &Model,
    tokenizer: &Tokenizer,
    indexes: &mut Indexes,
    jobs: Vec<AttributionJob>,
) {
    let keep: Vec<B256> = jobs.iter().map(|j| j.adapter).collect();
    let mut ready = Vec::with_capacity(jobs.len());
    for job in jobs {
        match indexes.load(model, job.adapter, &job.dir, &keep) {
            Ok(()) => ready.push(job),
            Err(e) => {
                let _ = job.reply.send(Err(e));
            }
        }
    }
    let found = {
        let answers: Vec<scoring::Answer<'_>> = ready
            .iter()
            .map(|job| scoring::Answer {
                prompt: &job.prompt,
                output: &job.output,
                revoked: &job.revoked,
                min_span: 4,
                influence: true,
            })
            .collect();
        let pairs: Vec<(&Loaded, &scoring::Answer<'_>)> = ready
            .iter()
            .zip(&answers)
            .map(|(job, a)| (indexes.get(job.adapter).expect("loaded above"), a))
            .collect();
        scoring::score_batch(model, tokenizer, &pairs)
    };
    for (job, found) in ready.into_iter().zip(found) {
        let credit = found
            .map_err(Error::from)
            .and_then(|f| attribute::credit(f, &job.entries, job.top_k));
        let _ = job.reply.send(credit);
    }
}

/// Blocks near the head whose revocations are read again on every new head (a reorg there
/// can drop one); older blocks are read once.
const REORG_WINDOW: u64 = 64;

/// The revocations the server knows: the settled blocks' (read once) and the ids as of the
/// last head seen.
#[derive(Default)]
struct Revocations {
    /// Contributions revoked in blocks up to `settled_to`.
    settled: HashSet<B256>,
    /// The last block in `settled`.
    settled_to: Option<u64>,
    head: Option<u64>,
    ids: Arc<HashSet<String>>,
}

/// A published adapter the server knows, with what answers need of it.
#[derive(Clone)]
pub struct Served {
    /// On-chain record.
    pub on_chain: OnChain,
    /// Its manifest.
    pub manifest: AdapterManifest,
    /// Local folder with its files.
    pub dir: PathBuf,
    /// `ancestry` as answers show it.
    pub ancestry: Value,
    /// Contribution id -> (contributor, Datanet) of its snapshot.
    pub entries: Arc<BTreeMap<String, (Address, u64)>>,
    /// For a merge (no training of its own): its parents' held-out credit, by merge weight
    /// (`attribute::merge_prior`), which its answers are credited with.
    pub prior: Option<Arc<Vec<attribute::Scored>>>,
}

/// The inference server's state.
pub struct Server {
    chain: Arc<Chain>,
    lake: Lake,
    config: ServeConfig,
    base: OnceCell<Base>,
    published: Mutex<Vec<OnChain>>,
    served: Mutex<HashMap<B256, Served>>,
    /// Revoked contribution ids, kept up to date as the head moves.
    revoked: Mutex<Revocations>,
    /// The inference ledger.
    pub ledger: ledger::Ledger,
}

impl Server {
    /// A server over the chain's published adapters; the base model loads with the first
    /// request (so a fresh deployment serves `/v1/models` at once).
    pub async fn start(chain: Arc<Chain>, lake: Lake, config: ServeConfig) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&config.cache_dir)
            .map_err(|e| Error::Io(config.cache_dir.display().to_string(), e))?;
        let ledger = ledger::Ledger::start(
            chain.clone(),
            lake.clone(),
            config.ledger.clone(),
            &config.ledger_dir,
        )?;
        Ok(Arc::new(Server {
            chain,
            lake,
            config,
            base: OnceCell::new(),
            published: Mutex::new(Vec::new()),
            served: Mutex::new(HashMap::new()),
            revoked: Mutex::new(Revocations::default()),
            ledger,
        }))
    }

    /// Every adapter published on chain (re-read, so new ones show at once).
    pub async fn models(&self) -> Result<Vec<OnChain>> {
        let all = catalog::published(&self.chain).await?;
        *self.published.lock().await = all.clone();
        Ok(all)
    }

    /// The adapter named `name` (id or `line@version`), its files fetched and its ancestry
    /// built on first use. An adapter published after the server started is found: an
    /// unknown name re-reads the chain.
    pub async fn adapter(&self, name: &str) -> Result<Served> {
        let known = {
            let all = self.published.lock().await;
            catalog::find(&all, name, "model").ok().cloned()
        };
        let on_chain = match known {
            Some(a) => a,
            None => catalog::find(&self.models().await?, name, "model")?.clone(),
        };
        if let Some(s) = self.served.lock().await.get(&on_chain.id) {
            return Ok(s.clone());
        }
        let manifest = catalog::load_manifest(&self.lake, &on_chain).await?;
        let dir = self
            .config
            .cache_dir
            .join(format!("adapter-{}", on_chain.id));
        if !dir.join("manifest.json").exists() {
            // Fetched aside (so concurrent first requests do not collide), then renamed into
            // place; the manifest marks a complete folder.
            let io = |e| Error::Io(self.config.cache_dir.display().to_string(), e);
            let part = catalog::aside(&self.config.cache_dir, "adapter")?;
            let mut names = vec!["adapter_model.safetensors", "adapter_config.json"];
            if manifest.metrics.is_some() {
                names.extend(["influence.safetensors", "influence.json"]);
            }
            let folder = catalog::adapter_folder(&self.lake, on_chain.id)?;
            catalog::fetch_files(&self.lake, &folder, &names, part.path()).await?;
            catalog::fetch_spans(&self.lake, &folder, part.path()).await?;
            std::fs::write(
                part.path().join("manifest.json"),
                serde_json::to_vec(&manifest).unwrap_or_default(),
            )
            .map_err(io)?;
            catalog::into_place(part, &dir, "manifest.json")?;
        }
        let snap = self.snapshot_of(&manifest).await?;
        let entries: BTreeMap<_, _> = snap
            .iter()
            .flat_map(|s| &s.contributions)
            .map(|c| (c.id.to_string(), (c.contributor, c.datanet_id)))
            .collect();
        let ancestry = self.ancestry(&manifest, snap.as_ref()).await?;
        let prior = match manifest.metrics {
            None => Some(Arc::new(
                attribute::merge_prior(&self.lake, &manifest).await?,
            )),
            Some(_) => None,
        };
        let s = Served {
            on_chain,
            manifest,
            dir,
            ancestry,
            entries: Arc::new(entries),
            prior,
        };
        self.served.lock().await.insert(s.on_chain.id, s.clone());
        Ok(s)
    }

    /// The snapshot adapter `m` was trained on, checked against the chain (none for a merge).
    async fn snapshot_of(&self, m: &AdapterManifest) -> Result<Option<SnapshotManifest>> {
        if m.snapshot_id == B256::ZERO {
            return Ok(None);
        }
        Ok(Some(
            snapshot::load_committed(&self.chain, &self.lake, m.snapshot_id).await?,
        ))
    }

    /// adapter -> parents (recursively) -> base model; snapshot (`snap`, `m`'s: read once by
    /// the caller) -> Datanets.
    async fn ancestry(
        &self,
        m: &AdapterManifest,
        snap: Option<&SnapshotManifest>,
    ) -> Result<Value> {
        let all = self.published.lock().await.clone();
        let version = |id: B256| {
            all.iter()
                .find(|a| a.id == id)
                .map(|a| a.version.clone())
                .unwrap_or_default()
        };
        let snapshot = match snap {
            None => Value::Null,
            Some(s) => json!({
                "id": s.snapshot_id.to_string(),
                "contributions": s.contributions.len(),
                "datanets": s.datanet_ids.iter().zip(&s.lake_versions)
                    .map(|(d, v)| json!({"id": d, "lake_version": v}))
                    .collect::<Vec<_>>(),
            }),
        };
        let mut parents = Vec::new();
        for p in &m.parents {
            let pa = catalog::find(&all, &p.id.to_string(), "parent adapter")?;
            let pm = catalog::load_manifest(&self.lake, pa).await?;
            let ps = self.snapshot_of(&pm).await?;
            let up = Box::pin(self.ancestry(&pm, ps.as_ref())).await?;
            parents.push(json!({
                "id": p.id.to_string(),
                "version": version(p.id),
                "weight": p.weight,
                "parents": up["parents"],
                "snapshot": up["snapshot"],
            }));
        }
        Ok(json!({
            "adapter": {"id": m.adapter_id.to_string(), "version": version(m.adapter_id)},
            "base_model": {"id": m.base_model_id.to_string(), "architecture": m.architecture},
            "parents": parents,
            "snapshot": snapshot,
        }))
    }

    /// The base model, loaded with the first request that needs it.
    async fn base(&self, id: B256) -> Result<&Base> {
        let base = self
            .base
            .get_or_try_init(|| async {
                let folder = catalog::base_folder(&self.lake, id, &self.config.cache_dir).await?;
                let tokenizer = Arc::new(Tokenizer::load(&folder.join("tokenizer.json"))?);
                let (f, slots, budget) = (
                    folder.clone(),
                    self.config.slots,
                    self.config.adapter_budget,
                );
                let eot = tokenizer.eot();
                let context = self.config.max_context;
                let model = tokio::task::spawn_blocking(move || {
                    let mut m = Model::load(&f, Device::cuda_if_available())?;
                    m.config.max_positions = m.config.max_positions.min(context);
                    Ok::<_, Error>(m)
                })
                .await
                .expect("loading does not panic")?;
                tracing::info!(base = %id, device = ?model.device(), "base model loaded");
                let engine = spawn_engine(model, eot, slots, budget, self.config.metrics.clone());
                let attribution = spawn_attribution(
                    folder,
                    tokenizer.clone(),
                    self.config.attribution_budget,
                    self.config.metrics.clone(),
                );
                Ok::<_, Error>(Base {
                    id,
                    tokenizer,
                    engine,
                    attribution,
                })
            })
            .await?;
        if base.id != id {
            return Err(Error::InvalidInput(format!(
                "this adapter is trained on base model {id}, but this server serves base model {}: run another server for it",
                base.id
            )));
        }
        Ok(base)
    }

    /// Starts generating: the prompt's tokens and a stream of engine events.
    pub async fn generate(
        &self,
        s: &Served,
        prompt: &str,
        max_tokens: usize,
        sampling: Sampling,
    ) -> Result<(Arc<Tokenizer>, usize, mpsc::UnboundedReceiver<Event>)> {
        let base = self.base(s.manifest.base_model_id).await?;
        let ids = base.tokenizer.encode(prompt)?;
        let (tx, rx) = mpsc::unbounded_channel();
        base.engine
            .send(Cmd::Submit(Request {
                adapter: Some((s.on_chain.id.0, Some(s.dir.clone()))),
                prompt: ids.clone(),
                max_tokens,
                sampling,
                sink: tx,
            }))
            .map_err(|_| Error::Internal("the decoding engine has stopped".into()))?;
        Ok((base.tokenizer.clone(), ids.len(), rx))
    }

    /// Attributes one answer of a trained adapter: its credit by gradient influence, and the
    /// spans found in the training data.
    pub async fn attribute(&self, s: &Served, prompt: &str, output: &str) -> Result<Found> {
        let base = self.base(s.manifest.base_model_id).await?;
        let revoked = self.revoked().await?;
        let (tx, rx) = oneshot::channel();
        base.attribution
            .send(AttributionJob {
                adapter: s.on_chain.id,
                dir: s.dir.clone(),
                prompt: prompt.to_string(),
                output: output.to_string(),
                entries: s.entries.clone(),
                revoked,
                top_k: self.config.top_k,
                reply: tx,
            })
            .map_err(|_| Error::Internal("the attribution thread has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Internal("the attribution thread has stopped".into()))?
    }

    /// Contributions revoked on chain as of the head. When the head moves only new blocks are
    /// read: blocks older than [`REORG_WINDOW`] are read once into the settled part, the
    /// window is read again (so a revocation a reorg dropped does not linger).
    async fn revoked(&self) -> Result<Arc<HashSet<String>>> {
        let head = self.chain.head().await?;
        let mut r = self.revoked.lock().await;
        if r.head == Some(head) {
            return Ok(r.ids.clone());
        }
        let start = self.chain.deployment().start_block;
        let settled_to = head.saturating_sub(REORG_WINDOW);
        let from = r.settled_to.map_or(start, |b| b + 1);
        if settled_to >= from {
            let mut state = ChainState::default();
            state.extend(&self.chain, from, settled_to).await?;
            r.settled.extend(state.revoked);
            r.settled_to = Some(settled_to);
        }
        let mut recent = ChainState::default();
        let window = r.settled_to.map_or(start, |b| b + 1);
        recent.extend(&self.chain, window, head).await?;
        let ids: HashSet<String> = r
            .settled
            .iter()
            .chain(&recent.revoked)
            .map(|id| id.to_string())
            .collect();
        r.ids = Arc::new(ids);
        r.head = Some(head);
        Ok(r.ids.clone())
    }

    /// The server's settings.
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }
}
