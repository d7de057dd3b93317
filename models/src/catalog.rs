//! The adapter catalog: one home for finding published adapters (from the `ModelRegistry`'s
//! logs), reading their manifests, and fetching their files and base models from the lake.
//!
//! Adapters are found by id under this lake's root, not by the URI published on chain (which
//! names the lake where each was first written), so a lake copied or moved keeps working.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use alloy::primitives::B256;
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_schemas::manifest::AdapterManifest;
use tributary_trainer::base;

use crate::{Error, Result};

/// One adapter as published on chain (its `AdapterPublished` event).
pub use tributary_pipeline::chain_state::PublishedAdapter as OnChain;

/// Every adapter published on this chain, from its `AdapterPublished` logs.
pub async fn published(chain: &Chain) -> Result<Vec<OnChain>> {
    Ok(tributary_pipeline::chain_state::published_adapters(chain).await?)
}

/// The adapter named by `name` (an id or `line@version`); `what` names it in the error.
pub fn find<'a>(all: &'a [OnChain], name: &str, what: &str) -> Result<&'a OnChain> {
    let hit = match name.parse::<B256>() {
        Ok(id) => all.iter().find(|a| a.id == id),
        Err(_) => all.iter().find(|a| a.version == name),
    };
    hit.ok_or_else(|| {
        Error::NotFound(format!(
            "{what} {name:?} is not published on this chain: give an adapter id or line@version (GraphQL `adapters` lists them)"
        ))
    })
}

/// The latest version of `line` (by semantic version) that this lake can continue from: its
/// manifest is here and the chain's record vouches for it ([`AdapterManifest::check`]). A
/// later version without one (published straight to the registry, or from another lake) is
/// passed over with a warning; a lake that does not answer is an error, never a skip.
pub async fn latest<'a>(
    lake: &Lake,
    all: &'a [OnChain],
    line: &str,
) -> Result<Option<&'a OnChain>> {
    let prefix = format!("{line}@");
    let mut versions: Vec<([u64; 3], &OnChain)> = all
        .iter()
        .filter_map(|a| Some((semver(a.version.strip_prefix(&prefix)?).ok()?, a)))
        .collect();
    versions.sort_by_key(|(v, _)| std::cmp::Reverse(*v));
    for (_, a) in versions {
        match vouched(lake, a).await? {
            Ok(_) => return Ok(Some(a)),
            Err(reason) => tracing::warn!(
                adapter = %a.id,
                version = %a.version,
                %reason,
                "passed over as the line's latest version: published on chain, but nothing in this lake to continue from"
            ),
        }
    }
    Ok(None)
}

/// Adapter `a`'s manifest from this lake when the chain's record vouches for it
/// ([`AdapterManifest::check`]); else why not (no manifest here, one that does not parse or
/// disagrees). A lake that does not answer is the outer error.
pub async fn vouched(
    lake: &Lake,
    a: &OnChain,
) -> Result<std::result::Result<AdapterManifest, String>> {
    let key = AdapterManifest::key(a.id);
    let bytes = match lake.get(&key).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(Err(format!("this lake has no {key}"))),
        Err(e) => return Err(e.into()),
    };
    Ok(match serde_json::from_slice::<AdapterManifest>(&bytes) {
        Ok(m) => m.check(&a.record()).map(|()| m),
        Err(e) => Err(format!("its manifest does not parse: {e}")),
    })
}

/// `major.minor.patch`, numeric.
pub(crate) fn semver(v: &str) -> Result<[u64; 3]> {
    let parts: Vec<Option<u64>> = v.split('.').map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [Some(a), Some(b), Some(c)] => Ok([*a, *b, *c]),
        _ => Err(Error::InvalidInput(format!(
            "version {v:?} is not major.minor.patch (for example 1.2.0)"
        ))),
    }
}

