/* quant_fp8_test.cc — the low-bit codecs of kernels/quant.h (FP8 E4M3/E5M2, E2M1, UE4M3): every code
 * round-trips, every rounding boundary ties to even, random floats match a brute-force nearest search,
 * specials follow the documented rules; and FP8 per-tensor current scaling (kernels/cpu/quant_fp8.c). */
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "quant.h"
}

namespace {

/* One format as the tests see it: encoder (mode = saturate flag), decoder, and its shape. */
struct Format {
    const char *name;
    int max_code;      /* largest finite magnitude code */
    float max;         /* its value */
    float next;        /* the value the next code would have: the overflow threshold is (max+next)/2 */
    int has_sat_mode;  /* FP8 only: E2M1 and UE4M3 always saturate */
    uint8_t (*enc)(float, int);
    float (*dec)(uint8_t);
    uint8_t overflow_nonsat; /* magnitude byte of a non-saturated overflow */
    uint8_t sign_bit;
};

uint8_t enc_e4m3(float x, int sat) { return kl_fp8_e4m3_from_float(x, sat); }
uint8_t enc_e5m2(float x, int sat) { return kl_fp8_e5m2_from_float(x, sat); }
uint8_t enc_e2m1(float x, int) { return kl_e2m1_from_float(x); }
uint8_t enc_ue4m3(float x, int) { return kl_ue4m3_from_float(x); }
float dec_e4m3(uint8_t b) { return kl_fp8_e4m3_to_float(b); }
float dec_e5m2(uint8_t b) { return kl_fp8_e5m2_to_float(b); }
float dec_e2m1(uint8_t b) { return kl_e2m1_to_float(b); }
float dec_ue4m3(uint8_t b) { return kl_ue4m3_to_float(b); }

const Format kFormats[] = {
    {"E4M3", 0x7E, 448.0f, 480.0f, 1, enc_e4m3, dec_e4m3, 0x7F, 0x80},
    {"E5M2", 0x7B, 57344.0f, 65536.0f, 1, enc_e5m2, dec_e5m2, 0x7C, 0x80},
    {"E2M1", 0x7, 6.0f, 8.0f, 0, enc_e2m1, dec_e2m1, 0x7, 0x8},
    {"UE4M3", 0x7E, 448.0f, 480.0f, 0, enc_ue4m3, dec_ue4m3, 0x7E, 0},
};

/* Expected encoding by exhaustive search: the nearest of the finite magnitudes and the virtual "next"
 * value (which stands for overflow), ties to the even code; then sign and overflow handling. */
uint8_t brute_force(const Format &f, float x, int sat) {
    double a = std::fabs((double)x);
    int best = a >= f.next ? f.max_code + 1 : 0;  // (huge a: distances would round to equal doubles)
    for (int c = 1; c <= f.max_code + 1 && a < f.next; c++) {
        double v = c <= f.max_code ? f.dec((uint8_t)c) : f.next, vb = f.dec((uint8_t)best);
        double dc = std::fabs(a - v), db = std::fabs(a - vb);
        if (dc < db || (dc == db && (c & 1) == 0)) best = c;
    }
    uint8_t sign = std::signbit(x) ? f.sign_bit : 0;
    if (best > f.max_code) {
        if (f.overflow_nonsat == KL_FP8_NAN_BYTE && !sat) return KL_FP8_NAN_BYTE;
        return (uint8_t)(sign | ((sat || !f.has_sat_mode) ? f.max_code : f.overflow_nonsat));
    }
    return (uint8_t)(sign | best);
}

}  // namespace

