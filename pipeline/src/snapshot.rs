//! Snapshots: frozen training sets. A snapshot pins the `contributions` table at one Delta
//! version and lists, from the Datanets asked for, the contributions that count at the moment
//! it is taken: anchored on chain, not rejected by a verdict a validator recorded on chain, not
//! revoked on chain (see [`crate::chain_state`]: a revocation sent from a wallet counts), and
//! as anchored: each row must hash to its id, and a batch's rows must be the ids its anchor
//! committed to (else only those its manifest lists count), whatever engine wrote the table. The
//! list goes to the lake as a [`SnapshotManifest`] (`artifacts/snapshots/ID.json`) and its
//! Merkle root, count and versions on chain (`SnapshotCommitted`). Training reads a snapshot
//! through Delta time travel ([`read`]): the rows of `contributions` at the pinned version
//! whose ids the manifest lists, never "whatever is there now" (once that history is vacuumed,
//! the same rows from the latest version, each checked against its id).
//!
//! Taking the same snapshot twice gives the same id (it is derived from the Datanets, versions
//! and root), so a run that crashed after writing the manifest or after the transaction is
//! finished by running it again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use alloy::primitives::{Address, B256, TxHash, U256};
use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::Int64Type;
use tributary_chain::bindings::ModelRegistry;
use tributary_chain::bindings::ModelRegistry::ModelRegistryErrors as E;
use tributary_chain::{Chain, send};
use tributary_lake::Lake;
use tributary_schemas::manifest::{SnapshotEntry, SnapshotManifest};
use tributary_schemas::tables::names;

use crate::chain_state::ChainState;
use crate::{Error, Result};

/// A committed snapshot.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The manifest.
    pub manifest: SnapshotManifest,
    /// Its URI in the lake.
    pub manifest_uri: String,
    /// Merkle root over the contribution ids.
    pub root: B256,
    /// The committing transaction.
    pub tx: TxHash,
    /// Its block.
    pub block: u64,
    /// False when the chain had it already (an earlier run committed it).
    pub newly_committed: bool,
}

/// Lists what a snapshot of `datanets` (on-chain ids) at `contributions` version `at` (the
/// latest when `None`) would hold, given what the chain says (`on_chain`: anchored batches,
/// revocations, validators' verdicts). Nothing is written.
pub async fn freeze(
    lake: &Lake,
    on_chain: &ChainState,
    datanets: &[u64],
    at: Option<u64>,
) -> Result<SnapshotManifest> {
    Ok(preview(lake, on_chain, datanets, at).await?.manifest)
}

/// What a snapshot would hold ([`freeze`]), with the licenses its contributions carry.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The manifest [`freeze`] gives.
    pub manifest: SnapshotManifest,
    /// Contributions per SPDX license id.
    pub licenses: BTreeMap<String, u64>,
}

