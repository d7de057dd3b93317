//! Tributary's API server: GraphQL (async-graphql) on axum, with GraphiQL and the explorer
//! ([`explorer`]); SQL for analysts
//! ([`analyst`]) over HTTP ([`sql_http`]) and the PostgreSQL wire protocol ([`pg`]).
//!
//! GraphQL answers questions about every node of the lineage graph (Datanets, contributions,
//! contributors, batches, validations, snapshots, training runs, base models, adapters,
//! inferences, reward epochs), walks lineage, and streams new anchors, adapters and
//! inferences over WebSocket. Reads come from the index store ([`tributary_sql::Store`]).
//!
//! ```no_run
//! # async fn f(store: tributary_sql::Store) -> tributary_api::Result<()> {
//! let schema = tributary_api::schema(store, None, 31337);
//! let app = tributary_api::router(schema, &tributary_api::Limits::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

pub mod analyst;
mod explorer;
mod graphiql;
mod graphql;
mod lake_files;
pub mod pg;
pub mod sql_http;
pub mod v1;

pub use explorer::{ExplorerChain, explorer};
pub use graphql::{
    CheckedJob, Factory, LicenseCount, Limits, Mutation, REORG_WINDOW, SnapshotPreview,
    Subscription, TributarySchema, Writes, router, schema, schema_over, schema_with,
};

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

/// Lets browser pages from `origins` call the API (GraphQL and `/sql`): CORS headers for
/// those origins, preflights answered. `*` allows any origin. With no origins the router is
/// unchanged and browsers keep to the same origin.
pub fn with_cors(router: axum::Router, origins: &[String]) -> Result<axum::Router, String> {
    use axum::http::{HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return Ok(router);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let parsed = origins
            .iter()
            .map(|o| {
                let url = url::Url::parse(o).map_err(|e| {
                    format!("CORS origin {o:?} is not a URL ({e}): give scheme, host and port, e.g. https://explorer.example.org")
                })?;
                let origin = url.origin().ascii_serialization();
                if origin == "null" || url.path() != "/" || url.query().is_some() {
                    return Err(format!(
                        "CORS origin {o:?} must be just scheme, host and port, e.g. https://explorer.example.org"
                    ));
                }
                HeaderValue::from_str(&origin).map_err(|e| format!("CORS origin {o:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(parsed)
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT])
        .expose_headers([header::HeaderName::from_static("x-tributary-truncated")])
        .max_age(std::time::Duration::from_secs(3600));
    Ok(router.layer(layer))
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let router = router.layer(axum::middleware::from_fn(request_span));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Runs each request in a `request` span (method, path; status when done), so its log lines
/// can be followed.
async fn request_span(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        status = tracing::field::Empty
    );
    let response = next.run(req).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    tracing::debug!(parent: &span, "request done");
    response
}
