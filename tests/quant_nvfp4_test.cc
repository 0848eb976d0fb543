/* quant_nvfp4_test.cc — the NVFP4 reference (kernels/quant.h, kernels/cpu/quant_nvfp4.c, hadamard.c):
 * the test vectors T1-T8 and E1 of the Quartet II reference (quartet2-nvfp4.md §7) bit for bit, E2-E6 as property
 * tests, an independent brute-force re-implementation of the RTN quantizers, the Philox counter layout
 * pinned by an independent implementation, and GEMM-level unbiasedness of MS-EDEN. */
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "quant.h"
}

namespace {

struct Packed {
    std::vector<uint8_t> codes, scales;
    float s_g = 0.0f;
};

kl_nvfp4_params params(kl_nvfp4_method m, uint64_t seed = 0, uint64_t call_id = 0) {
    kl_nvfp4_params p;
    memset(&p, 0, sizeof p);
    p.method = m;
    p.seed = seed;
    p.call_id = call_id;
    return p;
}

kl_status quantize(const std::vector<float> &x, int64_t rows, int64_t cols, const kl_nvfp4_params &p, Packed *out) {
    out->codes.assign(kl_nvfp4_code_bytes(rows, cols), 0xAB);
    out->scales.assign(kl_nvfp4_scale_count(rows, cols), 0xAB);
    kl_nvfp4_packed q;
    memset(&q, 0, sizeof q);
    q.codes = out->codes.data();
    q.scales = out->scales.data();
    kl_status st = kl_nvfp4_quantize_cpu(&q, x.data(), rows, cols, &p);
    out->s_g = q.global_scale;
    return st;
}

std::string hex(const uint8_t *b, size_t n) {
    std::string s;
    char buf[4];
    for (size_t i = 0; i < n; i++) {
        snprintf(buf, sizeof buf, i ? " %02X" : "%02X", b[i]);
        s += buf;
    }
    return s;
}

std::vector<uint8_t> pack(const std::vector<uint8_t> &codes) {
    std::vector<uint8_t> b(codes.size() / 2);
    for (size_t j = 0; j < b.size(); j++) b[j] = (uint8_t)(codes[2 * j] | (codes[2 * j + 1] << 4));
    return b;
}

std::vector<uint8_t> unpack(const uint8_t *bytes, size_t n_codes) {
    std::vector<uint8_t> c(n_codes);
    for (size_t i = 0; i < n_codes; i++) c[i] = (uint8_t)((i & 1) ? bytes[i / 2] >> 4 : bytes[i / 2] & 0xF);
    return c;
}

uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

std::vector<float> one_to_sixteen() {
    std::vector<float> v(16);
    for (int i = 0; i < 16; i++) v[i] = (float)(i + 1);
    return v;
}

/* A 1 x 32 tensor: the block under test, then a block holding `amax`, so s_g comes out as the vectors want. */
std::vector<float> with_amax_block(const std::vector<float> &block, float amax) {
    std::vector<float> t(block);
    t.resize(32, 0.0f);
    t[16] = amax;
    return t;
}

double rel_mse(const std::vector<double> &est, const std::vector<double> &ref) {
    double e = 0, r = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        e += (est[i] - ref[i]) * (est[i] - ref[i]);
        r += ref[i] * ref[i];
    }
    return e / r;
}
double effective_bits(double rel) { return -0.5 * std::log2(rel); }

}  // namespace

/* ---- T1-T8 ---------------------------------------------------------------------------------------- */

TEST(Nvfp4Vectors, T1TiesRoundToEven) {
    std::vector<float> blk = {0, .25f, .5f, .75f, 1, 1.25f, 1.5f, 1.75f, 2, 2.5f, 3, 3.5f, 4, 5, 6, -6};
    Packed q;
    ASSERT_EQ(quantize(with_amax_block(blk, 2688.0f), 1, 32, params(KL_NVFP4_RTN), &q), KL_OK) << kl_last_error();
    EXPECT_EQ(q.s_g, 1.0f);  // (2688 / 448) / 6
    EXPECT_EQ(q.scales[0], 0x38);
    EXPECT_EQ(q.scales[1], 0x7E);
    EXPECT_EQ(hex(q.codes.data(), 8), "00 21 22 43 44 65 66 F7");
}

TEST(Nvfp4Vectors, T1UnderResearchTieRuleRoundsAway) {
    std::vector<float> blk = {0, .25f, .5f, .75f, 1, 1.25f, 1.5f, 1.75f, 2, 2.5f, 3, 3.5f, 4, 5, 6, -6};
    std::vector<uint8_t> codes(16);
    for (int i = 0; i < 16; i++) codes[i] = kl_e2m1_from_float_ties_away(blk[i]);
    EXPECT_EQ(hex(pack(codes).data(), 8), "10 21 32 43 54 65 76 F7");
}

TEST(Nvfp4Vectors, T2OneToSixteen) {
    Packed q;
    std::vector<float> t = with_amax_block(one_to_sixteen(), 2688.0f);
    ASSERT_EQ(quantize(t, 1, 32, params(KL_NVFP4_RTN), &q), KL_OK) << kl_last_error();
    EXPECT_EQ(q.s_g, 1.0f);
    EXPECT_EQ(q.scales[0], 0x43);  // 16/6 -> 2.75
    EXPECT_EQ(hex(q.codes.data(), 8), "11 32 44 55 65 66 76 77");
    std::vector<float> deq(32);
    kl_nvfp4_packed pk = {1, 32, q.codes.data(), q.scales.data(), q.s_g};
    ASSERT_EQ(kl_nvfp4_dequantize_cpu(deq.data(), &pk), KL_OK);
    const float want[16] = {1.375f, 1.375f, 2.75f, 4.125f, 5.5f, 5.5f, 8.25f, 8.25f,
                            8.25f,  11,     11,    11,     11,   16.5f, 16.5f, 16.5f};
    double sse = 0;
    for (int i = 0; i < 16; i++) {
        EXPECT_EQ(deq[i], want[i]) << "element " << i;
        sse += ((double)deq[i] - t[i]) * ((double)deq[i] - t[i]);
    }
    EXPECT_EQ(sse, 18.046875);  // all values are dyadic: exact
    EXPECT_EQ(deq[16], 2688.0f);
}

