// Compression operators C with error feedback (docs/ALGORITHMS.md §2).
//
// One call compresses one row v of a node matrix, bucket by bucket (the segments passed in:
// the model's layers for layer-wise compression, or one segment {0, d} for global):
//   v = x + e            (e == nullptr: v = x, no error feedback)
//   c = C(v)             (written to `out`, in quantized form and dequantized)
//   e = v - c            (when e != nullptr; exactly, in fp32: e + c reproduces v up to one
//                         rounding of the subtraction, and exactly for sparse kinds)
// Kinds:
//  - kIdentity: c = v.
//  - kTopK: per bucket keep topk_count(len, density) entries of largest |v| (ties: lower index).
//  - kRandomK: per bucket keep the same count, chosen uniformly: the entries with the smallest
//    Philox keys philox_uniform(seed, node, iteration, i) (ties: lower index); values are
//    scaled by len/K when spec.randomk_scale (unbiased, not for error feedback).
//  - kQsgd (bits b in {1,2,4,8}): s = 2^b - 1, norm = ||v_bucket||_2, l = s|v|/norm,
//    level = floor(l) + (u < frac(l)) with u = philox_uniform(seed, node, iteration, i);
//    code = sign * level, c = sign * norm * level / s. A zero bucket sends zeros.
//  - kSign: c = (||v_bucket||_1 / len) * sign(v), sign(0) = +1; code = +-1.
//  - kFractional (bits q in [2, 9]): top-K as above, then the kept |v| of each bucket in
//    [vmin, vmax] are cut into L = 2^(q-1) geometric intervals with ratio
//    a = (vmax/vmin)^(1/L); each value sends sign and interval index; c = sign * mean of the
//    kept |v| in its interval (the L means per bucket are sent).
//  - kMinMax8: affine 8-bit per bucket: lo = min, hi = max, scale = (hi-lo)/255,
//    code = round-half-even((v-lo)/scale), c = lo + scale*code (scale 0: c = lo).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "spush/kernels/segments.h"

namespace spush::kernels {

enum class CompressorKind { kIdentity, kTopK, kRandomK, kQsgd, kSign, kFractional, kMinMax8 };
enum class IndexCodec { kRaw32, kLocal16, kBlockPosition };

struct CompressorSpec {
  CompressorKind kind = CompressorKind::kTopK;
  double density = 0.01;       // kTopK, kRandomK, kFractional: fraction kept per bucket, (0, 1]
  int bits = 8;                // kQsgd: 1, 2, 4 or 8; kFractional: 2..9
  bool randomk_scale = false;  // kRandomK: multiply kept values by len/K
  IndexCodec index_codec = IndexCodec::kLocal16;  // sparse kinds: how indices go on the wire
  uint64_t seed = 0;                              // stochastic kinds: Philox key
};

const char* to_string(CompressorKind kind);
const char* to_string(IndexCodec codec);
// Parse "identity|none", "topk", "randomk", "qsgd", "sign", "fractional", "minmax8";
// throws std::invalid_argument naming the accepted values.
CompressorKind compressor_kind_from_string(std::string_view name);
IndexCodec index_codec_from_string(std::string_view name);  // "raw32", "local16", "block"
// Throws std::invalid_argument naming the bad field and the accepted range.
void validate(const CompressorSpec& spec);
// True for kinds whose message is a list of (index, value): kTopK, kRandomK, kFractional.
bool is_sparse(CompressorKind kind);

// What one node sends for one row: the quantized form (what the codec puts on the wire)
// and the dequantized values (what receivers mix in).
struct Compressed {
  CompressorKind kind = CompressorKind::kIdentity;
  // Sparse kinds: row-local indices, ascending, bucket by bucket; val[i] = dequantized value.
  // Dense kinds: idx empty; val = dequantized row of length d.
  std::vector<int32_t> idx;
  std::vector<float> val;
  // Per-bucket parameters: kQsgd norm (1/bucket); kSign scale (1/bucket);
  // kMinMax8 lo, hi (2/bucket); kFractional the L interval means (L/bucket); else empty.
  std::vector<float> scale;
  // Per sent entry: kQsgd signed level in [-s, s]; kSign +-1; kMinMax8 0..255;
  // kFractional sign * (interval + 1); else empty.
  std::vector<int16_t> code;
};

// Error-feedback compression of one row (see the file comment). x, e: [segs.total()].
// Throws std::invalid_argument if v contains NaN or +-inf, or if a dequantized value would
// overflow fp32 (|v| near 1e36 and beyond); e is then left unchanged.
void compress_ef_cpu(const CompressorSpec& spec, SegmentView segs, const float* x, float* e,
                     Compressed& out, uint32_t node, uint64_t iteration);

// y += w * dequantized(c), y: [segs.total()].
void axpy_compressed_cpu(float w, const Compressed& c, SegmentView segs, float* y);

}  // namespace spush::kernels
