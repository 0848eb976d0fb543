/* train_ckpt.c — what a training checkpoint holds and how a run resumes from one, for the CPU trainer and
 * the GPU trainer alike: master weights (FP32, CPU parameter layout), every optimizer state buffer, the
 * step and NaN-streak counters, the model's backward-pass counter (the NVFP4 randomness position), the
 * loader position, and the resolved config as text. The GPU trainer's AdamW state is written under the
 * CPU AdamW's names and layout, so either trainer resumes the other's checkpoints. The file format,
 * atomic write protocol, discovery and retention are checkpoint.c's. */
#include "train_ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

/* A trainer's state as a checkpoint sees it. The optimizer's buffers are reached one at a time through
 * host memory: `buffer` names buffer i, gives its size and the host memory that holds it (save, after
 * `fetch`) or receives it (restore, before `apply`). The GPU trainer stages its device buffers through one
 * host buffer this way; the CPU trainer hands out its own memory and needs neither fetch nor apply. */
typedef struct {
    kl_model *model; /* parameters and backward-pass counter, on the host */
    const char *optimizer;
    int n_buffers;
    void *ctx;
    void *(*buffer)(void *ctx, int i, const char **name, size_t *bytes);
    kl_status (*fetch)(void *ctx, int i); /* may be NULL */
    kl_status (*apply)(void *ctx, int i); /* may be NULL */
    int64_t step;
    int bad_streak;
} train_state;

/* The facts a checkpoint must share with the run that resumes it; differences are listed on refusal. */
typedef struct {
    char model[256], optimizer[1024], world[16];
} signature;

static void make_signature(const train_state *t, signature *sig) {
    const kl_model_shape *s = kl_model_get_shape(t->model);
    snprintf(sig->model, sizeof sig->model, "%s V=%d C=%d F=%d L=%d NH=%d NKV=%d HS=%d tied=%d params=%zu",
             kl_arch_name(s->arch), s->V, s->C, s->F, s->L, s->NH, s->NKV, s->HS, s->tie_embeddings,
             kl_model_num_params(t->model));
    /* the optimizer's name and its state layout: buffer names and sizes */
    int n = snprintf(sig->optimizer, sizeof sig->optimizer, "%s", t->optimizer);
    for (int i = 0; i < t->n_buffers && n < (int)sizeof sig->optimizer - 64; i++) {
        const char *name;
        size_t bytes;
        t->buffer(t->ctx, i, &name, &bytes);
        n += snprintf(sig->optimizer + n, sizeof sig->optimizer - (size_t)n, " %s:%zu", name, bytes);
    }
    snprintf(sig->world, sizeof sig->world, "1");
}

static char *config_text(const kl_config *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    kl_config_print(c, f);
    fclose(f);
    return text;
}

static kl_status save_state(const kl_config *c, train_state *t, kl_loader *train, const char *ckpt_root,
                            char *saved_dir, size_t n, char *warning, size_t wn) {
    warning[0] = 0;
    signature sig;
    make_signature(t, &sig);
    const char *keys[] = {"model", "optimizer", "world_size"};
    const char *values[] = {sig.model, sig.optimizer, sig.world};
    kl_ckpt_writer *w;
    KL_TRY(kl_ckpt_writer_begin(&w, ckpt_root, t->step, 0, 1));
    kl_status st = kl_ckpt_put_signature(w, keys, values, 3);
    int64_t np = (int64_t)kl_model_num_params(t->model);
    if (st == KL_OK) st = kl_ckpt_put_f32(w, "params", kl_model_params(t->model), 1, &np);
    for (int i = 0; st == KL_OK && i < t->n_buffers; i++) {
        const char *name;
        size_t bytes;
        void *buf = t->buffer(t->ctx, i, &name, &bytes);
        char key[256];
        snprintf(key, sizeof key, "optimizer/%s", name);
        if (t->fetch) st = t->fetch(t->ctx, i);
        if (st == KL_OK) st = kl_ckpt_put_bytes(w, key, buf, bytes);
    }
    kl_loader_state ls;
    kl_loader_get_state(train, &ls);
    if (st == KL_OK) st = kl_ckpt_put_i64(w, "train/step", t->step);
    if (st == KL_OK) st = kl_ckpt_put_i64(w, "train/bad_streak", t->bad_streak);
    if (st == KL_OK) st = kl_ckpt_put_u64(w, "model/backward_passes", kl_model_backward_passes(t->model));
    if (st == KL_OK) st = kl_ckpt_put_i64(w, "loader/epoch", ls.epoch);
    if (st == KL_OK) st = kl_ckpt_put_i64(w, "loader/sample", ls.sample);
    if (st == KL_OK) st = kl_ckpt_put_u64(w, "loader/fingerprint", ls.fingerprint);
    char *yaml = config_text(c);
    if (st == KL_OK) st = yaml ? kl_ckpt_put_string(w, "config", yaml) : kl_error(KL_ERR_OOM, "checkpoint: config text");
    free(yaml);
    if (st != KL_OK) {
        kl_ckpt_writer_abort(w);
        return st;
    }
    KL_TRY(kl_ckpt_writer_finish(w));
    KL_TRY(kl_ckpt_mark_done(ckpt_root, t->step, 1));
    KL_TRY(kl_ckpt_step_dir(ckpt_root, t->step, saved_dir, n));
    /* a folder the pruner may not delete (it holds someone's file) must not stop the run */
    if (kl_ckpt_prune(ckpt_root, (int)c->train.ckpt_keep, c->train.ckpt_keep_every, NULL) != KL_OK)
        snprintf(warning, wn, "old checkpoints not pruned: %s", kl_last_error());
    return KL_OK;
}

