//! The lineage graph mirrored into Delta tables for analysts: `chain_events`, `lineage_nodes`,
//! `lineage_edges`, and the typed entity tables `datanets`, `snapshots`, `training_runs` and
//! `adapters` (see `entities`).
//!
//! The store numbers every change to a chain's graph (`index_ops`: a block range applied, or a
//! rollback above a fork point). Each mirrored table replays the ops it has not seen, in order:
//! an apply appends the rows of its block range with the Delta application transaction
//! (`tributary-index-CHAIN-STORE`, with a suffix of its own for a table filled again; version:
//! the op's seq), so a replay after a crash adds nothing; a rollback deletes
//! the rows above the fork point, which is harmless to repeat. Progress per table is kept in the
//! store after each op, so a crash anywhere leaves the mirror behind, never wrong. A table
//! mirrored for the first time from this store, or found to be another Delta table than the
//! one its progress belongs to (its `metaData.id`: created again, replaced, or another lake
//! root), is cleared of the chain's rows and filled by replaying every op from the first.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use tributary_lake::Lake;
use tributary_schemas::tables::{self, names};
use tributary_sql::{MirrorProgress, OpKind, RawEvent, Store};

use tributary_schemas::lineage::{Edge, Node};

use crate::{Error, Result, entities};

/// Whether [`sync`] checks that each mirrored table is still the Delta table its progress was
/// recorded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tables {
    /// Check each table's id (one table load each): at an indexer's start, and for callers that
    /// do not know what happened to the lake since the last sync.
    Check,
    /// Trust the progress: between steps of a running indexer, which checked at its start. A
    /// table replaced meanwhile is still found, by the id its next append reports.
    Trusted,
}

/// Replays every op of `chain_id` each mirrored table has not seen; returns the ops replayed
/// (counted once per table). Each op's rows are read from the store once for all tables.
///
/// A table that is not the Delta table its progress was recorded for (dropped and created
/// again or replaced in place by another engine, or the lake moved to a new root while the
/// store stayed) is cleared of the chain's rows and refilled from the first op; before, it was
/// taken to hold the old table's ops. [`Tables::Check`] compares every table's id first; an
/// append into a table whose id changed (replaced while the indexer runs) does it too. A copied
/// lake keeps its tables' ids, and so its progress.
pub async fn sync(store: &Store, lake: &Lake, chain_id: u64, tables: Tables) -> Result<u64> {
    let original = format!("tributary-index-{chain_id}-{}", store.store_id().await?);
    let mut replayed = 0;
    let mut tables = tables;
    // A table replaced under a pass ends it; the next pass checks every id and refills it.
    for _ in 0..3 {
        let (n, replaced) = sync_pass(store, lake, chain_id, tables, &original).await?;
        replayed += n;
        if !replaced {
            return Ok(replayed);
        }
        tables = Tables::Check;
    }
    Err(Error::Mirror(
        "a mirrored table was replaced again during each of 3 refills: stop whatever keeps \
         replacing it, then index again"
            .into(),
    ))
}

/// One pass of [`sync`]: the ops replayed, and whether a table was found replaced under it.
async fn sync_pass(
    store: &Store,
    lake: &Lake,
    chain_id: u64,
    tables: Tables,
    original: &str,
) -> Result<(u64, bool)> {
    let mut progress = Vec::with_capacity(names::MIRRORED.len());
    for table in names::MIRRORED {
        let recorded = store.mirror_progress(chain_id, table).await?;
        progress.push(match (recorded, tables) {
            (Some(p), Tables::Trusted) => p,
            (recorded, _) => {
                let id = lake.table_id(table).await?;
                match recorded {
                    Some(p) if p.table_id.as_deref() == Some(id.as_str()) => p,
                    Some(p) if p.table_id.is_none() => {
                        // Recorded before tables were told apart: adopt the one found.
                        let p = MirrorProgress {
                            table_id: Some(id),
                            ..p
                        };
                        store.set_mirror_table(chain_id, table, &p).await?;
                        p
                    }
                    other => {
                        if other.is_some() {
                            tracing::warn!(table, chain_id, "the mirrored table is not the one this store filled (created again, replaced, or another lake root): refilling it from the first op");
                        }
                        start(store, lake, chain_id, table, id, original).await?
                    }
                }
            }
        });
    }
    let oldest = progress.iter().map(|p| p.seq).min().unwrap_or_default();
    let mut replayed = 0;
    for op in store.ops_after(chain_id, oldest).await? {
        let mut held = None;
        let mut manifests = entities::Manifests::default();
        for (table, p) in names::MIRRORED.iter().zip(&mut progress) {
            if op.seq <= p.seq {
                continue;
            }
            match op.kind {
                OpKind::Apply => {
                    if held.is_none() {
                        held = Some(
                            store
                                .rows_between(chain_id, op.from_block, op.to_block)
                                .await?,
                        );
                    }
                    let (events, nodes, edges) = held.as_ref().expect("read above");
                    let batch = if entities::kind_of(table).is_some() {
                        entities::rows(lake, chain_id, table, nodes, &mut manifests).await?
                    } else {
                        rows(chain_id, table, events, nodes, edges)?
                    };
                    if batch.num_rows() > 0 {
                        let appended = lake
                            .append(table)
                            .batches(vec![batch])
                            .idempotent(p.app_id.as_deref().unwrap_or(original), op.seq as i64)
                            .commit()
                            .await?;
                        if p.table_id
                            .as_ref()
                            .is_some_and(|id| *id != appended.table_id)
                        {
                            tracing::warn!(
                                table,
                                chain_id,
                                "the mirrored table was replaced while indexing: refilling it from the first op"
                            );
                            return Ok((replayed, true));
                        }
                    }
                }
                OpKind::Rollback => {
                    lake.delete(
                        table,
                        &format!("chain_id = {chain_id} AND block_number > {}", op.from_block),
                    )
                    .await?;
                }
            }
            store.set_mirror_progress(chain_id, table, op.seq).await?;
            p.seq = op.seq;
            replayed += 1;
        }
    }
    Ok((replayed, false))
}

