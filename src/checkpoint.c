/* checkpoint.c — see checkpoint.h. Owns every HDF5 call in kiln: they run under one mutex with HDF5's own
 * error printing switched off, and each failure becomes a kl_error naming the file and the entry. Owns the
 * file-system side of the protocol too (fsync, rename, DONE, scanning and pruning step folders). It must
 * not know what the entries mean. */
#include "checkpoint.h"

#include <hdf5.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_NAME 1023
#define VERIFY_SLICE_BYTES ((size_t)64 << 20) /* kl_ckpt_verify's read buffer */
#define DONE_NAME "DONE"
#define ATTR_KIND "kl_kind"
#define ATTR_SUM "kl_checksum"

const char *kl_ckpt_kind_name(kl_ckpt_kind k) {
    switch (k) {
    case KL_CKPT_F32: return "f32";
    case KL_CKPT_BYTES: return "bytes";
    case KL_CKPT_I64: return "i64";
    case KL_CKPT_U64: return "u64";
    case KL_CKPT_F64: return "f64";
    case KL_CKPT_STRING: return "string";
    }
    return "?";
}

static int kind_from_name(const char *s, kl_ckpt_kind *k) {
    for (int i = KL_CKPT_F32; i <= KL_CKPT_STRING; i++)
        if (strcmp(s, kl_ckpt_kind_name((kl_ckpt_kind)i)) == 0) {
            *k = (kl_ckpt_kind)i;
            return 1;
        }
    return 0;
}

/* ---- checksum ------------------------------------------------------------------------------------------
 * A 64-bit hash over the bytes of an entry, four independent lanes of 8-byte words so it runs near memory
 * speed. Every step is a bijection of the lane for a fixed input word and injective in the word for a fixed
 * lane, so any change confined to one word always changes the result; it detects damage, it is not a MAC. */
#define CK_K1 0x9e3779b97f4a7c15ull
#define CK_K2 0xd6e8feb86659fd93ull
#define CK_K3 0xbf58476d1ce4e5b9ull

typedef struct {
    uint64_t lane[4];
    uint64_t total;
    unsigned char buf[32];
    size_t nbuf;
} ck_state;

static uint64_t ck_round(uint64_t h, uint64_t w) {
    h ^= w;
    h *= CK_K2;
    return h ^ (h >> 31);
}

static uint64_t ck_mix(uint64_t x) {
    x ^= x >> 32;
    x *= CK_K3;
    x ^= x >> 29;
    x *= CK_K1;
    return x ^ (x >> 32);
}

static void ck_init(ck_state *s) {
    s->lane[0] = CK_K1;
    s->lane[1] = CK_K2;
    s->lane[2] = CK_K3;
    s->lane[3] = CK_K1 ^ CK_K3;
    s->total = 0;
    s->nbuf = 0;
}

static void ck_block(ck_state *s, const unsigned char *p) {
    for (int k = 0; k < 4; k++) {
        uint64_t w;
        memcpy(&w, p + 8 * k, 8);
        s->lane[k] = ck_round(s->lane[k], w);
    }
}

static void ck_update(ck_state *s, const void *data, size_t n) {
    if (n == 0) return;
    const unsigned char *p = (const unsigned char *)data;
    s->total += n;
    if (s->nbuf) {
        size_t take = 32 - s->nbuf < n ? 32 - s->nbuf : n;
        memcpy(s->buf + s->nbuf, p, take);
        s->nbuf += take;
        p += take;
        n -= take;
        if (s->nbuf < 32) return;
        ck_block(s, s->buf);
        s->nbuf = 0;
    }
    for (; n >= 32; p += 32, n -= 32) ck_block(s, p);
    memcpy(s->buf, p, n);
    s->nbuf = n;
}

static uint64_t ck_final(ck_state *s) {
    unsigned char tail[32] = {0};
    memcpy(tail, s->buf, s->nbuf);
    for (size_t k = 0; k * 8 < s->nbuf; k++) {
        uint64_t w;
        memcpy(&w, tail + 8 * k, 8);
        s->lane[k] = ck_round(s->lane[k], w);
    }
    uint64_t h = ck_mix(s->total ^ CK_K2);
    for (int k = 0; k < 4; k++) h = ck_mix(h ^ s->lane[k]);
    return h;
}

uint64_t kl_ckpt_checksum(const void *data, size_t n_bytes) {
    ck_state s;
    ck_init(&s);
    ck_update(&s, data, n_bytes);
    return ck_final(&s);
}

/* ---- HDF5 access: one lock, no automatic error printing, the innermost HDF5 message for our errors ---- */
static pthread_mutex_t g_h5_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    H5E_auto2_t func;
    void *data;
} h5_guard;

static void h5_enter(h5_guard *g) {
    pthread_mutex_lock(&g_h5_lock);
    H5Eget_auto2(H5E_DEFAULT, &g->func, &g->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    H5Eclear2(H5E_DEFAULT);
}

static void h5_leave(h5_guard *g) {
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, g->func, g->data);
    pthread_mutex_unlock(&g_h5_lock);
}

typedef struct {
    char text[256];
} h5_msg;

static herr_t h5_walk(unsigned n, const H5E_error2_t *e, void *data) {
    h5_msg *m = (h5_msg *)data;
    if (n == 0 && e && e->desc) snprintf(m->text, sizeof m->text, "%s", e->desc);
    return 0;
}

/* The most specific message on HDF5's error stack ("truncated file: eof = ...") or "no detail". */
static const char *h5_detail(h5_msg *m) {
    m->text[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk, m);
    H5Eclear2(H5E_DEFAULT);
    if (!m->text[0]) snprintf(m->text, sizeof m->text, "no detail from HDF5");
    return m->text;
}

static hid_t make_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
    /* 1.8+ file format: superblock v2 and object headers v2, whose metadata HDF5 checksums */
    if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0) {
        H5Pclose(fapl);
        return -1;
    }
#if H5_VERSION_GE(1, 10, 7)
    /* Each file has exactly one writer by construction; HDF5's flock fails on some network file systems. */
    H5Pset_file_locking(fapl, 0, 1);
#endif
    return fapl;
}

/* ---- file-system helpers ---------------------------------------------------------------------------- */
static kl_status join(char *buf, size_t n, const char *a, const char *b) {
    int len = snprintf(buf, n, "%s/%s", a, b);
    if (len < 0 || (size_t)len >= n) return kl_error(KL_ERR_INVALID, "checkpoint path %s/%s is too long", a, b);
    return KL_OK;
}

kl_status kl_ckpt_step_dir(const char *ckpt_root, int64_t step, char *buf, size_t n) {
    if (!ckpt_root || !*ckpt_root) return kl_error(KL_ERR_INVALID, "checkpoint root folder is empty");
    if (step < 0) return kl_error(KL_ERR_INVALID, "checkpoint step %lld: expected >= 0", (long long)step);
    int len = snprintf(buf, n, "%s/step_%08lld", ckpt_root, (long long)step);
    if (len < 0 || (size_t)len >= n)
        return kl_error(KL_ERR_INVALID, "checkpoint path %s/step_%08lld is too long", ckpt_root, (long long)step);
    return KL_OK;
}

static kl_status fsync_path(const char *path, int is_dir) {
    int fd = open(path, is_dir ? (O_RDONLY | O_DIRECTORY) : O_RDWR);
    if (fd < 0) return kl_error(KL_ERR_IO, "opening %s to fsync it: %s", path, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    /* Some file systems cannot fsync a folder (EINVAL); the rename is then as durable as they make it. */
    if (rc != 0 && !(is_dir && (err == EINVAL || err == ENOTSUP)))
        return kl_error(KL_ERR_IO, "fsync of %s failed: %s", path, strerror(err));
    return KL_OK;
}

/* The folder holding `path` (for fsync after creating or renaming something in it). */
static void parent_of(const char *path, char *buf, size_t n) {
    snprintf(buf, n, "%s", path);
    size_t len = strlen(buf);
    while (len > 1 && buf[len - 1] == '/') buf[--len] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash) snprintf(buf, n, ".");
    else if (slash == buf) buf[1] = 0;
    else *slash = 0;
}

static kl_status mkdir_p(const char *path) {
    char tmp[KL_CKPT_PATH_MAX];
    if (strlen(path) >= sizeof tmp) return kl_error(KL_ERR_INVALID, "checkpoint folder %s: path too long", path);
    strcpy(tmp, path);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0755) == 0) {
                /* a new folder lasts only once the folder holding it is synced */
                char parent[KL_CKPT_PATH_MAX];
                parent_of(tmp, parent, sizeof parent);
                KL_TRY(fsync_path(parent, 1));
            } else if (errno != EEXIST) {
                return kl_error(KL_ERR_IO, "creating checkpoint folder %s: %s", tmp, strerror(errno));
            }
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return kl_error(KL_ERR_IO, "checkpoint folder %s: exists but is not a folder", path);
    return KL_OK;
}

static int is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- the DONE marker ------------------------------------------------------------------------------------ */
/* The marker's whole text; a DONE reads as complete only if it is exactly this. */
static int done_text(char *buf, size_t n, int format, long long step, int world) {
    return snprintf(buf, n, "kiln checkpoint\nformat %d\nstep %lld\nworld %d\n", format, step, world);
}

