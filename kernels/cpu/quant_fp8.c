/* quant_fp8.c — FP8 (E4M3, E5M2) tensors on the host: abs-max, per-tensor current scaling, quantize and
 * dequantize with the codecs of quant.h. This is the reference the CUDA FP8 cast kernels reproduce bit
 * for bit; it owns no GEMM and no delayed-scaling history. */
#include "quant.h"

kl_status kl_quant_abs_max_cpu(const float *x, size_t n, float *amax) {
    if ((!x && n) || !amax) return kl_error(KL_ERR_INVALID, "kl_quant_abs_max_cpu: expected non-NULL pointers");
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (!kl_q_isfinite(x[i]))
            return kl_error(KL_ERR_NUMERIC, "quantization: expected finite values, found %g at index %zu of %zu",
                            (double)x[i], i, n);
        float a = kl_q_abs(x[i]);
        if (a > m) m = a;
    }
    *amax = m;
    return KL_OK;
}

static kl_status check_format(const char *fn, kl_fp8_format f) {
    if (f != KL_FP8_E4M3 && f != KL_FP8_E5M2)
        return kl_error(KL_ERR_INVALID, "%s: expected KL_FP8_E4M3 or KL_FP8_E5M2, got format %d", fn, (int)f);
    return KL_OK;
}

static kl_status check_scale(const char *fn, float scale) {
    if (!(scale > 0.0f) || !kl_q_isfinite(scale))
        return kl_error(KL_ERR_INVALID, "%s: expected a finite decode scale > 0, got %g", fn, (double)scale);
    return KL_OK;
}

kl_status kl_fp8_quantize_cpu(uint8_t *out, const float *in, size_t n, kl_fp8_format f, float scale) {
    if (n && (!out || !in)) return kl_error(KL_ERR_INVALID, "kl_fp8_quantize_cpu: expected non-NULL pointers");
    KL_TRY(check_format("kl_fp8_quantize_cpu", f));
    KL_TRY(check_scale("kl_fp8_quantize_cpu", scale));
    for (size_t i = 0; i < n; i++) out[i] = kl_fp8_from_float(kl_q_div(in[i], scale), f, 1);
    return KL_OK;
}

kl_status kl_fp8_dequantize_cpu(float *out, const uint8_t *in, size_t n, kl_fp8_format f, float scale) {
    if (n && (!out || !in)) return kl_error(KL_ERR_INVALID, "kl_fp8_dequantize_cpu: expected non-NULL pointers");
    KL_TRY(check_format("kl_fp8_dequantize_cpu", f));
    KL_TRY(check_scale("kl_fp8_dequantize_cpu", scale));
    for (size_t i = 0; i < n; i++) out[i] = kl_q_mul(kl_fp8_to_float(in[i], f), scale);
    return KL_OK;
}

kl_status kl_fp8_quant_dequant_cpu(float *out, const float *in, size_t n, kl_fp8_format f, float *scale_out) {
    if (n && (!out || !in)) return kl_error(KL_ERR_INVALID, "kl_fp8_quant_dequant_cpu: expected non-NULL pointers");
    KL_TRY(check_format("kl_fp8_quant_dequant_cpu", f));
    float amax;
    KL_TRY(kl_quant_abs_max_cpu(in, n, &amax));
    float scale = kl_fp8_decode_scale(amax, f);
    for (size_t i = 0; i < n; i++) out[i] = kl_q_mul(kl_fp8_to_float(kl_fp8_from_float(kl_q_div(in[i], scale), f, 1), f), scale);
    if (scale_out) *scale_out = scale;
    return KL_OK;
}
