// Gossip mixing on the CPU (mixing.h, docs/ALGORITHMS.md §3): x[dst] += w * message and
// u[dst] += w * msg_u for every term of a round, then the push-sum de-bias z = x / u.
// Every element of x receives its terms in the order given, whatever the thread count:
// sparse mixing runs one thread per destination row (terms bucketed by dst, order kept),
// dense mixing one thread per column block (each block walks all terms in order, so messages
// that are rows of x, ld_msg == ld, give the sequential result too).
#include "spush/kernels/mixing.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

namespace spush::kernels {

namespace {

constexpr int64_t kParallelWork = int64_t{1} << 15;  // below this, OpenMP costs more than it saves
constexpr int64_t kColumnBlock = 2048;               // floats per dense column block (8 KiB)

std::string term_name(const char* fn, int64_t t, const MixTerm& term) {
  return std::string(fn) + ": term " + std::to_string(t) + " (dst " + std::to_string(term.dst) +
         ", msg " + std::to_string(term.msg) + ")";
}

// Checks the terms' rows and message ids; returns the number of destination rows (max dst + 1).
int64_t check_terms(const char* fn, const MixTerm* terms, int64_t nterms, const float* u,
                    const float* msg_u) {
  if (nterms < 0) throw std::invalid_argument(std::string(fn) + ": negative term count");
  if (nterms > 0 && !terms) throw std::invalid_argument(std::string(fn) + ": terms is null");
  if (u && !msg_u && nterms > 0)
    throw std::invalid_argument(std::string(fn) +
                                ": u is given but msg_u is null (push-sum weights need both)");
  int64_t rows = 0;
  for (int64_t t = 0; t < nterms; ++t) {
    if (terms[t].dst < 0 || terms[t].msg < 0)
      throw std::invalid_argument(term_name(fn, t, terms[t]) +
                                  ": dst and msg must be non-negative");
    rows = std::max<int64_t>(rows, int64_t{terms[t].dst} + 1);
  }
  return rows;
}

}  // namespace

void gossip_mix_sparse_cpu(float* x, int64_t ld, float* u, const MixTerm* terms, int64_t nterms,
                           const int64_t* msg_offsets, const int32_t* idx, const float* val,
                           const float* msg_u) {
  constexpr const char* kFn = "gossip_mix_sparse_cpu";
  const int64_t rows = check_terms(kFn, terms, nterms, u, msg_u);
  if (nterms == 0) return;
  if (!x || !msg_offsets) throw std::invalid_argument(std::string(kFn) + ": null x or msg_offsets");
  // Validate every message before any write, so a bad index leaves x untouched.
  int64_t work = 0;
  for (int64_t t = 0; t < nterms; ++t) {
    const int64_t b = msg_offsets[terms[t].msg], e = msg_offsets[terms[t].msg + 1];
    if (b < 0 || e < b)
      throw std::invalid_argument(term_name(kFn, t, terms[t]) + ": message entries [" +
                                  std::to_string(b) + ", " + std::to_string(e) +
                                  ") are not a valid range");
    if (e > b && (!idx || !val))
      throw std::invalid_argument(std::string(kFn) + ": null idx or val");
    for (int64_t k = b; k < e; ++k)
      if (idx[k] < 0 || idx[k] >= ld)
        throw std::invalid_argument(term_name(kFn, t, terms[t]) + ": idx[" + std::to_string(k) +
                                    "] = " + std::to_string(idx[k]) +
                                    " is outside [0, ld = " + std::to_string(ld) + ")");
    work += e - b;
  }
  // Bucket the terms by dst, keeping their order (counting sort): row r owns
  // order[first[r] .. first[r+1]).
  std::vector<int64_t> first(static_cast<size_t>(rows) + 1, 0);
  for (int64_t t = 0; t < nterms; ++t) ++first[terms[t].dst + 1];
  for (int64_t r = 0; r < rows; ++r) first[r + 1] += first[r];
  std::vector<int64_t> order(static_cast<size_t>(nterms));
  {
    std::vector<int64_t> fill(first.begin(), first.end() - 1);
    for (int64_t t = 0; t < nterms; ++t) order[fill[terms[t].dst]++] = t;
  }
#pragma omp parallel for schedule(dynamic, 1) if (rows > 1 && work > kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * ld;
    for (int64_t o = first[r]; o < first[r + 1]; ++o) {
      const MixTerm& term = terms[order[o]];
      const float w = term.weight;
      const int64_t b = msg_offsets[term.msg], e = msg_offsets[term.msg + 1];
      for (int64_t k = b; k < e; ++k) xr[idx[k]] += w * val[k];
      if (u) u[r] += w * msg_u[term.msg];
    }
  }
}

