//! Ancestry latency (`make bench`): the ancestry of an answer, depth 6, in a lineage graph of
//! more than 1,000,000 nodes, walked by the store (SQLite) and by the in-memory lineage index
//! (whole, and its first page of 100), next to a bare breadth-first search over the same graph
//! held in a hash map. Also the index's memory, its build from the store and its start-up from
//! its snapshot file. Issue 25's goals: full ancestry p95 <= 5 ms and within 2x of the bare
//! walk, first page p95 <= 2 ms, memory <= 400 MB, start-up from the file <= 10 s.
//!
//! The graph is shaped like a busy Tributary: 20 Datanets, 20,000 contributors, 900,000
//! contributions in 9,000 batches, 200 snapshots of 500 contributions, 200 adapters in lines of
//! 5 (each derived from the previous one and the base model), 100,000 answers in 1,000
//! inference batches, each served by one adapter and credited to 5 contributions.
//!
//! Ids are shaped like real ones (`contribution:0x` and 64 hex digits, `contributor:0x` and 40).
//! `TRIBUTARY_BENCH_SCALE` (default 1.0) scales the counts; `TRIBUTARY_BENCH_SMOKE=1` (what
//! `make test` runs) is a graph of 2,000 nodes and 20 queries, checked the same way.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use alloy::primitives::{Address, B256, U256};
use serde_json::json;
use tributary_schemas::lineage::{ChainPos, Edge, EdgeKind, Node, NodeId, NodeKind};
use tributary_sql::{Checkpoint, Direction, LineageIndex, PageRequest, Rows, Store, upstream_end};

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

