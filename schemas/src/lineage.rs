//! The lineage graph: nodes and edges of DESIGN.md, each carrying where on chain it came from.
//!
//! Node ids are `kind:key` strings (`contribution:0x…`, `contributor:0x…`, `datanet:3`,
//! `batch:0x…`), unique within a chain; the chain id is a separate key column.

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
            NodeKind::RewardEpoch => "reward_epoch",
        }
    }

    /// Every kind.
    pub const ALL: [NodeKind; 12] = [
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
        NodeKind::RewardEpoch,
    ];

    /// The kind named by a node id's `kind:` prefix, if it is one of these.
    pub fn of_id(id: &str) -> Option<NodeKind> {
        let (prefix, _) = id.split_once(':')?;
        Self::ALL.into_iter().find(|k| k.as_str() == prefix)
    }
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
    /// inference -> adapter.
    ServedBy,
    /// inference -> contribution (weighted).
    AttributedTo,
    /// reward epoch -> contributor (weighted by amount).
    Rewarded,
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
            EdgeKind::AttributedTo => "attributed_to",
            EdgeKind::Rewarded => "rewarded",
        }
    }

    /// The kinds of node an edge of this kind joins: its source's, and its destination's (one,
    /// except `derived_from`, whose parent is an adapter or the base model).
    pub fn ends(self) -> (NodeKind, &'static [NodeKind]) {
        use NodeKind as N;
        match self {
            EdgeKind::Contributed => (N::Contributor, &[N::Contribution]),
            EdgeKind::In => (N::Contribution, &[N::Datanet]),
            EdgeKind::AnchoredIn => (N::Contribution, &[N::Batch]),
            EdgeKind::Validates => (N::Validation, &[N::Batch]),
            EdgeKind::Revokes => (N::Revocation, &[N::Contribution]),
            EdgeKind::IncludedIn => (N::Contribution, &[N::Snapshot]),
            EdgeKind::DrawnFrom => (N::Snapshot, &[N::Datanet]),
            EdgeKind::Trained => (N::Snapshot, &[N::TrainingRun]),
            EdgeKind::Produced => (N::TrainingRun, &[N::Adapter]),
            EdgeKind::DerivedFrom => (N::Adapter, &[N::Adapter, N::BaseModel]),
            EdgeKind::ServedBy => (N::Inference, &[N::Adapter]),
            EdgeKind::AttributedTo => (N::Inference, &[N::Contribution]),
            EdgeKind::Rewarded => (N::RewardEpoch, &[N::Contributor]),
        }
    }
}

/// A node of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// `kind:key`.
    pub id: String,
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
    pub src: String,
    /// Downstream node id.
    pub dst: String,
    /// Its kind.
    pub kind: EdgeKind,
    /// Attribution weight, where the edge has one.
    pub weight: Option<f64>,
    /// Where it came from.
    pub pos: ChainPos,
}

/// Node id of a Datanet.
pub fn datanet_id(id: u64) -> String {
    format!("datanet:{id}")
}

/// Node id of a contributor.
pub fn contributor_id(a: Address) -> String {
    format!("contributor:{}", hex_lower(a.as_slice()))
}

/// Node id of a contribution.
pub fn contribution_id(id: B256) -> String {
    format!("contribution:{id}")
}

/// Node id of a batch.
pub fn batch_id(id: B256) -> String {
    format!("batch:{id}")
}

/// Node id of a validator's attestation of a batch.
pub fn validation_id(batch: B256, validator: Address) -> String {
    format!("validation:{batch}:{}", hex_lower(validator.as_slice()))
}

/// Node id of a contribution's revocation.
pub fn revocation_id(contribution: B256) -> String {
    format!("revocation:{contribution}")
}

/// Node id of a snapshot.
pub fn snapshot_id(id: B256) -> String {
    format!("snapshot:{id}")
}

/// Node id of the training run that produced an adapter.
pub fn training_run_id(adapter: B256) -> String {
    format!("training_run:{adapter}")
}

/// Node id of a base model.
pub fn base_model_id(id: B256) -> String {
    format!("base_model:{id}")
}

/// Node id of an adapter.
pub fn adapter_id(id: B256) -> String {
    format!("adapter:{id}")
}

/// Node id of a recorded inference batch.
pub fn inference_id(batch: B256) -> String {
    format!("inference:{batch}")
}

/// Node id of a reward epoch.
pub fn reward_epoch_id(epoch: u64) -> String {
    format!("reward_epoch:{epoch}")
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
}
