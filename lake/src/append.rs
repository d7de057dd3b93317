use arrow::record_batch::RecordBatch;
use deltalake::kernel::Transaction;
use std::time::Duration;

use deltalake::DeltaTableError;
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;

use crate::{Error, Lake, Result};

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The table version holding the rows.
    pub version: u64,
    /// False when the same application transaction was already committed: nothing was added.
    pub newly_committed: bool,
}

/// An append to one table, built with [`Lake::append`].
#[derive(Debug)]
pub struct AppendBuilder {
    lake: Lake,
    table: String,
    batches: Vec<RecordBatch>,
    txn: Option<(String, i64)>,
}

impl AppendBuilder {
    pub(crate) fn new(lake: Lake, table: &str) -> Self {
        Self {
            lake,
            table: table.to_string(),
            batches: Vec::new(),
            txn: None,
        }
    }

    /// The rows to append.
    pub fn batches(mut self, batches: Vec<RecordBatch>) -> Self {
        self.batches = batches;
        self
    }

    /// Makes the append idempotent: it is committed together with the Delta application
    /// transaction `(app_id, version)`, and skipped when the table already holds that
    /// transaction at this version or later.
    pub fn idempotent(mut self, app_id: impl Into<String>, version: i64) -> Self {
        self.txn = Some((app_id.into(), version));
        self
    }

    /// Commits (one Delta commit) and returns the version holding the rows.
    ///
    /// A commit that loses a race with another writer (Delta's conflict checker refuses it) is
    /// tried again on a freshly loaded table, a few times with a growing pause. That is safe for
    /// idempotent appends: when the winner committed the same application transaction, the retry
    /// finds it and adds nothing.
    pub async fn commit(self) -> Result<Appended> {
        let mut pause = Duration::from_millis(20);
        for attempt in 1.. {
            match self.try_commit().await {
                Err(Error::Delta(e)) if is_conflict(&e) && attempt < COMMIT_ATTEMPTS => {
                    tracing::debug!(table = %self.table, attempt, error = %e, "commit conflict, retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    async fn try_commit(&self) -> Result<Appended> {
        let table = self.lake.table(&self.table).await?;
        let mut props = CommitProperties::default();
        if let Some((app_id, version)) = &self.txn {
            let done = table
                .snapshot()?
                .transaction_version(&*table.log_store(), app_id)
                .await?;
            if done.is_some_and(|v| v >= *version) {
                // Its commit's version; once log cleanup (Spark's, after a checkpoint) removed
                // that commit file, the current version, which holds the rows too (appends
                // are never rewritten). Before, 0: a version without them.
                let at = committed_version(&table, app_id).await?;
                return Ok(Appended {
                    version: at.or(table.version()).unwrap_or(0),
                    newly_committed: false,
                });
            }
            props = props.with_application_transaction(Transaction::new(app_id, *version));
        }
        // Merged, not cast: a column another engine added (Spark's `ADD COLUMNS`) is left
        // null in these rows instead of refusing every append.
        let written = table
            .write(self.batches.clone())
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(SchemaMode::Merge)
            .with_commit_properties(props)
            .await?;
        let version = written.version().unwrap_or(0) as u64;
        tracing::debug!(table = %self.table, version, "appended");
        Ok(Appended {
            version,
            newly_committed: true,
        })
    }
}

/// How many times [`AppendBuilder::commit`] tries before giving up on a contended table.
const COMMIT_ATTEMPTS: u32 = 8;

/// Whether Delta refused the commit because another writer got there first.
fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_)
        } | DeltaTableError::VersionAlreadyExists(_)
    )
}

/// The version whose commit holds the application transaction `app_id`, searching the log
/// newest first (only on the rare path of a retried append).
async fn committed_version(table: &deltalake::DeltaTable, app_id: &str) -> Result<Option<u64>> {
    let log = table.log_store();
    let latest = table.version().unwrap_or(0);
    for version in (0..=latest).rev() {
        if txn_app_ids(&*log, version)
            .await?
            .iter()
            .any(|id| id == app_id)
        {
            return Ok(Some(version));
        }
    }
    Ok(None)
}

/// The application transaction ids committed in `version` of a table's log.
pub(crate) async fn txn_app_ids(
    log: &dyn deltalake::logstore::LogStore,
    version: u64,
) -> Result<Vec<String>> {
    let Some(commit) = log.read_commit_entry(version).await? else {
        return Ok(Vec::new());
    };
    Ok(commit
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter_map(|action| action["txn"]["appId"].as_str().map(str::to_string))
        .collect())
}
