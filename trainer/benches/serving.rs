//! Multi-adapter serving benchmark (`make bench`), issue 7: decode throughput (generated
//! tokens per second, prefill included) and per-request latency when 100 requests share
//! 1, 10 or 100 distinct LoRA adapters in one continuous batch, side by side in one run with
//! the same base model serving one adapter merged into its weights (no LoRA work at all), and
//! with a swap-per-request baseline (load the adapter from disk, merge it, generate alone,
//! unmerge).
//!
//! Attribution (issue 21) is measured under sustained load, as `tributary serve` meets it:
//! several waves of 100 requests are queued at once (`TRIBUTARY_BENCH_WAVES`, default 3), so
//! the engine decodes the next wave while the previous one is attributed. As serving does, a
//! second thread with its own copy of the base model takes the finished answers waiting and
//! computes their gradient influence in batched passes, each row with its own adapter's
//! index (`influence::scores_batch`); a request counts as done when its attribution is. The
//! same waves with attribution off are the reference. Each adapter has an influence index over
//! 4 random 64-token documents at the default settings (8 checkpoints, projection 256), and
//! `TRIBUTARY_BENCH_PASSES` (comma-separated, default `0`: one pass per checkpoint, exact)
//! adds rows whose indexes share passes between checkpoints (`[attribution] passes`).
//!
//! The base is a Llama-shaped model with random weights, at two widths: hidden 512 (8 layers,
//! 8 heads over 4 key/value heads, SwiGLU 1408, vocabulary 4096: 26M parameters, where 100
//! adapters hold more weights than the base) and hidden 1024 (99M parameters); adapters are
//! rank 8 on q, v, o, up and down with random factors, saved and loaded as PEFT folders. Every request
//! has a 32-token prompt and generates 32 tokens (greedy, no end-of-text). Environment:
//! `TRIBUTARY_BENCH_REQUESTS` (default 100), `TRIBUTARY_BENCH_ADAPTERS` (the most distinct
//! adapters, default 100; the GPU check's CPU rehearsal uses fewer), `TRIBUTARY_BENCH_SWAP` (swap requests, default
//! 10), `TRIBUTARY_BENCH_THREADS` (default 2), `TRIBUTARY_BENCH_ROUNDS` (interleaved rounds of
//! the batched configurations without attribution, median reported; default 3; the
//! attribution rows run once, over their waves). `TRIBUTARY_BENCH_DEVICE` (cpu
//! or cuda) and `TRIBUTARY_BENCH_CHECKPOINT` (a Hugging Face checkpoint folder, loaded in its
//! stored precision on CUDA, instead of the two random shapes) are set by the GPU check
//! (`gpu.rs`).

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Instant;

use serde_json::json;
use tch::{Device, Kind, Tensor};
use tributary_trainer::attribute::Loaded;
use tributary_trainer::engine::AdapterId;
use tributary_trainer::engine::{
    Engine, Event, Request, Sampling, ServedAdapter, Sink, merge_into,
};
use tributary_trainer::influence::{self, InfluenceConfig, InfluenceIndex, Query};
use tributary_trainer::lora::{Lora, LoraConfig};
use tributary_trainer::model::{Config, Model};
use tributary_trainer::train::Checkpoint;

const PROMPT: i64 = 32;
const NEW: usize = 32;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(hidden: i64) -> Config {
    Config::from_hf(&json!({
        "model_type": "llama",
        "vocab_size": 4096,
        "hidden_size": hidden,
        "num_hidden_layers": 8,
        "num_attention_heads": hidden / 64,
        "num_key_value_heads": hidden / 128,
        "intermediate_size": hidden * 11 / 4,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": true,
    }))
    .unwrap()
}

