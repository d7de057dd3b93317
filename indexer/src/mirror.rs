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
//! mirrored for the first time from this store is cleared of the chain's rows and filled by
//! replaying every op from the first.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use tributary_lake::Lake;
use tributary_schemas::tables::{self, names};
use tributary_sql::{OpKind, RawEvent, Store};

use tributary_schemas::lineage::{Edge, Node};

use crate::{Error, Result, entities};

/// Replays every op of `chain_id` each mirrored table has not seen; returns the ops replayed
/// (counted once per table). Each op's rows are read from the store once for all tables.
pub async fn sync(store: &Store, lake: &Lake, chain_id: u64) -> Result<u64> {
    let app_id = format!("tributary-index-{chain_id}-{}", store.store_id().await?);
    let mut done = Vec::with_capacity(names::MIRRORED.len());
    for table in names::MIRRORED {
        done.push(match store.mirror_progress(chain_id, table).await? {
            Some(seq) => seq,
            None => {
                // First sync of this table from this store: the mirror becomes a copy of it, so
                // rows another store (an earlier index of this chain) left there go first.
                lake.delete(table, &format!("chain_id = {chain_id}"))
                    .await?;
                store.set_mirror_progress(chain_id, table, 0).await?;
                0
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
