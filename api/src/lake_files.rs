//! A lake table at one version, as the analyst's statements scan it: the list of its Parquet
//! files (path, size, time, row count, partition values) is read from the Delta log once per
//! version and kept, so each statement plans its scan as DataFusion plans one over a listing
//! table. Delta's own provider replays the snapshot's file list and statistics for every scan,
//! a fixed cost per statement that dominated the short views.
//!
//! Statistics are a listing table's too: the first scan of a version reads each file's Parquet
//! footer (rows, sizes, and each column's minimum, maximum and null count) through the
//! session's file statistics cache, where a file's entry outlives the version, so the planner
//! sizes joins and filters as it does for a plain Parquet table. With row counts alone it had
//! judged a filtered side too big to collect and hash-partitioned both sides of every join.
//!
//! Only tables a plain Parquet scan reads exactly as Delta's provider does get this (see
//! [`LakeFiles::of`]: reader protocol 1, flat columns, number or time partitions, every file
//! under the table's root); any other table, as another engine may write it, is read through
//! Delta's provider, as before.

use std::sync::Arc;

use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{DataFusionError, ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::cache::cache_manager::CachedFileMetadata;
use datafusion::execution::cache::{SchemaFingerprint, TableScopedPath};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};

/// A provider for `table` at its loaded version: [`LakeFiles`] where a plain Parquet scan
/// reads it right, Delta's own provider otherwise. `views`: read strings and binaries as
/// view types (the session's `schema_force_view_types`, as Delta's provider does).
pub(crate) async fn provider(
    table: &DeltaTable,
    views: bool,
) -> Result<Arc<dyn TableProvider>, DataFusionError> {
    match LakeFiles::of(table, views).await {
        Ok(Some(files)) => return Ok(Arc::new(files)),
        Ok(None) => {}
        // Something in the log this scan does not read as Delta would (a partition value
        // in another notation, say): Delta's own provider reads it, or reports it.
        Err(e) => tracing::debug!(error = %e, "reading a lake table through Delta's provider"),
    }
    // Delta's builder reports in DataFusion's error type already.
    table.table_provider().await
}

/// One version of a lake table: its schema in Delta's column order and its data files.
#[derive(Debug)]
pub(crate) struct LakeFiles {
    /// The table's columns in Delta's order.
    schema: SchemaRef,
    /// The Parquet files' columns followed by the partition columns (DataFusion's order).
    table_schema: TableSchema,
    /// Column `i` of `schema` is column `order[i]` of `table_schema`.
    order: Vec<usize>,
    /// The table root's store, registered with the session under this URL on first scan.
    url: ObjectStoreUrl,
    store: Arc<dyn deltalake::ObjectStore>,
    files: Vec<PartitionedFile>,
    /// The whole table's: rows (from the files' log statistics) and bytes.
    statistics: Statistics,
    /// `files` with their footers' statistics, and the table's from them: read on the first
    /// scan that collects statistics (the session's `collect_statistics`, on by default).
    footers: tokio::sync::OnceCell<(Vec<PartitionedFile>, Statistics)>,
}

