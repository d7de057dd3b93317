//! The typed objects over a fixture graph with every node kind: answers checked against a
//! snapshot file (`TRIBUTARY_BLESS=1` rewrites it), plus the invariants spelled out;
//! subscriptions over a real WebSocket; the request limits.

use std::time::Duration;

use alloy::primitives::{Address, B256};
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tower::ServiceExt;
use tributary_api::Limits;
use tributary_schemas::lineage::{self as g, ChainPos, Edge, EdgeKind, Node, NodeId, NodeKind};
use tributary_sql::{Checkpoint, RawEvent, Rows, Store};

use crate::graphql::{CHAIN, fixture, lake, post};

/// An edge before it has a chain position: (src, dst, kind, weight).
type Link = (NodeId, NodeId, EdgeKind, Option<f64>);

fn pos(block: u64, log: u64) -> ChainPos {
    ChainPos {
        block_number: block,
        block_hash: B256::repeat_byte(block as u8),
        tx_hash: B256::repeat_byte(0x90 + log as u8),
        log_index: log,
    }
}

fn hash(b: u8) -> B256 {
    B256::repeat_byte(b)
}

fn who(b: u8) -> String {
    g::hex_lower(Address::repeat_byte(b).as_slice())
}

/// Nodes and edges applied as the indexer would, in block `block`.
async fn apply(store: &Store, block: u64, nodes: Vec<Node>, edges: Vec<Link>) {
    let edges: Vec<Edge> = edges
        .into_iter()
        .enumerate()
        .map(|(i, (src, dst, kind, weight))| Edge {
            src,
            dst,
            kind,
            weight,
            pos: pos(block, i as u64),
        })
        .collect();
    let cp = Checkpoint {
        block_number: block,
        block_hash: hash(block as u8).to_string(),
    };
    // One log per step, as the indexer has: the store numbers a step by its logs' blocks.
    let events = [RawEvent {
        address: who(0xcc),
        name: "Fixture".into(),
        data: json!({}),
        pos: pos(block, 0),
    }];
    let rows = Rows {
        events: &events,
        nodes: &nodes,
        edges: &edges,
        ..Default::default()
    };
    store.apply(CHAIN, "lineage", rows, &cp).await.unwrap();
}

fn node(id: NodeId, kind: NodeKind, props: Value, block: u64, log: u64) -> Node {
    Node {
        id,
        kind,
        props,
        pos: pos(block, log),
    }
}

/// A published adapter `id` of version `version` with its run and edges.
fn adapter(id: u8, version: &str, parents: &[u8], log: u64, block: u64) -> (Vec<Node>, Vec<Link>) {
    let a = g::adapter_id(hash(id));
    let run = g::training_run_id(hash(id));
    let props = json!({
        "base_model_id": hash(0xb0).to_string(),
        "parent_ids": parents.iter().map(|p| hash(*p).to_string()).collect::<Vec<_>>(),
        "snapshot_id": hash(0x5a).to_string(),
        "config_hash": hash(0xc0 + id % 16).to_string(),
        "weights_hash": hash(0xe0 + id % 16).to_string(),
        "uri": format!("file:///lake/adapters/{:02x}", id),
        "version": version,
    });
    let nodes = vec![
        node(a.clone(), NodeKind::Adapter, props, block, log),
        node(
            run.clone(),
            NodeKind::TrainingRun,
            json!({"snapshot_id": hash(0x5a).to_string(), "config_hash": hash(0xc0 + id % 16).to_string()}),
            block,
            log,
        ),
    ];
    let mut edges = vec![
        (
            g::snapshot_id(hash(0x5a)),
            run.clone(),
            EdgeKind::Trained,
            None,
        ),
        (run, a.clone(), EdgeKind::Produced, None),
        (
            a.clone(),
            g::base_model_id(hash(0xb0)),
            EdgeKind::DerivedFrom,
            None,
        ),
    ];
    for p in parents {
        edges.push((
            a.clone(),
            g::adapter_id(hash(*p)),
            EdgeKind::DerivedFrom,
            None,
        ));
    }
    (nodes, edges)
}

