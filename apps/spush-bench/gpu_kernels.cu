// spush-bench device helpers: distribution fill, and the baseline building blocks (one
// grid-stride kernel per step, CUB DeviceRadixSort / DeviceReduce with caller-owned temp
// storage). Baselines are timing references: they compute the same quantities with one pass
// per step, not bit-identical messages.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_reduce.cuh>

#include "bench.h"
#include "gpu_kernels.cuh"
#include "spush/kernels/cuda_check.cuh"
#include "spush/kernels/dequant.h"

namespace spush::bench {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

#define GRID_STRIDE(i, n)                                                                \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void fill_kernel(float* x, int64_t n, int dist, uint64_t seed) {
  GRID_STRIDE(i, n) x[i] = dist_value(dist, seed, static_cast<uint64_t>(i));
}
__global__ void abs_kernel(const float* x, float* y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = fabsf(x[i]);
}
__global__ void gather_kernel(const float* x, const int32_t* idx, float* val, int64_t k) {
  GRID_STRIDE(j, k) val[j] = x[idx[j]];
}
__global__ void key_kernel(const float* x, uint32_t* keys, int64_t n) {
  GRID_STRIDE(i, n) keys[i] = __float_as_uint(x[i]) & 0x7FFFFFFFu;
}
__global__ void iota_kernel(int32_t* v, int64_t n) {
  GRID_STRIDE(i, n) v[i] = static_cast<int32_t>(i);
}
__global__ void add_kernel(const float* x, const float* e, float* v, int64_t n) {
  GRID_STRIDE(i, n) v[i] = __fadd_rn(x[i], e[i]);
}
__global__ void scatter_zero_kernel(float* e, const int32_t* idx, int64_t k) {
  GRID_STRIDE(j, k) e[idx[j]] = 0.0f;
}
__global__ void subtract_kernel(const float* v, const float* c, float* e, int64_t n) {
  GRID_STRIDE(i, n) e[i] = __fsub_rn(v[i], c[i]);
}
__global__ void qsgd_kernel(const float* v, const double* sum_sq, int bits, uint64_t seed,
                            uint64_t iteration, int16_t* code, float* val, int64_t n) {
  const float norm = __double2float_rn(sqrt(*sum_sq));
  const int levels = kernels::qsgd_levels(bits);
  const float sf = static_cast<float>(levels);
  GRID_STRIDE(i, n) {
    int level = 0;
    if (norm > 0.0f) {
      const float l = __fmul_rn(__fdiv_rn(fabsf(v[i]), norm), sf);
      const float fl = floorf(l);
      const float u = kernels::philox_uniform(seed, 0, iteration, static_cast<uint64_t>(i));
      const int up = static_cast<int>(fl) + (u < __fsub_rn(l, fl) ? 1 : 0);
      level = up < levels ? up : levels;
    }
    const int c = v[i] < 0.0f ? -level : level;
    code[i] = static_cast<int16_t>(c);
    val[i] = kernels::dequant_qsgd(norm, c, levels);
  }
}

struct Square {
  __device__ double operator()(float a) const {
    const double d = a;
    return d * d;
  }
};

}  // namespace

void fill_dist(float* x, int64_t n, int dist, uint64_t seed, cudaStream_t stream) {
  fill_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, n, dist, seed);
  CUDA_CHECK(cudaGetLastError());
}
void abs_values(const float* x, float* y, int64_t n, cudaStream_t stream) {
  abs_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, y, n);
  CUDA_CHECK(cudaGetLastError());
}
void gather_values(const float* x, const int32_t* idx, float* val, int64_t k, cudaStream_t stream) {
  gather_kernel<<<blocks_for(k), kThreads, 0, stream>>>(x, idx, val, k);
  CUDA_CHECK(cudaGetLastError());
}
void magnitude_keys(const float* x, uint32_t* keys, int64_t n, cudaStream_t stream) {
  key_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, keys, n);
  CUDA_CHECK(cudaGetLastError());
}
void iota(int32_t* v, int64_t n, cudaStream_t stream) {
  iota_kernel<<<blocks_for(n), kThreads, 0, stream>>>(v, n);
  CUDA_CHECK(cudaGetLastError());
}
size_t sort_pairs_temp_bytes(int64_t n) {
  size_t bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(
      nullptr, bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n, 0, 31));
  return bytes;
}
void sort_pairs_descending(void* temp, size_t temp_bytes, const uint32_t* keys_in,
                           uint32_t* keys_out, const int32_t* vals_in, int32_t* vals_out, int64_t n,
                           cudaStream_t stream) {
  CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(temp, temp_bytes, keys_in, keys_out, vals_in,
                                                       vals_out, n, 0, 31, stream));
}
void add_vectors(const float* x, const float* e, float* v, int64_t n, cudaStream_t stream) {
  add_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, e, v, n);
  CUDA_CHECK(cudaGetLastError());
}
void scatter_zero(float* e, const int32_t* idx, int64_t k, cudaStream_t stream) {
  scatter_zero_kernel<<<blocks_for(k), kThreads, 0, stream>>>(e, idx, k);
  CUDA_CHECK(cudaGetLastError());
}
void subtract(const float* v, const float* c, float* e, int64_t n, cudaStream_t stream) {
  subtract_kernel<<<blocks_for(n), kThreads, 0, stream>>>(v, c, e, n);
  CUDA_CHECK(cudaGetLastError());
}
size_t sum_squares_temp_bytes(int64_t n) {
  size_t bytes = 0;
  CUDA_CHECK(cub::DeviceReduce::TransformReduce(nullptr, bytes, static_cast<const float*>(nullptr),
                                                static_cast<double*>(nullptr), n,
                                                cuda::std::plus<double>{}, Square{}, 0.0));
  return bytes;
}
void sum_squares(void* temp, size_t temp_bytes, const float* v, double* out, int64_t n,
                 cudaStream_t stream) {
  CUDA_CHECK(cub::DeviceReduce::TransformReduce(temp, temp_bytes, v, out, n,
                                                cuda::std::plus<double>{}, Square{}, 0.0, stream));
}
void qsgd_quantize(const float* v, const double* sum_sq, int bits, uint64_t seed,
                   uint64_t iteration, int16_t* code, float* val, int64_t n, cudaStream_t stream) {
  qsgd_kernel<<<blocks_for(n), kThreads, 0, stream>>>(v, sum_sq, bits, seed, iteration, code, val,
                                                      n);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace spush::bench
