/* ops_gradcheck.h — helpers shared by the CPU op tests (embedding, rmsnorm, rope, attention, swiglu,
 * matmul, cross-entropy): FP64 random inputs, central finite differences of a scalar probe
 * L = sum(r * out) against a backward's gradient, and FP32-vs-FP64 comparison. */
#ifndef KL_OPS_GRADCHECK_H
#define KL_OPS_GRADCHECK_H

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace opstest {

inline std::vector<double> normal64(size_t n, uint64_t seed, double stddev = 1.0) {
    return kltest::to_double(kltest::random_normal(n, (float)stddev, seed));
}
inline std::vector<double> uniform64(size_t n, double lo, double hi, uint64_t seed) {
    return kltest::to_double(kltest::random_uniform(n, (float)lo, (float)hi, seed));
}
inline std::vector<float> to_float(const std::vector<double> &v) { return std::vector<float>(v.begin(), v.end()); }

inline double dot(const std::vector<double> &a, const std::vector<double> &b) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
    return s;
}

/* Compares `analytic` (the backward's gradient of L w.r.t. x) with central finite differences of
 * `loss` (which evaluates L from the current contents of x) over EVERY element of x.
 *
 * Step h = 1e-6 in FP64. The FD error is truncation h^2/6 |L'''| ~ 1e-13 plus rounding
 * ~ eps64 * sum_k |r_k out_k| / h ~ 1e-10 * sum_k |r_k out_k|; for the probes used (<= ~1200 terms of
 * O(1)) that is <~ 1e-7, measured <= 3e-8, against a largest gradient component of order 1..10. The bound,
 * max_i |analytic_i - fd_i| <= 1e-6 * max_i |fd_i|, keeps a margin of >= 10x over that (~100x measured),
 * while a real mistake (a missing term, a wrong factor, a wrong index) is an O(1) relative error.
 * A gradient that is ~0 everywhere would make the check vacuous, so it fails. */
inline ::testing::AssertionResult MatchesFiniteDifferences(const char *what, std::vector<double> &x,
                                                           const std::vector<double> &analytic,
                                                           const std::function<double()> &loss) {
    const double h = 1e-6, tol = 1e-6;
    if (analytic.size() != x.size())
        return ::testing::AssertionFailure() << what << ": gradient has " << analytic.size() << " elements, input "
                                             << x.size();
    std::vector<double> fd(x.size());
    double max_fd = 0.0;
    for (size_t i = 0; i < x.size(); i++) {
        const double x0 = x[i];
        x[i] = x0 + h;
        const double lp = loss();
        x[i] = x0 - h;
        const double lm = loss();
        x[i] = x0;
        fd[i] = (lp - lm) / (2 * h);
        max_fd = std::fmax(max_fd, std::fabs(fd[i]));
    }
    if (!(max_fd > 1e-3))
        return ::testing::AssertionFailure() << what << ": finite-difference gradient is ~0 (max " << max_fd
                                             << "), so the probe cannot detect a wrong backward";
    double worst = -1.0;
    size_t wi = 0;
    for (size_t i = 0; i < x.size(); i++) {
        double e = std::fabs(analytic[i] - fd[i]);
        if (!(e <= worst) || std::isnan(e)) { worst = e; wi = i; }
        if (std::isnan(e)) break;
    }
    if (!(worst <= tol * max_fd))
        return ::testing::AssertionFailure() << what << ": worst at [" << wi << "] analytic " << analytic[wi]
                                             << " finite difference " << fd[wi] << " (error " << worst
                                             << ", bound " << tol * max_fd << ", n=" << x.size() << ")";
    return ::testing::AssertionSuccess() << what << ": max error " << worst << " of max |grad| " << max_fd;
}

/* FP32 result a against the FP64 result b of the same op on the same (float-representable) inputs:
 * |a - b| <= atol + rtol |b| elementwise. */
inline ::testing::AssertionResult Fp32Close(const char *what, const std::vector<float> &a, const std::vector<double> &b,
                                            double rtol, double atol) {
    if (a.size() != b.size())
        return ::testing::AssertionFailure() << what << ": sizes " << a.size() << " vs " << b.size();
    std::vector<double> ad(a.begin(), a.end());
    std::string report;
    if (!kltest::all_close(ad.data(), b.data(), b.size(), rtol, atol, &report))
        return ::testing::AssertionFailure() << what << ": " << report;
    return ::testing::AssertionSuccess();
}

/* Largest |v_i|, to scale absolute tolerances to the data. */
inline double max_abs(const std::vector<double> &v) {
    double m = 0.0;
    for (double x : v) m = std::fmax(m, std::fabs(x));
    return m;
}

}  // namespace opstest
#endif
