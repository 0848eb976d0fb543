/* runlog_test.cc — the JSON(L) writer behind run logs and reports (json_write.h): hostile strings (control
 * characters, quotes, invalid UTF-8) always give valid JSON that an independent parser (cJSON) reads back,
 * with UTF-8 checked and decoded independently by iconv; NaN/Inf become null and are named; numbers read
 * back bit for bit; misuse is reported instead of written. */
#include <gtest/gtest.h>

#include <cjson/cJSON.h>
#include <iconv.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "json_write.h"
}

/* Is s well-formed UTF-8? Decided by glibc's iconv, independently of json_write.c. */
static bool iconv_valid_utf8(const std::string &s) {
    iconv_t cd = iconv_open("UTF-32LE", "UTF-8");
    if (cd == (iconv_t)-1) return false;
    std::vector<char> out(4 * s.size() + 8);
    char *in = const_cast<char *>(s.data()), *o = out.data();
    size_t inleft = s.size(), outleft = out.size();
    size_t r = iconv(cd, &in, &inleft, &o, &outleft);
    iconv_close(cd);
    return r != (size_t)-1 && inleft == 0;
}

/* Writes {"k": s} and returns what cJSON decodes for "k"; fails the test if the text is not JSON. */
static std::string through_json(const std::string &s) {
    kl_json j;
    kl_json_init(&j);
    kl_json_begin_object(&j);
    kl_json_field_string(&j, "k", s.c_str());
    kl_json_end_object(&j);
    EXPECT_EQ(kl_json_check(&j), KL_OK) << kl_last_error();
    std::string text = kl_json_text(&j);
    kl_json_free(&j);
    EXPECT_TRUE(iconv_valid_utf8(text)) << "the JSON text itself must be UTF-8";
    for (unsigned char c : text) EXPECT_GE(c, 0x20) << "raw control byte in " << text;
    cJSON *p = cJSON_Parse(text.c_str());
    EXPECT_NE(p, nullptr) << "not JSON: " << text;
    if (!p) return "";
    cJSON *k = cJSON_GetObjectItemCaseSensitive(p, "k");
    std::string got = cJSON_IsString(k) ? k->valuestring : "<not a string>";
    cJSON_Delete(p);
    return got;
}

static std::string encode_utf8(uint32_t cp) {
    std::string s;
    if (cp < 0x80) s += (char)cp;
    else if (cp < 0x800) s += (char)(0xc0 | cp >> 6), s += (char)(0x80 | (cp & 63));
    else if (cp < 0x10000)
        s += (char)(0xe0 | cp >> 12), s += (char)(0x80 | (cp >> 6 & 63)), s += (char)(0x80 | (cp & 63));
    else
        s += (char)(0xf0 | cp >> 18), s += (char)(0x80 | (cp >> 12 & 63)), s += (char)(0x80 | (cp >> 6 & 63)),
            s += (char)(0x80 | (cp & 63));
    return s;
}

TEST(JsonWrite, HostileStringsSurviveOrAreReplacedVisibly) {
    const std::string fffd = "\xef\xbf\xbd";
    std::string all_controls;
    for (int c = 1; c < 0x20; c++) all_controls += (char)c;
    all_controls += "\x7f\"\\/";
    struct Case {
        std::string in, want;
    } cases[] = {
        {all_controls, all_controls},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e"},
        {"a\xff" "b", "a" + fffd + "b"},
        {"\x80", fffd},                                /* stray continuation byte */
        {"\xc0\x80", fffd + fffd},                     /* overlong NUL */
        {"\xe0\x80\xaf", fffd + fffd + fffd},          /* overlong '/' */
        {"\xed\xa0\x80", fffd + fffd + fffd},          /* UTF-16 surrogate */
        {"\xf4\x90\x80\x80", fffd + fffd + fffd + fffd}, /* above U+10FFFF */
        {"end\xe2\x82", "end" + fffd + fffd},          /* truncated at the end of the string */
        {"", ""},
    };
    for (auto &c : cases) EXPECT_EQ(through_json(c.in), c.want);

    /* random byte strings: valid UTF-8 (per iconv) comes back unchanged; anything comes back as valid UTF-8 */
    uint64_t seed = kltest::fresh_seed("json strings");
    std::mt19937_64 rng(seed);
    for (int trial = 0; trial < 2000; trial++) {
        std::string s;
        const int n = (int)(rng() % 24);
        for (int i = 0; i < n; i++) {
            if (rng() % 2) { /* a code point from one of the encodable ranges (no NUL, no surrogates) */
                static const uint32_t lo[] = {1, 0x80, 0x800, 0xe000, 0x10000}, hi[] = {0x7f, 0x7ff, 0xd7ff, 0xffff, 0x10ffff};
                const int r = (int)(rng() % 5);
                s += encode_utf8(lo[r] + (uint32_t)(rng() % (hi[r] - lo[r] + 1)));
            } else {
                s += (char)(1 + rng() % 255);
            }
        }
        std::string got = through_json(s);
        EXPECT_TRUE(iconv_valid_utf8(got)) << "trial " << trial << ", seed " << seed;
        if (iconv_valid_utf8(s)) {
            ASSERT_EQ(got, s) << "trial " << trial << ", seed " << seed;
        } else {
            std::string hex;
            for (unsigned char ch : s) hex += " " + std::to_string(ch);
            ASSERT_NE(got.find("\xef\xbf\xbd"), std::string::npos) << "an invalid byte must show as U+FFFD:" << hex;
        }
    }
}

