/* checkpoint_test.cc — the checkpoint module: bit-exact round trips of every entry kind, the atomic protocol
 * (unfinished saves are never chosen and are reported), resume resolution, the keep policy, signature
 * differences, and damaged files (truncated, empty, random, flipped bytes, missing pieces) refused cleanly. */
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint.h"
#include "test_util.h"

namespace {

bool exists(const std::string &p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

std::string step_dir(const std::string &root, int64_t step) {
    char buf[KL_CKPT_PATH_MAX];
    EXPECT_EQ(kl_ckpt_step_dir(root.c_str(), step, buf, sizeof buf), KL_OK);
    return buf;
}

std::string rank_file(const std::string &root, int64_t step, int rank) {
    char name[32];
    snprintf(name, sizeof name, "/rank_%03d.h5", rank);
    return step_dir(root, step) + name;
}

bool contains(const std::string &hay, const std::string &needle) { return hay.find(needle) != std::string::npos; }

/* Printable text with newlines and tabs, as a YAML config would have. */
std::string random_text(std::mt19937_64 &g, size_t n) {
    std::string s(n, ' ');
    for (auto &c : s) {
        int v = (int)(g() % 97);
        c = v == 95 ? '\n' : v == 96 ? '\t' : (char)(32 + v);
    }
    return s;
}

/* Everything one rank writes in the round-trip tests; fresh random contents. */
struct Content {
    std::vector<float> a1, a3;          /* a 1-D and a 3-D f32 array */
    std::vector<int64_t> a3_dims;
    std::vector<uint8_t> blob;          /* opaque state */
    int64_t i64;
    uint64_t u64;
    double f64;
    std::string text;
    std::vector<uint64_t> streams; /* 12 entries in one group: more than HDF5 keeps in a compact group */

    explicit Content(uint64_t seed) {
        std::mt19937_64 g(seed);
        a1 = kltest::random_normal(1 + g() % 3000, 2.0f, g());
        a3_dims = {(int64_t)(1 + g() % 7), (int64_t)(1 + g() % 9), (int64_t)(1 + g() % 33)};
        a3 = kltest::random_uniform((size_t)(a3_dims[0] * a3_dims[1] * a3_dims[2]), -5.0f, 5.0f, g());
        /* Special values must survive bit for bit too: -0, inf, a NaN with a payload, a subnormal. */
        const uint32_t specials[] = {0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc12345u, 0x00000001u};
        for (size_t i = 0; i < 5 && i < a1.size(); i++) memcpy(&a1[(g() % a1.size())], &specials[i], 4);
        blob.resize(g() % 5000);
        for (auto &b : blob) b = (uint8_t)g();
        i64 = (int64_t)g();
        u64 = g() | (1ull << 63);
        uint64_t bits = g();
        memcpy(&f64, &bits, 8);
        if (std::isnan(f64)) f64 = -1.0 / 3.0;
        text = random_text(g, 1 + g() % 2000);
        for (int i = 0; i < 12; i++) streams.push_back(g());
    }

    static std::string stream_name(int i) { return "rng/stream." + std::to_string(i); }

    void put(kl_ckpt_writer *w) const {
        int64_t d1 = (int64_t)a1.size();
        ASSERT_EQ(kl_ckpt_put_f32(w, "params/layers.0.w", a1.data(), 1, &d1), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_put_f32(w, "params/layers.1.w", a3.data(), 3, a3_dims.data()), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_put_bytes(w, "optim/state", blob.data(), blob.size()), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_put_bytes(w, "optim/empty", nullptr, 0), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_put_i64(w, "step", i64), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_put_u64(w, "rng/philox", u64), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_put_f64(w, "schedule/lr", f64), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_put_string(w, "config", text.c_str()), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_put_string(w, "empty_text", ""), KL_OK) << kl_last_error();
        for (size_t i = 0; i < streams.size(); i++)
            ASSERT_EQ(kl_ckpt_put_u64(w, stream_name((int)i).c_str(), streams[i]), KL_OK) << kl_last_error();
    }

    void expect_equal(kl_ckpt_reader *r) const {
        std::vector<float> b1(a1.size()), b3(a3.size());
        ASSERT_EQ(kl_ckpt_get_f32(r, "params/layers.0.w", b1.data(), b1.size()), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_get_f32(r, "params/layers.1.w", b3.data(), b3.size()), KL_OK) << kl_last_error();
        EXPECT_EQ(memcmp(b1.data(), a1.data(), 4 * a1.size()), 0);
        EXPECT_EQ(memcmp(b3.data(), a3.data(), 4 * a3.size()), 0);
        std::vector<uint8_t> bb(blob.size() + 1, 0xAB);
        ASSERT_EQ(kl_ckpt_get_bytes(r, "optim/state", bb.data(), blob.size()), KL_OK) << kl_last_error();
        EXPECT_EQ(memcmp(bb.data(), blob.data(), blob.size()), 0);
        EXPECT_EQ(bb[blob.size()], 0xAB) << "read past the entry's size";
        ASSERT_EQ(kl_ckpt_get_bytes(r, "optim/empty", bb.data(), 0), KL_OK) << kl_last_error();
        int64_t i;
        uint64_t u;
        double f;
        ASSERT_EQ(kl_ckpt_get_i64(r, "step", &i), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_get_u64(r, "rng/philox", &u), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_get_f64(r, "schedule/lr", &f), KL_OK) << kl_last_error();
        EXPECT_EQ(i, i64);
        EXPECT_EQ(u, u64);
        EXPECT_EQ(memcmp(&f, &f64, 8), 0);
        char *s = nullptr;
        ASSERT_EQ(kl_ckpt_get_string(r, "config", &s), KL_OK) << kl_last_error();
        EXPECT_EQ(std::string(s), text);
        free(s);
        ASSERT_EQ(kl_ckpt_get_string(r, "empty_text", &s), KL_OK) << kl_last_error();
        EXPECT_EQ(std::string(s), "");
        free(s);
        for (size_t k = 0; k < streams.size(); k++) {
            ASSERT_EQ(kl_ckpt_get_u64(r, stream_name((int)k).c_str(), &u), KL_OK) << kl_last_error();
            EXPECT_EQ(u, streams[k]);
        }
    }

    /* For a reader of a possibly damaged file: 0 if some entry is refused, 1 if every entry reads back
     * exactly, 2 if any entry reads back different from what was written. */
    int check_all(kl_ckpt_reader *r) const {
        bool refused = false, wrong = false;
        /* got(status of a read, whether its result equals what was written) — the read is done by the caller
         * first (arguments of one call are evaluated in no fixed order). */
        auto got = [&](const char *name, kl_status s, bool equal) {
            if (s != KL_OK) refused = true;
            else if (!equal) {
                wrong = true;
                fprintf(stderr, "entry '%s' read back different from what was written\n", name);
            }
        };
        std::vector<float> b1(a1.size()), b3(a3.size());
        std::vector<uint8_t> bb(blob.size());
        kl_status s = kl_ckpt_get_f32(r, "params/layers.0.w", b1.data(), b1.size());
        got("params/layers.0.w", s, !memcmp(b1.data(), a1.data(), 4 * a1.size()));
        s = kl_ckpt_get_f32(r, "params/layers.1.w", b3.data(), b3.size());
        got("params/layers.1.w", s, !memcmp(b3.data(), a3.data(), 4 * a3.size()));
        s = kl_ckpt_get_bytes(r, "optim/state", bb.data(), bb.size());
        got("optim/state", s, bb == blob);
        s = kl_ckpt_get_bytes(r, "optim/empty", bb.data(), 0);
        got("optim/empty", s, true);
        int64_t i = 0;
        uint64_t u = 0;
        double f = 0;
        s = kl_ckpt_get_i64(r, "step", &i);
        got("step", s, i == i64);
        s = kl_ckpt_get_u64(r, "rng/philox", &u);
        got("rng/philox", s, u == u64);
        s = kl_ckpt_get_f64(r, "schedule/lr", &f);
        got("schedule/lr", s, !memcmp(&f, &f64, 8));
        char *t = nullptr;
        s = kl_ckpt_get_string(r, "config", &t);
        got("config", s, s == KL_OK && text == t);
        free(t);
        t = nullptr;
        s = kl_ckpt_get_string(r, "empty_text", &t);
        got("empty_text", s, s == KL_OK && !*t);
        free(t);
        for (size_t k = 0; k < streams.size(); k++) {
            s = kl_ckpt_get_u64(r, stream_name((int)k).c_str(), &u);
            got("rng/stream.*", s, u == streams[k]);
        }
        return wrong ? 2 : refused ? 0 : 1;
    }
};

/* A complete checkpoint of `world` ranks at `step`, rank r holding Content(seed + r). */
void write_checkpoint(const std::string &root, int64_t step, int world, uint64_t seed) {
    for (int r = 0; r < world; r++) {
        kl_ckpt_writer *w = nullptr;
        ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), step, r, world), KL_OK) << kl_last_error();
        Content(seed + r).put(w);
        ASSERT_EQ(kl_ckpt_writer_finish(w), KL_OK) << kl_last_error();
    }
    ASSERT_EQ(kl_ckpt_mark_done(root.c_str(), step, world), KL_OK) << kl_last_error();
}

