//! The project's own tiny base model: a Llama-style decoder of about two million parameters,
//! pretrained here on general text the project generates, with a byte-level BPE tokenizer
//! trained on the same text. Tests and the demo use it so nothing is downloaded.
//!
//! The text ([`corpus`]) is templated English about places, people, animals, cooking and
//! arithmetic, and questions converting quantities ("1 1/2 hours of music") to smaller units,
//! asked several ways, whose answers repeat the question's quantity: what the model learns
//! from them (copy a quantity and a name, read which unit is asked for) is what answering
//! the demo's Datanet needs. It also converts kitchen quantities (cups to grams, grams to cups,
//! cups to tablespoons), asked the ways people ask them, but only of ingredients of its own
//! ([`PANTRY`]): the Datanet's facts (grams per cup of its ingredients) come from the Datanet,
//! so an adapter's gain is real.
//!
//! Building is deterministic for a [`Recipe`] on one machine. The result is written in
//! Hugging Face's layout (`config.json`, `model.safetensors`, `tokenizer.json`), so
//! `transformers` loads it as a `LlamaForCausalLM`, and [`build_cached`] keeps one copy per
//! recipe so tests and demo runs pretrain once.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Tensor};

use crate::model::{Arch, Config, Model};
use crate::tokenizer::Tokenizer;
use crate::train::{Progress, Rng, schedule};
use crate::{Error, Hash, Result, keccak256};

/// Everything that decides the tiny base model's weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// The model's shape (its vocabulary is the tokenizer's).
    pub config: Config,
    /// Documents of generated text.
    pub documents: usize,
    /// BPE vocabulary size.
    pub vocab_size: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// Windows per step.
    pub batch_size: usize,
    /// Tokens per window.
    pub seq_len: i64,
    /// Peak learning rate (warmup then cosine).
    pub learning_rate: f64,
    /// Seed for text, init and batches.
    pub seed: u64,
}

impl Recipe {
    /// The tiny model tests and the demo use: 4 layers, width 192, 6 heads over 2 key/value
    /// heads, SwiGLU 512, a 1024-token vocabulary, 256 positions (about 1.8M parameters),
    /// 500 steps of 16 x 128 tokens (about 75 s on two cores).
    pub fn tiny() -> Self {
        Recipe {
            config: Config {
                arch: Arch::Llama,
                vocab_size: 1024,
                hidden: 192,
                layers: 4,
                heads: 6,
                kv_heads: 2,
                intermediate: 512,
                max_positions: 256,
                norm_eps: 1e-5,
                rope_theta: 10_000.0,
                tie_embeddings: true,
                qkv_bias: false,
            },
            documents: 6000,
            vocab_size: 1024,
            steps: 500,
            batch_size: 16,
            seq_len: 128,
            learning_rate: 3e-3,
            seed: 7,
        }
    }

    /// A short stable name for the recipe (the cache folder's name).
    pub fn fingerprint(&self) -> String {
        let text = format!("{CORPUS_VERSION} {self:?}");
        keccak256(text.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    }
}

/// Bumped whenever [`corpus`] changes what it writes.
const CORPUS_VERSION: u32 = 7;

/// What a build produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// The checkpoint folder.
    pub dir: PathBuf,
    /// Held-out loss (nats per token) on generated text before and after pretraining.
    pub eval_loss: (f64, f64),
    /// Parameters.
    pub parameters: i64,
}

