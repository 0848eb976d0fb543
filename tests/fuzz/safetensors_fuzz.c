/* safetensors_fuzz.c — libFuzzer target for the safetensors header parser (kl_st_parse): any input must be
 * either refused with a message or accepted with every tensor lying inside the input, a unique name, a
 * byte length equal to numel x dtype size, and readable as float32 where the dtype allows. libFuzzer hands
 * over a buffer of exactly `size` bytes, so AddressSanitizer catches any read past it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kl_base.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static float scratch[1 << 16];
static volatile unsigned sink; /* keeps the byte sums, so the reads are not optimised away */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kl_st_file f;
    memset(&f, 0, sizeof f);
    if (kl_st_parse(&f, data, size, "fuzz") != KL_OK) {
        if (f.n != 0 || f.tensors || f.meta) abort(); /* a refusal leaves nothing behind */
        if (kl_last_error()[0] == 0) abort();
        return 0;
    }
    unsigned sum = 0;
    for (int i = 0; i < f.n; i++) {
        const kl_st_tensor *t = &f.tensors[i];
        if (t->data < data || t->nbytes > size || t->data + t->nbytes > data + size) abort();
        if ((uint64_t)t->numel * (uint64_t)kl_st_dtype_size(t->dtype) != t->nbytes) abort();
        if (t->ndim < 0 || t->ndim > KL_ST_MAX_DIMS) abort();
        if (kl_st_find(&f, t->name) != t) abort(); /* names are unique and findable */
        for (size_t k = 0; k < t->nbytes; k++) sum += t->data[k];
        if (t->numel <= (int64_t)(sizeof scratch / sizeof *scratch)) {
            const int convertible = t->dtype == KL_ST_F32 || t->dtype == KL_ST_BF16 || t->dtype == KL_ST_F16 ||
                                    t->dtype == KL_ST_F64;
            if ((kl_st_read_f32(t, scratch, t->numel, "fuzz") == KL_OK) != convertible) abort();
        }
    }
    for (int i = 0; i < f.n_meta; i++)
        if (kl_st_metadata(&f, f.meta[2 * i]) == NULL) abort();
    sink = sum;
    kl_st_close(&f);
    return 0;
}