TEST(LowBitCodecs, EveryCodeRoundTripsAndValuesAreOrdered) {
    for (const Format &f : kFormats) {
        SCOPED_TRACE(f.name);
        float prev = -1.0f;
        for (int c = 0; c <= f.max_code; c++) {
            float v = f.dec((uint8_t)c);
            ASSERT_GT(v, prev) << "code " << c;  // magnitudes strictly increase with the code
            prev = v;
            for (int sat = 0; sat < 2; sat++) {
                ASSERT_EQ(f.enc(v, sat), c) << "code " << c;
                if (f.sign_bit) {
                    ASSERT_EQ(f.dec((uint8_t)(c | f.sign_bit)), -v);
                    ASSERT_EQ(f.enc(-v, sat), c | f.sign_bit) << "code -" << c;
                }
            }
        }
        EXPECT_EQ(f.dec((uint8_t)f.max_code), f.max);
        if (f.sign_bit) {
            EXPECT_TRUE(std::signbit(f.dec(f.sign_bit)));  // the negative zero code
        }
    }
    // Anchors of each format.
    EXPECT_EQ(kl_fp8_e4m3_to_float(0x01), std::ldexp(1.0f, -9));
    EXPECT_EQ(kl_fp8_e4m3_to_float(0x08), std::ldexp(1.0f, -6));
    EXPECT_EQ(kl_fp8_e4m3_to_float(0x38), 1.0f);
    EXPECT_EQ(kl_fp8_e5m2_to_float(0x01), std::ldexp(1.0f, -16));
    EXPECT_EQ(kl_fp8_e5m2_to_float(0x04), std::ldexp(1.0f, -14));
    EXPECT_EQ(kl_fp8_e5m2_to_float(0x3C), 1.0f);
    const float e2m1[8] = {0, .5f, 1, 1.5f, 2, 3, 4, 6};
    for (int c = 0; c < 8; c++) EXPECT_EQ(kl_e2m1_to_float((uint8_t)c), e2m1[c]);
    // Specials decode as OCP defines them.
    EXPECT_TRUE(std::isnan(kl_fp8_e4m3_to_float(0x7F)));
    EXPECT_TRUE(std::isnan(kl_fp8_e4m3_to_float(0xFF)));
    EXPECT_EQ(kl_fp8_e5m2_to_float(0x7C), INFINITY);
    EXPECT_EQ(kl_fp8_e5m2_to_float(0xFC), -INFINITY);
    for (int b : {0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF}) EXPECT_TRUE(std::isnan(kl_fp8_e5m2_to_float((uint8_t)b)));
}

