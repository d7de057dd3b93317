//! Backfill throughput (`make bench`): an anvil chain with at least 100,000 Tributary events
//! over at least 20,000 blocks, indexed from scratch into SQLite (with and without the Delta
//! mirror), side by side with foundry's `cast logs` fetching the same logs from the same
//! endpoint. Issue 4's goal: at least 1.0x the reference's events/s while doing more (decode,
//! graph, checkpoints, mirror).
//!
//! Every block holds six transactions from the deployer and seven events: a Datanet created
//! (`DatanetCreated`, `AnchorerSet`), a base model registered, a snapshot committed, an adapter
//! published (child of the previous block's), a contribution revoked (with its Merkle proof in
//! one batch anchored before the first block), a validator set.
//!
//! `TRIBUTARY_BENCH_SCALE` (default 1.0: 20,000 blocks) scales the chain; `TRIBUTARY_CAST`
//! names the cast binary (`scripts/setup.sh --bench` installs it).

use std::process::Stdio;
use std::time::Instant;

use alloy::network::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use alloy::transports::http::reqwest;
use tributary_chain::anvil::{AnvilOptions, LocalAnvil};
use tributary_chain::bindings::{DatanetRegistry, ModelRegistry};
use tributary_chain::keys::{ANVIL_DEV_KEY, parse_key};
use tributary_chain::{Chain, ChainConfig};
use tributary_indexer::Indexer;
use tributary_lake::Lake;
use tributary_schemas::contribution::Contribution;
use tributary_schemas::manifest::BatchManifest;
use tributary_schemas::merkle::{MerkleTree, leaf_bytes32};
use tributary_sql::Store;

const TXS_PER_BLOCK: usize = 6;

/// The contribution block `b` revokes: one of Datanet 1's, all anchored in one batch before
/// the blocks are generated.
fn bench_contribution(b: u64) -> Contribution {
    Contribution {
        datanetId: U256::from(1),
        contributor: Address::repeat_byte(0xbe),
        contentHash: keccak256(format!("content-{b}")),
        license: "CC0-1.0".into(),
        timestamp: b,
        nonce: b,
        deadline: u64::MAX,
    }
}

/// Six signed transactions for block `b`, nonces from `nonce`; `batch` holds the revoked
/// contributions.
async fn block_txs(
    chain: &Chain,
    wallet: &EthereumWallet,
    b: u64,
    nonce: u64,
    batch: &(B256, MerkleTree),
) -> Vec<Bytes> {
    let d = chain.deployment();
    let id = |what: &str| keccak256(format!("{what}-{b}"));
    let calls: [(Address, Vec<u8>); TXS_PER_BLOCK] = [
        (
            d.datanet_registry,
            DatanetRegistry::createDatanetCall {
                name: format!("bench-{b}"),
                domain: "bench".into(),
                schemaHash: B256::ZERO,
                metadataURI: String::new(),
            }
            .abi_encode(),
        ),
        (
            d.model_registry,
            ModelRegistry::registerBaseModelCall {
                id: id("base"),
                weightsHash: id("weights"),
                architecture: "llama".into(),
                uri: format!("lake://models/base-{b}"),
            }
            .abi_encode(),
        ),
        (
            d.model_registry,
            ModelRegistry::commitSnapshotCall {
                id: id("snapshot"),
                datanetIds: vec![U256::from(1)],
                lakeVersions: vec![b],
                contributionsRoot: id("root"),
                count: U256::from(10),
            }
            .abi_encode(),
        ),
        (
            d.model_registry,
            ModelRegistry::publishAdapterCall {
                id: id("adapter"),
                baseModelId: id("base"),
                parentIds: if b == 0 {
                    vec![]
                } else {
                    vec![keccak256(format!("adapter-{}", b - 1))]
                },
                snapshotId: id("snapshot"),
                configHash: id("config"),
                weightsHash: id("adapter-weights"),
                uri: format!("lake://adapters/{b}"),
                version: format!("1.0.{b}"),
            }
            .abi_encode(),
        ),
        (
            d.datanet_registry,
            DatanetRegistry::revokeContributionCall {
                batchId: batch.0,
                c: (&bench_contribution(b)).into(),
                proof: batch
                    .1
                    .proof(&leaf_bytes32(bench_contribution(b).id()))
                    .expect("anchored"),
                reason: "bench".into(),
            }
            .abi_encode(),
        ),
        (
            d.datanet_registry,
            DatanetRegistry::setValidatorCall {
                id: U256::from(1),
                account: Address::from_word(id("validator")),
                allowed: b.is_multiple_of(2),
            }
            .abi_encode(),
        ),
    ];
    let mut out = Vec::with_capacity(TXS_PER_BLOCK);
    for (i, (to, input)) in calls.into_iter().enumerate() {
        let tx = TransactionRequest::default()
            .with_to(to)
            .with_input(input)
            .with_nonce(nonce + i as u64)
            .with_chain_id(chain.chain_id())
            .with_gas_limit(500_000)
            .with_max_fee_per_gas(20_000_000_000)
            .with_max_priority_fee_per_gas(1_000_000_000);
        let envelope = tx.build(wallet).await.expect("signing");
        out.push(envelope.encoded_2718().into());
    }
    out
}

