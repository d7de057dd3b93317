//! Revocation: the contributor or the owner of the contribution's Datanet withdraws it. The
//! registry checks who may, from the signed struct and its Merkle proof in the anchored batch;
//! the chain's `ContributionRevoked` is what every consumer reads (see [`crate::chain_state`]).
//! The lake's `revocations` table keeps a tombstone for analysts.

use std::sync::Arc;

use alloy::primitives::{B256, TxHash};
use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use tributary_chain::bindings::DatanetRegistry;
use tributary_chain::bindings::DatanetRegistry::DatanetRegistryErrors as E;
use tributary_chain::{Chain, send};
use tributary_lake::Lake;
use tributary_schemas::lineage::hex_lower;
use tributary_schemas::tables::{self, names};

use crate::{Error, Result};

/// What a revocation did.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The Datanet.
    pub datanet_id: u64,
    /// The revoking transaction.
    pub tx: TxHash,
    /// Its block.
    pub block: u64,
    /// False when it was already revoked.
    pub newly_revoked: bool,
}

/// Revokes contribution `id` as the chain's signer, with `reason`.
pub async fn revoke(chain: &Chain, lake: &Lake, id: B256, reason: &str) -> Result<Revoked> {
    let stored = crate::verify::find_contribution(lake, id).await?;
    let c = &stored.contribution;
    let (datanet_id, contributor) = (c.datanetId.to::<u64>(), c.contributor);
    let proof = crate::verify::batch_proof(lake, stored.batch_id, id).await?;
    let registry = chain.datanet_registry();
    let (tx, block, newly_revoked) = match send(registry.revokeContribution(
        stored.batch_id,
        c.into(),
        proof,
        reason.to_string(),
    ))
    .await
    {
        Ok(r) => (r.transaction_hash, r.block_number.unwrap_or_default(), true),
        Err(e) => match e.revert::<E>() {
            Some(E::AlreadyRevoked(_)) => {
                let filter = registry.ContributionRevoked_filter().topic2(id).filter;
                let found = chain
                    .events::<DatanetRegistry::ContributionRevoked>(&filter)
                    .await?;
                let (_, log) = found
                    .first()
                    .ok_or_else(|| Error::NotFound(format!("revocation event of {id}")))?;
                (
                    log.transaction_hash.unwrap_or_default(),
                    log.block_number.unwrap_or_default(),
                    false,
                )
            }
            Some(E::NotInBatch(_)) => {
                return Err(Error::InvalidInput(format!(
                    "the lake's copy of {id} does not match its batch {} anchored on chain: run `tributary verify {id}`",
                    stored.batch_id
                )));
            }
            Some(E::NotContributorOrOwner(_)) => {
                return Err(Error::InvalidInput(format!(
                    "{} is neither the contributor ({contributor}) nor the Datanet's owner: sign with one of their keys",
                    chain.signer()
                )));
            }
            _ => return Err(e.into()),
        },
    };
    let row = tombstone(datanet_id, id, chain.signer(), reason, tx, block)?;
    lake.append(names::REVOCATIONS)
        .batches(vec![row])
        .idempotent(format!("tributary-revoke-{id}"), 0)
        .commit()
        .await?;
    Ok(Revoked {
        datanet_id,
        tx,
        block,
        newly_revoked,
    })
}

fn tombstone(
    datanet_id: u64,
    id: B256,
    by: alloy::primitives::Address,
    reason: &str,
    tx: TxHash,
    block: u64,
) -> Result<RecordBatch> {
    let s = |v: String| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
    let i = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
    let now = crate::ingest::now_micros();
    Ok(RecordBatch::try_new(
        tables::revocations(),
        vec![
            i(datanet_id as i64),
            s(id.to_string()),
            s(hex_lower(by.as_slice())),
            s(reason.to_string()),
            s(tx.to_string()),
            i(block as i64),
            Arc::new(TimestampMicrosecondArray::from(vec![now]).with_timezone("UTC")),
        ],
    )?)
}
