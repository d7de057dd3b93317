//! Multi-adapter serving benchmark (`make bench`), issue 7: decode throughput (generated
//! tokens per second, prefill included) and per-request latency when 100 requests share
//! 1, 10 or 100 distinct LoRA adapters in one continuous batch, side by side in one run with
//! the same base model serving one adapter merged into its weights (no LoRA work at all), and
//! with a swap-per-request baseline (load the adapter from disk, merge it, generate alone,
//! unmerge). With attribution on, the 100-adapter batch also scores every answer as serving
//! does: a second thread with its own copy of the base model takes the finished answers
//! waiting, and computes their gradient influence in batched passes, each row with its own
//! adapter's index (`influence::scores_batch`); a request counts as done when its
//! attribution is. Each adapter has an influence index over 4 random 64-token documents at
//! the default settings (8 checkpoints, projection 256).
//!
//! The base is a Llama-shaped model with random weights, at two widths: hidden 512 (8 layers,
//! 8 heads over 4 key/value heads, SwiGLU 1408, vocabulary 4096: 26M parameters, where 100
//! adapters hold more weights than the base) and hidden 1024 (99M parameters); adapters are
//! rank 8 on q, v, o, up and down with random factors, saved and loaded as PEFT folders. Every request
//! has a 32-token prompt and generates 32 tokens (greedy, no end-of-text). Environment:
//! `TRIBUTARY_BENCH_REQUESTS` (default 100), `TRIBUTARY_BENCH_ADAPTERS` (the most distinct
//! adapters, default 100; the GPU check's CPU rehearsal uses fewer), `TRIBUTARY_BENCH_SWAP` (swap requests, default
//! 10), `TRIBUTARY_BENCH_THREADS` (default 2), `TRIBUTARY_BENCH_ROUNDS` (interleaved rounds of
//! the batched configurations, median reported; default 3). `TRIBUTARY_BENCH_DEVICE` (cpu
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
use tributary_trainer::influence::{self, InfluenceConfig, Query};
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

/// Saves `n` random adapters as PEFT folders, each with an influence index.
fn adapters(model: &Model, n: usize, root: &std::path::Path) -> Vec<(AdapterId, PathBuf)> {
    let docs: Vec<(String, Vec<i64>)> = (0..4)
        .map(|i| {
            let t = Tensor::randint(model.config.vocab_size, [64], (Kind::Int64, Device::Cpu));
            (format!("doc{i}"), Vec::<i64>::try_from(&t).unwrap())
        })
        .collect();
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
            influence::build(model, &lora, cps, &docs, &icfg)
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

/// Serving's attribution thread: its own copy of the base model and every adapter's index;
/// the answers waiting when it turns to them are scored together. Replies with each
/// answer's request number once scored.
fn attribution_thread(
    hidden: i64,
    dirs: Vec<PathBuf>,
    threads: i32,
) -> (mpsc::Sender<Finished>, mpsc::Receiver<usize>) {
    let (jobs, inbox) = mpsc::channel::<Finished>();
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
        reply.send(usize::MAX).unwrap();
        while let Ok(first) = inbox.recv() {
            let mut batch = vec![first];
            batch.extend(inbox.try_iter());
            let queries: Vec<Query<'_>> = batch
                .iter()
                .map(|(i, tokens)| {
                    let l = &loaded[i % loaded.len()];
                    Query {
                        index: l.influence.as_ref().unwrap(),
                        lora: &l.lora,
                        tokens,
                    }
                })
                .collect();
            let scores = influence::scores_batch(&model, &queries).unwrap();
            assert!(scores.iter().all(|s| s.len() == 4));
            for (i, _) in &batch {
                reply.send(*i).unwrap();
            }
        }
    });
    assert_eq!(scored.recv().unwrap(), usize::MAX, "indexes loaded");
    (jobs, scored)
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
    to: mpsc::Sender<Finished>,
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
                c.to.send((c.request, c.tokens.take())).unwrap();
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