/// `n` documents of general text: a few sentences each.
pub fn corpus(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let sentences = 2 + rng.below(4);
            (0..sentences)
                .map(|_| sentence(&mut rng))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

const NAMES: &[&str] = &[
    "Ada", "Bruno", "Chen", "Dara", "Emil", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kofi", "Lena",
];
const PLACES: &[&str] = &[
    "the harbour",
    "the old library",
    "the market",
    "the hill",
    "the station",
    "the river",
    "the school",
    "the garden",
    "the museum",
    "the bridge",
];
const ANIMALS: &[&str] = &[
    "cat", "dog", "horse", "fox", "owl", "goat", "heron", "rabbit", "bee", "whale",
];
const VERBS: &[&str] = &[
    "walked to",
    "painted",
    "visited",
    "cleaned",
    "photographed",
    "left",
    "closed",
    "opened",
    "drew a map of",
    "wrote about",
];
const TIMES: &[&str] = &[
    "in the morning",
    "at noon",
    "in the evening",
    "on Monday",
    "on Friday",
    "last winter",
    "every spring",
    "after the rain",
];
const FOODS: &[&str] = &[
    "flour",
    "sugar",
    "butter",
    "milk",
    "rice",
    "honey",
    "oats",
    "cocoa",
    "olive oil",
    "water",
    "salt",
    "eggs",
    "apples",
    "cheese",
    "tea",
    "brown sugar",
    "rolled oats",
    "all-purpose flour",
    "granulated sugar",
    "cocoa powder",
    "powdered sugar",
    "brown rice",
    "whole milk",
];
/// (unit, plural, smaller unit's plural, how many of the smaller make one)
const MEASURES: &[(&str, &str, &str, f64)] = &[
    ("kilometer", "kilometers", "meters", 1000.0),
    ("meter", "meters", "centimeters", 100.0),
    ("hour", "hours", "minutes", 60.0),
    ("minute", "minutes", "seconds", 60.0),
    ("day", "days", "hours", 24.0),
    ("week", "weeks", "days", 7.0),
    ("kilogram", "kilograms", "grams", 1000.0),
    ("liter", "liters", "milliliters", 1000.0),
    ("foot", "feet", "inches", 12.0),
    ("yard", "yards", "feet", 3.0),
    // The same units to other smaller ones: the question's unit decides the answer.
    ("hour", "hours", "seconds", 3600.0),
    ("day", "days", "minutes", 1440.0),
    ("week", "weeks", "hours", 168.0),
    ("meter", "meters", "millimeters", 1000.0),
    ("yard", "yards", "inches", 36.0),
    ("liter", "liters", "centiliters", 100.0),
];

/// Quantities as written: quarters, halves and whole numbers.
const QUANTITIES: &[(f64, &str)] = &[
    (0.25, "1/4"),
    (0.5, "1/2"),
    (0.75, "3/4"),
    (1.0, "1"),
    (1.5, "1 1/2"),
    (2.0, "2"),
    (2.5, "2 1/2"),
    (3.0, "3"),
    (4.0, "4"),
    (5.0, "5"),
    (6.0, "6"),
    (8.0, "8"),
];
const THINGS: &[&str] = &[
    "music", "rope", "road", "rain", "walking", "fabric", "cable", "sleep", "practice", "ribbon",
    "soup", "sand", "gravel", "clay", "juice", "paint",
];

/// A question and answer converting a quantity between a unit and a smaller one, asked one
/// of several ways; the answer repeats the question's quantity, as the demo's Datanet does.
fn measure(rng: &mut Rng) -> String {
    let (one, many, smalls, factor) = *rng.pick(MEASURES);
    let (n, written) = *rng.pick(QUANTITIES);
    let label = format!("{written} {}", if n <= 1.0 { one } else { many });
    let total = n * factor;
    let is = if smalls == "grams" {
        "weighs about"
    } else {
        "is"
    };
    let thing = if rng.below(3) == 0 {
        String::new()
    } else {
        format!(" of {}", rng.pick(THINGS))
    };
    let (q, a) = match rng.below(7) {
        0 => (
            format!("How many {smalls} are in {label}{thing}?"),
            format!("{label}{thing} {is} {total} {smalls}."),
        ),
        1 => (
            format!("What is {label}{thing} in {smalls}?"),
            format!("{label}{thing} is about {total} {smalls}."),
        ),
        2 => (
            format!("{label}{thing} is how many {smalls}?"),
            format!("{label}{thing} {is} {total} {smalls}."),
        ),
        3 => (
            format!("How many {smalls} does {label}{thing} make?"),
            format!("{label}{thing} makes {total} {smalls}."),
        ),
        4 => (
            format!("I have {total} {smalls}{thing}. How many {many} is that?"),
            format!("{total} {smalls}{thing} is about {label}."),
        ),
        5 => (
            format!("How many {many} are {total} {smalls}{thing}?"),
            format!("{total} {smalls}{thing} is {label}."),
        ),
        _ => (
            format!("Convert {label}{thing} to {smalls}."),
            format!("{label}{thing} {is} {total} {smalls}."),
        ),
    };
    format!("question: {q}\nanswer: {a}")
}

/// Kitchen ingredients and their grams per cup, for the base model's own kitchen conversions.
/// None shares a word with an ingredient of the sample Datanet (`tributary_pipeline::sample`),
/// and no weight is within 10% of one of its weights (a test in `tributary-models` checks
/// both), so the base model learns how kitchen conversions are asked and answered but none of
/// the Datanet's facts, nor a number that would pass for one: an adapter learns those.
pub const PANTRY: &[(&str, f64)] = &[
    ("cornflakes", 30.0),
    ("parsley", 40.0),
    ("panko", 50.0),
    ("shredded coconut", 70.0),
    ("parmesan", 100.0),
    ("cornstarch", 140.0),
    ("peanuts", 145.0),
    ("raisins", 150.0),
    ("cornmeal", 155.0),
    ("chocolate chips", 160.0),
    ("lentils", 165.0),
    ("yogurt", 275.0),
    ("tahini", 280.0),
    ("maple syrup", 300.0),
];

/// Cups as the sample Datanet writes them.
const CUPS: &[(f64, &str)] = &[
    (0.25, "1/4 cup"),
    (0.5, "1/2 cup"),
    (0.75, "3/4 cup"),
    (1.0, "1 cup"),
    (1.5, "1 1/2 cups"),
    (2.0, "2 cups"),
    (3.0, "3 cups"),
    (4.0, "4 cups"),
];

/// A kitchen conversion (cups to grams, grams to cups, cups to tablespoons) of a [`PANTRY`]
/// ingredient, asked one of several ways, answered in the sample Datanet's form.
fn kitchen(rng: &mut Rng) -> String {
    let (food, per_cup) = *rng.pick(PANTRY);
    let (cups, label) = *rng.pick(CUPS);
    let grams = (per_cup * cups).round();
    let x = format!("{label} of {food}");
    let (q, a) = match rng.below(3) {
        0 => (
            match rng.below(7) {
                0 => format!("How many grams is {x}?"),
                1 => format!("What does {x} weigh?"),
                2 => format!("How heavy is {x} in grams?"),
                3 => format!("Convert {x} to grams."),
                4 => format!("What is {x} in grams?"),
                5 => format!("How many grams are in {x}?"),
                _ => format!("{x} is how many grams?"),
            },
            format!("{x} weighs about {grams} grams."),
        ),
        1 => {
            let g = format!("{grams} grams of {food}");
            (
                match rng.below(6) {
                    0 => format!("I have {g}. How many cups is that?"),
                    1 => format!("How many cups is {g}?"),
                    2 => format!("{g} is how many cups?"),
                    3 => format!("Convert {g} to cups."),
                    4 => format!("What is {g} in cups?"),
                    _ => format!("How many cups are {g}?"),
                },
                format!("{g} is about {label}."),
            )
        }
        _ => (
            match rng.below(6) {
                0 => format!("How many tablespoons are in {x}?"),
                1 => format!("How many tablespoons is {x}?"),
                2 => format!("{x} is how many tablespoons?"),
                3 => format!("Convert {x} to tablespoons."),
                4 => format!("What is {x} in tablespoons?"),
                _ => format!("How many tablespoons does {x} make?"),
            },
            format!("{x} is {} tablespoons.", cups * 16.0),
        ),
    };
    format!("question: {q}\nanswer: {a}")
}

fn sentence(rng: &mut Rng) -> String {
    let name = rng.pick(NAMES);
    match rng.below(9) {
        0 => format!(
            "{name} {} {} {}.",
            rng.pick(VERBS),
            rng.pick(PLACES),
            rng.pick(TIMES)
        ),
        1 => format!(
            "The {} near {} was {}.",
            rng.pick(ANIMALS),
            rng.pick(PLACES),
            rng.pick(&["asleep", "hungry", "quiet", "curious", "lost", "happy"])
        ),
        2 => {
            let (a, b) = (rng.below(50), rng.below(50));
            format!("{a} plus {b} is {}.", a + b)
        }
        3 => {
            let (a, b) = (2 + rng.below(9), 2 + rng.below(9));
            format!("{a} times {b} is {}.", a * b)
        }
        4 => measure(rng),
        5 | 8 => kitchen(rng),
        6 if rng.below(2) == 0 => format!(
            "{name} and {} met at {} {}.",
            rng.pick(NAMES),
            rng.pick(PLACES),
            rng.pick(TIMES)
        ),
        6 => {
            let (a, b) = (rng.pick(FOODS), rng.pick(FOODS));
            match rng.below(4) {
                0 => format!(
                    "{name} bought {a} and {b} at the market {}.",
                    rng.pick(TIMES)
                ),
                1 => format!(
                    "The recipe calls for {} of {a} and a little {b}.",
                    rng.pick(&[
                        "a cup",
                        "two cups",
                        "a spoon",
                        "a handful",
                        "a pinch",
                        "a bowl"
                    ])
                ),
                2 => format!("{name} keeps the {a} in a jar next to the {b}."),
                _ => format!(
                    "question: What did {name} bake?\nanswer: {name} baked bread with {a} and {b}."
                ),
            }
        }
        _ => format!(
            "A {} has {} legs.",
            rng.pick(ANIMALS),
            rng.pick(&["two", "four", "six", "no"])
        ),
    }
}

/// The config.json `transformers` reads as a `LlamaForCausalLM`.
pub fn hf_config(c: &Config) -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "num_key_value_heads": c.kv_heads,
        "intermediate_size": c.intermediate,
        "max_position_embeddings": c.max_positions,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "tie_word_embeddings": c.tie_embeddings,
        "attention_bias": c.qkv_bias,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    })
}

