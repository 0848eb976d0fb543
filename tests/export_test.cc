/* export_test.cc — `kiln init` and `kiln export`: the exported folder of a run's last checkpoint is byte
 * for byte the model the run saved, loads back into kiln with the checkpoint's weights, and an existing
 * model is never overwritten without --force; a fine-tune's tokenizer files reach both the run's model folder
 * and the export. (That transformers loads these folders is covered by tests/hf_fixture_test.py in CI and
 * tests/hf_roundtrip_test.py where torch is installed.) */
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "test_util.h"

extern "C" {
#include "model_io.h"
}

static std::string tiny() { return kltest::kiln_source_dir() + "/configs/tiny.yaml"; }

TEST(Export, LastCheckpointEqualsTheSavedModelAndNothingIsOverwritten) {
    std::string d = kltest::make_temp_dir("export"), out;
    ASSERT_EQ(kltest::run_kiln("train '" + tiny() + "' train.steps=6 train.warmup_steps=0 train.ckpt_every=3 "
                               "train.eval_every=0", &out, d), 0) << out;
    ASSERT_EQ(kltest::run_kiln("export runs/tiny/ckpt exported", &out, d), 0) << out;
    EXPECT_NE(out.find("step 6"), std::string::npos) << out;
    std::string saved = kltest::read_file(d + "/runs/tiny/model/model.safetensors");
    EXPECT_FALSE(saved.empty());
    EXPECT_TRUE(saved == kltest::read_file(d + "/exported/model.safetensors"));
    kl_model *m = nullptr;
    ASSERT_EQ(kl_model_load(&m, (d + "/exported").c_str()), KL_OK) << kl_last_error();
    kl_model_free(m);

    EXPECT_EQ(kltest::run_kiln("export runs/tiny/ckpt/step_00000003 exported", &out, d), 2);
    EXPECT_NE(out.find("--force"), std::string::npos) << out;
    EXPECT_TRUE(saved == kltest::read_file(d + "/exported/model.safetensors")) << "a refused export changed files";
    EXPECT_EQ(kltest::run_kiln("export runs/tiny/ckpt/step_00000003 exported --force", &out, d), 0) << out;
    EXPECT_FALSE(saved == kltest::read_file(d + "/exported/model.safetensors"));
    EXPECT_EQ(kltest::run_kiln("export runs/none exported2", &out, d), 2);
}

TEST(Init, WritesALoadableRandomModelOfTheConfigShape) {
    std::string d = kltest::make_temp_dir("init"), out;
    ASSERT_EQ(kltest::run_kiln("init '" + tiny() + "' m model.arch=qwen3 model.head_dim=24", &out, d), 0) << out;
    kl_model *m = nullptr;
    ASSERT_EQ(kl_model_load(&m, (d + "/m").c_str()), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_model_get_shape(m)->arch, KL_ARCH_QWEN3);
    EXPECT_EQ(kl_model_get_shape(m)->HS, 24);
    EXPECT_TRUE(kl_model_get_shape(m)->qk_norm);
    kl_model_free(m);
    EXPECT_EQ(kltest::run_kiln("init '" + tiny() + "' m", &out, d), 2) << out;
}

TEST(Export, FineTuneCarriesTheTokenizerFilesIntoTheRunAndTheExport) {
    std::string d = kltest::make_temp_dir("export_tok"), out;
    ASSERT_EQ(kltest::run_kiln("init '" + tiny() + "' base", &out, d), 0) << out;
    // stand-ins with fresh random content: only their bytes matter here
    std::mt19937_64 rng(kltest::fresh_seed("export tokenizer files"));
    std::string tok = "{\"model\": \"", merges = "#version\n";
    for (int i = 0; i < 4000; i++) tok += (char)('a' + rng() % 26), merges += (char)('a' + rng() % 26);
    tok += "\"}";
    kltest::write_file(d + "/base/tokenizer.json", tok);
    kltest::write_file(d + "/base/merges.txt", merges);
    ASSERT_EQ(kltest::run_kiln("train '" + tiny() + "' model.hf_dir=base train.steps=2 train.warmup_steps=0 "
                               "train.ckpt_every=2 train.eval_every=0", &out, d), 0) << out;
    ASSERT_EQ(kltest::run_kiln("export runs/tiny/ckpt exported", &out, d), 0) << out;
    for (const std::string dir : {"/runs/tiny/model/", "/exported/"}) {
        EXPECT_EQ(kltest::read_file(d + dir + "tokenizer.json"), tok) << dir;
        EXPECT_EQ(kltest::read_file(d + dir + "merges.txt"), merges) << dir;
        EXPECT_TRUE(kltest::read_file(d + dir + "vocab.json").empty()) << dir << ": a file the source lacks";
    }
}
