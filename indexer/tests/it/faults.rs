//! The indexer through a misbehaving RPC endpoint: a proxy in front of anvil answers some
//! requests with 429 and Retry-After, 500s, silence past the client's timeout, bodies cut
//! short, and a head that goes backwards. The graph converges to the one a clean endpoint
//! gives. The same proxy also reorgs the chain at the worst moment of a step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tributary_chain::{Chain, ChainConfig};
use tributary_indexer::Indexer;

use crate::common::{Env, Rng, env, fresh_index};

#[derive(Default)]
struct Faults {
    rng: Rng,
    requests: AtomicU64,
    rate_limited: AtomicU64,
    server_errors: AtomicU64,
    timeouts: AtomicU64,
    truncated: AtomicU64,
    head_back: AtomicU64,
    forwarded: AtomicU64,
    /// Forward everything: no faults.
    quiet: AtomicBool,
    /// When set, the next `eth_blockNumber` first reorgs this many blocks and mines one more.
    reorg_before_head: AtomicU64,
    /// An outage: every request is answered 503 while set.
    down: AtomicBool,
    /// Requests answered 503 by the outage.
    refused: AtomicU64,
}

impl Faults {
    /// A number in 0..100 that picks the fault. The first requests get each fault in turn,
    /// and the first head asked for goes back, so every kind is injected on every seed.
    fn roll(&self, method: &str) -> u64 {
        if self.quiet.load(Ordering::SeqCst) {
            return 99;
        }
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        if n < 4 {
            return [0, 8, 16, 19][n as usize];
        }
        if method == "eth_blockNumber" && self.head_back.load(Ordering::SeqCst) == 0 {
            return 27;
        }
        self.rng.below(100)
    }
}

/// Starts the proxy in front of `upstream` (host:port); returns its URL.
async fn proxy(upstream: String, faults: Arc<Faults>) -> url::Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            let (upstream, faults) = (upstream.clone(), faults.clone());
            tokio::spawn(async move {
                let _ = serve(conn, &upstream, &faults).await;
            });
        }
    });
    url
}

async fn read_request(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(buf[end + 4..end + 4 + len].to_vec());
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn response(status: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

async fn forward(upstream: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {upstream}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    up.write_all(head.as_bytes()).await?;
    up.write_all(body).await?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw).await?;
    let start = find(&raw, b"\r\n\r\n").map_or(raw.len(), |i| i + 4);
    Ok(raw[start..].to_vec())
}

async fn serve(mut conn: TcpStream, upstream: &str, f: &Faults) -> std::io::Result<()> {
    let body = read_request(&mut conn).await?;
    let method = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["method"].as_str().map(str::to_string))
        .unwrap_or_default();
    if method == "eth_blockNumber" {
        let depth = f.reorg_before_head.swap(0, Ordering::SeqCst);
        if depth > 0 {
            let reorg = serde_json::json!({
                "jsonrpc": "2.0", "id": 1, "method": "anvil_reorg", "params": [depth, []]
            });
            forward(upstream, reorg.to_string().as_bytes()).await?;
            let mine = br#"{"jsonrpc":"2.0","id":1,"method":"evm_mine","params":[]}"#;
            forward(upstream, mine).await?;
        }
    }
    if f.down.load(Ordering::SeqCst) {
        f.refused.fetch_add(1, Ordering::SeqCst);
        conn.write_all(&response("503 Service Unavailable", "", b"down"))
            .await?;
        return conn.shutdown().await;
    }
    let roll = f.roll(&method);
    let reply = match roll {
        0..=7 => {
            f.rate_limited.fetch_add(1, Ordering::SeqCst);
            response("429 Too Many Requests", "Retry-After: 1\r\n", b"")
        }
        8..=15 => {
            f.server_errors.fetch_add(1, Ordering::SeqCst);
            response("500 Internal Server Error", "", b"upstream failed")
        }
        16..=18 => {
            f.timeouts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3)).await;
            return Ok(());
        }
        19..=26 => {
            f.truncated.fetch_add(1, Ordering::SeqCst);
            let full = forward(upstream, &body).await?;
            let mut out = response("200 OK", "", &full);
            out.truncate(out.len() - full.len() / 2 - 1);
            out
        }
        27..=46 if method == "eth_blockNumber" => {
            f.head_back.fetch_add(1, Ordering::SeqCst);
            let full = forward(upstream, &body).await?;
            let mut v: serde_json::Value = serde_json::from_slice(&full).unwrap();
            let head =
                u64::from_str_radix(v["result"].as_str().unwrap().trim_start_matches("0x"), 16)
                    .unwrap();
            v["result"] = format!("{:#x}", head.saturating_sub(5)).into();
            response("200 OK", "", v.to_string().as_bytes())
        }
        _ => {
            f.forwarded.fetch_add(1, Ordering::SeqCst);
            response("200 OK", "", &forward(upstream, &body).await?)
        }
    };
    conn.write_all(&reply).await?;
    conn.shutdown().await
}

