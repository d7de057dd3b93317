//! The lineage graph mirrored into Delta tables for analysts: `chain_events`, `lineage_nodes`,
//! `lineage_edges`, and the typed entity tables `datanets`, `snapshots`, `training_runs` and
//! `adapters` (see `entities`).
//!
//! The store numbers every change to a chain's graph (`index_ops`: a block range applied, or a
//! rollback above a fork point). Each mirrored table replays the ops it has not seen, in order:
//! an apply appends the rows of its block range with the Delta application transaction
//! (`tributary-index-CHAIN-STORE`, seq), so a replay after a crash adds nothing; a rollback deletes
//! the rows above the fork point, which is harmless to repeat. Progress per table is kept in the
//! store after each op, so a crash anywhere leaves the mirror behind, never wrong. A table
//! mirrored for the first time from this store, or found to be another Delta table than the
//! one its progress belongs to (its `metaData.id`: created again, or another lake root), is
//! cleared of the chain's rows and filled by replaying every op from the first.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use tributary_lake::Lake;
use tributary_schemas::tables::{self, names};
use tributary_sql::{OpKind, RawEvent, Store};

use tributary_schemas::lineage::{Edge, Node};

use crate::{Error, Result, entities};

/// Whether [`sync`] checks that each mirrored table is still the Delta table its progress was
/// recorded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tables {
    /// Check each table's id (one table load each): at an indexer's start, and for callers that
    /// do not know what happened to the lake since the last sync.
    Check,
    /// Trust the progress: between steps of a running indexer, which checked at its start.
    Trusted,
}

/// Replays every op of `chain_id` each mirrored table has not seen; returns the ops replayed
/// (counted once per table). Each op's rows are read from the store once for all tables.
///
/// With [`Tables::Check`], a table that is not the Delta table its progress was recorded for
/// (dropped and created again by another engine, or the lake moved to a new root while the
/// store stayed) is filled from the last op its own log says this store appended (none: it is
/// cleared of the chain's rows and filled from the first op); before, it was taken to hold the
/// ops of the old table's progress. A copied lake keeps its tables' ids, and so its progress.
pub async fn sync(store: &Store, lake: &Lake, chain_id: u64, tables: Tables) -> Result<u64> {
    let app_id = format!("tributary-index-{chain_id}-{}", store.store_id().await?);
    let mut done = Vec::with_capacity(names::MIRRORED.len());
    for table in names::MIRRORED {
        let progress = store.mirror_progress(chain_id, table).await?;
        done.push(match (progress, tables) {
            (Some((seq, _)), Tables::Trusted) => seq,
            (progress, _) => {
                let id = lake.table_id(table).await?;
                match progress {
                    Some((seq, Some(was))) if was == id => seq,
                    Some((seq, None)) => {
                        // Recorded before tables were told apart: adopt the one found.
                        store.set_mirror_table(chain_id, table, &id, seq).await?;
                        seq
                    }
                    other => {
                        // A table new to this progress. Its own record of this store's appends
                        // (the application transaction's version: the last op that added rows)
                        // says where it stands: a table this store filled before (a lake root
                        // used again) goes on from there. Otherwise it becomes a copy of this
                        // store from the first op, so rows another store (an earlier index of
                        // this chain) left there go first.
                        let from = match lake.txn_version(table, &app_id).await? {
                            Some(seq) => seq.max(0) as u64,
                            None => {
                                lake.delete(table, &format!("chain_id = {chain_id}"))
                                    .await?;
                                0
                            }
                        };
                        if other.is_some() {
                            tracing::warn!(table, chain_id, from, "the mirrored table is not the one this store's progress belongs to (created again, or another lake root): filling it from its own progress");
                        }
                        store.set_mirror_table(chain_id, table, &id, from).await?;
                        from
                    }
                }
            }
        });
    }
    let oldest = done.iter().copied().min().unwrap_or_default();
    let mut replayed = 0;
    for op in store.ops_after(chain_id, oldest).await? {
        let mut held = None;
        let mut manifests = entities::Manifests::default();
        for (table, done) in names::MIRRORED.iter().zip(&mut done) {
            if op.seq <= *done {
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
                        lake.append(table)
                            .batches(vec![batch])
                            .idempotent(app_id.clone(), op.seq as i64)
                            .commit()
                            .await?;
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
            *done = op.seq;
            replayed += 1;
        }
    }
    Ok(replayed)
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
