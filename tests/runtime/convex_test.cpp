// Convex acceptance tests of the gossip algorithms on L2-regularized logistic regression
// (runtime/logistic.h): every algorithm, uncompressed and with top-1% compression, on IID and
// label-skewed (s = 0.8) splits over 4 and 8 nodes, must bring the averaged model within a
// stated relative objective gap of the centralized optimum x* (Newton-CG in double). The
// problem itself is checked first: gradients against finite differences, x* against plain
// gradient descent in double, the partition's label skew, minibatch sampling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "convex_problem.h"
#include "engine_util.h"
#include "spush/nets/optim.h"
#include "spush/runtime/algorithm.h"
#include "spush/runtime/logistic.h"
#include "spush/runtime/topology.h"

namespace spush::runtime {
namespace {

bool sanitized() {
  const char* v = std::getenv("SPUSH_SANITIZED");
  return v != nullptr && std::string(v) == "1";
}

using test::acceptance_spec;
using test::cached_problem;

std::vector<double> to_double(const float* x, int64_t d) { return {x, x + d}; }

// ---- the problem ---------------------------------------------------------------------------

TEST(LogisticProblem, GradientMatchesFiniteDifferences) {
  for (double skew : {0.0, 0.8}) {
    LogisticSpec s = acceptance_spec(4, skew);
    s.dim = 12;
    s.segments = 3;
    s.samples_per_node = 20;
    const LogisticProblem p(s);
    std::mt19937_64 rng(3);
    std::normal_distribution<float> nd(0.0f, 0.7f);
    std::vector<float> x(s.dim), g(s.dim);
    for (float& v : x) v = nd(rng);
    for (int i = 0; i < s.nodes; ++i) {
      p.gradient(i, x.data(), g.data());
      std::vector<double> xd = to_double(x.data(), s.dim);
      for (int64_t k = 0; k < s.dim; ++k) {
        const double h = 1e-5;
        std::vector<double> xp = xd, xm = xd;
        xp[k] += h;
        xm[k] -= h;
        const double fd =
            (p.local_objective(i, xp.data()) - p.local_objective(i, xm.data())) / (2 * h);
        EXPECT_NEAR(g[k], fd, 1e-4 * (1 + std::abs(fd)))
            << "skew " << skew << " node " << i << " k " << k;
      }
    }
  }
}

TEST(LogisticProblem, LocalObjectivesAverageToTheGlobalOne) {
  const LogisticProblem& p = cached_problem(8, 0.8);
  const int64_t d = p.dim();
  std::mt19937_64 rng(5);
  std::normal_distribution<double> nd(0.0, 0.5);
  std::vector<double> x(d);
  for (double& v : x) v = nd(rng);
  double mean_f = 0;
  std::vector<double> mean_g(d, 0.0), g(d);
  std::vector<float> xf(x.begin(), x.end()), gf(d);
  for (int i = 0; i < p.nodes(); ++i) {
    mean_f += p.local_objective(i, x.data()) / p.nodes();
    p.gradient(i, xf.data(), gf.data());
    for (int64_t k = 0; k < d; ++k) mean_g[k] += gf[k] / p.nodes();
  }
  EXPECT_NEAR(mean_f, p.objective(x.data()), 1e-12);
  p.full_gradient(x.data(), g.data());
  for (int64_t k = 0; k < d; ++k) EXPECT_NEAR(mean_g[k], g[k], 1e-5) << "k " << k;
  // Every sample is used once: the node lists partition [0, N).
  std::vector<int64_t> all;
  for (int i = 0; i < p.nodes(); ++i)
    all.insert(all.end(), p.node_samples(i).begin(), p.node_samples(i).end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(static_cast<int64_t>(all.size()), p.total_samples());
  for (int64_t j = 0; j < p.total_samples(); ++j) ASSERT_EQ(all[j], j);
}

TEST(LogisticProblem, OptimumAgreesWithGradientDescent) {
  const LogisticProblem& p = cached_problem(4, 0.0);
  const int64_t d = p.dim();
  EXPECT_LT(p.optimum_gradient_norm(), 1e-10);
  std::vector<double> g(d);
  p.full_gradient(p.optimum().data(), g.data());
  double gn = 0;
  for (double v : g) gn += v * v;
  EXPECT_LT(std::sqrt(gn), 1e-10);
  // Independent reference: gradient descent in double with step 1/L, where
  // L = lambda_max(A^T A / N) / 4 + lambda bounds the Hessian (power iteration, 200 steps,
  // with 5% margin).
  const int64_t n = p.total_samples();
  const std::vector<float>& a = p.features();
  std::vector<double> v(d, 1.0), av(n), w(d);
  double lmax = 0;
  for (int it = 0; it < 200; ++it) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < d; ++k) s += a[j * d + k] * v[k];
      av[j] = s;
    }
    std::fill(w.begin(), w.end(), 0.0);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k < d; ++k) w[k] += a[j * d + k] * av[j] / n;
    double norm = 0;
    for (double x : w) norm += x * x;
    norm = std::sqrt(norm);
    lmax = norm;  // ||A^T A v / N|| with ||v|| = 1 after the first step
    for (int64_t k = 0; k < d; ++k) v[k] = w[k] / norm;
  }
  const double step = 1.0 / (1.05 * lmax / 4 + p.spec().lambda);
  std::vector<double> x(d, 0.0);
  bool converged = false;
  for (int it = 0; it < 200000 && !converged; ++it) {
    p.full_gradient(x.data(), g.data());
    double n2 = 0;
    for (int64_t k = 0; k < d; ++k) {
      n2 += g[k] * g[k];
      x[k] -= step * g[k];
    }
    converged = n2 < 1e-24;
  }
  ASSERT_TRUE(converged) << "reference gradient descent did not reach |grad| < 1e-12";
  for (int64_t k = 0; k < d; ++k) EXPECT_NEAR(x[k], p.optimum()[k], 1e-8) << "k " << k;
  EXPECT_NEAR(p.objective(x.data()), p.optimum_value(), 1e-14);
  // f* is below f at random points nearby and at the start.
  std::mt19937_64 rng(11);
  std::normal_distribution<double> nd(0.0, 1e-3);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> y = p.optimum();
    for (double& v : y) v += nd(rng);
    EXPECT_GT(p.objective(y.data()), p.optimum_value());
  }
  const std::vector<float> zero(d, 0.0f);
  EXPECT_NEAR(p.objective(zero.data()), std::log(2.0), 1e-12);
  EXPECT_NEAR(p.relative_gap(zero.data(), zero.data()), 1.0, 1e-12);
  const std::vector<float> xs(p.optimum().begin(), p.optimum().end());
  EXPECT_LT(p.relative_gap(xs.data(), zero.data()), 1e-9);
  EXPECT_THROW(p.relative_gap(zero.data(), xs.data()), std::invalid_argument);  // x0 optimal
}

