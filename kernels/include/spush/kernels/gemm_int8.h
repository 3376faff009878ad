// Integer GEMM of 8-bit operands, the core of GEMMLOWP-style quantized layers:
//
//   C[i, j] = sum_k (A[i, k] - a_zero) * (B[k, j] - b_zero)      (exact, in int32)
//
// A is m x k unsigned 8-bit (activations, affine with zero point a_zero in [0, 255]), B is k x n
// signed 8-bit (weights, zero point b_zero in [-128, 127]), C is m x n int32; all row-major with
// leading dimensions lda >= k, ldb >= n, ldc >= n (in elements). Every |term| is at most
// 255 * 255, so the sum is exact in int32 for k <= kMaxInt8GemmK; larger k is refused.
//
// gemm_u8s8s32_ref is the specification: plain loops, no library. gemm_u8s8s32 is the fast
// path: oneDNN's int8 matmul (AMX or AVX-512 VNNI / AVX-VNNI code picked at run time) with the
// zero points applied exactly, when spush is built with oneDNN (SPUSH_HAVE_DNNL) and the CPU
// has VNNI; otherwise it runs the reference. Both give the same bits on every input
// (tests/kernels/gemm_int8_test.cpp). Without VNNI oneDNN's int8 code adds u8 x s8 pairs in
// saturating 16-bit arithmetic, which is not exact, so it is not used there.
#pragma once
#include <cstdint>
#include <string>

namespace spush::kernels {

// The largest k for which the int32 sum cannot overflow: 255 * 255 * k <= 2^31 - 1.
inline constexpr int64_t kMaxInt8GemmK = 33025;

void gemm_u8s8s32_ref(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda,
                      int32_t a_zero, const int8_t* b, int64_t ldb, int32_t b_zero, int32_t* c,
                      int64_t ldc);

void gemm_u8s8s32(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, int32_t a_zero,
                  const int8_t* b, int64_t ldb, int32_t b_zero, int32_t* c, int64_t ldc);

// Which code gemm_u8s8s32 runs on this machine: "onednn (<isa>)" or "reference (<why>)".
std::string gemm_int8_path();

}  // namespace spush::kernels
