/* safetensors.c — see safetensors.h. Parsing never trusts a number from the file: every size and offset is
 * range-checked (with overflow checks) before it is used, and tensors are handed out only after the whole
 * header has been validated. Files are little-endian, as is every host kiln runs on (x86-64, aarch64). */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_write.h"

static const struct {
    const char *name;
    int bytes;
} dtypes[KL_ST_NUM_DTYPES] = {
    [KL_ST_F32] = {"F32", 4},         [KL_ST_F16] = {"F16", 2},         [KL_ST_BF16] = {"BF16", 2},
    [KL_ST_F64] = {"F64", 8},         [KL_ST_I64] = {"I64", 8},         [KL_ST_I32] = {"I32", 4},
    [KL_ST_I16] = {"I16", 2},         [KL_ST_I8] = {"I8", 1},           [KL_ST_U8] = {"U8", 1},
    [KL_ST_BOOL] = {"BOOL", 1},       [KL_ST_F8_E4M3] = {"F8_E4M3", 1}, [KL_ST_F8_E5M2] = {"F8_E5M2", 1},
    [KL_ST_U16] = {"U16", 2},         [KL_ST_U32] = {"U32", 4},         [KL_ST_U64] = {"U64", 8},
    [KL_ST_F8_E8M0] = {"F8_E8M0", 1},
};

const char *kl_st_dtype_name(kl_st_dtype d) {
    return (int)d >= 0 && d < KL_ST_NUM_DTYPES ? dtypes[d].name : "?";
}

int kl_st_dtype_size(kl_st_dtype d) { return (int)d >= 0 && d < KL_ST_NUM_DTYPES ? dtypes[d].bytes : 0; }

uint16_t kl_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN, sign kept */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even; overflow carries into Inf */
    return (uint16_t)(u >> 16);
}

float kl_bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

float kl_f16_to_f32(uint16_t h) {
    const int exp = (h >> 10) & 31, man = h & 1023;
    float v;
    if (exp == 0) v = ldexpf((float)man, -24); /* zero and subnormals */
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexpf((float)(man | 1024), exp - 25);
    return (h >> 15) ? -v : v;
}

/* ---- reading one file -------------------------------------------------------------------------- */

static int json_nonneg_int(const cJSON *j, int64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    const double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return 0; /* exact integers only */
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

static void free_tables(kl_st_file *f) {
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    f->tensors = NULL;
    f->by_name = NULL;
    f->meta = NULL;
    f->n = f->n_meta = 0;
}

/* Byte-level checks on the raw header before JSON parsing: well-formed UTF-8, no control bytes (JSON allows
 * only tab, newline and carriage return, and only between tokens), no escaped NUL (which would cut a name
 * short once decoded into a C string). */
static kl_status check_header_bytes(const uint8_t *h, size_t n, const char *label) {
    for (size_t i = 0; i < n;) {
        const unsigned c = h[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return kl_error(KL_ERR_INVALID, "%s: the header has control byte 0x%02x at byte %zu (not JSON)", label, c,
                            i);
        if (c >= 0x80) {
            size_t k = kl_utf8_sequence_length(h + i, n - i);
            if (k == 0) return kl_error(KL_ERR_INVALID, "%s: the header is not valid UTF-8 (byte %zu)", label, i);
            i += k;
            continue;
        }
        if (c == '\\' && i + 1 < n) {
            if (h[i + 1] == 'u' && i + 6 <= n && memcmp(h + i + 2, "0000", 4) == 0)
                return kl_error(KL_ERR_INVALID, "%s: the header contains an escaped NUL (\\u0000) at byte %zu", label, i);
            i += 2; /* the escaped character cannot start another escape */
            continue;
        }
        i++;
    }
    return KL_OK;
}


static int pair_by_key(const void *a, const void *b) {
    return strcmp(((char *const *)a)[0], ((char *const *)b)[0]);
}

/* __metadata__: an object of string values (the reference package's HashMap<String, String>). */
static kl_status parse_metadata(kl_st_file *f, const cJSON *m, const char *label) {
    if (f->meta) return kl_error(KL_ERR_INVALID, "%s: '__metadata__' appears twice in the header", label);
    if (!cJSON_IsObject(m)) return kl_error(KL_ERR_INVALID, "%s: '__metadata__' must be an object of strings", label);
    int n = 0;
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return kl_error(KL_ERR_INVALID, "%s: '__metadata__' must be an object of strings; '%.200s' is not a string",
                            label, e->string);
        n++;
    }
    f->meta = kl_calloc(2 * (size_t)n + 1, sizeof *f->meta, "safetensors metadata");
    if (!f->meta) return KL_ERR_OOM;
    for (const cJSON *e = m->child; e; e = e->next) {
        char *k = strdup(e->string), *v = strdup(e->valuestring);
        if (!k || !v) {
            free(k), free(v);
            return kl_error(KL_ERR_OOM, "%s: out of memory for the metadata", label);
        }
        f->meta[2 * f->n_meta] = k;
        f->meta[2 * f->n_meta + 1] = v;
        f->n_meta++;
    }
    qsort(f->meta, (size_t)f->n_meta, 2 * sizeof *f->meta, pair_by_key);
    for (int i = 1; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], f->meta[2 * i - 2]) == 0)
            return kl_error(KL_ERR_INVALID, "%s: metadata key '%.200s' appears twice", label, f->meta[2 * i]);
    return KL_OK;
}

