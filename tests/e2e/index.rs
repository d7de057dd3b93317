//! `tributary index` killed with SIGKILL at random moments, during backfill and while
//! following a chain that keeps growing: after a restart, the graph equals a fresh index and
//! the lake mirror holds every event once.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use arrow::array::AsArray;
use tributary_lake::Lake;
use tributary_schemas::tables::names;
use tributary_sql::Store;

use crate::datanets::{Setup, records, setup};
use crate::wait;

async fn store(path: &Path) -> Store {
    Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

fn index(s: &Setup, extra: &[&str]) -> std::process::Command {
    let mut c = s.cmd(&["index", "--range", "1", "--poll", "0.05"]);
    c.args(extra);
    c
}

#[tokio::test]
async fn a_killed_indexer_resumes_without_missing_or_duplicated_events() {
    let s = setup();
    // About 40 blocks of history to backfill one block at a time.
    let input = records(s.dir(), "a.jsonl", 0, 60);
    assert!(s.contribute(1, &input, 2).status().unwrap().success());

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed {seed}");
    for round in 0..24 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis(200 + (seed >> 33) % 1200);
        let mut child = index(&s, &["--follow"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if round % 4 == 3 {
            // The chain grows while the indexer follows it.
            let more = records(s.dir(), &format!("m{round}.jsonl"), 1000 + round * 10, 4);
            assert!(s.contribute(2, &more, 2).status().unwrap().success());
        }
        std::thread::sleep(after);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    let out = index(&s, &[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let chain_id = 31337;
    let killed = store(&s.data.join("index.db")).await;
    let fresh_path = s.dir().join("fresh.db");
    let fresh_url = format!("sqlite://{}", fresh_path.display());
    let out = s
        .cmd(&["index", "--no-mirror", "--store", &fresh_url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = store(&fresh_path).await;
    let (nodes, edges) = killed.graph(chain_id).await.unwrap();
    assert!(nodes.len() > 50, "{} nodes", nodes.len());
    assert_eq!((nodes, edges), fresh.graph(chain_id).await.unwrap());
    let all = u64::MAX >> 1;
    let events = killed.rows_between(chain_id, 0, all).await.unwrap().0;
    assert_eq!(
        events,
        fresh.rows_between(chain_id, 0, all).await.unwrap().0
    );

    // The mirror: every event once.
    let lake = Lake::open(s.data.join("lake").to_str().unwrap()).unwrap();
    let mut mirrored = Vec::new();
    for b in lake.read(names::CHAIN_EVENTS, None).await.unwrap() {
        let hash = b.column_by_name("block_hash").unwrap().as_string::<i32>();
        let index = b
            .column_by_name("log_index")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            mirrored.push((hash.value(i).to_string(), index.value(i) as u64));
        }
    }
    let unique: BTreeSet<_> = mirrored.iter().cloned().collect();
    assert_eq!(unique.len(), mirrored.len(), "no event mirrored twice");
    let want: BTreeSet<_> = events
        .iter()
        .map(|e| (e.pos.block_hash.to_string(), e.pos.log_index))
        .collect();
    assert_eq!(unique, want, "every event mirrored");
}

/// The value of `name` in the Prometheus text served at `port`, if it is there yet.
fn scrape(port: u16, name: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(conn, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).ok()?;
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn over_websocket_the_follower_wakes_on_new_heads_and_serves_metrics() {
    let s = setup();
    let mut ws = s.rpc_url().clone();
    ws.set_scheme("ws").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Polling every 10 minutes: only the node's newHeads notifications can wake it in time.
    let child = crate::cli::tributary()
        .args(["index", "--follow", "--poll", "86400", "--metrics"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&s.data)
        .arg("--rpc-url")
        .arg(ws.as_str())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _child = KillOnDrop(child);
    let at_head = || {
        let head = scrape(port, "tributary_index_head_block").unwrap_or(0);
        head > 0 && scrape(port, "tributary_index_checkpoint_block") == Some(head)
    };
    wait::until(
        "the indexer reaches the head",
        Duration::from_millis(100),
        || at_head().then_some(()),
    );
    let before = scrape(port, "tributary_index_events_total").unwrap();
    assert!(before >= 1, "DatanetCreated is indexed");

    let input = records(s.dir(), "a.jsonl", 0, 6);
    assert!(s.contribute(1, &input, 3).status().unwrap().success());
    let head = tributary_chain::Chain::connect(tributary_chain::ChainConfig::rpc(
        s.rpc_url().clone(),
        &s.data,
    ))
    .await
    .unwrap()
    .head()
    .await
    .unwrap();
    // New heads wake the follower: it polls once a day, so catching up at all proves it (the
    // 600 s bound only ends a test whose follower was never woken).
    let woken = std::time::Instant::now();
    while scrape(port, "tributary_index_checkpoint_block").is_none_or(|c| c < head) {
        assert!(
            woken.elapsed() < Duration::from_secs(600),
            "new heads did not wake the follower (it polls once a day)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = scrape(port, "tributary_index_events_total").unwrap();
    assert!(
        after >= before + 2,
        "two BatchAnchored: {before} -> {after}"
    );
    assert_eq!(scrape(port, "tributary_index_lag_blocks"), Some(0));
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
