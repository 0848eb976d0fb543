/* test_util.cc — see test_util.h. */
#include "test_util.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

extern "C" {
#include "checkpoint.h"
#include "device.h"
}

namespace kltest {

uint64_t fresh_seed(const char *what) {
    const char *env = getenv("KILN_TEST_SEED");
    uint64_t s;
    if (env && *env) {
        s = strtoull(env, nullptr, 0);
    } else {
        std::random_device rd;
        s = ((uint64_t)rd() << 32) ^ rd();
    }
    fprintf(stderr, "[seed] %s: KILN_TEST_SEED=%llu\n", what, (unsigned long long)s);
    return s;
}

std::vector<float> random_uniform(size_t n, float lo, float hi, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto &x : v) x = d(g);
    return v;
}

std::vector<float> random_normal(size_t n, float stddev, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::normal_distribution<float> d(0.0f, stddev);
    std::vector<float> v(n);
    for (auto &x : v) x = d(g);
    return v;
}

std::vector<double> to_double(const std::vector<float> &v) { return std::vector<double>(v.begin(), v.end()); }

std::string kiln_source_dir() {
    const char *env = getenv("KILN_SOURCE_DIR");
    return env ? env : KILN_SOURCE_DIR;
}

int gpu_count() { return kl_gpu_count(); }

std::vector<std::string> step_losses(const std::string &metrics, int after) {
    std::vector<std::string> out;
    const std::string rec = "{\"type\":\"step\"";
    for (size_t p = metrics.find(rec); p != std::string::npos; p = metrics.find(rec, p + 1)) {
        const size_t s = metrics.find("\"step\":", p), l = metrics.find("\"loss\":", p);
        if (s == std::string::npos || l == std::string::npos) break;
        if (atoi(metrics.c_str() + s + 7) <= after) continue;
        out.push_back(metrics.substr(l + 7, metrics.find_first_of(",}", l) - l - 7));
    }
    return out;
}

void check_signal_stop_and_resume(const std::string &config, const std::string &common, int sig, double timeout_s,
                                  const std::string &a, const std::string &b) {
    std::string out;
    const int rc = run_kiln_and_signal("train '" + config + "' " + common + "train.steps=1000000", a,
                                       "runs/tiny/metrics.jsonl", "{\"type\":\"step\",\"step\":2,", sig, timeout_s,
                                       &out);
    ASSERT_EQ(rc, 0) << out;
    const char *said = "stopped by a signal after step ";
    const size_t p = out.find(said);
    ASSERT_NE(p, std::string::npos) << out;
    const int K = atoi(out.c_str() + p + strlen(said));
    ASSERT_GE(K, 2) << out;
    char step_dir[64];
    snprintf(step_dir, sizeof step_dir, "/runs/tiny/ckpt/step_%08d", K);
    EXPECT_FALSE(read_file(a + step_dir + "/DONE").empty()) << "no complete checkpoint at step " << K;

    const std::string finish = "train '" + config + "' " + common + "train.steps=" + std::to_string(K + 3);
    ASSERT_EQ(run_kiln(finish, &out, a), 0) << out;
    EXPECT_NE(out.find("resumed from"), std::string::npos) << out;
    ASSERT_EQ(run_kiln(finish, &out, b), 0) << out;
    const auto la = step_losses(read_file(a + "/runs/tiny/metrics.jsonl"), K);
    const auto lb = step_losses(read_file(b + "/runs/tiny/metrics.jsonl"), K);
    ASSERT_EQ(lb.size(), 3u);
    EXPECT_EQ(la, lb);
    const std::string wa = read_file(a + "/runs/tiny/model/model.safetensors");
    EXPECT_FALSE(wa.empty());
    EXPECT_TRUE(wa == read_file(b + "/runs/tiny/model/model.safetensors")) << "final weights differ";
}