/// All requests submitted at once; request `i` uses adapter `i % adapters.len()` (none when
/// `adapters` is empty). With `attribution`, every answer is also attributed there, and a
/// request is done when its attribution is.
fn batched(
    engine: &mut Engine<Clock>,
    adapters: &[(AdapterId, PathBuf)],
    prompts: &[Vec<i64>],
    attribution: Option<&(mpsc::Sender<Finished>, mpsc::Receiver<usize>)>,
) -> Run {
    let start = Instant::now();
    let tokens0 = engine.tokens;
    let mut clocks = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let mut clock = Clock::new(start);
        if let Some((to, _)) = attribution {
            clock.attribute = Some(Collect {
                request: i,
                tokens: Rc::new(RefCell::new(p.clone())),
                to: to.clone(),
            });
        }
        clocks.push(clock.clone());
        engine.submit(Request {
            adapter: (!adapters.is_empty()).then(|| {
                let (id, dir) = &adapters[i % adapters.len()];
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
    if let Some((_, scored)) = attribution {
        for _ in prompts {
            lat[scored.recv().unwrap()] = start.elapsed().as_secs_f64();
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
    let requests = env("TRIBUTARY_BENCH_REQUESTS", if smoke { 8 } else { 100 });
    let swaps = env("TRIBUTARY_BENCH_SWAP", if smoke { 2 } else { 10 });
    let rounds = env("TRIBUTARY_BENCH_ROUNDS", if smoke { 1 } else { 3 }).max(1);
    let most = env("TRIBUTARY_BENCH_ADAPTERS", 100).max(1);
    let widths: &[i64] = match std::env::var("TRIBUTARY_BENCH_CHECKPOINT") {
        Ok(_) => &[0],
        Err(_) if smoke => &[128],
        Err(_) => &[512, 1024],
    };
    for &hidden in widths {
        shape(hidden, requests, swaps, threads, rounds, most);
    }
}

fn shape(hidden: i64, requests: usize, swaps: usize, threads: i32, rounds: usize, most: usize) {
    let dir = tempfile::tempdir().unwrap();
    let base = base_model(7, hidden);
    let hidden = base.config.hidden;
    let params: i64 = base.parameters().iter().map(|t| t.numel() as i64).sum();
    let all = adapters(&base, most, dir.path());
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
        Device::Cpu => format!("{threads} threads"),
        d => format!("{d:?}, {:?}", base.kind()),
    };
    println!(
        "\nserving benchmark: hidden {hidden}, {params} parameters, {requests} requests x ({PROMPT} prompt + {NEW} new tokens), rank-8 adapters on q,v,o,up,down ({adapter_params} parameters each), {on}"
    );
    let eot = -1;
    let mut engine: Engine<Clock> =
        Engine::new(base_model(7, hidden), eot, requests as i64, i64::MAX);
    // Warm up: load every adapter once and run a short batch.
    let _ = batched(&mut engine, &all, &prompts[..requests.min(8)], None);
    for (id, dir) in &all {
        engine.preload(*id, dir).unwrap();
    }

    let mut merged_engine: Engine<Clock> =
        Engine::new(base_model(7, hidden), eot, requests as i64, i64::MAX);
    let first = ServedAdapter::load(merged_engine.model(), all[0].0, &all[0].1).unwrap();
    merge_into(merged_engine.model_mut(), &first, 1.0);
    let _ = batched(&mut merged_engine, &[], &prompts[..requests.min(8)], None);
    let dirs = all.iter().map(|(_, d)| d.clone()).collect();
    let attribution = attribution_thread(hidden, dirs, threads);
    let _ = batched(
        &mut engine,
        &all,
        &prompts[..requests.min(8)],
        Some(&attribution),
    );

    // Rounds interleave the five configurations (this machine's speed drifts); each reports
    // its median round.
    let mut runs: Vec<Vec<Run>> = (0..5).map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        runs[0].push(batched(&mut merged_engine, &[], &prompts, None));
        for (i, k) in [1, 10.min(most), most].into_iter().enumerate() {
            runs[i + 1].push(batched(&mut engine, &all[..k], &prompts, None));
        }
        runs[4].push(batched(&mut engine, &all, &prompts, Some(&attribution)));
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
        format!("{most} adapter(s), batched, attribution on"),
    ]
    .into_iter()
    .zip(runs)
    .map(|(name, r)| (name, median(r)))
    .collect();
    let mut swap_engine: Engine<Clock> = Engine::new(base_model(7, hidden), eot, 1, i64::MAX);
    let swapped = swap(&mut swap_engine, &all, &prompts[..swaps.min(requests)]);

    println!("(median of {rounds} interleaved rounds; the swap baseline runs once)");
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
    line(
        &format!(
            "swap per request ({} requests, one at a time)",
            swaps.min(requests)
        ),
        &swapped,
    );
    let (hundred, attributed) = (&rows[2].1, &rows[3].1);
    println!(
        "hidden {hidden}, {most} adapters: {:.2}x the merged model (goal >= 0.8x), {:.1}x the swap baseline (goal >= 5x); attribution on: {:.2}x the tokens/s with it off (goal >= 0.7x)",
        hundred.tokens_per_s / merged.tokens_per_s,
        hundred.tokens_per_s / swapped.tokens_per_s,
        attributed.tokens_per_s / hundred.tokens_per_s
    );
}
