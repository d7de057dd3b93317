//! Scheduled training through `tributary serve`: a schedule with a threshold runs once when
//! enough new data arrived and publishes only what beats the current version; two workers on
//! one PostgreSQL store run each due job once, and when the one running it is killed the
//! other finishes it; `serve` on a fresh data folder answers every endpoint and stops
//! cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::cli::tributary;
use crate::datanets::{Setup, records, setup};
use crate::wait;

#[path = "../../sql/tests/it/pg.rs"]
mod pg;

/// A `[[jobs]]` table training line `pantry` every 2 s.
fn job(name: &str, min_new: u64, min_improvement: f64, max_steps: u64) -> String {
    format!(
        r#"
[[jobs]]
name = "{name}"
cron = "*/2 * * * * *"
line = "pantry"
datanets = ["kitchen-conversions"]
min_new_contributions = {min_new}
min_improvement = {min_improvement}
[jobs.lora]
rank = 4
targets = ["q", "v"]
[jobs.train]
learning_rate = 0.01
warmup_steps = 5
max_steps = {max_steps}
batch_size = 8
seq_len = 32
eval_fraction = 0.15
eval_every = 10
patience = 0
"#
    )
}

pub(crate) struct Worker {
    pub(crate) child: Child,
    /// Lines it printed on stdout before serving.
    pub(crate) banner: Vec<String>,
    /// Every line it printed on stderr so far (also echoed to the test's stderr).
    log: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    /// The server's HTTP address, from its banner.
    pub(crate) fn base(&self) -> String {
        self.banner
            .iter()
            .find_map(|l| l.strip_prefix("SQL: POST "))
            .and_then(|u| u.strip_suffix("/sql"))
            .unwrap_or_else(|| panic!("{:?}", self.banner))
            .to_string()
    }

