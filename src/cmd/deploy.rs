//! `tributary deploy`.

use crate::Common;

/// Flags of `tributary deploy`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
}

/// Deploys the contracts where none is known for the chain (a live deployment in the data
/// directory is kept), then prints the record and the `[chain]` section that names it.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = super::chain_config(&args.common)?;
    config.allow_deploy = true;
    let chain = tributary_chain::Chain::connect(config).await?;
    let d = chain.deployment();
    println!(
        "Tributary's contracts on chain {} (record: {}):",
        d.chain_id,
        tributary_chain::Deployment::path(&args.common.data_dir).display()
    );
    println!("{}", serde_json::to_string_pretty(d)?);
    println!("\nTo use them from another machine, in tributary.toml:\n");
    println!("[chain]");
    println!("chain_id = {}", d.chain_id);
    println!("start_block = {}", d.start_block);
    for (key, address) in [
        ("datanet_registry", d.datanet_registry),
        ("model_registry", d.model_registry),
        ("inference_ledger", d.inference_ledger),
        ("reward_token", d.reward_token),
        ("reward_distributor", d.reward_distributor),
    ] {
        println!("{key} = \"{address}\"");
    }
    Ok(())
}
