//! DatanetRegistry: Datanets, anchored batches (checked against their lake manifests), and
//! the contributions they bring into the graph.

use std::collections::HashMap;

use alloy::primitives::{B256, Bytes, keccak256};
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use futures::TryStreamExt;
use serde_json::json;
use tributary_chain::bindings::DatanetRegistry::{self, DatanetRegistryEvents as Ev};
use tributary_lake::Lake;
use tributary_schemas::lineage::{
    self as g, ChainPos, Edge, EdgeKind, Node, NodeId, NodeKind, prop,
};
use tributary_schemas::manifest::{BatchManifest, EntryProof};
use tributary_schemas::tables::names;

use super::Changes;

/// Applies one DatanetRegistry event; `signing` is the registry's EIP-712 domain separator,
/// under which a batch's entries must be signed.
pub(super) async fn apply(
    ev: Ev,
    pos: ChainPos,
    lake: &Lake,
    signing: B256,
    out: &mut Changes,
) -> &'static str {
    match ev {
        Ev::DatanetCreated(e) => {
            out.nodes.push(Node {
                id: g::datanet_id(e.id.saturating_to::<u64>()),
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
            batch_anchored(e, pos, lake, signing, out).await;
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
                    "datanet_id": e.datanetId.saturating_to::<u64>(),
                    "by": g::hex_lower(e.by.as_slice()),
                    "reason": e.reason,
                }),
                pos,
            });
            "ContributionRevoked"
        }
        Ev::ValidationRecorded(e) => {
            let id = g::validation_id(e.batchId, e.validator, &pos);
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
                    "datanet_id": e.datanetId.saturating_to::<u64>(),
                    "validator": g::hex_lower(e.validator.as_slice()),
                    "verdicts_root": e.verdictsRoot.to_string(),
                    "accepted": e.accepted.saturating_to::<u64>(),
                    "rejected": e.rejected.saturating_to::<u64>(),
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
    signing: B256,
    out: &mut Changes,
) {
    let anchor = Anchor {
        batch_id: e.batchId,
        datanet_id: e.datanetId.saturating_to::<u64>(),
        merkle_root: e.merkleRoot,
        count: e.count.saturating_to::<u64>(),
        manifest_uri: e.manifestURI,
        manifest_hash: e.manifestHash,
        lake_version: e.lakeVersion,
    };
    let checked = check_manifest(&anchor, lake, signing).await;
    let props = anchor.props(&checked);
    if let Ok(manifest) = &checked {
        contributions(&anchor, manifest, pos, out);
    }
    out.nodes.push(Node {
        id: g::batch_id(anchor.batch_id),
        kind: NodeKind::Batch,
        props,
        pos,
    });
}

/// What a manifest's data-availability check found: `verified` against the chain (for a
/// batch, its contributors' signatures too); `unreachable` (the lake did not answer, failed or
/// refused access: checked again later); `missing` (the lake has no such object), `mismatch`
/// (it differs from the chain) or `unsigned` (a batch lists an entry its contributor did not
/// sign for its Datanet), flagged for good, except a reward epoch's `missing` manifest, checked
/// again (an epoch posted straight to the distributor is recorded as foreign after it is
/// posted). The signatures' nonces and deadlines are not checked here: `contribute` refuses
/// an expired signature and a reused nonce when it ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// The manifest matches the chain.
    Verified,
    /// The lake could not be read; rechecked.
    Unreachable,
    /// No manifest at the URI.
    Missing,
    /// The manifest differs from the chain.
    Mismatch,
    /// An entry is not a contribution its contributor signed for the batch's Datanet: the
    /// anchorer listed what no contributor signed, altered it, or took it from another Datanet.
    Unsigned,
}

impl Availability {
    /// The name kept in the batch node's `da` property.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Verified => "verified",
            Availability::Unreachable => "unreachable",
            Availability::Missing => "missing",
            Availability::Mismatch => "mismatch",
            Availability::Unsigned => "unsigned",
        }
    }
}

/// The facts of a `BatchAnchored` event its manifest is checked against.
#[derive(Debug, Clone)]
pub(crate) struct Anchor {
    pub(crate) batch_id: B256,
    datanet_id: u64,
    merkle_root: B256,
    count: u64,
    manifest_uri: String,
    manifest_hash: B256,
    lake_version: u64,
}

