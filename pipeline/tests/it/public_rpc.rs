//! Through an endpoint with a public provider's limits: `eth_getLogs` over more than 1,000
//! blocks is refused (several providers cap a request's range so). Every read of past events
//! — a rerun of `ingest`, a second `revoke`, a snapshot committed again, the registry's state,
//! the published adapters — is read in ranges the endpoint accepts, and finds what a direct
//! read finds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tributary_chain::keys::dev_contributor;
use tributary_chain::{Chain, ChainConfig, send};
use tributary_pipeline::chain_state::{ChainState, published_adapters};
use tributary_pipeline::ingest::ingest;
use tributary_pipeline::revoke::revoke;
use tributary_pipeline::rewards::{Accounts, Policy, Role, settle};
use tributary_pipeline::{sample, snapshot};
use tributary_schemas::manifest::InferenceEntry;

use crate::common::sign_record;

/// The most blocks one `eth_getLogs` may cover.
const CAP: u64 = 1_000;

struct Capped {
    upstream: DynProvider,
    refused: AtomicU64,
    /// Answer `eth_getTransactionByHash` with null, as a node that pruned its transactions.
    pruned: std::sync::atomic::AtomicBool,
    /// Lose the reply to the first `eth_sendRawTransaction` of each transaction
    /// ([`lose_first_reply`]), counting them.
    lose_send_reply: std::sync::atomic::AtomicBool,
    lost: AtomicU64,
    /// Copies sent again, answered as geth answers them.
    resent: AtomicU64,
    sent: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// A JSON-RPC endpoint in front of `upstream` that answers `eth_getLogs` over more than
/// [`CAP`] blocks with an error, as a public provider does, and forwards everything else
/// (errors included, so reverts read the same).
async fn capped(upstream: DynProvider) -> (url::Url, Arc<Capped>) {
    let state = Arc::new(Capped {
        upstream,
        refused: AtomicU64::new(0),
        pruned: Default::default(),
        lose_send_reply: Default::default(),
        lost: AtomicU64::new(0),
        resent: AtomicU64::new(0),
        sent: Default::default(),
    });
    let app = axum::Router::new()
        .route("/", axum::routing::post(answer))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url.parse().unwrap(), state)
}

/// `env`'s deployment through the endpoint at `url`, with its own data directory `name`.
async fn through(env: &crate::common::Env, url: url::Url, name: &str) -> Chain {
    Chain::connect(ChainConfig {
        deployment: Some(env.chain.deployment().clone()),
        ..ChainConfig::rpc(url, env.dir.path().join(name))
    })
    .await
    .unwrap()
}

async fn answer(State(c): State<Arc<Capped>>, Json(req): Json<Value>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if req["method"] == "eth_sendRawTransaction" && c.lose_send_reply.load(Ordering::SeqCst) {
        return lose_first_reply(&c, req).await;
    }
    forward(&c, req).await.into_response()
}

/// The first copy of a raw transaction is forwarded and its reply lost (502); with automine
/// on, once it is mined. A copy sent again is answered as geth answers a transaction it
/// holds: "already known" while it is pending, "nonce too low" once it is mined.
async fn lose_first_reply(c: &Capped, req: Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    let raw: alloy::primitives::Bytes = req["params"][0].as_str().unwrap().parse().unwrap();
    let hash = alloy::primitives::keccak256(&raw);
    if !c.sent.lock().unwrap().insert(raw.to_string()) {
        let mined = c
            .upstream
            .get_transaction_receipt(hash)
            .await
            .unwrap()
            .is_some();
        c.resent.fetch_add(1, Ordering::SeqCst);
        let message = if mined {
            "nonce too low"
        } else {
            "already known"
        };
        let error = json!({"code": -32000, "message": message});
        return Json(json!({"jsonrpc": "2.0", "id": req["id"], "error": error})).into_response();
    }
    let _ = forward(c, req).await;
    let automine: bool = c
        .upstream
        .raw_request("anvil_getAutomine".into(), ())
        .await
        .unwrap();
    while automine
        && c.upstream
            .get_transaction_receipt(hash)
            .await
            .unwrap()
            .is_none()
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    c.lost.fetch_add(1, Ordering::SeqCst);
    axum::http::StatusCode::BAD_GATEWAY.into_response()
}

