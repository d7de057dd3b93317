//! Chain events to the lineage graph.
//!
//! The indexer reads every log of Tributary's contracts from the deployment block to the head
//! in block ranges, decodes it with the alloy bindings, turns it into nodes and edges of the
//! lineage graph (one handler per contract in [`events`]), and commits them to the
//! [`tributary_sql::Store`] together with the checkpoint, so a restart resumes exactly where
//! the last commit ended. Logs are kept raw in `chain_events` as well.
//!
//! Ranges run from the checkpoint to the confirmed head (`--confirmations`); a range halves
//! when a request fails after its retries and grows back on success, and far behind the head
//! several ranges are fetched at once. Each step first checks that the checkpoint's hash is
//! still the chain's: if not, it walks the remembered block hashes (those within the reorg
//! window of the head) newest first to the fork point and rolls back; if none survived, it
//! stops with [`Error::ReorgTooDeep`] and leaves the graph as it was. Near the head each
//! block's hash is read before `eth_getLogs` and the last one again after, and the blocks read
//! must form one chain that extends the checkpoint, else the step is retried. Revocations and
//! validations are nodes of their own, so nothing is updated in place and a rollback is a
//! delete by block number.
//!
//! `BatchAnchored` is checked against the data-availability layer: the manifest is fetched
//! from the lake by its URI, its hash and Merkle root are recomputed, each entry must be a
//! contribution its contributor signed for the batch's Datanet (its fields give back its id,
//! its signature recovers to the contributor), and only a batch that passes brings its
//! contributions into the graph; otherwise the batch node is marked `verified: false` with the
//! reason and its [`Availability`] (`da`): `missing`, `mismatch` or `unsigned` are flagged for
//! good (but a reward epoch's `missing` manifest is rechecked: one posted straight to the
//! distributor is recorded as foreign after it is posted), `unreachable` (the lake failed, timed out or refused
//! access, after three tries) is checked again by [`Indexer::recheck`] on every run and, while
//! following, with backoff; a batch that becomes readable brings its contributions in then,
//! without a re-index ([`tributary_sql::Store::amend`], at the batch's own block, so the lake
//! mirror replays it). `InferencesRecorded` is checked the same way against its inference
//! manifest, and only a verified batch brings its attribution edges. Snapshots, inference
//! batches, reward epochs and adapters' manifests the lake could not serve are marked
//! `unreachable` too, and rechecked alike: the recheck applies the node's event again from
//! its raw log in the store.
//!
//! - [`mirror`]: the store's numbered changes replayed into the lake's Delta tables.
//! - `entities`: typed rows for `datanets`, `snapshots`, `training_runs` and `adapters`.
//! - [`events`]: one handler per contract.
//! - [`IndexMetrics`]: the progress report as Prometheus metrics (`tributary index --metrics`).
//!
//! [`Indexer::follow`] waits between steps on the poll interval or, over WebSocket, on the
//! next announced head.
//!
//! ```no_run
//! # async fn f(chain: &tributary_chain::Chain, store: &tributary_sql::Store, lake: &tributary_lake::Lake) -> tributary_indexer::Result<()> {
//! let stats = tributary_indexer::Indexer::new(chain, store, lake).run_to_head().await?;
//! println!("{} events in blocks {}..={}", stats.events, stats.from_block, stats.to_block);
//! # Ok(()) }
//! ```

mod entities;
pub mod events;
mod indexer;
mod metrics;
pub mod mirror;

pub use events::datanet_registry::Availability;
pub use indexer::{IndexStats, Indexer, Progress, Recheck, STREAM};
pub use metrics::IndexMetrics;
pub use prometheus_client::registry::Registry;

/// Errors from indexing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] tributary_chain::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] tributary_sql::Error),
    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] tributary_lake::Error),
    /// A log the node returned lacks its block or transaction position.
    #[error("log without position (pending?): {0}")]
    Unpositioned(String),
    /// The chain dropped blocks older than every remembered one: the graph cannot be made
    /// consistent by rolling back, so the indexer stops.
    #[error(
        "fatal: a reorg replaced the indexed block {checkpoint} and every remembered block \
         before it (the reorg window is {window} blocks); the graph is left as it was. Rebuild \
         it from scratch (remove the index store and run `tributary index` again), and use a \
         larger --reorg-window or more --confirmations on this chain"
    )]
    ReorgTooDeep {
        /// The checkpoint that is no longer on the chain.
        checkpoint: u64,
        /// The window in blocks.
        window: u64,
    },
    /// Mirroring the graph into the lake failed.
    #[error("lake mirror: {0}")]
    Mirror(String),
}

impl Error {
    /// A failure of the node, the store or the lake (an outage past the retries), which a
    /// follower waits out; not a reorg too deep to roll back.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            Error::Chain(_) | Error::Store(_) | Error::Lake(_) | Error::Mirror(_)
        )
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