impl Anchor {
    /// The batch node's props after a check.
    pub(crate) fn props(&self, checked: &Checked) -> serde_json::Value {
        let da = match checked {
            Ok(_) => Availability::Verified,
            Err((da, _)) => *da,
        };
        let mut props = json!({
            prop::DATANET_ID: self.datanet_id,
            "merkle_root": self.merkle_root.to_string(),
            "count": self.count,
            prop::MANIFEST_URI: self.manifest_uri,
            "manifest_hash": self.manifest_hash.to_string(),
            "lake_version": self.lake_version,
            prop::VERIFIED: da == Availability::Verified,
            prop::DA: da.as_str(),
        });
        if let Err((_, reason)) = checked {
            tracing::warn!(batch = %self.batch_id, da = da.as_str(), %reason, "batch not verified against the lake");
            props[prop::REASON] = json!(reason);
        }
        props
    }
}

/// A checked manifest, or what the check found and why.
pub(crate) type Checked = Result<BatchManifest, (Availability, String)>;

/// The contributions of a verified batch: contributor, contribution and their edges, at the
/// batch's chain position.
pub(crate) fn contributions(
    anchor: &Anchor,
    manifest: &BatchManifest,
    pos: ChainPos,
    out: &mut Changes,
) {
    let batch = g::batch_id(anchor.batch_id);
    let datanet_node = g::datanet_id(anchor.datanet_id);
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
                "datanet_id": anchor.datanet_id,
            }),
            pos,
        });
        let edge =
            |src: &NodeId, dst: &NodeId, kind| Edge::new(src.clone(), dst.clone(), kind, pos);
        out.edges
            .push(edge(&contributor, &id, EdgeKind::Contributed));
        out.edges.push(edge(&id, &datanet_node, EdgeKind::In));
        out.edges.push(edge(&id, &batch, EdgeKind::AnchoredIn));
    }
}

/// Reads a manifest, retrying a lake that does not answer a few times with a growing pause:
/// its bytes, or `missing` (no such object) or `unreachable` with the reason.
pub(crate) async fn fetch(uri: &str, lake: &Lake) -> Result<Vec<u8>, (Availability, String)> {
    let mut pause = std::time::Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match lake.get(uri).await {
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.is_not_found() => {
                return Err((Availability::Missing, format!("manifest missing: {e}")));
            }
            Err(e) if attempt >= 3 => {
                return Err((
                    Availability::Unreachable,
                    format!("manifest unreachable after {attempt} attempts: {e}"),
                ));
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
        }
    }
}

/// [`fetch`] of an object the chain recorded as `reference` (a key, or a URI from before keys
/// were recorded) where [`Lake::locate`] puts it, else at `canonical`, its own key (a lake
/// migrated since keeps it there).
pub(crate) async fn fetch_recorded(
    reference: &str,
    canonical: &str,
    lake: &Lake,
) -> Result<Vec<u8>, (Availability, String)> {
    let at = lake.locate(reference, canonical);
    match fetch(&at, lake).await {
        Err((Availability::Missing, _)) if at != canonical => fetch(canonical, lake).await,
        other => other,
    }
}

/// Fetches the manifest and checks it against the event (hash, Datanet, count, Merkle root),
/// then each entry against its contributor's signature under `signing`, the registry's
/// EIP-712 domain separator (see [`check_entries`]).
pub(crate) async fn check_manifest(a: &Anchor, lake: &Lake, signing: B256) -> Checked {
    // The chain records a key; a lake written before recorded absolute URIs, which lead
    // nowhere once the lake moves: then the manifest is at its canonical key.
    let bytes = fetch_recorded(&a.manifest_uri, &BatchManifest::key(a.batch_id), lake).await?;
    let mismatch = |why: String| (Availability::Mismatch, why);
    if keccak256(&bytes) != a.manifest_hash {
        return Err(mismatch("manifest hash differs from the chain".into()));
    }
    let manifest: BatchManifest = serde_json::from_slice(&bytes)
        .map_err(|err| mismatch(format!("manifest is not valid: {err}")))?;
    if manifest.batch_id != a.batch_id || manifest.datanet_id != a.datanet_id {
        return Err(mismatch("manifest names another batch or Datanet".into()));
    }
    if manifest.contributions.len() as u64 != a.count {
        return Err(mismatch("manifest count differs from the chain".into()));
    }
    if manifest.merkle_tree().root() != a.merkle_root {
        return Err(mismatch(
            "Merkle root of the manifest differs from the chain".into(),
        ));
    }
    let stored = stored_proofs(&manifest, lake).await?;
    // An ecrecover per entry: off the async threads.
    tokio::task::spawn_blocking(move || check_entries(manifest, &stored, signing))
        .await
        .map_err(|e| {
            (
                Availability::Unreachable,
                format!("checking the entries' signatures did not finish: {e}"),
            )
        })?
}

