//! The decoding engine: one base model, many LoRA adapters, one forward pass per step.
//!
//! Sequences for different adapters decode together. Each targeted projection computes the
//! base `x Wᵀ` once for the whole batch and adds every row's own low-rank update. With many
//! distinct adapters in the batch that is a per-row gather and two batched matmuls,
//! `x · A_rowᵀ · (s·B_row)ᵀ` (Punica's BGMV, in plain libtorch ops; ranks zero-padded to the
//! batch's largest); with few, one matmul pair per adapter over its rows, so an adapter
//! shared by many rows is read once per step.
//! Keys and values live in a fixed pool of cache slots, one per running sequence, so a new
//! request joins the running batch at the next step (continuous batching) and a finished one
//! frees its slot at once. Requests that arrive together are prefilled together: their
//! prompts right-padded into one pass, each row with its own adapter.
//!
//! Adapters are kept in an LRU cache bounded by bytes. A sequence holds its adapter (an
//! `Rc`), so evicting one that is still decoding frees its memory when that sequence ends.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::rc::Rc;

use tch::{Device, Kind, Tensor};

use crate::lora::Lora;
use crate::model::{KvCache, Linear, Model};
use crate::train::Rng;
use crate::{Error, Result};

/// An adapter's id (its on-chain `bytes32`).
pub type AdapterId = crate::Hash;

/// One adapter's factors, ready to gather: `(layer, role) -> (A [r, in], s·B [out, r])`.
pub struct ServedAdapter {
    /// Adapter id.
    pub id: AdapterId,
    factors: BTreeMap<(usize, String), (Tensor, Tensor)>,
    rank: i64,
    bytes: i64,
}

impl ServedAdapter {
    /// Loads a PEFT adapter folder for `model`.
    pub fn load(model: &Model, id: AdapterId, dir: &Path) -> Result<Self> {
        let lora = Lora::load_peft(model, dir)?;
        Ok(Self::from_lora(id, &lora))
    }

    /// The factors of an adapter already in memory.
    pub fn from_lora(id: AdapterId, lora: &Lora) -> Self {
        let factors: BTreeMap<_, _> = lora
            .factors()
            .into_iter()
            .map(|(k, a, b)| (k, (a, b)))
            .collect();
        let bytes = factors
            .values()
            .map(|(a, b)| (a.numel() + b.numel()) as i64 * a.kind().elt_size_in_bytes() as i64)
            .sum();
        ServedAdapter {
            id,
            factors,
            rank: lora.config.rank,
            bytes,
        }
    }

    /// Bytes its tensors take.
    pub fn bytes(&self) -> i64 {
        self.bytes
    }
}

/// How to pick each next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 picks the most likely token (greedy); above 0 samples from the softened
    /// distribution.
    pub temperature: f64,
    /// Nucleus sampling: sample among the most likely tokens whose probabilities sum to
    /// `top_p` (1 keeps all).
    pub top_p: f64,
    /// Seed of the request's own generator: the same seed gives the same tokens whatever
    /// else is in the batch.
    pub seed: u64,
}

impl Sampling {
    /// Greedy decoding.
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
    };
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its answer (end-of-text token).
    Stop,
    /// `max_tokens` or the model's context was reached.
    Length,
    /// The receiver went away (client disconnected, or a stop string matched).
    Cancelled,
}

/// What the engine reports for a sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generated token.
    Token(i64),
    /// The sequence ended.
    Done(Finish),
    /// The request cannot run as given (the caller's mistake, e.g. a prompt that does not
    /// fit): the message says how to fix it.
    Refused(String),
    /// The request could not run (an internal failure: an adapter that does not load, an
    /// engine that stopped).
    Failed(String),
}

/// Where a sequence's events go; `false` from `send` means nobody listens any more.
pub trait Sink {
    /// Delivers an event.
    fn send(&mut self, event: Event) -> bool;
}

impl Sink for Vec<Event> {
    fn send(&mut self, event: Event) -> bool {
        self.push(event);
        true
    }
}

impl Sink for tokio::sync::mpsc::UnboundedSender<Event> {
    fn send(&mut self, event: Event) -> bool {
        tokio::sync::mpsc::UnboundedSender::send(self, event).is_ok()
    }
}

