// Models: parameter counts against closed-form sums (ResNet-20/BatchNorm on 3x32x32 = 269,722),
// output shapes, identical initialization across nodes, buffers, argument errors, end-to-end
// gradients against finite differences, and a few SGD steps reducing the loss.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "nets_test_util.h"
#include "spush/nets/model.h"

namespace spush::nets {
namespace {

using test::random_tensor;

// Closed-form parameter counts.
int64_t conv_p(int64_t in, int64_t out, int64_t k, bool bias) {
  return in * out * k * k + (bias ? out : 0);
}
int64_t fc_p(int64_t in, int64_t out) { return in * out + out; }

// CIFAR ResNet(6n+2); per_norm = floats per channel of one norm layer (2 for BN/GN, 3 EvoNorm).
int64_t resnet_params(int64_t n, int64_t in_c, int64_t per_norm, bool option_b) {
  int64_t total = conv_p(in_c, 16, 3, false) + per_norm * 16;
  int64_t in = 16;
  for (int64_t planes : {16, 32, 64}) {
    for (int64_t i = 0; i < n; ++i) {
      total +=
          conv_p(in, planes, 3, false) + conv_p(planes, planes, 3, false) + 2 * per_norm * planes;
      if (option_b && in != planes) total += conv_p(in, planes, 1, false) + per_norm * planes;
      in = planes;
    }
  }
  return total + fc_p(64, 10);
}

ModelSpec spec_of(const std::string& name, const std::string& norm, int64_t c, int64_t hw) {
  ModelSpec s;
  s.name = name;
  s.norm = norm;
  s.in_c = c;
  s.in_h = hw;
  s.in_w = hw;
  return s;
}

TEST(Models, ParameterCounts) {
  EXPECT_EQ(make_model(spec_of("resnet20", "batch", 3, 32))->num_params(), 269722);
  EXPECT_EQ(resnet_params(3, 3, 2, false), 269722);
  EXPECT_EQ(make_model(spec_of("resnet20", "", 3, 32))->num_params(), 269722);  // default batch
  EXPECT_EQ(make_model(spec_of("resnet20", "group", 3, 32))->num_params(), 269722);
  EXPECT_EQ(make_model(spec_of("resnet20", "none", 3, 32))->num_params(),
            resnet_params(3, 3, 0, false));
  EXPECT_EQ(make_model(spec_of("resnet20", "evonorm", 3, 32))->num_params(),
            resnet_params(3, 3, 3, false));
  EXPECT_EQ(make_model(spec_of("resnet20", "rangebn", 3, 32))->num_params(), 269722);
  EXPECT_EQ(make_model(spec_of("resnet20", "rangeevo", 3, 32))->num_params(),
            resnet_params(3, 3, 3, false));
  EXPECT_EQ(make_model(spec_of("resnet20", "batch", 1, 28))->num_params(), 269434);
  EXPECT_EQ(make_model(spec_of("resnet32", "batch", 3, 32))->num_params(),
            resnet_params(5, 3, 2, false));
  EXPECT_EQ(make_model(spec_of("resnet110", "batch", 3, 32))->num_params(),
            resnet_params(18, 3, 2, false));
  ModelSpec b = spec_of("resnet20", "batch", 3, 32);
  b.shortcut = "conv1x1";
  EXPECT_EQ(make_model(b)->num_params(), resnet_params(3, 3, 2, true));
  EXPECT_EQ(make_model(b)->num_params(), 269722 + 16 * 32 + 64 + 32 * 64 + 128);

  // LeNet-5: 28x28 inputs use padding 2 in conv1, 32x32 inputs none: both reach 16x5x5.
  const int64_t lenet_tail = conv_p(6, 16, 5, true) + fc_p(400, 120) + fc_p(120, 84) + fc_p(84, 10);
  EXPECT_EQ(make_model(spec_of("lenet5", "none", 1, 28))->num_params(), 61706);
  EXPECT_EQ(make_model(spec_of("lenet5", "", 1, 28))->num_params(),
            conv_p(1, 6, 5, true) + lenet_tail);
  EXPECT_EQ(make_model(spec_of("lenet5", "none", 3, 32))->num_params(),
            conv_p(3, 6, 5, true) + lenet_tail);
  EXPECT_EQ(make_model(spec_of("lenet5", "batch", 1, 28))->num_params(), 61706 + 2 * (6 + 16));
  EXPECT_EQ(make_model(spec_of("lenet5", "evonorm", 1, 28))->num_params(), 61706 + 3 * (6 + 16));
  EXPECT_EQ(make_model(spec_of("lenet5", "rangebn", 1, 28))->num_params(), 61706 + 2 * (6 + 16));
  EXPECT_EQ(make_model(spec_of("lenet5", "rangeevo", 1, 28))->num_params(), 61706 + 3 * (6 + 16));

  // VGG-11 (no norm): 8 convs with bias, classifier 512-512-10.
  const int64_t vgg = conv_p(3, 64, 3, true) + conv_p(64, 128, 3, true) +
                      conv_p(128, 256, 3, true) + conv_p(256, 256, 3, true) +
                      conv_p(256, 512, 3, true) + 3 * conv_p(512, 512, 3, true) + fc_p(512, 512) +
                      fc_p(512, 512) + fc_p(512, 10);
  EXPECT_EQ(vgg, 9750922);
  EXPECT_EQ(make_model(spec_of("vgg11", "none", 3, 32))->num_params(), vgg);
  EXPECT_EQ(make_model(spec_of("vgg11", "", 3, 32))->num_params(), vgg);
  const int64_t vgg_channels = 64 + 128 + 256 + 256 + 4 * 512;
  EXPECT_EQ(make_model(spec_of("vgg11", "rangebn", 3, 32))->num_params(), vgg + 2 * vgg_channels);
  EXPECT_EQ(make_model(spec_of("vgg11", "rangeevo", 3, 32))->num_params(), vgg + 3 * vgg_channels);

  ModelSpec mlp = spec_of("mlp", "", 1, 28);
  mlp.mlp_hidden = {64, 32};
  EXPECT_EQ(make_model(mlp)->num_params(), fc_p(784, 64) + fc_p(64, 32) + fc_p(32, 10));
}

TEST(Models, SummaryAndLayoutNames) {
  auto m = make_model(spec_of("resnet20", "batch", 3, 32));
  const std::string s = m->summary();
  EXPECT_NE(s.find("total parameters: 269722"), std::string::npos) << s;
  EXPECT_NE(s.find("layer3.2"), std::string::npos) << s;
  EXPECT_NE(s.find("64x8x8"), std::string::npos) << s;
  const Layout& lay = m->layout();
  EXPECT_GE(lay.find("conv1.weight"), 0);
  EXPECT_GE(lay.find("layer2.0.conv1.weight"), 0);
  EXPECT_GE(lay.find("layer3.2.norm2.bias"), 0);
  EXPECT_GE(lay.find("fc.weight"), 0);
  EXPECT_EQ(lay.find("layer2.0.shortcut.conv.weight"), -1);  // option A has no parameters
  EXPECT_EQ(lay.segment(lay.find("layer2.0.conv1.weight")).shape,
            (std::vector<int64_t>{32, 16, 3, 3}));
  // Buffers: 19 BatchNorms x (mean, var), per node.
  m->set_nodes(3);
  auto bufs = m->buffers();
  EXPECT_EQ(bufs.size(), 38u);
  std::set<std::string> names;
  for (const auto& b : bufs) {
    names.insert(b.name);
    EXPECT_EQ(static_cast<int64_t>(b.data->size()), 3 * b.per_node) << b.name;
  }
  EXPECT_EQ(names.size(), bufs.size());
  EXPECT_TRUE(names.count("layer1.0.norm1.running_mean"));
  EXPECT_TRUE(make_model(spec_of("resnet20", "group", 3, 32))->buffers().empty());
}

TEST(Models, ForwardShapesAndIdenticalInit) {
  struct Case {
    std::string name, norm;
    int64_t c, hw;
  };
  const Case cases[] = {
      {"lenet5", "none", 1, 28},     {"lenet5", "group", 3, 32},     {"lenet5", "rangebn", 1, 28},
      {"lenet5", "rangeevo", 1, 28}, {"resnet8", "batch", 3, 12},    {"resnet8", "evonorm", 1, 10},
      {"resnet8", "rangebn", 3, 12}, {"resnet8", "rangeevo", 1, 10}, {"vgg11", "none", 3, 32},
      {"vgg11", "rangebn", 3, 32},   {"vgg11", "rangeevo", 3, 32},   {"mlp", "", 1, 6}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name + "-" + c.norm);
    auto m = make_model(spec_of(c.name, c.norm, c.c, c.hw));
    const int64_t nodes = c.name == "vgg11" ? 2 : 3, batch = c.name == "vgg11" ? 1 : 2;
    NodeMatrix x(nodes, m->layout().size());
    x.fill(-9.0f);
    m->init(x, 5);
    for (int64_t r = 1; r < nodes; ++r)
      EXPECT_TRUE(std::equal(x.row(0), x.row(0) + x.cols(), x.row(r))) << "row " << r;
    // Every parameter was written (no -9 sentinel left), and weights are not all zero.
    EXPECT_EQ(std::count(x.row(0), x.row(0) + x.cols(), -9.0f), 0);
    EXPECT_GT(std::count_if(x.row(0), x.row(0) + x.cols(), [](float v) { return v != 0.0f; }),
              x.cols() / 2);
    NodeMatrix y(nodes, m->layout().size());
    m->init(y, 5);
    EXPECT_TRUE(std::equal(x.row(0), x.row(0) + x.cols(), y.row(0)));  // same seed
    m->init(y, 6);
    EXPECT_FALSE(std::equal(x.row(0), x.row(0) + x.cols(), y.row(0)));  // other seed
    std::mt19937_64 rng(1);
    const Tensor in = random_tensor(nodes, batch, c.c, c.hw, c.hw, rng);
    const Tensor& logits = m->forward(in, x, true);
    // (append, not "[" + string: GCC 12 warns -Wrestrict on that inlined insert here)
    EXPECT_EQ(logits.shape_str(), std::string("[")
                                      .append(std::to_string(nodes))
                                      .append(", ")
                                      .append(std::to_string(batch))
                                      .append(", 10, 1, 1]"));
    for (float v : logits.data) EXPECT_TRUE(std::isfinite(v));
    const auto pred = m->predict(in, x);
    EXPECT_EQ(pred.size(), static_cast<size_t>(nodes * batch));
  }
}

TEST(Models, InvalidSpecsNameTheValue) {
  auto expect_msg = [](const ModelSpec& s, const std::string& needle) {
    try {
      make_model(s);
      ADD_FAILURE() << "no exception for " << s.name << " / " << s.norm;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_msg(spec_of("resnet21", "batch", 3, 32), "resnet21");
  expect_msg(spec_of("resnet2", "batch", 3, 32), "resnet2");
  expect_msg(spec_of("resnetx", "batch", 3, 32), "6n+2");
  expect_msg(spec_of("vgg16", "none", 3, 32), "vgg16");
  expect_msg(spec_of("vgg16", "none", 3, 32), "lenet5");  // lists the accepted names
  expect_msg(spec_of("lenet5", "layer", 1, 28), "layer");
  expect_msg(spec_of("lenet5", "layer", 1, 28), "evonorm");
  expect_msg(spec_of("lenet5", "layer", 1, 28), "rangebn, rangeevo");
  expect_msg(spec_of("mlp", "batch", 1, 28), "batch");
  expect_msg(spec_of("vgg11", "none", 1, 28), "1x28x28");  // too small for five poolings
  expect_msg(spec_of("lenet5", "none", 1, 8), "1x8x8");
  expect_msg(spec_of("lenet5", "none", 0, 28), "0x28x28");
  ModelSpec g = spec_of("resnet20", "group", 3, 32);
  g.groups = 5;
  expect_msg(g, "5 groups");
  g.group_size = 2;
  expect_msg(g, "at most one");
  ModelSpec sc = spec_of("resnet20", "batch", 3, 32);
  sc.shortcut = "projection";
  expect_msg(sc, "projection");
  ModelSpec nc = spec_of("lenet5", "none", 1, 28);
  nc.num_classes = 0;
  expect_msg(nc, "num_classes");
  // Shape errors at run time.
  auto m = make_model(spec_of("lenet5", "none", 1, 28));
  NodeMatrix x(2, m->layout().size());
  m->init(x, 1);
  EXPECT_THROW(m->forward(Tensor(2, 1, 3, 28, 28), x, true), std::invalid_argument);
  EXPECT_THROW(m->forward(Tensor(3, 1, 1, 28, 28), x, true), std::invalid_argument);
  NodeMatrix wrong(2, 5);
  EXPECT_THROW(m->init(wrong, 1), std::invalid_argument);
}

// End to end: d(mean over nodes of the loss)/d(params) from loss_and_grad against central
// differences on a sample of coordinates, for models that exercise every composite path.
TEST(Models, GradientsMatchFiniteDifferences) {
  struct Case {
    std::string name, norm, shortcut;
    int64_t c, hw;
  };
  const Case cases[] = {
      {"resnet8", "batch", "zeropad", 2, 6},    {"resnet8", "evonorm", "conv1x1", 2, 6},
      {"resnet8", "group", "conv1x1", 1, 5},    {"resnet8", "rangebn", "conv1x1", 2, 6},
      {"resnet8", "rangeevo", "zeropad", 2, 6}, {"lenet5", "group", "zeropad", 1, 16},
      {"lenet5", "rangeevo", "zeropad", 1, 16}};
  uint64_t seed = 300;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name + "-" + c.norm + "-" + c.shortcut);
    ModelSpec s = spec_of(c.name, c.norm, c.c, c.hw);
    s.shortcut = c.shortcut;
    auto m = make_model(s);
    std::mt19937_64 rng(++seed);
    const int64_t nodes = 2, batch = 3;
    NodeMatrix x(nodes, m->layout().size()), g(nodes, m->layout().size());
    m->init(x, seed);
    // Perturb the rows so the nodes differ and norm affines are not at their init values.
    std::normal_distribution<float> d(0.0f, 0.05f);
    for (int64_t r = 0; r < nodes; ++r)
      for (int64_t j = 0; j < x.cols(); ++j) x.row(r)[j] += d(rng);
    const Tensor in = random_tensor(nodes, batch, c.c, c.hw, c.hw, rng);
    std::vector<int32_t> labels(nodes * batch);
    for (auto& l : labels) l = static_cast<int32_t>(rng() % 10);
    g.fill(3.0f);  // must be zeroed by backward
    m->loss_and_grad(in, labels.data(), x, g);
    NodeMatrix scratch(nodes, m->layout().size());
    auto loss = [&](const NodeMatrix& p) {
      return m->loss_and_grad(in, labels.data(), p, scratch).loss;
    };
    // Central differences at two steps; a coordinate whose two estimates disagree sits near a
    // ReLU/max-pool kink and is skipped (at most a quarter of them).
    double err2 = 0, ref2 = 0;
    int64_t checked = 0, skipped = 0;
    for (int k = 0; k < 30; ++k) {
      const int64_t r = static_cast<int64_t>(rng() % nodes);
      const int64_t j = static_cast<int64_t>(rng() % x.cols());
      NodeMatrix p = x;
      const float v = p.row(r)[j];
      double est[2];
      for (int e = 0; e < 2; ++e) {
        const float eps = e == 0 ? 2e-3f : 1e-3f;
        p.row(r)[j] = v + eps;
        const double lp = loss(p)[r];
        p.row(r)[j] = v - eps;
        const double lm = loss(p)[r];
        p.row(r)[j] = v;
        est[e] = (lp - lm) / (2.0 * eps);
      }
      if (std::fabs(est[0] - est[1]) >
          0.05 * std::max(std::fabs(est[0]), std::fabs(est[1])) + 2e-4) {
        ++skipped;
        continue;
      }
      const double num = est[1];
      err2 += (num - g.row(r)[j]) * (num - g.row(r)[j]);
      ref2 += num * num;
      ++checked;
    }
    EXPECT_LE(skipped, 8) << "seed " << seed;
    EXPECT_GT(std::sqrt(ref2), 1e-3) << "seed " << seed;
    EXPECT_LT(std::sqrt(err2 / ref2), 3e-2) << "seed " << seed << " over " << checked;
  }
}

// ResNet-20 with Range EvoNorm on Fashion-MNIST-sized inputs: RangeEvoNorm everywhere, no ReLU
// anywhere, forward and backward finite, every layer gets a gradient.
TEST(Models, Resnet20RangeEvoForwardBackward) {
  auto m = make_model(spec_of("resnet20", "rangeevo", 1, 28));
  EXPECT_EQ(m->name(), "resnet20-rangeevo");
  const std::string s = m->summary();
  EXPECT_NE(s.find("RangeEvoNorm(16, groups=8)"), std::string::npos) << s;
  EXPECT_NE(s.find("RangeEvoNorm(64, groups=8)"), std::string::npos) << s;
  EXPECT_EQ(s.find("ReLU"), std::string::npos) << s;
  EXPECT_EQ(s.find("relu"), std::string::npos) << s;
  EXPECT_TRUE(m->buffers().empty());
  const int64_t nodes = 2, batch = 4;
  NodeMatrix x(nodes, m->layout().size()), g(nodes, m->layout().size());
  m->init(x, 11);
  std::mt19937_64 rng(12);
  const Tensor in = random_tensor(nodes, batch, 1, 28, 28, rng);
  std::vector<int32_t> labels(nodes * batch);
  for (auto& l : labels) l = static_cast<int32_t>(rng() % 10);
  const LossStats st = m->loss_and_grad(in, labels.data(), x, g);
  EXPECT_TRUE(std::isfinite(st.mean_loss()));
  EXPECT_GT(st.mean_loss(), 1.0);
  for (int64_t r = 0; r < nodes; ++r)
    for (int64_t j = 0; j < g.cols(); ++j) ASSERT_TRUE(std::isfinite(g.row(r)[j])) << j;
  // Every parameter segment (conv weights, gamma, beta, v, fc) receives a nonzero gradient.
  for (const auto& seg : m->layout().segments()) {
    double n2 = 0;
    for (int64_t j = 0; j < seg.size; ++j)
      n2 += g.row(0)[seg.offset + j] * g.row(0)[seg.offset + j];
    EXPECT_GT(n2, 0.0) << seg.name;
  }
  const LossStats ev = m->evaluate(in, labels.data(), x);
  EXPECT_TRUE(std::isfinite(ev.mean_loss()));
}

// Range BatchNorm's running statistics are per-node buffers (running_mean, running_scale):
// copied into a fresh model (what a checkpoint restores), they reproduce the eval outputs.
TEST(Models, RangeBatchNormBuffersSaveAndRestore) {
  const ModelSpec spec = spec_of("resnet8", "rangebn", 3, 12);
  auto a = make_model(spec);
  const int64_t nodes = 2, batch = 4;
  NodeMatrix x(nodes, a->layout().size()), g(nodes, a->layout().size());
  a->init(x, 3);
  auto bufs = a->buffers();
  EXPECT_EQ(bufs.size(), 2u * 7u);  // stem + 3 blocks x 2 norms, (mean, scale) each
  std::set<std::string> names;
  for (const auto& b : bufs) names.insert(b.name);
  EXPECT_TRUE(names.count("layer2.0.norm1.running_scale"));
  EXPECT_TRUE(names.count("norm1.running_mean"));
  std::mt19937_64 rng(4);
  std::normal_distribution<float> d(0.5f, 2.0f);
  Tensor in(nodes, batch, 3, 12, 12);
  for (auto& v : in.data) v = d(rng);
  std::vector<int32_t> labels(nodes * batch);
  for (auto& l : labels) l = static_cast<int32_t>(rng() % 10);
  for (int t = 0; t < 3; ++t) a->loss_and_grad(in, labels.data(), x, g);  // moves the statistics
  const std::vector<int32_t> want = a->predict(in, x);
  const Tensor logits_a = a->forward(in, x, false);
  auto b = make_model(spec);
  b->set_nodes(nodes);
  EXPECT_NE(b->forward(in, x, false).data, logits_a.data);  // initial statistics differ
  auto src = a->buffers(), dst = b->buffers();
  ASSERT_EQ(src.size(), dst.size());
  for (size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(src[i].name, dst[i].name);
    EXPECT_NE(*src[i].data,
              std::vector<float>(src[i].data->size(),
                                 src[i].name.find("scale") != std::string::npos ? 1.0f : 0.0f))
        << src[i].name;
    *dst[i].data = *src[i].data;
  }
  EXPECT_EQ(b->forward(in, x, false).data, logits_a.data);
  EXPECT_EQ(b->predict(in, x), want);
}

// A few plain SGD steps on one fixed random batch must fit it.
double train_steps(const ModelSpec& s, int steps, float lr, double* first) {
  auto m = make_model(s);
  const int64_t nodes = 2, batch = 8;
  NodeMatrix x(nodes, m->layout().size()), g(nodes, m->layout().size());
  m->init(x, 42);
  std::mt19937_64 rng(7);
  const Tensor in = random_tensor(nodes, batch, s.in_c, s.in_h, s.in_w, rng);
  std::vector<int32_t> labels(nodes * batch);
  for (auto& l : labels) l = static_cast<int32_t>(rng() % 10);
  double last = 0;
  for (int t = 0; t < steps; ++t) {
    const LossStats st = m->loss_and_grad(in, labels.data(), x, g);
    if (t == 0) *first = st.mean_loss();
    last = st.mean_loss();
    for (int64_t r = 0; r < nodes; ++r)
      for (int64_t j = 0; j < x.cols(); ++j) x.row(r)[j] -= lr * g.row(r)[j];
  }
  // Nodes saw different data, so their models differ now.
  EXPECT_FALSE(std::equal(x.row(0), x.row(0) + x.cols(), x.row(1)));
  const LossStats ev = m->evaluate(in, labels.data(), x);
  EXPECT_EQ(ev.loss.size(), 2u);
  std::printf("%s: loss %.4f -> %.4f (train mode), %.4f (eval mode) after %d steps\n",
              m->name().c_str(), *first, last, ev.mean_loss(), steps);
  return std::min(last, ev.mean_loss());
}

TEST(Models, SgdReducesLossLenet5) {
  double first = 0;
  const double last = train_steps(spec_of("lenet5", "none", 1, 28), 40, 0.1f, &first);
  EXPECT_GT(first, 1.8);  // ~ln(10) at initialization
  EXPECT_LT(last, 0.5 * first) << "first " << first;
}

TEST(Models, SgdReducesLossRangeNorms) {
  for (const char* norm : {"rangebn", "rangeevo"}) {
    SCOPED_TRACE(norm);
    double first = 0;
    const double last = train_steps(spec_of("resnet8", norm, 3, 8), 15, 0.05f, &first);
    EXPECT_LT(last, 0.6 * first) << "first " << first;
  }
}

TEST(Models, SgdReducesLossResnet20GroupNorm) {
  double first = 0;
  const double last = train_steps(spec_of("resnet20", "group", 3, 8), 15, 0.05f, &first);
  EXPECT_LT(last, 0.6 * first) << "first " << first;
}

}  // namespace
}  // namespace spush::nets
