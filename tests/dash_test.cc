/* dash_test.cc — the DASH optimizer (optim/dash.c) behind kiln's optimizer interface: a few steps with
 * each inverse-root solver against the public PyTorch implementation (ista-daslab-optimizers' DashLayerwise,
 * fixtures from scripts/gen_optim_fixtures.py), a single-block run against full-matrix Shampoo computed
 * directly in double, the zero-gradient safeguards, settings validation and the sharding description. */
#include <gtest/gtest.h>

#include <cjson/cJSON.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "inv_root.h"
#include "optim.h"
}
#include "optim_fixture.h"
#include "test_util.h"

namespace {

using kltest::fixture_num;
using kltest::fixture_str;

kl_root_method method_of(const std::string &s) {
    if (s == "newton_db") return KL_ROOT_NEWTON_DB;
    if (s == "coupled_newton") return KL_ROOT_COUPLED_NEWTON;
    if (s == "chebyshev") return KL_ROOT_CHEBYSHEV;
    EXPECT_EQ(s, "eigh");
    return KL_ROOT_EIGH;
}

kl_opt_settings dash_settings_of(const cJSON *s) {
    kl_opt_settings o{};
    o.kind = KL_OPT_DASH;
    o.beta1 = fixture_num(s, "beta1");
    o.beta2 = fixture_num(s, "beta2");
    o.eps = fixture_num(s, "eps");
    o.weight_decay = fixture_num(s, "weight_decay");
    o.state_dtype = KL_STATE_FP32;
    o.seed = 42;
    kl_dash_settings &d = o.dash;
    d = kl_dash_settings_defaults();
    d.block = (int)fixture_num(s, "block");
    d.beta_lr = fixture_num(s, "beta_lr");
    d.beta_g = fixture_num(s, "beta_g");
    d.beta_graft = fixture_num(s, "beta_graft");
    d.eps_graft = fixture_num(s, "eps_graft");
    d.bias_correction = 1;
    d.mu = fixture_num(s, "mu");
    d.nesterov = (int)fixture_num(s, "nesterov");
    d.start_prec_step = (int64_t)fixture_num(s, "start_prec_step");
    d.inv_root_every = (int)fixture_num(s, "inv_root_every");
    d.root_method = method_of(fixture_str(s, "root_method"));
    d.scaling = fixture_str(s, "scaling") == "frobenius" ? KL_SCALE_FROBENIUS : KL_SCALE_POWER_ITER;
    d.scale_const = fixture_num(s, "scale_const");
    d.power_iters = (int)fixture_num(s, "power_iters");
    d.power_vectors = (int)fixture_num(s, "power_vectors");
    d.power_eps = fixture_num(s, "power_eps");
    d.newton_steps = (int)fixture_num(s, "newton_steps");
    d.cn_tol = fixture_num(s, "cn_tol");
    d.eps_root = fixture_num(s, "eps_root");
    if (d.root_method == KL_ROOT_CHEBYSHEV) {
        d.cheb_shift = fixture_num(s, "cheb_shift");
        d.cheb_degree = (int)fixture_num(s, "cheb_degree");
    }
    d.one_dim = fixture_str(s, "one_dim") == "shampoo" ? KL_DASH_ONE_DIM_SHAMPOO : KL_DASH_ONE_DIM_ADAMW;
    return o;
}

/* Runs the fixture's steps through kiln and compares every parameter after every step with the package's
 * float64 run. The distance is ||W_kiln − W_ref|| / ||W_ref − W_0|| (relative to the change so far).
 * Tolerance: kiln computes in FP32 like the package's float32 run, whose own distance to the float64
 * run (pkg_fp32_err: the rounding noise of this algorithm on these inputs, 4e-8..2e-6) is stored in the
 * fixture. Two FP32 implementations with different product orders and reductions each sit at about
 * that distance from the exact result (kiln measured 2-4× the package's own), so kiln gets 8× it, and
 * at least 1e-6 (16 float ulps of the change) for parameters whose noise happens to be tiny. A real
 * defect (a wrong stage, bias correction, lr multiplier, decay flag, block cut or root) moves W by
 * 1e-3..1 in this metric. */
void run_parity(const std::string &name) { kltest::run_optim_parity(name, "dash", dash_settings_of); }

}  // namespace

