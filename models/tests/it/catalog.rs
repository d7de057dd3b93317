//! The base-model cache that serving and `attribute` fill from the lake: processes fetching
//! one base model at once (two commands on one machine, each on first use) all get the
//! whole, checked folder, and nothing is left aside.

use alloy::primitives::B256;
use tributary_lake::Lake;
use tributary_models::catalog;
use tributary_trainer::base::{self, Recipe};

#[test]
fn concurrent_fetches_of_one_base_model_all_get_it_whole() {
    let built = base::build_cached(&Recipe::tiny(), &base::default_cache(), &mut |_| {}).unwrap();
    let id = B256::from(base::checkpoint_hash(&built).unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lake");
    let root = root.to_str().unwrap();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    // Stored as registering it does: the checkpoint's files under models/ID/.
    let lake = Lake::open(root).unwrap();
    for name in base::checkpoint_files(&built).unwrap() {
        let bytes = std::fs::read(built.join(&name)).unwrap();
        runtime()
            .block_on(lake.put(&format!("models/{id}/{name}"), bytes))
            .unwrap();
    }
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
    let left: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        [format!("base-{id}")],
        "the cache holds only the folder"
    );
}
