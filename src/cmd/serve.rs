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
    let analyst = tributary_api::analyst::Analyst::open(
        super::lake(&args.common)?,
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
    let router = tributary_api::router(tributary_api::schema(store, deployment.chain_id))
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
