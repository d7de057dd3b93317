use std::collections::BTreeMap;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, AssertSqlSafe, Row};
use tributary_schemas::lineage::{ChainPos, Edge, Node, NodeId, NodeKind, prop};

use crate::browse::Order;
use crate::{Error, Result};

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The index store: lineage graph, raw chain events, checkpoints.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    /// SQLite (else PostgreSQL): the few statements whose SQL differs ask.
    pub(crate) sqlite: bool,
}

/// How far a stream of the indexer got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Last applied block.
    pub block_number: u64,
    /// Its hash (`0x…`).
    pub block_hash: String,
}

/// How far one mirrored Delta table has replayed a chain's ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorProgress {
    /// The last op replayed.
    pub seq: u64,
    /// The Delta table replayed into (its `metaData.id`); `None` when recorded before tables
    /// were told apart.
    pub table_id: Option<String>,
    /// The application transaction the appends carry (op seq as its version); `None`: the
    /// store's original one, `tributary-index-CHAIN-STORE`.
    pub app_id: Option<String>,
}

/// A chain log as stored in `chain_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    /// Contract address (`0x…`).
    pub address: String,
    /// Event name, or `unknown`.
    pub name: String,
    /// Decoded fields as JSON, or the raw topics and data.
    pub data: serde_json::Value,
    /// Where it came from.
    pub pos: ChainPos,
}

/// What one indexer step adds to the store (see [`Store::apply`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rows<'a> {
    /// Raw logs.
    pub events: &'a [RawEvent],
    /// Graph nodes.
    pub nodes: &'a [Node],
    /// Graph edges.
    pub edges: &'a [Edge],
    /// Blocks whose hashes to remember for finding fork points (number, hash).
    pub blocks_seen: &'a [(u64, String)],
}

/// A Datanet as the graph knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatanetRow {
    /// On-chain id.
    pub id: u64,
    /// Properties from `DatanetCreated` (name, domain, owner, …).
    pub props: serde_json::Value,
    /// Where it was created.
    pub pos: ChainPos,
}

/// A Datanet of at most this many contributions is paged from its own `in` edges (read whole
/// and sorted); a larger one by reading contributions in page order and keeping its own,
/// which finds a page of 25 among about 25 / (its share of all contributions) rows. The two
/// cost about the same near 3 x sqrt(all contributions), 3,000 at a million; the limit leans
/// to the first, whose cost does not grow with the graph (5,000 sorted rows: a few ms).
pub(crate) const SMALL_DATANET: u64 = 5_000;

/// A contribution with its contributor and anchoring.
#[derive(Debug, Clone, PartialEq)]
pub struct ContributionRow {
    /// Contribution id (`0x…`).
    pub id: String,
    /// Contributor address (`0x…`).
    pub contributor: String,
    /// Content hash (`0x…`).
    pub content_hash: String,
    /// SPDX license.
    pub license: String,
    /// Batch id (`0x…`).
    pub batch: String,
    /// The anchoring transaction and block.
    pub pos: ChainPos,
}

/// Which contributions [`Store::contributions`] returns; every field narrows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContributionFilter {
    /// Only this one (`0x…` contribution id, any case).
    pub id: Option<String>,
    /// Only this Datanet's.
    pub datanet: Option<u64>,
    /// Only this contributor's (`0x…` address, any case).
    pub contributor: Option<String>,
    /// Only those anchored at or after this block.
    pub from_block: Option<u64>,
    /// Only those anchored at or before this block.
    pub to_block: Option<u64>,
    /// Only those anchored in this batch (`0x…` batch id).
    pub batch: Option<String>,
    /// Only those frozen into this training snapshot (`0x…` snapshot id).
    pub snapshot: Option<String>,
    /// Only revoked ones (`Some(true)`) or only those still counting (`Some(false)`).
    pub revoked: Option<bool>,
}

/// Where a contribution sorts: a page of [`Store::contributions`] continues after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContributionKey {
    /// Its anchoring block.
    pub block_number: u64,
    /// Its log index in that block.
    pub log_index: u64,
    /// Its id (`0x…`).
    pub id: String,
}

