// CPU layers: every backward (input and parameter gradients) against central finite differences
// of the loss L = sum(out * R) for a fixed random R; Conv2d and its gradients against a naive
// direct convolution; BatchNorm train/eval and running statistics against closed forms; Range
// BatchNorm / Range EvoNorm against a plain re-computation of their formulas; node
// independence (node 1's parameters and inputs never change node 0's outputs).
#include "spush/nets/layers.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "nets_test_util.h"
#include "spush/nets/model.h"

namespace spush::nets {
namespace {

using test::random_tensor;

// Values far (>= 0.02) from 0 and from each other, so ReLU kinks and max-pool ties are never
// crossed by a finite-difference step of 1e-3.
Tensor spaced_tensor(int64_t n, int64_t b, int64_t c, int64_t h, int64_t w, std::mt19937_64& rng) {
  Tensor t(n, b, c, h, w);
  std::vector<float> vals(t.data.size());
  for (size_t i = 0; i < vals.size(); ++i) {
    const float k = static_cast<float>(i) - static_cast<float>(vals.size()) / 2.0f;
    vals[i] = (k >= 0 ? k + 0.5f : k - 0.5f) * 0.04f;
  }
  std::shuffle(vals.begin(), vals.end(), rng);
  t.data = vals;
  return t;
}

// Declares the layer into a fresh layout and returns random parameters for `nodes` rows
// (normal, std `scale`, plus `shift`: norm layers get gamma ~ 1 + noise that way).
NodeMatrix declare_random(Layer& layer, Layout& layout, int64_t nodes, std::mt19937_64& rng,
                          float scale = 0.5f, float shift = 0.0f) {
  layer.declare(layout, "l");
  NodeMatrix p(nodes, layout.size());
  std::normal_distribution<float> d(shift, scale);
  for (int64_t r = 0; r < nodes; ++r)
    for (int64_t j = 0; j < p.cols(); ++j) p.row(r)[j] = d(rng);
  layer.set_nodes(nodes);
  return p;
}

struct GradCheck {
  double input_rel = 0, param_rel = 0;    // ||analytic - numeric|| / max norm
  double input_norm = 0, param_norm = 0;  // ||analytic||
  int64_t input_nonzero = 0, param_nonzero = 0;
};

double rel_err(const std::vector<double>& a, const std::vector<double>& b, double* norm_a) {
  double d = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (a[i] - b[i]) * (a[i] - b[i]);
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  *norm_a = std::sqrt(na);
  const double m = std::max(std::sqrt(na), std::sqrt(nb));
  return m == 0 ? 0 : std::sqrt(d) / m;
}

// Central differences (step eps) of L = sum(out * R), L accumulated in double.
GradCheck grad_check(Layer& layer, const Tensor& in, const NodeMatrix& params, bool train,
                     std::mt19937_64& rng, double eps = 1e-3) {
  Tensor out;
  layer.forward(in, out, params, train);
  Tensor r = random_tensor(out.nodes, out.batch, out.c, out.h, out.w, rng);
  NodeMatrix dparams(params.rows(), params.cols());
  Tensor dinp;
  layer.backward(in, out, r, &dinp, params, dparams);
  EXPECT_TRUE(dinp.same_shape(in)) << dinp.shape_str() << " vs " << in.shape_str();

  auto loss = [&](const Tensor& x, const NodeMatrix& p) {
    Tensor o;
    layer.forward(x, o, p, train);
    double s = 0;
    for (size_t i = 0; i < o.data.size(); ++i) s += static_cast<double>(o.data[i]) * r.data[i];
    return s;
  };
  GradCheck gc;
  std::vector<double> ana, num;
  Tensor x = in;
  for (size_t i = 0; i < x.data.size(); ++i) {
    const float v = x.data[i];
    x.data[i] = v + static_cast<float>(eps);
    const double lp = loss(x, params);
    x.data[i] = v - static_cast<float>(eps);
    const double lm = loss(x, params);
    x.data[i] = v;
    num.push_back((lp - lm) / (2 * eps));
    ana.push_back(dinp.data[i]);
    gc.input_nonzero += dinp.data[i] != 0.0f;
  }
  gc.input_rel = rel_err(ana, num, &gc.input_norm);
  ana.clear();
  num.clear();
  NodeMatrix p = params;
  for (int64_t row = 0; row < p.rows(); ++row) {
    for (int64_t j = 0; j < p.cols(); ++j) {
      const float v = p.row(row)[j];
      p.row(row)[j] = v + static_cast<float>(eps);
      const double lp = loss(in, p);
      p.row(row)[j] = v - static_cast<float>(eps);
      const double lm = loss(in, p);
      p.row(row)[j] = v;
      num.push_back((lp - lm) / (2 * eps));
      ana.push_back(dparams.row(row)[j]);
      gc.param_nonzero += dparams.row(row)[j] != 0.0f;
    }
  }
  gc.param_rel = rel_err(ana, num, &gc.param_norm);
  return gc;
}

constexpr double kTol = 1e-2;  // relative L2 error of the gradients, eps = 1e-3

void expect_grads(const GradCheck& gc, bool has_params, uint64_t seed) {
  EXPECT_LT(gc.input_rel, kTol) << "seed " << seed;
  EXPECT_GT(gc.input_nonzero, 0) << "seed " << seed;
  EXPECT_GT(gc.input_norm, 1e-3) << "seed " << seed;
  if (has_params) {
    EXPECT_LT(gc.param_rel, kTol) << "seed " << seed;
    EXPECT_GT(gc.param_nonzero, 0) << "seed " << seed;
    EXPECT_GT(gc.param_norm, 1e-3) << "seed " << seed;
  }
}

// ---- Conv2d -----------------------------------------------------------------------------------

struct ConvCase {
  int64_t cin, cout, kh, kw, sh, sw, ph, pw, h, w;
  bool bias;
};

const ConvCase kConvCases[] = {
    {3, 4, 3, 3, 1, 1, 1, 1, 6, 6, true},  {2, 3, 3, 3, 2, 2, 1, 1, 7, 7, false},
    {3, 5, 1, 1, 2, 2, 0, 0, 6, 5, false}, {1, 2, 5, 5, 1, 1, 2, 2, 6, 6, true},
    {2, 3, 2, 3, 2, 1, 0, 1, 5, 6, true},  {2, 2, 3, 3, 3, 3, 2, 2, 5, 5, true},
};

// out[n,b,o,i,j] = bias[o] + sum_{c,ki,kj} W[o,c,ki,kj] x[n,b,c,i*sh-ph+ki, j*sw-pw+kj].
Tensor naive_conv(const Conv2d& conv, const Tensor& x, const NodeMatrix& p) {
  const auto& s = conv.spec();
  const Shape3 os = conv.output_shape(x.shape3());
  Tensor y(x.nodes, x.batch, os.c, os.h, os.w);
  for (int64_t n = 0; n < x.nodes; ++n) {
    const float* wt = p.row(n) + conv.weight_offset();
    for (int64_t b = 0; b < x.batch; ++b)
      for (int64_t o = 0; o < s.out; ++o)
        for (int64_t i = 0; i < os.h; ++i)
          for (int64_t j = 0; j < os.w; ++j) {
            double acc = s.bias ? p.row(n)[conv.bias_offset() + o] : 0.0;
            for (int64_t c = 0; c < s.in; ++c)
              for (int64_t ki = 0; ki < s.kh; ++ki)
                for (int64_t kj = 0; kj < s.kw; ++kj) {
                  const int64_t ih = i * s.stride_h - s.pad_h + ki;
                  const int64_t iw = j * s.stride_w - s.pad_w + kj;
                  if (ih < 0 || ih >= x.h || iw < 0 || iw >= x.w) continue;
                  acc += static_cast<double>(wt[((o * s.in + c) * s.kh + ki) * s.kw + kj]) *
                         x.sample(n, b)[(c * x.h + ih) * x.w + iw];
                }
            y.sample(n, b)[(o * os.h + i) * os.w + j] = static_cast<float>(acc);
          }
  }
  return y;
}

// Naive gradients: dW, db, dx of L = sum(y * dy).
void naive_conv_backward(const Conv2d& conv, const Tensor& x, const Tensor& dy, const NodeMatrix& p,
                         NodeMatrix& dp, Tensor& dx) {
  const auto& s = conv.spec();
  dx.resize_like(x);
  dx.fill(0.0f);
  std::vector<double> dxd(x.data.size(), 0.0);
  for (int64_t n = 0; n < x.nodes; ++n) {
    const float* wt = p.row(n) + conv.weight_offset();
    std::vector<double> dw(static_cast<size_t>(s.out * s.in * s.kh * s.kw), 0.0),
        db(static_cast<size_t>(s.out), 0.0);
    for (int64_t b = 0; b < x.batch; ++b)
      for (int64_t o = 0; o < s.out; ++o)
        for (int64_t i = 0; i < dy.h; ++i)
          for (int64_t j = 0; j < dy.w; ++j) {
            const double g = dy.sample(n, b)[(o * dy.h + i) * dy.w + j];
            db[o] += g;
            for (int64_t c = 0; c < s.in; ++c)
              for (int64_t ki = 0; ki < s.kh; ++ki)
                for (int64_t kj = 0; kj < s.kw; ++kj) {
                  const int64_t ih = i * s.stride_h - s.pad_h + ki;
                  const int64_t iw = j * s.stride_w - s.pad_w + kj;
                  if (ih < 0 || ih >= x.h || iw < 0 || iw >= x.w) continue;
                  const int64_t widx = ((o * s.in + c) * s.kh + ki) * s.kw + kj;
                  const int64_t xidx =
                      (n * x.batch + b) * x.sample_stride() + (c * x.h + ih) * x.w + iw;
                  dw[widx] += g * x.data[xidx];
                  dxd[xidx] += g * wt[widx];
                }
          }
    for (size_t k = 0; k < dw.size(); ++k)
      dp.row(n)[conv.weight_offset() + k] = static_cast<float>(dw[k]);
    if (s.bias)
      for (int64_t o = 0; o < s.out; ++o)
        dp.row(n)[conv.bias_offset() + o] = static_cast<float>(db[o]);
  }
  for (size_t k = 0; k < dxd.size(); ++k) dx.data[k] = static_cast<float>(dxd[k]);
}

double max_abs_diff(const float* a, const float* b, int64_t n, double* max_ref = nullptr) {
  double m = 0, r = 0;
  for (int64_t i = 0; i < n; ++i) {
    m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
    r = std::max(r, static_cast<double>(std::fabs(b[i])));
  }
  if (max_ref) *max_ref = r;
  return m;
}

TEST(Conv2d, ForwardMatchesNaiveConvolution) {
  uint64_t seed = 11;
  for (const auto& cc : kConvCases) {
    std::mt19937_64 rng(++seed);
    Conv2d conv(Conv2dSpec{cc.cin, cc.cout, cc.kh, cc.kw, cc.sh, cc.sw, cc.ph, cc.pw, cc.bias});
    Layout lay;
    NodeMatrix p = declare_random(conv, lay, 3, rng);
    Tensor x = random_tensor(3, 4, cc.cin, cc.h, cc.w, rng);
    Tensor y;
    y.fill(123.0f);
    conv.forward(x, y, p, true);
    const Tensor ref = naive_conv(conv, x, p);
    ASSERT_TRUE(y.same_shape(ref)) << y.shape_str() << " vs " << ref.shape_str();
    double rmax;
    EXPECT_LT(max_abs_diff(y.data.data(), ref.data.data(), ref.numel(), &rmax), 1e-4)
        << conv.describe() << " seed " << seed;
    EXPECT_GT(rmax, 0.1);
  }
}

TEST(Conv2d, OutputShapes) {
  Conv2d c1(3, 16, 3, 1, 1, false);
  EXPECT_EQ(c1.output_shape({3, 32, 32}), (Shape3{16, 32, 32}));
  Conv2d c2(16, 32, 3, 2, 1, false);
  EXPECT_EQ(c2.output_shape({16, 32, 32}), (Shape3{32, 16, 16}));
  EXPECT_EQ(c2.output_shape({16, 7, 7}), (Shape3{32, 4, 4}));
  Conv2d c3(1, 6, 5, 1, 0);
  EXPECT_EQ(c3.output_shape({1, 32, 32}), (Shape3{6, 28, 28}));
  EXPECT_THROW(c3.output_shape({1, 4, 4}), std::invalid_argument);
  EXPECT_THROW(c3.output_shape({2, 32, 32}), std::invalid_argument);
  EXPECT_THROW(Conv2d(0, 4, 3), std::invalid_argument);
  EXPECT_THROW(Conv2d(1, 4, 3, 0), std::invalid_argument);
  EXPECT_EQ(c1.num_params(), 16 * 3 * 9);
  EXPECT_EQ(c3.num_params(), 6 * 25 + 6);
}

TEST(Conv2d, GradientsMatchFiniteDifferences) {
  uint64_t seed = 100;
  for (const auto& cc : kConvCases) {
    std::mt19937_64 rng(++seed);
    Conv2d conv(Conv2dSpec{cc.cin, cc.cout, cc.kh, cc.kw, cc.sh, cc.sw, cc.ph, cc.pw, cc.bias});
    Layout lay;
    NodeMatrix p = declare_random(conv, lay, 2, rng);
    Tensor x = random_tensor(2, 2, cc.cin, cc.h, cc.w, rng);
    SCOPED_TRACE(conv.describe());
    expect_grads(grad_check(conv, x, p, true, rng), true, seed);
  }
}

// Larger shapes (several im2col chunks per task) and both task splits: one node (the batch is
// split across threads, partial weight gradients summed) and several nodes (one task each).
TEST(Conv2d, BackwardMatchesNaiveGradients) {
  for (int64_t nodes : {1, 3}) {
    for (int threads : {1, 2}) {
      const uint64_t seed = 1000 + nodes * 10 + threads;
      std::mt19937_64 rng(seed);
      omp_set_num_threads(threads);
      // K*P = 72*576: three samples per im2col chunk; 16*8*576*72 multiply-adds per node is
      // enough work for the parallel path.
      Conv2d conv(8, 8, 3, 1, 1, true);
      Layout lay;
      NodeMatrix p = declare_random(conv, lay, nodes, rng);
      Tensor x = random_tensor(nodes, 16, 8, 24, 24, rng);
      Tensor y;
      conv.forward(x, y, p, true);
      Tensor dy = random_tensor(nodes, 16, 8, 24, 24, rng);
      NodeMatrix dp(nodes, lay.size()), dp_ref(nodes, lay.size());
      dp.fill(0.5f);  // gradients accumulate onto existing values
      Tensor dx, dx_ref;
      conv.backward(x, y, dy, &dx, p, dp);
      naive_conv_backward(conv, x, dy, p, dp_ref, dx_ref);
      double rmax;
      EXPECT_LT(max_abs_diff(dx.data.data(), dx_ref.data.data(), dx.numel(), &rmax), 2e-4)
          << "seed " << seed;
      // Each gradient is an fp32 sum of n = 16 * 576 terms (in an order the implementation
      // chooses: oneDNN's differs from im2col's); the rounding error of such a sum is a random
      // walk of standard deviation about u sqrt(n / 2) sqrt(sum terms^2) for sequential order,
      // less for blocked orders. Allow 4 u sqrt(n) sqrt(sum terms^2), sum terms^2 being the
      // naive gradient of the squared inputs, and never less than the former 1e-4 relative.
      Tensor x2 = x, dy2 = dy, dx_unused;
      for (auto& v : x2.data) v *= v;
      for (auto& v : dy2.data) v *= v;
      NodeMatrix dp_sq(nodes, lay.size());
      naive_conv_backward(conv, x2, dy2, p, dp_sq, dx_unused);
      const double walk = 4.0 * std::sqrt(16.0 * 576.0) / 16777216.0;
      for (int64_t n = 0; n < nodes; ++n) {
        for (int64_t j = 0; j < lay.size(); ++j) {
          ASSERT_NEAR(dp.row(n)[j] - 0.5f, dp_ref.row(n)[j],
                      std::max(1e-4 * std::max(1.0f, std::fabs(dp_ref.row(n)[j])),
                               walk * std::sqrt(static_cast<double>(dp_sq.row(n)[j]))))
              << "node " << n << " param " << j << " seed " << seed;
        }
      }
    }
  }
  omp_set_num_threads(2);
}

// ---- Linear -----------------------------------------------------------------------------------

TEST(Linear, ForwardMatchesMatrixProduct) {
  std::mt19937_64 rng(7);
  Linear fc(5, 3);
  Layout lay;
  NodeMatrix p = declare_random(fc, lay, 2, rng);
  Tensor x = random_tensor(2, 4, 5, 1, 1, rng);
  Tensor y;
  fc.forward(x, y, p, true);
  ASSERT_EQ(y.shape3(), (Shape3{3, 1, 1}));
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t b = 0; b < 4; ++b)
      for (int64_t o = 0; o < 3; ++o) {
        double acc = p.row(n)[15 + o];
        for (int64_t i = 0; i < 5; ++i) acc += p.row(n)[o * 5 + i] * x.sample(n, b)[i];
        EXPECT_NEAR(y.sample(n, b)[o], acc, 1e-5);
      }
}

TEST(Linear, GradientsMatchFiniteDifferences) {
  for (bool bias : {true, false}) {
    const uint64_t seed = bias ? 21 : 22;
    std::mt19937_64 rng(seed);
    Linear fc(6, 4, bias);
    Layout lay;
    NodeMatrix p = declare_random(fc, lay, 2, rng);
    Tensor x = random_tensor(2, 3, 6, 1, 1, rng);
    expect_grads(grad_check(fc, x, p, true, rng), true, seed);
  }
  // One node: with two threads its batch is split in two tasks whose weight gradients are
  // summed afterwards.
  {
    std::mt19937_64 rng(24);
    Linear fc(7, 5);
    Layout lay;
    NodeMatrix p = declare_random(fc, lay, 1, rng);
    Tensor x = random_tensor(1, 5, 7, 1, 1, rng);
    expect_grads(grad_check(fc, x, p, true, rng), true, 24);
  }
  // A [c, h, w] input is read as c*h*w features.
  std::mt19937_64 rng(23);
  Linear fc(12, 3);
  Layout lay;
  NodeMatrix p = declare_random(fc, lay, 2, rng);
  Tensor x = random_tensor(2, 3, 3, 2, 2, rng);
  expect_grads(grad_check(fc, x, p, true, rng), true, 23);
  EXPECT_THROW(fc.output_shape({5, 1, 1}), std::invalid_argument);
}

// ---- parameter-free layers --------------------------------------------------------------------

TEST(ParameterFree, GradientsMatchFiniteDifferences) {
  const uint64_t seed = 31;
  std::mt19937_64 rng(seed);
  NodeMatrix none(2, 0);
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::make_unique<ReLU>());
  layers.push_back(std::make_unique<MaxPool2d>(2));
  layers.push_back(std::make_unique<MaxPool2d>(3, 2, 1));
  layers.push_back(std::make_unique<AvgPool2d>(2));
  layers.push_back(std::make_unique<AvgPool2d>(3, 2, 1));
  layers.push_back(std::make_unique<GlobalAvgPool>());
  layers.push_back(std::make_unique<Flatten>());
  layers.push_back(std::make_unique<ZeroPadShortcut>(3, 3, 1));
  layers.push_back(std::make_unique<ZeroPadShortcut>(3, 7, 2));
  for (auto& l : layers) {
    SCOPED_TRACE(l->describe());
    Tensor x = spaced_tensor(2, 2, 3, 5, 5, rng);
    expect_grads(grad_check(*l, x, none, true, rng), false, seed);
  }
}

