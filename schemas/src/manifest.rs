//! The batch manifest: what a `BatchAnchored` event commits to. It is written to the lake as
//! JSON; the chain holds its URI and `keccak256` of its bytes, and the batch's Merkle root over
//! the contribution ids it lists.
//!
//! Also the other manifests the chain commits to, each at a fixed key in the lake:
//! [`InferenceManifest`] (`InferencesRecorded`), [`SnapshotManifest`] (`SnapshotCommitted`)
//! and [`AdapterManifest`] (`AdapterPublished`), all under [`ARTIFACTS`].

use alloy::primitives::{Address, B256, Bytes, Signature, U256, keccak256};
use alloy::sol_types::SolValue;
use serde::{Deserialize, Serialize};

use crate::merkle::{MerkleTree, leaf_bytes32};

/// The lake prefix of primary artifacts that live next to Delta tables named alike
/// (snapshot, inference and Datanet manifests, adapter folders): kept out of the tables'
/// folders, so dropping, rebuilding or vacuuming a table never touches them.
pub const ARTIFACTS: &str = "artifacts/";

/// One contribution as listed in a batch manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Contribution id (EIP-712 struct hash).
    pub id: B256,
    /// The signer.
    pub contributor: Address,
    /// keccak256 of the canonical content.
    pub content_hash: B256,
    /// SPDX license id.
    pub license: String,
    /// Contributor's timestamp, seconds since the Unix epoch.
    pub timestamp: u64,
    /// What else the contributor signed, and the signature: with the batch's Datanet they give
    /// the id back, so anyone can check the entry from the manifest alone
    /// ([`ManifestEntry::check`]). `None` in manifests written before entries carried it;
    /// the batch's `contributions` rows in the lake hold it for those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<EntryProof>,
}

/// The part of a signed contribution a manifest entry needs besides its listed fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryProof {
    /// The contributor's nonce.
    pub nonce: u64,
    /// The signature's deadline, seconds since the Unix epoch.
    pub deadline: u64,
    /// The contributor's EIP-712 signature, 65 bytes (`r ‖ s ‖ v`).
    pub signature: Bytes,
}

impl ManifestEntry {
    /// Checks that this entry is a contribution its contributor signed for Datanet
    /// `datanet_id`: its fields, with that Datanet and `proof`, hash to its id, and the
    /// signature (low-s) recovers to the contributor under the registry's domain
    /// (`domain_separator`, see [`crate::contribution::domain`]). The error says which.
    pub fn check(
        &self,
        datanet_id: u64,
        proof: &EntryProof,
        domain_separator: B256,
    ) -> Result<(), String> {
        let c = crate::contribution::Contribution {
            datanetId: U256::from(datanet_id),
            contributor: self.contributor,
            contentHash: self.content_hash,
            license: self.license.clone(),
            timestamp: self.timestamp,
            nonce: proof.nonce,
            deadline: proof.deadline,
        };
        let id = c.id();
        if id != self.id {
            return Err(format!(
                "entry {} is not a contribution to Datanet {datanet_id}: its fields hash to {id} \
                 (altered, or signed for another Datanet)",
                self.id
            ));
        }
        let signature = Signature::try_from(proof.signature.as_ref())
            .map_err(|e| format!("entry {}: malformed signature: {e}", self.id))?;
        c.verify_prehashed(id, domain_separator, &signature)
            .map_err(|e| format!("entry {} is not signed by its contributor: {e}", self.id))
    }
}

/// A batch of contributions committed to the lake in one Delta commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchManifest {
    /// On-chain Datanet id.
    pub datanet_id: u64,
    /// Deterministic batch id: [`BatchManifest::batch_id_of`] its Datanet and contribution ids.
    pub batch_id: B256,
    /// The Delta table the rows were committed to.
    pub table: String,
    /// The Delta version of that commit.
    pub lake_version: u64,
    /// The contributions, sorted by id.
    pub contributions: Vec<ManifestEntry>,
}

