#!/usr/bin/env bash
# Training throughput on one GPU, the way the issue and LLMQ measure it: the Qwen2.5-0.5B and -1.5B shapes
# from scratch on random tokens, sequence length 1024, 524,288 tokens per optimizer step (16 x 1024 x 32
# accumulation), BF16. Prints tok/s, MFU against 989 TFLOP/s dense BF16 and peak device memory per model,
# then one JSON line each.
#   scripts/bench.sh [KILN_BINARY] [STEPS] [KEY=VALUE ...]   # defaults: build/kiln, 6 steps (the first is warm-up)
# KEY=VALUE pairs override the config for both models (e.g. train.cuda_graphs=false); BENCH_MODELS picks the
# models (default "qwen2.5-0.5b qwen2.5-1.5b").
set -euo pipefail
cd "$(dirname "$0")/.."
kiln=${1:-build/kiln}
steps=${2:-6}
shift $(($# < 2 ? $# : 2))
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for model in ${BENCH_MODELS:-qwen2.5-0.5b qwen2.5-1.5b}; do
  "$kiln" train "configs/$model.yaml" train.device=cuda train.steps="$steps" train.warmup_steps=1 \
    train.grad_accum=32 train.batch_size=16 log.every=1 train.eval_batches=1 train.eval_every=0 \
    train.out_dir="$out/$model" "$@" > "$out/$model.log" 2>&1 || { cat "$out/$model.log"; exit 1; }
  grep -E "memory|step" "$out/$model.log" | head -4
  python3 - "$out/$model/metrics.jsonl" "$model" <<'PY'
import json, statistics, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"type":"step"' in l]
timed = steps[1:] or steps  # the first step includes warm-up (cuBLASLt plans, cuDNN graphs)
tps = statistics.median(s["tokens_per_s"] for s in timed)
mfu = statistics.median(s.get("mfu") or 0 for s in timed)
mem = max(s.get("mem_bytes") or 0 for s in steps)
print(f"{sys.argv[2]}: {tps/1e3:.1f}k tok/s, MFU {100*mfu:.1f}% of 989 TFLOP/s, peak device memory {mem/2**30:.1f} GiB "
      f"(median of {len(timed)} steps)")
print(json.dumps({"bench": "train", "model": sys.argv[2], "tokens_per_step": 524288, "seq_len": 1024,
                  "tokens_per_s": round(tps), "mfu": round(mfu, 4), "peak_mem_bytes": int(mem),
                  "steps_timed": len(timed)}))
PY
done
