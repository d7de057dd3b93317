//! The lineage index: the store's graph of one chain held in memory ([`mem`]), kept in step
//! with the store by following its numbered operations (`index_ops`, the feed the Delta mirror
//! and GraphQL subscriptions follow), and answering walks in microseconds instead of one SQL
//! round trip per level.
//!
//! - Every answer is as of one operation, which it names (`seq`). Before answering, a query
//!   reads the operations numbered after the index's (one small query, shared by all the
//!   queries that arrived while it ran), so an answer is never older than the store was when
//!   the query arrived.
//! - Start-up reads a snapshot file when one is configured and valid for this store and chain
//!   (then replays the operations after it), else every node and edge from the store (then
//!   writes the file). The file is rewritten, in the background, after a compaction and every
//!   1,000 operations.
//! - Walks match the store's ([`crate::Store::ancestors`]): the same nodes, and the same edges
//!   walked, for every depth; a property test holds them to it across random operations,
//!   reorgs and restarts.

mod file;
mod mem;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Row};
use tributary_schemas::lineage::{EdgeKind, NodeKind};

use mem::{EDGE_KINDS, Mem, NO_ROW, node_kind_code};

use crate::store::parse_kind;
use crate::{ContributorShare, Direction, Error, OpKind, Result, Store};

/// Overlay edges below which the index never compacts.
const MIN_OVERLAY: usize = 65_536;
/// Operations between snapshot files.
const SAVE_EVERY: u64 = 1_000;

/// The in-memory lineage index of one chain (cheap to clone: clones share it).
#[derive(Clone)]
pub struct LineageIndex {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LineageIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineageIndex")
            .field("chain_id", &self.inner.chain_id)
            .field("file", &self.inner.file)
            .finish()
    }
}

struct Inner {
    store: Store,
    chain_id: u64,
    file: Option<PathBuf>,
    window: u64,
    min_overlay: usize,
    /// A background save is under way.
    saving: std::sync::atomic::AtomicBool,
    /// Held while the file is written.
    writing: tokio::sync::Mutex<()>,
    state: RwLock<Option<State>>,
    /// Held while reading new operations.
    refresh: tokio::sync::Mutex<()>,
    /// Queries that have asked for a fresh index.
    arrivals: AtomicU64,
    /// Every arrival up to this one has been covered by a finished read of the operations.
    covered: AtomicU64,
}

struct State {
    mem: Mem,
    seq: u64,
    head: u64,
    saved_seq: u64,
    store_id: String,
}

/// An edge as an answer shows it (ids shared with the answer's nodes).
#[derive(Debug, Clone, PartialEq)]
pub struct WalkEdge {
    /// Source node (`kind:key`).
    pub src: Arc<str>,
    /// Destination node.
    pub dst: Arc<str>,
    /// Its kind.
    pub kind: EdgeKind,
    /// Attribution share or merge weight, where it carries one.
    pub weight: Option<f64>,
    /// Block of the event that made it.
    pub block: u64,
}

/// A node of a walk.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkNode {
    /// `kind:key`.
    pub id: Arc<str>,
    /// Its kind.
    pub kind: NodeKind,
    /// Edges from the start (0 for the start).
    pub depth: u32,
    /// The edge that first reached it, as its place in the page's `edges` (none for the
    /// start).
    pub via: Option<usize>,
    /// Block of the event that made the node.
    pub block: u64,
}

/// Which part of a walk to return.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    /// Most nodes returned.
    pub first: usize,
    /// Continue after this node (`kind:key`, the previous page's last).
    pub after: Option<String>,
    /// Only nodes of these kinds (the walk still passes through the others).
    pub kinds: Option<Vec<NodeKind>>,
    /// Walk the whole way, for the page's `edges` and the [`WalkSummary`]; otherwise the walk
    /// stops once it has found the page (and one node more).
    pub whole: bool,
    /// How many top contributors the summary names.
    pub top_contributors: usize,
    /// Return the walked edges that reached the page's nodes (each node's `via` names one);
    /// without them `Page::edges` is empty and every `via` is `None`.
    pub edges: bool,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            first: usize::MAX,
            after: None,
            kinds: None,
            whole: true,
            top_contributors: 0,
            edges: true,
        }
    }
}

