//! Byte-level BPE trained here: lossless, written as a `tokenizer.json` that Python's
//! `tokenizers` reads to the same ids, and refused beside a model it does not fit.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use tributary_trainer::model::{Arch, Config};
use tributary_trainer::tokenizer::{END_OF_TEXT, Tokenizer};

use crate::hf::python;

fn texts() -> Vec<String> {
    let units = ["cup", "tablespoon", "teaspoon", "ounce", "pound", "pinch"];
    let foods = ["flour", "sugar", "butter", "crème fraîche", "rice", "honey"];
    (0..120)
        .map(|i| {
            format!(
                "{} {} of {} is about {} grams — ½ of that for a half batch.",
                1 + i % 4,
                units[i % units.len()],
                foods[(i / 3) % foods.len()],
                17 * (i + 3) % 500
            )
        })
        .collect()
}

#[test]
fn bpe_trained_here_is_lossless_and_reads_the_same_in_python() {
    let texts = texts();
    let tok = Tokenizer::train_bpe(&texts, 400).unwrap();
    assert!(
        tok.vocab_size() > 258 && tok.vocab_size() <= 400,
        "{}",
        tok.vocab_size()
    );
    for t in &texts {
        let ids = tok.encode(t).unwrap();
        assert!(ids.len() < t.len(), "merges shorten the text");
        assert_eq!(&tok.decode(&ids).unwrap(), t);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    tok.save(&path).unwrap();
    let back = Tokenizer::load(&path).unwrap();
    assert_eq!(back.eot(), tok.eot());
    let sample = [
        "2 cups of crème fraîche",
        "a pinch of honey — ½",
        "unseen words: zebra 🦓",
    ];
    let ours: Vec<Vec<i64>> = sample.iter().map(|s| back.encode(s).unwrap()).collect();
    assert_eq!(python_ids(&path, &sample), ours);
    let eot_text = back.decode(&[back.eot()]).unwrap();
    assert!(eot_text.is_empty() || eot_text == END_OF_TEXT, "{eot_text}");
}

fn python_ids(path: &Path, lines: &[&str]) -> Vec<Vec<i64>> {
    let script = crate::manifest_dir().join("tests/python/tok_ids.py");
    let mut child = Command::new(python())
        .arg(script)
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn mismatched_or_broken_tokenizers_are_clear_errors() {
    let tok = Tokenizer::train_bpe(&texts(), 400).unwrap();
    let small = Config {
        arch: Arch::Gpt2,
        vocab_size: 97,
        hidden: 48,
        layers: 2,
        heads: 4,
        kv_heads: 4,
        intermediate: 192,
        max_positions: 32,
        norm_eps: 1e-5,
        rope_theta: 0.0,
        tie_embeddings: true,
        qkv_bias: true,
    };
    let e = tok.check(&small).unwrap_err().to_string();
    assert!(e.contains("do not belong together"), "{e}");
    let e = Tokenizer::train_bpe(&texts(), 100)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("too small"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, "{ not json").unwrap();
    let e = Tokenizer::load(&path).err().unwrap().to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
}
