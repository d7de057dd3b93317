use std::time::Duration;

use alloy::primitives::B256;
use alloy::rpc::types::Log;
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_schemas::lineage::{ChainPos, NodeKind, prop};
use tributary_sql::{Checkpoint, RawEvent, Rows, Store};

use crate::events::{self, Changes};
use crate::{Error, Result, mirror};

/// The checkpoint stream name of the lineage indexer.
pub const STREAM: &str = "lineage";

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// First block read.
    pub from_block: u64,
    /// Last block read (the checkpoint).
    pub to_block: u64,
    /// Logs read.
    pub events: u64,
    /// Nodes written (including ones already present).
    pub nodes: u64,
    /// Edges written (including ones already present).
    pub edges: u64,
    /// Contribution nodes written: rows ingested into the lake and anchored on chain.
    pub contributions: u64,
    /// Reorgs found and rolled back.
    pub reorgs: u64,
    /// Rows removed by rollbacks.
    pub rolled_back: u64,
    /// The last step found nothing left to index up to the confirmed head (also on an idle
    /// chain, where no new block ever arrives).
    pub at_head: bool,
    /// Nodes indexed whose manifest the lake could not serve (rechecked later).
    pub unreachable: u64,
}

/// What a recheck of the manifests a store waits for found ([`Indexer::recheck`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recheck {
    /// Nodes checked.
    pub checked: u64,
    /// Now verified: what their manifest brings joined the graph.
    pub recovered: u64,
    /// Now missing or different from the chain: flagged.
    pub flagged: u64,
    /// Still waiting: unreachable (or a reward epoch's manifest still missing).
    pub waiting: u64,
}

const RECHECK_FIRST: Duration = Duration::from_secs(1);
const RECHECK_MAX: Duration = Duration::from_secs(300);
/// The longest pause between tries of a step that failed (an outage).
const OUTAGE_PAUSE_MAX: Duration = Duration::from_secs(60);

/// A progress report: the stats so far and the chain's head.
pub type Progress<'a> = dyn Fn(&IndexStats, u64) + Sync + 'a;

/// Indexes one chain into one store, and mirrors the store into the lake.
pub struct Indexer<'a> {
    chain: &'a Chain,
    store: &'a Store,
    lake: &'a Lake,
    range: u64,
    /// The range in use: halved when the node refuses a request, doubled back on success.
    current_range: std::sync::atomic::AtomicU64,
    confirmations: u64,
    window: u64,
    parallel: usize,
    poll: Duration,
    mirror: bool,
    /// Whether the mirrored tables were checked to be the ones their progress belongs to.
    mirror_checked: std::sync::atomic::AtomicBool,
    progress: Option<&'a Progress<'a>>,
}

impl std::fmt::Debug for Indexer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexer")
            .field("chain_id", &self.chain.chain_id())
            .field("range", &self.range)
            .field("confirmations", &self.confirmations)
            .field("window", &self.window)
            .field("parallel", &self.parallel)
            .field("poll", &self.poll)
            .field("mirror", &self.mirror)
            .finish_non_exhaustive()
    }
}

/// What one step found.
enum Step {
    /// Applied a block range.
    Applied,
    /// Rolled back a reorg.
    RolledBack,
    /// Nothing new up to the confirmed head.
    AtHead,
    /// The chain moved under the step; try again.
    Retry,
}

impl<'a> Indexer<'a> {
    /// An indexer reading `chain`, writing `store`, checking manifests in and mirroring the
    /// graph to `lake`.
    pub fn new(chain: &'a Chain, store: &'a Store, lake: &'a Lake) -> Self {
        Self {
            chain,
            store,
            lake,
            range: 2_000,
            current_range: 2_000.into(),
            confirmations: 0,
            window: 128,
            parallel: 4,
            poll: Duration::from_secs(1),
            mirror: true,
            mirror_checked: false.into(),
            progress: None,
        }
    }

    /// The DatanetRegistry's EIP-712 domain separator: a batch's entries must be signed under
    /// it by their contributors.
    fn signing(&self) -> B256 {
        tributary_schemas::contribution::domain(
            self.chain.chain_id(),
            self.chain.deployment().datanet_registry,
        )
        .separator()
    }