/* ---- parity with ista-daslab-optimizers' DashLayerwise --------------------------------------------- */

TEST(DashParity, NewtonDbPowerIterMatchesPackage) { run_parity("dash_ndb"); }
TEST(DashParity, CoupledNewtonFrobeniusMatchesPackage) { run_parity("dash_cn"); }
TEST(DashParity, ChebyshevMatchesPackage) { run_parity("dash_cheb"); }
TEST(DashParity, EigendecompositionMatchesPackage) { run_parity("dash_evd"); }
TEST(DashParity, ShampooOneDimNesterovDelayedStartMatchesPackage) { run_parity("dash_ndb_shampoo1d_momentum"); }

/* ---- kiln-only properties ------------------------------------------------------------------------- */

namespace {

kl_opt_settings dash_defaults() {
    kl_opt_settings s{};
    s.kind = KL_OPT_DASH;
    s.beta1 = 0.9;
    s.beta2 = 0.95;
    s.eps = 1e-8;
    s.weight_decay = 0.1;
    s.state_dtype = KL_STATE_FP32;
    s.seed = 7;
    s.dash = kl_dash_settings_defaults();
    return s;
}

std::vector<kl_opt_param> table(const std::vector<std::pair<int, int>> &shapes, size_t *total) {
    std::vector<kl_opt_param> ps;
    *total = 0;
    for (size_t i = 0; i < shapes.size(); i++) {
        kl_opt_param p{};
        p.name = "p";
        p.rows = shapes[i].first;
        p.cols = shapes[i].second;
        p.numel = (size_t)p.rows * p.cols;
        p.offset = *total;
        p.is_matrix = p.rows > 1;
        p.decay = p.is_matrix;
        p.lr_mult = 1.0f;
        *total += p.numel;
        ps.push_back(p);
    }
    return ps;
}

using Mat = std::vector<double>;

Mat mul(const Mat &a, const Mat &b, int m, int n, int k, bool ta = false, bool tb = false) {
    Mat c((size_t)m * n, 0.0);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (ta ? a[(size_t)p * m + i] : a[(size_t)i * k + p]) *
                     (tb ? b[(size_t)j * k + p] : b[(size_t)p * n + j]);
            c[(size_t)i * n + j] = s;
        }
    return c;
}

}  // namespace

/* With the block size above both sides every matrix is one corner block (a shape the reference cannot
 * cut): DASH is then full-matrix Shampoo with Adam grafting, which this test computes directly in double
 * from the formulas (statistics EMAs, roots by eigendecomposition on the schedule t = 1, 3, graft norm,
 * decoupled decay, per-parameter lr multiplier and decay flag). kiln runs in FP32 (its roots by its own
 * FP32 eigensolver): 4 steps agree to 2e-5 relative to the change — damping 1e-3 bounds the factors'
 * condition number by ~1e4, i.e. ~10 through the quarter roots, times float rounding 6e-8, times the
 * graft ratio and a few steps of accumulation, with margin; a wrong stage is off by > 1e-2. */
