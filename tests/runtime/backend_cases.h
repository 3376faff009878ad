// Cases shared by the engine's backend tests: one gossip algorithm run twice on the same spec,
// schedule and x0, with two execution setups (the cpu and the cuda backend in the gpu tests;
// the cpu backend with one and with several OpenMP threads in their cpu twin), must agree bit
// for bit on x, z = x / u, u, the state tensors and every count; and on the way the sums of x
// and u that the rules keep invariant must hold.
#pragma once
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine_util.h"
#include "spush/runtime/algorithm.h"

namespace spush::runtime::test {

using kernels::CompressorKind;
using kernels::IndexCodec;
using spush::test::local_algorithm;
using spush::test::LocalAlgorithm;
using spush::test::saved_state;

inline nets::NodeMatrix random_x0(int n, int64_t d, uint32_t seed) {
  nets::NodeMatrix x(n, d);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int i = 0; i < n; ++i)
    for (int64_t k = 0; k < d; ++k) x.row(i)[k] = 1.0f + dist(rng);
  return x;
}

// First differing element of two [n x d] matrices, or "" when bit-identical.
inline std::string first_difference(const nets::NodeMatrix& a, const nets::NodeMatrix& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return "shapes differ";
  for (int64_t r = 0; r < a.rows(); ++r)
    for (int64_t k = 0; k < a.cols(); ++k) {
      uint32_t p, q;
      std::memcpy(&p, a.row(r) + k, 4);
      std::memcpy(&q, b.row(r) + k, 4);
      if (p != q)
        return "row " + std::to_string(r) + " col " + std::to_string(k) + ": " +
               std::to_string(a.row(r)[k]) + " vs " + std::to_string(b.row(r)[k]);
    }
  return "";
}

struct Case {
  std::string name;
  AlgorithmKind kind = AlgorithmKind::kSparsePush;
  CompressorKind compressor = CompressorKind::kTopK;
  double density = 0.01;
  int bits = 8;
  IndexCodec codec = IndexCodec::kLocal16;
  bool layerwise = true;
  std::string topology = "ring";
  int nodes = 8;
  double failure_prob = 0;
  int local_steps = 1;
  double eta = -1;
};

// How one side of a comparison runs: a backend name and an OpenMP thread count (0: as is).
struct Setup {
  std::string backend = "cpu";
  int threads = 0;
};

// Runs c for `rounds` rounds (plus 10 final rounds for SCSP) on setups a and b and expects
// identical x, z, u, state and counts.
inline void run_case(const Case& c, int rounds, const Setup& sa, const Setup& sb) {
  SCOPED_TRACE(c.name);
  TopologySpec ts;
  ts.name = c.topology;
  ts.nodes = c.nodes;
  ts.period = 3;
  ts.unit = PeriodUnit::kIterations;
  ts.failure_prob = c.failure_prob;
  ts.seed = 5;
  const Schedule schedule = make_schedule(ts);
  // Layer sizes of several magnitudes, one longer than a fused-mixing tile (4096).
  nets::Layout layout;
  for (int64_t s : {int64_t{300}, int64_t{1}, int64_t{5000}, int64_t{17}, int64_t{2048}})
    layout.add("layer" + std::to_string(s), {s});
  AlgorithmSpec spec;
  spec.kind = c.kind;
  spec.eta = c.eta;
  spec.compressor.kind = c.compressor;
  spec.compressor.density = c.density;
  spec.compressor.bits = c.bits;
  spec.compressor.index_codec = c.codec;
  spec.compressor.seed = 11;
  spec.layerwise = c.layerwise;
  spec.local_steps = c.local_steps;

  const int threads_before = omp_get_max_threads();
  auto with_threads = [&](const Setup& s, auto&& fn) {
    omp_set_num_threads(s.threads > 0 ? s.threads : threads_before);
    fn();
    omp_set_num_threads(threads_before);
  };
  LocalAlgorithm a, b;
  with_threads(sa, [&] { a = local_algorithm(spec, layout, schedule, sa.backend); });
  with_threads(sb, [&] { b = local_algorithm(spec, layout, schedule, sb.backend); });
  const nets::NodeMatrix x0 = random_x0(c.nodes, layout.size(), 3);
  a->init(x0);
  b->init(x0);
  // sum_i x_i and sum_i u_i are invariant under every rule, up to fp32 rounding: of the
  // magnitudes the nodes hold (|x_i| summed), once per round.
  auto sums = [&](LocalAlgorithm& alg, std::vector<double>& xs, std::vector<double>& mag,
                  double& us) {
    nets::NodeMatrix x;
    alg->download_x(x);
    xs.assign(static_cast<size_t>(x.cols()), 0.0);
    mag.assign(static_cast<size_t>(x.cols()), 0.0);
    for (int64_t r = 0; r < x.rows(); ++r)
      for (int64_t k = 0; k < x.cols(); ++k) {
        xs[k] += x.row(r)[k];
        mag[k] += std::fabs(x.row(r)[k]);
      }
    us = 0;
    for (float u : alg->u()) us += u;
  };
  std::vector<double> xs0, mag0;
  double us0 = 0;
  sums(a, xs0, mag0, us0);
  nets::NodeMatrix xa, xb;
  for (int t = 0; t < rounds; ++t) {
    with_threads(sa, [&] { a->communicate(t, 0); });
    with_threads(sb, [&] { b->communicate(t, 0); });
    if (t % 25 == 24 || t == rounds - 1) {
      a->download_x(xa);
      b->download_x(xb);
      ASSERT_EQ(first_difference(xa, xb), "") << "x after round " << t;
    }
  }
  if (c.kind == AlgorithmKind::kScsp) {
    with_threads(sa, [&] { a->gossip_rounds(10, rounds, 0); });
    with_threads(sb, [&] { b->gossip_rounds(10, rounds, 0); });
  }
  nets::NodeMatrix za, zb;
  a->download_x(xa);
  b->download_x(xb);
  a->download_z(za);
  b->download_z(zb);
  EXPECT_EQ(first_difference(xa, xb), "") << "final x";
  EXPECT_EQ(first_difference(za, zb), "") << "final z";
  ASSERT_EQ(a->u().size(), b->u().size());
  for (size_t i = 0; i < a->u().size(); ++i) EXPECT_EQ(a->u()[i], b->u()[i]);
  const auto state_a = saved_state(*a), state_b = saved_state(*b);
  ASSERT_EQ(state_a.size(), state_b.size());
  for (size_t i = 0; i < state_a.size(); ++i) {
    EXPECT_EQ(state_a[i].first, state_b[i].first);
    EXPECT_TRUE(state_a[i].second.size() == state_b[i].second.size() &&
                std::memcmp(state_a[i].second.data(), state_b[i].second.data(),
                            state_a[i].second.size() * sizeof(float)) == 0)
        << "state " << state_a[i].first << " differs";
  }
  const CommStats& p = a->stats();
  const CommStats& q = b->stats();
  EXPECT_GT(p.rounds, 0u);
  EXPECT_EQ(p.rounds, q.rounds);
  EXPECT_EQ(p.messages, q.messages);
  EXPECT_EQ(p.bytes_actual, q.bytes_actual);
  EXPECT_EQ(p.bytes_paper, q.bytes_paper);
  EXPECT_EQ(p.bytes_dense, q.bytes_dense);
  EXPECT_EQ(a.comm->bytes().edges(), b.comm->bytes().edges());
  EXPECT_EQ(a->spec().eta, b->spec().eta);
  std::vector<double> xs1, mag1;
  double us1 = 0;
  sums(a, xs1, mag1, us1);
  EXPECT_NEAR(us1, us0, 1e-5 * c.nodes) << "sum of u moved";
  // CHOCO mixes the public copies, not x: its sum of x moves with the compression error.
  if (c.kind != AlgorithmKind::kChoco) {
    double worst = 0;
    for (size_t k = 0; k < xs0.size(); ++k)
      worst = std::max(worst, std::fabs(xs1[k] - xs0[k]) / (1.0 + mag0[k] + mag1[k]));
    EXPECT_LT(worst, 1e-7 * (rounds + 10)) << "sum of x moved";
  }
}

