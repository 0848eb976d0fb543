/* test_util.h — small helpers shared by the GoogleTest files: fresh random inputs, temporary folders,
 * running the kiln executable and capturing what it prints, comparing arrays with a useful report. */
#ifndef KL_TEST_UTIL_H
#define KL_TEST_UTIL_H

#include <stdint.h>
#include <string>
#include <vector>

namespace kltest {

/* A seed that differs on every run unless KILN_TEST_SEED is set; printed so a failure can be replayed. */
uint64_t fresh_seed(const char *what);
/* Uniform in [lo, hi) / standard normal, from a std::mt19937_64 seeded with `seed`. */
std::vector<float> random_uniform(size_t n, float lo, float hi, uint64_t seed);
std::vector<float> random_normal(size_t n, float stddev, uint64_t seed);
std::vector<double> to_double(const std::vector<float> &v);

/* A new empty folder under the build's test tmp folder (removed at exit unless KILN_KEEP_TMP=1). */
std::string make_temp_dir(const char *name);
void write_file(const std::string &path, const std::string &contents);
std::string read_file(const std::string &path);

/* Runs `kiln ARGS` (a shell-quoted argument string) in `cwd`; returns the exit status,
 * stdout+stderr go to *output. */
int run_kiln(const std::string &args, std::string *output, const std::string &cwd = "");
std::string kiln_source_dir();
/* GPUs visible to kiln (device.h kl_gpu_count; 0 in a build without CUDA). */
int gpu_count();
/* Starts `kiln ARGS` in `cwd`, waits until cwd/wait_file holds wait_text, then sends signal `sig` and waits
 * for the exit. Returns the exit status as run_kiln does, or -1 when the text did not appear within
 * timeout_s seconds or the process ended first (it is then killed / reaped). *output: what kiln printed. */
int run_kiln_and_signal(const std::string &args, const std::string &cwd, const std::string &wait_file,
                        const std::string &wait_text, int sig, double timeout_s, std::string *output);
/* The losses of the step records (metrics.jsonl text) with step > after, in order, as printed (exact
 * comparison; atof gives the number). */
std::vector<std::string> step_losses(const std::string &metrics, int after);
/* Starts `kiln train CONFIG COMMON train.steps=1000000` in folder a and sends `sig` once step 2 is logged;
 * checks (gtest) that the run exits 0 saying after which step K it stopped, with a complete checkpoint of step
 * K; then resumes it to K+3 steps and checks its last 3 losses and final weights equal those of a run of K+3
 * steps in folder b that was never stopped. COMMON should fix the schedule (constant), so the long first run
 * does not change the learning rate. */
void check_signal_stop_and_resume(const std::string &config, const std::string &common, int sig, double timeout_s,
                                  const std::string &a, const std::string &b);
/* The entry names of rank 0's file in a checkpoint step folder, in order (empty when it does not open). */
std::vector<std::string> ckpt_entry_names(const std::string &step_dir);
/* What every AdamW training checkpoint holds, written by the CPU or the GPU trainer (docs/checkpoints.md). */
extern const std::vector<std::string> kAdamwCheckpointEntries;

/* max |a-b| / (atol + rtol*|b|) over all elements; a result <= 1 means "within tolerance".
 * On failure, *report names the worst index and values. NaN anywhere fails. */
bool all_close(const float *a, const float *b, size_t n, double rtol, double atol, std::string *report);
bool all_close(const double *a, const double *b, size_t n, double rtol, double atol, std::string *report);
/* ||a-b|| / ||b|| in double. */
double rel_l2(const float *a, const float *b, size_t n);

}  // namespace kltest
/* In a test body: skip (not fail) on a machine without a GPU. */
#define SKIP_WITHOUT_GPU()                                                          \
    do {                                                                            \
        if (kltest::gpu_count() == 0) GTEST_SKIP() << "no GPU";                     \
    } while (0)

#endif
