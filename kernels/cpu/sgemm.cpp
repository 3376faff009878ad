// fp32 GEMM of the dense layers (kernels/include/spush/kernels/sgemm.h).
#include "spush/kernels/sgemm.h"

#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "spush/kernels/threads.h"

#ifdef SPUSH_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

namespace spush::kernels {
namespace {

void check_args(const char* fn, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a,
                int64_t lda, const float* b, int64_t ldb, const float* c, int64_t ldc) {
  auto bad = [&](const std::string& what) {
    return std::invalid_argument(fmt::format("{} (m = {}, n = {}, k = {}): {}", fn, m, n, k, what));
  };
  if (m < 0 || n < 0 || k < 0) throw bad("negative dimension");
  // Stored shapes: A is m x k (k x m when transposed), B is k x n (n x k).
  const int64_t a_cols = ta ? m : k, b_cols = tb ? k : n;
  if (lda < std::max<int64_t>(1, a_cols) || ldb < std::max<int64_t>(1, b_cols) ||
      ldc < std::max<int64_t>(1, n))
    throw bad(
        fmt::format("leading dimensions lda = {}, ldb = {}, ldc = {} are below the rows' "
                    "lengths {}, {}, {}",
                    lda, ldb, ldc, a_cols, b_cols, n));
  if (m > 0 && n > 0 && (c == nullptr || (k > 0 && (a == nullptr || b == nullptr))))
    throw bad("null matrix");
}

}  // namespace

void sgemm_blas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                int64_t ldc) {
  check_args("sgemm_blas", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
#ifdef SPUSH_HAVE_DNNL
  check_args("sgemm", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
  if (m == 0 || n == 0) return;
  if (k == 0) {  // C = beta C (oneDNN refuses k = 0); beta = 0 writes zeros, as BLAS does
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  const OneThread one;  // oneDNN's sgemm splits its work over omp_get_max_threads()
  const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a,
                                      lda, b, ldb, beta, c, ldc);
  if (st != dnnl_success)
    throw std::runtime_error(
        fmt::format("sgemm (m = {}, n = {}, k = {}): oneDNN's sgemm failed "
                    "with status {}",
                    m, n, k, static_cast<int>(st)));
#else
  sgemm_blas(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

}  // namespace spush::kernels
