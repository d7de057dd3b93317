"""Loads a Tributary base model folder with transformers and its tokenizer.json, and writes
the ids and logits of a text, for the trainer's interop test.

usage: hf_load.py MODEL_DIR TEXT OUT_FILE
OUT_FILE gets `ids` (int64 [1, n]) and `logits` (float32 [1, n, vocab]) as safetensors.
"""
import sys

import torch
from safetensors.torch import save_file
import transformers as tf

folder, text, out = sys.argv[1], sys.argv[2], sys.argv[3]
tok = tf.PreTrainedTokenizerFast(tokenizer_file=f"{folder}/tokenizer.json")
model = tf.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
ids = torch.tensor([tok(text)["input_ids"]], dtype=torch.int64)
with torch.no_grad():
    logits = model(ids).logits.float().contiguous()
save_file({"ids": ids, "logits": logits}, out)