impl ContributionRow {
    /// Where this row sorts.
    pub fn key(&self) -> ContributionKey {
        ContributionKey {
            block_number: self.pos.block_number,
            log_index: self.pos.log_index,
            id: self.id.clone(),
        }
    }
}

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`), creating a SQLite file if
    /// missing, and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
        let (url, migrator, max) = if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
            }
            (format!("sqlite://{path}?mode=rwc"), &SQLITE, 4)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_string(), &POSTGRES, 16)
        } else {
            return Err(Error::Config(format!(
                "store URL {url:?} is neither sqlite://PATH nor postgres://USER@HOST/DB"
            )));
        };
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Graph walks touch thousands of rows spread over a large file: a 128 MiB
                        // page cache and a memory map instead of SQLite's 2 MB default.
                        sqlx::query("PRAGMA cache_size = -131072")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA mmap_size = 1073741824")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if sqlite {
            // WAL: readers (the API) never block the indexer's writes.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        migrator.run(&pool).await?;
        Ok(Self { pool, sqlite })
    }

    /// The checkpoint of `stream` on `chain_id`, if any.
    pub async fn checkpoint(&self, chain_id: u64, stream: &str) -> Result<Option<Checkpoint>> {
        let row = sqlx::query(
            "SELECT block_number, block_hash FROM checkpoints WHERE chain_id = $1 AND stream = $2",
        )
        .bind(chain_id as i64)
        .bind(stream)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Checkpoint {
            block_number: r.get::<i64, _>(0) as u64,
            block_hash: r.get(1),
        }))
    }

    /// Ids of the nodes of `kind` whose props hold `"key":"value"`, oldest first.
    pub async fn node_ids_with(
        &self,
        chain_id: u64,
        kind: &str,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>> {
        // serde_json writes props compactly: `"key":"value"` is a substring exactly when set.
        let pair = serde_json::json!({ key: value }).to_string();
        let pattern = format!("%{}%", &pair[1..pair.len() - 1]);
        let rows = sqlx::query(
            "SELECT id FROM lineage_nodes WHERE chain_id = $1 AND kind = $2 AND props LIKE $3 \
             ORDER BY block_number, id",
        )
        .bind(chain_id as i64)
        .bind(kind)
        .bind(pattern)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Amends what was indexed at a block after the fact (a batch whose manifest has become
    /// reachable): replaces the props of node `amended.id` with `amended.props` and adds
    /// `nodes` and `edges` (which carry the same block, so a reorg removes them with it), in
    /// one transaction. The change is numbered as a rollback to the block before, then an apply
    /// of the block to the checkpoint, so the lake mirror replays those blocks and shows it too.
    pub async fn amend(
        &self,
        chain_id: u64,
        stream: &str,
        amended: &Node,
        nodes: &[Node],
        edges: &[Edge],
    ) -> Result<()> {
        let (id, props, block) = (&amended.id, &amended.props, amended.pos.block_number);
        let chain = chain_id as i64;
        let mut tx = self.pool.begin().await?;
        let to: i64 =
            sqlx::query("SELECT block_number FROM checkpoints WHERE chain_id = $1 AND stream = $2")
                .bind(chain)
                .bind(stream)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
        sqlx::query("UPDATE lineage_nodes SET props = $1 WHERE chain_id = $2 AND id = $3")
            .bind(props.to_string())
            .bind(chain)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        insert_graph(&mut tx, chain, nodes, edges).await?;
        let before = block.saturating_sub(1);
        record_op(&mut tx, chain, OpKind::Rollback, before, before).await?;
        record_op(&mut tx, chain, OpKind::Apply, block, (to as u64).max(block)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies graph changes and raw events and moves the checkpoint, in one transaction.
    /// Rows already present (same key) are left as they are, so replaying is harmless. The
    /// hashes of `blocks_seen`, of the events' blocks and of the checkpoint are remembered for
    /// finding fork points, and a step with events is numbered in `index_ops`.
    pub async fn apply(
        &self,
        chain_id: u64,
        stream: &str,
        rows: Rows<'_>,
        checkpoint: &Checkpoint,
    ) -> Result<()> {
        let Rows {
            events,
            nodes,
            edges,
            blocks_seen,
        } = rows;
        let chain = chain_id as i64;
        let mut tx = self.pool.begin().await?;
        let rows: Vec<Vec<Val>> = events
            .iter()
            .map(|e| {
                let mut row = vec![
                    Val::Int(chain),
                    Val::Text(e.address.clone()),
                    Val::Text(e.name.clone()),
                    Val::Text(e.data.to_string()),
                ];
                row.extend(position(&e.pos));
                row
            })
            .collect();
        insert_many(&mut tx, "chain_events", &["address", "name", "data"], rows).await?;
        insert_graph(&mut tx, chain, nodes, edges).await?;
        // The blocks this step saw, for finding a fork point later.
        let mut blocks: BTreeMap<u64, String> = events
            .iter()
            .map(|e| (e.pos.block_number, e.pos.block_hash.to_string()))
            .collect();
        blocks.extend(blocks_seen.iter().cloned());
        blocks.insert(checkpoint.block_number, checkpoint.block_hash.clone());
        for (number, hash) in &blocks {
            sqlx::query(
                "INSERT INTO indexed_blocks (chain_id, block_number, block_hash) VALUES ($1, $2, $3) \
                 ON CONFLICT (chain_id, block_number) DO UPDATE SET block_hash = excluded.block_hash",
            )
            .bind(chain)
            .bind(*number as i64)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        }
        if let (Some(first), Some(last)) = (events.first(), events.last()) {
            let (from, to) = (first.pos.block_number, last.pos.block_number);
            record_op(&mut tx, chain, OpKind::Apply, from.min(to), from.max(to)).await?;
        }
        set_checkpoint(&mut tx, chain, stream, checkpoint).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Remembered blocks of `chain_id` (number, hash), newest first.
    pub async fn recent_blocks(&self, chain_id: u64) -> Result<Vec<(u64, String)>> {
        let rows = sqlx::query(
            "SELECT block_number, block_hash FROM indexed_blocks WHERE chain_id = $1 \
             ORDER BY block_number DESC",
        )
        .bind(chain_id as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<i64, _>(0) as u64, r.get(1)))
            .collect())
    }

    /// Forgets remembered blocks below `number` except the newest one (the reorg window).
    pub async fn prune_blocks(&self, chain_id: u64, below: u64) -> Result<()> {
        sqlx::query(
            "DELETE FROM indexed_blocks WHERE chain_id = $1 AND block_number < $2 \
             AND block_number < (SELECT MAX(block_number) FROM indexed_blocks WHERE chain_id = $1)",
        )
        .bind(chain_id as i64)
        .bind(below as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes everything that came from blocks above `to` (a reorg's fork point) and moves
    /// the checkpoint of `stream` back to it, in one transaction. Returns the rows removed.
    pub async fn rollback(&self, chain_id: u64, stream: &str, to: &Checkpoint) -> Result<u64> {
        let chain = chain_id as i64;
        let mut tx = self.pool.begin().await?;
        let mut removed = 0;
        for table in [
            "chain_events",
            "lineage_nodes",
            "lineage_edges",
            "indexed_blocks",
        ] {
            removed += sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE chain_id = $1 AND block_number > $2"
            )))
            .bind(chain)
            .bind(to.block_number as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        sqlx::query(
            "INSERT INTO indexed_blocks (chain_id, block_number, block_hash) VALUES ($1, $2, $3) \
             ON CONFLICT (chain_id, block_number) DO UPDATE SET block_hash = excluded.block_hash",
        )
        .bind(chain)
        .bind(to.block_number as i64)
        .bind(&to.block_hash)
        .execute(&mut *tx)
        .await?;
        record_op(
            &mut tx,
            chain,
            OpKind::Rollback,
            to.block_number,
            to.block_number,
        )
        .await?;
        set_checkpoint(&mut tx, chain, stream, to).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// The graph changes of `chain_id` numbered after `seq`, oldest first.
    pub async fn ops_after(&self, chain_id: u64, seq: u64) -> Result<Vec<Op>> {
        let rows = sqlx::query(
            "SELECT seq, op, from_block, to_block FROM index_ops WHERE chain_id = $1 AND seq > $2 \
             ORDER BY seq",
        )
        .bind(chain_id as i64)
        .bind(seq as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.get(1);
                Ok(Op {
                    seq: r.get::<i64, _>(0) as u64,
                    kind: match kind.as_str() {
                        "apply" => OpKind::Apply,
                        "rollback" => OpKind::Rollback,
                        other => return Err(Error::Corrupt(format!("index op {other:?}"))),
                    },
                    from_block: r.get::<i64, _>(2) as u64,
                    to_block: r.get::<i64, _>(3) as u64,
                })
            })
            .collect()
    }

    /// Checks that the store answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// This store's identity (random, made on first use, then stable).
    pub async fn store_id(&self) -> Result<String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let fresh = format!("{nanos:x}{:x}", std::process::id());
        sqlx::query(
            "INSERT INTO store_meta (key, value) VALUES ('store_id', $1) ON CONFLICT DO NOTHING",
        )
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'store_id'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// How far the mirrored table `table` has replayed the ops of `chain_id`: `None` when the
    /// mirror of that table has never been started from this store.
    pub async fn mirror_progress(
        &self,
        chain_id: u64,
        table: &str,
    ) -> Result<Option<MirrorProgress>> {
        let row: Option<(i64, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT seq, table_id, app_id FROM mirror_progress \
             WHERE chain_id = $1 AND table_name = $2",
        )
        .bind(chain_id as i64)
        .bind(table)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(seq, table_id, app_id)| MirrorProgress {
            seq: seq as u64,
            table_id,
            app_id,
        }))
    }

    /// Records that the mirrored table `table` has replayed the ops of `chain_id` up to `seq`
    /// (the Delta table it belongs to is kept).
    pub async fn set_mirror_progress(&self, chain_id: u64, table: &str, seq: u64) -> Result<()> {
        sqlx::query(
            "INSERT INTO mirror_progress (chain_id, table_name, seq) VALUES ($1, $2, $3) \
             ON CONFLICT (chain_id, table_name) DO UPDATE SET seq = excluded.seq",
        )
        .bind(chain_id as i64)
        .bind(table)
        .bind(seq as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the mirrored table `table`'s progress whole: started, restarted on a new Delta
    /// table, or adopting the table found for progress recorded before tables were told apart.
    pub async fn set_mirror_table(
        &self,
        chain_id: u64,
        table: &str,
        progress: &MirrorProgress,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO mirror_progress (chain_id, table_name, seq, table_id, app_id) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (chain_id, table_name) \
             DO UPDATE SET seq = excluded.seq, table_id = excluded.table_id, \
             app_id = excluded.app_id",
        )
        .bind(chain_id as i64)
        .bind(table)
        .bind(progress.seq as i64)
        .bind(&progress.table_id)
        .bind(&progress.app_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The raw log of `chain_id` at `at` (its block hash and log index), if stored.
    pub async fn event_at(&self, chain_id: u64, at: &ChainPos) -> Result<Option<RawEvent>> {
        sqlx::query(
            "SELECT address, name, data, block_number, block_hash, tx_hash, log_index FROM chain_events \
             WHERE chain_id = $1 AND block_hash = $2 AND log_index = $3",
        )
        .bind(chain_id as i64)
        .bind(at.block_hash.to_string())
        .bind(at.log_index as i64)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok(RawEvent {
                address: r.get(0),
                name: r.get(1),
                data: json(r.get(2))?,
                pos: pos(&r, 3)?,
            })
        })
        .transpose()
    }

    /// Events, nodes and edges of `chain_id` from blocks `from..=to`, in a stable order.
    pub async fn rows_between(
        &self,
        chain_id: u64,
        from: u64,
        to: u64,
    ) -> Result<(Vec<RawEvent>, Vec<Node>, Vec<Edge>)> {
        let range = |sql: String| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(chain_id as i64)
                .bind(from as i64)
                .bind(to as i64)
        };
        let events = range(
            "SELECT address, name, data, block_number, block_hash, tx_hash, log_index FROM chain_events \
             WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3 ORDER BY block_number, log_index"
                .to_string(),
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(RawEvent {
                address: r.get(0),
                name: r.get(1),
                data: json(r.get(2))?,
                pos: pos(r, 3)?,
            })
        })
        .collect::<Result<_>>()?;
        let nodes = range(format!(
            "SELECT {NODE_COLUMNS} FROM lineage_nodes \
             WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3 ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(node)
        .collect::<Result<_>>()?;
        let edges = range(format!(
            "SELECT {EDGE_COLUMNS} FROM lineage_edges \
             WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3 ORDER BY src, dst, kind"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(edge)
        .collect::<Result<_>>()?;
        Ok((events, nodes, edges))
    }

    /// Datanets on `chain_id`, by id.
    pub async fn datanets(&self, chain_id: u64) -> Result<Vec<DatanetRow>> {
        let rows = sqlx::query(
            "SELECT id, props, block_number, block_hash, tx_hash, log_index FROM lineage_nodes \
             WHERE chain_id = $1 AND kind = 'datanet' ORDER BY block_number, log_index",
        )
        .bind(chain_id as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.get(0);
                let n = NodeKind::Datanet
                    .key_of(&id)
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| Error::Corrupt(format!("datanet node id {id:?}")))?;
                Ok(DatanetRow {
                    id: n,
                    props: json(r.get(1))?,
                    pos: pos(r, 2)?,
                })
            })
            .collect()
    }

    /// The contributions of Datanet `datanet_id`, with contributor and anchoring, oldest
    /// first, at most `limit`.
    pub async fn datanet_contributions(
        &self,
        chain_id: u64,
        datanet_id: u64,
        limit: u32,
    ) -> Result<Vec<ContributionRow>> {
        let filter = ContributionFilter {
            datanet: Some(datanet_id),
            ..ContributionFilter::default()
        };
        self.contributions(chain_id, &filter, (None, Order::OldestFirst), limit)
            .await
    }

    /// Whether Datanet node `datanet` holds at most [`SMALL_DATANET`] contributions (counting
    /// its `in` edges no further than one past that).
    async fn small_datanet(&self, chain_id: u64, datanet: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM lineage_edges WHERE chain_id = $1 AND dst = $2 \
             AND kind = 'in' LIMIT {}) AS e",
            SMALL_DATANET + 1
        )))
        .bind(chain_id as i64)
        .bind(datanet)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64 <= SMALL_DATANET)
    }

    /// Contributions matching `filter`, oldest or newest first (by anchoring block, log
    /// index, id), strictly after `after` (in that order) when given, at most `limit`: one
    /// page of a keyset pagination.
    ///
    /// The query starts from the rows of the most selective filter (SQLite joins in the order
    /// a `CROSS JOIN` names its tables; PostgreSQL plans freely): the id, the contributor's
    /// `contributed` edges, the batch's or snapshot's edges, the revocations, a Datanet of at
    /// most [`SMALL_DATANET`] contributions; otherwise it reads contributions in the page's
    /// order (`lineage_nodes_order`) and stops at the page's end, so a page costs about the
    /// same at any depth and any size of graph.
    pub async fn contributions(
        &self,
        chain_id: u64,
        filter: &ContributionFilter,
        (after, order): (Option<&ContributionKey>, Order),
        limit: u32,
    ) -> Result<Vec<ContributionRow>> {
        let datanet = filter.datanet.map(|d| NodeKind::Datanet.id(d).to_string());
        let driver = if filter.id.is_some() {
            "c"
        } else if filter.contributor.is_some() {
            "w"
        } else if filter.batch.is_some() {
            "b"
        } else if filter.snapshot.is_some() {
            "s"
        } else if filter.revoked == Some(true) {
            "r"
        } else if let Some(d) = &datanet
            && self.small_datanet(chain_id, d).await?
        {
            "i"
        } else {
            "c"
        };
        let mut args: Vec<Val> = vec![Val::Int(chain_id as i64)];
        let mut arg = |v: Val| {
            args.push(v);
            format!("${}", args.len())
        };
        // Each table of the join with its conditions; the driver goes first.
        let mut tables: Vec<(&str, String)> = vec![
            (
                "lineage_nodes c",
                "c.chain_id = $1 AND c.kind = 'contribution'".into(),
            ),
            (
                "lineage_edges w",
                "w.chain_id = $1 AND w.dst = c.id AND w.kind = 'contributed'".into(),
            ),
            (
                "lineage_edges b",
                "b.chain_id = $1 AND b.src = c.id AND b.kind = 'anchored_in'".into(),
            ),
        ];
        if let Some(id) = &filter.id {
            let id = arg(Val::Text(
                NodeKind::Contribution.id(id.to_lowercase()).into(),
            ));
            tables[0].1.push_str(&format!(" AND c.id = {id}"));
        }
        if let Some(who) = &filter.contributor {
            let who = arg(Val::Text(
                NodeKind::Contributor.id(who.to_lowercase()).into(),
            ));
            tables[1].1.push_str(&format!(" AND w.src = {who}"));
        }
        if let Some(b) = &filter.batch {
            let b = arg(Val::Text(NodeKind::Batch.id(b.to_lowercase()).into()));
            tables[2].1.push_str(&format!(" AND b.dst = {b}"));
        }
        if let Some(d) = datanet {
            let d = arg(Val::Text(d));
            tables.push((
                "lineage_edges i",
                format!("i.chain_id = $1 AND i.src = c.id AND i.kind = 'in' AND i.dst = {d}"),
            ));
        }
        if let Some(s) = &filter.snapshot {
            let s = arg(Val::Text(NodeKind::Snapshot.id(s.to_lowercase()).into()));
            tables.push((
                "lineage_edges s",
                format!(
                    "s.chain_id = $1 AND s.src = c.id AND s.kind = 'included_in' AND s.dst = {s}"
                ),
            ));
        }
        match filter.revoked {
            // One revocation per contribution (the chain refuses a second; its id is the
            // contribution's). On SQLite, where text compares byte by byte, every revocation's
            // id lies in the primary-key range `revocation:`..`revocation;`, which it starts
            // from; PostgreSQL's collation may order `;` before `:`, and plans without it.
            Some(true) => tables.push((
                "lineage_edges r",
                format!(
                    "r.chain_id = $1 AND r.dst = c.id AND r.kind = 'revokes'{}",
                    if self.sqlite {
                        " AND r.src >= 'revocation:' AND r.src < 'revocation;'"
                    } else {
                        ""
                    }
                ),
            )),
            Some(false) => tables[0].1.push_str(
                " AND NOT EXISTS (SELECT 1 FROM lineage_edges r WHERE r.chain_id = c.chain_id \
                 AND r.dst = c.id AND r.kind = 'revokes')",
            ),
            None => {}
        }
        if let Some(b) = filter.from_block {
            let b = arg(Val::Int(b as i64));
            tables[0].1.push_str(&format!(" AND c.block_number >= {b}"));
        }
        if let Some(b) = filter.to_block {
            let b = arg(Val::Int(b as i64));
            tables[0].1.push_str(&format!(" AND c.block_number <= {b}"));
        }
        if let Some(k) = after {
            let (b, l, id) = (
                arg(Val::Int(k.block_number as i64)),
                arg(Val::Int(k.log_index as i64)),
                arg(Val::Text(NodeKind::Contribution.id(&k.id).into())),
            );
            let past = order.past("c.", (&b, &l, &id));
            tables[0].1.push_str(&format!(" AND {past}"));
        }
        let first = tables
            .iter()
            .position(|(t, _)| t.ends_with(&format!(" {driver}")))
            .expect("the driver is one of the tables");
        let lead = tables.remove(first);
        tables.insert(0, lead);
        let n = arg(Val::Int(limit as i64));
        let sql = format!(
            "SELECT c.id, c.props, w.src, b.dst, c.block_number, c.block_hash, c.tx_hash, c.log_index \
             FROM {} WHERE {} ORDER BY {} LIMIT {n}",
            tables
                .iter()
                .map(|(t, _)| *t)
                .collect::<Vec<_>>()
                .join(" CROSS JOIN "),
            tables
                .iter()
                .map(|(_, w)| format!("({w})"))
                .collect::<Vec<_>>()
                .join(" AND "),
            order.by("c."),
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for v in args {
            q = match v {
                Val::Int(i) => q.bind(i),
                Val::Text(t) => q.bind(t),
                Val::Real(r) => q.bind(r),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let props = json(r.get(1))?;
                let field = |k: &str| props[k].as_str().unwrap_or_default().to_string();
                Ok(ContributionRow {
                    id: key(r.get(0), NodeKind::Contribution),
                    contributor: key(r.get(2), NodeKind::Contributor),
                    content_hash: field(prop::CONTENT_HASH),
                    license: field("license"),
                    batch: key(r.get(3), NodeKind::Batch),
                    pos: pos(r, 4)?,
                })
            })
            .collect()
    }

    /// The whole graph of `chain_id`, nodes by id and edges by (src, dst, kind): for
    /// comparing two indexes of the same chain.
    pub async fn graph(&self, chain_id: u64) -> Result<(Vec<Node>, Vec<Edge>)> {
        let nodes = sqlx::query(AssertSqlSafe(format!(
            "SELECT {NODE_COLUMNS} FROM lineage_nodes WHERE chain_id = $1 ORDER BY id"
        )))
        .bind(chain_id as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(node)
        .collect::<Result<_>>()?;
        let edges = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EDGE_COLUMNS} FROM lineage_edges WHERE chain_id = $1 ORDER BY src, dst, kind"
        )))
        .bind(chain_id as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(edge)
        .collect::<Result<_>>()?;
        Ok((nodes, edges))
    }

    /// Number of nodes and edges on `chain_id`.
    pub async fn counts(&self, chain_id: u64) -> Result<(u64, u64)> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM lineage_nodes WHERE chain_id = $1")
            .bind(chain_id as i64)
            .fetch_one(&self.pool)
            .await?;
        let e: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM lineage_edges WHERE chain_id = $1")
            .bind(chain_id as i64)
            .fetch_one(&self.pool)
            .await?;
        Ok((n as u64, e as u64))
    }
}

pub(crate) const NODE_COLUMNS: &str =
    "id, kind, props, block_number, block_hash, tx_hash, log_index";
pub(crate) const EDGE_COLUMNS: &str =
    "src, dst, kind, weight, block_number, block_hash, tx_hash, log_index";

/// A node id column's value.
pub(crate) fn node_id(s: String) -> Result<NodeId> {
    s.try_into().map_err(|e| Error::Corrupt(format!("{e}")))
}

pub(crate) fn node(r: &sqlx::any::AnyRow) -> Result<Node> {
    Ok(Node {
        id: node_id(r.get(0))?,
        kind: parse_kind(r.get(1))?,
        props: json(r.get(2))?,
        pos: pos(r, 3)?,
    })
}

pub(crate) fn edge(r: &sqlx::any::AnyRow) -> Result<Edge> {
    Ok(Edge {
        src: node_id(r.get(0))?,
        dst: node_id(r.get(1))?,
        kind: parse_kind(r.get(2))?,
        weight: r.get(3),
        pos: pos(r, 4)?,
    })
}

/// A numbered change to the graph of one chain (see [`Store::ops_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// Its number, from 1, increasing.
    pub seq: u64,
    /// What it did.
    pub kind: OpKind,
    /// Apply: the first block with events; rollback: the fork point.
    pub from_block: u64,
    /// Apply: the last block with events; rollback: the fork point.
    pub to_block: u64,
}

