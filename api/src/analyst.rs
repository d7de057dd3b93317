//! SQL for analysts: a DataFusion session over the lake's Delta tables, the views in
//! `sql/views/*.sql`, time travel and an ancestry table function. Read-only, with a memory
//! pool, a per-query timeout and a row cap.
//!
//! - Every lake table by name (`contributions`, `lineage_edges`, …), read at its latest version
//!   when the query is planned.
//! - Time travel: `"contributions@v3"` (Delta version 3) or
//!   `"contributions@2026-11-25T10:00:00Z"` (the version current at that instant); quote the
//!   name, since `@` is not part of a bare SQL identifier.
//! - `ancestry('inference:0x…', 6)`: everything upstream of a node within that many edges, from
//!   the index store (id, kind, properties, block, transaction).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::catalog::{Session, TableFunctionImpl};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{DataFusionError, ScalarValue, plan_err};
use datafusion::datasource::{TableType, ViewTable};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use tributary_lake::Lake;
use tributary_schemas::tables::names;
use tributary_sql::{Direction, LineageIndex, PageRequest, Store};

/// The views, in the order they are created (`sql/views/*.sql`).
pub const VIEWS: &[(&str, &str)] = &[
    (
        "revoked_contributions",
        include_str!("../../sql/views/revoked_contributions.sql"),
    ),
    (
        "contributor_leaderboard",
        include_str!("../../sql/views/contributor_leaderboard.sql"),
    ),
    (
        "datanet_stats_over_time",
        include_str!("../../sql/views/datanet_stats_over_time.sql"),
    ),
    (
        "adapter_lineage",
        include_str!("../../sql/views/adapter_lineage.sql"),
    ),
    (
        "attribution_by_contributor",
        include_str!("../../sql/views/attribution_by_contributor.sql"),
    ),
    (
        "contribution_influence",
        include_str!("../../sql/views/contribution_influence.sql"),
    ),
    (
        "contributor_influence",
        include_str!("../../sql/views/contributor_influence.sql"),
    ),
    (
        "reward_ledger",
        include_str!("../../sql/views/reward_ledger.sql"),
    ),
];

/// Limits on every query.
#[derive(Debug, Clone)]
pub struct SqlLimits {
    /// Memory the query's operators may hold (sorts and joins spill or fail past it).
    pub memory_bytes: usize,
    /// Wall-clock time a query may take.
    pub timeout: Duration,
    /// Rows returned at most; a longer answer is cut and marked truncated.
    pub max_rows: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 << 20,
            timeout: Duration::from_secs(30),
            max_rows: 100_000,
        }
    }
}

/// Why a query did not answer.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// Not a read: DDL, DML and session statements are refused.
    #[error(
        "only queries are allowed (SELECT, WITH, EXPLAIN, SHOW); {0} is refused: the lake is \
         written by Tributary's own commands"
    )]
    ReadOnly(String),
    /// The query ran past the time limit.
    #[error("the query ran longer than {0:?} and was stopped: narrow it or raise the timeout")]
    Timeout(Duration),
    /// The query needed more memory than the pool allows.
    #[error("the query needs more memory than the {limit} MiB allowed per query: {detail}")]
    Memory {
        /// The pool size in MiB.
        limit: usize,
        /// DataFusion's account.
        detail: String,
    },
    /// Anything else the planner or executor refused (syntax, unknown table or column…).
    #[error("{0}")]
    Query(String),
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Column names and types.
    pub schema: SchemaRef,
    /// The rows, at most `max_rows`.
    pub batches: Vec<RecordBatch>,
    /// True when more rows existed than `max_rows`.
    pub truncated: bool,
}

impl Answer {
    /// Rows returned.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// A SQL session over a lake (and the index store, for `ancestry`).
///
/// Queries execute on the session's own runtime: DataFusion's operators compute without
/// yielding for long stretches, and on the caller's runtime they would starve its timers
/// (the timeout) and every other request.
#[derive(Clone)]
pub struct Analyst {
    ctx: Arc<SessionContext>,
    limits: SqlLimits,
    cpu: Arc<CpuRuntime>,
    /// Counts the statements planned: a cached table is brought up to date once per number.
    planned: Arc<AtomicU64>,
}

/// The query runtime; shut down in the background when the last session handle goes, since
/// a runtime may not be dropped (blocking) from async code.
struct CpuRuntime(Option<tokio::runtime::Runtime>);

impl CpuRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("runtime until drop").handle()
    }
}

