// The 8-bit convolution and linear ops (kernels/include/spush/kernels/conv_int8.h): the fast
// paths (oneDNN when built with it on a VNNI / AMX CPU) against the reference, bit for bit, for
// the integer parts and the fp32 outputs, on ResNet-20's shapes, odd shapes, batch 1, padding
// 0 / 1 / 2, non-square kernels and strides, and extreme codes; the reference against an fp64
// evaluation of the definition on the dequantized operands; and the requantizing epilogue (fused,
// reference, plan and linear ops) against its definition, the fp32 output with the bias added
// and then quantize_u8 on the whole tensor.
#include "spush/kernels/conv_int8.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "conv_test_util.h"

namespace spush::kernels {
namespace {

enum class Fill { kRandom, kZero, kMax, kHigh, kLow };

std::vector<uint8_t> codes(int64_t n, Fill f, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> all(0, 255), high(200, 255), low(0, 20);
  std::vector<uint8_t> q(static_cast<size_t>(n));
  for (auto& v : q) {
    switch (f) {
      case Fill::kRandom:
        v = static_cast<uint8_t>(all(rng));
        break;
      case Fill::kZero:
        v = 0;
        break;
      case Fill::kMax:
        v = 255;
        break;
      case Fill::kHigh:
        v = static_cast<uint8_t>(high(rng));
        break;
      case Fill::kLow:
        v = static_cast<uint8_t>(low(rng));
        break;
    }
  }
  return q;
}

using test::conv_shape;

// ResNet-20's convolutions (batch 2), the first layers of the MNIST and CIFAR nets, and odd
// shapes: batch 1, padding 0 / 1 / 2, non-square inputs, kernels and strides, 1x1 kernels with
// padding (border outputs without any tap), strides that leave input rows unread.
std::vector<ConvShape> shapes() {
  return {
      conv_shape(2, 3, 32, 32, 16, 3, 3, 1, 1, 1, 1),   // ResNet-20 conv1
      conv_shape(2, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1),  // stage 1
      conv_shape(2, 16, 32, 32, 32, 3, 3, 2, 2, 1, 1),  // stage 2 transition
      conv_shape(2, 16, 32, 32, 32, 1, 1, 2, 2, 0, 0),  // its 1x1 shortcut
      conv_shape(2, 32, 16, 16, 32, 3, 3, 1, 1, 1, 1),  // stage 2
      conv_shape(2, 32, 16, 16, 64, 3, 3, 2, 2, 1, 1),  // stage 3 transition
      conv_shape(2, 32, 16, 16, 64, 1, 1, 2, 2, 0, 0),
      conv_shape(2, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1),   // stage 3
      conv_shape(2, 1, 28, 28, 16, 3, 3, 1, 1, 1, 1),  // cin = 1, 28x28
      conv_shape(1, 1, 28, 28, 8, 5, 5, 1, 1, 2, 2),
      conv_shape(1, 5, 7, 9, 3, 3, 2, 2, 1, 1, 0),
      conv_shape(1, 3, 5, 5, 4, 5, 5, 1, 1, 2, 2),
      conv_shape(3, 7, 13, 11, 5, 3, 3, 3, 3, 0, 0),
      conv_shape(1, 4, 6, 6, 2, 1, 1, 1, 1, 1, 1),
      conv_shape(1, 4, 9, 9, 4, 3, 3, 2, 2, 2, 2),
      conv_shape(1, 3, 1, 1, 2, 3, 3, 1, 1, 1, 1),
      conv_shape(2, 6, 10, 7, 3, 3, 1, 1, 2, 1, 0),
      conv_shape(1, 2, 8, 8, 3, 2, 2, 2, 2, 0, 0),
      conv_shape(1, 17, 15, 15, 9, 3, 3, 2, 2, 1, 1),
  };
}

// Calls f(x index, w index, y index) for each tap of the convolution that reads the input
// (taps on the zero padding skipped), in the order (b, co, i, j, ci, r, q).
template <typename F>
void for_each_tap(const ConvShape& s, F f) {
  const int64_t oh = s.oh(), ow = s.ow();
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t co = 0; co < s.cout; ++co)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j)
          for (int64_t ci = 0; ci < s.cin; ++ci)
            for (int64_t r = 0; r < s.kh; ++r)
              for (int64_t q = 0; q < s.kw; ++q) {
                const int64_t yy = i * s.sh - s.ph + r, xx = j * s.sw - s.pw + q;
                if (yy < 0 || yy >= s.h || xx < 0 || xx >= s.w) continue;
                f(static_cast<size_t>(((b * s.cin + ci) * s.h + yy) * s.w + xx),
                  static_cast<size_t>(((co * s.cin + ci) * s.kh + r) * s.kw + q),
                  static_cast<size_t>(((b * s.cout + co) * oh + i) * ow + j));
              }
}

