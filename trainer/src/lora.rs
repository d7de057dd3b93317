//! LoRA: a low-rank update `(alpha / r) · B A x` beside chosen projections of a frozen base
//! model. Only `A` (`[r, in]`) and `B` (`[out, r]`) are trainable; they live in their own
//! `VarStore`, so an optimizer built on it cannot touch the base. Adapters are written and
//! read in Hugging Face PEFT's format (`adapter_model.safetensors`, `adapter_config.json`), so
//! `PeftModel.from_pretrained` loads them over the same base.
//!
//! The factors (and so the optimizer's state) are float32 whatever the base's precision; over
//! a bfloat16 or float16 base they are cast to it inside each projection, as PEFT's adapters
//! run under `torch.autocast`, and their gradients land in float32.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::model::{Arch, Config, Linear, Model};
use crate::{Error, Result};

/// Which projections carry adapters, and their shape (`[lora]` in `train.toml`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank `r` (at least 1).
    pub rank: i64,
    /// Scale numerator: the update is multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Dropout on the adapter's input while training.
    pub dropout: f64,
    /// Roles: `q`, `k`, `v`, `o`, `gate`, `up`, `down` (GPT-2 fuses q, k and v: `qkv`).
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    /// Rank 8, alpha 16, no dropout, on q, v, o, up and down.
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: ["q", "v", "o", "up", "down"].map(String::from).to_vec(),
        }
    }
}

/// The Hugging Face module path of `role` in block `layer` (under the model's root).
fn module(arch: Arch, layer: usize, role: &str) -> Option<String> {
    let name = match (arch, role) {
        (Arch::Gpt2, "qkv") => "attn.c_attn",
        (Arch::Gpt2, "o") => "attn.c_proj",
        (Arch::Gpt2, "up") => "mlp.c_fc",
        (Arch::Gpt2, "down") => "mlp.c_proj",
        (Arch::Llama, "q") => "self_attn.q_proj",
        (Arch::Llama, "k") => "self_attn.k_proj",
        (Arch::Llama, "v") => "self_attn.v_proj",
        (Arch::Llama, "o") => "self_attn.o_proj",
        (Arch::Llama, "gate") => "mlp.gate_proj",
        (Arch::Llama, "up") => "mlp.up_proj",
        (Arch::Llama, "down") => "mlp.down_proj",
        _ => return None,
    };
    let root = match arch {
        Arch::Gpt2 => "transformer.h",
        Arch::Llama => "model.layers",
    };
    Some(format!("{root}.{layer}.{name}"))
}

/// PEFT's `target_modules` entry for `role` (a suffix of the module path).
fn target_module(arch: Arch, role: &str) -> String {
    let path = module(arch, 0, role).expect("validated role");
    let parts: Vec<&str> = path.split('.').collect();
    match arch {
        Arch::Gpt2 => parts[parts.len() - 2..].join("."),
        Arch::Llama => parts[parts.len() - 1].to_string(),
    }
}

impl LoraConfig {
    /// Checks the config against the model's family before any work starts.
    pub fn validate(&self, model: &Config) -> Result<()> {
        if self.rank < 1 {
            return Err(Error::InvalidInput(format!(
                "LoRA rank {} must be at least 1",
                self.rank
            )));
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "LoRA alpha {} must be a positive number",
                self.alpha
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::InvalidInput(format!(
                "LoRA dropout {} must be in [0, 1)",
                self.dropout
            )));
        }
        if self.targets.is_empty() {
            return Err(Error::InvalidInput(
                "no LoRA target modules: name some of q, k, v, o, gate, up, down".into(),
            ));
        }
        for t in &self.targets {
            if module(model.arch, 0, t).is_none() {
                let known = match model.arch {
                    Arch::Gpt2 => "qkv (GPT-2 fuses q, k and v), o, up, down",
                    Arch::Llama => "q, k, v, o, gate, up, down",
                };
                return Err(Error::InvalidInput(format!(
                    "unknown LoRA target module {t:?} for this {:?} model: use {known}",
                    model.arch
                )));
            }
        }
        Ok(())
    }

    fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// The adapters of one model: an `(A, B)` pair per targeted projection.
