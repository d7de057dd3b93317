//! Attribution benchmark (`make bench`), issue 6.
//!
//! 1. Accuracy on the shared-vocabulary planted Datanet ([`tributary_trainer::planted`]):
//!    eight contributors, 40 documents each, an adapter trained 500 steps; top-1 and top-3
//!    contributor accuracy over 80 held-out queries. Then the plain leave-one-contributor-out
//!    validation ([`planted::validate`]): contributor i gives 5(i + 1) documents, 10 held-out
//!    documents per sub-domain, three training seeds, each contributor's rise the mean of three
//!    retrainings without them (27 trainings per seed); the mean Spearman correlation of credit
//!    with the rise in held-out loss, TracIn (as paid, and netted per contributor) side by side
//!    with DataInf and with contributor size alone.
//! 2. Gradient method at scale: query latency p50/p95 over an index of 100,000 contributions.
//!    Computing 100,000 real gradients takes about an hour on two cores, so the index is built from
//!    `TRIBUTARY_BENCH_INDEX_DOCS` real planted contributions (default 2,000; its build rate is
//!    reported) and its rows are repeated up to 100,000 (a query's cost does not depend on the
//!    values: one query gradient per checkpoint and a `[rows, dim]` product).
//! 3. Span method at scale: a suffix array over `TRIBUTARY_BENCH_SPAN_TOKENS` tokens (default
//!    50,000,000) of the base model's generated corpus, tokenized: build time, bytes per token
//!    as stored, contribution ids included (infini-gram reports about 7) and query latency
//!    p50/p95 (half the queries copy a contribution, half are fresh text, up to 64 tokens);
//!    then the same for the same tokens moved into a Qwen-sized vocabulary (151,936).
//!    `TRIBUTARY_BENCH_ONLY=spans` runs this part alone;
//!    `TRIBUTARY_BENCH_ONLY=gradient` runs part 2 (after part 1's training and accuracy,
//!    without the leave-one-out validation).

use std::time::Instant;

use tch::{Device, Tensor};
use tributary_trainer::base::{self, Recipe};
use tributary_trainer::influence::{self, IndexMeta, InfluenceConfig, InfluenceIndex};
use tributary_trainer::lora::LoraConfig;
use tributary_trainer::model::Model;
use tributary_trainer::planted::{self, Gen};
use tributary_trainer::spans::SpanIndex;
use tributary_trainer::tokenizer::Tokenizer;
use tributary_trainer::train::{TrainConfig, train_with_checkpoints};