/// Fresh variables named as in a Hugging Face Llama checkpoint: normal(0, 0.02) matrices
/// (output projections scaled down by depth, as GPT-2 does), norms at one.
pub(crate) fn init(vs: &nn::VarStore, c: &Config) -> Result<()> {
    if c.arch != Arch::Llama || !c.tie_embeddings {
        return Err(Error::InvalidInput(
            "the tiny base model is a Llama-style model with tied embeddings".into(),
        ));
    }
    let root = vs.root();
    let var = |name: &str, dims: &[i64], std: f64| {
        let mut p = root.clone();
        let mut parts: Vec<&str> = name.split('.').collect();
        let last = parts.pop().expect("non-empty name");
        for part in parts {
            p = p / part;
        }
        let init = if std == 0.0 {
            nn::Init::Const(1.0)
        } else {
            nn::Init::Randn {
                mean: 0.0,
                stdev: std,
            }
        };
        let _ = p.var(last, dims, init);
    };
    let (h, kv) = (c.hidden, c.kv_heads * c.head_dim());
    let out_std = 0.02 / (2.0 * c.layers as f64).sqrt();
    var("model.embed_tokens.weight", &[c.vocab_size, h], 0.02);
    for i in 0..c.layers {
        let p = format!("model.layers.{i}");
        var(&format!("{p}.input_layernorm.weight"), &[h], 0.0);
        var(&format!("{p}.post_attention_layernorm.weight"), &[h], 0.0);
        var(&format!("{p}.self_attn.q_proj.weight"), &[h, h], 0.02);
        var(&format!("{p}.self_attn.k_proj.weight"), &[kv, h], 0.02);
        var(&format!("{p}.self_attn.v_proj.weight"), &[kv, h], 0.02);
        var(&format!("{p}.self_attn.o_proj.weight"), &[h, h], out_std);
        var(
            &format!("{p}.mlp.gate_proj.weight"),
            &[c.intermediate, h],
            0.02,
        );
        var(
            &format!("{p}.mlp.up_proj.weight"),
            &[c.intermediate, h],
            0.02,
        );
        var(
            &format!("{p}.mlp.down_proj.weight"),
            &[h, c.intermediate],
            out_std,
        );
    }
    var("model.norm.weight", &[h], 0.0);
    Ok(())
}

