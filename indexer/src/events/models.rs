//! ModelRegistry, InferenceLedger and RewardDistributor: base models, snapshots, training
//! runs and adapters with their parents, recorded inferences and reward epochs.
//!
//! Most of it comes from the events themselves. `InferencesRecorded` is checked against its
//! manifest in the lake (batch id, count, adapters, Merkle root over the listed answers): a
//! batch that matches brings its attribution into the graph as weighted `attributed_to`
//! edges; one that does not is marked `verified: false` with the reason. A
//! `SnapshotCommitted` is checked the same way against the snapshot manifest at its fixed key
//! in the lake (`artifacts/snapshots/ID.json`: id, Datanets, versions, count, root) and brings
//! its contributions in as `included_in` edges. An `EpochAllocated` is checked against
//! `rewards/epoch-N.json` (the Merkle root over its per-account totals) and brings one
//! weighted `rewarded` edge per account, a `settles` edge to each inference batch it settled,
//! and its fee split (`policy`, basis points); a `Claimed` brings a `claimed` edge from the
//! account to the epoch, at the claim's transaction.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256};
use serde_json::json;
use tributary_chain::bindings::InferenceLedger::InferenceLedgerEvents as Inf;
use tributary_chain::bindings::ModelRegistry::ModelRegistryEvents as Models;
use tributary_chain::bindings::RewardDistributor::RewardDistributorEvents as Rewards;
use tributary_lake::Lake;
use tributary_schemas::lineage::{
    self as g, ChainPos, Edge, EdgeKind, Node, NodeId, hex_lower, prop,
};
use tributary_schemas::manifest::{InferenceManifest, SnapshotManifest};

use super::Changes;
use super::datanet_registry::{Availability, fetch, fetch_recorded};

