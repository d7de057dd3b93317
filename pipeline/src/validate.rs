//! Validator attestations: a validator of a Datanet reviews an anchored batch and records its
//! verdict on every contribution in it — a Merkle root of the verdicts and the counts on chain
//! (`ValidationRecorded`), one row per contribution in the `validations` table. A validator's
//! latest verdict on a batch supersedes its earlier ones.

use std::collections::HashSet;
use std::sync::Arc;

use alloy::primitives::{B256, TxHash, U256, keccak256};
use arrow::array::{ArrayRef, AsArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use tributary_chain::bindings::DatanetRegistry::DatanetRegistryErrors as E;
use tributary_chain::{Chain, send};
use tributary_lake::Lake;
use tributary_schemas::lineage::hex_lower;
use tributary_schemas::manifest::BatchManifest;
use tributary_schemas::merkle::{MerkleTree, leaf_bytes32};
use tributary_schemas::tables::{self, names};

use crate::{Error, Result};

/// Verdict strings in the `validations` table.
pub const ACCEPTED: &str = "accepted";
/// See [`ACCEPTED`].
pub const REJECTED: &str = "rejected";

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
    let earlier = registry
        .ValidationRecorded_filter()
        .topic2(batch_id)
        .topic3(chain.signer().into_word())
        .from_block(chain.deployment().start_block)
        .query()
        .await
        .map_err(tributary_chain::Error::from)?;
    let (tx, block) = match earlier.last() {
        Some((e, log)) if e.verdictsRoot == root => (
            log.transaction_hash.unwrap_or_default(),
            log.block_number.unwrap_or_default(),
        ),
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

/// The verdicts recorded on contribution `id`: (validator, verdict), each validator's latest
/// (a later attestation of the batch supersedes its earlier ones).
pub async fn verdicts_on(lake: &Lake, id: B256) -> Result<Vec<(String, String)>> {
    let want = id.to_string();
    // validator -> (block, verdict)
    let mut latest: std::collections::BTreeMap<String, (i64, String)> = Default::default();
    for b in lake.read(names::VALIDATIONS, None).await? {
        let col = |n: &str| {
            b.column_by_name(n)
                .expect("validations schema")
                .as_string::<i32>()
                .clone()
        };
        let (ids, who, verdict) = (col("contribution_id"), col("validator"), col("verdict"));
        let blocks = b
            .column_by_name("block_number")
            .expect("validations schema")
            .as_primitive::<arrow::datatypes::Int64Type>();
        for i in (0..b.num_rows()).filter(|&i| ids.value(i) == want) {
            let seen = latest.entry(who.value(i).to_string()).or_default();
            if blocks.value(i) >= seen.0 {
                *seen = (blocks.value(i), verdict.value(i).to_string());
            }
        }
    }
    Ok(latest.into_iter().map(|(who, (_, v))| (who, v)).collect())
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
