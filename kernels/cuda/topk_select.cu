// Radix select of the K-th largest |x| per (row, segment), batched over rows and segments:
// setup (chunk table), pass 1 (digit-1 histogram over x; fused v = x + e for error feedback),
// pass 2 (second read: stable compaction of the survivors, keys whose digit 1 is >= the selected
// one, into a per-chunk list + digit-2 histogram), pass 3 (digit-3 histogram over survivors).
// Histograms live in shared memory per item; a segment's digit is chosen by the block that
// finishes its last item, from the segment's global histogram (or directly from shared memory
// when the segment is a single item).
#include <cub/block/block_scan.cuh>

#include "spush/kernels/cuda_check.cuh"
#include "topk_internal.cuh"

namespace spush::kernels::topk_detail {
namespace {

using ScanU = cub::BlockScan<uint32_t, kThreads>;
using ScanI = cub::BlockScan<int32_t, kThreads>;
using ScanL = cub::BlockScan<int64_t, kThreads>;

struct Selected {
  uint32_t digit;
  int32_t need;
};

// Chooses the digit holding the need-th largest key of a histogram (need >= 1), and how many
// keys of that digit are still needed. Thread t reads kBins/kThreads consecutive digits from
// the top, so an exclusive scan in thread order counts the keys above each thread's digits.
// Returns false (in every thread) when the histogram holds fewer than `need` keys.
template <int kBins, bool kGlobal>
__device__ bool select_digit(uint32_t* hist, int64_t need, bool zero_after,
                             typename ScanU::TempStorage& temp, Selected& out) {
  constexpr int kPer = kBins / kThreads;
  static_assert(kPer * kThreads == kBins, "bins must be a multiple of the block size");
  uint32_t h[kPer];
  uint32_t sum = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int digit = kBins - 1 - (threadIdx.x * kPer + j);
    h[j] = kGlobal ? __ldcg(hist + digit) : hist[digit];
    sum += h[j];
  }
  if (zero_after) {
#pragma unroll
    for (int j = 0; j < kPer; ++j) hist[kBins - 1 - (threadIdx.x * kPer + j)] = 0;
  }
  uint32_t above;
  ScanU(temp).ExclusiveSum(sum, above);
  const uint32_t n = need > 0 && need <= 0x7FFFFFFF ? static_cast<uint32_t>(need) : 0u;
  bool found = false;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    if (above < n && n <= above + h[j]) {
      out.digit = static_cast<uint32_t>(kBins - 1 - (threadIdx.x * kPer + j));
      out.need = static_cast<int32_t>(n - above);
      found = true;
    }
    above += h[j];
  }
  return __syncthreads_count(found) == 1;
}

// Called by every thread after the item's contribution to a global histogram: true in the
// block that completed the segment's last item (all other items' atomics are then visible).
__device__ bool finish_item(uint32_t* counter, int32_t nchunks, int* s_flag) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) *s_flag = atomicAdd(counter, 1u) == static_cast<uint32_t>(nchunks - 1);
  __syncthreads();
  const bool last = *s_flag != 0;
  if (last) __threadfence();
  return last;
}

__device__ void flush_histogram(const uint32_t* hist, int bins, uint32_t* global) {
  for (int b = threadIdx.x; b < bins; b += kThreads) {
    const uint32_t c = hist[b];
    if (c) atomicAdd(global + b, c);
  }
}

