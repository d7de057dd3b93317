//! Serving through the CLI: the official OpenAI client completes, chats and streams against
//! `tributary serve` and reads each answer's ancestry and attribution; an adapter published
//! while the server runs is served without a restart; answers journaled by a server killed
//! with SIGKILL are posted once by the next start; then the epoch is settled and a
//! contributor claims, and the balance on chain equals what `rewards show` said.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::datanets::{Setup, records, setup};
use crate::train::{JOB, published, train};
use crate::wait;

struct Server {
    child: Child,
    base: String,
}

fn serve(s: &Setup, ledger_interval: &str) -> Server {
    let mut child = s
        .cmd(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pg-listen",
            "127.0.0.1:0",
            "--ledger-interval",
            ledger_interval,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("serve prints its addresses").unwrap();
        if let Some(rest) = line.strip_prefix("Inference (OpenAI-compatible): ") {
            break rest.split("/v1/").next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}

/// The bearer token a server on `s`'s data directory created.
fn token(s: &Setup) -> String {
    std::fs::read_to_string(s.data.join("api-token")).unwrap()
}

fn client(s: &Setup, base: &str, model: &str) -> Value {
    let python = std::env::var("TRIBUTARY_PYTHON").expect(
        "TRIBUTARY_PYTHON is not set: run `eval \"$(scripts/setup.sh)\"` (it installs the openai client)",
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/openai_client.py");
    let out = Command::new(python)
        .args([script, base, model, &token(s)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn run(s: &Setup, args: &[&str]) -> String {
    let out = s.cmd(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

/// The rows of a query's CSV answer, header left out.
fn sql_rows(s: &Setup, query: &str) -> Vec<Vec<String>> {
    let text = run(s, &["sql", "--format", "csv", query]);
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// A GraphQL answer's `data` from a running server.
fn graphql(base: &str, query: &str) -> Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let v: Value = rt
        .block_on(async {
            reqwest::Client::new()
                .post(format!("{base}/graphql"))
                .json(&serde_json::json!({ "query": query }))
                .send()
                .await?
                .json()
                .await
        })
        .unwrap();
    assert!(v.get("errors").is_none(), "{query}: {v}");
    v["data"].clone()
}

/// `list`'s `[key, share]` pairs, keys lowercased, sorted by key.
fn shares(list: &Value, key: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|c| {
            (
                c[key].as_str().unwrap().to_lowercase(),
                c["share"].as_f64().unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The same keys with the same shares (to float rounding).
fn same_shares(a: &[(String, f64)], b: &[(String, f64)], what: &str) {
    assert_eq!(
        a.iter().map(|x| &x.0).collect::<Vec<_>>(),
        b.iter().map(|x| &x.0).collect::<Vec<_>>(),
        "{what}"
    );
    for (x, y) in a.iter().zip(b) {
        assert!((x.1 - y.1).abs() < 1e-9, "{what}: {x:?} vs {y:?}");
    }
}

pub(crate) fn sql_count(s: &Setup, query: &str) -> u64 {
    let out = s.cmd(&["sql", "--format", "csv", query]).output().unwrap();
    assert!(
        out.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{query}: not a count: {text}"))
}

/// Checks one client run's answers: ancestry down to the Datanet, attribution with
/// contributors, the same text streamed as not.
fn check_answers(v: &Value, adapter: &str, version: &str) {
    assert!(
        v["models"].as_array().unwrap().iter().any(|m| m == version),
        "{}",
        v["models"]
    );
    let c = &v["completion"];
    assert!(
        ["stop", "length"].contains(&c["finish"].as_str().unwrap()),
        "{c}"
    );
    let anc = &c["ancestry"];
    assert_eq!(anc["adapter"]["id"], adapter, "{anc}");
    assert_eq!(anc["adapter"]["version"], version);
    assert_eq!(anc["snapshot"]["datanets"][0]["id"], 1, "{anc}");
    assert!(anc["base_model"]["id"].as_str().unwrap().starts_with("0x"));
    let att = &c["attribution"];
    assert_eq!(att["method"], "tracin", "{att}");
    let top = att["top"].as_array().unwrap();
    assert_eq!(top.len(), 5, "{att}");
    for t in top {
        assert!(t["contributor"].as_str().unwrap().starts_with("0x"), "{t}");
        assert!(t["share"].as_f64().unwrap() >= 0.0);
    }
    assert!(!att["contributors"].as_array().unwrap().is_empty());
    assert!(c["inference"]["id"].as_str().unwrap().starts_with("0x"));
    assert!(c["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    assert_eq!(
        v["stream"]["text"], c["text"],
        "greedy streaming says the same"
    );
    assert_eq!(v["stream"]["attribution"]["method"], "tracin");
    assert_eq!(v["chat_stream"]["text"], v["chat"]["text"]);
    assert_eq!(v["chat"]["ancestry"]["adapter"]["id"], adapter);
    assert!(
        v["cheap"]["attribution"].is_null() && v["cheap"]["inference"]["id"].is_string(),
        "attribution: false leaves the attribution out of the response, not the record: {}",
        v["cheap"]
    );
    let unknown = v["unknown"].as_str().unwrap();
    assert!(unknown.contains("not published"), "{unknown}");
}

#[test]
fn serve_answers_with_ancestry_then_settle_and_claim() {
    let s = setup();
    assert!(
        s.contribute(1, &records(s.dir(), "a.jsonl", 0, 80), 40)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        s.contribute(2, &records(s.dir(), "b.jsonl", 80, 40), 40)
            .status()
            .unwrap()
            .success()
    );
    let (ok, text) = train(&s, "first", JOB, &s.dir().join("a"));
    assert!(ok, "{text}");
    let (first, _) = published(&text, "pantry@1.0.0");

    // Answers are journaled; this server never posts (interval of an hour) and is killed.
    let mut server = serve(&s, "3600");
    // Answering records on chain: no token, or a wrong one, is refused before any work.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for auth in [None, Some("Bearer wrong"), Some("Basic abc")] {
        let mut req = reqwest::Client::new()
            .post(format!("{}/v1/completions", server.base))
            .json(&serde_json::json!({
                "model": "pantry@1.0.0",
                "prompt": "question: How many grams is 1 cup of butter?\nanswer:",
                "max_tokens": 4,
            }));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = rt.block_on(req.send()).unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    let models = rt
        .block_on(
            reqwest::Client::new()
                .get(format!("{}/v1/models", server.base))
                .send(),
        )
        .unwrap();
    assert_eq!(models.status(), 200, "reads stay public");
    // The caller's mistakes come back as such: a model that is not published is a 404 that
    // says how to name one, a prompt that does not fit a 400.
    let ask = |model: &str, prompt: String| {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/completions", server.base))
            .bearer_auth(token(&s).trim())
            .json(&serde_json::json!({
                "model": model, "prompt": prompt, "max_tokens": 4, "temperature": 0
            }))
            .send();
        let r = rt.block_on(r).unwrap();
        let status = r.status().as_u16();
        (status, rt.block_on(r.json::<Value>()).unwrap())
    };
    let (status, body) = ask("nope@9.9.9", "question: hi?".into());
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line@version"),
        "{body}"
    );
    let (status, body) = ask("pantry@1.0.0", "word ".repeat(100_000));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tokens"),
        "{body}"
    );
    let v = client(&s, &server.base, "pantry@1.0.0");
    check_answers(&v, &first, "pantry@1.0.0");
    // The same question twice, answered the same (greedy, temperature 0): two answers, two
    // records, each paid (with one id, the second was lost whenever it was posted in a batch
    // of its own).
    let prompt = "question: How many grams is 1 cup of flour?\nanswer:";
    let (a, b) = (
        ask("pantry@1.0.0", prompt.into()),
        ask("pantry@1.0.0", prompt.into()),
    );
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    assert_eq!(a.1["choices"][0]["text"], b.1["choices"][0]["text"]);
    assert_ne!(
        a.1["inference"]["id"], b.1["inference"]["id"],
        "{a:?} {b:?}"
    );
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let journal = s.data.join("ledger/pending.jsonl");
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap().lines().count(),
        7
    );
    assert_eq!(sql_count(&s, "SELECT count(*) FROM inferences"), 0);

    // The next start posts them; an adapter published while it runs is served at once.
    let mut server = serve(&s, "1");
    // Another line, and other settings (the same ones would be the same adapter).
    let job = JOB
        .replace("line = \"pantry\"", "line = \"larder\"")
        .replace("max_steps = 40", "max_steps = 30");
    let (ok, text) = train(&s, "second", &job, &s.dir().join("b"));
    assert!(ok, "{text}");
    let (second, _) = published(&text, "larder@1.0.0");
    let v = client(&s, &server.base, &second);
    check_answers(&v, &second, "larder@1.0.0");
    wait::until(
        "the ledger posting twelve answers",
        Duration::from_millis(500),
        || (sql_count(&s, "SELECT count(*) FROM inferences") >= 12).then_some(()),
    );

    // One credit, the same through every surface: the answer's `/v1` attribution equals its
    // record in the graph (GraphQL, once the server's indexer has all twelve answers), and
    // below in SQL, from `tributary attribute` and in what settlement pays.
    let c = &v["completion"];
    let answer = c["inference"]["id"].as_str().unwrap().to_string();
    let top_contributor = c["attribution"]["top"][0]["contributor"]
        .as_str()
        .unwrap()
        .to_lowercase();
    let query = format!(
        r#"{{ answer(id: "{answer}") {{ attribution {{ method contributors {{ address share }} contributions {{ id share }} }} }}
             adapter: attribution(subject: "adapter:{second}") {{ method contributions {{ id share }} }}
             contributor(address: "{top_contributor}") {{ influence }}
             inferences(first: 100) {{ nodes {{ count }} }} }}"#
    );
    let mut progress = wait::Progress::new();
    let d = loop {
        let d = graphql(&server.base, &query);
        let indexed: u64 = d["inferences"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["count"].as_u64().unwrap())
            .sum();
        if indexed == 12 {
            break d;
        }
        progress.check(format_args!(
            "the server's indexer indexing the answers: {d}"
        ));
        std::thread::sleep(Duration::from_millis(500));
    };
    let recorded = &d["answer"]["attribution"];
    assert_eq!(recorded["method"], "recorded", "{d}");
    same_shares(
        &shares(&c["attribution"]["contributors"], "address"),
        &shares(&recorded["contributors"], "address"),
        "contributor shares: /v1 vs GraphQL",
    );
    let credited = shares(&recorded["contributions"], "id");
    assert_eq!(
        credited.len() as u64,
        c["attribution"]["contributions_credited"].as_u64().unwrap(),
        "every credited contribution is recorded"
    );
    assert!(credited.len() > 5, "more than the top 5 are credited");
    let total: f64 = credited.iter().map(|x| x.1).sum();
    assert!((total - 1.0).abs() < 1e-9, "the credit sums to {total}");
    let top: Vec<(String, f64)> = shares(&c["attribution"]["top"], "contribution")
        .into_iter()
        .filter(|x| x.1 > 0.0)
        .collect();
    let listed: Vec<(String, f64)> = credited
        .iter()
        .filter(|x| top.iter().any(|t| t.0 == x.0))
        .cloned()
        .collect();
    same_shares(&top, &listed, "top contributions: /v1 vs GraphQL");
    assert_eq!(d["adapter"]["method"], "held_out", "{d}");
    let influence = d["contributor"]["influence"].as_f64().unwrap();
    let term = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(
        server.child.wait().unwrap().success(),
        "serve stops cleanly on SIGTERM"
    );
    assert_eq!(
        sql_count(&s, "SELECT count(DISTINCT inference_id) FROM inferences"),
        12,
        "no answer twice"
    );
    assert_eq!(sql_count(&s, "SELECT count(*) FROM inferences"), 12);
    // The answers' credit is in `attributions` (subject `inference`): every positive share of
    // each of the 12 answers (more than their top 5), each row naming a recorded answer.
    let rows = sql_count(
        &s,
        "SELECT count(*) FROM attributions WHERE subject_kind = 'inference'",
    );
    assert!(rows > 50, "{rows} inference attribution rows");
    let sql: Vec<(String, f64)> = sql_rows(
        &s,
        &format!(
            "SELECT contribution_id, share FROM attributions \
             WHERE subject_kind = 'inference' AND subject_id = '{answer}' ORDER BY contribution_id"
        ),
    )
    .into_iter()
    .map(|r| (r[0].clone(), r[1].parse().unwrap()))
    .collect();
    same_shares(&sql, &credited, "the answer's credit: SQL vs GraphQL");
    assert_eq!(
        sql_count(
            &s,
            "SELECT count(*) FROM attributions a LEFT JOIN inferences i ON a.subject_id = i.inference_id \
             WHERE a.subject_kind = 'inference' AND (i.inference_id IS NULL OR a.contributor = '')"
        ),
        0
    );
    assert_eq!(
        std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .lines()
            .count(),
        0
    );

    // The indexer links the batches into the graph.
    run(&s, &["index"]);
    assert!(
        sql_count(
            &s,
            "SELECT count(*) FROM lineage_nodes WHERE kind = 'inference'"
        ) >= 1
    );
    assert_eq!(
        sql_count(
            &s,
            "SELECT count(*) FROM lineage_nodes WHERE kind = 'answer'"
        ),
        12
    );
    // The adapter's held-out credit: GraphQL and SQL's contribution_influence agree.
    let held_out: Vec<(String, f64)> = sql_rows(
        &s,
        &format!(
            "SELECT contribution_id, share FROM contribution_influence \
             WHERE adapter_id = '{second}' AND share > 0 ORDER BY contribution_id"
        ),
    )
    .into_iter()
    .map(|r| (r[0].clone(), r[1].parse().unwrap()))
    .collect();
    assert!(!held_out.is_empty());
    same_shares(
        &held_out,
        &shares(&d["adapter"]["contributions"], "id"),
        "the adapter's held-out credit: SQL vs GraphQL",
    );
    // A contributor's influence on answers: GraphQL and SQL's attribution_by_contributor.
    let weight: f64 = sql_rows(
        &s,
        &format!(
            "SELECT weight FROM attribution_by_contributor WHERE contributor = 'contributor:{top_contributor}'"
        ),
    )[0][0]
        .parse()
        .unwrap();
    assert!((weight - influence).abs() < 1e-9, "{weight} vs {influence}");
    // `tributary attribute` on the same answer prints the same top shares.
    let printed = run(
        &s,
        &[
            "attribute",
            "--adapter",
            "larder@1.0.0",
            "--prompt",
            "question: How many grams is 1 cup of butter?\nanswer:",
            "--output",
            c["text"].as_str().unwrap(),
            "--top",
            "5",
        ],
    );
    for t in c["attribution"]["top"].as_array().unwrap() {
        let id = t["contribution"].as_str().unwrap();
        let line = printed
            .lines()
            .find(|l| l.ends_with(id))
            .unwrap_or_else(|| panic!("{id} not in:\n{printed}"));
        let pct = format!("{:.2}%", 100.0 * t["share"].as_f64().unwrap());
        assert!(line.contains(&pct), "{pct} not in {line}");
    }

    // A contributor withdraws one of the answer's paid contributions from their own wallet,
    // with a transaction Tributary never sees: a snapshot leaves it out and settlement pays it
    // nothing.
    let top = v["completion"]["attribution"]["top"].as_array().unwrap();
    let gone = top[1..]
        .iter()
        .find(|t| t["share"].as_f64().unwrap() > 0.0)
        .unwrap_or_else(|| panic!("no second paid contribution: {top:#?}"));
    let key = (1..=2)
        .find(|&k| {
            let signer: alloy::signers::local::PrivateKeySigner =
                crate::datanets::dev_key(k).parse().unwrap();
            signer
                .address()
                .to_string()
                .eq_ignore_ascii_case(gone["contributor"].as_str().unwrap())
        })
        .unwrap();
    let gone = gone["contribution"].as_str().unwrap().to_string();
    rt.block_on(crate::datanets::revoke_from_wallet(
        &s,
        key,
        &gone,
        "withdrawn from my wallet",
    ));
    let snap = run(&s, &["snapshot", "--datanet", "kitchen-conversions"]);
    let uri = snap
        .lines()
        .find_map(|l| l.strip_prefix("manifest: "))
        .unwrap_or_else(|| panic!("{snap}"));
    let manifest = std::fs::read_to_string(uri.trim().strip_prefix("file://").unwrap()).unwrap();
    assert!(
        !manifest.contains(&gone),
        "the snapshot holds the revoked {gone}"
    );

    // Settle, then the top contributor claims.
    let settled = run(&s, &["rewards", "settle"]);
    assert_eq!(
        sql_count(
            &s,
            &format!("SELECT count(*) FROM reward_allocations WHERE contribution_id = '{gone}'")
        ),
        0,
        "a contribution revoked from a wallet is paid nothing"
    );
    // Settlement pays each contribution the contributors' 50% of every answer's fee times its
    // recorded share (the revoked contribution's share divided among the rest of its
    // answer's credit), to within what settlement's integer arithmetic moves: a share is
    // resolved to parts per billion of its answer (one part each), and a row's remainder to
    // one unit.
    let unpaid = sql_rows(
        &s,
        &format!(
            "WITH a AS (SELECT t.subject_id, t.contribution_id, t.share, CAST(i.fee AS DOUBLE) AS fee \
               FROM attributions t JOIN inferences i ON i.inference_id = t.subject_id \
               WHERE t.subject_kind = 'inference' AND t.contribution_id <> '{gone}'), \
             n AS (SELECT subject_id, SUM(share) AS live FROM a GROUP BY subject_id), \
             e AS (SELECT a.contribution_id, SUM(a.fee * 0.5 * a.share / n.live) AS expected, \
                          SUM(a.fee * 0.5 / 1e9) + 2 AS tolerance \
               FROM a JOIN n ON a.subject_id = n.subject_id GROUP BY a.contribution_id), \
             r AS (SELECT contribution_id, SUM(CAST(amount AS DOUBLE)) AS paid \
               FROM reward_allocations WHERE role = 'contributor' GROUP BY contribution_id) \
             SELECT e.contribution_id, e.expected, r.contribution_id, r.paid \
             FROM e FULL OUTER JOIN r ON e.contribution_id = r.contribution_id \
             WHERE (e.expected IS NULL AND r.paid IS NOT NULL) \
                OR ABS(COALESCE(e.expected, 0) - COALESCE(r.paid, 0)) > COALESCE(e.tolerance, 2)"
        ),
    );
    assert!(
        unpaid.is_empty(),
        "contributions paid otherwise than their recorded credit (expected, paid): {unpaid:?}"
    );
    assert!(
        settled.contains("epoch 1:") && settled.contains("EpochAllocated in tx"),
        "{settled}"
    );
    let who = v["completion"]["attribution"]["top"][0]["contributor"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = run(&s, &["rewards", "show", "--contributor", &who]);
    assert!(
        shown.contains("contributor") && shown.contains("contribution 0x"),
        "{shown}"
    );
    let earned = shown
        .lines()
        .find_map(|l| l.trim().strip_prefix("earned "))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(earned, "0", "{shown}");
    let claimed = run(&s, &["rewards", "claim", "--epoch", "1", "--account", &who]);
    assert!(
        claimed.contains(&format!("claimed {earned} tokens")),
        "{claimed}"
    );
    let shown = run(&s, &["rewards", "show", "--contributor", &who]);
    assert!(
        shown.contains(&format!("balance on chain {earned}")) && shown.contains("(claimed)"),
        "{shown}"
    );
    let again = run(&s, &["rewards", "claim", "--epoch", "1", "--account", &who]);
    let tx = |text: &str| {
        text.lines()
            .find_map(|l| Some(l.split_once(" in tx ")?.1.trim().to_string()))
            .unwrap_or_default()
    };
    assert!(
        again.contains(&format!("already claimed {earned} tokens")) && tx(&again) == tx(&claimed),
        "a second claim reports the first: {again}"
    );
    let none = s.cmd(&["rewards", "settle"]).output().unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no inference batch was recorded"));

    // Epoch 2 posted straight to the distributor by its admin (an airdrop): settling stops and
    // names the way on; `--foreign-epoch 2` records it as not Tributary's; a claim on it is
    // refused.
    rt.block_on(async {
        let chain = tributary_chain::Chain::connect(tributary_chain::ChainConfig::rpc(
            s.rpc_url().clone(),
            &s.data,
        ))
        .await
        .unwrap();
        tributary_chain::send(chain.reward_distributor().allocateEpoch(
            alloy::primitives::U256::from(2),
            alloy::primitives::B256::repeat_byte(0xa1),
            alloy::primitives::U256::from(5_000),
        ))
        .await
        .unwrap();
    });
    // Indexed before it is recorded: its manifest is missing, and the index waits for it.
    let indexed = run(&s, &["index"]);
    assert!(indexed.contains("wait for their manifest"), "{indexed}");
    let stopped = s.cmd(&["rewards", "settle"]).output().unwrap();
    let err = String::from_utf8_lossy(&stopped.stderr);
    assert!(
        !stopped.status.success() && err.contains("--foreign-epoch 2"),
        "{err}"
    );
    let out = s
        .cmd(&["rewards", "settle", "--foreign-epoch", "2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("epoch 2: recorded as posted by someone else"),
        "{text}"
    );
    // Recorded; then nothing new to settle.
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("no inference batch was recorded")
    );
    // The next index run reads the epoch's record and shows it as not Tributary's.
    run(&s, &["index"]);
    assert_eq!(
        sql_count(
            &s,
            "SELECT count(*) FROM lineage_nodes WHERE kind = 'reward_epoch' \
             AND props LIKE '%recorded as foreign%' AND props LIKE '%\"verified\":false%'"
        ),
        1
    );
    let refused = s
        .cmd(&["rewards", "claim", "--epoch", "2", "--account", &who])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("not Tributary's"),
        "{err}"
    );
}
