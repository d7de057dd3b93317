#!/usr/bin/env bash
# The GPU check (issue 24): Tributary's trainer and serving engine on CUDA, side by side with
# PyTorch + PEFT on the same GPU, in one run.
#
#   scripts/gpu-check.sh bundle [--demo]
#                                     here, with the toolchain: builds the two binaries the
#                                     check runs (the `gpu` bench and the trainer's test
#                                     binary, profile bench-fast), strips and compresses them
#                                     into .gpu/ (21 MB); --demo adds the `tributary` binary
#                                     and anvil (77 MB in all: over a 64 MiB transfer limit, carry
#                                     the demo pair alone there), for the whole demo on
#                                     the GPU
#   scripts/gpu-check.sh run [OUT]    on the GPU machine: needs only .gpu/, this repository's
#                                     files and a python3 with torch 2.11, transformers and
#                                     peft; no network. Results go to OUT (default .gpu/out):
#                                     results.jsonl (one JSON line per measurement), log.txt
#                                     and summary.md (the tables for BENCHMARKS.md)
#
# GPU_CHECK_DEVICE=cpu GPU_CHECK_LAYERS=2 rehearses `run` on a machine without a GPU (two
# blocks per checkpoint, short sequences), so the script is known to work before GPU time
# is spent on it. GPU_CHECK_STEPS picks steps (default "1 2 3 4 5 6"; steps 3 to 5 prepare
# the checkpoints of step 2 when an earlier call has not), so a run that would not fit one
# call's time limit can be split in two calls on the same warm machine.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
bundle=.gpu

