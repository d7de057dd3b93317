//! `tributary serve`.

use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tributary_indexer::{IndexMetrics, IndexStats, Indexer, Registry};
use tributary_models::schedule::{JobMetrics, Scheduler, WorkerConfig};

use crate::Common;

/// A part of `tributary serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// GraphQL, SQL over HTTP and over the PostgreSQL wire protocol.
    Api,
    /// The indexer, following the chain's head.
    Indexer,
    /// The training scheduler (the config file's [[jobs]]).
    Scheduler,
    /// OpenAI-compatible inference with the inference ledger.
    Inference,
}

impl Part {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "api" => Ok(Self::Api),
            "indexer" => Ok(Self::Indexer),
            "scheduler" => Ok(Self::Scheduler),
            "inference" => Ok(Self::Inference),
            other => Err(format!(
                "unknown part {other:?}: use api, indexer, scheduler or inference"
            )),
        }
    }
}

/// Flags of `tributary serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// Address to serve GraphQL (`/graphql`), HTTP SQL (`/sql`), inference (`/v1/*`),
    /// `/metrics`, `/healthz` and `/readyz` on.
    #[arg(long, env = "TRIBUTARY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The chain RPC URL the explorer's pages (at `/`) read Merkle roots from, in the
    /// browser: it must be reachable from there and allow its origin (CORS). Default: the
    /// chain's own RPC when it is on this machine; otherwise none, and proofs are checked
    /// against the roots the indexer recorded.
    #[arg(long, env = "TRIBUTARY_EXPLORER_RPC")]
    explorer_rpc: Option<url::Url>,
    /// Address to serve SQL over the PostgreSQL wire protocol on (psql, DBeaver, Grafana,
    /// Metabase).
    #[arg(long, env = "TRIBUTARY_PG_LISTEN", default_value = "127.0.0.1:5433")]
    pg_listen: SocketAddr,
    /// Run only these parts (default: all): api, indexer, scheduler, inference; separate
    /// with commas, e.g. `--only api,indexer`.
    #[arg(
        long,
        env = "TRIBUTARY_SERVE_ONLY",
        value_delimiter = ',',
        value_parser = Part::parse,
        default_value = "api,indexer,scheduler,inference"
    )]
    only: Vec<Part>,
    /// Seconds a training run in progress gets to finish on shutdown; after that its lease
    /// runs out and another worker (or the next start) resumes it from its snapshot.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    shutdown_grace: f64,
    /// Seconds a scheduler worker's lease on a run lasts (renewed every third of it); a
    /// worker silent this long is taken as dead and its run resumed by another.
    #[arg(long, default_value_t = 15.0, value_name = "SECONDS")]
    job_lease: f64,
    /// Where the scheduler trains: auto (CUDA when visible), cpu or cuda.
    #[arg(long, default_value = "auto", value_parser = super::parse_device)]
    device: tributary_trainer::DeviceChoice,
    /// A browser origin allowed to call the API from its pages (CORS), such as
    /// https://explorer.example.org; `*` allows any. Repeat, or separate with commas.
    #[arg(
        long = "cors-origin",
        value_name = "ORIGIN",
        env = "TRIBUTARY_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// Longest a GraphQL request may run, in seconds, before it is answered with an error.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    graphql_timeout: f64,
    /// Largest GraphQL request body, in bytes (larger ones get 413).
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
    graphql_max_body: usize,
    /// Refuse GraphQL introspection (`__schema`, `__type`); GraphiQL's docs and completion
    /// stop working.
    #[arg(long)]
    no_introspection: bool,
    /// File holding the bearer token that `/v1/completions` and `/v1/chat/completions` (they
    /// record every answer on chain) and GraphQL mutations (the ModelFactory's `createJob`,
    /// `runJob`) require; `TRIBUTARY_API_TOKEN` gives the token itself. Default: `api-token` in
    /// the data directory, created with a random token on first start. Reads (GraphQL
    /// queries, SQL, `/v1/models`) need none.
    #[arg(long, env = "TRIBUTARY_API_TOKEN_FILE", value_name = "PATH")]
    api_token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    inference: Inference,
}

