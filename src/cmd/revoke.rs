//! `tributary revoke`.

use crate::Common;

/// Flags of `tributary revoke`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// The contribution id.
    contribution: String,
    /// Why (recorded on chain), e.g. "license withdrawn".
    #[arg(long)]
    reason: String,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let id = super::parse_id(&args.contribution)?;
    let chain = super::chain(&args.common).await?;
    let lake = super::lake(&args.common).await?;
    let r = tributary_pipeline::revoke::revoke(&chain, &lake, id, &args.reason).await?;
    let what = if r.newly_revoked {
        "revoked"
    } else {
        "was already revoked"
    };
    println!(
        "contribution {id} {what} in tx {} (block {}); tombstone in the lake",
        r.tx, r.block
    );
    Ok(())
}
