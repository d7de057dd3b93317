//! Typed tables of the graph's entities (`datanets`, `snapshots`, `training_runs`, `adapters`):
//! one row per node of that kind, its properties as columns, so analysts need not pick JSON
//! apart. Training measurements come from the adapter's manifest in the lake, used only when it
//! names the same adapter, weights and configuration as the chain.

use std::collections::HashMap;

use arrow::json::ReaderBuilder;
use arrow::record_batch::RecordBatch;
use serde_json::{Value, json};
use tributary_lake::Lake;
use tributary_schemas::lineage::{Node, NodeKind, adapter_id};
use tributary_schemas::manifest::{AdapterManifest, AdapterRecord};
use tributary_schemas::tables::{self, names};

use crate::events::datanet_registry::{Availability, fetch};
use crate::{Error, Result};

/// The kind of node whose rows fill `table`, if it is an entity table.
pub(crate) fn kind_of(table: &str) -> Option<NodeKind> {
    Some(match table {
        names::DATANETS => NodeKind::Datanet,
        names::SNAPSHOTS => NodeKind::Snapshot,
        names::TRAINING_RUNS => NodeKind::TrainingRun,
        names::ADAPTERS => NodeKind::Adapter,
        _ => return None,
    })
}

/// Adapter manifests read for one op, by adapter id: `training_runs` and `adapters` both
/// want them, and each is read from the lake once.
#[derive(Default)]
pub(crate) struct Manifests(HashMap<String, Option<AdapterManifest>>);

impl Manifests {
    /// Adapter `key`'s manifest, if it is in the lake and agrees with the chain's `props`.
    async fn get(&mut self, lake: &Lake, key: &str, props: &Value) -> Option<AdapterManifest> {
        if !self.0.contains_key(key) {
            let m = manifest(lake, key, props).await;
            self.0.insert(key.to_string(), m);
        }
        self.0[key].clone()
    }
}

