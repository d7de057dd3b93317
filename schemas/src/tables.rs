//! Arrow schemas of the lake's Delta tables. Ids and hashes are `0x`-prefixed lowercase hex
//! strings so that SQL users can read and join them; chain integers that fit are `Int64`
//! (Delta has no unsigned types).

use std::sync::Arc;

use arrow::array::Decimal128Array;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Names of the lake's tables.
pub mod names {
    /// Accepted contributions, partitioned by `datanet_id`.
    pub const CONTRIBUTIONS: &str = "contributions";
    /// Refused input records with the reason, partitioned by `datanet_id`.
    pub const REJECTIONS: &str = "rejections";
    /// Anchored batches: one row per `BatchAnchored`, partitioned by `datanet_id`.
    pub const BATCHES: &str = "batches";
    /// Revocations (tombstones), partitioned by `datanet_id`.
    pub const REVOCATIONS: &str = "revocations";
    /// Validator attestations of batches, partitioned by `datanet_id`.
    pub const VALIDATIONS: &str = "validations";
    /// Influence of contributions on adapters and inferences, partitioned by `datanet_id`.
    pub const ATTRIBUTIONS: &str = "attributions";
    /// Served answers, one row per inference, written when their batch is posted on chain.
    pub const INFERENCES: &str = "inferences";
    /// What each account earned in each reward epoch, and why.
    pub const REWARD_ALLOCATIONS: &str = "reward_allocations";

    /// The indexer's mirror of `chain_events` (raw logs), partitioned by `chain_id`.
    pub const CHAIN_EVENTS: &str = "chain_events";
    /// The indexer's mirror of the lineage graph's nodes, partitioned by `chain_id`.
    pub const LINEAGE_NODES: &str = "lineage_nodes";
    /// The indexer's mirror of the lineage graph's edges, partitioned by `chain_id`.
    pub const LINEAGE_EDGES: &str = "lineage_edges";
    /// Registered Datanets, one row per `DatanetCreated` (indexer), partitioned by `chain_id`.
    pub const DATANETS: &str = "datanets";
    /// Committed snapshots, one row per `SnapshotCommitted` (indexer), by `chain_id`.
    pub const SNAPSHOTS: &str = "snapshots";
    /// Training runs, one per `AdapterPublished` with its manifest's measurements (indexer).
    pub const TRAINING_RUNS: &str = "training_runs";
    /// Published adapters (model versions), one row per `AdapterPublished` (indexer).
    pub const ADAPTERS: &str = "adapters";

    /// Every table, in creation order.
    pub const ALL: &[&str] = &[
        CONTRIBUTIONS,
        REJECTIONS,
        BATCHES,
        REVOCATIONS,
        VALIDATIONS,
        ATTRIBUTIONS,
        INFERENCES,
        REWARD_ALLOCATIONS,
        CHAIN_EVENTS,
        LINEAGE_NODES,
        LINEAGE_EDGES,
        DATANETS,
        SNAPSHOTS,
        TRAINING_RUNS,
        ADAPTERS,
    ];
    /// The tables the indexer mirrors from its store.
    pub const MIRRORED: &[&str] = &[
        CHAIN_EVENTS,
        LINEAGE_NODES,
        LINEAGE_EDGES,
        DATANETS,
        SNAPSHOTS,
        TRAINING_RUNS,
        ADAPTERS,
    ];
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The schema of table `name`, or `None` for a name Tributary does not know.
pub fn schema(name: &str) -> Option<SchemaRef> {
    Some(match name {
        names::CONTRIBUTIONS => contributions(),
        names::REJECTIONS => rejections(),
        names::BATCHES => batches(),
        names::REVOCATIONS => revocations(),
        names::VALIDATIONS => validations(),
        names::ATTRIBUTIONS => attributions(),
        names::INFERENCES => inferences(),
        names::REWARD_ALLOCATIONS => reward_allocations(),
        names::CHAIN_EVENTS => chain_events(),
        names::LINEAGE_NODES => lineage_nodes(),
        names::LINEAGE_EDGES => lineage_edges(),
        names::DATANETS => datanets(),
        names::SNAPSHOTS => snapshots(),
        names::TRAINING_RUNS => training_runs(),
        names::ADAPTERS => adapters(),
        _ => return None,
    })
}

/// `rejections`: one row per refused input record; nothing is dropped silently.
pub fn rejections() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("datanet_id", DataType::Int64, false),
        Field::new("rejection_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("locator", DataType::Utf8, false),
        Field::new("reason_code", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("contributor", DataType::Utf8, true),
        Field::new("contribution_id", DataType::Utf8, true),
        Field::new("raw", DataType::Utf8, false),
        Field::new("rejected_at", utc_micros(), false),
    ]))
}

