use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use alloy::primitives::TxHash;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::transports::http::reqwest;
use serde_json::Value;

use crate::cli::{succeeded, tributary};
use crate::wait;

/// The demo's first full answer (the Datanet's contributions).
fn answer(lines: &[String]) -> Value {
    answer_n(lines, 0)
}

/// The demo's `n`th full answer, from the file it names (0: contributions, 1: adapter
/// lineage, 2: the inference's response).
fn answer_n(lines: &[String], n: usize) -> Value {
    let path = lines
        .iter()
        .filter_map(|l| l.strip_prefix("full answer: "))
        .nth(n)
        .expect("answer printed");
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&text).expect("the answer is JSON")
}

/// The adapter the demo trained: published on chain, indexed, and linked to the snapshot of
/// the Datanet's contributions and their contributors, with a held-out loss below the base.
fn check_lineage(lines: &[String], contributions: usize) {
    let a = &answer_n(lines, 1)["adapter"];
    assert_eq!(a["version"], "kitchen-assistant@1.0.0", "{a}");
    assert!(a["id"].as_str().unwrap().starts_with("0x"));
    assert_eq!(a["baseModel"]["architecture"], "llama");
    let t = &a["training"];
    let (base, tuned) = (
        t["baseEvalLoss"].as_f64().unwrap(),
        t["evalLoss"].as_f64().unwrap(),
    );
    assert!(tuned < 0.7 * base, "held-out loss {base} -> {tuned}");
    let s = &a["snapshot"];
    assert_eq!(s["count"].as_u64().unwrap(), contributions as u64);
    assert_eq!(s["datanets"][0]["name"], "kitchen-conversions");
    let nodes = s["contributions"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for c in nodes {
        assert!(
            c["by"]["address"].as_str().unwrap().starts_with("0x"),
            "{c}"
        );
    }
    // Then the attribution of one answer, and the contributors' influence from SQL.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("top 5 of ") && l.contains("by gradient influence")),
        "no attribution printed"
    );
    assert!(lines.iter().any(|l| l == "shares by contributor:"));
    let sql = lines
        .iter()
        .position(|l| l.starts_with("SQL: SELECT contributor, contributions, ROUND(influence"))
        .expect("contributor influence printed");
    let rows = lines[sql + 4..]
        .iter()
        .take_while(|l| l.starts_with("| 0x"))
        .count();
    assert!(rows >= 1, "{:?}", &lines[sql..sql + 6]);
}

/// The demo's inference: an answer with its ancestry and attribution, recorded on chain,
/// settled, and the top contributor's claim, whose balance equals what they earned; with
/// `expected`, the answer's text holds it.
fn check_inference(lines: &[String], expected: Option<&str>) {
    let start = lines
        .iter()
        .position(|l| l == "--- inference answer ---")
        .expect("inference printed");
    let end = start
        + lines[start..]
            .iter()
            .position(|l| l == "--- end ---")
            .unwrap();
    let v: Value = serde_json::from_str(&lines[start + 1..end].join("\n")).unwrap();
    assert_eq!(
        v["ancestry"]["adapter"]["version"], "kitchen-assistant@1.0.0",
        "{v}"
    );
    assert_eq!(v["ancestry"]["snapshot"]["datanets"][0]["id"], 1, "{v}");
    assert_eq!(v["attribution"]["method"], "tracin", "{v}");
    assert_eq!(v["attribution"]["top"].as_array().unwrap().len(), 3, "{v}");
    if let Some(expected) = expected {
        let text = v["text"].as_str().unwrap();
        assert!(text.contains(expected), "{text:?}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ledger: the answer is recorded on chain"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("epoch 1: ") && l.contains("EpochAllocated in tx"))
    );
    let claimed = after(lines, "claimed ");
    let amount = claimed.split(' ').next().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.trim().ends_with(&format!("balance on chain {amount}"))),
        "the claimed {amount} is the balance on chain"
    );
}