    /// Waits until `/readyz` says 200 (for as long as there is progress, else fails with its
    /// last answer), and checks the indexer is at the head.
    pub(crate) async fn wait_ready(&self, http: &reqwest::Client) {
        let base = self.base();
        let mut progress = wait::Progress::new();
        loop {
            let r = http.get(format!("{base}/readyz")).send().await.unwrap();
            let code = r.status();
            let body: Value = r.json().await.unwrap();
            if code == 200 {
                assert_eq!(body["indexer"], "at head", "{body}");
                return;
            }
            assert_eq!(code, 503, "{body}");
            progress.check(format_args!("ready: {body}"));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Waits until a stderr line contains `text` (for as long as there is progress).
    fn wait_log(&self, text: &str) {
        wait::until(
            format_args!("a log line with {text:?}"),
            Duration::from_millis(200),
            || {
                self.log
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.contains(text))
                    .then_some(())
            },
        );
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tributary serve` with `args` and reads its banner up to the health line.
pub(crate) fn start(mut cmd: std::process::Command) -> Worker {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (errors, keep) = (child.stderr.take().unwrap(), log.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(errors).lines().map_while(Result::ok) {
            eprintln!("{line}");
            keep.lock().unwrap().push(line);
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("Health: ");
        banner.push(line);
        if done {
            break;
        }
    }
    assert!(
        banner.last().is_some_and(|l| l.starts_with("Health: ")),
        "serve stopped before serving: {banner:?}"
    );
    std::thread::spawn(move || for _ in lines {});
    Worker { child, banner, log }
}

/// A small OpenLineage consumer: keeps the events POSTed to `/api/v1/lineage`.
struct Consumer {
    url: String,
    events: Arc<Mutex<Vec<Value>>>,
    _rt: tokio::runtime::Runtime,
}

fn consumer() -> Consumer {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let kept = events.clone();
    let app = axum::Router::new().route(
        "/api/v1/lineage",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(v);
                axum::http::StatusCode::CREATED
            }
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Consumer {
        url,
        events,
        _rt: rt,
    }
}

/// The OpenLineage events in `file`, checked against the spec's RunEvent schema by
/// tests/python/openlineage_check.py: per job, its event types and outputs.
fn lineage_events(file: &Path) -> Value {
    let python = std::env::var("TRIBUTARY_PYTHON").expect(
        "TRIBUTARY_PYTHON is not set: run `eval \"$(scripts/setup.sh)\"` (it installs openlineage-python)",
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/openlineage_check.py"
    );
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"], serde_json::json!([]), "{v:#}");
    v["jobs"].clone()
}

/// `tributary serve --only scheduler` with `config`, its runs leased for `lease` seconds.
fn worker_cmd(s: &Setup, config: &Path, lease: &str) -> std::process::Command {
    let mut cmd = s.cmd(&[
        "serve",
        "--only",
        "scheduler",
        "--listen",
        "127.0.0.1:0",
        "--device",
        "cpu",
        "--job-lease",
        lease,
        "--log",
        "info",
    ]);
    cmd.arg("--config-file").arg(config);
    cmd
}

/// A worker whose runs are leased for `lease` seconds (renewed every third of it).
fn worker(s: &Setup, config: &Path, store: Option<&str>, lease: &str) -> Worker {
    let mut cmd = worker_cmd(s, config, lease);
    if let Some(url) = store {
        cmd.arg("--store").arg(url);
    }
    start(cmd)
}

/// `tributary jobs list --json`: the jobs with their latest runs.
fn jobs(s: &Setup, store: Option<&str>) -> Vec<Value> {
    let mut cmd = s.cmd(&["jobs", "list", "--json", "--runs", "20"]);
    if let Some(url) = store {
        cmd.arg("--store").arg(url);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn runs(s: &Setup, store: Option<&str>) -> Vec<Value> {
    let all = jobs(s, store);
    assert_eq!(all.len(), 1, "{all:?}");
    let mut runs = all[0]["runs"].as_array().unwrap().clone();
    runs.sort_by_key(|r| r["seq"].as_u64());
    runs
}

/// Polls until `done` holds on the runs. Waits on progress, not on the clock: it fails only
/// when for [`wait::STALL`] no run changed (its status, attempts, snapshot, outcome; not
/// lease heartbeats, which an idle or stuck worker also renews) and the test's processes did
/// no work ([`wait::Progress`]), so a slow, loaded machine that keeps working passes.
fn wait_runs(s: &Setup, store: Option<&str>, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut seen = Value::Null;
    let mut progress = wait::Progress::new();
    loop {
        let r = runs(s, store);
        if done(&r) {
            return r;
        }
        let state: Value = r
            .iter()
            .map(|run| {
                let mut run = run.clone();
                run.as_object_mut().unwrap().remove("lease_until");
                run
            })
            .collect();
        if state != seen {
            seen = state;
            progress.moved();
        }
        progress.check(format_args!("runs: {r:#?}"));
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until the scheduler has checked the job `n` more times (its `last_check` moved), so
/// a test sees what real checks decided however slow the machine is.
fn wait_checks(s: &Setup, store: Option<&str>, n: usize) {
    let at = || jobs(s, store)[0]["last_check"]["at"].clone();
    let (mut last, mut seen) = (at(), 0);
    let mut progress = wait::Progress::new();
    while seen < n {
        std::thread::sleep(Duration::from_millis(300));
        let now = at();
        if now != last {
            (last, seen) = (now, seen + 1);
            progress.moved();
        }
        progress.check(format_args!("the scheduler's checks ({seen} of {n})"));
    }
}

fn finished(r: &Value) -> bool {
    r["status"] != "running"
}

/// Adapters of line `pantry` published on the chain.
fn published_pantry(s: &Setup) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut cfg = tributary_chain::ChainConfig::rpc(s.rpc_url().clone(), &s.data);
        cfg.max_retries = 3;
        let chain = tributary_chain::Chain::connect(cfg).await.unwrap();
        let mut v: Vec<String> = tributary_models::catalog::published(&chain)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.version)
            .filter(|v| v.starts_with("pantry@"))
            .collect();
        v.sort();
        v
    })
}

pub(crate) fn sigterm(child: &Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits for `child` to exit (for as long as there is progress); its exit status.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    wait::until("the worker exiting", Duration::from_millis(200), || {
        child.try_wait().unwrap()
    })
}

#[test]
fn a_schedule_runs_once_per_enough_new_data_and_publishes_only_improvements() {
    let s = setup();
    let config = s.dir().join("tributary.toml");
    // First version always published; later ones only if 90% better: never, here.
    std::fs::write(&config, job("pantry-refresh", 30, 0.9, 40)).unwrap();
    // OpenLineage events to a file (every command) and to an HTTP consumer (the worker).
    let events = s.dir().join("openlineage.jsonl");
    std::fs::write(
        &config,
        format!(
            "[openlineage]\nfile = {:?}\n{}",
            events.display().to_string(),
            std::fs::read_to_string(&config).unwrap()
        ),
    )
    .unwrap();
    let http = consumer();
    // A long lease (one worker, never taken over): a run that starts late on a busy machine
    // is still `schedule`, not `catch-up` (late by more than a lease).
    let mut cmd = worker_cmd(&s, &config, "600");
    cmd.env("TRIBUTARY_OPENLINEAGE_URL", &http.url);
    let mut w = start(cmd);
    assert!(
        w.banner.iter().any(|l| l.contains("1 job(s)")),
        "{:?}",
        w.banner
    );

    // No contributions: occurrences pass, nothing runs.
    wait_checks(&s, None, 2);
    let j = &jobs(&s, None)[0];
    assert!(j["runs"].as_array().unwrap().is_empty(), "{j:#}");
    assert!(j["last_check"]["why"].is_string(), "{j:#}");

    // 20 new: below the threshold of 30.
    let contribute = |from, n, name: &str| {
        let st = s
            .contribute(1, &records(s.dir(), name, from, n), 20)
            .env("TRIBUTARY_OPENLINEAGE_FILE", &events)
            .status()
            .unwrap();
        assert!(st.success());
    };
    contribute(0, 20, "a.jsonl");
    wait_checks(&s, None, 2);
    let j = &jobs(&s, None)[0];
    assert!(j["runs"].as_array().unwrap().is_empty(), "{j:#}");
    let why = j["last_check"]["why"].as_str().unwrap();
    assert!(
        why.contains("20 new accepted contribution(s), 30 needed"),
        "{why}"
    );

    // 40 new: exactly one run, which publishes the line's first version.
    contribute(20, 20, "b.jsonl");
    let r = wait_runs(&s, None, |r| !r.is_empty() && r.iter().all(finished));
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0]["status"], "published", "{r:#?}");
    assert_eq!(r[0]["version"], "pantry@1.0.0");
    assert_eq!(r[0]["new_contributions"], 40);
    assert_eq!(r[0]["contributions"], 40);
    assert_eq!(r[0]["trigger"], "schedule");
    // Nothing new since: later occurrences do not run.
    wait_checks(&s, None, 2);
    assert_eq!(runs(&s, None).len(), 1);