/// Adapter `a`'s manifest from this lake, checked against the chain's record of it
/// ([`AdapterManifest::check`]): what serving, attribution and training read, so the
/// ancestry they disclose and the files they use are the ones the chain vouches for.
pub async fn load_manifest(lake: &Lake, a: &OnChain) -> Result<AdapterManifest> {
    let uri = lake
        .root()
        .join(&AdapterManifest::key(a.id))
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let bytes = lake.get(uri.as_str()).await?;
    let m: AdapterManifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::InvalidInput(format!("{uri}: not an adapter manifest: {e}")))?;
    m.check(&a.record()).map_err(|reason| {
        Error::InvalidInput(format!(
            "{} ({}): {reason}: the chain does not vouch for this lake's manifest (another \
             publisher took its id, or the manifest was altered), so it is neither served nor \
             trained from",
            a.version, a.id
        ))
    })?;
    Ok(m)
}

/// The lake URI of adapter `id`'s folder, found by its id under this lake's root (not by the
/// URI published on chain, which names the lake where it was first written).
pub fn adapter_folder(lake: &Lake, id: B256) -> Result<String> {
    Ok(lake
        .root()
        .join(&AdapterManifest::folder(id))
        .map_err(|e| Error::InvalidInput(e.to_string()))?
        .to_string())
}

/// Copies `names` from the lake folder `uri` into `dir`.
pub async fn fetch_files(lake: &Lake, uri: &str, names: &[&str], dir: &Path) -> Result<()> {
    let folder = format!("{}/", uri.trim_end_matches('/'));
    for name in names {
        let bytes = lake.get(&format!("{folder}{name}")).await?;
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| Error::Io(p.display().to_string(), e))?;
    }
    Ok(())
}

/// Copies an adapter's span index from the lake folder `uri` into `dir`, if it has one
/// (adapters trained before span indexes held every vocabulary have none): `spans.bin`, and
/// `spans.json` where its ids are not in `spans.bin`. Whether it was there.
pub async fn fetch_spans(lake: &Lake, uri: &str, dir: &Path) -> Result<bool> {
    let optional = |r: Result<()>| match r {
        Ok(()) => Ok(true),
        Err(Error::Lake(e)) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    };
    // A stale id table must not pair with this index.
    let _ = std::fs::remove_file(dir.join("spans.json"));
    if !optional(fetch_files(lake, uri, &["spans.bin"], dir).await)? {
        return Ok(false);
    }
    optional(fetch_files(lake, uri, &["spans.json"], dir).await)?;
    Ok(true)
}

/// The base model `id` from the lake, cached in `cache/base-ID` (checked against its id).
pub async fn base_folder(lake: &Lake, id: B256, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join(format!("base-{id}"));
    // The folder appears whole (renamed from the partial one once checked).
    if dir.join("config.json").exists() {
        return Ok(dir);
    }
    let fetched = aside(cache, &format!("base-{id}"))?;
    let part = fetched.path();
    let uri = lake
        .root()
        .join(&format!("models/{id}/"))
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    fetch_files(lake, uri.as_str(), &["config.json", "tokenizer.json"], part).await?;
    // One weights file, or a sharded checkpoint's index and then the shards it names.
    match fetch_files(lake, uri.as_str(), &["model.safetensors"], part).await {
        Ok(()) => {}
        Err(Error::Lake(e)) if e.is_not_found() => {
            let index = "model.safetensors.index.json";
            fetch_files(lake, uri.as_str(), &[index], part).await?;
            let text = std::fs::read_to_string(part.join(index))
                .map_err(|e| Error::Io(part.join(index).display().to_string(), e))?;
            let shards = tributary_trainer::model::shard_names(&text, index)?;
            let names: Vec<&str> = shards.iter().map(String::as_str).collect();
            fetch_files(lake, uri.as_str(), &names, part).await?;
        }
        Err(e) => return Err(e),
    }
    let got = B256::from(base::checkpoint_hash(part)?);
    if got != id {
        return Err(Error::InvalidInput(format!(
            "the base model in the lake hashes to {got}, not its id {id}: the lake copy is damaged"
        )));
    }
    into_place(fetched, &dir, "config.json")?;
    Ok(dir)
}

