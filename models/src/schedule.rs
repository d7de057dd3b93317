//! Training on a schedule: each job (a `[[jobs]]` table of `tributary.toml`) names a model
//! line, its Datanets, a cron expression, how many new accepted contributions make a run worth
//! it, and a promotion rule. A run is snapshot -> train (continuing from the line's current
//! version) -> evaluate on the new snapshot's held-out split -> publish if it beats the current
//! version -> attribution index (written with the adapter).
//!
//! Timing comes from `tokio-cron-scheduler`; what is due, and who runs it, lives in the sqlx
//! store (`jobs`, `job_runs`), so any number of workers on any machines can share one
//! PostgreSQL store:
//! - an occurrence is taken by compare-and-set on the job's `next_due_ms`: one worker wins;
//! - the run it starts is leased to that worker and renewed by heartbeats; a run whose lease
//!   runs out (its worker died) is taken over by another worker and resumed from what it
//!   recorded (its snapshot);
//! - a run is idempotent: an adapter of the same line on the same snapshot is never
//!   published twice;
//! - occurrences missed while no worker ran are caught up once, not once each.
//!
//! Jobs made through the API (the web app's ModelFactory; stored with the credential that
//! made them) are taken up by every worker of the store on its next sweep, as are runs asked
//! for there: a request is started by one worker (compare-and-set), whatever the schedule,
//! threshold or pause say. Each run's training loss is written to the store step by step,
//! so it can be watched while it trains.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_pipeline::openlineage::{Dataset, Emitter};
use tributary_pipeline::{datanet, snapshot};
use tributary_sql::{RunRow, RunStatus, Store};

use crate::catalog;
use crate::job::{self, Options, Outcome, Spec};
use crate::usage::{self, Use};
use crate::{DeviceChoice, Error, Result};
use tributary_trainer::influence::InfluenceConfig;
use tributary_trainer::lora::LoraConfig;
use tributary_trainer::train::TrainConfig;

/// One scheduled job, as written in `tributary.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Its name (unique; `tributary jobs run NAME`).
    pub name: String,
    /// When it is due: six fields, seconds first (`sec min hour day month weekday`, UTC).
    pub cron: String,
    /// The model line it trains.
    pub line: String,
    /// The Datanets it trains on (names or ids).
    pub datanets: Vec<String>,
    /// Accepted contributions new since the last run's snapshot needed to run (default 1).
    #[serde(default = "one")]
    pub min_new_contributions: u64,
    /// Publish only if the held-out loss is below the current version's by this fraction
    /// (default 0: any improvement). A first version is always published.
    #[serde(default)]
    pub min_improvement: f64,
    /// `tiny` or a Hugging Face checkpoint folder.
    #[serde(default = "job::tiny")]
    pub base_model: String,
    /// How a contribution becomes text (see the training spec).
    #[serde(default)]
    pub template: Option<String>,
    /// LoRA settings.
    #[serde(default)]
    pub lora: LoraConfig,
    /// Training settings.
    #[serde(default)]
    pub train: TrainConfig,
    /// How the influence index is built (see the training spec's `[attribution]`).
    #[serde(default)]
    pub attribution: InfluenceConfig,
    /// What its adapters are for (`commercial` or `research`): a run whose snapshot holds a
    /// contribution whose license does not allow that use fails before freezing it (see
    /// [`crate::usage`]). Not given: licenses are not checked.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub usage: Option<Use>,
}

fn one() -> u64 {
    1
}

impl JobSpec {
    /// Checks the job; errors name the job, the key and the fix.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(format!("job {:?}: {m}", self.name)));
        for (key, value) in [("name", &self.name), ("line", &self.line)] {
            if let Err(why) = plain_name(value) {
                return bad(format!("{key} {value:?} {why}"));
            }
        }
        Cron::parse(&self.cron)
            .map_err(|e| Error::InvalidInput(format!("job {:?}: {e}", self.name)))?;
        if self.datanets.is_empty() {
            return bad("datanets is empty: name the Datanets to train on".into());
        }
        if !(0.0..1.0).contains(&self.min_improvement) {
            return bad(format!(
                "min_improvement {} is not a fraction in [0, 1): for example 0.02 means 2% lower held-out loss",
                self.min_improvement
            ));
        }
        self.spec(B256::ZERO, None)
            .check()
            .map_err(|e| Error::InvalidInput(format!("job {:?}: {e}", self.name)))
    }

    /// The training spec of a run on `snapshot`, continuing from `parent` if given.
    fn spec(&self, snapshot: B256, parent: Option<String>) -> Spec {
        Spec {
            line: self.line.clone(),
            version: None,
            base_model: self.base_model.clone(),
            snapshot: Some(snapshot),
            datanets: Vec::new(),
            parents: parent.into_iter().collect(),
            merge_weights: Vec::new(),
            merge_only: false,
            template: self.template.clone(),
            lora: self.lora.clone(),
            train: self.train.clone(),
            attribution: self.attribution.clone(),
        }
    }
}

