/* safetensors_test.cc — the safetensors reader against files written by the reference Python package
 * (committed fixtures, single and sharded), the writer's round trip (single file and shards + index), the
 * half-precision codecs over every code, and hostile files: each rejected with a specific message, never a
 * crash or an out-of-bounds read (the sanitizer build runs these with exactly-sized buffers). */
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <dirent.h>
#include <set>
#include <sys/stat.h>
#include <vector>

#include "test_util.h"

extern "C" {
#include "safetensors.h"
}

static float fixture_value(int64_t i) { return (float)(i % 97) * 0.25f - 12.0f; }
static std::string fixtures() { return kltest::kiln_source_dir() + "/tests/data/safetensors/"; }
static bool exists(const std::string &p) {
    struct stat sb;
    return stat(p.c_str(), &sb) == 0;
}

static std::set<std::string> list_dir(const std::string &dir) {
    std::set<std::string> names;
    DIR *d = opendir(dir.c_str());
    if (!d) return names;
    while (dirent *e = readdir(d))
        if (e->d_name[0] != '.') names.insert(e->d_name);
    closedir(d);
    return names;
}

/* Parses a copy of `bytes` in a buffer of exactly that size, so any read past the end is an ASan error. */
static kl_status parse_exact(const std::string &bytes, kl_st_file *f) {
    uint8_t *buf = (uint8_t *)malloc(bytes.size() ? bytes.size() : 1);
    memcpy(buf, bytes.data(), bytes.size());
    *f = kl_st_file{};
    kl_status st = kl_st_parse(f, buf, bytes.size(), "hostile");
    if (st == KL_OK) {
        /* touch every byte handed out: out of bounds would be caught here */
        unsigned sum = 0;
        for (int i = 0; i < f->n; i++)
            for (size_t k = 0; k < f->tensors[i].nbytes; k++) sum += f->tensors[i].data[k];
        (void)sum;
        for (int i = 0; i < f->n; i++) {
            EXPECT_GE(f->tensors[i].data, buf);
            EXPECT_LE(f->tensors[i].data + f->tensors[i].nbytes, buf + bytes.size());
        }
    }
    kl_st_close(f);
    free(buf);
    return st;
}

TEST(Safetensors, ReadsFilesWrittenByThePythonPackage) {
    kl_st_file f;
    ASSERT_EQ(kl_st_open(&f, (fixtures() + "f32.safetensors").c_str()), KL_OK) << kl_last_error();
    EXPECT_EQ(f.n, 3);
    ASSERT_NE(kl_st_metadata(&f, "format"), nullptr);
    EXPECT_STREQ(kl_st_metadata(&f, "format"), "pt");
    EXPECT_EQ(kl_st_metadata(&f, "nope"), nullptr);
    const kl_st_tensor *a = kl_st_find(&f, "a.weight");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->dtype, KL_ST_F32);
    EXPECT_EQ(a->ndim, 2);
    EXPECT_EQ(a->shape[0], 5);
    EXPECT_EQ(a->shape[1], 7);
    std::vector<float> v(35);
    ASSERT_EQ(kl_st_read_f32(a, v.data(), 35, "f32"), KL_OK);
    for (int i = 0; i < 35; i++) EXPECT_EQ(v[i], fixture_value(i));
    const kl_st_tensor *b = kl_st_find(&f, "b.bias"), *s = kl_st_find(&f, "c.scalar");
    ASSERT_TRUE(b && s);
    EXPECT_EQ(b->numel, 3);
    EXPECT_EQ(s->ndim, 0);
    EXPECT_EQ(s->numel, 1) << "a 0-D tensor holds one element";
    EXPECT_EQ(kl_st_find(&f, "a.weigh"), nullptr);
    EXPECT_EQ(kl_st_read_f32(a, v.data(), 34, "f32"), KL_ERR_INVALID) << "a wrong element count must be refused";
    EXPECT_NE(std::string(kl_last_error()).find("'a.weight' has 35 elements"), std::string::npos) << kl_last_error();
    kl_st_close(&f);

    ASSERT_EQ(kl_st_open(&f, (fixtures() + "half.safetensors").c_str()), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_st_metadata(&f, "format"), nullptr) << "this fixture was written without metadata";
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

