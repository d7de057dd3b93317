//! `tributary datanet`.

use std::path::PathBuf;

use anyhow::Context;
use tributary_pipeline::datanet;
use tributary_schemas::datanet::DatanetManifest;

use crate::Common;

/// Flags of `tributary datanet`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Register a Datanet from its TOML manifest (idempotent by name) and create its tables.
    Create {
        #[command(flatten)]
        common: Common,
        /// The manifest: name, domain, fields, licenses, rules, dedup, access.
        manifest: PathBuf,
    },
    /// Print a Datanet's id, owner and manifest.
    Show {
        #[command(flatten)]
        common: Common,
        /// Name or id.
        datanet: String,
    },
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Create { common, manifest } => {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("cannot read the manifest {}", manifest.display()))?;
            let m = DatanetManifest::from_toml(&text)
                .with_context(|| format!("in {}", manifest.display()))?;
            let chain = super::chain(&common).await?;
            let lake = super::lake(&common).await?;
            let id = datanet::create_from_manifest(&chain, &lake, &m).await?;
            println!(
                "Datanet {} ({}) has id {id}; schema hash {}",
                m.name,
                m.domain,
                m.schema_hash()
            );
        }
        Command::Show { common, datanet } => {
            let chain = super::chain(&common).await?;
            let lake = super::lake(&common).await?;
            let d = datanet::load(&chain, &lake, &datanet).await?;
            println!(
                "Datanet {} (id {}), owner {}",
                d.manifest.name, d.id, d.owner
            );
            println!("{}", serde_json::to_string_pretty(&d.manifest)?);
        }
    }
    Ok(())
}