/* A small complete checkpoint (one entry), for the protocol and prune tests. */
void write_small(const std::string &root, int64_t step, int world = 1) {
    for (int r = 0; r < world; r++) {
        kl_ckpt_writer *w = nullptr;
        ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), step, r, world), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_put_i64(w, "step", step), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_writer_finish(w), KL_OK) << kl_last_error();
    }
    ASSERT_EQ(kl_ckpt_mark_done(root.c_str(), step, world), KL_OK) << kl_last_error();
}

/* Opens and reads everything; KL_OK only if the checkpoint is accepted and every entry checks out. */
kl_status open_and_verify(const std::string &dir, std::string *msg) {
    kl_ckpt_reader *r = nullptr;
    kl_status s = kl_ckpt_open(&r, dir.c_str(), 0);
    if (s == KL_OK) s = kl_ckpt_verify(r, 0);
    *msg = s == KL_OK ? "" : kl_last_error();
    kl_ckpt_close(r);
    return s;
}

}  // namespace

TEST(CheckpointRoundTrip, EveryKindIsBitExact) {
    uint64_t seed = kltest::fresh_seed("CheckpointRoundTrip.EveryKindIsBitExact");
    std::string root = kltest::make_temp_dir("ckpt_roundtrip") + "/ckpt";
    int64_t step = 1 + (int64_t)(seed % 100000);
    write_checkpoint(root, step, 1, seed);
    std::string dir = step_dir(root, step);
    EXPECT_TRUE(exists(dir + "/DONE"));
    EXPECT_TRUE(exists(dir + "/rank_000.h5"));
    EXPECT_FALSE(exists(dir + "/rank_000.h5.tmp"));

    kl_ckpt_reader *r = nullptr;
    ASSERT_EQ(kl_ckpt_open(&r, dir.c_str(), 0), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_ckpt_step(r), step);
    EXPECT_EQ(kl_ckpt_world(r), 1);
    Content c(seed);
    c.expect_equal(r);

    /* The listing: the caller's entries only, sorted by name, with kinds and shapes. */
    std::vector<std::string> names;
    for (int i = 0; i < kl_ckpt_n_entries(r); i++) names.push_back(kl_ckpt_entry_at(r, i)->name);
    std::vector<std::string> want = {"config", "empty_text", "optim/empty", "optim/state", "params/layers.0.w",
                                     "params/layers.1.w", "rng/philox"};
    for (int i = 0; i < 12; i++) want.push_back(Content::stream_name(i));
    want.push_back("schedule/lr");
    want.push_back("step");
    std::sort(want.begin(), want.end());
    EXPECT_EQ(names, want);
    const kl_ckpt_entry *e = kl_ckpt_find(r, "params/layers.1.w");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->kind, KL_CKPT_F32);
    ASSERT_EQ(e->ndims, 3);
    for (int i = 0; i < 3; i++) EXPECT_EQ(e->dims[i], c.a3_dims[i]);
    EXPECT_EQ(e->count, c.a3.size());
    EXPECT_EQ(kl_ckpt_find(r, "optim/state")->count, c.blob.size());
    EXPECT_EQ(kl_ckpt_find(r, "rng/philox")->kind, KL_CKPT_U64);
    EXPECT_EQ(kl_ckpt_find(r, "meta/step"), nullptr) << "meta/ is the module's own, not listed";
    EXPECT_EQ(kl_ckpt_find(r, "params"), nullptr) << "groups are not entries";

    /* Verify in tiny slices (37 bytes: never a multiple of a row or of the hash's 32-byte block) and whole. */
    EXPECT_EQ(kl_ckpt_verify(r, 37), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_ckpt_verify(r, 0), KL_OK) << kl_last_error();
    kl_ckpt_close(r);
}

