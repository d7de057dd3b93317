//! The GraphQL API: typed objects for every node kind of the lineage graph ([`objects`]),
//! lineage walks, Relay connections, subscriptions over WebSocket ([`live`]), and the limits
//! every request runs under.

mod documents;
mod factory;
mod jobs;
mod live;
mod load;
mod objects;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Object, Schema, ServerError, SimpleObject};
use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse, GraphQLSubscription};
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use tributary_schemas::lineage::{self as g, Node, NodeKind};
use tributary_sql::{
    ContributionFilter, ContributionKey, Direction, LineageIndex, NodeKey, PageRequest,
};

use load::{graph, internal};
use objects::{
    Adapter, Answer, Attribution, BaseModel, Batch, Contribution, ContributionStatus, Contributor,
    Datanet, Inference, RewardEpoch, Snapshot, TrainingRun,
};

pub use factory::{CheckedJob, Factory, LicenseCount, Mutation, SnapshotPreview, Writes};
pub use live::Subscription;

/// The GraphQL schema.
pub type TributarySchema = Schema<Query, Mutation, Subscription>;

/// Most items one list returns.
const MAX_FIRST: u32 = 1000;

/// Limits on each GraphQL request; depth (16) and complexity (10,000) are fixed in the
/// schema, `first` is at most 1000.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Answer introspection (`__schema`, `__type`): GraphiQL's docs and completion and code
    /// generators need it; a public deployment may turn it off.
    pub introspection: bool,
    /// Longest a request may run before it is answered with an error.
    pub timeout: Duration,
    /// Largest request body in bytes; larger ones get 413.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            introspection: true,
            timeout: Duration::from_secs(30),
            max_body_bytes: 256 * 1024,
        }
    }
}

/// Builds the schema over `store` for chain `chain_id`, with a lineage index of its own kept
/// in memory only; batch manifests (for Merkle proofs) are read from `lake` where one is given.
pub fn schema(
    store: tributary_sql::Store,
    lake: Option<tributary_lake::Lake>,
    chain_id: u64,
) -> TributarySchema {
    let index = LineageIndex::new(store, chain_id, None, REORG_WINDOW);
    schema_over(index, lake)
}

/// Query texts whose parsed documents the schema keeps.
const PARSED_QUERIES: usize = 1024;

/// Reorg window (blocks) of the lineage index [`schema`] makes: edges newer than this stay in
/// its overlay.
pub const REORG_WINDOW: u64 = 64;

/// Builds the schema over the store and chain of `index`, which answers the lineage walks.
/// It takes no writes: every mutation is refused.
pub fn schema_over(index: LineageIndex, lake: Option<tributary_lake::Lake>) -> TributarySchema {
    schema_with(index, lake, None)
}

/// [`schema_over`], taking the ModelFactory's writes (jobs made and started through the
/// mutations) from holders of `writes.token`.
pub fn schema_with(
    index: LineageIndex,
    lake: Option<tributary_lake::Lake>,
    writes: Option<Writes>,
) -> TributarySchema {
    let graph = load::Graph {
        store: index.store().clone(),
        chain_id: index.chain_id(),
        index,
    };
    let (graph, manifests) = objects::loaders(graph, lake);
    let mut builder = Schema::build(Query, Mutation, Subscription);
    if let Some(w) = writes {
        builder = builder.data(w);
    }
    builder
        .data(graph)
        .data(manifests)
        .data(live::Poll(Duration::from_millis(250)))
        .limit_depth(16)
        .limit_complexity(10_000)
        .finish()
}