/// Job names and model lines name folders (`adapters/LINE@job-NAME-SEQ`): letters, digits,
/// `.`, `_` and `-`, starting with a letter or digit, never `..`. The error says so.
pub fn plain_name(s: &str) -> std::result::Result<(), &'static str> {
    let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !s.contains("..");
    if ok {
        Ok(())
    } else {
        Err(
            "must be letters, digits, '.', '_' and '-', starting with a letter or digit (e.g. \"kitchen-weekly\")",
        )
    }
}

/// A parsed cron expression (six fields, seconds first, UTC), as tokio-cron-scheduler reads it.
#[derive(Debug, Clone)]
pub struct Cron(croner::Cron);

impl Cron {
    /// Parses `expr`; the error says what a valid one looks like.
    pub fn parse(expr: &str) -> std::result::Result<Self, String> {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expr)
            .map(Self)
            .map_err(|e| {
                format!(
                    "cron {expr:?} is not valid ({e}): give six fields, seconds first (sec min hour day month weekday), e.g. \"0 0 3 * * *\" for 03:00 UTC daily or \"*/30 * * * * *\" for every 30 s"
                )
            })
    }

    /// The first occurrence strictly after `ms` (ms since the epoch).
    pub fn next_after(&self, ms: i64) -> i64 {
        // Whole seconds: croner keeps a fraction of the start time in what it returns.
        let t =
            chrono::DateTime::from_timestamp_millis(ms - ms.rem_euclid(1000)).unwrap_or_default();
        self.0
            .find_next_occurrence(&t, false)
            .map(|n| n.timestamp_millis())
            .unwrap_or(i64::MAX)
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// How a worker runs jobs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's name in the store (default: host and process id).
    pub worker: String,
    /// A run's lease; renewed every third of it. A worker silent this long is taken as dead.
    pub lease: Duration,
    /// How often to look for runs of dead workers.
    pub sweep: Duration,
    /// Where to train.
    pub device: DeviceChoice,
    /// Local adapter folders go under `adapters/` here.
    pub data_dir: std::path::PathBuf,
    /// Where the tiny base model is cached.
    pub model_cache: std::path::PathBuf,
}

impl WorkerConfig {
    /// Defaults for a worker with its data in `data_dir`.
    pub fn new(data_dir: &std::path::Path, model_cache: &std::path::Path) -> Self {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        Self {
            worker: format!("{host}:{}", std::process::id()),
            lease: Duration::from_secs(15),
            sweep: Duration::from_secs(5),
            device: DeviceChoice::Auto,
            data_dir: data_dir.to_path_buf(),
            model_cache: model_cache.to_path_buf(),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    job: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

/// The scheduler's Prometheus metrics (`tributary_jobs_*`).
#[derive(Debug, Clone)]
pub struct JobMetrics {
    configured: prometheus_client::metrics::gauge::Gauge,
    runs: Family<RunLabels, Counter>,
    seconds: Family<JobLabel, Histogram>,
}

impl JobMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            configured: Default::default(),
            runs: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new([1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0])
            }),
        };
        let r = registry.sub_registry_with_prefix("tributary_jobs");
        r.register(
            "configured",
            "Jobs this worker schedules",
            m.configured.clone(),
        );
        r.register(
            "runs",
            "Job runs finished, by job and status",
            m.runs.clone(),
        );
        r.register("run_seconds", "Wall time of job runs", m.seconds.clone());
        m
    }
}

/// A worker: runs the jobs it was started with when they are due, and takes over runs of
/// workers that died.
pub struct Scheduler {
    chain: Arc<Chain>,
    lake: Lake,
    store: Store,
    /// The config file's jobs, then those taken up from the API.
    jobs: std::sync::RwLock<Vec<JobSpec>>,
    /// How many of `jobs` come from the config file (they come first).
    configured: usize,
    cfg: WorkerConfig,
    metrics: Option<JobMetrics>,
    lineage: Option<Emitter>,
    /// One run at a time per worker: training takes the machine.
    busy: tokio::sync::Mutex<()>,
    stopping: AtomicBool,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("worker", &self.cfg.worker)
            .field("jobs", &self.jobs().len())
            .finish()
    }
}

