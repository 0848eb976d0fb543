/* linear.c — see linear.h. Emulated low-precision linear layers on the CPU: each operand is fake-quantized
 * (quantized and dequantized exactly by kernels/quant.h's references) into a scratch buffer, then the FP32
 * matmul.h reference multiplies. No GEMM of its own, no state kept between forward and backward. */
#include "linear.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "quant.h"

const char *kl_linear_mode_name(kl_linear_mode mode) {
    switch (mode) {
    case KL_LINEAR_FP32: return "fp32";
    case KL_LINEAR_FP8: return "fp8";
    case KL_LINEAR_NVFP4: return "nvfp4";
    }
    return "?";
}

kl_status kl_linear_cfg_check(const kl_linear_cfg *cfg) {
    if (!cfg) return kl_error(KL_ERR_INVALID, "linear: expected a precision configuration, got NULL");
    if (cfg->mode != KL_LINEAR_FP32 && cfg->mode != KL_LINEAR_FP8 && cfg->mode != KL_LINEAR_NVFP4)
        return kl_error(KL_ERR_INVALID, "linear: unknown precision mode %d (expected fp32, fp8 or nvfp4)", (int)cfg->mode);
    if (cfg->nvfp4_backward != KL_LINEAR_BWD_MS_EDEN && cfg->nvfp4_backward != KL_LINEAR_BWD_SR)
        return kl_error(KL_ERR_INVALID, "linear: unknown NVFP4 backward rounding %d (expected ms_eden or sr)",
                        (int)cfg->nvfp4_backward);
    return KL_OK;
}

static kl_status check_args(const char *fn, const kl_linear_cfg *cfg, int N, int IC, int OC) {
    KL_TRY(kl_linear_cfg_check(cfg));
    if (N <= 0 || IC <= 0 || OC <= 0)
        return kl_error(KL_ERR_INVALID, "%s: expected N, IC, OC > 0, got %d, %d, %d", fn, N, IC, OC);
    return KL_OK;
}

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!kl_q_isfinite(x[i])) return 0;
    return 1;
}

static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* dst(rows, dst_ld) = src(rows, cols; row stride src_ld), columns cols..dst_ld-1 zero. */
static void copy_padded(float *dst, const float *src, int rows, int cols, int src_ld, int dst_ld) {
    for (int r = 0; r < rows; r++) {
        memcpy(dst + (size_t)r * dst_ld, src + (size_t)r * src_ld, (size_t)cols * sizeof(float));
        memset(dst + (size_t)r * dst_ld + cols, 0, (size_t)(dst_ld - cols) * sizeof(float));
    }
}

/* dst(cols, dst_ld) = src(rows, cols; row stride src_ld)^T, columns rows..dst_ld-1 zero. In 32 x 32 tiles,
 * so that neither side is walked with a large stride for long. */
static void transpose_padded(float *dst, const float *src, int rows, int cols, int src_ld, int dst_ld) {
    enum { TILE = 32 };
#pragma omp parallel for schedule(static) if ((size_t)rows * cols >= ((size_t)1 << 16))
    for (int c0 = 0; c0 < cols; c0 += TILE) {
        const int c1 = c0 + TILE < cols ? c0 + TILE : cols;
        for (int r0 = 0; r0 < rows; r0 += TILE) {
            const int r1 = r0 + TILE < rows ? r0 + TILE : rows;
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++) dst[(size_t)c * dst_ld + r] = src[(size_t)r * src_ld + c];
        }
        for (int c = c0; c < c1; c++)
            for (int r = rows; r < dst_ld; r++) dst[(size_t)c * dst_ld + r] = 0.0f;
    }
}

static float *scratch(size_t n, const char *what) { return kl_malloc((n ? n : 1) * sizeof(float), what); }

/* x(rows, cols) <- the NVFP4 fake quantization of itself: kl_nvfp4_quantize_cpu, then the decode of
 * kl_nvfp4_dequant_value ((e2m1 * ue4m3) * s_g, the same two fp32 products) with the block scale and the
 * 16 code values decoded once per block instead of once per element. */
