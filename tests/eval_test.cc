/* eval_test.cc — `kiln eval` end to end on small random models (mean loss, perplexity and bits per token
 * against an independent log-softmax over the model's logits; bits per byte from byte-level vocabularies
 * and byte-level BPE tokenizer.json files; --batches; the .npy dumps; which model it picks; errors), and
 * kl_model_load on a sharded folder (model.safetensors.index.json). */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "test_util.h"

extern "C" {
#include "hf_config.h"
#include "hf_names.h"
#include "model.h"
#include "model_io.h"
#include "safetensors.h"
#include "tokfile.h"
}

namespace {

kl_model_shape small_shape(int V) {
    kl_model_shape s;
    memset(&s, 0, sizeof s);
    s.arch = KL_ARCH_LLAMA;
    s.V = V;
    s.C = 32;
    s.F = 48;
    s.L = 2;
    s.NH = 4;
    s.NKV = 2;
    s.max_T = 64;
    s.rope_theta = 10000.0;
    s.norm_eps = 1e-5f;
    s.tie_embeddings = 0;
    return s;
}

/* mkdir -p */
void make_dirs(const std::string &path) {
    for (size_t p = path.find('/', 1); p != std::string::npos; p = path.find('/', p + 1))
        mkdir(path.substr(0, p).c_str(), 0755);
    mkdir(path.c_str(), 0755);
}

/* A random model of shape s saved as dir/config.json + dir/model.safetensors. std 0.2 makes the
 * logits spread (a loss well away from ln V), so a mistake in what is averaged shows. */
void save_random_model(const kl_model_shape &s, const std::string &dir, uint64_t seed) {
    make_dirs(dir);
    kl_model *m = nullptr;
    ASSERT_EQ(kl_model_create(&m, &s), KL_OK) << kl_last_error();
    kl_model_init_weights(m, seed, 0.2f);
    ASSERT_EQ(kl_model_save(m, dir.c_str()), KL_OK) << kl_last_error();
    kl_model_free(m);
}

std::vector<int32_t> random_tokens(size_t n, int V, uint64_t seed) {
    std::vector<float> u = kltest::random_uniform(n, 0.0f, (float)V, seed);
    std::vector<int32_t> t(n);
    for (size_t i = 0; i < n; i++) t[i] = std::min(V - 1, (int)u[i]);
    return t;
}

void write_tokens(const std::string &path, const std::vector<int32_t> &t, int V) {
    ASSERT_EQ(kl_tokfile_write(path.c_str(), t.data(), (int64_t)t.size(), V, nullptr), KL_OK) << kl_last_error();
}

/* A number field of the JSON line; NaN when absent or null. */
double json_number(const std::string &out, const char *key) {
    const std::string k = std::string("\"") + key + "\":";
    size_t p = out.rfind(k);
    if (p == std::string::npos || out.compare(p + k.size(), 4, "null") == 0) return NAN;
    return strtod(out.c_str() + p + k.size(), nullptr);
}

/* Expected result of kiln eval over samples [0, n_samples) of `tokens` (sample c = tokens [cT, cT+T]):
 * sum of -log softmax(logits)[target] in double from kl_model_logits_at, one sequence at a time. */
double reference_loss_sum(const std::string &dir, const std::vector<int32_t> &tokens, int T, int n_samples) {
    kl_model *m = nullptr;
    EXPECT_EQ(kl_model_load(&m, dir.c_str()), KL_OK) << kl_last_error();
    if (!m) return NAN;
    const int V = kl_model_get_shape(m)->V;
    std::vector<float> logits(V);
    double sum = 0;
    for (int c = 0; c < n_samples; c++) {
        const int32_t *seq = tokens.data() + (size_t)c * T;
        EXPECT_EQ(kl_model_forward(m, seq, 1, T), KL_OK);
        for (int t = 0; t < T; t++) {
            EXPECT_EQ(kl_model_logits_at(m, 0, t, logits.data()), KL_OK);
            double mx = -INFINITY, z = 0;
            for (float x : logits) mx = std::max(mx, (double)x);
            for (float x : logits) z += std::exp((double)x - mx);
            sum += mx + std::log(z) - (double)logits[seq[t + 1]];
        }
    }
    kl_model_free(m);
    return sum;
}

std::string q(const std::string &s) { return "'" + s + "'"; }

}  // namespace

