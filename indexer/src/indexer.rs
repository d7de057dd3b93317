use alloy::rpc::types::Log;
use tributary_chain::Chain;
use tributary_lake::Lake;
use tributary_schemas::lineage::ChainPos;
use tributary_sql::{Checkpoint, RawEvent, Store};

use crate::events::{self, Changes};
use crate::{Error, Result};

/// The checkpoint stream name of the lineage indexer.
pub const STREAM: &str = "lineage";

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// First block read.
    pub from_block: u64,
    /// Last block read.
    pub to_block: u64,
    /// Logs read.
    pub events: u64,
    /// Nodes written (including ones already present).
    pub nodes: u64,
    /// Edges written (including ones already present).
    pub edges: u64,
}

/// Indexes one chain into one store.
#[derive(Debug)]
pub struct Indexer<'a> {
    chain: &'a Chain,
    store: &'a Store,
    lake: &'a Lake,
    range: u64,
}

impl<'a> Indexer<'a> {
    /// An indexer reading `chain`, writing `store`, checking manifests in `lake`.
    pub fn new(chain: &'a Chain, store: &'a Store, lake: &'a Lake) -> Self {
        Self {
            chain,
            store,
            lake,
            range: 2_000,
        }
    }

    /// Blocks per `eth_getLogs` request.
    pub fn with_range(mut self, blocks: u64) -> Self {
        self.range = blocks.max(1);
        self
    }

    /// Indexes from the checkpoint (or the deployment block) to the current head.
    pub async fn run_to_head(&self) -> Result<IndexStats> {
        let chain_id = self.chain.chain_id();
        let from = match self.store.checkpoint(chain_id, STREAM).await? {
            Some(cp) => cp.block_number + 1,
            None => self.chain.deployment().start_block,
        };
        let head = self.chain.head().await?;
        let mut stats = IndexStats {
            from_block: from,
            to_block: head,
            ..Default::default()
        };
        let mut start = from;
        while start <= head {
            let end = (start + self.range - 1).min(head);
            let logs = self.chain.logs(start, end).await?;
            let mut changes = Changes::default();
            let mut raw = Vec::with_capacity(logs.len());
            for log in &logs {
                let pos = position(log)?;
                let name = events::apply(log, pos, self.lake, &mut changes).await;
                raw.push(RawEvent {
                    address: log.address().to_string(),
                    name: name.to_string(),
                    data: serde_json::json!({
                        "topics": log.topics(),
                        "data": log.data().data.to_string(),
                    }),
                    pos,
                });
            }
            let checkpoint = Checkpoint {
                block_number: end,
                block_hash: self.chain.block_hash(end).await?.to_string(),
            };
            self.store
                .apply(
                    chain_id,
                    STREAM,
                    &raw,
                    &changes.nodes,
                    &changes.edges,
                    &checkpoint,
                )
                .await?;
            stats.events += logs.len() as u64;
            stats.nodes += changes.nodes.len() as u64;
            stats.edges += changes.edges.len() as u64;
            tracing::info!(from = start, to = end, events = logs.len(), "indexed");
            start = end + 1;
        }
        Ok(stats)
    }
}

fn position(log: &Log) -> Result<ChainPos> {
    match (
        log.block_number,
        log.block_hash,
        log.transaction_hash,
        log.log_index,
    ) {
        (Some(block_number), Some(block_hash), Some(tx_hash), Some(log_index)) => Ok(ChainPos {
            block_number,
            block_hash,
            tx_hash,
            log_index,
        }),
        _ => Err(Error::Unpositioned(format!("{log:?}"))),
    }
}
