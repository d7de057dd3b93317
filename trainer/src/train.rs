//! The LoRA training loop: AdamW over the adapter weights only, linear warmup then cosine
//! decay, gradient clipping and accumulation, a held-out split with eval loss and perplexity,
//! early stopping (the best adapter by eval loss is kept, or the last one), and fixed seeds
//! so the same data, config and seed give the same adapter on the same machine.
//!
//! Data comes in as token sequences, one per document (a contribution). Documents are split
//! into train and held-out by a hash of their index (the same for every seed), then each
//! side becomes rows of `seq_len + 1` tokens ([`Packing`]): joined into one stream (documents
//! separated by the end-of-text token) and cut, or packed whole and padded (padding is not
//! predicted). The model reads the first `seq_len` and predicts the last `seq_len`. Training
//! starts fresh or from a parent adapter (continued training).

use std::time::Instant;

use tch::Tensor;
use tch::nn::{self, OptimizerConfig};

use crate::lora::{Lora, LoraConfig};
use crate::model::{Config, Model, Precision};
use crate::{Error, Result};

/// How to train (`[train]` in `train.toml`; the adapters come from its `[lora]` table).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The adapters.
    #[serde(skip)]
    pub lora: LoraConfig,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Steps of linear warmup from 0 to the peak.
    pub warmup_steps: usize,
    /// Optimizer steps at most; the rate decays to a tenth of the peak along a cosine by then.
    pub max_steps: usize,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step, each weighing by its predicted tokens: the step's
    /// loss is the mean over all its tokens, as one batch of `batch_size x grad_accum` rows.
    pub grad_accum: usize,
    /// Clip the adapters' gradient norm to this (0: no clipping).
    pub clip_norm: f64,
    /// Tokens the model reads per window.
    pub seq_len: i64,
    /// Part of the documents held out for evaluation.
    pub eval_fraction: f64,
    /// Evaluate every this many steps (and at the end).
    pub eval_every: usize,
    /// Stop after this many evaluations without a better eval loss (0: never).
    pub patience: usize,
    /// Seeds the adapter init, dropout and the batch order.
    pub seed: u64,
    /// The base weights' precision: `auto` (as stored on CUDA, float32 on the CPU),
    /// `stored`, `float32`, `bfloat16` or `float16`. The adapters and the optimizer's state
    /// stay float32. (Left out of the serialized config at its default, so the config hashes
    /// of adapters trained before it existed stay the same.)
    #[serde(skip_serializing_if = "is_default")]
    pub precision: Precision,
    /// Keep only each block's input from the forward pass and recompute the block during
    /// the backward pass: activation memory grows with the number of blocks instead of with
    /// everything they compute, at the cost of a second forward pass (long sequences).
    #[serde(skip_serializing_if = "is_default")]
    pub gradient_checkpointing: bool,
    /// The adapter a run keeps: `best` (the evaluation with the lowest held-out loss) or
    /// `last` (the last step's).
    #[serde(skip_serializing_if = "is_default")]
    pub keep: Keep,
    /// How documents become rows: `stream` (joined and cut) or `documents` (whole, padded).
    #[serde(skip_serializing_if = "is_default")]
    pub packing: Packing,
}

/// How a run cuts its documents into rows of `seq_len + 1` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Packing {
    /// Every document joined into one stream (each followed by the end-of-text token) and
    /// cut into rows once; each pass takes the rows in a new order. Nothing is padded, but a
    /// document may be cut across rows and is read after whatever preceded it (text corpora).
    #[default]
    Stream,
    /// Whole documents packed into rows (a document longer than a row is cut), the rest of a
    /// row padded and not predicted; each pass packs the documents again in a new order. A
    /// document starts a row or follows an end-of-text token, whole, after different
    /// neighbours each pass (records such as questions and answers).
    Documents,
}

/// Which of a run's adapters it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The evaluation with the lowest held-out loss.
    #[default]
    Best,
    /// The last step's. For data whose held-out part cannot be learnt from the training part
    /// (each record a fact of its own, like a table of conversions), the held-out loss rises
    /// while the training facts are being learnt, and `best` keeps an adapter that has not
    /// learnt them yet.
    Last,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lora: LoraConfig::default(),
            learning_rate: 3e-3,
            weight_decay: 0.0,
            warmup_steps: 10,
            max_steps: 150,
            batch_size: 8,
            grad_accum: 1,
            clip_norm: 1.0,
            seq_len: 128,
            eval_fraction: 0.1,
            eval_every: 25,
            patience: 3,
            seed: 0,
            precision: Precision::Auto,
            gradient_checkpointing: false,
            keep: Keep::Best,
            packing: Packing::Stream,
        }
    }
}

