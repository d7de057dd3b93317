//! Ingest benchmark (`make bench`): records of about 200 bytes of text through Tributary's
//! paths, side by side in one run with the references of issue 3.
//!
//! (a) write path: `ingest::commit_keyed` of verified contributions (Arrow rows, idempotent Delta
//!     commit, manifest, Merkle root, anchor transaction, `batches` row) vs a bare deltalake
//!     write of the same Arrow batches;
//! (b) signed path: `contribute` over pre-signed JSON Lines (read, parse, EIP-712 verification,
//!     manifest rules, nonce/deadline/duplicate checks, write, anchor) vs signature recovery
//!     alone on every core, with k256 (alloy's default) and with libsecp256k1.
//! (c) memory: peak RSS of a `contribute` process adding 10,000 records to the Datanet of (b)
//!     (holding all its records) vs the same into an empty Datanet in an empty lake (issue 19:
//!     at most 1.5x). Each runs in a child process of this binary, which reports its own
//!     high-water mark (`VmHWM`).
//!
//! `TRIBUTARY_BENCH_RECORDS` sets the record count (default 1,000,000).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use alloy::primitives::B256;
use tributary_chain::keys::dev_contributor;
use tributary_chain::{Chain, ChainConfig};
use tributary_lake::Lake;
use tributary_pipeline::contribute::{ContributeConfig, WINDOW, contribute};
use tributary_pipeline::rules::Rules;
use tributary_pipeline::sign::{Signed, Terms, sign};
use tributary_pipeline::{datanet, ingest};
use tributary_schemas::contribution::domain;
use tributary_schemas::datanet::DatanetManifest;
use tributary_schemas::manifest::BatchManifest;

const BATCH: usize = 100_000;
const MANIFEST: &str = r#"
name = "NAME"
domain = "bench"
licenses = ["CC0-1.0"]
[fields.text]
type = "text"
required = true
max_length = 1000
[dedup]
exact = true
"#;

const WORDS: &[&str] = &[
    "flour", "sugar", "grams", "cups", "butter", "oven", "bake", "minutes", "water", "salt",
    "dough", "knead", "yeast", "honey", "whisk", "bowl", "spoon", "heat", "cool", "slice", "bread",
    "cake", "milk", "cream",
];