/// A node id of `kind` shaped like a real one: a 32-byte hash key (a 20-byte address for
/// contributors, a number for Datanets).
fn nid(kind: NodeKind, n: u64) -> NodeId {
    let word = B256::from(U256::from(n) | (U256::from(kind as u8 + 1) << 200));
    match kind {
        NodeKind::Datanet => kind.id(n),
        NodeKind::Contributor => kind.id(Address::from_word(word)),
        _ => kind.id(word),
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
        node(&mut nodes, nid(NodeKind::Datanet, d), NodeKind::Datanet);
    }
    for c in 0..contributors {
        node(
            &mut nodes,
            nid(NodeKind::Contributor, c),
            NodeKind::Contributor,
        );
    }
    for b in 0..batches {
        node(&mut nodes, nid(NodeKind::Batch, b), NodeKind::Batch);
    }
    for c in 0..contributions {
        let id = nid(NodeKind::Contribution, c);
        node(&mut nodes, id.clone(), NodeKind::Contribution);
        let who = rng.below(contributors);
        edges.push(edge(
            nid(NodeKind::Contributor, who),
            id.clone(),
            EdgeKind::Contributed,
            c,
        ));
        edges.push(edge(
            id.clone(),
            nid(NodeKind::Datanet, c % datanets),
            EdgeKind::In,
            c,
        ));
        edges.push(edge(
            id,
            nid(NodeKind::Batch, c % batches),
            EdgeKind::AnchoredIn,
            c,
        ));
    }
    node(&mut nodes, nid(NodeKind::BaseModel, 0), NodeKind::BaseModel);
    for s in 0..snapshots {
        let id = nid(NodeKind::Snapshot, s);
        node(&mut nodes, id.clone(), NodeKind::Snapshot);
        edges.push(edge(
            id.clone(),
            nid(NodeKind::Datanet, s % datanets),
            EdgeKind::DrawnFrom,
            s,
        ));
        for _ in 0..per_snapshot {
            let c = rng.below(contributions);
            edges.push(edge(
                nid(NodeKind::Contribution, c),
                id.clone(),
                EdgeKind::IncludedIn,
                s,
            ));
        }
    }
    for a in 0..adapters {
        let (id, run) = (nid(NodeKind::Adapter, a), nid(NodeKind::TrainingRun, a));
        node(&mut nodes, id.clone(), NodeKind::Adapter);
        node(&mut nodes, run.clone(), NodeKind::TrainingRun);
        edges.push(edge(
            nid(NodeKind::Snapshot, a % snapshots),
            run.clone(),
            EdgeKind::Trained,
            a,
        ));
        edges.push(edge(run, id.clone(), EdgeKind::Produced, a));
        edges.push(edge(
            id.clone(),
            nid(NodeKind::BaseModel, 0),
            EdgeKind::DerivedFrom,
            a,
        ));
        if a % 5 != 0 {
            edges.push(edge(
                id,
                nid(NodeKind::Adapter, a - 1),
                EdgeKind::DerivedFrom,
                a,
            ));
        }
    }
    // Answers, 100 to an inference batch, each served by an adapter and credited to 5
    // contributions; the batch is served by the adapters of its answers.
    let mut targets = Vec::new();
    for i in 0..inferences {
        let batch = nid(NodeKind::Inference, i / 100);
        if i % 100 == 0 {
            node(&mut nodes, batch.clone(), NodeKind::Inference);
        }
        let id = nid(NodeKind::Answer, i);
        node(&mut nodes, id.clone(), NodeKind::Answer);
        let adapter = nid(NodeKind::Adapter, rng.below(adapters));
        edges.push(edge(batch.clone(), adapter.clone(), EdgeKind::ServedBy, i));
        edges.push(edge(id.clone(), adapter, EdgeKind::ServedBy, i));
        edges.push(edge(id.clone(), batch, EdgeKind::RecordedIn, i));
        for _ in 0..5 {
            let c = rng.below(contributions);
            edges.push(
                edge(
                    id.clone(),
                    nid(NodeKind::Contribution, c),
                    EdgeKind::AttributedTo,
                    i,
                )
                .weighted(0.2),
            );
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
    let smoke = std::env::var("TRIBUTARY_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let scale: f64 = std::env::var("TRIBUTARY_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 0.002 } else { 1.0 });
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
    let same_ids = !store.nodes(CHAIN, &targets[..1]).await.unwrap().is_empty();
    if store.counts(CHAIN).await.unwrap() == expected && same_ids {
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

    // The index: built from the store (then it writes its file), and started again from the file.
    let file = dir.path().join("lineage.idx");
    let t = Instant::now();
    let built = LineageIndex::new(store.clone(), CHAIN, Some(file.clone()), 64);
    built.fresh().await.unwrap();
    let build_s = t.elapsed().as_secs_f64();
    // The file is written in the background after a build: wait for it here.
    built.save().await.unwrap();
    drop(built);
    let rss = rss_mb();
    let t = Instant::now();
    let index = LineageIndex::new(store.clone(), CHAIN, Some(file.clone()), 64);
    index.fresh().await.unwrap();
    let start_s = t.elapsed().as_secs_f64();
    let grew = rss_mb() - rss;
    let stats = index.stats().await.unwrap();
    let file_mb = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;

    let mut rng = Rng(11);
    let queries: Vec<&String> = (0..if smoke { 20 } else { 300 })
        .map(|_| &targets[rng.below(targets.len() as u64) as usize])
        .collect();
    // Warm the page cache the way a running server would be.
    for q in queries.iter().take(20) {
        store.ancestors(CHAIN, q, 6).await.unwrap();
        index
            .walk(q, 6, Direction::Up, &PageRequest::default())
            .await
            .unwrap();
    }
    // A first page as an explorer asks for it: nodes only, the walk stopping after them.
    let first_page = PageRequest {
        first: 100,
        whole: false,
        edges: false,
        ..PageRequest::default()
    };
    let (mut ours, mut reference, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    let (mut whole, mut page) = (Vec::new(), Vec::new());
    for q in &queries {
        let t = Instant::now();
        let up = store.ancestors(CHAIN, q, 6).await.unwrap();
        ours.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let n = bfs(&adj, q, 6);
        reference.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let all = index
            .walk(q, 6, Direction::Up, &PageRequest::default())
            .await
            .unwrap();
        whole.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let first = index.walk(q, 6, Direction::Up, &first_page).await.unwrap();
        page.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(up.nodes.len(), n, "the store and the in-memory walk agree");
        assert_eq!(all.nodes.len(), n, "the index and the in-memory walk agree");
        assert_eq!(
            all.edges.len(),
            up.edges.len(),
            "the index walks the store's edges"
        );
        let ids =
            |v: &[tributary_sql::WalkNode]| v.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(&first.nodes),
            ids(&all.nodes[..100.min(n)]),
            "the first page is the walk's start"
        );
        sizes.push(n);
    }
    for v in [&mut ours, &mut reference, &mut whole, &mut page] {
        v.sort_by(f64::total_cmp);
    }
    sizes.sort();
    let scale_note = format!("{} nodes / {} edges", nodes.len(), edges.len());
    println!(
        "| ancestry, depth 6, {scale_note}, store (SQLite) | p50 {:.2} ms | p95 {:.2} ms | in-memory BFS p50 {:.3} ms, p95 {:.3} ms | nodes returned: median {} |",
        percentile(&ours, 0.5),
        percentile(&ours, 0.95),
        percentile(&reference, 0.5),
        percentile(&reference, 0.95),
        sizes[sizes.len() / 2]
    );
    println!(
        "| ancestry, depth 6, {scale_note}, lineage index, whole walk | p50 {:.3} ms | p95 {:.3} ms | {:.2}x the bare walk's p95 |",
        percentile(&whole, 0.5),
        percentile(&whole, 0.95),
        percentile(&whole, 0.95) / percentile(&reference, 0.95),
    );
    println!(
        "| ancestry, depth 6, {scale_note}, lineage index, first page (100 nodes, the walk stopping there) | p50 {:.3} ms | p95 {:.3} ms |",
        percentile(&page, 0.5),
        percentile(&page, 0.95),
    );
    println!(
        "| lineage index, {scale_note} | {} node numbers, {} edges | {:.0} MB held (the process grew {:.0} MB starting it from the file) | built from the store in {build_s:.1} s | started from its {file_mb:.0} MB file in {start_s:.2} s |",
        stats.nodes,
        stats.edges,
        stats.bytes as f64 / 1e6,
        grew,
    );
}

/// Resident memory of this process, MB (0 where /proc is missing).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| pages * 4096.0 / 1e6)
}