/// `batches`: anchored batches with their anchoring transaction.
pub fn batches() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("datanet_id", DataType::Int64, false),
        Field::new("batch_id", DataType::Utf8, false),
        Field::new("lake_version", DataType::Int64, false),
        Field::new("merkle_root", DataType::Utf8, false),
        Field::new("count", DataType::Int64, false),
        Field::new("manifest_uri", DataType::Utf8, false),
        Field::new("manifest_hash", DataType::Utf8, false),
        Field::new("anchor_tx", DataType::Utf8, false),
        Field::new("anchor_block", DataType::Int64, false),
        Field::new("anchored_at", utc_micros(), false),
    ]))
}

/// `revocations`: tombstones of revoked contributions.
pub fn revocations() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("datanet_id", DataType::Int64, false),
        Field::new("contribution_id", DataType::Utf8, false),
        Field::new("revoked_by", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("tx_hash", DataType::Utf8, false),
        Field::new("block_number", DataType::Int64, false),
        Field::new("revoked_at", utc_micros(), false),
    ]))
}

/// `validations`: a validator's verdicts on a batch.
pub fn validations() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("datanet_id", DataType::Int64, false),
        Field::new("batch_id", DataType::Utf8, false),
        Field::new("validator", DataType::Utf8, false),
        Field::new("contribution_id", DataType::Utf8, false),
        Field::new("verdict", DataType::Utf8, false),
        Field::new("verdicts_root", DataType::Utf8, false),
        Field::new("tx_hash", DataType::Utf8, false),
        Field::new("block_number", DataType::Int64, false),
        Field::new("validated_at", utc_micros(), false),
    ]))
}

/// `contributions`: one row per accepted contribution.
pub fn contributions() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("datanet_id", DataType::Int64, false),
        Field::new("contribution_id", DataType::Utf8, false),
        Field::new("contributor", DataType::Utf8, false),
        Field::new("content_hash", DataType::Utf8, false),
        Field::new("license", DataType::Utf8, false),
        Field::new("timestamp", DataType::Int64, false),
        Field::new("nonce", DataType::Int64, false),
        Field::new("deadline", DataType::Int64, false),
        Field::new("signature", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
        Field::new("batch_id", DataType::Utf8, false),
        Field::new("ingested_at", utc_micros(), false),
    ]))
}

/// `attributions`: one row per (subject, contribution, method). The subject is an adapter
/// (`subject_kind = 'adapter'`, scored against its held-out set when it is trained) or an
/// inference (`'inference'`, one answer). `method` is `tracin` (gradient influence: `score`
/// is the TracIn score, averaged over the queries for an adapter) or `span` (`score` is the
/// number of the answer's tokens found in the contribution). `share` is the contribution's
/// part of the subject's positive scores when it was computed; `negative_fraction` the
/// fraction of the adapter's held-out queries on which the score was negative.
pub fn attributions() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("datanet_id", DataType::Int64, false),
        Field::new("subject_kind", DataType::Utf8, false),
        Field::new("subject_id", DataType::Utf8, false),
        Field::new("adapter_id", DataType::Utf8, false),
        Field::new("contribution_id", DataType::Utf8, false),
        Field::new("contributor", DataType::Utf8, false),
        Field::new("method", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("share", DataType::Float64, false),
        Field::new("negative_fraction", DataType::Float64, true),
        Field::new("queries", DataType::Int64, false),
        Field::new("computed_at", utc_micros(), false),
    ]))
}