static kl_status parse_entry(kl_st_tensor *t, const cJSON *e, const uint8_t *data, uint64_t data_size,
                             const char *label) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return kl_error(KL_ERR_INVALID, "%s: tensor '%.200s' is not a JSON object", label, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return kl_error(KL_ERR_INVALID, "%s: tensor '%.200s' has no string 'dtype'", label, name);
    int d = -1;
    for (int i = 0; i < KL_ST_NUM_DTYPES; i++)
        if (strcmp(dt->valuestring, dtypes[i].name) == 0) d = i;
    if (d < 0)
        return kl_error(KL_ERR_INVALID, "%s: tensor '%.200s' has unknown or unsupported dtype '%.32s'", label, name,
                        dt->valuestring);
    if (!cJSON_IsArray(sh)) return kl_error(KL_ERR_INVALID, "%s: tensor '%.200s' has no 'shape' list", label, name);
    const int nd = cJSON_GetArraySize(sh);
    if (nd > KL_ST_MAX_DIMS)
        return kl_error(KL_ERR_INVALID, "%s: tensor '%.200s' has %d dimensions (at most %d)", label, name, nd,
                        KL_ST_MAX_DIMS);
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *v = sh->child; v; v = v->next, i++) {
        int64_t x;
        if (!json_nonneg_int(v, &x))
            return kl_error(KL_ERR_INVALID, "%s: tensor '%.200s': shape[%d] is not a non-negative integer", label,
                            name, i);
        if (x != 0 && numel > (UINT64_C(1) << 60) / (uint64_t)x)
            return kl_error(KL_ERR_INVALID, "%s: tensor '%.200s': shape overflows", label, name);
        numel *= (uint64_t)x;
        t->shape[i] = x;
    }
    int64_t b, e2;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_nonneg_int(off->child, &b) ||
        !json_nonneg_int(off->child->next, &e2))
        return kl_error(KL_ERR_INVALID,
                        "%s: tensor '%.200s' needs 'data_offsets': [begin, end] of non-negative integers", label, name);
    if (b > e2 || (uint64_t)e2 > data_size)
        return kl_error(KL_ERR_INVALID, "%s: tensor '%.200s': data_offsets [%lld, %lld] outside the %llu data bytes",
                        label, name, (long long)b, (long long)e2, (unsigned long long)data_size);
    /* numel < 2^60 and element sizes <= 8: the product cannot overflow 64 bits */
    const uint64_t want = numel * (uint64_t)dtypes[d].bytes;
    if (want != (uint64_t)(e2 - b))
        return kl_error(KL_ERR_INVALID, "%s: tensor '%.200s': shape x %s size = %llu bytes but data_offsets span %lld",
                        label, name, dtypes[d].name, (unsigned long long)want, (long long)(e2 - b));
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
    f->n = f->n_meta = 0;
    f->tensors = NULL;
    f->by_name = NULL;
    f->meta = NULL;
    if (size < 8) return kl_error(KL_ERR_INVALID, "%s: %zu bytes is too short for a safetensors file", label, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen < 2 || hlen > KL_ST_MAX_HEADER_BYTES || hlen > size - 8)
        return kl_error(KL_ERR_INVALID,
                        "%s: header length %llu is impossible for a file of %zu bytes (expected 2 to min(%u, %zu))",
                        label, (unsigned long long)hlen, size, KL_ST_MAX_HEADER_BYTES, size - 8);
    KL_TRY(check_header_bytes(buf + 8, (size_t)hlen, label));
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
    f->tensors = kl_calloc((size_t)count + 1, sizeof *f->tensors, "safetensors tensor table");
    f->by_name = kl_calloc((size_t)count + 1, sizeof *f->by_name, "safetensors tensor table");
    kl_st_tensor **order = kl_calloc((size_t)count + 1, sizeof *order, "safetensors tensor table");
    if (!f->tensors || !f->by_name || !order) {
        st = KL_ERR_OOM;
        goto done;
    }
    for (const cJSON *e = j->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if ((st = parse_metadata(f, e, label)) != KL_OK) goto done;
            continue;
        }
        if ((st = parse_entry(&f->tensors[f->n], e, data, data_size, label)) != KL_OK) goto done;
        f->by_name[f->n] = order[f->n] = &f->tensors[f->n];
        f->n++;
    }
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, by_name);
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->by_name[i]->name, f->by_name[i - 1]->name) == 0) {
            st = kl_error(KL_ERR_INVALID, "%s: tensor '%.200s' appears twice in the header", label, f->by_name[i]->name);
            goto done;
        }
    /* the data must be exactly the tensors back to back: no gaps, no overlaps, nothing after */
    qsort(order, (size_t)f->n, sizeof *order, by_offset);
    uint64_t expect = 0;
    for (int i = 0; i < f->n; i++) {
        const uint64_t at = (uint64_t)(order[i]->data - data);
        if (at != expect) {
            st = kl_error(KL_ERR_INVALID, "%s: tensor '%.200s' starts at data byte %llu, expected %llu (%s)", label,
                          order[i]->name, (unsigned long long)at, (unsigned long long)expect,
                          at < expect ? "overlap" : "gap");
            goto done;
        }
        expect += order[i]->nbytes;
    }
    if (expect != data_size)
        st = kl_error(KL_ERR_INVALID, "%s: %llu bytes of data follow the last tensor", label,
                      (unsigned long long)(data_size - expect));