TEST(DashOptimizer, CornerBlocksEqualFullMatrixShampooInDouble) {
    const uint64_t seed = kltest::fresh_seed("DashOptimizer.CornerBlocksEqualFullMatrixShampooInDouble");
    size_t total;
    std::vector<kl_opt_param> ps = table({{11, 7}, {5, 9}}, &total);
    ps[1].lr_mult = 0.3f;
    ps[1].decay = 0;
    kl_opt_settings s = dash_defaults();
    s.dash.block = 16;
    s.dash.root_method = KL_ROOT_EIGH;
    s.dash.eps_root = 1e-3;
    s.dash.inv_root_every = 3;
    const int steps = 4;
    const double lr = 0.02;
    std::vector<float> w0 = kltest::random_normal(total, 0.02f, seed);
    std::vector<float> g = kltest::random_normal(total * steps, 1.0f, seed + 1);
    kl_optimizer *o = nullptr;
    ASSERT_EQ(kl_optimizer_create(&o, &s, ps.data(), (int)ps.size()), KL_OK) << kl_last_error();
    std::vector<float> w = w0;
    for (int t = 1; t <= steps; t++) ASSERT_EQ(o->vt->step(o, w.data(), g.data() + (t - 1) * total, lr, t), KL_OK);
    kl_optimizer_free(o);

    kl_inv_root_opts ro = kl_inv_root_defaults(KL_ROOT_EIGH);
    ro.eps = 1e-3;
    ro.root = 4;
    for (const kl_opt_param &p : ps) {
        const int R = p.rows, C = p.cols;
        Mat W(w0.begin() + p.offset, w0.begin() + p.offset + p.numel), L((size_t)R * R, 0), Rm((size_t)C * C, 0);
        Mat A(p.numel, 0), Gt(p.numel, 0), Lr((size_t)R * R), Rr((size_t)C * C);
        for (int t = 1; t <= steps; t++) {
            Mat G(g.begin() + (t - 1) * total + p.offset, g.begin() + (t - 1) * total + p.offset + p.numel);
            Mat ggt = mul(G, G, R, R, C, false, true), gtg = mul(G, G, C, C, R, true, false);
            for (size_t e = 0; e < L.size(); e++) L[e] = 0.95 * L[e] + 0.05 * ggt[e];
            for (size_t e = 0; e < Rm.size(); e++) Rm[e] = 0.95 * Rm[e] + 0.05 * gtg[e];
            for (size_t e = 0; e < A.size(); e++) A[e] = 0.95 * A[e] + 0.05 * G[e] * G[e];
            if (t == 1 || t % 3 == 0) {
                ASSERT_EQ(kl_inv_root_d(1, R, L.data(), Lr.data(), &ro, nullptr), KL_OK);
                ASSERT_EQ(kl_inv_root_d(1, C, Rm.data(), Rr.data(), &ro, nullptr), KL_OK);
            }
            for (size_t e = 0; e < Gt.size(); e++) Gt[e] = 0.9 * Gt[e] + 0.1 * G[e];
            double pg = 0;
            for (size_t e = 0; e < Gt.size(); e++) {
                const double v = (Gt[e] / (1 - std::pow(0.9, t))) / (1e-8 + std::sqrt(A[e] / (1 - std::pow(0.95, t))));
                pg += v * v;
            }
            Mat U = mul(mul(Lr, Gt, R, C, R), Rr, R, C, C);
            double un = 0;
            for (double u : U) un += u * u;
            const double f = std::sqrt(pg) / (std::sqrt(un) + 1e-16), plr = lr * (double)p.lr_mult;
            for (size_t e = 0; e < W.size(); e++) W[e] = W[e] * (1 - plr * (p.decay ? 0.1 : 0.0)) - plr * f * U[e];
        }
        double dn = 0, dd = 0;
        for (size_t e = 0; e < W.size(); e++) {
            dn += (w[p.offset + e] - W[e]) * (w[p.offset + e] - W[e]);
            dd += (W[e] - w0[p.offset + e]) * (W[e] - w0[p.offset + e]);
        }
        EXPECT_LT(std::sqrt(dn / dd), 2e-5) << R << "x" << C;
    }
}

/* Zero-gradient blocks (a zero-initialised output projection, a dead row range) with no damping at all
 * (eps_root 0): every solver must give finite updates, an all-zero parameter must only decay, and a
 * zero block inside a live parameter must only decay too (P = 0 exactly, reference v1.1.15's 1e-16).
 * The decay is the same float multiply kiln's update does, so the comparison is exact. */