// The dequantized value s q + lo of a code (exact in fp64), and its bound |s q| + |lo|.
double val(QParams p, uint8_t q) { return double{p.scale} * q + double{p.lo}; }
double bnd(QParams p, uint8_t q) { return double{p.scale} * q + std::fabs(double{p.lo}); }

// The definition in fp64 on x_hat = s q + lo (exact in fp64); sets mag[e] to the sum over the
// taps of |x_hat w_hat| with x_hat and w_hat replaced by |s q| + |lo| (the fp32 rounding bound).
void forward_fp64(const ConvShape& s, const std::vector<uint8_t>& qx, QParams px,
                  const std::vector<uint8_t>& qw, QParams pw, std::vector<double>& y,
                  std::vector<double>& mag) {
  y.assign(static_cast<size_t>(s.y_size()), 0.0);
  mag.assign(y.size(), 0.0);
  for_each_tap(s, [&](size_t xe, size_t we, size_t ye) {
    y[ye] += val(px, qx[xe]) * val(pw, qw[we]);
    mag[ye] += bnd(px, qx[xe]) * bnd(pw, qw[we]);
  });
}

// Scatter form of the transposed convolution (a different loop order from the reference).
void backward_fp64(const ConvShape& s, const std::vector<uint8_t>& qg, QParams pg,
                   const std::vector<uint8_t>& qw, QParams pw, std::vector<double>& dx,
                   std::vector<double>& mag) {
  dx.assign(static_cast<size_t>(s.x_size()), 0.0);
  mag.assign(dx.size(), 0.0);
  for_each_tap(s, [&](size_t xe, size_t we, size_t ye) {
    dx[xe] += val(pg, qg[ye]) * val(pw, qw[we]);
    mag[xe] += bnd(pg, qg[ye]) * bnd(pw, qw[we]);
  });
}

