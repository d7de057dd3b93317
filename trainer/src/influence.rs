//! Gradient-based influence of training contributions on an adapter's outputs: TracIn over a
//! few checkpoints of the training run, with gradients compressed by a random projection
//! (as TRAK and LoGra do), restricted to the adapter's parameters (the base is frozen, so
//! only the adapter's gradients carry what training changed).
//!
//! While training, the adapter's weights are kept at every evaluation
//! ([`Checkpoint`](crate::train::Checkpoint)).
//! [`build`] then takes up to `checkpoints` of them, evenly spaced up to the adapter kept,
//! and for each contribution computes the gradient of its mean next-token loss with respect
//! to the adapter weights at each checkpoint (see below for how passes are shared), projects
//! it to `dim` numbers with a fixed
//! Rademacher matrix (seeded, so every query uses the same one), removes the mean over the
//! contributions (the direction every contribution shares: the move from the base model to
//! the dataset's general style), applies a curvature correction, and normalises it to unit
//! length. A query's score for contribution `d` is the TracIn sum over checkpoints of
//! `learning rate x <g_query, g_d>` on these corrected, unit-length projected gradients (a
//! cosine, so long or badly fitted contributions do not dominate by gradient size alone).
//!
//! The curvature correction is a damped Gauss-Newton matrix in the projected space,
//! `H = G^T G / n + λ I` over the contributions' centred gradients, and both sides are
//! multiplied by `H^(-1/2)`, so the score is `g_q^T H^(-1) g_d` up to normalisation (TRAK's
//! form). It discounts directions that many contributions share (sentence shapes common to
//! the whole Datanet) in favour of what sets one contribution apart; without it, top-1
//! accuracy on the planted Datanet fell to 41 of 80 queries (base corpus v4, two checkpoints).
//!
//! A LoRA factor's gradient needs only two signals of a forward and backward pass: each
//! adapted projection's input `X` and the loss's gradient `Δ` at its output, from which
//! `dA = s (Δ B)ᵀ X` and `dB = s Δᵀ (X Aᵀ)` for any factors `A`, `B`. So `passes` (by
//! default one per checkpoint) can split the checkpoints into fewer consecutive groups: one
//! pass per group at its last checkpoint, every checkpoint's gradient in the group from that
//! pass's `X` and `Δ` with the checkpoint's own factors: exact at the pass's checkpoint, an
//! approximation at the others (their activations are the later checkpoint's). Contributions and answers are
//! treated the same way (the index records its passes). On five planted Datanets with 8
//! checkpoints (400 queries, 2026-12-07), top-1: 8 passes 381, 4 passes 377, 2 passes 361,
//! 1 pass 340 (and make test's planted Datanet, 40 of 40 with 8 passes, 35 with 4: under
//! its 90%, so the default stays exact); one shared pass on the answers' side alone, against
//! exact contributions, fell to 208: both sides must be taken alike.
//!
//! The index holds, per checkpoint, the adapter's weights at that point (a query's gradient is
//! taken there), `contributions x dim` float32 and one `dim x dim` matrix, and lies in the
//! lake next to the adapter (`influence.safetensors` + `influence.json`). With the default 8
//! checkpoints it weighs eight adapters plus the rows.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::lora::Lora;
use crate::model::Model;
use crate::train::{Checkpoint, Rng};
use crate::{Error, Result};

/// How to build an influence index (`[attribution]` in `train.toml`; a key left out keeps its
/// default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfluenceConfig {
    /// Projected gradient size.
    pub dim: i64,
    /// Checkpoints used (at most).
    pub checkpoints: usize,
    /// Forward and backward passes per contribution or answer: the checkpoints are split into
    /// this many consecutive groups, and a group's gradients all come from one pass at its
    /// last checkpoint, each checkpoint with its own factors. 0 (the default), or as many as
    /// `checkpoints` or more, is one pass per checkpoint: each gradient exact. (Left out of
    /// `influence.json` when 0, so binaries from before it read such indexes.)
    #[serde(skip_serializing_if = "is_zero")]
    pub passes: usize,
    /// Seed of the projection.
    pub seed: u64,
    /// Longest token sequence per contribution or query (the rest is cut).
    pub max_tokens: usize,
    /// Damping of the Gauss-Newton curvature correction, as a fraction of its mean
    /// eigenvalue; 0 turns the correction off. (Used when the index is built; queries use
    /// the whitening it stored.)
    pub damping: f64,
}

impl Default for InfluenceConfig {
    fn default() -> Self {
        InfluenceConfig {
            dim: 256,
            // Top-1 over five planted shared-vocabulary Datanets (400 queries, 2026-12-06):
            // 2 checkpoints 345, 4 364, 8 381, 20 387. Each checkpoint costs one gradient
            // pass per contribution when the index is built and per answer when attributed.
            checkpoints: 8,
            // One per checkpoint. Top-1 over the same Datanets with 8 checkpoints
            // (2026-12-07): 8 passes 381, 4 passes 377 (but 35 of make test's 40, under its
            // 36), 2 passes 361, 1 pass 340; 4 checkpoints in 4 passes: 364.
            passes: 0,
            seed: 0,
            max_tokens: 256,
            damping: 0.01,
        }
    }
}

