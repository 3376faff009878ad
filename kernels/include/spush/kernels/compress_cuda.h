// Fused error-feedback compression of a whole node matrix on the GPU: the CUDA twin of
// compress_ef_cpu (compress.h) applied to `rows` rows at once, row r being node node_base + r.
//   v = x + e;  c = C(v) (message);  e = v - c
// Kinds: kIdentity, kTopK (radix select on |v|, topk.h), kQsgd (1/2/4/8 bits, the same Philox
// stream as the CPU), kSign, kMinMax8. Bit for bit the CPU's results: the same float expressions
// per element, dequantization by dequant.h, and the qsgd norm and sign scale as double sums in
// the blocked order of bucket_sum.h, which the CPU uses too.
//
// Device message (all device pointers):
//   kTopK     idx / val [rows * k_row]: row r, bucket s at r * k_row + k_offsets[s]
//             (k_row = k_offsets[nseg]); ascending row-local indices per bucket, as topk.h.
//   dense     code [rows][ld_msg] int16: qsgd signed level, sign +-1, minmax8 0..255
//             (not written for kIdentity); val [rows][ld_msg] dequantized c (may be null
//             except for kIdentity: then only code and scale are written);
//             scale [rows][nseg * scales_per_bucket]: qsgd norm, sign scale (1 per bucket),
//             minmax8 lo, hi (2 per bucket).
// Example (16 nodes, layer-wise top-1%, buffers already on the device):
//   size_t ws = compress_ef_workspace_size(spec, 16, ld, nseg, max_len);
//   compress_ef_cuda(spec, 16, dsegs, dkoff, x, ld, e, ld, msg, 0, it, dws, ws, dflag, stream);
#pragma once
#include <cstddef>
#include <cstdint>

#include "spush/kernels/compress.h"
#include "spush/kernels/device.h"
#include "spush/kernels/segments.h"

namespace spush::kernels {

struct DeviceMessage {
  int32_t* idx = nullptr;   // kTopK
  float* val = nullptr;     // kTopK: [rows * k_row]; dense: [rows][ld_msg] or null
  int16_t* code = nullptr;  // dense (not kIdentity): [rows][ld_msg]
  float* scale = nullptr;   // dense (not kIdentity): [rows][nseg * scales_per_bucket(kind)]
  int64_t ld_msg = 0;       // dense row stride of code and val
};

// True for the kinds compress_ef_cuda implements.
inline bool compress_cuda_supports(CompressorKind kind) {
  return kind == CompressorKind::kIdentity || kind == CompressorKind::kTopK ||
         kind == CompressorKind::kQsgd || kind == CompressorKind::kSign ||
         kind == CompressorKind::kMinMax8;
}
// Per-bucket parameters of a dense kind: 2 for kMinMax8, 1 for kQsgd and kSign, else 0.
inline int scales_per_bucket(CompressorKind kind) {
  if (kind == CompressorKind::kMinMax8) return 2;
  if (kind == CompressorKind::kQsgd || kind == CompressorKind::kSign) return 1;
  return 0;
}

// Workspace bytes for compress_ef_cuda: rows of up to ld elements (pass ldx as ld), nseg
// buckets, the longest max_seg_len elements.
size_t compress_ef_workspace_size(const CompressorSpec& spec, int64_t rows, int64_t ld, int nseg,
                                  int64_t max_seg_len);

// x: [rows][ldx]; e: [rows][lde] or nullptr (no error feedback: v = x, e is not written).
// segs.offsets and k_offsets (kTopK only; k_offsets = topk_offsets(segs, spec.density)) are
// device arrays; rows must have segs.total() <= ldx. Stream-ordered, no allocation, no host
// synchronization. *error_flag (device int, never cleared here) becomes 1 when some v is NaN or
// +-inf or a qsgd norm overflows fp32, 2 when the tables are inconsistent. Then the message is
// not meaningful; dense kinds leave e unchanged, kTopK leaves e = v (x + e).
// Throws std::invalid_argument for a kind without a CUDA path or bad host arguments.
void compress_ef_cuda(const CompressorSpec& spec, int64_t rows, SegmentView segs,
                      const int64_t* k_offsets, const float* x, int64_t ldx, float* e, int64_t lde,
                      const DeviceMessage& out, uint32_t node_base, uint64_t iteration,
                      void* workspace, size_t workspace_bytes, int* error_flag, Stream stream);

}  // namespace spush::kernels