/// [`fixture`] (a Datanet, 3 contributions in one batch) plus a validation, a revocation, a
/// base model, a snapshot of two contributions, three adapters of one line (1.10.0 published
/// before 1.9.0) with 1.9.0's held-out credit, an inference batch of two credited answers and
/// a reward epoch.
async fn model_fixture(dir: &std::path::Path) -> Store {
    let store = fixture(dir, 3).await;
    let batch = g::batch_id(hash(0xba));
    let c = |i: u8| g::contribution_id(hash(i));
    let validation = g::validation_id(hash(0xba), Address::repeat_byte(0x77), &pos(8, 0));
    // The validator's second verdict on the batch: the one that counts.
    let second = g::validation_id(hash(0xba), Address::repeat_byte(0x77), &pos(8, 9));
    let nodes = vec![
        node(
            validation.clone(),
            NodeKind::Validation,
            json!({"datanet_id": 1, "validator": who(0x77), "verdicts_root": hash(0x7e).to_string(), "accepted": 3, "rejected": 0}),
            8,
            0,
        ),
        node(
            second.clone(),
            NodeKind::Validation,
            json!({"datanet_id": 1, "validator": who(0x77), "verdicts_root": hash(0x7d).to_string(), "accepted": 2, "rejected": 1}),
            8,
            9,
        ),
        node(
            g::revocation_id(hash(2)),
            NodeKind::Revocation,
            json!({"datanet_id": 1, "by": who(1), "reason": "duplicate"}),
            8,
            1,
        ),
        node(
            g::base_model_id(hash(0xb0)),
            NodeKind::BaseModel,
            json!({"weights_hash": hash(0xbb).to_string(), "architecture": "gpt2", "uri": "file:///lake/base/tiny"}),
            8,
            2,
        ),
        node(
            g::snapshot_id(hash(0x5a)),
            NodeKind::Snapshot,
            json!({"datanet_ids": [1], "lake_versions": [1], "contributions_root": hash(0x55).to_string(), "count": 2,
                   "verified": false, "da": "unreachable", "reason": "manifest unreachable after 3 attempts: access denied"}),
            8,
            3,
        ),
    ];
    let edges = vec![
        (validation, batch.clone(), EdgeKind::Validates, None),
        (second, batch.clone(), EdgeKind::Validates, None),
        (g::revocation_id(hash(2)), c(2), EdgeKind::Revokes, None),
        (
            g::snapshot_id(hash(0x5a)),
            g::datanet_id(1),
            EdgeKind::DrawnFrom,
            None,
        ),
        (c(0), g::snapshot_id(hash(0x5a)), EdgeKind::IncludedIn, None),
        (c(1), g::snapshot_id(hash(0x5a)), EdgeKind::IncludedIn, None),
    ];
    apply(&store, 8, nodes, edges).await;

    let (mut nodes, mut edges) = (Vec::new(), Vec::new());
    for (id, version, parents, log) in [
        (0xa1, "kitchen@1.0.0", &[][..], 0),
        (0xa2, "kitchen@1.10.0", &[0xa1][..], 1),
        (0xa3, "kitchen@1.9.0", &[0xa1][..], 2),
    ] {
        let (n, e) = adapter(id, version, parents, log, 9);
        nodes.extend(n);
        edges.extend(e);
    }
    let inference = g::inference_id(hash(0x1f));
    nodes.push(node(
        inference.clone(),
        NodeKind::Inference,
        json!({"adapter_ids": [hash(0xa2).to_string()], "merkle_root": hash(0x1e).to_string(), "count": 2,
               "manifest_uri": "file:///lake/inferences/1f.json", "verified": true, "tokens": 40, "fees": "1000"}),
        9,
        3,
    ));
    edges.push((
        inference.clone(),
        g::adapter_id(hash(0xa2)),
        EdgeKind::ServedBy,
        None,
    ));
    // Two answers: 0x2a credits c0 0.6 and c1 0.4; 0x2b credits c0 0.6 and, past its listed
    // contributions, contributor 0x03 with 0.4.
    for (b, credit) in [
        (0x2a, [(c(0), 0.6), (c(1), 0.4)]),
        (
            0x2b,
            [
                (c(0), 0.6),
                (g::contributor_id(Address::repeat_byte(3)), 0.4),
            ],
        ),
    ] {
        let answer = g::answer_id(hash(b));
        nodes.push(node(
            answer.clone(),
            NodeKind::Answer,
            json!({"adapter_id": hash(0xa2).to_string(), "tokens": 20, "fee": "500",
                   "request_hash": hash(0x3a).to_string(), "response_hash": hash(0x3b).to_string(),
                   "attribution_root": hash(0x3c).to_string()}),
            9,
            3,
        ));
        edges.push((
            answer.clone(),
            inference.clone(),
            EdgeKind::RecordedIn,
            None,
        ));
        edges.push((
            answer.clone(),
            g::adapter_id(hash(0xa2)),
            EdgeKind::ServedBy,
            None,
        ));
        for (dst, w) in credit {
            edges.push((answer.clone(), dst, EdgeKind::AttributedTo, Some(w)));
        }
    }
    // Adapter 1.9.0's held-out credit: c2 is revoked since, so c0 and c1 share the rest.
    for (i, w) in [(0, 0.5), (1, 0.25), (2, 0.25)] {
        edges.push((
            g::adapter_id(hash(0xa3)),
            c(i),
            EdgeKind::AttributedTo,
            Some(w),
        ));
    }
    nodes.push(node(
        g::reward_epoch_id(1),
        NodeKind::RewardEpoch,
        // 2^53 + 1 units to 0x01…: exact only as a decimal string.
        json!({
            "merkle_root": hash(0x4e).to_string(), "total": "9007199254741193", "verified": true,
            "amounts": {who(1): "9007199254740993", who(2): "200"},
            "policy": {"platform": 1000, "owner": 2000, "stakers": 2000, "contributors": 5000},
        }),
        9,
        4,
    ));
    edges.push((
        g::reward_epoch_id(1),
        g::contributor_id(Address::repeat_byte(1)),
        EdgeKind::Rewarded,
        Some(1.0),
    ));
    edges.push((
        g::reward_epoch_id(1),
        g::contributor_id(Address::repeat_byte(2)),
        EdgeKind::Rewarded,
        Some(0.0),
    ));
    // The epoch paid out inference batch 0x1f…; 0x01… has claimed it, 0x02… not yet.
    edges.push((
        g::reward_epoch_id(1),
        g::inference_id(hash(0x1f)),
        EdgeKind::Settles,
        None,
    ));
    edges.push((
        g::contributor_id(Address::repeat_byte(1)),
        g::reward_epoch_id(1),
        EdgeKind::Claimed,
        None,
    ));
    apply(&store, 9, nodes, edges).await;
    store
}

