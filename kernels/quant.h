/* quant.h — kiln's low-bit numerics, bit-exact: FP8 E4M3/E5M2, E2M1 and UE4M3 codecs, FP8 per-tensor
 * current scaling, the NVFP4 quantizers of Quartet II (RTN, four-over-six, SR, MS-EDEN), the 128-point
 * randomized Hadamard transform and the 128x4 scale swizzle of Blackwell GEMMs. The static inline
 * helpers (KL_HD) are shared verbatim by host C and CUDA device code; the *_cpu functions are the
 * reference that the CUDA kernels must reproduce bit for bit. docs/nvfp4.md explains the choices.
 *
 * Arithmetic contract (what makes "bit for bit" possible):
 *  - Every floating-point step below is one IEEE binary32 operation rounded to nearest-even, written
 *    as its own call (kl_q_mul/div/add/sub), never fused into an FMA. C code is compiled as ISO C11
 *    (GCC then defaults to -ffp-contract=off; clang only contracts inside one expression, and no
 *    expression here holds more than one operation). CUDA code gets __fmul_rn & co, which nvcc never
 *    contracts.
 *  - Sums over a 16-element group use one fixed tree (kl_quant_sum16). Maxima are order-free.
 *  - Randomness: Philox-4x32-10 (src/philox.h), key = 64-bit seed, counter = (index/4, call id low,
 *    call id high, purpose); the uniform for item `index` is word index%4 of that block, mapped to
 *    [0,1) by its top 24 bits (kl_u32_to_unit_float). See kl_quant_random_word.
 *  - Signed zero is kept: -0.0 encodes to the negative-zero code of every format. Every NaN result of
 *    an FP8 encoder is the byte 0x7F (what the CUDA cvt instructions produce). Tensor quantizers
 *    reject non-finite inputs (KL_ERR_NUMERIC) before any encoder sees them. */
#ifndef KL_QUANT_H
#define KL_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kl_base.h"
#include "philox.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- single IEEE fp32 operations, never contracted ------------------------------------------- */
#if defined(__CUDA_ARCH__)
KL_HD float kl_q_mul(float a, float b) { return __fmul_rn(a, b); }
KL_HD float kl_q_div(float a, float b) { return __fdiv_rn(a, b); }
KL_HD float kl_q_add(float a, float b) { return __fadd_rn(a, b); }
KL_HD float kl_q_sub(float a, float b) { return __fsub_rn(a, b); }
#else
KL_HD float kl_q_mul(float a, float b) { return a * b; }
KL_HD float kl_q_div(float a, float b) { return a / b; }
KL_HD float kl_q_add(float a, float b) { return a + b; }
KL_HD float kl_q_sub(float a, float b) { return a - b; }
#endif

KL_HD uint32_t kl_q_f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
KL_HD float kl_q_bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
KL_HD float kl_q_abs(float x) { return kl_q_bits_f32(kl_q_f32_bits(x) & 0x7FFFFFFFu); }
/* Finite (not NaN, not +-Inf). */
KL_HD int kl_q_isfinite(float x) { return (kl_q_f32_bits(x) & 0x7F800000u) != 0x7F800000u; }

/* ---- generic small binary float formats (all with subnormals) -------------------------------- */