TEST(ParameterFree, ForwardValues) {
  NodeMatrix none(1, 0);
  Tensor x(1, 1, 1, 4, 4);
  std::iota(x.data.begin(), x.data.end(), 0.0f);  // 0..15 row-major
  x.data[5] = -100.0f;
  Tensor y;
  MaxPool2d mp(2);
  mp.forward(x, y, none, true);
  EXPECT_EQ(y.data, (std::vector<float>{4, 7, 13, 15}));
  AvgPool2d ap(2);
  ap.forward(x, y, none, true);
  EXPECT_FLOAT_EQ(y.data[0], (0 + 1 + 4 - 100) / 4.0f);
  EXPECT_FLOAT_EQ(y.data[3], (10 + 11 + 14 + 15) / 4.0f);
  MaxPool2d mp3(3, 2, 1);  // padding never wins, even against negative values
  Tensor neg(1, 1, 1, 3, 3);
  neg.fill(-5.0f);
  mp3.forward(neg, y, none, true);
  EXPECT_EQ(y.data, (std::vector<float>{-5, -5, -5, -5}));
  GlobalAvgPool gp;
  gp.forward(x, y, none, true);
  EXPECT_FLOAT_EQ(y.data[0], (120.0f - 5.0f - 100.0f) / 16.0f);
  ReLU relu;
  relu.forward(x, y, none, true);
  EXPECT_EQ(y.data[5], 0.0f);
  EXPECT_EQ(y.data[6], 6.0f);
  // Option-A shortcut: 2 -> 6 channels (2 zero channels before, 2 after), stride 2.
  Tensor s(1, 1, 2, 3, 3);
  std::iota(s.data.begin(), s.data.end(), 1.0f);
  ZeroPadShortcut zp(2, 6, 2);
  zp.forward(s, y, none, true);
  ASSERT_EQ(y.shape3(), (Shape3{6, 2, 2}));
  const std::vector<float> expect = {0,  0,  0,  0,  0, 0, 0, 0, 1, 3, 7, 9,
                                     10, 12, 16, 18, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(y.data, expect);
  EXPECT_THROW(MaxPool2d(2).output_shape({1, 1, 1}), std::invalid_argument);
  EXPECT_THROW(MaxPool2d(0), std::invalid_argument);
}

// ---- normalization ----------------------------------------------------------------------------

TEST(BatchNorm2d, GradientsMatchFiniteDifferencesTrainAndEval) {
  for (bool train : {true, false}) {
    const uint64_t seed = train ? 41 : 42;
    std::mt19937_64 rng(seed);
    BatchNorm2d bn(3);
    Layout lay;
    NodeMatrix p = declare_random(bn, lay, 2, rng, 0.3f, 1.0f);
    // Non-trivial running statistics for the eval path.
    for (auto& v : bn.running_mean()) v = 0.3f;
    for (auto& v : bn.running_var()) v = 1.7f;
    Tensor x = random_tensor(2, 3, 3, 3, 2, rng, 1.5f);
    SCOPED_TRACE(train ? "train" : "eval");
    expect_grads(grad_check(bn, x, p, train, rng), true, seed);
  }
}

TEST(BatchNorm2d, TrainEvalAndRunningStatistics) {
  const uint64_t seed = 43;
  std::mt19937_64 rng(seed);
  const int64_t nodes = 2, batch = 5, c = 3, hw = 4;
  BatchNorm2d bn(c);
  Layout lay;
  bn.declare(lay, "bn");
  NodeMatrix p(nodes, lay.size());
  std::mt19937_64 init_rng(1);
  bn.init(p.row(0), init_rng);
  bn.init(p.row(1), init_rng);
  p.row(1)[0] = 2.0f;  // node 1: gamma[0] = 2, beta[1] = -1
  p.row(1)[c + 1] = -1.0f;
  Tensor scratch;
  EXPECT_THROW(bn.forward(Tensor(nodes, batch, c, 2, 2), scratch, p, true),
               std::invalid_argument);  // buffers not sized yet
  bn.set_nodes(nodes);
  ASSERT_EQ(bn.buffers().size(), 2u);
  EXPECT_EQ(bn.buffers()[0].name, "bn.running_mean");
  Tensor x = random_tensor(nodes, batch, c, 2, 2, rng, 2.0f);
  for (auto& v : x.data) v += 3.0f;
  Tensor y;
  bn.forward(x, y, p, true);
  for (int64_t n = 0; n < nodes; ++n)
    for (int64_t ch = 0; ch < c; ++ch) {
      double s = 0, q = 0, ys = 0, yq = 0;
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < hw; ++i) {
          const double v = x.sample(n, b)[ch * hw + i], w = y.sample(n, b)[ch * hw + i];
          s += v;
          q += v * v;
          ys += w;
          yq += w * w;
        }
      const double m = batch * hw, mean = s / m, var = q / m - mean * mean;
      const double gamma = p.row(n)[ch], beta = p.row(n)[c + ch];
      EXPECT_NEAR(ys / m, beta, 1e-4) << "seed " << seed;
      EXPECT_NEAR(yq / m - (ys / m) * (ys / m), gamma * gamma * var / (var + 1e-5), 1e-3);
      EXPECT_NEAR(bn.running_mean()[n * c + ch], 0.1 * mean, 1e-4);
      EXPECT_NEAR(bn.running_var()[n * c + ch], 0.9 + 0.1 * var * m / (m - 1), 1e-4);
    }
  // Eval uses the running statistics, and does not change them.
  const std::vector<float> rm = bn.running_mean(), rv = bn.running_var();
  bn.forward(x, y, p, false);
  EXPECT_EQ(bn.running_mean(), rm);
  EXPECT_EQ(bn.running_var(), rv);
  for (int64_t n = 0; n < nodes; ++n)
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t i = 0; i < hw; ++i) {
          const double v = x.sample(n, b)[ch * hw + i];
          const double e = (v - rm[n * c + ch]) / std::sqrt(rv[n * c + ch] + 1e-5) * p.row(n)[ch] +
                           p.row(n)[c + ch];
          EXPECT_NEAR(y.sample(n, b)[ch * hw + i], e, 1e-4);
        }
  // Node 1's batch does not move node 0's running statistics.
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < c * hw; ++i) x.sample(1, b)[i] += 50.0f;
  BatchNorm2d bn2(c);
  Layout lay2;
  bn2.declare(lay2, "bn");
  bn2.set_nodes(nodes);
  bn2.forward(x, y, p, true);
  for (int64_t ch = 0; ch < c; ++ch) EXPECT_FLOAT_EQ(bn2.running_mean()[ch], rm[ch]);
}