static kl_status write_done(const char *dir, int64_t step, int world) {
    char tmp[KL_CKPT_PATH_MAX], path[KL_CKPT_PATH_MAX];
    KL_TRY(join(tmp, sizeof tmp, dir, DONE_NAME ".tmp"));
    KL_TRY(join(path, sizeof path, dir, DONE_NAME));
    FILE *f = fopen(tmp, "wb");
    if (!f) return kl_error(KL_ERR_IO, "writing %s: %s", tmp, strerror(errno));
    char text[128];
    const int len = done_text(text, sizeof text, KL_CKPT_FORMAT_VERSION, (long long)step, world);
    int ok = fwrite(text, 1, (size_t)len, f) == (size_t)len;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    int err = errno;
    if (fclose(f) != 0) ok = 0;
    if (!ok) {
        unlink(tmp);
        return kl_error(KL_ERR_IO, "writing %s: %s", tmp, strerror(err));
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        unlink(tmp);
        return kl_error(KL_ERR_IO, "renaming %s to %s: %s", tmp, path, strerror(err));
    }
    return fsync_path(dir, 1);
}

/* 1 and fills step/world when dir/DONE exists and parses; else 0 with the reason. */
static int read_done(const char *dir, int64_t *step, int *world, char *why, size_t why_n) {
    char path[KL_CKPT_PATH_MAX];
    if (snprintf(path, sizeof path, "%s/" DONE_NAME, dir) >= (int)sizeof path) {
        snprintf(why, why_n, "path too long");
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, why_n, "no DONE marker: the save was interrupted or is still running");
        return 0;
    }
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    int format = 0, w = 0;
    long long s = -1;
    char canon[128];
    /* what kiln writes and nothing else: no trailing bytes, no other spacing or digits */
    if (sscanf(buf, "kiln checkpoint format %d step %lld world %d", &format, &s, &w) != 3 || s < 0 || w < 1 ||
        done_text(canon, sizeof canon, format, s, w) != (int)n || memcmp(canon, buf, n) != 0) {
        snprintf(why, why_n, "DONE marker is unreadable");
        return 0;
    }
    if (format != KL_CKPT_FORMAT_VERSION) {
        snprintf(why, why_n, "DONE marker has format %d, this kiln reads %d", format, KL_CKPT_FORMAT_VERSION);
        return 0;
    }
    *step = s;
    *world = w;
    return 1;
}

/* Complete = DONE parses (naming expect_step when >= 0) and every rank file is present. */
static int classify_dir(const char *dir, int64_t expect_step, int64_t *step, int *world, char *why, size_t why_n) {
    if (!read_done(dir, step, world, why, why_n)) return 0;
    if (expect_step >= 0 && *step != expect_step) {
        snprintf(why, why_n, "DONE names step %lld", (long long)*step);
        return 0;
    }
    for (int r = 0; r < *world; r++) {
        char path[KL_CKPT_PATH_MAX];
        if (snprintf(path, sizeof path, "%s/rank_%03d.h5", dir, r) >= (int)sizeof path) {
            snprintf(why, why_n, "path too long");
            return 0;
        }
        if (!is_regular_file(path)) {
            snprintf(why, why_n, "rank_%03d.h5 of %d is missing", r, *world);
            return 0;
        }
    }
    return 1;
}

/* ---- writer --------------------------------------------------------------------------------------------- */
/* Groups keep up to this many links inside their (checksummed) object header. HDF5's default moves a group of
 * more than 8 links to "dense" storage, a fractal heap whose blocks carry no checksum, where one damaged byte
 * can crash HDF5 1.10 (a use of uninitialised link records on its error path) instead of failing cleanly. */
#define COMPACT_LINKS_MAX 65535

typedef struct {
    char **v;
    int n, cap;
} str_list;

static kl_status str_list_add(str_list *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        char **p = (char **)realloc(l->v, (size_t)cap * sizeof *p);
        if (!p) return kl_error(KL_ERR_OOM, "checkpoint writer: out of memory for the entry table");
        l->v = p;
        l->cap = cap;
    }
    char *copy = strdup(s);
    if (!copy) return kl_error(KL_ERR_OOM, "checkpoint writer: out of memory for the entry table");
    l->v[l->n++] = copy;
    return KL_OK;
}

static int str_list_has(const str_list *l, const char *s) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0) return 1;
    return 0;
}

