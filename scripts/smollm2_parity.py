#!/usr/bin/env python3
"""smollm2_parity.py — kiln's logits against transformers' on the same Hugging Face folder and tokens.

    python3 scripts/smollm2_parity.py [--model runs/smollm2-135m] [--data runs/smollm2-data/eval.bin]
        [--kiln build/kiln] [--batch-size 2] [--seq-len 128] [--max-abs 1e-3] [--max-rel-l2 1e-5]

Runs `kiln eval --batches 1 --dump-logits --dump-inputs` on the folder (its first eval batch), feeds the
same input ids to transformers' LlamaForCausalLM in float32 (eager attention), and prints the largest
absolute difference, the largest difference relative to the largest |logit|, the relative L2 error, how
often the argmax agrees, and both mean losses. Exits 1 when a bound is exceeded.

Needs torch and transformers (the system python here; not CI's .venv). Any model kiln loads works, not
only SmolLM2 (scripts/smollm2.sh makes that folder, and scripts/tokenize.py the eval tokens).
"""
import os
import sys

# scripts/tokenize.py would shadow the standard library's tokenize (linecache and torch import it)
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [d for d in sys.path if os.path.abspath(d or ".") != _here]

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", default="runs/smollm2-135m", help="Hugging Face folder (runs/smollm2-135m)")
    p.add_argument("--data", default="runs/smollm2-data/eval.bin", help="eval token file(s) for kiln --data")
    p.add_argument("--kiln", default=None, help="the kiln executable (default: build/kiln, then build-*/kiln)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=128)
    # FP32 on both sides with different summation orders: over 30 layers of 576-wide dot products the
    # rounding differences stay around 1e-5 relative; these bounds leave 10-100x room and still catch any
    # real mistake (a wrong RoPE pairing or norm epsilon moves logits by whole units).
    p.add_argument("--max-abs", type=float, default=1e-3, help="bound on max |kiln - transformers| (1e-3)")
    p.add_argument("--max-rel-l2", type=float, default=1e-5, help="bound on ||kiln - hf|| / ||hf|| (1e-5)")
    args = p.parse_args(argv)

    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError:
        sys.exit("smollm2_parity: needs torch and transformers (use the system python3, not .venv)")

    kiln = args.kiln
    if kiln is None:
        cands = ["build/kiln"] + sorted(os.path.join(d, "kiln") for d in os.listdir(".") if d.startswith("build-"))
        kiln = next((c for c in cands if os.access(c, os.X_OK)), None)
        if kiln is None:
            sys.exit("smollm2_parity: no kiln executable found; pass --kiln")

    with tempfile.TemporaryDirectory() as tmp:
        lpath, ipath = os.path.join(tmp, "logits.npy"), os.path.join(tmp, "inputs.npy")
        cmd = [kiln, "eval", "--model", args.model, "--data", args.data, "--batches", "1", "--quiet",
               f"data.seq_len={args.seq_len}", f"train.batch_size={args.batch_size}",
               "--dump-logits", lpath, "--dump-inputs", ipath]
        print("smollm2_parity: " + " ".join(cmd), flush=True)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        kiln_eval = json.loads(out.strip().splitlines()[-1])
        kl = np.load(lpath)
        ids = np.load(ipath)

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        hf = model(torch.from_numpy(ids.astype(np.int64))).logits.float().numpy()
    if hf.shape != kl.shape:
        sys.exit(f"smollm2_parity: shapes differ: kiln {kl.shape}, transformers {hf.shape}")

    diff = np.abs(kl.astype(np.float64) - hf.astype(np.float64))
    max_abs = float(diff.max())
    rel_max = max_abs / float(np.abs(hf).max())
    rel_l2 = float(np.linalg.norm(diff) / np.linalg.norm(hf.astype(np.float64)))
    agree = float((kl.argmax(-1) == hf.argmax(-1)).mean())
    # mean loss of each over the batch's targets (the next input id; the last position has none here)
    def mean_loss(lg):
        x = torch.from_numpy(lg[:, :-1].reshape(-1, lg.shape[-1])).double()
        return float(torch.nn.functional.cross_entropy(x, torch.from_numpy(ids[:, 1:].reshape(-1)).long()))
    w = np.unravel_index(int(diff.argmax()), diff.shape)
    print(f"smollm2_parity: {args.model}, batch {ids.shape[0]} x {ids.shape[1]}, vocab {kl.shape[-1]}")
    print(f"  max |kiln - hf|           {max_abs:.3e}  (at {tuple(int(i) for i in w)}: kiln {kl[w]:.6f}, "
          f"hf {hf[w]:.6f})")
    print(f"  max |diff| / max |hf|     {rel_max:.3e}")
    print(f"  ||diff|| / ||hf||         {rel_l2:.3e}")
    print(f"  argmax agreement          {100 * agree:.2f}%")
    print(f"  mean loss (shifted)       kiln {mean_loss(kl):.6f}, hf {mean_loss(hf):.6f}")
    print(f"  kiln eval batch loss      {kiln_eval['loss']:.6f} (includes the last position's target)")
    print(json.dumps({"max_abs": max_abs, "max_rel": rel_max, "rel_l2": rel_l2, "argmax_agree": agree}))
    if max_abs > args.max_abs or rel_l2 > args.max_rel_l2:
        print("smollm2_parity: FAILED: beyond the bounds", file=sys.stderr)
        return 1
    print("smollm2_parity: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