/// Where a run is, for progress output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Optimizer steps done.
    pub step: usize,
    /// Of at most.
    pub max_steps: usize,
    /// Training loss of the last step.
    pub loss: f64,
    /// Training tokens per second so far.
    pub tokens_per_second: f64,
    /// Estimated seconds left at this pace.
    pub eta_seconds: f64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Optimizer steps taken.
    pub steps: usize,
    /// `(step, loss)` of every step.
    pub train_loss: Vec<(usize, f64)>,
    /// `(step, eval loss)` of every evaluation.
    pub eval_loss: Vec<(usize, f64)>,
    /// Eval loss of the base model before training.
    pub base_eval_loss: f64,
    /// Eval loss where training started: the parent adapter's, or the base's.
    pub start_eval_loss: f64,
    /// Eval loss of the adapter kept.
    pub eval_loss_best: f64,
    /// The step whose adapter was kept (the last step under [`Keep::Last`]).
    pub best_step: usize,
    /// `exp(eval_loss_best)`.
    pub perplexity: f64,
    /// Stopped before `max_steps` because the eval loss stopped improving.
    pub stopped_early: bool,
    /// Training tokens predicted (padding left out).
    pub tokens: u64,
    /// Wall time.
    pub seconds: f64,
}

/// The adapter's weights at one point of training.
#[derive(Debug)]
pub struct Checkpoint {
    /// Steps taken when it was kept.
    pub step: usize,
    /// The learning rate of that step.
    pub learning_rate: f64,
    /// The adapter weights ([`Lora::weights`](crate::lora::Lora::weights) order).
    pub weights: Vec<Tensor>,
}

/// A small deterministic generator (SplitMix64) for the split, the batch order, generated
/// text and sampling (one per sequence).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One of `items`.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Whether document `i` is held out for evaluation (a hash of the index against the
/// fraction: the same for every seed).
pub fn held_out(i: usize, eval_fraction: f64) -> bool {
    let threshold = (eval_fraction * u64::MAX as f64) as u64;
    Rng((i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)).next() < threshold
}

/// Rows of `seq_len + 1` tokens cut from the documents joined by `eot` ([`Packing::Stream`]).
fn windows(docs: &[&[i64]], eot: i64, seq_len: i64) -> Vec<Vec<i64>> {
    let mut stream = Vec::new();
    for d in docs {
        stream.extend_from_slice(d);
        stream.push(eot);
    }
    stream
        .chunks_exact(seq_len as usize + 1)
        .map(|c| c.to_vec())
        .collect()
}

/// Padding in a packed row: read as token 0, and its targets are left out of the loss (the
/// index `nll_loss` ignores).
const PAD: i64 = -100;

/// Rows of `seq_len + 1` tokens packed from whole documents taken in `order` ([`Packing::Documents`]), each followed
/// by `eot`: a document goes on the current row if it fits, else it starts the next one and
/// the rest of the row is padding. A document longer than a row fills rows of its own and
/// its tail starts the next. So no document is cut unless it is longer than a row.
fn pack(docs: &[&[i64]], order: &[usize], eot: i64, seq_len: i64) -> Vec<Vec<i64>> {
    let w = seq_len as usize + 1;
    let mut rows = Vec::new();
    let mut row: Vec<i64> = Vec::with_capacity(w);
    let mut finish = |row: &mut Vec<i64>| {
        // A row needs two tokens to predict anything.
        if row.len() >= 2 {
            row.resize(w, PAD);
            rows.push(std::mem::replace(row, Vec::with_capacity(w)));
        }
        row.clear();
    };
    for &i in order {
        let doc: Vec<i64> = docs[i].iter().copied().chain([eot]).collect();
        for piece in doc.chunks(w) {
            if row.len() + piece.len() > w {
                finish(&mut row);
            }
            row.extend_from_slice(piece);
            if row.len() == w {
                finish(&mut row);
            }
        }
    }
    finish(&mut row);
    rows
}

/// The learning rate at `step` (from 0): linear warmup, then cosine to a tenth of the peak.
pub fn learning_rate(cfg: &TrainConfig, step: usize) -> f64 {
    schedule(cfg.learning_rate, cfg.warmup_steps, cfg.max_steps, step)
}