impl InfluenceConfig {
    /// Refuses settings an index cannot be built with, naming the key and its range.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        if !(1..=16_384).contains(&self.dim) {
            return bad(format!(
                "attribution.dim {} must be 1 to 16384 (each contribution stores dim floats per \
                 checkpoint; 256 is the default)",
                self.dim
            ));
        }
        if !(1..=64).contains(&self.checkpoints) {
            return bad(format!(
                "attribution.checkpoints {} must be 1 to 64 (8 is the default)",
                self.checkpoints
            ));
        }
        if self.passes > 64 {
            return bad(format!(
                "attribution.passes {} must be 0 to 64 (0, the default, is one pass per \
                 checkpoint)",
                self.passes
            ));
        }
        if self.max_tokens < 2 {
            return bad(format!(
                "attribution.max_tokens {} must be at least 2 (a gradient needs a next token)",
                self.max_tokens
            ));
        }
        if !(self.damping >= 0.0 && self.damping.is_finite()) {
            return bad(format!(
                "attribution.damping {} must be a number >= 0 (0 turns the curvature \
                 correction off; 0.01 is the default)",
                self.damping
            ));
        }
        Ok(())
    }
}

/// What `influence.json` holds beside the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexMeta {
    /// The settings it was built with.
    pub config: InfluenceConfig,
    /// Contribution ids, in row order.
    pub ids: Vec<String>,
    /// (step, learning rate) of each checkpoint.
    pub checkpoints: Vec<(usize, f64)>,
    /// Passes each gradient was taken in ([`InfluenceConfig::passes`] as built; 0 in indexes
    /// built before passes were shared: one per checkpoint). Answers are scored the same way.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub passes: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl IndexMeta {
    /// The checkpoints' groups, each taken from one pass (see [`InfluenceConfig::passes`]).
    fn groups(&self) -> Vec<(usize, usize)> {
        groups(self.checkpoints.len(), self.passes)
    }
}

/// Projected, normalised per-contribution gradients at a few checkpoints.
pub struct InfluenceIndex {
    /// Ids, settings and checkpoint steps.
    pub meta: IndexMeta,
    /// The adapter weights at each checkpoint, flat ([`Lora::flat`]): on the device that
    /// scores answers (see [`InfluenceIndex::to_device`]).
    weights: Vec<Tensor>,
    /// The shapes of the adapter's weight tensors, in flat order.
    shapes: Vec<Vec<i64>>,
    /// `[contributions, dim]` per checkpoint.
    grads: Vec<Tensor>,
    /// `[dim]` per checkpoint: the mean projected gradient, removed before normalising.
    means: Vec<Tensor>,
    /// `[dim, dim]` per checkpoint: the damped inverse square root of the curvature.
    whiten: Vec<Tensor>,
}

/// Picks up to `n` checkpoints, evenly spaced, ending with the last one at or before `upto`.
pub fn pick(all: Vec<Checkpoint>, upto: usize, n: usize) -> Vec<Checkpoint> {
    let mut kept: Vec<Checkpoint> = all.into_iter().filter(|c| c.step <= upto).collect();
    if kept.len() <= n || n == 0 {
        return kept;
    }
    let len = kept.len();
    let want: Vec<usize> = (0..n).map(|i| (i + 1) * len / n - 1).collect();
    let mut i = 0;
    kept.retain(|_| {
        let keep = want.contains(&i);
        i += 1;
        keep
    });
    kept
}

/// A `[d, k]` Rademacher matrix scaled by `1/sqrt(k)`, the same for the same seed.
fn projection(d: i64, k: i64, seed: u64) -> Tensor {
    let mut rng = Rng(seed ^ 0x7261_6b70_726f_6a00);
    let scale = 1.0 / (k as f32).sqrt();
    let mut values = Vec::with_capacity((d * k) as usize);
    while values.len() < (d * k) as usize {
        let bits = rng.next();
        for b in 0..64 {
            if values.len() == (d * k) as usize {
                break;
            }
            values.push(if bits >> b & 1 == 1 { scale } else { -scale });
        }
    }
    Tensor::from_slice(&values).reshape([d, k])
}

/// The projection for adapters of `d` parameters on `device`, made once and shared by every
/// index of that layout and settings (it is the size of an adapter times `k`): the last two
/// used are kept.
fn projection_on(d: i64, k: i64, seed: u64, device: tch::Device) -> Tensor {
    type Key = (i64, i64, u64, tch::Device);
    static KEPT: std::sync::Mutex<Vec<(Key, Tensor)>> = std::sync::Mutex::new(Vec::new());
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let key = (d, k, seed, device);
    match kept.iter().position(|(k, _)| *k == key) {
        Some(i) => {
            let hit = kept.remove(i);
            kept.push(hit);
        }
        None => {
            if kept.len() >= 2 {
                drop(kept.remove(0));
            }
            kept.push((key, projection(d, k, seed).to_device(device)));
        }
    }
    kept.last().expect("just pushed").1.shallow_clone()
}

/// Bytes one gradient pass may hold (per-row weights and gradients, logits, activations):
/// 1 GiB on the CPU, 8 GiB on a GPU; more rows than fit run in several passes.
fn pass_bytes(device: tch::Device) -> i64 {
    match device {
        tch::Device::Cpu => 1 << 30,
        _ => 8 << 30,
    }
}

