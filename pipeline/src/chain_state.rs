//! What the chain says about contributions: which batches are anchored, which contributions
//! are revoked and what validators recorded. Snapshots, attribution shares and settlement
//! read this, never a table only Tributary's own CLI writes: a revocation sent from a wallet
//! straight to the registry counts the same as one sent by `tributary revoke`.
//!
//! Read from the DatanetRegistry's logs (the same events the indexer follows), in one pass
//! over the deployment's blocks, so a lagging index cannot hide a revocation.
//!
//! [`published_adapters`] likewise reads the ModelRegistry's `AdapterPublished` events: the
//! one reader of published adapters for the catalog (`tributary-models`) and settlement.

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy::primitives::{Address, B256};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use arrow::array::AsArray;
use tributary_chain::Chain;
use tributary_chain::bindings::DatanetRegistry;
use tributary_lake::Lake;
use tributary_schemas::manifest::AdapterRecord;
use tributary_schemas::merkle::MerkleTree;
use tributary_schemas::tables::names;

use crate::Result;
use crate::validate::{REJECTED, verdict_leaf};

/// One `ValidationRecorded` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// The batch.
    pub batch_id: B256,
    /// The validator.
    pub validator: Address,
    /// Merkle root over the verdicts (see [`verdict_leaf`]).
    pub verdicts_root: B256,
    /// Contributions accepted.
    pub accepted: u64,
    /// Contributions rejected.
    pub rejected: u64,
    /// The recording transaction.
    pub tx: B256,
    /// Its block.
    pub block: u64,
}

/// A validator's latest verdict on a batch (see [`ChainState::verdicts`]).
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The validation on chain.
    pub validation: Validation,
    /// Its per-contribution verdicts (accepted or not) from the lake, when the lake's rows of
    /// its root hash to that root; `None` when the lake does not hold them.
    pub known: Option<BTreeMap<B256, bool>>,
}

/// What a `BatchAnchored` event commits a batch to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchored {
    /// Merkle root over its contribution ids.
    pub merkle_root: B256,
    /// keccak256 of its manifest's bytes.
    pub manifest_hash: B256,
    /// Where its manifest was written (a key, or a URI under the lake it was written to).
    pub manifest_uri: String,
}

/// The registry's state, as its events tell it.
#[derive(Debug, Clone, Default)]
pub struct ChainState {
    /// The registry's EIP-712 domain separator, which contributions are signed under (set
    /// by [`ChainState::extend`]).
    pub signing: B256,
    /// Batches anchored on chain, by id.
    pub anchored: HashMap<B256, Anchored>,
    /// Contributions revoked on chain.
    pub revoked: HashSet<B256>,
    /// Validations recorded on chain, in chain order.
    pub validations: Vec<Validation>,
}

impl ChainState {
    /// Reads every DatanetRegistry event from the deployment's start block to the head.
    pub async fn read(chain: &Chain) -> Result<Self> {
        let head = chain.head().await?;
        let mut state = Self::default();
        state
            .extend(chain, chain.deployment().start_block, head)
            .await?;
        Ok(state)
    }

    /// Applies the DatanetRegistry events of blocks `from..=to` (none when `from > to`), so
    /// a reader keeps its state up to date by reading only the blocks it has not seen. Read
    /// in ranges the endpoint accepts ([`Chain::logs_matching`]).
    pub async fn extend(&mut self, chain: &Chain, from: u64, to: u64) -> Result<()> {
        self.signing = tributary_schemas::contribution::domain(
            chain.chain_id(),
            chain.deployment().datanet_registry,
        )
        .separator();
        let filter = Filter::new()
            .address(chain.deployment().datanet_registry)
            .event_signature(vec![
                DatanetRegistry::BatchAnchored::SIGNATURE_HASH,
                DatanetRegistry::ContributionRevoked::SIGNATURE_HASH,
                DatanetRegistry::ValidationRecorded::SIGNATURE_HASH,
            ]);
        for log in &chain.logs_matching(&filter, from, to).await? {
            self.apply(log);
        }
        Ok(())
    }

    fn apply(&mut self, log: &alloy::rpc::types::Log) {
        use DatanetRegistry::{BatchAnchored, ContributionRevoked, ValidationRecorded};
        let raw = &log.inner;
        match raw.topics().first() {
            Some(&BatchAnchored::SIGNATURE_HASH) => {
                if let Ok(e) = BatchAnchored::decode_log(raw) {
                    self.anchored.insert(
                        e.batchId,
                        Anchored {
                            merkle_root: e.merkleRoot,
                            manifest_hash: e.manifestHash,
                            manifest_uri: e.manifestURI.clone(),
                        },
                    );
                }
            }
            Some(&ContributionRevoked::SIGNATURE_HASH) => {
                if let Ok(e) = ContributionRevoked::decode_log(raw) {
                    self.revoked.insert(e.contributionId);
                }
            }
            Some(&ValidationRecorded::SIGNATURE_HASH) => {
                if let Ok(e) = ValidationRecorded::decode_log(raw) {
                    self.validations.push(Validation {
                        batch_id: e.batchId,
                        validator: e.validator,
                        verdicts_root: e.verdictsRoot,
                        accepted: e.accepted.saturating_to(),
                        rejected: e.rejected.saturating_to(),
                        tx: log.transaction_hash.unwrap_or_default(),
                        block: log.block_number.unwrap_or_default(),
                    });
                }
            }
            _ => {}
        }
    }

    /// Contribution `id` is revoked on chain.
    pub fn is_revoked(&self, id: &B256) -> bool {
        self.revoked.contains(id)
    }

