// y = a * x + y over n floats: the smallest op, used to exercise the CPU/CUDA plumbing
// and by the mixing and optimizer code.
#pragma once
#include <cstdint>

#include "spush/kernels/device.h"

namespace spush::kernels {

void axpy_cpu(int64_t n, float a, const float* x, float* y);
// Device pointers; stream-ordered; no synchronization.
void axpy_cuda(int64_t n, float a, const float* x, float* y, Stream stream);

}  // namespace spush::kernels
