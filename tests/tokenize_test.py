"""tokenize_test.py — scripts/tokenize.py end to end on fresh random text: byte-level and tokenizer.json
round trips (files read back with an independent numpy reader and with `kiln data inspect`), JSONL input,
the supervised loss mask and its alignment, and that kiln's loader reads the output (`kiln bench data`).
"""
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SRC = Path(os.environ.get("KILN_SOURCE_DIR", Path(__file__).resolve().parent.parent))
SCRIPT = SRC / "scripts" / "tokenize.py"
KILN = os.environ.get("KILN_BIN")
needs_kiln = pytest.mark.skipif(not KILN, reason="run through ctest: needs KILN_BIN")


@pytest.fixture
def rng():
    seed = int(os.environ.get("KILN_TEST_SEED") or random.SystemRandom().getrandbits(48))
    print(f"[seed] tokenize_test: KILN_TEST_SEED={seed}", file=sys.stderr)
    return random.Random(seed)


@pytest.fixture
def tmp(tmp_path):
    """A fresh folder under the build's test tmp folder (removed afterwards unless KILN_KEEP_TMP=1)."""
    base = os.environ.get("KILN_TEST_TMP")
    if not base:
        yield tmp_path
        return
    d = Path(base) / f"tokenize_test.{os.getpid()}.{random.SystemRandom().getrandbits(32):08x}"
    d.mkdir(parents=True)
    yield d
    if os.environ.get("KILN_KEEP_TMP") != "1":
        shutil.rmtree(d, ignore_errors=True)


WORDS = ["the", "river", "stone", "light", "över", "naïve", "café", "日本", "λόγος", "and", "of", "a", "—", "🙂"]


def random_line(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14)))


def read_tokfile(path):
    """An independent reader of the format: header fields, tokens, mask bits (or None)."""
    raw = Path(path).read_bytes()
    assert raw[:8] == b"BIN.TOK\n"
    h = np.frombuffer(raw[:1024], dtype="<i4")
    version, width, count, vocab, has_mask = (int(x) for x in h[2:7])
    assert (version, width) == (2, 4)
    assert not h[7:].any()
    tokens = np.frombuffer(raw[1024:1024 + 4 * count], dtype="<i4")
    mask = None
    if has_mask:
        packed = np.frombuffer(raw[1024 + 4 * count:], dtype=np.uint8)
        assert len(packed) == (count + 7) // 8
        mask = np.unpackbits(packed, bitorder="little")[:count]
    else:
        assert len(raw) == 1024 + 4 * count
    return {"count": count, "vocab": vocab, "tokens": tokens, "mask": mask}


