//! Span matching in the style of infini-gram: a suffix array over a snapshot's token stream
//! (contributions joined by the end-of-text token, so no match crosses a boundary), built once
//! with libsais and stored next to the adapter. For an output, [`SpanIndex::find`] returns the
//! maximal spans of at least `n` tokens that occur in the training data, with the
//! contributions holding them and how often.
//!
//! Tokens are stored as u16 and suffix positions as i32: 6 bytes per token (infini-gram
//! reports about 7). Vocabularies above 65,536 tokens or streams above 2^31 tokens are refused
//! with a clear error.

use std::path::Path;

use libsais::SuffixArrayConstruction;

use crate::{Error, Result};

/// The largest vocabulary a span index holds (tokens are stored as u16).
pub const MAX_VOCAB: usize = 1 << 16;

/// A suffix array over a snapshot's tokens.
pub struct SpanIndex {
    tokens: Vec<u16>,
    sa: Vec<i32>,
    /// Where each contribution starts in `tokens`, ascending.
    starts: Vec<u32>,
    /// Contribution ids, in order.
    pub ids: Vec<String>,
}

/// A maximal span of the query found in the training data.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Where it starts in the query (token offset).
    pub start: usize,
    /// Its length in tokens.
    pub len: usize,
    /// Occurrences in the training data.
    pub occurrences: u64,
    /// (contribution index, occurrences in it), most first.
    pub contributions: Vec<(usize, u64)>,
}

fn token(t: i64) -> Result<u16> {
    u16::try_from(t).map_err(|_| {
        Error::InvalidInput(format!(
            "token id {t} does not fit the span index (vocabularies up to 65,536 tokens)"
        ))
    })
}

impl SpanIndex {
    /// Builds the index over `docs` (id, token ids), joined by `eot`.
    pub fn build(docs: &[(String, Vec<i64>)], eot: i64) -> Result<Self> {
        let eot = token(eot)?;
        let mut tokens = Vec::new();
        let mut starts = Vec::with_capacity(docs.len());
        for (_, ids) in docs {
            starts.push(u32::try_from(tokens.len()).map_err(|_| too_long())?);
            for &t in ids {
                tokens.push(token(t)?);
            }
            tokens.push(eot);
        }
        if tokens.len() >= i32::MAX as usize {
            return Err(too_long());
        }
        let sa = if tokens.is_empty() {
            Vec::new()
        } else {
            SuffixArrayConstruction::for_text(&tokens)
                .in_owned_buffer32()
                .single_threaded()
                .run()
                .map_err(|e| Error::InvalidInput(format!("suffix array: {e:?}")))?
                .into_vec()
        };
        Ok(SpanIndex {
            tokens,
            sa,
            starts,
            ids: docs.iter().map(|(id, _)| id.clone()).collect(),
        })
    }

    /// Tokens indexed.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Bytes the index takes (tokens, suffix array, boundaries).
    pub fn bytes(&self) -> usize {
        self.tokens.len() * 2 + self.sa.len() * 4 + self.starts.len() * 4
    }

    /// The suffix-array range whose suffixes start with `prefix[..depth]` followed by `t`,
    /// within `[lo, hi)` (where all share `prefix[..depth]`).
    fn narrow(&self, lo: usize, hi: usize, depth: usize, t: u16) -> (usize, usize) {
        let at = |i: usize| {
            let p = self.sa[i] as usize + depth;
            self.tokens.get(p).copied()
        };
        // Suffixes too short to have a token at `depth` sort first (None < Some).
        let l = first_not(lo, hi, |i| at(i) < Some(t));
        let h = first_not(l, hi, |i| at(i) == Some(t));
        (l, h)
    }

    /// The maximal spans of `query` of at least `min_len` tokens found in the index.
    pub fn find(&self, query: &[i64], min_len: usize) -> Vec<Span> {
        let mut out: Vec<Span> = Vec::new();
        let mut covered = 0;
        for start in 0..query.len() {
            let (mut lo, mut hi, mut len) = (0, self.sa.len(), 0);
            while start + len < query.len() {
                let Ok(t) = token(query[start + len]) else {
                    break;
                };
                let (l, h) = self.narrow(lo, hi, len, t);
                if l == h {
                    break;
                }
                (lo, hi, len) = (l, h, len + 1);
            }
            if len >= min_len.max(1) && start + len > covered {
                covered = start + len;
                out.push(Span {
                    start,
                    len,
                    occurrences: (hi - lo) as u64,
                    contributions: self.holders(lo, hi),
                });
            }
        }
        out
    }

