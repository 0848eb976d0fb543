/* schedule.c — see schedule.h. */
#include "schedule.h"

#include <math.h>

double kl_schedule_lr(const kl_schedule *s, int64_t step) {
    if (s->warmup_steps > 0 && step < s->warmup_steps) return s->lr * (double)(step + 1) / (double)s->warmup_steps;
    double lo = s->lr * s->min_lr_ratio;
    int64_t span = s->total_steps - s->warmup_steps;
    double p = span > 1 ? (double)(step - s->warmup_steps) / (double)(span - 1) : 1.0;
    if (p > 1) p = 1;
    if (p < 0) p = 0;
    switch (s->kind) {
    case KL_SCHED_CONSTANT: return s->lr;
    case KL_SCHED_COSINE: return lo + (s->lr - lo) * 0.5 * (1.0 + cos(M_PI * p));
    case KL_SCHED_LINEAR: return s->lr - (s->lr - lo) * p;
    case KL_SCHED_WSD: {
        double start = 1.0 - s->decay_fraction;
        if (p <= start || s->decay_fraction <= 0) return s->lr;
        return s->lr - (s->lr - lo) * (p - start) / s->decay_fraction;
    }
    }
    return s->lr;
}