/* m >> sh (1 <= sh <= 31), rounded to nearest with ties to even when rne != 0, else truncated. */
KL_HD uint32_t kl_q_shift_round(uint32_t m, int sh, int rne) {
    uint32_t q = m >> sh;
    if (!rne) return q;
    uint32_t rem = m & ((1u << sh) - 1u), half = 1u << (sh - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return q;
}

/* Magnitude code (exponent and mantissa fields, no sign) of the finite non-negative float32 whose bits
 * are `a`, in a format with `mbits` mantissa bits, exponent bias `bias` and subnormals; rounded to
 * nearest-even (rne = 1) or toward zero (rne = 0). Not clamped: codes above the format's largest
 * finite code mean overflow and are the caller's business. A carry out of the mantissa moves to the
 * next binade by itself, because exponent and mantissa fields are adjacent. */
KL_HD uint32_t kl_q_minifloat_code(uint32_t a, int mbits, int bias, int rne) {
    int e32 = (int)(a >> 23); /* biased float32 exponent; 0 = zero or float32 subnormal */
    int emin = 1 - bias;      /* unbiased exponent of the smallest normal of the format */
    if (e32 == 0) return 0;   /* |x| < 2^-126, far below half of any subnormal used here */
    int e = e32 - 127;
    if (e >= emin) return kl_q_shift_round(a, 23 - mbits, rne) - ((uint32_t)(127 - bias) << mbits);
    /* Subnormal in the target: count units of 2^(emin - mbits) in the 24-bit significand. */
    int sh = 23 - mbits + (emin - e);
    if (sh > 24) return 0; /* below half a unit (the significand is < 2^24) */
    return kl_q_shift_round((a & 0x7FFFFFu) | 0x800000u, sh, rne);
}

/* Value of a magnitude code (no sign) of the same kind of format; exact. */
KL_HD float kl_q_minifloat_value(uint32_t code, int mbits, int bias) {
    uint32_t ef = code >> mbits, mf = code & ((1u << mbits) - 1u);
    if (ef == 0) return kl_q_mul((float)mf, kl_q_bits_f32((uint32_t)(127 + 1 - bias - mbits) << 23));
    return kl_q_bits_f32(((uint32_t)((int)ef - bias + 127) << 23) | (mf << (23 - mbits)));
}

/* ---- FP8 (OCP E4M3 "fn" and E5M2) --------------------------------------------------------------
 * E4M3: bias 7, no Inf, S.1111.111 is NaN, max 448 (0x7E), min subnormal 2^-9.
 * E5M2: bias 15, Inf = S.11111.00, NaN above it, max 57344 (0x7B), min subnormal 2^-16.
 * Encoding: round to nearest, ties to even. saturate = 1 ("satfinite"): finite overflow and +-Inf give
 * +-max. saturate = 0: overflow gives NaN (E4M3) or +-Inf (E5M2), as ml-dtypes and cvt.rn do. NaN in
 * gives 0x7F in both modes. */
typedef enum { KL_FP8_E4M3 = 0, KL_FP8_E5M2 = 1 } kl_fp8_format;

#define KL_FP8_NAN_BYTE 0x7Fu
#define KL_FP8_E4M3_MAX 448.0f
#define KL_FP8_E5M2_MAX 57344.0f

KL_HD uint8_t kl_fp8_e4m3_from_float(float x, int saturate) {
    uint32_t u = kl_q_f32_bits(x), a = u & 0x7FFFFFFFu, sign = (u >> 24) & 0x80u;
    if (a > 0x7F800000u) return (uint8_t)KL_FP8_NAN_BYTE;
    uint32_t c = kl_q_minifloat_code(a, 3, 7, 1); /* +Inf bits round to a huge code: overflow */
    if (c > 0x7Eu) return (uint8_t)(saturate ? (sign | 0x7Eu) : KL_FP8_NAN_BYTE);
    return (uint8_t)(sign | c);
}

KL_HD uint8_t kl_fp8_e5m2_from_float(float x, int saturate) {
    uint32_t u = kl_q_f32_bits(x), a = u & 0x7FFFFFFFu, sign = (u >> 24) & 0x80u;
    if (a > 0x7F800000u) return (uint8_t)KL_FP8_NAN_BYTE;
    uint32_t c = kl_q_minifloat_code(a, 2, 15, 1);
    if (c > 0x7Bu) return (uint8_t)(sign | (saturate ? 0x7Bu : 0x7Cu));
    return (uint8_t)(sign | c);
}

KL_HD float kl_fp8_e4m3_to_float(uint8_t b) {
    uint32_t mag = b & 0x7Fu, sign = (uint32_t)(b & 0x80u) << 24;
    if (mag == 0x7Fu) return kl_q_bits_f32(0x7FC00000u | sign);
    return kl_q_bits_f32(kl_q_f32_bits(kl_q_minifloat_value(mag, 3, 7)) | sign);
}

KL_HD float kl_fp8_e5m2_to_float(uint8_t b) {
    uint32_t mag = b & 0x7Fu, sign = (uint32_t)(b & 0x80u) << 24;
    if (mag == 0x7Cu) return kl_q_bits_f32(0x7F800000u | sign);
    if (mag > 0x7Cu) return kl_q_bits_f32(0x7FC00000u | sign);
    return kl_q_bits_f32(kl_q_f32_bits(kl_q_minifloat_value(mag, 2, 15)) | sign);
}

KL_HD uint8_t kl_fp8_from_float(float x, kl_fp8_format f, int saturate) {
    return f == KL_FP8_E5M2 ? kl_fp8_e5m2_from_float(x, saturate) : kl_fp8_e4m3_from_float(x, saturate);
}
KL_HD float kl_fp8_to_float(uint8_t b, kl_fp8_format f) {
    return f == KL_FP8_E5M2 ? kl_fp8_e5m2_to_float(b) : kl_fp8_e4m3_to_float(b);
}
KL_HD float kl_fp8_max(kl_fp8_format f) { return f == KL_FP8_E5M2 ? KL_FP8_E5M2_MAX : KL_FP8_E4M3_MAX; }

/* Per-tensor current scaling: the decode scale is amax / format max, so that the largest element lands
 * on the format's maximum (1 when amax == 0 or the quotient underflows to 0: the tensor then encodes
 * to zeros). Encode q = fp8_satfinite(x / scale); decode q * scale. */
KL_HD float kl_fp8_decode_scale(float amax, kl_fp8_format f) {
    float s = kl_q_div(amax, kl_fp8_max(f));
    return s > 0.0f ? s : 1.0f;
}

/* ---- UE4M3 block scales (E4M3 with the sign bit always 0) ----------------------------------------- */

/* RNE, saturating to 448 (0x7E); the sign of x is ignored. NaN gives 0x7F. */
KL_HD uint8_t kl_ue4m3_from_float(float x) {
    uint32_t a = kl_q_f32_bits(x) & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint8_t)KL_FP8_NAN_BYTE;
    uint32_t c = kl_q_minifloat_code(a, 3, 7, 1);
    return (uint8_t)(c > 0x7Eu ? 0x7Eu : c);
}
KL_HD float kl_ue4m3_to_float(uint8_t b) { return kl_fp8_e4m3_to_float((uint8_t)(b & 0x7Fu)); }