impl Drop for CpuRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Analyst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyst")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Analyst {
    /// Opens a session over `lake` with the views registered; `ancestry` walks `store`'s graph
    /// of chain `chain_id` through a lineage index of its own.
    pub async fn open(
        lake: Lake,
        store: Store,
        chain_id: u64,
        limits: SqlLimits,
    ) -> Result<Self, SqlError> {
        let index = LineageIndex::new(store, chain_id, None, crate::REORG_WINDOW);
        Self::open_over(lake, index, limits).await
    }

    /// Opens a session over `lake` whose `ancestry` walks `index` (shared with GraphQL), and
    /// whose `jobs` and `job_runs` come from the index's store.
    pub async fn open_over(
        lake: Lake,
        index: LineageIndex,
        limits: SqlLimits,
    ) -> Result<Self, SqlError> {
        let store = index.store().clone();
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(limits.memory_bytes)))
            .build_arc()
            .map_err(query)?;
        let config = SessionConfig::new().with_information_schema(true);
        let view_types = config.options().execution.parquet.schema_force_view_types;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(YieldingJoins))
            .build();
        let ctx = Arc::new(SessionContext::new_with_state(state));
        // Delta tables read through the lake's object store: register it once.
        let table = lake
            .table(names::CONTRIBUTIONS)
            .await
            .map_err(|e| SqlError::Query(e.to_string()))?;
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| SqlError::Query(e.to_string()))?;
        let mut views = HashMap::new();
        for (name, sql) in VIEWS {
            let head = format!("CREATE VIEW {name} AS");
            let select = sql
                .split_once(&head)
                .map(|(_, s)| s.trim())
                .ok_or_else(|| {
                    SqlError::Query(format!("sql/views/{name}.sql does not start {head:?}"))
                })?;
            views.insert(name.to_string(), select.to_string());
        }
        let planned = Arc::new(AtomicU64::new(0));
        let schema = Arc::new_cyclic(|me| LakeSchema {
            me: me.clone(),
            lake,
            store: store.clone(),
            views,
            session: Arc::downgrade(&ctx),
            view_types,
            tables: std::sync::Mutex::new(HashMap::new()),
            planned: planned.clone(),
            view_plans: std::sync::Mutex::new(HashMap::new()),
        });
        ctx.catalog("datafusion")
            .expect("the default catalog exists")
            .register_schema("public", schema)
            .map_err(query)?;
        ctx.register_udtf("ancestry", Arc::new(AncestryFn { index }));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let cpu = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("tributary-sql")
            .enable_all()
            .build()
            .map_err(|e| SqlError::Query(format!("starting the query runtime: {e}")))?;
        Ok(Self {
            ctx,
            limits,
            cpu: Arc::new(CpuRuntime(Some(cpu))),
            planned,
        })
    }

    /// The limits queries run under.
    pub fn limits(&self) -> &SqlLimits {
        &self.limits
    }

    /// Tasks alive on this session's query runtime: the statements executing and the tasks
    /// they spawned (a query stopped by its timeout stops counting once its abort lands).
    pub fn running(&self) -> usize {
        self.cpu.handle().metrics().num_alive_tasks()
    }

    /// Runs one read-only statement on the session's runtime, so the timeout answers on time
    /// even while operators compute without yielding; the query is aborted then.
    pub async fn query(&self, sql: &str) -> Result<Answer, SqlError> {
        let this = self.clone();
        let sql = sql.to_string();
        let mut task = self.cpu.handle().spawn(async move { this.run(&sql).await });
        match tokio::time::timeout(self.limits.timeout, &mut task).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => Err(SqlError::Query(format!("the query task failed: {e}"))),
            Err(_) => {
                task.abort();
                Err(SqlError::Timeout(self.limits.timeout))
            }
        }
    }

    async fn run(&self, sql: &str) -> Result<Answer, SqlError> {
        let df = self.plan(sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let df = df.limit(0, Some(self.limits.max_rows + 1)).map_err(query)?;
        let memory = self.limits.memory_bytes;
        let mut batches = df.collect().await.map_err(|e| refused(e, memory))?;
        let truncated = cap(&mut batches, self.limits.max_rows);
        Ok(Answer {
            schema,
            batches,
            truncated,
        })
    }

    /// Plans one statement; anything but a read is refused here.
    async fn plan(&self, sql: &str) -> Result<DataFrame, SqlError> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        self.begin_statement();
        self.ctx
            .sql_with_options(sql, options)
            .await
            .map_err(|e| refused(e, self.limits.memory_bytes))
    }

    /// Runs one read-only statement and streams all its rows (no row cap: for clients that
    /// page themselves, like the PostgreSQL wire protocol). The query computes on the
    /// session's runtime; past the timeout, counted from the start to the last batch, it is
    /// aborted and the stream ends with [`SqlError::Timeout`]. Dropping the stream stops it.
    pub async fn stream(&self, sql: &str) -> Result<(SchemaRef, Batches), SqlError> {
        let limit = self.limits.timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let memory = self.limits.memory_bytes;
        let (schema_tx, schema_rx) = tokio::sync::oneshot::channel();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let this = self.clone();
        let sql = sql.to_string();
        let task = self.cpu.handle().spawn(async move {
            let started = async {
                let df = this.plan(&sql).await?;
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let stream = df.execute_stream().await.map_err(|e| refused(e, memory))?;
                Ok::<_, SqlError>((schema, stream))
            };
            let mut stream = match started.await {
                Ok((schema, stream)) => {
                    if schema_tx.send(Ok(schema)).is_err() {
                        return;
                    }
                    stream
                }
                Err(e) => {
                    let _ = schema_tx.send(Err(e));
                    return;
                }
            };
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(|e| refused(e, memory));
                let failed = batch.is_err();
                if tx.send(batch).await.is_err() || failed {
                    return;
                }
            }
        });
        let producer = AbortOnDrop(task.abort_handle());
        let schema = match tokio::time::timeout_at(deadline, schema_rx).await {
            Err(_) => return Err(SqlError::Timeout(limit)),
            Ok(Err(_)) => return Err(SqlError::Query("the query task failed".into())),
            Ok(Ok(answer)) => answer?,
        };
        let batches = futures::stream::unfold(Some((rx, producer)), move |state| async move {
            let (mut rx, producer) = state?;
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Ok(batch))) => Some((Ok(batch), Some((rx, producer)))),
                Ok(Some(Err(e))) => Some((Err(e), None)),
                Ok(None) => None,
                Err(_) => Some((Err(SqlError::Timeout(limit)), None)),
            }
        });
        Ok((schema, Box::pin(batches)))
    }

    /// The DataFusion session (for the PostgreSQL wire protocol's catalog and session
    /// statements).
    pub(crate) fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Starts a statement: every table it plans or scans is read at its version as of now
    /// (or later). Plans made outside [`Analyst::plan`] (the PostgreSQL extended protocol's
    /// prepared statements) call this before each execution.
    pub(crate) fn begin_statement(&self) {
        self.planned.fetch_add(1, Ordering::SeqCst);
    }
}