// Sparse-Push top-K with each index codec, global buckets, a time-varying schedule, link
// failures and local steps.
inline void run_sparse_cases(const Setup& a, const Setup& b) {
  for (IndexCodec codec : {IndexCodec::kRaw32, IndexCodec::kLocal16, IndexCodec::kBlockPosition})
    run_case({.name = std::string("topk ") + kernels::to_string(codec), .codec = codec}, 60, a, b);
  run_case({.name = "topk 10% global raw32",
            .density = 0.1,
            .codec = IndexCodec::kRaw32,
            .layerwise = false},
           60, a, b);
  run_case({.name = "topk rings4", .topology = "rings4", .nodes = 4}, 60, a, b);
  run_case({.name = "topk link failures", .failure_prob = 0.3}, 60, a, b);
  run_case({.name = "topk local steps 3", .local_steps = 3}, 60, a, b);
}

// Every dense compressor with a GPU path.
inline void run_dense_cases(const Setup& a, const Setup& b) {
  for (int bits : {1, 2, 4, 8})
    run_case({.name = "qsgd " + std::to_string(bits),
              .compressor = CompressorKind::kQsgd,
              .bits = bits,
              .topology = "torus"},
             50, a, b);
  run_case({.name = "sign", .compressor = CompressorKind::kSign, .eta = 0.05}, 50, a, b);
  run_case({.name = "minmax8", .compressor = CompressorKind::kMinMax8}, 50, a, b);
  run_case({.name = "identity", .compressor = CompressorKind::kIdentity, .density = 1.0}, 50, a, b);
}

// SGP on static and time-varying graphs, Deep-Squeeze, SCSP with its final phase, and CHOCO
// with the incremental sum (static graph) and with per-neighbour copies (time-varying schedule,
// link failures), sparse and dense.
inline void run_uncompressed_phase_and_choco_cases(const Setup& a, const Setup& b) {
  run_case({.name = "sgp ring", .kind = AlgorithmKind::kSgp}, 40, a, b);
  run_case({.name = "sgp exponential", .kind = AlgorithmKind::kSgp, .topology = "exponential"}, 40,
           a, b);
  run_case({.name = "sgp rings4-3", .kind = AlgorithmKind::kSgp, .topology = "rings4-3", .nodes = 4},
           40, a, b);
  run_case({.name = "deepsqueeze", .kind = AlgorithmKind::kDeepSqueeze, .topology = "bidir-ring"},
           40, a, b);
  run_case({.name = "scsp", .kind = AlgorithmKind::kScsp}, 40, a, b);
  run_case({.name = "choco topk ring", .kind = AlgorithmKind::kChoco, .density = 0.05}, 40, a, b);
  run_case({.name = "choco qsgd rings4-3",
            .kind = AlgorithmKind::kChoco,
            .compressor = CompressorKind::kQsgd,
            .bits = 4,
            .topology = "rings4-3",
            .nodes = 4},
           40, a, b);
  run_case({.name = "choco topk torus failures",
            .kind = AlgorithmKind::kChoco,
            .density = 0.05,
            .topology = "torus",
            .failure_prob = 0.3},
           40, a, b);
}

}  // namespace spush::runtime::test
