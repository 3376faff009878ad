// Helpers for `gpu`-labelled tests: skip without a usable GPU, RAII device buffers.
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "spush/kernels/cuda_check.cuh"
#include "spush/kernels/device.h"

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

// A device array of T; poisoned with 0xFF bytes (NaN for floats, -1 for ints) on creation.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    CUDA_CHECK(cudaMalloc(&p_, bytes() ? bytes() : 1));
    poison();
  }
  explicit DeviceBuffer(const std::vector<T>& h) : DeviceBuffer(h.size()) { upload(h); }
  ~DeviceBuffer() { CUDA_CHECK_NOTHROW(cudaFree(p_)); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  void poison() { CUDA_CHECK(cudaMemset(p_, 0xFF, bytes())); }
  void upload(const std::vector<T>& h) {
    CUDA_CHECK(cudaMemcpy(p_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    CUDA_CHECK(cudaMemcpy(h.data(), p_, bytes(), cudaMemcpyDeviceToHost));
    return h;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

}  // namespace spush::test
