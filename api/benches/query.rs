//! The query surface under load (`make bench`), each side by side with its reference in one run:
//!
//! 1. **Views over Delta vs DataFusion over the same Parquet files.** A lake with 1,000,000
//!    contributions (20 Datanets, 20,000 contributors, 30 days), 10,000 revocations, 50,000
//!    rejections and a 250,000-node lineage graph; every view of `sql/views/` answered by the
//!    [`Analyst`] (Delta tables, limits, read-only planning) and by a plain DataFusion session
//!    that reads the tables' Parquet files directly as listing tables, with the same view SQL;
//!    then the SQL the explorer's Datanet page sends (issue 23), the same way.
//!    Issue 8's goal: at least 0.8x the reference's speed.
//! 2. **GraphQL ancestry vs `{ __typename }`, 64 concurrent clients.** The first page (100
//!    nodes) of the ancestry (depth 6) of random answers in the 1,100,000-node graph that
//!    `sql/benches/ancestry.rs` loads into `TRIBUTARY_BENCH_DB` (run it first; `make bench`
//!    does), walked by the API's lineage index and served over HTTP by the API router, next to
//!    the cheapest query on the same server. The id travels as a variable, as clients send
//!    it; one line writes it into the query text instead. Every response body is checked (the
//!    clients share the machine's cores with the server). Issue 25's goal: at least 0.3x the
//!    requests/s of `{ __typename }`.
//!
//! `TRIBUTARY_BENCH_SCALE` (default 1.0) scales the lake; the graph is the ancestry benchmark's.
//! 3. **The explorer's paged tables** over the same graph (see [`pages`]).
//!
//! `TRIBUTARY_BENCH_ONLY=views`, `=graphql` or `=pages` runs that part alone;
//! `TRIBUTARY_BENCH_VIEW=name` times the views whose name starts with it (`explorer:` the
//! explorer's own statements, timed after the views) and prints both sides' `EXPLAIN ANALYZE`.
//! `TRIBUTARY_BENCH_SMOKE=1` (what `make test` runs, after the ancestry benchmark's smoke run):
//! a lake of 2,000 contributions, one run per view, 4 clients for one second; checked the same
//! way, and a missing graph is an error rather than a skipped row.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::StreamExt;
use serde_json::{Value, json};
use tributary_api::analyst::{Analyst, SqlLimits, VIEWS};
use tributary_lake::Lake;
use tributary_schemas::lineage::{NodeId, NodeKind};
use tributary_schemas::tables::{self, names};
use tributary_sql::Store;

const CHAIN: u64 = 31337;

/// The allocator the `tributary` binary serves with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn batch(name: &str, values: &[Value]) -> RecordBatch {
    let mut decoder = arrow::json::ReaderBuilder::new(tables::schema(name).unwrap())
        .with_batch_size(values.len().max(1))
        .build_decoder()
        .unwrap();
    decoder.serialize(values).unwrap();
    decoder.flush().unwrap().unwrap()
}

async fn append(lake: &Lake, name: &str, rows: Vec<Value>) {
    for chunk in rows.chunks(100_000) {
        lake.append(name)
            .batches(vec![batch(name, chunk)])
            .commit()
            .await
            .unwrap();
    }
}

fn day(d: u64) -> String {
    format!("2026-11-{:02}T{:02}:00:00Z", 1 + d % 30, d % 24)
}