TEST(GroupNorm, GradientsMatchFiniteDifferences) {
  for (int64_t groups : {1, 2, 4}) {
    const uint64_t seed = 50 + groups;
    std::mt19937_64 rng(seed);
    GroupNorm gn(groups, 4);
    Layout lay;
    NodeMatrix p = declare_random(gn, lay, 2, rng, 0.3f, 1.0f);
    Tensor x = random_tensor(2, 2, 4, 3, 2, rng, 1.5f);
    SCOPED_TRACE(gn.describe());
    expect_grads(grad_check(gn, x, p, true, rng), true, seed);
  }
  EXPECT_THROW(GroupNorm(3, 4), std::invalid_argument);
}

TEST(GroupNorm, NormalizesEachSampleAndGroup) {
  std::mt19937_64 rng(57);
  GroupNorm gn(2, 4);
  Layout lay;
  gn.declare(lay, "gn");
  NodeMatrix p(1, lay.size());
  gn.init(p.row(0), rng);
  Tensor x = random_tensor(1, 3, 4, 2, 2, rng, 3.0f);
  for (int64_t i = 0; i < 8; ++i) x.sample(0, 1)[i] += 10.0f;  // first group of sample 1
  Tensor y;
  gn.forward(x, y, p, true);
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t g = 0; g < 2; ++g) {
      double s = 0, q = 0;
      for (int64_t i = 0; i < 8; ++i) {
        const double v = y.sample(0, b)[g * 8 + i];
        s += v;
        q += v * v;
      }
      EXPECT_NEAR(s / 8, 0.0, 1e-5);
      EXPECT_NEAR(q / 8, 1.0, 1e-3);
    }
}

