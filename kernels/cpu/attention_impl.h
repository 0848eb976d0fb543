/* attention_impl.h — causal GQA attention written once against KL_REAL / KL_FN(name); included by
 * attention.c for float (_cpu) and double (_cpu_f64). Dot products, softmax and sums run in double.
 * No include guard on purpose. */

static kl_status KL_FN(attention_check)(const char *where, int B, int T, int NH, int NKV, int HS) {
    if (B < 0 || T < 0 || HS <= 0 || NH <= 0 || NKV <= 0 || NH % NKV != 0)
        return kl_error(KL_ERR_INVALID,
                        "%s: expected B, T >= 0, HS > 0 and NH a positive multiple of NKV, got B=%d T=%d NH=%d "
                        "NKV=%d HS=%d", where, B, T, NH, NKV, HS);
    return KL_OK;
}

static double KL_FN(attention_dot)(const KL_REAL *a, const KL_REAL *b, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

kl_status KL_FN(kl_attention_forward)(KL_REAL *out, KL_REAL *lse, const KL_REAL *qkv, int B, int T, int NH, int NKV,
                                      int HS) {
    KL_TRY(KL_FN(attention_check)("attention forward", B, T, NH, NKV, HS));
    const int group = NH / NKV;                      /* query heads per kv head */
    const size_t row = (size_t)(NH + 2 * NKV) * HS;  /* qkv elements per position */
    const size_t orow = (size_t)NH * HS;             /* out elements per position */
    const double scale = 1.0 / sqrt((double)HS);
    const int nthreads = omp_get_max_threads();
    const size_t per_thread = (size_t)T + (size_t)HS;  /* scores(T), output accumulator(HS) */
    double *scratch = (double *)kl_malloc(sizeof(double) * per_thread * (size_t)nthreads, "attention forward scratch");
    if (!scratch) return KL_ERR_OOM;
    const int total = B * NH * T;
#pragma omp parallel num_threads(nthreads) if (KL_PAR((size_t)B * NH * T * T * HS))
    {
        double *score = scratch + per_thread * (size_t)omp_get_thread_num();
        double *acc = score + T;
#pragma omp for schedule(dynamic, 8)
        for (int idx = 0; idx < total; idx++) {
            const int t = idx % T, h = (idx / T) % NH, b = idx / (T * NH);
            const KL_REAL *base = qkv + (size_t)b * T * row;  /* sequence b */
            const KL_REAL *q = base + (size_t)t * row + (size_t)h * HS;
            const size_t koff = (size_t)(NH + h / group) * HS, voff = (size_t)(NH + NKV + h / group) * HS;
            double m = -INFINITY;
            for (int j = 0; j <= t; j++) {  /* causal: keys 0..t */
                score[j] = KL_FN(attention_dot)(q, base + (size_t)j * row + koff, HS) * scale;
                if (score[j] > m) m = score[j];
            }
            double l = 0.0;
            for (int j = 0; j <= t; j++) {
                score[j] = exp(score[j] - m);
                l += score[j];
            }
            for (int d = 0; d < HS; d++) acc[d] = 0.0;
            for (int j = 0; j <= t; j++) {
                const KL_REAL *v = base + (size_t)j * row + voff;
                double p = score[j] / l;
                for (int d = 0; d < HS; d++) acc[d] += p * (double)v[d];
            }
            KL_REAL *o = out + ((size_t)b * T + t) * orow + (size_t)h * HS;
            for (int d = 0; d < HS; d++) o[d] = (KL_REAL)acc[d];
            lse[((size_t)b * NH + h) * T + t] = (KL_REAL)(m + log(l));
        }
    }
    free(scratch);
    return KL_OK;
}

kl_status KL_FN(kl_attention_backward)(KL_REAL *dqkv, const KL_REAL *dout, const KL_REAL *out, const KL_REAL *lse,
                                       const KL_REAL *qkv, int B, int T, int NH, int NKV, int HS) {
    KL_TRY(KL_FN(attention_check)("attention backward", B, T, NH, NKV, HS));
    const int group = NH / NKV;
    const size_t row = (size_t)(NH + 2 * NKV) * HS;
    const size_t orow = (size_t)NH * HS;
    const double scale = 1.0 / sqrt((double)HS);
    const int nthreads = omp_get_max_threads();
    const size_t nD = (size_t)B * NH * T;   /* D(B,NH,T) = sum_d dout * out per query */
    const size_t per_thread = 2 * (size_t)HS; /* two accumulators (HS) */
    double *scratch = (double *)kl_malloc(sizeof(double) * (nD + per_thread * (size_t)nthreads),
                                          "attention backward scratch");
    if (!scratch) return KL_ERR_OOM;
    double *D = scratch;

#pragma omp parallel for schedule(static) if (KL_PAR((size_t)B * NH * T * HS))
    for (int idx = 0; idx < B * NH * T; idx++) {
        const int t = idx % T, h = (idx / T) % NH, b = idx / (T * NH);
        const size_t o = ((size_t)b * T + t) * orow + (size_t)h * HS;
        D[idx] = KL_FN(attention_dot)(dout + o, out + o, HS);
    }

    /* Query side: dq_i = scale * sum_{j<=i} ds_ij k_j, with p_ij = exp(s_ij - lse_i),
     * dp_ij = dout_i . v_j and ds_ij = p_ij (dp_ij - D_i). */
#pragma omp parallel num_threads(nthreads) if (KL_PAR((size_t)B * NH * T * T * HS))
    {
        double *acc = scratch + nD + per_thread * (size_t)omp_get_thread_num();
#pragma omp for schedule(dynamic, 8)
        for (int idx = 0; idx < B * NH * T; idx++) {
            const int i = idx % T, h = (idx / T) % NH, b = idx / (T * NH);
            const KL_REAL *base = qkv + (size_t)b * T * row;
            const KL_REAL *q = base + (size_t)i * row + (size_t)h * HS;
            const KL_REAL *g = dout + ((size_t)b * T + i) * orow + (size_t)h * HS;
            const size_t koff = (size_t)(NH + h / group) * HS, voff = (size_t)(NH + NKV + h / group) * HS;
            const double lse_i = (double)lse[idx], D_i = D[idx];
            for (int d = 0; d < HS; d++) acc[d] = 0.0;
            for (int j = 0; j <= i; j++) {
                const KL_REAL *k = base + (size_t)j * row + koff;
                double p = exp(KL_FN(attention_dot)(q, k, HS) * scale - lse_i);
                double ds = p * (KL_FN(attention_dot)(g, base + (size_t)j * row + voff, HS) - D_i);
                for (int d = 0; d < HS; d++) acc[d] += ds * (double)k[d];
            }
            KL_REAL *dq = dqkv + ((size_t)b * T + i) * row + (size_t)h * HS;
            for (int d = 0; d < HS; d++) dq[d] = (KL_REAL)(acc[d] * scale);
        }
    }

    /* Key side: for kv head kh at position j, sum over the group's query heads (in order) and the queries
     * i >= j: dk_j = scale * sum ds_ij q_i, dv_j = sum p_ij dout_i. */
#pragma omp parallel num_threads(nthreads) if (KL_PAR((size_t)B * NH * T * T * HS))
    {
        double *dk = scratch + nD + per_thread * (size_t)omp_get_thread_num();
        double *dv = dk + HS;
#pragma omp for schedule(dynamic, 8)
        for (int idx = 0; idx < B * NKV * T; idx++) {
            const int j = idx % T, kh = (idx / T) % NKV, b = idx / (T * NKV);
            const KL_REAL *base = qkv + (size_t)b * T * row;
            const KL_REAL *k = base + (size_t)j * row + (size_t)(NH + kh) * HS;
            const KL_REAL *v = base + (size_t)j * row + (size_t)(NH + NKV + kh) * HS;
            for (int d = 0; d < HS; d++) dk[d] = dv[d] = 0.0;
            for (int h = kh * group; h < (kh + 1) * group; h++) {
                for (int i = j; i < T; i++) {
                    const size_t qi = ((size_t)b * NH + h) * T + i;  /* index into lse and D */
                    const KL_REAL *q = base + (size_t)i * row + (size_t)h * HS;
                    const KL_REAL *g = dout + ((size_t)b * T + i) * orow + (size_t)h * HS;
                    double p = exp(KL_FN(attention_dot)(q, k, HS) * scale - (double)lse[qi]);
                    double ds = p * (KL_FN(attention_dot)(g, v, HS) - D[qi]);
                    for (int d = 0; d < HS; d++) {
                        dk[d] += ds * (double)q[d];
                        dv[d] += p * (double)g[d];
                    }
                }
            }
            KL_REAL *dkp = dqkv + ((size_t)b * T + j) * row + (size_t)(NH + kh) * HS;
            KL_REAL *dvp = dqkv + ((size_t)b * T + j) * row + (size_t)(NH + NKV + kh) * HS;
            for (int d = 0; d < HS; d++) {
                dkp[d] = (KL_REAL)(dk[d] * scale);
                dvp[d] = (KL_REAL)dv[d];
            }
        }
    }
    free(scratch);
    return KL_OK;
}
