// CPU cases of spush-bench: the CPU implementations (the specification) on the shapes and
// inputs of the GPU cases. With a GPU they are the "cpu" baselines of the same keys; without
// one they are the whole run (small shapes only, see main.cpp).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "bench.h"
#include "gemmlowp_gemm.h"
#include "spush/kernels/compress.h"
#include "spush/kernels/conv.h"
#include "spush/kernels/conv_int8.h"
#include "spush/kernels/gemm_int8.h"
#include "spush/kernels/mixing.h"
#include "spush/kernels/quantize.h"
#include "spush/kernels/segments.h"
#include "spush/kernels/topk.h"

namespace spush::bench {
namespace {

using kernels::CompressorKind;
using kernels::CompressorSpec;
using kernels::SegmentView;

std::vector<float> host_values(Dist d, uint64_t seed, int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    x[i] = dist_value(static_cast<int>(d), seed, static_cast<uint64_t>(i));
  return x;
}

class CpuTopk : public Instance {
 public:
  CpuTopk(std::vector<int64_t> off, int64_t rows, double rho, Dist d)
      : off_(std::move(off)), rows_(rows) {
    koff_ = kernels::topk_offsets(segs(), rho);
    x_ = host_values(d, 11, rows_ * off_.back());
    idx_.resize(static_cast<size_t>(rows_ * koff_.back()));
    val_.resize(idx_.size());
  }
  void run(int) override {
    kernels::topk_batched_cpu(x_.data(), rows_, off_.back(), segs(), koff_.data(), idx_.data(),
                              val_.data());
  }

 private:
  SegmentView segs() const { return SegmentView{off_.data(), static_cast<int>(off_.size()) - 1}; }
  std::vector<int64_t> off_, koff_;
  int64_t rows_;
  std::vector<float> x_, val_;
  std::vector<int32_t> idx_;
};

// compress_ef_cpu over every row (node r of the batch), e carried from run to run.
class CpuCompress : public Instance {
 public:
  CpuCompress(CompressorSpec spec, std::vector<int64_t> off, int64_t rows)
      : spec_(spec), off_(std::move(off)), rows_(rows) {
    x_ = host_values(Dist::kNormal, 21, rows_ * off_.back());
    e_ = host_values(Dist::kGrad50, 22, rows_ * off_.back());
  }
  void run(int) override {
    const int64_t d = off_.back();
    const SegmentView segs{off_.data(), static_cast<int>(off_.size()) - 1};
    for (int64_t r = 0; r < rows_; ++r)
      kernels::compress_ef_cpu(spec_, segs, x_.data() + r * d, e_.data() + r * d, out_,
                               static_cast<uint32_t>(r), iteration_);
    ++iteration_;
  }

 private:
  CompressorSpec spec_;
  std::vector<int64_t> off_;
  int64_t rows_;
  std::vector<float> x_, e_;
  kernels::Compressed out_;
  uint64_t iteration_ = 0;
};

// One Sparse-Push ring round (mix into x and u) and the de-bias z = x / u.
class CpuMixRing : public Instance {
 public:
  CpuMixRing(int nodes, int64_t d, double rho)
      : nodes_(nodes), d_(d), round_(ring_round(nodes, d, rho, 31)) {
    x_ = host_values(Dist::kNormal, 32, nodes_ * d_);
    z_.resize(x_.size());
    u_.assign(static_cast<size_t>(nodes_), 1.0f);
  }
  void run(int) override {
    kernels::gossip_mix_sparse_cpu(x_.data(), d_, u_.data(), round_.terms.data(),
                                   static_cast<int64_t>(round_.terms.size()), round_.offsets.data(),
                                   round_.idx.data(), round_.val.data(), round_.msg_u.data());
    kernels::debias_cpu(x_.data(), d_, u_.data(), nodes_, d_, z_.data(), d_);
  }