/// The kinds of [`Op`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Rows from blocks `from..=to` were added.
    Apply,
    /// Rows from blocks above `from` were removed.
    Rollback,
}

/// A value in a row of [`insert_many`].
enum Val {
    Int(i64),
    Text(String),
    Real(Option<f64>),
}

/// Inserts rows of `chain_id`, `columns`… and the four chain-position columns into `table`,
/// up to 100 rows per statement, skipping rows whose key is already there.
/// Inserts graph rows; rows already present (same key) are left as they are.
async fn insert_graph(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    chain: i64,
    nodes: &[Node],
    edges: &[Edge],
) -> Result<()> {
    let rows: Vec<Vec<Val>> = nodes
        .iter()
        .map(|n| {
            let mut row = vec![
                Val::Int(chain),
                Val::Text(n.id.to_string()),
                Val::Text(n.kind.as_str().to_string()),
                Val::Text(n.props.to_string()),
            ];
            row.extend(position(&n.pos));
            row
        })
        .collect();
    insert_many(tx, "lineage_nodes", &["id", "kind", "props"], rows).await?;
    let rows: Vec<Vec<Val>> = edges
        .iter()
        .map(|e| {
            let mut row = vec![
                Val::Int(chain),
                Val::Text(e.src.to_string()),
                Val::Text(e.dst.to_string()),
                Val::Text(e.kind.as_str().to_string()),
                Val::Real(e.weight),
            ];
            row.extend(position(&e.pos));
            row
        })
        .collect();
    insert_many(tx, "lineage_edges", &["src", "dst", "kind", "weight"], rows).await
}

