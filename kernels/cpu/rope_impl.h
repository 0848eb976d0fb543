/* rope_impl.h — RoPE tables and rotation written once against KL_REAL / KL_FN(name); included by rope.c
 * for float (_cpu) and double (_cpu_f64). No include guard on purpose. */

static kl_status KL_FN(rope_freqs_table)(KL_REAL *cos_t, KL_REAL *sin_t, int T, int HS, double theta,
                                         const kl_rope_scaling *s) {
    if (T < 0) return kl_error(KL_ERR_INVALID, "rope: expected T >= 0, got %d", T);
    if (HS <= 0 || HS % 2 != 0 || HS / 2 > KL_ROPE_MAX_HALF)
        return kl_error(KL_ERR_INVALID, "rope: expected an even head size in [2, %d], got %d", 2 * KL_ROPE_MAX_HALF,
                        HS);
    double inv_freq[KL_ROPE_MAX_HALF];
    KL_TRY(kl_rope_inv_freq(inv_freq, HS, theta, s));
    const int half = HS / 2;
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)T * HS * 8))
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            double angle = (double)t * inv_freq[i];
            cos_t[(size_t)t * half + i] = (KL_REAL)cos(angle);
            sin_t[(size_t)t * half + i] = (KL_REAL)sin(angle);
        }
    }
    return KL_OK;
}

/* Rotates every q and k head of qkv(B,T,(NH+2NKV)*HS) by the angle of its position; sign = +1 is the
 * forward rotation, sign = -1 its inverse (the transpose), which is what the backward applies. */
static void KL_FN(rope_rotate)(KL_REAL *qkv, const KL_REAL *cos_t, const KL_REAL *sin_t, int B, int T, int NH,
                               int NKV, int HS, int sign) {
    const int half = HS / 2;
    const size_t row = (size_t)(NH + 2 * NKV) * HS;
#pragma omp parallel for schedule(static) if (KL_PAR((size_t)B * T * (NH + NKV) * HS))
    for (int bt = 0; bt < B * T; bt++) {
        const int t = bt % T;
        const KL_REAL *c = cos_t + (size_t)t * half;
        const KL_REAL *s = sin_t + (size_t)t * half;
        for (int h = 0; h < NH + NKV; h++) {  /* q heads then k heads; v heads follow and are skipped */
            KL_REAL *x = qkv + (size_t)bt * row + (size_t)h * HS;
            for (int i = 0; i < half; i++) {
                KL_REAL x1 = x[i], x2 = x[i + half];
                KL_REAL si = sign > 0 ? s[i] : -s[i];
                x[i] = x1 * c[i] - x2 * si;
                x[i + half] = x2 * c[i] + x1 * si;
            }
        }
    }
}

void KL_FN(kl_rope_forward)(KL_REAL *qkv, const KL_REAL *cos_t, const KL_REAL *sin_t, int B, int T, int NH, int NKV,
                            int HS) {
    KL_FN(rope_rotate)(qkv, cos_t, sin_t, B, T, NH, NKV, HS, +1);
}

void KL_FN(kl_rope_backward)(KL_REAL *dqkv, const KL_REAL *cos_t, const KL_REAL *sin_t, int B, int T, int NH,
                             int NKV, int HS) {
    /* The rotation is orthogonal, so the gradient w.r.t. its input is the gradient rotated backwards. */
    KL_FN(rope_rotate)(dqkv, cos_t, sin_t, B, T, NH, NKV, HS, -1);
}
