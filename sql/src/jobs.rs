//! The scheduler's durable state: `jobs` (each schedule and when it is next due) and
//! `job_runs` (the history, each running row leased to one worker). Every change that two
//! workers could race on is a compare-and-set, so SQLite and PostgreSQL behave alike.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::{Error, Result, Store};

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// Its name (unique).
    pub name: String,
    /// Cron expression (six fields, seconds first).
    pub cron: String,
    /// What it trains and when it publishes, as JSON (the scheduler's `JobSpec`).
    pub spec: serde_json::Value,
    /// Paused jobs are not run by their schedule (`jobs run` still runs them).
    pub paused: bool,
    /// The occurrence it is next due at (ms since the epoch).
    pub next_due_ms: i64,
    /// Runs started so far (the last run's `seq`).
    pub runs: u64,
    /// When a due occurrence was last checked without starting a run, and why not.
    pub last_check: Option<(i64, String)>,
    /// The API credential that created it (`None`: a worker's tributary.toml).
    pub created_by: Option<String>,
    /// A run asked for through the API and not started yet: when, and by whom.
    pub requested: Option<(i64, String)>,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Leased to a worker and in progress.
    Running,
    /// Trained and published.
    Published,
    /// Trained and evaluated, but it did not beat the current version: not published.
    NotPromoted,
    /// Nothing to do (an adapter of this snapshot exists already).
    Skipped,
    /// Stopped with an error (in `message`).
    Failed,
}

impl RunStatus {
    /// Its name in the store, the CLI and the APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Published => "published",
            Self::NotPromoted => "not_promoted",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "running" => Self::Running,
            "published" => Self::Published,
            "not_promoted" => Self::NotPromoted,
            "skipped" => Self::Skipped,
            "failed" => Self::Failed,
            other => return Err(Error::Corrupt(format!("job run status {other:?}"))),
        })
    }
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// The job.
    pub job: String,
    /// Its number within the job, from 1.
    pub seq: u64,
    /// `schedule`, `catch-up` (an occurrence missed while no worker ran) or `manual`.
    pub trigger: String,
    /// The occurrence it runs for (ms since the epoch; the start time for manual runs).
    pub due_ms: i64,
    /// Where it stands.
    pub status: RunStatus,
    /// The worker holding (or that last held) it.
    pub worker: String,
    /// Its lease runs out then unless renewed (ms since the epoch).
    pub lease_until_ms: i64,
    /// Workers that started it: more than 1 after a takeover.
    pub attempts: u64,
    /// Started (ms since the epoch).
    pub started_ms: i64,
    /// Finished, if it has.
    pub finished_ms: Option<i64>,
    /// The snapshot it trains on, once frozen (`0x…`).
    pub snapshot_id: Option<String>,
    /// Contributions in that snapshot.
    pub contributions: Option<u64>,
    /// Accepted contributions new since the previous run's snapshot.
    pub new_contributions: Option<u64>,
    /// The adapter it trained (published or not).
    pub adapter_id: Option<String>,
    /// `line@version` (the version it would have had when not promoted).
    pub version: Option<String>,
    /// The current version's held-out loss on this run's held-out split.
    pub current_loss: Option<f64>,
    /// The new adapter's held-out loss on the same split.
    pub eval_loss: Option<f64>,
    /// What happened, in words.
    pub message: String,
    /// Who asked for it through the API (runs with trigger `request`).
    pub requested_by: Option<String>,
}

const RUN_COLUMNS: &str = "job, seq, trigger_kind, due_ms, status, worker, lease_until_ms, \
     attempts, started_ms, finished_ms, snapshot_id, contributions, new_contributions, \
     adapter_id, version, current_loss, eval_loss, message, requested_by";

/// Whether a run of `job` is running.
async fn running(tx: &mut sqlx::Transaction<'_, sqlx::Any>, job: &str) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT seq FROM job_runs WHERE job = $1 AND status = 'running' LIMIT 1",
    )
    .bind(job)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}

