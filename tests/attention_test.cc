/* attention_test.cc — the CPU causal GQA attention (kernels/attention.h): forward and lse against a naive
 * full-softmax implementation written here (GQA, MHA, MQA), causality and batch independence, stability
 * for large scores, backward (dqkv overwrite) against finite differences, FP32 vs FP64. */
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "ops_gradcheck.h"

extern "C" {
#include "attention.h"
}

namespace {
const int B = 2, T = 5, HS = 10;
struct Heads { int NH, NKV; };
const Heads kConfigs[] = {{6, 2}, {4, 4}, {4, 1}};  // GQA (3 per group), MHA, MQA

size_t row(const Heads &c) { return (size_t)(c.NH + 2 * c.NKV) * HS; }

/* The textbook computation: the full (T,T) score matrix, -inf above the diagonal, softmax per row, times V. */
void naive_attention(std::vector<double> &out, std::vector<double> &lse, const std::vector<double> &qkv,
                     const Heads &c, int t_len) {
    const size_t R = (size_t)(c.NH + 2 * c.NKV) * HS;
    out.assign((size_t)B * t_len * c.NH * HS, 0.0);
    lse.assign((size_t)B * c.NH * t_len, 0.0);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < c.NH; h++) {
            const int kvh = h / (c.NH / c.NKV);
            std::vector<double> S((size_t)t_len * t_len);
            for (int i = 0; i < t_len; i++)
                for (int j = 0; j < t_len; j++) {
                    double s = 0;
                    for (int d = 0; d < HS; d++)
                        s += qkv[((size_t)b * t_len + i) * R + (size_t)h * HS + d] *
                             qkv[((size_t)b * t_len + j) * R + (size_t)(c.NH + kvh) * HS + d];
                    S[(size_t)i * t_len + j] = j <= i ? s / std::sqrt((double)HS) : -INFINITY;
                }
            for (int i = 0; i < t_len; i++) {
                double m = -INFINITY, z = 0;
                for (int j = 0; j < t_len; j++) m = std::fmax(m, S[(size_t)i * t_len + j]);
                for (int j = 0; j < t_len; j++) z += std::exp(S[(size_t)i * t_len + j] - m);
                lse[((size_t)b * c.NH + h) * t_len + i] = m + std::log(z);
                for (int j = 0; j < t_len; j++) {
                    double p = std::exp(S[(size_t)i * t_len + j] - m) / z;
                    for (int d = 0; d < HS; d++)
                        out[((size_t)b * t_len + i) * c.NH * HS + (size_t)h * HS + d] +=
                            p * qkv[((size_t)b * t_len + j) * R + (size_t)(c.NH + c.NKV + kvh) * HS + d];
                }
            }
        }
}
}  // namespace

TEST(AttentionForward, MatchesNaiveFullSoftmax) {
    uint64_t seed = kltest::fresh_seed("AttentionForward.MatchesNaiveFullSoftmax");
    for (const Heads &c : kConfigs) {
        for (int t_len : {1, T}) {
            auto qkv = opstest::normal64((size_t)B * t_len * row(c), seed++, 1.5);
            std::vector<double> out((size_t)B * t_len * c.NH * HS, NAN), lse((size_t)B * c.NH * t_len, NAN);
            ASSERT_EQ(kl_attention_forward_cpu_f64(out.data(), lse.data(), qkv.data(), B, t_len, c.NH, c.NKV, HS), KL_OK);
            std::vector<double> want_out, want_lse;
            naive_attention(want_out, want_lse, qkv, c, t_len);
            std::string rep;
            // Same math, different summation order, <= T terms of O(1): a few FP64 ulps.
            EXPECT_TRUE(kltest::all_close(out.data(), want_out.data(), out.size(), 1e-12, 1e-12, &rep))
                << "NH=" << c.NH << " NKV=" << c.NKV << " T=" << t_len << " out: " << rep;
            EXPECT_TRUE(kltest::all_close(lse.data(), want_lse.data(), lse.size(), 1e-12, 1e-12, &rep))
                << "NH=" << c.NH << " NKV=" << c.NKV << " T=" << t_len << " lse: " << rep;
        }
    }
}

TEST(AttentionForward, IsCausalAndBatchIndependent) {
    uint64_t seed = kltest::fresh_seed("AttentionForward.IsCausalAndBatchIndependent");
    const Heads c = kConfigs[0];
    auto qkv = kltest::random_normal((size_t)B * T * row(c), 1.0f, seed);
    std::vector<float> out1((size_t)B * T * c.NH * HS), lse1((size_t)B * c.NH * T), out2(out1.size()), lse2(lse1.size());
    ASSERT_EQ(kl_attention_forward_cpu(out1.data(), lse1.data(), qkv.data(), B, T, c.NH, c.NKV, HS), KL_OK);
    // Change every q, k, v of the last position of sequence 0.
    for (size_t i = 0; i < row(c); i++) qkv[(size_t)(T - 1) * row(c) + i] += 1.0f;
    ASSERT_EQ(kl_attention_forward_cpu(out2.data(), lse2.data(), qkv.data(), B, T, c.NH, c.NKV, HS), KL_OK);
    const size_t orow = (size_t)c.NH * HS;
    for (size_t i = 0; i < (size_t)(T - 1) * orow; i++) ASSERT_EQ(out1[i], out2[i]) << "earlier position changed";
    for (size_t i = (size_t)T * orow; i < out1.size(); i++) ASSERT_EQ(out1[i], out2[i]) << "other sequence changed";
    bool last_changed = false;
    for (size_t i = (size_t)(T - 1) * orow; i < (size_t)T * orow; i++) last_changed |= out1[i] != out2[i];
    EXPECT_TRUE(last_changed) << "the perturbed position must see its own change";
}

