//! `tributary init`.

use std::path::PathBuf;

/// Flags of `tributary init`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The folder to set up: tributary.toml is written in it, the data folder (.tributary)
    /// created under it.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Replace an existing tributary.toml.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let path = args.dir.join("tributary.toml");
    if path.exists() && !args.force {
        anyhow::bail!(
            "{} exists: edit it, or pass --force to replace it with the defaults",
            path.display()
        );
    }
    let data = args.dir.join(".tributary");
    std::fs::create_dir_all(&data)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", data.display()))?;
    std::fs::write(&path, crate::config::TEMPLATE)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    println!("wrote {} (every setting, commented)", path.display());
    println!("created the data folder {}", data.display());
    println!(
        "next: `tributary serve` (API, indexer, scheduler and inference on an embedded chain)"
    );
    Ok(())
}
