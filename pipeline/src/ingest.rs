//! Committing a batch: one Delta commit, the manifest in the lake, the Merkle root on chain,
//! and a row in `batches`. Each step is idempotent, and [`recover`] finishes any batch a
//! crash left committed but not anchored, so every committed batch ends anchored exactly once.
//!
//! The four steps: the Delta commit (application transaction `tributary-batch-<id>`), the
//! manifest, `BatchAnchored`, and the `batches` row (`tributary-anchor-<id>`); [`recover`]
//! finishes any batch whose first step landed and last did not.

use std::collections::HashSet;
use std::sync::Arc;

use alloy::primitives::{B256, TxHash, U256};
use arrow::array::{ArrayRef, AsArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatch;
use tributary_chain::bindings::DatanetRegistry;
use tributary_chain::{Chain, send};
use tributary_lake::Lake;
use tributary_schemas::canonical::{content_hash, to_canonical_json};
use tributary_schemas::contribution::domain;
use tributary_schemas::lineage::hex_lower;
use tributary_schemas::manifest::{BatchManifest, EntryProof, ManifestEntry};
use tributary_schemas::merkle::{MerkleTree, leaf_bytes32};
use tributary_schemas::tables::{self, names};

use crate::reject::{Reason, Rejection};
use crate::sign::Signed;
use crate::{Error, Result};

/// Delta application-transaction id prefix of a batch's commit to `contributions`.
const BATCH_TXN: &str = "tributary-batch-";
/// Delta application-transaction id prefix of a batch's row in `batches`.
const ANCHOR_TXN: &str = "tributary-anchor-";

/// What committing one batch did.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// The Datanet.
    pub datanet_id: u64,
    /// Deterministic batch id.
    pub batch_id: B256,
    /// Contributions in the batch.
    pub count: usize,
    /// Delta version of the commit holding the batch.
    pub lake_version: u64,
    /// False when the lake already held this batch (a re-run).
    pub newly_committed: bool,
    /// Where the manifest is.
    pub manifest_uri: String,
    /// Merkle root over the contribution ids.
    pub merkle_root: B256,
    /// The transaction that anchored the batch.
    pub anchor_tx: TxHash,
    /// Its block.
    pub anchor_block: u64,
    /// False when the batch was already anchored (a re-run).
    pub newly_anchored: bool,
}

/// What [`ingest`] did: the batch, and the contributions it refused.
#[derive(Debug, Clone)]
pub struct IngestReport {
    /// The committed batch.
    pub batch: BatchReport,
    /// Refused contributions (locator `record N`, counting from 0).
    pub rejected: Vec<Rejection>,
}

/// Checks signatures, content hashes, the Datanet and duplicates within the input, then
/// commits the valid contributions as one batch. For the full rules of a Datanet (manifest,
/// licenses, nonces, deadlines, duplicates against the lake) use `contribute`.
pub async fn ingest(
    chain: &Chain,
    lake: &Lake,
    datanet_id: u64,
    signed: Vec<Signed>,
) -> Result<IngestReport> {
    let domain = domain(chain.chain_id(), chain.deployment().datanet_registry);
    let mut accepted = Vec::with_capacity(signed.len());
    let mut rejected = Vec::new();
    let mut seen = HashSet::new();
    for (index, s) in signed.into_iter().enumerate() {
        let refusal = if s.contribution.datanetId != U256::from(datanet_id) {
            Some((
                Reason::WrongDatanet,
                format!(
                    "signed for Datanet {}, not {datanet_id}",
                    s.contribution.datanetId
                ),
            ))
        } else if content_hash(&s.content) != s.contribution.contentHash {
            Some((
                Reason::BadSignature,
                "contentHash does not match the content's canonical JSON".to_string(),
            ))
        } else if let Err(e) = s.contribution.verify(&domain, &s.signature) {
            Some((Reason::BadSignature, e.to_string()))
        } else if !seen.insert(s.contribution.id()) {
            Some((
                Reason::DuplicateExact,
                "duplicate of an earlier contribution in this batch".to_string(),
            ))
        } else {
            None
        };
        match refusal {
            Some((reason, message)) => rejected.push(Rejection {
                source: "-".into(),
                locator: format!("record {index}"),
                reason,
                message,
                raw: crate::reject::excerpt(&to_canonical_json(&s.content)),
                contributor: Some(s.contribution.contributor),
                contribution_id: Some(s.contribution.id()),
            }),
            None => accepted.push(s),
        }
    }
    if accepted.is_empty() {
        return Err(Error::InvalidInput(format!(
            "no valid contributions to ingest ({} rejected; first: {})",
            rejected.len(),
            rejected
                .first()
                .map(|r| r.message.as_str())
                .unwrap_or("empty input")
        )));
    }
    let batch = commit(chain, lake, datanet_id, accepted).await?;
    Ok(IngestReport { batch, rejected })
}

