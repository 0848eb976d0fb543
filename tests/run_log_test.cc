/* run_log_test.cc — every line the run log writes parses as JSON (checked with cJSON, an independent
 * parser), hostile strings survive byte for byte, and NaN/Inf become null and are named. */
#include <gtest/gtest.h>

#include <cjson/cJSON.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
#include "run_log.h"
}

static std::vector<cJSON *> parse_lines(const std::string &text) {
    std::vector<cJSON *> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        cJSON *j = cJSON_Parse(line.c_str());
        EXPECT_NE(j, nullptr) << "not JSON: " << line;
        if (j) out.push_back(j);
    }
    return out;
}

TEST(RunLog, HostileStringsAndNonFiniteNumbersStayValidJson) {
    std::string dir = kltest::make_temp_dir("runlog");
    std::string path = dir + "/metrics.jsonl";
    kl_runlog *l = nullptr;
    ASSERT_EQ(kl_runlog_open(&l, path.c_str(), 0, nullptr), KL_OK) << kl_last_error();
    kl_step_record r = {};
    r.step = 7;
    r.total_steps = 100;
    r.loss = NAN;
    r.grad_norm = INFINITY;
    r.lr = 3e-4;
    r.tokens_per_s = 1234.5;
    r.mfu = NAN;
    r.mem_bytes = NAN;
    kl_runlog_step(l, &r);
    const std::string hostile = "quote\" backslash\\ newline\n tab\t bell\x07 del\x7f \xc3\xa9 end";
    kl_runlog_event(l, "note", hostile.c_str());
    kl_runlog_eval(l, 7, -INFINITY);
    kl_runlog_close(l);

    auto lines = parse_lines(kltest::read_file(path));
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_TRUE(cJSON_IsNull(cJSON_GetObjectItem(lines[0], "loss")));
    EXPECT_TRUE(cJSON_IsNull(cJSON_GetObjectItem(lines[0], "grad_norm")));
    EXPECT_DOUBLE_EQ(cJSON_GetObjectItem(lines[0], "lr")->valuedouble, 3e-4);
    cJSON *bad = cJSON_GetObjectItem(lines[0], "nonfinite");
    ASSERT_TRUE(cJSON_IsArray(bad));
    EXPECT_EQ(cJSON_GetArraySize(bad), 2);
    EXPECT_STREQ(cJSON_GetArrayItem(bad, 0)->valuestring, "loss");
    EXPECT_EQ(cJSON_GetObjectItem(lines[0], "mfu"), nullptr) << "unknown MFU must be left out, not null";
    EXPECT_EQ(std::string(cJSON_GetObjectItem(lines[1], "message")->valuestring), hostile);
    EXPECT_TRUE(cJSON_IsNull(cJSON_GetObjectItem(lines[2], "loss")));
    for (auto *j : lines) cJSON_Delete(j);
}

TEST(RunLog, AppendKeepsEarlierLines) {
    std::string path = kltest::make_temp_dir("runlog") + "/m.jsonl";
    for (int pass = 0; pass < 2; pass++) {
        kl_runlog *l = nullptr;
        ASSERT_EQ(kl_runlog_open(&l, path.c_str(), pass, nullptr), KL_OK);
        kl_runlog_eval(l, pass, 1.5);
        kl_runlog_close(l);
    }
    auto lines = parse_lines(kltest::read_file(path));
    EXPECT_EQ(lines.size(), 2u);
    for (auto *j : lines) cJSON_Delete(j);
    kl_runlog *l = nullptr;
    EXPECT_EQ(kl_runlog_open(&l, "/nonexistent-dir/x/m.jsonl", 0, nullptr), KL_ERR_IO);
    EXPECT_NE(std::string(kl_last_error()).find("/nonexistent-dir/x/m.jsonl"), std::string::npos);
}

TEST(RunLog, DurationsReadLikeAClock) {
    char b[32];
    EXPECT_STREQ(kl_format_duration(12.4, b, sizeof b), "12s");
    EXPECT_STREQ(kl_format_duration(185, b, sizeof b), "3m05s");
    EXPECT_STREQ(kl_format_duration(3720, b, sizeof b), "1h02m");
    EXPECT_STREQ(kl_format_duration(NAN, b, sizeof b), "?");
}
