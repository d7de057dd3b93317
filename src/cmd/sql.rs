//! `tributary sql`.

use std::time::Duration;

use anyhow::Context;
use tributary_api::analyst::{Analyst, SqlLimits};
use tributary_chain::Deployment;

use crate::Common;

/// Flags of `tributary sql`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// The statement: a query over the lake's tables and views (read-only). Time travel:
    /// "contributions@v3" or "contributions@2026-11-25T10:00:00Z"; ancestry('adapter:0x…', 6)
    /// walks the lineage graph.
    sql: String,
    /// Output: an aligned table, CSV or JSON lines.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    format: Output,
    /// Most rows to print (more are cut, with a note on stderr).
    #[arg(long, default_value_t = 10_000)]
    max_rows: usize,
    /// Seconds a query may run.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Memory the query may hold, in MiB.
    #[arg(long, default_value_t = 1024)]
    memory_mb: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    Table,
    Csv,
    Json,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let lake = super::existing_lake(&args.common).await?;
    let store = super::store(&args.common).await?;
    let chain_id = Deployment::load(&args.common.data_dir)?
        .map(|d| d.chain_id)
        .unwrap_or(31337);
    let limits = SqlLimits {
        memory_bytes: args.memory_mb << 20,
        timeout: Duration::from_secs_f64(args.timeout.max(0.001)),
        max_rows: args.max_rows,
    };
    let analyst = Analyst::open(lake, store, chain_id, limits)
        .await
        .context("opening the SQL session")?;
    let answer = analyst.query(&args.sql).await?;
    let batches = &answer.batches;
    match args.format {
        Output::Table => println!(
            "{}",
            arrow::util::pretty::pretty_format_batches(batches).context("formatting")?
        ),
        Output::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(std::io::stdout());
            for b in batches {
                w.write(b)?;
            }
        }
        Output::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(std::io::stdout());
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    if answer.truncated {
        eprintln!(
            "sql: only the first {} rows are shown (--max-rows)",
            args.max_rows
        );
    }
    Ok(())
}
