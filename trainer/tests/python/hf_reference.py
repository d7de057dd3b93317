"""Writes a tiny random Hugging Face checkpoint and its logits, for the trainer's interop tests.

usage: hf_reference.py ARCH OUT_DIR [DTYPE MAX_SHARD_SIZE]
ARCH: gpt2 | llama | qwen2 | gpt2-scaled (gpt2 with token embeddings 20x larger: at the usual
0.02 scale a tied output layer cannot spread the logits enough for confident predictions, so
no adapter could fit the training tests' data well). OUT_DIR gets config.json and model.safetensors (save_pretrained)
and reference.safetensors with `ids` (int64 [2, 12]) and `logits` (float32 [2, 12, vocab]).
With DTYPE (float32, bfloat16, float16) the weights are stored, and the logits computed, in
that precision, and save_pretrained shards the weights at MAX_SHARD_SIZE (e.g. 20KB).
"""
import sys

import torch
from safetensors.torch import save_file
import transformers as tf

arch, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
if arch in ("gpt2", "gpt2-scaled"):
    cfg = tf.GPT2Config(vocab_size=97, n_positions=32, n_embd=48, n_layer=2, n_head=4,
                        bos_token_id=0, eos_token_id=0)
    model = tf.GPT2LMHeadModel(cfg)
elif arch == "llama":
    cfg = tf.LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                         rope_theta=10000.0, tie_word_embeddings=False)
    model = tf.LlamaForCausalLM(cfg)
elif arch == "qwen2":
    cfg = tf.Qwen2Config(vocab_size=97, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                         rope_theta=1000000.0, tie_word_embeddings=True)
    model = tf.Qwen2ForCausalLM(cfg)
else:
    sys.exit(f"unknown arch {arch}")
# Random init leaves norms at 1 and biases at 0; perturb everything so no weight goes untested.
with torch.no_grad():
    for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.02)
    if arch == "gpt2-scaled":
        model.transformer.wte.weight.mul_(20.0)
model.eval()
shard = {}
if len(sys.argv) > 4:
    model = model.to({"float32": torch.float32, "bfloat16": torch.bfloat16,
                      "float16": torch.float16}[sys.argv[3]])
    shard = {"max_shard_size": sys.argv[4]}
model.save_pretrained(out, safe_serialization=True, **shard)
ids = torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    logits = model(input_ids=ids).logits.float()
save_file({"ids": ids.contiguous(), "logits": logits.contiguous()}, f"{out}/reference.safetensors")
