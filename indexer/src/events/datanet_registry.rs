//! DatanetRegistry: Datanets, anchored batches (checked against their lake manifests), and
//! the contributions they bring into the graph.

use alloy::primitives::keccak256;
use serde_json::json;
use tributary_chain::bindings::DatanetRegistry::{self, DatanetRegistryEvents as Ev};
use tributary_lake::Lake;
use tributary_schemas::lineage::{self as g, ChainPos, Edge, EdgeKind, Node, NodeKind};
use tributary_schemas::manifest::BatchManifest;

use super::Changes;

pub(super) async fn apply(ev: Ev, pos: ChainPos, lake: &Lake, out: &mut Changes) -> &'static str {
    match ev {
        Ev::DatanetCreated(e) => {
            out.nodes.push(Node {
                id: g::datanet_id(e.id.to::<u64>()),
                kind: NodeKind::Datanet,
                props: json!({
                    "name": e.name,
                    "domain": e.domain,
                    "owner": g::hex_lower(e.owner.as_slice()),
                    "schema_hash": e.schemaHash.to_string(),
                    "metadata_uri": e.metadataURI,
                }),
                pos,
            });
            "DatanetCreated"
        }
        Ev::BatchAnchored(e) => {
            batch_anchored(e, pos, lake, out).await;
            "BatchAnchored"
        }
        Ev::ContributionRevoked(e) => {
            // A tombstone node: the contribution's own node is never changed, so a reorg
            // removes a revocation by its block like any other row.
            let id = g::revocation_id(e.contributionId);
            out.edges.push(Edge {
                src: id.clone(),
                dst: g::contribution_id(e.contributionId),
                kind: EdgeKind::Revokes,
                weight: None,
                pos,
            });
            out.nodes.push(Node {
                id,
                kind: NodeKind::Revocation,
                props: json!({
                    "datanet_id": e.datanetId.to::<u64>(),
                    "by": g::hex_lower(e.by.as_slice()),
                    "reason": e.reason,
                }),
                pos,
            });
            "ContributionRevoked"
        }
        Ev::ValidationRecorded(e) => {
            let id = g::validation_id(e.batchId, e.validator);
            out.edges.push(Edge {
                src: id.clone(),
                dst: g::batch_id(e.batchId),
                kind: EdgeKind::Validates,
                weight: None,
                pos,
            });
            out.nodes.push(Node {
                id,
                kind: NodeKind::Validation,
                props: json!({
                    "datanet_id": e.datanetId.to::<u64>(),
                    "validator": g::hex_lower(e.validator.as_slice()),
                    "verdicts_root": e.verdictsRoot.to_string(),
                    "accepted": e.accepted.to::<u64>(),
                    "rejected": e.rejected.to::<u64>(),
                }),
                pos,
            });
            "ValidationRecorded"
        }
        Ev::AnchorerSet(_) => "AnchorerSet",
        Ev::ValidatorSet(_) => "ValidatorSet",
    }
}

async fn batch_anchored(
    e: DatanetRegistry::BatchAnchored,
    pos: ChainPos,
    lake: &Lake,
    out: &mut Changes,
) {
    let datanet = e.datanetId.to::<u64>();
    let checked = check_manifest(&e, lake).await;
    let mut props = json!({
        "datanet_id": datanet,
        "merkle_root": e.merkleRoot.to_string(),
        "count": e.count.to::<u64>(),
        "manifest_uri": e.manifestURI,
        "manifest_hash": e.manifestHash.to_string(),
        "lake_version": e.lakeVersion,
        "verified": checked.is_ok(),
    });
    let batch = g::batch_id(e.batchId);
    match checked {
        Err(reason) => {
            tracing::warn!(batch = %e.batchId, %reason, "batch not verified against the lake");
            props["reason"] = json!(reason);
        }
        Ok(manifest) => {
            let datanet_node = g::datanet_id(datanet);
            for c in &manifest.contributions {
                let id = g::contribution_id(c.id);
                let contributor = g::contributor_id(c.contributor);
                out.nodes.push(Node {
                    id: contributor.clone(),
                    kind: NodeKind::Contributor,
                    props: json!({ "address": g::hex_lower(c.contributor.as_slice()) }),
                    pos,
                });
                out.nodes.push(Node {
                    id: id.clone(),
                    kind: NodeKind::Contribution,
                    props: json!({
                        "content_hash": c.content_hash.to_string(),
                        "license": c.license,
                        "timestamp": c.timestamp,
                        "datanet_id": datanet,
                    }),
                    pos,
                });
                let edge = |src: &str, dst: &str, kind| Edge {
                    src: src.to_string(),
                    dst: dst.to_string(),
                    kind,
                    weight: None,
                    pos,
                };
                out.edges
                    .push(edge(&contributor, &id, EdgeKind::Contributed));
                out.edges.push(edge(&id, &datanet_node, EdgeKind::In));
                out.edges.push(edge(&id, &batch, EdgeKind::AnchoredIn));
            }
        }
    }
    out.nodes.push(Node {
        id: batch,
        kind: NodeKind::Batch,
        props,
        pos,
    });
}

/// Fetches the manifest and checks it against the event: hash, Datanet, count, Merkle root.
async fn check_manifest(
    e: &DatanetRegistry::BatchAnchored,
    lake: &Lake,
) -> Result<BatchManifest, String> {
    let bytes = lake
        .get(&e.manifestURI)
        .await
        .map_err(|err| format!("manifest unavailable: {err}"))?;
    if keccak256(&bytes) != e.manifestHash {
        return Err("manifest hash differs from the chain".into());
    }
    let manifest: BatchManifest =
        serde_json::from_slice(&bytes).map_err(|err| format!("manifest is not valid: {err}"))?;
    if manifest.batch_id != e.batchId || manifest.datanet_id != e.datanetId.to::<u64>() {
        return Err("manifest names another batch or Datanet".into());
    }
    if manifest.contributions.len() as u64 != e.count.to::<u64>() {
        return Err("manifest count differs from the chain".into());
    }
    if manifest.merkle_tree().root() != e.merkleRoot {
        return Err("Merkle root of the manifest differs from the chain".into());
    }
    Ok(manifest)
}
