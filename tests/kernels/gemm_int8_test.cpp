// The int8 GEMM (kernels/include/spush/kernels/gemm_int8.h): the reference against a direct
// int64 evaluation of the definition, and the fast path (oneDNN when built with it and the CPU
// has VNNI) against the reference, bit for bit, on random shapes, the shapes of ResNet-20's
// convolutions as GEMMs, strided operands and the extreme values of both types.
#include "spush/kernels/gemm_int8.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace spush::kernels {
namespace {

struct Case {
  int64_t m, n, k;
  int64_t lda, ldb, ldc;
  int32_t a_zero, b_zero;
  std::vector<uint8_t> a;
  std::vector<int8_t> b;
};

Case make_case(int64_t m, int64_t n, int64_t k, int32_t az, int32_t bz, int64_t pad,
               std::mt19937_64& rng, int extreme = 0) {
  Case c{m, n, k, k + pad, n + pad, n + pad, az, bz, {}, {}};
  c.a.resize(static_cast<size_t>(m * c.lda));
  c.b.resize(static_cast<size_t>(k * c.ldb));
  std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127);
  for (auto& v : c.a) v = static_cast<uint8_t>(extreme == 0 ? u8(rng) : extreme > 0 ? 255 : 0);
  for (auto& v : c.b) v = static_cast<int8_t>(extreme == 0 ? s8(rng) : extreme > 0 ? -128 : 127);
  return c;
}

// The definition, in int64 (no overflow possible for these sizes).
std::vector<int64_t> definition(const Case& c) {
  std::vector<int64_t> out(static_cast<size_t>(c.m * c.n), 0);
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      int64_t s = 0;
      for (int64_t p = 0; p < c.k; ++p)
        s += (int64_t{c.a[static_cast<size_t>(i * c.lda + p)]} - c.a_zero) *
             (int64_t{c.b[static_cast<size_t>(p * c.ldb + j)]} - c.b_zero);
      out[static_cast<size_t>(i * c.n + j)] = s;
    }
  return out;
}

// Runs f into a C buffer whose padding holds a sentinel; checks the padding is untouched.
template <typename F>
std::vector<int32_t> run(const Case& c, F f) {
  constexpr int32_t kSentinel = 0x5eadbeef;
  std::vector<int32_t> out(static_cast<size_t>(c.m * c.ldc), kSentinel);
  f(c.m, c.n, c.k, c.a.data(), c.lda, c.a_zero, c.b.data(), c.ldb, c.b_zero, out.data(), c.ldc);
  std::vector<int32_t> packed;
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.ldc; ++j) {
      const int32_t v = out[static_cast<size_t>(i * c.ldc + j)];
      if (j < c.n)
        packed.push_back(v);
      else
        EXPECT_EQ(v, kSentinel) << "padding of row " << i << " written";
    }
  }
  return packed;
}

void expect_exact(const Case& c) {
  SCOPED_TRACE("m " + std::to_string(c.m) + " n " + std::to_string(c.n) + " k " +
               std::to_string(c.k) + " lda " + std::to_string(c.lda) + " a_zero " +
               std::to_string(c.a_zero) + " b_zero " + std::to_string(c.b_zero));
  const std::vector<int64_t> want = definition(c);
  const std::vector<int32_t> ref = run(c, gemm_u8s8s32_ref);
  const std::vector<int32_t> fast = run(c, gemm_u8s8s32);
  ASSERT_EQ(ref.size(), want.size());
  int64_t bad_ref = 0, bad_fast = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    bad_ref += ref[i] != want[i];
    bad_fast += fast[i] != ref[i];
  }
  EXPECT_EQ(bad_ref, 0) << "reference differs from the definition";
  EXPECT_EQ(bad_fast, 0) << "gemm_u8s8s32 (" << gemm_int8_path() << ") differs from the reference";
}

TEST(GemmInt8, PathIsNamed) {
  const std::string path = gemm_int8_path();
  std::printf("gemm_u8s8s32 runs: %s\n", path.c_str());
  EXPECT_TRUE(path.rfind("onednn", 0) == 0 || path.rfind("reference", 0) == 0) << path;
}

TEST(GemmInt8, RandomShapesAndZeroPointsAreExact) {
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int64_t> dim(1, 70);
  std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127), pad(0, 5);
  for (int t = 0; t < 40; ++t) {
    const int32_t az = t % 4 == 0 ? 0 : u8(rng);
    const int32_t bz = t % 3 == 0 ? 0 : s8(rng);
    expect_exact(make_case(dim(rng), dim(rng), dim(rng), az, bz, pad(rng), rng));
  }
}

