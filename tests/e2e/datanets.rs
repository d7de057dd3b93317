//! Datanets through the CLI: create, contribute, verify, revoke, against an anvil the test
//! runs (so processes can be killed without taking the chain with them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use tributary_chain::anvil::{AnvilOptions, LocalAnvil};
use tributary_chain::{Chain, ChainConfig};
use tributary_lake::Lake;
use tributary_schemas::tables::names;

use crate::cli::tributary;
use crate::s3::Moto;

const MANIFEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/kitchen-conversions.toml"
);

pub(crate) struct Setup {
    anvil: LocalAnvil,
    pub(crate) data: PathBuf,
    /// The lake on an S3 server (`--lake s3://…`) instead of in the data directory.
    s3: Option<(Moto, String)>,
    _dir: tempfile::TempDir,
}

pub(crate) fn setup() -> Setup {
    setup_with(None)
}

pub(crate) fn setup_with(s3: Option<(Moto, String)>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let anvil = LocalAnvil::start(&AnvilOptions::default()).unwrap();
    let data = dir.path().join("data");
    let s = Setup {
        anvil,
        data,
        s3,
        _dir: dir,
    };
    let out = s.cmd(&["datanet", "create", MANIFEST]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kitchen-conversions (cooking) has id 1")
    );
    s
}

impl Setup {
    pub(crate) fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The chain's JSON-RPC URL (HTTP).
    pub(crate) fn rpc_url(&self) -> &url::Url {
        self.anvil.url()
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = tributary();
        c.args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--rpc-url")
            .arg(self.anvil.url().as_str());
        if let Some((moto, root)) = &self.s3 {
            c.arg("--lake").arg(root).envs(moto.env());
        }
        c
    }

    pub(crate) fn lake(&self) -> Lake {
        match &self.s3 {
            Some((moto, root)) => Lake::open_with(root, moto.options()).unwrap(),
            None => Lake::open(self.data.join("lake").to_str().unwrap()).unwrap(),
        }
    }

    pub(crate) fn contribute(
        &self,
        key: usize,
        input: &Path,
        batch: usize,
    ) -> std::process::Command {
        let mut c = self.cmd(&[
            "contribute",
            "--datanet",
            "kitchen-conversions",
            "--batch-size",
            &batch.to_string(),
        ]);
        c.arg("--key").arg(dev_key(key)).arg(input);
        c
    }
}

pub(crate) fn dev_key(i: usize) -> String {
    alloy::primitives::keccak256(format!("tributary-dev-contributor-{i}")).to_string()
}

/// The one row `query` returns through `tributary sql`, as strings.
fn sql_row(s: &Setup, query: &str) -> Vec<String> {
    let out = s.cmd(&["sql", "--format", "csv", query]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("{query}: no row in {text}"));
    line.split(',').map(str::to_string).collect()
}

/// Revokes contribution `id` the way a wallet user does: a transaction signed here with the
/// contributor's key (dev key `key`) and sent raw to the registry at the address in the
/// deployment record. No `tributary` command is involved; the proof is what `verify` prints.
pub(crate) async fn revoke_from_wallet(s: &Setup, key: usize, id: &str, reason: &str) {
    use alloy::eips::eip2718::Encodable2718;
    use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
    use alloy::primitives::{B256, U256};
    use alloy::providers::{Provider, ProviderBuilder};
    use alloy::rpc::types::TransactionRequest;
    use alloy::signers::local::PrivateKeySigner;
    use alloy::sol_types::SolCall;
    use tributary_chain::bindings::DatanetRegistry;

    let r = sql_row(
        s,
        &format!(
            "SELECT datanet_id, contributor, content_hash, license, timestamp, nonce, deadline, \
             batch_id FROM contributions WHERE contribution_id = '{id}'"
        ),
    );
    let verify = s.cmd(&["verify", id]).output().unwrap();
    let proof: Vec<B256> = String::from_utf8_lossy(&verify.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("    0x"))
        .map(|h| format!("0x{h}").parse().unwrap())
        .collect();
    let int = |i: usize| r[i].parse::<i64>().unwrap() as u64;
    let call = DatanetRegistry::revokeContributionCall {
        batchId: r[7].parse().unwrap(),
        c: DatanetRegistry::Contribution {
            datanetId: U256::from(int(0)),
            contributor: r[1].parse().unwrap(),
            contentHash: r[2].parse().unwrap(),
            license: r[3].clone(),
            timestamp: int(4),
            nonce: int(5),
            deadline: int(6),
        },
        proof,
        reason: reason.into(),
    };
    let deployment: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.data.join("deployment.json")).unwrap()).unwrap();
    let registry: alloy::primitives::Address = deployment["datanet_registry"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let key: PrivateKeySigner = dev_key(key).parse().unwrap();
    let from = key.address();
    let provider = ProviderBuilder::new().connect_http(s.rpc_url().clone());
    // The contributor pays their own gas (anvil gives them some first).
    let _: serde_json::Value = provider
        .raw_request(
            "anvil_setBalance".into(),
            (from, U256::from(10u128.pow(20))),
        )
        .await
        .unwrap();
    let fee = provider.get_gas_price().await.unwrap();
    let tx = TransactionRequest::default()
        .with_from(from)
        .with_to(registry)
        .with_input(call.abi_encode())
        .with_chain_id(provider.get_chain_id().await.unwrap())
        .with_nonce(provider.get_transaction_count(from).await.unwrap())
        .with_gas_limit(300_000)
        .with_max_fee_per_gas(fee * 2)
        .with_max_priority_fee_per_gas(fee);
    let signed = tx.build(&EthereumWallet::from(key)).await.unwrap();
    let receipt = provider
        .send_raw_transaction(&signed.encoded_2718())
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(
        receipt.status(),
        "the wallet's revocation reverted: {receipt:?}"
    );
}

