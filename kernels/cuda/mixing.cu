// Gossip mixing on the GPU (mixing_cuda.h): x[dst] += w * message for each term in order, the
// push-sum weights u, and the de-bias z = x / u. Sparse rounds run one block per (column tile,
// destination row): the block walks all terms in order, finds each message's entries inside
// its tile by binary search (indices ascending), applies them in parallel (distinct indices)
// and synchronizes before the next term, so each element sees its terms in the CPU's order.
// The fused round keeps the tile in shared memory and writes z from it.
#include <stdexcept>
#include <string>

#include "spush/kernels/cuda_check.cuh"
#include "spush/kernels/mixing_cuda.h"

namespace spush::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kSparseTile = 65536;  // columns per block when x stays in global memory
constexpr int kFusedTile = 4096;        // columns per block in the fused round (shared memory)
constexpr int kErrorInput = 2;

__device__ __forceinline__ void set_error(int* flag) {
  if (flag) *flag = kErrorInput;
}

// First k in [b, e) with idx[k] >= col (idx ascending).
__device__ int64_t lower_bound_index(const int32_t* idx, int64_t b, int64_t e, int64_t col) {
  while (b < e) {
    const int64_t m = (b + e) >> 1;
    if (idx[m] < col) {
      b = m + 1;
    } else {
      e = m;
    }
  }
  return b;
}

// u[r] += w * msg_u[msg] over the terms with dst == r, in order: one thread per row.
__global__ void __launch_bounds__(kThreads)
    mix_u_kernel(float* u, int64_t rows, const MixTerm* terms, int64_t nterms, int64_t nmsg,
                 const float* msg_u, int* error_flag) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  if (r >= rows) return;
  float acc = u[r];
  for (int64_t t = 0; t < nterms; ++t) {
    const MixTerm m = terms[t];
    if (m.dst != r) continue;
    if (m.msg < 0 || m.msg >= nmsg) {
      set_error(error_flag);
      continue;
    }
    acc = __fadd_rn(acc, __fmul_rn(m.weight, msg_u[m.msg]));
  }
  u[r] = acc;
}

// Applies the terms of row r whose entries fall in columns [lo, hi) to `tile` (tile[j - lo] is
// x[r][j]); marks touched columns in `dirty` when non-null. Checks run in block (0, 0) / the
// tile holding the message's ends, so each problem is reported once.
template <typename Tile>
__device__ void apply_terms(Tile tile, uint32_t* dirty, int64_t r, int64_t rows, int64_t ld,
                            int64_t lo, int64_t hi, const MixTerm* terms, int64_t nterms,
                            const int64_t* msg_offsets, int64_t nmsg, const int32_t* idx,
                            const float* val, int* error_flag) {
  const bool first_tile = lo == 0, last_tile = hi >= ld;
  for (int64_t t = 0; t < nterms; ++t) {
    const MixTerm m = terms[t];
    if (m.dst < 0 || m.dst >= rows) {
      if (first_tile && r == 0 && threadIdx.x == 0) set_error(error_flag);
      continue;
    }
    if (m.dst != r) continue;
    if (m.msg < 0 || m.msg >= nmsg) {
      if (first_tile && threadIdx.x == 0) set_error(error_flag);
      continue;
    }
    const int64_t b = msg_offsets[m.msg], e = msg_offsets[m.msg + 1];
    if (b < 0 || e < b) {
      if (first_tile && threadIdx.x == 0) set_error(error_flag);
      continue;
    }
    if (threadIdx.x == 0 && e > b &&
        ((first_tile && idx[b] < 0) || (last_tile && idx[e - 1] >= ld)))
      set_error(error_flag);
    const int64_t kb = lower_bound_index(idx, b, e, lo);
    const int64_t ke = lower_bound_index(idx, kb, e, hi);
    for (int64_t k = kb + threadIdx.x; k < ke; k += kThreads) {
      const int64_t j = idx[k];
      if ((k > b && idx[k - 1] >= j) || j < lo || j >= hi) {
        set_error(error_flag);  // not ascending: this entry may race, so it is dropped
        continue;
      }
      tile[j - lo] = __fadd_rn(tile[j - lo], __fmul_rn(m.weight, val[k]));
      if (dirty) atomicOr(dirty + ((j - lo) >> 5), 1u << ((j - lo) & 31));
    }
    __syncthreads();  // the next term may touch the same columns
  }
}

