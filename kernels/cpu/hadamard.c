/* hadamard.c — the 128-point randomized Hadamard transform (RHT) of MS-EDEN, host reference: random
 * column signs, then the +-1 Sylvester Hadamard by a fast Walsh-Hadamard transform in one fixed
 * butterfly order (quant.h), on every 128-chunk of every row. No normalisation: 1/128 goes to alpha. */
#include "quant.h"

void kl_fwht128(float *x) {
    for (int h = 1; h < KL_RHT_DIM; h <<= 1) {
        for (int i = 0; i < KL_RHT_DIM; i++) {
            if (i & h) continue;
            float a = x[i], b = x[i + h];
            x[i] = kl_q_add(a, b);
            x[i + h] = kl_q_sub(a, b);
        }
    }
}

static kl_status check_rows(const char *fn, const float *out, const float *in, int64_t rows, int64_t cols) {
    if (!out || !in) return kl_error(KL_ERR_INVALID, "%s: expected non-NULL input and output", fn);
    if (rows < 0 || cols <= 0 || cols % KL_RHT_DIM != 0)
        return kl_error(KL_ERR_INVALID, "%s: expected rows >= 0 and cols a positive multiple of %d, got %lld x %lld",
                        fn, KL_RHT_DIM, (long long)rows, (long long)cols);
    return KL_OK;
}

static float flip(float v, kl_rht_signs s, int j) {
    return kl_rht_sign_negative(s, j) ? kl_q_bits_f32(kl_q_f32_bits(v) ^ 0x80000000u) : v;
}

kl_status kl_rht128_rows_cpu(float *out, const float *in, int64_t rows, int64_t cols, kl_rht_signs signs) {
    KL_TRY(check_rows("kl_rht128_rows_cpu", out, in, rows, cols));
    int64_t chunks = rows * (cols / KL_RHT_DIM);
#pragma omp parallel for schedule(static) if (chunks >= 256)
    for (int64_t c = 0; c < chunks; c++) {
        float buf[KL_RHT_DIM];
        const float *src = in + c * KL_RHT_DIM;
        for (int j = 0; j < KL_RHT_DIM; j++) buf[j] = flip(src[j], signs, j); /* x * diag(s): exact */
        kl_fwht128(buf);
        memcpy(out + c * KL_RHT_DIM, buf, sizeof buf);
    }
    return KL_OK;
}

kl_status kl_rht128_inverse_rows_cpu(float *out, const float *in, int64_t rows, int64_t cols,
                                     kl_rht_signs signs) {
    KL_TRY(check_rows("kl_rht128_inverse_rows_cpu", out, in, rows, cols));
    int64_t chunks = rows * (cols / KL_RHT_DIM);
#pragma omp parallel for schedule(static) if (chunks >= 256)
    for (int64_t c = 0; c < chunks; c++) {
        float buf[KL_RHT_DIM];
        memcpy(buf, in + c * KL_RHT_DIM, sizeof buf);
        kl_fwht128(buf);
        float *dst = out + c * KL_RHT_DIM;
        for (int j = 0; j < KL_RHT_DIM; j++) dst[j] = flip(kl_q_mul(buf[j], KL_RHT_GEMM_ALPHA), signs, j);
    }
    return KL_OK;
}
