//! Validator attestations: a validator of a Datanet reviews an anchored batch and records its
//! verdict on every contribution in it — a Merkle root of the verdicts and the counts on chain
//! (`ValidationRecorded`), one row per contribution in the `validations` table. A validator's
//! latest verdict on a batch supersedes its earlier ones.

use std::collections::HashSet;
use std::sync::Arc;

use alloy::primitives::{B256, TxHash, U256, keccak256};
use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use tributary_chain::bindings::DatanetRegistry::DatanetRegistryErrors as E;
use tributary_chain::{Chain, send};
use tributary_lake::Lake;
use tributary_schemas::lineage::hex_lower;
use tributary_schemas::manifest::BatchManifest;
use tributary_schemas::merkle::{MerkleTree, leaf_bytes32};
use tributary_schemas::tables::{self, names};

use crate::chain_state::ChainState;
use crate::{Error, Result};

/// Verdict strings in the `validations` table.
pub const ACCEPTED: &str = "accepted";
/// See [`ACCEPTED`].
pub const REJECTED: &str = "rejected";
/// A verdict that rejected something the lake does not say (see [`verdicts_on`]).
pub const UNKNOWN: &str = "unknown";

/// What an attestation recorded.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// Merkle root over the verdicts.
    pub verdicts_root: B256,
    /// Contributions accepted.
    pub accepted: usize,
    /// Contributions rejected.
    pub rejected: usize,
    /// The recording transaction.
    pub tx: TxHash,
    /// Its block.
    pub block: u64,
}

/// The leaf of one verdict: `keccak256(contribution id ‖ 0x01 accepted / 0x00 rejected)`,
/// double-hashed as every Tributary leaf.
pub fn verdict_leaf(contribution: B256, accepted: bool) -> B256 {
    let mut buf = contribution.to_vec();
    buf.push(accepted as u8);
    leaf_bytes32(keccak256(buf))
}

/// Records the chain signer's verdicts on `batch_id`: every contribution accepted except those
/// in `reject`. The signer must be a validator of the Datanet.
pub async fn attest(
    chain: &Chain,
    lake: &Lake,
    batch_id: B256,
    reject: &[B256],
) -> Result<Attestation> {
    let manifest = batch_manifest(lake, batch_id).await?;
    let in_batch: HashSet<B256> = manifest.contributions.iter().map(|c| c.id).collect();
    if let Some(stranger) = reject.iter().find(|id| !in_batch.contains(*id)) {
        return Err(Error::InvalidInput(format!(
            "contribution {stranger} is not in batch {batch_id}"
        )));
    }
    let rejected: HashSet<B256> = reject.iter().copied().collect();
    let verdicts: Vec<(B256, bool)> = manifest
        .contributions
        .iter()
        .map(|c| (c.id, !rejected.contains(&c.id)))
        .collect();
    let root = MerkleTree::new(
        verdicts
            .iter()
            .map(|(id, ok)| verdict_leaf(*id, *ok))
            .collect(),
    )
    .root();
    let accepted = verdicts.iter().filter(|(_, ok)| *ok).count();

    let registry = chain.datanet_registry();
    // This validator's latest verdict on the batch, when it is this one, is not recorded
    // again: a run that died after its transaction and before its rows is finished here,
    // and a rerun adds nothing.
    let state = ChainState::read(chain).await?;
    let latest = state
        .validations
        .iter()
        .rfind(|v| (v.batch_id, v.validator) == (batch_id, chain.signer()));
    let (tx, block) = match latest {
        Some(v) if v.verdicts_root == root => (v.tx, v.block),
        _ => {
            let call = registry.recordValidation(
                U256::from(manifest.datanet_id),
                batch_id,
                root,
                U256::from(accepted),
                U256::from(rejected.len()),
            );
            let receipt = send(call).await.map_err(|e| match e.revert::<E>() {
                Some(E::NotValidator(_)) => Error::InvalidInput(format!(
                    "{} is not a validator of Datanet {}: the owner appoints validators (manifest [access] validators)",
                    chain.signer(),
                    manifest.datanet_id
                )),
                _ => e.into(),
            })?;
            (
                receipt.transaction_hash,
                receipt.block_number.unwrap_or_default(),
            )
        }
    };
    let rows = rows(
        manifest.datanet_id,
        batch_id,
        chain.signer(),
        &verdicts,
        root,
        tx,
        block,
    )?;
    lake.append(names::VALIDATIONS)
        .batches(vec![rows])
        .idempotent(format!("tributary-validation-{tx}"), 0)
        .commit()
        .await?;
    Ok(Attestation {
        verdicts_root: root,
        accepted,
        rejected: rejected.len(),
        tx,
        block,
    })
}

/// Each validator's latest verdict on contribution `id` of batch `batch` ([`ChainState::verdicts`]):
/// (validator, `accepted` or `rejected`), or `unknown` when that verdict rejected something
/// and the lake does not hold which (its batch is held back).
pub async fn verdicts_on(
    state: &ChainState,
    lake: &Lake,
    batch: B256,
    id: B256,
) -> Result<Vec<(String, String)>> {
    Ok(state
        .verdicts(lake)
        .await?
        .into_iter()
        .filter(|v| v.validation.batch_id == batch)
        .map(|v| {
            // Nothing rejected: every contribution accepted, whatever rows the lake holds.
            let ok = match v.validation.rejected {
                0 => Some(true),
                _ => v.known.map(|list| list.get(&id).copied().unwrap_or(true)),
            };
            let verdict = match ok {
                Some(true) => ACCEPTED,
                Some(false) => REJECTED,
                None => UNKNOWN,
            };
            (
                hex_lower(v.validation.validator.as_slice()),
                verdict.to_string(),
            )
        })
        .collect())
}

async fn batch_manifest(lake: &Lake, batch_id: B256) -> Result<BatchManifest> {
    let uri = BatchManifest::key(batch_id);
    let bytes = lake
        .get(&uri)
        .await
        .map_err(|_| Error::NotFound(format!("batch {batch_id} has no manifest in this lake")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::InvalidInput(format!("manifest of batch {batch_id}: {e}")))
}

fn rows(
    datanet_id: u64,
    batch_id: B256,
    validator: alloy::primitives::Address,
    verdicts: &[(B256, bool)],
    root: B256,
    tx: TxHash,
    block: u64,
) -> Result<RecordBatch> {
    let n = verdicts.len();
    let same = |v: String| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
    Ok(RecordBatch::try_new(
        tables::validations(),
        vec![
            Arc::new(Int64Array::from(vec![datanet_id as i64; n])),
            same(batch_id.to_string()),
            same(hex_lower(validator.as_slice())),
            Arc::new(StringArray::from_iter_values(
                verdicts.iter().map(|(id, _)| id.to_string()),
            )),
            Arc::new(StringArray::from_iter_values(
                verdicts
                    .iter()
                    .map(|(_, ok)| if *ok { ACCEPTED } else { REJECTED }),
            )),
            same(root.to_string()),
            same(tx.to_string()),
            Arc::new(Int64Array::from(vec![block as i64; n])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![crate::ingest::now_micros(); n])
                    .with_timezone("UTC"),
            ),
        ],
    )?)
}
