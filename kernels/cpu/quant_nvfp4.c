/* quant_nvfp4.c — NVFP4 tensors on the host: the RTN, four-over-six, SR and MS-EDEN quantizers over 1x16
 * blocks along the rows (the contraction dimension), nibble packing, exact dequantization, fake
 * quantization and the 128x4 scale swizzle. The per-block arithmetic lives in quant.h (shared with CUDA);
 * this file only walks tensors, draws the Philox uniforms and validates arguments. */
#include <stdlib.h>

#include "quant.h"

#define MAX_ELEMENTS ((int64_t)1 << 34) /* Philox counter word 0 holds index / 4 */

static kl_status check_shape(const char *fn, int64_t rows, int64_t cols) {
    if (rows < 0 || cols <= 0 || cols % KL_NVFP4_BLOCK != 0)
        return kl_error(KL_ERR_INVALID, "%s: expected rows >= 0 and cols a positive multiple of 16, got %lld x %lld",
                        fn, (long long)rows, (long long)cols);
    if (rows > MAX_ELEMENTS / cols)
        return kl_error(KL_ERR_INVALID, "%s: %lld x %lld elements exceed the 2^34 the random counters cover", fn,
                        (long long)rows, (long long)cols);
    return KL_OK;
}

static void put_codes(uint8_t *dst, const uint8_t *codes) {
    for (int j = 0; j < KL_NVFP4_BLOCK / 2; j++) dst[j] = (uint8_t)(codes[2 * j] | (codes[2 * j + 1] << 4));
}

/* RTN family: s_g from the tensor's (or the caller's) amax, then one block at a time. */
static void quantize_rtn(kl_nvfp4_packed *out, const float *in, const kl_nvfp4_params *p, float amax) {
    int64_t nb = out->cols / KL_NVFP4_BLOCK, blocks = out->rows * nb;
    int four_six = p->method == KL_NVFP4_RTN_FOUR_OVER_SIX, sr = p->method == KL_NVFP4_SR;
    float val_max = sr ? kl_nvfp4_sr_val_max() : 6.0f;
    float s_g = kl_nvfp4_global_scale(amax, four_six ? KL_NVFP4_S_MAX_FOUR_OVER_SIX : KL_NVFP4_S_MAX, val_max);
    out->global_scale = s_g;
#pragma omp parallel for schedule(static) if (blocks >= 4096)
    for (int64_t b = 0; b < blocks; b++) {
        const float *x = in + b * KL_NVFP4_BLOCK;
        uint8_t codes[KL_NVFP4_BLOCK];
        if (four_six) {
            out->scales[b] = kl_nvfp4_four_over_six_block(x, s_g, codes);
        } else if (sr) {
            float u[KL_NVFP4_BLOCK];
            for (int i = 0; i < KL_NVFP4_BLOCK; i++)
                u[i] = kl_quant_uniform(p->seed, p->call_id, KL_QUANT_RNG_SR_ELEMENT, (uint64_t)(b * KL_NVFP4_BLOCK + i));
            out->scales[b] = kl_nvfp4_sr_block(x, s_g, u, codes);
        } else {
            out->scales[b] = kl_nvfp4_rtn_block(x, s_g, val_max, codes);
        }
        put_codes(out->codes + b * (KL_NVFP4_BLOCK / 2), codes);
    }
}

/* MS-EDEN [K]: pass 1 writes codes and bf16 corrected scales; pass 2 picks s_g = max/256 and rounds
 * every scale stochastically to UE4M3. Block b of the row-major tensor is scale index b. */
static kl_status quantize_eden(kl_nvfp4_packed *out, const float *in, const kl_nvfp4_params *p) {
    int64_t blocks = out->rows * (out->cols / KL_NVFP4_BLOCK);
    float *s_bf16 = (float *)kl_malloc((size_t)(blocks ? blocks : 1) * sizeof(float), "MS-EDEN scratch scales");
    if (!s_bf16) return KL_ERR_OOM;
#pragma omp parallel for schedule(static) if (blocks >= 4096)
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t codes[KL_NVFP4_BLOCK];
        s_bf16[b] = kl_q_bf16_rne(kl_nvfp4_eden_group(in + b * KL_NVFP4_BLOCK, codes));
        put_codes(out->codes + b * (KL_NVFP4_BLOCK / 2), codes);
    }
    float max_s = 0.0f;
    for (int64_t b = 0; b < blocks; b++)
        if (s_bf16[b] > max_s) max_s = s_bf16[b];
    float s_g = kl_nvfp4_eden_global_scale(max_s);
    out->global_scale = s_g;
#pragma omp parallel for schedule(static) if (blocks >= 4096)
    for (int64_t b = 0; b < blocks; b++) {
        float u = kl_quant_uniform(p->seed, p->call_id, KL_QUANT_RNG_EDEN_SCALE, (uint64_t)b);
        out->scales[b] = kl_ue4m3_sr(kl_q_div(s_bf16[b], s_g), u);
    }
    free(s_bf16);
    return KL_OK;
}

