//! The lineage graph: nodes and edges of DESIGN.md, each carrying where on chain it came from.
//!
//! A node's id is a [`NodeId`]: its kind and its key, stored and shown as `kind:key`
//! (`contribution:0x…`, `contributor:0x…`, `datanet:3`, `batch:0x…`), unique within a chain;
//! the chain id is a separate key column. Which kinds an edge joins is [`EdgeKind::ends`]
//! (checked by [`Edge::new`] in debug builds), and the property names more than one crate
//! reads are in [`prop`].

use alloy::primitives::{Address, B256};
use serde::{Deserialize, Serialize};

/// Where a node or edge came from on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPos {
    /// Block number.
    pub block_number: u64,
    /// Block hash (reorgs remove rows by it).
    pub block_hash: B256,
    /// Transaction hash.
    pub tx_hash: B256,
    /// Log index within the block.
    pub log_index: u64,
}

/// Kinds of nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// An address that signed contributions.
    Contributor,
    /// A Datanet.
    Datanet,
    /// One signed contribution.
    Contribution,
    /// An anchored batch of contributions.
    Batch,
    /// A validator's attestation of a batch.
    Validation,
    /// The revocation of a contribution (a tombstone: the contribution stays, revoked).
    Revocation,
    /// A frozen training set.
    Snapshot,
    /// A training run (one per published adapter).
    TrainingRun,
    /// A registered base model.
    BaseModel,
    /// A published adapter (a model version).
    Adapter,
    /// A recorded batch of inferences.
    Inference,
    /// One served answer (recorded in an inference batch).
    Answer,
    /// A reward epoch.
    RewardEpoch,
}

impl NodeKind {
    /// The kind's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Contributor => "contributor",
            NodeKind::Datanet => "datanet",
            NodeKind::Contribution => "contribution",
            NodeKind::Batch => "batch",
            NodeKind::Validation => "validation",
            NodeKind::Revocation => "revocation",
            NodeKind::Snapshot => "snapshot",
            NodeKind::TrainingRun => "training_run",
            NodeKind::BaseModel => "base_model",
            NodeKind::Adapter => "adapter",
            NodeKind::Inference => "inference",
            NodeKind::Answer => "answer",
            NodeKind::RewardEpoch => "reward_epoch",
        }
    }

    /// Every kind.
    pub const ALL: [NodeKind; 13] = [
        NodeKind::Contributor,
        NodeKind::Datanet,
        NodeKind::Contribution,
        NodeKind::Batch,
        NodeKind::Validation,
        NodeKind::Revocation,
        NodeKind::Snapshot,
        NodeKind::TrainingRun,
        NodeKind::BaseModel,
        NodeKind::Adapter,
        NodeKind::Inference,
        NodeKind::Answer,
        NodeKind::RewardEpoch,
    ];

    /// The kind named by a node id's `kind:` prefix, if it is one of these.
    pub fn of_id(id: &str) -> Option<NodeKind> {
        let (prefix, _) = id.split_once(':')?;
        Self::ALL.into_iter().find(|k| k.as_str() == prefix)
    }

    /// The key of `id` when it is a node id of this kind (`datanet:3` -> `3` for Datanets).
    pub fn key_of(self, id: &str) -> Option<&str> {
        id.strip_prefix(self.as_str())?.strip_prefix(':')
    }

    /// The id of the node of this kind with `key`.
    pub fn id(self, key: impl std::fmt::Display) -> NodeId {
        NodeId::new(self, key)
    }
}

/// A node's id: its kind and its key, stored and shown as `kind:key`. It reads as the `str`
/// it is stored as (ordering, hashing and equality included).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    full: String,
}

impl NodeId {
    /// The id of the node of `kind` with `key`.
    pub fn new(kind: NodeKind, key: impl std::fmt::Display) -> Self {
        NodeId {
            full: format!("{}:{key}", kind.as_str()),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> NodeKind {
        NodeKind::of_id(&self.full).expect("a NodeId has a known kind")
    }

    /// Its key: what follows `kind:`.
    pub fn key(&self) -> &str {
        self.full.split_once(':').expect("a NodeId has a colon").1
    }

    /// `kind:key`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

/// A string that is not `kind:key` with a known kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a node id: want kind:key, kind one of contributor, datanet, contribution, batch, validation, revocation, snapshot, training_run, base_model, adapter, inference, answer, reward_epoch"
)]
pub struct BadNodeId(pub String);

impl std::str::FromStr for NodeId {
    type Err = BadNodeId;

