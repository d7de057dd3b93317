//! The lineage graph in memory: nodes numbered densely, lineage edges in one array, and the
//! upstream and downstream adjacency of every node as compact arrays.
//!
//! Edges are kept in two parts. The frozen part (`edges[..frozen]`) holds edges from blocks
//! old enough that no reorg will remove them; its adjacency is CSR (an offsets array and one
//! array of edge numbers per direction). The overlay (`edges[frozen..]`) holds the recent
//! edges, with adjacency in small per-node lists, so a rollback trims the overlay only. When
//! the overlay has grown large, [`Mem::compact`] moves what has left the reorg window into the
//! frozen part (one pass over the edges). A rollback below the frozen part (an amended old
//! block) filters the frozen part too: slower, still exact.
//!
//! Node numbers never change while the graph lives (a rolled-back node keeps its number and
//! loses its row), so a walk's numbers stay meaningful while its answer is written.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use tributary_schemas::lineage::{EdgeKind, NodeKind};

use crate::graph::{Direction, upstream_end};

/// "This number has no node row" (only edges name it).
pub(crate) const NO_ROW: u64 = u64::MAX;
/// "No edge" where an edge number is optional.
pub(crate) const NO_EDGE: u32 = u32::MAX;
/// "Not a node kind this version knows".
pub(crate) const UNKNOWN_KIND: u8 = u8::MAX;

/// Every edge kind, by its number in [`Link::kind`].
pub(crate) const EDGE_KINDS: [EdgeKind; 16] = [
    EdgeKind::Contributed,
    EdgeKind::In,
    EdgeKind::AnchoredIn,
    EdgeKind::Validates,
    EdgeKind::Revokes,
    EdgeKind::IncludedIn,
    EdgeKind::DrawnFrom,
    EdgeKind::Trained,
    EdgeKind::Produced,
    EdgeKind::DerivedFrom,
    EdgeKind::ServedBy,
    EdgeKind::RecordedIn,
    EdgeKind::AttributedTo,
    EdgeKind::Rewarded,
    EdgeKind::Settles,
    EdgeKind::Claimed,
];

/// Per edge kind code: whether its source is its upstream end (`None`: no lineage), looked
/// up once instead of per walked edge.
static UPSTREAM_AT_SRC: std::sync::LazyLock<[Option<bool>; 16]> =
    std::sync::LazyLock::new(|| EDGE_KINDS.map(|k| upstream_end(k.as_str())));

/// The number of edge kind `k` (its place in [`EDGE_KINDS`]).
pub(crate) fn edge_kind_code(k: EdgeKind) -> u8 {
    EDGE_KINDS.iter().position(|e| *e == k).expect("listed") as u8
}

/// The number of node kind `k` (its place in [`NodeKind::ALL`]).
pub(crate) fn node_kind_code(k: Option<NodeKind>) -> u8 {
    k.and_then(|k| NodeKind::ALL.iter().position(|n| *n == k))
        .map_or(UNKNOWN_KIND, |i| i as u8)
}

/// One lineage edge (`weight` NaN when it has none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Link {
    pub(crate) block: u64,
    pub(crate) weight: f64,
    pub(crate) src: u32,
    pub(crate) dst: u32,
    pub(crate) kind: u8,
}

impl Link {
    /// (upstream end, downstream end).
    fn ends(&self) -> (u32, u32) {
        if UPSTREAM_AT_SRC[self.kind as usize] == Some(true) {
            (self.src, self.dst)
        } else {
            (self.dst, self.src)
        }
    }
}

