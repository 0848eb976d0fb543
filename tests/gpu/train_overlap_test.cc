// train_overlap_test.cc — the GPU trainer's overlapped step (src/train_cuda.h: submit, prestage, finish;
// src/model_cuda.h: stage, accumulate_staged): steps driven through submit / prestage / finish give the losses,
// norms and weights of kl_trainer_cuda_step bit for bit, also when a prestaged batch is replaced by an evaluation
// or is not the batch submitted; the model refuses to train on a staged batch that was replaced; `kiln train`
// with evaluations and periodic checkpoints between steps (where no batch is prestaged) trains exactly as
// without them; SIGINT on such a run resumes bit-exactly.
#include <gtest/gtest.h>

#include <signal.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "config.h"
#include "model.h"
#include "model_config.h"
#include "model_cuda.h"
#include "train_cuda.h"
#include "trainer.h"
}

namespace {

std::string tiny() { return kltest::kiln_source_dir() + "/configs/tiny.yaml"; }

struct StepData {
    kl_config cfg;
    kl_model_shape shape;
    kl_trainer_opts to;
    kl_opt_settings os;
    kl_schedule sched;
    int steps;
    size_t step_tokens;           // GA * B * T
    std::vector<int32_t> in, tg;  // steps * step_tokens
};

// tiny.yaml's model and settings with GA = 2 and its warm-up + cosine schedule over `steps` (the learning rate
// changes every step, so a step run with another step's rate shows). Random tokens, about 10% of the targets
// masked; step `masked_step` has every target masked.
void make_setup(StepData *s, int steps, int masked_step, uint64_t seed) {
    ASSERT_EQ(kl_config_load(&s->cfg, tiny().c_str()), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_model_shape_from_config(&s->cfg, &s->shape), KL_OK) << kl_last_error();
    const kl_config *c = &s->cfg;
    s->to = kl_trainer_opts{};
    s->to.B = (int)c->train.batch_size;
    s->to.T = (int)c->data.seq_len;
    s->to.grad_accum = 2;
    s->to.grad_clip = c->train.grad_clip;
    s->to.max_bad_steps = (int)c->train.max_bad_steps;
    s->os = kl_opt_settings{};
    s->os.kind = KL_OPT_ADAMW;
    s->os.beta1 = c->optim.beta1;
    s->os.beta2 = c->optim.beta2;
    s->os.eps = c->optim.eps;
    s->os.weight_decay = 0.1;
    s->sched = kl_schedule{KL_SCHED_COSINE, c->optim.lr, 0.1, 2, steps, 0.2};
    s->steps = steps;
    s->step_tokens = (size_t)s->to.grad_accum * s->to.B * s->to.T;
    const size_t n = s->step_tokens * steps;
    const int V = s->shape.V;
    std::vector<float> u = kltest::random_uniform(2 * n, 0.f, 1.f, seed);
    s->in.resize(n);
    s->tg.resize(n);
    for (size_t i = 0; i < n; i++) {
        s->in[i] = (int32_t)(u[i] * V) % V;
        const float r = u[n + i];
        s->tg[i] = r < 0.1f ? -100 : (int32_t)(r * 7919) % V;
    }
    for (size_t i = 0; i < s->step_tokens; i++) s->tg[masked_step * s->step_tokens + i] = -100;
}

kl_model *setup_model(const StepData &s, uint64_t seed) {
    kl_model *m = nullptr;
    EXPECT_EQ(kl_model_create(&m, &s.shape), KL_OK) << kl_last_error();
    if (m) kl_model_init_weights(m, seed, (float)s.cfg.model.init_std);
    return m;
}

const int32_t *in_of(const StepData &s, int step) { return s.in.data() + step * s.step_tokens; }
const int32_t *tg_of(const StepData &s, int step) { return s.tg.data() + step * s.step_tokens; }

int64_t valid_of(const StepData &s, int step) {
    int64_t v = 0;
    for (size_t i = 0; i < s.step_tokens; i++) v += tg_of(s, step)[i] != -100;
    return v;
}

std::vector<float> final_weights(kl_trainer_cuda *t, kl_model *cpu) {
    EXPECT_EQ(kl_trainer_cuda_download(t, cpu), KL_OK) << kl_last_error();
    return std::vector<float>(kl_model_params(cpu), kl_model_params(cpu) + kl_model_num_params(cpu));
}

}  // namespace

