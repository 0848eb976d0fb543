/* optim_state_test.cc — the optimizer interface's checkpoint contract for every optimizer kind: the raw
 * state buffers hold every byte of state (written to a file after some steps, read into a freshly
 * created optimizer, the run continues bit-identically to an uninterrupted one), state_bytes is their
 * sum, names are unique, and the sharding description names the right unit. */
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

extern "C" {
#include "optim.h"
}
#include "test_util.h"

namespace {

struct Case {
    const char *what;
    kl_opt_settings s;
    int split; /* save after this step; the next step must not be a root/refresh step */
};

kl_opt_settings base(kl_opt_kind kind) {
    kl_opt_settings s{};
    s.kind = kind;
    s.beta1 = 0.9;
    s.beta2 = 0.95;
    s.eps = 1e-8;
    s.weight_decay = 0.1;
    s.state_dtype = KL_STATE_FP32;
    s.seed = 11;
    s.dash = kl_dash_settings_defaults();
    s.dct = kl_dct_settings_defaults();
    return s;
}

std::vector<Case> cases() {
    std::vector<Case> c;
    c.push_back({"adamw", base(KL_OPT_ADAMW), 2});
    /* DASH, Newton-DB, vectors by Shampoo, momentum, G̃; roots at 1, 3, 6: step 5 reuses saved roots */
    kl_opt_settings d = base(KL_OPT_DASH);
    d.dash.block = 8;
    d.dash.inv_root_every = 3;
    d.dash.mu = 0.5;
    d.dash.eps_root = 1e-3;
    d.dash.one_dim = KL_DASH_ONE_DIM_SHAMPOO;
    c.push_back({"dash newton-db shampoo-1d momentum", d, 4});
    /* DASH, eigendecomposition, vectors by AdamW, no G̃ buffer (beta_g 0) */
    d = base(KL_OPT_DASH);
    d.dash.block = 8;
    d.dash.inv_root_every = 3;
    d.dash.root_method = KL_ROOT_EIGH;
    d.dash.eps_root = 1e-3;
    d.dash.beta_g = 0;
    c.push_back({"dash eigh adamw-1d", d, 4});
    /* DASH, Chebyshev with Frobenius scaling; a delayed start (graft direction for steps 1-2) */
    d = base(KL_OPT_DASH);
    d.dash.block = 8;
    d.dash.inv_root_every = 3;
    d.dash.root_method = KL_ROOT_CHEBYSHEV;
    d.dash.scaling = KL_SCALE_FROBENIUS;
    d.dash.start_prec_step = 3;
    c.push_back({"dash chebyshev delayed start", d, 4});
    /* DCT-AdamW, refresh at 1, 3, 6: step 5 projects on the saved index sets */
    kl_opt_settings t = base(KL_OPT_DCT_ADAMW);
    t.dct.rank = 4;
    t.dct.refresh_every = 3;
    t.dct.max_dim = 40;
    c.push_back({"dct-adamw", t, 4});
    return c;
}

/* Matrices with full blocks, strips and a corner at b = 8; a matrix past DCT's max_dim; vectors. */
std::vector<kl_opt_param> table(size_t *total) {
    const int shapes[][3] = {{20, 13, 1}, {16, 24, 1}, {1, 16, 0}, {12, 40, 1}, {1, 16, 0}};
    std::vector<kl_opt_param> ps;
    *total = 0;
    for (const auto &sh : shapes) {
        kl_opt_param p{};
        p.name = "p";
        p.rows = sh[0];
        p.cols = sh[1];
        p.is_matrix = sh[2];
        p.numel = (size_t)p.rows * p.cols;
        p.offset = *total;
        p.decay = p.is_matrix;
        p.lr_mult = p.is_matrix ? 1.0f : 0.5f;
        *total += p.numel;
        ps.push_back(p);
    }
    return ps;
}

std::string save(kl_optimizer *o) {
    std::string out;
    for (int i = 0; i < o->vt->n_state_buffers(o); i++) {
        const char *name;
        size_t bytes;
        const void *d = o->vt->state_buffer(o, i, &name, &bytes);
        const uint64_t n = bytes;
        out.append(name, strlen(name) + 1);
        out.append((const char *)&n, sizeof n);
        out.append((const char *)d, bytes);
    }
    return out;
}

/* Reads buffers by name into o; every buffer of o must be found with the same size. */
bool load(kl_optimizer *o, const std::string &in) {
    size_t pos = 0;
    int found = 0;
    while (pos < in.size()) {
        const std::string name(in.c_str() + pos);
        pos += name.size() + 1;
        uint64_t n;
        memcpy(&n, in.data() + pos, sizeof n);
        pos += sizeof n;
        bool ok = false;
        for (int i = 0; i < o->vt->n_state_buffers(o); i++) {
            const char *bn;
            size_t bytes;
            void *d = o->vt->state_buffer(o, i, &bn, &bytes);
            if (name == bn && bytes == n) {
                memcpy(d, in.data() + pos, n);
                ok = true;
                found++;
            }
        }
        if (!ok) return false;
        pos += n;
    }
    return found == o->vt->n_state_buffers(o);
}

}  // namespace

