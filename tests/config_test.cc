// config_test.cc — the YAML configuration (src/config.c, src/config_keys.c) and `kiln config`: the key
// table is consistent, every key survives print -> load, overrides, path resolution, cross-key rules,
// malformed configs with the exact message each must produce, and the CLI's exit codes and output.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "config.h"
#include "loader.h"
#include "model.h"
#include "optim.h"
#include "schedule.h"
#include "test_util.h"

namespace {

// The enums other modules keep for the same keys list the choices in the same order, so callers may cast.
static_assert((int)KL_CFG_ARCH_LLAMA == (int)KL_ARCH_LLAMA && (int)KL_CFG_ARCH_QWEN2 == (int)KL_ARCH_QWEN2 &&
                  (int)KL_CFG_ARCH_QWEN3 == (int)KL_ARCH_QWEN3 && (int)KL_CFG_ARCH_MISTRAL == (int)KL_ARCH_MISTRAL,
              "model.arch order");
static_assert((int)KL_CFG_SCHED_CONSTANT == (int)KL_SCHED_CONSTANT && (int)KL_CFG_SCHED_COSINE == (int)KL_SCHED_COSINE &&
                  (int)KL_CFG_SCHED_LINEAR == (int)KL_SCHED_LINEAR && (int)KL_CFG_SCHED_WSD == (int)KL_SCHED_WSD,
              "train.schedule order");
static_assert((int)KL_CFG_OPTIM_ADAMW == (int)KL_OPT_ADAMW && (int)KL_CFG_OPTIM_DASH == (int)KL_OPT_DASH &&
                  (int)KL_CFG_OPTIM_DCT_ADAMW == (int)KL_OPT_DCT_ADAMW,
              "optim.name order");
static_assert((int)KL_CFG_STATE_FP32 == (int)KL_STATE_FP32 && (int)KL_CFG_STATE_BF16 == (int)KL_STATE_BF16,
              "optim.state_dtype order");
static_assert((int)KL_CFG_DATA_FILES == (int)KL_DATA_FILES && (int)KL_CFG_DATA_SYNTHETIC == (int)KL_DATA_SYNTHETIC,
              "data.source order");
static_assert((int)KL_CFG_ROPE_NONE == (int)KL_ROPE_SCALING_NONE && (int)KL_CFG_ROPE_LLAMA3 == (int)KL_ROPE_SCALING_LLAMA3,
              "model.rope_scaling order");

std::vector<const kl_key *> all_keys() {
    size_t n = 0;
    const kl_key *k = kl_config_keys(&n);
    std::vector<const kl_key *> v;
    for (size_t i = 0; i < n; i++) v.push_back(&k[i]);
    return v;
}

std::string full_name(const kl_key *k) { return std::string(k->section) + "." + k->name; }

const void *field(const kl_config &c, const kl_key *k) { return (const char *)&c + k->offset; }

std::string value_text(const kl_config &c, const kl_key *k) {
    char buf[4 * KL_CFG_PATH_MAX + 16];
    return kl_config_format_value(&c, k, buf, sizeof buf);
}

// Every key of a and b holds the same bytes (doubles bit for bit, strings with their zero padding).
void expect_same_values(const kl_config &a, const kl_config &b) {
    for (const kl_key *k : all_keys())
        EXPECT_EQ(0, memcmp(field(a, k), field(b, k), k->size))
            << full_name(k) << ": " << value_text(a, k) << " vs " << value_text(b, k);
}

std::string print_to_string(const kl_config &c) {
    char *buf = nullptr;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    kl_config_print(&c, f);
    fclose(f);
    std::string s(buf, len);
    free(buf);
    return s;
}

std::vector<std::string> choices_of(const kl_key *k) {
    std::vector<std::string> v;
    std::string s = k->choices, cur;
    for (char ch : s) {
        if (ch == '|') v.push_back(cur), cur.clear();
        else cur += ch;
    }
    v.push_back(cur);
    return v;
}

std::string cwd() {
    char buf[4096];
    return getcwd(buf, sizeof buf) ? buf : "";
}

// Runs kiln with stdout and stderr captured apart (kltest::run_kiln merges them).
int run_kiln_split(const std::string &args, const std::string &dir, std::string *out, std::string *err) {
    const char *bin = getenv("KILN_BIN");
    std::string o = dir + "/stdout.txt", e = dir + "/stderr.txt";
    std::string cmd = "cd '" + dir + "' && '" + std::string(bin ? bin : "kiln") + "' " + args + " >'" + o + "' 2>'" + e + "'";
    int st = system(cmd.c_str());
    *out = kltest::read_file(o);
    *err = kltest::read_file(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

}  // namespace

TEST(ConfigTable, IsConsistentAndEveryDefaultIsValid) {
    kl_status s = kl_config_check_table();
    EXPECT_EQ(s, KL_OK) << kl_last_error();
    // Every section named in the issue exists and holds at least one key.
    const char *wanted[] = {"model", "data", "train", "optim", "precision", "memory", "parallel", "log"};
    size_t ns = 0;
    const kl_section *sec = kl_config_sections(&ns);
    ASSERT_EQ(ns, sizeof wanted / sizeof wanted[0]);
    for (size_t i = 0; i < ns; i++) {
        EXPECT_STREQ(sec[i].name, wanted[i]);
        int n = 0;
        for (const kl_key *k : all_keys()) n += strcmp(k->section, wanted[i]) == 0;
        EXPECT_GT(n, 0) << wanted[i];
    }
}

TEST(ConfigDefaults, MatchTheIssueAndPassValidationOnceDataIsGiven) {
    kl_config c;
    kl_config_defaults(&c);
    EXPECT_EQ(c.model.arch, KL_CFG_ARCH_LLAMA);
    EXPECT_EQ(c.model.vocab_size, 256);
    EXPECT_EQ(c.model.hidden_size, 64);
    EXPECT_EQ(c.model.num_layers, 2);
    EXPECT_EQ(c.model.num_heads, 4);
    EXPECT_EQ(c.model.max_seq_len, 1024);
    EXPECT_EQ(c.model.rope_theta, 10000.0);
    EXPECT_EQ(c.model.rms_norm_eps, 1e-6);
    EXPECT_TRUE(c.model.tie_embeddings);
    EXPECT_EQ(c.data.source, KL_CFG_DATA_FILES);
    EXPECT_EQ(c.data.seq_len, 256);
    EXPECT_EQ(c.data.synthetic_patterns, 16);
    EXPECT_STREQ(c.train.name, "run");
    EXPECT_EQ(c.train.schedule, KL_CFG_SCHED_COSINE);
    EXPECT_EQ(c.train.min_lr_ratio, 0.1);
    EXPECT_EQ(c.train.max_bad_steps, 3);
    EXPECT_EQ(c.optim.name, KL_CFG_OPTIM_ADAMW);
    EXPECT_EQ(c.optim.lr, 3e-4);
    EXPECT_EQ(c.optim.beta2, 0.95);
    EXPECT_EQ(c.optim.eps, 1e-8);
    EXPECT_FALSE(c.optim.decay_embeddings);
    EXPECT_EQ(c.precision.nvfp4_backward, KL_CFG_NVFP4_BWD_MS_EDEN);
    EXPECT_EQ(c.memory.device_limit, 0);
    EXPECT_EQ(c.parallel.backend, KL_CFG_BACKEND_NCCL);
    EXPECT_EQ(c.log.every, 10);
    EXPECT_TRUE(c.log.console);
    // The only rule the defaults break is the one that needs the user's data.
    EXPECT_EQ(kl_config_validate(&c), KL_ERR_CONFIG);
    EXPECT_NE(std::string(kl_last_error()).find("data.train is required"), std::string::npos) << kl_last_error();
    ASSERT_EQ(kl_config_set(&c, "data.train=/data/train_*.bin"), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_config_validate(&c), KL_OK) << kl_last_error();
    kl_config_defaults(&c);
    ASSERT_EQ(kl_config_set(&c, "data.source=synthetic"), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_config_validate(&c), KL_OK) << kl_last_error();
}

TEST(ConfigRoundTrip, EveryKeySurvivesPrintThenLoadWithRandomValues) {
    uint64_t seed = kltest::fresh_seed("ConfigRoundTrip");
    std::mt19937_64 g(seed);
    std::string dir = kltest::make_temp_dir("config_roundtrip");
    for (int trial = 0; trial < 20; trial++) {
        kl_config c;
        kl_config_defaults(&c);
        for (const kl_key *k : all_keys()) {
            std::string v;
            switch (k->type) {
            case KL_KEY_INT:
                v = std::to_string(std::uniform_int_distribution<int64_t>((int64_t)k->min, (int64_t)k->max)(g));
                break;
            case KL_KEY_FLOAT: {
                double x;
                do {
                    x = std::uniform_real_distribution<double>(k->min, k->max)(g);
                } while (((k->flags & KL_KEY_MIN_OPEN) && x == k->min) || ((k->flags & KL_KEY_MAX_OPEN) && x == k->max));
                char buf[64];
                snprintf(buf, sizeof buf, "%.17g", x);
                v = buf;
                break;
            }
            case KL_KEY_BOOL: v = (g() & 1) ? "true" : "false"; break;
            case KL_KEY_ENUM: {
                auto ch = choices_of(k);
                v = ch[g() % ch.size()];
                break;
            }
            case KL_KEY_NAME: {
                static const char alphabet[] = "abcXYZ019._-";
                int len = 1 + (int)(g() % (k->size - 1));
                do {
                    v.clear();
                    for (int i = 0; i < len; i++) v += alphabet[g() % (sizeof alphabet - 1)];
                } while (v == "." || v == "..");
                break;
            }
            case KL_KEY_PATH:
            case KL_KEY_PATHS: {
                // characters YAML treats specially, quotes, backslashes, a tab, non-ASCII UTF-8
                static const char *parts[] = {"a b", "q\"uote", "back\\slash", "tab\there", "#hash", ": colon",
                                              "caf\xc3\xa9", "*.bin", "-dash", "'single'", "[x]", "{y}"};
                int n = k->type == KL_KEY_PATHS ? 1 + (int)(g() % 3) : 1;
                for (int i = 0; i < n; i++) {
                    if (i) v += ",";
                    v += "/r" + std::to_string(g() % 1000);
                    for (int j = 0; j < 3; j++) v += std::string("/") + parts[g() % 12];
                }
                if (k->type == KL_KEY_PATH) v += ",comma";
                break;
            }
            case KL_KEY_BYTES: v = std::to_string(g() % ((uint64_t)1 << 50)); break;
            }
            std::string a = full_name(k) + "=" + v;
            ASSERT_EQ(kl_config_set(&c, a.c_str()), KL_OK) << a << ": " << kl_last_error();
        }
        std::string text = print_to_string(c);
        std::string path = dir + "/printed.yaml";
        kltest::write_file(path, text);
        kl_config back;
        ASSERT_EQ(kl_config_load(&back, path.c_str()), KL_OK) << kl_last_error() << "\n" << text;
        expect_same_values(c, back);
        EXPECT_EQ(print_to_string(back), text);
        if (::testing::Test::HasFailure()) {
            ADD_FAILURE() << "printed config:\n" << text;
            return;
        }
    }
}

TEST(ConfigEnums, StoreTheIndexOfTheChoiceInTheTable) {
    kl_config c;
    kl_config_defaults(&c);
    for (const kl_key *k : all_keys()) {
        if (k->type != KL_KEY_ENUM) continue;
        auto ch = choices_of(k);
        for (size_t i = 0; i < ch.size(); i++) {
            std::string a = full_name(k) + "=" + ch[i];
            ASSERT_EQ(kl_config_set(&c, a.c_str()), KL_OK) << kl_last_error();
            EXPECT_EQ(*(const int *)field(c, k), (int)i) << a;
        }
    }
    ASSERT_EQ(kl_config_set(&c, "optim.name=dct_adamw"), KL_OK);
    EXPECT_EQ(c.optim.name, KL_CFG_OPTIM_DCT_ADAMW);
    ASSERT_EQ(kl_config_set(&c, "memory.recompute=attention"), KL_OK);
    EXPECT_EQ(c.memory.recompute, KL_CFG_RECOMPUTE_ATTENTION);
    ASSERT_EQ(kl_config_set(&c, "parallel.backend=copy_engine"), KL_OK);
    EXPECT_EQ(c.parallel.backend, KL_CFG_BACKEND_COPY_ENGINE);
}

TEST(ConfigOverrides, ApplyInOrderOverTheFileAndLeaveTheConfigUntouchedOnError) {
    uint64_t seed = kltest::fresh_seed("ConfigOverrides");
    std::mt19937_64 g(seed);
    int steps = 1 + (int)(g() % 100000), batch = 1 + (int)(g() % 512);
    std::string dir = kltest::make_temp_dir("config_overrides");
    std::string path = dir + "/c.yaml";
    kltest::write_file(path, "data:\n  source: synthetic\ntrain:\n  steps: 10\n  batch_size: 4\noptim:\n  lr: 0.001\n");
    std::string a1 = "train.steps=" + std::to_string(steps), a2 = "train.steps=" + std::to_string(steps + 1);
    std::string a3 = "train.batch_size=" + std::to_string(batch);
    std::vector<std::string> args = {a1, a3, "memory.device_limit=16GiB", "optim.beta1=0.5", a2,
                                     "model.tie_embeddings=no", "train.name=my-run.2"};
    std::vector<char *> argv;
    for (auto &s : args) argv.push_back(&s[0]);
    kl_config c;
    ASSERT_EQ(kl_config_parse_args(&c, path.c_str(), (int)argv.size(), argv.data()), KL_OK) << kl_last_error();
    EXPECT_EQ(c.train.steps, steps + 1);  // the later override wins
    EXPECT_EQ(c.train.batch_size, batch);
    EXPECT_EQ(c.memory.device_limit, (int64_t)16 << 30);
    EXPECT_EQ(c.optim.beta1, 0.5);
    EXPECT_EQ(c.optim.lr, 0.001);  // from the file, not overridden
    EXPECT_FALSE(c.model.tie_embeddings);
    EXPECT_STREQ(c.train.name, "my-run.2");

    // A bad override: same validation and messages as in a file, and *c stays as it was.
    kl_config before = c;
    struct {
        const char *arg, *msg;
    } bad[] = {
        {"optim.lr=abc", "command line: optim.lr=abc: expected a number in (0, 10], got 'abc'"},
        {"optim.lrr=1", "command line: unknown key 'optim.lrr' (did you mean 'optim.lr'?)"},
        {"trian.steps=5", "command line: trian.steps=5: unknown section 'trian' (did you mean 'train'?)"},
        {"steps=5", "command line: 'steps=5' needs its section (did you mean 'train.steps'?)"},
        {"train.steps", "command line: 'train.steps' is not an override (expected section.key=value)"},
        {"train.steps=", "command line: train.steps=: expected an integer in [1, 1000000000000], got no value"},
        {"parallel.zero=4", "command line: parallel.zero=4: expected an integer in [0, 3], got '4'"},
        {"train.device=gpu", "command line: train.device=gpu: expected one of auto|cpu|cuda, got 'gpu' (did you mean 'cpu'?)"},
    };
    for (auto &b : bad) {
        EXPECT_EQ(kl_config_set(&c, b.arg), KL_ERR_CONFIG) << b.arg;
        EXPECT_EQ(std::string(kl_last_error()), b.msg) << b.arg;
        EXPECT_EQ(0, memcmp(&before, &c, sizeof c)) << b.arg << " changed the config";
    }
    // parse_args: a failure anywhere leaves *c as it was (no partial configuration).
    std::string ok = "train.steps=3", bad_arg = "optim.lr=-1";
    char *argv2[] = {&ok[0], &bad_arg[0]};
    EXPECT_EQ(kl_config_parse_args(&c, path.c_str(), 2, argv2), KL_ERR_CONFIG);
    EXPECT_EQ(0, memcmp(&before, &c, sizeof c));
}

TEST(ConfigPaths, RelativePathsResolveAgainstTheConfigFolderAndOverridesAgainstTheWorkingDirectory) {
    std::string dir = kltest::make_temp_dir("config_paths");
    ASSERT_EQ(dir[0], '/') << "the test expects an absolute temporary folder";
    std::string sub = dir + "/configs";
    ASSERT_EQ(system(("mkdir -p '" + sub + "'").c_str()), 0);
    kltest::write_file(sub + "/run.yaml",
                       "model:\n  hf_config: hf/config.json\n"
                       "data:\n  train: ../tokens/train_*.bin,./more.bin,/abs/x.bin\n  eval: ''\n"
                       "train:\n  out_dir: ../out/./a/../b/\n"
                       "log:\n  metrics: /var/log/../../../m.jsonl\n");
    kl_config c;
    ASSERT_EQ(kl_config_load(&c, (sub + "/run.yaml").c_str()), KL_OK) << kl_last_error();
    EXPECT_EQ(std::string(c.model.hf_config), sub + "/hf/config.json");
    EXPECT_EQ(std::string(c.data.train), dir + "/tokens/train_*.bin," + sub + "/more.bin,/abs/x.bin");
    EXPECT_STREQ(c.data.eval, "");  // empty = unset, not the folder
    EXPECT_EQ(std::string(c.train.out_dir), dir + "/out/b");
    EXPECT_STREQ(c.log.metrics, "/m.jsonl");  // ".." never climbs above "/"
    EXPECT_STREQ(c.model.hf_dir, "");

    // Loaded through a path relative to the working directory, the config's folder is resolved first;
    // an override's relative path resolves against the working directory.
    std::string wd = cwd();
    ASSERT_EQ(chdir(dir.c_str()), 0);
    kl_config c2;
    kl_status s1 = kl_config_load(&c2, "configs/run.yaml");
    std::string e1 = kl_last_error();
    kl_status s2 = kl_config_set(&c2, "model.hf_dir=models/qwen");
    ASSERT_EQ(chdir(wd.c_str()), 0);
    ASSERT_EQ(s1, KL_OK) << e1;
    ASSERT_EQ(s2, KL_OK) << kl_last_error();
    EXPECT_EQ(std::string(c2.model.hf_dir), dir + "/models/qwen");
    memset(c2.model.hf_dir, 0, sizeof c2.model.hf_dir);
    expect_same_values(c, c2);

    // From memory: relative paths resolve against the folder given, messages name the text's stand-in name.
    kl_config c3;
    std::string text = kltest::read_file(sub + "/run.yaml");
    ASSERT_EQ(kl_config_load_string(&c3, text.c_str(), "inline", sub.c_str()), KL_OK) << kl_last_error();
    expect_same_values(c, c3);
    EXPECT_EQ(kl_config_load_string(&c3, "train:\n  stpes: 1\n", "inline", nullptr), KL_ERR_CONFIG);
    EXPECT_EQ(std::string(kl_last_error()), "inline:2:3: unknown key 'train.stpes' (did you mean 'train.steps'?)");
}

TEST(ConfigRunDir, DefaultsToRunsNameUnderTheWorkingDirectory) {
    kl_config c;
    kl_config_defaults(&c);
    char buf[KL_CFG_PATH_MAX + 32];
    ASSERT_EQ(kl_config_set(&c, "train.name=exp7"), KL_OK);
    ASSERT_EQ(kl_config_run_dir(&c, buf, sizeof buf), KL_OK);
    EXPECT_STREQ(buf, "runs/exp7");
    ASSERT_EQ(kl_config_metrics_path(&c, buf, sizeof buf), KL_OK);
    EXPECT_STREQ(buf, "runs/exp7/metrics.jsonl");
    ASSERT_EQ(kl_config_ckpt_dir(&c, buf, sizeof buf), KL_OK);
    EXPECT_STREQ(buf, "runs/exp7/ckpt");
    ASSERT_EQ(kl_config_set(&c, "train.out_dir=/scratch/x"), KL_OK);
    ASSERT_EQ(kl_config_ckpt_dir(&c, buf, sizeof buf), KL_OK);
    EXPECT_STREQ(buf, "/scratch/x/ckpt");
    ASSERT_EQ(kl_config_set(&c, "log.metrics=/logs/m.jsonl"), KL_OK);
    ASSERT_EQ(kl_config_metrics_path(&c, buf, sizeof buf), KL_OK);
    EXPECT_STREQ(buf, "/logs/m.jsonl");
    char small[8];
    EXPECT_EQ(kl_config_run_dir(&c, small, sizeof small), KL_ERR_CONFIG);
}

TEST(ConfigValidate, CrossKeyRulesNameTheKeysAndValues) {
    struct {
        std::vector<const char *> set;
        const char *msg;
    } cases[] = {
        {{"model.num_heads=5"}, "model.num_heads (5) must divide model.hidden_size (64) unless model.head_dim is set"},
        {{"model.num_kv_heads=3"}, "model.num_kv_heads (3) must divide model.num_heads (4)"},
        {{"model.num_kv_heads=8"}, "model.num_kv_heads (8) must divide model.num_heads (4)"},
        {{"data.seq_len=2048"}, "data.seq_len (2048) exceeds model.max_seq_len (1024)"},
        {{"train.warmup_steps=101"}, "train.warmup_steps (101) exceeds train.steps (100)"},
        {{"model.rope_scaling=llama3", "model.rope_high_freq_factor=0.5"},
         "model.rope_high_freq_factor (0.5) must exceed model.rope_low_freq_factor (1) for llama3 scaling"},
        {{"model.hf_dir=/m", "model.hf_config=/m/config.json"}, "set only one of model.hf_dir and model.hf_config"},
    };
    for (auto &t : cases) {
        kl_config c;
        kl_config_defaults(&c);
        ASSERT_EQ(kl_config_set(&c, "data.source=synthetic"), KL_OK);
        for (const char *a : t.set) ASSERT_EQ(kl_config_set(&c, a), KL_OK) << a << ": " << kl_last_error();
        EXPECT_EQ(kl_config_validate(&c), KL_ERR_CONFIG) << t.msg;
        EXPECT_NE(std::string(kl_last_error()).find(t.msg), std::string::npos) << kl_last_error();
    }
    // head_dim given: num_heads need not divide hidden_size (Qwen3-style shapes).
    kl_config c;
    kl_config_defaults(&c);
    ASSERT_EQ(kl_config_set(&c, "data.source=synthetic"), KL_OK);
    ASSERT_EQ(kl_config_set(&c, "model.num_heads=5"), KL_OK);
    ASSERT_EQ(kl_config_set(&c, "model.head_dim=16"), KL_OK);
    EXPECT_EQ(kl_config_validate(&c), KL_OK) << kl_last_error();
}

// Each malformed config and the message it must produce ("F" stands for the file's path).
TEST(ConfigErrors, MalformedConfigsNameFileLineColumnKeyExpectationAndSuggestion) {
    struct Case {
        std::string yaml, msg;
    };
    std::string long_path(1100, 'p');
    const Case cases[] = {
        {"train:\n  stpes: 5\n", "F:2:3: unknown key 'train.stpes' (did you mean 'train.steps'?)"},
        {"model:\n  hiden_size: 8\n", "F:2:3: unknown key 'model.hiden_size' (did you mean 'model.hidden_size'?)"},
        {"model:\n  lr: 0.1\n", "F:2:3: unknown key 'model.lr' (did you mean 'optim.lr'?)"},
        {"train:\n  frobnicate: 1\n", "F:2:3: unknown key 'train.frobnicate' (see 'kiln config --reference' for the keys of train)"},
        {"trian:\n  steps: 5\n", "F:1:1: unknown section 'trian' (did you mean 'train'?)"},
        {"model:\n  num_layers: 2\nwidgets:\n  a: 1\n",
         "F:3:1: unknown section 'widgets' (sections are model, data, train, optim, precision, memory, parallel, log)"},
        {"model:\n  hidden_size: big\n", "F:2:16: model.hidden_size: expected an integer in [1, 1048576], got 'big'"},
        {"model:\n  num_layers: 0\n", "F:2:15: model.num_layers: expected an integer in [1, 1024], got '0'"},
        {"train:\n  steps: 1.5\n", "F:2:10: train.steps: expected an integer in [1, 1000000000000], got '1.5'"},
        {"train:\n  steps: 99999999999999999999\n",
         "F:2:10: train.steps: expected an integer in [1, 1000000000000], got '99999999999999999999'"},
        {"train:\n  steps:\n", "F:2:9: train.steps: expected an integer in [1, 1000000000000], got no value"},
        {"optim:\n  lr: 0\n", "F:2:7: optim.lr: expected a number in (0, 10], got '0'"},
        {"optim:\n  beta2: 1.0\n", "F:2:10: optim.beta2: expected a number in [0, 1), got '1.0'"},
        {"optim:\n  weight_decay: nan\n", "F:2:17: optim.weight_decay: expected a number in [0, 10], got 'nan'"},
        {"model:\n  tie_embeddings: maybe\n", "F:2:19: model.tie_embeddings: expected true or false, got 'maybe'"},
        {"optim:\n  name: adamW\n",
         "F:2:9: optim.name: expected one of adamw|dash|dct_adamw, got 'adamW' (did you mean 'adamw'?)"},
        {"precision:\n  matmul: int8\n", "F:2:11: precision.matmul: expected one of bf16|fp8|nvfp4, got 'int8'"},
        {"memory:\n  device_limit: lots\n",
         "F:2:17: memory.device_limit: expected a size such as 16GiB or 512MiB in [0, 1024TiB], got 'lots'"},
        {"train:\n  name: ../evil\n",
         "F:2:9: train.name: expected a name of 1 to 63 letters, digits, '.', '_' or '-', got '../evil'"},
        {"model:\n  hf_dir: " + long_path + "\n",
         "F:2:11: model.hf_dir: expected a path of at most 1023 bytes once resolved, got 'ppppp"},
        {"data:\n  train: a.bin,,b.bin\n",
         "F:2:10: data.train: expected comma-separated paths or globs, at most 1023 bytes in all once resolved, got "
         "'a.bin,,b.bin' (an entry of the list is empty)"},
        {"model:\n  hidden_size: [1, 2]\n", "F:2:16: model.hidden_size: expected an integer in [1, 1048576], got a sequence"},
        {"optim:\n  lr:\n    value: 1\n", "F:3:5: optim.lr: expected a number in (0, 10], got a mapping"},
        {"train:\n  steps: 5\n  batch_size: 2\n  steps: 6\n", "F:4:3: duplicate key 'train.steps' (first set at line 2)"},
        {"train:\n  steps: 5\nmodel:\n  num_layers: 2\ntrain:\n  grad_accum: 2\n",
         "F:5:1: duplicate section 'train' (first at line 1)"},
        {"steps: 5\n", "F:1:1: key 'steps' is outside any section (did you mean 'train.steps'?)"},
        {"seed: 5\n",
         "F:1:1: key 'seed' is outside any section (did you mean 'model.seed' or 'data.seed' or 'train.seed'?)"},
        {"optim.lr: 0.1\n", "F:1:1: 'optim.lr' must be written as 'lr:' inside the 'optim:' section"},
        {"train: 5\n", "F:1:8: section 'train' must hold 'key: value' lines, got a scalar"},
        {"- model\n- train\n", "F:1:1: expected a mapping of sections (model:, data:, train:, ...), got a sequence"},
        {"train:\n  [a, b]: 1\n", "F:2:3: expected a key name, got a sequence"},
        {"train:\n\tsteps: 5\n", "F:2:1: YAML syntax error: found character that cannot start any token"},
        {"train:\n  steps: 5\n   bad: 3\n", "F:3:7: YAML syntax error: mapping values are not allowed in this context"},
        {"train:\n  name: \"tiny\n",
         "F:3:1: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar at line 2, column 9)"},
        {"train:\n  steps: *count\n", "F:2:10: YAML syntax error: found undefined alias"},
        {"train:\n  name: \xff\n", "F:2:9: YAML syntax error: invalid leading UTF-8 octet"},
        {"", "F:1:1: the config is empty (expected sections such as 'model:' and 'train:')"},
        {"# nothing but a comment\n", "F:1:1: the config is empty"},
        {"train:\n  steps: 5\n---\ntrain:\n  steps: 6\n", "F:4:1: a second YAML document; a config is one document"},
    };
    std::string dir = kltest::make_temp_dir("config_errors");
    int n = 0;
    for (const Case &t : cases) {
        std::string path = dir + "/bad" + std::to_string(n++) + ".yaml";
        kltest::write_file(path, t.yaml);
        std::string want = t.msg;
        if (want.rfind("F:", 0) == 0) want = path + want.substr(1);
        kl_config c;
        kl_config_defaults(&c);
        ASSERT_EQ(kl_config_set(&c, "train.steps=77"), KL_OK);
        kl_config before = c;
        EXPECT_EQ(kl_config_load(&c, path.c_str()), KL_ERR_CONFIG) << t.yaml;
        std::string got = kl_last_error();
        EXPECT_EQ(got.rfind(want, 0), 0u) << "config:\n" << t.yaml << "\nwant: " << want << "\ngot:  " << got;
        EXPECT_EQ(0, memcmp(&before, &c, sizeof c)) << "a failed load changed the config: " << t.yaml;
    }
    EXPECT_GE(n, 20);

    kl_config c;
    EXPECT_EQ(kl_config_load(&c, (dir + "/missing.yaml").c_str()), KL_ERR_CONFIG);
    EXPECT_EQ(std::string(kl_last_error()), dir + "/missing.yaml: cannot open the config: No such file or directory");
    EXPECT_EQ(kl_config_load(&c, dir.c_str()), KL_ERR_CONFIG);
    EXPECT_EQ(std::string(kl_last_error()), dir + ": not a file (expected a YAML config)");
}

TEST(ConfigCli, PrintsTheResolvedConfigOrTheErrorWithExitStatus2) {
    std::string dir = kltest::make_temp_dir("config_cli");
    ASSERT_EQ(dir[0], '/') << "the test expects an absolute temporary folder";
    kltest::write_file(dir + "/good.yaml",
                       "model:\n  num_layers: 3\ndata:\n  train: tok/*.bin\ntrain:\n  name: cli\n  steps: 7\n");
    std::string out, err;
    int rc = run_kiln_split("config good.yaml optim.lr=0.002 train.steps=9", dir, &out, &err);
    EXPECT_EQ(rc, 0) << err;
    EXPECT_EQ(err, "");
    EXPECT_NE(out.find("  steps: 9 "), std::string::npos) << out;
    EXPECT_NE(out.find("  train: \"" + dir + "/tok/*.bin\""), std::string::npos) << out;
    // The printed config is itself a config that resolves to the same values.
    kltest::write_file(dir + "/printed.yaml", out);
    kl_config printed, direct;
    ASSERT_EQ(kl_config_load(&printed, (dir + "/printed.yaml").c_str()), KL_OK) << kl_last_error();
    std::string o1 = "optim.lr=0.002", o2 = "train.steps=9";
    char *ov[] = {&o1[0], &o2[0]};
    ASSERT_EQ(kl_config_parse_args(&direct, (dir + "/good.yaml").c_str(), 2, ov), KL_OK) << kl_last_error();
    expect_same_values(printed, direct);
    EXPECT_EQ(printed.model.num_layers, 3);
    EXPECT_EQ(printed.optim.lr, 0.002);

    kltest::write_file(dir + "/bad.yaml", "train:\n  stpes: 5\n");
    rc = run_kiln_split("config bad.yaml", dir, &out, &err);
    EXPECT_EQ(rc, 2);
    EXPECT_EQ(out, "");
    EXPECT_EQ(err, "kiln config: bad.yaml:2:3: unknown key 'train.stpes' (did you mean 'train.steps'?)\n");

    rc = run_kiln_split("config good.yaml optim.lr=abc", dir, &out, &err);
    EXPECT_EQ(rc, 2);
    EXPECT_EQ(out, "");
    EXPECT_EQ(err, "kiln config: command line: optim.lr=abc: expected a number in (0, 10], got 'abc'\n");

    rc = run_kiln_split("config good.yaml model.num_heads=3", dir, &out, &err);  // cross-key rule
    EXPECT_EQ(rc, 2);
    EXPECT_EQ(err, "kiln config: good.yaml with the overrides: model.num_heads (3) must divide model.hidden_size (64) "
                   "unless model.head_dim is set\n");

    std::string both;
    EXPECT_EQ(kltest::run_kiln("config", &both, dir), 2);  // no config given
    EXPECT_NE(both.find("usage: kiln config CONFIG.yaml"), std::string::npos) << both;
    EXPECT_EQ(kltest::run_kiln("config --help", &both, dir), 0);
    EXPECT_NE(both.find("--reference"), std::string::npos) << both;
    EXPECT_EQ(kltest::run_kiln("config missing.yaml", &both, dir), 2);
    EXPECT_NE(both.find("kiln config: missing.yaml: cannot open the config"), std::string::npos) << both;
}

TEST(ConfigCli, ReferenceListsEveryKeyWithTypeDefaultAndMeaning) {
    std::string dir = kltest::make_temp_dir("config_reference");
    std::string out, err;
    ASSERT_EQ(run_kiln_split("config --reference", dir, &out, &err), 0) << err;
    size_t ns = 0;
    const kl_section *s = kl_config_sections(&ns);
    for (size_t i = 0; i < ns; i++)
        EXPECT_NE(out.find(std::string("\n### ") + s[i].name + "\n"), std::string::npos) << s[i].name;
    static const char *types[] = {"int", "float", "bool", "name", "enum", "path", "paths", "bytes"};
    for (const kl_key *k : all_keys()) {
        std::string row = "| `" + full_name(k) + "` | " + types[k->type] + " | " +
                          (k->def[0] ? "`" + std::string(k->def) + "`" : std::string("(unset)")) + " | ";
        size_t at = out.find(row);
        ASSERT_NE(at, std::string::npos) << "no row for " << full_name(k) << " (want '" << row << "')";
        std::string line = out.substr(at, out.find('\n', at) - at);
        EXPECT_NE(line.find(k->help), std::string::npos) << line;
        if (k->type == KL_KEY_ENUM) {
            for (auto &ch : choices_of(k)) EXPECT_NE(line.find("`" + ch + "`"), std::string::npos) << line;
        }
    }
}