///
/// Every factor is a view into one flat float32 variable, laid out in [`Lora::weights`]
/// order, so the optimizer, gradient clipping and zeroing each run a handful of kernels per
/// step instead of a handful per factor (hundreds of factors in a 24-block model: on a GPU
/// their launches would cost more than the adapters' arithmetic).
pub struct Lora {
    /// Shape and targets.
    pub config: LoraConfig,
    vs: nn::VarStore,
    /// All factors, flat: the one trainable variable.
    flat: Tensor,
    /// Sizes of the factors in `flat`, in order (`A`, `B` per pair).
    sizes: Vec<i64>,
    /// `(layer, role) -> (A, B)`, views into `flat`.
    pairs: BTreeMap<(usize, String), (Tensor, Tensor)>,
    /// The base's precision: the factors are cast to it where they meet the activations.
    compute: Kind,
}

impl Lora {
    /// Fresh adapters for `model`, initialised as PEFT does: `A` Kaiming-uniform, `B` zero,
    /// so the adapted model starts equal to the base. Seeded by `seed`.
    pub fn new(model: &Model, config: LoraConfig, seed: i64) -> Result<Self> {
        tch::manual_seed(seed);
        Self::build(model, config, true)
    }

    /// The variables for `config`: `A` Kaiming-uniform when `random`, else zero (for
    /// adapters whose weights are about to be written: loaded or merged); `B` zero.
    fn build(model: &Model, config: LoraConfig, random: bool) -> Result<Self> {
        config.validate(&model.config)?;
        // (layer, role) -> (out, in), and the draw order of the random A's (block by block,
        // roles as configured).
        let mut shapes = BTreeMap::new();
        let mut draws = Vec::new();
        for (layer, block) in model.blocks.iter().enumerate() {
            for role in &config.targets {
                let l = projection(block, role);
                shapes.insert(
                    (layer, role.clone()),
                    (l.weight.size()[0], l.weight.size()[1]),
                );
                draws.push((layer, role.clone()));
            }
        }
        let r = config.rank;
        let total: i64 = shapes.values().map(|(o, i)| r * (o + i)).sum();
        let vs = nn::VarStore::new(model.device());
        let flat = vs.root().var("lora", &[total], Init::Const(0.0));
        // The views are made with autograd on (whoever calls), so gradients reach `flat`.
        let pairs: BTreeMap<_, _> = tch::with_grad(|| {
            let mut at = 0;
            let mut take = |dims: [i64; 2]| {
                let t = flat.narrow(0, at, dims[0] * dims[1]).view(dims);
                at += dims[0] * dims[1];
                t
            };
            shapes
                .iter()
                .map(|(k, &(out_f, in_f))| (k.clone(), (take([r, in_f]), take([out_f, r]))))
                .collect()
        });
        if random {
            tch::no_grad(|| {
                for key in &draws {
                    // PEFT: kaiming_uniform_(A, a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)),
                    // drawn by the CPU's generator whatever the device: CUDA's draws other
                    // numbers for the same seed, and the same seed must start the same
                    // adapter everywhere.
                    let mut a = pairs[key].0.shallow_clone();
                    let bound = 1.0 / (a.size()[1] as f64).sqrt();
                    let drawn = Tensor::zeros(a.size(), (Kind::Float, tch::Device::Cpu))
                        .uniform_(-bound, bound);
                    a.copy_(&drawn);
                }
            });
        }
        let sizes = pairs
            .values()
            .flat_map(|(a, b): &(Tensor, Tensor)| [a.numel() as i64, b.numel() as i64])
            .collect();
        Ok(Self {
            config,
            vs,
            flat,
            sizes,
            pairs,
            compute: model.kind(),
        })
    }