TEST(CheckpointRoundTrip, EachRankReadsItsOwnFileWrittenConcurrently) {
    uint64_t seed = kltest::fresh_seed("CheckpointRoundTrip.EachRankReadsItsOwnFileWrittenConcurrently");
    std::string root = kltest::make_temp_dir("ckpt_ranks") + "/ckpt";
    const int world = 4;
    /* Threads mode: every rank writes its file at the same time from its own thread. */
    std::vector<std::thread> threads;
    std::vector<kl_status> status(world, KL_ERR_INTERNAL);
    for (int rank = 0; rank < world; rank++)
        threads.emplace_back([&, rank] {
            kl_ckpt_writer *w = nullptr;
            status[rank] = kl_ckpt_writer_begin(&w, root.c_str(), 7, rank, world);
            if (status[rank] != KL_OK) return;
            Content c(seed + rank);
            int64_t d1 = (int64_t)c.a1.size();
            kl_status s = kl_ckpt_put_f32(w, "params/layers.0.w", c.a1.data(), 1, &d1);
            if (s == KL_OK) s = kl_ckpt_put_string(w, "config", c.text.c_str());
            if (s == KL_OK) s = kl_ckpt_put_bytes(w, "optim/state", c.blob.data(), c.blob.size());
            status[rank] = s == KL_OK ? kl_ckpt_writer_finish(w) : s;
            if (s != KL_OK) kl_ckpt_writer_abort(w);
        });
    for (auto &t : threads) t.join();
    for (int rank = 0; rank < world; rank++) ASSERT_EQ(status[rank], KL_OK) << "rank " << rank;
    ASSERT_EQ(kl_ckpt_mark_done(root.c_str(), 7, world), KL_OK) << kl_last_error();

    for (int rank = 0; rank < world; rank++) {
        kl_ckpt_reader *r = nullptr;
        ASSERT_EQ(kl_ckpt_open(&r, step_dir(root, 7).c_str(), rank), KL_OK) << kl_last_error();
        Content c(seed + rank);
        std::vector<float> a(c.a1.size());
        ASSERT_EQ(kl_ckpt_get_f32(r, "params/layers.0.w", a.data(), a.size()), KL_OK) << kl_last_error();
        EXPECT_EQ(memcmp(a.data(), c.a1.data(), 4 * a.size()), 0) << "rank " << rank;
        std::vector<uint8_t> b(c.blob.size());
        ASSERT_EQ(kl_ckpt_get_bytes(r, "optim/state", b.data(), b.size()), KL_OK) << kl_last_error();
        EXPECT_EQ(b, c.blob);
        EXPECT_EQ(kl_ckpt_verify(r, 0), KL_OK) << kl_last_error();
        kl_ckpt_close(r);
    }
    kl_ckpt_reader *r = nullptr;
    EXPECT_EQ(kl_ckpt_open(&r, step_dir(root, 7).c_str(), world), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "written by 4 rank(s); there is no rank 4")) << kl_last_error();
}

TEST(CheckpointChecksum, AnySingleByteChangeChangesIt) {
    uint64_t seed = kltest::fresh_seed("CheckpointChecksum.AnySingleByteChangeChangesIt");
    std::mt19937_64 g(seed);
    for (int trial = 0; trial < 200; trial++) {
        std::vector<uint8_t> a(g() % 200);
        for (auto &x : a) x = (uint8_t)g();
        uint64_t h = kl_ckpt_checksum(a.data(), a.size());
        if (!a.empty()) {
            std::vector<uint8_t> b = a;
            b[g() % b.size()] ^= (uint8_t)(1 + g() % 255);
            EXPECT_NE(kl_ckpt_checksum(b.data(), b.size()), h) << "size " << a.size();
        }
        /* Appending a zero byte changes the length, so the checksum too. */
        std::vector<uint8_t> c = a;
        c.push_back(0);
        EXPECT_NE(kl_ckpt_checksum(c.data(), c.size()), h);
    }
}

TEST(CheckpointWriter, RefusesBadNamesAndStaysFailed) {
    std::string root = kltest::make_temp_dir("ckpt_names") + "/ckpt";
    const char *bad[] = {"", "/a", "a/", "a//b", ".", "a/./b", "a/../b", "meta", "meta/x", "has space",
                         "tab\tname", "caf\xc3\xa9"};
    for (const char *name : bad) {
        kl_ckpt_writer *w = nullptr;
        ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 3, 0, 1), KL_OK) << kl_last_error();
        EXPECT_EQ(kl_ckpt_put_i64(w, name, 1), KL_ERR_INVALID) << "name '" << name << "'";
        EXPECT_TRUE(contains(kl_last_error(), "checkpoint entry")) << kl_last_error();
        kl_ckpt_writer_abort(w);
    }
    /* Clashes: the same name twice, an entry used as a group and a group used as an entry. */
    const char *clashes[][2] = {{"x", "x"}, {"a", "a/b"}, {"a/b", "a"}};
    for (auto &c : clashes) {
        kl_ckpt_writer *w = nullptr;
        ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 3, 0, 1), KL_OK) << kl_last_error();
        ASSERT_EQ(kl_ckpt_put_i64(w, c[0], 1), KL_OK) << kl_last_error();
        EXPECT_EQ(kl_ckpt_put_i64(w, c[1], 2), KL_ERR_INVALID) << c[0] << " then " << c[1];
        std::string first = kl_last_error();
        EXPECT_TRUE(contains(first, c[1])) << first;
        /* A good put after a failure returns the first error again; finish refuses and leaves nothing. */
        EXPECT_EQ(kl_ckpt_put_i64(w, "fine", 3), KL_ERR_INVALID);
        EXPECT_EQ(std::string(kl_last_error()), first);
        EXPECT_EQ(kl_ckpt_writer_finish(w), KL_ERR_INVALID);
        EXPECT_FALSE(exists(rank_file(root, 3, 0)));
        EXPECT_FALSE(exists(rank_file(root, 3, 0) + ".tmp"));
    }
    /* Bad shapes and arguments. */
    kl_ckpt_writer *w = nullptr;
    float x = 1;
    int64_t dims9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, neg = -1;
    ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 3, 0, 1), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_ckpt_put_f32(w, "a", &x, 9, dims9), KL_ERR_INVALID);
    kl_ckpt_writer_abort(w);
    ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 3, 0, 1), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_ckpt_put_f32(w, "a", &x, 1, &neg), KL_ERR_INVALID);
    kl_ckpt_writer_abort(w);
    EXPECT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 3, 1, 1), KL_ERR_INVALID) << "rank must be < world";
    EXPECT_EQ(w, nullptr);
    EXPECT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), -1, 0, 1), KL_ERR_INVALID) << "negative step";
    EXPECT_EQ(kl_ckpt_put_i64(nullptr, "a", 1), KL_ERR_INVALID);
}