TEST(EvoNormS0, ForwardMatchesFormula) {
  std::mt19937_64 rng(61);
  EvoNormS0 evo(2, 4);
  Layout lay;
  NodeMatrix p = declare_random(evo, lay, 1, rng, 0.5f, 0.5f);
  Tensor x = random_tensor(1, 2, 4, 3, 3, rng, 2.0f);
  Tensor y;
  evo.forward(x, y, p, true);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t g = 0; g < 2; ++g) {
      const float* xs = x.sample(0, b) + g * 18;
      double s = 0, q = 0;
      for (int64_t i = 0; i < 18; ++i) s += xs[i];
      for (int64_t i = 0; i < 18; ++i) q += (xs[i] - s / 18) * (xs[i] - s / 18);
      const double sd = std::sqrt(q / 18 + 1e-5);
      for (int64_t c = 0; c < 2; ++c)
        for (int64_t i = 0; i < 9; ++i) {
          const int64_t ch = g * 2 + c;
          const double v = xs[c * 9 + i];
          const double gamma = p.row(0)[ch], beta = p.row(0)[4 + ch], vv = p.row(0)[8 + ch];
          const double e = v / (1 + std::exp(-vv * v)) / sd * gamma + beta;
          EXPECT_NEAR(y.sample(0, b)[ch * 9 + i], e, 1e-5);
        }
    }
  // Initialization: gamma = v = 1, beta = 0.
  std::vector<float> row(static_cast<size_t>(lay.size()), -3.0f);
  evo.init(row.data(), rng);
  EXPECT_EQ(row, (std::vector<float>{1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1}));
}

