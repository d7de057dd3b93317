//! Proofs: a contribution's Merkle proof against the root anchored on chain.
//!
//! [`prove`] checks a contribution end to end: the lake's row against its id and signature,
//! the manifest entry, the proof against the root on chain, and the registry (not revoked).

use alloy::primitives::{B256, TxHash, U256};
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_schemas::canonical::content_hash;
use tributary_schemas::contribution::{Contribution, domain};
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
    /// The root the registry holds (zero when the batch is not anchored on this chain).
    pub root_on_chain: B256,
    /// The anchoring transaction and block.
    pub anchor_tx: TxHash,
    /// The anchoring block.
    pub anchor_block: u64,
    /// Where the manifest is.
    pub manifest_uri: String,
    /// Revoked on chain.
    pub revoked: bool,
    /// Why the contribution is not verified; `None` when every check holds.
    pub failure: Option<String>,
    /// Validators' verdicts: (validator, `accepted` or `rejected`).
    pub verdicts: Vec<(String, String)>,
}

impl Proof {
    /// Every check holds: the lake's copy is the signed contribution, its manifest entry
    /// matches it, the proof leads to the root on chain and it is not revoked.
    pub fn holds(&self) -> bool {
        self.failure.is_none()
    }

    /// The contribution's status: `revoked`, `rejected` (by any validator's latest verdict),
    /// `held` (a latest verdict rejected contributions of its batch and the lake does not
    /// say which: snapshots leave the batch out), `accepted` (by at least one validator),
    /// else `pending`.
    pub fn status(&self) -> &'static str {
        let any = |verdict: &str| self.verdicts.iter().any(|(_, v)| v == verdict);
        if self.revoked {
            "revoked"
        } else if any(crate::validate::REJECTED) {
            "rejected"
        } else if any(crate::validate::UNKNOWN) {
            "held"
        } else if self.verdicts.is_empty() {
            "pending"
        } else {
            "accepted"
        }
    }
}

/// Checks contribution `id` end to end: the lake's row hashes to the id and carries its
/// contributor's signature, the batch manifest lists it as stored, the manifest's Merkle proof
/// leads to the root anchored on chain, and the registry holds it unrevoked. A check that
/// fails is reported in [`Proof::failure`]; `Err` means the checks could not run (the chain or
/// lake is unreachable, an unknown id: [`Error::NotFound`]).
pub async fn prove(chain: &Chain, lake: &Lake, id: B256) -> Result<Proof> {
    let stored = find_contribution(lake, id).await?;
    let (manifest_uri, anchor_tx, anchor_block) = find_batch(lake, stored.batch_id).await?;
    let manifest = read_manifest(lake, &manifest_uri).await?;
    let tree = manifest.merkle_tree();
    let proof = tree.proof(&leaf_bytes32(id)).unwrap_or_default();
    let registry = chain.datanet_registry();
    let call = |e: alloy::contract::Error| Error::from(tributary_chain::Error::from(e));
    let on_chain = registry.batch(stored.batch_id).call().await.map_err(call)?;
    let revoked = registry.revoked(id).call().await.map_err(call)?;
    let mut failure = stored.tampered(chain, id).err();
    if failure.is_none() {
        failure = match manifest.contributions.iter().find(|e| e.id == id) {
            None => Some(format!(
                "wrong proof: the manifest {manifest_uri} does not list the contribution"
            )),
            Some(e) if !stored.matches(e) => Some(format!(
                "the manifest {manifest_uri} lists the contribution with other fields than the lake's row"
            )),
            Some(_) => None,
        };
    }
    if failure.is_none() {
        failure = if on_chain.count == U256::ZERO {
            Some(format!(
                "root not on chain: batch {} is not anchored on this chain",
                stored.batch_id
            ))
        } else if !merkle::verify(&proof, on_chain.merkleRoot, leaf_bytes32(id)) {
            Some(format!(
                "wrong proof: the manifest's Merkle tree gives root {}, the chain holds {} (the manifest was altered)",
                tree.root(),
                on_chain.merkleRoot
            ))
        } else if revoked {
            Some("revoked: the contribution was withdrawn on chain".into())
        } else if !registry
            .verifyContribution(stored.batch_id, id, proof.clone())
            .call()
            .await
            .map_err(call)?
        {
            Some("the registry's verifyContribution refuses the proof".into())
        } else {
            None
        };
    }
    Ok(Proof {
        contribution_id: id,
        datanet_id: stored.contribution.datanetId.to::<u64>(),
        batch_id: stored.batch_id,
        proof,
        root: tree.root(),
        root_on_chain: on_chain.merkleRoot,
        anchor_tx,
        anchor_block,
        manifest_uri: lake.uri(&manifest_uri).to_string(),
        revoked,
        failure,
        verdicts: crate::validate::verdicts_on(
            &crate::chain_state::ChainState::read(chain).await?,
            lake,
            stored.batch_id,
            id,
        )
        .await?,
    })
}