static void str_list_free(str_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

struct kl_ckpt_writer {
    hid_t file, gcpl;
    char dir[KL_CKPT_PATH_MAX], tmp_path[KL_CKPT_PATH_MAX], final_path[KL_CKPT_PATH_MAX];
    int64_t step;
    int rank, world;
    int has_signature;
    str_list names;  /* the caller's entries, to refuse duplicates and entry/group clashes */
    str_list groups; /* groups created so far */
    kl_status failed; /* sticky first error */
    char failed_msg[768];
};

/* Group creation properties that keep links compact (also valid as file creation properties: the root). */
static hid_t make_compact_plist(hid_t cls) {
    hid_t p = H5Pcreate(cls);
    if (p >= 0 && H5Pset_link_phase_change(p, COMPACT_LINKS_MAX, COMPACT_LINKS_MAX) < 0) {
        H5Pclose(p);
        return -1;
    }
    return p;
}

/* Creates the groups above `name` that do not exist yet. Under the HDF5 lock. */
static int make_parents(kl_ckpt_writer *w, const char *name) {
    char path[MAX_NAME + 1];
    for (const char *slash = strchr(name, '/'); slash; slash = strchr(slash + 1, '/')) {
        size_t len = (size_t)(slash - name);
        if (len >= sizeof path) return -1;
        memcpy(path, name, len);
        path[len] = 0;
        if (str_list_has(&w->groups, path)) continue;
        hid_t g = H5Gcreate2(w->file, path, H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
        if (g < 0) return -1;
        H5Gclose(g);
        if (str_list_add(&w->groups, path) != KL_OK) return -1;
    }
    return 0;
}

static kl_status writer_fail(kl_ckpt_writer *w, kl_status s) {
    if (s != KL_OK && w->failed == KL_OK) {
        w->failed = s;
        snprintf(w->failed_msg, sizeof w->failed_msg, "%s", kl_last_error());
    }
    return s;
}

static kl_status check_name(const kl_ckpt_writer *w, const char *name) {
    if (!name || !*name) return kl_error(KL_ERR_INVALID, "checkpoint entry name is empty");
    size_t len = strlen(name);
    if (len > MAX_NAME)
        return kl_error(KL_ERR_INVALID, "checkpoint entry name '%.40s...' has %zu characters; at most %d", name, len,
                        MAX_NAME);
    const char *c = name;
    while (*c) {
        const char *end = strchr(c, '/');
        size_t clen = end ? (size_t)(end - c) : strlen(c);
        if (clen == 0 || (clen == 1 && c[0] == '.') || (clen == 2 && c[0] == '.' && c[1] == '.'))
            return kl_error(KL_ERR_INVALID,
                            "checkpoint entry name '%s': expected '/'-separated non-empty components, not '.' or '..'",
                            name);
        for (size_t i = 0; i < clen; i++)
            if ((unsigned char)c[i] <= 0x20 || (unsigned char)c[i] >= 0x7f)
                return kl_error(KL_ERR_INVALID,
                                "checkpoint entry name '%s': character %zu is not printable ASCII (or is a space)",
                                name, (size_t)(c - name) + i);
        if (!end) break;
        c = end + 1;
        if (!*c)
            return kl_error(KL_ERR_INVALID, "checkpoint entry name '%s' ends with '/': expected an entry name", name);
    }
    if (strncmp(name, "meta", 4) == 0 && (name[4] == 0 || name[4] == '/'))
        return kl_error(KL_ERR_INVALID, "checkpoint entry name '%s': 'meta' is reserved for the checkpoint's own data",
                        name);
    for (int i = 0; i < w->names.n; i++) {
        const char *e = w->names.v[i];
        size_t el = strlen(e);
        if (strcmp(e, name) == 0) return kl_error(KL_ERR_INVALID, "checkpoint entry '%s' written twice", name);
        if (el < len && strncmp(e, name, el) == 0 && name[el] == '/')
            return kl_error(KL_ERR_INVALID, "checkpoint entry '%s': '%s' is already an entry, not a group", name, e);
        if (len < el && strncmp(e, name, len) == 0 && e[len] == '/')
            return kl_error(KL_ERR_INVALID, "checkpoint entry '%s': it is already a group holding '%s'", name, e);
    }
    return KL_OK;
}

static herr_t write_attr_string(hid_t obj, const char *attr, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = -1;
    herr_t rc = -1;
    if (t >= 0 && sp >= 0 && H5Tset_size(t, strlen(value)) >= 0 && H5Tset_strpad(t, H5T_STR_NULLPAD) >= 0) {
        a = H5Acreate2(obj, attr, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) rc = H5Awrite(a, t, value);
    }
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    return rc;
}

static herr_t write_attr_u64(hid_t obj, const char *attr, uint64_t value) {
    hid_t sp = H5Screate(H5S_SCALAR), a = -1;
    herr_t rc = -1;
    if (sp >= 0) a = H5Acreate2(obj, attr, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) rc = H5Awrite(a, H5T_NATIVE_UINT64, &value);
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

/* Creates dataset `name` (intermediate groups included) of the given kind, writes data and the kind and
 * checksum attributes. rank 0 = scalar. String kinds pass file_type = mem_type = their string type. */
static kl_status put_dataset(kl_ckpt_writer *w, const char *name, int user, kl_ckpt_kind kind, hid_t file_type,
                             hid_t mem_type, int rank, const hsize_t *dims, const void *data, size_t nbytes) {
    if (!w) return kl_error(KL_ERR_INVALID, "checkpoint writer is NULL (begin failed or it was finished)");
    if (w->failed) return kl_error(w->failed, "%s", w->failed_msg);
    if (user) KL_TRY(writer_fail(w, check_name(w, name)));
    uint64_t sum = kl_ckpt_checksum(data, nbytes); /* outside the lock: ranks hash in parallel */

    h5_guard g;
    h5_msg m;
    h5_enter(&g);
    const char *step_failed = NULL;
    hid_t sp = -1, dcpl = -1, ds = -1;
    sp = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (sp < 0 || dcpl < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0) step_failed = "setting up";
    if (!step_failed && make_parents(w, name) < 0) step_failed = "creating the groups above";
    if (!step_failed) {
        ds = H5Dcreate2(w->file, name, file_type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (ds < 0) step_failed = "creating";
    }
    /* scalars and strings always hold data; an empty array has nothing to write */
    if (!step_failed && (rank == 0 || nbytes > 0) && H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        step_failed = "writing";
    if (!step_failed && (write_attr_string(ds, ATTR_KIND, kl_ckpt_kind_name(kind)) < 0 ||
                         write_attr_u64(ds, ATTR_SUM, sum) < 0))
        step_failed = "writing the attributes of";
    kl_status s = KL_OK;
    if (step_failed)
        s = kl_error(KL_ERR_IO, "checkpoint %s: %s entry '%s' failed (HDF5: %s)", w->tmp_path, step_failed, name,
                     h5_detail(&m));
    if (ds >= 0) H5Dclose(ds);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    h5_leave(&g);
    if (s == KL_OK && user) s = str_list_add(&w->names, name);
    return writer_fail(w, s);
}

kl_status kl_ckpt_put_f32(kl_ckpt_writer *w, const char *name, const float *data, int ndims, const int64_t *dims) {
    if (!w) return kl_error(KL_ERR_INVALID, "checkpoint writer is NULL (begin failed or it was finished)");
    if (ndims < 1 || ndims > KL_CKPT_MAX_DIMS || !dims)
        return writer_fail(w, kl_error(KL_ERR_INVALID, "checkpoint entry '%s': %d dims, expected 1..%d",
                                       name ? name : "(null)", ndims, KL_CKPT_MAX_DIMS));
    hsize_t hd[KL_CKPT_MAX_DIMS];
    size_t count = 1;
    for (int i = 0; i < ndims; i++) {
        if (dims[i] < 0)
            return writer_fail(w, kl_error(KL_ERR_INVALID, "checkpoint entry '%s': dim %d is %lld, expected >= 0",
                                           name ? name : "(null)", i, (long long)dims[i]));
        if (dims[i] > 0 && count > SIZE_MAX / 4 / (size_t)dims[i])
            return writer_fail(w, kl_error(KL_ERR_INVALID, "checkpoint entry '%s': shape too large",
                                           name ? name : "(null)"));
        count *= (size_t)dims[i];
        hd[i] = (hsize_t)dims[i];
    }
    if (!data && count)
        return writer_fail(w, kl_error(KL_ERR_INVALID, "checkpoint entry '%s': data is NULL", name ? name : "(null)"));
    return put_dataset(w, name, 1, KL_CKPT_F32, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ndims, hd, data, count * 4);
}

kl_status kl_ckpt_put_bytes(kl_ckpt_writer *w, const char *name, const void *data, size_t n_bytes) {
    if (!w) return kl_error(KL_ERR_INVALID, "checkpoint writer is NULL (begin failed or it was finished)");
    if (!data && n_bytes)
        return writer_fail(w, kl_error(KL_ERR_INVALID, "checkpoint entry '%s': data is NULL", name ? name : "(null)"));
    hsize_t d = n_bytes;
    return put_dataset(w, name, 1, KL_CKPT_BYTES, H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &d, data, n_bytes);
}

kl_status kl_ckpt_put_i64(kl_ckpt_writer *w, const char *name, int64_t value) {
    return put_dataset(w, name, 1, KL_CKPT_I64, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL, &value, 8);
}

kl_status kl_ckpt_put_u64(kl_ckpt_writer *w, const char *name, uint64_t value) {
    return put_dataset(w, name, 1, KL_CKPT_U64, H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, NULL, &value, 8);
}

kl_status kl_ckpt_put_f64(kl_ckpt_writer *w, const char *name, double value) {
    return put_dataset(w, name, 1, KL_CKPT_F64, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, NULL, &value, 8);
}

static kl_status put_text(kl_ckpt_writer *w, const char *name, int user, const char *text) {
    if (!w) return kl_error(KL_ERR_INVALID, "checkpoint writer is NULL (begin failed or it was finished)");
    if (!text)
        return writer_fail(w, kl_error(KL_ERR_INVALID, "checkpoint entry '%s': text is NULL", name ? name : "(null)"));
    size_t len = strlen(text);
    /* A fixed-length string of exactly len bytes (h5dump shows it as text); the empty string is one NUL. */
    h5_guard g;
    h5_enter(&g);
    hid_t t = H5Tcopy(H5T_C_S1);
    int ok = t >= 0 && H5Tset_size(t, len ? len : 1) >= 0 && H5Tset_strpad(t, H5T_STR_NULLPAD) >= 0;
    h5_leave(&g);
    kl_status s = ok ? put_dataset(w, name, user, KL_CKPT_STRING, t, t, 0, NULL, text, len)
                     : writer_fail(w, kl_error(KL_ERR_INTERNAL, "checkpoint entry '%s': HDF5 string type", name));
    if (t >= 0) {
        h5_enter(&g);
        H5Tclose(t);
        h5_leave(&g);
    }
    return s;
}

kl_status kl_ckpt_put_string(kl_ckpt_writer *w, const char *name, const char *text) {
    return put_text(w, name, 1, text);
}

kl_status kl_ckpt_put_signature(kl_ckpt_writer *w, const char *const *keys, const char *const *values, int n) {
    if (!w) return kl_error(KL_ERR_INVALID, "checkpoint writer is NULL (begin failed or it was finished)");
    if (w->has_signature) return writer_fail(w, kl_error(KL_ERR_INVALID, "checkpoint signature written twice"));
    if (n < 0 || (n > 0 && (!keys || !values)))
        return writer_fail(w, kl_error(KL_ERR_INVALID, "checkpoint signature: %d keys, expected >= 0 with arrays", n));
    size_t total = 1;
    for (int i = 0; i < n; i++) {
        if (!keys[i] || !*keys[i] || strpbrk(keys[i], "=\n") || !values[i] || strchr(values[i], '\n'))
            return writer_fail(w, kl_error(KL_ERR_INVALID,
                                           "checkpoint signature entry %d ('%s'): expected a non-empty key without '=' "
                                           "or newline and a value without newline",
                                           i, keys[i] ? keys[i] : "(null)"));
        for (int j = 0; j < i; j++)
            if (strcmp(keys[i], keys[j]) == 0)
                return writer_fail(w, kl_error(KL_ERR_INVALID, "checkpoint signature key '%s' given twice", keys[i]));
        total += strlen(keys[i]) + strlen(values[i]) + 2;
    }
    char *text = (char *)kl_malloc(total, "checkpoint signature");
    if (!text) return writer_fail(w, KL_ERR_OOM);
    char *p = text;
    *p = 0;
    for (int i = 0; i < n; i++) p += sprintf(p, "%s=%s\n", keys[i], values[i]);
    kl_status s = put_text(w, "meta/signature", 0, text);
    free(text);
    if (s == KL_OK) w->has_signature = 1;
    return s;
}

static void writer_free(kl_ckpt_writer *w) {
    if (w->gcpl >= 0) {
        h5_guard g;
        h5_enter(&g);
        H5Pclose(w->gcpl);
        h5_leave(&g);
    }
    str_list_free(&w->names);
    str_list_free(&w->groups);
    free(w);
}

void kl_ckpt_writer_abort(kl_ckpt_writer *w) {
    if (!w) return;
    if (w->file >= 0) {
        h5_guard g;
        h5_enter(&g);
        H5Fclose(w->file);
        h5_leave(&g);
    }
    unlink(w->tmp_path);
    writer_free(w);
}

kl_status kl_ckpt_writer_begin(kl_ckpt_writer **out, const char *ckpt_root, int64_t step, int rank, int world) {
    if (!out) return kl_error(KL_ERR_INVALID, "kl_ckpt_writer_begin: out is NULL");
    *out = NULL;
    if (world < 1 || rank < 0 || rank >= world)
        return kl_error(KL_ERR_INVALID, "checkpoint writer: rank %d of world %d, expected 0 <= rank < world", rank,
                        world);
    kl_ckpt_writer *w = (kl_ckpt_writer *)kl_calloc(1, sizeof *w, "checkpoint writer");
    if (!w) return KL_ERR_OOM;
    w->file = -1;
    w->gcpl = -1;
    w->step = step;
    w->rank = rank;
    w->world = world;
    char file[32], done[KL_CKPT_PATH_MAX];
    snprintf(file, sizeof file, "rank_%03d.h5", rank);
    kl_status s = kl_ckpt_step_dir(ckpt_root, step, w->dir, sizeof w->dir);
    if (s == KL_OK) s = join(w->final_path, sizeof w->final_path, w->dir, file);
    if (s == KL_OK) {
        int len = snprintf(w->tmp_path, sizeof w->tmp_path, "%s.tmp", w->final_path);
        if (len < 0 || (size_t)len >= sizeof w->tmp_path) s = kl_error(KL_ERR_INVALID, "checkpoint path too long");
    }
    if (s == KL_OK) s = join(done, sizeof done, w->dir, DONE_NAME);
    if (s == KL_OK) s = mkdir_p(w->dir);
    if (s == KL_OK) {
        /* A re-save of this step: the folder stops being complete before any of its files change. */
        if (unlink(done) == 0) s = fsync_path(w->dir, 1);
        else if (errno != ENOENT) s = kl_error(KL_ERR_IO, "removing the old marker %s: %s", done, strerror(errno));
    }
    if (s == KL_OK) {
        h5_guard g;
        h5_msg m;
        h5_enter(&g);
        hid_t fapl = make_fapl(), fcpl = make_compact_plist(H5P_FILE_CREATE);
        w->gcpl = make_compact_plist(H5P_GROUP_CREATE);
        if (fapl >= 0 && fcpl >= 0 && w->gcpl >= 0) w->file = H5Fcreate(w->tmp_path, H5F_ACC_TRUNC, fcpl, fapl);
        if (w->file < 0) s = kl_error(KL_ERR_IO, "creating checkpoint file %s failed (HDF5: %s)", w->tmp_path,
                                      h5_detail(&m));
        if (fcpl >= 0) H5Pclose(fcpl);
        if (fapl >= 0) H5Pclose(fapl);
        h5_leave(&g);
    }
    int64_t meta[4] = {KL_CKPT_FORMAT_VERSION, step, rank, world};
    const char *meta_names[4] = {"meta/format_version", "meta/step", "meta/rank", "meta/world"};
    for (int i = 0; i < 4 && s == KL_OK; i++)
        s = put_dataset(w, meta_names[i], 0, KL_CKPT_I64, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL, &meta[i], 8);
    if (s != KL_OK) {
        kl_ckpt_writer_abort(w);
        return s;
    }
    *out = w;
    return KL_OK;
}

kl_status kl_ckpt_writer_finish(kl_ckpt_writer *w) {
    if (!w) return kl_error(KL_ERR_INVALID, "checkpoint writer is NULL (begin failed or it was finished)");
    kl_status s = w->failed ? kl_error(w->failed, "%s", w->failed_msg) : KL_OK;
    if (s == KL_OK && !w->has_signature) s = kl_ckpt_put_signature(w, NULL, NULL, 0);
    int64_t n = w->names.n;
    if (s == KL_OK)
        s = put_dataset(w, "meta/n_entries", 0, KL_CKPT_I64, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL, &n, 8);
    if (s != KL_OK) {
        kl_ckpt_writer_abort(w);
        return s;
    }
    h5_guard g;
    h5_msg m;
    h5_enter(&g);
    if (H5Fclose(w->file) < 0)
        s = kl_error(KL_ERR_IO, "closing checkpoint file %s failed (HDF5: %s)", w->tmp_path, h5_detail(&m));
    h5_leave(&g);
    w->file = -1;
    if (s == KL_OK) s = fsync_path(w->tmp_path, 0);
    if (s == KL_OK && rename(w->tmp_path, w->final_path) != 0)
        s = kl_error(KL_ERR_IO, "renaming %s to %s: %s", w->tmp_path, w->final_path, strerror(errno));
    if (s == KL_OK) s = fsync_path(w->dir, 1);
    if (s != KL_OK) unlink(w->tmp_path);
    writer_free(w);
    return s;
}

/* ---- reader --------------------------------------------------------------------------------------------- */
typedef struct {
    kl_ckpt_entry pub; /* first: kl_ckpt_entry_at hands out its address */
    uint64_t checksum;
} entry_rec;

struct kl_ckpt_reader {
    hid_t file;
    char dir[KL_CKPT_PATH_MAX], path[KL_CKPT_PATH_MAX];
    int64_t step;
    int world, rank;
    entry_rec *all; /* meta and the caller's entries, sorted by name */
    int n_all, cap_all;
    entry_rec **user; /* the caller's entries (not meta/), sorted by name */
    int n_user;
};

typedef struct {
    kl_ckpt_reader *r;
    char prefix[MAX_NAME + 2]; /* the group being listed, "" or "a/b/" */
    size_t prefix_len;
    int depth;
    char failed_name[MAX_NAME + 2];
    char failed_why[256];
} visit_ctx;

#define MAX_GROUP_DEPTH 32 /* deeper than any name kiln writes; also stops a group linked into itself */

static int visit_fail(visit_ctx *c, const char *name, const char *why) {
    snprintf(c->failed_name, sizeof c->failed_name, "%s", name);
    snprintf(c->failed_why, sizeof c->failed_why, "%s", why);
    return -1;
}

/* Reads the kind and checksum attributes and checks the stored type and shape against the kind. */
static int describe_dataset(visit_ctx *c, hid_t ds, const char *name, entry_rec *e) {
    h5_msg m;
    char kind_text[32] = {0};
    hid_t a = H5Aopen(ds, ATTR_KIND, H5P_DEFAULT);
    if (a < 0) return visit_fail(c, name, "no kl_kind attribute: not written by kiln");
    hid_t at = H5Aget_type(a);
    int ok = at >= 0 && H5Tget_class(at) == H5T_STRING && H5Tget_size(at) < sizeof kind_text &&
             !H5Tis_variable_str(at) && H5Aread(a, at, kind_text) >= 0;
    if (at >= 0) H5Tclose(at);
    H5Aclose(a);
    if (!ok || !kind_from_name(kind_text, &e->pub.kind))
        return visit_fail(c, name, ok ? "unknown kl_kind" : h5_detail(&m));
    a = H5Aopen(ds, ATTR_SUM, H5P_DEFAULT);
    ok = a >= 0 && H5Aread(a, H5T_NATIVE_UINT64, &e->checksum) >= 0;
    if (a >= 0) H5Aclose(a);
    if (!ok) return visit_fail(c, name, "no readable kl_checksum attribute");

    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t dims[KL_CKPT_MAX_DIMS];
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    size_t tsize = t >= 0 ? H5Tget_size(t) : 0;
    H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(t) : H5T_SGN_ERROR;
    int var_str = cls == H5T_STRING ? H5Tis_variable_str(t) : 0;
    if (nd >= 0 && nd <= KL_CKPT_MAX_DIMS && H5Sget_simple_extent_dims(sp, dims, NULL) < 0) nd = -1;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (nd < 0 || nd > KL_CKPT_MAX_DIMS) return visit_fail(c, name, "unreadable or unsupported shape");
    const char *want = NULL;
    int want_nd = 0;
    switch (e->pub.kind) {
    case KL_CKPT_F32: want = cls == H5T_FLOAT && tsize == 4 ? NULL : "float32"; want_nd = -1; break;
    case KL_CKPT_BYTES: want = cls == H5T_INTEGER && tsize == 1 ? NULL : "uint8"; want_nd = 1; break;
    case KL_CKPT_I64: want = cls == H5T_INTEGER && tsize == 8 && sign == H5T_SGN_2 ? NULL : "int64"; break;
    case KL_CKPT_U64: want = cls == H5T_INTEGER && tsize == 8 && sign == H5T_SGN_NONE ? NULL : "uint64"; break;
    case KL_CKPT_F64: want = cls == H5T_FLOAT && tsize == 8 ? NULL : "float64"; break;
    case KL_CKPT_STRING: want = cls == H5T_STRING && !var_str && tsize >= 1 ? NULL : "fixed-length string"; break;
    }
    if (want) return visit_fail(c, name, want);
    if (want_nd == -1 ? nd < 1 : nd != want_nd) return visit_fail(c, name, "shape does not fit its kind");
    e->pub.ndims = nd;
    size_t count = 1;
    for (int i = 0; i < nd; i++) {
        if (dims[i] > (hsize_t)INT64_MAX || (dims[i] && count > SIZE_MAX / 8 / dims[i]))
            return visit_fail(c, name, "shape too large");
        e->pub.dims[i] = (int64_t)dims[i];
        count *= (size_t)dims[i];
    }
    e->pub.count = e->pub.kind == KL_CKPT_STRING ? tsize : count;
    return 0;
}

/* Lists a group's links, recursing into subgroups through the ids it opened itself: HDF5 1.10's H5Lvisit
 * leaks the file when a damaged group header makes it fail, which then cannot be closed. */
static herr_t visit_link(hid_t group, const char *link, const H5L_info_t *info, void *data) {
    visit_ctx *c = (visit_ctx *)data;
    kl_ckpt_reader *r = c->r;
    h5_msg m;
    char name[MAX_NAME + 2];
    if (snprintf(name, sizeof name, "%s%s", c->prefix, link) >= (int)sizeof name - 1)
        return visit_fail(c, link, "name too long");
    if (info->type != H5L_TYPE_HARD) return visit_fail(c, name, "soft or external link: not written by kiln");
    hid_t obj = H5Oopen(group, link, H5P_DEFAULT);
    if (obj < 0) return visit_fail(c, name, h5_detail(&m));
    H5I_type_t type = H5Iget_type(obj);
    if (type == H5I_GROUP) {
        size_t saved = c->prefix_len, len = strlen(link);
        if (c->depth >= MAX_GROUP_DEPTH || saved + len + 2 > sizeof c->prefix) {
            H5Oclose(obj);
            return visit_fail(c, name, "groups nested too deeply");
        }
        memcpy(c->prefix + saved, link, len);
        c->prefix[saved + len] = '/';
        c->prefix[saved + len + 1] = 0;
        c->prefix_len = saved + len + 1;
        c->depth++;
        hsize_t idx = 0;
        herr_t rc = H5Literate(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, visit_link, c);
        c->depth--;
        c->prefix_len = saved;
        c->prefix[saved] = 0;
        H5Oclose(obj);
        if (rc < 0 && !c->failed_name[0]) return visit_fail(c, name, h5_detail(&m));
        return rc < 0 ? -1 : 0;
    }
    if (type != H5I_DATASET) {
        H5Oclose(obj);
        return visit_fail(c, name, "neither a group nor a dataset");
    }
    if (r->n_all == r->cap_all) {
        int cap = r->cap_all ? 2 * r->cap_all : 64;
        entry_rec *p = (entry_rec *)realloc(r->all, (size_t)cap * sizeof *p);
        if (!p) {
            H5Oclose(obj);
            return visit_fail(c, name, "out of memory for the entry table");
        }
        r->all = p;
        r->cap_all = cap;
    }
    entry_rec *e = &r->all[r->n_all];
    memset(e, 0, sizeof *e);
    int rc = describe_dataset(c, obj, name, e);
    H5Oclose(obj);
    if (rc < 0) return -1;
    char *copy = strdup(name);
    if (!copy) return visit_fail(c, name, "out of memory for the entry table");
    e->pub.name = copy;
    r->n_all++;
    return 0;
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const entry_rec *)a)->pub.name, ((const entry_rec *)b)->pub.name);
}

static entry_rec *find_rec(const kl_ckpt_reader *r, const char *name) {
    if (!r || !name || !r->all) return NULL;
    entry_rec key;
    key.pub.name = name;
    return (entry_rec *)bsearch(&key, r->all, (size_t)r->n_all, sizeof *r->all, entry_cmp);
}

/* Reads the whole entry into dst (nbytes) and checks its checksum; caller holds no lock. */
static kl_status read_rec(kl_ckpt_reader *r, const entry_rec *e, hid_t mem_type, void *dst, size_t nbytes,
                          size_t sum_bytes) {
    h5_guard g;
    h5_msg m;
    kl_status s = KL_OK;
    h5_enter(&g);
    hid_t ds = H5Dopen2(r->file, e->pub.name, H5P_DEFAULT);
    if (ds < 0 || (nbytes > 0 && H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0))
        s = kl_error(KL_ERR_INVALID, "checkpoint %s: reading entry '%s' failed (HDF5: %s)", r->path, e->pub.name,
                     h5_detail(&m));
    if (ds >= 0) H5Dclose(ds);
    h5_leave(&g);
    if (s == KL_OK && kl_ckpt_checksum(dst, sum_bytes) != e->checksum)
        s = kl_error(KL_ERR_INVALID, "checkpoint %s: entry '%s' is corrupt (its checksum does not match the data)",
                     r->path, e->pub.name);
    return s;
}

static kl_status get_rec(kl_ckpt_reader *r, const char *name, kl_ckpt_kind kind, entry_rec **out) {
    if (!r) return kl_error(KL_ERR_INVALID, "checkpoint reader is NULL");
    entry_rec *e = name && strncmp(name, "meta/", 5) != 0 ? find_rec(r, name) : NULL;
    if (!e)
        return kl_error(KL_ERR_INVALID, "checkpoint %s has no entry '%s' (it holds %d entries)", r->path,
                        name ? name : "(null)", r->n_user);
    if (e->pub.kind != kind)
        return kl_error(KL_ERR_INVALID, "checkpoint %s: entry '%s' holds %s, expected %s", r->path, name,
                        kl_ckpt_kind_name(e->pub.kind), kl_ckpt_kind_name(kind));
    *out = e;
    return KL_OK;
}

kl_status kl_ckpt_get_f32(kl_ckpt_reader *r, const char *name, float *dst, size_t count) {
    entry_rec *e;
    KL_TRY(get_rec(r, name, KL_CKPT_F32, &e));
    if (e->pub.count != count)
        return kl_error(KL_ERR_INVALID, "checkpoint %s: entry '%s' holds %zu floats, expected %zu", r->path, name,
                        e->pub.count, count);
    return read_rec(r, e, H5T_NATIVE_FLOAT, dst, count * 4, count * 4);
}

kl_status kl_ckpt_get_bytes(kl_ckpt_reader *r, const char *name, void *dst, size_t n_bytes) {
    entry_rec *e;
    KL_TRY(get_rec(r, name, KL_CKPT_BYTES, &e));
    if (e->pub.count != n_bytes)
        return kl_error(KL_ERR_INVALID, "checkpoint %s: entry '%s' holds %zu bytes, expected %zu", r->path, name,
                        e->pub.count, n_bytes);
    return read_rec(r, e, H5T_NATIVE_UINT8, dst, n_bytes, n_bytes);
}

kl_status kl_ckpt_get_i64(kl_ckpt_reader *r, const char *name, int64_t *out) {
    entry_rec *e;
    KL_TRY(get_rec(r, name, KL_CKPT_I64, &e));
    return read_rec(r, e, H5T_NATIVE_INT64, out, 8, 8);
}

kl_status kl_ckpt_get_u64(kl_ckpt_reader *r, const char *name, uint64_t *out) {
    entry_rec *e;
    KL_TRY(get_rec(r, name, KL_CKPT_U64, &e));
    return read_rec(r, e, H5T_NATIVE_UINT64, out, 8, 8);
}

kl_status kl_ckpt_get_f64(kl_ckpt_reader *r, const char *name, double *out) {
    entry_rec *e;
    KL_TRY(get_rec(r, name, KL_CKPT_F64, &e));
    return read_rec(r, e, H5T_NATIVE_DOUBLE, out, 8, 8);
}

static kl_status read_text(kl_ckpt_reader *r, entry_rec *e, char **out) {
    *out = NULL;
    size_t size = e->pub.count;
    char *buf = (char *)kl_malloc(size + 1, "checkpoint string");
    if (!buf) return KL_ERR_OOM;
    h5_guard g;
    h5_msg m;
    kl_status s = KL_OK;
    h5_enter(&g);
    hid_t ds = H5Dopen2(r->file, e->pub.name, H5P_DEFAULT);
    hid_t t = ds >= 0 ? H5Dget_type(ds) : -1;
    if (t < 0 || H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        s = kl_error(KL_ERR_INVALID, "checkpoint %s: reading entry '%s' failed (HDF5: %s)", r->path, e->pub.name,
                     h5_detail(&m));
    if (t >= 0) H5Tclose(t);
    if (ds >= 0) H5Dclose(ds);
    h5_leave(&g);
    buf[size] = 0;
    if (s == KL_OK && kl_ckpt_checksum(buf, strlen(buf)) != e->checksum)
        s = kl_error(KL_ERR_INVALID, "checkpoint %s: entry '%s' is corrupt (its checksum does not match the data)",
                     r->path, e->pub.name);
    if (s != KL_OK) {
        free(buf);
        return s;
    }
    *out = buf;
    return KL_OK;
}

kl_status kl_ckpt_get_string(kl_ckpt_reader *r, const char *name, char **out) {
    if (!out) return kl_error(KL_ERR_INVALID, "kl_ckpt_get_string: out is NULL");
    *out = NULL;
    entry_rec *e;
    KL_TRY(get_rec(r, name, KL_CKPT_STRING, &e));
    return read_text(r, e, out);
}

/* Reads one f32/bytes entry in slices along its first dimension, hashing as it goes. */
static kl_status verify_array(kl_ckpt_reader *r, const entry_rec *e, void *buf, size_t buf_bytes) {
    size_t elem = e->pub.kind == KL_CKPT_F32 ? 4 : 1;
    hid_t mem_type = e->pub.kind == KL_CKPT_F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8;
    int nd = e->pub.ndims;
    hsize_t rows = (hsize_t)e->pub.dims[0];
    size_t row_bytes = elem;
    for (int i = 1; i < nd; i++) row_bytes *= (size_t)e->pub.dims[i];
    ck_state ck;
    ck_init(&ck);
    kl_status s = KL_OK;
    if (row_bytes > 0 && rows > 0) {
        hsize_t per = buf_bytes / row_bytes ? buf_bytes / row_bytes : 1;
        void *big = NULL;
        if (row_bytes > buf_bytes) {
            big = kl_malloc(row_bytes, "checkpoint verify row");
            if (!big) return KL_ERR_OOM;
            buf = big;
        }
        h5_guard g;
        h5_msg m;
        for (hsize_t r0 = 0; r0 < rows && s == KL_OK; r0 += per) {
            hsize_t nr = rows - r0 < per ? rows - r0 : per;
            hsize_t start[KL_CKPT_MAX_DIMS] = {0}, cnt[KL_CKPT_MAX_DIMS];
            start[0] = r0;
            cnt[0] = nr;
            for (int i = 1; i < nd; i++) cnt[i] = (hsize_t)e->pub.dims[i];
            h5_enter(&g);
            hid_t ds = H5Dopen2(r->file, e->pub.name, H5P_DEFAULT);
            hid_t fs = ds >= 0 ? H5Dget_space(ds) : -1;
            hid_t ms = H5Screate_simple(nd, cnt, NULL);
            if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) < 0 ||
                H5Dread(ds, mem_type, ms, fs, H5P_DEFAULT, buf) < 0)
                s = kl_error(KL_ERR_INVALID, "checkpoint %s: reading entry '%s' failed (HDF5: %s)", r->path,
                             e->pub.name, h5_detail(&m));
            if (ms >= 0) H5Sclose(ms);
            if (fs >= 0) H5Sclose(fs);
            if (ds >= 0) H5Dclose(ds);
            h5_leave(&g);
            if (s == KL_OK) ck_update(&ck, buf, (size_t)nr * row_bytes);
        }
        free(big);
    }
    if (s == KL_OK && ck_final(&ck) != e->checksum)
        s = kl_error(KL_ERR_INVALID, "checkpoint %s: entry '%s' is corrupt (its checksum does not match the data)",
                     r->path, e->pub.name);
    return s;
}

kl_status kl_ckpt_verify(kl_ckpt_reader *r, size_t slice_bytes) {
    if (!r) return kl_error(KL_ERR_INVALID, "checkpoint reader is NULL");
    if (slice_bytes == 0) slice_bytes = VERIFY_SLICE_BYTES;
    void *buf = kl_malloc(slice_bytes, "checkpoint verify buffer");
    if (!buf) return KL_ERR_OOM;
    kl_status s = KL_OK;
    for (int i = 0; i < r->n_all && s == KL_OK; i++) {
        entry_rec *e = &r->all[i];
        uint64_t scalar;
        char *text;
        switch (e->pub.kind) {
        case KL_CKPT_F32:
        case KL_CKPT_BYTES: s = verify_array(r, e, buf, slice_bytes); break;
        case KL_CKPT_I64: s = read_rec(r, e, H5T_NATIVE_INT64, &scalar, 8, 8); break;
        case KL_CKPT_U64: s = read_rec(r, e, H5T_NATIVE_UINT64, &scalar, 8, 8); break;
        case KL_CKPT_F64: s = read_rec(r, e, H5T_NATIVE_DOUBLE, &scalar, 8, 8); break;
        case KL_CKPT_STRING:
            s = read_text(r, e, &text);
            if (s == KL_OK) free(text);
            break;
        }
    }
    free(buf);
    return s;
}

void kl_ckpt_close(kl_ckpt_reader *r) {
    if (!r) return;
    if (r->file >= 0) {
        h5_guard g;
        h5_enter(&g);
        H5Fclose(r->file);
        h5_leave(&g);
    }
    for (int i = 0; i < r->n_all; i++) free((char *)r->all[i].pub.name);
    free(r->all);
    free(r->user);
    free(r);
}

static kl_status meta_i64(kl_ckpt_reader *r, const char *name, int64_t *v, const char *missing_why) {
    entry_rec *e = find_rec(r, name);
    if (!e || e->pub.kind != KL_CKPT_I64)
        return kl_error(KL_ERR_INVALID, "checkpoint %s: no '%s' (%s)", r->path, name, missing_why);
    return read_rec(r, e, H5T_NATIVE_INT64, v, 8, 8);
}

static kl_status open_checked(kl_ckpt_reader *r, const char *ckpt_dir, int rank) {
    char why[160];
    if (!read_done(ckpt_dir, &r->step, &r->world, why, sizeof why))
        return kl_error(KL_ERR_INVALID, "checkpoint %s is incomplete: %s", ckpt_dir, why);
    if (rank < 0 || rank >= r->world)
        return kl_error(KL_ERR_INVALID, "checkpoint %s was written by %d rank(s); there is no rank %d", ckpt_dir,
                        r->world, rank);
    if (snprintf(r->path, sizeof r->path, "%s/rank_%03d.h5", ckpt_dir, rank) >= (int)sizeof r->path)
        return kl_error(KL_ERR_INVALID, "checkpoint path %s is too long", ckpt_dir);
    struct stat st;
    if (stat(r->path, &st) != 0 || !S_ISREG(st.st_mode))
        return kl_error(KL_ERR_INVALID, "checkpoint %s is incomplete: %s is missing", ckpt_dir, r->path);

    h5_guard g;
    h5_msg m;
    kl_status s = KL_OK;
    h5_enter(&g);
    hid_t fapl = make_fapl();
    if (fapl >= 0) r->file = H5Fopen(r->path, H5F_ACC_RDONLY, fapl);
    if (r->file < 0)
        s = kl_error(KL_ERR_INVALID, "checkpoint file %s (%lld bytes) is not a readable HDF5 file (HDF5: %s)", r->path,
                     (long long)st.st_size, h5_detail(&m));
    if (fapl >= 0) H5Pclose(fapl);
    if (s == KL_OK) {
        visit_ctx c;
        memset(&c, 0, sizeof c);
        c.r = r;
        hid_t root = H5Oopen(r->file, "/", H5P_DEFAULT);
        hsize_t idx = 0;
        herr_t rc = root >= 0 ? H5Literate(root, H5_INDEX_NAME, H5_ITER_INC, &idx, visit_link, &c) : -1;
        if (root >= 0) H5Oclose(root);
        if (rc < 0)
            s = c.failed_name[0]
                    ? kl_error(KL_ERR_INVALID, "checkpoint file %s is damaged: entry '%s': %s", r->path,
                               c.failed_name, c.failed_why)
                    : kl_error(KL_ERR_INVALID, "checkpoint file %s is damaged: listing its entries failed (HDF5: %s)",
                               r->path, h5_detail(&m));
    }
    h5_leave(&g);
    KL_TRY(s);
    if (r->n_all > 1) qsort(r->all, (size_t)r->n_all, sizeof *r->all, entry_cmp);

    int64_t version, step, file_rank, world, n_entries;
    KL_TRY(meta_i64(r, "meta/format_version", &version, "not a kiln checkpoint"));
    if (version != KL_CKPT_FORMAT_VERSION)
        return kl_error(KL_ERR_INVALID, "checkpoint file %s has format version %lld; this kiln reads version %d",
                        r->path, (long long)version, KL_CKPT_FORMAT_VERSION);
    KL_TRY(meta_i64(r, "meta/step", &step, "not a kiln checkpoint"));
    KL_TRY(meta_i64(r, "meta/rank", &file_rank, "not a kiln checkpoint"));
    KL_TRY(meta_i64(r, "meta/world", &world, "not a kiln checkpoint"));
    if (step != r->step || file_rank != rank || world != r->world)
        return kl_error(KL_ERR_INVALID,
                        "checkpoint file %s holds step %lld, rank %lld of %lld; its folder's DONE says step %lld, "
                        "%d ranks, and rank %d was asked for",
                        r->path, (long long)step, (long long)file_rank, (long long)world, (long long)r->step,
                        r->world, rank);
    KL_TRY(meta_i64(r, "meta/n_entries", &n_entries, "the file was not finished"));
    r->user = (entry_rec **)kl_calloc((size_t)r->n_all + 1, sizeof *r->user, "checkpoint entry table");
    if (!r->user) return KL_ERR_OOM;
    for (int i = 0; i < r->n_all; i++)
        if (strncmp(r->all[i].pub.name, "meta/", 5) != 0) r->user[r->n_user++] = &r->all[i];
    if (n_entries != r->n_user)
        return kl_error(KL_ERR_INVALID, "checkpoint file %s is damaged: it lists %lld entries but holds %d", r->path,
                        (long long)n_entries, r->n_user);
    /* All of meta/ is checked here, so later reads only meet damage in the caller's own entries. */
    entry_rec *sig = find_rec(r, "meta/signature");
    if (!sig || sig->pub.kind != KL_CKPT_STRING)
        return kl_error(KL_ERR_INVALID, "checkpoint %s: no 'meta/signature' (the file was not finished)", r->path);
    char *text = NULL;
    KL_TRY(read_text(r, sig, &text));
    free(text);
    return KL_OK;
}

kl_status kl_ckpt_open(kl_ckpt_reader **out, const char *ckpt_dir, int rank) {
    if (!out) return kl_error(KL_ERR_INVALID, "kl_ckpt_open: out is NULL");
    *out = NULL;
    if (!ckpt_dir || !*ckpt_dir) return kl_error(KL_ERR_INVALID, "checkpoint folder is empty");
    kl_ckpt_reader *r = (kl_ckpt_reader *)kl_calloc(1, sizeof *r, "checkpoint reader");
    if (!r) return KL_ERR_OOM;
    r->file = -1;
    r->rank = rank;
    snprintf(r->dir, sizeof r->dir, "%s", ckpt_dir);
    kl_status s = open_checked(r, ckpt_dir, rank);
    if (s != KL_OK) {
        kl_ckpt_close(r);
        return s;
    }
    *out = r;
    return KL_OK;
}

int64_t kl_ckpt_step(const kl_ckpt_reader *r) { return r ? r->step : -1; }
int kl_ckpt_world(const kl_ckpt_reader *r) { return r ? r->world : 0; }
const char *kl_ckpt_path(const kl_ckpt_reader *r) { return r ? r->path : ""; }
int kl_ckpt_n_entries(const kl_ckpt_reader *r) { return r ? r->n_user : 0; }

const kl_ckpt_entry *kl_ckpt_entry_at(const kl_ckpt_reader *r, int i) {
    return r && i >= 0 && i < r->n_user ? &r->user[i]->pub : NULL;
}

const kl_ckpt_entry *kl_ckpt_find(const kl_ckpt_reader *r, const char *name) {
    entry_rec *e = find_rec(r, name);
    return e && strncmp(e->pub.name, "meta/", 5) != 0 ? &e->pub : NULL;
}

/* ---- signature ---------------------------------------------------------------------------------------- */
typedef struct {
    char *text; /* owns the strings below */
    int n;
    char **keys, **values;
} sig_table;

static void sig_free(sig_table *t) {
    free(t->text);
    free(t->keys);
    free(t->values);
}

/* Parses "key=value\n" lines in place. */
static kl_status sig_parse(sig_table *t, const char *path) {
    int lines = 0;
    for (const char *p = t->text; *p; p++) lines += *p == '\n';
    t->keys = (char **)kl_calloc((size_t)lines + 1, sizeof *t->keys, "checkpoint signature");
    t->values = (char **)kl_calloc((size_t)lines + 1, sizeof *t->values, "checkpoint signature");
    if (!t->keys || !t->values) return KL_ERR_OOM;
    char *p = t->text;
    while (*p) {
        char *nl = strchr(p, '\n');
        char *eq = strchr(p, '=');
        if (!nl || !eq || eq > nl)
            return kl_error(KL_ERR_INVALID, "checkpoint %s: meta/signature line %d is not key=value", path, t->n + 1);
        *eq = 0;
        *nl = 0;
        t->keys[t->n] = p;
        t->values[t->n] = eq + 1;
        t->n++;
        p = nl + 1;
    }
    return KL_OK;
}

/* Appends "; " + formatted text to a growing message (best effort: stops growing at out of memory). */
static void msg_append(char **msg, size_t *len, const char *fmt, const char *a, const char *b, const char *c) {
    int need = snprintf(NULL, 0, fmt, a, b, c);
    if (need < 0) return;
    char *p = (char *)realloc(*msg, *len + (size_t)need + 3);
    if (!p) return;
    *msg = p;
    if (*len) {
        memcpy(p + *len, "; ", 2);
        *len += 2;
    }
    snprintf(p + *len, (size_t)need + 1, fmt, a, b, c);
    *len += (size_t)need;
}

kl_status kl_ckpt_check_signature(kl_ckpt_reader *r, const char *const *keys, const char *const *values, int n) {
    if (!r) return kl_error(KL_ERR_INVALID, "checkpoint reader is NULL");
    if (n < 0 || (n > 0 && (!keys || !values)))
        return kl_error(KL_ERR_INVALID, "kl_ckpt_check_signature: %d keys, expected >= 0 with arrays", n);
    entry_rec *e = find_rec(r, "meta/signature");
    if (!e || e->pub.kind != KL_CKPT_STRING)
        return kl_error(KL_ERR_INVALID, "checkpoint %s has no meta/signature", r->path);
    sig_table t;
    memset(&t, 0, sizeof t);
    kl_status s = read_text(r, e, &t.text);
    if (s == KL_OK) s = sig_parse(&t, r->path);
    if (s != KL_OK) {
        sig_free(&t);
        return s;
    }
    char *msg = NULL;
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        const char *k = keys[i] ? keys[i] : "(null)", *v = values[i] ? values[i] : "(null)";
        int j = 0;
        while (j < t.n && strcmp(t.keys[j], k) != 0) j++;
        if (j == t.n) msg_append(&msg, &len, "%s: not in checkpoint, now %s%s", k, v, "");
        else if (strcmp(t.values[j], v) != 0) msg_append(&msg, &len, "%s: checkpoint %s, now %s", k, t.values[j], v);
    }
    for (int j = 0; j < t.n; j++) {
        int i = 0;
        while (i < n && !(keys[i] && strcmp(keys[i], t.keys[j]) == 0)) i++;
        if (i == n) msg_append(&msg, &len, "%s: checkpoint %s, not set now%s", t.keys[j], t.values[j], "");
    }
    if (len) s = kl_error(KL_ERR_INVALID, "checkpoint %s does not match this run: %s", r->path, msg);
    free(msg);
    sig_free(&t);
    return s;
}

