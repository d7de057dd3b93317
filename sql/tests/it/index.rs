//! The in-memory lineage index against the store's own walks: random graph changes, reorgs
//! (shallow and below the frozen part), amends of old blocks, and restarts (from the snapshot
//! file, from a stale one, from a damaged one, from none), with every answer compared.

use alloy::primitives::{Address, B256, U256};
use serde_json::json;
use tributary_schemas::lineage::{self as g, ChainPos, Edge, EdgeKind, Node, NodeId, NodeKind};
use tributary_sql::{Checkpoint, Direction, LineageIndex, PageRequest, RawEvent, Rows, Store};

const CHAIN: u64 = 31337;
const WINDOW: u64 = 3;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
    fn pick<T: Clone>(&mut self, v: &[T]) -> Option<T> {
        (!v.is_empty()).then(|| v[self.below(v.len() as u64) as usize].clone())
    }
}

fn pos(block: u64, log: u64) -> ChainPos {
    ChainPos {
        block_number: block,
        block_hash: B256::from(U256::from(block * 1000 + 7)),
        tx_hash: B256::from(U256::from(block * 1000 + log)),
        log_index: log,
    }
}

fn hash(n: u64) -> B256 {
    B256::from(U256::from(n))
}

/// What exists so far, to draw valid edges from.
#[derive(Default)]
struct World {
    contributors: Vec<NodeId>,
    contributions: Vec<NodeId>,
    snapshots: Vec<NodeId>,
    adapters: Vec<NodeId>,
    answers: Vec<NodeId>,
    next: u64,
}

impl World {
    fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// One block's worth of graph changes.
    fn step(&mut self, rng: &mut Rng, block: u64) -> (Vec<Node>, Vec<Edge>) {
        let (mut nodes, mut edges) = (Vec::new(), Vec::new());
        let mut log = 0;
        let mut at = || {
            log += 1;
            pos(block, log)
        };
        let node =
            |nodes: &mut Vec<Node>, id: &NodeId, p| nodes.push(Node::new(id.clone(), json!({}), p));
        for _ in 0..1 + rng.below(3) {
            match rng.below(8) {
                0 | 1 => {
                    let batch = g::batch_id(hash(self.fresh()));
                    let datanet = g::datanet_id(rng.below(3));
                    let p = at();
                    node(&mut nodes, &batch, p);
                    node(&mut nodes, &datanet, p);
                    for _ in 0..1 + rng.below(4) {
                        let who = if self.contributors.len() < 6 || rng.below(3) == 0 {
                            let a = g::contributor_id(Address::with_last_byte(self.fresh() as u8));
                            self.contributors.push(a.clone());
                            a
                        } else {
                            rng.pick(&self.contributors).unwrap()
                        };
                        let c = g::contribution_id(hash(self.fresh()));
                        node(&mut nodes, &who, p);
                        node(&mut nodes, &c, p);
                        edges.push(Edge::new(who, c.clone(), EdgeKind::Contributed, p));
                        edges.push(Edge::new(c.clone(), datanet.clone(), EdgeKind::In, p));
                        edges.push(Edge::new(c.clone(), batch.clone(), EdgeKind::AnchoredIn, p));
                        self.contributions.push(c);
                    }
                }
                2 => {
                    let s = g::snapshot_id(hash(self.fresh()));
                    let p = at();
                    node(&mut nodes, &s, p);
                    edges.push(Edge::new(
                        s.clone(),
                        g::datanet_id(rng.below(3)),
                        EdgeKind::DrawnFrom,
                        p,
                    ));
                    for _ in 0..rng.below(6) {
                        if let Some(c) = rng.pick(&self.contributions) {
                            edges.push(Edge::new(c, s.clone(), EdgeKind::IncludedIn, p));
                        }
                    }
                    self.snapshots.push(s);
                }
                3 => {
                    let Some(s) = rng.pick(&self.snapshots) else {
                        continue;
                    };
                    let id = hash(self.fresh());
                    let (a, run) = (g::adapter_id(id), g::training_run_id(id));
                    let base = g::base_model_id(hash(1));
                    let p = at();
                    node(&mut nodes, &a, p);
                    node(&mut nodes, &run, p);
                    node(&mut nodes, &base, p);
                    edges.push(Edge::new(s, run.clone(), EdgeKind::Trained, p));
                    edges.push(Edge::new(run, a.clone(), EdgeKind::Produced, p));
                    edges.push(Edge::new(a.clone(), base, EdgeKind::DerivedFrom, p));
                    if let Some(parent) = rng.pick(&self.adapters) {
                        edges.push(
                            Edge::new(a.clone(), parent, EdgeKind::DerivedFrom, p).weighted(0.5),
                        );
                    }
                    self.adapters.push(a);
                }
                4 | 5 => {
                    let Some(a) = rng.pick(&self.adapters) else {
                        continue;
                    };
                    let batch = g::inference_id(hash(self.fresh()));
                    let p = at();
                    node(&mut nodes, &batch, p);
                    edges.push(Edge::new(batch.clone(), a.clone(), EdgeKind::ServedBy, p));
                    for _ in 0..1 + rng.below(3) {
                        let ans = g::answer_id(hash(self.fresh()));
                        node(&mut nodes, &ans, p);
                        edges.push(Edge::new(
                            ans.clone(),
                            batch.clone(),
                            EdgeKind::RecordedIn,
                            p,
                        ));
                        edges.push(Edge::new(ans.clone(), a.clone(), EdgeKind::ServedBy, p));
                        for k in 0..rng.below(4) {
                            // Now and then credit to a contribution the graph does not hold.
                            let c = if rng.below(5) == 0 {
                                g::contribution_id(hash(9_000_000 + self.fresh()))
                            } else if let Some(c) = rng.pick(&self.contributions) {
                                c
                            } else {
                                continue;
                            };
                            let w = 1.0 / (k + 2) as f64;
                            edges.push(
                                Edge::new(ans.clone(), c, EdgeKind::AttributedTo, p).weighted(w),
                            );
                        }
                        self.answers.push(ans);
                    }
                }
                6 => {
                    let Some(c) = rng.pick(&self.contributions) else {
                        continue;
                    };
                    let r = g::revocation_id(hash(self.fresh()));
                    let p = at();
                    node(&mut nodes, &r, p);
                    edges.push(Edge::new(r, c, EdgeKind::Revokes, p));
                }
                _ => {
                    // An edge already there, again at a later block: the store keeps the first.
                    if let (Some(c), Some(s)) =
                        (rng.pick(&self.contributions), rng.pick(&self.snapshots))
                    {
                        edges.push(Edge::new(c, s, EdgeKind::IncludedIn, at()));
                    }
                }
            }
        }
        (nodes, edges)
    }

