// y = a * x + y on the GPU: grid-stride loop, one element per thread per step.
#include "spush/kernels/axpy.h"
#include "spush/kernels/cuda_check.cuh"

namespace spush::kernels {

__global__ void __launch_bounds__(256)
    axpy_kernel(int64_t n, float a, const float* __restrict__ x, float* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = fmaf(a, x[i], y[i]);
}

void axpy_cuda(int64_t n, float a, const float* x, float* y, Stream stream) {
  if (n <= 0) return;
  const unsigned blocks = ceil_div(static_cast<unsigned long long>(n), 256) > 65535u * 16
                              ? 65535u * 16
                              : ceil_div(static_cast<unsigned long long>(n), 256);
  axpy_kernel<<<blocks, 256, 0, stream>>>(n, a, x, y);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace spush::kernels
