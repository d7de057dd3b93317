//! Span matching in the style of infini-gram: a suffix array over a snapshot's token stream
//! (contributions joined by the end-of-text token, so no match crosses a boundary), built once
//! with libsais and stored next to the adapter. For an output, [`SpanIndex::find`] returns the
//! maximal spans of at least `n` tokens that occur in the training data, with the
//! contributions holding them and how often.
//!
//! Tokens, suffix positions and the contributions' starts are bit-packed, each as narrow as
//! its largest value allows: a token takes 17 bits for Llama 3's vocabulary and 18 for Qwen's,
//! a position 26 bits in a stream of 50 million tokens (infini-gram stores u16 tokens and whole
//! bytes per position, about 7 bytes per token). Contribution ids that are 32-byte hashes
//! (`0x` and 64 lowercase hex digits, as Tributary's are) are stored as 32 bytes each, others
//! as JSON. Streams above 2^31 tokens are refused with a clear error.

use std::path::Path;

use libsais::SuffixArrayConstruction;

use crate::{Error, Result};

/// Unsigned integers of `bits` bits each (1 to 32), packed end to end into little-endian
/// 64-bit words, followed by one zero word so that reading any value takes two whole words.
struct Packed {
    bits: u32,
    len: usize,
    words: Vec<u64>,
}

impl Packed {
    fn new(bits: u32, values: impl ExactSizeIterator<Item = u64>) -> Self {
        let len = values.len();
        let mut words = vec![0u64; (len * bits as usize).div_ceil(64) + 1];
        for (i, v) in values.enumerate() {
            debug_assert!(v >> bits == 0, "{v} does not fit {bits} bits");
            let at = i * bits as usize;
            let (w, s) = (at / 64, at % 64);
            words[w] |= v << s;
            if s + bits as usize > 64 {
                words[w + 1] |= v >> (64 - s);
            }
        }
        Packed { bits, len, words }
    }

    fn get(&self, i: usize) -> u64 {
        let at = i * self.bits as usize;
        let (w, s) = (at / 64, at % 64);
        let two = (u128::from(self.words[w + 1]) << 64) | u128::from(self.words[w]);
        (two >> s) as u64 & ((1u64 << self.bits) - 1)
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Bytes as stored: the bits rounded up to a whole byte.
    fn bytes(&self) -> usize {
        (self.len * self.bits as usize).div_ceil(8)
    }

    fn write(&self, out: &mut Vec<u8>) {
        let stored = self.bytes();
        out.extend(self.words.iter().flat_map(|w| w.to_le_bytes()).take(stored));
    }

    /// Reads what [`Packed::write`] wrote; `None` unless `bytes` holds exactly that.
    fn read(bits: u32, len: usize, bytes: &[u8]) -> Option<Self> {
        if !(1..=32).contains(&bits) || (len * bits as usize).div_ceil(8) != bytes.len() {
            return None;
        }
        let mut words = vec![0u64; (len * bits as usize).div_ceil(64) + 1];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        Some(Packed { bits, len, words })
    }

    /// Values stored whole, `width` little-endian bytes each (the formats before packing).
    fn from_bytes(width: usize, bytes: &[u8]) -> Self {
        let values = bytes.chunks_exact(width).map(|c| {
            let mut b = [0u8; 8];
            b[..width].copy_from_slice(c);
            u64::from_le_bytes(b)
        });
        Packed::new(8 * width as u32, values)
    }
}

/// The bits that hold every value up to `largest` (at least one).
fn bits_for(largest: u64) -> u32 {
    (u64::BITS - largest.leading_zeros()).max(1)
}

/// A suffix array over a snapshot's tokens.
pub struct SpanIndex {
    tokens: Packed,
    /// Suffix positions, in the suffixes' order.
    sa: Packed,
    /// Where each contribution starts in `tokens`, ascending.
    starts: Packed,
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

/// The first word of a packed `spans.bin`; earlier formats start with the token count.
const PACKED: u64 = u64::from_le_bytes(*b"spans/v3");
/// The packed format's header: six little-endian u64 words.
const HEADER: usize = 48;

impl SpanIndex {
    /// Builds the index over `docs` (id, token ids), joined by `eot`.
    pub fn build(docs: &[(String, Vec<i64>)], eot: i64) -> Result<Self> {
        let eot = token(eot)?;
        let mut stream: Vec<u32> = Vec::new();
        let mut starts = Vec::with_capacity(docs.len());
        for (_, ids) in docs {
            starts.push(stream.len() as u64);
            for &t in ids {
                stream.push(token(t)?);
            }
            stream.push(eot);
            if stream.len() >= i32::MAX as usize {
                return Err(too_long());
            }
        }
        let suffixes = |e: libsais::LibsaisError| Error::Internal(format!("suffix array: {e:?}"));
        let largest = stream.iter().copied().max().unwrap_or(0);
        let sa = if stream.is_empty() {
            Vec::new()
        } else if largest <= u32::from(u16::MAX) {
            let narrow: Vec<u16> = stream.iter().map(|&t| t as u16).collect();
            SuffixArrayConstruction::for_text(&narrow)
                .in_owned_buffer32()
                .single_threaded()
                .run()
                .map_err(suffixes)?
                .into_vec()
        } else {
            // Large alphabets sort as i32 symbols (libsais restores the text afterwards).
            let mut wide: Vec<i32> = stream.iter().map(|&t| t as i32).collect();
            SuffixArrayConstruction::for_text_mut(&mut wide)
                .in_owned_buffer32()
                .single_threaded()
                .run()
                .map_err(suffixes)?
                .into_vec()
        };
        let position = bits_for(stream.len().saturating_sub(1) as u64);
        Ok(SpanIndex {
            tokens: Packed::new(
                bits_for(u64::from(largest)),
                stream.iter().map(|&t| u64::from(t)),
            ),
            sa: Packed::new(position, sa.iter().map(|&p| p as u64)),
            starts: Packed::new(position, starts.into_iter()),
            ids: docs.iter().map(|(id, _)| id.clone()).collect(),
        })
    }