TEST(Eval, MeanLossPerplexityAndBitsMatchAnIndependentLogSoftmax) {
    const uint64_t seed = kltest::fresh_seed("Eval.MeanLoss");
    const std::string dir = kltest::make_temp_dir("eval_loss");
    const int V = 61, T = 16; /* batch 3 */
    save_random_model(small_shape(V), dir + "/model", seed);
    /* 7 whole samples (7*16+1 tokens) and a few spare tokens that make no sample: with B = 3 the last
     * batch holds one real row and two padding rows, which must not count */
    std::vector<int32_t> tok = random_tokens(7 * T + 1 + 5, V, seed + 1);
    write_tokens(dir + "/eval.bin", tok, V);
    std::string out;
    int rc = kltest::run_kiln("eval --model " + q(dir + "/model") + " --data " + q(dir + "/eval.bin") +
                                  " data.seq_len=16 train.batch_size=3",
                              &out);
    ASSERT_EQ(rc, 0) << out;
    const double want = reference_loss_sum(dir + "/model", tok, T, 7) / (7.0 * T);
    /* FP32 logits, summed in float inside the loss kernel over 16 x 3 rows and in double here: 1e-5
     * relative is ~100x the rounding of such sums and far below any change of which targets count */
    EXPECT_NEAR(json_number(out, "loss"), want, 1e-5 * want) << out;
    EXPECT_EQ(json_number(out, "tokens"), 7.0 * T);
    EXPECT_EQ(json_number(out, "batches"), 3.0);
    const double loss = json_number(out, "loss");
    EXPECT_NEAR(json_number(out, "perplexity"), std::exp(loss), 1e-12 * std::exp(loss)); /* printed exactly */
    EXPECT_NEAR(json_number(out, "bits_per_token"), loss / std::log(2.0), 1e-12);
    EXPECT_TRUE(std::isnan(json_number(out, "bits_per_byte"))) << "no tokenizer: bits per byte is null\n" << out;
    EXPECT_NE(out.find("perplexity"), std::string::npos);
    EXPECT_NE(out.find("bits per byte    n/a"), std::string::npos) << out;
}

TEST(Eval, BatchesOptionEvaluatesOnlyTheFirstBatches) {
    const uint64_t seed = kltest::fresh_seed("Eval.Batches");
    const std::string dir = kltest::make_temp_dir("eval_batches");
    const int V = 40, T = 8;
    save_random_model(small_shape(V), dir + "/model", seed);
    std::vector<int32_t> tok = random_tokens(10 * T + 1, V, seed + 1);
    write_tokens(dir + "/eval.bin", tok, V);
    std::string out;
    ASSERT_EQ(kltest::run_kiln("eval --model " + q(dir + "/model") + " --data " + q(dir + "/eval.bin") +
                                   " data.seq_len=8 train.batch_size=2 --batches 2 --quiet",
                               &out),
              0)
        << out;
    EXPECT_EQ(json_number(out, "tokens"), 4.0 * T);
    const double want = reference_loss_sum(dir + "/model", tok, T, 4) / (4.0 * T);
    EXPECT_NEAR(json_number(out, "loss"), want, 1e-5 * want) << out; /* as above */
    EXPECT_EQ(out.find("perplexity  "), std::string::npos) << "--quiet prints only the JSON line\n" << out;

    /* more batches than one pass: one pass */
    ASSERT_EQ(kltest::run_kiln("eval --model " + q(dir + "/model") + " --data " + q(dir + "/eval.bin") +
                                   " data.seq_len=8 train.batch_size=2 --batches 99 --quiet",
                               &out),
              0)
        << out;
    EXPECT_EQ(json_number(out, "tokens"), 10.0 * T);
    EXPECT_EQ(json_number(out, "batches"), 5.0);
}