/* Stochastic rounding of a finite t >= 0 (sign ignored) to UE4M3. With lo <= t < hi the neighbouring
 * UE4M3 values (lo = t rounded toward zero), the result is hi iff u < (t - lo) / (hi - lo), u uniform
 * in [0,1) with 24 bits. t - lo and hi - lo are exact (hi - lo is a power of two), so the probability
 * is exactly (t - lo)/(hi - lo) whenever that ratio has at most 24 fraction bits, which holds for all
 * t >= 2^-10 (E[result] = t exactly); below that the bias is under 2^-33. Subnormal t (< 2^-6) are
 * rounded stochastically too, with spacing 2^-9. t >= 448 gives 448. */
KL_HD uint8_t kl_ue4m3_sr(float t, float u) {
    uint32_t a = kl_q_f32_bits(t) & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint8_t)KL_FP8_NAN_BYTE;
    uint32_t lo = kl_q_minifloat_code(a, 3, 7, 0);
    if (lo >= 0x7Eu) return 0x7Eu;
    float lo_v = kl_q_minifloat_value(lo, 3, 7), hi_v = kl_q_minifloat_value(lo + 1u, 3, 7);
    float p = kl_q_div(kl_q_sub(kl_q_bits_f32(a), lo_v), kl_q_sub(hi_v, lo_v));
    return (uint8_t)(u < p ? lo + 1u : lo);
}

/* ---- E2M1 (FP4) elements ------------------------------------------------------------------------
 * Bit 3 sign, bits 2-1 exponent (bias 1), bit 0 mantissa; codes 0..7 = {0, .5, 1, 1.5, 2, 3, 4, 6},
 * codes 8..15 their negatives (8 is -0). No Inf or NaN. */

/* RNE with saturation to +-6 (the hardware conversion's rule; ml-dtypes' too). Ties: 0.25 -> 0,
 * 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4. +-Inf -> +-6; NaN -> 0x7 (never reached
 * through the tensor quantizers, which reject non-finite input). */