/// Wraps every join (and unnest) in a [`CooperativeExec`], so it spends the task's scheduling
/// budget on each batch it emits. DataFusion makes only the leaves cooperative; a join can
/// emit millions of batches from one input batch, and the aggregate above it pulls them in one
/// poll, so a timed-out query's task was never polled again to be aborted and kept the query
/// runtime busy. A yield every 128 batches lets the abort land.
#[derive(Debug)]
struct YieldingJoins;

impl PhysicalOptimizerRule for YieldingJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        plan.transform_up(|node| {
            let name = node.name();
            Ok(if name.contains("Join") || name == "UnnestExec" {
                Transformed::yes(Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>)
            } else {
                Transformed::no(node)
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "yielding_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The batches of [`Analyst::stream`].
pub type Batches =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<RecordBatch, SqlError>> + Send>>;

/// Aborts the query task when the stream reading it goes away.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps the first `max` rows; true when rows were cut.
fn cap(batches: &mut Vec<RecordBatch>, max: usize) -> bool {
    let mut left = max;
    let mut out = Vec::with_capacity(batches.len());
    let mut truncated = false;
    for b in batches.drain(..) {
        if b.num_rows() <= left {
            left -= b.num_rows();
            out.push(b);
        } else {
            truncated = true;
            if left > 0 {
                out.push(b.slice(0, left));
            }
            left = 0;
        }
    }
    *batches = out;
    truncated
}

fn query(e: DataFusionError) -> SqlError {
    SqlError::Query(e.to_string())
}

/// Sorts DataFusion's refusals into the errors users act on.
fn refused(e: DataFusionError, memory: usize) -> SqlError {
    let text = e.to_string();
    let root = e.find_root();
    if matches!(root, DataFusionError::ResourcesExhausted(_)) {
        return SqlError::Memory {
            limit: memory >> 20,
            detail: root.to_string(),
        };
    }
    // SQLOptions' refusals: "DDL not supported: …", "DML not supported: …",
    // "Statement not supported: …".
    for kind in ["DDL", "DML", "Statement"] {
        let marker = format!("{kind} not supported: ");
        if let Some((_, what)) = text.split_once(&marker) {
            return SqlError::ReadOnly(format!("{} ({kind})", what.trim()));
        }
    }
    SqlError::Query(text)
}

/// Where an `@` suffix points in a table's history.
enum At {
    Latest,
    Version(u64),
    Time(chrono::DateTime<chrono::Utc>),
}

/// The lake's tables as DataFusion's `public` schema, resolved when a query names them. A
/// view reads the tables as they are when a query names it: its plan is kept only while
/// every table it reads is unchanged, and made again from its SQL otherwise (a view planned
/// once for good would keep the table versions of that moment forever).
#[derive(Debug)]
struct LakeSchema {
    /// Itself, for the [`Fresh`] tables it hands out.
    me: std::sync::Weak<LakeSchema>,
    lake: Lake,
    /// The job store: `jobs` and `job_runs` are read from it live.
    store: Store,
    /// View name -> its SELECT.
    views: HashMap<String, String>,
    /// The session the views are planned in (weak: the session holds this schema).
    session: std::sync::Weak<SessionContext>,
    /// Whether the session reads Parquet strings and binaries as view types.
    view_types: bool,
    /// Each lake table as last loaded, brought up to date (new commits only) once per
    /// statement instead of loaded from its log for every name a statement mentions.
    tables: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
    /// Statements planned so far (the session's count).
    planned: Arc<AtomicU64>,
    /// Each view as last planned, used again while the tables it reads are unchanged.
    view_plans: std::sync::Mutex<HashMap<String, PlannedView>>,
}

/// A view's plan and the lake tables it reads (its nested views' too), as the providers it
/// was planned over: while [`LakeSchema::latest`] gives the same providers, planning the view's
/// SQL again would give the same plan.
struct PlannedView {
    view: Arc<dyn TableProvider>,
    reads: Reads,
}

/// Lake tables by name, each as the provider a plan was made over.
type Reads = Vec<(String, Arc<dyn TableProvider>)>;

impl std::fmt::Debug for PlannedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reads: Vec<&str> = self.reads.iter().map(|(t, _)| t.as_str()).collect();
        f.debug_struct("PlannedView")
            .field("reads", &reads)
            .finish()
    }
}

/// The lake tables `plan` reads (nested views' too, where planning left them as scans), or
/// `None` when it reads anything else (the job store's live tables, a table at a past
/// version, a table function), whose plan must not be kept.
fn lake_reads(
    plan: &datafusion::logical_expr::LogicalPlan,
) -> Result<Option<Reads>, DataFusionError> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::logical_expr::LogicalPlan;
    let mut reads = Some(Vec::new());
    plan.apply_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let source = datafusion::datasource::source_as_provider(&scan.source)?;
        let table = scan.table_name.table();
        let more = if let Some(view) = source.downcast_ref::<ViewTable>() {
            lake_reads(view.logical_plan())?
        } else if let Some(fresh) = source.downcast_ref::<Fresh>()
            && names::ALL.contains(&table)
        {
            Some(vec![(table.to_string(), fresh.planned.clone())])
        } else {
            None
        };
        reads = reads.take().zip(more).map(|(mut r, m)| {
            r.extend(m);
            r
        });
        Ok(if reads.is_some() {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    })?;
    Ok(reads)
}

/// A lake table as [`LakeSchema`] keeps it.
struct Cached {
    table: deltalake::DeltaTable,
    provider: Arc<dyn TableProvider>,
    /// The statement number it was last brought up to date for.
    planned: u64,
    /// The commit file of the table's version as it was read: commit files never change, so
    /// a different or missing one means the log was replaced (the table deleted and made again
    /// by another engine) or cleaned up, and the table is reloaded.
    commit: Option<deltalake::ObjectMeta>,
}

/// The commit file of `table`'s version `version`, if it is there.
async fn commit_of(
    table: &deltalake::DeltaTable,
    version: u64,
) -> Result<Option<deltalake::ObjectMeta>, DataFusionError> {
    use deltalake::logstore::object_store::ObjectStoreExt;
    let path = deltalake::logstore::commit_uri_from_version(Some(version));
    match table.log_store().object_store(None).head(&path).await {
        Ok(m) => Ok(Some(m)),
        Err(deltalake::ObjectStoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(DataFusionError::External(Box::new(e))),
    }
}

impl std::fmt::Debug for Cached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("version", &self.table.version())
            .field("planned", &self.planned)
            .finish()
    }
}