fn position(i: u64) -> [(&'static str, Value); 4] {
    [
        ("block_number", json!(i / 10)),
        ("block_hash", json!(format!("0xb{i:x}"))),
        ("tx_hash", json!(format!("0xt{i:x}"))),
        ("log_index", json!(i % 10)),
    ]
}

fn with_position(mut v: Value, i: u64) -> Value {
    for (k, x) in position(i) {
        v[k] = x;
    }
    v
}

/// Writes the view benchmark's lake.
async fn fill(lake: &Lake, scale: f64) {
    let n = |x: f64| ((x * scale) as u64).max(1);
    let mut rng = Rng(7);
    let (contributions, contributors) = (n(1_000_000.0), n(20_000.0));
    let rows: Vec<Value> = (0..contributions)
        .map(|i| {
            json!({
                "datanet_id": 1 + i % 20, "contribution_id": format!("0xc{i:x}"),
                "contributor": format!("0xa{:x}", rng.below(contributors)),
                "content_hash": format!("0xh{i:x}"), "license": "CC-BY-4.0", "timestamp": i,
                "nonce": i, "deadline": i + 1000, "signature": "0x5", "content": "q and a",
                "batch_id": format!("0xba{:x}", i / 100), "ingested_at": day(i * 30 / contributions),
            })
        })
        .collect();
    append(lake, names::CONTRIBUTIONS, rows).await;
    let rows: Vec<Value> = (0..n(10_000.0))
        .map(|k| {
            let i = rng.below(contributions);
            json!({
                "datanet_id": 1 + i % 20, "contribution_id": format!("0xc{i:x}"),
                "revoked_by": "0xo", "reason": "duplicate", "tx_hash": "0x1", "block_number": k,
                "revoked_at": day(k),
            })
        })
        .collect();
    append(lake, names::REVOCATIONS, rows).await;
    let rows: Vec<Value> = (0..n(50_000.0))
        .map(|i| {
            json!({
                "datanet_id": 1 + i % 20, "rejection_id": format!("r{i}"), "source": "a.jsonl",
                "locator": format!("line {i}"), "reason_code": "too_short",
                "reason": "answer too short", "raw": "{}", "rejected_at": day(i),
            })
        })
        .collect();
    append(lake, names::REJECTIONS, rows).await;

    // The graph: contributors -> contributions <- answers (attributed), adapters derived
    // from parents and a base model, produced by runs that trained on snapshots drawn from
    // Datanets, and reward epochs crediting contributors.
    let (graph_contributions, inferences, adapters) = (n(200_000.0), n(20_000.0), n(200.0));
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let mut k = 0;
    let mut node = |id: NodeId, props: Value| {
        k += 1;
        let kind = id.kind().as_str();
        nodes.push(with_position(
            json!({"chain_id": CHAIN, "id": id, "kind": kind, "props": props.to_string()}),
            k,
        ));
    };
    let mut edge_i = 0;
    let mut edge = |src: NodeId, dst: NodeId, kind: &str, weight: Option<f64>| {
        edge_i += 1;
        edges.push(with_position(
            json!({"chain_id": CHAIN, "src": src, "dst": dst, "kind": kind, "weight": weight}),
            edge_i,
        ));
    };
    node(NodeKind::BaseModel.id(0), json!({}));
    for d in 0..20 {
        node(NodeKind::Datanet.id(d), json!({}));
    }
    for c in 0..contributors {
        node(NodeKind::Contributor.id(c), json!({}));
    }
    for i in 0..graph_contributions {
        node(NodeKind::Contribution.id(i), json!({}));
        edge(
            NodeKind::Contributor.id(rng.below(contributors)),
            NodeKind::Contribution.id(i),
            "contributed",
            None,
        );
    }
    for a in 0..adapters {
        node(NodeKind::Adapter.id(a), json!({}));
        node(NodeKind::Snapshot.id(a), json!({}));
        node(NodeKind::TrainingRun.id(a), json!({}));
        edge(
            NodeKind::Adapter.id(a),
            if a % 5 == 0 {
                NodeKind::BaseModel.id(0)
            } else {
                NodeKind::Adapter.id(a - 1)
            },
            "derived_from",
            None,
        );
        edge(
            NodeKind::Snapshot.id(a),
            NodeKind::TrainingRun.id(a),
            "trained",
            None,
        );
        edge(
            NodeKind::TrainingRun.id(a),
            NodeKind::Adapter.id(a),
            "produced",
            None,
        );
        edge(
            NodeKind::Snapshot.id(a),
            NodeKind::Datanet.id(a % 20),
            "drawn_from",
            None,
        );
    }
    // Answers, 100 to an inference batch, each credited to 5 contributions.
    for q in 0..inferences {
        if q % 100 == 0 {
            node(NodeKind::Inference.id(q / 100), json!({}));
        }
        node(NodeKind::Answer.id(q), json!({}));
        edge(
            NodeKind::Answer.id(q),
            NodeKind::Inference.id(q / 100),
            "recorded_in",
            None,
        );
        for _ in 0..5 {
            edge(
                NodeKind::Answer.id(q),
                NodeKind::Contribution.id(rng.below(graph_contributions)),
                "attributed_to",
                Some(0.2),
            );
        }
    }
    for e in 0..10 {
        node(NodeKind::RewardEpoch.id(e), json!({}));
        for c in 0..contributors.min(1000) {
            edge(
                NodeKind::RewardEpoch.id(e),
                NodeKind::Contributor.id(c),
                "rewarded",
                Some(1.0),
            );
        }
    }
    append(lake, names::LINEAGE_NODES, nodes).await;
    append(lake, names::LINEAGE_EDGES, edges).await;

    // Each adapter's held-out credit over 500 contributions of its Datanet (a few negative,
    // a few revoked), and ten epochs of rewards to the first 1,000 contributors.
    let rows: Vec<Value> = (0..adapters)
        .flat_map(|a| (0..500u64).map(move |j| (a, j)))
        .map(|(a, j)| {
            let i = (a * 500 + j) % contributions;
            let score = if j % 10 == 0 { -0.01 } else { 0.001 * (1 + j % 7) as f64 };
            json!({
                "datanet_id": 1 + i % 20, "subject_kind": "adapter",
                "subject_id": format!("adapter:{a}"), "adapter_id": format!("0xad{a:x}"),
                "contribution_id": format!("0xc{i:x}"),
                "contributor": format!("0xa{:x}", i % contributors), "method": "tracin",
                "score": score, "share": 0.002, "negative_fraction": if score < 0.0 { 1.0 } else { 0.0 },
                "queries": 4, "computed_at": day(a),
            })
        })
        .collect();
    append(lake, names::ATTRIBUTIONS, rows).await;
    let rows: Vec<Value> = (0..10u64)
        .flat_map(|e| (0..contributors.min(1000)).map(move |c| (e, c)))
        .map(|(e, c)| {
            json!({
                "epoch": e, "account": format!("{c}"), "role": "contributor",
                "adapter_id": "0xad0", "contribution_id": null, "inferences": 3,
                "amount": "1000000000000000000", "reason": "influence",
            })
        })
        .collect();
    append(lake, names::REWARD_ALLOCATIONS, rows).await;
}

/// A plain DataFusion session over the lake's Parquet files, with the same views: every
/// table of the lake (a table the benchmark wrote nothing to is an empty table of its
/// schema, as the analyst shows it), so every view plans on both sides.
async fn reference(root: &std::path::Path) -> SessionContext {
    let ctx = SessionContext::new();
    for &name in names::ALL {
        let dir = root.join(name);
        if !dir.exists() {
            let schema = tables::schema(name).unwrap();
            let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]]).unwrap();
            ctx.register_table(name, Arc::new(empty)).unwrap();
            continue;
        }
        let partition: Vec<(String, DataType)> = tables::partition_columns(name)
            .iter()
            .map(|c| (c.to_string(), DataType::Int64))
            .collect();
        let options = ParquetReadOptions::default().table_partition_cols(partition);
        ctx.register_parquet(name, dir.to_str().unwrap(), options)
            .await
            .unwrap();
    }
    for (_, sql) in VIEWS {
        ctx.sql(sql).await.unwrap();
    }
    ctx
}