/// Inference settings of `tributary serve`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Inference {
    /// Sequences decoded together at most (each holds a key/value cache slot).
    #[arg(long, default_value_t = 64)]
    slots: i64,
    /// Longest context (prompt and answer, in tokens) a sequence may reach, at most the base
    /// model's own: each slot's key/value cache is allocated for this many positions up front
    /// (at a Qwen2.5 model's 32,768, 64 slots would hold 26 GB).
    #[arg(long, default_value_t = 4096, value_name = "TOKENS")]
    max_context: i64,
    /// Memory for adapters kept loaded, in MiB; the least recently used are unloaded first.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    adapter_cache_mb: i64,
    /// Memory for the adapters and influence indexes attribution keeps loaded, in MiB (at
    /// least those of the answers it is scoring); the least recently used go first. The
    /// adapters and their indexes' checkpoint weights, most of it, live on the serving device
    /// (GPU memory on a GPU); the rest in host memory.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    attribution_cache_mb: i64,
    /// Fee per token (prompt and answer) in integer token units (10^18 units = 1 token).
    #[arg(long, default_value_t = 1_000_000_000_000)]
    fee_per_token: u128,
    /// Post the inference ledger to the chain when this many answers wait.
    #[arg(long, default_value_t = 100)]
    ledger_batch: usize,
    /// Post the inference ledger at least this often, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    ledger_interval: f64,
}

impl Inference {
    /// The inference server's settings under `common`'s data dir.
    pub(crate) fn config(
        &self,
        common: &Common,
    ) -> anyhow::Result<tributary_models::serve::ServeConfig> {
        if self.slots < 1 || self.ledger_batch < 1 || self.max_context < 2 {
            anyhow::bail!(
                "--slots and --ledger-batch must be at least 1, --max-context at least 2"
            );
        }
        if self.adapter_cache_mb < 0 || self.attribution_cache_mb < 0 {
            anyhow::bail!("--adapter-cache-mb and --attribution-cache-mb must be 0 or more");
        }
        // The longest answer's fee must be an amount the lake and settlement hold exactly.
        let most = tributary_schemas::tables::MAX_AMOUNT;
        if self.fee_per_token > most / self.max_context as u128 {
            anyhow::bail!(
                "--fee-per-token {} times --max-context {} is above {most} units (10^20 \
                 tokens), the most one answer may be charged: lower the fee",
                self.fee_per_token,
                self.max_context
            );
        }
        if !(self.ledger_interval > 0.0 && self.ledger_interval.is_finite()) {
            anyhow::bail!(
                "--ledger-interval {} is not a positive number of seconds",
                self.ledger_interval
            );
        }
        let mut c = tributary_models::serve::ServeConfig::new(
            &common.data_dir,
            &tributary_trainer::base::default_cache(),
        );
        c.slots = self.slots;
        c.max_context = self.max_context;
        c.adapter_budget = self.adapter_cache_mb << 20;
        c.attribution_budget = self.attribution_cache_mb << 20;
        c.fee_per_token = self.fee_per_token;
        c.ledger = tributary_models::serve::ledger::LedgerConfig {
            batch_size: self.ledger_batch,
            interval: std::time::Duration::from_secs_f64(self.ledger_interval),
        };
        Ok(c)
    }
}

/// What `/readyz` reports: each running part's state.
#[derive(Debug, Default)]
struct Readiness {
    /// The indexer has reached the head once (None: not running).
    indexed: Option<std::sync::atomic::AtomicBool>,
}

/// One shutdown signal, fanned out to every part.
#[derive(Clone)]
struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// Resolves when shutdown begins.
    fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// What the parts of `serve` share.
struct Shared {
    chain: Arc<tributary_chain::Chain>,
    store: tributary_sql::Store,
    lake: tributary_lake::Lake,
    /// The HTTP address.
    addr: SocketAddr,
}

type Tasks = tokio::task::JoinSet<anyhow::Result<String>>;