impl LakeSchema {
    /// Table `name` at its latest version: the cached table, with the commits made since it
    /// was last read applied (once per statement); loaded afresh when it is new here or its
    /// log cannot be followed (rewritten or cleaned up by another engine).
    async fn latest(&self, name: &str) -> Result<Arc<dyn TableProvider>, DataFusionError> {
        let slot = self
            .tables
            .lock()
            .expect("lock")
            .entry(name.to_string())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        let now = self.planned.load(Ordering::SeqCst);
        if let Some(c) = slot.as_ref().filter(|c| c.planned == now) {
            return Ok(c.provider.clone());
        }
        let external = |e: tributary_lake::Error| DataFusionError::External(Box::new(e));
        let table = match slot.take() {
            Some(mut c) => {
                let before = c.table.version().unwrap_or(0);
                // The commit the cached state was read at must still be the one there;
                // otherwise later commits belong to another table (a replaced log).
                let same = c.commit.is_some() && commit_of(&c.table, before).await? == c.commit;
                if !same {
                    tracing::info!(
                        table = name,
                        "the table's log was replaced or cleaned up: reloading it"
                    );
                    self.lake.table(name).await.map_err(external)?
                } else if commit_of(&c.table, before + 1).await?.is_none() {
                    // Unchanged (the common case), told by two `HEAD`s instead of a listing
                    // of the log and a snapshot update.
                    c.planned = now;
                    let provider = c.provider.clone();
                    *slot = Some(c);
                    return Ok(provider);
                } else {
                    match c.table.update_incremental(None).await {
                        Ok(()) => c.table,
                        Err(e) => {
                            tracing::debug!(table = name, error = %e, "reloading a lake table");
                            self.lake.table(name).await.map_err(external)?
                        }
                    }
                }
            }
            None => self.lake.table(name).await.map_err(external)?,
        };
        let commit = commit_of(&table, table.version().unwrap_or(0)).await?;
        let provider = crate::lake_files::provider(&table, self.view_types).await?;
        *slot = Some(Cached {
            table,
            provider: provider.clone(),
            planned: now,
            commit,
        });
        Ok(provider)
    }