impl BatchManifest {
    /// Its key in the lake (relative to the root): `manifests/batches/ID.json`.
    pub fn key(batch_id: B256) -> String {
        format!("manifests/batches/{batch_id}.json")
    }

    /// The deterministic batch id of the contributions `ids` of Datanet `datanet_id` (their
    /// order does not matter): [`BatchManifest::batch_id_at`] their Merkle root.
    pub fn batch_id_of(datanet_id: u64, ids: &[B256]) -> B256 {
        let tree = MerkleTree::new(ids.iter().map(|id| leaf_bytes32(*id)).collect());
        Self::batch_id_at(datanet_id, tree.root())
    }

    /// The id of the batch of Datanet `datanet_id` whose Merkle root is `root`:
    /// `keccak256(abi.encode(datanetId, root))`, which the registry's `anchorBatch` requires
    /// (`batchIdOf`), so an id names one Datanet's batch and no other Datanet's anchorer can
    /// anchor it first.
    pub fn batch_id_at(datanet_id: u64, root: B256) -> B256 {
        keccak256((U256::from(datanet_id), root).abi_encode())
    }

    /// The Merkle tree over the contribution ids.
    pub fn merkle_tree(&self) -> MerkleTree {
        MerkleTree::new(
            self.contributions
                .iter()
                .map(|c| leaf_bytes32(c.id))
                .collect(),
        )
    }

    /// The manifest's bytes as written to the lake (compact JSON, stable field order).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// keccak256 of [`Self::to_bytes`].
    pub fn hash(&self) -> B256 {
        keccak256(self.to_bytes())
    }

    /// This manifest as written before entries carried their [`EntryProof`]s.
    pub fn without_proofs(&self) -> Self {
        let mut m = self.clone();
        for c in &mut m.contributions {
            c.proof = None;
        }
        m
    }
}

/// A contribution's part in one answer, as the attribution engine measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionShare {
    /// Contribution id (zero for a contributor's summed credit past the answer's listed
    /// contributions, see [`AttributionShare::is_rest`]).
    pub contribution: B256,
    /// Its share of the answer's credit (an answer's shares sum to 1, or 0 when nothing
    /// scored positive).
    pub share: f64,
    /// Its contributor, when the server knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contributor: Option<Address>,
    /// Its Datanet, when the server knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datanet_id: Option<u64>,
    /// Its influence score (TracIn), when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

impl AttributionShare {
    /// Whether this is a contributor's summed credit past the answer's listed contributions
    /// (contribution id zero, the contributor named).
    pub fn is_rest(&self) -> bool {
        self.contribution == B256::ZERO
    }

    /// Merkle root over an answer's attribution records, `keccak256(contribution ‖ share in
    /// parts per billion, u64 big-endian)` (for a contributor's summed credit past the listed
    /// contributions, the contributor's address instead of the contribution); zero when there
    /// are none. An [`InferenceEntry`] commits to it, so the chain's batch root covers the
    /// credit each answer pays.
    pub fn root(shares: &[AttributionShare]) -> B256 {
        if shares.is_empty() {
            return B256::ZERO;
        }
        let leaves = shares
            .iter()
            .map(|a| {
                let mut buf = match a.contributor {
                    Some(who) if a.is_rest() => who.to_vec(),
                    _ => a.contribution.to_vec(),
                };
                buf.extend_from_slice(&((a.share * 1e9).round() as u64).to_be_bytes());
                leaf_bytes32(keccak256(buf))
            })
            .collect();
        MerkleTree::new(leaves).root()
    }
}

