/* safetensors.h — reading and writing Hugging Face safetensors files (an 8-byte little-endian header
 * length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the data),
 * single or sharded (model.safetensors.index.json). Every header is validated completely before any tensor
 * is handed out; a corrupt or hostile file gives an error that says what is wrong, never a crash or a read
 * out of bounds. Conversion to float32 (the master dtype) from F32 / BF16 / F16 / F64. */
#ifndef KL_SAFETENSORS_H
#define KL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_ST_MAX_DIMS 8
#define KL_ST_MAX_HEADER_BYTES (100u << 20) /* the reference implementation's limit */

/* The dtypes a header may name (the reference package's names). Sub-byte types (F4, F6_*) are refused. */
typedef enum {
    KL_ST_F32 = 0, KL_ST_F16, KL_ST_BF16, KL_ST_F64, KL_ST_I64, KL_ST_I32, KL_ST_I16, KL_ST_I8, KL_ST_U8,
    KL_ST_BOOL, KL_ST_F8_E4M3, KL_ST_F8_E5M2, KL_ST_U16, KL_ST_U32, KL_ST_U64, KL_ST_F8_E8M0,
    KL_ST_NUM_DTYPES
} kl_st_dtype;

const char *kl_st_dtype_name(kl_st_dtype d); /* "F32", ...; "?" for an invalid value */
int kl_st_dtype_size(kl_st_dtype d);         /* bytes per element; 0 for an invalid value */

typedef struct {
    char *name;
    kl_st_dtype dtype;
    int ndim;
    int64_t shape[KL_ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data; /* inside the file image; valid until kl_st_close */
    size_t nbytes;       /* numel x dtype size, = data_offsets[1] - data_offsets[0] */
} kl_st_tensor;

typedef struct {
    char path[1024];
    uint8_t *map; /* the mmap'd file (NULL for kl_st_parse on a caller's buffer) */
    size_t size;
    int n;
    kl_st_tensor *tensors;   /* in header order */
    kl_st_tensor **by_name;  /* the same tensors sorted by name (for kl_st_find) */
    int n_meta;
    char **meta;             /* __metadata__ as 2*n_meta strings: key, value, key, value, ... */
} kl_st_file;

/* Validates a whole file image held in memory. On success fills f (tensors point into buf, which must
 * outlive f); `label` names the file in messages. Zero *f first when it was not opened by kl_st_open
 * (kl_st_close then frees only the tables). The fuzz target calls this directly. Checks: header length
 * >= 2, <= KL_ST_MAX_HEADER_BYTES and inside the file; header valid UTF-8 without control bytes; a JSON
 * object; __metadata__ (at most once) an object of strings; each tensor an object with a known dtype, a
 * shape of <= KL_ST_MAX_DIMS non-negative integers and data_offsets [begin, end] with
 * end - begin = numel x dtype size; names unique; the tensors tile the data exactly (no gap, no overlap,
 * nothing after the last). */
kl_status kl_st_parse(kl_st_file *f, const uint8_t *buf, size_t size, const char *label);
kl_status kl_st_open(kl_st_file *f, const char *path); /* mmap + kl_st_parse; f is zeroed first */
void kl_st_close(kl_st_file *f);
const kl_st_tensor *kl_st_find(const kl_st_file *f, const char *name); /* NULL when absent */
const char *kl_st_metadata(const kl_st_file *f, const char *key);      /* NULL when absent */
/* Converts F32 / BF16 / F16 / F64 to float32 into dst, which holds exactly `count` = t->numel floats;
 * any other dtype or count is an error naming the tensor and `label`. */
kl_status kl_st_read_f32(const kl_st_tensor *t, float *dst, int64_t count, const char *label);

/* A Hugging Face model folder: DIR/model.safetensors if it exists (what transformers picks first), else
 * DIR/model.safetensors.index.json and the shards its weight_map names. The index is validated against
 * the shards: every shard named exists (a plain file name inside DIR) and is a valid file, every tensor is
 * found in the shard the index names, and no shard holds a tensor the index does not place there. */
typedef struct {
    char dir[1024];
    int sharded; /* 1 when read through the index */
    int nfiles;
    kl_st_file *files;
    int n;                         /* tensors over all files */
    const kl_st_tensor **tensors;  /* sorted by name: iterate i < n */
    int *file_of;                  /* files[file_of[i]] holds tensors[i] */
} kl_st_dir;

kl_status kl_st_dir_open(kl_st_dir *d, const char *dir); /* d is zeroed first */
const kl_st_tensor *kl_st_dir_find(const kl_st_dir *d, const char *name); /* NULL when absent */
int kl_st_dir_index(const kl_st_dir *d, const char *name); /* i with tensors[i] named so; -1 when absent */
/* Path of the file holding tensor `name` (for messages), or NULL. */
const char *kl_st_dir_file_of(const kl_st_dir *d, const char *name);
void kl_st_dir_close(kl_st_dir *d);

/* Writer: register tensors (float32 data that must stay valid until the file is written), then write one
 * file or a sharded folder. Each file is written to a temporary name, fsynced and renamed, so a reader
 * never sees half a file. F32 is written as is, BF16 rounded to nearest even. __metadata__ is
 * {"format": "pt"} unless changed with kl_st_writer_metadata. */
typedef struct kl_st_writer kl_st_writer;
kl_status kl_st_writer_new(kl_st_writer **w);
kl_status kl_st_writer_add(kl_st_writer *w, const char *name, kl_st_dtype dtype, int ndim, const int64_t *shape,
                           const float *data);
kl_status kl_st_writer_metadata(kl_st_writer *w, const char *key, const char *value); /* adds or replaces */
kl_status kl_st_write(kl_st_writer *w, const char *path);
/* Writes DIR/model.safetensors when everything fits in max_shard_bytes (0 = no limit), otherwise
 * DIR/model-0000K-of-0000N.safetensors (tensors in the order added, a new shard whenever the next tensor
 * would overflow the current one; a tensor larger than the limit gets a shard of its own) and
 * DIR/model.safetensors.index.json, written last. A file of the other layout left in DIR by an earlier
 * save (model.safetensors or the index) is removed so that loaders cannot pick up stale weights. */
kl_status kl_st_write_dir(kl_st_writer *w, const char *dir, uint64_t max_shard_bytes);
void kl_st_writer_free(kl_st_writer *w);

/* float <-> bfloat16 / float16 bit patterns (round to nearest even; NaN stays NaN). */
uint16_t kl_f32_to_bf16(float x);
float kl_bf16_to_f32(uint16_t b);
float kl_f16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif
#endif
