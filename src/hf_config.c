/* hf_config.c — a Hugging Face config.json to and from kiln's model shape (Llama, Mistral, Qwen2, Qwen3).
 * Reads both the transformers v4 layout (rope_theta, rope_scaling) and v5 (rope_parameters). Any field
 * that changes the math and that kiln does not implement (sliding windows, MoE, biases on o_proj or the
 * MLP, activations other than SiLU, other RoPE scalings) is an error naming the field. */
#include "hf_config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kl_status read_text(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return kl_error(KL_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (64 << 20)) {
        fclose(f);
        return kl_error(KL_ERR_INVALID, "%s: not a plausible config.json (size %ld)", path, n);
    }
    char *buf = kl_malloc((size_t)n + 1, "config.json");
    if (!buf) {
        fclose(f);
        return KL_ERR_OOM;
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    *out = buf;
    return KL_OK;
}

/* Integer field: required unless def >= 0 is given. */
static kl_status get_int(const cJSON *j, const char *path, const char *key, int def, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < 0) return kl_error(KL_ERR_INVALID, "%s: missing required field '%s'", path, key);
        *out = def;
        return KL_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 || v->valuedouble > 1e9)
        return kl_error(KL_ERR_INVALID, "%s: field '%s' must be a non-negative integer", path, key);
    *out = (int)v->valuedouble;
    return KL_OK;
}

static kl_status get_num(const cJSON *j, const char *path, const char *key, double def, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return KL_OK;
    }
    if (!cJSON_IsNumber(v)) return kl_error(KL_ERR_INVALID, "%s: field '%s' must be a number", path, key);
    *out = v->valuedouble;
    return KL_OK;
}

static int is_true(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return v && cJSON_IsTrue(v);
}

static kl_status parse(const cJSON *j, const char *path, kl_model_shape *s) {
    memset(s, 0, sizeof *s);
    if (!cJSON_IsObject(j)) return kl_error(KL_ERR_INVALID, "%s: not a JSON object", path);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (!cJSON_IsString(mt)) return kl_error(KL_ERR_INVALID, "%s: missing 'model_type'", path);
    const char *t = mt->valuestring;
    if (strcmp(t, "llama") == 0) s->arch = KL_ARCH_LLAMA;
    else if (strcmp(t, "mistral") == 0) s->arch = KL_ARCH_MISTRAL;
    else if (strcmp(t, "qwen2") == 0) s->arch = KL_ARCH_QWEN2;
    else if (strcmp(t, "qwen3") == 0) s->arch = KL_ARCH_QWEN3;
    else
        return kl_error(KL_ERR_UNSUPPORTED, "%s: model_type '%s' is not supported (llama, mistral, qwen2, qwen3)", path,
                        t);

    /* fields that would change the math */
    static const char *moe_keys[] = {"num_experts", "num_local_experts", "n_routed_experts"};
    for (size_t i = 0; i < sizeof moe_keys / sizeof *moe_keys; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, moe_keys[i]);
        if (v && cJSON_IsNumber(v) && v->valuedouble > 0)
            return kl_error(KL_ERR_UNSUPPORTED, "%s: '%s' = %g: mixture-of-experts models are not supported", path,
                            moe_keys[i], v->valuedouble);
    }
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(j, "sliding_window");
    int sliding = sw && cJSON_IsNumber(sw);
    if (s->arch == KL_ARCH_QWEN2 || s->arch == KL_ARCH_QWEN3) sliding = sliding && is_true(j, "use_sliding_window");
    if (sliding)
        return kl_error(KL_ERR_UNSUPPORTED,
                        "%s: 'sliding_window' = %g: sliding-window attention is not supported (set it to null for "
                        "full attention)",
                        path, sw->valuedouble);
    if (s->arch == KL_ARCH_LLAMA && is_true(j, "attention_bias"))
        return kl_error(KL_ERR_UNSUPPORTED, "%s: 'attention_bias' = true is not supported for llama", path);
    if (s->arch == KL_ARCH_QWEN3 && is_true(j, "attention_bias"))
        return kl_error(KL_ERR_UNSUPPORTED, "%s: 'attention_bias' = true is not supported for qwen3", path);
    if (is_true(j, "mlp_bias")) return kl_error(KL_ERR_UNSUPPORTED, "%s: 'mlp_bias' = true is not supported", path);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return kl_error(KL_ERR_UNSUPPORTED, "%s: 'hidden_act' must be \"silu\"", path);

    KL_TRY(get_int(j, path, "vocab_size", -1, &s->V));
    KL_TRY(get_int(j, path, "hidden_size", -1, &s->C));
    KL_TRY(get_int(j, path, "intermediate_size", -1, &s->F));
    KL_TRY(get_int(j, path, "num_hidden_layers", -1, &s->L));
    KL_TRY(get_int(j, path, "num_attention_heads", -1, &s->NH));
    KL_TRY(get_int(j, path, "num_key_value_heads", s->NH, &s->NKV));
    KL_TRY(get_int(j, path, "head_dim", 0, &s->HS));
    KL_TRY(get_int(j, path, "max_position_embeddings", 2048, &s->max_T));
    double eps;
    KL_TRY(get_num(j, path, "rms_norm_eps", 1e-6, &eps));
    if (!(eps > 0 && eps <= 1)) /* before the float conversion, which is undefined past FLT_MAX */
        return kl_error(KL_ERR_INVALID, "%s: field 'rms_norm_eps' must be in (0, 1] (got %g)", path, eps);
    s->norm_eps = (float)eps;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    /* transformers' default is tied */
    s->tie_embeddings = tie ? cJSON_IsTrue(tie) : 1;
    s->qkv_bias = s->arch == KL_ARCH_QWEN2;
    s->qk_norm = s->arch == KL_ARCH_QWEN3;

    /* RoPE: v5 keeps everything in rope_parameters; v4 has rope_theta + rope_scaling */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    KL_TRY(get_num(j, path, "rope_theta", 10000.0, &s->rope_theta));
    const cJSON *scal = NULL;
    if (cJSON_IsObject(rp)) {
        KL_TRY(get_num(rp, path, "rope_theta", s->rope_theta, &s->rope_theta));
        scal = rp;
    } else if (cJSON_IsObject(rs)) {
        scal = rs;
    }
    s->rope_scaling.type = 0;
    if (scal) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(scal, "rope_type");
        if (!ty) ty = cJSON_GetObjectItemCaseSensitive(scal, "type");
        const char *tn = cJSON_IsString(ty) ? ty->valuestring : "default";
        if (strcmp(tn, "llama3") == 0) {
            s->rope_scaling.type = 1;
            KL_TRY(get_num(scal, path, "factor", 8.0, &s->rope_scaling.factor));
            KL_TRY(get_num(scal, path, "low_freq_factor", 1.0, &s->rope_scaling.low_freq_factor));
            KL_TRY(get_num(scal, path, "high_freq_factor", 4.0, &s->rope_scaling.high_freq_factor));
            KL_TRY(get_int(scal, path, "original_max_position_embeddings", 8192, &s->rope_scaling.original_max_pos));
        } else if (strcmp(tn, "default") != 0) {
            return kl_error(KL_ERR_UNSUPPORTED, "%s: rope type '%s' is not supported (default, llama3)", path, tn);
        }
    }
    kl_status st = kl_model_shape_check(s);
    if (st != KL_OK) return kl_error_context(st, "%s", path);
    return KL_OK;
}

