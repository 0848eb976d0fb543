/* schedule_test.cc — the learning-rate schedules against their definitions, written out independently:
 * linear warm-up to the peak, then constant / cosine / linear / warmup-stable-decay down to the floor. */
#include <gtest/gtest.h>

#include <cmath>

extern "C" {
#include "schedule.h"
}

static kl_schedule make(kl_schedule_kind k) {
    kl_schedule s = {};
    s.kind = k;
    s.lr = 3e-3;
    s.min_lr_ratio = 0.1;
    s.warmup_steps = 10;
    s.total_steps = 110;
    s.decay_fraction = 0.2;
    return s;
}

TEST(Schedule, WarmupRampsLinearlyToThePeak) {
    for (kl_schedule_kind k : {KL_SCHED_CONSTANT, KL_SCHED_COSINE, KL_SCHED_LINEAR, KL_SCHED_WSD}) {
        kl_schedule s = make(k);
        for (int t = 0; t < 10; t++) EXPECT_DOUBLE_EQ(kl_schedule_lr(&s, t), 3e-3 * (t + 1) / 10.0) << k << " " << t;
        EXPECT_DOUBLE_EQ(kl_schedule_lr(&s, 10), 3e-3) << k;
    }
}

TEST(Schedule, EachShapeFollowsItsFormulaAndEndsAtTheFloor) {
    const double peak = 3e-3, lo = 3e-4;
    kl_schedule c = make(KL_SCHED_COSINE), l = make(KL_SCHED_LINEAR), w = make(KL_SCHED_WSD), k = make(KL_SCHED_CONSTANT);
    for (int t = 10; t < 110; t++) {
        double p = (t - 10) / 99.0; /* progress over the 100 post-warm-up steps, 0 at the first, 1 at the last */
        EXPECT_NEAR(kl_schedule_lr(&c, t), lo + (peak - lo) * 0.5 * (1 + std::cos(M_PI * p)), 1e-15) << t;
        EXPECT_NEAR(kl_schedule_lr(&l, t), peak + (lo - peak) * p, 1e-15) << t;
        double wsd = p <= 0.8 ? peak : peak + (lo - peak) * (p - 0.8) / 0.2;
        EXPECT_NEAR(kl_schedule_lr(&w, t), wsd, 1e-15) << t;
        EXPECT_EQ(kl_schedule_lr(&k, t), peak);
    }
    EXPECT_NEAR(kl_schedule_lr(&c, 109), lo, 1e-15);
    EXPECT_NEAR(kl_schedule_lr(&l, 109), lo, 1e-15);
    EXPECT_NEAR(kl_schedule_lr(&w, 109), lo, 1e-15);
    EXPECT_NEAR(kl_schedule_lr(&c, 500), lo, 1e-15) << "past the end the floor holds";
}
