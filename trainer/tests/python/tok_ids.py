"""Prints the token ids Hugging Face `tokenizers` gives each line of stdin, as JSON lists.

usage: tok_ids.py TOKENIZER_JSON < lines
"""
import json
import sys

from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
for line in sys.stdin.read().split("\n"):
    print(json.dumps(tok.encode(line, add_special_tokens=False).ids))
