/* tokfile.h — LLMQ's token file format (".bin"): reading (memory-mapped, validated once at open) and
 * writing (temporary name, fsync, rename). Knows nothing about samples, shuffling or ranks (loader.h).
 *
 * Layout: a 1024-byte header of 256 little-endian int32 slots — bytes 0-7 "BIN.TOK\n", [2] version
 * (1 or 2 read, 2 written), [3] bytes per token (4), [4] token count, [5] vocab size (version 2; 0 =
 * unknown in version 1), [6] has-mask flag — then count int32 tokens, then, if flagged, an LSB-first
 * bitmap of ceil(count/8) bytes. Mask bit i = 1 means token i is a valid *target*: it is trained on
 * when it is predicted from the tokens before it (kiln's alignment; see docs/data.md). */
#ifndef KL_TOKFILE_H
#define KL_TOKFILE_H

#include <stddef.h>
#include <stdint.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_TOKFILE_HEADER_BYTES 1024
#define KL_TOKFILE_MAGIC "BIN.TOK\n"
#define KL_TOKFILE_VERSION 2
#define KL_TOKFILE_MAX_TOKENS INT32_MAX /* the header's count is an int32 */

typedef struct {
    char *path;
    int version;           /* 1 or 2 */
    int vocab_size;        /* from the header (version 2), else the vocab it was validated against, else 0 */
    int has_mask;
    int64_t count;         /* tokens */
    const int32_t *tokens; /* count tokens, inside the mapping */
    const uint8_t *mask;   /* ceil(count/8) bytes, LSB-first; NULL when the file has no mask */
    int32_t min_id, max_id; /* over all tokens (0, -1 when count = 0) */
    void *map;
    size_t map_bytes;
} kl_tokfile;

/* Maps `path` read-only and validates it: magic, version, bytes per token, the size implied by the
 * header against the file size, every token id in [0, vocab) — vocab = the header's (version 2) or
 * `expect_vocab` when the header has none; `expect_vocab` > 0 must also equal the header's. One pass over
 * the tokens. Errors name the file, and for a bad id its index and byte offset. On error *f is zeroed. */
kl_status kl_tokfile_open(kl_tokfile *f, const char *path, int expect_vocab);
void kl_tokfile_close(kl_tokfile *f);

/* Valid-target bit of token i (1 when the file has no mask). */
static inline int kl_tokfile_mask_bit(const kl_tokfile *f, int64_t i) {
    return f->mask ? (f->mask[i >> 3] >> (i & 7)) & 1 : 1;
}
/* Number of tokens whose mask bit is 1 (count when the file has no mask). */
int64_t kl_tokfile_mask_valid(const kl_tokfile *f);

/* Writes a version-2 file: `tokens` (count int32, each in [0, vocab)), `mask` NULL or ceil(count/8)
 * LSB-first bytes (bits past count are written as 0). Goes to "<path>.tmp.<pid>", is fsynced and then
 * renamed over `path`, so a reader never sees a half-written file. */
kl_status kl_tokfile_write(const char *path, const int32_t *tokens, int64_t count, int vocab_size,
                           const uint8_t *mask);

#ifdef __cplusplus
}
#endif
#endif