    fn from_str(s: &str) -> Result<Self, BadNodeId> {
        match NodeKind::of_id(s) {
            Some(_) => Ok(NodeId {
                full: s.to_string(),
            }),
            None => Err(BadNodeId(s.to_string())),
        }
    }
}

impl TryFrom<String> for NodeId {
    type Error = BadNodeId;

    fn try_from(s: String) -> Result<Self, BadNodeId> {
        match NodeKind::of_id(&s) {
            Some(_) => Ok(NodeId { full: s }),
            None => Err(BadNodeId(s)),
        }
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.full
    }
}

impl std::ops::Deref for NodeId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.full
    }
}

impl std::borrow::Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.full
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full)
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.full, f)
    }
}

impl PartialEq<str> for NodeId {
    fn eq(&self, other: &str) -> bool {
        self.full == other
    }
}

impl PartialEq<&str> for NodeId {
    fn eq(&self, other: &&str) -> bool {
        self.full == *other
    }
}

impl PartialEq<String> for NodeId {
    fn eq(&self, other: &String) -> bool {
        &self.full == other
    }
}

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .try_into()
            .map_err(serde::de::Error::custom)
    }
}

/// Property names that more than one crate reads (the indexer writes them).
pub mod prop {
    /// A batch's data availability: `verified`, `unreachable`, `missing` or `mismatch`.
    pub const DA: &str = "da";
    /// Whether a batch's manifest matched the chain.
    pub const VERIFIED: &str = "verified";
    /// Where a batch's manifest is (a lake key).
    pub const MANIFEST_URI: &str = "manifest_uri";
    /// The Datanet a batch or contribution belongs to.
    pub const DATANET_ID: &str = "datanet_id";
    /// The Datanets a snapshot freezes.
    pub const DATANET_IDS: &str = "datanet_ids";
    /// The snapshot an adapter was trained on.
    pub const SNAPSHOT_ID: &str = "snapshot_id";
    /// The base model under an adapter.
    pub const BASE_MODEL_ID: &str = "base_model_id";
    /// The adapter a training run produced or an inference used.
    pub const ADAPTER_ID: &str = "adapter_id";
    /// An adapter's parents.
    pub const PARENT_IDS: &str = "parent_ids";
    /// Where an artifact is (a lake key).
    pub const URI: &str = "uri";
    /// The content hash of a contribution.
    pub const CONTENT_HASH: &str = "content_hash";
    /// A revocation's or refusal's reason.
    pub const REASON: &str = "reason";
    /// A reward epoch's total, in integer token units as a decimal string.
    pub const TOTAL: &str = "total";
    /// A reward epoch's per-account totals: `{"0x…" (lowercase): "units"}`, integer token
    /// units as decimal strings (exact; the `rewarded` edges' weights are only shares).
    pub const AMOUNTS: &str = "amounts";
    /// A reward epoch's fee split in basis points, as its manifest states it:
    /// `{"platform", "owner", "stakers", "contributors"}`.
    pub const POLICY: &str = "policy";
}

/// Kinds of edges (downstream direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// contributor -> contribution.
    Contributed,
    /// contribution -> datanet.
    In,
    /// contribution -> batch.
    AnchoredIn,
    /// validation -> batch.
    Validates,
    /// revocation -> contribution.
    Revokes,
    /// contribution -> snapshot.
    IncludedIn,
    /// snapshot -> datanet (the Datanets a snapshot freezes).
    DrawnFrom,
    /// snapshot -> training run.
    Trained,
    /// training run -> adapter.
    Produced,
    /// adapter -> parent adapter or base model.
    DerivedFrom,
    /// inference batch or answer -> adapter.
    ServedBy,
    /// answer -> inference batch (the batch that recorded it).
    RecordedIn,
    /// answer or adapter -> contribution, weighted by the contribution's credit share; an
    /// answer's credit past its listed contributions goes to a contributor (see
    /// `manifest::AttributionShare`).
    AttributedTo,
    /// reward epoch -> contributor (weighted by amount).
    Rewarded,
    /// reward epoch -> inference batch (the batches whose fees it paid out).
    Settles,
    /// contributor -> reward epoch (the account claimed its reward of that epoch).
    Claimed,
}