/// A whole walk in numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkSummary {
    /// Nodes of the walk (of the requested kinds).
    pub total: usize,
    /// Edges of the walk.
    pub total_edges: usize,
    /// Nodes of the walk by kind, every kind present.
    pub by_kind: Vec<(NodeKind, usize)>,
    /// The contributors whose contributions the walk reaches, most contributions first.
    pub contributors: Vec<ContributorShare>,
}

/// One page of a walk and a summary of all of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The store operation this answer reflects.
    pub seq: u64,
    /// The page's nodes, in walk order.
    pub nodes: Vec<WalkNode>,
    /// The walked edges that reached the page's nodes (an edge reaching a node without a
    /// row counts for the node it was walked from), so the pages together list every edge
    /// once. Of a walk that stopped at the page ([`PageRequest::whole`] false): only the
    /// edges that first reached the page's nodes.
    pub edges: Vec<WalkEdge>,
    /// More nodes follow.
    pub has_next: bool,
    /// The whole walk in numbers (of a whole walk only).
    pub summary: Option<WalkSummary>,
}

/// Size of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Node numbers (nodes with rows and ends of edges).
    pub nodes: usize,
    /// Lineage edges.
    pub edges: usize,
    /// Edges in the frozen part.
    pub frozen_edges: usize,
    /// Bytes held.
    pub bytes: usize,
    /// The store operation it reflects.
    pub seq: u64,
}

