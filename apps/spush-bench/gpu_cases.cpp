// GPU cases of spush-bench: the spush kernels (topk_batched_cuda, compress_ef_cuda, the fused
// gossip round) and their baselines measured in the same run (CUB radix sort of (|x|, index)
// pairs; unfused compositions of the same steps as separate kernels / CUB calls; memcpy D2D as
// the bandwidth ceiling). Inputs are generated on the device and rotated so that the buffers a
// case cycles through exceed the 50 MB L2. check() validates spush results against the CPU.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench.h"

#ifdef SPUSH_HAVE_CUDA
#include <cuda_runtime.h>

#include "gpu_kernels.cuh"
#include "spush/kernels/bucket_sum.h"
#include "spush/kernels/compress.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/cuda_check.cuh"
#include "spush/kernels/device.h"
#include "spush/kernels/mixing.h"
#include "spush/kernels/mixing_cuda.h"
#include "spush/kernels/backend.h"
#include "spush/kernels/segments.h"
#include "spush/kernels/topk.h"

namespace spush::bench {
namespace {

using kernels::CompressorKind;
using kernels::CompressorSpec;
using kernels::SegmentView;

// A device array on the benchmark's cuda backend (the project's one owned buffer type), with a
// partial download for checks.
template <typename T>
struct Dev : kernels::Array<T> {
  Dev() = default;
  explicit Dev(size_t n) : kernels::Array<T>(bench_backend(), n) {}
  explicit Dev(const std::vector<T>& h) : kernels::Array<T>(bench_backend(), h) {}
  std::vector<T> download(size_t count, size_t offset = 0) const {
    std::vector<T> h(count);
    if (count) this->backend()->download(h.data(), this->get() + offset, count * sizeof(T));
    return h;
  }
};

constexpr double kRotateBytes = 160e6;  // each case cycles through more than 3x the 50 MB L2

int rotations_for(double bytes_per_copy) {
  const int r = static_cast<int>(kRotateBytes / std::max(bytes_per_copy, 1.0)) + 1;
  return std::min(r, 32);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// Inputs of `rotations` copies of a [rows][d] matrix filled on the device.
struct Inputs {
  int rotations = 1;
  int64_t total = 0;
  Dev<float> x;
  Inputs(int64_t total_, int rot, Dist dist, uint64_t seed, cudaStream_t s)
      : rotations(rot), total(total_), x(static_cast<size_t>(total_) * rot) {
    for (int r = 0; r < rot; ++r)
      fill_dist(x.get() + r * total, total, static_cast<int>(dist), seed + r, s);
    CUDA_CHECK(cudaStreamSynchronize(s));
  }
  const float* row(int r) const { return x.get() + static_cast<int64_t>(r) * total; }
};

class GpuCopy : public Instance {
 public:
  GpuCopy(cudaStream_t s, int64_t n) : s_(s), n_(n), src_(n), dst_(n) {
    fill_dist(src_.get(), n, 0, 1, s);
  }
  void run(int) override {
    CUDA_CHECK(
        cudaMemcpyAsync(dst_.get(), src_.get(), n_ * sizeof(float), cudaMemcpyDeviceToDevice, s_));
  }

 private:
  cudaStream_t s_;
  int64_t n_;
  Dev<float> src_, dst_;
};

class GpuTopk : public Instance {
 public:
  GpuTopk(cudaStream_t s, std::vector<int64_t> off, int64_t rows, double rho, Dist dist,
          std::string impl, int64_t check_max)
      : s_(s),
        off_(std::move(off)),
        rows_(rows),
        impl_(std::move(impl)),
        check_max_(check_max),
        in_(rows * off_.back(), rotations_for(4.0 * rows * off_.back()), dist, 41, s) {
    d_ = off_.back();
    koff_ = kernels::topk_offsets(host_segs(), rho);
    k_row_ = koff_.back();
    doff_ = Dev<int64_t>(off_);
    dkoff_ = Dev<int64_t>(koff_);
    idx_ = Dev<int32_t>(static_cast<size_t>(rows_ * k_row_));
    val_ = Dev<float>(static_cast<size_t>(rows_ * k_row_));
    flag_ = Dev<int>(std::vector<int>{0});
    int64_t max_len = 0;
    for (size_t i = 0; i + 1 < off_.size(); ++i) max_len = std::max(max_len, off_[i + 1] - off_[i]);
    ws_bytes_ = kernels::topk_batched_workspace_size(rows_, d_, nseg(), max_len);
    ws_ = Dev<uint8_t>(ws_bytes_);
    const int64_t n = rows_ * d_;
    if (impl_ == "unfused") abs_ = Dev<float>(static_cast<size_t>(n));
    if (impl_ == "cub_sort") {
      keys_in_ = Dev<uint32_t>(static_cast<size_t>(n));
      keys_out_ = Dev<uint32_t>(static_cast<size_t>(n));
      vals_in_ = Dev<int32_t>(static_cast<size_t>(n));
      vals_out_ = Dev<int32_t>(static_cast<size_t>(n));
      iota(vals_in_.get(), n, s_);
      temp_bytes_ = sort_pairs_temp_bytes(n);
      temp_ = Dev<uint8_t>(temp_bytes_);
    }
  }
  int rotations() const override { return in_.rotations; }
  void run(int r) override {
    const float* x = in_.row(r);
    const int64_t n = rows_ * d_;
    if (impl_ == "cub_sort") {  // sort (|x| key, index) pairs; the first K values are the picks
      magnitude_keys(x, keys_in_.get(), n, s_);
      sort_pairs_descending(temp_.get(), temp_bytes_, keys_in_.get(), keys_out_.get(),
                            vals_in_.get(), vals_out_.get(), n, s_);
      return;
    }
    const float* src = x;
    if (impl_ == "unfused") {  // |x| as its own pass, select on it, gather the signed values
      abs_values(x, abs_.get(), n, s_);
      src = abs_.get();
    }
    kernels::topk_batched_cuda(src, rows_, d_, SegmentView{doff_.get(), nseg()}, dkoff_.get(),
                               idx_.get(), val_.get(), ws_.get(), ws_bytes_, flag_.get(), s_);
    if (impl_ == "unfused") gather_values(x, idx_.get(), val_.get(), k_row_, s_);
  }
  std::string check() override {
    if (impl_ != "spush" || rows_ * d_ > check_max_) return "-";
    run(0);
    CUDA_CHECK(cudaStreamSynchronize(s_));
    const std::vector<float> x = in_.x.download(static_cast<size_t>(rows_ * d_));
    std::vector<int32_t> idx(static_cast<size_t>(rows_ * k_row_));
    std::vector<float> val(idx.size());
    kernels::topk_batched_cpu(x.data(), rows_, d_, host_segs(), koff_.data(), idx.data(),
                              val.data());
    const std::vector<int32_t> gi = idx_.download(idx.size());
    const std::vector<float> gv = val_.download(idx.size());
    if (flag_.download(1)[0] != 0) return "FAIL: error flag set";
    for (size_t j = 0; j < idx.size(); ++j)
      if (gi[j] != idx[j] || !same_bits(gv[j], val[j]))
        return "FAIL: position " + std::to_string(j);
    return "ok";
  }

 private:
  int nseg() const { return static_cast<int>(off_.size()) - 1; }
  SegmentView host_segs() const { return SegmentView{off_.data(), nseg()}; }
  cudaStream_t s_;
  std::vector<int64_t> off_, koff_;
  int64_t rows_, d_ = 0, k_row_ = 0;
  std::string impl_;
  int64_t check_max_;
  Inputs in_;
  Dev<int64_t> doff_, dkoff_;
  Dev<int32_t> idx_, vals_in_, vals_out_;
  Dev<float> val_, abs_;
  Dev<uint32_t> keys_in_, keys_out_;
  Dev<int> flag_;
  Dev<uint8_t> ws_, temp_;
  size_t ws_bytes_ = 0, temp_bytes_ = 0;
};

// compress_ef_cuda (impl spush) or its unfused composition (one row, one bucket).
class GpuCompress : public Instance {
 public:
  GpuCompress(cudaStream_t s, CompressorSpec spec, std::vector<int64_t> off, int64_t rows,
              std::string impl, int64_t check_max)
      : s_(s),
        spec_(spec),
        off_(std::move(off)),
        rows_(rows),
        impl_(std::move(impl)),
        check_max_(check_max),
        in_(rows * off_.back(), rotations_for(8.0 * rows * off_.back()), Dist::kNormal, 51, s),
        e_(rows * off_.back(), in_.rotations, Dist::kGrad50, 52, s) {
    d_ = off_.back();
    const int64_t n = rows_ * d_;
    koff_ = kernels::topk_offsets(host_segs(), spec_.density);
    doff_ = Dev<int64_t>(off_);
    dkoff_ = Dev<int64_t>(koff_);
    flag_ = Dev<int>(std::vector<int>{0});
    const bool sparse = spec_.kind == CompressorKind::kTopK;
    const size_t nval = sparse ? static_cast<size_t>(rows_ * koff_.back()) : static_cast<size_t>(n);
    idx_ = Dev<int32_t>(sparse ? nval : 0);
    val_ = Dev<float>(nval);
    code_ = Dev<int16_t>(sparse ? 0 : nval);
    scale_ = Dev<float>(static_cast<size_t>(rows_ * nseg() * 2));
    int64_t max_len = 0;
    for (size_t i = 0; i + 1 < off_.size(); ++i) max_len = std::max(max_len, off_[i + 1] - off_[i]);
    ws_bytes_ = kernels::compress_ef_workspace_size(spec_, rows_, d_, nseg(), max_len);
    ws_ = Dev<uint8_t>(ws_bytes_);
    if (impl_ == "unfused") {
      v_ = Dev<float>(static_cast<size_t>(n));
      sum_ = Dev<double>(1);
      temp_bytes_ = sum_squares_temp_bytes(n);
      temp_ = Dev<uint8_t>(temp_bytes_);
      topk_ws_bytes_ = kernels::topk_batched_workspace_size(1, n, 1, n);
      topk_ws_ = Dev<uint8_t>(topk_ws_bytes_);
    }
    CUDA_CHECK(cudaStreamSynchronize(s_));
  }
  int rotations() const override { return in_.rotations; }
  void run(int r) override {
    const float* x = in_.row(r);
    float* e = e_.x.get() + static_cast<int64_t>(r) * e_.total;  // e rotates with x
    const int64_t n = rows_ * d_;
    if (impl_ == "unfused") {
      add_vectors(x, e, v_.get(), n, s_);
      if (spec_.kind == CompressorKind::kTopK) {
        kernels::topk_batched_cuda(v_.get(), 1, n, SegmentView{doff_.get(), 1}, dkoff_.get(),
                                   idx_.get(), val_.get(), topk_ws_.get(), topk_ws_bytes_,
                                   flag_.get(), s_);
        CUDA_CHECK(cudaMemcpyAsync(e, v_.get(), n * sizeof(float), cudaMemcpyDeviceToDevice, s_));
        scatter_zero(e, idx_.get(), koff_.back(), s_);
      } else {
        sum_squares(temp_.get(), temp_bytes_, v_.get(), sum_.get(), n, s_);
        qsgd_quantize(v_.get(), sum_.get(), spec_.bits, spec_.seed, iteration_, code_.get(),
                      val_.get(), n, s_);
        subtract(v_.get(), val_.get(), e, n, s_);
      }
    } else {
      kernels::DeviceMessage msg;
      msg.idx = idx_.get();
      msg.val = val_.get();
      msg.code = code_.get();
      msg.scale = scale_.get();
      msg.ld_msg = d_;
      kernels::compress_ef_cuda(spec_, rows_, SegmentView{doff_.get(), nseg()}, dkoff_.get(), x, d_,
                                e, d_, msg, 0, iteration_, ws_.get(), ws_bytes_, flag_.get(), s_);
    }
    ++iteration_;
  }
  std::string check() override;

 private:
  int nseg() const { return static_cast<int>(off_.size()) - 1; }
  SegmentView host_segs() const { return SegmentView{off_.data(), nseg()}; }
  cudaStream_t s_;
  CompressorSpec spec_;
  std::vector<int64_t> off_, koff_;
  int64_t rows_, d_ = 0;
  std::string impl_;
  int64_t check_max_;
  Inputs in_, e_;  // x and e: the same number of rotations
  Dev<float> val_, scale_, v_;
  Dev<int64_t> doff_, dkoff_;
  Dev<int32_t> idx_;
  Dev<int16_t> code_;
  Dev<int> flag_;
  Dev<double> sum_;
  Dev<uint8_t> ws_, temp_, topk_ws_;
  size_t ws_bytes_ = 0, temp_bytes_ = 0, topk_ws_bytes_ = 0;
  uint64_t iteration_ = 0;
};

std::string GpuCompress::check() {
  if (impl_ != "spush" || rows_ * d_ > check_max_) return "-";
  const size_t n = static_cast<size_t>(rows_ * d_);
  std::vector<float> e = e_.x.download(n);
  const std::vector<float> x = in_.x.download(n);
  iteration_ = 0;
  run(0);
  CUDA_CHECK(cudaStreamSynchronize(s_));
  if (flag_.download(1)[0] != 0) return "FAIL: error flag set";
  const std::vector<float> ge = e_.x.download(n);
  const bool sparse = spec_.kind == CompressorKind::kTopK;
  const int per = kernels::scales_per_bucket(spec_.kind);
  for (int64_t r = 0; r < rows_; ++r) {
    kernels::Compressed c;
    float* er = e.data() + r * d_;
    kernels::compress_ef_cpu(spec_, host_segs(), x.data() + r * d_, er, c, static_cast<uint32_t>(r),
                             0);
    if (sparse) {
      const int64_t k = koff_.back();
      const std::vector<int32_t> gi =
          idx_.download(static_cast<size_t>(k), static_cast<size_t>(r * k));
      const std::vector<float> gv =
          val_.download(static_cast<size_t>(k), static_cast<size_t>(r * k));
      for (int64_t j = 0; j < k; ++j)
        if (gi[j] != c.idx[j] || !same_bits(gv[j], c.val[j]))
          return "FAIL: row " + std::to_string(r) + " entry " + std::to_string(j);
    } else {
      const std::vector<float> gs =
          scale_.download(static_cast<size_t>(nseg() * per), static_cast<size_t>(r * nseg() * per));
      for (size_t q = 0; q < gs.size(); ++q)
        if (!same_bits(gs[q], c.scale[q]))
          return "FAIL: row " + std::to_string(r) + " scale " + std::to_string(q);
      const std::vector<int16_t> gc =
          code_.download(static_cast<size_t>(d_), static_cast<size_t>(r * d_));
      for (int64_t i = 0; i < d_; ++i)
        if (gc[i] != c.code[i])
          return "FAIL: row " + std::to_string(r) + " code " + std::to_string(i);
    }
    for (int64_t i = 0; i < d_; ++i)
      if (!same_bits(ge[r * d_ + i], er[i]))
        return "FAIL: row " + std::to_string(r) + " e " + std::to_string(i);
  }
  return "ok";
}

// One Sparse-Push ring round and the de-bias: fused (spush) or mix then debias (unfused).
class GpuMixRing : public Instance {
 public:
  GpuMixRing(cudaStream_t s, int nodes, int64_t d, double rho, std::string impl, int64_t check_max)
      : s_(s),
        nodes_(nodes),
        d_(d),
        impl_(std::move(impl)),
        check_max_(check_max),
        round_(ring_round(nodes, d, rho, 31)),
        in_(nodes * d, rotations_for(8.0 * nodes * d), Dist::kNormal, 61, s) {
    z_ = Dev<float>(static_cast<size_t>(nodes_ * d_) * in_.rotations);  // z rotates with x
    u_ = Dev<float>(std::vector<float>(static_cast<size_t>(nodes_) * in_.rotations, 1.0f));
    terms_ = Dev<kernels::MixTerm>(round_.terms);
    offsets_ = Dev<int64_t>(round_.offsets);
    idx_ = Dev<int32_t>(round_.idx);
    val_ = Dev<float>(round_.val);
    msg_u_ = Dev<float>(round_.msg_u);
    flag_ = Dev<int>(std::vector<int>{0});
  }
  int rotations() const override { return in_.rotations; }
  void run(int r) override {
    float* x = in_.x.get() + static_cast<int64_t>(r) * nodes_ * d_;
    float* u = u_.get() + static_cast<int64_t>(r) * nodes_;
    float* z = z_.get() + static_cast<int64_t>(r) * nodes_ * d_;
    const int64_t nterms = static_cast<int64_t>(round_.terms.size());
    if (impl_ == "spush") {
      kernels::gossip_mix_sparse_debias_cuda(x, nodes_, d_, d_, u, terms_.get(), nterms,
                                             offsets_.get(), nodes_, idx_.get(), val_.get(),
                                             msg_u_.get(), z, d_, flag_.get(), s_);
    } else {
      kernels::gossip_mix_sparse_cuda(x, nodes_, d_, u, terms_.get(), nterms, offsets_.get(),
                                      nodes_, idx_.get(), val_.get(), msg_u_.get(), flag_.get(),
                                      s_);
      kernels::debias_cuda(x, d_, u, nodes_, d_, z, d_, s_);
    }
  }
  std::string check() override {
    if (impl_ != "spush" || nodes_ * d_ > check_max_) return "-";
    const size_t n = static_cast<size_t>(nodes_ * d_);
    std::vector<float> x = in_.x.download(n), u = u_.download(static_cast<size_t>(nodes_));
    run(0);
    CUDA_CHECK(cudaStreamSynchronize(s_));
    kernels::gossip_mix_sparse_cpu(x.data(), d_, u.data(), round_.terms.data(),
                                   static_cast<int64_t>(round_.terms.size()), round_.offsets.data(),
                                   round_.idx.data(), round_.val.data(), round_.msg_u.data());
    std::vector<float> z(n);
    kernels::debias_cpu(x.data(), d_, u.data(), nodes_, d_, z.data(), d_);
    const std::vector<float> gx = in_.x.download(n), gz = z_.download(n);
    if (flag_.download(1)[0] != 0) return "FAIL: error flag set";
    for (size_t i = 0; i < n; ++i)
      if (!same_bits(gx[i], x[i]) || !same_bits(gz[i], z[i]))
        return "FAIL: element " + std::to_string(i);
    return "ok";
  }

 private:
  cudaStream_t s_;
  int nodes_;
  int64_t d_;
  std::string impl_;
  int64_t check_max_;
  RingRound round_;
  Inputs in_;
  Dev<float> z_, u_, val_, msg_u_;
  Dev<kernels::MixTerm> terms_;
  Dev<int64_t> offsets_;
  Dev<int32_t> idx_;
  Dev<int> flag_;
};

CaseInfo gpu_info(const std::string& op, const std::string& impl, int64_t n, int64_t rows,
                  const std::string& param, const std::string& dist, double bytes) {
  CaseInfo i;
  i.op = op;
  i.impl = impl;
  i.n = n;
  i.rows = rows;
  i.param = param;
  i.dist = dist;
  i.bytes = bytes;
  i.iterations = static_cast<double>(n) * rows > 4e6 ? 20 : 50;
  return i;
}

CompressorSpec spec_of(CompressorKind kind, double rho, int bits) {
  CompressorSpec s;
  s.kind = kind;
  s.density = rho;
  s.bits = bits;
  s.seed = 7;
  return s;
}

}  // namespace

std::string gpu_description() {
  if (!kernels::cuda_available()) return "";
  int dev = 0, runtime = 0, driver = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp p;
  CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  return std::string(p.name) + ", " + std::to_string(p.multiProcessorCount) + " SMs, " +
         std::to_string(p.totalGlobalMem >> 30) + " GiB, L2 " +
         std::to_string(p.l2CacheSize >> 20) + " MiB, sm_" + std::to_string(p.major) +
         std::to_string(p.minor) + ", CUDA runtime " + std::to_string(runtime) + ", driver " +
         std::to_string(driver);
}

std::vector<Case> gpu_cases(const Options& opt) {
  std::vector<Case> cases;
  auto add = [&cases](CaseInfo info, std::function<std::unique_ptr<Instance>(cudaStream_t)> make) {
    cases.push_back(
        {std::move(info), [make](void* s) { return make(static_cast<cudaStream_t>(s)); }});
  };
  const int64_t chk = opt.check_max_n;
  const std::vector<int64_t> sizes = global_sizes(opt);
  const int64_t big = sizes.back();
  add(gpu_info("copy", "memcpy", big, 1, "-", "-", 8.0 * big),
      [big](cudaStream_t s) { return std::make_unique<GpuCopy>(s, big); });
  const std::vector<double> rhos =
      opt.quick ? std::vector<double>{0.01} : std::vector<double>{0.001, 0.01, 0.1};
  const std::vector<Dist> dists =
      opt.quick ? std::vector<Dist>{Dist::kNormal, Dist::kGrad50}
                : std::vector<Dist>{Dist::kNormal, Dist::kGrad50, Dist::kCauchy, Dist::kNarrow,
                                    Dist::kAllEqual};
  for (int64_t n : sizes) {
    for (double rho : rhos) {
      for (Dist dist : dists) {
        for (const char* impl : {"spush", "cub_sort", "unfused"}) {
          if (std::string(impl) != "spush" && dist != Dist::kNormal) continue;
          add(gpu_info("topk", impl, n, 1, percent(rho), dist_name(dist), 4.0 * n),
              [n, rho, dist, impl, chk](cudaStream_t s) {
                return std::make_unique<GpuTopk>(s, std::vector<int64_t>{0, n}, 1, rho, dist, impl,
                                                 chk);
              });
        }
      }
    }
  }
  const std::vector<int64_t> layers = resnet20_layer_offsets();
  const int64_t d = layers.back();
  for (int64_t rows : {int64_t{1}, int64_t{16}, int64_t{64}}) {
    for (double rho : rhos) {
      for (Dist dist : {Dist::kNormal, Dist::kGrad50}) {
        add(gpu_info("topk_layers", "spush", d, rows, percent(rho), dist_name(dist),
                     4.0 * rows * d),
            [layers, rows, rho, dist, chk](cudaStream_t s) {
              return std::make_unique<GpuTopk>(s, layers, rows, rho, dist, "spush", chk);
            });
      }
    }
    if (rows > 1) {
      add(gpu_info("ef_topk_layers", "spush", d, rows, percent(0.01), "normal", 12.0 * rows * d),
          [layers, rows, chk](cudaStream_t s) {
            return std::make_unique<GpuCompress>(s, spec_of(CompressorKind::kTopK, 0.01, 8), layers,
                                                 rows, "spush", chk);
          });
    }
  }
  for (int64_t n : sizes) {
    for (const char* impl : {"spush", "unfused"}) {
      add(gpu_info("ef_topk", impl, n, 1, percent(0.01), "normal", 12.0 * n),
          [n, impl, chk](cudaStream_t s) {
            return std::make_unique<GpuCompress>(s, spec_of(CompressorKind::kTopK, 0.01, 8),
                                                 std::vector<int64_t>{0, n}, 1, impl, chk);
          });
      add(gpu_info("qsgd", impl, n, 1, "bits=8", "normal", 18.0 * n),
          [n, impl, chk](cudaStream_t s) {
            return std::make_unique<GpuCompress>(s, spec_of(CompressorKind::kQsgd, 0.01, 8),
                                                 std::vector<int64_t>{0, n}, 1, impl, chk);
          });
    }
  }
  if (!opt.quick) {
    const int64_t n = std::min<int64_t>(int64_t{1} << 24, big);
    for (int bits : {1, 2, 4})
      add(gpu_info("qsgd", "spush", n, 1, "bits=" + std::to_string(bits), "normal", 18.0 * n),
          [n, bits, chk](cudaStream_t s) {
            return std::make_unique<GpuCompress>(s, spec_of(CompressorKind::kQsgd, 0.01, bits),
                                                 std::vector<int64_t>{0, n}, 1, "spush", chk);
          });
    for (int64_t m : {int64_t{1} << 20, big}) {
      add(gpu_info("sign", "spush", m, 1, "bits=8", "normal", 18.0 * m), [m, chk](cudaStream_t s) {
        return std::make_unique<GpuCompress>(s, spec_of(CompressorKind::kSign, 0.01, 8),
                                             std::vector<int64_t>{0, m}, 1, "spush", chk);
      });
      add(gpu_info("minmax8", "spush", m, 1, "bits=8", "normal", 18.0 * m),
          [m, chk](cudaStream_t s) {
            return std::make_unique<GpuCompress>(s, spec_of(CompressorKind::kMinMax8, 0.01, 8),
                                                 std::vector<int64_t>{0, m}, 1, "spush", chk);
          });
    }
  }
  for (int64_t dd : {int64_t{269722}, int64_t{1} << 20, int64_t{1} << 22}) {
    if (opt.quick && dd > (int64_t{1} << 20)) continue;
    const RingRound probe = ring_round(16, dd, 0.01, 31);
    const double bytes = 8.0 * 16 * dd + 16.0 * probe.entries();
    for (const char* impl : {"spush", "unfused"})
      add(gpu_info("mix_ring", impl, dd, 16, percent(0.01), "normal", bytes),
          [dd, impl, chk](cudaStream_t s) {
            return std::make_unique<GpuMixRing>(s, 16, dd, 0.01, impl, chk);
          });
  }
  return cases;
}

}  // namespace spush::bench

#else  // no CUDA in this build

namespace spush::bench {
std::vector<Case> gpu_cases(const Options&) { return {}; }
std::string gpu_description() { return ""; }
}  // namespace spush::bench

#endif
