#!/usr/bin/env python3
"""Checks that `transformers` loads a folder kiln wrote (kiln train's <run>/model, kiln export, kiln init)
and computes the same function: greedy continuations of random prompts from transformers and from
`kiln generate --temperature 0` must agree token for token. Needs torch and transformers (not in CI):
    python3 scripts/check_export.py DIR [--kiln build/kiln] [--prompts 4] [--tokens 16]"""
import argparse
import os
import random
import subprocess
import sys

sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
import torch  # noqa: E402
import transformers  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--kiln", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "kiln"))
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=16)
    a = ap.parse_args()
    model = transformers.AutoModelForCausalLM.from_pretrained(a.dir, torch_dtype=torch.float64).eval()
    V = model.config.vocab_size
    rng = random.Random(0)
    agree = 0
    for p in range(a.prompts):
        prompt = [rng.randrange(V) for _ in range(8)]
        ids = torch.tensor([prompt])
        with torch.no_grad():
            for _ in range(a.tokens):
                nxt = model(input_ids=ids).logits[0, -1].argmax().item()
                ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
        want = ids[0].tolist()
        out = subprocess.run([a.kiln, "generate", "--model", a.dir, "--prompt-ids", ",".join(map(str, prompt)),
                              "--tokens", str(a.tokens), "--temperature", "0", "--ids"],
                             capture_output=True, text=True, check=True).stdout.strip()
        got = [int(x) for x in out.split(",")]
        ok = got == want
        agree += ok
        print(f"prompt {p}: {'same' if ok else 'DIFFERENT'} greedy continuation ({a.tokens} tokens)")
    print(f"{agree}/{a.prompts} prompts agree")
    sys.exit(0 if agree == a.prompts else 1)


if __name__ == "__main__":
    main()
