// 8-bit layers (QConv2d, QLinear) against the math of nets/include/spush/nets/layers_quant.h:
//   - forward equals the fp32 layer applied to the dequantized operands, within fp32 rounding;
//   - the dequantized operands are the quantizer's: nearest-even within half a step (weights,
//     activations with nearest rounding), inside the activation range;
//   - backward-weights is the fp32 branch: the gradient of the dequantized computation, checked
//     against central finite differences, and it does not change with the rounding stream;
//   - backward-data is the 8-bit branch: it consumes the stochastically rounded output gradient
//     (it changes with the iteration, stays within one quantization step of the fp32 input
//     gradient, and its mean over iterations converges to it: unbiased);
//   - int8 models have the fp32 models' parameters, and training reduces the loss.
#include "spush/nets/layers_quant.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "nets_test_util.h"
#include "spush/nets/model.h"

namespace spush::nets {
namespace {

using test::random_tensor;

NodeMatrix random_params(Layer& layer, Layout& layout, int64_t nodes, std::mt19937_64& rng) {
  layer.declare(layout, "q");
  NodeMatrix p(nodes, layout.size());
  std::normal_distribution<float> d(0.0f, 0.3f);
  for (int64_t r = 0; r < nodes; ++r)
    for (int64_t j = 0; j < p.cols(); ++j) p.row(r)[j] = d(rng);
  layer.set_nodes(nodes);
  return p;
}

// The dequantized parameters of the last forward as a full parameter matrix (the layer's
// segments start at column 0 of the layout it was declared in).
NodeMatrix dequantized_full(const NodeMatrix& pq, int64_t cols) {
  NodeMatrix full(pq.rows(), cols);
  for (int64_t r = 0; r < pq.rows(); ++r) std::copy(pq.row(r), pq.row(r) + pq.cols(), full.row(r));
  return full;
}

float max_abs(const std::vector<float>& v, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(v[i]));
  return m;
}

struct ConvCase {
  Conv2dSpec spec;
  int64_t nodes, batch, h, w;
};

const ConvCase kConvCases[] = {
    {{3, 8, 3, 3, 1, 1, 1, 1, false}, 2, 3, 9, 9},   // ResNet body conv
    {{4, 6, 3, 3, 2, 2, 1, 1, false}, 2, 2, 8, 7},   // stride 2, odd width
    {{1, 6, 5, 5, 1, 1, 2, 2, true}, 2, 2, 12, 12},  // LeNet first layer, bias
    {{5, 4, 1, 1, 2, 2, 0, 0, false}, 1, 3, 6, 6},   // 1x1 option-B shortcut
};

TEST(QConv2d, ForwardIsTheFp32LayerOnTheDequantizedOperands) {
  std::mt19937_64 rng(11);
  auto ctx = std::make_shared<QuantContext>();
  for (const bool stochastic : {false, true}) {
    ctx->stochastic_activations = stochastic;
    for (const ConvCase& c : kConvCases) {
      QConv2d q(c.spec, ctx);
      Conv2d f(c.spec);
      Layout lq, lf;
      NodeMatrix p = random_params(q, lq, c.nodes, rng);
      f.declare(lf, "q");
      const Tensor x = random_tensor(c.nodes, c.batch, c.spec.in, c.h, c.w, rng);
      Tensor yq, yf;
      q.forward(x, yq, p, /*train=*/true);
      const Tensor& xq = q.dequantized_input();
      ASSERT_TRUE(xq.same_shape(x));
      const NodeMatrix pf = dequantized_full(q.dequantized_params(), p.cols());
      f.forward(xq, yf, pf, true);
      ASSERT_TRUE(yq.same_shape(yf));
      // fp32 rounding of a K-term sum: |error| <= K * eps * max|x_hat| * max|w_hat| (with slack
      // for the epilogue's four terms).
      const int64_t K = c.spec.in * c.spec.kh * c.spec.kw;
      const float bound =
          8.0f * static_cast<float>(K) * 1.2e-7f * max_abs(xq.data, xq.numel()) *
              max_abs(std::vector<float>(pf.data(), pf.data() + pf.rows() * pf.ld()),
                      pf.rows() * pf.ld()) +
          1e-6f;
      for (int64_t i = 0; i < yq.numel(); ++i)
        ASSERT_NEAR(yq.data[i], yf.data[i], bound)
            << c.spec.in << "->" << c.spec.out << " at " << i;
      // The operands are 8-bit: the weights take at most 256 values per node, each within half
      // a step of the fp32 weight.
      for (int64_t n = 0; n < c.nodes; ++n) {
        const int64_t wsize = c.spec.out * c.spec.in * c.spec.kh * c.spec.kw;
        const float* w = p.row(n);
        const float* wq = q.dequantized_params().row(n);
        const auto [lo, hi] = std::minmax_element(w, w + wsize);
        const float step = (*hi - *lo) / 255.0f;
        for (int64_t i = 0; i < wsize; ++i)
          ASSERT_LE(std::fabs(wq[i] - w[i]), 0.5f * step * 1.001f + 1e-7f) << i;
        std::vector<float> distinct(wq, wq + wsize);
        std::sort(distinct.begin(), distinct.end());
        distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
        EXPECT_LE(distinct.size(), 256u);
      }
    }
  }
}

TEST(QLinear, ForwardIsTheFp32LayerOnTheDequantizedOperands) {
  std::mt19937_64 rng(12);
  auto ctx = std::make_shared<QuantContext>();
  QLinear q(37, 11, true, ctx);
  Linear f(37, 11, true);
  Layout lq, lf;
  NodeMatrix p = random_params(q, lq, 3, rng);
  f.declare(lf, "q");
  const Tensor x = random_tensor(3, 5, 37, 1, 1, rng);
  Tensor yq, yf;
  q.forward(x, yq, p, true);
  const NodeMatrix pf = dequantized_full(q.dequantized_params(), p.cols());
  f.forward(q.dequantized_input(), yf, pf, true);
  for (int64_t i = 0; i < yq.numel(); ++i) ASSERT_NEAR(yq.data[i], yf.data[i], 1e-5f) << i;
}

// Activation ranges: with nearest rounding every dequantized input lies in the node's range
// and within half a step of the input clamped to it; evaluation uses the running range.
TEST(QConv2d, ActivationRangeIsTheBatchMeanOfSampleRanges) {
  std::mt19937_64 rng(13);
  auto ctx = std::make_shared<QuantContext>();
  ctx->stochastic_activations = false;
  QConv2d q({2, 3, 3, 3, 1, 1, 1, 1, false}, ctx);
  Layout l;
  NodeMatrix p = random_params(q, l, 1, rng);
  const Tensor x = random_tensor(1, 4, 2, 5, 5, rng);
  Tensor y;
  q.forward(x, y, p, true);
  const int64_t per = x.sample_stride();
  double lo = 0, hi = 0;
  for (int64_t b = 0; b < x.batch; ++b) {
    const float* s = x.sample(0, b);
    lo += *std::min_element(s, s + per);
    hi += *std::max_element(s, s + per);
  }
  lo /= x.batch;
  hi /= x.batch;
  const float step = static_cast<float>((hi - lo) / 255.0);
  const Tensor& xq = q.dequantized_input();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float clamped = std::clamp(x.data[i], static_cast<float>(lo), static_cast<float>(hi));
    ASSERT_LE(std::fabs(xq.data[i] - clamped), 0.5f * step * 1.01f + 1e-6f) << i;
  }
  // The running range after one step is this batch's; evaluation on other data uses it.
  auto bufs = q.buffers();
  ASSERT_EQ(bufs.size(), 1u);
  EXPECT_NEAR((*bufs[0].data)[0], lo, 1e-5);
  EXPECT_NEAR((*bufs[0].data)[1], hi, 1e-5);
  const Tensor x2 = random_tensor(1, 4, 2, 5, 5, rng, 3.0f);
  q.forward(x2, y, p, /*train=*/false);
  for (int64_t i = 0; i < x2.numel(); ++i) {
    ASSERT_GE(q.dequantized_input().data[i], static_cast<float>(lo) - 1e-5f);
    ASSERT_LE(q.dequantized_input().data[i], static_cast<float>(hi) + 1e-5f);
  }
}