/// Starts the parts asked for (`--only`), serves HTTP until Ctrl-C, SIGTERM or a part
/// failing, then stops every part and flushes the inference ledger.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    check(&args)?;
    let has = |p: Part| args.only.contains(&p);
    let mut inference_config = args.inference.config(&args.common)?;
    let jobs = crate::config::get().1.jobs.clone();
    if has(Part::Scheduler) && jobs.is_empty() {
        tracing::info!("no [[jobs]] in the config: the scheduler has nothing to run");
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}: pick another --listen", args.listen))?;
    // Serving the API and indexing only read the chain: no signer key needed for those.
    let chain = if has(Part::Scheduler) || has(Part::Inference) {
        super::chain(&args.common).await?
    } else {
        super::chain_read_only(&args.common).await?
    };
    let shared = Shared {
        chain: Arc::new(chain),
        store: super::store(&args.common).await?,
        lake: super::lake(&args.common).await?,
        addr: listener.local_addr()?,
    };
    let mut registry = Registry::default();
    let index_metrics = IndexMetrics::register(&mut registry);
    let job_metrics = JobMetrics::register(&mut registry);
    inference_config.metrics = tributary_models::serve::ServeMetrics::register(&mut registry);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = Stop(stop_rx);
    let mut tasks = Tasks::new();
    let readiness = Arc::new(Readiness {
        indexed: has(Part::Indexer).then(Default::default),
    });
    if has(Part::Indexer) {
        start_indexer(&shared, &mut tasks, index_metrics, readiness.clone(), &stop);
    }
    let mut router = axum::Router::new();
    let mut wire = None;
    if has(Part::Api) {
        let (api, pg) = api_routes(&args, &shared).await?;
        router = router.merge(api);
        wire = Some(pg);
    }
    let mut inference = None;
    if has(Part::Inference) {
        let server = tributary_models::serve::Server::start(
            shared.chain.clone(),
            shared.lake.clone(),
            inference_config,
        )
        .await?;
        let (token, from) =
            super::api_token(args.api_token_file.as_deref(), &args.common.data_dir)?;
        router = router.merge(crate::inference::router(server.clone(), token));
        let addr = shared.addr;
        println!(
            "Inference (OpenAI-compatible): http://{addr}/v1/completions, /v1/chat/completions, /v1/models"
        );
        println!("Inference API token (Authorization: Bearer): {from}");
        inference = Some(server);
    }
    if has(Part::Scheduler) {
        start_scheduler(&args, &shared, &mut tasks, jobs, job_metrics, &stop)?;
    }
    let router = with_health(&args, &shared, router, readiness, registry)?;
    let http = tokio::spawn(tributary_api::serve(listener, router, stop.wait()));

    // Stop on Ctrl-C / SIGTERM, or when a part fails.
    let failed = tokio::select! {
        () = super::shutdown_signal() => None,
        Some(done) = tasks.join_next() => Some(done),
    };
    eprintln!("serve: shutting down");
    let _ = stop_tx.send(true);
    let result = stop_parts(failed, tasks).await;
    if let Some(w) = wire {
        w.abort();
    }
    if let Ok(Err(e)) = http.await {
        eprintln!("serve: HTTP: {e}");
    }
    if let Some(server) = inference {
        // Answers not yet posted stay journaled for the next start either way.
        if let Err(e) = server.ledger.flush().await {
            eprintln!(
                "the inference ledger could not post on shutdown ({e}); it will on the next start"
            );
        }
    }
    eprintln!("serve: stopped");
    result
}

/// Flags that must be numbers in range, before anything starts.
fn check(args: &Args) -> anyhow::Result<()> {
    if !(args.shutdown_grace >= 0.0 && args.shutdown_grace.is_finite()) {
        anyhow::bail!(
            "--shutdown-grace {} is not a number of seconds",
            args.shutdown_grace
        );
    }
    if !(args.graphql_timeout > 0.0 && args.graphql_timeout.is_finite()) {
        anyhow::bail!(
            "--graphql-timeout {} is not a positive number of seconds",
            args.graphql_timeout
        );
    }
    if !(args.job_lease >= 1.0 && args.job_lease.is_finite()) {
        anyhow::bail!("--job-lease {} must be at least 1 second", args.job_lease);
    }
    Ok(())
}

