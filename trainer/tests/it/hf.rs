//! Checkpoints written by Python `transformers` (`save_pretrained`, tiny random GPT-2, Llama
//! with grouped-query attention, Qwen2 with qkv bias and tied embeddings) load here and give
//! the same logits within 1e-4.

use std::path::Path;
use std::process::Command;

use tch::{Device, Kind, Tensor};
use tributary_trainer::model::{Arch, Model};

/// The project venv's python (scripts/setup.sh installs transformers into it).
pub(crate) fn python() -> String {
    std::env::var("TRIBUTARY_PYTHON").expect(
        "TRIBUTARY_PYTHON is not set: run `eval \"$(scripts/setup.sh)\"` (it installs transformers into the project's venv)",
    )
}

/// Writes the reference checkpoint of `arch` into `dir` with transformers.
pub(crate) fn reference(arch: &str, dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/hf_reference.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(arch)
        .arg(dir)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "hf_reference.py {arch} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn same_logits(arch: &str, want: Arch) {
    let dir = tempfile::tempdir().unwrap();
    reference(arch, dir.path());
    let model = Model::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(model.config.arch, want);
    let refs = Tensor::read_safetensors(dir.path().join("reference.safetensors")).unwrap();
    let get = |name: &str| {
        refs.iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .shallow_clone()
    };
    let (ids, want_logits) = (get("ids"), get("logits"));
    let got = tch::no_grad(|| model.logits(&ids)).unwrap();
    assert_eq!(got.size(), want_logits.size());
    let err = (got - want_logits)
        .abs()
        .max()
        .to_kind(Kind::Double)
        .double_value(&[]);
    eprintln!("{arch}: max |logit difference| vs transformers {err:e}");
    assert!(err < 1e-4, "{arch}: max |logit difference| {err:e}");
}

#[test]
fn gpt2_checkpoint_from_transformers_gives_the_same_logits() {
    same_logits("gpt2", Arch::Gpt2);
}

#[test]
fn llama_checkpoint_with_grouped_query_attention_gives_the_same_logits() {
    same_logits("llama", Arch::Llama);
}

#[test]
fn qwen2_checkpoint_with_qkv_bias_and_tied_embeddings_gives_the_same_logits() {
    same_logits("qwen2", Arch::Llama);
}

#[test]
fn a_folder_without_a_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = Model::load(dir.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("config.json") && e.contains("model.safetensors"),
        "{e}"
    );
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    let e = Model::load(dir.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"bert\"") && e.contains("not supported"), "{e}");
}
