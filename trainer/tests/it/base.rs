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