/// One served answer as listed in an inference batch manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceEntry {
    /// The adapter that answered.
    pub adapter_id: B256,
    /// keccak256 of the canonical request.
    pub request_hash: B256,
    /// keccak256 of the response.
    pub response_hash: B256,
    /// Merkle root over the answer's attribution records.
    pub attribution_root: B256,
    /// Tokens generated.
    pub tokens: u64,
    /// Fee charged, in integer token units.
    pub fee: u128,
    /// The answer's credit: every contribution with a share, largest first (past
    /// `tributary_models::attribute::LISTED`, the rest summed per contributor).
    pub attribution: Vec<AttributionShare>,
    /// Random, drawn by the server for this answer: two identical answers (the same request
    /// answered the same by the same adapter, as greedy decoding does) are two entries with
    /// two ids, each recorded and paid. Zero in entries written before it existed, whose ids
    /// leave it out.
    #[serde(default, skip_serializing_if = "B256::is_zero")]
    pub nonce: B256,
}

impl InferenceEntry {
    /// The entry's Merkle leaf value: keccak256 over every field the chain commits to, so any
    /// change to a listed answer changes the batch's root (the nonce last, when set).
    pub fn id(&self) -> B256 {
        let mut buf = Vec::with_capacity(32 * 5 + 8 + 16);
        for h in [
            self.adapter_id,
            self.request_hash,
            self.response_hash,
            self.attribution_root,
        ] {
            buf.extend_from_slice(h.as_slice());
        }
        buf.extend_from_slice(&self.tokens.to_be_bytes());
        buf.extend_from_slice(&self.fee.to_be_bytes());
        if !self.nonce.is_zero() {
            buf.extend_from_slice(self.nonce.as_slice());
        }
        keccak256(buf)
    }
}

/// What an `InferencesRecorded` event commits to: its `merkleRoot` is the root over the
/// entries' [`InferenceEntry::id`]s, its `count` their number, its `manifestURI` where this
/// JSON lies in the lake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceManifest {
    /// The batch id recorded on chain.
    pub batch_id: B256,
    /// The answers, in recording order.
    pub inferences: Vec<InferenceEntry>,
}

impl InferenceManifest {
    /// Where batch `id`'s manifest lies, relative to the lake root.
    pub fn key(id: B256) -> String {
        format!("{ARTIFACTS}inferences/{id}.json")
    }

    /// The Merkle tree over the entries' ids.
    pub fn merkle_tree(&self) -> MerkleTree {
        MerkleTree::new(
            self.inferences
                .iter()
                .map(|i| leaf_bytes32(i.id()))
                .collect(),
        )
    }

    /// The manifest's bytes as written to the lake (compact JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// Checks the manifest against what `InferencesRecorded` recorded: batch id, count,
    /// adapters, the Merkle root over the listed answers, and each answer's credit against
    /// the attribution root it commits to. So what is shown and paid for a batch is exactly
    /// what the chain recorded. The error says what differs.
    pub fn check(
        &self,
        batch_id: B256,
        count: u64,
        adapter_ids: &[B256],
        root: B256,
    ) -> Result<(), String> {
        if self.batch_id != batch_id {
            return Err("manifest names another batch".into());
        }
        if self.inferences.len() as u64 != count {
            return Err("manifest count differs from the chain".into());
        }
        if let Some(i) = self
            .inferences
            .iter()
            .find(|i| !adapter_ids.contains(&i.adapter_id))
        {
            return Err(format!(
                "manifest lists adapter {} that the chain does not",
                i.adapter_id
            ));
        }
        if self.merkle_tree().root() != root {
            return Err("Merkle root differs from the chain".into());
        }
        if let Some(i) = self
            .inferences
            .iter()
            .find(|i| AttributionShare::root(&i.attribution) != i.attribution_root)
        {
            return Err(format!(
                "answer {}'s listed credit differs from the attribution root it commits to",
                i.id()
            ));
        }
        Ok(())
    }
}

/// One contribution frozen into a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Contribution id.
    pub id: B256,
    /// Its Datanet.
    pub datanet_id: u64,
    /// Its contributor.
    pub contributor: Address,
}