TEST(Safetensors, ReadsAShardedFolderLaidOutLikeTransformers) {
    kl_st_dir d;
    ASSERT_EQ(kl_st_dir_open(&d, (fixtures() + "sharded").c_str()), KL_OK) << kl_last_error();
    EXPECT_EQ(d.sharded, 1);
    EXPECT_EQ(d.nfiles, 2);
    ASSERT_EQ(d.n, 4);
    for (int i = 1; i < d.n; i++) EXPECT_LT(strcmp(d.tensors[i - 1]->name, d.tensors[i]->name), 0) << "sorted names";
    const kl_st_tensor *up = kl_st_dir_find(&d, "model.layers.0.mlp.up_proj.weight");
    ASSERT_NE(up, nullptr);
    EXPECT_EQ(up->dtype, KL_ST_BF16);
    EXPECT_EQ(up->shape[0], 8);
    std::vector<float> v(32);
    ASSERT_EQ(kl_st_read_f32(up, v.data(), 32, "sharded"), KL_OK);
    for (int i = 0; i < 32; i++) EXPECT_EQ(v[i], fixture_value(i));
    std::string where = kl_st_dir_file_of(&d, "model.layers.0.mlp.up_proj.weight");
    EXPECT_NE(where.find("model-00002-of-00002.safetensors"), std::string::npos) << where;
    where = kl_st_dir_file_of(&d, "model.embed_tokens.weight");
    EXPECT_NE(where.find("model-00001-of-00002.safetensors"), std::string::npos) << where;
    EXPECT_EQ(kl_st_dir_find(&d, "lm_head.weight"), nullptr);
    EXPECT_EQ(kl_st_dir_file_of(&d, "lm_head.weight"), nullptr);
    kl_st_dir_close(&d);
}

/* Copies the sharded fixture into a fresh folder, replaces the index with `index`, returns the folder. */
static std::string sharded_copy(const char *name, const std::string &index) {
    std::string dir = kltest::make_temp_dir(name);
    for (const char *s : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
        kltest::write_file(dir + "/" + s, kltest::read_file(fixtures() + "sharded/" + s));
    kltest::write_file(dir + "/model.safetensors.index.json", index);
    return dir;
}

TEST(Safetensors, FolderIndexIsCheckedAgainstTheShards) {
    const std::string s1 = "\"model-00001-of-00002.safetensors\"", s2 = "\"model-00002-of-00002.safetensors\"";
    auto index = [&](const std::string &map) { return "{\"metadata\":{},\"weight_map\":{" + map + "}}"; };
    const std::string all = "\"model.embed_tokens.weight\":" + s1 + ",\"model.layers.0.input_layernorm.weight\":" + s1 +
                            ",\"model.layers.0.mlp.up_proj.weight\":" + s2 + ",\"model.norm.weight\":" + s2;
    struct Case {
        std::string index, message;
    } cases[] = {
        {index(all), ""}, /* the valid control */
        {index(all + ",\"extra\":\"model-00003-of-00003.safetensors\""), "does not exist"},
        {index(all + ",\"ghost\":" + s1), "has no such tensor"},
        {index("\"model.embed_tokens.weight\":" + s2 + ",\"model.layers.0.input_layernorm.weight\":" + s1 +
               ",\"model.layers.0.mlp.up_proj.weight\":" + s2 + ",\"model.norm.weight\":" + s2),
         "has no such tensor"},
        {index("\"model.embed_tokens.weight\":" + s1 + ",\"model.layers.0.mlp.up_proj.weight\":" + s2 +
               ",\"model.norm.weight\":" + s2),
         "does not list"},
        {index(all + ",\"model.norm.weight\":" + s2), "appears twice in the weight_map"},
        {index("\"x\":\"../f32.safetensors\""), "must be a file name inside the folder"},
        {index("\"x\":\"/etc/passwd\""), "must be a file name inside the folder"},
        {index("\"x\":7"), "must be a file name inside the folder"},
        {index(""), "weight_map is empty"},
        {"{\"weight_map\":[]}", "\"weight_map\" object"},
        {"[1,2]", "\"weight_map\" object"},
        {"{\"weight_map\":{", "\"weight_map\" object"},
    };
    int i = 0;
    for (auto &c : cases) {
        std::string dir = sharded_copy(("stidx" + std::to_string(i++)).c_str(), c.index);
        kl_st_dir d;
        kl_status st = kl_st_dir_open(&d, dir.c_str());
        if (c.message.empty()) {
            EXPECT_EQ(st, KL_OK) << kl_last_error();
            EXPECT_EQ(d.n, 4);
            kl_st_dir_close(&d);
            continue;
        }
        EXPECT_NE(st, KL_OK) << "accepted an index that should fail with: " << c.message;
        EXPECT_NE(std::string(kl_last_error()).find(c.message), std::string::npos)
            << "got: " << kl_last_error() << "\nwant: " << c.message;
        EXPECT_EQ(d.n, 0);
        EXPECT_EQ(d.files, nullptr) << "a failed open leaves nothing to close";
    }
    /* a shard that is itself corrupt is reported as such */
    std::string dir = sharded_copy("stidx_corrupt", index(all));
    kltest::write_file(dir + "/model-00002-of-00002.safetensors", std::string("\x04\0\0\0\0\0\0\0{}", 10));
    kl_st_dir d;
    EXPECT_EQ(kl_st_dir_open(&d, dir.c_str()), KL_ERR_INVALID);
    EXPECT_NE(std::string(kl_last_error()).find("model-00002-of-00002.safetensors: header length"), std::string::npos)
        << kl_last_error();
    EXPECT_EQ(kl_st_dir_open(&d, kltest::make_temp_dir("st_empty").c_str()), KL_ERR_IO);
    EXPECT_NE(std::string(kl_last_error()).find("neither model.safetensors nor"), std::string::npos) << kl_last_error();
}

/* bfloat16 nearest to x, ties to even, computed independently of the library: of the two bf16 values
 * around x (truncation and the next code up) take the closer one in double arithmetic. */
static uint16_t reference_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    if ((u & 0xffff) == 0) return lo;
    float flo, fhi;
    uint32_t a = (uint32_t)lo << 16, b = (uint32_t)hi << 16;
    memcpy(&flo, &a, 4);
    memcpy(&fhi, &b, 4);
    const double dl = std::fabs((double)x - flo), dh = std::isinf(fhi) ? std::ldexp(1.0, 128) - std::fabs((double)x)
                                                                         : std::fabs((double)fhi - x);
    if (dl != dh) return dl < dh ? lo : hi;
    return (lo & 1) ? hi : lo;
}

