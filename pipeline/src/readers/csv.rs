//! CSV: a header of field names, then one record per row. Cells of number fields become
//! numbers, cells of json fields are parsed, empty cells are absent.

use std::fs::File;
use std::path::Path;

use serde_json::{Map, Value};

use super::{Item, Items, ReadOptions, unreadable};
use crate::reject::Reason;

pub(super) fn open(path: &Path, options: &ReadOptions) -> std::io::Result<Items> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(File::open(path)?);
    let headers = reader
        .byte_headers()
        .map_err(std::io::Error::other)?
        .clone();
    let headers: Vec<String> = headers
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let options = options.clone();
    let mut row = 0u64;
    let mut records = reader.into_byte_records();
    Ok(Box::new(std::iter::from_fn(move || {
        let next = records.next()?;
        row += 1;
        let locator = format!("row {row}");
        let record = match next {
            Ok(r) => r,
            Err(e) => {
                return Some(unreadable(
                    locator,
                    Reason::Malformed,
                    format!("bad CSV row: {e}"),
                    "",
                ));
            }
        };
        let raw = record
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(",");
        if raw.len() > options.max_record_bytes {
            let msg = format!(
                "row is longer than {} bytes (max_record_bytes)",
                options.max_record_bytes
            );
            return Some(unreadable(locator, Reason::TooLarge, msg, &raw));
        }
        let mut obj = Map::new();
        for (name, cell) in headers.iter().zip(record.iter()) {
            let Ok(text) = std::str::from_utf8(cell) else {
                return Some(unreadable(
                    locator,
                    Reason::InvalidUtf8,
                    format!("column `{name}` is not UTF-8"),
                    &raw,
                ));
            };
            if text.is_empty() {
                continue;
            }
            let value = if options.numeric_fields.contains(name) {
                match text
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                {
                    Some(n) => Value::Number(n),
                    None => {
                        let msg = format!("column `{name}` must be a number, got {text:?}");
                        return Some(unreadable(locator, Reason::WrongType, msg, &raw));
                    }
                }
            } else if options.json_fields.contains(name) {
                match serde_json::from_str(text) {
                    Ok(v) => v,
                    Err(e) => {
                        let msg = format!("column `{name}` must hold JSON: {e}");
                        return Some(unreadable(locator, Reason::WrongType, msg, &raw));
                    }
                }
            } else {
                Value::String(text.to_string())
            };
            obj.insert(name.clone(), value);
        }
        Some(Item {
            locator,
            body: Ok(Value::Object(obj)),
        })
    })))
}