done:
    free(order);
    cJSON_Delete(j);
    if (st != KL_OK) free_tables(f);
    return st;
}

kl_status kl_st_open(kl_st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    if (strlen(path) >= sizeof f->path) return kl_error(KL_ERR_INVALID, "%.200s...: path too long", path);
    snprintf(f->path, sizeof f->path, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kl_error(KL_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return kl_error(KL_ERR_IO, "%s: not a regular file", path);
    }
    f->size = (size_t)sb.st_size;
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            return kl_error(KL_ERR_IO, "%s: cannot map %zu bytes (%s)", path, f->size, strerror(errno));
        }
        f->map = m;
    }
    close(fd);
    kl_status st = kl_st_parse(f, f->map, f->size, path);
    if (st != KL_OK) kl_st_close(f);
    return st;
}

void kl_st_close(kl_st_file *f) {
    free_tables(f);
    if (f->map) munmap(f->map, f->size);
    f->map = NULL;
    f->size = 0;
}

const kl_st_tensor *kl_st_find(const kl_st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        const int mid = lo + (hi - lo) / 2, c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

const char *kl_st_metadata(const kl_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

kl_status kl_st_read_f32(const kl_st_tensor *t, float *dst, int64_t count, const char *label) {
    if (count != t->numel)
        return kl_error(KL_ERR_INVALID, "%s: tensor '%.200s' has %lld elements, expected %lld", label, t->name,
                        (long long)t->numel, (long long)count);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case KL_ST_F32: memcpy(dst, p, (size_t)count * 4); break;
    case KL_ST_F64:
        for (int64_t i = 0; i < count; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    case KL_ST_BF16:
        for (int64_t i = 0; i < count; i++) dst[i] = kl_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case KL_ST_F16:
        for (int64_t i = 0; i < count; i++) dst[i] = kl_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    default:
        return kl_error(KL_ERR_INVALID, "%s: tensor '%.200s' has dtype %s; expected F32, BF16, F16 or F64", label,
                        t->name, kl_st_dtype_name(t->dtype));
    }
    return KL_OK;
}

/* ---- reading a folder -------------------------------------------------------------------------- */

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define MAX_INDEX_BYTES (64u << 20)

static int is_regular_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static kl_status read_small_file(const char *path, size_t limit, char **out, size_t *len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return kl_error(KL_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    char *b = kl_malloc(limit + 1, "index file");
    if (!b) {
        fclose(f);
        return KL_ERR_OOM;
    }
    size_t n = fread(b, 1, limit + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > limit) {
        free(b);
        return bad ? kl_error(KL_ERR_IO, "%s: read failed", path)
                   : kl_error(KL_ERR_INVALID, "%s: larger than %zu bytes; not an index file", path, limit);
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return KL_OK;
}

/* A shard name from an index must name a file inside the folder: no path separators, no "." / ".." or
 * hidden files, nothing a hostile index could use to reach elsewhere. */
static int plain_file_name(const char *s) {
    size_t n = strlen(s);
    return n > 0 && n < 256 && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\');
}

int kl_st_dir_index(const kl_st_dir *d, const char *name) {
    int lo = 0, hi = d->n - 1;
    while (lo <= hi) {
        const int mid = lo + (hi - lo) / 2, c = strcmp(d->tensors[mid]->name, name);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static kl_status dir_open_single(kl_st_dir *d, const char *path) {
    d->files = kl_calloc(1, sizeof *d->files, "safetensors folder");
    if (!d->files) return KL_ERR_OOM;
    KL_TRY(kl_st_open(&d->files[0], path));
    d->nfiles = 1;
    const kl_st_file *f = &d->files[0];
    d->tensors = kl_calloc((size_t)f->n + 1, sizeof *d->tensors, "safetensors folder");
    d->file_of = kl_calloc((size_t)f->n + 1, sizeof *d->file_of, "safetensors folder");
    if (!d->tensors || !d->file_of) return KL_ERR_OOM;
    for (int i = 0; i < f->n; i++) d->tensors[i] = f->by_name[i];
    d->n = f->n;
    return KL_OK;
}

/* The tensors of the index, each with the shard it names, sorted by name afterwards. */
typedef struct {
    const kl_st_tensor *t;
    int file;
} placed;

static int placed_by_name(const void *a, const void *b) {
    return strcmp(((const placed *)a)->t->name, ((const placed *)b)->t->name);
}

static kl_status dir_open_index(kl_st_dir *d, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    KL_TRY(read_small_file(index_path, MAX_INDEX_BYTES, &text, &len));
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    kl_status st = KL_OK;
    placed *pl = NULL;
    const cJSON *wm = j ? cJSON_GetObjectItemCaseSensitive(j, "weight_map") : NULL;
    if (!cJSON_IsObject(j) || !cJSON_IsObject(wm)) {
        st = kl_error(KL_ERR_INVALID, "%s: expected a JSON object with a \"weight_map\" object", index_path);
        goto done;
    }
    int count = cJSON_GetArraySize(wm);
    if (count == 0) {
        st = kl_error(KL_ERR_INVALID, "%s: the weight_map is empty", index_path);
        goto done;
    }
    pl = kl_calloc((size_t)count, sizeof *pl, "safetensors index");
    /* at most one shard per index entry; real folders have a handful */
    d->files = kl_calloc((size_t)count, sizeof *d->files, "safetensors shards");
    if (!pl || !d->files) {
        st = KL_ERR_OOM;
        goto done;
    }
    int n = 0;
    for (const cJSON *e = wm->child; e; e = e->next, n++) {
        if (!cJSON_IsString(e) || !plain_file_name(e->valuestring)) {
            st = kl_error(KL_ERR_INVALID, "%s: weight_map['%.200s'] must be a file name inside the folder", index_path,
                          e->string);
            goto done;
        }
        int k = 0;
        while (k < d->nfiles && strcmp(strrchr(d->files[k].path, '/') + 1, e->valuestring) != 0) k++;
        if (k == d->nfiles) { /* a shard not seen yet */
            char path[1400];
            snprintf(path, sizeof path, "%s/%s", d->dir, e->valuestring);
            if (!is_regular_file(path)) {
                st = kl_error(KL_ERR_INVALID, "%s lists shard %s, but %s does not exist", index_path, e->valuestring,
                              path);
                goto done;
            }
            if ((st = kl_st_open(&d->files[k], path)) != KL_OK) goto done;
            d->nfiles++;
        }
        pl[n].t = kl_st_find(&d->files[k], e->string);
        pl[n].file = k;
        if (!pl[n].t) {
            st = kl_error(KL_ERR_INVALID, "%s places tensor '%.200s' in %s, which has no such tensor", index_path,
                          e->string, d->files[k].path);
            goto done;
        }
    }
    qsort(pl, (size_t)n, sizeof *pl, placed_by_name);
    for (int i = 1; i < n; i++)
        if (strcmp(pl[i].t->name, pl[i - 1].t->name) == 0) {
            st = kl_error(KL_ERR_INVALID, "%s: tensor '%.200s' appears twice in the weight_map", index_path,
                          pl[i].t->name);
            goto done;
        }
    d->tensors = kl_calloc((size_t)n, sizeof *d->tensors, "safetensors folder");
    d->file_of = kl_calloc((size_t)n, sizeof *d->file_of, "safetensors folder");
    if (!d->tensors || !d->file_of) {
        st = KL_ERR_OOM;
        goto done;
    }
    for (int i = 0; i < n; i++) d->tensors[i] = pl[i].t, d->file_of[i] = pl[i].file;
    d->n = n;
    /* every tensor of every shard must be one the index places there */
    for (int k = 0; k < d->nfiles; k++) {
        const kl_st_file *f = &d->files[k];
        for (int i = 0; i < f->n; i++) {
            const int at = kl_st_dir_index(d, f->tensors[i].name);
            if (at < 0 || d->file_of[at] != k) {
                st = kl_error(KL_ERR_INVALID, "%s holds tensor '%.200s', which %s %s", f->path, f->tensors[i].name,
                              index_path, at < 0 ? "does not list" : "places in another shard");
                goto done;
            }
        }
    }
done:
    free(pl);
    cJSON_Delete(j);
    return st;
}

kl_status kl_st_dir_open(kl_st_dir *d, const char *dir) {
    memset(d, 0, sizeof *d);
    if (strlen(dir) + 64 >= sizeof d->dir) return kl_error(KL_ERR_INVALID, "%.200s...: folder path too long", dir);
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    char single[1100], index[1100];
    snprintf(single, sizeof single, "%s/" SINGLE_NAME, dir);
    snprintf(index, sizeof index, "%s/" INDEX_NAME, dir);
    kl_status st;
    if (is_regular_file(single)) {
        st = dir_open_single(d, single);
    } else if (is_regular_file(index)) {
        d->sharded = 1;
        st = dir_open_index(d, index);
    } else {
        return kl_error(KL_ERR_IO, "%s: neither " SINGLE_NAME " nor " INDEX_NAME " is there", dir);
    }
    if (st != KL_OK) kl_st_dir_close(d);
    return st;
}

const kl_st_tensor *kl_st_dir_find(const kl_st_dir *d, const char *name) {
    const int i = kl_st_dir_index(d, name);
    return i < 0 ? NULL : d->tensors[i];
}

const char *kl_st_dir_file_of(const kl_st_dir *d, const char *name) {
    const int i = kl_st_dir_index(d, name);
    return i < 0 ? NULL : d->files[d->file_of[i]].path;
}

void kl_st_dir_close(kl_st_dir *d) {
    for (int k = 0; k < d->nfiles; k++) kl_st_close(&d->files[k]);
    free(d->files);
    free(d->tensors);
    free(d->file_of);
    memset(d, 0, sizeof *d);
}

/* ---- writer ------------------------------------------------------------------------------------ */

typedef struct {
    char *name;
    kl_st_dtype dtype;
    int ndim;
    int64_t shape[KL_ST_MAX_DIMS];
    int64_t numel;
    uint64_t nbytes;
    const float *data;
} pending;

struct kl_st_writer {
    int n, cap;
    pending *t;
    int n_meta;
    char *meta[2 * 16]; /* key, value pairs */
};

kl_status kl_st_writer_new(kl_st_writer **w) {
    *w = kl_calloc(1, sizeof **w, "safetensors writer");
    if (!*w) return KL_ERR_OOM;
    kl_status st = kl_st_writer_metadata(*w, "format", "pt");
    if (st != KL_OK) {
        kl_st_writer_free(*w);
        *w = NULL;
    }
    return st;
}

void kl_st_writer_free(kl_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    for (int i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->t);
    free(w);
}

static int valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = kl_utf8_sequence_length(p + i, n - i);
        if (k == 0) return 0;
        i += k;
    }
    return 1;
}

kl_status kl_st_writer_metadata(kl_st_writer *w, const char *key, const char *value) {
    if (!valid_utf8(key) || !valid_utf8(value))
        return kl_error(KL_ERR_INVALID, "safetensors writer: metadata '%.200s' is not valid UTF-8", key);
    int i = 0;
    while (i < w->n_meta && strcmp(w->meta[2 * i], key) != 0) i++;
    if (i == 16) return kl_error(KL_ERR_INVALID, "safetensors writer: more than 16 metadata entries");
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k), free(v);
        return kl_error(KL_ERR_OOM, "safetensors writer: out of memory");
    }
    if (i == w->n_meta) w->n_meta++;
    else free(w->meta[2 * i]), free(w->meta[2 * i + 1]);
    w->meta[2 * i] = k;
    w->meta[2 * i + 1] = v;
    return KL_OK;
}

kl_status kl_st_writer_add(kl_st_writer *w, const char *name, kl_st_dtype dtype, int ndim, const int64_t *shape,
                           const float *data) {
    if (dtype != KL_ST_F32 && dtype != KL_ST_BF16)
        return kl_error(KL_ERR_INVALID, "safetensors writer: '%.200s': only F32 and BF16 can be written, not %s", name,
                        kl_st_dtype_name(dtype));
    if (name[0] == 0 || strcmp(name, "__metadata__") == 0 || !valid_utf8(name))
        return kl_error(KL_ERR_INVALID, "safetensors writer: '%.200s' is not a usable tensor name", name);
    if (ndim < 0 || ndim > KL_ST_MAX_DIMS)
        return kl_error(KL_ERR_INVALID, "safetensors writer: '%.200s': %d dimensions (0 to %d allowed)", name, ndim,
                        KL_ST_MAX_DIMS);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && numel > (INT64_C(1) << 50) / shape[i]))
            return kl_error(KL_ERR_INVALID, "safetensors writer: '%.200s': shape[%d] = %lld is not a usable size", name,
                            i, (long long)shape[i]);
        numel *= shape[i];
    }
    if (numel > 0 && !data) return kl_error(KL_ERR_INVALID, "safetensors writer: '%.200s': no data", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        pending *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return kl_error(KL_ERR_OOM, "safetensors writer: out of memory");
        w->t = t;
        w->cap = cap;
    }
    pending *p = &w->t[w->n];
    memset(p, 0, sizeof *p);
    p->name = strdup(name);
    if (!p->name) return kl_error(KL_ERR_OOM, "safetensors writer: out of memory");
    p->dtype = dtype;
    p->ndim = ndim;
    for (int i = 0; i < ndim; i++) p->shape[i] = shape[i];
    p->numel = numel;
    p->nbytes = (uint64_t)numel * (uint64_t)dtypes[dtype].bytes;
    p->data = data;
    w->n++;
    return KL_OK;
}

