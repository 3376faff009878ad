// Push-sum gossip with the node matrix on the GPU (algorithm_cuda.h): the CUDA ops under the
// orchestration of device_push_sum.h. One stream per algorithm; every per-round host-to-device
// copy (mixing terms, self weights, u) is a few hundred bytes and is stream-ordered after the
// previous round's kernels. Without CUDA make_algorithm_cuda validates, then throws.
#include "spush/runtime/algorithm_cuda.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "device_push_sum.h"
#include "spush/kernels/compress.h"
#include "spush/kernels/device.h"

#ifdef SPUSH_HAVE_CUDA
#include <cuda_runtime.h>

#include <utility>

#include "spush/kernels/codec_cuda.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/cuda_check.cuh"
#include "spush/kernels/mixing_cuda.h"
#endif

namespace spush::runtime {

bool algorithm_cuda_supports(const AlgorithmSpec& spec, std::string* why) {
  auto no = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return false;
  };
  switch (spec.kind) {
    case AlgorithmKind::kSgp:
      return true;
    case AlgorithmKind::kDeepSqueeze:
    case AlgorithmKind::kSparsePush:
    case AlgorithmKind::kScsp: {
      const kernels::CompressorKind k = spec.compressor.kind;
      if (k == kernels::CompressorKind::kIdentity || k == kernels::CompressorKind::kTopK ||
          k == kernels::CompressorKind::kQsgd || k == kernels::CompressorKind::kSign ||
          k == kernels::CompressorKind::kMinMax8) {
        return true;
      }
      return no(fmt::format(
          "compressor {} has no GPU path (GPU compressors: identity, topk, qsgd, sign, minmax8)",
          kernels::to_string(k)));
    }
    case AlgorithmKind::kChoco:
      return no("choco runs on the host only (GPU algorithms: sgp, deepsqueeze, sparsepush, scsp)");
  }
  return no("unknown algorithm kind");
}

