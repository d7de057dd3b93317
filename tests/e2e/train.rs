//! `tributary train` against a real anvil and lake: an adapter trained on a snapshot of a
//! Datanet is published with its files; the same job again is a no-op with the same id (same
//! seed and snapshot give the same weights); a child continues from it and a merge has both
//! as parents; bad configs are refused before any work.

use std::path::{Path, PathBuf};

use tributary_trainer::base::{self, Recipe};

use crate::datanets::{Setup, records, setup};

pub(crate) const JOB: &str = r#"
line = "pantry"
datanets = ["kitchen-conversions"]
[lora]
rank = 4
targets = ["q", "v", "up"]
[train]
learning_rate = 0.01
warmup_steps = 5
max_steps = 40
batch_size = 8
seq_len = 32
eval_fraction = 0.15
eval_every = 10
patience = 0
"#;

pub(crate) fn train(s: &Setup, name: &str, toml: &str, out: &Path) -> (bool, String) {
    let config = s.dir().join(format!("{name}.toml"));
    std::fs::write(&config, toml).unwrap();
    let run = s
        .cmd(&[
            "train",
            "--device",
            "cpu",
            &format!("--config={}", config.display()),
            &format!("--out={}", out.display()),
        ])
        .output()
        .unwrap();
    (
        run.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        ),
    )
}

/// The `(adapter id, tx)` of a `adapter LINE@V (ID) … in tx TX` line.
pub(crate) fn published(text: &str, version: &str) -> (String, String) {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("adapter {version} (")))
        .unwrap_or_else(|| panic!("no adapter {version} in:\n{text}"));
    let id = line.split(['(', ')']).nth(1).unwrap().to_string();
    let tx = line
        .split("in tx ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    (id, tx)
}

