//! Scheduled training jobs and their run history, from the job store.

use async_graphql::{Context, Object, SimpleObject};
use tributary_sql::{JobRow, RunRow};

use super::load::{graph, internal};

/// A scheduled training job (a `[[jobs]]` table of a worker's tributary.toml, or made
/// through the `createJob` mutation).
pub(crate) struct Job(pub(crate) JobRow);

/// Milliseconds since the epoch as RFC 3339 UTC.
fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

#[Object]
impl Job {
    /// Its name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Cron expression (six fields, seconds first, UTC).
    async fn cron(&self) -> &str {
        &self.0.cron
    }
    /// The model line it trains.
    async fn line(&self) -> Option<&str> {
        self.0.spec["line"].as_str()
    }
    /// Its full definition as JSON (Datanets, threshold, promotion rule, training settings).
    async fn spec(&self) -> String {
        self.0.spec.to_string()
    }
    /// Paused jobs are not run by their schedule.
    async fn paused(&self) -> bool {
        self.0.paused
    }
    /// The occurrence it is next due at (RFC 3339, UTC).
    async fn next_due(&self) -> String {
        time(self.0.next_due_ms)
    }
    /// The API credential that made it (`token:` and a fingerprint); null for a job of a
    /// worker's tributary.toml.
    async fn created_by(&self) -> Option<&str> {
        self.0.created_by.as_deref()
    }
    /// A run asked for (`runJob`) that no worker has started yet: when (RFC 3339, UTC) and
    /// by whom.
    async fn requested(&self) -> Option<String> {
        self.0
            .requested
            .as_ref()
            .map(|(t, by)| format!("{} by {by}", time(*t)))
    }
    /// When a due occurrence was last passed over without a run, and why.
    async fn last_check(&self) -> Option<String> {
        self.0
            .last_check
            .as_ref()
            .map(|(t, why)| format!("{}: {why}", time(*t)))
    }
    /// Its runs, newest first.
    async fn runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: u32,
    ) -> async_graphql::Result<Vec<JobRun>> {
        let rows = graph(ctx)
            .store
            .runs(Some(&self.0.name), u64::from(first.min(super::MAX_FIRST)))
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(JobRun::from).collect())
    }
}

/// One run of a job.
#[derive(SimpleObject)]
#[graphql(complex)]
pub(crate) struct JobRun {
    /// The job.
    job: String,
    /// Its number within the job, from 1.
    seq: u64,
    /// `schedule`, `catch-up` or `manual`.
    trigger: String,
    /// `running`, `published`, `not_promoted`, `skipped` or `failed`.
    status: String,
    /// The occurrence it ran for (RFC 3339, UTC).
    due_at: String,
    /// Started (RFC 3339, UTC).
    started_at: String,
    /// Finished, if it has.
    finished_at: Option<String>,
    /// The worker that holds (or last held) it.
    worker: String,
    /// Workers that started it (more than 1 after a takeover).
    attempts: u64,
    /// The snapshot it trained on.
    snapshot_id: Option<String>,
    /// Contributions in that snapshot.
    contributions: Option<u64>,
    /// Accepted contributions new since the previous run.
    new_contributions: Option<u64>,
    /// The adapter it trained (published or not).
    adapter_id: Option<String>,
    /// `line@version` (the one it would have had when not promoted).
    version: Option<String>,
    /// The current version's held-out loss on this run's held-out split.
    current_loss: Option<f64>,
    /// The new adapter's held-out loss on the same split.
    eval_loss: Option<f64>,
    /// What happened.
    message: String,
    /// Who asked for it through the API (trigger `request`).
    requested_by: Option<String>,
}

/// A scheduler worker, as last seen sweeping the job store.
#[derive(SimpleObject)]
pub(crate) struct SchedulerWorker {
    /// Its name (host and process id, unless configured).
    name: String,
    /// When it last swept (RFC 3339, UTC).
    last_seen: String,
}

impl From<(String, i64)> for SchedulerWorker {
    fn from((name, ms): (String, i64)) -> Self {
        Self {
            name,
            last_seen: time(ms),
        }
    }
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A training step's loss.
#[derive(SimpleObject)]
pub(crate) struct LossPoint {
    /// Optimizer steps done.
    step: u64,
    /// Training loss of that step.
    loss: f64,
}

#[async_graphql::ComplexObject]
impl JobRun {
    /// Its training loss per optimizer step, as recorded so far: it grows while the run
    /// trains.
    async fn losses(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<LossPoint>> {
        let points = graph(ctx)
            .store
            .losses(&self.job, self.seq)
            .await
            .map_err(internal)?;
        Ok(points
            .into_iter()
            .map(|(step, loss)| LossPoint { step, loss })
            .collect())
    }
}

impl From<RunRow> for JobRun {
    fn from(r: RunRow) -> Self {
        Self {
            job: r.job,
            seq: r.seq,
            trigger: r.trigger,
            status: r.status.as_str().into(),
            due_at: time(r.due_ms),
            started_at: time(r.started_ms),
            finished_at: r.finished_ms.map(time),
            worker: r.worker,
            attempts: r.attempts,
            snapshot_id: r.snapshot_id,
            contributions: r.contributions,
            new_contributions: r.new_contributions,
            adapter_id: r.adapter_id,
            version: r.version,
            current_loss: r.current_loss,
            eval_loss: r.eval_loss,
            message: r.message,
            requested_by: r.requested_by,
        }
    }
}
