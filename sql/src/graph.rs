//! Graph queries over the lineage store: ancestry, descendants, paths, and the contributors
//! behind a node.
//!
//! Edges are stored in their downstream direction (DESIGN.md), but which end is "upstream"
//! depends on the kind: `contributor -contributed-> contribution` points downstream, while
//! `contribution -in-> datanet` or `adapter -derived_from-> parent` point at what the source
//! came from. [`upstream_end`] says which; the walks are breadth-first, one indexed query per
//! level, direction and group of node kinds (500 ids a query), whatever the graph's size, and
//! only for the edge kinds that can touch the node's kind.

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy::primitives::B256;
use sqlx::AssertSqlSafe;
use tributary_schemas::lineage::{ChainPos, Edge, EdgeKind, Node, NodeId, NodeKind};

use crate::{Error, Result, Store};

/// Edge kinds whose source is upstream of their destination.
const UPSTREAM_AT_SRC: &[EdgeKind] = &[
    EdgeKind::Contributed,
    EdgeKind::IncludedIn,
    EdgeKind::Trained,
    EdgeKind::Produced,
    EdgeKind::Revokes,
    EdgeKind::Validates,
    EdgeKind::RecordedIn,
];
/// Edge kinds whose destination is upstream of their source.
const UPSTREAM_AT_DST: &[EdgeKind] = &[
    EdgeKind::In,
    EdgeKind::AnchoredIn,
    EdgeKind::DrawnFrom,
    EdgeKind::DerivedFrom,
    EdgeKind::ServedBy,
    EdgeKind::AttributedTo,
];

/// Ids per `IN (…)` list (SQLite allows 32,766 parameters).
const CHUNK: usize = 500;

/// The upstream end of an edge of `kind`: `Some(true)` for the source, `Some(false)` for the
/// destination, `None` for kinds that do not carry lineage (rewards).
pub fn upstream_end(kind: &str) -> Option<bool> {
    if UPSTREAM_AT_SRC.iter().any(|k| k.as_str() == kind) {
        Some(true)
    } else if UPSTREAM_AT_DST.iter().any(|k| k.as_str() == kind) {
        Some(false)
    } else {
        None
    }
}

/// Nodes and the edges between them, as a walk found them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subgraph {
    /// Nodes by id, the start first, then in discovery order.
    pub nodes: Vec<Node>,
    /// Edges walked, in discovery order.
    pub edges: Vec<Edge>,
}

/// A contributor behind a node, with how many of its contributions reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContributorShare {
    /// Contributor node id (`contributor:0x…`).
    pub contributor: String,
    /// Contributions of theirs upstream of the node.
    pub contributions: u64,
    /// `contributions` over all contributions upstream (sums to 1).
    pub share: f64,
}

/// Which way a walk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards what a node came from (ancestry).
    Up,
    /// Towards what a node went into (descendants).
    Down,
}

impl Store {
    /// Everything upstream of `id` within `depth` edges: where it came from.
    pub async fn ancestors(&self, chain_id: u64, id: &str, depth: u32) -> Result<Subgraph> {
        self.walk(chain_id, id, depth, Direction::Up).await
    }

    /// Everything downstream of `id` within `depth` edges: what it went into.
    pub async fn descendants(&self, chain_id: u64, id: &str, depth: u32) -> Result<Subgraph> {
        self.walk(chain_id, id, depth, Direction::Down).await
    }

