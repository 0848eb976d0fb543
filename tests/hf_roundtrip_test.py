"""hf_roundtrip_test.py — kiln <-> transformers, live, for every architecture kiln supports (llama, mistral, qwen2,
qwen3). Needs torch and transformers, so CI skips it (tests/hf_fixture_test.py covers the same round trip there
from committed files); on a machine that has them:
    KILN_BIN=build/kiln python3 -m pytest -q tests/hf_roundtrip_test.py
or, where pytest is not installed,
    KILN_BIN=build/kiln python3 tests/hf_roundtrip_test.py
1. kiln -> transformers: `kiln init` a tiny model, train it a few CPU steps from that folder (model.hf_dir) with
   checkpoints, `kiln export` the last checkpoint; transformers' AutoModelForCausalLM.from_pretrained loads the
   folder as is (no missing, unexpected or mismatched tensor) and its logits (float64) equal kiln's (FP32) on
   the same tokens within FP32 tolerance.
2. transformers -> kiln -> transformers: a random transformers model (save_pretrained) loads in kiln through
   model.hf_dir, and kiln's export of it holds every tensor byte for byte and a config.json with the same model
   keys; transformers loads the export and computes exactly its original logits; kiln's logits agree too.
"""
import importlib.util
import os
import shutil
import sys

import numpy as np

try:
    import pytest
except ImportError:
    pytest = None
if __name__ == "__main__":  # run as a script (see above): no pytest machinery
    pytest = None

import hf_testutil as hf

try:
    import torch
    import transformers
except ImportError as e:
    WHY = (f"torch and transformers are needed ({e}); CI checks the round trip with tests/hf_fixture_test.py "
           "and scripts/gen_hf_fixtures.py's committed files instead")
    if pytest:
        pytest.skip(WHY, allow_module_level=True)
    print("SKIP:", WHY)
    sys.exit(0)

CASES = ["llama", "mistral", "qwen2", "qwen3"]
B, T = 2, 16

# kiln init settings (on configs/tiny.yaml) per architecture: untied head with Llama 3.1 rope scaling, a
# Mistral, Qwen2's biases with a tied head, Qwen3's q/k norms with head_dim != hidden / heads. init_std 0.1 so
# the logits spread and a misplaced tensor shows.
KILN_INIT = {
    "llama": ["model.arch=llama", "model.tie_embeddings=false", "model.rope_theta=500000",
              "model.rope_scaling=llama3", "model.rope_original_max_pos=16"],
    "mistral": ["model.arch=mistral", "model.tie_embeddings=false"],
    "qwen2": ["model.arch=qwen2", "model.tie_embeddings=true"],
    "qwen3": ["model.arch=qwen3", "model.head_dim=24", "model.tie_embeddings=false"],
}

# FP32 (kiln, CPU) against float64 (transformers) on these small models, as tests/model_parity_test.cc: near
# 1e-7 relative; 1e-5 allows other summation orders while a misplaced tensor or wrong formula gives > 1e-3
LOGITS_RTOL = 1e-5


def parametrize(name, values):
    def deco(f):
        f.cases = values
        return pytest.mark.parametrize(name, values)(f) if pytest else f
    return deco


def gen_module():
    path = os.path.join(hf.SRC, "scripts", "gen_hf_fixtures.py")
    spec = importlib.util.spec_from_file_location("gen_hf_fixtures", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def work_dir(name):
    d = os.path.join(hf.TMP, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def load_as_is(folder):
    """transformers' own loader on a folder, float64, failing on any tensor it had to leave out or invent."""
    model, info = transformers.AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True,
                                                                    attn_implementation="eager")
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info.get(k), f"{folder}: transformers reports {k}: {info.get(k)}"
    return model.double().eval()


def hf_logits(model, stream):
    inputs = np.stack([np.asarray(stream[b * T:b * T + T]) for b in range(B)]).astype(np.int64)
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(inputs)).logits.numpy()


@parametrize("case", CASES)
def test_kiln_export_loads_in_transformers_with_kilns_logits(case):
    if not hf.have_kiln():
        return pytest.skip("KILN_BIN is not set") if pytest else None
    work = work_dir("hf_roundtrip_kiln_" + case)
    init = os.path.join(work, "init")
    hf.kiln(["init", hf.TINY, init, "model.init_std=0.1"] + KILN_INIT[case], work)
    hf.kiln(["train", hf.TINY, f"model.hf_dir={init}", "train.device=cpu", "train.steps=4", "train.warmup_steps=0",
             "train.ckpt_every=2", "train.eval_every=0", "train.name=rt"], work)
    out = os.path.join(work, "exported")
    hf.kiln(["export", os.path.join(work, "runs", "rt", "ckpt"), out], work)
    assert hf.same_tensors(os.path.join(out, "model.safetensors"), os.path.join(init, "model.safetensors")) != [], \
        "the exported weights are the initial ones: training changed nothing, the test would prove little"

    model = load_as_is(out)
    V = model.config.vocab_size
    stream = [int(x) for x in np.random.default_rng(7).integers(0, V, B * T + 1)]
    want = hf_logits(model, stream)
    got = hf.kiln_logits(out, stream, B, T, os.path.join(work, "eval"))
    err = hf.rel_l2(got, want)
    print(f"{case}: kiln vs transformers logits, relative L2 {err:.2e}")
    assert err < LOGITS_RTOL, f"{case}: kiln's logits differ from transformers' by {err:.2e} (relative L2)"


@parametrize("case", CASES)
def test_transformers_model_goes_through_kiln_unchanged(case):
    if not hf.have_kiln():
        return pytest.skip("KILN_BIN is not set") if pytest else None
    gen = gen_module()
    work = work_dir("hf_roundtrip_hf_" + case)
    src = os.path.join(work, "transformers")
    model = gen.random_model(gen.CASES[case], np.random.default_rng(11))
    model.save_pretrained(src, safe_serialization=True)
    original = load_as_is(src)
    V = original.config.vocab_size
    stream = [int(x) for x in np.random.default_rng(13).integers(0, V, B * T + 1)]
    want = hf_logits(original, stream)

    out = hf.export_unchanged(src, work)
    assert hf.same_tensors(os.path.join(out, "model.safetensors"), os.path.join(src, "model.safetensors")) == []
    assert hf.config_problems(os.path.join(out, "config.json"), os.path.join(src, "config.json")) == []
    again = hf_logits(load_as_is(out), stream)
    assert np.array_equal(again, want), "transformers computes other logits from kiln's export of its own model"
    err = hf.rel_l2(hf.kiln_logits(src, stream, B, T, os.path.join(work, "eval")), want)
    print(f"{case}: kiln vs transformers logits on transformers' folder, relative L2 {err:.2e}")
    assert err < LOGITS_RTOL, f"{case}: kiln's logits differ from transformers' by {err:.2e} (relative L2)"


if __name__ == "__main__":
    if not hf.have_kiln():
        sys.exit("set KILN_BIN to the kiln executable")
    failed = 0
    for name, f in list(globals().items()):
        if not (name.startswith("test_") and callable(f)):
            continue
        for case in getattr(f, "cases", [None]):
            try:
                f(case) if case is not None else f()
                print(f"PASS {name}[{case}]")
            except Exception as e:  # noqa: BLE001 - report every case, then fail
                failed += 1
                print(f"FAIL {name}[{case}]: {type(e).__name__}: {e}")
    sys.exit(1 if failed else 0)
