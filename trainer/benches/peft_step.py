"""The reference side of `cargo bench -p tributary-trainer --bench lora_step`: LoRA training
steps with PyTorch + PEFT on the same GPT-2-small-shaped checkpoint and the same batch.

usage: peft_step.py init OUT_DIR
           writes a random-init GPT-2 small (124M, dropout off) with save_pretrained, seed 0
       peft_step.py run MODEL_DIR BATCH SEQ WARMUP STEPS THREADS RANK
           prints one JSON line: tokens_per_second, seconds_per_step, peak_rss_mib
"""
import json
import resource
import sys
import time

import torch
import transformers as tf

if sys.argv[1] == "init":
    torch.manual_seed(0)
    cfg = tf.GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    tf.GPT2LMHeadModel(cfg).save_pretrained(sys.argv[2])
    sys.exit(0)

from peft import LoraConfig, get_peft_model

folder = sys.argv[2]
batch, seq, warmup, steps, threads, rank = map(int, sys.argv[3:9])
torch.set_num_threads(threads)
model = tf.GPT2LMHeadModel.from_pretrained(folder, torch_dtype=torch.float32)
model = get_peft_model(
    model,
    LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, fan_in_fan_out=True,
               target_modules=["attn.c_attn", "attn.c_proj"]),
)
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                        weight_decay=0.0)
gen = torch.Generator().manual_seed(1)
ids = torch.randint(0, model.config.vocab_size, (batch, seq + 1), generator=gen)


def step():
    logits = model(input_ids=ids[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             ids[:, 1:].reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step()
    opt.zero_grad()


for _ in range(warmup):
    step()
start = time.perf_counter()
for _ in range(steps):
    step()
elapsed = time.perf_counter() - start
print(json.dumps({
    "tokens_per_second": batch * seq * steps / elapsed,
    "seconds_per_step": elapsed / steps,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
