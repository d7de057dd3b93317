use alloy::primitives::{B256, U256};
use tributary_chain::keys::dev_contributor;
use tributary_lake::Lake;
use tributary_pipeline::datanet::{self, DatanetSpec};
use tributary_pipeline::ingest::ingest;
use tributary_pipeline::sample;
use tributary_pipeline::sign::Signed;
use tributary_schemas::tables::names;

use crate::common::{self, Env, Start, sign_record};

/// A fresh anvil and lake with Datanet "k".
pub(crate) async fn env() -> Env {
    let spec = DatanetSpec {
        name: "k".into(),
        domain: "cooking".into(),
        schema_hash: B256::ZERO,
        metadata_uri: String::new(),
    };
    let env = common::env(Start::Spec(&spec)).await;
    assert_eq!(
        datanet::create(&env.chain, &spec).await.unwrap(),
        env.datanet,
        "creating by name again is harmless"
    );
    env
}

fn signed(env: &Env, n: usize) -> Vec<Signed> {
    let d = env.domain();
    sample::records(n)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let key = dev_contributor(i % 3);
            sign_record(&key, &d, env.datanet, r, "CC0-1.0", i as u64, u64::MAX)
        })
        .collect()
}

async fn rows(lake: &Lake) -> usize {
    lake.read(names::CONTRIBUTIONS, None)
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

#[tokio::test]
async fn a_batch_lands_once_and_is_anchored_once() {
    let env = env().await;
    let input = signed(&env, 30);
    let first = ingest(&env.chain, &env.lake, env.datanet, input.clone())
        .await
        .unwrap();
    assert!(first.rejected.is_empty());
    let first = first.batch;
    assert_eq!(first.count, 30);
    assert!(first.newly_committed && first.newly_anchored);
    assert_eq!(rows(&env.lake).await, 30);

    // The registry holds the root and count of the batch.
    let b = env
        .chain
        .datanet_registry()
        .batch(first.batch_id)
        .call()
        .await
        .unwrap();
    assert_eq!(
        (b.datanetId, b.merkleRoot, b.count),
        (U256::from(env.datanet), first.merkle_root, U256::from(30))
    );

    // Re-running the same input, in another order, adds nothing and anchors nothing.
    let mut shuffled = input;
    shuffled.reverse();
    let again = ingest(&env.chain, &env.lake, env.datanet, shuffled)
        .await
        .unwrap()
        .batch;
    assert_eq!(again.batch_id, first.batch_id);
    assert!(!again.newly_committed && !again.newly_anchored);
    assert_eq!(
        (again.lake_version, again.anchor_tx),
        (first.lake_version, first.anchor_tx)
    );
    assert_eq!(rows(&env.lake).await, 30);
}

#[tokio::test]
async fn bad_records_are_rejected_with_reasons_and_the_rest_land() {
    let env = env().await;
    let mut input = signed(&env, 6);
    input[1].content = serde_json::json!({"question": "tampered"});
    input[2].contribution.contributor = dev_contributor(9).address();
    input[3].contribution.datanetId = U256::from(99);
    input.push(input[0].clone());
    let report = ingest(&env.chain, &env.lake, env.datanet, input)
        .await
        .unwrap();
    assert_eq!(report.batch.count, 3);
    let reasons: Vec<(usize, &str)> = report
        .rejected
        .iter()
        .map(|r| (r.locator[7..].parse().unwrap(), r.message.as_str()))
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].0 == 1 && reasons[0].1.contains("contentHash"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == 2 && reasons[1].1.contains("signed by"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].0 == 3 && reasons[2].1.contains("Datanet 99"),
        "{reasons:?}"
    );
    assert!(
        reasons[3].0 == 6 && reasons[3].1.contains("duplicate"),
        "{reasons:?}"
    );
    assert_eq!(rows(&env.lake).await, 3);

    // Nothing valid at all is an error that says why, and writes nothing.
    let mut bad = signed(&env, 1);
    bad[0].content = serde_json::json!({});
    let err = ingest(&env.chain, &env.lake, env.datanet, bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no valid contributions") && err.contains("contentHash"),
        "{err}"
    );
    assert_eq!(rows(&env.lake).await, 3);
}

