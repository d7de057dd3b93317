//! Analysts' SQL over a fixture lake on disk: every view, time travel, the ancestry table
//! function, the read-only rule, the limits, and `POST /sql` in its three formats.

use std::time::Duration;

use alloy::primitives::{Address, B256};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use tributary_api::analyst::{Analyst, Answer, SqlError, SqlLimits};
use tributary_lake::Lake;
use tributary_schemas::lineage::{self as g, ChainPos, Edge, EdgeKind, Node, NodeKind};
use tributary_schemas::tables::{self, names};
use tributary_sql::{Checkpoint, RawEvent, Rows, Store};

const CHAIN: u64 = 31337;

/// Rows of table `name` from JSON objects (timestamps as RFC 3339 strings).
fn rows(name: &str, values: &[Value]) -> RecordBatch {
    let schema = tables::schema(name).unwrap();
    let mut decoder = arrow::json::ReaderBuilder::new(schema)
        .build_decoder()
        .unwrap();
    decoder.serialize(values).unwrap();
    decoder.flush().unwrap().unwrap()
}

pub(crate) fn contribution(i: u8, datanet: i64, who: u8, day: u8) -> Value {
    json!({
        "datanet_id": datanet, "contribution_id": B256::repeat_byte(i).to_string(),
        "contributor": Address::repeat_byte(who).to_string().to_lowercase(),
        "content_hash": "0x00", "license": "MIT", "timestamp": 1, "nonce": i, "deadline": 9,
        "signature": "0x", "content": format!("record {i}"), "batch_id": "0xba",
        "ingested_at": format!("2026-11-{day:02}T10:00:00Z"),
    })
}

fn revocation(i: u8, block: u64, day: u8) -> Value {
    json!({
        "datanet_id": 1, "contribution_id": B256::repeat_byte(i).to_string(),
        "revoked_by": "0xo", "reason": "duplicate", "tx_hash": format!("0x{}", i - 1),
        "block_number": block, "revoked_at": format!("2026-11-{day:02}T12:00:00Z"),
    })
}

fn edge(src: &str, dst: &str, kind: EdgeKind, weight: Option<f64>, pos: ChainPos) -> Edge {
    Edge {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        kind,
        weight,
        pos,
    }
}

fn node(id: &str, kind: NodeKind, props: Value, pos: ChainPos) -> Node {
    Node {
        id: id.parse().unwrap(),
        kind,
        props,
        pos,
    }
}

pub(crate) struct Fixture {
    pub(crate) lake: Lake,
    store: Store,
    _dir: tempfile::TempDir,
}

/// Appends `values` to lake table `name` in one commit.
pub(crate) async fn add(lake: &Lake, name: &str, values: &[Value]) {
    lake.append(name)
        .batches(vec![rows(name, values)])
        .commit()
        .await
        .unwrap();
}