// The gradient bifurcation, and backward against finite differences of the dequantized
// computation L(x_hat, w) = sum(R * conv(x_hat, w_hat(w))) with the weight quantizer treated
// as the identity (straight-through).
TEST(QConv2d, BackwardWeightsIsFp32AndBackwardDataIsEightBit) {
  std::mt19937_64 rng(14);
  auto ctx = std::make_shared<QuantContext>();
  ctx->stochastic_activations = false;  // the same x_hat in every pass
  const Conv2dSpec spec{3, 4, 3, 3, 1, 1, 1, 1, true};
  QConv2d q(spec, ctx);
  Conv2d f(spec);
  Layout lq, lf;
  NodeMatrix p = random_params(q, lq, 2, rng);
  f.declare(lf, "q");
  const Tensor x = random_tensor(2, 2, 3, 6, 6, rng);
  Tensor y;
  q.forward(x, y, p, true);
  const Tensor xq = q.dequantized_input();
  const NodeMatrix pf = dequantized_full(q.dequantized_params(), p.cols());
  const Tensor r = random_tensor(y.nodes, y.batch, y.c, y.h, y.w, rng);

  // fp32 reference gradients of the dequantized computation.
  Tensor yf, dx_f;
  NodeMatrix dp_f(p.rows(), p.cols());
  f.forward(xq, yf, pf, true);
  f.backward(xq, yf, r, &dx_f, pf, dp_f);
  // ... and their central finite differences (in double), for the weights and the input.
  auto loss = [&](const Tensor& xx, const NodeMatrix& pp) {
    Tensor o;
    f.forward(xx, o, pp, true);
    double s = 0;
    for (int64_t i = 0; i < o.numel(); ++i) s += static_cast<double>(o.data[i]) * r.data[i];
    return s;
  };
  const double eps = 1e-2;
  {
    NodeMatrix pp = pf;
    for (int64_t row = 0; row < pp.rows(); ++row)
      for (int64_t j = 0; j < pp.cols(); ++j) {
        const float v = pp.row(row)[j];
        pp.row(row)[j] = v + eps;
        const double lp = loss(xq, pp);
        pp.row(row)[j] = v - eps;
        const double lm = loss(xq, pp);
        pp.row(row)[j] = v;
        ASSERT_NEAR(dp_f.row(row)[j], (lp - lm) / (2 * eps), 2e-3) << row << "," << j;
      }
    Tensor xx = xq;
    for (int64_t i = 0; i < xx.numel(); ++i) {
      const float v = xx.data[i];
      xx.data[i] = v + eps;
      const double lp = loss(xx, pf);
      xx.data[i] = v - eps;
      const double lm = loss(xx, pf);
      xx.data[i] = v;
      ASSERT_NEAR(dx_f.data[i], (lp - lm) / (2 * eps), 2e-3) << i;
    }
  }

  // 8-bit layer over many iterations (different gradient rounding streams).
  const int kIters = 200;
  std::vector<double> dx_mean(static_cast<size_t>(x.numel()), 0.0);
  Tensor dx_first;
  bool dx_varies = false;
  const float g_step = [&] {
    float lo = 0, hi = 0;
    for (int64_t n = 0; n < r.nodes; ++n)
      for (int64_t i = 0; i < r.node_stride(); ++i) {
        lo = std::min(lo, r.node(n)[i]);
        hi = std::max(hi, r.node(n)[i]);
      }
    return (hi - lo) / 255.0f;
  }();
  float w_l1 = 0;  // max over input positions of sum |w_hat| of the taps that reach it
  for (int64_t n = 0; n < pf.rows(); ++n) {
    float s = 0;
    for (int64_t j = 0; j < spec.out * spec.in * spec.kh * spec.kw; ++j)
      s += std::fabs(pf.row(n)[j]);
    w_l1 = std::max(w_l1, s);
  }
  for (int it = 0; it < kIters; ++it) {
    ctx->iteration = static_cast<uint64_t>(it);
    Tensor yy, dx;
    NodeMatrix dp(p.rows(), p.cols());
    q.forward(x, yy, p, true);
    q.backward(x, yy, r, &dx, p, dp);
    // Backward-weights: the fp32 gradient, whatever the rounding stream.
    for (int64_t row = 0; row < p.rows(); ++row)
      for (int64_t j = 0; j < p.cols(); ++j)
        ASSERT_NEAR(dp.row(row)[j], dp_f.row(row)[j], 1e-4f * (1 + std::fabs(dp_f.row(row)[j])))
            << "iteration " << it << " row " << row << " param " << j;
    // Backward-data: within one gradient step per contributing weight of the fp32 gradient.
    for (int64_t i = 0; i < dx.numel(); ++i) {
      ASSERT_LE(std::fabs(dx.data[i] - dx_f.data[i]), g_step * w_l1 * 1.01f + 1e-5f) << i;
      dx_mean[static_cast<size_t>(i)] += dx.data[i];
    }
    if (it == 0)
      dx_first = dx;
    else if (dx.data != dx_first.data)
      dx_varies = true;
  }
  EXPECT_TRUE(dx_varies) << "backward-data does not depend on the gradient's rounding stream";
  // Unbiased: the mean over kIters iterations is within 5 standard errors of the fp32 gradient.
  // Each rounding error is in (-step, step) with variance <= step^2 / 4, so the error of one
  // dx element has variance <= step^2 / 4 * sum w_hat^2 <= step^2 / 4 * w_l1^2.
  const double se = g_step * w_l1 / 2.0 / std::sqrt(static_cast<double>(kIters));
  double bias_max = 0;
  for (int64_t i = 0; i < x.numel(); ++i)
    bias_max =
        std::max(bias_max, std::fabs(dx_mean[static_cast<size_t>(i)] / kIters - dx_f.data[i]));
  EXPECT_LE(bias_max, 5 * se) << "mean input gradient is biased";
}

