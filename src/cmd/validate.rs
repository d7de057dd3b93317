//! `tributary validate`.

use crate::Common;

/// Flags of `tributary validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// The anchored batch to attest to.
    #[arg(long)]
    batch: String,
    /// Contributions in the batch to reject (all others are accepted).
    #[arg(long = "reject", value_name = "CONTRIBUTION_ID")]
    reject: Vec<String>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let batch = super::parse_id(&args.batch)?;
    let reject = args
        .reject
        .iter()
        .map(|r| super::parse_id(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let chain = super::chain(&args.common).await?;
    let lake = super::lake(&args.common).await?;
    let a = tributary_pipeline::validate::attest(&chain, &lake, batch, &reject).await?;
    println!(
        "batch {batch}: {} accepted, {} rejected by {}; verdicts root {} recorded in tx {} (block {})",
        a.accepted,
        a.rejected,
        chain.signer(),
        a.verdicts_root,
        a.tx,
        a.block
    );
    Ok(())
}
