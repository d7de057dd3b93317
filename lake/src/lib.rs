//! The only Tributary code that touches Delta tables and object stores directly.
//!
//! A [`Lake`] is a root URL (a local directory by default, `s3://…` through object_store)
//! holding one Delta table per name in `tributary_schemas::tables`, plus plain objects such as
//! batch manifests.
//!
//! - create or open a table with its schema and partition columns ([`Lake::table`]);
//! - idempotent append: a batch carries a Delta application transaction id, so committing the
//!   same batch twice adds nothing ([`Lake::append`]); a commit that loses a race with another
//!   writer is retried on a freshly loaded table (up to 8 tries, doubling pause), so an
//!   idempotent append lands once even when two processes finish the same batch;
//! - list the application transactions that landed ([`Lake::app_ids`], from the snapshot's
//!   checkpoint and the commits after it, what recovery reads) and find the version holding
//!   one ([`Lake::committed_at`]);
//! - read a table as of any version (time travel, [`Lake::read`]), in the declared schema's
//!   types;
//! - put and get objects by keys relative to the root ([`Lake::put`], [`Lake::get`]);
//!   [`Lake::locate`] maps a URI recorded under another root (a lake since copied or synced)
//!   to the object's key here;
//! - stream a table's rows a batch at a time, as of any version ([`Lake::scanner`]): one file
//!   at a time, partition-pruned by the filter, so a large table costs one row group of memory
//!   ([`return_large_frees`] makes those buffers leave memory once freed).
//!
//! Roots are local directories or `s3://` URLs ([`Lake::open_with`] takes object-store options,
//! else the `AWS_*` environment); concurrent writers rely on Delta's put-if-absent commits,
//! which object_store sends to S3 as `If-None-Match: *`.
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
pub use lake::{Lake, Scanner};

/// Makes the process give large freed buffers back to the system at once. A scan fetches each
/// file's columns in buffers of several MiB; glibc raises its mmap threshold to the size of
/// every such buffer freed, so later ones come from the heap and stay resident after use, and
/// a streaming scan of 1M rows left about 100 MiB more resident than it ever held at once.
/// With the threshold fixed at 1 MiB they are mapped and unmapped (measured: +101 MiB -> +47
/// MiB for that scan). Call once, at the start of a process that scans large tables.
pub fn return_large_frees() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator parameter; called before heavy allocation.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

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