/// Node ids, numbered in the order first seen: one string of all ids and their ends, and a
/// hash table of numbers.
#[derive(Default)]
pub(crate) struct Interner {
    pub(crate) text: String,
    pub(crate) ends: Vec<u64>,
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Interner {
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn get(&self, n: u32) -> &str {
        id_at(&self.text, &self.ends, n)
    }

    pub(crate) fn find(&self, id: &str) -> Option<u32> {
        let h = self.hasher.hash_one(id);
        self.table.find(h, |&n| self.get(n) == id).copied()
    }

    pub(crate) fn intern(&mut self, id: &str) -> (u32, bool) {
        if let Some(n) = self.find(id) {
            return (n, false);
        }
        let n = self.ends.len() as u32;
        self.text.push_str(id);
        self.ends.push(self.text.len() as u64);
        self.index(n);
        (n, true)
    }

    /// Puts number `n` (already in `text`) into the hash table.
    fn index(&mut self, n: u32) {
        let h = self.hasher.hash_one(self.get(n));
        let Self {
            table,
            hasher,
            text,
            ends,
        } = self;
        table.insert_unique(h, n, |&m| hasher.hash_one(id_at(text, ends, m)));
    }

    /// An interner over ids already laid out (a snapshot file's).
    pub(crate) fn from_parts(text: String, ends: Vec<u64>) -> Self {
        let mut me = Interner {
            text,
            ends,
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        };
        me.table.reserve(me.ends.len(), |_| 0);
        for n in 0..me.ends.len() as u32 {
            me.index(n);
        }
        me
    }

    fn bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * 8 + self.table.capacity() * 5
    }
}

/// Id number `n` of an interner's `text` and `ends`.
fn id_at<'a>(text: &'a str, ends: &[u64], n: u32) -> &'a str {
    let start = match n {
        0 => 0,
        n => ends[n as usize - 1] as usize,
    };
    &text[start..ends[n as usize] as usize]
}

/// Compressed adjacency over the frozen edges: the edge numbers of node `n` are
/// `items[start[n]..start[n + 1]]` (nodes numbered after the build have none).
#[derive(Default)]
struct Csr {
    start: Vec<u32>,
    items: Vec<u32>,
}

impl Csr {
    fn of(&self, n: u32) -> &[u32] {
        let n = n as usize;
        if n + 1 < self.start.len() {
            &self.items[self.start[n] as usize..self.start[n + 1] as usize]
        } else {
            &[]
        }
    }

    /// Adjacency of `nodes` nodes over `edges`, keyed by `key` (stable: in edge order).
    fn build(nodes: usize, edges: &[Link], key: impl Fn(&Link) -> u32) -> Csr {
        let mut start = vec![0u32; nodes + 1];
        for e in edges {
            start[key(e) as usize + 1] += 1;
        }
        for i in 0..nodes {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut items = vec![0u32; edges.len()];
        for (i, e) in edges.iter().enumerate() {
            let k = key(e) as usize;
            items[fill[k] as usize] = i as u32;
            fill[k] += 1;
        }
        Csr { start, items }
    }

    fn bytes(&self) -> usize {
        (self.start.capacity() + self.items.capacity()) * 4
    }
}

/// The in-memory lineage graph of one chain.
#[derive(Default)]
pub(crate) struct Mem {
    pub(crate) ids: Interner,
    /// Per node number: its kind's code.
    pub(crate) kinds: Vec<u8>,
    /// Per node number: the block of its row, or [`NO_ROW`].
    pub(crate) rows: Vec<u64>,
    /// Frozen edges, then the overlay's.
    pub(crate) edges: Vec<Link>,
    pub(crate) frozen: usize,
    /// The newest block of a frozen edge (0 when none).
    pub(crate) frozen_until: u64,
    up: Csr,
    down: Csr,
    over_up: HashMap<u32, Vec<u32>>,
    over_down: HashMap<u32, Vec<u32>>,
}

/// A walk's result: node numbers in walk order with their depth and the edge that first
/// reached them, and every edge walked with the position of the node it reached.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub(crate) order: Vec<u32>,
    pub(crate) depth: Vec<u32>,
    pub(crate) via: Vec<u32>,
    /// Position in `order` of the node it was reached from (0 for the start).
    pub(crate) parent: Vec<u32>,
    /// (edge number, position in `order` of the node it reached).
    pub(crate) edges: Vec<(u32, u32)>,
}