// The overlapped drive (submit step k, prestage step k+1 while it runs, finish step k) trains exactly as
// kl_trainer_cuda_step. Along the way: an all-masked step (never staged, no device work), a prestage of a batch
// that is not the one then submitted (submit must stage and train on the one it is given), and an evaluation
// between finish and submit (it stages into the same buffers: submit must notice and stage again).
TEST(TrainCudaOverlap, SubmitPrestageFinishEqualsStepBitForBit) {
    SKIP_WITHOUT_GPU();
    const int steps = 10, masked = 3, decoy = 5, eval_after = 7;
    StepData s;
    ASSERT_NO_FATAL_FAILURE(make_setup(&s, steps, masked, kltest::fresh_seed("TrainCudaOverlap.Equals")));
    kl_model *a_cpu = setup_model(s, 21), *b_cpu = setup_model(s, 21);
    ASSERT_TRUE(a_cpu && b_cpu);
    kl_trainer_cuda *a = nullptr, *b = nullptr;
    ASSERT_EQ(kl_trainer_cuda_create(&a, a_cpu, &s.to, &s.os, &s.sched, nullptr), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_trainer_cuda_create(&b, b_cpu, &s.to, &s.os, &s.sched, nullptr), KL_OK) << kl_last_error();
    const int GA = s.to.grad_accum, B = s.to.B, T = s.to.T;

    std::vector<kl_step_result> ra(steps), rb(steps);
    for (int k = 0; k < steps; k++)
        ASSERT_EQ(kl_trainer_cuda_step(a, in_of(s, k), tg_of(s, k), &ra[k]), KL_OK) << "step " << k + 1 << ": "
                                                                                     << kl_last_error();

    // the next step's batch lives in its own host arrays, as in train_run.c
    std::vector<int32_t> next_in(s.step_tokens), next_tg(s.step_tokens);
    ASSERT_EQ(kl_trainer_cuda_submit(b, in_of(s, 0), tg_of(s, 0)), KL_OK) << kl_last_error();
    for (int k = 0; k < steps; k++) {
        const int n = k + 1;
        if (n < steps) {
            const int src = n == decoy ? n + 1 : n;  // at the decoy, prestage the batch after the next one
            next_in.assign(in_of(s, src), in_of(s, src) + s.step_tokens);
            next_tg.assign(tg_of(s, src), tg_of(s, src) + s.step_tokens);
            ASSERT_EQ(kl_trainer_cuda_prestage(b, next_in.data(), next_tg.data()), KL_OK) << kl_last_error();
            EXPECT_EQ(kl_model_cuda_staged_holds(kl_trainer_cuda_model(b), next_in.data(), next_tg.data(), GA, B, T,
                                                 nullptr),
                      valid_of(s, src) > 0 ? 1 : 0)
                << "step " << n + 1 << ": an all-masked batch is not staged, any other one is";
        }
        ASSERT_EQ(kl_trainer_cuda_finish(b, &rb[k]), KL_OK) << "step " << k + 1 << ": " << kl_last_error();
        if (n == steps) break;
        if (n == eval_after) {
            double sum;
            int64_t nv;
            ASSERT_EQ(kl_trainer_cuda_eval_batch(b, in_of(s, 0), tg_of(s, 0), &sum, &nv), KL_OK) << kl_last_error();
            EXPECT_EQ(kl_model_cuda_staged_holds(kl_trainer_cuda_model(b), next_in.data(), next_tg.data(), GA, B, T,
                                                 nullptr),
                      0)
                << "the evaluation replaced the prestaged batch";
        }
        if (n == decoy) {  // submit the real next batch, from the step list
            ASSERT_EQ(kl_trainer_cuda_submit(b, in_of(s, n), tg_of(s, n)), KL_OK) << kl_last_error();
        } else {
            ASSERT_EQ(kl_trainer_cuda_submit(b, next_in.data(), next_tg.data()), KL_OK) << kl_last_error();
        }
    }

    ASSERT_TRUE(ra[masked].skipped && rb[masked].skipped) << "the all-masked step is skipped";
    EXPECT_EQ(rb[masked].valid_targets, 0);
    for (int k = 0; k < steps; k++) {
        EXPECT_EQ(memcmp(&ra[k].loss, &rb[k].loss, sizeof(double)), 0)
            << "step " << k + 1 << ": loss " << ra[k].loss << " (step) vs " << rb[k].loss << " (overlapped)";
        EXPECT_EQ(memcmp(&ra[k].grad_norm, &rb[k].grad_norm, sizeof(double)), 0) << "step " << k + 1;
        EXPECT_EQ(ra[k].lr, rb[k].lr) << "step " << k + 1;
        EXPECT_EQ(ra[k].skipped, rb[k].skipped) << "step " << k + 1;
        EXPECT_EQ(ra[k].valid_targets, rb[k].valid_targets) << "step " << k + 1;
        EXPECT_EQ(ra[k].valid_targets, valid_of(s, k)) << "step " << k + 1;
    }
    EXPECT_NE(ra[0].loss, ra[steps - 1].loss) << "the model did not train: the comparison would be vacuous";
    EXPECT_EQ(kl_trainer_cuda_steps(b), steps);
    EXPECT_EQ(kl_trainer_cuda_backward_passes(a), kl_trainer_cuda_backward_passes(b));
    EXPECT_EQ(kl_trainer_cuda_backward_passes(b), (uint64_t)(steps - 1) * GA) << "none for the all-masked step";
    const std::vector<float> wa = final_weights(a, a_cpu), wb = final_weights(b, b_cpu);
    ASSERT_EQ(wa.size(), wb.size());
    EXPECT_EQ(memcmp(wa.data(), wb.data(), wa.size() * sizeof(float)), 0) << "final weights differ";
    kl_trainer_cuda_free(a);
    kl_trainer_cuda_free(b);
    kl_model_free(a_cpu);
    kl_model_free(b_cpu);
}