// A non-finite input, weight or output gradient of one node (a diverged run) makes that node's
// output / input gradient NaN, so the trainer reports the divergence; other nodes are untouched.
TEST(QConv2d, NonFiniteValuesOfOneNodeGiveNaNForThatNodeOnly) {
  std::mt19937_64 rng(16);
  auto ctx = std::make_shared<QuantContext>();
  QConv2d q({2, 3, 3, 3, 1, 1, 1, 1, true}, ctx);
  Layout l;
  NodeMatrix p = random_params(q, l, 3, rng);
  Tensor x = random_tensor(3, 2, 2, 5, 5, rng);
  x.node(1)[7] = std::numeric_limits<float>::quiet_NaN();
  p.row(2)[0] = std::numeric_limits<float>::infinity();
  Tensor y;
  q.forward(x, y, p, true);
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t i = 0; i < y.node_stride(); ++i)
      ASSERT_EQ(std::isnan(y.node(n)[i]), n != 0) << "node " << n << " element " << i;
  Tensor dy = random_tensor(3, 2, 3, 5, 5, rng), dx;
  dy.node(0)[3] = -std::numeric_limits<float>::infinity();
  NodeMatrix dp(p.rows(), p.cols());
  q.backward(x, y, dy, &dx, p, dp);
  for (int64_t i = 0; i < dx.node_stride(); ++i) ASSERT_TRUE(std::isnan(dx.node(0)[i])) << i;
}

