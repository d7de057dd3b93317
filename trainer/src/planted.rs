//! Ground truth for attribution: a planted Datanet where contributor `i` alone owns
//! sub-domain `i` (its own nouns and qualities, in sentences of one shared shape), so the
//! right answer to "whose data shaped this output" is known. Used by the attribution tests
//! (reduced) and `make bench` (full).
//!
//! [`accuracy`] scores held-out documents of each sub-domain against an influence index and
//! counts how often the owner is the top-1 (top-3) contributor by summed share.
//! [`leave_one_out`] retrains without each contributor in turn and compares the rise in
//! held-out loss with the contributor's attribution credit (Spearman's rank correlation).
//! The held-out set for that comparison mixes the sub-domains unequally (`i + 1` documents of
//! sub-domain `i`), so removing different contributors costs different amounts and there is a
//! ranking to recover; a single sub-domain would rank only its owner above the noise.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use crate::influence::{InfluenceIndex, group_shares};
use crate::lora::Lora;
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use crate::train::{TrainConfig, train};
use crate::{Error, Result};

/// Sub-domains: nouns and qualities shared with no other sub-domain.
pub const DOMAINS: [(&str, &str); 8] = [
    (
        "star planet orbit comet nebula telescope",
        "bright distant icy silent",
    ),
    (
        "leaf root seed petal stem blossom",
        "green fragrant tender wild",
    ),
    (
        "drum chord tempo violin melody chorus",
        "loud minor rhythmic sweet",
    ),
    (
        "mast hull anchor sail harbor rudder",
        "salty sturdy windward anchored",
    ),
    (
        "pawn rook bishop knight castle gambit",
        "checkered clever pinned doubled",
    ),
    (
        "cloud storm rain frost thunder breeze",
        "stormy humid chilly foggy",
    ),
    (
        "rock quartz lava fossil crystal granite",
        "volcanic ancient layered porous",
    ),
    (
        "nurse fever pill wound bandage clinic",
        "sterile feverish healing sore",
    ),
];

