// spush-bench: the benchmark cases (GPU ones in gpu_cases.cpp, CPU ones in cpu_cases.cpp), the
// input distributions, the ResNet-20 layer table, and the result rows the table and the JSON
// report are built from. A case is described by CaseInfo and built lazily (buffers exist only
// while it runs); cases with the same key() but another impl are its baselines.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "spush/kernels/backend.h"
#include "spush/kernels/conv_shape.h"
#include "spush/kernels/mixing.h"
#include "spush/kernels/philox.h"
#include "spush/kernels/segments.h"

namespace spush::bench {

// The cuda backend every GPU case allocates on and runs on (its stream is the cases' stream);
// created by main() when a GPU is present.
kernels::Backend& bench_backend();

enum class Dist { kNormal, kGrad50, kCauchy, kNarrow, kAllEqual };
inline const char* dist_name(Dist d) {
  switch (d) {
    case Dist::kNormal:
      return "normal";
    case Dist::kGrad50:
      return "grad50zero";
    case Dist::kCauchy:
      return "cauchy";
    case Dist::kNarrow:
      return "narrow";
    case Dist::kAllEqual:
      return "allequal";
  }
  return "?";
}

// Element i of a distribution (host and device): N(0,1) by Box-Muller; gradient-like (half
// exact zeros, the rest N(0, 1e-3^2)); Cauchy; narrow range 1 + U(0, 1e-3) (keys differ only
// in low mantissa bits); all equal 0.5.
SPUSH_HD float dist_value(int dist, uint64_t seed, uint64_t i) {
  using kernels::philox_uniform;
  const float u1 = philox_uniform(seed, 1, 0, i), u2 = philox_uniform(seed, 2, 0, i);
  const float two_pi = 6.2831853f;
  switch (dist) {
    case 0:
      return sqrtf(-2.0f * logf(1.0f - u1)) * cosf(two_pi * u2);
    case 1: {
      if (u2 < 0.5f) return 0.0f;
      const float u3 = philox_uniform(seed, 3, 0, i);
      return 1e-3f * sqrtf(-2.0f * logf(1.0f - u1)) * cosf(two_pi * u3);
    }
    case 2:
      return tanf(3.1415927f * (u1 - 0.5f));
    case 3:
      return 1.0f + 1e-3f * u1;
    default:
      return 0.5f;
  }
}

// CIFAR ResNet-20 with BatchNorm, one segment per layer (conv weight + its BN scale and shift;
// the classifier's weight and bias): 19 conv layers and 1 fc layer, 269,722 parameters.
inline std::vector<int64_t> resnet20_layer_offsets() {
  std::vector<int64_t> lens{3 * 16 * 9 + 32};                    // conv1 + bn1
  for (int i = 0; i < 6; ++i) lens.push_back(16 * 16 * 9 + 32);  // stage 1
  lens.push_back(16 * 32 * 9 + 64);                              // stage 2
  for (int i = 0; i < 5; ++i) lens.push_back(32 * 32 * 9 + 64);
  lens.push_back(32 * 64 * 9 + 128);  // stage 3
  for (int i = 0; i < 5; ++i) lens.push_back(64 * 64 * 9 + 128);
  lens.push_back(64 * 10 + 10);  // fc
  std::vector<int64_t> off{0};
  for (int64_t l : lens) off.push_back(off.back() + l);
  return off;  // off.back() == 269722
}

// The distinct convolutions of ResNet-20 (CIFAR 32x32; conv1 also on a 28x28 grey image as for
// Fashion-MNIST; the 1x1 stride-2 projection of option-B shortcuts) and of LeNet-5, over
// `batch` samples of one node (kernels/include/spush/kernels/conv_shape.h). Shared by the fp32
// and 8-bit convolution cases and by the training-iteration cases (which count operations with
// `count`: how many of the network's convolutions have the shape).
struct ConvCase {
  std::string name;
  kernels::ConvShape shape;
  int count = 0;  // in CIFAR ResNet-20 with option-A shortcuts (19 convolutions) / in LeNet-5
};

inline kernels::ConvShape conv_shape(int64_t batch, int64_t cin, int64_t hw, int64_t cout,
                                     int64_t k, int64_t stride, int64_t pad) {
  kernels::ConvShape s;
  s.batch = batch;
  s.cin = cin;
  s.h = s.w = hw;
  s.cout = cout;
  s.kh = s.kw = k;
  s.sh = s.sw = stride;
  s.ph = s.pw = pad;
  return s;
}

inline std::vector<ConvCase> resnet20_conv_shapes(int64_t batch) {
  return {{"r20_conv1_c3", conv_shape(batch, 3, 32, 16, 3, 1, 1), 1},
          {"r20_conv1_c1", conv_shape(batch, 1, 28, 16, 3, 1, 1), 0},
          {"r20_s1_16x32", conv_shape(batch, 16, 32, 16, 3, 1, 1), 6},
          {"r20_s2_16to32", conv_shape(batch, 16, 32, 32, 3, 2, 1), 1},
          {"r20_s2_32x16", conv_shape(batch, 32, 16, 32, 3, 1, 1), 5},
          {"r20_s3_32to64", conv_shape(batch, 32, 16, 64, 3, 2, 1), 1},
          {"r20_s3_64x8", conv_shape(batch, 64, 8, 64, 3, 1, 1), 5},
          {"r20_proj_1x1", conv_shape(batch, 16, 32, 32, 1, 2, 0), 0}};
}

inline std::vector<ConvCase> lenet5_conv_shapes(int64_t batch) {
  return {{"lenet_conv1", conv_shape(batch, 1, 28, 6, 5, 1, 2), 1},
          {"lenet_conv2", conv_shape(batch, 6, 14, 16, 5, 1, 0), 1}};
}

// One gossip round of Sparse-Push on a directed ring of `nodes` nodes (x_i += eta * sum_j
// (P_ij - I_ij) c_j with P_ii = P_i,i-1 = 1/2): node i's message keeps K = topk_count(d, rho)
// ascending indices spread over the row; terms (i, i, -eta/2) and (i, i-1, eta/2).
struct RingRound {
  std::vector<kernels::MixTerm> terms;
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> idx;
  std::vector<float> val, msg_u;
  int64_t entries() const { return offsets.back(); }
};

inline RingRound ring_round(int nodes, int64_t d, double rho, uint64_t seed) {
  RingRound r;
  const int64_t k = kernels::topk_count(d, rho);
  const float eta = 0.005f;
  for (int m = 0; m < nodes; ++m) {
    for (int64_t j = 0; j < k; ++j) {  // one index in each of K equal strides, jittered
      const int64_t lo = j * d / k, hi = (j + 1) * d / k;
      const float u =
          kernels::philox_uniform(seed, static_cast<uint32_t>(m), 0, static_cast<uint64_t>(j));
      r.idx.push_back(static_cast<int32_t>(
          lo + static_cast<int64_t>(u * static_cast<float>(hi - lo)) % (hi - lo)));
      r.val.push_back(dist_value(0, seed + 1 + m, static_cast<uint64_t>(j)));
    }
    r.offsets.push_back(static_cast<int64_t>(r.idx.size()));
    r.msg_u.push_back(1.0f + 0.01f * static_cast<float>(m % 7));
    r.terms.push_back(kernels::MixTerm{m, m, -0.5f * eta});
    r.terms.push_back(kernels::MixTerm{m, (m + nodes - 1) % nodes, 0.5f * eta});
  }
  return r;
}

struct Options {
  bool quick = false;             // a small set of shapes (smoke runs, CI without time)
  int max_log2n = 27;             // skip global shapes above 2^max_log2n
  int64_t cpu_max_n = 1 << 22;    // CPU baselines only up to this many elements
  int64_t check_max_n = 1 << 24;  // validate GPU results against the CPU up to this size
  bool gpu = false;               // a usable GPU is present
};

struct CaseInfo {
  // copy, topk, topk_layers, ef_topk, qsgd, sign, minmax8, mix_ring, gemm_u8s8, conv_fwd,
  // conv_bwd_data, conv_bwd_weights
  std::string op;
  // spush (the fused kernels, the oneDNN plans), cub_sort, unfused, cpu, memcpy, sgemm_fp32,
  // im2col (the reference convolution)
  std::string impl;
  std::string dist = "-";
  int64_t n = 0;  // elements per row
  int64_t rows = 1;
  std::string param;  // "K=1%", "bits=8", ...
  double bytes = 0;   // bytes floor of the op: each input read once, each output written once
  double ops = 0;     // arithmetic operations (a multiply-add counts 2), for the GEMM cases
  int iterations = 20;
  bool gpu = true;
  std::string key() const {
    return op + "/n=" + std::to_string(n) + "/rows=" + std::to_string(rows) + "/" + param + "/" +
           dist;
  }
  std::string name() const { return key() + "/" + impl; }
};

// One built case: run(r) executes the timed work once on input rotation r (GPU work is
// enqueued on the stream the case was built with); check() validates against the CPU and
// returns "ok", "FAIL: ..." or "-" (not checked).
class Instance {
 public:
  virtual ~Instance() = default;
  virtual void run(int rotation) = 0;
  virtual int rotations() const { return 1; }
  virtual std::string check() { return "-"; }
};

struct Case {
  CaseInfo info;
  std::function<std::unique_ptr<Instance>(void* stream)> make;
};

std::vector<Case> cpu_cases(const Options& opt);
std::vector<Case> train_cases(const Options& opt);  // training iterations, layers (CPU)
std::vector<Case> gpu_cases(const Options& opt);    // empty in builds without CUDA
std::string gpu_description();                      // "" without a usable GPU

// Shapes shared by the CPU and GPU case lists.
inline std::vector<int64_t> global_sizes(const Options& opt) {
  std::vector<int64_t> all{269722, int64_t{1} << 20, int64_t{1} << 22, int64_t{1} << 24,
                           int64_t{1} << 27};
  if (opt.quick) all = {269722, int64_t{1} << 20, int64_t{1} << 24};
  std::vector<int64_t> out;
  for (int64_t n : all)
    if (n <= (int64_t{1} << opt.max_log2n)) out.push_back(n);
  return out;
}

inline std::string percent(double rho) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "K=%g%%", rho * 100.0);
  return buf;
}

}  // namespace spush::bench