impl LineageIndex {
    /// An index of `chain_id`'s graph in `store`, loaded on first use. `file` keeps a snapshot
    /// for fast restarts; `window` is the reorg window in blocks (edges newer than the newest
    /// block less this stay in the overlay).
    pub fn new(store: Store, chain_id: u64, file: Option<PathBuf>, window: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                chain_id,
                file,
                window,
                min_overlay: MIN_OVERLAY,
                saving: std::sync::atomic::AtomicBool::new(false),
                writing: tokio::sync::Mutex::new(()),
                state: RwLock::new(None),
                refresh: tokio::sync::Mutex::new(()),
                arrivals: AtomicU64::new(0),
                covered: AtomicU64::new(0),
            }),
        }
    }

    /// Compacts once the overlay holds more than `edges` edges (and an eighth of the frozen
    /// part) rather than 65,536: tests use a few to exercise both parts.
    pub fn compacting_above(mut self, edges: usize) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("set before the index is shared")
            .min_overlay = edges;
        self
    }

    /// The store it follows.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The chain it indexes.
    pub fn chain_id(&self) -> u64 {
        self.inner.chain_id
    }

    /// Brings the index up to the store's latest operation (loading it first if needed) and
    /// returns that operation's number.
    pub async fn fresh(&self) -> Result<u64> {
        let me = &self.inner;
        let ticket = me.arrivals.fetch_add(1, Ordering::SeqCst) + 1;
        let _one = me.refresh.lock().await;
        if me.covered.load(Ordering::SeqCst) >= ticket {
            return Ok(self.read(|s| s.seq));
        }
        let began = me.arrivals.load(Ordering::SeqCst);
        if me.state.read().expect("lock").is_none() {
            let state = self.load().await?;
            *me.state.write().expect("lock") = Some(state);
        }
        let seq = self.catch_up().await?;
        me.covered.store(began, Ordering::SeqCst);
        Ok(seq)
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let guard = self.inner.state.read().expect("lock");
        f(guard.as_ref().expect("loaded by fresh()"))
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.inner.state.write().expect("lock");
        f(guard.as_mut().expect("loaded by fresh()"))
    }

    /// Reads the snapshot file if it is good for this store, else the whole graph.
    async fn load(&self) -> Result<State> {
        let me = &self.inner;
        let store_id = me.store.store_id().await?;
        let last = me.store.last_op(me.chain_id).await?;
        if let Some(path) = me.file.clone() {
            let read = tokio::task::spawn_blocking({
                let path = path.clone();
                move || file::read(&path)
            })
            .await
            .map_err(|e| Error::Config(format!("lineage index file: {e}")))?;
            match read {
                Ok((h, mem))
                    if h.chain_id == me.chain_id && h.store_id == store_id && h.seq <= last =>
                {
                    tracing::info!(file = %path.display(), seq = h.seq, "lineage index read from its file");
                    return Ok(State {
                        mem,
                        seq: h.seq,
                        head: h.head,
                        saved_seq: h.seq,
                        store_id,
                    });
                }
                Ok(_) => tracing::warn!(
                    file = %path.display(),
                    "the lineage index file was made from another store, chain or history: rebuilding it"
                ),
                Err(why) if path.exists() => tracing::warn!(
                    file = %path.display(), %why, "the lineage index file is unusable: rebuilding it"
                ),
                Err(_) => {}
            }
        }
        let started = std::time::Instant::now();
        let mut mem = Mem::default();
        let head = read_rows(&me.store, me.chain_id, None, &mut mem).await?;
        let (mut edges, recent): (Vec<_>, Vec<_>) =
            mem.edges.iter().partition(|e| e.block + me.window <= head);
        let old = edges.len();
        edges.extend(recent);
        mem.edges = edges;
        mem.shrink_to_fit();
        mem.freeze(old);
        tracing::info!(
            nodes = mem.ids.len(),
            edges = mem.edges.len(),
            seconds = started.elapsed().as_secs_f64(),
            "lineage index built from the store"
        );
        let state = State {
            mem,
            seq: last,
            head,
            saved_seq: 0,
            store_id,
        };
        Ok(state)
    }

    /// Replays the operations after the index's; saves the file when due.
    async fn catch_up(&self) -> Result<u64> {
        let me = &self.inner;
        let (seq, saved) = self.read(|s| (s.seq, s.saved_seq));
        let ops = me.store.ops_after(me.chain_id, seq).await?;
        let first_file_due = me.file.is_some() && saved == 0;
        if ops.is_empty() && !first_file_due {
            // Nothing new: no compaction or file is due, and readers are not held up.
            return Ok(seq);
        }
        for op in ops {
            match op.kind {
                OpKind::Apply => {
                    let mut rows = Mem::default();
                    read_rows(
                        &me.store,
                        me.chain_id,
                        Some((op.from_block, op.to_block)),
                        &mut rows,
                    )
                    .await?;
                    self.write(|s| {
                        merge(&mut s.mem, &rows);
                        s.head = s.head.max(op.to_block);
                        s.seq = op.seq;
                    });
                }
                OpKind::Rollback => self.write(|s| {
                    s.mem.rollback(op.from_block);
                    s.head = s.head.min(op.from_block);
                    s.seq = op.seq;
                }),
            }
        }
        let (window, min) = (me.window, me.min_overlay);
        let (seq, compacted) = self.write(|s| {
            let before = s.mem.frozen;
            s.mem.compact(s.head.saturating_sub(window), min);
            (s.seq, s.mem.frozen != before)
        });
        let due = self.read(|s| s.saved_seq == 0 || s.seq >= s.saved_seq + SAVE_EVERY);
        // Written in the background: queries do not wait for the file.
        if me.file.is_some() && (compacted || due) && !me.saving.swap(true, Ordering::SeqCst) {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.save().await {
                    tracing::warn!(error = %e, "the lineage index file was not written");
                }
                this.inner.saving.store(false, Ordering::SeqCst);
            });
        }
        Ok(seq)
    }

    /// Writes the snapshot file now (no-op without one).
    pub async fn save(&self) -> Result<()> {
        let Some(path) = self.inner.file.clone() else {
            return Ok(());
        };
        let _one = self.inner.writing.lock().await;
        let chain_id = self.inner.chain_id;
        let (bytes, seq) = self.read(|s| {
            let h = file::Header {
                chain_id,
                seq: s.seq,
                head: s.head,
                store_id: s.store_id.clone(),
            };
            (file::encode(&h, &s.mem), s.seq)
        });
        tokio::task::spawn_blocking(move || file::write(&path, &bytes))
            .await
            .map_err(|e| Error::Config(format!("lineage index file: {e}")))??;
        self.write(|s| s.saved_seq = s.saved_seq.max(seq).max(1));
        Ok(())
    }

    /// Size of the index (after bringing it up to date).
    pub async fn stats(&self) -> Result<IndexStats> {
        self.fresh().await?;
        Ok(self.read(|s| IndexStats {
            nodes: s.mem.ids.len(),
            edges: s.mem.edges.len(),
            frozen_edges: s.mem.frozen,
            bytes: s.mem.bytes(),
            seq: s.seq,
        }))
    }

    /// A page of the walk from `id` in direction `dir`, at most `depth` edges deep, with a
    /// summary of the whole walk. A start that is not in the graph gives an empty page.
    pub async fn walk(
        &self,
        id: &str,
        depth: u32,
        dir: Direction,
        page: &PageRequest,
    ) -> Result<Page> {
        self.fresh().await?;
        self.read(|s| page_of(s, id, depth, dir, page))
    }

    /// A shortest lineage path between `a` and `b` (either may be upstream of the other), at
    /// most `max_depth` edges, as the edges from `a` to `b`: [`crate::Store::path`] in memory.
    pub async fn path(&self, a: &str, b: &str, max_depth: u32) -> Result<Option<Vec<WalkEdge>>> {
        self.fresh().await?;
        self.read(|s| {
            let m = &s.mem;
            if a == b {
                return Ok(Some(vec![]));
            }
            let (Some(x), Some(y)) = (m.ids.find(a), m.ids.find(b)) else {
                return Ok(None);
            };
            for dir in [Direction::Up, Direction::Down] {
                if let Some(p) = m.path(x, y, max_depth, dir) {
                    let mut ids = Ids::default();
                    return Ok(Some(p.into_iter().map(|e| ids.edge(m, e)).collect()));
                }
            }
            Ok(None)
        })
    }

    /// The contributors upstream of `id`, by the number of their contributions that reach it
    /// (up to 64 edges), largest first: [`crate::Store::contributors`] in memory.
    pub async fn contributors(&self, id: &str) -> Result<Vec<ContributorShare>> {
        let req = PageRequest {
            first: 0,
            top_contributors: usize::MAX,
            ..PageRequest::default()
        };
        let page = self.walk(id, 64, Direction::Up, &req).await?;
        Ok(page.summary.map(|s| s.contributors).unwrap_or_default())
    }
}