// With several threads the nodes run in parallel (one per thread, each with its own plan and
// scratch); with one thread in turn. The bits must not depend on it.
TEST(QuantizedLayer, ResultsDoNotDependOnTheThreadCount) {
  struct Run {
    std::vector<float> y, dx, dp;
  };
  auto run = [](Layer& q, int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::mt19937_64 rng(17);
    Layout l;
    NodeMatrix p = random_params(q, l, 5, rng);
    const bool conv = q.type() == "QConv2d";
    Tensor x = conv ? random_tensor(5, 3, 3, 9, 9, rng) : random_tensor(5, 3, 12, 1, 1, rng), y;
    q.forward(x, y, p, true);
    Tensor dy = random_tensor(5, 3, y.c, y.h, y.w, rng), dx;
    NodeMatrix dp(p.rows(), p.cols());
    q.backward(x, y, dy, &dx, p, dp);
    omp_set_num_threads(saved);
    Run r;
    r.y.assign(y.node(0), y.node(0) + y.numel());
    r.dx.assign(dx.node(0), dx.node(0) + dx.numel());
    r.dp.assign(dp.row(0), dp.row(0) + dp.rows() * dp.cols());
    return r;
  };
  auto ctx = std::make_shared<QuantContext>();
  for (int layer = 0; layer < 2; ++layer) {
    std::unique_ptr<Layer> q;
    if (layer == 0)
      q = std::make_unique<QConv2d>(Conv2dSpec{3, 4, 3, 3, 1, 1, 1, 1, true}, ctx);
    else
      q = std::make_unique<QLinear>(12, 7, true, ctx);
    const Run one = run(*q, 1);
    for (int threads : {2, 3, 8}) {
      const Run many = run(*q, threads);
      EXPECT_EQ(one.y, many.y) << q->type() << ", " << threads << " threads";
      EXPECT_EQ(one.dx, many.dx) << q->type() << ", " << threads << " threads";
      EXPECT_EQ(one.dp, many.dp) << q->type() << ", " << threads << " threads";
    }
  }
}