/// The indexer, following the chain; `/readyz` turns ready once it reached the head.
fn start_indexer(
    shared: &Shared,
    tasks: &mut Tasks,
    metrics: IndexMetrics,
    ready: Arc<Readiness>,
    stop: &Stop,
) {
    let (chain, store, lake) = (
        shared.chain.clone(),
        shared.store.clone(),
        shared.lake.clone(),
    );
    let metrics = Arc::new(metrics);
    let stop = stop.wait();
    tasks.spawn(async move {
        let report = |s: &IndexStats, head: u64| {
            metrics.observe(s, head);
            if (s.at_head || s.to_block >= head)
                && let Some(r) = &ready.indexed
            {
                r.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        };
        let indexer = Indexer::new(&chain, &store, &lake).with_progress(&report);
        indexer
            .follow(stop)
            .await
            .map(|s| format!("indexer stopped at block {}", s.to_block))
            .context("indexer")
    });
    println!("Indexer: following chain {}", shared.chain.chain_id());
}

/// GraphQL and SQL over HTTP, and SQL over the PostgreSQL wire (its server task).
async fn api_routes(
    args: &Args,
    shared: &Shared,
) -> anyhow::Result<(
    axum::Router,
    tokio::task::JoinHandle<tributary_api::Result<()>>,
)> {
    let chain_id = shared.chain.chain_id();
    // The lineage walks' index, kept in a file in the data directory so a restart reads it
    // instead of the whole graph; loaded now rather than by the first query.
    let index = tributary_sql::LineageIndex::new(
        shared.store.clone(),
        chain_id,
        Some(
            args.common
                .data_dir
                .join(format!("lineage-index-{chain_id}.bin")),
        ),
        tributary_api::REORG_WINDOW,
    );
    tokio::spawn({
        let index = index.clone();
        async move {
            if let Err(e) = index.fresh().await {
                tracing::warn!(error = %e, "the lineage index did not load; queries will retry");
            }
        }
    });
    let analyst = tributary_api::analyst::Analyst::open_over(
        shared.lake.clone(),
        index.clone(),
        tributary_api::analyst::SqlLimits::default(),
    )
    .await
    .context("opening the SQL session")?;
    let pg_listener = tokio::net::TcpListener::bind(args.pg_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: pick another --pg-listen",
                args.pg_listen
            )
        })?;
    let limits = tributary_api::Limits {
        introspection: !args.no_introspection,
        timeout: Duration::from_secs_f64(args.graphql_timeout),
        max_body_bytes: args.graphql_max_body,
    };
    // The ModelFactory's mutations: holders of the API token make and start training jobs.
    let (token, token_from) =
        super::api_token(args.api_token_file.as_deref(), &args.common.data_dir)?;
    let writes = tributary_api::Writes {
        token,
        factory: Arc::new(crate::factory::ModelFactory::new(
            shared.chain.clone(),
            shared.lake.clone(),
            &args.common.data_dir,
        )),
    };
    let schema = tributary_api::schema_with(index, Some(shared.lake.clone()), Some(writes));
    let explorer = super::explorer_chain(&shared.chain, args.explorer_rpc.as_ref());
    let router = axum::Router::new()
        .merge(tributary_api::router(schema, &limits))
        .merge(tributary_api::explorer(explorer))
        .merge(tributary_api::sql_http::router(analyst.clone()));
    let addr = shared.addr;
    println!("Explorer (lineage, proofs, attribution): http://{addr}/");
    println!(
        "ModelFactory (training jobs from a form; GraphQL mutations need the API token, {token_from}): http://{addr}/#/factory"
    );
    println!("GraphQL (GraphiQL in a browser): http://{addr}/graphql");
    println!("GraphQL subscriptions (graphql-transport-ws): ws://{addr}/graphql/ws");
    println!("SQL: POST http://{addr}/sql");
    let pg = pg_listener.local_addr()?;
    println!(
        "SQL with psql: psql -h {} -p {} -U analyst -d tributary",
        pg.ip(),
        pg.port()
    );
    let wire = tokio::spawn(tributary_api::pg::serve(
        pg_listener,
        analyst,
        std::future::pending(),
    ));
    Ok((router, wire))
}

