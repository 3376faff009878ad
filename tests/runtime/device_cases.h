// Cases shared by the device-algorithm tests: the host algorithm (algorithm.h) and a device
// algorithm (algorithm_cuda.h: on the GPU, or emulated on the host) run the same spec,
// schedule and x0, and must agree bit for bit on x, z = x / u, u and every count.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "spush/runtime/algorithm.h"
#include "spush/runtime/algorithm_cuda.h"
#include "spush/runtime/logistic.h"

namespace spush::runtime::test {

using kernels::CompressorKind;
using kernels::IndexCodec;

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

// Runs c on the host algorithm and on make(spec, layout, schedule, transport) for `rounds`
// rounds (plus 10 final rounds for SCSP) and expects identical x, z, u and counts.
template <typename Make>
void run_case(const Case& c, int rounds, Make make) {
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

  auto host_transport = make_local_transport(c.nodes);
  auto host = make_algorithm(spec, layout, schedule, *host_transport);
  DeviceLocalTransport device_transport(c.nodes);
  auto device = make(spec, layout, schedule, device_transport);
  const nets::NodeMatrix x0 = random_x0(c.nodes, layout.size(), 3);
  host->init(x0);
  device->init(x0);
  nets::NodeMatrix x, z;
  for (int t = 0; t < rounds; ++t) {
    host->communicate(t, 0);
    device->communicate(t, 0);
    if (t % 25 == 24 || t == rounds - 1) {
      device->download_x(x);
      ASSERT_EQ(first_difference(x, host->x()), "") << "x after round " << t;
    }
  }
  if (c.kind == AlgorithmKind::kScsp) {
    host->gossip_rounds(10, rounds, 0);
    device->gossip_rounds(10, rounds, 0);
  }
  device->download_x(x);
  device->download_z(z);
  EXPECT_EQ(first_difference(x, host->x()), "") << "final x";
  EXPECT_EQ(first_difference(z, host->z()), "") << "final z";
  ASSERT_EQ(device->u().size(), host->u().size());
  for (size_t i = 0; i < host->u().size(); ++i) EXPECT_EQ(device->u()[i], host->u()[i]);
  const CommStats& a = device->stats();
  const CommStats& b = host->stats();
  EXPECT_EQ(a.rounds, b.rounds);
  EXPECT_EQ(a.messages, b.messages);
  EXPECT_EQ(a.bytes_actual, b.bytes_actual);
  EXPECT_EQ(a.bytes_paper, b.bytes_paper);
  EXPECT_EQ(a.bytes_dense, b.bytes_dense);
  EXPECT_EQ(device_transport.bytes().edges(), host_transport->bytes().edges());
  EXPECT_EQ(device->spec().eta, host->spec().eta);
}

// The cases: Sparse-Push top-K with each index codec, global buckets, a time-varying schedule,
// link failures and local steps; every dense compressor with a GPU path; SGP on static and
// time-varying graphs, Deep-Squeeze and SCSP with its final phase.
template <typename Make>
void run_sparse_cases(Make make) {
  for (IndexCodec codec : {IndexCodec::kRaw32, IndexCodec::kLocal16, IndexCodec::kBlockPosition})
    run_case({.name = std::string("topk ") + kernels::to_string(codec), .codec = codec}, 60, make);
  run_case({.name = "topk 10% global raw32",
            .density = 0.1,
            .codec = IndexCodec::kRaw32,
            .layerwise = false},
           60, make);
  run_case({.name = "topk rings4", .topology = "rings4", .nodes = 4}, 60, make);
  run_case({.name = "topk link failures", .failure_prob = 0.3}, 60, make);
  run_case({.name = "topk local steps 3", .local_steps = 3}, 60, make);
}

template <typename Make>
void run_dense_cases(Make make) {
  for (int bits : {1, 2, 4, 8})
    run_case({.name = "qsgd " + std::to_string(bits),
              .compressor = CompressorKind::kQsgd,
              .bits = bits,
              .topology = "torus"},
             50, make);
  run_case({.name = "sign", .compressor = CompressorKind::kSign, .eta = 0.05}, 50, make);
  run_case({.name = "minmax8", .compressor = CompressorKind::kMinMax8}, 50, make);
  run_case({.name = "identity", .compressor = CompressorKind::kIdentity, .density = 1.0}, 50, make);
}

template <typename Make>
void run_uncompressed_and_phase_cases(Make make) {
  run_case({.name = "sgp ring", .kind = AlgorithmKind::kSgp}, 40, make);
  run_case({.name = "sgp exponential", .kind = AlgorithmKind::kSgp, .topology = "exponential"}, 40,
           make);
  run_case(
      {.name = "sgp rings4-3", .kind = AlgorithmKind::kSgp, .topology = "rings4-3", .nodes = 4}, 40,
      make);
  run_case({.name = "deepsqueeze", .kind = AlgorithmKind::kDeepSqueeze, .topology = "bidir-ring"},
           40, make);
  run_case({.name = "scsp", .kind = AlgorithmKind::kScsp}, 40, make);
}

}  // namespace spush::runtime::test