/// A generation request.
pub struct Request<S> {
    /// The adapter (`None`: the base model alone) and, when it is not cached yet, the folder
    /// with its PEFT files.
    pub adapter: Option<(AdapterId, Option<std::path::PathBuf>)>,
    /// Prompt tokens (at least one).
    pub prompt: Vec<i64>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How to pick tokens.
    pub sampling: Sampling,
    /// Where events go.
    pub sink: S,
}

/// An admitted request before its prefill.
struct Starting<S> {
    prompt: Vec<i64>,
    seq: Running<S>,
}

struct Running<S> {
    adapter: Option<Rc<ServedAdapter>>,
    slot: i64,
    /// Tokens in the cache so far.
    len: i64,
    /// The token to feed next.
    next: i64,
    generated: usize,
    max_tokens: usize,
    sampling: Sampling,
    rng: Rng,
    sink: S,
}

/// Adapters in memory, least recently used evicted first once `budget` bytes are passed.
pub struct AdapterCache {
    budget: i64,
    map: HashMap<AdapterId, Rc<ServedAdapter>>,
    order: VecDeque<AdapterId>,
    /// Lookups answered from memory.
    pub hits: u64,
    /// Adapters loaded from disk.
    pub loads: u64,
    /// Adapters evicted.
    pub evictions: u64,
}

impl AdapterCache {
    /// An empty cache holding at most `budget` bytes of adapters (the most recent one is
    /// always kept, even when larger).
    pub fn new(budget: i64) -> Self {
        AdapterCache {
            budget,
            map: HashMap::new(),
            order: VecDeque::new(),
            hits: 0,
            loads: 0,
            evictions: 0,
        }
    }

    /// Ids held, least recently used first.
    pub fn ids(&self) -> Vec<AdapterId> {
        self.order.iter().copied().collect()
    }

    /// Bytes held.
    pub fn bytes(&self) -> i64 {
        self.map.values().map(|a| a.bytes).sum()
    }

    fn touch(&mut self, id: AdapterId) {
        self.order.retain(|x| *x != id);
        self.order.push_back(id);
    }

    /// The adapter `id`, from memory or else loaded from `dir`.
    pub fn get(
        &mut self,
        model: &Model,
        id: AdapterId,
        dir: Option<&Path>,
    ) -> Result<Rc<ServedAdapter>> {
        if let Some(a) = self.map.get(&id).cloned() {
            self.hits += 1;
            self.touch(id);
            return Ok(a);
        }
        let dir = dir.ok_or_else(|| {
            Error::Internal(format!(
                "adapter {} is not loaded and no files were given",
                crate::hex(&id)
            ))
        })?;
        let a = Rc::new(ServedAdapter::load(model, id, dir)?);
        self.insert(a.clone());
        self.loads += 1;
        Ok(a)
    }

    /// Adds an adapter, evicting the least recently used ones over the budget.
    pub fn insert(&mut self, a: Rc<ServedAdapter>) {
        self.map.insert(a.id, a.clone());
        self.touch(a.id);
        while self.bytes() > self.budget && self.order.len() > 1 {
            let old = self.order.pop_front().expect("non-empty");
            self.map.remove(&old);
            self.evictions += 1;
        }
    }
}

/// The LoRA factors of one batch composition, arranged for the step's matmuls.
enum Factors {
    /// Few distinct adapters: per adapter, its rows (`None`: every row) and `(Aᵀ, (s·B)ᵀ)`;
    /// each adapter's weights are read once per step.
    Groups(Vec<(Option<Tensor>, Tensor, Tensor)>),
    /// Many: every row's own factors stacked, `Aᵀ [rows, in, r]` and `(s·B)ᵀ [rows, r, out]`,
    /// for two batched matmuls (Punica's BGMV).
    Rows(Tensor, Tensor),
}

/// The LoRA factors of one batch composition.
struct Gathered {
    key: Vec<Option<AdapterId>>,
    limit: usize,
    map: HashMap<(usize, String), Factors>,
}

