// Output stage of the radix-select top-K: with T (the K-th largest key) and the number of ties
// kept known per (row, segment), pass 4 counts the survivors of each item above T and equal
// to T, and the block finishing a segment scans those counts in item (= index) order; pass 5
// then writes each item's kept survivors, in index order, to their final positions. Ties at T
// are kept by ascending index: a tie is kept when fewer than `ties` ties precede it.
#include <cub/block/block_scan.cuh>

#include "spush/kernels/cuda_check.cuh"
#include "topk_internal.cuh"

namespace spush::kernels::topk_detail {
namespace {

constexpr int kScanPer = 4;  // items per thread in the per-segment scan
using ScanI = cub::BlockScan<int32_t, kThreads>;
using ScanBlocked = cub::BlockScan<int64_t, kThreads>;

// Pass 4: per item, survivors above T and equal to T; the segment's last block turns the
// counts into eq_before / out_off by two exclusive scans in item order.
__global__ void __launch_bounds__(kThreads) topk_count_kernel(Problem p, Workspace w) {
  __shared__ typename ScanBlocked::TempStorage temp;
  __shared__ int32_t s_above, s_eq;
  __shared__ int s_last;
  const int32_t cpr = w.ctl[0];
  const int64_t items = p.rows * cpr;
  const int64_t tasks = p.rows * p.nseg;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const Item it = decode_item(p, w, item, cpr);
    if (it.k == 0) continue;
    const TaskState st = w.state[it.task];
    if (threadIdx.x == 0) s_above = s_eq = 0;
    __syncthreads();
    const int32_t n = w.surv_count[item];
    const float* sv = w.surv_val + survivor_base(p, it);
    uint32_t above = 0, eq = 0;
    for (int32_t i = threadIdx.x; i < n; i += kThreads) {
      const uint32_t key = magnitude_key(sv[i]);
      above += key > st.prefix;
      eq += key == st.prefix;
    }
    above = __reduce_add_sync(0xFFFFFFFFu, above);
    eq = __reduce_add_sync(0xFFFFFFFFu, eq);
    if ((threadIdx.x & 31) == 0) {
      atomicAdd(&s_above, static_cast<int32_t>(above));
      atomicAdd(&s_eq, static_cast<int32_t>(eq));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      w.above[item] = s_above;
      w.eq[item] = s_eq;
    }
    bool last = true;
    if (it.nchunks > 1) {
      __threadfence();
      __syncthreads();
      if (threadIdx.x == 0)
        s_last =
            atomicAdd(w.done + 3 * tasks + it.task, 1u) == static_cast<uint32_t>(it.nchunks - 1);
      __syncthreads();
      last = s_last != 0;
      if (last) __threadfence();
    } else {
      __syncthreads();
    }
    if (last) {
      // Items of this segment are consecutive: [first_item, first_item + nchunks).
      const int64_t first_item = it.row * cpr + w.seg_chunk_begin[it.seg];
      const int64_t ties = st.need;
      int64_t run_eq = 0, run_kept = 0;
      for (int32_t base = 0; base < it.nchunks; base += kThreads * kScanPer) {
        int64_t a_eq[kScanPer], a_keep[kScanPer], eq_x[kScanPer], keep_x[kScanPer];
        int64_t agg_eq, agg_keep;
#pragma unroll
        for (int q = 0; q < kScanPer; ++q) {
          const int32_t c = base + static_cast<int32_t>(threadIdx.x) * kScanPer + q;
          a_eq[q] = c < it.nchunks ? __ldcg(w.eq + first_item + c) : 0;
        }
        ScanBlocked(temp).ExclusiveSum(a_eq, eq_x, agg_eq);
        __syncthreads();
#pragma unroll
        for (int q = 0; q < kScanPer; ++q) {
          const int32_t c = base + static_cast<int32_t>(threadIdx.x) * kScanPer + q;
          const int64_t ab = c < it.nchunks ? __ldcg(w.above + first_item + c) : 0;
          int64_t tie_keep = ties - (run_eq + eq_x[q]);
          tie_keep = tie_keep < 0 ? 0 : (tie_keep > a_eq[q] ? a_eq[q] : tie_keep);
          a_keep[q] = ab + tie_keep;
        }
        ScanBlocked(temp).ExclusiveSum(a_keep, keep_x, agg_keep);
#pragma unroll
        for (int q = 0; q < kScanPer; ++q) {
          const int32_t c = base + static_cast<int32_t>(threadIdx.x) * kScanPer + q;
          if (c < it.nchunks) {
            w.eq_before[first_item + c] = static_cast<int32_t>(run_eq + eq_x[q]);
            w.out_off[first_item + c] = static_cast<int32_t>(run_kept + keep_x[q]);
          }
        }
        run_eq += agg_eq;
        run_kept += agg_keep;
        __syncthreads();
      }
    }
    __syncthreads();
  }
}

// Pass 5: kept survivors of each item to idx / val (and e = v - c = 0 there for error feedback).
__global__ void __launch_bounds__(kThreads) topk_write_kernel(Problem p, Workspace w) {
  __shared__ typename ScanI::TempStorage temp;
  const int32_t cpr = w.ctl[0];
  const int64_t items = p.rows * cpr;
  const int64_t k_row = p.k_off[p.nseg];
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const Item it = decode_item(p, w, item, cpr);
    if (it.k == 0) continue;
    const TaskState st = w.state[it.task];
    const int32_t n = w.surv_count[item];
    const int64_t sb = survivor_base(p, it);
    const int64_t eq_before = w.eq_before[item];
    const int64_t out_off = w.out_off[item];
    const int64_t out = it.row * k_row + p.k_off[it.seg] + out_off;
    int64_t run_eq = 0, run_kept = 0;
    for (int32_t base = 0; base < n; base += kThreads) {
      const int32_t i = base + static_cast<int32_t>(threadIdx.x);
      const bool valid = i < n;
      float v = 0.0f;
      int32_t col = 0;
      uint32_t key = 0;
      if (valid) {
        v = w.surv_val[sb + i];
        col = w.surv_idx[sb + i];
        key = magnitude_key(v);
      }
      const int32_t is_eq = valid && key == st.prefix;
      int32_t eq_rank, eq_total;
      ScanI(temp).ExclusiveSum(is_eq, eq_rank, eq_total);
      const bool keep =
          valid && (key > st.prefix || (is_eq && eq_before + run_eq + eq_rank < st.need));
      __syncthreads();
      int32_t rank, kept;
      ScanI(temp).ExclusiveSum(keep ? 1 : 0, rank, kept);
      // The bound holds whenever the histograms were consistent; it keeps a broken table
      // (already reported through the error flag) from writing outside the segment's slots.
      if (keep && out_off + run_kept + rank < it.k) {
        const int64_t o = out + run_kept + rank;
        p.idx[o] = col;
        p.val[o] = v;
        if (p.e) p.e[it.row * p.lde + col] = __fsub_rn(v, v);
      }
      run_eq += eq_total;
      run_kept += kept;
      __syncthreads();
    }
  }
}

}  // namespace

void launch_count(const Problem& p, const Workspace& w, cudaStream_t stream) {
  const int64_t bound = p.rows * static_cast<int64_t>(p.items_per_row_max);
  const unsigned grid =
      persistent_grid(reinterpret_cast<const void*>(&topk_count_kernel), kThreads, 0, bound);
  topk_count_kernel<<<grid, kThreads, 0, stream>>>(p, w);
  CUDA_CHECK(cudaGetLastError());
}

void launch_write(const Problem& p, const Workspace& w, cudaStream_t stream) {
  const int64_t bound = p.rows * static_cast<int64_t>(p.items_per_row_max);
  const unsigned grid =
      persistent_grid(reinterpret_cast<const void*>(&topk_write_kernel), kThreads, 0, bound);
  topk_write_kernel<<<grid, kThreads, 0, stream>>>(p, w);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace spush::kernels::topk_detail
