//! The explorer at `GET /`: one page (`api/app/`, built into the binary) that reads only the
//! public APIs (GraphQL, and `POST /sql` for time travel), with the lineage picture laid out
//! by dagre.
//!
//! `scripts/setup.sh` installs `@dagrejs/dagre` from the npm registry next to GraphiQL's
//! scripts; it is read once when the router is built and served at
//! `/app/assets/dagre.min.js`. Where it is not installed, the page loads the same version from
//! unpkg.com instead. `/app/config.json` names the chain RPC and the registry contract (when
//! the server knows them), so a contribution's page reads its batch's Merkle root from the
//! chain itself.

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

const DAGRE: &str = "3.1.4";
const DAGRE_FILE: &str = "@dagrejs/dagre/dist/dagre.min.js";
const DAGRE_CDN: &str = "https://unpkg.com/@dagrejs/dagre@3.1.4/dist/dagre.min.js";

/// Where the page reads on-chain state itself: the chain's JSON-RPC URL (the browser must be
/// able to reach it) and the `DatanetRegistry` address. Either missing: proofs are checked
/// against the root the indexer recorded, and the page says so.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExplorerChain {
    /// The chain's JSON-RPC URL, as a browser reaches it.
    pub rpc: Option<String>,
    /// The `DatanetRegistry` contract's address.
    pub registry: Option<String>,
}

/// dagre's installed script, or `None` when it is missing or of another version.
fn dagre() -> Option<Bytes> {
    let dir = crate::graphiql::node_modules()?.join("@dagrejs/dagre");
    let manifest = std::fs::read_to_string(dir.join("package.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&manifest).ok()?;
    if v["version"] != DAGRE {
        return None;
    }
    let file = crate::graphiql::node_modules()?.join(DAGRE_FILE);
    std::fs::read(file).ok().map(Bytes::from)
}

/// `GET /` (the page), `/app/app.js`, `/app/app.css`, `/app/assets/dagre.min.js` and
/// `/app/config.json`.
pub fn explorer(chain: ExplorerChain) -> Router {
    let script = dagre();
    if script.is_none() {
        tracing::info!(
            "the explorer's layout library is not installed (scripts/setup.sh installs it): the page loads it from unpkg.com"
        );
    }
    let src = if script.is_some() {
        "/app/assets/dagre.min.js"
    } else {
        DAGRE_CDN
    };
    let page = Html(include_str!("../app/index.html").replace("{dagre}", src));
    let cached = |kind: &'static str, body: Bytes| {
        move || {
            let body = body.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, kind),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
                    .into_response()
            }
        }
    };
    let mut router = Router::new()
        .route("/", get(move || async move { page.clone() }))
        .route(
            "/app/app.js",
            get(cached(
                "text/javascript",
                Bytes::from_static(include_bytes!("../app/app.js")),
            )),
        )
        .route(
            "/app/app.css",
            get(cached(
                "text/css",
                Bytes::from_static(include_bytes!("../app/app.css")),
            )),
        )
        .route(
            "/app/config.json",
            get(move || {
                let chain = chain.clone();
                async move { axum::Json(chain) }
            }),
        );
    if let Some(script) = script {
        router = router.route(
            "/app/assets/dagre.min.js",
            get(cached("text/javascript", script)),
        );
    }
    router
}