// A second submit before finish, and a finish without a submit, are errors that change nothing.
TEST(TrainCudaOverlap, SubmitAndFinishAlternate) {
    SKIP_WITHOUT_GPU();
    StepData s;
    ASSERT_NO_FATAL_FAILURE(make_setup(&s, 2, 1, kltest::fresh_seed("TrainCudaOverlap.Alternate")));
    kl_model *cpu = setup_model(s, 5);
    ASSERT_NE(cpu, nullptr);
    kl_trainer_cuda *t = nullptr;
    ASSERT_EQ(kl_trainer_cuda_create(&t, cpu, &s.to, &s.os, &s.sched, nullptr), KL_OK) << kl_last_error();
    kl_step_result r;
    EXPECT_EQ(kl_trainer_cuda_finish(t, &r), KL_ERR_INVALID);
    ASSERT_EQ(kl_trainer_cuda_submit(t, in_of(s, 0), tg_of(s, 0)), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_trainer_cuda_submit(t, in_of(s, 0), tg_of(s, 0)), KL_ERR_INVALID);
    ASSERT_EQ(kl_trainer_cuda_finish(t, &r), KL_OK) << kl_last_error();
    EXPECT_FALSE(r.skipped);
    EXPECT_TRUE(std::isfinite(r.loss));
    EXPECT_EQ(kl_trainer_cuda_steps(t), 1);
    EXPECT_EQ(kl_trainer_cuda_finish(t, &r), KL_ERR_INVALID);
    EXPECT_EQ(kl_trainer_cuda_steps(t), 1);
    kl_trainer_cuda_free(t);
    kl_model_free(cpu);
}

