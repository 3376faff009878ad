// spush-bench device helpers (gpu_kernels.cu): input generation on the device, and the pieces
// of the baselines the fused kernels are compared with: CUB radix sort of (|x| key, index)
// pairs, and the unfused compositions (separate kernels and CUB calls for each step).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace spush::bench {

// x[i] = dist_value(dist, seed, i) for i < n.
void fill_dist(float* x, int64_t n, int dist, uint64_t seed, cudaStream_t stream);

// Top-K baselines.
void abs_values(const float* x, float* y, int64_t n, cudaStream_t stream);
void gather_values(const float* x, const int32_t* idx, float* val, int64_t k, cudaStream_t stream);
void magnitude_keys(const float* x, uint32_t* keys, int64_t n, cudaStream_t stream);
void iota(int32_t* v, int64_t n, cudaStream_t stream);
size_t sort_pairs_temp_bytes(int64_t n);
void sort_pairs_descending(void* temp, size_t temp_bytes, const uint32_t* keys_in,
                           uint32_t* keys_out, const int32_t* vals_in, int32_t* vals_out, int64_t n,
                           cudaStream_t stream);

// Error-feedback baselines: v = x + e, e = v, e[idx] = 0, e = v - c.
void add_vectors(const float* x, const float* e, float* v, int64_t n, cudaStream_t stream);
void scatter_zero(float* e, const int32_t* idx, int64_t k, cudaStream_t stream);
void subtract(const float* v, const float* c, float* e, int64_t n, cudaStream_t stream);

// QSGD baseline: sum of v^2 in double with CUB, then a quantization kernel (Philox rounding).
size_t sum_squares_temp_bytes(int64_t n);
void sum_squares(void* temp, size_t temp_bytes, const float* v, double* out, int64_t n,
                 cudaStream_t stream);
void qsgd_quantize(const float* v, const double* sum_sq, int bits, uint64_t seed,
                   uint64_t iteration, int16_t* code, float* val, int64_t n, cudaStream_t stream);

}  // namespace spush::bench