std::vector<std::string> ckpt_entry_names(const std::string &step_dir) {
    std::vector<std::string> names;
    kl_ckpt_reader *r = nullptr;
    if (kl_ckpt_open(&r, step_dir.c_str(), 0) != KL_OK) return names;
    for (int i = 0; i < kl_ckpt_n_entries(r); i++) names.push_back(kl_ckpt_entry_at(r, i)->name);
    kl_ckpt_close(r);
    return names;
}

const std::vector<std::string> kAdamwCheckpointEntries = {
    "config",        "loader/epoch",      "loader/fingerprint", "loader/sample",    "model/backward_passes",
    "optimizer/adamw.m", "optimizer/adamw.v", "params",         "train/bad_streak", "train/step"};

std::string make_temp_dir(const char *name) {
    static int counter = 0;
    const char *base = getenv("KILN_TEST_TMP");
    std::string root = base ? base : KILN_TEST_TMP;
    mkdir(root.c_str(), 0755);
    std::ostringstream p;
    p << root << "/" << name << "." << getpid() << "." << counter++;
    std::string dir = p.str();
    std::string cmd = "rm -rf '" + dir + "'";
    if (system(cmd.c_str()) != 0) return dir;
    mkdir(dir.c_str(), 0755);
    return dir;
}

void write_file(const std::string &path, const std::string &contents) {
    std::ofstream f(path, std::ios::binary);
    f << contents;
}

std::string read_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

int run_kiln(const std::string &args, std::string *output, const std::string &cwd) {
    const char *bin = getenv("KILN_BIN");
    std::string cmd;
    if (!cwd.empty()) cmd += "cd '" + cwd + "' && ";
    cmd += std::string("'") + (bin ? bin : "kiln") + "' " + args + " 2>&1";
    FILE *p = popen(cmd.c_str(), "r");
    if (!p) return -1;
    char buf[4096];
    size_t n;
    std::string out;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = pclose(p);
    if (output) *output = out;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int run_kiln_and_signal(const std::string &args, const std::string &cwd, const std::string &wait_file,
                        const std::string &wait_text, int sig, double timeout_s, std::string *output) {
    const char *bin = getenv("KILN_BIN");
    const std::string log = cwd + "/kiln_signal.out";
    const std::string cmd = std::string("exec '") + (bin ? bin : "kiln") + "' " + args + " >'" + log + "' 2>&1";
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (chdir(cwd.c_str()) != 0) _exit(126);
        execl("/bin/sh", "sh", "-c", cmd.c_str(), (char *)nullptr);
        _exit(127);
    }
    const auto t0 = std::chrono::steady_clock::now();
    int status = 0, seen = 0;
    for (;;) {
        if (waitpid(pid, &status, WNOHANG) == pid) break; /* ended before the signal */
        if (read_file(cwd + "/" + wait_file).find(wait_text) != std::string::npos) {
            seen = 1;
            kill(pid, sig);
            waitpid(pid, &status, 0);
            break;
        }
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        usleep(20000);
    }
    if (output) *output = read_file(log);
    if (!seen) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

template <typename T>
static bool close_impl(const T *a, const T *b, size_t n, double rtol, double atol, std::string *report) {
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = std::fabs((double)a[i] - (double)b[i]);
        double r = d / (atol + rtol * std::fabs((double)b[i]));
        if (!std::isfinite((double)a[i]) || !std::isfinite((double)b[i])) r = INFINITY;
        if (r > worst || (r != r)) { worst = r; wi = i; }
    }
    if (report) {
        std::ostringstream s;
        s << "worst at [" << wi << "]: got " << (n ? (double)a[wi] : 0) << " want " << (n ? (double)b[wi] : 0)
          << " (ratio to tolerance " << worst << ", n=" << n << ")";
        *report = s.str();
    }
    return worst <= 1.0;
}

bool all_close(const float *a, const float *b, size_t n, double rtol, double atol, std::string *report) {
    return close_impl(a, b, n, rtol, atol, report);
}
bool all_close(const double *a, const double *b, size_t n, double rtol, double atol, std::string *report) {
    return close_impl(a, b, n, rtol, atol, report);
}

double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return std::sqrt(num / (den > 0 ? den : 1e-300));
}

}  // namespace kltest
