//! `tributary attribute`.

use tributary_models::attribute::{Attribution, Query, attribute};
use tributary_trainer::base;

use crate::Common;

/// Flags of `tributary attribute`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// The adapter: its id or LINE@VERSION.
    #[arg(long)]
    adapter: String,
    /// The prompt.
    #[arg(long)]
    prompt: String,
    /// The answer to attribute (default: the adapter's greedy answer to the prompt).
    #[arg(long)]
    output: Option<String>,
    /// Tokens to generate when --output is not given.
    #[arg(long, default_value_t = 40)]
    max_new_tokens: usize,
    /// Contributions to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Shortest matched span reported, in tokens.
    #[arg(long, default_value_t = 6)]
    min_span: usize,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let chain = super::chain(&args.common).await?;
    let lake = super::lake(&args.common).await?;
    let q = Query {
        adapter: args.adapter,
        prompt: args.prompt,
        output: args.output,
        max_new_tokens: args.max_new_tokens,
        top_k: args.top,
        min_span: args.min_span,
    };
    let a = attribute(&chain, &lake, &q, &base::default_cache()).await?;
    print(&a, q.min_span);
    Ok(())
}

/// Prints an attribution: the answer, the top contributions, contributor shares, spans.
pub(crate) fn print(a: &Attribution, min_span: usize) {
    let m = &a.adapter;
    println!("adapter {}@{} ({})", m.line, m.version, m.adapter_id);
    println!(
        "{} {:?}",
        if a.generated {
            "answer (generated):"
        } else {
            "answer:"
        },
        a.output
    );
    println!(
        "\ntop {} of {} contributions by gradient influence (TracIn over training checkpoints):",
        a.top.len(),
        a.scored
    );
    println!(
        "rank  score      share   contributor                                 datanet  contribution"
    );
    for (i, s) in a.top.iter().enumerate() {
        println!(
            "{:>4}  {:>+9.5}  {:>6.2}%  {}  {:>7}  {}{}",
            i + 1,
            s.score,
            100.0 * s.share,
            s.contributor,
            s.datanet_id,
            s.contribution,
            if s.revoked {
                "  (revoked: no share)"
            } else {
                ""
            }
        );
    }
    println!(
        "{} contributions credited (every positive share, as serving records an answer's credit)",
        a.credit.iter().filter(|c| !c.is_rest()).count()
    );
    println!("\nshares by contributor:");
    for (who, share) in a.contributors.iter().filter(|(_, s)| *s > 0.0) {
        println!("  {who}  {:>6.2}%", 100.0 * share);
    }
    if a.spans.is_empty() {
        println!(
            "\nno span of the answer of {min_span} tokens or more occurs in the training data"
        );
    } else {
        println!("\nspans of the answer found in the training data:");
        for s in &a.spans {
            println!(
                "  {:?} ({} tokens, {} occurrence(s))",
                s.text, s.tokens, s.occurrences
            );
            for (c, n) in &s.contributions {
                println!("    {c} x{n}");
            }
        }
    }
}
