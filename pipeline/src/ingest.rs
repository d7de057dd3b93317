//! Ingest: verify signatures, write one Delta commit, write the manifest, anchor on chain.

use std::collections::HashSet;
use std::sync::Arc;

use alloy::primitives::{B256, TxHash, U256};
use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use tributary_chain::bindings::DatanetRegistry;
use tributary_chain::{Chain, send};
use tributary_lake::Lake;
use tributary_schemas::canonical::{content_hash, to_canonical_json};
use tributary_schemas::contribution::domain;
use tributary_schemas::lineage::hex_lower;
use tributary_schemas::manifest::{BatchManifest, ManifestEntry};
use tributary_schemas::tables;

use crate::sign::Signed;
use crate::{Error, Result};

/// A contribution that was not accepted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Position in the input.
    pub index: usize,
    /// The reason, naming the problem.
    pub reason: String,
}

/// What an ingest did.
#[derive(Debug, Clone)]
pub struct IngestReport {
    /// The Datanet.
    pub datanet_id: u64,
    /// Deterministic batch id.
    pub batch_id: B256,
    /// Contributions written and anchored.
    pub accepted: usize,
    /// Contributions refused, with reasons.
    pub rejected: Vec<Rejected>,
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

/// Verifies `signed`, writes the valid ones to the lake in one commit and anchors the batch.
/// Re-running with the same contributions adds nothing and anchors nothing twice.
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
        let reason = if s.contribution.datanetId != U256::from(datanet_id) {
            Some(format!(
                "signed for Datanet {}, not {datanet_id}",
                s.contribution.datanetId
            ))
        } else if content_hash(&s.content) != s.contribution.contentHash {
            Some("contentHash does not match the content's canonical JSON".to_string())
        } else if let Err(e) = s.contribution.verify(&domain, &s.signature) {
            Some(e.to_string())
        } else if !seen.insert(s.contribution.id()) {
            Some("duplicate of an earlier contribution in this batch".to_string())
        } else {
            None
        };
        match reason {
            Some(reason) => rejected.push(Rejected { index, reason }),
            None => accepted.push(s),
        }
    }
    if accepted.is_empty() {
        return Err(Error::InvalidInput(format!(
            "no valid contributions to ingest ({} rejected; first: {})",
            rejected.len(),
            rejected
                .first()
                .map(|r| r.reason.as_str())
                .unwrap_or("empty input")
        )));
    }
    accepted.sort_by_key(|s| s.contribution.id());
    let ids: Vec<B256> = accepted.iter().map(|s| s.contribution.id()).collect();
    let batch_id = BatchManifest::batch_id_of(datanet_id, &ids);

    let rows = to_record_batch(datanet_id, batch_id, &accepted)?;
    let appended = lake
        .append(tables::names::CONTRIBUTIONS)
        .batches(vec![rows])
        .idempotent(format!("tributary-batch-{batch_id}"), 0)
        .commit()
        .await?;

    let manifest = BatchManifest {
        datanet_id,
        batch_id,
        table: tables::names::CONTRIBUTIONS.to_string(),
        lake_version: appended.version,
        contributions: accepted
            .iter()
            .map(|s| ManifestEntry {
                id: s.contribution.id(),
                contributor: s.contribution.contributor,
                content_hash: s.contribution.contentHash,
                license: s.contribution.license.clone(),
                timestamp: s.contribution.timestamp,
            })
            .collect(),
    };
    let merkle_root = manifest.merkle_tree().root();
    let manifest_uri = lake
        .put(
            &format!("manifests/batches/{batch_id}.json"),
            manifest.to_bytes(),
        )
        .await?;
    let (anchor_tx, anchor_block, newly_anchored) =
        anchor(chain, &manifest, merkle_root, manifest_uri.as_str()).await?;
    tracing::info!(%batch_id, accepted = accepted.len(), rejected = rejected.len(), %anchor_tx, "batch ingested");

    Ok(IngestReport {
        datanet_id,
        batch_id,
        accepted: accepted.len(),
        rejected,
        lake_version: appended.version,
        newly_committed: appended.newly_committed,
        manifest_uri: manifest_uri.to_string(),
        merkle_root,
        anchor_tx,
        anchor_block,
        newly_anchored,
    })
}

/// Anchors the batch unless it already is; returns the anchoring tx and block either way.
async fn anchor(
    chain: &Chain,
    m: &BatchManifest,
    root: B256,
    uri: &str,
) -> Result<(TxHash, u64, bool)> {
    let registry = chain.datanet_registry();
    let already = registry
        .batch(m.batch_id)
        .call()
        .await
        .map_err(tributary_chain::Error::from)?;
    if already.count == U256::ZERO {
        let call = registry.anchorBatch(
            U256::from(m.datanet_id),
            m.batch_id,
            root,
            U256::from(m.contributions.len()),
            uri.to_string(),
            m.hash(),
            m.lake_version,
        );
        match send(call).await {
            Ok(r) => return Ok((r.transaction_hash, r.block_number.unwrap_or_default(), true)),
            // Another process anchored it between our check and our transaction.
            Err(e)
                if matches!(
                    e.revert::<DatanetRegistry::DatanetRegistryErrors>(),
                    Some(DatanetRegistry::DatanetRegistryErrors::BatchAlreadyAnchored(_))
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let found = registry
        .BatchAnchored_filter()
        .topic2(m.batch_id)
        .from_block(chain.deployment().start_block)
        .query()
        .await
        .map_err(tributary_chain::Error::from)?;
    let (_, log) = found.first().ok_or_else(|| {
        Error::InvalidInput(format!(
            "batch {} is anchored but its event was not found",
            m.batch_id
        ))
    })?;
    Ok((
        log.transaction_hash.unwrap_or_default(),
        log.block_number.unwrap_or_default(),
        false,
    ))
}

fn to_record_batch(datanet_id: u64, batch_id: B256, rows: &[Signed]) -> Result<RecordBatch> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    let n = rows.len();
    let strings = |f: &dyn Fn(&Signed) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let ints = |f: &dyn Fn(&Signed) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
    };
    let batch = batch_id.to_string();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![datanet_id as i64; n])),
        strings(&|s| s.contribution.id().to_string()),
        strings(&|s| hex_lower(s.contribution.contributor.as_slice())),
        strings(&|s| s.contribution.contentHash.to_string()),
        strings(&|s| s.contribution.license.clone()),
        ints(&|s| s.contribution.timestamp as i64),
        ints(&|s| s.contribution.nonce as i64),
        ints(&|s| s.contribution.deadline as i64),
        strings(&|s| hex_lower(&s.signature.as_bytes())),
        strings(&|s| to_canonical_json(&s.content)),
        strings(&|_| batch.clone()),
        Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
    ];
    Ok(RecordBatch::try_new(tables::contributions(), columns)?)
}
