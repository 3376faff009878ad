// Wire codec of sparse messages on the GPU: the payload of one kTopK / kRandomK row as
// codec.h's encode() writes it (indices in kRaw32, kLocal16 or kBlockPosition form, then K fp32
// values), for many rows at once, byte for byte identical to the CPU codec.
//
// Device message layout (as compress_ef_cuda / topk_batched_cuda write it): row r's idx / val
// at r * k_total, bucket s at r * k_total + k_offsets[s], ascending row-local indices.
// Wire layout: row r's payload at out + r * pitch (pitch a multiple of 4, >= payload_bytes).
// Example:
//   SparseWireLayout lay = sparse_wire_layout(spec, host_segs);   // once per model
//   upload lay.tables to a device array dtab;
//   encode_sparse_rows_cuda(lay, dtab, rows, idx, val, wire, pitch, stream);
//   decode_sparse_rows_cuda(lay, dtab, rows, wire, pitch, idx2, val2, flag, stream);
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "spush/kernels/compress.h"
#include "spush/kernels/device.h"
#include "spush/kernels/segments.h"

namespace spush::kernels {

// What the GPU codec needs to know about a spec and a segment table, computed on the host.
struct SparseWireLayout {
  IndexCodec codec = IndexCodec::kRaw32;
  int nseg = 0;
  int64_t d = 0;        // row length
  int64_t k_total = 0;  // kept entries per row
  int64_t block = 1;    // kBlockPosition block length B (power of two)
  int log2_block = 0;
  size_t index_bytes = 0;    // bytes of the index part
  size_t payload_bytes = 0;  // index_bytes + 4 * k_total (== encoded_size on the CPU)
  // [3 * (nseg + 1)]: segment offsets, k offsets, bit offset of each bucket's block-position
  // stream (the last entry is the stream's total bits). Upload to the device as is.
  std::vector<int64_t> tables;
};

// spec.kind must be kTopK or kRandomK (fp32 values); throws std::invalid_argument otherwise,
// or when kLocal16 meets a bucket longer than 65536.
SparseWireLayout sparse_wire_layout(const CompressorSpec& spec, SegmentView host_segs);

// The smallest row pitch encode/decode accept: payload_bytes rounded up to a multiple of 4.
inline size_t sparse_wire_pitch(const SparseWireLayout& layout) {
  return (layout.payload_bytes + 3) / 4 * 4;
}

// Encodes rows [0, rows) of the device message. tables: device copy of layout.tables.
void encode_sparse_rows_cuda(const SparseWireLayout& layout, const int64_t* tables, int64_t rows,
                             const int32_t* idx, const float* val, uint8_t* out, size_t pitch,
                             Stream stream);

// Decodes rows [0, rows) into idx / val (the device message layout). A malformed payload
// (index outside its bucket, indices not strictly ascending, a block-position stream with the
// wrong count or non-zero padding, a NaN value) sets *error_flag = 2; the CPU decode throws.
// Block-position buckets are parsed by one thread each: O(K) sequential work per bucket.
void decode_sparse_rows_cuda(const SparseWireLayout& layout, const int64_t* tables, int64_t rows,
                             const uint8_t* in, size_t pitch, int32_t* idx, float* val,
                             int* error_flag, Stream stream);

}  // namespace spush::kernels
