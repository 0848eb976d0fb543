#!/usr/bin/env python3
"""tokenize.py — text or JSONL in, kiln/LLMQ token files out (DIR/train.bin and DIR/eval.bin).

    python scripts/tokenize.py INPUT... --out-dir DIR [--tokenizer tokenizer.json | --bytes]
        [--eval-fraction 0.01] [--jsonl-field text] [--eos] [--prompt-field P --response-field R]

Inputs: *.jsonl / *.ndjson (one JSON object per line; the document is its --jsonl-field) or plain text
(documents are paragraphs separated by blank lines, or lines, or whole files: --text-docs), optionally
gzipped (*.gz). Tokenizers: a Hugging Face tokenizer.json through the `tokenizers` package, or bytes
(UTF-8 bytes are the ids, vocab 256; with --eos the end-of-document id is 256 and the vocab 257).

Split: a document goes to eval when the first 8 bytes of BLAKE2b(document) read as a fraction are below
--eval-fraction, so the split is deterministic, independent of input order, and duplicate documents never
straddle train and eval. If that picks no eval document (tiny inputs), the one with the smallest hash goes.

File format (read by `kiln data inspect` and kiln's loader; the same as LLMQ's): a 1024-byte header of 256
little-endian int32 — b"BIN.TOK\\n", version 2, bytes per token 4, token count, vocab size, has-mask flag,
zeros — then the int32 tokens, then, with a mask, ceil(count/8) bytes of LSB-first bits.

Mask alignment (kiln's convention): bit i = 1 means token i is a valid TARGET, i.e. the loss includes
predicting token i from the tokens before it. With --prompt-field/--response-field (supervised
fine-tuning) prompt tokens get 0 and response tokens (and the EOS after them) get 1, so the model is
trained to produce the response, including its first token, and to stop. LLMQ applied the bit of input
position p to target p, one token earlier; kiln does not.

Only numpy is needed (plus `tokenizers` for --tokenizer). Progress goes to stderr.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import time

import numpy as np

HEADER_BYTES = 1024
MAX_TOKENS = 2**31 - 1  # the header's count is an int32
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|im_end|>", "<eos>", "<|end_of_text|>", "[SEP]")


# ---- input documents ------------------------------------------------------------------------------

def open_text(path):
    raw = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
    return raw, io.TextIOWrapper(raw, encoding="utf-8", newline="")


def is_jsonl(path, fmt):
    if fmt != "auto":
        return fmt == "jsonl"
    base = path[:-3] if path.endswith(".gz") else path
    return base.endswith((".jsonl", ".ndjson"))


def text_documents(f, mode):
    """Yields documents whose concatenation is the file's text exactly."""
    if mode == "file":
        text = f.read()
        if text:
            yield text
        return
    if mode == "line":
        for line in f:
            yield line
        return
    buf, seen_blank, has_text = [], False, False
    for line in f:
        blank = line.strip() == ""
        if not blank and seen_blank and has_text:
            yield "".join(buf)
            buf, seen_blank, has_text = [], False, False
        buf.append(line)
        seen_blank = seen_blank or blank
        has_text = has_text or not blank
    if buf:
        yield "".join(buf)


def documents(args):
    """Yields (doc, input_index, compressed_bytes_read) for every non-empty document of every input in
    order. A document is a str, or a (prompt, response) pair in supervised mode."""
    for index, path in enumerate(args.inputs):
        raw, f = open_text(path)
        position = (lambda: raw.fileobj.tell()) if isinstance(raw, gzip.GzipFile) else raw.tell
        with raw:
            if is_jsonl(path, args.format):
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        sys.exit(f"tokenize: {path}:{lineno}: not JSON ({e.msg})")
                    if not isinstance(obj, dict):
                        sys.exit(f"tokenize: {path}:{lineno}: expected a JSON object per line")
                    fields = [args.prompt_field, args.response_field] if args.prompt_field else [args.jsonl_field]
                    for k in fields:
                        if not isinstance(obj.get(k), str):
                            sys.exit(f"tokenize: {path}:{lineno}: no string field '{k}' "
                                     f"(fields: {', '.join(sorted(obj)) or 'none'}; see --jsonl-field)")
                    if args.prompt_field:
                        doc = (obj[fields[0]], obj[fields[1]])
                        if doc[0] or doc[1]:
                            yield doc, index, position()
                    elif obj[fields[0]]:
                        yield obj[fields[0]], index, position()
            else:
                if args.prompt_field:
                    sys.exit(f"tokenize: {path}: --prompt-field/--response-field need JSONL input")
                for doc in text_documents(f, args.text_docs):
                    yield doc, index, position()


def doc_hash(doc):
    h = hashlib.blake2b(digest_size=8)
    if isinstance(doc, tuple):
        for part in doc:
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
    else:
        h.update(doc.encode("utf-8"))
    return int.from_bytes(h.digest(), "little") / 2.0**64


