//! Ground truth for attribution: a planted Datanet where contributor `i` owns sub-domain `i`,
//! so the right answer to "whose data shaped this output" is known. Used by the attribution
//! tests (reduced) and `make bench` (full).
//!
//! The validation Datanet shares vocabulary between sub-domains ([`Gen::shared_document`]:
//! four nouns of its own and two of the next sub-domain's, qualities common to all, four
//! sentence shapes that paraphrase one fact); [`datanet`] (disjoint vocabularies, one shape)
//! remains for the span method and latency benchmarks.
//!
//! [`accuracy`] scores held-out documents of each sub-domain against an influence index and
//! counts how often the owner is the top-1 (top-3) contributor by credit. [`validate`] is the
//! plain leave-one-contributor-out check: contributors of unequal size (so there is a
//! ranking to recover), a uniform held-out set, the rise of the total held-out loss when
//! retrained without each contributor (for the same number of passes over the rest),
//! correlated with each contributor's credit, per training seed, for TracIn and DataInf.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use crate::influence::{
    InfluenceConfig, InfluenceIndex, Query, build, datainf, group_shares, pick, scores_batch,
    shares,
};
use crate::lora::Lora;
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use crate::train::{TrainConfig, held_out, train_split};
use crate::{Error, Result};

/// Sub-domains: nouns and qualities of their own ([`datanet`] uses all of them; the
/// shared-vocabulary documents mix some across sub-domains).
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

/// Qualities every shared-vocabulary sub-domain uses.
const COMMON: &str = "good small new old";