    /// A shortest lineage path between `a` and `b` (either may be upstream of the other),
    /// at most `max_depth` edges, as the edges from `a` to `b`; `None` when there is none.
    pub async fn path(
        &self,
        chain_id: u64,
        a: &str,
        b: &str,
        max_depth: u32,
    ) -> Result<Option<Vec<Edge>>> {
        for direction in [Direction::Up, Direction::Down] {
            if let Some(p) = self
                .path_one_way(chain_id, a, b, max_depth, direction)
                .await?
            {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// The contributors upstream of `id` (an adapter, an inference, a Datanet…), by the number
    /// of their contributions that reach it, largest first.
    pub async fn contributors(&self, chain_id: u64, id: &str) -> Result<Vec<ContributorShare>> {
        let up = self.ancestors(chain_id, id, 64).await?;
        let contributions: HashSet<&str> = up
            .nodes
            .iter()
            .filter(|n| n.kind.as_str() == "contribution")
            .map(|n| n.id.as_str())
            .collect();
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for e in &up.edges {
            if e.kind.as_str() == "contributed" && contributions.contains(e.dst.as_str()) {
                *counts.entry(e.src.to_string()).or_default() += 1;
            }
        }
        let total: u64 = counts.values().sum();
        let mut out: Vec<ContributorShare> = counts
            .into_iter()
            .map(|(contributor, n)| ContributorShare {
                contributor,
                contributions: n,
                share: n as f64 / total as f64,
            })
            .collect();
        out.sort_by(|x, y| {
            y.contributions
                .cmp(&x.contributions)
                .then(x.contributor.cmp(&y.contributor))
        });
        Ok(out)
    }

    async fn walk(&self, chain_id: u64, id: &str, depth: u32, dir: Direction) -> Result<Subgraph> {
        let mut seen: HashSet<String> = HashSet::from([id.to_string()]);
        let mut order = vec![id.to_string()];
        let mut edges = Vec::new();
        let mut frontier = vec![id.to_string()];
        for _ in 0..depth {
            if frontier.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for (e, other) in self.step(chain_id, &frontier, dir).await? {
                edges.push(e);
                if seen.insert(other.clone()) {
                    order.push(other.clone());
                    next.push(other);
                }
            }
            frontier = next;
        }
        let mut by_id: HashMap<NodeId, Node> = self
            .nodes(chain_id, &order)
            .await?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        Ok(Subgraph {
            nodes: order
                .iter()
                .filter_map(|i| by_id.remove(i.as_str()))
                .collect(),
            edges,
        })
    }

    async fn path_one_way(
        &self,
        chain_id: u64,
        a: &str,
        b: &str,
        max_depth: u32,
        dir: Direction,
    ) -> Result<Option<Vec<Edge>>> {
        let mut came_by: HashMap<String, Edge> = HashMap::new();
        let mut seen: HashSet<String> = HashSet::from([a.to_string()]);
        let mut frontier = vec![a.to_string()];
        for _ in 0..max_depth {
            if frontier.is_empty() || seen.contains(b) {
                break;
            }
            let mut next = Vec::new();
            for (e, other) in self.step(chain_id, &frontier, dir).await? {
                if seen.insert(other.clone()) {
                    came_by.insert(other.clone(), e);
                    next.push(other);
                }
            }
            frontier = next;
        }
        if !seen.contains(b) || a == b {
            return Ok((a == b).then(Vec::new));
        }
        let mut path = Vec::new();
        let mut at = b.to_string();
        while at != a {
            let e = came_by
                .remove(&at)
                .expect("every reached node has its edge");
            at = if e.dst == at {
                e.src.to_string()
            } else {
                e.dst.to_string()
            };
            path.push(e);
        }
        path.reverse();
        Ok(Some(path))
    }

    /// The edges one step from `frontier` in direction `dir`, each with the node it reaches.
    ///
    /// Only the edge kinds that can touch a node of the id's kind are looked up (an edge
    /// kind joins fixed node kinds, [`EdgeKind::ends`]): nothing is upstream of a contributor
    /// or a Datanet, so the largest level of an ancestry costs no query at all.
    async fn step(
        &self,
        chain_id: u64,
        frontier: &[String],
        dir: Direction,
    ) -> Result<Vec<(Edge, String)>> {
        let mut groups: BTreeMap<(bool, Vec<&str>), Vec<String>> = BTreeMap::new();
        for id in frontier {
            let kind = NodeKind::of_id(id);
            for by_dst in [true, false] {
                let kinds = step_kinds(kind, dir, by_dst);
                if !kinds.is_empty() {
                    groups.entry((by_dst, kinds)).or_default().push(id.clone());
                }
            }
        }
        let mut out = Vec::new();
        for ((by_dst, kinds), ids) in groups {
            let column = if by_dst { "dst" } else { "src" };
            let kinds = kinds
                .iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", ");
            for ids in ids.chunks(CHUNK) {
                let rows: Vec<EdgeRow> = self
                    .fetch_json(
                        "src, dst, kind, weight, block_number, block_hash, tx_hash, log_index",
                        &format!(
                            "lineage_edges WHERE chain_id = $1 AND {column} IN ({}) AND kind IN ({kinds})",
                            placeholders(2, ids.len())
                        ),
                        chain_id,
                        ids,
                    )
                    .await?;
                out.extend(rows.into_iter().map(|r| {
                    let e = Edge {
                        src: r.0,
                        dst: r.1,
                        kind: r.2,
                        weight: r.3,
                        pos: ChainPos {
                            block_number: r.4,
                            block_hash: r.5,
                            tx_hash: r.6,
                            log_index: r.7,
                        },
                    };
                    let other = String::from(if by_dst { e.src.clone() } else { e.dst.clone() });
                    (e, other)
                }));
            }
        }
        Ok(out)
    }

    /// The nodes with these ids (missing ones are skipped).
    pub async fn nodes(&self, chain_id: u64, ids: &[String]) -> Result<Vec<Node>> {
        let props = if self.sqlite {
            "json(props)"
        } else {
            "props::json"
        };
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let rows: Vec<NodeRow> = self
                .fetch_json(
                    &format!("id, kind, {props}, block_number, block_hash, tx_hash, log_index"),
                    &format!(
                        "lineage_nodes WHERE chain_id = $1 AND id IN ({})",
                        placeholders(2, chunk.len())
                    ),
                    chain_id,
                    chunk,
                )
                .await?;
            out.extend(rows.into_iter().map(|r| Node {
                id: r.0,
                kind: r.1,
                props: r.2,
                pos: ChainPos {
                    block_number: r.3,
                    block_hash: r.4,
                    tx_hash: r.5,
                    log_index: r.6,
                },
            }));
        }
        Ok(out)
    }

    /// `SELECT columns FROM rest` (with `$1` the chain id and `$2…` the ids) as one JSON array
    /// of arrays built by the database: a walk returns thousands of rows, and one value saves
    /// the driver's per-row work (about 8% of a walk's time; the index seeks are the rest, see
    /// BENCHMARKS.md, ancestry latency).
    async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        columns: &str,
        rest: &str,
        chain_id: u64,
        ids: &[String],
    ) -> Result<Vec<T>> {
        let sql = if self.sqlite {
            format!("SELECT json_group_array(json_array({columns})) FROM {rest}")
        } else {
            format!(
                "SELECT COALESCE(json_agg(json_build_array({columns}))::text, '[]') FROM {rest}"
            )
        };
        let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).bind(chain_id as i64);
        for id in ids {
            q = q.bind(id.as_str());
        }
        let text = q.fetch_one(&self.pool).await?;
        serde_json::from_str(&text).map_err(|e| Error::Corrupt(format!("graph rows: {e}")))
    }
}

