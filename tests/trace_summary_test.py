"""trace_summary_test.py — scripts/trace_summary.py (the summary behind scripts/gpu_trace.sh) on random traces
written the way scripts/ktrace.c writes them: busy time, gaps and the time two or more kernels overlap against
a nanosecond-by-nanosecond count of the same intervals, the window cut, the per-group sums against the groups
the kernels were drawn from, the printed first line, and an empty trace refused with a message."""
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


def reference(kernels, window_ms):
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
    return {"kernels": len(k), "span": t1 - t0, "busy": busy, "gaps": t1 - t0 - busy,
            "overlap": int((cover >= 2).sum()), "groups": groups}


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
            got, want = mod.summarise(read, window_ms), reference(kernels, window_ms)
            for key in ("kernels", "span", "busy", "gaps", "overlap"):
                assert got[key] == want[key], f"seed {seed} trial {trial} window {window_ms}: {key}"
            assert {g: list(v) for g, v in got["groups"].items()} == want["groups"], f"seed {seed}: groups"
        assert reference(kernels, 1e9)["overlap"] > 0, f"seed {seed}: the trace should overlap somewhere"


def test_cli_prints_the_window_and_refuses_an_empty_trace(tmp_path):
    kernels = [(1_000, 2_000, NAMES[0][0], NAMES[0][1], 7), (4_000, 1_000, NAMES[3][0], NAMES[3][1], 7),
               (4_500, 2_000, NAMES[4][0], NAMES[4][1], 13)]
    path = tmp_path / "small.csv"
    write_csv(path, kernels)
    out = subprocess.run([sys.executable, SCRIPT, str(path), "10"], capture_output=True, text=True, check=True)
    first = out.stdout.splitlines()[0]
    # span 1000..6500 = 5.5 us, busy 2 + 2.5 = 4.5 us, gap 1 us, overlap 4500..5000 = 0.5 us
    assert first == ("window 0.0 ms: kernels busy 0.0 ms (81.8%), 3 kernels, gaps 0.0 ms, "
                     "two or more kernels at once 0.0 ms"), first
    assert "SwiGLU" in out.stdout and "RMSNorm" in out.stdout
    empty = tmp_path / "empty.csv"
    write_csv(empty, [])
    bad = subprocess.run([sys.executable, SCRIPT, str(empty)], capture_output=True, text=True)
    assert bad.returncode != 0 and "no kernels" in bad.stderr