/* On success t->step, t->bad_streak and the model's parameters and backward-pass counter hold the
 * checkpoint's values and every buffer went through apply. */
static kl_status restore_state(const kl_config *c, train_state *t, kl_loader *train, const char *ckpt_root,
                               int *resumed, char *message, size_t n) {
    *resumed = 0;
    message[0] = 0;
    kl_ckpt_choice choice;
    KL_TRY(kl_ckpt_resolve_resume(c->train.resume, ckpt_root, &choice));
    if (choice.warning[0]) snprintf(message, n, "%s", choice.warning);
    if (!choice.found) return KL_OK;

    kl_ckpt_reader *r;
    KL_TRY(kl_ckpt_open(&r, choice.dir, 0));
    signature sig;
    make_signature(t, &sig);
    const char *keys[] = {"model", "optimizer", "world_size"};
    const char *values[] = {sig.model, sig.optimizer, sig.world};
    kl_status st = kl_ckpt_check_signature(r, keys, values, 3);
    if (st == KL_OK) st = kl_ckpt_get_f32(r, "params", kl_model_params(t->model), kl_model_num_params(t->model));
    for (int i = 0; st == KL_OK && i < t->n_buffers; i++) {
        const char *name;
        size_t bytes;
        void *buf = t->buffer(t->ctx, i, &name, &bytes);
        char key[256];
        snprintf(key, sizeof key, "optimizer/%s", name);
        st = kl_ckpt_get_bytes(r, key, buf, bytes);
        if (st == KL_OK && t->apply) st = t->apply(t->ctx, i);
    }
    int64_t step = 0, streak = 0;
    uint64_t passes = 0;
    kl_loader_state ls;
    if (st == KL_OK) st = kl_ckpt_get_i64(r, "train/step", &step);
    if (st == KL_OK) st = kl_ckpt_get_i64(r, "train/bad_streak", &streak);
    if (st == KL_OK) st = kl_ckpt_get_u64(r, "model/backward_passes", &passes);
    if (st == KL_OK) st = kl_ckpt_get_i64(r, "loader/epoch", &ls.epoch);
    if (st == KL_OK) st = kl_ckpt_get_i64(r, "loader/sample", &ls.sample);
    if (st == KL_OK) st = kl_ckpt_get_u64(r, "loader/fingerprint", &ls.fingerprint);
    if (st == KL_OK) st = kl_loader_set_state(train, &ls);
    kl_ckpt_close(r);
    if (st != KL_OK) return kl_error_context(st, "resuming from %s", choice.dir);
    t->step = step;
    t->bad_streak = (int)streak;
    kl_model_set_backward_passes(t->model, passes);
    *resumed = 1;
    size_t used = strlen(message);
    snprintf(message + used, n - used, "%sresumed from %s (step %lld)", used ? "\n" : "", choice.dir,
             (long long)step);
    return KL_OK;
}

/* ---- the CPU trainer: its optimizer's own buffers ---- */

static void *cpu_buffer(void *ctx, int i, const char **name, size_t *bytes) {
    kl_optimizer *o = ctx;
    return o->vt->state_buffer(o, i, name, bytes);
}

