/* philox.h — Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"), header-only
 * so host C and CUDA device code compute the same bits from the same (key, counter). Every random
 * decision in kiln (data shuffles, initialisation, stochastic rounding, Hadamard signs) draws from it,
 * which is what makes runs repeatable across machines, thread counts and CPU/GPU backends. */
#ifndef KL_PHILOX_H
#define KL_PHILOX_H

#include <stdint.h>

#if defined(__CUDACC__)
#define KL_HD __host__ __device__ __forceinline__
#else
#define KL_HD static inline
#endif

typedef struct { uint32_t v[4]; } kl_philox_ctr;

KL_HD void kl_philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

/* One block of 128 random bits for counter c under key (k0, k1). */
KL_HD kl_philox_ctr kl_philox4x32_10(kl_philox_ctr c, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, lo0, hi1, lo1;
        kl_philox_mulhilo(0xD2511F53u, c.v[0], &hi0, &lo0);
        kl_philox_mulhilo(0xCD9E8D57u, c.v[2], &hi1, &lo1);
        kl_philox_ctr n;
        n.v[0] = hi1 ^ c.v[1] ^ k0;
        n.v[1] = lo1;
        n.v[2] = hi0 ^ c.v[3] ^ k1;
        n.v[3] = lo0;
        c = n;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c;
}

/* Convenience: the 64-bit seed is the key, (a, b) a 64-bit stream id and a 64-bit position. */
KL_HD kl_philox_ctr kl_philox_block(uint64_t seed, uint64_t stream, uint64_t position) {
    kl_philox_ctr c;
    c.v[0] = (uint32_t)position;
    c.v[1] = (uint32_t)(position >> 32);
    c.v[2] = (uint32_t)stream;
    c.v[3] = (uint32_t)(stream >> 32);
    return kl_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* Uniform float in [0, 1) from the top 24 bits of a word: exactly representable, never 1.0. */
KL_HD float kl_u32_to_unit_float(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

/* Uniform double in [0, 1) from 53 bits of two words. */
KL_HD double kl_u64_to_unit_double(uint32_t hi, uint32_t lo) {
    uint64_t x = ((uint64_t)hi << 32 | lo) >> 11;
    return (double)x * (1.0 / 9007199254740992.0);
}

#endif