/// About 200 bytes of deterministic text, distinct per `i`.
fn text(i: usize) -> String {
    let mut s = format!("record {i}:");
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while s.len() < 190 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(' ');
        s.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    s
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Signs records `range` for `datanet` on all cores (not timed: the contributors' work).
fn sign_all(
    range: std::ops::Range<usize>,
    datanet: u64,
    d: &alloy::sol_types::Eip712Domain,
) -> Vec<Signed> {
    let keys: Vec<_> = (0..16).map(dev_contributor).collect();
    let per = range.len().div_ceil(threads());
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads())
            .map(|t| {
                let keys = &keys;
                s.spawn(move || {
                    (range.start + t * per..(range.start + (t + 1) * per).min(range.end))
                        .map(|i| {
                            let terms = Terms {
                                datanet_id: datanet,
                                license: "CC0-1.0".into(),
                                timestamp: 1,
                                nonce: (i / keys.len()) as u64,
                                deadline: u64::MAX / 2,
                            };
                            sign(
                                &keys[i % keys.len()],
                                d,
                                &terms,
                                serde_json::json!({ "text": text(i) }),
                            )
                            .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap()).collect()
    })
}

async fn create(chain: &Chain, lake: &Lake, name: &str) -> (u64, DatanetManifest) {
    let m = DatanetManifest::from_toml(&MANIFEST.replace("NAME", name)).unwrap();
    (
        datanet::create_from_manifest(chain, lake, &m)
            .await
            .unwrap(),
        m,
    )
}

/// Writes `signed` as pre-signed JSON Lines envelopes at `path`.
fn write_envelopes(path: &std::path::Path, signed: &[Signed]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for s in signed {
        writeln!(f, "{}", s.envelope()).unwrap();
    }
}

/// What (c) runs in a child process: one `contribute` as the CLI runs it (batches and window
/// at their defaults), then its peak RSS, as JSON on stdout.
async fn child(spec: &str) {
    tributary_lake::return_large_frees(); // as the CLI's main does
    let v: serde_json::Value = serde_json::from_str(spec).unwrap();
    let text = |k: &str| v[k].as_str().unwrap().to_string();
    let url = text("rpc").parse().unwrap();
    let chain = Chain::connect(ChainConfig::rpc(url, text("dir")))
        .await
        .unwrap();
    let lake = Lake::open(&text("lake")).unwrap();
    let manifest = DatanetManifest::from_toml(&text("manifest")).unwrap();
    let config = ContributeConfig {
        datanet_id: v["datanet"].as_u64().unwrap(),
        rules: Rules::new(manifest).unwrap(),
        signer: None,
        license: None,
        batch_size: 10_000,
        validity_secs: 0,
        window: WINDOW,
    };
    let t = Instant::now();
    let report = contribute(&chain, &lake, &config, &[text("input").into()], &|_| {})
        .await
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let out = serde_json::json!({"accepted": report.accepted, "secs": secs, "peak_rss_kib": kib});
    println!("{out}");
}

/// Runs [`child`] in a fresh process of this binary: (records accepted, seconds, peak RSS MiB).
fn in_child(spec: serde_json::Value) -> (u64, f64, f64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("TRIBUTARY_BENCH_CHILD", spec.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the child contribute failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["accepted"].as_u64().unwrap(),
        v["secs"].as_f64().unwrap(),
        v["peak_rss_kib"].as_f64().unwrap() / 1024.0,
    )
}

fn rate(n: usize, secs: f64) -> String {
    format!("{:.0}", n as f64 / secs)
}

#[tokio::main]
async fn main() {
    if let Ok(spec) = std::env::var("TRIBUTARY_BENCH_CHILD") {
        return child(&spec).await;
    }
    let n: usize = std::env::var("TRIBUTARY_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(
            if std::env::var("TRIBUTARY_BENCH_SMOKE").is_ok_and(|v| v == "1") {
                2_000
            } else {
                1_000_000
            },
        );
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::connect(ChainConfig::embedded(dir.path()))
        .await
        .unwrap();
    let d = domain(chain.chain_id(), chain.deployment().datanet_registry);
    eprintln!(
        "bench: {n} records of ~200 bytes, batches of {BATCH}, {} threads",
        threads()
    );

    // (a) write path vs bare deltalake
    let lake_a = Lake::open(dir.path().join("lake-a").to_str().unwrap()).unwrap();
    let (id_a, _) = create(&chain, &lake_a, "bench-write").await;
    let t = Instant::now();
    let signed = sign_all(0..n, id_a, &d);
    eprintln!(
        "bench: signed {n} in {:.1} s (not timed)",
        t.elapsed().as_secs_f64()
    );
    // Both sides start from the same contributions with their ids (computed while verifying, in
    // `contribute`); the reference gets ready Arrow batches, ours builds them.
    let chunks: Vec<Vec<(B256, Signed)>> = signed
        .chunks(BATCH)
        .map(|c| c.iter().map(|s| (s.contribution.id(), s.clone())).collect())
        .collect();
    let batches: Vec<_> = chunks
        .iter()
        .map(|keyed| {
            let ids: Vec<B256> = keyed.iter().map(|(id, _)| *id).collect();
            ingest::contribution_rows(id_a, BatchManifest::batch_id_of(id_a, &ids), keyed).unwrap()
        })
        .collect();

    let bare_dir = dir.path().join("bare");
    std::fs::create_dir_all(&bare_dir).unwrap();
    let bare_url = url::Url::from_directory_path(&bare_dir).unwrap();
    let t = Instant::now();
    for b in &batches {
        let table = deltalake::DeltaTable::try_from_url(bare_url.clone())
            .await
            .unwrap();
        table
            .write(vec![b.clone()])
            .with_save_mode(deltalake::protocol::SaveMode::Append)
            .with_partition_columns(["datanet_id"])
            .await
            .unwrap();
    }
    let bare = t.elapsed().as_secs_f64();

    let t = Instant::now();
    for c in chunks {
        ingest::commit_keyed(&chain, &lake_a, id_a, c)
            .await
            .unwrap();
    }
    let ours_a = t.elapsed().as_secs_f64();

    // (b) signed path vs signature recovery alone on all cores
    let lake_b = Lake::open(dir.path().join("lake-b").to_str().unwrap()).unwrap();
    let (id_b, manifest_b) = create(&chain, &lake_b, "bench-signed").await;
    let signed_b = sign_all(0..n, id_b, &d);
    let input = dir.path().join("signed.jsonl");
    write_envelopes(&input, &signed_b);
    let prehashes: Arc<Vec<(B256, alloy::primitives::Signature)>> = Arc::new(
        signed_b
            .iter()
            .map(|s| (s.contribution.signing_hash(&d), s.signature))
            .collect(),
    );
    drop(signed_b);

    let recover_k256 = timed_parallel(&prehashes, |(h, sig)| {
        sig.recover_address_from_prehash(h).unwrap();
    });
    let secp = secp256k1::Secp256k1::verification_only();
    let recover_secp = timed_parallel(&prehashes, |(h, sig)| {
        let id = secp256k1::ecdsa::RecoveryId::try_from(sig.v() as i32).unwrap();
        let mut rs = [0u8; 64];
        rs[..32].copy_from_slice(&sig.r().to_be_bytes::<32>());
        rs[32..].copy_from_slice(&sig.s().to_be_bytes::<32>());
        let rec = secp256k1::ecdsa::RecoverableSignature::from_compact(&rs, id).unwrap();
        secp.recover_ecdsa(secp256k1::Message::from_digest(h.0), &rec)
            .unwrap();
    });

    let config = ContributeConfig {
        datanet_id: id_b,
        rules: Rules::new(manifest_b).unwrap(),
        signer: None,
        license: None,
        batch_size: BATCH,
        validity_secs: 0,
        window: WINDOW,
    };
    let t = Instant::now();
    let report = contribute(&chain, &lake_b, &config, &[input], &|_| {})
        .await
        .unwrap();
    let ours_b = t.elapsed().as_secs_f64();
    assert_eq!(report.accepted as usize, n, "{report:?}");

    // (c) peak RSS: 10,000 more records into (b)'s Datanet vs into an empty one.
    const MORE: usize = 10_000;
    let lake_c = Lake::open(dir.path().join("lake-c").to_str().unwrap()).unwrap();
    let (id_c, _) = create(&chain, &lake_c, "bench-empty").await;
    let mut rss = Vec::new();
    for (id, lake, datanet, name) in [
        (id_c, "lake-c", "bench-empty", "empty"),
        (id_b, "lake-b", "bench-signed", "full"),
    ] {
        let input = dir.path().join(format!("more-{name}.jsonl"));
        write_envelopes(&input, &sign_all(n..n + MORE, id, &d));
        let (accepted, secs, mib) = in_child(serde_json::json!({
            "rpc": chain.url().to_string(),
            "dir": dir.path(),
            "lake": dir.path().join(lake),
            "manifest": MANIFEST.replace("NAME", datanet),
            "datanet": id,
            "input": input,
        }));
        assert_eq!(accepted as usize, MORE);
        eprintln!("bench: (c) {MORE} into the {name} Datanet: {secs:.1} s, peak RSS {mib:.0} MiB");
        rss.push((secs, mib));
    }

    println!("| path | records/s | reference | records/s | ratio |");
    println!("|---|---|---|---|---|");
    println!(
        "| (a) write: `ingest::commit_keyed` (Arrow rows + Delta + manifest + anchor) | {} | bare deltalake write, same Arrow batches | {} | {:.2}x |",
        rate(n, ours_a),
        rate(n, bare),
        bare / ours_a
    );
    println!(
        "| (b) signed: `contribute` (read + verify + validate + write + anchor) | {} | recovery alone, libsecp256k1, {} threads | {} | {:.2}x |",
        rate(n, ours_b),
        threads(),
        rate(n, recover_secp),
        recover_secp / ours_b
    );
    println!(
        "| (b) signed, same | {} | recovery alone, k256, {} threads | {} | {:.2}x |",
        rate(n, ours_b),
        threads(),
        rate(n, recover_k256),
        recover_k256 / ours_b
    );
    let ((empty_s, empty_mib), (full_s, full_mib)) = (rss[0], rss[1]);
    println!();
    println!(
        "| (c) `contribute` of {MORE} records | peak RSS MiB | seconds | into an empty Datanet: MiB | seconds | RSS ratio |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| into the Datanet of (b), {n} records | {full_mib:.0} | {full_s:.1} | {empty_mib:.0} | {empty_s:.1} | {:.2}x |",
        full_mib / empty_mib
    );
}

/// Seconds to run `f` over `items` split across every core.
fn timed_parallel<T: Sync>(items: &Arc<Vec<T>>, f: impl Fn(&T) + Sync) -> f64 {
    let per = items.len().div_ceil(threads());
    let t = Instant::now();
    std::thread::scope(|s| {
        for part in items.chunks(per) {
            let f = &f;
            s.spawn(move || part.iter().for_each(f));
        }
    });
    t.elapsed().as_secs_f64()
}
