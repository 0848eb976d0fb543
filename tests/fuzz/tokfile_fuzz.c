/* tokfile_fuzz.c — libFuzzer target for the token file reader (kl_tokfile_open), on the bytes of a whole file
 * (an in-memory file reached through /proc/self/fd). Any file must be either refused with a message that
 * names it, leaving the handle zeroed, or accepted with a count and a mask that fill the file exactly, every
 * token id in [0, vocab) when a vocabulary is known, and the reported minimum and maximum id true. Each input
 * is opened twice: without an expected vocabulary and with the one its first byte picks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kl_base.h"
#include "tokfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const char *path, size_t size, int expect_vocab) {
    kl_tokfile f;
    if (kl_tokfile_open(&f, path, expect_vocab) != KL_OK) {
        static const kl_tokfile zero;
        if (memcmp(&f, &zero, sizeof f) != 0) abort(); /* a refusal leaves nothing behind */
        if (!strstr(kl_last_error(), path)) {
            fprintf(stderr, "message: %s\n", kl_last_error());
            abort(); /* and names the file */
        }
        return;
    }
    const int64_t want = KL_TOKFILE_HEADER_BYTES + 4 * f.count + (f.has_mask ? (f.count + 7) / 8 : 0);
    if (f.count < 0 || want != (int64_t)size) abort();
    if (expect_vocab > 0 && f.vocab_size != expect_vocab) abort();
    int32_t mn = 0, mx = -1;
    for (int64_t i = 0; i < f.count; i++) {
        const int32_t t = f.tokens[i];
        if (t < 0 || (f.vocab_size > 0 && t >= f.vocab_size)) abort();
        if (i == 0 || t < mn) mn = t;
        if (i == 0 || t > mx) mx = t;
    }
    if (mn != f.min_id || mx != f.max_id) abort();
    const int64_t valid = kl_tokfile_mask_valid(&f);
    if (valid < 0 || valid > f.count || (!f.has_mask && valid != f.count)) abort();
    kl_tokfile_close(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("tokfile_fuzz", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    check(path, size, 0);
    check(path, size, size ? 1 + data[0] : 256);
    return 0;
}
