/* hf_config_test.cc — Hugging Face config.json <-> kl_model_shape (src/hf_config.c): random shapes come back
 * field for field through the text kiln writes (what `kiln export` saves and `model.hf_dir` reads; the
 * pytest hf_roundtrip_test checks that text against transformers), and every refusal names the file and
 * the field: unsupported architectures and features, missing or malformed fields, values outside the
 * bounds of the matching model.* config key. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"

extern "C" {
#include "hf_config.h"
#include "model.h"
}

namespace {

/* A random valid shape of every architecture, rope kind and tying, with F / NKV / HS filled in. */
kl_model_shape random_shape(std::mt19937_64 &rng) {
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    kl_model_shape s;
    memset(&s, 0, sizeof s);
    s.arch = (kl_arch)pick(0, 3);
    s.NKV = pick(1, 4);
    s.NH = s.NKV * pick(1, 4);
    s.HS = 2 * pick(1, 64);
    s.C = pick(1, 4096);
    s.F = pick(1, 20000);
    s.V = pick(1, 300000);
    s.L = pick(1, 80);
    s.max_T = pick(1, 1 << 20);
    s.qkv_bias = s.arch == KL_ARCH_QWEN2;
    s.qk_norm = s.arch == KL_ARCH_QWEN3;
    s.tie_embeddings = pick(0, 1);
    s.rope_theta = std::uniform_real_distribution<double>(1.0, 1e7)(rng);
    s.norm_eps = std::uniform_real_distribution<float>(1e-8f, 1e-3f)(rng);
    if (pick(0, 1)) {
        s.rope_scaling.type = 1;
        s.rope_scaling.factor = std::uniform_real_distribution<double>(0.5, 64)(rng);
        s.rope_scaling.low_freq_factor = std::uniform_real_distribution<double>(0.1, 4)(rng);
        s.rope_scaling.high_freq_factor =
            s.rope_scaling.low_freq_factor + std::uniform_real_distribution<double>(0.1, 8)(rng);
        s.rope_scaling.original_max_pos = pick(1, 1 << 17);
    }
    return s;
}

/* kl_hf_config_parse's status and message for `text`. */
kl_status parse(const std::string &text, std::string *msg, kl_model_shape *s = nullptr) {
    kl_model_shape tmp;
    kl_status st = kl_hf_config_parse(text.c_str(), "cfg/config.json", s ? s : &tmp);
    *msg = st == KL_OK ? "" : kl_last_error();
    return st;
}

/* A small valid llama config.json with some fields replaced or added ("key": raw JSON value). A JSON object
 * with a key twice is not what transformers writes (cJSON would take the first), so fields are replaced. */
std::string with(const std::vector<std::pair<std::string, std::string>> &changes = {}) {
    std::vector<std::pair<std::string, std::string>> f = {
        {"model_type", "\"llama\""}, {"vocab_size", "512"}, {"hidden_size", "64"}, {"intermediate_size", "176"},
        {"num_hidden_layers", "2"}, {"num_attention_heads", "4"}, {"num_key_value_heads", "2"},
        {"max_position_embeddings", "256"}, {"rms_norm_eps", "1e-5"}, {"rope_theta", "10000.0"}};
    for (const auto &c : changes) {
        auto it = std::find_if(f.begin(), f.end(), [&](const auto &x) { return x.first == c.first; });
        if (it != f.end()) it->second = c.second;
        else f.push_back(c);
    }
    std::string t = "{";
    for (const auto &x : f) t += (t.size() > 1 ? ", \"" : "\"") + x.first + "\": " + x.second;
    return t + "}";
}

}  // namespace

TEST(HfConfig, RandomShapesComeBackFieldForFieldThroughTheTextKilnWrites) {
    std::mt19937_64 rng(kltest::fresh_seed("HfConfig.RandomShapesComeBackFieldForFieldThroughTheTextKilnWrites"));
    for (int i = 0; i < 200; i++) {
        const kl_model_shape s = random_shape(rng);
        char *text = kl_hf_config_json(&s);
        ASSERT_NE(text, nullptr);
        kl_model_shape back;
        std::string msg;
        ASSERT_EQ(parse(text, &msg, &back), KL_OK) << msg << "\n" << text;
        EXPECT_EQ(back.arch, s.arch) << text;
        EXPECT_EQ(back.V, s.V);
        EXPECT_EQ(back.C, s.C);
        EXPECT_EQ(back.F, s.F);
        EXPECT_EQ(back.L, s.L);
        EXPECT_EQ(back.NH, s.NH);
        EXPECT_EQ(back.NKV, s.NKV);
        EXPECT_EQ(back.HS, s.HS);
        EXPECT_EQ(back.max_T, s.max_T);
        EXPECT_EQ(back.qkv_bias, s.qkv_bias);
        EXPECT_EQ(back.qk_norm, s.qk_norm);
        EXPECT_EQ(back.tie_embeddings, s.tie_embeddings);
        EXPECT_EQ(back.rope_theta, s.rope_theta) << text;
        EXPECT_EQ(back.norm_eps, s.norm_eps) << text;
        EXPECT_EQ(back.rope_scaling.type, s.rope_scaling.type);
        if (s.rope_scaling.type == 1) {
            EXPECT_EQ(back.rope_scaling.factor, s.rope_scaling.factor) << text;
            EXPECT_EQ(back.rope_scaling.low_freq_factor, s.rope_scaling.low_freq_factor) << text;
            EXPECT_EQ(back.rope_scaling.high_freq_factor, s.rope_scaling.high_freq_factor) << text;
            EXPECT_EQ(back.rope_scaling.original_max_pos, s.rope_scaling.original_max_pos);
        }
        free(text);
    }
}