/// [`freeze`], counting the contributions of each license. Nothing is written.
pub async fn preview(
    lake: &Lake,
    on_chain: &ChainState,
    datanets: &[u64],
    at: Option<u64>,
) -> Result<Preview> {
    let datanets: BTreeSet<u64> = datanets.iter().copied().collect();
    if datanets.is_empty() {
        return Err(Error::InvalidInput(
            "no Datanet given: name at least one with --datanet".into(),
        ));
    }
    let latest = lake
        .table(names::CONTRIBUTIONS)
        .await?
        .version()
        .unwrap_or(0) as u64;
    let version = at.unwrap_or(latest);
    if version > latest {
        return Err(Error::InvalidInput(format!(
            "--at-version {version}: the contributions table is at version {latest}; pick {latest} or lower"
        )));
    }
    let rows = lake.read(names::CONTRIBUTIONS, Some(version)).await?;
    let rejections = on_chain.rejections(lake).await?;
    let vouched = {
        let (rows, datanets) = (rows.clone(), datanets.clone());
        let anchored: HashSet<B256> = on_chain.anchored.keys().copied().collect();
        let signing = on_chain.signing;
        tokio::task::spawn_blocking(move || signed_rows(&rows, &datanets, &anchored, signing))
            .await
            .map_err(|e| Error::Internal(format!("checking the rows' signatures: {e}")))?
    };
    let mut refused: Vec<B256> = Vec::new();
    let mut seen_datanets = BTreeSet::new();
    let mut entries = Vec::new();
    let mut license_of = HashMap::new();
    // The ids of each anchored batch's genuine rows, for the check against its anchor.
    let mut members: HashMap<B256, Vec<B256>> = HashMap::new();
    for (bi, b) in rows.iter().enumerate() {
        let datanet = b
            .column_by_name("datanet_id")
            .expect("declared column")
            .as_primitive::<Int64Type>();
        let id = b
            .column_by_name("contribution_id")
            .expect("declared column")
            .as_string::<i32>();
        let who = b
            .column_by_name("contributor")
            .expect("declared column")
            .as_string::<i32>();
        let batch = b
            .column_by_name("batch_id")
            .expect("declared column")
            .as_string::<i32>();
        let license = b
            .column_by_name("license")
            .expect("declared column")
            .as_string::<i32>();
        for (i, &signed) in vouched[bi].iter().enumerate() {
            let d = datanet.value(i) as u64;
            if !datanets.contains(&d) {
                continue;
            }
            seen_datanets.insert(d);
            let cid = id.value(i);
            let bad = || {
                Error::InvalidInput(format!("contribution row {cid:?} in the lake is malformed"))
            };
            let (cid, batch): (B256, B256) = (
                cid.parse().map_err(|_| bad())?,
                batch.value(i).parse().map_err(|_| bad())?,
            );
            if !on_chain.anchored.contains_key(&batch) {
                continue;
            }
            // Another engine may have written the table: a row that does not hash to its id,
            // or whose signature is not its contributor's, is not a signed contribution.
            if !signed {
                refused.push(cid);
                continue;
            }
            members.entry(batch).or_default().push(cid);
            if rejections.batches.contains(&batch)
                || on_chain.is_revoked(&cid)
                || rejections.contributions.contains(&cid)
            {
                continue;
            }
            license_of.insert(cid, license.value(i));
            entries.push((
                batch,
                SnapshotEntry {
                    id: cid,
                    datanet_id: d,
                    contributor: who.value(i).parse::<Address>().map_err(|_| bad())?,
                },
            ));
        }
    }
    if let Some(first) = refused.first() {
        tracing::warn!(
            rows = refused.len(),
            %first,
            "contributions rows that do not hash to their id or whose signature is not their \
             contributor's (written or altered in the lake by another engine): left out of the \
             snapshot"
        );
    }
    let listed = listed_where_rows_differ(lake, on_chain, members).await?;
    let mut entries: Vec<SnapshotEntry> = entries
        .into_iter()
        .filter(|(batch, e)| listed.get(batch).is_none_or(|ids| ids.contains(&e.id)))
        .map(|(_, e)| e)
        .collect();
    if let Some(missing) = datanets.iter().find(|d| !seen_datanets.contains(d)) {
        return Err(Error::InvalidInput(format!(
            "Datanet {missing} has no contributions in the lake at version {version}: check the Datanet, or snapshot a later version"
        )));
    }
    entries.sort_by_key(|e| e.id);
    entries.dedup_by_key(|e| e.id);
    if entries.is_empty() {
        return Err(Error::InvalidInput(format!(
            "nothing to freeze: every contribution of these Datanets at version {version} is unanchored, rejected or revoked"
        )));
    }
    let datanet_ids: Vec<u64> = datanets.into_iter().collect();
    let lake_versions = vec![version; datanet_ids.len()];
    let mut manifest = SnapshotManifest {
        snapshot_id: B256::ZERO,
        table: names::CONTRIBUTIONS.to_string(),
        datanet_ids,
        lake_versions,
        contributions: entries,
    };
    let root = manifest.merkle_tree().root();
    manifest.snapshot_id =
        SnapshotManifest::id_of(&manifest.datanet_ids, &manifest.lake_versions, root);
    let mut licenses = BTreeMap::new();
    for e in &manifest.contributions {
        *licenses.entry(license_of[&e.id].to_string()).or_insert(0) += 1;
    }
    Ok(Preview { manifest, licenses })
}