/// Rows of `tokens` tokens that fit in one pass of [`gradients_at`] giving `copies`
/// gradients each for adapters of `params` parameters.
fn rows_per_pass(model: &Model, params: i64, copies: i64, tokens: i64) -> usize {
    let c = &model.config;
    // Per row: the weights and gradient of each copy plus the pass's weights; logits (and
    // their log-softmax); activations, with each adapted projection's input and output
    // kept for the factor gradients.
    let per_row = 4
        * ((2 * copies + 1) * params
            + tokens * (2 * c.vocab_size + (20 * c.hidden + 4 * c.intermediate) * c.layers));
    (pass_bytes(model.device()) / per_row.max(1)).max(1) as usize
}

/// The checkpoints `0..checkpoints` split into `passes` consecutive groups `(first, end)`
/// (as even as can be, later groups the larger); 0 passes (indexes built before passes were
/// shared) is one per checkpoint.
fn groups(checkpoints: usize, passes: usize) -> Vec<(usize, usize)> {
    let n = if passes == 0 {
        checkpoints
    } else {
        passes.min(checkpoints)
    };
    (0..n)
        .map(|i| (i * checkpoints / n, (i + 1) * checkpoints / n))
        .collect()
}

/// A batch of token sequences for a gradient pass: right-padded ids `[rows, len]`, the mask
/// of real next-token targets `[rows, len - 1]` and each row's target count.
struct Batch {
    ids: Tensor,
    mask: Tensor,
    counts: Tensor,
}

impl Batch {
    /// `None` when no sequence has two tokens (no next-token target anywhere).
    fn new(seqs: &[&[i64]], device: tch::Device) -> Option<Batch> {
        let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        if len < 2 {
            return None;
        }
        let (b, t) = (seqs.len() as i64, len as i64 - 1);
        let mut ids = vec![0i64; seqs.len() * len];
        let mut mask = vec![0f32; seqs.len() * (len - 1)];
        let mut counts = Vec::with_capacity(seqs.len());
        for (i, s) in seqs.iter().enumerate() {
            ids[i * len..i * len + s.len()].copy_from_slice(s);
            let n = s.len().saturating_sub(1);
            mask[i * (len - 1)..i * (len - 1) + n].fill(1.0);
            counts.push(n.max(1) as f32);
        }
        Some(Batch {
            ids: Tensor::from_slice(&ids)
                .view([b, len as i64])
                .to_device(device),
            mask: Tensor::from_slice(&mask).view([b, t]).to_device(device),
            counts: Tensor::from_slice(&counts).to_device(device),
        })
    }

    /// The sum over rows of each row's mean next-token loss, through `project`.
    fn loss(
        &self,
        model: &Model,
        project: &dyn Fn(usize, &str, &crate::model::Linear, &Tensor) -> Tensor,
    ) -> Result<Tensor> {
        let t = self.mask.size()[1];
        let logits = model.forward_with(&self.ids.narrow(1, 0, t), project)?;
        let logp = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float);
        let nll = -logp
            .gather(2, &self.ids.narrow(1, 1, t).unsqueeze(-1), false)
            .squeeze_dim(-1);
        let per_row =
            (nll * &self.mask).sum_dim_intlist([1].as_slice(), false, Kind::Float) / &self.counts;
        Ok(per_row.sum(Kind::Float))
    }
}

/// Per-row adapter gradients `[rows, num_parameters]`, one tensor for each of `at`, from one
/// forward and one backward pass with row `b` at the flat adapter weights `pass[b]`
/// (`lora`'s layout, see [`Lora::row_projector`]): row `b` of the result for `at[i]` is the
/// gradient of the mean next-token loss of `seqs[b]` with respect to the factors `at[i][b]`,
/// taken through the pass's activations ([`Lora::factor_gradients`]; exact where `at[i]` is
/// `pass`). Sequences are right-padded (causal attention keeps the padding out of the real
/// tokens) and the padding is left out of the loss; a sequence of fewer than two tokens
/// gets zero rows.
fn gradients_at(
    model: &Model,
    lora: &Lora,
    pass: &Tensor,
    at: &[Tensor],
    seqs: &[&[i64]],
) -> Result<Vec<Tensor>> {
    let Some(batch) = Batch::new(seqs, model.device()) else {
        return Ok(at.iter().map(Tensor::zeros_like).collect());
    };
    tch::with_grad(|| {
        let sites = std::cell::RefCell::new(BTreeMap::new());
        batch
            .loss(model, &lora.probed_projector(pass, &sites))?
            .backward();
        let sites = sites.into_inner();
        at.iter()
            .map(|w| lora.factor_gradients(&sites, w))
            .collect()
    })
}

