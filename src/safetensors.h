/* safetensors.h — reading and writing Hugging Face safetensors files: an 8-byte little-endian header
 * length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the data.
 * The header is validated completely before any tensor is handed out: offsets inside the data, no
 * overlaps or gaps, shape x dtype size = byte length, sane header length, unique names. A hostile file
 * gives an error, never a crash or a read out of bounds. */
#ifndef KL_SAFETENSORS_H
#define KL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KL_ST_MAX_DIMS 8

typedef enum { KL_ST_F32 = 0, KL_ST_F16, KL_ST_BF16, KL_ST_F64, KL_ST_I64, KL_ST_I32, KL_ST_I16, KL_ST_I8, KL_ST_U8,
               KL_ST_BOOL, KL_ST_F8_E4M3, KL_ST_F8_E5M2 } kl_st_dtype;

typedef struct {
    char *name;
    kl_st_dtype dtype;
    int ndim;
    int64_t shape[KL_ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data; /* inside the mapping; valid until kl_st_close */
    size_t nbytes;
} kl_st_tensor;

typedef struct {
    char path[1024];
    uint8_t *map;
    size_t size;
    int n;
    kl_st_tensor *tensors; /* in file order */
} kl_st_file;

/* Validates a header + data held in memory (the whole file image). On success fills f->tensors (pointing
 * into buf) and f->n; `label` names the file in messages. The fuzz target calls this directly. Zero *f
 * first when it was not opened by kl_st_open (kl_st_close then frees only the tensor table). */
kl_status kl_st_parse(kl_st_file *f, const uint8_t *buf, size_t size, const char *label);
kl_status kl_st_open(kl_st_file *f, const char *path); /* mmap + kl_st_parse */
void kl_st_close(kl_st_file *f);
const kl_st_tensor *kl_st_find(const kl_st_file *f, const char *name);
/* Converts F32 / BF16 / F16 / F64 to float32 into dst, which holds exactly t->numel floats. */
kl_status kl_st_read_f32(const kl_st_tensor *t, float *dst, int64_t count, const char *label);

/* Writer: register tensors (the data pointers must stay valid until kl_st_write), then write the file
 * atomically (temporary name, fsync, rename). F32 and BF16 (round-to-nearest-even from float) only. */
typedef struct kl_st_writer kl_st_writer;
kl_status kl_st_writer_new(kl_st_writer **w);
kl_status kl_st_writer_add(kl_st_writer *w, const char *name, kl_st_dtype dtype, int ndim, const int64_t *shape,
                           const float *data);
kl_status kl_st_write(kl_st_writer *w, const char *path);
void kl_st_writer_free(kl_st_writer *w);

/* float <-> bfloat16 / float16 bit patterns (RNE; NaN stays NaN). */
uint16_t kl_f32_to_bf16(float x);
float kl_bf16_to_f32(uint16_t b);
float kl_f16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif
#endif