 private:
  int nodes_;
  int64_t d_;
  RingRound round_;
  std::vector<float> x_, z_, u_;
};

// C = (A - a_zero) B on m x k u8 and k x n s8 operands: impl "spush" is gemm_u8s8s32 (oneDNN
// when available), "cpu" the reference loops, "sgemm_fp32" OpenBLAS's sgemm on the same shape
// in fp32 (the fp32 GEMM a user would otherwise call), "gemmlowp" gemmlowp's u8 x u8 GEMM with the
// same offsets (B + 128 as u8, offset -128), given B transposed as it prefers. check() compares
// spush and gemmlowp with the reference.
class CpuGemm : public Instance {
 public:
  CpuGemm(const std::string& impl, int64_t m, int64_t n, int64_t k)
      : impl_(impl), m_(m), n_(n), k_(k) {
    std::mt19937_64 rng(21);
    std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127);
    if (impl_ == "sgemm_fp32") {
      std::normal_distribution<float> g;
      af_.resize(static_cast<size_t>(m * k));
      bf_.resize(static_cast<size_t>(k * n));
      cf_.resize(static_cast<size_t>(m * n));
      for (auto& v : af_) v = g(rng);
      for (auto& v : bf_) v = g(rng);
      return;
    }
    a_.resize(static_cast<size_t>(m * k));
    b_.resize(static_cast<size_t>(k * n));
    c_.resize(static_cast<size_t>(m * n));
    for (auto& v : a_) v = static_cast<uint8_t>(u8(rng));
    for (auto& v : b_) v = static_cast<int8_t>(s8(rng));
    if (impl_ == "gemmlowp") {
      bt_.resize(b_.size());
      for (int64_t l = 0; l < k; ++l)
        for (int64_t j = 0; j < n; ++j)
          bt_[static_cast<size_t>(j * k + l)] = static_cast<uint8_t>(b_[l * n + j] + 128);
      lowp_ = std::make_unique<GemmlowpGemm>(omp_get_max_threads());
    }
  }
  void run(int) override {
    if (impl_ == "gemmlowp") {
      lowp_->run(static_cast<int>(m_), static_cast<int>(n_), static_cast<int>(k_), a_.data(),
                 -kZeroA, bt_.data(), -128, c_.data());
    } else if (impl_ == "sgemm_fp32") {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m_),
                  static_cast<int>(n_), static_cast<int>(k_), 1.0f, af_.data(),
                  static_cast<int>(k_), bf_.data(), static_cast<int>(n_), 0.0f, cf_.data(),
                  static_cast<int>(n_));
    } else if (impl_ == "spush") {
      kernels::gemm_u8s8s32(m_, n_, k_, a_.data(), k_, kZeroA, b_.data(), n_, 0, c_.data(), n_);
    } else {
      kernels::gemm_u8s8s32_ref(m_, n_, k_, a_.data(), k_, kZeroA, b_.data(), n_, 0, c_.data(), n_);
    }
  }
  std::string check() override {
    if (impl_ != "spush" && impl_ != "gemmlowp") return "-";
    std::vector<int32_t> ref(c_.size());
    run(0);
    kernels::gemm_u8s8s32_ref(m_, n_, k_, a_.data(), k_, kZeroA, b_.data(), n_, 0, ref.data(), n_);
    return ref == c_ ? "ok" : "FAIL: differs from gemm_u8s8s32_ref";
  }

 private:
  static constexpr int32_t kZeroA = 128;
  std::string impl_;
  int64_t m_, n_, k_;
  std::vector<uint8_t> a_;
  std::vector<int8_t> b_;
  std::vector<uint8_t> bt_;  // gemmlowp: B^T + 128
  std::vector<int32_t> c_;
  std::vector<float> af_, bf_, cf_;
  std::unique_ptr<GemmlowpGemm> lowp_;
};

// quantize_u8 (nearest-even or stochastic) or dequantize_u8 of n N(0, 1) values on their
// min / max range; the stochastic key's iteration advances per run.
class CpuQuantize : public Instance {
 public:
  CpuQuantize(const std::string& mode, int64_t n) : mode_(mode), n_(n) {
    x_ = host_values(Dist::kNormal, 41, n);
    q_.resize(static_cast<size_t>(n));
    const kernels::Range r = kernels::minmax(x_.data(), n);
    p_ = kernels::qparams(r.lo, r.hi);
    kernels::quantize_u8(x_.data(), n, p_, kernels::Rounding::kNearestEven, {}, q_.data());
  }
  void run(int) override {
    if (mode_ == "dequantize") {
      kernels::dequantize_u8(q_.data(), n_, p_, x_.data());
      return;
    }
    const kernels::Rounding r =
        mode_ == "nearest" ? kernels::Rounding::kNearestEven : kernels::Rounding::kStochastic;
    kernels::quantize_u8(x_.data(), n_, p_, r, kernels::StochasticKey{5, 0, iteration_++, 0},
                         q_.data());
  }