impl Gathered {
    /// Groups when at most `group_limit` distinct adapters are in the batch, else stacks rows
    /// (zeros, in the model's `kind`, for rows without an adapter).
    fn build(
        rows: &[Option<&ServedAdapter>],
        (kind, device): (Kind, Device),
        group_limit: usize,
    ) -> Self {
        let key: Vec<Option<AdapterId>> = rows.iter().map(|a| a.map(|a| a.id)).collect();
        let mut distinct: Vec<&ServedAdapter> = Vec::new();
        for a in rows.iter().flatten() {
            if !distinct.iter().any(|d| d.id == a.id) {
                distinct.push(a);
            }
        }
        let mut shapes: BTreeMap<(usize, String), (i64, i64)> = BTreeMap::new();
        for a in &distinct {
            for (k, (fa, fb)) in &a.factors {
                shapes.insert(k.clone(), (fa.size()[1], fb.size()[0]));
            }
        }
        let mut map = HashMap::new();
        if distinct.len() <= group_limit {
            for k in shapes.keys() {
                let groups = distinct
                    .iter()
                    .filter_map(|a| {
                        let (fa, fb) = a.factors.get(k)?;
                        let idx: Vec<i64> = (0..rows.len() as i64)
                            .filter(|&i| rows[i as usize].is_some_and(|r| r.id == a.id))
                            .collect();
                        let idx = (idx.len() < rows.len())
                            .then(|| Tensor::from_slice(&idx).to_device(device));
                        Some((idx, fa.tr().contiguous(), fb.tr().contiguous()))
                    })
                    .collect();
                map.insert(k.clone(), Factors::Groups(groups));
            }
            return Gathered {
                key,
                limit: group_limit,
                map,
            };
        }
        let rank = distinct.iter().map(|a| a.rank).max().unwrap_or(0);
        for (k, (inp, out)) in shapes {
            let mut at = Vec::with_capacity(rows.len());
            let mut bt = Vec::with_capacity(rows.len());
            for row in rows {
                match row.and_then(|a| a.factors.get(&k)) {
                    Some((fa, fb)) => {
                        let pad = rank - fa.size()[0];
                        at.push(fa.constant_pad_nd([0, 0, 0, pad]).tr());
                        bt.push(fb.constant_pad_nd([0, pad]).tr());
                    }
                    None => {
                        at.push(Tensor::zeros([inp, rank], (kind, device)));
                        bt.push(Tensor::zeros([rank, out], (kind, device)));
                    }
                }
            }
            map.insert(
                k,
                Factors::Rows(Tensor::stack(&at, 0), Tensor::stack(&bt, 0)),
            );
        }
        Gathered {
            key,
            limit: group_limit,
            map,
        }
    }

    // `y = y + …`, not `y += …`: the projection's output stays a fresh tensor.
    #[allow(clippy::assign_op_pattern)]
    fn project(&self, layer: usize, role: &str, lin: &Linear, x: &Tensor) -> Tensor {
        let y = lin.forward(x);
        match self.map.get(&(layer, role.to_string())) {
            None => y,
            Some(Factors::Rows(at, bt)) => y + x.bmm(at).bmm(bt),
            Some(Factors::Groups(groups)) => {
                let mut y = y;
                for (idx, at, bt) in groups {
                    match idx {
                        None => y = y + x.matmul(at).matmul(bt),
                        Some(idx) => {
                            let d = x.index_select(0, idx).matmul(at).matmul(bt);
                            y = y.index_add(0, idx, &d);
                        }
                    }
                }
                y
            }
        }
    }
}

/// The engine: a base model, its adapter cache, a pool of cache slots and the sequences
/// being decoded. [`Engine::step`] runs one decoding step for all of them.
pub struct Engine<S: Sink> {
    model: Model,
    eot: i64,
    /// Adapters in memory.
    pub adapters: AdapterCache,
    kv: KvCache,
    free: Vec<i64>,
    waiting: VecDeque<Request<S>>,
    running: Vec<Running<S>>,
    gathered: Option<Gathered>,
    /// Batches with at most this many distinct adapters run one matmul pair per adapter;
    /// more run the per-row gather (default 8).
    pub group_limit: usize,
    /// Prompt tokens prefilled in one pass at most, counted as rows times the longest
    /// prompt (a longer prompt goes alone; default 8192).
    pub prefill_tokens: usize,
    /// Tokens generated since the engine started.
    pub tokens: u64,
}

