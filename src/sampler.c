/* sampler.c — see sampler.h. Tokens are ranked by probability (ties by id, so the order is total and the
 * result deterministic), cut to the top k and then to the smallest prefix whose mass reaches top_p, and
 * one uniform draw from Philox(seed, draw) picks among the survivors. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

#include "philox.h"

static int by_prob_desc(const void *a, const void *b, void *probs) {
    const float *p = probs;
    int i = *(const int *)a, j = *(const int *)b;
    if (p[i] != p[j]) return p[i] > p[j] ? -1 : 1;
    return i - j;
}

int kl_sample(const float *logits, int V, const kl_sampler_opts *o, uint64_t draw, float *p, int *idx) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (o->temperature <= 0) return best;
    double sum = 0;
    for (int i = 0; i < V; i++) {
        p[i] = expf((logits[i] - logits[best]) / o->temperature);
        sum += p[i];
        idx[i] = i;
    }
    for (int i = 0; i < V; i++) p[i] = (float)(p[i] / sum);
    qsort_r(idx, (size_t)V, sizeof *idx, by_prob_desc, p);
    int n = (o->top_k > 0 && o->top_k < V) ? o->top_k : V;
    double mass = 0;
    int keep = 0;
    while (keep < n) {
        mass += p[idx[keep++]];
        if (o->top_p < 1.0f && mass >= o->top_p) break;
    }
    kl_philox_ctr r = kl_philox_block(o->seed, 0x53414d50u /* "SAMP" */, draw);
    double u = kl_u64_to_unit_double(r.v[0], r.v[1]) * mass, c = 0;
    for (int k = 0; k < keep; k++) {
        c += p[idx[k]];
        if (u < c) return idx[k];
    }
    return idx[keep - 1];
}