/// A folder in the cache being fetched into by a live process: [`aside`] makes it, and
/// [`into_place`] renames it to its final name. Beside the folder lies a lock file held
/// (`flock`) for the life of its process, so the folders of a process that was killed
/// mid-fetch (no destructor ran) can be told from those still being written, and are removed
/// by the next [`aside`] in that cache.
pub struct Aside {
    dir: Option<tempfile::TempDir>,
    lock: PathBuf,
    _held: std::fs::File,
}

impl Aside {
    /// The folder to fetch into.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("held until dropped").path()
    }
}

impl Drop for Aside {
    fn drop(&mut self) {
        // The folder first (gone, or renamed into place), then its lock file.
        drop(self.dir.take());
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Prefix of the folders [`aside`] makes, and of their lock files.
const ASIDE: &str = ".aside-";
/// Prefix of dead aside folders, moved out of the way to be deleted.
const DEAD: &str = ".dead-";

/// A temporary folder in `cache` to fetch `name` into, one per call: processes fetching the
/// same thing at once (two commands on one machine) each fetch and check their own, then
/// [`into_place`] keeps the first. First it removes the folders of processes that died while
/// fetching (their lock files are free), all under one lock on the cache so that no folder is
/// taken for dead between being made and being locked.
pub fn aside(cache: &Path, name: &str) -> Result<Aside> {
    let io = |e| Error::Io(cache.display().to_string(), e);
    std::fs::create_dir_all(cache).map_err(io)?;
    let cache_lock = std::fs::File::create(cache.join(".aside.lock")).map_err(io)?;
    cache_lock.lock().map_err(io)?;
    for entry in std::fs::read_dir(cache).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !file.starts_with(ASIDE) {
            continue;
        }
        let folder = cache.join(file.strip_suffix(".lock").unwrap_or(file));
        let lock = lock_of(&folder);
        // No lock file: made, but its process died before locking it (made and locked under
        // the cache lock, which this process holds).
        let dead = match std::fs::File::open(&lock) {
            Ok(f) => f.try_lock().is_ok(),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if dead {
            // Moved out of the way now, deleted below once the cache lock is let go (a base
            // model's folder takes a while). Aside names are unique, so dead names are too.
            let name = folder.file_name().unwrap_or_default().to_string_lossy();
            let _ = std::fs::rename(&folder, cache.join(format!("{DEAD}{name}")));
            let _ = std::fs::remove_file(&lock);
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("{ASIDE}{name}-"))
        .tempdir_in(cache)
        .map_err(io)?;
    let lock = lock_of(dir.path());
    let held = std::fs::File::create(&lock).map_err(io)?;
    held.lock().map_err(io)?;
    drop(cache_lock);
    // Outside the lock: the dead folders (also any a process killed while deleting left).
    for entry in std::fs::read_dir(cache).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(DEAD) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(Aside {
        dir: Some(dir),
        lock,
        _held: held,
    })
}

/// The lock file beside an [`aside`] folder.
fn lock_of(folder: &Path) -> PathBuf {
    let mut lock = folder.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}

/// Renames a folder fetched [`aside`] to `dir`, which is whole once it holds `marker`. When
/// another process got there first, theirs stands and this one is removed.
pub fn into_place(fetched: Aside, dir: &Path, marker: &str) -> Result<()> {
    if dir.exists() && !dir.join(marker).exists() {
        // Left half-written by an older version or a crash.
        let _ = std::fs::remove_dir_all(dir);
    }
    match std::fs::rename(fetched.path(), dir) {
        Err(e) if !dir.join(marker).exists() => Err(Error::Io(dir.display().to_string(), e)),
        _ => Ok(()),
    }
}

/// Contribution ids revoked on chain, by whichever wallet (see `tributary_pipeline::chain_state`).
pub async fn revoked(chain: &Chain) -> Result<HashSet<String>> {
    let state = tributary_pipeline::chain_state::ChainState::read(chain).await?;
    Ok(state.revoked.iter().map(|id| id.to_string()).collect())
}
