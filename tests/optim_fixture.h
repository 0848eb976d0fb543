/* optim_fixture.h — the optimizer parity fixtures written by scripts/gen_optim_fixtures.py (a few steps of
 * the public PyTorch optimizers on a small parameter table), loaded and replayed through a kiln optimizer.
 * Shared by dash_test.cc and dct_adamw_test.cc. */
#ifndef KL_OPTIM_FIXTURE_H
#define KL_OPTIM_FIXTURE_H

#include <cjson/cJSON.h>

#include <string>
#include <vector>

extern "C" {
#include "optim.h"
}

namespace kltest {

struct OptimFixture {
    cJSON *meta = nullptr;
    std::vector<kl_opt_param> params;
    std::vector<std::string> names;
    size_t total = 0;
    int steps = 0;
    double lr = 0;
    std::vector<float> init, grads;           /* total; steps × total */
    std::vector<double> ref;                  /* the package's float64 run: steps × total */
    std::vector<std::vector<double>> pkg_err; /* [step][param]: its float32 run's distance to ref */
    OptimFixture() = default;
    OptimFixture(const OptimFixture &) = delete;
    OptimFixture &operator=(const OptimFixture &) = delete;
    ~OptimFixture() { cJSON_Delete(meta); }
};

/* A number / string member of a fixture's JSON object (a gtest failure names a missing key). */
double fixture_num(const cJSON *o, const char *key);
std::string fixture_str(const cJSON *o, const char *key);

/* Loads tests/data/optim/NAME/ (meta.json, init.bin, grads.bin, ref.bin); false when missing or malformed. */
bool load_optim_fixture(const std::string &name, OptimFixture *f);

/* Runs fixture NAME's steps through an optimizer made with settings_of(meta.settings), whose "kind" must be
 * `kind`, and checks every parameter after every step against the package's float64 run: the distance
 * ||W_kiln − W_ref|| / ||W_ref − W_0|| (relative to the change so far) must stay within 8× the package's
 * own float32 noise and at least 1e-6 (the callers say why). Prints the worst distance and ratios. */
void run_optim_parity(const std::string &name, const char *kind, kl_opt_settings (*settings_of)(const cJSON *));

}  // namespace kltest

#endif