    // 30 more: a second run trains from 1.0.0 and is not 90% better: recorded, not published.
    contribute(40, 30, "c.jsonl");
    let r = wait_runs(&s, None, |r| r.len() == 2 && r.iter().all(finished));
    let second = &r[1];
    assert_eq!(second["status"], "not_promoted", "{second:#}");
    assert_eq!(second["new_contributions"], 30);
    assert_eq!(second["version"], "pantry@1.1.0");
    let (new, current) = (
        second["eval_loss"].as_f64().unwrap(),
        second["current_loss"].as_f64().unwrap(),
    );
    assert!(new > current * 0.1, "{second:#}");
    assert!(
        second["message"].as_str().unwrap().contains("not promoted"),
        "{second:#}"
    );
    assert_eq!(published_pantry(&s), ["pantry@1.0.0"]);

    // Paused: new data does not run it.
    let st = s
        .cmd(&["jobs", "pause", "pantry-refresh"])
        .status()
        .unwrap();
    assert!(st.success());
    contribute(70, 30, "d.jsonl");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(runs(&s, None).len(), 2);
    assert_eq!(jobs(&s, None)[0]["paused"], true);

    sigterm(&w.child);
    assert!(wait_exit(&mut w.child).success());

    // OpenLineage: every event valid against the spec; each ingest and each job run a START
    // then a COMPLETE, with its outputs; the HTTP consumer got the worker's events too.
    let jobs = lineage_events(&events);
    let ingest = &jobs["ingest.kitchen-conversions"];
    assert_eq!(
        ingest["events"],
        serde_json::json!(["START", "COMPLETE"].repeat(4)),
        "{jobs:#}"
    );
    assert!(ingest["outputs"].to_string().contains("\"contributions\""));
    let runs = &jobs["job.pantry-refresh"];
    assert_eq!(
        runs["events"],
        serde_json::json!(["START", "COMPLETE", "START", "COMPLETE"]),
        "{jobs:#}"
    );
    assert_eq!(runs["runs"].as_object().unwrap().len(), 2, "{jobs:#}");
    let outputs: Vec<&str> = runs["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(
        outputs
            .iter()
            .filter(|o| o.starts_with("artifacts/snapshots/"))
            .count(),
        2,
        "{outputs:?}"
    );
    assert_eq!(
        outputs
            .iter()
            .filter(|o| o.starts_with("artifacts/adapters/"))
            .count(),
        1,
        "only the promoted run outputs an adapter: {outputs:?}"
    );
    let posted = http.events.lock().unwrap();
    assert_eq!(posted.len(), 4, "{posted:#?}");
    assert!(
        posted
            .iter()
            .all(|e| e["job"]["name"] == "job.pantry-refresh")
    );
}