/// `GET /graphql` serves GraphiQL (its scripts under `/graphql/assets/`), `POST /graphql`
/// answers queries (single or batched) under `limits`, and `/graphql/ws` serves
/// subscriptions over WebSocket (the `graphql-transport-ws` and `graphql-ws` protocols).
pub fn router(schema: TributarySchema, limits: &Limits) -> Router {
    let state = Handler {
        schema: schema.clone(),
        limits: Arc::new(limits.clone()),
        documents: Arc::new(documents::Documents::new(PARSED_QUERIES)),
    };
    let page = crate::graphiql::router(post(execute).with_state(state));
    page.layer(tower_http::limit::RequestBodyLimitLayer::new(
        limits.max_body_bytes,
    ))
    .route_service("/graphql/ws", GraphQLSubscription::new(schema))
}

/// What the `/graphql` handler holds.
#[derive(Clone)]
struct Handler {
    schema: TributarySchema,
    limits: Arc<Limits>,
    documents: Arc<documents::Documents>,
}

async fn execute(
    State(Handler {
        schema,
        limits,
        documents,
    }): State<Handler>,
    headers: axum::http::HeaderMap,
    request: GraphQLBatchRequest,
) -> GraphQLResponse {
    let mut request = request.into_inner();
    if !limits.introspection {
        request = request.disable_introspection();
    }
    let auth = factory::Authorization(headers.get(axum::http::header::AUTHORIZATION).cloned());
    for r in request.iter_mut() {
        documents.prepare(r);
        r.data.insert(auth.clone());
    }
    match tokio::time::timeout(limits.timeout, schema.execute_batch(request)).await {
        Ok(response) => response.into(),
        Err(_) => {
            let message = format!(
                "the query ran longer than the limit of {} s: ask for fewer items (`first`) or a smaller `depth`",
                limits.timeout.as_secs_f64()
            );
            async_graphql::Response::from_errors(vec![ServerError::new(message, None)]).into()
        }
    }
}

/// Root query.
pub struct Query;

/// `first`, `after` and `order` (none: oldest first) of a Relay connection.
pub(crate) struct PageArgs {
    pub(crate) first: u32,
    pub(crate) after: Option<String>,
    pub(crate) order: Option<Order>,
}

/// Which end of a list comes first: lists sort by where their items were made on chain
/// (block, log index, id), a contribution's by where it was anchored. A list's `order`
/// left out or null is oldest first.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq, Default)]
#[graphql(remote = "tributary_sql::Order")]
pub(crate) enum Order {
    /// Oldest first (the default).
    #[default]
    OldestFirst,
    /// Newest first.
    NewestFirst,
}

#[Object]
impl Query {
    /// The chain this API indexes.
    async fn chain_id(&self, ctx: &Context<'_>) -> u64 {
        graph(ctx).chain_id
    }