static int pending_by_name(const void *a, const void *b) {
    return strcmp((*(pending *const *)a)->name, (*(pending *const *)b)->name);
}

/* The tensors sorted by name (for the duplicate check and the index's weight_map); NULL on OOM. */
static pending **sorted_pending(const kl_st_writer *w) {
    pending **s = kl_calloc((size_t)w->n + 1, sizeof *s, "safetensors writer");
    if (!s) return NULL;
    for (int i = 0; i < w->n; i++) s[i] = &w->t[i];
    qsort(s, (size_t)w->n, sizeof *s, pending_by_name);
    return s;
}

static kl_status check_unique(const kl_st_writer *w) {
    pending **s = sorted_pending(w);
    if (!s) return KL_ERR_OOM;
    kl_status st = KL_OK;
    for (int i = 1; i < w->n && st == KL_OK; i++)
        if (strcmp(s[i]->name, s[i - 1]->name) == 0)
            st = kl_error(KL_ERR_INVALID, "safetensors writer: tensor '%.200s' was added twice", s[i]->name);
    free(s);
    return st;
}

static kl_status write_all(FILE *f, const void *p, size_t n, const char *path) {
    if (n && fwrite(p, 1, n, f) != n) return kl_error(KL_ERR_IO, "%s: write failed (%s)", path, strerror(errno));
    return KL_OK;
}

