/* loader.c — see loader.h. Both sources become a list of "sources": token arrays cut into samples of
 * T+1 tokens at a fixed stride (T for files, whose samples share their edge token; T+1 for the synthetic
 * patterns). Permutations are Fisher-Yates over Philox words with unbiased bounded draws (Lemire's
 * multiply-and-reject), keyed only by the seed, the epoch and the file's sorted index, so every machine
 * and thread count computes the same order; only the current epoch's file order and one file's sample
 * order are kept, rebuilt on demand. */
#include "loader.h"

#include <glob.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"
#include "tokfile.h"

/* Philox stream ids (the top two bits say what the words are for, the rest is the epoch). */
#define STREAM_FILE_ORDER (1ull << 62)
#define STREAM_SAMPLE_ORDER (2ull << 62)
#define STREAM_PATTERNS (3ull << 62)
#define EPOCH_MASK ((1ull << 62) - 1)
#define DEFAULT_PATTERNS 16

typedef struct {
    kl_tokfile tf;          /* mapped file (unused for the synthetic source) */
    const int32_t *tokens;
    const uint8_t *mask;    /* NULL: every target valid */
    int64_t stride;         /* tokens between sample starts */
    int64_t n_samples;
} source;

struct kl_loader {
    kl_loader_opts o;
    int n_src;
    source *src;
    int32_t *patterns; /* synthetic tokens, owned */
    int vocab;
    int64_t S;         /* samples per epoch */
    int64_t epoch_len; /* positions per epoch: S, or S padded to whole global batches (eval) */
    int permute;       /* shuffling on */
    uint64_t fingerprint;
    int64_t epoch, sample; /* the state */

    /* the file order of one epoch: files order[k] cover epoch positions [start[k], start[k+1]) */
    int64_t order_epoch;
    uint32_t *order;
    int64_t *start;
    /* the sample order of one (epoch, source) */
    int64_t perm_epoch;
    int perm_src;
    uint32_t *perm;
    int64_t perm_cap;
};

/* ---- counter-based draws ------------------------------------------------------------------------- */

typedef struct {
    uint64_t seed, stream, block;
    uint32_t buf[4];
    int used;
} draws;

static draws draws_at(uint64_t seed, uint64_t stream, uint64_t block) {
    draws d = {seed, stream, block, {0, 0, 0, 0}, 4};
    return d;
}

static uint32_t next_u32(draws *d) {
    if (d->used == 4) {
        kl_philox_ctr c = kl_philox_block(d->seed, d->stream, d->block++);
        memcpy(d->buf, c.v, sizeof d->buf);
        d->used = 0;
    }
    return d->buf[d->used++];
}

/* Uniform integer in [0, n), n >= 1, without modulo bias: the high word of x*n, rejecting the few low
 * words that would over-represent some results. */
