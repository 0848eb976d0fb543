/* optim.c — creating an optimizer by kind, and what every optimizer shares: the sharding description
 * and the named state-buffer table behind the checkpoint interface. */
#include "optim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kl_status kl_optimizer_create(kl_optimizer **out, const kl_opt_settings *s, const kl_opt_param *params, int n) {
    *out = NULL;
    switch (s->kind) {
    case KL_OPT_ADAMW: return kl_adamw_create(out, s, params, n);
    case KL_OPT_DASH: return kl_dash_create(out, s, params, n);
    case KL_OPT_DCT_ADAMW: return kl_dct_adamw_create(out, s, params, n);
    }
    return kl_error(KL_ERR_INVALID, "unknown optimizer kind %d", (int)s->kind);
}

void kl_optimizer_free(kl_optimizer *o) {
    if (o) o->vt->destroy(o);
}

kl_opt_sharding kl_optimizer_sharding(const kl_optimizer *o) {
    kl_opt_sharding sh = {KL_SHARD_ELEMENT, 0};
    switch (o->settings.kind) {
    case KL_OPT_ADAMW: break;
    case KL_OPT_DASH:
        sh.granularity = KL_SHARD_BLOCK;
        sh.block = o->settings.dash.block;
        break;
    case KL_OPT_DCT_ADAMW: sh.granularity = KL_SHARD_PARAM; break;
    }
    return sh;
}

kl_status kl_opt_state_add(kl_opt_state_table *t, void **data, size_t bytes, const char *fmt, ...) {
    *data = NULL;
    kl_opt_state_buf b;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b.name, sizeof b.name, fmt, ap);
    va_end(ap);
    if (t->n == t->cap) {
        const int cap = t->cap ? 2 * t->cap : 16;
        kl_opt_state_buf *nb = (kl_opt_state_buf *)realloc(t->bufs, sizeof *nb * (size_t)cap);
        if (!nb) return kl_error(KL_ERR_OOM, "out of host memory for the optimizer state table (%s)", b.name);
        t->bufs = nb;
        t->cap = cap;
    }
    b.data = kl_calloc(bytes ? bytes : 1, 1, b.name);
    if (!b.data) return KL_ERR_OOM;
    b.bytes = bytes;
    t->bufs[t->n++] = b;
    *data = b.data;
    return KL_OK;
}

size_t kl_opt_state_total(const kl_opt_state_table *t) {
    size_t s = 0;
    for (int i = 0; i < t->n; i++) s += t->bufs[i].bytes;
    return s;
}

void kl_opt_state_free(kl_opt_state_table *t) {
    for (int i = 0; i < t->n; i++) free(t->bufs[i].data);
    free(t->bufs);
    memset(t, 0, sizeof *t);
}