impl<S: Sink> Engine<S> {
    /// Adapter cache lookups so far: (answered from memory, loaded).
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.adapters.hits, self.adapters.loads)
    }

    /// An engine over `model` decoding at most `slots` sequences at once; `eot` ends an
    /// answer; `budget` bounds the adapter cache in bytes.
    pub fn new(model: Model, eot: i64, slots: i64, budget: i64) -> Self {
        let kv = KvCache::new(&model, slots);
        Engine {
            model,
            eot,
            adapters: AdapterCache::new(budget),
            kv,
            free: (0..slots).rev().collect(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            gathered: None,
            group_limit: 8,
            prefill_tokens: 8192,
            tokens: 0,
        }
    }

    /// The base model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The base model, to change its weights (the benchmark's merged and swap baselines);
    /// only while nothing is running.
    pub fn model_mut(&mut self) -> &mut Model {
        assert!(self.idle(), "the model changes only while nothing runs");
        self.gathered = None;
        &mut self.model
    }

    /// Loads an adapter into the cache ahead of its first request.
    pub fn preload(&mut self, id: AdapterId, dir: &Path) -> Result<()> {
        self.adapters.get(&self.model, id, Some(dir)).map(|_| ())
    }

    /// Queues a request; it starts at the next [`Engine::step`] with a free slot.
    pub fn submit(&mut self, r: Request<S>) {
        self.waiting.push_back(r);
    }

    /// Whether nothing is running or waiting.
    pub fn idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Sequences decoding now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Starts waiting requests while slots are free (their prompts prefilled together, see
    /// [`Engine::prefill_tokens`]), then runs one decoding step for every running sequence.
    /// A pass that fails (an error, or a panic inside libtorch such as a CUDA out-of-memory:
    /// see [`crate::guarded`]) ends the requests in it `Failed` and frees their slots; the
    /// engine goes on with the others and with the requests still waiting. A failed decoding
    /// step is also returned as the error, for the caller to log.
    pub fn step(&mut self) -> Result<()> {
        tch::no_grad(|| {
            let mut starting = Vec::new();
            while !self.free.is_empty()
                && let Some(r) = self.waiting.pop_front()
            {
                if let Some(s) = self.admit(r) {
                    starting.push(s);
                }
            }
            let mut starting = starting.into_iter().peekable();
            while starting.peek().is_some() {
                // Arrival order, as many prompts as fit in one pass (at least one).
                let mut batch = vec![starting.next().expect("peeked")];
                while let Some(next) = starting.peek() {
                    let len = batch.iter().chain([next]).map(|s| s.prompt.len()).max();
                    if len.unwrap_or(0) * (batch.len() + 1) > self.prefill_tokens {
                        break;
                    }
                    batch.push(starting.next().expect("peeked"));
                }
                self.prefill(batch);
            }
            self.decode()
        })
    }

    /// Runs until every submitted request has finished.
    pub fn run_to_end(&mut self) -> Result<()> {
        while !self.idle() {
            self.step()?;
        }
        Ok(())
    }

    /// Checks a waiting request and takes its adapter and a cache slot; `None` when it ended
    /// here (refused, nothing to generate, or its adapter failed to load).
    fn admit(&mut self, mut r: Request<S>) -> Option<Starting<S>> {
        let max_pos = self.model.config.max_positions as usize;
        if r.prompt.is_empty() || r.prompt.len() >= max_pos {
            r.sink.send(Event::Refused(format!(
                "the prompt is {} tokens: give 1 to {} tokens",
                r.prompt.len(),
                max_pos - 1
            )));
            return None;
        }
        let vocab = self.model.config.vocab_size;
        if let Some(t) = r.prompt.iter().find(|&&t| !(0..vocab).contains(&t)) {
            r.sink.send(Event::Refused(format!(
                "the prompt has token id {t}, outside the model's vocabulary of {vocab} (ids 0 \
                 to {}): encode it with the model's own tokenizer",
                vocab - 1
            )));
            return None;
        }
        if r.max_tokens == 0 {
            r.sink.send(Event::Done(Finish::Length));
            return None;
        }
        let adapter = match &r.adapter {
            None => None,
            Some((id, dir)) => {
                match crate::guarded(|| self.adapters.get(&self.model, *id, dir.as_deref())) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        r.sink.send(Event::Failed(e.to_string()));
                        return None;
                    }
                }
            }
        };
        let slot = self.free.pop().expect("a free slot");
        Some(Starting {
            prompt: r.prompt,
            seq: Running {
                adapter,
                slot,
                len: 0,
                next: 0,
                generated: 0,
                max_tokens: r.max_tokens,
                sampling: r.sampling,
                rng: Rng(r.sampling.seed),
                sink: r.sink,
            },
        })
    }

    /// Prefills admitted prompts in one pass (right-padded to the longest: a padded
    /// position's keys and values sit past the row's end, where its next decoding step
    /// overwrites them before anything attends to them) and picks each one's first token.
    /// When the pass fails, its requests end `Failed` and free their slots; the running
    /// sequences and other batches go on.
    fn prefill(&mut self, batch: Vec<Starting<S>>) {
        let (logits, vocab) = match crate::guarded(|| self.first_logits(&batch)) {
            Ok(l) => l,
            Err(e) => {
                self.fail(
                    batch.into_iter().map(|s| s.seq),
                    &format!("prefill failed: {e}"),
                );
                return;
            }
        };
        for (i, Starting { prompt, mut seq }) in batch.into_iter().enumerate() {
            seq.len = prompt.len() as i64;
            let token = pick(
                &logits[i * vocab..(i + 1) * vocab],
                &seq.sampling,
                &mut seq.rng,
            );
            if let Some(finish) = self.emit(&mut seq, token) {
                seq.sink.send(Event::Done(finish));
                self.free.push(seq.slot);
            } else {
                self.running.push(seq);
            }
        }
    }

    /// The logits of each prompt's last position, `[rows x vocab]` flat on the host, and
    /// the vocabulary size: [`Engine::prefill`]'s pass.
    fn first_logits(&mut self, batch: &[Starting<S>]) -> Result<(Vec<f32>, usize)> {
        let longest = batch.iter().map(|s| s.prompt.len()).max().unwrap_or(0);
        let mut ids = vec![0i64; batch.len() * longest];
        for (i, s) in batch.iter().enumerate() {
            ids[i * longest..i * longest + s.prompt.len()].copy_from_slice(&s.prompt);
        }
        let device = self.model.device();
        let ids = Tensor::from_slice(&ids)
            .view([batch.len() as i64, longest as i64])
            .to_device(device);
        let slots: Vec<i64> = batch.iter().map(|s| s.seq.slot).collect();
        let rows: Vec<Option<&ServedAdapter>> =
            batch.iter().map(|s| s.seq.adapter.as_deref()).collect();
        let g = Gathered::build(&rows, self.options(), self.group_limit);
        let h = self.model.hidden_cached(
            &ids,
            &slots,
            &vec![0; batch.len()],
            &mut self.kv,
            &|l, role, lin, x| g.project(l, role, lin, x),
        )?;
        // Each row's last prompt position, through the output projection.
        let last: Vec<i64> = batch.iter().map(|s| s.prompt.len() as i64 - 1).collect();
        let last = Tensor::from_slice(&last).to_device(device);
        let h = h
            .gather(
                1,
                &last.view([-1, 1, 1]).expand([-1, 1, h.size()[2]], false),
                false,
            )
            .squeeze_dim(1);
        let logits = self
            .model
            .head(&h)
            .to_kind(Kind::Float)
            .to_device(Device::Cpu);
        let vocab = logits.size()[1] as usize;
        Ok((Vec::<f32>::try_from(&logits.flatten(0, -1))?, vocab))
    }

    /// Delivers `token` to `seq`; `Some` when the sequence is over.
    fn emit(&mut self, seq: &mut Running<S>, token: i64) -> Option<Finish> {
        if token == self.eot {
            return Some(Finish::Stop);
        }
        self.tokens += 1;
        seq.generated += 1;
        seq.next = token;
        if !seq.sink.send(Event::Token(token)) {
            return Some(Finish::Cancelled);
        }
        if seq.generated >= seq.max_tokens || seq.len + 1 >= self.model.config.max_positions {
            return Some(Finish::Length);
        }
        None
    }

    /// The model's precision and device, for tensors that meet its activations.
    fn options(&self) -> (Kind, Device) {
        (self.model.kind(), self.model.device())
    }

    /// One decoding step for every running sequence; when its pass fails, they all end
    /// `Failed` (slots freed) and the error is returned.
    fn decode(&mut self) -> Result<()> {
        if self.running.is_empty() {
            return Ok(());
        }
        let sampled: Vec<i64> = (0..self.running.len() as i64)
            .filter(|&i| self.running[i as usize].sampling.temperature > 0.0)
            .collect();
        let (greedy, rows, vocab) = match crate::guarded(|| self.next_logits(&sampled)) {
            Ok(next) => next,
            Err(e) => {
                let running = std::mem::take(&mut self.running);
                self.fail(running, &format!("decoding failed: {e}"));
                return Err(e);
            }
        };
        let mut done = Vec::new();
        let mut running = std::mem::take(&mut self.running);
        for (i, seq) in running.iter_mut().enumerate() {
            seq.len += 1;
            let token = match sampled.binary_search(&(i as i64)) {
                Ok(j) => pick(
                    &rows[j * vocab..(j + 1) * vocab],
                    &seq.sampling,
                    &mut seq.rng,
                ),
                Err(_) => greedy[i],
            };
            if let Some(finish) = self.emit(seq, token) {
                done.push((i, finish));
            }
        }
        for (i, finish) in done.into_iter().rev() {
            let mut seq = running.remove(i);
            seq.sink.send(Event::Done(finish));
            self.free.push(seq.slot);
        }
        self.running = running;
        Ok(())
    }

    /// Ends sequences whose pass failed with `Failed(message)` and frees their slots.
    fn fail(&mut self, seqs: impl IntoIterator<Item = Running<S>>, message: &str) {
        for mut seq in seqs {
            seq.sink.send(Event::Failed(message.to_string()));
            self.free.push(seq.slot);
        }
    }

    /// [`Engine::decode`]'s pass: every running sequence's next position through the model.
    /// Returns the device's argmax of every row (the first maximum, as [`pick`]), the logits
    /// of the rows in `sampled` flat on the host (only those travel), and the vocabulary
    /// size.
    fn next_logits(&mut self, sampled: &[i64]) -> Result<(Vec<i64>, Vec<f32>, usize)> {
        let key: Vec<Option<AdapterId>> = self
            .running
            .iter()
            .map(|s| s.adapter.as_ref().map(|a| a.id))
            .collect();
        if self
            .gathered
            .as_ref()
            .is_none_or(|g| g.key != key || g.limit != self.group_limit)
        {
            let rows: Vec<Option<&ServedAdapter>> =
                self.running.iter().map(|s| s.adapter.as_deref()).collect();
            self.gathered = Some(Gathered::build(&rows, self.options(), self.group_limit));
        }
        let g = self.gathered.as_ref().expect("built above");
        let next: Vec<i64> = self.running.iter().map(|s| s.next).collect();
        let slots: Vec<i64> = self.running.iter().map(|s| s.slot).collect();
        let start: Vec<i64> = self.running.iter().map(|s| s.len).collect();
        let ids = Tensor::from_slice(&next)
            .to_device(self.model.device())
            .unsqueeze(1);
        let logits =
            self.model
                .forward_cached(&ids, &slots, &start, &mut self.kv, &|l, role, lin, x| {
                    g.project(l, role, lin, x)
                })?;
        let logits = logits.squeeze_dim(1);
        let vocab = logits.size()[1] as usize;
        let greedy = Vec::<i64>::try_from(&logits.argmax(-1, false).to_device(Device::Cpu))?;
        let rows = if sampled.is_empty() {
            Vec::new()
        } else {
            let idx = Tensor::from_slice(sampled).to_device(self.model.device());
            Vec::<f32>::try_from(
                &logits
                    .index_select(0, &idx)
                    .to_kind(Kind::Float)
                    .to_device(Device::Cpu)
                    .flatten(0, -1),
            )?
        };
        Ok((greedy, rows, vocab))
    }
}

