use alloy::providers::Provider;
use futures::StreamExt;
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

/// On a chain that is not a local dev chain, an unknown deployment is refused (never replaced
/// by a fresh one) unless deploying is asked for; a configured deployment is used as it is,
/// and read-only connections need no key.
#[tokio::test]
async fn a_foreign_chain_uses_the_configured_deployment_and_deploys_only_when_asked() {
    let node = LocalAnvil::start(&AnvilOptions {
        chain_id: Some(7),
        ..Default::default()
    })
    .unwrap();
    let key =
        || Some(tributary_chain::keys::parse_key(tributary_chain::keys::ANVIL_DEV_KEY).unwrap());
    let (owner, reader) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = |dir: &std::path::Path| ChainConfig::rpc(node.url().clone(), dir);

    let mut c = config(owner.path());
    c.signer = key();
    let err = Chain::connect(c.clone()).await.unwrap_err().to_string();
    assert!(
        err.contains("no Tributary deployment is known for chain 7")
            && err.contains("tributary deploy"),
        "{err}"
    );
    assert!(Deployment::load(owner.path()).unwrap().is_none());
    c.allow_deploy = true;
    let deployed = Chain::connect(c).await.unwrap().deployment().clone();

    // Another data directory, no key, the deployment named by configuration (as `[chain]`
    // gives it: no chain id or start block hash).
    let mut c = config(reader.path());
    c.read_only = true;
    c.deployment = Some(Deployment {
        chain_id: 0,
        start_block_hash: alloy::primitives::B256::ZERO,
        deployer: alloy::primitives::Address::ZERO,
        ..deployed.clone()
    });
    let chain = Chain::connect(c.clone()).await.unwrap();
    assert_eq!(
        chain.deployment().datanet_registry,
        deployed.datanet_registry
    );
    assert_eq!(
        (chain.chain_id(), chain.deployment().chain_id),
        (7, 7),
        "the node's chain id, not 0: signatures' EIP-712 domain needs it"
    );
    assert_eq!(chain.signer(), alloy::primitives::Address::ZERO);
    assert!(
        Deployment::load(reader.path()).unwrap().is_none(),
        "nothing recorded"
    );
    // A deployment that is not on this chain is refused by name.
    c.deployment.as_mut().unwrap().datanet_registry = alloy::primitives::Address::repeat_byte(1);
    let err = Chain::connect(c).await.unwrap_err().to_string();
    assert!(err.contains("is not on chain 7"), "{err}");
}

#[tokio::test]
async fn a_request_rate_spaces_requests_and_websocket_urls_connect() {
    let a = env().await;
    let mut config = ChainConfig::rpc(a.chain.url().clone(), a.dir.path());
    config.max_requests_per_second = Some(20.0);
    let limited = Chain::connect(config).await.unwrap();
    // 30 requests at once at 20 a second: the last may start 1.45 s after the first.
    let started = std::time::Instant::now();
    let heads = futures::future::join_all((0..30).map(|_| limited.head())).await;
    let took = started.elapsed();
    assert!(heads.iter().all(|h| h.is_ok()));
    assert!(took >= std::time::Duration::from_millis(1400), "{took:?}");

    let mut ws = a.chain.url().clone();
    ws.set_scheme("ws").unwrap();
    let over_ws = Chain::connect(ChainConfig::rpc(ws, a.dir.path()))
        .await
        .unwrap();
    assert_eq!(over_ws.deployment(), a.chain.deployment());
    let mut heads = over_ws.new_heads().await.unwrap().expect("ws subscribes");
    assert!(a.chain.new_heads().await.unwrap().is_none(), "HTTP polls");
    let _: serde_json::Value = a
        .chain
        .provider()
        .raw_request("evm_mine".into(), ())
        .await
        .unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(120), heads.next())
        .await
        .expect("a new head is announced")
        .unwrap();
    assert_eq!(next, a.chain.head().await.unwrap());
}

#[tokio::test]
async fn an_rpc_url_of_another_scheme_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url: url::Url = "ftp://127.0.0.1:1/".parse().unwrap();
    let err = Chain::connect(ChainConfig::rpc(url, dir.path()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ftp") && err.contains("ws(s)://"), "{err}");
}

/// A deployment stopped part way (a kill, or a receipt that timed out) is taken up where it
/// stopped by the next connect that may deploy: the contracts it had deployed are kept, and
/// only the rest (plus at most the one whose receipt it was waiting for) are sent. Before, a
/// rerun deployed all five again, leaving the first ones behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_stopped_part_way_is_taken_up_where_it_stopped() {
    use std::time::Duration;
    use tributary_chain::bindings::RewardToken;
    use tributary_chain::keys::{ANVIL_DEV_KEY, parse_key};

    let node = LocalAnvil::start(&AnvilOptions {
        chain_id: Some(9),
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = parse_key(ANVIL_DEV_KEY).unwrap();
    let deployer = key.address();
    let mut c = ChainConfig::rpc(node.url().clone(), dir.path());
    c.signer = Some(key);
    c.allow_deploy = true;
    let rpc = alloy::providers::ProviderBuilder::new().connect_http(node.url().clone());
    let _: serde_json::Value = rpc
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let partial = dir.path().join("deployment.partial.json");
    let recorded = || -> Vec<String> {
        std::fs::read(&partial)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| {
                v["contracts"]
                    .as_array()
                    .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            })
            .unwrap_or_default()
    };

    // The first two contracts are mined as each reaches the mempool, and recorded.
    let deploying = tokio::spawn(Chain::connect(c.clone()));
    // Waits on progress; a deployment that ended (an error) fails the test instead of hanging.
    let wait = |done: bool, what: &str| {
        assert!(
            !deploying.is_finished(),
            "the deployment ended early, {what}"
        );
        !done
    };
    for n in 1..=2u64 {
        while wait(
            rpc.get_transaction_count(deployer).pending().await.unwrap() >= n,
            "before sending",
        ) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _: serde_json::Value = rpc.raw_request("evm_mine".into(), ()).await.unwrap();
        while wait(recorded().len() >= n as usize, "before recording") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Stopped while it waits for the third one's receipt, as a kill would stop it.
    deploying.abort();
    let _ = deploying.await;
    let kept = recorded();
    let _: serde_json::Value = rpc
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .unwrap();

    let chain = Chain::connect(c).await.unwrap();
    let d = chain.deployment().clone();
    assert_eq!(
        [d.datanet_registry, d.model_registry].map(|a| a.to_string().to_lowercase()),
        [kept[0].to_lowercase(), kept[1].to_lowercase()],
        "the contracts deployed before the stop are kept"
    );
    assert_eq!(Deployment::load(dir.path()).unwrap(), Some(d.clone()));
    assert!(!partial.exists(), "the partial record is gone once done");
    // Five contracts and the role grant, and at most the one in flight at the stop again.
    let sent = rpc.get_transaction_count(deployer).await.unwrap();
    assert!(
        sent <= 7,
        "{sent} transactions: contracts were deployed again"
    );
    let token = RewardToken::new(d.reward_token, chain.provider().clone());
    let minter = token.MINTER_ROLE().call().await.unwrap();
    assert!(
        token
            .hasRole(minter, d.reward_distributor)
            .call()
            .await
            .unwrap(),
        "the distributor may mint"
    );
}