    /// Blocks per `eth_getLogs` request.
    /// The range adapts: it halves when the node refuses or times out a request (too many
    /// results, limits) and grows back on success, never above this.
    pub fn with_range(mut self, blocks: u64) -> Self {
        self.range = blocks.max(1);
        self.current_range = self.range.into();
        self
    }

    /// Blocks to stay behind the head (0: index the head itself and roll back on reorgs).
    pub fn with_confirmations(mut self, blocks: u64) -> Self {
        self.confirmations = blocks;
        self
    }

    /// The reorg window: how many recent blocks' hashes are kept. A reorg deeper than this
    /// stops the indexer with [`Error::ReorgTooDeep`].
    pub fn with_reorg_window(mut self, blocks: u64) -> Self {
        self.window = blocks.max(1);
        self
    }

    /// Block ranges fetched at once while backfilling far behind the head (default 4).
    pub fn with_parallel_ranges(mut self, n: usize) -> Self {
        self.parallel = n.max(1);
        self
    }

    /// How often `follow` polls the head.
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Whether to mirror the graph into the lake's Delta tables (default: yes).
    pub fn with_mirror(mut self, on: bool) -> Self {
        self.mirror = on;
        self
    }

    /// Calls `report(stats so far, head)` after every step that applied blocks.
    pub fn with_progress(mut self, report: &'a Progress<'a>) -> Self {
        self.progress = Some(report);
        self
    }

    /// Indexes from the checkpoint (or the deployment block) to the confirmed head, rolling
    /// back reorgs on the way.
    pub async fn run_to_head(&self) -> Result<IndexStats> {
        let mut stats = self.start_stats().await?;
        self.catch_up_mirror().await?;
        loop {
            match self.step(&mut stats).await? {
                Step::AtHead => break,
                Step::Applied | Step::RolledBack | Step::Retry => {}
            }
        }
        self.recheck().await?;
        Ok(stats)
    }

    /// Ids of the nodes whose manifest this store waits for: any node (batch, snapshot,
    /// inference batch, reward epoch, adapter) whose manifest the lake could not serve when it
    /// was indexed (`da: unreachable`), and reward epochs whose manifest was missing (an epoch
    /// posted straight to the distributor is recorded as foreign after it is posted).
    pub async fn waiting(&self) -> Result<Vec<String>> {
        use events::datanet_registry::Availability;
        let chain_id = self.chain.chain_id();
        let mut ids = Vec::new();
        for kind in [
            NodeKind::Batch,
            NodeKind::Snapshot,
            NodeKind::Adapter,
            NodeKind::Inference,
            NodeKind::RewardEpoch,
        ] {
            ids.extend(
                self.store
                    .node_ids_with(
                        chain_id,
                        kind.as_str(),
                        prop::DA,
                        Availability::Unreachable.as_str(),
                    )
                    .await?,
            );
        }
        ids.extend(
            self.store
                .node_ids_with(
                    chain_id,
                    NodeKind::RewardEpoch.as_str(),
                    prop::DA,
                    Availability::Missing.as_str(),
                )
                .await?,
        );
        Ok(ids)
    }