/// Checks manifest `bytes` with `check`: what the check gives, else the manifest's
/// availability (`missing` or `unreachable` as read, `mismatch` when the check fails) and the
/// reason.
fn checked<T>(
    bytes: Result<Vec<u8>, (Availability, String)>,
    check: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, (Availability, String)> {
    check(&bytes?).map_err(|why| (Availability::Mismatch, why))
}

/// Marks a node's `props` not verified, with its manifest's availability (`da`: an
/// `unreachable` one is read again by `Indexer::recheck`) and the reason.
fn not_verified(props: &mut serde_json::Value, (da, reason): (Availability, String)) {
    props[prop::VERIFIED] = json!(false);
    props[prop::DA] = json!(da.as_str());
    props[prop::REASON] = json!(reason);
}

fn node(out: &mut Changes, id: NodeId, props: serde_json::Value, pos: ChainPos) {
    out.nodes.push(Node::new(id, props, pos));
}

fn edge(out: &mut Changes, src: &NodeId, dst: &NodeId, kind: EdgeKind, pos: ChainPos) {
    out.edges
        .push(Edge::new(src.clone(), dst.clone(), kind, pos));
}

pub(super) async fn model_registry(
    ev: Models,
    pos: ChainPos,
    lake: &Lake,
    out: &mut Changes,
) -> &'static str {
    match ev {
        Models::BaseModelRegistered(e) => {
            let props = json!({
                "weights_hash": e.weightsHash.to_string(),
                "architecture": e.architecture,
                "uri": e.uri,
            });
            node(out, g::base_model_id(e.id), props, pos);
            "BaseModelRegistered"
        }
        Models::SnapshotCommitted(e) => {
            let snapshot = g::snapshot_id(e.id);
            let datanets: Vec<u64> = e
                .datanetIds
                .iter()
                .map(|d| d.saturating_to::<u64>())
                .collect();
            for d in &datanets {
                edge(out, &snapshot, &g::datanet_id(*d), EdgeKind::DrawnFrom, pos);
            }
            let checked = check_snapshot(&e, &datanets, lake).await;
            let mut props = json!({
                "datanet_ids": datanets,
                "lake_versions": e.lakeVersions,
                "contributions_root": e.contributionsRoot.to_string(),
                "count": e.count.saturating_to::<u64>(),
                "verified": checked.is_ok(),
            });
            match checked {
                Ok(manifest) => {
                    // The snapshot's contributions, from its manifest: what it trains on.
                    for c in &manifest.contributions {
                        edge(
                            out,
                            &g::contribution_id(c.id),
                            &snapshot,
                            EdgeKind::IncludedIn,
                            pos,
                        );
                    }
                }
                Err(why) => {
                    tracing::warn!(snapshot = %e.id, reason = %why.1, "snapshot not verified against the lake");
                    not_verified(&mut props, why);
                }
            }
            node(out, snapshot, props, pos);
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
            node(out, run, run_props, pos);
            let props = json!({
                "base_model_id": e.baseModelId.to_string(),
                "parent_ids": e.parentIds.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "snapshot_id": e.snapshotId.to_string(),
                "config_hash": e.configHash.to_string(),
                "weights_hash": e.weightsHash.to_string(),
                "uri": e.uri,
                "version": e.version,
            });
            let mut props = props;
            // Its held-out credit, as written in the lake when it was trained (a merge: its
            // parents', by merge weight, from a manifest the chain vouches for).
            let credit = match crate::entities::vouched(lake, &e.id.to_string(), &props).await {
                Ok(m) => lake.credit_of(&m).await.map_err(|err| {
                    let da = if err.is_not_found() {
                        Availability::Missing
                    } else {
                        Availability::Unreachable
                    };
                    (da, err.to_string())
                }),
                // No manifest in this lake: nothing to credit from.
                Err(None) => Ok(vec![]),
                Err(Some(why)) => Err(why),
            };
            match credit {
                Ok(rows) => {
                    for (contribution, _, _, share) in rows {
                        if let Ok(c) = contribution.parse() {
                            out.edges.push(
                                Edge::new(
                                    adapter.clone(),
                                    g::contribution_id(c),
                                    EdgeKind::AttributedTo,
                                    pos,
                                )
                                .weighted(share),
                            );
                        }
                    }
                }
                Err((da, reason)) => {
                    tracing::warn!(adapter = %e.id, %reason, "the adapter's held-out credit is unreadable");
                    props["credit_unavailable"] = json!(reason);
                    if da == Availability::Unreachable {
                        props[prop::DA] = json!(da.as_str());
                    }
                }
            }
            node(out, adapter, props, pos);
            "AdapterPublished"
        }
        Models::RoleGranted(_) => "RoleGranted",
        Models::RoleRevoked(_) => "RoleRevoked",
    }
}

pub(super) async fn inference_ledger(
    ev: Inf,
    pos: ChainPos,
    lake: &Lake,
    out: &mut Changes,
) -> &'static str {
    match ev {
        Inf::InferencesRecorded(e) => {
            inferences_recorded(e, pos, lake, out).await;
            "InferencesRecorded"
        }
        Inf::RoleGranted(_) => "RoleGranted",
        Inf::RoleRevoked(_) => "RoleRevoked",
    }
}