    fn holders(&self, lo: usize, hi: usize) -> Vec<(usize, u64)> {
        let mut counts = std::collections::BTreeMap::new();
        for &p in &self.sa[lo..hi] {
            let doc = self.starts.partition_point(|&s| s as usize <= p as usize) - 1;
            *counts.entry(doc).or_insert(0u64) += 1;
        }
        let mut v: Vec<(usize, u64)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Writes `spans.bin` (tokens, suffix array, starts; little-endian) and `spans.json` (ids).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut buf = Vec::with_capacity(self.bytes() + 16);
        for n in [self.tokens.len(), self.starts.len()] {
            buf.extend_from_slice(&(n as u64).to_le_bytes());
        }
        buf.extend(self.tokens.iter().flat_map(|t| t.to_le_bytes()));
        buf.extend(self.sa.iter().flat_map(|t| t.to_le_bytes()));
        buf.extend(self.starts.iter().flat_map(|t| t.to_le_bytes()));
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).map_err(|e| Error::Io(p.display().to_string(), e))
        };
        write("spans.bin", &buf)?;
        write("spans.json", &serde_json::to_vec(&self.ids).expect("json"))
    }

    /// Reads what [`SpanIndex::save`] wrote.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| Error::Io(p.display().to_string(), e))
        };
        let buf = read("spans.bin")?;
        let bad = || {
            Error::InvalidInput(format!(
                "{}: not a span index",
                dir.join("spans.bin").display()
            ))
        };
        let word = |i: usize| -> Result<usize> {
            let b = buf.get(i * 8..i * 8 + 8).ok_or_else(bad)?;
            Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        };
        let (n, docs) = (word(0)?, word(1)?);
        if buf.len() != 16 + n * 6 + docs * 4 {
            return Err(bad());
        }
        let body = &buf[16..];
        let tokens = body[..n * 2]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let sa = body[n * 2..n * 6]
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4")))
            .collect();
        let starts = body[n * 6..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
            .collect();
        let ids: Vec<String> = serde_json::from_slice(&read("spans.json")?).map_err(|_| bad())?;
        if ids.len() != docs {
            return Err(bad());
        }
        Ok(SpanIndex {
            tokens,
            sa,
            starts,
            ids,
        })
    }
}

/// The first index in `[lo, hi)` where `pred` is false (`pred` is true, then false).
fn first_not(mut lo: usize, mut hi: usize, pred: impl Fn(usize) -> bool) -> usize {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn too_long() -> Error {
    Error::InvalidInput(
        "the snapshot has more than 2^31 tokens: too many for one span index".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<(String, Vec<i64>)> {
        vec![
            ("a".into(), vec![5, 6, 7, 8, 9]),
            ("b".into(), vec![1, 2, 3, 6, 7, 8]),
            ("c".into(), vec![6, 7, 8, 1, 2]),
        ]
    }

    #[test]
    fn maximal_spans_and_their_holders() {
        let idx = SpanIndex::build(&docs(), 0).unwrap();
        // [6 7 8] occurs in all three; [8 9] only in a; [1 2 3] only in b.
        let found = idx.find(&[4, 6, 7, 8, 9, 1, 2, 3], 2);
        let short: Vec<_> = found
            .iter()
            .map(|s| (s.start, s.len, s.occurrences))
            .collect();
        assert_eq!(short, [(1, 4, 1), (5, 3, 1)], "{found:?}");
        assert_eq!(found[0].contributions, [(0, 1)]);
        assert_eq!(found[1].contributions, [(1, 1)]);
        let s = idx.find(&[6, 7, 8], 3);
        assert_eq!(s[0].occurrences, 3);
        assert_eq!(s[0].contributions, [(0, 1), (1, 1), (2, 1)]);
        // No span crosses a boundary: [9 1 2] is not in the data (9 ends a).
        assert!(idx.find(&[9, 1, 2], 3).is_empty());
    }

    #[test]
    fn a_saved_index_loads_the_same() {
        let idx = SpanIndex::build(&docs(), 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        idx.save(dir.path()).unwrap();
        let back = SpanIndex::load(dir.path()).unwrap();
        assert_eq!(back.find(&[1, 2, 3, 6], 2), idx.find(&[1, 2, 3, 6], 2));
        assert_eq!(idx.bytes(), 19 * 6 + 3 * 4); // 16 tokens and 3 separators
        assert!(SpanIndex::build(&[("x".into(), vec![70_000])], 0).is_err());
    }
}
