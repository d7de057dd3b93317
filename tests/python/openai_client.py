"""The official OpenAI client against `tributary serve`: completions, chat and streaming,
reading Tributary's `ancestry`, `attribution` and `inference` fields from the responses.
Prints one JSON object for the Rust test to check."""

import json
import sys

import openai
from openai import OpenAI

base, model, token = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=base + "/v1", api_key=token, max_retries=0, timeout=120)
PROMPT = "question: How many grams is 1 cup of butter?\nanswer:"
out = {"models": [m.id for m in client.models.list().data]}


def extras(obj):
    d = obj.model_dump()
    return {k: d.get(k) for k in ("ancestry", "attribution", "inference", "usage")}


r = client.completions.create(model=model, prompt=PROMPT, max_tokens=24, temperature=0, stop=["\n"])
out["completion"] = {"text": r.choices[0].text, "finish": r.choices[0].finish_reason, **extras(r)}

c = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "How many grams is 1 cup of butter?"}],
    max_tokens=24,
    temperature=0,
    stop=["\n"],
)
out["chat"] = {"text": c.choices[0].message.content, "finish": c.choices[0].finish_reason, **extras(c)}

text, last = "", None
for chunk in client.completions.create(
    model=model, prompt=PROMPT, max_tokens=24, temperature=0, stop=["\n"], stream=True
):
    text += chunk.choices[0].text
    last = chunk
out["stream"] = {"text": text, "finish": last.choices[0].finish_reason, **extras(last)}

text, last = "", None
for chunk in client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "How many grams is 1 cup of butter?"}],
    max_tokens=24,
    temperature=0,
    stop=["\n"],
    stream=True,
):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    last = chunk
out["chat_stream"] = {"text": text, **extras(last)}

cheap = client.completions.create(
    model=model, prompt=PROMPT, max_tokens=8, temperature=0, extra_body={"attribution": False}
)
out["cheap"] = extras(cheap)

try:
    client.completions.create(model="no-such-line@9.9.9", prompt=PROMPT, max_tokens=4)
    out["unknown"] = None
except openai.NotFoundError as e:
    out["unknown"] = str(e)

print(json.dumps(out))
