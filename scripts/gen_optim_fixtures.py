#!/usr/bin/env python3
"""Regenerates tests/data/optim/: a few steps of DASH and DCT-AdamW from the public PyTorch implementation
(PyPI `ista-daslab-optimizers`, DashLayerwise and DCTAdamW) on fresh random matrices, for
tests/dash_test.cc and tests/dct_adamw_test.cc (CI has no torch; it uses the committed files).

Needs torch and the package (not needed by CI):
    pip install --no-deps ista-daslab-optimizers && python3 scripts/gen_optim_fixtures.py [--seed N]

Every case runs the package twice on the same float32 inputs: in float32 and in float64. The float64 run
is the reference the tests compare against; the float32 run's distance to it (per step and parameter) is
stored as `pkg_fp32_err`, the rounding noise an FP32 implementation of the same algorithm shows, which
the tests use to set their tolerance. Distances are ||W_t - W_ref,t||_F / ||W_ref,t - W_0||_F, relative to
the total change so far (weights start small, so this is not swamped by W_0).

Files per case (tests/data/optim/<case>/): meta.json (settings in kiln's terms, the parameter table,
lr, steps, pkg_fp32_err); init.bin (float32, every parameter in table order, row-major); grads.bin
(float32, steps x parameters); ref.bin (float64, the float64 run's parameters after each step).

What the generator changes in the package, all precision-only and only where the package's own choice
cannot be reproduced by another implementation:
- DASH's spectrum scale (DashMatrixScaling.get_matrix_scaling) is computed at the run's precision instead
  of on a bfloat16 copy (same formulas: Frobenius norm, or const x Rayleigh quotient of power iteration
  on A + eps_power_iter*I). The cases are chosen so the root iterations converge, where the scale only
  matters through Chebyshev's relative shift.
- DashLayerwise lacks the sync_params method its step calls (a distributed broadcast); a no-op is added.
- In the float64 run, Chebyshev coefficients are kept in float64 and the DCT matrix is computed in
  float64 (the package builds both in float32 whatever the parameter dtype).
"""
import os
import sys

# scripts/ holds a tokenize.py that would shadow the standard library's (torch imports it): run with the
# script's own folder off the import path.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _here]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import types  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "optim")

# The package's top-level __init__ imports modules that need wandb, gpustat and CUDA extensions; DASH and
# DCT-AdamW need none of them. Register the package without running its __init__, stub wandb (imported
# but unused by the DASH layer processor).
_spec = importlib.util.find_spec("ista_daslab_optimizers")
if _spec is None:
    sys.exit("needs the PyPI package: pip install --no-deps ista-daslab-optimizers")
_pkg = types.ModuleType("ista_daslab_optimizers")
_pkg.__path__ = list(_spec.submodule_search_locations)
sys.modules["ista_daslab_optimizers"] = _pkg
sys.modules.setdefault("wandb", types.ModuleType("wandb"))

import ista_daslab_optimizers.dash as dash  # noqa: E402
import ista_daslab_optimizers.dash.invertors.scalers as dash_scalers  # noqa: E402
import ista_daslab_optimizers.dash.invertors.inv_cbshv as dash_cbshv  # noqa: E402
import ista_daslab_optimizers.fft_low_rank.dct_adamw as dct_adamw  # noqa: E402
from ista_daslab_optimizers.utils.global_cache import GlobalCache  # noqa: E402

PACKAGE_VERSION = "unknown"
try:
    from importlib.metadata import version

    PACKAGE_VERSION = version("ista-daslab-optimizers")
except Exception:  # noqa: BLE001
    pass


# ---- precision-only patches (see the module docstring) ---------------------------------------------

