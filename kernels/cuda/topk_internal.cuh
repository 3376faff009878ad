// Shared pieces of the batched, segmented radix-select top-K (topk.h) and its fused
// error-feedback form (compress_cuda.h): constants, the workspace layout and the work-item map.
// Work is cut into items = (row, segment, chunk of kChunk elements); every pass is one persistent
// launch over all items of all rows and segments, and the per-segment steps (digit selection,
// scans) run in the block that finishes a segment's last item ("last block" pattern).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace spush::kernels::topk_detail {

// Block shape of every pass: 256 threads, 32 elements each per item.
constexpr int kThreads = 256;
constexpr int kPerThread = 32;
constexpr int kChunk = kThreads * kPerThread;  // elements per work item (8192)
constexpr int kWarps = kThreads / 32;

// Radix digits of the key = bits of |x| (bit 31 is always 0): bits 30..21, 20..10, 9..0.
constexpr int kShift1 = 21, kShift2 = 10;
constexpr int kBins1 = 1024, kBins2 = 2048, kBins3 = 1024;

// Error codes written to *error_flag (0 is never written: the caller clears it).
constexpr int kErrorNaN = 1;     // NaN in the input (compress: NaN or +-inf in v = x + e)
constexpr int kErrorTables = 2;  // inconsistent segment / k tables or too small a workspace

// Per (row, segment): the key prefix fixed so far and how many keys equal to it are kept.
// After the third digit, prefix is the K-th largest key T and need the number of ties at T
// that are kept (the lowest indices).
struct TaskState {
  uint32_t prefix;
  int32_t need;
};

// Pointers into the caller's workspace (see carve_workspace for the layout).
struct Workspace {
  int32_t* ctl;              // [0] chunks per row, [1] abort (tables invalid)
  int32_t* seg_chunk_begin;  // [nseg + 1] first chunk of each segment within a row
  TaskState* state;          // [tasks]
  uint32_t* done;            // [4][tasks] items finished per pass (last-block detection)
  uint32_t* h1;              // [tasks][kBins1] digit-1 histogram, reused for digit 3
  uint32_t* h2;              // [tasks][kBins2] digit-2 histogram
  int32_t* surv_idx;         // [rows][dstride] survivors (key digit 1 >= selected digit 1)
  float* surv_val;           // [rows][dstride]
  int32_t* surv_count;       // [items] survivors per item (stored at the item's chunk offset)
  int32_t* above;            // [items] survivors with key > T
  int32_t* eq;               // [items] survivors with key == T
  int32_t* eq_before;        // [items] keys == T in earlier items of the same segment
  int32_t* out_off;          // [items] kept entries in earlier items of the same segment
  int64_t items_cap;         // capacity of the per-item arrays
  size_t zero_bytes;         // bytes from `done` to the end of h2 (cleared by each call)
};

// The whole problem as the kernels see it (passed by value).
struct Problem {
  const float* x = nullptr;  // [rows][ldx]
  int64_t ldx = 0;
  float* e = nullptr;  // error feedback: v = x + e is formed in pass 1 and stored in e [rows][lde]
  int64_t lde = 0;
  bool finite_only = false;  // treat +-inf as an error too (compression)
  int64_t rows = 0;
  int nseg = 0;
  int64_t dstride = 0;  // survivor row stride: an upper bound of the row length (= ld)
  int32_t items_per_row_max = 0;
  const int64_t* seg_off = nullptr;  // [nseg + 1], device
  const int64_t* k_off = nullptr;    // [nseg + 1], device
  int32_t* idx = nullptr;            // [rows * k_off[nseg]]
  float* val = nullptr;
  int* error_flag = nullptr;
};

// Bytes of the fixed part and of one per-item slot; total = fixed + items * per_item.
size_t workspace_fixed_bytes(int64_t rows, int64_t dstride, int nseg);
constexpr size_t kPerItemBytes = 5 * sizeof(int32_t);
// Upper bound of the work items of one row (the setup kernel checks the real count against it).
int64_t items_per_row_bound(int64_t dstride, int nseg, int64_t max_seg_len);
Workspace carve_workspace(void* ws, size_t bytes, int64_t rows, int64_t dstride, int nseg);

// Runs the whole selection (validated arguments, workspace of the right size).
void run_topk(const Problem& p, void* workspace, size_t workspace_bytes, cudaStream_t stream);

// Launchers (topk_select.cu, topk_compact.cu).
void launch_setup(const Problem& p, const Workspace& w, cudaStream_t stream);
void launch_hist1(const Problem& p, const Workspace& w, cudaStream_t stream);
void launch_filter2(const Problem& p, const Workspace& w, cudaStream_t stream);
void launch_hist3(const Problem& p, const Workspace& w, cudaStream_t stream);
void launch_count(const Problem& p, const Workspace& w, cudaStream_t stream);
void launch_write(const Problem& p, const Workspace& w, cudaStream_t stream);

// Blocks for a persistent launch: enough to fill the device, at most `items` (>= 1).
unsigned persistent_grid(const void* kernel, int threads, size_t dyn_smem, int64_t items);

#ifdef __CUDACC__
// |x| as an unsigned key that orders like |x| (NaN keys sort above +inf).
__device__ __forceinline__ uint32_t magnitude_key(float v) {
  return __float_as_uint(v) & 0x7FFFFFFFu;
}

// The item's coordinates. seg_chunk_begin is non-decreasing with [0] == 0; the segment of
// chunk w is the largest s < nseg with seg_chunk_begin[s] <= w (never an empty segment).
struct Item {
  int64_t row;
  int seg;
  int32_t chunk;    // chunk index inside the segment
  int32_t nchunks;  // chunks of the segment
  int64_t begin;    // row-local index of the segment's first element
  int64_t len;      // segment length
  int64_t k;        // entries kept from the segment
  int64_t task;     // row * nseg + seg
};

__device__ __forceinline__ Item decode_item(const Problem& p, const Workspace& w, int64_t item,
                                            int32_t chunks_per_row) {
  Item it;
  it.row = item / chunks_per_row;
  const int32_t c = static_cast<int32_t>(item - it.row * chunks_per_row);
  int lo = 0, hi = p.nseg - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (w.seg_chunk_begin[mid] <= c) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  it.seg = lo;
  it.chunk = c - w.seg_chunk_begin[lo];
  it.nchunks = w.seg_chunk_begin[lo + 1] - w.seg_chunk_begin[lo];
  it.begin = p.seg_off[lo];
  it.len = p.seg_off[lo + 1] - it.begin;
  it.k = p.k_off[lo + 1] - p.k_off[lo];
  it.task = it.row * p.nseg + lo;
  return it;
}

// Survivors of an item live at its chunk's own offset inside the segment's slice of the row.
__device__ __forceinline__ int64_t survivor_base(const Problem& p, const Item& it) {
  return it.row * p.dstride + it.begin + static_cast<int64_t>(it.chunk) * kChunk;
}

__device__ __forceinline__ int32_t item_elements(const Item& it) {
  const int64_t rest = it.len - static_cast<int64_t>(it.chunk) * kChunk;
  return static_cast<int32_t>(rest < kChunk ? rest : kChunk);
}
#endif

}  // namespace spush::kernels::topk_detail