TEST(LogisticProblem, DataAreSeededAndSkewed) {
  const LogisticProblem a(acceptance_spec(4, 0.0)), b(acceptance_spec(4, 0.0));
  EXPECT_EQ(a.features(), b.features());
  EXPECT_EQ(a.labels(), b.labels());
  EXPECT_EQ(a.optimum_value(), b.optimum_value());
  LogisticSpec other = acceptance_spec(4, 0.0);
  other.seed = 8;
  EXPECT_NE(LogisticProblem(other).features(), a.features());
  // IID: every node near the global label balance; s = 0.8: nodes 0 (class -1 first in the
  // sorted pool) and n-1 (class +1) far from it.
  for (int n : {4, 8}) {
    const LogisticProblem& iid = cached_problem(n, 0.0);
    const LogisticProblem& skew = cached_problem(n, 0.8);
    for (int i = 0; i < n; ++i) EXPECT_NEAR(iid.positive_fraction(i), 0.5, 0.2) << "n " << n;
    EXPECT_LT(skew.positive_fraction(0), 0.2) << "n " << n;
    EXPECT_GT(skew.positive_fraction(n - 1), 0.8) << "n " << n;
  }
  // Layout: 4 segments of 16; 10 in 4 segments: 3, 3, 2, 2.
  EXPECT_EQ(a.layout().count(), 4);
  EXPECT_EQ(a.layout().segment(3).size, 16);
  const nets::Layout l = make_segment_layout(10, 4);
  EXPECT_EQ(l.offsets(), (std::vector<int64_t>{0, 3, 6, 8, 10}));
  EXPECT_THROW(make_segment_layout(3, 4), std::invalid_argument);
  LogisticSpec bad = acceptance_spec(4, 0.0);
  bad.lambda = 0;
  EXPECT_THROW(LogisticProblem{bad}, std::invalid_argument);
  bad = acceptance_spec(4, 1.5);
  EXPECT_THROW(LogisticProblem{bad}, std::invalid_argument);
}