TEST(JsonWrite, NonFiniteNumbersBecomeNullAndAreNamed) {
    kl_json j;
    kl_json_init(&j);
    for (int pass = 0; pass < 2; pass++) { /* the second pass reuses the buffers after kl_json_reset */
        kl_json_reset(&j);
        kl_json_begin_object(&j);
        kl_json_field_string(&j, "type", "step");
        kl_json_field_number(&j, "loss", NAN);
        kl_json_field_number(&j, "grad_norm", INFINITY);
        kl_json_field_number(&j, "lr", 3e-4);
        kl_json_field_number(&j, "odd \"key\"", -INFINITY);
        kl_json_field_int(&j, "step", 7);
        kl_json_field_bool(&j, "bad_step", 1);
        kl_json_field_nonfinite(&j);
        kl_json_end_object(&j);
        ASSERT_EQ(kl_json_check(&j), KL_OK) << kl_last_error();
        cJSON *p = cJSON_Parse(kl_json_text(&j));
        ASSERT_NE(p, nullptr) << kl_json_text(&j);
        EXPECT_TRUE(cJSON_IsNull(cJSON_GetObjectItem(p, "loss")));
        EXPECT_TRUE(cJSON_IsNull(cJSON_GetObjectItem(p, "grad_norm")));
        EXPECT_TRUE(cJSON_IsNull(cJSON_GetObjectItem(p, "odd \"key\"")));
        EXPECT_EQ(cJSON_GetObjectItem(p, "lr")->valuedouble, 3e-4);
        EXPECT_EQ(cJSON_GetObjectItem(p, "step")->valuedouble, 7);
        EXPECT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(p, "bad_step")));
        cJSON *nf = cJSON_GetObjectItem(p, "nonfinite");
        ASSERT_TRUE(cJSON_IsArray(nf));
        ASSERT_EQ(cJSON_GetArraySize(nf), 3);
        EXPECT_STREQ(cJSON_GetArrayItem(nf, 0)->valuestring, "loss");
        EXPECT_STREQ(cJSON_GetArrayItem(nf, 1)->valuestring, "grad_norm");
        EXPECT_STREQ(cJSON_GetArrayItem(nf, 2)->valuestring, "odd \"key\"");
        cJSON_Delete(p);
    }
    /* all finite: no "nonfinite" key at all */
    kl_json_reset(&j);
    kl_json_begin_object(&j);
    kl_json_field_number(&j, "loss", 2.5);
    kl_json_field_nonfinite(&j);
    kl_json_end_object(&j);
    EXPECT_STREQ(kl_json_text(&j), "{\"loss\":2.5}");
    /* plain values in an array: non-finite are null there too */
    kl_json_reset(&j);
    kl_json_begin_array(&j);
    EXPECT_EQ(kl_json_number(&j, NAN), 0);
    EXPECT_EQ(kl_json_number(&j, 1.0), 1);
    kl_json_null(&j);
    kl_json_string(&j, nullptr);
    kl_json_end_array(&j);
    EXPECT_STREQ(kl_json_text(&j), "[null,1,null,null]");
    kl_json_free(&j);
}

