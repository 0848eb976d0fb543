/* tokfile.c — see tokfile.h. Opening maps the whole file read-only and checks everything the loader
 * relies on, so nothing downstream needs to re-validate: header fields, exact file size, and every token
 * id against the vocab in one vectorisable min/max pass (the exact culprit is searched only on failure). */
#include "tokfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "token files are little-endian int32; kiln reads them in place and needs a little-endian host"
#endif

static int64_t mask_bytes(int64_t count) { return (count + 7) / 8; }

/* Prints the 8 magic bytes with non-printables escaped, for the bad-magic message. */
static void describe_magic(const unsigned char *m, char *out, size_t out_size) {
    size_t k = 0;
    for (int i = 0; i < 8 && k + 5 < out_size; i++) {
        if (m[i] >= 32 && m[i] < 127 && m[i] != '\\') out[k++] = (char)m[i];
        else if (m[i] == '\n') { out[k++] = '\\'; out[k++] = 'n'; }
        else k += (size_t)snprintf(out + k, out_size - k, "\\x%02x", m[i]);
    }
    out[k] = 0;
}

/* min and max over n ids; the reduction is order-independent, so threads cannot change the result. */
static void scan_min_max(const int32_t *t, int64_t n, int32_t *mn_out, int32_t *mx_out) {
    int32_t mn = INT32_MAX, mx = INT32_MIN;
#pragma omp parallel for simd reduction(min : mn) reduction(max : mx) schedule(static) if (n > (1 << 22))
    for (int64_t i = 0; i < n; i++) {
        int32_t v = t[i];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    *mn_out = mn;
    *mx_out = mx;
}

static kl_status fail(kl_tokfile *f, int fd, kl_status s) {
    if (fd >= 0) close(fd);
    kl_tokfile_close(f);
    return s;
}

kl_status kl_tokfile_open(kl_tokfile *f, const char *path, int expect_vocab) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kl_error(KL_ERR_IO, "cannot open token file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0)
        return fail(f, fd, kl_error(KL_ERR_IO, "cannot stat token file %s: %s", path, strerror(errno)));
    if (!S_ISREG(st.st_mode))
        return fail(f, fd, kl_error(KL_ERR_INVALID, "%s: not a regular file (expected a token file)", path));
    int64_t size = (int64_t)st.st_size;
    if (size < KL_TOKFILE_HEADER_BYTES)
        return fail(f, fd,
                    kl_error(KL_ERR_INVALID,
                             "%s: %lld bytes, shorter than the %d-byte token file header (truncated or empty file)",
                             path, (long long)size, KL_TOKFILE_HEADER_BYTES));
    f->path = kl_malloc(strlen(path) + 1, "token file path");
    if (!f->path) return fail(f, fd, KL_ERR_OOM);
    strcpy(f->path, path);
    f->map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return fail(f, fd, kl_error(KL_ERR_IO, "cannot map token file %s: %s", path, strerror(errno)));
    }
    f->map_bytes = (size_t)size;
    close(fd);
    fd = -1;

    const unsigned char *base = f->map;
    int32_t h[7];
    memcpy(h, base, sizeof h);
    if (memcmp(base, KL_TOKFILE_MAGIC, 8) != 0) {
        char got[64];
        describe_magic(base, got, sizeof got);
        return fail(f, fd,
                    kl_error(KL_ERR_INVALID, "%s: bad magic '%s', expected 'BIN.TOK\\n' (not a token file)", path,
                             got));
    }
    if (h[2] != 1 && h[2] != 2)
        return fail(f, fd, kl_error(KL_ERR_INVALID, "%s: unsupported token file version %d (expected 1 or 2)",
                                    path, h[2]));
    if (h[3] != 4)
        return fail(f, fd, kl_error(KL_ERR_INVALID, "%s: %d bytes per token, expected 4 (int32 tokens)", path, h[3]));
    if (h[4] < 0)
        return fail(f, fd, kl_error(KL_ERR_INVALID, "%s: negative token count %d in the header", path, h[4]));
    if (h[6] != 0 && h[6] != 1)
        return fail(f, fd, kl_error(KL_ERR_INVALID, "%s: has-mask flag is %d, expected 0 or 1", path, h[6]));
    int version = h[2];
    int header_vocab = version >= 2 ? h[5] : 0;
    if (header_vocab < 0)
        return fail(f, fd, kl_error(KL_ERR_INVALID, "%s: negative vocab size %d in the header", path, header_vocab));
    int64_t count = h[4];
    int has_mask = h[6];
    int64_t want = KL_TOKFILE_HEADER_BYTES + 4 * count + (has_mask ? mask_bytes(count) : 0);
    if (size != want)
        return fail(f, fd,
                    kl_error(KL_ERR_INVALID,
                             "%s: the header promises %lld tokens%s = %lld bytes but the file has %lld bytes (%s)",
                             path, (long long)count, has_mask ? " and a mask" : "", (long long)want,
                             (long long)size, size < want ? "truncated" : "trailing bytes"));
    if (expect_vocab > 0 && header_vocab > 0 && header_vocab != expect_vocab)
        return fail(f, fd, kl_error(KL_ERR_INVALID, "%s: vocab size %d in the header, expected %d", path,
                                    header_vocab, expect_vocab));

    f->version = version;
    f->vocab_size = header_vocab > 0 ? header_vocab : (expect_vocab > 0 ? expect_vocab : 0);
    f->has_mask = has_mask;
    f->count = count;
    f->tokens = (const int32_t *)(base + KL_TOKFILE_HEADER_BYTES);
    f->mask = has_mask ? base + KL_TOKFILE_HEADER_BYTES + 4 * count : NULL;
    f->min_id = 0;
    f->max_id = -1;
    if (count > 0) scan_min_max(f->tokens, count, &f->min_id, &f->max_id);
    if (count > 0 && (f->min_id < 0 || (f->vocab_size > 0 && f->max_id >= f->vocab_size))) {
        int64_t i = 0;
        while (i < count && f->tokens[i] >= 0 && (f->vocab_size <= 0 || f->tokens[i] < f->vocab_size)) i++;
        int32_t bad = f->tokens[i];
        if (bad < 0)
            kl_error(KL_ERR_INVALID, "%s: token %lld (byte offset %lld) is %d, a negative id", path, (long long)i,
                     (long long)(KL_TOKFILE_HEADER_BYTES + 4 * i), bad);
        else
            kl_error(KL_ERR_INVALID, "%s: token %lld (byte offset %lld) is %d, not below the vocab size %d", path,
                     (long long)i, (long long)(KL_TOKFILE_HEADER_BYTES + 4 * i), bad, f->vocab_size);
        return fail(f, fd, KL_ERR_INVALID);
    }
    return KL_OK;
}

