// The centralized algorithms (algorithm.h, engine_centralized.cpp) against the math: each one
// solves the convex logistic problem (runtime/logistic.h) on IID and label-skewed splits; BSP
// over n nodes follows single-node gradient descent on the union of their data; the MV support
// is the top of the vote counts with the documented tie rule; the byte and bit counts equal the
// analytic message sizes; a restored state continues bit for bit; malformed messages are
// CommErrors naming the node.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "convex_problem.h"
#include "engine_util.h"
#include "spush/kernels/codec.h"
#include "spush/kernels/philox.h"
#include "spush/kernels/segments.h"
#include "spush/nets/optim.h"
#include "spush/runtime/algorithm.h"
#include "spush/runtime/logistic.h"
#include "spush/runtime/topology.h"
#include "thread_comm.h"

namespace spush::runtime {
namespace {

AlgorithmSpec central_spec(const std::string& name, double density, int local_steps) {
  AlgorithmSpec s;
  s.kind = algorithm_kind_from_string(name);
  s.compressor.density = density;
  s.compressor.seed = 3;
  s.local_steps = local_steps;
  s.central.dgc_warmup_epochs = 0;
  s.central.dgc_weight_decay = 0;  // the problem has its own L2 term
  s.central.gaia_threshold = 0.05;
  s.central.add_drop_density = 0.04;
  return s;
}

// ---- convex problem ---------------------------------------------------------------------------

struct Case {
  std::string algorithm;
  int nodes;
  double skew;
  int local_steps;
  double dgc_momentum = 0.9;
};

std::string case_name(const Case& c) {
  std::string a = c.algorithm;
  std::replace(a.begin(), a.end(), '-', '_');
  return a + (a == "dgc" && c.dgc_momentum == 0 ? "_m0" : "") + "_n" + std::to_string(c.nodes) +
         (c.skew > 0 ? "_skew08" : "_iid") + "_H" + std::to_string(c.local_steps);
}

class CentralizedConvex : public ::testing::TestWithParam<Case> {};

// Full-batch local gradients, step lr / (1 + 0.01 t) (the decay removes the error of local steps
// and sparsification); the averaged model must come within 1e-3 of the optimum's objective gap.
// DGC with momentum 0.9 is held to 1e-2: momentum factor masking scales each node's gradient
// coordinates by 1 .. 1 / (1 - m) depending on how often they are sent, which moves the fixed
// point (the gap stops near 3.5e-3 however slowly the step decays); without momentum it is
// error-feedback top-K on gradients and reaches 1e-3.
TEST_P(CentralizedConvex, ReachesTheOptimum) {
  const Case& c = GetParam();
  const LogisticProblem& prob = test::cached_problem(c.nodes, c.skew);
  const int64_t d = prob.dim();
  AlgorithmSpec spec = central_spec(c.algorithm, 0.1, c.local_steps);
  spec.central.dgc_momentum = c.dgc_momentum;
  const bool dgc_momentum = spec.kind == AlgorithmKind::kDgc && c.dgc_momentum > 0;
  const Schedule schedule = make_schedule({.name = "ring", .nodes = c.nodes});
  auto algo = test::local_algorithm(spec, prob.layout(), schedule);
  nets::NodeMatrix x0(c.nodes, d);
  algo->init(x0);
  const std::vector<float> start(d, 0.0f);
  nets::Optimizer opt({.momentum = 0, .nesterov = false, .weight_decay = 0, .qgm = false}, c.nodes,
                      d);
  nets::NodeMatrix g(c.nodes, d);
  // DGC's momentum correction (0.9) multiplies the step by about 10.
  const double lr0 = dgc_momentum ? 0.1 : 1.0, tolerance = dgc_momentum ? 1e-2 : 1e-3;
  const double decay = 0.01;
  double gap = 1;
  int64_t t = 0;
  for (; t < 20000; ++t) {
    const double lr = lr0 / (1 + decay * static_cast<double>(t));
    algo->set_lr_ratio(lr / lr0);
    prob.gradients(algo->z(), g);
    algo->reduce_gradients(g, t, t / 100);
    opt.step(algo->x(), g, static_cast<float>(lr));
    algo->communicate(t, t / 100);
    if ((t + 1) % (20 * c.local_steps) == 0) {
      gap = prob.relative_gap(average_rows(algo->z()).data(), start.data());
      ASSERT_TRUE(std::isfinite(gap)) << "diverged at iteration " << t + 1;
      if (gap < tolerance) {
        ++t;
        break;
      }
    }
  }
  std::printf(
      "[ central  ] %-28s gap %.3e after %5lld iterations, up %.1fx, down %.1fx\n",
      case_name(c).c_str(), gap, static_cast<long long>(t), algo->stats().compression_factor(),
      algo->stats().bytes_down ? algo->stats().bytes_dense / algo->stats().bytes_down : 0.0);
  EXPECT_LT(gap, tolerance) << "after " << t << " iterations";
  // Every node holds a model near the optimum too (Gaia keeps one model per node).
  for (int i = 0; i < c.nodes; ++i)
    EXPECT_LT(prob.relative_gap(algo->z().row(i), start.data()), 5 * tolerance) << "node " << i;
}

std::vector<Case> convex_cases() {
  std::vector<Case> cases;
  for (double skew : {0.0, 0.8}) {
    cases.push_back({"bsp", 4, skew, 1});
    cases.push_back({"dgc", 4, skew, 1});
    cases.push_back({"dgc", 4, skew, 1, 0.0});
    cases.push_back({"gaia", 4, skew, 1});
    cases.push_back({"gaia", 4, skew, 4});
    for (const char* a : {"fedavg", "ssgd-topk", "ssgd-mv", "mv-ad", "mv-rs"}) {
      cases.push_back({a, 4, skew, 1});
      cases.push_back({a, 4, skew, 4});
    }
  }
  cases.push_back({"ssgd-mv", 8, 0.8, 2});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllCentralized, CentralizedConvex, ::testing::ValuesIn(convex_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return case_name(info.param);
                         });

// ---- BSP is gradient descent on the union of the data -------------------------------------

TEST(Bsp, NNodesFollowOneNodeWithTheUnionOfTheirBatches) {
  constexpr int kNodes = 4;
  const LogisticProblem& many = test::cached_problem(kNodes, 0.0);
  LogisticSpec one_spec = test::acceptance_spec(1, 0.0);
  one_spec.samples_per_node = kNodes * test::acceptance_spec(kNodes, 0.0).samples_per_node;
  const LogisticProblem one(one_spec);  // the same generated samples, on one node
  ASSERT_EQ(one.total_samples(), many.total_samples());
  const int64_t d = many.dim();

  auto run = [&](const LogisticProblem& prob, int nodes, bool bsp) {
    AlgorithmSpec spec = central_spec("bsp", 1.0, 1);
    const Schedule schedule = make_schedule({.name = "ring", .nodes = nodes});
    auto algo = test::local_algorithm(spec, prob.layout(), schedule);
    nets::NodeMatrix x0(nodes, d);
    algo->init(x0);
    nets::Optimizer opt({.momentum = 0.9, .nesterov = true, .weight_decay = 1e-3, .qgm = false},
                        nodes, d);
    nets::NodeMatrix g(nodes, d);
    for (int64_t t = 0; t < 200; ++t) {
      prob.gradients(algo->z(), g);
      if (bsp) algo->reduce_gradients(g, t, 0);
      opt.step(algo->x(), g, 0.5f);
      algo->communicate(t, 0);
    }
    return std::vector<float>(algo->x().row(0), algo->x().row(0) + d);
  };
  const std::vector<float> a = run(many, kNodes, true);
  const std::vector<float> b = run(one, 1, false);
  double diff = 0, norm = 0;
  for (int64_t j = 0; j < d; ++j) {
    diff = std::max(diff, static_cast<double>(std::fabs(a[j] - b[j])));
    norm = std::max(norm, static_cast<double>(std::fabs(b[j])));
  }
  EXPECT_LT(diff, 1e-5 * norm) << "max |x_bsp - x_one| = " << diff << ", max |x| = " << norm;
  EXPECT_GT(norm, 0.1);
}

// ---- the MV support ---------------------------------------------------------------------------

TEST(MajoritySupport, TopOfTheVotesWithThePerRoundTieRule) {
  // 64 positions: 6 with 3 votes, 20 with 2 votes, the rest 0 or 1; K = 10 takes the six 3s
  // and 4 of the twenty 2s: those with the largest priority of the round.
  std::vector<double> votes(64, 0.0);
  for (int j = 0; j < 64; ++j) votes[j] = j % 3 == 0 ? 1 : 0;
  const std::vector<int> threes{5, 17, 23, 40, 41, 63};
  std::vector<int> twos;
  for (int j = 0; j < 64 && twos.size() < 20; j += 3)
    if (std::find(threes.begin(), threes.end(), j + 1) == threes.end()) twos.push_back(j + 1);
  for (int j : threes) votes[j] = 3;
  for (int j : twos) votes[j] = 2;
  const uint64_t seed = 11;
  std::set<std::vector<int32_t>> distinct;
  for (uint64_t round = 0; round < 8; ++round) {
    const std::vector<int32_t> s = majority_support(votes, 10, seed, round);
    ASSERT_EQ(s.size(), 10u);
    ASSERT_TRUE(std::is_sorted(s.begin(), s.end()));
    for (int j : threes) EXPECT_TRUE(std::binary_search(s.begin(), s.end(), j)) << j;
    // The four 2s chosen are those of largest philox priority of the round.
    std::vector<int> by_priority = twos;
    std::sort(by_priority.begin(), by_priority.end(), [&](int a, int b) {
      const float pa = kernels::philox_uniform(seed, 0x4d56u, round, a);
      const float pb = kernels::philox_uniform(seed, 0x4d56u, round, b);
      return pa > pb || (pa == pb && a < b);
    });
    std::vector<int32_t> want(threes.begin(), threes.end());
    want.insert(want.end(), by_priority.begin(), by_priority.begin() + 4);
    std::sort(want.begin(), want.end());
    EXPECT_EQ(s, want) << "round " << round;
    distinct.insert(s);
  }
  EXPECT_GT(distinct.size(), 1u) << "the tie rule must not favour the same positions every round";
  // No ties: exactly the largest counts.
  std::vector<double> strict(32);
  std::iota(strict.begin(), strict.end(), 0.0);
  const std::vector<int32_t> top = majority_support(strict, 5, seed, 0);
  EXPECT_EQ(top, (std::vector<int32_t>{27, 28, 29, 30, 31}));
  EXPECT_THROW(majority_support(strict, 33, seed, 0), std::invalid_argument);
}

TEST(SampledSupport, DrawsInProportionToTheVotesWithoutReplacement) {
  // Position 0 has 8 votes, positions 1..8 one each, the rest none; K = 2: position 0 is drawn
  // with probability 1 - P(neither draw picks it) = 1 - (8/16)(7/15)... rather than counting
  // exactly, compare frequencies over many rounds with the exact inclusion probability.
  std::vector<double> votes(32, 0.0);
  votes[0] = 8;
  for (int j = 1; j <= 8; ++j) votes[j] = 1;
  // P(0 in a sample of 2) = 8/16 + sum_j (1/16) (8/15) = 0.5 + 8 * (1/16) * (8/15).
  const double p0 = 0.5 + 8.0 / 16.0 * 8.0 / 15.0;
  int with0 = 0;
  const int rounds = 4000;
  for (int r = 0; r < rounds; ++r) {
    const std::vector<int32_t> s = sampled_support(votes, 2, 5, static_cast<uint64_t>(r));
    ASSERT_EQ(s.size(), 2u);
    ASSERT_NE(s[0], s[1]);
    for (int32_t j : s) ASSERT_LE(j, 8) << "a position without votes was drawn";
    with0 += s[0] == 0;
  }
  const double f = static_cast<double>(with0) / rounds;
  const double sd = std::sqrt(p0 * (1 - p0) / rounds);
  EXPECT_NEAR(f, p0, 5 * sd);
}

// ---- message sizes and bit counts ---------------------------------------------------------

// Bits of the block position code of k indices among d (kernels/codec.h).
double code_bits(int64_t k, int64_t d) {
  const int64_t b = kernels::block_position_block(static_cast<double>(std::max<int64_t>(k, 1)) /
                                                  static_cast<double>(d));
  return static_cast<double>(k) * (1 + std::countr_zero(static_cast<uint64_t>(b))) +
         static_cast<double>((d + b - 1) / b);
}
double set_bytes(int64_t k, int64_t d, bool values) {
  return 4 + std::ceil(code_bits(k, d) / 8) + (values ? 4.0 * static_cast<double>(k) : 0.0);
}

struct OneRound {
  CommStats st;
  std::vector<std::vector<float>> x;
};

// One iteration from x0 = 0 with the given per-node gradients (plain SGD, lr 1).
OneRound one_round(const std::string& name, int nodes, int64_t d, double density,
                   const std::function<float(int, int, int64_t)>& grad, int rounds = 1,
                   double add_drop_density = 0.04) {
  AlgorithmSpec spec = central_spec(name, density, 1);
  spec.central.add_drop_density = add_drop_density;
  spec.central.dgc_momentum = 0;
  const nets::Layout layout = make_segment_layout(d, 1);
  const Schedule schedule = make_schedule({.name = "ring", .nodes = nodes});
  auto algo = test::local_algorithm(spec, layout, schedule);
  nets::NodeMatrix x0(nodes, d);
  algo->init(x0);
  nets::Optimizer opt({.momentum = 0, .nesterov = false, .weight_decay = 0, .qgm = false}, nodes,
                      d);
  nets::NodeMatrix g(nodes, d);
  for (int t = 0; t < rounds; ++t) {
    for (int i = 0; i < nodes; ++i)
      for (int64_t j = 0; j < d; ++j) g.row(i)[j] = grad(t, i, j);
    algo->reduce_gradients(g, t, 0);
    opt.step(algo->x(), g, 1.0f);
    algo->communicate(t, 0);
  }
  OneRound out;
  out.st = algo->stats();
  for (int i = 0; i < nodes; ++i) out.x.emplace_back(algo->x().row(i), algo->x().row(i) + d);
  return out;
}

TEST(CentralizedAccounting, BytesAndBitsEqualTheMessageSizes) {
  constexpr int n = 4;
  constexpr int64_t d = 1000;
  constexpr double h = 40;  // header bytes
  // Distinct magnitudes per node so that every top-K is unique.
  auto base = [](int i, int64_t j) {
    return static_cast<float>(((j * 7919 + i * 104729) % 1000) + 1) * (j % 2 ? 1.0f : -1.0f);
  };
  auto grad = [&](int, int i, int64_t j) { return base(i, j); };
  const int64_t k = kernels::topk_count(d, 0.01);
  ASSERT_EQ(k, 10);
  {  // BSP: d fp32 up and down per node.
    const OneRound r = one_round("bsp", n, d, 0.01, grad);
    EXPECT_EQ(r.st.bytes_actual, static_cast<uint64_t>(n * (h + 4 * d)));
    EXPECT_EQ(r.st.bytes_down, static_cast<uint64_t>(n * (h + 4 * d)));
    EXPECT_DOUBLE_EQ(r.st.bytes_paper, n * 4.0 * d);
    EXPECT_DOUBLE_EQ(r.st.bytes_down_paper, n * 4.0 * d);
    EXPECT_DOUBLE_EQ(r.st.bytes_dense, n * 4.0 * d);
  }
  {  // SSGD-MV: votes (K indices) + K values up; the support + K values down.
    const OneRound r = one_round("ssgd-mv", n, d, 0.01, grad);
    EXPECT_EQ(r.st.bytes_actual,
              static_cast<uint64_t>(n * (h + set_bytes(k, d, false)) + n * (h + 4.0 * k)));
    EXPECT_EQ(r.st.bytes_down,
              static_cast<uint64_t>(n * (h + set_bytes(k, d, false)) + n * (h + 4.0 * k)));
    EXPECT_DOUBLE_EQ(r.st.bytes_paper * 8, n * (code_bits(k, d) + 32.0 * k));
    EXPECT_DOUBLE_EQ(r.st.bytes_down_paper * 8, n * (code_bits(k, d) + 32.0 * k));
    // 003's arithmetic: about log2(1/rho) + 2 bits per position (7 + 1 per index, 8 blocks).
    EXPECT_DOUBLE_EQ(code_bits(k, d), 10 * 8 + 8);
  }
  {  // SSGD-top-K: K indices and values up; the union of the supports down.
    const OneRound r = one_round("ssgd-topk", n, d, 0.01, grad);
    std::set<int64_t> uni;
    for (int i = 0; i < n; ++i) {
      std::vector<float> v(d);
      for (int64_t j = 0; j < d; ++j) v[j] = std::fabs(base(i, j));
      std::vector<int64_t> ids(d);
      std::iota(ids.begin(), ids.end(), 0);
      std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
      uni.insert(ids.begin(), ids.begin() + k);
    }
    const auto u = static_cast<int64_t>(uni.size());
    EXPECT_GT(u, k);
    EXPECT_EQ(r.st.bytes_actual, static_cast<uint64_t>(n * (h + set_bytes(k, d, true))));
    EXPECT_EQ(r.st.bytes_down, static_cast<uint64_t>(n * (h + set_bytes(u, d, true))));
    EXPECT_DOUBLE_EQ(r.st.bytes_paper * 8, n * (code_bits(k, d) + 32.0 * k));
    EXPECT_DOUBLE_EQ(r.st.bytes_down_paper * 8, n * (code_bits(u, d) + 32.0 * u));
    // The server's model moved on the union only, by the mean of the sent values.
    int64_t moved = 0;
    for (int64_t j = 0; j < d; ++j) moved += r.x[0][j] != 0.0f;
    EXPECT_EQ(moved, u);
  }
  {  // MV-AD: the first round votes fully; then each node adds and drops K_ad = 2 votes (its
     // top-K moved by far more than 2 positions: the gradient of round 2 is shifted and doubled).
    const int64_t k_ad = kernels::topk_count(d, 0.002);
    ASSERT_EQ(k_ad, 2);
    // Round 2's gradient is 1000 times larger on other positions: every top-K changes.
    auto shifting = [&](int t, int i, int64_t j) {
      return t == 0 ? base(i, j) : 1000.0f * base(i, (j + 37) % d);
    };
    const OneRound r1 = one_round("mv-ad", n, d, 0.01, grad, 1, 0.002);
    EXPECT_EQ(r1.st.bytes_actual,
              static_cast<uint64_t>(n * (h + set_bytes(k, d, false)) + n * (h + 4.0 * k)));
    EXPECT_DOUBLE_EQ(r1.st.bytes_paper * 8, n * (code_bits(k, d) + 32.0 * k));
    const OneRound r2 = one_round("mv-ad", n, d, 0.01, shifting, 2, 0.002);
    EXPECT_EQ(r2.st.bytes_actual - r1.st.bytes_actual,
              static_cast<uint64_t>(n * (h + 2 * set_bytes(k_ad, d, false)) + n * (h + 4.0 * k)));
    EXPECT_DOUBLE_EQ((r2.st.bytes_paper - r1.st.bytes_paper) * 8,
                     n * (2 * code_bits(k_ad, d) + 32.0 * k));
    // The downlink is the support and its values, as for SSGD-MV.
    EXPECT_DOUBLE_EQ((r2.st.bytes_down_paper - r1.st.bytes_down_paper) * 8,
                     n * (code_bits(k, d) + 32.0 * k));
  }
  {  // FedAvg with half the nodes chosen: only they send (d fp32), every node gets the model.
    AlgorithmSpec spec = central_spec("fedavg", 0.01, 1);
    spec.central.fedavg_fraction = 0.5;
    const nets::Layout layout = make_segment_layout(d, 1);
    const Schedule schedule = make_schedule({.name = "ring", .nodes = n});
    auto algo = test::local_algorithm(spec, layout, schedule);
    nets::NodeMatrix x0(n, d);
    algo->init(x0);
    for (int i = 0; i < n; ++i) algo->x().row(i)[0] = static_cast<float>(i + 1);
    algo->communicate(0, 0);
    EXPECT_EQ(algo->stats().bytes_actual, static_cast<uint64_t>(2 * (h + 4 * d)));
    EXPECT_EQ(algo->stats().bytes_down, static_cast<uint64_t>(n * (h + 4 * d)));
    const float avg = algo->x().row(0)[0];
    // The mean of two of 1, 2, 3, 4.
    std::set<float> pair_means;
    for (int a = 1; a <= n; ++a)
      for (int b = a + 1; b <= n; ++b) pair_means.insert((a + b) / 2.0f);
    EXPECT_TRUE(pair_means.count(avg)) << avg;
    for (int i = 1; i < n; ++i) EXPECT_EQ(algo->x().row(i)[0], avg);
  }
}

// ---- Gaia ---------------------------------------------------------------------------------

TEST(Gaia, SharesOnlySignificantUpdatesAndKeepsTheRest) {
  constexpr int n = 3;
  constexpr int64_t d = 8;
  AlgorithmSpec spec = central_spec("gaia", 1.0, 1);
  spec.central.gaia_threshold = 0.1;
  const Schedule schedule = make_schedule({.name = "ring", .nodes = n});
  auto algo = test::local_algorithm(spec, make_segment_layout(d, 1), schedule);
  nets::NodeMatrix x0(n, d);
  x0.fill(1.0f);
  algo->init(x0);
  // Node i moves weight i by +0.5 (significant: 0.5 > 0.1 * 1.5) and weight 7 by +0.01 (not).
  for (int i = 0; i < n; ++i) {
    algo->x().row(i)[i] += 0.5f;
    algo->x().row(i)[7] += 0.01f;
  }
  algo->communicate(0, 0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) EXPECT_FLOAT_EQ(algo->x().row(i)[j], 1.5f) << i << "," << j;
    EXPECT_FLOAT_EQ(algo->x().row(i)[7], 1.01f) << "its own small update only";
  }
  // The small updates accumulate until they are significant: 10 more steps of 0.01 make 0.11
  // > 0.1 * 1.1 only once |0.11| > 0.111; after 11 more the total 0.12 > 0.112 is shared.
  for (int t = 1; t <= 11; ++t) {
    for (int i = 0; i < n; ++i) algo->x().row(i)[7] += 0.01f;
    algo->communicate(t, 0);
  }
  for (int i = 0; i < n; ++i) EXPECT_NEAR(algo->x().row(i)[7], 1.0 + 3 * 0.12, 1e-5) << i;
  // The threshold follows the learning rate: with ratio 0.01 a small step is significant.
  algo->set_lr_ratio(0.01);
  algo->x().row(0)[6] += 0.02f;
  algo->communicate(12, 0);
  for (int i = 0; i < n; ++i) EXPECT_FLOAT_EQ(algo->x().row(i)[6], 1.02f) << i;
}

// ---- DGC ----------------------------------------------------------------------------------

TEST(Dgc, MomentumCorrectionMaskingAndClipping) {
  constexpr int n = 2;
  constexpr int64_t d = 10;
  AlgorithmSpec spec = central_spec("dgc", 0.1, 1);  // K = 1
  spec.central.dgc_momentum = 0.5;
  spec.central.dgc_clip = 0;
  const Schedule schedule = make_schedule({.name = "ring", .nodes = n});
  auto algo = test::local_algorithm(spec, make_segment_layout(d, 1), schedule);
  nets::NodeMatrix x0(n, d);
  algo->init(x0);
  nets::NodeMatrix g(n, d);
  // Node 0: gradient 1 at j = 0 and 0.6 at j = 1; node 1: 0.9 at j = 2.
  auto set = [&] {
    g.fill(0.0f);
    g.row(0)[0] = 1.0f;
    g.row(0)[1] = 0.6f;
    g.row(1)[2] = 0.9f;
  };
  set();
  algo->reduce_gradients(g, 0, 0);
  // Sent: node 0's j = 0 (1.0), node 1's j = 2 (0.9); mean over 2 nodes.
  for (int i = 0; i < n; ++i) {
    EXPECT_FLOAT_EQ(g.row(i)[0], 0.5f);
    EXPECT_FLOAT_EQ(g.row(i)[1], 0.0f);
    EXPECT_FLOAT_EQ(g.row(i)[2], 0.45f);
  }
  set();
  algo->reduce_gradients(g, 1, 0);
  // Node 0: u = 0.5 u + g: j = 0 was masked (u = 0) -> 1.0; j = 1: 0.5 * 0.6 + 0.6 = 0.9;
  // v(1) = 0.6 + 0.9 = 1.5 > v(0) = 1.0: j = 1 is sent with 1.5.
  EXPECT_FLOAT_EQ(g.row(0)[1], 0.75f);
  EXPECT_FLOAT_EQ(g.row(0)[0], 0.0f);
  // Clipping: a gradient of norm 10 is clipped to clip / sqrt(n) before accumulating.
  AlgorithmSpec clipped = spec;
  clipped.central.dgc_clip = std::sqrt(2.0);  // local bound 1
  clipped.central.dgc_momentum = 0;
  auto algo2 = test::local_algorithm(clipped, make_segment_layout(d, 1), schedule);
  algo2->init(x0);
  g.fill(0.0f);
  g.row(0)[3] = 10.0f;
  g.row(1)[3] = 10.0f;
  algo2->reduce_gradients(g, 0, 0);
  EXPECT_FLOAT_EQ(g.row(0)[3], 1.0f);
}

TEST(Dgc, DensityWarmUp) {
  constexpr int n = 2;
  constexpr int64_t d = 1000;
  AlgorithmSpec spec = central_spec("dgc", 0.001, 1);
  spec.central.dgc_warmup_epochs = 4;
  const Schedule schedule = make_schedule({.name = "ring", .nodes = n});
  auto algo = test::local_algorithm(spec, make_segment_layout(d, 1), schedule);
  nets::NodeMatrix x0(n, d);
  algo->init(x0);
  nets::NodeMatrix g(n, d);
  // Per epoch: kept values per node 250, 63, 16, 4, then 1 (K of the configured density).
  const int64_t want[5] = {250, 63, 16, 4, 1};
  uint64_t before = 0;
  for (int epoch = 0; epoch < 5; ++epoch) {
    for (int i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j) g.row(i)[j] = static_cast<float>(j + 1);
    algo->reduce_gradients(g, epoch, epoch);
    const double up = static_cast<double>(algo->stats().bytes_actual - before) / n;
    before = algo->stats().bytes_actual;
    EXPECT_DOUBLE_EQ(up, 40 + set_bytes(want[epoch], d, true)) << "epoch " << epoch;
  }
}

// ---- resume -------------------------------------------------------------------------------

TEST(CentralizedState, RestoredStateContinuesBitForBit) {
  constexpr int n = 4;
  const LogisticProblem& prob = test::cached_problem(n, 0.8);
  const int64_t d = prob.dim();
  for (const char* name :
       {"bsp", "fedavg", "gaia", "dgc", "ssgd-topk", "ssgd-mv", "mv-ad", "mv-rs"}) {
    SCOPED_TRACE(name);
    const bool grads = std::string(name) == "bsp" || std::string(name) == "dgc";
    const AlgorithmSpec spec = central_spec(name, 0.1, grads ? 1 : 2);
    const Schedule schedule = make_schedule({.name = "ring", .nodes = n});
    auto step = [&](test::LocalAlgorithm& a, nets::Optimizer& opt, int64_t t) {
      nets::NodeMatrix g(n, d);
      prob.gradients(a->z(), g);
      a->reduce_gradients(g, t, 0);
      opt.step(a->x(), g, 0.3f);
      a->communicate(t, 0);
    };
    const nets::OptimizerSpec os{.momentum = 0, .nesterov = false, .weight_decay = 0, .qgm = false};
    auto a = test::local_algorithm(spec, prob.layout(), schedule);
    nets::NodeMatrix x0(n, d);
    for (int i = 0; i < n; ++i) x0.row(i)[0] = static_cast<float>(i);
    a->init(x0);
    nets::Optimizer opt_a(os, n, d);
    for (int64_t t = 0; t < 7; ++t) step(a, opt_a, t);
    const auto saved = test::saved_state(*a);
    auto b = test::local_algorithm(spec, prob.layout(), schedule);
    b->init(x0);
    b->load_state([&](const std::string& nm, float* data, int64_t count) {
      for (const auto& [k, v] : saved)
        if (k == nm) {
          ASSERT_EQ(static_cast<int64_t>(v.size()), count) << nm;
          std::copy(v.begin(), v.end(), data);
          return;
        }
      FAIL() << "no saved tensor " << nm;
    });
    nets::Optimizer opt_b(os, n, d);
    for (int64_t t = 7; t < 15; ++t) {
      step(a, opt_a, t);
      step(b, opt_b, t);
    }
    for (int i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j)
        ASSERT_EQ(a->x().row(i)[j], b->x().row(i)[j]) << "node " << i << " j " << j;
  }
}

TEST(CentralizedState, CorruptVoteStateIsRefused) {
  constexpr int n = 2;
  const int64_t d = 100;
  const AlgorithmSpec spec = central_spec("mv-ad", 0.1, 1);
  const Schedule schedule = make_schedule({.name = "ring", .nodes = n});
  auto a = test::local_algorithm(spec, make_segment_layout(d, 1), schedule);
  nets::NodeMatrix x0(n, d);
  a->init(x0);
  for (int i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) a->x().row(i)[j] = static_cast<float>((j * 13 + i) % 17);
  a->communicate(0, 0);
  auto saved = test::saved_state(*a);
  auto restore = [&](const std::string& which, int64_t at, float value) {
    auto b = test::local_algorithm(spec, make_segment_layout(d, 1), schedule);
    b->init(x0);
    b->load_state([&](const std::string& nm, float* data, int64_t count) {
      for (const auto& [k, v] : saved)
        if (k == nm) std::copy(v.begin(), v.begin() + count, data);
      if (nm == which) data[at] = value;
    });
  };
  EXPECT_NO_THROW(restore("none", 0, 0));
  EXPECT_THROW(restore("vote_sum", 3, 2.5f), std::invalid_argument);
  EXPECT_THROW(restore("vote_sum", 3, 7.0f), std::invalid_argument);
  EXPECT_THROW(restore("votes", 3, 0.5f), std::invalid_argument);
  EXPECT_THROW(restore("u", 0, 0.5f), std::invalid_argument);
}

// ---- ranks, malformed messages, settings --------------------------------------------------

// The same run on 1, 2 and 4 ranks (threads with their own communicators) gives the same bits.
TEST(CentralizedRanks, AnySplitOfTheNodesGivesTheSameBits) {
  constexpr int n = 4;
  const LogisticProblem& prob = test::cached_problem(n, 0.8);
  const int64_t d = prob.dim();
  for (const char* name : {"bsp", "gaia", "dgc", "ssgd-topk", "mv-ad", "mv-rs", "fedavg"}) {
    SCOPED_TRACE(name);
    const bool grads = std::string(name) == "bsp" || std::string(name) == "dgc";
    AlgorithmSpec spec = central_spec(name, 0.1, grads ? 1 : 2);
    spec.central.fedavg_fraction = 0.5;
    const Schedule schedule = make_schedule({.name = "ring", .nodes = n});
    std::vector<std::vector<float>> results;
    for (int ranks : {1, 2, 4}) {
      std::vector<float> all(static_cast<size_t>(n * d));
      test::on_ranks(ranks, n, [&](Communicator& comm) {
        auto backend = kernels::make_backend("cpu");
        auto algo = make_algorithm(spec, prob.layout(), schedule, *backend, comm);
        const int local = comm.local_nodes(), first = comm.first_local();
        nets::NodeMatrix x0(local, d);
        for (int r = 0; r < local; ++r) x0.row(r)[1] = static_cast<float>(first + r);
        algo->init(x0);
        nets::Optimizer opt({.momentum = 0.9, .nesterov = false, .weight_decay = 0, .qgm = false},
                            local, d);
        nets::NodeMatrix g(local, d);
        for (int64_t t = 0; t < 12; ++t) {
          prob.gradients(algo->z(), g, first);
          algo->reduce_gradients(g, t, 0);
          opt.step(algo->x(), g, 0.3f);
          algo->communicate(t, 0);
        }
        for (int r = 0; r < local; ++r)
          std::copy(algo->x().row(r), algo->x().row(r) + d,
                    all.begin() + static_cast<int64_t>(first + r) * d);
      });
      results.push_back(all);
    }
    EXPECT_EQ(results[0], results[1]);
    EXPECT_EQ(results[0], results[2]);
  }
}

TEST(CentralizedSpec, BadSettingsAreRefused) {
  const nets::Layout layout = make_segment_layout(100, 1);
  const Schedule schedule = make_schedule({.name = "ring", .nodes = 4});
  auto comm = make_local_communicator(4);
  auto refuse = [&](AlgorithmSpec s, const std::string& what) {
    try {
      checked_algorithm_spec(s, layout, schedule, *comm);
      ADD_FAILURE() << "accepted: " << what;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  AlgorithmSpec s = central_spec("bsp", 0.01, 2);
  refuse(s, "local_steps = 2");
  s = central_spec("fedavg", 0.01, 1);
  s.central.fedavg_fraction = 0;
  refuse(s, "fedavg_fraction");
  s = central_spec("gaia", 0.01, 1);
  s.central.gaia_threshold = -1;
  refuse(s, "gaia_threshold");
  s = central_spec("mv-ad", 0.01, 1);
  s.central.add_drop_density = 2;
  refuse(s, "add_drop_density");
  s = central_spec("ssgd-mv", 0.0, 1);
  refuse(s, "density");
  s = central_spec("dgc", 0.01, 1);
  s.central.dgc_momentum = 1;
  refuse(s, "dgc_momentum");
  EXPECT_EQ(algorithm_kind_from_string("ssgd-mv"), AlgorithmKind::kMv);
  EXPECT_STREQ(to_string(AlgorithmKind::kMvRs), "mv-rs");
  EXPECT_TRUE(is_centralized(AlgorithmKind::kGaia));
  EXPECT_FALSE(is_centralized(AlgorithmKind::kScsp));
  // The knobs: BSP has no period; only Gaia has a threshold.
  auto backend = kernels::make_backend("cpu");
  auto bsp = make_algorithm(central_spec("bsp", 0.01, 1), layout, schedule, *backend, *comm);
  EXPECT_THROW(bsp->set_local_steps(2), std::invalid_argument);
  EXPECT_THROW(bsp->set_gaia_threshold(0.1), std::invalid_argument);
  EXPECT_THROW(bsp->gossip_rounds(1, 0, 0), std::invalid_argument);
}

TEST(CentralizedMessages, MalformedPayloadsNameTheNode) {
  // A node whose vote message is cut short: the server (every rank) refuses it.
  constexpr int n = 2;
  const int64_t d = 100;
  const AlgorithmSpec spec = central_spec("ssgd-mv", 0.1, 1);
  const Schedule schedule = make_schedule({.name = "ring", .nodes = n});
  for (int mode = 0; mode < 3; ++mode) {
    SCOPED_TRACE(mode);
    std::string error;
    test::on_ranks(2, n, [&](Communicator& comm) {
      auto backend = kernels::make_backend("cpu");
      auto algo = make_algorithm(spec, make_segment_layout(d, 1), schedule, *backend, comm);
      nets::NodeMatrix x0(1, d);
      algo->init(x0);
      for (int64_t j = 0; j < d; ++j) algo->x().row(0)[j] = static_cast<float>(j % 7 + 1);
      if (comm.rank() == 1) {
        // Node 1 sends a forged round instead (the test plays a faulty peer).
        std::vector<std::vector<uint8_t>> bad(1);
        if (mode == 0) bad[0] = {3, 0};                     // shorter than its count
        if (mode == 1) bad[0] = {0xff, 0xff, 0xff, 0x7f};   // count beyond d
        if (mode == 2) bad[0] = {10, 0, 0, 0, 0, 0, 0, 0};  // code of 0 indices, count 10
        comm.gather_round(0, MessageKind::kControl, 2, bad);
        return;
      }
      try {
        algo->communicate(0, 0);
      } catch (const CommError& e) {
        error = e.what();
      }
    });
    EXPECT_NE(error.find("node 1"), std::string::npos) << error;
  }
}

}  // namespace
}  // namespace spush::runtime