impl LakeFiles {
    /// The files of `table`'s loaded version, or `None` when the table needs Delta's reader:
    /// a reader protocol above 1, nested columns (Delta turns the strings inside them into
    /// view types and relaxes their nullability for other engines' files), partition columns
    /// that are not plain numbers, dates or times (Delta gives string ones as dictionaries), or
    /// a file outside the table root.
    async fn of(table: &DeltaTable, views: bool) -> deltalake::DeltaResult<Option<Self>> {
        let state = table.snapshot()?;
        if state.protocol().min_reader_version() != 1 {
            return Ok(None);
        }
        let partitions = state.metadata().partition_columns().to_vec();
        let arrow = state.snapshot().arrow_schema();
        let plain = arrow.fields().iter().all(|f| {
            !f.data_type().is_nested()
                && (!partitions.contains(f.name()) || f.data_type().is_primitive())
        });
        if !plain {
            return Ok(None);
        }
        let delta: Schema = arrow.as_ref().clone();
        let delta = if views {
            datafusion::datasource::physical_plan::parquet::transform_schema_to_view(&delta)
        } else {
            delta
        };
        let (mut file_fields, mut partition_fields) = (Vec::new(), Vec::new());
        for field in delta.fields() {
            if partitions.contains(field.name()) {
                partition_fields.push(field.clone());
            } else {
                file_fields.push(field.clone());
            }
        }
        // Partition values in the table's partition-column order, as DataFusion wants them.
        let partition_fields: Vec<FieldRef> = partitions
            .iter()
            .filter_map(|p| partition_fields.iter().find(|f| f.name() == p).cloned())
            .collect();
        let file_schema = Arc::new(Schema::new(file_fields));
        let table_schema = TableSchema::builder(file_schema.clone())
            .with_table_partition_cols(partition_fields.clone())
            .build();
        let order = delta
            .fields()
            .iter()
            .map(|f| table_schema.table_schema().index_of(f.name()))
            .collect::<Result<Vec<_>, _>>()?;

        let log_store = table.log_store();
        let mut files = Vec::new();
        let mut statistics = Statistics::new_unknown(table_schema.table_schema());
        statistics.num_rows = Precision::Exact(0);
        statistics.total_byte_size = Precision::Exact(0);
        let mut views_of = state.snapshot().file_views(log_store.as_ref(), None);
        while let Some(file) = views_of.try_next().await? {
            let path = file.path();
            if path.contains("://") {
                return Ok(None); // a file outside the table root (a shallow clone)
            }
            let raw = file.partition_values_map();
            let mut values = Vec::with_capacity(partition_fields.len());
            for field in &partition_fields {
                let Some(value) = raw.get(field.name()) else {
                    return Err(deltalake::DeltaTableError::Generic(format!(
                        "{path}: no value for partition column {}",
                        field.name()
                    )));
                };
                values.push(partition_value(field, value.clone())?);
            }
            let size = u64::try_from(file.size()).unwrap_or(0);
            // The log's path as an object path already (`PartitionedFile::new` would
            // escape it a second time: a `%` in a name would be read as `%25`).
            let mut meta = PartitionedFile::from(deltalake::ObjectMeta {
                location: file.object_store_path(),
                last_modified: chrono::DateTime::from_timestamp_millis(file.modification_time())
                    .unwrap_or_default(),
                size,
                e_tag: None,
                version: None,
            });
            meta.partition_values = values;
            let mut stats = Statistics::new_unknown(&file_schema);
            stats.num_rows = file
                .num_records()
                .map_or(Precision::Absent, Precision::Exact);
            stats.total_byte_size = Precision::Inexact(size as usize);
            statistics.num_rows = statistics.num_rows.add(&stats.num_rows);
            statistics.total_byte_size = statistics.total_byte_size.add(&stats.total_byte_size);
            files.push(meta.with_statistics(Arc::new(stats)));
        }
        Ok(Some(Self {
            schema: Arc::new(delta),
            table_schema,
            order,
            url: store_url(log_store.root_url().as_str())?,
            store: log_store.object_store(None),
            files,
            statistics,
            footers: tokio::sync::OnceCell::new(),
        }))
    }

