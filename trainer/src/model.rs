//! One decoder-only transformer family in tch: GPT-2 blocks (LayerNorm, learned positions,
//! fused qkv, GELU) and Llama/Qwen-style blocks (RMSNorm, RoPE, SwiGLU, grouped-query
//! attention, optional qkv bias), sized by a [`Config`] read from a Hugging Face
//! `config.json`, with weights from a Hugging Face `model.safetensors` or a sharded
//! checkpoint (`model.safetensors.index.json` naming the shards).
//!
//! Weights keep the floating-point type they are stored in (float32, bfloat16 or float16) or
//! take the one a [`Precision`] asks for; the residual stream runs in that type, norms
//! compute in float32 (as Hugging Face does), and callers upcast logits for a loss.
//!
//! The forward pass is written out as tensor operations over plain weight tensors, so which
//! weights train (LoRA) and which stay frozen (the base) is decided by whoever holds them, not
//! by module types. Every projection is a [`Linear`] in PyTorch's `[out, in]` layout; GPT-2's
//! `Conv1D` weights (`[in, out]`) are transposed on load.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;
use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// The block family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// GPT-2: LayerNorm, learned positions, fused qkv with bias, GELU (tanh) MLP.
    Gpt2,
    /// Llama, SmolLM, Qwen2: RMSNorm, RoPE, SwiGLU MLP, grouped-query attention.
    Llama,
}

/// A model's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Block family.
    pub arch: Arch,
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Width of the residual stream.
    pub hidden: i64,
    /// Number of blocks.
    pub layers: i64,
    /// Query heads.
    pub heads: i64,
    /// Key/value heads (`heads` without grouped-query attention).
    pub kv_heads: i64,
    /// Width of the MLP.
    pub intermediate: i64,
    /// Longest sequence.
    pub max_positions: i64,
    /// Epsilon of the norms.
    pub norm_eps: f64,
    /// RoPE base (Llama).
    pub rope_theta: f64,
    /// The output projection is the token embedding.
    pub tie_embeddings: bool,
    /// q, k and v projections have biases (Qwen2; GPT-2 always has them).
    pub qkv_bias: bool,
}

impl Config {
    /// Width of one head.
    pub fn head_dim(&self) -> i64 {
        self.hidden / self.heads
    }

    /// Reads a Hugging Face `config.json` (`model_type` gpt2, llama, qwen2 or mistral).
    pub fn from_hf(v: &Value) -> Result<Self> {
        let model_type = v["model_type"].as_str().unwrap_or_default();
        let int = |k: &str| -> Result<i64> {
            v[k].as_i64().ok_or_else(|| {
                Error::InvalidInput(format!(
                    "config.json has no integer {k:?} (model_type {model_type:?})"
                ))
            })
        };
        let float = |k: &str, default: f64| v[k].as_f64().unwrap_or(default);
        let cfg = match model_type {
            "gpt2" => Config {
                arch: Arch::Gpt2,
                vocab_size: int("vocab_size")?,
                hidden: int("n_embd")?,
                layers: int("n_layer")?,
                heads: int("n_head")?,
                kv_heads: int("n_head")?,
                intermediate: v["n_inner"].as_i64().unwrap_or(4 * int("n_embd")?),
                max_positions: int("n_positions")?,
                norm_eps: float("layer_norm_epsilon", 1e-5),
                rope_theta: 0.0,
                tie_embeddings: v["tie_word_embeddings"].as_bool().unwrap_or(true),
                qkv_bias: true,
            },
            "llama" | "qwen2" | "mistral" => Config {
                arch: Arch::Llama,
                vocab_size: int("vocab_size")?,
                hidden: int("hidden_size")?,
                layers: int("num_hidden_layers")?,
                heads: int("num_attention_heads")?,
                kv_heads: v["num_key_value_heads"]
                    .as_i64()
                    .unwrap_or(int("num_attention_heads")?),
                intermediate: int("intermediate_size")?,
                max_positions: int("max_position_embeddings")?,
                norm_eps: float("rms_norm_eps", 1e-6),
                rope_theta: float(
                    "rope_theta",
                    v["rope_parameters"]["rope_theta"]
                        .as_f64()
                        .unwrap_or(10_000.0),
                ),
                tie_embeddings: v["tie_word_embeddings"].as_bool().unwrap_or(false),
                qkv_bias: model_type == "qwen2" || v["attention_bias"].as_bool().unwrap_or(false),
            },
            other => {
                return Err(Error::InvalidInput(format!(
                    "config.json model_type {other:?} is not supported: use a gpt2, llama, qwen2 or mistral checkpoint"
                )));
            }
        };
        if v["head_dim"]
            .as_i64()
            .is_some_and(|d| d != cfg.hidden / cfg.heads)
        {
            return Err(Error::InvalidInput(
                "config.json head_dim differs from hidden_size / num_attention_heads: not supported".into(),
            ));
        }
        if cfg.hidden % cfg.heads != 0 || cfg.heads % cfg.kv_heads != 0 {
            return Err(Error::InvalidInput(format!(
                "config.json: {} heads do not divide width {} or are not a multiple of {} key/value heads",
                cfg.heads, cfg.hidden, cfg.kv_heads
            )));
        }
        Ok(cfg)
    }
}

