/* sampler.h — picking the next token from logits: temperature, top-k, top-p (nucleus), seeded by Philox
 * so the same seed gives the same text on every machine. */
#ifndef KL_SAMPLER_H
#define KL_SAMPLER_H
#include <stdint.h>

typedef struct {
    float temperature; /* 0 = greedy (argmax) */
    int top_k;         /* 0 = all tokens */
    float top_p;       /* 1 = no nucleus cut */
    uint64_t seed;
} kl_sampler_opts;

/* Samples one token id from logits (V). `draw` numbers the draws of one generation (0, 1, 2, ...).
 * scratch must hold V floats and V ints. */
int kl_sample(const float *logits, int V, const kl_sampler_opts *o, uint64_t draw, float *scratch_p, int *scratch_idx);

#endif