/// The rows of entity table `table` for `nodes` (every kind; the others are skipped).
pub(crate) async fn rows(
    lake: &Lake,
    chain_id: u64,
    table: &str,
    nodes: &[Node],
    manifests: &mut Manifests,
) -> Result<RecordBatch> {
    let kind =
        kind_of(table).ok_or_else(|| Error::Mirror(format!("{table} is no entity table")))?;
    let mut out = Vec::new();
    for n in nodes.iter().filter(|n| n.kind == kind) {
        let key = n.id.split_once(':').map_or(n.id.as_str(), |(_, k)| k);
        let p = &n.props;
        let mut row = match kind {
            NodeKind::Datanet => json!({
                "datanet_id": key.parse::<u64>().map_err(|_| Error::Mirror(format!("bad datanet node id {}", n.id)))?,
                "name": p["name"], "domain": p["domain"], "owner": p["owner"],
                "schema_hash": p["schema_hash"], "metadata_uri": p["metadata_uri"],
            }),
            NodeKind::Snapshot => json!({
                "snapshot_id": key,
                "datanet_ids": json_text(&p["datanet_ids"]),
                "lake_versions": json_text(&p["lake_versions"]),
                "contributions_root": p["contributions_root"], "contributions": p["count"],
                "verified": p["verified"], "reason": p["reason"],
            }),
            NodeKind::TrainingRun => {
                // The run's node shares its key with the adapter it produced, in the same event.
                let adapter = key.parse().ok().map(adapter_id);
                let m = match nodes.iter().find(|a| Some(&a.id) == adapter.as_ref()) {
                    Some(a) => manifests.get(lake, key, &a.props).await,
                    None => None,
                };
                let x = m.as_ref().and_then(|m| m.metrics.as_ref());
                json!({
                    "adapter_id": key,
                    "snapshot_id": p["snapshot_id"], "config_hash": p["config_hash"],
                    "manifest_verified": m.is_some(),
                    "config": m.as_ref().map(|m| m.config.to_string()),
                    "device": m.as_ref().map(|m| &m.device),
                    "code_version": m.as_ref().map(|m| &m.code_version),
                    "steps": x.map(|x| x.steps), "tokens": x.map(|x| x.tokens),
                    "seconds": x.map(|x| x.seconds),
                    "base_eval_loss": x.map(|x| x.base_eval_loss),
                    "eval_loss": x.map(|x| x.eval_loss), "perplexity": x.map(|x| x.perplexity),
                    "stopped_early": x.map(|x| x.stopped_early),
                    "train_documents": x.map(|x| x.documents.0),
                    "heldout_documents": x.map(|x| x.documents.1),
                })
            }
            _ => {
                let m = manifests.get(lake, key, p).await;
                let version = p["version"].as_str();
                json!({
                    "adapter_id": key,
                    "line": version.and_then(|v| v.split_once('@')).map(|(line, _)| line),
                    "version": version,
                    "base_model_id": p["base_model_id"],
                    "parent_ids": json_text(&p["parent_ids"]),
                    "snapshot_id": p["snapshot_id"], "config_hash": p["config_hash"],
                    "weights_hash": p["weights_hash"], "uri": p["uri"],
                    "eval_loss": m.and_then(|m| m.metrics).map(|x| x.eval_loss),
                })
            }
        };
        row["chain_id"] = json!(chain_id);
        row["block_number"] = json!(n.pos.block_number);
        row["block_hash"] = json!(n.pos.block_hash.to_string());
        row["tx_hash"] = json!(n.pos.tx_hash.to_string());
        row["log_index"] = json!(n.pos.log_index);
        out.push(row);
    }
    let schema = tables::schema(table).expect("entity tables have schemas");
    let bad = |e: arrow::error::ArrowError| Error::Mirror(format!("{table}: {e}"));
    let mut decoder = ReaderBuilder::new(schema.clone())
        .build_decoder()
        .map_err(bad)?;
    decoder.serialize(&out).map_err(bad)?;
    Ok(decoder
        .flush()
        .map_err(bad)?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// A JSON array property as JSON text (null when absent).
fn json_text(v: &Value) -> Option<String> {
    (!v.is_null()).then(|| v.to_string())
}

/// Adapter `key`'s manifest from the lake, if it is there and the chain's `props` vouch for
/// it ([`vouched`]).
async fn manifest(lake: &Lake, key: &str, props: &Value) -> Option<AdapterManifest> {
    vouched(lake, key, props).await.ok()
}

/// Adapter `key`'s manifest from the lake when the chain vouches for it (it agrees with the
/// chain's `props` on everything that made it: [`AdapterManifest::check`]); else why not: `None`
/// when this lake has no manifest for it, else its availability (`unreachable` when the lake
/// failed, `mismatch` when it does not parse or disagrees) and the reason.
pub(crate) async fn vouched(
    lake: &Lake,
    key: &str,
    props: &Value,
) -> std::result::Result<AdapterManifest, Option<(Availability, String)>> {
    let mismatch = |why: String| Some((Availability::Mismatch, why));
    let id = key
        .parse()
        .map_err(|_| mismatch(format!("{key:?} is not an adapter id")))?;
    let bytes = match fetch(&AdapterManifest::key(id), lake).await {
        Ok(b) => b,
        Err((Availability::Missing, _)) => return Err(None),
        Err((da, why)) => return Err(Some((da, format!("the adapter's {why}")))),
    };
    let m: AdapterManifest = serde_json::from_slice(&bytes).map_err(|e| {
        tracing::warn!(adapter = key, error = %e, "adapter manifest does not parse");
        mismatch(format!("the adapter's manifest does not parse: {e}"))
    })?;
    let on_chain = AdapterRecord::from_props(id, props);
    m.check(&on_chain).map_err(|reason| {
        tracing::warn!(
            adapter = %adapter_id(id),
            %reason,
            "adapter manifest disagrees with the chain: its measurements are left out"
        );
        mismatch(reason)
    })?;
    Ok(m)
}
