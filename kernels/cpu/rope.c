/* rope.c — CPU reference of rotary embeddings (kernels/rope.h): the inverse-frequency computation (plain
 * and Llama-3 scaled, as HF's _compute_llama3_parameters), then rope_impl.h for float and double. */
#include "rope.h"

#include "cpu_parallel.h"

#include <math.h>
#include <stddef.h>

/* Largest HS/2 the table builder's stack buffer holds; real models use HS <= 256. */
#define KL_ROPE_MAX_HALF 4096

static const double kl_rope_pi = 3.14159265358979323846;

kl_status kl_rope_inv_freq(double *inv_freq, int HS, double theta, const kl_rope_scaling *s) {
    if (HS <= 0 || HS % 2 != 0) return kl_error(KL_ERR_INVALID, "rope: expected an even, positive head size, got %d", HS);
    if (!(theta > 0.0)) return kl_error(KL_ERR_INVALID, "rope: expected rope_theta > 0, got %g", theta);
    int type = s ? s->type : KL_ROPE_SCALING_NONE;
    if (type != KL_ROPE_SCALING_NONE && type != KL_ROPE_SCALING_LLAMA3)
        return kl_error(KL_ERR_INVALID, "rope: unknown scaling type %d (expected 0 none or 1 llama3)", type);
    if (type == KL_ROPE_SCALING_LLAMA3) {
        if (!(s->factor > 0.0))
            return kl_error(KL_ERR_INVALID, "rope: llama3 scaling expects factor > 0, got %g", s->factor);
        if (s->original_max_pos <= 0)
            return kl_error(KL_ERR_INVALID, "rope: llama3 scaling expects original_max_position_embeddings > 0, got %d",
                            s->original_max_pos);
        if (!(s->low_freq_factor > 0.0) || !(s->high_freq_factor > s->low_freq_factor))
            return kl_error(KL_ERR_INVALID,
                            "rope: llama3 scaling expects 0 < low_freq_factor < high_freq_factor, got %g and %g",
                            s->low_freq_factor, s->high_freq_factor);
    }
    const int half = HS / 2;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(theta, (2.0 * i) / HS);
        if (type == KL_ROPE_SCALING_LLAMA3) {
            /* Long wavelengths (low frequencies) are slowed by `factor`, short ones kept, and the band in
             * between blends the two linearly in original_max_pos / wavelen. */
            double old_len = (double)s->original_max_pos;
            double low_wavelen = old_len / s->low_freq_factor;
            double high_wavelen = old_len / s->high_freq_factor;
            double wavelen = 2.0 * kl_rope_pi / f;
            if (wavelen > low_wavelen) {
                f = f / s->factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (old_len / wavelen - s->low_freq_factor) / (s->high_freq_factor - s->low_freq_factor);
                f = (1.0 - smooth) * f / s->factor + smooth * f;
            }
        }
        inv_freq[i] = f;
    }
    return KL_OK;
}

#define KL_REAL float
#define KL_FN(name) name##_cpu
#include "rope_impl.h"
#undef KL_REAL
#undef KL_FN

#define KL_REAL double
#define KL_FN(name) name##_cpu_f64
#include "rope_impl.h"
#undef KL_REAL
#undef KL_FN

kl_status kl_rope_freqs(float *cos_t, float *sin_t, int T, int HS, double theta, const kl_rope_scaling *s) {
    return rope_freqs_table_cpu(cos_t, sin_t, T, HS, theta, s);
}

kl_status kl_rope_freqs_f64(double *cos_t, double *sin_t, int T, int HS, double theta, const kl_rope_scaling *s) {
    return rope_freqs_table_cpu_f64(cos_t, sin_t, T, HS, theta, s);
}
