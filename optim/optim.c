/* optim.c — creating an optimizer by kind, and what every optimizer shares. */
#include "optim.h"

#include <stdlib.h>
#include <string.h>

kl_status kl_optimizer_create(kl_optimizer **out, const kl_opt_settings *s, const kl_opt_param *params, int n) {
    *out = NULL;
    switch (s->kind) {
    case KL_OPT_ADAMW: return kl_adamw_create(out, s, params, n);
    case KL_OPT_DASH: return kl_error(KL_ERR_UNSUPPORTED, "optim.name: dash is not available yet (use adamw)");
    case KL_OPT_DCT_ADAMW: return kl_error(KL_ERR_UNSUPPORTED, "optim.name: dct_adamw is not available yet (use adamw)");
    }
    return kl_error(KL_ERR_INVALID, "unknown optimizer kind %d", (int)s->kind);
}

void kl_optimizer_free(kl_optimizer *o) {
    if (o) o->vt->destroy(o);
}
