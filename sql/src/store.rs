use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};
use tributary_schemas::lineage::{ChainPos, Edge, Node};

use crate::{Error, Result};

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The index store: lineage graph, raw chain events, checkpoints.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

/// How far a stream of the indexer got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Last applied block.
    pub block_number: u64,
    /// Its hash (`0x…`).
    pub block_hash: String,
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
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .connect(&url)
            .await?;
        if url.starts_with("sqlite:") {
            // WAL: readers (the API) never block the indexer's writes.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        migrator.run(&pool).await?;
        Ok(Self { pool })
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

    /// Applies graph changes and raw events and moves the checkpoint, in one transaction.
    /// Rows already present (same key) are left as they are, so replaying is harmless.
    pub async fn apply(
        &self,
        chain_id: u64,
        stream: &str,
        events: &[RawEvent],
        nodes: &[Node],
        edges: &[Edge],
        checkpoint: &Checkpoint,
    ) -> Result<()> {
        let chain = chain_id as i64;
        let mut tx = self.pool.begin().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO chain_events (chain_id, block_hash, log_index, block_number, tx_hash, address, name, data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(chain)
            .bind(e.pos.block_hash.to_string())
            .bind(e.pos.log_index as i64)
            .bind(e.pos.block_number as i64)
            .bind(e.pos.tx_hash.to_string())
            .bind(&e.address)
            .bind(&e.name)
            .bind(e.data.to_string())
            .execute(&mut *tx)
            .await?;
        }
        for n in nodes {
            sqlx::query(
                "INSERT INTO lineage_nodes (chain_id, id, kind, props, block_number, block_hash, tx_hash, log_index) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(chain)
            .bind(&n.id)
            .bind(n.kind.as_str())
            .bind(n.props.to_string())
            .bind(n.pos.block_number as i64)
            .bind(n.pos.block_hash.to_string())
            .bind(n.pos.tx_hash.to_string())
            .bind(n.pos.log_index as i64)
            .execute(&mut *tx)
            .await?;
        }
        for e in edges {
            sqlx::query(
                "INSERT INTO lineage_edges (chain_id, src, dst, kind, weight, block_number, block_hash, tx_hash, log_index) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(chain)
            .bind(&e.src)
            .bind(&e.dst)
            .bind(e.kind.as_str())
            .bind(e.weight)
            .bind(e.pos.block_number as i64)
            .bind(e.pos.block_hash.to_string())
            .bind(e.pos.tx_hash.to_string())
            .bind(e.pos.log_index as i64)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO checkpoints (chain_id, stream, block_number, block_hash) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (chain_id, stream) DO UPDATE SET block_number = excluded.block_number, block_hash = excluded.block_hash",
        )
        .bind(chain)
        .bind(stream)
        .bind(checkpoint.block_number as i64)
        .bind(&checkpoint.block_hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
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
                let n = id
                    .strip_prefix("datanet:")
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
        let rows = sqlx::query(
            "SELECT c.id, c.props, w.src, b.dst, c.block_number, c.block_hash, c.tx_hash, c.log_index \
             FROM lineage_edges i \
             JOIN lineage_nodes c ON c.chain_id = i.chain_id AND c.id = i.src \
             JOIN lineage_edges w ON w.chain_id = i.chain_id AND w.dst = c.id AND w.kind = 'contributed' \
             JOIN lineage_edges b ON b.chain_id = i.chain_id AND b.src = c.id AND b.kind = 'anchored_in' \
             WHERE i.chain_id = $1 AND i.dst = $2 AND i.kind = 'in' \
             ORDER BY c.block_number, c.log_index, c.id LIMIT $3",
        )
        .bind(chain_id as i64)
        .bind(tributary_schemas::lineage::datanet_id(datanet_id))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let props = json(r.get(1))?;
                let field = |k: &str| props[k].as_str().unwrap_or_default().to_string();
                Ok(ContributionRow {
                    id: strip(r.get(0), "contribution:"),
                    contributor: strip(r.get(2), "contributor:"),
                    content_hash: field("content_hash"),
                    license: field("license"),
                    batch: strip(r.get(3), "batch:"),
                    pos: pos(r, 4)?,
                })
            })
            .collect()
    }

    /// The whole graph of `chain_id`, nodes by id and edges by (src, dst, kind): for
    /// comparing two indexes of the same chain.
    pub async fn graph(&self, chain_id: u64) -> Result<(Vec<Node>, Vec<Edge>)> {
        let nodes = sqlx::query(
            "SELECT id, kind, props, block_number, block_hash, tx_hash, log_index FROM lineage_nodes \
             WHERE chain_id = $1 ORDER BY id",
        )
        .bind(chain_id as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Node {
                id: r.get(0),
                kind: parse_kind(r.get(1))?,
                props: json(r.get(2))?,
                pos: pos(r, 3)?,
            })
        })
        .collect::<Result<_>>()?;
        let edges = sqlx::query(
            "SELECT src, dst, kind, weight, block_number, block_hash, tx_hash, log_index FROM lineage_edges \
             WHERE chain_id = $1 ORDER BY src, dst, kind",
        )
        .bind(chain_id as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Edge {
                src: r.get(0),
                dst: r.get(1),
                kind: parse_kind(r.get(2))?,
                weight: r.get(3),
                pos: pos(r, 4)?,
            })
        })
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

/// Parses a stored kind name (`contributor`, `anchored_in`, …) back into its enum.
fn parse_kind<T: serde::de::DeserializeOwned>(name: String) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(name.clone()))
        .map_err(|_| Error::Corrupt(format!("unknown kind {name:?}")))
}

fn strip(s: String, prefix: &str) -> String {
    s.strip_prefix(prefix).map(str::to_string).unwrap_or(s)
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
