//! The training loop on a tiny GPT-2 written by `transformers`, over a synthetic "domain"
//! (cyclic token patterns): the held-out loss drops well below the base model's, the base
//! stays bit-identical, the same seed gives the same adapter, and bad configs are refused
//! before any work.

use tch::Device;
use tributary_trainer::lora::{Lora, LoraConfig};
use tributary_trainer::model::{Model, Precision};
use tributary_trainer::train::{
    Keep, Packing, TrainConfig, learning_rate, micro_batch, train, train_with_checkpoints,
};

use crate::hf::reference;
use crate::lora::run_peft;

/// 40 documents: runs of a cyclic pattern over tokens 10..42, each starting elsewhere.
pub(crate) fn domain() -> Vec<Vec<i64>> {
    (0..40)
        .map(|d| (0..50).map(|i| 10 + (d * 7 + i * 3) % 32).collect())
        .collect()
}

pub(crate) fn config(seed: u64) -> TrainConfig {
    TrainConfig {
        lora: LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: ["qkv", "o", "up", "down"].map(String::from).to_vec(),
        },
        learning_rate: 3e-2,
        weight_decay: 0.0,
        warmup_steps: 5,
        max_steps: 150,
        batch_size: 4,
        grad_accum: 2,
        clip_norm: 1.0,
        seq_len: 24,
        eval_fraction: 0.2,
        eval_every: 15,
        patience: 3,
        seed,
        ..TrainConfig::default()
    }
}

#[test]
fn training_lowers_held_out_loss_leaves_the_base_alone_and_repeats_exactly() {
    let dir = tempfile::tempdir().unwrap();
    reference("gpt2-scaled", dir.path());
    let model = Model::load(dir.path(), Device::Cpu).unwrap();
    let before: Vec<tch::Tensor> = model.parameters().iter().map(|p| p.copy()).collect();
    let docs = domain();
    let mut steps = 0;
    let (lora, report) = train(&model, &docs, 0, &config(1), None, &mut |p| {
        steps = p.step;
        assert!(p.loss.is_finite() && p.tokens_per_second > 0.0);
    })
    .unwrap();
    assert_eq!(steps, report.steps);
    eprintln!(
        "base eval loss {:.3}, adapted {:.3} (perplexity {:.2}) after {} steps, {} tokens in {:.1} s",
        report.base_eval_loss,
        report.eval_loss_best,
        report.perplexity,
        report.steps,
        report.tokens,
        report.seconds
    );
    // The domain is a deterministic bigram: an adapter that learned it is nearly certain.
    assert!(
        report.eval_loss_best < 1.0,
        "held-out loss {}",
        report.eval_loss_best
    );
    assert!(
        report.eval_loss_best < 0.5 * report.base_eval_loss,
        "held-out loss {} vs base {}",
        report.eval_loss_best,
        report.base_eval_loss
    );
    for (p, q) in model.parameters().iter().zip(&before) {
        assert!(p.equal(q), "a base weight changed");
    }
    let (again, _) = train(&model, &docs, 0, &config(1), None, &mut |_| {}).unwrap();
    assert_eq!(
        lora.weights_hash().unwrap(),
        again.weights_hash().unwrap(),
        "same seed, same adapter"
    );
    let (other, _) = train(&model, &docs, 0, &config(2), None, &mut |_| {}).unwrap();
    assert_ne!(lora.weights_hash().unwrap(), other.weights_hash().unwrap());
}

#[test]
fn keep_last_keeps_the_last_steps_adapter() {
    let dir = tempfile::tempdir().unwrap();
    reference("gpt2-scaled", dir.path());
    let model = Model::load(dir.path(), Device::Cpu).unwrap();
    let cfg = TrainConfig {
        max_steps: 45,
        keep: Keep::Last,
        patience: 0,
        packing: Packing::Documents,
        ..config(1)
    };
    let (lora, report, checkpoints) =
        train_with_checkpoints(&model, &domain(), 0, &cfg, None, &mut |_| {}).unwrap();
    let last = checkpoints.last().unwrap();
    assert_eq!((report.steps, report.best_step, last.step), (45, 45, 45));
    assert_eq!(report.eval_loss_best, report.eval_loss.last().unwrap().1);
    for (w, l) in lora.weights().iter().zip(&last.weights) {
        assert!(w.equal(l), "the kept adapter is the last step's");
    }
    // The default keeps the best evaluated, which need not be the last.
    let (best, report, checkpoints) =
        train_with_checkpoints(&model, &domain(), 0, &config(1), None, &mut |_| {}).unwrap();
    let kept = checkpoints
        .iter()
        .find(|c| c.step == report.best_step)
        .unwrap();
    for (w, k) in best.weights().iter().zip(&kept.weights) {
        assert!(w.equal(k), "the kept adapter is the best evaluated");
    }
}