    /// Scheduled training jobs, by name, with their run history.
    async fn jobs(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<jobs::Job>> {
        let rows = graph(ctx).store.jobs().await.map_err(internal)?;
        Ok(rows.into_iter().map(jobs::Job).collect())
    }

    /// The training job `name`, if there is one.
    async fn job(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<Option<jobs::Job>> {
        let row = graph(ctx).store.job(&name).await.map_err(internal)?;
        Ok(row.map(jobs::Job))
    }

    /// Scheduler workers that swept the job store in the last `within_seconds` (each sweeps
    /// every few seconds, busy or not), latest first. None: nothing starts the runs asked for.
    async fn scheduler_workers(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 60)] within_seconds: u32,
    ) -> async_graphql::Result<Vec<jobs::SchedulerWorker>> {
        let since = jobs::now_ms() - i64::from(within_seconds) * 1000;
        let rows = graph(ctx)
            .store
            .workers_seen_since(since)
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(jobs::SchedulerWorker::from).collect())
    }

    /// What a job training on `datanets` (names or ids) would freeze now: contributions,
    /// contributors, licenses; with `use` (`commercial` or `research`), which licenses that
    /// use does not allow (a job for it is refused). Needs a server with its chain and lake.
    async fn snapshot_preview(
        &self,
        ctx: &Context<'_>,
        datanets: Vec<String>,
        #[graphql(name = "use")] usage: Option<String>,
    ) -> async_graphql::Result<SnapshotPreview> {
        factory::preview(ctx, &datanets, usage.as_deref()).await
    }

    /// Runs of every job (or of `job`), newest first.
    async fn job_runs(
        &self,
        ctx: &Context<'_>,
        job: Option<String>,
        #[graphql(default = 20)] first: u32,
    ) -> async_graphql::Result<Vec<jobs::JobRun>> {
        let rows = graph(ctx)
            .store
            .runs(job.as_deref(), u64::from(first.min(MAX_FIRST)))
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(jobs::JobRun::from).collect())
    }

    /// All Datanets.
    async fn datanets(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Datanet>> {
        let gr = graph(ctx);
        Ok(gr
            .store
            .datanets(gr.chain_id)
            .await
            .map_err(internal)?
            .into_iter()
            .map(Datanet)
            .collect())
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
        let gr = graph(ctx);
        let all = gr.store.datanets(gr.chain_id).await.map_err(internal)?;
        Ok(all
            .into_iter()
            .find(|d| {
                id.is_none_or(|i| d.id == i) && name.as_deref().is_none_or(|n| d.props["name"] == n)
            })
            .map(Datanet))
    }

    /// Contributions across Datanets, as a Relay connection (oldest first unless `order` says newest): `first` (at most
    /// 1000) after the cursor `after`, narrowed by Datanet, contributor, anchoring block
    /// range and status.
    #[allow(clippy::too_many_arguments)] // a resolver's arguments are the field's arguments
    async fn contributions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        order: Option<Order>,
        datanet: Option<u64>,
        contributor: Option<String>,
        from_block: Option<u64>,
        to_block: Option<u64>,
        status: Option<ContributionStatus>,
    ) -> async_graphql::Result<Connection<String, Contribution>> {
        let filter = ContributionFilter {
            datanet,
            contributor,
            from_block,
            to_block,
            revoked: status.map(|s| s == ContributionStatus::Revoked),
            ..ContributionFilter::default()
        };
        contribution_page(
            ctx,
            filter,
            PageArgs {
                first,
                after,
                order,
            },
        )
        .await
    }

    /// A contributor by address (whether or not anything of theirs is indexed).
    async fn contributor(&self, address: String) -> async_graphql::Result<Contributor> {
        check_address("address", &address)?;
        Ok(Contributor {
            address: address.to_lowercase(),
        })
    }

    /// One anchored batch by id.
    async fn batch(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Option<Batch>> {
        typed_node(ctx, NodeKind::Batch, &id).await
    }

    /// Anchored batches, as a Relay connection (oldest first unless `order` says newest), narrowed by block range.
    async fn batches(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        order: Option<Order>,
        from_block: Option<u64>,
        to_block: Option<u64>,
    ) -> async_graphql::Result<Connection<String, Batch>> {
        node_page(
            ctx,
            NodeKind::Batch,
            (from_block, to_block),
            PageArgs {
                first,
                after,
                order,
            },
        )
        .await
    }

    /// One snapshot by id.
    async fn snapshot(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<Snapshot>> {
        typed_node(ctx, NodeKind::Snapshot, &id).await
    }

    /// Snapshots, as a Relay connection (oldest first unless `order` says newest), narrowed by block range.
    async fn snapshots(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        order: Option<Order>,
        from_block: Option<u64>,
        to_block: Option<u64>,
    ) -> async_graphql::Result<Connection<String, Snapshot>> {
        node_page(
            ctx,
            NodeKind::Snapshot,
            (from_block, to_block),
            PageArgs {
                first,
                after,
                order,
            },
        )
        .await
    }

    /// The training run that produced adapter `id`.
    async fn training_run(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<TrainingRun>> {
        typed_node(ctx, NodeKind::TrainingRun, &id).await
    }

    /// One base model by id.
    async fn base_model(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<BaseModel>> {
        typed_node(ctx, NodeKind::BaseModel, &id).await
    }

    /// Base models, as a Relay connection (oldest first unless `order` says newest).
    async fn base_models(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        order: Option<Order>,
    ) -> async_graphql::Result<Connection<String, BaseModel>> {
        node_page(
            ctx,
            NodeKind::BaseModel,
            (None, None),
            PageArgs {
                first,
                after,
                order,
            },
        )
        .await
    }

    /// One adapter, by `id` or by `version` (`line@semver`, as published).
    async fn adapter(
        &self,
        ctx: &Context<'_>,
        id: Option<String>,
        version: Option<String>,
    ) -> async_graphql::Result<Option<Adapter>> {
        match (id, version) {
            (Some(id), None) => typed_node(ctx, NodeKind::Adapter, &id).await,
            (None, Some(v)) => {
                let Some((line, _)) = v.rsplit_once('@') else {
                    return Err(format!("`version` {v:?} is not `line@semver`").into());
                };
                let gr = graph(ctx);
                let found = gr
                    .store
                    .adapters_in_line(gr.chain_id, line)
                    .await
                    .map_err(internal)?;
                Ok(found
                    .into_iter()
                    .find(|n| n.props["version"] == v.as_str())
                    .map(Adapter::from))
            }
            _ => Err("give one of `id` or `version`".into()),
        }
    }

    /// Adapters, as a Relay connection (oldest first unless `order` says newest), narrowed by block range.
    async fn adapters(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        order: Option<Order>,
        from_block: Option<u64>,
        to_block: Option<u64>,
    ) -> async_graphql::Result<Connection<String, Adapter>> {
        node_page(
            ctx,
            NodeKind::Adapter,
            (from_block, to_block),
            PageArgs {
                first,
                after,
                order,
            },
        )
        .await
    }

    /// One recorded inference batch by id.
    async fn inference(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<Inference>> {
        typed_node(ctx, NodeKind::Inference, &id).await
    }

    /// One served answer by id (the `inference.id` its response carried), once the batch
    /// that recorded it is indexed.
    async fn answer(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Option<Answer>> {
        typed_node(ctx, NodeKind::Answer, &id).await
    }

    /// Recorded inference batches, as a Relay connection (oldest first unless `order` says newest), narrowed by block
    /// range.
    async fn inferences(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        order: Option<Order>,
        from_block: Option<u64>,
        to_block: Option<u64>,
    ) -> async_graphql::Result<Connection<String, Inference>> {
        node_page(
            ctx,
            NodeKind::Inference,
            (from_block, to_block),
            PageArgs {
                first,
                after,
                order,
            },
        )
        .await
    }

    /// One reward epoch.
    async fn reward_epoch(
        &self,
        ctx: &Context<'_>,
        epoch: u64,
    ) -> async_graphql::Result<Option<RewardEpoch>> {
        objects::one(ctx, g::reward_epoch_id(epoch), NodeKind::RewardEpoch).await
    }

    /// Reward epochs, as a Relay connection (oldest first unless `order` says newest).
    async fn reward_epochs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        order: Option<Order>,
    ) -> async_graphql::Result<Connection<String, RewardEpoch>> {
        node_page(
            ctx,
            NodeKind::RewardEpoch,
            (None, None),
            PageArgs {
                first,
                after,
                order,
            },
        )
        .await
    }

    /// How the credit for `subject` (a node id: `answer:0x…`, `adapter:0x…`,
    /// `inference:0x…`, …) divides among contributors and contributions.
    async fn attribution(
        &self,
        ctx: &Context<'_>,
        subject: String,
    ) -> async_graphql::Result<Attribution> {
        if NodeKind::of_id(&subject).is_none() {
            return Err(format!(
                "`subject` {subject:?} is not a node id: give `kind:key`, e.g. `inference:0x…`"
            )
            .into());
        }
        objects::attribution(ctx, &subject).await
    }

    /// One contribution by id (`0x…`, with or without `contribution:`).
    async fn contribution(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<Contribution>> {
        let key = NodeKind::Contribution.key_of(&id).unwrap_or(&id);
        let filter = ContributionFilter {
            id: Some(key.to_string()),
            ..ContributionFilter::default()
        };
        let gr = graph(ctx);
        let rows = gr
            .store
            .contributions(gr.chain_id, &filter, (None, Default::default()), 1)
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().next().map(Contribution::from))
    }

    /// What node `id` (`kind:key`, e.g. `answer:0x…`) came from, within `depth` edges (at most
    /// 64), breadth-first: a page of `first` nodes (at most 1000) after the cursor `after`,
    /// only of `kinds` where given, with a summary of the whole walk.
    #[graphql(complexity = "(first as usize).max(1) * child_complexity")]
    #[allow(clippy::too_many_arguments)] // a resolver's arguments are the field's arguments
    async fn ancestry(
        &self,
        ctx: &Context<'_>,
        id: String,
        #[graphql(default = 6)] depth: u32,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        kinds: Option<Vec<String>>,
    ) -> async_graphql::Result<LineagePage> {
        lineage_page(ctx, (id, depth, Direction::Up), first, after, kinds).await
    }

    /// What node `id` went into, within `depth` edges (at most 64): paged and summarised as
    /// `ancestry` is.
    #[graphql(complexity = "(first as usize).max(1) * child_complexity")]
    #[allow(clippy::too_many_arguments)] // a resolver's arguments are the field's arguments
    async fn descendants(
        &self,
        ctx: &Context<'_>,
        id: String,
        #[graphql(default = 6)] depth: u32,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        kinds: Option<Vec<String>>,
    ) -> async_graphql::Result<LineagePage> {
        lineage_page(ctx, (id, depth, Direction::Down), first, after, kinds).await
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
        check_depth(max_depth)?;
        let p = graph(ctx)
            .index
            .path(&from, &to, max_depth)
            .await
            .map_err(internal)?;
        Ok(p.map(|edges| edges.into_iter().map(LineageEdge::from).collect()))
    }
}

/// A page of a lineage walk from the index.
async fn lineage_page(
    ctx: &Context<'_>,
    (id, depth, dir): (String, u32, Direction),
    first: u32,
    after: Option<String>,
    kinds: Option<Vec<String>>,
) -> async_graphql::Result<LineagePage> {
    check_depth(depth)?;
    check_first(first)?;
    let kinds = kinds
        .map(|ks| {
            ks.iter()
                .map(|k| {
                    NodeKind::ALL
                        .into_iter()
                        .find(|n| n.as_str() == k)
                        .ok_or_else(|| {
                            let all: Vec<_> = NodeKind::ALL.iter().map(|n| n.as_str()).collect();
                            format!("`kinds`: {k:?} is not a node kind; use {}", all.join(", "))
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    // The whole walk only when the answer needs it (the edges, the totals); a page of nodes
    // stops the walk once it is found.
    let ahead = ctx.look_ahead();
    let whole = ["edges", "totalCount", "edgeCount", "summary"]
        .iter()
        .any(|f| ahead.field(f).exists());
    let edges = ahead.field("edges").exists() || ahead.field("nodes").field("via").exists();
    let top = if ahead.field("summary").field("topContributors").exists() {
        TOP_CONTRIBUTORS
    } else {
        0
    };
    let req = PageRequest {
        first: first as usize,
        after,
        kinds,
        whole,
        top_contributors: top,
        edges,
    };
    let page = graph(ctx)
        .index
        .walk(&id, depth, dir, &req)
        .await
        .map_err(|e| match e {
            tributary_sql::Error::Request(why) => async_graphql::Error::new(why),
            e => internal(e),
        })?;
    Ok(LineagePage::from(page))
}

/// Contributors a lineage summary names at most.
const TOP_CONTRIBUTORS: usize = 100;

/// Node `kind:id` as a `T` (`id` with or without its `kind:` prefix).
async fn typed_node<T: From<Node>>(
    ctx: &Context<'_>,
    kind: NodeKind,
    id: &str,
) -> async_graphql::Result<Option<T>> {
    let prefix = format!("{}:", kind.as_str());
    let full = if id.starts_with(&prefix) {
        id.to_lowercase()
    } else {
        format!("{prefix}{}", id.to_lowercase())
    };
    objects::one(ctx, full, kind).await
}

/// One page of the nodes of `kind` made in `blocks`, as a Relay connection with cursors
/// `block.log_index.node_id`.
async fn node_page<T: From<Node> + async_graphql::OutputType>(
    ctx: &Context<'_>,
    kind: NodeKind,
    blocks: (Option<u64>, Option<u64>),
    PageArgs {
        first,
        after,
        order,
    }: PageArgs,
) -> async_graphql::Result<Connection<String, T>> {
    check_first(first)?;
    let after = after
        .as_deref()
        .map(|c| {
            parse_cursor(c).map(|(block_number, log_index, id)| NodeKey {
                block_number,
                log_index,
                id,
            })
        })
        .transpose()?;
    let gr = graph(ctx);
    let mut nodes = gr
        .store
        .nodes_of_kind(
            gr.chain_id,
            kind,
            blocks,
            (after.as_ref(), order.unwrap_or_default().into()),
            first + 1,
        )
        .await
        .map_err(internal)?;
    let more = nodes.len() > first as usize;
    nodes.truncate(first as usize);
    let mut page = Connection::new(after.is_some(), more);
    page.edges.extend(nodes.into_iter().map(|n| {
        let cursor = format!("{}.{}.{}", n.pos.block_number, n.pos.log_index, n.id);
        Edge::new(cursor, T::from(n))
    }));
    Ok(page)
}

fn check_first(first: u32) -> async_graphql::Result<()> {
    if first > MAX_FIRST {
        return Err(format!("`first` is {first}; the most one page returns is {MAX_FIRST}").into());
    }
    Ok(())
}

fn check_address(what: &str, a: &str) -> async_graphql::Result<()> {
    if a.len() == 42 && a.starts_with("0x") && a[2..].bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("`{what}` {a:?} is not a 0x-prefixed 20-byte address").into())
    }
}

fn check_depth(depth: u32) -> async_graphql::Result<()> {
    if depth > 64 {
        return Err(format!("depth {depth} is over the limit of 64").into());
    }
    Ok(())
}

/// A page of a lineage walk, and a summary of the whole walk.
#[derive(SimpleObject)]
pub(crate) struct LineagePage {
    /// The index store operation (`index_ops.seq`) this answer reflects.
    seq: u64,
    /// This page's nodes in walk order (breadth-first; the start first on the first page).
    nodes: LineageNodes,
    /// The walked edges that reached this page's nodes: over all pages, every edge once.
    edges: Vec<LineageEdge>,
    /// Whether more nodes follow, and the cursor to pass as `after` for them.
    page_info: LineagePageInfo,
    /// Nodes in the whole walk (of the requested `kinds`).
    total_count: u64,
    /// Edges in the whole walk.
    edge_count: u64,
    /// The whole walk at a glance.
    summary: LineageSummary,
}

/// Where a lineage page ends.
#[derive(SimpleObject)]
pub(crate) struct LineagePageInfo {
    /// More nodes follow.
    has_next_page: bool,
    /// The last node's id: pass it as `after` for the next page.
    end_cursor: Option<String>,
}

/// A lineage walk in numbers.
#[derive(SimpleObject)]
pub(crate) struct LineageSummary {
    /// Nodes by kind, every kind present.
    by_kind: Vec<KindCount>,
    /// The contributors whose contributions the walk reaches, most contributions first (at
    /// most 100); `share` is of all the contributions it reaches.
    top_contributors: Vec<objects::ContributorShare>,
}

/// How many nodes of one kind.
#[derive(SimpleObject)]
pub(crate) struct KindCount {
    /// Node kind.
    kind: String,
    /// Nodes of it.
    count: u64,
}

impl From<tributary_sql::Page> for LineagePage {
    fn from(p: tributary_sql::Page) -> Self {
        let edges: Vec<LineageEdge> = p.edges.into_iter().map(LineageEdge::from).collect();
        let nodes = p
            .nodes
            .into_iter()
            .map(|n| LineageNode {
                id: n.id,
                kind: n.kind.as_str(),
                depth: n.depth,
                via: n.via.map(|i| edges[i].clone()),
                block: n.block,
            })
            .collect::<Vec<_>>();
        // Asked for only when the walk was whole (see `lineage_page`).
        let s = p.summary.unwrap_or(tributary_sql::WalkSummary {
            total: 0,
            total_edges: 0,
            by_kind: vec![],
            contributors: vec![],
        });
        Self {
            seq: p.seq,
            page_info: LineagePageInfo {
                has_next_page: p.has_next,
                end_cursor: nodes.last().map(|n| n.id.to_string()),
            },
            nodes: LineageNodes(nodes),
            edges,
            total_count: s.total as u64,
            edge_count: s.total_edges as u64,
            summary: LineageSummary {
                by_kind: s
                    .by_kind
                    .into_iter()
                    .map(|(k, n)| KindCount {
                        kind: k.as_str().to_string(),
                        count: n as u64,
                    })
                    .collect(),
                top_contributors: s
                    .contributors
                    .into_iter()
                    .map(objects::ContributorShare::from)
                    .collect(),
            },
        }
    }
}

/// A node of a lineage walk.
#[derive(SimpleObject)]
#[graphql(complex)]
pub(crate) struct LineageNode {
    /// `kind:key`.
    id: Arc<str>,
    /// Datanet, contributor, contribution, batch, adapter, inference, …
    kind: &'static str,
    /// Edges from the start (0 for the start).
    depth: u32,
    /// The edge that first reached it (null for the start).
    via: Option<LineageEdge>,
    /// Block of the event that made it.
    block: u64,
}

/// A page's nodes, `[LineageNode!]!` in the schema. When the query selects only their plain
/// fields (`id`, `kind`, `depth`, `block`, `__typename`; no fragments, no directives) they are
/// written straight into the answer: async-graphql would resolve each node as an object of
/// its own (a future and a field map per node), nearly half of a page's serving time. Any
/// other selection is resolved the usual way.
pub(crate) struct LineageNodes(Vec<LineageNode>);

/// A field of [`LineageNode`] written without resolving the node.
#[derive(Clone, Copy)]
enum PlainField {
    Id,
    Kind,
    Depth,
    Block,
    Typename,
}

/// The response keys and fields of `selection`, when it holds only plain fields.
fn plain_fields(
    selection: &async_graphql::Positioned<async_graphql::parser::types::SelectionSet>,
) -> Option<Vec<(async_graphql::Name, PlainField)>> {
    use async_graphql::parser::types::Selection;
    selection
        .node
        .items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(f) if f.node.directives.is_empty() && f.node.arguments.is_empty() => {
                let field = match f.node.name.node.as_str() {
                    "id" => PlainField::Id,
                    "kind" => PlainField::Kind,
                    "depth" => PlainField::Depth,
                    "block" => PlainField::Block,
                    "__typename" => PlainField::Typename,
                    _ => return None,
                };
                Some((f.node.response_key().node.clone(), field))
            }
            _ => None,
        })
        .collect()
}

impl async_graphql::OutputType for LineageNodes {
    fn type_name() -> std::borrow::Cow<'static, str> {
        <Vec<LineageNode> as async_graphql::OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<LineageNode> as async_graphql::OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
        <Vec<LineageNode> as async_graphql::OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &async_graphql::ContextSelectionSet<'_>,
        field: &async_graphql::Positioned<async_graphql::parser::types::Field>,
    ) -> async_graphql::ServerResult<async_graphql::Value> {
        use async_graphql::Value;
        let Some(fields) = plain_fields(ctx.item) else {
            let nodes = self.0.iter();
            return async_graphql::resolver_utils::resolve_list(
                ctx,
                field,
                nodes,
                Some(self.0.len()),
            )
            .await;
        };
        let node = |n: &LineageNode| {
            let values = fields.iter().map(|(key, f)| {
                let value = match f {
                    PlainField::Id => Value::String(n.id.to_string()),
                    PlainField::Kind => Value::String(n.kind.to_string()),
                    PlainField::Depth => Value::Number(n.depth.into()),
                    PlainField::Block => Value::Number(n.block.into()),
                    PlainField::Typename => Value::String(LineageNode::type_name().into_owned()),
                };
                (key.clone(), value)
            });
            Value::Object(values.collect())
        };
        Ok(Value::List(self.0.iter().map(node).collect()))
    }
}

#[async_graphql::ComplexObject]
impl LineageNode {
    /// Properties from the chain event that made it.
    async fn props(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<async_graphql::Json<serde_json::Value>> {
        let n = load::node(ctx, self.id.to_string()).await?;
        Ok(async_graphql::Json(n.map(|n| n.props).unwrap_or_default()))
    }
    /// Its transaction.
    async fn tx_hash(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let n = load::node(ctx, self.id.to_string()).await?;
        Ok(n.map(|n| n.pos.tx_hash.to_string()))
    }
}

/// An edge of the lineage graph, in its downstream direction.
#[derive(SimpleObject, Clone)]
pub(crate) struct LineageEdge {
    /// Source node id.
    src: Arc<str>,
    /// Destination node id.
    dst: Arc<str>,
    /// contributed, in, anchored_in, derived_from, attributed_to, …
    kind: &'static str,
    /// Attribution share or reward amount, where the edge carries one.
    weight: Option<f64>,
    /// Block of the event that made it.
    block: u64,
}

impl From<tributary_sql::WalkEdge> for LineageEdge {
    fn from(e: tributary_sql::WalkEdge) -> Self {
        Self {
            src: e.src,
            dst: e.dst,
            kind: e.kind.as_str(),
            weight: e.weight,
            block: e.block,
        }
    }
}

/// One page of contributions matching `filter`; `first` + 1 rows are read to know whether
/// another page follows.
pub(crate) async fn contribution_page(
    ctx: &Context<'_>,
    filter: ContributionFilter,
    PageArgs {
        first,
        after,
        order,
    }: PageArgs,
) -> async_graphql::Result<Connection<String, Contribution>> {
    check_first(first)?;
    if let Some(who) = &filter.contributor {
        check_address("contributor", who)?;
    }
    let after = after
        .as_deref()
        .map(|c| {
            parse_cursor(c).map(|(block_number, log_index, id)| ContributionKey {
                block_number,
                log_index,
                id,
            })
        })
        .transpose()?;
    let gr = graph(ctx);
    let mut rows = gr
        .store
        .contributions(
            gr.chain_id,
            &filter,
            (after.as_ref(), order.unwrap_or_default().into()),
            first + 1,
        )
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
fn parse_cursor(cursor: &str) -> async_graphql::Result<(u64, u64, String)> {
    let bad = || {
        async_graphql::Error::new(format!(
            "`after` {cursor:?} is not a cursor from this API: pass an `endCursor` or an edge's `cursor`"
        ))
    };
    let mut parts = cursor.splitn(3, '.');
    let (Some(block), Some(log), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    Ok((
        block.parse().map_err(|_| bad())?,
        log.parse().map_err(|_| bad())?,
        id.to_string(),
    ))
}
