#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing, builds, runs every test.
#   scripts/test.sh            # cpu tests; gpu tests too when a GPU is visible
# Steps: setup -> release build (CUDA for every target architecture when nvcc is present) -> ctest
# -> a second build under AddressSanitizer + UndefinedBehaviorSanitizer -> its cpu tests -> a bounded
# libFuzzer run on each target in tests/fuzz (KILN_FUZZ_SECONDS each, default 60).
# KILN_SKIP_SANITIZE=1 skips the sanitizer pass (for quick local runs; CI always runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)
py=$PWD/.venv/bin/python

echo "== build (release)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DKILN_PYTHON="$py" >build.configure.log 2>&1 || { cat build.configure.log; exit 1; }
grep -E '^-- kiln:' build.configure.log || true
cmake --build build -j "$jobs"

labels=cpu
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  labels="cpu|gpu"
else
  echo "== no GPU visible: the gpu tests are not run here"
fi
echo "== tests ($labels)"
(cd build && ctest -L "$labels" --output-on-failure -j "$jobs" --timeout 900)

if [ "${KILN_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== build (ASan + UBSan, CPU only)"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON -DKILN_PYTHON="$py" >build-asan.configure.log 2>&1 \
    || { cat build-asan.configure.log; exit 1; }
  cmake --build build-asan -j "$jobs"
  echo "== tests under sanitizers (cpu)"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest -L cpu --output-on-failure -j "$jobs" --timeout 1800)
fi
echo "== fuzzing safetensors, YAML, config.json and token-file reading (${KILN_FUZZ_SECONDS:-60} s each)"
scripts/fuzz.sh "${KILN_FUZZ_SECONDS:-60}"
echo "== all tests passed"