#[test]
fn occurrences_missed_while_down_are_caught_up_once() {
    let s = setup();
    let contribute = |from, n, name: &str| {
        let st = s
            .contribute(2, &records(s.dir(), name, from, n), 50)
            .status()
            .unwrap();
        assert!(st.success());
    };
    contribute(0, 40, "a.jsonl");
    let config = s.dir().join("tributary.toml");
    std::fs::write(&config, job("pantry-catch-up", 5, 0.0, 10)).unwrap();
    let mut w = worker(&s, &config, None, "3");
    let r = wait_runs(&s, None, |r| !r.is_empty() && r.iter().all(finished));
    assert_eq!(r[0]["status"], "published", "{r:#?}");
    sigterm(&w.child);
    assert!(wait_exit(&mut w.child).success());
    drop(w);

    // Down for several occurrences (every 2 s, lease 3 s) while new data arrives.
    contribute(40, 10, "b.jsonl");
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(runs(&s, None).len(), 1);
    let mut w = worker(&s, &config, None, "3");
    let r = wait_runs(&s, None, |r| r.len() == 2 && r.iter().all(finished));
    assert_eq!(r[1]["trigger"], "catch-up", "{r:#?}");
    assert_eq!(r[1]["new_contributions"], 10, "{r:#?}");
    // Once, not once per missed occurrence.
    wait_checks(&s, None, 2);
    assert_eq!(runs(&s, None).len(), 2);
    sigterm(&w.child);
    assert!(wait_exit(&mut w.child).success());
}

