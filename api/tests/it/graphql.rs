use alloy::primitives::{Address, B256};
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use tributary_schemas::lineage::{self as g, ChainPos, Edge, EdgeKind, Node, NodeKind};
use tributary_schemas::manifest::{BatchManifest, ManifestEntry};
use tributary_sql::{Checkpoint, Store};

pub(crate) const CHAIN: u64 = 31337;

/// A store with one Datanet and `n` contributions from two contributors in one batch, whose
/// manifest is in the lake at `dir/lake` ([`lake`]).
pub(crate) async fn fixture(dir: &std::path::Path, n: u8) -> Store {
    let store = Store::connect(&format!("sqlite://{}", dir.join("i.db").display()))
        .await
        .unwrap();
    let manifest = BatchManifest {
        datanet_id: 1,
        batch_id: B256::repeat_byte(0xba),
        table: "datanet_1".into(),
        lake_version: 1,
        contributions: (0..n)
            .map(|i| ManifestEntry {
                id: B256::repeat_byte(i),
                contributor: Address::repeat_byte(1 + i % 2),
                content_hash: B256::repeat_byte(i),
                license: "MIT".into(),
                timestamp: 1_700_000_000,
                proof: None,
            })
            .collect(),
    };
    let uri = lake(dir)
        .put("manifests/batch-ba.json", manifest.to_bytes())
        .await
        .unwrap();
    let root = if n > 0 {
        manifest.merkle_tree().root()
    } else {
        B256::ZERO
    };
    let pos = ChainPos {
        block_number: 7,
        block_hash: B256::repeat_byte(7),
        tx_hash: B256::repeat_byte(0x77),
        log_index: 0,
    };
    let batch = g::batch_id(B256::repeat_byte(0xba));
    let mut nodes = vec![
        Node {
            id: g::datanet_id(1),
            kind: NodeKind::Datanet,
            props: json!({"name": "kitchen", "domain": "cooking", "owner": "0xo", "schema_hash": "0x5"}),
            pos,
        },
        Node {
            id: batch.clone(),
            kind: NodeKind::Batch,
            props: json!({
                "verified": true,
                "datanet_id": 1,
                "count": n,
                "merkle_root": root.to_string(),
                "manifest_uri": uri.to_string(),
                "lake_version": 1,
            }),
            pos,
        },
    ];
    let mut edges = Vec::new();
    for i in 0..n {
        let c = g::contribution_id(B256::repeat_byte(i));
        let who = g::contributor_id(Address::repeat_byte(1 + i % 2));
        nodes.push(Node {
            id: c.clone(),
            kind: NodeKind::Contribution,
            props: json!({"content_hash": format!("0x{i:02x}"), "license": "MIT"}),
            pos,
        });
        nodes.push(Node {
            id: who.clone(),
            kind: NodeKind::Contributor,
            props: json!({}),
            pos,
        });
        for (src, dst, kind) in [
            (who, c.clone(), EdgeKind::Contributed),
            (c.clone(), g::datanet_id(1), EdgeKind::In),
            (c, batch.clone(), EdgeKind::AnchoredIn),
        ] {
            edges.push(Edge {
                src,
                dst,
                kind,
                weight: None,
                pos,
            });
        }
    }
    let cp = Checkpoint {
        block_number: 7,
        block_hash: B256::repeat_byte(7).to_string(),
    };
    store
        .apply(
            CHAIN,
            "lineage",
            tributary_sql::Rows {
                nodes: &nodes,
                edges: &edges,
                ..Default::default()
            },
            &cp,
        )
        .await
        .unwrap();
    store
}

/// The lake of [`fixture`].
pub(crate) fn lake(dir: &std::path::Path) -> tributary_lake::Lake {
    tributary_lake::Lake::open(dir.join("lake").to_str().unwrap()).unwrap()
}

pub(crate) async fn post(app: &axum::Router, query: &str) -> Value {
    post_with(app, query, json!({})).await
}

/// `query` with `variables`.
async fn post_with(app: &axum::Router, query: &str, variables: Value) -> Value {
    let req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({ "query": query, "variables": variables }).to_string(),
        ))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    serde_json::from_slice(&to_bytes(res.into_body(), 1 << 20).await.unwrap()).unwrap()
}

