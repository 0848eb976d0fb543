#!/usr/bin/env bash
# Where a GPU training step's time goes, kernel by kernel: runs one optimizer step of one micro-batch of CONFIG
# under Nsight Compute (`ncu`, from the CUDA toolkit), which times every kernel on its own (gpu__time_duration),
# then prints the kernels grouped by name and by phase with their share of the summed kernel time.
#   scripts/gpu_profile.sh KILN_BINARY CONFIG [OUT_DIR] [key=value ...]
# Kernel times exclude launch gaps: compare the total with the step time the trainer prints. The step is followed
# by the run's final evaluation, so forward kernels appear twice. A first run without ncu chooses the GEMM
# algorithms (train.gemm_tune, into OUT_DIR/gemm_tune.txt), so the profiled run loads them and times nothing.
set -euo pipefail
kiln=$1 config=$2 out=${3:-$(mktemp -d)}
shift 3 || shift $#
mkdir -p "$out"
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
[ -x "$ncu" ] || { echo "gpu_profile.sh: ncu (Nsight Compute) not found" >&2; exit 2; }
args=(train "$config" train.device=cuda train.steps=1 train.grad_accum=1 train.warmup_steps=0 train.eval_every=0
      train.eval_batches=1 train.gemm_tune="$out/gemm_tune.txt")
"$kiln" "${args[@]}" train.out_dir="$out/tune" "$@" > "$out/tune.log" 2>&1 || { tail -n 20 "$out/tune.log"; exit 1; }
"$ncu" --csv --metrics gpu__time_duration.sum --cache-control none --clock-control none \
  "$kiln" "${args[@]}" train.out_dir="$out/run" "$@" > "$out/ncu.csv" 2> "$out/ncu.err" ||
  { tail -n 20 "$out/ncu.err" "$out/ncu.csv"; exit 1; }
python3 - "$out/ncu.csv" <<'PY'
import csv, collections, re, sys
lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
rows = [r for r in csv.DictReader(lines) if r.get("Metric Name") == "gpu__time_duration.sum"]
def ns(r):
    v = float(r["Metric Value"].replace(",", ""))
    return v * {"nsecond": 1, "usecond": 1e3, "msecond": 1e6, "second": 1e9}.get(r["Metric Unit"], 1)
by_name = collections.defaultdict(lambda: [0.0, 0])
for r in rows:
    name = re.sub(r"\(.*", "", r["Kernel Name"])[:90]
    by_name[name][0] += ns(r)
    by_name[name][1] += 1
total = sum(v[0] for v in by_name.values())
print(f"summed kernel time {total/1e6:.2f} ms over {len(rows)} kernels (one micro-batch, one optimizer step)")
for name, (t, n) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:30]:
    print(f"{100*t/total:5.1f}%  {t/1e6:8.3f} ms  {n:5d}x  {name}")
PY