/// For each batch of `members` (the ids of its rows that hash to their ids) whose rows are not
/// the batch its anchor committed to (their Merkle root is not the chain's: rows added under
/// its id, or removed, by another engine), the ids its manifest lists (the manifest checked
/// against the chain's hash; none when it is missing or differs): only those rows count.
/// Batches whose rows match their anchor are not in the map, and cost no read.
async fn listed_where_rows_differ(
    lake: &Lake,
    on_chain: &ChainState,
    members: HashMap<B256, Vec<B256>>,
) -> Result<HashMap<B256, HashSet<B256>>> {
    use tributary_schemas::manifest::BatchManifest;
    use tributary_schemas::merkle::{MerkleTree, leaf_bytes32};
    let mut out = HashMap::new();
    for (batch, mut ids) in members {
        let anchor = &on_chain.anchored[&batch];
        ids.sort_unstable();
        ids.dedup();
        let root = MerkleTree::new(ids.iter().map(|id| leaf_bytes32(*id)).collect()).root();
        if root == anchor.merkle_root {
            continue;
        }
        let listed: HashSet<B256> = match lake
            .get_recorded(&anchor.manifest_uri, &BatchManifest::key(batch))
            .await
        {
            Ok(bytes) if alloy::primitives::keccak256(&bytes) == anchor.manifest_hash => {
                serde_json::from_slice::<BatchManifest>(&bytes)
                    .ok()
                    .filter(|m| m.batch_id == batch && m.merkle_tree().root() == anchor.merkle_root)
                    .map(|m| m.contributions.iter().map(|c| c.id).collect())
                    .unwrap_or_default()
            }
            Ok(_) => HashSet::new(),
            Err(e) if e.is_not_found() => HashSet::new(),
            Err(e) => return Err(e.into()),
        };
        let foreign = ids.iter().filter(|id| !listed.contains(*id)).count();
        tracing::warn!(
            %batch,
            rows = ids.len(),
            listed = listed.len(),
            left_out = foreign,
            "the lake's rows of an anchored batch are not what its anchor committed to (rows added, \
             removed or rewritten by another engine): only rows its manifest lists are taken"
        );
        out.insert(batch, listed);
    }
    Ok(out)
}

/// Writes `manifest` to the lake and commits it on chain (`SnapshotCommitted`). The signer
/// needs the ModelRegistry's publisher role. A snapshot already committed (by an earlier run)
/// is found; its id committed by another publisher with other contents is refused, and then
/// nothing is written.
pub async fn commit(chain: &Chain, lake: &Lake, manifest: &SnapshotManifest) -> Result<Committed> {
    let id = manifest.snapshot_id;
    let root = manifest.merkle_tree().root();
    let done = |uri: String, tx, block| Committed {
        manifest: manifest.clone(),
        manifest_uri: uri,
        root,
        tx,
        block,
        newly_committed: false,
    };
    // Checked before anything is written: a manifest the chain's record contradicts never
    // lands at the id's key.
    if let Some(r) = record(chain, id).await? {
        agrees(manifest, &r)?;
        // Written again: the same bytes, or restored to a lake that lost them.
        let uri = put(lake, manifest).await?;
        return Ok(done(uri, r.tx, r.block));
    }
    // The manifest first, so the chain never names one the lake lacks.
    let uri = put(lake, manifest).await?;
    let registry = chain.model_registry();
    let call = registry.commitSnapshot(
        id,
        manifest
            .datanet_ids
            .iter()
            .map(|d| U256::from(*d))
            .collect(),
        manifest.lake_versions.clone(),
        root,
        U256::from(manifest.contributions.len()),
    );
    match send(call).await {
        Ok(r) => Ok(Committed {
            newly_committed: true,
            ..done(uri, r.transaction_hash, r.block_number.unwrap_or_default())
        }),
        Err(e) => match e.revert::<E>() {
            // Committed meanwhile, by another run of this snapshot or another publisher.
            Some(E::AlreadyRegistered(_)) => {
                let r = record(chain, id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("SnapshotCommitted event of {id}")))?;
                agrees(manifest, &r)?;
                Ok(done(uri, r.tx, r.block))
            }
            Some(E::MissingRole(_)) => Err(Error::InvalidInput(format!(
                "{} may not commit snapshots: the ModelRegistry's admin grants the publisher role",
                chain.signer()
            ))),
            _ => Err(e.into()),
        },
    }
}

