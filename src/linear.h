/* linear.h — the linear layer of the transformer blocks by precision mode (precision.matmul): FP32 (what
 * `bf16` means on the CPU), FP8 (E4M3 forward, E5M2 gradients, per-tensor current scaling) and NVFP4
 * (Quartet II: RTN + four-over-six forward, MS-EDEN or SR backward on 128-point rotated operands).
 * Emulation: every operand is quantized, dequantized exactly and multiplied in FP32 by the matmul.h
 * reference. Owns no weights and no state; the numerics are kernels/quant.h's. docs/precision.md. */
#ifndef KL_LINEAR_H
#define KL_LINEAR_H

#include <stdint.h>

#include "kl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KL_LINEAR_FP32 = 0,  /* plain FP32 GEMMs: precision.matmul = bf16 on the CPU (no BF16 rounding) */
    KL_LINEAR_FP8 = 1,   /* DESIGN.md §4: E4M3 X and W, E5M2 dY (scaled to 57344), per-tensor scales */
    KL_LINEAR_NVFP4 = 2, /* Quartet II, quartet2-nvfp4.md §3 */
} kl_linear_mode;

typedef enum {
    KL_LINEAR_BWD_MS_EDEN = 0, /* MS-EDEN on the rotated backward operands (Quartet II) */
    KL_LINEAR_BWD_SR = 1,      /* stochastic rounding of every element instead (the baseline) */
} kl_linear_nvfp4_backward;

typedef struct {
    kl_linear_mode mode;
    kl_linear_nvfp4_backward nvfp4_backward; /* NVFP4 only */
    uint64_t seed;                           /* Philox key of the backward's randomness (train.seed) */
} kl_linear_cfg;

/* The four linear layers of a block, in the order the forward runs them. */
typedef enum { KL_LINEAR_QKV = 0, KL_LINEAR_O = 1, KL_LINEAR_GATE_UP = 2, KL_LINEAR_DOWN = 3 } kl_linear_site;

/* The randomized operands of one NVFP4 backward, low 3 bits of the call id. */
typedef enum {
    KL_LINEAR_RNG_SIGNS = 0,   /* the 128 Hadamard signs, shared by both backward GEMMs */
    KL_LINEAR_RNG_DGRAD_E = 1, /* dY rotated along OC, for dX = dY Q(W) */
    KL_LINEAR_RNG_DGRAD_W = 2, /* Q(W)^T rotated along OC */
    KL_LINEAR_RNG_WGRAD_E = 3, /* dY^T rotated along N, for dW = dY^T Q(X) */
    KL_LINEAR_RNG_WGRAD_X = 4, /* Q(X)^T rotated along N */
} kl_linear_rng_operand;

/* Philox call id of one randomized operand (kernels/quant.h's call_id):
 *   pass << 20 | layer << 5 | site << 3 | operand
 * pass = index of the model's backward pass (one per micro-batch), layer < 2^15. Unique per (pass, layer,
 * site, operand), so a GPU implementation draws the same numbers given train.seed. */
static inline uint64_t kl_linear_call_id(uint64_t pass, int layer, kl_linear_site site, kl_linear_rng_operand op) {
    return (pass << 20) | ((uint64_t)layer << 5) | ((uint64_t)site << 3) | (uint64_t)op;
}

/* Message-bearing check of a configuration (mode and backward rounding known). */
kl_status kl_linear_cfg_check(const kl_linear_cfg *cfg);
const char *kl_linear_mode_name(kl_linear_mode mode);

/* What a forward keeps for its backward: the fake-quantized operands Q(inp) (N, ld) and Q(w) (OC, ld), ld =
 * IC (FP8) or IC rounded up to 16 (NVFP4), and which arguments they came from. One per linear layer, owned
 * by the caller: zero-initialise it, pass it to every forward and backward of that layer (buffers grow and
 * are reused), release it with kl_linear_saved_free. Quartet II's backward also starts from the forward's
 * quantized tensors; a backward without a matching record recomputes them, which gives the same bits. */
typedef struct {
    float *xq, *wq;
    size_t xq_cap, wq_cap; /* floats allocated */
    int valid;             /* set by a successful quantized forward, cleared by every forward */
    kl_linear_mode mode;
    const float *inp, *w; /* the forward's arguments (compared by address) */
    int N, IC, OC;
} kl_linear_saved;
void kl_linear_saved_free(kl_linear_saved *s);

/* out(N,OC) = Q(inp)(N,IC) Q(w)(OC,IC)^T + bias(OC), bias in FP32 (may be NULL). out must not alias inp
 * or w. FP8: Q = E4M3 with the tensor's abs-max scale. NVFP4: Q = RTN with the four-over-six block scale
 * choice along IC (zero-padded to a multiple of 16). Deterministic. saved may be NULL. A non-finite inp or
 * w gives an all-NaN out (as the FP32 GEMM would spread it), so the trainer's guard sees it; not an error. */
kl_status kl_linear_forward(const kl_linear_cfg *cfg, kl_linear_saved *saved, float *out, const float *inp,
                            const float *w, const float *bias, int N, int IC, int OC);

/* The matching backward, with matmul.h's conventions: dinp(N,IC) OVERWRITTEN (NULL skips it), dw(OC,IC)
 * and dbias(OC) ACCUMULATED (dbias may be NULL; it is the FP32 column sum of dout). inp and w are the
 * forward's arguments; Q(inp), Q(w) come from `saved` when it records exactly this forward (same mode,
 * addresses and sizes; the caller must not have changed their contents), else they are recomputed.
 *  FP8:   dinp = Q5(dout) Q4(w);  dw += Q5(dout)^T Q4(inp)   (Q5 = E5M2, scale amax/57344).
 *  NVFP4: with H = the 128-point RHT with signs from (seed, call_base|SIGNS), K zero-padded to 128:
 *         dinp = B(H dout) B(H Q(w)^T)^T / 128;  dw += B(H dout^T) B(H Q(inp)^T)^T / 128,
 *         B = MS-EDEN (or SR) along K with call id call_base | operand (kl_linear_rng_operand).
 * call_base = kl_linear_call_id(pass, layer, site, 0); unused by FP32 and FP8. A non-finite dout, inp or w
 * gives NaN gradients (not an error). */
kl_status kl_linear_backward(const kl_linear_cfg *cfg, const kl_linear_saved *saved, uint64_t call_base, float *dinp,
                             float *dw, float *dbias, const float *dout, const float *inp, const float *w, int N, int IC,
                             int OC);

#ifdef __cplusplus
}
#endif
#endif
