/* cross_entropy_impl.h — fused softmax cross-entropy with masks and z-loss, written once against KL_REAL /
 * KL_FN(name); included by cross_entropy.c for float (_cpu) and double (_cpu_f64). Row sums in double.
 * No include guard on purpose. */

double KL_FN(kl_cross_entropy)(KL_REAL *dlogits, KL_REAL *losses, const KL_REAL *logits, const int32_t *targets,
                               int N, int V, KL_REAL z_loss, KL_REAL grad_scale) {
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)N * V))
    for (int n = 0; n < N; n++) {
        const KL_REAL *x = logits + (size_t)n * V;
        KL_REAL *dx = dlogits ? dlogits + (size_t)n * V : NULL;  /* may be the same memory as x */
        const int32_t target = targets[n];
        if (target == KL_IGNORE_INDEX) {
            losses[n] = 0;
            if (dx)
                for (int v = 0; v < V; v++) dx[v] = 0;
            continue;
        }
        if (target < 0 || target >= V) {  /* caller bug: poison the row, never index with it */
            losses[n] = (KL_REAL)NAN;
            if (dx)
                for (int v = 0; v < V; v++) dx[v] = (KL_REAL)NAN;
            continue;
        }
        double m = -INFINITY;
        for (int v = 0; v < V; v++)
            if ((double)x[v] > m) m = (double)x[v];
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += exp((double)x[v] - m);
        const double lse = m + log(sum);
        const double x_target = (double)x[target];  /* read before the row may be overwritten */
        losses[n] = (KL_REAL)(lse - x_target + (double)z_loss * lse * lse);
        if (dx) {
            /* d/dx_v [lse - x_t + z lse^2] = softmax_v (1 + 2 z lse) - [v == t] */
            const double zfac = 1.0 + 2.0 * (double)z_loss * lse;
            for (int v = 0; v < V; v++) {
                double p = exp((double)x[v] - lse);
                dx[v] = (KL_REAL)((double)grad_scale * (p * zfac - (v == target ? 1.0 : 0.0)));
            }
        }
    }
    double total = 0.0;  /* in row order, so the sum does not depend on the thread count */
    for (int n = 0; n < N; n++)
        if (targets[n] != KL_IGNORE_INDEX) total += (double)losses[n];
    return total;
}