/// The worker holding a run is stalled (SIGSTOP) past its lease: the other takes the run over
/// and publishes it; resumed, the stalled one finds at the moment of publishing that it lost
/// the lease and publishes nothing.
#[test]
fn two_workers_on_postgres_run_a_due_job_once_and_a_stalled_one_never_publishes() {
    let pg = pg::Postgres::start();
    let s = setup();
    let st = s
        .contribute(1, &records(s.dir(), "a.jsonl", 0, 60), 30)
        .status()
        .unwrap();
    assert!(st.success());
    let config = s.dir().join("tributary.toml");
    // Long enough to be killed in the middle.
    std::fs::write(&config, job("pantry-pg", 1, 0.0, 600)).unwrap();
    // A lease of 20 s (renewed every 7 s): a heartbeat delayed by a busy machine does not
    // hand the run over before the test stalls its worker.
    let mut a = worker(&s, &config, Some(&pg.url), "20");
    let mut b = worker(&s, &config, Some(&pg.url), "20");
    let pids = [a.child.id(), b.child.id()];

    // One of them takes the due occurrence; stall it once training is under way (its
    // snapshot recorded), whichever holds it then.
    let r = wait_runs(&s, Some(&pg.url), |r| {
        !r.is_empty() && r[0]["snapshot_id"].is_string()
    });
    assert_eq!(r.len(), 1, "{r:#?}");
    let holder: u32 = r[0]["worker"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pids.contains(&holder), "{holder} not in {pids:?}");
    let attempts = r[0]["attempts"].as_u64().unwrap();
    let (stalled, alive) = if a.child.id() == holder {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let signal = |sig: &str, child: &Child| {
        let ok = std::process::Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    signal("-STOP", &stalled.child);
    let snapshot = r[0]["snapshot_id"].clone();

    // The other takes it over when the lease runs out and finishes it, on the same snapshot.
    let r = wait_runs(&s, Some(&pg.url), |r| r.iter().all(finished));
    assert_eq!(r.len(), 1, "every due job runs exactly once: {r:#?}");
    let run = &r[0];
    assert_eq!(run["status"], "published", "{run:#}");
    assert_eq!(run["attempts"], attempts + 1, "{run:#}");
    assert_eq!(
        run["worker"].as_str().unwrap().rsplit(':').next().unwrap(),
        alive.child.id().to_string()
    );
    let r0 = runs(&s, Some(&pg.url));
    assert_eq!(r0[0]["snapshot_id"], snapshot, "{r0:#?}");
    assert_eq!(published_pantry(&s), ["pantry@1.0.0"]);

    // Resumed, the stalled worker trains on to the end and stops at the publishing step.
    signal("-CONT", &stalled.child);
    stalled.wait_log("not publishing");
    assert_eq!(published_pantry(&s), ["pantry@1.0.0"]);
    let r1 = runs(&s, Some(&pg.url));
    assert_eq!(r1.len(), 1, "{r1:#?}");
    assert_eq!(
        r1[0]["worker"], run["worker"],
        "the run stays the survivor's"
    );
    // No new data: no further run while both keep ticking.
    wait_checks(&s, Some(&pg.url), 2);
    assert_eq!(runs(&s, Some(&pg.url)).len(), 1);
    for w in [stalled, alive] {
        sigterm(&w.child);
        assert!(wait_exit(&mut w.child).success());
    }
}

#[test]
fn serve_on_a_fresh_folder_answers_every_endpoint_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let mut cmd = tributary();
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--pg-listen",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(&data);
    let mut w = start(cmd);
    let base = w.base();
    for part in ["Indexer:", "Scheduler:", "Inference", "GraphQL"] {
        assert!(
            w.banner.iter().any(|l| l.starts_with(part)),
            "{part} missing: {:?}",
            w.banner
        );
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let health = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        // Ready once the indexer has reached the head.
        w.wait_ready(&http).await;
        let gql: Value = http
            .post(format!("{base}/graphql"))
            .json(&serde_json::json!({"query": "{ chainId datanets { name } jobs { name } }"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(gql["data"]["chainId"], 31337, "{gql}");
        assert_eq!(gql["data"]["datanets"], serde_json::json!([]), "{gql}");
        let sql = http
            .post(format!("{base}/sql"))
            .body("SELECT count(*) AS n FROM job_runs")
            .send()
            .await
            .unwrap();
        let code = sql.status();
        let text = sql.text().await.unwrap();
        assert_eq!(code, 200, "{text}");
        let models: Value = http
            .get(format!("{base}/v1/models"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(models["object"], "list", "{models}");
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for m in [
            "tributary_index_lag_blocks",
            "tributary_ingest_rows_total 0",
            "tributary_jobs_configured 0",
            "tributary_inference_request_seconds_count 0",
            "tributary_inference_adapter_cache_hits_total 0",
        ] {
            assert!(metrics.contains(m), "{m} missing:\n{metrics}");
        }
    });
    sigterm(&w.child);
    let st = wait_exit(&mut w.child);
    assert!(st.success(), "{st}");
}

/// A server started after the index reached the head of a chain where nothing happens any
/// more is ready (no new block is needed to say so), and its index metrics show the head and
/// the checkpoint instead of zeros.
#[test]
fn ready_on_an_idle_chain() {
    let s = setup();
    let out = s.cmd(&["index"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = start(s.cmd(&[
        "serve",
        "--only",
        "api,indexer",
        "--listen",
        "127.0.0.1:0",
        "--pg-listen",
        "127.0.0.1:0",
    ]));
    let base = w.base();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use alloy::providers::Provider;
        let head = alloy::providers::ProviderBuilder::new()
            .connect_http(s.rpc_url().clone())
            .get_block_number()
            .await
            .unwrap();
        let http = reqwest::Client::new();
        w.wait_ready(&http).await;
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for m in [
            format!("tributary_index_head_block {head}"),
            format!("tributary_index_checkpoint_block {head}"),
            "tributary_index_lag_blocks 0".to_string(),
        ] {
            assert!(metrics.contains(&m), "{m} missing:\n{metrics}");
        }
        let again: u64 = alloy::providers::ProviderBuilder::new()
            .connect_http(s.rpc_url().clone())
            .get_block_number()
            .await
            .unwrap();
        assert_eq!(again, head, "no block was mined meanwhile");
    });
    sigterm(&w.child);
}
