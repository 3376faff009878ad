// Batched, segmented top-K by |x| on the GPU (topk.h): workspace layout, persistent-grid sizing
// and the launch sequence of the radix select (topk_select.cu) and compaction (topk_compact.cu):
// one memset and six launches for any rows and segments, no allocation, no host synchronization.
// CUDA specifics: the workspace is sized from ld, so ld >= segs.total() also for one row; device
// tables the kernels cannot use (bad offsets, K outside [0, length], K = 0 for a non-empty
// segment, a row longer than ld, more work items than the workspace holds) set *error_flag = 2
// and nothing is written.
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "spush/kernels/cuda_check.cuh"
#include "spush/kernels/topk.h"
#include "topk_internal.cuh"

namespace spush::kernels {
namespace topk_detail {
namespace {

constexpr size_t kAlign = 256;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Walks the workspace section by section, each aligned to kAlign.
class Carver {
 public:
  explicit Carver(char* base) : base_(base) {}
  template <typename T>
  T* take(size_t count) {
    T* p = base_ ? reinterpret_cast<T*>(base_ + used_) : nullptr;
    used_ += align_up(count * sizeof(T));
    return p;
  }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t used_ = 0;
};

struct Layout {
  Workspace w{};
  size_t fixed = 0;
};

Layout layout(char* base, int64_t rows, int64_t dstride, int nseg) {
  const size_t tasks = static_cast<size_t>(rows) * static_cast<size_t>(nseg);
  const size_t surv = static_cast<size_t>(rows) * static_cast<size_t>(dstride);
  Layout l;
  Carver c(base);
  l.w.ctl = c.take<int32_t>(4);
  l.w.seg_chunk_begin = c.take<int32_t>(static_cast<size_t>(nseg) + 1);
  l.w.state = c.take<TaskState>(tasks);
  // done, h1 and h2 are contiguous: one memset clears them.
  const size_t zero_start = c.used();
  l.w.done = c.take<uint32_t>(4 * tasks);
  l.w.h1 = c.take<uint32_t>(tasks * kBins1);
  l.w.h2 = c.take<uint32_t>(tasks * kBins2);
  l.w.zero_bytes = c.used() - zero_start;
  l.w.surv_idx = c.take<int32_t>(surv);
  l.w.surv_val = c.take<float>(surv);
  l.fixed = c.used();
  return l;
}

}  // namespace

size_t workspace_fixed_bytes(int64_t rows, int64_t dstride, int nseg) {
  // Slack for aligning an unaligned base pointer and the five per-item arrays.
  return layout(nullptr, rows, dstride, nseg).fixed + 6 * kAlign;
}

int64_t items_per_row_bound(int64_t dstride, int nseg, int64_t max_seg_len) {
  const int64_t by_row = dstride / kChunk + nseg + 1;
  const int64_t by_seg = static_cast<int64_t>(nseg) * ((max_seg_len + kChunk - 1) / kChunk);
  return by_row < by_seg ? by_row : by_seg;
}

Workspace carve_workspace(void* ws, size_t bytes, int64_t rows, int64_t dstride, int nseg) {
  const uintptr_t raw = reinterpret_cast<uintptr_t>(ws);
  const uintptr_t aligned = (raw + kAlign - 1) / kAlign * kAlign;
  const size_t skip = aligned - raw;
  Layout l = layout(reinterpret_cast<char*>(aligned), rows, dstride, nseg);
  const size_t fixed = l.fixed + skip;
  const size_t left = bytes > fixed + 5 * kAlign ? bytes - fixed - 5 * kAlign : 0;
  int64_t cap = static_cast<int64_t>(left / kPerItemBytes);
  if (cap > 0x7FFFFFFF) cap = 0x7FFFFFFF;
  Carver c(reinterpret_cast<char*>(aligned) + l.fixed);
  l.w.surv_count = c.take<int32_t>(static_cast<size_t>(cap));
  l.w.above = c.take<int32_t>(static_cast<size_t>(cap));
  l.w.eq = c.take<int32_t>(static_cast<size_t>(cap));
  l.w.eq_before = c.take<int32_t>(static_cast<size_t>(cap));
  l.w.out_off = c.take<int32_t>(static_cast<size_t>(cap));
  l.w.items_cap = cap;
  return l.w;
}

unsigned persistent_grid(const void* kernel, int threads, size_t dyn_smem, int64_t items) {
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, int> cache;  // (kernel, device) -> blocks
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  int blocks = 0;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto found = cache.find({kernel, device});
    if (found == cache.end()) {
      int sms = 0, per_sm = 0;
      CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
      CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, dyn_smem));
      found = cache.emplace(std::make_pair(kernel, device), sms * (per_sm > 0 ? per_sm : 1)).first;
    }
    blocks = found->second;
  }
  if (items < 1) items = 1;
  return static_cast<unsigned>(items < blocks ? items : blocks);
}