const MODEL_QUERY: &str = r#"{
  baseModels { nodes { id architecture adapters { version } } }
  line: adapter(version: "kitchen@1.10.0") {
    id nodeId version line uri weightsHash configHash creditUnavailable block txHash
    baseModel { id weightsHash uri }
    parents { version }
    children { version }
    snapshot {
      id count lakeVersions contributionsRoot verified availability reason datanets { name }
      contributions(first: 10) { nodes { id } }
      trainingRuns { id }
    }
    trainingRun { id configHash snapshot { id } adapter { version } }
    versions { version }
  }
  firstTwo: adapters(first: 2) { nodes { version } pageInfo { hasNextPage } }
  lastTwo: adapters(first: 2, order: NEWEST_FIRST) { nodes { version } pageInfo { hasNextPage } }
  inference(id: "0x1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f") {
    id count tokens fees verified availability reason adapters { version }
    attribution { method contributors { address share contributions } contributions { id contributor share } }
    answers { id }
    settledIn { epoch }
  }
  answer(id: "0x2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b") {
    id tokens fee requestHash batch { id } adapter { version }
    attribution { method contributors { address share contributions } contributions { id contributor share } }
  }
  heldOut: attribution(subject: "adapter:0xa3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3") {
    method contributors { address share } contributions { id share }
  }
  byCount: attribution(subject: "adapter:0xa2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2") {
    method contributors { address share contributions }
  }
  rewardEpochs { nodes { epoch total merkleRoot verified availability reason
    allocations { contributor amount share claim { block } }
    policy { platform owner stakers contributors } batches { id } } }
  contributor(address: "0x0101010101010101010101010101010101010101") {
    address nodeId influence rewards { epoch amount share claim { block txHash } }
    contributions(first: 10) { nodes { id status } }
  }
  batch(id: "0xbabababababababababababababababababababababababababababababababa") {
    id count verified lakeVersion datanet { name }
    validations { validator accepted rejected verdictsRoot batch { id } }
    allValidations: validations(all: true) { accepted rejected block }
    contributions(first: 10) { nodes { id status by { address } anchor { id } merkleProof { valid proof } } }
  }
  revoked: contributions(status: REVOKED) { nodes { id status datanet { name } } }
  anchored: contributions(status: ANCHORED) { nodes { id } }
}"#;

