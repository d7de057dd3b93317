//! Prometheus metrics of an indexer: where it is, how far behind the head, what it has done.

use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::IndexStats;

/// The indexer's metrics, registered in a [`Registry`] that a `/metrics` endpoint encodes.
/// Feed it from the indexer's progress report ([`IndexMetrics::observe`]).
#[derive(Debug, Default)]
pub struct IndexMetrics {
    head: Gauge,
    checkpoint: Gauge,
    lag: Gauge,
    events: Counter,
    nodes: Counter,
    edges: Counter,
    ingested: Counter,
    reorgs: Counter,
    rolled_back: Counter,
    last: Mutex<IndexStats>,
}

impl IndexMetrics {
    /// Registers the metrics under `tributary_index_*` (and `tributary_ingest_rows`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry
            .sub_registry_with_prefix("tributary_ingest")
            .register(
                "rows",
                "Contributions ingested into the lake and anchored on chain, as indexed",
                m.ingested.clone(),
            );
        let r = registry.sub_registry_with_prefix("tributary_index");
        r.register("head_block", "Latest block of the chain", m.head.clone());
        r.register(
            "checkpoint_block",
            "Last block applied to the graph",
            m.checkpoint.clone(),
        );
        r.register(
            "lag_blocks",
            "Blocks between the head and the checkpoint",
            m.lag.clone(),
        );
        r.register("events", "Chain logs indexed", m.events.clone());
        r.register("nodes", "Graph nodes written", m.nodes.clone());
        r.register("edges", "Graph edges written", m.edges.clone());
        r.register("reorgs", "Reorgs found and rolled back", m.reorgs.clone());
        r.register(
            "rolled_back_rows",
            "Rows removed by reorg rollbacks",
            m.rolled_back.clone(),
        );
        m
    }

    /// Updates the metrics from the indexer's running totals and the head it saw.
    pub fn observe(&self, stats: &IndexStats, head: u64) {
        let mut last = self.last.lock().expect("metrics lock");
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.head.set(gauge(head));
        self.checkpoint.set(gauge(stats.to_block));
        self.lag.set(gauge(head.saturating_sub(stats.to_block)));
        for (counter, now, before) in [
            (&self.events, stats.events, last.events),
            (&self.nodes, stats.nodes, last.nodes),
            (&self.edges, stats.edges, last.edges),
            (&self.ingested, stats.contributions, last.contributions),
            (&self.reorgs, stats.reorgs, last.reorgs),
            (&self.rolled_back, stats.rolled_back, last.rolled_back),
        ] {
            counter.inc_by(now.saturating_sub(before));
        }
        *last = stats.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_become_counters_and_the_lag_a_gauge() {
        let mut registry = Registry::default();
        let m = IndexMetrics::register(&mut registry);
        let mut stats = IndexStats {
            from_block: 0,
            to_block: 90,
            events: 40,
            contributions: 7,
            ..Default::default()
        };
        m.observe(&stats, 100);
        stats.to_block = 100;
        stats.events = 55;
        stats.reorgs = 1;
        m.observe(&stats, 104);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "tributary_index_head_block 104",
            "tributary_index_checkpoint_block 100",
            "tributary_index_lag_blocks 4",
            "tributary_index_events_total 55",
            "tributary_ingest_rows_total 7",
            "tributary_index_reorgs_total 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
