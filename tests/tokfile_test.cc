/* tokfile_test.cc — the token file format: what the writer puts on disk byte by byte, that the reader
 * gives it back, that version-1 headers still read, that every kind of corrupt file is refused with a
 * message naming the file and the problem (and never crashes), and `kiln data inspect` on good and bad
 * files. */
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "tokfile.h"
}

namespace {

struct Data {
    std::vector<int32_t> tokens;
    std::vector<uint8_t> mask;
    int vocab;
};

/* count tokens below a random vocab; a random mask (about half the bits set) when with_mask. */
Data make_tokens(uint64_t seed, int64_t count, bool with_mask) {
    std::mt19937_64 g(seed);
    Data d;
    d.vocab = 2 + (int)(g() % 60000);
    d.tokens.resize(count);
    for (auto &t : d.tokens) t = (int32_t)(g() % (uint64_t)d.vocab);
    if (with_mask) {
        d.mask.resize((count + 7) / 8);
        for (auto &m : d.mask) m = (uint8_t)g();
    }
    return d;
}

int64_t file_size(const std::string &p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0 ? (int64_t)st.st_size : -1;
}

int32_t header_slot(const std::string &bytes, int slot) {
    int32_t v;
    memcpy(&v, bytes.data() + 4 * slot, 4);
    return v;
}

void set_header_slot(std::string *bytes, int slot, int32_t v) { memcpy(&(*bytes)[4 * slot], &v, 4); }

/* Opens `path`, expecting failure with `code` and a message containing every piece of `want`. */
void expect_refused(const std::string &path, int expect_vocab, kl_status code, std::vector<std::string> want) {
    kl_tokfile f;
    memset(&f, 0x5a, sizeof f);
    kl_status s = kl_tokfile_open(&f, path.c_str(), expect_vocab);
    EXPECT_EQ(s, code) << kl_last_error();
    std::string msg = kl_last_error();
    for (auto &w : want) EXPECT_NE(msg.find(w), std::string::npos) << "message '" << msg << "' lacks '" << w << "'";
    EXPECT_EQ(f.map, nullptr); /* nothing left mapped, struct zeroed */
    EXPECT_EQ(f.path, nullptr);
}

}  // namespace

TEST(TokfileWrite, RoundTripsTokensMaskAndHeader) {
    uint64_t seed = kltest::fresh_seed("TokfileWrite.RoundTripsTokensMaskAndHeader");
    std::mt19937_64 g(seed);
    int64_t n = 1000 + (int64_t)(g() % 5000);
    if (n % 8 == 0) n++; /* exercise the partial last mask byte */
    Data d = make_tokens(g(), n, true);
    std::string dir = kltest::make_temp_dir("tokfile_roundtrip");
    std::string path = dir + "/a.bin";
    ASSERT_EQ(kl_tokfile_write(path.c_str(), d.tokens.data(), n, d.vocab, d.mask.data()), KL_OK) << kl_last_error();

    /* The bytes on disk, read independently of the reader: LLMQ's layout. */
    std::string raw = kltest::read_file(path);
    ASSERT_EQ((int64_t)raw.size(), 1024 + 4 * n + (n + 7) / 8);
    EXPECT_EQ(raw.substr(0, 8), std::string("BIN.TOK\n"));
    EXPECT_EQ(header_slot(raw, 2), 2);
    EXPECT_EQ(header_slot(raw, 3), 4);
    EXPECT_EQ(header_slot(raw, 4), (int32_t)n);
    EXPECT_EQ(header_slot(raw, 5), d.vocab);
    EXPECT_EQ(header_slot(raw, 6), 1);
    for (int s = 7; s < 256; s++) ASSERT_EQ(header_slot(raw, s), 0) << "header slot " << s;
    EXPECT_EQ(memcmp(raw.data() + 1024, d.tokens.data(), 4 * n), 0);

    kl_tokfile f;
    ASSERT_EQ(kl_tokfile_open(&f, path.c_str(), 0), KL_OK) << kl_last_error();
    EXPECT_EQ(f.version, 2);
    EXPECT_EQ(f.count, n);
    EXPECT_EQ(f.vocab_size, d.vocab);
    EXPECT_EQ(f.has_mask, 1);
    ASSERT_NE(f.mask, nullptr);
    int32_t mn = d.tokens[0], mx = d.tokens[0];
    int64_t valid = 0;
    for (int64_t i = 0; i < n; i++) {
        ASSERT_EQ(f.tokens[i], d.tokens[i]) << "token " << i;
        int bit = (d.mask[i / 8] >> (i % 8)) & 1;
        ASSERT_EQ(kl_tokfile_mask_bit(&f, i), bit) << "mask bit " << i;
        valid += bit;
        mn = std::min(mn, d.tokens[i]);
        mx = std::max(mx, d.tokens[i]);
    }
    EXPECT_EQ(f.min_id, mn);
    EXPECT_EQ(f.max_id, mx);
    EXPECT_EQ(kl_tokfile_mask_valid(&f), valid);
    /* padding bits past the last token are written as 0, whatever the caller's buffer held */
    if (n % 8) {
        EXPECT_EQ(f.mask[n / 8] >> (n % 8), 0);
    }
    kl_tokfile_close(&f);
    /* no temporary file left behind */
    EXPECT_EQ(file_size(path + ".tmp." + std::to_string(getpid())), -1);
}

