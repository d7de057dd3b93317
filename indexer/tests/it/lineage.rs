use alloy::primitives::{Address, B256};
use serde_json::Value;
use tributary_chain::keys::dev_contributor;
use tributary_indexer::Indexer;
use tributary_lake::Lake;
use tributary_pipeline::ingest::{IngestReport, ingest};
use tributary_pipeline::sample;
use tributary_schemas::lineage::{NodeKind, batch_id};
use tributary_schemas::manifest::{AdapterManifest, TrainingMetrics};
use tributary_schemas::tables::names;

use crate::common::{Env, env};

/// Datanet "k" and `n` sample records in it, signed round-robin by `contributors` dev
/// contributors, ingested as one batch.
async fn contribute(env: &Env, n: usize, contributors: usize) -> IngestReport {
    let id = env.datanet_named("k").await;
    let signed = sample::records(n)
        .into_iter()
        .enumerate()
        .map(|(i, r)| env.signed(id, i % contributors, i as u64, r))
        .collect();
    ingest(&env.chain, &env.lake, id, signed).await.unwrap()
}

#[tokio::test]
async fn the_graph_links_contributors_contributions_datanets_and_batches_and_reindexing_reproduces_it()
 {
    let env = env().await;
    contribute(&env, 25, 4).await;
    let a = env.store("a.db").await;
    let stats = Indexer::new(&env.chain, &a, &env.lake)
        .with_range(3)
        .run_to_head()
        .await
        .unwrap();
    assert!(stats.events > 0);
    let chain_id = env.chain.chain_id();
    // 1 Datanet + 4 contributors + 25 contributions + 1 batch; 3 edges per contribution.
    assert_eq!(a.counts(chain_id).await.unwrap(), (31, 75));
    let rows = a.datanet_contributions(chain_id, 1, 100).await.unwrap();
    assert_eq!(rows.len(), 25);

    // Nothing new: a second run reads nothing and changes nothing.
    let again = Indexer::new(&env.chain, &a, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    assert_eq!(again.events, 0);
    assert_eq!(a.counts(chain_id).await.unwrap(), (31, 75));

    // From scratch, with another range size: the identical graph.
    let b = env.store("b.db").await;
    Indexer::new(&env.chain, &b, &env.lake)
        .with_range(1000)
        .run_to_head()
        .await
        .unwrap();
    assert_eq!(
        a.graph(chain_id).await.unwrap(),
        b.graph(chain_id).await.unwrap()
    );

    // Backfill with several small ranges in flight at once (everything but the last block is
    // "far" from the head with a window of 1): the same graph again.
    let c = env.store("c.db").await;
    let stats = Indexer::new(&env.chain, &c, &env.lake)
        .with_range(1)
        .with_reorg_window(1)
        .with_parallel_ranges(4)
        .run_to_head()
        .await
        .unwrap();
    assert!(stats.to_block >= stats.from_block + 4, "{stats:?}");
    assert_eq!(
        a.graph(chain_id).await.unwrap(),
        c.graph(chain_id).await.unwrap()
    );
}

#[tokio::test]
async fn a_tampered_or_missing_manifest_marks_the_batch_unverified() {
    let env = env().await;
    let report = contribute(&env, 5, 2).await;
    let path = env.dir.path().join(format!(
        "lake/manifests/batches/{}.json",
        report.batch.batch_id
    ));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("CC0-1.0", "CC-BY-4.0")).unwrap();

    let s = env.store("t.db").await;
    Indexer::new(&env.chain, &s, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    let (nodes, _) = s.graph(env.chain.chain_id()).await.unwrap();
    let batch = nodes
        .iter()
        .find(|n| n.id == batch_id(report.batch.batch_id))
        .unwrap();
    assert_eq!(batch.props["verified"], false);
    assert_eq!(batch.props["da"], "mismatch");
    assert!(
        batch.props["reason"].as_str().unwrap().contains("hash"),
        "{}",
        batch.props
    );
    assert!(
        !nodes.iter().any(|n| n.kind == NodeKind::Contribution),
        "unverified data is not trusted"
    );

    std::fs::remove_file(&path).unwrap();
    let s = env.store("m.db").await;
    Indexer::new(&env.chain, &s, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    let (nodes, _) = s.graph(env.chain.chain_id()).await.unwrap();
    let batch = nodes
        .iter()
        .find(|n| n.id == batch_id(report.batch.batch_id))
        .unwrap();
    assert_eq!(batch.props["verified"], false);
    assert_eq!(batch.props["da"], "missing", "flagged, not retried");
    assert!(
        batch.props["reason"]
            .as_str()
            .unwrap()
            .contains("manifest missing"),
        "{}",
        batch.props
    );
}

/// Base model, snapshot, adapters with a parent, an inference and a revocation become nodes and
/// edges; an inference's ancestry reaches the base model through its adapters.
#[tokio::test]
async fn models_adapters_inferences_and_revocations_join_the_graph() {
    use alloy::primitives::U256;
    use tributary_chain::send;
    use tributary_schemas::lineage as g;

    let env = env().await;
    contribute(&env, 3, 1).await;
    let id = |b: u8| B256::repeat_byte(b);
    let models = env.chain.model_registry();
    send(models.registerBaseModel(id(1), id(0xa1), "gpt2".into(), "lake://base".into()))
        .await
        .unwrap();
    send(models.commitSnapshot(id(2), vec![U256::from(1)], vec![3], id(0xa2), U256::from(3)))
        .await
        .unwrap();
    send(models.publishAdapter(
        id(3),
        id(1),
        vec![],
        id(2),
        id(0xc3),
        id(0xd3),
        "u3".into(),
        "1.0.0".into(),
    ))
    .await
    .unwrap();
    send(models.publishAdapter(
        id(4),
        id(1),
        vec![id(3)],
        id(2),
        id(0xc4),
        id(0xd4),
        "u4".into(),
        "pantry@1.1.0".into(),
    ))
    .await
    .unwrap();
    // A merge of adapter 3 alone (weight 2, so it takes all of 3's credit).
    send(models.publishAdapter(
        id(6),
        id(1),
        vec![id(3)],
        B256::ZERO,
        id(0xc6),
        id(0xd6),
        "u6".into(),
        "pantry@1.2.0".into(),
    ))
    .await
    .unwrap();
    send(env.chain.inference_ledger().recordInferences(
        id(5),
        vec![id(4)],
        id(0xe5),
        U256::from(2),
        "lake://inferences/5".into(),
    ))
    .await
    .unwrap();

    // Adapter 3's manifest agrees with the chain; adapter 4's has the chain's weights,
    // settings and parent but another snapshot (the chain does not check an id's preimage).
    let manifest = AdapterManifest {
        adapter_id: id(3),
        line: "l".into(),
        version: "1.0.0".into(),
        base_model_id: id(1),
        architecture: "gpt2".into(),
        snapshot_id: id(2),
        parents: vec![],
        config: serde_json::json!({"lora": {"rank": 4}}),
        config_hash: id(0xc3),
        weights_hash: id(0xd3),
        metrics: Some(TrainingMetrics {
            steps: 10,
            tokens: 640,
            seconds: 1.5,
            base_eval_loss: 4.0,
            eval_loss: 2.0,
            perplexity: 2f64.exp(),
            stopped_early: false,
            documents: (8, 2),
            train_loss: vec![],
            eval_loss_curve: vec![],
        }),
        device: "cpu".into(),
        code_version: "0.1.0".into(),
    };
    let other = AdapterManifest {
        adapter_id: id(4),
        snapshot_id: id(9),
        parents: vec![tributary_schemas::manifest::AdapterParent {
            id: id(3),
            weight: 1.0,
        }],
        config_hash: id(0xc4),
        weights_hash: id(0xd4),
        ..manifest.clone()
    };
    let merge = AdapterManifest {
        adapter_id: id(6),
        snapshot_id: B256::ZERO,
        parents: vec![tributary_schemas::manifest::AdapterParent {
            id: id(3),
            weight: 2.0,
        }],
        config_hash: id(0xc6),
        weights_hash: id(0xd6),
        metrics: None,
        ..manifest.clone()
    };
    // Adapter 3's held-out credit, as training writes it (a non-positive share is no credit).
    let credit = [(0x71, 0.75), (0x72, 0.25), (0x73, 0.0)];
    let n = credit.len();
    let text = |v: Vec<String>| -> arrow::array::ArrayRef {
        std::sync::Arc::new(arrow::array::StringArray::from(v))
    };
    let batch = arrow::record_batch::RecordBatch::try_new(
        tributary_schemas::tables::attributions(),
        vec![
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![1; n])),
            text(vec!["adapter".into(); n]),
            text(vec![id(3).to_string(); n]),
            text(vec![id(3).to_string(); n]),
            text(credit.iter().map(|(c, _)| id(*c).to_string()).collect()),
            text(vec![
                Address::repeat_byte(0x77).to_string().to_lowercase();
                n
            ]),
            text(vec!["tracin".into(); n]),
            std::sync::Arc::new(arrow::array::Float64Array::from(vec![1.0; n])),
            std::sync::Arc::new(arrow::array::Float64Array::from(
                credit.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
            )),
            std::sync::Arc::new(arrow::array::Float64Array::from(vec![0.0; n])),
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![4; n])),
            std::sync::Arc::new(
                arrow::array::TimestampMicrosecondArray::from(vec![0; n]).with_timezone("UTC"),
            ),
        ],
    )
    .unwrap();
    env.lake
        .append(names::ATTRIBUTIONS)
        .batches(vec![batch])
        .commit()
        .await
        .unwrap();
    for m in [&manifest, &other, &merge] {
        let key = AdapterManifest::key(m.adapter_id);
        env.lake
            .put(&key, serde_json::to_vec(m).unwrap())
            .await
            .unwrap();
    }

    let s = env.store("m.db").await;
    Indexer::new(&env.chain, &s, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    let chain_id = env.chain.chain_id();

    // The entity tables: typed rows of datanets, snapshots, training runs and adapters, with
    // the measurements of the manifest that agrees with the chain only.
    let adapters = table_rows(&env.lake, names::ADAPTERS, "adapter_id").await;
    assert_eq!(adapters.len(), 3, "{adapters:#?}");
    let (a3, a4) = (&adapters[0], &adapters[1]);
    assert_eq!(a3["adapter_id"], id(3).to_string());
    assert_eq!(
        (&a3["version"], &a3["line"]),
        (&"1.0.0".into(), &Value::Null)
    );
    assert_eq!(
        (&a4["version"], &a4["line"]),
        (&"pantry@1.1.0".into(), &"pantry".into())
    );
    assert_eq!(a3["eval_loss"], 2.0);
    assert_eq!(a3["parent_ids"], "[]");
    assert_eq!(a4["parent_ids"], format!("[\"{}\"]", id(3)));
    assert!(a4["eval_loss"].is_null(), "{a4}");
    assert_eq!(a4["weights_hash"], id(0xd4).to_string());
    assert!(a4["block_number"].as_i64().unwrap() > 0, "{a4}");
    let runs = table_rows(&env.lake, names::TRAINING_RUNS, "adapter_id").await;
    assert_eq!(runs.len(), 3, "{runs:#?}");
    assert_eq!(runs[0]["manifest_verified"], true);
    assert_eq!(runs[0]["snapshot_id"], id(2).to_string());
    assert_eq!(
        (&runs[0]["steps"], &runs[0]["train_documents"]),
        (&10.into(), &8.into())
    );
    assert_eq!(runs[0]["base_eval_loss"], 4.0);
    assert_eq!(runs[0]["config"], r#"{"lora":{"rank":4}}"#);
    assert_eq!(runs[1]["manifest_verified"], false);
    assert!(
        runs[1]["steps"].is_null() && runs[1]["device"].is_null(),
        "{:#}",
        runs[1]
    );
    let snapshots = table_rows(&env.lake, names::SNAPSHOTS, "snapshot_id").await;
    assert_eq!(snapshots.len(), 1, "{snapshots:#?}");
    assert_eq!(snapshots[0]["contributions"], 3);
    assert_eq!(snapshots[0]["datanet_ids"], "[1]");
    // No snapshot manifest in the lake for this hand-made commit: unverified, with the reason.
    assert_eq!(snapshots[0]["verified"], false);
    assert!(snapshots[0]["reason"].is_string(), "{:#}", snapshots[0]);
    let datanets = table_rows(&env.lake, names::DATANETS, "datanet_id").await;
    assert_eq!(datanets.len(), 1, "{datanets:#?}");
    assert_eq!(datanets[0]["datanet_id"], 1);
    assert!(datanets[0]["name"].is_string() && datanets[0]["owner"].is_string());

    let up = s
        .ancestors(chain_id, &g::inference_id(id(5)), 8)
        .await
        .unwrap();
    let ids: std::collections::BTreeSet<String> =
        up.nodes.iter().map(|n| n.id.to_string()).collect();
    for want in [
        g::adapter_id(id(4)),
        g::adapter_id(id(3)),
        g::base_model_id(id(1)),
        g::training_run_id(id(4)),
        g::snapshot_id(id(2)),
        g::datanet_id(1),
    ] {
        assert!(ids.contains(want.as_str()), "{want} missing from {ids:?}");
    }
    let path = s
        .path(
            chain_id,
            &g::inference_id(id(5)),
            &g::base_model_id(id(1)),
            6,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        path.len(),
        2,
        "inference -served_by-> adapter -derived_from-> base"
    );
    let down = s
        .descendants(chain_id, &g::adapter_id(id(3)), 4)
        .await
        .unwrap();
    assert!(
        down.nodes.iter().any(|n| n.id == g::inference_id(id(5))),
        "the child's inference descends from the parent"
    );
    let adapter = &s
        .nodes(chain_id, &[g::adapter_id(id(4)).to_string()])
        .await
        .unwrap()[0];
    assert_eq!(adapter.props["version"], "pantry@1.1.0");

    // Held-out credit: adapter 3's positive shares as weighted edges; the merge's is its
    // parent's by merge weight; adapter 4, whose manifest the chain does not vouch for,
    // gets none, and says why.
    let (_, edges) = s.graph(chain_id).await.unwrap();
    for a in [3, 6] {
        let mut credited: Vec<(String, f64)> = edges
            .iter()
            .filter(|e| e.kind == g::EdgeKind::AttributedTo && e.src == g::adapter_id(id(a)))
            .map(|e| (e.dst.to_string(), e.weight.unwrap()))
            .collect();
        credited.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            credited,
            vec![
                (g::contribution_id(id(0x71)).to_string(), 0.75),
                (g::contribution_id(id(0x72)).to_string(), 0.25)
            ],
            "adapter {a}"
        );
    }
    assert!(
        !edges
            .iter()
            .any(|e| e.kind == g::EdgeKind::AttributedTo && e.src == g::adapter_id(id(4)))
    );
    assert!(
        adapter.props["credit_unavailable"]
            .as_str()
            .is_some_and(|r| r.contains("names another snapshot")),
        "{}",
        adapter.props
    );

    // A revocation is a tombstone node pointing at the contribution.
    let c = s.datanet_contributions(chain_id, 1, 1).await.unwrap()[0]
        .id
        .clone();
    let c: B256 = c.parse().unwrap();
    tributary_pipeline::revoke::revoke(&env.chain, &env.lake, c, "license withdrawn")
        .await
        .unwrap();
    Indexer::new(&env.chain, &s, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    let down = s
        .descendants(chain_id, &g::revocation_id(c), 2)
        .await
        .unwrap();
    assert_eq!(down.nodes[0].props["reason"], "license withdrawn");
    assert!(down.nodes.iter().any(|n| n.id == g::contribution_id(c)));
}

/// `InferencesRecorded` is checked against its manifest in the lake: a matching batch brings
/// its answers in, each with its recorded credit as weighted edges; a tampered or missing
/// manifest marks it unverified.
#[tokio::test]
async fn inference_batches_are_checked_against_their_manifests() {
    use alloy::primitives::U256;
    use tributary_chain::send;
    use tributary_schemas::lineage as g;
    use tributary_schemas::manifest::{AttributionShare, InferenceEntry, InferenceManifest};

    let env = env().await;
    let id = |b: u8| B256::repeat_byte(b);
    let answer = |tokens: u64, attribution: &[(u8, f64)]| {
        let attribution: Vec<AttributionShare> = attribution
            .iter()
            // Contribution 0: a contributor's summed credit past the listed contributions.
            .map(|(c, share)| AttributionShare {
                contribution: if *c == 0 { B256::ZERO } else { id(*c) },
                share: *share,
                contributor: (*c == 0).then(|| Address::repeat_byte(0xd1)),
                datanet_id: None,
                score: None,
            })
            .collect();
        InferenceEntry {
            adapter_id: id(0xad),
            request_hash: id(tokens as u8),
            response_hash: id(0x70 + tokens as u8),
            attribution_root: AttributionShare::root(&attribution),
            tokens,
            fee: 1_000 * tokens as u128,
            attribution,
            nonce: B256::ZERO,
        }
    };
    let manifest = |batch: u8| InferenceManifest {
        batch_id: id(batch),
        inferences: vec![
            answer(3, &[(0xc1, 0.6), (0xc2, 0.4)]),
            answer(5, &[(0xc1, 0.7), (0, 0.3)]),
        ],
    };
    let ledger = env.chain.inference_ledger();
    let record = |batch: u8, root: B256, uri: String| {
        ledger.recordInferences(id(batch), vec![id(0xad)], root, U256::from(2), uri)
    };
    // Good: the manifest as recorded.
    let good = manifest(0xb1);
    let uri = env
        .lake
        .put("inferences/b1.json", good.to_bytes())
        .await
        .unwrap();
    send(record(0xb1, good.merkle_tree().root(), uri.to_string()))
        .await
        .unwrap();
    // Tampered: the lake's copy claims fewer tokens than the answer the chain committed to.
    let honest = manifest(0xb2);
    let mut forged = honest.clone();
    forged.inferences[1].tokens = 1;
    let uri = env
        .lake
        .put("inferences/b2.json", forged.to_bytes())
        .await
        .unwrap();
    send(record(0xb2, honest.merkle_tree().root(), uri.to_string()))
        .await
        .unwrap();
    // Missing: nothing at the URI.
    let absent = env.lake.root().join("inferences/b3.json").unwrap();
    send(record(
        0xb3,
        manifest(0xb3).merkle_tree().root(),
        absent.to_string(),
    ))
    .await
    .unwrap();

    let s = env.store("inf.db").await;
    Indexer::new(&env.chain, &s, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    let chain_id = env.chain.chain_id();
    let nodes = s
        .nodes(
            chain_id,
            &[0xb1, 0xb2, 0xb3].map(|b| g::inference_id(id(b)).to_string()),
        )
        .await
        .unwrap();
    let by_id = |b: u8| {
        nodes
            .iter()
            .find(|n| n.id == g::inference_id(id(b)))
            .unwrap()
            .props
            .clone()
    };
    assert_eq!(by_id(0xb1)["verified"], true, "{}", by_id(0xb1));
    assert_eq!(
        (by_id(0xb1)["tokens"].as_u64(), by_id(0xb1)["fees"].as_str()),
        (Some(8), Some("8000"))
    );
    assert_eq!(by_id(0xb2)["verified"], false);
    assert!(
        by_id(0xb2)["reason"]
            .as_str()
            .unwrap()
            .contains("Merkle root"),
        "{}",
        by_id(0xb2)
    );
    assert_eq!(
        (&by_id(0xb3)["verified"], &by_id(0xb3)["da"]),
        (&false.into(), &"missing".into())
    );
    assert!(
        by_id(0xb3)["reason"]
            .as_str()
            .unwrap()
            .contains("manifest missing"),
        "{}",
        by_id(0xb3)
    );

    let (_, edges) = s.graph(chain_id).await.unwrap();
    let answers: Vec<g::NodeId> = good
        .inferences
        .iter()
        .map(|a| g::answer_id(a.id()))
        .collect();
    let mut attributed: Vec<(g::NodeId, g::NodeId, Option<f64>)> = edges
        .iter()
        .filter(|e| e.kind == g::EdgeKind::AttributedTo)
        .map(|e| (e.src.clone(), e.dst.clone(), e.weight))
        .collect();
    let by_ends = |a: &(g::NodeId, g::NodeId, Option<f64>),
                   b: &(g::NodeId, g::NodeId, Option<f64>)| {
        (&a.0, &a.1).cmp(&(&b.0, &b.1))
    };
    attributed.sort_by(by_ends);
    let mut want = vec![
        (answers[0].clone(), g::contribution_id(id(0xc1)), Some(0.6)),
        (answers[0].clone(), g::contribution_id(id(0xc2)), Some(0.4)),
        (answers[1].clone(), g::contribution_id(id(0xc1)), Some(0.7)),
        (
            answers[1].clone(),
            g::contributor_id(Address::repeat_byte(0xd1)),
            Some(0.3),
        ),
    ];
    want.sort_by(by_ends);
    assert_eq!(
        attributed, want,
        "only the verified batch brings its answers, each with the credit recorded"
    );
    for a in &answers {
        for (kind, dst) in [
            (g::EdgeKind::RecordedIn, g::inference_id(id(0xb1))),
            (g::EdgeKind::ServedBy, g::adapter_id(id(0xad))),
        ] {
            assert!(
                edges
                    .iter()
                    .any(|e| e.src == *a && e.kind == kind && e.dst == dst),
                "{a} {} {dst}",
                kind.as_str()
            );
        }
    }
}

/// Signs sample records `range` for Datanet `id` and ingests them as one batch.
async fn ingest_range(env: &Env, id: u64, range: std::ops::Range<usize>) -> IngestReport {
    let records = sample::records(range.end);
    let signed = range
        .map(|i| env.signed(id, i % 3, i as u64, records[i].clone()))
        .collect();
    ingest(&env.chain, &env.lake, id, signed).await.unwrap()
}

/// The contribution ids of batch `report`, from its manifest in the lake.
async fn batch_ids(env: &Env, report: &IngestReport) -> Vec<B256> {
    let bytes = env.lake.get(&report.batch.manifest_uri).await.unwrap();
    let m: tributary_schemas::manifest::BatchManifest = serde_json::from_slice(&bytes).unwrap();
    m.contributions.iter().map(|c| c.id).collect()
}

/// A snapshot at an old version, taken after later contributions, a revocation and a
/// validator's rejection, holds exactly the contributions of that version that still count;
/// taking it again changes nothing; reading it time-travels; the indexer links its
/// contributions into the graph; bad requests are clear errors.
#[tokio::test]
async fn snapshots_freeze_exactly_the_contributions_that_count() {
    use std::collections::BTreeSet;
    use tributary_pipeline::chain_state::ChainState;
    use tributary_pipeline::{revoke, snapshot, validate};
    use tributary_schemas::lineage as g;
    use tributary_sql::End;

    let env = env().await;
    let id = env.datanet_named("snap").await;
    let first = ingest_range(&env, id, 0..6).await;
    let v1 = first.batch.lake_version;
    let second = ingest_range(&env, id, 6..10).await;
    let (a, b) = (
        batch_ids(&env, &first).await,
        batch_ids(&env, &second).await,
    );
    revoke::revoke(&env.chain, &env.lake, a[0], "license withdrawn")
        .await
        .unwrap();
    send_validator(&env, id).await;
    validate::attest(&env.chain, &env.lake, second.batch.batch_id, &[b[0]])
        .await
        .unwrap();

    let ids = |m: &tributary_schemas::manifest::SnapshotManifest| -> BTreeSet<B256> {
        m.contributions.iter().map(|c| c.id).collect()
    };
    let on_chain = ChainState::read(&env.chain).await.unwrap();
    let old = snapshot::freeze(&env.lake, &on_chain, &[id], Some(v1))
        .await
        .unwrap();
    assert_eq!(
        ids(&old),
        a[1..].iter().copied().collect(),
        "version {v1} minus the revoked one"
    );
    assert_eq!(old.lake_versions, vec![v1]);
    let now = snapshot::freeze(&env.lake, &on_chain, &[id], None)
        .await
        .unwrap();
    let want: BTreeSet<B256> = a[1..].iter().chain(&b[1..]).copied().collect();
    assert_eq!(
        ids(&now),
        want,
        "everything minus the revoked and the rejected"
    );
    assert_ne!(old.snapshot_id, now.snapshot_id);

    let c = snapshot::commit(&env.chain, &env.lake, &old).await.unwrap();
    assert!(c.newly_committed);
    let again = snapshot::snapshot(&env.chain, &env.lake, &[id], Some(v1))
        .await
        .unwrap();
    assert!(
        !again.newly_committed,
        "the same snapshot twice is one commit"
    );
    assert_eq!(
        (again.manifest.snapshot_id, again.tx),
        (old.snapshot_id, c.tx)
    );
    // Another publisher commits the id of a snapshot not committed yet, with another root
    // (the chain does not derive the id): committing that snapshot is refused by name, not
    // taken for an earlier commit of its own.
    tributary_chain::send(env.chain.model_registry().commitSnapshot(
        now.snapshot_id,
        vec![alloy::primitives::U256::from(id)],
        now.lake_versions.clone(),
        B256::repeat_byte(0xee),
        alloy::primitives::U256::from(now.contributions.len()),
    ))
    .await
    .unwrap();
    let e = snapshot::commit(&env.chain, &env.lake, &now)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("other contents") && e.contains("Merkle root differs"),
        "{e}"
    );
    assert!(
        snapshot::load(&env.lake, now.snapshot_id).await.is_err(),
        "nothing written"
    );
    // The refused manifest put in the lake by hand: the graph does not vouch for it either.
    env.lake
        .put(
            &tributary_schemas::manifest::SnapshotManifest::key(now.snapshot_id),
            now.to_bytes(),
        )
        .await
        .unwrap();

    // Training reads the pinned version: the rows of the listed ids, however the table grew.
    let rows = snapshot::read(
        &env.lake,
        &snapshot::load(&env.lake, old.snapshot_id).await.unwrap(),
    )
    .await
    .unwrap();
    let read: BTreeSet<B256> = rows
        .iter()
        .flat_map(|r| {
            let col = r.column_by_name("contribution_id").unwrap();
            let col = col
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            col.iter()
                .map(|v| v.unwrap().parse().unwrap())
                .collect::<Vec<B256>>()
        })
        .collect();
    assert_eq!(read, ids(&old));

    for (datanets, at, says) in [
        (vec![], None, "no Datanet"),
        (vec![id], Some(999), "pick"),
        (vec![id, 77], None, "Datanet 77"),
    ] {
        let e = snapshot::freeze(&env.lake, &on_chain, &datanets, at)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{e}");
    }
    let e = snapshot::load(&env.lake, B256::repeat_byte(9))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("tributary snapshot"), "{e}");

    let s = env.store("snap.db").await;
    Indexer::new(&env.chain, &s, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    let chain_id = env.chain.chain_id();
    let node = g::snapshot_id(old.snapshot_id).to_string();
    let n = &s
        .nodes(chain_id, std::slice::from_ref(&node))
        .await
        .unwrap()[0];
    assert_eq!(n.props["verified"], true, "{}", n.props);
    let taken = &s
        .nodes(chain_id, &[g::snapshot_id(now.snapshot_id).to_string()])
        .await
        .unwrap()[0];
    assert_eq!(taken.props["verified"], false, "{}", taken.props);
    assert_eq!(taken.props["reason"], "Merkle root differs from the chain");
    let included = s
        .edges_at(
            chain_id,
            std::slice::from_ref(&node),
            End::Dst,
            &[g::EdgeKind::IncludedIn],
        )
        .await
        .unwrap();
    let linked: BTreeSet<String> = included.iter().map(|e| e.src.to_string()).collect();
    let want: BTreeSet<String> = ids(&old)
        .iter()
        .map(|c| g::contribution_id(*c).to_string())
        .collect();
    assert_eq!(linked, want);
    // Who is behind it: the snapshot's contributors, by count.
    let shares = s.contributors(chain_id, &node).await.unwrap();
    assert_eq!(
        shares.iter().map(|c| c.contributions).sum::<u64>(),
        old.contributions.len() as u64
    );

    // Only verdicts recorded on chain count. A `validations` row nobody recorded on chain
    // (written straight to the lake) rejects nothing...
    forge_verdict(&env.lake, id, second.batch.batch_id, b[1]).await;
    let forged = snapshot::freeze(&env.lake, &on_chain, &[id], None)
        .await
        .unwrap();
    let counted: BTreeSet<B256> = a[1..].iter().chain(&b[1..]).copied().collect();
    assert_eq!(
        ids(&forged),
        counted,
        "a verdict only the lake holds is ignored"
    );
    // ...and a validator's rejection recorded on chain from its own wallet, whose verdicts
    // the lake does not hold, holds its whole batch back.
    let validator = {
        use alloy::providers::Provider;
        let _: serde_json::Value = env
            .chain
            .provider()
            .raw_request(
                "anvil_setBalance".into(),
                (
                    dev_contributor(7).address(),
                    alloy::primitives::U256::from(10u128.pow(20)),
                ),
            )
            .await
            .unwrap();
        env.chain.with_signer(dev_contributor(7))
    };
    tributary_chain::send(env.chain.datanet_registry().setValidator(
        alloy::primitives::U256::from(id),
        dev_contributor(7).address(),
        true,
    ))
    .await
    .unwrap();
    let as_validator = tributary_chain::bindings::DatanetRegistry::new(
        env.chain.deployment().datanet_registry,
        validator,
    );
    tributary_chain::send(as_validator.recordValidation(
        alloy::primitives::U256::from(id),
        first.batch.batch_id,
        B256::repeat_byte(0x77),
        alloy::primitives::U256::from(5),
        alloy::primitives::U256::from(1),
    ))
    .await
    .unwrap();
    let on_chain = ChainState::read(&env.chain).await.unwrap();
    let held = snapshot::freeze(&env.lake, &on_chain, &[id], None)
        .await
        .unwrap();
    assert_eq!(
        ids(&held),
        b[1..].iter().copied().collect(),
        "the first batch is held back"
    );
}

/// Makes the chain's signer a validator of Datanet `id`.
/// A `validations` row rejecting `contribution`, written to the lake with no chain event.
async fn forge_verdict(lake: &Lake, datanet: u64, batch: B256, contribution: B256) {
    use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
    let s = |v: String| -> ArrayRef { std::sync::Arc::new(StringArray::from(vec![v])) };
    let i = |v: i64| -> ArrayRef { std::sync::Arc::new(Int64Array::from(vec![v])) };
    let row = arrow::record_batch::RecordBatch::try_new(
        tributary_schemas::tables::validations(),
        vec![
            i(datanet as i64),
            s(batch.to_string()),
            s(dev_contributor(8).address().to_string().to_lowercase()),
            s(contribution.to_string()),
            s("rejected".into()),
            s(B256::repeat_byte(0x66).to_string()),
            s(B256::ZERO.to_string()),
            i(0),
            std::sync::Arc::new(TimestampMicrosecondArray::from(vec![0]).with_timezone("UTC")),
        ],
    )
    .unwrap();
    lake.append(names::VALIDATIONS)
        .batches(vec![row])
        .commit()
        .await
        .unwrap();
}

async fn send_validator(env: &Env, id: u64) {
    use alloy::primitives::U256;
    tributary_chain::send(env.chain.datanet_registry().setValidator(
        U256::from(id),
        env.chain.signer(),
        true,
    ))
    .await
    .unwrap();
}

/// Every row of lake table `table` as JSON objects (nulls left out), ordered by `key`.
pub(crate) async fn table_rows(lake: &Lake, table: &str, key: &str) -> Vec<Value> {
    let batches = lake.read(table, None).await.unwrap();
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    w.write_batches(&batches.iter().collect::<Vec<_>>())
        .unwrap();
    w.finish().unwrap();
    let bytes = w.into_inner();
    let mut rows: Vec<Value> = if bytes.is_empty() {
        vec![]
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    rows.sort_by_key(|r| r[key].to_string());
    rows
}

/// Epoch 1's manifest paying `paid` for `batches` by the default policy (platform 0xa0…,
/// stakers 0xb0…), its pool the fees, written to the lake (not posted).
async fn epoch_one(
    env: &Env,
    paid: &[tributary_pipeline::rewards::Paid],
    batches: Vec<B256>,
) -> tributary_pipeline::rewards::EpochManifest {
    use tributary_pipeline::rewards::{Accounts, EpochManifest, Policy, allocate, totals, tree};
    let accounts = Accounts {
        platform: Address::repeat_byte(0xa0),
        stakers: Address::repeat_byte(0xb0),
    };
    let rows = allocate(&Policy::default(), &accounts, paid, &Default::default());
    let sums = totals(&rows);
    assert_eq!(
        sums.values().sum::<u128>(),
        paid.iter().map(|p| p.fee).sum::<u128>(),
        "the pool is paid exactly"
    );
    let m = EpochManifest {
        epoch: 1,
        policy: Policy::default(),
        accounts,
        batches,
        pool: sums.values().sum::<u128>().to_string(),
        root: tree(&sums).root(),
        allocations: rows,
        foreign: false,
    };
    env.lake
        .put(&EpochManifest::key(1), serde_json::to_vec(&m).unwrap())
        .await
        .unwrap();
    m
}

/// A settled epoch's amounts reach the graph exactly, however large: the epoch node keeps each
/// account's total as a decimal string (the leaf it claims against) and its policy; the
/// `rewarded` edges carry only shares; a `settles` edge goes to each batch it paid out, and a
/// claim sent by someone else than the account becomes the account's `claimed` edge.
#[tokio::test]
async fn reward_amounts_are_indexed_exactly() {
    use tributary_pipeline::rewards::{EpochManifest, Paid, claim, publish};
    use tributary_schemas::lineage::{self as g, EdgeKind, prop};

    let env = env().await;
    let who = |b: u8| alloy::primitives::Address::repeat_byte(b);
    // 10^30 + 7 units: past 2^64, and past what a float holds exactly.
    let fee: u128 = 10u128.pow(30) + 7;
    let paid = vec![Paid {
        adapter: B256::repeat_byte(0xf0),
        owner: who(0xc0),
        fee,
        shares: vec![
            (B256::repeat_byte(1), who(0x11), 0.7),
            (B256::repeat_byte(2), who(0x22), 0.3),
        ],
    }];
    let m = epoch_one(&env, &paid, vec![B256::repeat_byte(0xbb)]).await;
    assert_eq!(m.pool, fee.to_string());
    let sums = tributary_pipeline::rewards::totals(&m.allocations);
    // Epoch 2, the same allocations, posted by hand (as from a multisig) with its root but one
    // unit short: `publish` names it, and the graph does not vouch for it.
    let m2 = EpochManifest {
        epoch: 2,
        ..m.clone()
    };
    env.lake
        .put(&EpochManifest::key(2), serde_json::to_vec(&m2).unwrap())
        .await
        .unwrap();
    publish(&env.chain, &env.lake, m).await.unwrap();
    tributary_chain::send(env.chain.reward_distributor().allocateEpoch(
        alloy::primitives::U256::from(2),
        m2.root,
        alloy::primitives::U256::from(fee - 1),
    ))
    .await
    .unwrap();
    let err = publish(&env.chain, &env.lake, m2)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("a total of {}", fee - 1)) && err.contains("ExceedsEpochTotal"),
        "{err}"
    );
    // Epoch 3, an airdrop posted straight to the distributor, recorded as foreign: the
    // graph shows it, and does not vouch for it as Tributary's.
    tributary_chain::send(env.chain.reward_distributor().allocateEpoch(
        alloy::primitives::U256::from(3),
        B256::repeat_byte(0xa1),
        alloy::primitives::U256::from(5000),
    ))
    .await
    .unwrap();
    tributary_pipeline::rewards::record_foreign(&env.chain, &env.lake, 3)
        .await
        .unwrap();
    // The chain's own signer sends 0x11's claim; the tokens go to 0x11.
    let claim_tx = claim(&env.chain, &env.lake, 1, who(0x11)).await.unwrap().tx;

    let s = env.store("rewards.db").await;
    Indexer::new(&env.chain, &s, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    let chain_id = env.chain.chain_id();
    let epoch = g::reward_epoch_id(1);
    let node = &s.nodes(chain_id, &[epoch.to_string()]).await.unwrap()[0];
    assert_eq!(node.props[prop::VERIFIED], true, "{}", node.props);
    let short = &s
        .nodes(chain_id, &[g::reward_epoch_id(2).to_string()])
        .await
        .unwrap()[0];
    assert_eq!(short.props[prop::VERIFIED], false, "{}", short.props);
    assert!(
        short.props["reason"]
            .as_str()
            .is_some_and(|r| r.contains("differs from the manifest's pool")),
        "{}",
        short.props
    );
    let airdrop = &s
        .nodes(chain_id, &[g::reward_epoch_id(3).to_string()])
        .await
        .unwrap()[0];
    assert_eq!(airdrop.props[prop::VERIFIED], false, "{}", airdrop.props);
    assert!(
        airdrop.props["reason"]
            .as_str()
            .is_some_and(|r| r.contains("someone else")),
        "{}",
        airdrop.props
    );
    assert_eq!(node.props[prop::TOTAL], fee.to_string());
    for (account, amount) in &sums {
        assert_eq!(
            node.props[prop::AMOUNTS][g::hex_lower(account.as_slice())],
            amount.to_string(),
            "{account}"
        );
    }
    let (_, edges) = s.graph(chain_id).await.unwrap();
    let shares: Vec<f64> = edges
        .iter()
        .filter(|e| e.kind == EdgeKind::Rewarded && e.src == epoch)
        .map(|e| e.weight.unwrap())
        .collect();
    assert_eq!(shares.len(), sums.len());
    assert!(
        (shares.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "{shares:?}"
    );
    assert_eq!(
        node.props[prop::POLICY]["contributors"],
        5_000,
        "{}",
        node.props
    );
    let of = |kind: EdgeKind| -> Vec<(String, String, B256)> {
        edges
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| (e.src.to_string(), e.dst.to_string(), e.pos.tx_hash))
            .collect()
    };
    let settles = of(EdgeKind::Settles);
    assert_eq!(settles.len(), 1, "{settles:?}");
    assert_eq!(
        (settles[0].0.as_str(), settles[0].1.as_str()),
        (
            epoch.as_str(),
            g::inference_id(B256::repeat_byte(0xbb)).as_str()
        )
    );
    assert_eq!(
        of(EdgeKind::Claimed),
        vec![(
            g::contributor_id(who(0x11)).to_string(),
            epoch.to_string(),
            claim_tx
        )],
        "one claim, by 0x11's account, at the claim's transaction; 0x22 has not claimed"
    );
}

/// Counts are whatever a wallet sends: anyone may create a Datanet, anchor its batches and
/// validate them, with counts past 64 bits. The indexer records them (saturated) and goes on;
/// before, converting them panicked and stopped it (and `serve`) on every start.
#[tokio::test]
async fn counts_past_64_bits_sent_from_a_wallet_do_not_stop_the_indexer() {
    use alloy::primitives::U256;
    use tributary_chain::send;
    use tributary_schemas::lineage::validation_id;
    use tributary_schemas::manifest::BatchManifest;

    let env = env().await;
    let id = env.datanet().await;
    send_validator(&env, id).await;
    let registry = env.chain.datanet_registry();
    let root = B256::repeat_byte(0x5e);
    let batch = BatchManifest::batch_id_at(id, root);
    send(registry.anchorBatch(
        U256::from(id),
        batch,
        root,
        U256::MAX,
        "nowhere".into(),
        B256::ZERO,
        0,
    ))
    .await
    .unwrap();
    send(registry.recordValidation(
        U256::from(id),
        batch,
        B256::repeat_byte(0x0f),
        U256::from(1u8) << 200,
        U256::MAX,
    ))
    .await
    .unwrap();
    let report = contribute(&env, 3, 1).await;

    let s = env.store("t.db").await;
    Indexer::new(&env.chain, &s, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    let (nodes, _) = s.graph(env.chain.chain_id()).await.unwrap();
    let node = |id: &str| nodes.iter().find(|n| n.id == id).unwrap();
    let theirs = node(&batch_id(batch));
    assert_eq!(theirs.props["count"], u64::MAX, "{}", theirs.props);
    assert_eq!(theirs.props["verified"], false, "{}", theirs.props);
    let verdicts: Vec<_> = nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Validation)
        .collect();
    assert_eq!(verdicts.len(), 1);
    let verdict = verdicts[0];
    assert_eq!(
        verdict.id,
        validation_id(batch, env.chain.signer(), &verdict.pos)
    );
    assert_eq!(
        (&verdict.props["accepted"], &verdict.props["rejected"]),
        (&u64::MAX.into(), &u64::MAX.into())
    );
    assert_eq!(
        node(&batch_id(report.batch.batch_id)).props["verified"],
        true
    );
}

/// A validator that records a second verdict on a batch (sent from its wallet: it changed its
/// mind) has both in the graph, in chain order, each a node of its own; before, the second
/// had the first's node id and was dropped, so the graph and GraphQL showed a verdict that no
/// longer counted (snapshots and `verify` count the latest).
#[tokio::test]
async fn a_validators_second_verdict_reaches_the_graph() {
    use alloy::primitives::U256;
    use tributary_chain::send;

    let env = env().await;
    let report = contribute(&env, 3, 1).await;
    let id = env.datanet_named("k").await;
    send_validator(&env, id).await;
    let registry = env.chain.datanet_registry();
    for (root, accepted, rejected) in [(0x01u8, 3u8, 0u8), (0x02, 2, 1)] {
        send(registry.recordValidation(
            U256::from(id),
            report.batch.batch_id,
            B256::repeat_byte(root),
            U256::from(accepted),
            U256::from(rejected),
        ))
        .await
        .unwrap();
    }
    let s = env.store("t.db").await;
    Indexer::new(&env.chain, &s, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    let (nodes, edges) = s.graph(env.chain.chain_id()).await.unwrap();
    let mut verdicts: Vec<_> = nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Validation)
        .collect();
    verdicts.sort_by_key(|n| (n.pos.block_number, n.pos.log_index));
    let seen: Vec<(u64, u64)> = verdicts
        .iter()
        .map(|n| {
            (
                n.props["accepted"].as_u64().unwrap(),
                n.props["rejected"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [(3, 0), (2, 1)]);
    let batch = batch_id(report.batch.batch_id);
    for v in verdicts {
        assert!(
            edges.iter().any(|e| e.src == v.id && e.dst == batch),
            "{} validates the batch",
            v.id
        );
    }
}

/// `signed` as its batch manifest lists it, with its proof or (`proof: false`) as manifests
/// were written before entries carried one.
fn listed(
    signed: &tributary_pipeline::sign::Signed,
    proof: bool,
) -> tributary_schemas::manifest::ManifestEntry {
    let c = &signed.contribution;
    tributary_schemas::manifest::ManifestEntry {
        id: c.id(),
        contributor: c.contributor,
        content_hash: c.contentHash,
        license: c.license.clone(),
        timestamp: c.timestamp,
        proof: proof.then(|| tributary_schemas::manifest::EntryProof {
            nonce: c.nonce,
            deadline: c.deadline,
            signature: signed.signature.as_bytes().to_vec().into(),
        }),
    }
}

/// A manifest of `entries` for Datanet `datanet`, written to the lake and anchored by
/// `registry`'s signer straight from its wallet, as any anchorer of a Datanet may; its batch id.
async fn anchor_by_hand(
    lake: &Lake,
    registry: &tributary_chain::bindings::DatanetRegistry::DatanetRegistryInstance<
        alloy::providers::DynProvider,
    >,
    datanet: u64,
    mut entries: Vec<tributary_schemas::manifest::ManifestEntry>,
) -> B256 {
    use alloy::primitives::U256;
    use tributary_schemas::manifest::BatchManifest;
    entries.sort_by_key(|e| e.id);
    let ids: Vec<B256> = entries.iter().map(|e| e.id).collect();
    let m = BatchManifest {
        datanet_id: datanet,
        batch_id: BatchManifest::batch_id_of(datanet, &ids),
        table: names::CONTRIBUTIONS.into(),
        lake_version: 0,
        contributions: entries,
    };
    let key = BatchManifest::key(m.batch_id);
    lake.put(&key, m.to_bytes()).await.unwrap();
    tributary_chain::send(registry.anchorBatch(
        U256::from(datanet),
        m.batch_id,
        m.merkle_tree().root(),
        U256::from(ids.len()),
        key,
        m.hash(),
        0,
    ))
    .await
    .unwrap();
    m.batch_id
}

/// Anyone may create a Datanet and anchor its batches from a wallet, with a manifest of their
/// own making: the chain holds only the Merkle root they chose. A manifest that lists what a
/// contributor did not sign for that Datanet (a contribution copied from another Datanet, one
/// altered, one signed by the anchorer in someone else's name, one with no signature at all)
/// marks its batch `unsigned` with the reason, and none of that batch joins the graph: the
/// copied contribution keeps its own Datanet and no one is named a contributor of what they
/// never signed. Honest batches of the same Datanet join, including one whose manifest was
/// written before entries carried their signatures (checked against the batch's lake rows).
#[tokio::test]
async fn batches_listing_contributions_their_contributors_did_not_sign_are_not_trusted() {
    use alloy::signers::local::PrivateKeySigner;
    use tributary_chain::bindings::DatanetRegistry;
    use tributary_pipeline::ingest::contribution_rows;
    use tributary_pipeline::sign::{Terms, sign};
    use tributary_schemas::contribution::domain;
    use tributary_schemas::lineage::{EdgeKind, contribution_id, datanet_id};
    use tributary_schemas::manifest::BatchManifest;

    let env = env().await;
    let honest = contribute(&env, 3, 3).await;
    let ours = honest.batch.datanet_id;
    let copied = {
        let bytes = env.lake.get(&honest.batch.manifest_uri).await.unwrap();
        let m: BatchManifest = serde_json::from_slice(&bytes).unwrap();
        assert!(m.contributions.iter().all(|e| e.proof.is_some()));
        m.contributions[0].clone()
    };

    // Mallory (anvil's second account) creates her Datanet and anchors its batches herself.
    let mallory: PrivateKeySigner =
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
            .parse()
            .unwrap();
    let registry = DatanetRegistry::new(
        env.chain.deployment().datanet_registry,
        env.chain.with_signer(mallory.clone()),
    );
    tributary_chain::send(registry.createDatanet(
        "mallory".into(),
        "x".into(),
        B256::ZERO,
        "".into(),
    ))
    .await
    .unwrap();
    let hers = env
        .chain
        .datanet_registry()
        .datanetCount()
        .call()
        .await
        .unwrap()
        .to::<u64>();
    let d = domain(
        env.chain.chain_id(),
        env.chain.deployment().datanet_registry,
    );
    let terms = |nonce| Terms {
        datanet_id: hers,
        license: "CC0-1.0".into(),
        timestamp: 1,
        nonce,
        deadline: u64::MAX,
    };
    let record = |i: usize| sample::records(10).swap_remove(i);
    let victim = dev_contributor(1);

    // 1. Another Datanet's contribution, copied with its real signature.
    let copy = anchor_by_hand(&env.lake, &registry, hers, vec![copied.clone()]).await;
    // 2. Signed by Mallory, naming the victim as its contributor.
    let mut forged = listed(&sign(&mallory, &d, &terms(1), record(4)).unwrap(), true);
    let forged_id = {
        let mut c = sign(&mallory, &d, &terms(1), record(4))
            .unwrap()
            .contribution;
        c.contributor = victim.address();
        c.id()
    };
    forged.contributor = victim.address();
    forged.id = forged_id;
    let forge = anchor_by_hand(&env.lake, &registry, hers, vec![forged]).await;
    // 3. The victim's real signature, the licence altered.
    let mut altered = listed(&sign(&victim, &d, &terms(2), record(5)).unwrap(), true);
    altered.license = "MIT".into();
    let alter = anchor_by_hand(&env.lake, &registry, hers, vec![altered.clone()]).await;
    // 4. No signature, and no lake row to take one from.
    let mut bare = listed(&sign(&victim, &d, &terms(3), record(6)).unwrap(), false);
    bare.id = B256::repeat_byte(0x66);
    let unsigned = anchor_by_hand(&env.lake, &registry, hers, vec![bare]).await;
    // 5. Honest: contributions signed for her Datanet by their contributors, one by Mallory.
    let good = [
        sign(&victim, &d, &terms(7), record(7)).unwrap(),
        sign(&mallory, &d, &terms(8), record(8)).unwrap(),
    ];
    let fine = anchor_by_hand(
        &env.lake,
        &registry,
        hers,
        good.iter().map(|s| listed(s, true)).collect(),
    )
    .await;
    // 6. Honest, with a manifest as written before entries carried their proofs: the batch's
    //    rows in the lake hold the signatures.
    let old = sign(&victim, &d, &terms(9), record(9)).unwrap();
    let keyed = vec![(old.contribution.id(), old.clone())];
    let legacy_batch = BatchManifest::batch_id_of(hers, &[keyed[0].0]);
    env.lake
        .append(names::CONTRIBUTIONS)
        .batches(vec![contribution_rows(hers, legacy_batch, &keyed).unwrap()])
        .commit()
        .await
        .unwrap();
    let legacy = anchor_by_hand(&env.lake, &registry, hers, vec![listed(&old, false)]).await;
    assert_eq!(legacy, legacy_batch);

    let s = env.store("t.db").await;
    Indexer::new(&env.chain, &s, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    let (nodes, edges) = s.graph(env.chain.chain_id()).await.unwrap();
    let node = |id: &str| nodes.iter().find(|n| n.id == id);
    for (batch, why) in [
        (copy, format!("not a contribution to Datanet {hers}")),
        (forge, "not signed by its contributor".to_string()),
        (alter, "fields hash to".to_string()),
        (unsigned, "carries no signature".to_string()),
    ] {
        let p = &node(&batch_id(batch)).unwrap().props;
        assert_eq!(
            (&p["verified"], &p["da"]),
            (&false.into(), &"unsigned".into()),
            "{p}"
        );
        assert!(p["reason"].as_str().unwrap().contains(&why), "{why}: {p}");
    }
    for batch in [fine, legacy, honest.batch.batch_id] {
        let p = &node(&batch_id(batch)).unwrap().props;
        assert_eq!(p["verified"], true, "{p}");
    }
    // The copied contribution is in its own Datanet only; the rest never joined.
    let c = contribution_id(copied.id);
    assert_eq!(node(&c).unwrap().props["datanet_id"], ours);
    let datanets_of_copy: Vec<_> = edges
        .iter()
        .filter(|e| e.src == c && e.kind == EdgeKind::In)
        .map(|e| e.dst.to_string())
        .collect();
    assert_eq!(datanets_of_copy, vec![datanet_id(ours).to_string()]);
    for id in [forged_id, altered.id, B256::repeat_byte(0x66)] {
        assert!(
            node(&contribution_id(id)).is_none(),
            "{id} joined the graph"
        );
    }
    let joined: Vec<B256> = good
        .iter()
        .chain([&old])
        .map(|s| s.contribution.id())
        .collect();
    for id in joined {
        assert_eq!(
            node(&contribution_id(id)).unwrap().props["datanet_id"],
            hers
        );
    }
}

/// Makes the lake's object at `key` unreadable (a symbolic link to itself: every read fails
/// with "too many levels of symbolic links", a failure, not a missing object) and returns its
/// bytes for [`mend`].
fn break_object(env: &Env, key: &str) -> Vec<u8> {
    let path = env.dir.path().join("lake").join(key);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(path.file_name().unwrap(), &path).unwrap();
    bytes
}

/// Puts `bytes` back at `key` (see [`break_object`]).
fn mend(env: &Env, key: &str, bytes: Vec<u8>) {
    let path = env.dir.path().join("lake").join(key);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, bytes).unwrap();
}

/// A transient lake failure while indexing loses nothing, whatever the manifest: a snapshot,
/// an adapter's manifest (its credit), an inference batch and a reward epoch the lake could
/// not serve are indexed `da: unreachable`, and once the lake serves them a recheck brings in
/// what they hold, so the graph equals a fresh index. An epoch posted straight to the
/// distributor is indexed `missing` and rechecked too: recorded as foreign afterwards, it is
/// flagged as not Tributary's.
#[tokio::test]
async fn manifests_the_lake_could_not_serve_are_read_again_whatever_their_kind() {
    use alloy::primitives::U256;
    use tributary_chain::send;
    use tributary_pipeline::chain_state::ChainState;
    use tributary_pipeline::rewards::{EpochManifest, Paid, publish, record_foreign};
    use tributary_pipeline::snapshot;
    use tributary_schemas::lineage::{self as g, prop};
    use tributary_schemas::manifest::{
        AttributionShare, InferenceEntry, InferenceManifest, SnapshotManifest,
    };

    let env = env().await;
    let id = |b: u8| B256::repeat_byte(b);
    let dn = contribute(&env, 3, 1).await.batch.datanet_id;
    let on_chain = ChainState::read(&env.chain).await.unwrap();
    let frozen = snapshot::freeze(&env.lake, &on_chain, &[dn], None)
        .await
        .unwrap();
    let snap = frozen.snapshot_id;
    snapshot::commit(&env.chain, &env.lake, &frozen)
        .await
        .unwrap();

    let models = env.chain.model_registry();
    send(models.registerBaseModel(id(1), id(0xa1), "gpt2".into(), "lake://base".into()))
        .await
        .unwrap();
    let adapter = AdapterManifest {
        adapter_id: id(3),
        line: "l".into(),
        version: "l@1.0.0".into(),
        base_model_id: id(1),
        architecture: "gpt2".into(),
        snapshot_id: snap,
        parents: vec![],
        config: serde_json::json!({"lora": {"rank": 4}}),
        config_hash: id(0xc3),
        weights_hash: id(0xd3),
        metrics: None,
        device: "cpu".into(),
        code_version: "0.1.0".into(),
    };
    env.lake
        .put(
            &AdapterManifest::key(id(3)),
            serde_json::to_vec(&adapter).unwrap(),
        )
        .await
        .unwrap();
    send(models.publishAdapter(
        id(3),
        id(1),
        vec![],
        snap,
        id(0xc3),
        id(0xd3),
        "u3".into(),
        "l@1.0.0".into(),
    ))
    .await
    .unwrap();

    let share = AttributionShare {
        contribution: frozen.contributions[0].id,
        share: 1.0,
        contributor: None,
        datanet_id: None,
        score: None,
    };
    let answers = InferenceManifest {
        batch_id: id(0xb1),
        inferences: vec![InferenceEntry {
            adapter_id: id(3),
            request_hash: id(0x51),
            response_hash: id(0x52),
            attribution_root: AttributionShare::root(std::slice::from_ref(&share)),
            tokens: 4,
            fee: 4_000,
            attribution: vec![share],
            nonce: id(0x53),
        }],
    };
    env.lake
        .put(&InferenceManifest::key(id(0xb1)), answers.to_bytes())
        .await
        .unwrap();
    send(env.chain.inference_ledger().recordInferences(
        id(0xb1),
        vec![id(3)],
        answers.merkle_tree().root(),
        U256::from(1),
        InferenceManifest::key(id(0xb1)),
    ))
    .await
    .unwrap();

    let paid = [Paid {
        adapter: id(3),
        owner: Address::repeat_byte(0xc0),
        fee: 4_000,
        shares: vec![(frozen.contributions[0].id, Address::repeat_byte(0x11), 1.0)],
    }];
    let epoch = epoch_one(&env, &paid, vec![id(0xb1)]).await;
    publish(&env.chain, &env.lake, epoch).await.unwrap();
    // Epoch 2: an airdrop, posted straight to the distributor; recorded as foreign later.
    send(
        env.chain
            .reward_distributor()
            .allocateEpoch(U256::from(2), id(0xa2), U256::from(5_000)),
    )
    .await
    .unwrap();

    let keys = [
        SnapshotManifest::key(snap),
        AdapterManifest::key(id(3)),
        InferenceManifest::key(id(0xb1)),
        EpochManifest::key(1),
    ];
    let kept: Vec<Vec<u8>> = keys.iter().map(|k| break_object(&env, k)).collect();
    let s = env.store("t.db").await;
    let indexer = Indexer::new(&env.chain, &s, &env.lake);
    let stats = indexer.run_to_head().await.unwrap();
    assert_eq!(stats.unreachable, 4, "{stats:?}");
    let chain_id = env.chain.chain_id();
    let waiting = [
        g::snapshot_id(snap),
        g::adapter_id(id(3)),
        g::inference_id(id(0xb1)),
        g::reward_epoch_id(1),
        g::reward_epoch_id(2),
    ];
    let props = |nodes: &[tributary_schemas::lineage::Node], n: &g::NodeId| {
        nodes.iter().find(|x| x.id == *n).unwrap().props.clone()
    };
    let (nodes, edges) = s.graph(chain_id).await.unwrap();
    for n in &waiting[..4] {
        assert_eq!(props(&nodes, n)[prop::DA], "unreachable", "{n}");
    }
    assert_eq!(props(&nodes, &waiting[4])[prop::DA], "missing");
    assert!(!edges.iter().any(|e| e.kind == g::EdgeKind::IncludedIn));
    assert_eq!(indexer.waiting().await.unwrap().len(), 5);

    // Still failing: nothing changes.
    let r = indexer.recheck().await.unwrap();
    assert_eq!((r.checked, r.waiting), (5, 5), "{r:?}");

    for (k, bytes) in keys.iter().zip(kept) {
        mend(&env, k, bytes);
    }
    record_foreign(&env.chain, &env.lake, 2).await.unwrap();
    let r = indexer.recheck().await.unwrap();
    assert_eq!(
        (r.checked, r.recovered, r.flagged, r.waiting),
        (5, 4, 1, 0),
        "{r:?}"
    );
    assert!(indexer.waiting().await.unwrap().is_empty());
    let (nodes, _) = s.graph(chain_id).await.unwrap();
    let epoch2 = props(&nodes, &waiting[4]);
    assert!(
        epoch2[prop::REASON].as_str().unwrap().contains("foreign"),
        "{epoch2}"
    );
    assert_eq!(props(&nodes, &waiting[3])[prop::VERIFIED], true);

    // The same graph as a fresh index of this chain and lake.
    let fresh = env.store("fresh.db").await;
    Indexer::new(&env.chain, &fresh, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    assert_eq!(
        s.graph(chain_id).await.unwrap(),
        fresh.graph(chain_id).await.unwrap()
    );
}
