/* train_ckpt.c — what a training checkpoint holds and how a run resumes from one (CPU trainer):
 * master weights, every optimizer state buffer, the step and NaN-streak counters, the model's backward-pass
 * counter (the NVFP4 randomness position), the loader position, and the resolved config as text. The file
 * format, atomic write protocol, discovery and retention are checkpoint.c's. */
#include "train_ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

/* The facts a checkpoint must share with the run that resumes it; differences are listed on refusal. */
typedef struct {
    char model[256], optimizer[1024], world[16];
} signature;

static void make_signature(const kl_trainer *t, signature *sig) {
    const kl_model_shape *s = kl_model_get_shape(t->model);
    snprintf(sig->model, sizeof sig->model, "%s V=%d C=%d F=%d L=%d NH=%d NKV=%d HS=%d tied=%d params=%zu",
             kl_arch_name(s->arch), s->V, s->C, s->F, s->L, s->NH, s->NKV, s->HS, s->tie_embeddings,
             kl_model_num_params(t->model));
    /* the optimizer's name and its state layout: buffer names and sizes */
    kl_optimizer *o = t->opt;
    int n = snprintf(sig->optimizer, sizeof sig->optimizer, "%s", o->vt->name);
    for (int i = 0; i < o->vt->n_state_buffers(o) && n < (int)sizeof sig->optimizer - 64; i++) {
        const char *name;
        size_t bytes;
        o->vt->state_buffer(o, i, &name, &bytes);
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

kl_status kl_train_save_checkpoint(const kl_config *c, kl_trainer *t, kl_loader *train, const char *ckpt_root,
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
    for (int i = 0; st == KL_OK && i < t->opt->vt->n_state_buffers(t->opt); i++) {
        const char *name;
        size_t bytes;
        void *buf = t->opt->vt->state_buffer(t->opt, i, &name, &bytes);
        char key[256];
        snprintf(key, sizeof key, "optimizer/%s", name);
        st = kl_ckpt_put_bytes(w, key, buf, bytes);
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

kl_status kl_train_restore_checkpoint(const kl_config *c, kl_trainer *t, kl_loader *train, const char *ckpt_root,
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
    for (int i = 0; st == KL_OK && i < t->opt->vt->n_state_buffers(t->opt); i++) {
        const char *name;
        size_t bytes;
        void *buf = t->opt->vt->state_buffer(t->opt, i, &name, &bytes);
        char key[256];
        snprintf(key, sizeof key, "optimizer/%s", name);
        st = kl_ckpt_get_bytes(r, key, buf, bytes);
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
