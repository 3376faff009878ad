// gemmlowp's u8 x u8 -> s32 GEMM for spush-bench's gemm_u8s8 baseline (gemmlowp_gemm.cpp).
#pragma once
#include <cstdint>
#include <memory>

namespace spush::bench {

// True when spush-bench was built with gemmlowp and this CPU runs its AVX2 kernels.
bool gemmlowp_available();

// C[i, j] = sum_l (A[i, l] + a_offset) (B[l, j] + b_offset), exact in int32, with A m x k
// row-major, B given as B^T (n x k row-major, gemmlowp's preferred column-major right-hand
// side), C m x n row-major. A context (its thread pool) per object.
class GemmlowpGemm {
 public:
  explicit GemmlowpGemm(int threads);
  ~GemmlowpGemm();
  GemmlowpGemm(const GemmlowpGemm&) = delete;
  GemmlowpGemm& operator=(const GemmlowpGemm&) = delete;
  void run(int m, int n, int k, const uint8_t* a, int a_offset, const uint8_t* bt, int b_offset,
           int32_t* c);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace spush::bench
