//! Reorgs on a real anvil (`anvil_reorg`) while the indexer follows the head: afterwards the
//! graph equals a fresh index of the canonical chain, in SQLite, in PostgreSQL and in the Delta
//! mirror; a reorg deeper than the window stops the indexer with a clear error.

use std::collections::BTreeSet;
use std::time::Duration;

use arrow::array::AsArray;
use tributary_indexer::{Error, Indexer};
use tributary_schemas::lineage::NodeKind;
use tributary_schemas::tables::names;
use tributary_sql::Store;

use crate::common::{Env, Rng, env, fresh_index};
use crate::pg::Postgres;

/// Follows the chain with `store` while reorgs of depths 1, 2, 5, 16 and 64 happen at random
/// moments; returns when the indexer has caught up with the final head.
async fn follow_through_reorgs(env: &Env, store: &Store) {
    let rng = Rng::from_clock("reorg schedule");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let indexer = Indexer::new(&env.chain, store, &env.lake)
        .with_range(7)
        .with_poll_interval(Duration::from_millis(20));
    let follow = indexer.follow(async {
        let _ = stop_rx.await;
    });
    let drive = async {
        env.batch().await;
        for depth in [1u64, 2, 5, 16, 64] {
            // Enough new blocks that the reorg replaces indexed history, some with batches.
            for i in 0..depth + 2 {
                if i % 8 == 0 {
                    env.batch().await;
                } else {
                    env.datanet().await;
                }
                if rng.below(4) == 0 {
                    tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
            env.reorg(depth).await;
            env.datanet().await;
        }
        env.batch().await;
        // Wait until the indexer holds the head.
        let chain_id = env.chain.chain_id();
        let started = std::time::Instant::now();
        loop {
            let head = env.chain.head().await.unwrap();
            let hash = env.chain.block_hash(head).await.unwrap().to_string();
            let cp = store.checkpoint(chain_id, "lineage").await.unwrap();
            if cp.is_some_and(|c| c.block_number == head && c.block_hash == hash) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the indexer did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop_tx.send(());
    };
    let (stats, ()) = tokio::join!(follow, drive);
    let stats = stats.unwrap();
    assert!(stats.reorgs >= 1, "{stats:?}");
}

/// The store's graph equals a fresh index of the canonical chain, and so does the mirror.
async fn assert_canonical(env: &Env, store: &Store) {
    let chain_id = env.chain.chain_id();
    let fresh = fresh_index(env).await;
    let (nodes, edges) = store.graph(chain_id).await.unwrap();
    let (want_nodes, want_edges) = fresh.graph(chain_id).await.unwrap();
    assert!(nodes.len() > 10, "a real graph: {} nodes", nodes.len());
    assert_eq!(nodes, want_nodes);
    assert_eq!(edges, want_edges);
    let events = store
        .rows_between(chain_id, 0, u64::MAX >> 1)
        .await
        .unwrap()
        .0;
    let want_events = fresh
        .rows_between(chain_id, 0, u64::MAX >> 1)
        .await
        .unwrap()
        .0;
    assert_eq!(events, want_events);

    // The Delta mirror holds the same rows, once each.
    let mirrored = |table: &'static str, key: &'static [&'static str]| {
        let lake = env.lake.clone();
        async move {
            let mut rows = Vec::new();
            for b in lake.read(table, None).await.unwrap() {
                for i in 0..b.num_rows() {
                    let row: Vec<String> = key
                        .iter()
                        .map(|c| {
                            let col = b.column_by_name(c).unwrap();
                            match col.data_type() {
                                arrow::datatypes::DataType::Int64 => col
                                    .as_primitive::<arrow::datatypes::Int64Type>()
                                    .value(i)
                                    .to_string(),
                                _ => col.as_string::<i32>().value(i).to_string(),
                            }
                        })
                        .collect();
                    rows.push(row.join("|"));
                }
            }
            rows.sort();
            rows
        }
    };
    let nodes_m = mirrored(names::LINEAGE_NODES, &["id", "block_hash", "log_index"]).await;
    let want: Vec<String> = {
        let mut v: Vec<String> = want_nodes
            .iter()
            .map(|n| format!("{}|{}|{}", n.id, n.pos.block_hash, n.pos.log_index))
            .collect();
        v.sort();
        v
    };
    assert_eq!(nodes_m, want);
    let edges_m = mirrored(names::LINEAGE_EDGES, &["src", "dst", "kind", "block_hash"]).await;
    let mut want: Vec<String> = want_edges
        .iter()
        .map(|e| {
            format!(
                "{}|{}|{}|{}",
                e.src,
                e.dst,
                e.kind.as_str(),
                e.pos.block_hash
            )
        })
        .collect();
    want.sort();
    assert_eq!(edges_m, want);
    let events_m = mirrored(names::CHAIN_EVENTS, &["block_hash", "log_index"]).await;
    let mut want: Vec<String> = want_events
        .iter()
        .map(|e| format!("{}|{}", e.pos.block_hash, e.pos.log_index))
        .collect();
    want.sort();
    assert_eq!(events_m, want);
    let unique: BTreeSet<&String> = events_m.iter().collect();
    assert_eq!(unique.len(), events_m.len(), "no event mirrored twice");
    // The typed `datanets` table follows the same reorgs.
    let datanets_m = mirrored(names::DATANETS, &["datanet_id", "block_hash"]).await;
    let mut want: Vec<String> = want_nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Datanet)
        .map(|n| format!("{}|{}", n.id.key(), n.pos.block_hash))
        .collect();
    want.sort();
    assert!(want.len() > 5, "{want:?}");
    assert_eq!(datanets_m, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_while_following_leave_the_canonical_graph_in_sqlite_and_the_mirror() {
    let env = env().await;
    let store = env.store("follow.db").await;
    follow_through_reorgs(&env, &store).await;
    assert_canonical(&env, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_while_following_leave_the_canonical_graph_in_postgres() {
    let pg = Postgres::start();
    let env = env().await;
    let store = Store::connect(&pg.url).await.unwrap();
    follow_through_reorgs(&env, &store).await;
    assert_canonical(&env, &store).await;
}

#[tokio::test]
async fn a_reorg_deeper_than_the_window_is_a_fatal_error_and_changes_nothing() {
    let env = env().await;
    for _ in 0..20 {
        env.datanet().await;
    }
    let store = env.store("w.db").await;
    let indexer = Indexer::new(&env.chain, &store, &env.lake)
        .with_range(5)
        .with_reorg_window(4);
    indexer.run_to_head().await.unwrap();
    let before = store.graph(env.chain.chain_id()).await.unwrap();
    env.reorg(12).await;
    let err = indexer.run_to_head().await.unwrap_err();
    assert!(
        matches!(err, Error::ReorgTooDeep { window: 4, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--reorg-window"), "{err}");
    assert_eq!(store.graph(env.chain.chain_id()).await.unwrap(), before);

    // A deep enough window rolls back and converges.
    let wide = Indexer::new(&env.chain, &store, &env.lake).with_reorg_window(64);
    let err = wide.run_to_head().await.unwrap_err();
    assert!(
        matches!(err, Error::ReorgTooDeep { .. }),
        "the window was already pruned: {err}"
    );
}