/// Contributions in two Datanets over two days (one revoked, one rejection), and a graph with
/// an adapter line, a snapshot, an inference attributed to contributions and a reward epoch,
/// mirrored into the lake by the indexer's mirror.
pub(crate) async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let first = vec![
        contribution(1, 1, 0xa1, 24),
        contribution(2, 1, 0xa1, 24),
        contribution(3, 1, 0xa2, 24),
    ];
    add(&lake, names::CONTRIBUTIONS, &first).await;
    let second = vec![
        contribution(4, 1, 0xa1, 25),
        contribution(5, 2, 0xa2, 25),
        contribution(6, 2, 0xa3, 25),
    ];
    add(&lake, names::CONTRIBUTIONS, &second).await;
    add(&lake, names::REVOCATIONS, &[revocation(2, 9, 25)]).await;
    // Adapter 0xad…'s attribution over its held-out set: 0xa1's contributions 1, 2 (revoked)
    // and 4 (consistently negative), 0xa2's 3 and 5 (negative on half the queries only).
    let attributed = |i: u8, who: u8, score: f64, negative: f64| {
        json!({
            "datanet_id": 1, "subject_kind": "adapter",
            "subject_id": B256::repeat_byte(0xad).to_string(),
            "adapter_id": B256::repeat_byte(0xad).to_string(),
            "contribution_id": B256::repeat_byte(i).to_string(),
            "contributor": Address::repeat_byte(who).to_string().to_lowercase(),
            "method": "tracin", "score": score, "share": 0.0, "negative_fraction": negative,
            "queries": 4, "computed_at": "2026-11-25T13:00:00Z",
        })
    };
    add(
        &lake,
        names::ATTRIBUTIONS,
        &[
            attributed(1, 0xa1, 0.6, 0.0),
            attributed(2, 0xa1, 0.2, 0.0),
            attributed(3, 0xa2, 0.2, 0.25),
            attributed(4, 0xa1, -0.3, 0.75),
            attributed(5, 0xa2, -0.05, 0.5),
        ],
    )
    .await;
    add(
        &lake,
        names::REJECTIONS,
        &[json!({
            "datanet_id": 1, "rejection_id": "r1", "source": "a.jsonl", "locator": "line 4",
            "reason_code": "too_short", "reason": "answer too short", "raw": "{}",
            "rejected_at": "2026-11-25T10:00:00Z",
        })],
    )
    .await;

    // Epoch 1 paid 0xa1 twice (375 in all) and 0xa2 2^53 + 1 units, which a float cannot hold.
    let paid = |who: u8, role: &str, amount: &str| {
        json!({
            "epoch": 1, "account": Address::repeat_byte(who).to_string().to_lowercase(),
            "role": role, "adapter_id": B256::repeat_byte(0xa2).to_string(),
            "contribution_id": null, "inferences": 1, "amount": amount, "reason": "fixture",
        })
    };
    add(
        &lake,
        names::REWARD_ALLOCATIONS,
        &[
            paid(0xa1, "contributor", "300"),
            paid(0xa1, "model_owner", "75"),
            paid(0xa2, "contributor", "9007199254740993"),
        ],
    )
    .await;

    let store = Store::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
        .await
        .unwrap();
    let pos = ChainPos {
        block_number: 7,
        block_hash: B256::repeat_byte(7),
        tx_hash: B256::repeat_byte(0x77),
        log_index: 0,
    };
    let c = |i: u8| g::contribution_id(B256::repeat_byte(i));
    let who = |i: u8| g::contributor_id(Address::repeat_byte(i));
    let (base, snap) = (
        g::base_model_id(B256::repeat_byte(0xb0)),
        g::snapshot_id(B256::repeat_byte(0x50)),
    );
    let (a1, a2) = (
        g::adapter_id(B256::repeat_byte(0xa1)),
        g::adapter_id(B256::repeat_byte(0xa2)),
    );
    let run = g::training_run_id(B256::repeat_byte(0xa2));
    let inference = g::inference_id(B256::repeat_byte(0x1f));
    let answer = g::answer_id(B256::repeat_byte(0x2f));
    let epoch = g::reward_epoch_id(1);
    let nodes = vec![
        node(
            &g::datanet_id(1),
            NodeKind::Datanet,
            json!({"name": "k"}),
            pos,
        ),
        node(&c(1), NodeKind::Contribution, json!({}), pos),
        node(&c(3), NodeKind::Contribution, json!({}), pos),
        node(&who(0xa1), NodeKind::Contributor, json!({}), pos),
        node(&who(0xa2), NodeKind::Contributor, json!({}), pos),
        node(
            &base,
            NodeKind::BaseModel,
            json!({"architecture": "llama"}),
            pos,
        ),
        node(&snap, NodeKind::Snapshot, json!({}), pos),
        node(&a1, NodeKind::Adapter, json!({"version": "1.0.0"}), pos),
        node(&a2, NodeKind::Adapter, json!({"version": "1.1.0"}), pos),
        node(&run, NodeKind::TrainingRun, json!({}), pos),
        node(&inference, NodeKind::Inference, json!({}), pos),
        node(&answer, NodeKind::Answer, json!({}), pos),
        node(&epoch, NodeKind::RewardEpoch, json!({"pool": "1000"}), pos),
    ];
    let edges = vec![
        edge(&who(0xa1), &c(1), EdgeKind::Contributed, None, pos),
        edge(&who(0xa2), &c(3), EdgeKind::Contributed, None, pos),
        edge(&c(1), &snap, EdgeKind::IncludedIn, None, pos),
        edge(&c(3), &snap, EdgeKind::IncludedIn, None, pos),
        edge(&snap, &g::datanet_id(1), EdgeKind::DrawnFrom, None, pos),
        edge(&snap, &run, EdgeKind::Trained, None, pos),
        edge(&run, &a2, EdgeKind::Produced, None, pos),
        edge(&a1, &base, EdgeKind::DerivedFrom, None, pos),
        edge(&a2, &base, EdgeKind::DerivedFrom, None, pos),
        edge(&a2, &a1, EdgeKind::DerivedFrom, None, pos),
        edge(&inference, &a2, EdgeKind::ServedBy, None, pos),
        edge(&answer, &inference, EdgeKind::RecordedIn, None, pos),
        edge(&answer, &a2, EdgeKind::ServedBy, None, pos),
        edge(&answer, &c(1), EdgeKind::AttributedTo, Some(0.75), pos),
        edge(&answer, &c(3), EdgeKind::AttributedTo, Some(0.25), pos),
        edge(&epoch, &who(0xa1), EdgeKind::Rewarded, Some(0.0), pos),
        edge(&epoch, &who(0xa2), EdgeKind::Rewarded, Some(1.0), pos),
        // 0xa1 has claimed epoch 1 (in a transaction of its own); 0xa2 has not.
        edge(
            &who(0xa1),
            &epoch,
            EdgeKind::Claimed,
            None,
            ChainPos {
                tx_hash: B256::repeat_byte(0xc1),
                log_index: 1,
                ..pos
            },
        ),
    ];
    let event = RawEvent {
        address: "0x00".into(),
        name: "fixture".into(),
        data: json!({}),
        pos,
    };
    let cp = Checkpoint {
        block_number: 7,
        block_hash: B256::repeat_byte(7).to_string(),
    };
    let rows = Rows {
        events: std::slice::from_ref(&event),
        nodes: &nodes,
        edges: &edges,
        blocks_seen: &[],
    };
    store.apply(CHAIN, "lineage", rows, &cp).await.unwrap();
    tributary_indexer::mirror::sync(
        &store,
        &lake,
        CHAIN,
        tributary_indexer::mirror::Tables::Check,
    )
    .await
    .unwrap();
    Fixture {
        lake,
        store,
        _dir: dir,
    }
}