/// `n` distinct valid records, numbered from `from`.
pub(crate) fn records(dir: &Path, name: &str, from: usize, n: usize) -> PathBuf {
    let lines: Vec<String> = (from..from + n)
        .map(|i| {
            serde_json::json!({
                "question": format!("How many grams are in sample {i} of the pantry list?"),
                "answer": format!("Sample {i} weighs {} grams on the scale number {}.", i * 3 + 7, i % 97),
            })
            .to_string()
        })
        .collect();
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n")).unwrap();
    p
}

/// Contribution ids in the lake, counted, and the batches table's batch ids, counted.
async fn lake_state(
    s: &Setup,
) -> (
    BTreeMap<String, usize>,
    BTreeMap<String, usize>,
    BTreeSet<String>,
) {
    use arrow::array::AsArray;
    let lake = s.lake();
    let mut ids = BTreeMap::new();
    let mut committed = BTreeSet::new();
    for b in lake.read(names::CONTRIBUTIONS, None).await.unwrap() {
        let c = b
            .column_by_name("contribution_id")
            .unwrap()
            .as_string::<i32>();
        let batch = b.column_by_name("batch_id").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            *ids.entry(c.value(i).to_string()).or_insert(0) += 1;
            committed.insert(batch.value(i).to_string());
        }
    }
    let mut batches = BTreeMap::new();
    for b in lake.read(names::BATCHES, None).await.unwrap() {
        let c = b.column_by_name("batch_id").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            *batches.entry(c.value(i).to_string()).or_insert(0) += 1;
        }
    }
    (ids, batches, committed)
}

