// The 8-bit quantizer (kernels/include/spush/kernels/quantize.h): parameters and their checks,
// nearest-even rounding on hand-picked ties, clamping and the degenerate range, the stochastic
// stream (each q is floor or ceil of t, the bits of a scalar evaluation of the header's
// formulas, unbiased within a stated bound, keyed by seed / node / iteration / offset), range
// statistics, and dequantization.
#include "spush/kernels/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace spush::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The header's formulas, one element at a time, with std::nearbyint and std::floor.
float spec_t(float x, QParams p) {
  const float t = (x - p.lo) / p.scale;
  const float a = t > 0.0f ? t : 0.0f;
  return a < 255.0f ? a : 255.0f;
}
uint8_t spec_nearest(float x, QParams p) {
  if (p.scale == 0.0f) return 0;
  return static_cast<uint8_t>(std::nearbyint(spec_t(x, p)));
}
uint8_t spec_stochastic(float x, QParams p, StochasticKey k, int64_t i) {
  if (p.scale == 0.0f) return 0;
  const float t = spec_t(x, p), f = std::floor(t);
  const float u = stochastic_uniform(k.seed, k.node, k.iteration, k.offset + i);
  return static_cast<uint8_t>(static_cast<int>(f) + (u < t - f ? 1 : 0));
}

std::vector<uint8_t> quantize(const std::vector<float>& x, QParams p, Rounding r,
                              StochasticKey k = {}) {
  std::vector<uint8_t> q(x.size(), 0xAB);
  quantize_u8(x.data(), static_cast<int64_t>(x.size()), p, r, k, q.data());
  return q;
}

std::vector<float> random_values(int64_t n, float lo, float hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = d(rng);
  return x;
}

TEST(QParams, ScaleAndChecks) {
  const QParams p = qparams(-1.0f, 3.0f);
  EXPECT_EQ(p.lo, -1.0f);
  EXPECT_EQ(p.scale, 4.0f / 255.0f);
  EXPECT_EQ(qparams(2.5f, 2.5f).scale, 0.0f);
  EXPECT_THROW(qparams(kNaN, 1.0f), std::invalid_argument);
  EXPECT_THROW(qparams(0.0f, kInf), std::invalid_argument);
  EXPECT_THROW(qparams(1.0f, 0.0f), std::invalid_argument);
  EXPECT_THROW(qparams(-3e38f, 3e38f), std::invalid_argument);  // width overflows
  try {
    qparams(1.0f, -kInf);
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("inf"), std::string::npos) << e.what();
  }
}

TEST(Quantize, NearestEvenTiesAndClamping) {
  const QParams p = qparams(0.0f, 255.0f);  // scale 1: t == x
  ASSERT_EQ(p.scale, 1.0f);
  const std::vector<float> x{0.5f,       1.5f,        2.5f,   3.5f,   254.5f, 2.4999998f,
                             2.5000002f, 0.49999997f, -1.0f,  300.f,  kNaN,   kInf,
                             -kInf,      255.0f,      253.5f, 127.5f, 128.5f};
  const std::vector<uint8_t> want{0, 2, 2, 4, 254, 2, 3, 0, 0, 255, 0, 255, 0, 255, 254, 128, 128};
  EXPECT_EQ(quantize(x, p, Rounding::kNearestEven), want);
  // Stochastic rounding clamps the same way and keeps integers.
  const std::vector<float> xs{-5.0f, 0.0f, 7.0f, 255.0f, 1e9f, kNaN, -kInf, kInf};
  const std::vector<uint8_t> ws{0, 0, 7, 255, 255, 0, 0, 255};
  EXPECT_EQ(quantize(xs, p, Rounding::kStochastic, StochasticKey{1, 2, 3, 4}), ws);
}

TEST(Quantize, DegenerateRange) {
  const QParams p = qparams(0.75f, 0.75f);
  const std::vector<float> x{0.75f, -1.0f, 2.0f, kNaN};
  for (Rounding r : {Rounding::kNearestEven, Rounding::kStochastic})
    EXPECT_EQ(quantize(x, p, r), std::vector<uint8_t>(4, 0));
  std::vector<uint8_t> q{0, 17, 255};
  std::vector<float> back(3);
  dequantize_u8(q.data(), 3, p, back.data());
  EXPECT_EQ(back, std::vector<float>(3, 0.75f));
}

