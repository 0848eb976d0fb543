/* model_config.c — the model's shape from a kiln config: from model.hf_config (a Hugging Face config.json)
 * when given, else from the model.* keys; and the shape-level helpers of model.h (kl_arch_name, the check every
 * shape passes whichever way it came), which need no model. */
#include "model_config.h"

#include <stdio.h>
#include <string.h>

#include "hf_config.h"

const char *kl_arch_name(kl_arch a) {
    switch (a) {
    case KL_ARCH_LLAMA: return "llama";
    case KL_ARCH_QWEN2: return "qwen2";
    case KL_ARCH_QWEN3: return "qwen3";
    case KL_ARCH_MISTRAL: return "mistral";
    }
    return "?";
}

/* Within the range of config key model.NAME (config_keys.c), so a shape read from a Hugging Face
 * config.json meets the same bounds as one written in YAML. */
static kl_status in_key_range(const char *name, double v) {
    const kl_key *k = kl_config_find_key("model", name);
    if (!k) return kl_error(KL_ERR_INTERNAL, "model: no config key model.%s", name);
    if (kl_key_in_range(k, v)) return KL_OK;
    char range[128];
    kl_key_format_range(k, range, sizeof range);
    if (k->type == KL_KEY_INT) return kl_error(KL_ERR_CONFIG, "model: %s must be in %s (got %.0f)", name, range, v);
    return kl_error(KL_ERR_CONFIG, "model: %s must be in %s (got %g)", name, range, v);
}

kl_status kl_model_shape_check(kl_model_shape *s) {
    KL_TRY(in_key_range("vocab_size", s->V));
    KL_TRY(in_key_range("hidden_size", s->C));
    KL_TRY(in_key_range("intermediate_size", s->F));
    KL_TRY(in_key_range("num_layers", s->L));
    KL_TRY(in_key_range("num_heads", s->NH));
    KL_TRY(in_key_range("num_kv_heads", s->NKV));
    KL_TRY(in_key_range("head_dim", s->HS));
    KL_TRY(in_key_range("max_seq_len", s->max_T));
    KL_TRY(in_key_range("rope_theta", s->rope_theta));
    KL_TRY(in_key_range("rms_norm_eps", s->norm_eps));
    if (s->rope_scaling.type == 1) {
        KL_TRY(in_key_range("rope_factor", s->rope_scaling.factor));
        KL_TRY(in_key_range("rope_low_freq_factor", s->rope_scaling.low_freq_factor));
        KL_TRY(in_key_range("rope_high_freq_factor", s->rope_scaling.high_freq_factor));
        KL_TRY(in_key_range("rope_original_max_pos", s->rope_scaling.original_max_pos));
        if (!(s->rope_scaling.high_freq_factor > s->rope_scaling.low_freq_factor))
            return kl_error(KL_ERR_CONFIG, "model: llama3 RoPE scaling needs high_freq_factor (%g) above "
                            "low_freq_factor (%g)", s->rope_scaling.high_freq_factor, s->rope_scaling.low_freq_factor);
    }
    if (s->NKV == 0) s->NKV = s->NH;
    if (s->NH % s->NKV != 0)
        return kl_error(KL_ERR_CONFIG, "model: num_kv_heads (%d) must divide num_heads (%d)", s->NKV, s->NH);
    if (s->HS == 0) {
        if (s->C % s->NH != 0)
            return kl_error(KL_ERR_CONFIG, "model: num_heads (%d) must divide hidden_size (%d) unless head_dim is set",
                            s->NH, s->C);
        s->HS = s->C / s->NH;
        /* in range, so that the checked shape passes again as written out (kiln export writes head_dim) */
        const kl_key *k = kl_config_find_key("model", "head_dim");
        if (k && s->HS > k->max)
            return kl_error(KL_ERR_CONFIG, "model: head_dim = hidden_size / num_heads = %d / %d = %d is above %.0f",
                            s->C, s->NH, s->HS, k->max);
    }
    if (s->HS % 2 != 0) return kl_error(KL_ERR_CONFIG, "model: head_dim must be even for RoPE (got %d)", s->HS);
    if (s->F == 0) {
        /* Llama's rule: 2/3 of 4C, rounded up to a multiple of 256 (of 8 for tiny models) */
        int f = (int)(8.0 * s->C / 3.0);
        int m = s->C >= 512 ? 256 : 8;
        s->F = (f + m - 1) / m * m;
    }
    return KL_OK; /* a derived F is at most 8/3 of hidden_size's bound: inside intermediate_size's */
}

kl_status kl_model_shape_from_config(const kl_config *c, kl_model_shape *s) {
    memset(s, 0, sizeof *s);
    if (c->model.hf_dir[0] || c->model.hf_config[0]) {
        char path[KL_CFG_PATH_MAX + 16];
        if (c->model.hf_dir[0]) snprintf(path, sizeof path, "%s/config.json", c->model.hf_dir);
        else snprintf(path, sizeof path, "%s", c->model.hf_config);
        kl_status st = kl_hf_config_read(path, s);
        if (st != KL_OK) return kl_error_context(st, c->model.hf_dir[0] ? "model.hf_dir" : "model.hf_config");
        return KL_OK;
    }
    /* kl_cfg_arch and kl_arch list the architectures in the same order (config.h says so) */
    s->arch = (kl_arch)c->model.arch;
    s->V = (int)c->model.vocab_size;
    s->C = (int)c->model.hidden_size;
    s->F = (int)c->model.intermediate_size;
    s->L = (int)c->model.num_layers;
    s->NH = (int)c->model.num_heads;
    s->NKV = (int)c->model.num_kv_heads;
    s->HS = (int)c->model.head_dim;
    s->max_T = (int)c->model.max_seq_len;
    s->qkv_bias = s->arch == KL_ARCH_QWEN2;
    s->qk_norm = s->arch == KL_ARCH_QWEN3;
    s->tie_embeddings = c->model.tie_embeddings;
    s->rope_theta = c->model.rope_theta;
    s->rope_scaling.type = c->model.rope_scaling == KL_CFG_ROPE_LLAMA3 ? 1 : 0;
    s->rope_scaling.factor = c->model.rope_factor;
    s->rope_scaling.low_freq_factor = c->model.rope_low_freq_factor;
    s->rope_scaling.high_freq_factor = c->model.rope_high_freq_factor;
    s->rope_scaling.original_max_pos = (int)c->model.rope_original_max_pos;
    s->norm_eps = (float)c->model.rms_norm_eps;
    return kl_model_shape_check(s);
}
