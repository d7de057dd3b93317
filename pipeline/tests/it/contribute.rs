use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use arrow::array::AsArray;
use serde_json::{Value, json};
use tributary_chain::keys::dev_contributor;
use tributary_chain::{Chain, ChainConfig};
use tributary_lake::Lake;
use tributary_pipeline::contribute::{ContributeConfig, ContributeReport, contribute};
use tributary_pipeline::datanet;
use tributary_pipeline::rules::Rules;
use tributary_pipeline::verify::prove;
use tributary_schemas::contribution::domain;
use tributary_schemas::datanet::DatanetManifest;
use tributary_schemas::tables::names;

use crate::common::{self, Env, Start, sign_record};

const MANIFEST: &str = r#"
name = "recipes"
domain = "cooking"
licenses = ["CC-BY-4.0", "CC0-1.0"]
max_record_bytes = 400

[fields.question]
type = "text"
required = true
min_length = 5
max_length = 200

[fields.answer]
type = "text"
required = true
pattern = "\\.$"

[fields.unit]
type = "label"
labels = ["metric", "imperial"]

[fields.servings]
type = "number"

[dedup]
exact = true
near_threshold = 0.8

[access]
submitters = "anyone"
validators = ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]
"#;

/// A fresh anvil and lake with the Datanet of `MANIFEST`.
async fn env() -> Env {
    common::env(Start::Manifest(MANIFEST)).await
}

fn config(env: &Env, key: Option<PrivateKeySigner>, batch_size: usize) -> ContributeConfig {
    let m = DatanetManifest::from_toml(MANIFEST).unwrap();
    ContributeConfig {
        datanet_id: env.datanet,
        rules: Rules::new(m).unwrap(),
        signer: key,
        license: None,
        batch_size,
        validity_secs: 3600,
        window: tributary_pipeline::contribute::WINDOW,
    }
}