    fn any_node(&self, rng: &mut Rng) -> NodeId {
        let pools = [
            &self.contributors,
            &self.contributions,
            &self.snapshots,
            &self.adapters,
            &self.answers,
        ];
        let pool = pools[rng.below(5) as usize];
        rng.pick(pool).unwrap_or_else(|| g::datanet_id(1))
    }
}

async fn apply(store: &Store, block: u64, nodes: &[Node], edges: &[Edge]) {
    let events = [RawEvent {
        address: "0x01".into(),
        name: "Step".into(),
        data: json!({}),
        pos: pos(block, 0),
    }];
    let rows = Rows {
        events: &events,
        nodes,
        edges,
        blocks_seen: &[],
    };
    store
        .apply(CHAIN, "lineage", rows, &checkpoint(block))
        .await
        .unwrap();
}

fn checkpoint(block: u64) -> Checkpoint {
    Checkpoint {
        block_number: block,
        block_hash: pos(block, 0).block_hash.to_string(),
    }
}

type EdgeKey = (String, String, &'static str, Option<String>, u64);

/// An edge to compare by; weights to 12 digits, since the store's walk reads them through
/// SQLite's JSON text, which keeps 15 (the index keeps the stored double exactly).
fn key(src: &str, dst: &str, kind: EdgeKind, w: Option<f64>, block: u64) -> EdgeKey {
    let w = w.map(|w| format!("{w:.12e}"));
    (src.into(), dst.into(), kind.as_str(), w, block)
}

/// The index's walk (whole, and again in pages of 3) equals the store's; so do contributors
/// and the length of a shortest path.
async fn compare(store: &Store, index: &LineageIndex, rng: &mut Rng, world: &World) {
    for _ in 0..6 {
        let id = world.any_node(rng);
        let depth = 1 + rng.below(6) as u32;
        let up = rng.below(2) == 0;
        let want = if up {
            store.ancestors(CHAIN, &id, depth).await.unwrap()
        } else {
            store.descendants(CHAIN, &id, depth).await.unwrap()
        };
        let dir = if up { Direction::Up } else { Direction::Down };
        let all = index
            .walk(&id, depth, dir, &PageRequest::default())
            .await
            .unwrap();
        let ids = |v: Vec<String>| {
            let mut v = v;
            v.sort();
            v
        };
        assert_eq!(
            ids(all.nodes.iter().map(|n| n.id.to_string()).collect()),
            ids(want.nodes.iter().map(|n| n.id.to_string()).collect()),
            "nodes of {id} at depth {depth}, {dir:?}"
        );
        let mut want_edges: Vec<EdgeKey> = want
            .edges
            .iter()
            .map(|e| key(&e.src, &e.dst, e.kind, e.weight, e.pos.block_number))
            .collect();
        want_edges.sort();
        let keys = |edges: &[tributary_sql::WalkEdge]| {
            let mut v: Vec<EdgeKey> = edges
                .iter()
                .map(|e| key(&e.src, &e.dst, e.kind, e.weight, e.block))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            keys(&all.edges),
            want_edges,
            "edges of {id} at depth {depth}, {dir:?}"
        );
        let sum = all.summary.as_ref().unwrap();
        assert_eq!(sum.total, want.nodes.len());
        assert_eq!(sum.total_edges, want.edges.len());
        for n in &all.nodes {
            let row = want.nodes.iter().find(|w| w.id.as_str() == &*n.id).unwrap();
            assert_eq!(n.block, row.pos.block_number);
        }
        // Pages of three, each continuing after the last: the same nodes in the same order,
        // and every edge once.
        let (mut nodes, mut edges, mut after) = (Vec::new(), Vec::new(), None);
        loop {
            let req = PageRequest {
                first: 3,
                after: after.clone(),
                ..PageRequest::default()
            };
            let page = index.walk(&id, depth, dir, &req).await.unwrap();
            after = page.nodes.last().map(|n| n.id.to_string());
            nodes.extend(page.nodes);
            edges.extend(page.edges);
            if !page.has_next {
                break;
            }
        }
        let strip = |v: &[tributary_sql::WalkNode]| {
            v.iter()
                .map(|n| (n.id.to_string(), n.depth, n.block))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&nodes), strip(&all.nodes), "paged nodes of {id}");
        // The same pages from walks that stop at the page: the same nodes, each with the
        // edge that first reached it.
        let (mut quick, mut after) = (Vec::new(), None);
        loop {
            let req = PageRequest {
                first: 2,
                after: after.clone(),
                whole: false,
                ..PageRequest::default()
            };
            let page = index.walk(&id, depth, dir, &req).await.unwrap();
            assert!(page.summary.is_none());
            after = page.nodes.last().map(|n| n.id.to_string());
            for n in &page.nodes {
                let full = all.nodes.iter().find(|a| a.id == n.id).unwrap();
                let via = |p: &tributary_sql::Page, n: &tributary_sql::WalkNode| {
                    n.via.map(|i| {
                        key(
                            &p.edges[i].src,
                            &p.edges[i].dst,
                            p.edges[i].kind,
                            p.edges[i].weight,
                            p.edges[i].block,
                        )
                    })
                };
                assert_eq!(via(&page, n), via(&all, full), "via of {}", n.id);
            }
            quick.extend(page.nodes);
            if !page.has_next {
                break;
            }
        }
        assert_eq!(strip(&quick), strip(&all.nodes), "quick pages of {id}");
        assert_eq!(keys(&edges), want_edges, "paged edges of {id}");
        // A kinds filter keeps the walk and lists only those kinds.
        let kinds = vec![NodeKind::Contribution, NodeKind::Adapter];
        let req = PageRequest {
            kinds: Some(kinds.clone()),
            ..PageRequest::default()
        };
        let some = index.walk(&id, depth, dir, &req).await.unwrap();
        let expected: Vec<_> = all
            .nodes
            .iter()
            .filter(|n| kinds.contains(&n.kind))
            .cloned()
            .collect();
        assert_eq!(strip(&some.nodes), strip(&expected));
        // Each node's `via` is an edge of its page that reaches it.
        for n in &all.nodes {
            if let Some(i) = n.via {
                let e = &all.edges[i];
                assert!(e.src == n.id || e.dst == n.id, "{e:?} reaches {}", n.id);
            } else {
                assert_eq!(n.id.as_ref(), id.as_str(), "only the start has no `via`");
            }
        }
        // Without edges: the same nodes and numbers, no edges and no `via`, whole or not.
        for whole in [true, false] {
            let req = PageRequest {
                edges: false,
                whole,
                ..PageRequest::default()
            };
            let bare = index.walk(&id, depth, dir, &req).await.unwrap();
            assert_eq!(
                strip(&bare.nodes),
                strip(&all.nodes),
                "edgeless walk of {id}"
            );
            assert!(bare.edges.is_empty() && bare.nodes.iter().all(|n| n.via.is_none()));
            if whole {
                assert_eq!(bare.summary, all.summary, "edgeless summary of {id}");
            }
        }
    }
    let id = world.any_node(rng);
    assert_eq!(
        index.contributors(&id).await.unwrap(),
        store.contributors(CHAIN, &id).await.unwrap(),
        "contributors of {id}"
    );
    let (a, b) = (world.any_node(rng), world.any_node(rng));
    let ours = index.path(&a, &b, 8).await.unwrap();
    let theirs = store.path(CHAIN, &a, &b, 8).await.unwrap();
    assert_eq!(
        ours.as_ref().map(Vec::len),
        theirs.as_ref().map(Vec::len),
        "path {a} -> {b}"
    );
    if let Some(p) = ours {
        // A path is a chain of edges from a to b.
        let mut at = a.to_string();
        for e in &p {
            at = if &*e.src == at.as_str() {
                e.dst.to_string()
            } else {
                e.src.to_string()
            };
        }
        assert_eq!(at, b.to_string());
    }
}

