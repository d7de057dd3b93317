//! `tributary serve`.

use std::net::SocketAddr;

use anyhow::Context;
use tributary_chain::Deployment;

use crate::Common;

/// Flags of `tributary serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// Address to serve GraphQL (`/graphql`), HTTP SQL (`/sql`) and metrics on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address to serve SQL over the PostgreSQL wire protocol on (psql, DBeaver, Grafana,
    /// Metabase).
    #[arg(long, default_value = "127.0.0.1:5433")]
    pg_listen: SocketAddr,
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
    #[command(flatten)]
    inference: Inference,
}

/// Inference settings of `tributary serve`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Inference {
    /// Sequences decoded together at most (each holds a key/value cache slot).
    #[arg(long, default_value_t = 64)]
    slots: i64,
    /// Memory for adapters kept loaded, in MiB; the least recently used are unloaded first.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    adapter_cache_mb: i64,
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
    ) -> anyhow::Result<tributary_trainer::serve::ServeConfig> {
        if self.slots < 1 || self.ledger_batch < 1 {
            anyhow::bail!("--slots and --ledger-batch must be at least 1");
        }
        if !(self.ledger_interval > 0.0 && self.ledger_interval.is_finite()) {
            anyhow::bail!(
                "--ledger-interval {} is not a positive number of seconds",
                self.ledger_interval
            );
        }
        let mut c = tributary_trainer::serve::ServeConfig::new(
            &common.data_dir,
            &tributary_trainer::base::default_cache(),
        );
        c.slots = self.slots;
        c.adapter_budget = self.adapter_cache_mb << 20;
        c.fee_per_token = self.fee_per_token;
        c.ledger = tributary_trainer::serve::ledger::LedgerConfig {
            batch_size: self.ledger_batch,
            interval: std::time::Duration::from_secs_f64(self.ledger_interval),
        };
        Ok(c)
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let deployment = Deployment::load(&args.common.data_dir)?.with_context(|| {
        format!(
            "no deployment record in {}: run `tributary demo` or `tributary index` first",
            args.common.data_dir.display()
        )
    })?;
    let store = super::store(&args.common).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}: pick another --listen", args.listen))?;
    println!(
        "GraphQL (GraphiQL in a browser): http://{}/graphql",
        listener.local_addr()?
    );
    println!(
        "GraphQL subscriptions (graphql-transport-ws): ws://{}/graphql/ws",
        listener.local_addr()?
    );
    let lake = super::lake(&args.common)?;
    let analyst = tributary_api::analyst::Analyst::open(
        lake.clone(),
        store.clone(),
        deployment.chain_id,
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
    println!("SQL: POST http://{}/sql", listener.local_addr()?);
    let pg = pg_listener.local_addr()?;
    println!(
        "SQL with psql: psql -h {} -p {} -U analyst -d tributary",
        pg.ip(),
        pg.port()
    );
    if !(args.graphql_timeout > 0.0 && args.graphql_timeout.is_finite()) {
        anyhow::bail!(
            "--graphql-timeout {} is not a positive number of seconds",
            args.graphql_timeout
        );
    }
    let limits = tributary_api::Limits {
        introspection: !args.no_introspection,
        timeout: std::time::Duration::from_secs_f64(args.graphql_timeout),
        max_body_bytes: args.graphql_max_body,
    };
    let schema = tributary_api::schema(store, Some(lake.clone()), deployment.chain_id);
    let chain = std::sync::Arc::new(super::chain(&args.common).await?);
    let inference = tributary_trainer::serve::Server::start(
        chain,
        lake.clone(),
        args.inference.config(&args.common)?,
    )
    .await?;
    println!(
        "Inference (OpenAI-compatible): http://{}/v1/completions, /v1/chat/completions, /v1/models",
        listener.local_addr()?
    );
    let router = tributary_api::router(schema, &limits)
        .merge(tributary_api::sql_http::router(analyst.clone()))
        .merge(tributary_trainer::serve::http::router(inference.clone()));
    let router = tributary_api::with_cors(router, &args.cors_origins)
        .map_err(|e| anyhow::anyhow!("--cors-origin: {e}"))?;
    let wire = tokio::spawn(tributary_api::pg::serve(
        pg_listener,
        analyst,
        std::future::pending(),
    ));
    let served = tributary_api::serve(listener, router, super::shutdown_signal()).await;
    wire.abort();
    // Answers not yet posted stay journaled for the next start either way.
    if let Err(e) = inference.ledger.flush().await {
        eprintln!(
            "the inference ledger could not post on shutdown ({e}); it will on the next start"
        );
    }
    served?;
    Ok(())
}
