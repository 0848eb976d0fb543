#!/usr/bin/env python3
"""compare_precision.py — the precision comparison of docs/precision.md: trains the demo model four times on
the same tokens with the same seeds (BF16 = FP32 on the CPU, FP8, NVFP4 Quartet II, NVFP4 with a stochastic-
rounding backward), one run after another, then writes the eval-loss table (Markdown) and a loss plot (PNG).

    .venv/bin/python scripts/compare_precision.py                 # runs + table + plot
    .venv/bin/python scripts/compare_precision.py --plot-only     # table + plot from existing runs
    ... --plot-only --spread runs/precision-ablation/bf16-*     # plus other BF16 runs, in gray

Reads the JSONL metrics files that `kiln train` writes (src/run_log.c: one object per line, "type" step or
eval). Needs matplotlib only for the plot.
"""
import os
import sys

# scripts/tokenize.py would shadow the standard library's tokenize (which matplotlib imports)
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

RUNS = [  # (label, key, overrides)
    ("BF16 (FP32 on the CPU)", "bf16", ["precision.matmul=bf16"]),
    ("FP8 (E4M3 / E5M2)", "fp8", ["precision.matmul=fp8"]),
    ("NVFP4 Quartet II (MS-EDEN)", "nvfp4", ["precision.matmul=nvfp4", "precision.nvfp4_backward=ms_eden"]),
    ("NVFP4, SR backward", "nvfp4-sr", ["precision.matmul=nvfp4", "precision.nvfp4_backward=sr"]),
]


def read_metrics(path):
    steps, evals = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "step" and r.get("loss") is not None:
                steps.append((r["step"], r["loss"]))
            elif r.get("type") == "eval" and r.get("loss") is not None:
                evals.append((r["step"], r["loss"]))
    return steps, evals


def run_all(args, root):
    for label, key, overrides in RUNS:
        out_dir = os.path.join(args.out, key)
        cmd = ["nice", "-n", "5", args.kiln, "train", args.config,
               f"train.steps={args.steps}", f"train.out_dir={out_dir}", f"train.name=precision-{key}",
               f"train.eval_every={args.eval_every}", f"train.eval_batches={args.eval_batches}", "log.every=5"]
        cmd += overrides + args.extra
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        print("+ OMP_NUM_THREADS=%d %s" % (args.threads, " ".join(cmd)), flush=True)
        t0, c0 = time.time(), os.times()
        subprocess.run(cmd, check=True, env=env, cwd=root)
        c1 = os.times()
        cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
        print(f"{label}: {time.time() - t0:.0f} s wall, {cpu:.0f} s CPU", flush=True)


def ema(values, alpha):
    out, s = [], None
    for v in values:
        s = v if s is None else alpha * s + (1 - alpha) * v
        out.append(s)
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln", default=os.path.join(root, "build", "kiln"))
    ap.add_argument("--config", default=os.path.join(root, "configs", "demo.yaml"))
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--eval-batches", type=int, default=8, help="eval batches of 16 x 128 bytes (same for every run)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (1: easy on a shared box)")
    ap.add_argument("--out", default=os.path.join(root, "runs", "precision"))
    ap.add_argument("--plot", default=os.path.join(root, "docs", "precision_demo.png"))
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--spread", nargs="*", default=[], metavar="RUN_DIR",
                    help="more BF16 runs (other inits, perturbed) drawn in gray: the baseline's own spread")
    ap.add_argument("extra", nargs="*", help="more key=value overrides for every run")
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    if not args.plot_only:
        run_all(args, root)

    data = {}
    for label, key, _ in RUNS:
        path = os.path.join(args.out, key, "metrics.jsonl")
        if not os.path.exists(path):
            sys.exit(f"compare_precision: {path} is missing (run without --plot-only first)")
        data[key] = read_metrics(path)

    # table: eval loss at every evaluation, and the gap to BF16 at the last one
    eval_steps = [s for s, _ in data["bf16"][1]]
    base = data["bf16"][1][-1][1]
    head = "| Run | " + " | ".join(f"eval @ {s}" for s in eval_steps) + " | gap to BF16 |"
    lines = [head, "|" + "---|" * (len(eval_steps) + 2)]
    for label, key, _ in RUNS:
        ev = dict(data[key][1])
        cells = " | ".join(f"{ev[s]:.4f}" if s in ev else "—" for s in eval_steps)
        gap = ev[eval_steps[-1]] - base if eval_steps[-1] in ev else float("nan")
        lines.append(f"| {label} | {cells} | {gap:+.4f} |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    bsteps, bloss = zip(*data["bf16"][0])
    bsmooth = dict(zip(bsteps, ema(bloss, 0.8)))
    for label, key, _ in RUNS:
        steps, loss = zip(*data[key][0])
        sm = ema(loss, 0.8)
        a1.plot(steps, sm, label=label)
        es, el = zip(*data[key][1])
        a1.plot(es, el, "o", color=a1.lines[-1].get_color(), markersize=4)
        a2.plot(steps, [v - bsmooth[s] for s, v in zip(steps, sm)], label=label)
    for i, d in enumerate(args.spread):
        steps, loss = zip(*read_metrics(os.path.join(d, "metrics.jsonl"))[0])
        sm = ema(loss, 0.8)
        lab = "BF16, other init / perturbed (spread)" if i == 0 else None
        a1.plot(steps, sm, color="gray", linewidth=0.8, linestyle="--", label=lab)
        a2.plot(steps, [v - bsmooth[s] for s, v in zip(steps, sm)], color="gray", linewidth=0.8, linestyle="--",
                label=lab)
    a1.set_xlabel("step")
    a1.set_ylabel("loss (nats/byte)")
    a1.set_title("train loss (EMA 0.8, every 5 steps) and eval loss (dots)")
    lo = min(min(v for _, v in data[k][0][len(data[k][0]) // 3:]) for _, k, _ in RUNS)
    a1.set_ylim(lo - 0.05, lo + 1.0)
    a1.legend()
    a2.axhline(0, color="gray", linewidth=0.8)
    a2.set_xlabel("step")
    a2.set_ylabel("smoothed train loss minus BF16's")
    a2.set_title("gap to BF16")
    a2.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
