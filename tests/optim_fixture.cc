/* optim_fixture.cc — loading and replaying the optimizer parity fixtures (optim_fixture.h). */
#include "optim_fixture.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "test_util.h"

namespace kltest {

namespace {

template <typename T>
bool read_bin(const std::string &path, size_t n, std::vector<T> *out) {
    std::string s = read_file(path);
    if (s.size() != n * sizeof(T)) return false;
    out->resize(n);
    memcpy(out->data(), s.data(), s.size());
    return true;
}

}  // namespace

double fixture_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    EXPECT_TRUE(cJSON_IsNumber(v)) << "fixture key " << key;
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

std::string fixture_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    EXPECT_TRUE(cJSON_IsString(v)) << "fixture key " << key;
    return cJSON_IsString(v) ? v->valuestring : "";
}

bool load_optim_fixture(const std::string &name, OptimFixture *f) {
    const std::string dir = kiln_source_dir() + "/tests/data/optim/" + name + "/";
    f->meta = cJSON_Parse(read_file(dir + "meta.json").c_str());
    if (!f->meta) return false;
    f->steps = (int)fixture_num(f->meta, "steps");
    f->lr = fixture_num(f->meta, "lr");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(f->meta, "params"), *p;
    cJSON_ArrayForEach(p, ps) f->names.push_back(fixture_str(p, "name"));
    cJSON_ArrayForEach(p, ps) {
        kl_opt_param q{};
        q.name = f->names[f->params.size()].c_str();
        q.rows = (int)fixture_num(p, "rows");
        q.cols = (int)fixture_num(p, "cols");
        q.numel = (size_t)q.rows * q.cols;
        q.offset = f->total;
        q.is_matrix = (int)fixture_num(p, "is_matrix");
        q.decay = (int)fixture_num(p, "decay");
        q.lr_mult = (float)fixture_num(p, "lr_mult");
        f->total += q.numel;
        f->params.push_back(q);
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(f->meta, "pkg_fp32_err"), *row, *x;
    cJSON_ArrayForEach(row, e) {
        f->pkg_err.emplace_back();
        cJSON_ArrayForEach(x, row) f->pkg_err.back().push_back(x->valuedouble);
    }
    return read_bin(dir + "init.bin", f->total, &f->init) &&
           read_bin(dir + "grads.bin", f->total * f->steps, &f->grads) &&
           read_bin(dir + "ref.bin", f->total * f->steps, &f->ref) && (int)f->pkg_err.size() == f->steps;
}

void run_optim_parity(const std::string &name, const char *kind, kl_opt_settings (*settings_of)(const cJSON *)) {
    OptimFixture f;
    ASSERT_TRUE(load_optim_fixture(name, &f)) << "fixture tests/data/optim/" << name << " is missing or malformed";
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(f.meta, "settings");
    ASSERT_EQ(fixture_str(s, "kind"), kind);
    kl_opt_settings os = settings_of(s);
    kl_optimizer *o = nullptr;
    ASSERT_EQ(kl_optimizer_create(&o, &os, f.params.data(), (int)f.params.size()), KL_OK) << kl_last_error();
    std::vector<float> w = f.init;
    double worst_ratio = 0, worst_err = 0, worst_vs_pkg = 0;
    for (int t = 1; t <= f.steps; t++) {
        ASSERT_EQ(o->vt->step(o, w.data(), f.grads.data() + (t - 1) * f.total, f.lr, t), KL_OK) << kl_last_error();
        for (size_t i = 0; i < f.params.size(); i++) {
            const kl_opt_param &p = f.params[i];
            const double *ref = f.ref.data() + (t - 1) * f.total + p.offset;
            double dn = 0, dd = 0;
            for (size_t j = 0; j < p.numel; j++) {
                const double a = w[p.offset + j], b = ref[j], w0 = f.init[p.offset + j];
                dn += (a - b) * (a - b);
                dd += (b - w0) * (b - w0);
            }
            const double err = std::sqrt(dn / dd), tol = std::max(8.0 * f.pkg_err[t - 1][i], 1e-6);
            worst_ratio = std::max(worst_ratio, err / tol);
            worst_err = std::max(worst_err, err);
            worst_vs_pkg = std::max(worst_vs_pkg, err / f.pkg_err[t - 1][i]);
            EXPECT_LE(err, tol) << name << " step " << t << " parameter " << p.name << " (package fp32 noise "
                                << f.pkg_err[t - 1][i] << ")";
        }
    }
    printf("[parity] %s: worst distance %.2e, worst distance / package fp32 noise %.2f, worst distance / "
           "tolerance %.3f\n", name.c_str(), worst_err, worst_vs_pkg, worst_ratio);
    kl_optimizer_free(o);
}

}  // namespace kltest
