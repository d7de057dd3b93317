//! Arrow schemas of the lake's Delta tables. Ids and hashes are `0x`-prefixed lowercase hex
//! strings so that SQL users can read and join them; chain integers that fit are `Int64`
//! (Delta has no unsigned types).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Names of the lake's tables.
pub mod names {
    /// Accepted contributions, partitioned by `datanet_id`.
    pub const CONTRIBUTIONS: &str = "contributions";
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
        Field::new(
            "ingested_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// Partition columns of each table.
pub fn partition_columns(table: &str) -> &'static [&'static str] {
    match table {
        names::CONTRIBUTIONS => &["datanet_id"],
        _ => &[],
    }
}
