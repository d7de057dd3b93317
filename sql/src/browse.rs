//! Browsing the graph for the query API: the nodes of one kind page by page, the edges at
//! many nodes in one query (so a GraphQL page costs one query per relation, not one per row),
//! and the versions of an adapter's model line.

use sqlx::{AssertSqlSafe, Row};
use tributary_schemas::lineage::{Edge, EdgeKind, Node, NodeKind};

use crate::store::{EDGE_COLUMNS, NODE_COLUMNS, edge, node};
use crate::{Result, Store};

/// Ids per `IN (…)` list.
const CHUNK: usize = 500;

/// A node's place in chain order (block, log index, id): the key of keyset paging.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeKey {
    /// Block of the event that made the node.
    pub block_number: u64,
    /// That event's log index.
    pub log_index: u64,
    /// The node id (`kind:key`).
    pub id: String,
}

impl NodeKey {
    /// The key of `n`.
    pub fn of(n: &Node) -> Self {
        Self {
            block_number: n.pos.block_number,
            log_index: n.pos.log_index,
            id: n.id.to_string(),
        }
    }
}

/// Which end of a list comes first, by chain order (block, log index, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest first.
    #[default]
    OldestFirst,
    /// Newest first.
    NewestFirst,
}

impl Order {
    /// The keyset condition "strictly past the key `(b, l, id)`" in this order, over the
    /// columns of table alias `t` (`"c."`, or `""` for none): a row-value comparison, which
    /// SQLite and PostgreSQL both answer with a seek into an index in that order.
    pub(crate) fn past(self, t: &str, (b, l, id): (&str, &str, &str)) -> String {
        let cmp = match self {
            Order::OldestFirst => ">",
            Order::NewestFirst => "<",
        };
        format!("({t}block_number, {t}log_index, {t}id) {cmp} ({b}, {l}, {id})")
    }

    /// The `ORDER BY` list of this order over the columns of table alias `t`.
    pub(crate) fn by(self, t: &str) -> String {
        let dir = match self {
            Order::OldestFirst => "",
            Order::NewestFirst => " DESC",
        };
        format!("{t}block_number{dir}, {t}log_index{dir}, {t}id{dir}")
    }
}

/// The end of an edge a lookup matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum End {
    /// The source.
    Src,
    /// The destination.
    Dst,
}

impl Store {
    /// Nodes of `kind` in chain order (block, log index, id), oldest or newest first, made
    /// in blocks `from..=to` where given, strictly after `after` (in that order) where given,
    /// at most `limit`.
    pub async fn nodes_of_kind(
        &self,
        chain_id: u64,
        kind: NodeKind,
        (from, to): (Option<u64>, Option<u64>),
        (after, order): (Option<&NodeKey>, Order),
        limit: u32,
    ) -> Result<Vec<Node>> {
        let mut sql = format!(
            "SELECT {NODE_COLUMNS} FROM lineage_nodes WHERE chain_id = $1 AND kind = $2 \
             AND block_number BETWEEN $3 AND $4 "
        );
        if after.is_some() {
            sql.push_str(&format!("AND {} ", order.past("", ("$5", "$6", "$7"))));
        }
        sql.push_str(&format!("ORDER BY {} LIMIT {limit}", order.by("")));
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(chain_id as i64)
            .bind(kind.as_str())
            .bind(from.unwrap_or(0) as i64)
            .bind(to.map_or(i64::MAX, |t| t.min(i64::MAX as u64) as i64));
        if let Some(k) = after {
            q = q
                .bind(k.block_number as i64)
                .bind(k.log_index as i64)
                .bind(k.id.as_str());
        }
        q.fetch_all(&self.pool).await?.iter().map(node).collect()
    }

    /// The edges of `kinds` whose `end` is one of `ids`, in no particular order.
    pub async fn edges_at(
        &self,
        chain_id: u64,
        ids: &[String],
        end: End,
        kinds: &[EdgeKind],
    ) -> Result<Vec<Edge>> {
        let column = match end {
            End::Src => "src",
            End::Dst => "dst",
        };
        let kinds = kinds
            .iter()
            .map(|k| format!("'{}'", k.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let list = (0..chunk.len())
                .map(|i| format!("${}", i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {EDGE_COLUMNS} FROM lineage_edges WHERE chain_id = $1 \
                 AND {column} IN ({list}) AND kind IN ({kinds})"
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(chain_id as i64);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push(edge(&r)?);
            }
        }
        Ok(out)
    }

    /// The adapters of model line `line`: those whose version is `line@…`, in chain order.
    pub async fn adapters_in_line(&self, chain_id: u64, line: &str) -> Result<Vec<Node>> {
        let version = if self.sqlite {
            "json_extract(props, '$.version')"
        } else {
            "(props::json ->> 'version')"
        };
        let prefix = format!("{line}@");
        let sql = format!(
            "SELECT {NODE_COLUMNS} FROM lineage_nodes WHERE chain_id = $1 AND kind = 'adapter' \
             AND substr({version}, 1, $2) = $3 ORDER BY block_number, log_index, id"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(chain_id as i64)
            .bind(prefix.chars().count() as i64)
            .bind(prefix)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(node)
            .collect()
    }

    /// The number of the latest change to the graph of `chain_id` (0 before the first): a
    /// follower reads [`Store::ops_after`] from here to see only what comes next.
    pub async fn last_op(&self, chain_id: u64) -> Result<u64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM index_ops WHERE chain_id = $1")
            .bind(chain_id as i64)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get::<i64, _>(0) as u64)
    }
}
