//! The base-model cache that serving and `attribute` fill from the lake: processes fetching
//! one base model at once (two commands on one machine, each on first use) all get the
//! whole, checked folder, and nothing is left aside; a fetch killed midway (SIGKILL, no
//! destructor runs) leaves nothing once the next fetch into that cache runs, while a fetch
//! still going keeps its folder.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use alloy::primitives::B256;
use tributary_lake::Lake;
use tributary_models::catalog;
use tributary_trainer::base::{self, Recipe};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A lake at `root` holding the tiny base model as registering it does (the checkpoint's
/// files under models/ID/); its id.
fn stored_base(root: &str) -> B256 {
    let built = base::build_cached(&Recipe::tiny(), &base::default_cache(), &mut |_| {}).unwrap();
    let id = B256::from(base::checkpoint_hash(&built).unwrap());
    let lake = Lake::open(root).unwrap();
    for name in base::checkpoint_files(&built).unwrap() {
        let bytes = std::fs::read(built.join(&name)).unwrap();
        runtime()
            .block_on(lake.put(&format!("models/{id}/{name}"), bytes))
            .unwrap();
    }
    id
}

/// What the cache folder holds, sorted.
fn listing(cache: &Path) -> Vec<String> {
    let mut left: Vec<String> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    left
}

#[test]
fn concurrent_fetches_of_one_base_model_all_get_it_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lake");
    let root = root.to_str().unwrap();
    let id = stored_base(root);
    // Four processes' worth of first uses at once, each with its own runtime and lake handle.
    let cache = tmp.path().join("cache");
    let folders: Vec<_> = std::thread::scope(|s| {
        let fetches: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let lake = Lake::open(root).unwrap();
                    runtime().block_on(catalog::base_folder(&lake, id, &cache))
                })
            })
            .collect();
        fetches.into_iter().map(|f| f.join().unwrap()).collect()
    });
    for folder in folders {
        let folder = folder.expect("every concurrent fetch gets the base model");
        assert_eq!(B256::from(base::checkpoint_hash(&folder).unwrap()), id);
    }
    assert_eq!(
        listing(&cache),
        [".aside.lock".to_string(), format!("base-{id}")],
        "the cache holds only the folder (and the lock its fetches share)"
    );
}

/// Environment variable naming the cache for [`hold_aside_until_killed`].
const HOLD: &str = "TRIBUTARY_TEST_HOLD_ASIDE";

/// A no-op unless run by the test below as a child process: then it holds a folder aside in
/// the cache named by [`HOLD`], half-written, prints its path and waits to be killed.
#[test]
fn hold_aside_until_killed() {
    let Some(cache) = std::env::var_os(HOLD) else {
        return;
    };
    let held = catalog::aside(Path::new(&cache), "base-held").unwrap();
    std::fs::write(held.path().join("config.json"), b"{\"half").unwrap();
    println!("ASIDE {}", held.path().display());
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::park();
    }
}

/// A child process, killed when dropped (so a failing test leaves none parked).
struct Killed(Child);

impl Killed {
    /// SIGKILL, and reaped.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process of this test binary holding a folder aside in `cache`; the folder, once
/// it says it holds it.
fn holder(cache: &Path) -> (Killed, PathBuf) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "catalog::hold_aside_until_killed", "--nocapture"])
        .env(HOLD, cache)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let folder = out
        .lines()
        .map(|l| l.unwrap())
        .find_map(|l| l.strip_prefix("ASIDE ").map(PathBuf::from))
        .expect("the child holds a folder aside");
    (Killed(child), folder)
}

#[test]
fn a_fetch_killed_midway_leaves_nothing_once_the_next_one_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lake");
    let root = root.to_str().unwrap();
    let id = stored_base(root);
    let cache = tmp.path().join("cache");
    let (mut killed, dead) = holder(&cache);
    let (mut live, alive) = holder(&cache);
    killed.kill(); // SIGKILL: its folder and lock file stay behind
    assert!(dead.join("config.json").exists());

    let lake = Lake::open(root).unwrap();
    let folder = runtime()
        .block_on(catalog::base_folder(&lake, id, &cache))
        .unwrap();
    assert_eq!(B256::from(base::checkpoint_hash(&folder).unwrap()), id);
    assert!(
        !dead.exists(),
        "the killed fetch's folder is removed by the next fetch"
    );
    assert!(
        alive.join("config.json").exists(),
        "a fetch still going keeps its folder"
    );

    live.kill();
    drop(catalog::aside(&cache, "adapter").unwrap());
    assert_eq!(
        listing(&cache),
        [".aside.lock".to_string(), format!("base-{id}")],
        "nothing is left aside once both are dead and another fetch ran"
    );
}
