//! The trainer, influence and the serving engine on CUDA: run where libtorch sees a GPU
//! (`scripts/gpu-check.sh` runs them there); elsewhere each says it was skipped. What the
//! CPU can check of the same code (precisions, sharded checkpoints, gradient
//! checkpointing) is tested in `hf.rs` and `train.rs`.

use tch::{Device, Kind};
use tributary_trainer::engine::{Engine, Event, Request, Sampling};
use tributary_trainer::influence::{self, InfluenceConfig};
use tributary_trainer::lora::Lora;
use tributary_trainer::model::{Model, Precision};
use tributary_trainer::train::{TrainConfig, TrainReport, train_with_checkpoints};

use crate::hf::reference;
use crate::train::{config, domain};

/// The GPU, or `None` (the test is skipped, and says so). `TRIBUTARY_GPU_TESTS_ON_CPU=1`
/// runs the tests on the CPU instead, to rehearse them where no GPU is at hand.
fn cuda() -> Option<Device> {
    if tch::Cuda::is_available() {
        Some(Device::Cuda(0))
    } else if std::env::var_os("TRIBUTARY_GPU_TESTS_ON_CPU").is_some() {
        eprintln!("no CUDA device: rehearsing on the CPU (TRIBUTARY_GPU_TESTS_ON_CPU)");
        Some(Device::Cpu)
    } else {
        eprintln!(
            "SKIPPED: no CUDA device is visible to libtorch on this machine; this test runs on a GPU (scripts/gpu-check.sh)"
        );
        None
    }
}

fn short(seed: u64) -> TrainConfig {
    TrainConfig {
        max_steps: 40,
        eval_every: 10,
        patience: 0,
        ..config(seed)
    }
}