    /// Each validator's latest verdict on each batch, in chain order (a later attestation
    /// supersedes its earlier ones), with its per-contribution verdicts when the lake holds
    /// rows of that (batch, validator, root) that hash to the root recorded on chain.
    pub async fn verdicts(&self, lake: &Lake) -> Result<Vec<Verdict>> {
        // (batch, validator, root) -> verdicts in the lake (a rerun's rows repeat them)
        let mut rows: HashMap<(B256, Address, B256), BTreeMap<B256, bool>> = HashMap::new();
        for b in lake.read(names::VALIDATIONS, None).await? {
            let col = |n: &str| {
                b.column_by_name(n)
                    .expect("validations schema")
                    .as_string::<i32>()
                    .clone()
            };
            let (batch, who, id, verdict, root) = (
                col("batch_id"),
                col("validator"),
                col("contribution_id"),
                col("verdict"),
                col("verdicts_root"),
            );
            for i in 0..b.num_rows() {
                if let (Ok(batch), Ok(who), Ok(id), Ok(root)) = (
                    batch.value(i).parse::<B256>(),
                    who.value(i).parse::<Address>(),
                    id.value(i).parse::<B256>(),
                    root.value(i).parse::<B256>(),
                ) {
                    rows.entry((batch, who, root))
                        .or_default()
                        .insert(id, verdict.value(i) != REJECTED);
                }
            }
        }
        // In order of each (batch, validator)'s first verdict, holding its last.
        let mut latest: Vec<&Validation> = Vec::new();
        let mut at: HashMap<(B256, Address), usize> = HashMap::new();
        for v in &self.validations {
            match at.get(&(v.batch_id, v.validator)) {
                Some(&i) => latest[i] = v,
                None => {
                    at.insert((v.batch_id, v.validator), latest.len());
                    latest.push(v);
                }
            }
        }
        Ok(latest
            .into_iter()
            .map(|v| Verdict {
                validation: v.clone(),
                known: rows
                    .remove(&(v.batch_id, v.validator, v.verdicts_root))
                    .filter(|list| {
                        let leaves = list.iter().map(|(id, ok)| verdict_leaf(*id, *ok));
                        MerkleTree::new(leaves.collect()).root() == v.verdicts_root
                    }),
            })
            .collect())
    }

    /// What validators' latest verdicts ([`ChainState::verdicts`]) exclude. A validation that
    /// rejected something but whose verdicts the lake does not hold (or holds altered) holds
    /// its whole batch back: which contributions it rejected cannot be known, and none is let
    /// through unchecked.
    pub async fn rejections(&self, lake: &Lake) -> Result<Rejections> {
        let mut out = Rejections::default();
        for Verdict {
            validation: v,
            known,
        } in self.verdicts(lake).await?
        {
            if v.rejected == 0 {
                continue;
            }
            match known {
                Some(list) => out
                    .contributions
                    .extend(list.iter().filter(|(_, ok)| !**ok).map(|(id, _)| *id)),
                None => {
                    tracing::warn!(
                        batch = %v.batch_id,
                        validator = %v.validator,
                        rejected = v.rejected,
                        "a validation on chain rejected contributions whose verdicts the lake does not hold: the batch is held back"
                    );
                    out.batches.insert(v.batch_id);
                }
            }
        }
        Ok(out)
    }
}

/// What validators' recorded verdicts exclude (see [`ChainState::rejections`]).
#[derive(Debug, Clone, Default)]
pub struct Rejections {
    /// Contributions rejected by a verdict recorded on chain.
    pub contributions: HashSet<B256>,
    /// Batches held back whole: a validation on chain rejected some of their contributions,
    /// and the lake does not say which.
    pub batches: HashSet<B256>,
}

/// An adapter as its `AdapterPublished` event records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedAdapter {
    /// Adapter id.
    pub id: B256,
    /// `line@version`.
    pub version: String,
    /// Its folder in the lake where it was first written.
    pub uri: String,
    /// The snapshot it was trained on (zero for a merge).
    pub snapshot: B256,
    /// Its base model.
    pub base_model: B256,
    /// Its parents, in order.
    pub parents: Vec<B256>,
    /// keccak256 of its settings.
    pub config_hash: B256,
    /// keccak256 over its weights.
    pub weights_hash: B256,
    /// The publishing transaction.
    pub tx: B256,
    /// Its block.
    pub block: u64,
}

impl PublishedAdapter {
    /// What the chain records of its making, to check a manifest against
    /// ([`AdapterManifest::check`](tributary_schemas::manifest::AdapterManifest::check)).
    pub fn record(&self) -> AdapterRecord {
        AdapterRecord {
            id: self.id,
            base_model_id: self.base_model,
            snapshot_id: self.snapshot,
            parent_ids: self.parents.clone(),
            config_hash: self.config_hash,
            weights_hash: self.weights_hash,
        }
    }
}

/// Every adapter published on this chain, in publishing order, whoever sent the transaction.
pub async fn published_adapters(chain: &Chain) -> Result<Vec<PublishedAdapter>> {
    let filter = chain.model_registry().AdapterPublished_filter().filter;
    let found = chain
        .events::<tributary_chain::bindings::ModelRegistry::AdapterPublished>(&filter)
        .await?;
    Ok(found
        .into_iter()
        .map(|(e, log)| PublishedAdapter {
            id: e.id,
            version: e.version,
            uri: e.uri,
            snapshot: e.snapshotId,
            base_model: e.baseModelId,
            parents: e.parentIds,
            config_hash: e.configHash,
            weights_hash: e.weightsHash,
            tx: log.transaction_hash.unwrap_or_default(),
            block: log.block_number.unwrap_or_default(),
        })
        .collect())
}
