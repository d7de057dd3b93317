//! `tributary rewards`: settle an epoch, claim, and show what an account earned.

use tributary_pipeline::rewards::{self, Accounts, Policy};
use tributary_schemas::Address;

use crate::Common;

/// Flags of `tributary rewards`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Split the fees of every inference batch recorded on chain since the last epoch: write
    /// `reward_allocations`, the epoch's Merkle tree, and post `EpochAllocated`.
    Settle(Settle),
    /// Claim an account's reward of an epoch (anyone may send it; the token goes to the
    /// account). An epoch claimed already is reported with its claim's transaction.
    Claim(Claim),
    /// List what an account earned, per epoch, role, adapter and contribution, and why.
    Show(Show),
}

#[derive(Debug, clap::Args)]
struct Settle {
    #[command(flatten)]
    common: Common,
    /// The split, in percent: platform, model owner (the adapter's publisher), stakers, data
    /// contributors (by attribution share).
    #[arg(
        long,
        default_value = "platform=10,owner=20,stakers=20,contributors=50"
    )]
    policy: String,
    /// The platform's account (default: the signer).
    #[arg(long)]
    platform: Option<Address>,
    /// The stakers' pool account (default: the platform's).
    #[arg(long)]
    stakers: Option<Address>,
    /// First record epoch N, posted straight to the RewardDistributor by someone else (an
    /// airdrop, say), as not Tributary's, so settling goes on with N + 1. Only the next epoch
    /// to settle, posted on chain with no manifest in this lake, qualifies. An epoch Tributary
    /// settled whose manifest was lost must be restored instead, or its batches are paid
    /// again.
    #[arg(long, value_name = "N")]
    foreign_epoch: Option<u64>,
}

#[derive(Debug, clap::Args)]
struct Claim {
    #[command(flatten)]
    common: Common,
    /// The epoch.
    #[arg(long)]
    epoch: u64,
    /// The account to pay (default: the signer).
    #[arg(long)]
    account: Option<Address>,
}

#[derive(Debug, clap::Args)]
struct Show {
    #[command(flatten)]
    common: Common,
    /// The account.
    #[arg(long)]
    contributor: Address,
}

/// Token units (18 decimals) as a decimal number of tokens.
pub(crate) fn tokens(units: u128) -> String {
    let whole = units / 10u128.pow(18);
    let frac = units % 10u128.pow(18);
    if frac == 0 {
        return whole.to_string();
    }
    let f = format!("{frac:018}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Sub::Settle(a) => {
            let policy: Policy = a.policy.parse()?;
            let chain = super::chain(&a.common).await?;
            let lake = super::lake(&a.common).await?;
            let platform = a.platform.unwrap_or(chain.signer());
            let accounts = Accounts {
                platform,
                stakers: a.stakers.unwrap_or(platform),
            };
            if let Some(n) = a.foreign_epoch {
                let m = rewards::record_foreign(&chain, &lake, n).await?;
                println!(
                    "epoch {n}: recorded as posted by someone else (root {}, total {} units): not Tributary's to pay",
                    m.root, m.pool
                );
            }
            use tributary_schemas::tables::names;
            let s = tributary_pipeline::openlineage::observe(
                super::lineage()?.as_ref(),
                "settle",
                // The inference batches' manifests, each checked against the chain.
                vec![super::dataset(&lake, "artifacts/inferences/")],
                |s: &rewards::Settled| {
                    vec![
                        super::dataset(&lake, names::REWARD_ALLOCATIONS),
                        super::dataset(&lake, &format!("rewards/epoch-{}.json", s.manifest.epoch)),
                    ]
                },
                rewards::settle(&chain, &lake, policy, accounts),
            )
            .await?;
            print_settled(&s);
        }
        Sub::Claim(a) => {
            let chain = super::chain(&a.common).await?;
            let lake = super::lake(&a.common).await?;
            let account = a.account.unwrap_or(chain.signer());
            let c = rewards::claim(&chain, &lake, a.epoch, account).await?;
            println!(
                "{} {} tokens ({} units) for {account} from epoch {} in tx {}",
                if c.newly_claimed {
                    "claimed"
                } else {
                    "already claimed"
                },
                tokens(c.amount),
                c.amount,
                a.epoch,
                c.tx
            );
        }
        Sub::Show(a) => {
            let chain = super::chain(&a.common).await?;
            let lake = super::lake(&a.common).await?;
            let (rows, balance) = rewards::show(&chain, &lake, a.contributor).await?;
            print_earned(a.contributor, &rows, balance);
        }
    }
    Ok(())
}

/// Prints a settled epoch.
pub(crate) fn print_settled(s: &rewards::Settled) {
    let m = &s.manifest;
    let totals = rewards::totals(&m.allocations);
    println!(
        "epoch {}: {} tokens from {} inference batch(es) split over {} account(s); root {}{}",
        m.epoch,
        tokens(s.pool),
        m.batches.len(),
        totals.len(),
        m.root,
        match s.tx {
            Some(tx) => format!("; EpochAllocated in tx {tx}"),
            None => " (already allocated on chain)".into(),
        }
    );
    for (account, amount) in &totals {
        println!("  {account}  {}", tokens(*amount));
    }
    for (batch, why) in &s.unverified {
        println!("  left unsettled: batch {batch}: {why} (restore its manifest and settle again)");
    }
    for (batch, why) in &s.unread {
        println!(
            "  not read: settled batch {batch}: {why} (an answer it paid, listed again by a new batch, is paid again; restore its manifest)"
        );
    }
    for r in &s.repeated {
        println!(
            "  paid once: answer {} is listed again by batch {}; it is paid in batch {}",
            r.answer, r.batch, r.paid_in
        );
    }
}

/// Prints what an account earned.
pub(crate) fn print_earned(account: Address, rows: &[rewards::Earned], balance: u128) {
    println!("{account}");
    if rows.is_empty() {
        println!("  nothing earned yet");
    }
    let mut total = 0u128;
    let mut claimed = 0u128;
    for r in rows {
        let a = &r.allocation;
        total += a.amount;
        if r.claimed {
            claimed += a.amount;
        }
        let what = match a.contribution {
            Some(c) => format!("contribution {c}"),
            None => format!("adapter {}", a.adapter),
        };
        println!(
            "  epoch {} {:<11} {:>24} {}  {}{}",
            r.epoch,
            a.role.as_str(),
            tokens(a.amount),
            what,
            a.reason,
            if r.claimed { " (claimed)" } else { "" },
        );
    }
    println!(
        "  earned {} tokens, claimed {}; balance on chain {}",
        tokens(total),
        tokens(claimed),
        tokens(balance)
    );
}