/// Whether `store` has indexed chain `chain_id` up to block `head`.
async fn indexed_to(store: &tributary_sql::Store, chain_id: u64, head: u64) -> bool {
    store
        .checkpoint(chain_id, "lineage")
        .await
        .unwrap()
        .is_some_and(|c| c.block_number == head)
}

async fn build_history(env: &Env) {
    for i in 0..12 {
        if i % 3 == 0 {
            env.batch().await;
        } else {
            env.datanet().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_endpoint_gives_the_same_graph() {
    let env = env().await;
    build_history(&env).await;
    let faults = Arc::new(Faults {
        rng: Rng::from_clock("fault"),
        ..Faults::default()
    });
    let upstream = env.chain.url().authority().to_string();
    let url = proxy(upstream, faults.clone()).await;
    let config = ChainConfig {
        max_retries: 30,
        backoff_ms: 10,
        request_timeout: Duration::from_secs(1),
        ..ChainConfig::rpc(url, env.dir.path())
    };
    let flaky = Chain::connect(config).await.unwrap();

    let store = env.store("faulty.db").await;
    let chain_id = env.chain.chain_id();
    let head = env.chain.head().await.unwrap();
    let head_hash = env.chain.block_hash(head).await.unwrap().to_string();
    let indexer = Indexer::new(&flaky, &store, &env.lake).with_range(3);
    // A head reported too low ends a run early; the next run goes on from the checkpoint.
    for _ in 0..50 {
        indexer.run_to_head().await.unwrap();
        let cp = store.checkpoint(chain_id, "lineage").await.unwrap();
        if cp.is_some_and(|c| c.block_number == head && c.block_hash == head_hash) {
            break;
        }
    }
    let clean = fresh_index(&env).await;
    let graph = store.graph(chain_id).await.unwrap();
    assert!(graph.0.len() > 10);
    assert_eq!(graph, clean.graph(chain_id).await.unwrap());
    let count = |a: &AtomicU64| a.load(Ordering::SeqCst);
    eprintln!(
        "faults: {} rate limited, {} server errors, {} timeouts, {} truncated, {} heads back, {} forwarded",
        count(&faults.rate_limited),
        count(&faults.server_errors),
        count(&faults.timeouts),
        count(&faults.truncated),
        count(&faults.head_back),
        count(&faults.forwarded)
    );
    for kind in [
        &faults.rate_limited,
        &faults.server_errors,
        &faults.timeouts,
        &faults.truncated,
        &faults.head_back,
    ] {
        assert!(count(kind) > 0, "every kind of fault was injected");
    }
}

/// A reorg that lands after a step has checked its checkpoint and before it reads the next
/// blocks: the new blocks do not extend the checkpoint, so the step must not apply them on
/// top of the old fork's rows (which no later check would find), and the graph must end equal
/// to a fresh index of the canonical chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_between_the_checkpoint_check_and_the_next_blocks_is_rolled_back() {
    let env = env().await;
    build_history(&env).await;
    let faults = Arc::new(Faults::default());
    faults.quiet.store(true, Ordering::SeqCst);
    let url = proxy(env.chain.url().authority().to_string(), faults.clone()).await;
    let via_proxy = Chain::connect(ChainConfig::rpc(url, env.dir.path()))
        .await
        .unwrap();
    let store = env.store("raced.db").await;
    let chain_id = env.chain.chain_id();
    let indexer = Indexer::new(&via_proxy, &store, &env.lake).with_mirror(false);
    indexer.run_to_head().await.unwrap();
    let before = store.graph(chain_id).await.unwrap();

    // The next step checks its checkpoint, then asks for the head: the chain reorgs 6 blocks
    // (two Datanets and a batch among them) and grows by one just then.
    faults.reorg_before_head.store(6, Ordering::SeqCst);
    let stats = indexer.run_to_head().await.unwrap();
    assert_eq!(
        faults.reorg_before_head.load(Ordering::SeqCst),
        0,
        "the reorg happened"
    );
    assert!(stats.reorgs >= 1, "the reorg was seen: {stats:?}");

    let fresh = fresh_index(&env).await;
    let (nodes, edges) = store.graph(chain_id).await.unwrap();
    let (want_nodes, want_edges) = fresh.graph(chain_id).await.unwrap();
    assert!(
        want_nodes.len() < before.0.len(),
        "the reorg removed nodes: {} -> {}",
        before.0.len(),
        want_nodes.len()
    );
    assert_eq!(nodes, want_nodes);
    assert_eq!(edges, want_edges);
}

/// An outage longer than the client's retries: the follower logs the failed steps, waits and
/// tries again, and indexes what happened meanwhile once the endpoint is back (before, the
/// first failed step ended `follow`, and with it `serve`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_outlives_an_outage() {
    let env = env().await;
    build_history(&env).await;
    let faults = Arc::new(Faults::default());
    faults.quiet.store(true, Ordering::SeqCst);
    let url = proxy(env.chain.url().authority().to_string(), faults.clone()).await;
    let config = ChainConfig {
        max_retries: 1,
        backoff_ms: 10,
        ..ChainConfig::rpc(url, env.dir.path())
    };
    let via_proxy = Chain::connect(config).await.unwrap();
    let store = env.store("outage.db").await;
    let chain_id = env.chain.chain_id();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let indexer = Indexer::new(&via_proxy, &store, &env.lake)
        .with_mirror(false)
        .with_poll_interval(Duration::from_millis(20));
    let follow = indexer.follow(async {
        let _ = stop_rx.await;
    });
    tokio::pin!(follow);
    let indexed = |head: u64| indexed_to(&store, chain_id, head);
    let drive = async {
        let head = env.chain.head().await.unwrap();
        while !indexed(head).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Down for long enough that several steps fail (each spends two tries).
        faults.down.store(true, Ordering::SeqCst);
        while faults.refused.load(Ordering::SeqCst) < 6 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let late = env.datanet().await;
        faults.down.store(false, Ordering::SeqCst);
        let head = env.chain.head().await.unwrap();
        while !indexed(head).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        late
    };
    // The waits above follow progress; this only keeps a hung run from hanging CI.
    let drive = tokio::time::timeout(Duration::from_secs(600), drive);
    let late = tokio::select! {
        stopped = &mut follow => panic!("the follower stopped during the outage: {stopped:?}"),
        late = drive => late.expect("no progress for 10 minutes"),
    };
    let _ = stop_tx.send(());
    follow.await.unwrap();
    let (nodes, _) = store.graph(chain_id).await.unwrap();
    assert!(
        nodes
            .iter()
            .any(|n| n.id == tributary_schemas::lineage::datanet_id(late)),
        "the Datanet created during the outage is indexed"
    );
}

/// A lake outage while following an idle chain: a step indexes a new block into the store but
/// cannot write the lake mirror; once the lake is back, the mirror catches up without another
/// block. Before, only the next block (or a restart) mirrored it, so on an idle chain the
/// lake's lineage tables stayed behind the store indefinitely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_catches_up_after_a_lake_outage_on_an_idle_chain() {
    use tributary_schemas::tables::names;

    let env = env().await;
    env.datanet().await;
    let faults = Arc::new(Faults::default());
    faults.quiet.store(true, Ordering::SeqCst);
    let url = proxy(env.chain.url().authority().to_string(), faults.clone()).await;
    let via_proxy = Chain::connect(ChainConfig::rpc(url, env.dir.path()))
        .await
        .unwrap();
    let store = env.store("mirror.db").await;
    let chain_id = env.chain.chain_id();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let indexer =
        Indexer::new(&via_proxy, &store, &env.lake).with_poll_interval(Duration::from_millis(20));
    let follow = indexer.follow(async {
        let _ = stop_rx.await;
    });
    tokio::pin!(follow);
    let indexed = |head: u64| indexed_to(&store, chain_id, head);
    // Mirrored: the lake's node rows are the store's.
    let mirrored = || {
        let (store, lake) = (&store, &env.lake);
        async move {
            let in_store = store.graph(chain_id).await.unwrap().0.len();
            let in_lake: usize = match lake.read(names::LINEAGE_NODES, None).await {
                Ok(rows) => rows.iter().map(|b| b.num_rows()).sum(),
                Err(_) => return false,
            };
            in_lake == in_store
        }
    };
    let log = env
        .dir
        .path()
        .join("lake")
        .join(names::LINEAGE_NODES)
        .join("_delta_log");
    let aside = log.with_extension("aside");
    let drive = async {
        let head = env.chain.head().await.unwrap();
        while !(indexed(head).await && mirrored().await) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mirrored_nodes = store.graph(chain_id).await.unwrap().0.len();
        // The lake's table cannot be read or written: its log is a file, not a folder.
        std::fs::rename(&log, &aside).unwrap();
        std::fs::write(&log, b"not a Delta log").unwrap();
        env.datanet().await;
        let head = env.chain.head().await.unwrap();
        while !indexed(head).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The step that indexed the block has tried (and failed) to mirror it once the
        // follower is asking the node again.
        let asked = faults.forwarded.load(Ordering::SeqCst);
        while faults.forwarded.load(Ordering::SeqCst) < asked + 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            store.graph(chain_id).await.unwrap().0.len() > mirrored_nodes,
            "the store is ahead of the mirror"
        );
        std::fs::remove_file(&log).unwrap();
        std::fs::rename(&aside, &log).unwrap();
        // No new block from here on.
        while !mirrored().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // The waits above follow progress; this only keeps a hung run from hanging CI.
    let drive = tokio::time::timeout(Duration::from_secs(600), drive);
    tokio::select! {
        stopped = &mut follow => panic!("the follower stopped during the outage: {stopped:?}"),
        caught_up = drive => caught_up.expect("the mirror did not catch up in 10 minutes"),
    }
    let _ = stop_tx.send(());
    follow.await.unwrap();
}