async fn inferences_recorded(
    e: tributary_chain::bindings::InferenceLedger::InferencesRecorded,
    pos: ChainPos,
    lake: &Lake,
    out: &mut Changes,
) {
    let id = g::inference_id(e.batchId);
    for a in &e.adapterIds {
        edge(out, &id, &g::adapter_id(*a), EdgeKind::ServedBy, pos);
    }
    let checked = check_inferences(&e, lake).await;
    let mut props = json!({
        "adapter_ids": e.adapterIds.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "merkle_root": e.merkleRoot.to_string(),
        "count": e.count.saturating_to::<u64>(),
        "manifest_uri": e.manifestURI,
        "verified": checked.is_ok(),
    });
    match checked {
        Err(why) => {
            tracing::warn!(batch = %e.batchId, reason = %why.1, "inference batch not verified against the lake");
            not_verified(&mut props, why);
        }
        Ok(manifest) => {
            // Each answer, with the credit serving recorded for it.
            for answer in &manifest.inferences {
                let a = g::answer_id(answer.id());
                edge(out, &a, &id, EdgeKind::RecordedIn, pos);
                edge(
                    out,
                    &a,
                    &g::adapter_id(answer.adapter_id),
                    EdgeKind::ServedBy,
                    pos,
                );
                for c in &answer.attribution {
                    let dst = match c.contributor {
                        Some(who) if c.is_rest() => g::contributor_id(who),
                        _ => g::contribution_id(c.contribution),
                    };
                    out.edges.push(
                        Edge::new(a.clone(), dst, EdgeKind::AttributedTo, pos).weighted(c.share),
                    );
                }
                let props = json!({
                    prop::ADAPTER_ID: answer.adapter_id.to_string(),
                    "batch_id": e.batchId.to_string(),
                    "request_hash": answer.request_hash.to_string(),
                    "response_hash": answer.response_hash.to_string(),
                    "attribution_root": answer.attribution_root.to_string(),
                    "tokens": answer.tokens,
                    "fee": answer.fee.to_string(),
                });
                node(out, a, props, pos);
            }
            let tokens: u64 = manifest.inferences.iter().map(|i| i.tokens).sum();
            let fees: u128 = manifest.inferences.iter().map(|i| i.fee).sum();
            props["tokens"] = json!(tokens);
            props["fees"] = json!(fees.to_string());
        }
    }
    node(out, id, props, pos);
}

/// Fetches a snapshot's manifest (at its fixed key in the lake) and checks it against the
/// event ([`SnapshotManifest::check`]).
async fn check_snapshot(
    e: &tributary_chain::bindings::ModelRegistry::SnapshotCommitted,
    datanets: &[u64],
    lake: &Lake,
) -> Result<SnapshotManifest, (Availability, String)> {
    checked(fetch(&SnapshotManifest::key(e.id), lake).await, |bytes| {
        let manifest: SnapshotManifest =
            serde_json::from_slice(bytes).map_err(|err| format!("manifest is not valid: {err}"))?;
        manifest.check(
            e.id,
            datanets,
            &e.lakeVersions,
            e.count.saturating_to(),
            e.contributionsRoot,
        )?;
        Ok(manifest)
    })
}

/// Fetches an inference batch's manifest and checks it against the event
/// ([`InferenceManifest::check`]).
async fn check_inferences(
    e: &tributary_chain::bindings::InferenceLedger::InferencesRecorded,
    lake: &Lake,
) -> Result<InferenceManifest, (Availability, String)> {
    let bytes = fetch_recorded(&e.manifestURI, &InferenceManifest::key(e.batchId), lake).await;
    checked(bytes, |bytes| {
        let manifest: InferenceManifest =
            serde_json::from_slice(bytes).map_err(|err| format!("manifest is not valid: {err}"))?;
        manifest.check(
            e.batchId,
            e.count.saturating_to(),
            &e.adapterIds,
            e.merkleRoot,
        )?;
        Ok(manifest)
    })
}