/* Run A: 6 steps. Run B: `split` steps, buffers to a file, a new optimizer reads them, the remaining
 * steps: parameters must equal run A's bit for bit (same code, same order, same inputs). Run C is B
 * without reading the file: it must differ, so the comparison can fail when some state is missing. */
TEST(OptimizerState, CheckpointRoundTripContinuesBitExactly) {
    const uint64_t seed = kltest::fresh_seed("OptimizerState.CheckpointRoundTripContinuesBitExactly");
    size_t total;
    const std::vector<kl_opt_param> ps = table(&total);
    const int steps = 6;
    std::vector<float> w0 = kltest::random_normal(total, 0.05f, seed);
    std::vector<float> g = kltest::random_normal(total * steps, 1.0f, seed + 1);
    const std::string dir = kltest::make_temp_dir("optim_state");
    for (const Case &c : cases()) {
        auto run = [&](int from, int to, kl_optimizer *o, std::vector<float> *w) {
            for (int t = from; t <= to; t++)
                ASSERT_EQ(o->vt->step(o, w->data(), g.data() + (t - 1) * total, 0.01, t), KL_OK) << c.what << ": "
                                                                                                  << kl_last_error();
        };
        kl_optimizer *a = nullptr, *b = nullptr, *b2 = nullptr, *cc = nullptr;
        ASSERT_EQ(kl_optimizer_create(&a, &c.s, ps.data(), (int)ps.size()), KL_OK) << c.what << ": " << kl_last_error();
        std::vector<float> wa = w0, wb = w0;
        run(1, steps, a, &wa);

        ASSERT_EQ(kl_optimizer_create(&b, &c.s, ps.data(), (int)ps.size()), KL_OK);
        run(1, c.split, b, &wb);
        const std::string path = dir + "/state.bin";
        kltest::write_file(path, save(b));
        kl_optimizer_free(b);
        std::vector<float> wc = wb;
        ASSERT_EQ(kl_optimizer_create(&b2, &c.s, ps.data(), (int)ps.size()), KL_OK);
        ASSERT_TRUE(load(b2, kltest::read_file(path))) << c.what << ": the buffers did not match by name and size";
        run(c.split + 1, steps, b2, &wb);
        EXPECT_EQ(memcmp(wa.data(), wb.data(), total * sizeof(float)), 0) << c.what << ": resumed run differs";

        ASSERT_EQ(kl_optimizer_create(&cc, &c.s, ps.data(), (int)ps.size()), KL_OK);
        run(c.split + 1, steps, cc, &wc);
        EXPECT_NE(memcmp(wa.data(), wc.data(), total * sizeof(float)), 0) << c.what << ": state made no difference";
        kl_optimizer_free(a);
        kl_optimizer_free(b2);
        kl_optimizer_free(cc);
    }
}

TEST(OptimizerState, BytesAreTheSumOfUniquelyNamedDisjointBuffers) {
    size_t total;
    const std::vector<kl_opt_param> ps = table(&total);
    for (const Case &c : cases()) {
        kl_optimizer *o = nullptr;
        ASSERT_EQ(kl_optimizer_create(&o, &c.s, ps.data(), (int)ps.size()), KL_OK) << c.what;
        size_t sum = 0;
        std::set<std::string> names;
        std::vector<std::pair<const char *, const char *>> ranges;
        for (int i = 0; i < o->vt->n_state_buffers(o); i++) {
            const char *name;
            size_t bytes;
            const char *d = (const char *)o->vt->state_buffer(o, i, &name, &bytes);
            ASSERT_NE(d, nullptr) << c.what;
            EXPECT_GT(strlen(name), 0u) << c.what;
            EXPECT_TRUE(names.insert(name).second) << c.what << ": duplicate buffer " << name;
            for (const auto &r : ranges) EXPECT_TRUE(d + bytes <= r.first || d >= r.second) << c.what << ": " << name;
            ranges.push_back({d, d + bytes});
            sum += bytes;
        }
        EXPECT_EQ(o->vt->state_bytes(o), sum) << c.what;
        EXPECT_GT(sum, 0u) << c.what;
        kl_optimizer_free(o);
    }
}

TEST(OptimizerState, ShardingNamesTheIndivisibleUnit) {
    size_t total;
    const std::vector<kl_opt_param> ps = table(&total);
    for (const Case &c : cases()) {
        kl_optimizer *o = nullptr;
        ASSERT_EQ(kl_optimizer_create(&o, &c.s, ps.data(), (int)ps.size()), KL_OK) << c.what;
        const kl_opt_sharding sh = kl_optimizer_sharding(o);
        switch (c.s.kind) {
        case KL_OPT_ADAMW: EXPECT_EQ(sh.granularity, KL_SHARD_ELEMENT); break;
        case KL_OPT_DASH:
            EXPECT_EQ(sh.granularity, KL_SHARD_BLOCK);
            EXPECT_EQ(sh.block, 8);
            break;
        case KL_OPT_DCT_ADAMW: EXPECT_EQ(sh.granularity, KL_SHARD_PARAM); break;
        }
        kl_optimizer_free(o);
    }
}