/// A DatanetRegistry deployed before batch ids were bound to their Datanet (its bytecode as
/// this project shipped it until 2026-12-07), named by configuration as someone else's
/// deployment: an anchorer of another Datanet anchors a batch's id first, straight from a
/// wallet, and ingesting that batch is an error that says so, never taken for its own anchor.
#[tokio::test]
async fn on_an_older_registry_a_batch_id_another_datanet_took_is_an_error() {
    use alloy::network::TransactionBuilder;
    use alloy::providers::Provider;
    use tributary_chain::bindings::DatanetRegistry;
    use tributary_chain::{Chain, ChainConfig, send};

    let base = common::env(Start::Bare).await;
    let code: alloy::primitives::Bytes =
        include_str!("fixtures/DatanetRegistry-before-batchIdOf.hex")
            .trim()
            .parse()
            .unwrap();
    let deploy = alloy::rpc::types::TransactionRequest::default().with_deploy_code(code);
    let receipt = base
        .chain
        .provider()
        .send_transaction(deploy)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let mut deployment = base.chain.deployment().clone();
    deployment.datanet_registry = receipt.contract_address.unwrap();
    let chain = Chain::connect(ChainConfig {
        deployment: Some(deployment),
        ..ChainConfig::rpc(base.chain.url().clone(), base.dir.path().join("theirs"))
    })
    .await
    .unwrap();

    // Datanet 1 is ours; Datanet 2 is Alice's, who anchors the id our batch will have.
    let registry = chain.datanet_registry();
    send(registry.createDatanet("ours".into(), "x".into(), B256::ZERO, "".into()))
        .await
        .unwrap();
    let alice = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
        .parse()
        .unwrap();
    let as_alice = DatanetRegistry::new(*registry.address(), chain.with_signer(alice));
    send(as_alice.createDatanet("hers".into(), "x".into(), B256::ZERO, "".into()))
        .await
        .unwrap();
    let d = tributary_schemas::contribution::domain(chain.chain_id(), *registry.address());
    let input: Vec<Signed> = sample::records(3)
        .into_iter()
        .enumerate()
        .map(|(i, r)| sign_record(&dev_contributor(i), &d, 1, r, "CC0-1.0", i as u64, u64::MAX))
        .collect();
    let ids: Vec<B256> = input.iter().map(|s| s.contribution.id()).collect();
    let taken = tributary_schemas::manifest::BatchManifest::batch_id_of(1, &ids);
    send(as_alice.anchorBatch(
        U256::from(2),
        taken,
        B256::repeat_byte(0xee),
        U256::from(1),
        "".into(),
        B256::ZERO,
        0,
    ))
    .await
    .expect("the older registry lets her");

    let err = ingest(&chain, &base.lake, 1, input)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is anchored on chain for Datanet 2") && err.contains("deploy the current"),
        "{err}"
    );
    assert!(
        base.lake
            .read(names::BATCHES, None)
            .await
            .unwrap()
            .iter()
            .all(|b| b.num_rows() == 0),
        "not recorded as anchored"
    );
}

/// Another engine checkpoints `contributions` and cleans up its log up to `version` (Spark's
/// or delta-rs' log retention, run as if it had expired).
async fn checkpoint_and_clean_up(lake: &Lake, version: u64) {
    let table = lake.table(names::CONTRIBUTIONS).await.unwrap();
    deltalake::checkpoints::create_checkpoint(&table, None)
        .await
        .unwrap();
    let far_future = chrono::Utc::now().timestamp_millis() + 3_600_000;
    let removed = deltalake::checkpoints::cleanup_expired_logs_for(
        version,
        &*table.log_store(),
        far_future,
        None,
    )
    .await
    .unwrap();
    assert!(removed > 0, "the log before the checkpoint is gone");
}

