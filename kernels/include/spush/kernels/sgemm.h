// fp32 GEMM of the dense layers: C = alpha op(A) op(B) + beta C, row-major, op(X) = X or X^T.
// op(A) is m x k, op(B) is k x n, C is m x n; lda, ldb, ldc are the row strides (in elements)
// of A, B and C as stored.
//
// sgemm runs oneDNN's sgemm (AVX-512 / AMX code picked at run time) when spush is built with
// oneDNN, otherwise OpenBLAS's cblas_sgemm; sgemm_blas always runs cblas_sgemm (the
// reference the tests compare with). Both run on the calling thread alone (the layers
// parallelize over nodes and sample ranges), so a result does not depend on OMP_NUM_THREADS.
// The two differ in the order of their sums: results agree to fp32 rounding, not bit for bit.
#pragma once
#include <cstdint>

namespace spush::kernels {

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

void sgemm_blas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                int64_t ldc);

}  // namespace spush::kernels
