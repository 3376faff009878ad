// Helpers for `gpu`-labelled tests: skip without a usable GPU; device arrays on one shared cuda
// backend. Its stream synchronizes with the legacy default stream, so kernels launched on
// stream 0 by a test are ordered with the arrays' copies. A stream of the test's own
// (cudaStreamCreate) is NOT ordered with the backend's stream, blocking or not: work put on
// it must first wait for the backend's stream (wait_for_backend).
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "spush/kernels/backend.h"
#include "spush/kernels/cuda_check.cuh"
#include "spush/kernels/device.h"
#include "spush/kernels/segments.h"
#include "spush/kernels/topk.h"

#define SPUSH_REQUIRE_GPU()                                                        \
  do {                                                                             \
    if (!::spush::kernels::cuda_available()) GTEST_SKIP() << "no usable CUDA GPU"; \
  } while (0)

namespace spush::test {

// The bits of a float, to compare results exactly (NaN payloads and -0.0 included).
inline uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

// The cuda backend the gpu tests share (created on first use; needs a GPU).
inline kernels::Backend& gpu_backend() {
  static std::unique_ptr<kernels::Backend> backend = kernels::make_cuda_backend(0);
  return *backend;
}

// A device array of T on gpu_backend(), poisoned with 0xFF bytes (NaN floats, -1 integers)
// when created from a size.
template <typename T>
struct DeviceBuffer : kernels::Array<T> {
  explicit DeviceBuffer(size_t n) : kernels::Array<T>(gpu_backend(), n) {}
  explicit DeviceBuffer(const std::vector<T>& h) : kernels::Array<T>(gpu_backend(), h) {}
};

// Makes `stream` wait for everything queued so far on gpu_backend()'s stream (the arrays'
// poisoning fills and uploads): needed before launching on a stream other than 0 or the
// backend's own, since two non-default streams are never implicitly ordered with each other.
inline void wait_for_backend(cudaStream_t stream) {
  const cudaStream_t backend_stream = gpu_backend().stream();
  if (stream == nullptr || stream == backend_stream) return;
  cudaEvent_t ready = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventRecord(ready, backend_stream));
  CUDA_CHECK(cudaStreamWaitEvent(stream, ready, 0));
  CUDA_CHECK(cudaEventDestroy(ready));  // released once the wait is done
}

// The output of one topk_batched_cuda call, downloaded.
struct TopkResult {
  std::vector<int32_t> idx;
  std::vector<float> val;
  int flag = 0;
};

// Runs topk_batched_cuda on x ([rows][ld]) with the segment table off and kept-count table koff
// (host copies uploaded), a workspace of the queried size, on `stream` (after the uploads and
// fills on the backend's stream); waits for the device.
inline TopkResult run_topk_gpu(const std::vector<float>& x, int64_t rows, int64_t ld,
                               const std::vector<int64_t>& off, const std::vector<int64_t>& koff,
                               cudaStream_t stream = nullptr) {
  const int nseg = static_cast<int>(off.size()) - 1;
  int64_t max_len = 0;
  for (int s = 0; s < nseg; ++s) max_len = std::max(max_len, off[s + 1] - off[s]);
  const size_t k_total = static_cast<size_t>(rows * koff.back());
  DeviceBuffer<float> dx(x);
  DeviceBuffer<int64_t> doff(off), dkoff(koff);
  DeviceBuffer<int32_t> didx(k_total);
  DeviceBuffer<float> dval(k_total);
  DeviceBuffer<int> dflag(std::vector<int>{0});
  const size_t ws = kernels::topk_batched_workspace_size(rows, ld, nseg, max_len);
  DeviceBuffer<uint8_t> dws(ws);
  wait_for_backend(stream);
  kernels::topk_batched_cuda(dx.get(), rows, ld, kernels::SegmentView{doff.get(), nseg},
                             dkoff.get(), didx.get(), dval.get(), dws.get(), ws, dflag.get(),
                             stream);
  CUDA_CHECK(cudaDeviceSynchronize());
  return TopkResult{didx.download(), dval.download(), dflag.download()[0]};
}

}  // namespace spush::test
