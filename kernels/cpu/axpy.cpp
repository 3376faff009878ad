// y = a * x + y (CPU reference).
#include "spush/kernels/axpy.h"

#include <stdexcept>

namespace spush::kernels {

void axpy_cpu(int64_t n, float a, const float* x, float* y) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

#ifndef SPUSH_HAVE_CUDA
void axpy_cuda(int64_t, float, const float*, float*, Stream) {
  throw std::runtime_error("axpy_cuda: this build has no CUDA support");
}
#endif

}  // namespace spush::kernels