 private:
  std::string mode_;
  int64_t n_;
  std::vector<float> x_;
  std::vector<uint8_t> q_;
  kernels::QParams p_;
  uint64_t iteration_ = 0;
};

// The 8-bit convolution of every node's minibatch (each node its own codes and weights), one
// layer shape: forward or backward-data through ConvInt8Plan (oneDNN when available), node after
// node (the plan parallelizes inside, as nets::QConv2d runs it). check() compares it with the
// specification loops on the first and last node, bit for bit.
class CpuConvInt8 : public Instance {
 public:
  CpuConvInt8(bool backward, int nodes, const kernels::ConvShape& s)
      : backward_(backward), nodes_(nodes), s_(s), plan_(s) {
    std::mt19937_64 rng(51);
    std::uniform_int_distribution<int> u8(0, 255);
    in_size_ = backward_ ? s.y_size() : s.x_size();
    out_size_ = backward_ ? s.x_size() : s.y_size();
    in_.resize(static_cast<size_t>(nodes * in_size_));
    w_.resize(static_cast<size_t>(nodes * s.w_size()));
    out_.resize(static_cast<size_t>(nodes * out_size_));
    for (auto& v : in_) v = static_cast<uint8_t>(u8(rng));
    for (auto& v : w_) v = static_cast<uint8_t>(u8(rng));
  }
  void run(int) override {
    for (int m = 0; m < nodes_; ++m) run_node(m, true, out_.data() + m * out_size_);
  }
  std::string check() override {
    run(0);
    std::vector<float> ref(static_cast<size_t>(out_size_));
    for (int m : {0, nodes_ - 1}) {
      run_node(m, false, ref.data());
      if (std::memcmp(ref.data(), out_.data() + m * out_size_, ref.size() * sizeof(float)) != 0)
        return "FAIL: node " + std::to_string(m) + " differs from the reference";
    }
    return "ok";
  }

 private:
  void run_node(int m, bool fast, float* out) {
    const uint8_t* in = in_.data() + m * in_size_;
    const uint8_t* w = w_.data() + m * s_.w_size();
    const kernels::QParams pa = kernels::qparams(-1.0f, 3.0f), pw = kernels::qparams(-0.2f, 0.2f);
    if (backward_) {
      if (fast)
        plan_.backward_data(in, pa, w, pw, out);
      else
        kernels::conv_u8_backward_data_ref(s_, in, pa, w, pw, out);
    } else {
      if (fast)
        plan_.forward(in, pa, w, pw, out);
      else
        kernels::conv_u8_forward_ref(s_, in, pa, w, pw, out);
    }
  }
  bool backward_;
  int nodes_;
  kernels::ConvShape s_;
  kernels::ConvInt8Plan plan_;
  int64_t in_size_ = 0, out_size_ = 0;
  std::vector<uint8_t> in_, w_;
  std::vector<float> out_;
};