KL_HD uint8_t kl_e2m1_from_float(float x) {
    uint32_t u = kl_q_f32_bits(x), a = u & 0x7FFFFFFFu, sign = (u >> 28) & 0x8u;
    if (a > 0x7F800000u) return 0x7u;
    uint32_t c = kl_q_minifloat_code(a, 1, 1, 1);
    return (uint8_t)(sign | (c > 7u ? 7u : c));
}

/* The research reference's [R] rule: compare against midpoints with >=, i.e. ties away from zero. */
KL_HD uint8_t kl_e2m1_from_float_ties_away(float x) {
    uint32_t u = kl_q_f32_bits(x), sign = (u >> 28) & 0x8u;
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7u;
    float m = kl_q_abs(x);
    uint32_t c = (uint32_t)(m >= 0.25f) + (uint32_t)(m >= 0.75f) + (uint32_t)(m >= 1.25f) +
                 (uint32_t)(m >= 1.75f) + (uint32_t)(m >= 2.5f) + (uint32_t)(m >= 3.5f) + (uint32_t)(m >= 5.0f);
    return (uint8_t)(sign | c);
}

KL_HD float kl_e2m1_to_float(uint8_t code) {
    float v = kl_q_minifloat_value(code & 0x7u, 1, 1);
    return (code & 0x8u) ? kl_q_bits_f32(kl_q_f32_bits(v) | 0x80000000u) : v;
}

/* Stochastic rounding to E2M1: with lo <= |v| < hi neighbouring grid values, the magnitude is hi iff
 * u < (|v| - lo)/(hi - lo) (exact in fp32: Sterbenz, and hi - lo in {0.5, 1, 2}); sign kept;
 * |v| >= 6 gives 6. The probability is exact for |v| >= 0.25 (the ratio has at most 24 fraction bits);
 * below that E[result] is off by less than 2^-25. */
KL_HD uint8_t kl_e2m1_sr(float v, float u) {
    uint32_t b = kl_q_f32_bits(v), a = b & 0x7FFFFFFFu, sign = (b >> 28) & 0x8u;
    if (a > 0x7F800000u) return 0x7u;
    uint32_t lo = kl_q_minifloat_code(a, 1, 1, 0);
    if (lo >= 7u) return (uint8_t)(sign | 7u);
    float lo_v = kl_q_minifloat_value(lo, 1, 1), hi_v = kl_q_minifloat_value(lo + 1u, 1, 1);
    float p = kl_q_div(kl_q_sub(kl_q_bits_f32(a), lo_v), kl_q_sub(hi_v, lo_v));
    return (uint8_t)(sign | (u < p ? lo + 1u : lo));
}

/* ---- BF16 rounding (the MS-EDEN scratch scale) ---------------------------------------------------- */
KL_HD float kl_q_bf16_rne(float x) {
    uint32_t u = kl_q_f32_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return x;
    u += 0x7FFFu + ((u >> 16) & 1u);
    return kl_q_bits_f32(u & 0xFFFF0000u);
}

/* ---- randomness --------------------------------------------------------------------------------- */
enum {
    KL_QUANT_RNG_RHT_SIGNS = 1,   /* the 128 random signs of one Hadamard rotation: index 0..3 */
    KL_QUANT_RNG_EDEN_SCALE = 2,  /* MS-EDEN: one uniform per block scale, index = scale index */
    KL_QUANT_RNG_SR_ELEMENT = 3,  /* SR baseline: one uniform per element, index = element index */
};

/* Word `index % 4` of Philox-4x32-10 with key (seed low, seed high) and counter
 * (index / 4, call_id low, call_id high, purpose). index < 2^34. */
KL_HD uint32_t kl_quant_random_word(uint64_t seed, uint64_t call_id, uint32_t purpose, uint64_t index) {
    kl_philox_ctr c;
    c.v[0] = (uint32_t)(index >> 2);
    c.v[1] = (uint32_t)call_id;
    c.v[2] = (uint32_t)(call_id >> 32);
    c.v[3] = purpose;
    kl_philox_ctr r = kl_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
    return r.v[index & 3u];
}
KL_HD float kl_quant_uniform(uint64_t seed, uint64_t call_id, uint32_t purpose, uint64_t index) {
    return kl_u32_to_unit_float(kl_quant_random_word(seed, call_id, purpose, index));
}