    /// Table `name` as of the statement that scans it, planned over `planned`.
    fn fresh(&self, name: &str, planned: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        Arc::new(Fresh {
            schema: self.me.clone(),
            name: name.to_string(),
            planned,
            at: self.planned.load(Ordering::SeqCst),
            read: std::sync::Mutex::new(None),
        })
    }

    /// Table `name` (of the lake, or the job store's) as of the current statement.
    async fn current(&self, name: &str) -> Result<Arc<dyn TableProvider>, DataFusionError> {
        if STORE_TABLES.contains(&name) {
            store_table(&self.store, name).await
        } else {
            self.latest(name).await
        }
    }

    /// View `name` as last planned, if every lake table it reads is unchanged since.
    async fn as_planned(
        &self,
        name: &str,
    ) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let kept = {
            let plans = self.view_plans.lock().expect("lock");
            plans.get(name).map(|p| (p.view.clone(), p.reads.clone()))
        };
        let Some((view, reads)) = kept else {
            return Ok(None);
        };
        for (table, provider) in &reads {
            if !Arc::ptr_eq(&self.latest(table).await?, provider) {
                return Ok(None);
            }
        }
        Ok(Some(view))
    }

    fn parse(name: &str) -> Result<(&str, At), DataFusionError> {
        let Some((table, at)) = name.split_once('@') else {
            return Ok((name, At::Latest));
        };
        if let Some(v) = at.strip_prefix('v').and_then(|v| v.parse().ok()) {
            return Ok((table, At::Version(v)));
        }
        match chrono::DateTime::parse_from_rfc3339(at) {
            Ok(t) => Ok((table, At::Time(t.with_timezone(&chrono::Utc)))),
            Err(_) => plan_err!(
                "{name:?}: after @ give a Delta version (\"{table}@v3\") or an RFC 3339 instant \
                 (\"{table}@2026-11-25T10:00:00Z\")"
            ),
        }
    }
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        let mut out: Vec<String> = names::ALL.iter().map(|s| s.to_string()).collect();
        out.extend(self.views.keys().cloned());
        out.extend(STORE_TABLES.iter().map(|s| s.to_string()));
        out
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if let Some(select) = self.views.get(name) {
            let Some(ctx) = self.session.upgrade() else {
                return plan_err!("the SQL session is closed");
            };
            if let Some(view) = self.as_planned(name).await? {
                return Ok(Some(view));
            }
            let plan = ctx.state().create_logical_plan(select).await?;
            let reads = lake_reads(&plan)?;
            let view: Arc<dyn TableProvider> = Arc::new(ViewTable::new(plan, Some(select.clone())));
            if let Some(reads) = reads {
                let planned = PlannedView {
                    view: view.clone(),
                    reads,
                };
                let mut plans = self.view_plans.lock().expect("lock");
                plans.insert(name.to_string(), planned);
            }
            return Ok(Some(view));
        }
        if STORE_TABLES.contains(&name) {
            return Ok(Some(
                self.fresh(name, store_table(&self.store, name).await?),
            ));
        }
        let (base, at) = Self::parse(name)?;
        if !names::ALL.contains(&base) {
            return Ok(None);
        }
        let external = |e: tributary_lake::Error| DataFusionError::External(Box::new(e));
        if let At::Latest = at {
            return Ok(Some(self.fresh(base, self.latest(base).await?)));
        }
        let mut table = self.lake.table(base).await.map_err(external)?;
        match at {
            At::Latest => {}
            At::Version(v) => table
                .load_version(v)
                .await
                .map_err(|e| DataFusionError::Plan(format!("{name}: {e}")))?,
            At::Time(t) => table
                .load_with_datetime(t)
                .await
                .map_err(|e| DataFusionError::Plan(format!("{name}: {e}")))?,
        }
        crate::lake_files::provider(&table, self.view_types)
            .await
            .map(Some)
    }

    fn table_exist(&self, name: &str) -> bool {
        STORE_TABLES.contains(&name)
            || self.views.contains_key(name)
            || Self::parse(name).is_ok_and(|(base, _)| names::ALL.contains(&base))
    }
}