fn run(
    model: &Model,
    cfg: &TrainConfig,
) -> (Lora, TrainReport, Vec<tributary_trainer::train::Checkpoint>) {
    train_with_checkpoints(model, &domain(), 0, cfg, None, &mut |_| {}).unwrap()
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn cuda_training_agrees_with_the_cpu_in_float32_and_bfloat16() {
    let Some(gpu) = cuda() else { return };
    let dir = tempfile::tempdir().unwrap();
    reference("gpt2-scaled", dir.path());
    let cfg = short(1);
    let load = |device, precision| Model::load_as(dir.path(), device, precision).unwrap();
    let (_, cpu32, _) = run(&load(Device::Cpu, Precision::Float32), &cfg);
    let (_, gpu32, _) = run(&load(gpu, Precision::Float32), &cfg);
    let (_, cpu16, _) = run(&load(Device::Cpu, Precision::Bfloat16), &cfg);
    let bf16 = load(gpu, Precision::Bfloat16);
    assert_eq!(bf16.kind(), Kind::BFloat16);
    let (lora, gpu16, _) = run(&bf16, &cfg);
    let checkpointed = TrainConfig {
        gradient_checkpointing: true,
        ..cfg.clone()
    };
    let (_, gpu16_ckpt, _) = run(&bf16, &checkpointed);
    eprintln!(
        "held-out loss after {} steps (base {:.4}): float32 CPU {:.4}, CUDA {:.4}; bfloat16 CPU {:.4}, CUDA {:.4}, CUDA with gradient checkpointing {:.4}",
        cfg.max_steps,
        cpu32.base_eval_loss,
        cpu32.eval_loss_best,
        gpu32.eval_loss_best,
        cpu16.eval_loss_best,
        gpu16.eval_loss_best,
        gpu16_ckpt.eval_loss_best,
    );
    // Stated tolerances, the same run on both devices in the same precision: float32
    // differs by summation order only (0.1%); bfloat16 rounds every activation of the base
    // (2^-8 relative) in kernels that differ between devices (5%); checkpointing recomputes
    // the same blocks (1%). Between precisions the runs differ by design (on the CPU, this
    // model's bfloat16 run ends 17% above its float32 run), so that is not compared.
    assert!(relative(gpu32.eval_loss_best, cpu32.eval_loss_best) <= 1e-3);
    assert!(relative(gpu16.eval_loss_best, cpu16.eval_loss_best) <= 5e-2);
    assert!(relative(gpu16_ckpt.eval_loss_best, gpu16.eval_loss_best) <= 1e-2);
    assert!(gpu16.eval_loss_best < 0.2 * gpu16.base_eval_loss);
    // The adapter is float32 and PEFT-shaped, whatever the base's precision.
    let out = dir.path().join("adapter");
    lora.save_peft(&bf16, &out, "tiny").unwrap();
    let back = Lora::load_peft(&load(Device::Cpu, Precision::Auto), &out).unwrap();
    assert_eq!(back.weights_hash().unwrap(), lora.weights_hash().unwrap());
}

#[test]
fn cuda_engine_serves_an_adapter_and_influence_runs_on_the_gpu() {
    let Some(gpu) = cuda() else { return };
    let dir = tempfile::tempdir().unwrap();
    reference("gpt2-scaled", dir.path());
    let model = Model::load_as(dir.path(), gpu, Precision::Bfloat16).unwrap();
    let (lora, _, checkpoints) = run(&model, &short(2));
    let folder = dir.path().join("adapter");
    lora.save_peft(&model, &folder, "tiny").unwrap();

    // Serving: the batched engine on the GPU, the adapter loaded from its PEFT folder.
    let prompt = domain()[0][..8].to_vec();
    let id = [7u8; 32];
    let served = Model::load(dir.path(), gpu).unwrap();
    let mut engine: Engine<Vec<Event>> = Engine::new(served, -1, 4, 1 << 30);
    engine.submit(Request {
        adapter: Some((id, Some(folder.clone()))),
        prompt: prompt.clone(),
        max_tokens: 12,
        sampling: Sampling::GREEDY,
        sink: Vec::new(),
    });
    engine.run_to_end().unwrap();
    assert_eq!(engine.cache_stats().1, 1, "the adapter was loaded once");
    assert_eq!(engine.tokens, 12);

    // Influence: contributions' gradients on the GPU, scores for a query against them.
    let docs: Vec<(String, Vec<i64>)> = domain()
        .into_iter()
        .enumerate()
        .map(|(i, d)| (format!("c{i}"), d))
        .collect();
    let cfg = InfluenceConfig {
        max_tokens: 24, // the model has 32 positions
        ..InfluenceConfig::default()
    };
    let picked = influence::pick(checkpoints, usize::MAX, cfg.checkpoints);
    let index = influence::build(&model, &lora, picked, &docs, &cfg).unwrap();
    let query: Vec<i64> = domain()[3].clone();
    let scores = index.scores(&model, &lora, &query).unwrap();
    assert_eq!(scores.len(), docs.len());
    assert!(scores.iter().all(|s| s.is_finite()));
    let best = (0..scores.len())
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .unwrap();
    eprintln!(
        "CUDA influence: {} contributions scored; document 3 as the query credits document {best} most",
        scores.len()
    );
    // Its own gradient is the query's: no other contribution scores higher, except document
    // 35, which repeats it token for token.
    assert!(best == 3 || best == 35, "{scores:?}");
}

/// Where the CPU and GPU runs part, step by step (added after the first GPU run, where the
/// held-out losses of 40 steps differed by 5.5% in float32 while this CPU code on two CPUs
/// differed by 2.3%): the first step's loss is a forward pass over identical weights and must
/// agree to float32 rounding; the later steps are printed to show how the difference grows.
#[test]
fn cuda_and_cpu_float32_runs_start_equal_and_part_gradually() {
    let Some(gpu) = cuda() else { return };
    let dir = tempfile::tempdir().unwrap();
    reference("gpt2-scaled", dir.path());
    let cfg = TrainConfig {
        max_steps: 40,
        eval_every: 40,
        ..short(1)
    };
    let load = |device| Model::load_as(dir.path(), device, Precision::Float32).unwrap();
    let (_, cpu, _) = run(&load(Device::Cpu), &cfg);
    let (_, on_gpu, _) = run(&load(gpu), &cfg);
    let parted: Vec<String> = cpu
        .train_loss
        .iter()
        .zip(&on_gpu.train_loss)
        .map(|((step, c), (_, g))| format!("{step}:{:.1e}", relative(*g, *c)))
        .collect();
    eprintln!(
        "float32 training loss, relative CPU/GPU difference by step: {}",
        parted.join(" ")
    );
    let first = relative(on_gpu.train_loss[0].1, cpu.train_loss[0].1);
    assert!(first <= 1e-5, "the first step's loss differs by {first:e}");
}