TEST(Safetensors, WriterRoundTripsF32ExactlyAndBf16ToNearestEven) {
    uint64_t seed = kltest::fresh_seed("safetensors roundtrip");
    std::vector<float> a = kltest::random_normal(6 * 13, 3.0f, seed), b = kltest::random_normal(40, 1.0f, seed + 1);
    /* edge values for the BF16 rounding: signed zero, subnormals, the largest finite, overflow to Inf */
    const float edges[] = {0.0f, -0.0f, 1e-40f, -3e-39f, 3.3895314e38f, 3.4028235e38f, INFINITY, -INFINITY,
                           1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8)};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) b[i] = edges[i];
    std::string dir = kltest::make_temp_dir("st");
    std::string path = dir + "/rt.safetensors";
    kl_st_writer *w;
    ASSERT_EQ(kl_st_writer_new(&w), KL_OK);
    int64_t sa[2] = {6, 13}, sb[1] = {40}, sz[3] = {2, 0, 5};
    ASSERT_EQ(kl_st_writer_add(w, "x.weight", KL_ST_F32, 2, sa, a.data()), KL_OK);
    ASSERT_EQ(kl_st_writer_add(w, "y", KL_ST_BF16, 1, sb, b.data()), KL_OK);
    ASSERT_EQ(kl_st_writer_add(w, "empty", KL_ST_F32, 3, sz, nullptr), KL_OK) << "zero elements need no data";
    ASSERT_EQ(kl_st_writer_add(w, "s", KL_ST_F32, 0, nullptr, &a[5]), KL_OK);
    ASSERT_EQ(kl_st_writer_metadata(w, "note", "caf\xc3\xa9 \"quoted\""), KL_OK);
    ASSERT_EQ(kl_st_write(w, path.c_str()), KL_OK) << kl_last_error();
    kl_st_writer_free(w);
    std::string bytes = kltest::read_file(path);
    uint64_t hlen;
    memcpy(&hlen, bytes.data(), 8);
    EXPECT_EQ(hlen % 8, 0u) << "data must start 8-byte aligned";
    EXPECT_EQ(list_dir(dir), std::set<std::string>{"rt.safetensors"}) << "no temporary file may be left behind";

    kl_st_file f;
    ASSERT_EQ(kl_st_open(&f, path.c_str()), KL_OK) << kl_last_error();
    EXPECT_EQ(f.n, 4);
    EXPECT_STREQ(kl_st_metadata(&f, "format"), "pt");
    EXPECT_STREQ(kl_st_metadata(&f, "note"), "caf\xc3\xa9 \"quoted\"");
    std::vector<float> ra(a.size()), rb(b.size());
    ASSERT_EQ(kl_st_read_f32(kl_st_find(&f, "x.weight"), ra.data(), (int64_t)ra.size(), "rt"), KL_OK);
    EXPECT_EQ(ra, a);
    const kl_st_tensor *y = kl_st_find(&f, "y");
    ASSERT_EQ(y->dtype, KL_ST_BF16);
    for (size_t i = 0; i < b.size(); i++) {
        uint16_t got = (uint16_t)(y->data[2 * i] | y->data[2 * i + 1] << 8);
        ASSERT_EQ(got, reference_bf16(b[i])) << "element " << i << " = " << b[i];
    }
    const kl_st_tensor *e = kl_st_find(&f, "empty"), *s = kl_st_find(&f, "s");
    ASSERT_TRUE(e && s);
    EXPECT_EQ(e->numel, 0);
    EXPECT_EQ(e->ndim, 3);
    EXPECT_EQ(s->ndim, 0);
    float sv;
    ASSERT_EQ(kl_st_read_f32(s, &sv, 1, "rt"), KL_OK);
    EXPECT_EQ(sv, a[5]);
    kl_st_close(&f);
}