impl Scheduler {
    /// A worker for `jobs` (checked here); call [`Scheduler::register`] before running.
    pub fn new(
        chain: Arc<Chain>,
        lake: Lake,
        store: Store,
        jobs: Vec<JobSpec>,
        cfg: WorkerConfig,
        metrics: Option<JobMetrics>,
    ) -> Result<Self> {
        let mut names = std::collections::HashSet::new();
        for j in &jobs {
            j.check()?;
            if !names.insert(&j.name) {
                return Err(Error::InvalidInput(format!(
                    "two jobs are named {:?}: give each [[jobs]] its own name",
                    j.name
                )));
            }
        }
        if let Some(m) = &metrics {
            m.configured.set(jobs.len() as i64);
        }
        Ok(Self {
            chain,
            lake,
            store,
            configured: jobs.len(),
            jobs: std::sync::RwLock::new(jobs),
            cfg,
            metrics,
            lineage: None,
            busy: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
        })
    }

    /// Sends an OpenLineage START and COMPLETE/FAIL event for each run to `emitter`.
    pub fn with_lineage(mut self, emitter: Option<Emitter>) -> Self {
        self.lineage = emitter;
        self
    }

    /// The jobs this worker runs: its config file's, then those taken up from the API.
    pub fn jobs(&self) -> Vec<JobSpec> {
        self.jobs.read().expect("jobs lock").clone()
    }

    fn configured(&self) -> Vec<JobSpec> {
        self.jobs()[..self.configured].to_vec()
    }

    /// Takes up the jobs made through the API (stored with `created_by`; a config file's job
    /// of the same name wins), and returns every stored job.
    async fn adopt(&self) -> Result<Vec<tributary_sql::JobRow>> {
        let rows = self.store.jobs().await.map_err(store_err)?;
        let mut jobs = self.jobs.write().expect("jobs lock");
        for r in rows.iter().filter(|r| r.created_by.is_some()) {
            if jobs[..self.configured].iter().any(|j| j.name == r.name) {
                continue;
            }
            let spec = match serde_json::from_value::<JobSpec>(r.spec.clone()) {
                Ok(s) if s.name == r.name => s,
                Ok(s) => {
                    tracing::warn!(job = %r.name, "stored spec names job {:?}; not taken up", s.name);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(job = %r.name, "stored spec does not parse ({e}); not taken up");
                    continue;
                }
            };
            match jobs.iter_mut().find(|j| j.name == spec.name) {
                Some(j) => *j = spec,
                None => {
                    tracing::info!(job = %spec.name, by = ?r.created_by, "taking up a job made through the API");
                    jobs.push(spec);
                }
            }
        }
        Ok(rows)
    }

    /// Writes the jobs to the store: new ones are first due at their next occurrence; known
    /// ones keep their due time (missed occurrences stay due) and paused state.
    pub async fn register(&self) -> Result<()> {
        let now = now_ms();
        for j in &self.configured() {
            let cron = Cron::parse(&j.cron).map_err(Error::InvalidInput)?;
            let spec = serde_json::to_value(j).expect("job spec is JSON");
            self.store
                .upsert_job(&j.name, &j.cron, &spec, cron.next_after(now), now)
                .await
                .map_err(store_err)?;
        }
        Ok(())
    }

    fn job(&self, name: &str) -> Result<JobSpec> {
        let jobs = self.jobs.read().expect("jobs lock");
        jobs.iter().find(|j| j.name == name).cloned().ok_or_else(|| {
            Error::InvalidInput(format!(
                "no job named {name:?} in this configuration: `tributary jobs list` shows the jobs"
            ))
        })
    }

    fn lease_until(&self) -> i64 {
        now_ms() + self.cfg.lease.as_millis() as i64
    }

    /// Takes `name`'s occurrence if it is due and enough new contributions arrived, and runs
    /// it. `None` when nothing ran (not due, paused, too little new data, another worker
    /// took it, or this worker is busy).
    pub async fn tick(&self, name: &str) -> Result<Option<RunRow>> {
        if self.stopping.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let Ok(_busy) = self.busy.try_lock() else {
            return Ok(None);
        };
        self.tick_held(name).await
    }

