use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use deltalake::kernel::StructField;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::{DeltaTable, DeltaTableBuilder};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tributary_schemas::tables;
use url::Url;

use crate::append::AppendBuilder;
use crate::{Error, Result};

/// A lake: Delta tables and objects under one root URL.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// Object-store options given to [`Lake::open_with`], passed on to Delta.
    options: HashMap<String, String>,
}

impl Lake {
    /// Opens the lake at `root`: a local path (created if missing) or an `s3://bucket/prefix`
    /// URL. S3 settings come from the standard `AWS_*` environment variables
    /// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_ALLOW_HTTP` for a plain-HTTP endpoint); see [`Lake::open_with`] to pass them.
    pub fn open(root: &str) -> Result<Self> {
        Self::open_with(root, HashMap::new())
    }

    /// Opens the lake at `root` with object-store options (`aws_endpoint`, `aws_region`,
    /// `aws_access_key_id`, …) that take precedence over the environment.
    ///
    /// Concurrent writers on S3 are safe: Delta commits are conditional puts
    /// (`If-None-Match: *`), so a server must support them (AWS S3, MinIO, R2 and moto do).
    pub fn open_with(root: &str, options: HashMap<String, String>) -> Result<Self> {
        let root = if root.contains("://") {
            Url::parse(root).map_err(|e| Error::Config(format!("lake root {root:?}: {e}")))?
        } else {
            std::fs::create_dir_all(root)
                .map_err(|e| Error::Config(format!("cannot create lake directory {root}: {e}")))?;
            let abs = Path::new(root)
                .canonicalize()
                .map_err(|e| Error::Config(format!("lake directory {root}: {e}")))?;
            Url::from_directory_path(&abs)
                .map_err(|()| Error::Config(format!("lake directory {root} is not absolute")))?
        };
        let root = ensure_trailing_slash(root);
        let (store, prefix): (Arc<dyn ObjectStore>, ObjectPath) = match root.scheme() {
            "file" => {
                let (store, prefix) = object_store::parse_url(&root)?;
                (Arc::from(store), prefix)
            }
            "s3" => {
                let mut builder = AmazonS3Builder::from_env().with_url(root.as_str());
                for (key, value) in &options {
                    if let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                        builder = builder.with_config(key, value);
                    }
                }
                let store = builder.build().map_err(|e| {
                    Error::Config(format!(
                        "lake root {root}: {e} (set AWS_REGION, AWS_ACCESS_KEY_ID, \
                         AWS_SECRET_ACCESS_KEY, and AWS_ENDPOINT_URL for a non-AWS server)"
                    ))
                })?;
                let prefix = ObjectPath::from_url_path(root.path())
                    .map_err(|e| Error::Config(format!("lake root {root}: {e}")))?;
                (Arc::new(store), prefix)
            }
            other => {
                return Err(Error::Config(format!(
                    "lake root {root}: the {other}:// scheme is not supported; use a local \
                     directory or s3://bucket/prefix"
                )));
            }
        };
        Ok(Self {
            root,
            store,
            prefix,
            options,
        })
    }

    /// The root URL (always ending in `/`).
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The URL of table `name`.
    pub fn table_url(&self, name: &str) -> Url {
        self.root
            .join(&format!("{name}/"))
            .expect("table names are valid URL segments")
    }

    /// Opens table `name`, creating it with its schema from `tributary_schemas` if missing.
    pub async fn table(&self, name: &str) -> Result<DeltaTable> {
        let schema = schema_of(name)?;
        let url = self.table_url(name);
        let mut table = DeltaTableBuilder::from_url(url.clone())?
            .with_storage_options(self.options.clone())
            .build()?;
        let exists = match url.to_file_path() {
            // Local: look before loading, since Delta refuses (and logs) a missing location.
            Ok(dir) => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
                dir.join("_delta_log").is_dir()
            }
            Err(()) => true,
        };
        if exists {
            match table.load().await {
                Ok(()) => return Ok(table),
                Err(deltalake::DeltaTableError::NotATable(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let columns: Vec<StructField> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().try_into_kernel())
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Config(format!("schema of {name}: {e}")))?;
        let created = table
            .create()
            .with_table_name(name)
            .with_columns(columns)
            .with_partition_columns(tables::partition_columns(name).iter().copied())
            .with_save_mode(deltalake::protocol::SaveMode::Ignore)
            .await;
        match created {
            Ok(table) => Ok(table),
            // Another writer created it first: use theirs.
            Err(e) => {
                let mut table = DeltaTableBuilder::from_url(url)?
                    .with_storage_options(self.options.clone())
                    .build()?;
                match table.load().await {
                    Ok(()) => Ok(table),
                    Err(_) => Err(e.into()),
                }
            }
        }
    }

    /// Starts an append of record batches to table `name`.
    pub fn append(&self, name: &str) -> AppendBuilder {
        AppendBuilder::new(self.clone(), name)
    }

    /// Deletes the rows of table `name` matching `predicate` (SQL, e.g.
    /// `chain_id = 1 AND block_number > 99`) in one commit; returns the rows deleted.
    pub async fn delete(&self, name: &str, predicate: &str) -> Result<u64> {
        let table = self.table(name).await?;
        let (_, metrics) = table.delete().with_predicate(predicate).await?;
        Ok(metrics.num_deleted_rows.unwrap_or(0) as u64)
    }

    /// The application transaction ids table `name` holds (what idempotent appends have
    /// landed), from its latest snapshot: the checkpoint's `txn` column and the commits after
    /// it (at most a checkpoint interval of them), not every commit since version 0. Ids whose
    /// commit files log cleanup removed are there too, kept by the checkpoint.
    pub async fn app_ids(&self, name: &str) -> Result<std::collections::BTreeSet<String>> {
        crate::append::app_ids(&self.table(name).await?).await
    }

    /// A version of table `name` that holds the rows of its application transaction `app_id`:
    /// its commit's version when that commit is after the latest checkpoint, else the current
    /// one (appends are never rewritten, so it holds those rows too). `None` when the table
    /// does not hold `app_id`.
    pub async fn committed_at(&self, name: &str, app_id: &str) -> Result<Option<u64>> {
        let table = self.table(name).await?;
        let held = table
            .snapshot()?
            .transaction_version(&*table.log_store(), app_id)
            .await?;
        match held {
            Some(_) => crate::append::committed_version(&table, app_id)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// The id of table `name` (Delta's `metaData.id`, created with it if missing): fixed when
    /// the table is created and kept by copies, so a table dropped and created again, or
    /// another root's table, has another.
    pub async fn table_id(&self, name: &str) -> Result<String> {
        Ok(self
            .table(name)
            .await?
            .snapshot()?
            .metadata()
            .id()
            .to_string())
    }

    /// Whether the root holds any of Tributary's tables (`datanet create` makes them all; an
    /// indexer's mirror makes its own): false for a root nothing has set up, a mistyped one.
    pub async fn is_set_up(&self) -> Result<bool> {
        for name in tables::names::ALL {
            let log = self.object_path(&format!("{name}/_delta_log/"));
            match self.store.list(Some(&log)).try_next().await {
                Ok(Some(_)) => return Ok(true),
                Ok(None) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// The current version of table `name`, `None` when it has no commit yet.
    pub async fn version(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.table(name).await?.version())
    }

    /// All rows of table `name` as of `version` (the latest when `None`).
    pub async fn read(&self, name: &str, version: Option<u64>) -> Result<Vec<RecordBatch>> {
        let mut table = self.table(name).await?;
        if let Some(v) = version {
            table.load_version(v).await?;
        }
        let (_, stream) = table.scan_table().await?;
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        let schema = schema_of(name)?;
        batches.iter().map(|b| conform(b, &schema)).collect()
    }

    /// Streams columns `columns` of the rows of table `name` as of `version` (the latest when
    /// `None`) where `filter` holds: [`Scanner::scan`] of a one-off [`Lake::scanner`].
    pub async fn scan(
        &self,
        name: &str,
        version: Option<u64>,
        columns: &[&str],
        filter: Option<&str>,
    ) -> Result<impl futures::Stream<Item = Result<RecordBatch>> + Send + use<>> {
        self.scanner(name, version)
            .await?
            .scan(columns, filter)
            .await
    }

    /// An adapter's held-out credit as written when it was trained: the `attributions` rows
    /// of subject `adapter` (method `tracin`) with a positive share, as (contribution id,
    /// contributor, Datanet, share) in their stored form. `adapter` is its `0x…` id.
    pub async fn adapter_credit(&self, adapter: &str) -> Result<Vec<(String, String, i64, f64)>> {
        use arrow::array::AsArray;
        use arrow::datatypes::{Float64Type, Int64Type};
        if !adapter.starts_with("0x") || !adapter[2..].bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Config(format!(
                "{adapter:?} is not an adapter id: want 0x and 64 hex digits"
            )));
        }
        let filter = format!(
            "subject_kind = 'adapter' AND method = 'tracin' AND subject_id = '{adapter}' AND share > 0"
        );
        let columns = ["contribution_id", "contributor", "datanet_id", "share"];
        let batches: Vec<RecordBatch> = self
            .scan(tables::names::ATTRIBUTIONS, None, &columns, Some(&filter))
            .await?
            .try_collect()
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            let (c, who) = (
                b.column(0).as_string::<i32>(),
                b.column(1).as_string::<i32>(),
            );
            let d = b.column(2).as_primitive::<Int64Type>();
            let share = b.column(3).as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                out.push((
                    c.value(i).to_string(),
                    who.value(i).to_string(),
                    d.value(i),
                    share.value(i),
                ));
            }
        }
        Ok(out)
    }

    /// An adapter's credit over held-out data, per contribution: a trained adapter's own
    /// ([`Lake::adapter_credit`]); a merge's, its trained ancestors' held-out shares times
    /// their part of the merge (positive merge weights, normalised at each merge), summed.
    /// (contribution id, contributor, Datanet, weight), by contribution id.
    pub async fn credit_of(
        &self,
        m: &tributary_schemas::manifest::AdapterManifest,
    ) -> Result<Vec<(String, String, i64, f64)>> {
        let mut by: std::collections::BTreeMap<String, (String, i64, f64)> = Default::default();
        let mut stack = vec![(m.clone(), 1.0f64)];
        while let Some((m, w)) = stack.pop() {
            if m.metrics.is_some() {
                for (c, who, d, share) in self.adapter_credit(&m.adapter_id.to_string()).await? {
                    by.entry(c).or_insert((who, d, 0.0)).2 += share * w;
                }
                continue;
            }
            let total: f64 = m.parents.iter().map(|p| p.weight.max(0.0)).sum();
            for p in m.parents.iter().filter(|p| p.weight > 0.0) {
                let bytes = self
                    .get(&tributary_schemas::manifest::AdapterManifest::key(p.id))
                    .await?;
                let parent = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Config(format!("adapter {}'s manifest does not parse: {e}", p.id))
                })?;
                stack.push((parent, w * p.weight / total));
            }
        }
        Ok(by
            .into_iter()
            .map(|(c, (who, d, w))| (c, who, d, w))
            .collect())
    }

    /// Table `name` as of `version` (the latest when `None`), loaded once for any number of
    /// [`Scanner::scan`]s.
    pub async fn scanner(&self, name: &str, version: Option<u64>) -> Result<Scanner> {
        use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
        let mut table = self.table(name).await?;
        if let Some(v) = version {
            table.load_version(v).await?;
        }
        // One file at a time: a scan's memory is one row group's columns and one batch.
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        ctx.register_table("t", table.table_provider().await?)?;
        Ok(Scanner {
            name: name.to_string(),
            ctx,
        })
    }

    /// Writes an object at `key` (relative to the root) and returns its URI (for display:
    /// record the key).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<Url> {
        let path = self.object_path(key);
        self.store.put(&path, bytes.into()).await?;
        Ok(self.uri(key))
    }

    /// Writes an object at `key` only when none is there (a conditional put, `If-None-Match:
    /// *` on S3): `false`, and nothing written, when another writer put it first.
    pub async fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<bool> {
        let create = object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.object_path(key), bytes.into(), create)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the object `reference` names: a key relative to the root (what the lake and the
    /// chain record, so a lake copied or synced elsewhere still resolves), or an absolute URI
    /// under this root. A URI under another root, or a key that would leave the root, is an
    /// error ([`Error::is_not_found`]): see [`Lake::locate`] for references recorded before a
    /// lake moved.
    pub async fn get(&self, reference: &str) -> Result<Vec<u8>> {
        let key = self.key_of(reference).ok_or_else(|| {
            Error::Config(format!(
                "{reference} is not in the lake at {}: a key relative to the lake root, or a URI under it, is needed",
                self.root
            ))
        })?;
        let bytes = self
            .store
            .get(&self.object_path(&key))
            .await?
            .bytes()
            .await?;
        Ok(bytes.to_vec())
    }

    /// The key (relative to the root) `reference` names: a key as is, or an absolute URI
    /// under this lake's root stripped of it. `None` for a URI under another root and for
    /// keys that would leave the root (a leading `/`, a `..` segment).
    pub fn key_of(&self, reference: &str) -> Option<String> {
        let key = if reference.contains("://") {
            // A URI's path is percent-encoded (a key "a b.json" is ".../a%20b.json"); a key
            // is not.
            let encoded = reference.strip_prefix(self.root.as_str())?;
            percent_encoding::percent_decode_str(encoded)
                .decode_utf8()
                .ok()?
                .into_owned()
        } else {
            reference.to_string()
        };
        let escapes = key.starts_with('/') || key.split('/').any(|part| part == "..");
        (!escapes).then_some(key)
    }

    /// Where the object `reference` names lives in this lake, or at `canonical` (the key
    /// the object is always written at) when `reference` is an absolute URI under another
    /// root: recorded by a lake that has since been copied, moved or synced here.
    pub fn locate(&self, reference: &str, canonical: &str) -> String {
        self.key_of(reference)
            .unwrap_or_else(|| canonical.to_string())
    }

    /// Reads an object the chain or the lake recorded as `reference` (a key, or a URI from
    /// before keys were recorded): where [`Lake::locate`] puts it, or at `canonical` when not
    /// found there (a lake migrated since keeps it at its own key).
    pub async fn get_recorded(&self, reference: &str, canonical: &str) -> Result<Vec<u8>> {
        match self.get(&self.locate(reference, canonical)).await {
            Err(err) if err.is_not_found() => self.get(canonical).await,
            other => other,
        }
    }

    /// The absolute URI of `key` (for people and tools outside the lake; the lake and the
    /// chain record keys).
    pub fn uri(&self, key: &str) -> Url {
        // Joining escapes spaces and the like, not `%`: escaped here, so that
        // [`Lake::key_of`] decodes every key back as it was.
        self.root
            .join(&key.replace('%', "%25"))
            .expect("keys are valid URL paths")
    }

    /// Keys (relative to the root) of the objects right under `prefix` (a folder key ending in
    /// `/`) and of the sub-folders there (ending in `/`); not recursive.
    pub async fn list_folder(&self, prefix: &str) -> Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.object_path(prefix)))
            .await?;
        let relative = |p: &ObjectPath| -> String {
            p.parts()
                .skip(self.prefix.parts().count())
                .map(|part| part.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/")
        };
        let mut out: Vec<String> = listed
            .objects
            .iter()
            .map(|o| relative(&o.location))
            .collect();
        out.extend(
            listed
                .common_prefixes
                .iter()
                .map(|p| format!("{}/", relative(p))),
        );
        Ok(out)
    }

    /// Keys (relative to the root) of every object under folder `prefix`, recursively.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<String>> {
        let skip = self.prefix.parts().count();
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.object_path(prefix)))
            .try_collect()
            .await?;
        Ok(objects
            .iter()
            .map(|o| {
                o.location
                    .parts()
                    .skip(skip)
                    .map(|part| part.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect())
    }

    /// Moves the object at key `from` to key `to` (replacing what is there), both relative to
    /// the root.
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.store
            .rename(&self.object_path(from), &self.object_path(to))
            .await?;
        Ok(())
    }

    /// Deletes from table `name`'s folder every file no version after `retain_hours` ago
    /// refers to, as Spark's `VACUUM` does (delta-rs's full mode: also files the log never
    /// named; 0 keeps only the latest version's files). Returns the files deleted.
    pub async fn vacuum(&self, name: &str, retain_hours: u64) -> Result<usize> {
        let table = self.table(name).await?;
        let (_, metrics) = table
            .vacuum()
            .with_retention_period(chrono::Duration::hours(retain_hours as i64))
            .with_enforce_retention_duration(false)
            .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
            .await?;
        Ok(metrics.files_deleted.len())
    }

    fn object_path(&self, key: &str) -> ObjectPath {
        let key = ObjectPath::from(key);
        self.prefix.parts().chain(key.parts()).collect()
    }
}

