#!/usr/bin/env python3
"""Draws a kiln run from its JSONL metrics file (the run log, see src/run_log.h) into a PNG:
train loss with eval loss, learning rate, and throughput (tokens/s, with MFU when the log has it).

    .venv/bin/python scripts/plot_run.py runs/NAME/metrics.jsonl [-o out.png] [--title TEXT]

Tolerant of what a real log contains: null values (non-finite numbers) become gaps, a torn last line of a
killed run and other unreadable lines are skipped with a warning, and a resumed run that logged some steps
twice keeps the later record of each step. Prints one summary line; exit status 1 when there is nothing
to plot.
"""
import os
import sys

# Run as a script, this folder comes first on sys.path, and scripts/tokenize.py would shadow the standard
# library's tokenize (which matplotlib reaches through inspect): drop the folder from the path.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def _num(v):
    """A JSON value as float; null, missing and non-numbers become NaN (a gap in the plot)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return math.nan
    return float(v)


def load_metrics(path):
    """Returns {"steps": [...], "evals": [...], "events": [...], "bad_lines": n}; steps and evals are dicts
    sorted by step, one per step (the last one logged wins, as after a resume)."""
    steps, evals, events, bad = {}, {}, [], 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                bad += 1
                continue
            if not isinstance(rec, dict):
                bad += 1
                continue
            kind, step = rec.get("type"), rec.get("step")
            if kind == "event":
                events.append(rec)
                continue
            if kind not in ("step", "eval") or isinstance(step, bool) or not isinstance(step, int):
                bad += 1
                continue
            (steps if kind == "step" else evals)[step] = rec
    return {"steps": [steps[k] for k in sorted(steps)], "evals": [evals[k] for k in sorted(evals)],
            "events": events, "bad_lines": bad}


def _ema(values, alpha):
    out, m = [], math.nan
    for v in values:
        if not math.isnan(v):
            m = v if math.isnan(m) else (1 - alpha) * m + alpha * v
        out.append(m)
    return out


def plot(metrics, out_path, title=None):
    steps = metrics["steps"]
    x = [r["step"] for r in steps]
    loss = [_num(r.get("loss")) for r in steps]
    lr = [_num(r.get("lr")) for r in steps]
    tps = [_num(r.get("tokens_per_s")) for r in steps]
    mfu = [_num(r.get("mfu")) * 100 for r in steps]
    ex = [r["step"] for r in metrics["evals"]]
    eloss = [_num(r.get("loss")) for r in metrics["evals"]]

    fig, (ax_loss, ax_lr, ax_tps) = plt.subplots(3, 1, figsize=(9, 9), sharex=True,
                                                 gridspec_kw={"height_ratios": [2, 1, 1]})
    many = len(x) >= 50
    ax_loss.plot(x, loss, color="tab:blue", alpha=0.35 if many else 1.0, lw=1, label="train")
    if many:  # a smoothed curve over the noisy per-step losses
        ax_loss.plot(x, _ema(loss, 2.0 / (1 + max(10, len(x) // 50))), color="tab:blue", lw=1.5,
                     label="train (EMA)")
    if ex:
        ax_loss.plot(ex, eloss, "o-", color="tab:orange", ms=4, lw=1.2, label="eval")
    bad = [s for s, v in zip(x, loss) if math.isnan(v)]
    for s in bad:  # steps whose loss was not finite: marked, since a gap alone is easy to miss
        ax_loss.axvline(s, color="tab:red", alpha=0.3, lw=0.8)
    ax_loss.set_ylabel("loss")
    ax_loss.legend(loc="upper right")
    ax_loss.grid(alpha=0.3)

    ax_lr.plot(x, lr, color="tab:green", lw=1.2)
    ax_lr.set_ylabel("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax_lr.grid(alpha=0.3)

    ax_tps.plot(x, [v / 1e3 for v in tps], color="tab:purple", lw=1.2)
    ax_tps.set_ylabel("k tokens/s")
    ax_tps.set_xlabel("step")
    ax_tps.grid(alpha=0.3)
    if any(not math.isnan(v) for v in mfu):
        ax_mfu = ax_tps.twinx()
        ax_mfu.plot(x, mfu, color="tab:gray", lw=1, ls="--")
        ax_mfu.set_ylabel("MFU %", color="tab:gray")

    fig.suptitle(title or os.path.basename(os.path.dirname(os.path.abspath(out_path))) or "kiln run")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return len(bad)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("metrics", help="the run's metrics JSONL file")
    ap.add_argument("-o", "--out", help="PNG to write (default: METRICS with .png)")
    ap.add_argument("--title", help="figure title (default: the run folder's name)")
    args = ap.parse_args(argv)
    out = args.out or os.path.splitext(args.metrics)[0] + ".png"
    try:
        m = load_metrics(args.metrics)
    except OSError as e:
        print(f"plot_run.py: cannot read {args.metrics}: {e.strerror}", file=sys.stderr)
        return 1
    if m["bad_lines"]:
        print(f"plot_run.py: {args.metrics}: skipped {m['bad_lines']} unreadable line(s)", file=sys.stderr)
    if not m["steps"]:
        print(f"plot_run.py: {args.metrics}: no step records to plot", file=sys.stderr)
        return 1
    nonfinite = plot(m, out, args.title)
    s = m["steps"]
    print(f"wrote {out}: {len(s)} steps ({s[0]['step']}..{s[-1]['step']}), {nonfinite} without a finite loss, "
          f"{len(m['evals'])} evals, {len(m['events'])} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