/// Every committed batch is recorded once and anchored on chain once, with its own count.
async fn assert_each_batch_anchored_once(s: &Setup, expected_records: usize) {
    let (ids, batches, committed) = lake_state(s).await;
    assert_eq!(ids.len(), expected_records, "every record committed");
    assert!(ids.values().all(|n| *n == 1), "no contribution twice");
    assert!(batches.values().all(|n| *n == 1), "no batch recorded twice");
    assert_eq!(
        batches.keys().cloned().collect::<BTreeSet<_>>(),
        committed,
        "every committed batch anchored"
    );
    let chain = Chain::connect(ChainConfig::rpc(s.anvil.url().clone(), &s.data))
        .await
        .unwrap();
    let events = chain
        .datanet_registry()
        .BatchAnchored_filter()
        .from_block(chain.deployment().start_block)
        .query()
        .await
        .unwrap();
    let mut per_batch = BTreeMap::new();
    for (e, _) in &events {
        *per_batch.entry(e.batchId.to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        per_batch.keys().cloned().collect::<BTreeSet<_>>(),
        committed
    );
    assert!(per_batch.values().all(|n| *n == 1), "anchored once each");
    let total: u64 = events.iter().map(|(e, _)| e.count.to::<u64>()).sum();
    assert_eq!(total as usize, expected_records);
}

#[tokio::test]
async fn contribute_verify_and_revoke_through_the_cli() {
    let s = setup();
    let input = records(s._dir.path(), "in.jsonl", 0, 12);
    let out = s
        .contribute(1, &input, 5)
        .args(["--log", "info", "--log-format", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let logs = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{text}{logs}");
    // The log follows the run through its stages: each batch's line sits in its spans.
    let anchored: Vec<Vec<String>> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "batch anchored")
        .map(|v| {
            let spans = v["spans"].as_array().cloned().unwrap_or_default();
            spans.iter().map(|s| s["name"].to_string()).collect()
        })
        .collect();
    assert_eq!(anchored.len(), 3, "{logs}");
    for spans in anchored {
        assert_eq!(spans, ["\"contribute\"", "\"ingest_batch\""], "{logs}");
    }
    assert!(
        text.contains("12 records read: 12 accepted, 0 already present, 0 rejected"),
        "{text}"
    );
    assert_eq!(
        text.matches("anchored in tx").count(),
        3,
        "batches of 5, 5, 2"
    );

    let again = s.contribute(1, &input, 5).output().unwrap();
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .contains("12 records read: 0 accepted, 12 already present, 0 rejected")
    );

    let (ids, _, _) = lake_state(&s).await;
    let id = ids.keys().next().unwrap().clone();
    let out = s.cmd(&["verify", &id]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("VERIFIED: the lake's copy is what its contributor signed")
            && text.contains("anchored in  tx 0x"),
        "{text}"
    );

    // Exit 1 with the reason for what does not verify, 2 for what could not be checked.
    let forged = format!("0x{}", "ab".repeat(32));
    let out = s.cmd(&["verify", &forged]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT VERIFIED"));
    let out = s.cmd(&["verify", "0x12"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("64 hex digits"));
    let out = s
        .cmd(&["verify", &id, "--rpc-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unreachable chain is an error"
    );

    // A manifest altered in the lake (another entry's id replaced): the proof it gives no
    // longer leads to the root on chain. Restored afterwards.
    let third = ids.keys().nth(2).unwrap().clone();
    let manifest = tampered_manifest(&s, &third);
    let out = s.cmd(&["verify", &third]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("NOT VERIFIED: wrong proof"), "{text}");
    std::fs::write(&manifest.0, &manifest.1).unwrap();
    let out = s.cmd(&["verify", &third]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));

    let out = s
        .cmd(&["revoke", &id, "--reason", "license withdrawn"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.cmd(&["verify", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT VERIFIED: revoked"));

    // The contributor of another withdraws it from their wallet, without Tributary.
    let second = ids.keys().nth(1).unwrap().clone();
    revoke_from_wallet(&s, 1, &second, "changed my mind").await;
    let out = s.cmd(&["verify", &second]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));

    // A snapshot freezes the 10 contributions still counting (both revocations count);
    // taking it again is a no-op.
    let snap = |extra: &[&str]| {
        let mut args = vec!["snapshot", "--datanet", "kitchen-conversions"];
        args.extend_from_slice(extra);
        s.cmd(&args).output().unwrap()
    };
    let out = snap(&[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(" committed in tx 0x") && text.contains(": 10 contributions"),
        "{text}"
    );
    let again = snap(&[]);
    let again = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(again.contains("was already committed"), "{again}");
    assert_eq!(
        text.split(' ').nth(1),
        again.split(' ').nth(1),
        "the same snapshot id"
    );
    let out = snap(&["--at-version", "999"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--at-version 999"),
        "{err}"
    );
}

/// Replaces another entry's id in the manifest of `id`'s batch; returns (path, original bytes).
fn tampered_manifest(s: &Setup, id: &str) -> (PathBuf, Vec<u8>) {
    let batch = &sql_row(
        s,
        &format!("SELECT batch_id FROM contributions WHERE contribution_id = '{id}'"),
    )[0];
    let path = s.data.join(format!("lake/manifests/batches/{batch}.json"));
    let original = std::fs::read(&path).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let entries = m["contributions"].as_array_mut().unwrap();
    let other = entries.iter_mut().find(|e| e["id"] != id).unwrap();
    other["id"] = format!("0x{}", "cd".repeat(32)).into();
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    (path, original)
}

#[tokio::test]
async fn bad_input_files_are_clear_errors_with_nothing_written() {
    let s = setup();
    let out = s
        .cmd(&[
            "contribute",
            "--datanet",
            "nope",
            "--key",
            &dev_key(1),
            MANIFEST,
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Datanet named \"nope\""));
    let missing = s.data.join("missing.jsonl");
    let out = s.contribute(1, &missing, 10).output().unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("does not exist")
    );
    let out = s
        .cmd(&["datanet", "create", "/nonexistent/manifest.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the manifest"));
    let (ids, _, _) = lake_state(&s).await;
    assert!(ids.is_empty());
}

/// Kill -9 at random moments, 20 times, then finish: every record committed and anchored
/// exactly once.
#[tokio::test]
async fn killed_contributors_resume_without_loss_or_duplicates() {
    let s = setup();
    let n = 240;
    let input = records(s._dir.path(), "big.jsonl", 0, n);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed {seed}");
    for _ in 0..20 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis(150 + (seed >> 33) % 1500);
        let mut child = s
            .contribute(1, &input, 4)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    let out = s.contribute(1, &input, 4).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_each_batch_anchored_once(&s, n).await;
}

/// Four processes contributing to one Datanet at once, all anchoring from the same key.
#[tokio::test]
async fn four_concurrent_contributors_lose_nothing_and_duplicate_nothing() {
    let s = setup();
    let per = 40;
    let children: Vec<Child> = (0..4)
        .map(|k| {
            let input = records(s._dir.path(), &format!("in{k}.jsonl"), k * per, per);
            s.contribute(k + 1, &input, 7)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_each_batch_anchored_once(&s, 4 * per).await;
}

/// The same commands with the lake on an S3-compatible server: two processes commit to the
/// same tables at once, a re-run adds nothing, a contribution verifies and is revoked.
#[tokio::test]
async fn the_lake_on_s3_takes_two_writers_at_once() {
    let moto = Moto::start("tributary");
    let s = setup_with(Some((moto, "s3://tributary/lake".to_string())));
    let per = 60;
    let inputs: Vec<PathBuf> = (0..2)
        .map(|k| records(s._dir.path(), &format!("in{k}.jsonl"), k * per, per))
        .collect();
    let children: Vec<Child> = inputs
        .iter()
        .enumerate()
        .map(|(k, input)| {
            s.contribute(k + 1, input, 15)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_each_batch_anchored_once(&s, 2 * per).await;
    assert!(
        !s.data.join("lake").exists(),
        "nothing written to the local disk"
    );

    let again = s.contribute(1, &inputs[0], 15).output().unwrap();
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains(&format!(
            "{per} records read: 0 accepted, {per} already present"
        )),
        "{text}"
    );

    let (ids, _, _) = lake_state(&s).await;
    let id = ids.keys().next().unwrap().clone();
    let out = s.cmd(&["verify", &id]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = s
        .cmd(&["revoke", &id, "--reason", "license withdrawn"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.cmd(&["verify", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT VERIFIED: revoked"));
    let revocations = s.lake().read(names::REVOCATIONS, None).await.unwrap();
    assert_eq!(revocations.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    // SQL reads the same lake on S3 (each table's commit file checked as it is read).
    assert_eq!(
        sql_row(
            &s,
            "SELECT COUNT(*) AS n, (SELECT COUNT(*) FROM revoked_contributions) AS r FROM contributions"
        ),
        [(2 * per).to_string(), "1".to_string()]
    );
    // A create-only put (what settling an epoch writes its manifest with) refuses to
    // overwrite on this server too.
    let lake = s.lake();
    assert!(lake.put_new("probe/once", b"first".to_vec()).await.unwrap());
    assert!(
        !lake
            .put_new("probe/once", b"second".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(lake.get("probe/once").await.unwrap(), b"first");
}

#[tokio::test]
async fn sql_reads_the_lake_and_refuses_writes() {
    let s = setup();
    let input = records(s.dir(), "a.jsonl", 0, 6);
    assert!(s.contribute(1, &input, 3).status().unwrap().success());
    let out = s
        .cmd(&[
            "sql",
            "--format",
            "csv",
            r#"SELECT (SELECT COUNT(*) FROM contributions) AS now, (SELECT COUNT(*) FROM "contributions@v1") AS first_batch, (SELECT SUM(contributions) FROM contributor_leaderboard) AS board"#,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "now,first_batch,board\n6,3,6\n"
    );

    let out = s
        .cmd(&["sql", "DROP VIEW contributor_leaderboard"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only queries are allowed"), "{err}");
}
