use async_graphql::http::GraphiQLSource;
use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ErrorExtensions, Object, Schema, SimpleObject,
};
use async_graphql_axum::GraphQL;
use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use tributary_sql::{ContributionRow, DatanetRow, Store};

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

/// `GET /graphql` serves GraphiQL, `POST /graphql` answers queries.
pub fn router(schema: TributarySchema) -> Router {
    Router::new().route("/graphql", get(graphiql).post_service(GraphQL::new(schema)))
}

async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
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
    /// Contributions, oldest first; `first` at most 1000.
    async fn contributions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
    ) -> async_graphql::Result<Vec<Contribution>> {
        if first > MAX_FIRST {
            return Err(
                format!("`first` is {first}; the most one page returns is {MAX_FIRST}").into(),
            );
        }
        let c = ctx.data_unchecked::<Ctx>();
        let rows = c
            .store
            .datanet_contributions(c.chain_id, self.0.id, first)
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(Contribution::from).collect())
    }
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