void run_topk(const Problem& p_in, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  Problem p = p_in;
  const Workspace w = carve_workspace(workspace, workspace_bytes, p.rows, p.dstride, p.nseg);
  int64_t per_row = p.rows > 0 ? w.items_cap / p.rows : 0;
  if (per_row > 0x7FFFFFFF) per_row = 0x7FFFFFFF;
  p.items_per_row_max = static_cast<int32_t>(per_row);
  CUDA_CHECK(cudaMemsetAsync(w.done, 0, w.zero_bytes, stream));
  launch_setup(p, w, stream);
  launch_hist1(p, w, stream);
  launch_filter2(p, w, stream);
  launch_hist3(p, w, stream);
  launch_count(p, w, stream);
  launch_write(p, w, stream);
}

}  // namespace topk_detail

size_t topk_batched_workspace_size(int64_t rows, int64_t ld, int nseg, int64_t max_seg_len) {
  if (rows < 0 || ld < 0 || nseg < 0 || max_seg_len < 0 || max_seg_len > ld) {
    throw std::invalid_argument("topk_batched_workspace_size: rows = " + std::to_string(rows) +
                                ", ld = " + std::to_string(ld) +
                                ", nseg = " + std::to_string(nseg) +
                                ", max_seg_len = " + std::to_string(max_seg_len) +
                                "; expected non-negative values and max_seg_len <= ld");
  }
  const int64_t items = rows * topk_detail::items_per_row_bound(ld, nseg, max_seg_len);
  if (items > 0x7FFFFFFF) {
    throw std::invalid_argument("topk_batched_workspace_size: " + std::to_string(items) +
                                " work items of " + std::to_string(topk_detail::kChunk) +
                                " elements exceed the int32 item index; split the rows");
  }
  return topk_detail::workspace_fixed_bytes(rows, ld, nseg) +
         static_cast<size_t>(items) * topk_detail::kPerItemBytes;
}

void topk_batched_cuda(const float* x, int64_t rows, int64_t ld, SegmentView segs,
                       const int64_t* k_offsets, int32_t* idx, float* val, void* workspace,
                       size_t workspace_bytes, int* error_flag, Stream stream) {
  const std::string fn = "topk_batched_cuda";
  if (rows < 0 || segs.count < 0 || ld < 0) {
    throw std::invalid_argument(
        fn + ": rows = " + std::to_string(rows) + ", ld = " + std::to_string(ld) +
        ", segment count = " + std::to_string(segs.count) + "; expected non-negative values");
  }
  if (rows == 0 || segs.count == 0) return;
  if (!x || !segs.offsets || !k_offsets || !idx || !val || !workspace || !error_flag) {
    throw std::invalid_argument(fn +
                                ": x, segment offsets, k_offsets, idx, val, workspace and "
                                "error_flag must all be non-null device pointers");
  }
  const size_t fixed = topk_detail::workspace_fixed_bytes(rows, ld, segs.count);
  if (workspace_bytes < fixed) {
    throw std::invalid_argument(fn + ": workspace of " + std::to_string(workspace_bytes) +
                                " bytes is too small; topk_batched_workspace_size(" +
                                std::to_string(rows) + ", " + std::to_string(ld) + ", " +
                                std::to_string(segs.count) + ", max_seg_len) gives the size");
  }
  topk_detail::Problem p;
  p.x = x;
  p.ldx = ld;
  p.rows = rows;
  p.nseg = segs.count;
  p.dstride = ld;
  p.seg_off = segs.offsets;
  p.k_off = k_offsets;
  p.idx = idx;
  p.val = val;
  p.error_flag = error_flag;
  topk_detail::run_topk(p, workspace, workspace_bytes, stream);
}

}  // namespace spush::kernels