#[tokio::test]
async fn contributions_of_a_datanet_with_contributor_batch_and_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let app = tributary_api::router(
        tributary_api::schema(fixture(dir.path(), 3).await, None, CHAIN),
        &tributary_api::Limits::default(),
    );
    let v = post(
        &app,
        r#"{ chainId datanet(name: "kitchen") { id name domain txHash block contributions(first: 2) { nodes { id contributor contentHash license batch txHash block } } } }"#,
    )
    .await;
    assert!(v.get("errors").is_none(), "{v}");
    let d = &v["data"]["datanet"];
    assert_eq!(v["data"]["chainId"], 31337);
    assert_eq!(
        (d["id"].as_u64(), d["name"].as_str(), d["block"].as_u64()),
        (Some(1), Some("kitchen"), Some(7))
    );
    let cs = d["contributions"]["nodes"].as_array().unwrap();
    assert_eq!(cs.len(), 2, "first: 2 is honoured");
    assert_eq!(cs[0]["id"], B256::repeat_byte(0).to_string());
    assert_eq!(
        cs[0]["contributor"],
        g::hex_lower(Address::repeat_byte(1).as_slice())
    );
    assert_eq!(cs[0]["contentHash"], "0x00");
    assert_eq!(cs[0]["batch"], B256::repeat_byte(0xba).to_string());
    assert_eq!(cs[0]["txHash"], B256::repeat_byte(0x77).to_string());

    let v = post(&app, "{ datanet(id: 2) { id } }").await;
    assert_eq!(v["data"]["datanet"], Value::Null);
    let v = post(&app, "{ datanets { name } }").await;
    assert_eq!(v["data"]["datanets"], json!([{"name": "kitchen"}]));
}

/// Every page of Datanet 1's contributions in `order`, 3 at a time by `endCursor`: how many
/// pages, and the ids in the order they came.
async fn walk_pages(app: &axum::Router, order: &str) -> (usize, Vec<String>) {
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let v = post(
            app,
            &format!(
                r#"{{ contributions(datanet: 1, first: 3, order: {order}{after}) {{ edges {{ cursor node {{ id }} }} pageInfo {{ hasNextPage hasPreviousPage endCursor }} }} }}"#
            ),
        )
        .await;
        assert!(v.get("errors").is_none(), "{v}");
        let page = &v["data"]["contributions"];
        pages += 1;
        assert_eq!(page["pageInfo"]["hasPreviousPage"], pages > 1);
        for e in page["edges"].as_array().unwrap() {
            seen.push(e["node"]["id"].as_str().unwrap().to_string());
        }
        if page["pageInfo"]["hasNextPage"] == false {
            return (pages, seen);
        }
        after = format!(
            r#", after: "{}""#,
            page["pageInfo"]["endCursor"].as_str().unwrap()
        );
    }
}