TEST(TokfileWrite, WithoutMaskEveryTargetIsValid) {
    uint64_t seed = kltest::fresh_seed("TokfileWrite.WithoutMaskEveryTargetIsValid");
    int64_t n = 1 + (int64_t)(seed % 3000);
    Data d = make_tokens(seed, n, false);
    std::string path = kltest::make_temp_dir("tokfile_nomask") + "/a.bin";
    ASSERT_EQ(kl_tokfile_write(path.c_str(), d.tokens.data(), n, d.vocab, nullptr), KL_OK) << kl_last_error();
    EXPECT_EQ(file_size(path), 1024 + 4 * n);
    kl_tokfile f;
    ASSERT_EQ(kl_tokfile_open(&f, path.c_str(), d.vocab), KL_OK) << kl_last_error();
    EXPECT_EQ(f.has_mask, 0);
    EXPECT_EQ(f.mask, nullptr);
    EXPECT_EQ(kl_tokfile_mask_valid(&f), n);
    EXPECT_EQ(kl_tokfile_mask_bit(&f, n - 1), 1);
    EXPECT_EQ(memcmp(f.tokens, d.tokens.data(), 4 * n), 0);
    kl_tokfile_close(&f);
}

TEST(TokfileWrite, RefusesIdsOutsideTheVocabAndLeavesNoFile) {
    uint64_t seed = kltest::fresh_seed("TokfileWrite.RefusesIdsOutsideTheVocabAndLeavesNoFile");
    Data d = make_tokens(seed, 500, false);
    size_t at = seed % 500;
    d.tokens[at] = d.vocab + (int32_t)(seed % 7);
    std::string path = kltest::make_temp_dir("tokfile_write_bad") + "/a.bin";
    EXPECT_EQ(kl_tokfile_write(path.c_str(), d.tokens.data(), 500, d.vocab, nullptr), KL_ERR_INVALID);
    EXPECT_NE(std::string(kl_last_error()).find("token " + std::to_string(at) + " "), std::string::npos)
        << kl_last_error();
    EXPECT_EQ(file_size(path), -1);
    d.tokens[at] = -1;
    EXPECT_EQ(kl_tokfile_write(path.c_str(), d.tokens.data(), 500, d.vocab, nullptr), KL_ERR_INVALID);
    EXPECT_EQ(file_size(path), -1);
}

TEST(TokfileOpen, ReadsVersion1HeadersWithoutVocab) {
    uint64_t seed = kltest::fresh_seed("TokfileOpen.ReadsVersion1HeadersWithoutVocab");
    Data d = make_tokens(seed, 777, false);
    std::string dir = kltest::make_temp_dir("tokfile_v1");
    std::string path = dir + "/v1.bin";
    ASSERT_EQ(kl_tokfile_write(path.c_str(), d.tokens.data(), 777, d.vocab, nullptr), KL_OK);
    std::string raw = kltest::read_file(path);
    set_header_slot(&raw, 2, 1);
    set_header_slot(&raw, 5, 123456); /* version 1 has no vocab slot: whatever sits there is ignored */
    kltest::write_file(path, raw);
    kl_tokfile f;
    ASSERT_EQ(kl_tokfile_open(&f, path.c_str(), 0), KL_OK) << kl_last_error();
    EXPECT_EQ(f.version, 1);
    EXPECT_EQ(f.vocab_size, 0);
    EXPECT_EQ(f.count, 777);
    kl_tokfile_close(&f);
    /* with a vocab given, ids are checked against it */
    ASSERT_EQ(kl_tokfile_open(&f, path.c_str(), d.vocab), KL_OK) << kl_last_error();
    EXPECT_EQ(f.vocab_size, d.vocab);
    kl_tokfile_close(&f);
    int32_t mx = *std::max_element(d.tokens.begin(), d.tokens.end());
    expect_refused(path, mx, KL_ERR_INVALID, {path, "not below the vocab size " + std::to_string(mx)});
}