/// A table of the lake or the job store, read as it is when a statement runs. A plan can run
/// long after it was made, and more than once: a prepared statement over the PostgreSQL
/// extended protocol, executed again and again, or a kept view plan. Its scan reads the table
/// as of the statement that runs it (what the plan was made over, when that is the same
/// statement; one version for all of a statement's scans), its columns found by name; a
/// removed or retyped column is refused.
#[derive(Debug)]
struct Fresh {
    schema: std::sync::Weak<LakeSchema>,
    name: String,
    /// The table the plan was made over, in statement `at`.
    planned: Arc<dyn TableProvider>,
    at: u64,
    /// The table as the last statement to scan it read it, by that statement's start time:
    /// every scan of one statement (a self-join, a view and its table) reads one version.
    read: std::sync::Mutex<Option<ReadAt>>,
}

/// A table as a statement read it, by the statement's start time.
type ReadAt = (chrono::DateTime<chrono::Utc>, Arc<dyn TableProvider>);

#[async_trait]
impl TableProvider for Fresh {
    fn schema(&self) -> SchemaRef {
        self.planned.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Inexact, whichever provider reads the table when the statement runs: the filters stay
    /// in the plan above the scan.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>, DataFusionError> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let Some(schema) = self.schema.upgrade() else {
            return plan_err!("the SQL session is closed");
        };
        let started = state.execution_props().query_execution_start_time;
        let kept = self.read.lock().expect("lock").clone();
        let now = match kept.filter(|(t, _)| Some(*t) == started) {
            Some((_, provider)) => provider,
            None if schema.planned.load(Ordering::SeqCst) == self.at => self.planned.clone(),
            None => schema.current(&self.name).await?,
        };
        if let Some(t) = started {
            *self.read.lock().expect("lock") = Some((t, now.clone()));
        }
        // The columns the plan reads, found by name (another engine may have added some).
        let (planned, current) = (self.planned.schema(), now.schema());
        let all: Vec<usize> = (0..planned.fields().len()).collect();
        let columns = projection
            .unwrap_or(&all)
            .iter()
            .map(|&i| {
                let field = planned.field(i);
                match current.index_of(field.name()) {
                    Ok(j) if current.field(j).data_type() == field.data_type() => Ok(j),
                    _ => plan_err!(
                        "column {} of table {} was removed or changed type since this \
                         statement was prepared: prepare it again",
                        field.name(),
                        self.name
                    ),
                }
            })
            .collect::<Result<Vec<_>, DataFusionError>>()?;
        now.scan(state, Some(&columns), filters, limit).await
    }
}

/// Tables read live from the job store, not the lake: the scheduler's jobs and run history.
const STORE_TABLES: [&str; 2] = ["jobs", "job_runs"];