/// Projected gradients of token sequences at each checkpoint: for checkpoint `c`, `[seqs,
/// dim]` on the CPU, row `b` at the flat adapter weights `weights(b, c)` (on the model's
/// device). Each group of checkpoints ([`groups`]) takes its gradients from one pass at the
/// group's last checkpoint ([`gradients_at`]). Sequences are cut to `max_tokens + 1` and run
/// in passes of similar lengths, as many rows as fit in one.
fn projected(
    model: &Model,
    lora: &Lora,
    weights: &dyn Fn(usize, usize) -> Tensor,
    groups: &[(usize, usize)],
    seqs: &[&[i64]],
    max_tokens: usize,
    p: &Tensor,
) -> Result<Vec<Tensor>> {
    let checkpoints = groups.last().map_or(0, |g| g.1);
    let widest = groups.iter().map(|(a, b)| b - a).max().unwrap_or(1) as i64;
    let seqs: Vec<&[i64]> = seqs
        .iter()
        .map(|s| &s[..s.len().min(max_tokens + 1)])
        .collect();
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
    let mut parts: Vec<Vec<Tensor>> = (0..checkpoints).map(|_| Vec::new()).collect();
    let mut at = 0;
    while at < order.len() {
        let longest = seqs[order[at]].len() as i64;
        let n = rows_per_pass(model, lora.num_parameters(), widest, longest).min(order.len() - at);
        let chunk = &order[at..at + n];
        let stack = |c: usize| {
            let rows: Vec<Tensor> = chunk.iter().map(|&i| weights(i, c)).collect();
            Tensor::stack(&rows, 0)
        };
        let batch: Vec<&[i64]> = chunk.iter().map(|&i| seqs[i]).collect();
        for &(first, end) in groups {
            let each: Vec<Tensor> = (first..end).map(stack).collect();
            let g = gradients_at(model, lora, &each[each.len() - 1], &each, &batch)?;
            for (c, g) in (first..end).zip(g) {
                parts[c].push(g.matmul(p).to_device(tch::Device::Cpu));
            }
        }
        at += n;
    }
    // Back to the callers' order.
    let mut back = vec![0i64; order.len()];
    for (sorted, &i) in order.iter().enumerate() {
        back[i] = sorted as i64;
    }
    let back = Tensor::from_slice(&back);
    Ok(parts
        .into_iter()
        .map(|parts| {
            if parts.is_empty() {
                Tensor::zeros([0, p.size()[1]], (Kind::Float, tch::Device::Cpu))
            } else {
                Tensor::cat(&parts, 0).index_select(0, &back)
            }
        })
        .collect())
}

/// `(G^T G / n + λ I)^(-1/2)` for centred projected gradients `G` (`[n, k]`), with `λ` the
/// damping times the mean eigenvalue: scores become cosines in a space where directions
/// that many contributions share count less. The identity when `damping` is 0.
fn whitening(g: &Tensor, damping: f64) -> Tensor {
    let k = g.size()[1];
    let eye = Tensor::eye(k, (Kind::Double, tch::Device::Cpu));
    if damping <= 0.0 {
        return eye.to_kind(Kind::Float);
    }
    let g = g.to_kind(Kind::Double);
    let h = g.transpose(0, 1).matmul(&g) / g.size()[0].max(1) as f64;
    let lambda = damping * h.trace().double_value(&[]) / k as f64;
    let (values, vectors) = (h + eye * lambda.max(1e-12)).linalg_eigh("L");
    let inv_sqrt = values.clamp_min(1e-30).rsqrt();
    (&vectors * inv_sqrt.unsqueeze(0))
        .matmul(&vectors.transpose(0, 1))
        .to_kind(Kind::Float)
}

/// Unit-length rows (zero rows stay zero).
fn unit(x: &Tensor) -> Tensor {
    let norm = x.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12);
    x / norm
}

/// [`projected`] of one checkpoint, every row at the same adapter weights (taken with
/// [`Lora::weights`]).
fn projected_at(
    model: &Model,
    lora: &Lora,
    weights: &[Tensor],
    seqs: &[&[i64]],
    max_tokens: usize,
    p: &Tensor,
) -> Result<Tensor> {
    let flat = Lora::flat(weights).to_device(model.device());
    let mut g = projected(
        model,
        lora,
        &|_, _| flat.shallow_clone(),
        &[(0, 1)],
        seqs,
        max_tokens,
        p,
    )?;
    Ok(g.remove(0))
}

/// Builds the index of `docs` (id, token ids) for adapters of `lora`'s layout trained on
/// `model`, from `checkpoints` (see [`pick`]): the gradients come in batched passes, one per
/// group of checkpoints (`config.passes`, [`gradients_at`]).
pub fn build(
    model: &Model,
    lora: &Lora,
    checkpoints: Vec<Checkpoint>,
    docs: &[(String, Vec<i64>)],
    config: &InfluenceConfig,
) -> Result<InfluenceIndex> {
    if checkpoints.is_empty() {
        return Err(Error::InvalidInput(
            "no training checkpoints to compute influence from".into(),
        ));
    }
    config.check()?;
    let p = projection_on(
        lora.num_parameters(),
        config.dim,
        config.seed,
        model.device(),
    );
    let seqs: Vec<&[i64]> = docs.iter().map(|(_, ids)| ids.as_slice()).collect();
    let device = model.device();
    // Each checkpoint flattened once: kept in the index, and on the model's device for the
    // passes.
    let kept: Vec<Tensor> = checkpoints.iter().map(|c| Lora::flat(&c.weights)).collect();
    let flats: Vec<Tensor> = kept.iter().map(|f| f.to_device(device)).collect();
    let groups = groups(checkpoints.len(), config.passes);
    let all = projected(
        model,
        lora,
        &|_, c| flats[c].shallow_clone(),
        &groups,
        &seqs,
        config.max_tokens,
        &p,
    )?;
    let mut grads = Vec::with_capacity(checkpoints.len());
    let mut means = Vec::with_capacity(checkpoints.len());
    let mut whiten = Vec::with_capacity(checkpoints.len());
    for g in all {
        let mean = g.mean_dim(0, false, Kind::Float);
        let centred = g - &mean;
        let w = whitening(&centred, config.damping);
        grads.push(unit(&centred.matmul(&w)));
        means.push(mean);
        whiten.push(w);
    }
    Ok(InfluenceIndex {
        meta: IndexMeta {
            config: config.clone(),
            ids: docs.iter().map(|(id, _)| id.clone()).collect(),
            checkpoints: checkpoints
                .iter()
                .map(|c| (c.step, c.learning_rate))
                .collect(),
            passes: groups.len(),
        },
        shapes: checkpoints[0].weights.iter().map(Tensor::size).collect(),
        weights: kept,
        grads,
        means,
        whiten,
    })
}