class TokfileCorrupt : public ::testing::Test {
  protected:
    void SetUp() override {
        seed = kltest::fresh_seed(::testing::UnitTest::GetInstance()->current_test_info()->name());
        g.seed(seed);
        n = 64 + (int64_t)(g() % 2000);
        d = make_tokens(g(), n, g() % 2 == 0);
        dir = kltest::make_temp_dir("tokfile_corrupt");
        path = dir + "/bad.bin";
        ASSERT_EQ(kl_tokfile_write(path.c_str(), d.tokens.data(), n, d.vocab, d.mask.empty() ? nullptr : d.mask.data()),
                  KL_OK);
        raw = kltest::read_file(path);
    }
    uint64_t seed;
    std::mt19937_64 g;
    int64_t n;
    Data d;
    std::string dir, path, raw;
};

TEST_F(TokfileCorrupt, TruncatedBodyIsRefused) {
    size_t cut = 1 + g() % (raw.size() - 1024); /* keep the header, lose 1.. all body bytes */
    kltest::write_file(path, raw.substr(0, raw.size() - cut));
    expect_refused(path, 0, KL_ERR_INVALID, {path, "truncated", std::to_string(n) + " tokens"});
}

TEST_F(TokfileCorrupt, TruncatedHeaderIsRefused) {
    kltest::write_file(path, raw.substr(0, g() % 1024));
    expect_refused(path, 0, KL_ERR_INVALID, {path, "shorter than the 1024-byte"});
}

TEST_F(TokfileCorrupt, TrailingBytesAreRefused) {
    kltest::write_file(path, raw + std::string(1 + g() % 9, 'x'));
    expect_refused(path, 0, KL_ERR_INVALID, {path, "trailing bytes"});
}

TEST_F(TokfileCorrupt, WrongMagicIsRefused) {
    raw[g() % 8] ^= (char)(1 + g() % 255);
    kltest::write_file(path, raw);
    expect_refused(path, 0, KL_ERR_INVALID, {path, "bad magic"});
}

TEST_F(TokfileCorrupt, UnknownVersionIsRefused) {
    int32_t v = 3 + (int32_t)(g() % 100);
    set_header_slot(&raw, 2, v);
    kltest::write_file(path, raw);
    expect_refused(path, 0, KL_ERR_INVALID, {path, "version " + std::to_string(v)});
}

TEST_F(TokfileCorrupt, OtherTokenWidthsAreRefused) {
    set_header_slot(&raw, 3, 2);
    kltest::write_file(path, raw);
    expect_refused(path, 0, KL_ERR_INVALID, {path, "2 bytes per token"});
}

TEST_F(TokfileCorrupt, CountDisagreeingWithSizeIsRefused) {
    set_header_slot(&raw, 4, (int32_t)n + 1 + (int32_t)(g() % 100));
    kltest::write_file(path, raw);
    expect_refused(path, 0, KL_ERR_INVALID, {path, "truncated"});
}

TEST_F(TokfileCorrupt, IdAtOrAboveVocabIsRefusedWithItsOffset) {
    int64_t at = (int64_t)(g() % (uint64_t)n);
    int32_t bad = d.vocab + (int32_t)(g() % 3);
    memcpy(&raw[1024 + 4 * at], &bad, 4);
    kltest::write_file(path, raw);
    expect_refused(path, 0, KL_ERR_INVALID,
                   {path, "token " + std::to_string(at) + " ", "byte offset " + std::to_string(1024 + 4 * at),
                    "is " + std::to_string(bad), "vocab size " + std::to_string(d.vocab)});
}