/* Makes a completed rename durable: fsync the folder that holds `path`. */
static void sync_parent(const char *path) {
    char dir[1300];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = 0;
    else if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: some file systems refuse fsync on folders */
        close(fd);
    }
}

/* Writes `path` atomically: body() fills a temporary file next to it, which is flushed, fsynced and
 * renamed over `path`; on any failure the temporary file is removed and `path` is untouched. */
typedef kl_status (*body_fn)(FILE *f, const void *ctx, const char *tmp);

static kl_status atomic_write(const char *path, body_fn body, const void *ctx) {
    char tmp[1200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return kl_error(KL_ERR_INVALID, "%.200s...: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return kl_error(KL_ERR_IO, "%s: cannot create (%s)", tmp, strerror(errno));
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    kl_status st = body(f, ctx, tmp);
    if (st == KL_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = kl_error(KL_ERR_IO, "%s: flush failed (%s)", tmp, strerror(errno));
    if (fclose(f) != 0 && st == KL_OK) st = kl_error(KL_ERR_IO, "%s: close failed (%s)", tmp, strerror(errno));
    if (st == KL_OK && rename(tmp, path) != 0)
        st = kl_error(KL_ERR_IO, "cannot rename %s to %s (%s)", tmp, path, strerror(errno));
    if (st != KL_OK) unlink(tmp);
    else sync_parent(path);
    return st;
}

typedef struct {
    const kl_st_writer *w;
    int first, last; /* tensors [first, last) */
} shard_job;

static kl_status write_shard_body(FILE *f, const void *ctx, const char *tmp) {
    const shard_job *job = ctx;
    const kl_st_writer *w = job->w;
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = h ? cJSON_AddObjectToObject(h, "__metadata__") : NULL;
    int ok = meta != NULL;
    for (int i = 0; ok && i < w->n_meta; i++) ok = cJSON_AddStringToObject(meta, w->meta[2 * i], w->meta[2 * i + 1]) != NULL;
    uint64_t off = 0;
    for (int i = job->first; ok && i < job->last; i++) {
        const pending *p = &w->t[i];
        cJSON *e = cJSON_AddObjectToObject(h, p->name), *sh = NULL, *o = NULL;
        ok = e && cJSON_AddStringToObject(e, "dtype", dtypes[p->dtype].name) && (sh = cJSON_AddArrayToObject(e, "shape")) &&
             (o = cJSON_AddArrayToObject(e, "data_offsets"));
        for (int d = 0; ok && d < p->ndim; d++) ok = cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)p->shape[d]));
        ok = ok && cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off)) &&
             cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + p->nbytes)));
        off += p->nbytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(h) : NULL;
    cJSON_Delete(h);
    if (!text) return kl_error(KL_ERR_OOM, "%s: out of memory for the header", tmp);
    /* pad with spaces so the data starts 8-byte aligned, as the reference package writes it */
    const size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    kl_status st = write_all(f, len, 8, tmp);
    if (st == KL_OK) st = write_all(f, text, tl, tmp);
    if (st == KL_OK) st = write_all(f, "       ", padded - tl, tmp);
    free(text);
    uint16_t buf[4096];
    for (int i = job->first; st == KL_OK && i < job->last; i++) {
        const pending *p = &w->t[i];
        if (p->dtype == KL_ST_F32) {
            st = write_all(f, p->data, (size_t)p->nbytes, tmp);
            continue;
        }
        for (int64_t j = 0; st == KL_OK && j < p->numel; j += 4096) {
            const int64_t n = p->numel - j < 4096 ? p->numel - j : 4096;
            for (int64_t k = 0; k < n; k++) buf[k] = kl_f32_to_bf16(p->data[j + k]);
            st = write_all(f, buf, (size_t)n * 2, tmp);
        }
    }
    return st;
}

