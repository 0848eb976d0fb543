/* safetensors.c — see safetensors.h. Parsing never trusts a number from the file: every size and offset is
 * range-checked (with overflow checks) before it is used, and tensors are handed out only after the whole
 * header has been validated. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER_BYTES (100u << 20) /* the reference implementation's limit */

static const struct {
    const char *name;
    int bytes;
} dtypes[] = {
    [KL_ST_F32] = {"F32", 4},   [KL_ST_F16] = {"F16", 2}, [KL_ST_BF16] = {"BF16", 2}, [KL_ST_F64] = {"F64", 8},
    [KL_ST_I64] = {"I64", 8},   [KL_ST_I32] = {"I32", 4}, [KL_ST_I16] = {"I16", 2},   [KL_ST_I8] = {"I8", 1},
    [KL_ST_U8] = {"U8", 1},     [KL_ST_BOOL] = {"BOOL", 1}, [KL_ST_F8_E4M3] = {"F8_E4M3", 1},
    [KL_ST_F8_E5M2] = {"F8_E5M2", 1},
};
#define N_DTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

uint16_t kl_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float kl_bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

float kl_f16_to_f32(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
    float v;
    if (exp == 0) v = ldexpf((float)man, -24);
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexpf((float)(man | 1024), exp - 25);
    return sign ? -v : v;
}

static int json_nonneg_int(const cJSON *j, int64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return 0;
    *out = (int64_t)d;
    return 1;
}

static int by_offset(const void *a, const void *b) {
    const kl_st_tensor *x = *(const kl_st_tensor *const *)a, *y = *(const kl_st_tensor *const *)b;
    if (x->data != y->data) return x->data < y->data ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const kl_st_tensor *const *)a)->name, (*(const kl_st_tensor *const *)b)->name);
}

static void free_tensors(kl_st_file *f) {
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    f->tensors = NULL;
    f->n = 0;
}

static kl_status parse_entry(kl_st_tensor *t, const cJSON *e, const uint8_t *data, uint64_t data_size,
                             const char *label) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return kl_error(KL_ERR_INVALID, "%s: tensor '%s' is not a JSON object", label, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return kl_error(KL_ERR_INVALID, "%s: tensor '%s' has no string 'dtype'", label, name);
    int d = -1;
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(dt->valuestring, dtypes[i].name) == 0) d = i;
    if (d < 0) return kl_error(KL_ERR_INVALID, "%s: tensor '%s' has unknown dtype '%.32s'", label, name, dt->valuestring);
    if (!cJSON_IsArray(sh)) return kl_error(KL_ERR_INVALID, "%s: tensor '%s' has no 'shape' list", label, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > KL_ST_MAX_DIMS)
        return kl_error(KL_ERR_INVALID, "%s: tensor '%s' has %d dimensions (at most %d)", label, name, nd, KL_ST_MAX_DIMS);
    uint64_t numel = 1;
    for (int i = 0; i < nd; i++) {
        int64_t v;
        if (!json_nonneg_int(cJSON_GetArrayItem(sh, i), &v))
            return kl_error(KL_ERR_INVALID, "%s: tensor '%s': shape[%d] is not a non-negative integer", label, name, i);
        if (v != 0 && numel > (UINT64_C(1) << 62) / (uint64_t)v)
            return kl_error(KL_ERR_INVALID, "%s: tensor '%s': shape overflows", label, name);
        numel *= (uint64_t)v;
        t->shape[i] = v;
    }
    int64_t b, e2;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_nonneg_int(cJSON_GetArrayItem(off, 0), &b) ||
        !json_nonneg_int(cJSON_GetArrayItem(off, 1), &e2))
        return kl_error(KL_ERR_INVALID, "%s: tensor '%s' needs 'data_offsets': [begin, end] of non-negative integers",
                        label, name);
    if (b > e2 || (uint64_t)e2 > data_size)
        return kl_error(KL_ERR_INVALID, "%s: tensor '%s': data_offsets [%lld, %lld] outside the %llu data bytes", label,
                        name, (long long)b, (long long)e2, (unsigned long long)data_size);
    if (numel * (uint64_t)dtypes[d].bytes != (uint64_t)(e2 - b))
        return kl_error(KL_ERR_INVALID, "%s: tensor '%s': shape x %s size = %llu bytes but data_offsets span %lld", label,
                        name, dtypes[d].name, (unsigned long long)(numel * (uint64_t)dtypes[d].bytes),
                        (long long)(e2 - b));
    t->name = strdup(name);
    if (!t->name) return kl_error(KL_ERR_OOM, "%s: out of memory", label);
    t->dtype = (kl_st_dtype)d;
    t->ndim = nd;
    t->numel = (int64_t)numel;
    t->data = data + b;
    t->nbytes = (size_t)(e2 - b);
    return KL_OK;
}

