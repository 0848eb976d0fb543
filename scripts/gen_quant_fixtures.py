#!/usr/bin/env python3
"""gen_quant_fixtures.py — writes a sweep of float32 inputs and ml-dtypes' encodings of them (FP8 E4M3,
FP8 E5M2, FP4 E2M1) plus ml-dtypes' decode table of every code, for tests/quant_mldtypes_test.cc to compare
kiln's codecs (kernels/quant.h) against. The committed fixture is tests/data/quant_mldtypes.bin; the pytest
tests/quant_mldtypes_test.py calls sweep() with a fresh seed at test time.

File layout (little-endian):
    8 bytes   magic b"KLQMLD1\\n"
    u64       seed of the random part
    u32       n, the number of inputs
    u32       0 (reserved)
    f32[256]  ml-dtypes float8_e4m3fn value of every byte
    f32[256]  ml-dtypes float8_e5m2 value of every byte
    f32[16]   ml-dtypes float4_e2m1fn value of every code
    f32[n]    inputs
    u8[n]     float8_e4m3fn encodings (non-saturating: overflow gives NaN)
    u8[n]     float8_e5m2 encodings (non-saturating: overflow gives Inf)
    u8[n]     float4_e2m1fn encodings (ml-dtypes saturates), one code per byte

Usage: scripts/gen_quant_fixtures.py [--seed N] [--count N] [--out PATH]
"""
import argparse
import os
import struct
import sys

import ml_dtypes
import numpy as np

MAGIC = b"KLQMLD1\n"
FORMATS = (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.float4_e2m1fn)


def decode_table(dtype, n_codes):
    return np.arange(n_codes, dtype=np.uint8).view(dtype).astype(np.float32)


def boundary_inputs():
    """Every representable value of each format, every midpoint between neighbours (including the one
    above the largest finite value) and the float32 neighbours of each midpoint, both signs; specials."""
    vals = []
    for dtype, n_codes, beyond in ((FORMATS[0], 128, 480.0), (FORMATS[1], 124, 65536.0), (FORMATS[2], 8, 8.0)):
        v = decode_table(dtype, 256 if n_codes > 16 else 16)[:n_codes].astype(np.float64)
        v = np.append(v, beyond)
        if dtype is FORMATS[0]:
            v = np.delete(v, 127)  # byte 0x7F is NaN in E4M3; 480 stands for it
        mids = ((v[:-1] + v[1:]) / 2).astype(np.float32)
        vals += [v.astype(np.float32), mids, np.nextafter(mids, np.float32(0)), np.nextafter(mids, np.float32(np.inf))]
    pos = np.concatenate(vals)
    specials = np.array([0.0, np.inf, np.nan, 1e-40, 1e-45, 3.4e38, 2.0**-10, 2.0**-17, 2.0**-18], dtype=np.float32)
    return np.concatenate([pos, -pos, specials, -specials]).astype(np.float32)


def random_inputs(rng, n):
    k = n // 4
    logu = np.exp2(rng.uniform(-22.0, 19.0, size=k)) * rng.choice([-1.0, 1.0], size=k)
    bits = rng.integers(0, 2**32, size=k, dtype=np.uint64).astype(np.uint32).view(np.float32)
    small = rng.uniform(-8.0, 8.0, size=k)
    mid = rng.uniform(-600.0, 600.0, size=n - 3 * k) * np.exp2(rng.integers(0, 8, size=n - 3 * k))
    return np.concatenate([logu.astype(np.float32), bits, small.astype(np.float32), mid.astype(np.float32)])


def sweep(seed, count):
    """The fixture's bytes for `count` random inputs drawn with `seed` plus the boundary inputs."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([boundary_inputs(), random_inputs(rng, count)]).astype(np.float32)
    with np.errstate(all="ignore"):
        enc = [x.astype(FORMATS[0]).view(np.uint8), x.astype(FORMATS[1]).view(np.uint8),
               x.astype(FORMATS[2]).view(np.uint8) & np.uint8(0xF)]
    out = [MAGIC, struct.pack("<QII", seed, x.size, 0),
           decode_table(FORMATS[0], 256).tobytes(), decode_table(FORMATS[1], 256).tobytes(),
           decode_table(FORMATS[2], 16).tobytes(), x.astype("<f4").tobytes()]
    out += [e.tobytes() for e in enc]
    return b"".join(out)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="seed of the random inputs (default: fresh)")
    ap.add_argument("--count", type=int, default=14000, help="number of random inputs")
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "quant_mldtypes.bin"))
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(8), "little")
    data = sweep(seed, a.count)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "wb") as f:
        f.write(data)
    print(f"wrote {a.out}: {len(data)} bytes, seed {seed}, ml-dtypes {ml_dtypes.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