__global__ void __launch_bounds__(kThreads)
    mix_sparse_kernel(float* x, int64_t rows, int64_t ld, const MixTerm* terms, int64_t nterms,
                      const int64_t* msg_offsets, int64_t nmsg, const int32_t* idx,
                      const float* val, int* error_flag) {
  const int64_t r = blockIdx.y;
  const int64_t lo = blockIdx.x * kSparseTile;
  const int64_t hi = lo + kSparseTile < ld ? lo + kSparseTile : ld;
  apply_terms(x + r * ld + lo, nullptr, r, rows, ld, lo, hi, terms, nterms, msg_offsets, nmsg, idx,
              val, error_flag);
}

__global__ void __launch_bounds__(kThreads)
    mix_sparse_debias_kernel(float* x, int64_t rows, int64_t ld, int64_t d, const float* u,
                             const MixTerm* terms, int64_t nterms, const int64_t* msg_offsets,
                             int64_t nmsg, const int32_t* idx, const float* val, float* z,
                             int64_t ldz, int* error_flag) {
  __shared__ float tile[kFusedTile];
  __shared__ uint32_t dirty[kFusedTile / 32];
  const int64_t r = blockIdx.y;
  const int64_t lo = static_cast<int64_t>(blockIdx.x) * kFusedTile;
  const int n = static_cast<int>(ld - lo < kFusedTile ? ld - lo : kFusedTile);
  float* xr = x + r * ld + lo;
  for (int i = threadIdx.x; i < n; i += kThreads) tile[i] = xr[i];
  for (int i = threadIdx.x; i < kFusedTile / 32; i += kThreads) dirty[i] = 0;
  __syncthreads();
  apply_terms(tile, dirty, r, rows, ld, lo, lo + n, terms, nterms, msg_offsets, nmsg, idx, val,
              error_flag);
  __syncthreads();
  const float ur = u[r];
  float* zr = z + r * ldz + lo;
  const int nz = static_cast<int>(d - lo < n ? (d - lo > 0 ? d - lo : 0) : n);
  for (int i = threadIdx.x; i < n; i += kThreads) {
    if ((dirty[i >> 5] >> (i & 31)) & 1u) xr[i] = tile[i];
    if (i < nz) zr[i] = __fdiv_rn(tile[i], ur);
  }
}