fn after<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}"))
}

/// The full demo: every sample contribution in the answer, every printed tx mined
/// successfully on the demo's anvil, GraphQL served over HTTP, and a clean stop on Ctrl-C.
#[tokio::test]
async fn demo_answers_for_every_contribution_and_serves_graphql() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut child = Stopped(
        tributary()
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--pg-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.starts_with("Ctrl-C to stop");
            let _ = tx.send(line);
            if done {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines
        .last()
        .is_none_or(|l: &String| !l.starts_with("Ctrl-C to stop"))
    {
        lines.push(next_line(&rx, &lines));
    }

    let v = answer(&lines);
    let contributions = v["datanet"]["contributions"]["nodes"].as_array().unwrap();
    assert_eq!(contributions.len(), 240, "every sample contribution");
    check_lineage(&lines, 240);
    // The answer is right: the Datanet says a cup of butter weighs about 227 grams.
    check_inference(&lines, Some(" 227 grams"));
    let contributors: BTreeSet<_> = contributions
        .iter()
        .map(|c| c["contributor"].as_str().unwrap())
        .collect();
    assert_eq!(contributors.len(), 6);
    for c in contributions {
        for field in ["id", "contributor", "contentHash", "batch", "txHash"] {
            assert!(
                c[field].as_str().is_some_and(|s| s.starts_with("0x")),
                "{field} in {c}"
            );
        }
        assert!(c["block"].as_u64().unwrap() > 0);
    }

    // Every printed transaction has a successful receipt on that chain, in the printed block.
    let rpc = after(&lines, "chain RPC: ");
    let provider = ProviderBuilder::new().connect_http(rpc.parse().unwrap());
    let txs: BTreeSet<(&str, u64)> = contributions
        .iter()
        .map(|c| (c["txHash"].as_str().unwrap(), c["block"].as_u64().unwrap()))
        .collect();
    for (hash, block) in txs {
        let receipt = provider
            .get_transaction_receipt(hash.parse::<TxHash>().unwrap())
            .await
            .unwrap()
            .expect("mined");
        assert!(receipt.status(), "{hash} succeeded");
        assert_eq!(receipt.block_number, Some(block));
    }

    // The same answer over HTTP from the server the demo runs.
    let url = after(&lines, "GraphQL (GraphiQL in a browser): ");
    let res = post_graphql(
        url,
        "{ datanet(id: 1) { contributions(first: 1000) { nodes { id } } } }",
    )
    .await;
    assert_eq!(
        res["data"]["datanet"]["contributions"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        288,
        "240 contributions, then a second wave of 48 for the scheduled job"
    );
    let contribution = res["data"]["datanet"]["contributions"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Each contribution's Merkle proof, built by the server from the batch manifest in the
    // demo's lake, leads to the root its batch anchored on chain.
    let res = post_graphql(
        url,
        "{ contributions(first: 1000) { nodes { status merkleProof { valid proof } anchor { merkleRoot } } } }",
    )
    .await;
    let nodes = res["data"]["contributions"]["nodes"]
        .as_array()
        .expect("an answer");
    assert_eq!(nodes.len(), 288, "{res}");
    for c in nodes {
        assert_eq!(c["status"], "ANCHORED", "{c}");
        assert_eq!(c["merkleProof"]["valid"], true, "{c}");
        assert!(
            !c["merkleProof"]["proof"].as_array().unwrap().is_empty(),
            "{c}"
        );
    }

    // The tour link: its queries, opened as GraphiQL tabs, each answer with data: the
    // answer's recorded credit sums to 1, the contributor who claimed was paid, and the
    // answer's ancestry comes as a first page of a longer walk that reaches contributors.
    let tour = url::Url::parse(
        lines
            .iter()
            .find_map(|l| {
                l.split_once("): ")
                    .filter(|(h, _)| h.starts_with("tour ("))
                    .map(|(_, u)| u)
            })
            .expect("a tour link"),
    )
    .unwrap();
    assert_eq!(tour.path(), "/graphql");
    let queries: Vec<String> = tour
        .query_pairs()
        .filter(|(k, _)| k == "query")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(queries.len(), 5, "{tour}");
    let mut answers = Vec::new();
    for q in &queries {
        let res = post_graphql(url, q).await;
        assert!(res.get("errors").is_none(), "{q}: {res}");
        answers.push(res);
    }
    let credit: f64 = answers[2]["data"]["answer"]["attribution"]["contributors"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", answers[2]))
        .iter()
        .map(|c| c["share"].as_f64().unwrap())
        .sum();
    assert!((credit - 1.0).abs() < 1e-9, "{}", answers[2]);
    assert!(
        !answers[3]["data"]["contributor"]["rewards"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{}",
        answers[3]
    );
    let up = &answers[4]["data"]["ancestry"];
    assert_eq!(up["nodes"].as_array().map(Vec::len), Some(10), "{up}");
    assert_eq!(up["pageInfo"]["hasNextPage"], true, "{up}");
    assert!(up["totalCount"].as_u64().unwrap() > 10, "{up}");
    assert!(
        !up["summary"]["topContributors"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{up}"
    );
    // One screen per step, not the 2,400 lines of JSON the demo printed before.
    assert!(lines.len() < 400, "the demo printed {} lines", lines.len());

    // SQL over the lake from the same server: the 288 contributions by 6 contributors.
    let sql_url = url.replace("/graphql", "/sql");
    let res = post_sql(
        &sql_url,
        "SELECT COUNT(*) AS people, SUM(contributions) AS total FROM contributor_leaderboard",
    )
    .await;
    assert_eq!(
        res["rows"],
        serde_json::json!([{"people": 6, "total": 288}]),
        "{res}"
    );

    // The typed tables the indexer mirrors: each adapter with its training run's measurements
    // from a manifest that agrees with the chain, the snapshot it trained on, the Datanet.
    let res = post_sql(
        &sql_url,
        "SELECT a.version, a.line, t.manifest_verified, t.eval_loss, t.base_eval_loss, \
         s.verified AS snapshot_verified, s.datanet_ids \
         FROM adapters a JOIN training_runs t ON t.adapter_id = a.adapter_id \
         LEFT JOIN snapshots s ON s.snapshot_id = a.snapshot_id ORDER BY a.block_number",
    )
    .await;
    let adapters = res["rows"].as_array().unwrap_or_else(|| panic!("{res}"));
    assert!(!adapters.is_empty(), "{res}");
    for a in adapters {
        assert_eq!(a["line"], "kitchen-assistant", "{a}");
        assert_eq!(a["manifest_verified"], true, "{a}");
        assert_eq!(a["snapshot_verified"], true, "{a}");
        assert_eq!(a["datanet_ids"], "[1]", "{a}");
        assert!(
            a["eval_loss"].as_f64().unwrap() < a["base_eval_loss"].as_f64().unwrap(),
            "{a}"
        );
    }

    // The ModelFactory is served too: its preview of a job on the demo's Datanet.
    let factory = lines
        .iter()
        .find_map(|l| l.strip_prefix("ModelFactory (")?.split_once("): "))
        .map(|(_, u)| u)
        .expect("the ModelFactory's URL");
    assert!(factory.ends_with("/#/factory"), "{factory}");
    let res = post_graphql(
        url,
        "{ snapshotPreview(datanets: [\"kitchen-conversions\"], use: \"commercial\") { contributions allowed } }",
    )
    .await;
    assert_eq!(
        res["data"]["snapshotPreview"],
        serde_json::json!({"contributions": 288, "allowed": true}),
        "{res}"
    );

    // The explorer: a contribution's page, in headless Chromium, checks the Merkle proof
    // against the root it reads itself from the registry contract over the demo's chain RPC.
    let explorer = after(&lines, "Explorer (lineage, proofs, attribution): ");
    let page = browse(
        &format!("{explorer}#/contribution/{contribution}"),
        "contribution",
    )
    .await;
    assert_eq!(page["texts"]["proof-result"], "valid", "{page}");
    // Its content, read from the lake over SQL, hashes in the browser to the signed hash.
    assert_eq!(page["texts"]["content-check"], "matches", "{page}");
    let content = page["texts"]["content-text"].as_str().unwrap();
    assert!(content.contains("\"question\""), "{content}");
    let proof = page["texts"]["proof"].as_str().unwrap();
    assert!(
        proof.contains("read just now from the registry contract"),
        "{proof}"
    );

    // The Datanet as of its first batch's Delta version, then as of now: SQL time travel.
    let batches = post_sql(
        &sql_url,
        "SELECT MIN(lake_version) AS first FROM batches WHERE datanet_id = 1",
    )
    .await;
    let first = batches["rows"][0]["first"].as_i64().unwrap();
    let then = post_sql(
        &sql_url,
        &format!("SELECT COUNT(*) AS n FROM \"contributions@v{first}\" WHERE datanet_id = 1"),
    )
    .await;
    let page = browse(&format!("{explorer}#/datanet/1?v={first}"), "datanet-then").await;
    assert_eq!(page["texts"]["asof-version"], first.to_string(), "{page}");
    let shown = |page: &Value| {
        let n = page["texts"]["asof-contributions"].as_str().unwrap();
        n.replace(',', "")
    };
    assert_eq!(shown(&page), then["rows"][0]["n"].to_string(), "{page}");
    let page = browse(&format!("{explorer}#/datanet/1"), "").await;
    assert_eq!(shown(&page), "288", "{page}");
    // Day by day and its largest contributors, counted over SQL: 288 to date, 6 people.
    assert_eq!(page["texts"]["stats-total"], "288", "{page}");
    assert!(page["rows"]["stats-days"].as_u64().unwrap() >= 1, "{page}");
    assert_eq!(page["rows"]["top-contributors"], 6, "{page}");
    // Its rules: the manifest from the lake, checked against the schema hash on chain.
    assert_eq!(
        page["texts"]["rules-licenses"], "CC-BY-4.0, CC0-1.0",
        "{page}"
    );
    assert_eq!(page["rows"]["rules-fields"], 2, "{page}");
    // An answer's lineage, two hops up, drawn; and the adapter that served it.
    let res = post_graphql(
        url,
        "{ inferences(first: 1) { nodes { answers { id nodeId fee adapter { id } \
         batch { settledIn { epoch } } attribution { contributors { address } contributions { id } } } } } }",
    )
    .await;
    let answer = &res["data"]["inferences"]["nodes"][0]["answers"][0];
    let node = answer["nodeId"].as_str().unwrap();
    let node: String = url::form_urlencoded::byte_serialize(node.as_bytes()).collect();
    let page = browse(&format!("{explorer}#/lineage/{node}?depth=2"), "lineage").await;
    assert!(page["nodes"].as_u64().unwrap() > 3, "{page}");
    let adapter = answer["adapter"]["id"].as_str().unwrap();
    let page = browse(&format!("{explorer}#/adapter/{adapter}"), "adapter").await;
    assert!(
        page["texts"].get("loss-curve").is_some(),
        "the loss curve is drawn: {page}"
    );
    let title = page["texts"]["title"].as_str().unwrap();
    assert!(title.starts_with("Adapter kitchen-assistant@1."), "{title}");

    // Follow the money: the answer's fee, settled in epoch 1, the contributors' half of it
    // divided by the answer's credit, to each contributor's leaf and claim. The demo's claim
    // (`claimed … for 0xWHO in tx 0xTX`) shows on its contributor's page, in GraphQL and in
    // SQL; another credited contributor's reward is still to claim.
    assert_eq!(answer["batch"]["settledIn"]["epoch"], 1, "{answer}");
    let page = browse(
        &format!("{explorer}#/money/{}", answer["id"].as_str().unwrap()),
        "money",
    )
    .await;
    let fee: u128 = answer["fee"].as_str().unwrap().parse().unwrap();
    assert_eq!(page["texts"]["money-epoch"], "epoch 1", "{page}");
    let exact = |k: &str| page["texts"][k].as_str().unwrap().replace(',', "");
    assert_eq!(exact("money-fee"), fee.to_string(), "{page}");
    assert_eq!(exact("money-part"), (fee / 2).to_string(), "{page}");
    let credited = |k: &str| answer["attribution"][k].as_array().unwrap().len();
    assert_eq!(
        page["rows"]["money-contributors"],
        credited("contributors"),
        "{page}"
    );
    assert_eq!(
        page["rows"]["money-contributions"],
        credited("contributions").min(50),
        "{page}"
    );
    let claimed = after(&lines, "claimed ");
    let who = claimed
        .split(" for ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let tx = claimed.rsplit(' ').next().unwrap();
    let page = browse(&format!("{explorer}#/contributor/{who}"), "").await;
    let claim = page["texts"]["claim"].as_str().unwrap();
    assert!(
        claim.starts_with("claimed") && claim.contains(&tx[tx.len() - 6..]),
        "{page}"
    );
    let res = post_graphql(
        url,
        &format!(
            "{{ contributor(address: \"{who}\") {{ rewards {{ epoch claim {{ txHash }} }} }} }}"
        ),
    )
    .await;
    assert_eq!(
        res["data"]["contributor"]["rewards"][0]["claim"]["txHash"], tx,
        "{res}"
    );
    let other = answer["attribution"]["contributors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap())
        .find(|a| !a.eq_ignore_ascii_case(who))
        .expect("the answer credits more than one contributor");
    let page = browse(&format!("{explorer}#/contributor/{other}"), "").await;
    let claim = page["texts"]["claim"].as_str().unwrap();
    assert!(claim.starts_with("to claim"), "{page}");
    let res = post_sql(
        &sql_url,
        "SELECT contributor, claimed_tx FROM reward_ledger WHERE claimed_tx IS NOT NULL",
    )
    .await;
    assert_eq!(
        res["rows"],
        serde_json::json!([{"contributor": format!("contributor:{}", who.to_lowercase()), "claimed_tx": tx}]),
        "{res}"
    );

    // The printed psql command works: the real psql over the PostgreSQL wire protocol.
    let command = after(&lines, "SQL with psql: ");
    let words: Vec<&str> = command.split_whitespace().collect();
    let flag = |f: &str| words[words.iter().position(|w| *w == f).unwrap() + 1];
    let psql = std::env::var_os("TRIBUTARY_PG_BIN")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into())
        .join("psql");
    let out = std::process::Command::new(&psql)
        .args(["-X", "-A", "-t", "-h", flag("-h"), "-p", flag("-p")])
        .args(["-U", flag("-U"), "-d", flag("-d")])
        .args([
            "-c",
            "SELECT contributor, contributions FROM contributor_leaderboard",
        ])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", psql.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = String::from_utf8_lossy(&out.stdout);
    let total: u64 = rows
        .lines()
        .map(|l| l.rsplit('|').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!((rows.lines().count(), total), (6, 288), "{rows}");

    // The demo config's schedule ran once on the second wave: `jobs list` shows it.
    let out = crate::cli::tributary()
        .args(["jobs", "list", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("kitchen-refresh [0 0 * * * *]"), "{text}");
    assert!(text.contains("#1 ") && text.contains("(manual"), "{text}");
    assert!(
        text.contains("48 new contributions")
            && (text.contains(" published ") || text.contains(" not_promoted ")),
        "{text}"
    );

    // A Datanet manifest altered in the lake is refused, not shown as its rules.
    let manifest = data.join("lake/artifacts/datanets/kitchen-conversions.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\"CC0-1.0\"", "\"CC-BY-NC-4.0\"")).unwrap();
    let res = post_graphql(url, "{ datanet(id: 1) { manifest } }").await;
    let error = res["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(error.contains("it was altered"), "{res}");

    // Ctrl-C stops it cleanly.
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wait(&mut child);
    assert!(status.success(), "{status:?}");
}

/// `demo --exit` in a non-interactive shell exits 0 after printing; the finished data
/// directory, moved elsewhere (the lake refers to its objects by keys relative to its root),
/// still verifies, snapshots, attributes, and indexes again from scratch into the same graph.
#[test]
fn demo_exit_then_move_and_reindex_from_scratch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let lines = demo_exit(&data);
    let contributions = answer(&lines)["datanet"]["contributions"]["nodes"].clone();
    assert_eq!(contributions.as_array().unwrap().len(), 60);
    check_lineage(&lines, 60);
    // The first 60 records hold no butter: the answer is not checked.
    check_inference(&lines, None);
    // The output is a summary: lists cut to three items, full answers in files.
    assert!(
        lines.iter().any(|l| l.contains("\"… 57 more\"")),
        "the contributions are abridged"
    );

    // Run again: the same contribution ids, snapshot, adapter and answer.
    let again = dir.path().join("again");
    let second = demo_exit(&again);
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&contributions),
        ids(&answer(&second)["datanet"]["contributions"]["nodes"])
    );
    let (a, b) = (
        &answer_n(&lines, 1)["adapter"],
        &answer_n(&second, 1)["adapter"],
    );
    assert_eq!(a["snapshot"]["id"], b["snapshot"]["id"]);
    assert_eq!(a["id"], b["id"], "the same adapter");
    let (a, b) = (answer_n(&lines, 2), answer_n(&second, 2));
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
    assert_eq!(a["attribution"]["top"], b["attribution"]["top"]);
    // The same record but its nonce: each answer has its own id.
    for key in ["request_hash", "response_hash", "attribution_root", "fee"] {
        assert_eq!(a["inference"][key], b["inference"][key], "{key}");
    }
    assert_ne!(a["inference"]["id"], b["inference"]["id"]);
    // The graph as the demo left it, after indexing the training.
    let summary = lines
        .iter()
        .rev()
        .find_map(|l| l.split_once("; graph has "))
        .expect("an index summary")
        .1
        .to_string();

    // Move the whole directory: nothing may refer to where it was.
    let moved = dir.path().join("elsewhere/demo-moved");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&data, &moved).unwrap();
    let data = moved;
    let run = |args: &[&str]| succeeded(tributary().args(args).arg("--data-dir").arg(&data));
    let text = run(&["snapshot", "--datanet", "kitchen-conversions"]);
    assert!(text.contains(" contributions of Datanet(s)"), "{text}");
    let text = run(&[
        "attribute",
        "--adapter",
        "kitchen-assistant@1.0.0",
        "--prompt",
        "question: How many grams are in a cup of butter?\nanswer:",
        "--output",
        " 227 grams",
        "--top",
        "2",
    ]);
    assert!(text.contains("top 2 of "), "{text}");

    // A sample contribution verifies against the chain; a forged id does not.
    let id = contributions[0]["id"].as_str().unwrap().to_string();
    let out = tributary()
        .args(["verify", &id, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let last = if id.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &id[..65]);
    let out = tributary()
        .args(["verify", &forged, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    std::fs::remove_file(data.join("index.db")).unwrap();
    let out = tributary()
        .args(["index", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same nodes and edges as the demo's own index.
    assert_eq!(text.trim().split_once("; graph has ").unwrap().1, summary);
}

/// `tributary demo --exit --records 60` into `data`: its output lines (it must succeed).
fn demo_exit(data: &std::path::Path) -> Vec<String> {
    let mut cmd = tributary();
    cmd.args(["demo", "--exit", "--records", "60", "--data-dir"])
        .arg(data)
        .stdin(Stdio::null());
    succeeded(&mut cmd).lines().map(str::to_string).collect()
}

/// The demo process, stopped as Ctrl-C stops it (then killed) when the test ends early, so a
/// failed assertion leaves no demo and no anvil behind.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &self.0.id().to_string()])
                .status();
            let start = std::time::Instant::now();
            while matches!(self.0.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(20)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Stopped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Stopped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

/// Polls `done` (every `poll` it is given) until it returns a value, for as long as the
/// test's processes make progress ([`wait::Progress`]): the first demo on a fresh machine
/// pretrains the base model and trains, printing nothing, for many minutes under load, or
/// waits on another test's demo pretraining it.
fn while_working<T>(what: &str, mut done: impl FnMut(Duration) -> Option<T>) -> T {
    let mut progress = wait::Progress::new();
    loop {
        if let Some(out) = done(Duration::from_secs(5)) {
            return out;
        }
        progress.check(what);
    }
}

/// The demo's next line on stdout, waiting for as long as the demo makes progress.
fn next_line(rx: &std::sync::mpsc::Receiver<String>, lines: &[String]) -> String {
    use std::sync::mpsc::RecvTimeoutError;
    let last = lines.last().map_or("", String::as_str);
    while_working(&format!("the demo, after {last:?}"), |poll| {
        match rx.recv_timeout(poll) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the demo stopped before serving; its last line: {last:?}")
            }
        }
    })
}

/// The child's exit status, waiting for as long as it makes progress (see [`wait::Progress`]).
fn wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    while_working("the demo, stopping", |poll| {
        let start = std::time::Instant::now();
        while start.elapsed() < poll {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    })
}

/// What the explorer page at `url` shows in headless Chromium (`api/tests/browser/explorer.py`).
/// With `TRIBUTARY_SCREENSHOTS` set to a folder, the page is saved there as `NAME.png` (the
/// README's screenshots: `TRIBUTARY_SCREENSHOTS=docs/screenshots cargo test --test e2e demo`);
/// an empty `name` takes none.
async fn browse(url: &str, name: &str) -> Value {
    browse_with(url, name, &[]).await
}

/// [`browse`], acting on the page first (`explorer.py`'s actions: `click:TESTID`,
/// `fill:TESTID=TEXT`, `wait:TESTID=TEXT`, …).
pub(crate) async fn browse_with(url: &str, name: &str, actions: &[String]) -> Value {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("{name} is not set: run `eval \"$(scripts/setup.sh)\"`"))
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/api/tests/browser/explorer.py");
    let mut command = tokio::process::Command::new(env("TRIBUTARY_PYTHON"));
    if let Some(dir) = std::env::var_os("TRIBUTARY_SCREENSHOTS").filter(|_| !name.is_empty()) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        command.env("TRIBUTARY_SCREENSHOT", dir.join(format!("{name}.png")));
    }
    let out = command
        .args([script, url])
        .args(actions)
        .env("TRIBUTARY_CHROMIUM", env("TRIBUTARY_CHROMIUM"))
        .env("TRIBUTARY_CHROMEDRIVER", env("TRIBUTARY_CHROMEDRIVER"))
        .env("SE_OFFLINE", "true")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the browser run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The JSON answer of a GraphQL `query` posted to `url`.
async fn post_graphql(url: &str, query: &str) -> Value {
    reqwest::Client::new()
        .post(url)
        .json(&serde_json::json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The JSON answer of `POST url` with `query` as the body (the server's SQL endpoint).
async fn post_sql(url: &str, query: &str) -> Value {
    reqwest::Client::new()
        .post(url)
        .body(query.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