// kl_model_cuda_accumulate_staged trains only on the batch kl_model_cuda_stage left in the buffers: not after a
// forward (an evaluation) replaced it, not for another micro-batch count or shape.
TEST(ModelCudaStage, AccumulateStagedRefusesAReplacedOrDifferentBatch) {
    SKIP_WITHOUT_GPU();
    StepData s;
    ASSERT_NO_FATAL_FAILURE(make_setup(&s, 1, 0, kltest::fresh_seed("ModelCudaStage.Refuses")));
    for (size_t i = 0; i < s.step_tokens; i++) s.tg[i] = s.in[(i + 1) % s.step_tokens];  // unmask step 0 again
    kl_model *cpu = setup_model(s, 9);
    ASSERT_NE(cpu, nullptr);
    kl_model_cuda *m = nullptr;
    ASSERT_EQ(kl_model_cuda_create(&m, cpu, nullptr), KL_OK) << kl_last_error();
    const int GA = s.to.grad_accum, B = s.to.B, T = s.to.T;
    const float scale = 1.0f / (float)s.step_tokens;

    EXPECT_EQ(kl_model_cuda_accumulate_staged(m, GA, B, T, 0.0f, scale), KL_ERR_INVALID) << "nothing staged yet";
    ASSERT_EQ(kl_model_cuda_stage(m, s.in.data(), s.tg.data(), GA, B, T), KL_OK) << kl_last_error();
    int64_t valid = -1;
    EXPECT_EQ(kl_model_cuda_staged_holds(m, s.in.data(), s.tg.data(), GA, B, T, &valid), 1);
    EXPECT_EQ(valid, (int64_t)s.step_tokens);
    std::vector<int32_t> other = s.tg;
    other.back() = -100;
    EXPECT_EQ(kl_model_cuda_staged_holds(m, s.in.data(), other.data(), GA, B, T, nullptr), 0) << "other targets";
    EXPECT_EQ(kl_model_cuda_accumulate_staged(m, 1, B, T, 0.0f, scale), KL_ERR_INVALID) << "one micro-batch of two";
    EXPECT_EQ(kl_model_cuda_accumulate_staged(m, GA, 2 * B, T / 2, 0.0f, scale), KL_ERR_INVALID) << "another shape";
    ASSERT_EQ(kl_model_cuda_accumulate_staged(m, GA, B, T, 0.0f, scale), KL_OK) << kl_last_error();

    ASSERT_EQ(kl_model_cuda_forward(m, s.in.data(), B, T), KL_OK) << kl_last_error();  // as an evaluation does
    EXPECT_EQ(kl_model_cuda_staged_holds(m, s.in.data(), s.tg.data(), GA, B, T, nullptr), 0);
    EXPECT_EQ(kl_model_cuda_accumulate_staged(m, GA, B, T, 0.0f, scale), KL_ERR_INVALID) << "replaced by a forward";
    kl_model_cuda_free(m);
    kl_model_free(cpu);
}

// `kiln train` prestages the next batch only when neither an evaluation nor a periodic checkpoint follows the
// step; with both between steps (eval every 3, checkpoint every 5) the losses and final weights equal a run
// without either, bit for bit: evaluation tokens never reach training, and the loader order is unchanged.
TEST(TrainCudaOverlap, EvaluationsAndCheckpointsBetweenStepsLeaveTrainingUnchanged) {
    SKIP_WITHOUT_GPU();
    std::string a = kltest::make_temp_dir("overlap_plain"), b = kltest::make_temp_dir("overlap_eval"), out;
    const std::string common =
        "train '" + tiny() + "' train.device=cuda train.steps=14 train.grad_accum=2 log.every=1 ";
    ASSERT_EQ(kltest::run_kiln(common + "train.eval_every=0", &out, a), 0) << out;
    ASSERT_EQ(kltest::run_kiln(common + "train.eval_every=3 train.ckpt_every=5", &out, b), 0) << out;
    const std::string ma = kltest::read_file(a + "/runs/tiny/metrics.jsonl"),
                      mb = kltest::read_file(b + "/runs/tiny/metrics.jsonl");
    EXPECT_NE(mb.find("\"type\":\"eval\""), std::string::npos) << "no evaluation was logged";
    EXPECT_FALSE(kltest::read_file(b + "/runs/tiny/ckpt/step_00000005/DONE").empty()) << "no checkpoint at step 5";
    const auto la = kltest::step_losses(ma, 0), lb = kltest::step_losses(mb, 0);
    ASSERT_EQ(la.size(), 14u);
    EXPECT_EQ(la, lb);
    const std::string wa = kltest::read_file(a + "/runs/tiny/model/model.safetensors");
    EXPECT_FALSE(wa.empty());
    EXPECT_TRUE(wa == kltest::read_file(b + "/runs/tiny/model/model.safetensors")) << "final weights differ";
}

// SIGINT on a run with evaluations and periodic checkpoints: the stop may follow a step whose successor was
// prestaged or one followed by an evaluation or checkpoint (tests/gpu/train_ckpt_test.cc's SIGINT test has
// neither, so there every stop follows a prestaged successor); either way the resumed run equals an
// uninterrupted one bit for bit.
TEST(TrainCudaOverlap, SigintWithEvalsAndCheckpointsResumesBitExact) {
    SKIP_WITHOUT_GPU();
    kltest::check_signal_stop_and_resume(tiny(),
                                         "train.device=cuda train.schedule=constant train.warmup_steps=0 "
                                         "train.grad_accum=2 log.every=1 train.eval_every=2 train.ckpt_every=3 ",
                                         SIGINT, 300, kltest::make_temp_dir("overlap_sigint_a"),
                                         kltest::make_temp_dir("overlap_sigint_b"));
}