async fn run(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let file = dir.path().join("lineage.idx");
    let open = |with_file: bool| {
        LineageIndex::new(
            store.clone(),
            CHAIN,
            with_file.then(|| file.clone()),
            WINDOW,
        )
        .compacting_above(8)
    };
    let mut index = open(true);
    let mut rng = Rng(seed);
    let mut world = World::default();
    let mut block = 1;
    let mut compacted = false;
    let mut stale: Option<Vec<u8>> = None;
    for step in 0..90 {
        block += 1;
        let (nodes, edges) = world.step(&mut rng, block);
        apply(&store, block, &nodes, &edges).await;
        match rng.below(14) {
            0 | 1 => {
                // A reorg within the window.
                let to = block - 1 - rng.below(WINDOW);
                store
                    .rollback(CHAIN, "lineage", &checkpoint(to))
                    .await
                    .unwrap();
                block = to;
            }
            2 => {
                // An old block amended: numbered as a rollback below the frozen part.
                let at = 2 + rng.below(block / 2);
                let c = g::contribution_id(hash(5_000_000 + step));
                let who = g::contributor_id(Address::with_last_byte(200));
                let p = pos(at, 99);
                let node = Node::new(g::datanet_id(0), json!({"amended": step}), p);
                let nodes = [
                    Node::new(c.clone(), json!({}), p),
                    Node::new(who.clone(), json!({}), p),
                ];
                let edges = [
                    Edge::new(who, c.clone(), EdgeKind::Contributed, p),
                    Edge::new(c.clone(), g::datanet_id(0), EdgeKind::In, p),
                ];
                store
                    .amend(CHAIN, "lineage", &node, &nodes, &edges)
                    .await
                    .unwrap();
                world.contributions.push(c);
            }
            3 => index = open(true), // restart from the file (replaying what came after)
            4 => index = open(false), // restart from the store alone
            5 => {
                // Restart from an old file: it replays every operation since.
                if let Some(old) = &stale {
                    std::fs::write(&file, old).unwrap();
                    index = open(true);
                }
            }
            6 => {
                // A damaged file is refused and rebuilt.
                if let Ok(mut bytes) = std::fs::read(&file) {
                    let i = bytes.len() / 2;
                    bytes[i] ^= 0x40;
                    std::fs::write(&file, bytes).unwrap();
                    index = open(true);
                }
            }
            _ => {}
        }
        compare(&store, &index, &mut rng, &world).await;
        let stats = index.stats().await.unwrap();
        compacted |= stats.frozen_edges > 0 && stats.frozen_edges < stats.edges;
        assert_eq!(stats.seq, store.last_op(CHAIN).await.unwrap());
        if stale.is_none() && step > 20 {
            index.save().await.unwrap();
            stale = std::fs::read(&file).ok();
        }
    }
    assert!(compacted, "the walks ran over a frozen part and an overlay");

    // The file copied next to another store (a data folder put together by hand) with as
    // long a history: it was made from another store, so the index reads that store instead.
    index.save().await.unwrap();
    let other = Store::connect(&format!("sqlite://{}", dir.path().join("o.db").display()))
        .await
        .unwrap();
    let mut elsewhere = World::default();
    let mut block = 1;
    while other.last_op(CHAIN).await.unwrap() < store.last_op(CHAIN).await.unwrap() {
        block += 1;
        let (nodes, edges) = elsewhere.step(&mut rng, block);
        apply(&other, block, &nodes, &edges).await;
    }
    let copied = dir.path().join("copied.idx");
    std::fs::copy(&file, &copied).unwrap();
    let index = LineageIndex::new(other.clone(), CHAIN, Some(copied), WINDOW);
    compare(&other, &index, &mut rng, &elsewhere).await;
}

#[tokio::test]
async fn the_index_answers_as_the_store_does() {
    for seed in [1, 2, 3] {
        run(seed).await;
    }
}