// fp32 convolution over `nodes` node-batched minibatches ([nodes, batch, c, h, w], one weight
// tensor per node), OpenMP over nodes as nets::Conv2d does: impl "spush" runs a Conv2dPlan
// (oneDNN when available) per node, "im2col" the reference (im2col + single-threaded sgemm).
// op: conv_fwd (y = conv(x, w)), conv_bwd_data (dx), conv_bwd_weights (dw += ...).
class CpuConv : public Instance {
 public:
  CpuConv(const std::string& impl, const std::string& op, const kernels::ConvShape& s, int nodes)
      : op_(op),
        s_(s),
        nodes_(nodes),
        plan_(s, false,
              impl == "spush" ? kernels::ConvImpl::kFast : kernels::ConvImpl::kReference) {
    std::mt19937_64 rng(41);
    std::normal_distribution<float> g;
    auto fill = [&](std::vector<float>& v, int64_t n, float scale) {
      v.resize(static_cast<size_t>(n * nodes_));
      for (auto& e : v) e = scale * g(rng);
    };
    fill(x_, s.x_size(), 1.0f);
    fill(w_, s.w_size(), 0.1f);
    fill(dy_, s.y_size(), 1.0f);
    y_.resize(dy_.size());
    dx_.resize(x_.size());
    dw_.assign(w_.size(), 0.0f);
  }
  void run(int) override {
    const int saved = openblas_get_num_threads();
    openblas_set_num_threads(1);  // one BLAS thread per OpenMP task, as nets::Conv2d runs it
#pragma omp parallel for schedule(dynamic, 1)
    for (int n = 0; n < nodes_; ++n) run_node(plan_, n, dw_.data());
    openblas_set_num_threads(saved);
  }
  // Every node's result against the reference, with the summation-order tolerance of
  // tests/kernels/conv_test.cpp (2 min(n, 8 sqrt(n)) u sum|terms|).
  std::string check() override {
    if (plan_.impl() == kernels::ConvImpl::kReference) return "-";
    const kernels::Conv2dPlan ref(s_, false, kernels::ConvImpl::kReference);
    std::vector<float> got, want, bound;
    int64_t n_terms = 0;
    dw_.assign(w_.size(), 0.0f);
    for (int n = 0; n < nodes_; ++n) run_node(plan_, n, dw_.data());
    got = result();
    dw_.assign(w_.size(), 0.0f);
    for (int n = 0; n < nodes_; ++n) run_node(ref, n, dw_.data());
    want = result();
    for (auto* v : {&x_, &w_, &dy_})
      for (auto& e : *v) e = std::fabs(e);
    dw_.assign(w_.size(), 0.0f);
    for (int n = 0; n < nodes_; ++n) run_node(ref, n, dw_.data());
    bound = result();
    if (op_ == "conv_fwd") n_terms = s_.k();
    if (op_ == "conv_bwd_data") n_terms = s_.cout * s_.kh * s_.kw;
    if (op_ == "conv_bwd_weights") n_terms = s_.batch * s_.oh() * s_.ow();
    const double nn = static_cast<double>(n_terms);
    const double f = 2.0 * std::min(nn, 8.0 * std::sqrt(nn)) / 16777216.0;
    for (size_t i = 0; i < got.size(); ++i)
      if (!(std::fabs(static_cast<double>(got[i]) - want[i]) <= f * bound[i] + 1e-30))
        return "FAIL: element " + std::to_string(i) + " differs from the reference";
    return "ok";
  }

 private:
  void run_node(const kernels::Conv2dPlan& p, int n, float* dw) {
    const int64_t xs = s_.x_size(), ws = s_.w_size(), ys = s_.y_size();
    if (op_ == "conv_fwd") {
      p.forward(x_.data() + n * xs, w_.data() + n * ws, nullptr, y_.data() + n * ys);
    } else if (op_ == "conv_bwd_data") {
      p.backward_data(dy_.data() + n * ys, w_.data() + n * ws, dx_.data() + n * xs);
    } else {
      p.backward_weights(x_.data() + n * xs, dy_.data() + n * ys, dw + n * ws, nullptr);
    }
  }
  std::vector<float> result() const {
    return op_ == "conv_fwd" ? y_ : op_ == "conv_bwd_data" ? dx_ : dw_;
  }

  std::string op_;
  kernels::ConvShape s_;
  int nodes_;
  kernels::Conv2dPlan plan_;
  std::vector<float> x_, w_, dy_, y_, dx_, dw_;
};

CaseInfo info(const std::string& op, int64_t n, int64_t rows, const std::string& param,
              const std::string& dist, double bytes, int iterations) {
  CaseInfo i;
  i.op = op;
  i.impl = "cpu";
  i.n = n;
  i.rows = rows;
  i.param = param;
  i.dist = dist;
  i.bytes = bytes;
  i.iterations = iterations;
  i.gpu = false;
  return i;
}

int cpu_iterations(double elements) { return elements > 4e6 ? 3 : (elements > 5e5 ? 5 : 10); }

CompressorSpec spec_of(CompressorKind kind, double rho, int bits) {
  CompressorSpec s;
  s.kind = kind;
  s.density = rho;
  s.bits = bits;
  s.seed = 7;
  return s;
}

}  // namespace