pub(crate) async fn analyst(f: &Fixture, limits: SqlLimits) -> Analyst {
    Analyst::open(f.lake.clone(), f.store.clone(), CHAIN, limits)
        .await
        .unwrap()
}

/// The answer as JSON rows (objects by column name).
fn json_rows(a: &Answer) -> Vec<Value> {
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    w.write_batches(&a.batches.iter().collect::<Vec<_>>())
        .unwrap();
    w.finish().unwrap();
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return vec![];
    }
    serde_json::from_slice(&bytes).unwrap()
}

async fn q(a: &Analyst, sql: &str) -> Vec<Value> {
    json_rows(&a.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")))
}

#[tokio::test]
async fn every_view_answers_on_the_fixture_lake() {
    let f = fixture().await;
    let a = analyst(&f, SqlLimits::default()).await;
    let addr = |i: u8| Address::repeat_byte(i).to_string().to_lowercase();

    let board = q(&a, "SELECT contributor, contributions, datanets FROM contributor_leaderboard ORDER BY contributor").await;
    assert_eq!(
        board,
        vec![
            json!({"contributor": addr(0xa1), "contributions": 2, "datanets": 1}),
            json!({"contributor": addr(0xa2), "contributions": 2, "datanets": 2}),
            json!({"contributor": addr(0xa3), "contributions": 1, "datanets": 1}),
        ],
        "the revoked contribution does not count"
    );

    let days = q(
        &a,
        "SELECT datanet_id, CAST(day AS VARCHAR) AS day, accepted, rejected, contributors, accepted_to_date \
         FROM datanet_stats_over_time ORDER BY datanet_id, day",
    )
    .await;
    assert_eq!(days.len(), 3, "{days:?}");
    assert_eq!(
        days[1],
        json!({"datanet_id": 1, "day": "2026-11-25T00:00:00Z", "accepted": 1, "rejected": 1, "contributors": 1, "accepted_to_date": 4})
    );

    let lineage = q(
        &a,
        "SELECT adapter, relation, ancestor FROM adapter_lineage ORDER BY adapter, relation, ancestor",
    )
    .await;
    let a1 = g::adapter_id(B256::repeat_byte(0xa1));
    let a2 = g::adapter_id(B256::repeat_byte(0xa2));
    let base = g::base_model_id(B256::repeat_byte(0xb0));
    assert_eq!(
        lineage,
        vec![
            json!({"adapter": a1, "relation": "base_model", "ancestor": base}),
            json!({"adapter": a2, "relation": "base_model", "ancestor": base}),
            json!({"adapter": a2, "relation": "datanet", "ancestor": g::datanet_id(1)}),
            json!({"adapter": a2, "relation": "parent", "ancestor": a1}),
            json!({"adapter": a2, "relation": "snapshot", "ancestor": g::snapshot_id(B256::repeat_byte(0x50))}),
        ]
    );

    let credit = q(
        &a,
        "SELECT contributor, attributions, weight FROM attribution_by_contributor ORDER BY weight DESC",
    )
    .await;
    assert_eq!(
        credit,
        vec![
            json!({"contributor": g::contributor_id(Address::repeat_byte(0xa1)), "attributions": 1, "weight": 0.75}),
            json!({"contributor": g::contributor_id(Address::repeat_byte(0xa2)), "attributions": 1, "weight": 0.25}),
        ]
    );

    let ledger = q(
        &a,
        "SELECT epoch, contributor, amount FROM reward_ledger ORDER BY amount DESC",
    )
    .await;
    assert_eq!(ledger.len(), 2);
    // Exact: 2^53 + 1 comes back as written (as a float it would read 2^53).
    let text = |v: &Value| v.to_string();
    assert_eq!(text(&ledger[0]["amount"]), "9007199254740993");
    assert_eq!(text(&ledger[1]["amount"]), "375");
    assert_eq!(ledger[0]["epoch"], g::reward_epoch_id(1).as_str());
}

/// The indexer's typed tables answer beside the graph: adapters with their parents' ids,
/// training runs (no manifest in this lake: not verified), the snapshot and the Datanet.
#[tokio::test]
async fn entity_tables_answer_on_the_fixture_lake() {
    let f = fixture().await;
    let a = analyst(&f, SqlLimits::default()).await;
    let adapters = q(
        &a,
        "SELECT a.adapter_id, a.version, t.manifest_verified FROM adapters a \
         LEFT JOIN training_runs t ON t.adapter_id = a.adapter_id ORDER BY a.version",
    )
    .await;
    assert_eq!(
        adapters,
        vec![
            json!({"adapter_id": B256::repeat_byte(0xa1).to_string(), "version": "1.0.0"}),
            json!({"adapter_id": B256::repeat_byte(0xa2).to_string(), "version": "1.1.0", "manifest_verified": false}),
        ]
    );
    let counts = q(
        &a,
        "SELECT (SELECT COUNT(*) FROM datanets WHERE name = 'k') AS datanets, \
         (SELECT COUNT(*) FROM snapshots) AS snapshots",
    )
    .await;
    assert_eq!(counts, vec![json!({"datanets": 1, "snapshots": 1})]);
}

/// A view reads its tables as they are when a query names it, not as they were when the
/// session opened (a long-running `serve` must see new rows in its views), nested views too.
#[tokio::test]
async fn views_see_rows_written_after_the_session_opened() {
    let f = fixture().await;
    let a = analyst(&f, SqlLimits::default()).await;
    let count = "SELECT COUNT(*) AS n FROM contributor_leaderboard";
    assert_eq!(q(&a, count).await, [json!({"n": 3})]);
    add(
        &f.lake,
        names::CONTRIBUTIONS,
        &[contribution(9, 1, 0xa9, 26)],
    )
    .await;
    assert_eq!(q(&a, count).await, [json!({"n": 4})]);
    // A table only a nested view reads: `contribution_influence` reads `revocations` through
    // `revoked_contributions`, and its kept plan is made again when that table changes.
    let revoked = "SELECT COUNT(*) AS n FROM contribution_influence WHERE revoked";
    assert_eq!(q(&a, revoked).await, [json!({"n": 1})]);
    assert_eq!(
        q(&a, revoked).await,
        [json!({"n": 1})],
        "planned once, asked again"
    );
    add(&f.lake, names::REVOCATIONS, &[revocation(3, 10, 26)]).await;
    assert_eq!(q(&a, revoked).await, [json!({"n": 2})]);
}

/// Where lake table `name` of the fixture lies on disk.
pub(crate) fn table_dir(f: &Fixture, name: &str) -> std::path::PathBuf {
    f.lake.root().to_file_path().unwrap().join(name)
}

/// A table deleted and made again by another writer, with a longer or a shorter log than the
/// one the session read, is read afresh: not patched with the new log's later commits, and
/// not left as it was because the new log has no commit past the old version.
#[tokio::test]
async fn a_table_made_again_is_read_afresh() {
    let f = fixture().await;
    let a = analyst(&f, SqlLimits::default()).await;
    let count = "SELECT COUNT(*) AS n FROM contributions";
    assert_eq!(q(&a, count).await, [json!({"n": 6})]);
    let dir = table_dir(&f, names::CONTRIBUTIONS);
    for commits in [4u8, 1] {
        std::fs::remove_dir_all(&dir).unwrap();
        for i in 0..commits {
            add(
                &f.lake,
                names::CONTRIBUTIONS,
                &[contribution(20 + i, 1, 0xb0, 26)],
            )
            .await;
        }
        assert_eq!(
            q(&a, count).await,
            [json!({"n": commits})],
            "after the table was made again with {commits} commits"
        );
    }
}

/// Every lake table reads as Delta's own provider reads it: the same columns in the same
/// order and types, the same rows (the analyst keeps each version's file list and scans the
/// files itself).
#[tokio::test]
async fn every_table_reads_as_deltas_own_reader() {
    let f = fixture().await;
    let a = analyst(&f, SqlLimits::default()).await;
    let reference = datafusion::prelude::SessionContext::new();
    let mut compared = 0;
    for &name in names::ALL {
        let table = f.lake.table(name).await.unwrap();
        table.update_datafusion_session(&reference.state()).unwrap();
        reference
            .register_table(name, table.table_provider().await.unwrap())
            .unwrap();
        let theirs = reference
            .sql(&format!("SELECT * FROM {name}"))
            .await
            .unwrap();
        let theirs_schema = theirs.schema().as_arrow().clone();
        let theirs = theirs.collect().await.unwrap();
        let ours = a.query(&format!("SELECT * FROM {name}")).await.unwrap();
        let fields = |s: &arrow::datatypes::Schema| {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fields(&ours.schema),
            fields(&theirs_schema),
            "{name}: columns"
        );
        let lines = |batches: &[RecordBatch]| {
            let text = arrow::util::pretty::pretty_format_batches(batches)
                .unwrap()
                .to_string();
            let mut lines: Vec<String> = text.lines().skip(3).map(str::to_string).collect();
            lines.sort();
            lines
        };
        assert_eq!(lines(&ours.batches), lines(&theirs), "{name}: rows");
        compared += usize::from(ours.rows() > 0);
    }
    assert!(compared >= 10, "only {compared} tables had rows");
}

/// A protocol commit requiring deletion vectors.
const DV_PROTOCOL: &str = "{\"protocol\":{\"minReaderVersion\":3,\"minWriterVersion\":7,\
    \"readerFeatures\":[\"deletionVectors\"],\"writerFeatures\":[\"deletionVectors\"]}}\n";

/// A table another engine upgraded to a reader protocol a plain Parquet scan cannot honour
/// (deletion vectors) is read through Delta's own provider, and still answers. (That the
/// upgrade turns the analyst's own file scan off is checked in `lake_files`' unit test.)
#[tokio::test]
async fn a_table_needing_deltas_reader_still_answers() {
    let f = fixture().await;
    let a = analyst(&f, SqlLimits::default()).await;
    let count = "SELECT COUNT(*) AS n FROM contributions";
    assert_eq!(q(&a, count).await, [json!({"n": 6})]);
    let dir = table_dir(&f, names::CONTRIBUTIONS);
    // What another engine writes when it turns deletion vectors on: a new protocol.
    let log = dir.join("_delta_log");
    let version = std::fs::read_dir(&log)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    std::fs::write(log.join(format!("{version:020}.json")), DV_PROTOCOL).unwrap();
    assert_eq!(q(&a, count).await, [json!({"n": 6})]);
}

#[tokio::test]
async fn time_travel_and_the_ancestry_function() {
    let f = fixture().await;
    let a = analyst(&f, SqlLimits::default()).await;
    let count = |v: &[Value]| v[0]["n"].as_i64().unwrap();
    assert_eq!(
        count(&q(&a, "SELECT COUNT(*) AS n FROM contributions").await),
        6
    );
    assert_eq!(
        count(&q(&a, r#"SELECT COUNT(*) AS n FROM "contributions@v1""#).await),
        3,
        "version 1 is the first append"
    );
    assert_eq!(
        count(
            &q(
                &a,
                r#"SELECT COUNT(*) AS n FROM "contributions@2999-01-01T00:00:00Z""#
            )
            .await
        ),
        6
    );
    let err = a
        .query(r#"SELECT * FROM "contributions@yesterday""#)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("@v3") && err.contains("RFC 3339"), "{err}");

    let a2 = g::adapter_id(B256::repeat_byte(0xa2));
    let up = q(
        &a,
        &format!("SELECT id, kind FROM ancestry('{a2}', 6) ORDER BY kind, id"),
    )
    .await;
    let kinds: Vec<&str> = up.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "adapter",
            "adapter",
            "base_model",
            "contribution",
            "contribution",
            "contributor",
            "contributor",
            "datanet",
            "snapshot",
            "training_run"
        ]
    );
    let err = a
        .query("SELECT * FROM ancestry(42)")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ancestry('kind:id', depth)"), "{err}");
}

/// A walk of thousands of nodes comes as batches of 1,000 rows in walk order, each with its
/// depth, and sees nodes indexed after the session opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ancestry_streams_a_large_walk_in_batches() {
    let f = fixture().await;
    let a = analyst(&f, SqlLimits::default()).await;
    let snapshot = g::snapshot_id(B256::repeat_byte(0x5e));
    let pos = ChainPos {
        block_number: 900,
        block_hash: B256::repeat_byte(9),
        tx_hash: B256::repeat_byte(0x99),
        log_index: 0,
    };
    let mut nodes = vec![Node::new(snapshot.clone(), json!({}), pos)];
    let mut edges = Vec::new();
    for i in 0..2500u64 {
        let c = g::contribution_id(B256::from(alloy::primitives::U256::from(1_000_000 + i)));
        nodes.push(Node::new(c.clone(), json!({"n": i}), pos));
        edges.push(Edge::new(c, snapshot.clone(), EdgeKind::IncludedIn, pos));
    }
    let events = [RawEvent {
        address: "0x01".into(),
        name: "SnapshotCreated".into(),
        data: json!({}),
        pos,
    }];
    let rows = Rows {
        events: &events,
        nodes: &nodes,
        edges: &edges,
        blocks_seen: &[],
    };
    let cp = Checkpoint {
        block_number: 900,
        block_hash: B256::repeat_byte(9).to_string(),
    };
    f.store.apply(CHAIN, "lineage", rows, &cp).await.unwrap();
    let (_, mut batches) = a
        .stream(&format!("SELECT id, depth FROM ancestry('{snapshot}', 1)"))
        .await
        .unwrap();
    let mut sizes = Vec::new();
    let mut first = None;
    let mut depths = std::collections::BTreeMap::new();
    while let Some(b) = futures::StreamExt::next(&mut batches).await {
        let b = b.unwrap();
        sizes.push(b.num_rows());
        let ids = b.column(0).as_string::<i32>();
        let d = b.column(1).as_primitive::<arrow::datatypes::UInt32Type>();
        first.get_or_insert_with(|| ids.value(0).to_string());
        for i in 0..b.num_rows() {
            *depths.entry(d.value(i)).or_insert(0) += 1;
        }
    }
    assert_eq!(sizes, [1000, 1000, 501], "streamed 1,000 rows at a time");
    assert_eq!(
        first.as_deref(),
        Some(snapshot.as_str()),
        "the start comes first"
    );
    assert_eq!(
        depths,
        std::collections::BTreeMap::from([(0, 1), (1, 2500)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused_and_limits_hold() {
    let f = fixture().await;
    let a = analyst(
        &f,
        SqlLimits {
            memory_bytes: 2 << 20,
            timeout: Duration::from_secs(30),
            max_rows: 4,
        },
    )
    .await;
    for sql in [
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO contributions SELECT * FROM contributions",
        "DELETE FROM contributions",
        "DROP VIEW contributor_leaderboard",
        "CREATE VIEW v AS SELECT 1",
        "SET datafusion.execution.batch_size = 1",
    ] {
        match a.query(sql).await {
            Err(SqlError::ReadOnly(_)) => {}
            other => panic!("{sql}: {other:?}"),
        }
    }
    assert_eq!(
        q(&a, "SELECT COUNT(*) AS n FROM contributor_leaderboard").await[0]["n"],
        3,
        "views and tables are intact"
    );

    let capped = a.query("SELECT * FROM contributions").await.unwrap();
    assert_eq!((capped.rows(), capped.truncated), (4, true));

    // Gathering 5 million values into one array cannot spill: past 2 MiB it must fail cleanly.
    match a
        .query("SELECT array_agg(value) FROM generate_series(1, 5000000)")
        .await
    {
        Err(SqlError::Memory { limit: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        q(&a, "SELECT COUNT(*) AS n FROM contributions").await[0]["n"],
        6,
        "the session keeps answering"
    );

    // A timeout short against the slow query (minutes) yet long for a plain one, even on a
    // loaded machine.
    let slow = analyst(
        &f,
        SqlLimits {
            timeout: Duration::from_secs(2),
            ..SqlLimits::default()
        },
    )
    .await;
    let started = std::time::Instant::now();
    match slow
        .query("SELECT SUM(a.value * b.value) FROM generate_series(1, 100000) a, generate_series(1, 100000) b")
        .await
    {
        Err(SqlError::Timeout(_)) => {}
        other => panic!("{other:?}"),
    }
    // On time, though the query computes without yielding for long stretches (minutes in
    // all): the timer runs on the caller's runtime, not the query's.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    // The stopped query no longer occupies the query runtime (its join yields, so the abort
    // lands): waited for by the runtime's count, not a time.
    stopped(&slow).await;
    // And the session answers again (a constant: planned in milliseconds, well within 2 s).
    assert_eq!(q(&slow, "SELECT 6 AS n").await[0]["n"], 6);
}

/// Waits until nothing runs on `a`'s query runtime: a query stopped by its timeout is gone
/// once its abort lands (counted, not timed; 600 s is only a failsafe).
pub(crate) async fn stopped(a: &Analyst) {
    let since = std::time::Instant::now();
    while a.running() > 0 {
        assert!(
            since.elapsed() < Duration::from_secs(600),
            "the stopped query still runs after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn post(app: &axum::Router, uri: &str, body: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let kind = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        status,
        kind,
        to_bytes(res.into_body(), 1 << 24).await.unwrap().to_vec(),
    )
}

#[tokio::test]
async fn post_sql_answers_in_json_csv_and_arrow() {
    let f = fixture().await;
    let app = tributary_api::sql_http::router(analyst(&f, SqlLimits::default()).await);
    let sql = "SELECT contributor, contributions FROM contributor_leaderboard ORDER BY contributor";

    let (status, kind, body) = post(&app, "/sql", sql).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::OK, "application/json")
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["row_count"], 3);
    assert_eq!(v["truncated"], false);
    assert_eq!(
        v["columns"][1],
        json!({"name": "contributions", "type": "Int64"})
    );
    assert_eq!(v["rows"][0]["contributions"], 2);

    let (status, kind, body) =
        post(&app, "/sql?format=csv", &json!({"sql": sql}).to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/csv"), "{kind}");
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "contributor,contributions");

    let (status, kind, body) = post(&app, "/sql?format=arrow", sql).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::OK, "application/vnd.apache.arrow.stream")
    );
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let counts = all.column(1).as_primitive::<Int64Type>();
    assert_eq!(
        (all.num_rows(), counts.value(0), counts.is_null(0)),
        (3, 2, false)
    );

    let (status, _, body) = post(&app, "/sql", "DROP VIEW contributor_leaderboard").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "read_only");
    let (status, _, body) = post(&app, "/sql", "SELECT nope FROM contributions").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("nope"), "{v}");
}