/// Commits verified contributions as one batch and anchors it. Idempotent: the same
/// contributions (in any order) give the same batch id, which is committed and anchored once.
pub async fn commit(
    chain: &Chain,
    lake: &Lake,
    datanet_id: u64,
    accepted: Vec<Signed>,
) -> Result<BatchReport> {
    let keyed = accepted
        .into_iter()
        .map(|s| (s.contribution.id(), s))
        .collect();
    commit_keyed(chain, lake, datanet_id, keyed).await
}

/// [`commit`] for contributions whose ids (EIP-712 struct hashes) are already known: the id
/// keys the sort, the rows and the manifest, and is not computed again.
#[tracing::instrument(name = "ingest_batch", skip_all, fields(datanet = datanet_id, records = keyed.len()))]
pub async fn commit_keyed(
    chain: &Chain,
    lake: &Lake,
    datanet_id: u64,
    mut keyed: Vec<(B256, Signed)>,
) -> Result<BatchReport> {
    keyed.sort_unstable_by_key(|(id, _)| *id);
    let ids: Vec<B256> = keyed.iter().map(|(id, _)| *id).collect();
    // The batch id commits to the Merkle root (`batchIdOf`): the root first, off the async
    // threads.
    let root = tokio::task::spawn_blocking(move || {
        MerkleTree::new(ids.into_iter().map(leaf_bytes32).collect()).root()
    })
    .await
    .map_err(|e| Error::Internal(format!("computing the Merkle root: {e}")))?;
    let batch_id = BatchManifest::batch_id_at(datanet_id, root);
    let rows = contribution_rows(datanet_id, batch_id, &keyed)?;
    let appended = lake
        .append(names::CONTRIBUTIONS)
        .batches(vec![rows])
        .idempotent(format!("{BATCH_TXN}{batch_id}"), 0)
        .commit()
        .await?;
    let entries = keyed.iter().map(|(id, s)| entry(*id, s)).collect();
    let mut report = finish(
        chain,
        lake,
        datanet_id,
        batch_id,
        appended.version,
        entries,
        root,
    )
    .await?;
    report.newly_committed = appended.newly_committed;
    Ok(report)
}