TEST(CheckpointProtocol, UnfinishedSaveIsNeverChosenAndIsReported) {
    std::string root = kltest::make_temp_dir("ckpt_protocol") + "/ckpt";
    write_small(root, 10);
    /* Step 20 is being written: only its .tmp file exists. */
    kl_ckpt_writer *w = nullptr;
    ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 20, 0, 1), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_ckpt_put_i64(w, "step", 20), KL_OK) << kl_last_error();
    EXPECT_TRUE(exists(rank_file(root, 20, 0) + ".tmp"));
    kl_ckpt_choice c;
    ASSERT_EQ(kl_ckpt_find_latest(root.c_str(), &c), KL_OK) << kl_last_error();
    EXPECT_TRUE(c.found);
    EXPECT_EQ(c.step, 10);
    EXPECT_EQ(std::string(c.dir), step_dir(root, 10));
    EXPECT_TRUE(contains(c.warning, "step_00000020")) << c.warning;
    EXPECT_TRUE(contains(c.warning, "no DONE marker")) << c.warning;

    /* Finished (renamed) but not yet marked DONE: still not chosen. */
    ASSERT_EQ(kl_ckpt_writer_finish(w), KL_OK) << kl_last_error();
    EXPECT_FALSE(exists(rank_file(root, 20, 0) + ".tmp"));
    ASSERT_EQ(kl_ckpt_find_latest(root.c_str(), &c), KL_OK);
    EXPECT_EQ(c.step, 10);
    EXPECT_TRUE(contains(c.warning, "step_00000020")) << c.warning;
    kl_ckpt_reader *r = nullptr;
    EXPECT_EQ(kl_ckpt_open(&r, step_dir(root, 20).c_str(), 0), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "incomplete")) << kl_last_error();
    EXPECT_EQ(r, nullptr);

    /* Marked: chosen, nothing to warn about. */
    ASSERT_EQ(kl_ckpt_mark_done(root.c_str(), 20, 1), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_ckpt_find_latest(root.c_str(), &c), KL_OK);
    EXPECT_EQ(c.step, 20);
    EXPECT_EQ(c.world, 1);
    EXPECT_STREQ(c.warning, "");
}

TEST(CheckpointProtocol, MissingRankFileMakesAFolderIncomplete) {
    std::string root = kltest::make_temp_dir("ckpt_missing_rank") + "/ckpt";
    write_small(root, 5, 2);
    /* World 2 at step 9, but rank 1 never finished. */
    kl_ckpt_writer *w = nullptr;
    ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 9, 0, 2), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_ckpt_writer_finish(w), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_ckpt_mark_done(root.c_str(), 9, 2), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "rank_001.h5")) << kl_last_error();
    EXPECT_FALSE(exists(step_dir(root, 9) + "/DONE"));
    /* Even a DONE written by hand does not make it complete. */
    kltest::write_file(step_dir(root, 9) + "/DONE", "kiln checkpoint\nformat 1\nstep 9\nworld 2\n");
    kl_ckpt_choice c;
    ASSERT_EQ(kl_ckpt_find_latest(root.c_str(), &c), KL_OK);
    EXPECT_EQ(c.step, 5);
    EXPECT_EQ(c.world, 2);
    EXPECT_TRUE(contains(c.warning, "step_00000009 (rank_001.h5 of 2 is missing)")) << c.warning;
    /* A garbled DONE is no DONE. */
    kltest::write_file(step_dir(root, 9) + "/DONE", "kiln checkpoint\nstep nine\n");
    ASSERT_EQ(kl_ckpt_find_latest(root.c_str(), &c), KL_OK);
    EXPECT_EQ(c.step, 5);
    EXPECT_TRUE(contains(c.warning, "DONE marker is unreadable")) << c.warning;
}

TEST(CheckpointProtocol, DoneMarkerCountsOnlyAsKilnWritesIt) {
    std::string root = kltest::make_temp_dir("ckpt_done_text") + "/ckpt";
    write_small(root, 5);
    write_small(root, 9);
    const std::string done = step_dir(root, 9) + "/DONE", exact = "kiln checkpoint\nformat 1\nstep 9\nworld 1\n";
    EXPECT_EQ(kltest::read_file(done), exact) << "the marker kiln writes";
    kl_ckpt_choice c;
    // each of these parses with a lenient scanf, and none is what kiln writes
    const std::string bad[] = {exact + std::string(2, '\0'),
                               exact + "x",
                               exact.substr(0, exact.size() - 1),
                               exact + "\n",
                               "kiln checkpoint format 1 step 9 world 1\n",
                               "kiln checkpoint\nformat 1\nstep 09\nworld 1\n",
                               std::string(300, ' ') + exact};
    for (const std::string &text : bad) {
        kltest::write_file(done, text);
        ASSERT_EQ(kl_ckpt_find_latest(root.c_str(), &c), KL_OK);
        EXPECT_EQ(c.step, 5) << "accepted a DONE of " << text.size() << " bytes";
        EXPECT_TRUE(contains(c.warning, "DONE marker is unreadable")) << c.warning;
    }
    kltest::write_file(done, exact);
    ASSERT_EQ(kl_ckpt_find_latest(root.c_str(), &c), KL_OK);
    EXPECT_EQ(c.step, 9);
    EXPECT_STREQ(c.warning, "");
}

TEST(CheckpointProtocol, ResavingAStepUnmarksItFirstAndReplacesItsData) {
    uint64_t seed = kltest::fresh_seed("CheckpointProtocol.ResavingAStepUnmarksItFirstAndReplacesItsData");
    std::string root = kltest::make_temp_dir("ckpt_resave") + "/ckpt";
    write_checkpoint(root, 30, 1, seed);
    kl_ckpt_writer *w = nullptr;
    ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 30, 0, 1), KL_OK) << kl_last_error();
    EXPECT_FALSE(exists(step_dir(root, 30) + "/DONE")) << "a folder whose files change must not stay complete";
    kl_ckpt_choice c;
    ASSERT_EQ(kl_ckpt_find_latest(root.c_str(), &c), KL_OK);
    EXPECT_FALSE(c.found);
    Content(seed + 1000).put(w);
    ASSERT_EQ(kl_ckpt_writer_finish(w), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_ckpt_mark_done(root.c_str(), 30, 1), KL_OK) << kl_last_error();
    kl_ckpt_reader *r = nullptr;
    ASSERT_EQ(kl_ckpt_open(&r, step_dir(root, 30).c_str(), 0), KL_OK) << kl_last_error();
    Content(seed + 1000).expect_equal(r);
    kl_ckpt_close(r);
}

