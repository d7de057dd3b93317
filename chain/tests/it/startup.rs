use tributary_chain::anvil::{AnvilOptions, LocalAnvil};
use tributary_chain::{Chain, ChainConfig, Deployment};

use crate::common::env;

#[tokio::test]
async fn a_restart_reuses_the_chain_state_and_the_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let chain = Chain::connect(ChainConfig::embedded(dir.path()))
            .await
            .unwrap();
        let d = chain.deployment().clone();
        assert!(chain.is_embedded());
        d
    }; // anvil stops here and dumps its state
    assert_eq!(Deployment::load(dir.path()).unwrap().as_ref(), Some(&first));
    let chain = Chain::connect(ChainConfig::embedded(dir.path()))
        .await
        .unwrap();
    assert_eq!(chain.deployment(), &first, "no second deployment");
    assert!(chain.head().await.unwrap() >= first.start_block);
}

#[tokio::test]
async fn another_chain_gets_its_own_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let a = env().await;
    let url = a.chain.url().clone();
    let other = Chain::connect(ChainConfig::rpc(url, dir.path()))
        .await
        .unwrap();
    // Same chain id (31337), but the record in `dir` was empty: it deploys and records.
    assert_ne!(
        other.deployment().datanet_registry,
        a.chain.deployment().datanet_registry
    );
    assert_eq!(
        Deployment::load(dir.path()).unwrap().unwrap(),
        *other.deployment()
    );
}

#[tokio::test]
async fn a_foreign_chain_without_a_key_is_a_clear_error() {
    // An anvil with another chain id stands in for a public network.
    let node = LocalAnvil::start(&AnvilOptions {
        chain_id: Some(5),
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = Chain::connect(ChainConfig::rpc(node.url().clone(), dir.path()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("chain 5") && err.contains("TRIBUTARY_PRIVATE_KEY"),
        "{err}"
    );
    assert!(
        Deployment::load(dir.path()).unwrap().is_none(),
        "nothing deployed or recorded"
    );

    let err = tributary_chain::keys::parse_key("not-a-key")
        .unwrap_err()
        .to_string();
    assert!(err.contains("64 hex digits"), "{err}");
}