/// Gradient accumulation counts every predicted token once: a step of two micro-batches of
/// two rows gives the loss and the adapter of one batch of four rows, however unevenly the
/// documents' padding fills them (each micro-batch weighs by its tokens, not by half).
#[test]
fn accumulated_micro_batches_count_every_token_once() {
    let dir = tempfile::tempdir().unwrap();
    reference("gpt2-scaled", dir.path());
    let model = Model::load(dir.path(), Device::Cpu).unwrap();
    // Documents of 3, 8, 13 or 18 tokens, packed whole into rows of 25: rows fill unevenly.
    let docs: Vec<Vec<i64>> = (0..40)
        .map(|d| {
            (0..3 + (d * 5) % 20)
                .map(|i| 10 + (d * 7 + i * 3) % 32)
                .collect()
        })
        .collect();
    let cfg = |batch_size, grad_accum| TrainConfig {
        max_steps: 8,
        batch_size,
        grad_accum,
        packing: Packing::Documents,
        eval_every: 8,
        keep: Keep::Last,
        patience: 0,
        ..config(1)
    };
    let (split, split_report) = train(&model, &docs, 0, &cfg(2, 2), None, &mut |_| {}).unwrap();
    let (whole, whole_report) = train(&model, &docs, 0, &cfg(4, 1), None, &mut |_| {}).unwrap();
    assert_eq!(split_report.tokens, whole_report.tokens);
    assert_eq!(split_report.train_loss.len(), 8);
    assert_eq!(whole_report.train_loss.len(), 8);
    for (&(step, a), &(_, b)) in split_report.train_loss.iter().zip(&whole_report.train_loss) {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs(),
            "step {step}: loss {a} in two micro-batches, {b} in one batch"
        );
    }
    for (a, b) in split.weights().iter().zip(&whole.weights()) {
        assert!(a.allclose(b, 1e-4, 1e-6, false), "the adapters differ");
    }
}

#[test]
fn the_schedule_warms_up_then_decays_to_a_tenth() {
    let c = config(1);
    assert!((learning_rate(&c, 0) - 6e-3).abs() < 1e-12);
    assert!((learning_rate(&c, 4) - 3e-2).abs() < 1e-12);
    assert!((learning_rate(&c, 5) - 3e-2).abs() < 1e-12);
    assert!((learning_rate(&c, 150) - 3e-3).abs() < 1e-12);
    assert!(learning_rate(&c, 70) < 3e-2 && learning_rate(&c, 70) > 3e-3);
}

#[test]
fn bad_configs_and_mismatched_data_are_refused_before_work() {
    let dir = tempfile::tempdir().unwrap();
    reference("gpt2", dir.path());
    let model = Model::load(dir.path(), Device::Cpu).unwrap();
    let docs = domain();
    let err = |c: TrainConfig, docs: &[Vec<i64>]| {
        train(&model, docs, 0, &c, None, &mut |_| {
            panic!("no step may run")
        })
        .err()
        .unwrap()
        .to_string()
    };
    let mut c = config(1);
    c.seq_len = 1000;
    assert!(err(c, &docs).contains("seq_len 1000"));
    let mut c = config(1);
    c.learning_rate = 0.0;
    assert!(err(c, &docs).contains("learning rate"));
    let mut c = config(1);
    c.lora.rank = 0;
    assert!(err(c, &docs).contains("rank 0"));
    let mut c = config(1);
    c.warmup_steps = 150;
    assert!(err(c, &docs).contains("warmup_steps"));
    let mut c = config(1);
    c.keep = Keep::Last;
    let e = err(c, &docs);
    assert!(
        e.contains("keep = \"last\"") && e.contains("patience = 0"),
        "{e}"
    );
    let e = err(config(1), &[vec![5, 500]]);
    assert!(e.contains("token id 500") && e.contains("tokenizer"), "{e}");
    let e = err(config(1), &[vec![5, 6]]);
    assert!(e.contains("not enough text"), "{e}");
}

