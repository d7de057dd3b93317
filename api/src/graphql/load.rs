//! Batched reads for resolvers (DataLoader): every node and every "edges of kind K at node X"
//! that the resolvers of one query level ask for are gathered and read in one store query
//! per kind, so a page of 100 adapters asking for their parents costs one query, not 100.

use std::collections::{BTreeMap, HashMap};

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, ErrorExtensions};
use tributary_schemas::lineage::{Edge, EdgeKind, Node};
use tributary_sql::{End, LineageIndex, Store};

/// The store of one chain, read in batches.
pub(crate) struct Graph {
    pub(crate) store: Store,
    pub(crate) chain_id: u64,
    /// The graph in memory, for walks.
    pub(crate) index: LineageIndex,
}

/// The edges of one kind at one node, matched at one end.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct At {
    pub(crate) id: String,
    pub(crate) end: End,
    pub(crate) kind: EdgeKind,
}

/// Store failures are logged; the client gets a short message without internals.
pub(crate) fn internal(e: tributary_sql::Error) -> async_graphql::Error {
    tracing::error!(error = %e, "store query failed");
    async_graphql::Error::new("internal error reading the index store")
        .extend_with(|_, ext| ext.set("code", "INTERNAL"))
}

impl Loader<String> for Graph {
    type Value = Node;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[String]) -> Result<HashMap<String, Node>, Self::Error> {
        let nodes = self
            .store
            .nodes(self.chain_id, ids)
            .await
            .map_err(internal)?;
        Ok(nodes.into_iter().map(|n| (n.id.to_string(), n)).collect())
    }
}

impl Loader<At> for Graph {
    type Value = Vec<Edge>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[At]) -> Result<HashMap<At, Vec<Edge>>, Self::Error> {
        let mut groups: BTreeMap<(End, &str), (EdgeKind, Vec<String>)> = BTreeMap::new();
        for k in keys {
            groups
                .entry((k.end, k.kind.as_str()))
                .or_insert_with(|| (k.kind, Vec::new()))
                .1
                .push(k.id.clone());
        }
        let mut out: HashMap<At, Vec<Edge>> = keys.iter().map(|k| (k.clone(), vec![])).collect();
        for ((end, _), (kind, ids)) in groups {
            let edges = self
                .store
                .edges_at(self.chain_id, &ids, end, &[kind])
                .await
                .map_err(internal)?;
            for e in edges {
                let id = match end {
                    End::Src => e.src.to_string(),
                    End::Dst => e.dst.to_string(),
                };
                if let Some(list) = out.get_mut(&At { id, end, kind }) {
                    list.push(e);
                }
            }
        }
        // Oldest first, whatever order the database returned.
        for list in out.values_mut() {
            list.sort_by(|a, b| {
                (a.pos.block_number, a.pos.log_index, &a.src, &a.dst).cmp(&(
                    b.pos.block_number,
                    b.pos.log_index,
                    &b.src,
                    &b.dst,
                ))
            });
        }
        Ok(out)
    }
}

fn loader<'a>(ctx: &'a Context<'_>) -> &'a DataLoader<Graph> {
    ctx.data_unchecked::<DataLoader<Graph>>()
}

/// The store and chain behind the schema.
pub(crate) fn graph<'a>(ctx: &'a Context<'_>) -> &'a Graph {
    loader(ctx).loader()
}

/// Node `id`, if it exists.
pub(crate) async fn node(
    ctx: &Context<'_>,
    id: impl Into<String>,
) -> async_graphql::Result<Option<Node>> {
    loader(ctx).load_one(id.into()).await
}

/// The edges of `kind` whose `end` is node `id`, oldest first.
pub(crate) async fn edges(
    ctx: &Context<'_>,
    id: &str,
    end: End,
    kind: EdgeKind,
) -> async_graphql::Result<Vec<Edge>> {
    let key = At {
        id: id.to_string(),
        end,
        kind,
    };
    Ok(loader(ctx).load_one(key).await?.unwrap_or_default())
}

/// The nodes at the other end of the edges of `kind` whose `end` is node `id`, oldest edge
/// first.
pub(crate) async fn linked(
    ctx: &Context<'_>,
    id: &str,
    end: End,
    kind: EdgeKind,
) -> async_graphql::Result<Vec<Node>> {
    let others: Vec<String> = edges(ctx, id, end, kind)
        .await?
        .into_iter()
        .map(|e| match end {
            End::Src => e.dst.into(),
            End::Dst => e.src.into(),
        })
        .collect();
    let mut found = loader(ctx).load_many(others.iter().cloned()).await?;
    Ok(others.iter().filter_map(|id| found.remove(id)).collect())
}
