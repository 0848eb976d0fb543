"""quant_mldtypes_test.py — kiln's FP8/FP4 codecs against ml-dtypes on a FRESH random sweep, every run.

The GoogleTest QuantMlDtypes.CodecsMatchMlDtypesOnSweep compares kiln with a sweep file; by default the
committed fixture tests/data/quant_mldtypes.bin. Here ml-dtypes (installed in CI) encodes new random
inputs with scripts/gen_quant_fixtures.py, and the same GoogleTest runs on them through
KILN_QUANT_MLDTYPES_SWEEP. The test binary sits beside this test's working directory (build/tests).
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _load_generator():
    src = Path(os.environ.get("KILN_SOURCE_DIR", Path(__file__).resolve().parent.parent))
    spec = importlib.util.spec_from_file_location("gen_quant_fixtures", src / "scripts" / "gen_quant_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _find_test_binary():
    candidates = []
    if os.environ.get("KILN_TEST_TMP"):
        candidates.append(Path(os.environ["KILN_TEST_TMP"]).parent / "kiln_tests")
    if os.environ.get("KILN_BIN"):
        candidates.append(Path(os.environ["KILN_BIN"]).parent / "tests" / "kiln_tests")
    candidates.append(Path.cwd() / "kiln_tests")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return None


def test_codecs_match_mldtypes_on_fresh_sweep(tmp_path_factory):
    if not os.environ.get("KILN_BIN"):
        pytest.skip("run through ctest: needs the build's kiln_tests binary")
    binary = _find_test_binary()
    assert binary is not None, "kiln_tests not found next to KILN_TEST_TMP or KILN_BIN"
    gen = _load_generator()
    env_seed = os.environ.get("KILN_TEST_SEED")
    seed = int(env_seed, 0) if env_seed else int.from_bytes(os.urandom(8), "little")
    print(f"[seed] ml-dtypes sweep: KILN_TEST_SEED={seed}", file=sys.stderr)
    base = Path(os.environ["KILN_TEST_TMP"]) if os.environ.get("KILN_TEST_TMP") else tmp_path_factory.mktemp("q")
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"quant_mldtypes_sweep.{os.getpid()}.bin"
    path.write_bytes(gen.sweep(seed, 60000))
    try:
        env = dict(os.environ, KILN_QUANT_MLDTYPES_SWEEP=str(path))
        r = subprocess.run([str(binary), "--gtest_filter=QuantMlDtypes.CodecsMatchMlDtypesOnSweep"],
                           env=env, capture_output=True, text=True, timeout=300)
        out = r.stdout + r.stderr
        assert r.returncode == 0, out[-4000:]
        assert "[  PASSED  ] 1 test" in out, out[-4000:]  # it really ran, and on our file
        assert f"[sweep] {path}:" in out and f"seed {seed}" in out, out[-4000:]
    finally:
        path.unlink(missing_ok=True)
