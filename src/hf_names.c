/* hf_names.c — see hf_names.h. The HF names are those of LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM and Qwen3ForCausalLM (they agree for every tensor kiln has). */
#include "hf_names.h"

#include <stdio.h>
#include <string.h>

static void set(kl_hf_part *p, const char *name, int row0, int rows, int ndim) {
    snprintf(p->name, sizeof p->name, "%s", name);
    p->row0 = row0;
    p->rows = rows;
    p->ndim = ndim;
}

int kl_hf_parts(const kl_model_shape *s, const kl_param_info *p, kl_hf_part parts[3]) {
    char buf[96];
    if (p->layer < 0) {
        if (strcmp(p->name, "wte") == 0) set(&parts[0], "model.embed_tokens.weight", 0, p->rows, 2);
        else if (strcmp(p->name, "final_norm") == 0) set(&parts[0], "model.norm.weight", 0, 1, 1);
        else if (strcmp(p->name, "lm_head") == 0) set(&parts[0], "lm_head.weight", 0, p->rows, 2);
        else return 0;
        return 1;
    }
    const char *leaf = strrchr(p->name, '.') + 1;
    const int l = p->layer, q = s->NH * s->HS, kv = s->NKV * s->HS;
#define NAME(fmt) (snprintf(buf, sizeof buf, "model.layers.%d." fmt, l), buf)
    if (strcmp(leaf, "attn_norm") == 0) {
        set(&parts[0], NAME("input_layernorm.weight"), 0, 1, 1);
    } else if (strcmp(leaf, "mlp_norm") == 0) {
        set(&parts[0], NAME("post_attention_layernorm.weight"), 0, 1, 1);
    } else if (strcmp(leaf, "wqkv") == 0 || strcmp(leaf, "bqkv") == 0) {
        /* the bias is stored as one row of Q+2KV columns: its "rows" here are column ranges of that row */
        const int bias = leaf[0] == 'b';
        const char *suf = bias ? "bias" : "weight";
        char n[3][96];
        snprintf(n[0], sizeof n[0], "model.layers.%d.self_attn.q_proj.%s", l, suf);
        snprintf(n[1], sizeof n[1], "model.layers.%d.self_attn.k_proj.%s", l, suf);
        snprintf(n[2], sizeof n[2], "model.layers.%d.self_attn.v_proj.%s", l, suf);
        set(&parts[0], n[0], 0, q, bias ? 1 : 2);
        set(&parts[1], n[1], q, kv, bias ? 1 : 2);
        set(&parts[2], n[2], q + kv, kv, bias ? 1 : 2);
        return 3;
    } else if (strcmp(leaf, "q_norm") == 0) {
        set(&parts[0], NAME("self_attn.q_norm.weight"), 0, 1, 1);
    } else if (strcmp(leaf, "k_norm") == 0) {
        set(&parts[0], NAME("self_attn.k_norm.weight"), 0, 1, 1);
    } else if (strcmp(leaf, "wo") == 0) {
        set(&parts[0], NAME("self_attn.o_proj.weight"), 0, p->rows, 2);
    } else if (strcmp(leaf, "wgu") == 0) {
        char n[2][96];
        snprintf(n[0], sizeof n[0], "model.layers.%d.mlp.gate_proj.weight", l);
        snprintf(n[1], sizeof n[1], "model.layers.%d.mlp.up_proj.weight", l);
        set(&parts[0], n[0], 0, s->F, 2);
        set(&parts[1], n[1], s->F, s->F, 2);
        return 2;
    } else if (strcmp(leaf, "wdown") == 0) {
        set(&parts[0], NAME("mlp.down_proj.weight"), 0, p->rows, 2);
    } else {
        return 0;
    }
#undef NAME
    return 1;
}
