/* matmul_impl.h — the linear layer written once against KL_REAL / KL_FN(name) and, with BLAS, KL_GEMM
 * (cblas_sgemm or cblas_dgemm); included by matmul.c for float (_cpu) and double (_cpu_f64).
 * Without BLAS the loops accumulate in double. No include guard on purpose. */

void KL_FN(kl_matmul_forward)(KL_REAL *out, const KL_REAL *inp, const KL_REAL *w, const KL_REAL *bias, int N,
                              int IC, int OC) {
#ifdef KILN_HAVE_CBLAS
    /* out(N,OC) = inp(N,IC) . w(OC,IC)^T */
    KL_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1, inp, IC, w, IC, 0, out, OC);
    if (bias) {
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * OC))
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] += bias[o];
    }
#else
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * IC * OC))
    for (int n = 0; n < N; n++) {
        const KL_REAL *x = inp + (size_t)n * IC;
        for (int o = 0; o < OC; o++) {
            const KL_REAL *wr = w + (size_t)o * IC;
            double acc = 0.0;
            for (int i = 0; i < IC; i++) acc += (double)x[i] * (double)wr[i];
            if (bias) acc += (double)bias[o];
            out[(size_t)n * OC + o] = (KL_REAL)acc;
        }
    }
#endif
}

void KL_FN(kl_matmul_backward)(KL_REAL *dinp, KL_REAL *dw, KL_REAL *dbias, const KL_REAL *dout, const KL_REAL *inp,
                               const KL_REAL *w, int N, int IC, int OC) {
#ifdef KILN_HAVE_CBLAS
    /* dinp(N,IC) = dout(N,OC) . w(OC,IC);  dw(OC,IC) += dout^T . inp(N,IC) (beta = 1 accumulates) */
    if (dinp) KL_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1, dout, OC, w, IC, 0, dinp, IC);
    KL_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1, dout, OC, inp, IC, 1, dw, IC);
#else
    if (dinp) {
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * IC * OC))
        for (int n = 0; n < N; n++) {
            const KL_REAL *g = dout + (size_t)n * OC;
            for (int i = 0; i < IC; i++) {
                double acc = 0.0;
                for (int o = 0; o < OC; o++) acc += (double)g[o] * (double)w[(size_t)o * IC + i];
                dinp[(size_t)n * IC + i] = (KL_REAL)acc;
            }
        }
    }
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * IC * OC))
    for (int o = 0; o < OC; o++) {
        for (int i = 0; i < IC; i++) {
            double acc = 0.0;
            for (int n = 0; n < N; n++) acc += (double)dout[(size_t)n * OC + o] * (double)inp[(size_t)n * IC + i];
            dw[(size_t)o * IC + i] = (KL_REAL)(dw[(size_t)o * IC + i] + acc);
        }
    }
#endif
    if (dbias) {
        /* threads split the output columns; rows are summed in order (deterministic) */
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * OC))
        for (int o = 0; o < OC; o++) {
            double acc = 0.0;
            for (int n = 0; n < N; n++) acc += (double)dout[(size_t)n * OC + o];
            dbias[o] = (KL_REAL)(dbias[o] + acc);
        }
    }
}
