//! `tributary verify`.

use crate::Common;

/// Flags of `tributary verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// The contribution id (0x + 64 hex digits).
    contribution: String,
}

/// Exit code 0 when the proof holds on chain, 1 when it does not (or the id is unknown).
pub(crate) async fn run(args: Args) -> anyhow::Result<bool> {
    let id = super::parse_id(&args.contribution)?;
    let chain = super::chain(&args.common).await?;
    let lake = super::lake(&args.common)?;
    let p = match tributary_pipeline::verify::prove(&chain, &lake, id).await {
        Ok(p) => p,
        Err(tributary_pipeline::Error::NotFound(what)) => {
            println!("NOT VERIFIED: {what}");
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    println!("contribution {}", p.contribution_id);
    println!("  Datanet      {}", p.datanet_id);
    println!("  status       {}", p.status());
    println!("  batch        {}", p.batch_id);
    println!("  manifest     {}", p.manifest_uri);
    println!(
        "  anchored in  tx {} (block {})",
        p.anchor_tx, p.anchor_block
    );
    println!("  root         {} (manifest)", p.root);
    println!("               {} (on chain)", p.root_on_chain);
    println!("  proof ({} hashes):", p.proof.len());
    for h in &p.proof {
        println!("    {h}");
    }
    if p.revoked {
        println!("REVOKED: the contribution was withdrawn on chain");
        return Ok(false);
    }
    if p.holds {
        println!("VERIFIED: the proof holds against the root on chain");
    } else {
        println!("NOT VERIFIED: the proof does not hold against the root on chain");
    }
    Ok(p.holds)
}
