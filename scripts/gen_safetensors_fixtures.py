#!/usr/bin/env python3
"""Regenerates tests/data/safetensors/: small files written by the reference `safetensors` package
(numpy API), read by tests/safetensors_test.cc. Values are a fixed formula so the C test can recompute them:
element i of every tensor is (i % 97) * 0.25 - 12.0 (exact in F32, F16 and BF16).
  f32.safetensors, half.safetensors   single files (F32; F16 + BF16)
  sharded/                            a Hugging Face sharded folder: two shards and the index JSON laid
                                      out as transformers' save_pretrained writes it
    .venv/bin/python scripts/gen_safetensors_fixtures.py
"""
import json
import os

import numpy as np
from ml_dtypes import bfloat16
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "safetensors")


def values(shape, dtype):
    n = int(np.prod(shape))
    return ((np.arange(n) % 97) * 0.25 - 12.0).astype(np.float32).astype(dtype).reshape(shape)


def main():
    os.makedirs(OUT, exist_ok=True)
    save_file({"a.weight": values((5, 7), np.float32), "b.bias": values((3,), np.float32),
               "c.scalar": values((), np.float32)}, os.path.join(OUT, "f32.safetensors"),
              metadata={"format": "pt"})
    save_file({"h": values((4, 9), np.float16), "g": values((11,), bfloat16)},
              os.path.join(OUT, "half.safetensors"))

    shards = [{"model.embed_tokens.weight": values((6, 4), bfloat16),
               "model.layers.0.input_layernorm.weight": values((4,), np.float32)},
              {"model.layers.0.mlp.up_proj.weight": values((8, 4), bfloat16),
               "model.norm.weight": values((4,), np.float32)}]
    sub = os.path.join(OUT, "sharded")
    os.makedirs(sub, exist_ok=True)
    weight_map, total = {}, 0
    for k, tensors in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, os.path.join(sub, name), metadata={"format": "pt"})
        for t, v in tensors.items():
            weight_map[t] = name
            total += v.nbytes
    with open(os.path.join(sub, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                           indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
