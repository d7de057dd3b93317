//! tributary-models against a real anvil (embedded), a Delta lake on disk and the tiny base
//! model: a train job publishes once, the catalog finds what it published (also from a copy
//! of the lake), serving answers and credits the same contributors as `attribute`, and
//! concurrent first uses of a base model each get it whole from the lake; the inference ledger
//! posts what a crash left, once.

mod catalog;
mod demo_recipe;
mod jobs;
mod ledger;

use std::sync::Arc;

use tributary_chain::keys::dev_contributor;
use tributary_chain::{Chain, ChainConfig};
use tributary_lake::Lake;
use tributary_pipeline::datanet;
use tributary_pipeline::ingest::ingest;
use tributary_pipeline::sample;
use tributary_pipeline::sign::{Terms, sign};
use tributary_schemas::contribution::domain;
use tributary_schemas::datanet::DatanetManifest;

/// One anvil, one lake, one Datanet holding `n` sample records signed by three contributors.
pub(crate) struct Env {
    pub chain: Arc<Chain>,
    pub lake: Lake,
    pub dir: tempfile::TempDir,
}

pub(crate) async fn env(n: usize) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::connect(ChainConfig::embedded(dir.path()))
        .await
        .unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    // The demo's Datanet, as `tributary datanet create` registers it.
    let manifest =
        DatanetManifest::from_toml(include_str!("../../../examples/kitchen-conversions.toml"))
            .unwrap();
    let id = datanet::create_from_manifest(&chain, &lake, &manifest)
        .await
        .unwrap();
    let d = domain(chain.chain_id(), chain.deployment().datanet_registry);
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
            sign(&dev_contributor(i % 3), &d, &terms, r).unwrap()
        })
        .collect();
    let report = ingest(&chain, &lake, id, signed).await.unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    Env {
        chain: Arc::new(chain),
        lake,
        dir,
    }
}