/// Posts a JSON-RPC batch and fails on any error in it.
async fn rpc_batch(http: &reqwest::Client, url: &str, calls: &[(&str, serde_json::Value)]) {
    let body: Vec<serde_json::Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (method, params))| {
            serde_json::json!({"jsonrpc": "2.0", "id": i, "method": method, "params": params})
        })
        .collect();
    let answer = http
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&answer).unwrap();
    for a in answers {
        assert!(a.get("error").is_none(), "{a}");
    }
}

/// Fills the chain: `blocks` blocks of [`TXS_PER_BLOCK`] transactions, mined one by one.
async fn generate(chain: &Chain, blocks: u64) {
    let signer = parse_key(ANVIL_DEV_KEY).unwrap();
    let from = signer.address();
    let wallet = EthereumWallet::from(signer);
    assert_eq!(root_datanet(chain).await, 1);
    let batch = anchor_revocable(chain, blocks).await;
    let p = chain.provider();
    let _: serde_json::Value = p
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let mut nonce = p.get_transaction_count(from).await.unwrap();
    let http = reqwest::Client::new();
    let url = chain.url().as_str();
    for b in 0..blocks {
        let txs = block_txs(chain, &wallet, b, nonce, &batch).await;
        nonce += txs.len() as u64;
        let sends: Vec<_> = txs
            .iter()
            .map(|t| ("eth_sendRawTransaction", serde_json::json!([t])))
            .collect();
        rpc_batch(&http, url, &sends).await;
        rpc_batch(&http, url, &[("evm_mine", serde_json::json!([]))]).await;
        if b % 2000 == 1999 {
            eprintln!("backfill: {} of {blocks} blocks generated", b + 1);
        }
    }
    let _: serde_json::Value = p
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .unwrap();
}

/// Datanet 1, owned by the deployer: snapshots draw from it, revocations and validators
/// name it.
async fn root_datanet(chain: &Chain) -> u64 {
    let registry = chain.datanet_registry();
    let call = registry.createDatanet("root".into(), "bench".into(), B256::ZERO, String::new());
    tributary_chain::send(call).await.unwrap();
    chain
        .datanet_registry()
        .datanetCount()
        .call()
        .await
        .unwrap()
        .to::<u64>()
}

/// Anchors one batch of Datanet 1 holding the contribution each block revokes (its manifest is
/// not in the lake: the indexer records the batch unverified).
async fn anchor_revocable(chain: &Chain, blocks: u64) -> (B256, MerkleTree) {
    let tree = MerkleTree::new(
        (0..blocks)
            .map(|b| leaf_bytes32(bench_contribution(b).id()))
            .collect(),
    );
    let id = BatchManifest::batch_id_at(1, tree.root());
    let registry = chain.datanet_registry();
    let call = registry.anchorBatch(
        U256::from(1),
        id,
        tree.root(),
        U256::from(blocks),
        String::new(),
        B256::ZERO,
        0,
    );
    tributary_chain::send(call).await.unwrap();
    (id, tree)
}

