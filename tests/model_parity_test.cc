/* model_parity_test.cc — the whole model against Hugging Face `transformers`: for tiny random models of
 * every supported architecture (fixtures from scripts/gen_parity_fixtures.py, computed in float64 by
 * transformers on the same float32 weights), kiln's FP32 logits, loss and every parameter gradient agree
 * to a relative error of 1e-5 (norm-wise per tensor). Also: 20 AdamW steps with gradient accumulation and
 * clipping follow torch.optim.AdamW's losses within 1e-4 relative. */
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "hf_config.h"
#include "model.h"
#include "trainer.h"
}

namespace {

template <typename T>
std::vector<T> load_bin(const std::string &path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    EXPECT_TRUE(f.good()) << "missing fixture " << path;
    std::vector<T> v((size_t)f.tellg() / sizeof(T));
    f.seekg(0);
    f.read(reinterpret_cast<char *>(v.data()), (std::streamsize)(v.size() * sizeof(T)));
    return v;
}

std::string fixture(const std::string &c, const std::string &f) {
    return kltest::kiln_source_dir() + "/tests/data/parity/" + c + "/" + f;
}

int read_meta_int(const std::string &path, const char *key) {
    std::string s = kltest::read_file(path);
    size_t p = s.find(std::string("\"") + key + "\"");
    if (p == std::string::npos) return -1;
    return atoi(s.c_str() + s.find(':', p) + 1);
}

double rel_err(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return std::sqrt(num / (den > 0 ? den : 1e-300));
}

kl_model *load_model(const std::string &c) {
    kl_model_shape s;
    EXPECT_EQ(kl_hf_config_read(fixture(c, "config.json").c_str(), &s), KL_OK) << kl_last_error();
    kl_model *m = nullptr;
    EXPECT_EQ(kl_model_create(&m, &s), KL_OK) << kl_last_error();
    if (!m) return nullptr;
    std::vector<float> params = load_bin<float>(fixture(c, "params.bin"));
    EXPECT_EQ(params.size(), kl_model_num_params(m)) << "parameter layout differs from the fixture";
    if (params.size() == kl_model_num_params(m))
        std::copy(params.begin(), params.end(), kl_model_params(m));
    return m;
}

class ModelParity : public ::testing::TestWithParam<const char *> {};

TEST_P(ModelParity, LogitsLossAndEveryGradientMatchTransformers) {
    const std::string c = GetParam();
    kl_model *m = load_model(c);
    ASSERT_NE(m, nullptr);
    const kl_model_shape *s = kl_model_get_shape(m);
    const int B = read_meta_int(fixture(c, "meta.json"), "B"), T = read_meta_int(fixture(c, "meta.json"), "T");
    std::vector<int32_t> in = load_bin<int32_t>(fixture(c, "inputs.bin"));
    std::vector<int32_t> tg = load_bin<int32_t>(fixture(c, "targets.bin"));
    std::vector<double> ref_logits = load_bin<double>(fixture(c, "logits.bin"));
    std::vector<double> ref_loss = load_bin<double>(fixture(c, "loss.bin"));
    std::vector<double> ref_grads = load_bin<double>(fixture(c, "grads.bin"));
    ASSERT_EQ(in.size(), (size_t)B * T);
    ASSERT_EQ(ref_logits.size(), (size_t)B * T * s->V);

    ASSERT_EQ(kl_model_forward(m, in.data(), B, T), KL_OK) << kl_last_error();
    std::vector<float> logits((size_t)B * T * s->V);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            ASSERT_EQ(kl_model_logits_at(m, b, t, &logits[((size_t)b * T + t) * s->V]), KL_OK);
    /* FP32 arithmetic over a few hundred-term dot products lands near 1e-7 relative; 1e-5 leaves room
     * for different summation orders (BLAS vs. PyTorch) without hiding a wrong formula (those give >1e-3). */
    EXPECT_LT(rel_err(logits.data(), ref_logits.data(), logits.size()), 1e-5) << c << ": logits";

    int64_t valid = 0;
    for (int32_t t : tg) valid += t != -100;
    double loss_sum;
    int64_t nv;
    kl_model_zero_grads(m);
    ASSERT_EQ(kl_model_loss(m, tg.data(), 0.0f, 1, (float)(1.0 / valid), &loss_sum, &nv), KL_OK) << kl_last_error();
    EXPECT_EQ(nv, valid);
    EXPECT_NEAR(loss_sum / nv, ref_loss[0], 1e-5 * ref_loss[0]) << c << ": loss";

    ASSERT_EQ(ref_grads.size(), kl_model_num_params(m));
    const float *g = kl_model_grads(m);
    for (int i = 0; i < kl_model_num_param_tensors(m); i++) {
        const kl_param_info *p = kl_model_param_info(m, i);
        double e = rel_err(g + p->offset, ref_grads.data() + p->offset, p->numel);
        EXPECT_LT(e, 1e-5) << c << ": gradient of " << p->name;
    }
    kl_model_free(m);
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, ModelParity,
                         ::testing::Values("llama_gqa", "llama3_tied_scaled", "mistral", "qwen2_bias", "qwen3_headdim"));

double meta_double_list(const std::string &s, const char *key, int i) {
    size_t p = s.find(std::string("\"") + key + "\"");
    p = s.find('[', p) + 1;
    for (int k = 0; k < i; k++) p = s.find(',', p) + 1;
    return atof(s.c_str() + p);
}

double meta_double(const std::string &s, const char *key) {
    size_t p = s.find(std::string("\"") + key + "\"");
    return atof(s.c_str() + s.find(':', p) + 1);
}

TEST(AdamWTraining, TwentyStepsWithAccumulationAndClippingMatchPyTorch) {
    kl_model *m = load_model("llama_gqa");
    ASSERT_NE(m, nullptr);
    std::string meta = kltest::read_file(fixture("adamw", "meta.json"));
    const int steps = (int)meta_double(meta, "steps"), GA = (int)meta_double(meta, "grad_accum");
    const int B = (int)meta_double(meta, "B"), T = (int)meta_double(meta, "T");
    kl_trainer_opts o = {};
    o.B = B;
    o.T = T;
    o.grad_accum = GA;
    o.grad_clip = meta_double(meta, "clip");
    o.max_bad_steps = 3;
    kl_opt_settings os = {};
    os.kind = KL_OPT_ADAMW;
    os.beta1 = meta_double_list(meta, "betas", 0);
    os.beta2 = meta_double_list(meta, "betas", 1);
    os.eps = meta_double(meta, "eps");
    os.weight_decay = meta_double(meta, "weight_decay");
    kl_schedule sched = {};
    sched.kind = KL_SCHED_CONSTANT;
    sched.lr = meta_double(meta, "lr");
    sched.total_steps = steps;
    kl_trainer tr;
    ASSERT_EQ(kl_trainer_init(&tr, m, &o, &os, &sched), KL_OK) << kl_last_error();
    std::vector<int32_t> in = load_bin<int32_t>(fixture("adamw", "inputs.bin"));
    std::vector<int32_t> tg = load_bin<int32_t>(fixture("adamw", "targets.bin"));
    ASSERT_EQ(in.size(), (size_t)steps * GA * B * T);
    int clipped = 0;
    for (int s = 0; s < steps; s++) {
        kl_step_result r;
        size_t off = (size_t)s * GA * B * T;
        ASSERT_EQ(kl_trainer_step(&tr, in.data() + off, tg.data() + off, &r), KL_OK) << kl_last_error();
        double want = meta_double_list(meta, "losses", s), want_norm = meta_double_list(meta, "grad_norms", s);
        clipped += want_norm > o.grad_clip;
        /* FP32 on both sides; differences grow slowly through 20 updates, 1e-4 is the bound */
        EXPECT_NEAR(r.loss, want, 1e-4 * want) << "step " << s;
        EXPECT_NEAR(r.grad_norm, want_norm, 1e-3 * want_norm) << "step " << s;
    }
    EXPECT_GT(clipped, 0) << "the fixture never exercised clipping";
    double first = meta_double_list(meta, "losses", 0), last = meta_double_list(meta, "losses", steps - 1);
    EXPECT_LT(last, first) << "the reference run did not learn";
    kl_trainer_free(&tr);
    kl_model_free(m);
}

}  // namespace