TEST(JsonWrite, NumbersReadBackBitForBit) {
    uint64_t seed = kltest::fresh_seed("json numbers");
    std::mt19937_64 rng(seed);
    std::vector<double> v = {0.0, -0.0, 3e-4, 0.1, 1.0 / 3, 1e300, -1e-300, DBL_MAX, DBL_MIN, 4.9e-324, 9007199254740993.0,
                             12345678901234567890.0};
    for (int i = 0; i < 2000; i++) {
        uint64_t bits = rng();
        double d;
        memcpy(&d, &bits, 8);
        if (std::isfinite(d)) v.push_back(d);
    }
    kl_json j;
    kl_json_init(&j);
    kl_json_begin_array(&j);
    for (double d : v) kl_json_number(&j, d);
    kl_json_int(&j, INT64_MIN);
    kl_json_int(&j, INT64_MAX);
    kl_json_end_array(&j);
    ASSERT_EQ(kl_json_check(&j), KL_OK);
    std::string text = kl_json_text(&j);
    EXPECT_NE(text.find(",-9223372036854775808,9223372036854775807]"), std::string::npos);
    cJSON *p = cJSON_Parse(text.c_str());
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(cJSON_GetArraySize(p), (int)v.size() + 2);
    for (size_t i = 0; i < v.size(); i++) {
        double got = cJSON_GetArrayItem(p, (int)i)->valuedouble;
        ASSERT_EQ(memcmp(&got, &v[i], 8), 0) << "wrote " << v[i] << ", read " << got << " (seed " << seed << ")";
    }
    cJSON_Delete(p);
    kl_json_free(&j);
}

TEST(JsonWrite, MisuseIsReportedInsteadOfWritten) {
    struct Case {
        void (*write)(kl_json *);
        const char *message;
    } cases[] = {
        {[](kl_json *j) { kl_json_begin_object(j), kl_json_int(j, 1), kl_json_end_object(j); }, "without a key"},
        {[](kl_json *j) { kl_json_key(j, "k"); }, "a key outside an object"},
        {[](kl_json *j) { kl_json_begin_array(j), kl_json_key(j, "k"), kl_json_end_array(j); }, "a key outside an object"},
        {[](kl_json *j) { kl_json_begin_object(j), kl_json_end_array(j); }, "end_array without"},
        {[](kl_json *j) { kl_json_end_object(j); }, "end_object without"},
        {[](kl_json *j) { kl_json_begin_object(j), kl_json_key(j, "k"), kl_json_end_object(j); }, "a key without a value"},
        {[](kl_json *j) { kl_json_begin_object(j), kl_json_key(j, "a"), kl_json_key(j, "b"); }, "after another key"},
        {[](kl_json *j) { kl_json_int(j, 1), kl_json_int(j, 2); }, "a second value at the top level"},
        {[](kl_json *j) { kl_json_begin_array(j); }, "1 level(s) still open"},
        {[](kl_json *j) { (void)j; }, "nothing was written"},
        {[](kl_json *j) {
             for (int i = 0; i <= KL_JSON_MAX_DEPTH; i++) kl_json_begin_array(j);
         },
         "nesting deeper"},
    };
    for (auto &c : cases) {
        kl_json j;
        kl_json_init(&j);
        c.write(&j);
        EXPECT_EQ(kl_json_check(&j), KL_ERR_INTERNAL) << "should fail with: " << c.message;
        EXPECT_NE(std::string(kl_last_error()).find(c.message), std::string::npos)
            << "got: " << kl_last_error() << "\nwant: " << c.message;
        FILE *devnull = fopen("/dev/null", "w");
        EXPECT_NE(kl_json_write_line(&j, devnull, "/dev/null"), KL_OK) << "a broken record must not be written";
        fclose(devnull);
        kl_json_free(&j);
    }
}

TEST(JsonWrite, WriteLineGivesOneParsableRecordPerLine) {
    std::string path = kltest::make_temp_dir("jsonl") + "/m.jsonl";
    FILE *f = fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    kl_json j;
    kl_json_init(&j);
    for (int i = 0; i < 5; i++) {
        kl_json_reset(&j);
        kl_json_begin_object(&j);
        kl_json_field_int(&j, "step", i);
        kl_json_field_string(&j, "msg", "line\nbreak\r\n");
        kl_json_key(&j, "list");
        kl_json_begin_array(&j);
        for (int k = 0; k < i; k++) kl_json_number(&j, k * 0.5);
        kl_json_end_array(&j);
        kl_json_end_object(&j);
        ASSERT_EQ(kl_json_write_line(&j, f, path.c_str()), KL_OK) << kl_last_error();
        EXPECT_EQ(kl_json_text(&j)[strlen(kl_json_text(&j)) - 1], '}') << "the text stays one value after writing";
    }
    kl_json_free(&j);
    fclose(f);
    std::istringstream in(kltest::read_file(path));
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        cJSON *p = cJSON_Parse(line.c_str());
        ASSERT_NE(p, nullptr) << line;
        EXPECT_EQ(cJSON_GetObjectItem(p, "step")->valueint, n);
        EXPECT_STREQ(cJSON_GetObjectItem(p, "msg")->valuestring, "line\nbreak\r\n");
        EXPECT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(p, "list")), n);
        cJSON_Delete(p);
        n++;
    }
    EXPECT_EQ(n, 5);
}