/// Pretrains the recipe's model into `dir` (created), reporting each step.
pub fn build(recipe: &Recipe, dir: &Path, progress: &mut dyn FnMut(&Progress)) -> Result<Built> {
    let texts = corpus(recipe.documents, recipe.seed);
    let tokenizer = Tokenizer::train_bpe(&texts, recipe.vocab_size)?;
    let mut config = recipe.config.clone();
    config.vocab_size = tokenizer.vocab_size() as i64;
    let eot = tokenizer.eot();
    let mut stream = Vec::new();
    for t in &texts {
        stream.extend(tokenizer.encode(t)?);
        stream.push(eot);
    }
    let w = recipe.seq_len as usize + 1;
    let windows: Vec<Vec<i64>> = stream.chunks_exact(w).map(<[i64]>::to_vec).collect();
    // Every 20th window is held out.
    let (eval, train): (Vec<_>, Vec<_>) = windows
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 20 == 0);
    let strip = |v: Vec<(usize, Vec<i64>)>| v.into_iter().map(|(_, w)| w).collect::<Vec<_>>();
    let (eval, train) = (strip(eval), strip(train));
    if train.len() < recipe.batch_size || eval.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{} documents make only {} windows of {w} tokens: raise documents",
            recipe.documents,
            train.len() + eval.len()
        )));
    }

    tch::manual_seed(recipe.seed as i64);
    let device = Device::Cpu;
    let vs = nn::VarStore::new(device);
    init(&vs, &config)?;
    let weights: HashMap<String, Tensor> = vs.variables();
    let model = Model::from_weights(config.clone(), weights, device)?;
    let parameters: i64 = vs
        .trainable_variables()
        .iter()
        .map(Tensor::numel)
        .sum::<usize>() as i64;

    let eval_t = Tensor::from_slice2(&eval);
    let eval_loss = |model: &Model| -> Result<f64> {
        tch::no_grad(|| {
            let mut sum = 0.0;
            let n = eval_t.size()[0];
            for s in (0..n).step_by(32) {
                let b = eval_t.narrow(0, s, 32.min(n - s));
                sum += lm_loss(model, &b)?.double_value(&[]) * b.size()[0] as f64;
            }
            Ok(sum / n as f64)
        })
    };
    let before = eval_loss(&model)?;
    let mut opt = nn::AdamW {
        wd: 0.01,
        ..nn::AdamW::default()
    }
    .build(&vs, recipe.learning_rate)?;
    let mut rng = Rng(recipe.seed ^ 0x5eed);
    let warmup = (recipe.steps / 10).max(1);
    let started = Instant::now();
    let mut tokens = 0u64;
    for step in 0..recipe.steps {
        let lr = schedule(recipe.learning_rate, warmup, recipe.steps, step);
        opt.set_lr(lr);
        let batch: Vec<Vec<i64>> = (0..recipe.batch_size)
            .map(|_| train[rng.below(train.len())].clone())
            .collect();
        let loss = lm_loss(&model, &Tensor::from_slice2(&batch))?;
        opt.zero_grad();
        loss.backward();
        opt.clip_grad_norm(1.0);
        opt.step();
        tokens += (recipe.batch_size as i64 * recipe.seq_len) as u64;
        let elapsed = started.elapsed().as_secs_f64();
        progress(&Progress {
            step: step + 1,
            max_steps: recipe.steps,
            loss: loss.double_value(&[]),
            tokens_per_second: tokens as f64 / elapsed.max(1e-9),
            eta_seconds: elapsed / (step + 1) as f64 * (recipe.steps - step - 1) as f64,
        });
    }
    let after = eval_loss(&model)?;

    std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| Error::Io(p.display().to_string(), e))
    };
    write(
        "config.json",
        serde_json::to_string_pretty(&hf_config(&config))
            .expect("json")
            .as_bytes(),
    )?;
    tokenizer.save(&dir.join("tokenizer.json"))?;
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&named, dir.join("model.safetensors"))?;
    Ok(Built {
        dir: dir.to_path_buf(),
        eval_loss: (before, after),
        parameters,
    })
}