TEST(LowBitCodecs, EveryRoundingBoundaryTiesToEven) {
    for (const Format &f : kFormats) {
        SCOPED_TRACE(f.name);
        for (int c = 0; c <= f.max_code; c++) {
            float lo = f.dec((uint8_t)c), hi = c < f.max_code ? f.dec((uint8_t)(c + 1)) : f.next;
            float mid = (float)(((double)lo + hi) / 2);  // one more significant bit: exact in fp32
            ASSERT_EQ((double)mid, ((double)lo + hi) / 2);
            int up = c + 1, even = (c & 1) ? up : c;
            for (int sat = 0; sat < 2; sat++) {
                for (float s : {1.0f, -1.0f}) {
                    if (s < 0 && !f.sign_bit) continue;
                    float m = s * mid, below = s * std::nextafter(mid, 0.0f), above = s * std::nextafter(mid, INFINITY);
                    auto want = [&](int code) {
                        return up > f.max_code && code == up ? brute_force(f, s * f.next, sat)
                                                             : (uint8_t)(code | (s < 0 ? f.sign_bit : 0));
                    };
                    ASSERT_EQ(f.enc(m, sat), want(even)) << "midpoint " << m << " sat " << sat;
                    ASSERT_EQ(f.enc(below, sat), want(c)) << "below " << below << " sat " << sat;
                    ASSERT_EQ(f.enc(above, sat), want(up)) << "above " << above << " sat " << sat;
                }
            }
        }
    }
    // The spelled-out cases of the formats' documentation.
    EXPECT_EQ(kl_fp8_e4m3_from_float(464.0f, 0), 0x7E);   // tie between 448 and (NaN) 480 -> even 448
    EXPECT_EQ(kl_fp8_e4m3_from_float(465.0f, 0), 0x7F);   // overflow: NaN
    EXPECT_EQ(kl_fp8_e4m3_from_float(465.0f, 1), 0x7E);
    EXPECT_EQ(kl_fp8_e5m2_from_float(61440.0f, 0), 0x7C); // tie between 57344 (odd) and 65536 -> Inf
    EXPECT_EQ(kl_fp8_e5m2_from_float(61439.0f, 0), 0x7B);
    EXPECT_EQ(kl_fp8_e5m2_from_float(-1e6f, 1), 0xFB);
    const float ties[7] = {.25f, .75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
    const float rne[7] = {0, 1, 1, 2, 2, 4, 4}, away[7] = {.5f, 1, 1.5f, 2, 3, 4, 6};
    for (int i = 0; i < 7; i++) {
        EXPECT_EQ(kl_e2m1_to_float(kl_e2m1_from_float(ties[i])), rne[i]) << ties[i];
        EXPECT_EQ(kl_e2m1_to_float(kl_e2m1_from_float_ties_away(ties[i])), away[i]) << ties[i];
        EXPECT_EQ(kl_e2m1_to_float(kl_e2m1_from_float_ties_away(-ties[i])), -away[i]) << ties[i];
    }
}

TEST(LowBitCodecs, RandomFloatsMatchBruteForceNearest) {
    uint64_t seed = kltest::fresh_seed("codec sweep");
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<double> expo(-22.0, 19.0);
    std::uniform_int_distribution<uint32_t> any;
    for (const Format &f : kFormats) {
        SCOPED_TRACE(f.name);
        for (int i = 0; i < 4000; i++) {
            float x;
            if (i % 4 == 3) {  // an arbitrary bit pattern, finite
                uint32_t u = any(g);
                memcpy(&x, &u, sizeof x);
                if (!std::isfinite(x)) continue;
            } else {
                x = (float)std::exp2(expo(g));
                if (g() & 1) x = -x;
            }
            for (int sat = 0; sat < 2; sat++) {
                float xs = f.sign_bit ? x : std::fabs(x);
                ASSERT_EQ(f.enc(xs, sat), brute_force(f, xs, sat)) << "x=" << xs << " sat " << sat;
            }
        }
    }
}

TEST(LowBitCodecs, SpecialsFollowTheDocumentedRules) {
    for (int sat = 0; sat < 2; sat++) {
        EXPECT_EQ(kl_fp8_e4m3_from_float(NAN, sat), 0x7F);
        EXPECT_EQ(kl_fp8_e4m3_from_float(-NAN, sat), 0x7F);
        EXPECT_EQ(kl_fp8_e5m2_from_float(NAN, sat), 0x7F);
        EXPECT_EQ(kl_fp8_e4m3_from_float(-0.0f, sat), 0x80);
        EXPECT_EQ(kl_fp8_e5m2_from_float(-0.0f, sat), 0x80);
        EXPECT_EQ(kl_fp8_e4m3_from_float(-1e-40f, sat), 0x80);  // float32 subnormal: signed zero
        EXPECT_EQ(kl_fp8_e5m2_from_float(1e-40f, sat), 0x00);
    }
    EXPECT_EQ(kl_fp8_e4m3_from_float(INFINITY, 0), 0x7F);
    EXPECT_EQ(kl_fp8_e4m3_from_float(-INFINITY, 1), 0xFE);
    EXPECT_EQ(kl_fp8_e5m2_from_float(-INFINITY, 0), 0xFC);
    EXPECT_EQ(kl_fp8_e5m2_from_float(INFINITY, 1), 0x7B);
    EXPECT_EQ(kl_e2m1_from_float(-INFINITY), 0xF);
    EXPECT_EQ(kl_e2m1_from_float(-0.0f), 0x8);
    EXPECT_EQ(kl_ue4m3_from_float(1e30f), 0x7E);
    EXPECT_EQ(kl_ue4m3_from_float(NAN), 0x7F);
    EXPECT_EQ(kl_q_bf16_rne(2.6738160f), 2.671875f);
    EXPECT_EQ(kl_q_bf16_rne(1.0f + 1.0f / 256), 1.0f);             // tie to even
    EXPECT_EQ(kl_q_bf16_rne(1.0f + 3.0f / 256), 1.0f + 4.0f / 256); // tie to even, upward
}

namespace {
/* Largest |deq - x| allowed for one element: half a step of the format at x's magnitude, in units
 * of the decode scale, plus 2^-22 relative for the fp32 division and product around the encoding. */
double fp8_error_bound(kl_fp8_format f, double x, double scale) {
    int mbits = f == KL_FP8_E4M3 ? 3 : 2;
    double min_normal = f == KL_FP8_E4M3 ? std::ldexp(1.0, -6) : std::ldexp(1.0, -14);
    double a = std::fabs(x) / scale;
    double half_step = a < min_normal ? std::ldexp(min_normal, -mbits - 1)
                                       : std::ldexp(1.0, (int)std::floor(std::log2(a)) - mbits - 1);
    return half_step * scale * (1 + 1e-6) + std::fabs(x) * std::ldexp(1.0, -22);
}
}  // namespace

TEST(Fp8CurrentScaling, LargestElementHitsFormatMaxAndErrorsStayWithinHalfAStep) {
    uint64_t seed = kltest::fresh_seed("fp8 scaling");
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<float> ld(-20.0f, 20.0f);
    for (kl_fp8_format f : {KL_FP8_E4M3, KL_FP8_E5M2}) {
        const size_t n = 3000;
        std::vector<float> x = kltest::random_normal(n, std::exp2(ld(g)), seed + f);
        x[17] *= 1e-6f;  // some values deep in the subnormal range of the scaled format
        std::vector<float> out(n), deq(n);
        std::vector<uint8_t> q(n);
        float scale = 0;
        ASSERT_EQ(kl_fp8_quant_dequant_cpu(out.data(), x.data(), n, f, &scale), KL_OK) << kl_last_error();
        float amax = 0;
        size_t imax = 0;
        for (size_t i = 0; i < n; i++)
            if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), imax = i;
        EXPECT_EQ(scale, amax / kl_fp8_max(f));
        ASSERT_EQ(kl_fp8_quantize_cpu(q.data(), x.data(), n, f, scale), KL_OK);
        ASSERT_EQ(kl_fp8_dequantize_cpu(deq.data(), q.data(), n, f, scale), KL_OK);
        EXPECT_EQ(0, memcmp(deq.data(), out.data(), n * sizeof(float)));
        EXPECT_EQ(q[imax] & 0x7F, f == KL_FP8_E4M3 ? 0x7E : 0x7B);
        for (size_t i = 0; i < n; i++)
            ASSERT_LE(std::fabs((double)out[i] - x[i]), fp8_error_bound(f, x[i], scale)) << "element " << i;
    }
}

