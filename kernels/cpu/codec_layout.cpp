// Host side of the GPU wire codecs (codec_cuda.h): the layouts, computed from the spec and
// the segment table alone. Plain C++, so that builds without CUDA have them too (the engine
// in runtime/src/engine.cpp uses them on every backend).
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "spush/kernels/codec.h"
#include "spush/kernels/codec_cuda.h"

namespace spush::kernels {
namespace {

[[noreturn]] void bad(const char* fn, const std::string& what) {
  throw std::invalid_argument(std::string(fn) + ": " + what);
}

}  // namespace

size_t dense_wire_payload_bytes(CompressorKind kind, int bits, int nseg, int64_t d) {
  switch (kind) {
    case CompressorKind::kIdentity:
      return static_cast<size_t>(4 * d);
    case CompressorKind::kQsgd:
      return static_cast<size_t>(4 * int64_t{nseg} + (d * (bits + 1) + 7) / 8);
    case CompressorKind::kSign:
      return static_cast<size_t>(4 * int64_t{nseg} + (d + 7) / 8);
    case CompressorKind::kMinMax8:
      return static_cast<size_t>(8 * int64_t{nseg} + d);
    default:
      bad("dense_wire_payload_bytes", std::string("kind ") + to_string(kind) +
                                          " is not a dense kind (identity, qsgd, sign, minmax8)");
  }
}

SparseWireLayout sparse_wire_layout(const CompressorSpec& spec, SegmentView segs) {
  constexpr const char* kFn = "sparse_wire_layout";
  validate(spec);
  if (!is_sparse(spec.kind)) {
    throw std::invalid_argument(std::string(kFn) + ": kind " + to_string(spec.kind) +
                                " is not a sparse kind (topk, randomk, fractional)");
  }
  if (segs.count < 0 || (segs.count > 0 && !segs.offsets))
    throw std::invalid_argument(std::string(kFn) + ": invalid segment table");
  SparseWireLayout l;
  l.kind = spec.kind;
  l.density = spec.density;
  l.bits = spec.kind == CompressorKind::kFractional ? spec.bits : 0;
  l.codec = spec.index_codec;
  l.nseg = segs.count;
  l.d = segs.total();
  l.block = block_position_block(spec.density);
  while ((int64_t{1} << l.log2_block) < l.block) ++l.log2_block;
  const std::vector<int64_t> koff = topk_offsets(segs, spec.density);
  l.k_total = koff.back();
  l.tables.assign(3 * static_cast<size_t>(l.nseg + 1), 0);
  int64_t bits = 0;
  for (int s = 0; s <= l.nseg; ++s) {
    l.tables[s] = segs.offsets[s];
    l.tables[l.nseg + 1 + s] = koff[s];
    l.tables[2 * (l.nseg + 1) + s] = bits;
    if (s < l.nseg) {
      const int64_t len = segs.length(s);
      if (len < 0 || (s == 0 && segs.offsets[0] != 0))
        throw std::invalid_argument(std::string(kFn) + ": segment " + std::to_string(s) +
                                    " is invalid (offsets must start at 0 and not decrease)");
      if (l.codec == IndexCodec::kLocal16 && len > 65536)
        throw std::invalid_argument(std::string(kFn) +
                                    ": index codec local16 needs bucket "
                                    "lengths <= 65536, bucket " +
                                    std::to_string(s) + " has length " + std::to_string(len));
      bits += (koff[s + 1] - koff[s]) * (1 + l.log2_block) + (len + l.block - 1) / l.block;
    }
  }
  switch (l.codec) {
    case IndexCodec::kRaw32:
      l.index_bytes = static_cast<size_t>(4 * l.k_total);
      break;
    case IndexCodec::kLocal16:
      l.index_bytes = static_cast<size_t>(2 * l.k_total);
      break;
    case IndexCodec::kBlockPosition:
      l.index_bytes = static_cast<size_t>((bits + 7) / 8);
      break;
  }
  l.value_bytes = 4 * static_cast<size_t>(l.k_total);
  if (spec.kind == CompressorKind::kFractional)
    l.value_bytes = static_cast<size_t>((l.k_total * spec.bits + 7) / 8) +
                    4 * static_cast<size_t>(l.nseg) * static_cast<size_t>(1 << (spec.bits - 1));
  l.payload_bytes = l.index_bytes + l.value_bytes;
  return l;
}

DenseWireLayout dense_wire_layout(const CompressorSpec& spec, SegmentView segs) {
  constexpr const char* kFn = "dense_wire_layout";
  validate(spec);
  if (!dense_wire_supports(spec.kind))
    bad(kFn, std::string("kind ") + to_string(spec.kind) +
                 " is not a dense kind (identity, qsgd, sign, minmax8)");
  if (segs.count < 0 || (segs.count > 0 && !segs.offsets)) bad(kFn, "invalid segment table");
  if (segs.count > 0 && segs.offsets[0] != 0)
    bad(kFn, "segment offsets must start at 0, got " + std::to_string(segs.offsets[0]));
  for (int s = 0; s < segs.count; ++s)
    if (segs.length(s) < 0)
      bad(kFn, "segment " + std::to_string(s) + " has negative length " +
                   std::to_string(segs.length(s)));
  if (segs.total() > INT32_MAX)
    bad(kFn, "row length " + std::to_string(segs.total()) + " exceeds the int32 index range");
  DenseWireLayout l;
  l.kind = spec.kind;
  l.bits = spec.kind == CompressorKind::kQsgd ? spec.bits : 0;
  l.nseg = segs.count;
  l.d = segs.total();
  l.scale_bytes = 4 * static_cast<size_t>(l.nseg) * scales_per_bucket(l.kind);
  l.payload_bytes = dense_wire_payload_bytes(l.kind, l.bits, l.nseg, l.d);
  return l;
}

}  // namespace spush::kernels
