/* train_ckpt_test.cc — the entries a training checkpoint holds (src/train_ckpt.c), which the CPU and GPU
 * trainers both write: the exact list for AdamW, and the GPU trainer's optimizer-state names being the CPU
 * AdamW's, which is what lets a GPU checkpoint resume on the CPU and back (tests/gpu/train_ckpt_test.cc runs
 * that on a GPU). */
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "checkpoint.h"
#include "optim.h"
#include "train_cuda.h"
}

static std::string tiny() { return kltest::kiln_source_dir() + "/configs/tiny.yaml"; }

TEST(TrainCkpt, GpuTrainerStateBuffersAreTheCpuAdamwBuffers) {
    kl_opt_param ps[2] = {};
    ps[0].name = "w";
    ps[0].offset = 0;
    ps[0].numel = 6;
    ps[0].rows = 2;
    ps[0].cols = 3;
    ps[0].lr_mult = 1.0f;
    ps[0].is_matrix = 1;
    ps[1].name = "b";
    ps[1].offset = 6;
    ps[1].numel = 3;
    ps[1].rows = 1;
    ps[1].cols = 3;
    ps[1].lr_mult = 1.0f;
    kl_opt_settings s{};
    s.kind = KL_OPT_ADAMW;
    s.beta1 = 0.9;
    s.beta2 = 0.95;
    s.eps = 1e-8;
    kl_optimizer *o = nullptr;
    ASSERT_EQ(kl_optimizer_create(&o, &s, ps, 2), KL_OK) << kl_last_error();
    EXPECT_STREQ(o->vt->name, "adamw"); /* train_ckpt.c names the GPU trainer's optimizer so */
    ASSERT_EQ(o->vt->n_state_buffers(o), kl_trainer_cuda_n_state_buffers());
    for (int i = 0; i < kl_trainer_cuda_n_state_buffers(); i++) {
        const char *name;
        size_t bytes;
        o->vt->state_buffer(o, i, &name, &bytes);
        EXPECT_STREQ(kl_trainer_cuda_state_buffer_name(i), name) << "buffer " << i;
        /* the GPU stages each buffer as num_params floats in the CPU layout: the CPU's size */
        EXPECT_EQ(bytes, 9 * sizeof(float)) << "buffer " << i;
    }
    EXPECT_EQ(kl_trainer_cuda_state_buffer_name(kl_trainer_cuda_n_state_buffers()), nullptr);
    EXPECT_EQ(kl_trainer_cuda_state_buffer_name(-1), nullptr);
    kl_optimizer_free(o);
}

TEST(TrainCkpt, AdamwCheckpointHoldsExactlyTheDocumentedEntries) {
    std::string d = kltest::make_temp_dir("train_ckpt_entries"), out;
    ASSERT_EQ(kltest::run_kiln("train '" + tiny() + "' train.steps=2 train.warmup_steps=0 train.ckpt_every=2 "
                               "train.eval_every=0",
                               &out, d),
              0)
        << out;
    const std::string step_dir = d + "/runs/tiny/ckpt/step_00000002";
    EXPECT_EQ(kltest::ckpt_entry_names(step_dir), kltest::kAdamwCheckpointEntries);
    kl_ckpt_reader *r = nullptr;
    ASSERT_EQ(kl_ckpt_open(&r, step_dir.c_str(), 0), KL_OK) << kl_last_error();
    const kl_ckpt_entry *p = kl_ckpt_find(r, "params"), *m = kl_ckpt_find(r, "optimizer/adamw.m");
    ASSERT_NE(p, nullptr);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->count, p->count * sizeof(float)) << "a moment is one float per parameter";
    int64_t step = -1;
    uint64_t passes = 0;
    EXPECT_EQ(kl_ckpt_get_i64(r, "train/step", &step), KL_OK);
    EXPECT_EQ(step, 2);
    EXPECT_EQ(kl_ckpt_get_u64(r, "model/backward_passes", &passes), KL_OK);
    EXPECT_EQ(passes, 2u) << "one backward pass per micro-batch (grad_accum 1, 2 steps)";
    kl_ckpt_close(r);
}