/// Adds the rows and edges of `rows` (a small graph read from the store) to `mem`.
fn merge(mem: &mut Mem, rows: &Mem) {
    for n in 0..rows.ids.len() as u32 {
        if rows.rows[n as usize] != NO_ROW {
            mem.add_row(rows.ids.get(n), rows.rows[n as usize]);
        }
    }
    for e in &rows.edges {
        let weight = (!e.weight.is_nan()).then_some(e.weight);
        mem.add_edge(
            rows.ids.get(e.src),
            rows.ids.get(e.dst),
            EDGE_KINDS[e.kind as usize],
            weight,
            e.block,
        );
    }
}

/// Reads the node rows and lineage edges of `chain_id` (of blocks `range` where given) into
/// `mem`, streaming; returns the newest block seen.
async fn read_rows(
    store: &Store,
    chain_id: u64,
    range: Option<(u64, u64)>,
    mem: &mut Mem,
) -> Result<u64> {
    let (lo, hi) = range.unwrap_or((0, i64::MAX as u64));
    let rows = |sql: String| {
        sqlx::query(AssertSqlSafe(sql))
            .bind(chain_id as i64)
            .bind(lo as i64)
            .bind(hi as i64)
    };
    let where_ = "WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3";
    let mut head = 0;
    let nodes = rows(format!(
        "SELECT id, block_number FROM lineage_nodes {where_} ORDER BY block_number, log_index, id"
    ));
    let mut nodes = nodes.fetch(&store.pool);
    while let Some(r) = nodes.try_next().await? {
        let id: String = r.get(0);
        let block = r.get::<i64, _>(1) as u64;
        head = head.max(block);
        mem.add_row(&id, block);
    }
    drop(nodes);
    let edges = rows(format!(
        "SELECT src, dst, kind, weight, block_number FROM lineage_edges {where_} \
         ORDER BY block_number, log_index, src, dst, kind"
    ));
    let mut edges = edges.fetch(&store.pool);
    while let Some(r) = edges.try_next().await? {
        let (src, dst): (String, String) = (r.get(0), r.get(1));
        let kind: EdgeKind = parse_kind(r.get(2))?;
        let block = r.get::<i64, _>(4) as u64;
        head = head.max(block);
        mem.add_edge(&src, &dst, kind, r.get(3), block);
    }
    Ok(head)
}

