/* schedule.h — learning-rate schedules with linear warmup: constant, cosine, linear, warmup-stable-decay.
 * A pure function of the step, so a resumed run needs no schedule state. */
#ifndef KL_SCHEDULE_H
#define KL_SCHEDULE_H
#include <stdint.h>

typedef enum { KL_SCHED_CONSTANT = 0, KL_SCHED_COSINE, KL_SCHED_LINEAR, KL_SCHED_WSD } kl_schedule_kind;

typedef struct {
    kl_schedule_kind kind;
    double lr;             /* peak learning rate */
    double min_lr_ratio;   /* floor as a fraction of lr (cosine, linear, wsd) */
    int64_t warmup_steps;  /* linear ramp from lr/warmup to lr */
    int64_t total_steps;
    double decay_fraction; /* wsd: share of the post-warmup steps spent decaying */
} kl_schedule;

/* Learning rate for 0-based step `step`. */
double kl_schedule_lr(const kl_schedule *s, int64_t step);

#endif