/// The floating-point type of a model's weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// As stored on CUDA; float32 on the CPU (where bfloat16 and float16 arithmetic is slow).
    #[default]
    Auto,
    /// As stored in the checkpoint, on any device.
    Stored,
    /// float32.
    Float32,
    /// bfloat16.
    Bfloat16,
    /// float16.
    Float16,
}

impl Precision {
    /// The names `--dtype` and `precision = …` accept.
    pub const NAMES: &'static str = "auto, stored, float32, bfloat16 or float16";

    /// The tch kind for weights stored as `stored`, on `device`.
    pub fn kind(self, stored: Kind, device: Device) -> Kind {
        match self {
            Precision::Auto if device.is_cuda() => stored,
            Precision::Auto => Kind::Float,
            Precision::Stored => stored,
            Precision::Float32 => Kind::Float,
            Precision::Bfloat16 => Kind::BFloat16,
            Precision::Float16 => Kind::Half,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => Precision::Auto,
            "stored" => Precision::Stored,
            "float32" | "fp32" => Precision::Float32,
            "bfloat16" | "bf16" => Precision::Bfloat16,
            "float16" | "fp16" => Precision::Float16,
            other => {
                return Err(Error::InvalidInput(format!(
                    "unknown precision {other:?}: use {}",
                    Precision::NAMES
                )));
            }
        })
    }
}