// On random ranges and values (in and beyond the range), the fast loops give the bits of the
// scalar formulas; for n above the parallel threshold too.
TEST(Quantize, MatchesScalarFormulas) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 12; ++trial) {
    std::uniform_real_distribution<float> c(-100.0f, 100.0f), w(1e-6f, 50.0f);
    const float lo = c(rng), hi = lo + w(rng);
    const QParams p = qparams(lo, hi);
    const int64_t n = trial < 10 ? 1000 + trial * 37 : (int64_t{1} << 19) + 3;
    const float margin = 0.1f * (hi - lo);
    const std::vector<float> x = random_values(n, lo - margin, hi + margin, 100 + trial);
    const StochasticKey key{0x1234567890abcdefull + trial, 3u + trial, 1000ull * trial,
                            static_cast<uint64_t>(trial * 5)};
    const std::vector<uint8_t> qn = quantize(x, p, Rounding::kNearestEven);
    const std::vector<uint8_t> qs = quantize(x, p, Rounding::kStochastic, key);
    int64_t bad_n = 0, bad_s = 0, not_floor_ceil = 0;
    for (int64_t i = 0; i < n; ++i) {
      bad_n += qn[i] != spec_nearest(x[i], p);
      bad_s += qs[i] != spec_stochastic(x[i], p, key, i);
      const float t = spec_t(x[i], p);
      not_floor_ceil += qs[i] != std::floor(t) && qs[i] != std::ceil(t);
    }
    EXPECT_EQ(bad_n, 0) << "trial " << trial;
    EXPECT_EQ(bad_s, 0) << "trial " << trial;
    EXPECT_EQ(not_floor_ceil, 0) << "trial " << trial;
  }
}

// Every q dequantizes to a value that quantizes (nearest) back to q.
TEST(Quantize, RoundTrip) {
  for (auto [lo, hi] : {std::pair{-1.0f, 1.0f}, std::pair{0.0f, 6.0f}, std::pair{-3e-5f, 7e-5f},
                        std::pair{1000.0f, 1000.5f}}) {
    const QParams p = qparams(lo, hi);
    std::vector<uint8_t> q(256);
    for (int i = 0; i < 256; ++i) q[i] = static_cast<uint8_t>(i);
    std::vector<float> x(256);
    dequantize_u8(q.data(), 256, p, x.data());
    for (int i = 0; i < 256; ++i) {
      volatile float sq = p.scale * static_cast<float>(i);  // the header's two roundings
      EXPECT_EQ(x[i], sq + p.lo) << i;
    }
    EXPECT_EQ(quantize(x, p, Rounding::kNearestEven), q) << lo << " " << hi;
  }
}

// Unbiasedness: N = 200,000 draws of each of several values (stream elements 0..N-1 of one
// fixed key). Each q is Bernoulli(pr) above floor(t) with pr = P(u < frac), u on the 2^-24
// grid, so pr = ceil(frac 2^24) 2^-24 and |pr - frac| < 2^-24. The mean of q must lie within
// k = 5 standard deviations sqrt(pr (1 - pr) / N) (+ 2^-24) of t: a false failure has
// probability below 1e-6 per value, and the fixed seed makes the test deterministic.
TEST(Quantize, StochasticUnbiased) {
  const QParams p = qparams(-2.0f, 3.0f);
  const int64_t n = 200000;
  int value_index = 0;
  for (float v : {-1.9999f, -0.3f, 0.0f, 0.01f, 1.2345f, 2.99f}) {
    const std::vector<float> x(static_cast<size_t>(n), v);
    const StochasticKey key{42, 7, static_cast<uint64_t>(value_index++), 0};
    const std::vector<uint8_t> q = quantize(x, p, Rounding::kStochastic, key);
    double sum = 0.0;
    for (uint8_t b : q) sum += b;
    const double mean = sum / static_cast<double>(n);
    const double t = spec_t(v, p);
    const double frac = t - std::floor(t);
    const double sigma = std::sqrt(frac * (1.0 - frac) / static_cast<double>(n));
    EXPECT_NEAR(mean, t, 5.0 * sigma + 1.0 / 16777216.0) << "x = " << v << " t = " << t;
  }
}

