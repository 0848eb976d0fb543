/* swiglu_impl.h — SwiGLU written once against KL_REAL / KL_FN(name); included by swiglu.c for float (_cpu)
 * and double (_cpu_f64). No include guard on purpose. */

void KL_FN(kl_swiglu_forward)(KL_REAL *out, const KL_REAL *gu, int N, int F) {
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * F * 8))
    for (int n = 0; n < N; n++) {
        const KL_REAL *gate = gu + (size_t)n * 2 * F, *up = gate + F;
        KL_REAL *o = out + (size_t)n * F;
        for (int i = 0; i < F; i++) {
            double g = (double)gate[i];
            double silu = g / (1.0 + exp(-g));  /* exp overflow for g << 0 gives g / inf = -0, not NaN */
            o[i] = (KL_REAL)(silu * (double)up[i]);
        }
    }
}

void KL_FN(kl_swiglu_backward)(KL_REAL *dgu, const KL_REAL *dout, const KL_REAL *gu, int N, int F) {
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * F * 8))
    for (int n = 0; n < N; n++) {
        const KL_REAL *gate = gu + (size_t)n * 2 * F, *up = gate + F;
        const KL_REAL *g_out = dout + (size_t)n * F;
        KL_REAL *dgate = dgu + (size_t)n * 2 * F, *dup = dgate + F;
        for (int i = 0; i < F; i++) {
            double g = (double)gate[i];
            double sig = 1.0 / (1.0 + exp(-g));
            double dsilu = sig * (1.0 + g * (1.0 - sig));  /* d/dg [g sigmoid(g)] */
            dgate[i] = (KL_REAL)((double)g_out[i] * (double)up[i] * dsilu);
            dup[i] = (KL_REAL)((double)g_out[i] * g * sig);
        }
    }
}