/// How a run being started claims its occasion.
#[derive(Clone, Copy)]
enum Claim {
    /// The occurrence `.0`, moving the job on to `.1`.
    Due(i64, i64),
    /// The API request made at `.0`.
    Request(i64),
    /// Nothing: a run out of schedule (`jobs run`).
    Manual,
}

fn run_row(r: &AnyRow) -> Result<RunRow> {
    let opt_u64 = |i: usize| r.get::<Option<i64>, _>(i).map(|v| v as u64);
    Ok(RunRow {
        job: r.get(0),
        seq: r.get::<i64, _>(1) as u64,
        trigger: r.get(2),
        due_ms: r.get(3),
        status: RunStatus::parse(&r.get::<String, _>(4))?,
        worker: r.get(5),
        lease_until_ms: r.get(6),
        attempts: r.get::<i64, _>(7) as u64,
        started_ms: r.get(8),
        finished_ms: r.get(9),
        snapshot_id: r.get(10),
        contributions: opt_u64(11),
        new_contributions: opt_u64(12),
        adapter_id: r.get(13),
        version: r.get(14),
        current_loss: r.get(15),
        eval_loss: r.get(16),
        message: r.get(17),
        requested_by: r.get(18),
    })
}

fn job_row(r: &AnyRow) -> Result<JobRow> {
    let spec: String = r.get(2);
    let when: Option<i64> = r.get(6);
    let why: Option<String> = r.get(7);
    let asked: Option<i64> = r.get(9);
    let asker: Option<String> = r.get(10);
    Ok(JobRow {
        name: r.get(0),
        cron: r.get(1),
        spec: serde_json::from_str(&spec)
            .map_err(|e| Error::Corrupt(format!("job spec JSON: {e}")))?,
        paused: r.get::<i64, _>(3) != 0,
        next_due_ms: r.get(4),
        runs: r.get::<i64, _>(5) as u64,
        last_check: when.zip(why),
        created_by: r.get(8),
        requested: asked.zip(asker),
    })
}

const JOB_COLUMNS: &str = "name, cron, spec, paused, next_due_ms, runs, last_check_ms, \
     last_check, created_by, requested_ms, requested_by FROM jobs";