    /// Tokens indexed.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.tokens.len() == 0
    }

    /// Bytes the index takes as stored, less the header: tokens, suffix array, boundaries and
    /// the contribution ids.
    pub fn bytes(&self) -> usize {
        let ids = if self.ids.iter().all(|id| hash_of(id).is_some()) {
            self.ids.len() * 32
        } else {
            self.ids_json().len()
        };
        self.tokens.bytes() + self.sa.bytes() + self.starts.bytes() + ids
    }

    /// Bits per token and per position, as stored.
    pub fn widths(&self) -> (u32, u32) {
        (self.tokens.bits, self.sa.bits)
    }

    fn ids_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.ids).expect("strings serialize")
    }

    /// The ids as 32-byte hashes, when every one is `0x` and 64 lowercase hex digits.
    fn hashes(&self) -> Option<Vec<[u8; 32]>> {
        self.ids.iter().map(|id| hash_of(id)).collect()
    }

    /// The token at `p` in the stream, `None` past its end.
    fn token_at(&self, p: usize) -> Option<u32> {
        (p < self.tokens.len()).then(|| self.tokens.get(p) as u32)
    }

    /// The suffix-array range whose suffixes start with `prefix[..depth]` followed by `t`,
    /// within `[lo, hi)` (where all share `prefix[..depth]`).
    fn narrow(&self, lo: usize, hi: usize, depth: usize, t: u32) -> (usize, usize) {
        let at = |i: usize| self.token_at(self.sa.get(i) as usize + depth);
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
        for i in lo..hi {
            let p = self.sa.get(i);
            let doc = first_not(0, self.starts.len(), |d| self.starts.get(d) <= p) - 1;
            *counts.entry(doc).or_insert(0u64) += 1;
        }
        let mut v: Vec<(usize, u64)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Writes `spans.bin`: a header of six little-endian u64 words (`spans/v3`, tokens,
    /// contributions, bits per token, bits per position, bytes per id: 32, or 0 when the ids
    /// are in `spans.json`), then the packed tokens, suffix array and starts, each padded to
    /// a whole byte, and the ids as hashes. `spans.json` holds the ids only when they are not
    /// all hashes.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let hashes = self.hashes();
        let id_bytes = if hashes.is_some() { 32 } else { 0 };
        let mut buf = Vec::with_capacity(self.bytes() + HEADER);
        buf.extend_from_slice(&PACKED.to_le_bytes());
        for n in [
            self.tokens.len(),
            self.starts.len(),
            self.tokens.bits as usize,
            self.sa.bits as usize,
            id_bytes,
        ] {
            buf.extend_from_slice(&(n as u64).to_le_bytes());
        }
        self.tokens.write(&mut buf);
        self.sa.write(&mut buf);
        self.starts.write(&mut buf);
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

    /// Reads what [`SpanIndex::save`] wrote, or the two earlier formats that adapters
    /// published before it carry: whole-byte values after a header of four words (tokens,
    /// contributions, bytes per token, bytes per id) or, first, two (u16 tokens, ids in
    /// `spans.json`); in both, i32 suffix positions and u32 starts.
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
        let (tokens, sa, starts, docs, id_bytes, hashes) = if word(0)? as u64 == PACKED {
            let (n, docs) = (word(1)?, word(2)?);
            let (token_bits, position_bits, id_bytes) = (word(3)?, word(4)?, word(5)?);
            let packed = |bits: usize, len: usize| len.checked_mul(bits).map(|b| b.div_ceil(8));
            let sizes = [
                packed(token_bits, n),
                packed(position_bits, n),
                packed(position_bits, docs),
                docs.checked_mul(id_bytes),
            ];
            let total = sizes
                .iter()
                .try_fold(HEADER, |sum, s| sum.checked_add((*s)?));
            if !matches!(id_bytes, 0 | 32) || total != Some(buf.len()) {
                return Err(bad());
            }
            let [t, p, s, _] = sizes.map(|s| s.expect("summed above"));
            let (tokens, rest) = buf[HEADER..].split_at(t);
            let (sa, rest) = rest.split_at(p);
            let (starts, hashes) = rest.split_at(s);
            let part = |bits: usize, len: usize, b: &[u8]| {
                Packed::read(u32::try_from(bits).unwrap_or(0), len, b).ok_or_else(bad)
            };
            (
                part(token_bits, n, tokens)?,
                part(position_bits, n, sa)?,
                part(position_bits, docs, starts)?,
                docs,
                id_bytes,
                hashes,
            )
        } else {
            let (n, docs) = (word(0)?, word(1)?);
            let size = |header: usize, width: usize, id_bytes: usize| {
                let per_doc = docs.checked_mul(4 + id_bytes)?;
                n.checked_mul(width + 4)?
                    .checked_add(per_doc)?
                    .checked_add(header)
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
            (
                Packed::from_bytes(width, tokens),
                Packed::from_bytes(4, sa),
                Packed::from_bytes(4, starts),
                docs,
                id_bytes,
                hashes,
            )
        };
        let ids: Vec<String> = if id_bytes == 32 {
            hashes
                .chunks_exact(32)
                .map(|h| crate::hex(h.try_into().expect("32 bytes")))
                .collect()
        } else {
            serde_json::from_slice(&read("spans.json")?).map_err(|_| bad())?
        };
        // Every position must fall in a contribution: the first starts at 0.
        let first = (starts.len() > 0).then(|| starts.get(0));
        if ids.len() != docs || (tokens.len() > 0 && first != Some(0)) {
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
        // 16 tokens and 3 separators at 4 bits (the largest is 9) and 5 bits per position (19
        // of them), 3 starts at 5 bits, and the ids as JSON.
        assert_eq!(idx.widths(), (4, 5));
        assert_eq!(idx.bytes(), 10 + 12 + 2 + r#"["a","b","c"]"#.len());
        assert_eq!(
            std::fs::metadata(dir.path().join("spans.bin"))
                .unwrap()
                .len() as usize
                + std::fs::metadata(dir.path().join("spans.json"))
                    .unwrap()
                    .len() as usize,
            idx.bytes() + HEADER,
            "bytes() is what is stored, less the header"
        );
    }

    #[test]
    fn a_vocabulary_past_u16_is_indexed_with_wider_tokens() {
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
        // 150,009 takes 18 bits, 9 takes 4.
        assert_eq!(large.widths(), (18, 5));
        assert_eq!(
            large.bytes() - small.bytes(),
            (19 * 18_usize).div_ceil(8) - 10
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
        assert_eq!(idx.bytes(), 10 + 12 + 2 + 3 * 32);
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
    fn packed_values_read_back_at_every_width() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for bits in 1..=32 {
            let values: Vec<u64> = (0..203)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (x >> 7) & ((1u64 << bits) - 1)
                })
                .collect();
            let p = Packed::new(bits, values.iter().copied());
            assert!(
                (0..values.len()).all(|i| p.get(i) == values[i]),
                "{bits} bits"
            );
            let mut stored = Vec::new();
            p.write(&mut stored);
            assert_eq!(stored.len(), (203 * bits as usize).div_ceil(8));
            let back = Packed::read(bits, values.len(), &stored).unwrap();
            assert!(
                (0..values.len()).all(|i| back.get(i) == values[i]),
                "{bits} bits"
            );
            assert!(Packed::read(bits, values.len() + 8, &stored).is_none());
        }
        assert_eq!(
            (bits_for(0), bits_for(1), bits_for(2), bits_for(255)),
            (1, 1, 2, 8)
        );
        assert_eq!(bits_for(151_935), 18);
    }

    /// `idx` as the formats before packing stored it: whole bytes per value, a header of
    /// `words` words (2: u16 tokens, ids in `spans.json`; 4: `width`-byte tokens, and the ids
    /// as 32-byte hashes when they all are).
    fn unpacked(idx: &SpanIndex, words: usize, width: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        let hashes = idx.hashes().filter(|_| words == 4);
        let id_bytes = if hashes.is_some() { 32 } else { 0 };
        let header = [idx.tokens.len(), idx.starts.len(), width, id_bytes];
        for n in &header[..words] {
            buf.extend_from_slice(&(*n as u64).to_le_bytes());
        }
        for i in 0..idx.tokens.len() {
            buf.extend_from_slice(&idx.tokens.get(i).to_le_bytes()[..width]);
        }
        for i in 0..idx.sa.len() {
            buf.extend_from_slice(&(idx.sa.get(i) as i32).to_le_bytes());
        }
        for i in 0..idx.starts.len() {
            buf.extend_from_slice(&(idx.starts.get(i) as u32).to_le_bytes());
        }
        buf.extend(hashes.iter().flatten().flatten());
        buf
    }

    #[test]
    fn an_index_in_the_earlier_formats_still_loads() {
        // Adapters published before packing: u16 tokens after two words, then u16 or u32
        // tokens after four.
        let idx = SpanIndex::build(&docs(), 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        idx.save(dir.path()).unwrap();
        let bin = dir.path().join("spans.bin");
        for (words, width) in [(2, 2), (4, 2), (4, 4)] {
            std::fs::write(&bin, unpacked(&idx, words, width)).unwrap();
            let back = SpanIndex::load(dir.path()).unwrap();
            assert_eq!(
                back.find(&[6, 7, 8, 9], 2),
                idx.find(&[6, 7, 8, 9], 2),
                "{words} words, {width}-byte tokens"
            );
        }
        // The four-word format with the ids as hashes (and no `spans.json`).
        let id = |n: usize| format!("0x{}", format!("{:02x}", n + 0xa0).repeat(32));
        let hashed: Vec<(String, Vec<i64>)> = docs()
            .into_iter()
            .enumerate()
            .map(|(i, (_, t))| (id(i), t))
            .collect();
        let hashed = SpanIndex::build(&hashed, 0).unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("spans.bin"), unpacked(&hashed, 4, 2)).unwrap();
        let back = SpanIndex::load(other.path()).unwrap();
        assert_eq!(back.ids, hashed.ids);
        assert_eq!(back.find(&[6, 7, 8], 3), hashed.find(&[6, 7, 8], 3));
        std::fs::write(&bin, b"not an index").unwrap();
        assert!(SpanIndex::load(dir.path()).is_err());
        // Counts whose sizes overflow, and starts that leave the first tokens outside every
        // contribution, are refused rather than read.
        let mut huge = Vec::new();
        for w in [1u64, 0x3fff_ffff_ffff_ffff] {
            huge.extend_from_slice(&w.to_le_bytes());
        }
        huge.extend_from_slice(&[0, 0]);
        std::fs::write(&bin, huge).unwrap();
        assert!(SpanIndex::load(dir.path()).is_err());
        let mut late = unpacked(&idx, 4, 2);
        let first_start = 32 + 19 * 6;
        late[first_start] = 1;
        std::fs::write(&bin, late).unwrap();
        assert!(SpanIndex::load(dir.path()).is_err());
        // A packed index cut short is refused, not read past its end.
        idx.save(dir.path()).unwrap();
        let whole = std::fs::read(&bin).unwrap();
        std::fs::write(&bin, &whole[..whole.len() - 1]).unwrap();
        assert!(SpanIndex::load(dir.path()).is_err());
    }
}