TEST(CheckpointProtocol, MarkDoneChecksTheFilesAndRemovesLeftovers) {
    std::string root = kltest::make_temp_dir("ckpt_markdone") + "/ckpt";
    write_small(root, 40, 3);
    write_small(root, 50, 1);
    /* A save of step 50 with 3 ranks earlier left rank_001/002 and a temporary file behind. */
    std::string d50 = step_dir(root, 50);
    kltest::write_file(d50 + "/rank_001.h5", kltest::read_file(rank_file(root, 40, 1)));
    kltest::write_file(d50 + "/rank_002.h5", kltest::read_file(rank_file(root, 40, 2)));
    kltest::write_file(d50 + "/rank_003.h5.tmp", "half");
    ASSERT_EQ(kl_ckpt_mark_done(root.c_str(), 50, 1), KL_OK) << kl_last_error();
    EXPECT_FALSE(exists(d50 + "/rank_001.h5"));
    EXPECT_FALSE(exists(d50 + "/rank_002.h5"));
    EXPECT_FALSE(exists(d50 + "/rank_003.h5.tmp"));
    EXPECT_TRUE(exists(d50 + "/rank_000.h5"));
    /* A rank file of another step is refused by name. */
    kltest::write_file(d50 + "/rank_000.h5", kltest::read_file(rank_file(root, 40, 0)));
    EXPECT_EQ(kl_ckpt_mark_done(root.c_str(), 50, 1), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "step 40, rank 0 of 3")) << kl_last_error();
    /* A file that is not HDF5 is refused. */
    kltest::write_file(d50 + "/rank_000.h5", "not hdf5 at all");
    EXPECT_EQ(kl_ckpt_mark_done(root.c_str(), 50, 1), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "does not open")) << kl_last_error();
    EXPECT_EQ(kl_ckpt_mark_done(root.c_str(), 50, 0), KL_ERR_INVALID);
}

TEST(CheckpointResume, ResolvesNoneAutoAndPaths) {
    std::string tmp = kltest::make_temp_dir("ckpt_resume");
    std::string root = tmp + "/ckpt";
    kl_ckpt_choice c;
    /* Nothing saved yet: auto starts fresh, quietly. */
    ASSERT_EQ(kl_ckpt_resolve_resume("auto", root.c_str(), &c), KL_OK) << kl_last_error();
    EXPECT_FALSE(c.found);
    EXPECT_STREQ(c.warning, "");
    write_small(root, 100);
    write_small(root, 200);
    ASSERT_EQ(kl_ckpt_resolve_resume("none", root.c_str(), &c), KL_OK);
    EXPECT_FALSE(c.found);
    ASSERT_EQ(kl_ckpt_resolve_resume("auto", root.c_str(), &c), KL_OK);
    EXPECT_TRUE(c.found);
    EXPECT_EQ(c.step, 200);
    /* An explicit folder, even an older one; its step comes from DONE, not from the folder's name. */
    std::string copy = tmp + "/my_copy";
    ASSERT_EQ(rename(step_dir(root, 100).c_str(), copy.c_str()), 0);
    ASSERT_EQ(kl_ckpt_resolve_resume(copy.c_str(), root.c_str(), &c), KL_OK) << kl_last_error();
    EXPECT_TRUE(c.found);
    EXPECT_EQ(c.step, 100);
    EXPECT_EQ(std::string(c.dir), copy);
    /* Errors say what to use instead. */
    std::string missing = tmp + "/nope/step_00000100";
    EXPECT_EQ(kl_ckpt_resolve_resume(missing.c_str(), root.c_str(), &c), KL_ERR_CONFIG);
    EXPECT_TRUE(contains(kl_last_error(), missing + " does not exist")) << kl_last_error();
    EXPECT_TRUE(contains(kl_last_error(), "expected auto, none")) << kl_last_error();
    EXPECT_EQ(kl_ckpt_resolve_resume("", root.c_str(), &c), KL_ERR_CONFIG);
    EXPECT_EQ(kl_ckpt_resolve_resume(root.c_str(), root.c_str(), &c), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "holds checkpoints but is not one")) << kl_last_error();
    EXPECT_TRUE(contains(kl_last_error(), step_dir(root, 200))) << kl_last_error();
    ASSERT_EQ(unlink((copy + "/DONE").c_str()), 0);
    EXPECT_EQ(kl_ckpt_resolve_resume(copy.c_str(), root.c_str(), &c), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "incomplete (no DONE marker")) << kl_last_error();
    kltest::write_file(tmp + "/file", "x");
    EXPECT_EQ(kl_ckpt_resolve_resume((tmp + "/file").c_str(), root.c_str(), &c), KL_ERR_CONFIG);
    EXPECT_TRUE(contains(kl_last_error(), "not a folder")) << kl_last_error();
}

TEST(CheckpointPrune, KeepsTheNewestAndEveryMthAsThePolicySays) {
    uint64_t seed = kltest::fresh_seed("CheckpointPrune.KeepsTheNewestAndEveryMthAsThePolicySays");
    std::mt19937_64 g(seed);
    for (int trial = 0; trial < 3; trial++) {
        std::string root = kltest::make_temp_dir("ckpt_prune") + "/ckpt";
        /* Random distinct steps, some multiples of 5 and 10 (the likely keep_every values). */
        std::set<int64_t> steps;
        int n = 4 + (int)(g() % 6);
        while ((int)steps.size() < n) steps.insert(1 + (int64_t)(g() % 60) * (g() % 2 ? 5 : 1));
        std::vector<int64_t> sorted(steps.begin(), steps.end());
        for (int64_t s : sorted) write_small(root, s);
        /* Incomplete folders: one older than the newest complete (stale), one newer (a save in progress). */
        int64_t stale = sorted.back() - 1, running = sorted.back() + 7;
        if (!steps.count(stale)) {
            kl_ckpt_writer *w = nullptr;
            ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), stale, 0, 1), KL_OK);
            ASSERT_EQ(kl_ckpt_writer_finish(w), KL_OK);
        }
        kl_ckpt_writer *w = nullptr;
        ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), running, 0, 1), KL_OK);
        int keep_last = (int)(g() % 4);           /* 0 = keep all */
        int64_t keep_every = (int64_t)(g() % 3) * 5; /* 0 = off, 5, 10 */
        int removed = -1;
        ASSERT_EQ(kl_ckpt_prune(root.c_str(), keep_last, keep_every, &removed), KL_OK) << kl_last_error();

        std::set<int64_t> want;
        for (size_t i = 0; i < sorted.size(); i++) {
            bool newest = keep_last <= 0 || i + keep_last >= sorted.size() || i + 1 == sorted.size();
            bool milestone = keep_every > 0 && sorted[i] % keep_every == 0;
            if (newest || milestone) want.insert(sorted[i]);
        }
        std::set<int64_t> got;
        for (int64_t s : sorted)
            if (exists(step_dir(root, s))) got.insert(s);
        EXPECT_EQ(got, want) << "keep_last " << keep_last << " keep_every " << keep_every;
        EXPECT_EQ(removed, (int)(sorted.size() - want.size()) + (steps.count(stale) ? 0 : 1));
        EXPECT_FALSE(exists(step_dir(root, stale)) && !steps.count(stale)) << "stale incomplete folder kept";
        EXPECT_TRUE(exists(rank_file(root, running, 0) + ".tmp")) << "a save in progress was touched";
        for (int64_t s : want) {
            kl_ckpt_reader *r = nullptr;
            EXPECT_EQ(kl_ckpt_open(&r, step_dir(root, s).c_str(), 0), KL_OK) << kl_last_error();
            kl_ckpt_close(r);
        }
        kl_ckpt_writer_abort(w);
    }
}

