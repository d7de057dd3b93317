use async_graphql::connection::{Connection, Edge};
use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ErrorExtensions, Object, Schema, SimpleObject,
};
use async_graphql_axum::GraphQL;
use axum::Router;
use axum::routing::post_service;
use tributary_sql::{ContributionFilter, ContributionKey, ContributionRow, DatanetRow, Store};

/// The GraphQL schema.
pub type TributarySchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Most items one list returns.
const MAX_FIRST: u32 = 1000;

struct Ctx {
    store: Store,
    chain_id: u64,
}

/// Builds the schema over `store` for chain `chain_id`.
pub fn schema(store: Store, chain_id: u64) -> TributarySchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .data(Ctx { store, chain_id })
        .limit_depth(16)
        .limit_complexity(10_000)
        .finish()
}

/// `GET /graphql` serves GraphiQL (its scripts under `/graphql/assets/`), `POST /graphql`
/// answers queries.
pub fn router(schema: TributarySchema) -> Router {
    crate::graphiql::router(post_service(GraphQL::new(schema)))
}

/// Store failures are logged; the client gets a short message without internals.
fn internal(e: tributary_sql::Error) -> async_graphql::Error {
    tracing::error!(error = %e, "store query failed");
    async_graphql::Error::new("internal error reading the index store")
        .extend_with(|_, ext| ext.set("code", "INTERNAL"))
}

/// Root query.
pub struct Query;

#[Object]
impl Query {
    /// The chain this API indexes.
    async fn chain_id(&self, ctx: &Context<'_>) -> u64 {
        ctx.data_unchecked::<Ctx>().chain_id
    }

    /// All Datanets.
    async fn datanets(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Datanet>> {
        let c = ctx.data_unchecked::<Ctx>();
        Ok(c.store
            .datanets(c.chain_id)
            .await
            .map_err(internal)?
            .into_iter()
            .map(Datanet)
            .collect())
    }

    /// Contributions across Datanets, oldest first, as a Relay connection: `first` (at most
    /// 1000) after the cursor `after`, narrowed by Datanet, contributor and anchoring block
    /// range.
    #[allow(clippy::too_many_arguments)] // a resolver's arguments are the field's arguments
    async fn contributions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        datanet: Option<u64>,
        contributor: Option<String>,
        from_block: Option<u64>,
        to_block: Option<u64>,
    ) -> async_graphql::Result<Connection<String, Contribution>> {
        let filter = ContributionFilter {
            datanet,
            contributor,
            from_block,
            to_block,
        };
        contribution_page(ctx, filter, first, after).await
    }

    /// One Datanet by id or by name.
    async fn datanet(
        &self,
        ctx: &Context<'_>,
        id: Option<u64>,
        name: Option<String>,
    ) -> async_graphql::Result<Option<Datanet>> {
        if id.is_none() && name.is_none() {
            return Err("give `id` or `name`".into());
        }
        let c = ctx.data_unchecked::<Ctx>();
        let all = c.store.datanets(c.chain_id).await.map_err(internal)?;
        Ok(all
            .into_iter()
            .find(|d| {
                id.is_none_or(|i| d.id == i) && name.as_deref().is_none_or(|n| d.props["name"] == n)
            })
            .map(Datanet))
    }

    /// Everything upstream of node `id` (`kind:key`, e.g. `adapter:0x…`) within `depth` edges
    /// (at most 64): where it came from.
    async fn ancestry(
        &self,
        ctx: &Context<'_>,
        id: String,
        #[graphql(default = 6)] depth: u32,
    ) -> async_graphql::Result<Lineage> {
        let c = ctx.data_unchecked::<Ctx>();
        check_depth(depth)?;
        let up = c
            .store
            .ancestors(c.chain_id, &id, depth)
            .await
            .map_err(internal)?;
        Ok(Lineage::from(up))
    }

