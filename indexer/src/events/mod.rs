//! One handler per contract: a decoded log becomes nodes and edges.

mod datanet_registry;

use alloy::rpc::types::Log;
use tributary_chain::bindings::{
    DatanetRegistry, InferenceLedger, ModelRegistry, RewardDistributor, RewardToken,
};
use tributary_lake::Lake;
use tributary_schemas::lineage::{ChainPos, Edge, Node};

/// Nodes and edges produced from a range of logs.
#[derive(Debug, Default)]
pub struct Changes {
    /// New nodes.
    pub nodes: Vec<Node>,
    /// New edges.
    pub edges: Vec<Edge>,
}

/// Applies one log to `changes` and returns the event's name (`unknown` when no contract of
/// Tributary's declares it; such logs are kept raw only).
pub async fn apply(log: &Log, pos: ChainPos, lake: &Lake, changes: &mut Changes) -> &'static str {
    use alloy::sol_types::SolEventInterface;
    let inner = &log.inner;
    if let Ok(ev) = DatanetRegistry::DatanetRegistryEvents::decode_log(inner) {
        return datanet_registry::apply(ev.data, pos, lake, changes).await;
    }
    // Not yet part of the graph: decoded for their name, kept raw.
    if let Ok(ev) = ModelRegistry::ModelRegistryEvents::decode_log(inner) {
        use ModelRegistry::ModelRegistryEvents as E;
        return match ev.data {
            E::BaseModelRegistered(_) => "BaseModelRegistered",
            E::SnapshotCommitted(_) => "SnapshotCommitted",
            E::AdapterPublished(_) => "AdapterPublished",
            E::RoleGranted(_) => "RoleGranted",
            E::RoleRevoked(_) => "RoleRevoked",
        };
    }
    if let Ok(ev) = InferenceLedger::InferenceLedgerEvents::decode_log(inner) {
        use InferenceLedger::InferenceLedgerEvents as E;
        return match ev.data {
            E::InferencesRecorded(_) => "InferencesRecorded",
            E::RoleGranted(_) => "RoleGranted",
            E::RoleRevoked(_) => "RoleRevoked",
        };
    }
    if let Ok(ev) = RewardDistributor::RewardDistributorEvents::decode_log(inner) {
        use RewardDistributor::RewardDistributorEvents as E;
        return match ev.data {
            E::EpochAllocated(_) => "EpochAllocated",
            E::Claimed(_) => "Claimed",
            E::RoleGranted(_) => "RoleGranted",
            E::RoleRevoked(_) => "RoleRevoked",
        };
    }
    if let Ok(ev) = RewardToken::RewardTokenEvents::decode_log(inner) {
        use RewardToken::RewardTokenEvents as E;
        return match ev.data {
            E::Transfer(_) => "Transfer",
            E::Approval(_) => "Approval",
            E::RoleGranted(_) => "RoleGranted",
            E::RoleRevoked(_) => "RoleRevoked",
        };
    }
    "unknown"
}