TEST(Nvfp4Vectors, T3SingleBlockTensorScaleAndTie) {
    Packed q;
    ASSERT_EQ(quantize(one_to_sixteen(), 1, 16, params(KL_NVFP4_RTN), &q), KL_OK) << kl_last_error();
    EXPECT_EQ(bits(q.s_g), 0x3BC30C31u);
    EXPECT_EQ(q.scales[0], 0x7E);
    EXPECT_EQ(hex(q.codes.data(), 8), "21 32 44 55 65 66 76 77");
    // 2/d is exactly 0.75 under the canonical order, and ties to code 2 (1.0).
    float d = kl_q_mul(kl_ue4m3_to_float(0x7E), q.s_g);
    EXPECT_EQ(kl_q_div(2.0f, d), 0.75f);
}

TEST(Nvfp4Vectors, T4MixedSignsKeepNegativeZero) {
    std::vector<float> blk = {.1f, -.2f, .3f, -.4f, .05f, 0.0f, -0.0f, .7f, -.9f, 1.1f, .02f, -.33f, .45f, -.6f, .8f, -1.2f};
    kl_nvfp4_params p = params(KL_NVFP4_RTN);
    p.have_amax = 1;  // s_g = 1 from a caller-supplied amax, as if 2688 sat elsewhere in the tensor
    p.amax = 2688.0f;
    Packed q;
    ASSERT_EQ(quantize(blk, 1, 16, p, &q), KL_OK) << kl_last_error();
    EXPECT_EQ(q.s_g, 1.0f);
    EXPECT_EQ(q.scales[0], 0x25);
    EXPECT_EQ(hex(q.codes.data(), 8), "A1 C3 00 58 7E B0 D4 F6");
}

TEST(Nvfp4Vectors, T5AllZeroBlock) {
    Packed q;
    std::vector<float> zeros(16, 0.0f);
    ASSERT_EQ(quantize(zeros, 1, 16, params(KL_NVFP4_RTN), &q), KL_OK) << kl_last_error();
    EXPECT_EQ(q.s_g, 1.0f);
    EXPECT_EQ(q.scales[0], 0x00);
    EXPECT_EQ(hex(q.codes.data(), 8), "00 00 00 00 00 00 00 00");
    // The same block inside a non-zero tensor.
    std::vector<float> t(32, 0.0f);
    for (int i = 16; i < 32; i++) t[i] = (float)(i - 15);
    ASSERT_EQ(quantize(t, 1, 32, params(KL_NVFP4_RTN_FOUR_OVER_SIX), &q), KL_OK) << kl_last_error();
    EXPECT_EQ(q.scales[0], 0x00);
    EXPECT_EQ(hex(q.codes.data(), 8), "00 00 00 00 00 00 00 00");
}

TEST(Nvfp4Vectors, T6FourOverSixPicksFour) {
    std::vector<float> blk(16, 0.0f);
    blk[0] = 4, blk[1] = 3, blk[2] = 2, blk[3] = 1;
    const float s_g = kl_nvfp4_global_scale(1536.0f, KL_NVFP4_S_MAX_FOUR_OVER_SIX, 6.0f);
    ASSERT_EQ(s_g, 1.0f);
    uint8_t c6[16], c4[16];
    uint8_t sb6 = kl_nvfp4_rtn_block(blk.data(), s_g, 6.0f, c6);
    uint8_t sb4 = kl_nvfp4_rtn_block(blk.data(), s_g, 4.0f, c4);
    EXPECT_EQ(sb6, 0x33);
    EXPECT_EQ(sb4, 0x38);
    EXPECT_EQ(hex(c6, 4), "07 06 05 03");
    EXPECT_EQ(hex(c4, 4), "06 05 04 02");
    EXPECT_EQ(kl_nvfp4_block_sse(blk.data(), c6, sb6, s_g), 0.0830078125f);  // .125^2+.25^2+.0625^2+.03125^2
    EXPECT_EQ(kl_nvfp4_block_sse(blk.data(), c4, sb4, s_g), 0.0f);

    Packed q;
    ASSERT_EQ(quantize(with_amax_block(blk, 1536.0f), 1, 32, params(KL_NVFP4_RTN_FOUR_OVER_SIX), &q), KL_OK);
    EXPECT_EQ(q.s_g, 1.0f);
    EXPECT_EQ(q.scales[0], 0x38);
    EXPECT_EQ(hex(q.codes.data(), 8), "56 24 00 00 00 00 00 00");
}

TEST(Nvfp4Vectors, T7FourOverSixOneToSixteen) {
    std::vector<float> blk = one_to_sixteen();
    uint8_t c6[16], c4[16];
    uint8_t sb6 = kl_nvfp4_rtn_block(blk.data(), 1.0f, 6.0f, c6);
    uint8_t sb4 = kl_nvfp4_rtn_block(blk.data(), 1.0f, 4.0f, c4);
    EXPECT_EQ(kl_ue4m3_to_float(sb6), 2.75f);
    EXPECT_EQ(kl_nvfp4_block_sse(blk.data(), c6, sb6, 1.0f), 18.046875f);
    EXPECT_EQ(sb4, 0x48);
    EXPECT_EQ(kl_nvfp4_block_sse(blk.data(), c4, sb4, 1.0f), 16.0f);

    Packed q;
    ASSERT_EQ(quantize(with_amax_block(blk, 1536.0f), 1, 32, params(KL_NVFP4_RTN_FOUR_OVER_SIX), &q), KL_OK);
    EXPECT_EQ(q.scales[0], 0x48);
    std::vector<uint8_t> codes = unpack(q.codes.data(), 16);
    EXPECT_EQ(hex(codes.data(), 16), "00 01 02 02 02 03 04 04 04 04 05 05 05 06 06 06");
}

TEST(Nvfp4Vectors, T8SwizzleOffset) {
    EXPECT_EQ(kl_nvfp4_scale_offset(33, 5, 256), (size_t)533);
    EXPECT_EQ(kl_nvfp4_scale_offset(0, 0, 256), (size_t)0);
    EXPECT_EQ(kl_nvfp4_swizzled_scale_bytes(128, 256), (size_t)(4 * 512));
}

/* ---- E1 ------------------------------------------------------------------------------------------- */