TEST(Quantize, StreamKeys) {
  const QParams p = qparams(0.0f, 1.0f);
  const std::vector<float> x = random_values(4099, 0.0f, 1.0f, 9);
  const StochasticKey base{11, 2, 300, 0};
  const std::vector<uint8_t> a = quantize(x, p, Rounding::kStochastic, base);
  EXPECT_EQ(a, quantize(x, p, Rounding::kStochastic, base));
  auto differing = [&](StochasticKey k) {
    const std::vector<uint8_t> b = quantize(x, p, Rounding::kStochastic, k);
    int64_t d = 0;
    for (size_t i = 0; i < a.size(); ++i) d += a[i] != b[i];
    return d;
  };
  // Each draw differs with probability 2 frac (1 - frac) (1/3 on average): thousands here.
  for (StochasticKey k :
       {StochasticKey{12, 2, 300, 0}, StochasticKey{11, 3, 300, 0}, StochasticKey{11, 2, 301, 0},
        StochasticKey{11, 2, 300ull << 32, 0}, StochasticKey{11, 2, 300, 1}})
    EXPECT_GT(differing(k), 1000) << k.seed << " " << k.node << " " << k.iteration << " "
                                  << k.offset;
  // A tensor quantized in pieces with offsets gives the bits of one call.
  for (int64_t cut : {1, 3, 4, 7, 2048, 4098}) {
    std::vector<uint8_t> b(x.size());
    quantize_u8(x.data(), cut, p, Rounding::kStochastic, base, b.data());
    StochasticKey rest = base;
    rest.offset = static_cast<uint64_t>(cut);
    quantize_u8(x.data() + cut, static_cast<int64_t>(x.size()) - cut, p, Rounding::kStochastic,
                rest, b.data() + cut);
    EXPECT_EQ(a, b) << "cut " << cut;
  }
}

TEST(Quantize, StochasticUniformIsTheGroupedStream) {
  // Element e uses output e % 4 of the Philox call for counter e / 4.
  for (uint64_t e : {0ull, 1ull, 2ull, 3ull, 4ull, 4097ull, (1ull << 34) + 3}) {
    const uint64_t g = e / 4;
    const Philox4 c =
        philox4x32_10(Philox4{{static_cast<uint32_t>(g), static_cast<uint32_t>(g >> 32), 5u, 9u}},
                      0xdeadbeefu ^ 1u, 0x01234567u);
    const uint64_t seed = 0x01234567deadbeefull, iteration = (1ull << 32) + 5;
    EXPECT_EQ(stochastic_uniform(seed, 9, iteration, e),
              static_cast<float>(c.v[e % 4] >> 8) / 16777216.0f);
  }
}

TEST(Minmax, ValuesAndChecks) {
  std::vector<float> x = random_values(100003, -3.0f, 5.0f, 3);
  x[777] = -7.5f;
  x[99999] = 9.25f;
  const Range r = minmax(x.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(r.lo, -7.5f);
  EXPECT_EQ(r.hi, 9.25f);
  std::vector<float> big = random_values((1 << 20) + 5, -1.0f, 1.0f, 4);
  big[123456] = 2.0f;
  big[1 << 20] = -2.0f;
  const Range rb = minmax(big.data(), static_cast<int64_t>(big.size()));
  EXPECT_EQ(rb.lo, -2.0f);
  EXPECT_EQ(rb.hi, 2.0f);
  EXPECT_THROW(minmax(x.data(), 0), std::invalid_argument);
  for (float bad : {kNaN, kInf, -kInf}) {
    for (size_t at : {size_t{0}, size_t{5}, size_t{(1 << 20) + 4}}) {
      std::vector<float> y = big;
      y[at] = bad;
      try {
        minmax(y.data(), static_cast<int64_t>(y.size()));
        FAIL() << "no throw for " << bad << " at " << at;
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("element " + std::to_string(at)), std::string::npos)
            << e.what();
      }
    }
  }
}

TEST(Minmax, BatchMean) {
  const int64_t batch = 5, per = 1001;
  std::vector<float> x = random_values(batch * per, 0.0f, 1.0f, 8);
  double lo = 0, hi = 0;
  for (int64_t b = 0; b < batch; ++b) {
    x[b * per + 3] = -1.0f - static_cast<float>(b);
    x[b * per + 500] = 2.0f + 0.5f * static_cast<float>(b);
    lo += -1.0 - b;
    hi += 2.0 + 0.5 * b;
  }
  const Range r = minmax_batch_mean(x.data(), batch, per);
  EXPECT_EQ(r.lo, static_cast<float>(lo / batch));
  EXPECT_EQ(r.hi, static_cast<float>(hi / batch));
  x[3 * per + 7] = kNaN;
  EXPECT_THROW(minmax_batch_mean(x.data(), batch, per), std::invalid_argument);
}

}  // namespace
}  // namespace spush::kernels