/// Relay pagination: pages of `first` follow `endCursor` to the end without loss or repeat,
/// oldest or newest first; filters narrow; a made-up cursor is a clear error.
#[tokio::test]
async fn contributions_page_by_cursor_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let app = tributary_api::router(
        tributary_api::schema(fixture(dir.path(), 7).await, None, CHAIN),
        &tributary_api::Limits::default(),
    );
    let all: Vec<String> = (0..7).map(|i| B256::repeat_byte(i).to_string()).collect();
    for (order, expected) in [
        ("OLDEST_FIRST", all.clone()),
        ("NEWEST_FIRST", all.iter().rev().cloned().collect()),
    ] {
        let (pages, seen) = walk_pages(&app, order).await;
        assert_eq!(
            (pages, &seen),
            (3, &expected),
            "7 contributions in pages of 3, {order}"
        );
    }
    // A client that declares `$order` and leaves it out (as the explorer's oldest-first
    // pages may) gets oldest first.
    let v = post_with(
        &app,
        "query($order: Order) { contributions(first: 1, order: $order) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["contributions"]["nodes"][0]["id"], all[0], "{v}");

    // The same through the Datanet, narrowed to one contributor: the even-numbered four.
    let who = g::hex_lower(Address::repeat_byte(1).as_slice());
    let v = post(
        &app,
        &format!(r#"{{ datanet(id: 1) {{ contributions(contributor: "{}") {{ nodes {{ id contributor }} }} }} }}"#, who.to_uppercase().replace("0X", "0x")),
    )
    .await;
    let nodes = v["data"]["datanet"]["contributions"]["nodes"]
        .as_array()
        .unwrap();
    assert_eq!(nodes.len(), 4, "{v}");
    assert!(nodes.iter().all(|n| n["contributor"] == who.as_str()));
    // Block range: everything is in block 7.
    for (range, n) in [
        ("fromBlock: 7, toBlock: 7", 7),
        ("fromBlock: 8", 0),
        ("toBlock: 6", 0),
    ] {
        let v = post(
            &app,
            &format!("{{ contributions({range}) {{ nodes {{ id }} }} }}"),
        )
        .await;
        assert_eq!(
            v["data"]["contributions"]["nodes"]
                .as_array()
                .unwrap()
                .len(),
            n,
            "{range}"
        );
    }
    for (bad, says) in [
        (r#"after: "nope""#, "is not a cursor from this API"),
        (
            r#"contributor: "0x12""#,
            "is not a 0x-prefixed 20-byte address",
        ),
    ] {
        let v = post(
            &app,
            &format!("{{ contributions({bad}) {{ nodes {{ id }} }} }}"),
        )
        .await;
        let message = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{bad}: {v}");
    }
}

#[tokio::test]
async fn limits_and_bad_queries_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = tributary_api::router(
        tributary_api::schema(fixture(dir.path(), 1).await, None, CHAIN),
        &tributary_api::Limits::default(),
    );
    let v = post(
        &app,
        r#"{ datanet(id: 1) { contributions(first: 5000) { nodes { id } } } }"#,
    )
    .await;
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("5000") && msg.contains("1000"), "{msg}");
    let v = post(&app, "{ datanet { id } }").await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`id` or `name`"),
        "{v}"
    );
    let v = post(&app, "{ nope }").await;
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("nope"),
        "{v}"
    );
}

/// The GraphiQL page in a real browser (headless Chromium driven by selenium): its scripts
/// come from this server, and a query typed into the editor returns data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_a_typed_query_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let app = tributary_api::router(
        tributary_api::schema(fixture(dir.path(), 2).await, None, CHAIN),
        &tributary_api::Limits::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let html = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(
        html.contains("/graphql/assets/graphiql.min.js"),
        "GraphiQL's scripts must be served locally (scripts/setup.sh installs them): {html}"
    );

    let browse = |url: String, query: &'static str| async move {
        crate::explorer::browser("graphiql.py", &[url, query.to_string()]).await
    };
    let query = "{ datanets { name domain } }";
    let v = browse(url.clone(), query).await;
    let typed = v["typed"].as_str().unwrap();
    assert_eq!(
        typed.split_whitespace().collect::<String>(),
        query.split_whitespace().collect::<String>(),
        "the editor holds what was typed"
    );
    let response: Value = serde_json::from_str(v["response"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("the response panel shows JSON ({e}): {v}"));
    assert_eq!(
        response,
        json!({"data": {"datanets": [{"name": "kitchen", "domain": "cooking"}]}})
    );
    let origin = url.trim_end_matches("/graphql");
    for r in v["resources"].as_array().unwrap() {
        let r = r.as_str().unwrap();
        assert!(
            r.starts_with(origin),
            "{r} was loaded from outside the server"
        );
    }

    // A link with `?query=` tabs (the demo's tour) opens them, the first one active.
    let tour = url::Url::parse_with_params(
        &url,
        [
            ("query", "{ datanets { name } }"),
            ("query", "{ jobs { name } }"),
        ],
    )
    .unwrap();
    let v = browse(tour.to_string(), "--prefilled").await;
    assert_eq!(v["tabs"], 2, "{v}");
    assert_eq!(v["typed"], "{ datanets { name } }", "{v}");
    let response: Value = serde_json::from_str(v["response"].as_str().unwrap()).unwrap();
    assert_eq!(
        response,
        json!({"data": {"datanets": [{"name": "kitchen"}]}})
    );
}