async fn put(lake: &Lake, manifest: &SnapshotManifest) -> Result<String> {
    let key = SnapshotManifest::key(manifest.snapshot_id);
    Ok(lake.put(&key, manifest.to_bytes()).await?.to_string())
}

/// What the chain recorded of a snapshot (`SnapshotCommitted`), with its transaction.
struct Record {
    event: ModelRegistry::SnapshotCommitted,
    tx: B256,
    block: u64,
}

/// Snapshot `id`'s record on chain, if it is committed.
async fn record(chain: &Chain, id: B256) -> Result<Option<Record>> {
    let filter = chain
        .model_registry()
        .SnapshotCommitted_filter()
        .topic1(id)
        .filter;
    let found = chain
        .events::<ModelRegistry::SnapshotCommitted>(&filter)
        .await?;
    Ok(found.into_iter().next().map(|(event, log)| Record {
        event,
        tx: log.transaction_hash.unwrap_or_default(),
        block: log.block_number.unwrap_or_default(),
    }))
}

/// Refuses `manifest` when the chain committed its id with other contents (the registry does
/// not derive snapshot ids, so another publisher may take one first).
fn agrees(manifest: &SnapshotManifest, r: &Record) -> Result<()> {
    let e = &r.event;
    let datanets: Vec<u64> = e.datanetIds.iter().map(|d| d.saturating_to()).collect();
    manifest
        .check(
            e.id,
            &datanets,
            &e.lakeVersions,
            e.count.saturating_to(),
            e.contributionsRoot,
        )
        .map_err(|differs| {
            Error::InvalidInput(format!(
                "snapshot {} was committed by transaction {} with other contents ({differs}): \
                 this manifest is not the chain's record of it; ask who holds the \
                 ModelRegistry's publisher role, and snapshot a later lake version for a new id",
                e.id, r.tx
            ))
        })
}

/// Snapshot `id`'s manifest from the lake, checked against what the chain recorded of it
/// ([`SnapshotManifest::check`]): what training and serving read.
pub async fn load_committed(chain: &Chain, lake: &Lake, id: B256) -> Result<SnapshotManifest> {
    let r = record(chain, id).await?.ok_or_else(|| {
        Error::InvalidInput(format!(
            "snapshot {id} is not committed on this chain: run `tributary snapshot --datanet …` \
             and use the id it prints"
        ))
    })?;
    let m = load(lake, id).await?;
    agrees(&m, &r)?;
    Ok(m)
}

