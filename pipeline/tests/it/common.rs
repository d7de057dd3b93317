//! The setup the pipeline's tests share: an embedded anvil with the contracts, a Delta lake in
//! the same temporary folder, and the Datanet the test starts with.

use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::Eip712Domain;
use serde_json::Value;
use tributary_chain::{Chain, ChainConfig};
use tributary_lake::Lake;
use tributary_pipeline::datanet::{self, DatanetSpec};
use tributary_pipeline::sign::{Signed, Terms, sign};
use tributary_schemas::contribution::domain;
use tributary_schemas::datanet::DatanetManifest;

/// The Datanet a test starts with.
pub(crate) enum Start<'a> {
    /// None: `Env::datanet` is 0.
    Bare,
    /// Created by name (`datanet::create`).
    Spec(&'a DatanetSpec),
    /// Created from a manifest in TOML (`datanet::create_from_manifest`).
    Manifest(&'a str),
}

pub(crate) struct Env {
    pub(crate) chain: Chain,
    pub(crate) lake: Lake,
    /// The id of the Datanet created at the start (0 for `Start::Bare`).
    pub(crate) datanet: u64,
    /// Holds anvil's state and the lake (under `lake/`); dropped last.
    pub(crate) dir: tempfile::TempDir,
}

/// A fresh anvil with the contracts deployed, an empty lake, and the Datanet `start` names.
pub(crate) async fn env(start: Start<'_>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::connect(ChainConfig::embedded(dir.path()))
        .await
        .unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let datanet = match start {
        Start::Bare => 0,
        Start::Spec(spec) => datanet::create(&chain, spec).await.unwrap(),
        Start::Manifest(toml) => {
            let m = DatanetManifest::from_toml(toml).unwrap();
            datanet::create_from_manifest(&chain, &lake, &m)
                .await
                .unwrap()
        }
    };
    Env {
        chain,
        lake,
        datanet,
        dir,
    }
}

impl Env {
    /// This chain, with `key` signing (funded by anvil only if it is one of anvil's keys).
    pub(crate) async fn as_signer(&self, key: PrivateKeySigner) -> Chain {
        let mut c = ChainConfig::rpc(self.chain.url().clone(), self.dir.path());
        c.signer = Some(key);
        Chain::connect(c).await.unwrap()
    }

    /// The EIP-712 domain of this chain's Datanet registry.
    pub(crate) fn domain(&self) -> Eip712Domain {
        domain(
            self.chain.chain_id(),
            self.chain.deployment().datanet_registry,
        )
    }
}

/// `content` signed by `key` under domain `d` for Datanet `datanet`, with timestamp 1.
pub(crate) fn sign_record(
    key: &PrivateKeySigner,
    d: &Eip712Domain,
    datanet: u64,
    content: Value,
    license: &str,
    nonce: u64,
    deadline: u64,
) -> Signed {
    let terms = Terms {
        datanet_id: datanet,
        license: license.into(),
        timestamp: 1,
        nonce,
        deadline,
    };
    sign(key, d, &terms, content).unwrap()
}