static kl_status nvfp4_fake_quant(float *x, int rows, int cols, const kl_nvfp4_params *p) {
    kl_nvfp4_packed q = {0};
    q.codes = kl_malloc(kl_nvfp4_code_bytes(rows, cols), "NVFP4 codes");
    q.scales = kl_malloc(kl_nvfp4_scale_count(rows, cols), "NVFP4 block scales");
    kl_status st = q.codes && q.scales ? kl_nvfp4_quantize_cpu(&q, x, rows, cols, p) : KL_ERR_OOM;
    if (st == KL_OK) {
        float e2m1[16];
        for (int c = 0; c < 16; c++) e2m1[c] = kl_e2m1_to_float((uint8_t)c);
        const int64_t blocks = (int64_t)rows * (cols / KL_NVFP4_BLOCK);
#pragma omp parallel for schedule(static) if (blocks >= 4096)
        for (int64_t b = 0; b < blocks; b++) {
            const float sv = kl_ue4m3_to_float(q.scales[b]);
            const uint8_t *codes = q.codes + b * (KL_NVFP4_BLOCK / 2);
            float *out = x + b * KL_NVFP4_BLOCK;
            for (int j = 0; j < KL_NVFP4_BLOCK / 2; j++) {
                out[2 * j] = kl_q_mul(kl_q_mul(e2m1[codes[j] & 0xF], sv), q.global_scale);
                out[2 * j + 1] = kl_q_mul(kl_q_mul(e2m1[codes[j] >> 4], sv), q.global_scale);
            }
        }
    }
    free(q.codes);
    free(q.scales);
    return st;
}

/* Row stride of the saved forward operands: IC, rounded up to the NVFP4 block for NVFP4. */
static int operand_ld(kl_linear_mode mode, int IC) { return mode == KL_LINEAR_NVFP4 ? round_up(IC, KL_NVFP4_BLOCK) : IC; }

/* The forward's operands: xq(N, ld) = Q(inp), wq(OC, ld) = Q(w). FP8: E4M3 with per-tensor current scaling.
 * NVFP4: zero-padded to ld columns, then RTN with the four-over-six block scale choice along the rows.
 * Deterministic (no call id), so the backward may recompute them and get the same bits. */
static kl_status quantize_operands(const kl_linear_cfg *cfg, float *xq, float *wq, int ld, const float *inp,
                                   const float *w, int N, int IC, int OC) {
    if (cfg->mode == KL_LINEAR_FP8) {
        KL_TRY(kl_fp8_quant_dequant_cpu(xq, inp, (size_t)N * IC, KL_FP8_E4M3, NULL));
        return kl_fp8_quant_dequant_cpu(wq, w, (size_t)OC * IC, KL_FP8_E4M3, NULL);
    }
    kl_nvfp4_params p = {0};
    p.method = KL_NVFP4_RTN_FOUR_OVER_SIX;
    copy_padded(xq, inp, N, IC, IC, ld);
    copy_padded(wq, w, OC, IC, IC, ld);
    KL_TRY(nvfp4_fake_quant(xq, N, ld, &p));
    return nvfp4_fake_quant(wq, OC, ld, &p);
}

static kl_status grow(float **buf, size_t *cap, size_t n, const char *what) {
    if (*cap >= n) return KL_OK;
    free(*buf);
    *cap = 0;
    if (!(*buf = scratch(n, what))) return KL_ERR_OOM;
    *cap = n;
    return KL_OK;
}

void kl_linear_saved_free(kl_linear_saved *s) {
    if (!s) return;
    free(s->xq);
    free(s->wq);
    memset(s, 0, sizeof *s);
}

static int saved_matches(const kl_linear_saved *s, const kl_linear_cfg *cfg, const float *inp, const float *w, int N,
                         int IC, int OC) {
    return s && s->valid && s->mode == cfg->mode && s->inp == inp && s->w == w && s->N == N && s->IC == IC &&
           s->OC == OC;
}

/* NVFP4 backward operand, in place on x(rows, cols), cols % 128 == 0: the RHT with `signs` along the
 * rows, then MS-EDEN (or SR) fake quantization with its own call id. */
static kl_status nvfp4_backward_operand(float *x, int rows, int cols, kl_rht_signs signs, const kl_linear_cfg *cfg,
                                        uint64_t call_id) {
    KL_TRY(kl_rht128_rows_cpu(x, x, rows, cols, signs));
    kl_nvfp4_params p = {0};
    p.method = cfg->nvfp4_backward == KL_LINEAR_BWD_SR ? KL_NVFP4_SR : KL_NVFP4_MS_EDEN;
    p.seed = cfg->seed;
    p.call_id = call_id;
    return nvfp4_fake_quant(x, rows, cols, &p);
}

/* ---- forward ------------------------------------------------------------------------------------ */

