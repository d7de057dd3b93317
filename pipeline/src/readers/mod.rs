//! Input readers, one per format. Each streams records one at a time, so memory stays bounded
//! whatever the input's size; a record that cannot be read becomes a refusal, not an abort.
//!
//! | input | format |
//! |---|---|
//! | `*.jsonl`, `*.ndjson` | one JSON object per line: a record, or a pre-signed envelope |
//! | `*.csv` | a header row of field names, then one record per row |
//! | `*.parquet` | one record per row |
//! | a directory | one record per file: its text in the Datanet's first text field |
//!
//! A pre-signed envelope (JSON Lines only) carries the record and its EIP-712 signature:
//! `{"content": {…}, "contributor": "0x…", "license": "…", "timestamp": n, "nonce": n,
//! "deadline": n, "signature": "0x…"}`.

mod csv;
mod jsonl;
mod parquet;
mod text_dir;

use std::path::Path;

use serde_json::Value;

use crate::reject::Reason;
use crate::{Error, Result};

/// One input record, or why it could not be read.
#[derive(Debug, Clone)]
pub struct Item {
    /// Where it is: `line 12`, `row 3`, a file name.
    pub locator: String,
    /// The parsed JSON (a record or an envelope), or the refusal with the raw excerpt.
    pub body: Result<Value, Unreadable>,
}

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Why.
    pub reason: Reason,
    /// What is wrong.
    pub message: String,
    /// The raw input, cut short.
    pub raw: String,
}

/// A stream of items from one input.
pub type Items = Box<dyn Iterator<Item = Item> + Send>;

/// Options every reader honours.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Records larger than this many bytes are refused without being held in memory.
    pub max_record_bytes: usize,
    /// Field that holds a text file's content (directory input).
    pub text_field: Option<String>,
    /// Field types, to turn CSV cells into numbers or JSON.
    pub numeric_fields: Vec<String>,
    /// Fields holding JSON, for CSV cells.
    pub json_fields: Vec<String>,
}

/// Opens `path` with the reader its extension (or being a directory) selects.
pub fn open(path: &Path, options: &ReadOptions) -> Result<Items> {
    let unreadable =
        |e: std::io::Error| Error::InvalidInput(format!("cannot read {}: {e}", path.display()));
    if path.is_dir() {
        return text_dir::open(path, options).map_err(unreadable);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "jsonl" | "ndjson" | "json" => jsonl::open(path, options).map_err(unreadable),
        "csv" => csv::open(path, options).map_err(unreadable),
        "parquet" => parquet::open(path, options),
        other => Err(Error::InvalidInput(format!(
            "{}: unsupported input type {other:?}; use .jsonl, .csv, .parquet or a directory of text files",
            path.display()
        ))),
    }
}

fn unreadable(locator: String, reason: Reason, message: String, raw: &str) -> Item {
    Item {
        locator,
        body: Err(Unreadable {
            reason,
            message,
            raw: crate::reject::excerpt(raw),
        }),
    }
}
