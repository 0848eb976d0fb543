/* trainer.h — one optimizer step and one evaluation, independent of where batches and settings come
 * from: gradient accumulation with the loss normalised over the step's valid targets, global-norm
 * clipping, the NaN/Inf guard, the learning-rate schedule, the optimizer. The run loop (train_run.c)
 * wires configs, data and logging around it. */
#ifndef KL_TRAINER_H
#define KL_TRAINER_H

#include <stdint.h>

#include "model.h"
#include "optim.h"
#include "schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int B, T, grad_accum;
    double grad_clip;    /* 0 = off */
    float z_loss;
    int max_bad_steps;   /* consecutive non-finite steps before the run halts */
    int decay_embeddings, decay_norms;
} kl_trainer_opts;

typedef struct {
    kl_model *model;
    kl_optimizer *opt;
    kl_schedule sched;
    kl_trainer_opts o;
    kl_opt_param *groups; /* the optimizer's view of the parameter table */
    int64_t step;         /* optimizer steps completed */
    int bad_streak;
    double opt_seconds;   /* wall time inside the optimizer's step, summed over this process's applied steps */
    int64_t opt_steps;    /* how many steps opt_seconds covers (skipped steps and resumed-from steps excluded) */
} kl_trainer;

typedef struct {
    double loss;      /* mean over the step's valid targets */
    double grad_norm; /* before clipping */
    double lr;
    int64_t valid_targets;
    int skipped;      /* 1 when the step was not applied (non-finite loss or gradient, or no valid target) */
} kl_step_result;

/* Builds the parameter groups from the model's table (decay on linear-layer matrices; embeddings, norms
 * and biases undecayed unless asked) and creates the optimizer. The trainer does not own the model. */
kl_status kl_trainer_init(kl_trainer *t, kl_model *m, const kl_trainer_opts *o, const kl_opt_settings *os,
                          const kl_schedule *sched);
void kl_trainer_free(kl_trainer *t);

/* One optimizer step over grad_accum micro-batches: inputs/targets hold grad_accum * B * T tokens. */
kl_status kl_trainer_step(kl_trainer *t, const int32_t *inputs, const int32_t *targets, kl_step_result *r);

/* After a step whose loss or gradient norm is not finite (its update skipped): counts it in *bad_streak and
 * fails with KL_ERR_NUMERIC, naming the step, once max_bad_steps such steps come in a row. Both trainers use it. */
kl_status kl_trainer_count_bad_step(int *bad_streak, int max_bad_steps, long long step, double loss);

/* Sum of losses and count of valid targets over one batch (no gradients). */
kl_status kl_trainer_eval_batch(kl_trainer *t, const int32_t *inputs, const int32_t *targets, double *loss_sum,
                                int64_t *n_valid);

/* sqrt(sum g^2) over a buffer, accumulated in double (deterministic: fixed order). */
double kl_grad_norm(const float *g, size_t n);

#ifdef __cplusplus
}
#endif
#endif