def _scale_at_run_precision(A, cfg):
    T = dash.DashMatrixScalingType
    if cfg.matrix_scaling_type == T.FRO:
        return A.norm(p="fro", dim=(1, 2), keepdim=True)
    A = A.clone()
    idx = torch.arange(A.shape[1])
    A[:, idx, idx] += cfg.eps_power_iter
    if cfg.matrix_scaling_type == T.POWER_ITER:
        s, _ = dash_scalers.DashMatrixScaling.max_eigval_power_iter(A, num_iters=cfg.matrix_scaling_pi_steps)
    else:
        s, _ = dash_scalers.DashMatrixScaling.max_eigval_power_iter_multi(A, num_iters=cfg.matrix_scaling_pi_steps)
    return s.to(A.dtype) * cfg.matrix_scaling_const


dash_scalers.DashMatrixScaling.get_matrix_scaling = staticmethod(_scale_at_run_precision)

RUN_DTYPE = [torch.float32]  # the dtype of the run in progress (read by the patches below)


def _cheb_coeffs_run_dtype(cfg, device, root):
    c = dash_cbshv.DashRootInvChebyshev._fit_chebyshev_coefficients(cfg.eps_inv_root, cfg.cbshv_degree, root)
    return torch.tensor(c, device=device, dtype=torch.float32 if RUN_DTYPE[0] == torch.float32 else torch.float64)


dash_cbshv.DashRootInvChebyshev._get_chebyshev_coefficients = staticmethod(_cheb_coeffs_run_dtype)

_dct3_package = dct_adamw.dct3_matrix


def _dct3_run_dtype(n, dtype, device):
    if dtype == torch.float32:
        return _dct3_package(n, dtype, device)
    i = torch.arange(n, dtype=torch.float64)
    q = math.sqrt(2 / n) * torch.cos(math.pi * i[:, None] * (2 * i[None, :] + 1) / (2 * n))
    q[0, :] *= math.sqrt(0.5)
    return q.to(device=device, dtype=dtype)


dct_adamw.dct3_matrix = _dct3_run_dtype

# DashLayerwise.optimizer_step ends with self.sync_params(), which 1.1.15 defines only on DashBase (DashGpu);
# it broadcasts parameters in distributed runs and does nothing otherwise.
if not hasattr(dash.DashLayerwise, "sync_params"):
    dash.DashLayerwise.sync_params = lambda self: None

# ---- cases ---------------------------------------------------------------------------------------------

# DASH parameter table (block 8): full blocks only; a bottom strip (20 % 8 = 4 rows); a right strip
# (13 % 8 = 5 columns); two vectors (the package stacks 1-D parameters of one length, a multiple of b).
DASH_PARAMS = [
    dict(name="w_full", shape=(24, 16), decay=1, lr_mult=1.0),
    dict(name="w_bottom", shape=(20, 16), decay=1, lr_mult=0.5),
    dict(name="w_right", shape=(16, 13), decay=0, lr_mult=1.0),
    dict(name="norm_a", shape=(16,), decay=0, lr_mult=1.0),
    dict(name="norm_b", shape=(16,), decay=0, lr_mult=1.0),
]
# DCT-AdamW: all projected matrices share their smaller side (the package builds one basis, of the first
# projected matrix's smaller side); right (24x16) and left (16x28) projection; 32x16 reaches max_shape
# = 32 and gets full AdamW, like the vector.
DCT_PARAMS = [
    dict(name="w_tall", shape=(24, 16), decay=1, lr_mult=1.0),
    dict(name="w_wide", shape=(16, 28), decay=1, lr_mult=0.5),
    dict(name="w_big", shape=(32, 16), decay=1, lr_mult=1.0),
    dict(name="norm", shape=(16,), decay=0, lr_mult=1.0),
]

# Shared DASH settings: the package defaults except block size (8 instead of 1024, to keep fixtures small),
# inv_root_freq 2 (so some steps reuse roots) and the damping eps_inv_root, raised so the fixed-step
# iterations converge on these small random blocks (at step 1 a block's L is a single rank-deficient
# product; with eps ~ 0 an unconverged Newton iteration's output depends on the spectrum scale, which
# the package draws from torch's RNG).
DASH_BASE = dict(block_size=8, beta_LR=0.95, beta_G=0.9, beta_graft=0.95, eps_grafting=1e-8, inv_root_freq=2,
                 newton_steps=10, matrix_scaling_pi_steps=10, matrix_scaling_const=2.0, eps_power_iter=1e-6,
                 cn_tolerance=1e-6, mu=0.0, use_nesterov=True, start_prec_step=-1,
                 adamw_beta1=0.9, adamw_beta2=0.95, adamw_eps=1e-8)