// |y - y64| <= 2^-23 |y64| + 2^-40 mag: one fp32 rounding of the result (2^-24, doubled for
// slack), plus the fp64 errors of the epilogue and of the fp64 sum (each well below 2^-45 mag
// for these reduction lengths).
int64_t count_outside(const std::vector<float>& y, const std::vector<double>& want,
                      const std::vector<double>& mag) {
  int64_t bad = 0;
  for (size_t e = 0; e < y.size(); ++e) {
    const double tol = std::ldexp(std::fabs(want[e]), -23) + std::ldexp(mag[e], -40);
    if (!(std::fabs(double{y[e]} - want[e]) <= tol)) {
      if (bad < 5)
        ADD_FAILURE() << "element " << e << ": " << y[e] << " vs fp64 " << want[e] << " (tol "
                      << tol << ")";
      ++bad;
    }
  }
  return bad;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const QParams kX = qparams(-0.5f, 2.0f), kW = qparams(-0.3f, 0.25f),
              kG = qparams(-1.1e-3f, 0.9e-3f);

// One direction of the convolution: forward (operand x, output y) or backward-data (operand g,
// output dx), the weights the other operand.
struct Direction {
  const char* name;
  int64_t (ConvShape::*a_size)() const;    // the operand's size
  int64_t (ConvShape::*out_size)() const;  // the output's size
  QParams pa;                              // the operand's quantization
  decltype(&conv_u8_forward_parts_ref) parts_ref;
  decltype(&ConvInt8Plan::forward_parts) parts;
  decltype(&conv_u8_forward_ref) ref;
  decltype(&ConvInt8Plan::forward) op;
  decltype(&forward_fp64) fp64;
};

const Direction kForward{"forward",
                         &ConvShape::x_size,
                         &ConvShape::y_size,
                         kX,
                         &conv_u8_forward_parts_ref,
                         &ConvInt8Plan::forward_parts,
                         &conv_u8_forward_ref,
                         &ConvInt8Plan::forward,
                         &forward_fp64};
const Direction kBackwardData{"backward-data",
                              &ConvShape::y_size,
                              &ConvShape::x_size,
                              kG,
                              &conv_u8_backward_data_parts_ref,
                              &ConvInt8Plan::backward_data_parts,
                              &conv_u8_backward_data_ref,
                              &ConvInt8Plan::backward_data,
                              &backward_fp64};

// The plan against the reference, bit for bit (integer parts and fp32 outputs), and with `fp64`
// the reference against the fp64 definition.
void check(const Direction& d, const ConvShape& s, Fill fa, Fill fw, uint64_t seed, bool fp64) {
  SCOPED_TRACE(std::string(d.name) + " " + s.str() + " fill " +
               std::to_string(static_cast<int>(fa)) + "/" + std::to_string(static_cast<int>(fw)));
  const std::vector<uint8_t> qa = codes((s.*d.a_size)(), fa, seed),
                             qw = codes(s.w_size(), fw, seed + 1);
  Int8Parts ref, fast;
  d.parts_ref(s, qa.data(), qw.data(), ref);
  ConvInt8Plan plan(s);
  (plan.*d.parts)(qa.data(), qw.data(), fast);
  EXPECT_TRUE(ref.acc == fast.acc) << "acc differs";
  EXPECT_TRUE(ref.sum_a == fast.sum_a) << "sum_a differs";
  EXPECT_TRUE(ref.sum_w == fast.sum_w) << "sum_w differs";
  EXPECT_TRUE(ref.n == fast.n) << "n differs";
  std::vector<float> outr(static_cast<size_t>((s.*d.out_size)())), outf(outr.size(), -1.0f);
  d.ref(s, qa.data(), d.pa, qw.data(), kW, outr.data());
  (plan.*d.op)(qa.data(), d.pa, qw.data(), kW, outf.data());
  EXPECT_TRUE(same_bits(outr, outf)) << "fp32 outputs differ";
  if (fp64) {
    std::vector<double> want, mag;
    d.fp64(s, qa, d.pa, qw, kW, want, mag);
    EXPECT_EQ(count_outside(outr, want, mag), 0);
  }
}

TEST(ConvInt8, Path) {
  std::cout << "ConvInt8Plan::path(): " << ConvInt8Plan::path() << "\n";
  ConvInt8Plan plan(shapes()[1]);
  const ConvShape s = plan.shape();
  const std::vector<uint8_t> q = codes(s.x_size(), Fill::kRandom, 1),
                             w = codes(s.w_size(), Fill::kRandom, 2);
  std::vector<float> y(static_cast<size_t>(s.y_size())), dx(static_cast<size_t>(s.x_size()));
  plan.forward(q.data(), kX, w.data(), kW, y.data());
  const std::vector<uint8_t> g = codes(s.y_size(), Fill::kRandom, 3);
  plan.backward_data(g.data(), kG, w.data(), kW, dx.data());
  std::cout << "impl: " << plan.impl_info() << "\n";
}

TEST(ConvInt8, ForwardMatchesReferenceAndFp64) {
  uint64_t seed = 100;
  for (const ConvShape& s : shapes())
    check(kForward, s, Fill::kRandom, Fill::kRandom, seed += 2, true);
}

TEST(ConvInt8, BackwardDataMatchesReferenceAndFp64) {
  uint64_t seed = 200;
  for (const ConvShape& s : shapes())
    check(kBackwardData, s, Fill::kRandom, Fill::kRandom, seed += 2, true);
}

// All 0, all 255, and skewed codes whose raw products q_x (q_w - 128) reach the largest
// magnitudes (about 2^24 for cin = 64, 3x3; odd values, which fp32 could not hold).
TEST(ConvInt8, ExtremeCodes) {
  const std::vector<ConvShape> ext{conv_shape(2, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1),
                                   conv_shape(1, 16, 9, 9, 8, 3, 3, 2, 2, 1, 1),
                                   conv_shape(1, 512, 6, 6, 16, 3, 3, 1, 1, 1, 1),
                                   conv_shape(1, 16, 6, 6, 512, 3, 3, 1, 1, 1, 1),
                                   conv_shape(1, 2048, 4, 4, 16, 1, 1, 1, 1, 0, 0)};
  for (const ConvShape& s : ext)
    for (auto [fx, fw] : {std::pair{Fill::kZero, Fill::kZero}, std::pair{Fill::kMax, Fill::kMax},
                          std::pair{Fill::kMax, Fill::kZero}, std::pair{Fill::kZero, Fill::kMax},
                          std::pair{Fill::kHigh, Fill::kLow}, std::pair{Fill::kHigh, Fill::kHigh},
                          std::pair{Fill::kLow, Fill::kHigh}}) {
      // The shapes with 512 or more channels (raw sums up to 1.5e8 forward / backward-data,
      // 3x3 and 1x1 kernels) with the skewed fills only; fp64 on the smaller shapes.
      if ((s.cin >= 512 || s.cout >= 512) && fx != Fill::kHigh) continue;
      check(kForward, s, fx, fw, 7, s.cin <= 64);
      check(kBackwardData, s, fx, fw, 9, s.cin <= 16);
    }
}

TEST(ConvInt8, RandomShapes) {
  std::mt19937_64 rng(77);
  auto u = [&](int lo, int hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  for (int t = 0; t < 30; ++t) {
    ConvShape s = conv_shape(u(1, 3), u(1, 12), u(1, 14), u(1, 14), u(1, 12), u(1, 5), u(1, 5),
                             u(1, 3), u(1, 3), u(0, 2), u(0, 2));
    if (s.h + 2 * s.ph < s.kh || s.w + 2 * s.pw < s.kw) continue;
    check(kForward, s, Fill::kRandom, Fill::kRandom, 1000 + t, true);
    check(kBackwardData, s, Fill::kRandom, Fill::kRandom, 2000 + t, true);
  }
}

// One plan, several calls with other operands: the cached primitives and scratch are reused.
TEST(ConvInt8, PlanReuse) {
  const ConvShape s = conv_shape(4, 16, 16, 16, 32, 3, 3, 2, 2, 1, 1);
  ConvInt8Plan plan(s);
  for (uint64_t seed = 0; seed < 3; ++seed) {
    const std::vector<uint8_t> qx = codes(s.x_size(), Fill::kRandom, 10 + seed),
                               qw = codes(s.w_size(), Fill::kRandom, 20 + seed),
                               qg = codes(s.y_size(), Fill::kRandom, 30 + seed);
    std::vector<float> yr(static_cast<size_t>(s.y_size())), yf(yr.size());
    conv_u8_forward_ref(s, qx.data(), kX, qw.data(), kW, yr.data());
    plan.forward(qx.data(), kX, qw.data(), kW, yf.data());
    EXPECT_TRUE(same_bits(yr, yf));
    std::vector<float> dr(static_cast<size_t>(s.x_size())), df(dr.size());
    conv_u8_backward_data_ref(s, qg.data(), kG, qw.data(), kW, dr.data());
    plan.backward_data(qg.data(), kG, qw.data(), kW, df.data());
    EXPECT_TRUE(same_bits(dr, df));
  }
}

TEST(ConvInt8, Refusals) {
  const ConvShape big_fwd = conv_shape(1, 4096, 4, 4, 2, 3, 3, 1, 1, 1, 1);  // k = 36,864
  std::vector<uint8_t> q(static_cast<size_t>(big_fwd.x_size())),
      w(static_cast<size_t>(big_fwd.w_size()));
  std::vector<float> y(static_cast<size_t>(big_fwd.y_size()));
  EXPECT_THROW(conv_u8_forward_ref(big_fwd, q.data(), kX, w.data(), kW, y.data()),
               std::invalid_argument);
  ConvInt8Plan p1(big_fwd);
  EXPECT_THROW(p1.forward(q.data(), kX, w.data(), kW, y.data()), std::invalid_argument);
  const ConvShape big_bwd = conv_shape(1, 2, 4, 4, 4096, 3, 3, 1, 1, 1, 1);
  ConvInt8Plan p2(big_bwd);
  std::vector<uint8_t> g(static_cast<size_t>(big_bwd.y_size())),
      w2(static_cast<size_t>(big_bwd.w_size()));
  std::vector<float> dx(static_cast<size_t>(big_bwd.x_size()));
  EXPECT_THROW(p2.backward_data(g.data(), kG, w2.data(), kW, dx.data()), std::invalid_argument);
  EXPECT_THROW(ConvInt8Plan(conv_shape(1, 1, 2, 2, 1, 3, 3, 1, 1, 0, 0)), std::invalid_argument);
}

TEST(ConvInt8, EpilogueOrder) {
  const QParams a{-0.37f, 0.0123f}, w{0.25f, 1.0f / 3.0f};
  const Int8EpilogueCoeffs k = int8_epilogue_coeffs(a, w);
  EXPECT_EQ(k.a, double{a.scale} * double{w.scale});
  const int32_t acc = 123456789, sa = -5, sw = 77777, n = 1234;
  const double t0 = k.a * acc, t1 = k.b * sa, t2 = k.c * sw, t3 = k.d * n;
  const double want = ((t0 + t1) + t2) + t3;
  EXPECT_EQ(int8_epilogue(k, acc, sa, sw, n), static_cast<float>(want));
  // The tensor epilogue (what the ops run) gives the bits of the element function (what a GPU
  // port runs) on random parts, cancellation-heavy parameters included.
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int32_t> big(-2000000000, 2000000000), small(0, 5000000);
  Int8Parts parts;
  parts.resize(3, 5, 7);
  for (auto& v : parts.acc) v = big(rng);
  for (auto& v : parts.sum_a) v = small(rng);
  for (auto& v : parts.sum_w) v = small(rng);
  for (auto& v : parts.n) v = small(rng) % 600;
  for (auto [pa, pw] : {std::pair{a, w}, std::pair{kG, kW}, std::pair{kX, qparams(-1.0f, 1.0f)}}) {
    std::vector<float> y(3 * 5 * 7);
    int8_epilogue(parts, pa, pw, y.data());
    const Int8EpilogueCoeffs kk = int8_epilogue_coeffs(pa, pw);
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 5; ++c)
        for (int64_t p = 0; p < 7; ++p) {
          const float e = int8_epilogue(kk, parts.acc[(b * 5 + c) * 7 + p], parts.sum_a[b * 7 + p],
                                        parts.sum_w[c * 7 + p], parts.n[p]);
          EXPECT_EQ(std::memcmp(&e, &y[(b * 5 + c) * 7 + p], sizeof(float)), 0) << b << c << p;
        }
  }
}

void check_linear(int64_t batch, int64_t in, int64_t out, Fill fa, Fill fw, uint64_t seed) {
  SCOPED_TRACE("linear " + std::to_string(batch) + " x " + std::to_string(in) + " -> " +
               std::to_string(out));
  const std::vector<uint8_t> qx = codes(batch * in, fa, seed), qw = codes(out * in, fw, seed + 1),
                             qg = codes(batch * out, fa, seed + 2);
  std::vector<float> yr(static_cast<size_t>(batch * out)), yf(yr.size());
  linear_u8_forward_ref(batch, in, out, qx.data(), kX, qw.data(), kW, yr.data());
  linear_u8_forward(batch, in, out, qx.data(), kX, qw.data(), kW, yf.data());
  EXPECT_TRUE(same_bits(yr, yf)) << "forward";
  std::vector<float> dr(static_cast<size_t>(batch * in)), df(dr.size());
  linear_u8_backward_data_ref(batch, in, out, qg.data(), kG, qw.data(), kW, dr.data());
  linear_u8_backward_data(batch, in, out, qg.data(), kG, qw.data(), kW, df.data());
  EXPECT_TRUE(same_bits(dr, df)) << "backward-data";
  // The linear layer is the 1x1 convolution of a 1x1 image: its fp64 check.
  const ConvShape s = conv_shape(batch, in, 1, 1, out, 1, 1, 1, 1, 0, 0);
  std::vector<double> want, mag;
  forward_fp64(s, qx, kX, qw, kW, want, mag);
  EXPECT_EQ(count_outside(yr, want, mag), 0);
  backward_fp64(s, qg, kG, qw, kW, want, mag);
  EXPECT_EQ(count_outside(dr, want, mag), 0);
}

TEST(LinearInt8, MatchesReferenceAndFp64) {
  check_linear(32, 64, 10, Fill::kRandom, Fill::kRandom, 1);
  check_linear(1, 7, 3, Fill::kRandom, Fill::kRandom, 2);
  check_linear(5, 1000, 17, Fill::kRandom, Fill::kRandom, 3);
  check_linear(3, 4000, 9, Fill::kHigh, Fill::kLow, 4);
  check_linear(2, 33, 300, Fill::kMax, Fill::kMax, 5);
  check_linear(2, 33, 300, Fill::kZero, Fill::kMax, 6);
  std::vector<uint8_t> q(static_cast<size_t>(kMaxInt8GemmK + 1));
  std::vector<float> y(1);
  EXPECT_THROW(linear_u8_forward(1, kMaxInt8GemmK + 1, 1, q.data(), kX, q.data(), kW, y.data()),
               std::invalid_argument);
}

// --- The requantizing epilogue ---------------------------------------------------------------

// Random integer parts: acc over the whole int32 range, sums and n as a long reduction gives.
Int8Parts random_parts(int64_t b, int64_t c, int64_t p, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> big(-2000000000, 2000000000), small(0, 5000000);
  Int8Parts parts;
  parts.resize(b, c, p);
  for (auto& v : parts.acc) v = big(rng);
  for (auto& v : parts.sum_a) v = small(rng);
  for (auto& v : parts.sum_w) v = small(rng);
  for (auto& v : parts.n) v = small(rng) % 600;
  return parts;
}

// y + bias[c] in fp32 over a [batch, channels, positions] tensor (y itself without a bias).
std::vector<float> with_bias(std::vector<float> y, int64_t channels, int64_t positions,
                             const float* bias) {
  if (bias != nullptr)
    for (size_t e = 0; e < y.size(); ++e)
      y[e] = y[e] + bias[(static_cast<int64_t>(e) / positions) % channels];
  return y;
}

// The definition of the requantizing epilogue on the public API: the fp32 output y, the bias
// added, then quantize_u8 on the whole tensor.
std::vector<uint8_t> compose(const std::vector<float>& y, int64_t channels, int64_t positions,
                             const Requant& rq) {
  const std::vector<float> yb = with_bias(y, channels, positions, rq.bias);
  std::vector<uint8_t> q(yb.size(), 0xAB);
  quantize_u8(yb.data(), static_cast<int64_t>(yb.size()), rq.out, rq.rounding, rq.key, q.data());
  return q;
}

// Output parameters inside the range of the (biased) output, so that both ends clamp.
QParams inner_params(const std::vector<float>& yb) {
  const Range r = minmax(yb.data(), static_cast<int64_t>(yb.size()));
  const float w = r.hi - r.lo;
  return qparams(r.lo + 0.05f * w, r.hi - 0.08f * w);
}

// The settings the tests run on an output y: nearest-even and stochastic, without and with a
// per-channel bias (about a third of y's range), stochastic at stream offsets 0, odd and past
// 2^32 elements; py from the biased output. `bias` holds the bias values.
std::vector<std::pair<std::string, Requant>> requant_cases(const std::vector<float>& y,
                                                           int64_t channels, int64_t positions,
                                                           std::vector<float>& bias,
                                                           uint64_t seed) {
  const Range r = minmax(y.data(), static_cast<int64_t>(y.size()));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(-0.3f, 0.3f);
  bias.resize(static_cast<size_t>(channels));
  for (auto& v : bias) v = d(rng) * (r.hi - r.lo);
  std::vector<std::pair<std::string, Requant>> cases;
  for (bool b : {false, true}) {
    Requant rq;
    rq.bias = b ? bias.data() : nullptr;
    rq.out = inner_params(with_bias(y, channels, positions, rq.bias));
    const std::string tag = b ? " with bias" : " without bias";
    rq.rounding = Rounding::kNearestEven;
    cases.emplace_back("nearest-even" + tag, rq);
    rq.rounding = Rounding::kStochastic;
    for (uint64_t offset : {uint64_t{0}, uint64_t{12345}, (uint64_t{1} << 33) + 7}) {
      rq.key = StochasticKey{0x9e3779b97f4a7c15ull + offset, 5, (uint64_t{3} << 32) + 17, offset};
      cases.emplace_back("stochastic offset " + std::to_string(offset) + tag, rq);
    }
  }
  return cases;
}

int64_t count_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size()) return -1;
  int64_t d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += a[i] != b[i];
  return d;
}