TEST(EvoNormS0, GradientsMatchFiniteDifferences) {
  for (int64_t groups : {1, 2}) {
    const uint64_t seed = 70 + groups;
    std::mt19937_64 rng(seed);
    EvoNormS0 evo(groups, 4);
    Layout lay;
    NodeMatrix p = declare_random(evo, lay, 2, rng, 0.4f, 0.8f);
    Tensor x = random_tensor(2, 2, 4, 3, 2, rng, 1.5f);
    SCOPED_TRACE(evo.describe());
    expect_grads(grad_check(evo, x, p, true, rng), true, seed);
  }
}

// ---- range normalization ----------------------------------------------------------------------

// The range scale of xs (in their order) as layers.h documents it, written out plainly.
double ref_range_scale(const std::vector<double>& xs) {
  const int64_t n = static_cast<int64_t>(xs.size());
  if (n < 2) return 0.0;
  const int64_t k = std::min<int64_t>(16, std::max<int64_t>(1, n / 2));
  double sum = 0.0;
  for (int64_t j = 0; j < k; ++j) {
    const auto lo = xs.begin() + j * n / k, hi = xs.begin() + (j + 1) * n / k;
    sum += *std::max_element(lo, hi) - *std::min_element(lo, hi);
  }
  const double c = 0.175 * (1.0 + std::sqrt(M_PI * std::log(4.0)));
  return c / std::sqrt(2.0 * std::log(static_cast<double>(n) / static_cast<double>(k))) * sum /
         static_cast<double>(k);
}

TEST(RangeNorm, ChunksAndScaleFactor) {
  EXPECT_EQ(range_chunks(1), 1);
  EXPECT_EQ(range_chunks(3), 1);
  EXPECT_EQ(range_chunks(8), 4);
  EXPECT_EQ(range_chunks(31), 15);
  EXPECT_EQ(range_chunks(32), 16);
  EXPECT_EQ(range_chunks(45), 16);
  EXPECT_EQ(range_scale_factor(1), 0.0);
  EXPECT_NEAR(kRangeScale, 0.175 * (1.0 + std::sqrt(M_PI * std::log(4.0))), 1e-15);
  EXPECT_NEAR(range_scale_factor(16 * 64), kRangeScale / std::sqrt(2.0 * std::log(64.0)), 1e-12);
  // Gaussian data: s is close to (a little below) the standard deviation for large chunks.
  std::mt19937_64 rng(100);
  std::normal_distribution<double> d(0.0, 2.0);
  std::vector<double> xs(16 * 512);
  for (auto& v : xs) v = d(rng);
  const double s = ref_range_scale(xs);
  EXPECT_GT(s, 0.8 * 2.0);
  EXPECT_LT(s, 1.05 * 2.0);
}