CASES = {
    # Newton-DB with power-iteration scaling (the paper's best), 1-D parameters by AdamW.
    "dash_ndb": dict(opt="dash", steps=5, lr=0.01, wd=0.1,
                     cfg=dict(DASH_BASE, inv_root_method="NDB", matrix_scaling_type="POWER_ITER",
                              eps_inv_root=0.05, algo_one_dim="ADAMW")),
    # Coupled Newton with Frobenius scaling (the paper's CN runs).
    "dash_cn": dict(opt="dash", steps=5, lr=0.01, wd=0.1,
                    cfg=dict(DASH_BASE, inv_root_method="CN", matrix_scaling_type="FRO", eps_inv_root=0.05,
                             newton_steps=20, algo_one_dim="ADAMW")),
    # Chebyshev, degree 40, shift (the package's eps_inv_root) 1e-2, Frobenius scaling.
    "dash_cheb": dict(opt="dash", steps=5, lr=0.01, wd=0.1,
                      cfg=dict(DASH_BASE, inv_root_method="CBSHV", matrix_scaling_type="FRO", eps_inv_root=1e-2,
                               cbshv_degree=40, algo_one_dim="ADAMW")),
    # Eigendecomposition (the package's default method).
    "dash_evd": dict(opt="dash", steps=5, lr=0.01, wd=0.1,
                     cfg=dict(DASH_BASE, inv_root_method="EVD", eps_inv_root=1e-3, algo_one_dim="ADAMW")),
    # Newton-DB, 1-D parameters by one-sided Shampoo (root 2), Nesterov momentum, plain Adam (graft
    # direction) for steps 1-3, then preconditioning from step 4. (start_prec_step must be a multiple of
    # inv_root_freq for the package: otherwise it preconditions with roots it never computed, zeros, and
    # DashLayerwise divides 0/0; kiln computes them at start_prec_step.)
    "dash_ndb_shampoo1d_momentum": dict(opt="dash", steps=6, lr=0.01, wd=0.1,
                                        cfg=dict(DASH_BASE, inv_root_method="NDB", matrix_scaling_type="POWER_ITER",
                                                 eps_inv_root=0.05, algo_one_dim="SHAMPOO", mu=0.5,
                                                 start_prec_step=4)),
    # DCT-AdamW, the package's default similarity (sim_type='matmul': Q = D, kiln's basis dct3), with
    # the moment rotation at every refresh.
    "dct_matmul": dict(opt="dct", steps=6, lr=0.01, wd=0.1,
                       cfg=dict(rank=4, update_proj_gap=2, sim_type="matmul", max_shape=32, betas=(0.9, 0.999),
                                eps=1e-8)),
    # DCT-AdamW with Makhoul's FFT route (Q = Dᵀ, kiln's basis dct2).
    "dct_makhoul": dict(opt="dct", steps=6, lr=0.01, wd=0.1,
                        cfg=dict(rank=4, update_proj_gap=2, sim_type="makhoul", max_shape=32, betas=(0.9, 0.999),
                                 eps=1e-8)),
}


def make_inputs(params, steps, rng):
    """Weights ~ N(0, 0.01²) (the size of a few lr=0.01 steps, so distances relative to the change are
    well resolved); gradients ~ N(0, 1) with a per-parameter scale in [0.5, 2]."""
    init = [rng.normal(0, 0.01, p["shape"]).astype(np.float32) for p in params]
    scale = [rng.uniform(0.5, 2.0) for _ in params]
    grads = [[(rng.normal(0, 1, p["shape"]) * s).astype(np.float32) for p, s in zip(params, scale)]
             for _ in range(steps)]
    return init, grads