kl_status kl_nvfp4_quantize_cpu(kl_nvfp4_packed *out, const float *in, int64_t rows, int64_t cols,
                                const kl_nvfp4_params *p) {
    const char *fn = "kl_nvfp4_quantize_cpu";
    if (!out || !p || (rows && (!in || !out->codes || !out->scales)))
        return kl_error(KL_ERR_INVALID, "%s: expected non-NULL input, params and output buffers", fn);
    KL_TRY(check_shape(fn, rows, cols));
    if (p->method < KL_NVFP4_RTN || p->method > KL_NVFP4_MS_EDEN)
        return kl_error(KL_ERR_INVALID, "%s: unknown method %d", fn, (int)p->method);
    if (p->have_amax && p->method == KL_NVFP4_MS_EDEN)
        return kl_error(KL_ERR_INVALID, "%s: MS-EDEN sets its tensor scale after the fact; expected have_amax = 0", fn);
    if (p->have_amax && (!kl_q_isfinite(p->amax) || p->amax < 0.0f))
        return kl_error(KL_ERR_INVALID, "%s: expected a finite amax >= 0, got %g", fn, (double)p->amax);
    float amax;
    KL_TRY(kl_quant_abs_max_cpu(in, (size_t)(rows * cols), &amax)); /* also rejects NaN / Inf */
    out->rows = rows;
    out->cols = cols;
    if (p->method == KL_NVFP4_MS_EDEN) return quantize_eden(out, in, p);
    quantize_rtn(out, in, p, p->have_amax ? p->amax : amax);
    return KL_OK;
}

kl_status kl_nvfp4_dequantize_cpu(float *out, const kl_nvfp4_packed *q) {
    if (!q || (q->rows && (!out || !q->codes || !q->scales)))
        return kl_error(KL_ERR_INVALID, "kl_nvfp4_dequantize_cpu: expected non-NULL output and packed buffers");
    KL_TRY(check_shape("kl_nvfp4_dequantize_cpu", q->rows, q->cols));
    int64_t n = q->rows * q->cols;
    for (int64_t i = 0; i < n; i++) {
        uint8_t byte = q->codes[i / 2];
        uint8_t code = (uint8_t)((i & 1) ? byte >> 4 : byte & 0xF);
        out[i] = kl_nvfp4_dequant_value(code, kl_ue4m3_to_float(q->scales[i / KL_NVFP4_BLOCK]), q->global_scale);
    }
    return KL_OK;
}

kl_status kl_nvfp4_fake_quant_rows_cpu(float *out, const float *in, int64_t rows, int64_t cols,
                                       const kl_nvfp4_params *p, kl_nvfp4_packed *packed) {
    const char *fn = "kl_nvfp4_fake_quant_rows_cpu";
    KL_TRY(check_shape(fn, rows, cols));
    kl_nvfp4_packed tmp = {0};
    kl_nvfp4_packed *q = packed ? packed : &tmp;
    if (!packed) {
        tmp.codes = (uint8_t *)kl_malloc(kl_nvfp4_code_bytes(rows, cols) + 1, "NVFP4 fake-quant codes");
        tmp.scales = (uint8_t *)kl_malloc(kl_nvfp4_scale_count(rows, cols) + 1, "NVFP4 fake-quant scales");
        if (!tmp.codes || !tmp.scales) {
            free(tmp.codes);
            free(tmp.scales);
            return KL_ERR_OOM;
        }
    }
    kl_status st = kl_nvfp4_quantize_cpu(q, in, rows, cols, p);
    if (st == KL_OK) st = kl_nvfp4_dequantize_cpu(out, q);
    if (!packed) {
        free(tmp.codes);
        free(tmp.scales);
    }
    return st == KL_OK ? KL_OK : kl_error_context(st, "%s", fn);
}

static kl_status swizzle(uint8_t *dst, const uint8_t *src, int64_t rows, int64_t cols, int forward) {
    const char *fn = forward ? "kl_nvfp4_swizzle_scales_cpu" : "kl_nvfp4_unswizzle_scales_cpu";
    if (rows && (!dst || !src)) return kl_error(KL_ERR_INVALID, "%s: expected non-NULL buffers", fn);
    KL_TRY(check_shape(fn, rows, cols));
    int64_t nb = cols / KL_NVFP4_BLOCK;
    if (forward) memset(dst, 0, kl_nvfp4_swizzled_scale_bytes(rows, cols));
    for (int64_t m = 0; m < rows; m++)
        for (int64_t kb = 0; kb < nb; kb++) {
            size_t off = kl_nvfp4_scale_offset(m, kb, cols);
            if (forward)
                dst[off] = src[m * nb + kb];
            else
                dst[m * nb + kb] = src[off];
        }
    return KL_OK;
}

kl_status kl_nvfp4_swizzle_scales_cpu(uint8_t *dst, const uint8_t *src, int64_t rows, int64_t cols) {
    return swizzle(dst, src, rows, cols, 1);
}

kl_status kl_nvfp4_unswizzle_scales_cpu(uint8_t *dst, const uint8_t *src, int64_t rows, int64_t cols) {
    return swizzle(dst, src, rows, cols, 0);
}