/// [`load_committed`], with what makes a snapshot unusable as the inner error (its manifest
/// missing from this lake, unreadable, or not the chain's record); the outer error is a lake
/// or chain that did not answer.
pub async fn vouched(
    chain: &Chain,
    lake: &Lake,
    id: B256,
) -> Result<std::result::Result<SnapshotManifest, String>> {
    let key = SnapshotManifest::key(id);
    let bytes = match lake.get(&key).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(Err(format!("this lake has no {key}"))),
        Err(e) => return Err(e.into()),
    };
    let m: SnapshotManifest = match serde_json::from_slice(&bytes) {
        Ok(m) => m,
        Err(e) => return Ok(Err(format!("{key} does not parse: {e}"))),
    };
    let Some(r) = record(chain, id).await? else {
        return Ok(Err(format!("snapshot {id} is not committed on this chain")));
    };
    Ok(agrees(&m, &r).map(|()| m).map_err(|e| e.to_string()))
}

/// [`freeze`], then [`commit`].
pub async fn snapshot(
    chain: &Chain,
    lake: &Lake,
    datanets: &[u64],
    at: Option<u64>,
) -> Result<Committed> {
    let manifest = freeze(lake, &ChainState::read(chain).await?, datanets, at).await?;
    commit(chain, lake, &manifest).await
}

/// Loads snapshot `id`'s manifest from the lake.
pub async fn load(lake: &Lake, id: B256) -> Result<SnapshotManifest> {
    let uri = lake
        .root()
        .join(&SnapshotManifest::key(id))
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let bytes = lake.get(uri.as_str()).await.map_err(|e| {
        Error::NotFound(format!(
            "snapshot {id} is not in this lake ({e}): take it with `tributary snapshot`, or check --data-dir"
        ))
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::InvalidInput(format!("snapshot {id}'s manifest does not parse: {e}")))
}

/// The snapshot's contribution rows, read at the pinned version (Delta time travel), in the
/// `contributions` schema. When that history is gone (another engine's `VACUUM` after an
/// `OPTIMIZE` deleted the files, or log cleanup the version), the rows are read from the
/// latest version instead, each kept only when it hashes to its id (contributions are
/// immutable: the id is the signed struct's hash, which covers the content's hash), so the
/// snapshot trains on the same rows either way.
pub async fn read(lake: &Lake, manifest: &SnapshotManifest) -> Result<Vec<RecordBatch>> {
    let want: HashSet<String> = manifest
        .contributions
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    let versions: BTreeSet<u64> = manifest.lake_versions.iter().copied().collect();
    let pinned = async {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for v in &versions {
            for b in lake.read(&manifest.table, Some(*v)).await? {
                out.extend(keep(&b, &want, &mut seen, false)?);
            }
        }
        Ok::<_, Error>((out, seen.len()))
    };
    let why = match pinned.await {
        Ok((out, found)) if found == want.len() => return Ok(out),
        Ok((_, found)) => format!("they hold {found} of them"),
        Err(e) => e.to_string(),
    };
    tracing::warn!(
        snapshot = %manifest.snapshot_id,
        reason = %why,
        "the snapshot's pinned versions cannot be read (history vacuumed or cleaned up); \
         reading its contributions from the latest version, each checked against its id"
    );
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for b in lake.read(&manifest.table, None).await? {
        out.extend(keep(&b, &want, &mut seen, true)?);
    }
    if seen.len() != want.len() {
        return Err(Error::InvalidInput(format!(
            "snapshot {} lists {} contributions; at its pinned versions {versions:?} of `{}` \
             {why}, and the latest version holds {} of them unaltered: the table's history was \
             vacuumed or rewritten; restore the missing contributions (a backup of the table) \
             to train on this snapshot",
            manifest.snapshot_id,
            want.len(),
            manifest.table,
            seen.len()
        )));
    }
    Ok(out)
}

/// The rows of `b` that `want` lists and `seen` lacks (added to it); with `check`, only rows
/// that hash to their id.
fn keep(
    b: &RecordBatch,
    want: &HashSet<String>,
    seen: &mut HashSet<String>,
    check: bool,
) -> Result<Option<RecordBatch>> {
    let ids = b
        .column_by_name("contribution_id")
        .expect("declared column")
        .as_string::<i32>();
    let keep: BooleanArray = (0..b.num_rows())
        .map(|i| {
            let id = ids.value(i);
            Some(
                want.contains(id)
                    && !seen.contains(id)
                    && (!check || genuine(b, i))
                    && seen.insert(id.to_string()),
            )
        })
        .collect();
    let kept = filter_record_batch(b, &keep)?;
    Ok((kept.num_rows() > 0).then_some(kept))
}

/// For each row of `rows` in one of `datanets` whose batch is `anchored`, whether it is a
/// contribution its contributor signed ([`genuine`], and its stored signature recovers to
/// its contributor under the registry's domain `signing`); `true` for the other rows, which
/// a snapshot does not take anyway. An ecrecover per row: spread over the cores.
fn signed_rows(
    rows: &[RecordBatch],
    datanets: &BTreeSet<u64>,
    anchored: &HashSet<B256>,
    signing: B256,
) -> Vec<Vec<bool>> {
    let check = |b: &RecordBatch| -> Vec<bool> {
        let text = |c: &str| {
            b.column_by_name(c)
                .expect("declared column")
                .as_string::<i32>()
                .clone()
        };
        let (batches, signatures) = (text("batch_id"), text("signature"));
        let datanet = b
            .column_by_name("datanet_id")
            .expect("declared column")
            .as_primitive::<Int64Type>();
        (0..b.num_rows())
            .map(|i| {
                let taken = datanets.contains(&(datanet.value(i) as u64))
                    && batches
                        .value(i)
                        .parse()
                        .is_ok_and(|batch: B256| anchored.contains(&batch));
                !taken || {
                    let signature = signatures
                        .value(i)
                        .parse::<alloy::primitives::Bytes>()
                        .ok()
                        .and_then(|s| alloy::primitives::Signature::try_from(s.as_ref()).ok());
                    match (genuine_as(b, i), signature) {
                        (Some((c, id)), Some(sig)) => c.verify_prehashed(id, signing, &sig).is_ok(),
                        _ => false,
                    }
                }
            })
            .collect()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = rows.len().div_ceil(cores).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = rows
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(check).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("checking rows does not panic"))
            .collect()
    })
}