/// The ids of one answer, each made once and shared by its nodes and edges.
#[derive(Default)]
struct Ids(hashbrown::HashMap<u32, Arc<str>>);

impl Ids {
    fn id(&mut self, m: &Mem, n: u32) -> Arc<str> {
        self.0
            .entry(n)
            .or_insert_with(|| Arc::from(m.ids.get(n)))
            .clone()
    }

    fn edge(&mut self, m: &Mem, i: u32) -> WalkEdge {
        let e = &m.edges[i as usize];
        WalkEdge {
            src: self.id(m, e.src),
            dst: self.id(m, e.dst),
            kind: EDGE_KINDS[e.kind as usize],
            weight: (!e.weight.is_nan()).then_some(e.weight),
            block: e.block,
        }
    }
}

fn page_of(s: &State, id: &str, depth: u32, dir: Direction, req: &PageRequest) -> Result<Page> {
    let m = &s.mem;
    let mut page = Page {
        seq: s.seq,
        nodes: vec![],
        edges: vec![],
        has_next: false,
        summary: None,
    };
    let Some(start) = m.ids.find(id) else {
        if req.after.is_some() {
            return Err(Error::Request(format!(
                "`after`: {id:?} is not in the graph"
            )));
        }
        if req.whole {
            page.summary = Some(WalkSummary {
                total: 0,
                total_edges: 0,
                by_kind: vec![],
                contributors: vec![],
            });
        }
        return Ok(page);
    };
    let wanted: Option<Vec<u8>> = req
        .kinds
        .as_ref()
        .map(|ks| ks.iter().map(|k| node_kind_code(Some(*k))).collect());
    let listed = |n: u32| {
        m.rows[n as usize] != NO_ROW
            && wanted
                .as_ref()
                .is_none_or(|ks| ks.contains(&m.kinds[n as usize]))
    };
    let after = req.after.as_deref().map(|a| m.ids.find(a));
    let w = if req.whole {
        m.walk(start, depth, dir, |_| false)
    } else {
        // Stop at the node after the page: the cursor's node, then `first` + 1 listed ones.
        let cursor = after.map(|a| a.unwrap_or(u32::MAX));
        let mut found = cursor.is_none();
        let mut count = 0usize;
        let mut take = |n: u32| {
            if !listed(n) {
                return false;
            }
            if !found {
                found = Some(n) == cursor;
                return false;
            }
            count += 1;
            count > req.first
        };
        if take(start) {
            mem::Walk {
                order: vec![start],
                depth: vec![0],
                via: vec![mem::NO_EDGE],
                parent: vec![0],
                edges: vec![],
            }
        } else {
            m.walk(start, depth, dir, take)
        }
    };
    let has_row = |p: usize| m.rows[w.order[p] as usize] != NO_ROW;
    let eligible: Vec<usize> = (0..w.order.len()).filter(|&p| listed(w.order[p])).collect();
    let from = match (&req.after, after) {
        (None, _) => 0,
        (Some(after), n) => {
            let at = n
                .flatten()
                .and_then(|n| eligible.iter().position(|&p| w.order[p] == n));
            at.ok_or_else(|| {
                Error::Request(format!(
                    "`after`: {after:?} is not a node of this walk (the graph changed, or the \
                     cursor is from another query): start again without `after`"
                ))
            })? + 1
        }
    };
    let to = from.saturating_add(req.first).min(eligible.len());
    page.has_next = to < eligible.len();
    let on_page: Vec<usize> = eligible[from.min(to)..to].to_vec();
    let mut ids = Ids::default();
    let mut via_at = vec![usize::MAX; on_page.len()];
    if req.whole && req.edges {
        // Each edge counts for the node it reached, or, when that node has no row, for the
        // nearest node with a row on the way back to the start.
        let mut anchor: Vec<u32> = Vec::with_capacity(w.order.len());
        for p in 0..w.order.len() {
            let a = if p == 0 || has_row(p) {
                p as u32
            } else {
                anchor[w.parent[p] as usize]
            };
            anchor.push(a);
        }
        let mut slot = vec![u32::MAX; w.order.len()];
        if from == 0 {
            // The start's own edges (to nodes without rows) come with the first page.
            slot[0] = 0;
        }
        for (i, &p) in on_page.iter().enumerate() {
            slot[p] = i as u32;
        }
        for &(e, at) in &w.edges {
            let s = slot[anchor[at as usize] as usize];
            if s != u32::MAX {
                if w.via[at as usize] == e && anchor[at as usize] == at {
                    via_at[s as usize] = page.edges.len();
                }
                page.edges.push(ids.edge(m, e));
            }
        }
    }
    for (i, &p) in on_page.iter().enumerate() {
        let n = w.order[p];
        let via = if w.via[p] == mem::NO_EDGE || !req.edges {
            None
        } else if req.whole {
            Some(via_at[i])
        } else {
            page.edges.push(ids.edge(m, w.via[p]));
            Some(page.edges.len() - 1)
        };
        page.nodes.push(WalkNode {
            // Shared with the edges' ends where there are edges.
            id: if req.edges {
                ids.id(m, n)
            } else {
                Arc::from(m.ids.get(n))
            },
            kind: NodeKind::ALL
                .get(m.kinds[n as usize] as usize)
                .copied()
                .ok_or_else(|| {
                    Error::Corrupt(format!("node {:?} has no known kind", m.ids.get(n)))
                })?,
            depth: w.depth[p],
            via,
            block: m.rows[n as usize],
        });
    }
    if req.whole {
        page.summary = Some(summary(m, &w, eligible.len(), req.top_contributors));
    }
    Ok(page)
}