/// Where the benchmark computes (`TRIBUTARY_BENCH_DEVICE`: cpu, the default, or cuda).
fn bench_device() -> Device {
    match std::env::var("TRIBUTARY_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    }
}

/// The base model: the checkpoint `TRIBUTARY_BENCH_CHECKPOINT` names, else random weights
/// at width `hidden`. A checkpoint's context is cut to 256 positions, as the random shapes
/// have: the engine's KV cache holds every slot's whole context (at Qwen2.5's 32,768
/// positions, 100 slots would take 40 GB).
fn base_model(seed: i64, hidden: i64) -> Model {
    match std::env::var("TRIBUTARY_BENCH_CHECKPOINT") {
        Ok(dir) => {
            let mut m = Model::load(std::path::Path::new(&dir), bench_device()).unwrap();
            m.config.max_positions = m.config.max_positions.min(256);
            m
        }
        Err(_) => model(seed, hidden),
    }
}

/// A model with random weights, named as in a Hugging Face Llama checkpoint.
fn model(seed: i64, hidden: i64) -> Model {
    tch::manual_seed(seed);
    let c = config(hidden);
    let mut w = std::collections::HashMap::new();
    let device = bench_device();
    let randn = |dims: &[i64]| Tensor::randn(dims, (Kind::Float, device)) * 0.02;
    let (h, kv) = (c.hidden, c.kv_heads * c.head_dim());
    w.insert(
        "model.embed_tokens.weight".to_string(),
        randn(&[c.vocab_size, h]),
    );
    w.insert(
        "model.norm.weight".to_string(),
        Tensor::ones([h], (Kind::Float, device)),
    );
    for i in 0..c.layers {
        let p = format!("model.layers.{i}");
        for (n, dims) in [
            ("self_attn.q_proj", [h, h]),
            ("self_attn.k_proj", [kv, h]),
            ("self_attn.v_proj", [kv, h]),
            ("self_attn.o_proj", [h, h]),
            ("mlp.gate_proj", [c.intermediate, h]),
            ("mlp.up_proj", [c.intermediate, h]),
            ("mlp.down_proj", [h, c.intermediate]),
        ] {
            w.insert(format!("{p}.{n}.weight"), randn(&dims));
        }
        for n in ["input_layernorm", "post_attention_layernorm"] {
            w.insert(
                format!("{p}.{n}.weight"),
                Tensor::ones([h], (Kind::Float, device)),
            );
        }
    }
    Model::from_weights(c, w, device).unwrap()
}

/// The contributions every adapter's influence index holds: 4 random 64-token documents.
fn documents(vocab: i64) -> Vec<(String, Vec<i64>)> {
    (0..4)
        .map(|i| {
            let t = Tensor::randint(vocab, [64], (Kind::Int64, Device::Cpu));
            (format!("doc{i}"), Vec::<i64>::try_from(&t).unwrap())
        })
        .collect()
}

/// Saves `n` random adapters as PEFT folders, each with an influence index of `docs` at the
/// default settings.
fn adapters(
    model: &Model,
    n: usize,
    docs: &[(String, Vec<i64>)],
    root: &std::path::Path,
) -> Vec<(AdapterId, PathBuf)> {
    (0..n)
        .map(|i| {
            let mut lora = Lora::new(model, LoraConfig::default(), i as i64).unwrap();
            let w: Vec<Tensor> = lora
                .weights()
                .into_iter()
                .map(|t| Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.05)
                .collect();
            lora.set_weights(&w);
            let dir = root.join(format!("a{i}"));
            lora.save_peft(model, &dir, "bench").unwrap();
            let at = |step: usize, scale: f64| Checkpoint {
                step,
                learning_rate: 1e-3,
                weights: w.iter().map(|t| t * scale).collect(),
            };
            // As many checkpoints as the default index keeps, the last one the adapter.
            let icfg = InfluenceConfig::default();
            let n = icfg.checkpoints;
            let cps = (1..=n).map(|s| at(s, s as f64 / n as f64)).collect();
            influence::build(model, &lora, cps, docs, &icfg)
                .unwrap()
                .save(&dir)
                .unwrap();
            let mut id = [0u8; 32];
            id[24..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            (id, dir)
        })
        .collect()
}

/// A finished answer for the attribution thread: its request number and its tokens (prompt
/// and output).
type Finished = (usize, Vec<i64>);

/// What the attribution thread is asked.
enum Job {
    /// Score a finished answer.
    Score(Finished),
    /// Score the answers after this one at `passes` per answer (0: one per checkpoint, the
    /// saved indexes), replying `usize::MAX` once ready.
    Passes(usize),
}

/// The passes per answer each attribution row uses (`TRIBUTARY_BENCH_PASSES`; 0 is one per
/// checkpoint).
fn passes_asked() -> Vec<usize> {
    let asked: Vec<usize> = std::env::var("TRIBUTARY_BENCH_PASSES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    if asked.is_empty() { vec![0] } else { asked }
}

/// The attribution thread, as [`attribution_thread`] returns it: where jobs go and where
/// scored answers' request numbers come back.
struct Attribution {
    to: mpsc::Sender<Job>,
    scored: mpsc::Receiver<usize>,
}

impl Attribution {
    /// Switches the thread to `passes` per answer (building those indexes first) and waits
    /// until it is ready.
    fn passes(&self, passes: usize) {
        self.to.send(Job::Passes(passes)).unwrap();
        assert_eq!(self.scored.recv().unwrap(), usize::MAX, "indexes ready");
    }
}

/// Serving's attribution thread: its own copy of the base model and every adapter with its
/// saved index (8 checkpoints, one pass each); answer `r` is scored with adapter `r %
/// dirs.len()`. At other passes ([`Job::Passes`]) it rebuilds every index from the saved
/// one's checkpoints over `docs` (one such set held at a time). The answers waiting when it
/// turns to them are scored together. Replies with each answer's request number once
/// scored.
fn attribution_thread(
    hidden: i64,
    dirs: Vec<PathBuf>,
    docs: Vec<(String, Vec<i64>)>,
    threads: i32,
) -> Attribution {
    let (to, inbox) = mpsc::channel::<Job>();
    let (reply, scored) = mpsc::channel();
    std::thread::spawn(move || {
        tch::set_num_threads(threads);
        let model = base_model(7, hidden);
        let loaded: Vec<Loaded> = dirs
            .iter()
            .map(|d| Loaded::load(&model, d).unwrap())
            .collect();
        let bytes: i64 = loaded.iter().map(Loaded::bytes).sum();
        println!(
            "attribution holds {} adapters with their indexes: {:.0} MiB (`tributary serve \
             --attribution-cache-mb` must be at least this to keep them all)",
            loaded.len(),
            bytes as f64 / (1 << 20) as f64
        );
        let (loras, saved): (Vec<Lora>, Vec<InfluenceIndex>) = loaded
            .into_iter()
            .map(|l| (l.lora, l.influence.unwrap()))
            .unzip();
        let mut rebuilt: Option<Vec<InfluenceIndex>> = None;
        reply.send(usize::MAX).unwrap();
        while let Ok(job) = inbox.recv() {
            let first = match job {
                Job::Passes(p) => {
                    drop(rebuilt.take()); // the last row's set goes before the next is built
                    rebuilt = (p != 0).then(|| {
                        loras
                            .iter()
                            .zip(&saved)
                            .map(|(lora, ix)| {
                                let config = InfluenceConfig {
                                    passes: p,
                                    ..ix.meta.config.clone()
                                };
                                influence::build(&model, lora, ix.checkpoints(), &docs, &config)
                                    .unwrap()
                                    .to_device(model.device())
                            })
                            .collect()
                    });
                    reply.send(usize::MAX).unwrap();
                    continue;
                }
                Job::Score(answer) => answer,
            };
            let mut batch = vec![first];
            batch.extend(inbox.try_iter().map(|job| match job {
                Job::Score(answer) => answer,
                Job::Passes(_) => panic!("passes change only between rows"),
            }));
            let set = rebuilt.as_deref().unwrap_or(&saved);
            let queries: Vec<Query<'_>> = batch
                .iter()
                .map(|(r, tokens)| Query {
                    index: &set[r % loras.len()],
                    lora: &loras[r % loras.len()],
                    tokens,
                })
                .collect();
            let scores = influence::scores_batch(&model, &queries).unwrap();
            assert!(scores.iter().all(|s| s.len() == docs.len()));
            for (r, _) in &batch {
                reply.send(*r).unwrap();
            }
        }
    });
    assert_eq!(scored.recv().unwrap(), usize::MAX, "indexes loaded");
    Attribution { to, scored }
}

/// Records when a request got its first token and when it finished; with attribution on,
/// collects its tokens and sends the finished answer to the attribution thread.
#[derive(Clone)]
struct Clock {
    start: Instant,
    first: Rc<std::cell::Cell<f64>>,
    done: Rc<std::cell::Cell<f64>>,
    attribute: Option<Collect>,
}

/// With attribution on: a request's number, its tokens so far (prompt first), and where its
/// finished answer goes.
#[derive(Clone)]
struct Collect {
    request: usize,
    tokens: Rc<RefCell<Vec<i64>>>,
    to: mpsc::Sender<Job>,
}

impl Clock {
    fn new(start: Instant) -> Self {
        Clock {
            start,
            first: Default::default(),
            done: Default::default(),
            attribute: None,
        }
    }
}

impl Sink for Clock {
    fn send(&mut self, e: Event) -> bool {
        if let Event::Failed(m) | Event::Refused(m) = &e {
            panic!("request failed: {m}");
        }
        if let Event::Token(t) = e {
            if self.first.get() == 0.0 {
                self.first.set(self.start.elapsed().as_secs_f64());
            }
            if let Some(c) = &self.attribute {
                c.tokens.borrow_mut().push(t);
            }
        }
        if matches!(e, Event::Done(_)) {
            self.done.set(self.start.elapsed().as_secs_f64());
            if let Some(c) = &self.attribute {
                c.to.send(Job::Score((c.request, c.tokens.take()))).unwrap();
            }
        }
        true
    }
}

struct Run {
    tokens_per_s: f64,
    p50: f64,
    p95: f64,
    /// 95th percentile of the time to first token.
    ttft_p95: f64,
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// `waves` times the prompts, all submitted at once (the engine takes as many as it has
/// slots, the rest wait); request `r` asks prompt `r % prompts.len()` of adapter `r %
/// adapters.len()` (none when `adapters` is empty). With `attribution`, every answer is also
/// attributed there, and a request is done when its attribution is.
fn batched(
    engine: &mut Engine<Clock>,
    adapters: &[(AdapterId, PathBuf)],
    prompts: &[Vec<i64>],
    waves: usize,
    attribution: Option<&Attribution>,
) -> Run {
    let start = Instant::now();
    let tokens0 = engine.tokens;
    let mut clocks = Vec::new();
    for r in 0..waves * prompts.len() {
        let p = &prompts[r % prompts.len()];
        let mut clock = Clock::new(start);
        if let Some(a) = attribution {
            clock.attribute = Some(Collect {
                request: r,
                tokens: Rc::new(RefCell::new(p.clone())),
                to: a.to.clone(),
            });
        }
        clocks.push(clock.clone());
        engine.submit(Request {
            adapter: (!adapters.is_empty()).then(|| {
                let (id, dir) = &adapters[r % adapters.len()];
                (*id, Some(dir.clone()))
            }),
            prompt: p.clone(),
            max_tokens: NEW,
            sampling: Sampling::GREEDY,
            sink: clock,
        });
    }
    engine.run_to_end().unwrap();
    let mut lat: Vec<f64> = clocks.iter().map(|c| c.done.get()).collect();
    if let Some(a) = attribution {
        for _ in &clocks {
            lat[a.scored.recv().unwrap()] = start.elapsed().as_secs_f64();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut first: Vec<f64> = clocks.iter().map(|c| c.first.get()).collect();
    Run {
        tokens_per_s: (engine.tokens - tokens0) as f64 / secs,
        p50: percentile(&mut lat, 0.5),
        p95: percentile(&mut lat, 0.95),
        ttft_p95: percentile(&mut first, 0.95),
    }
}

/// One request at a time: load the adapter from disk, merge, generate, unmerge.
fn swap(
    engine: &mut Engine<Clock>,
    adapters: &[(AdapterId, PathBuf)],
    prompts: &[Vec<i64>],
) -> Run {
    let start = Instant::now();
    let tokens0 = engine.tokens;
    let mut lat = Vec::new();
    let mut first = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let t0 = Instant::now();
        let clock = Clock::new(t0);
        let (id, dir) = &adapters[i % adapters.len()];
        let a = ServedAdapter::load(engine.model(), *id, dir).unwrap();
        merge_into(engine.model_mut(), &a, 1.0);
        engine.submit(Request {
            adapter: None,
            prompt: p.clone(),
            max_tokens: NEW,
            sampling: Sampling::GREEDY,
            sink: clock.clone(),
        });
        engine.run_to_end().unwrap();
        merge_into(engine.model_mut(), &a, -1.0);
        lat.push(t0.elapsed().as_secs_f64());
        first.push(clock.first.get());
    }
    Run {
        tokens_per_s: (engine.tokens - tokens0) as f64 / start.elapsed().as_secs_f64(),
        p50: percentile(&mut lat, 0.5),
        p95: percentile(&mut lat, 0.95),
        ttft_p95: percentile(&mut first, 0.95),
    }
}

/// What one run measures (from the environment, see the top of this file).
struct Settings {
    requests: usize,
    swaps: usize,
    threads: i32,
    rounds: usize,
    /// The most distinct adapters.
    most: usize,
    /// Waves of requests queued at once in the sustained rows.
    waves: usize,
    /// Passes per answer of each attribution row.
    passes: Vec<usize>,
}

/// Runs the benchmark (also from `gpu.rs`, over a checkpoint on the GPU).
pub(crate) fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("serving: benchmark");
        return;
    }
    // `make test`'s smoke run: a narrow model, 8 requests, one round.
    let smoke = std::env::var("TRIBUTARY_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let threads = env("TRIBUTARY_BENCH_THREADS", 2) as i32;
    tch::set_num_threads(threads);
    let settings = Settings {
        requests: env("TRIBUTARY_BENCH_REQUESTS", if smoke { 8 } else { 100 }),
        swaps: env("TRIBUTARY_BENCH_SWAP", if smoke { 2 } else { 10 }),
        threads,
        rounds: env("TRIBUTARY_BENCH_ROUNDS", if smoke { 1 } else { 3 }).max(1),
        most: env("TRIBUTARY_BENCH_ADAPTERS", 100).max(1),
        waves: env("TRIBUTARY_BENCH_WAVES", 3).max(1),
        passes: passes_asked(),
    };
    let widths: &[i64] = match std::env::var("TRIBUTARY_BENCH_CHECKPOINT") {
        Ok(_) => &[0],
        Err(_) if smoke => &[128],
        Err(_) => &[512, 1024],
    };
    for &hidden in widths {
        shape(hidden, &settings);
    }
}

/// How an attribution row is labelled: its passes per answer.
fn passes_label(passes: usize) -> String {
    match passes {
        0 => "one pass per checkpoint (exact)".to_string(),
        p => format!("{p} pass(es) per answer"),
    }
}

fn shape(hidden: i64, s: &Settings) {
    let (requests, most, waves) = (s.requests, s.most, s.waves);
    let dir = tempfile::tempdir().unwrap();
    let base = base_model(7, hidden);
    let hidden = base.config.hidden;
    let params: i64 = base.parameters().iter().map(|t| t.numel() as i64).sum();
    let docs = documents(base.config.vocab_size);
    let all = adapters(&base, most, &docs, dir.path());
    let adapter_params: i64 = ServedAdapter::load(&base, all[0].0, &all[0].1)
        .unwrap()
        .bytes()
        / base.kind().elt_size_in_bytes() as i64;
    tch::manual_seed(3);
    let vocab = base.config.vocab_size;
    let prompts: Vec<Vec<i64>> = (0..requests)
        .map(|_| {
            Vec::<i64>::try_from(&Tensor::randint(
                vocab,
                [PROMPT],
                (Kind::Int64, Device::Cpu),
            ))
            .unwrap()
        })
        .collect();
    let on = match base.device() {
        Device::Cpu => format!("{} threads", s.threads),
        d => format!("{d:?}, {:?}", base.kind()),
    };
    println!(
        "\nserving benchmark: hidden {hidden}, {params} parameters, {requests} requests x ({PROMPT} prompt + {NEW} new tokens), rank-8 adapters on q,v,o,up,down ({adapter_params} parameters each), {on}"
    );
    let eot = -1;
    let mut engine: Engine<Clock> =
        Engine::new(base_model(7, hidden), eot, requests as i64, i64::MAX);
    // Warm up: load every adapter once and run a short batch.
    let warm = &prompts[..requests.min(8)];
    let _ = batched(&mut engine, &all, warm, 1, None);
    for (id, dir) in &all {
        engine.preload(*id, dir).unwrap();
    }

    let mut merged_engine: Engine<Clock> =
        Engine::new(base_model(7, hidden), eot, requests as i64, i64::MAX);
    let first = ServedAdapter::load(merged_engine.model(), all[0].0, &all[0].1).unwrap();
    merge_into(merged_engine.model_mut(), &first, 1.0);
    let _ = batched(&mut merged_engine, &[], warm, 1, None);
    let dirs = all.iter().map(|(_, d)| d.clone()).collect();
    let attribution = attribution_thread(hidden, dirs, docs, s.threads);

    // Rounds interleave the configurations without attribution (this machine's speed
    // drifts); each reports its median round. Then each attribution row runs once, over its
    // waves, after its indexes are ready and a short batch warmed it up.
    let mut runs: Vec<Vec<Run>> = (0..5).map(|_| Vec::new()).collect();
    for _ in 0..s.rounds {
        runs[0].push(batched(&mut merged_engine, &[], &prompts, 1, None));
        for (i, k) in [1, 10.min(most), most].into_iter().enumerate() {
            runs[i + 1].push(batched(&mut engine, &all[..k], &prompts, 1, None));
        }
        runs[4].push(batched(&mut engine, &all, &prompts, waves, None));
    }
    let mut attributed = Vec::new();
    for &p in &s.passes {
        attribution.passes(p);
        let _ = batched(&mut engine, &all, warm, 1, Some(&attribution));
        attributed.push(batched(
            &mut engine,
            &all,
            &prompts,
            waves,
            Some(&attribution),
        ));
    }
    let median = |mut v: Vec<Run>| {
        v.sort_by(|a, b| a.tokens_per_s.total_cmp(&b.tokens_per_s));
        v.remove(v.len() / 2)
    };
    let mut runs = runs.into_iter();
    let merged = median(runs.next().unwrap());
    let rows: Vec<(String, Run)> = [
        "1 adapter(s), batched".to_string(),
        format!("{} adapter(s), batched", 10.min(most)),
        format!("{most} adapter(s), batched"),
        format!("{most} adapter(s), {waves} waves queued, attribution off"),
    ]
    .into_iter()
    .zip(runs)
    .map(|(name, r)| (name, median(r)))
    .collect();
    let mut swap_engine: Engine<Clock> = Engine::new(base_model(7, hidden), eot, 1, i64::MAX);
    let swapped = swap(&mut swap_engine, &all, &prompts[..s.swaps.min(requests)]);

    println!(
        "(median of {} interleaved rounds; the attribution rows and the swap baseline run once)",
        s.rounds
    );
    println!(
        "| serving | tokens/s | vs merged | p50 latency | p95 latency | p95 time to first token |"
    );
    println!("|---|---|---|---|---|---|");
    let line = |name: &str, r: &Run| {
        println!(
            "| {name} | {:.0} | {:.2}x | {:.2} s | {:.2} s | {:.3} s |",
            r.tokens_per_s,
            r.tokens_per_s / merged.tokens_per_s,
            r.p50,
            r.p95,
            r.ttft_p95
        )
    };
    line("one adapter merged into the base (reference)", &merged);
    for (name, r) in &rows {
        line(name, r);
    }
    for (&p, r) in s.passes.iter().zip(&attributed) {
        let name = format!(
            "{most} adapter(s), {waves} waves queued, attribution on, {}",
            passes_label(p)
        );
        line(&name, r);
    }
    line(
        &format!(
            "swap per request ({} requests, one at a time)",
            s.swaps.min(requests)
        ),
        &swapped,
    );
    let (hundred, off) = (&rows[2].1, &rows[3].1);
    println!(
        "hidden {hidden}, {most} adapters: {:.2}x the merged model (goal >= 0.8x), {:.1}x the swap baseline (goal >= 5x)",
        hundred.tokens_per_s / merged.tokens_per_s,
        hundred.tokens_per_s / swapped.tokens_per_s,
    );
    for (&p, r) in s.passes.iter().zip(&attributed) {
        println!(
            "hidden {hidden}, {most} adapters, {waves} waves queued: attribution on, {}: {:.2}x the tokens/s with it off (goal >= 0.7x)",
            passes_label(p),
            r.tokens_per_s / off.tokens_per_s
        );
    }
}