TEST(CheckpointPrune, NeverRemovesTheNewestOrForeignFiles) {
    std::string root = kltest::make_temp_dir("ckpt_prune_safe") + "/ckpt";
    int removed = -1;
    ASSERT_EQ(kl_ckpt_prune(root.c_str(), 1, 0, &removed), KL_OK) << "a missing root has nothing to prune";
    EXPECT_EQ(removed, 0);
    for (int64_t s : {10, 20, 30}) write_small(root, s);
    /* Somebody keeps notes in step 10; it must not be removed, and the failure is reported. */
    kltest::write_file(step_dir(root, 10) + "/notes.txt", "good run");
    EXPECT_EQ(kl_ckpt_prune(root.c_str(), 1, 0, &removed), KL_ERR_IO);
    EXPECT_TRUE(contains(kl_last_error(), "notes.txt")) << kl_last_error();
    EXPECT_EQ(removed, 1);
    EXPECT_TRUE(exists(step_dir(root, 10) + "/DONE")) << "a folder with foreign files is left whole";
    EXPECT_FALSE(exists(step_dir(root, 20)));
    EXPECT_TRUE(exists(step_dir(root, 30)));
    /* Only incomplete checkpoints: nothing is complete, so nothing goes. */
    std::string root2 = kltest::make_temp_dir("ckpt_prune_none") + "/ckpt";
    kl_ckpt_writer *w = nullptr;
    ASSERT_EQ(kl_ckpt_writer_begin(&w, root2.c_str(), 1, 0, 1), KL_OK);
    ASSERT_EQ(kl_ckpt_writer_finish(w), KL_OK);
    ASSERT_EQ(kl_ckpt_prune(root2.c_str(), 1, 0, &removed), KL_OK);
    EXPECT_EQ(removed, 0);
    EXPECT_TRUE(exists(rank_file(root2, 1, 0)));
}

TEST(CheckpointSignature, ListsEveryDifference) {
    std::string root = kltest::make_temp_dir("ckpt_signature") + "/ckpt";
    const char *keys[] = {"model.hidden_size", "model.n_layers", "world_size", "optim.name"};
    const char *vals[] = {"64", "4", "2", "adamw"};
    kl_ckpt_writer *w = nullptr;
    ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 1, 0, 1), KL_OK);
    ASSERT_EQ(kl_ckpt_put_signature(w, keys, vals, 4), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_ckpt_put_signature(w, keys, vals, 4), KL_ERR_INVALID) << "only once";
    kl_ckpt_writer_abort(w);
    ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 1, 0, 1), KL_OK);
    ASSERT_EQ(kl_ckpt_put_signature(w, keys, vals, 4), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_ckpt_writer_finish(w), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_ckpt_mark_done(root.c_str(), 1, 1), KL_OK) << kl_last_error();

    kl_ckpt_reader *r = nullptr;
    ASSERT_EQ(kl_ckpt_open(&r, step_dir(root, 1).c_str(), 0), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_ckpt_check_signature(r, keys, vals, 4), KL_OK) << kl_last_error();
    const char *order[] = {"optim.name", "world_size", "model.hidden_size", "model.n_layers"};
    const char *order_vals[] = {"adamw", "2", "64", "4"};
    EXPECT_EQ(kl_ckpt_check_signature(r, order, order_vals, 4), KL_OK) << "order does not matter";

    const char *now_keys[] = {"model.hidden_size", "model.n_layers", "world_size", "optim.dash.block"};
    const char *now_vals[] = {"128", "4", "1", "1024"};
    ASSERT_EQ(kl_ckpt_check_signature(r, now_keys, now_vals, 4), KL_ERR_INVALID);
    std::string m = kl_last_error();
    EXPECT_TRUE(contains(m, "does not match this run: model.hidden_size: checkpoint 64, now 128; "
                            "world_size: checkpoint 2, now 1; optim.dash.block: not in checkpoint, now 1024; "
                            "optim.name: checkpoint adamw, not set now"))
        << m;
    EXPECT_FALSE(contains(m, "n_layers")) << "equal keys are not listed: " << m;
    kl_ckpt_close(r);

    /* Malformed signatures are refused when written. */
    const char *bad_keys[] = {"a=b"}, *bad_vals[] = {"1"}, *dup_keys[] = {"a", "a"}, *dup_vals[] = {"1", "2"};
    const char *nl_vals[] = {"x\ny"}, *ok_keys[] = {"a"};
    ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 2, 0, 1), KL_OK);
    EXPECT_EQ(kl_ckpt_put_signature(w, bad_keys, bad_vals, 1), KL_ERR_INVALID);
    kl_ckpt_writer_abort(w);
    ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 2, 0, 1), KL_OK);
    EXPECT_EQ(kl_ckpt_put_signature(w, dup_keys, dup_vals, 2), KL_ERR_INVALID);
    kl_ckpt_writer_abort(w);
    ASSERT_EQ(kl_ckpt_writer_begin(&w, root.c_str(), 2, 0, 1), KL_OK);
    EXPECT_EQ(kl_ckpt_put_signature(w, ok_keys, nl_vals, 1), KL_ERR_INVALID);
    kl_ckpt_writer_abort(w);
}