std::vector<Case> cpu_cases(const Options& opt) {
  std::vector<Case> cases;
  const std::vector<double> rhos =
      opt.quick ? std::vector<double>{0.01} : std::vector<double>{0.001, 0.01, 0.1};
  std::vector<int64_t> sizes;
  for (int64_t n : global_sizes(opt))
    if (n <= opt.cpu_max_n) sizes.push_back(n);
  for (int64_t n : sizes) {
    for (double rho : rhos) {
      const double el = static_cast<double>(n);
      cases.push_back(
          {info("topk", n, 1, percent(rho), "normal", 4 * el, cpu_iterations(el)), [n, rho](void*) {
             return std::make_unique<CpuTopk>(std::vector<int64_t>{0, n}, 1, rho, Dist::kNormal);
           }});
    }
    const double el = static_cast<double>(n);
    cases.push_back(
        {info("ef_topk", n, 1, percent(0.01), "normal", 12 * el, cpu_iterations(el)), [n](void*) {
           return std::make_unique<CpuCompress>(spec_of(CompressorKind::kTopK, 0.01, 8),
                                                std::vector<int64_t>{0, n}, 1);
         }});
    cases.push_back(
        {info("qsgd", n, 1, "bits=8", "normal", 18 * el, cpu_iterations(el)), [n](void*) {
           return std::make_unique<CpuCompress>(spec_of(CompressorKind::kQsgd, 0.01, 8),
                                                std::vector<int64_t>{0, n}, 1);
         }});
  }
  const std::vector<int64_t> layers = resnet20_layer_offsets();
  const int64_t d = layers.back();
  for (int64_t rows : {int64_t{1}, int64_t{16}}) {
    for (double rho : rhos) {
      const double el = static_cast<double>(rows * d);
      cases.push_back(
          {info("topk_layers", d, rows, percent(rho), "normal", 4 * el, cpu_iterations(el)),
           [layers, rows, rho](void*) {
             return std::make_unique<CpuTopk>(layers, rows, rho, Dist::kNormal);
           }});
    }
    const double el = static_cast<double>(rows * d);
    cases.push_back(
        {info("ef_topk_layers", d, rows, percent(0.01), "normal", 12 * el, cpu_iterations(el)),
         [layers, rows](void*) {
           return std::make_unique<CpuCompress>(spec_of(CompressorKind::kTopK, 0.01, 8), layers,
                                                rows);
         }});
  }
  if (!opt.quick) {
    const int64_t n = int64_t{1} << 20;
    for (auto [kind, name, bytes] : {std::tuple{CompressorKind::kSign, "sign", 18.0},
                                     std::tuple{CompressorKind::kMinMax8, "minmax8", 18.0}}) {
      cases.push_back({info(name, n, 1, "bits=8", "normal", bytes * n, cpu_iterations(n)),
                       [kind = kind, n](void*) {
                         return std::make_unique<CpuCompress>(spec_of(kind, 0.01, 8),
                                                              std::vector<int64_t>{0, n}, 1);
                       }});
    }
  }
  for (int64_t dd : {int64_t{269722}, int64_t{1} << 20}) {
    if (dd > opt.cpu_max_n) continue;
    const RingRound probe = ring_round(16, dd, 0.01, 31);
    const double bytes = 8.0 * 16 * dd + 16.0 * probe.entries();
    cases.push_back(
        {info("mix_ring", dd, 16, percent(0.01), "normal", bytes, cpu_iterations(16.0 * dd)),
         [dd](void*) { return std::make_unique<CpuMixRing>(16, dd, 0.01); }});
  }
  // int8 GEMM: a square 4096^3 (1024^3 with --quick) and the im2col GEMM of a 16 -> 16 channel
  // 3x3 convolution of ResNet-20's first stage over 4 nodes x batch 32 (M = 4 * 32 * 32 * 32
  // output positions, N = 16, K = 144). The reference loops only at the smaller sizes.
  const int64_t sq = opt.quick ? 1024 : 4096;
  struct GemmShape {
    int64_t m, n, k;
    const char* name;
    bool with_ref;
  };
  for (const GemmShape& g : {GemmShape{sq, sq, sq, "square", sq <= 1024},
                             GemmShape{4 * 32 * 1024, 16, 144, "conv3x3_16", true}}) {
    const double ops =
        2.0 * static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k);
    const double bytes = static_cast<double>(g.m * g.k + g.k * g.n + 4 * g.m * g.n);
    const int iters = ops > 1e11 ? 3 : 10;
    std::vector<std::string> impls{"spush", "sgemm_fp32"};
    if (gemmlowp_available()) impls.push_back("gemmlowp");
    if (g.with_ref) impls.push_back("cpu");
    for (const std::string& impl : impls) {
      CaseInfo i =
          info("gemm_u8s8", g.m, 1,
               std::string(g.name) + "_n" + std::to_string(g.n) + "_k" + std::to_string(g.k),
               "uniform", bytes, iters);
      i.impl = impl;
      i.ops = ops;
      cases.push_back(
          {i, [impl, g](void*) { return std::make_unique<CpuGemm>(impl, g.m, g.n, g.k); }});
    }
  }
  // 8-bit quantization of 2^22 values (2^20 with --quick): bytes = 4 read + 1 written.
  {
    const int64_t n = opt.quick ? int64_t{1} << 20 : int64_t{1} << 22;
    for (const char* mode : {"nearest", "stochastic", "dequantize"}) {
      CaseInfo i = info(std::string(mode) == "dequantize" ? "dequantize_u8" : "quantize_u8", n, 1,
                        mode, "normal", 5.0 * static_cast<double>(n), 20);
      i.impl = "spush";
      cases.push_back({i, [mode = std::string(mode), n](void*) {
                         return std::make_unique<CpuQuantize>(mode, n);
                       }});
    }
  }
  // Convolutions of ResNet-20's and LeNet-5's shapes, 4 and 16 nodes x batch 32 (4 nodes and
  // ResNet-20's 3x3 stage shapes only with --quick); n = per-node samples, rows = nodes, each
  // node its own weights. impl "spush": fp32 on the oneDNN plans (kernels/conv.h); "im2col": the
  // fp32 reference (im2col + sgemm), the path the layers took before; "int8": the 8-bit
  // forward / backward-data (kernels/conv_int8.h; backward-weights is fp32 by design), checked
  // bit for bit against its reference loops. ops = 2 MACs over all nodes; bytes: fp32 operands
  // read and the output written (int8: u8 operands, fp32 output).
  std::vector<ConvCase> convs = resnet20_conv_shapes(32);
  for (const ConvCase& c : lenet5_conv_shapes(32)) convs.push_back(c);
  if (opt.quick) convs = {convs[2], convs[4], convs[6]};
  for (int nodes : opt.quick ? std::vector<int>{4} : std::vector<int>{4, 16}) {
    for (const ConvCase& c : convs) {
      for (const char* op : {"conv_fwd", "conv_bwd_data", "conv_bwd_weights"}) {
        const bool has_int8 = std::string(op) != "conv_bwd_weights";
        for (const char* impl : {"spush", "im2col", "int8"}) {
          const bool int8 = std::string(impl) == "int8";
          if (int8 && !has_int8) continue;
          const kernels::ConvShape& s = c.shape;
          const bool backward = std::string(op) == "conv_bwd_data";
          const double in = static_cast<double>(backward ? s.y_size() : s.x_size());
          const double out = static_cast<double>(backward ? s.x_size() : s.y_size());
          const double bytes = int8 ? nodes * (in + static_cast<double>(s.w_size()) + 4.0 * out)
                                    : 4.0 * nodes * (s.x_size() + s.w_size() + s.y_size());
          CaseInfo i = info(op, s.batch, nodes, c.name, "normal", bytes, 10);
          i.impl = impl;
          i.ops = 2.0 * nodes * static_cast<double>(s.macs());
          i.iterations = i.ops > 2e9 ? 5 : 10;
          if (int8) {
            cases.push_back({i, [backward, nodes, s](void*) {
                               return std::make_unique<CpuConvInt8>(backward, nodes, s);
                             }});
          } else {
            cases.push_back({i, [impl = std::string(impl), op = std::string(op), s, nodes](void*) {
                               return std::make_unique<CpuConv>(impl, op, s, nodes);
                             }});
          }
        }
      }
    }
  }
  for (Case& c : train_cases(opt)) cases.push_back(std::move(c));
  return cases;
}

}  // namespace spush::bench