pub(super) async fn reward_distributor(
    ev: Rewards,
    pos: ChainPos,
    lake: &Lake,
    out: &mut Changes,
) -> &'static str {
    match ev {
        Rewards::EpochAllocated(e) => {
            let epoch = e.epoch.saturating_to::<u64>();
            let id = g::reward_epoch_id(epoch);
            let mut props = json!({
                "merkle_root": e.merkleRoot.to_string(),
                "total": e.total.to_string(),
            });
            let bytes = fetch(&format!("rewards/epoch-{epoch}.json"), lake).await;
            match checked(bytes, |bytes| check_epoch(e.merkleRoot, e.total, bytes)) {
                Ok(Settled {
                    totals,
                    batches,
                    policy,
                }) => {
                    props[prop::VERIFIED] = json!(true);
                    props[prop::POLICY] = policy;
                    for b in batches {
                        edge(out, &id, &g::inference_id(b), EdgeKind::Settles, pos);
                    }
                    // Exact amounts as decimal strings in the node; the edges carry each
                    // account's share of the total, a float fit for drawing, not for paying.
                    let total: f64 = totals.iter().map(|(_, n)| *n as f64).sum();
                    props[prop::AMOUNTS] = totals
                        .iter()
                        .map(|(a, n)| (hex_lower(a.as_slice()), json!(n.to_string())))
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                    for (account, amount) in totals {
                        out.edges.push(Edge {
                            src: id.clone(),
                            dst: g::contributor_id(account),
                            kind: EdgeKind::Rewarded,
                            weight: Some(if total > 0.0 {
                                amount as f64 / total
                            } else {
                                0.0
                            }),
                            pos,
                        });
                    }
                }
                Err(why) => {
                    tracing::warn!(epoch, reason = %why.1, "reward epoch not verified against the lake");
                    not_verified(&mut props, why);
                }
            }
            node(out, id, props, pos);
            "EpochAllocated"
        }
        Rewards::Claimed(e) => {
            let epoch = g::reward_epoch_id(e.epoch.saturating_to::<u64>());
            edge(
                out,
                &g::contributor_id(e.account),
                &epoch,
                EdgeKind::Claimed,
                pos,
            );
            "Claimed"
        }
        Rewards::RoleGranted(_) => "RoleGranted",
        Rewards::RoleRevoked(_) => "RoleRevoked",
    }
}

/// What a verified epoch manifest brings into the graph.
struct Settled {
    /// Per account, the total it may claim.
    totals: Vec<(Address, u128)>,
    /// The inference batches it settled.
    batches: Vec<B256>,
    /// Its fee split, as the manifest states it.
    policy: serde_json::Value,
}

/// Checks an epoch's manifest (`rewards/epoch-N.json`, `bytes`): its per-account totals
/// against the root on chain, and its pool against the total minted (posted by hand with
/// another total, its last claims fail); returns them with the batches it settled and its
/// policy.
fn check_epoch(
    root: B256,
    total: alloy::primitives::U256,
    bytes: &[u8],
) -> Result<Settled, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|err| format!("manifest is not valid: {err}"))?;
    if v["foreign"] == true {
        return Err(
            "posted straight to the distributor by someone else: Tributary settled \
                    nothing in it (recorded as foreign)"
                .into(),
        );
    }
    let mut totals: BTreeMap<Address, u128> = BTreeMap::new();
    for a in v["allocations"]
        .as_array()
        .ok_or("manifest has no allocations")?
    {
        let account: Address = a["account"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or("manifest has a bad account")?;
        let amount: u128 = match &a["amount"] {
            serde_json::Value::Number(n) => n.as_u64().map(u128::from),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or("manifest has a bad amount")?;
        let sum = totals.entry(account).or_default();
        *sum = sum
            .checked_add(amount)
            .ok_or("manifest amounts overflow 128 bits")?;
    }
    let leaves = totals
        .iter()
        .map(|(a, n)| {
            tributary_schemas::merkle::leaf_account_amount(*a, alloy::primitives::U256::from(*n))
        })
        .collect();
    if tributary_schemas::merkle::MerkleTree::new(leaves).root() != root {
        return Err("Merkle root differs from the chain".into());
    }
    let pool = v["pool"]
        .as_str()
        .and_then(|p| p.parse::<alloy::primitives::U256>().ok())
        .ok_or("manifest has no pool")?;
    if pool != total {
        return Err(format!(
            "total minted on chain ({total}) differs from the manifest's pool ({pool})"
        ));
    }
    let batches = v["batches"]
        .as_array()
        .map(|b| {
            b.iter()
                .map(|b| b.as_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or(Some(vec![]))
        .ok_or("manifest has a bad batch id")?;
    Ok(Settled {
        totals: totals.into_iter().collect(),
        batches,
        policy: v["policy"].clone(),
    })
}