/// A frozen training set: what a `SnapshotCommitted` event commits to. The chain holds the
/// snapshot id, the Datanets with the lake version each was read at, the Merkle root over the
/// contribution ids and their count; this JSON lies in the lake at [`SnapshotManifest::key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    /// Deterministic id: [`SnapshotManifest::id_of`].
    pub snapshot_id: B256,
    /// The Delta table the contributions are read from.
    pub table: String,
    /// The Datanets, ascending.
    pub datanet_ids: Vec<u64>,
    /// The table version each Datanet was read at (same order).
    pub lake_versions: Vec<u64>,
    /// The contributions, sorted by id.
    pub contributions: Vec<SnapshotEntry>,
}

impl SnapshotManifest {
    /// The snapshot id: keccak256 over a tag, each (Datanet, version) pair and the root, so
    /// the same Datanets at the same versions with the same contributions give the same id.
    pub fn id_of(datanet_ids: &[u64], lake_versions: &[u64], root: B256) -> B256 {
        let mut buf = b"tributary-snapshot".to_vec();
        for (d, v) in datanet_ids.iter().zip(lake_versions) {
            buf.extend_from_slice(&d.to_be_bytes());
            buf.extend_from_slice(&v.to_be_bytes());
        }
        buf.extend_from_slice(root.as_slice());
        keccak256(buf)
    }

    /// Where snapshot `id`'s manifest lies, relative to the lake root (under
    /// [`ARTIFACTS`], never inside the `snapshots` table's folder).
    pub fn key(id: B256) -> String {
        format!("{ARTIFACTS}snapshots/{id}.json")
    }

    /// The Merkle tree over the contribution ids.
    pub fn merkle_tree(&self) -> MerkleTree {
        MerkleTree::new(
            self.contributions
                .iter()
                .map(|c| leaf_bytes32(c.id))
                .collect(),
        )
    }

    /// The manifest's bytes as written to the lake (compact JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// Checks the manifest against what `SnapshotCommitted` recorded: id, Datanets and
    /// versions, count, and the Merkle root over the contribution ids. The chain does not
    /// derive the id, so another publisher may commit this id with other contents; the error
    /// says what differs.
    pub fn check(
        &self,
        id: B256,
        datanet_ids: &[u64],
        lake_versions: &[u64],
        count: u64,
        root: B256,
    ) -> Result<(), String> {
        if self.snapshot_id != id {
            return Err("manifest names another snapshot".into());
        }
        if self.datanet_ids != datanet_ids || self.lake_versions != lake_versions {
            return Err("manifest Datanets or versions differ from the chain".into());
        }
        if self.contributions.len() as u64 != count {
            return Err("manifest count differs from the chain".into());
        }
        if self.merkle_tree().root() != root {
            return Err("Merkle root differs from the chain".into());
        }
        Ok(())
    }
}

/// What `AdapterPublished` records of an adapter's making (its id's preimage, which the chain
/// does not check): compared with a manifest by [`AdapterManifest::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterRecord {
    /// Adapter id.
    pub id: B256,
    /// Base model id.
    pub base_model_id: B256,
    /// Snapshot id (zero for a merge).
    pub snapshot_id: B256,
    /// Parent adapter ids, in order.
    pub parent_ids: Vec<B256>,
    /// Config hash.
    pub config_hash: B256,
    /// Weights hash.
    pub weights_hash: B256,
}

impl AdapterRecord {
    /// The record an adapter node's props hold: the indexer keeps every field of
    /// `AdapterPublished` there, hashes as hex strings and `parent_ids` as an array of them.
    /// A missing or malformed field reads as zero (or no parents), so it disagrees with any
    /// real manifest.
    pub fn from_props(id: B256, props: &serde_json::Value) -> Self {
        let hash = |k: &str| {
            props[k]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or_default()
        };
        Self {
            id,
            base_model_id: hash("base_model_id"),
            snapshot_id: hash("snapshot_id"),
            parent_ids: props["parent_ids"]
                .as_array()
                .map(|ps| ps.iter().filter_map(|p| p.as_str()?.parse().ok()).collect())
                .unwrap_or_default(),
            config_hash: hash("config_hash"),
            weights_hash: hash("weights_hash"),
        }
    }
}

