//! `tributary index`.

use tributary_indexer::Indexer;

use crate::Common;

/// Flags of `tributary index`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// Blocks per eth_getLogs request.
    #[arg(long, default_value_t = 2000)]
    range: u64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let chain = super::chain(&args.common).await?;
    let lake = super::lake(&args.common)?;
    let store = super::store(&args.common).await?;
    let stats = Indexer::new(&chain, &store, &lake)
        .with_range(args.range)
        .run_to_head()
        .await?;
    let (nodes, edges) = store.counts(chain.chain_id()).await?;
    println!(
        "indexed blocks {}..={}: {} events; graph has {nodes} nodes, {edges} edges",
        stats.from_block, stats.to_block, stats.events
    );
    Ok(())
}