/// Rows of table `table` in `lake`.
async fn mirrored_rows(lake: &tributary_lake::Lake, table: &str) -> usize {
    lake.read(table, None)
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

/// Another engine replaces `table` in place (a `CREATE OR REPLACE`: a new table id in the same
/// log, which keeps the old table's application transactions), empty.
async fn replace_in_place(lake: &tributary_lake::Lake, table: &str) {
    let old = lake.table(table).await.unwrap();
    let state = old.snapshot().unwrap();
    let columns: Vec<_> = state.schema().fields().cloned().collect();
    let partitions = state.metadata().partition_columns().to_vec();
    old.create()
        .with_columns(columns)
        .with_partition_columns(partitions)
        .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
        .await
        .unwrap();
}

/// A mirrored table that another engine replaced is cleared of the chain's rows and filled
/// again from the store: dropped and created again while the indexer ran (found by the id its
/// next append reports), replaced in place while it was stopped (found at its start; the
/// refill's appends carry a transaction id of their own, since the replaced table keeps the old
/// one's), and a new lake root indexed from the same store. Each table's progress belongs to
/// one Delta table (its `metaData.id`). Before, the old table's progress was taken as the new
/// table's, which then held only the blocks indexed after it.
#[tokio::test]
async fn a_mirrored_table_replaced_by_another_engine_is_filled_again() {
    use tributary_schemas::tables::names;

    let env = env().await;
    build_history(&env).await;
    let store = env.store("refill.db").await;
    let chain_id = env.chain.chain_id();
    let running = Indexer::new(&env.chain, &store, &env.lake);
    running.run_to_head().await.unwrap();
    let in_store = || async { store.graph(chain_id).await.unwrap().0.len() };
    assert_eq!(
        mirrored_rows(&env.lake, names::LINEAGE_NODES).await,
        in_store().await
    );
    let events = mirrored_rows(&env.lake, names::CHAIN_EVENTS).await;

    // Dropped and created again under the running indexer; a block follows.
    let dir = env.dir.path().join("lake").join(names::LINEAGE_NODES);
    std::fs::remove_dir_all(&dir).unwrap();
    env.lake.table(names::LINEAGE_NODES).await.unwrap();
    env.datanet().await;
    running.run_to_head().await.unwrap();
    assert_eq!(
        mirrored_rows(&env.lake, names::LINEAGE_NODES).await,
        in_store().await,
        "the table created again holds every node"
    );
    let more_events = mirrored_rows(&env.lake, names::CHAIN_EVENTS).await;
    assert!(
        more_events > events,
        "the untouched table took the new block"
    );

    // Replaced in place while no indexer runs; the next one starts.
    replace_in_place(&env.lake, names::CHAIN_EVENTS).await;
    assert_eq!(mirrored_rows(&env.lake, names::CHAIN_EVENTS).await, 0);
    Indexer::new(&env.chain, &store, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    assert_eq!(
        mirrored_rows(&env.lake, names::CHAIN_EVENTS).await,
        more_events,
        "the table replaced in place holds every event again"
    );

    // The same store mirrored into another lake root: every table is filled there too.
    let moved = tributary_lake::Lake::open(env.dir.path().join("moved").to_str().unwrap()).unwrap();
    Indexer::new(&env.chain, &store, &moved)
        .run_to_head()
        .await
        .unwrap();
    assert_eq!(
        mirrored_rows(&moved, names::LINEAGE_NODES).await,
        in_store().await
    );
    assert_eq!(
        mirrored_rows(&moved, names::CHAIN_EVENTS).await,
        more_events
    );
    // Back on the first root: the progress followed the other root's tables, so these are
    // filled again, each row once.
    Indexer::new(&env.chain, &store, &env.lake)
        .run_to_head()
        .await
        .unwrap();
    assert_eq!(
        mirrored_rows(&env.lake, names::CHAIN_EVENTS).await,
        more_events
    );
    assert_eq!(
        mirrored_rows(&env.lake, names::LINEAGE_NODES).await,
        in_store().await
    );
}
