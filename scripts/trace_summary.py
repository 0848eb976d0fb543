#!/usr/bin/env python3
"""Summarises a kernel trace CSV (scripts/ktrace.c) over its last WINDOW_MS milliseconds: busy time against the
window (the gaps between kernels, by length and by the kernel groups on either side of the longer ones), time by
kernel group, the time two or more kernels ran at once, and the top kernels with their grids.
Usage: trace_summary.py TRACE.csv [WINDOW_MS] [TOP]"""
import collections
import csv
import re
import sys

GAP_CLASSES = [(5_000, "< 5 us"), (100_000, "5-100 us"), (float("inf"), ">= 100 us")]  # upper bounds, ns
LONG_GAP = 10_000  # ns: gaps from this length on are also counted by the groups on either side


def group(name):
    """The phase a kernel belongs to, from its (mangled) name."""
    n = name.lower()
    if "nvjet" in n or "xmma_gemm" in n or "splitkreduce" in n or "dbias" in n:
        return "GEMM (cuBLASLt; bias gradient)"
    if "gemm_sm90" in n or "transpose_bf16" in n:  # kiln's own GEMM, SwiGLU fused, and its weight transpose
        return "GEMM (own sm90, SwiGLU fused)"
    if "cudnn" in n:
        return "attention (cuDNN)"
    for key, label in [("swiglu", "SwiGLU"), ("rms", "RMSNorm"), ("dw_reduce", "RMSNorm"),
                       ("cross_entropy", "softmax-CE"), ("rope", "RoPE"), ("embedding", "embedding"),
                       ("adamw", "optimizer"), ("sum_squares", "optimizer"), ("clip", "optimizer")]:
        if key in n:
            return label
    return "other"


def read(path):
    """The trace's kernels as (start ns, duration ns, name, grid) tuples, by start time."""
    k = [(int(r["Start (ns)"]), int(r["Duration (ns)"]), r["Name"], r["GrdX"] + "x" + r["GrdY"])
         for r in csv.DictReader(open(path))]
    return sorted(k)


def summarise(kernels, window_ms):
    """Over the kernels that start in the last window_ms before the last start: the span (first start to last
    end), busy time (the union of the kernels' intervals), gaps (span minus busy), the time with two or more
    kernels running, and the summed duration and count per group and per kernel name. Gaps are also summed by
    length class (GAP_CLASSES: [ns, count] per label) and, from LONG_GAP on, by the groups of the kernel that
    ended last before the gap and of the one that starts it ([ns, count] per (before, after)). Times in ns."""
    if not kernels:
        raise ValueError("no kernels in the trace")
    last = max(s for s, *_ in kernels)
    k = sorted(x for x in kernels if x[0] >= last - window_ms * 1e6)
    span = max(s + d for s, d, *_ in k) - k[0][0]
    busy, end, end_name = 0, k[0][0], k[0][2]
    gap_classes = {label: [0, 0] for _, label in GAP_CLASSES}
    gap_pairs = collections.defaultdict(lambda: [0, 0])
    events = []
    for s, d, name, _ in k:
        if s > end:
            label = next(label for bound, label in GAP_CLASSES if s - end < bound)
            gap_classes[label][0] += s - end
            gap_classes[label][1] += 1
            if s - end >= LONG_GAP:
                pair = gap_pairs[(group(end_name), group(name))]
                pair[0] += s - end
                pair[1] += 1
        busy += max(0, s + d - max(s, end))
        if s + d > end:
            end, end_name = s + d, name
        events += [(s, 1), (s + d, -1)]
    overlap, active, prev = 0, 0, events[0][0]
    for t, delta in sorted(events):
        if active >= 2:
            overlap += t - prev
        active += delta
        prev = t
    groups = collections.defaultdict(lambda: [0, 0])
    names = collections.defaultdict(lambda: [0, 0, ""])
    for s, d, name, grid in k:
        groups[group(name)][0] += d
        groups[group(name)][1] += 1
        short = re.sub(r"\(.*", "", name)[:90]
        names[short][0] += d
        names[short][1] += 1
        names[short][2] = grid
    return {"kernels": len(k), "span": span, "busy": busy, "gaps": span - busy, "overlap": overlap,
            "groups": dict(groups), "names": dict(names), "gap_classes": gap_classes, "gap_pairs": dict(gap_pairs)}


def main():
    path = sys.argv[1]
    window_ms = float(sys.argv[2]) if len(sys.argv) > 2 else 1000.0
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    try:
        r = summarise(read(path), window_ms)
    except ValueError as e:
        sys.exit(f"trace_summary.py: {path}: {e}")
    print(f"window {r['span'] / 1e6:.1f} ms: kernels busy {r['busy'] / 1e6:.1f} ms "
          f"({100 * r['busy'] / r['span']:.1f}%), {r['kernels']} kernels, gaps {r['gaps'] / 1e6:.1f} ms, "
          f"two or more kernels at once {r['overlap'] / 1e6:.1f} ms")
    print("gaps by length: " + ", ".join(f"{label} {t / 1e6:.2f} ms ({n})"
                                         for label, (t, n) in r["gap_classes"].items()))
    for (before, after), (t, n) in sorted(r["gap_pairs"].items(), key=lambda kv: -kv[1][0])[:5]:
        print(f"  {t / 1e6:8.2f} ms {n:5d}x  gaps of {LONG_GAP // 1000} us or more after {before}, before {after}")
    total = sum(v[0] for v in r["groups"].values())
    for g, (t, n) in sorted(r["groups"].items(), key=lambda kv: -kv[1][0]):
        print(f"  {100 * t / total:5.1f}%  {t / 1e6:9.2f} ms  {n:6d}x  {g}")
    print("top kernels:")
    for name, (t, n, grid) in sorted(r["names"].items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {t / 1e6:8.2f} ms {n:5d}x  avg {t / n / 1e3:8.1f} us  grid {grid:>9s}  {name}")


if __name__ == "__main__":
    main()