def tokenize(*args):
    r = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def inspect_json(*paths):
    r = subprocess.run([KILN, "data", "inspect", "--json", *map(str, paths)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


@needs_kiln
def test_bytes_round_trip_split_by_lines(rng, tmp):
    lines = [f"{i} {random_line(rng)}\n" for i in range(rng.randint(200, 400))]  # numbered: all distinct
    src = tmp / "in.txt"
    src.write_text("".join(lines), encoding="utf-8")
    out = tmp / "out"
    r = tokenize(src, "--out-dir", out, "--bytes", "--text-docs", "line", "--eval-fraction", "0.2")
    assert "tokenize:" in r.stderr  # progress and summary on stderr
    train, ev = read_tokfile(out / "train.bin"), read_tokfile(out / "eval.bin")
    assert train["vocab"] == ev["vocab"] == 256
    assert train["mask"] is None and ev["mask"] is None
    train_lines = bytes(train["tokens"].astype(np.uint8)).decode("utf-8").splitlines(keepends=True)
    eval_lines = bytes(ev["tokens"].astype(np.uint8)).decode("utf-8").splitlines(keepends=True)
    assert sorted(train_lines + eval_lines) == sorted(lines)
    assert train_lines == [x for x in lines if x in set(train_lines)], "train keeps the input order"
    # 0.2 of >= 200 documents: the eval share is far from 0 and 1 (binomial sd < 0.03)
    assert 0.08 < len(eval_lines) / len(lines) < 0.35
    info = inspect_json(out / "train.bin", out / "eval.bin")
    assert info[0]["tokens"] == train["count"] and info[1]["tokens"] == ev["count"]
    assert info[0]["vocab"] == 256 and info[0]["has_mask"] is False
    assert info[0]["min_id"] == int(train["tokens"].min()) and info[0]["max_id"] == int(train["tokens"].max())
    assert info[2]["tokens"] == train["count"] + ev["count"]


def test_split_is_deterministic_and_eos_separates_paragraphs(rng, tmp):
    paras = ["".join(random_line(rng) + "\n" for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(30, 60))]
    text = "\n\n".join(paras) + "\n"
    src = tmp / "in.txt"
    src.write_text(text, encoding="utf-8")
    tokenize(src, "--out-dir", tmp / "a", "--bytes", "--eos", "--eval-fraction", "0")
    assert not (tmp / "a" / "eval.bin").exists()
    t = read_tokfile(tmp / "a" / "train.bin")
    assert t["vocab"] == 257
    toks = t["tokens"]
    assert toks[-1] == 256
    docs = np.split(toks, np.nonzero(toks == 256)[0] + 1)[:-1]
    assert len(docs) == len(paras)
    assert b"".join(bytes(d[:-1].astype(np.uint8)) for d in docs).decode("utf-8") == text  # exact round trip
    # the same input gives byte-identical files
    tokenize(src, "--out-dir", tmp / "b", "--bytes", "--eos", "--eval-fraction", "0.3")
    tokenize(src, "--out-dir", tmp / "c", "--bytes", "--eos", "--eval-fraction", "0.3")
    for split in ("train.bin", "eval.bin"):
        assert (tmp / "b" / split).read_bytes() == (tmp / "c" / split).read_bytes()


def build_tokenizer(texts, path, rng):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300 + rng.randint(0, 200), special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.save(str(path))
    return tok


@needs_kiln
def test_tokenizer_json_round_trip_and_loader_reads_it(rng, tmp):
    docs = ["".join(random_line(rng) + "\n" for _ in range(rng.randint(2, 8))) for _ in range(rng.randint(150, 250))]
    src = tmp / "in.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": rng.randint(0, 9), "content": d}) + "\n")
    tok = build_tokenizer(docs, tmp / "tokenizer.json", rng)
    eos = tok.token_to_id("<|endoftext|>")
    out = tmp / "out"
    tokenize(src, "--out-dir", out, "--tokenizer", tmp / "tokenizer.json", "--jsonl-field", "content", "--eos",
             "--eval-fraction", "0.1")
    got = []
    for split in ("train.bin", "eval.bin"):
        t = read_tokfile(out / split)
        assert t["vocab"] == tok.get_vocab_size(with_added_tokens=True)
        assert t["tokens"].max() < t["vocab"] and t["tokens"][-1] == eos
        parts = np.split(t["tokens"], np.nonzero(t["tokens"] == eos)[0] + 1)[:-1]
        got += [tok.decode(p[:-1].tolist()) for p in parts]
    assert sorted(got) == sorted(docs)
    # the loader opens the files, checks them and reads batches (B=32, T=1024: needs >= 1025 tokens)
    assert read_tokfile(out / "train.bin")["count"] > 1025
    r = subprocess.run([KILN, "bench", "data", "--files", f"{out}/*.bin", "--seconds", "0.05"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["bench"] == "data" and last["files"] == 2 and last["tokens_per_s"] > 0


@needs_kiln
def test_supervised_mask_marks_response_tokens_as_targets(rng, tmp):
    rows = [{"q": random_line(rng) + "?", "a": random_line(rng)} for _ in range(rng.randint(40, 80))]
    src = tmp / "sft.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp / "out"
    tokenize(src, "--out-dir", out, "--bytes", "--eos", "--prompt-field", "q", "--response-field", "a",
             "--eval-fraction", "0")
    t = read_tokfile(out / "train.bin")
    assert t["mask"] is not None
    # expected bits: bit i = 1 when token i is to be predicted, i.e. it belongs to a response or is its EOS
    want = np.concatenate([np.r_[np.zeros(len(r["q"].encode()), np.uint8), np.ones(len(r["a"].encode()) + 1, np.uint8)]
                           for r in rows])
    np.testing.assert_array_equal(t["mask"], want)
    first = len(rows[0]["q"].encode())
    assert t["mask"][first - 1] == 0 and t["mask"][first] == 1, "the first response token is a target"
    info = inspect_json(out / "train.bin")
    assert info[0]["has_mask"] is True
    assert abs(info[0]["mask_coverage"] - want.mean()) < 1e-6  # printed with 6 decimals


def test_bad_jsonl_names_file_and_line(rng, tmp):
    src = tmp / "bad.jsonl"
    n = rng.randint(1, 5)
    src.write_text("".join(json.dumps({"text": "ok"}) + "\n" for _ in range(n)) + json.dumps({"txt": "x"}) + "\n")
    r = subprocess.run([sys.executable, str(SCRIPT), str(src), "--out-dir", str(tmp / "o"), "--bytes"],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert f"{src}:{n + 1}: no string field 'text'" in r.stderr


def test_shards_hold_at_most_n_tokens_and_concatenate_to_the_whole(rng, tmp):
    src = tmp / "in.txt"
    src.write_text("\n\n".join(random_line(rng) for _ in range(rng.randint(50, 100))) + "\n", encoding="utf-8")
    tokenize(src, "--out-dir", tmp / "one", "--bytes", "--eos", "--eval-fraction", "0")
    whole = read_tokfile(tmp / "one" / "train.bin")["tokens"]
    n = rng.randint(50, 400)
    tokenize(src, "--out-dir", tmp / "many", "--bytes", "--eos", "--eval-fraction", "0", "--shard-tokens", n)
    shards = sorted((tmp / "many").glob("train-*.bin"))
    assert len(shards) == -(-len(whole) // n)
    parts = [read_tokfile(p)["tokens"] for p in shards]
    assert all(len(p) == n for p in parts[:-1]) and 0 < len(parts[-1]) <= n
    np.testing.assert_array_equal(np.concatenate(parts), whole)