TEST(RangeBatchNorm2d, ForwardRunningStatisticsEvalAndBuffers) {
  struct Case {
    int64_t batch, h, w;  // n = batch h w elements per channel: K = 16 uneven, 4, 1, 1 chunks
  };
  for (const Case& cs : {Case{5, 3, 3}, Case{2, 2, 2}, Case{1, 1, 3}, Case{1, 1, 1}}) {
    const int64_t nodes = 2, c = 3, hw = cs.h * cs.w, n = cs.batch * hw;
    SCOPED_TRACE("n = " + std::to_string(n));
    std::mt19937_64 rng(110 + n);
    RangeBatchNorm2d bn(c);
    Layout lay;
    NodeMatrix p = declare_random(bn, lay, nodes, rng, 0.3f, 1.0f);
    ASSERT_EQ(bn.buffers().size(), 2u);
    EXPECT_EQ(bn.buffers()[0].name, "l.running_mean");
    EXPECT_EQ(bn.buffers()[1].name, "l.running_scale");
    EXPECT_EQ(bn.buffers()[1].per_node, c);
    EXPECT_EQ(bn.running_scale(), std::vector<float>(nodes * c, 1.0f));
    Tensor x = random_tensor(nodes, cs.batch, c, cs.h, cs.w, rng, 2.0f);
    for (auto& v : x.data) v += 1.5f;
    Tensor y;
    bn.forward(x, y, p, true);
    for (int64_t nd = 0; nd < nodes; ++nd)
      for (int64_t ch = 0; ch < c; ++ch) {
        std::vector<double> xs;  // the channel in (batch, h, w) order
        for (int64_t b = 0; b < cs.batch; ++b)
          for (int64_t i = 0; i < hw; ++i) xs.push_back(x.sample(nd, b)[ch * hw + i]);
        const double mu = std::accumulate(xs.begin(), xs.end(), 0.0) / n;
        const double s = ref_range_scale(xs);
        const double gamma = p.row(nd)[ch], beta = p.row(nd)[c + ch];
        for (int64_t b = 0; b < cs.batch; ++b)
          for (int64_t i = 0; i < hw; ++i) {
            const double e = (x.sample(nd, b)[ch * hw + i] - mu) / (s + 1e-5) * gamma + beta;
            EXPECT_NEAR(y.sample(nd, b)[ch * hw + i], e, 1e-4 * std::max(1.0, std::fabs(e)));
          }
        EXPECT_NEAR(bn.running_mean()[nd * c + ch], 0.1 * mu, 1e-5);
        EXPECT_NEAR(bn.running_scale()[nd * c + ch], 0.9 + 0.1 * s, 1e-5);
      }
    // Eval uses the running statistics (set to distinct values here) and leaves them alone.
    for (int64_t j = 0; j < nodes * c; ++j) {
      bn.running_mean()[j] = 0.2f * static_cast<float>(j) - 0.5f;
      bn.running_scale()[j] = 0.5f + 0.25f * static_cast<float>(j);
    }
    const std::vector<float> rm = bn.running_mean(), rs = bn.running_scale();
    bn.forward(x, y, p, false);
    EXPECT_EQ(bn.running_mean(), rm);
    EXPECT_EQ(bn.running_scale(), rs);
    for (int64_t nd = 0; nd < nodes; ++nd)
      for (int64_t b = 0; b < cs.batch; ++b)
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t i = 0; i < hw; ++i) {
            const double e = (x.sample(nd, b)[ch * hw + i] - rm[nd * c + ch]) /
                                 (rs[nd * c + ch] + 1e-5) * p.row(nd)[ch] +
                             p.row(nd)[c + ch];
            EXPECT_NEAR(y.sample(nd, b)[ch * hw + i], e, 1e-5 * std::max(1.0, std::fabs(e)));
          }
    // Restoring the buffers into a fresh layer (what a checkpoint does) gives the same outputs.
    RangeBatchNorm2d bn2(c);
    Layout lay2;
    bn2.declare(lay2, "l");
    bn2.set_nodes(nodes);
    Tensor y2;
    bn2.forward(x, y2, p, false);
    EXPECT_NE(y2.data, y.data);
    auto src = bn.buffers(), dst = bn2.buffers();
    for (size_t i = 0; i < src.size(); ++i) {
      ASSERT_EQ(src[i].name, dst[i].name);
      *dst[i].data = *src[i].data;
    }
    bn2.forward(x, y2, p, false);
    EXPECT_EQ(y2.data, y.data);
  }
  // A constant channel: zero range, eps keeps the output finite (= beta).
  RangeBatchNorm2d bn(1);
  Layout lay;
  std::mt19937_64 rng(119);
  NodeMatrix p = declare_random(bn, lay, 1, rng);
  Tensor x(1, 4, 1, 2, 2);
  x.fill(3.0f);
  Tensor y;
  bn.forward(x, y, p, true);
  for (float v : y.data) EXPECT_FLOAT_EQ(v, p.row(0)[1]);
  EXPECT_THROW(RangeBatchNorm2d(0), std::invalid_argument);
}

TEST(RangeBatchNorm2d, GradientsMatchFiniteDifferencesTrainAndEval) {
  // Shapes with 2-element chunks (n = 18: every element is a chunk's max or min) and with
  // uneven chunks (n = 45, K = 16). spaced_tensor keeps values 0.04 apart: a step of 1e-3
  // never changes a chunk's arg-max or arg-min.
  for (bool train : {true, false})
    for (int64_t batch : {3, 5}) {
      const uint64_t seed = 120 + 2 * batch + (train ? 1 : 0);
      std::mt19937_64 rng(seed);
      RangeBatchNorm2d bn(3);
      Layout lay;
      NodeMatrix p = declare_random(bn, lay, 2, rng, 0.3f, 1.0f);
      for (auto& v : bn.running_mean()) v = 0.3f;
      for (auto& v : bn.running_scale()) v = 1.7f;
      const int64_t h = 3, w = batch == 3 ? 2 : 3;
      Tensor x = spaced_tensor(2, batch, 3, h, w, rng);
      SCOPED_TRACE(std::string(train ? "train" : "eval") + ", batch " + std::to_string(batch));
      expect_grads(grad_check(bn, x, p, train, rng), true, seed);
    }
}