async fn forward(c: &Capped, req: Value) -> Json<Value> {
    assert!(req.is_object(), "alloy sends no batches here: {req}");
    let method = req["method"].as_str().unwrap().to_string();
    let params = req.get("params").cloned().unwrap_or_else(|| json!([]));
    if method == "eth_getTransactionByHash" && c.pruned.load(Ordering::SeqCst) {
        return Json(json!({"jsonrpc": "2.0", "id": req["id"], "result": null}));
    }
    if method == "eth_getLogs" {
        let head = c.upstream.get_block_number().await.unwrap();
        let block = |key: &str| match params[0][key].as_str() {
            Some("earliest") => 0,
            Some(h) if h.starts_with("0x") => u64::from_str_radix(&h[2..], 16).unwrap(),
            _ => head,
        };
        if block("toBlock").saturating_sub(block("fromBlock")) >= CAP {
            c.refused.fetch_add(1, Ordering::SeqCst);
            let message =
                format!("You can make eth_getLogs requests with up to a {CAP} block range.");
            return Json(json!({
                "jsonrpc": "2.0",
                "id": req["id"],
                "error": {"code": -32600, "message": message},
            }));
        }
    }
    let raw = serde_json::value::to_raw_value(&params).unwrap();
    let outcome = match c.upstream.raw_request_dyn(method.into(), &raw).await {
        Ok(result) => (
            "result",
            serde_json::from_str::<Value>(result.get()).unwrap(),
        ),
        Err(alloy::transports::RpcError::ErrorResp(e)) => {
            ("error", serde_json::to_value(e).unwrap())
        }
        Err(e) => panic!("anvil failed: {e}"),
    };
    Json(json!({"jsonrpc": "2.0", "id": req["id"], outcome.0: outcome.1}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_events_are_read_in_ranges_a_public_endpoint_accepts() {
    let env = crate::ingest::env().await;
    let d = env.domain();
    let input: Vec<_> = sample::records(6)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let key = dev_contributor(i % 3);
            sign_record(&key, &d, env.datanet, r, "CC0-1.0", i as u64, u64::MAX)
        })
        .collect();

    // Written straight to the node: a batch, a revocation, a snapshot, an adapter.
    let first = ingest(&env.chain, &env.lake, env.datanet, input.clone())
        .await
        .unwrap()
        .batch;
    let gone = input[0].contribution.id();
    let revoked = revoke(&env.chain, &env.lake, gone, "withdrawn")
        .await
        .unwrap();
    let snap = snapshot::snapshot(&env.chain, &env.lake, &[env.datanet], None)
        .await
        .unwrap();
    let models = env.chain.model_registry();
    let base = B256::repeat_byte(0xba);
    send(models.registerBaseModel(base, B256::ZERO, "gpt2".into(), String::new()))
        .await
        .unwrap();
    send(models.publishAdapter(
        B256::repeat_byte(0xad),
        base,
        vec![],
        snap.manifest.snapshot_id,
        B256::ZERO,
        B256::ZERO,
        "artifacts/adapters/x/".into(),
        "pantry@1.0.0".into(),
    ))
    .await
    .unwrap();
    // The chain goes on: the deployment's blocks are more than one request may cover.
    let _: Value = env
        .chain
        .provider()
        .raw_request("anvil_mine".into(), (3 * CAP,))
        .await
        .unwrap();

    let (url, endpoint) = capped(env.chain.provider().clone()).await;
    let public = through(&env, url, "public").await;
    let before = endpoint.refused.load(Ordering::SeqCst);

    // Each rerun finds its earlier transaction in the logs, through the capped endpoint.
    let again = ingest(&public, &env.lake, env.datanet, input)
        .await
        .unwrap()
        .batch;
    assert_eq!(
        (again.batch_id, again.anchor_tx, again.newly_anchored),
        (first.batch_id, first.anchor_tx, false)
    );
    let twice = revoke(&public, &env.lake, gone, "withdrawn").await.unwrap();
    assert_eq!((twice.tx, twice.newly_revoked), (revoked.tx, false));
    let recommitted = snapshot::commit(&public, &env.lake, &snap.manifest)
        .await
        .unwrap();
    assert_eq!(
        (recommitted.tx, recommitted.newly_committed),
        (snap.tx, false)
    );

    let (theirs, ours) = (
        ChainState::read(&public).await.unwrap(),
        ChainState::read(&env.chain).await.unwrap(),
    );
    assert_eq!(
        (theirs.anchored, theirs.revoked, theirs.validations),
        (ours.anchored, ours.revoked, ours.validations)
    );
    let adapters = published_adapters(&public).await.unwrap();
    assert_eq!(adapters, published_adapters(&env.chain).await.unwrap());
    assert_eq!(adapters.len(), 1);
    assert!(
        endpoint.refused.load(Ordering::SeqCst) > before,
        "the endpoint never refused a range: the test did not meet its cap"
    );

    // The registry records the adapter's publisher: a node that pruned the publishing
    // transaction settles the same (before, it was needed for its sender).
    let answer = InferenceEntry {
        adapter_id: B256::repeat_byte(0xad),
        request_hash: B256::repeat_byte(1),
        response_hash: B256::repeat_byte(2),
        attribution_root: B256::ZERO,
        tokens: 4,
        fee: 1_000,
        attribution: vec![],
        nonce: B256::repeat_byte(3),
    };
    tributary_pipeline::inferences::record(&env.chain, &env.lake, &[answer])
        .await
        .unwrap();
    let accounts = || Accounts {
        platform: Address::repeat_byte(0x01),
        stakers: Address::repeat_byte(0x02),
    };
    endpoint.pruned.store(true, Ordering::SeqCst);
    let settled = settle(&public, &env.lake, Policy::default(), accounts())
        .await
        .unwrap();
    let owner = settled
        .manifest
        .allocations
        .iter()
        .find(|a| a.role == Role::ModelOwner)
        .unwrap();
    assert_eq!(owner.account, env.chain.signer(), "the publisher is paid");
}

/// A transaction whose reply was lost after the node took it (a proxy's 502, a timeout) runs
/// once: the retried send finds it mined (the node says its nonce is used) or still pending
/// (the node says it knows it) and waits for it. Before, either answer read as a nonce race
/// and the call was signed again with the next nonce, running twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_reply_was_lost_runs_once() {
    use alloy::primitives::U256;

    let env = crate::ingest::env().await;
    let (url, endpoint) = capped(env.chain.provider().clone()).await;
    let public = through(&env, url, "public").await;
    let signer = public.signer();
    let provider = env.chain.provider();
    let nonce = || async { provider.get_transaction_count(signer).await.unwrap() };
    // Succeeds however often it runs: only the nonce tells.
    let registry = public.datanet_registry();
    let set_validator = |who: u8| {
        send(registry.setValidator(U256::from(env.datanet), Address::repeat_byte(who), true))
    };
    let before = nonce().await;
    endpoint.lose_send_reply.store(true, Ordering::SeqCst);

    // Mined at once: the resend hears "nonce too low".
    let receipt = set_validator(0x5a).await.unwrap();
    assert_eq!(
        (
            endpoint.lost.load(Ordering::SeqCst),
            endpoint.resent.load(Ordering::SeqCst)
        ),
        (1, 1),
        "a reply was lost, and the transaction sent again"
    );
    assert_eq!(nonce().await, before + 1, "one transaction, not two");
    assert!(receipt.status());

    // Still in the pool when resent: the node says it knows it. Mined once that answer is
    // given.
    let _: Value = provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let mine = async {
        while endpoint.resent.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let _: Value = provider.raw_request("evm_mine".into(), ()).await.unwrap();
    };
    let (receipt, ()) = tokio::join!(set_validator(0x5b), mine);
    assert!(receipt.unwrap().status());
    assert_eq!(nonce().await, before + 2, "one transaction, not two");
}
