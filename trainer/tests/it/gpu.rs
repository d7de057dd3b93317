//! The trainer, influence and the serving engine on CUDA: run where libtorch sees a GPU
//! (`scripts/gpu-check.sh` runs them there); elsewhere each says it was skipped. What the
//! CPU can check of the same code (precisions, sharded checkpoints, gradient
//! checkpointing) is tested in `hf.rs` and `train.rs`.

use alloy::primitives::B256;
use tch::{Device, Kind};
use tributary_trainer::influence::{self, InfluenceConfig};
use tributary_trainer::lora::Lora;
use tributary_trainer::model::{Model, Precision};
use tributary_trainer::serve::engine::{Engine, Event, Request, Sampling};
use tributary_trainer::train::{TrainConfig, TrainReport, train_with_checkpoints};

use crate::hf::reference;
use crate::train::{config, domain};

fn cuda() -> Option<Device> {
    if tch::Cuda::is_available() {
        Some(Device::Cuda(0))
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

fn run(model: &Model, cfg: &TrainConfig) -> (Lora, TrainReport, Vec<influence::Checkpoint>) {
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
    let cpu = Model::load(dir.path(), Device::Cpu).unwrap();
    let (_, on_cpu, _) = run(&cpu, &cfg);
    let f32_gpu = Model::load_as(dir.path(), gpu, Precision::Float32).unwrap();
    let (_, on_gpu, _) = run(&f32_gpu, &cfg);
    let bf16 = Model::load_as(dir.path(), gpu, Precision::Bfloat16).unwrap();
    assert_eq!(bf16.kind(), Kind::BFloat16);
    let (lora, on_bf16, _) = run(&bf16, &cfg);
    let checkpointed = TrainConfig {
        gradient_checkpointing: true,
        ..cfg.clone()
    };
    let (_, on_bf16_ckpt, _) = run(&bf16, &checkpointed);
    eprintln!(
        "held-out loss after {} steps: CPU float32 {:.4}, CUDA float32 {:.4}, CUDA bfloat16 {:.4}, with gradient checkpointing {:.4} (base {:.4})",
        cfg.max_steps,
        on_cpu.eval_loss_best,
        on_gpu.eval_loss_best,
        on_bf16.eval_loss_best,
        on_bf16_ckpt.eval_loss_best,
        on_cpu.base_eval_loss
    );
    // Stated tolerances: float32 differs from the CPU by summation order only (0.1%);
    // bfloat16 rounds the base's activations (3%), and checkpointing recomputes the same
    // blocks (1%).
    assert!(relative(on_gpu.eval_loss_best, on_cpu.eval_loss_best) <= 1e-3);
    assert!(relative(on_bf16.eval_loss_best, on_cpu.eval_loss_best) <= 3e-2);
    assert!(relative(on_bf16_ckpt.eval_loss_best, on_bf16.eval_loss_best) <= 1e-2);
    assert!(on_bf16.eval_loss_best < 0.8 * on_bf16.base_eval_loss);
    // The adapter is float32 and PEFT-shaped, whatever the base's precision.
    let out = dir.path().join("adapter");
    lora.save_peft(&bf16, &out, "tiny").unwrap();
    let back = Lora::load_peft(&cpu, &out).unwrap();
    assert_eq!(back.weights_hash().unwrap(), lora.weights_hash().unwrap());
}

#[test]
fn cuda_engine_serves_an_adapter_and_influence_runs_on_the_gpu() {
    let Some(gpu) = cuda() else { return };
    let dir = tempfile::tempdir().unwrap();
    reference("gpt2-scaled", dir.path());
    let model = Model::load_as(dir.path(), gpu, Precision::Bfloat16).unwrap();
    let (mut lora, _, checkpoints) = run(&model, &short(2));
    let folder = dir.path().join("adapter");
    lora.save_peft(&model, &folder, "tiny").unwrap();

    // Serving: the batched engine on the GPU, the adapter loaded from its PEFT folder.
    let prompt = domain()[0][..8].to_vec();
    let id = B256::repeat_byte(7);
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
    let cfg = InfluenceConfig::default();
    let picked = influence::pick(checkpoints, usize::MAX, cfg.checkpoints);
    let index = influence::build(&model, &mut lora, picked, &docs, &cfg).unwrap();
    let query: Vec<i64> = domain()[3].clone();
    let scores = index.scores(&model, &mut lora, &query).unwrap();
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
