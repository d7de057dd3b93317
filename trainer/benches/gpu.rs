//! The Rust side of the GPU check (`scripts/gpu-check.sh`, issue 24), one binary so a GPU
//! machine without a toolchain needs only this file and libtorch:
//!
//! - `logits DIR…`: loads each checkpoint (sharded safetensors, in its stored precision) and
//!   compares its logits with transformers' (`DIR/reference.safetensors`, written by
//!   `gpu_reference.py logits`). Prints one JSON line per folder; fails past the tolerance
//!   of the stored precision.
//! - `train DIR DEVICE BATCH SEQ WARMUP STEPS RANK CHECKPOINTING`: LoRA training steps on the
//!   checkpoint in bfloat16 with the settings `gpu_reference.py train` uses (rank RANK, alpha
//!   2·RANK on q, k, v, o, gate, up, down; AdamW at 1e-4; gradient clipping at 1; random
//!   tokens, seed 1). Prints one JSON line: tokens/s, s/step, loss, and the model FLOPs per
//!   token that model FLOPs utilisation is computed from.
//! - `serve DIR DEVICE`: the multi-adapter serving benchmark (`serving.rs`) over the
//!   checkpoint on DEVICE.
//!
//! Without a subcommand (as `cargo bench` runs it) it says what it needs and exits: the
//! check's script prepares the checkpoints.

use std::path::Path;
use std::time::Instant;

use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};
use tributary_trainer::lora::{Lora, LoraConfig};
use tributary_trainer::model::{Arch, Model, Precision};

#[allow(dead_code)]
#[path = "serving.rs"]
mod serving;

fn device(name: &str) -> Device {
    match name {
        "cpu" => Device::Cpu,
        "cuda" => {
            assert!(
                tch::Cuda::is_available(),
                "no CUDA device is visible to libtorch"
            );
            Device::Cuda(0)
        }
        other => panic!("unknown device {other}: use cpu or cuda"),
    }
}

fn sync(d: Device) {
    if let Device::Cuda(i) = d {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Largest |difference| relative to the largest |reference logit|, and the share of
/// positions whose most likely token agrees, for each checkpoint folder.
fn logits(dirs: &[String]) -> bool {
    let d = if tch::Cuda::is_available() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    };
    let mut ok = true;
    for dir in dirs {
        let dir = Path::new(dir);
        let started = Instant::now();
        let model = Model::load_as(dir, d, Precision::Stored).expect("checkpoint loads");
        let load_s = started.elapsed().as_secs_f64();
        let refs: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(dir.join("reference.safetensors"))
                .expect("reference.safetensors")
                .into_iter()
                .collect();
        let ids = refs["ids"].to_device(d);
        let want = &refs["logits"];
        let got = tch::no_grad(|| model.logits(&ids))
            .unwrap()
            .to_kind(Kind::Float)
            .to_device(Device::Cpu);
        let scale = want.abs().max().double_value(&[]);
        let err = (&got - want).abs().max().double_value(&[]) / scale;
        let agree = got
            .argmax(-1, false)
            .eq_tensor(&want.argmax(-1, false))
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        // Set before any GPU run: float32 differs only by summation order; half precisions
        // round every activation (bfloat16 keeps 8 bits of mantissa, float16 11).
        let tolerance = match model.kind() {
            Kind::Float => 1e-4,
            Kind::Half => 1e-2,
            _ => 3e-2,
        };
        let pass = err <= tolerance;
        ok &= pass;
        let params: i64 = model.parameters().iter().map(|t| t.numel() as i64).sum();
        println!(
            "{}",
            serde_json::json!({
                "check": "logits",
                "dir": dir.display().to_string(),
                "arch": format!("{:?}", model.config.arch),
                "kind": format!("{:?}", model.kind()),
                "parameters": params,
                "device": format!("{d:?}"),
                "load_seconds": load_s,
                "max_abs_diff_over_max_logit": err,
                "top1_agreement": agree,
                "tolerance": tolerance,
                "pass": pass,
            })
        );
    }
    ok
}

/// Matmul FLOPs per trained token of LoRA training: forward (2 per weight) and the backward
/// pass's input gradients (2 per weight; the frozen weights get no weight gradient), plus
/// causal attention (forward 2·seq·hidden per layer, backward twice that).
fn flops_per_token(model: &Model, seq: i64) -> f64 {
    let c = &model.config;
    let (h, kv) = (c.hidden, c.kv_heads * c.head_dim());
    let per_layer = match c.arch {
        Arch::Gpt2 => h * 3 * h + h * h + 2 * h * c.intermediate,
        Arch::Llama => h * (h + 2 * kv) + h * h + 3 * h * c.intermediate,
    };
    let matmul = (per_layer * c.layers + c.vocab_size * h) as f64;
    4.0 * matmul + 6.0 * (c.layers * seq * h) as f64
}

#[allow(clippy::too_many_arguments)]
fn train(
    dir: &str,
    dev: &str,
    batch: i64,
    seq: i64,
    warmup: usize,
    steps: usize,
    rank: i64,
    ckpt: bool,
) {
    let d = device(dev);
    let model = Model::load_as(Path::new(dir), d, Precision::Bfloat16).expect("checkpoint loads");
    let targets = match model.config.arch {
        Arch::Gpt2 => vec!["qkv", "o", "up", "down"],
        Arch::Llama => vec!["q", "k", "v", "o", "gate", "up", "down"],
    };
    let cfg = LoraConfig {
        rank,
        alpha: 2.0 * rank as f64,
        dropout: 0.0,
        targets: targets.into_iter().map(String::from).collect(),
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
        [batch, seq + 1],
        (Kind::Int64, Device::Cpu),
    )
    .to_device(d);
    let mut step = || {
        let (loss, _) =
            tributary_trainer::train::micro_batch(&model, &lora, &ids, 1.0, ckpt.then_some(0))
                .unwrap();
        opt.clip_grad_norm(1.0);
        opt.step();
        opt.zero_grad();
        loss
    };
    for _ in 0..warmup {
        step();
    }
    sync(d);
    let started = Instant::now();
    let mut loss = 0.0;
    for _ in 0..steps {
        loss = step();
    }
    sync(d);
    let secs = started.elapsed().as_secs_f64();
    let tokens_per_second = (batch * seq) as f64 * steps as f64 / secs;
    println!(
        "{}",
        serde_json::json!({
            "side": "tributary",
            "tokens_per_second": tokens_per_second,
            "seconds_per_step": secs / steps as f64,
            "loss": loss,
            "flops_per_token": flops_per_token(&model, seq),
            "gradient_checkpointing": ckpt,
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("--list") => println!("gpu: benchmark"),
        Some("logits") => {
            if !logits(&args[1..]) {
                std::process::exit(1);
            }
        }
        Some("train") => {
            let n = |i: usize| args[i].parse::<i64>().expect("a number");
            train(
                &args[1],
                &args[2],
                n(3),
                n(4),
                n(5) as usize,
                n(6) as usize,
                n(7),
                n(8) != 0,
            );
        }
        Some("serve") => {
            // SAFETY: set before any other thread starts.
            unsafe {
                std::env::set_var("TRIBUTARY_BENCH_CHECKPOINT", &args[1]);
                std::env::set_var("TRIBUTARY_BENCH_DEVICE", &args[2]);
            }
            serving::main();
        }
        _ => println!(
            "gpu benchmark: run by scripts/gpu-check.sh on a machine with a GPU (it writes the checkpoints this binary reads); skipped here"
        ),
    }
}
