//! LoRA training-step benchmark (`make bench`), issue 5: tokens per second and peak memory of
//! a training step (forward, cross-entropy, backward, gradient clipping, AdamW on the adapters)
//! on a GPT-2-small-shaped model (124M parameters, random init, dropout off), sequence 256,
//! side by side in one run with Python PyTorch + PEFT on the identical checkpoint, batch,
//! LoRA (rank 8 on attn.c_attn and attn.c_proj) and thread count.
//!
//! Each side runs in its own process (this binary re-runs itself with `--tributary-side`), so
//! peak resident memory is measured the same way for both. `TRIBUTARY_BENCH_STEPS` sets the
//! measured steps (default 5, after 2 warmup steps); `TRIBUTARY_BENCH_BATCH` the batch
//! (default 4). The checkpoint is written once by transformers into
//! `~/.cache/tributary/bench/gpt2-small-random`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};
use tributary_trainer::lora::{Lora, LoraConfig};
use tributary_trainer::model::Model;

const SEQ: i64 = 256;
const RANK: i64 = 8;
const WARMUP: usize = 2;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn python() -> String {
    std::env::var("TRIBUTARY_PYTHON")
        .expect("TRIBUTARY_PYTHON is not set: run `eval \"$(scripts/setup.sh)\"` first")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peft_step.py")
}

/// Peak resident set of this process, MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Tributary's side, in this process: prints tokens/s, s/step, peak MiB.
fn tributary_side(dir: &Path, batch: i64, steps: usize, threads: i32) {
    tch::set_num_threads(threads);
    let model = Model::load(dir, Device::Cpu).expect("checkpoint loads");
    let cfg = LoraConfig {
        rank: RANK,
        alpha: 2.0 * RANK as f64,
        dropout: 0.0,
        targets: vec!["qkv".into(), "o".into()],
    };
    let lora = Lora::new(&model, cfg, 0).unwrap();
    let mut opt = tch::nn::AdamW {
        wd: 0.0,
        ..tch::nn::AdamW::default()
    }
    .build(lora.var_store(), 1e-4)
    .unwrap();
    tch::manual_seed(1);
    let ids = Tensor::randint(
        model.config.vocab_size,
        [batch, SEQ + 1],
        (Kind::Int64, Device::Cpu),
    );
    let (input, target) = (ids.narrow(1, 0, SEQ), ids.narrow(1, 1, SEQ));
    let mut step = || {
        let logits = lora.logits(&model, &input, true).unwrap();
        let v = logits.size()[2];
        let loss = logits
            .reshape([-1, v])
            .cross_entropy_for_logits(&target.reshape([-1]));
        loss.backward();
        opt.clip_grad_norm(1.0);
        opt.step();
        opt.zero_grad();
    };
    for _ in 0..WARMUP {
        step();
    }
    let start = Instant::now();
    for _ in 0..steps {
        step();
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "tokens_per_second": (batch * SEQ) as f64 * steps as f64 / s,
            "seconds_per_step": s / steps as f64,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
}

fn run_side(cmd: &mut Command, name: &str) -> serde_json::Value {
    let out = cmd.output().unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        out.status.success(),
        "{name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{name} printed {text:?}: {e}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `make test`'s smoke run: one step of one sequence a side.
    let smoke = std::env::var("TRIBUTARY_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let batch = env("TRIBUTARY_BENCH_BATCH", if smoke { 1 } else { 4 }) as i64;
    let steps = env("TRIBUTARY_BENCH_STEPS", if smoke { 1 } else { 5 });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    let dir = home.join(".cache/tributary/bench/gpt2-small-random");
    if let Some(i) = args.iter().position(|a| a == "--tributary-side") {
        tributary_side(Path::new(&args[i + 1]), batch, steps, threads);
        return;
    }
    if !dir.join("model.safetensors").exists() {
        eprintln!("writing the random-init GPT-2 small checkpoint with transformers…");
        let ok = Command::new(python())
            .arg(script())
            .arg("init")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "peft_step.py init failed");
    }
    println!(
        "LoRA training step, GPT-2 small shape (124M, random init), batch {batch} x seq {SEQ}, rank {RANK} on attn.c_attn + attn.c_proj, {threads} threads, {steps} steps after {WARMUP} warmup"
    );
    let me = std::env::current_exe().unwrap();
    let ours = run_side(
        Command::new(&me).arg("--tributary-side").arg(&dir),
        "tributary",
    );
    let theirs = run_side(
        Command::new(python())
            .arg(script())
            .arg("run")
            .arg(&dir)
            .args(
                [
                    batch as usize,
                    SEQ as usize,
                    WARMUP,
                    steps,
                    threads as usize,
                    RANK as usize,
                ]
                .map(|n| n.to_string()),
            ),
        "PyTorch + PEFT",
    );
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!("| side | tokens/s | s/step | peak RSS (MiB) |");
    println!("|---|---|---|---|");
    for (name, v) in [("Tributary (tch)", &ours), ("PyTorch + PEFT", &theirs)] {
        println!(
            "| {name} | {:.0} | {:.2} | {:.0} |",
            f(v, "tokens_per_second"),
            f(v, "seconds_per_step"),
            f(v, "peak_rss_mib")
        );
    }
    for (name, v) in [("Tributary", &ours), ("PyTorch + PEFT", &theirs)] {
        assert!(
            f(v, "tokens_per_second") > 0.0,
            "{name} measured nothing: {v}"
        );
    }
    println!(
        "ratio (Tributary / PEFT): tokens/s {:.2}x (goal >= 1.0x), peak memory {:.2}x",
        f(&ours, "tokens_per_second") / f(&theirs, "tokens_per_second"),
        f(&ours, "peak_rss_mib") / f(&theirs, "peak_rss_mib")
    );
}