/// `cast logs --json` over every contract address, all at once; the logs it printed.
fn cast_logs(cast: &str, chain: &Chain, dir: &std::path::Path) -> u64 {
    let from = chain.deployment().start_block.to_string();
    let children: Vec<_> = chain
        .deployment()
        .addresses()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let out = std::fs::File::create(dir.join(format!("cast-{i}.json"))).unwrap();
            std::process::Command::new(cast)
                .args([
                    "logs",
                    "--json",
                    "--from-block",
                    &from,
                    "--to-block",
                    "latest",
                ])
                .args([
                    "--address",
                    &a.to_string(),
                    "--rpc-url",
                    chain.url().as_str(),
                ])
                .stdout(out)
                .stderr(Stdio::inherit())
                .spawn()
                .expect("cast runs (scripts/setup.sh --bench installs it)")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "cast logs failed");
    }
    (0..chain.deployment().addresses().len())
        .map(|i| {
            let text = std::fs::read_to_string(dir.join(format!("cast-{i}.json"))).unwrap();
            if text.trim().is_empty() {
                0
            } else {
                serde_json::from_str::<Vec<serde_json::Value>>(&text)
                    .unwrap()
                    .len() as u64
            }
        })
        .sum()
}

/// A from-scratch index of the chain into a new SQLite store (and lake); the events it read.
async fn index(chain: &Chain, dir: &std::path::Path, mirror: bool) -> u64 {
    let store = Store::connect(&format!("sqlite://{}", dir.join("index.db").display()))
        .await
        .unwrap();
    let lake = Lake::open(dir.join("lake").to_str().unwrap()).unwrap();
    let stats = Indexer::new(chain, &store, &lake)
        .with_mirror(mirror)
        .run_to_head()
        .await
        .unwrap();
    stats.events
}

#[tokio::main]
async fn main() {
    let smoke = std::env::var("TRIBUTARY_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let scale: f64 = std::env::var("TRIBUTARY_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 0.005 } else { 1.0 });
    let blocks = ((20_000.0 * scale) as u64).max(1);
    let cast = std::env::var("TRIBUTARY_CAST")
        .ok()
        .filter(|c| !c.is_empty())
        .expect("TRIBUTARY_CAST: run `make bench` (scripts/setup.sh --bench installs cast)");
    let dir = tempfile::tempdir().unwrap();
    // 20,000 blocks of growing state: anvil would write each one's state to disk otherwise.
    let anvil = LocalAnvil::start(&AnvilOptions {
        prune_history: true,
        ..AnvilOptions::default()
    })
    .unwrap();
    let chain = Chain::connect(ChainConfig::rpc(anvil.url().clone(), dir.path()))
        .await
        .unwrap();
    let t = Instant::now();
    generate(&chain, blocks).await;
    let head = chain.head().await.unwrap();
    eprintln!(
        "backfill: {blocks} blocks generated in {:.0} s (head {head})",
        t.elapsed().as_secs_f64()
    );

    let mut rows = Vec::new();
    for round in 0..2 {
        let run = dir.path().join(format!("round-{round}"));
        std::fs::create_dir_all(&run).unwrap();
        let t = Instant::now();
        let reference = cast_logs(&cast, &chain, &run);
        let cast_s = t.elapsed().as_secs_f64();
        let mut ours = Vec::new();
        for mirror in [true, false] {
            let out = run.join(format!("mirror-{mirror}"));
            let t = Instant::now();
            let events = index(&chain, &out, mirror).await;
            ours.push(t.elapsed().as_secs_f64());
            assert_eq!(events, reference, "the indexer and cast read the same logs");
        }
        assert!(reference >= 100_000 || scale < 1.0, "{reference} events");
        rows.push((reference, cast_s, ours[0], ours[1]));
    }
    for (events, cast_s, mirrored, bare) in rows {
        let rate = |s: f64| events as f64 / s;
        println!(
            "| {events} events, {blocks} blocks | cast logs {:.0} ev/s ({cast_s:.1} s) | SQLite + Delta mirror {:.0} ev/s ({mirrored:.1} s, {:.2}x) | SQLite only {:.0} ev/s ({bare:.1} s, {:.2}x) |",
            rate(cast_s),
            rate(mirrored),
            cast_s / mirrored,
            rate(bare),
            cast_s / bare,
        );
    }
}