/// The position columns of a row.
fn position(p: &ChainPos) -> [Val; 4] {
    [
        Val::Int(p.block_number as i64),
        Val::Text(p.block_hash.to_string()),
        Val::Text(p.tx_hash.to_string()),
        Val::Int(p.log_index as i64),
    ]
}

async fn insert_many(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Val>>,
) -> Result<()> {
    // SQLite looks a bound parameter's name up in a linear list, so binding is quadratic in a
    // statement's parameter count: 100 rows (900 parameters) spent more time binding than
    // inserting; 32 rows keep the statement count low and the binding cheap.
    const ROWS_PER_STATEMENT: usize = 32;
    let columns: Vec<&str> = std::iter::once("chain_id")
        .chain(columns.iter().copied())
        .chain(["block_number", "block_hash", "tx_hash", "log_index"])
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let mut n = 0;
        for (i, row) in chunk.iter().enumerate() {
            debug_assert_eq!(row.len(), columns.len());
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for c in 0..row.len() {
                n += 1;
                sql.push_str(&if c == 0 {
                    format!("${n}")
                } else {
                    format!(", ${n}")
                });
            }
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            for v in row {
                q = match v {
                    Val::Int(i) => q.bind(*i),
                    Val::Text(t) => q.bind(t.clone()),
                    Val::Real(r) => q.bind(*r),
                };
            }
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn record_op(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    chain: i64,
    kind: OpKind,
    from: u64,
    to: u64,
) -> Result<()> {
    let name = match kind {
        OpKind::Apply => "apply",
        OpKind::Rollback => "rollback",
    };
    sqlx::query(
        "INSERT INTO index_ops (chain_id, seq, op, from_block, to_block) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM index_ops WHERE chain_id = $1",
    )
    .bind(chain)
    .bind(name)
    .bind(from as i64)
    .bind(to as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn set_checkpoint(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    chain: i64,
    stream: &str,
    cp: &Checkpoint,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO checkpoints (chain_id, stream, block_number, block_hash) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (chain_id, stream) DO UPDATE SET block_number = excluded.block_number, block_hash = excluded.block_hash",
    )
    .bind(chain)
    .bind(stream)
    .bind(cp.block_number as i64)
    .bind(&cp.block_hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Parses a stored kind name (`contributor`, `anchored_in`, …) back into its enum.
pub(crate) fn parse_kind<T: serde::de::DeserializeOwned>(name: String) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(name.clone()))
        .map_err(|_| Error::Corrupt(format!("unknown kind {name:?}")))
}

/// The key of node id `s` of `kind` (`s` itself when it is not one).
fn key(s: String, kind: NodeKind) -> String {
    kind.key_of(&s).map(str::to_string).unwrap_or(s)
}

fn json(text: String) -> Result<serde_json::Value> {
    serde_json::from_str(&text).map_err(|e| Error::Corrupt(format!("props {text:?}: {e}")))
}

fn pos(r: &sqlx::any::AnyRow, first: usize) -> Result<ChainPos> {
    let hash = |i: usize| -> Result<_> {
        let s: String = r.get(i);
        s.parse().map_err(|_| Error::Corrupt(format!("hash {s:?}")))
    };
    Ok(ChainPos {
        block_number: r.get::<i64, _>(first) as u64,
        block_hash: hash(first + 1)?,
        tx_hash: hash(first + 2)?,
        log_index: r.get::<i64, _>(first + 3) as u64,
    })
}
