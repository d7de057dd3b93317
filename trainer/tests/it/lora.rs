//! LoRA over checkpoints written by `transformers`: training moves only the adapters (the
//! base stays bit-identical), and the adapter written in PEFT's format loads in Python PEFT
//! over the same base with the same logits within 1e-4, and back here exactly.

use std::path::Path;
use std::process::Command;

use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor, nn};
use tributary_trainer::lora::{Lora, LoraConfig};
use tributary_trainer::model::Model;

use crate::hf::{python, reference};

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().to_kind(Kind::Double).double_value(&[])
}

/// Trains `targets` on `arch` for a few steps, then checks PEFT's logits against ours.
fn peft_agrees(arch: &str, targets: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    reference(arch, dir.path());
    let model = Model::load(dir.path(), Device::Cpu).unwrap();
    let before: Vec<Tensor> = model.parameters().iter().map(|p| p.copy()).collect();
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.1,
        targets: targets.iter().map(|t| t.to_string()).collect(),
    };
    let lora = Lora::new(&model, config, 7).unwrap();
    let refs = Tensor::read_safetensors(dir.path().join("reference.safetensors")).unwrap();
    let ids = refs
        .iter()
        .find(|(n, _)| n == "ids")
        .unwrap()
        .1
        .shallow_clone();
    let untrained = tch::no_grad(|| lora.logits(&model, &ids, false)).unwrap();
    let base = tch::no_grad(|| model.logits(&ids)).unwrap();
    assert_eq!(max_diff(&untrained, &base), 0.0, "B starts at zero");

    let mut opt = nn::AdamW::default().build(lora.var_store(), 1e-2).unwrap();
    let t = ids.size()[1];
    for _ in 0..5 {
        let logits = lora.logits(&model, &ids, true).unwrap();
        let v = logits.size()[2];
        let loss = logits
            .narrow(1, 0, t - 1)
            .reshape([-1, v])
            .cross_entropy_for_logits(&ids.narrow(1, 1, t - 1).reshape([-1]));
        opt.backward_step(&loss);
    }
    for (p, q) in model.parameters().iter().zip(&before) {
        assert!(p.equal(q), "a base weight changed");
    }
    let ours = tch::no_grad(|| lora.logits(&model, &ids, false)).unwrap();
    assert!(
        max_diff(&ours, &base) > 1e-3,
        "training moved the adapted model"
    );

    let adapter = dir.path().join("adapter");
    lora.save_peft(&model, &adapter, "tiny").unwrap();
    let out = dir.path().join("peft.safetensors");
    run_peft(dir.path(), &adapter, &out);
    let theirs = Tensor::read_safetensors(&out).unwrap().remove(0).1;
    let err = max_diff(&ours, &theirs);
    eprintln!("{arch}: max |logit difference| vs PEFT {err:e}");
    assert!(err < 1e-4, "{arch}: PEFT's logits differ by {err:e}");

    let back = Lora::load_peft(&model, &adapter).unwrap();
    let again = tch::no_grad(|| back.logits(&model, &ids, false)).unwrap();
    assert_eq!(
        max_diff(&ours, &again),
        0.0,
        "the adapter reads back exactly"
    );
}

pub(crate) fn run_peft(base: &Path, adapter: &Path, out: &Path) {
    let script = crate::manifest_dir().join("tests/python/peft_logits.py");
    let run = Command::new(python())
        .arg(&script)
        .args([base, adapter, out])
        .output()
        .expect("python runs");
    assert!(
        run.status.success(),
        "peft_logits.py failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn llama_adapter_trained_here_loads_in_peft_with_the_same_logits() {
    peft_agrees("llama", &["q", "v", "o", "gate", "down"]);
}

#[test]
fn gpt2_adapter_trained_here_loads_in_peft_with_the_same_logits() {
    peft_agrees("gpt2", &["qkv", "o", "up", "down"]);
}

#[test]
fn bad_lora_configs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    reference("gpt2", dir.path());
    let model = Model::load(dir.path(), Device::Cpu).unwrap();
    let cfg = |rank: i64, targets: &[&str]| LoraConfig {
        rank,
        alpha: 8.0,
        dropout: 0.0,
        targets: targets.iter().map(|t| t.to_string()).collect(),
    };
    let err = |c: LoraConfig| Lora::new(&model, c, 0).err().unwrap().to_string();
    assert!(err(cfg(0, &["qkv"])).contains("rank 0"));
    let e = err(cfg(4, &["q"]));
    assert!(e.contains("\"q\"") && e.contains("qkv"), "{e}");
    assert!(err(cfg(4, &["attention"])).contains("unknown LoRA target module"));
    assert!(err(cfg(4, &[])).contains("no LoRA target"));
}