impl Mem {
    /// A graph of these parts, `edges[..frozen]` frozen.
    pub(crate) fn from_parts(
        ids: Interner,
        kinds: Vec<u8>,
        rows: Vec<u64>,
        edges: Vec<Link>,
        frozen: usize,
    ) -> Self {
        let mut me = Mem {
            ids,
            kinds,
            rows,
            edges,
            ..Mem::default()
        };
        me.freeze(frozen);
        me
    }

    pub(crate) fn node(&mut self, id: &str) -> u32 {
        let (n, fresh) = self.ids.intern(id);
        if fresh {
            self.kinds.push(node_kind_code(NodeKind::of_id(id)));
            self.rows.push(NO_ROW);
        }
        n
    }

    /// Adds the row of node `id` made at `block` (a row already there stays).
    pub(crate) fn add_row(&mut self, id: &str, block: u64) {
        let n = self.node(id) as usize;
        if self.rows[n] == NO_ROW {
            self.rows[n] = block;
        }
    }

    /// Adds a lineage edge unless it is there (same source, destination and kind); edges of
    /// kinds that carry no lineage (rewards) are not kept.
    pub(crate) fn add_edge(
        &mut self,
        src: &str,
        dst: &str,
        kind: EdgeKind,
        weight: Option<f64>,
        block: u64,
    ) {
        let code = edge_kind_code(kind);
        if UPSTREAM_AT_SRC[code as usize].is_none() {
            return;
        }
        let link = Link {
            block,
            weight: weight.unwrap_or(f64::NAN),
            src: self.node(src),
            dst: self.node(dst),
            kind: code,
        };
        let (up, down) = link.ends();
        // Look for it at the end with fewer edges.
        let (at, list) = if self.degree(up, Direction::Down) <= self.degree(down, Direction::Up) {
            (up, Direction::Down)
        } else {
            (down, Direction::Up)
        };
        let same = |e: &Link| e.src == link.src && e.dst == link.dst && e.kind == link.kind;
        if self.links(at, list).any(|i| same(&self.edges[i as usize])) {
            return;
        }
        let i = self.edges.len() as u32;
        self.edges.push(link);
        self.over_up.entry(down).or_default().push(i);
        self.over_down.entry(up).or_default().push(i);
    }

    fn degree(&self, n: u32, dir: Direction) -> usize {
        let (csr, over) = self.adjacency(dir);
        csr.of(n).len() + over.get(&n).map_or(0, Vec::len)
    }

    fn adjacency(&self, dir: Direction) -> (&Csr, &HashMap<u32, Vec<u32>>) {
        match dir {
            Direction::Up => (&self.up, &self.over_up),
            Direction::Down => (&self.down, &self.over_down),
        }
    }

