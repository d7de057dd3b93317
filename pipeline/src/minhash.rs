//! Near-duplicate detection: MinHash signatures over word 3-shingles, with LSH banding so a
//! lookup touches only likely matches, then an estimated-Jaccard check against the threshold.

use std::collections::HashMap;

/// Hash functions per signature.
const HASHES: usize = 128;

/// A MinHash signature.
pub type Signature = [u64; HASHES];

/// An index of signatures answering "is anything at least `threshold` similar?".
#[derive(Debug)]
pub struct NearDupIndex {
    threshold: f64,
    bands: usize,
    rows: usize,
    signatures: Vec<Signature>,
    buckets: HashMap<(u16, u64), Vec<u32>>,
}

impl NearDupIndex {
    /// An empty index for Jaccard similarity `threshold` in (0, 1].
    pub fn new(threshold: f64) -> Self {
        // Pick the banding whose S-curve midpoint (1/b)^(1/r) sits well below the threshold,
        // so true near-duplicates almost always share a bucket; the exact check follows.
        let (bands, rows) = [(8usize, 16usize), (16, 8), (32, 4), (64, 2)]
            .into_iter()
            .find(|(b, r)| (1.0 / *b as f64).powf(1.0 / *r as f64) <= threshold - 0.15)
            .unwrap_or((64, 2));
        Self {
            threshold,
            bands,
            rows,
            signatures: Vec::new(),
            buckets: HashMap::new(),
        }
    }

    /// The most similar indexed text's estimated similarity, when it reaches the threshold.
    pub fn find(&self, sig: &Signature) -> Option<f64> {
        let mut best: Option<f64> = None;
        for band in 0..self.bands {
            let Some(ids) = self.buckets.get(&(band as u16, self.band_hash(sig, band))) else {
                continue;
            };
            for &id in ids {
                let s = similarity(sig, &self.signatures[id as usize]);
                if s >= self.threshold && best.is_none_or(|b| s > b) {
                    best = Some(s);
                }
            }
        }
        best
    }

    /// Adds a signature.
    pub fn insert(&mut self, sig: Signature) {
        let id = self.signatures.len() as u32;
        for band in 0..self.bands {
            let key = (band as u16, self.band_hash(&sig, band));
            self.buckets.entry(key).or_default().push(id);
        }
        self.signatures.push(sig);
    }

    /// Number of indexed texts.
    pub fn len(&self) -> usize {
        self.signatures.len()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.signatures.is_empty()
    }

    fn band_hash(&self, sig: &Signature, band: usize) -> u64 {
        sig[band * self.rows..(band + 1) * self.rows]
            .iter()
            .fold(0x9e37_79b9_7f4a_7c15, |h, v| mix(h ^ v))
    }
}

/// The MinHash signature of `text` (lowercased word 3-shingles).
pub fn signature(text: &str) -> Signature {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    let mut sig = [u64::MAX; HASHES];
    let mut add = |shingle: u64| {
        for (i, slot) in sig.iter_mut().enumerate() {
            let h = mix(shingle ^ SEEDS[i]);
            if h < *slot {
                *slot = h;
            }
        }
    };
    if words.len() < 3 {
        add(fnv(words.iter().map(String::as_str)));
    } else {
        for w in words.windows(3) {
            add(fnv(w.iter().map(String::as_str)));
        }
    }
    sig
}

/// Estimated Jaccard similarity: the share of equal slots.
pub fn similarity(a: &Signature, b: &Signature) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / HASHES as f64
}

fn fnv<'a>(words: impl Iterator<Item = &'a str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in words {
        for b in w.bytes().chain([0x1f]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// splitmix64's finaliser: a strong 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fixed seeds: signatures are comparable across runs and machines.
const SEEDS: [u64; HASHES] = {
    let mut s = [0u64; HASHES];
    let mut x: u64 = 0x5452_4942_5554_4152; // "TRIBUTAR"
    let mut i = 0;
    while i < HASHES {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        s[i] = z ^ (z >> 31);
        i += 1;
    }
    s
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_copies_are_found_and_different_texts_are_not() {
        let base = "one cup of all purpose flour weighs about one hundred and twenty five grams in most kitchens";
        let mut idx = NearDupIndex::new(0.7);
        idx.insert(signature(base));
        let near = "one cup of all purpose flour weighs about one hundred and twenty five grams in many kitchens";
        assert!(idx.find(&signature(near)).is_some(), "one word changed");
        assert!(
            idx.find(&signature(&base.to_uppercase())).is_some(),
            "case does not matter"
        );
        let other = "two tablespoons of honey weigh about forty two grams and dissolve in warm water quickly";
        assert_eq!(idx.find(&signature(other)), None);
        assert_eq!(similarity(&signature(base), &signature(base)), 1.0);
    }
}