TEST(CheckpointRead, WrongSizeKindOrNameIsRefusedWithBothSides) {
    uint64_t seed = kltest::fresh_seed("CheckpointRead.WrongSizeKindOrNameIsRefusedWithBothSides");
    std::string root = kltest::make_temp_dir("ckpt_wrong") + "/ckpt";
    write_checkpoint(root, 3, 1, seed);
    Content c(seed);
    kl_ckpt_reader *r = nullptr;
    ASSERT_EQ(kl_ckpt_open(&r, step_dir(root, 3).c_str(), 0), KL_OK) << kl_last_error();
    std::vector<float> big(c.a1.size() + 1);
    EXPECT_EQ(kl_ckpt_get_f32(r, "params/layers.0.w", big.data(), big.size()), KL_ERR_INVALID);
    std::string want = "entry 'params/layers.0.w' holds " + std::to_string(c.a1.size()) + " floats, expected " +
                       std::to_string(big.size());
    EXPECT_TRUE(contains(kl_last_error(), want)) << kl_last_error();
    EXPECT_TRUE(contains(kl_last_error(), rank_file(root, 3, 0))) << kl_last_error();
    std::vector<uint8_t> b(c.blob.size() + 3);
    EXPECT_EQ(kl_ckpt_get_bytes(r, "optim/state", b.data(), b.size()), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "expected " + std::to_string(b.size()))) << kl_last_error();
    EXPECT_EQ(kl_ckpt_get_bytes(r, "params/layers.0.w", b.data(), 4), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "holds f32, expected bytes")) << kl_last_error();
    int64_t v;
    EXPECT_EQ(kl_ckpt_get_i64(r, "rng/philox", &v), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "holds u64, expected i64")) << kl_last_error();
    EXPECT_EQ(kl_ckpt_get_i64(r, "params/layers.9.w", &v), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "no entry 'params/layers.9.w'")) << kl_last_error();
    EXPECT_EQ(kl_ckpt_get_i64(r, "meta/step", &v), KL_ERR_INVALID) << "meta/ is not the caller's";
    kl_ckpt_close(r);
}

TEST(CheckpointCorrupt, MissingDoneEmptyAndRandomFilesAreRefused) {
    uint64_t seed = kltest::fresh_seed("CheckpointCorrupt.MissingDoneEmptyAndRandomFilesAreRefused");
    std::string root = kltest::make_temp_dir("ckpt_garbage") + "/ckpt";
    write_checkpoint(root, 8, 1, seed);
    std::string dir = step_dir(root, 8), file = rank_file(root, 8, 0), msg;
    std::string good = kltest::read_file(file);

    kltest::write_file(file, "");
    EXPECT_EQ(open_and_verify(dir, &msg), KL_ERR_INVALID);
    EXPECT_TRUE(contains(msg, file + " (0 bytes) is not a readable HDF5 file")) << msg;

    std::mt19937_64 g(seed);
    std::string junk(1 + g() % 100000, 0);
    for (auto &ch : junk) ch = (char)g();
    kltest::write_file(file, junk);
    EXPECT_EQ(open_and_verify(dir, &msg), KL_ERR_INVALID);
    EXPECT_TRUE(contains(msg, "is not a readable HDF5 file")) << msg;

    /* Random bytes behind a valid HDF5 signature and superblock start. */
    std::string fake = good.substr(0, 48) + junk;
    kltest::write_file(file, fake);
    EXPECT_EQ(open_and_verify(dir, &msg), KL_ERR_INVALID);
    EXPECT_TRUE(contains(msg, file)) << msg;

    kltest::write_file(file, good);
    ASSERT_EQ(open_and_verify(dir, &msg), KL_OK) << msg;
    ASSERT_EQ(unlink((dir + "/DONE").c_str()), 0);
    EXPECT_EQ(open_and_verify(dir, &msg), KL_ERR_INVALID);
    EXPECT_TRUE(contains(msg, "is incomplete: no DONE marker")) << msg;
    kltest::write_file(dir + "/DONE", "kiln checkpoint\nformat 1\nstep 8\nworld 1\n");
    ASSERT_EQ(unlink(file.c_str()), 0);
    EXPECT_EQ(open_and_verify(dir, &msg), KL_ERR_INVALID);
    EXPECT_TRUE(contains(msg, file + " is missing")) << msg;
}

TEST(CheckpointCorrupt, TruncatedAtRandomLengthsIsRefusedAtOpen) {
    uint64_t seed = kltest::fresh_seed("CheckpointCorrupt.TruncatedAtRandomLengthsIsRefusedAtOpen");
    std::string root = kltest::make_temp_dir("ckpt_truncated") + "/ckpt";
    write_checkpoint(root, 8, 1, seed);
    std::string dir = step_dir(root, 8), file = rank_file(root, 8, 0);
    std::string good = kltest::read_file(file);
    ASSERT_GT(good.size(), 1000u);
    std::mt19937_64 g(seed);
    /* HDF5 records the end of its allocated space in the superblock and refuses a shorter file, so every cut
     * (including one byte short) must fail at open, before any entry is handed out. */
    std::vector<size_t> cuts = {0, 1, 8, 100, good.size() / 2, good.size() - 1};
    for (int i = 0; i < 20; i++) cuts.push_back(g() % good.size());
    for (size_t cut : cuts) {
        kltest::write_file(file, good.substr(0, cut));
        kl_ckpt_reader *r = nullptr;
        EXPECT_EQ(kl_ckpt_open(&r, dir.c_str(), 0), KL_ERR_INVALID) << "cut at " << cut << " of " << good.size();
        EXPECT_EQ(r, nullptr);
        EXPECT_TRUE(contains(kl_last_error(), file)) << kl_last_error();
        kl_ckpt_close(r);
    }
    kltest::write_file(file, good);
    std::string msg;
    EXPECT_EQ(open_and_verify(dir, &msg), KL_OK) << msg;
}