impl Store {
    /// Adds the job `name` of a worker's config file, or updates its cron and spec (a job of
    /// that name made through the API becomes the config file's). `first_due_ms` becomes its next due
    /// time when it is new or its cron changed; otherwise the stored one stays (so occurrences
    /// missed while no worker ran are still due, and caught up once).
    pub async fn upsert_job(
        &self,
        name: &str,
        cron: &str,
        spec: &serde_json::Value,
        first_due_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO jobs (name, cron, spec, paused, next_due_ms, runs, updated_ms) \
             VALUES ($1, $2, $3, 0, $4, 0, $5) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_ms = excluded.updated_ms, \
             created_by = NULL, \
             next_due_ms = CASE WHEN jobs.cron = excluded.cron THEN jobs.next_due_ms ELSE excluded.next_due_ms END, \
             cron = excluded.cron",
        )
        .bind(name)
        .bind(cron)
        .bind(spec.to_string())
        .bind(first_due_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Adds the job `name`, made through the API by `created_by`, first due at
    /// `first_due_ms`; false (and nothing changes) when a job of that name exists.
    pub async fn create_job(
        &self,
        name: &str,
        cron: &str,
        spec: &serde_json::Value,
        first_due_ms: i64,
        now_ms: i64,
        created_by: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO jobs (name, cron, spec, paused, next_due_ms, runs, updated_ms, created_by) \
             VALUES ($1, $2, $3, 0, $4, 0, $5, $6) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(cron)
        .bind(spec.to_string())
        .bind(first_due_ms)
        .bind(now_ms)
        .bind(created_by)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Asks for a run of `name` now, by `by`; a worker starts it on its next sweep, whatever
    /// the schedule, threshold or pause say. A request not started yet stays as it was (one
    /// run per request). False when there is no such job.
    pub async fn request_run(&self, name: &str, by: &str, now_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET requested_ms = COALESCE(requested_ms, $1), \
             requested_by = COALESCE(requested_by, $2) WHERE name = $3",
        )
        .bind(now_ms)
        .bind(by)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every job, by name.
    pub async fn jobs(&self) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {JOB_COLUMNS} ORDER BY name")))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_row).collect()
    }

    /// The job `name`, if stored.
    pub async fn job(&self, name: &str) -> Result<Option<JobRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_row).transpose()
    }

    /// Pauses or resumes `name`; false when there is no such job.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE jobs SET paused = $1 WHERE name = $2")
            .bind(i64::from(paused))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Passes over the occurrence `due_ms` of `name` without a run (`why` says why), moving
    /// it to `next_ms`. False when another worker took the occurrence first.
    pub async fn pass_due(
        &self,
        name: &str,
        due_ms: i64,
        next_ms: i64,
        now_ms: i64,
        why: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET next_due_ms = $1, last_check_ms = $2, last_check = $3 \
             WHERE name = $4 AND next_due_ms = $5",
        )
        .bind(next_ms)
        .bind(now_ms)
        .bind(why)
        .bind(name)
        .bind(due_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Starts a run of `name` leased to `worker` until `lease_until_ms`. With `due`
    /// (occurrence, next occurrence), the occurrence is taken at the same time: `None` comes
    /// back when another worker took it first. Without, the run is started out of schedule.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_run(
        &self,
        name: &str,
        due: Option<(i64, i64)>,
        trigger: &str,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
        new_contributions: Option<u64>,
    ) -> Result<Option<RunRow>> {
        let claim = due.map_or(Claim::Manual, |(d, n)| Claim::Due(d, n));
        let lease = (worker, now_ms, lease_until_ms);
        self.start(name, claim, trigger, lease, new_contributions, None)
            .await
    }

    /// Starts the run asked for at `requested_ms` (a [`JobRow::requested`]) by `by`, leased to
    /// `worker`, with trigger `request`; `None` when another worker started it first, or while
    /// a run of the job is running (the request stays, for when it ends).
    pub async fn start_requested_run(
        &self,
        name: &str,
        (requested_ms, by): (i64, &str),
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<RunRow>> {
        let claim = Claim::Request(requested_ms);
        let lease = (worker, now_ms, lease_until_ms);
        self.start(name, claim, "request", lease, None, Some(by.to_string()))
            .await
    }

    /// Claims the occasion and inserts the run, in one transaction.
    async fn start(
        &self,
        name: &str,
        claim: Claim,
        trigger: &str,
        (worker, now_ms, lease_until_ms): (&str, i64, i64),
        new_contributions: Option<u64>,
        requested_by: Option<String>,
    ) -> Result<Option<RunRow>> {
        let mut tx = self.pool.begin().await?;
        let took = match claim {
            Claim::Due(due_ms, next_ms) => Some(
                sqlx::query(
                    "UPDATE jobs SET next_due_ms = $1, last_check_ms = NULL, last_check = NULL \
                     WHERE name = $2 AND next_due_ms = $3",
                )
                .bind(next_ms)
                .bind(name)
                .bind(due_ms),
            ),
            Claim::Request(at) => Some(
                sqlx::query(
                    "UPDATE jobs SET requested_ms = NULL, requested_by = NULL \
                     WHERE name = $1 AND requested_ms = $2",
                )
                .bind(name)
                .bind(at),
            ),
            Claim::Manual => None,
        };
        if let Some(q) = took
            && q.execute(&mut *tx).await?.rows_affected() != 1
        {
            return Ok(None);
        }
        // One run per job at a time: a request waits for the running one to end (dropping
        // the transaction keeps it asked for). Checked after the claim's write, so SQLite
        // takes its write lock first and two workers cannot deadlock upgrading a read lock.
        if matches!(claim, Claim::Request(_)) && running(&mut tx, name).await? {
            return Ok(None);
        }
        let runs: Option<i64> = sqlx::query_scalar("SELECT runs FROM jobs WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(runs) = runs else {
            return Err(Error::Config(format!(
                "no job named {name:?} in the store: start a worker with it in tributary.toml first"
            )));
        };
        let bumped = sqlx::query("UPDATE jobs SET runs = $1 WHERE name = $2 AND runs = $3")
            .bind(runs + 1)
            .bind(name)
            .bind(runs)
            .execute(&mut *tx)
            .await?;
        if bumped.rows_affected() != 1 {
            return Ok(None);
        }
        let run = RunRow {
            job: name.to_string(),
            seq: runs as u64 + 1,
            trigger: trigger.to_string(),
            due_ms: match claim {
                Claim::Due(due_ms, _) => due_ms,
                Claim::Request(at) => at,
                Claim::Manual => now_ms,
            },
            status: RunStatus::Running,
            worker: worker.to_string(),
            lease_until_ms,
            attempts: 1,
            started_ms: now_ms,
            finished_ms: None,
            snapshot_id: None,
            contributions: None,
            new_contributions,
            adapter_id: None,
            version: None,
            current_loss: None,
            eval_loss: None,
            message: "started".into(),
            requested_by,
        };
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO job_runs ({RUN_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        )))
        .bind(&run.job)
        .bind(run.seq as i64)
        .bind(&run.trigger)
        .bind(run.due_ms)
        .bind(run.status.as_str())
        .bind(&run.worker)
        .bind(run.lease_until_ms)
        .bind(run.attempts as i64)
        .bind(run.started_ms)
        .bind(run.finished_ms)
        .bind(run.snapshot_id.clone())
        .bind(run.contributions.map(|v| v as i64))
        .bind(run.new_contributions.map(|v| v as i64))
        .bind(run.adapter_id.clone())
        .bind(run.version.clone())
        .bind(run.current_loss)
        .bind(run.eval_loss)
        .bind(&run.message)
        .bind(run.requested_by.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(run))
    }

    /// Saves `run`'s progress, lease and outcome, if `run.worker` still holds it (false when
    /// another worker took it over, or it finished).
    pub async fn save_run(&self, run: &RunRow) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE job_runs SET status = $1, lease_until_ms = $2, finished_ms = $3, \
             snapshot_id = $4, contributions = $5, new_contributions = $6, adapter_id = $7, \
             version = $8, current_loss = $9, eval_loss = $10, message = $11 \
             WHERE job = $12 AND seq = $13 AND worker = $14 AND status = 'running'",
        )
        .bind(run.status.as_str())
        .bind(run.lease_until_ms)
        .bind(run.finished_ms)
        .bind(run.snapshot_id.clone())
        .bind(run.contributions.map(|v| v as i64))
        .bind(run.new_contributions.map(|v| v as i64))
        .bind(run.adapter_id.clone())
        .bind(run.version.clone())
        .bind(run.current_loss)
        .bind(run.eval_loss)
        .bind(&run.message)
        .bind(&run.job)
        .bind(run.seq as i64)
        .bind(&run.worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Renews `worker`'s lease on a running run; false when it no longer holds it.
    pub async fn renew_lease(
        &self,
        job: &str,
        seq: u64,
        worker: &str,
        until_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE job_runs SET lease_until_ms = $1 \
             WHERE job = $2 AND seq = $3 AND worker = $4 AND status = 'running'",
        )
        .bind(until_ms)
        .bind(job)
        .bind(seq as i64)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Running runs whose lease ran out before `now_ms`: their worker stopped.
    pub async fn expired_runs(&self, now_ms: i64) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM job_runs WHERE status = 'running' AND lease_until_ms < $1 \
             ORDER BY job, seq"
        )))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    /// Takes over `run` (as read, lease expired) for `worker`; `None` when another worker
    /// took it first or its worker came back.
    pub async fn take_over(
        &self,
        run: &RunRow,
        worker: &str,
        until_ms: i64,
    ) -> Result<Option<RunRow>> {
        let done = sqlx::query(
            "UPDATE job_runs SET worker = $1, lease_until_ms = $2, attempts = attempts + 1 \
             WHERE job = $3 AND seq = $4 AND status = 'running' AND worker = $5 AND lease_until_ms = $6",
        )
        .bind(worker)
        .bind(until_ms)
        .bind(&run.job)
        .bind(run.seq as i64)
        .bind(&run.worker)
        .bind(run.lease_until_ms)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        // The losses of the attempt before: the new attempt trains again from its snapshot.
        sqlx::query("DELETE FROM job_run_losses WHERE job = $1 AND seq = $2")
            .bind(&run.job)
            .bind(run.seq as i64)
            .execute(&self.pool)
            .await?;
        Ok(Some(RunRow {
            worker: worker.to_string(),
            lease_until_ms: until_ms,
            attempts: run.attempts + 1,
            ..run.clone()
        }))
    }

    /// Runs of `job` (every job's when `None`), newest first, at most `limit`.
    pub async fn runs(&self, job: Option<&str>, limit: u64) -> Result<Vec<RunRow>> {
        let order = "ORDER BY started_ms DESC, job, seq DESC";
        let rows = match job {
            Some(job) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM job_runs WHERE job = $1 {order} LIMIT $2"
                )))
                .bind(job)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM job_runs {order} LIMIT $1"
                )))
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(run_row).collect()
    }

    /// The run of `job` in progress, if any.
    pub async fn running_run(&self, job: &str) -> Result<Option<RunRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM job_runs WHERE job = $1 AND status = 'running' \
             ORDER BY seq DESC LIMIT 1"
        )))
        .bind(job)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_row).transpose()
    }

    /// The latest run of `job` that trained (published or not), if any: new contributions
    /// are counted against its snapshot.
    pub async fn last_trained_run(&self, job: &str) -> Result<Option<RunRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM job_runs WHERE job = $1 \
             AND status IN ('published', 'not_promoted') ORDER BY seq DESC LIMIT 1"
        )))
        .bind(job)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_row).transpose()
    }

    /// Records training losses `(step, loss)` of run `seq` of `job`, trained by `worker`: only
    /// while `worker` holds the run (false otherwise, and nothing is written), so a worker that
    /// lost its lease cannot mix its steps into the next attempt's.
    pub async fn record_losses(
        &self,
        job: &str,
        seq: u64,
        worker: &str,
        points: &[(u64, f64)],
    ) -> Result<bool> {
        // Each insert checks the lease itself, so the transaction's first statement writes
        // (on SQLite it takes the write lock at once, never upgrading a read lock).
        let mut tx = self.pool.begin().await?;
        for &(step, loss) in points {
            let done = sqlx::query(
                "INSERT INTO job_run_losses (job, seq, step, loss) SELECT $1, $2, $3, $4 \
                 WHERE EXISTS (SELECT 1 FROM job_runs WHERE job = $1 AND seq = $2 \
                 AND worker = $5 AND status = 'running') \
                 ON CONFLICT (job, seq, step) DO UPDATE SET loss = excluded.loss",
            )
            .bind(job)
            .bind(seq as i64)
            .bind(step as i64)
            .bind(loss)
            .bind(worker)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Notes that scheduler `worker` swept the store at `now_ms`.
    pub async fn worker_seen(&self, worker: &str, now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO job_workers (worker, seen_ms) VALUES ($1, $2) \
             ON CONFLICT (worker) DO UPDATE SET seen_ms = excluded.seen_ms",
        )
        .bind(worker)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Scheduler workers that swept the store at `since_ms` or later, with when they last did,
    /// latest first.
    pub async fn workers_seen_since(&self, since_ms: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT worker, seen_ms FROM job_workers WHERE seen_ms >= $1 ORDER BY seen_ms DESC",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Training losses of run `seq` of `job` recorded so far, by step.
    pub async fn losses(&self, job: &str, seq: u64) -> Result<Vec<(u64, f64)>> {
        let rows = sqlx::query(
            "SELECT step, loss FROM job_run_losses WHERE job = $1 AND seq = $2 ORDER BY step",
        )
        .bind(job)
        .bind(seq as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<i64, _>(0) as u64, r.get::<f64, _>(1)))
            .collect())
    }
}
