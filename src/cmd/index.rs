//! `tributary index`.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use std::time::{Duration, Instant};

use tributary_indexer::{IndexMetrics, IndexStats, Indexer, Registry};

use crate::Common;

/// Flags of `tributary index`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// Blocks per eth_getLogs request.
    #[arg(long, default_value_t = 2000)]
    range: u64,
    /// Keep following the head (until Ctrl-C or SIGTERM) instead of stopping there.
    #[arg(long)]
    follow: bool,
    /// Blocks to stay behind the head. 0 indexes the head itself and rolls back reorgs.
    #[arg(long, default_value_t = 0)]
    confirmations: u64,
    /// Recent blocks whose hashes are kept to find a fork point; a deeper reorg stops the
    /// indexer with an error rather than leave an inconsistent graph.
    #[arg(long, default_value_t = 128)]
    reorg_window: u64,
    /// Block ranges fetched at once while backfilling far behind the head.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Seconds between polls of the head while following.
    #[arg(long, default_value_t = 1.0)]
    poll: f64,
    /// Serve Prometheus metrics (head, checkpoint, lag, events, reorgs) at
    /// http://ADDR/metrics while indexing, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Do not mirror the graph into the lake's Delta tables (chain_events, lineage_nodes,
    /// lineage_edges, datanets, snapshots, training_runs, adapters).
    #[arg(long)]
    no_mirror: bool,
    /// Only check again the manifests the lake could not serve when indexed (batches,
    /// snapshots, inference batches, reward epochs, adapters' credit; and reward epochs whose
    /// manifest was missing, as one recorded as foreign after it was posted): a plain run does
    /// this too, after reaching the head. Readable ones bring what they hold into the graph,
    /// missing or different ones are flagged.
    #[arg(long, conflicts_with = "follow")]
    recheck: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let chain = super::chain_read_only(&args.common).await?;
    let lake = super::lake(&args.common).await?;
    let store = super::store(&args.common).await?;
    let mut registry = Registry::default();
    let metrics = IndexMetrics::register(&mut registry);
    if let Some(addr) = args.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}: pick another --metrics address"))?;
        eprintln!(
            "index: metrics at http://{}/metrics",
            listener.local_addr()?
        );
        let router = tributary_api::metrics_router(Arc::new(registry));
        tokio::spawn(async move {
            if let Err(e) = tributary_api::serve(listener, router, std::future::pending()).await {
                tracing::error!("metrics server: {e}");
            }
        });
    }
    let started = Instant::now();
    let last = Mutex::new(Instant::now() - Duration::from_secs(1));
    let report = |s: &IndexStats, head: u64| {
        metrics.observe(s, head);
        let mut last = last.lock().expect("progress lock");
        if last.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last = Instant::now();
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let blocks = (s.to_block + 1).saturating_sub(s.from_block);
        eprintln!(
            "index: block {} (head {head}, lag {}): {:.0} blocks/s, {:.0} events/s, {} reorgs",
            s.to_block,
            head.saturating_sub(s.to_block),
            blocks as f64 / secs,
            s.events as f64 / secs,
            s.reorgs
        );
    };
    let indexer = Indexer::new(&chain, &store, &lake)
        .with_range(args.range)
        .with_confirmations(args.confirmations)
        .with_reorg_window(args.reorg_window)
        .with_parallel_ranges(args.parallel)
        .with_poll_interval(Duration::from_secs_f64(args.poll.max(0.01)))
        .with_mirror(!args.no_mirror)
        .with_progress(&report);
    if args.recheck {
        let r = indexer.recheck().await?;
        println!(
            "rechecked {} manifest(s) the lake had not served: {} now verified, {} flagged (missing, different from the chain, unsigned, or not Tributary's), {} still waiting",
            r.checked, r.recovered, r.flagged, r.waiting
        );
        return Ok(());
    }
    let stats = if args.follow {
        indexer.follow(super::shutdown_signal()).await?
    } else {
        indexer.run_to_head().await?
    };
    let (nodes, edges) = store.counts(chain.chain_id()).await?;
    println!(
        "indexed blocks {}..={}: {} events, {} reorgs rolled back; graph has {nodes} nodes, {edges} edges",
        stats.from_block, stats.to_block, stats.events, stats.reorgs
    );
    let waiting = indexer.waiting().await?.len();
    if waiting > 0 {
        println!(
            "{waiting} node(s) wait for their manifest (the lake did not serve it, or a reward epoch's is missing): checked again on every run, or now with `tributary index --recheck`"
        );
    }
    Ok(())
}
