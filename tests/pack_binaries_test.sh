#!/usr/bin/env bash
# scripts/pack_binaries.sh: the packed kiln runs from its folder with only that folder's lib/ added to the
# library path, lib/ holds the non-system libraries kiln links (libyaml, cJSON, HDF5) and none of the C
# runtime or CUDA, and bad arguments are refused with a message and a non-zero status. With a CUDA build,
# scripts/gpu_tests_packed.sh starts the packed GPU test binary (listing its tests: no GPU is needed for that)
# and refuses a folder without it.
# No `producer | grep -q` pipelines: grep -q exits at its first match, the producer (ldd prints line by line)
# then dies of SIGPIPE and pipefail fails the test; CI hit this under load. Outputs are captured first.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pack="$KILN_SOURCE_DIR/scripts/pack_binaries.sh"
"$pack" "$dir/out" "$KILN_BIN" > "$dir/log"
grep -q "1 binaries" "$dir/log"
help=$(LD_LIBRARY_PATH="$dir/out/lib" "$dir/out/kiln" --help)
grep -q "^kiln" <<< "$help"
libs=$(ls "$dir/out/lib")
for want in libyaml libcjson libhdf5; do
  grep -q "^$want" <<< "$libs" || { echo "missing $want in the packed lib/" >&2; exit 1; }
done
if grep -Eq '^(libc\.|libm\.|libstdc\+\+|ld-linux|libcuda|libcudart|libcublas|libcudnn)' <<< "$libs"; then
  echo "the packed lib/ holds a runtime or CUDA library: $(tr '\n' ' ' <<< "$libs")" >&2
  exit 1
fi
# kiln resolves libyaml through the packed folder, not the system's copy
resolved=$(LD_LIBRARY_PATH="$dir/out/lib" ldd "$dir/out/kiln")
grep -q "$dir/out/lib/libyaml" <<< "$resolved"
if "$pack" "$dir/bad" 2> "$dir/err"; then echo "accepted a call without binaries" >&2; exit 1; fi
grep -q usage "$dir/err"
if "$pack" "$dir/bad" "$dir/none" 2> "$dir/err"; then echo "accepted a missing binary" >&2; exit 1; fi
grep -q "not an executable" "$dir/err"
runner="$KILN_SOURCE_DIR/scripts/gpu_tests_packed.sh"
if "$runner" "$dir/out" 2> "$dir/err"; then echo "gpu_tests_packed.sh accepted a folder without kiln_gpu_tests" >&2; exit 1; fi
grep -q "has no kiln_gpu_tests" "$dir/err"
gpu_tests="$(dirname "$KILN_BIN")/tests/kiln_gpu_tests"
if [ -x "$gpu_tests" ]; then
  "$pack" "$dir/both" "$KILN_BIN" "$gpu_tests" > "$dir/log"
  listed=$("$runner" "$dir/both" --gtest_list_tests)
  grep -q "^MatmulCuda\." <<< "$listed" || { echo "the packed kiln_gpu_tests listed no MatmulCuda tests" >&2; exit 1; }
fi
echo "pack_binaries.sh: $(ls "$dir/out/lib" | wc -l) libraries packed, kiln runs from the folder"