/// Row `i` of a `contributions` batch as the struct its contributor signed, with the id the
/// row names; `None` when a field does not parse.
fn row_contribution(
    b: &RecordBatch,
    i: usize,
) -> Option<(tributary_schemas::contribution::Contribution, B256)> {
    let text = |c: &str| {
        b.column_by_name(c)
            .expect("declared column")
            .as_string::<i32>()
            .value(i)
    };
    let int = |c: &str| {
        b.column_by_name(c)
            .expect("declared column")
            .as_primitive::<Int64Type>()
            .value(i)
    };
    let c = tributary_schemas::contribution::Contribution {
        datanetId: U256::from(int("datanet_id") as u64),
        contributor: text("contributor").parse().ok()?,
        contentHash: text("content_hash").parse().ok()?,
        license: text("license").to_string(),
        timestamp: int("timestamp") as u64,
        nonce: int("nonce") as u64,
        deadline: int("deadline") as u64,
    };
    Some((c, text("contribution_id").parse().ok()?))
}

/// Row `i` of a `contributions` batch is the contribution its id names: the signed struct
/// hashes to the id and the content to the struct's content hash.
fn genuine(b: &RecordBatch, i: usize) -> bool {
    genuine_as(b, i).is_some()
}

/// Row `i` as the signed struct and its id, when it is genuine ([`genuine`]).
fn genuine_as(
    b: &RecordBatch,
    i: usize,
) -> Option<(tributary_schemas::contribution::Contribution, B256)> {
    let (c, id) = row_contribution(b, i)?;
    let content = b
        .column_by_name("content")
        .expect("declared column")
        .as_string::<i32>()
        .value(i);
    (c.id() == id && alloy::primitives::keccak256(content.as_bytes()) == c.contentHash)
        .then_some((c, id))
}