    /// Everything downstream of node `id` within `depth` edges (at most 64): what it went into.
    async fn descendants(
        &self,
        ctx: &Context<'_>,
        id: String,
        #[graphql(default = 6)] depth: u32,
    ) -> async_graphql::Result<Lineage> {
        let c = ctx.data_unchecked::<Ctx>();
        check_depth(depth)?;
        let down = c
            .store
            .descendants(c.chain_id, &id, depth)
            .await
            .map_err(internal)?;
        Ok(Lineage::from(down))
    }

    /// A shortest lineage path between two nodes (either may be upstream), as edges from
    /// `from` to `to`; null when none is within `maxDepth` (at most 64) edges.
    async fn path(
        &self,
        ctx: &Context<'_>,
        from: String,
        to: String,
        #[graphql(default = 16)] max_depth: u32,
    ) -> async_graphql::Result<Option<Vec<LineageEdge>>> {
        let c = ctx.data_unchecked::<Ctx>();
        check_depth(max_depth)?;
        let p = c
            .store
            .path(c.chain_id, &from, &to, max_depth)
            .await
            .map_err(internal)?;
        Ok(p.map(|edges| edges.into_iter().map(LineageEdge::from).collect()))
    }
}

fn check_depth(depth: u32) -> async_graphql::Result<()> {
    if depth > 64 {
        return Err(format!("depth {depth} is over the limit of 64").into());
    }
    Ok(())
}

/// Nodes and edges of a lineage walk.
#[derive(SimpleObject)]
pub(crate) struct Lineage {
    /// The start first, then in the order the walk found them.
    nodes: Vec<LineageNode>,
    /// The edges walked.
    edges: Vec<LineageEdge>,
}

impl From<tributary_sql::Subgraph> for Lineage {
    fn from(g: tributary_sql::Subgraph) -> Self {
        Self {
            nodes: g.nodes.into_iter().map(LineageNode::from).collect(),
            edges: g.edges.into_iter().map(LineageEdge::from).collect(),
        }
    }
}

/// A node of the lineage graph.
#[derive(SimpleObject)]
pub(crate) struct LineageNode {
    /// `kind:key`.
    id: String,
    /// Datanet, contributor, contribution, batch, adapter, inference, …
    kind: String,
    /// Properties from the chain event that made it.
    props: async_graphql::Json<serde_json::Value>,
    /// Block of that event.
    block: u64,
    /// Its transaction.
    tx_hash: String,
}

impl From<tributary_schemas::lineage::Node> for LineageNode {
    fn from(n: tributary_schemas::lineage::Node) -> Self {
        Self {
            id: n.id,
            kind: n.kind.as_str().to_string(),
            props: async_graphql::Json(n.props),
            block: n.pos.block_number,
            tx_hash: n.pos.tx_hash.to_string(),
        }
    }
}

/// An edge of the lineage graph, in its downstream direction.
#[derive(SimpleObject)]
pub(crate) struct LineageEdge {
    /// Source node id.
    src: String,
    /// Destination node id.
    dst: String,
    /// contributed, in, anchored_in, derived_from, attributed_to, …
    kind: String,
    /// Attribution share or reward amount, where the edge carries one.
    weight: Option<f64>,
    /// Block of the event that made it.
    block: u64,
}

impl From<tributary_schemas::lineage::Edge> for LineageEdge {
    fn from(e: tributary_schemas::lineage::Edge) -> Self {
        Self {
            src: e.src,
            dst: e.dst,
            kind: e.kind.as_str().to_string(),
            weight: e.weight,
            block: e.pos.block_number,
        }
    }
}

/// A Datanet: a community dataset in one domain.
pub(crate) struct Datanet(DatanetRow);