TEST(RangeEvoNorm, ForwardMatchesFormula) {
  struct Case {
    int64_t groups, channels, h, w;  // group size m = 18 (K = 9) and 100 (K = 16, uneven)
  };
  for (const Case& cs : {Case{2, 4, 3, 3}, Case{1, 4, 5, 5}}) {
    std::mt19937_64 rng(130 + cs.groups);
    RangeEvoNorm evo(cs.groups, cs.channels);
    Layout lay;
    NodeMatrix p = declare_random(evo, lay, 2, rng, 0.5f, 0.5f);
    Tensor x = random_tensor(2, 3, cs.channels, cs.h, cs.w, rng, 3.0f);
    Tensor y;
    evo.forward(x, y, p, true);
    const int64_t hw = cs.h * cs.w, cg = cs.channels / cs.groups, c = cs.channels;
    int64_t saturated = 0, linear = 0;
    for (int64_t nd = 0; nd < 2; ++nd)
      for (int64_t b = 0; b < 3; ++b)
        for (int64_t g = 0; g < cs.groups; ++g) {
          const float* xs = x.sample(nd, b) + g * cg * hw;
          const double s = ref_range_scale(std::vector<double>(xs, xs + cg * hw));
          for (int64_t cc = 0; cc < cg; ++cc)
            for (int64_t i = 0; i < hw; ++i) {
              const int64_t ch = g * cg + cc;
              const double v = xs[cc * hw + i];
              const double gamma = p.row(nd)[ch], beta = p.row(nd)[c + ch];
              const double vv = p.row(nd)[2 * c + ch];
              const double hs = std::clamp(vv * v / 6.0 + 0.5, 0.0, 1.0);
              (hs == 0.0 || hs == 1.0 ? saturated : linear) += 1;
              const double e = v * hs / (s + 1e-5) * gamma + beta;
              EXPECT_NEAR(y.sample(nd, b)[ch * hw + i], e, 1e-5 * std::max(1.0, std::fabs(e)));
            }
        }
    EXPECT_GT(saturated, 0);  // both parts of the hard sigmoid were exercised
    EXPECT_GT(linear, 0);
    // Train and eval compute the same thing (no running statistics).
    Tensor ye;
    evo.forward(x, ye, p, false);
    EXPECT_EQ(ye.data, y.data);
    EXPECT_TRUE(evo.buffers().empty());
  }
  // Initialization: gamma = v = 1, beta = 0.
  RangeEvoNorm evo(2, 4);
  Layout lay;
  evo.declare(lay, "e");
  EXPECT_GE(lay.find("e.v"), 0);
  std::vector<float> row(static_cast<size_t>(lay.size()), -3.0f);
  std::mt19937_64 rng(1);
  evo.init(row.data(), rng);
  EXPECT_EQ(row, (std::vector<float>{1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1}));
  EXPECT_THROW(RangeEvoNorm(3, 4), std::invalid_argument);
}

TEST(RangeEvoNorm, GradientsMatchFiniteDifferences) {
  for (int64_t groups : {1, 2}) {
    const uint64_t seed = 140 + groups;
    std::mt19937_64 rng(seed);
    RangeEvoNorm evo(groups, 4);
    Layout lay;
    NodeMatrix p = declare_random(evo, lay, 2, rng, 0.4f, 1.0f);
    // Spaced values x = 0.1 (k + 1/2), |x| <= 4.75, so that v x reaches both flat parts of the
    // hard sigmoid; chunk arg-max/arg-min never change under a step of 1e-3. v such that 30 / v
    // is an integer keeps every v x at least 0.04 from the kinks at +-3.
    Tensor x = spaced_tensor(2, 2, 4, 3, 2, rng);
    for (auto& v : x.data) v *= 2.5f;
    const float vs[2][4] = {{1.0f, 1.5f, -1.2f, 0.75f}, {1.25f, -1.0f, 2.0f, 0.6f}};
    for (int64_t nd = 0; nd < 2; ++nd)
      for (int64_t ch = 0; ch < 4; ++ch) p.row(nd)[8 + ch] = vs[nd][ch];
    // No v x within 0.02 of a kink (a step of 1e-3 in x or v moves v x by at most
    // 1e-3 * max(|v|, |x|) < 0.005 here, so it never crosses one).
    int64_t saturated = 0;
    for (int64_t nd = 0; nd < 2; ++nd)
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t ch = 0; ch < 4; ++ch)
          for (int64_t i = 0; i < 6; ++i) {
            const double z = p.row(nd)[8 + ch] * x.sample(nd, b)[ch * 6 + i];
            ASSERT_GT(std::fabs(std::fabs(z) - 3.0), 0.02) << "seed " << seed;
            saturated += std::fabs(z) > 3.0;
          }
    EXPECT_GT(saturated, 0) << "seed " << seed;
    SCOPED_TRACE(evo.describe());
    expect_grads(grad_check(evo, x, p, true, rng), true, seed);
  }
}

// ---- composites -------------------------------------------------------------------------------

TEST(BasicBlock, GradientsMatchFiniteDifferences) {
  const uint64_t seed = 81;
  for (int variant = 0; variant < 3; ++variant) {
    std::mt19937_64 rng(seed + variant);
    auto main = std::make_unique<Sequential>();
    main->add("conv1", std::make_unique<Conv2d>(2, 4, 3, 2, 1, false));
    if (variant == 2)
      main->add("norm1", std::make_unique<EvoNormS0>(2, 4));
    else
      main->add("norm1", std::make_unique<GroupNorm>(2, 4));
    if (variant != 2) main->add("relu1", std::make_unique<ReLU>());
    main->add("conv2", std::make_unique<Conv2d>(4, 4, 3, 1, 1, false));
    main->add("norm2", std::make_unique<BatchNorm2d>(4));
    auto sc = std::make_unique<Sequential>();
    if (variant == 1) {
      sc->add("conv", std::make_unique<Conv2d>(2, 4, 1, 2, 0, false));
      sc->add("norm", std::make_unique<GroupNorm>(2, 4));
    } else {
      sc->add("pad", std::make_unique<ZeroPadShortcut>(2, 4, 2));
    }
    BasicBlock block(std::move(main), std::move(sc), variant != 2);
    Layout lay;
    NodeMatrix p = declare_random(block, lay, 2, rng, 0.4f);
    for (const auto& s : lay.segments())  // norm gammas near 1
      if (s.name.find("norm") != std::string::npos && s.name.find("weight") != std::string::npos)
        for (int64_t r = 0; r < 2; ++r)
          for (int64_t j = 0; j < s.size; ++j) p.row(r)[s.offset + j] += 1.0f;
    EXPECT_EQ(block.output_shape({2, 5, 5}), (Shape3{4, 3, 3}));
    EXPECT_GE(lay.find("l.conv1.weight"), 0);
    EXPECT_EQ(lay.find("l.shortcut.conv.weight") >= 0, variant == 1);
    Tensor x = random_tensor(2, 2, 2, 5, 5, rng);
    SCOPED_TRACE("variant " + std::to_string(variant));
    expect_grads(grad_check(block, x, p, true, rng), true, seed + variant);
  }
}

