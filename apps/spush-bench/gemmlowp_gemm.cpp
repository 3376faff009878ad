// The gemmlowp baseline of the gemm_u8s8 cases (cpu_cases.cpp): what a user of GEMMLOWP-style
// training would otherwise run. Compiled with AVX2 and gemmlowp's AVX2 kernels
// (bench/CMakeLists.txt) when its headers (Debian's libgemmlowp-dev) are found; run only on a
// CPU with AVX2.
#include "gemmlowp_gemm.h"

#if SPUSH_HAVE_GEMMLOWP
#include <public/gemmlowp.h>

#include <tuple>
#endif

namespace spush::bench {

bool gemmlowp_available() {
#if SPUSH_HAVE_GEMMLOWP
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

#if SPUSH_HAVE_GEMMLOWP
struct GemmlowpGemm::Impl {
  gemmlowp::GemmContext context;
};

GemmlowpGemm::GemmlowpGemm(int threads) : impl_(std::make_unique<Impl>()) {
  impl_->context.set_max_num_threads(threads);
}

GemmlowpGemm::~GemmlowpGemm() = default;

void GemmlowpGemm::run(int m, int n, int k, const uint8_t* a, int a_offset, const uint8_t* bt,
                       int b_offset, int32_t* c) {
  using gemmlowp::MapOrder;
  const gemmlowp::MatrixMap<const uint8_t, MapOrder::RowMajor> lhs(a, m, k, k);
  const gemmlowp::MatrixMap<const uint8_t, MapOrder::ColMajor> rhs(bt, k, n, k);
  gemmlowp::MatrixMap<int32_t, MapOrder::RowMajor> result(c, m, n, n);
  const std::tuple<> raw_int32;  // no output stage: the exact int32 sums
  gemmlowp::GemmWithOutputPipeline<uint8_t, int32_t, gemmlowp::DefaultL8R8BitDepthParams>(
      &impl_->context, lhs, rhs, &result, a_offset, b_offset, raw_int32);
}
#else
struct GemmlowpGemm::Impl {};
GemmlowpGemm::GemmlowpGemm(int) {}
GemmlowpGemm::~GemmlowpGemm() = default;
void GemmlowpGemm::run(int, int, int, const uint8_t*, int, const uint8_t*, int, int32_t*) {}
#endif

}  // namespace spush::bench