// One block: chunk counts per segment, their exclusive scan, and the table checks.
__global__ void __launch_bounds__(kThreads) topk_setup_kernel(Problem p, Workspace w) {
  __shared__ typename ScanL::TempStorage temp;
  __shared__ int s_bad;
  if (threadIdx.x == 0) s_bad = 0;
  __syncthreads();
  int64_t running = 0;
  for (int base = 0; base < p.nseg; base += kThreads) {
    const int s = base + static_cast<int>(threadIdx.x);
    int64_t nch = 0;
    if (s < p.nseg) {
      const int64_t len = p.seg_off[s + 1] - p.seg_off[s];
      const int64_t k = p.k_off[s + 1] - p.k_off[s];
      if (len < 0 || k < 0 || k > len || (k == 0 && len > 0)) s_bad = 1;  // K = 0: empty only
      if (len > 0) nch = (len + kChunk - 1) / kChunk;
    }
    int64_t excl, total;
    ScanL(temp).ExclusiveSum(nch, excl, total);
    if (s < p.nseg) w.seg_chunk_begin[s] = static_cast<int32_t>(running + excl);
    running += total;
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const int64_t d = p.seg_off[p.nseg];
    const bool bad = s_bad != 0 || p.seg_off[0] != 0 || p.k_off[0] != 0 || d > p.dstride ||
                     d > 0x7FFFFFFF || running > p.items_per_row_max;
    w.seg_chunk_begin[p.nseg] = static_cast<int32_t>(bad ? 0 : running);
    w.ctl[0] = bad ? 0 : static_cast<int32_t>(running);
    w.ctl[1] = bad ? 1 : 0;
    if (bad) *p.error_flag = kErrorTables;
  }
}

// Pass 1: digit-1 histogram of every item; with error feedback, v = x + e is formed here and
// written back to e (later passes read v from e).
template <bool kFormV>
__global__ void __launch_bounds__(kThreads) topk_hist1_kernel(Problem p, Workspace w) {
  __shared__ uint32_t hist[kBins1];
  __shared__ typename ScanU::TempStorage temp;
  __shared__ Selected sel;
  __shared__ int s_last;
  const int32_t cpr = w.ctl[0];
  const int64_t items = p.rows * cpr;
  const int64_t tasks = p.rows * p.nseg;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const Item it = decode_item(p, w, item, cpr);
    if (it.k == 0) continue;
    for (int b = threadIdx.x; b < kBins1; b += kThreads) hist[b] = 0;
    __syncthreads();
    const int32_t n = item_elements(it);
    const int64_t first = it.begin + static_cast<int64_t>(it.chunk) * kChunk;
    const float* xr = p.x + it.row * p.ldx + first;
    float* er = kFormV ? p.e + it.row * p.lde + first : nullptr;
    float v[kPerThread];
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int32_t i = j * kThreads + static_cast<int32_t>(threadIdx.x);
      if (i < n) v[j] = kFormV ? __fadd_rn(xr[i], er[i]) : xr[i];
    }
    bool bad = false;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int32_t i = j * kThreads + static_cast<int32_t>(threadIdx.x);
      if (i < n) {
        if (kFormV) er[i] = v[j];
        const uint32_t key = magnitude_key(v[j]);
        bad |= p.finite_only ? key >= 0x7F800000u : key > 0x7F800000u;
        atomicAdd(&hist[key >> kShift1], 1u);
      }
    }
    if (bad) *p.error_flag = kErrorNaN;
    __syncthreads();
    bool ok = true, selected = false;
    if (it.nchunks == 1) {
      ok = select_digit<kBins1, false>(hist, it.k, false, temp, sel);
      selected = true;
    } else {
      uint32_t* g = w.h1 + it.task * kBins1;
      flush_histogram(hist, kBins1, g);
      if (finish_item(w.done + 0 * tasks + it.task, it.nchunks, &s_last)) {
        ok = select_digit<kBins1, true>(g, it.k, true, temp, sel);
        selected = true;
      }
    }
    if (selected && threadIdx.x == 0) {
      w.state[it.task] = TaskState{sel.digit << kShift1, sel.need};
      if (!ok) *p.error_flag = kErrorTables;
    }
    __syncthreads();
  }
}

