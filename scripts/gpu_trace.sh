#!/usr/bin/env bash
# Where a GPU training step's time goes as training runs it: traces every kernel of a short `kiln train` run
# (2 optimizer steps of GRAD_ACCUM micro-batches, default 8) through a CUPTI injection library (scripts/ktrace.c,
# built here on first use) and summarises the last WINDOW_MS milliseconds (scripts/trace_summary.py): busy time
# and gaps, time per kernel group, the top kernels. Unlike scripts/gpu_profile.sh (Nsight Compute, one kernel
# at a time at boost clock) the times include the power cap's clock and any overlap.
#   scripts/gpu_trace.sh KILN_BINARY CONFIG [WINDOW_MS] [key=value ...]   # trace CSV: $OUT_DIR/trace.csv
set -euo pipefail
kiln=$1 config=$2 window=${3:-1500}
shift 3 || shift $#
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT_DIR:-$(mktemp -d)}
mkdir -p "$out"
cuda=${CUDA_HOME:-/usr/local/cuda}
lib=$out/libktrace.so
inc=() libdir=
for d in "$cuda/include" "$cuda/extras/CUPTI/include"; do [ -d "$d" ] && inc+=("-I$d"); done
for d in "$cuda/lib64" "$cuda/lib" "$cuda/extras/CUPTI/lib64"; do
  [ -z "$libdir" ] && [ -e "$d/libcupti.so" ] && libdir=$d
done
[ -n "$libdir" ] || { echo "gpu_trace.sh: libcupti.so not found under $cuda (set CUDA_HOME)" >&2; exit 2; }
gcc -O2 -shared -fPIC "${inc[@]}" "$here/ktrace.c" -o "$lib" -L"$libdir" -lcupti -Wl,-rpath,"$libdir"
CUDA_INJECTION64_PATH=$lib KTRACE_OUT=$out/trace.csv "$kiln" train "$config" train.device=cuda train.steps=2 \
  train.warmup_steps=1 train.grad_accum="${GRAD_ACCUM:-8}" log.every=1 train.eval_every=0 train.eval_batches=1 \
  train.out_dir="$out/run" "$@" > "$out/train.log" 2>&1 || { tail -n 20 "$out/train.log"; exit 1; }
grep -E "^step" "$out/train.log" | tail -n 1
python3 "$here/trace_summary.py" "$out/trace.csv" "$window"