/// Starts the mirror of `table` (the Delta table `table_id`) over: the chain's rows there go
/// (another store's, or an earlier fill's), and its appends carry a transaction id of their
/// own, so a table that keeps an earlier fill's transactions (replaced in place) is refilled.
async fn start(
    store: &Store,
    lake: &Lake,
    chain_id: u64,
    table: &str,
    table_id: String,
    original: &str,
) -> Result<MirrorProgress> {
    lake.delete(table, &format!("chain_id = {chain_id}"))
        .await?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let p = MirrorProgress {
        seq: 0,
        table_id: Some(table_id),
        app_id: Some(format!("{original}-{nanos:x}")),
    };
    store.set_mirror_table(chain_id, table, &p).await?;
    Ok(p)
}

/// The rows of graph table `table` among `events`, `nodes` and `edges` (one op's block range).
fn rows(
    chain_id: u64,
    table: &str,
    events: &[RawEvent],
    nodes: &[Node],
    edges: &[Edge],
) -> Result<RecordBatch> {
    let text = |v: Vec<String>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let int = |v: Vec<i64>| -> ArrayRef { Arc::new(Int64Array::from(v)) };
    let chain = |n: usize| int(vec![chain_id as i64; n]);
    let position = |p: Vec<&tributary_schemas::lineage::ChainPos>| -> Vec<ArrayRef> {
        vec![
            int(p.iter().map(|p| p.block_number as i64).collect()),
            text(p.iter().map(|p| p.block_hash.to_string()).collect()),
            text(p.iter().map(|p| p.tx_hash.to_string()).collect()),
            int(p.iter().map(|p| p.log_index as i64).collect()),
        ]
    };
    let (schema, mut columns) = match table {
        names::CHAIN_EVENTS => (
            tables::chain_events(),
            vec![
                chain(events.len()),
                text(events.iter().map(|e| e.address.clone()).collect()),
                text(events.iter().map(|e| e.name.clone()).collect()),
                text(events.iter().map(|e| e.data.to_string()).collect()),
            ],
        ),
        names::LINEAGE_NODES => (
            tables::lineage_nodes(),
            vec![
                chain(nodes.len()),
                text(nodes.iter().map(|n| n.id.to_string()).collect()),
                text(nodes.iter().map(|n| n.kind.as_str().to_string()).collect()),
                text(nodes.iter().map(|n| n.props.to_string()).collect()),
            ],
        ),
        names::LINEAGE_EDGES => (
            tables::lineage_edges(),
            vec![
                chain(edges.len()),
                text(edges.iter().map(|e| e.src.to_string()).collect()),
                text(edges.iter().map(|e| e.dst.to_string()).collect()),
                text(edges.iter().map(|e| e.kind.as_str().to_string()).collect()),
                Arc::new(Float64Array::from(
                    edges.iter().map(|e| e.weight).collect::<Vec<_>>(),
                )),
            ],
        ),
        other => return Err(Error::Mirror(format!("{other} is not a mirrored table"))),
    };
    columns.extend(match table {
        names::CHAIN_EVENTS => position(events.iter().map(|e| &e.pos).collect()),
        names::LINEAGE_NODES => position(nodes.iter().map(|n| &n.pos).collect()),
        _ => position(edges.iter().map(|e| &e.pos).collect()),
    });
    RecordBatch::try_new(schema, columns).map_err(|e| Error::Mirror(e.to_string()))
}
