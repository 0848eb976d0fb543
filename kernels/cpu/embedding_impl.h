/* embedding_impl.h — the embedding op written once against KL_REAL / KL_FN(name); included by embedding.c
 * for float (_cpu) and double (_cpu_f64). No include guard on purpose. */

kl_status KL_FN(kl_embedding_forward)(KL_REAL *out, const int32_t *tokens, const KL_REAL *wte, int N, int V,
                                      int C) {
    for (int n = 0; n < N; n++) {
        if (tokens[n] < 0 || tokens[n] >= V)
            return kl_error(KL_ERR_INVALID, "embedding: token %d at position %d is outside the vocabulary [0, %d)",
                            (int)tokens[n], n, V);
    }
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * C))
    for (int n = 0; n < N; n++) {
        const KL_REAL *row = wte + (size_t)tokens[n] * C;  /* (C) */
        KL_REAL *o = out + (size_t)n * C;                  /* (C) */
        for (int c = 0; c < C; c++) o[c] = row[c];
    }
    return KL_OK;
}

void KL_FN(kl_embedding_backward)(KL_REAL *dwte, const KL_REAL *dout, const int32_t *tokens, int N, int C) {
    /* Threads split the columns, never the positions: every dwte element receives its contributions in
     * increasing n whatever the thread count, so repeated tokens sum in a fixed order. */
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * C))
    for (int c = 0; c < C; c++) {
        for (int n = 0; n < N; n++) dwte[(size_t)tokens[n] * C + c] += dout[(size_t)n * C + c];
    }
}