/// Token amounts: integer token units (18 decimals), exact.
fn amount() -> DataType {
    DataType::Decimal128(38, 0)
}

/// The largest amount an amount column holds: 10^38 - 1 units (10^20 tokens at 18 decimals).
pub const MAX_AMOUNT: u128 = 10u128.pow(38) - 1;

/// `values` as an amount column; the first value above [`MAX_AMOUNT`] is the error (a cast
/// would wrap it into another number).
pub fn amounts(values: impl IntoIterator<Item = u128>) -> Result<Decimal128Array, u128> {
    let v = values
        .into_iter()
        .map(|a| {
            if a <= MAX_AMOUNT {
                Ok(a as i128)
            } else {
                Err(a)
            }
        })
        .collect::<Result<Vec<i128>, u128>>()?;
    Ok(Decimal128Array::from(v)
        .with_precision_and_scale(38, 0)
        .expect("38 digits, scale 0 is a valid decimal"))
}

/// An amount column read back: `None` for a null or negative value (a damaged lake copy).
pub fn read_amounts(a: &Decimal128Array) -> Option<Vec<u128>> {
    a.iter().map(|v| u128::try_from(v?).ok()).collect()
}

/// `inferences`: one row per served answer, written when its batch is recorded on chain
/// (`InferencesRecorded`, `batch_id`). `attribution` is the answer's top contributions as
/// JSON `[{"contribution": id, "share": f}]` (empty when attribution was turned off for the
/// request); `fee` is in integer token units.
pub fn inferences() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("inference_id", DataType::Utf8, false),
        Field::new("batch_id", DataType::Utf8, false),
        Field::new("adapter_id", DataType::Utf8, false),
        Field::new("request_hash", DataType::Utf8, false),
        Field::new("response_hash", DataType::Utf8, false),
        Field::new("attribution_root", DataType::Utf8, false),
        Field::new("tokens", DataType::Int64, false),
        Field::new("fee", amount(), false),
        Field::new("attribution", DataType::Utf8, false),
        Field::new("recorded_at", utc_micros(), false),
    ]))
}

/// `reward_allocations`: per epoch, what each account earned, per role (`platform`,
/// `model_owner`, `stakers`, `contributor`), adapter and (for contributors) contribution;
/// `amount` in integer token units, `reason` in words. An epoch's amounts sum exactly to
/// its pool; per account they sum to the leaf of the epoch's Merkle tree.
pub fn reward_allocations() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("epoch", DataType::Int64, false),
        Field::new("account", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("adapter_id", DataType::Utf8, false),
        Field::new("contribution_id", DataType::Utf8, true),
        Field::new("inferences", DataType::Int64, false),
        Field::new("amount", amount(), false),
        Field::new("reason", DataType::Utf8, false),
    ]))
}

/// Partition columns of each table.
pub fn partition_columns(table: &str) -> &'static [&'static str] {
    if table == names::INFERENCES || table == names::REWARD_ALLOCATIONS {
        // Not per Datanet: an answer or a payment spans Datanets.
        &[]
    } else if names::MIRRORED.contains(&table) {
        // The indexer's mirror: one store may hold several chains.
        &["chain_id"]
    } else {
        // A Datanet's files never mix with another's.
        &["datanet_id"]
    }
}

/// The chain position columns every mirrored row ends with.
fn with_position(mut fields: Vec<Field>) -> SchemaRef {
    fields.extend([
        Field::new("block_number", DataType::Int64, false),
        Field::new("block_hash", DataType::Utf8, false),
        Field::new("tx_hash", DataType::Utf8, false),
        Field::new("log_index", DataType::Int64, false),
    ]);
    Arc::new(Schema::new(fields))
}

