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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl NodeKind {
    /// The kind's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Contributor => "contributor",
            NodeKind::Datanet => "datanet",
            NodeKind::Contribution => "contribution",
            NodeKind::Batch => "batch",
        }
    }
}

/// Kinds of edges (downstream direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// contributor -> contribution.
    Contributed,
    /// contribution -> datanet.
    In,
    /// contribution -> batch.
    AnchoredIn,
}

impl EdgeKind {
    /// The kind's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Contributed => "contributed",
            EdgeKind::In => "in",
            EdgeKind::AnchoredIn => "anchored_in",
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

/// `0x`-prefixed lowercase hex.
pub fn hex_lower(bytes: &[u8]) -> String {
    format!("0x{}", alloy::hex::encode(bytes))
}
