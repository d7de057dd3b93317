//! Proofs: a contribution's Merkle proof against the root anchored on chain.

use alloy::primitives::{B256, TxHash, U256};
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_schemas::manifest::BatchManifest;
use tributary_schemas::merkle::{self, leaf_bytes32};
use tributary_schemas::tables::names;

use crate::{Error, Result};

/// Everything that proves (or fails to prove) one contribution.
#[derive(Debug, Clone)]
pub struct Proof {
    /// The contribution.
    pub contribution_id: B256,
    /// Its Datanet.
    pub datanet_id: u64,
    /// Its batch.
    pub batch_id: B256,
    /// The Merkle proof (sibling hashes, leaf to root).
    pub proof: Vec<B256>,
    /// The root the manifest gives.
    pub root: B256,
    /// The root the registry holds.
    pub root_on_chain: B256,
    /// The anchoring transaction and block.
    pub anchor_tx: TxHash,
    /// The anchoring block.
    pub anchor_block: u64,
    /// Where the manifest is.
    pub manifest_uri: String,
    /// Revoked on chain.
    pub revoked: bool,
    /// The registry's `verifyContribution` says yes (false when revoked).
    pub holds: bool,
    /// Validators' verdicts: (validator, `accepted` or `rejected`).
    pub verdicts: Vec<(String, String)>,
}

impl Proof {
    /// The contribution's status: `revoked`, `rejected` (by any validator), `accepted` (by at
    /// least one validator), else `pending`.
    pub fn status(&self) -> &'static str {
        if self.revoked {
            "revoked"
        } else if self
            .verdicts
            .iter()
            .any(|(_, v)| v == crate::validate::REJECTED)
        {
            "rejected"
        } else if self.verdicts.is_empty() {
            "pending"
        } else {
            "accepted"
        }
    }
}

/// Builds the proof of `id` from the lake and checks it with the registry on chain.
pub async fn prove(chain: &Chain, lake: &Lake, id: B256) -> Result<Proof> {
    let Stored {
        datanet_id,
        batch_id,
        ..
    } = find_contribution(lake, id).await?;
    let (manifest_uri, anchor_tx, anchor_block) = find_batch(lake, batch_id).await?;
    let manifest: BatchManifest = serde_json::from_slice(&lake.get(&manifest_uri).await?)
        .map_err(|e| Error::InvalidInput(format!("manifest {manifest_uri} is not valid: {e}")))?;
    let tree = manifest.merkle_tree();
    let proof = tree.proof(&leaf_bytes32(id)).ok_or_else(|| {
        Error::InvalidInput(format!("contribution {id} is not in its batch's manifest"))
    })?;
    let registry = chain.datanet_registry();
    let on_chain = registry
        .batch(batch_id)
        .call()
        .await
        .map_err(tributary_chain::Error::from)?;
    let holds = on_chain.count != U256::ZERO
        && merkle::verify(&proof, on_chain.merkleRoot, leaf_bytes32(id))
        && registry
            .verifyContribution(batch_id, id, proof.clone())
            .call()
            .await
            .map_err(tributary_chain::Error::from)?;
    let revoked = registry
        .revoked(id)
        .call()
        .await
        .map_err(tributary_chain::Error::from)?;
    Ok(Proof {
        contribution_id: id,
        datanet_id,
        batch_id,
        proof,
        root: tree.root(),
        root_on_chain: on_chain.merkleRoot,
        anchor_tx,
        anchor_block,
        manifest_uri,
        revoked,
        holds,
        verdicts: crate::validate::verdicts_on(lake, id).await?,
    })
}

/// A contribution as stored in the lake.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) datanet_id: u64,
    pub(crate) batch_id: B256,
    pub(crate) contributor: alloy::primitives::Address,
    pub(crate) signature: alloy::primitives::Bytes,
}

/// Contribution `id` as stored in the `contributions` table.
pub(crate) async fn find_contribution(lake: &Lake, id: B256) -> Result<Stored> {
    let row = find_row(lake, names::CONTRIBUTIONS, "contribution_id", id).await?;
    let row = row.ok_or_else(|| Error::NotFound(format!("no contribution {id} in this lake")))?;
    let bad =
        |what: &str| Error::InvalidInput(format!("bad {what} of contribution {id} in the lake"));
    Ok(Stored {
        datanet_id: row.int("datanet_id") as u64,
        batch_id: row.text("batch_id").parse().map_err(|_| bad("batch id"))?,
        contributor: row
            .text("contributor")
            .parse()
            .map_err(|_| bad("contributor"))?,
        signature: row
            .text("signature")
            .parse()
            .map_err(|_| bad("signature"))?,
    })
}

/// (manifest URI, anchor tx, anchor block) of batch `batch_id`.
async fn find_batch(lake: &Lake, batch_id: B256) -> Result<(String, TxHash, u64)> {
    let row = find_row(lake, names::BATCHES, "batch_id", batch_id).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "batch {batch_id} is committed but not anchored yet: run `tributary contribute` (it finishes such batches)"
        ))
    })?;
    let tx = row
        .text("anchor_tx")
        .parse()
        .map_err(|_| Error::InvalidInput("bad anchor tx in the lake".into()))?;
    Ok((
        row.text("manifest_uri").to_string(),
        tx,
        row.int("anchor_block") as u64,
    ))
}

/// One row of a table (columns typed as `tributary_schemas::tables` declares them).
struct Row {
    batch: arrow::record_batch::RecordBatch,
    index: usize,
}

impl Row {
    fn text(&self, column: &str) -> &str {
        self.batch
            .column_by_name(column)
            .expect("declared column")
            .as_string::<i32>()
            .value(self.index)
    }

    fn int(&self, column: &str) -> i64 {
        self.batch
            .column_by_name(column)
            .expect("declared column")
            .as_primitive::<Int64Type>()
            .value(self.index)
    }
}

/// The first row of `table` whose string column `key` holds `value`.
async fn find_row(lake: &Lake, table: &str, key: &str, value: B256) -> Result<Option<Row>> {
    let want = value.to_string();
    for batch in lake.read(table, None).await? {
        let keys = batch
            .column_by_name(key)
            .expect("declared column")
            .as_string::<i32>();
        if let Some(index) = (0..batch.num_rows()).find(|&i| keys.value(i) == want) {
            return Ok(Some(Row { batch, index }));
        }
    }
    Ok(None)
}
