/* safetensors_test.cc — the safetensors reader against files written by the reference Python package
 * (committed fixtures), the writer's round trip, the half-precision decoders over every code, and hostile
 * headers: each rejected with a specific message, never a crash or an out-of-bounds read (ASan checks). */
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "safetensors.h"
}

static float fixture_value(int64_t i) { return (float)(i % 97) * 0.25f - 12.0f; }

TEST(Safetensors, ReadsFilesWrittenByThePythonPackage) {
    std::string d = kltest::kiln_source_dir() + "/tests/data/safetensors/";
    kl_st_file f;
    ASSERT_EQ(kl_st_open(&f, (d + "f32.safetensors").c_str()), KL_OK) << kl_last_error();
    EXPECT_EQ(f.n, 3);
    const kl_st_tensor *a = kl_st_find(&f, "a.weight");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->ndim, 2);
    EXPECT_EQ(a->shape[0], 5);
    EXPECT_EQ(a->shape[1], 7);
    std::vector<float> v(35);
    ASSERT_EQ(kl_st_read_f32(a, v.data(), 35, "f32"), KL_OK);
    for (int i = 0; i < 35; i++) EXPECT_EQ(v[i], fixture_value(i));
    const kl_st_tensor *s = kl_st_find(&f, "c.scalar");
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->ndim, 0);
    EXPECT_EQ(s->numel, 1);
    EXPECT_EQ(kl_st_read_f32(a, v.data(), 34, "f32"), KL_ERR_INVALID) << "a wrong element count must be refused";
    kl_st_close(&f);

    ASSERT_EQ(kl_st_open(&f, (d + "half.safetensors").c_str()), KL_OK) << kl_last_error();
    const kl_st_tensor *h = kl_st_find(&f, "h"), *g = kl_st_find(&f, "g");
    ASSERT_TRUE(h && g);
    EXPECT_EQ(h->dtype, KL_ST_F16);
    EXPECT_EQ(g->dtype, KL_ST_BF16);
    std::vector<float> hv(36), gv(11);
    ASSERT_EQ(kl_st_read_f32(h, hv.data(), 36, "half"), KL_OK);
    ASSERT_EQ(kl_st_read_f32(g, gv.data(), 11, "half"), KL_OK);
    for (int i = 0; i < 36; i++) EXPECT_EQ(hv[i], fixture_value(i));
    for (int i = 0; i < 11; i++) EXPECT_EQ(gv[i], fixture_value(i));
    kl_st_close(&f);
}

TEST(Safetensors, WriterRoundTripsF32ExactlyAndBf16ToNearestEven) {
    uint64_t seed = kltest::fresh_seed("safetensors roundtrip");
    std::vector<float> a = kltest::random_normal(6 * 13, 3.0f, seed), b = kltest::random_normal(17, 1.0f, seed + 1);
    std::string path = kltest::make_temp_dir("st") + "/rt.safetensors";
    kl_st_writer *w;
    ASSERT_EQ(kl_st_writer_new(&w), KL_OK);
    int64_t sa[2] = {6, 13}, sb[1] = {17};
    ASSERT_EQ(kl_st_writer_add(w, "x.weight", KL_ST_F32, 2, sa, a.data()), KL_OK);
    ASSERT_EQ(kl_st_writer_add(w, "y", KL_ST_BF16, 1, sb, b.data()), KL_OK);
    ASSERT_EQ(kl_st_write(w, path.c_str()), KL_OK) << kl_last_error();
    kl_st_writer_free(w);
    std::string bytes = kltest::read_file(path);
    uint64_t hlen;
    memcpy(&hlen, bytes.data(), 8);
    EXPECT_EQ(hlen % 8, 0u) << "data must start 8-byte aligned";

    kl_st_file f;
    ASSERT_EQ(kl_st_open(&f, path.c_str()), KL_OK) << kl_last_error();
    std::vector<float> ra(a.size()), rb(b.size());
    ASSERT_EQ(kl_st_read_f32(kl_st_find(&f, "x.weight"), ra.data(), (int64_t)ra.size(), "rt"), KL_OK);
    ASSERT_EQ(kl_st_read_f32(kl_st_find(&f, "y"), rb.data(), (int64_t)rb.size(), "rt"), KL_OK);
    EXPECT_EQ(ra, a);
    for (size_t i = 0; i < b.size(); i++) {
        /* BF16 keeps 8 significant bits: round to nearest is within half a unit in the last place */
        EXPECT_LE(std::fabs(rb[i] - b[i]), std::ldexp(std::fabs(b[i]), -8) * 1.0001) << i;
    }
    kl_st_close(&f);
}

