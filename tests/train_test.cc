/* train_test.cc — `kiln train` and `kiln generate` end to end on the CPU: the tiny synthetic config learns
 * to near-zero loss, the saved model reloads with the same logits, a run whose loss turns non-finite
 * halts with a clear message instead of writing garbage, and bad input exits with status 2. */
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "test_util.h"

extern "C" {
#include "model.h"
#include "model_io.h"
}

static std::string tiny() { return kltest::kiln_source_dir() + "/configs/tiny.yaml"; }

static double last_eval_loss(const std::string &metrics) {
    size_t p = metrics.rfind("\"type\":\"eval\"");
    if (p == std::string::npos) return NAN;
    p = metrics.find("\"loss\":", p);
    return atof(metrics.c_str() + p + 7);
}

TEST(Train, TinySyntheticRunLearnsToNearZeroLoss) {
    std::string dir = kltest::make_temp_dir("train_tiny"), out;
    int rc = kltest::run_kiln("train '" + tiny() + "' train.steps=150 log.every=50", &out, dir);
    ASSERT_EQ(rc, 0) << out;
    std::string metrics = kltest::read_file(dir + "/runs/tiny/metrics.jsonl");
    /* the stream repeats 16 random sequences of 33 tokens: after the first token of each, everything is
     * predictable, so the loss must fall from ln(256) = 5.5 to (near) zero; 0.2 leaves room for the
     * unpredictable first tokens (1/32 of the targets at ln(16) each = 0.09) and a short schedule */
    EXPECT_LT(last_eval_loss(metrics), 0.2) << out;
    EXPECT_NE(out.find("model saved to"), std::string::npos);

    /* the saved folder reloads into the same function: logits of a fixed input are finite and stable */
    kl_model *m = nullptr;
    ASSERT_EQ(kl_model_load(&m, (dir + "/runs/tiny/model").c_str()), KL_OK) << kl_last_error();
    const kl_model_shape *s = kl_model_get_shape(m);
    EXPECT_EQ(s->V, 256);
    EXPECT_EQ(s->NKV, 2);
    int32_t in[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ASSERT_EQ(kl_model_forward(m, in, 1, 8), KL_OK);
    std::vector<float> logits(s->V);
    ASSERT_EQ(kl_model_logits_at(m, 0, 7, logits.data()), KL_OK);
    for (float x : logits) ASSERT_TRUE(std::isfinite(x));
    kl_model_free(m);

    rc = kltest::run_kiln("generate '" + tiny() + "' --tokens 20 --ids --temperature 0", &out, dir);
    EXPECT_EQ(rc, 0) << out;
    std::string again;
    kltest::run_kiln("generate '" + tiny() + "' --tokens 20 --ids --temperature 0", &again, dir);
    EXPECT_EQ(out, again) << "greedy generation must be deterministic";
}

TEST(Train, SameSeedGivesBitIdenticalLosses) {
    std::string a = kltest::make_temp_dir("train_det"), b = kltest::make_temp_dir("train_det"), out;
    ASSERT_EQ(kltest::run_kiln("train '" + tiny() + "' train.steps=20 log.every=1", &out, a), 0) << out;
    ASSERT_EQ(kltest::run_kiln("train '" + tiny() + "' train.steps=20 log.every=1", &out, b), 0) << out;
    auto losses = [](const std::string &m) {
        std::string r;
        for (size_t p = m.find("\"loss\":"); p != std::string::npos; p = m.find("\"loss\":", p + 1))
            r += m.substr(p, m.find(',', p) - p) + " ";
        return r;
    };
    std::string la = losses(kltest::read_file(a + "/runs/tiny/metrics.jsonl"));
    EXPECT_FALSE(la.empty());
    EXPECT_EQ(la, losses(kltest::read_file(b + "/runs/tiny/metrics.jsonl")));
}

TEST(Train, NonFiniteLossHaltsAfterMaxBadSteps) {
    std::string dir = kltest::make_temp_dir("train_nan"), out;
    /* a learning rate of 10 without clipping, from a wide initialisation, blows the weights up within a few steps */
    int rc = kltest::run_kiln("train '" + tiny() + "' optim.lr=10 train.grad_clip=0 train.warmup_steps=0 "
                              "optim.beta2=0.5 model.init_std=1 train.max_bad_steps=2 log.every=1",
                              &out, dir);
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find("consecutive steps with a non-finite"), std::string::npos) << out;
    EXPECT_NE(out.find("skipped_step"), std::string::npos) << out;
}

TEST(Train, BadInputExitsWithStatusTwo) {
    std::string dir = kltest::make_temp_dir("train_bad"), out;
    EXPECT_EQ(kltest::run_kiln("train '" + tiny() + "' train.stpes=3", &out, dir), 2);
    EXPECT_NE(out.find("did you mean 'train.steps'"), std::string::npos) << out;
    EXPECT_EQ(kltest::run_kiln("train '" + tiny() + "' data.source=files data.train=/nonexistent/*.bin", &out, dir), 2);
    EXPECT_NE(out.find("/nonexistent/*.bin"), std::string::npos) << out;
    EXPECT_EQ(kltest::run_kiln("train", &out, dir), 2);
    EXPECT_EQ(kltest::run_kiln("generate --model '" + dir + "/none'", &out, dir), 2);
}