static uint32_t bounded(draws *d, uint32_t n) {
    uint64_t m = (uint64_t)next_u32(d) * n;
    uint32_t lo = (uint32_t)m;
    if (lo < n) {
        uint32_t threshold = (uint32_t)(0u - n) % n;
        while (lo < threshold) {
            m = (uint64_t)next_u32(d) * n;
            lo = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

/* Fisher-Yates from the top: a[i] swaps with a uniform a[j], j <= i. */
static void shuffle_u32(uint32_t *a, uint32_t n, draws *d) {
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = bounded(d, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* ---- orders -------------------------------------------------------------------------------------- */

static void build_file_order(kl_loader *l, int64_t epoch) {
    for (int k = 0; k < l->n_src; k++) l->order[k] = (uint32_t)k;
    if (l->permute && l->n_src > 1) {
        draws d = draws_at(l->o.seed, STREAM_FILE_ORDER | ((uint64_t)epoch & EPOCH_MASK), 0);
        shuffle_u32(l->order, (uint32_t)l->n_src, &d);
    }
    int64_t at = 0;
    for (int k = 0; k < l->n_src; k++) {
        l->start[k] = at;
        at += l->src[l->order[k]].n_samples;
    }
    l->start[l->n_src] = at;
    l->order_epoch = epoch;
}

static kl_status build_sample_order(kl_loader *l, int64_t epoch, int s) {
    int64_t n = l->src[s].n_samples;
    if (n > l->perm_cap) {
        uint32_t *p = realloc(l->perm, (size_t)n * sizeof *p);
        if (!p) return kl_error(KL_ERR_OOM, "out of host memory for the sample order of %lld samples", (long long)n);
        l->perm = p;
        l->perm_cap = n;
    }
    for (int64_t i = 0; i < n; i++) l->perm[i] = (uint32_t)i;
    /* the block counter's high half is the file's sorted index, so files draw disjoint words */
    draws d = draws_at(l->o.seed, STREAM_SAMPLE_ORDER | ((uint64_t)epoch & EPOCH_MASK), (uint64_t)s << 32);
    shuffle_u32(l->perm, (uint32_t)n, &d);
    l->perm_epoch = epoch;
    l->perm_src = s;
    return KL_OK;
}

/* One row: epoch-order index `idx` of `epoch`; past S (eval padding) it is a row without targets. */
static kl_status fill_row(kl_loader *l, int64_t epoch, int64_t idx, int32_t *in, int32_t *tg) {
    int T = l->o.T;
    if (idx >= l->S) {
        for (int t = 0; t < T; t++) {
            in[t] = 0;
            tg[t] = KL_IGNORE_TARGET;
        }
        return KL_OK;
    }
    if (l->permute && l->order_epoch != epoch) build_file_order(l, epoch);
    int lo = 0, hi = l->n_src - 1; /* last k with start[k] <= idx */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (l->start[mid] <= idx) lo = mid;
        else hi = mid - 1;
    }
    int s = (int)l->order[lo];
    int64_t local = idx - l->start[lo];
    if (l->permute) {
        if (l->perm_epoch != epoch || l->perm_src != s) KL_TRY(build_sample_order(l, epoch, s));
        local = l->perm[local];
    }
    const source *src = &l->src[s];
    int64_t off = local * src->stride;
    memcpy(in, src->tokens + off, (size_t)T * sizeof *in);
    if (!src->mask) {
        memcpy(tg, src->tokens + off + 1, (size_t)T * sizeof *tg);
    } else {
        /* kiln's alignment: the target at row position t is token off+t+1 and uses that token's bit */
        const int32_t *tok = src->tokens + off + 1;
        const uint8_t *m = src->mask;
        for (int t = 0; t < T; t++) {
            int64_t i = off + 1 + t;
            tg[t] = (m[i >> 3] >> (i & 7)) & 1 ? tok[t] : KL_IGNORE_TARGET;
        }
    }
    return KL_OK;
}

/* ---- opening ------------------------------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Expands the comma-separated patterns into a sorted list without duplicates. */
static kl_status expand_patterns(const char *patterns, char ***paths_out, int *n_out) {
    *paths_out = NULL;
    *n_out = 0;
    if (!patterns || !*patterns) return kl_error(KL_ERR_CONFIG, "no token files given (expected a glob pattern)");
    char *copy = kl_malloc(strlen(patterns) + 1, "file patterns");
    if (!copy) return KL_ERR_OOM;
    strcpy(copy, patterns);
    char **paths = NULL;
    int n = 0, cap = 0;
    kl_status s = KL_OK;
    for (char *save = NULL, *pat = strtok_r(copy, ",", &save); pat && s == KL_OK; pat = strtok_r(NULL, ",", &save)) {
        while (*pat == ' ') pat++;
        size_t len = strlen(pat);
        while (len > 0 && pat[len - 1] == ' ') pat[--len] = 0;
        if (!len) continue;
        glob_t g;
        int rc = glob(pat, 0, NULL, &g);
        if (rc == GLOB_NOMATCH) {
            s = kl_error(KL_ERR_CONFIG, "no token file matches '%s'", pat);
        } else if (rc != 0) {
            s = kl_error(KL_ERR_IO, "cannot expand '%s' (%s)", pat, rc == GLOB_NOSPACE ? "out of memory" : "read error");
        } else {
            for (size_t i = 0; i < g.gl_pathc && s == KL_OK; i++) {
                if (n == cap) {
                    cap = cap ? 2 * cap : 16;
                    char **p = realloc(paths, (size_t)cap * sizeof *p);
                    if (!p) { s = kl_error(KL_ERR_OOM, "out of host memory listing token files"); break; }
                    paths = p;
                }
                paths[n] = kl_malloc(strlen(g.gl_pathv[i]) + 1, "file path");
                if (!paths[n]) { s = KL_ERR_OOM; break; }
                strcpy(paths[n++], g.gl_pathv[i]);
            }
        }
        if (rc != GLOB_NOMATCH) globfree(&g);
    }
    free(copy);
    if (s == KL_OK && n == 0) s = kl_error(KL_ERR_CONFIG, "no token files given (expected a glob pattern)");
    if (s == KL_OK) {
        qsort(paths, (size_t)n, sizeof *paths, cmp_str);
        int k = 0;
        for (int i = 0; i < n; i++) {
            if (k > 0 && strcmp(paths[k - 1], paths[i]) == 0) free(paths[i]);
            else paths[k++] = paths[i];
        }
        n = k;
    }
    if (s != KL_OK) {
        for (int i = 0; i < n; i++) free(paths[i]);
        free(paths);
        return s;
    }
    *paths_out = paths;
    *n_out = n;
    return KL_OK;
}

static kl_status open_files(kl_loader *l) {
    char **paths;
    int n;
    KL_TRY(expand_patterns(l->o.files, &paths, &n));
    kl_status s = KL_OK;
    l->src = kl_calloc((size_t)n, sizeof *l->src, "token file table");
    if (!l->src) s = KL_ERR_OOM;
    /* Phase 1: map and validate each file against its own header vocab (or the configured one). */
    for (int i = 0; i < n && s == KL_OK; i++) {
        s = kl_tokfile_open(&l->src[i].tf, paths[i], l->o.vocab_size);
        if (s == KL_OK) l->n_src = i + 1;
    }
    /* Phase 2: one vocab for all files; version-1 files (no vocab in the header) are rechecked against it. */
    int vocab = l->o.vocab_size, from = -1;
    for (int i = 0; i < l->n_src && s == KL_OK && vocab <= 0; i++)
        if (l->src[i].tf.version >= 2 && l->src[i].tf.vocab_size > 0) { vocab = l->src[i].tf.vocab_size; from = i; }
    if (s == KL_OK && vocab <= 0)
        s = kl_error(KL_ERR_CONFIG, "the token files carry no vocab size (version 1 headers); set the vocab size");
    for (int i = 0; i < l->n_src && s == KL_OK; i++) {
        kl_tokfile *f = &l->src[i].tf;
        if (f->version >= 2 && f->vocab_size > 0 && f->vocab_size != vocab) {
            if (from >= 0)
                s = kl_error(KL_ERR_INVALID, "vocab mismatch between token files: %s has %d, %s has %d",
                             l->src[from].tf.path, vocab, f->path, f->vocab_size);
            else
                s = kl_error(KL_ERR_INVALID, "%s: vocab size %d, expected %d", f->path, f->vocab_size, vocab);
        } else if (f->vocab_size != vocab) {
            char *p = paths[i];
            kl_tokfile_close(f);
            s = kl_tokfile_open(f, p, vocab);
        }
    }
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    if (s != KL_OK) return s;
    l->vocab = vocab;
    int64_t longest = 0;
    for (int i = 0; i < l->n_src; i++) {
        source *src = &l->src[i];
        src->tokens = src->tf.tokens;
        src->mask = src->tf.mask;
        src->stride = l->o.T;
        src->n_samples = src->tf.count > 0 ? (src->tf.count - 1) / l->o.T : 0;
        if (src->tf.count > longest) longest = src->tf.count;
        const char *base = strrchr(src->tf.path, '/');
        base = base ? base + 1 : src->tf.path;
        l->fingerprint = fnv1a(l->fingerprint, base, strlen(base) + 1);
        l->fingerprint = fnv1a(l->fingerprint, &src->tf.count, sizeof src->tf.count);
    }
    l->S = 0;
    for (int i = 0; i < l->n_src; i++) l->S += l->src[i].n_samples;
    if (l->S == 0)
        return kl_error(KL_ERR_INVALID, "'%s': %d token file(s), none holding a sample of T+1 = %d tokens (longest: %lld)",
                        l->o.files, l->n_src, l->o.T + 1, (long long)longest);
    return KL_OK;
}

/* P sequences of T+1 tokens; when P <= V their first tokens are distinct, so each sequence is fixed by its
 * first token and a model that memorises them predicts every target exactly. */
static kl_status build_patterns(kl_loader *l) {
    int P = l->o.synthetic_patterns > 0 ? l->o.synthetic_patterns : DEFAULT_PATTERNS;
    int V = l->o.vocab_size, T = l->o.T;
    if (V <= 0) return kl_error(KL_ERR_CONFIG, "the synthetic data source needs a vocab size > 0");
    int64_t len = (int64_t)T + 1;
    l->patterns = kl_malloc((size_t)P * (size_t)len * sizeof *l->patterns, "synthetic patterns");
    if (!l->patterns) return KL_ERR_OOM;
    uint8_t *used = NULL; /* bitmap of first tokens taken so far */
    if (P <= V) {
        used = kl_calloc((size_t)V / 8 + 1, 1, "synthetic first-token bitmap");
        if (!used) return KL_ERR_OOM;
    }
    draws d = draws_at(l->o.seed, STREAM_PATTERNS, 0);
    for (int p = 0; p < P; p++) {
        int32_t *row = l->patterns + (int64_t)p * len;
        uint32_t c = bounded(&d, (uint32_t)V);
        /* rejection keeps the first tokens distinct (draws expected: V/(V-p) each, fine for P <= V) */
        while (used && (used[c >> 3] >> (c & 7)) & 1) c = bounded(&d, (uint32_t)V);
        if (used) used[c >> 3] |= (uint8_t)(1u << (c & 7));
        row[0] = (int32_t)c;
        for (int64_t t = 1; t < len; t++) row[t] = (int32_t)bounded(&d, (uint32_t)V);
    }
    free(used);
    l->src = kl_calloc(1, sizeof *l->src, "synthetic source");
    if (!l->src) return KL_ERR_OOM;
    l->n_src = 1;
    l->src[0].tokens = l->patterns;
    l->src[0].stride = len;
    l->src[0].n_samples = P;
    l->vocab = V;
    l->S = P;
    l->fingerprint = fnv1a(l->fingerprint, &V, sizeof V);
    l->fingerprint = fnv1a(l->fingerprint, &P, sizeof P);
    return KL_OK;
}

kl_status kl_loader_open(kl_loader **out, const kl_loader_opts *o) {
    *out = NULL;
    if (o->T < 1 || o->B < 1)
        return kl_error(KL_ERR_CONFIG, "data loader: B = %d and T = %d, both must be >= 1", o->B, o->T);
    if (o->world < 1 || o->rank < 0 || o->rank >= o->world)
        return kl_error(KL_ERR_CONFIG, "data loader: rank %d of world %d, expected 0 <= rank < world", o->rank,
                        o->world);
    if (o->vocab_size < 0) return kl_error(KL_ERR_CONFIG, "data loader: vocab size %d, expected >= 0", o->vocab_size);
    if (o->source != KL_DATA_FILES && o->source != KL_DATA_SYNTHETIC)
        return kl_error(KL_ERR_CONFIG, "data loader: unknown source %d", (int)o->source);
    kl_loader *l = kl_calloc(1, sizeof *l, "data loader");
    if (!l) return KL_ERR_OOM;
    l->o = *o;
    l->o.files = NULL; /* not kept: the caller's string may not outlive the loader */
    l->permute = o->shuffle && !o->eval;
    l->fingerprint = 0xcbf29ce484222325ull;
    int32_t header[5] = {(int32_t)o->source, o->T, l->permute, o->eval ? 1 : 0, 0};
    l->fingerprint = fnv1a(l->fingerprint, header, sizeof header);
    l->fingerprint = fnv1a(l->fingerprint, &o->seed, sizeof o->seed);
    l->order_epoch = -1;
    l->perm_epoch = -1;
    l->perm_src = -1;

    kl_status s;
    if (o->source == KL_DATA_SYNTHETIC) {
        s = build_patterns(l);
    } else {
        l->o.files = o->files;
        s = open_files(l);
        l->o.files = NULL;
    }
    if (s == KL_OK) {
        l->order = kl_malloc((size_t)l->n_src * sizeof *l->order, "file order");
        l->start = kl_malloc(((size_t)l->n_src + 1) * sizeof *l->start, "file starts");
        if (!l->order || !l->start) s = KL_ERR_OOM;
    }
    if (s != KL_OK) {
        kl_loader_close(l);
        return s;
    }
    int64_t global = (int64_t)o->B * o->world;
    l->epoch_len = o->eval ? (l->S + global - 1) / global * global : l->S;
    build_file_order(l, 0); /* also the permanent order when not shuffling */
    *out = l;
    return KL_OK;
}

void kl_loader_close(kl_loader *l) {
    if (!l) return;
    if (l->src && !l->patterns)
        for (int i = 0; i < l->n_src; i++) kl_tokfile_close(&l->src[i].tf);
    free(l->src);
    free(l->patterns);
    free(l->order);
    free(l->start);
    free(l->perm);
    free(l);
}

/* ---- reading ------------------------------------------------------------------------------------- */

kl_status kl_loader_next_batch(kl_loader *l, int32_t *inputs, int32_t *targets) {
    int B = l->o.B, T = l->o.T, W = l->o.world, r = l->o.rank;
    for (int b = 0; b < B; b++) {
        int64_t idx = l->sample + (int64_t)b * W + r, epoch = l->epoch;
        epoch += idx / l->epoch_len;
        idx %= l->epoch_len;
        KL_TRY(fill_row(l, epoch, idx, inputs + (int64_t)b * T, targets + (int64_t)b * T));
    }
    l->sample += (int64_t)B * W;
    l->epoch += l->sample / l->epoch_len;
    l->sample %= l->epoch_len;
    return KL_OK;
}

void kl_loader_get_state(const kl_loader *l, kl_loader_state *s) {
    s->epoch = l->epoch;
    s->sample = l->sample;
    s->fingerprint = l->fingerprint;
}

kl_status kl_loader_set_state(kl_loader *l, const kl_loader_state *s) {
    if (s->fingerprint != l->fingerprint)
        return kl_error(KL_ERR_INVALID,
                        "data loader state was saved for other data (fingerprint %016llx, this loader %016llx): "
                        "the files, their sizes, T, the seed or shuffling changed",
                        (unsigned long long)s->fingerprint, (unsigned long long)l->fingerprint);
    if (s->epoch < 0 || s->sample < 0 || s->sample >= l->epoch_len)
        return kl_error(KL_ERR_INVALID, "data loader state (epoch %lld, sample %lld) is outside the data (%lld per epoch)",
                        (long long)s->epoch, (long long)s->sample, (long long)l->epoch_len);
    l->epoch = s->epoch;
    l->sample = s->sample;
    /* the caches are keyed by epoch and file, so the next batch rebuilds exactly that epoch's orders */
    return KL_OK;
}

void kl_loader_reset(kl_loader *l) {
    l->epoch = 0;
    l->sample = 0;
}

int64_t kl_loader_batches_per_epoch(const kl_loader *l) {
    int64_t global = (int64_t)l->o.B * l->o.world;
    return (l->S + global - 1) / global;
}
int64_t kl_loader_samples_per_epoch(const kl_loader *l) { return l->S; }
int kl_loader_vocab_size(const kl_loader *l) { return l->vocab; }
int kl_loader_num_files(const kl_loader *l) { return l->patterns ? 0 : l->n_src; }
const char *kl_loader_file_path(const kl_loader *l, int i) {
    return (!l->patterns && i >= 0 && i < l->n_src) ? l->src[i].tf.path : NULL;
}
double kl_loader_epoch_progress(const kl_loader *l) {
    return (double)l->epoch + (double)l->sample / (double)l->epoch_len;
}
