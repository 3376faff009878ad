// out = a * x + b * y row by row on the GPU (axpy.h): one thread per element of a row, rows on
// the grid's y axis; __fmul_rn / __fadd_rn keep nvcc from fusing, so the result is the CPU's.
#include <string>

#include "spush/kernels/axpy.h"
#include "spush/kernels/cuda_check.cuh"

namespace spush::kernels {

void check_axpby_args(const char* fn, int64_t rows, int64_t d, const float* x, int64_t ldx,
                      const float* y, int64_t ldy, const float* out, int64_t ldo);

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    axpby_rows_kernel(int64_t d, float a, const float* x, int64_t ldx, float b, const float* y,
                      int64_t ldy, float* out, int64_t ldo) {
  const int64_t r = blockIdx.y;
  const float* xr = x + r * ldx;
  const float* yr = y + r * ldy;
  float* o = out + r * ldo;
  for (int64_t k = blockIdx.x * int64_t{kThreads} + threadIdx.x; k < d;
       k += int64_t{gridDim.x} * kThreads)
    o[k] = __fadd_rn(__fmul_rn(a, xr[k]), __fmul_rn(b, yr[k]));
}

}  // namespace

void axpby_rows_cuda(int64_t rows, int64_t d, float a, const float* x, int64_t ldx, float b,
                     const float* y, int64_t ldy, float* out, int64_t ldo, Stream stream) {
  check_axpby_args("axpby_rows_cuda", rows, d, x, ldx, y, ldy, out, ldo);
  if (rows > 65535)
    throw std::invalid_argument("axpby_rows_cuda: at most 65535 rows, got " +
                                std::to_string(rows));
  if (rows == 0 || d == 0) return;
  const unsigned bx = ceil_div(static_cast<unsigned long long>(d), kThreads) > 1024u
                          ? 1024u
                          : ceil_div(static_cast<unsigned long long>(d), kThreads);
  axpby_rows_kernel<<<dim3(bx, static_cast<unsigned>(rows)), kThreads, 0, stream>>>(
      d, a, x, ldx, b, y, ldy, out, ldo);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace spush::kernels
