//! The typed objects of the graph: every node kind the indexer builds, with its properties
//! from the chain event that made it and its relations as fields. Relations are read through
//! the loaders in [`super::load`], so a list of objects asking for the same relation costs one
//! store query per level of the query, not one per object.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use alloy::primitives::B256;
use async_graphql::connection::Connection;
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{
    ComplexObject, Context, Enum, InputValueError, InputValueResult, Object, Scalar, ScalarType,
    SimpleObject, Value,
};
use futures::future::try_join_all;
use tributary_schemas::lineage::{self as g, Edge, EdgeKind, Node, NodeKind, prop};
use tributary_schemas::manifest::{AdapterManifest, AdapterRecord, BatchManifest};
use tributary_schemas::merkle::{MerkleTree, leaf_bytes32, verify};
use tributary_sql::{ContributionFilter, ContributionRow, DatanetRow, End};

use super::load::{self, edges, graph, internal, linked, node};
use super::{Order, PageArgs, contribution_page};

/// `props[key]` as text ("" when absent).
fn text<'a>(n: &'a Node, key: &str) -> &'a str {
    n.props[key].as_str().unwrap_or_default()
}

/// `props[key]` as a number (0 when absent).
fn number(n: &Node, key: &str) -> u64 {
    n.props[key].as_u64().unwrap_or_default()
}

/// The node id without its `kind:` prefix: the id on chain.
fn key(n: &Node) -> &str {
    n.id.split_once(':').map_or(n.id.as_str(), |(_, k)| k)
}

/// `#[Object] impl T { … }` for a `T(Node)`, with the fields every such object has appended:
/// the node id, transaction and block of the event that made it.
macro_rules! node_object {
    (impl $t:ident { $($body:tt)* }) => {
        #[Object]
        impl $t {
            $($body)*
            /// The node id in the lineage graph (`kind:key`), for `ancestry`, `descendants`
            /// and `path`.
            async fn node_id(&self) -> &str {
                &self.0.id
            }
            /// The transaction of the event that made it.
            async fn tx_hash(&self) -> String {
                self.0.pos.tx_hash.to_string()
            }
            /// The block of that event.
            async fn block(&self) -> u64 {
                self.0.pos.block_number
            }
        }
    };
}

/// What the check of a node's manifest found (`da` in its props): `verified`, `unreachable`
/// (checked again), or `missing`, `mismatch`, `unsigned` (flagged); for a node indexed before
/// `da` was kept, `verified` or `mismatch` by its `verified` prop.
fn availability(n: &Node) -> &str {
    n.props[prop::DA].as_str().unwrap_or_else(|| {
        if n.props[prop::VERIFIED].as_bool().unwrap_or(false) {
            "verified"
        } else {
            "mismatch"
        }
    })
}

/// Wraps the nodes of `kind` among `nodes` as `T`.
fn typed<T: From<Node>>(nodes: Vec<Node>, kind: NodeKind) -> Vec<T> {
    nodes
        .into_iter()
        .filter(|n| n.kind == kind)
        .map(T::from)
        .collect()
}

/// Node `id` as a `T`, if it exists and is of `kind`.
pub(crate) async fn one<T: From<Node>>(
    ctx: &Context<'_>,
    id: impl Into<String>,
    kind: NodeKind,
) -> async_graphql::Result<Option<T>> {
    Ok(node(ctx, id).await?.filter(|n| n.kind == kind).map(T::from))
}

macro_rules! from_node {
    ($($t:ident),*) => {$(
        impl From<Node> for $t {
            fn from(n: Node) -> Self {
                Self(n)
            }
        }
    )*};
}
from_node!(
    Batch,
    Validation,
    Snapshot,
    TrainingRun,
    BaseModel,
    Adapter,
    Inference,
    Answer,
    RewardEpoch
);

/// A Datanet: a community dataset in one domain.
pub(crate) struct Datanet(pub(crate) DatanetRow);

impl Datanet {
    fn of(n: Node) -> Option<Self> {
        let id = NodeKind::Datanet.key_of(&n.id)?.parse().ok()?;
        Some(Self(DatanetRow {
            id,
            props: n.props,
            pos: n.pos,
        }))
    }
}

/// Datanet `id`, if indexed.
async fn datanet(ctx: &Context<'_>, id: u64) -> async_graphql::Result<Option<Datanet>> {
    Ok(node(ctx, g::datanet_id(id)).await?.and_then(Datanet::of))
}

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
    /// Its manifest, the rules contributions must meet (fields, licenses, size, deduplication,
    /// who may submit and validate), as canonical JSON: read from the lake at the Datanet's
    /// key (`artifacts/datanets/NAME.json`, never a location the chain names) and checked to
    /// hash to the schema hash registered on chain. An error says when the lake lacks it or it
    /// was altered.
    async fn manifest(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let manifests = ctx.data_unchecked::<DataLoader<Manifests>>();
        let Some(lake) = &manifests.loader().0 else {
            return Err("this server has no lake to read Datanet manifests from".into());
        };
        let name = self.0.props["name"].as_str().unwrap_or_default();
        let key = tributary_schemas::datanet::DatanetManifest::key(name);
        let bytes = lake.get(&key).await.map_err(|e| {
            tracing::warn!(%key, error = %e, "Datanet manifest unavailable");
            format!("the lake holds no manifest for Datanet {name:?} at {key}")
        })?;
        let registered = self.0.props["schema_hash"].as_str().unwrap_or_default();
        if !alloy::primitives::keccak256(&bytes)
            .to_string()
            .eq_ignore_ascii_case(registered)
        {
            return Err(format!(
                "the manifest of Datanet {name:?} in the lake does not hash to its schema hash on chain: it was altered"
            )
            .into());
        }
        Ok(String::from_utf8(bytes).map_err(|_| "the manifest is not UTF-8 text")?)
    }
    /// This Datanet's contributions, as a Relay connection (oldest first unless `order` says newest): `first` (at most
    /// 1000) after the cursor `after`, narrowed by contributor, anchoring block range and
    /// status.
    #[allow(clippy::too_many_arguments)] // a resolver's arguments are the field's arguments
    async fn contributions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        order: Option<Order>,
        contributor: Option<String>,
        from_block: Option<u64>,
        to_block: Option<u64>,
        status: Option<ContributionStatus>,
    ) -> async_graphql::Result<Connection<String, Contribution>> {
        let filter = ContributionFilter {
            datanet: Some(self.0.id),
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
}

/// Whether a contribution still counts.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContributionStatus {
    /// Anchored on chain and not revoked.
    Anchored,
    /// Revoked by its contributor or the Datanet: left out of snapshots and rewards from then
    /// on.
    Revoked,
}