/// `jobs` or `job_runs` as of now.
async fn store_table(store: &Store, name: &str) -> Result<Arc<dyn TableProvider>, DataFusionError> {
    use arrow::array::{BooleanArray, Float64Array, TimestampMillisecondArray};
    use datafusion::datasource::MemTable;
    let external = |e: tributary_sql::Error| DataFusionError::External(Box::new(e));
    let ts = || DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into()));
    let col = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
    let text = |v: Vec<Option<String>>| Arc::new(StringArray::from(v)) as ArrayRef;
    let time = |v: Vec<Option<i64>>| {
        Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC")) as ArrayRef
    };
    let count = |v: Vec<Option<u64>>| Arc::new(UInt64Array::from(v)) as ArrayRef;
    let (schema, columns): (Schema, Vec<ArrayRef>) = if name == "jobs" {
        let jobs = store.jobs().await.map_err(external)?;
        (
            Schema::new(vec![
                col("name", DataType::Utf8, false),
                col("cron", DataType::Utf8, false),
                col("line", DataType::Utf8, true),
                col("paused", DataType::Boolean, false),
                col("next_due", ts(), false),
                col("runs", DataType::UInt64, false),
                col("last_check_at", ts(), true),
                col("last_check", DataType::Utf8, true),
                col("spec", DataType::Utf8, false),
                col("created_by", DataType::Utf8, true),
            ]),
            vec![
                text(jobs.iter().map(|j| Some(j.name.clone())).collect()),
                text(jobs.iter().map(|j| Some(j.cron.clone())).collect()),
                text(
                    jobs.iter()
                        .map(|j| j.spec["line"].as_str().map(str::to_string))
                        .collect(),
                ),
                Arc::new(BooleanArray::from(
                    jobs.iter().map(|j| j.paused).collect::<Vec<_>>(),
                )),
                time(jobs.iter().map(|j| Some(j.next_due_ms)).collect()),
                count(jobs.iter().map(|j| Some(j.runs)).collect()),
                time(
                    jobs.iter()
                        .map(|j| j.last_check.as_ref().map(|c| c.0))
                        .collect(),
                ),
                text(
                    jobs.iter()
                        .map(|j| j.last_check.as_ref().map(|c| c.1.clone()))
                        .collect(),
                ),
                text(jobs.iter().map(|j| Some(j.spec.to_string())).collect()),
                text(jobs.iter().map(|j| j.created_by.clone()).collect()),
            ],
        )
    } else {
        let runs = store.runs(None, u64::MAX >> 1).await.map_err(external)?;
        let f = |get: fn(&tributary_sql::RunRow) -> Option<String>| {
            text(runs.iter().map(get).collect())
        };
        (
            Schema::new(vec![
                col("job", DataType::Utf8, false),
                col("seq", DataType::UInt64, false),
                col("trigger", DataType::Utf8, false),
                col("status", DataType::Utf8, false),
                col("due_at", ts(), false),
                col("started_at", ts(), false),
                col("finished_at", ts(), true),
                col("worker", DataType::Utf8, false),
                col("attempts", DataType::UInt64, false),
                col("snapshot_id", DataType::Utf8, true),
                col("contributions", DataType::UInt64, true),
                col("new_contributions", DataType::UInt64, true),
                col("adapter_id", DataType::Utf8, true),
                col("version", DataType::Utf8, true),
                col("current_loss", DataType::Float64, true),
                col("eval_loss", DataType::Float64, true),
                col("message", DataType::Utf8, false),
                col("requested_by", DataType::Utf8, true),
            ]),
            vec![
                f(|r| Some(r.job.clone())),
                count(runs.iter().map(|r| Some(r.seq)).collect()),
                f(|r| Some(r.trigger.clone())),
                f(|r| Some(r.status.as_str().to_string())),
                time(runs.iter().map(|r| Some(r.due_ms)).collect()),
                time(runs.iter().map(|r| Some(r.started_ms)).collect()),
                time(runs.iter().map(|r| r.finished_ms).collect()),
                f(|r| Some(r.worker.clone())),
                count(runs.iter().map(|r| Some(r.attempts)).collect()),
                f(|r| r.snapshot_id.clone()),
                count(runs.iter().map(|r| r.contributions).collect()),
                count(runs.iter().map(|r| r.new_contributions).collect()),
                f(|r| r.adapter_id.clone()),
                f(|r| r.version.clone()),
                Arc::new(Float64Array::from(
                    runs.iter().map(|r| r.current_loss).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(
                    runs.iter().map(|r| r.eval_loss).collect::<Vec<_>>(),
                )),
                f(|r| Some(r.message.clone())),
                f(|r| r.requested_by.clone()),
            ],
        )
    };
    let schema = Arc::new(schema);
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `ancestry(id, depth)`.
#[derive(Debug)]
struct AncestryFn {
    index: LineageIndex,
}

impl TableFunctionImpl for AncestryFn {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>, DataFusionError> {
        let usage = "ancestry('kind:id', depth), e.g. ancestry('adapter:0x…', 6)";
        let id = match args.first() {
            Some(Expr::Literal(ScalarValue::Utf8(Some(s)), _)) => s.clone(),
            _ => return plan_err!("{usage}: the first argument is a node id string"),
        };
        let depth = match args.get(1) {
            None => 6,
            Some(Expr::Literal(v, _)) => match v.clone().cast_to(&DataType::UInt32) {
                Ok(ScalarValue::UInt32(Some(d))) if d <= 64 => d,
                _ => return plan_err!("{usage}: depth is a whole number from 0 to 64"),
            },
            Some(_) => return plan_err!("{usage}: depth is a literal number"),
        };
        Ok(Arc::new(Ancestry(Arc::new(Walk {
            index: self.index.clone(),
            id,
            depth,
            schema: ancestry_schema(),
        }))))
    }
}

/// The rows of one `ancestry(…)` call, walked when the query runs.
#[derive(Debug)]
struct Ancestry(Arc<Walk>);

/// One walk: the index gives the nodes in walk order, the store their rows, 1,000 at a time.
#[derive(Debug)]
struct Walk {
    index: LineageIndex,
    id: String,
    depth: u32,
    schema: SchemaRef,
}

/// Rows per batch of `ancestry(…)`.
const ANCESTRY_BATCH: usize = 1000;

fn ancestry_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("props", DataType::Utf8, false),
        Field::new("block_number", DataType::UInt64, false),
        Field::new("tx_hash", DataType::Utf8, false),
        Field::new("depth", DataType::UInt32, false),
    ]))
}

