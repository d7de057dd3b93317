//! Span matching in the style of infini-gram: a suffix array over a snapshot's token stream
//! (contributions joined by the end-of-text token, so no match crosses a boundary), built once
//! with libsais and stored next to the adapter. For an output, [`SpanIndex::find`] returns the
//! maximal spans of at least `n` tokens that occur in the training data, with the
//! contributions holding them and how often.
//!
//! Suffix positions are i32 and tokens u16 where the vocabulary fits (6 bytes per token, plus
//! the contributions' starts and ids; infini-gram reports about 7), u32 where it does not
//! (Llama 3, Qwen: 8 bytes per token). Contribution ids that are 32-byte hashes (`0x` and 64
//! lowercase hex digits, as Tributary's are) are stored as 32 bytes each, others as JSON.
//! Streams above 2^31 tokens are refused with a clear error.

use std::path::Path;

use libsais::SuffixArrayConstruction;

use crate::{Error, Result};

/// A snapshot's token stream, as narrow as its largest token allows.
enum Tokens {
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl Tokens {
    fn len(&self) -> usize {
        match self {
            Tokens::U16(t) => t.len(),
            Tokens::U32(t) => t.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, i: usize) -> Option<u32> {
        match self {
            Tokens::U16(t) => t.get(i).map(|&x| u32::from(x)),
            Tokens::U32(t) => t.get(i).copied(),
        }
    }

    /// Bytes per token.
    fn width(&self) -> usize {
        match self {
            Tokens::U16(_) => 2,
            Tokens::U32(_) => 4,
        }
    }
}

/// A suffix array over a snapshot's tokens.
pub struct SpanIndex {
    tokens: Tokens,
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

/// A token id as the index stores it (libsais sorts non-negative i32 symbols).
fn token(t: i64) -> Result<u32> {
    u32::try_from(t)
        .ok()
        .filter(|&t| t < i32::MAX as u32)
        .ok_or_else(|| Error::InvalidInput(format!("token id {t} is not a vocabulary index")))
}

impl SpanIndex {
    /// Builds the index over `docs` (id, token ids), joined by `eot`.
    pub fn build(docs: &[(String, Vec<i64>)], eot: i64) -> Result<Self> {
        let eot = token(eot)?;
        let mut stream: Vec<u32> = Vec::new();
        let mut starts = Vec::with_capacity(docs.len());
        for (_, ids) in docs {
            starts.push(u32::try_from(stream.len()).map_err(|_| too_long())?);
            for &t in ids {
                stream.push(token(t)?);
            }
            stream.push(eot);
        }
        if stream.len() >= i32::MAX as usize {
            return Err(too_long());
        }
        let suffixes = |e: libsais::LibsaisError| Error::Internal(format!("suffix array: {e:?}"));
        let largest = stream.iter().copied().max().unwrap_or(0);
        let (tokens, sa) = if stream.is_empty() {
            (Tokens::U16(Vec::new()), Vec::new())
        } else if largest <= u32::from(u16::MAX) {
            let narrow: Vec<u16> = stream.iter().map(|&t| t as u16).collect();
            let sa = SuffixArrayConstruction::for_text(&narrow)
                .in_owned_buffer32()
                .single_threaded()
                .run()
                .map_err(suffixes)?
                .into_vec();
            (Tokens::U16(narrow), sa)
        } else {
            // Large alphabets sort as i32 symbols (libsais restores the text afterwards).
            let mut wide: Vec<i32> = stream.iter().map(|&t| t as i32).collect();
            let sa = SuffixArrayConstruction::for_text_mut(&mut wide)
                .in_owned_buffer32()
                .single_threaded()
                .run()
                .map_err(suffixes)?
                .into_vec();
            (Tokens::U32(stream), sa)
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

    /// Bytes the index takes as stored, less the 32-byte header: tokens, suffix array,
    /// boundaries and the contribution ids.
    pub fn bytes(&self) -> usize {
        let ids = if self.ids.iter().all(|id| hash_of(id).is_some()) {
            self.ids.len() * 32
        } else {
            self.ids_json().len()
        };
        self.tokens.len() * self.tokens.width() + self.sa.len() * 4 + self.starts.len() * 4 + ids
    }

    fn ids_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.ids).expect("strings serialize")
    }

    /// The ids as 32-byte hashes, when every one is `0x` and 64 lowercase hex digits.
    fn hashes(&self) -> Option<Vec<[u8; 32]>> {
        self.ids.iter().map(|id| hash_of(id)).collect()
    }

    /// The suffix-array range whose suffixes start with `prefix[..depth]` followed by `t`,
    /// within `[lo, hi)` (where all share `prefix[..depth]`).
    fn narrow(&self, lo: usize, hi: usize, depth: usize, t: u32) -> (usize, usize) {
        let at = |i: usize| {
            let p = self.sa[i] as usize + depth;
            self.tokens.get(p)
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

    /// Writes `spans.bin`: a header of four little-endian u64 (tokens, contributions, bytes
    /// per token, bytes per id: 32, or 0 when the ids are in `spans.json`), then tokens,
    /// suffix array, starts and the ids as hashes. `spans.json` holds the ids only when they
    /// are not all hashes.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let hashes = self.hashes();
        let id_bytes = if hashes.is_some() { 32 } else { 0 };
        let mut buf = Vec::with_capacity(self.bytes() + 32);
        for n in [
            self.tokens.len(),
            self.starts.len(),
            self.tokens.width(),
            id_bytes,
        ] {
            buf.extend_from_slice(&(n as u64).to_le_bytes());
        }
        match &self.tokens {
            Tokens::U16(t) => buf.extend(t.iter().flat_map(|t| t.to_le_bytes())),
            Tokens::U32(t) => buf.extend(t.iter().flat_map(|t| t.to_le_bytes())),
        }
        buf.extend(self.sa.iter().flat_map(|t| t.to_le_bytes()));
        buf.extend(self.starts.iter().flat_map(|t| t.to_le_bytes()));
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).map_err(|e| Error::Io(p.display().to_string(), e))
        };
        let json = dir.join("spans.json");
        match hashes {
            Some(h) => {
                buf.extend(h.iter().flatten());
                // A stale one from an earlier save must not be stored with this index.
                match std::fs::remove_file(&json) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::Io(json.display().to_string(), e));
                    }
                    _ => {}
                }
            }
            None => write("spans.json", &self.ids_json())?,
        }
        write("spans.bin", &buf)
    }

    /// Reads what [`SpanIndex::save`] wrote, or the earlier format (a two-word header, u16
    /// tokens, ids in `spans.json`) that adapters published before it carry.
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
        let size = |header: usize, width: usize, id_bytes: usize| {
            let per_doc = docs.checked_mul(4 + id_bytes)?;
            n.checked_mul(width + 4)?.checked_add(header + per_doc)
        };
        let (body, width, id_bytes) = if size(16, 2, 0) == Some(buf.len()) {
            (&buf[16..], 2, 0)
        } else {
            let (width, id_bytes) = (word(2)?, word(3)?);
            if !matches!(width, 2 | 4)
                || !matches!(id_bytes, 0 | 32)
                || size(32, width, id_bytes) != Some(buf.len())
            {
                return Err(bad());
            }
            (&buf[32..], width, id_bytes)
        };
        let (tokens, rest) = body.split_at(n * width);
        let (sa, rest) = rest.split_at(n * 4);
        let (starts, hashes) = rest.split_at(docs * 4);
        let tokens = if width == 2 {
            Tokens::U16(
                tokens
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            )
        } else {
            Tokens::U32(
                tokens
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
                    .collect(),
            )
        };
        let sa = sa
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4")))
            .collect();
        let starts = starts
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
            .collect();
        let ids: Vec<String> = if id_bytes == 32 {
            hashes
                .chunks_exact(32)
                .map(|h| crate::hex(h.try_into().expect("32 bytes")))
                .collect()
        } else {
            serde_json::from_slice(&read("spans.json")?).map_err(|_| bad())?
        };
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

