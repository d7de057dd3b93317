//! The lineage graph mirrored into Delta tables (`chain_events`, `lineage_nodes`,
//! `lineage_edges`) for analysts.
//!
//! The store numbers every change to a chain's graph (`index_ops`: a block range applied, or a
//! rollback above a fork point). Each mirrored table replays the ops it has not seen, in order:
//! an apply appends the rows of its block range with the Delta application transaction
//! (`tributary-index-CHAIN-STORE`, seq), so a replay after a crash adds nothing; a rollback deletes
//! the rows above the fork point, which is harmless to repeat. Progress per table is kept in the
//! store after each op, so a crash anywhere leaves the mirror behind, never wrong.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use tributary_lake::Lake;
use tributary_schemas::tables::{self, names};
use tributary_sql::{OpKind, Store};

use crate::{Error, Result};

/// Replays every op of `chain_id` each mirrored table has not seen; returns the ops replayed
/// (counted once per table).
pub async fn sync(store: &Store, lake: &Lake, chain_id: u64) -> Result<u64> {
    let app_id = format!("tributary-index-{chain_id}-{}", store.store_id().await?);
    let mut replayed = 0;
    for table in names::MIRRORED {
        let done = match store.mirror_progress(chain_id, table).await? {
            Some(seq) => seq,
            None => {
                // First sync from this store: the mirror becomes a copy of it, so rows another
                // store (an earlier index of this chain) left there go first.
                lake.delete(table, &format!("chain_id = {chain_id}"))
                    .await?;
                store.set_mirror_progress(chain_id, table, 0).await?;
                0
            }
        };
        for op in store.ops_after(chain_id, done).await? {
            match op.kind {
                OpKind::Apply => {
                    let batch = rows(store, chain_id, table, op.from_block, op.to_block).await?;
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
            replayed += 1;
        }
    }
    Ok(replayed)
}

/// The rows of mirrored table `table` from blocks `from..=to`, as the store holds them now.
async fn rows(
    store: &Store,
    chain_id: u64,
    table: &str,
    from: u64,
    to: u64,
) -> Result<RecordBatch> {
    let (events, nodes, edges) = store.rows_between(chain_id, from, to).await?;
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
                text(nodes.iter().map(|n| n.id.clone()).collect()),
                text(nodes.iter().map(|n| n.kind.as_str().to_string()).collect()),
                text(nodes.iter().map(|n| n.props.to_string()).collect()),
            ],
        ),
        names::LINEAGE_EDGES => (
            tables::lineage_edges(),
            vec![
                chain(edges.len()),
                text(edges.iter().map(|e| e.src.clone()).collect()),
                text(edges.iter().map(|e| e.dst.clone()).collect()),
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