/// Two adapters merged with weights 0.7 and 0.3 update every projection by exactly
/// 0.7·Δ₁ + 0.3·Δ₂, and the merged adapter (rank 16) loads in PEFT with the same logits;
/// continuing from a parent starts where the parent is; shapes that differ are refused.
#[test]
fn merging_is_an_exact_weighted_sum_and_children_start_from_their_parent() {
    let dir = tempfile::tempdir().unwrap();
    reference("gpt2-scaled", dir.path());
    let model = Model::load(dir.path(), Device::Cpu).unwrap();
    let docs = domain();
    let mut short = config(1);
    short.max_steps = 20;
    let (a, _) = train(&model, &docs, 0, &short, None, &mut |_| {}).unwrap();
    short.seed = 2;
    let (b, _) = train(&model, &docs, 0, &short, None, &mut |_| {}).unwrap();
    let merged = Lora::merge(&model, &[(&a, 0.7), (&b, 0.3)]).unwrap();
    assert_eq!(merged.config.rank, 16);
    for layer in 0..model.blocks.len() {
        for role in ["qkv", "o", "up", "down"] {
            let want = a.delta(layer, role).unwrap() * 0.7 + b.delta(layer, role).unwrap() * 0.3;
            let got = merged.delta(layer, role).unwrap();
            let err = (got - want).abs().max().double_value(&[]);
            assert!(err < 1e-6, "layer {layer} {role}: {err:e}");
        }
    }
    let adapter = dir.path().join("merged");
    merged.save_peft(&model, &adapter, "tiny").unwrap();
    let out = dir.path().join("peft.safetensors");
    run_peft(dir.path(), &adapter, &out);
    let theirs = tch::Tensor::read_safetensors(&out).unwrap().remove(0).1;
    let refs = tch::Tensor::read_safetensors(dir.path().join("reference.safetensors")).unwrap();
    let ids = refs
        .iter()
        .find(|(n, _)| n == "ids")
        .unwrap()
        .1
        .shallow_clone();
    let ours = tch::no_grad(|| merged.logits(&model, &ids, false)).unwrap();
    let err = (ours - theirs).abs().max().double_value(&[]);
    assert!(
        err < 1e-4,
        "PEFT's logits of the merged adapter differ by {err:e}"
    );

    // A child starts at its parent's held-out loss and does not end worse.
    let (parent, parent_report) = train(&model, &docs, 0, &short, None, &mut |_| {}).unwrap();
    short.seed = 3;
    let (_, child) = train(&model, &docs, 0, &short, Some(&parent), &mut |_| {}).unwrap();
    assert!((child.start_eval_loss - parent_report.eval_loss_best).abs() < 1e-6);
    assert!(child.eval_loss_best <= child.start_eval_loss + 1e-6);
    let mut other = short.clone();
    other.lora.rank = 4;
    let e = train(&model, &docs, 0, &other, Some(&parent), &mut |_| {
        panic!("no step")
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("parent"), "{e}");
    let e = Lora::merge(&model, &[]).err().unwrap().to_string();
    assert!(e.contains("nothing to merge"), "{e}");
}

/// Gradient checkpointing recomputes each block in the backward pass: the same loss and
/// gradients as keeping every activation, dropout masks included (each block's are drawn
/// from the same seed in both of its runs), and the same adapter after a whole run.
#[test]
fn gradient_checkpointing_gives_the_same_gradients_and_adapter() {
    let dir = tempfile::tempdir().unwrap();
    reference("llama", dir.path());
    let model = Model::load(dir.path(), Device::Cpu).unwrap();
    let mut lora_cfg = config(1).lora;
    lora_cfg.targets = ["q", "k", "v", "o", "gate", "up", "down"]
        .map(String::from)
        .to_vec();
    let mut lora = Lora::new(&model, lora_cfg.clone(), 3).unwrap();
    // B starts at zero, which would leave A without a gradient: give both values.
    tch::manual_seed(4);
    let w: Vec<tch::Tensor> = lora
        .weights()
        .iter()
        .map(|t| t.randn_like() * 0.1)
        .collect();
    lora.set_weights(&w);
    let docs = domain();
    let batch = tch::Tensor::from_slice2(&[&docs[0][..25], &docs[1][..25]]);
    let grads = |lora: &mut Lora, checkpointing: Option<i64>| {
        lora.zero_grad();
        let (loss, tokens) = micro_batch(&model, lora, &batch, 1.0, checkpointing).unwrap();
        assert_eq!(tokens, 48);
        (loss, lora.gradient())
    };
    let (plain_loss, plain) = grads(&mut lora, None);
    let (ckpt_loss, ckpt) = grads(&mut lora, Some(0));
    let scale = plain.abs().max().double_value(&[]);
    let err = (&plain - &ckpt).abs().max().double_value(&[]) / scale;
    assert!(scale > 0.0);
    assert!(
        (plain_loss - ckpt_loss).abs() < 1e-6,
        "{plain_loss} vs {ckpt_loss}"
    );
    assert!(
        err < 1e-5,
        "checkpointed gradients differ by {err:e} (relative)"
    );

    // With dropout, a block's two runs draw the same masks: the same seed repeats exactly,
    // another seed differs.
    let dropped = LoraConfig {
        dropout: 0.2,
        ..lora_cfg
    };
    let mut lora = Lora::new(&model, dropped, 3).unwrap();
    lora.set_weights(&w);
    let (_, a) = grads(&mut lora, Some(5));
    let (_, b) = grads(&mut lora, Some(5));
    let (_, c) = grads(&mut lora, Some(6));
    assert!(a.equal(&b));
    assert!(!a.equal(&c));

    let mut cfg = config(1);
    cfg.lora.targets = ["q", "v", "o", "up", "down"].map(String::from).to_vec();
    cfg.max_steps = 20;
    let (plain, _) = train(&model, &docs, 0, &cfg, None, &mut |_| {}).unwrap();
    cfg.gradient_checkpointing = true;
    let (ckpt, _) = train(&model, &docs, 0, &cfg, None, &mut |_| {}).unwrap();
    for (p, q) in plain.weights().iter().zip(ckpt.weights()) {
        let err = (p - q).abs().max().double_value(&[]);
        assert!(err < 1e-4, "adapters differ by {err:e}");
    }
}

/// A bfloat16 base (as on a GPU) on the CPU: the adapters and their gradients stay float32,
/// training still learns, and the adapter serves over the same base.
#[test]
fn a_bfloat16_base_trains_float32_adapters_that_serve() {
    let dir = tempfile::tempdir().unwrap();
    reference("gpt2-scaled", dir.path());
    let model = Model::load_as(dir.path(), Device::Cpu, Precision::Bfloat16).unwrap();
    assert_eq!(model.kind(), tch::Kind::BFloat16);
    let mut cfg = config(1);
    cfg.max_steps = 40;
    cfg.precision = Precision::Bfloat16;
    let (lora, report) = train(&model, &domain(), 0, &cfg, None, &mut |_| {}).unwrap();
    assert!(lora.weights().iter().all(|t| t.kind() == tch::Kind::Float));
    eprintln!(
        "bfloat16 base: held-out loss {:.3} from {:.3}",
        report.eval_loss_best, report.base_eval_loss
    );
    assert!(report.eval_loss_best < 0.5 * report.base_eval_loss);
    let folder = dir.path().join("adapter");
    lora.save_peft(&model, &folder, "tiny").unwrap();
    let served = Model::load_as(dir.path(), Device::Cpu, Precision::Bfloat16).unwrap();
    let mut engine: tributary_trainer::engine::Engine<Vec<tributary_trainer::engine::Event>> =
        tributary_trainer::engine::Engine::new(served, -1, 2, 1 << 30);
    for temperature in [0.0, 0.7] {
        engine.submit(tributary_trainer::engine::Request {
            adapter: Some(([1u8; 32], Some(folder.clone()))),
            prompt: domain()[0][..6].to_vec(),
            max_tokens: 8,
            sampling: tributary_trainer::engine::Sampling {
                temperature,
                top_p: 1.0,
                seed: 1,
            },
            sink: Vec::new(),
        });
    }
    engine.run_to_end().unwrap();
    assert_eq!(engine.tokens, 16);
}