/// The 32 bytes of `0x` and 64 lowercase hex digits (the form that prints back the same).
fn hash_of(id: &str) -> Option<[u8; 32]> {
    let hex = id.strip_prefix("0x")?.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
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
        // 16 tokens and 3 separators at 2 + 4 bytes, 3 starts, and the ids as JSON.
        assert_eq!(idx.bytes(), 19 * 6 + 3 * 4 + r#"["a","b","c"]"#.len());
        assert_eq!(
            std::fs::metadata(dir.path().join("spans.bin"))
                .unwrap()
                .len() as usize
                + std::fs::metadata(dir.path().join("spans.json"))
                    .unwrap()
                    .len() as usize,
            idx.bytes() + 32,
            "bytes() is what is stored, less the header"
        );
    }

    #[test]
    fn a_vocabulary_past_u16_is_indexed_with_u32_tokens() {
        // Llama 3 and Qwen have over 128,000 tokens: the same data shifted past 2^16 finds the
        // same spans.
        let shift = |d: Vec<(String, Vec<i64>)>| -> Vec<(String, Vec<i64>)> {
            d.into_iter()
                .map(|(id, t)| (id, t.into_iter().map(|x| x + 150_000).collect()))
                .collect()
        };
        let small = SpanIndex::build(&docs(), 0).unwrap();
        let large = SpanIndex::build(&shift(docs()), 150_000).unwrap();
        let query = [4, 6, 7, 8, 9, 1, 2, 3];
        let shifted: Vec<i64> = query.iter().map(|x| x + 150_000).collect();
        assert_eq!(large.find(&shifted, 2), small.find(&query, 2));
        assert_eq!(
            large.bytes() - small.bytes(),
            19 * 2,
            "2 more bytes per token"
        );
        let dir = tempfile::tempdir().unwrap();
        large.save(dir.path()).unwrap();
        let back = SpanIndex::load(dir.path()).unwrap();
        assert_eq!(back.find(&shifted, 2), large.find(&shifted, 2));
        // A query token past the vocabulary matches nothing; a negative one is an error.
        assert!(large.find(&[u32::MAX as i64 + 1], 1).is_empty());
        assert!(SpanIndex::build(&[("x".into(), vec![-1])], 0).is_err());
    }

    #[test]
    fn hash_ids_are_stored_as_32_bytes_and_read_back_the_same() {
        let id = |n: u8| format!("0x{}", format!("{n:02x}").repeat(32));
        let hashed: Vec<(String, Vec<i64>)> = docs()
            .into_iter()
            .enumerate()
            .map(|(i, (_, t))| (id(i as u8 + 0xa0), t))
            .collect();
        let idx = SpanIndex::build(&hashed, 0).unwrap();
        assert_eq!(idx.bytes(), 19 * 6 + 3 * 4 + 3 * 32);
        let dir = tempfile::tempdir().unwrap();
        // A JSON id table from an earlier save of other ids is removed.
        SpanIndex::build(&docs(), 0)
            .unwrap()
            .save(dir.path())
            .unwrap();
        idx.save(dir.path()).unwrap();
        assert!(!dir.path().join("spans.json").exists());
        let back = SpanIndex::load(dir.path()).unwrap();
        assert_eq!(back.ids, idx.ids);
        assert_eq!(back.find(&[6, 7, 8], 3), idx.find(&[6, 7, 8], 3));
        // Upper-case or short ids stay JSON (they would not print back the same).
        assert!(hash_of(&id(0xab).to_uppercase().replace("0X", "0x")).is_none());
        assert!(hash_of("0xabc").is_none());
    }

    #[test]
    fn an_index_in_the_earlier_format_still_loads() {
        // Adapters published before the width word: two u64 counts, then u16 tokens.
        let idx = SpanIndex::build(&docs(), 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        idx.save(dir.path()).unwrap();
        let bin = dir.path().join("spans.bin");
        let mut old = std::fs::read(&bin).unwrap();
        old.drain(16..32);
        std::fs::write(&bin, old).unwrap();
        let back = SpanIndex::load(dir.path()).unwrap();
        assert_eq!(back.find(&[6, 7, 8, 9], 2), idx.find(&[6, 7, 8, 9], 2));
        std::fs::write(&bin, b"not an index").unwrap();
        assert!(SpanIndex::load(dir.path()).is_err());
    }
}
