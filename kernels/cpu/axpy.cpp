// out = a * x + b * y row by row (CPU reference; axpy.h).
#include "spush/kernels/axpy.h"

#include <stdexcept>
#include <string>

namespace spush::kernels {

void check_axpby_args(const char* fn, int64_t rows, int64_t d, const float* x, int64_t ldx,
                      const float* y, int64_t ldy, const float* out, int64_t ldo) {
  if (rows < 0 || d < 0 || ldx < d || ldy < d || ldo < d)
    throw std::invalid_argument(std::string(fn) + ": need rows, d >= 0 and d <= every stride, got rows = " +
                                std::to_string(rows) + ", d = " + std::to_string(d));
  if (rows > 0 && d > 0 && (!x || !y || !out))
    throw std::invalid_argument(std::string(fn) + ": null pointer");
}

void axpby_rows_cpu(int64_t rows, int64_t d, float a, const float* x, int64_t ldx, float b,
                    const float* y, int64_t ldy, float* out, int64_t ldo) {
  check_axpby_args("axpby_rows_cpu", rows, d, x, ldx, y, ldy, out, ldo);
#pragma omp parallel for schedule(static) if (rows * d > (int64_t{1} << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    const float* yr = y + r * ldy;
    float* o = out + r * ldo;
#pragma omp simd
    for (int64_t k = 0; k < d; ++k) o[k] = a * xr[k] + b * yr[k];
  }
}

#ifndef SPUSH_HAVE_CUDA
void axpby_rows_cuda(int64_t, int64_t, float, const float*, int64_t, float, const float*, int64_t,
                     float*, int64_t, Stream) {
  throw std::runtime_error("axpby_rows_cuda: this build has no CUDA support");
}
#endif

}  // namespace spush::kernels
