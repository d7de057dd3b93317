//! The inference ledger after a crash: what a restart finds in its folder is posted once,
//! every acknowledged answer in exactly one row, whichever moment the earlier process died at.

use std::sync::Arc;

use alloy::primitives::B256;
use arrow::array::AsArray;
use tributary_chain::{Chain, ChainConfig};
use tributary_lake::Lake;
use tributary_models::serve::ledger::{Ledger, LedgerConfig, journal_path};
use tributary_schemas::manifest::InferenceEntry;
use tributary_schemas::tables::names;

fn answer(i: u8) -> InferenceEntry {
    InferenceEntry {
        adapter_id: B256::repeat_byte(0xad),
        request_hash: B256::repeat_byte(i),
        response_hash: B256::repeat_byte(i ^ 0x80),
        attribution_root: B256::ZERO,
        tokens: 4,
        fee: 40,
        attribution: vec![],
        nonce: B256::ZERO,
    }
}

fn lines(entries: &[InferenceEntry]) -> String {
    entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect()
}

/// The `inferences` table's answer ids, and the answers `InferencesRecorded` counted.
async fn posted(chain: &Chain, lake: &Lake) -> (Vec<String>, u64) {
    let mut ids: Vec<String> = lake
        .read(names::INFERENCES, None)
        .await
        .unwrap()
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name("inference_id").unwrap().as_string::<i32>();
            (0..b.num_rows())
                .map(|i| c.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    let events = chain
        .inference_ledger()
        .InferencesRecorded_filter()
        .from_block(0)
        .query()
        .await
        .unwrap();
    let counted = events
        .iter()
        .map(|(e, _)| e.count.saturating_to::<u64>())
        .sum();
    (ids, counted)
}

/// An embedded anvil with the contracts, and a lake, in `dir`.
async fn chain_and_lake(dir: &std::path::Path) -> (Arc<Chain>, Lake) {
    let chain = Chain::connect(ChainConfig::embedded(dir)).await.unwrap();
    let lake = Lake::open(dir.join("lake").to_str().unwrap()).unwrap();
    (Arc::new(chain), lake)
}

fn ids(entries: &[InferenceEntry]) -> Vec<String> {
    let mut ids: Vec<String> = entries.iter().map(|e| e.id().to_string()).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_posts_what_it_finds_once() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, lake) = chain_and_lake(dir.path()).await;
    let config = LedgerConfig {
        batch_size: 4,
        interval: std::time::Duration::from_secs(3600),
    };
    let all: Vec<InferenceEntry> = (0..8).map(answer).collect();

    // A version before the seal line died between its two writes: the batch of answers 0
    // and 1 in `sealed.jsonl`, and the journal still listing them first. (Posting that batch
    // and then the journal's first four, as it did, paid answers 0 and 1 twice.)
    let folder = dir.path().join("ledger");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("sealed.jsonl"), lines(&all[..2])).unwrap();
    std::fs::write(journal_path(&folder), lines(&all[..5])).unwrap();
    let ledger = Ledger::start(chain.clone(), lake.clone(), config.clone(), &folder).unwrap();
    ledger.flush().await.unwrap();
    assert_eq!(posted(&chain, &lake).await, (ids(&all[..5]), 5));
    assert!(!folder.join("sealed.jsonl").exists());
    drop(ledger);

    // This version died after posting a sealed batch, before taking the seal line out of
    // the journal: the batch is posted again (the same id: nothing new), then the rest.
    tributary_pipeline::inferences::record(&chain, &lake, &all[5..7])
        .await
        .unwrap();
    let seal = serde_json::json!({ "sealed": &all[5..7] }).to_string() + "\n";
    std::fs::write(journal_path(&folder), seal + &lines(&all[7..8])).unwrap();
    let ledger = Ledger::start(chain.clone(), lake.clone(), config.clone(), &folder).unwrap();
    ledger.flush().await.unwrap();
    assert_eq!(posted(&chain, &lake).await, (ids(&all[..8]), 8));
    assert_eq!(
        std::fs::read_to_string(journal_path(&folder)).unwrap(),
        "",
        "nothing left to post"
    );
    drop(ledger);

    // A crash mid-append left a partial last line (never acknowledged). The next answer
    // journaled must not join it: after another crash (the ledger stops here before
    // posting), it is read back and posted.
    // (Only the partial line: a start with answers to post rewrites the journal anyway.)
    let torn = lines(&[answer(9)])[..20].to_string();
    std::fs::write(journal_path(&folder), torn).unwrap();
    let ledger = Ledger::start(chain.clone(), lake.clone(), config.clone(), &folder).unwrap();
    let late = answer(10);
    ledger.record(late.clone()).await.unwrap();
    drop(ledger);
    let ledger = Ledger::start(chain.clone(), lake.clone(), config, &folder).unwrap();
    ledger.flush().await.unwrap();
    let mut want = all.clone();
    want.push(late);
    assert_eq!(posted(&chain, &lake).await, (ids(&want), 9));
}

/// A chain that stops mining delays the records, never the answers: while a batch's
/// transaction waits for a block, later answers are journaled at once (before, each waited
/// for that post, up to the 5-minute receipt timeout). Once blocks come again, everything
/// is posted, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_journaled_while_the_chain_mines_nothing() {
    use alloy::providers::Provider;
    use serde_json::Value;

    let dir = tempfile::tempdir().unwrap();
    let (chain, lake) = chain_and_lake(dir.path()).await;
    let node = chain.provider().clone();
    let _: Value = node
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let config = LedgerConfig {
        batch_size: 1,
        interval: std::time::Duration::from_secs(3600),
    };
    let ledger = Ledger::start(
        chain.clone(),
        lake.clone(),
        config,
        &dir.path().join("ledger"),
    )
    .unwrap();
    let all: Vec<InferenceEntry> = (0..4).map(answer).collect();
    ledger.record(all[0].clone()).await.unwrap();
    // Its batch's transaction reaches the node, which mines nothing.
    let mut polls = 0;
    loop {
        let pool: Value = node
            .raw_request("txpool_status".into(), Vec::<Value>::new())
            .await
            .unwrap();
        if pool["pending"].as_str() != Some("0x0") {
            break;
        }
        polls += 1;
        assert!(polls < 6000, "the first batch was never sent: {pool}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for a in &all[1..] {
        // A failsafe far above one synced append, far below the receipt timeout.
        tokio::time::timeout(std::time::Duration::from_secs(60), ledger.record(a.clone()))
            .await
            .expect("the answer waited for the chain")
            .unwrap();
    }
    assert_eq!(posted(&chain, &lake).await.1, 0, "nothing mined yet");

    let _: Value = node
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .unwrap();
    let _: Value = node
        .raw_request("evm_mine".into(), Vec::<Value>::new())
        .await
        .unwrap();
    ledger.flush().await.unwrap();
    assert_eq!(posted(&chain, &lake).await, (ids(&all), 4));
}