/* ---- randomized Hadamard transform (RHT), 128 points ---------------------------------------------
 * y = H * diag(s) * x for every contiguous 128-chunk x of a row, H the 128x128 Sylvester matrix with
 * +-1 entries (H[i][j] = (-1)^popcount(i & j)), NOT divided by sqrt(128). Both operands of a GEMM
 * rotated with the same signs give 128 * (A B^T); the 1/128 (exact) goes into the GEMM's alpha:
 * KL_RHT_GEMM_ALPHA. Signs: bit j%32 of word j/32 set means column j is negated. */
#define KL_RHT_DIM 128
#define KL_RHT_GEMM_ALPHA 0.0078125f

typedef struct {
    uint32_t bits[4];
} kl_rht_signs;

/* Fresh signs for rotation `call_id`: the four words of Philox block (0, call_id, RHT_SIGNS). */
KL_HD kl_rht_signs kl_rht128_signs(uint64_t seed, uint64_t call_id) {
    kl_rht_signs s;
    for (uint32_t w = 0; w < 4; w++) s.bits[w] = kl_quant_random_word(seed, call_id, KL_QUANT_RNG_RHT_SIGNS, w);
    return s;
}
KL_HD int kl_rht_sign_negative(kl_rht_signs s, int j) { return (int)((s.bits[j >> 5] >> (j & 31)) & 1u); }

/* In-place fast Walsh-Hadamard transform of 128 floats, the canonical order: for h = 1, 2, 4, ..., 64,
 * for every pair (i, i + h) with i & h == 0, in increasing i: (x[i], x[i+h]) <- (x[i] + x[i+h],
 * x[i] - x[i+h]), each an fp32 RNE operation. */
void kl_fwht128(float *x);
/* out = RHT(in) along rows: rows x cols, cols % 128 == 0; out == in allowed. */
kl_status kl_rht128_rows_cpu(float *out, const float *in, int64_t rows, int64_t cols, kl_rht_signs signs);
/* The inverse: x = diag(s) * H * y * (1/128): FWHT, then the exact scale by 1/128, then the signs. */
kl_status kl_rht128_inverse_rows_cpu(float *out, const float *in, int64_t rows, int64_t cols,
                                     kl_rht_signs signs);

/* ---- NVFP4: 1x16 blocks of E2M1 along the contraction dimension, UE4M3 block scales, FP32 s_g ------
 * Decoded element = (e2m1(code) * ue4m3(scale)) * s_g: the first product is exact (6 significant bits),
 * the second is one fp32 rounding. A real NVFP4 GEMM applies s_g(A) * s_g(B) once, in alpha. */
#define KL_NVFP4_BLOCK 16
#define KL_NVFP4_S_MAX 448.0f              /* plain RTN and SR: block scales reach up to 448 */
#define KL_NVFP4_S_MAX_FOUR_OVER_SIX 256.0f /* 4/6: the "4" candidate is 1.5x larger, 384 <= 448 */
#define KL_NVFP4_EDEN_S_MAX 256.0f          /* MS-EDEN: headroom for the correction factor and SR */
#define KL_NVFP4_SR_SCALE_OVERRIDE 1.0625f  /* SR: val_max = 6/(17/16) so the block max stays <= 6 */
#define KL_NVFP4_EDEN_SCALE_OVERRIDE 0.988125f /* MS-EDEN: fp4_max = 6/0.988125 (= (17/16) * 0.93) */

/* Fixed summation tree over 16 values: adjacent pairs, then pairs of pairs, ...:
 * (((t0+t1)+(t2+t3))+((t4+t5)+(t6+t7))) + (((t8+t9)+...)). Any power-of-two split of the group
 * over threads, with a xor-shuffle butterfly across them, computes the same bits. */
KL_HD float kl_quant_sum16(const float *t) {
    float a[8];
    for (int i = 0; i < 8; i++) a[i] = kl_q_add(t[2 * i], t[2 * i + 1]);
    for (int i = 0; i < 4; i++) a[i] = kl_q_add(a[2 * i], a[2 * i + 1]);
    for (int i = 0; i < 2; i++) a[i] = kl_q_add(a[2 * i], a[2 * i + 1]);
    return kl_q_add(a[0], a[1]);
}