/// [`learning_rate`] for a peak, warmup and length.
pub(crate) fn schedule(peak: f64, warmup: usize, max_steps: usize, step: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = (max_steps - warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let floor = 0.1 * peak;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

impl TrainConfig {
    /// Checks the config against the model's shape before any work starts.
    pub fn validate(&self, model: &Config) -> Result<()> {
        self.lora.validate(model)?;
        let bad = |m: String| Err(Error::InvalidInput(m));
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(format!(
                "learning rate {} must be positive",
                self.learning_rate
            ));
        }
        if self.max_steps == 0
            || self.batch_size == 0
            || self.grad_accum == 0
            || self.eval_every == 0
        {
            return bad(
                "max_steps, batch_size, grad_accum and eval_every must be at least 1".into(),
            );
        }
        if self.warmup_steps >= self.max_steps {
            return bad(format!(
                "warmup_steps {} must be below max_steps {}",
                self.warmup_steps, self.max_steps
            ));
        }
        if self.seq_len < 2 || self.seq_len > model.max_positions {
            return bad(format!(
                "seq_len {} must be in 2..={} (the base model's positions)",
                self.seq_len, model.max_positions
            ));
        }
        if self.keep == Keep::Last && self.patience > 0 {
            return bad(format!(
                "keep = \"last\" runs every step, but patience {} would stop early: set patience = 0",
                self.patience
            ));
        }
        if !(self.eval_fraction > 0.0 && self.eval_fraction < 1.0) {
            return bad(format!(
                "eval_fraction {} must be in (0, 1)",
                self.eval_fraction
            ));
        }
        Ok(())
    }
}

/// Mean next-token cross-entropy of `lora` (or the base without it) over `windows`.
fn mean_loss(model: &Model, lora: Option<&Lora>, windows: &Tensor, batch: i64) -> Result<f64> {
    tch::no_grad(|| {
        let n = windows.size()[0];
        let (mut sum, mut count) = (0.0, 0i64);
        for start in (0..n).step_by(batch as usize) {
            let w = windows.narrow(0, start, batch.min(n - start));
            let (loss, tokens) = window_loss(model, lora, &w, false)?;
            sum += loss.double_value(&[]) * tokens as f64;
            count += tokens;
        }
        Ok(sum / count as f64)
    })
}

/// Cross-entropy over a batch of windows `[b, seq_len + 1]`, and the number of predicted
/// tokens. Logits are upcast to float32 for the loss, as Hugging Face does.
fn window_loss(
    model: &Model,
    lora: Option<&Lora>,
    w: &Tensor,
    train: bool,
) -> Result<(Tensor, i64)> {
    let (input, target) = split_row(w);
    let logits = match lora {
        Some(l) => l.logits(model, &input, train)?,
        None => model.logits(&input)?,
    };
    Ok((cross_entropy(&logits, &target), predicted(&target)))
}

/// A batch of rows `[b, seq_len + 1]` as the model's input (padding read as token 0) and
/// the targets (padding kept, for the loss to ignore).
fn split_row(w: &Tensor) -> (Tensor, Tensor) {
    let t = w.size()[1] - 1;
    (w.narrow(1, 0, t).clamp_min(0), w.narrow(1, 1, t))
}

/// The targets that are not padding.
fn predicted(target: &Tensor) -> i64 {
    target.ne(PAD).sum(tch::Kind::Int64).int64_value(&[])
}

/// Mean next-token cross-entropy of `logits` `[b, t, vocab]` against `target` `[b, t]`, in
/// float32, over the targets that are not padding.
pub(crate) fn cross_entropy(logits: &Tensor, target: &Tensor) -> Tensor {
    let v = logits.size()[2];
    logits
        .reshape([-1, v])
        .to_kind(tch::Kind::Float)
        .cross_entropy_for_logits(&target.reshape([-1]))
}

/// One micro-batch's forward and backward pass over windows `w` `[b, seq_len + 1]` in
/// training mode: the adapters' gradients of the loss, scaled by `weight`, accumulate.
/// `checkpointing` runs it with gradient checkpointing, seeding dropout from the value.
/// Returns the loss and the number of predicted tokens.
pub fn micro_batch(
    model: &Model,
    lora: &Lora,
    w: &Tensor,
    weight: f64,
    checkpointing: Option<i64>,
) -> Result<(f64, i64)> {
    if let Some(seed) = checkpointing {
        return checkpointed_backward(model, lora, w, weight, seed);
    }
    let (loss, tokens) = window_loss(model, Some(lora), w, true)?;
    (&loss * weight).backward();
    Ok((loss.double_value(&[]), tokens))
}

/// One micro-batch's forward and backward pass with gradient checkpointing: the blocks run
/// once without autograd, keeping only each one's input; then from the top down each block
/// runs again with autograd and passes the gradient of its input on. Dropout draws the same
/// masks in both runs of a block (the generators are seeded from `seed` and the block before
/// each run, so nothing else may draw from them meanwhile: training jobs run one at a time). The
/// gradients accumulate into the adapters scaled by `weight`; returns the loss and the
/// number of predicted tokens.
fn checkpointed_backward(
    model: &Model,
    lora: &Lora,
    w: &Tensor,
    weight: f64,
    seed: i64,
) -> Result<(f64, i64)> {
    let (input, target) = split_row(w);
    let layers = model.blocks.len();
    // Reseeding touches the process's generators: only when dropout draws from them.
    let reseed = |i: usize| {
        if lora.config.dropout > 0.0 {
            tch::manual_seed(seed.wrapping_add(i as i64));
        }
    };
    let e = tch::no_grad(|| model.embed(&input))?;
    let mut inputs = Vec::with_capacity(layers);
    let top = tch::no_grad(|| {
        let project = lora.projector(true);
        let mut h = e.h.shallow_clone();
        for i in 0..layers {
            reseed(i);
            inputs.push(h.shallow_clone());
            h = model.block(i, &h, &e, &project);
        }
        h
    });
    let top = top.detach().set_requires_grad(true);
    let loss = cross_entropy(&model.head(&top), &target);
    (&loss * weight).backward();
    let mut grad = top.grad();
    for (i, x) in inputs.into_iter().enumerate().rev() {
        // The embeddings are frozen: block 0's input needs no gradient.
        let x = x.detach().set_requires_grad(i > 0);
        reseed(i);
        let out = model.block(i, &x, &e, &lora.projector(true));
        // d(sum(out · g))/d(out) = g: the block's backward pass seeded with the gradient
        // of its output.
        (out * &grad).sum(tch::Kind::Float).backward();
        if i > 0 {
            grad = x.grad();
        }
    }
    Ok((loss.double_value(&[]), predicted(&target)))
}

/// Trains adapters for `model` on `docs` (token ids per document; `eot` joins them), fresh
/// or continuing from `parent`, calling `progress` after every step. Returns the adapter
/// [`TrainConfig::keep`] keeps.
pub fn train(
    model: &Model,
    docs: &[Vec<i64>],
    eot: i64,
    cfg: &TrainConfig,
    parent: Option<&Lora>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(Lora, TrainReport)> {
    train_with_checkpoints(model, docs, eot, cfg, parent, progress).map(|(l, r, _)| (l, r))
}

/// [`train`], also returning the adapter's weights at every evaluation (for influence).
pub fn train_with_checkpoints(
    model: &Model,
    docs: &[Vec<i64>],
    eot: i64,
    cfg: &TrainConfig,
    parent: Option<&Lora>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(Lora, TrainReport, Vec<Checkpoint>)> {
    // The split depends on each document's index only: every seed, and a child continuing
    // from its parent, is evaluated on the same held-out documents.
    let (mut train_docs, mut eval_docs) = (Vec::new(), Vec::new());
    for (i, d) in docs.iter().enumerate() {
        if held_out(i, cfg.eval_fraction) {
            &mut eval_docs
        } else {
            &mut train_docs
        }
        .push(d.as_slice());
    }
    train_split(model, &train_docs, &eval_docs, eot, cfg, parent, progress)
}

/// [`train_with_checkpoints`] on a split given by the caller: trains on `train_docs`,
/// evaluates on `eval_docs` (the split does not come from `cfg.eval_fraction`, though it is
/// still checked). A leave-one-out retraining uses it to keep every other document on the
/// side of the split it was on.
pub fn train_split(
    model: &Model,
    train_docs: &[&[i64]],
    eval_docs: &[&[i64]],
    eot: i64,
    cfg: &TrainConfig,
    parent: Option<&Lora>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(Lora, TrainReport, Vec<Checkpoint>)> {
    cfg.validate(&model.config)?;
    let vocab = model.config.vocab_size;
    if let Some(t) = train_docs
        .iter()
        .chain(eval_docs)
        .flat_map(|d| d.iter())
        .chain([&eot])
        .find(|&&t| t < 0 || t >= vocab)
    {
        return Err(Error::InvalidInput(format!(
            "token id {t} is outside the base model's vocabulary of {vocab}: the tokenizer does not match the model"
        )));
    }
    let mut rng = Rng(cfg.seed);
    // Dropout's seeds under gradient checkpointing: a stream of their own, so the batch
    // order is the same with and without checkpointing.
    let mut dropout_seeds = Rng(cfg.seed ^ 0x6a09_e667_f3bc_c908);
    let in_order = |docs: &[&[i64]]| (0..docs.len()).collect::<Vec<_>>();
    let rows_of = |docs: &[&[i64]], order: &[usize]| match cfg.packing {
        Packing::Stream => windows(docs, eot, cfg.seq_len),
        Packing::Documents => pack(docs, order, eot, cfg.seq_len),
    };
    // Stream rows are cut once (each pass takes them in a new order); documents are packed
    // anew each pass, so these rows only check there is something to train on.
    let train_windows = rows_of(train_docs, &in_order(train_docs));
    let eval_windows = rows_of(eval_docs, &in_order(eval_docs));
    if train_windows.is_empty() || eval_windows.is_empty() {
        return Err(Error::InvalidInput(format!(
            "not enough text: {} training and {} held-out rows of {} tokens; add data, lower seq_len or change eval_fraction",
            train_windows.len(),
            eval_windows.len(),
            cfg.seq_len + 1
        )));
    }
    let device = model.device();
    let as_tensor = |w: &[Vec<i64>]| Tensor::from_slice2(w).to_device(device);
    let eval_tensor = as_tensor(&eval_windows);
    let batch = cfg.batch_size as i64;

    let lora = match parent {
        Some(p) => Lora::from_parent(model, p, cfg.lora.clone(), cfg.seed as i64)?,
        None => Lora::new(model, cfg.lora.clone(), cfg.seed as i64)?,
    };
    let mut opt = nn::AdamW {
        wd: cfg.weight_decay,
        ..nn::AdamW::default()
    }
    .build(lora.var_store(), cfg.learning_rate)?;
    let base_eval_loss = mean_loss(model, None, &eval_tensor, batch)?;
    let start_eval_loss = match parent {
        Some(_) => mean_loss(model, Some(&lora), &eval_tensor, batch)?,
        None => base_eval_loss,
    };
    let mut report = TrainReport {
        steps: 0,
        train_loss: Vec::new(),
        eval_loss: Vec::new(),
        base_eval_loss,
        start_eval_loss,
        eval_loss_best: start_eval_loss,
        best_step: 0,
        perplexity: start_eval_loss.exp(),
        stopped_early: false,
        tokens: 0,
        seconds: 0.0,
    };
    let mut best: Option<Vec<Tensor>> = None;
    let mut checkpoints = Vec::new();
    let mut since_best = 0;
    // This pass's rows, taken from the end: indices of the stream's rows in a new order, or
    // the documents packed anew.
    let mut order: Vec<usize> = Vec::new();
    let mut packed: Vec<Vec<i64>> = Vec::new();
    let started = Instant::now();
    let _train = tracing::info_span!("train", max_steps = cfg.max_steps).entered();
    // One span per group of steps between evaluations.
    let mut _group = None;
    for step in 0..cfg.max_steps {
        if step % cfg.eval_every.max(1) == 0 {
            _group = None;
            _group = Some(tracing::info_span!("train_steps", first = step + 1).entered());
        }
        opt.set_lr(learning_rate(cfg, step));
        // The step's micro-batches, picked first: each counts by its predicted tokens, so the
        // step's loss (and gradient) is the mean over every token of the step, as one batch
        // of `batch_size x grad_accum` rows would give, however unevenly padding fills them.
        let mut pick = || match cfg.packing {
            Packing::Stream => {
                if order.is_empty() {
                    order = (0..train_windows.len()).collect();
                    rng.shuffle(&mut order);
                }
                train_windows[order.pop().expect("refilled")].clone()
            }
            Packing::Documents => {
                if packed.is_empty() {
                    let mut docs = in_order(train_docs);
                    rng.shuffle(&mut docs);
                    packed = pack(train_docs, &docs, eot, cfg.seq_len);
                }
                packed.pop().expect("refilled")
            }
        };
        let micro: Vec<Vec<Vec<i64>>> = (0..cfg.grad_accum)
            .map(|_| (0..cfg.batch_size).map(|_| pick()).collect())
            .collect();
        // Predicted tokens: each row's targets (all but its first token) that are not padding.
        let counts: Vec<usize> = micro
            .iter()
            .map(|rows| {
                rows.iter()
                    .flat_map(|r| &r[1..])
                    .filter(|&&t| t != PAD)
                    .count()
            })
            .collect();
        let total: usize = counts.iter().sum();
        let mut step_loss = 0.0;
        for (rows, &n) in micro.iter().zip(&counts) {
            let weight = n as f64 / total.max(1) as f64;
            let seed = dropout_seeds.next() as i64;
            let (loss, _) = micro_batch(
                model,
                &lora,
                &as_tensor(rows),
                weight,
                cfg.gradient_checkpointing.then_some(seed),
            )?;
            step_loss += loss * weight;
        }
        report.tokens += total as u64;
        if cfg.clip_norm > 0.0 {
            opt.clip_grad_norm(cfg.clip_norm);
        }
        opt.step();
        opt.zero_grad();
        report.steps = step + 1;
        report.train_loss.push((step + 1, step_loss));
        let elapsed = started.elapsed().as_secs_f64();
        progress(&Progress {
            step: step + 1,
            max_steps: cfg.max_steps,
            loss: step_loss,
            tokens_per_second: report.tokens as f64 / elapsed.max(1e-9),
            eta_seconds: elapsed / (step + 1) as f64 * (cfg.max_steps - step - 1) as f64,
        });
        if (step + 1) % cfg.eval_every == 0 || step + 1 == cfg.max_steps {
            let e = mean_loss(model, Some(&lora), &eval_tensor, batch)?;
            report.eval_loss.push((step + 1, e));
            checkpoints.push(Checkpoint {
                step: step + 1,
                learning_rate: learning_rate(cfg, step),
                weights: lora.weights(),
            });
            if best.is_none() || e < report.eval_loss_best {
                report.eval_loss_best = e;
                report.best_step = step + 1;
                best = Some(lora.weights());
                since_best = 0;
            } else {
                since_best += 1;
                if cfg.patience > 0 && since_best >= cfg.patience {
                    report.stopped_early = step + 1 < cfg.max_steps;
                    break;
                }
            }
        }
    }
    let mut lora = lora;
    match (cfg.keep, best, report.eval_loss.last()) {
        (Keep::Best, Some(best), _) => lora.set_weights(&best),
        (Keep::Last, _, Some(&(step, loss))) => {
            // The last evaluation is the last step's (a run stops right after one).
            (report.best_step, report.eval_loss_best) = (step, loss);
        }
        _ => {}
    }
    report.perplexity = report.eval_loss_best.exp();
    report.seconds = started.elapsed().as_secs_f64();
    Ok((lora, report, checkpoints))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_packed_whole_and_only_a_longer_one_is_cut() {
        let docs: Vec<Vec<i64>> = vec![vec![1; 3], vec![2; 5], vec![3; 12], vec![4; 2], vec![]];
        let docs: Vec<&[i64]> = docs.iter().map(Vec::as_slice).collect();
        // Rows of 8 tokens; 0 ends each document.
        let rows = pack(&docs, &[0, 1, 2, 3, 4], 0, 7);
        let p = PAD;
        assert_eq!(
            rows,
            vec![
                // The second document does not fit the four places left.
                vec![1, 1, 1, 0, p, p, p, p],
                vec![2, 2, 2, 2, 2, 0, p, p],
                // Thirteen tokens: a full row, then the tail with the next document.
                vec![3; 8],
                vec![3, 3, 3, 3, 0, 4, 4, 0],
                // The empty document's lone end-of-text predicts nothing: no row.
            ]
        );
        // A document exactly a row long (with its end) fills one.
        let row = [5; 7];
        assert_eq!(
            pack(&[&row], &[0], 0, 7),
            vec![vec![5, 5, 5, 5, 5, 5, 5, 0]]
        );
        // Another order, other rows: each document still starts a row or follows an end.
        let rows = pack(&docs, &[3, 0, 1], 0, 7);
        assert_eq!(
            rows,
            vec![vec![4, 4, 0, 1, 1, 1, 0, p], vec![2, 2, 2, 2, 2, 0, p, p]]
        );
    }
}