TEST(Safetensors, WriterShardsAtTheLimitAndReplacesTheOtherLayout) {
    uint64_t seed = kltest::fresh_seed("safetensors shards");
    std::mt19937_64 rng(seed);
    /* 9 tensors of random sizes; a limit of 600 bytes forces several shards and one oversized tensor */
    std::vector<std::vector<float>> data;
    std::vector<int64_t> rows;
    kl_st_writer *w;
    ASSERT_EQ(kl_st_writer_new(&w), KL_OK);
    for (int i = 0; i < 9; i++) {
        rows.push_back(i == 4 ? 300 : 1 + (int64_t)(rng() % 40));
        data.push_back(kltest::random_normal((size_t)rows.back() * 2, 1.0f, seed + 10 + i));
    }
    for (int i = 0; i < 9; i++) {
        int64_t shape[2] = {rows[i], 2};
        std::string name = "layer." + std::to_string(8 - i) + ".w";
        ASSERT_EQ(kl_st_writer_add(w, name.c_str(), i % 2 ? KL_ST_BF16 : KL_ST_F32, 2, shape, data[i].data()), KL_OK);
    }
    std::string dir = kltest::make_temp_dir("st_shards");
    kltest::write_file(dir + "/model.safetensors", "stale");
    const uint64_t limit = 600;
    ASSERT_EQ(kl_st_write_dir(w, dir.c_str(), limit), KL_OK) << kl_last_error();
    EXPECT_FALSE(exists(dir + "/model.safetensors")) << "a stale single file would shadow the new shards";

    /* recompute the greedy plan independently and compare with what is on disk */
    std::vector<int> plan;
    uint64_t in = 0;
    int k = 0;
    for (int i = 0; i < 9; i++) {
        uint64_t bytes = (uint64_t)rows[i] * 2 * (i % 2 ? 2 : 4);
        if (in > 0 && in + bytes > limit) k++, in = 0;
        plan.push_back(k);
        in += bytes;
    }
    const int nshards = k + 1;
    ASSERT_GT(nshards, 2);
    std::set<std::string> want_files{"model.safetensors.index.json"};
    for (int j = 0; j < nshards; j++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", j + 1, nshards);
        want_files.insert(name);
    }
    EXPECT_EQ(list_dir(dir), want_files);
    kl_st_dir d;
    ASSERT_EQ(kl_st_dir_open(&d, dir.c_str()), KL_OK) << kl_last_error();
    EXPECT_EQ(d.sharded, 1);
    EXPECT_EQ(d.nfiles, nshards);
    ASSERT_EQ(d.n, 9);
    for (int i = 0; i < 9; i++) {
        std::string name = "layer." + std::to_string(8 - i) + ".w";
        char want[64];
        snprintf(want, sizeof want, "/model-%05d-of-%05d.safetensors", plan[i] + 1, nshards);
        std::string where = kl_st_dir_file_of(&d, name.c_str());
        EXPECT_EQ(where, dir + want) << name;
        const kl_st_tensor *t = kl_st_dir_find(&d, name.c_str());
        ASSERT_NE(t, nullptr);
        std::vector<float> back(data[i].size());
        ASSERT_EQ(kl_st_read_f32(t, back.data(), (int64_t)back.size(), "shards"), KL_OK);
        for (size_t j = 0; j < back.size(); j++) {
            float want_v = data[i][j];
            if (i % 2) want_v = kl_bf16_to_f32(reference_bf16(want_v));
            ASSERT_EQ(back[j], want_v) << name << "[" << j << "]";
        }
    }
    kl_st_dir_close(&d);
    std::string index = kltest::read_file(dir + "/model.safetensors.index.json");
    uint64_t total = 0;
    for (int i = 0; i < 9; i++) total += (uint64_t)rows[i] * 2 * (i % 2 ? 2 : 4);
    EXPECT_NE(index.find("\"total_size\":" + std::to_string(total)), std::string::npos) << index;

    /* without a limit: one model.safetensors, and the index of the sharded save is gone */
    ASSERT_EQ(kl_st_write_dir(w, dir.c_str(), 0), KL_OK) << kl_last_error();
    EXPECT_TRUE(exists(dir + "/model.safetensors"));
    EXPECT_FALSE(exists(dir + "/model.safetensors.index.json"));
    ASSERT_EQ(kl_st_dir_open(&d, dir.c_str()), KL_OK) << kl_last_error();
    EXPECT_EQ(d.sharded, 0);
    EXPECT_EQ(d.n, 9);
    kl_st_dir_close(&d);
    kl_st_writer_free(w);
}

