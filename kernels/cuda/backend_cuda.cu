// The "cuda" backend (backend.h): device memory on one GPU, one stream that every op and copy of
// the backend is ordered on, and the kernels of this folder. Host code only: it forwards each op
// to its *_cuda launcher with the backend's stream. The stream is a blocking one: it also orders
// with work a caller puts on the legacy default stream (tests, benchmarks launching on stream 0).
#include <cuda_runtime.h>

#include <string>

#include "spush/kernels/axpy.h"
#include "spush/kernels/backend.h"
#include "spush/kernels/codec_cuda.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/cuda_check.cuh"
#include "spush/kernels/mixing_cuda.h"
#include "spush/kernels/topk.h"

namespace spush::kernels {
namespace {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    const int count = cuda_device_count();
    if (count < 1)
      throw std::runtime_error(
          "the cuda backend needs a GPU: no usable CUDA device was found, use the cpu backend");
    if (device < 0 || device >= count)
      throw std::runtime_error("the cuda backend: device " + std::to_string(device) +
                               " does not exist (this machine has " + std::to_string(count) + ")");
    CUDA_CHECK(cudaSetDevice(device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamDefault));
  }
  ~CudaBackend() override {
    CUDA_CHECK_NOTHROW(cudaStreamSynchronize(stream_));
    release_owned();
    CUDA_CHECK_NOTHROW(cudaStreamDestroy(stream_));
  }
  const char* name() const override { return "cuda"; }
  MemoryKind memory() const override { return MemoryKind::kDevice; }
  Stream stream() const override { return stream_; }