/// Next-token cross-entropy of the base model over windows `[b, seq_len + 1]`.
fn lm_loss(model: &Model, w: &Tensor) -> Result<Tensor> {
    let t = w.size()[1] - 1;
    let logits = model.logits(&w.narrow(1, 0, t))?;
    Ok(crate::train::cross_entropy(&logits, &w.narrow(1, 1, t)))
}

/// The recipe's checkpoint under `cache` (`cache/tiny-<fingerprint>`), built first if it is
/// not there. Concurrent callers wait on a file lock and build once; a build interrupted
/// half-way leaves no folder behind (it is written aside and renamed).
pub fn build_cached(
    recipe: &Recipe,
    cache: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<PathBuf> {
    let io = |p: &Path, e| Error::Io(p.display().to_string(), e);
    let dir = cache.join(format!("tiny-{}", recipe.fingerprint()));
    if dir.join("model.safetensors").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache).map_err(|e| io(cache, e))?;
    let lock_path = cache.join(format!("tiny-{}.lock", recipe.fingerprint()));
    let lock = File::create(&lock_path).map_err(|e| io(&lock_path, e))?;
    lock.lock().map_err(|e| io(&lock_path, e))?;
    if !dir.join("model.safetensors").exists() {
        let tmp = cache.join(format!("tiny-{}.partial", recipe.fingerprint()));
        let _ = std::fs::remove_dir_all(&tmp);
        let built = build(recipe, &tmp, progress)?;
        tracing::info!(
            parameters = built.parameters,
            eval_loss_before = built.eval_loss.0,
            eval_loss_after = built.eval_loss.1,
            "pretrained the tiny base model"
        );
        std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
    }
    Ok(dir)
}

