#!/usr/bin/env bash
# scripts/pack_binaries.sh: the packed kiln runs from its folder with only that folder's lib/ added to the
# library path, lib/ holds the non-system libraries kiln links (libyaml, cJSON, HDF5) and none of the C
# runtime or CUDA, and bad arguments are refused with a message and a non-zero status.
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pack="$KILN_SOURCE_DIR/scripts/pack_binaries.sh"
"$pack" "$dir/out" "$KILN_BIN" > "$dir/log"
grep -q "1 binaries" "$dir/log"
LD_LIBRARY_PATH="$dir/out/lib" "$dir/out/kiln" --help | grep -q "^kiln"
for want in libyaml libcjson libhdf5; do
  ls "$dir/out/lib" | grep -q "^$want" || { echo "missing $want in the packed lib/" >&2; exit 1; }
done
if ls "$dir/out/lib" | grep -Eq '^(libc\.|libm\.|libstdc\+\+|ld-linux|libcuda|libcudart|libcublas|libcudnn)'; then
  echo "the packed lib/ holds a runtime or CUDA library: $(ls "$dir/out/lib" | tr '\n' ' ')" >&2
  exit 1
fi
# every library kiln resolves through the packed folder comes from it or from the system's runtime set
LD_LIBRARY_PATH="$dir/out/lib" ldd "$dir/out/kiln" | grep -q "$dir/out/lib/libyaml"
if "$pack" "$dir/bad" 2> "$dir/err"; then echo "accepted a call without binaries" >&2; exit 1; fi
grep -q usage "$dir/err"
if "$pack" "$dir/bad" "$dir/none" 2> "$dir/err"; then echo "accepted a missing binary" >&2; exit 1; fi
grep -q "not an executable" "$dir/err"
echo "pack_binaries.sh: $(ls "$dir/out/lib" | wc -l) libraries packed, kiln runs from the folder"
