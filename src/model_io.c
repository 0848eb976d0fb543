/* model_io.c — see model_io.h. The name and row mapping is hf_names.c's; kiln's fused wqkv / wgu are
 * written as HF's separate q/k/v and gate/up tensors (row blocks of the fused tensor) and read back so. */
#include "model_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_config.h"
#include "hf_names.h"
#include "safetensors.h"

static kl_status write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return kl_error(KL_ERR_IO, "%s: cannot create (%s)", path, strerror(errno));
    int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (fclose(f) != 0 || !ok) return kl_error(KL_ERR_IO, "%s: write failed", path);
    return KL_OK;
}

static kl_status copy_if_present(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) return KL_OK; /* optional file */
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return kl_error(KL_ERR_IO, "cannot create %s (%s)", to, strerror(errno));
    }
    char buf[1 << 16];
    size_t k;
    int ok = 1;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0) ok &= fwrite(buf, 1, k, out) == k;
    ok &= !ferror(in);
    fclose(in);
    if (fclose(out) != 0 || !ok) return kl_error(KL_ERR_IO, "copying %s to %s failed", from, to);
    return KL_OK;
}

kl_status kl_model_copy_tokenizer(const char *from, const char *to) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "vocab.json",     "merges.txt",            "generation_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char a[1200], b[1200];
        snprintf(a, sizeof a, "%s/%s", from, files[i]);
        snprintf(b, sizeof b, "%s/%s", to, files[i]);
        KL_TRY(copy_if_present(a, b));
    }
    return KL_OK;
}

kl_status kl_model_save(kl_model *m, const char *dir) {
    const kl_model_shape *s = kl_model_get_shape(m);
    char path[1200];
    char *cfg = kl_hf_config_json(s);
    if (!cfg) return kl_error(KL_ERR_OOM, "config.json: out of memory");
    snprintf(path, sizeof path, "%s/config.json", dir);
    kl_status st = write_text(path, cfg);
    free(cfg);
    if (st != KL_OK) return st;

    kl_st_writer *w;
    KL_TRY(kl_st_writer_new(&w));
    const float *params = kl_model_params(m);
    for (int i = 0; i < kl_model_num_param_tensors(m) && st == KL_OK; i++) {
        const kl_param_info *p = kl_model_param_info(m, i);
        kl_hf_part parts[3];
        int n = kl_hf_parts(s, p, parts);
        for (int k = 0; k < n && st == KL_OK; k++) {
            /* a vector's "rows" are ranges of its single row */
            const int vec = parts[k].ndim == 1;
            int64_t shape[2] = {parts[k].rows, vec ? 1 : p->cols};
            const float *data = params + p->offset + (size_t)parts[k].row0 * (vec ? 1 : (size_t)p->cols);
            if (vec && p->rows == 1 && n == 1) shape[0] = p->cols;
            st = kl_st_writer_add(w, parts[k].name, KL_ST_F32, vec ? 1 : 2, shape, data);
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st == KL_OK) st = kl_st_write(w, path);
    kl_st_writer_free(w);
    return st;
}

kl_status kl_model_load(kl_model **out, const char *dir) {
    *out = NULL;
    char path[1200];
    kl_model_shape s;
    snprintf(path, sizeof path, "%s/config.json", dir);
    KL_TRY(kl_hf_config_read(path, &s));
    /* model.safetensors, or the shards model.safetensors.index.json names */
    kl_st_dir f;
    KL_TRY(kl_st_dir_open(&f, dir));
    if (f.sharded) snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    else snprintf(path, sizeof path, "%s/model.safetensors", dir);
    kl_model *m = NULL;
    kl_status st = kl_model_create(&m, &s);
    if (st != KL_OK) {
        kl_st_dir_close(&f);
        return st;
    }
    char *used = calloc((size_t)f.n + 1, 1);
    if (!used) st = kl_error(KL_ERR_OOM, "%s: out of memory", path);
    char missing[1024] = "";
    float *params = kl_model_params(m);
    for (int i = 0; i < kl_model_num_param_tensors(m) && st == KL_OK; i++) {
        const kl_param_info *p = kl_model_param_info(m, i);
        kl_hf_part parts[3];
        int n = kl_hf_parts(&s, p, parts);
        for (int k = 0; k < n && st == KL_OK; k++) {
            const int at = kl_st_dir_index(&f, parts[k].name);
            if (at < 0) {
                size_t len = strlen(missing);
                if (len < sizeof missing - 100)
                    snprintf(missing + len, sizeof missing - len, "%s%s", len ? ", " : "", parts[k].name);
                continue;
            }
            const kl_st_tensor *t = f.tensors[at];
            const char *file = f.files[f.file_of[at]].path;
            used[at] = 1;
            const int vec = parts[k].ndim == 1;
            const int64_t want_rows = vec ? (n == 1 ? p->cols : parts[k].rows) : parts[k].rows;
            const int64_t want_cols = vec ? 1 : p->cols;
            if (t->ndim != (vec ? 1 : 2) || t->shape[0] != want_rows || (!vec && t->shape[1] != want_cols)) {
                char got[64], want[64];
                if (t->ndim == 2) snprintf(got, sizeof got, "[%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
                else snprintf(got, sizeof got, "%d-D, first dim %lld", t->ndim, t->ndim ? (long long)t->shape[0] : 0LL);
                if (vec) snprintf(want, sizeof want, "[%lld]", (long long)want_rows);
                else snprintf(want, sizeof want, "[%lld, %lld]", (long long)want_rows, (long long)want_cols);
                st = kl_error(KL_ERR_INVALID, "%s: tensor '%s' has shape %s, config.json implies %s", file, t->name, got,
                              want);
                break;
            }
            float *dst = params + p->offset + (size_t)parts[k].row0 * (vec ? 1 : (size_t)p->cols);
            st = kl_st_read_f32(t, dst, t->numel, file);
        }
    }
    if (st == KL_OK && missing[0]) st = kl_error(KL_ERR_INVALID, "%s: missing tensors: %s", path, missing);
    if (st == KL_OK) {
        char extra[1024] = "";
        for (int i = 0; i < f.n; i++) {
            if (used[i]) continue;
            /* transformers may store the tied head anyway; it must then equal the embedding */
            if (s.tie_embeddings && strcmp(f.tensors[i]->name, "lm_head.weight") == 0) continue;
            size_t len = strlen(extra);
            if (len < sizeof extra - 100)
                snprintf(extra + len, sizeof extra - len, "%s%s", len ? ", " : "", f.tensors[i]->name);
        }
        if (extra[0]) st = kl_error(KL_ERR_INVALID, "%s: unexpected tensors: %s", path, extra);
    }
    free(used);
    kl_st_dir_close(&f);
    if (st != KL_OK) {
        kl_model_free(m);
        return st;
    }
    *out = m;
    return KL_OK;
}