/// The Arrow schema Tributary declares for table `name`.
pub(crate) fn schema_of(name: &str) -> Result<SchemaRef> {
    tables::schema(name).ok_or_else(|| Error::UnknownTable(name.to_string()))
}

/// `batch` with the declared schema's column order and types: the scan may hand back string
/// views or dictionary-encoded partition columns, callers get what `tributary_schemas` says.
/// One table as of one version, for streaming scans (see [`Lake::scanner`]).
pub struct Scanner {
    name: String,
    ctx: deltalake::datafusion::prelude::SessionContext,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("table", &self.name)
            .finish()
    }
}

impl Scanner {
    /// Streams columns `columns` of the rows where `filter` (SQL over the table's columns,
    /// e.g. `datanet_id = 7`) holds, a record batch at a time: memory stays bounded by a row
    /// group whatever the table's size, and a filter on the partition column reads only that
    /// partition's files.
    pub async fn scan(
        &self,
        columns: &[&str],
        filter: Option<&str>,
    ) -> Result<impl futures::Stream<Item = Result<RecordBatch>> + Send + use<>> {
        let name = &self.name;
        let full = schema_of(name)?;
        let indices = columns
            .iter()
            .map(|c| {
                full.index_of(c)
                    .map_err(|_| Error::Config(format!("table {name} has no column {c:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let schema: SchemaRef = Arc::new(full.project(&indices)?);
        let list: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
        let mut sql = format!("SELECT {} FROM t", list.join(", "));
        if let Some(f) = filter {
            sql.push_str(" WHERE ");
            sql.push_str(f);
        }
        let stream = self.ctx.sql(&sql).await?.execute_stream().await?;
        Ok(stream
            .map_err(Error::from)
            .and_then(move |b| std::future::ready(conform(&b, &schema))))
    }
}

fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let col = batch.column_by_name(f.name()).ok_or_else(|| {
                Error::Config(format!(
                    "the table has no column {:?}: was it written by another tool?",
                    f.name()
                ))
            })?;
            if col.data_type() == f.data_type() {
                Ok(col.clone())
            } else {
                Ok(arrow::compute::cast(col, f.data_type())?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn ensure_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    url
}