/// A published adapter's manifest: everything that made it. It lies in the lake at
/// [`AdapterManifest::key`] next to the adapter's PEFT files; `AdapterPublished` carries its
/// id, base model, parents, snapshot, config hash, weights hash and folder URI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterManifest {
    /// Content address: [`AdapterManifest::id_of`].
    pub adapter_id: B256,
    /// The model line it belongs to.
    pub line: String,
    /// Its semantic version within the line.
    pub version: String,
    /// The base model's registry id (its checkpoint hash).
    pub base_model_id: B256,
    /// The base model's architecture (`llama`, `gpt2`).
    pub architecture: String,
    /// The snapshot trained on (zero for a pure merge).
    pub snapshot_id: B256,
    /// Parent adapters with their merge weights (empty for a fresh adapter).
    pub parents: Vec<AdapterParent>,
    /// The hyperparameters as given (LoRA and training).
    pub config: serde_json::Value,
    /// keccak256 of `config` serialised.
    pub config_hash: B256,
    /// keccak256 over the adapter's weights.
    pub weights_hash: B256,
    /// What training measured (absent for a pure merge).
    pub metrics: Option<TrainingMetrics>,
    /// The device it was trained on (`cpu`, `cuda:0`).
    pub device: String,
    /// The Tributary version that trained it.
    pub code_version: String,
}

/// A parent adapter and its weight in a merge (1 for continued training).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterParent {
    /// The parent's adapter id.
    pub id: B256,
    /// Its weight.
    pub weight: f64,
}

/// Training measurements recorded in an adapter's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingMetrics {
    /// Optimizer steps taken.
    pub steps: u64,
    /// Training tokens seen.
    pub tokens: u64,
    /// Wall-clock seconds of the training loop.
    pub seconds: f64,
    /// Held-out loss of the base model alone (nats per token).
    pub base_eval_loss: f64,
    /// Held-out loss of the adapter kept (the best evaluated).
    pub eval_loss: f64,
    /// `exp(eval_loss)`.
    pub perplexity: f64,
    /// Whether early stopping ended training before `max_steps`.
    pub stopped_early: bool,
    /// Documents trained on and held out.
    pub documents: (u64, u64),
    /// (step, training loss) after every step.
    pub train_loss: Vec<(u64, f64)>,
    /// (step, held-out loss) at every evaluation.
    pub eval_loss_curve: Vec<(u64, f64)>,
}

impl AdapterManifest {
    /// The adapter id: keccak256 over a tag, the base model, the snapshot, the config hash,
    /// the weights hash and the parents, so the same training of the same data with the same
    /// settings gives the same id (and publishing it twice is a no-op).
    pub fn id_of(
        base_model_id: B256,
        snapshot_id: B256,
        config_hash: B256,
        weights_hash: B256,
        parents: &[B256],
    ) -> B256 {
        let mut buf = b"tributary-adapter".to_vec();
        for h in [base_model_id, snapshot_id, config_hash, weights_hash]
            .iter()
            .chain(parents)
        {
            buf.extend_from_slice(h.as_slice());
        }
        keccak256(buf)
    }

    /// The folder of adapter `id`, relative to the lake root (under [`ARTIFACTS`], never
    /// inside the `adapters` table's folder).
    pub fn folder(id: B256) -> String {
        format!("{ARTIFACTS}adapters/{id}/")
    }

    /// Where adapter `id`'s manifest lies, relative to the lake root.
    pub fn key(id: B256) -> String {
        format!("{}manifest.json", Self::folder(id))
    }