#[tokio::test]
async fn ancestry_descendants_and_paths_walk_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let app = tributary_api::router(
        tributary_api::schema(fixture(dir.path(), 3).await, None, CHAIN),
        &tributary_api::Limits::default(),
    );
    let c = g::contribution_id(B256::repeat_byte(1));
    let who = g::contributor_id(Address::repeat_byte(2));
    let v = post(
        &app,
        &format!(r#"{{ ancestry(id: "{c}", depth: 2) {{ nodes {{ id kind block txHash }} edges {{ src dst kind weight }} }} }}"#),
    )
    .await;
    assert!(v.get("errors").is_none(), "{v}");
    let nodes = v["data"]["ancestry"]["nodes"].as_array().unwrap();
    let kinds: Vec<&str> = nodes.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "contribution", "the start comes first");
    let mut rest = kinds[1..].to_vec();
    rest.sort();
    assert_eq!(rest, ["batch", "contributor", "datanet"]);
    assert_eq!(v["data"]["ancestry"]["edges"].as_array().unwrap().len(), 3);

    let v = post(
        &app,
        &format!(r#"{{ descendants(id: "{who}", depth: 1) {{ nodes {{ id }} }} }}"#),
    )
    .await;
    assert_eq!(
        v["data"]["descendants"]["nodes"],
        json!([{"id": who}, {"id": c}]),
        "contributor 2 gave contribution 1"
    );

    let datanet = g::datanet_id(1);
    let v = post(
        &app,
        &format!(r#"{{ path(from: "{datanet}", to: "{who}") {{ src dst kind }} }}"#),
    )
    .await;
    assert_eq!(
        v["data"]["path"],
        Value::Null,
        "the contributor is not downstream of the Datanet"
    );
    let v = post(
        &app,
        &format!(r#"{{ path(from: "{who}", to: "{c}") {{ src dst kind }} }}"#),
    )
    .await;
    assert_eq!(
        v["data"]["path"],
        json!([{"src": who, "dst": c, "kind": "contributed"}])
    );
    let v = post(
        &app,
        &format!(r#"{{ path(from: "{datanet}", to: "{c}") {{ src dst kind }} }}"#),
    )
    .await;
    assert_eq!(
        v["data"]["path"],
        json!([{"src": c, "dst": datanet, "kind": "in"}])
    );
    let v = post(
        &app,
        &format!(r#"{{ ancestry(id: "{c}", depth: 65) {{ nodes {{ id }} }} }}"#),
    )
    .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("over the limit of 64"),
        "{v}"
    );
}

/// Ancestry in pages (each edge once over the pages), filtered by kind, summarised; a
/// contribution by id; and a change to the store shows in the next answer, with its number.
#[tokio::test]
async fn lineage_comes_in_pages_with_a_summary_and_stays_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture(dir.path(), 3).await;
    let app = tributary_api::router(
        tributary_api::schema(store.clone(), None, CHAIN),
        &tributary_api::Limits::default(),
    );
    let c = g::contribution_id(B256::repeat_byte(1));
    let who = g::contributor_id(Address::repeat_byte(2));
    let page = |after: Option<&str>| {
        let after = after
            .map(|a| format!(r#", after: "{a}""#))
            .unwrap_or_default();
        format!(
            r#"{{ ancestry(id: "{c}", depth: 2, first: 2{after}) {{ seq totalCount edgeCount
                nodes {{ id depth via {{ kind }} }} edges {{ src kind }}
                pageInfo {{ hasNextPage endCursor }}
                summary {{ byKind {{ kind count }} topContributors {{ address contributions share }} }} }} }}"#
        )
    };
    let one = post(&app, &page(None)).await;
    assert!(one.get("errors").is_none(), "{one}");
    let a = &one["data"]["ancestry"];
    assert_eq!(a["totalCount"], 4);
    assert_eq!(a["edgeCount"], 3);
    assert_eq!(a["nodes"][0], json!({"id": c, "depth": 0, "via": null}));
    assert_eq!(a["nodes"][1]["depth"], 1);
    assert_eq!(a["pageInfo"]["hasNextPage"], true);
    assert_eq!(
        a["summary"]["topContributors"],
        json!([{"address": who.key(), "contributions": 1, "share": 1.0}])
    );
    let kinds: Vec<(&str, u64)> = a["summary"]["byKind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kind"].as_str().unwrap(), k["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("contributor", 1),
            ("datanet", 1),
            ("contribution", 1),
            ("batch", 1)
        ]
    );
    let cursor = a["pageInfo"]["endCursor"].as_str().unwrap();
    let two = post(&app, &page(Some(cursor))).await;
    let b = &two["data"]["ancestry"];
    assert_eq!(b["nodes"].as_array().unwrap().len(), 2, "{two}");
    assert_eq!(b["pageInfo"]["hasNextPage"], false);
    let edges = a["edges"].as_array().unwrap().len() + b["edges"].as_array().unwrap().len();
    assert_eq!(edges, 3, "every edge once over the pages");

    let v = post(
        &app,
        &format!(
            r#"{{ ancestry(id: "{c}", kinds: ["contributor"]) {{ nodes {{ id }} totalCount }} }}"#
        ),
    )
    .await;
    assert_eq!(
        v["data"]["ancestry"],
        json!({"nodes": [{"id": who}], "totalCount": 1})
    );
    // `via` alone asks the walk for its edges; one query text (parsed once, then kept)
    // answers for each id its variable names.
    let q = "query($id: String!) { ancestry(id: $id, depth: 1) { nodes { id via { kind } } } }";
    let from_c = post_with(&app, q, json!({ "id": c })).await;
    let nodes = from_c["data"]["ancestry"]["nodes"].as_array().unwrap();
    assert!(nodes.len() > 1, "{from_c}");
    assert!(
        nodes[1..].iter().all(|n| n["via"]["kind"].is_string()),
        "{from_c}"
    );
    let from_who = post_with(&app, q, json!({ "id": who })).await;
    assert_eq!(
        from_who["data"]["ancestry"]["nodes"],
        json!([{"id": who, "via": null}])
    );
    // Plain node fields are written straight into the answer; with a fragment or a
    // directive in the selection the nodes are resolved one by one. Both answer alike,
    // aliases, repeats and `__typename` included.
    let plain = "id kind d: depth block __typename k: kind id";
    let answer =
        |nodes: &str| format!(r#"{{ ancestry(id: "{c}", depth: 2) {{ nodes {{ {nodes} }} }} }}"#);
    let direct = post(&app, &answer(plain)).await;
    let nodes = direct["data"]["ancestry"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4, "{direct}");
    assert_eq!(
        nodes[0],
        json!({"id": c, "kind": "contribution", "d": 0, "block": 7,
               "__typename": "LineageNode", "k": "contribution"}),
    );
    for resolved in [
        format!("... on LineageNode {{ {plain} }}"),
        format!("id @include(if: true) {}", &plain[3..]),
    ] {
        assert_eq!(post(&app, &answer(&resolved)).await, direct, "{resolved}");
    }
    let v = post(
        &app,
        &format!(r#"{{ ancestry(id: "{c}", kinds: ["person"]) {{ totalCount }} }}"#),
    )
    .await;
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("\"person\" is not a node kind") && msg.contains("contributor"),
        "{msg}"
    );
    let v = post(
        &app,
        &format!(r#"{{ ancestry(id: "{c}", after: "datanet:99") {{ totalCount }} }}"#),
    )
    .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("start again without `after`"),
        "{v}"
    );

    let v = post(
        &app,
        &format!(
            r#"{{ contribution(id: "{}") {{ id contributor license }} }}"#,
            c.key()
        ),
    )
    .await;
    assert_eq!(
        v["data"]["contribution"],
        json!({"id": c.key(), "contributor": who.key(), "license": "MIT"})
    );
    let v = post(&app, r#"{ contribution(id: "0x09") { id } }"#).await;
    assert_eq!(v["data"]["contribution"], Value::Null);

    // A new contribution by the same contributor, indexed after the first answers.
    let pos = ChainPos {
        block_number: 8,
        block_hash: B256::repeat_byte(8),
        tx_hash: B256::repeat_byte(0x88),
        log_index: 0,
    };
    let fresh = g::contribution_id(B256::repeat_byte(9));
    let nodes = [Node::new(fresh.clone(), json!({}), pos)];
    let edges = [Edge::new(
        who.clone(),
        fresh.clone(),
        EdgeKind::Contributed,
        pos,
    )];
    let events = [tributary_sql::RawEvent {
        address: "0x01".into(),
        name: "BatchAnchored".into(),
        data: json!({}),
        pos,
    }];
    let cp = Checkpoint {
        block_number: 8,
        block_hash: B256::repeat_byte(8).to_string(),
    };
    let rows = tributary_sql::Rows {
        events: &events,
        nodes: &nodes,
        edges: &edges,
        blocks_seen: &[],
    };
    store.apply(CHAIN, "lineage", rows, &cp).await.unwrap();
    let v = post(
        &app,
        &format!(r#"{{ descendants(id: "{who}", depth: 1) {{ seq nodes {{ id }} }} }}"#),
    )
    .await;
    let d = &v["data"]["descendants"];
    assert_eq!(
        d["nodes"],
        json!([{"id": who}, {"id": c}, {"id": fresh}]),
        "{v}"
    );
    assert_eq!(d["seq"], store.last_op(CHAIN).await.unwrap());
    assert!(d["seq"].as_u64().unwrap() > one["data"]["ancestry"]["seq"].as_u64().unwrap());
}

/// A schema built without writes refuses every mutation, and says where writes are taken.
#[tokio::test]
async fn a_schema_without_writes_refuses_mutations() {
    let dir = tempfile::tempdir().unwrap();
    let schema = tributary_api::schema(fixture(dir.path(), 0).await, None, CHAIN);
    for m in [
        "mutation { createJob(spec: \"name = 'x'\") { name } }",
        "mutation { runJob(name: \"x\") { name } }",
    ] {
        let r = schema.execute(m).await;
        assert_eq!(r.errors.len(), 1, "{m}");
        assert!(
            r.errors[0]
                .message
                .contains("this server has no ModelFactory"),
            "{}",
            r.errors[0].message
        );
    }
    let r = schema
        .execute("{ snapshotPreview(datanets: [\"1\"]) { contributions } }")
        .await;
    assert!(
        r.errors[0].message.contains("no ModelFactory"),
        "{:?}",
        r.errors
    );
}

/// The SDL in `schemas/graphql/schema.graphql` is the schema's; `TRIBUTARY_BLESS=1` rewrites it.
#[tokio::test]
async fn the_exported_sdl_matches_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let sdl = tributary_api::schema(fixture(dir.path(), 0).await, None, CHAIN).sdl();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/graphql/schema.graphql");
    if std::env::var_os("TRIBUTARY_BLESS").is_some() {
        std::fs::write(&path, &sdl).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == sdl,
        "{} is out of date: run `TRIBUTARY_BLESS=1 cargo test -p tributary-api` and commit it",
        path.display()
    );
}

/// CORS: a configured origin gets its preflight answered and its headers; any other origin
/// gets none; a malformed origin is refused at start with how to write it.
#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let dir = tempfile::tempdir().unwrap();
    let app = tributary_api::router(
        tributary_api::schema(fixture(dir.path(), 1).await, None, CHAIN),
        &tributary_api::Limits::default(),
    );
    let allowed = "https://explorer.example.org";
    let app = tributary_api::with_cors(app, &[allowed.to_string()]).unwrap();
    let allow_origin = |res: &axum::response::Response| {
        res.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap().to_string())
    };
    for (origin, expected) in [
        (allowed, Some(allowed.to_string())),
        ("https://evil.example.com", None),
    ] {
        let preflight = Request::builder()
            .method("OPTIONS")
            .uri("/graphql")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(preflight).await.unwrap();
        assert_eq!(allow_origin(&res), expected, "preflight from {origin}");
        let req = Request::post("/graphql")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "query": "{ chainId }" }).to_string()))
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(allow_origin(&res), expected, "POST from {origin}");
    }
    for bad in ["explorer.example.org", "https://explorer.example.org/app"] {
        let err = tributary_api::with_cors(axum::Router::new(), &[bad.to_string()]).unwrap_err();
        assert!(
            err.contains("e.g. https://explorer.example.org"),
            "{bad}: {err}"
        );
    }
}
