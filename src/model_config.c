/* model_config.c — the model's shape from a kiln config: from model.hf_config (a Hugging Face config.json)
 * when given, else from the model.* keys. */
#include "model_config.h"

#include <stdio.h>
#include <string.h>

#include "hf_config.h"

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
