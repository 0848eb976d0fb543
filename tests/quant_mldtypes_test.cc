/* quant_mldtypes_test.cc — kiln's FP8 E4M3/E5M2 and E2M1 codecs against ml-dtypes, an independent
 * implementation: every decoded code and every encoding of a sweep of float32 inputs. The sweep is the
 * committed fixture tests/data/quant_mldtypes.bin (scripts/gen_quant_fixtures.py), or, when
 * KILN_QUANT_MLDTYPES_SWEEP names a file, a fresh one that tests/quant_mldtypes_test.py generated. */
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "quant.h"
}

namespace {

struct Sweep {
    uint64_t seed = 0;
    uint32_t n = 0;
    std::vector<float> dec_e4m3, dec_e5m2, dec_e2m1, x;
    std::vector<uint8_t> e4m3, e5m2, e2m1;
};

/* Parses the layout documented in scripts/gen_quant_fixtures.py (little-endian, as is every host kiln
 * runs on). */
bool parse(const std::string &blob, Sweep *s, std::string *why) {
    const size_t head = 8 + 8 + 4 + 4, tables = (256 + 256 + 16) * 4;
    if (blob.size() < head || memcmp(blob.data(), "KLQMLD1\n", 8) != 0) {
        *why = "missing magic KLQMLD1";
        return false;
    }
    memcpy(&s->seed, blob.data() + 8, 8);
    memcpy(&s->n, blob.data() + 16, 4);
    if (blob.size() != head + tables + (size_t)s->n * 7) {
        *why = "size " + std::to_string(blob.size()) + " does not match n = " + std::to_string(s->n);
        return false;
    }
    const char *p = blob.data() + head;
    auto floats = [&p](std::vector<float> *v, size_t n) {
        v->resize(n);
        memcpy(v->data(), p, n * sizeof(float));
        p += n * sizeof(float);
    };
    auto bytes = [&p](std::vector<uint8_t> *v, size_t n) {
        v->assign((const uint8_t *)p, (const uint8_t *)p + n);
        p += n;
    };
    floats(&s->dec_e4m3, 256);
    floats(&s->dec_e5m2, 256);
    floats(&s->dec_e2m1, 16);
    floats(&s->x, s->n);
    bytes(&s->e4m3, s->n);
    bytes(&s->e5m2, s->n);
    bytes(&s->e2m1, s->n);
    return true;
}

bool same_float(float a, float b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    uint32_t ua, ub;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    return ua == ub;  // bitwise: -0 and +0 differ
}

}  // namespace

TEST(QuantMlDtypes, CodecsMatchMlDtypesOnSweep) {
    const char *env = getenv("KILN_QUANT_MLDTYPES_SWEEP");
    std::string path = env && *env ? env : kltest::kiln_source_dir() + "/tests/data/quant_mldtypes.bin";
    std::string blob = kltest::read_file(path);
    Sweep s;
    std::string why;
    ASSERT_TRUE(parse(blob, &s, &why)) << path << ": " << why;
    printf("[sweep] %s: %u inputs, seed %llu\n", path.c_str(), s.n, (unsigned long long)s.seed);
    ASSERT_GE(s.n, 1000u) << "a sweep this small proves little";

    for (int b = 0; b < 256; b++) {
        EXPECT_TRUE(same_float(kl_fp8_e4m3_to_float((uint8_t)b), s.dec_e4m3[b])) << "E4M3 byte " << b;
        EXPECT_TRUE(same_float(kl_fp8_e5m2_to_float((uint8_t)b), s.dec_e5m2[b])) << "E5M2 byte " << b;
    }
    for (int c = 0; c < 16; c++) EXPECT_TRUE(same_float(kl_e2m1_to_float((uint8_t)c), s.dec_e2m1[c])) << "E2M1 " << c;

    // Where kiln documents a different choice than ml-dtypes: every NaN result is the byte 0x7F
    // (ml-dtypes keeps the input's sign and, for E5M2, uses 0x7E), so NaN results are compared as
    // "both NaN"; E2M1 has no NaN and ml-dtypes' result for a NaN input is arbitrary, so NaN inputs are
    // skipped there. The saturating modes must equal the non-saturating result clamped to the maximum.
    size_t bad = 0, compared = 0;
    for (uint32_t i = 0; i < s.n; i++) {
        float x = s.x[i];
        bool x_nan = std::isnan(x);
        uint8_t sign = std::signbit(x) ? 0x80 : 0;
        uint8_t k43 = kl_fp8_e4m3_from_float(x, 0), k52 = kl_fp8_e5m2_from_float(x, 0);
        uint8_t k43s = kl_fp8_e4m3_from_float(x, 1), k52s = kl_fp8_e5m2_from_float(x, 1);
        bool ml43_nan = std::isnan(kl_fp8_e4m3_to_float(s.e4m3[i])), ml52_nan = std::isnan(kl_fp8_e5m2_to_float(s.e5m2[i]));
        bool ml52_inf = std::isinf(kl_fp8_e5m2_to_float(s.e5m2[i]));
        bool ok43 = ml43_nan ? k43 == 0x7F : k43 == s.e4m3[i];
        bool ok52 = ml52_nan ? k52 == 0x7F : k52 == s.e5m2[i];
        bool ok43s = x_nan ? k43s == 0x7F : ml43_nan ? k43s == (sign | 0x7E) : k43s == s.e4m3[i];
        bool ok52s = x_nan ? k52s == 0x7F : ml52_inf ? k52s == (sign | 0x7B) : k52s == s.e5m2[i];
        bool ok21 = x_nan || kl_e2m1_from_float(x) == s.e2m1[i];
        compared++;
        if (!(ok43 && ok52 && ok43s && ok52s && ok21) && bad++ < 10) {
            uint32_t xb;
            memcpy(&xb, &x, sizeof xb);
            ADD_FAILURE() << "x = " << x << " (bits 0x" << std::hex << xb << ")"
                          << ": e4m3 kiln " << (int)k43 << "/" << (int)k43s << " ml " << (int)s.e4m3[i]
                          << "; e5m2 kiln " << (int)k52 << "/" << (int)k52s << " ml " << (int)s.e5m2[i]
                          << "; e2m1 kiln " << (int)kl_e2m1_from_float(x) << " ml " << (int)s.e2m1[i] << std::dec;
        }
    }
    EXPECT_EQ(bad, 0u) << "of " << compared << " inputs";
}