// int8_epilogue_requant and _ref against the definition on random parts of odd sizes, one of
// them above the OpenMP threshold and one with positions 1 (a linear layer's parts).
TEST(Int8Requant, FusedMatchesDefinitionOnRandomParts) {
  const std::vector<std::array<int64_t, 3>> sizes{
      {1, 1, 1}, {3, 5, 7}, {2, 13, 1}, {1, 3, 1031}, {5, 17, 257}, {2, 37, 1025}, {7, 300, 1}};
  uint64_t seed = 500;
  for (const auto& [nb, nc, np] : sizes)
    for (auto [pa, pw] : {std::pair{kX, kW}, std::pair{kG, kW}}) {
      const Int8Parts parts = random_parts(nb, nc, np, ++seed);
      std::vector<float> y(static_cast<size_t>(nb * nc * np));
      int8_epilogue(parts, pa, pw, y.data());
      std::vector<float> bias;
      for (const auto& [name, rq] : requant_cases(y, nc, np, bias, ++seed)) {
        SCOPED_TRACE(std::to_string(nb) + "x" + std::to_string(nc) + "x" + std::to_string(np) +
                     " " + name);
        const std::vector<uint8_t> want = compose(y, nc, np, rq);
        std::vector<uint8_t> ref(want.size(), 0xCD), fused(want.size(), 0xEF);
        int8_epilogue_requant_ref(parts, pa, pw, rq, ref.data());
        int8_epilogue_requant(parts, pa, pw, rq, fused.data());
        EXPECT_EQ(count_diff(want, ref), 0) << "reference";
        EXPECT_EQ(count_diff(want, fused), 0) << "fused";
      }
    }
}

