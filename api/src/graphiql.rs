//! The GraphiQL page at `GET /graphql`, with its scripts served by this server when they are
//! installed, so the page works offline.
//!
//! `scripts/setup.sh` installs graphiql and React from the npm registry into Tributary's cache
//! (`TRIBUTARY_NODE_MODULES`, default `~/.cache/tributary/npm/node_modules`). They are read
//! once when the router is built and served under `/graphql/assets/`. Where they are not
//! installed, the page loads the same versions from unpkg.com instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path as UrlPath;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodRouter, get};

const GRAPHIQL: &str = "3.9.0";
const REACT: &str = "18.3.1";

/// The page's assets: URL name, file under `node_modules`, content type, CDN address.
const ASSETS: &[(&str, &str, &str, &str)] = &[
    (
        "react.production.min.js",
        "react/umd/react.production.min.js",
        "text/javascript",
        "https://unpkg.com/react@18.3.1/umd/react.production.min.js",
    ),
    (
        "react-dom.production.min.js",
        "react-dom/umd/react-dom.production.min.js",
        "text/javascript",
        "https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js",
    ),
    (
        "graphiql.min.js",
        "graphiql/graphiql.min.js",
        "text/javascript",
        "https://unpkg.com/graphiql@3.9.0/graphiql.min.js",
    ),
    (
        "graphiql.min.css",
        "graphiql/graphiql.min.css",
        "text/css",
        "https://unpkg.com/graphiql@3.9.0/graphiql.min.css",
    ),
];

/// The installed assets, read into memory; `None` when they are missing or of other versions.
fn load() -> Option<Vec<Bytes>> {
    let dir = node_modules()?;
    let installed = |package: &str, version: &str| {
        let manifest = std::fs::read_to_string(dir.join(package).join("package.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&manifest).ok()?;
        (v["version"] == version).then_some(())
    };
    installed("graphiql", GRAPHIQL)?;
    installed("react", REACT)?;
    installed("react-dom", REACT)?;
    ASSETS
        .iter()
        .map(|(_, file, _, _)| std::fs::read(dir.join(file)).ok().map(Bytes::from))
        .collect()
}

pub(crate) fn node_modules() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TRIBUTARY_NODE_MODULES").filter(|d| !d.is_empty()) {
        return Some(dir.into());
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(cache.join("tributary/npm/node_modules"))
}

/// The page, with asset addresses local (`/graphql/assets/…`) or on the CDN.
fn page(local: bool) -> String {
    let url = |i: usize| {
        let (name, _, _, cdn) = ASSETS[i];
        if local {
            format!("/graphql/assets/{name}")
        } else {
            cdn.to_string()
        }
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Tributary · GraphiQL</title>
  <style>body {{ margin: 0; }} #graphiql {{ height: 100vh; }}</style>
  <link rel="stylesheet" href="{css}">
  <script src="{react}"></script>
  <script src="{react_dom}"></script>
  <script src="{graphiql}"></script>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script>
    const fetcher = GraphiQL.createFetcher({{ url: window.location.pathname }});
    // `?query=…` (repeatable) opens those queries as tabs, whatever tabs this browser kept:
    // links the demo prints for its tour. They live in memory, so the kept tabs stay as
    // they were for the next plain visit.
    const prefilled = new URLSearchParams(window.location.search).getAll('query');
    const memory = new Map();
    const storage = prefilled.length === 0 ? undefined : {{
      getItem: (k) => (memory.has(k) ? memory.get(k) : null),
      setItem: (k, v) => memory.set(k, String(v)),
      removeItem: (k) => memory.delete(k),
      clear: () => memory.clear(),
      get length() {{ return memory.size; }},
    }};
    ReactDOM.createRoot(document.getElementById('graphiql')).render(
      React.createElement(GraphiQL, {{
        fetcher,
        storage,
        defaultQuery: prefilled[0] || '{{\n  datanets {{ id name domain owner }}\n}}\n',
        defaultTabs: prefilled.length === 0 ? undefined : prefilled.map((query) => ({{ query }})),
      }}),
    );
  </script>
</body>
</html>
"#,
        css = url(3),
        react = url(0),
        react_dom = url(1),
        graphiql = url(2),
    )
}

/// `/graphql`: `graphql` (the endpoint's other methods) plus `GET` for the page; and
/// `GET /graphql/assets/{name}`.
pub(crate) fn router(graphql: MethodRouter) -> Router {
    let assets = load().map(Arc::new);
    if assets.is_none() {
        tracing::info!(
            "GraphiQL's scripts are not installed (scripts/setup.sh installs them): the page loads them from unpkg.com"
        );
    }
    let html = Html(page(assets.is_some()));
    Router::new()
        .route("/graphql", graphql.get(move || async move { html.clone() }))
        .route(
            "/graphql/assets/{name}",
            get(move |UrlPath(name): UrlPath<String>| async move { asset(assets, &name) }),
        )
}

fn asset(assets: Option<Arc<Vec<Bytes>>>, name: &str) -> Response {
    let found = ASSETS.iter().position(|(n, _, _, _)| *n == name);
    match (assets, found) {
        (Some(assets), Some(i)) => (
            [
                (header::CONTENT_TYPE, ASSETS[i].2),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            assets[i].clone(),
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
