use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::engine::arrow_data::ArrowEngineData;
use std::collections::BTreeSet;
use std::time::Duration;

use deltalake::DeltaTableError;
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;

use crate::{Error, Lake, Result};

/// The outcome of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The table version holding the rows.
    pub version: u64,
    /// False when the same application transaction was already committed: nothing was added.
    pub newly_committed: bool,
    /// The id of the Delta table appended to (its `metaData.id`, see [`Lake::table_id`]).
    pub table_id: String,
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
                // A version with its rows, found without the commit files log cleanup (Spark's,
                // after a checkpoint) removes. Before, 0 then: a version without them.
                return Ok(Appended {
                    version: committed_version(&table, app_id).await?,
                    newly_committed: false,
                    table_id: table.snapshot()?.metadata().id().to_string(),
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
            table_id: written.snapshot()?.metadata().id().to_string(),
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

/// The version that holds the rows of the application transaction `app_id`, which the table
/// is known to hold (only on rare paths: a retried append, a recovered batch): its commit's
/// version when that commit is after the latest checkpoint, else the table's loaded version,
/// which holds those rows too (appends are never rewritten). So the search reads at most the
/// commits since the checkpoint, however long the log, and needs no commit file that log
/// cleanup removes.
pub(crate) async fn committed_version(table: &deltalake::DeltaTable, app_id: &str) -> Result<u64> {
    let checkpoint =
        with_kernel_snapshot(table, |s, _| Ok(s.log_segment().checkpoint_version)).await?;
    let log = table.log_store();
    let latest = table.version().unwrap_or(0);
    let after = checkpoint.flatten().map_or(0, |c| c + 1);
    for version in (after..=latest).rev() {
        match txn_app_ids(&*log, version).await? {
            Some(ids) if ids.iter().any(|id| id == app_id) => return Ok(version),
            Some(_) => {}
            // Removed by a cleanup that ran after this snapshot's listing.
            None => break,
        }
    }
    Ok(latest)
}

/// Every application transaction id of `table`'s snapshot: the `txn` actions of its checkpoint
/// and of the commits after it.
pub(crate) async fn app_ids(table: &deltalake::DeltaTable) -> Result<BTreeSet<String>> {
    let ids = with_kernel_snapshot(table, |snapshot, engine| {
        let kernel = |e: delta_kernel::Error| Error::Delta(DeltaTableError::from(e));
        let mut ids = BTreeSet::new();
        let actions = snapshot
            .log_segment()
            .read_actions(engine, delta_kernel::actions::LOG_TXN_SCHEMA.clone())
            .map_err(kernel)?;
        for batch in actions {
            let data = ArrowEngineData::try_from_engine_data(batch.map_err(kernel)?.actions)
                .map_err(kernel)?;
            let rows = data.record_batch();
            let shape = || {
                Error::Config(format!(
                    "the Delta log's txn actions came back as {:?}, not a struct with appId",
                    rows.schema()
                ))
            };
            let txn = rows
                .column_by_name("txn")
                .and_then(|c| c.as_struct_opt())
                .ok_or_else(shape)?;
            // Any string type the kernel reads it as (Utf8, LargeUtf8, Utf8View).
            let app = arrow::compute::cast(
                txn.column_by_name("appId").ok_or_else(shape)?,
                &arrow::datatypes::DataType::Utf8,
            )?;
            let app = app.as_string::<i32>();
            for i in 0..rows.num_rows() {
                if txn.is_valid(i) && app.is_valid(i) {
                    ids.insert(app.value(i).to_string());
                }
            }
        }
        Ok(ids)
    })
    .await?;
    Ok(ids.unwrap_or_default())
}

/// Runs `f` on deltalake's own kernel's snapshot of `table` at its loaded version (`None` when
/// the table has no commit), off the async threads: the kernel's reads block.
async fn with_kernel_snapshot<T: Send + 'static>(
    table: &deltalake::DeltaTable,
    f: impl FnOnce(&delta_kernel::Snapshot, &dyn delta_kernel::Engine) -> Result<T> + Send + 'static,
) -> Result<Option<T>> {
    let Some(version) = table.version() else {
        return Ok(None);
    };
    let log = table.log_store();
    let engine = log.engine(None);
    // The kernel joins paths onto the root: it must end in '/'.
    let mut root = log.root_url().clone();
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    tokio::task::spawn_blocking(move || {
        let snapshot = delta_kernel::Snapshot::builder_for(root)
            .at_version(version)
            .build(engine.as_ref())
            .map_err(|e| Error::Delta(DeltaTableError::from(e)))?;
        f(&snapshot, engine.as_ref()).map(Some)
    })
    .await
    .map_err(|e| Error::Config(format!("reading the Delta log: {e}")))?
}

/// The application transaction ids committed in `version` of a table's log, `None` when that
/// commit file is gone (log cleanup).
async fn txn_app_ids(
    log: &dyn deltalake::logstore::LogStore,
    version: u64,
) -> Result<Option<Vec<String>>> {
    let Some(commit) = log.read_commit_entry(version).await? else {
        return Ok(None);
    };
    Ok(Some(
        commit
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
            .filter_map(|action| action["txn"]["appId"].as_str().map(str::to_string))
            .collect(),
    ))
}
