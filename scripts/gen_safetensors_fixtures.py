#!/usr/bin/env python3
"""Regenerates tests/data/safetensors/: small files written by the reference `safetensors` package
(numpy API), read by tests/safetensors_test.cc. Values are a fixed formula so the C test can recompute them:
element i of every tensor is (i % 97) * 0.25 - 12.0 (exact in F32, F16 and BF16).
    .venv/bin/python scripts/gen_safetensors_fixtures.py
"""
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


if __name__ == "__main__":
    main()
