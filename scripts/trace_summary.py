#!/usr/bin/env python3
"""Summarises a kernel trace CSV (scripts/ktrace.c) over its last WINDOW_MS milliseconds: busy time against the
window (the gaps between kernels), time by kernel group, the time two streams overlapped, and the top kernels
with their grids.  Usage: trace_summary.py TRACE.csv [WINDOW_MS] [TOP]"""
import collections
import csv
import re
import sys


def group(name):
    n = name.lower()
    if "nvjet" in n or "xmma_gemm" in n or "splitkreduce" in n or "dbias" in n:
        return "GEMM (cuBLASLt; bias gradient)"
    if "cudnn" in n:
        return "attention (cuDNN)"
    for key, label in [("swiglu", "SwiGLU"), ("rms", "RMSNorm"), ("dw_reduce", "RMSNorm"),
                       ("cross_entropy", "softmax-CE"), ("rope", "RoPE"), ("embedding", "embedding"),
                       ("adamw", "optimizer"), ("sum_squares", "optimizer"), ("clip", "optimizer")]:
        if key in n:
            return label
    return "other"


def main():
    path = sys.argv[1]
    window_ms = float(sys.argv[2]) if len(sys.argv) > 2 else 1000.0
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    k = []
    for r in csv.DictReader(open(path)):
        k.append((int(r["Start (ns)"]), int(r["Duration (ns)"]), r["Name"], r["GrdX"] + "x" + r["GrdY"], r["Stream"]))
    if not k:
        sys.exit(f"{path}: no kernels")
    k.sort()
    k = [x for x in k if x[0] >= k[-1][0] - window_ms * 1e6]
    span = k[-1][0] + k[-1][1] - k[0][0]
    busy, end, gaps = 0, k[0][0], 0
    events = []
    for s, d, *_ in k:
        gaps += max(0, s - end)
        busy += max(0, s + d - max(s, end))
        end = max(end, s + d)
        events += [(s, 1), (s + d, -1)]
    overlap, active, last = 0, 0, events[0][0]
    for t, delta in sorted(events):
        if active >= 2:
            overlap += t - last
        active += delta
        last = t
    print(f"window {span / 1e6:.1f} ms: kernels busy {busy / 1e6:.1f} ms ({100 * busy / span:.1f}%), {len(k)} kernels, "
          f"gaps {gaps / 1e6:.1f} ms, two or more kernels at once {overlap / 1e6:.1f} ms")
    groups = collections.defaultdict(lambda: [0.0, 0])
    names = collections.defaultdict(lambda: [0.0, 0, ""])
    for s, d, name, grid, _ in k:
        groups[group(name)][0] += d
        groups[group(name)][1] += 1
        short = re.sub(r"\(.*", "", name)[:90]
        names[short][0] += d
        names[short][1] += 1
        names[short][2] = grid
    total = sum(v[0] for v in groups.values())
    for g, (t, n) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        print(f"  {100 * t / total:5.1f}%  {t / 1e6:9.2f} ms  {n:6d}x  {g}")
    print("top kernels:")
    for name, (t, n, grid) in sorted(names.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {t / 1e6:8.2f} ms {n:5d}x  avg {t / n / 1e3:8.1f} us  grid {grid:>9s}  {name}")


if __name__ == "__main__":
    main()
