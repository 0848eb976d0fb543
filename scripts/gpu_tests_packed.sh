#!/usr/bin/env bash
# Runs the GPU test suite (ctest's `gpu` label) from a folder scripts/pack_binaries.sh made, for a GPU host
# that runs binaries built elsewhere instead of building: it gives kiln_gpu_tests the environment ctest would
# (KILN_BIN, KILN_SOURCE_DIR, a fresh KILN_TEST_TMP and KILN_CACHE_DIR, KILN_PYTHON) and the folder's lib/.
#   scripts/pack_binaries.sh build-dev build/kiln build/tests/kiln_gpu_tests   # where it was built
#   scripts/gpu_tests_packed.sh build-dev [GTEST_ARGS ...]                     # on the GPU host, same tree
# e.g. GTEST_ARGS --gtest_filter='MatmulCuda.*'. Exit status: the test binary's (0 all passed or skipped).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: scripts/gpu_tests_packed.sh FOLDER [GTEST_ARGS ...]" >&2; exit 2; }
src=$(cd "$(dirname "$0")/.." && pwd)
folder=$(cd "$1" 2> /dev/null && pwd) || { echo "gpu_tests_packed.sh: no folder $1" >&2; exit 2; }
shift
for bin in kiln kiln_gpu_tests; do
  [ -x "$folder/$bin" ] || { echo "gpu_tests_packed.sh: $folder has no $bin (pack it with scripts/pack_binaries.sh)" >&2; exit 2; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/cache"
cd "$tmp"
LD_LIBRARY_PATH="$folder/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" KILN_BIN="$folder/kiln" KILN_SOURCE_DIR="$src" \
  KILN_TEST_TMP="$tmp" KILN_CACHE_DIR="$tmp/cache" KILN_PYTHON="${KILN_PYTHON:-python3}" \
  "$folder/kiln_gpu_tests" "$@"