TEST(Nvfp4Vectors, E1MsEdenGroupOneToSixteen) {
    std::vector<float> y = one_to_sixteen();
    float fp4_max = kl_nvfp4_eden_fp4_max();
    EXPECT_NEAR(fp4_max, 6.0721059, 5e-7);  // the reference prints 8 digits of the fp32 value
    float s = kl_q_div(16.0f, fp4_max);
    EXPECT_NEAR(s, 2.6350002, 3e-7);
    EXPECT_EQ(kl_q_trunc4(s), 2.625f);
    uint8_t codes[16];
    float S = kl_nvfp4_eden_group(y.data(), codes);
    const float want_q[16] = {.5f, 1, 1, 1.5f, 2, 2, 3, 3, 3, 4, 4, 4, 4, 6, 6, 6};
    double dot = 0;
    for (int i = 0; i < 16; i++) {
        EXPECT_EQ(kl_e2m1_to_float(codes[i]), want_q[i]) << "element " << i;
        dot += (double)want_q[i] * S * y[i];
    }
    EXPECT_NEAR(S, 2.6738160, 3e-7);                 // s4 * 217.10659 / 213.14286
    EXPECT_EQ(kl_q_bf16_rne(S), 2.671875f);
    EXPECT_NEAR(dot / 1496.0, 1.0, 1e-6);            // <qS, y> = ||y||^2 up to a few fp32 roundings
    double rtn_dot = 0;
    for (int i = 0; i < 16; i++) rtn_dot += (double)want_q[i] * 2.625 * y[i];
    EXPECT_DOUBLE_EQ(rtn_dot, 1468.6875);             // the uncorrected scale is misaligned

    // As a whole single-group tensor: s_g = bf16(S)/256 and the byte is 256 = 0x78 for every seed.
    uint64_t seed = kltest::fresh_seed("E1");
    for (uint64_t call = 0; call < 8; call++) {
        Packed q;
        ASSERT_EQ(quantize(y, 1, 16, params(KL_NVFP4_MS_EDEN, seed, call), &q), KL_OK) << kl_last_error();
        EXPECT_EQ(q.s_g, 2.671875f / 256.0f);
        EXPECT_EQ(q.scales[0], 0x78);
        std::vector<uint8_t> c = unpack(q.codes.data(), 16);
        EXPECT_EQ(0, memcmp(c.data(), codes, 16));
    }
}

/* ---- E2: stochastic rounding is unbiased --------------------------------------------------------- */

namespace {
/* Fraction of n Philox-driven SR draws that round t up, with the expected probability. */
double ue4m3_sr_up_fraction(float t, uint64_t seed, uint64_t n, float *lo, float *hi) {
    uint8_t lo_b = (uint8_t)kl_q_minifloat_code(bits(t), 3, 7, 0);
    *lo = kl_ue4m3_to_float(lo_b);
    *hi = kl_ue4m3_to_float((uint8_t)(lo_b + 1));
    uint64_t up = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t b = kl_ue4m3_sr(t, kl_quant_uniform(seed, 1, KL_QUANT_RNG_EDEN_SCALE, i));
        EXPECT_TRUE(b == lo_b || b == lo_b + 1) << "t=" << t << " gave byte " << (int)b;
        up += b != lo_b;
    }
    return (double)up / (double)n;
}
}  // namespace

TEST(Ue4m3StochasticRounding, E2IsUnbiasedAndHitsNeighbours) {
    uint64_t seed = kltest::fresh_seed("E2 ue4m3");
    float lo, hi;
    // t = 200.3: neighbours 192 and 208, P(up) = 0.51875. With 2e6 draws the sample mean has standard
    // deviation 16 * 0.5 / sqrt(2e6) = 0.0057, so the reference's +-0.03 is a 5-sigma bound.
    const uint64_t n = 2000000;
    double f = ue4m3_sr_up_fraction(200.3f, seed, n, &lo, &hi);
    EXPECT_EQ(lo, 192.0f);
    EXPECT_EQ(hi, 208.0f);
    EXPECT_NEAR(lo + f * (hi - lo), 200.3, 0.03);
    // Smaller draws for the other cases; bounds are 5 standard deviations of the up-fraction.
    struct { float t, lo, hi; } cases[] = {
        {1.7f, 1.625f, 1.75f},                        // P = 0.6
        {0.005f, 2.0f / 512, 3.0f / 512},             // subnormal: spacing 2^-9
        {0.001f, 0.0f, 1.0f / 512},                   // below the smallest subnormal
        {300.0f, 288.0f, 320.0f},
    };
    const uint64_t m = 400000;
    for (auto &c : cases) {
        double p = ((double)c.t - c.lo) / ((double)c.hi - c.lo);
        double got = ue4m3_sr_up_fraction(c.t, seed + 1, m, &lo, &hi);
        EXPECT_EQ(lo, c.lo);
        EXPECT_EQ(hi, c.hi);
        EXPECT_NEAR(got, p, 5 * std::sqrt(p * (1 - p) / m)) << "t=" << c.t;
    }
    // Representable values never move; 448 and above stay at 448.
    for (int b = 0; b <= 0x7E; b++) EXPECT_EQ(kl_ue4m3_sr(kl_ue4m3_to_float((uint8_t)b), 0.0f), b);
    EXPECT_EQ(kl_ue4m3_sr(448.0f, 0.999f), 0x7E);
    EXPECT_EQ(kl_ue4m3_sr(500.0f, 0.0f), 0x7E);
}

TEST(E2m1StochasticRounding, IsUnbiasedAndKeepsSign) {
    uint64_t seed = kltest::fresh_seed("E2 e2m1");
    struct { float v, lo, hi; } cases[] = {{2.3f, 2, 3}, {-0.1f, -0.0f, -0.5f}, {4.7f, 4, 6}, {-1.2f, -1, -1.5f}};
    const uint64_t n = 400000;
    for (auto &c : cases) {
        double p = ((double)c.v - c.lo) / ((double)c.hi - c.lo);
        uint64_t up = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint8_t code = kl_e2m1_sr(c.v, kl_quant_uniform(seed, 2, KL_QUANT_RNG_SR_ELEMENT, i));
            float r = kl_e2m1_to_float(code);
            ASSERT_TRUE(r == c.lo || r == c.hi) << c.v << " -> " << r;
            ASSERT_EQ(std::signbit(r), std::signbit(c.v));
            up += r == c.hi;
        }
        EXPECT_NEAR((double)up / n, p, 5 * std::sqrt(p * (1 - p) / n)) << "v=" << c.v;  // 5 sigma
    }
    EXPECT_EQ(kl_e2m1_sr(7.5f, 0.0f), 0x7);
    EXPECT_EQ(kl_e2m1_sr(-6.0f, 0.5f), 0xF);
}

/* ---- E3: the Hadamard rotation --------------------------------------------------------------------- */