#[async_trait]
impl TableProvider for Ancestry {
    fn schema(&self) -> SchemaRef {
        ancestry_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let part: Arc<dyn PartitionStream> = self.0.clone();
        Ok(Arc::new(StreamingTableExec::try_new(
            ancestry_schema(),
            vec![part],
            projection,
            Vec::<LexOrdering>::new(),
            false,
            limit,
        )?))
    }
}

impl PartitionStream for Walk {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Walks when the query runs, then reads the nodes' rows a batch at a time: a walk of a
    /// million nodes streams instead of waiting for one batch of all of them.
    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let external = |e: tributary_sql::Error| DataFusionError::External(Box::new(e));
        let (index, id, depth) = (self.index.clone(), self.id.clone(), self.depth);
        let walked = async move {
            let page = index
                .walk(&id, depth, Direction::Up, &PageRequest::default())
                .await
                .map_err(external)?;
            let nodes: Vec<(String, u32)> = page
                .nodes
                .into_iter()
                .map(|n| (n.id.to_string(), n.depth))
                .collect();
            Ok::<_, DataFusionError>((index, nodes))
        };
        let batches = futures::stream::once(walked)
            .map(|walked| {
                let (index, nodes) = match walked {
                    Ok(w) => w,
                    Err(e) => return futures::stream::iter(vec![Err(e)]).boxed(),
                };
                let chunks: Vec<Vec<(String, u32)>> =
                    nodes.chunks(ANCESTRY_BATCH).map(<[_]>::to_vec).collect();
                futures::stream::iter(chunks)
                    .then(move |chunk| {
                        let index = index.clone();
                        async move { ancestry_batch(&index, &chunk).await }
                    })
                    .boxed()
            })
            .flatten();
        Box::pin(RecordBatchStreamAdapter::new(ancestry_schema(), batches))
    }
}

/// The rows of `chunk` (ids in walk order, with depth) as one batch; nodes gone from the store
/// since the walk are left out.
async fn ancestry_batch(
    index: &LineageIndex,
    chunk: &[(String, u32)],
) -> Result<RecordBatch, DataFusionError> {
    let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
    let mut rows: HashMap<String, tributary_schemas::lineage::Node> = index
        .store()
        .nodes(index.chain_id(), &ids)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .into_iter()
        .map(|n| (n.id.to_string(), n))
        .collect();
    let found: Vec<(tributary_schemas::lineage::Node, u32)> = chunk
        .iter()
        .filter_map(|(id, depth)| Some((rows.remove(id)?, *depth)))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            found.iter().map(|(n, _)| n.id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            found.iter().map(|(n, _)| n.kind.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            found.iter().map(|(n, _)| n.props.to_string()),
        )),
        Arc::new(UInt64Array::from_iter_values(
            found.iter().map(|(n, _)| n.pos.block_number),
        )),
        Arc::new(StringArray::from_iter_values(
            found.iter().map(|(n, _)| n.pos.tx_hash.to_string()),
        )),
        Arc::new(arrow::array::UInt32Array::from_iter_values(
            found.iter().map(|(_, d)| *d),
        )),
    ];
    Ok(RecordBatch::try_new(ancestry_schema(), columns)?)
}