TEST(QuantModels, Int8ModelsHaveTheFp32ParametersAndLearn) {
  for (const char* name : {"lenet5", "resnet8"}) {
    ModelSpec s;
    s.name = name;
    s.norm = "group";
    s.in_c = 1;
    s.in_h = s.in_w = name == std::string("lenet5") ? 28 : 12;
    auto fp = make_model(s);
    s.precision = "int8";
    auto q = make_model(s);
    EXPECT_EQ(q->num_params(), fp->num_params()) << name;
    ASSERT_NE(q->quant(), nullptr);
    EXPECT_EQ(fp->quant(), nullptr);
    EXPECT_NE(q->summary().find("QConv2d"), std::string::npos);
    EXPECT_NE(q->summary().find("QLinear"), std::string::npos);
  }
  ModelSpec s;
  s.precision = "fp16";
  EXPECT_THROW(make_model(s), std::invalid_argument);

  // A few SGD steps on a fixed batch of two separable classes reduce the loss.
  ModelSpec spec;
  spec.name = "lenet5";
  spec.norm = "group";
  spec.precision = "int8";
  spec.num_classes = 2;
  auto m = make_model(spec);
  NodeMatrix x(2, m->num_params()), g(2, m->num_params());
  m->init(x, 3);
  std::mt19937_64 rng(15);
  Tensor in = random_tensor(2, 8, 1, 28, 28, rng, 0.3f);
  std::vector<int32_t> labels(16);
  for (int i = 0; i < 16; ++i) {
    labels[i] = i % 2;
    float* img = in.sample(i / 8, i % 8);
    for (int p = 0; p < 28 * 14; ++p) img[p + (labels[i] ? 28 * 14 : 0)] += 1.0f;
  }
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    m->quant()->iteration = step;
    const LossStats st = m->loss_and_grad(in, labels.data(), x, g);
    if (step == 0) first = st.mean_loss();
    last = st.mean_loss();
    for (int64_t r = 0; r < x.rows(); ++r)
      for (int64_t j = 0; j < x.cols(); ++j) x.row(r)[j] -= 0.05f * g.row(r)[j];
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

}  // namespace
}  // namespace spush::nets