void kl_tokfile_close(kl_tokfile *f) {
    if (f->map) munmap(f->map, f->map_bytes);
    free(f->path);
    memset(f, 0, sizeof *f);
}

int64_t kl_tokfile_mask_valid(const kl_tokfile *f) {
    if (!f->mask) return f->count;
    int64_t full = f->count / 8, n = 0;
    for (int64_t i = 0; i < full; i++) n += __builtin_popcount(f->mask[i]);
    for (int64_t i = full * 8; i < f->count; i++) n += kl_tokfile_mask_bit(f, i);
    return n;
}

static kl_status write_all(int fd, const void *buf, size_t n, const char *tmp) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return kl_error(KL_ERR_IO, "writing %s: %s", tmp, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return KL_OK;
}

kl_status kl_tokfile_write(const char *path, const int32_t *tokens, int64_t count, int vocab_size,
                           const uint8_t *mask) {
    if (count < 0 || count > KL_TOKFILE_MAX_TOKENS)
        return kl_error(KL_ERR_INVALID, "%s: %lld tokens; a token file holds 0 to %d (split the data into files)",
                        path, (long long)count, KL_TOKFILE_MAX_TOKENS);
    if (vocab_size <= 0) return kl_error(KL_ERR_INVALID, "%s: vocab size %d, expected > 0", path, vocab_size);
    if (count > 0 && !tokens) return kl_error(KL_ERR_INVALID, "%s: no tokens given for %lld tokens", path, (long long)count);
    int32_t mn = 0, mx = -1;
    if (count > 0) scan_min_max(tokens, count, &mn, &mx);
    if (count > 0 && (mn < 0 || mx >= vocab_size)) {
        int64_t i = 0;
        while (tokens[i] >= 0 && tokens[i] < vocab_size) i++;
        return kl_error(KL_ERR_INVALID, "%s: token %lld is %d, outside [0, vocab size %d)", path, (long long)i,
                        tokens[i], vocab_size);
    }

    size_t tmp_len = strlen(path) + 32;
    char *tmp = kl_malloc(tmp_len, "temporary file name");
    if (!tmp) return KL_ERR_OOM;
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        kl_status s = kl_error(KL_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    int32_t header[KL_TOKFILE_HEADER_BYTES / 4];
    memset(header, 0, sizeof header);
    memcpy(header, KL_TOKFILE_MAGIC, 8);
    header[2] = KL_TOKFILE_VERSION;
    header[3] = 4;
    header[4] = (int32_t)count;
    header[5] = vocab_size;
    header[6] = mask ? 1 : 0;
    kl_status s = write_all(fd, header, sizeof header, tmp);
    if (s == KL_OK && count > 0) s = write_all(fd, tokens, (size_t)count * 4, tmp);
    if (s == KL_OK && mask && count > 0) {
        int64_t nb = mask_bytes(count);
        if (nb > 1) s = write_all(fd, mask, (size_t)(nb - 1), tmp);
        /* bits past `count` in the last byte are padding: write them as 0 so files are canonical */
        uint8_t last = mask[nb - 1];
        if (count % 8) last &= (uint8_t)((1u << (count % 8)) - 1);
        if (s == KL_OK) s = write_all(fd, &last, 1, tmp);
    }
    if (s == KL_OK && fsync(fd) != 0) s = kl_error(KL_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && s == KL_OK) s = kl_error(KL_ERR_IO, "closing %s: %s", tmp, strerror(errno));
    if (s == KL_OK && rename(tmp, path) != 0)
        s = kl_error(KL_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (s != KL_OK) unlink(tmp);
    free(tmp);
    return s;
}