/// `x W^T + b` with `W` as `[out, in]`.
#[derive(Debug)]
pub struct Linear {
    /// Weight, `[out, in]`.
    pub weight: Tensor,
    /// Bias, `[out]`.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Applies the projection.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// A norm: LayerNorm (with bias) or RMSNorm (without).
#[derive(Debug)]
struct Norm {
    weight: Tensor,
    bias: Option<Tensor>,
    eps: f64,
}

impl Norm {
    fn forward(&self, x: &Tensor) -> Tensor {
        match &self.bias {
            Some(b) => x.layer_norm(
                [self.weight.size()[0]],
                Some(&self.weight),
                Some(b),
                self.eps,
                false,
            ),
            None => {
                // As Hugging Face's LlamaRMSNorm: in float32, then back.
                let kind = x.kind();
                let h = x.to_kind(Kind::Float);
                let var = h.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
                let h = h * (var + self.eps).rsqrt();
                &self.weight * h.to_kind(kind)
            }
        }
    }
}

/// The projections of one block, by role.
#[derive(Debug)]
pub struct Block {
    ln1: Norm,
    ln2: Norm,
    /// Attention projections: `q`, `k`, `v`, `o` (GPT-2: `qkv` fused, `o`).
    pub attn: BTreeMap<&'static str, Linear>,
    /// MLP projections: `gate`, `up`, `down` (GPT-2: `up`, `down`).
    pub mlp: BTreeMap<&'static str, Linear>,
}

/// A loaded model.
#[derive(Debug)]
pub struct Model {
    /// Its shape.
    pub config: Config,
    wte: Tensor,
    wpe: Option<Tensor>,
    /// The blocks.
    pub blocks: Vec<Block>,
    ln_f: Norm,
    lm_head: Option<Tensor>,
    device: Device,
    kind: Kind,
}

/// What [`Model::embed`] hands to each block: the residual stream and the RoPE tables.
pub struct Embedded {
    /// The residual stream, `[batch, seq, hidden]`.
    pub h: Tensor,
    rope: Option<(Tensor, Tensor)>,
}

/// Weights by name, taken out as the model is built so leftovers can be reported.
struct Weights {
    map: HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Weights {
    fn take(&mut self, name: &str) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        self.map
            .remove(&full)
            .or_else(|| self.map.remove(name))
            .ok_or_else(|| Error::InvalidInput(format!("model.safetensors has no tensor {full:?}")))
    }

    fn take_opt(&mut self, name: &str) -> Option<Tensor> {
        self.take(name).ok()
    }
}

impl Model {
    /// Loads a Hugging Face–layout checkpoint folder (`config.json`, and `model.safetensors`
    /// or the shards a `model.safetensors.index.json` names) onto `device`, in the precision
    /// [`Precision::Auto`] picks (as stored on CUDA, float32 on the CPU).
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        Self::load_as(dir, device, Precision::Auto)
    }

