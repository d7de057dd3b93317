//! `tributary snapshot`.

use tributary_pipeline::{datanet, snapshot};

use crate::Common;

/// Flags of `tributary snapshot`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// The Datanets to freeze, by name or id; repeat, or separate with commas.
    #[arg(
        long = "datanet",
        value_name = "NAME|ID",
        value_delimiter = ',',
        required = true
    )]
    datanets: Vec<String>,
    /// The version of the lake's `contributions` table to read (default: the latest).
    #[arg(long, value_name = "V")]
    at_version: Option<u64>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let chain = super::chain(&args.common).await?;
    let lake = super::lake(&args.common).await?;
    let mut ids = Vec::with_capacity(args.datanets.len());
    for d in &args.datanets {
        ids.push(datanet::load(&chain, &lake, d).await?.id);
    }
    use tributary_schemas::tables::names;
    let inputs = [
        names::CONTRIBUTIONS,
        names::BATCHES,
        names::VALIDATIONS,
        names::REVOCATIONS,
    ]
    .map(|t| super::dataset(&lake, t))
    .to_vec();
    let s = tributary_pipeline::openlineage::observe(
        super::lineage()?.as_ref(),
        "snapshot",
        inputs,
        |s: &snapshot::Committed| {
            vec![super::dataset(
                &lake,
                &tributary_schemas::manifest::SnapshotManifest::key(s.manifest.snapshot_id),
            )]
        },
        snapshot::snapshot(&chain, &lake, &ids, args.at_version),
    )
    .await?;
    let m = &s.manifest;
    let what = if s.newly_committed {
        "committed"
    } else {
        "was already committed"
    };
    println!(
        "snapshot {} {what} in tx {} (block {}): {} contributions of Datanet(s) {:?} at contributions version {:?}, Merkle root {}",
        m.snapshot_id,
        s.tx,
        s.block,
        m.contributions.len(),
        m.datanet_ids,
        m.lake_versions,
        s.root
    );
    println!("manifest: {}", s.manifest_uri);
    Ok(())
}
