//! Data availability that recovers: the lake is on an S3-compatible server, and the indexer
//! reaches it through a gate that refuses (403 AccessDenied) every manifest read while it is
//! closed, as a lake with a broken access policy does. The batches are indexed `unreachable`
//! without their contributions; once the gate opens, `index --recheck` brings their lineage in
//! without re-indexing, flags the one whose manifest was overwritten meanwhile as `mismatch`, and
//! the graph equals a fresh index of the same chain and lake.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::datanets::{records, setup_with};
use crate::s3::Moto;

/// The gate in front of the S3 server.
struct Gate {
    upstream: String,
    closed: AtomicBool,
    refused: AtomicU64,
    client: reqwest::Client,
}

async fn forward(State(gate): State<Arc<Gate>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    if gate.closed.load(Ordering::SeqCst)
        && parts.method == axum::http::Method::GET
        && target.contains("/manifests/batches/")
    {
        gate.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::FORBIDDEN,
            [("content-type", "application/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
             <Message>Access Denied</Message></Error>",
        )
            .into_response();
    }
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut upstream = gate
        .client
        .request(parts.method.clone(), format!("{}{target}", gate.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST {
            upstream = upstream.header(name, value);
        }
    }
    match upstream.send().await {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut out = (status, bytes).into_response();
            for (name, value) in &headers {
                if name != axum::http::header::CONTENT_LENGTH
                    && name != axum::http::header::TRANSFER_ENCODING
                {
                    out.headers_mut().insert(name, value.clone());
                }
            }
            out
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Rows of the mirrored graph with `kind` whose props hold `props_like`.
fn count(s: &crate::datanets::Setup, kind: &str, props_like: &str) -> u64 {
    crate::serve::sql_count(
        s,
        &format!(
            "SELECT count(*) FROM lineage_nodes WHERE kind = '{kind}' AND props LIKE '%{props_like}%'"
        ),
    )
}

#[test]
fn unreachable_manifests_are_rechecked_and_their_lineage_appears() {
    let moto = Moto::start("tributary");
    let upstream = moto.env()[0].1.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gate = Arc::new(Gate {
        upstream,
        closed: AtomicBool::new(true),
        refused: AtomicU64::new(0),
        client: reqwest::Client::new(),
    });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let gated = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(gate.clone());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let s = setup_with(Some((moto, "s3://tributary/lake".to_string())));
    let out = s
        .contribute(1, &records(s.dir(), "in.jsonl", 0, 12), 6)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The indexer reads the lake through the gate; everything else reaches it directly.
    let index = |extra: &[&str]| {
        crate::cli::succeeded(
            s.cmd(&["index"])
                .args(extra)
                .env("AWS_ENDPOINT_URL", &gated),
        )
    };

    let text = index(&[]);
    assert!(gate.refused.load(Ordering::SeqCst) > 0);
    assert!(text.contains("2 node(s) wait for their manifest"), "{text}");
    assert_eq!(count(&s, "batch", "\"da\":\"unreachable\""), 2);
    assert_eq!(count(&s, "contribution", ""), 0);
    // Still closed: a later run checks again and changes nothing.
    let text = index(&["--recheck"]);
    assert!(
        text.contains("0 now verified") && text.contains("2 still waiting"),
        "{text}"
    );

    // The lake answers again; meanwhile one batch's manifest was overwritten in it.
    gate.closed.store(false, Ordering::SeqCst);
    let batches = s
        .cmd(&[
            "sql",
            "--format",
            "csv",
            "SELECT batch_id FROM batches ORDER BY batch_id",
        ])
        .output()
        .unwrap();
    let gone = String::from_utf8_lossy(&batches.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    rt.block_on(
        s.lake()
            .put(&format!("manifests/batches/{gone}.json"), b"{}".to_vec()),
    )
    .unwrap();

    let text = index(&["--recheck"]);
    assert!(
        text.contains("rechecked 2 manifest(s)")
            && text.contains("1 now verified")
            && text.contains("1 flagged")
            && text.contains("0 still waiting"),
        "{text}"
    );
    assert_eq!(count(&s, "batch", "\"da\":\"verified\""), 1);
    assert_eq!(count(&s, "batch", "\"da\":\"mismatch\""), 1);
    assert_eq!(
        count(&s, "contribution", ""),
        6,
        "the readable batch's lineage"
    );

    // The same graph as a fresh index of this chain and lake.
    let totals = |text: &str| {
        text.split("graph has ")
            .nth(1)
            .unwrap_or_else(|| panic!("{text}"))
            .trim()
            .to_string()
    };
    let again = index(&[]);
    let fresh_store = format!("sqlite://{}", s.dir().join("fresh.db").display());
    let fresh = index(&["--store", &fresh_store, "--no-mirror"]);
    assert_eq!(totals(&again), totals(&fresh));
}