TEST(GemmInt8, ResNet20ConvolutionShapesAreExact) {
  // im2col GEMMs of ResNet-20 on 32x32 inputs, batch 2: rows = output positions, k = 9 * C_in,
  // n = C_out (the 3x3 convolutions of the three stages and the strided ones between them).
  std::mt19937_64 rng(12);
  const int64_t shapes[][3] = {{2 * 1024, 16, 27}, {2 * 1024, 16, 144}, {2 * 256, 32, 144},
                               {2 * 256, 32, 288}, {2 * 64, 64, 288},   {2 * 64, 64, 576},
                               {2 * 256, 32, 16},  {2 * 64, 64, 32}};
  for (const auto& s : shapes) expect_exact(make_case(s[0], s[1], s[2], 128, 0, 0, rng));
  expect_exact(make_case(2 * 64, 64, 576, 3, -7, 3, rng));
}

TEST(GemmInt8, ExtremeValuesDoNotSaturate) {
  // |A - a_zero| = 255 and |B - b_zero| = 255 everywhere: the largest products, all of one
  // sign, where 16-bit pair sums would saturate. k up to the bound of the header.
  std::mt19937_64 rng(13);
  expect_exact(make_case(3, 5, 1000, 0, 127, 0, rng, +1));    // (255)(-128 - 127) = -65025
  expect_exact(make_case(4, 3, 777, 255, -128, 2, rng, -1));  // (0 - 255)(127 + 128) = -65025
  expect_exact(make_case(2, 17, 999, 0, 0, 1, rng, +1));      // 255 * -128
  Case big = make_case(2, 2, kMaxInt8GemmK, 0, 127, 0, rng, +1);
  std::vector<int32_t> c(4);
  gemm_u8s8s32(2, 2, kMaxInt8GemmK, big.a.data(), big.lda, 0, big.b.data(), big.ldb, 127, c.data(),
               2);
  for (int32_t v : c) EXPECT_EQ(v, -int64_t{65025} * kMaxInt8GemmK);
}

TEST(GemmInt8, LargeOddSumsAreExact) {
  // Skewed operands (A in [200, 255], B in [-128, -108]) give sums of 10^7 to 10^8 that are
  // not multiples of a power of two: a path that carries the sum or a zero-point correction
  // through fp32 loses their low bits once they pass 2^24 (oneDNN 2.6's matmul with a runtime
  // source zero point did).
  std::mt19937_64 rng(15);
  std::uniform_int_distribution<int> hi(200, 255), lo(-128, -108);
  for (int64_t k : {600, 1000, 4000, 20000}) {
    for (auto [az, bz] : {std::pair{0, 0}, std::pair{0, -128}, std::pair{17, 0}, std::pair{3, 5}}) {
      Case c = make_case(64, 9, k, az, bz, 0, rng);
      for (auto& v : c.a) v = static_cast<uint8_t>(hi(rng));
      for (auto& v : c.b) v = static_cast<int8_t>(lo(rng));
      expect_exact(c);
    }
  }
}

TEST(GemmInt8, EmptyDimensions) {
  std::mt19937_64 rng(14);
  expect_exact(make_case(5, 4, 0, 10, 3, 1, rng));  // k = 0: C = 0
  std::vector<int32_t> c;
  gemm_u8s8s32(0, 4, 3, nullptr, 3, 0, nullptr, 4, 0, c.data(), 4);  // nothing to do
  gemm_u8s8s32(4, 0, 3, nullptr, 3, 0, nullptr, 0, 0, c.data(), 0);
}

TEST(GemmInt8, BadArgumentsAreRefused) {
  std::vector<uint8_t> a(64);
  std::vector<int8_t> b(64);
  std::vector<int32_t> c(64);
  auto call = [&](int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                  int32_t az, int32_t bz) {
    gemm_u8s8s32(m, n, k, a.data(), lda, az, b.data(), ldb, bz, c.data(), ldc);
  };
  EXPECT_THROW(call(-1, 2, 2, 2, 2, 2, 0, 0), std::invalid_argument);
  EXPECT_THROW(call(2, 2, 3, 2, 2, 2, 0, 0), std::invalid_argument);  // lda < k
  EXPECT_THROW(call(2, 3, 2, 2, 2, 3, 0, 0), std::invalid_argument);  // ldb < n
  EXPECT_THROW(call(2, 3, 2, 2, 3, 2, 0, 0), std::invalid_argument);  // ldc < n
  EXPECT_THROW(call(2, 2, 2, 2, 2, 2, 256, 0), std::invalid_argument);
  EXPECT_THROW(call(2, 2, 2, 2, 2, 2, 0, -129), std::invalid_argument);
  EXPECT_THROW(call(1, 1, kMaxInt8GemmK + 1, kMaxInt8GemmK + 1, 1, 1, 0, 0), std::invalid_argument);
  EXPECT_THROW(gemm_u8s8s32(2, 2, 2, nullptr, 2, 0, b.data(), 2, 0, c.data(), 2),
               std::invalid_argument);
  try {
    call(2, 2, 2, 2, 2, 2, 300, 0);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("a_zero = 300"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace spush::kernels