void gossip_mix_dense_cpu(float* x, int64_t ld, int64_t d, float* u, const MixTerm* terms,
                          int64_t nterms, const float* msgs, int64_t ld_msg, const float* msg_u) {
  constexpr const char* kFn = "gossip_mix_dense_cpu";
  check_terms(kFn, terms, nterms, u, msg_u);
  if (d < 0 || ld < d || ld_msg < d)
    throw std::invalid_argument(
        std::string(kFn) + ": need 0 <= d <= ld and d <= ld_msg, got d = " + std::to_string(d) +
        ", ld = " + std::to_string(ld) + ", ld_msg = " + std::to_string(ld_msg));
  if (nterms == 0) return;
  if (d > 0 && (!x || !msgs)) throw std::invalid_argument(std::string(kFn) + ": null x or msgs");
  const int64_t nblocks = (d + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (nblocks > 1 && nterms * d > kParallelWork)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t j0 = blk * kColumnBlock, j1 = std::min(d, j0 + kColumnBlock);
    for (int64_t t = 0; t < nterms; ++t) {
      float* xr = x + int64_t{terms[t].dst} * ld;
      const float* mr = msgs + int64_t{terms[t].msg} * ld_msg;
      const float w = terms[t].weight;
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) xr[j] += w * mr[j];
    }
  }
  if (u)
    for (int64_t t = 0; t < nterms; ++t) u[terms[t].dst] += terms[t].weight * msg_u[terms[t].msg];
}

void scale_rows_cpu(float* x, int64_t rows, int64_t ld, int64_t d, const double* w) {
  if (rows < 0 || d < 0 || ld < d)
    throw std::invalid_argument(
        "scale_rows_cpu: need rows >= 0 and 0 <= d <= ld, got rows = " + std::to_string(rows) +
        ", d = " + std::to_string(d) + ", ld = " + std::to_string(ld));
  if (rows == 0 || d == 0) return;
  if (!x || !w) throw std::invalid_argument("scale_rows_cpu: x and w must be non-null");
#pragma omp parallel for schedule(static) if (rows * d >= kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * ld;
    const double wr = w[r];
    for (int64_t k = 0; k < d; ++k) xr[k] = static_cast<float>(wr * static_cast<double>(xr[k]));
  }
}

void debias_cpu(const float* x, int64_t ld, const float* u, int64_t rows, int64_t d, float* z,
                int64_t ldz) {
  constexpr const char* kFn = "debias_cpu";
  if (rows < 0 || d < 0 || ld < d || ldz < d)
    throw std::invalid_argument(std::string(kFn) +
                                ": need rows, d >= 0 and d <= ld, ldz; got rows = " +
                                std::to_string(rows) + ", d = " + std::to_string(d) +
                                ", ld = " + std::to_string(ld) + ", ldz = " + std::to_string(ldz));
  if (rows == 0 || d == 0) return;
  if (!x || !u || !z) throw std::invalid_argument(std::string(kFn) + ": null x, u or z");
  // Tiles of (row, column block), so a few long rows split as well as many short ones.
  const int64_t nblocks = (d + kColumnBlock - 1) / kColumnBlock;
  const int64_t ntiles = rows * nblocks;
#pragma omp parallel for schedule(static) if (ntiles > 1 && rows * d > kParallelWork)
  for (int64_t tile = 0; tile < ntiles; ++tile) {
    const int64_t r = tile / nblocks, j0 = (tile % nblocks) * kColumnBlock;
    const int64_t j1 = std::min(d, j0 + kColumnBlock);
    const float ur = u[r];
    const float* xr = x + r * ld;
    float* zr = z + r * ldz;
#pragma omp simd
    for (int64_t j = j0; j < j1; ++j) zr[j] = xr[j] / ur;
  }
}

}  // namespace spush::kernels
