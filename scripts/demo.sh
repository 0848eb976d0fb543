#!/usr/bin/env bash
# The README's second command: from a fresh machine to a trained model and generated text.
#   scripts/demo.sh
# Installs what is missing (scripts/setup.sh, plus Debian's bible-kjv for the corpus), builds kiln,
# writes the King James Bible as text, tokenizes it byte-level, trains configs/demo.yaml (on the GPU when
# one is present, else on the CPU) and prints the eval loss and a few generated lines.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! command -v bible >/dev/null 2>&1; then
  echo "demo: installing bible-kjv (the corpus)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends bible-kjv >/dev/null \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends bible-kjv >/dev/null; }
fi

echo "== build"
# only the kiln executable; the CUDA backend only where a GPU can use it (a CPU-only build takes seconds)
cuda=OFF
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && command -v nvcc >/dev/null 2>&1; then cuda=ON; fi
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF -DKILN_CUDA=$cuda >/dev/null
cmake --build build-demo -j "$(nproc)" --target kiln >/dev/null
kiln=build-demo/kiln

echo "== corpus"
mkdir -p runs/demo-data
if [ ! -s runs/demo-data/train.bin ]; then
  # verse numbers and chapter headings removed; one verse per line
  bible "gen1:1-rev22:21" | .venv/bin/python scripts/clean_kjv.py > runs/demo-data/kjv.txt
  .venv/bin/python scripts/tokenize.py runs/demo-data/kjv.txt --bytes --text-docs line --out-dir runs/demo-data --eval-fraction 0.02
fi
$kiln data inspect runs/demo-data/train.bin runs/demo-data/eval.bin

echo "== train"
$kiln train configs/demo.yaml "$@"

echo "== generate"
$kiln generate configs/demo.yaml --prompt "And God said" --tokens 300 --temperature 0.8 --samples 3