/// A contribution as stored in the lake.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// The signed struct, rebuilt from the row's columns.
    pub(crate) contribution: Contribution,
    pub(crate) batch_id: B256,
    pub(crate) signature: alloy::primitives::Bytes,
    /// The content column (canonical JSON).
    pub(crate) content: String,
}

impl Stored {
    /// Why the row is not the contribution `id` its contributor signed, if it is not.
    fn tampered(&self, chain: &Chain, id: B256) -> std::result::Result<(), String> {
        let c = &self.contribution;
        let content: serde_json::Value = serde_json::from_str(&self.content)
            .map_err(|e| format!("the lake's content is not JSON: {e}"))?;
        if content_hash(&content) != c.contentHash {
            return Err(
                "the lake's content does not hash to the signed content hash (altered in the lake)"
                    .into(),
            );
        }
        if c.id() != id {
            return Err(format!(
                "the lake's row hashes to {}, not to the id {id} (altered in the lake)",
                c.id()
            ));
        }
        let signature = alloy::primitives::Signature::try_from(self.signature.as_ref())
            .map_err(|e| format!("the lake's signature is malformed: {e}"))?;
        c.verify(
            &domain(chain.chain_id(), chain.deployment().datanet_registry),
            &signature,
        )
        .map_err(|e| format!("the signature is not the contributor's: {e}"))
    }

    /// The manifest entry describes this row.
    fn matches(&self, e: &tributary_schemas::manifest::ManifestEntry) -> bool {
        let c = &self.contribution;
        e.contributor == c.contributor
            && e.content_hash == c.contentHash
            && e.license == c.license
            && e.timestamp == c.timestamp
            && e.proof.as_ref().is_none_or(|p| {
                (p.nonce, p.deadline, &p.signature) == (c.nonce, c.deadline, &self.signature)
            })
    }
}

/// Contribution `id` as stored in the `contributions` table.
pub(crate) async fn find_contribution(lake: &Lake, id: B256) -> Result<Stored> {
    let row = find_row(lake, names::CONTRIBUTIONS, "contribution_id", id).await?;
    let row = row.ok_or_else(|| Error::NotFound(format!("no contribution {id} in this lake")))?;
    fn parse<T: std::str::FromStr>(row: &Row, column: &str, id: B256) -> Result<T> {
        row.text(column).parse().map_err(|_| {
            Error::InvalidInput(format!("bad {column} of contribution {id} in the lake"))
        })
    }
    Ok(Stored {
        contribution: Contribution {
            datanetId: U256::from(row.int("datanet_id") as u64),
            contributor: parse(&row, "contributor", id)?,
            contentHash: parse(&row, "content_hash", id)?,
            license: row.text("license").to_string(),
            timestamp: row.int("timestamp") as u64,
            nonce: row.int("nonce") as u64,
            deadline: row.int("deadline") as u64,
        },
        batch_id: parse(&row, "batch_id", id)?,
        signature: parse(&row, "signature", id)?,
        content: row.text("content").to_string(),
    })
}

async fn read_manifest(lake: &Lake, uri: &str) -> Result<BatchManifest> {
    serde_json::from_slice(&lake.get(uri).await?)
        .map_err(|e| Error::InvalidInput(format!("manifest {uri} is not valid: {e}")))
}

/// The Merkle proof of `id` in its anchored batch `batch_id`, from the batch manifest.
pub(crate) async fn batch_proof(lake: &Lake, batch_id: B256, id: B256) -> Result<Vec<B256>> {
    let (uri, _, _) = find_batch(lake, batch_id).await?;
    read_manifest(lake, &uri)
        .await?
        .merkle_tree()
        .proof(&leaf_bytes32(id))
        .ok_or_else(|| Error::InvalidInput(format!("the manifest {uri} does not list {id}")))
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
    // Recorded as a key; a lake written before kept absolute URIs, which lead nowhere once
    // the lake moves: then the manifest is at its canonical key.
    let manifest = lake.locate(row.text("manifest_uri"), &BatchManifest::key(batch_id));
    Ok((manifest, tx, row.int("anchor_block") as u64))
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