#ifdef SPUSH_HAVE_CUDA
namespace {

// An owned device array of n T (uninitialized).
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) : n_(n) {
    if (n > 0) CUDA_CHECK(cudaMalloc(&p_, n * sizeof(T)));
  }
  ~DeviceArray() {
    if (p_) CUDA_CHECK_NOTHROW(cudaFree(p_));
  }
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  // Grows (contents lost) to at least n elements.
  void reserve(size_t n) {
    if (n > n_) *this = DeviceArray(n);
  }
  void upload(const T* h, size_t n, cudaStream_t s) {
    if (n > n_) throw std::logic_error("DeviceArray::upload: more elements than allocated");
    if (n) CUDA_CHECK(cudaMemcpyAsync(p_, h, n * sizeof(T), cudaMemcpyHostToDevice, s));
  }
  void upload(const std::vector<T>& h, cudaStream_t s) { upload(h.data(), h.size(), s); }
  void zero(cudaStream_t s) {
    if (n_) CUDA_CHECK(cudaMemsetAsync(p_, 0, n_ * sizeof(T), s));
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// An owned non-blocking stream; destruction waits for its work.
class OwnedStream {
 public:
  OwnedStream() { CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~OwnedStream() {
    CUDA_CHECK_NOTHROW(cudaStreamSynchronize(s_));
    CUDA_CHECK_NOTHROW(cudaStreamDestroy(s_));
  }
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// The device ops on the GPU: the kernels of compress_cuda.h, codec_cuda.h and mixing_cuda.h.
class CudaOps {
 public:
  static constexpr const char* kName = "cuda";
  template <typename T>
  using Array = DeviceArray<T>;
  kernels::Stream stream() const { return stream_.get(); }
  void wait(kernels::Stream s) { CUDA_CHECK(cudaStreamSynchronize(s)); }
  int read_flag(const int* flag, kernels::Stream s) {
    int v = 0;
    CUDA_CHECK(cudaMemcpyAsync(&v, flag, sizeof(int), cudaMemcpyDeviceToHost, s));
    wait(s);
    return v;
  }
  void rows_to_device(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t d,
                      int64_t rows, kernels::Stream s) {
    CUDA_CHECK(cudaMemcpy2DAsync(dst, static_cast<size_t>(ldd) * sizeof(float), src,
                                 static_cast<size_t>(lds) * sizeof(float),
                                 static_cast<size_t>(d) * sizeof(float), static_cast<size_t>(rows),
                                 cudaMemcpyHostToDevice, s));
  }
  void rows_to_host(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t d, int64_t rows,
                    kernels::Stream s) {
    CUDA_CHECK(cudaMemcpy2DAsync(dst, static_cast<size_t>(ldd) * sizeof(float), src,
                                 static_cast<size_t>(lds) * sizeof(float),
                                 static_cast<size_t>(d) * sizeof(float), static_cast<size_t>(rows),
                                 cudaMemcpyDeviceToHost, s));
    wait(s);
  }
  template <typename... A>
  size_t compress_ef_workspace_size(A&&... a) {
    return kernels::compress_ef_workspace_size(std::forward<A>(a)...);
  }
  template <typename... A>
  void compress_ef(A&&... a) {
    kernels::compress_ef_cuda(std::forward<A>(a)...);
  }
  template <typename... A>
  void encode_sparse_rows(A&&... a) {
    kernels::encode_sparse_rows_cuda(std::forward<A>(a)...);
  }
  template <typename... A>
  void decode_sparse_rows(A&&... a) {
    kernels::decode_sparse_rows_cuda(std::forward<A>(a)...);
  }
  template <typename... A>
  void encode_dense_rows(A&&... a) {
    kernels::encode_dense_rows_cuda(std::forward<A>(a)...);
  }
  template <typename... A>
  void decode_dense_rows(A&&... a) {
    kernels::decode_dense_rows_cuda(std::forward<A>(a)...);
  }
  template <typename... A>
  void scale_rows(A&&... a) {
    kernels::scale_rows_cuda(std::forward<A>(a)...);
  }
  template <typename... A>
  void gossip_mix_sparse_debias(A&&... a) {
    kernels::gossip_mix_sparse_debias_cuda(std::forward<A>(a)...);
  }
  template <typename... A>
  void gossip_mix_dense(A&&... a) {
    kernels::gossip_mix_dense_cuda(std::forward<A>(a)...);
  }
  template <typename... A>
  void debias(A&&... a) {
    kernels::debias_cuda(std::forward<A>(a)...);
  }

 private:
  OwnedStream stream_;
};

}  // namespace

#endif  // SPUSH_HAVE_CUDA

AlgorithmSpec detail::checked_device_spec(const AlgorithmSpec& spec_in, const nets::Layout& layout,
                                          const Schedule& schedule,
                                          const DeviceLocalTransport& transport, const char* fn) {
  const AlgorithmSpec spec =
      checked_algorithm_spec(spec_in, layout, schedule,
                             {transport.name(), transport.world_nodes(), transport.first_local(),
                              transport.local_nodes()});
  std::string why;
  if (!algorithm_cuda_supports(spec, &why)) {
    throw std::invalid_argument(fmt::format("{}({}): {}", fn, to_string(spec.kind), why));
  }
  if (transport.local_nodes() > 65535) {
    throw std::invalid_argument(
        fmt::format("{}: {} nodes on one GPU, at most 65535", fn, transport.local_nodes()));
  }
  return spec;
}

std::unique_ptr<DeviceAlgorithm> make_algorithm_cuda(const AlgorithmSpec& spec_in,
                                                     const nets::Layout& layout,
                                                     const Schedule& schedule,
                                                     DeviceLocalTransport& transport) {
  const AlgorithmSpec spec =
      detail::checked_device_spec(spec_in, layout, schedule, transport, "make_algorithm_cuda");
#ifndef SPUSH_HAVE_CUDA
  (void)spec;
  throw std::runtime_error(
      "make_algorithm_cuda: this build of spush has no CUDA support (rebuild with "
      "-DSPUSH_ENABLE_CUDA=ON and a CUDA compiler)");
#else
  if (kernels::cuda_device_count() < 1) {
    throw std::runtime_error("make_algorithm_cuda: no usable CUDA device was found");
  }
  return std::make_unique<detail::DevicePushSum<CudaOps> >(spec, layout, schedule, transport);
#endif
}

}  // namespace spush::runtime