TEST(LogisticProblem, MinibatchGradientAndSampler) {
  const LogisticProblem& p = cached_problem(4, 0.0);  // 128 samples per node
  const int64_t d = p.dim();
  std::vector<float> x(d, 0.1f), full(d), mb(d), acc(d, 0.0f);
  const int node = 2;
  const int64_t count = static_cast<int64_t>(p.node_samples(node).size());
  // The whole local set as one batch is the full gradient.
  std::vector<int64_t> every(count);
  std::iota(every.begin(), every.end(), 0);
  p.gradient(node, x.data(), full.data());
  p.minibatch_gradient(node, x.data(), mb.data(), every);
  for (int64_t k = 0; k < d; ++k) EXPECT_NEAR(mb[k], full[k], 1e-5);
  // One epoch of batches of 8 (count divisible by 8) covers each position once, and the mean
  // of its batch gradients is the full gradient.
  ASSERT_EQ(count % 8, 0);
  MinibatchSampler sampler(count, 8, 42);
  std::vector<int> seen(count, 0);
  const int64_t batches = count / 8;
  for (int64_t b = 0; b < batches; ++b) {
    const auto batch = sampler.next();
    ASSERT_EQ(batch.size(), 8u);
    for (int64_t pos : batch) ++seen[pos];
    p.minibatch_gradient(node, x.data(), mb.data(), batch);
    for (int64_t k = 0; k < d; ++k) acc[k] += mb[k] / batches;
  }
  for (int64_t j = 0; j < count; ++j) EXPECT_EQ(seen[j], 1) << "position " << j;
  for (int64_t k = 0; k < d; ++k) EXPECT_NEAR(acc[k], full[k], 1e-5);
  const std::vector<int64_t> outside{count};
  EXPECT_THROW(p.minibatch_gradient(node, x.data(), mb.data(), outside), std::out_of_range);
}

TEST(LogisticProblem, AverageAndConsensusDistance) {
  nets::NodeMatrix z(3, 2);
  const float v[3][2] = {{1, 2}, {3, 6}, {5, 1}};
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 2; ++k) z.row(r)[k] = v[r][k];
  EXPECT_EQ(average_rows(z), (std::vector<float>{3, 3}));
  // ((4 + 1) + (0 + 9) + (4 + 4)) / 3
  EXPECT_NEAR(consensus_distance(z), 22.0 / 3.0, 1e-12);
}

// ---- acceptance: every algorithm solves the problem ------------------------------------------

struct Case {
  std::string algorithm;  // sgp, deepsqueeze, sparsepush, scsp, choco
  bool compressed;        // top-1% (layer-wise, local16 indices) or identity
  int nodes;
  double skew;
  std::string topology;
};

std::string case_name(const Case& c) {
  return c.algorithm + (c.compressed ? "_top1pct" : "_dense") + "_n" + std::to_string(c.nodes) +
         (c.skew > 0 ? "_skew08" : "_iid") + "_" +
         (c.topology == "bidir-ring" ? std::string("bidirring") : c.topology);
}

// Step sizes: lr_t = lr / (1 + decay t). Uncompressed gossip mixes exactly (eta = 1) and takes a
// large constant-then-decaying step; compressed gossip needs small averaging rates and a
// decaying step so that the consensus error (whose floor grows with lr) vanishes.
struct Hyper {
  double lr, decay, eta;
  int64_t max_rounds;
  double tolerance;  // relative objective gap of the averaged model
};

Hyper hyper(const Case& c) {
  if (!c.compressed) return {1.0, 0.02, 1.0, 4000, 1e-4};
  if (c.algorithm == "choco") return {0.5, 0.01, 0.1, 8000, 1e-3};
  return {0.5, 0.01, 0.05, 8000, 1e-3};
}

class ConvexAcceptance : public ::testing::TestWithParam<Case> {};