TEST(Rht128, E3RowsAreOrthogonalAndMatchSylvester) {
    uint64_t seed = kltest::fresh_seed("E3");
    kl_rht_signs s = kl_rht128_signs(seed, 3);
    std::vector<float> eye(128 * 128, 0.0f), m(128 * 128);
    for (int j = 0; j < 128; j++) eye[j * 128 + j] = 1.0f;
    ASSERT_EQ(kl_rht128_rows_cpu(m.data(), eye.data(), 128, 128, s), KL_OK);
    // Row j is H * diag(s) * e_j = s_j * column j of H, H[i][j] = (-1)^popcount(i & j): exact +-1.
    for (int j = 0; j < 128; j++)
        for (int i = 0; i < 128; i++) {
            float h = (__builtin_popcount(i & j) & 1) ? -1.0f : 1.0f;
            ASSERT_EQ(m[j * 128 + i], kl_rht_sign_negative(s, j) ? -h : h) << i << "," << j;
        }
    // H' H'^T = 128 I, exactly (integer sums).
    for (int a = 0; a < 128; a++)
        for (int b = 0; b < 128; b++) {
            double d = 0;
            for (int i = 0; i < 128; i++) d += (double)m[a * 128 + i] * m[b * 128 + i];
            ASSERT_EQ(d, a == b ? 128.0 : 0.0);
        }
}

TEST(Rht128, E3RotatedGemmEqualsPlainGemmAndInverseRoundTrips) {
    uint64_t seed = kltest::fresh_seed("E3 gemm");
    const int M = 8, N = 8, K = 256;
    std::vector<float> A = kltest::random_normal(M * K, 1.0f, seed), B = kltest::random_normal(N * K, 1.0f, seed + 1);
    kl_rht_signs s = kl_rht128_signs(seed, 11);
    std::vector<float> Ar(M * K), Br(N * K), back(M * K);
    ASSERT_EQ(kl_rht128_rows_cpu(Ar.data(), A.data(), M, K, s), KL_OK);
    ASSERT_EQ(kl_rht128_rows_cpu(Br.data(), B.data(), N, K, s), KL_OK);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double ref = 0, rot = 0, scale = 0;
            for (int k = 0; k < K; k++) {
                ref += (double)A[i * K + k] * B[j * K + k];
                rot += (double)Ar[i * K + k] * Br[j * K + k];
                scale += std::fabs((double)A[i * K + k] * B[j * K + k]);
            }
            // Each rotated element carries 7 butterfly roundings of 2^-24; the observed error is ~1e-7
            // of sum|a_k b_k|. 2e-5 leaves room and still catches a wrong sign or order (an O(1) error).
            EXPECT_NEAR(rot * KL_RHT_GEMM_ALPHA, ref, 2e-5 * scale) << i << "," << j;
        }
    ASSERT_EQ(kl_rht128_inverse_rows_cpu(back.data(), Ar.data(), M, K, s), KL_OK);
    std::string report;
    // Two transforms of 7 roundings each on values that sum 128 terms: ~1e-6 of the row norm.
    EXPECT_TRUE(kltest::all_close(back.data(), A.data(), A.size(), 0, 2e-5, &report)) << report;
    // Small integers stay exact through forward and inverse (in place).
    std::vector<float> ints(128);
    for (int i = 0; i < 128; i++) ints[i] = (float)((int)(seed >> (i % 32)) % 7 - 3);
    std::vector<float> work(ints);
    ASSERT_EQ(kl_rht128_rows_cpu(work.data(), work.data(), 1, 128, s), KL_OK);
    ASSERT_EQ(kl_rht128_inverse_rows_cpu(work.data(), work.data(), 1, 128, s), KL_OK);
    EXPECT_EQ(work, ints);
}

TEST(Rht128, SignsAreFreshPerCallAndBalanced) {
    uint64_t seed = kltest::fresh_seed("signs");
    int negatives = 0;
    for (uint64_t call = 0; call < 64; call++) {
        kl_rht_signs a = kl_rht128_signs(seed, call), b = kl_rht128_signs(seed, call);
        EXPECT_EQ(0, memcmp(&a, &b, sizeof a));
        kl_rht_signs c = kl_rht128_signs(seed, call + 1000);
        EXPECT_NE(0, memcmp(&a, &c, sizeof a));  // 2^-128 chance of a false alarm
        for (int j = 0; j < 128; j++) negatives += kl_rht_sign_negative(a, j);
    }
    // 8192 fair coins: mean 4096, standard deviation 45; 6 sigma.
    EXPECT_NEAR(negatives, 4096, 270);
    EXPECT_EQ(kl_rht128_rows_cpu(nullptr, nullptr, 1, 100, kl_rht128_signs(seed, 0)), KL_ERR_INVALID);
}

/* The counter layout is part of the CPU/GPU contract: these words come from an independent Python
 * implementation of Philox-4x32-10 (checked against Random123's known answers) with key = seed and
 * counter = (index/4, call low, call high, purpose). */
TEST(QuantRandom, CounterLayoutMatchesIndependentPhilox) {
    const uint64_t seed = 0x0123456789ABCDEFull, call = 0xFEDCBA9876543210ull;
    kl_rht_signs s = kl_rht128_signs(seed, call);
    EXPECT_EQ(s.bits[0], 0xf31321b9u);
    EXPECT_EQ(s.bits[1], 0xa61a1ba3u);
    EXPECT_EQ(s.bits[2], 0x98e53a69u);
    EXPECT_EQ(s.bits[3], 0xf700c4f7u);
    EXPECT_EQ(kl_quant_random_word(seed, call, KL_QUANT_RNG_EDEN_SCALE, 0), 0x7aef5e69u);
    EXPECT_EQ(kl_quant_random_word(seed, call, KL_QUANT_RNG_EDEN_SCALE, 5), 0xde6c6647u);
    EXPECT_EQ(kl_quant_random_word(seed, call, KL_QUANT_RNG_EDEN_SCALE, 4097), 0x84fd8df9u);
    EXPECT_EQ(kl_quant_random_word(seed, call, KL_QUANT_RNG_EDEN_SCALE, (1ull << 34) - 1), 0x2ae92fdau);
    EXPECT_EQ(kl_quant_random_word(seed, call, KL_QUANT_RNG_SR_ELEMENT, 0), 0x6be94f39u);
    EXPECT_EQ(kl_quant_random_word(seed, call, KL_QUANT_RNG_SR_ELEMENT, 7), 0x87954608u);
    EXPECT_EQ(kl_quant_random_word(seed, call, KL_QUANT_RNG_SR_ELEMENT, 123456789), 0x7c43b361u);
}

