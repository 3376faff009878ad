// sgemm (oneDNN when built with it) and sgemm_blas (OpenBLAS) against an fp64 evaluation of
// C = alpha op(A) op(B) + beta C on random shapes, every transpose combination and padded
// leading dimensions; the error bound is relative to the sum of the terms' magnitudes. sgemm's
// bits do not depend on the OpenMP thread count; bad arguments are refused.
#include "spush/kernels/sgemm.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <tuple>
#include <vector>

namespace spush::kernels {
namespace {

struct Problem {
  bool ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  std::vector<float> a, b, c;
};

Problem make(bool ta, bool tb, int64_t m, int64_t n, int64_t k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d;
  Problem p{ta, tb, m, n, k, (ta ? m : k) + 3, (tb ? k : n) + 1, n + 2, 0.75f, -0.5f, {}, {}, {}};
  p.a.resize(static_cast<size_t>((ta ? k : m) * p.lda));
  p.b.resize(static_cast<size_t>((tb ? n : k) * p.ldb));
  p.c.resize(static_cast<size_t>(m * p.ldc));
  for (auto* v : {&p.a, &p.b, &p.c})
    for (float& x : *v) x = d(rng);
  return p;
}

float at_a(const Problem& p, int64_t i, int64_t l) {
  return p.ta ? p.a[l * p.lda + i] : p.a[i * p.lda + l];
}
float at_b(const Problem& p, int64_t l, int64_t j) {
  return p.tb ? p.b[j * p.ldb + l] : p.b[l * p.ldb + j];
}

// Checks c (the result) against fp64; elements outside the m x n block must be untouched.
void expect_close(const Problem& p, const std::vector<float>& c, const char* who) {
  for (int64_t i = 0; i < p.m; ++i)
    for (int64_t j = 0; j < p.ldc; ++j) {
      const float got = c[i * p.ldc + j];
      if (j >= p.n) {
        ASSERT_EQ(got, p.c[i * p.ldc + j]) << who << ": padding changed at " << i << ", " << j;
        continue;
      }
      double s = 0.0, mag = 0.0;
      for (int64_t l = 0; l < p.k; ++l) {
        const double t = static_cast<double>(at_a(p, i, l)) * at_b(p, l, j);
        s += t;
        mag += std::fabs(t);
      }
      const double want = p.alpha * s + p.beta * static_cast<double>(p.c[i * p.ldc + j]);
      // fp32 accumulation: at most about k roundings of the partial sums, plus alpha and beta.
      const double bound = 1.2e-7 * static_cast<double>(p.k + 2) *
                               (std::fabs(p.alpha) * mag + std::fabs(p.beta * p.c[i * p.ldc + j])) +
                           1e-30;
      ASSERT_NEAR(got, want, bound)
          << who << " at " << i << ", " << j << " (m " << p.m << ", n " << p.n << ", k " << p.k
          << ", ta " << p.ta << ", tb " << p.tb << ")";
    }
}

TEST(Sgemm, MatchesFp64OnRandomShapesAndTransposes) {
  uint64_t seed = 1;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                             {7, 5, 3},
                             {32, 120, 400},
                             {33, 10, 84},
                             {17, 64, 1},
                             {5, 3, 0}}) {
        const Problem p = make(ta, tb, m, n, k, ++seed);
        std::vector<float> c1 = p.c, c2 = p.c;
        sgemm(ta, tb, m, n, k, p.alpha, p.a.data(), p.lda, p.b.data(), p.ldb, p.beta, c1.data(),
              p.ldc);
        sgemm_blas(ta, tb, m, n, k, p.alpha, p.a.data(), p.lda, p.b.data(), p.ldb, p.beta,
                   c2.data(), p.ldc);
        expect_close(p, c1, "sgemm");
        expect_close(p, c2, "sgemm_blas");
      }
}

TEST(Sgemm, BitsDoNotDependOnTheThreadCount) {
  const Problem p = make(false, true, 64, 96, 512, 99);
  std::vector<std::vector<float>> out;
  const int saved = omp_get_max_threads();
  for (int t : {1, 2, 4}) {
    omp_set_num_threads(t);
    std::vector<float> c = p.c;
    sgemm(p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a.data(), p.lda, p.b.data(), p.ldb, p.beta,
          c.data(), p.ldc);
    out.push_back(c);
  }
  omp_set_num_threads(saved);
  EXPECT_EQ(out[0], out[1]);
  EXPECT_EQ(out[0], out[2]);
}

TEST(Sgemm, RefusesBadArguments) {
  std::vector<float> a(16), b(16), c(16);
  EXPECT_THROW(sgemm(false, false, -1, 2, 2, 1, a.data(), 2, b.data(), 2, 0, c.data(), 2),
               std::invalid_argument);
  EXPECT_THROW(sgemm(false, false, 2, 2, 3, 1, a.data(), 2, b.data(), 2, 0, c.data(), 2),
               std::invalid_argument);  // lda < k
  EXPECT_THROW(sgemm(true, false, 3, 2, 2, 1, a.data(), 2, b.data(), 2, 0, c.data(), 2),
               std::invalid_argument);  // A^T stored k x m: lda < m
  EXPECT_THROW(sgemm(false, false, 2, 2, 2, 1, nullptr, 2, b.data(), 2, 0, c.data(), 2),
               std::invalid_argument);
  EXPECT_THROW(sgemm_blas(false, false, 2, 3, 2, 1, a.data(), 2, b.data(), 3, 0, c.data(), 2),
               std::invalid_argument);  // ldc < n
}

}  // namespace
}  // namespace spush::kernels