/// A signed contribution, anchored on chain.
#[derive(SimpleObject)]
#[graphql(complex)]
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

/// A proof that a contribution is in its batch's Merkle root on chain (OpenZeppelin's
/// sorted-pair tree, so `MerkleProof.verify` on chain accepts it).
#[derive(SimpleObject)]
pub(crate) struct MerkleProof {
    /// The batch's root as anchored on chain.
    root: String,
    /// The leaf: `keccak256(keccak256(contribution id))`.
    leaf: String,
    /// Sibling hashes from the leaf up.
    proof: Vec<String>,
    /// Whether the proof leads from the leaf to the on-chain root (checked here).
    valid: bool,
}

#[ComplexObject]
impl Contribution {
    /// The node id in the lineage graph (`contribution:0x…`).
    async fn node_id(&self) -> String {
        NodeKind::Contribution.id(&self.id).into()
    }
    /// The contributor, with their other contributions, influence and rewards.
    async fn by(&self) -> Contributor {
        Contributor {
            address: self.contributor.clone(),
        }
    }
    /// The Datanet it belongs to.
    async fn datanet(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Datanet>> {
        let ds = linked(
            ctx,
            &NodeKind::Contribution.id(&self.id),
            End::Src,
            EdgeKind::In,
        )
        .await?;
        Ok(ds.into_iter().find_map(Datanet::of))
    }
    /// Anchored (counts) or revoked.
    async fn status(&self, ctx: &Context<'_>) -> async_graphql::Result<ContributionStatus> {
        let id = NodeKind::Contribution.id(&self.id);
        let revoked = !edges(ctx, &id, End::Dst, EdgeKind::Revokes)
            .await?
            .is_empty();
        Ok(if revoked {
            ContributionStatus::Revoked
        } else {
            ContributionStatus::Anchored
        })
    }
    /// The anchoring batch.
    async fn anchor(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Batch>> {
        one(ctx, NodeKind::Batch.id(&self.batch), NodeKind::Batch).await
    }
    /// The proof of inclusion in the anchoring batch's Merkle root, from the batch manifest
    /// in the lake.
    async fn merkle_proof(&self, ctx: &Context<'_>) -> async_graphql::Result<MerkleProof> {
        let Some(batch) = node(ctx, NodeKind::Batch.id(&self.batch)).await? else {
            return Err("the anchoring batch is not indexed".into());
        };
        let manifests = ctx.data_unchecked::<DataLoader<Manifests>>();
        let mut uri = text(&batch, prop::MANIFEST_URI).to_string();
        // Recorded as a key; older lakes recorded absolute URIs, which lead nowhere once the
        // lake moves: then the manifest is at its canonical key.
        if let (Some(lake), Ok(batch_id)) = (&manifests.loader().0, self.batch.parse::<B256>()) {
            uri = lake.locate(&uri, &BatchManifest::key(batch_id));
        }
        let tree = manifests
            .load_one(uri)
            .await?
            .ok_or("the batch manifest is not in the lake")?;
        let id: B256 = self
            .id
            .parse()
            .map_err(|_| "contribution id is not a hash")?;
        let leaf = leaf_bytes32(id);
        let proof = tree
            .proof(&leaf)
            .ok_or("the batch manifest does not list this contribution")?;
        let root: B256 = text(&batch, "merkle_root").parse().unwrap_or_default();
        Ok(MerkleProof {
            valid: verify(&proof, root, leaf),
            root: root.to_string(),
            leaf: leaf.to_string(),
            proof: proof.iter().map(|p| p.to_string()).collect(),
        })
    }
}

/// Batch manifests read from the lake by URI, as Merkle trees; one read per manifest per
/// query however many of its contributions ask.
pub(crate) struct Manifests(pub(crate) Option<tributary_lake::Lake>);

impl Loader<String> for Manifests {
    type Value = Arc<MerkleTree>;
    type Error = async_graphql::Error;

    async fn load(&self, uris: &[String]) -> Result<HashMap<String, Arc<MerkleTree>>, Self::Error> {
        let Some(lake) = &self.0 else {
            return Err("this server has no lake to read batch manifests from".into());
        };
        let mut out = HashMap::new();
        for uri in uris {
            let bytes = match lake.get(uri).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(%uri, error = %e, "batch manifest unavailable");
                    continue;
                }
            };
            let m: BatchManifest = serde_json::from_slice(&bytes).map_err(|e| {
                tracing::error!(%uri, error = %e, "batch manifest does not parse");
                async_graphql::Error::new("a batch manifest in the lake does not parse")
            })?;
            out.insert(uri.clone(), Arc::new(m.merkle_tree()));
        }
        Ok(out)
    }
}

