//! Ancestry latency (`make bench`): the ancestry of an inference, depth 6, in a lineage graph of
//! more than 1,000,000 nodes in SQLite, next to a breadth-first search over the same graph held
//! in memory. Issue 4's goal: p95 under 20 ms on SQLite.
//!
//! The graph is shaped like a busy Tributary: 20 Datanets, 20,000 contributors, 900,000
//! contributions in 9,000 batches, 200 snapshots of 500 contributions, 200 adapters in lines of
//! 5 (each derived from the previous one and the base model), 100,000 inferences each served by
//! one adapter and attributed to 5 contributions.
//!
//! `TRIBUTARY_BENCH_SCALE` (default 1.0) scales the counts.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use alloy::primitives::B256;
use serde_json::json;
use tributary_schemas::lineage::{ChainPos, Edge, EdgeKind, Node, NodeId, NodeKind};
use tributary_sql::{Checkpoint, Rows, Store, upstream_end};

const CHAIN: u64 = 31337;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn pos(i: u64) -> ChainPos {
    ChainPos {
        block_number: i / 10,
        block_hash: B256::from(alloy::primitives::U256::from(i / 10 + 1)),
        tx_hash: B256::from(alloy::primitives::U256::from(i + 1)),
        log_index: i % 10,
    }
}

fn generate(scale: f64) -> (Vec<Node>, Vec<Edge>, Vec<String>) {
    let n = |x: f64| ((x * scale) as u64).max(1);
    let (datanets, contributors, contributions) = (20, n(20_000.0), n(900_000.0));
    let (batches, snapshots, per_snapshot) = (n(9_000.0), n(200.0), 500);
    let (adapters, inferences) = (n(200.0), n(100_000.0));
    let mut rng = Rng(7);
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let mut k = 0u64;
    let mut node = |nodes: &mut Vec<Node>, id: NodeId, kind| {
        k += 1;
        nodes.push(Node {
            id,
            kind,
            props: json!({}),
            pos: pos(k),
        });
    };
    let edge = |src: NodeId, dst: NodeId, kind, i: u64| Edge {
        src,
        dst,
        kind,
        weight: None,
        pos: pos(i),
    };
    for d in 0..datanets {
        node(&mut nodes, NodeKind::Datanet.id(d), NodeKind::Datanet);
    }
    for c in 0..contributors {
        node(
            &mut nodes,
            NodeKind::Contributor.id(c),
            NodeKind::Contributor,
        );
    }
    for b in 0..batches {
        node(&mut nodes, NodeKind::Batch.id(b), NodeKind::Batch);
    }
    for c in 0..contributions {
        let id = NodeKind::Contribution.id(c);
        node(&mut nodes, id.clone(), NodeKind::Contribution);
        let who = rng.below(contributors);
        edges.push(edge(
            NodeKind::Contributor.id(who),
            id.clone(),
            EdgeKind::Contributed,
            c,
        ));
        edges.push(edge(
            id.clone(),
            NodeKind::Datanet.id(c % datanets),
            EdgeKind::In,
            c,
        ));
        edges.push(edge(
            id,
            NodeKind::Batch.id(c % batches),
            EdgeKind::AnchoredIn,
            c,
        ));
    }
    node(&mut nodes, NodeKind::BaseModel.id(0), NodeKind::BaseModel);
    for s in 0..snapshots {
        let id = NodeKind::Snapshot.id(s);
        node(&mut nodes, id.clone(), NodeKind::Snapshot);
        edges.push(edge(
            id.clone(),
            NodeKind::Datanet.id(s % datanets),
            EdgeKind::DrawnFrom,
            s,
        ));
        for _ in 0..per_snapshot {
            let c = rng.below(contributions);
            edges.push(edge(
                NodeKind::Contribution.id(c),
                id.clone(),
                EdgeKind::IncludedIn,
                s,
            ));
        }
    }
    for a in 0..adapters {
        let (id, run) = (NodeKind::Adapter.id(a), NodeKind::TrainingRun.id(a));
        node(&mut nodes, id.clone(), NodeKind::Adapter);
        node(&mut nodes, run.clone(), NodeKind::TrainingRun);
        edges.push(edge(
            NodeKind::Snapshot.id(a % snapshots),
            run.clone(),
            EdgeKind::Trained,
            a,
        ));
        edges.push(edge(run, id.clone(), EdgeKind::Produced, a));
        edges.push(edge(
            id.clone(),
            NodeKind::BaseModel.id(0),
            EdgeKind::DerivedFrom,
            a,
        ));
        if a % 5 != 0 {
            edges.push(edge(
                id,
                NodeKind::Adapter.id(a - 1),
                EdgeKind::DerivedFrom,
                a,
            ));
        }
    }
    let mut targets = Vec::new();
    for i in 0..inferences {
        let id = NodeKind::Inference.id(i);
        node(&mut nodes, id.clone(), NodeKind::Inference);
        edges.push(edge(
            id.clone(),
            NodeKind::Adapter.id(rng.below(adapters)),
            EdgeKind::ServedBy,
            i,
        ));
        for _ in 0..5 {
            let c = rng.below(contributions);
            edges.push(edge(
                id.clone(),
                NodeKind::Contribution.id(c),
                EdgeKind::AttributedTo,
                i,
            ));
        }
        targets.push(id.to_string());
    }
    // The same (src, dst, kind) may be drawn twice: keep one.
    let mut seen = HashSet::new();
    edges.retain(|e| seen.insert((e.src.clone(), e.dst.clone(), e.kind.as_str())));
    (nodes, edges, targets)
}

