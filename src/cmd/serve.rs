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
    let router = tributary_api::router(schema, &limits)
        .merge(tributary_api::sql_http::router(analyst.clone()));
    let router = tributary_api::with_cors(router, &args.cors_origins)
        .map_err(|e| anyhow::anyhow!("--cors-origin: {e}"))?;
    let wire = tokio::spawn(tributary_api::pg::serve(
        pg_listener,
        analyst,
        std::future::pending(),
    ));
    let served = tributary_api::serve(listener, router, super::shutdown_signal()).await;
    wire.abort();
    served?;
    Ok(())
}