/// Someone who contributed data.
pub(crate) struct Contributor {
    /// `0x…`, lowercase.
    pub(crate) address: String,
}

/// An amount of tokens in integer units (18 decimals), as a decimal string: exact at any
/// size, where a JSON number is exact only up to 2^53.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenAmount(String);

impl TokenAmount {
    /// `s` when it is a non-negative integer in decimal.
    fn of(s: &str) -> Option<Self> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| Self(s.to_string()))
    }
}

#[Scalar]
impl ScalarType for TokenAmount {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => TokenAmount::of(s).ok_or_else(|| {
                InputValueError::custom("an amount is a non-negative integer in decimal digits")
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// `props[key]` as an amount (`None` when absent or not a decimal integer).
fn amount(props: &serde_json::Value, key: &str) -> Option<TokenAmount> {
    props[key].as_str().and_then(TokenAmount::of)
}

/// A reward paid to a contributor in one epoch.
#[derive(SimpleObject)]
pub(crate) struct RewardAllocation {
    /// The epoch.
    epoch: u64,
    /// The contributor's address.
    contributor: String,
    /// What the epoch credits them, in token units: the leaf of the epoch's Merkle tree, what
    /// they can claim. Null only for an epoch indexed before amounts were kept exactly
    /// (re-index to fill it).
    amount: Option<TokenAmount>,
    /// Their share of the epoch's total (a float, for display).
    share: f64,
    /// The block that settled the epoch.
    block: u64,
    /// Their claim of it (`Claimed`), whoever sent it; null while it is still to claim (or,
    /// in a store indexed before claims were kept, until it is indexed again).
    claim: Option<Claim>,
}

/// A reward claimed on chain: the whole amount of the account's leaf went to the account.
#[derive(SimpleObject)]
pub(crate) struct Claim {
    /// The block of the claim.
    block: u64,
    /// Its transaction.
    tx_hash: String,
}

impl RewardAllocation {
    /// The allocation a `rewarded` edge records, with the amount from its epoch's node and
    /// the claim among `claims` (`claimed` edges by account and epoch, see [`Self::claims`])
    /// made by the same account of the same epoch.
    fn of(epoch: &Node, e: &Edge, claims: &HashMap<(&str, &str), &Edge>) -> Self {
        let contributor = e.dst.key().to_string();
        let claim = claims
            .get(&(e.dst.as_str(), e.src.as_str()))
            .map(|c| Claim {
                block: c.pos.block_number,
                tx_hash: c.pos.tx_hash.to_string(),
            });
        Self {
            epoch: key(epoch).parse().unwrap_or_default(),
            amount: amount(&epoch.props[prop::AMOUNTS], &contributor),
            contributor,
            share: e.weight.unwrap_or_default(),
            block: e.pos.block_number,
            claim,
        }
    }

    /// `claimed` edges by (account, epoch): one lookup per allocation, however many an
    /// epoch pays.
    fn claims(claims: &[Edge]) -> HashMap<(&str, &str), &Edge> {
        claims
            .iter()
            .map(|c| ((c.src.as_str(), c.dst.as_str()), c))
            .collect()
    }
}

#[Object]
impl Contributor {
    /// The address (`0x…`, lowercase).
    async fn address(&self) -> &str {
        &self.address
    }
    /// The node id in the lineage graph (`contributor:0x…`).
    async fn node_id(&self) -> String {
        NodeKind::Contributor.id(&self.address).into()
    }
    /// Their contributions, as a Relay connection (oldest first unless `order` says newest), narrowed by Datanet,
    /// anchoring block range and status.
    #[allow(clippy::too_many_arguments)] // a resolver's arguments are the field's arguments
    async fn contributions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        order: Option<Order>,
        datanet: Option<u64>,
        from_block: Option<u64>,
        to_block: Option<u64>,
        status: Option<ContributionStatus>,
    ) -> async_graphql::Result<Connection<String, Contribution>> {
        let filter = ContributionFilter {
            datanet,
            contributor: Some(self.address.clone()),
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
    /// Their influence on answers: the credit recorded for them (their contributions'
    /// shares, and their summed credit past an answer's listed contributions), summed over
    /// every recorded answer; each answer's credit sums to 1. SQL's
    /// `attribution_by_contributor.weight` is the same sum.
    async fn influence(&self, ctx: &Context<'_>) -> async_graphql::Result<f64> {
        let id = NodeKind::Contributor.id(&self.address);
        let theirs = edges(ctx, &id, End::Src, EdgeKind::Contributed).await?;
        let mut received = try_join_all(
            theirs
                .iter()
                .map(|e| edges(ctx, &e.dst, End::Dst, EdgeKind::AttributedTo)),
        )
        .await?;
        received.push(edges(ctx, &id, End::Dst, EdgeKind::AttributedTo).await?);
        Ok(received
            .iter()
            .flatten()
            .filter(|e| e.src.kind() == NodeKind::Answer)
            .filter_map(|e| e.weight)
            .sum())
    }
    /// What reward epochs paid them, oldest first, each with its claim (or none yet).
    async fn rewards(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<RewardAllocation>> {
        let id = NodeKind::Contributor.id(&self.address);
        let (paid, claims) = futures::try_join!(
            edges(ctx, &id, End::Dst, EdgeKind::Rewarded),
            edges(ctx, &id, End::Src, EdgeKind::Claimed)
        )?;
        let epochs = try_join_all(paid.iter().map(|e| node(ctx, e.src.to_string()))).await?;
        let by_pair = RewardAllocation::claims(&claims);
        Ok(paid
            .iter()
            .zip(epochs)
            .filter_map(|(e, epoch)| Some(RewardAllocation::of(&epoch?, e, &by_pair)))
            .collect())
    }
}

/// A batch of contributions anchored on chain (`BatchAnchored`).
pub(crate) struct Batch(Node);

node_object! {
impl Batch {
    /// Batch id: keccak256 over the Datanet id and the sorted contribution ids.
    async fn id(&self) -> &str {
        key(&self.0)
    }
    /// The Datanet.
    async fn datanet(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Datanet>> {
        datanet(ctx, number(&self.0, "datanet_id")).await
    }
    /// Merkle root over the contribution ids, as anchored.
    async fn merkle_root(&self) -> &str {
        text(&self.0, "merkle_root")
    }
    /// Number of contributions, as anchored.
    async fn count(&self) -> u64 {
        number(&self.0, "count")
    }
    /// Where the batch manifest is in the lake.
    async fn manifest_uri(&self) -> &str {
        text(&self.0, prop::MANIFEST_URI)
    }
    /// keccak256 of the manifest's bytes, as anchored.
    async fn manifest_hash(&self) -> &str {
        text(&self.0, "manifest_hash")
    }
    /// The Delta version the contributions were committed at.
    async fn lake_version(&self) -> u64 {
        number(&self.0, "lake_version")
    }
    /// Whether the manifest in the lake matched the chain, and its entries their
    /// contributors' signatures, when last checked (indexed, or rechecked after the lake
    /// failed to serve it); only verified batches bring their contributions into the graph.
    async fn verified(&self) -> bool {
        self.0.props[prop::VERIFIED].as_bool().unwrap_or(false)
    }
    /// The data-availability check: `verified`; `unreachable` (the lake did not serve the
    /// manifest: checked again on every index run); `missing`, `mismatch` (the manifest
    /// differs from the chain) or `unsigned` (it lists an entry its contributor did not sign
    /// for this Datanet), all flagged.
    async fn availability(&self) -> &str {
        availability(&self.0)
    }
    /// Why it was not verified.
    async fn reason(&self) -> Option<&str> {
        self.0.props["reason"].as_str()
    }
    /// Its contributions as a Relay connection.
    async fn contributions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        order: Option<Order>,
    ) -> async_graphql::Result<Connection<String, Contribution>> {
        let filter = ContributionFilter {
            batch: Some(key(&self.0).to_string()),
            ..ContributionFilter::default()
        };
        contribution_page(ctx, filter, PageArgs { first, after, order }).await
    }
    /// Validators' verdicts on it: each validator's latest, which is what snapshots and
    /// `verify` count; with `all: true` every verdict recorded (a validator may record
    /// again), oldest first.
    async fn validations(
        &self,
        ctx: &Context<'_>,
        all: Option<bool>,
    ) -> async_graphql::Result<Vec<Validation>> {
        let mut v: Vec<Node> = linked(ctx, &self.0.id, End::Dst, EdgeKind::Validates)
            .await?
            .into_iter()
            .filter(|n| n.kind == NodeKind::Validation)
            .collect();
        v.sort_by_key(|n| (n.pos.block_number, n.pos.log_index));
        if !all.unwrap_or(false) {
            // The last of each validator's, in the order they were recorded.
            let mut seen = std::collections::HashSet::new();
            v.reverse();
            v.retain(|n| seen.insert(text(n, "validator").to_string()));
            v.reverse();
        }
        Ok(v.into_iter().map(Validation).collect())
    }
}
}

/// A validator's verdicts on a batch (`ValidationRecorded`).
pub(crate) struct Validation(Node);

node_object! {
impl Validation {
    /// The Datanet.
    async fn datanet(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Datanet>> {
        datanet(ctx, number(&self.0, "datanet_id")).await
    }
    /// The validator's address.
    async fn validator(&self) -> &str {
        text(&self.0, "validator")
    }
    /// Merkle root over the per-contribution verdicts.
    async fn verdicts_root(&self) -> &str {
        text(&self.0, "verdicts_root")
    }
    /// Contributions accepted.
    async fn accepted(&self) -> u64 {
        number(&self.0, "accepted")
    }
    /// Contributions rejected.
    async fn rejected(&self) -> u64 {
        number(&self.0, "rejected")
    }
    /// The batch judged.
    async fn batch(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Batch>> {
        let b = linked(ctx, &self.0.id, End::Src, EdgeKind::Validates).await?;
        Ok(typed(b, NodeKind::Batch).into_iter().next())
    }
}
}

/// A frozen training set (`SnapshotCommitted`): contributions of Datanets at pinned lake
/// versions.
pub(crate) struct Snapshot(Node);

node_object! {
impl Snapshot {
    /// Snapshot id.
    async fn id(&self) -> &str {
        key(&self.0)
    }
    /// The Datanets drawn from.
    async fn datanets(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Datanet>> {
        let d = linked(ctx, &self.0.id, End::Src, EdgeKind::DrawnFrom).await?;
        Ok(d.into_iter().filter_map(Datanet::of).collect())
    }
    /// The Delta version of each Datanet's table, in the order of `datanets`' ids on chain.
    async fn lake_versions(&self) -> Vec<u64> {
        self.0.props["lake_versions"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default()
    }
    /// Merkle root over the contribution ids.
    async fn contributions_root(&self) -> &str {
        text(&self.0, "contributions_root")
    }
    /// Number of contributions.
    async fn count(&self) -> u64 {
        number(&self.0, "count")
    }
    /// Whether its manifest in the lake matched the chain when last checked (indexed, or
    /// rechecked after the lake failed to serve it); only then are its contributions linked.
    async fn verified(&self) -> bool {
        self.0.props[prop::VERIFIED].as_bool().unwrap_or(false)
    }
    /// The manifest check: `verified`; `unreachable` (the lake did not serve it: checked
    /// again on every index run); `missing` or `mismatch` (flagged).
    async fn availability(&self) -> &str {
        availability(&self.0)
    }
    /// Why it was not verified.
    async fn reason(&self) -> Option<&str> {
        self.0.props[prop::REASON].as_str()
    }
    /// Its contributions as a Relay connection (once the snapshot's manifest has linked them).
    async fn contributions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: u32,
        after: Option<String>,
        order: Option<Order>,
    ) -> async_graphql::Result<Connection<String, Contribution>> {
        let filter = ContributionFilter {
            snapshot: Some(key(&self.0).to_string()),
            ..ContributionFilter::default()
        };
        contribution_page(ctx, filter, PageArgs { first, after, order }).await
    }
    /// Training runs on it.
    async fn training_runs(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TrainingRun>> {
        let r = linked(ctx, &self.0.id, End::Src, EdgeKind::Trained).await?;
        Ok(typed(r, NodeKind::TrainingRun))
    }
}
}

/// The run that trained an adapter on a snapshot.
pub(crate) struct TrainingRun(Node);

node_object! {
impl TrainingRun {
    /// Id: the id of the adapter it produced.
    async fn id(&self) -> &str {
        key(&self.0)
    }
    /// keccak256 of the training configuration.
    async fn config_hash(&self) -> &str {
        text(&self.0, "config_hash")
    }
    /// The snapshot trained on.
    async fn snapshot(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Snapshot>> {
        let s = linked(ctx, &self.0.id, End::Dst, EdgeKind::Trained).await?;
        Ok(typed(s, NodeKind::Snapshot).into_iter().next())
    }
    /// The adapter produced.
    async fn adapter(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Adapter>> {
        let a = linked(ctx, &self.0.id, End::Src, EdgeKind::Produced).await?;
        Ok(typed(a, NodeKind::Adapter).into_iter().next())
    }
}
}

/// A base model adapters are trained on (`BaseModelRegistered`).
pub(crate) struct BaseModel(Node);

node_object! {
impl BaseModel {
    /// Model id.
    async fn id(&self) -> &str {
        key(&self.0)
    }
    /// Hash of the weights.
    async fn weights_hash(&self) -> &str {
        text(&self.0, "weights_hash")
    }
    /// Architecture name.
    async fn architecture(&self) -> &str {
        text(&self.0, "architecture")
    }
    /// Where the weights are.
    async fn uri(&self) -> &str {
        text(&self.0, "uri")
    }
    /// Adapters on this base, oldest first.
    async fn adapters(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Adapter>> {
        let a = linked(ctx, &self.0.id, End::Dst, EdgeKind::DerivedFrom).await?;
        Ok(typed(a, NodeKind::Adapter))
    }
}
}

/// A LoRA adapter: one version of a model line (`AdapterPublished`).
pub(crate) struct Adapter(Node);

/// `1.2.3` (any `-pre` or `+build` ignored) as numbers, for ordering versions.
fn semver(v: &str) -> Vec<u64> {
    v.split(['-', '+'])
        .next()
        .unwrap_or_default()
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

impl Adapter {
    /// `(line, version)` from `line@version`; a bare version has no line.
    fn line_version(&self) -> (&str, &str) {
        text(&self.0, "version")
            .rsplit_once('@')
            .unwrap_or(("", text(&self.0, "version")))
    }
}

node_object! {
impl Adapter {
    /// Adapter id.
    async fn id(&self) -> &str {
        key(&self.0)
    }
    /// The version as published: `line@semver`.
    async fn version(&self) -> &str {
        text(&self.0, "version")
    }
    /// Its model line (before the `@`; empty when published without one).
    async fn line(&self) -> &str {
        self.line_version().0
    }
    /// Where the adapter's files are in the lake.
    async fn uri(&self) -> &str {
        text(&self.0, "uri")
    }
    /// Hash of the adapter weights.
    async fn weights_hash(&self) -> &str {
        text(&self.0, "weights_hash")
    }
    /// Hash of the training configuration.
    async fn config_hash(&self) -> &str {
        text(&self.0, "config_hash")
    }
    /// Why its held-out credit is not in the graph (its manifest differs from the chain, or
    /// the lake did not serve it or its credit: then checked again on every index run); null
    /// when the credit is linked, or there is none to link.
    async fn credit_unavailable(&self) -> Option<&str> {
        self.0.props["credit_unavailable"].as_str()
    }
    /// How it was trained (settings and measurements), from its manifest in the lake; null
    /// when this server has no lake or the manifest is not there; an error when the manifest
    /// is not what the chain recorded of this adapter (base model, snapshot, parents,
    /// settings, weights).
    async fn training(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<AdapterTraining>> {
        let Some(lake) = &ctx.data_unchecked::<DataLoader<Manifests>>().loader().0 else {
            return Ok(None);
        };
        let folder = match key(&self.0).parse::<B256>() {
            Ok(id) => lake.locate(text(&self.0, "uri"), &AdapterManifest::folder(id)),
            Err(_) => text(&self.0, "uri").to_string(),
        };
        let uri = format!("{}/manifest.json", folder.trim_end_matches('/'));
        let Ok(bytes) = lake.get(&uri).await else {
            return Ok(None);
        };
        let m: AdapterManifest = serde_json::from_slice(&bytes).map_err(|e| {
            tracing::error!(%uri, error = %e, "adapter manifest does not parse");
            async_graphql::Error::new("the adapter's manifest in the lake does not parse")
        })?;
        let id = key(&self.0).parse().unwrap_or_default();
        m.check(&AdapterRecord::from_props(id, &self.0.props))
            .map_err(async_graphql::Error::new)?;
        Ok(Some(AdapterTraining::from(m)))
    }
    /// The base model.
    async fn base_model(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<BaseModel>> {
        let id = NodeKind::BaseModel.id(text(&self.0, prop::BASE_MODEL_ID));
        one(ctx, id, NodeKind::BaseModel).await
    }
    /// Adapters it was trained from or merged from.
    async fn parents(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Adapter>> {
        let p = linked(ctx, &self.0.id, End::Src, EdgeKind::DerivedFrom).await?;
        Ok(typed(p, NodeKind::Adapter))
    }
    /// Adapters trained or merged from it.
    async fn children(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Adapter>> {
        let c = linked(ctx, &self.0.id, End::Dst, EdgeKind::DerivedFrom).await?;
        Ok(typed(c, NodeKind::Adapter))
    }
    /// The snapshot it was trained on.
    async fn snapshot(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Snapshot>> {
        let id = NodeKind::Snapshot.id(text(&self.0, prop::SNAPSHOT_ID));
        one(ctx, id, NodeKind::Snapshot).await
    }
    /// The run that trained it.
    async fn training_run(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<TrainingRun>> {
        one(ctx, NodeKind::TrainingRun.id(key(&self.0)), NodeKind::TrainingRun).await
    }
    /// Every version of its model line, lowest version first (just itself without a line).
    async fn versions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Adapter>> {
        let (line, _) = self.line_version();
        if line.is_empty() {
            return Ok(vec![Adapter(self.0.clone())]);
        }
        let gr = graph(ctx);
        let mut all: Vec<Adapter> = gr
            .store
            .adapters_in_line(gr.chain_id, line)
            .await
            .map_err(internal)?
            .into_iter()
            .map(Adapter)
            .collect();
        all.sort_by_cached_key(|a| semver(a.line_version().1));
        Ok(all)
    }
}
}

/// A batch of recorded inferences (`InferencesRecorded`).
pub(crate) struct Inference(Node);

node_object! {
impl Inference {
    /// Batch id.
    async fn id(&self) -> &str {
        key(&self.0)
    }
    /// The adapters that served it.
    async fn adapters(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Adapter>> {
        let a = linked(ctx, &self.0.id, End::Src, EdgeKind::ServedBy).await?;
        Ok(typed(a, NodeKind::Adapter))
    }
    /// Merkle root over the answers.
    async fn merkle_root(&self) -> &str {
        text(&self.0, "merkle_root")
    }
    /// Number of answers.
    async fn count(&self) -> u64 {
        number(&self.0, "count")
    }
    /// Where the manifest is in the lake.
    async fn manifest_uri(&self) -> &str {
        text(&self.0, prop::MANIFEST_URI)
    }
    /// Whether the manifest matched the chain when last checked (indexed, or rechecked after
    /// the lake failed to serve it).
    async fn verified(&self) -> bool {
        self.0.props[prop::VERIFIED].as_bool().unwrap_or(false)
    }
    /// The manifest check: `verified`; `unreachable` (the lake did not serve it: checked
    /// again on every index run); `missing` or `mismatch` (flagged).
    async fn availability(&self) -> &str {
        availability(&self.0)
    }
    /// Why it was not verified.
    async fn reason(&self) -> Option<&str> {
        self.0.props["reason"].as_str()
    }
    /// Tokens generated (verified batches).
    async fn tokens(&self) -> Option<u64> {
        self.0.props["tokens"].as_u64()
    }
    /// Fees charged, in token units (verified batches).
    async fn fees(&self) -> Option<TokenAmount> {
        amount(&self.0.props, "fees")
    }
    /// The reward epoch that paid out its fees; null until one has.
    async fn settled_in(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<RewardEpoch>> {
        let e = linked(ctx, &self.0.id, End::Dst, EdgeKind::Settles).await?;
        Ok(typed(e, NodeKind::RewardEpoch).pop())
    }
    /// The answers it recorded (verified batches).
    async fn answers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Answer>> {
        let a = linked(ctx, &self.0.id, End::Dst, EdgeKind::RecordedIn).await?;
        Ok(typed(a, NodeKind::Answer))
    }
    /// Which contributions, and whose, the answers were credited to: each answer's recorded
    /// credit, averaged over the batch's answers.
    async fn attribution(&self, ctx: &Context<'_>) -> async_graphql::Result<Attribution> {
        attribution(ctx, &self.0.id).await
    }
}
}

/// One served answer, as its inference batch recorded it.
pub(crate) struct Answer(Node);

node_object! {
impl Answer {
    /// Answer id: what the response's `inference.id` said (the Merkle leaf of the batch).
    async fn id(&self) -> &str {
        key(&self.0)
    }
    /// The adapter that answered.
    async fn adapter(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Adapter>> {
        let a = linked(ctx, &self.0.id, End::Src, EdgeKind::ServedBy).await?;
        Ok(typed(a, NodeKind::Adapter).pop())
    }
    /// The batch that recorded it.
    async fn batch(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Inference>> {
        let b = linked(ctx, &self.0.id, End::Src, EdgeKind::RecordedIn).await?;
        Ok(typed(b, NodeKind::Inference).pop())
    }
    /// keccak256 of the request as received.
    async fn request_hash(&self) -> &str {
        text(&self.0, "request_hash")
    }
    /// keccak256 of the answer's text.
    async fn response_hash(&self) -> &str {
        text(&self.0, "response_hash")
    }
    /// Merkle root over its credit records.
    async fn attribution_root(&self) -> &str {
        text(&self.0, "attribution_root")
    }
    /// Tokens generated.
    async fn tokens(&self) -> u64 {
        number(&self.0, "tokens")
    }
    /// Fee charged, in token units.
    async fn fee(&self) -> Option<TokenAmount> {
        amount(&self.0.props, "fee")
    }
    /// Its credit, as recorded when it was served.
    async fn attribution(&self, ctx: &Context<'_>) -> async_graphql::Result<Attribution> {
        attribution(ctx, &self.0.id).await
    }
}
}

/// A settled reward epoch (`EpochAllocated`).
pub(crate) struct RewardEpoch(Node);

node_object! {
impl RewardEpoch {
    /// Epoch number.
    async fn epoch(&self) -> u64 {
        key(&self.0).parse().unwrap_or_default()
    }
    /// Merkle root of the allocations (what claims prove against).
    async fn merkle_root(&self) -> &str {
        text(&self.0, "merkle_root")
    }
    /// Total allocated, in token units.
    async fn total(&self) -> TokenAmount {
        // From the event's uint256, always decimal digits.
        TokenAmount(text(&self.0, prop::TOTAL).to_string())
    }
    /// Whether its manifest (`rewards/epoch-N.json`) matched the chain when last checked: a
    /// Tributary settlement whose amounts are the root's. False for an epoch posted straight
    /// to the distributor by someone else (see `reason`).
    async fn verified(&self) -> bool {
        self.0.props[prop::VERIFIED].as_bool().unwrap_or(false)
    }
    /// The manifest check: `verified`; `unreachable` (the lake did not serve it) or `missing`
    /// (not recorded yet), both checked again on every index run; `mismatch` (flagged).
    async fn availability(&self) -> &str {
        availability(&self.0)
    }
    /// Why it was not verified.
    async fn reason(&self) -> Option<&str> {
        self.0.props[prop::REASON].as_str()
    }
    /// Per-contributor allocations, as recorded in the graph, each with its claim.
    async fn allocations(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<RewardAllocation>> {
        let (paid, claims) = futures::try_join!(
            edges(ctx, &self.0.id, End::Src, EdgeKind::Rewarded),
            edges(ctx, &self.0.id, End::Dst, EdgeKind::Claimed)
        )?;
        let by_pair = RewardAllocation::claims(&claims);
        Ok(paid
            .iter()
            .map(|e| RewardAllocation::of(&self.0, e, &by_pair))
            .collect())
    }
    /// How the epoch split each answer's fee, in basis points (of 10,000), as its manifest
    /// states it (the root on chain covers the amounts paid, not this statement); null when
    /// the manifest was not verified or the epoch was indexed before policies were kept.
    async fn policy(&self) -> Option<RewardPolicy> {
        serde_json::from_value(self.0.props[prop::POLICY].clone()).ok()
    }
    /// The inference batches whose fees it paid out, as its manifest lists them (the root on
    /// chain covers the amounts paid, not this list).
    async fn batches(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Inference>> {
        let b = linked(ctx, &self.0.id, End::Src, EdgeKind::Settles).await?;
        Ok(typed(b, NodeKind::Inference))
    }
}
}

/// How an epoch split each answer's fee, in basis points (they sum to 10,000).
#[derive(SimpleObject, serde::Deserialize)]
pub(crate) struct RewardPolicy {
    /// To the platform.
    platform: u32,
    /// To the adapter's publisher.
    owner: u32,
    /// To the stakers.
    stakers: u32,
    /// To the data contributors, divided by each answer's recorded credit.
    contributors: u32,
}

/// How a subject's credit divides among contributions and contributors.
#[derive(SimpleObject)]
pub(crate) struct Attribution {
    /// The node asked about.
    subject: String,
    /// `recorded`: an answer's credit as serving recorded it (gradient influence, or for a
    /// merge its parents' held-out credit by merge weight); `held_out`: an adapter's credit
    /// over its held-out set as measured when it was trained, less contributions revoked
    /// since (shares over the rest, as SQL's `contribution_influence`); `batch_mean`: an
    /// inference batch's answers' credit, averaged; `contribution_count`: no measured credit
    /// reaches the subject, so each contributor's share is their part of the contributions
    /// upstream of it.
    method: String,
    /// Per contributor, largest share first; shares sum to 1.
    contributors: Vec<ContributorShare>,
    /// Per contribution, largest share first (measured credit only; an answer's credit past
    /// its listed contributions is under its contributors only).
    contributions: Vec<ContributionShare>,
}

/// A contributor's part of a subject's credit.
#[derive(SimpleObject)]
pub(crate) struct ContributorShare {
    /// Address.
    address: String,
    /// Share, in [0, 1].
    share: f64,
    /// Their contributions counted.
    contributions: u64,
}

impl From<tributary_sql::ContributorShare> for ContributorShare {
    fn from(s: tributary_sql::ContributorShare) -> Self {
        Self {
            address: NodeKind::Contributor
                .key_of(&s.contributor)
                .unwrap_or(&s.contributor)
                .into(),
            share: s.share,
            contributions: s.contributions,
        }
    }
}

/// A contribution's part of a subject's credit.
#[derive(SimpleObject)]
pub(crate) struct ContributionShare {
    /// Contribution id.
    id: String,
    /// Its contributor.
    contributor: String,
    /// Share, in [0, 1].
    share: f64,
}

/// Node `id`'s measured credit: (contribution or contributor node, share) per edge.
async fn credited(ctx: &Context<'_>, id: &str) -> async_graphql::Result<Vec<(g::NodeId, f64)>> {
    Ok(edges(ctx, id, End::Src, EdgeKind::AttributedTo)
        .await?
        .into_iter()
        .filter_map(|e| Some((e.dst, e.weight.filter(|w| *w > 0.0)?)))
        .collect())
}

/// The credit of node `id`, as recorded (see [`Attribution::method`]).
pub(crate) async fn attribution(ctx: &Context<'_>, id: &str) -> async_graphql::Result<Attribution> {
    let (method, measured) = match NodeKind::of_id(id) {
        Some(NodeKind::Answer) => ("recorded", credited(ctx, id).await?),
        Some(NodeKind::Adapter) => {
            let all = credited(ctx, id).await?;
            let revoked = try_join_all(
                all.iter()
                    .map(|(c, _)| edges(ctx, c, End::Dst, EdgeKind::Revokes)),
            )
            .await?;
            let live: Vec<_> = all
                .into_iter()
                .zip(revoked)
                .filter(|(_, r)| r.is_empty())
                .map(|(c, _)| c)
                .collect();
            let total: f64 = live.iter().map(|c| c.1).sum();
            let live = live.into_iter().map(|(c, w)| (c, w / total)).collect();
            ("held_out", live)
        }
        Some(NodeKind::Inference) => {
            let answers = edges(ctx, id, End::Dst, EdgeKind::RecordedIn).await?;
            let each = try_join_all(answers.iter().map(|a| credited(ctx, &a.src))).await?;
            let mut sum: BTreeMap<g::NodeId, f64> = BTreeMap::new();
            for (c, w) in each.iter().flatten() {
                *sum.entry(c.clone()).or_default() += w / answers.len() as f64;
            }
            ("batch_mean", sum.into_iter().collect())
        }
        _ => ("contribution_count", vec![]),
    };
    if measured.is_empty() {
        let shares = graph(ctx).index.contributors(id).await.map_err(internal)?;
        return Ok(Attribution {
            subject: id.to_string(),
            method: "contribution_count".into(),
            contributors: shares.into_iter().map(ContributorShare::from).collect(),
            contributions: vec![],
        });
    }
    let owners = try_join_all(measured.iter().map(|(dst, _)| async move {
        if dst.kind() == NodeKind::Contributor {
            return Ok(dst.key().to_string());
        }
        let by = edges(ctx, dst, End::Dst, EdgeKind::Contributed).await?;
        Ok::<_, async_graphql::Error>(
            by.first()
                .map(|o| o.src.key().to_string())
                .unwrap_or_default(),
        )
    }))
    .await?;
    let mut contributions = Vec::with_capacity(measured.len());
    let mut by: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for ((dst, share), who) in measured.iter().zip(owners) {
        let slot = by.entry(who.clone()).or_default();
        slot.0 += share;
        if dst.kind() == NodeKind::Contribution {
            slot.1 += 1;
            contributions.push(ContributionShare {
                id: dst.key().into(),
                contributor: who,
                share: *share,
            });
        }
    }
    contributions.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.id.cmp(&b.id)));
    let mut contributors: Vec<ContributorShare> = by
        .into_iter()
        .map(|(address, (share, n))| ContributorShare {
            address,
            share,
            contributions: n,
        })
        .collect();
    contributors.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.address.cmp(&b.address)));
    Ok(Attribution {
        subject: id.to_string(),
        method: method.into(),
        contributors,
        contributions,
    })
}

/// Loaders the typed objects use, to put in the schema's data.
pub(crate) fn loaders(
    graph: load::Graph,
    lake: Option<tributary_lake::Lake>,
) -> (DataLoader<load::Graph>, DataLoader<Manifests>) {
    (
        DataLoader::new(graph, tokio::spawn),
        DataLoader::new(Manifests(lake), tokio::spawn),
    )
}

/// How an adapter was trained, from its manifest.
#[derive(async_graphql::SimpleObject)]
pub(crate) struct AdapterTraining {
    /// LoRA and training settings as given (`lora`, `train`, `template`, `merge_weights`).
    config: async_graphql::Json<serde_json::Value>,
    /// Parent adapters with their merge weights.
    parents: Vec<AdapterParentWeight>,
    /// Device trained on (`cpu`, `cuda:0`).
    device: String,
    /// Tributary version that trained it.
    code_version: String,
    /// Optimizer steps (absent for a pure merge, like the fields below).
    steps: Option<u64>,
    /// Training tokens seen.
    tokens: Option<u64>,
    /// Seconds of training.
    seconds: Option<f64>,
    /// Held-out loss of the base model alone (nats per token).
    base_eval_loss: Option<f64>,
    /// Held-out loss of the adapter.
    eval_loss: Option<f64>,
    /// Held-out perplexity of the adapter.
    perplexity: Option<f64>,
    /// Held-out loss at each evaluation: `[step, loss]` pairs.
    eval_loss_curve: Vec<Vec<f64>>,
}

/// A parent adapter's weight in a merge.
#[derive(async_graphql::SimpleObject)]
pub(crate) struct AdapterParentWeight {
    /// Parent adapter id.
    id: String,
    /// Its weight (1 for continued training).
    weight: f64,
}

impl From<AdapterManifest> for AdapterTraining {
    fn from(m: AdapterManifest) -> Self {
        let x = m.metrics.as_ref();
        AdapterTraining {
            config: async_graphql::Json(m.config),
            parents: m
                .parents
                .iter()
                .map(|p| AdapterParentWeight {
                    id: p.id.to_string(),
                    weight: p.weight,
                })
                .collect(),
            device: m.device,
            code_version: m.code_version,
            steps: x.map(|x| x.steps),
            tokens: x.map(|x| x.tokens),
            seconds: x.map(|x| x.seconds),
            base_eval_loss: x.map(|x| x.base_eval_loss),
            eval_loss: x.map(|x| x.eval_loss),
            perplexity: x.map(|x| x.perplexity),
            eval_loss_curve: x
                .map(|x| {
                    x.eval_loss_curve
                        .iter()
                        .map(|&(s, l)| vec![s as f64, l])
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}