// Pass 2: survivors (digit 1 >= the selected digit) of each item, compacted in index order to
// the item's slot; digit-2 histogram of the keys whose digit 1 equals the selected one.
// Element i of an item sits in thread i % kThreads, round i / kThreads: order = (round, warp,
// lane), so a scan over the (round, warp) counts gives each survivor its position.
__global__ void __launch_bounds__(kThreads) topk_filter2_kernel(Problem p, Workspace w) {
  __shared__ uint32_t hist[kBins2];
  __shared__ int32_t s_off[kThreads];
  __shared__ union {
    typename ScanU::TempStorage u;
    typename ScanI::TempStorage i;
  } temp;
  __shared__ Selected sel;
  __shared__ int s_last;
  static_assert(kPerThread == 32 && kWarps * 32 == kThreads, "one ballot round per lane");
  const float* src = p.e ? p.e : p.x;
  const int64_t ld = p.e ? p.lde : p.ldx;
  const int32_t cpr = w.ctl[0];
  const int64_t items = p.rows * cpr;
  const int64_t tasks = p.rows * p.nseg;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint32_t lanes_below = (1u << lane) - 1u;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const Item it = decode_item(p, w, item, cpr);
    if (it.k == 0) continue;
    const TaskState st = w.state[it.task];
    const uint32_t d1 = st.prefix >> kShift1;
    for (int b = threadIdx.x; b < kBins2; b += kThreads) hist[b] = 0;
    __syncthreads();
    const int32_t n = item_elements(it);
    const int64_t first = it.begin + static_cast<int64_t>(it.chunk) * kChunk;
    const float* sr = src + it.row * ld + first;
    float v[kPerThread];
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int32_t i = j * kThreads + static_cast<int32_t>(threadIdx.x);
      if (i < n) v[j] = sr[i];
    }
    uint32_t mask = 0;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int32_t i = j * kThreads + static_cast<int32_t>(threadIdx.x);
      if (i < n) {
        const uint32_t key = magnitude_key(v[j]);
        const uint32_t dig = key >> kShift1;
        if (dig >= d1) mask |= 1u << j;
        if (dig == d1) atomicAdd(&hist[(key >> kShift2) & (kBins2 - 1)], 1u);
      }
    }
    int32_t mine = 0;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const uint32_t m = __ballot_sync(0xFFFFFFFFu, (mask >> j) & 1u);
      if (lane == j) mine = __popc(m);
    }
    s_off[lane * kWarps + warp] = mine;  // lane plays the round here
    __syncthreads();
    int32_t excl, total;
    ScanI(temp.i).ExclusiveSum(s_off[threadIdx.x], excl, total);
    __syncthreads();
    s_off[threadIdx.x] = excl;
    __syncthreads();
    const int64_t sb = survivor_base(p, it);
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const bool keep = (mask >> j) & 1u;
      const uint32_t m = __ballot_sync(0xFFFFFFFFu, keep);
      if (keep) {
        const int64_t pos = sb + s_off[j * kWarps + warp] + __popc(m & lanes_below);
        w.surv_idx[pos] = static_cast<int32_t>(first + j * kThreads + threadIdx.x);
        w.surv_val[pos] = v[j];
      }
    }
    if (threadIdx.x == 0) w.surv_count[item] = total;
    bool ok = true, selected = false;
    if (it.nchunks == 1) {
      ok = select_digit<kBins2, false>(hist, st.need, false, temp.u, sel);
      selected = true;
    } else {
      uint32_t* g = w.h2 + it.task * kBins2;
      flush_histogram(hist, kBins2, g);
      if (finish_item(w.done + 1 * tasks + it.task, it.nchunks, &s_last)) {
        ok = select_digit<kBins2, true>(g, st.need, false, temp.u, sel);
        selected = true;
      }
    }
    if (selected && threadIdx.x == 0) {
      w.state[it.task] = TaskState{st.prefix | (sel.digit << kShift2), sel.need};
      if (!ok) *p.error_flag = kErrorTables;
    }
    __syncthreads();
  }
}

