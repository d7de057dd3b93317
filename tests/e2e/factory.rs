//! The ModelFactory end to end, through `tributary serve` (API, indexer and scheduler in one
//! process): the GraphQL mutations refuse callers without the server's API token, specs that do
//! not check, and jobs whose snapshot holds licenses their use does not allow; then, in
//! headless Chromium, a person fills the form, previews the snapshot and starts the job with
//! the token; the server's scheduler worker trains it, its training loss is readable while it
//! trains, the page follows the run to `published`, and the indexer brings the adapter into
//! the lineage graph, trained on the Datanet the form named.

use std::time::Duration;

use serde_json::{Value, json};
use tributary_trainer::base::{self, Recipe};

use crate::datanets::{dev_key, records, setup};
use crate::demo::browse_with;
use crate::jobs::start;
use crate::wait;

/// A research-only Datanet: its contributions carry a non-commercial license.
const RESEARCH_DATANET: &str = r#"
name = "pantry-research"
domain = "cooking"
description = "Pantry weights for research only."
licenses = ["CC-BY-NC-4.0"]

[fields.question]
type = "text"
required = true

[fields.answer]
type = "text"
required = true

[access]
submitters = "anyone"
validators = []
"#;

/// A small job spec (the body of a `[[jobs]]` table).
fn spec(name: &str, datanet: &str, usage: &str) -> String {
    format!(
        r#"name = "{name}"
line = "{name}-line"
cron = "0 0 3 * * *"
datanets = ["{datanet}"]
use = "{usage}"
[lora]
rank = 4
targets = ["q", "v"]
[train]
max_steps = 20
batch_size = 8
seq_len = 32
eval_every = 5
"#
    )
}

/// GraphQL `query` with `variables` to the server at `base`, with `token` as bearer if given.
async fn gql(base: &str, query: &str, variables: Value, token: Option<&str>) -> Value {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// The first error message of a GraphQL answer (fails when there is none).
fn error(v: &Value) -> &str {
    v["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {v}"))
}