kl_status kl_st_write(kl_st_writer *w, const char *path) {
    KL_TRY(check_unique(w));
    shard_job job = {w, 0, w->n};
    return atomic_write(path, write_shard_body, &job);
}

typedef struct {
    const kl_st_writer *w;
    const int *shard_of; /* per tensor */
    int nshards;
    uint64_t total;
} index_job;

static void shard_name(char *buf, size_t n, int k, int nshards) {
    snprintf(buf, n, "model-%05d-of-%05d.safetensors", k + 1, nshards);
}

static kl_status write_index_body(FILE *f, const void *ctx, const char *tmp) {
    const index_job *job = ctx;
    pending **s = sorted_pending(job->w);
    if (!s) return KL_ERR_OOM;
    kl_json j;
    kl_json_init(&j);
    kl_json_begin_object(&j);
    kl_json_key(&j, "metadata");
    kl_json_begin_object(&j);
    kl_json_field_int(&j, "total_size", (int64_t)job->total);
    kl_json_end_object(&j);
    kl_json_key(&j, "weight_map");
    kl_json_begin_object(&j);
    for (int i = 0; i < job->w->n; i++) {
        char name[64];
        shard_name(name, sizeof name, job->shard_of[s[i] - job->w->t], job->nshards);
        kl_json_field_string(&j, s[i]->name, name);
    }
    kl_json_end_object(&j);
    kl_json_end_object(&j);
    free(s);
    kl_status st = kl_json_write_line(&j, f, tmp);
    kl_json_free(&j);
    return st;
}