/* ---- discovery ---------------------------------------------------------------------------------------- */
typedef struct {
    int64_t step;
    int complete, world;
    char name[256];
    char why[160];
} scan_item;

static int scan_cmp(const void *a, const void *b) {
    const scan_item *x = (const scan_item *)a, *y = (const scan_item *)b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* "step_<digits>" -> step; -1 if the name is something else. */
static int64_t parse_step_name(const char *name) {
    if (strncmp(name, "step_", 5) != 0 || !name[5]) return -1;
    int64_t v = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

/* Lists step folders under root, sorted by step, each classified. A missing root gives none. */
static kl_status scan_root(const char *root, scan_item **items, int *n) {
    *items = NULL;
    *n = 0;
    if (!root || !*root) return kl_error(KL_ERR_INVALID, "checkpoint root folder is empty");
    DIR *d = opendir(root);
    if (!d) {
        if (errno == ENOENT) return KL_OK;
        return kl_error(KL_ERR_IO, "listing checkpoint folder %s: %s", root, strerror(errno));
    }
    int cap = 0;
    kl_status s = KL_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t step = parse_step_name(de->d_name);
        if (step < 0 || strlen(de->d_name) >= sizeof((*items)->name)) continue;
        char path[KL_CKPT_PATH_MAX];
        struct stat st;
        if (join(path, sizeof path, root, de->d_name) != KL_OK || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            scan_item *p = (scan_item *)realloc(*items, (size_t)cap * sizeof *p);
            if (!p) {
                s = kl_error(KL_ERR_OOM, "listing checkpoint folder %s: out of memory", root);
                break;
            }
            *items = p;
        }
        scan_item *it = &(*items)[(*n)++];
        memset(it, 0, sizeof *it);
        snprintf(it->name, sizeof it->name, "%s", de->d_name);
        it->step = step;
        int64_t done_step;
        it->complete = classify_dir(path, step, &done_step, &it->world, it->why, sizeof it->why);
    }
    closedir(d);
    if (s != KL_OK) {
        free(*items);
        *items = NULL;
        *n = 0;
        return s;
    }
    if (*n > 1) qsort(*items, (size_t)*n, sizeof **items, scan_cmp);
    return KL_OK;
}

static void choice_clear(kl_ckpt_choice *out) {
    out->found = 0;
    out->step = -1;
    out->world = 0;
    out->dir[0] = 0;
    out->warning[0] = 0;
}

kl_status kl_ckpt_find_latest(const char *ckpt_root, kl_ckpt_choice *out) {
    if (!out) return kl_error(KL_ERR_INVALID, "kl_ckpt_find_latest: out is NULL");
    choice_clear(out);
    scan_item *items;
    int n;
    KL_TRY(scan_root(ckpt_root, &items, &n));
    int best = -1;
    for (int i = 0; i < n; i++)
        if (items[i].complete) best = i;
    kl_status s = KL_OK;
    if (best >= 0) {
        s = join(out->dir, sizeof out->dir, ckpt_root, items[best].name);
        out->found = s == KL_OK;
        out->step = items[best].step;
        out->world = items[best].world;
    }
    /* The warning lists incomplete folders, newest first, as many as fit. */
    size_t len = 0, cap = sizeof out->warning;
    int n_bad = 0, listed = 0;
    for (int i = 0; i < n; i++) n_bad += !items[i].complete;
    if (n_bad) {
        len = (size_t)snprintf(out->warning, cap, "ignoring %d incomplete checkpoint folder%s in %s:", n_bad,
                               n_bad == 1 ? "" : "s", ckpt_root);
        if (len >= cap) len = cap - 1;
        for (int i = n - 1; i >= 0; i--) {
            if (items[i].complete) continue;
            char one[512];
            int k = snprintf(one, sizeof one, "%s %s (%s)", listed ? ";" : "", items[i].name, items[i].why);
            if (k < 0 || len + (size_t)k + 16 >= cap) {
                snprintf(out->warning + len, cap - len, "; %d more", n_bad - listed);
                break;
            }
            memcpy(out->warning + len, one, (size_t)k + 1);
            len += (size_t)k;
            listed++;
        }
    }
    free(items);
    return s;
}

kl_status kl_ckpt_resolve_resume(const char *resume, const char *ckpt_root, kl_ckpt_choice *out) {
    if (!out) return kl_error(KL_ERR_INVALID, "kl_ckpt_resolve_resume: out is NULL");
    choice_clear(out);
    if (!resume || !*resume)
        return kl_error(KL_ERR_CONFIG, "resume is empty: expected auto, none or the path of a checkpoint folder");
    if (strcmp(resume, "none") == 0) return KL_OK;
    if (strcmp(resume, "auto") == 0) return kl_ckpt_find_latest(ckpt_root, out);
    struct stat st;
    if (stat(resume, &st) != 0)
        return kl_error(KL_ERR_CONFIG,
                        "resume path %s does not exist (%s); expected auto, none or a checkpoint folder such as "
                        "<run>/ckpt/step_00001000",
                        resume, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return kl_error(KL_ERR_CONFIG, "resume path %s is not a folder; expected a checkpoint folder such as "
                                       "<run>/ckpt/step_00001000",
                        resume);
    char why[160];
    int64_t step;
    int world;
    if (classify_dir(resume, -1, &step, &world, why, sizeof why)) {
        if (strlen(resume) >= sizeof out->dir) return kl_error(KL_ERR_INVALID, "resume path %s is too long", resume);
        snprintf(out->dir, sizeof out->dir, "%s", resume);
        out->found = 1;
        out->step = step;
        out->world = world;
        return KL_OK;
    }
    /* Not a checkpoint: perhaps the root that holds them. */
    kl_ckpt_choice inner;
    if (kl_ckpt_find_latest(resume, &inner) == KL_OK && inner.found)
        return kl_error(KL_ERR_INVALID,
                        "resume path %s holds checkpoints but is not one: use auto, or one of its folders such as %s "
                        "(the newest complete one)",
                        resume, inner.dir);
    return kl_error(KL_ERR_INVALID, "cannot resume from %s: the checkpoint is incomplete (%s)", resume, why);
}

/* ---- retention ---------------------------------------------------------------------------------------- */
static int ours(const char *name) {
    if (strcmp(name, DONE_NAME) == 0 || strcmp(name, DONE_NAME ".tmp") == 0) return 1;
    if (strncmp(name, "rank_", 5) != 0) return 0;
    const char *p = name + 5;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    return strcmp(p, ".h5") == 0 || strcmp(p, ".h5.tmp") == 0;
}

/* Removes a step folder holding only files this module writes; DONE goes first so that an interrupted
 * removal leaves an incomplete folder, never a "complete" one with files missing. */
static kl_status remove_step_dir(const char *root, const char *name) {
    char dir[KL_CKPT_PATH_MAX], path[KL_CKPT_PATH_MAX];
    KL_TRY(join(dir, sizeof dir, root, name));
    DIR *d = opendir(dir);
    if (!d) return kl_error(KL_ERR_IO, "pruning checkpoint %s: %s", dir, strerror(errno));
    struct dirent *de;
    char foreign[256] = {0};
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && !ours(de->d_name) && !foreign[0])
            snprintf(foreign, sizeof foreign, "%s", de->d_name);
    closedir(d);
    if (foreign[0])
        return kl_error(KL_ERR_IO, "not pruning checkpoint %s: it holds '%s', which kiln did not write", dir,
                        foreign);
    KL_TRY(join(path, sizeof path, dir, DONE_NAME));
    if (unlink(path) == 0) KL_TRY(fsync_path(dir, 1));
    else if (errno != ENOENT) return kl_error(KL_ERR_IO, "pruning checkpoint: removing %s: %s", path, strerror(errno));
    d = opendir(dir);
    if (!d) return kl_error(KL_ERR_IO, "pruning checkpoint %s: %s", dir, strerror(errno));
    kl_status s = KL_OK;
    while ((de = readdir(d)) != NULL) {
        if (!ours(de->d_name)) continue;
        if (join(path, sizeof path, dir, de->d_name) == KL_OK && unlink(path) != 0 && errno != ENOENT && s == KL_OK)
            s = kl_error(KL_ERR_IO, "pruning checkpoint: removing %s: %s", path, strerror(errno));
    }
    closedir(d);
    KL_TRY(s);
    if (rmdir(dir) != 0) return kl_error(KL_ERR_IO, "pruning checkpoint: removing folder %s: %s", dir, strerror(errno));
    return fsync_path(root, 1);
}

kl_status kl_ckpt_prune(const char *ckpt_root, int keep_last, int64_t keep_every, int *n_removed) {
    if (n_removed) *n_removed = 0;
    scan_item *items;
    int n;
    KL_TRY(scan_root(ckpt_root, &items, &n));
    int newest = -1, n_complete = 0;
    for (int i = 0; i < n; i++)
        if (items[i].complete) {
            newest = i;
            n_complete++;
        }
    kl_status first = KL_OK;
    char first_msg[768] = {0};
    int complete_rank = 0; /* how many complete checkpoints are older than items[i] */
    for (int i = 0; i < n && newest >= 0; i++) {
        int drop;
        if (!items[i].complete) {
            drop = items[i].step < items[newest].step;
        } else {
            int among_newest = keep_last <= 0 || complete_rank >= n_complete - keep_last;
            int milestone = keep_every > 0 && items[i].step % keep_every == 0;
            drop = i != newest && !among_newest && !milestone;
            complete_rank++;
        }
        if (!drop) continue;
        kl_status s = remove_step_dir(ckpt_root, items[i].name);
        if (s == KL_OK && n_removed) (*n_removed)++;
        if (s != KL_OK && first == KL_OK) {
            first = s;
            snprintf(first_msg, sizeof first_msg, "%s", kl_last_error());
        }
    }
    free(items);
    /* Re-raise the first failure's message (later failures may have overwritten it). */
    return first == KL_OK ? KL_OK : kl_error(first, "%s", first_msg);
}

/* ---- completing a checkpoint ------------------------------------------------------------------------- */
kl_status kl_ckpt_mark_done(const char *ckpt_root, int64_t step, int world) {
    if (world < 1) return kl_error(KL_ERR_INVALID, "kl_ckpt_mark_done: world %d, expected >= 1", world);
    char dir[KL_CKPT_PATH_MAX];
    KL_TRY(kl_ckpt_step_dir(ckpt_root, step, dir, sizeof dir));
    /* Each rank file must be finished and belong to this step and world. */
    for (int rank = 0; rank < world; rank++) {
        char path[KL_CKPT_PATH_MAX];
        if (snprintf(path, sizeof path, "%s/rank_%03d.h5", dir, rank) >= (int)sizeof path)
            return kl_error(KL_ERR_INVALID, "checkpoint path %s is too long", dir);
        if (!is_regular_file(path))
            return kl_error(KL_ERR_INVALID, "cannot mark %s complete: %s is missing (has every rank finished?)", dir,
                            path);
        h5_guard g;
        h5_msg m;
        kl_status s = KL_OK;
        int64_t vals[5] = {-1, -1, -1, -1, -1};
        const char *names[5] = {"meta/format_version", "meta/step", "meta/rank", "meta/world", "meta/n_entries"};
        h5_enter(&g);
        hid_t fapl = make_fapl();
        hid_t f = fapl >= 0 ? H5Fopen(path, H5F_ACC_RDONLY, fapl) : -1;
        if (f < 0) s = kl_error(KL_ERR_INVALID, "cannot mark %s complete: %s does not open (HDF5: %s)", dir, path,
                                h5_detail(&m));
        for (int i = 0; i < 5 && s == KL_OK; i++) {
            hid_t ds = H5Dopen2(f, names[i], H5P_DEFAULT);
            if (ds < 0 || H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &vals[i]) < 0)
                s = kl_error(KL_ERR_INVALID, "cannot mark %s complete: %s has no readable %s (HDF5: %s)", dir, path,
                             names[i], h5_detail(&m));
            if (ds >= 0) H5Dclose(ds);
        }
        if (f >= 0) H5Fclose(f);
        if (fapl >= 0) H5Pclose(fapl);
        h5_leave(&g);
        KL_TRY(s);
        if (vals[0] != KL_CKPT_FORMAT_VERSION || vals[1] != step || vals[2] != rank || vals[3] != world)
            return kl_error(KL_ERR_INVALID,
                            "cannot mark %s complete: %s holds format %lld, step %lld, rank %lld of %lld; expected "
                            "format %d, step %lld, rank %d of %d",
                            dir, path, (long long)vals[0], (long long)vals[1], (long long)vals[2],
                            (long long)vals[3], KL_CKPT_FORMAT_VERSION, (long long)step, rank, world);
    }
    /* Leftovers: temporary files of interrupted saves, rank files of an earlier, larger world. */
    DIR *d = opendir(dir);
    if (!d) return kl_error(KL_ERR_IO, "listing %s: %s", dir, strerror(errno));
    struct dirent *de;
    kl_status s = KL_OK;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        int stale = 0;
        size_t len = strlen(nm);
        if (len > 4 && strcmp(nm + len - 4, ".tmp") == 0 && ours(nm)) stale = 1;
        else if (ours(nm) && strncmp(nm, "rank_", 5) == 0 && atoi(nm + 5) >= world) stale = 1;
        char path[KL_CKPT_PATH_MAX];
        if (stale && join(path, sizeof path, dir, nm) == KL_OK && unlink(path) != 0 && errno != ENOENT && s == KL_OK)
            s = kl_error(KL_ERR_IO, "removing leftover %s: %s", path, strerror(errno));
    }
    closedir(d);
    KL_TRY(s);
    return write_done(dir, step, world);
}