#[Object]
impl Datanet {
    /// On-chain id.
    async fn id(&self) -> u64 {
        self.0.id
    }
    /// Unique name.
    async fn name(&self) -> &str {
        self.0.props["name"].as_str().unwrap_or_default()
    }
    /// Domain.
    async fn domain(&self) -> &str {
        self.0.props["domain"].as_str().unwrap_or_default()
    }
    /// Owner address.
    async fn owner(&self) -> &str {
        self.0.props["owner"].as_str().unwrap_or_default()
    }
    /// Hash of the Datanet's canonical manifest.
    async fn schema_hash(&self) -> &str {
        self.0.props["schema_hash"].as_str().unwrap_or_default()
    }
    /// The creating transaction.
    async fn tx_hash(&self) -> String {
        self.0.pos.tx_hash.to_string()
    }
    /// The creating block.
    async fn block(&self) -> u64 {
        self.0.pos.block_number
    }
    /// This Datanet's contributions, oldest first, as a Relay connection: `first` (at most
    /// 1000) after the cursor `after`, narrowed by contributor and anchoring block range.
    async fn contributions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        contributor: Option<String>,
        from_block: Option<u64>,
        to_block: Option<u64>,
    ) -> async_graphql::Result<Connection<String, Contribution>> {
        let filter = ContributionFilter {
            datanet: Some(self.0.id),
            contributor,
            from_block,
            to_block,
        };
        contribution_page(ctx, filter, first, after).await
    }
}

/// One page of contributions matching `filter`; `first` + 1 rows are read to know whether
/// another page follows.
async fn contribution_page(
    ctx: &Context<'_>,
    filter: ContributionFilter,
    first: u32,
    after: Option<String>,
) -> async_graphql::Result<Connection<String, Contribution>> {
    if first > MAX_FIRST {
        return Err(format!("`first` is {first}; the most one page returns is {MAX_FIRST}").into());
    }
    if let Some(who) = &filter.contributor
        && !(who.len() == 42
            && who.starts_with("0x")
            && who[2..].bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(format!("`contributor` {who:?} is not a 0x-prefixed 20-byte address").into());
    }
    let after = after.as_deref().map(parse_cursor).transpose()?;
    let c = ctx.data_unchecked::<Ctx>();
    let mut rows = c
        .store
        .contributions(c.chain_id, &filter, after.as_ref(), first + 1)
        .await
        .map_err(internal)?;
    let more = rows.len() > first as usize;
    rows.truncate(first as usize);
    let mut page = Connection::new(after.is_some(), more);
    page.edges.extend(rows.into_iter().map(|r| {
        let k = r.key();
        Edge::new(
            format!("{}.{}.{}", k.block_number, k.log_index, k.id),
            Contribution::from(r),
        )
    }));
    Ok(page)
}

/// Reads a cursor this API handed out (`block.log_index.id`).
fn parse_cursor(cursor: &str) -> async_graphql::Result<ContributionKey> {
    let bad = || {
        async_graphql::Error::new(format!(
            "`after` {cursor:?} is not a cursor from this API: pass an `endCursor` or an edge's `cursor`"
        ))
    };
    let mut parts = cursor.splitn(3, '.');
    let (Some(block), Some(log), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    Ok(ContributionKey {
        block_number: block.parse().map_err(|_| bad())?,
        log_index: log.parse().map_err(|_| bad())?,
        id: id.to_string(),
    })
}

/// A signed contribution, anchored on chain.
#[derive(SimpleObject)]
pub(crate) struct Contribution {
    /// Contribution id (EIP-712 struct hash).
    id: String,
    /// The contributor (signer) address.
    contributor: String,
    /// keccak256 of the canonical content.
    content_hash: String,
    /// SPDX license.
    license: String,
    /// The batch it was anchored in.
    batch: String,
    /// The anchoring transaction.
    tx_hash: String,
    /// The anchoring block.
    block: u64,
}

impl From<ContributionRow> for Contribution {
    fn from(r: ContributionRow) -> Self {
        Self {
            id: r.id,
            contributor: r.contributor,
            content_hash: r.content_hash,
            license: r.license,
            batch: r.batch,
            tx_hash: r.pos.tx_hash.to_string(),
            block: r.pos.block_number,
        }
    }
}
