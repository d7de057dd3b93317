//! A directory of text files: one record per file (walked in path order), its text in the
//! Datanet's first text field.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{Item, Items, ReadOptions, unreadable};
use crate::reject::Reason;

pub(super) fn open(dir: &Path, options: &ReadOptions) -> std::io::Result<Items> {
    let Some(field) = options.text_field.clone() else {
        return Err(std::io::Error::other(
            "this Datanet has no text field to put a file's text in",
        ));
    };
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    let max = options.max_record_bytes;
    let root = dir.to_path_buf();
    Ok(Box::new(files.into_iter().map(move |path| {
        let locator = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let mut bytes = Vec::new();
        let read =
            std::fs::File::open(&path).and_then(|f| f.take(max as u64 + 1).read_to_end(&mut bytes));
        if let Err(e) = read {
            return unreadable(locator, Reason::Malformed, format!("cannot read: {e}"), "");
        }
        if bytes.len() > max {
            let msg = format!("file is larger than {max} bytes (max_record_bytes)");
            return unreadable(
                locator,
                Reason::TooLarge,
                msg,
                &String::from_utf8_lossy(&bytes[..256.min(bytes.len())]),
            );
        }
        match String::from_utf8(bytes) {
            Ok(text) => Item {
                locator,
                body: Ok(json!({ field.as_str(): text })),
            },
            Err(e) => {
                let raw = String::from_utf8_lossy(e.as_bytes()).into_owned();
                unreadable(
                    locator,
                    Reason::InvalidUtf8,
                    format!("not UTF-8: {}", e.utf8_error()),
                    &raw,
                )
            }
        }
    })))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue; // hidden files are not records
        }
        if entry.file_type()?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