// The definition evaluated element by element with the header's scalar formulas (int8_epilogue
// of one element, one fp32 addition of the bias, the clamp, floor and the uniform of the flat
// index), and wrong variants that a test must tell apart: it would fail if the bias were
// ignored or added after the rounding, or if the stream index were not key.offset plus the flat
// index.
TEST(Int8Requant, FlatStreamIndexAndBiasBeforeRounding) {
  const int64_t nb = 3, nc = 4, np = 37, total = nb * nc * np;
  const Int8Parts parts = random_parts(nb, nc, np, 42);
  const QParams pa = kX, pw = kW;
  std::vector<float> y(static_cast<size_t>(total));
  int8_epilogue(parts, pa, pw, y.data());
  std::vector<float> bias;
  const auto cases = requant_cases(y, nc, np, bias, 43);
  const Requant* stochastic = nullptr;
  for (const auto& [name, rq] : cases)
    if (rq.bias != nullptr && rq.rounding == Rounding::kStochastic && rq.key.offset == 12345)
      stochastic = &rq;
  ASSERT_NE(stochastic, nullptr);
  const Requant& rq = *stochastic;
  const QParams py = rq.out;
  ASSERT_GT(py.scale, 0.0f);
  const Int8EpilogueCoeffs k = int8_epilogue_coeffs(pa, pw);
  auto t_of = [&](float v) {
    const float t = (v - py.lo) / py.scale;
    const float a = t > 0.0f ? t : 0.0f;
    return a < 255.0f ? a : 255.0f;
  };
  auto code = [&](float v, uint64_t e) {
    const float t = t_of(v), f = std::floor(t);
    const float u = stochastic_uniform(rq.key.seed, rq.key.node, rq.key.iteration, e);
    return static_cast<uint8_t>(static_cast<int>(f) + (u < t - f ? 1 : 0));
  };
  std::vector<uint8_t> want(static_cast<size_t>(total)), no_bias(want.size()),
      bias_after(want.size()), row_index(want.size()), channel_major(want.size()),
      no_offset(want.size()), want_nearest(want.size()), nearest_bias_after(want.size());
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t c = 0; c < nc; ++c)
      for (int64_t p = 0; p < np; ++p) {
        const int64_t flat = (b * nc + c) * np + p;
        const float ye = int8_epilogue(k, parts.acc[flat], parts.sum_a[b * np + p],
                                       parts.sum_w[c * np + p], parts.n[p]);
        const float yb = ye + bias[c];
        const uint64_t e = rq.key.offset + static_cast<uint64_t>(flat);
        want[flat] = code(yb, e);
        no_bias[flat] = code(ye, e);
        // The bias added to the code of the unbiased output (rounded to a whole code).
        const float shifted = static_cast<float>(code(ye, e)) + std::nearbyint(bias[c] / py.scale);
        bias_after[flat] = static_cast<uint8_t>(std::clamp(shifted, 0.0f, 255.0f));
        row_index[flat] = code(yb, rq.key.offset + static_cast<uint64_t>(p));
        channel_major[flat] =
            code(yb, rq.key.offset + static_cast<uint64_t>((c * nb + b) * np + p));
        no_offset[flat] = code(yb, static_cast<uint64_t>(flat));
        want_nearest[flat] = static_cast<uint8_t>(std::nearbyint(t_of(yb)));
        const float ns = std::nearbyint(t_of(ye)) + std::nearbyint(bias[c] / py.scale);
        nearest_bias_after[flat] = static_cast<uint8_t>(std::clamp(ns, 0.0f, 255.0f));
      }
  std::vector<uint8_t> fused(want.size()), ref(want.size());
  int8_epilogue_requant(parts, pa, pw, rq, fused.data());
  int8_epilogue_requant_ref(parts, pa, pw, rq, ref.data());
  EXPECT_EQ(count_diff(want, fused), 0);
  EXPECT_EQ(count_diff(want, ref), 0);
  // Each wrong variant differs from the result in many elements (each stochastic draw differs
  // with probability 2 frac (1 - frac) under another uniform: about a third of them).
  for (const auto& [name, wrong] :
       {std::pair{"bias ignored", &no_bias}, std::pair{"bias added after rounding", &bias_after},
        std::pair{"stream index p", &row_index}, std::pair{"channel-major index", &channel_major},
        std::pair{"index without key.offset", &no_offset}})
    EXPECT_GT(count_diff(*wrong, fused), total / 20) << name;
  Requant rn = rq;
  rn.rounding = Rounding::kNearestEven;
  int8_epilogue_requant(parts, pa, pw, rn, fused.data());
  EXPECT_EQ(count_diff(want_nearest, fused), 0);
  EXPECT_GT(count_diff(nearest_bias_after, fused), 0);
}

