//! The setup the indexer's tests share: an embedded anvil with the contracts and a Delta lake
//! in one temporary folder, SQLite stores beside them, history to index, and a small seeded
//! pseudo-random sequence.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::B256;
use alloy::providers::Provider;
use serde_json::Value;
use tributary_chain::keys::dev_contributor;
use tributary_chain::{Chain, ChainConfig};
use tributary_indexer::Indexer;
use tributary_lake::Lake;
use tributary_pipeline::datanet::{self, DatanetSpec};
use tributary_pipeline::ingest::ingest;
use tributary_pipeline::sample;
use tributary_pipeline::sign::{Signed, Terms, sign};
use tributary_schemas::contribution::domain;
use tributary_sql::Store;

pub(crate) struct Env {
    pub(crate) chain: Chain,
    pub(crate) lake: Lake,
    /// Holds anvil's state, the lake (under `lake/`) and the SQLite stores.
    pub(crate) dir: tempfile::TempDir,
    seq: AtomicUsize,
}

/// A fresh anvil with the contracts deployed and an empty lake.
pub(crate) async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::connect(ChainConfig::embedded(dir.path()))
        .await
        .unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    Env {
        chain,
        lake,
        dir,
        seq: Default::default(),
    }
}

impl Env {
    fn next(&self) -> usize {
        self.seq.fetch_add(1, Ordering::SeqCst)
    }

    /// A SQLite store in the temporary folder.
    pub(crate) async fn store(&self, name: &str) -> Store {
        Store::connect(&format!(
            "sqlite://{}",
            self.dir.path().join(name).display()
        ))
        .await
        .unwrap()
    }

    /// Datanet `name` (one block with a `DatanetCreated`, or none if it exists); its id.
    pub(crate) async fn datanet_named(&self, name: &str) -> u64 {
        let spec = DatanetSpec {
            name: name.into(),
            domain: "cooking".into(),
            schema_hash: B256::ZERO,
            metadata_uri: String::new(),
        };
        datanet::create(&self.chain, &spec).await.unwrap()
    }

    /// One block with a `DatanetCreated`.
    pub(crate) async fn datanet(&self) -> u64 {
        self.datanet_named(&format!("d{}", self.next())).await
    }

    /// `record` signed by dev contributor `contributor` for Datanet `datanet`: licence
    /// CC0-1.0, timestamp 1, no deadline.
    pub(crate) fn signed(
        &self,
        datanet: u64,
        contributor: usize,
        nonce: u64,
        record: Value,
    ) -> Signed {
        let d = domain(
            self.chain.chain_id(),
            self.chain.deployment().datanet_registry,
        );
        let terms = Terms {
            datanet_id: datanet,
            license: "CC0-1.0".into(),
            timestamp: 1,
            nonce,
            deadline: u64::MAX,
        };
        sign(&dev_contributor(contributor), &d, &terms, record).unwrap()
    }

    /// A Datanet and a batch of 3 contributions anchored in it (contributors, contributions,
    /// a batch, edges).
    pub(crate) async fn batch(&self) {
        let id = self.datanet().await;
        let k = self.next();
        let signed = sample::records(3)
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r["question"] = format!("round {k} question {i}").into();
                self.signed(id, i, (k * 10 + i) as u64, r)
            })
            .collect();
        ingest(&self.chain, &self.lake, id, signed).await.unwrap();
    }

    /// Replaces the last `depth` blocks (`anvil_reorg`).
    pub(crate) async fn reorg(&self, depth: u64) {
        let _: Value = self
            .chain
            .provider()
            .raw_request("anvil_reorg".into(), (depth, Vec::<()>::new()))
            .await
            .unwrap();
    }
}

/// A fresh index of the canonical chain, in `fresh.db`.
pub(crate) async fn fresh_index(env: &Env) -> Store {
    let fresh = env.store("fresh.db").await;
    Indexer::new(&env.chain, &fresh, &env.lake)
        .with_mirror(false)
        .run_to_head()
        .await
        .unwrap();
    fresh
}

/// A deterministic pseudo-random sequence that tasks can share: a counter stepped by the
/// golden ratio, each step mixed (splitmix-style).
#[derive(Default)]
pub(crate) struct Rng(AtomicU64);

impl Rng {
    /// Seeded from the clock; the seed is printed (`{what} seed …`) for reruns.
    pub(crate) fn from_clock(what: &str) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        eprintln!("{what} seed {seed}");
        Rng(AtomicU64::new(seed))
    }

    /// The next number, in `0..n`.
    pub(crate) fn below(&self, n: u64) -> u64 {
        let mut x = self.0.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst);
        x ^= x >> 31;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (x ^ (x >> 29)) % n
    }
}