/// A small seeded generator (a 64-bit LCG): the same documents on every machine.
pub struct Gen(pub u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, words: &'a str) -> &'a str {
        let v: Vec<&str> = words.split(' ').collect();
        v[(self.next() % v.len() as u64) as usize]
    }

    /// A document of sub-domain `domain`: three facts "The A of the B is Q.".
    pub fn document(&mut self, domain: usize) -> String {
        let (nouns, qualities) = DOMAINS[domain];
        (0..3)
            .map(|_| {
                let (a, b, q) = (self.pick(nouns), self.pick(nouns), self.pick(qualities));
                format!("The {a} of the {b} is {q}.")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One planted contribution.
#[derive(Debug, Clone)]
pub struct Doc {
    /// `c{owner}-{n}`.
    pub id: String,
    /// The contributor, which is also the sub-domain.
    pub owner: usize,
    /// Token ids.
    pub tokens: Vec<i64>,
}

/// `per_contributor` documents for each of `k` contributors (at most 8), interleaved.
pub fn datanet(tok: &Tokenizer, k: usize, per_contributor: usize, seed: u64) -> Result<Vec<Doc>> {
    if k == 0 || k > DOMAINS.len() {
        return Err(Error::InvalidInput(format!(
            "{k} contributors: the planted Datanet has 1 to {}",
            DOMAINS.len()
        )));
    }
    let mut g = Gen(seed);
    let mut docs = Vec::with_capacity(k * per_contributor);
    for n in 0..per_contributor {
        for owner in 0..k {
            docs.push(Doc {
                id: format!("c{owner}-{n}"),
                owner,
                tokens: tok.encode(&g.document(owner))?,
            });
        }
    }
    Ok(docs)
}

/// The contributor of a planted id (`c3-17` is 3).
pub fn owner(id: &str) -> Option<usize> {
    id.strip_prefix('c')?.split('-').next()?.parse().ok()
}

/// Each contributor's share for one query ([`group_shares`] by owner).
pub fn credit(index: &InfluenceIndex, scores: &[f64]) -> BTreeMap<usize, f64> {
    let owners: Vec<usize> = index
        .meta
        .ids
        .iter()
        .map(|id| owner(id).unwrap_or(usize::MAX))
        .collect();
    group_shares(&owners, scores)
}

/// Top-1 and top-3 hits over `per_domain` held-out documents of each of the `k` sub-domains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accuracy {
    /// Queries whose owner has the largest credit.
    pub top1: usize,
    /// Queries whose owner is among the three largest.
    pub top3: usize,
    /// Queries asked.
    pub queries: usize,
}

/// Asks the index about fresh documents of each sub-domain (seeded by `seed`).
pub fn accuracy(
    model: &Model,
    lora: &mut Lora,
    index: &InfluenceIndex,
    tok: &Tokenizer,
    k: usize,
    per_domain: usize,
    seed: u64,
) -> Result<Accuracy> {
    let mut g = Gen(seed);
    let mut acc = Accuracy {
        top1: 0,
        top3: 0,
        queries: 0,
    };
    for domain in 0..k {
        for _ in 0..per_domain {
            let query = tok.encode(&g.document(domain))?;
            let mut ranked: Vec<(usize, f64)> = credit(index, &index.scores(model, lora, &query)?)
                .into_iter()
                .collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            acc.top1 += usize::from(ranked.first().is_some_and(|r| r.0 == domain));
            acc.top3 += usize::from(ranked.iter().take(3).any(|r| r.0 == domain));
            acc.queries += 1;
        }
    }
    Ok(acc)
}

/// Mean next-token loss of `tokens` under the adapter.
pub fn loss(model: &Model, lora: &Lora, tokens: &[i64]) -> Result<f64> {
    let t = Tensor::from_slice(tokens)
        .to_device(model.device())
        .unsqueeze(0);
    let n = tokens.len() as i64 - 1;
    let logits = tch::no_grad(|| lora.logits(model, &t.narrow(1, 0, n), false))?;
    let v = logits.size()[2];
    Ok(logits
        .reshape([-1, v])
        .to_kind(Kind::Float)
        .cross_entropy_for_logits(&t.narrow(1, 1, n).reshape([-1]))
        .double_value(&[]))
}

/// What leaving each contributor out did.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaveOneOut {
    /// Per contributor: the full adapter's attribution credit on the mixed held-out set.
    pub credit: Vec<f64>,
    /// Per contributor: the rise in summed held-out loss when retrained without them.
    pub loss_rise: Vec<f64>,
    /// Per contributor: the rise on their own sub-domain's held-out documents beyond the
    /// retraining's common shift (the mean change on the other sub-domains' documents).
    pub excess_rise: Vec<f64>,
    /// Spearman's rank correlation of credit and `loss_rise`.
    pub spearman: f64,
    /// Spearman's rank correlation of credit and `excess_rise`.
    pub excess_spearman: f64,
}

/// Retrains `cfg` on `docs` without each contributor in turn and ranks the rise in held-out
/// loss against the credit the full adapter's `index` gives each contributor, on a held-out
/// set of `i + 1` fresh documents of sub-domain `i` (seeded by `seed`).
///
/// A retraining differs from another by more than one contributor's worth: other batches move
/// the loss of every document up or down together. [`LeaveOneOut::excess_rise`] takes that
/// common shift out (the mean change on the other sub-domains' documents) and keeps what
/// leaving the contributor out cost on their own sub-domain; each rise is averaged over
/// `seeds` training seeds (`cfg.seed`, `cfg.seed + 1`, …), each paired with all contributors
/// trained on that same seed (for `cfg.seed`, that is `full` itself).
#[allow(clippy::too_many_arguments)]
pub fn leave_one_out(
    model: &Model,
    full: &mut Lora,
    index: &InfluenceIndex,
    tok: &Tokenizer,
    docs: &[Doc],
    k: usize,
    cfg: &TrainConfig,
    seed: u64,
    seeds: u64,
) -> Result<LeaveOneOut> {
    let mut g = Gen(seed);
    let mut held = Vec::new();
    for domain in 0..k {
        for _ in 0..=domain {
            held.push((domain, tok.encode(&g.document(domain))?));
        }
    }
    let losses = |lora: &Lora| -> Result<Vec<f64>> {
        held.iter().map(|(_, q)| loss(model, lora, q)).collect()
    };
    let mut credit = vec![0.0; k];
    for (_, q) in &held {
        for (o, c) in self::credit(index, &index.scores(model, full, q)?) {
            if let Some(x) = credit.get_mut(o) {
                *x += c;
            }
        }
    }
    let without = |left_out: Option<usize>, cfg: &TrainConfig| -> Result<Vec<f64>> {
        let kept: Vec<Vec<i64>> = docs
            .iter()
            .filter(|d| Some(d.owner) != left_out)
            .map(|d| d.tokens.clone())
            .collect();
        let (lora, _) = train(model, &kept, tok.eot(), cfg, None, &mut |_| {})?;
        losses(&lora)
    };
    let seeds = seeds.max(1);
    let (mut loss_rise, mut excess_rise) = (vec![0.0; k], vec![0.0; k]);
    for s in 0..seeds {
        let cfg = TrainConfig {
            seed: cfg.seed + s,
            ..cfg.clone()
        };
        let all = if s == 0 {
            losses(full)?
        } else {
            without(None, &cfg)?
        };
        for left_out in 0..k {
            let delta: Vec<(usize, f64)> = without(Some(left_out), &cfg)?
                .iter()
                .zip(&all)
                .zip(&held)
                .map(|((l, a), (domain, _))| (*domain, l - a))
                .collect();
            let others: Vec<f64> = delta
                .iter()
                .filter(|(d, _)| *d != left_out)
                .map(|(_, x)| *x)
                .collect();
            let shift = others.iter().sum::<f64>() / others.len().max(1) as f64;
            let own = delta.iter().filter(|(d, _)| *d == left_out);
            let rise: f64 = delta.iter().map(|(_, x)| x).sum();
            let excess: f64 = own.map(|(_, x)| x - shift).sum();
            loss_rise[left_out] += rise / seeds as f64;
            excess_rise[left_out] += excess / seeds as f64;
        }
    }
    Ok(LeaveOneOut {
        spearman: spearman(&credit, &loss_rise),
        excess_spearman: spearman(&credit, &excess_rise),
        credit,
        loss_rise,
        excess_rise,
    })
}

/// Ranks from 1, ties sharing their mean rank.
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            r[o] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson's on the ranks); NaN when either side is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_orders_and_ties() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        assert_eq!(ranks(&[5.0, 1.0, 5.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
        assert!(spearman(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
    }

    #[test]
    fn planted_ids_name_their_owner() {
        assert_eq!(owner("c3-17"), Some(3));
        assert_eq!(owner("x"), None);
        let mut g = Gen(1);
        let doc = g.document(2);
        assert_eq!(doc.matches(". ").count(), 2, "{doc}");
        assert!(DOMAINS[2].0.split(' ').any(|w| doc.contains(w)));
    }
}