kl_status kl_linear_forward(const kl_linear_cfg *cfg, kl_linear_saved *saved, float *out, const float *inp,
                            const float *w, const float *bias, int N, int IC, int OC) {
    KL_TRY(check_args("kl_linear_forward", cfg, N, IC, OC));
    if (saved) saved->valid = 0;
    if (cfg->mode == KL_LINEAR_FP32) {
        kl_matmul_forward_cpu(out, inp, w, bias, N, IC, OC);
        return KL_OK;
    }
    if (!all_finite(inp, (size_t)N * IC) || !all_finite(w, (size_t)OC * IC)) {
        fill_nan(out, (size_t)N * OC); /* what the FP32 GEMM would spread; the trainer skips the step */
        return KL_OK;
    }
    const int ld = operand_ld(cfg->mode, IC);
    const size_t nx = (size_t)N * ld, nw = (size_t)OC * ld;
    float *tx = NULL, *tw = NULL, *xq, *wq;
    kl_status st = KL_OK;
    if (saved) {
        if ((st = grow(&saved->xq, &saved->xq_cap, nx, "saved quantized linear input")) != KL_OK ||
            (st = grow(&saved->wq, &saved->wq_cap, nw, "saved quantized linear weight")) != KL_OK)
            goto done;
        xq = saved->xq;
        wq = saved->wq;
    } else {
        xq = tx = scratch(nx, "quantized linear input");
        wq = tw = scratch(nw, "quantized linear weight");
        if (!tx || !tw) {
            st = KL_ERR_OOM;
            goto done;
        }
    }
    if ((st = quantize_operands(cfg, xq, wq, ld, inp, w, N, IC, OC)) != KL_OK) goto done;
    kl_matmul_forward_cpu(out, xq, wq, bias, N, ld, OC); /* NVFP4's zero padding adds exact zeros */
    if (saved) {
        saved->mode = cfg->mode;
        saved->inp = inp;
        saved->w = w;
        saved->N = N;
        saved->IC = IC;
        saved->OC = OC;
        saved->valid = 1;
    }
done:
    free(tx);
    free(tw);
    return st == KL_OK ? KL_OK : kl_error_context(st, "%s linear forward (%d x %d -> %d)",
                                                  kl_linear_mode_name(cfg->mode), N, IC, OC);
}

/* ---- backward ----------------------------------------------------------------------------------- */

/* dbias(OC) += column sums of dout(N,OC), in double, rows in order (as matmul.h's reference). */
static void bias_grad(float *dbias, const float *dout, int N, int OC) {
    for (int o = 0; o < OC; o++) {
        double acc = 0.0;
        for (int n = 0; n < N; n++) acc += (double)dout[(size_t)n * OC + o];
        dbias[o] = (float)(dbias[o] + acc);
    }
}

static kl_status fp8_backward(float *dinp, float *dw, const float *dout, const float *xq, const float *wq, int N,
                              int IC, int OC) {
    float *eq = scratch((size_t)N * OC, "FP8 linear output gradient");
    if (!eq) return KL_ERR_OOM;
    kl_status st = kl_fp8_quant_dequant_cpu(eq, dout, (size_t)N * OC, KL_FP8_E5M2, NULL);
    /* per-tensor scales: the transposed operands are the forward's values, no re-quantization */
    if (st == KL_OK) kl_matmul_backward_cpu(dinp, dw, NULL, eq, xq, wq, N, IC, OC);
    free(eq);
    return st;
}

