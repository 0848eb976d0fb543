/* loader.h — batches of (inputs, targets) for training and evaluation: token files matched by glob
 * patterns (memory-mapped, tokfile.h) or a synthetic learnable stream; deterministic Philox shuffles;
 * disjoint per-rank shards; a resume state of three integers. It owns no model or device memory.
 *
 * Samples. A file of N tokens holds (N-1)/T samples: sample c is tokens [c*T, c*T+T] (T+1 tokens);
 * inputs are its first T tokens, targets its last T, a target whose mask bit is 0 becoming -100.
 *
 * Order. Every epoch has one global order of all S samples: the files in a Philox permutation of the
 * epoch, and inside each file its samples in a Philox permutation of (epoch, file) (both identity when
 * not shuffling). Epochs follow each other without a gap, forming one endless stream; global position p
 * is sample p % S of epoch p / S. A batch consumes B*W consecutive positions: row b of rank r is position
 * p + b*W + r. So ranks stay in lockstep, never share a sample, and together read every sample exactly
 * once per S positions; nothing is dropped (a batch may straddle two epochs). The state is p, stored as
 * (epoch, sample), the same on every rank.
 *
 * Evaluation loaders read in file order without shuffling, and pad each pass to whole batches: positions
 * past S in a pass give rows with inputs 0 and targets -100 (no loss), then the next pass starts. */
#ifndef KL_LOADER_H
#define KL_LOADER_H

#include <stdint.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_IGNORE_TARGET (-100)

typedef enum { KL_DATA_FILES = 0, KL_DATA_SYNTHETIC = 1 } kl_data_source;

typedef struct {
    kl_data_source source;
    const char *files;  /* FILES: glob patterns separated by ',' (e.g. "data/train_*.bin"); each must match */
    int T, B;           /* sequence length, rows per batch on this rank */
    uint64_t seed;      /* shuffles, and the synthetic patterns */
    int shuffle;        /* 1: permute files and samples every epoch (ignored when eval) */
    int rank, world;    /* this rank's shard of world (world >= 1) */
    int vocab_size;     /* expected vocab; 0 = take it from the files. Required for SYNTHETIC */
    int eval;           /* 1: file order, no shuffle, each pass padded to whole batches */
    int synthetic_patterns; /* SYNTHETIC: number of distinct sequences (0 = 16) */
} kl_loader_opts;

/* Where the stream stands: global position epoch * S + sample. Identical on every rank. */
typedef struct {
    int64_t epoch;        /* passes completed */
    int64_t sample;       /* next position within the epoch's global order, in [0, epoch length) */
    uint64_t fingerprint; /* file names and sizes, T, seed, source, eval: checked when restoring */
} kl_loader_state;

typedef struct kl_loader kl_loader;

/* Opens and validates every file (see kl_tokfile_open), or builds the synthetic patterns. Errors: no file
 * matching a pattern, bad files, vocab disagreement between files or with o->vocab_size, no file with a
 * whole sample of T+1 tokens, bad B/T/rank/world. */
kl_status kl_loader_open(kl_loader **out, const kl_loader_opts *o);
void kl_loader_close(kl_loader *l);

/* Fills inputs (B,T) and targets (B,T) with this rank's next batch and advances the stream. */
kl_status kl_loader_next_batch(kl_loader *l, int32_t *inputs, int32_t *targets);

void kl_loader_get_state(const kl_loader *l, kl_loader_state *s);
/* Continues from `s` exactly (permutations are rebuilt for that epoch). The world size and B may differ
 * from the run that saved it: the global stream is the same. Fails if the fingerprint differs. */
kl_status kl_loader_set_state(kl_loader *l, const kl_loader_state *s);
/* Back to position 0 (the start of a new evaluation pass). */
void kl_loader_reset(kl_loader *l);

/* Batches (per rank, all ranks together) that read every sample at least once: ceil(S / (B*W)). */
int64_t kl_loader_batches_per_epoch(const kl_loader *l);
int64_t kl_loader_samples_per_epoch(const kl_loader *l); /* S */
int kl_loader_vocab_size(const kl_loader *l);
int kl_loader_num_files(const kl_loader *l);              /* 0 for SYNTHETIC */
const char *kl_loader_file_path(const kl_loader *l, int i); /* sorted order */
/* Epochs completed as a fraction (position / S), for logs. */
double kl_loader_epoch_progress(const kl_loader *l);

#ifdef __cplusplus
}
#endif
#endif