const K: usize = 8;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `make test`'s smoke run (`TRIBUTARY_BENCH_SMOKE=1`): every part, at a few steps and rows.
fn smoke() -> bool {
    std::env::var("TRIBUTARY_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

fn config() -> TrainConfig {
    TrainConfig {
        lora: LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: ["q", "v", "o", "up", "down"].map(String::from).to_vec(),
        },
        learning_rate: 1e-2,
        weight_decay: 0.0,
        warmup_steps: if smoke() { 2 } else { 10 },
        max_steps: if smoke() { 20 } else { 500 },
        batch_size: 8,
        grad_accum: 1,
        clip_norm: 1.0,
        seq_len: 48,
        eval_fraction: 0.1,
        eval_every: if smoke() { 10 } else { 25 },
        patience: 0,
        seed: 0,
        ..TrainConfig::default()
    }
}

/// p50 and p95 of `samples` (seconds), in milliseconds.
fn percentiles(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize] * 1e3;
    (at(0.5), at(0.95))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = base::build_cached(&Recipe::tiny(), &base::default_cache(), &mut |_| {})
        .expect("tiny base model");
    let model = Model::load(&dir, Device::Cpu).unwrap();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    println!(
        "attribution benchmark: tiny base model, {} threads",
        tch::get_num_threads()
    );

    // `TRIBUTARY_BENCH_ONLY=spans`: the span method alone (it needs no training);
    // `gradient`: the gradient method at scale, without the leave-one-out validation.
    let only = std::env::var("TRIBUTARY_BENCH_ONLY").unwrap_or_default();
    if only == "spans" {
        span_method(&tok);
        return;
    }

    // 1. Accuracy and leave-one-out on the planted Datanet.
    let cfg = config();
    let docs = planted::shared_datanet(&tok, &[if smoke() { 10 } else { 40 }; K], 7).unwrap();
    let ids: Vec<Vec<i64>> = docs.iter().map(|d| d.tokens.clone()).collect();
    let (lora, report, checkpoints) =
        train_with_checkpoints(&model, &ids, tok.eot(), &cfg, None, &mut |_| {}).unwrap();
    let trained = planted::trained(&docs, cfg.eval_fraction);
    let icfg = InfluenceConfig::default();
    let picked = influence::pick(checkpoints, report.best_step, icfg.checkpoints);
    let started = Instant::now();
    let index = influence::build(&model, &lora, picked, &trained, &icfg).unwrap();
    let build_s = started.elapsed().as_secs_f64();
    let per = if smoke() { 1 } else { 10 };
    let acc = planted::accuracy(&model, &lora, &index, &tok, K, per, 99).unwrap();
    println!(
        "planted Datanet: {} contributions trained, training {:.1} s, index {:.1} s; top-1 {}/{} ({:.1}%), top-3 {}/{} ({:.1}%)",
        trained.len(),
        report.seconds,
        build_s,
        acc.top1,
        acc.queries,
        100.0 * acc.top1 as f64 / acc.queries as f64,
        acc.top3,
        acc.queries,
        100.0 * acc.top3 as f64 / acc.queries as f64,
    );
    if only != "gradient" {
        leave_one_out(&model, &tok, &cfg, &icfg);
    }

    // 2. Gradient query latency over 100,000 contributions.
    let real = env(
        "TRIBUTARY_BENCH_INDEX_DOCS",
        if smoke() { 40 } else { 2000 },
    );
    let target: usize = if smoke() { 1_000 } else { 100_000 };
    let many = planted::datanet(&tok, K, real.div_ceil(K), 3).unwrap();
    let many: Vec<(String, Vec<i64>)> = many
        .into_iter()
        .take(real)
        .map(|d| (d.id, d.tokens))
        .collect();
    let cps = index.checkpoints();
    let started = Instant::now();
    let small = influence::build(&model, &lora, cps, &many, &icfg).unwrap();
    let rate = real as f64 / started.elapsed().as_secs_f64();
    let folder = tempfile::tempdir().unwrap();
    small.save(folder.path()).unwrap();
    let file = folder.path().join("influence.safetensors");
    let tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(&file)
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            if name.ends_with(".grads") {
                let reps = target.div_ceil(real) as i64;
                (name, t.repeat([reps, 1]).narrow(0, 0, target as i64))
            } else {
                (name, t)
            }
        })
        .collect();
    Tensor::write_safetensors(&tensors, &file).unwrap();
    let meta = IndexMeta {
        ids: (0..target).map(|i| format!("c{}-{i}", i % K)).collect(),
        ..small.meta.clone()
    };
    std::fs::write(
        folder.path().join("influence.json"),
        serde_json::to_vec(&meta).unwrap(),
    )
    .unwrap();
    let big = InfluenceIndex::load(folder.path()).unwrap();
    let mut g = Gen(41);
    let mut times = Vec::new();
    for i in 0..if smoke() { 8 } else { 60 } {
        let q = tok.encode(&g.document(i % K)).unwrap();
        let started = Instant::now();
        let scores = big.scores(&model, &lora, &q).unwrap();
        let shares = influence::shares(&scores);
        std::hint::black_box(shares);
        if i >= 5 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    let (p50, p95) = percentiles(times);
    println!(
        "gradient method, {target} contributions x {} checkpoints x dim {}: query p50 {p50:.1} ms, p95 {p95:.1} ms (index rows from {real} real gradients, built at {rate:.0} contributions/s per checkpoint set: {:.1} h for 100,000 on this machine)",
        meta.checkpoints.len(),
        meta.config.dim,
        target as f64 / rate / 3600.0
    );

    if only != "gradient" {
        span_method(&tok);
    }
}