/// An edge as [`Store::fetch_json`] returns it.
#[derive(serde::Deserialize)]
struct EdgeRow(NodeId, NodeId, EdgeKind, Option<f64>, u64, B256, B256, u64);

/// A node as [`Store::fetch_json`] returns it.
#[derive(serde::Deserialize)]
struct NodeRow(NodeId, NodeKind, serde_json::Value, u64, B256, B256, u64);

/// The edge kinds a step in direction `dir` follows from a node of `kind`, looked up by the
/// node's id in the edges' `dst` column (`by_dst`) or `src` column. Up from X: edges into X
/// whose source is upstream, and edges out of X whose destination is upstream; down is the
/// mirror image. An unknown kind follows every lineage kind.
fn step_kinds(kind: Option<NodeKind>, dir: Direction, by_dst: bool) -> Vec<&'static str> {
    let candidates = match (dir, by_dst) {
        (Direction::Up, true) | (Direction::Down, false) => UPSTREAM_AT_SRC,
        (Direction::Up, false) | (Direction::Down, true) => UPSTREAM_AT_DST,
    };
    candidates
        .iter()
        .filter(|e| {
            let (src, dst) = e.ends();
            kind.is_none_or(|k| {
                if by_dst {
                    dst.contains(&k)
                } else {
                    src.contains(&k)
                }
            })
        })
        .map(|e| e.as_str())
        .collect()
}

/// `$first, $first+1, …` (`n` of them).
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