def choose_eval(args):
    """First pass: the indices of the eval documents — hash below the fraction, but at least one eval and
    one train document when there are two or more."""
    chosen, lowest, highest, n = set(), None, None, 0
    for i, (doc, _, _) in enumerate(documents(args)):
        h = doc_hash(doc)
        if h < args.eval_fraction:
            chosen.add(i)
        lowest = (h, i) if lowest is None or h < lowest[0] else lowest
        highest = (h, i) if highest is None or h >= highest[0] else highest
        n = i + 1
    if args.eval_fraction > 0 and n >= 2:
        if not chosen:
            chosen.add(lowest[1])
        if len(chosen) == n:
            chosen.discard(highest[1])
    return chosen, n


# ---- tokenizers -----------------------------------------------------------------------------------

class ByteTokenizer:
    def __init__(self, eos):
        self.vocab = 257 if eos else 256
        self.eos_id = 256 if eos else None

    def encode_batch(self, texts):
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int32) for t in texts]


class HFTokenizer:
    def __init__(self, path, eos, eos_token, add_special):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            sys.exit("tokenize: --tokenizer needs the 'tokenizers' package (pip install tokenizers), or use --bytes")
        self.tok = Tokenizer.from_file(path)
        self.add_special = add_special
        self.vocab = self.tok.get_vocab_size(with_added_tokens=True)
        self.eos_id = None
        if eos:
            names = [eos_token] if eos_token else list(EOS_CANDIDATES)
            for name in names:
                i = self.tok.token_to_id(name)
                if i is not None:
                    self.eos_id = i
                    break
            if self.eos_id is None:
                sys.exit(f"tokenize: {path} has no end-of-document token among {', '.join(names)}; "
                         "name it with --eos-token")

    def encode_batch(self, texts):
        encs = self.tok.encode_batch(texts, add_special_tokens=self.add_special)
        return [np.asarray(e.ids, dtype=np.int32) for e in encs]


# ---- output files ---------------------------------------------------------------------------------

class TokenFileWriter:
    """Streams one split into token files of at most `shard_tokens` tokens each (a single file named
    SPLIT.bin unless --shard-tokens is given, then SPLIT-00000.bin, ...). Each file is written to a
    temporary name, its header patched with the final count, fsynced and renamed."""

    def __init__(self, out_dir, split, vocab, masked, shard_tokens):
        self.out_dir, self.split, self.vocab, self.masked = out_dir, split, vocab, masked
        self.sharded = shard_tokens is not None
        self.limit = shard_tokens if self.sharded else MAX_TOKENS
        self.paths, self.total, self.f = [], 0, None

    def _open(self):
        name = f"{self.split}-{len(self.paths):05d}.bin" if self.sharded else f"{self.split}.bin"
        self.path = os.path.join(self.out_dir, name)
        self.tmp = f"{self.path}.tmp.{os.getpid()}"
        self.f = open(self.tmp, "wb")
        self.f.write(b"\0" * HEADER_BYTES)
        self.count = 0
        self.mask_bytes = bytearray()
        self.mask_carry = np.zeros(0, dtype=np.uint8)

    def _close(self):
        f = self.f
        if self.masked:
            tail = self.mask_carry
            if len(tail):
                self.mask_bytes += np.packbits(tail, bitorder="little").tobytes()
            f.write(bytes(self.mask_bytes))
        f.seek(0)
        f.write(header(self.count, self.vocab, self.masked))
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(self.tmp, self.path)
        self.paths.append(self.path)
        self.f = None

    def add(self, tokens, mask_bits=None):
        if len(tokens) and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab):
            sys.exit(f"tokenize: token id {int(tokens.max())} outside the vocab of {self.vocab}")
        while len(tokens):
            if self.f is None:
                self._open()
            room = self.limit - self.count
            if room == 0:
                if not self.sharded:
                    sys.exit(f"tokenize: {self.split} holds more than {MAX_TOKENS} tokens, the most one file can; "
                             "use --shard-tokens N")
                self._close()
                continue
            take, tokens = tokens[:room], tokens[room:]
            self.f.write(take.astype("<i4", copy=False).tobytes())
            self.count += len(take)
            self.total += len(take)
            if self.masked:
                bits, mask_bits = mask_bits[:len(take)], mask_bits[len(take):]
                pending = np.concatenate([self.mask_carry, bits.astype(np.uint8)])
                full = len(pending) // 8 * 8
                self.mask_bytes += np.packbits(pending[:full], bitorder="little").tobytes()
                self.mask_carry = pending[full:]

    def finish(self):
        if self.f is None and not self.paths:
            self._open()  # an empty split still gets its (empty) file
        if self.f is not None:
            self._close()
        return self.paths


def header(count, vocab, masked):
    h = struct.pack("<8s5i", b"BIN.TOK\n", 2, 4, count, vocab, 1 if masked else 0)
    return h + b"\0" * (HEADER_BYTES - len(h))


# ---- main -----------------------------------------------------------------------------------------

