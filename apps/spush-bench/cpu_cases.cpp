// CPU cases of spush-bench: the CPU implementations (the specification) on the shapes and
// inputs of the GPU cases. With a GPU they are the "cpu" baselines of the same keys; without
// one they are the whole run (small shapes only, see main.cpp).
#include <algorithm>
#include <memory>
#include <vector>

#include "bench.h"
#include "spush/kernels/compress.h"
#include "spush/kernels/mixing.h"
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
  return cases;
}

}  // namespace spush::bench
