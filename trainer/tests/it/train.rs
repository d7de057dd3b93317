//! The training loop on a tiny GPT-2 written by `transformers`, over a synthetic "domain"
//! (cyclic token patterns): the held-out loss drops well below the base model's, the base
//! stays bit-identical, the same seed gives the same adapter, and bad configs are refused
//! before any work.

use tch::Device;
use tributary_trainer::lora::LoraConfig;
use tributary_trainer::model::Model;
use tributary_trainer::train::{TrainConfig, learning_rate, train};

use crate::hf::reference;

/// 40 documents: runs of a cyclic pattern over tokens 10..42, each starting elsewhere.
fn domain() -> Vec<Vec<i64>> {
    (0..40)
        .map(|d| (0..50).map(|i| 10 + (d * 7 + i * 3) % 32).collect())
        .collect()
}

fn config(seed: u64) -> TrainConfig {
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
    let (lora, report) = train(&model, &docs, 0, &config(1), &mut |p| {
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
    let (again, _) = train(&model, &docs, 0, &config(1), &mut |_| {}).unwrap();
    assert_eq!(
        lora.weights_hash().unwrap(),
        again.weights_hash().unwrap(),
        "same seed, same adapter"
    );
    let (other, _) = train(&model, &docs, 0, &config(2), &mut |_| {}).unwrap();
    assert_ne!(lora.weights_hash().unwrap(), other.weights_hash().unwrap());
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
        train(&model, docs, 0, &c, &mut |_| panic!("no step may run"))
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
    let e = err(config(1), &[vec![5, 500]]);
    assert!(e.contains("token id 500") && e.contains("tokenizer"), "{e}");
    let e = err(config(1), &[vec![5, 6]]);
    assert!(e.contains("not enough text"), "{e}");
}