class Progress:
    def __init__(self, total_bytes):
        self.total, self.start, self.last = max(total_bytes, 1), time.time(), 0.0

    def show(self, done_bytes, docs, tokens, final=False):
        now = time.time()
        if not final and now - self.last < 0.5:
            return
        self.last = now
        mb, el = done_bytes / 1e6, max(now - self.start, 1e-9)
        sys.stderr.write(f"\rtokenize: {mb:.1f}/{self.total / 1e6:.1f} MB ({100 * done_bytes / self.total:.0f}%), "
                         f"{docs} docs, {tokens / 1e6:.2f} M tokens, {mb / el:.1f} MB/s ")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="text or JSONL files (.gz allowed)")
    p.add_argument("--out-dir", required=True, help="where train.bin and eval.bin go (created)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--tokenizer", help="a Hugging Face tokenizer.json")
    g.add_argument("--bytes", action="store_true", help="UTF-8 bytes as tokens (vocab 256, 257 with --eos)")
    p.add_argument("--eval-fraction", type=float, default=0.01, help="share of documents for eval.bin (0.01)")
    p.add_argument("--format", choices=("auto", "text", "jsonl"), default="auto",
                   help="input format (auto: *.jsonl/*.ndjson are JSONL, the rest text)")
    p.add_argument("--jsonl-field", default="text", help="the JSONL field holding the document (text)")
    p.add_argument("--prompt-field", help="supervised mode: JSONL field of the prompt (masked out of the loss)")
    p.add_argument("--response-field", help="supervised mode: JSONL field of the response (trained on)")
    p.add_argument("--text-docs", choices=("paragraph", "line", "file"), default="paragraph",
                   help="what one document of a text file is (paragraph: blank-line separated)")
    p.add_argument("--eos", action="store_true", help="append an end-of-document token to every document")
    p.add_argument("--eos-token", help="the end-of-document token's text (default: a usual name in the vocab)")
    p.add_argument("--add-special-tokens", action="store_true",
                   help="let the tokenizer add its special tokens (e.g. BOS) to each document")
    p.add_argument("--shard-tokens", type=int, help="split each output into files of at most N tokens")
    p.add_argument("--batch-docs", type=int, default=1000, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if not 0 <= args.eval_fraction < 1:
        p.error("--eval-fraction must be in [0, 1)")
    if bool(args.prompt_field) != bool(args.response_field):
        p.error("--prompt-field and --response-field go together")
    if args.shard_tokens is not None and not 0 < args.shard_tokens <= MAX_TOKENS:
        p.error(f"--shard-tokens must be in [1, {MAX_TOKENS}]")
    for path in args.inputs:
        if not os.path.isfile(path):
            p.error(f"no such input file: {path}")
    if args.eos_token and not args.eos:
        args.eos = True
    tok = ByteTokenizer(args.eos) if args.bytes else HFTokenizer(args.tokenizer, args.eos, args.eos_token,
                                                                  args.add_special_tokens)
    supervised = bool(args.prompt_field)
    os.makedirs(args.out_dir, exist_ok=True)

    eval_idx, n_docs = choose_eval(args)
    writers = {s: TokenFileWriter(args.out_dir, s, tok.vocab, supervised, args.shard_tokens)
               for s in ("train", "eval")}
    docs_in = {"train": 0, "eval": 0}
    total_bytes = sum(os.path.getsize(x) for x in args.inputs)
    progress = Progress(total_bytes)
    eos = np.array([tok.eos_id], dtype=np.int32) if tok.eos_id is not None else None

    def flush(batch):
        texts = [t for d in batch for t in (d[1] if supervised else (d[1],))]
        encoded = tok.encode_batch(texts)
        k = 0
        for split, _ in batch:
            if supervised:
                prompt, response = encoded[k], encoded[k + 1]
                k += 2
                parts = [prompt, response] + ([eos] if eos is not None else [])
                ids = np.concatenate(parts)
                bits = np.zeros(len(ids), dtype=np.uint8)
                bits[len(prompt):] = 1  # response and EOS are targets; the prompt is context only
                writers[split].add(ids, bits)
            else:
                ids = encoded[k]
                k += 1
                if eos is not None:
                    ids = np.concatenate([ids, eos])
                writers[split].add(ids)
            docs_in[split] += 1

    sizes = [os.path.getsize(x) for x in args.inputs]
    batch = []
    for i, (doc, index, pos) in enumerate(documents(args)):
        batch.append(("eval" if i in eval_idx else "train", doc))
        if len(batch) >= args.batch_docs:
            flush(batch)
            batch = []
            progress.show(sum(sizes[:index]) + pos, i + 1, writers["train"].total + writers["eval"].total)
    if batch:
        flush(batch)
    progress.show(total_bytes, n_docs, writers["train"].total + writers["eval"].total, final=True)

    wrote = []
    for split in ("train", "eval"):
        if split == "eval" and args.eval_fraction == 0:
            continue
        for path in writers[split].finish():
            wrote.append(path)
        sys.stderr.write(f"tokenize: {split}: {docs_in[split]} docs, {writers[split].total} tokens, "
                         f"vocab {tok.vocab}{', masked' if supervised else ''} -> "
                         f"{', '.join(writers[split].paths)}\n")
    return wrote


if __name__ == "__main__":
    main()
