#!/usr/bin/env bash
# Fuzzes kiln's readers of untrusted input with libFuzzer for a bounded time each: the safetensors header
# (tests/fuzz/safetensors_fuzz.c), the YAML config (config_fuzz.c), Hugging Face config.json
# (hf_config_fuzz.c) and token files (tokfile_fuzz.c).
#   scripts/fuzz.sh [SECONDS] [TARGET ...]   # default 60 s each, every target (tests/fuzz/corpus/TARGET)
# Builds tests/fuzz on its own with clang into build-fuzz/ (KILN_FUZZ_BUILD overrides), replays each
# committed corpus, then mutates it for SECONDS. Exit status: 0 no crash; 1 a crash, leak or timeout (the
# input is kept under build-fuzz/artifacts/ and named below); 2 no usable toolchain (clang and the
# libFuzzer runtime: apt package libclang-rt-dev). New inputs go to build-fuzz/corpus-new/TARGET/, never into
# the committed corpus; to keep a few, minimise them (TARGET_fuzz -merge=1 NEW_DIR build-fuzz/corpus-new/TARGET)
# and copy them into tests/fuzz/corpus/TARGET/ by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS] [TARGET ...]" >&2; exit 2; }
shift $(($# > 0 ? 1 : 0))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(ls tests/fuzz/corpus)) # a target per corpus folder
for t in "${targets[@]}"; do
  if [ ! -d "tests/fuzz/corpus/$t" ]; then
    echo "fuzz.sh: no target '$t' (tests/fuzz/corpus/ has: $(ls tests/fuzz/corpus | tr '\n' ' '))" >&2
    exit 2
  fi
done
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

# tokens of each format, so mutations reach past the syntax quickly
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
{ # the config's sections, keys and enum choices from the key table, then YAML and value syntax
  sed -nE 's/^ *(INT|FLOAT|BOOL|ENUM|PATH|PATHS|KEY)\(([a-z_]+), ([a-z0-9_]+).*/\2\n\3/p' src/config_keys.c | sort -u
  sed -nE 's/^ *ENUM\([a-z_]+, [a-z0-9_]+, "[^"]*", "([^"]*)".*/\1/p' src/config_keys.c | tr '|' '\n' | sort -u
  printf '%s\n' ': ' '- ' '{' '}' '[' ']' '&a' '*a' '!!str' '|' '>' '---' '...' '#' '~' 'null' 'yes' 'off' '.inf' \
    '-.nan' '0x10' '1e-3' '-0' '9223372036854775808' '16GiB' '1.5MB' '../' './' '/' ',' '*.bin' 'auto' 'none'
} | sed 's/"/\\"/g; s/.*/"&"/' >"$build/config.dict"
cat >>"$build/config.dict" <<'DICT'
"\x0a  "
"\"\\x00\""
"\"\\u00e9\""
"\xc3\xa9"
"\xff"
DICT
{ # config.json's fields and values, then JSON syntax
  printf '%s\n' model_type llama mistral qwen2 qwen3 vocab_size hidden_size intermediate_size num_hidden_layers \
    num_attention_heads num_key_value_heads head_dim max_position_embeddings rms_norm_eps tie_word_embeddings \
    rope_theta rope_parameters rope_scaling rope_type type llama3 default yarn factor low_freq_factor high_freq_factor \
    original_max_position_embeddings sliding_window use_sliding_window attention_bias mlp_bias hidden_act silu \
    num_local_experts true false null
} | sed 's/.*/"\\"&\\""/' >"$build/hf_config.dict"
printf '%s\n' '":"' '"{"' '"}"' '"["' '"]"' '","' '"-1"' '"0"' '"1e300"' '"1e-300"' '"4.5"' '"1000000001"' \
  '"2147483648"' >>"$build/hf_config.dict"

printf '%s\n' '"BIN.TOK\x0a"' '"\x01\x00\x00\x00"' '"\x02\x00\x00\x00"' '"\x04\x00\x00\x00"' '"\xff\xff\xff\xff"' \
  '"\x00\x00\x00\x80"' '"\xff\xff\xff\x7f"' >"$build/tokfile.dict" # header words: magic, version, sizes

rc=0
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus-new/$t" "$build/artifacts"
  echo "== fuzzing $t for ${secs}s (corpus: tests/fuzz/corpus/$t, $(ls "tests/fuzz/corpus/$t" | wc -l) seeds)"
  set +e
  "$build/${t}_fuzz" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 -dict="$build/$t.dict" -artifact_prefix="$build/artifacts/$t-" \
    "$build/corpus-new/$t" "tests/fuzz/corpus/$t" >"$build/fuzz-$t.log" 2>&1
  trc=$?
  set -e
  tail -n 12 "$build/fuzz-$t.log"
  if [ "$trc" -ne 0 ]; then
    echo "fuzz.sh: the $t fuzzer failed (exit $trc); full log: $build/fuzz-$t.log; inputs:" >&2
    ls -1 "$build/artifacts/" >&2 || true
    rc=1
  fi
done
[ "$rc" -eq 0 ] || exit 1
echo "== no crash in ${secs}s per target (${targets[*]})"