/// The numbers of a whole walk.
fn summary(m: &Mem, w: &mem::Walk, total: usize, top: usize) -> WalkSummary {
    let mut by_kind: BTreeMap<u8, usize> = BTreeMap::new();
    for &n in &w.order {
        if m.rows[n as usize] != NO_ROW {
            *by_kind.entry(m.kinds[n as usize]).or_default() += 1;
        }
    }
    let mut contributors = Vec::new();
    if top > 0 {
        let contributed = mem::edge_kind_code(EdgeKind::Contributed);
        let contribution = node_kind_code(Some(NodeKind::Contribution));
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for &(e, _) in &w.edges {
            let e = &m.edges[e as usize];
            if e.kind == contributed
                && m.kinds[e.dst as usize] == contribution
                && m.rows[e.dst as usize] != NO_ROW
            {
                *counts.entry(m.ids.get(e.src)).or_default() += 1;
            }
        }
        let all: u64 = counts.values().sum();
        contributors = counts
            .into_iter()
            .map(|(c, n)| ContributorShare {
                contributor: c.to_string(),
                contributions: n,
                share: n as f64 / all as f64,
            })
            .collect();
        contributors.sort_by(|x: &ContributorShare, y: &ContributorShare| {
            y.contributions
                .cmp(&x.contributions)
                .then(x.contributor.cmp(&y.contributor))
        });
        contributors.truncate(top);
    }
    WalkSummary {
        total,
        total_edges: w.edges.len(),
        by_kind: by_kind
            .into_iter()
            .filter_map(|(k, n)| Some((*NodeKind::ALL.get(k as usize)?, n)))
            .collect(),
        contributors,
    }
}