// One thread per column: all terms in order (messages may be rows of x).
__global__ void __launch_bounds__(kThreads)
    mix_dense_kernel(float* x, int64_t rows, int64_t ld, int64_t d, const MixTerm* terms,
                     int64_t nterms, const float* msgs, int64_t nmsg, int64_t ld_msg,
                     int* error_flag) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; j < d;
       j += static_cast<int64_t>(gridDim.x) * kThreads) {
    for (int64_t t = 0; t < nterms; ++t) {
      const MixTerm m = terms[t];
      if (m.dst < 0 || m.dst >= rows || m.msg < 0 || m.msg >= nmsg) {
        if (j == 0) set_error(error_flag);
        continue;
      }
      float* xp = x + m.dst * ld + j;
      *xp = __fadd_rn(*xp, __fmul_rn(m.weight, msgs[m.msg * ld_msg + j]));
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    scale_rows_kernel(float* x, int64_t ld, int64_t d, const double* w) {
  const int64_t r = blockIdx.y;
  const double wr = w[r];
  for (int64_t j = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; j < d;
       j += static_cast<int64_t>(gridDim.x) * kThreads)
    x[r * ld + j] = __double2float_rn(__dmul_rn(wr, static_cast<double>(x[r * ld + j])));
}

__global__ void __launch_bounds__(kThreads)
    debias_kernel(const float* x, int64_t ld, const float* u, int64_t d, float* z, int64_t ldz) {
  const int64_t r = blockIdx.y;
  const float ur = u[r];
  for (int64_t j = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; j < d;
       j += static_cast<int64_t>(gridDim.x) * kThreads)
    z[r * ldz + j] = __fdiv_rn(x[r * ld + j], ur);
}

void check(bool ok, const char* fn, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string(fn) + ": " + what);
}

unsigned column_blocks(int64_t columns, int64_t per_block) {
  const int64_t b = (columns + per_block - 1) / per_block;
  return static_cast<unsigned>(b < 1 ? 1 : (b > (1 << 20) ? (1 << 20) : b));
}

void update_u(float* u, int64_t rows, const MixTerm* terms, int64_t nterms, int64_t nmsg,
              const float* msg_u, int* error_flag, Stream stream) {
  mix_u_kernel<<<ceil_div(rows, kThreads), kThreads, 0, stream>>>(u, rows, terms, nterms, nmsg,
                                                                  msg_u, error_flag);
  CUDA_CHECK(cudaGetLastError());
}

void check_sparse(const char* fn, float* x, int64_t rows, int64_t ld, const float* u,
                  const MixTerm* terms, int64_t nterms, const int64_t* msg_offsets, int64_t nmsg,
                  const int32_t* idx, const float* val, const float* msg_u, bool u_premixed) {
  check(rows >= 0 && rows <= 65535 && ld >= 0 && nterms >= 0 && nmsg >= 0, fn,
        "need 0 <= rows <= 65535 and ld, nterms, nmsg >= 0, got rows = " + std::to_string(rows) +
            ", ld = " + std::to_string(ld) + ", nterms = " + std::to_string(nterms) +
            ", nmsg = " + std::to_string(nmsg));
  check(u_premixed || !(u && !msg_u), fn,
        "u is given but msg_u is null (push-sum weights need both)");
  check(nterms == 0 || (x && terms && msg_offsets && idx && val), fn,
        "x, terms, msg_offsets, idx and val must be non-null device pointers");
}

}  // namespace

void gossip_mix_sparse_cuda(float* x, int64_t rows, int64_t ld, float* u, const MixTerm* terms,
                            int64_t nterms, const int64_t* msg_offsets, int64_t nmsg,
                            const int32_t* idx, const float* val, const float* msg_u,
                            int* error_flag, Stream stream) {
  check_sparse("gossip_mix_sparse_cuda", x, rows, ld, u, terms, nterms, msg_offsets, nmsg, idx, val,
               msg_u, false);
  if (nterms == 0 || rows == 0) return;
  if (ld > 0) {
    const dim3 grid(column_blocks(ld, kSparseTile), static_cast<unsigned>(rows));
    mix_sparse_kernel<<<grid, kThreads, 0, stream>>>(x, rows, ld, terms, nterms, msg_offsets, nmsg,
                                                     idx, val, error_flag);
    CUDA_CHECK(cudaGetLastError());
  }
  if (u) update_u(u, rows, terms, nterms, nmsg, msg_u, error_flag, stream);
}

void gossip_mix_sparse_debias_cuda(float* x, int64_t rows, int64_t ld, int64_t d, float* u,
                                   const MixTerm* terms, int64_t nterms, const int64_t* msg_offsets,
                                   int64_t nmsg, const int32_t* idx, const float* val,
                                   const float* msg_u, float* z, int64_t ldz, int* error_flag,
                                   Stream stream) {
  constexpr const char* kFn = "gossip_mix_sparse_debias_cuda";
  check_sparse(kFn, x, rows, ld, u, terms, nterms, msg_offsets, nmsg, idx, val, msg_u, true);
  check(d >= 0 && d <= ld && ldz >= d, kFn,
        "need 0 <= d <= ld and ldz >= d, got d = " + std::to_string(d) +
            ", ld = " + std::to_string(ld) + ", ldz = " + std::to_string(ldz));
  check(u && z && x, kFn, "x, u and z must be non-null device pointers");
  if (rows == 0 || ld == 0) return;
  if (msg_u) update_u(u, rows, terms, nterms, nmsg, msg_u, error_flag, stream);
  const int64_t tiles = (ld + kFusedTile - 1) / kFusedTile;
  check(tiles <= 0x7FFFFFFF, kFn, "row too long for the tile grid");
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(rows));
  mix_sparse_debias_kernel<<<grid, kThreads, 0, stream>>>(
      x, rows, ld, d, u, terms, nterms, msg_offsets, nmsg, idx, val, z, ldz, error_flag);
  CUDA_CHECK(cudaGetLastError());
}