kl_status kl_hf_config_parse(const char *text, const char *name, kl_model_shape *s) {
    cJSON *j = cJSON_Parse(text);
    if (!j) return kl_error(KL_ERR_INVALID, "%s: not valid JSON", name);
    kl_status st = parse(j, name, s);
    cJSON_Delete(j);
    return st;
}

kl_status kl_hf_config_read(const char *path, kl_model_shape *s) {
    char *text = NULL;
    KL_TRY(read_text(path, &text));
    kl_status st = kl_hf_config_parse(text, path, s);
    free(text);
    return st;
}

static const char *hf_architecture(kl_arch a) {
    switch (a) {
    case KL_ARCH_LLAMA: return "LlamaForCausalLM";
    case KL_ARCH_MISTRAL: return "MistralForCausalLM";
    case KL_ARCH_QWEN2: return "Qwen2ForCausalLM";
    case KL_ARCH_QWEN3: return "Qwen3ForCausalLM";
    }
    return "?";
}

/* The shortest decimal that reads back as the same float: norm_eps is held as a float, and 1e-05 should be
 * written as 1e-05 (what transformers wrote), not as the float's exact value 9.99999974737875e-06. */
static double shortest_float_decimal(float x) {
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    return strtod(buf, NULL);
}

/* cJSON's own printing settles for 15 digits when they come within an ulp, so a non-round rope_theta would not
 * survive a round trip through config.json; this writes the digits that read back exactly. */
static void add_exact_number(cJSON *obj, const char *key, double v) {
    char buf[40];
    cJSON_AddRawToObject(obj, key, kl_format_double(v, buf, sizeof buf));
}

char *kl_hf_config_json(const kl_model_shape *s) {
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(hf_architecture(s->arch)));
    cJSON_AddStringToObject(j, "model_type", kl_arch_name(s->arch));
    cJSON_AddNumberToObject(j, "vocab_size", s->V);
    cJSON_AddNumberToObject(j, "hidden_size", s->C);
    cJSON_AddNumberToObject(j, "intermediate_size", s->F);
    cJSON_AddNumberToObject(j, "num_hidden_layers", s->L);
    cJSON_AddNumberToObject(j, "num_attention_heads", s->NH);
    cJSON_AddNumberToObject(j, "num_key_value_heads", s->NKV);
    cJSON_AddNumberToObject(j, "head_dim", s->HS);
    cJSON_AddNumberToObject(j, "max_position_embeddings", s->max_T);
    cJSON_AddNumberToObject(j, "rms_norm_eps", shortest_float_decimal(s->norm_eps));
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddBoolToObject(j, "tie_word_embeddings", s->tie_embeddings);
    cJSON_AddNullToObject(j, "sliding_window");
    if (s->arch == KL_ARCH_QWEN2 || s->arch == KL_ARCH_QWEN3) cJSON_AddBoolToObject(j, "use_sliding_window", 0);
    if (s->arch == KL_ARCH_LLAMA || s->arch == KL_ARCH_QWEN3) cJSON_AddBoolToObject(j, "attention_bias", 0);
    add_exact_number(j, "rope_theta", s->rope_theta);
    cJSON *rp = cJSON_AddObjectToObject(j, "rope_parameters");
    add_exact_number(rp, "rope_theta", s->rope_theta);
    if (s->rope_scaling.type == 1) {
        cJSON_AddStringToObject(rp, "rope_type", "llama3");
        add_exact_number(rp, "factor", s->rope_scaling.factor);
        add_exact_number(rp, "low_freq_factor", s->rope_scaling.low_freq_factor);
        add_exact_number(rp, "high_freq_factor", s->rope_scaling.high_freq_factor);
        cJSON_AddNumberToObject(rp, "original_max_position_embeddings", s->rope_scaling.original_max_pos);
    } else {
        cJSON_AddStringToObject(rp, "rope_type", "default");
    }
    cJSON_AddStringToObject(j, "torch_dtype", "float32");
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    return text;
}
