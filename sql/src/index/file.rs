//! The index's snapshot file: the in-memory graph as it stood after one store operation, so
//! a restart reads one file and replays only the operations after it, instead of reading every
//! node and edge from the store.
//!
//! Layout (little endian): `TRIBLIX1`, chain id, operation number, newest block, frozen edge
//! count, the store's id, the node ids (one string and its ends), kinds, row blocks, the edges
//! (block, weight, source, destination, kind), and a checksum of everything before it. It is
//! written to a temporary file and renamed, so a crash leaves the old file or the new one.

use std::path::Path;

use super::mem::{EDGE_KINDS, Interner, Link, Mem};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"TRIBLIX1";

/// What a snapshot file holds besides the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) chain_id: u64,
    pub(crate) seq: u64,
    pub(crate) head: u64,
    pub(crate) store_id: String,
}

/// The bytes of a snapshot of `mem` (taken under the read lock; written out after it).
pub(crate) fn encode(h: &Header, mem: &Mem) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + mem.ids.text.len() + mem.edges.len() * 25);
    out.extend_from_slice(MAGIC);
    for v in [h.chain_id, h.seq, h.head, mem.frozen as u64] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    put_bytes(&mut out, h.store_id.as_bytes());
    put_bytes(&mut out, mem.ids.text.as_bytes());
    out.extend_from_slice(&(mem.ids.ends.len() as u64).to_le_bytes());
    for e in &mem.ids.ends {
        out.extend_from_slice(&e.to_le_bytes());
    }
    out.extend_from_slice(&mem.kinds);
    for r in &mem.rows {
        out.extend_from_slice(&r.to_le_bytes());
    }
    out.extend_from_slice(&(mem.edges.len() as u64).to_le_bytes());
    for e in &mem.edges {
        out.extend_from_slice(&e.block.to_le_bytes());
        out.extend_from_slice(&e.weight.to_bits().to_le_bytes());
        out.extend_from_slice(&e.src.to_le_bytes());
        out.extend_from_slice(&e.dst.to_le_bytes());
        out.push(e.kind);
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let io =
        |e: std::io::Error| Error::Config(format!("lineage index file {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // A name of its own, so two writers never share a temporary file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads a snapshot; `None` with the reason when it is missing, damaged or of another format.
pub(crate) fn read(path: &Path) -> std::result::Result<(Header, Mem), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    decode(&bytes)
}

fn decode(bytes: &[u8]) -> std::result::Result<(Header, Mem), String> {
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err("not a lineage index file of this version".into());
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if checksum(body).to_le_bytes() != sum {
        return Err("checksum differs: the file is damaged".into());
    }
    let mut r = Reader { b: body, at: 8 };
    let (chain_id, seq, head, frozen) = (r.u64()?, r.u64()?, r.u64()?, r.u64()? as usize);
    let store_id = String::from_utf8(r.bytes()?.to_vec()).map_err(|e| e.to_string())?;
    let text = String::from_utf8(r.bytes()?.to_vec()).map_err(|e| e.to_string())?;
    let n = r.u64()? as usize;
    let ends = (0..n)
        .map(|_| r.u64())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if ends.windows(2).any(|w| w[0] > w[1])
        || ends.last().is_some_and(|&e| e as usize != text.len())
        || ends.iter().any(|&e| !text.is_char_boundary(e as usize))
    {
        return Err("node ids are out of order".into());
    }
    let kinds = r.take(n)?.to_vec();
    let rows = (0..n)
        .map(|_| r.u64())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let m = r.u64()? as usize;
    let mut edges = Vec::with_capacity(m);
    for _ in 0..m {
        let link = Link {
            block: r.u64()?,
            weight: f64::from_bits(r.u64()?),
            src: r.u32()?,
            dst: r.u32()?,
            kind: r.take(1)?[0],
        };
        if link.src as usize >= n
            || link.dst as usize >= n
            || link.kind as usize >= EDGE_KINDS.len()
        {
            return Err("an edge names a node or kind that is not there".into());
        }
        edges.push(link);
    }
    if r.at != body.len() || frozen > m {
        return Err("the file's parts do not add up".into());
    }
    let mem = Mem::from_parts(Interner::from_parts(text, ends), kinds, rows, edges, frozen);
    let h = Header {
        chain_id,
        seq,
        head,
        store_id,
    };
    Ok((h, mem))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let s = self
            .b
            .get(self.at..self.at.checked_add(n).ok_or("too long")?)
            .ok_or("the file ends early")?;
        self.at += n;
        Ok(s)
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn bytes(&mut self) -> std::result::Result<&[u8], String> {
        let n = self.u64()? as usize;
        self.take(n)
    }
}

/// A 64-bit checksum over 8-byte words (damage, not tampering, is what it finds).
fn checksum(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ b.len() as u64;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("8"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    for &x in words.remainder() {
        h = (h.rotate_left(5) ^ u64::from(x)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_schemas::lineage::EdgeKind;

    #[test]
    fn a_snapshot_reads_back_and_damage_is_refused() {
        let mut mem = Mem::default();
        mem.add_row("adapter:0x01", 3);
        mem.add_edge(
            "inference:0x02",
            "adapter:0x01",
            EdgeKind::ServedBy,
            None,
            4,
        );
        mem.add_edge(
            "answer:0x03",
            "contribution:0x04",
            EdgeKind::AttributedTo,
            Some(0.25),
            5,
        );
        mem.freeze(1);
        let h = Header {
            chain_id: 7,
            seq: 9,
            head: 5,
            store_id: "s".into(),
        };
        let bytes = encode(&h, &mem);
        let (h2, back) = decode(&bytes).unwrap();
        assert_eq!(h2, h);
        assert_eq!(back.edges.len(), 2);
        assert_eq!(back.frozen, 1);
        assert_eq!(
            back.ids.find("contribution:0x04"),
            mem.ids.find("contribution:0x04")
        );
        assert_eq!(back.rows, mem.rows);
        assert_eq!(back.edges[1].weight, 0.25);
        let mut bad = bytes.clone();
        bad[40] ^= 1;
        assert!(decode(&bad).err().unwrap().contains("damaged"));
        assert!(decode(&bytes[..bytes.len() - 3]).is_err());
    }
}