// ConvInt8Plan::forward_requant against conv_u8_forward_ref, the bias and quantize_u8, on
// ResNet-20's and odd shapes (the plan runs oneDNN where it can, the reference elsewhere).
TEST(Int8Requant, PlanForwardMatchesDefinition) {
  uint64_t seed = 700;
  for (const ConvShape& s : shapes()) {
    const std::vector<uint8_t> qx = codes(s.x_size(), Fill::kRandom, ++seed),
                               qw = codes(s.w_size(), Fill::kRandom, ++seed);
    std::vector<float> y(static_cast<size_t>(s.y_size()));
    conv_u8_forward_ref(s, qx.data(), kX, qw.data(), kW, y.data());
    ConvInt8Plan plan(s);
    const int64_t np = s.oh() * s.ow();
    std::vector<float> bias;
    for (const auto& [name, rq] : requant_cases(y, s.cout, np, bias, ++seed)) {
      SCOPED_TRACE(s.str() + " " + name);
      const std::vector<uint8_t> want = compose(y, s.cout, np, rq);
      std::vector<uint8_t> got(want.size(), 0xEF);
      plan.forward_requant(qx.data(), kX, qw.data(), kW, rq, got.data());
      EXPECT_EQ(count_diff(want, got), 0);
    }
  }
}

