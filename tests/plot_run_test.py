"""plot_run_test.py — scripts/plot_run.py on a metrics file shaped like a real run log (nulls for
non-finite numbers, evals, events, a resumed run that repeats steps, a torn last line): the PNG comes out
and is a real image, the summary counts what the file holds, and an empty log is an error."""
import importlib.util
import json
import math
import os
import random
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402

SRC = os.environ.get("KILN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
SCRIPT = os.path.join(SRC, "scripts", "plot_run.py")


def load_module():
    spec = importlib.util.spec_from_file_location("plot_run", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_log(path, rng):
    """120 steps, then a resume from step 100 that logs 100..150 again with different losses; steps 7 and
    130 have a non-finite loss (null + nonfinite, as the run log writes them); MFU and memory on GPU only."""
    lines = []
    for phase, (start, end) in enumerate([(1, 120), (100, 150)]):
        for s in range(start, end + 1):
            rec = {"type": "step", "step": s, "total_steps": 150, "loss": 4.0 / math.sqrt(s) + 0.1 * phase +
                   rng.uniform(0, 0.05), "grad_norm": rng.uniform(0.5, 2), "lr": 3e-4 * min(1, s / 10),
                   "tokens_per_s": rng.uniform(4e4, 6e4), "elapsed_s": s * 0.1, "tokens_seen": s * 4096}
            if phase == 1:
                rec["mfu"] = rng.uniform(0.3, 0.45)
                rec["mem_bytes"] = 12.3 * 2**30
            if s in (7, 130):
                rec["loss"] = None
                rec["nonfinite"] = ["loss"]
            lines.append(json.dumps(rec))
            if s % 50 == 0:
                lines.append(json.dumps({"type": "eval", "step": s, "loss": 3.0 / math.sqrt(s) + 0.2,
                                         "bits_per_token": 1.0}))
        lines.append(json.dumps({"type": "event", "kind": "checkpoint", "message": "saved \"ckpt\"\n"}))
    lines.append(json.dumps({"type": "eval", "step": 150, "loss": None, "nonfinite": ["loss"]}))
    text = "\n".join(lines) + "\n" + '{"type":"step","step":151,"lo'  # a run killed mid-line
    with open(path, "w") as f:
        f.write(text)


def test_plot_writes_a_png_from_a_log_with_nulls_resumes_and_a_torn_line(tmp_path):
    seed = int(os.environ.get("KILN_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"[seed] plot_run: KILN_TEST_SEED={seed}")
    log = tmp_path / "run1" / "metrics.jsonl"
    log.parent.mkdir()
    write_log(log, random.Random(seed))
    r = subprocess.run([sys.executable, SCRIPT, str(log)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    png = tmp_path / "run1" / "metrics.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(png)
    assert img.shape[0] >= 600 and img.shape[1] >= 600, img.shape  # 9x9 inches at 100 dpi
    assert img[..., :3].std() > 0.01, "the image must not be blank"
    # 150 distinct steps (100..120 logged twice), steps 7 and 130 without a finite loss, evals at
    # 50, 100 (twice: one kept), 150 (twice, the later one null), 2 events; the torn line is reported
    assert "150 steps (1..150), 2 without a finite loss, 3 evals, 2 events" in r.stdout, r.stdout
    assert "skipped 1 unreadable line" in r.stderr, r.stderr


def test_load_keeps_the_later_record_of_a_repeated_step_and_reads_null_as_gap(tmp_path):
    mod = load_module()
    log = tmp_path / "m.jsonl"
    write_log(log, random.Random(1))
    m = mod.load_metrics(log)
    by_step = {r["step"]: r for r in m["steps"]}
    assert [r["step"] for r in m["steps"]] == list(range(1, 151))
    assert "mfu" in by_step[110] and "mfu" not in by_step[99], "the resumed run's record must win"
    assert math.isnan(mod._num(by_step[7]["loss"])) and math.isnan(mod._num(by_step[130]["loss"]))
    assert mod._num(True) != mod._num(True), "a boolean is not a number"
    assert m["bad_lines"] == 1


def test_explicit_output_and_title(tmp_path):
    log = tmp_path / "m.jsonl"
    log.write_text(json.dumps({"type": "step", "step": 1, "loss": 2.0, "lr": None, "tokens_per_s": 1.0}) + "\n")
    out = tmp_path / "out" / "x.png"
    out.parent.mkdir()
    r = subprocess.run([sys.executable, SCRIPT, str(log), "-o", str(out), "--title", "t"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_a_log_without_steps_is_an_error(tmp_path):
    log = tmp_path / "m.jsonl"
    log.write_text('{"type":"event","kind":"start","message":"x"}\nnot json\n')
    r = subprocess.run([sys.executable, SCRIPT, str(log)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "no step records" in r.stderr
    assert not (tmp_path / "m.png").exists()
    r = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "missing.jsonl")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "cannot read" in r.stderr
