//! Subscriptions: new anchors, adapters and inferences as the indexer stores them.
//!
//! The store numbers every change to the graph (`index_ops`, the same log the Delta mirror
//! replays), so a subscription follows that log: it starts at the latest change, and each
//! poll reads the changes after the last one seen and the nodes of its kind in their block
//! ranges. It works whichever process runs the indexer, with SQLite or PostgreSQL, and skips
//! no node. A rollback (reorg) removes nodes without notice; what the new chain has in those
//! blocks arrives as new nodes, so a node on both sides of a reorg comes twice.

use std::collections::VecDeque;
use std::time::Duration;

use async_graphql::{Context, Subscription as GqlSubscription};
use futures::Stream;
use tributary_schemas::lineage::{Node, NodeKind};
use tributary_sql::{NodeKey, OpKind, Order};

use super::load::{graph, internal};
use super::objects::{Adapter, Batch, Inference};

/// How often subscriptions look for changes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Poll(pub(crate) Duration);

/// Root subscription.
pub struct Subscription;

#[GqlSubscription]
impl Subscription {
    /// Batches anchored from now on (`BatchAnchored`), as the indexer stores them.
    async fn anchors(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Batch>> + use<>> {
        follow(ctx, NodeKind::Batch).await
    }

    /// Adapters published from now on (`AdapterPublished`).
    async fn adapters(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Adapter>> + use<>> {
        follow(ctx, NodeKind::Adapter).await
    }

    /// Inference batches recorded from now on (`InferencesRecorded`).
    async fn inferences(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Inference>> + use<>> {
        follow(ctx, NodeKind::Inference).await
    }
}

/// The nodes of `kind` the graph gains from now on, as `T`.
async fn follow<T: From<Node> + Send + 'static>(
    ctx: &Context<'_>,
    kind: NodeKind,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<T>> + use<T>> {
    let gr = graph(ctx);
    let poll = ctx.data_unchecked::<Poll>().0;
    let store = gr.store.clone();
    let chain_id = gr.chain_id;
    let seq = store.last_op(chain_id).await.map_err(internal)?;
    let state = Follow {
        graph: (store, chain_id),
        kind,
        seq,
        ready: VecDeque::new(),
        poll,
        failed: false,
    };
    Ok(futures::stream::unfold(state, |mut s| async move {
        if s.failed {
            return None;
        }
        loop {
            if let Some(n) = s.ready.pop_front() {
                return Some((Ok(T::from(n)), s));
            }
            tokio::time::sleep(s.poll).await;
            if let Err(e) = s.next_changes().await {
                s.failed = true;
                return Some((Err(internal(e)), s));
            }
        }
    }))
}

struct Follow {
    /// The store and chain followed.
    graph: (tributary_sql::Store, u64),
    kind: NodeKind,
    /// The last change read.
    seq: u64,
    ready: VecDeque<Node>,
    poll: Duration,
    failed: bool,
}

impl Follow {
    /// Reads the changes after `seq` and queues the nodes of `kind` they added.
    async fn next_changes(&mut self) -> tributary_sql::Result<()> {
        let (store, chain_id) = &self.graph;
        for op in store.ops_after(*chain_id, self.seq).await? {
            if op.kind == OpKind::Apply {
                let blocks = (Some(op.from_block), Some(op.to_block));
                let mut after: Option<NodeKey> = None;
                loop {
                    let page = store
                        .nodes_of_kind(
                            *chain_id,
                            self.kind,
                            blocks,
                            (after.as_ref(), Order::OldestFirst),
                            1000,
                        )
                        .await?;
                    let full = page.len() == 1000;
                    after = page.last().map(NodeKey::of);
                    self.ready.extend(page);
                    if !full {
                        break;
                    }
                }
            }
            self.seq = op.seq;
        }
        Ok(())
    }
}