async fn ours(analyst: &Analyst, sql: &str) -> usize {
    let (_, mut batches) = analyst.stream(sql).await.unwrap();
    let mut rows = 0;
    while let Some(b) = batches.next().await {
        rows += b.unwrap().num_rows();
    }
    rows
}

async fn theirs(ctx: &SessionContext, sql: &str) -> usize {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    batches.iter().map(|b| b.num_rows()).sum()
}

/// Prints both sides' `EXPLAIN ANALYZE` of `sql`, after three warm-up runs of each.
async fn explain(analyst: &Analyst, reference: &SessionContext, sql: &str) {
    for _ in 0..3 {
        ours(analyst, sql).await;
        theirs(reference, sql).await;
    }
    let sql = format!("EXPLAIN ANALYZE {sql}");
    let (_, batches) = analyst.stream(&sql).await.unwrap();
    let ours: Vec<RecordBatch> = batches.map(|b| b.unwrap()).collect().await;
    let theirs = reference.sql(&sql).await.unwrap().collect().await.unwrap();
    for (side, batches) in [("ours", ours), ("theirs", theirs)] {
        let text = arrow::util::pretty::pretty_format_batches(&batches).unwrap();
        eprintln!("{side}:\n{text}");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn views(scale: f64) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let lake = Lake::open(root.to_str().unwrap()).unwrap();
    let t = Instant::now();
    fill(&lake, scale).await;
    eprintln!("views: lake written in {:.1} s", t.elapsed().as_secs_f64());
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
        .await
        .unwrap();
    let analyst = Analyst::open(lake, store, CHAIN, SqlLimits::default())
        .await
        .unwrap();
    let reference = reference(&root).await;
    // `TRIBUTARY_BENCH_VIEW=name`: the views (or explorer statements) whose name starts with
    // it, with both sides' `EXPLAIN ANALYZE`.
    let one = std::env::var("TRIBUTARY_BENCH_VIEW").ok();
    let statements = VIEWS
        .iter()
        .map(|(view, _)| (view.to_string(), format!("SELECT * FROM {view}")))
        .chain(
            EXPLORER_SQL
                .iter()
                .map(|(what, sql)| (what.to_string(), sql.to_string())),
        );
    for (view, sql) in statements {
        if one.as_deref().is_some_and(|v| !view.starts_with(v)) {
            continue;
        }
        if one.is_some() {
            explain(&analyst, &reference, &sql).await;
        }
        assert_eq!(
            ours(&analyst, &sql).await,
            theirs(&reference, &sql).await,
            "{view}: both sessions see the same rows"
        );
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut rows = 0;
        for _ in 0..if smoke() { 1 } else { 7 } {
            let t = Instant::now();
            rows = ours(&analyst, &sql).await;
            a.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            theirs(&reference, &sql).await;
            b.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (a, b) = (median(a), median(b));
        println!(
            "| `{view}` ({rows} rows) | Delta via Analyst {a:.1} ms | Parquet via DataFusion {b:.1} ms | {:.2}x |",
            b / a
        );
    }
}

/// The explorer's Datanet page asks these of `POST /sql` (`api/app/app.js`: `overTime`,
/// `asOf` at the latest version), timed beside the views.
const EXPLORER_SQL: [(&str, &str); 3] = [
    (
        "explorer: a Datanet day by day",
        "SELECT CAST(day AS VARCHAR) AS day, accepted, rejected, contributors, accepted_to_date \
         FROM datanet_stats_over_time WHERE datanet_id = 1 ORDER BY day DESC LIMIT 60",
    ),
    (
        "explorer: a Datanet's largest contributors",
        "SELECT contributor, COUNT(*) AS n FROM contributions WHERE datanet_id = 1 \
         GROUP BY contributor ORDER BY n DESC, contributor LIMIT 10",
    ),
    (
        "explorer: a Datanet's counts and licenses",
        "SELECT license, COUNT(*) AS n, COUNT(DISTINCT contributor) AS contributors \
         FROM contributions WHERE datanet_id = 1 GROUP BY license ORDER BY n DESC, license LIMIT 5",
    ),
];

/// Runs `clients` concurrent loops of `body` against `url` for `secs`; every answer must pass
/// `check`. Returns (requests/s, sorted latencies in ms).
async fn load(
    url: &str,
    clients: usize,
    secs: f64,
    body: impl Fn(u64) -> String + Send + Sync + 'static,
    check: impl Fn(&[u8]) -> bool + Send + Sync + 'static,
) -> (f64, Vec<f64>) {
    let client = reqwest::Client::new();
    let (body, check) = (Arc::new(body), Arc::new(check));
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, url, body, check) =
                (client.clone(), url.to_string(), body.clone(), check.clone());
            tokio::spawn(async move {
                let mut rng = Rng(c as u64 + 1);
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let pick = rng.below(u64::MAX >> 34);
                    let t = Instant::now();
                    let res = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body(pick))
                        .send()
                        .await
                        .unwrap();
                    let bytes = res.bytes().await.unwrap();
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                    assert!(
                        check(&bytes),
                        "unexpected answer: {}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    (all.len() as f64 / elapsed, all)
}

fn smoke() -> bool {
    std::env::var("TRIBUTARY_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

/// What an ancestry answer must hold: no errors, a `seq`, the nodes where asked. Read into
/// types, not a `serde_json::Value`: the clients share the two cores with the server, and
/// building a tree of maps per answer cost them a tenth of the CPU.
#[derive(serde::Deserialize)]
struct Answer {
    data: Option<AnswerData>,
    errors: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct AnswerData {
    ancestry: AnswerPage,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)] // `seq` is read to check that it is there and a number
struct AnswerPage {
    seq: u64,
    nodes: Option<Vec<serde::de::IgnoredAny>>,
}

async fn graphql() {
    let Ok(path) = std::env::var("TRIBUTARY_BENCH_DB") else {
        assert!(
            !smoke(),
            "the smoke run needs TRIBUTARY_BENCH_DB (make test sets it)"
        );
        println!(
            "| GraphQL ancestry | skipped: set TRIBUTARY_BENCH_DB to the graph the ancestry benchmark loads (make bench does) |"
        );
        return;
    };
    let store = Store::connect(&format!("sqlite://{path}")).await.unwrap();
    let (nodes, edges) = store.counts(CHAIN).await.unwrap();
    assert!(
        nodes > 0,
        "{path} holds no graph: run the ancestry benchmark first (cargo bench -p tributary-sql --bench ancestry)"
    );
    let answers: Vec<String> = store
        .nodes_of_kind(
            CHAIN,
            NodeKind::Answer,
            (None, None),
            (None, Default::default()),
            1000,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id.to_string())
        .collect();
    assert!(
        !answers.is_empty(),
        "{path} holds no answers: remove it and run the ancestry benchmark again"
    );
    let url = serve(store).await;
    let (clients, secs) = if smoke() { (4, 1.0) } else { (64, 15.0) };
    let (cheap_rps, cheap) = cheapest(&url, clients, secs).await;
    // The page as an explorer asks for it, then two smaller selections of the same walk, to
    // see what the fields cost next to the walk: the node ids only, and no nodes (`seq`).
    // The id goes in a variable, as clients send it (GraphiQL, Apollo, urql: one query text,
    // parsed once); the last line writes it into the query text instead, each text new.
    let page = "seq nodes { id kind depth } pageInfo { hasNextPage endCursor }";
    let selections = [
        (page, true, true),
        ("seq nodes { id }", true, true),
        ("seq pageInfo { hasNextPage }", false, true),
        (page, true, false),
    ];
    for (selection, with_nodes, variable) in selections {
        let text = format!(
            "query($id: String!) {{ ancestry(id: $id, depth: 6, first: 100) {{ {selection} }} }}"
        );
        eprintln!("query: {clients} clients asking for {selection} (variable id: {variable})");
        let answers = answers.clone();
        let (rps, lat) = load(
            &url,
            clients,
            secs,
            move |pick| {
                let id = &answers[pick as usize % answers.len()];
                if variable {
                    json!({ "query": text, "variables": { "id": id } }).to_string()
                } else {
                    let q = format!(
                        r#"{{ ancestry(id: "{id}", depth: 6, first: 100) {{ {selection} }} }}"#
                    );
                    json!({ "query": q }).to_string()
                }
            },
            move |b| {
                serde_json::from_slice::<Answer>(b).is_ok_and(|a| {
                    a.errors.is_none()
                        && a.data.is_some_and(|d| {
                            !with_nodes || d.ancestry.nodes.is_some_and(|n| n.len() > 1)
                        })
                })
            },
        )
        .await;
        let id = if variable { "$id" } else { "\"answer:…\"" };
        println!(
            "| GraphQL `ancestry(id: {id}, first: 100) {{ {selection} }}`, depth 6, {nodes} nodes / {edges} edges, {clients} clients | {rps:.1} req/s, p50 {:.1} ms, p95 {:.1} ms | `{{ __typename }}` {cheap_rps:.0} req/s, p50 {:.2} ms, p95 {:.2} ms | {:.3}x |",
            percentile(&lat, 0.5),
            percentile(&lat, 0.95),
            percentile(&cheap, 0.5),
            percentile(&cheap, 0.95),
            rps / cheap_rps
        );
    }
}

/// Serves GraphQL over `store`'s graph (its lineage index built first, as `serve` does) on a
/// local port, in this process; returns the endpoint's URL.
async fn serve(store: Store) -> String {
    let index = tributary_sql::LineageIndex::new(store, CHAIN, None, tributary_api::REORG_WINDOW);
    let t = Instant::now();
    index.fresh().await.unwrap();
    eprintln!(
        "query: lineage index built from the store in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let app = tributary_api::router(
        tributary_api::schema_over(index, None),
        &tributary_api::Limits::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The reference of the GraphQL rows: `{ __typename }`, the cheapest query, on the same server.
async fn cheapest(url: &str, clients: usize, secs: f64) -> (f64, Vec<f64>) {
    load(
        url,
        clients,
        secs,
        |_| json!({"query": "{ __typename }"}).to_string(),
        |b| b == br#"{"data":{"__typename":"Query"}}"#,
    )
    .await
}

/// What an explorer page's answer must hold: no errors, and a list of nodes somewhere.
fn page_nodes(b: &[u8]) -> Option<usize> {
    let v: Value = serde_json::from_slice(b).ok()?;
    if v.get("errors").is_some() {
        return None;
    }
    fn find(v: &Value) -> Option<usize> {
        match v {
            Value::Object(m) => m
                .get("nodes")
                .and_then(Value::as_array)
                .map(Vec::len)
                .or_else(|| m.values().find_map(find)),
            _ => None,
        }
    }
    find(&v["data"])
}

/// 3. **The explorer's paged tables at ~1M contributions.** Each table query the web app
///    sends (a page of 25 rows, as `api/app/app.js` asks for it), over HTTP against the graph
///    the ancestry benchmark loads, next to `{ __typename }` on the same server: a Datanet's
///    contributions oldest and newest first, a page 40 pages in (after a cursor), narrowed to
///    one contributor, narrowed to revoked ones (none in this graph), a contributor's page,
///    and every contribution newest first. Issue 23's goal: pages stay usable (p95 under
///    100 ms with 4 clients on this machine's cores).
async fn pages() {
    let Ok(path) = std::env::var("TRIBUTARY_BENCH_DB") else {
        assert!(
            !smoke(),
            "the smoke run needs TRIBUTARY_BENCH_DB (make test sets it)"
        );
        println!("| explorer pages | skipped: set TRIBUTARY_BENCH_DB (make bench does) |");
        return;
    };
    let store = Store::connect(&format!("sqlite://{path}")).await.unwrap();
    let contributions = store
        .contributions(CHAIN, &Default::default(), (None, Default::default()), 1)
        .await
        .unwrap();
    assert!(
        !contributions.is_empty(),
        "{path} holds no contributions: run the ancestry benchmark first"
    );
    let (nodes, _) = store.counts(CHAIN).await.unwrap();
    let people: Vec<String> = store
        .nodes_of_kind(
            CHAIN,
            NodeKind::Contributor,
            (None, None),
            (None, Default::default()),
            1000,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id.key().to_string())
        .collect();
    let datanets = store.datanets(CHAIN).await.unwrap().len() as u64;
    let url = serve(store).await;
    let fields =
        "nodes { id contributor license status block batch } pageInfo { hasNextPage endCursor }";
    let datanet_page = format!(
        "query($id: Int!, $after: String, $who: String, $status: ContributionStatus, $order: Order) {{ \
         datanet(id: $id) {{ contributions(first: 25, after: $after, contributor: $who, status: $status, order: $order) {{ {fields} }} }} }}"
    );
    // The cursor 40 pages into a Datanet (1,000 rows; the smoke run's Datanets hold about 90,
    // so 1 page there), as "Next" would reach it.
    let skip = if smoke() { 25 } else { 1000 };
    let query = format!(
        "{{ datanet(id: 1) {{ contributions(first: {skip}) {{ pageInfo {{ endCursor }} }} }} }}"
    );
    let deep = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(json!({ "query": query }).to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let deep: Value = serde_json::from_slice(&deep).unwrap();
    let deep = deep["data"]["datanet"]["contributions"]["pageInfo"]["endCursor"].clone();
    assert!(deep.is_string(), "{deep}");

    let (clients, secs) = if smoke() { (2, 0.5) } else { (4, 5.0) };
    let (cheap_rps, cheap) = cheapest(&url, clients, secs).await;
    let d = move |pick: u64| pick % datanets;
    let who = move |pick: u64| people[pick as usize % people.len()].clone();
    // (what, the request body for a random pick, how many rows the answer must hold)
    type Case = (
        &'static str,
        Box<dyn Fn(u64) -> String + Send + Sync>,
        fn(usize) -> bool,
    );
    let q = datanet_page.clone();
    let cases: Vec<Case> = vec![
        (
            "a Datanet's contributions, oldest first",
            {
                let q = q.clone();
                Box::new(move |p| json!({"query": q, "variables": {"id": d(p)}}).to_string())
            },
            |n| n == 25,
        ),
        (
            "the same, newest first",
            {
                let q = q.clone();
                Box::new(move |p| {
                    json!({"query": q, "variables": {"id": d(p), "order": "NEWEST_FIRST"}})
                        .to_string()
                })
            },
            |n| n == 25,
        ),
        (
            "the same, 40 pages in (after a cursor; 1 in the smoke run)",
            {
                let q = q.clone();
                let deep = deep.clone();
                Box::new(move |_| {
                    json!({"query": q, "variables": {"id": 1, "after": deep}}).to_string()
                })
            },
            |n| n == 25,
        ),
        (
            "a Datanet's contributions by one contributor",
            {
                let q = q.clone();
                let who = who.clone();
                Box::new(move |p| {
                    json!({"query": q, "variables": {"id": d(p), "who": who(p / 7)}}).to_string()
                })
            },
            |n| n <= 25,
        ),
        (
            "a Datanet's revoked contributions (none in this graph)",
            {
                let q = q.clone();
                Box::new(move |p| {
                    json!({"query": q, "variables": {"id": d(p), "status": "REVOKED"}}).to_string()
                })
            },
            |n| n <= 25,
        ),
        (
            "a contributor's contributions, newest first",
            {
                let who = who.clone();
                let q = format!(
                    "query($a: String!) {{ contributor(address: $a) {{ contributions(first: 25, order: NEWEST_FIRST) {{ {fields} }} }} }}"
                );
                Box::new(move |p| json!({"query": q, "variables": {"a": who(p)}}).to_string())
            },
            |n| n <= 25,
        ),
        (
            "every contribution, newest first",
            {
                let q =
                    format!("{{ contributions(first: 25, order: NEWEST_FIRST) {{ {fields} }} }}");
                Box::new(move |_| json!({"query": q}).to_string())
            },
            |n| n == 25,
        ),
    ];
    for (what, body, rows) in cases {
        eprintln!("query: {clients} clients asking for {what}");
        let (rps, lat) = load(&url, clients, secs, body, move |b| {
            page_nodes(b).is_some_and(rows)
        })
        .await;
        println!(
            "| Explorer page: {what}, 25 rows, graph of {nodes} nodes, {clients} clients | {rps:.1} req/s, p50 {:.1} ms, p95 {:.1} ms | `{{ __typename }}` {cheap_rps:.0} req/s, p50 {:.2} ms | {:.3}x |",
            percentile(&lat, 0.5),
            percentile(&lat, 0.95),
            percentile(&cheap, 0.5),
            rps / cheap_rps
        );
    }
}

#[tokio::main]
async fn main() {
    let scale: f64 = std::env::var("TRIBUTARY_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke() { 0.002 } else { 1.0 });
    // `TRIBUTARY_BENCH_ONLY=views`, `=graphql` or `=pages`: that part alone.
    let only = std::env::var("TRIBUTARY_BENCH_ONLY").ok();
    if only.is_none() || only.as_deref() == Some("views") {
        views(scale).await;
    }
    if only.is_none() || only.as_deref() == Some("graphql") {
        graphql().await;
    }
    if only.is_none() || only.as_deref() == Some("pages") {
        pages().await;
    }
}