/* ---- E4: EDEN alignment ---------------------------------------------------------------------------- */

TEST(MsEden, E4GroupIsAlignedWhileRtnIsNot) {
    uint64_t seed = kltest::fresh_seed("E4");
    std::mt19937_64 g(seed);
    std::normal_distribution<float> nd;
    std::uniform_real_distribution<float> ld(-12.0f, 12.0f);
    double worst = 0, rtn_misalign = 0;
    const int groups = 4096;
    for (int t = 0; t < groups; t++) {
        float y[16], scale = std::exp2(ld(g));
        for (float &v : y) v = nd(g) * scale;
        uint8_t codes[16];
        float S = kl_nvfp4_eden_group(y, codes);
        float s4 = kl_q_trunc4(kl_q_div(kl_quant_absmax16(y), kl_nvfp4_eden_fp4_max()));
        double dot = 0, norm = 0, rtn = 0;
        for (int i = 0; i < 16; i++) {
            double q = kl_e2m1_to_float(codes[i]);
            dot += q * S * y[i];
            rtn += q * s4 * y[i];
            norm += (double)y[i] * y[i];
        }
        worst = std::max(worst, std::fabs(dot / norm - 1));
        rtn_misalign += std::fabs(rtn / norm - 1) / groups;
    }
    // All partial sums are of non-negative terms: v_i rounding, two products, two 4-level trees, one
    // division and one product stay below ~12 * 2^-24 = 7e-7 relative; the reference asks 1e-5.
    EXPECT_LT(worst, 2e-6);
    // Power: without the correction the groups are visibly misaligned (~1e-2 on average).
    EXPECT_GT(rtn_misalign, 1e-3);
}

/* ---- independent re-implementation of the RTN family ------------------------------------------------ */

namespace {
const float kE2m1[8] = {0, .5f, 1, 1.5f, 2, 3, 4, 6};

/* Nearest E2M1 code by search, ties to the even code (mantissa bit 0). */
uint8_t e2m1_search(float v) {
    float a = std::fabs(v);
    int best = 0;
    for (int c = 1; c < 8; c++) {
        float db = std::fabs(a - kE2m1[best]), dc = std::fabs(a - kE2m1[c]);
        if (dc < db || (dc == db && (c & 1) == 0)) best = c;
    }
    return (uint8_t)(best | (std::signbit(v) ? 8 : 0));
}

/* Nearest UE4M3 (<= 448) by search over the 127 values, ties to the even code. */
uint8_t ue4m3_search(float v) {
    int best = 0;
    for (int c = 1; c <= 0x7E; c++) {
        double x = kl_ue4m3_to_float((uint8_t)c), xb = kl_ue4m3_to_float((uint8_t)best);
        double dc = std::fabs(v - x), db = std::fabs(v - xb);
        if (dc < db || (dc == db && (c & 1) == 0)) best = c;
    }
    return (uint8_t)best;
}

void rtn_reference(const float *x, float s_g, float val_max, uint8_t *codes, uint8_t *sb, double *sse) {
    float bmax = 0;
    for (int i = 0; i < 16; i++) bmax = std::max(bmax, std::fabs(x[i]));
    float t = bmax / val_max;
    t = t / s_g;
    *sb = ue4m3_search(t);
    float sv = kl_ue4m3_to_float(*sb);
    float d = (sv == 0 ? 1.0f : sv) * s_g;
    *sse = 0;
    for (int i = 0; i < 16; i++) {
        codes[i] = e2m1_search(x[i] / d);
        float deq = kE2m1[codes[i] & 7] * sv;
        deq = (codes[i] & 8 ? -deq : deq) * s_g;
        *sse += ((double)x[i] - deq) * ((double)x[i] - deq);
    }
}
}  // namespace

TEST(Nvfp4Quantize, RtnAndFourOverSixMatchBruteForceSearch) {
    uint64_t seed = kltest::fresh_seed("rtn search");
    const int64_t rows = 24, cols = 64;
    std::vector<float> x = kltest::random_normal(rows * cols, 1.0f, seed);
    std::mt19937_64 g(seed + 7);
    std::uniform_real_distribution<float> ld(-10.0f, 10.0f);
    for (int64_t b = 0; b < rows * cols / 16; b++) {  // blocks of very different magnitudes
        float s = std::exp2(ld(g));
        for (int i = 0; i < 16; i++) x[b * 16 + i] *= s;
    }
    for (int i = 0; i < 16; i++) x[5 * 16 + i] = 0.0f;  // an all-zero block
    for (kl_nvfp4_method m : {KL_NVFP4_RTN, KL_NVFP4_RTN_FOUR_OVER_SIX}) {
        Packed q;
        ASSERT_EQ(quantize(x, rows, cols, params(m), &q), KL_OK) << kl_last_error();
        float amax = 0;
        for (float v : x) amax = std::max(amax, std::fabs(v));
        bool four_six = m == KL_NVFP4_RTN_FOUR_OVER_SIX;
        float s_g = amax / (four_six ? 256.0f : 448.0f);
        s_g = s_g / 6.0f;
        ASSERT_EQ(q.s_g, s_g);
        std::vector<uint8_t> codes = unpack(q.codes.data(), rows * cols);
        int picked_four = 0;
        for (int64_t b = 0; b < rows * cols / 16; b++) {
            uint8_t c6[16], c4[16], sb6, sb4;
            double e6, e4;
            rtn_reference(&x[b * 16], s_g, 6.0f, c6, &sb6, &e6);
            rtn_reference(&x[b * 16], s_g, 4.0f, c4, &sb4, &e4);
            // The library sums the SSE in fp32 by a tree; only a near-tie could pick differently.
            bool four = four_six && e4 < e6;
            if (four_six && std::fabs(e4 - e6) <= 1e-5 * e6) continue;
            picked_four += four;
            ASSERT_EQ(q.scales[b], four ? sb4 : sb6) << "block " << b;
            ASSERT_EQ(0, memcmp(&codes[b * 16], four ? c4 : c6, 16)) << "block " << b;
        }
        if (four_six) {
            EXPECT_GT(picked_four, 0);  // the test exercises both candidates
        }
    }
}