    /// [`Scheduler::tick`], with `busy` held by the caller.
    async fn tick_held(&self, name: &str) -> Result<Option<RunRow>> {
        let spec = &self.job(name)?;
        let Some(row) = self.store.job(name).await.map_err(store_err)? else {
            return Ok(None);
        };
        let now = now_ms();
        if row.paused || row.next_due_ms > now {
            return Ok(None);
        }
        let cron = Cron::parse(&row.cron).map_err(Error::InvalidInput)?;
        let next = cron.next_after(now);
        // Late by more than a lease, with a later occurrence also past: no worker was up to
        // take it in time (a busy worker's few seconds of delay is not a catch-up).
        let late = now - row.next_due_ms > self.cfg.lease.as_millis() as i64;
        let trigger = if late && cron.next_after(row.next_due_ms) <= now {
            "catch-up"
        } else {
            "schedule"
        };
        if let Some(r) = self.store.running_run(name).await.map_err(store_err)? {
            let why = format!("run #{} is still running (worker {})", r.seq, r.worker);
            self.store
                .pass_due(name, row.next_due_ms, next, now, &why)
                .await
                .map_err(store_err)?;
            return Ok(None);
        }
        let fresh = match self.new_contributions(spec).await {
            Ok(n) => n,
            Err(e) => {
                let why = format!("could not count new contributions: {e}");
                self.store
                    .pass_due(name, row.next_due_ms, next, now, &why)
                    .await
                    .map_err(store_err)?;
                return Ok(None);
            }
        };
        if fresh < spec.min_new_contributions {
            let why = format!(
                "{fresh} new accepted contribution(s), {} needed",
                spec.min_new_contributions
            );
            tracing::debug!(job = name, "{why}");
            self.store
                .pass_due(name, row.next_due_ms, next, now, &why)
                .await
                .map_err(store_err)?;
            return Ok(None);
        }
        let Some(run) = self
            .store
            .start_run(
                name,
                Some((row.next_due_ms, next)),
                trigger,
                &self.cfg.worker,
                now,
                self.lease_until(),
                Some(fresh),
            )
            .await
            .map_err(store_err)?
        else {
            return Ok(None);
        };
        Ok(Some(self.execute(spec, run).await))
    }

