/* resume_test.cc — exact resume on the CPU: a run of 2N steps and a run resumed from the first run's
 * step-N checkpoint produce bit-identical losses for steps N+1..2N and bit-identical final weights, with
 * gradient accumulation, across epoch boundaries (synthetic stream) and across token files; checkpoints of
 * a different model are refused with the difference named; a corrupt newest checkpoint is refused while
 * the previous complete one stays usable; SIGTERM stops a run with a checkpoint it resumes from exactly. */
#include <gtest/gtest.h>

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "tokfile.h"
}

static std::string tiny() { return kltest::kiln_source_dir() + "/configs/tiny.yaml"; }

static void check_exact_resume(const std::string &extra) {
    const int N = 6;
    std::string a = kltest::make_temp_dir("resume_a"), b = kltest::make_temp_dir("resume_b"), out;
    std::string common = "train.steps=" + std::to_string(2 * N) + " train.grad_accum=2 log.every=1 train.eval_every=0 " + extra;
    ASSERT_EQ(kltest::run_kiln("train '" + tiny() + "' " + common + " train.ckpt_every=" + std::to_string(N), &out, a), 0)
        << out;
    std::string ckpt = a + "/runs/tiny/ckpt/step_0000000" + std::to_string(N);
    ASSERT_EQ(kltest::run_kiln("train '" + tiny() + "' " + common + " train.resume='" + ckpt + "'", &out, b), 0) << out;
    EXPECT_NE(out.find("resumed from"), std::string::npos) << out;
    auto la = kltest::step_losses(kltest::read_file(a + "/runs/tiny/metrics.jsonl"), N);
    auto lb = kltest::step_losses(kltest::read_file(b + "/runs/tiny/metrics.jsonl"), N);
    ASSERT_EQ(la.size(), (size_t)N);
    EXPECT_EQ(la, lb);
    std::string wa = kltest::read_file(a + "/runs/tiny/model/model.safetensors");
    EXPECT_FALSE(wa.empty());
    EXPECT_TRUE(wa == kltest::read_file(b + "/runs/tiny/model/model.safetensors")) << "final weights differ";
}

TEST(Resume, SyntheticStreamWithAccumulationIsBitExact) { check_exact_resume(""); }

TEST(Resume, DashOptimizerStateIsBitExact) {
    check_exact_resume("optim.name=dash optim.dash_block_size=32 optim.dash_inv_root_every=4");
}

TEST(Resume, AcrossTokenFilesIsBitExact) {
    std::string d = kltest::make_temp_dir("resume_files");
    uint64_t seed = kltest::fresh_seed("resume files");
    /* two files of 150 tokens: 4 samples of 33 each, so 12 steps x 2 micro-batches x 8 rows cross files
     * and epochs many times */
    for (int f = 0; f < 2; f++) {
        std::vector<int32_t> tok(150);
        for (size_t i = 0; i < tok.size(); i++) tok[i] = (int32_t)((seed + 7919 * (i + 1000 * f)) % 256);
        std::string p = d + "/part" + std::to_string(f) + ".bin";
        ASSERT_EQ(kl_tokfile_write(p.c_str(), tok.data(), (int64_t)tok.size(), 256, nullptr), KL_OK) << kl_last_error();
    }
    check_exact_resume("data.source=files data.train='" + d + "/part*.bin'");
}

TEST(Resume, RefusesAnotherModelAndSkipsACorruptCheckpoint) {
    std::string a = kltest::make_temp_dir("resume_refuse"), out;
    ASSERT_EQ(kltest::run_kiln("train '" + tiny() + "' train.steps=4 train.warmup_steps=0 train.ckpt_every=2 train.eval_every=0", &out, a), 0)
        << out;
    /* a wider model must not load these weights */
    EXPECT_EQ(kltest::run_kiln("train '" + tiny() + "' train.steps=6 train.warmup_steps=0 model.hidden_size=96", &out, a), 2) << out;
    EXPECT_NE(out.find("model"), std::string::npos) << out;
    EXPECT_NE(out.find("checkpoint"), std::string::npos) << out;
    /* truncate the newest rank file: it is refused, and the step-2 checkpoint is still there */
    std::string newest = a + "/runs/tiny/ckpt/step_00000004/rank_000.h5";
    std::string bytes = kltest::read_file(newest);
    ASSERT_GT(bytes.size(), 100u);
    kltest::write_file(newest, bytes.substr(0, bytes.size() / 2));
    int rc = kltest::run_kiln("train '" + tiny() + "' train.steps=6 train.warmup_steps=0", &out, a);
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("step_00000004"), std::string::npos) << out;
    EXPECT_EQ(kltest::run_kiln("train '" + tiny() + "' train.steps=6 train.warmup_steps=0 train.resume='" + a +
                                   "/runs/tiny/ckpt/step_00000002'",
                               &out, a),
              0)
        << out;
    EXPECT_NE(out.find("resumed from"), std::string::npos) << out;
}

/* Stopping a run with SIGTERM: it finishes the step in flight, writes a checkpoint, exits 0 and says so;
 * resuming from that checkpoint continues bit-exactly as a run that was never stopped (constant schedule,
 * so the stopped run's long train.steps does not change the learning rate). */
TEST(Resume, SigtermCheckpointsTheFinishedStepAndResumesBitExact) {
    kltest::check_signal_stop_and_resume(tiny(),
                                         "train.schedule=constant train.warmup_steps=0 train.grad_accum=2 log.every=1 "
                                         "train.eval_every=0 ",
                                         SIGTERM, 120, kltest::make_temp_dir("resume_sigterm_a"),
                                         kltest::make_temp_dir("resume_sigterm_b"));
}