async fn run(
    env: &Env,
    chain: &Chain,
    cfg: &ContributeConfig,
    inputs: &[PathBuf],
) -> ContributeReport {
    contribute(chain, &env.lake, cfg, inputs, &|_| {})
        .await
        .unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn good(i: usize) -> Value {
    let words = [
        "flour", "sugar", "butter", "honey", "oats", "rice", "milk", "cocoa", "salt", "yeast",
        "water", "cream",
    ];
    json!({
        "question": format!("How much {} for recipe {i}?", words[i % words.len()]),
        "answer": format!("Use {} grams of {} in batch number {i} of the {} bakery plan.", 10 * i, words[i % words.len()], words[(i * 7) % words.len()]),
    })
}

/// A pre-signed envelope, with hooks to break it.
fn envelope(
    key: &PrivateKeySigner,
    d: &alloy::sol_types::Eip712Domain,
    datanet: u64,
    content: Value,
    license: &str,
    nonce: u64,
    deadline: u64,
) -> Value {
    sign_record(key, d, datanet, content, license, nonce, deadline).envelope()
}

async fn table_rows(lake: &Lake, table: &str) -> Vec<arrow::record_batch::RecordBatch> {
    lake.read(table, None).await.unwrap()
}

fn count(batches: &[arrow::record_batch::RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

#[tokio::test]
async fn every_bad_record_is_refused_with_its_reason_and_the_good_ones_land_once() {
    let env = env().await;
    let d = env.domain();
    let id = env.datanet;
    let far = u64::MAX / 2;
    let alice = dev_contributor(1);

    // JSON Lines: good records (signed here) and one of each way to be wrong.
    let mut lines: Vec<String> = (0..6).map(|i| good(i).to_string()).collect();
    lines.push("{not json".into()); // malformed
    lines.push(json!({"question": "What is this?"}).to_string()); // missing answer
    lines.push(
        json!({"question": "Quantity of salt?", "answer": "Some.", "servings": "two"}).to_string(),
    ); // wrong type
    lines.push(
        json!({"question": "Quantity of salt?", "answer": "Some.", "colour": "red"}).to_string(),
    ); // unknown field
    lines.push(json!({"question": "Hi?", "answer": "Too short a question."}).to_string()); // length
    lines.push(
        json!({"question": "Which unit then?", "answer": "Cups.", "unit": "cups"}).to_string(),
    ); // label
    lines.push(json!({"question": "Does it end well?", "answer": "No full stop"}).to_string()); // pattern
    lines.push(
        json!({"question": "x".repeat(150), "answer": format!("{}.", "y".repeat(300))}).to_string(),
    ); // too large
    lines.push(good(0).to_string()); // exact duplicate of line 1 (same signer): already present
    // The same words re-cased and re-spaced: another content hash, the same text.
    let near_answer = good(3)["answer"]
        .as_str()
        .unwrap()
        .to_uppercase()
        .replace(' ', "  ");
    let near = json!({"question": good(3)["question"], "answer": near_answer});
    lines.push(near.to_string()); // near duplicate of line 4
    let mut text = lines.join("\n").into_bytes();
    text.extend_from_slice(b"\n{\"question\": \"caf\xe9 au lait?\", \"answer\": \"Yes.\"}\n"); // invalid UTF-8
    let jsonl = write(env.dir.path(), "in.jsonl", &text);

    // Pre-signed envelopes: one good, and every way a signature can be wrong.
    let bob = dev_contributor(2);
    let mut env_lines = vec![envelope(&bob, &d, id, good(20), "CC0-1.0", 0, far)];
    env_lines.push(envelope(&bob, &d, id, good(21), "GPL-3.0", 1, far)); // license
    let foreign_chain = domain(1, env.chain.deployment().datanet_registry);
    env_lines.push(envelope(
        &bob,
        &foreign_chain,
        id,
        good(22),
        "CC0-1.0",
        2,
        far,
    )); // other chain
    let foreign_contract = domain(env.chain.chain_id(), Address::repeat_byte(9));
    env_lines.push(envelope(
        &bob,
        &foreign_contract,
        id,
        good(23),
        "CC0-1.0",
        3,
        far,
    )); // other registry
    env_lines.push(envelope(&bob, &d, id, good(24), "CC0-1.0", 0, far)); // nonce 0 reused
    env_lines.push(envelope(&bob, &d, id, good(25), "CC0-1.0", 5, 10)); // expired
    let mut mismatch = envelope(&bob, &d, id, good(26), "CC0-1.0", 6, far);
    mismatch["contributor"] = json!(dev_contributor(7).address()); // signer mismatch
    env_lines.push(mismatch);
    let mut high_s = envelope(&bob, &d, id, good(27), "CC0-1.0", 7, far);
    let sig: alloy::primitives::Bytes =
        serde_json::from_value(high_s["signature"].clone()).unwrap();
    let sig = alloy::primitives::Signature::try_from(sig.as_ref()).unwrap();
    let n = U256::from_str_radix(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
        16,
    )
    .unwrap();
    let flipped = alloy::primitives::Signature::new(sig.r(), n - sig.s(), !sig.v());
    high_s["signature"] = json!(alloy::primitives::Bytes::from(flipped.as_bytes().to_vec()));
    env_lines.push(high_s);
    env_lines.push(envelope(&bob, &d, id + 1, good(28), "CC0-1.0", 8, far)); // other Datanet
    let mut truncated = envelope(&bob, &d, id, good(29), "CC0-1.0", 9, far);
    truncated["signature"] = json!("0x1234");
    env_lines.push(truncated);
    let presigned = write(
        env.dir.path(),
        "presigned.jsonl",
        env_lines
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    );

    // CSV, a folder of text files: both read into records.
    let csv = write(env.dir.path(), "in.csv", b"question,answer,servings\nHow long to bake bread?,About forty minutes at two hundred degrees.,4\nHow long to rest dough?,One hour in a warm kitchen.,notanumber\n");
    let texts = env.dir.path().join("texts");
    std::fs::create_dir(&texts).unwrap();
    write(
        &texts,
        "a.txt",
        b"A whole folder of notes about baking bread at home.",
    );

    let cfg = config(&env, Some(alice.clone()), 4);
    let inputs = vec![jsonl.clone(), presigned.clone(), csv.clone(), texts.clone()];
    let report = run(&env, &env.chain, &cfg, &inputs).await;

    let want: BTreeMap<&str, u64> = [
        ("malformed", 1),
        ("missing_field", 2), // also the text file: it has no `answer`
        ("wrong_type", 2),    // a string for a number, in JSON and in CSV
        ("unknown_field", 1),
        ("length_out_of_bounds", 1),
        ("label_not_allowed", 1),
        ("pattern_mismatch", 1),
        ("too_large", 1),
        ("duplicate_near", 1),
        ("invalid_utf8", 1),
        ("license_not_accepted", 1),
        ("bad_signature", 5), // other chain, other registry, signer mismatch, high-s, truncated
        ("nonce_reused", 1),
        ("expired", 1),
        ("wrong_datanet", 0),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    // Signed for another Datanet id: the struct hash differs, so the signature does not verify.
    let mut want = want;
    *want.get_mut("bad_signature").unwrap() += 1;
    assert_eq!(report.rejected, want, "{report:#?}");
    assert_eq!(
        report.accepted,
        6 + 1 + 1,
        "6 JSON lines, 1 envelope, 1 CSV row"
    );
    assert_eq!(report.already_present, 1);
    assert_eq!(report.read, 17 + 10 + 2 + 1);
    assert_eq!(count(&table_rows(&env.lake, names::CONTRIBUTIONS).await), 8);
    let rejections = table_rows(&env.lake, names::REJECTIONS).await;
    assert_eq!(
        count(&rejections) as u64,
        report.rejected_total(),
        "every refusal is kept"
    );
    let kept: Vec<(String, String, String)> = rejections
        .iter()
        .flat_map(|b| {
            let col = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
            let (src, loc, code) = (col("source"), col("locator"), col("reason_code"));
            (0..b.num_rows())
                .map(|i| {
                    (
                        src.value(i).to_string(),
                        loc.value(i).to_string(),
                        code.value(i).to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let jsonl_name = jsonl.display().to_string();
    assert!(
        kept.contains(&(jsonl_name.clone(), "line 7".into(), "malformed".into())),
        "{kept:?}"
    );
    assert!(
        kept.contains(&(jsonl_name, "line 17".into(), "invalid_utf8".into())),
        "{kept:?}"
    );
    // Batches of at most 4, each anchored; every accepted contribution proves on chain.
    assert!(
        report.batches.len() >= 2
            && report
                .batches
                .iter()
                .all(|b| b.count <= 4 && b.newly_anchored)
    );
    for batch in table_rows(&env.lake, names::CONTRIBUTIONS).await {
        let ids = batch
            .column_by_name("contribution_id")
            .unwrap()
            .as_string::<i32>();
        for i in 0..batch.num_rows() {
            let p = prove(&env.chain, &env.lake, ids.value(i).parse().unwrap())
                .await
                .unwrap();
            assert!(p.holds() && !p.revoked, "{:?}", p.failure);
        }
    }

    // The same input again adds nothing: no contribution, no refusal row, no anchor.
    let again = run(&env, &env.chain, &cfg, &inputs).await;
    assert_eq!(again.accepted, 0, "{again:#?}");
    assert!(again.batches.is_empty());
    assert_eq!(count(&table_rows(&env.lake, names::CONTRIBUTIONS).await), 8);
    assert_eq!(
        count(&table_rows(&env.lake, names::REJECTIONS).await) as u64,
        report.rejected_total()
    );

    // Without a key, unsigned records are refused as such (and kept).
    let unsigned = write(
        env.dir.path(),
        "unsigned.jsonl",
        good(40).to_string().as_bytes(),
    );
    let r = run(&env, &env.chain, &config(&env, None, 10), &[unsigned]).await;
    assert_eq!(r.rejected.get("unsigned"), Some(&1));
}

#[tokio::test]
async fn unreadable_inputs_are_errors_before_anything_is_written() {
    let env = env().await;
    let ok = write(env.dir.path(), "ok.jsonl", good(1).to_string().as_bytes());
    let cfg = config(&env, Some(dev_contributor(1)), 10);
    for bad in [
        env.dir.path().join("missing.jsonl"),
        write(env.dir.path(), "x.xml", b"<a/>"),
    ] {
        let err = contribute(
            &env.chain,
            &env.lake,
            &cfg,
            &[ok.clone(), bad.clone()],
            &|_| {},
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(bad.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
    }
    assert_eq!(count(&table_rows(&env.lake, names::CONTRIBUTIONS).await), 0);
}

#[tokio::test]
async fn a_batch_committed_but_not_anchored_is_finished_by_the_next_run() {
    let env = env().await;
    let input = write(
        env.dir.path(),
        "in.jsonl",
        (0..3)
            .map(|i| good(i).to_string())
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    );
    let cfg = config(&env, Some(dev_contributor(1)), 10);

    // A process whose signer may not anchor stands in for one that dies after the Delta
    // commit: the rows are in the lake, the batch is not on chain.
    let alice: PrivateKeySigner =
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
            .parse()
            .unwrap();
    let stranger = env.as_signer(alice).await;
    let err = contribute(
        &stranger,
        &env.lake,
        &cfg,
        std::slice::from_ref(&input),
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("may not anchor"), "{err}");
    // Nor does it stop that signer's next run: the batch waits for an anchorer.
    assert!(
        run(&env, &stranger, &cfg, &[]).await.batches.is_empty(),
        "left to an anchorer"
    );
    let rows = table_rows(&env.lake, names::CONTRIBUTIONS).await;
    assert_eq!(count(&rows), 3, "committed");
    let id = rows[0]
        .column_by_name("contribution_id")
        .unwrap()
        .as_string::<i32>()
        .value(0)
        .parse()
        .unwrap();
    let err = prove(&env.chain, &env.lake, id)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not anchored"), "{err}");

    // The next run, by anyone allowed to anchor, finishes it: anchored once, no new rows.
    let report = run(&env, &env.chain, &cfg, &[input]).await;
    assert_eq!((report.accepted, report.already_present), (0, 3));
    assert_eq!(report.batches.len(), 1);
    assert!(report.batches[0].newly_anchored && !report.batches[0].newly_committed);
    assert!(prove(&env.chain, &env.lake, id).await.unwrap().holds());
    let again = run(&env, &env.chain, &cfg, &[]).await;
    assert!(again.batches.is_empty(), "nothing left to finish");
    assert_eq!(count(&table_rows(&env.lake, names::BATCHES).await), 1);
}

#[tokio::test]
async fn revoked_contributions_no_longer_verify_and_leave_a_tombstone() {
    let env = env().await;
    let input = write(
        env.dir.path(),
        "in.jsonl",
        (0..2)
            .map(|i| good(i).to_string())
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    );
    run(
        &env,
        &env.chain,
        &config(&env, Some(dev_contributor(1)), 10),
        &[input],
    )
    .await;
    let rows = table_rows(&env.lake, names::CONTRIBUTIONS).await;
    let id = rows[0]
        .column_by_name("contribution_id")
        .unwrap()
        .as_string::<i32>()
        .value(0)
        .parse()
        .unwrap();
    assert!(prove(&env.chain, &env.lake, id).await.unwrap().holds());

    // The owner (the chain's signer created the Datanet) revokes; a second revoke is harmless.
    let r = tributary_pipeline::revoke::revoke(&env.chain, &env.lake, id, "license withdrawn")
        .await
        .unwrap();
    assert!(r.newly_revoked);
    let again = tributary_pipeline::revoke::revoke(&env.chain, &env.lake, id, "again")
        .await
        .unwrap();
    assert!(!again.newly_revoked && again.tx == r.tx);
    let p = prove(&env.chain, &env.lake, id).await.unwrap();
    assert!(p.revoked && !p.holds());
    assert_eq!(count(&table_rows(&env.lake, names::REVOCATIONS).await), 1);
}

#[tokio::test]
async fn parquet_rows_are_records() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let env = env().await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("question", DataType::Utf8, false),
        Field::new("answer", DataType::Utf8, false),
        Field::new("servings", DataType::Float64, true),
    ]));
    let (a, b) = (good(50), good(51));
    let q: ArrayRef = Arc::new(StringArray::from(vec![
        a["question"].as_str().unwrap(),
        b["question"].as_str().unwrap(),
    ]));
    let ans: ArrayRef = Arc::new(StringArray::from(vec![
        a["answer"].as_str().unwrap(),
        "no full stop",
    ]));
    let servings: ArrayRef = Arc::new(Float64Array::from(vec![Some(2.0), None]));
    let batch =
        arrow::record_batch::RecordBatch::try_new(schema.clone(), vec![q, ans, servings]).unwrap();
    let path = env.dir.path().join("in.parquet");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let report = run(
        &env,
        &env.chain,
        &config(&env, Some(dev_contributor(3)), 10),
        &[path],
    )
    .await;
    assert_eq!(report.accepted, 1);
    assert_eq!(report.rejected.get("pattern_mismatch"), Some(&1));
}

#[tokio::test]
async fn validators_attest_to_batches_and_statuses_follow() {
    let env = env().await;
    let input = write(
        env.dir.path(),
        "in.jsonl",
        (0..3)
            .map(|i| good(i).to_string())
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    );
    let report = run(
        &env,
        &env.chain,
        &config(&env, Some(dev_contributor(1)), 10),
        &[input],
    )
    .await;
    let batch = report.batches[0].batch_id;
    let rows = table_rows(&env.lake, names::CONTRIBUTIONS).await;
    let ids: Vec<alloy::primitives::B256> = (0..3)
        .map(|i| {
            rows[0]
                .column_by_name("contribution_id")
                .unwrap()
                .as_string::<i32>()
                .value(i)
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(
        prove(&env.chain, &env.lake, ids[0]).await.unwrap().status(),
        "pending"
    );

    // The owner is not a validator; the manifest's validator (anvil account #1) is.
    let err = tributary_pipeline::validate::attest(&env.chain, &env.lake, batch, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a validator"), "{err}");
    let mut c = ChainConfig::rpc(env.chain.url().clone(), env.dir.path());
    c.signer = Some(
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
            .parse()
            .unwrap(),
    );
    let validator = Chain::connect(c).await.unwrap();
    let stranger = alloy::primitives::B256::repeat_byte(1);
    let err = tributary_pipeline::validate::attest(&validator, &env.lake, batch, &[stranger])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not in batch"), "{err}");

    let a = tributary_pipeline::validate::attest(&validator, &env.lake, batch, &[ids[0]])
        .await
        .unwrap();
    assert_eq!((a.accepted, a.rejected), (2, 1));
    assert_eq!(
        prove(&env.chain, &env.lake, ids[0]).await.unwrap().status(),
        "rejected"
    );
    assert_eq!(
        prove(&env.chain, &env.lake, ids[1]).await.unwrap().status(),
        "accepted"
    );
    let events = env
        .chain
        .datanet_registry()
        .ValidationRecorded_filter()
        .from_block(0)
        .query()
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let (e, _) = &events[0];
    assert_eq!(
        (e.batchId, e.verdictsRoot, e.validator),
        (batch, a.verdicts_root, validator.signer())
    );
    assert_eq!(count(&table_rows(&env.lake, names::VALIDATIONS).await), 3);

    // The validator changes its verdict (rejecting ids[1] instead of ids[0]) and its run
    // dies after the transaction, before the rows: the verdict on chain is unknown to the
    // lake, so the batch is held back whole.
    use tributary_pipeline::chain_state::ChainState;
    use tributary_pipeline::validate::{attest, verdict_leaf};
    let leaves = [(0, true), (1, false), (2, true)].map(|(i, ok)| verdict_leaf(ids[i], ok));
    let root = tributary_schemas::merkle::MerkleTree::new(leaves.to_vec()).root();
    tributary_chain::send(validator.datanet_registry().recordValidation(
        U256::from(env.datanet),
        batch,
        root,
        U256::from(2),
        U256::from(1),
    ))
    .await
    .unwrap();
    let rejections = || async {
        let state = ChainState::read(&env.chain).await.unwrap();
        state.rejections(&env.lake).await.unwrap()
    };
    assert!(rejections().await.batches.contains(&batch));
    let held = prove(&env.chain, &env.lake, ids[2]).await.unwrap();
    assert_eq!(held.status(), "held", "{:?}", held.verdicts);
    let recorded = || async {
        let registry = env.chain.datanet_registry();
        let filter = registry.ValidationRecorded_filter().from_block(0);
        filter.query().await.unwrap().len()
    };
    // Run again, it records nothing new: it writes the rows of the verdict on chain. The
    // latest verdict stands (ids[0] is accepted again); once more, nothing changes.
    for _ in 0..2 {
        let again = attest(&validator, &env.lake, batch, &[ids[1]])
            .await
            .unwrap();
        assert_eq!(again.verdicts_root, root);
        let r = rejections().await;
        assert!(r.batches.is_empty(), "{:?}", r.batches);
        assert_eq!(r.contributions, std::collections::HashSet::from([ids[1]]));
        assert_eq!(recorded().await, 2);
        assert_eq!(count(&table_rows(&env.lake, names::VALIDATIONS).await), 6);
    }
    let mut statuses = Vec::new();
    for i in [0, 1] {
        let p = prove(&env.chain, &env.lake, ids[i]).await.unwrap();
        statuses.push(p.status());
    }
    assert_eq!(statuses, ["accepted", "rejected"]);
}

/// A record signed by a standard wallet library (Python's eth-account, `sign_typed_data`),
/// with its content hash computed there from the documented canonical JSON, is accepted.
#[tokio::test]
async fn a_signature_from_eth_account_is_accepted() {
    let env = env().await;
    let python = std::env::var("TRIBUTARY_PYTHON")
        .expect("TRIBUTARY_PYTHON is set by `make test` (scripts/setup.sh)");
    let script = r#"
import json, sys
from eth_account import Account
from eth_utils import keccak
chain_id, registry, datanet = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
content = {"question": "How many grams is a cup of sugar?", "answer": "About two hundred grams."}
canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
key = "0x" + "42" * 32
acct = Account.from_key(key)
message = {"datanetId": datanet, "contributor": acct.address, "contentHash": keccak(text=canonical),
           "license": "CC0-1.0", "timestamp": 1700000000, "nonce": 0, "deadline": 4102444800}
types = {"Contribution": [
    {"name": "datanetId", "type": "uint256"}, {"name": "contributor", "type": "address"},
    {"name": "contentHash", "type": "bytes32"}, {"name": "license", "type": "string"},
    {"name": "timestamp", "type": "uint64"}, {"name": "nonce", "type": "uint64"},
    {"name": "deadline", "type": "uint64"}]}
domain = {"name": "Tributary", "version": "1", "chainId": chain_id, "verifyingContract": registry}
signed = Account.sign_typed_data(key, domain_data=domain, message_types=types, message_data=message)
print(json.dumps({"content": content, "contributor": acct.address, "license": "CC0-1.0",
    "timestamp": 1700000000, "nonce": 0, "deadline": 4102444800,
    "signature": "0x" + signed.signature.hex().removeprefix("0x")}))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(env.chain.chain_id().to_string())
        .arg(env.chain.deployment().datanet_registry.to_string())
        .arg(env.datanet.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let input = write(env.dir.path(), "wallet.jsonl", &out.stdout);
    let report = run(&env, &env.chain, &config(&env, None, 10), &[input]).await;
    assert_eq!(
        (report.accepted, report.rejected_total()),
        (1, 0),
        "{report:#?}"
    );
}

/// The same words re-cased and re-spaced: another content hash, the same text.
fn near_copy(i: usize) -> Value {
    let answer = good(i)["answer"]
        .as_str()
        .unwrap()
        .to_uppercase()
        .replace(' ', "  ");
    json!({"question": good(i)["question"], "answer": answer})
}

/// Records are checked against the Datanet two at a time here (the window): duplicates of an
/// earlier run's rows (read from the lake) and of this run's earlier windows (committed or
/// still pending) are caught in whatever window they fall, and signing continues each
/// contributor's nonces past the lake's and the run's.
#[tokio::test]
async fn duplicates_and_nonces_are_checked_across_windows_batches_and_runs() {
    let env = env().await;
    let d = env.domain();
    let id = env.datanet;
    let far = u64::MAX / 2;
    let (me, bob) = (dev_contributor(3), dev_contributor(4));
    let mut cfg = config(&env, Some(me.clone()), 3);
    cfg.window = 2;

    // Run 1: five records signed here (nonces 0..5), in windows of 2 and batches of 3.
    let lines: Vec<String> = (0..5).map(|i| good(i).to_string()).collect();
    let first = write(env.dir.path(), "first.jsonl", lines.join("\n").as_bytes());
    let r = run(&env, &env.chain, &cfg, &[first]).await;
    assert_eq!((r.accepted, r.rejected_total()), (5, 0), "{r:#?}");

    // Run 2, one collision per line with what came before.
    let lines = [
        good(0),                                             // stored, same signer
        envelope(&bob, &d, id, good(2), "CC0-1.0", 0, far),  // stored content, other contributor
        near_copy(1),                                        // stored text
        envelope(&me, &d, id, good(11), "CC0-1.0", 2, far),  // stored (me, 2)
        good(7),                                             // new: signed with nonce 5
        envelope(&bob, &d, id, good(9), "CC0-1.0", 0, far),  // new: (bob, 0)
        envelope(&me, &d, id, good(12), "CC0-1.0", 50, far), // new: (me, 50)
        good(7),                                             // this run, same signer
        near_copy(7),                                        // this run's text
        envelope(&bob, &d, id, good(10), "CC0-1.0", 0, far), // this run's (bob, 0)
        good(8),                                             // new: signed with nonce 51
    ];
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    let second = write(env.dir.path(), "second.jsonl", text.join("\n").as_bytes());
    let r = run(&env, &env.chain, &cfg, std::slice::from_ref(&second)).await;
    let want: BTreeMap<&str, u64> = [
        ("duplicate_exact", 1),
        ("duplicate_near", 2),
        ("nonce_reused", 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(r.rejected, want, "{r:#?}");
    assert_eq!((r.accepted, r.already_present), (4, 2), "{r:#?}");

    // My nonces: 0..5 from run 1, 5 and 51 signed here, 50 pre-signed; none twice.
    let mut mine: Vec<i64> = Vec::new();
    for b in table_rows(&env.lake, names::CONTRIBUTIONS).await {
        let who = b.column_by_name("contributor").unwrap().as_string::<i32>();
        let nonce = b
            .column_by_name("nonce")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            if who.value(i).parse::<Address>().unwrap() == me.address() {
                mine.push(nonce.value(i));
            }
        }
    }
    mine.sort();
    assert_eq!(mine, [0, 1, 2, 3, 4, 5, 50, 51]);

    // Run 2 again: everything is there or refused as before; nothing new lands.
    let again = run(&env, &env.chain, &cfg, &[second]).await;
    assert_eq!(again.accepted, 0, "{again:#?}");
    assert_eq!(count(&table_rows(&env.lake, names::CONTRIBUTIONS).await), 9);
}

/// `contribute` reads only its own Datanet's rows: with another Datanet's files in the same
/// table unreadable, contributing here still works (a run that loaded the whole table, as it
/// once did, fails on them).
#[tokio::test]
async fn contribute_reads_only_its_own_datanets_files() {
    let env = env().await;
    let other =
        DatanetManifest::from_toml(&MANIFEST.replace("name = \"recipes\"", "name = \"other\""))
            .unwrap();
    let other_id = datanet::create_from_manifest(&env.chain, &env.lake, &other)
        .await
        .unwrap();
    let mut cfg = config(&env, Some(dev_contributor(5)), 10);
    cfg.datanet_id = other_id;
    let lines: Vec<String> = (0..3).map(|i| good(i).to_string()).collect();
    let input = write(env.dir.path(), "other.jsonl", lines.join("\n").as_bytes());
    assert_eq!(
        run(&env, &env.chain, &cfg, std::slice::from_ref(&input))
            .await
            .accepted,
        3
    );

    // Every data file of the other Datanet becomes garbage.
    let part = env
        .dir
        .path()
        .join(format!("lake/contributions/datanet_id={other_id}"));
    let mut broken = 0;
    for f in std::fs::read_dir(&part).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "parquet") {
            std::fs::write(&f, b"not parquet").unwrap();
            broken += 1;
        }
    }
    assert!(broken > 0, "no data file under {}", part.display());

    let cfg = config(&env, Some(dev_contributor(5)), 10);
    let r = run(&env, &env.chain, &cfg, &[input]).await;
    assert_eq!((r.accepted, r.rejected_total()), (3, 0), "{r:#?}");
}

/// A Datanet that lists its submitters: a listed contributor's records land, an unlisted
/// one's are refused by name (`not_a_submitter`, kept in `rejections`), whether pre-signed
/// (in the same run as the listed one's) or signed by `contribute` with the unlisted key.
#[tokio::test]
async fn only_listed_submitters_contribute() {
    let (alice, bob) = (dev_contributor(1), dev_contributor(2));
    let manifest = MANIFEST.replace(
        r#"submitters = "anyone""#,
        &format!(r#"submitters = ["{}"]"#, alice.address()),
    );
    let env = common::env(Start::Manifest(&manifest)).await;
    let (d, id, far) = (env.domain(), env.datanet, u64::MAX / 2);
    let mut cfg = config(&env, None, 4);
    cfg.rules = Rules::new(DatanetManifest::from_toml(&manifest).unwrap()).unwrap();

    let presigned = [
        envelope(&alice, &d, id, good(1), "CC0-1.0", 0, far),
        envelope(&bob, &d, id, good(2), "CC0-1.0", 0, far),
    ]
    .map(|v| v.to_string())
    .join("\n");
    let presigned = write(env.dir.path(), "presigned.jsonl", presigned.as_bytes());
    let report = run(&env, &env.chain, &cfg, &[presigned]).await;
    assert_eq!(report.accepted, 1, "{report:#?}");
    assert_eq!(
        report.rejected,
        BTreeMap::from([("not_a_submitter", 1)]),
        "{report:#?}"
    );

    let plain = write(
        env.dir.path(),
        "plain.jsonl",
        good(3).to_string().as_bytes(),
    );
    cfg.signer = Some(bob.clone());
    let report = run(&env, &env.chain, &cfg, &[plain]).await;
    assert_eq!(report.accepted, 0, "{report:#?}");
    assert_eq!(report.rejected, BTreeMap::from([("not_a_submitter", 1)]));

    assert_eq!(count(&table_rows(&env.lake, names::CONTRIBUTIONS).await), 1);
    let kept = table_rows(&env.lake, names::REJECTIONS).await;
    let codes: Vec<String> = kept
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name("reason_code").unwrap().as_string::<i32>();
            (0..b.num_rows())
                .map(|i| c.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(codes, ["not_a_submitter", "not_a_submitter"]);
}

/// A Datanet whose name has a space (its manifest's key has one, its URI `%20`) loads by
/// name; before, the lake looked for the URI's escaped form and found nothing.
#[tokio::test]
async fn a_datanet_named_with_spaces_loads() {
    let manifest = MANIFEST.replace(r#"name = "recipes""#, r#"name = "Medical QA""#);
    let env = common::env(Start::Manifest(&manifest)).await;
    let loaded = tributary_pipeline::datanet::load(&env.chain, &env.lake, "Medical QA")
        .await
        .unwrap();
    assert_eq!(
        (loaded.id, loaded.manifest.name.as_str()),
        (env.datanet, "Medical QA")
    );
}

/// A name another account holds is left as it is: Alice's `datanet create` of a manifest with
/// that name and other rules is refused before anything is written (before, her manifest
/// replaced the owner's in a shared lake, which then no longer matched the schema hash on
/// chain); with the same rules, appointing a validator the owner removed is the owner's, and
/// she is told so.
#[tokio::test]
async fn a_datanet_name_another_account_holds_is_left_as_it_is() {
    use tributary_pipeline::datanet::{create_from_manifest, load};

    let env = env().await;
    let as_alice = env.as_signer(dev_contributor(2)).await;
    let other = MANIFEST.replace("max_record_bytes = 400", "max_record_bytes = 500");
    let err = create_from_manifest(
        &as_alice,
        &env.lake,
        &DatanetManifest::from_toml(&other).unwrap(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("already exists") && err.contains("other rules"),
        "{err}"
    );
    let kept = load(&env.chain, &env.lake, "recipes").await.unwrap();
    assert_eq!(kept.manifest, DatanetManifest::from_toml(MANIFEST).unwrap());

    let validator = DatanetManifest::from_toml(MANIFEST)
        .unwrap()
        .access
        .validators[0];
    tributary_chain::send(env.chain.datanet_registry().setValidator(
        U256::from(env.datanet),
        validator,
        false,
    ))
    .await
    .unwrap();
    let err = create_from_manifest(
        &as_alice,
        &env.lake,
        &DatanetManifest::from_toml(MANIFEST).unwrap(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("only its owner appoints validators"), "{err}");
}
