/* rmsnorm_impl.h — RMSNorm and the Qwen3 q/k norm written once against KL_REAL / KL_FN(name); included by
 * rmsnorm.c for float (_cpu) and double (_cpu_f64). Sums run in double. No include guard on purpose. */

/* One vector of length n: y = x * r * w with r = 1/sqrt(mean(x^2) + eps); returns r. y may equal x. */
static KL_REAL KL_FN(rms_normalize)(KL_REAL *y, const KL_REAL *x, const KL_REAL *w, int n, KL_REAL eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    /* HF: variance in fp32, then + eps, then rsqrt; the mean is rounded to KL_REAL before eps is added. */
    KL_REAL var = (KL_REAL)(ss / n);
    KL_REAL r = (KL_REAL)(1.0 / sqrt((double)(var + eps)));
    for (int i = 0; i < n; i++) {
        KL_REAL xhat = x[i] * r;  /* normalise first, then scale by the weight (HF order) */
        y[i] = w[i] * xhat;
    }
    return r;
}

/* Gradient of y = x * r * w w.r.t. x for one vector:  dx_i = r w_i g_i - x_i r^3 / n * sum_j g_j w_j x_j.
 * Written into dx (accumulate != 0: added). dx may equal g (each g_i is read before dx_i is written). */
static void KL_FN(rms_backward_x)(KL_REAL *dx, const KL_REAL *g, const KL_REAL *x, const KL_REAL *w, KL_REAL r,
                                  int n, int accumulate) {
    double dot = 0.0;  /* sum_j g_j w_j x_j */
    for (int j = 0; j < n; j++) dot += (double)g[j] * (double)w[j] * (double)x[j];
    double coef = (double)r * (double)r * (double)r * dot / n;
    for (int i = 0; i < n; i++) {
        double d = (double)r * (double)w[i] * (double)g[i] - (double)x[i] * coef;
        dx[i] = accumulate ? (KL_REAL)(dx[i] + d) : (KL_REAL)d;
    }
}

void KL_FN(kl_rmsnorm_forward)(KL_REAL *out, KL_REAL *rstd, const KL_REAL *x, const KL_REAL *w, int N, int C,
                               KL_REAL eps) {
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * C))
    for (int n = 0; n < N; n++) rstd[n] = KL_FN(rms_normalize)(out + (size_t)n * C, x + (size_t)n * C, w, C, eps);
}

void KL_FN(kl_rmsnorm_backward)(KL_REAL *dx, KL_REAL *dw, const KL_REAL *dout, const KL_REAL *x, const KL_REAL *w,
                                const KL_REAL *rstd, int N, int C) {
    /* dw_c += sum_n dout[n,c] x[n,c] rstd[n]: threads split columns, rows summed in order (deterministic). */
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * C))
    for (int c = 0; c < C; c++) {
        double acc = 0.0;
        for (int n = 0; n < N; n++) acc += (double)dout[(size_t)n * C + c] * (double)x[(size_t)n * C + c] * (double)rstd[n];
        dw[c] = (KL_REAL)(dw[c] + acc);
    }
    /* dx accumulates: it adds into the residual stream's gradient. */
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * C))
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        KL_FN(rms_backward_x)(dx + o, dout + o, x + o, w, rstd[n], C, 1);
    }
}

void KL_FN(kl_qknorm_forward)(KL_REAL *qkv_out, KL_REAL *rstd, const KL_REAL *qkv_in, const KL_REAL *q_weight,
                              const KL_REAL *k_weight, int N, int NH, int NKV, int HS, KL_REAL eps) {
    const int nqk = NH + NKV;                      /* normalised heads per row */
    const size_t row = (size_t)(NH + 2 * NKV) * HS; /* elements per row of qkv */
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * (NH + 2 * NKV) * HS))
    for (int n = 0; n < N; n++) {
        const KL_REAL *in = qkv_in + (size_t)n * row;
        KL_REAL *out = qkv_out + (size_t)n * row;
        for (int h = 0; h < nqk; h++) {
            const KL_REAL *w = h < NH ? q_weight : k_weight;
            rstd[(size_t)n * nqk + h] = KL_FN(rms_normalize)(out + (size_t)h * HS, in + (size_t)h * HS, w, HS, eps);
        }
        if (out != in)
            for (size_t i = (size_t)nqk * HS; i < row; i++) out[i] = in[i];  /* v heads pass through */
    }
}

void KL_FN(kl_qknorm_backward)(KL_REAL *dqkv_in, KL_REAL *dq_weight, KL_REAL *dk_weight, const KL_REAL *dqkv_out,
                               const KL_REAL *qkv_in, const KL_REAL *q_weight, const KL_REAL *k_weight,
                               const KL_REAL *rstd, int N, int NH, int NKV, int HS) {
    const int nqk = NH + NKV;
    const size_t row = (size_t)(NH + 2 * NKV) * HS;
    /* Weight gradients first (dqkv_in may alias dqkv_out): threads split the HS index; rows and heads are
     * summed in a fixed order. */
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * (NH + NKV) * HS))
    for (int i = 0; i < HS; i++) {
        double aq = 0.0, ak = 0.0;
        for (int n = 0; n < N; n++) {
            for (int h = 0; h < nqk; h++) {
                size_t o = (size_t)n * row + (size_t)h * HS + i;
                double g = (double)dqkv_out[o] * (double)qkv_in[o] * (double)rstd[(size_t)n * nqk + h];
                if (h < NH) aq += g; else ak += g;
            }
        }
        dq_weight[i] = (KL_REAL)(dq_weight[i] + aq);
        dk_weight[i] = (KL_REAL)(dk_weight[i] + ak);
    }
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * (NH + 2 * NKV) * HS))
    for (int n = 0; n < N; n++) {
        const KL_REAL *g = dqkv_out + (size_t)n * row;
        KL_REAL *d = dqkv_in + (size_t)n * row;
        for (int h = 0; h < nqk; h++) {
            const KL_REAL *w = h < NH ? q_weight : k_weight;
            KL_FN(rms_backward_x)(d + (size_t)h * HS, g + (size_t)h * HS, qkv_in + (size_t)n * row + (size_t)h * HS,
                                  w, rstd[(size_t)n * nqk + h], HS, 0);
        }
        if (d != g)
            for (size_t i = (size_t)nqk * HS; i < row; i++) d[i] = g[i];  /* v heads: identity */
    }
}