const CREATE: &str =
    "mutation($s: String!) { createJob(spec: $s, start: true) { name createdBy requested } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_made_in_the_model_factory_trains_live_and_publishes() {
    let s = setup();
    // The kitchen Datanet: 40 contributions (its first license, CC-BY-4.0) from 2 people.
    for (key, from, file) in [(0, 0, "a.jsonl"), (1, 20, "b.jsonl")] {
        let input = records(s.dir(), file, from, 20);
        assert!(s.contribute(key, &input, 20).status().unwrap().success());
    }
    let manifest = s.dir().join("research.toml");
    std::fs::write(&manifest, RESEARCH_DATANET).unwrap();
    let out = s
        .cmd(&["datanet", "create", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let input = records(s.dir(), "c.jsonl", 100, 12);
    let mut contribute = s.cmd(&["contribute", "--datanet", "pantry-research"]);
    contribute.arg("--key").arg(dev_key(2)).arg(&input);
    assert!(contribute.status().unwrap().success());

    let w = start(s.cmd(&[
        "serve",
        "--only",
        "api,indexer,scheduler",
        "--listen",
        "127.0.0.1:0",
        "--pg-listen",
        "127.0.0.1:0",
        "--device",
        "cpu",
        "--log",
        "warn,tributary_models=info",
    ]));
    assert!(
        w.banner.iter().any(|l| l.starts_with("ModelFactory (")),
        "{:?}",
        w.banner
    );
    w.wait_ready(&reqwest::Client::new()).await;
    let base = w.base();
    let token = std::fs::read_to_string(s.data.join("api-token")).unwrap();
    let token = token.trim();
    let fingerprint = format!(
        "token:{}",
        &alloy::hex::encode(alloy::primitives::keccak256(token.as_bytes()))[..8]
    );

    // Writes need the server's token; nothing is stored without it.
    let kitchen = json!({ "s": spec("nope", "kitchen-conversions", "commercial") });
    let r = gql(&base, CREATE, kitchen.clone(), None).await;
    assert!(error(&r).contains("need the server's API token"), "{r}");
    let r = gql(&base, CREATE, kitchen, Some("not-the-token")).await;
    assert!(error(&r).contains("not this server's"), "{r}");
    // A spec that does not check is refused with the reason.
    let bad = spec("bad-cron", "kitchen-conversions", "commercial").replace("0 0 3 * * *", "daily");
    let r = gql(&base, CREATE, json!({ "s": bad }), Some(token)).await;
    assert!(error(&r).contains("cron \"daily\" is not valid"), "{r}");
    // A job made through the API says what it is for, names no path as its base model, and
    // has a name and line that are plain folder names.
    let kitchen = spec("k", "kitchen-conversions", "commercial");
    for (bad, why) in [
        (
            kitchen.replace("use = \"commercial\"\n", ""),
            "say what its adapters are for",
        ),
        (
            kitchen.replace("cron =", "base_model = \"/etc\"\ncron ="),
            "base_model \"/etc\": give \"tiny\"",
        ),
        (
            kitchen.replace("name = \"k\"", "name = \"../k\""),
            "must be letters, digits",
        ),
        (
            kitchen.replace("line = \"k-line\"", "line = \"/tmp/x\""),
            "line \"/tmp/x\" must be",
        ),
    ] {
        let r = gql(&base, CREATE, json!({ "s": bad }), Some(token)).await;
        assert!(error(&r).contains(why), "{why}: {r}");
    }
    // Research-only data: the preview says a commercial job may not use it, and one is refused.
    let preview = "query($u: String) { snapshotPreview(datanets: [\"pantry-research\"], use: $u) { \
        contributions contributors allowed refusal licenses { license contributions allowed } } }";
    let r = gql(&base, preview, json!({ "u": "commercial" }), None).await;
    let p = &r["data"]["snapshotPreview"];
    assert_eq!(
        (&p["contributions"], &p["contributors"]),
        (&json!(12), &json!(1)),
        "{r}"
    );
    assert_eq!(p["allowed"], false, "{r}");
    assert_eq!(
        p["licenses"],
        json!([{ "license": "CC-BY-NC-4.0", "contributions": 12, "allowed": false }])
    );
    assert!(
        p["refusal"].as_str().unwrap().contains("non-commercial"),
        "{r}"
    );
    let nc = json!({ "s": spec("nc", "pantry-research", "commercial") });
    let r = gql(&base, CREATE, nc, Some(token)).await;
    assert!(error(&r).contains("non-commercial use only"), "{r}");
    let r = gql(&base, preview, json!({ "u": "research" }), None).await;
    assert_eq!(r["data"]["snapshotPreview"]["allowed"], true, "{r}");
    let r = gql(&base, "{ jobs { name } }", json!({}), None).await;
    assert_eq!(r["data"]["jobs"], json!([]), "nothing was stored: {r}");

    // The form's preview of what the job would train on: the kitchen Datanet's 40
    // contributions by 2 contributors, all under licenses commercial use allows.
    let page = browse_with(
        &format!("{base}/#/factory"),
        "factory-form",
        &["click:preview".to_string()],
    )
    .await;
    let texts = &page["texts"];
    assert_eq!(texts["preview-contributions"], "40", "{page}");
    assert_eq!(texts["preview-contributors"], "2", "{page}");
    assert_eq!(page["rows"]["preview-licenses"], 1, "{page}");
    assert!(texts.get("preview-verdict").is_some(), "{page}");
    assert!(
        texts["spec"]
            .as_str()
            .unwrap()
            .contains("datanets = [\"kitchen-conversions\"]"),
        "{page}"
    );

    // The run trains on the tiny base model, pretrained on first use (minutes on a busy
    // machine, while the job's page does not change): built first, outside the page's wait.
    tokio::task::spawn_blocking(|| {
        base::build_cached(&Recipe::tiny(), &base::default_cache(), &mut |_| {})
    })
    .await
    .unwrap()
    .unwrap();

    // Meanwhile, a reader watches the run through the public API.
    let name = "factory-kitchen";
    let watcher = tokio::spawn({
        let base = base.clone();
        async move {
            let q = format!(
                "{{ job(name: \"{name}\") {{ runs(first: 1) {{ status losses {{ step }} }} }} }}"
            );
            let mut seen: Vec<(String, usize)> = Vec::new();
            let mut progress = wait::Progress::new();
            loop {
                // Fails only when the run makes no progress (a slow machine that keeps
                // training passes).
                progress.check(format_args!("the run: {seen:?}"));
                let r = gql(&base, &q, json!({}), None).await;
                if let Some(run) = r["data"]["job"]["runs"].get(0) {
                    let status = run["status"].as_str().unwrap().to_string();
                    let done = status != "running";
                    let now = (status, run["losses"].as_array().unwrap().len());
                    if seen.last() != Some(&now) {
                        progress.moved();
                        seen.push(now);
                    }
                    if done {
                        return seen;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });

    // The person's way: the form, the preview, the token, "Create and start", then the job's
    // page until its run is published.
    let actions: Vec<String> = [
        format!("fill:name={name}"),
        "fill:line=kitchen-factory".into(),
        "fill:rank=4".into(),
        "fill:targets=q, v".into(),
        "fill:steps=20".into(),
        "fill:seqLen=32".into(),
        "fill:patience=0".into(),
        "click:preview".into(),
        format!("fill:token={token}"),
        "click:create".into(),
        "wait:run-status=published".into(),
    ]
    .into();
    let page = browse_with(&format!("{base}/#/factory"), "factory", &actions).await;
    assert!(page["texts"].get("error").is_none(), "{page}");
    assert_eq!(page["texts"]["title"], format!("Job {name}"), "{page}");
    assert_eq!(page["texts"]["run-status"], "published", "{page}");
    let points = page["texts"]["loss-points"].as_str().unwrap();
    assert!(
        points.starts_with("20 training steps recorded; asked for by token:"),
        "{points}"
    );
    assert!(page["texts"].get("loss-curve").is_some(), "{page}");

    // The losses were readable while the run trained, not only after it.
    let seen = watcher.await.unwrap();
    assert!(
        seen.iter().any(|(status, n)| status == "running" && *n > 0),
        "{seen:?}"
    );
    assert_eq!(seen.last().unwrap(), &("published".to_string(), 20));

    // Who did what is recorded: the token's fingerprint made the job and asked for the run.
    let q = format!(
        "{{ job(name: \"{name}\") {{ createdBy requested spec runs {{ status trigger requestedBy \
         version adapterId losses {{ step loss }} }} }} }}"
    );
    let r = gql(&base, &q, json!({}), None).await;
    let j = &r["data"]["job"];
    assert_eq!(j["createdBy"], fingerprint.as_str(), "{r}");
    assert_eq!(j["requested"], Value::Null, "the request was taken: {r}");
    let spec: Value = serde_json::from_str(j["spec"].as_str().unwrap()).unwrap();
    assert_eq!(spec["use"], "commercial");
    assert_eq!(spec["datanets"], json!(["kitchen-conversions"]));
    let runs = j["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{r}");
    let run = &runs[0];
    assert_eq!(run["trigger"], "request");
    assert_eq!(run["requestedBy"], fingerprint.as_str());
    assert_eq!(run["version"], "kitchen-factory@1.0.0");
    let steps: Vec<u64> = run["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=20).collect::<Vec<_>>());
    let r = gql(&base, "{ jobs { name } }", json!({}), None).await;
    assert_eq!(r["data"]["jobs"], json!([{ "name": name }]), "{r}");
    let r = gql(&base, "{ schedulerWorkers { name } }", json!({}), None).await;
    assert_eq!(
        r["data"]["schedulerWorkers"].as_array().map(Vec::len),
        Some(1),
        "{r}"
    );

    // The indexer brings the adapter into the graph, trained on the kitchen Datanet.
    let adapter = run["adapterId"].as_str().unwrap();
    let q = format!(
        "{{ adapter(id: \"{adapter}\") {{ version snapshot {{ count datanets {{ name }} }} }} }}"
    );
    let mut progress = wait::Progress::new();
    let a = loop {
        let r = gql(&base, &q, json!({}), None).await;
        if !r["data"]["adapter"].is_null() {
            break r["data"]["adapter"].clone();
        }
        progress.check(format_args!("the indexer bringing {adapter} in: {r}"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(a["version"], "kitchen-factory@1.0.0");
    assert_eq!(a["snapshot"]["count"], 40, "{a}");
    assert_eq!(
        a["snapshot"]["datanets"],
        json!([{ "name": "kitchen-conversions" }])
    );
}