impl EdgeKind {
    /// The kind's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Contributed => "contributed",
            EdgeKind::In => "in",
            EdgeKind::AnchoredIn => "anchored_in",
            EdgeKind::Validates => "validates",
            EdgeKind::Revokes => "revokes",
            EdgeKind::IncludedIn => "included_in",
            EdgeKind::DrawnFrom => "drawn_from",
            EdgeKind::Trained => "trained",
            EdgeKind::Produced => "produced",
            EdgeKind::DerivedFrom => "derived_from",
            EdgeKind::ServedBy => "served_by",
            EdgeKind::RecordedIn => "recorded_in",
            EdgeKind::AttributedTo => "attributed_to",
            EdgeKind::Rewarded => "rewarded",
            EdgeKind::Settles => "settles",
            EdgeKind::Claimed => "claimed",
        }
    }

    /// The kinds of node an edge of this kind joins: its source's, and its destination's
    /// (mostly one each; `derived_from`'s parent is an adapter or the base model, an answer or
    /// a batch is `served_by` an adapter, and `attributed_to` credits a contribution, or a
    /// contributor for an answer's credit past its listed contributions).
    pub fn ends(self) -> (&'static [NodeKind], &'static [NodeKind]) {
        use NodeKind as N;
        match self {
            EdgeKind::Contributed => (&[N::Contributor], &[N::Contribution]),
            EdgeKind::In => (&[N::Contribution], &[N::Datanet]),
            EdgeKind::AnchoredIn => (&[N::Contribution], &[N::Batch]),
            EdgeKind::Validates => (&[N::Validation], &[N::Batch]),
            EdgeKind::Revokes => (&[N::Revocation], &[N::Contribution]),
            EdgeKind::IncludedIn => (&[N::Contribution], &[N::Snapshot]),
            EdgeKind::DrawnFrom => (&[N::Snapshot], &[N::Datanet]),
            EdgeKind::Trained => (&[N::Snapshot], &[N::TrainingRun]),
            EdgeKind::Produced => (&[N::TrainingRun], &[N::Adapter]),
            EdgeKind::DerivedFrom => (&[N::Adapter], &[N::Adapter, N::BaseModel]),
            EdgeKind::ServedBy => (&[N::Inference, N::Answer], &[N::Adapter]),
            EdgeKind::RecordedIn => (&[N::Answer], &[N::Inference]),
            EdgeKind::AttributedTo => {
                (&[N::Answer, N::Adapter], &[N::Contribution, N::Contributor])
            }
            EdgeKind::Rewarded => (&[N::RewardEpoch], &[N::Contributor]),
            EdgeKind::Settles => (&[N::RewardEpoch], &[N::Inference]),
            EdgeKind::Claimed => (&[N::Contributor], &[N::RewardEpoch]),
        }
    }
}

impl EdgeKind {
    /// Whether an edge of this kind may go from a `src` node to a `dst` node.
    pub fn joins(self, src: NodeKind, dst: NodeKind) -> bool {
        let (from, to) = self.ends();
        from.contains(&src) && to.contains(&dst)
    }
}

/// A node of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// `kind:key`.
    pub id: NodeId,
    /// Its kind.
    pub kind: NodeKind,
    /// Kind-specific properties (JSON object).
    pub props: serde_json::Value,
    /// Where it came from.
    pub pos: ChainPos,
}

/// An edge of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    /// Upstream node id.
    pub src: NodeId,
    /// Downstream node id.
    pub dst: NodeId,
    /// Its kind.
    pub kind: EdgeKind,
    /// Attribution weight, where the edge has one.
    pub weight: Option<f64>,
    /// Where it came from.
    pub pos: ChainPos,
}

impl Node {
    /// The node `id` (its kind is the id's), with `props`, from `pos`.
    pub fn new(id: NodeId, props: serde_json::Value, pos: ChainPos) -> Self {
        Node {
            kind: id.kind(),
            id,
            props,
            pos,
        }
    }
}

impl Edge {
    /// An edge of `kind` from `src` to `dst`, from `pos`, without a weight. Debug builds check
    /// the ends against [`EdgeKind::ends`].
    pub fn new(src: NodeId, dst: NodeId, kind: EdgeKind, pos: ChainPos) -> Self {
        debug_assert!(
            kind.joins(src.kind(), dst.kind()),
            "{} does not join {src} to {dst}",
            kind.as_str()
        );
        Edge {
            src,
            dst,
            kind,
            weight: None,
            pos,
        }
    }

    /// With attribution weight `w`.
    pub fn weighted(mut self, w: f64) -> Self {
        self.weight = Some(w);
        self
    }
}

/// Node id of a Datanet.
pub fn datanet_id(id: u64) -> NodeId {
    NodeKind::Datanet.id(id)
}

