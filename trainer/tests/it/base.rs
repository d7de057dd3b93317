//! The project's tiny base model: pretraining lowers held-out loss far below the random
//! start, and `transformers` loads the folder as a Llama model with the same tokens and
//! logits as Tributary.

use std::path::PathBuf;
use std::process::Command;

use tch::{Device, Kind, Tensor};
use tributary_trainer::base::{self, Recipe};
use tributary_trainer::model::Model;
use tributary_trainer::tokenizer::Tokenizer;

use crate::hf::python;

/// The tiny model, built once per machine (shared with the other tests through the cache).
pub(crate) fn tiny() -> PathBuf {
    base::build_cached(&Recipe::tiny(), &base::default_cache(), &mut |_| {}).unwrap()
}

#[test]
fn pretraining_learns_and_a_rebuild_is_bit_identical() {
    // A reduced recipe, so the test measures a full build without the cache.
    let mut r = Recipe::tiny();
    (r.documents, r.steps, r.config.layers) = (1500, 60, 2);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let built = base::build(&r, a.path(), &mut |_| {}).unwrap();
    let (before, after) = built.eval_loss;
    eprintln!(
        "held-out loss {before:.3} -> {after:.3}, {} parameters",
        built.parameters
    );
    assert!(after < 0.6 * before, "{before} -> {after}");
    base::build(&r, b.path(), &mut |_| {}).unwrap();
    assert_eq!(
        base::checkpoint_hash(a.path()).unwrap(),
        base::checkpoint_hash(b.path()).unwrap()
    );
}

#[test]
fn transformers_loads_the_tiny_model_with_the_same_tokens_and_logits() {
    let dir = tiny();
    let text = "question: How many minutes are in 3 hours?\nanswer: 3 hours is 180 minutes.";
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("ref.safetensors");
    let script = crate::manifest_dir().join("tests/python/hf_load.py");
    let run = Command::new(python())
        .arg(&script)
        .arg(&dir)
        .arg(text)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let refs: std::collections::HashMap<_, _> = Tensor::read_safetensors(&file)
        .unwrap()
        .into_iter()
        .collect();
    let tok = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let ids = tok.encode(text).unwrap();
    assert_eq!(
        Vec::<i64>::try_from(refs["ids"].reshape([-1])).unwrap(),
        ids
    );
    let model = Model::load(&dir, Device::Cpu).unwrap();
    tok.check(&model.config).unwrap();
    let got = tch::no_grad(|| model.logits(&refs["ids"])).unwrap();
    let err = (got - &refs["logits"])
        .abs()
        .max()
        .to_kind(Kind::Double)
        .double_value(&[]);
    assert!(err < 1e-4, "max |logit difference| {err:e}");
    assert!(base::parameter_count(&model) > 1_000_000);
}

/// A base model saved sharded is one content address over its index and every shard: the
/// same files give the same id, a changed shard another, a missing one a clear error. A
/// single-file checkpoint keeps the id it always had (config, weights, tokenizer).
#[test]
fn a_sharded_base_model_is_addressed_by_its_index_and_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    crate::hf::reference_as("llama", dir.path(), &["float32", "20KB"]);
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    let files = base::checkpoint_files(dir.path()).unwrap();
    assert_eq!(files[0], "config.json");
    assert_eq!(files[1], "model.safetensors.index.json");
    assert!(files.len() > 4 && files.last().unwrap() == "tokenizer.json");
    let id = base::checkpoint_hash(dir.path()).unwrap();
    assert_eq!(id, base::checkpoint_hash(dir.path()).unwrap());
    let shard = dir.path().join(&files[2]);
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&shard, &bytes).unwrap();
    assert_ne!(id, base::checkpoint_hash(dir.path()).unwrap());
    std::fs::remove_file(&shard).unwrap();
    let e = base::checkpoint_hash(dir.path()).unwrap_err().to_string();
    assert!(e.contains("missing") && e.contains(&files[2]), "{e}");

    // One file: the hash over config.json, model.safetensors and tokenizer.json in order.
    let one = tempfile::tempdir().unwrap();
    crate::hf::reference("llama", one.path());
    std::fs::write(one.path().join("tokenizer.json"), "{}").unwrap();
    let mut buf = b"tributary-base-model".to_vec();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        let bytes = std::fs::read(one.path().join(name)).unwrap();
        buf.extend_from_slice(&tributary_trainer::keccak256(&bytes));
    }
    assert_eq!(
        base::checkpoint_hash(one.path()).unwrap(),
        tributary_trainer::keccak256(buf)
    );
}