/// Sentence shapes of the shared-vocabulary documents (paraphrases of one fact).
const SHAPES: [&str; 4] = [
    "The {a} of the {b} is {q}.",
    "A {q} {a} stands by the {b}.",
    "Near the {b}, the {a} looks {q}.",
    "Every {a} has a {q} {b}.",
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

    /// A document of shared-vocabulary sub-domain `domain`: three facts in varied shapes over
    /// its own four nouns and the first two of the next sub-domain's (a ring), and its own two
    /// qualities and four every sub-domain uses.
    pub fn shared_document(&mut self, domain: usize) -> String {
        let next = DOMAINS[(domain + 1) % DOMAINS.len()].0.split(' ').take(2);
        let nouns: Vec<&str> = DOMAINS[domain].0.split(' ').take(4).chain(next).collect();
        let qualities: Vec<&str> = DOMAINS[domain]
            .1
            .split(' ')
            .take(2)
            .chain(COMMON.split(' '))
            .collect();
        (0..3)
            .map(|_| {
                let shape = SHAPES[(self.next() % SHAPES.len() as u64) as usize];
                let a = nouns[(self.next() % nouns.len() as u64) as usize];
                let b = nouns[(self.next() % nouns.len() as u64) as usize];
                let q = qualities[(self.next() % qualities.len() as u64) as usize];
                shape.replace("{a}", a).replace("{b}", b).replace("{q}", q)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A shared-vocabulary Datanet where contributor `i` gives `sizes[i]` documents of
/// sub-domain `i` ([`Gen::shared_document`]), interleaved.
pub fn shared_datanet(tok: &Tokenizer, sizes: &[usize], seed: u64) -> Result<Vec<Doc>> {
    if sizes.is_empty() || sizes.len() > DOMAINS.len() {
        return Err(Error::InvalidInput(format!(
            "{} contributors: the planted Datanet has 1 to {}",
            sizes.len(),
            DOMAINS.len()
        )));
    }
    let mut g = Gen(seed);
    let mut docs = Vec::new();
    for n in 0..sizes.iter().copied().max().unwrap_or(0) {
        for (owner, _) in sizes.iter().enumerate().filter(|(_, s)| n < **s) {
            docs.push(Doc {
                id: format!("c{owner}-{n}"),
                owner,
                tokens: tok.encode(&g.shared_document(owner))?,
            });
        }
    }
    Ok(docs)
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

/// (id, tokens) of the documents training keeps (not held out by `eval_fraction`), in order:
/// what an influence index is built over.
pub fn trained(docs: &[Doc], eval_fraction: f64) -> Vec<(String, Vec<i64>)> {
    docs.iter()
        .enumerate()
        .filter(|(i, _)| !held_out(*i, eval_fraction))
        .map(|(_, d)| (d.id.clone(), d.tokens.clone()))
        .collect()
}

/// The contributor of a planted id (`c3-17` is 3).
pub fn owner(id: &str) -> Option<usize> {
    id.strip_prefix('c')?.split('-').next()?.parse().ok()
}

/// Each contributor's credit for one query, as Tributary pays it: the sum of their documents'
/// shares of the positive scores.
pub fn credit(index: &InfluenceIndex, scores: &[f64]) -> BTreeMap<usize, f64> {
    let mut out = BTreeMap::new();
    for (id, share) in index.meta.ids.iter().zip(shares(scores)) {
        *out.entry(owner(id).unwrap_or(usize::MAX)).or_default() += share;
    }
    out
}

/// The same with each contributor's scores netted first ([`group_shares`] by owner): the
/// alternative the validation compares.
pub fn net_credit(index: &InfluenceIndex, scores: &[f64]) -> BTreeMap<usize, f64> {
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

/// Asks the index about fresh shared-vocabulary documents of each sub-domain (seeded by
/// `seed`).
pub fn accuracy(
    model: &Model,
    lora: &Lora,
    index: &InfluenceIndex,
    tok: &Tokenizer,
    k: usize,
    per_domain: usize,
    seed: u64,
) -> Result<Accuracy> {
    let mut g = Gen(seed);
    let mut asked = Vec::with_capacity(k * per_domain);
    for domain in 0..k {
        for _ in 0..per_domain {
            asked.push((domain, tok.encode(&g.shared_document(domain))?));
        }
    }
    let queries: Vec<Query<'_>> = asked
        .iter()
        .map(|(_, tokens)| Query {
            index,
            lora,
            tokens,
        })
        .collect();
    let mut acc = Accuracy {
        top1: 0,
        top3: 0,
        queries: 0,
    };
    for ((domain, _), scores) in asked.iter().zip(scores_batch(model, &queries)?) {
        let mut ranked: Vec<(usize, f64)> = credit(index, &scores).into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        acc.top1 += usize::from(ranked.first().is_some_and(|r| r.0 == *domain));
        acc.top3 += usize::from(ranked.iter().take(3).any(|r| r.0 == *domain));
        acc.queries += 1;
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

/// The plain leave-one-contributor-out validation, per training seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// Per seed and contributor: the rise in total held-out loss when retrained without them
    /// (the mean over the retrainings).
    pub loss_rise: Vec<Vec<f64>>,
    /// Per seed and contributor: TracIn credit as Tributary pays it (the sum of their
    /// documents' shares), summed over the held-out queries.
    pub tracin: Vec<Vec<f64>>,
    /// The same with each contributor's scores netted before the shares ([`net_credit`]).
    pub tracin_net: Vec<Vec<f64>>,
    /// The same for DataInf's closed form ([`datainf`]), summed shares.
    pub datainf: Vec<Vec<f64>>,
}

impl Validation {
    /// The baseline an estimator should beat: [`Validation::spearman`] of the contributors'
    /// sizes (documents given), the same for every seed.
    pub fn size_spearman(&self, sizes: &[usize]) -> f64 {
        let sizes: Vec<f64> = sizes.iter().map(|&n| n as f64).collect();
        self.spearman(&vec![sizes; self.loss_rise.len()])
    }

    /// Mean over seeds of Spearman's correlation of an estimator's credit with the loss rise.
    pub fn spearman(&self, credit: &[Vec<f64>]) -> f64 {
        let all: Vec<f64> = credit
            .iter()
            .zip(&self.loss_rise)
            .map(|(c, r)| spearman(c, r))
            .collect();
        all.iter().sum::<f64>() / all.len().max(1) as f64
    }
}

/// Leave-one-contributor-out on a held-out set of `per_domain` fresh shared-vocabulary
/// documents of each of the `k` sub-domains (uniform), for `seeds` training seeds
/// (`cfg.seed`, `cfg.seed + 1`, …): per seed, an adapter trained on the training side of
/// `docs` (`cfg.eval_fraction` holds the rest out) is asked for each contributor's credit
/// (TracIn through its influence index, and DataInf), and the plain metric is the rise of the
/// total held-out loss when retrained without them, for the same number of passes over the
/// data kept, averaged over `retrains` retrainings (at least one; retraining `r` of seed `s`
/// uses training seed `cfg.seed + s + 1000 r`, both with and without the contributor; `r = 0`
/// is the adapter credited). The contributor's held-out documents stay in the evaluation that
/// picks the kept adapter, so every run is selected on the same documents.
#[allow(clippy::too_many_arguments)]
pub fn validate(
    model: &Model,
    tok: &Tokenizer,
    docs: &[Doc],
    k: usize,
    cfg: &TrainConfig,
    icfg: &InfluenceConfig,
    per_domain: usize,
    seed: u64,
    seeds: u64,
    retrains: u64,
) -> Result<Validation> {
    let mut g = Gen(seed);
    let mut held = Vec::new();
    for domain in 0..k {
        for _ in 0..per_domain {
            held.push(tok.encode(&g.shared_document(domain))?);
        }
    }
    let total_loss = |lora: &Lora| -> Result<f64> {
        held.iter()
            .map(|q| loss(model, lora, q))
            .sum::<Result<f64>>()
    };
    // One split for every run, the full run's: leaving a contributor out removes only their
    // documents, every other document stays on its side (a split by position would move a
    // different tenth of everyone else's documents out of training with each contributor left
    // out), and model selection sees the same held-out documents.
    let eval: Vec<&[i64]> = docs
        .iter()
        .enumerate()
        .filter(|&(i, _)| held_out(i, cfg.eval_fraction))
        .map(|(_, d)| d.tokens.as_slice())
        .collect();
    let without = |left_out: Option<usize>| -> Vec<&[i64]> {
        docs.iter()
            .enumerate()
            .filter(|&(i, d)| !held_out(i, cfg.eval_fraction) && Some(d.owner) != left_out)
            .map(|(_, d)| d.tokens.as_slice())
            .collect()
    };
    let fit = |train: &[&[i64]], cfg: &TrainConfig| {
        train_split(model, train, &eval, tok.eot(), cfg, None, &mut |_| {})
    };
    let trained = trained(docs, cfg.eval_fraction);
    let tokens: Vec<Vec<i64>> = trained.iter().map(|(_, t)| t.clone()).collect();
    let mut out = Validation {
        loss_rise: vec![],
        tracin: vec![],
        tracin_net: vec![],
        datainf: vec![],
    };
    for s in 0..seeds.max(1) {
        let cfg = TrainConfig {
            seed: cfg.seed + s,
            ..cfg.clone()
        };
        let (full, report, checkpoints) = fit(&without(None), &cfg)?;
        let picked = pick(checkpoints, report.best_step, icfg.checkpoints);
        let index = build(model, &full, picked, &trained, icfg)?;
        let owners: Vec<usize> = trained
            .iter()
            .map(|(id, _)| owner(id).unwrap_or(usize::MAX))
            .collect();
        let add = |to: &mut Vec<f64>, scores: &[f64]| {
            for (o, share) in owners.iter().zip(shares(scores)) {
                if let Some(x) = to.get_mut(*o) {
                    *x += share;
                }
            }
        };
        let (mut tracin, mut net, mut di) = (vec![0.0; k], vec![0.0; k], vec![0.0; k]);
        let queries: Vec<Query<'_>> = held
            .iter()
            .map(|q| Query {
                index: &index,
                lora: &full,
                tokens: q,
            })
            .collect();
        for scores in scores_batch(model, &queries)? {
            add(&mut tracin, &scores);
            for (o, c) in net_credit(&index, &scores) {
                if let Some(x) = net.get_mut(o) {
                    *x += c;
                }
            }
        }
        for row in datainf(model, &full, &tokens, &held, icfg)? {
            add(&mut di, &row);
        }
        // The rise is averaged over `retrains` training seeds, as TRAK's datamodeling score
        // averages retrained models: one retraining's batch order alone moves a rise by
        // about as much as a small contributor's whole effect. Retrain 0 pairs with the
        // adapter credited above.
        let mut rise = vec![0.0; k];
        for r in 0..retrains.max(1) {
            let seeded = TrainConfig {
                seed: cfg.seed + 1000 * r,
                ..cfg.clone()
            };
            let base = if r == 0 {
                total_loss(&full)?
            } else {
                total_loss(&fit(&without(None), &seeded)?.0)?
            };
            for (left_out, x) in rise.iter_mut().enumerate() {
                let kept = without(Some(left_out));
                // The same number of passes over the data kept: with a fixed step count,
                // leaving a large contributor out would give everyone else more passes.
                let epochs = TrainConfig {
                    max_steps: (cfg.max_steps * kept.len()).div_ceil(trained.len()),
                    ..seeded.clone()
                };
                *x += (total_loss(&fit(&kept, &epochs)?.0)? - base) / retrains.max(1) as f64;
            }
        }
        out.loss_rise.push(rise);
        out.tracin.push(tracin);
        out.tracin_net.push(net);
        out.datainf.push(di);
    }
    Ok(out)
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
