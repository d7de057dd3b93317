use alloy::primitives::B256;
use serde_json::json;
use tributary_schemas::lineage::{self as g, ChainPos, Edge, EdgeKind, Node, NodeKind};
use tributary_sql::{Checkpoint, OpKind, RawEvent, Rows, Store};

use crate::pg::Postgres;

fn pos(block: u64, log: u64) -> ChainPos {
    ChainPos {
        block_number: block,
        block_hash: B256::with_last_byte(block as u8),
        tx_hash: B256::with_last_byte(100 + block as u8),
        log_index: log,
    }
}

/// One behaviour suite, run on every backend.
async fn suite(store: &Store) {
    let chain = 31337;
    assert_eq!(store.checkpoint(chain, "lineage").await.unwrap(), None);

    let contribution = B256::repeat_byte(0xc1);
    let who = alloy::primitives::Address::repeat_byte(0xaa);
    let batch = B256::repeat_byte(0xba);
    let nodes = vec![
        Node {
            id: g::datanet_id(1),
            kind: NodeKind::Datanet,
            props: json!({"name": "d", "domain": "x"}),
            pos: pos(1, 0),
        },
        Node {
            id: g::contributor_id(who),
            kind: NodeKind::Contributor,
            props: json!({}),
            pos: pos(2, 0),
        },
        Node {
            id: g::contribution_id(contribution),
            kind: NodeKind::Contribution,
            props: json!({"content_hash": "0x01", "license": "MIT"}),
            pos: pos(2, 0),
        },
        Node {
            id: g::batch_id(batch),
            kind: NodeKind::Batch,
            props: json!({"verified": true}),
            pos: pos(2, 0),
        },
    ];
    let edge = |src: g::NodeId, dst: g::NodeId, kind| Edge {
        src,
        dst,
        kind,
        weight: None,
        pos: pos(2, 0),
    };
    let edges = vec![
        edge(
            g::contributor_id(who),
            g::contribution_id(contribution),
            EdgeKind::Contributed,
        ),
        edge(
            g::contribution_id(contribution),
            g::datanet_id(1),
            EdgeKind::In,
        ),
        edge(
            g::contribution_id(contribution),
            g::batch_id(batch),
            EdgeKind::AnchoredIn,
        ),
    ];
    let events = vec![RawEvent {
        address: "0x01".into(),
        name: "BatchAnchored".into(),
        data: json!({"x": 1}),
        pos: pos(2, 0),
    }];
    let rows = Rows {
        events: &events,
        nodes: &nodes,
        edges: &edges,
        blocks_seen: &[],
    };
    let cp = Checkpoint {
        block_number: 2,
        block_hash: B256::with_last_byte(2).to_string(),
    };
    store.apply(chain, "lineage", rows, &cp).await.unwrap();
    // Replaying the same changes is harmless: same graph, same checkpoint.
    store.apply(chain, "lineage", rows, &cp).await.unwrap();
    assert_eq!(store.counts(chain).await.unwrap(), (4, 3));
    assert_eq!(store.checkpoint(chain, "lineage").await.unwrap(), Some(cp));

    let (n, e) = store.graph(chain).await.unwrap();
    let mut want_nodes = nodes.clone();
    want_nodes.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(n, want_nodes);
    assert_eq!(e.len(), 3);

    let datanets = store.datanets(chain).await.unwrap();
    assert_eq!(datanets.len(), 1);
    assert_eq!(
        (datanets[0].id, datanets[0].props["name"].as_str()),
        (1, Some("d"))
    );

    let rows = store.datanet_contributions(chain, 1, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.id, contribution.to_string());
    assert_eq!(r.contributor, g::hex_lower(who.as_slice()));
    assert_eq!(
        (r.content_hash.as_str(), r.license.as_str()),
        ("0x01", "MIT")
    );
    assert_eq!(r.batch, batch.to_string());
    assert_eq!(r.pos, pos(2, 0));

    // Another chain in the same store sees nothing of this one.
    assert_eq!(store.counts(1).await.unwrap(), (0, 0));
    assert!(
        store
            .datanet_contributions(1, 1, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The checkpoint moves forward with the next commit.
    let cp3 = Checkpoint {
        block_number: 3,
        block_hash: B256::with_last_byte(3).to_string(),
    };
    store
        .apply(chain, "lineage", Rows::default(), &cp3)
        .await
        .unwrap();
    assert_eq!(store.checkpoint(chain, "lineage").await.unwrap(), Some(cp3));

    // Walks: a contribution's ancestry is its contributor, Datanet and batch; the
    // contributor's descendants are its contributions.
    let c = g::contribution_id(contribution);
    let up = store.ancestors(chain, &c, 6).await.unwrap();
    let mut got: Vec<g::NodeId> = up.nodes.iter().map(|n| n.id.clone()).collect();
    got.sort();
    let mut want = vec![
        c.clone(),
        g::contributor_id(who),
        g::datanet_id(1),
        g::batch_id(batch),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(up.nodes[0].id, c, "the start comes first");
    assert_eq!(up.edges.len(), 3);
    let down = store
        .descendants(chain, &g::contributor_id(who), 6)
        .await
        .unwrap();
    assert_eq!(down.nodes.len(), 2);
    let path = store
        .path(chain, &g::contributor_id(who), &c, 6)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(path.len(), 1);
    assert_eq!(path[0].kind, EdgeKind::Contributed);
    assert_eq!(
        store
            .path(chain, &c, &g::batch_id(batch), 6)
            .await
            .unwrap()
            .map(|p| p.len()),
        Some(1)
    );
    assert!(
        store
            .path(chain, &g::batch_id(batch), &g::datanet_id(99), 6)
            .await
            .unwrap()
            .is_none()
    );
    let shares = store.contributors(chain, &c).await.unwrap();
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].contributor, g::contributor_id(who).as_str());
    assert_eq!((shares[0].contributions, shares[0].share), (1, 1.0));

    // A reorg above block 1 removes what blocks 2.. brought and moves the checkpoint back;
    // each change is numbered for the lake mirror.
    let cp1 = Checkpoint {
        block_number: 1,
        block_hash: B256::with_last_byte(1).to_string(),
    };
    let removed = store.rollback(chain, "lineage", &cp1).await.unwrap();
    assert!(removed >= 7, "{removed}");
    assert_eq!(store.counts(chain).await.unwrap(), (1, 0));
    assert_eq!(store.checkpoint(chain, "lineage").await.unwrap(), Some(cp1));
    let ops = store.ops_after(chain, 0).await.unwrap();
    let kinds: Vec<_> = ops.iter().map(|o| (o.seq, o.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (1, OpKind::Apply),
            (2, OpKind::Apply),
            (3, OpKind::Rollback)
        ]
    );
    assert_eq!(store.ops_after(chain, 2).await.unwrap().len(), 1);
    assert_eq!(
        store.recent_blocks(chain).await.unwrap(),
        vec![(1, B256::with_last_byte(1).to_string())]
    );
    store.set_mirror_progress(chain, "t", 3).await.unwrap();
    let legacy = tributary_sql::MirrorProgress {
        seq: 3,
        table_id: None,
        app_id: None,
    };
    assert_eq!(
        store.mirror_progress(chain, "t").await.unwrap(),
        Some(legacy)
    );
    let started = tributary_sql::MirrorProgress {
        seq: 0,
        table_id: Some("uuid-1".into()),
        app_id: Some("app-1".into()),
    };
    store.set_mirror_table(chain, "t", &started).await.unwrap();
    store.set_mirror_progress(chain, "t", 4).await.unwrap();
    assert_eq!(
        store.mirror_progress(chain, "t").await.unwrap(),
        Some(tributary_sql::MirrorProgress { seq: 4, ..started }),
        "progress keeps the table's id and transaction"
    );
    assert_eq!(store.mirror_progress(chain, "other").await.unwrap(), None);
    let id = store.store_id().await.unwrap();
    assert_eq!(store.store_id().await.unwrap(), id, "stable");
    factory_jobs(store).await;
    contribution_pages(store).await;
}

/// Jobs made through the API: made once per name, a run asked for starts once (two workers
/// race for it), who made and asked is kept, and training losses are recorded by step.
/// Pages of contributions under each filter, in both orders, on chain 7: three in blocks
/// 3, 4 and 5, the first and last by 0xaa, the middle one by 0xbb and revoked.
async fn contribution_pages(store: &Store) {
    use tributary_sql::{ContributionFilter, Order};
    let chain = 7;
    let c = |i: u8| B256::repeat_byte(i);
    let who = |i: u8| alloy::primitives::Address::repeat_byte(i);
    let (mut nodes, mut edges) = (Vec::new(), Vec::new());
    let edge = |src: g::NodeId, dst: g::NodeId, kind, block| Edge {
        src,
        dst,
        kind,
        weight: None,
        pos: pos(block, 0),
    };
    for (i, by, block) in [(1u8, 0xaau8, 3u64), (2, 0xbb, 4), (3, 0xaa, 5)] {
        nodes.push(Node {
            id: g::contribution_id(c(i)),
            kind: NodeKind::Contribution,
            props: json!({"content_hash": "0x01", "license": "MIT"}),
            pos: pos(block, 0),
        });
        edges.push(edge(
            g::contributor_id(who(by)),
            g::contribution_id(c(i)),
            EdgeKind::Contributed,
            block,
        ));
        edges.push(edge(
            g::contribution_id(c(i)),
            g::datanet_id(1),
            EdgeKind::In,
            block,
        ));
        edges.push(edge(
            g::contribution_id(c(i)),
            g::batch_id(c(0xba)),
            EdgeKind::AnchoredIn,
            block,
        ));
    }
    nodes.push(Node {
        id: g::revocation_id(c(2)),
        kind: NodeKind::Revocation,
        props: json!({}),
        pos: pos(6, 0),
    });
    edges.push(edge(
        g::revocation_id(c(2)),
        g::contribution_id(c(2)),
        EdgeKind::Revokes,
        6,
    ));
    let rows = Rows {
        events: &[],
        nodes: &nodes,
        edges: &edges,
        blocks_seen: &[],
    };
    let cp = Checkpoint {
        block_number: 6,
        block_hash: B256::with_last_byte(6).to_string(),
    };
    store.apply(chain, "lineage", rows, &cp).await.unwrap();
    let ids = |filter: ContributionFilter, order: Order| async move {
        store
            .contributions(chain, &filter, (None, order), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    let all = ContributionFilter::default();
    let of = |xs: &[u8]| xs.iter().map(|&i| c(i).to_string()).collect::<Vec<_>>();
    assert_eq!(ids(all.clone(), Order::OldestFirst).await, of(&[1, 2, 3]));
    assert_eq!(ids(all.clone(), Order::NewestFirst).await, of(&[3, 2, 1]));
    let revoked = ContributionFilter {
        revoked: Some(true),
        ..all.clone()
    };
    assert_eq!(ids(revoked, Order::OldestFirst).await, of(&[2]));
    let counting = ContributionFilter {
        revoked: Some(false),
        datanet: Some(1),
        ..all.clone()
    };
    assert_eq!(ids(counting, Order::NewestFirst).await, of(&[3, 1]));
    let theirs = ContributionFilter {
        contributor: Some(g::hex_lower(who(0xaa).as_slice())),
        datanet: Some(1),
        ..all.clone()
    };
    assert_eq!(ids(theirs, Order::NewestFirst).await, of(&[3, 1]));
    let batch = ContributionFilter {
        batch: Some(c(0xba).to_string()),
        from_block: Some(4),
        ..all.clone()
    };
    assert_eq!(ids(batch, Order::OldestFirst).await, of(&[2, 3]));
    // After a cursor, either way.
    let key = store
        .contributions(chain, &all, (None, Order::OldestFirst), 1)
        .await
        .unwrap()[0]
        .key();
    let after = |order| {
        let key = key.clone();
        let all = all.clone();
        async move {
            store
                .contributions(chain, &all, (Some(&key), order), 10)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(after(Order::OldestFirst).await, of(&[2, 3]));
    assert_eq!(after(Order::NewestFirst).await, Vec::<String>::new());
}

async fn factory_jobs(store: &Store) {
    let spec = json!({"name": "f", "line": "l"});
    assert!(
        store
            .create_job("f", "0 0 3 * * *", &spec, 50, 10, "token:aa")
            .await
            .unwrap()
    );
    assert!(
        !store
            .create_job("f", "* * * * * *", &spec, 1, 11, "token:bb")
            .await
            .unwrap(),
        "a name is taken once"
    );
    let j = store.job("f").await.unwrap().unwrap();
    assert_eq!(
        (j.cron.as_str(), j.created_by.as_deref()),
        ("0 0 3 * * *", Some("token:aa"))
    );
    assert_eq!(j.requested, None);
    assert!(!store.request_run("missing", "token:aa", 12).await.unwrap());
    assert!(store.request_run("f", "token:aa", 12).await.unwrap());
    assert!(store.request_run("f", "token:cc", 13).await.unwrap());
    let j = store.job("f").await.unwrap().unwrap();
    assert_eq!(
        j.requested,
        Some((12, "token:aa".to_string())),
        "the first request stays"
    );
    let (one, two) = tokio::join!(
        store.start_requested_run("f", (12, "token:aa"), "w1", 14, 99),
        store.start_requested_run("f", (12, "token:aa"), "w2", 14, 99),
    );
    let started: Vec<_> = [one.unwrap(), two.unwrap()].into_iter().flatten().collect();
    assert_eq!(started.len(), 1, "one worker starts a request");
    let run = &started[0];
    assert_eq!(
        (run.seq, run.trigger.as_str(), run.due_ms),
        (1, "request", 12)
    );
    assert_eq!(run.requested_by.as_deref(), Some("token:aa"));
    assert_eq!(store.job("f").await.unwrap().unwrap().requested, None);
    assert_eq!(
        store.runs(Some("f"), 5).await.unwrap()[0],
        *run,
        "as stored"
    );
    // Losses are written by the worker holding the run, and only by it.
    let w1 = run.worker.clone();
    let record = |w: &str, points: &[(u64, f64)]| {
        let (w, points) = (w.to_string(), points.to_vec());
        async move { store.record_losses("f", 1, &w, &points).await.unwrap() }
    };
    assert!(record(&w1, &[(1, 2.5), (2, 2.0)]).await);
    assert!(record(&w1, &[(2, 1.75), (3, 1.5)]).await);
    let other = if w1 == "w1" { "w2" } else { "w1" };
    assert!(!record(other, &[(4, 9.0)]).await);
    assert_eq!(
        store.losses("f", 1).await.unwrap(),
        vec![(1, 2.5), (2, 1.75), (3, 1.5)],
        "a step recorded again is overwritten; another worker's are not written"
    );
    assert!(store.losses("f", 2).await.unwrap().is_empty());
    // A request while the run is running waits for it to end: one run per job at a time.
    assert!(store.request_run("f", "token:cc", 15).await.unwrap());
    let waiting = store.start_requested_run("f", (15, "token:cc"), "w3", 16, 99);
    assert!(waiting.await.unwrap().is_none());
    let asked = store.job("f").await.unwrap().unwrap().requested;
    assert_eq!(asked, Some((15, "token:cc".to_string())));
    // A takeover starts the run again: the losses of the attempt before are cleared.
    let mine = store.take_over(run, "w3", 120).await.unwrap().unwrap();
    assert!(store.losses("f", 1).await.unwrap().is_empty());
    let mut done = mine.clone();
    done.status = tributary_sql::RunStatus::Published;
    assert!(store.save_run(&done).await.unwrap());
    let second = store.start_requested_run("f", (15, "token:cc"), "w3", 17, 99);
    assert_eq!(
        second.await.unwrap().map(|r| r.seq),
        Some(2),
        "now it starts"
    );
    // Workers are seen when they sweep.
    store.worker_seen("w1", 100).await.unwrap();
    store.worker_seen("w2", 200).await.unwrap();
    store.worker_seen("w1", 300).await.unwrap();
    assert_eq!(
        store.workers_seen_since(150).await.unwrap(),
        vec![("w1".to_string(), 300), ("w2".to_string(), 200)]
    );
    // A config file's job of an API job's name becomes the config file's.
    store
        .upsert_job("f", "0 0 3 * * *", &spec, 50, 400)
        .await
        .unwrap();
    assert_eq!(store.job("f").await.unwrap().unwrap().created_by, None);
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sub/index.db").display());
    let store = Store::connect(&url).await.unwrap();
    suite(&store).await;
    // Reopening runs no migration twice and keeps the data.
    drop(store);
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(
        store.counts(31337).await.unwrap(),
        (1, 0),
        "as the suite left it"
    );
}

#[tokio::test]
async fn postgres_store() {
    let pg = Postgres::start();
    let store = Store::connect(&pg.url).await.unwrap();
    suite(&store).await;
    drop(store);
    let store = Store::connect(&pg.url).await.unwrap();
    assert_eq!(
        store.counts(31337).await.unwrap(),
        (1, 0),
        "as the suite left it"
    );
}

#[tokio::test]
async fn a_bad_url_says_what_is_expected() {
    let err = Store::connect("mysql://x").await.unwrap_err().to_string();
    assert!(
        err.contains("sqlite://PATH") && err.contains("postgres://"),
        "{err}"
    );
}
