#!/usr/bin/env bash
# Training throughput on one GPU, the way the issue and LLMQ measure it: the Qwen2.5-0.5B and -1.5B shapes
# from scratch on random tokens, sequence length 1024, 524,288 tokens per optimizer step (32 x 1024 x 16
# accumulation: on an H200, micro-batches of 32 sequences train 0.4-0.6% (0.5B) and 1.5-1.7% (1.5B) faster
# than 16; docs/benchmarks.md), BF16. Prints tok/s, MFU against 989 TFLOP/s dense BF16, peak device memory
# and the GPU's median power and SM clock while busy per model, then one JSON line each (with the GPU's name and
# serial number, to tell machines apart: the same code reads up to 3.5% apart from one H200 to another).
#   scripts/bench.sh [KILN_BINARY] [STEPS] [KEY=VALUE ...]   # defaults: build/kiln, 6 steps (the first is warm-up)
# KEY=VALUE pairs override the config for both models (e.g. train.cuda_graphs=false); BENCH_MODELS picks the
# models (default "qwen2.5-0.5b qwen2.5-1.5b").
set -euo pipefail
cd "$(dirname "$0")/.."
kiln=${1:-build/kiln}
steps=${2:-6}
shift $(($# < 2 ? $# : 2))
out=$(mktemp -d)
sampler=
# (under set -e a failing kill in the trap would end it early: with status 1 and the folder left behind)
trap 'if [ -n "$sampler" ]; then kill "$sampler" 2> /dev/null || true; fi; rm -rf "$out"' EXIT
# Board power and SM clock, sampled every 0.5 s while a model trains (when nvidia-smi is there): at the
# H200's 700 W cap the clock, and with it the throughput, differs from chip to chip by a few percent.
sample_gpu() {
  while "$smi" --query-gpu=power.draw,clocks.sm,utilization.gpu --format=csv,noheader,nounits >> "$1" 2>/dev/null
  do sleep 0.5; done
}
smi=$(command -v nvidia-smi || true)
gpu_name= gpu_serial=
if [ -n "$smi" ]; then
  dev=${CUDA_VISIBLE_DEVICES:-0}  # the GPU kiln trains on: CUDA's device 0
  IFS=, read -r gpu_name gpu_serial < <("$smi" -i "${dev%%,*}" --query-gpu=name,serial --format=csv,noheader \
    2> /dev/null) || true
  gpu_serial=${gpu_serial# }
  echo "GPU: ${gpu_name:-?}, serial ${gpu_serial:-?}"
fi
for model in ${BENCH_MODELS:-qwen2.5-0.5b qwen2.5-1.5b}; do
  : > "$out/$model.smi"
  if [ -n "$smi" ]; then sample_gpu "$out/$model.smi" & sampler=$!; fi
  "$kiln" train "configs/$model.yaml" train.device=cuda train.steps="$steps" train.warmup_steps=1 \
    train.grad_accum=16 train.batch_size=32 log.every=1 train.eval_batches=1 train.eval_every=0 \
    train.out_dir="$out/$model" "$@" > "$out/$model.log" 2>&1 || { cat "$out/$model.log"; exit 1; }
  if [ -n "$sampler" ]; then kill "$sampler" 2> /dev/null || true; wait "$sampler" 2> /dev/null || true; sampler=; fi
  grep -m5 -E "memory|step|GEMM algorithms" "$out/$model.log"
  python3 - "$out/$model/metrics.jsonl" "$model" "$out/$model.smi" "$gpu_name" "$gpu_serial" <<'PY'
import json, statistics, sys
busy = []  # (power W, SM MHz) while a kernel ran (utilisation >= 90%): start-up and set-up excluded
for line in open(sys.argv[3]):
    try:
        w, mhz, util = (float(v) for v in line.split(","))
    except ValueError:
        continue  # "[N/A]" fields or a line cut short by the kill
    if util >= 90:
        busy.append((w, mhz))
steps = [json.loads(l) for l in open(sys.argv[1]) if '"type":"step"' in l]
timed = steps[1:] or steps  # the first step includes warm-up (cuBLASLt plans, cuDNN graphs)
tps = statistics.median(s["tokens_per_s"] for s in timed)
mfu = statistics.median(s.get("mfu") or 0 for s in timed)
mem = max(s.get("mem_bytes") or 0 for s in steps)
power = statistics.median(b[0] for b in busy) if busy else None
clock = statistics.median(b[1] for b in busy) if busy else None
gpu = f", busy at {power:.0f} W and {clock:.0f} MHz (medians)" if busy else ""
print(f"{sys.argv[2]}: {tps/1e3:.1f}k tok/s, MFU {100*mfu:.1f}% of 989 TFLOP/s, peak device memory {mem/2**30:.1f} GiB "
      f"(median of {len(timed)} steps){gpu}")
print(json.dumps({"bench": "train", "model": sys.argv[2], "tokens_per_step": 524288, "seq_len": 1024,
                  "tokens_per_s": round(tps), "mfu": round(mfu, 4), "peak_mem_bytes": int(mem),
                  "steps_timed": len(timed), "busy_power_w": power, "busy_sm_mhz": clock,
                  "gpu": sys.argv[4] or None, "gpu_serial": sys.argv[5] or None}))
PY
done
