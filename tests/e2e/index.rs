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
