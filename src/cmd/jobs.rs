//! `tributary jobs`: the scheduled training jobs and their history.

use std::sync::Arc;

use tributary_models::schedule::{Scheduler, WorkerConfig};
use tributary_sql::{JobRow, RunRow};
use tributary_trainer::DeviceChoice;

use crate::Common;

/// Flags of `tributary jobs`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Every job in the store (schedule, next due time, paused, last check) and its latest
    /// runs (status, snapshot, adapter, held-out losses, what happened).
    List(List),
    /// Run a job of the config file now, whatever its schedule, threshold or pause say, and
    /// print the run.
    Run(Run),
    /// Stop a job's schedule (its runs in progress finish; `jobs run` still runs it).
    Pause(Name),
    /// Start a paused job's schedule again.
    Resume(Name),
}

#[derive(Debug, clap::Args)]
struct List {
    #[command(flatten)]
    common: Common,
    /// Runs to show per job.
    #[arg(long, default_value_t = 5)]
    runs: u64,
    /// Print JSON (jobs with their runs) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct Run {
    #[command(flatten)]
    common: Common,
    /// The job's name (a [[jobs]] table of the config file).
    name: String,
    /// Where to train: auto (CUDA when visible), cpu or cuda.
    #[arg(long, default_value = "auto", value_parser = super::parse_device)]
    device: DeviceChoice,
}

#[derive(Debug, clap::Args)]
struct Name {
    #[command(flatten)]
    common: Common,
    /// The job's name.
    name: String,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Sub::List(a) => list(a).await,
        Sub::Run(a) => run_now(a).await,
        Sub::Pause(a) => pause(a, true).await,
        Sub::Resume(a) => pause(a, false).await,
    }
}

/// A time in ms since the epoch, as UTC text.
pub(crate) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn run_json(r: &RunRow) -> serde_json::Value {
    serde_json::json!({
        "job": r.job, "seq": r.seq, "trigger": r.trigger, "due": time(r.due_ms),
        "status": r.status.as_str(), "worker": r.worker, "attempts": r.attempts,
        "lease_until": time(r.lease_until_ms),
        "started": time(r.started_ms), "finished": r.finished_ms.map(time),
        "snapshot_id": r.snapshot_id, "contributions": r.contributions,
        "new_contributions": r.new_contributions, "adapter_id": r.adapter_id,
        "version": r.version, "current_loss": r.current_loss, "eval_loss": r.eval_loss,
        "message": r.message,
    })
}

fn job_json(j: &JobRow, runs: &[RunRow]) -> serde_json::Value {
    serde_json::json!({
        "name": j.name, "cron": j.cron, "paused": j.paused, "next_due": time(j.next_due_ms),
        "runs_started": j.runs,
        "last_check": j.last_check.as_ref().map(|(t, why)| serde_json::json!({"at": time(*t), "why": why})),
        "spec": j.spec,
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
    })
}

/// Prints one run on one line (and its message on the next).
pub(crate) fn print_run(r: &RunRow) {
    let loss = match (r.eval_loss, r.current_loss) {
        (Some(e), Some(c)) => format!(", held-out loss {e:.4} vs current {c:.4}"),
        (Some(e), None) => format!(", held-out loss {e:.4}"),
        _ => String::new(),
    };
    println!(
        "  #{} {} ({}, started {}, worker {}, attempt {}){}{}{}",
        r.seq,
        r.status.as_str(),
        r.trigger,
        time(r.started_ms),
        r.worker,
        r.attempts,
        r.version
            .as_ref()
            .map(|v| format!(": {v}"))
            .unwrap_or_default(),
        r.new_contributions
            .map(|n| format!(", {n} new contributions"))
            .unwrap_or_default(),
        loss
    );
    println!("      {}", r.message);
}

async fn list(a: List) -> anyhow::Result<()> {
    let store = super::store(&a.common).await?;
    let jobs = store.jobs().await?;
    if a.json {
        let mut out = Vec::new();
        for j in &jobs {
            out.push(job_json(j, &store.runs(Some(&j.name), a.runs).await?));
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if jobs.is_empty() {
        println!(
            "no jobs yet: add a [[jobs]] table to tributary.toml (`tributary init` shows one) and start `tributary serve`"
        );
        return Ok(());
    }
    for j in &jobs {
        println!(
            "{} [{}]{}: next due {}, {} run(s)",
            j.name,
            j.cron,
            if j.paused { " PAUSED" } else { "" },
            time(j.next_due_ms),
            j.runs
        );
        if let Some((at, why)) = &j.last_check {
            println!("  last check {}: {why}", time(*at));
        }
        for r in store.runs(Some(&j.name), a.runs).await? {
            print_run(&r);
        }
    }
    Ok(())
}

async fn run_now(a: Run) -> anyhow::Result<()> {
    let jobs = crate::config::get().1.jobs.clone();
    if !jobs.iter().any(|j| j.name == a.name) {
        anyhow::bail!(
            "no job named {:?} in the config file{}: add a [[jobs]] table with that name",
            a.name,
            crate::config::get()
                .0
                .as_ref()
                .map(|p| format!(" ({})", p.display()))
                .unwrap_or_else(|| " (none found: pass --config-file)".into())
        );
    }
    let chain = Arc::new(super::chain(&a.common).await?);
    let lake = super::lake(&a.common).await?;
    let store = super::store(&a.common).await?;
    let mut cfg = WorkerConfig::new(
        &a.common.data_dir,
        &tributary_trainer::base::default_cache(),
    );
    cfg.device = a.device;
    let scheduler =
        Scheduler::new(chain, lake, store, jobs, cfg, None)?.with_lineage(super::lineage()?);
    scheduler.register().await?;
    let run = scheduler.run_now(&a.name).await?;
    println!("{} run #{}:", run.job, run.seq);
    print_run(&run);
    if run.status == tributary_sql::RunStatus::Failed {
        anyhow::bail!("the run failed");
    }
    Ok(())
}

async fn pause(a: Name, paused: bool) -> anyhow::Result<()> {
    let store = super::store(&a.common).await?;
    if !store.set_paused(&a.name, paused).await? {
        anyhow::bail!(
            "no job named {:?} in the store: `tributary jobs list` shows the jobs",
            a.name
        );
    }
    println!("{} {}", a.name, if paused { "paused" } else { "resumed" });
    Ok(())
}