/// Every object over the fixture, checked against the stored snapshot.
#[tokio::test]
async fn every_node_kind_answers_as_in_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = model_fixture(dir.path()).await;
    let schema = tributary_api::schema(store, Some(lake(dir.path())), CHAIN);
    let app = tributary_api::router(schema, &Limits::default());
    let v = post(&app, MODEL_QUERY).await;
    assert!(v.get("errors").is_none(), "{v:#}");
    let d = &v["data"];

    // The invariants, spelled out.
    let versions: Vec<&str> = d["line"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_str().unwrap())
        .collect();
    assert_eq!(
        versions,
        ["kitchen@1.0.0", "kitchen@1.9.0", "kitchen@1.10.0"]
    );
    // The batch's credit is its answers' averaged: c0 0.6, c1 0.2, contributor 0x03 0.2.
    let shares = |a: &serde_json::Value, list: &str| -> Vec<(String, f64)> {
        a[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let name = c.get("address").or(c.get("id")).unwrap();
                (
                    name.as_str().unwrap().to_string(),
                    c["share"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let close = |got: Vec<(String, f64)>, want: &[(String, f64)]| {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for ((a, x), (b, y)) in got.iter().zip(want) {
            assert!(a == b && (x - y).abs() < 1e-9, "{got:?} vs {want:?}");
        }
    };
    let a = &d["inference"]["attribution"];
    assert_eq!(a["method"], "batch_mean");
    assert_eq!(d["inference"]["answers"].as_array().unwrap().len(), 2);
    close(shares(a, "contributors")[..1].to_vec(), &[(who(1), 0.6)]);
    let sum: f64 = shares(a, "contributors").iter().map(|c| c.1).sum();
    assert!((sum - 1.0).abs() < 1e-9, "shares sum to {sum}");
    // One answer: as recorded; the credit past its listed contributions is its
    // contributor's, under no contribution.
    let a = &d["answer"]["attribution"];
    assert_eq!(a["method"], "recorded");
    close(shares(a, "contributors"), &[(who(1), 0.6), (who(3), 0.4)]);
    close(shares(a, "contributions"), &[(hash(0).to_string(), 0.6)]);
    assert_eq!(d["answer"]["fee"], "500");
    assert_eq!(d["answer"]["batch"]["id"], hash(0x1f).to_string());
    // An adapter's held-out credit, less the contribution revoked since.
    let a = &d["heldOut"];
    assert_eq!(a["method"], "held_out");
    close(
        shares(a, "contributions"),
        &[
            (hash(0).to_string(), 2.0 / 3.0),
            (hash(1).to_string(), 1.0 / 3.0),
        ],
    );
    assert_eq!(d["byCount"]["method"], "contribution_count");
    // Influence on answers: c0's 0.6 in each of the two.
    assert!((d["contributor"]["influence"].as_f64().unwrap() - 1.2).abs() < 1e-9);
    for c in d["batch"]["contributions"]["nodes"].as_array().unwrap() {
        assert_eq!(c["merkleProof"]["valid"], true, "{c}");
    }
    // Amounts are exact decimal strings wherever they show.
    assert_eq!(d["contributor"]["rewards"][0]["amount"], "9007199254740993");
    assert_eq!(
        d["rewardEpochs"]["nodes"][0]["allocations"][0]["amount"],
        "9007199254740993"
    );
    assert_eq!(d["rewardEpochs"]["nodes"][0]["total"], "9007199254741193");
    // Each manifest's check, as the indexer recorded it: one the lake did not serve waits.
    let snapshot = &d["line"]["snapshot"];
    assert_eq!(
        (&snapshot["verified"], &snapshot["availability"]),
        (&false.into(), &"unreachable".into()),
        "{snapshot}"
    );
    assert!(snapshot["reason"].as_str().unwrap().contains("unreachable"));
    assert_eq!(d["inference"]["availability"], "verified");
    assert_eq!(d["rewardEpochs"]["nodes"][0]["availability"], "verified");
    // A validator's latest verdict counts; all of them on asking, oldest first.
    let verdicts = &d["batch"]["validations"];
    assert_eq!(verdicts.as_array().unwrap().len(), 1, "{verdicts}");
    assert_eq!(
        (&verdicts[0]["accepted"], &verdicts[0]["rejected"]),
        (&2.into(), &1.into())
    );
    let all: Vec<u64> = d["batch"]["allValidations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["accepted"].as_u64().unwrap())
        .collect();
    assert_eq!(all, [3, 2]);
    assert_eq!(d["revoked"]["nodes"][0]["id"], hash(2).to_string());
    assert_eq!(d["anchored"]["nodes"].as_array().unwrap().len(), 2);

    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/snapshots/model_graph.json");
    // Proofs name the lake's temp path nowhere; the manifest URI is not asked for.
    let got = serde_json::to_string_pretty(d).unwrap() + "\n";
    if std::env::var_os("TRIBUTARY_BLESS").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &got).unwrap();
    }
    let want = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        got == want,
        "the answer differs from {}; if the change is intended, rerun with TRIBUTARY_BLESS=1\n{got}",
        file.display()
    );
}

/// An id that is not there, a bad version and a bad subject are clear answers.
/// Node lists page by cursor in either order: one adapter a page, oldest first and newest
/// first, each the other reversed (three adapters in one block, told apart by log index).
#[tokio::test]
async fn node_lists_page_by_cursor_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let store = model_fixture(dir.path()).await;
    let app = tributary_api::router(
        tributary_api::schema(store, None, CHAIN),
        &Limits::default(),
    );
    let mut walks = Vec::new();
    for order in ["OLDEST_FIRST", "NEWEST_FIRST"] {
        let (mut seen, mut after) = (Vec::new(), String::new());
        loop {
            let v = post(
                &app,
                &format!("{{ adapters(first: 1, order: {order}{after}) {{ nodes {{ version }} pageInfo {{ hasNextPage endCursor }} }} }}"),
            )
            .await;
            let page = &v["data"]["adapters"];
            seen.push(page["nodes"][0]["version"].as_str().unwrap().to_string());
            if page["pageInfo"]["hasNextPage"] == false {
                break;
            }
            after = format!(", after: {}", page["pageInfo"]["endCursor"]);
        }
        walks.push(seen);
    }
    assert_eq!(
        walks[0],
        ["kitchen@1.0.0", "kitchen@1.10.0", "kitchen@1.9.0"],
        "{walks:?}"
    );
    walks[1].reverse();
    assert_eq!(walks[0], walks[1]);
}