    /// The trainable variables (for the optimizer).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> i64 {
        self.pairs
            .values()
            .map(|(a, b)| a.numel() as i64 + b.numel() as i64)
            .sum()
    }

    /// The update one projection gets, `(alpha / r) · B A` (`[out, in]`), or `None` where
    /// no adapter sits.
    pub fn delta(&self, layer: usize, role: &str) -> Option<Tensor> {
        let (a, b) = self.pairs.get(&(layer, role.to_string()))?;
        Some(tch::no_grad(|| b.matmul(a) * self.config.scale()))
    }

    /// Each adapted projection as `((layer, role), A [r, in], s·B [out, r])`, with the scale
    /// `s = alpha / r` folded into `B`, in the base's precision (detached copies, for
    /// serving).
    pub fn factors(&self) -> Vec<((usize, String), Tensor, Tensor)> {
        let s = self.config.scale();
        let k = self.compute;
        tch::no_grad(|| {
            self.pairs
                .iter()
                .map(|(key, (a, b))| {
                    (
                        key.clone(),
                        a.detach().to_kind(k).copy(),
                        (b.detach() * s).to_kind(k),
                    )
                })
                .collect()
        })
    }

    /// Merges adapters into one whose update is exactly `Σ wᵢ · updateᵢ`, by concatenating
    /// ranks: `A = [A₁; A₂; …]`, `B = [w₁s₁B₁ | w₂s₂B₂ | …]` with scale 1 (alpha = rank).
    /// The parents must target the same modules of `model`.
    pub fn merge(model: &Model, parents: &[(&Lora, f64)]) -> Result<Lora> {
        let Some((first, _)) = parents.first() else {
            return Err(Error::InvalidInput(
                "nothing to merge: give at least one adapter".into(),
            ));
        };
        let mut targets = first.config.targets.clone();
        targets.sort();
        for (p, w) in parents {
            let mut t = p.config.targets.clone();
            t.sort();
            if t != targets {
                return Err(Error::InvalidInput(format!(
                    "adapters target different modules ({targets:?} and {t:?}): merge adapters with the same target modules"
                )));
            }
            if !w.is_finite() {
                return Err(Error::InvalidInput(format!(
                    "merge weight {w} is not a number"
                )));
            }
        }
        let rank: i64 = parents.iter().map(|(p, _)| p.config.rank).sum();
        let config = LoraConfig {
            rank,
            alpha: rank as f64,
            dropout: first.config.dropout,
            targets: first.config.targets.clone(),
        };
        let mut merged = Lora::build(model, config, false)?;
        tch::no_grad(|| {
            for (key, (a, b)) in merged.pairs.iter_mut() {
                let a_parts: Vec<Tensor> = parents
                    .iter()
                    .map(|(p, _)| p.pairs[key].0.detach())
                    .collect();
                let b_parts: Vec<Tensor> = parents
                    .iter()
                    .map(|(p, w)| p.pairs[key].1.detach() * (w * p.config.scale()))
                    .collect();
                a.copy_(&Tensor::cat(&a_parts, 0));
                b.copy_(&Tensor::cat(&b_parts, 1));
            }
        });
        Ok(merged)
    }

    /// Fresh adapters for `model` that start from `parent`'s weights (same shape and
    /// targets): continued training, whose result inherits the parent's lineage.
    pub fn from_parent(
        model: &Model,
        parent: &Lora,
        config: LoraConfig,
        seed: i64,
    ) -> Result<Lora> {
        let mut want = config.targets.clone();
        want.sort();
        let mut have = parent.config.targets.clone();
        have.sort();
        if config.rank != parent.config.rank || config.alpha != parent.config.alpha || want != have
        {
            return Err(Error::InvalidInput(format!(
                "the config (rank {}, alpha {}, targets {want:?}) differs from the parent adapter's (rank {}, alpha {}, targets {have:?}): continue training with the parent's shape",
                config.rank, config.alpha, parent.config.rank, parent.config.alpha
            )));
        }
        let mut child = Lora::new(model, config, seed)?;
        child.set_weights(&parent.weights());
        Ok(child)
    }

    /// A copy of the adapter weights, in a fixed order (to keep the best while training).
    pub fn weights(&self) -> Vec<Tensor> {
        self.pairs
            .values()
            .flat_map(|(a, b)| [a.detach().copy(), b.detach().copy()])
            .collect()
    }

    /// The gradient of every adapter tensor after a backward pass, flattened and joined in
    /// [`Lora::weights`] order (zeros before any).
    pub fn gradient(&self) -> Tensor {
        let g = self.flat.grad();
        if g.defined() {
            g.copy()
        } else {
            self.flat.zeros_like()
        }
    }

    /// Clears the adapter tensors' gradients.
    pub fn zero_grad(&mut self) {
        self.flat.zero_grad();
    }

    /// Puts back weights taken with [`Lora::weights`].
    pub fn set_weights(&mut self, weights: &[Tensor]) {
        tch::no_grad(|| {
            for ((a, b), w) in self.pairs.values_mut().zip(weights.chunks(2)) {
                a.copy_(&w[0]);
                b.copy_(&w[1]);
            }
        });
    }

    /// keccak256 over every adapter tensor in a fixed order (name, shape, float32
    /// little-endian values): equal adapters, equal hash.
    pub fn weights_hash(&self) -> Result<crate::Hash> {
        let mut buf = Vec::new();
        for ((layer, role), (a, b)) in &self.pairs {
            for (name, t) in [("A", a), ("B", b)] {
                buf.extend_from_slice(format!("{layer}.{role}.{name}{:?}", t.size()).as_bytes());
                let values: Vec<f32> = Vec::try_from(
                    &t.detach()
                        .to_kind(Kind::Float)
                        .to_device(tch::Device::Cpu)
                        .flatten(0, -1),
                )?;
                for v in values {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        Ok(crate::keccak256(buf))
    }

    /// Logits of the adapted model; `train` turns dropout on.
    pub fn logits(&self, model: &Model, ids: &Tensor, train: bool) -> Result<Tensor> {
        model.forward_with(ids, &self.projector(train))
    }

    /// The projection of the adapted model, for [`Model::forward_with`] and
    /// [`Model::block`]: the base's output plus `(alpha / r) · B A x`, with dropout on the
    /// adapter's input when `train`.
    ///
    /// The factors it uses come from one split of the flat variable, made here: the backward
    /// pass then writes the flat gradient once, where views made one by one would each
    /// write a flat-sized gradient. Make one per forward pass.
    pub fn projector(&self, train: bool) -> impl Fn(usize, &str, &Linear, &Tensor) -> Tensor + '_ {
        let scale = self.config.scale();
        let dropout = self.config.dropout;
        let k = self.compute;
        let parts = self.flat.split_with_sizes(&self.sizes, 0);
        let factors: BTreeMap<&(usize, String), (Tensor, Tensor)> = self
            .pairs
            .iter()
            .zip(parts.chunks(2))
            .map(|((key, (a, b)), p)| {
                (
                    key,
                    (
                        p[0].view(a.size().as_slice()),
                        p[1].view(b.size().as_slice()),
                    ),
                )
            })
            .collect();
        move |layer, role, base: &Linear, x| {
            let y = base.forward(x);
            match factors.get(&(layer, role.to_string())) {
                None => y,
                Some((a, b)) => {
                    let x = if train && dropout > 0.0 {
                        x.dropout(dropout, true)
                    } else {
                        x.shallow_clone()
                    };
                    y + x
                        .linear(&a.to_kind(k), None::<Tensor>)
                        .linear(&b.to_kind(k), None::<Tensor>)
                        * scale
                }
            }
        }
    }

    /// Weights taken with [`Lora::weights`] as one flat vector, the layout
    /// [`Lora::row_projector`] reads.
    pub fn flat(weights: &[Tensor]) -> Tensor {
        let parts: Vec<Tensor> = weights.iter().map(|w| w.flatten(0, -1)).collect();
        Tensor::cat(&parts, 0)
    }

    /// Whether adapters `self` and `other` have the same layout (targets, shapes, scale),
    /// so that [`Lora::row_projector`] of one runs the weights of the other.
    pub fn same_layout(&self, other: &Lora) -> bool {
        self.sizes == other.sizes
            && self.config.scale() == other.config.scale()
            && self.compute == other.compute
            && self.pairs.keys().eq(other.pairs.keys())
    }

    /// The projection with one adapter per row of the input: `rows` is `[batch,
    /// num_parameters]`, row `b` the flat weights ([`Lora::flat`]) of the adapter input row
    /// `b` uses, all of `self`'s layout. Gradients reach `rows`, so one backward pass over a
    /// sum of per-row losses gives every row its own gradient (the base is frozen and rows do
    /// not attend to each other).
    pub fn row_projector(
        &self,
        rows: &Tensor,
    ) -> impl Fn(usize, &str, &Linear, &Tensor) -> Tensor + '_ {
        let scale = self.config.scale();
        let k = self.compute;
        let b = rows.size()[0];
        let parts = rows.split_with_sizes(&self.sizes, 1);
        let factors: BTreeMap<&(usize, String), (Tensor, Tensor)> = self
            .pairs
            .iter()
            .zip(parts.chunks(2))
            .map(|((key, (a, bf)), p)| {
                let (sa, sb) = (a.size(), bf.size());
                // x [batch, t, in] · Aᵀ [batch, in, r] · Bᵀ [batch, r, out]
                let at = p[0].view([b, sa[0], sa[1]]).transpose(1, 2).to_kind(k);
                let bt = p[1].view([b, sb[0], sb[1]]).transpose(1, 2).to_kind(k);
                (key, (at, bt))
            })
            .collect();
        move |layer, role, base: &Linear, x| {
            let y = base.forward(x);
            match factors.get(&(layer, role.to_string())) {
                None => y,
                Some((at, bt)) => y + x.bmm(at).bmm(bt) * scale,
            }
        }
    }

    /// [`Lora::row_projector`] that also records, at every adapted projection, its input
    /// and a zero tensor added to its output that gradients reach (`sites`, by pair in
    /// [`Lora::weights`] order): after a backward pass, [`Lora::factor_gradients`] gives
    /// each row's factor gradients at any weights from these.
    pub fn probed_projector<'a>(
        &'a self,
        rows: &Tensor,
        sites: &'a std::cell::RefCell<BTreeMap<usize, (Tensor, Tensor)>>,
    ) -> impl Fn(usize, &str, &Linear, &Tensor) -> Tensor + 'a {
        let inner = self.row_projector(rows);
        let order: BTreeMap<(usize, String), usize> = self
            .pairs
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        move |layer, role, base: &Linear, x| {
            let y = inner(layer, role, base, x);
            match order.get(&(layer, role.to_string())) {
                None => y,
                Some(&i) => {
                    let probe = y.zeros_like().set_requires_grad(true);
                    let y = y + &probe;
                    sites.borrow_mut().insert(i, (x.detach(), probe));
                    y
                }
            }
        }
    }

    /// Per-row factor gradients `[rows, num_parameters]` at the flat weights `at` (`[rows,
    /// num_parameters]`, this layout), from a pass through [`Lora::probed_projector`]: with
    /// `X` a projection's inputs and `Δ` the loss's gradient at its output, `dA = s (Δ B)ᵀ X`
    /// and `dB = s Δᵀ (X Aᵀ)`. Exact at the weights the pass ran with; at other weights it
    /// keeps that pass's activations.
    pub fn factor_gradients(
        &self,
        sites: &BTreeMap<usize, (Tensor, Tensor)>,
        at: &Tensor,
    ) -> Result<Tensor> {
        let scale = self.config.scale();
        let b = at.size()[0];
        let parts = at.split_with_sizes(&self.sizes, 1);
        let mut out = Vec::with_capacity(parts.len());
        for (i, ((a, bf), p)) in self.pairs.values().zip(parts.chunks(2)).enumerate() {
            let (x, probe) = sites.get(&i).ok_or_else(|| {
                Error::Internal(format!("adapter projection {i} was not run in the pass"))
            })?;
            let x = x.to_kind(Kind::Float);
            let d = probe.grad();
            let d = if d.defined() {
                d.to_kind(Kind::Float)
            } else {
                Tensor::zeros(probe.size(), (Kind::Float, probe.device()))
            };
            let (sa, sb) = (a.size(), bf.size());
            let fa = p[0].view([b, sa[0], sa[1]]); // [rows, r, in]
            let fb = p[1].view([b, sb[0], sb[1]]); // [rows, out, r]
            let da = d.bmm(&fb).transpose(1, 2).bmm(&x) * scale;
            let db = d.transpose(1, 2).bmm(&x.bmm(&fa.transpose(1, 2))) * scale;
            out.push(da.flatten(1, -1));
            out.push(db.flatten(1, -1));
        }
        Ok(Tensor::cat(&out, 1))
    }

    /// Writes the adapters in PEFT's format into `dir`: `adapter_model.safetensors` (tensor
    /// names as PEFT saves them) and `adapter_config.json` (`base_model` names the base).
    pub fn save_peft(&self, model: &Model, dir: &Path, base_model: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
        let arch = model.config.arch;
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for ((layer, role), (a, b)) in &self.pairs {
            let m = module(arch, *layer, role).expect("validated role");
            tensors.push((
                format!("base_model.model.{m}.lora_A.weight"),
                a.detach().to_device(tch::Device::Cpu).contiguous(),
            ));
            tensors.push((
                format!("base_model.model.{m}.lora_B.weight"),
                b.detach().to_device(tch::Device::Cpu).contiguous(),
            ));
        }
        Tensor::write_safetensors(&tensors, dir.join("adapter_model.safetensors"))?;
        let mut targets: Vec<String> = self
            .config
            .targets
            .iter()
            .map(|t| target_module(arch, t))
            .collect();
        targets.sort();
        let config = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.config.rank,
            "lora_alpha": self.config.alpha,
            "lora_dropout": self.config.dropout,
            "target_modules": targets,
            "fan_in_fan_out": arch == Arch::Gpt2,
            "bias": "none",
            "inference_mode": true,
            "init_lora_weights": true,
            "use_rslora": false,
            "use_dora": false,
        });
        let text = serde_json::to_string_pretty(&config).expect("json serialises");
        std::fs::write(dir.join("adapter_config.json"), text)
            .map_err(|e| Error::Io(dir.display().to_string(), e))?;
        Ok(())
    }

    /// Reads adapters in PEFT's format from `dir` for `model`.
    pub fn load_peft(model: &Model, dir: &Path) -> Result<Self> {
        let path = dir.join("adapter_config.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| Error::Io(path.display().to_string(), e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
        if v["peft_type"] != "LORA" {
            return Err(Error::InvalidInput(format!(
                "{}: not a LoRA adapter",
                path.display()
            )));
        }
        let arch = model.config.arch;
        let wanted: Vec<String> = v["target_modules"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let roles = ["q", "k", "v", "o", "qkv", "gate", "up", "down"];
        let targets: Vec<String> = roles
            .iter()
            .filter(|r| module(arch, 0, r).is_some() && wanted.contains(&target_module(arch, r)))
            .map(|r| r.to_string())
            .collect();
        let config = LoraConfig {
            rank: v["r"].as_i64().unwrap_or(0),
            alpha: v["lora_alpha"].as_f64().unwrap_or(0.0),
            dropout: v["lora_dropout"].as_f64().unwrap_or(0.0),
            targets,
        };
        let mut lora = Lora::build(model, config, false)?;
        let stored = Tensor::read_safetensors(dir.join("adapter_model.safetensors"))?;
        let stored: BTreeMap<String, Tensor> = stored.into_iter().collect();
        tch::no_grad(|| -> Result<()> {
            for ((layer, role), (a, b)) in lora.pairs.iter_mut() {
                let m = module(arch, *layer, role).expect("validated role");
                for (name, t) in [("lora_A", a), ("lora_B", b)] {
                    let key = format!("base_model.model.{m}.{name}.weight");
                    let src = stored.get(&key).ok_or_else(|| {
                        Error::InvalidInput(format!("adapter_model.safetensors has no {key}"))
                    })?;
                    if src.size() != t.size() {
                        return Err(Error::InvalidInput(format!(
                            "{key} is {:?}; this base model needs {:?}",
                            src.size(),
                            t.size()
                        )));
                    }
                    t.copy_(&src.to_kind(Kind::Float));
                }
            }
            Ok(())
        })?;
        Ok(lora)
    }
}

fn projection<'a>(block: &'a crate::model::Block, role: &str) -> &'a Linear {
    block
        .attn
        .get(role)
        .or_else(|| block.mlp.get(role))
        .expect("validated role")
}