def group_params(params, tensors, lr, wd):
    """torch param groups by (lr_mult, decay); the smallest matrix's group last so DashLayerwise's 1-D
    Shampoo stack (which uses the lr left over from its 2-D loop) gets lr_mult 1."""
    groups = {}
    for p, t in zip(params, tensors):
        key = (p["lr_mult"], p["decay"])
        groups.setdefault(key, []).append(t)
    return [dict(params=ts, lr=lr * m, weight_decay=wd if dec else 0.0) for (m, dec), ts in groups.items()]


def run_package(case, params, init, grads, dtype):
    RUN_DTYPE[0] = dtype
    GlobalCache._instance = None  # per-run caches (Chebyshev coefficients, Makhoul twiddles) by dtype
    torch.manual_seed(1234)
    tensors = [torch.nn.Parameter(torch.tensor(w, dtype=dtype)) for w in init]
    groups = group_params(params, tensors, case["lr"], case["wd"])
    c = case["cfg"]
    if case["opt"] == "dash":
        cfg = dash.DashConfig(**{k: v for k, v in c.items()
                                 if k not in ("inv_root_method", "matrix_scaling_type", "algo_one_dim")})
        cfg.inv_root_method = dash.DashInverseRootMethodType[c["inv_root_method"]]
        if "matrix_scaling_type" in c:
            cfg.matrix_scaling_type = dash.DashMatrixScalingType[c["matrix_scaling_type"]]
        cfg.algo_one_dim = dash.DashAlgoOneDim[c["algo_one_dim"]]
        cfg.matmul_dtype = torch.float32  # the package's "fp32" solver variants; they run in the tensors' dtype
        opt = dash.DashLayerwise(groups, lr=case["lr"], weight_decay=case["wd"], config=cfg)
    else:
        opt = dct_adamw.DCTAdamW(groups, lr=case["lr"], weight_decay=case["wd"], rank=c["rank"], proj="dct",
                                 update_proj_gap=c["update_proj_gap"], rotate_subspace=True,
                                 sim_type=c["sim_type"], ell_norm=1, max_shape=c["max_shape"], betas=c["betas"],
                                 eps=c["eps"])
    out = []
    for g in grads:
        for t, gi in zip(tensors, g):
            t.grad = torch.tensor(gi, dtype=dtype)  # fresh: both packages overwrite p.grad with the update
        opt.step()
        out.append([t.detach().to(torch.float64).numpy().copy() for t in tensors])
    return out


def distance(w, ref, w0):
    return float(np.linalg.norm(w - ref) / np.linalg.norm(ref - w0))


def dct_selection_margin(case, params, grads):
    """Smallest relative gap between the r-th and (r+1)-th ℓ1 score at any refresh of any projected
    matrix (float64). Tiny gaps would let rounding swap a column between implementations."""
    c = case["cfg"]
    worst = 1.0
    for t, g in enumerate(grads, start=1):
        if not (t == 1 or t % c["update_proj_gap"] == 0):
            continue
        for p, gi in zip(params, g):
            if len(p["shape"]) != 2 or max(p["shape"]) >= c["max_shape"]:
                continue
            G = gi.astype(np.float64)
            n = min(G.shape)
            i = np.arange(n)
            D = math.sqrt(2 / n) * np.cos(math.pi * i[:, None] * (2 * i[None, :] + 1) / (2 * n))
            D[0] *= math.sqrt(0.5)
            Q = D if c["sim_type"] == "matmul" else D.T
            S = G @ Q if G.shape[0] >= G.shape[1] else Q.T @ G
            sc = np.abs(S).sum(axis=0 if G.shape[0] >= G.shape[1] else 1)
            sc = np.sort(sc)[::-1]
            r = min(c["rank"], n)
            if r < n:
                worst = min(worst, (sc[r - 1] - sc[r]) / sc[r - 1])
    return worst