/// One answer for [`scores_batch`]: the index of the adapter that gave it, that adapter (for
/// its layout) and the answer's tokens (prompt and output).
pub struct Query<'a> {
    /// The adapter's influence index.
    pub index: &'a InfluenceIndex,
    /// The adapter.
    pub lora: &'a Lora,
    /// Prompt and output tokens.
    pub tokens: &'a [i64],
}

impl Query<'_> {
    /// Whether two queries can share gradient passes: adapters of one layout, indexes of the
    /// same projection, token cut, checkpoints and passes.
    fn fits(&self, other: &Query<'_>) -> bool {
        let (a, b) = (&self.index.meta.config, &other.index.meta.config);
        self.lora.same_layout(other.lora)
            && (a.dim, a.seed, a.max_tokens) == (b.dim, b.seed, b.max_tokens)
            && self.index.meta.groups() == other.index.meta.groups()
    }
}

/// TracIn scores of every contribution of each query's index (row order of its `meta.ids`),
/// in batches: queries that fit together ([`Query::fits`]: answers of one adapter, or of
/// adapters of one layout) share each forward and backward pass (one per group of
/// checkpoints, see [`InfluenceConfig::passes`]), each row with its own adapter's weights.
pub fn scores_batch(model: &Model, queries: &[Query<'_>]) -> Result<Vec<Vec<f64>>> {
    let mut out = vec![Vec::new(); queries.len()];
    let mut left: Vec<usize> = (0..queries.len()).collect();
    while let Some(&first) = left.first() {
        let (group, rest): (Vec<usize>, Vec<usize>) = left
            .iter()
            .partition(|&&i| queries[first].fits(&queries[i]));
        left = rest;
        for (i, scores) in group.iter().zip(scores_group(model, queries, &group)?) {
            out[*i] = scores;
        }
    }
    Ok(out)
}

/// [`scores_batch`] for queries that fit together.
fn scores_group(model: &Model, queries: &[Query<'_>], group: &[usize]) -> Result<Vec<Vec<f64>>> {
    let first = &queries[group[0]];
    let config = &first.index.meta.config;
    let device = model.device();
    let p = projection_on(first.lora.num_parameters(), config.dim, config.seed, device);
    let seqs: Vec<&[i64]> = group.iter().map(|&i| queries[i].tokens).collect();
    let mut totals: Vec<Tensor> = group
        .iter()
        .map(|&i| {
            let n = queries[i].index.meta.ids.len() as i64;
            Tensor::zeros([n], (Kind::Double, tch::Device::Cpu))
        })
        .collect();
    let checkpoints = first.index.weights.len();
    let all = projected(
        model,
        first.lora,
        &|row, c| queries[group[row]].index.weights[c].to_device(device),
        &first.index.meta.groups(),
        &seqs,
        config.max_tokens,
        &p,
    )?;
    for (c, g) in all.iter().enumerate().take(checkpoints) {
        for (row, (&i, total)) in group.iter().zip(&mut totals).enumerate() {
            let ix = queries[i].index;
            let q = (g.get(row as i64) - &ix.means[c]).matmul(&ix.whiten[c]);
            *total +=
                ix.grads[c].matmul(&unit(&q)).to_kind(Kind::Double) * ix.meta.checkpoints[c].1;
        }
    }
    totals
        .into_iter()
        .map(|t| Ok(Vec::<f64>::try_from(t)?))
        .collect()
}

impl InfluenceIndex {
    /// TracIn scores of every contribution (row order of `meta.ids`) for a query's tokens
    /// (prompt and output), for adapters of `lora`'s layout.
    pub fn scores(&self, model: &Model, lora: &Lora, query: &[i64]) -> Result<Vec<f64>> {
        let q = Query {
            index: self,
            lora,
            tokens: query,
        };
        Ok(scores_batch(model, &[q])?.remove(0))
    }

    /// Bytes the index holds in memory.
    pub fn bytes(&self) -> i64 {
        let size = |t: &Tensor| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64;
        self.weights.iter().map(size).sum::<i64>()
            + self
                .grads
                .iter()
                .chain(&self.means)
                .chain(&self.whiten)
                .map(size)
                .sum::<i64>()
    }

    /// Copies of the checkpoints the index was built from, to build another index over other
    /// contributions at the same points of training.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        self.meta
            .checkpoints
            .iter()
            .zip(&self.weights)
            .map(|(&(step, learning_rate), w)| Checkpoint {
                step,
                learning_rate,
                weights: self.unflat(w),
            })
            .collect()
    }

    /// Moves the checkpoints' adapter weights (what every answer's gradient passes read) to
    /// `device`; the rest stays on the CPU.
    pub fn to_device(mut self, device: tch::Device) -> Self {
        for w in &mut self.weights {
            *w = w.to_device(device);
        }
        self
    }

    /// One checkpoint's flat weights as the adapter's tensors (copies, on the CPU).
    fn unflat(&self, flat: &Tensor) -> Vec<Tensor> {
        let flat = flat.to_device(tch::Device::Cpu);
        let mut at = 0;
        self.shapes
            .iter()
            .map(|shape| {
                let n: i64 = shape.iter().product();
                let t = flat.narrow(0, at, n).reshape(shape.as_slice()).copy();
                at += n;
                t
            })
            .collect()
    }

    /// Writes `influence.safetensors` and `influence.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (c, (w, g)) in self.weights.iter().zip(&self.grads).enumerate() {
            named.push((format!("c{c}.grads"), g.shallow_clone()));
            named.push((format!("c{c}.mean"), self.means[c].shallow_clone()));
            named.push((format!("c{c}.whiten"), self.whiten[c].shallow_clone()));
            for (i, t) in self.unflat(w).into_iter().enumerate() {
                named.push((format!("c{c}.w{i}"), t));
            }
        }
        Tensor::write_safetensors(&named, dir.join("influence.safetensors"))?;
        let p = dir.join("influence.json");
        std::fs::write(&p, serde_json::to_vec(&self.meta).expect("json"))
            .map_err(|e| Error::Io(p.display().to_string(), e))
    }

    /// Reads what [`InfluenceIndex::save`] wrote.
    pub fn load(dir: &Path) -> Result<Self> {
        let p = dir.join("influence.json");
        let text = std::fs::read(&p).map_err(|e| Error::Io(p.display().to_string(), e))?;
        let meta: IndexMeta = serde_json::from_slice(&text)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", p.display())))?;
        let mut tensors: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(dir.join("influence.safetensors"))?
                .into_iter()
                .collect();
        let mut weights = Vec::new();
        let mut shapes = Vec::new();
        let mut grads = Vec::new();
        let mut means = Vec::new();
        let mut whiten = Vec::new();
        for c in 0..meta.checkpoints.len() {
            let missing =
                |n: &str| Error::InvalidInput(format!("influence.safetensors has no {n}"));
            let name = format!("c{c}.grads");
            grads.push(tensors.remove(&name).ok_or_else(|| missing(&name))?);
            let name = format!("c{c}.mean");
            means.push(tensors.remove(&name).ok_or_else(|| missing(&name))?);
            let name = format!("c{c}.whiten");
            whiten.push(tensors.remove(&name).ok_or_else(|| missing(&name))?);
            let mut w = Vec::new();
            while let Some(t) = tensors.remove(&format!("c{c}.w{}", w.len())) {
                w.push(t);
            }
            if w.is_empty() {
                return Err(missing(&format!("c{c}.w0")));
            }
            let these: Vec<Vec<i64>> = w.iter().map(Tensor::size).collect();
            if c == 0 {
                shapes = these;
            } else if these != shapes {
                return Err(Error::InvalidInput(format!(
                    "influence.safetensors: checkpoint {c}'s adapter weights differ in shape \
                     from checkpoint 0's (the file is damaged)"
                )));
            }
            weights.push(Lora::flat(&w));
        }
        Ok(InfluenceIndex {
            meta,
            weights,
            shapes,
            grads,
            means,
            whiten,
        })
    }
}