TEST(CheckpointCorrupt, FlippedDataByteIsCaughtByTheChecksum) {
    uint64_t seed = kltest::fresh_seed("CheckpointCorrupt.FlippedDataByteIsCaughtByTheChecksum");
    std::string root = kltest::make_temp_dir("ckpt_flip_data") + "/ckpt";
    write_checkpoint(root, 8, 1, seed);
    std::string dir = step_dir(root, 8), file = rank_file(root, 8, 0);
    std::string bytes = kltest::read_file(file);
    Content c(seed);
    /* Find the 3-D array's raw data in the file (contiguous layout) and damage one byte of it. */
    std::string needle(reinterpret_cast<const char *>(c.a3.data()), 4 * c.a3.size());
    size_t at = bytes.find(needle);
    ASSERT_NE(at, std::string::npos);
    std::mt19937_64 g(seed);
    bytes[at + g() % needle.size()] ^= (char)(1 + g() % 255);
    kltest::write_file(file, bytes);

    kl_ckpt_reader *r = nullptr;
    ASSERT_EQ(kl_ckpt_open(&r, dir.c_str(), 0), KL_OK) << "raw data is checked when read: " << kl_last_error();
    std::vector<float> a(c.a3.size());
    EXPECT_EQ(kl_ckpt_get_f32(r, "params/layers.1.w", a.data(), a.size()), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "entry 'params/layers.1.w' is corrupt")) << kl_last_error();
    EXPECT_TRUE(contains(kl_last_error(), file)) << kl_last_error();
    EXPECT_EQ(kl_ckpt_verify(r, 0), KL_ERR_INVALID);
    EXPECT_EQ(kl_ckpt_verify(r, 100), KL_ERR_INVALID);
    std::vector<float> b(c.a1.size());
    EXPECT_EQ(kl_ckpt_get_f32(r, "params/layers.0.w", b.data(), b.size()), KL_OK) << "other entries are intact";
    kl_ckpt_close(r);
}

/* Runs fn in a child process and returns its exit status (128 + signal if it died). HDF5 1.10 leaks some
 * internal memory when a metadata checksum fails (a library bug on its error path, not a kiln handle): the
 * child leaves with _exit, so that leak never reaches LeakSanitizer's exit-time check in this process. */
template <class F>
int in_child(F fn) {
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = fn();
        fflush(nullptr);
        _exit(rc);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

TEST(CheckpointCorrupt, RandomByteFlipsNeverYieldWrongData) {
    uint64_t seed = kltest::fresh_seed("CheckpointCorrupt.RandomByteFlipsNeverYieldWrongData");
    std::string root = kltest::make_temp_dir("ckpt_flip_any") + "/ckpt";
    write_checkpoint(root, 8, 1, seed);
    std::string dir = step_dir(root, 8), file = rank_file(root, 8, 0);
    std::string good = kltest::read_file(file);
    Content c(seed);
    std::mt19937_64 g(seed);
    int refused = 0;
    const int trials = 40;
    for (int t = 0; t < trials; t++) {
        std::string bytes = good;
        size_t pos = g() % bytes.size();
        bytes[pos] ^= (char)(1 + g() % 255);
        kltest::write_file(file, bytes);
        /* Either the damage is refused (at open or when an entry is read, and then kl_ckpt_verify agrees) or,
         * when it hit unused space, every entry reads back exactly as written. Never wrong data, never a
         * crash. Exit codes: 0 refused, 1 all exact, 2 wrong data, 3 verify disagrees with the reads. */
        int rc = in_child([&] {
            kl_ckpt_reader *r = nullptr;
            if (kl_ckpt_open(&r, dir.c_str(), 0) != KL_OK) return 0;
            int res = c.check_all(r);
            bool verified = kl_ckpt_verify(r, 0) == KL_OK;
            if (res != 2 && verified != (res == 1)) res = 3;
            if (res >= 2) fprintf(stderr, "flip at %zu: result %d (%s)\n", pos, res, kl_last_error());
            kl_ckpt_close(r);
            return res;
        });
        ASSERT_TRUE(rc == 0 || rc == 1) << "flip at byte " << pos << " of " << bytes.size() << ": child status "
                                        << rc << " (2 wrong data, 3 verify disagrees, >= 128 crashed)";
        refused += rc == 0;
    }
    /* Most of the file is entry data or checksummed metadata, so most flips must be caught (an exhaustive
     * sweep over every byte of files like this one refuses 89-97%; more than half leaves a wide margin for
     * where 40 random positions fall: P(<= 20 of 40 at p = 0.89) < 1e-7). */
    EXPECT_GT(refused, trials / 2);
    /* The undamaged file is still accepted as a whole. */
    kltest::write_file(file, good);
    std::string msg;
    EXPECT_EQ(open_and_verify(dir, &msg), KL_OK) << msg;
}

TEST(CheckpointCorrupt, TamperedStructureIsRefusedAtOpen) {
    uint64_t seed = kltest::fresh_seed("CheckpointCorrupt.TamperedStructureIsRefusedAtOpen");
    std::string root = kltest::make_temp_dir("ckpt_tamper") + "/ckpt";
    write_checkpoint(root, 8, 1, seed);
    std::string dir = step_dir(root, 8), file = rank_file(root, 8, 0);
    std::string good = kltest::read_file(file);
    kl_ckpt_reader *r = nullptr;

    /* A dataset removed from a finished file. */
    hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    ASSERT_GE(H5Ldelete(f, "optim/state", H5P_DEFAULT), 0);
    H5Fclose(f);
    EXPECT_EQ(kl_ckpt_open(&r, dir.c_str(), 0), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "lists 21 entries but holds 20")) << kl_last_error();

    /* A newer format version (with a matching checksum, so only the version is wrong). */
    kltest::write_file(file, good);
    f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    int64_t version = 2;
    uint64_t sum = kl_ckpt_checksum(&version, 8);
    hid_t ds = H5Dopen2(f, "meta/format_version", H5P_DEFAULT);
    ASSERT_GE(H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &version), 0);
    hid_t a = H5Aopen(ds, "kl_checksum", H5P_DEFAULT);
    ASSERT_GE(H5Awrite(a, H5T_NATIVE_UINT64, &sum), 0);
    H5Aclose(a);
    H5Dclose(ds);
    H5Fclose(f);
    EXPECT_EQ(kl_ckpt_open(&r, dir.c_str(), 0), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "format version 2; this kiln reads version 1")) << kl_last_error();

    /* A value changed without its checksum. */
    kltest::write_file(file, good);
    f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ds = H5Dopen2(f, "meta/step", H5P_DEFAULT);
    int64_t other = 9;
    ASSERT_GE(H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &other), 0);
    H5Dclose(ds);
    H5Fclose(f);
    EXPECT_EQ(kl_ckpt_open(&r, dir.c_str(), 0), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "entry 'meta/step' is corrupt")) << kl_last_error();

    /* A dataset kiln did not write. */
    kltest::write_file(file, good);
    f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hsize_t n = 3;
    hid_t sp = H5Screate_simple(1, &n, nullptr);
    ds = H5Dcreate2(f, "intruder", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(ds, 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    EXPECT_EQ(kl_ckpt_open(&r, dir.c_str(), 0), KL_ERR_INVALID);
    EXPECT_TRUE(contains(kl_last_error(), "entry 'intruder': no kl_kind attribute")) << kl_last_error();
    EXPECT_EQ(r, nullptr);
}