/// Content hash of a checkpoint folder: keccak256 over the hashes of its `config.json`, its
/// weight files (`model.safetensors`, or the index and every shard it names) and
/// `tokenizer.json` (the base model's id on chain).
pub fn checkpoint_hash(dir: &Path) -> Result<Hash> {
    Ok(checkpoint_id(&checkpoint_file_hashes(dir)?))
}

/// keccak256 of each file of a checkpoint folder, in hashing order ([`checkpoint_files`]).
pub fn checkpoint_file_hashes(dir: &Path) -> Result<Vec<(String, Hash)>> {
    checkpoint_files(dir)?
        .into_iter()
        .map(|name| {
            let p = dir.join(&name);
            let bytes = std::fs::read(&p).map_err(|e| {
                Error::InvalidInput(format!(
                    "{}: {e}: a base model folder needs config.json, model.safetensors (or a sharded checkpoint) and tokenizer.json",
                    p.display()
                ))
            })?;
            Ok((name, keccak256(&bytes)))
        })
        .collect()
}

/// [`checkpoint_hash`] from the files' hashes ([`checkpoint_file_hashes`]).
pub fn checkpoint_id(files: &[(String, Hash)]) -> Hash {
    let mut buf = b"tributary-base-model".to_vec();
    for (_, h) in files {
        buf.extend_from_slice(h);
    }
    keccak256(buf)
}

/// The weights hash a base model is registered with, from its files' hashes: that of
/// `model.safetensors`, or keccak256 over a sharded checkpoint's index and shards' hashes in
/// order.
pub fn weights_hash(files: &[(String, Hash)]) -> Hash {
    if let Some((_, h)) = files.iter().find(|(n, _)| n == "model.safetensors") {
        return *h;
    }
    let mut buf = Vec::new();
    for (name, h) in files {
        if name != "config.json" && name != "tokenizer.json" {
            buf.extend_from_slice(h);
        }
    }
    keccak256(buf)
}

/// The files of a base model folder, in hashing order: `config.json`, the weight files (see
/// [`crate::model::weight_files`]) and `tokenizer.json`.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<String>> {
    let mut names = vec!["config.json".to_string()];
    names.extend(crate::model::weight_files(dir)?);
    names.push("tokenizer.json".into());
    Ok(names)
}

/// Parameters of a loaded model.
pub fn parameter_count(model: &Model) -> i64 {
    model.parameters().iter().map(|t| t.numel() as i64).sum()
}

/// Where built base models are kept: `$TRIBUTARY_MODEL_CACHE`, else
/// `~/.cache/tributary/models`.
pub fn default_cache() -> PathBuf {
    if let Some(p) = std::env::var_os("TRIBUTARY_MODEL_CACHE") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/tributary/models")
}
