//! Inference batches: what the ledger posts for served answers. [`record`] writes the
//! manifest to the lake, the rows to `inferences` and `attributions`, and `InferencesRecorded`
//! on chain, each step idempotent.

use std::sync::Arc;

use alloy::primitives::{B256, U256, keccak256};
use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use tributary_chain::bindings::InferenceLedger;
use tributary_chain::{Chain, send};
use tributary_lake::Lake;
use tributary_schemas::lineage::hex_lower;
use tributary_schemas::manifest::{InferenceEntry, InferenceManifest};
use tributary_schemas::tables::{self, names};

use crate::{Error, Result};

/// The id of a batch of answers: keccak256 over a tag and their ids, in order.
pub fn batch_id(entries: &[InferenceEntry]) -> B256 {
    let mut buf = b"tributary-inferences".to_vec();
    for e in entries {
        buf.extend_from_slice(e.id().as_slice());
    }
    keccak256(buf)
}

/// Fetches a recorded batch's manifest and checks it against its `InferencesRecorded` event
/// ([`InferenceManifest::check`]), as the indexer does. `Ok(Err(reason))` when
/// the manifest is missing or differs; `Err` when the lake could not be read.
pub async fn check(
    e: &InferenceLedger::InferencesRecorded,
    lake: &Lake,
) -> Result<std::result::Result<InferenceManifest, String>> {
    let key = InferenceManifest::key(e.batchId);
    let bytes = match lake.get_recorded(&e.manifestURI, &key).await {
        Ok(bytes) => bytes,
        Err(err) if err.is_not_found() => {
            return Ok(Err(format!("manifest missing from the lake ({key})")));
        }
        Err(err) => return Err(err.into()),
    };
    let manifest: InferenceManifest = match serde_json::from_slice(&bytes) {
        Ok(m) => m,
        Err(err) => return Ok(Err(format!("manifest is not valid: {err}"))),
    };
    Ok(manifest
        .check(
            e.batchId,
            e.count.saturating_to(),
            &e.adapterIds,
            e.merkleRoot,
        )
        .map(|()| manifest))
}