kl_status kl_st_parse(kl_st_file *f, const uint8_t *buf, size_t size, const char *label) {
    f->n = 0;
    f->tensors = NULL;
    if (size < 8) return kl_error(KL_ERR_INVALID, "%s: %zu bytes is too short for a safetensors file", label, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen < 2 || hlen > MAX_HEADER_BYTES || hlen > size - 8)
        return kl_error(KL_ERR_INVALID, "%s: header length %llu is impossible for a file of %zu bytes", label,
                        (unsigned long long)hlen, size);
    cJSON *j = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return kl_error(KL_ERR_INVALID, "%s: the header is not a JSON object", label);
    }
    const uint8_t *data = buf + 8 + hlen;
    const uint64_t data_size = size - 8 - hlen;
    int count = 0;
    for (const cJSON *e = j->child; e; e = e->next) count += strcmp(e->string, "__metadata__") != 0;
    kl_status st = KL_OK;
    kl_st_tensor **order = NULL;
    f->tensors = calloc((size_t)count + 1, sizeof *f->tensors);
    order = calloc((size_t)count + 1, sizeof *order);
    if (!f->tensors || !order) {
        st = kl_error(KL_ERR_OOM, "%s: out of memory for %d tensors", label, count);
        goto done;
    }
    for (const cJSON *e = j->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) {
                st = kl_error(KL_ERR_INVALID, "%s: '__metadata__' must be an object", label);
                goto done;
            }
            continue;
        }
        if ((st = parse_entry(&f->tensors[f->n], e, data, data_size, label)) != KL_OK) goto done;
        order[f->n] = &f->tensors[f->n];
        f->n++;
    }
    qsort(order, (size_t)f->n, sizeof *order, by_name);
    for (int i = 1; i < f->n; i++)
        if (strcmp(order[i]->name, order[i - 1]->name) == 0) {
            st = kl_error(KL_ERR_INVALID, "%s: tensor '%s' appears twice in the header", label, order[i]->name);
            goto done;
        }
    /* the data must be exactly the tensors back to back: no gaps, no overlaps, nothing after */
    qsort(order, (size_t)f->n, sizeof *order, by_offset);
    const uint8_t *expect = data;
    for (int i = 0; i < f->n; i++) {
        if (order[i]->data != expect) {
            st = kl_error(KL_ERR_INVALID, "%s: tensor '%s' starts at data byte %lld, expected %lld (%s)", label,
                          order[i]->name, (long long)(order[i]->data - data), (long long)(expect - data),
                          order[i]->data < expect ? "overlap" : "gap");
            goto done;
        }
        expect += order[i]->nbytes;
    }
    if ((uint64_t)(expect - data) != data_size)
        st = kl_error(KL_ERR_INVALID, "%s: %llu bytes of data follow the last tensor", label,
                      (unsigned long long)(data_size - (uint64_t)(expect - data)));
done:
    free(order);
    cJSON_Delete(j);
    if (st != KL_OK) free_tensors(f);
    return st;
}

kl_status kl_st_open(kl_st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return kl_error(KL_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return kl_error(KL_ERR_IO, "%s: not a regular file", path);
    }
    f->size = (size_t)sb.st_size;
    if (f->size > 0) {
        f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            close(fd);
            return kl_error(KL_ERR_IO, "%s: cannot map (%s)", path, strerror(errno));
        }
    }
    close(fd);
    kl_status st = kl_st_parse(f, f->map, f->size, path);
    if (st != KL_OK) kl_st_close(f);
    return st;
}

void kl_st_close(kl_st_file *f) {
    free_tensors(f);
    if (f->map) munmap(f->map, f->size);
    f->map = NULL;
    f->size = 0;
}

const kl_st_tensor *kl_st_find(const kl_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

kl_status kl_st_read_f32(const kl_st_tensor *t, float *dst, int64_t count, const char *label) {
    if (count != t->numel)
        return kl_error(KL_ERR_INVALID, "%s: tensor '%s' has %lld elements, expected %lld", label, t->name,
                        (long long)t->numel, (long long)count);
    const uint8_t *p = t->data;
    for (int64_t i = 0; i < count; i++) {
        switch (t->dtype) {
        case KL_ST_F32: memcpy(&dst[i], p + 4 * i, 4); break;
        case KL_ST_F64: {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
            break;
        }
        case KL_ST_BF16: dst[i] = kl_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8)); break;
        case KL_ST_F16: dst[i] = kl_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8)); break;
        default:
            return kl_error(KL_ERR_INVALID, "%s: tensor '%s' has dtype %s; expected F32, F64, BF16 or F16", label,
                            t->name, dtypes[t->dtype].name);
        }
    }
    return KL_OK;
}