    /// Edge numbers at node `n` leading in direction `dir`.
    fn links(&self, n: u32, dir: Direction) -> impl Iterator<Item = u32> + '_ {
        let (csr, over) = self.adjacency(dir);
        csr.of(n)
            .iter()
            .chain(over.get(&n).into_iter().flatten())
            .copied()
    }

    /// The node an edge leads to from its other end, in direction `dir`.
    fn far(&self, e: &Link, dir: Direction) -> u32 {
        let (up, down) = e.ends();
        match dir {
            Direction::Up => up,
            Direction::Down => down,
        }
    }

    /// Removes every row and edge from blocks above `to`.
    pub(crate) fn rollback(&mut self, to: u64) {
        for r in &mut self.rows {
            if *r != NO_ROW && *r > to {
                *r = NO_ROW;
            }
        }
        if to >= self.frozen_until {
            let keep: Vec<Link> = self.edges[self.frozen..]
                .iter()
                .filter(|e| e.block <= to)
                .copied()
                .collect();
            self.edges.truncate(self.frozen);
            self.edges.extend(keep);
            self.index_overlay();
        } else {
            self.edges.retain(|e| e.block <= to);
            self.freeze(self.edges.len());
        }
    }

    /// Moves the overlay's edges from blocks at or below `upto` into the frozen part, when the
    /// overlay holds more than `min` edges and an eighth of the frozen part.
    pub(crate) fn compact(&mut self, upto: u64, min: usize) {
        let over = self.edges.len() - self.frozen;
        if over <= min.max(self.frozen / 8) {
            return;
        }
        let (old, new): (Vec<Link>, Vec<Link>) = self.edges[self.frozen..]
            .iter()
            .partition(|e| e.block <= upto);
        self.edges.truncate(self.frozen);
        self.edges.extend(old);
        let frozen = self.edges.len();
        self.edges.extend(new);
        self.freeze(frozen);
    }

    /// Makes `edges[..frozen]` the frozen part and indexes both parts.
    pub(crate) fn freeze(&mut self, frozen: usize) {
        self.frozen = frozen;
        let part = &self.edges[..frozen];
        self.frozen_until = part.iter().map(|e| e.block).max().unwrap_or(0);
        let n = self.ids.len();
        self.up = Csr::build(n, part, |e| e.ends().1);
        self.down = Csr::build(n, part, |e| e.ends().0);
        self.index_overlay();
    }

    fn index_overlay(&mut self) {
        self.over_up.clear();
        self.over_down.clear();
        for (i, e) in self.edges.iter().enumerate().skip(self.frozen) {
            let (up, down) = e.ends();
            self.over_up.entry(down).or_default().push(i as u32);
            self.over_down.entry(up).or_default().push(i as u32);
        }
    }

    /// Breadth-first walk from `start` in direction `dir`, at most `depth` edges deep: the
    /// store's walk ([`crate::Store::ancestors`]), over numbers. `enough` is asked about each
    /// node as it is found (its number); when it answers true the walk ends there, so a first
    /// page costs the nodes before it, not the whole walk.
    pub(crate) fn walk(
        &self,
        start: u32,
        depth: u32,
        dir: Direction,
        mut enough: impl FnMut(u32) -> bool,
    ) -> Walk {
        let mut w = Walk {
            order: vec![start],
            depth: vec![0],
            via: vec![NO_EDGE],
            parent: vec![0],
            edges: Vec::new(),
        };
        let mut seen: HashMap<u32, u32> = HashMap::default();
        seen.insert(start, 0);
        let (mut level, mut d) = (0..1usize, 0);
        while d < depth && !level.is_empty() {
            let end = w.order.len();
            for p in level.clone() {
                let n = w.order[p];
                for i in self.links(n, dir) {
                    let far = self.far(&self.edges[i as usize], dir);
                    let next = w.order.len() as u32;
                    let at = *seen.entry(far).or_insert(next);
                    w.edges.push((i, at));
                    if at == next {
                        w.order.push(far);
                        w.depth.push(d + 1);
                        w.via.push(i);
                        w.parent.push(p as u32);
                        if enough(far) {
                            return w;
                        }
                    }
                }
            }
            level = end..w.order.len();
            d += 1;
        }
        w
    }

    /// A shortest path from `a` to `b` walking in direction `dir`, as edge numbers from `a`.
    pub(crate) fn path(&self, a: u32, b: u32, max_depth: u32, dir: Direction) -> Option<Vec<u32>> {
        if a == b {
            return Some(vec![]);
        }
        let w = self.walk(a, max_depth, dir, |n| n == b);
        let mut p = w.order.iter().position(|&n| n == b)?;
        let mut path = Vec::new();
        while p != 0 {
            path.push(w.via[p]);
            p = w.parent[p] as usize;
        }
        path.reverse();
        Some(path)
    }

    /// Gives back the room the vectors grew into while the graph was read.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.ids.text.shrink_to_fit();
        self.ids.ends.shrink_to_fit();
        self.kinds.shrink_to_fit();
        self.rows.shrink_to_fit();
        self.edges.shrink_to_fit();
    }

    /// Bytes held (capacities, hash tables estimated by entries).
    pub(crate) fn bytes(&self) -> usize {
        let over: usize = self
            .over_up
            .values()
            .chain(self.over_down.values())
            .map(|v| v.capacity() * 4 + 32)
            .sum();
        self.ids.bytes()
            + self.kinds.capacity()
            + self.rows.capacity() * 8
            + self.edges.capacity() * std::mem::size_of::<Link>()
            + self.up.bytes()
            + self.down.bytes()
            + over
    }
}
