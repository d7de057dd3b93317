//! Revocation: the contributor (proving authorship with their signature) or the Datanet owner
//! withdraws a contribution; the chain records it and the lake keeps a tombstone.

use std::sync::Arc;

use alloy::primitives::{B256, Bytes, TxHash, U256};
use arrow::array::{ArrayRef, AsArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
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
    let (datanet_id, _) = crate::verify::find_contribution(lake, id).await?;
    let (contributor, signature) = signature_of(lake, id).await?;
    // The contributor proves authorship with the signature they gave; the owner needs none.
    let proof = if contributor == chain.signer() {
        signature
    } else {
        Bytes::new()
    };
    let registry = chain.datanet_registry();
    let (tx, block, newly_revoked) = match send(registry.revokeContribution(
        U256::from(datanet_id),
        id,
        proof,
        reason.to_string(),
    ))
    .await
    {
        Ok(r) => (r.transaction_hash, r.block_number.unwrap_or_default(), true),
        Err(e) => match e.revert::<E>() {
            Some(E::AlreadyRevoked(_)) => {
                let found = registry
                    .ContributionRevoked_filter()
                    .topic2(id)
                    .from_block(chain.deployment().start_block)
                    .query()
                    .await
                    .map_err(tributary_chain::Error::from)?;
                let (_, log) = found
                    .first()
                    .ok_or_else(|| Error::NotFound(format!("revocation event of {id}")))?;
                (
                    log.transaction_hash.unwrap_or_default(),
                    log.block_number.unwrap_or_default(),
                    false,
                )
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

async fn signature_of(lake: &Lake, id: B256) -> Result<(alloy::primitives::Address, Bytes)> {
    let want = id.to_string();
    for b in lake.read(names::CONTRIBUTIONS, None).await? {
        let ids = b
            .column_by_name("contribution_id")
            .expect("schema")
            .as_string::<i32>();
        if let Some(i) = (0..b.num_rows()).find(|&i| ids.value(i) == want) {
            let s = |c: &str| {
                b.column_by_name(c)
                    .expect("schema")
                    .as_string::<i32>()
                    .value(i)
                    .to_string()
            };
            let who = s("contributor")
                .parse()
                .map_err(|_| Error::InvalidInput("bad contributor in the lake".into()))?;
            let sig = s("signature")
                .parse()
                .map_err(|_| Error::InvalidInput("bad signature in the lake".into()))?;
            return Ok((who, sig));
        }
    }
    Err(Error::NotFound(format!(
        "no contribution {id} in this lake"
    )))
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
