/* hf_config_fuzz.c — libFuzzer target for the Hugging Face config.json reader (kl_hf_config_parse). Any text
 * must be either refused with a message that names the file, or accepted as a shape that passes
 * kl_model_shape_check unchanged and comes back field for field from the config.json kiln writes for it
 * (what `kiln export` saves). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_config.h"
#include "kl_base.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_shape(const kl_model_shape *a, const kl_model_shape *b) {
    const int scaled = a->rope_scaling.type == 1;
    return a->arch == b->arch && a->V == b->V && a->C == b->C && a->F == b->F && a->L == b->L && a->NH == b->NH &&
           a->NKV == b->NKV && a->HS == b->HS && a->max_T == b->max_T && a->qkv_bias == b->qkv_bias &&
           a->qk_norm == b->qk_norm && a->tie_embeddings == b->tie_embeddings && a->rope_theta == b->rope_theta &&
           a->norm_eps == b->norm_eps && a->rope_scaling.type == b->rope_scaling.type &&
           (!scaled || (a->rope_scaling.factor == b->rope_scaling.factor &&
                        a->rope_scaling.low_freq_factor == b->rope_scaling.low_freq_factor &&
                        a->rope_scaling.high_freq_factor == b->rope_scaling.high_freq_factor &&
                        a->rope_scaling.original_max_pos == b->rope_scaling.original_max_pos));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    kl_model_shape s, checked, back;
    if (kl_hf_config_parse(text, "fuzz/config.json", &s) != KL_OK) {
        if (strncmp(kl_last_error(), "fuzz/config.json", 16) != 0) {
            fprintf(stderr, "message: %s\n", kl_last_error());
            abort(); /* a refusal must name the file */
        }
        free(text);
        return 0;
    }
    checked = s;
    if (kl_model_shape_check(&checked) != KL_OK || !same_shape(&s, &checked)) abort(); /* checked and complete */
    char *json = kl_hf_config_json(&s);
    if (!json) abort();
    if (kl_hf_config_parse(json, "written/config.json", &back) != KL_OK) {
        fprintf(stderr, "message: %s\nwritten:\n%s\n", kl_last_error(), json);
        abort();
    }
    if (!same_shape(&s, &back)) {
        fprintf(stderr, "written:\n%s\n", json);
        abort();
    }
    free(json);
    free(text);
    return 0;
}