    /// Checks again every manifest this store waits for ([`Indexer::waiting`]) by applying
    /// the node's event again, from its raw log in `chain_events`. A node whose manifest is
    /// readable now and matches the chain gets what it brings into the graph (a batch's
    /// contributions, an inference batch's answers, an epoch's rewards, an adapter's credit)
    /// at the node's own block, so a reorg still removes it; one that is missing or differs is
    /// flagged; the rest wait for the next recheck. Changed nodes reach the lake mirror by a
    /// replay of their blocks.
    #[tracing::instrument(name = "recheck", skip_all)]
    pub async fn recheck(&self) -> Result<Recheck> {
        use events::datanet_registry::Availability;
        let chain_id = self.chain.chain_id();
        let ids = self.waiting().await?;
        let signing = self.signing();
        let mut r = Recheck::default();
        for node in self.store.nodes(chain_id, &ids).await? {
            r.checked += 1;
            let Some(log) = self.store.event_at(chain_id, &node.pos).await?.and_then(|raw| {
                raw_log(&raw).or_else(|| {
                    tracing::warn!(node = %node.id, "the raw log of a node waiting for its manifest does not decode: not rechecked");
                    None
                })
            }) else {
                r.waiting += 1;
                continue;
            };
            let mut changes = Changes::default();
            events::apply(&log, node.pos, self.lake, signing, &mut changes).await;
            let Some(at) = changes.nodes.iter().position(|n| n.id == node.id) else {
                tracing::warn!(node = %node.id, "applying its event again did not give the node: not rechecked");
                r.waiting += 1;
                continue;
            };
            let amended = changes.nodes.swap_remove(at);
            let p = &amended.props;
            // Still waiting: unreachable, or an epoch's manifest still missing (compared by
            // availability, not by the reason, whose text may carry a request id).
            if p[prop::DA] == Availability::Unreachable.as_str()
                || (p[prop::DA] == node.props[prop::DA]
                    && p[prop::DA] == Availability::Missing.as_str())
            {
                r.waiting += 1;
                continue;
            }
            if p.get(prop::REASON).is_some() || p.get("credit_unavailable").is_some() {
                r.flagged += 1;
            } else {
                r.recovered += 1;
            }
            tracing::info!(node = %node.id, da = p[prop::DA].as_str().unwrap_or("verified"), "manifest rechecked");
            self.store
                .amend(chain_id, STREAM, &amended, &changes.nodes, &changes.edges)
                .await?;
        }
        if r.recovered + r.flagged > 0 {
            self.catch_up_mirror().await?;
        }
        Ok(r)
    }