/// Each contribution's influence on a held-out set of queries.
#[derive(Debug, Clone, PartialEq)]
pub struct SetInfluence {
    /// Mean score over the queries, per contribution (row order of `meta.ids`).
    pub score: Vec<f64>,
    /// Fraction of the queries on which the contribution's score was negative.
    pub negative_fraction: Vec<f64>,
    /// Queries asked.
    pub queries: usize,
}

impl InfluenceIndex {
    /// Scores every contribution against each query of a held-out set (token ids), the
    /// queries in batches ([`scores_batch`]).
    pub fn over(&self, model: &Model, lora: &Lora, queries: &[Vec<i64>]) -> Result<SetInfluence> {
        let n = self.meta.ids.len();
        let (mut score, mut negative) = (vec![0.0; n], vec![0.0; n]);
        let batch: Vec<Query<'_>> = queries
            .iter()
            .map(|q| Query {
                index: self,
                lora,
                tokens: q,
            })
            .collect();
        for scores in scores_batch(model, &batch)? {
            for (i, s) in scores.into_iter().enumerate() {
                score[i] += s;
                negative[i] += f64::from(u8::from(s < 0.0));
            }
        }
        let m = queries.len().max(1) as f64;
        Ok(SetInfluence {
            score: score.into_iter().map(|s| s / m).collect(),
            negative_fraction: negative.into_iter().map(|x| x / m).collect(),
            queries: queries.len(),
        })
    }
}

/// DataInf's closed-form influence (Kwon et al., 2023), the second estimator the planted
/// validation compares TracIn with: at the adapter's current weights, with `g_i` the projected
/// gradients of the training documents, `s_k(q) = g_qᵀ H⁻¹ g_k` where `H⁻¹` is DataInf's
/// approximation `(1/(nλ)) Σ_i (I - g_i g_iᵀ / (λ + |g_i|²))`, `λ` a tenth of the mean
/// `|g_i|²`. Positive means training on `k` lowers the query's loss. One row per query.
pub fn datainf(
    model: &Model,
    lora: &Lora,
    docs: &[Vec<i64>],
    queries: &[Vec<i64>],
    config: &InfluenceConfig,
) -> Result<Vec<Vec<f64>>> {
    let p = projection_on(
        lora.num_parameters(),
        config.dim,
        config.seed,
        model.device(),
    );
    let weights = lora.weights();
    let project = |seqs: &[Vec<i64>]| -> Result<Tensor> {
        let seqs: Vec<&[i64]> = seqs.iter().map(Vec::as_slice).collect();
        let g = projected_at(model, lora, &weights, &seqs, config.max_tokens, &p)?;
        Ok(g.to_kind(Kind::Double))
    };
    let g = project(docs)?;
    let n = docs.len().max(1) as f64;
    let norms = (&g * &g).sum_dim_intlist([1].as_slice(), false, Kind::Double);
    let lambda = 0.1 * norms.mean(Kind::Double).double_value(&[]).max(1e-30);
    let gram = g.matmul(&g.transpose(0, 1));
    let gq = project(queries)?;
    let mut out = Vec::with_capacity(queries.len());
    for row in 0..queries.len() as i64 {
        let dots = g.matmul(&gq.get(row));
        let c = &dots / (&norms + lambda);
        let s = (&dots * n - gram.matmul(&c)) / (n * lambda);
        out.push(Vec::<f64>::try_from(s)?);
    }
    Ok(out)
}