void gossip_mix_dense_cuda(float* x, int64_t rows, int64_t ld, int64_t d, float* u,
                           const MixTerm* terms, int64_t nterms, const float* msgs, int64_t nmsg,
                           int64_t ld_msg, const float* msg_u, int* error_flag, Stream stream) {
  constexpr const char* kFn = "gossip_mix_dense_cuda";
  check(rows >= 0 && nterms >= 0 && nmsg >= 0 && d >= 0 && ld >= d && ld_msg >= d, kFn,
        "need rows, nterms, nmsg >= 0 and 0 <= d <= ld, ld_msg; got rows = " +
            std::to_string(rows) + ", d = " + std::to_string(d) + ", ld = " + std::to_string(ld) +
            ", ld_msg = " + std::to_string(ld_msg));
  check(!(u && !msg_u), kFn, "u is given but msg_u is null (push-sum weights need both)");
  if (nterms == 0 || rows == 0) return;
  check(terms && (d == 0 || (x && msgs)), kFn, "x, terms and msgs must be non-null");
  if (d > 0) {
    mix_dense_kernel<<<column_blocks(d, kThreads), kThreads, 0, stream>>>(
        x, rows, ld, d, terms, nterms, msgs, nmsg, ld_msg, error_flag);
    CUDA_CHECK(cudaGetLastError());
  }
  if (u) update_u(u, rows, terms, nterms, nmsg, msg_u, error_flag, stream);
}

void scale_rows_cuda(float* x, int64_t rows, int64_t ld, int64_t d, const double* w,
                     Stream stream) {
  constexpr const char* kFn = "scale_rows_cuda";
  check(rows >= 0 && rows <= 65535 && d >= 0 && ld >= d, kFn,
        "need 0 <= rows <= 65535 and 0 <= d <= ld; got rows = " + std::to_string(rows) +
            ", d = " + std::to_string(d) + ", ld = " + std::to_string(ld));
  if (rows == 0 || d == 0) return;
  check(x && w, kFn, "x and w must be non-null device pointers");
  const dim3 grid(column_blocks(d, kThreads * 8), static_cast<unsigned>(rows));
  scale_rows_kernel<<<grid, kThreads, 0, stream>>>(x, ld, d, w);
  CUDA_CHECK(cudaGetLastError());
}

void debias_cuda(const float* x, int64_t ld, const float* u, int64_t rows, int64_t d, float* z,
                 int64_t ldz, Stream stream) {
  constexpr const char* kFn = "debias_cuda";
  check(rows >= 0 && rows <= 65535 && d >= 0 && ld >= d && ldz >= d, kFn,
        "need 0 <= rows <= 65535 and 0 <= d <= ld, ldz; got rows = " + std::to_string(rows) +
            ", d = " + std::to_string(d) + ", ld = " + std::to_string(ld) +
            ", ldz = " + std::to_string(ldz));
  if (rows == 0 || d == 0) return;
  check(x && u && z, kFn, "x, u and z must be non-null device pointers");
  const dim3 grid(column_blocks(d, kThreads * 8), static_cast<unsigned>(rows));
  debias_kernel<<<grid, kThreads, 0, stream>>>(x, ld, u, d, z, ldz);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace spush::kernels