TEST(Eval, ByteLevelVocabularyGivesBitsPerByte) {
    const uint64_t seed = kltest::fresh_seed("Eval.ByteLevel");
    const std::string dir = kltest::make_temp_dir("eval_bytes");
    const int T = 8;
    save_random_model(small_shape(257), dir + "/model", seed);
    std::vector<int32_t> tok = random_tokens(6 * T + 1, 257, seed + 1);
    tok[5] = tok[20] = 256; /* surely some end-of-document targets */
    int64_t bytes = 0;
    for (size_t i = 1; i < tok.size(); i++) bytes += tok[i] < 256; /* id 256 is the end of a document */
    write_tokens(dir + "/eval.bin", tok, 257);
    std::string out;
    ASSERT_EQ(kltest::run_kiln("eval --model " + q(dir + "/model") + " --data " + q(dir + "/eval.bin") +
                                   " data.seq_len=8 train.batch_size=2 --quiet",
                               &out),
              0)
        << out;
    EXPECT_EQ(json_number(out, "bytes"), (double)bytes);
    const double loss = json_number(out, "loss"), n = json_number(out, "tokens");
    EXPECT_NEAR(json_number(out, "bits_per_byte"), loss * n / std::log(2.0) / (double)bytes, 1e-9) << out;
}

/* A byte-level BPE tokenizer.json over an 8-token vocabulary: strings in GPT-2's byte alphabet
 * ("Ġ" = space, "Ċ" = newline, "Ã©" = the two bytes of "é"), one special and one plain added token. */
static const char *k_tokenizer = R"({
  "version": "1.0",
  "added_tokens": [
    {"id": 0, "content": "<|endoftext|>", "special": true},
    {"id": 7, "content": "kiln", "special": false}
  ],
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "merges": [],
            "vocab": {"<|endoftext|>": 0, "a": 1, "Ġthe": 2, "Ċ": 3, "ĠĠ": 4, "Ã©": 5, "!": 6, "kiln": 7}}
})";
static const int k_token_bytes[8] = {0, 1, 4, 1, 2, 2, 1, 4};

TEST(Eval, BitsPerByteCountsEachTargetsBytesFromTokenizerJson) {
    const uint64_t seed = kltest::fresh_seed("Eval.Tokenizer");
    const std::string dir = kltest::make_temp_dir("eval_tokenizer");
    const int V = 8, T = 8;
    save_random_model(small_shape(V), dir + "/model", seed);
    kltest::write_file(dir + "/model/tokenizer.json", k_tokenizer);
    std::vector<int32_t> tok = random_tokens(5 * T + 1, V, seed + 1);
    int64_t bytes = 0;
    for (size_t i = 1; i < tok.size(); i++) bytes += k_token_bytes[tok[i]];
    write_tokens(dir + "/eval.bin", tok, V);
    std::string out;
    const std::string base = "eval --model " + q(dir + "/model") + " --data " + q(dir + "/eval.bin") +
                             " data.seq_len=8 train.batch_size=2";
    /* the model folder's tokenizer.json is found by itself */
    ASSERT_EQ(kltest::run_kiln(base, &out), 0) << out;
    EXPECT_EQ(json_number(out, "bytes"), (double)bytes) << out;
    const double loss = json_number(out, "loss"), n = json_number(out, "tokens");
    EXPECT_NEAR(json_number(out, "bits_per_byte"), loss * n / std::log(2.0) / (double)bytes, 1e-9) << out;
    EXPECT_NE(out.find("bits per byte"), std::string::npos);

    /* a tokenizer that does not know an id the data holds */
    std::string small = k_tokenizer;
    const std::string added7 = ",\n    {\"id\": 7, \"content\": \"kiln\", \"special\": false}", vocab7 = ", \"kiln\": 7";
    small.erase(small.find(added7), added7.size());
    small.erase(small.find(vocab7), vocab7.size());
    kltest::write_file(dir + "/small.json", small);
    std::vector<int32_t> with7(9, 7);
    write_tokens(dir + "/sevens.bin", with7, V);
    int rc = kltest::run_kiln("eval --model " + q(dir + "/model") + " --data " + q(dir + "/sevens.bin") +
                                  " --tokenizer " + q(dir + "/small.json") + " data.seq_len=8 train.batch_size=1",
                              &out);
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("has no token with id 7"), std::string::npos) << out;

    /* not byte-level: refused with the reason, not a wrong number */
    std::string wp = k_tokenizer;
    wp.replace(wp.find("\"type\": \"BPE\""), strlen("\"type\": \"BPE\""), "\"type\": \"WordPiece\"");
    kltest::write_file(dir + "/wordpiece.json", wp);
    rc = kltest::run_kiln(base + " --tokenizer " + q(dir + "/wordpiece.json"), &out);
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("byte-level BPE"), std::string::npos) << out;
}

