"""trace_summary_test.py — scripts/trace_summary.py (the summary behind scripts/gpu_trace.sh) on random traces
written the way scripts/ktrace.c writes them: busy time, gaps and the time two or more kernels overlap against
a nanosecond-by-nanosecond count of the same intervals, the gaps by length and the longer ones by the groups on
either side, the window cut, the per-group sums against the groups the kernels were drawn from, the printed
lines, and an empty trace refused with a message."""
import csv
import importlib.util
import os
import random
import subprocess
import sys

import numpy as np

SRC = os.environ.get("KILN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
SCRIPT = os.path.join(SRC, "scripts", "trace_summary.py")

# Kernel names as CUPTI reports them (mangled, one demangled with a comma inside the quotes) and their phase.
NAMES = [
    ("nvjet_sm90_tst_176x128_64x5_1x2_h_bz_TNN", "GEMM (cuBLASLt; bias gradient)"),
    ("_Z20dbias_partial_kernelILi8EEvPfiPKtiii", "GEMM (cuBLASLt; bias gradient)"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26", "attention (cuDNN)"),
    ("_ZN41_GLOBAL__N__6761dd42_9_swiglu_cu_99a8704e10swiglu_bwdILi8EEEvPtPKtS3_ii", "SwiGLU"),
    ("void rms_backward<8, 4>(unsigned short*, float*)", "RMSNorm"),
    ("_ZN49_GLOBAL__N__cbfb395e_16_cross_entropy_cu_9879cc9a18cross_entropy_rowsILi8ELi6EE", "softmax-CE"),
    ("_ZN8kl_other_kernel", "other"),
    ("_ZN45_GLOBAL__N__84665b14_12_gemm_sm90_cu_4b2037269gemm_sm90ILi2EEEv14CUtensorMap_stS1_NS_7OutMapsEiii",
     "GEMM (own sm90, SwiGLU fused)"),
    ("_ZN46_GLOBAL__N__2f0c6e1a_10_convert_cu_0c3e4b1a20transpose_bf16_pairsEPjPKjii", "GEMM (own sm90, SwiGLU fused)"),
]


def load_module():
    spec = importlib.util.spec_from_file_location("trace_summary", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def random_trace(rng, n=400, horizon=3_000_000):
    """Kernels on two streams: each stream's kernels follow one another with random gaps (sometimes none), so
    the streams overlap each other at random."""
    kernels = []
    for stream in (7, 13):
        t = rng.randrange(0, 20_000)
        for _ in range(n // 2):
            d = rng.randrange(1, 40_000)
            name, grp = rng.choice(NAMES)
            kernels.append((t, d, name, grp, stream))
            t += d + (0 if rng.random() < 0.3 else rng.randrange(1, 15_000))
            if t > horizon:
                break
    return kernels


def write_csv(path, kernels):
    with open(path, "w") as f:
        f.write("Start (ns),Duration (ns),GrdX,GrdY,GrdZ,BlkX,BlkY,BlkZ,Stream,Name\n")
        for s, d, name, _, stream in kernels:
            f.write(f'{s},{d},132,1,1,384,1,1,{stream},"{name}"\n')


def reference(kernels, window_ms, classes):
    """The summary by counting each nanosecond; classes: the script's GAP_CLASSES (upper bound ns, label)."""
    last = max(k[0] for k in kernels)
    k = [x for x in kernels if x[0] >= last - window_ms * 1e6]
    t0, t1 = min(x[0] for x in k), max(x[0] + x[1] for x in k)
    cover = np.zeros(t1 - t0, dtype=np.int32)
    groups = {}
    for s, d, _, grp, _ in k:
        cover[s - t0:s - t0 + d] += 1
        g = groups.setdefault(grp, [0, 0])
        g[0] += d
        g[1] += 1
    busy = int((cover > 0).sum())
    # the idle runs: where the covered / idle state flips
    idle = np.concatenate(([0], (cover == 0).astype(np.int8), [0]))
    flips = np.flatnonzero(np.diff(idle))
    runs = flips[1::2] - flips[0::2]
    gap_classes = {label: [0, 0] for _, label in classes}
    for r in runs:
        label = next(label for bound, label in classes if r < bound)
        gap_classes[label][0] += int(r)
        gap_classes[label][1] += 1
    return {"kernels": len(k), "span": t1 - t0, "busy": busy, "gaps": t1 - t0 - busy,
            "overlap": int((cover >= 2).sum()), "groups": groups, "gap_classes": gap_classes, "runs": runs}


def test_summary_matches_a_nanosecond_count(tmp_path):
    mod = load_module()
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    for trial in range(4):
        kernels = random_trace(rng)
        path = tmp_path / f"trace{trial}.csv"
        write_csv(path, kernels)
        read = mod.read(str(path))
        assert len(read) == len(kernels), f"seed {seed}: the CSV reader lost rows (quoted names with commas?)"
        for window_ms in (1e9, 1.0, 0.25):  # all of it, and two cuts that drop the first kernels
            got, want = mod.summarise(read, window_ms), reference(kernels, window_ms, mod.GAP_CLASSES)
            for key in ("kernels", "span", "busy", "gaps", "overlap", "gap_classes"):
                assert got[key] == want[key], f"seed {seed} trial {trial} window {window_ms}: {key}"
            assert {g: list(v) for g, v in got["groups"].items()} == want["groups"], f"seed {seed}: groups"
            long_runs = want["runs"][want["runs"] >= mod.LONG_GAP]
            pairs = got["gap_pairs"].values()
            assert [sum(p[0] for p in pairs), sum(p[1] for p in pairs)] == [int(long_runs.sum()), len(long_runs)], \
                f"seed {seed}: the long gaps by neighbours do not add up to the long gaps"
        assert reference(kernels, 1e9, mod.GAP_CLASSES)["overlap"] > 0, f"seed {seed}: the trace should overlap"


def test_cli_prints_the_window_and_refuses_an_empty_trace(tmp_path):
    kernels = [(1_000, 2_000, NAMES[0][0], NAMES[0][1], 7), (4_000, 1_000, NAMES[3][0], NAMES[3][1], 7),
               (4_500, 2_000, NAMES[4][0], NAMES[4][1], 13), (156_500, 1_000, NAMES[5][0], NAMES[5][1], 7)]
    path = tmp_path / "small.csv"
    write_csv(path, kernels)
    out = subprocess.run([sys.executable, SCRIPT, str(path), "10"], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    # span 1000..157500 = 156.5 us, busy 2 + 2.5 + 1 = 5.5 us, gaps 1 us and 150 us (after the RMSNorm kernel,
    # which ends last, before softmax-CE), overlap 4500..5000 = 0.5 us
    assert lines[0] == ("window 0.2 ms: kernels busy 0.0 ms (3.5%), 4 kernels, gaps 0.2 ms, "
                        "two or more kernels at once 0.0 ms"), lines[0]
    assert lines[1] == "gaps by length: < 5 us 0.00 ms (1), 5-100 us 0.00 ms (0), >= 100 us 0.15 ms (1)", lines[1]
    assert lines[2] == "      0.15 ms     1x  gaps of 10 us or more after RMSNorm, before softmax-CE", lines[2]
    assert "SwiGLU" in out.stdout
    empty = tmp_path / "empty.csv"
    write_csv(empty, [])
    bad = subprocess.run([sys.executable, SCRIPT, str(empty)], capture_output=True, text=True)
    assert bad.returncode != 0 and "no kernels" in bad.stderr
