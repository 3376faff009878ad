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
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/device.h"
#include "spush/kernels/segments.h"

namespace spush::kernels {

// What the GPU codec needs to know about a spec and a segment table, computed on the host.
struct SparseWireLayout {
  CompressorKind kind = CompressorKind::kTopK;
  double density = 0.01;  // the spec's: sets the kept count of every bucket
  int bits = 0;           // kFractional: q bits per kept value
  IndexCodec codec = IndexCodec::kRaw32;
  int nseg = 0;
  int64_t d = 0;        // row length
  int64_t k_total = 0;  // kept entries per row
  int64_t block = 1;    // kBlockPosition block length B (power of two)
  int log2_block = 0;
  size_t index_bytes = 0;    // bytes of the index part
  size_t value_bytes = 0;    // 4 * k_total fp32 values; kFractional: ceil(k_total q / 8) + 4 L nseg
  size_t payload_bytes = 0;  // index_bytes + value_bytes (== encoded_size on the CPU)
  // [3 * (nseg + 1)]: segment offsets, k offsets, bit offset of each bucket's block-position
  // stream (the last entry is the stream's total bits). Upload to the device as is.
  std::vector<int64_t> tables;
};

// spec.kind must be a sparse kind (kTopK, kRandomK, kFractional); throws
// std::invalid_argument otherwise, or when kLocal16 meets a bucket longer than 65536. The GPU
// codec below implements the kinds with fp32 values (kTopK, kRandomK); the CPU backend all three.
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

// Wire codec of dense messages on the GPU: the payload of one kIdentity / kQsgd / kSign /
// kMinMax8 row as codec.h's encode() writes it, for many rows at once, byte for byte identical
// to the CPU codec; decoding gives exactly the dequantized values the CPU decode() puts in
// Compressed::val (dequant.h). Input: the device message of compress_cuda.h (DeviceMessage).
// Wire layout: row r's payload at out + r * pitch (pitch a multiple of 4, >= payload_bytes),
// the per-bucket floats first (scale_bytes, a multiple of 4), then the bit stream or codes.
// Example:
//   DenseWireLayout lay = dense_wire_layout(spec, host_segs);   // once per model
//   encode_dense_rows_cuda(lay, dsegs, rows, msg, wire, dense_wire_pitch(lay), stream);
//   decode_dense_rows_cuda(lay, dsegs, rows, wire, pitch, val, ld_val, flag, stream);
struct DenseWireLayout {
  CompressorKind kind = CompressorKind::kIdentity;
  int bits = 0;  // kQsgd bits (level bits; each element uses bits + 1)
  int nseg = 0;
  int64_t d = 0;             // row length
  size_t scale_bytes = 0;    // bytes of the per-bucket floats at the start of the payload
                             // (0 for kIdentity)
  size_t payload_bytes = 0;  // == the CPU codec's payload size for this spec and segment table
};

// spec.kind must be kIdentity, kQsgd, kSign or kMinMax8; throws std::invalid_argument
// otherwise, or for a segment table the CPU codec rejects (not starting at 0, decreasing, row
// longer than INT32_MAX).
DenseWireLayout dense_wire_layout(const CompressorSpec& spec, SegmentView host_segs);

// True for the kinds with a dense wire codec on the GPU.
inline bool dense_wire_supports(CompressorKind kind) {
  return kind == CompressorKind::kIdentity || kind == CompressorKind::kQsgd ||
         kind == CompressorKind::kSign || kind == CompressorKind::kMinMax8;
}
// Payload bytes of a dense row (the CPU codec's size): identity 4d, qsgd 4 nseg + ceil(d (bits
// + 1) / 8), sign 4 nseg + ceil(d / 8), minmax8 8 nseg + d. Throws for other kinds.
size_t dense_wire_payload_bytes(CompressorKind kind, int bits, int nseg, int64_t d);

// The smallest row pitch encode/decode accept: payload_bytes rounded up to a multiple of 4.
inline size_t dense_wire_pitch(const DenseWireLayout& l) { return (l.payload_bytes + 3) / 4 * 4; }

// seg_offsets: device copy of the segment table [nseg + 1] (unused, may be null, for
// kIdentity). Encodes rows [0, rows): kIdentity reads msg.val, the others msg.code and
// msg.scale (row stride msg.ld_msg for val / code; scale rows of nseg * scales_per_bucket(kind)),
// as compress_ef_cuda writes them. The parameters of empty buckets are sent as 0
// (compress_ef_cuda leaves them unwritten; the CPU sends 0). Codes outside their range (which
// the CPU encode rejects) give unspecified bytes. Row r's payload at out + r * pitch; bytes of a
// row from payload_bytes up to the next multiple of 4 are written as zero, the rest of the pitch is
// not touched. out must be 4-byte aligned.
void encode_dense_rows_cuda(const DenseWireLayout& layout, const int64_t* seg_offsets, int64_t rows,
                            const DeviceMessage& msg, uint8_t* out, size_t pitch, Stream stream);

// Decodes rows [0, rows) into dequantized values val[r * ld_val + i], i < d (what the CPU
// decode() puts in Compressed::val). A malformed payload sets *error_flag = 2 (error_flag may be
// null) where the CPU decode() throws: NaN identity value, NaN or negative qsgd norm / sign scale
// of a non-empty bucket, qsgd level > 2^bits - 1, level 0 with the sign bit set, non-zero level
// in a bucket with norm 0, non-zero padding bits after the bit stream, minmax8 !(lo <= hi) in a
// non-empty bucket; the values are then unspecified. in must be 4-byte aligned.
void decode_dense_rows_cuda(const DenseWireLayout& layout, const int64_t* seg_offsets, int64_t rows,
                            const uint8_t* in, size_t pitch, float* val, int64_t ld_val,
                            int* error_flag, Stream stream);

}  // namespace spush::kernels
