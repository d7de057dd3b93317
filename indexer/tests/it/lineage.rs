use alloy::primitives::B256;
use tributary_chain::keys::dev_contributor;
use tributary_chain::{Chain, ChainConfig};
use tributary_indexer::Indexer;
use tributary_lake::Lake;
use tributary_pipeline::datanet::{self, DatanetSpec};
use tributary_pipeline::ingest::{IngestReport, ingest};
use tributary_pipeline::sample;
use tributary_pipeline::sign::{Terms, sign};
use tributary_schemas::contribution::domain;
use tributary_schemas::lineage::{NodeKind, batch_id};
use tributary_sql::Store;

struct Env {
    chain: Chain,
    lake: Lake,
    dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::connect(ChainConfig::embedded(dir.path()))
        .await
        .unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    Env { chain, lake, dir }
}

async fn store(env: &Env, name: &str) -> Store {
    Store::connect(&format!("sqlite://{}", env.dir.path().join(name).display()))
        .await
        .unwrap()
}

async fn contribute(env: &Env, n: usize, contributors: usize) -> IngestReport {
    let spec = DatanetSpec {
        name: "k".into(),
        domain: "cooking".into(),
        schema_hash: B256::ZERO,
        metadata_uri: String::new(),
    };
    let id = datanet::create(&env.chain, &spec).await.unwrap();
    let d = domain(
        env.chain.chain_id(),
        env.chain.deployment().datanet_registry,
    );
    let signed = sample::records(n)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let terms = Terms {
                datanet_id: id,
                license: "CC0-1.0".into(),
                timestamp: 1,
                nonce: i as u64,
                deadline: u64::MAX,
            };
            sign(&dev_contributor(i % contributors), &d, &terms, r).unwrap()
        })
        .collect();
    ingest(&env.chain, &env.lake, id, signed).await.unwrap()
}

#[tokio::test]
async fn the_graph_links_contributors_contributions_datanets_and_batches_and_reindexing_reproduces_it()
 {
    let env = env().await;
    contribute(&env, 25, 4).await;
    let a = store(&env, "a.db").await;
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
    let b = store(&env, "b.db").await;
    Indexer::new(&env.chain, &b, &env.lake)
        .with_range(1000)
        .run_to_head()
        .await
        .unwrap();
    assert_eq!(
        a.graph(chain_id).await.unwrap(),
        b.graph(chain_id).await.unwrap()
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

    let s = store(&env, "t.db").await;
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
    let s = store(&env, "m.db").await;
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
    assert!(
        batch.props["reason"]
            .as_str()
            .unwrap()
            .contains("unavailable"),
        "{}",
        batch.props
    );
}
