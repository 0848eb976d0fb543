#!/usr/bin/env python3
"""compare_optimizers.py — trains the demo model once per optimizer setting on the same token stream
(AdamW, DASH with each inverse-root solver, DCT-AdamW at a few ranks), then tabulates eval loss,
optimizer-step time and optimizer-state bytes and plots the eval/train curves (docs/optimizers_comparison.*).

Usage (from the repository root, after scripts/demo.sh has written runs/demo-data/):
    .venv/bin/python scripts/compare_optimizers.py --kiln build/kiln [--steps 120] [--out runs/optcmp]
Runs are sequential, single-threaded (OMP_NUM_THREADS=1) and niced; each run's CPU seconds are measured
with getrusage on the child. The numbers come from each run's metrics.jsonl: the "eval" records and the
"optimizer" event the CPU trainer writes at the end ("X ms/step over N steps, state Y MiB (B bytes)").
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

# scripts/tokenize.py would shadow the standard library's tokenize (which matplotlib's imports need)
sys.path = [d for d in sys.path if os.path.abspath(d or ".") != os.path.dirname(os.path.abspath(__file__))]

# (label, overrides). One lr for every optimizer: see docs/optimizers_comparison.md for why.
RUNS = [
    ("AdamW", ["optim.name=adamw"]),
    ("DASH newton_db", ["optim.name=dash", "optim.dash_inv_root_method=newton_db"]),
    ("DASH coupled_newton", ["optim.name=dash", "optim.dash_inv_root_method=coupled_newton"]),
    ("DASH chebyshev", ["optim.name=dash", "optim.dash_inv_root_method=chebyshev"]),
    ("DASH eigh", ["optim.name=dash", "optim.dash_inv_root_method=eigh"]),
    ("DCT-AdamW r=16", ["optim.name=dct_adamw", "optim.dct_rank=16"]),
    ("DCT-AdamW r=48", ["optim.name=dct_adamw", "optim.dct_rank=48"]),
    ("DCT-AdamW r=96", ["optim.name=dct_adamw", "optim.dct_rank=96"]),
    # lr check for the baseline (the per-run override comes after the common optim.lr and wins)
    ("AdamW lr=6e-3", ["optim.name=adamw", "optim.lr=6e-3"]),
]

OPT_EVENT = re.compile(r"([0-9.]+) ms/step over (\d+) steps, state ([0-9.]+) MiB \((\d+) bytes\)")


def common_overrides(a):
    return [
        "train.device=cpu", f"train.steps={a.steps}", f"train.warmup_steps={a.warmup}",
        f"train.eval_every={a.eval_every}", f"train.eval_batches={a.eval_batches}", f"optim.lr={a.lr}",
        f"optim.dash_block_size={a.dash_block}", "train.resume=none", "train.ckpt_every=0", "log.console=false",
    ]


def slug(label):
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()


def read_metrics(path):
    steps, evals, opt = [], [], None
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if rec["type"] == "step":
                steps.append((rec["step"], rec["loss"]))
            elif rec["type"] == "eval":
                evals.append((rec["step"], rec["loss"]))
            elif rec["type"] == "event" and rec.get("kind") == "optimizer":
                m = OPT_EVENT.search(rec["message"])
                if m:
                    opt = {"ms_per_step": float(m.group(1)), "opt_steps": int(m.group(2)), "state_bytes": int(m.group(4))}
    return steps, evals, opt


def run_one(a, label, overrides):
    out_dir = os.path.join(a.out, slug(label))
    cmd = ["nice", "-n", "5", a.kiln, "train", a.config, f"train.out_dir={out_dir}"] + common_overrides(a) + overrides
    env = dict(os.environ, OMP_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{label}: kiln exited {proc.returncode}\n{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    steps, evals, opt = read_metrics(os.path.join(out_dir, "metrics.jsonl"))
    if opt is None or not evals:
        sys.exit(f"{label}: no optimizer event or eval record in {out_dir}/metrics.jsonl")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    r = {"label": label, "overrides": overrides, "steps": steps, "evals": evals, "eval_loss": evals[-1][1],
         "cpu_s": cpu, "wall_s": wall, **opt}
    print(f"{label:22s} eval {r['eval_loss']:.4f}  opt {r['ms_per_step']:8.2f} ms/step  state "
          f"{r['state_bytes'] / 2**20:7.2f} MiB  cpu {cpu:6.1f} s", flush=True)
    return r


def table(results, param_bytes):
    base = results[0]
    lines = ["| optimizer | eval loss | bits/byte | optimizer step (ms) | vs AdamW | state (MiB) | state / fp32 params | run CPU (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['label']} | {r['eval_loss']:.4f} | {r['eval_loss'] / 0.6931471805599453:.3f} | "
                     f"{r['ms_per_step']:.1f} | {r['ms_per_step'] / base['ms_per_step']:.1f}x | "
                     f"{r['state_bytes'] / 2**20:.2f} | {r['state_bytes'] / param_bytes:.2f} | {r['cpu_s']:.0f} |")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.8), gridspec_kw={"width_ratios": [1.6, 1, 1, 1]})
    lo = hi = None
    for r in results:
        s = [x for x in r["steps"] if x[1] is not None]
        line, = axes[0].plot([x[0] for x in s], [x[1] for x in s], label=r["label"], lw=1.2)
        axes[0].plot([x[0] for x in r["evals"]], [x[1] for x in r["evals"]], "o", color=line.get_color(), ms=4)
        tail = [x[1] for x in s[len(s) // 3:]]
        lo = min(tail + ([lo] if lo is not None else []))
        hi = max(tail + ([hi] if hi is not None else []))
    axes[0].set_ylim(lo - 0.05, hi + 0.1)  # the first third (loss 5.6 -> 3) would flatten the rest
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss (nats per byte); dots: eval")
    axes[0].set_title("training loss (same batches for every run)")
    axes[0].legend(fontsize=7)
    labels = [r["label"] for r in results]
    colors = [f"C{i}" for i in range(len(results))]
    panels = ((axes[1], [r["eval_loss"] for r in results], "final eval loss (nats per byte)", "{:.3f}"),
              (axes[2], [r["ms_per_step"] for r in results], "optimizer step (ms, 1 CPU thread, log)", "{:.1f}"),
              (axes[3], [r["state_bytes"] / 2**20 for r in results], "optimizer state (MiB)", "{:.1f}"))
    for k, (ax, vals, title, fmt) in enumerate(panels):
        ax.barh(labels, vals, color=colors)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        for i, v in enumerate(vals):
            ax.text(v, i, " " + fmt.format(v), va="center", fontsize=7)
        if k > 0:
            ax.set_yticks([])
    ev = [r["eval_loss"] for r in results]
    axes[1].set_xlim(min(ev) - 0.05, max(ev) + 0.05)
    axes[2].set_xscale("log")
    axes[2].xaxis.set_major_formatter(ScalarFormatter())
    axes[2].xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kiln", default="build/kiln")
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--out", default="runs/optcmp")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--warmup", type=int, default=12)
    p.add_argument("--eval-every", type=int, default=60)
    p.add_argument("--eval-batches", type=int, default=16)
    p.add_argument("--lr", default="2e-3")
    p.add_argument("--dash-block", type=int, default=128)
    p.add_argument("--only", default="", help="comma-separated labels to run (default: all)")
    p.add_argument("--plot", default="docs/optimizers_comparison.png")
    p.add_argument("--replot", action="store_true", help="no training: table and plot from <out>/results.json")
    a = p.parse_args()

    if a.replot:
        with open(os.path.join(a.out, "results.json")) as f:
            results = json.load(f)
        print(table(results, results[0]["state_bytes"] / 2))
        plot(results, a.plot)
        return

    runs = RUNS if not a.only else [r for r in RUNS if r[0] in a.only.split(",")]
    results = [run_one(a, label, ov) for label, ov in runs]
    # merge with the runs of earlier invocations (--only), in RUNS order
    res_path = os.path.join(a.out, "results.json")
    if os.path.exists(res_path):
        with open(res_path) as f:
            done = {r["label"]: r for r in json.load(f)}
        done.update({r["label"]: r for r in results})
        order = [label for label, _ in RUNS]
        results = sorted(done.values(), key=lambda r: order.index(r["label"]) if r["label"] in order else len(order))
    with open(res_path, "w") as f:
        json.dump(results, f, indent=1)
    # AdamW's state is two fp32 moments per parameter, so fp32 parameter bytes = its state / 2
    adamw = next((r for r in results if r["label"] == "AdamW"), None)
    param_bytes = adamw["state_bytes"] / 2 if adamw else float("nan")
    print()
    print(table(results, param_bytes))
    print(f"\ncommon overrides: {' '.join(common_overrides(a))}")
    print(f"total CPU {sum(r['cpu_s'] for r in results):.0f} s")
    plot(results, a.plot)
    print(f"plot: {a.plot}")


if __name__ == "__main__":
    main()
