/* trainer.c — see trainer.h. */
#include "trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

kl_status kl_trainer_init(kl_trainer *t, kl_model *m, const kl_trainer_opts *o, const kl_opt_settings *os,
                          const kl_schedule *sched) {
    memset(t, 0, sizeof *t);
    if (o->B <= 0 || o->T <= 0 || o->grad_accum <= 0)
        return kl_error(KL_ERR_CONFIG, "trainer: batch_size, seq_len and grad_accum must be > 0");
    t->model = m;
    t->o = *o;
    t->sched = *sched;
    int n = kl_model_num_param_tensors(m);
    t->groups = kl_calloc((size_t)n, sizeof *t->groups, "parameter groups");
    if (!t->groups) return KL_ERR_OOM;
    for (int i = 0; i < n; i++) {
        const kl_param_info *p = kl_model_param_info(m, i);
        kl_opt_param *g = &t->groups[i];
        g->name = p->name;
        g->offset = p->offset;
        g->numel = p->numel;
        g->rows = p->rows;
        g->cols = p->cols;
        g->lr_mult = 1.0f;
        g->is_matrix = p->kind == KL_PARAM_MATRIX || p->kind == KL_PARAM_HEAD;
        g->decay = g->is_matrix || (p->kind == KL_PARAM_EMBEDDING && o->decay_embeddings) ||
                   ((p->kind == KL_PARAM_NORM || p->kind == KL_PARAM_BIAS) && o->decay_norms);
    }
    kl_status st = kl_optimizer_create(&t->opt, os, t->groups, n);
    if (st != KL_OK) {
        free(t->groups);
        t->groups = NULL;
    }
    return st;
}

void kl_trainer_free(kl_trainer *t) {
    kl_optimizer_free(t->opt);
    free(t->groups);
    memset(t, 0, sizeof *t);
}

double kl_grad_norm(const float *g, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    return sqrt(s);
}

kl_status kl_trainer_count_bad_step(int *bad_streak, int max_bad_steps, long long step, double loss) {
    if (++*bad_streak < max_bad_steps) return KL_OK;
    return kl_error(KL_ERR_NUMERIC,
                    "step %lld: %d consecutive steps with a non-finite %s; halting before the weights are corrupted "
                    "(lower optim.lr, raise train.grad_clip, or check the data)",
                    step, *bad_streak, isfinite(loss) ? "gradient" : "loss");
}

kl_status kl_trainer_step(kl_trainer *t, const int32_t *inputs, const int32_t *targets, kl_step_result *r) {
    const int B = t->o.B, T = t->o.T, GA = t->o.grad_accum;
    const size_t mb = (size_t)B * T;
    memset(r, 0, sizeof *r);
    r->lr = kl_schedule_lr(&t->sched, t->step);

    int64_t valid = 0;
    for (size_t i = 0; i < mb * (size_t)GA; i++) valid += targets[i] != -100;
    r->valid_targets = valid;
    kl_model_zero_grads(t->model);
    if (valid == 0) { /* nothing to learn from: count the step, change nothing */
        r->skipped = 1;
        r->loss = NAN;
        t->step++;
        return KL_OK;
    }
    const float grad_scale = (float)(1.0 / (double)valid);
    double loss_sum = 0;
    for (int a = 0; a < GA; a++) {
        double ls;
        int64_t nv;
        KL_TRY(kl_model_forward(t->model, inputs + a * mb, B, T));
        KL_TRY(kl_model_loss(t->model, targets + a * mb, t->o.z_loss, 1, grad_scale, &ls, &nv));
        loss_sum += ls;
    }
    r->loss = loss_sum / (double)valid;
    float *g = kl_model_grads(t->model);
    size_t n = kl_model_num_params(t->model);
    r->grad_norm = kl_grad_norm(g, n);

    if (!isfinite(r->loss) || !isfinite(r->grad_norm)) {
        r->skipped = 1;
        KL_TRY(kl_trainer_count_bad_step(&t->bad_streak, t->o.max_bad_steps, (long long)t->step + 1, r->loss));
        t->step++;
        return KL_OK;
    }
    t->bad_streak = 0;
    if (t->o.grad_clip > 0 && r->grad_norm > t->o.grad_clip) {
        /* torch.nn.utils.clip_grad_norm_'s factor, so runs match PyTorch's */
        const float scale = (float)(t->o.grad_clip / (r->grad_norm + 1e-6));
        for (size_t i = 0; i < n; i++) g[i] *= scale;
    }
    t->step++;
    const double t0 = kl_now_seconds();
    kl_status st = t->opt->vt->step(t->opt, kl_model_params(t->model), g, r->lr, t->step);
    t->opt_seconds += kl_now_seconds() - t0;
    t->opt_steps++;
    return st;
}

kl_status kl_trainer_eval_batch(kl_trainer *t, const int32_t *inputs, const int32_t *targets, double *loss_sum,
                                int64_t *n_valid) {
    KL_TRY(kl_model_forward(t->model, inputs, t->o.B, t->o.T));
    return kl_model_loss(t->model, targets, 0.0f, 0, 0.0f, loss_sum, n_valid);
}