    /// Runs `name` now, whatever its schedule, threshold or pause say.
    pub async fn run_now(&self, name: &str) -> Result<RunRow> {
        let _busy = self.busy.lock().await;
        if self.job(name).is_err() {
            self.adopt().await?; // a job made through the API since this worker started
        }
        let spec = &self.job(name)?;
        let fresh = self.new_contributions(spec).await.ok();
        let run = self
            .store
            .start_run(
                name,
                None,
                "manual",
                &self.cfg.worker,
                now_ms(),
                self.lease_until(),
                fresh,
            )
            .await
            .map_err(store_err)?
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "another worker started a run of {name:?} at the same moment: see `tributary jobs list`"
                ))
            })?;
        Ok(self.execute(spec, run).await)
    }

    /// Notes this worker as seen; takes up jobs made through the API; takes over runs of this
    /// worker's jobs whose lease ran out, and finishes them; starts the runs asked for through
    /// the API (one at a time per job); runs the jobs that are due.
    pub async fn sweep(&self) -> Result<Vec<RunRow>> {
        let mut done = Vec::new();
        if self.stopping.load(Ordering::SeqCst) {
            return Ok(done);
        }
        // Alive, busy or not: the API tells people when no worker is there.
        let seen = self.store.worker_seen(&self.cfg.worker, now_ms()).await;
        seen.map_err(store_err)?;
        let Ok(_busy) = self.busy.try_lock() else {
            return Ok(done);
        };
        let rows = self.adopt().await?;
        done.extend(self.take_over_expired().await?);
        for row in &rows {
            let (Some((at, by)), Ok(spec)) = (&row.requested, self.job(&row.name)) else {
                continue;
            };
            if self.stopping.load(Ordering::SeqCst) {
                return Ok(done);
            }
            let (now, lease) = (now_ms(), self.lease_until());
            let started = self
                .store
                .start_requested_run(&row.name, (*at, by), &self.cfg.worker, now, lease)
                .await
                .map_err(store_err)?;
            if let Some(run) = started {
                tracing::info!(job = %row.name, seq = run.seq, by = %by, "starting a run asked for through the API");
                done.push(self.execute(&spec, run).await);
            }
        }
        // Every job that fell due, the config file's included: a cron timer that fired while
        // this worker was busy found it busy and did nothing.
        for j in self.jobs() {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            match self.tick_held(&j.name).await {
                Ok(r) => done.extend(r),
                Err(e) => tracing::error!(job = %j.name, "{e}"),
            }
        }
        Ok(done)
    }

    /// Takes over runs of this worker's jobs whose lease ran out, and finishes them.
    async fn take_over_expired(&self) -> Result<Vec<RunRow>> {
        let mut done = Vec::new();
        for run in self.store.expired_runs(now_ms()).await.map_err(store_err)? {
            let Ok(spec) = self.job(&run.job) else {
                continue;
            };
            let spec = spec.clone();
            if let Some(mine) = self
                .store
                .take_over(&run, &self.cfg.worker, self.lease_until())
                .await
                .map_err(store_err)?
            {
                tracing::warn!(
                    job = %run.job, seq = run.seq, from = %run.worker,
                    "taking over a run whose worker stopped renewing its lease"
                );
                done.push(self.execute(&spec, mine).await);
            }
        }
        Ok(done)
    }

    /// Accepted contributions of `spec`'s Datanets not in its last trained run's snapshot
    /// (before the job's first run: not in the snapshot of the line's current version).
    async fn new_contributions(&self, spec: &JobSpec) -> Result<u64> {
        let ids = self.datanet_ids(spec).await?;
        let on_chain = tributary_pipeline::chain_state::ChainState::read(&self.chain).await?;
        let now = snapshot::freeze(&self.lake, &on_chain, &ids, None).await?;
        let last_run = self
            .store
            .last_trained_run(&spec.name)
            .await
            .map_err(store_err)?
            .and_then(|r| r.snapshot_id);
        let baseline = match last_run {
            Some(id) => Some(id.parse::<B256>().map_err(|_| {
                Error::InvalidInput(format!("stored snapshot id {id:?} is malformed"))
            })?),
            None => catalog::latest(
                &self.lake,
                &catalog::published(&self.chain).await?,
                &spec.line,
            )
            .await?
            .map(|a| a.snapshot)
            .filter(|s| !s.is_zero()),
        };
        let before = match baseline {
            Some(id) => snapshot::load(&self.lake, id)
                .await?
                .contributions
                .into_iter()
                .map(|e| e.id)
                .collect(),
            None => std::collections::HashSet::new(),
        };
        Ok(now
            .contributions
            .iter()
            .filter(|e| !before.contains(&e.id))
            .count() as u64)
    }

    async fn datanet_ids(&self, spec: &JobSpec) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        for d in &spec.datanets {
            ids.push(datanet::load(&self.chain, &self.lake, d).await?.id);
        }
        Ok(ids)
    }

    /// Runs `run` to its end, renewing its lease meanwhile; records the outcome (or the
    /// error) unless another worker took the run over.
    #[tracing::instrument(name = "job_run", skip_all, fields(job = %run.job, seq = run.seq, trigger = %run.trigger))]
    async fn execute(&self, spec: &JobSpec, mut run: RunRow) -> RunRow {
        let started = Instant::now();
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let store = self.store.clone();
            let (job, seq, worker) = (run.job.clone(), run.seq, run.worker.clone());
            let lease = self.cfg.lease;
            let lost = lost.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(lease / 3);
                every.tick().await;
                loop {
                    every.tick().await;
                    let until = now_ms() + lease.as_millis() as i64;
                    match store.renew_lease(&job, seq, &worker, until).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!(%job, seq, "lease renewal failed: {e}"),
                    }
                }
            })
        };
        let dataset =
            |name: &str| Dataset::new(self.lake.root().as_str().trim_end_matches('/'), name);
        let lineage_job = format!("job.{}", run.job);
        let lineage_run = uuid_like(&run);
        let inputs = vec![dataset(tributary_schemas::tables::names::CONTRIBUTIONS)];
        if let Some(e) = &self.lineage {
            e.send(&e.event("START", &lineage_run, &lineage_job, &inputs, &[], None))
                .await;
        }
        let result = self.steps(spec, &mut run, &lost).await;
        heartbeat.abort();
        if let Some(e) = &self.lineage {
            let mut outputs = Vec::new();
            if let Some(id) = run
                .snapshot_id
                .as_ref()
                .and_then(|i| i.parse::<B256>().ok())
            {
                outputs.push(dataset(
                    &tributary_schemas::manifest::SnapshotManifest::key(id),
                ));
            }
            if let (RunStatus::Published, Some(id)) = (
                run.status,
                run.adapter_id.as_ref().and_then(|i| i.parse::<B256>().ok()),
            ) {
                outputs.push(dataset(
                    &tributary_schemas::manifest::AdapterManifest::folder(id),
                ));
            }
            let event = match &result {
                Ok(()) => e.event(
                    "COMPLETE",
                    &lineage_run,
                    &lineage_job,
                    &inputs,
                    &outputs,
                    None,
                ),
                Err(err) => e.event(
                    "FAIL",
                    &lineage_run,
                    &lineage_job,
                    &inputs,
                    &[],
                    Some(&err.to_string()),
                ),
            };
            e.send(&event).await;
        }
        if lost.load(Ordering::SeqCst) {
            run.message = "lease lost: another worker took this run over".into();
            return run;
        }
        if let Err(e) = result {
            run.status = RunStatus::Failed;
            run.message = e.to_string();
        }
        run.finished_ms = Some(now_ms());
        match self.store.save_run(&run).await {
            Ok(true) => {
                if let Some(m) = &self.metrics {
                    m.runs
                        .get_or_create(&RunLabels {
                            job: run.job.clone(),
                            status: run.status.as_str().into(),
                        })
                        .inc();
                    m.seconds
                        .get_or_create(&JobLabel {
                            job: run.job.clone(),
                        })
                        .observe(started.elapsed().as_secs_f64());
                }
                tracing::info!(job = %run.job, seq = run.seq, status = run.status.as_str(), "{}", run.message);
            }
            Ok(false) => run.message = "another worker took this run over".into(),
            Err(e) => tracing::error!(job = %run.job, seq = run.seq, "cannot record the run: {e}"),
        }
        run
    }

    async fn save(&self, run: &RunRow) -> Result<()> {
        if self.store.save_run(run).await.map_err(store_err)? {
            Ok(())
        } else {
            Err(Error::InvalidInput(
                "another worker took this run over".into(),
            ))
        }
    }

    /// snapshot -> (already published?) -> train and evaluate -> publish or not.
    async fn steps(&self, spec: &JobSpec, run: &mut RunRow, lost: &AtomicBool) -> Result<()> {
        // 1. The snapshot, frozen once per run: a run taken over resumes on the same one.
        let snapshot_id: B256 = match &run.snapshot_id {
            Some(id) => id.parse().map_err(|_| {
                Error::InvalidInput(format!("stored snapshot id {id:?} is malformed"))
            })?,
            None => {
                let preview = preview(&self.chain, &self.lake, &spec.datanets).await?;
                if let Some(u) = spec.usage {
                    let refused = usage::refused(u, &preview.licenses);
                    if !refused.is_empty() {
                        return Err(Error::InvalidInput(license_refusal(u, &refused)));
                    }
                }
                let s = snapshot::commit(&self.chain, &self.lake, &preview.manifest).await?;
                run.snapshot_id = Some(s.manifest.snapshot_id.to_string());
                run.contributions = Some(s.manifest.contributions.len() as u64);
                run.message = "snapshot committed; training".into();
                self.save(run).await?;
                s.manifest.snapshot_id
            }
        };
        // 2. Same line, same snapshot: published already (by an earlier attempt).
        let all = catalog::published(&self.chain).await?;
        let prefix = format!("{}@", spec.line);
        let mut earlier = None;
        for a in all
            .iter()
            .filter(|a| a.snapshot == snapshot_id && a.version.starts_with(&prefix))
        {
            // Only one this lake vouches for: not one published straight to the registry.
            if catalog::vouched(&self.lake, a).await?.is_ok() {
                earlier = Some(a);
                break;
            }
        }
        if let Some(a) = earlier {
            run.adapter_id = Some(a.id.to_string());
            run.version = Some(a.version.clone());
            if run.attempts > 1 {
                run.status = RunStatus::Published;
                run.message = format!(
                    "published {} (by an earlier attempt of this run)",
                    a.version
                );
            } else {
                run.status = RunStatus::Skipped;
                run.message = format!("{} is already trained on this snapshot", a.version);
            }
            return Ok(());
        }
        // 3. Train from the current version, evaluate, publish if it beats it.
        let parent = catalog::latest(&self.lake, &all, &spec.line)
            .await?
            .map(|a| a.version.clone());
        if parent.is_none() && all.iter().any(|a| a.version.starts_with(&prefix)) {
            // Trained as the line's first version, it would be published with nothing to beat.
            return Err(Error::InvalidInput(format!(
                "{} has versions on chain but none this lake can continue from (each one's \
                 manifest is missing here or not the chain's record; the warnings name them): \
                 not trained; check --lake, or restore the line's adapters to this lake",
                spec.line
            )));
        }
        let train_spec = spec.spec(snapshot_id, parent.clone());
        let opts = Options {
            device: self.cfg.device,
            out: self
                .cfg
                .data_dir
                .join("adapters")
                .join(format!("{}@job-{}-{}", spec.line, run.job, run.seq)),
            model_cache: self.cfg.model_cache.clone(),
        };
        if lost.load(Ordering::SeqCst) {
            return Ok(());
        }
        // At the moment of publishing this worker must still hold the run: one that was paused
        // or partitioned past its lease leaves the run to the worker that took it over.
        let (job_name, seq, worker) = (run.job.clone(), run.seq, run.worker.clone());
        let lease = self.cfg.lease;
        let holds_lease = move || {
            let (store, job_name, worker) = (self.store.clone(), job_name.clone(), worker.clone());
            Box::pin(async move {
                let until = now_ms() + lease.as_millis() as i64;
                match store.renew_lease(&job_name, seq, &worker, until).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(Error::LeaseLost(format!(
                        "another worker took run {seq} of job {job_name} over; not publishing"
                    ))),
                    Err(e) => Err(Error::InvalidInput(format!(
                        "cannot confirm the lease on run {seq} of job {job_name} before publishing: {e}"
                    ))),
                }
            })
                as std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>
        };
        // Each step's training loss goes to the store as it comes, for whoever watches.
        let (losses, mut steps) = tokio::sync::mpsc::unbounded_channel::<(u64, f64)>();
        let recorder = {
            let (store, job_name, seq) = (self.store.clone(), run.job.clone(), run.seq);
            let worker = run.worker.clone();
            tokio::spawn(async move {
                while let Some(first) = steps.recv().await {
                    let mut points = vec![first];
                    while let Ok(p) = steps.try_recv() {
                        points.push(p);
                    }
                    // Not written once the run is another worker's (its lease was lost).
                    let recorded = store.record_losses(&job_name, seq, &worker, &points).await;
                    if let Err(e) = recorded {
                        tracing::warn!(job = %job_name, seq, "recording training losses: {e}");
                    }
                }
            })
        };
        let outcome = job::run_gated(
            &self.chain,
            &self.lake,
            &train_spec,
            &opts,
            Some(spec.min_improvement),
            Some(&holds_lease),
            Box::new(move |p| {
                let _ = losses.send((p.step as u64, p.loss));
            }),
        )
        .await;
        let _ = recorder.await;
        let outcome = match outcome {
            Err(Error::LeaseLost(why)) => {
                tracing::warn!(job = %run.job, seq = run.seq, "{why}");
                lost.store(true, Ordering::SeqCst);
                return Ok(());
            }
            other => other?,
        };
        match outcome {
            Outcome::Published {
                published,
                current_loss,
            } => {
                let m = &published.manifest;
                run.status = RunStatus::Published;
                run.adapter_id = Some(m.adapter_id.to_string());
                run.version = Some(format!("{}@{}", m.line, m.version));
                if let Some(x) = &m.metrics {
                    run.eval_loss = Some(x.eval_loss);
                    run.current_loss = current_loss;
                }
                run.message = match &parent {
                    Some(v) => format!("published {}@{}, better than {v}", m.line, m.version),
                    None => format!(
                        "published {}@{}, the line's first version",
                        m.line, m.version
                    ),
                };
            }
            Outcome::NotPromoted(n) => {
                let m = &n.manifest;
                run.status = RunStatus::NotPromoted;
                run.adapter_id = Some(m.adapter_id.to_string());
                run.version = Some(format!("{}@{}", m.line, m.version));
                run.current_loss = Some(n.current_loss);
                run.eval_loss = Some(n.eval_loss);
                run.message = format!(
                    "not promoted: held-out loss {:.4} vs {:.4} for {} (needs {:.4}, {}% lower)",
                    n.eval_loss,
                    n.current_loss,
                    parent.as_deref().unwrap_or("the current version"),
                    n.current_loss * (1.0 - spec.min_improvement),
                    spec.min_improvement * 100.0
                );
            }
        }
        Ok(())
    }

    /// Runs the worker until `shutdown` resolves: a cron timer per job, a sweep for runs of
    /// dead workers, and a catch-up check at start. On shutdown no new run starts; a run in
    /// progress gets `grace` to finish, else its lease is left to run out and the next worker
    /// to start (or another one running) resumes it from its snapshot.
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) -> Result<()> {
        use tokio_cron_scheduler::{Job, JobScheduler};
        let timer_err = |e: tokio_cron_scheduler::JobSchedulerError| {
            Error::InvalidInput(format!("scheduler timer: {e}"))
        };
        self.register().await?;
        let mut timers = JobScheduler::new().await.map_err(timer_err)?;
        for j in &self.configured() {
            let me = self.clone();
            let name = j.name.clone();
            let job = Job::new_async(j.cron.as_str(), move |_, _| {
                let me = me.clone();
                let name = name.clone();
                Box::pin(async move { me.tick_all_after(&name).await })
            })
            .map_err(timer_err)?;
            timers.add(job).await.map_err(timer_err)?;
        }
        let me = self.clone();
        let every = self.cfg.sweep.as_secs().max(1);
        let sweep = Job::new_repeated_async(Duration::from_secs(every), move |_, _| {
            let me = me.clone();
            Box::pin(async move {
                if let Err(e) = me.sweep().await {
                    tracing::error!("sweeping for stopped runs: {e}");
                }
            })
        })
        .map_err(timer_err)?;
        timers.add(sweep).await.map_err(timer_err)?;
        timers.start().await.map_err(timer_err)?;
        // Catch up what was missed while no worker ran, and take over what a dead one left.
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.sweep().await {
                tracing::error!("sweeping for stopped runs: {e}");
            }
            for j in me.configured() {
                me.tick_logged(&j.name).await;
            }
        });
        shutdown.await;
        self.stopping.store(true, Ordering::SeqCst);
        timers.shutdown().await.map_err(timer_err)?;
        if tokio::time::timeout(grace, self.busy.lock()).await.is_err() {
            tracing::warn!(
                "a job run is still in progress at shutdown; its lease runs out and another worker (or the next start) resumes it"
            );
        }
        Ok(())
    }

    async fn tick_logged(&self, name: &str) {
        if let Err(e) = self.tick(name).await {
            tracing::error!(job = name, "{e}");
        }
    }

    /// Ticks `name`, then every job once more when a run happened (occurrences that fell due
    /// while this worker was busy are taken now rather than at their next fire).
    async fn tick_all_after(&self, name: &str) {
        if !matches!(self.tick(name).await, Ok(Some(_))) {
            return;
        }
        for j in &self.configured() {
            self.tick_logged(&j.name).await;
        }
    }
}

