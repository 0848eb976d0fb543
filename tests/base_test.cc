/* base_test.cc — kl_base: error messages, byte sizes; and the Philox generator against the published
 * known-answer vectors of Random123 (philox4x32_10). */
#include <gtest/gtest.h>

#include <cstring>

extern "C" {
#include "kl_base.h"
#include "philox.h"
}

TEST(KlError, ContextPrefixesMessage) {
    EXPECT_EQ(kl_error(KL_ERR_IO, "cannot open %s", "x.bin"), KL_ERR_IO);
    EXPECT_EQ(kl_error_context(KL_ERR_IO, "loading %s", "data"), KL_ERR_IO);
    EXPECT_STREQ(kl_last_error(), "loading data: cannot open x.bin");
}

TEST(KlParseBytes, UnitsAndErrors) {
    double b = 0;
    ASSERT_EQ(kl_parse_bytes("16GiB", &b), KL_OK);
    EXPECT_EQ(b, 16.0 * 1024 * 1024 * 1024);
    ASSERT_EQ(kl_parse_bytes("1.5 GB", &b), KL_OK);
    EXPECT_EQ(b, 1.5e9);
    ASSERT_EQ(kl_parse_bytes("4096", &b), KL_OK);
    EXPECT_EQ(b, 4096.0);
    EXPECT_EQ(kl_parse_bytes("12 parsecs", &b), KL_ERR_INVALID);
    EXPECT_NE(strstr(kl_last_error(), "unknown unit"), nullptr);
    EXPECT_EQ(kl_parse_bytes("lots", &b), KL_ERR_INVALID);
}

TEST(Philox4x32_10, MatchesRandom123KnownAnswers) {
    struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (auto &k : kat) {
        kl_philox_ctr c;
        memcpy(c.v, k.ctr, sizeof c.v);
        kl_philox_ctr r = kl_philox4x32_10(c, k.key[0], k.key[1]);
        for (int i = 0; i < 4; i++) EXPECT_EQ(r.v[i], k.out[i]) << "word " << i;
    }
}

TEST(Philox4x32_10, UnitFloatIsInHalfOpenInterval) {
    EXPECT_EQ(kl_u32_to_unit_float(0), 0.0f);
    EXPECT_LT(kl_u32_to_unit_float(0xffffffffu), 1.0f);
}