KL_HD float kl_quant_absmax16(const float *x) {
    float m = 0.0f;
    for (int i = 0; i < 16; i++) {
        float a = kl_q_abs(x[i]);
        if (a > m) m = a;
    }
    return m;
}

/* Tensor decode scale of the RTN family: s_g = (amax / s_max) / val_max, or 1 when that is 0 (amax == 0,
 * or an underflow for amax < ~2^-137, where every block then decodes to 0). */
KL_HD float kl_nvfp4_global_scale(float amax, float s_max, float val_max) {
    float s = kl_q_div(kl_q_div(amax, s_max), val_max);
    return s > 0.0f ? s : 1.0f;
}

KL_HD float kl_nvfp4_dequant_value(uint8_t code, float scale_value, float s_g) {
    return kl_q_mul(kl_q_mul(kl_e2m1_to_float(code), scale_value), s_g);
}

/* The block scale byte and the divisor of the RTN family, canonical order:
 *   s_raw = (bmax / val_max) / s_g;  sb = ue4m3_rne_satfinite(s_raw);  d = ue4m3(sb) * s_g,
 * where ue4m3(sb) == 0 is replaced by 1.0 in d (the byte stays 0, so the block decodes to 0). */
KL_HD uint8_t kl_nvfp4_block_scale(float bmax, float val_max, float s_g, float *divisor) {
    uint8_t sb = kl_ue4m3_from_float(kl_q_div(kl_q_div(bmax, val_max), s_g));
    float sv = kl_ue4m3_to_float(sb);
    *divisor = kl_q_mul(sv == 0.0f ? 1.0f : sv, s_g);
    return sb;
}

/* RTN of one block with candidate val_max: codes[i] = e2m1_rne(x[i] / d). Returns the scale byte. */
KL_HD uint8_t kl_nvfp4_rtn_block(const float *x, float s_g, float val_max, uint8_t *codes) {
    float d;
    uint8_t sb = kl_nvfp4_block_scale(kl_quant_absmax16(x), val_max, s_g, &d);
    for (int i = 0; i < 16; i++) codes[i] = kl_e2m1_from_float(kl_q_div(x[i], d));
    return sb;
}

/* Sum over the block of (x[i] - decoded[i])^2, each step fp32, summed by kl_quant_sum16. */
KL_HD float kl_nvfp4_block_sse(const float *x, const uint8_t *codes, uint8_t scale, float s_g) {
    float sq[16], sv = kl_ue4m3_to_float(scale);
    for (int i = 0; i < 16; i++) {
        float e = kl_q_sub(x[i], kl_nvfp4_dequant_value(codes[i], sv, s_g));
        sq[i] = kl_q_mul(e, e);
    }
    return kl_quant_sum16(sq);
}

/* Four-over-six: RTN with val_max 6 and with val_max 4; keeps the candidate with the smaller SSE,
 * ties to "6". s_g must come from KL_NVFP4_S_MAX_FOUR_OVER_SIX. Returns the scale byte. */
KL_HD uint8_t kl_nvfp4_four_over_six_block(const float *x, float s_g, uint8_t *codes) {
    uint8_t c4[16];
    uint8_t sb6 = kl_nvfp4_rtn_block(x, s_g, 6.0f, codes);
    uint8_t sb4 = kl_nvfp4_rtn_block(x, s_g, 4.0f, c4);
    if (kl_nvfp4_block_sse(x, c4, sb4, s_g) < kl_nvfp4_block_sse(x, codes, sb6, s_g)) {
        for (int i = 0; i < 16; i++) codes[i] = c4[i];
        return sb4;
    }
    return sb6;
}

/* SR baseline: the RTN block scale with val_max = 6 / KL_NVFP4_SR_SCALE_OVERRIDE, then
 * codes[i] = e2m1_sr(x[i] / d, u[i]). */