TEST(Int8Requant, LinearForwardMatchesDefinition) {
  uint64_t seed = 900;
  for (auto [batch, in, out] :
       {std::array<int64_t, 3>{32, 64, 10}, std::array<int64_t, 3>{1, 7, 3},
        std::array<int64_t, 3>{5, 1000, 17}, std::array<int64_t, 3>{3, 33, 301},
        std::array<int64_t, 3>{256, 64, 300}}) {
    const std::vector<uint8_t> qx = codes(batch * in, Fill::kRandom, ++seed),
                               qw = codes(out * in, Fill::kRandom, ++seed);
    std::vector<float> y(static_cast<size_t>(batch * out));
    linear_u8_forward_ref(batch, in, out, qx.data(), kX, qw.data(), kW, y.data());
    std::vector<float> bias;
    for (const auto& [name, rq] : requant_cases(y, out, 1, bias, ++seed)) {
      SCOPED_TRACE("linear " + std::to_string(batch) + " x " + std::to_string(in) + " -> " +
                   std::to_string(out) + " " + name);
      const std::vector<uint8_t> want = compose(y, out, 1, rq);
      std::vector<uint8_t> ref(want.size(), 0xCD), fast(want.size(), 0xEF);
      linear_u8_forward_requant_ref(batch, in, out, qx.data(), kX, qw.data(), kW, rq, ref.data());
      linear_u8_forward_requant(batch, in, out, qx.data(), kX, qw.data(), kW, rq, fast.data());
      EXPECT_EQ(count_diff(want, ref), 0) << "reference";
      EXPECT_EQ(count_diff(want, fast), 0) << "fast";
    }
  }
}