/// Shares of groups (contributors, say): each group's scores summed, negative ones included
/// so that scores which are only noise around zero cancel, then shares over the positive
/// totals. `keys[i]` is the group of `scores[i]`.
pub fn group_shares<K: Ord + Clone>(keys: &[K], scores: &[f64]) -> BTreeMap<K, f64> {
    let mut totals: BTreeMap<K, f64> = BTreeMap::new();
    for (k, s) in keys.iter().zip(scores) {
        *totals.entry(k.clone()).or_default() += s;
    }
    let values: Vec<f64> = totals.values().copied().collect();
    totals.into_keys().zip(shares(&values)).collect()
}

/// Shares over the positive scores, summing to 1 (all zero when none is positive).
pub fn shares(scores: &[f64]) -> Vec<f64> {
    let total: f64 = scores.iter().filter(|s| **s > 0.0).sum();
    scores
        .iter()
        .map(|&s| {
            if s > 0.0 && total > 0.0 {
                s / total
            } else {
                0.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_picked_evenly_up_to_the_kept_adapter() {
        let c = |step| Checkpoint {
            step,
            learning_rate: 0.1,
            weights: vec![],
        };
        let all: Vec<Checkpoint> = [10, 20, 30, 40, 50, 60].map(c).into();
        let steps = |v: Vec<Checkpoint>| v.iter().map(|c| c.step).collect::<Vec<_>>();
        assert_eq!(steps(pick(all, 50, 2)), [20, 50]);
        let all: Vec<Checkpoint> = [10, 20, 30].map(c).into();
        assert_eq!(steps(pick(all, 60, 5)), [10, 20, 30]);
    }

    #[test]
    fn shares_sum_to_one_over_positive_scores() {
        let s = shares(&[2.0, -1.0, 0.0, 6.0]);
        assert_eq!(s, [0.25, 0.0, 0.0, 0.75]);
        assert_eq!(shares(&[-1.0, 0.0]), [0.0, 0.0]);
        let g = group_shares(&["a", "b", "a", "c"], &[3.0, 1.0, -2.0, -1.0]);
        assert_eq!(
            g.into_iter().collect::<Vec<_>>(),
            [("a", 0.5), ("b", 0.5), ("c", 0.0)]
        );
    }

    /// A random two-block Llama and two adapters of its layout with random factors.
    fn tiny() -> (Model, Lora, Vec<Tensor>, Vec<Tensor>) {
        let mut c = crate::base::Recipe::tiny().config;
        (c.vocab_size, c.hidden, c.layers, c.intermediate) = (97, 32, 2, 64);
        (c.heads, c.kv_heads) = (4, 2);
        tch::manual_seed(1);
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        crate::base::init(&vs, &c).unwrap();
        let model = Model::from_weights(c, vs.variables(), tch::Device::Cpu).unwrap();
        let lora = Lora::new(&model, crate::lora::LoraConfig::default(), 2).unwrap();
        let random = |l: &Lora| -> Vec<Tensor> {
            l.weights()
                .iter()
                .map(|w| Tensor::randn(w.size(), (Kind::Float, tch::Device::Cpu)) * 0.1)
                .collect()
        };
        let (a, b) = (random(&lora), random(&lora));
        (model, lora, a, b)
    }

    #[test]
    fn a_batched_pass_gives_each_row_its_own_gradient() {
        let (model, mut lora, a, b) = tiny();
        let seqs: Vec<Vec<i64>> = [9usize, 4, 1, 13, 6]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                (0..n as i64)
                    .map(|t| (t * 7 + i as i64 * 11) % 97)
                    .collect()
            })
            .collect();
        let weights = [&a, &b, &a, &b, &b];
        // One row per sequence, each with its adapter's weights.
        let flat: Vec<Tensor> = weights.iter().map(|w| Lora::flat(w)).collect();
        let refs: Vec<&[i64]> = seqs.iter().map(Vec::as_slice).collect();
        let stacked = Tensor::stack(&flat, 0);
        let batched = gradients_at(&model, &lora, &stacked, &[stacked.copy()], &refs)
            .unwrap()
            .remove(0);
        // Against one sequence at a time through the adapter itself.
        for (row, (seq, w)) in seqs.iter().zip(weights).enumerate() {
            lora.set_weights(w);
            lora.zero_grad();
            let expected = if seq.len() < 2 {
                lora.gradient()
            } else {
                let t = Tensor::from_slice(seq).unsqueeze(0);
                let n = seq.len() as i64 - 1;
                let logits = lora.logits(&model, &t.narrow(1, 0, n), false).unwrap();
                crate::train::cross_entropy(&logits, &t.narrow(1, 1, n)).backward();
                lora.gradient()
            };
            let got = batched.get(row as i64);
            let err = (&got - &expected).abs().max().double_value(&[]);
            let size = expected.abs().max().double_value(&[]);
            assert!(err <= 1e-5 * size.max(1e-6), "row {row}: {err} vs {size}");
            assert!(seq.len() < 2 || size > 0.0, "row {row} has a gradient");
        }
    }

    #[test]
    fn checkpoints_split_into_passes_and_older_indexes_keep_one_each() {
        assert_eq!(groups(8, 4), [(0, 2), (2, 4), (4, 6), (6, 8)]);
        assert_eq!(groups(5, 2), [(0, 2), (2, 5)]);
        assert_eq!(groups(3, 8), [(0, 1), (1, 2), (2, 3)]);
        assert_eq!(groups(3, 0), [(0, 1), (1, 2), (2, 3)]);
        // influence.json as written before passes were shared.
        let old = r#"{"config": {"dim": 16, "checkpoints": 2, "seed": 0, "max_tokens": 256,
            "damping": 0.01}, "ids": ["a"], "checkpoints": [[1, 0.1], [2, 0.1]]}"#;
        let meta: IndexMeta = serde_json::from_str(old).unwrap();
        assert_eq!(meta.groups(), [(0, 1), (1, 2)]);
    }

    #[test]
    fn answers_of_several_adapters_score_together_as_alone() {
        let (model, lora, a, b) = tiny();
        // Both checkpoints' gradients from one pass.
        let config = InfluenceConfig {
            dim: 16,
            passes: 1,
            ..InfluenceConfig::default()
        };
        let docs: Vec<(String, Vec<i64>)> = (0..6)
            .map(|i| {
                (
                    format!("d{i}"),
                    (0..5 + i).map(|t| (t * 5 + i) % 97).collect(),
                )
            })
            .collect();
        let at = |w: &Vec<Tensor>, step| Checkpoint {
            step,
            learning_rate: 0.1,
            weights: w.iter().map(Tensor::copy).collect(),
        };
        let first = build(&model, &lora, vec![at(&a, 1), at(&b, 2)], &docs, &config).unwrap();
        let second = build(&model, &lora, vec![at(&b, 1), at(&a, 2)], &docs, &config).unwrap();
        let answers: Vec<Vec<i64>> = (0..4)
            .map(|i| (0..3 + 4 * i).map(|t| (t * 3 + i) % 97).collect())
            .collect();
        let indexes = [&first, &second, &first, &second];
        let queries: Vec<Query<'_>> = answers
            .iter()
            .zip(indexes)
            .map(|(tokens, index)| Query {
                index,
                lora: &lora,
                tokens,
            })
            .collect();
        let together = scores_batch(&model, &queries).unwrap();
        for (q, t) in queries.iter().zip(&together) {
            let alone = q.index.scores(&model, &lora, q.tokens).unwrap();
            assert_eq!(alone.len(), docs.len());
            for (x, y) in alone.iter().zip(t) {
                assert!((x - y).abs() < 1e-5, "{alone:?} vs {t:?}");
            }
        }
        assert_ne!(together[0], together[1], "the two indexes differ");
    }

    #[test]
    fn a_saved_index_loads_with_the_same_checkpoints_and_scores() {
        let (model, lora, a, b) = tiny();
        let config = InfluenceConfig {
            dim: 16,
            ..InfluenceConfig::default()
        };
        let docs: Vec<(String, Vec<i64>)> = (0..5)
            .map(|i| {
                (
                    format!("d{i}"),
                    (0..4 + i).map(|t| (t * 7 + i) % 97).collect(),
                )
            })
            .collect();
        let at = |w: &Vec<Tensor>, step| Checkpoint {
            step,
            learning_rate: 0.05 * step as f64,
            weights: w.iter().map(Tensor::copy).collect(),
        };
        let index = build(&model, &lora, vec![at(&a, 1), at(&b, 3)], &docs, &config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        index.save(dir.path()).unwrap();
        let loaded = InfluenceIndex::load(dir.path()).unwrap();
        assert_eq!(loaded.meta, index.meta);
        assert_eq!(loaded.bytes(), index.bytes());
        for (c, w) in loaded.checkpoints().iter().zip([&a, &b]) {
            assert_eq!(c.weights.len(), w.len());
            for (x, y) in c.weights.iter().zip(w) {
                assert!(x.equal(y), "checkpoint weights come back as trained");
            }
        }
        let query: Vec<i64> = (0..9).map(|t| (t * 5 + 1) % 97).collect();
        assert_eq!(
            loaded.scores(&model, &lora, &query).unwrap(),
            index.scores(&model, &lora, &query).unwrap()
        );
    }

    #[test]
    fn the_projection_is_fixed_by_its_seed_and_keeps_lengths() {
        let a = projection(4000, 128, 3);
        assert!(a.equal(&projection(4000, 128, 3)));
        assert!(!a.equal(&projection(4000, 128, 4)));
        let x = Tensor::randn([4000], (Kind::Float, tch::Device::Cpu));
        let ratio = x.matmul(&a).norm().double_value(&[]) / x.norm().double_value(&[]);
        assert!((0.7..1.3).contains(&ratio), "{ratio}");
    }
}