static kl_status remove_if_present(const char *path) {
    if (unlink(path) != 0 && errno != ENOENT)
        return kl_error(KL_ERR_IO, "cannot remove the stale %s (%s)", path, strerror(errno));
    return KL_OK;
}

kl_status kl_st_write_dir(kl_st_writer *w, const char *dir, uint64_t max_shard_bytes) {
    KL_TRY(check_unique(w));
    char path[1200], index[1200], single[1200];
    if (strlen(dir) > 1000) return kl_error(KL_ERR_INVALID, "%.200s...: folder path too long", dir);
    snprintf(index, sizeof index, "%s/" INDEX_NAME, dir);
    snprintf(single, sizeof single, "%s/" SINGLE_NAME, dir);
    int *shard_of = kl_calloc((size_t)w->n + 1, sizeof *shard_of, "safetensors shard plan");
    if (!shard_of) return KL_ERR_OOM;
    /* greedy in the order added: a new shard when the next tensor would overflow a non-empty one */
    int nshards = 1;
    uint64_t in_shard = 0, total = 0;
    for (int i = 0; i < w->n; i++) {
        if (max_shard_bytes && in_shard > 0 && in_shard + w->t[i].nbytes > max_shard_bytes) nshards++, in_shard = 0;
        shard_of[i] = nshards - 1;
        in_shard += w->t[i].nbytes;
        total += w->t[i].nbytes;
    }
    kl_status st = KL_OK;
    if (nshards > 99999) st = kl_error(KL_ERR_INVALID, "%s: %d shards; HF names allow at most 99999", dir, nshards);
    else if (nshards == 1) {
        shard_job job = {w, 0, w->n};
        st = atomic_write(single, write_shard_body, &job);
        if (st == KL_OK) st = remove_if_present(index);
    } else {
        for (int k = 0, first = 0; k < nshards && st == KL_OK; k++) {
            int last = first;
            while (last < w->n && shard_of[last] == k) last++;
            char name[64];
            shard_name(name, sizeof name, k, nshards);
            snprintf(path, sizeof path, "%s/%s", dir, name);
            shard_job job = {w, first, last};
            st = atomic_write(path, write_shard_body, &job);
            first = last;
        }
        index_job ij = {w, shard_of, nshards, total};
        if (st == KL_OK) st = atomic_write(index, write_index_body, &ij);
        if (st == KL_OK) st = remove_if_present(single); /* loaders prefer it: it must not shadow the shards */
    }
    free(shard_of);
    return st;
}