TEST(Nvfp4Quantize, FakeQuantEqualsDequantizedPackedFormAndIsDeterministic) {
    uint64_t seed = kltest::fresh_seed("fake quant");
    const int64_t rows = 8, cols = 256;
    std::vector<float> x = kltest::random_normal(rows * cols, 3.0f, seed);
    for (kl_nvfp4_method m : {KL_NVFP4_RTN, KL_NVFP4_RTN_FOUR_OVER_SIX, KL_NVFP4_SR, KL_NVFP4_MS_EDEN}) {
        kl_nvfp4_params p = params(m, seed, 5);
        Packed a, b;
        ASSERT_EQ(quantize(x, rows, cols, p, &a), KL_OK) << kl_last_error();
        ASSERT_EQ(quantize(x, rows, cols, p, &b), KL_OK);
        EXPECT_EQ(a.codes, b.codes);
        EXPECT_EQ(a.scales, b.scales);
        std::vector<float> deq(rows * cols), fq(x);
        kl_nvfp4_packed pk = {rows, cols, a.codes.data(), a.scales.data(), a.s_g};
        ASSERT_EQ(kl_nvfp4_dequantize_cpu(deq.data(), &pk), KL_OK);
        ASSERT_EQ(kl_nvfp4_fake_quant_rows_cpu(fq.data(), fq.data(), rows, cols, &p, nullptr), KL_OK);  // in place
        EXPECT_EQ(0, memcmp(deq.data(), fq.data(), deq.size() * sizeof(float))) << "method " << m;
        // Relative error of a 4-bit format: well under 0.3 in l2 for any method (RTN ~0.1, SR ~0.16).
        EXPECT_LT(kltest::rel_l2(deq.data(), x.data(), x.size()), 0.3) << "method " << m;
        if (m == KL_NVFP4_SR || m == KL_NVFP4_MS_EDEN) {
            Packed c;
            ASSERT_EQ(quantize(x, rows, cols, params(m, seed, 6), &c), KL_OK);
            EXPECT_TRUE(c.codes != a.codes || c.scales != a.scales) << "a new call id must draw anew";
        }
    }
}

TEST(Nvfp4Quantize, MsEdenScalesAreNeighboursOfTheCorrectedScale) {
    uint64_t seed = kltest::fresh_seed("eden scales");
    const int64_t rows = 16, cols = 128;
    std::vector<float> x = kltest::random_normal(rows * cols, 0.02f, seed);
    Packed q;
    ASSERT_EQ(quantize(x, rows, cols, params(KL_NVFP4_MS_EDEN, seed, 9), &q), KL_OK);
    std::vector<float> S(rows * cols / 16);
    float max_s = 0;
    for (size_t b = 0; b < S.size(); b++) {
        uint8_t codes[16];
        S[b] = kl_q_bf16_rne(kl_nvfp4_eden_group(&x[b * 16], codes));
        max_s = std::max(max_s, S[b]);
        std::vector<uint8_t> got = unpack(q.codes.data() + b * 8, 16);
        ASSERT_EQ(0, memcmp(got.data(), codes, 16)) << "block " << b;
    }
    EXPECT_EQ(q.s_g, max_s / 256.0f);
    for (size_t b = 0; b < S.size(); b++) {
        float t = S[b] / q.s_g;
        ASSERT_LE(t, 256.0f);
        uint8_t lo = (uint8_t)kl_q_minifloat_code(bits(t), 3, 7, 0);
        ASSERT_TRUE(q.scales[b] == lo || q.scales[b] == lo + 1) << "t=" << t << " byte " << (int)q.scales[b];
        // and exactly the draw the documented counter prescribes
        ASSERT_EQ(q.scales[b], kl_ue4m3_sr(t, kl_quant_uniform(seed, 9, KL_QUANT_RNG_EDEN_SCALE, b)));
    }
}

TEST(Nvfp4Quantize, SrElementsUseDocumentedDrawsAndAreUnbiased) {
    uint64_t seed = kltest::fresh_seed("sr tensor");
    const int64_t rows = 4, cols = 64;
    std::vector<float> x = kltest::random_normal(rows * cols, 1.0f, seed);
    Packed q;
    ASSERT_EQ(quantize(x, rows, cols, params(KL_NVFP4_SR, seed, 3), &q), KL_OK);
    float amax = 0;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    EXPECT_EQ(q.s_g, kl_nvfp4_global_scale(amax, 448.0f, 6.0f / 1.0625f));
    std::vector<uint8_t> codes = unpack(q.codes.data(), rows * cols);
    for (int64_t i = 0; i < rows * cols; i++) {
        float sv = kl_ue4m3_to_float(q.scales[i / 16]);
        float d = (sv == 0.0f ? 1.0f : sv) * q.s_g;
        ASSERT_EQ(codes[i], kl_e2m1_sr(x[i] / d, kl_quant_uniform(seed, 3, KL_QUANT_RNG_SR_ELEMENT, i))) << i;
    }
    // The mean over calls converges like 1/N: at N = 256 the relative MSE of the mean is about
    // 0.024/256 ~ 1e-4; a biased rounding would stay near 1e-2. 1e-3 separates them with margin.
    const int n = 256;
    std::vector<double> mean(x.size(), 0.0), ref(x.begin(), x.end());
    std::vector<float> fq(x.size());
    for (int c = 0; c < n; c++) {
        kl_nvfp4_params p = params(KL_NVFP4_SR, seed, 100 + c);
        ASSERT_EQ(kl_nvfp4_fake_quant_rows_cpu(fq.data(), x.data(), rows, cols, &p, nullptr), KL_OK);
        for (size_t i = 0; i < x.size(); i++) mean[i] += fq[i] / (double)n;
    }
    EXPECT_LT(rel_mse(mean, ref), 1e-3);
}

TEST(Nvfp4Quantize, RejectsBadInput) {
    std::vector<float> x(32, 1.0f);
    Packed q;
    EXPECT_EQ(quantize(x, 1, 24, params(KL_NVFP4_RTN), &q), KL_ERR_INVALID);  // cols % 16
    EXPECT_NE(std::string(kl_last_error()).find("multiple of 16"), std::string::npos) << kl_last_error();
    x[7] = NAN;
    EXPECT_EQ(quantize(x, 1, 32, params(KL_NVFP4_RTN), &q), KL_ERR_NUMERIC);
    EXPECT_NE(std::string(kl_last_error()).find("index 7"), std::string::npos) << kl_last_error();
    x[7] = INFINITY;
    EXPECT_EQ(quantize(x, 1, 32, params(KL_NVFP4_MS_EDEN), &q), KL_ERR_NUMERIC);
    x[7] = 1.0f;
    kl_nvfp4_params p = params(KL_NVFP4_MS_EDEN);
    p.have_amax = 1;
    p.amax = 1.0f;
    EXPECT_EQ(quantize(x, 1, 32, p, &q), KL_ERR_INVALID);
    EXPECT_EQ(quantize(x, 1, 32, params((kl_nvfp4_method)9), &q), KL_ERR_INVALID);
}