/* ---- writer ------------------------------------------------------------------------------------ */

typedef struct {
    char *name;
    kl_st_dtype dtype;
    int ndim;
    int64_t shape[KL_ST_MAX_DIMS];
    int64_t numel;
    const float *data;
} pending;

struct kl_st_writer {
    int n, cap;
    pending *t;
};

kl_status kl_st_writer_new(kl_st_writer **w) {
    *w = kl_calloc(1, sizeof **w, "safetensors writer");
    return *w ? KL_OK : KL_ERR_OOM;
}

void kl_st_writer_free(kl_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

kl_status kl_st_writer_add(kl_st_writer *w, const char *name, kl_st_dtype dtype, int ndim, const int64_t *shape,
                           const float *data) {
    if (dtype != KL_ST_F32 && dtype != KL_ST_BF16)
        return kl_error(KL_ERR_INVALID, "safetensors writer: '%s': only F32 and BF16 can be written", name);
    if (ndim < 0 || ndim > KL_ST_MAX_DIMS) return kl_error(KL_ERR_INVALID, "safetensors writer: '%s': bad ndim", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        pending *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return kl_error(KL_ERR_OOM, "safetensors writer: out of memory");
        w->t = t;
        w->cap = cap;
    }
    pending *p = &w->t[w->n];
    p->name = strdup(name);
    if (!p->name) return kl_error(KL_ERR_OOM, "safetensors writer: out of memory");
    p->dtype = dtype;
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= shape[i];
    }
    p->data = data;
    w->n++;
    return KL_OK;
}

static kl_status write_all(FILE *f, const void *p, size_t n, const char *path) {
    if (fwrite(p, 1, n, f) != n) return kl_error(KL_ERR_IO, "%s: write failed (%s)", path, strerror(errno));
    return KL_OK;
}

kl_status kl_st_write(kl_st_writer *w, const char *path) {
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        pending *p = &w->t[i];
        cJSON *e = cJSON_AddObjectToObject(h, p->name);
        cJSON_AddStringToObject(e, "dtype", dtypes[p->dtype].name);
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < p->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)p->shape[d]));
        uint64_t bytes = (uint64_t)p->numel * (uint64_t)dtypes[p->dtype].bytes;
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + bytes)));
        off += bytes;
    }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!text) return kl_error(KL_ERR_OOM, "%s: out of memory for the header", path);
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8; /* data starts 8-byte aligned, as HF writes it */

    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    kl_status st = KL_OK;
    if (!f) {
        free(text);
        return kl_error(KL_ERR_IO, "%s: cannot create (%s)", tmp, strerror(errno));
    }
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    st = write_all(f, len, 8, tmp);
    if (st == KL_OK) st = write_all(f, text, tl, tmp);
    for (size_t i = tl; st == KL_OK && i < padded; i++) st = write_all(f, " ", 1, tmp);
    free(text);
    uint16_t buf[4096];
    for (int i = 0; st == KL_OK && i < w->n; i++) {
        pending *p = &w->t[i];
        if (p->dtype == KL_ST_F32) {
            st = write_all(f, p->data, (size_t)p->numel * 4, tmp);
            continue;
        }
        for (int64_t j = 0; st == KL_OK && j < p->numel; j += 4096) {
            int64_t n = p->numel - j < 4096 ? p->numel - j : 4096;
            for (int64_t k = 0; k < n; k++) buf[k] = kl_f32_to_bf16(p->data[j + k]);
            st = write_all(f, buf, (size_t)n * 2, tmp);
        }
    }
    if (st == KL_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = kl_error(KL_ERR_IO, "%s: flush failed (%s)", tmp, strerror(errno));
    if (fclose(f) != 0 && st == KL_OK) st = kl_error(KL_ERR_IO, "%s: close failed (%s)", tmp, strerror(errno));
    if (st == KL_OK && rename(tmp, path) != 0)
        st = kl_error(KL_ERR_IO, "cannot rename %s to %s (%s)", tmp, path, strerror(errno));
    if (st != KL_OK) unlink(tmp);
    return st;
}