/// Node id of a contributor.
pub fn contributor_id(a: Address) -> NodeId {
    NodeKind::Contributor.id(hex_lower(a.as_slice()))
}

/// Node id of a contribution.
pub fn contribution_id(id: B256) -> NodeId {
    NodeKind::Contribution.id(id)
}

/// Node id of a batch.
pub fn batch_id(id: B256) -> NodeId {
    NodeKind::Batch.id(id)
}

/// Node id of a validator's verdict on a batch, one per `ValidationRecorded` (a validator may
/// record again; its latest counts, the earlier ones are history): keyed by batch, validator
/// and the event's position.
pub fn validation_id(batch: B256, validator: Address, pos: &ChainPos) -> NodeId {
    NodeKind::Validation.id(format_args!(
        "{batch}:{}:{}:{}",
        hex_lower(validator.as_slice()),
        pos.block_number,
        pos.log_index
    ))
}

/// Node id of a contribution's revocation.
pub fn revocation_id(contribution: B256) -> NodeId {
    NodeKind::Revocation.id(contribution)
}

/// Node id of a snapshot.
pub fn snapshot_id(id: B256) -> NodeId {
    NodeKind::Snapshot.id(id)
}

/// Node id of the training run that produced an adapter.
pub fn training_run_id(adapter: B256) -> NodeId {
    NodeKind::TrainingRun.id(adapter)
}

/// Node id of a base model.
pub fn base_model_id(id: B256) -> NodeId {
    NodeKind::BaseModel.id(id)
}

/// Node id of an adapter.
pub fn adapter_id(id: B256) -> NodeId {
    NodeKind::Adapter.id(id)
}

/// Node id of a recorded inference batch.
pub fn inference_id(batch: B256) -> NodeId {
    NodeKind::Inference.id(batch)
}

/// Node id of one served answer (its `InferenceEntry::id`).
pub fn answer_id(id: B256) -> NodeId {
    NodeKind::Answer.id(id)
}

/// Node id of a reward epoch.
pub fn reward_epoch_id(epoch: u64) -> NodeId {
    NodeKind::RewardEpoch.id(epoch)
}

/// `0x`-prefixed lowercase hex.
pub fn hex_lower(bytes: &[u8]) -> String {
    format!("0x{}", alloy::hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_name_their_kind() {
        for kind in NodeKind::ALL {
            assert_eq!(NodeKind::of_id(&format!("{}:x", kind.as_str())), Some(kind));
        }
        assert_eq!(
            NodeKind::of_id(&contributor_id(Address::ZERO)),
            Some(NodeKind::Contributor)
        );
        assert_eq!(NodeKind::of_id("datanet"), None, "no colon");
        assert_eq!(NodeKind::of_id("model:1"), None, "unknown prefix");
    }

    #[test]
    fn a_node_id_is_its_kind_and_key_and_reads_as_its_string() {
        let id = datanet_id(3);
        assert_eq!(
            (id.kind(), id.key(), id.as_str()),
            (NodeKind::Datanet, "3", "datanet:3")
        );
        assert_eq!(id, "datanet:3");
        assert_eq!("datanet:3".parse::<NodeId>().unwrap(), id);
        assert_eq!(NodeKind::Datanet.key_of("datanet:3"), Some("3"));
        assert_eq!(NodeKind::Datanet.key_of("datanets:3"), None);
        assert_eq!(NodeKind::Batch.key_of("datanet:3"), None);
        let at = ChainPos {
            block_number: 7,
            block_hash: B256::ZERO,
            tx_hash: B256::ZERO,
            log_index: 2,
        };
        let v = validation_id(B256::ZERO, Address::ZERO, &at);
        assert_eq!(v.kind(), NodeKind::Validation);
        assert!(
            v.key()
                .ends_with(":0x0000000000000000000000000000000000000000:7:2")
        );
        // Serialized as the string; a string that is not an id is refused with the fix.
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"datanet:3\"");
        let err = serde_json::from_str::<NodeId>("\"model:1\"").unwrap_err();
        assert!(err.to_string().contains("want kind:key"), "{err}");
        // Ordered, hashed and compared as the stored string (SQL's ORDER BY id).
        let mut ids = vec![datanet_id(10), batch_id(B256::ZERO), datanet_id(9)];
        ids.sort();
        let strs: Vec<&str> = ids.iter().map(NodeId::as_str).collect();
        let mut want = strs.clone();
        want.sort();
        assert_eq!(strs, want);
        let set: std::collections::HashSet<NodeId> = ids.into_iter().collect();
        assert!(set.contains("datanet:9"));
    }
}