/// Finishes every batch that was committed to the lake but whose anchoring did not complete
/// (a crash between the Delta commit and the `batches` row), of the Datanets the chain signer
/// may anchor; another Datanet's batch is left to its anchorers (logged), so it never stops
/// this signer's work. Returns the batches it finished.
pub async fn recover(chain: &Chain, lake: &Lake) -> Result<Vec<BatchReport>> {
    // Both lists come from the tables' snapshots (checkpoint plus the commits after it), so
    // this costs the same on a long log as on a short one, and sees batches whose commit files
    // log cleanup removed.
    let finished: HashSet<String> = lake
        .app_ids(names::BATCHES)
        .await?
        .into_iter()
        .filter_map(|id| id.strip_prefix(ANCHOR_TXN).map(str::to_string))
        .collect();
    let mut done = Vec::new();
    for app_id in lake.app_ids(names::CONTRIBUTIONS).await? {
        let Some(batch) = app_id.strip_prefix(BATCH_TXN) else {
            continue;
        };
        if finished.contains(batch) {
            continue;
        }
        let Some(version) = lake.committed_at(names::CONTRIBUTIONS, &app_id).await? else {
            // Listed by the snapshot, but expired for Delta (a table property another engine
            // set, `delta.setTransactionRetentionDuration`).
            tracing::warn!(
                batch,
                "a batch committed before a crash has an expired Delta transaction (delta.setTransactionRetentionDuration on `contributions`): left unanchored"
            );
            continue;
        };
        let batch_id: B256 = batch
            .parse()
            .map_err(|_| Error::InvalidInput(format!("bad batch id in the lake: {batch}")))?;
        let (datanet_id, entries) = batch_entries(lake, version, batch).await?;
        let may_anchor = chain
            .datanet_registry()
            .isAnchorer(U256::from(datanet_id), chain.signer())
            .call()
            .await
            .map_err(tributary_chain::Error::from)?;
        if !may_anchor {
            tracing::warn!(%batch_id, datanet_id, signer = %chain.signer(), "a batch committed before a crash waits for an anchorer of its Datanet (its next `contribute` finishes it)");
            continue;
        }
        tracing::warn!(%batch_id, version, "finishing a batch committed before a crash");
        let root = MerkleTree::new(entries.iter().map(|e| leaf_bytes32(e.id)).collect()).root();
        let current = BatchManifest::batch_id_at(datanet_id, root) == batch_id;
        match finish(chain, lake, datanet_id, batch_id, version, entries, root).await {
            Ok(mut report) => {
                report.newly_committed = false;
                done.push(report);
            }
            // Committed by a version before batch ids were bound to their Datanet: a registry
            // that checks `batchIdOf` never takes it, and it must not stop new batches.
            Err(e) if !current => {
                tracing::warn!(%batch_id, error = %e, "a batch committed under an older batch id cannot be anchored in this registry; left as it is");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Writes the manifest, anchors the batch (unless it already is), and records it in `batches`.
/// `merkle_root` is the root over the entries' ids.
async fn finish(
    chain: &Chain,
    lake: &Lake,
    datanet_id: u64,
    batch_id: B256,
    lake_version: u64,
    mut contributions: Vec<ManifestEntry>,
    merkle_root: B256,
) -> Result<BatchReport> {
    contributions.sort_by_key(|c| c.id);
    // A batch anchored already (a rerun after a crash) keeps the lake version it was anchored
    // with, so the manifest written again is byte for byte the one whose hash the chain holds
    // (the version its commit was found at can differ once log cleanup removed that commit).
    let already = anchored(chain, batch_id).await?;
    let lake_version = already.as_ref().map_or(lake_version, |a| a.lake_version);
    let mut manifest = BatchManifest {
        datanet_id,
        batch_id,
        table: names::CONTRIBUTIONS.to_string(),
        lake_version,
        contributions,
    };
    if let Some(a) = &already {
        // Anchored by a version whose entries carried no proofs (a crash, then an upgrade):
        // that form is the one whose hash the chain holds.
        let legacy = manifest.without_proofs();
        if manifest.hash() != a.manifest_hash && legacy.hash() == a.manifest_hash {
            manifest = legacy;
        }
    }
    // The lake and the chain record the manifest by its key, relative to the lake root: a
    // copied or synced lake still finds it.
    let manifest_uri = BatchManifest::key(batch_id);
    lake.put(&manifest_uri, manifest.to_bytes()).await?;
    let (anchor_tx, anchor_block, newly_anchored) =
        anchor(chain, &manifest, merkle_root, &manifest_uri, already).await?;
    let report = BatchReport {
        datanet_id,
        batch_id,
        count: manifest.contributions.len(),
        lake_version,
        newly_committed: true,
        manifest_uri,
        merkle_root,
        anchor_tx,
        anchor_block,
        newly_anchored,
    };
    lake.append(names::BATCHES)
        .batches(vec![batch_row(&report, &manifest)?])
        .idempotent(format!("{ANCHOR_TXN}{batch_id}"), 0)
        .commit()
        .await?;
    tracing::info!(%batch_id, count = report.count, %anchor_tx, "batch anchored");
    Ok(report)
}

/// How a batch is anchored on chain, from its `BatchAnchored` event.
struct Anchored {
    datanet_id: U256,
    root: B256,
    lake_version: u64,
    manifest_hash: B256,
    tx: TxHash,
    block: u64,
}

/// How batch `batch_id` is anchored, `None` while it is not (one call; the event is read only
/// for an anchored batch).
async fn anchored(chain: &Chain, batch_id: B256) -> Result<Option<Anchored>> {
    let registry = chain.datanet_registry();
    let stored = registry
        .batch(batch_id)
        .call()
        .await
        .map_err(tributary_chain::Error::from)?;
    if stored.count == U256::ZERO {
        return Ok(None);
    }
    let filter = registry.BatchAnchored_filter().topic2(batch_id).filter;
    let found = chain
        .events::<DatanetRegistry::BatchAnchored>(&filter)
        .await?;
    let (e, log) = found.into_iter().next().ok_or_else(|| {
        Error::InvalidInput(format!(
            "batch {batch_id} is anchored but its event was not found"
        ))
    })?;
    Ok(Some(Anchored {
        datanet_id: e.datanetId,
        root: e.merkleRoot,
        lake_version: e.lakeVersion,
        manifest_hash: e.manifestHash,
        tx: log.transaction_hash.unwrap_or_default(),
        block: log.block_number.unwrap_or_default(),
    }))
}

/// Anchors the batch unless `already` says it is; returns the anchoring tx and block either
/// way. A batch of that id anchored for another Datanet or root is an error, not ours (a
/// registry that predates `batchIdOf` lets another Datanet's anchorer take an id first).
async fn anchor(
    chain: &Chain,
    m: &BatchManifest,
    root: B256,
    uri: &str,
    already: Option<Anchored>,
) -> Result<(TxHash, u64, bool)> {
    let registry = chain.datanet_registry();
    let already = match already {
        Some(a) => a,
        None => {
            let call = registry.anchorBatch(
                U256::from(m.datanet_id),
                m.batch_id,
                root,
                U256::from(m.contributions.len()),
                uri.to_string(),
                m.hash(),
                m.lake_version,
            );
            use DatanetRegistry::DatanetRegistryErrors as E;
            match send(call).await {
                Ok(r) => return Ok((r.transaction_hash, r.block_number.unwrap_or_default(), true)),
                Err(e) => match e.revert::<E>() {
                    // Another process anchored it between our check and our transaction.
                    Some(E::BatchAlreadyAnchored(_)) => {
                        anchored(chain, m.batch_id).await?.ok_or_else(|| {
                            Error::Internal(format!(
                                "the registry refused batch {} as anchored but holds no such batch",
                                m.batch_id
                            ))
                        })?
                    }
                    Some(E::BatchIdMismatch(x)) => {
                        return Err(Error::InvalidInput(format!(
                            "the registry requires batch id {} for Datanet {} and root {root}, not \
                             {} (ids bound to their Datanet, `batchIdOf`)",
                            x.expected, m.datanet_id, m.batch_id
                        )));
                    }
                    Some(E::NotAnchorer(_)) => {
                        return Err(Error::InvalidInput(format!(
                            "{} may not anchor batches of Datanet {}: its owner appoints anchorers \
                             (`setAnchorer`); batch {} is committed to the lake and the next \
                             `contribute` by an anchorer of the Datanet anchors it",
                            chain.signer(),
                            m.datanet_id,
                            m.batch_id
                        )));
                    }
                    _ => return Err(e.into()),
                },
            }
        }
    };
    if (already.datanet_id, already.root) != (U256::from(m.datanet_id), root) {
        return Err(Error::InvalidInput(format!(
            "batch {} is anchored on chain for Datanet {} with Merkle root {}, not for Datanet \
             {} with root {}: this DatanetRegistry predates batch ids bound to their Datanet \
             (`batchIdOf`), and an anchorer of another Datanet took the id first; deploy the \
             current contracts (`tributary deploy`) and ingest into them",
            m.batch_id, already.datanet_id, already.root, m.datanet_id, root
        )));
    }
    Ok((already.tx, already.block, false))
}

fn entry(id: B256, s: &Signed) -> ManifestEntry {
    ManifestEntry {
        id,
        contributor: s.contribution.contributor,
        content_hash: s.contribution.contentHash,
        license: s.contribution.license.clone(),
        timestamp: s.contribution.timestamp,
        proof: Some(EntryProof {
            nonce: s.contribution.nonce,
            deadline: s.contribution.deadline,
            signature: s.signature.as_bytes().to_vec().into(),
        }),
    }
}

/// The Datanet and manifest entries of batch `batch` as committed in `version`.
async fn batch_entries(
    lake: &Lake,
    version: u64,
    batch: &str,
) -> Result<(u64, Vec<ManifestEntry>)> {
    let mut datanet = None;
    let mut entries = Vec::new();
    for b in lake.read(names::CONTRIBUTIONS, Some(version)).await? {
        let col = |name: &str| {
            b.column_by_name(name)
                .expect("contributions schema")
                .as_string::<i32>()
                .clone()
        };
        let (ids, who, hashes, licenses, signatures, batches) = (
            col("contribution_id"),
            col("contributor"),
            col("content_hash"),
            col("license"),
            col("signature"),
            col("batch_id"),
        );
        let int = |name: &str| {
            b.column_by_name(name)
                .expect("contributions schema")
                .as_primitive::<Int64Type>()
                .clone()
        };
        let (ts, dn, nonces, deadlines) = (
            int("timestamp"),
            int("datanet_id"),
            int("nonce"),
            int("deadline"),
        );
        for i in (0..b.num_rows()).filter(|&i| batches.value(i) == batch) {
            let parse_err =
                |what: &str| Error::InvalidInput(format!("bad {what} in the lake, batch {batch}"));
            datanet = Some(dn.value(i) as u64);
            entries.push(ManifestEntry {
                id: ids
                    .value(i)
                    .parse()
                    .map_err(|_| parse_err("contribution id"))?,
                contributor: who.value(i).parse().map_err(|_| parse_err("contributor"))?,
                content_hash: hashes
                    .value(i)
                    .parse()
                    .map_err(|_| parse_err("content hash"))?,
                license: licenses.value(i).to_string(),
                timestamp: ts.value(i) as u64,
                proof: Some(EntryProof {
                    nonce: nonces.value(i) as u64,
                    deadline: deadlines.value(i) as u64,
                    signature: signatures
                        .value(i)
                        .parse()
                        .map_err(|_| parse_err("signature"))?,
                }),
            });
        }
    }
    let datanet = datanet.ok_or_else(|| {
        Error::InvalidInput(format!("batch {batch} has no rows at version {version}"))
    })?;
    Ok((datanet, entries))
}

pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

fn strings(values: impl Iterator<Item = String>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn utc(n: usize) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(vec![now_micros(); n]).with_timezone("UTC"))
}

fn batch_row(r: &BatchReport, m: &BatchManifest) -> Result<RecordBatch> {
    let one = |s: String| strings(std::iter::once(s));
    let int = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
    Ok(RecordBatch::try_new(
        tables::batches(),
        vec![
            int(r.datanet_id as i64),
            one(r.batch_id.to_string()),
            int(r.lake_version as i64),
            one(r.merkle_root.to_string()),
            int(r.count as i64),
            one(r.manifest_uri.clone()),
            one(m.hash().to_string()),
            one(r.anchor_tx.to_string()),
            int(r.anchor_block as i64),
            utc(1),
        ],
    )?)
}

/// The `contributions` rows of a batch of (contribution id, contribution), as [`commit`]
/// writes them.
pub fn contribution_rows(
    datanet_id: u64,
    batch_id: B256,
    keyed: &[(B256, Signed)],
) -> Result<RecordBatch> {
    let n = keyed.len();
    let text = |f: &dyn Fn(&Signed) -> String| strings(keyed.iter().map(|(_, s)| f(s)));
    let ints = |f: &dyn Fn(&Signed) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            keyed.iter().map(|(_, s)| f(s)),
        ))
    };
    let batch = batch_id.to_string();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![datanet_id as i64; n])),
        strings(keyed.iter().map(|(id, _)| id.to_string())),
        text(&|s| hex_lower(s.contribution.contributor.as_slice())),
        text(&|s| s.contribution.contentHash.to_string()),
        text(&|s| s.contribution.license.clone()),
        ints(&|s| s.contribution.timestamp as i64),
        ints(&|s| s.contribution.nonce as i64),
        ints(&|s| s.contribution.deadline as i64),
        text(&|s| hex_lower(&s.signature.as_bytes())),
        text(&|s| to_canonical_json(&s.content)),
        text(&|_| batch.clone()),
        utc(n),
    ];
    Ok(RecordBatch::try_new(tables::contributions(), columns)?)
}

/// The `rejections` rows for `rejected`, with their ids.
pub(crate) fn rejection_rows(
    datanet_id: u64,
    ids: &[B256],
    rejected: &[Rejection],
) -> Result<RecordBatch> {
    let n = rejected.len();
    let opt = |f: &dyn Fn(&Rejection) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(
            rejected.iter().map(f).collect::<Vec<_>>(),
        ))
    };
    Ok(RecordBatch::try_new(
        tables::rejections(),
        vec![
            Arc::new(Int64Array::from(vec![datanet_id as i64; n])),
            strings(ids.iter().map(|id| id.to_string())),
            strings(rejected.iter().map(|r| r.source.clone())),
            strings(rejected.iter().map(|r| r.locator.clone())),
            strings(rejected.iter().map(|r| r.reason.code().to_string())),
            strings(rejected.iter().map(|r| r.message.clone())),
            opt(&|r| r.contributor.map(|a| hex_lower(a.as_slice()))),
            opt(&|r| r.contribution_id.map(|id| id.to_string())),
            strings(rejected.iter().map(|r| r.raw.clone())),
            utc(n),
        ],
    )?)
}
