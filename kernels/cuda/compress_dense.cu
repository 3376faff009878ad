// Dense error-feedback compressors on the GPU (qsgd, scaled sign, min-max 8-bit, identity):
// pass 1 computes each bucket's statistic (sum of v^2, sum of |v|, or min and max) in the
// blocked order of bucket_sum.h: a thread sums one 256-element tile sequentially (staged through
// shared memory so loads stay coalesced), one thread sums a group's 256 tile sums, and the block
// finishing a bucket's last group sums the group sums. Pass 2 quantizes every element with the
// CPU's float expressions (compress.cpp), dequantizes with dequant.h and writes code, val and
// e = v - c.
#include <cub/block/block_scan.cuh>

#include "compress_internal.cuh"
#include "spush/kernels/cuda_check.cuh"
#include "spush/kernels/dequant.h"
#include "spush/kernels/philox.h"
#include "topk_internal.cuh"

namespace spush::kernels::dense_detail {
namespace {

constexpr int kWarps = kThreads / 32;
constexpr int kTile = 256;     // kSumTile
constexpr int kGroup = 65536;  // kSumGroup
constexpr int kStep = 32;      // elements per tile staged per step
enum StatMode { kSumSquares = 0, kSumAbs = 1, kMinMax = 2, kCheckOnly = 3 };

__device__ __forceinline__ int find_segment(const int32_t* begin, int nseg, int32_t c) {
  int lo = 0, hi = nseg - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (begin[mid] <= c) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// One block: group and chunk tables (exclusive scans of the per-bucket counts), table checks.
__global__ void __launch_bounds__(kThreads) dense_setup_kernel(Problem p, Workspace w) {
  using Scan = cub::BlockScan<int64_t, kThreads>;
  __shared__ typename Scan::TempStorage temp;
  __shared__ int s_bad;
  if (threadIdx.x == 0) s_bad = p.seg_off[0] != 0 || p.seg_off[p.nseg] > p.dstride;
  __syncthreads();
  int64_t groups = 0, chunks = 0;
  for (int base = 0; base < p.nseg; base += kThreads) {
    const int s = base + static_cast<int>(threadIdx.x);
    int64_t ng = 0, nc = 0;
    if (s < p.nseg) {
      const int64_t len = p.seg_off[s + 1] - p.seg_off[s];
      if (len < 0) s_bad = 1;
      if (len > 0) {
        ng = (len + kGroup - 1) / kGroup;
        nc = (len + kQuantChunk - 1) / kQuantChunk;
      }
    }
    int64_t gx, cx, gt, ct;
    Scan(temp).ExclusiveSum(ng, gx, gt);
    __syncthreads();
    Scan(temp).ExclusiveSum(nc, cx, ct);
    if (s < p.nseg) {
      w.group_begin[s] = static_cast<int32_t>(groups + gx);
      w.chunk_begin[s] = static_cast<int32_t>(chunks + cx);
    }
    groups += gt;
    chunks += ct;
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const bool bad = s_bad != 0 || groups > p.groups_per_row_max || chunks > p.chunks_per_row_max;
    w.group_begin[p.nseg] = static_cast<int32_t>(bad ? 0 : groups);
    w.chunk_begin[p.nseg] = static_cast<int32_t>(bad ? 0 : chunks);
    w.ctl[0] = bad ? 0 : static_cast<int32_t>(groups);
    w.ctl[1] = bad ? 0 : static_cast<int32_t>(chunks);
    w.ctl[2] = bad ? 1 : 0;
    w.ctl[3] = 0;
    if (bad) *p.error_flag = 2;
  }
}

// Writes a bucket's parameters; flags the overflows the CPU rejects (qsgd norm * s or the
// min-max step not finite in fp32).
template <int kMode>
__device__ void finalize_bucket(const Problem& p, const Workspace& w, int64_t row, int seg,
                                int64_t len, double sum, float lo, float hi) {
  bool overflow = false;
  if (kMode == kCheckOnly) return;
  if (kMode == kMinMax) {
    float* s = p.scale + (row * p.nseg + seg) * 2;
    s[0] = lo;
    s[1] = hi;
    overflow = isinf(minmax8_scale(lo, hi));
  } else if (kMode == kSumSquares) {
    const float norm = __double2float_rn(__dsqrt_rn(sum));
    overflow = isinf(__fmul_rn(norm, static_cast<float>(qsgd_levels(p.bits))));
    p.scale[row * p.nseg + seg] = norm;
  } else {
    p.scale[row * p.nseg + seg] = __double2float_rn(__ddiv_rn(sum, static_cast<double>(len)));
  }
  if (overflow) {
    *p.error_flag = 1;
    w.ctl[3] = 1;
  }
}

// Pass 1 over items = (row, bucket, group of 65,536 elements).
template <int kMode>
__global__ void __launch_bounds__(kThreads) dense_stats_kernel(Problem p, Workspace w) {
  __shared__ float buf[kThreads][kStep + 1];  // [tile][element of the step], padded: no conflicts
  __shared__ double tsum[kThreads];
  __shared__ float tlo[kThreads], thi[kThreads];
  __shared__ int s_last;
  const int32_t gpr = w.ctl[0];
  const int64_t items = p.rows * gpr;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t row = item / gpr;
    const int32_t c = static_cast<int32_t>(item - row * gpr);
    const int seg = find_segment(w.group_begin, p.nseg, c);
    const int32_t g = c - w.group_begin[seg];
    const int32_t ngroups = w.group_begin[seg + 1] - w.group_begin[seg];
    const int64_t begin = p.seg_off[seg], len = p.seg_off[seg + 1] - begin;
    const int64_t goff = static_cast<int64_t>(g) * kGroup;
    const int32_t n = static_cast<int32_t>(len - goff < kGroup ? len - goff : kGroup);
    const float* xr = p.x + row * p.ldx + begin + goff;
    const float* er = p.e ? p.e + row * p.lde + begin + goff : nullptr;
    const int32_t mine = n - static_cast<int32_t>(threadIdx.x) * kTile;
    const int32_t tile_n = mine < 0 ? 0 : (mine > kTile ? kTile : mine);
    double acc = 0.0;
    float lo = 0.0f, hi = 0.0f;
    bool bad = false;
    for (int s = 0; s < kTile / kStep; ++s) {
#pragma unroll 8
      for (int m = 0; m < kThreads / kWarps; ++m) {
        const int j = warp + kWarps * m;  // tile loaded by this warp
        const int32_t el = j * kTile + s * kStep + lane;
        if (el < n) buf[j][lane] = er ? __fadd_rn(xr[el], er[el]) : xr[el];
      }
      __syncthreads();
      for (int i = 0; i < kStep; ++i) {
        const int32_t el = s * kStep + i;
        if (el < tile_n) {
          const float v = buf[threadIdx.x][i];
          bad |= !isfinite(v);
          if (kMode == kSumSquares) {
            const double d = static_cast<double>(v);
            acc = __dadd_rn(acc, __dmul_rn(d, d));
          } else if (kMode == kSumAbs) {
            acc = __dadd_rn(acc, fabs(static_cast<double>(v)));
          } else if (kMode == kCheckOnly) {
          } else if (el == 0) {
            lo = hi = v;
          } else {
            lo = v < lo ? v : lo;  // std::min / std::max: the earlier element wins ties
            hi = hi < v ? v : hi;
          }
        }
      }
      __syncthreads();
    }
    tsum[threadIdx.x] = acc;
    tlo[threadIdx.x] = lo;
    thi[threadIdx.x] = hi;
    const int any_bad = __syncthreads_or(bad);
    if (threadIdx.x == 0) {
      if (any_bad) {
        *p.error_flag = 1;
        w.ctl[3] = 1;
      }
      const int ntiles = (n + kTile - 1) / kTile;
      double gsum = 0.0;
      float glo = tlo[0], ghi = thi[0];
      for (int t = 0; t < ntiles; ++t) {
        if (kMode == kMinMax) {
          glo = tlo[t] < glo ? tlo[t] : glo;
          ghi = ghi < thi[t] ? thi[t] : ghi;
        } else {
          gsum = __dadd_rn(gsum, tsum[t]);
        }
      }
      if (ngroups == 1) {
        finalize_bucket<kMode>(p, w, row, seg, len, __dadd_rn(0.0, gsum), glo, ghi);
        s_last = 0;
      } else {
        if (kMode == kMinMax) {
          reinterpret_cast<float2*>(w.gstat)[item] = make_float2(glo, ghi);
        } else {
          w.gstat[item] = gsum;
        }
        __threadfence();
        s_last = atomicAdd(w.done + row * p.nseg + seg, 1u) == static_cast<uint32_t>(ngroups - 1);
      }
    }
    __syncthreads();
    if (s_last && threadIdx.x == 0) {
      __threadfence();
      const int64_t first = row * gpr + w.group_begin[seg];
      double total = 0.0;
      float2 mm = make_float2(0.0f, 0.0f);
      for (int32_t q = 0; q < ngroups; ++q) {
        if (kMode == kMinMax) {
          const float2 r = __ldcg(reinterpret_cast<const float2*>(w.gstat) + first + q);
          if (q == 0) {
            mm = r;
          } else {
            mm.x = r.x < mm.x ? r.x : mm.x;
            mm.y = mm.y < r.y ? r.y : mm.y;
          }
        } else {
          total = __dadd_rn(total, __ldcg(w.gstat + first + q));
        }
      }
      finalize_bucket<kMode>(p, w, row, seg, len, total, mm.x, mm.y);
    }
    __syncthreads();
  }
}

// Pass 2 over items = (row, bucket, chunk of kQuantChunk elements).
template <CompressorKind kKind>
__global__ void __launch_bounds__(kThreads) dense_quantize_kernel(Problem p, Workspace w) {
  if (w.ctl[2] != 0 || w.ctl[3] != 0) return;  // bad tables or non-finite values: no writes
  const int32_t cpr = w.ctl[1];
  const int64_t items = p.rows * cpr;
  const int levels = qsgd_levels(p.bits);
  const float sf = static_cast<float>(levels);
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t row = item / cpr;
    const int32_t c = static_cast<int32_t>(item - row * cpr);
    const int seg = find_segment(w.chunk_begin, p.nseg, c);
    const int64_t q0 = static_cast<int64_t>(c - w.chunk_begin[seg]) * kQuantChunk;
    const int64_t begin = p.seg_off[seg], len = p.seg_off[seg + 1] - begin;
    float a = 0.0f, step = 0.0f;
    if (kKind == CompressorKind::kMinMax8) {
      a = p.scale[(row * p.nseg + seg) * 2];
      step = minmax8_scale(a, p.scale[(row * p.nseg + seg) * 2 + 1]);
    } else if (kKind != CompressorKind::kIdentity) {
      a = p.scale[row * p.nseg + seg];
    }
    const uint32_t node = p.node_base + static_cast<uint32_t>(row);
#pragma unroll 4
    for (int j = 0; j < kQuantPer; ++j) {
      const int64_t el = q0 + j * kThreads + threadIdx.x;
      if (el >= len) break;
      const int64_t col = begin + el;
      const float x = p.x[row * p.ldx + col];
      const float v = p.e ? __fadd_rn(x, p.e[row * p.lde + col]) : x;
      float out;
      int code = 0;
      if (kKind == CompressorKind::kQsgd) {
        int level = 0;
        if (a > 0.0f) {
          const float l = __fmul_rn(__fdiv_rn(fabsf(v), a), sf);
          const float fl = floorf(l);
          const float u = philox_uniform(p.seed, node, p.iteration, static_cast<uint64_t>(col));
          const int up = static_cast<int>(fl) + (u < __fsub_rn(l, fl) ? 1 : 0);
          level = up < levels ? up : levels;
        }
        code = v < 0.0f ? -level : level;
        out = dequant_qsgd(a, code, levels);
      } else if (kKind == CompressorKind::kSign) {
        code = v < 0.0f ? -1 : 1;  // sign(0) = sign(-0) = +1
        out = dequant_sign(a, code);
      } else if (kKind == CompressorKind::kMinMax8) {
        if (step > 0.0f) {
          const float q = rintf(__fdiv_rn(__fsub_rn(v, a), step));  // half to even
          code = static_cast<int>(q < 0.0f ? 0.0f : (255.0f < q ? 255.0f : q));
        }
        out = dequant_minmax8(a, step, code);
      } else {
        out = v;
      }
      const int64_t m = row * p.ld_msg + col;
      if (kKind != CompressorKind::kIdentity) p.code[m] = static_cast<int16_t>(code);
      if (p.val) p.val[m] = out;
      if (p.e) p.e[row * p.lde + col] = __fsub_rn(v, out);
    }
  }
}

template <int kMode>
void launch_stats(const Problem& p, const Workspace& w, cudaStream_t stream) {
  const void* k = reinterpret_cast<const void*>(&dense_stats_kernel<kMode>);
  const unsigned grid = topk_detail::persistent_grid(k, kThreads, 0, p.rows * p.groups_per_row_max);
  dense_stats_kernel<kMode><<<grid, kThreads, 0, stream>>>(p, w);
  CUDA_CHECK(cudaGetLastError());
}

template <CompressorKind kKind>
void launch_quantize(const Problem& p, const Workspace& w, cudaStream_t stream) {
  const void* k = reinterpret_cast<const void*>(&dense_quantize_kernel<kKind>);
  const unsigned grid = topk_detail::persistent_grid(k, kThreads, 0, p.rows * p.chunks_per_row_max);
  dense_quantize_kernel<kKind><<<grid, kThreads, 0, stream>>>(p, w);
  CUDA_CHECK(cudaGetLastError());
}

constexpr size_t kAlign = 256;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

}  // namespace