/// (contribution id, content) of every row, sorted.
fn id_and_content(rows: &[arrow::record_batch::RecordBatch]) -> Vec<(String, String)> {
    use arrow::array::AsArray;
    let mut out: Vec<(String, String)> = rows
        .iter()
        .flat_map(|b| {
            let col = |c: &str| b.column_by_name(c).unwrap().as_string::<i32>().clone();
            let (ids, content) = (col("contribution_id"), col("content"));
            (0..b.num_rows())
                .map(|i| (ids.value(i).to_string(), content.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

/// A snapshot trains on the same rows after another engine compacted the table and vacuumed
/// the files its pinned version lists (Spark's or delta-rs' `OPTIMIZE` then `VACUUM`): they
/// are read from the latest version, and a row there that does not hash to its id (a forged
/// copy) is not taken. Before, reading the snapshot failed on the missing files.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_reads_the_same_rows_after_optimize_and_vacuum() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, AsArray, StringArray};
    use tributary_pipeline::snapshot;

    let env = env().await;
    let input = signed(&env, 8);
    for half in input.chunks(4) {
        ingest(&env.chain, &env.lake, env.datanet, half.to_vec())
            .await
            .unwrap();
    }
    let snap = snapshot::snapshot(&env.chain, &env.lake, &[env.datanet], None)
        .await
        .unwrap()
        .manifest;
    let before = id_and_content(&snapshot::read(&env.lake, &snap).await.unwrap());
    assert_eq!(before.len(), 8);

    let (table, compacted) = env
        .lake
        .table(names::CONTRIBUTIONS)
        .await
        .unwrap()
        .optimize()
        .await
        .unwrap();
    assert!(compacted.num_files_removed >= 2, "{compacted:?}");
    let (_, vacuumed) = table
        .vacuum()
        .with_retention_period(chrono::Duration::zero())
        .with_enforce_retention_duration(false)
        .await
        .unwrap();
    assert!(!vacuumed.files_deleted.is_empty(), "{vacuumed:?}");
    // A forged copy of every row: same id, other content.
    let rows = env.lake.read(names::CONTRIBUTIONS, None).await.unwrap();
    let forged: Vec<_> = rows
        .iter()
        .map(|b| {
            let at = b.schema().index_of("content").unwrap();
            let content = b.column(at).as_string::<i32>();
            let mut columns = b.columns().to_vec();
            columns[at] = Arc::new(StringArray::from_iter_values(
                content.iter().map(|c| format!("{}!", c.unwrap())),
            )) as ArrayRef;
            arrow::record_batch::RecordBatch::try_new(b.schema(), columns).unwrap()
        })
        .collect();
    env.lake
        .append(names::CONTRIBUTIONS)
        .batches(forged)
        .commit()
        .await
        .unwrap();

    let after = id_and_content(&snapshot::read(&env.lake, &snap).await.unwrap());
    assert_eq!(after, before);
}

/// An ingest run again after another engine's log cleanup (a checkpoint, then the commit
/// files before it removed) finds its batch anchored and writes the manifest the chain holds
/// the hash of: with the lake version the batch was anchored at, not the version its commit
/// is found at now (its commit file is gone). Before, the manifest was rewritten with another
/// version, its hash no longer matched the chain's, and the batch read as altered.
#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_after_log_cleanup_keeps_the_manifest_the_chain_holds() {
    use tributary_chain::bindings::DatanetRegistry;
    use tributary_schemas::manifest::BatchManifest;

    let env = env().await;
    let input = signed(&env, 8);
    let first = ingest(&env.chain, &env.lake, env.datanet, input[..4].to_vec())
        .await
        .unwrap()
        .batch;
    let second = ingest(&env.chain, &env.lake, env.datanet, input[4..].to_vec())
        .await
        .unwrap()
        .batch;
    assert!(second.lake_version > first.lake_version);
    checkpoint_and_clean_up(&env.lake, second.lake_version).await;

    let again = ingest(&env.chain, &env.lake, env.datanet, input[..4].to_vec())
        .await
        .unwrap()
        .batch;
    assert_eq!(
        (again.batch_id, again.newly_anchored, again.lake_version),
        (first.batch_id, false, first.lake_version)
    );
    let registry = env.chain.datanet_registry();
    let filter = registry
        .BatchAnchored_filter()
        .topic2(first.batch_id)
        .filter;
    let (anchored, _) = env
        .chain
        .events::<DatanetRegistry::BatchAnchored>(&filter)
        .await
        .unwrap()
        .remove(0);
    let stored: BatchManifest = serde_json::from_slice(
        &env.lake
            .get(&BatchManifest::key(first.batch_id))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored.hash(), anchored.manifestHash);
}

/// A batch an earlier version anchored with a manifest whose entries carried no proofs, which
/// then crashed before recording the batch, is finished by `recover` with that manifest: the
/// one whose hash the chain holds, byte for byte (the current form, with proofs, would differ
/// from the chain and the indexer would flag the batch).
#[tokio::test]
async fn a_batch_anchored_by_an_earlier_version_keeps_its_manifest_on_recovery() {
    use tributary_chain::send;
    use tributary_pipeline::ingest::recover;
    use tributary_schemas::manifest::BatchManifest;

    let env = env().await;
    let input = signed(&env, 4);
    // Committed to the lake, its anchoring refused (Alice may not anchor here).
    let as_alice = env.as_signer(dev_contributor(2)).await;
    ingest(&as_alice, &env.lake, env.datanet, input)
        .await
        .unwrap_err();
    let ids: Vec<B256> = {
        let rows = env.lake.read(names::CONTRIBUTIONS, None).await.unwrap();
        id_and_content(&rows)
            .into_iter()
            .map(|(id, _)| id.parse().unwrap())
            .collect()
    };
    let key = BatchManifest::key(BatchManifest::batch_id_of(env.datanet, &ids));
    let current: BatchManifest =
        serde_json::from_slice(&env.lake.get(&key).await.unwrap()).unwrap();
    assert!(current.contributions.iter().all(|e| e.proof.is_some()));
    // The earlier version wrote and anchored the form without proofs, then crashed; the lake
    // lost its manifest since.
    let legacy = current.without_proofs();
    send(env.chain.datanet_registry().anchorBatch(
        U256::from(env.datanet),
        legacy.batch_id,
        legacy.merkle_tree().root(),
        U256::from(legacy.contributions.len()),
        key.clone(),
        legacy.hash(),
        legacy.lake_version,
    ))
    .await
    .unwrap();
    std::fs::remove_file(env.dir.path().join("lake").join(&key)).unwrap();

    let done = recover(&env.chain, &env.lake).await.unwrap();
    assert_eq!(done.len(), 1);
    assert!(!done[0].newly_anchored);
    let written = env.lake.get(&key).await.unwrap();
    assert_eq!(
        String::from_utf8(written).unwrap(),
        String::from_utf8(legacy.to_bytes()).unwrap(),
        "the form the chain's hash names"
    );
}

/// A batch committed to the lake but never anchored (its anchoring failed, as after a crash) is
/// found and finished by `recover` after another engine checkpointed the table and cleaned up
/// the log, removing the commit file that holds it: recovery lists the snapshot's application
/// transactions (checkpoint plus the commits after it). Before, it read every commit file from
/// version 0, one request each on every `contribute`, and missed this batch.
#[tokio::test]
async fn a_batch_left_unanchored_is_recovered_after_log_cleanup() {
    use tributary_pipeline::ingest::recover;

    let env = env().await;
    let input = signed(&env, 8);
    // Alice may not anchor in this Datanet: her batch is committed, then its anchoring fails.
    let as_alice = env.as_signer(dev_contributor(2)).await;
    let err = ingest(&as_alice, &env.lake, env.datanet, input[..4].to_vec())
        .await
        .unwrap_err();
    assert_eq!(
        rows(&env.lake).await,
        4,
        "committed before it failed: {err}"
    );
    let later = ingest(&env.chain, &env.lake, env.datanet, input[4..].to_vec())
        .await
        .unwrap()
        .batch;
    checkpoint_and_clean_up(&env.lake, later.lake_version).await;

    let done = recover(&env.chain, &env.lake).await.unwrap();
    assert_eq!(done.len(), 1, "the unanchored batch is found");
    let batch = &done[0];
    assert_eq!((batch.count, batch.newly_anchored), (4, true));
    let stored = env
        .chain
        .datanet_registry()
        .batch(batch.batch_id)
        .call()
        .await
        .unwrap();
    assert_eq!(stored.count, U256::from(4));
    // The manifest's lake version holds the batch's rows (the current one, its commit gone).
    let at = env
        .lake
        .read(names::CONTRIBUTIONS, Some(batch.lake_version))
        .await
        .unwrap();
    let held = id_and_content(&at)
        .into_iter()
        .filter(|(id, _)| {
            input[..4]
                .iter()
                .any(|s| format!("{:#x}", s.contribution.id()) == *id)
        })
        .count();
    assert_eq!(held, 4, "read at version {}", batch.lake_version);
    assert!(
        recover(&env.chain, &env.lake).await.unwrap().is_empty(),
        "finished once"
    );
}