TEST(Fp8CurrentScaling, ZeroTensorAndBadInput) {
    std::vector<float> x(64, 0.0f), out(64, 1.0f);
    float scale = 0;
    ASSERT_EQ(kl_fp8_quant_dequant_cpu(out.data(), x.data(), x.size(), KL_FP8_E4M3, &scale), KL_OK);
    EXPECT_EQ(scale, 1.0f);
    for (float v : out) EXPECT_EQ(v, 0.0f);
    x[9] = -INFINITY;
    EXPECT_EQ(kl_fp8_quant_dequant_cpu(out.data(), x.data(), x.size(), KL_FP8_E5M2, &scale), KL_ERR_NUMERIC);
    EXPECT_NE(std::string(kl_last_error()).find("index 9"), std::string::npos) << kl_last_error();
    std::vector<uint8_t> q(64);
    EXPECT_EQ(kl_fp8_quantize_cpu(q.data(), out.data(), 64, KL_FP8_E4M3, 0.0f), KL_ERR_INVALID);
    EXPECT_EQ(kl_fp8_quantize_cpu(q.data(), out.data(), 64, (kl_fp8_format)5, 1.0f), KL_ERR_INVALID);
    EXPECT_EQ(kl_fp8_dequantize_cpu(out.data(), q.data(), 64, KL_FP8_E4M3, NAN), KL_ERR_INVALID);
}
