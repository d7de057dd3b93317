//! `tributary contribute`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tributary_chain::keys;
use tributary_pipeline::contribute::{ContributeConfig, contribute};
use tributary_pipeline::datanet;
use tributary_pipeline::rules::Rules;

use tributary_pipeline::openlineage::{Dataset, observe};

use crate::Common;

/// Flags of `tributary contribute`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// The Datanet, by name or id.
    #[arg(long)]
    datanet: String,
    /// Hex private key that signs unsigned records (else TRIBUTARY_CONTRIBUTOR_KEY). Pre-signed
    /// envelopes need no key.
    #[arg(long, env = "TRIBUTARY_CONTRIBUTOR_KEY", hide_env_values = true)]
    key: Option<String>,
    /// License of the records signed here (default: the Datanet's first accepted license).
    #[arg(long)]
    license: Option<String>,
    /// Records per batch: one Delta commit and one anchor each.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// Input files: .jsonl, .csv, .parquet, or directories of text files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    for input in &args.inputs {
        anyhow::ensure!(input.exists(), "input {} does not exist", input.display());
    }
    let signer = args
        .key
        .as_deref()
        .map(keys::parse_key)
        .transpose()
        .context("--key")?;
    let chain = super::chain(&args.common).await?;
    let lake = super::lake(&args.common).await?;
    let d = datanet::load(&chain, &lake, &args.datanet).await?;
    let config = ContributeConfig {
        datanet_id: d.id,
        rules: Rules::new(d.manifest)?,
        signer,
        license: args.license,
        batch_size: args.batch_size,
        window: tributary_pipeline::contribute::WINDOW,
        validity_secs: 86_400,
    };

    let bar = ProgressBar::new_spinner();
    bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(ProgressStyle::with_template(
        "{spinner} {human_pos} records read, {per_sec} [{elapsed}]",
    )?);
    bar.enable_steady_tick(Duration::from_millis(250));
    let inputs = args
        .inputs
        .iter()
        .map(|p| {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            Dataset::new("file", abs.display().to_string())
        })
        .collect();
    use tributary_schemas::tables::names;
    let outputs = [names::CONTRIBUTIONS, names::BATCHES, names::REJECTIONS]
        .map(|t| super::dataset(&lake, t))
        .to_vec();
    let report = observe(
        super::lineage()?.as_ref(),
        &format!("ingest.{}", args.datanet),
        inputs,
        |_| outputs,
        contribute(&chain, &lake, &config, &args.inputs, &|n| {
            bar.set_position(n)
        }),
    )
    .await;
    bar.finish_and_clear();
    let report = report?;

    println!(
        "{} records read: {} accepted, {} already present, {} rejected",
        report.read,
        report.accepted,
        report.already_present,
        report.rejected_total()
    );
    for (code, n) in &report.rejected {
        println!("  rejected {code}: {n}");
    }
    for b in &report.batches {
        println!(
            "batch {}: {} contributions, Delta version {}, root {} anchored in tx {} (block {})",
            b.batch_id, b.count, b.lake_version, b.merkle_root, b.anchor_tx, b.anchor_block
        );
    }
    if report.rejected_total() > 0 {
        println!("refusals with reasons and raw input are in the `rejections` table");
    }
    Ok(())
}
