// Integer GEMM of 8-bit operands: the reference loops and the oneDNN path
// (kernels/include/spush/kernels/gemm_int8.h).
#include "spush/kernels/gemm_int8.h"

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <vector>

#ifdef SPUSH_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace spush::kernels {
namespace {

void check_args(const char* fn, int64_t m, int64_t n, int64_t k, const void* a, int64_t lda,
                int32_t a_zero, const void* b, int64_t ldb, int32_t b_zero, const void* c,
                int64_t ldc) {
  auto bad = [&](const std::string& what) {
    return std::invalid_argument(fmt::format("{} (m = {}, n = {}, k = {}): {}", fn, m, n, k, what));
  };
  if (m < 0 || n < 0 || k < 0) throw bad("negative dimension");
  if (k > kMaxInt8GemmK)
    throw bad(fmt::format("k above {}: the int32 sum could overflow", kMaxInt8GemmK));
  if (lda < k || ldb < n || ldc < n)
    throw bad(fmt::format("leading dimensions lda = {}, ldb = {}, ldc = {} must be >= k, n, n", lda,
                          ldb, ldc));
  if (a_zero < 0 || a_zero > 255) throw bad(fmt::format("a_zero = {} is not a u8 value", a_zero));
  if (b_zero < -128 || b_zero > 127)
    throw bad(fmt::format("b_zero = {} is not an s8 value", b_zero));
  if (m > 0 && n > 0 && (c == nullptr || (k > 0 && (a == nullptr || b == nullptr))))
    throw bad("null matrix");
}

#ifdef SPUSH_HAVE_DNNL
// oneDNN's u8 x s8 code is exact only with VNNI (vpdpbusd, AMX); older ISAs add pairs of
// products in saturating 16-bit arithmetic.
bool dnnl_exact_isa() {
  using dnnl::cpu_isa;
  const cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa == cpu_isa::avx512_core_vnni || isa == cpu_isa::avx512_core_bf16 ||
         isa == cpu_isa::avx512_core_amx || isa == cpu_isa::avx2_vnni;
}

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    default:
      return "older";
  }
}

struct DnnlContext {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

// One per calling thread: a oneDNN stream must not be used by two threads at once.
DnnlContext& dnnl_context() {
  thread_local DnnlContext ctx;
  return ctx;
}

// R = A B through one matmul primitive without zero points (oneDNN keeps created primitives
// in its primitive cache, so a repeated shape is not compiled again), then on the host, in
// int64 and exact:
//   C = R - a_zero colsum(B) - b_zero rowsum(A) + k a_zero b_zero.
// |R| <= 255 * 128 * k fits int32 for k <= kMaxInt8GemmK. oneDNN 2.6's runtime source zero
// point is not used: its brgemm matmul applies it in fp32 and loses bits once |C| > 2^24.
void gemm_dnnl(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, int32_t a_zero,
               const int8_t* b, int64_t ldb, int32_t b_zero, int32_t* c, int64_t ldc) {
  using dnnl::memory;
  using dt = memory::data_type;
  DnnlContext& ctx = dnnl_context();
  const memory::desc a_md({m, k}, dt::u8, {lda, 1});
  const memory::desc b_md({k, n}, dt::s8, {ldb, 1});
  const memory::desc c_md({m, n}, dt::s32, {ldc, 1});
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), ctx.engine);
  const dnnl::matmul prim(pd);
  memory a_mem(a_md, ctx.engine, const_cast<uint8_t*>(a));
  memory b_mem(b_md, ctx.engine, const_cast<int8_t*>(b));
  memory c_mem(c_md, ctx.engine, c);
  prim.execute(ctx.stream,
               {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}});
  ctx.stream.wait();
  if (a_zero == 0 && b_zero == 0) return;
  std::vector<int64_t> col(static_cast<size_t>(n), 0);  // a_zero colsum(B) - k a_zero b_zero
  if (a_zero != 0) {
    for (int64_t p = 0; p < k; ++p)
      for (int64_t j = 0; j < n; ++j) col[j] += b[p * ldb + j];
    for (int64_t j = 0; j < n; ++j)
      col[j] = a_zero * col[j] - k * static_cast<int64_t>(a_zero) * b_zero;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    const uint8_t* ai = a + i * lda;
    int64_t s = 0;
    for (int64_t p = 0; p < k; ++p) s += ai[p];
    const int64_t row = static_cast<int64_t>(b_zero) * s;
    int32_t* ci = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) ci[j] = static_cast<int32_t>(ci[j] - row - col[j]);
  }
}
#endif

}  // namespace

void gemm_u8s8s32_ref(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda,
                      int32_t a_zero, const int8_t* b, int64_t ldb, int32_t b_zero, int32_t* c,
                      int64_t ldc) {
  check_args("gemm_u8s8s32_ref", m, n, k, a, lda, a_zero, b, ldb, b_zero, c, ldc);
  if (m == 0 || n == 0) return;  // an empty C: A and B may be null
    // Row i of C accumulates k rows of B, each scaled by A[i, p] - a_zero; every partial sum is a
    // sum of at most k terms, so it stays within the int32 bound of the whole sum.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    int32_t* ci = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) ci[j] = 0;
    for (int64_t p = 0; p < k; ++p) {
      const int32_t av = static_cast<int32_t>(a[i * lda + p]) - a_zero;
      const int8_t* bp = b + p * ldb;
      for (int64_t j = 0; j < n; ++j) ci[j] += av * (static_cast<int32_t>(bp[j]) - b_zero);
    }
  }
}

void gemm_u8s8s32(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, int32_t a_zero,
                  const int8_t* b, int64_t ldb, int32_t b_zero, int32_t* c, int64_t ldc) {
  check_args("gemm_u8s8s32", m, n, k, a, lda, a_zero, b, ldb, b_zero, c, ldc);
#ifdef SPUSH_HAVE_DNNL
  if (m > 0 && n > 0 && k > 0 && dnnl_exact_isa()) {
    try {
      gemm_dnnl(m, n, k, a, lda, a_zero, b, ldb, b_zero, c, ldc);
    } catch (const dnnl::error& e) {
      throw std::runtime_error(
          fmt::format("gemm_u8s8s32 (m = {}, n = {}, k = {}): oneDNN: {}", m, n, k, e.what()));
    }
    return;
  }
#endif
  gemm_u8s8s32_ref(m, n, k, a, lda, a_zero, b, ldb, b_zero, c, ldc);
}

std::string gemm_int8_path() {
#ifdef SPUSH_HAVE_DNNL
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  if (dnnl_exact_isa()) return fmt::format("onednn ({})", isa_name(isa));
  return fmt::format("reference (oneDNN's int8 code on {} is not exact: no VNNI)", isa_name(isa));
#else
  return "reference (built without oneDNN)";
#endif
}

}  // namespace spush::kernels
