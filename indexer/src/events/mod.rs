//! One handler per contract: a decoded log becomes nodes and edges.

pub(crate) mod datanet_registry;
mod models;

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
/// Tributary's declares it; such logs are kept raw only). `signing` is the DatanetRegistry's
/// EIP-712 domain separator, which contributions are signed under.
pub async fn apply(
    log: &Log,
    pos: ChainPos,
    lake: &Lake,
    signing: alloy::primitives::B256,
    changes: &mut Changes,
) -> &'static str {
    use alloy::sol_types::SolEventInterface;
    let inner = &log.inner;
    if let Ok(ev) = DatanetRegistry::DatanetRegistryEvents::decode_log(inner) {
        return datanet_registry::apply(ev.data, pos, lake, signing, changes).await;
    }
    if let Ok(ev) = ModelRegistry::ModelRegistryEvents::decode_log(inner) {
        return models::model_registry(ev.data, pos, lake, changes).await;
    }
    if let Ok(ev) = InferenceLedger::InferenceLedgerEvents::decode_log(inner) {
        return models::inference_ledger(ev.data, pos, lake, changes).await;
    }
    if let Ok(ev) = RewardDistributor::RewardDistributorEvents::decode_log(inner) {
        return models::reward_distributor(ev.data, pos, lake, changes).await;
    }
    // The token's own events: kept raw.
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
