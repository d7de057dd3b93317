//! Everything SQL in Tributary. Today: the index store.
//!
//! [`Store`] is the sqlx store of the lineage graph and the indexer's checkpoints: SQLite by
//! default (a file in the data directory), PostgreSQL for several processes and machines. Both
//! run the same logical schema from `sql/migrations/{sqlite,postgres}`, applied on connect.
//!
//! - [`Store::apply`] writes events, nodes, edges, the hashes of the blocks it saw and the
//!   checkpoint in one transaction, ignoring rows already present, and numbers the change in
//!   `index_ops` (what the lake mirror and subscriptions follow); [`Store::rollback`] removes
//!   everything above a fork point and moves the checkpoint back, in one transaction;
//!   [`Store::amend`] adds a batch's contributions once its manifest becomes readable.
//! - graph walks ([`Store::ancestors`], [`Store::descendants`], [`Store::path`],
//!   [`Store::contributors`]): breadth-first, one indexed query per level and group of node
//!   kinds, only for the edge kinds that can touch a node's kind ([`upstream_end`] says which
//!   end is upstream), so a step upstream from a contributor or a Datanet costs no query.
//! - [`LineageIndex`]: the same walks over the graph held in memory (dense node numbers,
//!   compact adjacency, a frozen part and a reorg-window overlay), kept in step with the store
//!   by following `index_ops`, snapshotted to a file for fast restarts.
//! - browsing for the query API: nodes of a kind page by page, edges at many nodes at once.
//! - the scheduler's `jobs` and `job_runs`, changed by compare-and-set.
//!
//! `sql/views/*.sql` are the analysts' views (compiled into `tributary-api`), and
//! `sql/tests/*.slt` the sqllogictest files that cover them, time travel and `ancestry` (run
//! by `tributary-api`'s tests).
//!
//! ```no_run
//! # async fn f() -> tributary_sql::Result<()> {
//! let store = tributary_sql::Store::connect("sqlite://./.tributary/index.db").await?;
//! let rows = store.datanet_contributions(31337, 1, 100).await?;
//! # Ok(()) }
//! ```

mod browse;
mod graph;
mod index;
mod jobs;
mod store;

pub use browse::{End, NodeKey, Order};

pub use graph::{ContributorShare, Direction, Subgraph, upstream_end};
pub use index::{IndexStats, LineageIndex, Page, PageRequest, WalkEdge, WalkNode, WalkSummary};
pub use jobs::{JobRow, RunRow, RunStatus};
pub use store::{
    Checkpoint, ContributionFilter, ContributionKey, ContributionRow, DatanetRow, MirrorProgress,
    Op, OpKind, RawEvent, Rows, Store,
};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store URL is not usable; the message says how to fix it.
    #[error("{0}")]
    Config(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value is not what Tributary wrote: a bug or a foreign writer.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The request names something the graph does not hold (a cursor from another walk); the
    /// message says what to do instead.
    #[error("{0}")]
    Request(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
