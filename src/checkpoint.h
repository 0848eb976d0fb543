/* checkpoint.h — kiln's checkpoint files: <root>/step_XXXXXXXX/rank_RRR.h5 (HDF5, one per rank) plus a DONE
 * marker, the atomic write protocol (temporary name, fsync, rename, DONE last), finding the newest complete
 * checkpoint, resolving train.resume, and the keep policy. Generic: it stores named arrays and scalars and
 * knows nothing about models or optimizers. The format is described in docs/checkpoints.md. */
#ifndef KL_CHECKPOINT_H
#define KL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_CKPT_FORMAT_VERSION 1
#define KL_CKPT_MAX_DIMS 8
#define KL_CKPT_PATH_MAX 4096

/* What a stored entry holds. */
typedef enum {
    KL_CKPT_F32 = 1, /* float32 array, 1..KL_CKPT_MAX_DIMS dims */
    KL_CKPT_BYTES,   /* opaque bytes (1-D uint8 array), may be empty */
    KL_CKPT_I64,     /* scalars */
    KL_CKPT_U64,
    KL_CKPT_F64,
    KL_CKPT_STRING, /* text without NUL bytes, may be empty */
} kl_ckpt_kind;

const char *kl_ckpt_kind_name(kl_ckpt_kind k); /* "f32", "bytes", "i64", "u64", "f64", "string" */

/* The checksum stored with every entry (attribute kl_checksum): a 64-bit hash of the entry's bytes as held in
 * memory (strings: without the NUL). Detects damage; not a cryptographic digest. */
uint64_t kl_ckpt_checksum(const void *data, size_t n_bytes);

/* ckpt_root/step_%08lld into buf. KL_ERR_INVALID if it does not fit or step < 0. */
kl_status kl_ckpt_step_dir(const char *ckpt_root, int64_t step, char *buf, size_t n);

/* ---- writing -------------------------------------------------------------------------------------------
 * Each rank:   kl_ckpt_writer_begin, kl_ckpt_put_* ..., kl_ckpt_writer_finish
 * then, after every rank has finished (a barrier), rank 0 alone:  kl_ckpt_mark_done, then kl_ckpt_prune.
 * begin creates the step folder (mkdir -p), removes a DONE marker left there by an earlier save of the same
 * step (so a folder is never marked complete while its files change) and opens rank_RRR.h5.tmp. finish
 * closes the file, fsyncs it, renames it to rank_RRR.h5 and fsyncs the folder. Until DONE exists the folder
 * is incomplete and never chosen for a resume.
 *
 * Names are paths of '/'-separated components ("params/layers.3.wqkv", "optim/m"): printable ASCII without
 * spaces, no empty, "." or ".." component, at most 1023 characters, unique, none the parent of another, and
 * not under "meta/" (the module's own). A failing put leaves the writer failed: later puts return the first
 * error again, and finish removes the temporary file. */
typedef struct kl_ckpt_writer kl_ckpt_writer;

kl_status kl_ckpt_writer_begin(kl_ckpt_writer **out, const char *ckpt_root, int64_t step, int rank, int world);
/* dims: ndims (1..KL_CKPT_MAX_DIMS) sizes >= 0; data holds their product of floats. */
kl_status kl_ckpt_put_f32(kl_ckpt_writer *w, const char *name, const float *data, int ndims, const int64_t *dims);
kl_status kl_ckpt_put_bytes(kl_ckpt_writer *w, const char *name, const void *data, size_t n_bytes);
kl_status kl_ckpt_put_i64(kl_ckpt_writer *w, const char *name, int64_t value);
kl_status kl_ckpt_put_u64(kl_ckpt_writer *w, const char *name, uint64_t value);
kl_status kl_ckpt_put_f64(kl_ckpt_writer *w, const char *name, double value);
kl_status kl_ckpt_put_string(kl_ckpt_writer *w, const char *name, const char *text);
/* The compatibility signature: n key/value strings (model shape, optimizer name and state layout, world
 * size, ...) that a resume compares with kl_ckpt_check_signature. At most once per writer; keys unique,
 * without '=' or newlines, values without newlines. */
kl_status kl_ckpt_put_signature(kl_ckpt_writer *w, const char *const *keys, const char *const *values, int n);
/* Closes, fsyncs and renames the file into place. Frees w whatever happens (on failure the .tmp is removed). */
kl_status kl_ckpt_writer_finish(kl_ckpt_writer *w);
/* Discards an unfinished writer: closes and removes the temporary file, frees w. NULL is fine. */
void kl_ckpt_writer_abort(kl_ckpt_writer *w);

/* Marks ckpt_root/step_XXXXXXXX complete: checks that rank_000.h5 .. rank_{world-1}.h5 are all there and
 * finished for this step and world size, removes leftovers (temporary files, rank files of a larger earlier
 * world), then writes DONE (temporary name, fsync, rename, fsync of the folder). */
kl_status kl_ckpt_mark_done(const char *ckpt_root, int64_t step, int world);