static train_state cpu_state(kl_trainer *t) {
    train_state s = {0};
    s.model = t->model;
    s.optimizer = t->opt->vt->name;
    s.n_buffers = t->opt->vt->n_state_buffers(t->opt);
    s.ctx = t->opt;
    s.buffer = cpu_buffer;
    s.step = t->step;
    s.bad_streak = t->bad_streak;
    return s;
}

kl_status kl_train_save_checkpoint(const kl_config *c, kl_trainer *t, kl_loader *train, const char *ckpt_root,
                                   char *saved_dir, size_t n, char *warning, size_t wn) {
    train_state s = cpu_state(t);
    return save_state(c, &s, train, ckpt_root, saved_dir, n, warning, wn);
}

kl_status kl_train_restore_checkpoint(const kl_config *c, kl_trainer *t, kl_loader *train, const char *ckpt_root,
                                      int *resumed, char *message, size_t n) {
    train_state s = cpu_state(t);
    KL_TRY(restore_state(c, &s, train, ckpt_root, resumed, message, n));
    t->step = s.step;
    t->bad_streak = s.bad_streak;
    return KL_OK;
}

/* ---- the GPU trainer: device buffers staged through one host buffer in the CPU layout ---- */

typedef struct {
    kl_trainer_cuda *t;
    float *staging; /* kl_trainer_cuda_num_params floats */
    size_t bytes;
} gpu_ctx;

static void *gpu_buffer(void *ctx, int i, const char **name, size_t *bytes) {
    gpu_ctx *g = ctx;
    *name = kl_trainer_cuda_state_buffer_name(i);
    *bytes = g->bytes;
    return g->staging;
}
static kl_status gpu_fetch(void *ctx, int i) {
    gpu_ctx *g = ctx;
    return kl_trainer_cuda_download_state(g->t, i, g->staging);
}
static kl_status gpu_apply(void *ctx, int i) {
    gpu_ctx *g = ctx;
    return kl_trainer_cuda_upload_state(g->t, i, g->staging);
}

static kl_status gpu_state(kl_trainer_cuda *t, kl_model *host, gpu_ctx *g, train_state *s) {
    if (kl_model_num_params(host) != kl_trainer_cuda_num_params(t))
        return kl_error(KL_ERR_INVALID, "GPU checkpoint: the host model has %zu parameters, the GPU trainer %zu",
                        kl_model_num_params(host), kl_trainer_cuda_num_params(t));
    g->t = t;
    g->bytes = kl_model_num_params(host) * sizeof(float);
    g->staging = kl_malloc(g->bytes ? g->bytes : 1, "checkpoint staging buffer (optimizer state)");
    if (!g->staging) return KL_ERR_OOM;
    memset(s, 0, sizeof *s);
    s->model = host;
    s->optimizer = "adamw"; /* optim/adamw.c's vtable name */
    s->n_buffers = kl_trainer_cuda_n_state_buffers();
    s->ctx = g;
    s->buffer = gpu_buffer;
    s->fetch = gpu_fetch;
    s->apply = gpu_apply;
    s->step = kl_trainer_cuda_steps(t);
    s->bad_streak = kl_trainer_cuda_bad_streak(t);
    return KL_OK;
}

kl_status kl_train_save_checkpoint_cuda(const kl_config *c, kl_trainer_cuda *t, kl_model *host, kl_loader *train,
                                        const char *ckpt_root, char *saved_dir, size_t n, char *warning, size_t wn) {
    gpu_ctx g;
    train_state s;
    KL_TRY(gpu_state(t, host, &g, &s));
    kl_status st = kl_trainer_cuda_download(t, host); /* master weights */
    if (st == KL_OK) {
        kl_model_set_backward_passes(host, kl_trainer_cuda_backward_passes(t));
        st = save_state(c, &s, train, ckpt_root, saved_dir, n, warning, wn);
    }
    free(g.staging);
    return st;
}

kl_status kl_train_restore_checkpoint_cuda(const kl_config *c, kl_trainer_cuda *t, kl_model *host, kl_loader *train,
                                           const char *ckpt_root, int *resumed, char *message, size_t n) {
    gpu_ctx g;
    train_state s;
    KL_TRY(gpu_state(t, host, &g, &s));
    kl_status st = restore_state(c, &s, train, ckpt_root, resumed, message, n);
    free(g.staging);
    if (st != KL_OK || !*resumed) return st;
    /* the moments are on the device already (apply); now the master weights and their BF16 copy */
    KL_TRY(kl_trainer_cuda_upload(t, host));
    kl_trainer_cuda_set_progress(t, s.step, s.bad_streak, kl_model_backward_passes(host));
    return KL_OK;
}