    /// Indexes, then follows the head until `stop` resolves. Over HTTP it polls every poll
    /// interval; over WebSocket each new head announced by the node (`newHeads`) wakes it at
    /// once, with the poll interval kept as a fallback. Stopping waits for the current step to
    /// end; being killed anywhere loses nothing either, since each step is committed whole and
    /// the mirror catches up on the next start. A step that fails on the node, the store or the
    /// lake (an outage past the retries) is logged and tried again after a pause that doubles
    /// up to a minute: following outlives an outage. A reorg too deep to roll back ends it.
    pub async fn follow(&self, stop: impl std::future::Future<Output = ()>) -> Result<IndexStats> {
        use futures::StreamExt;
        let mut stats = self.start_stats().await?;
        self.catch_up_mirror().await?;
        let mut heads = self.chain.new_heads().await?;
        tokio::pin!(stop);
        // Unreachable manifests are rechecked at the head: 1 s after a step indexed one, then
        // doubling to every 5 minutes while some stay unreachable. With none waiting, the store
        // is asked again only every 5 minutes (another process may have indexed some).
        let (mut recheck_at, mut recheck_every) = (std::time::Instant::now(), RECHECK_FIRST);
        let mut failed = 0u32;
        // A failed step or recheck may have written the store but not the lake mirror: at the
        // head the mirror is brought up to date again, so an idle chain (no new block to
        // step on) does not leave it behind.
        let (mut mirror_due, mut mirror_every) = (None, self.poll);
        loop {
            // A step runs to its end (store, then mirror): stopping happens between steps.
            let seen = stats.unreachable;
            let step = match self.step(&mut stats).await {
                Ok(step) => {
                    failed = 0;
                    step
                }
                Err(e) if e.is_outage() => {
                    failed += 1;
                    mirror_due.get_or_insert_with(std::time::Instant::now);
                    let pause = (self.poll.max(Duration::from_millis(100))
                        * 2u32.pow(failed.min(10)))
                    .min(OUTAGE_PAUSE_MAX);
                    tracing::warn!(error = %e, failed, retry_in = ?pause, "indexing step failed; trying again");
                    tokio::select! {
                        biased;
                        () = &mut stop => return Ok(stats),
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
                Err(e) => return Err(e),
            };
            let now = std::time::Instant::now();
            if stats.unreachable > seen {
                recheck_at = recheck_at.min(now + recheck_every);
            }
            if matches!(step, Step::AtHead) && now >= recheck_at {
                (recheck_every, recheck_at) = match self.recheck().await {
                    Ok(r) if r.waiting > 0 => {
                        let every = (recheck_every * 2).min(RECHECK_MAX);
                        (every, now + every)
                    }
                    Ok(_) => (RECHECK_FIRST, now + RECHECK_MAX),
                    Err(e) if e.is_outage() => {
                        tracing::warn!(error = %e, "recheck failed; trying again later");
                        mirror_due.get_or_insert(now);
                        let every = (recheck_every * 2).min(RECHECK_MAX);
                        (every, now + every)
                    }
                    Err(e) => return Err(e),
                };
            }
            if matches!(step, Step::AtHead) && mirror_due.is_some_and(|at| now >= at) {
                match self.catch_up_mirror().await {
                    Ok(()) => {
                        mirror_due = None;
                        mirror_every = self.poll;
                    }
                    Err(e) if e.is_outage() => {
                        mirror_every = (mirror_every * 2)
                            .max(Duration::from_millis(100))
                            .min(OUTAGE_PAUSE_MAX);
                        mirror_due = Some(now + mirror_every);
                        tracing::warn!(error = %e, retry_in = ?mirror_every, "the lake mirror is behind the store; trying again");
                    }
                    Err(e) => return Err(e),
                }
            }
            let pause = if matches!(step, Step::AtHead) {
                self.poll
            } else {
                Duration::ZERO
            };
            tokio::select! {
                biased;
                () = &mut stop => return Ok(stats),
                head = async { heads.as_mut()?.next().await }, if heads.is_some() && !pause.is_zero() => {
                    if head.is_none() {
                        tracing::warn!("the node ended the newHeads subscription: polling instead");
                        heads = None;
                    }
                }
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn start_stats(&self) -> Result<IndexStats> {
        let from = match self.store.checkpoint(self.chain.chain_id(), STREAM).await? {
            Some(cp) => cp.block_number + 1,
            None => self.chain.deployment().start_block,
        };
        Ok(IndexStats {
            from_block: from,
            to_block: from.saturating_sub(1),
            ..Default::default()
        })
    }

    /// Brings the lake mirror up to the store. The first time in this indexer, each mirrored
    /// table is checked to be the one its progress was recorded for (a table replaced while
    /// the indexer stopped is refilled); later, between steps, the progress is trusted.
    async fn catch_up_mirror(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.mirror {
            let tables = if self.mirror_checked.load(Ordering::Relaxed) {
                mirror::Tables::Trusted
            } else {
                mirror::Tables::Check
            };
            mirror::sync(self.store, self.lake, self.chain.chain_id(), tables).await?;
            self.mirror_checked.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// One step: check the checkpoint is still on the chain (else roll back to the fork
    /// point), then apply the next block range up to the confirmed head.
    async fn step(&self, stats: &mut IndexStats) -> Result<Step> {
        let chain_id = self.chain.chain_id();
        let checkpoint = self.store.checkpoint(chain_id, STREAM).await?;
        if let Some(cp) = &checkpoint {
            let now = self.chain.block_hash_opt(cp.block_number).await?;
            if now.map(|h| h.to_string()).as_deref() != Some(cp.block_hash.as_str()) {
                let removed = self.roll_back(cp).await?;
                stats.reorgs += 1;
                stats.rolled_back += removed;
                self.catch_up_mirror().await?;
                return Ok(Step::RolledBack);
            }
        }
        let from = match &checkpoint {
            Some(cp) => cp.block_number + 1,
            None => self.chain.deployment().start_block,
        };
        let head = self.chain.head().await?;
        let target = head.saturating_sub(self.confirmations);
        if from > target {
            stats.at_head = true;
            if let Some(report) = self.progress {
                report(stats, head);
            }
            return Ok(Step::AtHead);
        }
        stats.at_head = false;
        use std::sync::atomic::Ordering::Relaxed;
        let range = self.current_range.load(Relaxed);
        // Far behind the head (backfill), several ranges are fetched at once and applied in
        // order; near the head, one range at a time with every block's hash checked.
        let far_end = target.saturating_sub(self.window);
        if self.parallel > 1 && from + range - 1 <= far_end {
            // Deeper than the reorg window, but still: the first range must extend the
            // checkpoint.
            if let Some(cp) = &checkpoint {
                match self.chain.block_link(from).await? {
                    Some((_, p)) if p.to_string() == cp.block_hash => {}
                    _ => return Ok(Step::Retry),
                }
            }
            let mut ranges = Vec::new();
            let mut start = from;
            while ranges.len() < self.parallel && start <= far_end {
                let end = (start + range - 1).min(far_end);
                ranges.push((start, end));
                start = end + 1;
            }
            let fetched = futures::future::join_all(ranges.iter().map(|&(s, e)| async move {
                (
                    self.chain.logs(s, e).await,
                    self.chain.block_hash_opt(e).await,
                )
            }))
            .await;
            let mut ready = Vec::with_capacity(ranges.len());
            for ((s, e), (logs, hash)) in ranges.into_iter().zip(fetched) {
                match (logs, hash?) {
                    (Ok(logs), Some(hash)) => ready.push((s, e, logs, hash)),
                    (Ok(_), None) => return Ok(Step::Retry),
                    (Err(err), _) => return self.shrink(range, s, e, err),
                }
            }
            self.current_range
                .store((range * 2).min(self.range), Relaxed);
            for (s, e, logs, hash) in ready {
                if let Step::Retry = self
                    .commit_range(s, e, &logs, vec![(e, hash)], head, stats)
                    .await?
                {
                    return Ok(Step::Retry);
                }
            }
            return Ok(Step::Applied);
        }

        let end = (from + range - 1).min(target);
        // Near the head, remember every block's hash so a fork point can be found; further
        // back, the range's last block is enough. Blocks are read one by one, so a reorg can
        // land between two reads: each block must be the parent's child, and the first must
        // extend the checkpoint (else data of the old fork below would never be rolled back).
        let remember_from = from.max(end.saturating_sub(self.window));
        let mut parent = match &checkpoint {
            Some(cp) if remember_from > from => match self.chain.block_link(from).await? {
                Some((_, p)) if p.to_string() == cp.block_hash => None,
                _ => return Ok(Step::Retry),
            },
            Some(cp) => Some(cp.block_hash.clone()),
            None => None,
        };
        let mut blocks = Vec::new();
        for n in remember_from..=end {
            match self.chain.block_link(n).await? {
                Some((h, p)) if parent.as_ref().is_none_or(|want| *want == p.to_string()) => {
                    blocks.push((n, h));
                    parent = Some(h.to_string());
                }
                // The head moved back under us, or the chain changed between two reads: the
                // next step finds out which (and rolls back if the checkpoint left the chain).
                _ => return Ok(Step::Retry),
            }
        }
        let end_hash = blocks.last().expect("end is remembered").1;
        let logs = match self.chain.logs(from, end).await {
            Ok(logs) => {
                self.current_range
                    .store((range * 2).min(self.range), Relaxed);
                logs
            }
            Err(e) => return self.shrink(range, from, end, e),
        };
        // The logs must come from the chain whose blocks we just read: a reorg in between
        // shows as a changed hash, and the step is retried.
        if self.chain.block_hash_opt(end).await? != Some(end_hash) {
            return Ok(Step::Retry);
        }
        self.commit_range(from, end, &logs, blocks, head, stats)
            .await
    }

    /// After `eth_getLogs` failed with its retries spent: ask for less next time (nodes cap
    /// results and time per request), or give up at one block.
    fn shrink(&self, range: u64, from: u64, to: u64, e: tributary_chain::Error) -> Result<Step> {
        if range <= 1 {
            return Err(e.into());
        }
        tracing::warn!(from, to, error = %e, "eth_getLogs failed; halving the range");
        self.current_range
            .store(range / 2, std::sync::atomic::Ordering::Relaxed);
        Ok(Step::Retry)
    }

    /// Decodes the logs of blocks `from..=end` and commits them with the checkpoint at `end`
    /// (the last of `blocks`, whose hashes are remembered), then mirrors.
    #[tracing::instrument(name = "index_range", skip_all, fields(from, to = end))]
    async fn commit_range(
        &self,
        from: u64,
        end: u64,
        logs: &[Log],
        blocks: Vec<(u64, B256)>,
        head: u64,
        stats: &mut IndexStats,
    ) -> Result<Step> {
        let chain_id = self.chain.chain_id();
        let end_hash = blocks.last().expect("end is remembered").1;
        let known: std::collections::HashMap<u64, B256> = blocks.iter().copied().collect();
        let mut changes = Changes::default();
        let mut raw = Vec::with_capacity(logs.len());
        let signing = self.signing();
        for log in logs {
            let pos = position(log)?;
            if pos.block_number > end
                || known
                    .get(&pos.block_number)
                    .is_some_and(|h| *h != pos.block_hash)
            {
                return Ok(Step::Retry);
            }
            let name = events::apply(log, pos, self.lake, signing, &mut changes).await;
            raw.push(RawEvent {
                address: log.address().to_string(),
                name: name.to_string(),
                data: serde_json::json!({
                    "topics": log.topics(),
                    "data": log.data().data.to_string(),
                }),
                pos,
            });
        }
        let blocks: Vec<(u64, String)> = blocks.iter().map(|(n, h)| (*n, h.to_string())).collect();
        let checkpoint = Checkpoint {
            block_number: end,
            block_hash: end_hash.to_string(),
        };
        self.store
            .apply(
                chain_id,
                STREAM,
                Rows {
                    events: &raw,
                    nodes: &changes.nodes,
                    edges: &changes.edges,
                    blocks_seen: &blocks,
                },
                &checkpoint,
            )
            .await?;
        self.store
            .prune_blocks(chain_id, end.saturating_sub(self.window))
            .await?;
        self.catch_up_mirror().await?;
        stats.events += logs.len() as u64;
        stats.nodes += changes.nodes.len() as u64;
        stats.contributions += changes
            .nodes
            .iter()
            .filter(|n| n.kind == tributary_schemas::lineage::NodeKind::Contribution)
            .count() as u64;
        stats.edges += changes.edges.len() as u64;
        stats.unreachable += changes
            .nodes
            .iter()
            .filter(|n| {
                n.props[prop::DA] == events::datanet_registry::Availability::Unreachable.as_str()
            })
            .count() as u64;
        stats.to_block = end;
        tracing::info!(from, to = end, head, events = logs.len(), "indexed");
        if let Some(report) = self.progress {
            report(stats, head);
        }
        Ok(Step::Applied)
    }

    /// Finds the newest remembered block still on the chain and rolls the graph back to it.
    async fn roll_back(&self, stale: &Checkpoint) -> Result<u64> {
        let chain_id = self.chain.chain_id();
        for (number, hash) in self.store.recent_blocks(chain_id).await? {
            let now = self.chain.block_hash_opt(number).await?;
            if now.map(|h| h.to_string()) == Some(hash.clone()) {
                let fork = Checkpoint {
                    block_number: number,
                    block_hash: hash,
                };
                let removed = self.store.rollback(chain_id, STREAM, &fork).await?;
                tracing::warn!(
                    fork = number,
                    was = stale.block_number,
                    removed,
                    "reorg: rolled back above the fork point"
                );
                return Ok(removed);
            }
        }
        Err(Error::ReorgTooDeep {
            checkpoint: stale.block_number,
            window: self.window,
        })
    }
}

/// The log a `chain_events` row keeps (address, topics and data, position), as read from the
/// node; `None` when the row does not decode.
fn raw_log(raw: &RawEvent) -> Option<Log> {
    let topics: Vec<B256> = serde_json::from_value(raw.data["topics"].clone()).ok()?;
    let data: alloy::primitives::Bytes = raw.data["data"].as_str()?.parse().ok()?;
    Some(Log {
        inner: alloy::primitives::Log::new(raw.address.parse().ok()?, topics, data)?,
        block_hash: Some(raw.pos.block_hash),
        block_number: Some(raw.pos.block_number),
        transaction_hash: Some(raw.pos.tx_hash),
        log_index: Some(raw.pos.log_index),
        ..Default::default()
    })
}

fn position(log: &Log) -> Result<ChainPos> {
    match (
        log.block_number,
        log.block_hash,
        log.transaction_hash,
        log.log_index,
    ) {
        (Some(block_number), Some(block_hash), Some(tx_hash), Some(log_index)) => Ok(ChainPos {
            block_number,
            block_hash,
            tx_hash,
            log_index,
        }),
        _ => Err(Error::Unpositioned(format!("{log:?}"))),
    }
}