TEST(DashOptimizer, ZeroGradientBlocksOnlyDecayWithEverySolver) {
    const uint64_t seed = kltest::fresh_seed("DashOptimizer.ZeroGradientBlocksOnlyDecayWithEverySolver");
    size_t total;
    const std::vector<kl_opt_param> ps = table({{16, 24}, {12, 8}, {1, 16}}, &total);
    const kl_root_method methods[] = {KL_ROOT_NEWTON_DB, KL_ROOT_COUPLED_NEWTON, KL_ROOT_CHEBYSHEV, KL_ROOT_EIGH};
    const kl_root_scaling scalings[] = {KL_SCALE_POWER_ITER, KL_SCALE_FROBENIUS};
    for (kl_root_method m : methods)
        for (kl_root_scaling sc : scalings) {
            if (m == KL_ROOT_EIGH && sc == KL_SCALE_FROBENIUS) continue; /* EIGH has no scale */
            kl_opt_settings s = dash_defaults();
            s.dash.block = 8;
            s.dash.root_method = m;
            s.dash.scaling = sc;
            s.dash.eps_root = 0;
            s.dash.inv_root_every = 1;
            s.dash.one_dim = KL_DASH_ONE_DIM_SHAMPOO;
            kl_optimizer *o = nullptr;
            ASSERT_EQ(kl_optimizer_create(&o, &s, ps.data(), (int)ps.size()), KL_OK) << kl_last_error();
            std::vector<float> w = kltest::random_normal(total, 0.1f, seed), w0 = w;
            for (int t = 1; t <= 3; t++) {
                std::vector<float> g = kltest::random_normal(total, 1.0f, seed + t);
                for (int r = 0; r < 8; r++)
                    for (int c = 0; c < 8; c++) g[ps[0].offset + r * 24 + c] = 0; /* block (0, 0) of the 16×24 */
                std::fill(g.begin() + ps[1].offset, g.begin() + ps[1].offset + ps[1].numel, 0.0f);
                ASSERT_EQ(o->vt->step(o, w.data(), g.data(), 0.01, t), KL_OK) << kl_last_error();
                const float decay = (float)(1.0 - 0.01 * 0.1);
                for (int r = 0; r < 8; r++)
                    for (int c = 0; c < 8; c++) {
                        float &x = w0[ps[0].offset + r * 24 + c];
                        x = x * decay;
                        ASSERT_EQ(w[ps[0].offset + r * 24 + c], x) << "method " << m << " scaling " << sc;
                    }
                for (size_t j = ps[1].offset; j < ps[1].offset + ps[1].numel; j++) {
                    w0[j] = w0[j] * decay;
                    ASSERT_EQ(w[j], w0[j]) << "method " << m << " scaling " << sc;
                }
            }
            for (size_t j = 0; j < total; j++) ASSERT_TRUE(std::isfinite(w[j])) << "method " << m << " at " << j;
            kl_optimizer_free(o);
        }
}

/* The default settings (b = 1024, Newton-DB, roots every 10 steps) on a small model-like table: matrices
 * smaller than a block become one corner block each, vectors go to AdamW; updates are finite and move
 * every parameter, and the state is as large as the blocks say. */
TEST(DashOptimizer, DefaultSettingsRunOnASmallTable) {
    const uint64_t seed = kltest::fresh_seed("DashOptimizer.DefaultSettingsRunOnASmallTable");
    size_t total;
    const std::vector<kl_opt_param> ps = table({{48, 32}, {1, 32}, {96, 32}}, &total);
    kl_opt_settings s = dash_defaults();
    kl_optimizer *o = nullptr;
    ASSERT_EQ(kl_optimizer_create(&o, &s, ps.data(), (int)ps.size()), KL_OK) << kl_last_error();
    /* "Moves" means the gradient moved it in some step, beyond the decay alone. Over the three steps
     * a parameter may well come back to its start to the last bit (seed 4533745884326118842 brought
     * one back: +5.3e-4, -2.6e-4, -2.7e-4), so each step is compared with the decayed start of that step. */
    std::vector<float> decay(total);
    for (const kl_opt_param &p : ps) {
        const float d = p.decay ? (float)(1.0 - 1e-3 * 0.1) : 1.0f;
        std::fill(decay.begin() + p.offset, decay.begin() + p.offset + p.numel, d);
    }
    std::vector<float> w = kltest::random_normal(total, 0.1f, seed);
    std::vector<char> moved(total, 0);
    for (int t = 1; t <= 3; t++) {
        std::vector<float> g = kltest::random_normal(total, 1.0f, seed + t), before = w;
        ASSERT_EQ(o->vt->step(o, w.data(), g.data(), 1e-3, t), KL_OK) << kl_last_error();
        for (size_t j = 0; j < total; j++) moved[j] |= w[j] != before[j] * decay[j];
    }
    for (size_t j = 0; j < total; j++) {
        ASSERT_TRUE(std::isfinite(w[j]));
        ASSERT_TRUE(moved[j]) << j;
    }
    /* L, L̄ (rows²), R, R̄ (cols²), graft and G̃ (rows·cols) per matrix; AdamW m, v per vector element;
     * the 2 int64 bookkeeping words */
    const size_t want = 4 * (2 * 48 * 48 + 2 * 32 * 32 + 2 * 48 * 32) + 4 * (2 * 96 * 96 + 2 * 32 * 32 + 2 * 96 * 32) +
                        4 * 2 * 32 + 16;
    EXPECT_EQ(o->vt->state_bytes(o), want);
    kl_opt_sharding sh = kl_optimizer_sharding(o);
    EXPECT_EQ(sh.granularity, KL_SHARD_BLOCK);
    EXPECT_EQ(sh.block, 1024);
    kl_optimizer_free(o);
}

