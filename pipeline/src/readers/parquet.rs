//! Parquet: one record per row, read a batch of rows at a time and turned into JSON objects.

use std::fs::File;
use std::path::Path;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use super::{Item, Items, ReadOptions, unreadable};
use crate::reject::Reason;
use crate::{Error, Result};

/// Rows per Arrow batch read from the file.
const ROWS_PER_READ: usize = 4096;

pub(super) fn open(path: &Path, options: &ReadOptions) -> Result<Items> {
    let bad = |e: String| Error::InvalidInput(format!("cannot read {}: {e}", path.display()));
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad(e.to_string()))?
        .with_batch_size(ROWS_PER_READ)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let max = options.max_record_bytes;
    let mut row = 0u64;
    let items = reader.flat_map(move |batch| {
        let rows: Vec<Item> = match batch
            .map_err(|e| e.to_string())
            .and_then(|b| to_json_rows(&b))
        {
            Ok(values) => values
                .into_iter()
                .map(|(v, len)| {
                    row += 1;
                    let locator = format!("row {row}");
                    if len > max {
                        let msg = format!("row is {len} bytes as JSON; max_record_bytes is {max}");
                        unreadable(locator, Reason::TooLarge, msg, &v.to_string())
                    } else {
                        Item {
                            locator,
                            body: Ok(v),
                        }
                    }
                })
                .collect(),
            Err(e) => vec![unreadable(
                format!("after row {row}"),
                Reason::Malformed,
                format!("bad Parquet data: {e}"),
                "",
            )],
        };
        rows
    });
    Ok(Box::new(items))
}

/// Each row as a JSON object, with its serialised length.
fn to_json_rows(batch: &arrow::record_batch::RecordBatch) -> Result<Vec<(Value, usize)>, String> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(batch).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
    }
    buf.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .map(|v| (v, l.len()))
                .map_err(|e| e.to_string())
        })
        .collect()
}