/// 1 (continued). The plain leave-one-contributor-out validation, three seeds.
fn leave_one_out(model: &Model, tok: &Tokenizer, cfg: &TrainConfig, icfg: &InfluenceConfig) {
    let started = Instant::now();
    let sizes: Vec<usize> = (1..=K).map(|i| 5 * i).collect();
    let unequal = planted::shared_datanet(tok, &sizes, 7).unwrap();
    let plain = TrainConfig {
        learning_rate: 3e-3,
        max_steps: if smoke() { 10 } else { 200 },
        ..cfg.clone()
    };
    let seeds = if smoke() { 1 } else { 3 };
    let held = if smoke() { 2 } else { 10 };
    let retrains = if smoke() { 1 } else { 3 };
    let v = planted::validate(
        model, tok, &unequal, K, &plain, icfg, held, 11, seeds, retrains,
    )
    .unwrap();
    println!(
        "plain leave-one-contributor-out ({seeds} seeds, each rise the mean of {retrains} retrainings, {:.0} s), mean Spearman of credit and held-out loss rise: TracIn as paid {:.3}, TracIn netted per contributor {:.3}, DataInf {:.3}, contributor size alone {:.3}\n  {v:.2?}",
        started.elapsed().as_secs_f64(),
        v.spearman(&v.tracin),
        v.spearman(&v.tracin_net),
        v.spearman(&v.datainf),
        v.size_spearman(&sizes),
    );
}

/// 3. Span index over tens of millions of tokens.
fn span_method(tok: &Tokenizer) {
    let want = env(
        "TRIBUTARY_BENCH_SPAN_TOKENS",
        if smoke() { 200_000 } else { 50_000_000 },
    );
    let started = Instant::now();
    let mut stream: Vec<(String, Vec<i64>)> = Vec::new();
    let (mut total, mut seed) = (0usize, 1u64);
    while total < want {
        for text in base::corpus(20_000, seed) {
            let t = tok.encode(&text).unwrap();
            total += t.len() + 1;
            // Ids shaped like Tributary's (32-byte hashes), so the id table weighs what it does.
            stream.push((format!("0x{:064x}", stream.len()), t));
        }
        seed += 1;
    }
    let generate_s = started.elapsed().as_secs_f64();
    println!(
        "span method: {total} tokens in {} contributions, generated and tokenized in {generate_s:.0} s",
        stream.len()
    );
    let fresh: Vec<Vec<i64>> = base::corpus(400, 999_999)
        .iter()
        .map(|text| tok.encode(text).unwrap().into_iter().take(64).collect())
        .collect();
    span_queries("the tiny model's vocabulary", &stream, tok.eot(), &fresh);
    // The same text in Qwen2.5's vocabulary of 151,936 tokens: every id moved up so that the
    // largest sits at its top (18 bits), as a real tokenizer's rare tokens would.
    let up = 151_936 - tok.vocab_size() as i64;
    for (_, t) in stream.iter_mut() {
        t.iter_mut().for_each(|x| *x += up);
    }
    let fresh: Vec<Vec<i64>> = fresh
        .into_iter()
        .map(|q| q.into_iter().map(|x| x + up).collect())
        .collect();
    span_queries("a Qwen-sized vocabulary", &stream, tok.eot() + up, &fresh);
}

/// Builds a span index over `stream` and queries it 400 times: half the queries a
/// contribution copied whole, half fresh text.
fn span_queries(label: &str, stream: &[(String, Vec<i64>)], eot: i64, fresh: &[Vec<i64>]) {
    let started = Instant::now();
    let spans = SpanIndex::build(stream, eot).unwrap();
    let build_s = started.elapsed().as_secs_f64();
    let bytes_per_token = spans.bytes() as f64 / spans.len() as f64;
    let mut times = Vec::new();
    let mut found = 0;
    for i in 0..400 {
        let query = if i % 2 == 0 {
            &stream[(i * 104_729) % stream.len()].1
        } else {
            &fresh[i]
        };
        let started = Instant::now();
        let hits = spans.find(query, 8);
        times.push(started.elapsed().as_secs_f64());
        found += usize::from(!hits.is_empty());
    }
    let (p50, p95) = percentiles(times);
    let (token_bits, position_bits) = spans.widths();
    // What the format before packing stored: u16 or u32 tokens, i32 positions and starts.
    let width = if token_bits > 16 { 4 } else { 2 };
    let whole = (spans.len() * (width + 4) + stream.len() * (4 + 32)) as f64 / spans.len() as f64;
    println!(
        "span method, {label}: build {build_s:.1} s, {bytes_per_token:.2} bytes/token with the id table ({token_bits}-bit tokens, {position_bits}-bit positions; whole bytes, as before: {whole:.2}; infini-gram: about 7), query p50 {p50:.2} ms, p95 {p95:.2} ms ({found}/400 queries with a span of 8+ tokens)"
    );
}