/* ---- reading -------------------------------------------------------------------------------------------
 * kl_ckpt_open checks that the folder is complete (DONE), that the rank file opens as HDF5, has a known
 * format version, belongs to this step/world/rank and was finished, and reads the header of every entry
 * (HDF5 checksums its metadata, so a damaged header is refused here). The data of each entry is checked
 * against its stored checksum when it is read (kl_ckpt_get_*), or for all entries by kl_ckpt_verify. */
typedef struct kl_ckpt_reader kl_ckpt_reader;

typedef struct {
    const char *name;
    kl_ckpt_kind kind;
    int ndims;                       /* f32: 1..8, bytes: 1, scalars and strings: 0 */
    int64_t dims[KL_CKPT_MAX_DIMS];
    size_t count;                    /* f32: elements; bytes: bytes; scalars: 1; string: bytes stored
                                        (its length, or 1 for the empty string) */
} kl_ckpt_entry;

kl_status kl_ckpt_open(kl_ckpt_reader **out, const char *ckpt_dir, int rank);
void kl_ckpt_close(kl_ckpt_reader *r); /* NULL is fine */
int64_t kl_ckpt_step(const kl_ckpt_reader *r);
int kl_ckpt_world(const kl_ckpt_reader *r);
const char *kl_ckpt_path(const kl_ckpt_reader *r); /* the rank file */
/* The caller's entries (not meta/), sorted by name. */
int kl_ckpt_n_entries(const kl_ckpt_reader *r);
const kl_ckpt_entry *kl_ckpt_entry_at(const kl_ckpt_reader *r, int i);
const kl_ckpt_entry *kl_ckpt_find(const kl_ckpt_reader *r, const char *name); /* NULL if absent */

/* Each get checks that the entry exists, has the expected kind and exactly the expected size (the message
 * names the file, the entry and both sizes), reads it and checks its checksum. */
kl_status kl_ckpt_get_f32(kl_ckpt_reader *r, const char *name, float *dst, size_t count);
kl_status kl_ckpt_get_bytes(kl_ckpt_reader *r, const char *name, void *dst, size_t n_bytes);
kl_status kl_ckpt_get_i64(kl_ckpt_reader *r, const char *name, int64_t *out);
kl_status kl_ckpt_get_u64(kl_ckpt_reader *r, const char *name, uint64_t *out);
kl_status kl_ckpt_get_f64(kl_ckpt_reader *r, const char *name, double *out);
/* *out: a NUL-terminated copy the caller frees with free(). */
kl_status kl_ckpt_get_string(kl_ckpt_reader *r, const char *name, char **out);
/* Reads every entry, arrays in slices of about slice_bytes (0: 64 MiB) so memory stays bounded, and checks
 * each checksum. */
kl_status kl_ckpt_verify(kl_ckpt_reader *r, size_t slice_bytes);

/* Compares the checkpoint's signature with the caller's. KL_ERR_INVALID when they differ, with a message
 * that lists every difference in one line:
 *   "checkpoint <file> does not match this run: model.hidden_size: checkpoint 64, now 128; world_size:
 *    checkpoint 2, now 1; optim.name: not in checkpoint, now dash" */
kl_status kl_ckpt_check_signature(kl_ckpt_reader *r, const char *const *keys, const char *const *values, int n);

/* ---- discovery, resume, retention ----------------------------------------------------------------------
 * A folder step_<digits> under the root is complete when its DONE marker is readable, names the folder's
 * step and a world size W, and rank_000.h5 .. rank_{W-1}.h5 are present. Anything else is incomplete. */
typedef struct {
    int found;                     /* 1: resume from dir; 0: start fresh */
    int64_t step;                  /* when found */
    int world;                     /* when found: the number of rank files */
    char dir[KL_CKPT_PATH_MAX];    /* when found: the step folder */
    char warning[2048];            /* non-empty: the caller should print it (incomplete checkpoints were
                                      ignored); library code never prints */
} kl_ckpt_choice;

/* The newest complete checkpoint under ckpt_root. A root that does not exist means none (found = 0). */
kl_status kl_ckpt_find_latest(const char *ckpt_root, kl_ckpt_choice *out);
/* resume: "none" (start fresh), "auto" (kl_ckpt_find_latest; none found -> start fresh) or the path of a
 * complete step folder. A path that does not exist is KL_ERR_CONFIG; an incomplete folder, or a checkpoint
 * root given instead of one of its step folders, is KL_ERR_INVALID (the message says what to use). */
kl_status kl_ckpt_resolve_resume(const char *resume, const char *ckpt_root, kl_ckpt_choice *out);

/* Deletes complete checkpoints that are neither among the newest keep_last (<= 0: keep all) nor at a step
 * divisible by keep_every (<= 0: off), and incomplete folders older than the newest complete checkpoint
 * (left by interrupted saves). The newest complete checkpoint and incomplete folders newer than it (a save
 * in progress) are never touched. Only files this module writes are removed; a folder that holds anything
 * else is left in place and reported as KL_ERR_IO after the other deletions. *n_removed (may be NULL):
 * folders deleted. */
kl_status kl_ckpt_prune(const char *ckpt_root, int keep_last, int64_t keep_every, int *n_removed);

#ifdef __cplusplus
}
#endif
#endif