#[test]
fn adapters_train_publish_continue_and_merge_and_bad_jobs_fail_first() {
    let s = setup();
    let input = records(s.dir(), "in.jsonl", 0, 120);
    assert!(s.contribute(1, &input, 60).status().unwrap().success());
    let out = |n: &str| -> PathBuf { s.dir().join(n) };

    let (ok, text) = train(&s, "first", JOB, &out("a"));
    assert!(ok, "{text}");
    assert!(
        text.contains("base model 0x") && text.contains(" registered"),
        "{text}"
    );
    let (id, tx) = published(&text, "pantry@1.0.0");
    assert!(text.contains("published in tx"), "{text}");
    let loss = text
        .lines()
        .find(|l| l.contains("held-out loss: base"))
        .unwrap();
    let nums: Vec<f64> = loss
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|x| x.parse().ok())
        .collect();
    assert!(nums[1] < 0.7 * nums[0], "{loss}");
    for f in [
        "adapter_model.safetensors",
        "adapter_config.json",
        "manifest.json",
    ] {
        assert!(out("a").join(f).exists(), "{f}");
    }
    let png = std::fs::read(out("a").join("loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out("a").join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["adapter_id"], id.as_str());
    assert_eq!(
        manifest["metrics"]["documents"][0].as_u64().unwrap()
            + manifest["metrics"]["documents"][1].as_u64().unwrap(),
        120
    );
    // The same files are in the lake under the adapter's content address.
    let in_lake = s
        .data
        .join("lake/artifacts/adapters")
        .join(&id)
        .join("adapter_model.safetensors");
    assert_eq!(
        std::fs::read(in_lake).unwrap(),
        std::fs::read(out("a").join("adapter_model.safetensors")).unwrap()
    );

    // The same job again: the same weights, so the same adapter, not a second one.
    let (ok, text) = train(&s, "again", JOB, &out("b"));
    assert!(ok, "{text}");
    assert!(text.contains("was already published"), "{text}");
    assert_eq!(published(&text, "pantry@1.0.0"), (id.clone(), tx));

    // A child continues from it; a merge of both has two parents.
    let child = JOB.replace("[lora]", "parents = [\"pantry@1.0.0\"]\n[lora]");
    let (ok, text) = train(&s, "child", &child, &out("c"));
    assert!(ok, "{text}");
    let (child_id, _) = published(&text, "pantry@1.1.0");
    assert!(text.contains("1 parent(s)"), "{text}");
    let merge = format!(
        "line = \"pantry\"\nmerge_only = true\nparents = [\"{id}\", \"pantry@1.1.0\"]\nmerge_weights = [0.25, 0.75]\n"
    );
    let (ok, text) = train(&s, "merge", &merge, &out("m"));
    assert!(ok, "{text}");
    let (merged, _) = published(&text, "pantry@1.2.0");
    assert!(text.contains("snapshot 0x0000000000000000000000000000000000000000000000000000000000000000, 2 parent(s)"), "{text}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out("m").join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["adapter_id"], merged.as_str());
    assert_eq!(m["parents"][1]["id"], child_id.as_str());
    assert_eq!(m["parents"][1]["weight"], 0.75);

    // Bad jobs: a clear error, and no adapter folder written (nothing was trained).
    let tiny = base::build_cached(&Recipe::tiny(), &base::default_cache(), &mut |_| {}).unwrap();
    let mismatched = s.dir().join("mismatched");
    std::fs::create_dir_all(&mismatched).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny.join(f), mismatched.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tiny.join("config.json")).unwrap()).unwrap();
    cfg["vocab_size"] = 500.into();
    std::fs::write(mismatched.join("config.json"), cfg.to_string()).unwrap();
    let cases = [
        (
            JOB.replace("\"up\"]", "\"upp\"]"),
            "unknown LoRA target module \"upp\"",
        ),
        (
            JOB.replace("rank = 4", "rank = 0"),
            "LoRA rank 0 must be at least 1",
        ),
        (
            JOB.replace(
                "line = \"pantry\"",
                "line = \"pantry\"\nbase_model = \"/no/such/model\"",
            ),
            "/no/such/model/config.json",
        ),
        (
            JOB.replace(
                "datanets = [\"kitchen-conversions\"]",
                "snapshot = \"0x00000000000000000000000000000000000000000000000000000000000000aa\"",
            ),
            "is not committed on this chain",
        ),
        (
            JOB.replace(
                "line = \"pantry\"",
                &format!(
                    "line = \"pantry\"\nbase_model = \"{}\"",
                    mismatched.display()
                ),
            ),
            "the tokenizer has",
        ),
        (
            JOB.replace("[lora]", "parents = [\"pantry@9.9.9\"]\n[lora]"),
            "parent adapter \"pantry@9.9.9\" is not published",
        ),
        (
            JOB.replace("max_steps = 40", "max_stepz = 40"),
            "unknown field `max_stepz`",
        ),
    ];
    for (i, (toml, want)) in cases.iter().enumerate() {
        let dir = out(&format!("bad{i}"));
        let (ok, text) = train(&s, &format!("bad{i}"), toml, &dir);
        assert!(
            !ok && text.contains(want),
            "case {i}: want {want:?} in:\n{text}"
        );
        assert!(!dir.exists(), "case {i} wrote {}", dir.display());
    }

    // Attribution of an answer: top contributions, contributor shares, a span copied from
    // the training data; after a revocation the revoked contribution keeps its score but no
    // share.
    let attribute = |s: &Setup| {
        crate::cli::succeeded(&mut s.cmd(&[
            "attribute",
            "--adapter",
            "pantry@1.0.0",
            "--prompt",
            "question: How many grams are in sample 7 of the pantry list?\nanswer:",
            "--output",
            " Sample 7 weighs 28 grams on the scale number 7.",
            "--top",
            "3",
        ]))
    };
    let text = attribute(&s);
    assert!(text.contains("top 3 of "), "{text}");
    assert!(text.contains("shares by contributor:"), "{text}");
    assert!(
        text.contains("spans of the answer found in the training data"),
        "{text}"
    );
    let first = text
        .lines()
        .find(|l| l.trim_start().starts_with("1  "))
        .unwrap_or_else(|| panic!("{text}"));
    let top = first.split_whitespace().last().unwrap().to_string();
    let revoke = s
        .cmd(&["revoke", &top, "--reason", "withdrawn"])
        .output()
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let text = attribute(&s);
    let line = text
        .lines()
        .find(|l| l.contains(&top))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("(revoked: no share)") && line.contains(" 0.00%"),
        "{line}"
    );

    // The adapters' own attributions (over their held-out sets) are rows in the lake, once
    // each (the rerun above wrote none); the rollups give the revoked contribution no share
    // and the rest sum to 1 per adapter (the merge trained nothing, so it has none); the
    // contributor shares of each adapter sum to 1 or, when no contributor nets positive, 0.
    let run = s
        .cmd(&[
            "sql",
            "--format",
            "csv",
            "SELECT COUNT(DISTINCT adapter_id) AS adapters, \
                    COUNT(*) = COUNT(DISTINCT adapter_id || contribution_id) AS distinct_rows, \
                    ROUND(SUM(share), 9) AS shares, \
                    SUM(CASE WHEN revoked THEN 1 ELSE 0 END) AS revoked, \
                    SUM(CASE WHEN revoked AND share = 0 THEN 1 ELSE 0 END) AS revoked_unpaid, \
                    (SELECT COUNT(*) FROM (SELECT adapter_id, ROUND(SUM(share), 9) AS s \
                       FROM contributor_influence GROUP BY adapter_id) WHERE s NOT IN (0.0, 1.0)) \
                      AS bad_contributor_sums \
             FROM contribution_influence",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let row: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[..3], ["2", "true", "2.0"], "{text}");
    assert!(row[3] != "0" && row[3] == row[4], "{text}");
    // One contributor here: their summed influence is measured against the average
    // contribution (the scores are centred), so their share is 1 or, when it nets out
    // below zero, 0.
    assert_eq!(row[5], "0", "{text}");

    // Every table vacuumed as Spark's VACUUM does (retention 0, files the log does not name
    // included), then every table the index mirrors dropped and rebuilt by a fresh index:
    // nothing a command needs is lost, since artifacts live under their own prefix.
    let adapters = || {
        let run = s
            .cmd(&["sql", "--format", "csv", "SELECT count(*) FROM adapters"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&run.stdout).to_string()
    };
    assert!(s.cmd(&["index"]).status().unwrap().success());
    let before = adapters();
    assert!(!before.contains("\n0"), "{before}");
    let lake = s.lake();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for t in tributary_schemas::tables::names::ALL {
            lake.vacuum(t, 0).await.unwrap();
        }
    });
    for t in tributary_schemas::tables::names::MIRRORED {
        let folder = s.data.join("lake").join(t);
        if folder.exists() {
            std::fs::remove_dir_all(folder).unwrap();
        }
    }
    let fresh = format!("sqlite://{}", s.dir().join("fresh.db").display());
    let reindex = s.cmd(&["index", "--store", &fresh]).output().unwrap();
    assert!(
        reindex.status.success(),
        "{}",
        String::from_utf8_lossy(&reindex.stderr)
    );
    assert_eq!(adapters(), before, "the adapters table rebuilt");
    let text = attribute(&s);
    assert!(text.contains("top 3 of "), "{text}");
}