  void* allocate(size_t bytes) override {
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw std::runtime_error("the cuda backend cannot allocate " + std::to_string(bytes) +
                               " bytes on device " + std::to_string(device_) + ": " +
                               cudaGetErrorString(err));
    }
    return p;
  }
  void deallocate(void* p) noexcept override {
    // Work queued on the stream may still use p: cudaFree waits for the device.
    CUDA_CHECK_NOTHROW(cudaFree(p));
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void download(void* dst, const void* src, size_t bytes) override {
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    synchronize();
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes && dst != src)
      CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void fill_bytes(void* dst, int byte, size_t bytes) override {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(dst, byte, bytes, stream_));
  }
  void upload_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t d,
                   int64_t rows) override {
    if (rows > 0 && d > 0)
      CUDA_CHECK(cudaMemcpy2DAsync(dst, sizeof(float) * ldd, src, sizeof(float) * lds,
                                   sizeof(float) * d, static_cast<size_t>(rows),
                                   cudaMemcpyHostToDevice, stream_));
  }
  void download_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t d,
                     int64_t rows) override {
    if (rows > 0 && d > 0)
      CUDA_CHECK(cudaMemcpy2DAsync(dst, sizeof(float) * ldd, src, sizeof(float) * lds,
                                   sizeof(float) * d, static_cast<size_t>(rows),
                                   cudaMemcpyDeviceToHost, stream_));
    synchronize();
  }
  void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  bool supports(const CompressorSpec& spec, std::string* why) const override {
    if (compress_cuda_supports(spec.kind)) return true;
    if (why)
      *why = std::string("compressor ") + to_string(spec.kind) +
             " has no CUDA implementation (GPU compressors: identity, topk, qsgd, sign, minmax8)";
    return false;
  }

  size_t compress_ef_workspace_size(const CompressorSpec& spec, int64_t rows, int64_t ld, int nseg,
                                    int64_t max_seg_len) override {
    return kernels::compress_ef_workspace_size(spec, rows, ld, nseg, max_seg_len);
  }
  void compress_ef(const CompressorSpec& spec, int64_t rows, SegmentView segs,
                   const int64_t* k_offsets, const float* x, int64_t ldx, float* e, int64_t lde,
                   const DeviceMessage& out, uint32_t node_base, uint64_t iteration,
                   void* workspace, size_t workspace_bytes, int* error_flag) override {
    compress_ef_cuda(spec, rows, segs, k_offsets, x, ldx, e, lde, out, node_base, iteration,
                     workspace, workspace_bytes, error_flag, stream_);
  }
  void encode_sparse_rows(const SparseWireLayout& l, const int64_t* tables, int64_t rows,
                          const DeviceMessage& msg, uint8_t* out, size_t pitch) override {
    encode_sparse_rows_cuda(l, tables, rows, msg.idx, msg.val, out, pitch, stream_);
  }
  void decode_sparse_rows(const SparseWireLayout& l, const int64_t* tables, int64_t rows,
                          const uint8_t* in, size_t pitch, int32_t* idx, float* val,
                          int* error_flag) override {
    decode_sparse_rows_cuda(l, tables, rows, in, pitch, idx, val, error_flag, stream_);
  }
  void encode_dense_rows(const DenseWireLayout& l, const int64_t* seg_offsets, int64_t rows,
                         const DeviceMessage& msg, uint8_t* out, size_t pitch) override {
    encode_dense_rows_cuda(l, seg_offsets, rows, msg, out, pitch, stream_);
  }
  void decode_dense_rows(const DenseWireLayout& l, const int64_t* seg_offsets, int64_t rows,
                         const uint8_t* in, size_t pitch, float* val, int64_t ld_val,
                         int* error_flag) override {
    decode_dense_rows_cuda(l, seg_offsets, rows, in, pitch, val, ld_val, error_flag, stream_);
  }
  void gossip_mix_sparse(float* x, int64_t rows, int64_t ld, float* u, const MixTerm* terms,
                         int64_t nterms, const int64_t* msg_offsets, int64_t nmsg,
                         const int32_t* idx, const float* val, const float* msg_u,
                         int* error_flag) override {
    gossip_mix_sparse_cuda(x, rows, ld, u, terms, nterms, msg_offsets, nmsg, idx, val, msg_u,
                           error_flag, stream_);
  }
  void gossip_mix_sparse_debias(float* x, int64_t rows, int64_t ld, int64_t d, float* u,
                                const MixTerm* terms, int64_t nterms, const int64_t* msg_offsets,
                                int64_t nmsg, const int32_t* idx, const float* val,
                                const float* msg_u, float* z, int64_t ldz,
                                int* error_flag) override {
    gossip_mix_sparse_debias_cuda(x, rows, ld, d, u, terms, nterms, msg_offsets, nmsg, idx, val,
                                  msg_u, z, ldz, error_flag, stream_);
  }
  void gossip_mix_dense(float* x, int64_t rows, int64_t ld, int64_t d, float* u,
                        const MixTerm* terms, int64_t nterms, const float* msgs, int64_t nmsg,
                        int64_t ld_msg, const float* msg_u, int* error_flag) override {
    gossip_mix_dense_cuda(x, rows, ld, d, u, terms, nterms, msgs, nmsg, ld_msg, msg_u, error_flag,
                          stream_);
  }
  void scale_rows(float* x, int64_t rows, int64_t ld, int64_t d, const double* w) override {
    scale_rows_cuda(x, rows, ld, d, w, stream_);
  }
  void debias(const float* x, int64_t ld, const float* u, int64_t rows, int64_t d, float* z,
              int64_t ldz) override {
    debias_cuda(x, ld, u, rows, d, z, ldz, stream_);
  }
  void axpby_rows(int64_t rows, int64_t d, float a, const float* x, int64_t ldx, float b,
                  const float* y, int64_t ldy, float* out, int64_t ldo) override {
    axpby_rows_cuda(rows, d, a, x, ldx, b, y, ldy, out, ldo, stream_);
  }
  size_t topk_workspace_size(int64_t rows, int64_t ld, int nseg, int64_t max_seg_len) override {
    return topk_batched_workspace_size(rows, ld, nseg, max_seg_len);
  }
  void topk_batched(const float* x, int64_t rows, int64_t ld, SegmentView segs,
                    const int64_t* k_offsets, int32_t* idx, float* val, void* workspace,
                    size_t workspace_bytes, int* error_flag) override {
    topk_batched_cuda(x, rows, ld, segs, k_offsets, idx, val, workspace, workspace_bytes,
                      error_flag, stream_);
  }

 private:
  int device_;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) {
  return std::make_unique<CudaBackend>(device);
}

}  // namespace spush::kernels
