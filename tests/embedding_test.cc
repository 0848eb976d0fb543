/* embedding_test.cc — the CPU token embedding (kernels/embedding.h): rows gathered exactly, bad tokens
 * rejected, the backward's dwte (+=, repeated tokens) against finite differences, FP32 vs FP64. */
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "ops_gradcheck.h"

extern "C" {
#include "embedding.h"
}

namespace {

/* N > V, so by pigeonhole some token repeats and the backward must add several rows into one. */
const int N = 15, V = 11, C = 7;

std::vector<int32_t> random_tokens(int n, int v, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::vector<int32_t> t(n);
    for (auto &x : t) x = (int32_t)(g() % (uint64_t)v);
    return t;
}

}  // namespace

TEST(EmbeddingForward, GathersRowsOfTheTable) {
    uint64_t seed = kltest::fresh_seed("EmbeddingForward.GathersRowsOfTheTable");
    auto wte = kltest::random_normal((size_t)V * C, 1.0f, seed);
    auto tokens = random_tokens(N, V, seed + 1);
    std::vector<float> out((size_t)N * C, NAN);
    ASSERT_EQ(kl_embedding_forward_cpu(out.data(), tokens.data(), wte.data(), N, V, C), KL_OK);
    for (int n = 0; n < N; n++)  // a copy, so equality is exact
        EXPECT_EQ(0, memcmp(&out[(size_t)n * C], &wte[(size_t)tokens[n] * C], sizeof(float) * C)) << "row " << n;
}

TEST(EmbeddingForward, RejectsTokenOutsideVocabulary) {
    std::vector<float> wte((size_t)V * C, 1.0f), out((size_t)3 * C);
    std::vector<int32_t> tokens = {0, V, 1};
    EXPECT_EQ(kl_embedding_forward_cpu(out.data(), tokens.data(), wte.data(), 3, V, C), KL_ERR_INVALID);
    EXPECT_NE(strstr(kl_last_error(), "position 1"), nullptr) << kl_last_error();
    tokens[1] = -1;
    EXPECT_EQ(kl_embedding_forward_cpu(out.data(), tokens.data(), wte.data(), 3, V, C), KL_ERR_INVALID);
}

TEST(EmbeddingBackward, MatchesFiniteDifferences) {
    uint64_t seed = kltest::fresh_seed("EmbeddingBackward.MatchesFiniteDifferences");
    auto wte = opstest::normal64((size_t)V * C, seed);
    auto r = opstest::normal64((size_t)N * C, seed + 1);  // probe L = sum(r * out)
    auto tokens = random_tokens(N, V, seed + 2);
    std::vector<double> out((size_t)N * C);
    auto loss = [&] {
        EXPECT_EQ(kl_embedding_forward_cpu_f64(out.data(), tokens.data(), wte.data(), N, V, C), KL_OK);
        return opstest::dot(r, out);
    };
    // dwte accumulates: start from random values and take the difference.
    auto prefill = opstest::normal64((size_t)V * C, seed + 3);
    std::vector<double> dwte = prefill;
    kl_embedding_backward_cpu_f64(dwte.data(), r.data(), tokens.data(), N, C);
    for (size_t i = 0; i < dwte.size(); i++) dwte[i] -= prefill[i];
    EXPECT_TRUE(opstest::MatchesFiniteDifferences("dwte", wte, dwte, loss));
}

TEST(EmbeddingBackward, Fp32AgreesWithFp64AndIsRepeatable) {
    uint64_t seed = kltest::fresh_seed("EmbeddingBackward.Fp32AgreesWithFp64AndIsRepeatable");
    auto dout = kltest::random_normal((size_t)N * C, 1.0f, seed);
    auto prefill = kltest::random_normal((size_t)V * C, 1.0f, seed + 1);
    auto tokens = random_tokens(N, V, seed + 2);
    std::vector<float> a = prefill, b = prefill;
    kl_embedding_backward_cpu(a.data(), dout.data(), tokens.data(), N, C);
    kl_embedding_backward_cpu(b.data(), dout.data(), tokens.data(), N, C);
    EXPECT_EQ(0, memcmp(a.data(), b.data(), sizeof(float) * a.size())) << "fixed summation order";
    std::vector<double> d = kltest::to_double(prefill), dd = kltest::to_double(dout);
    kl_embedding_backward_cpu_f64(d.data(), dd.data(), tokens.data(), N, C);
    // FP32 adds at most N+1 O(1) terms per element: error <= N * 2^-24 * max ~ 1e-6; 1e-5 leaves margin.
    EXPECT_TRUE(opstest::Fp32Close("dwte", a, d, 1e-5, 1e-5));
}
