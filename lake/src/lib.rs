//! The only Tributary code that touches Delta tables and object stores directly.
//!
//! A [`Lake`] is a root URL (a local directory by default, `s3://…` through object_store)
//! holding one Delta table per name in `tributary_schemas::tables`, plus plain objects such as
//! batch manifests.
//!
//! - create or open a table with its schema and partition columns ([`Lake::table`]);
//! - idempotent append: a batch carries a Delta application transaction id, so committing the
//!   same batch twice adds nothing ([`Lake::append`]);
//! - read a table as of any version (time travel, [`Lake::read`]);
//! - put and get objects by URI ([`Lake::put`], [`Lake::get`]).
//!
//! ```no_run
//! # async fn f(batch: arrow::record_batch::RecordBatch) -> tributary_lake::Result<()> {
//! use tributary_lake::Lake;
//! let lake = Lake::open("./.tributary/lake")?;
//! let appended = lake.append("contributions").batches(vec![batch]).idempotent("batch-0xabc", 0).commit().await?;
//! let rows = lake.read("contributions", Some(appended.version)).await?;
//! # Ok(()) }
//! ```

mod append;
mod lake;

pub use append::{AppendBuilder, Appended};
pub use lake::Lake;

/// Errors from the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lake root or a URI is not usable; the message says how to fix it.
    #[error("{0}")]
    Config(String),
    /// A table Tributary does not know.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// Delta Lake failed.
    #[error("delta: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// A scan of a table failed.
    #[error("scan: {0}")]
    Scan(#[from] deltalake::datafusion::error::DataFusionError),
    /// The object store failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// Arrow failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl Error {
    /// The object is not there (as opposed to a store that did not answer, refused access or
    /// failed: those may pass).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::ObjectStore(object_store::Error::NotFound { .. })
        ) || matches!(self, Error::Config(_))
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