#[tokio::test]
async fn lookups_of_missing_or_malformed_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = model_fixture(dir.path()).await;
    let app = tributary_api::router(
        tributary_api::schema(store, None, CHAIN),
        &Limits::default(),
    );
    let v = post(
        &app,
        r#"{ adapter(id: "0x00") { id } snapshot(id: "0x5a") { id } }"#,
    )
    .await;
    assert_eq!(v["data"], json!({"adapter": null, "snapshot": null}), "{v}");
    let v = post(&app, r#"{ adapter(version: "1.0.0") { id } }"#).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("line@semver"),
        "{v}"
    );
    let v = post(&app, r#"{ attribution(subject: "0xabc") { method } }"#).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("kind:key"),
        "{v}"
    );
    let v = post(&app, r#"{ contributor(address: "bob") { address } }"#).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("20-byte address"),
        "{v}"
    );
    // Without a lake, a Merkle proof says why it cannot be made; the rest still answers.
    let v = post(
        &app,
        r#"{ contributions(first: 1) { nodes { id merkleProof { valid } } } }"#,
    )
    .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no lake"),
        "{v}"
    );
}

/// A subscriber over a real WebSocket (graphql-transport-ws) gets the adapter the store
/// gains after it subscribed, with its relations, and nothing from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_new_adapters_over_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let store = model_fixture(dir.path()).await;
    let app = tributary_api::router(
        tributary_api::schema(store.clone(), None, CHAIN),
        &Limits::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut req = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let send = |v: Value| Message::text(v.to_string());
    ws.send(send(json!({"type": "connection_init"})))
        .await
        .unwrap();
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws.send(send(json!({"id": "1", "type": "subscribe",
        "payload": {"query": "subscription { adapters { version parents { version } baseModel { architecture } } }"}})))
        .await
        .unwrap();
    // The subscription starts at the store's latest change when the server gets to it, which
    // a client cannot see: adapters are published one after another until one arrives, each
    // waited for a little longer (only the pace depends on time, not the outcome). What
    // arrives is a new one (the fixture's are never sent), with its relations; then every
    // adapter published after it, in order.
    let mut published = 0u8;
    let first = loop {
        assert!(published < 60, "no new adapter arrived in 60 publications");
        let version = format!("kitchen@2.0.{published}");
        let (nodes, edges) = adapter(
            0xa4 + published,
            &version,
            &[0xa2],
            0,
            10 + published as u64,
        );
        apply(&store, 10 + published as u64, nodes, edges).await;
        let wait = Duration::from_millis(500 * (published as u64 + 1)).min(Duration::from_secs(10));
        published += 1;
        if let Ok(msg) = tokio::time::timeout(wait, next_json(&mut ws)).await {
            break msg;
        }
    };
    assert_eq!(first["type"], "next", "{first}");
    let data = &first["payload"]["data"]["adapters"];
    assert_eq!(
        (&data["parents"], &data["baseModel"]),
        (
            &json!([{"version": "kitchen@1.10.0"}]),
            &json!({"architecture": "gpt2"})
        ),
        "{first}"
    );
    let patch = |m: &Value| -> u8 {
        let v = m["payload"]["data"]["adapters"]["version"]
            .as_str()
            .unwrap_or_default();
        v.strip_prefix("kitchen@2.0.")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not an adapter published after subscribing: {m}"))
    };
    let (nodes, edges) = adapter(
        0xa4 + published,
        &format!("kitchen@2.0.{published}"),
        &[0xa2],
        0,
        10 + published as u64,
    );
    apply(&store, 10 + published as u64, nodes, edges).await;
    let mut last = patch(&first);
    while last < published {
        let msg = tokio::time::timeout(Duration::from_secs(600), next_json(&mut ws))
            .await
            .expect("the adapters published after the first arrives follow it");
        assert_eq!(patch(&msg), last + 1, "in order, none skipped: {msg}");
        last += 1;
    }
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await.expect("socket open").unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Introspection can be switched off; a request past the time limit or the body limit is
/// refused with a message that says which limit.
#[tokio::test]
async fn introspection_switch_timeout_and_body_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = model_fixture(dir.path()).await;
    let schema = tributary_api::schema(store, None, CHAIN);
    let introspect = "{ __schema { queryType { name } } }";
    let open = tributary_api::router(schema.clone(), &Limits::default());
    let v = post(&open, introspect).await;
    assert_eq!(v["data"]["__schema"]["queryType"]["name"], "Query", "{v}");

    let closed = tributary_api::router(
        schema.clone(),
        &Limits {
            introspection: false,
            ..Limits::default()
        },
    );
    let v = post(&closed, introspect).await;
    assert_eq!(
        v["data"]["__schema"],
        Value::Null,
        "introspection answers nothing: {v}"
    );
    let v = post(&closed, "{ chainId }").await;
    assert_eq!(v["data"]["chainId"], CHAIN, "other queries still answer");

    // A query with thousands of store reads (100 contributions, each contributor's 50, a
    // proof and the influence of each) against a limit of 1 ms.
    let busy = tempfile::tempdir().unwrap();
    let hurried = tributary_api::router(
        tributary_api::schema(
            fixture(busy.path(), 100).await,
            Some(lake(busy.path())),
            CHAIN,
        ),
        &Limits {
            timeout: Duration::from_millis(1),
            ..Limits::default()
        },
    );
    let v = post(
        &hurried,
        "{ contributions(first: 1000) { nodes { by { contributions(first: 1000) { nodes { merkleProof { valid } by { influence } } } } } } }",
    )
    .await;
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("longer than the limit"), "{msg}");

    let small = tributary_api::router(
        schema,
        &Limits {
            max_body_bytes: 1024,
            ..Limits::default()
        },
    );
    let big = json!({ "query": format!("{{ chainId }} #{}", "x".repeat(4096)) }).to_string();
    let req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    let res = small.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Without a length up front (chunked), reading stops at the limit.
    let req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(big))
        .unwrap();
    let res = small.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = to_bytes(res.into_body(), 1 << 16).await.unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("length limit exceeded"), "{body}");
    let v = post(&small, "{ chainId }").await;
    assert_eq!(v["data"]["chainId"], CHAIN);
}
