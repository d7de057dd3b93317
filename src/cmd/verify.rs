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

/// `Ok(true)` when every check holds, `Ok(false)` when one fails or the id is unknown (the
/// reason printed); `Err` when the checks could not run (exit 2).
pub(crate) async fn run(args: Args) -> anyhow::Result<bool> {
    let id = super::parse_id(&args.contribution)?;
    let lake = super::existing_lake(&args.common).await?;
    let chain = super::chain_read_only(&args.common).await?;
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
    match &p.failure {
        None => println!(
            "VERIFIED: the lake's copy is what its contributor signed and the proof holds against the root on chain"
        ),
        Some(why) => println!("NOT VERIFIED: {why}"),
    }
    Ok(p.holds())
}
