//! Tributary's batch pipelines: contributions into Datanets, snapshots, inference batches and
//! reward epochs, each written to the lake and recorded on chain in idempotent steps.
//!
//! An ingest takes signed contributions, verifies every signature against the registry's
//! EIP-712 domain, writes the good ones to the `contributions` Delta table in one idempotent
//! commit, writes the batch manifest to the lake, and anchors the batch's Merkle root on chain
//! with `BatchAnchored`. Batch ids are derived from the contribution ids, so re-running the
//! same input adds nothing and anchors nothing twice.
//!
//! - [`datanet`]: register a Datanet on chain (idempotent by name).
//! - [`validate`]: validators' verdicts on batches; [`verify`]: proofs; [`revoke`]: revocations.
//! - [`chain_state`]: anchored batches, revocations and verdicts as the chain records them, which
//!   snapshots, attribution and settlement read.
//! - [`sign`]: EIP-712 signing of contributions.
//! - [`contribute`]: read files, sign or verify, validate against the Datanet, commit in
//!   batches, keep refusals ([`readers`], [`rules`], [`minhash`], [`reject`]).
//! - [`ingest`]: commit a batch (Delta, manifest, anchor, `batches` row) and recover batches a
//!   crash left unanchored.
//! - [`snapshot`]: freeze a training set and read it back by time travel.
//! - [`inferences`]: record a batch of served answers (lake manifest, rows, chain).
//! - [`rewards`]: settle an epoch's fees into Merkle claims.
//! - [`layout`]: where primary artifacts live in the lake, and moving a legacy lake's.
//! - [`openlineage`]: OpenLineage run events for ingest, snapshot, training and settlement.
//! - [`sample`]: the sample Datanet the demo ships (generated, deterministic).
//!
//! ```no_run
//! # async fn f(chain: &tributary_chain::Chain, lake: &tributary_lake::Lake, signed: Vec<tributary_pipeline::sign::Signed>) -> tributary_pipeline::Result<()> {
//! let report = tributary_pipeline::ingest::ingest(chain, lake, 1, signed).await?;
//! println!("batch {} anchored in tx {}", report.batch.batch_id, report.batch.anchor_tx);
//! # Ok(()) }
//! ```

pub mod chain_state;
pub mod contribute;
pub mod datanet;
pub mod inferences;
pub mod ingest;
pub mod layout;
pub mod minhash;
pub mod openlineage;
pub mod readers;
pub mod reject;
pub mod revoke;
pub mod rewards;
pub mod rules;
pub mod sample;
pub mod sign;
pub mod snapshot;
pub mod validate;
pub mod verify;

/// Errors from pipelines.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input is wrong; the message names the problem and the fix.
    #[error("{0}")]
    InvalidInput(String),
    /// What was asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] tributary_chain::Error),
    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] tributary_lake::Error),
    /// Building records failed; this is a bug.
    #[error(transparent)]
    Schemas(#[from] tributary_schemas::Error),
    /// Arrow failed; this is a bug.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Tributary failed, not the input: a worker thread that stopped, a lake row it cannot
    /// read.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
