"""The reference side of the GPU check (`scripts/gpu-check.sh`): checkpoints at published
shapes with random weights, transformers' logits for them, and LoRA training steps with
PyTorch + PEFT under the settings the Rust side uses.

usage: gpu_reference.py init SHAPE OUT_DIR DTYPE MAX_SHARD_SIZE [LAYERS]
           SHAPE: qwen2.5-0.5b | tinyllama-1.1b | gpt2-large (published configs; random
           weights, seed 0), saved sharded by save_pretrained in DTYPE (float32, bfloat16,
           float16); LAYERS keeps only the first blocks (the CPU rehearsal)
       gpu_reference.py prepare ROOT DEVICE [LAYERS]
           init and logits for the check's five checkpoints, in one process: ROOT/NAME for
           qwen2.5-0.5b in float32, bfloat16 and float16, tinyllama-1.1b in bfloat16 and
           gpt2-large in float32 (each sharded at 300MB)
       gpu_reference.py logits DIR DEVICE
           writes DIR/reference.safetensors: `ids` int64 [2, 64] and transformers' `logits`
           (computed in the stored dtype on DEVICE, then float32)
       gpu_reference.py train DIR DEVICE BATCH SEQ WARMUP STEPS RANK CHECKPOINTING
           LoRA (rank RANK, alpha 2·RANK, q k v o gate up down) over the bf16 base, adapters
           and AdamW state in float32, forward under torch.autocast(bfloat16) as PEFT
           recommends; prints one JSON line: tokens_per_second, seconds_per_step,
           peak_allocated_mib, loss
"""
import json
import sys
import time

import torch
import transformers as tf

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def shape_config(name, layers):
    if name == "qwen2.5-0.5b":
        # Qwen/Qwen2.5-0.5B config.json
        cfg = tf.Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                             num_hidden_layers=layers or 24, num_attention_heads=14,
                             num_key_value_heads=2,
                             max_position_embeddings=32768, rope_theta=1000000.0,
                             rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False)
    elif name == "tinyllama-1.1b":
        # TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T config.json
        cfg = tf.LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                             num_hidden_layers=layers or 22, num_attention_heads=32,
                             num_key_value_heads=4,
                             max_position_embeddings=2048, rope_theta=10000.0, rms_norm_eps=1e-5,
                             tie_word_embeddings=False)
    elif name == "gpt2-large":
        # openai-community/gpt2-large config.json (dropout off: a forward pass is compared)
        cfg = tf.GPT2Config(n_embd=1280, n_layer=layers or 36, n_head=20, vocab_size=50257,
                            n_positions=1024,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    else:
        sys.exit(f"unknown shape {name}")
    return cfg


def init(name, out, dtype, shard, layers):
    torch.manual_seed(0)
    cfg = shape_config(name, layers)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = tf.AutoModelForCausalLM.from_config(cfg, dtype=DTYPES[dtype])
        # Initialisation leaves norms at 1 and biases at 0: perturb every weight.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(out, max_shard_size=shard)


def logits(folder, device):
    from safetensors.torch import save_file
    model = tf.AutoModelForCausalLM.from_pretrained(folder, dtype="auto").to(device).eval()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (2, 64), generator=gen)
    with torch.no_grad():
        out = model(input_ids=ids.to(device)).logits.float().cpu()
    save_file({"ids": ids.contiguous(), "logits": out.contiguous()},
              f"{folder}/reference.safetensors")
    print(json.dumps({"dir": folder, "dtype": str(model.dtype)}))


def train(folder, device, batch, seq, warmup, steps, rank, checkpointing):
    from peft import LoraConfig, get_peft_model
    model = tf.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).to(device)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(
        r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"]))
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in params), "PEFT keeps adapters in float32"
    model.train()
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq + 1), generator=gen).to(device)

    def step():
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16):
            out = model(input_ids=ids[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(out.float().reshape(-1, out.shape[-1]),
                                                 ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    print(json.dumps({
        "side": "pytorch+peft",
        "gradient_checkpointing": checkpointing,
        "tokens_per_second": batch * seq * steps / elapsed,
        "seconds_per_step": elapsed / steps,
        "peak_allocated_mib": peak,
        "loss": loss.item(),
    }))


CHECKPOINTS = [("qwen2.5-0.5b", "bfloat16"), ("qwen2.5-0.5b", "float16"),
               ("qwen2.5-0.5b", "float32"), ("tinyllama-1.1b", "bfloat16"),
               ("gpt2-large", "float32")]


def prepare(root, device, layers):
    for shape, dtype in CHECKPOINTS:
        folder = f"{root}/{shape}-{dtype}"
        start = time.perf_counter()
        init(shape, folder, dtype, "300MB", layers)
        logits(folder, device)
        print(json.dumps({"prepared": folder, "seconds": time.perf_counter() - start}),
              flush=True)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "prepare":
        prepare(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    elif cmd == "init":
        init(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5],
             int(sys.argv[6]) if len(sys.argv) > 6 else 0)
    elif cmd == "logits":
        logits(sys.argv[2], sys.argv[3])
    elif cmd == "train":
        folder, device = sys.argv[2], sys.argv[3]
        b, s, w, n, r, c = map(int, sys.argv[4:10])
        train(folder, device, b, s, w, n, r, bool(c))
    else:
        sys.exit(f"unknown command {cmd}")