TEST(Safetensors, WriterRefusesWhatItCannotWriteFaithfully) {
    kl_st_writer *w;
    ASSERT_EQ(kl_st_writer_new(&w), KL_OK);
    float x[4] = {1, 2, 3, 4};
    int64_t s2[1] = {2}, neg[1] = {-1};
    int64_t many[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    EXPECT_EQ(kl_st_writer_add(w, "a", KL_ST_F16, 1, s2, x), KL_ERR_INVALID);
    EXPECT_NE(std::string(kl_last_error()).find("only F32 and BF16"), std::string::npos) << kl_last_error();
    EXPECT_EQ(kl_st_writer_add(w, "a", KL_ST_F32, 1, neg, x), KL_ERR_INVALID);
    EXPECT_EQ(kl_st_writer_add(w, "a", KL_ST_F32, 9, many, x), KL_ERR_INVALID);
    EXPECT_EQ(kl_st_writer_add(w, "__metadata__", KL_ST_F32, 1, s2, x), KL_ERR_INVALID);
    EXPECT_EQ(kl_st_writer_add(w, "", KL_ST_F32, 1, s2, x), KL_ERR_INVALID);
    EXPECT_EQ(kl_st_writer_add(w, "bad\xff", KL_ST_F32, 1, s2, x), KL_ERR_INVALID) << "names must be UTF-8";
    EXPECT_EQ(kl_st_writer_add(w, "a", KL_ST_F32, 1, s2, nullptr), KL_ERR_INVALID);
    EXPECT_EQ(kl_st_writer_metadata(w, "k", "\xc0\x80"), KL_ERR_INVALID) << "overlong NUL is not UTF-8";
    ASSERT_EQ(kl_st_writer_add(w, "a", KL_ST_F32, 1, s2, x), KL_OK);
    ASSERT_EQ(kl_st_writer_add(w, "a", KL_ST_F32, 1, s2, x + 2), KL_OK);
    std::string dir = kltest::make_temp_dir("st_refuse");
    EXPECT_EQ(kl_st_write(w, (dir + "/dup.safetensors").c_str()), KL_ERR_INVALID);
    EXPECT_NE(std::string(kl_last_error()).find("'a' was added twice"), std::string::npos) << kl_last_error();
    EXPECT_TRUE(list_dir(dir).empty()) << "a refused write leaves nothing behind";
    kl_st_writer_free(w);

    ASSERT_EQ(kl_st_writer_new(&w), KL_OK);
    ASSERT_EQ(kl_st_writer_add(w, "a", KL_ST_F32, 1, s2, x), KL_OK);
    EXPECT_EQ(kl_st_write(w, "/nonexistent-dir/x/m.safetensors"), KL_ERR_IO);
    EXPECT_NE(std::string(kl_last_error()).find("/nonexistent-dir/x/m.safetensors"), std::string::npos)
        << kl_last_error();
    kl_st_writer_free(w);
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
        if (want == 0) {
            ASSERT_EQ(std::signbit(got), (bool)(h >> 15)) << "signed zero " << c;
        }
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
    /* a NaN whose payload sits only in the low 16 bits must stay NaN, not become Inf */
    uint32_t nan_low = 0x7f800001u;
    float fn;
    memcpy(&fn, &nan_low, 4);
    EXPECT_TRUE(std::isnan(kl_bf16_to_f32(kl_f32_to_bf16(fn))));
}

static std::string file_with_header(const std::string &header, size_t data_bytes, uint64_t hlen_override = 0) {
    std::string s(8, '\0');
    uint64_t n = hlen_override ? hlen_override : header.size();
    memcpy(&s[0], &n, 8);
    return s + header + std::string(data_bytes, '\x01');
}

TEST(Safetensors, HostileHeadersAreRefusedWithSpecificMessages) {
    const std::string ok = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    auto one = [](const std::string &entry) { return "{\"t\":" + entry + "}"; };
    struct Case {
        std::string file, message;
    } cases[] = {
        {file_with_header(ok, 8), ""}, /* the valid control: must parse */
        {file_with_header(R"({"__metadata__":{"format":"pt"},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} )", 8), ""},
        {std::string("\x05\0\0", 3), "too short"},
        {file_with_header(ok, 8, 1ull << 40), "header length 1099511627776 is impossible"},
        {file_with_header(ok, 8, 0xffffffffffffffffull), "header length"},
        {file_with_header(ok, 8, ok.size() + 9), "header length"},        /* runs past the end of the file */
        {file_with_header("{}", 0, 1), "header length 1"},
        {file_with_header("[1,2,3]", 0), "not a JSON object"},
        {file_with_header("{\"t\":", 0), "not a JSON object"},             /* truncated JSON */
        {file_with_header("\"just a string\"", 0), "not a JSON object"},
        {file_with_header("{\"t\xff\":{}}", 0), "not valid UTF-8 (byte 3)"},
        {file_with_header("{\"\xed\xa0\x80\":{}}", 0), "not valid UTF-8"}, /* an encoded surrogate */
        {file_with_header(std::string("{\"t\0\":{}}", 9), 0), "control byte 0x00 at byte 3"},
        {file_with_header(R"({"t\u0000x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8), "escaped NUL"},
        {file_with_header(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,16]})"), 8), "outside the 8 data bytes"},
        {file_with_header(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), 8), "shape x F32 size = 12 bytes"},
        {file_with_header(one(R"({"dtype":"BF16","shape":[3],"data_offsets":[0,8]})"), 8), "shape x BF16 size = 6 bytes"},
        {file_with_header(one(R"({"dtype":"Q4","shape":[2],"data_offsets":[0,8]})"), 8), "unknown or unsupported dtype 'Q4'"},
        {file_with_header(one(R"({"dtype":"F4","shape":[16],"data_offsets":[0,8]})"), 8), "unsupported dtype 'F4'"},
        {file_with_header(one(R"({"dtype":32,"shape":[2],"data_offsets":[0,8]})"), 8), "no string 'dtype'"},
        {file_with_header(one(R"({"dtype":"F32","data_offsets":[0,8]})"), 8), "no 'shape' list"},
        {file_with_header(one(R"({"dtype":"F32","shape":[2]})"), 8), "needs 'data_offsets'"},
        {file_with_header(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"), 8), "needs 'data_offsets'"},
        {file_with_header(one(R"({"dtype":"F32","shape":[2],"data_offsets":["0","8"]})"), 8), "needs 'data_offsets'"},
        {file_with_header(one(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"), 8), "needs 'data_offsets'"},
        {file_with_header(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), 8), "shape[0] is not a non-negative"},
        {file_with_header(one(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,8]})"), 8), "shape[0] is not a non-negative"},
        {file_with_header(one(R"({"dtype":"F32","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,8]})"), 8), "9 dimensions"},
        {file_with_header(one(R"({"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]})"), 8), "overflows"},
        {file_with_header(one(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), 8), "outside the"},
        {file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "(overlap)"},
        {file_with_header(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), 8), "(gap)"},
        {file_with_header(ok, 12), "4 bytes of data follow the last tensor"},
        {file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"t":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})", 8), "'t' appears twice"},
        {file_with_header(R"({"t":7})", 0), "'t' is not a JSON object"},
        {file_with_header(R"({"__metadata__":[1],"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8), "'__metadata__' must be an object"},
        {file_with_header(R"({"__metadata__":{"n":1},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8), "'n' is not a string"},
        {file_with_header(R"({"__metadata__":{"a":"1","a":"2"},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8), "metadata key 'a' appears twice"},
        {file_with_header(R"({"__metadata__":{},"__metadata__":{},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8), "'__metadata__' appears twice"},
    };
    for (auto &c : cases) {
        kl_st_file f;
        kl_clear_error();
        kl_status st = parse_exact(c.file, &f);
        if (c.message.empty()) {
            EXPECT_EQ(st, KL_OK) << kl_last_error();
            continue;
        }
        EXPECT_EQ(st, KL_ERR_INVALID) << "accepted a file that should fail with: " << c.message;
        EXPECT_NE(std::string(kl_last_error()).find(c.message), std::string::npos)
            << "got: " << kl_last_error() << "\nwant: " << c.message;
        EXPECT_NE(std::string(kl_last_error()).find("hostile"), std::string::npos) << "the message names the file";
    }
    kl_st_file f;
    EXPECT_EQ(kl_st_open(&f, "/nonexistent.safetensors"), KL_ERR_IO);
    std::string dir = kltest::make_temp_dir("st_hostile");
    kltest::write_file(dir + "/empty.safetensors", "");
    EXPECT_EQ(kl_st_open(&f, (dir + "/empty.safetensors").c_str()), KL_ERR_INVALID);
    EXPECT_NE(std::string(kl_last_error()).find("empty.safetensors: 0 bytes is too short"), std::string::npos)
        << kl_last_error();
    EXPECT_EQ(kl_st_open(&f, dir.c_str()), KL_ERR_IO) << "a folder is not a file";
}

TEST(Safetensors, EveryTruncationAndRandomCorruptionIsRefusedOrStaysInBounds) {
    const std::string good = kltest::read_file(fixtures() + "f32.safetensors");
    kl_st_file f;
    ASSERT_EQ(parse_exact(good, &f), KL_OK) << kl_last_error();
    for (size_t n = 0; n < good.size(); n++) ASSERT_EQ(parse_exact(good.substr(0, n), &f), KL_ERR_INVALID) << n;
    /* random byte changes in the header: whatever the parser accepts must lie inside the buffer, which
     * parse_exact checks (and ASan enforces in the sanitizer build) */
    uint64_t seed = kltest::fresh_seed("safetensors corruption");
    std::mt19937_64 rng(seed);
    uint64_t hlen;
    memcpy(&hlen, good.data(), 8);
    for (int trial = 0; trial < 3000; trial++) {
        std::string bad = good;
        const int edits = 1 + (int)(rng() % 3);
        for (int e = 0; e < edits; e++) {
            size_t at = rng() % (8 + hlen);
            const char digits[] = "0123456789,[]{}\":-";
            bad[at] = rng() % 2 ? digits[rng() % (sizeof digits - 1)] : (char)(rng() & 0xff);
        }
        parse_exact(bad, &f);
        if (::testing::Test::HasFailure()) FAIL() << "trial " << trial << ", seed " << seed;
    }
}
