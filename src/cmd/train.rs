//! `tributary train`.

use std::io::IsTerminal;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tributary_models::job::{self, Options, Spec};
use tributary_trainer::train::Progress;
use tributary_trainer::{DeviceChoice, base};

use crate::Common;

/// Flags of `tributary train`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// The training spec (see README.md, "Training"): line, base model, snapshot or Datanets,
    /// parents, [lora] and [train] settings.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Where to compute: auto (CUDA when visible), cpu or cuda.
    #[arg(long, default_value = "auto", value_parser = super::parse_device)]
    device: DeviceChoice,
    /// Local folder for the adapter's files (default: adapters/LINE@VERSION in the data dir).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let spec = Spec::load(&args.config)?;
    let chain = super::chain(&args.common).await?;
    let lake = super::lake(&args.common).await?;
    let published = match args.out {
        Some(out) => train(&chain, &lake, &spec, args.device, out, false).await?,
        None => {
            let out = args
                .common
                .data_dir
                .join("adapters")
                .join(format!("{}@next", spec.line));
            train(&chain, &lake, &spec, args.device, out, true).await?
        }
    };
    report(&published);
    Ok(())
}

/// Runs a training job with a progress bar on stderr (pretraining the tiny base model first
/// when the spec uses it and this machine has not built it yet); with `rename`, the local
/// folder is renamed `LINE@VERSION` after the version actually published.
pub(crate) async fn train(
    chain: &tributary_chain::Chain,
    lake: &tributary_lake::Lake,
    spec: &Spec,
    device: DeviceChoice,
    out: PathBuf,
    rename: bool,
) -> anyhow::Result<job::Published> {
    let opts = Options {
        device,
        out,
        model_cache: base::default_cache(),
    };
    // What fails without costly work fails before the pretraining: the device, the lineage
    // emitter's settings (the job checks the spec and its shape before building).
    device.device()?;
    let lineage = super::lineage()?;
    let (bar, pretraining) = progress_bar("pretraining the tiny base model")?;
    let built = job::pretrain_tiny(spec, &opts.model_cache, pretraining).await;
    bar.finish_and_clear();
    built?;
    let (bar, progress) = progress_bar("training")?;
    let input = match spec.snapshot {
        Some(id) => tributary_schemas::manifest::SnapshotManifest::key(id),
        None => tributary_schemas::tables::names::CONTRIBUTIONS.to_string(),
    };
    let result = tributary_pipeline::openlineage::observe(
        lineage.as_ref(),
        &format!("train.{}", spec.line),
        vec![super::dataset(lake, &input)],
        |p: &job::Published| {
            vec![super::dataset(
                lake,
                &tributary_schemas::manifest::AdapterManifest::folder(p.manifest.adapter_id),
            )]
        },
        job::run(chain, lake, spec, &opts, progress),
    )
    .await;
    bar.finish_and_clear();
    let published = result?;
    if !rename {
        return Ok(published);
    }
    let m = &published.manifest;
    let named = published
        .dir
        .with_file_name(format!("{}@{}", m.line, m.version));
    if published.dir != named && !named.exists() && published.dir.exists() {
        std::fs::rename(&published.dir, &named)?;
        return Ok(job::Published {
            dir: named,
            ..published
        });
    }
    Ok(published)
}

/// What a job calls after each step.
type Report = Box<dyn FnMut(&Progress) + Send>;

/// Progress of `what`, a run of steps, on stderr: a bar on a terminal; elsewhere (a log, a
/// pipe) a line at every tenth of the steps, so a slow machine shows it is working.
fn progress_bar(what: &'static str) -> anyhow::Result<(ProgressBar, Report)> {
    let bar = ProgressBar::new(0);
    bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(ProgressStyle::with_template(&format!(
        "{what} [{{bar:30}}] step {{pos}}/{{len}} {{msg}} ETA {{eta}}"
    ))?);
    let plain = !std::io::stderr().is_terminal();
    let mut tenths = 0;
    let b = bar.clone();
    let report = Box::new(move |p: &Progress| {
        let message = format!("loss {:.3}, {:.0} tokens/s", p.loss, p.tokens_per_second);
        b.set_length(p.max_steps as u64);
        b.set_position(p.step as u64);
        let now = p.step * 10 / p.max_steps.max(1);
        if plain && now > tenths {
            tenths = now;
            eprintln!("{what}: step {}/{}, {message}", p.step, p.max_steps);
        }
        b.set_message(message);
    });
    Ok((bar, report))
}

/// Prints what a job did.
pub(crate) fn report(p: &job::Published) {
    let m = &p.manifest;
    if p.base_registered {
        println!("base model {} registered", m.base_model_id);
    }
    let what = if p.newly_published {
        "published"
    } else {
        "was already published"
    };
    println!(
        "adapter {}@{} ({}) {what} in tx {} (block {})",
        m.line, m.version, m.adapter_id, p.tx, p.block
    );
    println!(
        "  base model {}, snapshot {}, {} parent(s)",
        m.base_model_id,
        m.snapshot_id,
        m.parents.len()
    );
    if let Some(x) = &m.metrics {
        println!(
            "  {} steps on {} documents ({} held out), {} tokens in {:.1} s on {}",
            x.steps, x.documents.0, x.documents.1, x.tokens, x.seconds, m.device
        );
        println!(
            "  held-out loss: base {:.3} -> adapter {:.3} (perplexity {:.2}){}",
            x.base_eval_loss,
            x.eval_loss,
            x.perplexity,
            if x.stopped_early {
                ", stopped early"
            } else {
                ""
            }
        );
    }
    println!("  lake: {}", p.uri);
    println!(
        "  files: {} (adapter_model.safetensors, adapter_config.json, manifest.json, loss.png)",
        p.dir.display()
    );
}