TEST(Safetensors, HalfDecodersAgreeWithTheirDefinitionOnEveryCode) {
    for (uint32_t c = 0; c < 65536; c++) {
        uint16_t h = (uint16_t)c;
        /* float16: sign, 5-bit exponent (bias 15), 10-bit mantissa, written out independently */
        int e = (h >> 10) & 31, m = h & 1023;
        double want = e == 0 ? std::ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp(1024.0 + m, e - 25);
        if (h >> 15) want = -want;
        float got = kl_f16_to_f32(h);
        if (std::isnan(want)) EXPECT_TRUE(std::isnan(got)) << c;
        else ASSERT_EQ((double)got, want) << c;
        /* bfloat16 is the top half of a float32, and float -> bf16 -> float is exact on bf16 values */
        uint32_t u = c << 16;
        float x;
        memcpy(&x, &u, 4);
        float y = kl_bf16_to_f32(h);
        if (std::isnan(x)) {
            EXPECT_TRUE(std::isnan(y));
            EXPECT_TRUE(std::isnan(kl_bf16_to_f32(kl_f32_to_bf16(x))));
        } else {
            ASSERT_EQ(memcmp(&x, &y, 4), 0) << c;
            ASSERT_EQ(kl_f32_to_bf16(x), h) << c;
        }
    }
    /* ties go to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 */
    EXPECT_EQ(kl_f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
    EXPECT_EQ(kl_f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
}

static std::string file_with_header(const std::string &header, size_t data_bytes, uint64_t hlen_override = 0) {
    std::string s(8, '\0');
    uint64_t n = hlen_override ? hlen_override : header.size();
    memcpy(&s[0], &n, 8);
    return s + header + std::string(data_bytes, '\x01');
}

TEST(Safetensors, HostileHeadersAreRefusedWithSpecificMessages) {
    const std::string ok = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    struct Case {
        std::string file, message;
    } cases[] = {
        {std::string("\x05\0\0", 3), "too short"},
        {file_with_header(ok, 8, 1ull << 40), "header length"},
        {file_with_header(ok, 8, 0), ""},  /* the valid control: must parse */
        {file_with_header("[1,2,3]", 0), "not a JSON object"},
        {file_with_header("{\"t\":", 0), "not a JSON object"},
        {file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8), "outside the"},
        {file_with_header(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "shape x F32 size"},
        {file_with_header(R"({"t":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype"},
        {file_with_header(R"({"t":{"dtype":"F32","shape":[2]}})", 8), "data_offsets"},
        {file_with_header(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "shape[0]"},
        {file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "outside the"},
        {file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "overlap"},
        {file_with_header(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "gap"},
        {file_with_header(ok, 12), "follow the last tensor"},
        {file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"t":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})", 8), "appears twice"},
        {file_with_header(R"({"t":7})", 0), "not a JSON object"},
        {file_with_header(R"({"__metadata__":[1],"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8), "__metadata__"},
        {file_with_header(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})", 8), "overflows"},
        {file_with_header(R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8), "shape[0]"},
    };
    for (auto &c : cases) {
        kl_st_file f = {};
        kl_status st = kl_st_parse(&f, (const uint8_t *)c.file.data(), c.file.size(), "hostile");
        if (c.message.empty()) {
            EXPECT_EQ(st, KL_OK) << kl_last_error();
            kl_st_close(&f);
            continue;
        }
        EXPECT_EQ(st, KL_ERR_INVALID) << "accepted a file that should fail with: " << c.message;
        EXPECT_NE(std::string(kl_last_error()).find(c.message), std::string::npos)
            << "got: " << kl_last_error() << "\nwant: " << c.message;
        EXPECT_EQ(f.n, 0);
    }
    kl_st_file f;
    EXPECT_EQ(kl_st_open(&f, "/nonexistent.safetensors"), KL_ERR_IO);
}