int32_t groups_per_row_bound(int64_t dstride, int nseg) {
  const int64_t b = dstride / kGroup + nseg + 1;
  return static_cast<int32_t>(b < 0x7FFFFFFF ? b : 0x7FFFFFFF);
}

int32_t chunks_per_row_bound(int64_t dstride, int nseg) {
  const int64_t b = dstride / kQuantChunk + nseg + 1;
  return static_cast<int32_t>(b < 0x7FFFFFFF ? b : 0x7FFFFFFF);
}

size_t workspace_bytes(int64_t rows, int64_t dstride, int nseg) {
  const size_t tasks = static_cast<size_t>(rows) * static_cast<size_t>(nseg);
  const size_t groups = static_cast<size_t>(rows) * groups_per_row_bound(dstride, nseg);
  return kAlign + align_up(4 * 4) + 2 * align_up(4 * (static_cast<size_t>(nseg) + 1)) +
         align_up(4 * tasks) + align_up(8 * groups);
}

Workspace carve_workspace(void* ws, int64_t rows, int64_t dstride, int nseg) {
  const uintptr_t raw = reinterpret_cast<uintptr_t>(ws);
  char* base = reinterpret_cast<char*>((raw + kAlign - 1) / kAlign * kAlign);
  const size_t tasks = static_cast<size_t>(rows) * static_cast<size_t>(nseg);
  Workspace w{};
  w.ctl = reinterpret_cast<int32_t*>(base);
  base += align_up(4 * 4);
  w.group_begin = reinterpret_cast<int32_t*>(base);
  base += align_up(4 * (static_cast<size_t>(nseg) + 1));
  w.chunk_begin = reinterpret_cast<int32_t*>(base);
  base += align_up(4 * (static_cast<size_t>(nseg) + 1));
  w.done = reinterpret_cast<uint32_t*>(base);
  base += align_up(4 * tasks);
  w.gstat = reinterpret_cast<double*>(base);
  w.groups_cap = rows * static_cast<int64_t>(groups_per_row_bound(dstride, nseg));
  return w;
}