if [ "$mode" = bundle ]; then
  set -e
  mkdir -p "$bundle"
  build() { # kind args...: the executable cargo built
    cargo "$@" --profile bench-fast -p tributary-trainer --no-run --message-format=json \
      | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable"): print(m["executable"])' | tail -1
  }
  gpu=$(build bench --bench gpu)
  it=$(build test --test it)
  pairs=("gpu:$gpu" "it:$it")
  if [ "${2:-}" = --demo ]; then
    cargo build --profile bench-fast --bin tributary
    pairs+=("tributary:target/bench-fast/tributary" "anvil:${TRIBUTARY_ANVIL:?run eval \"\$(scripts/setup.sh)\" first}")
  fi
  for pair in "${pairs[@]}"; do
    name=${pair%%:*}; exe=${pair#*:}
    strip -o "$bundle/$name" "$exe"
    xz -T2 -6 -f "$bundle/$name"
    ls -l "$bundle/$name.xz" >&2
  done
  exit 0
fi
[ "$mode" = run ] || { sed -n '2,23p' "$0"; exit 2; }

out=${2:-$bundle/out}
mkdir -p "$out"
results="$out/results.jsonl"; : > "$results"
log="$out/log.txt"; : > "$log"
device=${GPU_CHECK_DEVICE:-cuda}
layers=${GPU_CHECK_LAYERS:-0}
py=${TRIBUTARY_PYTHON:-python3}
steps=" ${GPU_CHECK_STEPS:-1 2 3 4 5 6} "
want() { [[ "$steps" == *" $1 "* ]]; }
say() { echo "== $*" | tee -a "$log" >&2; }
started=$(date +%s)

bin=/tmp/tributary-gpu-bin; work=/tmp/tributary-gpu-work
qwen="$work/ckpt/qwen2.5-0.5b-bfloat16"
rm -rf "$bin"; mkdir -p "$bin" "$work"
names="gpu it"
[ -f "$bundle/tributary.xz" ] && [ -f "$bundle/anvil.xz" ] && names="$names tributary anvil"
for name in $names; do
  "$py" -c 'import lzma,shutil,sys
with lzma.open(sys.argv[1]) as f, open(sys.argv[2], "wb") as o: shutil.copyfileobj(f, o)' \
    "$bundle/$name.xz" "$bin/$name" && chmod +x "$bin/$name" || { say "missing $bundle/$name.xz: run scripts/gpu-check.sh bundle first"; exit 1; }
done
torch_lib=$("$py" -c 'import os,torch;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TRIBUTARY_PYTHON="$py"
export CARGO_MANIFEST_DIR="$PWD/trainer"   # the test binary finds its Python helpers there
{
  date -u +"date %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$py" -c 'import torch,transformers,peft;print("torch",torch.__version__,"cuda",torch.version.cuda,"transformers",transformers.__version__,"peft",peft.__version__)'
  nproc
} 2>&1 | tee -a "$log"

# GPU memory in use (MiB), sampled every 50 ms while a command runs; the peak above the
# level before it starts is recorded for both sides the same way.
gpu_mem() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; }
measured() { # name cmd...: runs cmd (its JSON lines go to results) and records its peak
  local name=$1; shift
  local base sampler="" peak
  base=$(gpu_mem)
  if [ -n "$base" ]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$work/mem-$name" 2>/dev/null &
    sampler=$!
  fi
  "$@" 2>>"$log" | tee -a "$results"
  local rc=${PIPESTATUS[0]}
  if [ -n "$sampler" ]; then
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    peak=$(sort -n "$work/mem-$name" | tail -1)
    echo "{\"peak\": \"$name\", \"gpu_memory_mib\": $((peak - base))}" | tee -a "$results"
  fi
  [ "$rc" = 0 ] || say "$name failed (exit $rc)"
  return 0
}

[ "$device" = cpu ] && export TRIBUTARY_GPU_TESTS_ON_CPU=1
if want 1; then
  say "step 1: tests on the GPU (trainer test binary: gpu and hf modules)"
  timeout 300 "$bin/it" gpu:: hf:: --test-threads 2 --nocapture 2>&1 | tee -a "$log" | grep -E "^test |SKIPPED|result:|held-out|influence" >&2
  echo "{\"tests\": \"gpu hf\", \"exit\": ${PIPESTATUS[0]}}" >> "$results"
fi

# Checkpoints an earlier call prepared completely are marked by $work/ckpt.done.
if want 2 || { { want 3 || want 4 || want 5; } && [ ! -f "$work/ckpt.done" ]; }; then
  say "step 2: checkpoints at published shapes (random weights, sharded) and transformers' logits"
  rm -rf "$work/ckpt" "$work/ckpt.done"
  timeout 300 "$py" trainer/benches/gpu_reference.py prepare "$work/ckpt" "$device" "$layers" 2>>"$log" | tee -a "$log"
  [ "${PIPESTATUS[0]}" = 0 ] && touch "$work/ckpt.done"
fi

if want 3; then
  say "step 3: our logits vs transformers', each checkpoint in its stored precision"
  timeout 180 "$bin/gpu" logits "$work"/ckpt/* 2>>"$log" | tee -a "$results"
fi

if want 4; then
  say "step 4: LoRA training steps: bf16 base, rank 16, q k v o gate up down, side by side"
  if [ "$device" = cpu ]; then set -- 1 64 1 2; else set -- 8 1024 3 10; fi
  for ckpt in 0 1; do
    measured "peft-ckpt$ckpt" timeout 300 "$py" trainer/benches/gpu_reference.py train "$qwen" "$device" "$@" 16 $ckpt
    measured "tributary-ckpt$ckpt" timeout 300 "$bin/gpu" train "$qwen" "$device" "$@" 16 $ckpt
  done
fi

if want 5; then
  if [ "$device" = cpu ]; then
    export TRIBUTARY_BENCH_REQUESTS=8 TRIBUTARY_BENCH_SWAP=2 TRIBUTARY_BENCH_ROUNDS=1 TRIBUTARY_BENCH_ADAPTERS=10 \
      TRIBUTARY_BENCH_WAVES=1 TRIBUTARY_BENCH_PASSES=${TRIBUTARY_BENCH_PASSES:-0,1}
  fi
  export TRIBUTARY_BENCH_PASSES=${TRIBUTARY_BENCH_PASSES:-0,4,2,1}
  say "step 5: serving: 100 requests over 1, 10 and 100 adapters vs merged vs swap-per-request; attribution under sustained load at passes $TRIBUTARY_BENCH_PASSES (0: one per checkpoint)"
  timeout 420 "$bin/gpu" serve "$qwen" "$device" 2>>"$log" | tee -a "$log" "$out/serving.md"
  rc=${PIPESTATUS[0]}
  echo "{\"serving\": \"exit $rc\"}" >> "$results"
  [ "$rc" = 0 ] || say "serving failed (exit $rc; 124 is the 420 s limit)"
fi

if want 6 && [ -x "$bin/tributary" ]; then
  say "step 6: the whole demo with training and serving on the $device: sign, ingest, anchor, index, train, publish, serve one answer"
  export TRIBUTARY_ANVIL="$bin/anvil"
  rm -rf "$work/demo"
  timeout 900 "$bin/tributary" demo --exit --records 60 --data-dir "$work/demo" > "$out/demo.txt" 2>>"$log"
  rc=$?
  # The adapter's training device, as the demo's GraphQL answer reports it.
  trained_on=$(grep -o '"device": *"[^"]*"' "$out/demo.txt" | head -1 | sed 's/.*: *//')
  echo "{\"demo\": \"exit $rc\", \"trained_on\": ${trained_on:-null}}" | tee -a "$results"
fi

"$py" - "$results" "$out/summary.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
out = open(sys.argv[2], "w")
def w(s=""): print(s); out.write(s + "\n")
w("| checkpoint | precision | parameters | max abs diff / max logit | top-1 agreement | tolerance | load s |")
w("|---|---|---|---|---|---|---|")
for r in rows:
    if r.get("check") == "logits":
        w(f"| {r['dir'].rsplit('/', 1)[-1]} | {r['kind']} | {r['parameters']:,} | {r['max_abs_diff_over_max_logit']:.2e} | {r['top1_agreement']:.3f} | {r['tolerance']:.0e} | {r['load_seconds']:.1f} |")
peaks = {r["peak"]: r["gpu_memory_mib"] for r in rows if "peak" in r}
train = [r for r in rows if "side" in r]
w()
w("| training | gradient checkpointing | tokens/s | s/step | peak GPU memory (MiB) | MFU (bf16 dense 989 TFLOP/s) |")
w("|---|---|---|---|---|---|")
fpt = next((r["flops_per_token"] for r in train if "flops_per_token" in r), None)
for r in train:
    ck = int(r["gradient_checkpointing"])
    key = f"{'tributary' if r['side'] == 'tributary' else 'peft'}-ckpt{ck}"
    mfu = r["tokens_per_second"] * fpt / 989e12 if fpt else float("nan")
    w(f"| {r['side']} | {'on' if ck else 'off'} | {r['tokens_per_second']:.0f} | {r['seconds_per_step']:.3f} | {peaks.get(key, 'n/a')} | {mfu:.1%} |")
for ck in (0, 1):
    t = [r for r in train if r["side"] == "tributary" and int(r["gradient_checkpointing"]) == ck]
    p = [r for r in train if r["side"] != "tributary" and int(r["gradient_checkpointing"]) == ck]
    if t and p:
        mem_t, mem_p = peaks.get(f"tributary-ckpt{ck}"), peaks.get(f"peft-ckpt{ck}")
        mem = f", peak memory {mem_t / mem_p:.2f}x" if mem_t and mem_p else ""
        w(f"checkpointing {'on' if ck else 'off'}: tokens/s {t[0]['tokens_per_second'] / p[0]['tokens_per_second']:.2f}x PyTorch + PEFT{mem}")
for r in rows:
    if "tests" in r:
        w(f"tests ({r['tests']}): exit {r['exit']}")
    if "serving" in r:
        w(f"serving: {r['serving']}")
    if "demo" in r:
        w(f"demo: {r['demo']}, adapter trained on {r['trained_on']}")
PY
say "done in $(( $(date +%s) - started )) s"