TEST(Nvfp4Swizzle, RoundTripsWithZeroPaddingAndIsABijection) {
    uint64_t seed = kltest::fresh_seed("swizzle");
    const int64_t rows = 200, cols = 80;  // neither a multiple of 128 rows nor of 64 columns
    const int64_t nb = cols / 16;
    std::vector<float> r = kltest::random_uniform(rows * nb, 1.0f, 255.0f, seed);
    std::vector<uint8_t> src(rows * nb), sw(kl_nvfp4_swizzled_scale_bytes(rows, cols), 0xEE), back(rows * nb);
    for (size_t i = 0; i < src.size(); i++) src[i] = (uint8_t)r[i];  // 1..254: never equal to the 0 padding
    EXPECT_EQ(sw.size(), (size_t)(2 * 2 * 512));
    ASSERT_EQ(kl_nvfp4_swizzle_scales_cpu(sw.data(), src.data(), rows, cols), KL_OK);
    ASSERT_EQ(kl_nvfp4_unswizzle_scales_cpu(back.data(), sw.data(), rows, cols), KL_OK);
    EXPECT_EQ(back, src);
    std::vector<int> hits(sw.size(), 0);
    for (int64_t m = 0; m < rows; m++)
        for (int64_t kb = 0; kb < nb; kb++) {
            size_t off = kl_nvfp4_scale_offset(m, kb, cols);
            ASSERT_LT(off, sw.size());
            hits[off]++;
        }
    size_t zeros = 0;
    for (size_t i = 0; i < sw.size(); i++) {
        ASSERT_LE(hits[i], 1) << "offset " << i << " used twice";
        if (!hits[i]) {
            EXPECT_EQ(sw[i], 0) << "padding byte " << i;
            zeros++;
        }
    }
    EXPECT_EQ(zeros, sw.size() - (size_t)(rows * nb));
    // Within a tile, 32-row groups are interleaved at 16-byte strides and the 4 scale columns are adjacent.
    EXPECT_EQ(kl_nvfp4_scale_offset(1, 0, cols) - kl_nvfp4_scale_offset(0, 0, cols), (size_t)16);
    EXPECT_EQ(kl_nvfp4_scale_offset(32, 0, cols) - kl_nvfp4_scale_offset(0, 0, cols), (size_t)4);
    EXPECT_EQ(kl_nvfp4_scale_offset(0, 3, cols) - kl_nvfp4_scale_offset(0, 0, cols), (size_t)3);
    EXPECT_EQ(kl_nvfp4_scale_offset(128, 0, cols), (size_t)(2 * 512));
}

/* ---- E5, E6 and GEMM-level unbiasedness ------------------------------------------------------------- */

namespace {
/* The deliberately biased variant: MS-EDEN with the correction forced to c = 1 (RTN codes with the
 * truncated scale, scale still rounded stochastically). Built from the same public helpers. */
void eden_without_correction(float *out, const float *y, int64_t rows, int64_t cols, uint64_t seed, uint64_t call) {
    int64_t nb = rows * cols / 16;
    std::vector<float> S(nb);
    std::vector<uint8_t> codes(rows * cols);
    float max_s = 0;
    for (int64_t b = 0; b < nb; b++) {
        float s4 = kl_q_trunc4(kl_q_div(kl_quant_absmax16(y + b * 16), kl_nvfp4_eden_fp4_max()));
        for (int i = 0; i < 16; i++) codes[b * 16 + i] = s4 == 0 ? 0 : kl_e2m1_from_float(kl_q_div(y[b * 16 + i], s4));
        S[b] = kl_q_bf16_rne(s4);
        max_s = std::max(max_s, S[b]);
    }
    float s_g = kl_nvfp4_eden_global_scale(max_s);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t sb = kl_ue4m3_sr(kl_q_div(S[b], s_g), kl_quant_uniform(seed, call, KL_QUANT_RNG_EDEN_SCALE, b));
        for (int i = 0; i < 16; i++)
            out[b * 16 + i] = kl_nvfp4_dequant_value(codes[b * 16 + i], kl_ue4m3_to_float(sb), s_g);
    }
}
}  // namespace

TEST(MsEden, E5MeanOverRotationsIsUnbiasedWhileUncorrectedPlateaus) {
    uint64_t seed = kltest::fresh_seed("E5");
    const int64_t rows = 8, cols = 128;
    std::vector<float> x = kltest::random_normal(rows * cols, 1.0f, seed);
    std::vector<double> ref(x.begin(), x.end());
    double bits[2][6];
    for (int variant = 0; variant < 2; variant++) {
        std::vector<double> acc(x.size(), 0.0);
        std::vector<float> y(x.size()), q(x.size()), back(x.size());
        int next = 1, k = 0;
        for (int n = 1; n <= 1024; n++) {
            kl_rht_signs s = kl_rht128_signs(seed, n);
            ASSERT_EQ(kl_rht128_rows_cpu(y.data(), x.data(), rows, cols, s), KL_OK);
            if (variant == 0) {
                kl_nvfp4_params p = params(KL_NVFP4_MS_EDEN, seed, (uint64_t)n);
                ASSERT_EQ(kl_nvfp4_fake_quant_rows_cpu(q.data(), y.data(), rows, cols, &p, nullptr), KL_OK);
            } else {
                eden_without_correction(q.data(), y.data(), rows, cols, seed, (uint64_t)n);
            }
            ASSERT_EQ(kl_rht128_inverse_rows_cpu(back.data(), q.data(), rows, cols, s), KL_OK);
            for (size_t i = 0; i < x.size(); i++) acc[i] += back[i];
            if (n == next) {
                std::vector<double> mean(acc);
                for (double &v : mean) v /= n;
                bits[variant][k++] = effective_bits(rel_mse(mean, ref));
                next *= 4;
            }
        }
        printf("%s effective bits at N=1,4,...,1024:", variant ? "c=1   " : "MS-EDEN");
        for (int i = 0; i < 6; i++) printf(" %.2f", bits[variant][i]);
        printf("\n");
    }
    // Unbiased: +1 bit per 4x N in expectation (observed 4.9-5.1 over the 5 steps on 60 seeds, worst
    // single step 0.89). Require 0.9 bits per step on average and no step below 0.7.
    EXPECT_GE(bits[0][5] - bits[0][0], 4.5);
    for (int i = 0; i < 5; i++) EXPECT_GE(bits[0][i + 1] - bits[0][i], 0.7) << "step " << i;
    EXPECT_NEAR(bits[0][0], 3.37, 0.25);  // one draw: RTN-like error (reference: 3.34 bits)
    // Biased: the bias floor (~6.1 bits) stops it; an unbiased estimator would gain 2 bits over
    // the last two steps, this one gains ~0.4.
    EXPECT_LT(bits[1][5] - bits[1][3], 1.0);
    EXPECT_GT(bits[0][5] - bits[1][5], 1.0);
}

