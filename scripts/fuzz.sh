#!/usr/bin/env bash
# Fuzzes the safetensors header parser (tests/fuzz/safetensors_fuzz.c) with libFuzzer for a bounded time.
#   scripts/fuzz.sh [SECONDS]        # default 60
# Builds tests/fuzz on its own with clang into build-fuzz/ (KILN_FUZZ_BUILD overrides), replays the
# committed corpus, then mutates it for SECONDS. Exit status: 0 no crash; 1 a crash, leak or timeout (the
# input is kept under build-fuzz/artifacts/ and named below); 2 no usable toolchain (clang and the
# libFuzzer runtime: apt package libclang-rt-dev). New inputs go to build-fuzz/corpus-new/, never into
# the committed corpus; to keep a few, minimise them (safetensors_fuzz -merge=1 NEW_DIR build-fuzz/corpus-new)
# and copy them into tests/fuzz/corpus/safetensors/ by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2; }
build=${KILN_FUZZ_BUILD:-build-fuzz}
cc=${KILN_FUZZ_CC:-clang}

probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return d && n > 9; }' >"$probe/p.c"
if ! command -v "$cc" >/dev/null 2>&1 ||
   ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >"$probe/log" 2>&1; then
  echo "fuzz.sh: '$cc' cannot build libFuzzer targets (install clang and libclang-rt-dev)" >&2
  cat "$probe/log" >&2 2>/dev/null || true
  exit 2
fi

echo "== build ($build, $cc)"
cmake -S tests/fuzz -B "$build" -DCMAKE_C_COMPILER="$cc" >"$probe/configure.log" 2>&1 || { cat "$probe/configure.log"; exit 2; }
cmake --build "$build" -j "$(nproc)" >"$probe/build.log" 2>&1 || { cat "$probe/build.log"; exit 2; }

# tokens of the format, so mutations reach past the JSON syntax quickly
cat >"$build/safetensors.dict" <<'DICT'
"\"dtype\""
"\"shape\""
"\"data_offsets\""
"\"__metadata__\""
"\"F32\""
"\"F16\""
"\"BF16\""
"\"F64\""
"\"I64\""
"\"U8\""
"\"BOOL\""
"\"F8_E4M3\""
"\"F4\""
"\\u0000"
"\\ud800"
"null"
"true"
"-1"
"1e308"
"0.5"
"18446744073709551615"
"9007199254740993"
"\xff"
"\xed\xa0\x80"
DICT

mkdir -p "$build/corpus-new" "$build/artifacts"
echo "== fuzzing for ${secs}s (corpus: tests/fuzz/corpus/safetensors, $(ls tests/fuzz/corpus/safetensors | wc -l) seeds)"
set +e
"$build/safetensors_fuzz" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
  -print_final_stats=1 -dict="$build/safetensors.dict" -artifact_prefix="$build/artifacts/" \
  "$build/corpus-new" tests/fuzz/corpus/safetensors >"$build/fuzz.log" 2>&1
rc=$?
set -e
tail -n 25 "$build/fuzz.log"
if [ "$rc" -ne 0 ]; then
  echo "fuzz.sh: the fuzzer failed (exit $rc); full log: $build/fuzz.log; inputs:" >&2
  ls -1 "$build/artifacts/" >&2 || true
  exit 1
fi
echo "== no crash in ${secs}s"