// Pass 3: digit-3 histogram over the survivors whose top 21 key bits match the prefix.
// Uses h1, which pass 1's selection cleared.
__global__ void __launch_bounds__(kThreads) topk_hist3_kernel(Problem p, Workspace w) {
  __shared__ uint32_t hist[kBins3];
  __shared__ typename ScanU::TempStorage temp;
  __shared__ Selected sel;
  __shared__ int s_last;
  const int32_t cpr = w.ctl[0];
  const int64_t items = p.rows * cpr;
  const int64_t tasks = p.rows * p.nseg;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const Item it = decode_item(p, w, item, cpr);
    if (it.k == 0) continue;
    const TaskState st = w.state[it.task];
    const uint32_t high = st.prefix >> kShift2;
    for (int b = threadIdx.x; b < kBins3; b += kThreads) hist[b] = 0;
    __syncthreads();
    const int32_t n = w.surv_count[item];
    const float* sv = w.surv_val + survivor_base(p, it);
    for (int32_t i = threadIdx.x; i < n; i += kThreads) {
      const uint32_t key = magnitude_key(sv[i]);
      if ((key >> kShift2) == high) atomicAdd(&hist[key & (kBins3 - 1)], 1u);
    }
    __syncthreads();
    bool ok = true, selected = false;
    if (it.nchunks == 1) {
      ok = select_digit<kBins3, false>(hist, st.need, false, temp, sel);
      selected = true;
    } else {
      uint32_t* g = w.h1 + it.task * kBins1;
      flush_histogram(hist, kBins3, g);
      if (finish_item(w.done + 2 * tasks + it.task, it.nchunks, &s_last)) {
        ok = select_digit<kBins3, true>(g, st.need, false, temp, sel);
        selected = true;
      }
    }
    if (selected && threadIdx.x == 0) {
      w.state[it.task] = TaskState{st.prefix | sel.digit, sel.need};
      if (!ok) *p.error_flag = kErrorTables;
    }
    __syncthreads();
  }
}

}  // namespace

void launch_setup(const Problem& p, const Workspace& w, cudaStream_t stream) {
  topk_setup_kernel<<<1, kThreads, 0, stream>>>(p, w);
  CUDA_CHECK(cudaGetLastError());
}

void launch_hist1(const Problem& p, const Workspace& w, cudaStream_t stream) {
  const int64_t bound = p.rows * static_cast<int64_t>(p.items_per_row_max);
  if (p.e) {
    const unsigned grid = persistent_grid(reinterpret_cast<const void*>(&topk_hist1_kernel<true>),
                                          kThreads, 0, bound);
    topk_hist1_kernel<true><<<grid, kThreads, 0, stream>>>(p, w);
  } else {
    const unsigned grid = persistent_grid(reinterpret_cast<const void*>(&topk_hist1_kernel<false>),
                                          kThreads, 0, bound);
    topk_hist1_kernel<false><<<grid, kThreads, 0, stream>>>(p, w);
  }
  CUDA_CHECK(cudaGetLastError());
}

void launch_filter2(const Problem& p, const Workspace& w, cudaStream_t stream) {
  const int64_t bound = p.rows * static_cast<int64_t>(p.items_per_row_max);
  const unsigned grid =
      persistent_grid(reinterpret_cast<const void*>(&topk_filter2_kernel), kThreads, 0, bound);
  topk_filter2_kernel<<<grid, kThreads, 0, stream>>>(p, w);
  CUDA_CHECK(cudaGetLastError());
}

void launch_hist3(const Problem& p, const Workspace& w, cudaStream_t stream) {
  const int64_t bound = p.rows * static_cast<int64_t>(p.items_per_row_max);
  const unsigned grid =
      persistent_grid(reinterpret_cast<const void*>(&topk_hist3_kernel), kThreads, 0, bound);
  topk_hist3_kernel<<<grid, kThreads, 0, stream>>>(p, w);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace spush::kernels::topk_detail
