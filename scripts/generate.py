#!/usr/bin/env python3
"""Text generation with a Hugging Face tokenizer: encodes the prompt with tokenizer.json, lets
`kiln generate --prompt-ids ... --ids` sample, and decodes the ids back to text.
    .venv/bin/python scripts/generate.py --model DIR [--tokenizer DIR/tokenizer.json] --prompt TEXT [kiln options]
Byte-level models need none of this: `kiln generate --prompt TEXT` prints text directly."""
import argparse
import os
import subprocess
import sys

from tokenizers import Tokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Hugging Face folder (config.json + model.safetensors)")
    ap.add_argument("--tokenizer", help="tokenizer.json (default: MODEL/tokenizer.json)")
    ap.add_argument("--prompt", default="", help="prompt text")
    ap.add_argument("--kiln", default=os.path.join(os.path.dirname(__file__), "..", "build", "kiln"))
    args, rest = ap.parse_known_args()
    tok_path = args.tokenizer or os.path.join(args.model, "tokenizer.json")
    if not os.path.exists(tok_path):
        sys.exit(f"generate.py: no tokenizer at {tok_path} (pass --tokenizer)")
    tok = Tokenizer.from_file(tok_path)
    ids = tok.encode(args.prompt).ids or [0]
    cmd = [args.kiln, "generate", "--model", args.model, "--prompt-ids", ",".join(map(str, ids)), "--ids"] + rest
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        sys.exit(out.returncode)
    for line in out.stdout.splitlines():
        if line.startswith("--- sample"):
            print(line)
        elif line.strip():
            print(tok.decode([int(x) for x in line.split(",") if x]))


if __name__ == "__main__":
    main()