/// Records one batch of answers: its manifest in the lake (`InferenceManifest::key`), its
/// rows in the `inferences` table, the answers' attribution in `attributions` (subject
/// `inference`) and `InferencesRecorded` on chain. Each step is
/// idempotent, so a retry after a crash completes the batch once. Returns the batch id.
pub async fn record(chain: &Chain, lake: &Lake, entries: &[InferenceEntry]) -> Result<B256> {
    let id = batch_id(entries);
    // Checked before anything is written: a fee the lake cannot hold exactly is refused.
    let fees = tables::amounts(entries.iter().map(|e| e.fee)).map_err(|fee| {
        Error::InvalidInput(format!(
            "an answer's fee of {fee} units is above {} (10^20 tokens), the most the lake \
             stores exactly: lower the serving fee",
            tables::MAX_AMOUNT
        ))
    })?;
    let manifest = InferenceManifest {
        batch_id: id,
        inferences: entries.to_vec(),
    };
    // Recorded on chain by its key, relative to the lake root.
    let uri = InferenceManifest::key(id);
    lake.put(&uri, manifest.to_bytes()).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let n = entries.len();
    let hex = |f: &dyn Fn(&InferenceEntry) -> B256| -> ArrayRef {
        Arc::new(StringArray::from(
            entries.iter().map(|e| f(e).to_string()).collect::<Vec<_>>(),
        ))
    };
    let batch = RecordBatch::try_new(
        tables::inferences(),
        vec![
            hex(&|e| e.id()),
            Arc::new(StringArray::from(vec![id.to_string(); n])),
            hex(&|e| e.adapter_id),
            hex(&|e| e.request_hash),
            hex(&|e| e.response_hash),
            hex(&|e| e.attribution_root),
            Arc::new(Int64Array::from(
                entries.iter().map(|e| e.tokens as i64).collect::<Vec<_>>(),
            )),
            Arc::new(fees),
            Arc::new(StringArray::from(
                entries
                    .iter()
                    .map(|e| serde_json::to_string(&e.attribution).expect("serialises"))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        ],
    )?;
    lake.append(names::INFERENCES)
        .batches(vec![batch])
        .idempotent(format!("tributary-inferences-{id}"), 0)
        .commit()
        .await?;
    // The answers' attribution, as `attributions` rows (subject `inference`).
    let rows: Vec<(
        &InferenceEntry,
        &tributary_schemas::manifest::AttributionShare,
    )> = entries
        .iter()
        .flat_map(|e| e.attribution.iter().map(move |a| (e, a)))
        .collect();
    if !rows.is_empty() {
        let m = rows.len();
        let text = |f: &dyn Fn(
            &InferenceEntry,
            &tributary_schemas::manifest::AttributionShare,
        ) -> String|
         -> ArrayRef {
            Arc::new(StringArray::from(
                rows.iter().map(|(e, a)| f(e, a)).collect::<Vec<_>>(),
            ))
        };
        let batch = RecordBatch::try_new(
            tables::attributions(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter()
                        .map(|(_, a)| a.datanet_id.unwrap_or(0) as i64)
                        .collect::<Vec<_>>(),
                )),
                text(&|_, _| "inference".into()),
                text(&|e, _| e.id().to_string()),
                text(&|e, _| e.adapter_id.to_string()),
                text(&|_, a| a.contribution.to_string()),
                text(&|_, a| {
                    a.contributor
                        .map(|c| hex_lower(c.as_slice()))
                        .unwrap_or_default()
                }),
                text(&|_, _| "tracin".into()),
                Arc::new(Float64Array::from(
                    rows.iter()
                        .map(|(_, a)| a.score.unwrap_or(f64::NAN))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(
                    rows.iter().map(|(_, a)| a.share).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(vec![None::<f64>; m])),
                Arc::new(Int64Array::from(vec![1i64; m])),
                Arc::new(TimestampMicrosecondArray::from(vec![now; m]).with_timezone("UTC")),
            ],
        )?;
        lake.append(names::ATTRIBUTIONS)
            .batches(vec![batch])
            .idempotent(format!("tributary-inference-attributions-{id}"), 0)
            .commit()
            .await?;
    }
    let mut adapters: Vec<B256> = entries.iter().map(|e| e.adapter_id).collect();
    adapters.sort();
    adapters.dedup();
    let ledger = chain.inference_ledger();
    let call = ledger.recordInferences(
        id,
        adapters,
        manifest.merkle_tree().root(),
        U256::from(n),
        uri.clone(),
    );
    match send(call).await {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.revert::<InferenceLedger::InferenceLedgerErrors>(),
                Some(InferenceLedger::InferenceLedgerErrors::BatchAlreadyRecorded(_))
            ) =>
        {
            // Recorded already: by an earlier attempt (a retry after a crash), or by another
            // recorder that took this id first. Only the first is done: the chain must hold
            // what this manifest says, or its answers would never settle.
            let filter = ledger.InferencesRecorded_filter().topic1(id).filter;
            let found = chain
                .events::<InferenceLedger::InferencesRecorded>(&filter)
                .await?;
            let (held, log) = found.first().ok_or_else(|| {
                Error::NotFound(format!("the InferencesRecorded event of batch {id}"))
            })?;
            manifest
                .check(
                    id,
                    held.count.saturating_to(),
                    &held.adapterIds,
                    held.merkleRoot,
                )
                .map_err(|why| {
                    Error::InvalidInput(format!(
                        "batch {id} is recorded on chain already (tx {}) with other contents: \
                         {why}; another recorder took this batch id, so these answers cannot \
                         be recorded under it: find who holds RECORDER_ROLE on the \
                         InferenceLedger",
                        log.transaction_hash.unwrap_or_default()
                    ))
                })?;
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(batch = %id, answers = n, "inferences recorded");
    Ok(id)
}
