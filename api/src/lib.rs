//! Tributary's API server: GraphQL (async-graphql) on axum, with GraphiQL; SQL for analysts
//! ([`analyst`]) over HTTP ([`sql_http`]) and the PostgreSQL wire protocol ([`pg`]).
//!
//! Today the graph answers questions about Datanets and their contributions: who contributed,
//! the content hash, the batch it was anchored in, and the anchoring transaction and block.
//! Reads come from the index store ([`tributary_sql::Store`]).
//!
//! ```no_run
//! # async fn f(store: tributary_sql::Store) -> tributary_api::Result<()> {
//! let schema = tributary_api::schema(store, 31337);
//! let app = tributary_api::router(schema);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

pub mod analyst;
mod graphiql;
mod graphql;
pub mod pg;
pub mod sql_http;

pub use graphql::{TributarySchema, router, schema};

/// Errors from the API server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding or serving the socket failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `GET /metrics`: the metrics in `registry`, in the OpenMetrics text format Prometheus
/// scrapes.
pub fn metrics_router(
    registry: std::sync::Arc<prometheus_client::registry::Registry>,
) -> axum::Router {
    use axum::http::{StatusCode, header::CONTENT_TYPE};
    use axum::response::IntoResponse;
    let render = move || {
        let registry = registry.clone();
        async move {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, &registry) {
                Ok(()) => (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
                    .into_response(),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("encoding metrics: {e}"),
                )
                    .into_response(),
            }
        }
    };
    axum::Router::new().route("/metrics", axum::routing::get(render))
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
