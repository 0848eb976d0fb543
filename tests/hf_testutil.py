"""hf_testutil.py — helpers of the Hugging Face round-trip tests (hf_fixture_test.py, hf_roundtrip_test.py): run
the kiln executable, write token files, kiln's logits through `kiln eval --dump-logits`, a kiln export of a
Hugging Face folder that leaves its weights untouched, and comparisons of config.json files and safetensors
files. numpy only: no torch here, so the CI side of the round trip needs none."""
import json
import os
import struct
import subprocess

import numpy as np

SRC = os.environ.get("KILN_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
KILN = os.environ.get("KILN_BIN", "")
TMP = os.environ.get("KILN_TEST_TMP", "/tmp")
TINY = os.path.join(SRC, "configs", "tiny.yaml")

# The keys that define the function a config.json describes; kiln must write each with transformers' value.
MODEL_KEYS = ["architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
              "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "hidden_act",
              "tie_word_embeddings", "rope_parameters"]


def have_kiln():
    return bool(KILN) and os.access(KILN, os.X_OK)


def kiln(args, cwd):
    """Runs kiln with `args` (a list) in cwd; fails the test with its output unless it exits 0."""
    r = subprocess.run([KILN] + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"kiln {' '.join(map(str, args))} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def write_tokens(path, ids, vocab, all_masked=False):
    """LLMQ token file (data/tokfile.h): 1024-byte header, int32 tokens, and with all_masked an all-zero
    target mask, so every target is ignored."""
    ids = np.asarray(ids, dtype="<i4")
    header = struct.pack("<8s5i", b"BIN.TOK\n", 2, 4, len(ids), vocab, 1 if all_masked else 0).ljust(1024, b"\0")
    with open(path, "wb") as f:
        f.write(header)
        f.write(ids.tobytes())
        if all_masked:
            f.write(bytes((len(ids) + 7) // 8))


def kiln_logits(model_dir, stream, B, T, work):
    """kiln's logits (B, T, V) for inputs rows stream[b*T : b*T+T] (the loader's samples), from
    `kiln eval --dump-logits`, and the inputs kiln saw (--dump-inputs) to make sure they are those rows."""
    with open(os.path.join(model_dir, "config.json")) as f:
        V = json.load(f)["vocab_size"]
    os.makedirs(work, exist_ok=True)
    tok = os.path.join(work, "eval_tokens.bin")
    write_tokens(tok, stream, V)
    lp, ip = os.path.join(work, "kiln_logits.npy"), os.path.join(work, "kiln_inputs.npy")
    kiln(["eval", "--model", model_dir, "--data", tok, "--batches", "1", "--dump-logits", lp, "--dump-inputs", ip,
          "--quiet", "data.source=files", f"data.seq_len={T}", f"train.batch_size={B}"], work)
    want_inputs = np.stack([np.asarray(stream[b * T:b * T + T]) for b in range(B)])
    assert (np.load(ip) == want_inputs).all(), "kiln eval read other tokens than the reference's inputs"
    return np.load(lp)


def export_unchanged(hf_dir, work, name="roundtrip"):
    """Loads hf_dir in `kiln train` (model.hf_dir), takes one optimizer step whose targets are all masked out
    (the trainer counts it and changes nothing: trainer.h), checkpoints it and `kiln export`s the checkpoint.
    Returns the exported folder, whose weights must be hf_dir's."""
    with open(os.path.join(hf_dir, "config.json")) as f:
        V = json.load(f)["vocab_size"]
    os.makedirs(work, exist_ok=True)
    tok = os.path.join(work, "masked.bin")
    write_tokens(tok, np.arange(17) % V, V, all_masked=True)
    out = kiln(["train", TINY, f"model.hf_dir={hf_dir}", "train.device=cpu", "data.source=files", f"data.train={tok}",
                "data.seq_len=8", "train.batch_size=2", "train.steps=1", "train.warmup_steps=0", "train.ckpt_every=1",
                "train.eval_every=0", f"train.name={name}"], work)
    assert "step 1 skipped" in out, out
    exported = os.path.join(work, name + "_export")
    kiln(["export", os.path.join(work, "runs", name, "ckpt"), exported, "--force"], work)
    return exported


def read_safetensors(path):
    """{name: (dtype, shape, raw bytes)} and the __metadata__ of a .safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    return {k: (v["dtype"], list(v["shape"]), data[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
            for k, v in header.items()}, meta


def same_tensors(got_path, want_path):
    """Problems (a list of strings, empty when none) between two safetensors files: names, dtypes, shapes, bytes."""
    got, _ = read_safetensors(got_path)
    want, _ = read_safetensors(want_path)
    problems = []
    if set(got) != set(want):
        problems.append(f"names differ: only in kiln's {sorted(set(got) - set(want))}, "
                        f"only in the reference {sorted(set(want) - set(got))}")
    for k in sorted(set(got) & set(want)):
        if got[k][:2] != want[k][:2]:
            problems.append(f"{k}: {got[k][:2]} vs {want[k][:2]}")
        elif got[k][2] != want[k][2]:
            problems.append(f"{k}: values differ")
    return problems


def json_equal(a, b):
    """JSON values equal, numbers compared as numbers (10000 == 10000.0)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def config_problems(got_path, want_path):
    """Problems between kiln's config.json and transformers': every MODEL_KEYS entry present in both with equal
    values, and any other key both have equal too (head_dim: transformers may write null for hidden / heads)."""
    with open(got_path) as f:
        got = json.load(f)
    with open(want_path) as f:
        want = json.load(f)
    problems = [f"{k}: missing in kiln's config.json" for k in MODEL_KEYS if k in want and k not in got]
    problems += [f"{k}: missing in the reference config.json" for k in MODEL_KEYS if k not in want]
    for k in sorted(set(got) & set(want)):
        g, w = got[k], want[k]
        if k == "head_dim" and w is None:
            w = want["hidden_size"] // want["num_attention_heads"]
        if not json_equal(g, w):
            problems.append(f"{k}: kiln wrote {g!r}, transformers {w!r}")
    return problems


def rel_l2(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