TEST(AttentionForward, StableForLargeScores) {
    uint64_t seed = kltest::fresh_seed("AttentionForward.StableForLargeScores");
    const Heads c = kConfigs[0];
    // Scores of order 1e3..1e4: exp without max subtraction would overflow even in FP64 (> 709).
    auto qkv = opstest::normal64((size_t)B * T * row(c), seed, 30.0);
    std::vector<double> out((size_t)B * T * c.NH * HS), lse((size_t)B * c.NH * T);
    ASSERT_EQ(kl_attention_forward_cpu_f64(out.data(), lse.data(), qkv.data(), B, T, c.NH, c.NKV, HS), KL_OK);
    std::vector<double> want_out, want_lse;
    naive_attention(want_out, want_lse, qkv, c, T);
    std::string rep;
    // Outputs O(30), lse O(1e4): relative 1e-12 with an absolute floor scaled to the data.
    EXPECT_TRUE(kltest::all_close(out.data(), want_out.data(), out.size(), 1e-12, 1e-10, &rep)) << rep;
    EXPECT_TRUE(kltest::all_close(lse.data(), want_lse.data(), lse.size(), 1e-12, 1e-10, &rep)) << rep;
}

TEST(AttentionForward, RejectsHeadsNotDivisibleByKvHeads) {
    std::vector<float> qkv((size_t)(4 + 2 * 3) * HS), out((size_t)4 * HS), lse(4);
    EXPECT_EQ(kl_attention_forward_cpu(out.data(), lse.data(), qkv.data(), 1, 1, 4, 3, HS), KL_ERR_INVALID);
    EXPECT_NE(strstr(kl_last_error(), "multiple of NKV"), nullptr) << kl_last_error();
}

TEST(AttentionBackward, MatchesFiniteDifferences) {
    uint64_t seed = kltest::fresh_seed("AttentionBackward.MatchesFiniteDifferences");
    for (const Heads &c : kConfigs) {
        auto qkv = opstest::normal64((size_t)B * T * row(c), seed++);
        auto r = opstest::normal64((size_t)B * T * c.NH * HS, seed++);
        std::vector<double> out(r.size()), lse((size_t)B * c.NH * T);
        auto loss = [&] {
            EXPECT_EQ(kl_attention_forward_cpu_f64(out.data(), lse.data(), qkv.data(), B, T, c.NH, c.NKV, HS), KL_OK);
            return opstest::dot(r, out);
        };
        loss();
        std::vector<double> dqkv(qkv.size(), NAN);  // overwrite: every element must be written
        ASSERT_EQ(kl_attention_backward_cpu_f64(dqkv.data(), r.data(), out.data(), lse.data(), qkv.data(), B, T, c.NH,
                                                c.NKV, HS), KL_OK);
        std::string what = "dqkv NH=" + std::to_string(c.NH) + " NKV=" + std::to_string(c.NKV);
        EXPECT_TRUE(opstest::MatchesFiniteDifferences(what.c_str(), qkv, dqkv, loss));
    }
}

TEST(Attention, Fp32AgreesWithFp64) {
    uint64_t seed = kltest::fresh_seed("Attention.Fp32AgreesWithFp64");
    const Heads c = kConfigs[0];
    auto qkv = kltest::random_normal((size_t)B * T * row(c), 1.5f, seed);
    auto g = kltest::random_normal((size_t)B * T * c.NH * HS, 1.0f, seed + 1);
    std::vector<float> out(g.size()), lse((size_t)B * c.NH * T), dqkv(qkv.size());
    ASSERT_EQ(kl_attention_forward_cpu(out.data(), lse.data(), qkv.data(), B, T, c.NH, c.NKV, HS), KL_OK);
    ASSERT_EQ(kl_attention_backward_cpu(dqkv.data(), g.data(), out.data(), lse.data(), qkv.data(), B, T, c.NH, c.NKV, HS),
              KL_OK);
    auto qkvd = kltest::to_double(qkv), gd = kltest::to_double(g);
    std::vector<double> outd(g.size()), lsed(lse.size()), dqkvd(qkv.size());
    ASSERT_EQ(kl_attention_forward_cpu_f64(outd.data(), lsed.data(), qkvd.data(), B, T, c.NH, c.NKV, HS), KL_OK);
    ASSERT_EQ(kl_attention_backward_cpu_f64(dqkvd.data(), gd.data(), outd.data(), lsed.data(), qkvd.data(), B, T, c.NH,
                                            c.NKV, HS), KL_OK);
    // The FP32 forward computes in double and rounds once (2^-24 relative). Its backward reads the rounded
    // lse and out: p = exp(s - lse) moves by |lse| * 2^-24 ~ 1e-7 relative, and D by ~1e-7 of its terms,
    // so dqkv is within ~1e-6 of the data's scale; 1e-5 relative / 1e-6 * max absolute leaves margin.
    EXPECT_TRUE(opstest::Fp32Close("out", out, outd, 1e-6, 1e-7 * opstest::max_abs(outd)));
    EXPECT_TRUE(opstest::Fp32Close("lse", lse, lsed, 1e-6, 1e-7 * opstest::max_abs(lsed)));
    EXPECT_TRUE(opstest::Fp32Close("dqkv", dqkv, dqkvd, 1e-5, 1e-6 * opstest::max_abs(dqkvd)));
}