/// Checks that every entry is a contribution its contributor signed for the batch's Datanet
/// ([`tributary_schemas::manifest::ManifestEntry::check`]): the chain holds only a Merkle root
/// the anchorer chose, so without this an anchorer (anyone may create a Datanet and anchor its
/// batches) could list entries no contributor signed, or another Datanet's contributions. An
/// entry without its proof (a manifest written before entries carried one) takes it from
/// `stored`, the batch's rows in the lake.
fn check_entries(
    m: BatchManifest,
    stored: &HashMap<B256, Vec<EntryProof>>,
    signing: B256,
) -> Checked {
    let check = |e: &tributary_schemas::manifest::ManifestEntry| -> Result<(), String> {
        let blame =
            |why| format!("{why}; the batch's anchorer listed it, so none of the batch is trusted");
        if let Some(proof) = &e.proof {
            return e.check(m.datanet_id, proof, signing).map_err(blame);
        }
        // A legacy entry: any of its rows' proofs will do (another engine may have added
        // rows with the same id).
        let mut why = format!(
            "entry {} carries no signature and the lake holds no row of this batch for it, so \
             nothing shows that {} signed it",
            e.id, e.contributor
        );
        for proof in stored.get(&e.id).into_iter().flatten() {
            match e.check(m.datanet_id, proof, signing) {
                Ok(()) => return Ok(()),
                Err(w) => why = blame(w),
            }
        }
        Err(why)
    };
    // About 32 µs per entry (one ecrecover): a large batch is spread over the cores; the
    // first failing entry in manifest order is the one reported.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = m.contributions.len().div_ceil(cores).max(512);
    let failed = if m.contributions.len() <= chunk {
        m.contributions.iter().find_map(|e| check(e).err())
    } else {
        std::thread::scope(|s| {
            let parts: Vec<_> = m
                .contributions
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().find_map(|e| check(e).err())))
                .collect();
            parts
                .into_iter()
                .find_map(|p| p.join().expect("checking entries does not panic"))
        })
    };
    match failed {
        Some(why) => Err((Availability::Unsigned, why)),
        None => Ok(m),
    }
}

/// The proofs of `m`'s entries that carry none, from the batch's rows in the lake's
/// `contributions` table (ingest has always kept each signature there); empty, without a read,
/// when every entry carries its own.
async fn stored_proofs(
    m: &BatchManifest,
    lake: &Lake,
) -> Result<HashMap<B256, Vec<EntryProof>>, (Availability, String)> {
    let mut proofs = HashMap::new();
    if m.contributions.iter().all(|e| e.proof.is_some()) {
        return Ok(proofs);
    }
    let unreachable = |e: tributary_lake::Error| {
        (
            Availability::Unreachable,
            format!("the batch's signatures could not be read from the lake: {e}"),
        )
    };
    let filter = format!(
        "datanet_id = {} AND batch_id = '{}'",
        m.datanet_id, m.batch_id
    );
    let columns = ["contribution_id", "nonce", "deadline", "signature"];
    let mut rows = lake
        .scan(names::CONTRIBUTIONS, None, &columns, Some(&filter))
        .await
        .map_err(unreachable)?;
    while let Some(b) = rows.try_next().await.map_err(unreachable)? {
        let (ids, signatures) = (
            b.column(0).as_string::<i32>(),
            b.column(3).as_string::<i32>(),
        );
        let (nonces, deadlines) = (
            b.column(1).as_primitive::<Int64Type>(),
            b.column(2).as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            // A row that does not parse proves nothing: its entry is reported unsigned.
            let (Ok(id), Ok(signature)) = (
                ids.value(i).parse::<B256>(),
                signatures.value(i).parse::<Bytes>(),
            ) else {
                continue;
            };
            proofs.entry(id).or_insert_with(Vec::new).push(EntryProof {
                nonce: nonces.value(i) as u64,
                deadline: deadlines.value(i) as u64,
                signature,
            });
        }
    }
    Ok(proofs)
}