TEST_P(ConvexAcceptance, ReachesTheCentralizedOptimum) {
  const Case& c = GetParam();
  const LogisticProblem& prob = cached_problem(c.nodes, c.skew);
  const Hyper h = hyper(c);
  const int64_t d = prob.dim();
  SCOPED_TRACE(::testing::Message() << case_name(c) << " seed " << prob.spec().seed << " lr "
                                    << h.lr << " decay " << h.decay << " eta " << h.eta);

  const Schedule schedule = make_schedule({.name = c.topology, .nodes = c.nodes});
  AlgorithmSpec spec;
  spec.kind = algorithm_kind_from_string(c.algorithm);
  spec.eta = h.eta;
  spec.compressor.kind =
      c.compressed ? kernels::CompressorKind::kTopK : kernels::CompressorKind::kIdentity;
  spec.compressor.density = 0.01;
  spec.compressor.index_codec = kernels::IndexCodec::kLocal16;
  spec.layerwise = true;
  auto algo = test::local_algorithm(spec, prob.layout(), schedule);
  nets::NodeMatrix x0(c.nodes, d);  // common start 0
  algo->init(x0);
  const std::vector<float> start(d, 0.0f);

  nets::Optimizer opt({.momentum = 0, .nesterov = false, .weight_decay = 0, .qgm = false}, c.nodes,
                      d);
  nets::NodeMatrix g(c.nodes, d);
  constexpr int64_t kCheckEvery = 20;
  constexpr int64_t kEpochRounds = 100;
  double gap = 1;
  int64_t t = 0;
  for (; t < h.max_rounds; ++t) {
    prob.gradients(algo->z(), g);
    const float lr = static_cast<float>(h.lr / (1 + h.decay * static_cast<double>(t)));
    opt.step(algo->x(), g, lr);
    algo->communicate(t, t / kEpochRounds);
    if ((t + 1) % kCheckEvery == 0) {
      gap = prob.relative_gap(average_rows(algo->z()).data(), start.data());
      ASSERT_TRUE(std::isfinite(gap)) << "diverged at round " << t + 1;
      if (gap < h.tolerance) {
        ++t;
        break;
      }
    }
  }
  const double consensus = consensus_distance(algo->z());
  std::printf("[ convex   ] %-40s gap %.3e after %5lld rounds, consensus %.2e, factor %.2f\n",
              case_name(c).c_str(), gap, static_cast<long long>(t), consensus,
              algo->stats().compression_factor());
  EXPECT_LT(gap, h.tolerance) << "after " << t << " rounds";

  if (spec.kind == AlgorithmKind::kScsp) {
    // The final phase: uncompressed push-sum gossip brings the nodes together without moving
    // the mass: the gap stays below the tolerance and the consensus distance collapses.
    algo->gossip_rounds(spec.scsp_final_rounds, t, t / kEpochRounds);
    const double gap_final = prob.relative_gap(average_rows(algo->z()).data(), start.data());
    const double consensus_final = consensus_distance(algo->z());
    EXPECT_LT(gap_final, h.tolerance);
    EXPECT_LT(consensus_final, 1e-2 * consensus + 1e-10);
    for (int i = 0; i < c.nodes; ++i)
      EXPECT_LT(prob.relative_gap(algo->z().row(i), start.data()), 2 * h.tolerance) << "node " << i;
  }
  // Accounting: top-1% sends 4 of 64 values per message (+ header), identity all of them.
  const double factor = algo->stats().compression_factor();
  if (c.compressed && spec.kind != AlgorithmKind::kScsp) {
    EXPECT_GT(factor, 3.0);
  } else if (!c.compressed) {
    EXPECT_GT(factor, 0.7);
    EXPECT_LE(factor, 1.0);
  }
  EXPECT_EQ(
      algo->stats().rounds,
      static_cast<uint64_t>(t + (spec.kind == AlgorithmKind::kScsp ? spec.scsp_final_rounds : 0)));
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  const bool asan = sanitized();
  for (int n : {4, 8}) {
    if (asan && n == 8) continue;  // the sanitizer pass keeps n = 4 only
    for (double skew : {0.0, 0.8}) {
      cases.push_back({"sgp", false, n, skew, "ring"});
      for (const char* a : {"deepsqueeze", "sparsepush", "scsp", "choco"}) {
        const std::string topo = std::string(a) == "deepsqueeze" ? "bidir-ring" : "ring";
        for (bool comp : {false, true}) {
          if (asan && !comp && skew > 0) continue;
          cases.push_back({a, comp, n, skew, topo});
        }
      }
      if (n == 4)
        for (bool comp : {false, true}) cases.push_back({"sparsepush", comp, n, skew, "rings4"});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllAlgorithms, ConvexAcceptance, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return case_name(info.param);
                         });

}  // namespace
}  // namespace spush::runtime