/// `chain_events`: every log of Tributary's contracts, decoded name and raw topics and data.
pub fn chain_events() -> SchemaRef {
    with_position(vec![
        Field::new("chain_id", DataType::Int64, false),
        Field::new("address", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("data", DataType::Utf8, false),
    ])
}

/// `lineage_nodes`: the graph's nodes (`kind:key` ids, JSON properties).
pub fn lineage_nodes() -> SchemaRef {
    with_position(vec![
        Field::new("chain_id", DataType::Int64, false),
        Field::new("id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("props", DataType::Utf8, false),
    ])
}

/// `lineage_edges`: the graph's edges in their downstream direction, with optional weight.
pub fn lineage_edges() -> SchemaRef {
    with_position(vec![
        Field::new("chain_id", DataType::Int64, false),
        Field::new("src", DataType::Utf8, false),
        Field::new("dst", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("weight", DataType::Float64, true),
    ])
}

/// `datanets`: each registered Datanet as its `DatanetCreated` event says. Columns other than
/// the ids are null where the indexer's node lacks them.
pub fn datanets() -> SchemaRef {
    with_position(vec![
        Field::new("chain_id", DataType::Int64, false),
        Field::new("datanet_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("domain", DataType::Utf8, true),
        Field::new("owner", DataType::Utf8, true),
        Field::new("schema_hash", DataType::Utf8, true),
        Field::new("metadata_uri", DataType::Utf8, true),
    ])
}

/// `snapshots`: each committed snapshot. `datanet_ids` and `lake_versions` are JSON arrays
/// (the `contributions` table's Delta version per Datanet); `verified` says whether the
/// snapshot's manifest in the lake matched the chain, `reason` why not.
pub fn snapshots() -> SchemaRef {
    with_position(vec![
        Field::new("chain_id", DataType::Int64, false),
        Field::new("snapshot_id", DataType::Utf8, false),
        Field::new("datanet_ids", DataType::Utf8, true),
        Field::new("lake_versions", DataType::Utf8, true),
        Field::new("contributions_root", DataType::Utf8, true),
        Field::new("contributions", DataType::Int64, true),
        Field::new("verified", DataType::Boolean, true),
        Field::new("reason", DataType::Utf8, true),
    ])
}

/// `training_runs`: the run behind each published adapter (keyed by the adapter it produced).
/// The measurements come from the adapter's manifest in the lake and are null when it is
/// missing, does not match the chain (`manifest_verified` false), or the adapter is a pure
/// merge; `config` is the hyperparameters as JSON.
pub fn training_runs() -> SchemaRef {
    with_position(vec![
        Field::new("chain_id", DataType::Int64, false),
        Field::new("adapter_id", DataType::Utf8, false),
        Field::new("snapshot_id", DataType::Utf8, true),
        Field::new("config_hash", DataType::Utf8, true),
        Field::new("manifest_verified", DataType::Boolean, false),
        Field::new("config", DataType::Utf8, true),
        Field::new("device", DataType::Utf8, true),
        Field::new("steps", DataType::Int64, true),
        Field::new("tokens", DataType::Int64, true),
        Field::new("seconds", DataType::Float64, true),
        Field::new("base_eval_loss", DataType::Float64, true),
        Field::new("eval_loss", DataType::Float64, true),
        Field::new("perplexity", DataType::Float64, true),
        Field::new("stopped_early", DataType::Boolean, true),
        Field::new("train_documents", DataType::Int64, true),
        Field::new("heldout_documents", DataType::Int64, true),
        Field::new("code_version", DataType::Utf8, true),
    ])
}

/// `adapters`: each published adapter. `version` is `line@semver` as published, `line` the
/// part before `@`; `parent_ids` a JSON array; `eval_loss` the held-out loss from its
/// manifest (null where `training_runs` has none).
pub fn adapters() -> SchemaRef {
    with_position(vec![
        Field::new("chain_id", DataType::Int64, false),
        Field::new("adapter_id", DataType::Utf8, false),
        Field::new("line", DataType::Utf8, true),
        Field::new("version", DataType::Utf8, true),
        Field::new("base_model_id", DataType::Utf8, true),
        Field::new("parent_ids", DataType::Utf8, true),
        Field::new("snapshot_id", DataType::Utf8, true),
        Field::new("config_hash", DataType::Utf8, true),
        Field::new("weights_hash", DataType::Utf8, true),
        Field::new("uri", DataType::Utf8, true),
        Field::new("eval_loss", DataType::Float64, true),
    ])
}
