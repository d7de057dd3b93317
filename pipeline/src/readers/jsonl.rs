//! JSON Lines: one record (or pre-signed envelope) per line, read with a per-line byte cap.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::{Item, Items, ReadOptions, unreadable};
use crate::reject::Reason;

pub(super) fn open(path: &Path, options: &ReadOptions) -> std::io::Result<Items> {
    let reader = BufReader::with_capacity(1 << 16, File::open(path)?);
    Ok(Box::new(Lines {
        reader,
        max: options.max_record_bytes,
        line: 0,
        buf: Vec::new(),
    }))
}

struct Lines {
    reader: BufReader<File>,
    max: usize,
    line: u64,
    buf: Vec<u8>,
}

impl Iterator for Lines {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            self.line += 1;
            let locator = format!("line {}", self.line);
            let (read, oversized) =
                match read_line_capped(&mut self.reader, &mut self.buf, self.max) {
                    Ok(r) => r,
                    Err(e) => {
                        return Some(unreadable(
                            locator,
                            Reason::Malformed,
                            format!("read error: {e}"),
                            "",
                        ));
                    }
                };
            if read == 0 {
                return None;
            }
            if oversized {
                let raw = String::from_utf8_lossy(&self.buf).into_owned();
                return Some(unreadable(
                    locator,
                    Reason::TooLarge,
                    format!("line is longer than {} bytes (max_record_bytes)", self.max),
                    &raw,
                ));
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t.trim(),
                Err(e) => {
                    let raw = String::from_utf8_lossy(&self.buf).into_owned();
                    return Some(unreadable(
                        locator,
                        Reason::InvalidUtf8,
                        format!("not UTF-8: {e}"),
                        &raw,
                    ));
                }
            };
            if text.is_empty() {
                continue; // blank lines are not records
            }
            return Some(match serde_json::from_str(text) {
                Ok(v) => Item {
                    locator,
                    body: Ok(v),
                },
                Err(e) => unreadable(
                    locator,
                    Reason::Malformed,
                    format!("not valid JSON: {e}"),
                    text,
                ),
            });
        }
    }
}

/// Reads one line into `buf` keeping at most `max` bytes of it; returns the bytes consumed
/// and whether the line was longer than `max` (its excess is skipped, never buffered).
fn read_line_capped(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(usize, bool)> {
    buf.clear();
    let mut consumed = 0;
    let mut oversized = false;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok((consumed, oversized));
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        let keep = &chunk[..take.min(room + 1)];
        if buf.len() + keep.len() > max {
            oversized = true;
        }
        if !oversized {
            buf.extend_from_slice(keep);
        } else if buf.len() < 256 {
            buf.extend_from_slice(&keep[..keep.len().min(256 - buf.len())]);
        }
        r.consume(take);
        consumed += take;
        if done {
            return Ok((consumed, oversized));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_without_buffering_them() {
        let text = format!("short\n{}\nnext\nlast", "x".repeat(10_000));
        let mut r = BufReader::with_capacity(64, text.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(read_line_capped(&mut r, &mut buf, 100).unwrap(), (6, false));
        assert_eq!(buf, b"short\n");
        let (n, over) = read_line_capped(&mut r, &mut buf, 100).unwrap();
        assert!(over && n == 10_001 && buf.len() <= 256);
        assert_eq!(read_line_capped(&mut r, &mut buf, 100).unwrap(), (5, false));
        assert_eq!(buf, b"next\n");
        assert_eq!(read_line_capped(&mut r, &mut buf, 100).unwrap(), (4, false));
        assert_eq!(read_line_capped(&mut r, &mut buf, 100).unwrap(), (0, false));
    }
}