// scale == 0 gives all-zero codes (NaN outputs included, as quantize_u8); invalid parameters
// are refused by every entry point, naming the values.
TEST(Int8Requant, DegenerateAndInvalidParameters) {
  const Int8Parts parts = random_parts(2, 3, 5, 7);
  const ConvShape s = shapes()[10];
  const std::vector<uint8_t> qx = codes(s.x_size(), Fill::kRandom, 1),
                             qw = codes(s.w_size(), Fill::kRandom, 2);
  ConvInt8Plan plan(s);
  const std::vector<float> bias(64, 0.5f);
  for (Rounding r : {Rounding::kNearestEven, Rounding::kStochastic}) {
    Requant rq;
    rq.out = qparams(1.5f, 1.5f);
    ASSERT_EQ(rq.out.scale, 0.0f);
    rq.rounding = r;
    rq.key.offset = 3;
    rq.bias = bias.data();
    std::vector<uint8_t> q(30, 0xAB);
    int8_epilogue_requant(parts, kX, kW, rq, q.data());
    EXPECT_EQ(q, std::vector<uint8_t>(30, 0));
    q.assign(30, 0xAB);
    int8_epilogue_requant_ref(parts, kX, kW, rq, q.data());
    EXPECT_EQ(q, std::vector<uint8_t>(30, 0));
    std::vector<uint8_t> qy(static_cast<size_t>(s.y_size()), 0xAB);
    plan.forward_requant(qx.data(), kX, qw.data(), kW, rq, qy.data());
    EXPECT_EQ(qy, std::vector<uint8_t>(qy.size(), 0));
    std::vector<uint8_t> ql(6, 0xAB);
    linear_u8_forward_requant(2, 4, 3, qx.data(), kX, qw.data(), kW, rq, ql.data());
    EXPECT_EQ(ql, std::vector<uint8_t>(6, 0));
    // NaN parameters of the operands give NaN outputs: still all 0 with scale 0.
    const QParams nan_a{std::nanf(""), 1.0f};
    q.assign(30, 0xAB);
    int8_epilogue_requant(parts, nan_a, kW, rq, q.data());
    EXPECT_EQ(q, std::vector<uint8_t>(30, 0));
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (QParams bad : {QParams{0.0f, -1.0f}, QParams{std::nanf(""), 0.1f}, QParams{0.0f, inf},
                      QParams{-inf, 0.1f}, QParams{0.0f, std::nanf("")}}) {
    Requant rq;
    rq.out = bad;
    std::vector<uint8_t> q(30), qy(static_cast<size_t>(s.y_size())), ql(6);
    auto expect_named = [&](auto&& f, const char* who) {
      try {
        f();
        ADD_FAILURE() << who << ": no throw for lo = " << bad.lo << ", scale = " << bad.scale;
      } catch (const std::invalid_argument& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find(who), std::string::npos) << m;
        EXPECT_NE(m.find("invalid parameters"), std::string::npos) << m;
        EXPECT_NE(m.find(fmt::format("lo = {}, scale = {}", bad.lo, bad.scale)), std::string::npos)
            << m;
      }
    };
    expect_named([&] { int8_epilogue_requant(parts, kX, kW, rq, q.data()); },
                 "int8_epilogue_requant");
    expect_named([&] { int8_epilogue_requant_ref(parts, kX, kW, rq, q.data()); },
                 "int8_epilogue_requant_ref");
    expect_named([&] { plan.forward_requant(qx.data(), kX, qw.data(), kW, rq, qy.data()); },
                 "ConvInt8Plan::forward_requant");
    expect_named(
        [&] { linear_u8_forward_requant(2, 4, 3, qx.data(), kX, qw.data(), kW, rq, ql.data()); },
        "linear_u8_forward_requant");
    expect_named(
        [&] {
          linear_u8_forward_requant_ref(2, 4, 3, qx.data(), kX, qw.data(), kW, rq, ql.data());
        },
        "linear_u8_forward_requant_ref");
  }
  // Parts whose vectors do not match their sizes, and a null output.
  Int8Parts broken = parts;
  broken.sum_w.pop_back();
  Requant rq;
  rq.out = qparams(0.0f, 1.0f);
  std::vector<uint8_t> q(30);
  EXPECT_THROW(int8_epilogue_requant(broken, kX, kW, rq, q.data()), std::invalid_argument);
  EXPECT_THROW(int8_epilogue_requant_ref(broken, kX, kW, rq, q.data()), std::invalid_argument);
  EXPECT_THROW(int8_epilogue_requant(parts, kX, kW, rq, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace spush::kernels