/// Breadth-first ancestry over an in-memory adjacency map, the same rules as the store's.
fn bfs(adj: &HashMap<&str, Vec<&str>>, start: &str, depth: u32) -> usize {
    let mut seen: HashSet<&str> = HashSet::from([start]);
    let mut frontier = vec![start];
    for _ in 0..depth {
        let mut next = Vec::new();
        for id in frontier {
            for up in adj.get(id).into_iter().flatten() {
                if seen.insert(up) {
                    next.push(*up);
                }
            }
        }
        frontier = next;
    }
    seen.len()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Loads the graph through [`Store::apply`], in chunks as an indexer would.
async fn load(store: &Store, nodes: &[Node], edges: &[Edge]) {
    let t = Instant::now();
    let cp = Checkpoint {
        block_number: 1,
        block_hash: B256::ZERO.to_string(),
    };
    for chunk in nodes.chunks(100_000) {
        let rows = Rows {
            nodes: chunk,
            ..Default::default()
        };
        store.apply(CHAIN, "bench", rows, &cp).await.unwrap();
    }
    for chunk in edges.chunks(200_000) {
        let rows = Rows {
            edges: chunk,
            ..Default::default()
        };
        store.apply(CHAIN, "bench", rows, &cp).await.unwrap();
    }
    eprintln!(
        "ancestry: loaded into SQLite in {:.1} s ({:.0} rows/s)",
        t.elapsed().as_secs_f64(),
        (nodes.len() + edges.len()) as f64 / t.elapsed().as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let scale: f64 = std::env::var("TRIBUTARY_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let t = Instant::now();
    let (nodes, edges, targets) = generate(scale);
    eprintln!(
        "ancestry: {} nodes, {} edges generated in {:.1} s",
        nodes.len(),
        edges.len(),
        t.elapsed().as_secs_f64()
    );
    // TRIBUTARY_BENCH_DB keeps the loaded graph in that file for the next run.
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var("TRIBUTARY_BENCH_DB")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("g.db"));
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let expected = (nodes.len() as u64, edges.len() as u64);
    if store.counts(CHAIN).await.unwrap() == expected {
        eprintln!("ancestry: reusing the graph in {}", path.display());
    } else {
        assert_eq!(
            store.counts(CHAIN).await.unwrap(),
            (0, 0),
            "{} holds another graph: remove it",
            path.display()
        );
        load(&store, &nodes, &edges).await;
        assert_eq!(store.counts(CHAIN).await.unwrap(), expected);
    }

    let mut adj: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in &edges {
        match upstream_end(e.kind.as_str()) {
            Some(true) => adj.entry(e.dst.as_str()).or_default().push(e.src.as_str()),
            Some(false) => adj.entry(e.src.as_str()).or_default().push(e.dst.as_str()),
            None => {}
        }
    }

    let mut rng = Rng(11);
    let queries: Vec<&String> = (0..300)
        .map(|_| &targets[rng.below(targets.len() as u64) as usize])
        .collect();
    // Warm the page cache the way a running server would be.
    for q in queries.iter().take(20) {
        store.ancestors(CHAIN, q, 6).await.unwrap();
    }
    let (mut ours, mut reference, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for q in &queries {
        let t = Instant::now();
        let up = store.ancestors(CHAIN, q, 6).await.unwrap();
        ours.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let n = bfs(&adj, q, 6);
        reference.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(up.nodes.len(), n, "the store and the in-memory walk agree");
        sizes.push(n);
    }
    ours.sort_by(f64::total_cmp);
    reference.sort_by(f64::total_cmp);
    sizes.sort();
    println!(
        "| ancestry, depth 6, {} nodes / {} edges | p50 {:.2} ms | p95 {:.2} ms | in-memory BFS p50 {:.3} ms, p95 {:.3} ms | nodes returned: median {} |",
        nodes.len(),
        edges.len(),
        percentile(&ours, 0.5),
        percentile(&ours, 0.95),
        percentile(&reference, 0.5),
        percentile(&reference, 0.95),
        sizes[sizes.len() / 2]
    );
}