def kiln_settings(case):
    c = case["cfg"]
    if case["opt"] == "dct":
        return dict(kind="dct_adamw", beta1=c["betas"][0], beta2=c["betas"][1], eps=c["eps"],
                    weight_decay=case["wd"], rank=c["rank"], refresh_every=c["update_proj_gap"], ell=1,
                    max_dim=c["max_shape"], basis="dct3" if c["sim_type"] == "matmul" else "dct2")
    method = dict(NDB="newton_db", CN="coupled_newton", CBSHV="chebyshev", EVD="eigh")[c["inv_root_method"]]
    s = dict(kind="dash", beta1=c["adamw_beta1"], beta2=c["adamw_beta2"], eps=c["adamw_eps"], weight_decay=case["wd"],
             block=c["block_size"], beta_lr=c["beta_LR"], beta_g=c["beta_G"], beta_graft=c["beta_graft"],
             eps_graft=c["eps_grafting"], mu=c["mu"], nesterov=int(c["use_nesterov"]),
             start_prec_step=c["start_prec_step"], inv_root_every=c["inv_root_freq"], root_method=method,
             scaling=dict(POWER_ITER="power_iter", FRO="frobenius").get(c.get("matrix_scaling_type"), "power_iter"),
             scale_const=c["matrix_scaling_const"], power_iters=c["matrix_scaling_pi_steps"], power_vectors=1,
             power_eps=c["eps_power_iter"], newton_steps=c["newton_steps"], cn_tol=c["cn_tolerance"],
             one_dim=c["algo_one_dim"].lower())
    if method == "chebyshev":  # the package's eps is Chebyshev's interval shift, and it adds no damping
        s.update(eps_root=0.0, cheb_shift=c["eps_inv_root"], cheb_degree=c["cbshv_degree"])
    else:
        s.update(eps_root=c["eps_inv_root"])
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="numpy seed (default: fresh)")
    ap.add_argument("--only", default=None, help="comma-separated case names")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    print(f"seed {seed}, ista-daslab-optimizers {PACKAGE_VERSION}, torch {torch.__version__}")
    for name, case in CASES.items():
        if args.only and name not in args.only.split(","):
            continue
        params = DASH_PARAMS if case["opt"] == "dash" else DCT_PARAMS
        for attempt in range(20):
            init, grads = make_inputs(params, case["steps"], rng)
            if case["opt"] != "dct" or dct_selection_margin(case, params, grads) > 1e-3:
                break
        else:
            sys.exit(f"{name}: no draw with a clear top-r margin")
        ref = run_package(case, params, init, grads, torch.float64)
        f32 = run_package(case, params, init, grads, torch.float32)
        err = [[distance(f32[t][i], ref[t][i], init[i].astype(np.float64)) for i in range(len(params))]
               for t in range(case["steps"])]
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "init.bin"), "wb") as f:
            for w in init:
                f.write(w.astype("<f4").tobytes())
        with open(os.path.join(d, "grads.bin"), "wb") as f:
            for g in grads:
                for gi in g:
                    f.write(gi.astype("<f4").tobytes())
        with open(os.path.join(d, "ref.bin"), "wb") as f:
            for r in ref:
                for ri in r:
                    f.write(ri.astype("<f8").tobytes())
        meta = dict(
            generator="scripts/gen_optim_fixtures.py", seed=seed,
            package=f"ista-daslab-optimizers {PACKAGE_VERSION}",
            package_class="DashLayerwise" if case["opt"] == "dash" else "DCTAdamW(rotate_subspace=True)",
            package_config={k: (list(v) if isinstance(v, tuple) else v) for k, v in case["cfg"].items()},
            steps=case["steps"], lr=case["lr"],
            settings=kiln_settings(case),
            params=[dict(name=p["name"], rows=p["shape"][0] if len(p["shape"]) == 2 else 1,
                         cols=p["shape"][-1], is_matrix=int(len(p["shape"]) == 2), decay=p["decay"],
                         lr_mult=p["lr_mult"]) for p in params],
            pkg_fp32_err=err)
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        worst = max(max(e) for e in err)
        print(f"{name}: {case['steps']} steps, package fp32 vs fp64: worst {worst:.2e}")


if __name__ == "__main__":
    main()
