//! Checkpoints written by Python `transformers` (`save_pretrained`, tiny random GPT-2, Llama
//! with grouped-query attention, Qwen2 with qkv bias and tied embeddings) load here and give
//! the same logits within 1e-4; sharded checkpoints stored in bfloat16 and float16 load in
//! their stored precision and agree with transformers computing in that precision.

use std::path::Path;
use std::process::Command;

use tch::{Device, Kind, Tensor};
use tributary_trainer::model::{Arch, Model, Precision};

/// The project venv's python (scripts/setup.sh installs transformers into it).
pub(crate) fn python() -> String {
    std::env::var("TRIBUTARY_PYTHON").expect(
        "TRIBUTARY_PYTHON is not set: run `eval \"$(scripts/setup.sh)\"` (it installs transformers into the project's venv)",
    )
}

/// Writes the reference checkpoint of `arch` into `dir` with transformers.
pub(crate) fn reference(arch: &str, dir: &Path) {
    reference_as(arch, dir, &[]);
}

/// [`reference`] with `hf_reference.py`'s optional arguments (precision, shard size).
pub(crate) fn reference_as(arch: &str, dir: &Path, extra: &[&str]) {
    let script = crate::manifest_dir().join("tests/python/hf_reference.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(arch)
        .arg(dir)
        .args(extra)
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

/// Largest |difference| over the largest |reference logit|, loading `dir` as stored.
fn stored_logit_error(dir: &Path) -> (Kind, f64) {
    let model = Model::load_as(dir, Device::Cpu, Precision::Stored).unwrap();
    let refs: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("reference.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let got = tch::no_grad(|| model.logits(&refs["ids"]))
        .unwrap()
        .to_kind(Kind::Float);
    let want = &refs["logits"];
    let scale = want.abs().max().double_value(&[]);
    (
        model.kind(),
        (got - want).abs().max().double_value(&[]) / scale,
    )
}

#[test]
fn sharded_checkpoints_load_in_their_stored_precision_with_transformers_logits() {
    let root = tempfile::tempdir().unwrap();
    // The same tolerances as the GPU check (benches/gpu.rs): float32 differs by summation
    // order only; half precisions round every activation.
    for (arch, dtype, kind, tolerance) in [
        ("qwen2", "float32", Kind::Float, 1e-4),
        ("qwen2", "bfloat16", Kind::BFloat16, 3e-2),
        ("qwen2", "float16", Kind::Half, 1e-2),
        ("llama", "bfloat16", Kind::BFloat16, 3e-2),
        ("gpt2", "float16", Kind::Half, 1e-2),
    ] {
        let dir = root.path().join(format!("{arch}-{dtype}"));
        reference_as(arch, &dir, &[dtype, "20KB"]);
        assert!(
            dir.join("model.safetensors.index.json").exists()
                && !dir.join("model.safetensors").exists(),
            "{arch} {dtype}: transformers wrote one file, not shards"
        );
        let (got_kind, err) = stored_logit_error(&dir);
        eprintln!("{arch} {dtype}, sharded: max |logit difference| / max |logit| = {err:e}");
        assert_eq!(got_kind, kind, "{arch} {dtype}");
        assert!(err <= tolerance, "{arch} {dtype}: {err:e} > {tolerance:e}");
    }
    // By default the CPU computes in float32 whatever the checkpoint stores.
    let model = Model::load(&root.path().join("qwen2-bfloat16"), Device::Cpu).unwrap();
    assert_eq!(model.kind(), Kind::Float);
    // A shard the index names but the folder lacks is named in the error.
    let dir = root.path().join("llama-bfloat16");
    let shard = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("-of-"))
        .unwrap();
    std::fs::remove_file(shard).unwrap();
    let e = Model::load(&dir, Device::Cpu).unwrap_err().to_string();
    assert!(
        e.contains("names shard") && e.contains("copy every shard"),
        "{e}"
    );
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
