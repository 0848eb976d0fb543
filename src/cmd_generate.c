/* cmd_generate.c — `kiln generate`: sample text from a trained model. The model comes from a run's
 * folder (CONFIG.yaml -> runs/<name>/model) or any Hugging Face folder (--model DIR). Byte-level models
 * (vocab 256 or 257) take and print text directly; other vocabularies take --prompt-ids and print ids
 * (scripts/generate.py wraps this with a Hugging Face tokenizer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "model_io.h"
#include "sampler.h"

static int usage(FILE *f, int code) {
    fprintf(f, "usage: kiln generate (CONFIG.yaml | --model DIR) [options] [section.key=value ...]\n\n"
               "Samples a continuation from the model a training run saved (<run dir>/model) or from a Hugging\n"
               "Face folder (--model). Options:\n"
               "  --prompt TEXT       prompt text (byte-level models; default: empty)\n"
               "  --prompt-ids LIST   prompt as comma-separated token ids (any vocabulary)\n"
               "  --tokens N          tokens to generate (default 200)\n"
               "  --temperature T     0 = greedy (default 0.8)\n"
               "  --top-k K           keep the K most likely tokens (default 0 = all)\n"
               "  --top-p P           nucleus: smallest set with probability >= P (default 0.95)\n"
               "  --seed S            sampling seed (default 1)\n"
               "  --samples N         independent samples (default 1)\n"
               "  --ids               print token ids instead of text\n");
    return code;
}

int kl_cmd_generate(int argc, char **argv) {
    if (kl_wants_help(argc, argv)) return usage(stdout, 0);
    const char *config_path = NULL, *model_dir = NULL, *prompt = "", *prompt_ids = NULL;
    int n_tokens = 200, samples = 1, print_ids = 0;
    kl_sampler_opts so = {0.8f, 0, 0.95f, 1};
    char **overrides = calloc((size_t)argc + 1, sizeof *overrides);
    int n_over = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE                                                                                                   \
    if (!v) {                                                                                                        \
        fprintf(stderr, "kiln generate: %s needs a value\n", a);                                                     \
        free(overrides);                                                                                             \
        return 2;                                                                                                    \
    }                                                                                                                \
    i++
        if (strcmp(a, "--model") == 0) { NEED_VALUE; model_dir = v; }
        else if (strcmp(a, "--prompt") == 0) { NEED_VALUE; prompt = v; }
        else if (strcmp(a, "--prompt-ids") == 0) { NEED_VALUE; prompt_ids = v; }
        else if (strcmp(a, "--tokens") == 0) { NEED_VALUE; n_tokens = atoi(v); }
        else if (strcmp(a, "--temperature") == 0) { NEED_VALUE; so.temperature = strtof(v, NULL); }
        else if (strcmp(a, "--top-k") == 0) { NEED_VALUE; so.top_k = atoi(v); }
        else if (strcmp(a, "--top-p") == 0) { NEED_VALUE; so.top_p = strtof(v, NULL); }
        else if (strcmp(a, "--seed") == 0) { NEED_VALUE; so.seed = strtoull(v, NULL, 10); }
        else if (strcmp(a, "--samples") == 0) { NEED_VALUE; samples = atoi(v); }
        else if (strcmp(a, "--ids") == 0) print_ids = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "kiln generate: unknown option '%s'\n", a);
            free(overrides);
            return usage(stderr, 2);
        } else if (!config_path && !model_dir && !strchr(a, '=')) config_path = a;
        else overrides[n_over++] = argv[i];
#undef NEED_VALUE
    }
    if (n_tokens < 1 || samples < 1 || !(so.top_p > 0 && so.top_p <= 1) || so.temperature < 0 || so.top_k < 0) {
        fprintf(stderr, "kiln generate: need --tokens >= 1, --samples >= 1, 0 < --top-p <= 1, --temperature >= 0, "
                        "--top-k >= 0\n");
        free(overrides);
        return 2;
    }
    static kl_config cfg;
    char dir[KL_CFG_PATH_MAX + 16];
    if (!model_dir) {
        if (!config_path) {
            free(overrides);
            return usage(stderr, 2);
        }
        kl_status st = kl_config_parse_args(&cfg, config_path, n_over, overrides);
        if (st != KL_OK) {
            free(overrides);
            return kl_config_cli_error("generate", st);
        }
        char run_dir[KL_CFG_PATH_MAX];
        kl_config_run_dir(&cfg, run_dir, sizeof run_dir);
        snprintf(dir, sizeof dir, "%s/model", run_dir);
        model_dir = dir;
    } else if (n_over > 0) {
        fprintf(stderr, "kiln generate: unexpected argument '%s'\n", overrides[0]);
        free(overrides);
        return 2;
    }
    free(overrides);

    kl_model *m = NULL;
    kl_status st = kl_model_load(&m, model_dir);
    if (st != KL_OK) {
        fprintf(stderr, "kiln generate: %s (train first, or pass --model DIR)\n", kl_last_error());
        return st == KL_ERR_IO ? 2 : kl_config_cli_error("generate", st);
    }
    const kl_model_shape *s = kl_model_get_shape(m);
    const int byte_level = s->V == 256 || s->V == 257;
    int cap = s->max_T, n0 = 0;
    int32_t *ctx = malloc((size_t)cap * sizeof *ctx);
    float *logits = malloc((size_t)s->V * sizeof *logits), *p = malloc((size_t)s->V * sizeof *p);
    int *idx = malloc((size_t)s->V * sizeof *idx);
    int rc = 0;
    if (!ctx || !logits || !p || !idx) {
        fprintf(stderr, "kiln generate: out of memory\n");
        rc = 1;
        goto done;
    }
    if (prompt_ids) {
        for (const char *q = prompt_ids; *q && n0 < cap;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q || v < 0 || v >= s->V) {
                fprintf(stderr, "kiln generate: --prompt-ids: '%s' is not a token id in [0, %d)\n", q, s->V);
                rc = 2;
                goto done;
            }
            ctx[n0++] = (int32_t)v;
            q = *end == ',' ? end + 1 : end;
        }
    } else if (prompt[0]) {
        if (!byte_level) {
            fprintf(stderr, "kiln generate: this model's vocabulary (%d) is not byte-level: use --prompt-ids or "
                            "scripts/generate.py with its tokenizer\n", s->V);
            rc = 2;
            goto done;
        }
        for (const unsigned char *q = (const unsigned char *)prompt; *q && n0 < cap; q++) ctx[n0++] = *q;
    }
    if (n0 == 0) ctx[n0++] = byte_level ? '\n' : 0; /* something to condition on */

    for (int sample = 0; sample < samples; sample++) {
        int n = n0;
        if (samples > 1) printf("--- sample %d\n", sample + 1);
        if (print_ids)
            for (int i = 0; i < n0; i++) printf("%s%d", i ? "," : "", ctx[i]);
        else if (prompt[0])
            fputs(prompt, stdout);
        for (int t = 0; t < n_tokens; t++) {
            /* the window slides when the context is full; each step recomputes it (simple, CPU-sized) */
            int start = n >= cap ? n - cap + 1 : 0;
            if (start > 0) {
                memmove(ctx, ctx + start, (size_t)(n - start) * sizeof *ctx);
                n -= start;
            }
            if ((st = kl_model_forward(m, ctx, 1, n)) != KL_OK || (st = kl_model_logits_at(m, 0, n - 1, logits)) != KL_OK) {
                fprintf(stderr, "kiln generate: %s\n", kl_last_error());
                rc = 1;
                goto done;
            }
            kl_sampler_opts o = so;
            o.seed = so.seed + (uint64_t)sample * 0x9E3779B97F4A7C15ull;
            int tok = kl_sample(logits, s->V, &o, (uint64_t)t, p, idx);
            ctx[n++] = tok;
            if (print_ids) printf(",%d", tok);
            else if (tok < 256) putchar(tok);
            fflush(stdout);
        }
        putchar('\n');
    }
done:
    free(ctx);
    free(logits);
    free(p);
    free(idx);
    kl_model_free(m);
    return rc;
}