TEST(DashOptimizer, RejectsBadSettingsNamingTheKey) {
    size_t total;
    const std::vector<kl_opt_param> ps = table({{16, 16}}, &total);
    struct Case {
        const char *key;
        void (*mutate)(kl_opt_settings *);
        kl_status want;
    };
    const Case cases[] = {
        {"optim.dash_block_size", [](kl_opt_settings *s) { s->dash.block = 0; }, KL_ERR_CONFIG},
        {"optim.dash_beta_g", [](kl_opt_settings *s) { s->dash.beta_g = 1.0; }, KL_ERR_CONFIG},
        {"optim.dash_beta_graft", [](kl_opt_settings *s) { s->dash.beta_graft = -0.1; }, KL_ERR_CONFIG},
        {"optim.dash_mu", [](kl_opt_settings *s) { s->dash.mu = 1.5; }, KL_ERR_CONFIG},
        {"optim.dash_inv_root_every", [](kl_opt_settings *s) { s->dash.inv_root_every = 0; }, KL_ERR_CONFIG},
        {"optim.dash_newton_steps", [](kl_opt_settings *s) { s->dash.newton_steps = 0; }, KL_ERR_CONFIG},
        {"optim.dash_cheb_shift",
         [](kl_opt_settings *s) {
             s->dash.root_method = KL_ROOT_CHEBYSHEV;
             s->dash.cheb_shift = 0;
         },
         KL_ERR_CONFIG},
        {"optim.dash_scaling", [](kl_opt_settings *s) { s->dash.scaling = KL_SCALE_GIVEN; }, KL_ERR_CONFIG},
        {"optim.dash_eps_root", [](kl_opt_settings *s) { s->dash.eps_root = -1; }, KL_ERR_CONFIG},
        {"optim.state_dtype", [](kl_opt_settings *s) { s->state_dtype = KL_STATE_BF16; }, KL_ERR_UNSUPPORTED},
    };
    for (const Case &c : cases) {
        kl_opt_settings s = dash_defaults();
        c.mutate(&s);
        kl_optimizer *o = nullptr;
        EXPECT_EQ(kl_optimizer_create(&o, &s, ps.data(), (int)ps.size()), c.want) << c.key;
        EXPECT_EQ(o, nullptr);
        EXPECT_NE(std::string(kl_last_error()).find(c.key), std::string::npos) << kl_last_error();
    }
}

TEST(DashOptimizer, StepsMustCountFromOneAndIncrease) {
    size_t total;
    const std::vector<kl_opt_param> ps = table({{8, 8}}, &total);
    kl_opt_settings s = dash_defaults();
    s.dash.block = 4;
    kl_optimizer *o = nullptr;
    ASSERT_EQ(kl_optimizer_create(&o, &s, ps.data(), (int)ps.size()), KL_OK);
    std::vector<float> w = kltest::random_normal(total, 0.1f, 1), g = kltest::random_normal(total, 1.0f, 2);
    EXPECT_EQ(o->vt->step(o, w.data(), g.data(), 0.01, 0), KL_ERR_INVALID);
    EXPECT_EQ(o->vt->step(o, w.data(), g.data(), 0.01, 1), KL_OK);
    EXPECT_EQ(o->vt->step(o, w.data(), g.data(), 0.01, 1), KL_ERR_INVALID);
    EXPECT_NE(std::string(kl_last_error()).find("after step 1"), std::string::npos) << kl_last_error();
    EXPECT_EQ(o->vt->step(o, w.data(), g.data(), 0.01, 2), KL_OK);
    kl_optimizer_free(o);
}