// ---- loss -------------------------------------------------------------------------------------

TEST(SoftmaxCrossEntropy, LossGradientAndAccuracy) {
  Tensor z(2, 2, 3, 1, 1);
  z.data = {1, 2, 3, 0, 0, 0, /* node 1 */ 5, 1, 1, -1, 2, 0};
  const std::vector<int32_t> labels = {2, 1, 0, 0};
  SoftmaxCrossEntropy ce;
  Tensor dz;
  LossStats st = ce.forward_backward(z, labels.data(), &dz);
  auto lse = [](double a, double b, double c) {
    return std::log(std::exp(a) + std::exp(b) + std::exp(c));
  };
  EXPECT_NEAR(st.loss[0], ((lse(1, 2, 3) - 3) + (lse(0, 0, 0) - 0)) / 2, 1e-6);
  EXPECT_NEAR(st.loss[1], ((lse(5, 1, 1) - 5) + (lse(-1, 2, 0) + 1)) / 2, 1e-6);
  EXPECT_EQ(st.correct, (std::vector<int64_t>{1, 1}));  // all-equal logits pick class 0
  EXPECT_DOUBLE_EQ(st.accuracy(), 0.5);
  EXPECT_EQ(SoftmaxCrossEntropy::argmax(z), (std::vector<int32_t>{2, 0, 0, 1}));
  // dz against finite differences of the per-node loss.
  for (size_t i = 0; i < z.data.size(); ++i) {
    Tensor zp = z, zm = z;
    zp.data[i] += 1e-3f;
    zm.data[i] -= 1e-3f;
    const int64_t node = static_cast<int64_t>(i) / 6;
    const double num = (ce.forward_backward(zp, labels.data(), nullptr).loss[node] -
                        ce.forward_backward(zm, labels.data(), nullptr).loss[node]) /
                       2e-3;
    EXPECT_NEAR(dz.data[i], num, 1e-3) << i;
  }
  const std::vector<int32_t> bad = {0, 3, 0, 0};
  EXPECT_THROW(ce.forward_backward(z, bad.data(), nullptr), std::invalid_argument);
}

// ---- node independence ------------------------------------------------------------------------

TEST(NodeIndependence, NodeOneNeverAffectsNodeZero) {
  const uint64_t seed = 91;
  std::mt19937_64 rng(seed);
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::make_unique<Conv2d>(3, 4, 3, 1, 1));
  layers.push_back(std::make_unique<Linear>(48, 5));
  layers.push_back(std::make_unique<BatchNorm2d>(3));
  layers.push_back(std::make_unique<GroupNorm>(3, 3));
  layers.push_back(std::make_unique<EvoNormS0>(3, 3));
  layers.push_back(std::make_unique<RangeBatchNorm2d>(3));
  layers.push_back(std::make_unique<RangeEvoNorm>(3, 3));
  for (auto& l : layers) {
    SCOPED_TRACE(l->describe());
    Layout lay;
    NodeMatrix p = declare_random(*l, lay, 2, rng);
    Tensor x = random_tensor(2, 3, 3, 4, 4, rng);
    Tensor y1, y2;
    l->forward(x, y1, p, true);
    // Change node 1's parameters and inputs; node 0's outputs must be bit-identical.
    for (int64_t j = 0; j < p.cols(); ++j) p.row(1)[j] = 7.0f * p.row(1)[j] + 1.0f;
    for (int64_t i = 0; i < x.node_stride(); ++i) x.node(1)[i] = -3.0f * x.node(1)[i];
    l->set_nodes(2);
    l->forward(x, y2, p, true);
    ASSERT_TRUE(y1.same_shape(y2));
    EXPECT_TRUE(std::equal(y1.node(0), y1.node(0) + y1.node_stride(), y2.node(0)));
    EXPECT_FALSE(std::equal(y1.node(1), y1.node(1) + y1.node_stride(), y2.node(1)));
    // Node 0's gradients do not see node 1's upstream gradient either.
    Tensor dy1 = random_tensor(2, 3, y2.c, y2.h, y2.w, rng);
    Tensor dy2 = dy1;
    for (int64_t i = 0; i < dy2.node_stride(); ++i) dy2.node(1)[i] += 5.0f;
    NodeMatrix g1(2, lay.size()), g2(2, lay.size());
    Tensor dx1, dx2;
    l->backward(x, y2, dy1, &dx1, p, g1);
    l->backward(x, y2, dy2, &dx2, p, g2);
    EXPECT_TRUE(std::equal(g1.row(0), g1.row(0) + lay.size(), g2.row(0)));
    EXPECT_TRUE(std::equal(dx1.node(0), dx1.node(0) + dx1.node_stride(), dx2.node(0)));
  }
}

TEST(Tensor, ResizeKeepsAllocationAndChecksShape) {
  Tensor t(2, 3, 4, 5, 6);
  EXPECT_EQ(t.numel(), 720);
  EXPECT_EQ(t.node_stride(), 360);
  EXPECT_EQ(t.sample_stride(), 120);
  const float* before = t.data.data();
  t.resize(1, 3, 4, 5, 6);
  EXPECT_EQ(t.data.data(), before);
  t.resize(2, 3, 4, 5, 6);
  EXPECT_EQ(t.data.data(), before);
  EXPECT_EQ(t.sample(1, 2) - t.data.data(), 5 * 120);
  EXPECT_EQ(t.shape_str(), "[2, 3, 4, 5, 6]");
  EXPECT_THROW(t.resize(-1, 1, 1, 1, 1), std::invalid_argument);
}

}  // namespace
}  // namespace spush::nets