    /// The files with their footers' statistics and the table's, as a listing table collects
    /// them: from the session's file statistics cache (keyed by the table's store and the
    /// file's path, checked against its size, time and schema), else read from the footer.
    async fn footers(
        &self,
        state: &dyn Session,
        format: &ParquetFormat,
    ) -> Result<&(Vec<PartitionedFile>, Statistics), DataFusionError> {
        self.footers
            .get_or_try_init(|| async {
                let cache = state.runtime_env().cache_manager.get_file_statistic_cache();
                let file_schema = self.table_schema.file_schema().clone();
                let fingerprint = Arc::new(SchemaFingerprint::from_schema(&file_schema));
                let scope = datafusion::common::TableReference::bare(self.url.as_str());
                let concurrency = state
                    .config_options()
                    .execution
                    .meta_fetch_concurrency
                    .get();
                let (cache, fingerprint, scope) = (&cache, &fingerprint, &scope);
                let (file_schema, store) = (&file_schema, &self.store);
                let files: Vec<PartitionedFile> = futures::stream::iter(self.files.clone())
                    .map(|mut file| async move {
                        let meta = &file.object_meta;
                        let key = TableScopedPath {
                            table: Some(scope.clone()),
                            path: meta.location.clone(),
                        };
                        let hit = cache
                            .as_ref()
                            .and_then(|c| c.get(&key))
                            .filter(|c| c.is_valid_for(meta, fingerprint));
                        let stats = match hit {
                            Some(cached) => cached.statistics,
                            None => {
                                let stats = format
                                    .infer_stats(state, store, file_schema.clone(), meta)
                                    .await?;
                                let stats = Arc::new(stats);
                                if let Some(c) = &cache {
                                    let entry = CachedFileMetadata::new(
                                        meta.clone(),
                                        fingerprint.clone(),
                                        stats.clone(),
                                        None,
                                    );
                                    c.put(&key, entry);
                                }
                                stats
                            }
                        };
                        // `with_statistics` adds the partition columns' own.
                        file.statistics = None;
                        Ok::<_, DataFusionError>(file.with_statistics(stats))
                    })
                    .buffered(concurrency)
                    .try_collect()
                    .await?;
                let statistics = Statistics::try_merge_iter(
                    files.iter().filter_map(|f| f.statistics.as_deref()),
                    self.table_schema.table_schema(),
                )?;
                Ok((files, statistics))
            })
            .await
    }
}

/// The URL the table rooted at `root` has its store registered under in the session: one per
/// root (a hash of it; deltalake's own naming panics on some characters in a root's path).
fn store_url(root: &str) -> deltalake::DeltaResult<ObjectStoreUrl> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut h);
    ObjectStoreUrl::parse(format!("tributary-lake://{:016x}", h.finish()))
        .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))
}

/// A partition value as the log keeps it (text, or none for null) in the column's type.
fn partition_value(field: &Field, raw: Option<String>) -> deltalake::DeltaResult<ScalarValue> {
    let parsed = match raw {
        // An empty value stands for null too (a partition directory cannot be named "").
        Some(text) if !text.is_empty() => ScalarValue::try_from_string(text, field.data_type()),
        _ => ScalarValue::try_from(field.data_type()),
    };
    parsed.map_err(|e| {
        deltalake::DeltaTableError::Generic(format!("partition column {}: {e}", field.name()))
    })
}

