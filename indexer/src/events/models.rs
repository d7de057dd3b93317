//! ModelRegistry, InferenceLedger and RewardDistributor: base models, snapshots, training
//! runs and adapters with their parents, recorded inferences and reward epochs.
//!
//! Everything here comes from the events themselves. The edges that need a manifest from the
//! lake (a snapshot's contributions, an inference's attribution, an epoch's allocations) are
//! added by the components that write those manifests.

use serde_json::json;
use tributary_chain::bindings::InferenceLedger::InferenceLedgerEvents as Inf;
use tributary_chain::bindings::ModelRegistry::ModelRegistryEvents as Models;
use tributary_chain::bindings::RewardDistributor::RewardDistributorEvents as Rewards;
use tributary_schemas::lineage::{self as g, ChainPos, Edge, EdgeKind, Node, NodeKind};

use super::Changes;

fn node(out: &mut Changes, id: String, kind: NodeKind, props: serde_json::Value, pos: ChainPos) {
    out.nodes.push(Node {
        id,
        kind,
        props,
        pos,
    });
}

fn edge(out: &mut Changes, src: &str, dst: &str, kind: EdgeKind, pos: ChainPos) {
    out.edges.push(Edge {
        src: src.to_string(),
        dst: dst.to_string(),
        kind,
        weight: None,
        pos,
    });
}

pub(super) fn model_registry(ev: Models, pos: ChainPos, out: &mut Changes) -> &'static str {
    match ev {
        Models::BaseModelRegistered(e) => {
            let props = json!({
                "weights_hash": e.weightsHash.to_string(),
                "architecture": e.architecture,
                "uri": e.uri,
            });
            node(out, g::base_model_id(e.id), NodeKind::BaseModel, props, pos);
            "BaseModelRegistered"
        }
        Models::SnapshotCommitted(e) => {
            let snapshot = g::snapshot_id(e.id);
            let datanets: Vec<u64> = e.datanetIds.iter().map(|d| d.to::<u64>()).collect();
            for d in &datanets {
                edge(out, &snapshot, &g::datanet_id(*d), EdgeKind::DrawnFrom, pos);
            }
            let props = json!({
                "datanet_ids": datanets,
                "lake_versions": e.lakeVersions,
                "contributions_root": e.contributionsRoot.to_string(),
                "count": e.count.to::<u64>(),
            });
            node(out, snapshot, NodeKind::Snapshot, props, pos);
            "SnapshotCommitted"
        }
        Models::AdapterPublished(e) => {
            let adapter = g::adapter_id(e.id);
            let run = g::training_run_id(e.id);
            edge(
                out,
                &g::snapshot_id(e.snapshotId),
                &run,
                EdgeKind::Trained,
                pos,
            );
            edge(out, &run, &adapter, EdgeKind::Produced, pos);
            edge(
                out,
                &adapter,
                &g::base_model_id(e.baseModelId),
                EdgeKind::DerivedFrom,
                pos,
            );
            for parent in &e.parentIds {
                edge(
                    out,
                    &adapter,
                    &g::adapter_id(*parent),
                    EdgeKind::DerivedFrom,
                    pos,
                );
            }
            let run_props = json!({
                "snapshot_id": e.snapshotId.to_string(),
                "config_hash": e.configHash.to_string(),
            });
            node(out, run, NodeKind::TrainingRun, run_props, pos);
            let props = json!({
                "base_model_id": e.baseModelId.to_string(),
                "parent_ids": e.parentIds.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "snapshot_id": e.snapshotId.to_string(),
                "config_hash": e.configHash.to_string(),
                "weights_hash": e.weightsHash.to_string(),
                "uri": e.uri,
                "version": e.version,
            });
            node(out, adapter, NodeKind::Adapter, props, pos);
            "AdapterPublished"
        }
        Models::RoleGranted(_) => "RoleGranted",
        Models::RoleRevoked(_) => "RoleRevoked",
    }
}

pub(super) fn inference_ledger(ev: Inf, pos: ChainPos, out: &mut Changes) -> &'static str {
    match ev {
        Inf::InferencesRecorded(e) => {
            let id = g::inference_id(e.batchId);
            for a in &e.adapterIds {
                edge(out, &id, &g::adapter_id(*a), EdgeKind::ServedBy, pos);
            }
            let props = json!({
                "adapter_ids": e.adapterIds.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "merkle_root": e.merkleRoot.to_string(),
                "count": e.count.to::<u64>(),
                "manifest_uri": e.manifestURI,
            });
            node(out, id, NodeKind::Inference, props, pos);
            "InferencesRecorded"
        }
        Inf::RoleGranted(_) => "RoleGranted",
        Inf::RoleRevoked(_) => "RoleRevoked",
    }
}

pub(super) fn reward_distributor(ev: Rewards, pos: ChainPos, out: &mut Changes) -> &'static str {
    match ev {
        Rewards::EpochAllocated(e) => {
            let props = json!({
                "merkle_root": e.merkleRoot.to_string(),
                "total": e.total.to_string(),
            });
            let id = g::reward_epoch_id(e.epoch.to::<u64>());
            node(out, id, NodeKind::RewardEpoch, props, pos);
            "EpochAllocated"
        }
        Rewards::Claimed(_) => "Claimed",
        Rewards::RoleGranted(_) => "RoleGranted",
        Rewards::RoleRevoked(_) => "RoleRevoked",
    }
}
