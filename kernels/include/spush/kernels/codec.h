// Wire codecs: a Compressed row <-> bytes. Sender and receiver share the CompressorSpec and
// the segment table, so counts that follow from them are not sent.
//
// Payload layout of one row (all little-endian; bit streams padded to a whole byte):
//  kIdentity   d fp32
//  kTopK/kRandomK   indices, then K fp32 values
//  kFractional      indices, then per kept value q bits (sign, q-1 bits interval), padded,
//                   then L fp32 means per bucket
//  kQsgd       per bucket fp32 norm, then per element (b+1) bits (sign, b-bit level), padded
//  kSign       per bucket fp32 scale, then 1 bit per element (1 = negative), padded
//  kMinMax8    per bucket fp32 lo, hi, then d uint8 codes
// Indices:
//  kRaw32          K uint32 row-local indices
//  kLocal16        K uint16 bucket-local indices (bucket length must be <= 65536)
//  kBlockPosition  [MV, Sec. 4.3.1] (docs/ALGORITHMS.md §2.5), per bucket: blocks of
//                  B = round(1/density) positions (B a power of two, rounded up); for each kept
//                  index in a block a '1' then log2(B) bits of its offset in the block; a '0'
//                  closes each block. One bit stream per row.
//                  Cost: log2(1/rho) + 1 bits per index + 1 bit per block (~ log2(1/rho) + 2).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "spush/kernels/bitstream.h"
#include "spush/kernels/compress.h"
#include "spush/kernels/segments.h"

namespace spush::kernels {

// Exact number of bytes encode() appends for c.
size_t encoded_size(const CompressorSpec& spec, SegmentView segs, const Compressed& c);
// Appends the payload of c to out.
void encode(const CompressorSpec& spec, SegmentView segs, const Compressed& c,
            std::vector<uint8_t>& out);
// Decodes a payload of exactly n bytes into out (idx, val, scale, code as compress_ef_cpu
// wrote them). Throws std::runtime_error naming what was wrong on a malformed payload
// (wrong length, index out of range or not ascending, bad level).
void decode(const CompressorSpec& spec, SegmentView segs, const uint8_t* data, size_t n,
            Compressed& out);

// Index codecs on their own (used above, exposed for tests and benchmarks).
// idx: ascending row-local indices; counts[s]: how many fall in bucket s.
void encode_indices(IndexCodec codec, double density, SegmentView segs, const int32_t* idx,
                    const int64_t* counts, std::vector<uint8_t>& out);
// Decodes indices; for kRaw32/kLocal16 counts[s] must be given (in), for kBlockPosition they
// are written (out). Returns the number of bytes consumed.
size_t decode_indices(IndexCodec codec, double density, SegmentView segs, const uint8_t* data,
                      size_t n, std::vector<int32_t>& idx, int64_t* counts);
// Block length B used by kBlockPosition for a density (power of two >= 1/density).
int64_t block_position_block(double density);

}  // namespace spush::kernels