#[async_trait]
impl TableProvider for LakeFiles {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let columns: Vec<usize> = match projection {
            Some(p) => p.iter().map(|&i| self.order[i]).collect(),
            None => self.order.clone(),
        };
        if self.files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let runtime = state.runtime_env();
        if runtime.object_store(&self.url).is_err() {
            runtime.register_object_store(self.url.as_ref(), self.store.clone());
        }
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let (files, statistics) = if state.config().collect_statistics() {
            let (files, statistics) = self.footers(state, &format).await?;
            (files.clone(), statistics.clone())
        } else {
            (self.files.clone(), self.statistics.clone())
        };
        let schema = self.table_schema.table_schema();
        let groups = FileGroup::new(files)
            .split_files(state.config().target_partitions())
            .into_iter()
            .map(|group| {
                let stats = group.iter().filter_map(|f| f.statistics.as_deref());
                let stats = Statistics::try_merge_iter(stats, schema)?;
                Ok(group.with_statistics(Arc::new(stats)))
            })
            .collect::<Result<Vec<_>, DataFusionError>>()?;
        let config = FileScanConfigBuilder::new(
            self.url.clone(),
            format.file_source(self.table_schema.clone()),
        )
        .with_file_groups(groups)
        .with_statistics(statistics)
        .with_projection_indices(Some(columns))?
        .with_limit(limit)
        .build();
        format.create_physical_plan(state, config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_schemas::tables::names;

    /// The file scan is used for a table of reader protocol 1, and not after another engine
    /// raised the protocol to deletion vectors: Delta's provider reads it then.
    #[tokio::test]
    async fn deletion_vectors_turn_the_file_scan_off() {
        let dir = tempfile::tempdir().unwrap();
        let lake = tributary_lake::Lake::open(dir.path().to_str().unwrap()).unwrap();
        let mut table = lake.table(names::CONTRIBUTIONS).await.unwrap();
        let plain = provider(&table, true).await.unwrap();
        assert!(plain.downcast_ref::<LakeFiles>().is_some());

        let log = dir.path().join(names::CONTRIBUTIONS).join("_delta_log");
        std::fs::write(
            log.join(format!("{:020}.json", table.version().unwrap() + 1)),
            "{\"protocol\":{\"minReaderVersion\":3,\"minWriterVersion\":7,\
             \"readerFeatures\":[\"deletionVectors\"],\"writerFeatures\":[\"deletionVectors\"]}}\n",
        )
        .unwrap();
        table.update_incremental(None).await.unwrap();
        let delta = provider(&table, true).await.unwrap();
        assert!(delta.downcast_ref::<LakeFiles>().is_none());
        assert_eq!(delta.schema(), plain.schema());
    }

    /// A scan's statistics are a listing table's: rows, and each column's minimum, maximum and
    /// null count from the files' footers (the partition column's from its values), so the
    /// planner can tell a filtered side small enough to collect for a join.
    #[tokio::test]
    async fn the_scan_knows_each_columns_range() {
        use arrow::array::{Int64Array, RecordBatch};
        use arrow::datatypes::DataType;
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("p", DataType::Int64, true),
            Field::new("x", DataType::Int64, true),
        ]));
        let mut table = None;
        for (p, xs) in [
            (1, [Some(5), None, Some(9)]),
            (2, [Some(-3), Some(4), Some(4)]),
        ] {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![p; 3])),
                    Arc::new(Int64Array::from(xs.to_vec())),
                ],
            )
            .unwrap();
            let t = DeltaTable::try_from_url(url.clone()).await.unwrap();
            let written = t
                .write(vec![batch])
                .with_save_mode(deltalake::protocol::SaveMode::Append)
                .with_partition_columns(["p"])
                .await
                .unwrap();
            table = Some(written);
        }
        let files = provider(&table.unwrap(), true).await.unwrap();
        assert!(files.downcast_ref::<LakeFiles>().is_some());
        let ctx = datafusion::prelude::SessionContext::new();
        let plan = files.scan(&ctx.state(), None, &[], None).await.unwrap();
        use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
        let stats = StatisticsContext::new()
            .compute(plan.as_ref(), &StatisticsArgs::new())
            .unwrap();
        assert_eq!(stats.num_rows, Precision::Exact(6));
        let column = |name: &str| {
            let c = &stats.column_statistics[plan.schema().index_of(name).unwrap()];
            let value = |v: &Precision<ScalarValue>| match v.get_value() {
                Some(ScalarValue::Int64(Some(v))) => Some(*v),
                _ => None,
            };
            let nulls = c.null_count.get_value().copied();
            (value(&c.min_value), value(&c.max_value), nulls)
        };
        assert_eq!(column("x"), (Some(-3), Some(9), Some(1)));
        assert_eq!(column("p"), (Some(1), Some(2), Some(0)));
    }

    /// Tables another engine made with columns Delta's reader presents differently (string
    /// partitions as dictionaries, strings nested in lists as views) are read by Delta's
    /// provider; integer partitions and flat columns by the file scan.
    #[tokio::test]
    async fn string_partitions_and_nested_columns_are_left_to_delta() {
        use deltalake::kernel::{ArrayType, DataType as D, StructField};
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("plain", vec![StructField::nullable("p", D::LONG)], true),
            ("text", vec![StructField::nullable("p", D::STRING)], false),
            (
                "nested",
                vec![
                    StructField::nullable("p", D::LONG),
                    StructField::nullable("xs", ArrayType::new(D::STRING, true)),
                ],
                false,
            ),
        ];
        for (name, mut columns, ours) in cases {
            columns.push(StructField::nullable("x", D::LONG));
            let path = dir.path().join(name);
            std::fs::create_dir_all(&path).unwrap();
            let url = url::Url::from_directory_path(&path).unwrap();
            let table = deltalake::DeltaTableBuilder::from_url(url)
                .unwrap()
                .build()
                .unwrap()
                .create()
                .with_columns(columns)
                .with_partition_columns(["p"])
                .await
                .unwrap();
            let p = provider(&table, true).await.unwrap();
            assert_eq!(p.downcast_ref::<LakeFiles>().is_some(), ours, "{name}");
        }
    }
}