    /// [`Model::load`] in a chosen precision.
    pub fn load_as(dir: &Path, device: Device, precision: Precision) -> Result<Self> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| {
            Error::InvalidInput(format!(
                "{}: {e}: point at a folder with config.json and model.safetensors",
                config_path.display()
            ))
        })?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", config_path.display())))?;
        let config = Config::from_hf(&v)?;
        let files = shards(dir)?;
        let stored = stored_kind(&files)?.unwrap_or(Kind::Float);
        let kind = precision.kind(stored, device);
        let mut map = HashMap::new();
        for shard in &files {
            // One shard at a time: host memory peaks at one shard, not the whole model.
            for (name, t) in Tensor::read_safetensors(shard)? {
                if !t.is_floating_point() {
                    return Err(Error::InvalidInput(format!(
                        "{}: tensor {name:?} is {:?}, not floating point: quantized checkpoints are not supported",
                        shard.display(),
                        t.kind()
                    )));
                }
                map.insert(name, t.to_device(device).to_kind(kind));
            }
        }
        Self::from_weights(config, map, device)
    }

    /// Builds the model from weights named as in Hugging Face checkpoints.
    pub fn from_weights(
        config: Config,
        map: HashMap<String, Tensor>,
        device: Device,
    ) -> Result<Self> {
        let prefix = match config.arch {
            Arch::Gpt2 => "transformer.",
            Arch::Llama => "model.",
        };
        let mut w = Weights { map, prefix };
        let norm = |w: &mut Weights, name: &str, bias: bool| -> Result<Norm> {
            Ok(Norm {
                weight: w.take(&format!("{name}.weight"))?,
                bias: if bias {
                    Some(w.take(&format!("{name}.bias"))?)
                } else {
                    None
                },
                eps: config.norm_eps,
            })
        };
        let linear = |w: &mut Weights, name: &str, bias: bool, conv1d: bool| -> Result<Linear> {
            let weight = w.take(&format!("{name}.weight"))?;
            Ok(Linear {
                weight: if conv1d {
                    weight.transpose(0, 1).contiguous()
                } else {
                    weight
                },
                bias: if bias {
                    Some(w.take(&format!("{name}.bias"))?)
                } else {
                    None
                },
            })
        };
        let mut blocks = Vec::with_capacity(config.layers as usize);
        let (wte, wpe, ln_f) = match config.arch {
            Arch::Gpt2 => {
                for i in 0..config.layers {
                    let p = format!("h.{i}");
                    blocks.push(Block {
                        ln1: norm(&mut w, &format!("{p}.ln_1"), true)?,
                        ln2: norm(&mut w, &format!("{p}.ln_2"), true)?,
                        attn: BTreeMap::from([
                            (
                                "qkv",
                                linear(&mut w, &format!("{p}.attn.c_attn"), true, true)?,
                            ),
                            (
                                "o",
                                linear(&mut w, &format!("{p}.attn.c_proj"), true, true)?,
                            ),
                        ]),
                        mlp: BTreeMap::from([
                            ("up", linear(&mut w, &format!("{p}.mlp.c_fc"), true, true)?),
                            (
                                "down",
                                linear(&mut w, &format!("{p}.mlp.c_proj"), true, true)?,
                            ),
                        ]),
                    });
                }
                (
                    w.take("wte.weight")?,
                    Some(w.take("wpe.weight")?),
                    norm(&mut w, "ln_f", true)?,
                )
            }
            Arch::Llama => {
                for i in 0..config.layers {
                    let p = format!("layers.{i}");
                    let qkv = config.qkv_bias;
                    blocks.push(Block {
                        ln1: norm(&mut w, &format!("{p}.input_layernorm"), false)?,
                        ln2: norm(&mut w, &format!("{p}.post_attention_layernorm"), false)?,
                        attn: BTreeMap::from([
                            (
                                "q",
                                linear(&mut w, &format!("{p}.self_attn.q_proj"), qkv, false)?,
                            ),
                            (
                                "k",
                                linear(&mut w, &format!("{p}.self_attn.k_proj"), qkv, false)?,
                            ),
                            (
                                "v",
                                linear(&mut w, &format!("{p}.self_attn.v_proj"), qkv, false)?,
                            ),
                            (
                                "o",
                                linear(&mut w, &format!("{p}.self_attn.o_proj"), false, false)?,
                            ),
                        ]),
                        mlp: BTreeMap::from([
                            (
                                "gate",
                                linear(&mut w, &format!("{p}.mlp.gate_proj"), false, false)?,
                            ),
                            (
                                "up",
                                linear(&mut w, &format!("{p}.mlp.up_proj"), false, false)?,
                            ),
                            (
                                "down",
                                linear(&mut w, &format!("{p}.mlp.down_proj"), false, false)?,
                            ),
                        ]),
                    });
                }
                (
                    w.take("embed_tokens.weight")?,
                    None,
                    norm(&mut w, "norm", false)?,
                )
            }
        };
        // The output projection sits outside the prefix; tied checkpoints may still carry it.
        w.prefix = "";
        let lm_head = w.take_opt("lm_head.weight");
        let lm_head = if config.tie_embeddings {
            None
        } else {
            Some(lm_head.ok_or_else(|| {
                Error::InvalidInput("model.safetensors has no lm_head.weight and the config does not tie embeddings".into())
            })?)
        };
        let kind = wte.kind();
        if wte.size() != [config.vocab_size, config.hidden] {
            return Err(Error::InvalidInput(format!(
                "token embedding is {:?}; the config says [{}, {}]",
                wte.size(),
                config.vocab_size,
                config.hidden
            )));
        }
        Ok(Self {
            config,
            wte,
            wpe,
            blocks,
            ln_f,
            lm_head,
            device,
            kind,
        })
    }

    /// The device the weights are on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The floating-point type of the weights and activations.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Every base weight, in a fixed order (for freezing and hashing).
    pub fn parameters(&self) -> Vec<&Tensor> {
        let mut out = vec![&self.wte];
        out.extend(self.wpe.iter());
        for b in &self.blocks {
            for n in [&b.ln1, &b.ln2] {
                out.push(&n.weight);
                out.extend(n.bias.iter());
            }
            for l in b.attn.values().chain(b.mlp.values()) {
                out.push(&l.weight);
                out.extend(l.bias.iter());
            }
        }
        out.push(&self.ln_f.weight);
        out.extend(self.ln_f.bias.iter());
        out.extend(self.lm_head.iter());
        out
    }

    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]` (int64), causal, in the
    /// model's precision. `project(layer, role, x)` computes each projection;
    /// [`Model::logits`] uses the plain weights, LoRA adds its update there.
    pub fn forward_with(
        &self,
        ids: &Tensor,
        project: &dyn Fn(usize, &str, &Linear, &Tensor) -> Tensor,
    ) -> Result<Tensor> {
        let e = self.embed(ids)?;
        let mut h = e.h.shallow_clone();
        for i in 0..self.blocks.len() {
            h = self.block(i, &h, &e, project);
        }
        Ok(self.head(&h))
    }

    /// The token (and GPT-2's position) embeddings of `ids` `[batch, seq]`, with the RoPE
    /// tables the blocks use: the first part of [`Model::forward_with`], for callers that run
    /// the blocks one at a time (gradient checkpointing).
    #[allow(clippy::assign_op_pattern)]
    pub fn embed(&self, ids: &Tensor) -> Result<Embedded> {
        let (_, t) = ids.size2()?;
        if t > self.config.max_positions {
            return Err(Error::InvalidInput(format!(
                "sequence of {t} tokens is longer than the model's {} positions",
                self.config.max_positions
            )));
        }
        let positions = Tensor::arange(t, (Kind::Int64, self.device));
        let mut h = Tensor::embedding(&self.wte, ids, -1, false, false);
        if let Some(wpe) = &self.wpe {
            h = h + Tensor::embedding(wpe, &positions, -1, false, false).unsqueeze(0);
        }
        let rope =
            (self.config.arch == Arch::Llama).then(|| rope(&self.config, &positions, self.kind));
        Ok(Embedded { h, rope })
    }

    /// Block `i` applied to the residual stream `h` (causal, no cache).
    pub fn block(
        &self,
        i: usize,
        h: &Tensor,
        e: &Embedded,
        project: &dyn Fn(usize, &str, &Linear, &Tensor) -> Tensor,
    ) -> Tensor {
        let cfg = &self.config;
        let (b, t) = (h.size()[0], h.size()[1]);
        let x = self.blocks[i].ln1.forward(h);
        let (q, k, v) = self.qkv(i, &x, e.rope.as_ref(), project);
        let a = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            true,
            None,
            cfg.kv_heads != cfg.heads,
        );
        let a = a.transpose(1, 2).contiguous().view([b, t, cfg.hidden]);
        self.finish(i, h, &a, project)
    }

    /// Block `i`'s queries, keys and values for its normed input `x` `[batch, seq, hidden]`,
    /// as heads `[batch, heads, seq, head_dim]`, with RoPE applied when `rope` is given.
    fn qkv(
        &self,
        i: usize,
        x: &Tensor,
        rope: Option<&(Tensor, Tensor)>,
        project: &dyn Fn(usize, &str, &Linear, &Tensor) -> Tensor,
    ) -> (Tensor, Tensor, Tensor) {
        let cfg = &self.config;
        let block = &self.blocks[i];
        let (b, t) = (x.size()[0], x.size()[1]);
        let p = |role: &str, x: &Tensor| project(i, role, &block.attn[role], x);
        let (q, k, v) = match cfg.arch {
            Arch::Gpt2 => {
                let qkv = p("qkv", x).split(cfg.hidden, -1);
                (
                    qkv[0].shallow_clone(),
                    qkv[1].shallow_clone(),
                    qkv[2].shallow_clone(),
                )
            }
            Arch::Llama => (p("q", x), p("k", x), p("v", x)),
        };
        let hd = cfg.head_dim();
        let heads = |t_: Tensor, n: i64| t_.reshape([b, t, n, hd]).transpose(1, 2);
        let (q, k, v) = (
            heads(q, cfg.heads),
            heads(k, cfg.kv_heads),
            heads(v, cfg.kv_heads),
        );
        match rope {
            Some((cos, sin)) => (apply_rope(&q, cos, sin), apply_rope(&k, cos, sin), v),
            None => (q, k, v),
        }
    }

    /// The rest of block `i` once attention gave `a` `[batch, seq, hidden]`: the output
    /// projection into the residual stream `h`, then the MLP.
    // `h + x`, never `+=`: autograd may have saved `h` for the backward pass.
    fn finish(
        &self,
        i: usize,
        h: &Tensor,
        a: &Tensor,
        project: &dyn Fn(usize, &str, &Linear, &Tensor) -> Tensor,
    ) -> Tensor {
        let block = &self.blocks[i];
        let h = h + project(i, "o", &block.attn["o"], a);
        let x = block.ln2.forward(&h);
        let m = |role: &str, x: &Tensor| project(i, role, &block.mlp[role], x);
        let y = match self.config.arch {
            Arch::Gpt2 => m("down", &m("up", &x).gelu("tanh")),
            Arch::Llama => m("down", &(m("gate", &x).silu() * m("up", &x))),
        };
        h + y
    }

    /// The final norm and the output projection: logits in the model's precision.
    pub fn head(&self, h: &Tensor) -> Tensor {
        let h = self.ln_f.forward(h);
        h.linear(self.lm_head.as_ref().unwrap_or(&self.wte), None::<Tensor>)
    }

    /// Logits of the base model.
    pub fn logits(&self, ids: &Tensor) -> Result<Tensor> {
        self.forward_with(ids, &|_, _, l, x| l.forward(x))
    }

    /// Logits `[batch, seq, vocab]` for `seq` new tokens of each row, with the keys and
    /// values of earlier tokens taken from `cache` and this step's written into it. Row `b`
    /// lives in cache slot `slots[b]` and its new tokens sit at positions `start[b]..`, so
    /// rows of different lengths decode together (prompts' prefill: rows with `start = 0`).
    /// `project` computes each projection as in [`Model::forward_with`].
    pub fn forward_cached(
        &self,
        ids: &Tensor,
        slots: &[i64],
        start: &[i64],
        cache: &mut KvCache,
        project: &dyn Fn(usize, &str, &Linear, &Tensor) -> Tensor,
    ) -> Result<Tensor> {
        Ok(self.head(&self.hidden_cached(ids, slots, start, cache, project)?))
    }

    /// [`Model::forward_cached`] without the final norm and output projection: the last
    /// block's hidden states `[batch, seq, hidden]` (for [`Model::head`] over the positions
    /// wanted).
    #[allow(clippy::assign_op_pattern)]
    pub fn hidden_cached(
        &self,
        ids: &Tensor,
        slots: &[i64],
        start: &[i64],
        cache: &mut KvCache,
        project: &dyn Fn(usize, &str, &Linear, &Tensor) -> Tensor,
    ) -> Result<Tensor> {
        let (b, t) = ids.size2()?;
        let cfg = &self.config;
        let end = start.iter().map(|s| s + t).max().unwrap_or(0);
        if end > cfg.max_positions {
            return Err(Error::InvalidInput(format!(
                "sequence of {end} tokens is longer than the model's {} positions",
                cfg.max_positions
            )));
        }
        let dev = self.device;
        let offsets = Tensor::arange(t, (Kind::Int64, dev));
        let positions =
            Tensor::from_slice(start).to_device(dev).unsqueeze(1) + offsets.unsqueeze(0);
        let slot_ids = Tensor::from_slice(slots).to_device(dev);
        let slot_bt = slot_ids.unsqueeze(1).expand([b, t], false);
        // Row b's token i sees cached positions 0..=start[b]+i.
        let keys = Tensor::arange(end, (Kind::Int64, dev));
        let mask = keys
            .view([1, 1, end])
            .le_tensor(&positions.unsqueeze(-1))
            .unsqueeze(1);
        let mut h = Tensor::embedding(&self.wte, ids, -1, false, false);
        if let Some(wpe) = &self.wpe {
            h = h + Tensor::embedding(wpe, &positions, -1, false, false);
        }
        let rope = (cfg.arch == Arch::Llama).then(|| {
            let (cos, sin) = rope(cfg, &positions.flatten(0, -1), self.kind);
            let d = cfg.head_dim();
            (cos.view([b, 1, t, d]), sin.view([b, 1, t, d]))
        });
        let (nh, nkv) = (cfg.heads, cfg.kv_heads);
        for (i, block) in self.blocks.iter().enumerate() {
            let x = block.ln1.forward(&h);
            let (q, k, v) = self.qkv(i, &x, rope.as_ref(), project);
            // The cache is [slot, position, kv head, head dim]: write this step's rows.
            let idx = [
                Some(slot_bt.shallow_clone()),
                Some(positions.shallow_clone()),
            ];
            let _ = cache.k[i].index_put_(&idx, &k.transpose(1, 2), false);
            let _ = cache.v[i].index_put_(&idx, &v.transpose(1, 2), false);
            let gather = |c: &Tensor| {
                c.narrow(1, 0, end)
                    .index_select(0, &slot_ids)
                    .transpose(1, 2)
            };
            let (k, v) = (gather(&cache.k[i]), gather(&cache.v[i]));
            // Repeated here rather than through SDPA's grouped-query flag: with a mask, the
            // kernels that take the flag are the slow ones.
            let (k, v) = if nkv != nh {
                let rep = nh / nkv;
                (
                    k.repeat_interleave_self_int(rep, 1, None),
                    v.repeat_interleave_self_int(rep, 1, None),
                )
            } else {
                (k, v)
            };
            let a = Tensor::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                Some(&mask),
                0.0,
                false,
                None,
                false,
            );
            let a = a.transpose(1, 2).contiguous().view([b, t, cfg.hidden]);
            h = self.finish(i, &h, &a, project);
        }
        Ok(h)
    }
}

/// Keys and values of earlier tokens for [`Model::forward_cached`]: per layer
/// `[slots, max_positions, kv_heads, head_dim]`, one slot per sequence being decoded.
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl KvCache {
    /// Room for `slots` sequences of `model`.
    pub fn new(model: &Model, slots: i64) -> Self {
        let c = &model.config;
        let shape = [slots, c.max_positions, c.kv_heads, c.head_dim()];
        let zeros = || {
            (0..c.layers)
                .map(|_| Tensor::zeros(shape, (model.kind, model.device)))
                .collect()
        };
        KvCache {
            k: zeros(),
            v: zeros(),
        }
    }
}

/// RoPE tables for `positions`: `(cos, sin)`, each `[seq, head_dim]`, as Hugging Face's
/// Llama (the two halves of each head rotated together): computed in float32, then cast
/// to the activations' `kind`.
fn rope(cfg: &Config, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
    let d = cfg.head_dim();
    let device = positions.device();
    let exponent =
        Tensor::arange_start_step(0, d, 2, (Kind::Int64, device)).to_kind(Kind::Float) / d as f64;
    let base = Tensor::from(cfg.rope_theta as f32).to_device(device);
    let inv_freq = base.pow(&exponent).reciprocal();
    let freqs = positions.to_kind(Kind::Float).outer(&inv_freq);
    let emb = Tensor::cat(&[&freqs, &freqs], -1);
    (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
}

/// The weight files of the checkpoint in `dir`, by name: `model.safetensors`, or
/// `model.safetensors.index.json` followed by the shards it maps tensors to (each once,
/// sorted). Every file named exists.
pub fn weight_files(dir: &Path) -> Result<Vec<String>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec!["model.safetensors".into()]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = match std::fs::read_to_string(&index) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::InvalidInput(format!(
                "{} is missing (and so is {}): save the checkpoint with safetensors (save_pretrained does by default)",
                single.display(),
                index.display()
            )));
        }
        Err(e) => return Err(Error::Io(index.display().to_string(), e)),
    };
    let mut files = vec!["model.safetensors.index.json".to_string()];
    for file in shard_names(&text, &index.display().to_string())? {
        if !dir.join(&file).exists() {
            return Err(Error::InvalidInput(format!(
                "{} names shard {file}, which is missing: copy every shard",
                index.display()
            )));
        }
        files.push(file);
    }
    Ok(files)
}

/// The shard file names a `model.safetensors.index.json` (`text`, read from `origin`) maps
/// tensors to, each once, sorted; names must be plain file names beside the index.
pub fn shard_names(text: &str, origin: &str) -> Result<Vec<String>> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| Error::InvalidInput(format!("{origin}: {e}")))?;
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| Error::InvalidInput(format!("{origin} has no weight_map object")))?;
    let mut files: Vec<String> = Vec::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .filter(|f| !f.is_empty() && !f.contains('/') && !f.contains('\\') && *f != "..")
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{origin}: tensor {name:?} maps to {file}, not a file name beside the index"
                ))
            })?;
        if !files.iter().any(|f| f == file) {
            files.push(file.to_string());
        }
    }
    files.sort();
    Ok(files)
}

/// The files holding the tensors of the checkpoint in `dir`.
fn shards(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    Ok(weight_files(dir)?
        .into_iter()
        .filter(|f| f.ends_with(".safetensors"))
        .map(|f| dir.join(f))
        .collect())
}

/// The precision the checkpoint's weights are stored in: that of the token embedding (a
/// checkpoint may keep a few tensors, e.g. norms, in another), read from the safetensors
/// headers without loading any tensor.
fn stored_kind(files: &[std::path::PathBuf]) -> Result<Option<Kind>> {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for f in files {
        let header = safetensors_header(f)?;
        let Some(obj) = header.as_object() else {
            continue;
        };
        for (name, t) in obj {
            let Some(dtype) = t["dtype"].as_str() else {
                continue;
            };
            let kind = match dtype {
                "F32" => "F32",
                "BF16" => "BF16",
                "F16" => "F16",
                _ => continue,
            };
            if name.ends_with("embed_tokens.weight") || name.ends_with("wte.weight") {
                return Ok(Some(dtype_kind(kind)));
            }
            *counts.entry(kind).or_default() += 1;
        }
    }
    Ok(counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(k, _)| dtype_kind(k)))
}

fn dtype_kind(dtype: &str) -> Kind {
    match dtype {
        "BF16" => Kind::BFloat16,
        "F16" => Kind::Half,
        _ => Kind::Float,
    }
}

/// The JSON header of a safetensors file (its first 8 bytes give the header's length).
fn safetensors_header(path: &Path) -> Result<Value> {
    use std::io::Read;
    let io = |e| Error::Io(path.display().to_string(), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(Error::InvalidInput(format!(
            "{}: a {len}-byte safetensors header: not a safetensors file",
            path.display()
        )));
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).map_err(io)?;
    serde_json::from_slice(&buf)
        .map_err(|e| Error::InvalidInput(format!("{}: safetensors header: {e}", path.display())))
}

fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let half = x.size()[3] / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    let rotated = Tensor::cat(&[&(-x2), &x1], -1);
    x * cos + rotated * sin
}