/// The scheduler: `[[jobs]]` on their schedules, with leases, until shutdown (a run under
/// way gets `--shutdown-grace` to finish).
fn start_scheduler(
    args: &Args,
    shared: &Shared,
    tasks: &mut Tasks,
    jobs: Vec<tributary_models::schedule::JobSpec>,
    metrics: JobMetrics,
    stop: &Stop,
) -> anyhow::Result<()> {
    let mut cfg = WorkerConfig::new(
        &args.common.data_dir,
        &tributary_trainer::base::default_cache(),
    );
    cfg.device = args.device;
    cfg.lease = Duration::from_secs_f64(args.job_lease);
    cfg.sweep = cfg.lease.min(cfg.sweep);
    let worker = cfg.worker.clone();
    let scheduler = Arc::new(
        Scheduler::new(
            shared.chain.clone(),
            shared.lake.clone(),
            shared.store.clone(),
            jobs,
            cfg,
            Some(metrics),
        )?
        .with_lineage(super::lineage()?),
    );
    let n = scheduler.jobs().len();
    let stop = stop.wait();
    let grace = Duration::from_secs_f64(args.shutdown_grace);
    tasks.spawn(async move {
        scheduler
            .run(stop, grace)
            .await
            .map(|()| "scheduler stopped".to_string())
            .context("scheduler")
    });
    println!("Scheduler: worker {worker}, {n} job(s)");
    Ok(())
}

/// `router` with `/healthz`, `/readyz` and `/metrics`, behind the CORS policy.
fn with_health(
    args: &Args,
    shared: &Shared,
    router: axum::Router,
    ready: Arc<Readiness>,
    registry: Registry,
) -> anyhow::Result<axum::Router> {
    let store = shared.store.clone();
    let health = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let (store, ready) = (store.clone(), ready.clone());
                async move { readyz(&store, &ready).await }
            }),
        );
    let router = router
        .merge(health)
        .merge(tributary_api::metrics_router(Arc::new(registry)));
    let router = tributary_api::with_cors(router, &args.cors_origins)
        .map_err(|e| anyhow::anyhow!("--cors-origin: {e}"))?;
    let addr = shared.addr;
    println!("Health: http://{addr}/healthz, http://{addr}/readyz; metrics: http://{addr}/metrics");
    Ok(router)
}

/// Waits for every part to stop: the first failure (the one that stopped serve, if any)
/// is the result.
async fn stop_parts(
    failed: Option<Result<anyhow::Result<String>, tokio::task::JoinError>>,
    mut tasks: Tasks,
) -> anyhow::Result<()> {
    let mut result: anyhow::Result<()> = Ok(());
    let mut settle = |done: Result<anyhow::Result<String>, tokio::task::JoinError>| match done {
        Ok(Ok(msg)) => eprintln!("serve: {msg}"),
        Ok(Err(e)) => {
            eprintln!("serve: {e:#}");
            if result.is_ok() {
                result = Err(e);
            }
        }
        Err(e) => {
            if result.is_ok() {
                result = Err(anyhow::anyhow!("a part of serve panicked: {e}"));
            }
        }
    };
    if let Some(done) = failed {
        settle(done);
    }
    while let Some(done) = tasks.join_next().await {
        settle(done);
    }
    result
}

/// `/readyz`: 200 when the store answers and the indexer (if running) has reached the head;
/// else 503. The body says which part is not ready.
async fn readyz(
    store: &tributary_sql::Store,
    ready: &Readiness,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    let store_ok = store.ping().await;
    let indexed = ready
        .indexed
        .as_ref()
        .map(|r| r.load(std::sync::atomic::Ordering::SeqCst));
    let ok = store_ok.is_ok() && indexed != Some(false);
    let body = serde_json::json!({
        "ready": ok,
        "store": match &store_ok { Ok(()) => "ok".to_string(), Err(e) => e.to_string() },
        "indexer": match indexed {
            None => "not running",
            Some(true) => "at head",
            Some(false) => "catching up",
        },
    });
    let code = if ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}