/* The .npy header's shape and the data after it. */
static bool read_npy(const std::string &path, const char *descr, std::vector<int64_t> *shape, std::string *data) {
    std::string f = kltest::read_file(path);
    if (f.size() < 10 || f.compare(0, 6, "\x93NUMPY") != 0) return false;
    const size_t hlen = (unsigned char)f[8] | ((unsigned char)f[9] << 8);
    if ((10 + hlen) % 64 != 0 || f.size() < 10 + hlen) return false;
    std::string h = f.substr(10, hlen);
    if (h.find(std::string("'descr': '") + descr + "'") == std::string::npos) return false;
    if (h.find("'fortran_order': False") == std::string::npos || h.back() != '\n') return false;
    size_t p = h.find("'shape': (");
    if (p == std::string::npos) return false;
    const char *s = h.c_str() + p + 10;
    shape->clear();
    while (*s && *s != ')') {
        char *end;
        shape->push_back(strtoll(s, &end, 10));
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    *data = f.substr(10 + hlen);
    return true;
}

TEST(Eval, DumpsTheFirstBatchsLogitsAndInputsAsNpy) {
    const uint64_t seed = kltest::fresh_seed("Eval.Dump");
    const std::string dir = kltest::make_temp_dir("eval_dump");
    const int V = 37, T = 8, B = 2;
    save_random_model(small_shape(V), dir + "/model", seed);
    std::vector<int32_t> tok = random_tokens(4 * T + 1, V, seed + 1);
    write_tokens(dir + "/eval.bin", tok, V);
    std::string out;
    ASSERT_EQ(kltest::run_kiln("eval --model " + q(dir + "/model") + " --data " + q(dir + "/eval.bin") +
                                   " data.seq_len=8 train.batch_size=2 --batches 1 --dump-logits " +
                                   q(dir + "/logits.npy") + " --dump-inputs " + q(dir + "/inputs.npy"),
                               &out),
              0)
        << out;
    std::vector<int64_t> shape;
    std::string data;
    ASSERT_TRUE(read_npy(dir + "/inputs.npy", "<i4", &shape, &data));
    ASSERT_EQ(shape, (std::vector<int64_t>{B, T}));
    ASSERT_EQ(data.size(), (size_t)B * T * 4);
    EXPECT_EQ(memcmp(data.data(), tok.data(), data.size()), 0) << "eval reads samples 0 and 1 in file order";

    ASSERT_TRUE(read_npy(dir + "/logits.npy", "<f4", &shape, &data));
    ASSERT_EQ(shape, (std::vector<int64_t>{B, T, V}));
    ASSERT_EQ(data.size(), (size_t)B * T * V * 4);
    std::vector<float> got((size_t)B * T * V), want((size_t)B * T * V);
    memcpy(got.data(), data.data(), data.size());
    kl_model *m = nullptr;
    ASSERT_EQ(kl_model_load(&m, (dir + "/model").c_str()), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_model_forward(m, tok.data(), B, T), KL_OK);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) ASSERT_EQ(kl_model_logits_at(m, b, t, want.data() + ((size_t)b * T + t) * V), KL_OK);
    kl_model_free(m);
    /* the same model, inputs and code path: bit for bit */
    EXPECT_EQ(memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
}

TEST(Eval, PicksTheRunsModelElseModelHfDir) {
    const uint64_t seed = kltest::fresh_seed("Eval.Picks");
    const std::string dir = kltest::make_temp_dir("eval_pick");
    const int V = 50;
    save_random_model(small_shape(V), dir + "/base", seed);
    write_tokens(dir + "/eval.bin", random_tokens(4 * 8 + 1, V, seed + 1), V);
    write_tokens(dir + "/train.bin", random_tokens(4 * 8 + 1, V, seed + 2), V);
    kltest::write_file(dir + "/run.yaml", "model:\n  hf_dir: base\ndata:\n  train: train.bin\n  eval: eval.bin\n"
                                          "  seq_len: 8\ntrain:\n  name: r\n  out_dir: out\n  batch_size: 2\n");
    /* a byte-level tokenizer.json for the base folder: token i is "t<i>", 1 + its digits bytes */
    std::string tj = "{\"added_tokens\": [], \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": "
                     "\"BPE\", \"merges\": [], \"vocab\": {";
    for (int i = 0; i < V; i++) tj += (i ? ", \"t" : "\"t") + std::to_string(i) + "\": " + std::to_string(i);
    kltest::write_file(dir + "/base/tokenizer.json", tj + "}}}");
    std::string out;
    ASSERT_EQ(kltest::run_kiln("eval " + q(dir + "/run.yaml"), &out), 0) << out;
    EXPECT_NE(out.find("model.hf_dir; the run has no trained model yet"), std::string::npos) << out;
    const double base_loss = json_number(out, "loss"), base_bytes = json_number(out, "bytes");
    EXPECT_GT(base_bytes, json_number(out, "tokens")) << out; /* 2 or 3 bytes per token */

    save_random_model(small_shape(V), dir + "/out/model", seed + 3);
    ASSERT_EQ(kltest::run_kiln("eval " + q(dir + "/run.yaml"), &out), 0) << out;
    EXPECT_NE(out.find("the run's trained model"), std::string::npos) << out;
    EXPECT_NE(json_number(out, "loss"), base_loss) << "a different model (other random weights)";
    EXPECT_EQ(json_number(out, "bytes"), base_bytes) << "the run's model uses model.hf_dir's tokenizer\n" << out;

    /* --model wins over both */
    ASSERT_EQ(kltest::run_kiln("eval " + q(dir + "/run.yaml") + " --model " + q(dir + "/base"), &out), 0) << out;
    EXPECT_EQ(json_number(out, "loss"), base_loss) << out;

    /* no run model and no hf_dir: a usage error that says what to do */
    kltest::write_file(dir + "/scratch.yaml", "model:\n  vocab_size: 50\n  hidden_size: 32\n  num_layers: 1\n"
                                              "  num_heads: 4\ndata:\n  train: train.bin\n  eval: eval.bin\n"
                                              "  seq_len: 8\ntrain:\n  name: s\n  out_dir: nothing\n");
    EXPECT_EQ(kltest::run_kiln("eval " + q(dir + "/scratch.yaml"), &out), 2) << out;
    EXPECT_NE(out.find("train first"), std::string::npos) << out;
    EXPECT_EQ(kltest::run_kiln("eval --model " + q(dir + "/base"), &out), 2) << "no data" << out;
    EXPECT_EQ(kltest::run_kiln("eval " + q(dir + "/run.yaml") + " --batches 0", &out), 2) << out;
}

/* ---- sharded folders ---------------------------------------------------------------------------- */

/* Writes m's weights with HF names as a sharded folder (shards of at most max_bytes), config.json too.
 * `skip` names a tensor to leave out (nullptr: none). */
static void save_sharded(kl_model *m, const std::string &dir, uint64_t max_bytes, const char *skip) {
    make_dirs(dir);
    const kl_model_shape *s = kl_model_get_shape(m);
    char *cfg = kl_hf_config_json(s);
    ASSERT_NE(cfg, nullptr);
    kltest::write_file(dir + "/config.json", cfg);
    free(cfg);
    kl_st_writer *w = nullptr;
    ASSERT_EQ(kl_st_writer_new(&w), KL_OK);
    const float *params = kl_model_params(m);
    for (int i = 0; i < kl_model_num_param_tensors(m); i++) {
        const kl_param_info *p = kl_model_param_info(m, i);
        kl_hf_part parts[3];
        const int n = kl_hf_parts(s, p, parts);
        for (int k = 0; k < n; k++) {
            if (skip && strcmp(parts[k].name, skip) == 0) continue;
            const bool vec = parts[k].ndim == 1;
            int64_t shape[2] = {vec && n == 1 ? p->cols : parts[k].rows, p->cols};
            const float *data = params + p->offset + (size_t)parts[k].row0 * (vec ? 1 : (size_t)p->cols);
            ASSERT_EQ(kl_st_writer_add(w, parts[k].name, KL_ST_F32, vec ? 1 : 2, shape, data), KL_OK)
                << kl_last_error();
        }
    }
    ASSERT_EQ(kl_st_write_dir(w, dir.c_str(), max_bytes), KL_OK) << kl_last_error();
    kl_st_writer_free(w);
}

TEST(ModelLoad, ShardedFolderLoadsTheSameWeightsAsOneFile) {
    const uint64_t seed = kltest::fresh_seed("ModelLoad.Sharded");
    const std::string dir = kltest::make_temp_dir("load_sharded");
    kl_model_shape s = small_shape(45);
    s.arch = KL_ARCH_QWEN2; /* q/k/v biases too: vectors split across the fused row */
    s.qkv_bias = 1;
    kl_model *m = nullptr;
    ASSERT_EQ(kl_model_create(&m, &s), KL_OK) << kl_last_error();
    kl_model_init_weights(m, seed, 0.1f);
    std::vector<float> bias = kltest::random_normal(kl_model_num_params(m), 0.1f, seed + 1);
    for (int i = 0; i < kl_model_num_param_tensors(m); i++) { /* the init zeroes biases: make them random */
        const kl_param_info *p = kl_model_param_info(m, i);
        if (p->kind == KL_PARAM_BIAS) memcpy(kl_model_params(m) + p->offset, bias.data() + p->offset, p->numel * 4);
    }
    save_sharded(m, dir + "/sharded", 8 << 10, nullptr); /* 8 KiB shards: several files */
    EXPECT_NE(kltest::read_file(dir + "/sharded/model.safetensors.index.json").find("model-00002-of-"),
              std::string::npos);

    kl_model *back = nullptr;
    ASSERT_EQ(kl_model_load(&back, (dir + "/sharded").c_str()), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_model_num_params(back), kl_model_num_params(m));
    EXPECT_EQ(memcmp(kl_model_params(back), kl_model_params(m), kl_model_num_params(m) * sizeof(float)), 0);
    kl_model_free(back);

    /* a tensor missing from the shards is named */
    save_sharded(m, dir + "/missing", 8 << 10, "model.layers.1.mlp.down_proj.weight");
    EXPECT_NE(kl_model_load(&back, (dir + "/missing").c_str()), KL_OK);
    EXPECT_NE(std::string(kl_last_error()).find("missing tensors: model.layers.1.mlp.down_proj.weight"),
              std::string::npos)
        << kl_last_error();
    EXPECT_EQ(back, nullptr);
    kl_model_free(m);
}

/* precision.matmul applies to `kiln eval` as to training: the loss kiln eval reports for a run's model with
 * fp8 (or nvfp4) linear layers is the eval loss the training run itself logged over the same batches with
 * that precision (same weights, same deterministic forward: RTN quantization, no randomness), and it differs
 * from the plain FP32 (bf16 on the CPU) loss, so the setting is not ignored. */
TEST(Eval, HonoursPrecisionMatmulAsTheTrainingRunsEvaluationDoes) {
    const std::string d = kltest::make_temp_dir("eval_precision");
    const uint64_t seed = kltest::fresh_seed("Eval.Precision");
    write_tokens(d + "/train.bin", random_tokens(1200, 256, seed), 256);
    write_tokens(d + "/eval.bin", random_tokens(600, 256, seed + 1), 256); /* 18 samples of 33: 3 batches of 8 */
    const std::string tiny = kltest::kiln_source_dir() + "/configs/tiny.yaml";
    const std::string data =
        " data.source=files data.train=" + q(d + "/train.bin") + " data.eval=" + q(d + "/eval.bin");
    double loss[3];
    const char *modes[3] = {"fp8", "nvfp4", "bf16"};
    for (int i = 0; i < 3; i++) {
        std::string out;
        const std::string over = data + " precision.matmul=" + modes[i] + " train.name=" + modes[i];
        if (i < 2) { /* a training run per quantized mode, with its final evaluation over 2 batches */
            const std::string steps = " train.steps=3 train.warmup_steps=0 train.eval_every=0 train.eval_batches=2";
            ASSERT_EQ(kltest::run_kiln("train " + q(tiny) + over + steps, &out, d), 0) << out;
        }
        /* bf16 evaluates the fp8 run's model: the same weights, another precision */
        const std::string model = i < 2 ? "" : " --model " + q(d + "/runs/fp8/model");
        const std::string dump = i == 1 ? "" : " --dump-logits " + q(d + "/logits_" + modes[i] + ".npy");
        ASSERT_EQ(kltest::run_kiln("eval " + q(tiny) + over + model + dump + " --batches 2 --quiet", &out, d), 0)
            << out;
        loss[i] = json_number(out, "loss");
        ASSERT_TRUE(std::isfinite(loss[i])) << out;
        EXPECT_NE(out.find(std::string("\"matmul\":\"") + modes[i] + "\""), std::string::npos) << out;
        if (i < 2) {
            const std::string metrics = kltest::read_file(d + "/runs/" + modes[i] + "/metrics.jsonl");
            const size_t p = metrics.rfind("{\"type\":\"eval\"");
            ASSERT_NE(p, std::string::npos) << metrics;
            const double trained = strtod(metrics.c_str() + metrics.find("\"loss\":", p) + 7, nullptr);
            /* both are sums of the same per-token losses in the same order, divided by the same count; the
             * only difference allowed is the decimal printing of the two doubles */
            EXPECT_NEAR(loss[i], trained, 1e-12 * trained) << modes[i] << ": kiln eval vs the run's own evaluation";
        }
    }
    /* kiln eval of the fp8 run's model in bf16 (FP32 on the CPU) differs from its fp8 evaluation: FP8 E4M3
     * operands carry up to 2^-4 relative rounding, so the first batch's logits (8 x 32 x 256) must move by far
     * more than FP32 rounding (~1e-7 of their scale); 1e-4 of the largest logit is asked. The mean losses are
     * no test of this: their difference is a sum of signed per-token changes that can cancel (seed
     * 14205577875003780909 left 5.2e-6 of 5.57 nats). */
    std::vector<int64_t> shape;
    std::string lf, lb;
    ASSERT_TRUE(read_npy(d + "/logits_fp8.npy", "<f4", &shape, &lf));
    ASSERT_TRUE(read_npy(d + "/logits_bf16.npy", "<f4", &shape, &lb));
    ASSERT_EQ(lf.size(), lb.size());
    ASSERT_GT(lf.size(), 0u);
    std::vector<float> a(lf.size() / 4), b(lb.size() / 4);
    memcpy(a.data(), lf.data(), lf.size());
    memcpy(b.data(), lb.data(), lb.size());
    double moved = 0, scale = 0;
    for (size_t e = 0; e < a.size(); e++) {
        moved = std::max(moved, (double)std::fabs(a[e] - b[e]));
        scale = std::max(scale, (double)std::fabs(b[e]));
    }
    EXPECT_GT(moved, 1e-4 * scale) << "precision.matmul=fp8 made no difference to the logits";
    printf("[eval] fp8 vs bf16 logits: largest change %.3g of largest logit %.3g; mean losses %.9g vs %.9g\n", moved,
           scale, loss[0], loss[2]);
}