KL_HD float kl_nvfp4_sr_val_max(void) { return kl_q_div(6.0f, KL_NVFP4_SR_SCALE_OVERRIDE); }
KL_HD uint8_t kl_nvfp4_sr_block(const float *x, float s_g, const float *u, uint8_t *codes) {
    float d;
    uint8_t sb = kl_nvfp4_block_scale(kl_quant_absmax16(x), kl_nvfp4_sr_val_max(), s_g, &d);
    for (int i = 0; i < 16; i++) codes[i] = kl_e2m1_sr(kl_q_div(x[i], d), u[i]);
    return sb;
}

/* MS-EDEN, pass 1 for one 16-group of the (rotated) operand y, following the fast kernels [K]:
 *   s  = bmax / fp4_max,  fp4_max = 6 / 0.988125 (fp32);
 *   s4 = s truncated to 4 significant bits (float bits & 0xFFF80000);
 *   v_i = y_i / s4;  q_i = e2m1_rne(v_i)   (if s4 == 0: every code 0, S = 0);
 *   c  = sum16(v_i * v_i) / sum16(v_i * q_i)   (c = 1 if the denominator is 0);
 *   S  = s4 * c.
 * Writes the codes and returns S in fp32. Then sum_i (q_i * S) * y_i = sum_i y_i^2 up to rounding:
 * the EDEN alignment. The tensor quantizer stores bf16_rne(S) in its scratch (as [K] does). */
KL_HD float kl_nvfp4_eden_fp4_max(void) { return kl_q_div(6.0f, KL_NVFP4_EDEN_SCALE_OVERRIDE); }
KL_HD float kl_q_trunc4(float s) { return kl_q_bits_f32(kl_q_f32_bits(s) & 0xFFF80000u); }
KL_HD float kl_nvfp4_eden_group(const float *y, uint8_t *codes) {
    float s4 = kl_q_trunc4(kl_q_div(kl_quant_absmax16(y), kl_nvfp4_eden_fp4_max()));
    if (s4 == 0.0f) {
        for (int i = 0; i < 16; i++) codes[i] = 0;
        return 0.0f;
    }
    float vv[16], vq[16];
    for (int i = 0; i < 16; i++) {
        float v = kl_q_div(y[i], s4);
        codes[i] = kl_e2m1_from_float(v);
        vv[i] = kl_q_mul(v, v);
        vq[i] = kl_q_mul(v, kl_e2m1_to_float(codes[i]));
    }
    float den = kl_quant_sum16(vq);
    float c = den > 0.0f ? kl_q_div(kl_quant_sum16(vv), den) : 1.0f;
    return kl_q_mul(s4, c);
}

/* MS-EDEN, pass 2: s_g = maxS / 256 over the bf16 scratch scales of the whole tensor (1 if that is 0);
 * every scale byte = ue4m3_sr(S_bf16 / s_g, u), u = kl_quant_uniform(seed, call_id, EDEN_SCALE,
 * scale index). */
KL_HD float kl_nvfp4_eden_global_scale(float max_s) {
    float s = kl_q_div(max_s, KL_NVFP4_EDEN_S_MAX);
    return s > 0.0f ? s : 1.0f;
}

/* Offset of block scale (m, kb) in the 128x4-tiled layout of cuBLASLt VEC16_UE4M3 / cuDNN, for a
 * matrix with `cols` (= K) columns: tiles of 128 rows x 4 scale columns, 512 bytes each. */
KL_HD size_t kl_nvfp4_scale_offset(int64_t m, int64_t kb, int64_t cols) {
    int64_t n_kt = (cols / 16 + 3) / 4;
    return (size_t)(((m / 128) * n_kt + kb / 4) * 512 + (m % 32) * 16 + ((m / 32) % 4) * 4 + kb % 4);
}

/* ---- tensor-level quantizers (host reference) ----------------------------------------------------- */
typedef enum {
    KL_NVFP4_RTN = 0,              /* RTN, S_MAX 448, val_max 6 */
    KL_NVFP4_RTN_FOUR_OVER_SIX = 1, /* RTN with the 4/6 block scale choice, S_MAX 256 (forward pass) */
    KL_NVFP4_SR = 2,               /* stochastic rounding of every element, val_max 6*16/17 (baseline) */
    KL_NVFP4_MS_EDEN = 3,          /* MS-EDEN [K]: RTN codes, corrected scale, SR of the scale (backward) */
} kl_nvfp4_method;