static kl_status nvfp4_backward(const kl_linear_cfg *cfg, uint64_t base, float *dinp, float *dw, const float *dout,
                                const float *xq, const float *wq, int ld, int N, int IC, int OC) {
    const int OCp = round_up(OC, KL_RHT_DIM), Np = round_up(N, KL_RHT_DIM);
    const kl_rht_signs signs = kl_rht128_signs(cfg->seed, base | KL_LINEAR_RNG_SIGNS);
    float *e = NULL, *wt = NULL, *et = NULL, *xt = NULL, *tmp = NULL;
    kl_status st = KL_OK;

    if (dinp) { /* dX(N,IC) = dY(N,OC) Q(W)(OC,IC): contraction over OC */
        e = scratch((size_t)N * OCp, "NVFP4 dgrad dY");
        wt = scratch((size_t)IC * OCp, "NVFP4 dgrad Q(W)^T");
        if (!e || !wt) {
            st = KL_ERR_OOM;
            goto done;
        }
        copy_padded(e, dout, N, OC, OC, OCp);
        transpose_padded(wt, wq, OC, IC, ld, OCp);
        if ((st = nvfp4_backward_operand(e, N, OCp, signs, cfg, base | KL_LINEAR_RNG_DGRAD_E)) != KL_OK) goto done;
        if ((st = nvfp4_backward_operand(wt, IC, OCp, signs, cfg, base | KL_LINEAR_RNG_DGRAD_W)) != KL_OK) goto done;
        kl_matmul_forward_cpu(dinp, e, wt, NULL, N, OCp, IC);
        for (size_t i = 0; i < (size_t)N * IC; i++) dinp[i] = kl_q_mul(dinp[i], KL_RHT_GEMM_ALPHA);
    }

    /* dW(OC,IC) += dY^T(OC,N) Q(X)(N,IC): contraction over N */
    et = scratch((size_t)OC * Np, "NVFP4 wgrad dY^T");
    xt = scratch((size_t)IC * Np, "NVFP4 wgrad Q(X)^T");
    tmp = scratch((size_t)OC * IC, "NVFP4 wgrad product");
    if (!et || !xt || !tmp) {
        st = KL_ERR_OOM;
        goto done;
    }
    transpose_padded(et, dout, N, OC, OC, Np);
    transpose_padded(xt, xq, N, IC, ld, Np);
    if ((st = nvfp4_backward_operand(et, OC, Np, signs, cfg, base | KL_LINEAR_RNG_WGRAD_E)) != KL_OK) goto done;
    if ((st = nvfp4_backward_operand(xt, IC, Np, signs, cfg, base | KL_LINEAR_RNG_WGRAD_X)) != KL_OK) goto done;
    kl_matmul_forward_cpu(tmp, et, xt, NULL, OC, Np, IC);
    for (size_t i = 0; i < (size_t)OC * IC; i++) dw[i] = kl_q_add(dw[i], kl_q_mul(tmp[i], KL_RHT_GEMM_ALPHA));
done:
    free(e);
    free(wt);
    free(et);
    free(xt);
    free(tmp);
    return st;
}

kl_status kl_linear_backward(const kl_linear_cfg *cfg, const kl_linear_saved *saved, uint64_t call_base, float *dinp,
                             float *dw, float *dbias, const float *dout, const float *inp, const float *w, int N, int IC,
                             int OC) {
    KL_TRY(check_args("kl_linear_backward", cfg, N, IC, OC));
    if (!dw) return kl_error(KL_ERR_INVALID, "kl_linear_backward: expected a weight-gradient buffer, got NULL");
    if (call_base & 7u)
        return kl_error(KL_ERR_INVALID, "kl_linear_backward: call_base must have its low 3 bits clear (got %llu)",
                        (unsigned long long)call_base);
    if (cfg->mode == KL_LINEAR_FP32) {
        kl_matmul_backward_cpu(dinp, dw, dbias, dout, inp, w, N, IC, OC);
        return KL_OK;
    }
    if (!all_finite(dout, (size_t)N * OC) || !all_finite(inp, (size_t)N * IC) || !all_finite(w, (size_t)OC * IC)) {
        if (dinp) fill_nan(dinp, (size_t)N * IC); /* as the FP32 GEMMs would spread it */
        fill_nan(dw, (size_t)OC * IC);
        if (dbias) fill_nan(dbias, (size_t)OC);
        return KL_OK;
    }
    const int ld = operand_ld(cfg->mode, IC);
    const float *xq, *wq;
    float *tx = NULL, *tw = NULL;
    kl_status st = KL_OK;
    if (saved_matches(saved, cfg, inp, w, N, IC, OC)) {
        xq = saved->xq;
        wq = saved->wq;
    } else { /* recompute the forward's Q(inp), Q(w): deterministic, so the same bits */
        xq = tx = scratch((size_t)N * ld, "quantized linear input");
        wq = tw = scratch((size_t)OC * ld, "quantized linear weight");
        st = tx && tw ? quantize_operands(cfg, tx, tw, ld, inp, w, N, IC, OC) : KL_ERR_OOM;
    }
    if (st == KL_OK)
        st = cfg->mode == KL_LINEAR_FP8 ? fp8_backward(dinp, dw, dout, xq, wq, N, IC, OC)
                                       : nvfp4_backward(cfg, call_base, dinp, dw, dout, xq, wq, ld, N, IC, OC);
    free(tx);
    free(tw);
    if (st != KL_OK)
        return kl_error_context(st, "%s linear backward (%d x %d -> %d)", kl_linear_mode_name(cfg->mode), N, IC, OC);
    if (dbias) bias_grad(dbias, dout, N, OC); /* the bias never meets a quantized operand */
    return KL_OK;
}