/// What a run of a job on `datanets` (names or ids) would freeze now, with its licenses
/// ([`snapshot::preview`]). Nothing is written.
pub async fn preview(chain: &Chain, lake: &Lake, datanets: &[String]) -> Result<snapshot::Preview> {
    let mut ids = Vec::new();
    for d in datanets {
        ids.push(datanet::load(chain, lake, d).await?.id);
    }
    let on_chain = tributary_pipeline::chain_state::ChainState::read(chain).await?;
    Ok(snapshot::preview(lake, &on_chain, &ids, None).await?)
}

/// Why a run of a job for `usage` stops: the `refused` licenses, each with its count.
pub fn license_refusal(usage: Use, refused: &[(String, u64, String)]) -> String {
    let list: Vec<String> = refused
        .iter()
        .map(|(_, n, why)| format!("{n} contribution(s) under {why}"))
        .collect();
    format!(
        "the snapshot holds licenses that {} use does not allow: {}; train for another use, or on Datanets whose licenses allow it",
        usage.as_str(),
        list.join("; ")
    )
}

/// A run's OpenLineage run id: a UUID derived from job, run number and attempt, so the
/// START and COMPLETE of one attempt pair up and a takeover is a new run.
fn uuid_like(run: &RunRow) -> String {
    let h = alloy::primitives::keccak256(format!("{}#{}#{}", run.job, run.seq, run.attempts));
    let bytes: [u8; 16] = h[..16].try_into().expect("16 of 32 bytes");
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn store_err(e: tributary_sql::Error) -> Error {
    Error::InvalidInput(format!("job store: {e}"))
}