void run_dense(const Problem& p_in, void* workspace, cudaStream_t stream) {
  Problem p = p_in;
  const Workspace w = carve_workspace(workspace, p.rows, p.dstride, p.nseg);
  p.groups_per_row_max = groups_per_row_bound(p.dstride, p.nseg);
  p.chunks_per_row_max = chunks_per_row_bound(p.dstride, p.nseg);
  const size_t tasks = static_cast<size_t>(p.rows) * static_cast<size_t>(p.nseg);
  CUDA_CHECK(cudaMemsetAsync(w.done, 0, 4 * tasks, stream));
  dense_setup_kernel<<<1, kThreads, 0, stream>>>(p, w);
  CUDA_CHECK(cudaGetLastError());
  switch (p.kind) {
    case CompressorKind::kQsgd:
      launch_stats<kSumSquares>(p, w, stream);
      launch_quantize<CompressorKind::kQsgd>(p, w, stream);
      break;
    case CompressorKind::kSign:
      launch_stats<kSumAbs>(p, w, stream);
      launch_quantize<CompressorKind::kSign>(p, w, stream);
      break;
    case CompressorKind::kMinMax8:
      launch_stats<kMinMax>(p, w, stream);
      launch_quantize<CompressorKind::kMinMax8>(p, w, stream);
      break;
    default:  // kIdentity: the statistics pass only checks finiteness
      launch_stats<kCheckOnly>(p, w, stream);
      launch_quantize<CompressorKind::kIdentity>(p, w, stream);
      break;
  }
}

}  // namespace spush::kernels::dense_detail
