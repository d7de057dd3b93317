//! The explorer at `/` in a real browser (headless Chromium driven by selenium), over the
//! GraphQL fixture: tables paged and filtered on the server, a contribution's Merkle proof
//! checked in the page (valid, then invalid once the lake's manifest is tampered with), and
//! the lineage picture drawing the walk GraphQL gives.

use alloy::primitives::{Address, B256};
use serde_json::{Value, json};

use crate::graphql::{CHAIN, fixture, lake, post};

/// Runs the Python browser script `script` (under `tests/browser/`) with `args`; its stdout
/// is JSON.
pub(crate) async fn browser(script: &str, args: &[String]) -> Value {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("{name} is not set: run `eval \"$(scripts/setup.sh)\"`, which installs Chromium, its driver and selenium"))
    };
    let script = format!("{}/tests/browser/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(env("TRIBUTARY_PYTHON"))
        .arg(script)
        .args(args)
        .env("TRIBUTARY_CHROMIUM", env("TRIBUTARY_CHROMIUM"))
        .env("TRIBUTARY_CHROMEDRIVER", env("TRIBUTARY_CHROMEDRIVER"))
        .env("SE_OFFLINE", "true")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the browser run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `explorer.py`'s view of `page` (a hash route) after `actions`.
async fn shown(base: &str, page: &str, actions: &[&str]) -> Value {
    let mut args = vec![format!("{base}/#/{page}")];
    args.extend(actions.iter().map(|a| a.to_string()));
    let v = browser("explorer.py", &args).await;
    for r in v["resources"].as_array().unwrap() {
        let r = r.as_str().unwrap();
        assert!(
            r.starts_with(base),
            "{r} was loaded from outside the server"
        );
    }
    assert!(v["texts"].get("error").is_none(), "{page}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_pages_checks_proofs_and_draws_lineage_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path(), 30).await;
    let app = tributary_api::router(
        tributary_api::schema(store, Some(lake(dir.path())), CHAIN),
        &tributary_api::Limits::default(),
    )
    .merge(tributary_api::explorer(
        tributary_api::ExplorerChain::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = app.clone();
    tokio::spawn(async move { axum::serve(listener, served).await });

    let html = reqwest::get(format!("{base}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("/app/assets/dagre.min.js"),
        "the layout library must be served locally (scripts/setup.sh installs it): {html}"
    );

    let v = shown(&base, "", &[]).await;
    assert_eq!(v["rows"]["datanets"], 1, "{v}");

    // 30 contributions, 25 to a page; the next page has the other 5; contributor 0x01…
    // made every other one.
    let v = shown(&base, "datanet/1", &[]).await;
    assert_eq!(v["texts"]["title"], "Datanet kitchen");
    assert_eq!(v["rows"]["contributions"], 25, "{v}");
    let v = shown(&base, "datanet/1", &["click:next"]).await;
    assert_eq!(v["rows"]["contributions"], 5, "{v}");
    let who = Address::repeat_byte(1).to_string().to_lowercase();
    let filter = format!("fill:filter-contributor={who}");
    let v = shown(&base, "datanet/1", &[&filter]).await;
    assert_eq!(v["rows"]["contributions"], 15, "{v}");
    let v = shown(&base, "datanet/1", &["select:filter-status=REVOKED"]).await;
    assert_eq!(v["rows"]["contributions"], 0, "{v}");
    // Sorted on the server: each order's first row is GraphQL's first in that order (they
    // differ), and newest first pages on to the other 5 as oldest first does.
    let ends = post(
        &app,
        "{ a: contributions(first: 1) { nodes { id } } \
           z: contributions(first: 1, order: NEWEST_FIRST) { nodes { id } } }",
    )
    .await;
    let short = |k: &str| {
        let id = ends["data"][k]["nodes"][0]["id"].as_str().unwrap();
        format!("{}…{}", &id[..10], &id[id.len() - 6..])
    };
    let v = shown(&base, "datanet/1", &[]).await;
    assert_eq!(v["texts"]["contributions-first"], short("a"), "{v}");
    let v = shown(&base, "datanet/1", &["select:order=NEWEST_FIRST"]).await;
    assert_eq!(v["texts"]["contributions-first"], short("z"), "{v}");
    assert_ne!(short("a"), short("z"));
    let v = shown(
        &base,
        "datanet/1",
        &["select:order=NEWEST_FIRST", "click:next"],
    )
    .await;
    assert_eq!(v["rows"]["contributions"], 5, "{v}");

    // The proof, folded in the page with its own keccak, reaches the batch's root.
    let id = B256::repeat_byte(3).to_string();
    let page = format!("contribution/{id}");
    let v = shown(&base, &page, &[]).await;
    assert_eq!(v["texts"]["proof-result"], "valid", "{v}");
    assert_eq!(v["texts"]["computed-root"], v["texts"]["expected-root"]);
    let root = post(
        &app,
        &format!("{{ contribution(id: \"{id}\") {{ anchor {{ merkleRoot }} }} }}"),
    )
    .await;
    assert_eq!(
        v["texts"]["expected-root"],
        root["data"]["contribution"]["anchor"]["merkleRoot"]
    );
    // Another engine rewrites the batch's manifest in the lake (one id changed): the proof
    // the lake now gives does not reach the anchored root.
    let manifest = dir.path().join("lake/manifests/batch-ba.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["contributions"][0]["id"] = json!(B256::repeat_byte(0xee).to_string());
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let v = shown(&base, &page, &[]).await;
    assert_eq!(v["texts"]["proof-result"], "invalid", "{v}");
    assert_ne!(v["texts"]["computed-root"], v["texts"]["expected-root"]);

    // The lineage picture draws the walk's nodes, upstream and downstream.
    for dir in ["up", "down"] {
        let node = format!("contribution:{id}");
        let field = if dir == "up" {
            "ancestry"
        } else {
            "descendants"
        };
        let q = format!("{{ {field}(id: \"{node}\", depth: 1, first: 250) {{ totalCount }} }}");
        let walk = post(&app, &q).await;
        let count = walk["data"][field]["totalCount"].as_u64().unwrap();
        let page = format!(
            "lineage/{}?dir={dir}",
            url::form_urlencoded::byte_serialize(node.as_bytes()).collect::<String>()
        );
        let v = shown(&base, &page, &["hover-center"]).await;
        assert_eq!(
            v["nodes"], count,
            "{dir}: the walk's nodes, its start included: {v}"
        );
        let summary = v["texts"]["lineage-summary"].as_str().unwrap();
        assert!(summary.starts_with(&format!("{count} nodes")), "{summary}");
        // On the start node, the mouse lights every other node on the walk's side.
        assert_eq!(v["lit"][dir], count - 1, "{dir}: {v}");
        assert_eq!(v["lit"]["dim"], 0, "{dir}: {v}");
        assert_eq!(v["texts"]["lit"], "", "{dir}: {v}");
    }
}
