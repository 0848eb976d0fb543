"""hf_fixture_test.py — the Hugging Face round trip without torch (CI): tests/data/hf_roundtrip/ holds, for every
architecture kiln supports, a tiny random model exactly as `transformers` saved it and the logits transformers
computed for fixed tokens (scripts/gen_hf_fixtures.py writes them where transformers is installed). kiln must
load each folder as is (model.hf_dir / --model), give transformers' logits within FP32 tolerance, and
`kiln export` it back to a folder whose config.json says what transformers' says and whose every tensor is
byte for byte the one transformers wrote. hf_roundtrip_test.py does the same live against transformers.
A kiln-only case (kiln init -> kiln export) checks the same identity on kiln's own files."""
import json
import os
import shutil

import numpy as np
import pytest

import hf_testutil as hf

FIXTURES = os.path.join(hf.SRC, "tests", "data", "hf_roundtrip")
CASES = ["llama", "mistral", "qwen2", "qwen3"]


@pytest.fixture(autouse=True)
def need_kiln():
    if not hf.have_kiln():
        pytest.skip("KILN_BIN is not set")


def fixture_dir(case):
    d = os.path.join(FIXTURES, case)
    if not os.path.exists(os.path.join(d, "model", "model.safetensors")):
        pytest.skip(f"{d} is missing: run scripts/gen_hf_fixtures.py where torch and transformers are installed, "
                    "then commit tests/data/hf_roundtrip")
    return d


@pytest.mark.parametrize("case", CASES)
def test_kiln_gives_transformers_logits_for_a_transformers_saved_model(case):
    d = fixture_dir(case)
    with open(os.path.join(d, "reference.json")) as f:
        ref = json.load(f)
    want = np.load(os.path.join(d, "logits.npy"))
    got = hf.kiln_logits(os.path.join(d, "model"), ref["stream"], ref["B"], ref["T"],
                         os.path.join(hf.TMP, "hf_fixture_logits_" + case))
    assert got.shape == want.shape
    # as tests/model_parity_test.cc: FP32 over short dot products lands near 1e-7 relative; 1e-5 leaves room for
    # other summation orders, while a misplaced tensor or a wrong formula gives > 1e-3
    err = hf.rel_l2(got, want)
    assert err < 1e-5, f"{case}: kiln's logits differ from transformers' by {err:.2e} (relative L2)"


@pytest.mark.parametrize("case", CASES)
def test_export_gives_back_transformers_config_and_tensors(case):
    d = fixture_dir(case)
    work = os.path.join(hf.TMP, "hf_fixture_export_" + case)
    shutil.rmtree(work, ignore_errors=True)
    out = hf.export_unchanged(os.path.join(d, "model"), work)
    assert hf.config_problems(os.path.join(out, "config.json"), os.path.join(d, "model", "config.json")) == []
    assert hf.same_tensors(os.path.join(out, "model.safetensors"), os.path.join(d, "model", "model.safetensors")) == []
    gen = os.path.join(d, "model", "generation_config.json")
    if os.path.exists(gen):  # kiln export copies the fine-tuned folder's generation settings
        with open(gen) as f, open(os.path.join(out, "generation_config.json")) as g:
            assert f.read() == g.read()


def test_kiln_init_folder_exports_identically_with_a_clean_config():
    work = os.path.join(hf.TMP, "hf_fixture_init")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    init = os.path.join(work, "init")
    hf.kiln(["init", hf.TINY, init, "model.arch=qwen3", "model.head_dim=24", "model.tie_embeddings=false",
             "model.rms_norm_eps=1e-5"], work)
    out = hf.export_unchanged(init, work)
    assert hf.same_tensors(os.path.join(out, "model.safetensors"), os.path.join(init, "model.safetensors")) == []
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(init, "config.json")) as f:
        assert json.load(f) == cfg
    # the float epsilon is written as the decimal it was given, as transformers writes it
    assert cfg["rms_norm_eps"] == 1e-5 and cfg["head_dim"] == 24 and cfg["model_type"] == "qwen3"
