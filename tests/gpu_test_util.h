// Helpers for `gpu`-labelled tests: skip without a usable GPU; device arrays on one shared cuda
// backend. Its stream synchronizes with the legacy default stream, so kernels launched on
// stream 0 by a test are ordered with the arrays' copies.
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "spush/kernels/backend.h"
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

}  // namespace spush::test
