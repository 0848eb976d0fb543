/* hf_names.h — where each kiln parameter lives in a Hugging Face checkpoint. kiln fuses q/k/v into one
 * wqkv (and bqkv) and gate/up into one wgu; HF keeps them apart. A kiln tensor maps to 1..3 HF tensors,
 * each a contiguous block of rows of the kiln tensor (row-major, so a block is a contiguous range). */
#ifndef KL_HF_NAMES_H
#define KL_HF_NAMES_H
#include "model.h"

typedef struct {
    char name[96]; /* HF tensor name, e.g. "model.layers.3.self_attn.k_proj.weight" */
    int row0, rows; /* rows [row0, row0+rows) of the kiln tensor */
    int ndim;       /* 1 for vectors (norms, biases), 2 for matrices */
} kl_hf_part;

/* Fills parts[0..n) for kiln parameter p; returns n (0 if the name is unknown). */
int kl_hf_parts(const kl_model_shape *s, const kl_param_info *p, kl_hf_part parts[3]);

#endif
