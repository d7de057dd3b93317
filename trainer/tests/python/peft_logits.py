"""Loads a base checkpoint and a LoRA adapter with PEFT and writes the adapted logits.

usage: peft_logits.py BASE_DIR ADAPTER_DIR OUT_FILE
Logits are computed on BASE_DIR/reference.safetensors's `ids` and written to OUT_FILE as
`logits` (float32).
"""
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

base_dir, adapter_dir, out = sys.argv[1:4]
base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
model = PeftModel.from_pretrained(base, adapter_dir)
model.eval()
ids = load_file(f"{base_dir}/reference.safetensors")["ids"]
with torch.no_grad():
    logits = model(input_ids=ids).logits.float()
save_file({"logits": logits.contiguous()}, out)