typedef struct {
    kl_nvfp4_method method;
    uint64_t seed;    /* Philox key for SR and MS-EDEN */
    uint64_t call_id; /* distinct for every quantization call that must draw fresh randomness */
    int have_amax;    /* RTN family only: 1 = use `amax` (delayed or computed elsewhere) for s_g */
    float amax;
} kl_nvfp4_params;

/* A packed NVFP4 matrix [rows, cols], quantized along cols. The caller owns both buffers. */
typedef struct {
    int64_t rows, cols;
    uint8_t *codes;     /* [rows, cols/2]: element 2j in the low nibble, 2j+1 in the high nibble */
    uint8_t *scales;    /* [rows, cols/16] UE4M3, row-major (kl_nvfp4_swizzle_scales_cpu for GEMMs) */
    float global_scale; /* s_g */
} kl_nvfp4_packed;

static inline size_t kl_nvfp4_code_bytes(int64_t rows, int64_t cols) { return (size_t)(rows * (cols / 2)); }
static inline size_t kl_nvfp4_scale_count(int64_t rows, int64_t cols) { return (size_t)(rows * (cols / 16)); }
/* ceil(rows/128) * ceil(cols/64) * 512 bytes: the padded size of the swizzled scales. */
static inline size_t kl_nvfp4_swizzled_scale_bytes(int64_t rows, int64_t cols) {
    return (size_t)(((rows + 127) / 128) * ((cols / 16 + 3) / 4) * 512);
}

/* Quantizes in[rows, cols] (cols % 16 == 0, rows * cols < 2^34, all finite) into out->codes,
 * out->scales (caller's buffers) and out->global_scale; sets out->rows/cols. Random draws: SR uses
 * (seed, call_id, SR_ELEMENT, r * cols + k); MS-EDEN uses (seed, call_id, EDEN_SCALE, r * cols/16 + kb).
 * MS-EDEN is applied to `in` as given: rotate it first with kl_rht128_rows_cpu. */
kl_status kl_nvfp4_quantize_cpu(kl_nvfp4_packed *out, const float *in, int64_t rows, int64_t cols,
                                const kl_nvfp4_params *p);
/* out[rows, cols] = decoded values (exact: (q * sb) * s_g). */
kl_status kl_nvfp4_dequantize_cpu(float *out, const kl_nvfp4_packed *q);
/* Quantize then dequantize: the "fake quantization" the emulated GEMMs multiply in FP32/BF16. When
 * packed != NULL its buffers receive the packed form too. out == in allowed. */
kl_status kl_nvfp4_fake_quant_rows_cpu(float *out, const float *in, int64_t rows, int64_t cols,
                                       const kl_nvfp4_params *p, kl_nvfp4_packed *packed);
/* Row-major [rows, cols/16] scales <-> the padded 128x4-tiled layout (padding bytes are 0). */
kl_status kl_nvfp4_swizzle_scales_cpu(uint8_t *dst, const uint8_t *src, int64_t rows, int64_t cols);
kl_status kl_nvfp4_unswizzle_scales_cpu(uint8_t *dst, const uint8_t *src, int64_t rows, int64_t cols);

/* ---- FP8 tensors (host reference) ---------------------------------------------------------------- */
/* max |x_i|; KL_ERR_NUMERIC naming the first non-finite element if there is one. */
kl_status kl_quant_abs_max_cpu(const float *x, size_t n, float *amax);
/* out_i = fp8_satfinite(in_i / scale); scale > 0 finite. */
kl_status kl_fp8_quantize_cpu(uint8_t *out, const float *in, size_t n, kl_fp8_format f, float scale);
/* out_i = fp8(in_i) * scale. */
kl_status kl_fp8_dequantize_cpu(float *out, const uint8_t *in, size_t n, kl_fp8_format f, float scale);
/* Current scaling: scale = kl_fp8_decode_scale(abs max of in), then out = dequantize(quantize(in)).
 * *scale_out (may be NULL) receives the decode scale, the value cuBLASLt takes as A/B scale. */
kl_status kl_fp8_quant_dequant_cpu(float *out, const float *in, size_t n, kl_fp8_format f, float *scale_out);

#ifdef __cplusplus
}
#endif
#endif