TEST(MsEden, GemmMeanOverSeedsConvergesToExactProduct) {
    uint64_t seed = kltest::fresh_seed("gemm unbiased");
    const int M = 16, N = 16, K = 256;
    std::vector<float> A = kltest::random_normal(M * K, 1.0f, seed), B = kltest::random_normal(N * K, 1.0f, seed + 1);
    std::vector<double> ref(M * N, 0.0);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            for (int k = 0; k < K; k++) ref[i * N + j] += (double)A[i * K + k] * B[j * K + k];
    double bits[2][5];
    for (int variant = 0; variant < 2; variant++) {
        std::vector<double> acc(M * N, 0.0);
        std::vector<float> ya(M * K), yb(N * K), qa(M * K), qb(N * K);
        int next = 1, k = 0;
        for (int n = 1; n <= 256; n++) {
            // Both operands share the rotation (that is what cancels it); each draws its own scales.
            kl_rht_signs s = kl_rht128_signs(seed, n);
            ASSERT_EQ(kl_rht128_rows_cpu(ya.data(), A.data(), M, K, s), KL_OK);
            ASSERT_EQ(kl_rht128_rows_cpu(yb.data(), B.data(), N, K, s), KL_OK);
            if (variant == 0) {
                kl_nvfp4_params pa = params(KL_NVFP4_MS_EDEN, seed, 2 * n), pb = params(KL_NVFP4_MS_EDEN, seed, 2 * n + 1);
                ASSERT_EQ(kl_nvfp4_fake_quant_rows_cpu(qa.data(), ya.data(), M, K, &pa, nullptr), KL_OK);
                ASSERT_EQ(kl_nvfp4_fake_quant_rows_cpu(qb.data(), yb.data(), N, K, &pb, nullptr), KL_OK);
            } else {
                eden_without_correction(qa.data(), ya.data(), M, K, seed, 2 * n);
                eden_without_correction(qb.data(), yb.data(), N, K, seed, 2 * n + 1);
            }
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    float dot = 0;  // FP32 accumulation, as the emulated GEMM does
                    for (int kk = 0; kk < K; kk++) dot += qa[i * K + kk] * qb[j * K + kk];
                    acc[i * N + j] += dot * KL_RHT_GEMM_ALPHA;
                }
            if (n == next) {
                std::vector<double> mean(acc);
                for (double &v : mean) v /= n;
                bits[variant][k++] = effective_bits(rel_mse(mean, ref));
                next *= 4;
            }
        }
        printf("%s GEMM effective bits at N=1,4,16,64,256:", variant ? "c=1   " : "MS-EDEN");
        for (int i = 0; i < 5; i++) printf(" %.2f", bits[variant][i]);
        printf("\n");
    }
    // Reference (4096^2): 2.85/3.84/4.84/5.84 at N=1/4/16/64. Here, over 30 seeds, the gain from N=1 to
    // 256 was 3.80-4.16 bits: require 3.5 (0.875 per 4x).
    EXPECT_NEAR(bits[0][0], 2.86, 0.45);  // one draw of 256 outputs: observed 2.63-3.13 over 150 seeds
    EXPECT_GE(bits[0][4] - bits[0][0], 3.5);
    // Biased: gains 0.1-0.25 bits from N=64 to 256 where the unbiased one gains 0.86-1.18.
    EXPECT_LT(bits[1][4] - bits[1][3], 0.6);
}

TEST(MsEden, E6ErrorLevelsOnLogspaceScaledGaussians) {
    uint64_t seed = kltest::fresh_seed("E6");
    const int64_t rows = 1024, cols = 128;
    std::vector<float> x = kltest::random_normal(rows * cols, 1.0f, seed), y(x.size()), q(x.size());
    for (int64_t r = 0; r < rows; r++) {
        float scale = (float)std::exp2(8.0 * r / (rows - 1));  // logspace 1 ... 2^8
        for (int64_t c = 0; c < cols; c++) x[r * cols + c] *= scale;
    }
    ASSERT_EQ(kl_rht128_rows_cpu(y.data(), x.data(), rows, cols, kl_rht128_signs(seed, 1)), KL_OK);
    auto err = [&](kl_nvfp4_method m) {
        kl_nvfp4_params p = params(m, seed, 2);
        EXPECT_EQ(kl_nvfp4_fake_quant_rows_cpu(q.data(), y.data(), rows, cols, &p, nullptr), KL_OK);
        double e = 0, n = 0;
        for (size_t i = 0; i < y.size(); i++) {
            e += ((double)q[i] - y[i]) * ((double)q[i] - y[i]);
            n += (double)y[i] * y[i];
        }
        return e / n;
    };
    double rtn = err(KL_NVFP4_RTN), sr = err(KL_NVFP4_SR), eden = err(KL_NVFP4_MS_EDEN),
           four_six = err(KL_NVFP4_RTN_FOUR_OVER_SIX);
    printf("relative MSE: RTN %.3g  SR %.3g  MS-EDEN %.3g  4/6 %.3g\n", rtn, sr, eden, four_six);
    // The reference's bounds. Over 200 seeds at this size EDEN/RTN was 1.01-1.06 and EDEN/SR <= 0.42.
    EXPECT_LE(eden, 1.15 * rtn);
    EXPECT_LE(eden, 0.45 * sr);
    // Levels of the reference notebook (RTN 9.0e-3, SR 23.5e-3, EDEN 9.8e-3, 4/6 7.6e-3); windows are
    // the observed 200-seed ranges widened by ~5%.
    EXPECT_GT(rtn, 8.4e-3);
    EXPECT_LT(rtn, 9.8e-3);
    EXPECT_GT(sr, 2.1e-2);
    EXPECT_LT(sr, 2.55e-2);
    EXPECT_GT(eden, 8.7e-3);
    EXPECT_LT(eden, 1.03e-2);
    EXPECT_GT(four_six, 7.0e-3);
    EXPECT_LT(four_six, 8.1e-3);
}
