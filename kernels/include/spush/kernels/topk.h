// Top-K selection by magnitude over fp32 rows.
//
// Semantics (shared by the CPU and CUDA implementations, bit for bit):
//  - the K entries of largest |x| are kept; among equal magnitudes the LOWER index wins
//    (so +0.0 and -0.0 tie, +inf and -inf tie); the comparison key is |x| as an IEEE float;
//  - the output lists the kept entries in ASCENDING INDEX order: idx (row-local int32) and
//    the signed value x[idx];
//  - NaN anywhere in the input is an error (std::invalid_argument on the CPU).
//
// The general form is batched and segmented: `rows` rows of a node matrix with leading
// dimension `ld`, each cut into the same segments; segment s of every row keeps
// k_offsets[s+1] - k_offsets[s] entries: K >= 1 for a non-empty segment, K = 0 for an empty one
// (K = 0 for a non-empty segment is an error: std::invalid_argument on the CPU, error flag 2 on
// the GPU). Output for row r, segment s starts at
// r * k_offsets[count] + k_offsets[s]. Global selection is the one-segment case.
//
// Example (global top-1% of a vector):
//   int64_t off[2] = {0, n};  SegmentView segs{off, 1};
//   auto koff = topk_offsets(segs, 0.01);
//   std::vector<int32_t> idx(koff[1]); std::vector<float> val(koff[1]);
//   topk_batched_cpu(x, 1, n, segs, koff.data(), idx.data(), val.data());
#pragma once
#include <cstddef>
#include <cstdint>

#include "spush/kernels/device.h"
#include "spush/kernels/segments.h"

namespace spush::kernels {

// Global top-k of x[0..n), 1 <= k <= n (k = 0 only for n = 0). idx/val have k entries.
void topk_cpu(const float* x, int64_t n, int64_t k, int32_t* idx, float* val);

// Batched, segmented. idx/val have rows * k_offsets[segs.count] entries.
void topk_batched_cpu(const float* x, int64_t rows, int64_t ld, SegmentView segs,
                      const int64_t* k_offsets, int32_t* idx, float* val);

// CUDA: same contract, device pointers (segs.offsets and k_offsets in device memory too).
// No allocation and no host synchronization inside: the caller passes `workspace` of
// topk_batched_workspace_size(...) bytes. A NaN in the input sets *error_flag (device int) to 1.
size_t topk_batched_workspace_size(int64_t rows, int64_t ld, int nseg, int64_t max_seg_len);
void topk_batched_cuda(const float* x, int64_t rows, int64_t ld, SegmentView segs,
                       const int64_t* k_offsets, int32_t* idx, float* val, void* workspace,
                       size_t workspace_bytes, int* error_flag, Stream stream);

}  // namespace spush::kernels
