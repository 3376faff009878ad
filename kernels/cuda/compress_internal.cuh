// Shared pieces of the dense compressors on the GPU (compress_dense.cu) and their host entry
// (compress.cu): the problem description, the workspace layout and the work-item tables.
// Items: statistics over groups of kSumGroup elements (bucket_sum.h order), quantization over
// chunks of kQuantChunk elements; each pass is one persistent launch over all rows and buckets.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "spush/kernels/compress.h"

namespace spush::kernels::dense_detail {

constexpr int kThreads = 256;
constexpr int kQuantPer = 16;
constexpr int kQuantChunk = kThreads * kQuantPer;  // elements per quantization item

struct Problem {
  CompressorKind kind = CompressorKind::kIdentity;
  int bits = 8;
  uint64_t seed = 0;
  uint32_t node_base = 0;
  uint64_t iteration = 0;
  const float* x = nullptr;
  int64_t ldx = 0;
  float* e = nullptr;  // nullable
  int64_t lde = 0;
  int64_t rows = 0;
  int nseg = 0;
  int64_t dstride = 0;  // bound of the row length (ldx)
  const int64_t* seg_off = nullptr;
  int16_t* code = nullptr;
  float* val = nullptr;
  float* scale = nullptr;
  int64_t ld_msg = 0;
  int* error_flag = nullptr;
  int32_t groups_per_row_max = 0;
  int32_t chunks_per_row_max = 0;
};

struct Workspace {
  int32_t* ctl;          // [0] groups per row, [1] chunks per row, [2] abort, [3] error this call
  int32_t* group_begin;  // [nseg + 1]
  int32_t* chunk_begin;  // [nseg + 1]
  uint32_t* done;        // [tasks] finished groups per (row, bucket)
  double* gstat;         // [group items] group sum, or (lo, hi) as two floats
  int64_t groups_cap;
};

size_t workspace_bytes(int64_t rows, int64_t dstride, int nseg);
Workspace carve_workspace(void* ws, int64_t rows, int64_t dstride, int nseg);
int32_t groups_per_row_bound(int64_t dstride, int nseg);
int32_t chunks_per_row_bound(int64_t dstride, int nseg);

// The three launches: tables, bucket statistics, per-element quantization.
void run_dense(const Problem& p, void* workspace, cudaStream_t stream);

}  // namespace spush::kernels::dense_detail