/// The next token from one row of logits.
fn pick(logits: &[f32], s: &Sampling, rng: &mut Rng) -> i64 {
    if s.temperature <= 0.0 {
        // First index of the maximum, as torch's argmax.
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        return best as i64;
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &v)| (i, ((v as f64 - max) / s.temperature).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0.0;
    let mut n = 0;
    for p in &probs {
        kept += p.1 / total;
        n += 1;
        if kept >= s.top_p {
            break;
        }
    }
    let mass: f64 = probs[..n].iter().map(|p| p.1).sum();
    let mut u = rng.unit() * mass;
    for p in &probs[..n] {
        u -= p.1;
        if u <= 0.0 {
            return p.0 as i64;
        }
    }
    probs[n - 1].0 as i64
}

/// Adds `sign × s·B A` to the weights of `model`'s adapted projections: merges an adapter
/// into the base (`sign = 1`) or takes it out again (`-1`), as the benchmark's merged and
/// swap-per-request baselines do.
pub fn merge_into(model: &mut Model, adapter: &ServedAdapter, sign: f64) {
    tch::no_grad(|| {
        for ((layer, role), (a, b)) in &adapter.factors {
            let block = &mut model.blocks[*layer];
            let lin = block
                .attn
                .get_mut(role.as_str())
                .or_else(|| block.mlp.get_mut(role.as_str()))
                .expect("adapter roles are the model's");
            let _ = lin.weight.g_add_(&(b.matmul(a) * sign));
        }
    });
}