TEST(HfConfig, DefaultsAndDerivedSizesFollowTransformers) {
    kl_model_shape s;
    std::string msg;
    /* no num_key_value_heads, head_dim, rope or tie: NKV = NH, HS = C / NH, tied (transformers' default) */
    ASSERT_EQ(parse(R"({"model_type": "mistral", "vocab_size": 100, "hidden_size": 96, "intermediate_size": 200,
                        "num_hidden_layers": 3, "num_attention_heads": 6})", &msg, &s), KL_OK) << msg;
    EXPECT_EQ(s.NKV, 6);
    EXPECT_EQ(s.HS, 16);
    EXPECT_EQ(s.max_T, 2048);
    EXPECT_EQ(s.tie_embeddings, 1);
    EXPECT_EQ(s.rope_theta, 10000.0);
    EXPECT_EQ(s.rope_scaling.type, 0);
    EXPECT_FLOAT_EQ(s.norm_eps, 1e-6f);
    /* transformers v4's rope_scaling with "type", and Qwen2's biases */
    ASSERT_EQ(parse(with({{"model_type", R"("qwen2")"}, {"rope_scaling", R"({"type": "llama3", "factor": 4.0})"}}),
                    &msg, &s),
              KL_OK)
        << msg;
    EXPECT_EQ(s.qkv_bias, 1);
    EXPECT_EQ(s.rope_scaling.type, 1);
    EXPECT_EQ(s.rope_scaling.factor, 4.0);
    EXPECT_EQ(s.rope_scaling.high_freq_factor, 4.0);
    EXPECT_EQ(s.rope_scaling.original_max_pos, 8192);
}

TEST(HfConfig, RefusalsNameTheFileAndTheField) {
    const struct {
        std::string text, want;
    } cases[] = {
        {"[1, 2]", "not a JSON object"},
        {"{\"model_type\": \"llama\",", "not valid JSON"},
        {R"({"vocab_size": 5})", "missing 'model_type'"},
        {with({{"model_type", R"("gemma")"}}), "model_type 'gemma' is not supported"},
        {with({{"num_local_experts", "8"}}), "'num_local_experts' = 8: mixture-of-experts"},
        {with({{"sliding_window", "4096"}}), "sliding-window attention is not supported"},
        {with({{"attention_bias", "true"}}), "'attention_bias' = true is not supported for llama"},
        {with({{"mlp_bias", "true"}}), "'mlp_bias' = true is not supported"},
        {with({{"hidden_act", R"("gelu")"}}), "'hidden_act' must be \"silu\""},
        {with({{"rope_parameters", R"({"rope_type": "yarn"})"}}), "rope type 'yarn' is not supported"},
        {R"({"model_type": "llama", "hidden_size": 64})", "missing required field 'vocab_size'"},
        {with({{"num_hidden_layers", "2.5"}}), "field 'num_hidden_layers' must be a non-negative integer"},
        {with({{"num_attention_heads", "-4"}}), "field 'num_attention_heads' must be a non-negative integer"},
        {with({{"rope_theta", R"("big")"}}), "field 'rope_theta' must be a number"},
        {with({{"rms_norm_eps", "1e300"}}), "field 'rms_norm_eps' must be in (0, 1] (got 1e+300)"},
        {with({{"rms_norm_eps", "0"}}), "field 'rms_norm_eps' must be in (0, 1]"},
        /* the bounds of the model.* config keys (config_keys.c) */
        {with({{"hidden_size", "2000000"}}), "model: hidden_size must be in [1, 1048576] (got 2000000)"},
        {with({{"vocab_size", "0"}}), "model: vocab_size must be in [1, 4194304] (got 0)"},
        {with({{"num_hidden_layers", "5000"}}), "model: num_layers must be in [1, 1024] (got 5000)"},
        {with({{"rope_theta", "0"}}), "model: rope_theta must be in (0, 1000000000000] (got 0)"},
        {with({{"rope_parameters", R"({"rope_type": "llama3", "factor": 0})"}}), "model: rope_factor must be in (0, "},
        {with({{"rope_parameters", R"({"rope_type": "llama3", "low_freq_factor": 4, "high_freq_factor": 4})"}}),
         "high_freq_factor (4) above low_freq_factor (4)"},
        {with({{"num_key_value_heads", "3"}}), "model: num_kv_heads (3) must divide num_heads (4)"},
        {with({{"head_dim", "7"}}), "model: head_dim must be even for RoPE (got 7)"},
        {with({{"hidden_size", "60000"}, {"num_key_value_heads", "4"}}),
         "model: head_dim = hidden_size / num_heads = 60000 / 4 = 15000 is above 4096"},
    };
    for (const auto &c : cases) {
        std::string msg;
        EXPECT_NE(parse(c.text, &msg), KL_OK) << c.text;
        EXPECT_EQ(msg.rfind("cfg/config.json", 0), 0u) << msg;
        EXPECT_NE(msg.find(c.want), std::string::npos) << "want '" << c.want << "' in: " << msg;
    }
    std::string msg;
    EXPECT_EQ(parse(with(), &msg), KL_OK) << msg; /* the base text itself is fine */
}