    /// Pretty JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serialises")
    }

    /// Checks the manifest against what the chain recorded of the adapter: id, base model,
    /// snapshot, parents, config and weights. Any publisher may publish an id, so the chain's
    /// record vouches for this manifest (its lineage, measurements and credit) only when all
    /// of them agree; the error names the first that differs.
    pub fn check(&self, on_chain: &AdapterRecord) -> Result<(), String> {
        let parents: Vec<B256> = self.parents.iter().map(|p| p.id).collect();
        let differs = if self.adapter_id != on_chain.id {
            "names another adapter"
        } else if self.base_model_id != on_chain.base_model_id {
            "names another base model"
        } else if self.snapshot_id != on_chain.snapshot_id {
            "names another snapshot"
        } else if parents != on_chain.parent_ids {
            "names other parents"
        } else if self.weights_hash != on_chain.weights_hash {
            "names other weights"
        } else if self.config_hash != on_chain.config_hash {
            "names other settings"
        } else {
            return Ok(());
        };
        Err(format!("the adapter's manifest {differs} than the chain"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> InferenceEntry {
        InferenceEntry {
            adapter_id: B256::repeat_byte(1),
            request_hash: B256::repeat_byte(2),
            response_hash: B256::repeat_byte(3),
            attribution_root: B256::repeat_byte(4),
            tokens: 5,
            fee: 60,
            attribution: vec![],
            nonce: B256::ZERO,
        }
    }

    #[test]
    fn identical_answers_differ_by_their_nonce_and_old_entries_keep_their_ids() {
        // An entry journaled or recorded before the nonce existed: no `nonce` in its JSON,
        // and its id is the hash it was recorded under.
        let json = r#"{"adapter_id":"0x0101010101010101010101010101010101010101010101010101010101010101",
            "request_hash":"0x0202020202020202020202020202020202020202020202020202020202020202",
            "response_hash":"0x0303030303030303030303030303030303030303030303030303030303030303",
            "attribution_root":"0x0404040404040404040404040404040404040404040404040404040404040404",
            "tokens":5,"fee":60,"attribution":[]}"#;
        let old: InferenceEntry = serde_json::from_str(json).unwrap();
        assert_eq!(old, answer());
        assert!(!serde_json::to_string(&old).unwrap().contains("nonce"));
        let mut bytes = [[1u8; 32], [2; 32], [3; 32], [4; 32]].concat();
        bytes.extend_from_slice(&5u64.to_be_bytes());
        bytes.extend_from_slice(&60u128.to_be_bytes());
        assert_eq!(old.id(), keccak256(&bytes));

        let (mut a, mut b) = (answer(), answer());
        a.nonce = B256::repeat_byte(7);
        b.nonce = B256::repeat_byte(8);
        assert_ne!(a.id(), b.id());
        assert_ne!(a.id(), old.id());
        let back: InferenceEntry =
            serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back.id(), a.id());
    }

    #[test]
    fn an_adapter_record_vouches_for_a_manifest_only_when_every_field_agrees() {
        let h = B256::repeat_byte;
        let m = AdapterManifest {
            adapter_id: h(1),
            line: "l".into(),
            version: "1.0.0".into(),
            base_model_id: h(2),
            architecture: "gpt2".into(),
            snapshot_id: h(3),
            parents: vec![AdapterParent {
                id: h(4),
                weight: 1.0,
            }],
            config: serde_json::json!({}),
            config_hash: h(5),
            weights_hash: h(6),
            metrics: None,
            device: "cpu".into(),
            code_version: "0".into(),
        };
        let record = AdapterRecord {
            id: h(1),
            base_model_id: h(2),
            snapshot_id: h(3),
            parent_ids: vec![h(4)],
            config_hash: h(5),
            weights_hash: h(6),
        };
        assert_eq!(m.check(&record), Ok(()));
        type Edit = fn(&mut AdapterRecord);
        let edits: [(Edit, &str); 6] = [
            (|r| r.id = B256::ZERO, "another adapter"),
            (|r| r.base_model_id = B256::ZERO, "another base model"),
            (|r| r.snapshot_id = B256::ZERO, "another snapshot"),
            (|r| r.parent_ids.clear(), "other parents"),
            (|r| r.config_hash = B256::ZERO, "other settings"),
            (|r| r.weights_hash = B256::ZERO, "other weights"),
        ];
        for (edit, says) in edits {
            let mut r = record.clone();
            edit(&mut r);
            let err = m.check(&r).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