TEST_F(TokfileCorrupt, NegativeIdIsRefused) {
    int64_t at = (int64_t)(g() % (uint64_t)n);
    int32_t bad = -1 - (int32_t)(g() % 1000);
    memcpy(&raw[1024 + 4 * at], &bad, 4);
    kltest::write_file(path, raw);
    expect_refused(path, 0, KL_ERR_INVALID, {path, "token " + std::to_string(at) + " ", "negative"});
}

TEST_F(TokfileCorrupt, VocabDifferentFromExpectedIsRefused) {
    expect_refused(path, d.vocab + 1, KL_ERR_INVALID,
                   {path, "vocab size " + std::to_string(d.vocab), "expected " + std::to_string(d.vocab + 1)});
}

TEST(TokfileOpen, MissingFileIsAnIoError) {
    std::string path = kltest::make_temp_dir("tokfile_missing") + "/nope.bin";
    expect_refused(path, 0, KL_ERR_IO, {path});
}

/* ---- kiln data inspect ------------------------------------------------------------------------------ */

TEST(DataInspect, PrintsCountsVocabAndMaskCoverage) {
    uint64_t seed = kltest::fresh_seed("DataInspect.PrintsCountsVocabAndMaskCoverage");
    std::string dir = kltest::make_temp_dir("data_inspect");
    Data a = make_tokens(seed, 3001, true), b = make_tokens(seed + 1, 1500, false);
    b.vocab = a.vocab;
    for (auto &t : b.tokens) t %= a.vocab;
    ASSERT_EQ(kl_tokfile_write((dir + "/a.bin").c_str(), a.tokens.data(), 3001, a.vocab, a.mask.data()), KL_OK);
    ASSERT_EQ(kl_tokfile_write((dir + "/b.bin").c_str(), b.tokens.data(), 1500, b.vocab, nullptr), KL_OK);
    int64_t valid_a = 0;
    for (int64_t i = 0; i < 3001; i++) valid_a += (a.mask[i / 8] >> (i % 8)) & 1;
    std::string out;
    ASSERT_EQ(kltest::run_kiln("data inspect --json '" + dir + "/a.bin' '" + dir + "/b.bin'", &out), 0) << out;
    char want[256];
    snprintf(want, sizeof want, "\"tokens\":3001,\"vocab\":%d,\"version\":2,\"has_mask\":true,\"mask_coverage\":%.6f",
             a.vocab, (double)valid_a / 3001.0);
    EXPECT_NE(out.find(want), std::string::npos) << out << "\nwanted " << want;
    EXPECT_NE(out.find("\"tokens\":1500,"), std::string::npos) << out;
    snprintf(want, sizeof want, "\"file\":\"total (2 files)\",\"tokens\":4501,\"vocab\":%d", a.vocab);
    EXPECT_NE(out.find(want), std::string::npos) << out;
    /* the table form names the files too */
    ASSERT_EQ(kltest::run_kiln("data inspect '" + dir + "/a.bin'", &out), 0) << out;
    EXPECT_NE(out.find(dir + "/a.bin"), std::string::npos) << out;
    EXPECT_NE(out.find("coverage"), std::string::npos) << out;
}

TEST(DataInspect, CorruptFileExitsTwoWithTheReason) {
    uint64_t seed = kltest::fresh_seed("DataInspect.CorruptFileExitsTwoWithTheReason");
    std::string dir = kltest::make_temp_dir("data_inspect_bad");
    Data a = make_tokens(seed, 100, false);
    std::string path = dir + "/a.bin";
    ASSERT_EQ(kl_tokfile_write(path.c_str(), a.tokens.data(), 100, a.vocab, nullptr), KL_OK);
    std::string raw = kltest::read_file(path);
    kltest::write_file(path, raw.substr(0, raw.size() - 4));
    std::string out;
    EXPECT_EQ(kltest::run_kiln("data inspect '" + path + "'", &out), 2) << out;
    EXPECT_NE(out.find("kiln data: " + path + ": the header promises 100 tokens"), std::string::npos) << out;
    EXPECT_EQ(kltest::run_kiln("data inspect", &out), 2) << out;
    EXPECT_EQ(kltest::run_kiln("data frobnicate", &out), 2) << out;
    EXPECT_EQ(kltest::run_kiln("data --help", &out), 0) << out;
    EXPECT_NE(out.find("inspect"), std::string::npos) << out;
}
