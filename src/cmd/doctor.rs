//! `tributary doctor`.

use tributary_trainer::DeviceChoice;

/// Flags of `tributary doctor`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Device to check libtorch on: auto, cpu or cuda.
    #[arg(long, default_value = "auto", value_parser = super::parse_device)]
    device: DeviceChoice,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let anvil = tributary_chain::anvil::anvil_binary();
    let version = std::process::Command::new(&anvil).arg("--version").output();
    match version {
        Ok(out) if out.status.success() => {
            println!(
                "anvil: {} ({})",
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .next()
                    .unwrap_or(""),
                anvil.display()
            )
        }
        _ => anyhow::bail!(
            "anvil not runnable at {}: run `make setup` or set TRIBUTARY_ANVIL",
            anvil.display()
        ),
    }
    println!("{}", tributary_trainer::check(args.device)?);
    Ok(())
}
