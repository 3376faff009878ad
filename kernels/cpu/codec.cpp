// Wire codecs for one compressed row (codec.h): payload sizes, encoding, strict decoding, and
// the three sparse index codecs (raw32, local16, and the block position code of
// [MV, Sec. 4.3.1], see docs/ALGORITHMS.md §2.5).
// Sizes follow from the spec and the segment table alone (K per bucket = topk_count), so the
// decoder checks the exact length first, then every index, count, level and parameter.
// Bit streams use the BitWriter format (bit i = bit i%8 of byte i/8), packed 64 bits at a time.
#include "spush/kernels/codec.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>

#include "spush/kernels/dequant.h"

namespace spush::kernels {

static_assert(std::endian::native == std::endian::little,
              "the wire format is little-endian and is copied with memcpy");

namespace {

template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// Appends bits in the BitWriter format, a byte at a time from a 64-bit accumulator.
class BitPacker {
 public:
  explicit BitPacker(std::vector<uint8_t>& out) : out_(out) {}
  // Append the low nbits (0..32) of value.
  void put(uint32_t value, int nbits) {
    acc_ |= (static_cast<uint64_t>(value) & ((uint64_t{1} << nbits) - 1)) << nacc_;
    nacc_ += nbits;
    while (nacc_ >= 8) {
      out_.push_back(static_cast<uint8_t>(acc_));
      acc_ >>= 8;
      nacc_ -= 8;
    }
  }
  void put_zeros(int64_t nbits) {
    for (; nbits > 0; nbits -= 32) put(0, static_cast<int>(nbits < 32 ? nbits : 32));
  }
  // Pad the stream with zero bits to a whole byte.
  void flush() {
    if (nacc_ > 0) out_.push_back(static_cast<uint8_t>(acc_));
    acc_ = 0;
    nacc_ = 0;
  }

 private:
  std::vector<uint8_t>& out_;
  uint64_t acc_ = 0;
  int nacc_ = 0;
};

// Reads the BitWriter format with bounds checks; `what` names the stream in errors.
class BitUnpacker {
 public:
  BitUnpacker(const uint8_t* data, size_t nbytes, const char* what)
      : data_(data), nbytes_(nbytes), what_(what) {}
  uint32_t get(int nbits) {
    if (nbits == 0) return 0;
    if (pos_ + static_cast<size_t>(nbits) > nbytes_ * 8)
      throw std::runtime_error(cat("decode: ", what_, " bit stream truncated: needed ", nbits,
                                   " bits at bit ", pos_, " of ", nbytes_ * 8));
    const size_t byte = pos_ >> 3;
    uint64_t w = 0;
    std::memcpy(&w, data_ + byte, nbytes_ - byte < 8 ? nbytes_ - byte : 8);
    const uint32_t v = static_cast<uint32_t>((w >> (pos_ & 7)) & ((uint64_t{1} << nbits) - 1));
    pos_ += static_cast<size_t>(nbits);
    return v;
  }
  // Bytes used so far (the stream is padded to a whole byte); the padding must be zero.
  size_t finish() {
    const size_t used = (pos_ + 7) / 8;
    if (pos_ % 8 != 0 && (data_[pos_ / 8] >> (pos_ % 8)) != 0)
      throw std::runtime_error(
          cat("decode: ", what_, " bit stream has non-zero padding bits after bit ", pos_));
    return used;
  }

 private:
  const uint8_t* data_;
  size_t nbytes_;
  const char* what_;
  size_t pos_ = 0;
};

void append_floats(std::vector<uint8_t>& out, const float* v, size_t n) {
  const size_t at = out.size();
  out.resize(at + 4 * n);
  if (n) std::memcpy(out.data() + at, v, 4 * n);
}
template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int log2_exact(int64_t pow2) { return std::countr_zero(static_cast<uint64_t>(pow2)); }

// The segment table must start at 0, not decrease and fit int32 row-local indices.
void check_segments(SegmentView segs, const char* fn) {
  if (segs.count < 0) throw std::invalid_argument(cat(fn, ": negative segment count ", segs.count));
  if (segs.count == 0) return;
  if (!segs.offsets) throw std::invalid_argument(cat(fn, ": segment offsets are null"));
  if (segs.offsets[0] != 0)
    throw std::invalid_argument(
        cat(fn, ": segment offsets must start at 0, got ", segs.offsets[0]));
  for (int s = 0; s < segs.count; ++s)
    if (segs.length(s) < 0)
      throw std::invalid_argument(
          cat(fn, ": segment ", s, " has negative length ", segs.length(s)));
  if (segs.total() > INT32_MAX)
    throw std::invalid_argument(
        cat(fn, ": row length ", segs.total(), " exceeds the int32 index range"));
}

void check_local16(SegmentView segs, const char* fn) {
  for (int s = 0; s < segs.count; ++s)
    if (segs.length(s) > 65536)
      throw std::invalid_argument(cat(fn,
                                      ": index codec local16 needs bucket lengths <= 65536, "
                                      "bucket ",
                                      s, " has length ", segs.length(s)));
}

// Bytes the index codec uses for counts k_s in buckets of the given lengths.
size_t index_bytes(IndexCodec codec, double density, SegmentView segs, int64_t k_total) {
  switch (codec) {
    case IndexCodec::kRaw32:
      return static_cast<size_t>(4 * k_total);
    case IndexCodec::kLocal16:
      return static_cast<size_t>(2 * k_total);
    case IndexCodec::kBlockPosition: {
      const int64_t block = block_position_block(density);
      int64_t bits = k_total * (1 + log2_exact(block));
      for (int s = 0; s < segs.count; ++s) bits += ceil_div(segs.length(s), block);
      return static_cast<size_t>(ceil_div(bits, 8));
    }
  }
  throw std::invalid_argument("index codec: unknown value");
}

// Kept counts per bucket for the sparse kinds.
std::vector<int64_t> sparse_counts(const CompressorSpec& spec, SegmentView segs, int64_t* total) {
  std::vector<int64_t> k(static_cast<size_t>(segs.count));
  *total = 0;
  for (int s = 0; s < segs.count; ++s) *total += (k[s] = topk_count(segs.length(s), spec.density));
  return k;
}

// Payload bytes for a spec and segment table (independent of the values).
size_t payload_size(const CompressorSpec& spec, SegmentView segs) {
  const int64_t d = segs.total();
  const int64_t nseg = segs.count;
  switch (spec.kind) {
    case CompressorKind::kIdentity:
      return static_cast<size_t>(4 * d);
    case CompressorKind::kTopK:
    case CompressorKind::kRandomK:
    case CompressorKind::kFractional: {
      int64_t k = 0;
      sparse_counts(spec, segs, &k);
      size_t n = index_bytes(spec.index_codec, spec.density, segs, k);
      if (spec.kind == CompressorKind::kFractional)
        n += static_cast<size_t>(ceil_div(k * spec.bits, 8) +
                                 4 * nseg * fractional_intervals(spec.bits));
      else
        n += static_cast<size_t>(4 * k);
      return n;
    }
    case CompressorKind::kQsgd:
      return static_cast<size_t>(4 * nseg + ceil_div(d * (spec.bits + 1), 8));
    case CompressorKind::kSign:
      return static_cast<size_t>(4 * nseg + ceil_div(d, 8));
    case CompressorKind::kMinMax8:
      return static_cast<size_t>(8 * nseg + d);
  }
  throw std::invalid_argument("codec: unknown compressor kind");
}

// Checks the fields of c that the codec reads have the sizes the spec implies.
void check_shape(const CompressorSpec& spec, SegmentView segs, const Compressed& c,
                 const char* fn) {
  if (c.kind != spec.kind)
    throw std::invalid_argument(cat(fn, ": Compressed holds kind ", to_string(c.kind),
                                    " but the spec says ", to_string(spec.kind)));
  const size_t d = static_cast<size_t>(segs.total());
  const size_t nseg = static_cast<size_t>(segs.count);
  auto expect = [&](const char* field, size_t got, size_t want) {
    if (got != want)
      throw std::invalid_argument(cat(fn, ": ", to_string(spec.kind), " Compressed.", field,
                                      " has ", got, " entries, expected ", want));
  };
  switch (spec.kind) {
    case CompressorKind::kIdentity:
      expect("val", c.val.size(), d);
      break;
    case CompressorKind::kTopK:
    case CompressorKind::kRandomK:
    case CompressorKind::kFractional: {
      if (spec.index_codec == IndexCodec::kLocal16) check_local16(segs, fn);
      int64_t k = 0;
      sparse_counts(spec, segs, &k);
      expect("idx", c.idx.size(), static_cast<size_t>(k));
      expect("val", c.val.size(), static_cast<size_t>(k));
      if (spec.kind == CompressorKind::kFractional) {
        expect("code", c.code.size(), static_cast<size_t>(k));
        expect("scale", c.scale.size(), nseg * fractional_intervals(spec.bits));
      }
      break;
    }
    case CompressorKind::kQsgd:
    case CompressorKind::kSign:
      expect("code", c.code.size(), d);
      expect("scale", c.scale.size(), nseg);
      break;
    case CompressorKind::kMinMax8:
      expect("code", c.code.size(), d);
      expect("scale", c.scale.size(), 2 * nseg);
      break;
  }
}

// Per-bucket counts of ascending row-local idx[0..k); throws if an index is out of the row or
// the list is not strictly ascending.
std::vector<int64_t> count_per_bucket(SegmentView segs, const int32_t* idx, size_t k,
                                      const char* fn) {
  std::vector<int64_t> counts(static_cast<size_t>(segs.count), 0);
  const int64_t d = segs.total();
  int s = 0;
  for (size_t i = 0; i < k; ++i) {
    const int64_t j = idx[i];
    if (j < 0 || j >= d)
      throw std::invalid_argument(
          cat(fn, ": idx[", i, "] = ", j, " is outside the row [0, ", d, ")"));
    if (i > 0 && j <= idx[i - 1])
      throw std::invalid_argument(cat(fn, ": idx[", i, "] = ", j, " does not exceed idx[", i - 1,
                                      "] = ", idx[i - 1], " (indices must be strictly ascending)"));
    while (j >= segs.offsets[s + 1]) ++s;
    ++counts[s];
  }
  return counts;
}

void check_nan(float v, const char* fn, const char* field, size_t i) {
  if (std::isnan(v)) throw std::runtime_error(cat(fn, ": ", field, "[", i, "] is NaN"));
}

}  // namespace

int64_t block_position_block(double density) {
  if (!(density > 0.0 && density <= 1.0))
    throw std::invalid_argument(
        cat("block_position_block: density must be in (0, 1], got ", density));
  // B = 1/density rounded up to a power of two; 1/density within 1e-9 of an integer counts as
  // that integer, so 0.01 gives 128 and 1/64 gives 64 whatever the rounding of the division.
  // Row-local indices are int32, so no bucket exceeds 2^31: a larger block only widens offsets.
  const double inv = 1.0 / density;
  const double near = std::round(inv);
  const double want = std::fabs(inv - near) <= 1e-9 * inv ? near : std::ceil(inv);
  if (want >= 2147483648.0) return int64_t{1} << 31;
  return static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(want)));
}

void encode_indices(IndexCodec codec, double density, SegmentView segs, const int32_t* idx,
                    const int64_t* counts, std::vector<uint8_t>& out) {
  constexpr const char* kFn = "encode_indices";
  check_segments(segs, kFn);
  if (codec == IndexCodec::kLocal16) check_local16(segs, kFn);
  // Validate: counts[s] in [0, len_s]; bucket s's indices strictly ascending inside it.
  int64_t k_total = 0;
  for (int s = 0; s < segs.count; ++s) {
    if (counts[s] < 0 || counts[s] > segs.length(s))
      throw std::invalid_argument(
          cat(kFn, ": counts[", s, "] = ", counts[s], " is outside [0, ", segs.length(s), "]"));
    for (int64_t i = k_total; i < k_total + counts[s]; ++i) {
      if (idx[i] < segs.offsets[s] || idx[i] >= segs.offsets[s + 1])
        throw std::invalid_argument(cat(kFn, ": idx[", i, "] = ", idx[i], " is outside bucket ", s,
                                        " [", segs.offsets[s], ", ", segs.offsets[s + 1], ")"));
      if (i > k_total && idx[i] <= idx[i - 1])
        throw std::invalid_argument(cat(kFn, ": idx[", i, "] = ", idx[i], " does not exceed idx[",
                                        i - 1, "] = ", idx[i - 1], " in bucket ", s,
                                        " (indices must be strictly ascending)"));
    }
    k_total += counts[s];
  }
  switch (codec) {
    case IndexCodec::kRaw32: {
      // The indices are non-negative int32, so their bytes are already the uint32 wire form.
      const size_t at = out.size();
      out.resize(at + 4 * static_cast<size_t>(k_total));
      if (k_total) std::memcpy(out.data() + at, idx, 4 * static_cast<size_t>(k_total));
      return;
    }
    case IndexCodec::kLocal16: {
      const size_t at = out.size();
      out.resize(at + 2 * static_cast<size_t>(k_total));
      int64_t i = 0;
      for (int s = 0; s < segs.count; ++s)
        for (int64_t e = i + counts[s]; i < e; ++i) {
          const uint16_t local = static_cast<uint16_t>(idx[i] - segs.offsets[s]);
          std::memcpy(out.data() + at + 2 * i, &local, 2);
        }
      return;
    }
    case IndexCodec::kBlockPosition: {
      // Per bucket, block b covers local positions [b*B, (b+1)*B): each kept index there is
      // '1' + log2(B) offset bits, then a '0' closes the block.
      const int64_t block = block_position_block(density);
      const int lb = log2_exact(block);
      out.reserve(out.size() + index_bytes(codec, density, segs, k_total));
      BitPacker bits(out);
      int64_t i = 0;
      for (int s = 0; s < segs.count; ++s) {
        const int64_t nblocks = ceil_div(segs.length(s), block);
        int64_t cur = 0;  // block being written
        for (int64_t e = i + counts[s]; i < e; ++i) {
          const int64_t local = idx[i] - segs.offsets[s];
          const int64_t b = local / block;
          bits.put_zeros(b - cur);
          cur = b;
          bits.put(1, 1);
          bits.put(static_cast<uint32_t>(local - b * block), lb);
        }
        bits.put_zeros(nblocks - cur);
      }
      bits.flush();
      return;
    }
  }
  throw std::invalid_argument(cat(kFn, ": unknown index codec ", static_cast<int>(codec)));
}

size_t decode_indices(IndexCodec codec, double density, SegmentView segs, const uint8_t* data,
                      size_t n, std::vector<int32_t>& idx, int64_t* counts) {
  constexpr const char* kFn = "decode_indices";
  check_segments(segs, kFn);
  if (codec == IndexCodec::kLocal16) check_local16(segs, kFn);
  idx.clear();
  if (codec == IndexCodec::kRaw32 || codec == IndexCodec::kLocal16) {
    int64_t k_total = 0;
    for (int s = 0; s < segs.count; ++s) {
      if (counts[s] < 0 || counts[s] > segs.length(s))
        throw std::invalid_argument(
            cat(kFn, ": counts[", s, "] = ", counts[s], " is outside [0, ", segs.length(s), "]"));
      k_total += counts[s];
    }
    const size_t width = codec == IndexCodec::kRaw32 ? 4 : 2;
    const size_t need = width * static_cast<size_t>(k_total);
    if (n < need)
      throw std::runtime_error(cat("decode: ", to_string(codec), " indices truncated: ", k_total,
                                   " indices need ", need, " bytes, got ", n));
    idx.resize(static_cast<size_t>(k_total));
    int64_t i = 0;
    for (int s = 0; s < segs.count; ++s) {
      const int64_t lo = segs.offsets[s], len = segs.length(s);
      for (int64_t e = i + counts[s]; i < e; ++i) {
        int64_t local;
        if (codec == IndexCodec::kRaw32) {
          local = static_cast<int64_t>(load<uint32_t>(data + 4 * i)) - lo;
        } else {
          local = load<uint16_t>(data + 2 * i);
        }
        if (local < 0 || local >= len)
          throw std::runtime_error(cat("decode: ", to_string(codec), " index ", i, " (", local + lo,
                                       " row-local) is outside bucket ", s, " [", lo, ", ",
                                       lo + len, ")"));
        const int32_t j = static_cast<int32_t>(lo + local);
        if (i > e - counts[s] && j <= idx[i - 1])
          throw std::runtime_error(cat("decode: ", to_string(codec), " index ", i, " = ", j,
                                       " does not exceed the previous index ", idx[i - 1],
                                       " in bucket ", s, " (must be strictly ascending)"));
        idx[i] = j;
      }
    }
    return need;
  }
  if (codec != IndexCodec::kBlockPosition)
    throw std::invalid_argument(cat(kFn, ": unknown index codec ", static_cast<int>(codec)));
  const int64_t block = block_position_block(density);
  const int lb = log2_exact(block);
  BitUnpacker bits(data, n, "block-position index");
  for (int s = 0; s < segs.count; ++s) {
    const int64_t lo = segs.offsets[s], len = segs.length(s);
    const int64_t nblocks = ceil_div(len, block);
    counts[s] = 0;
    for (int64_t b = 0; b < nblocks; ++b) {
      int64_t prev = -1;  // previous offset in this block
      while (bits.get(1)) {
        const int64_t off = bits.get(lb);
        const int64_t local = b * block + off;
        if (off <= prev)
          throw std::runtime_error(cat("decode: block-position offset ", off, " in block ", b,
                                       " of bucket ", s, " does not exceed the previous offset ",
                                       prev, " (must be strictly ascending)"));
        if (local >= len)
          throw std::runtime_error(cat("decode: block-position index ", local,
                                       " is outside bucket ", s, " of length ", len));
        prev = off;
        idx.push_back(static_cast<int32_t>(lo + local));
        ++counts[s];
      }
    }
  }
  return bits.finish();
}

namespace {

// The body of encode(): appends the payload of c (already shape-checked) to out.
void encode_row(const CompressorSpec& spec, SegmentView segs, const Compressed& c,
                std::vector<uint8_t>& out) {
  constexpr const char* kFn = "encode";
  out.reserve(out.size() + payload_size(spec, segs));
  const int64_t d = segs.total();
  switch (spec.kind) {
    case CompressorKind::kIdentity:
      append_floats(out, c.val.data(), c.val.size());
      break;
    case CompressorKind::kTopK:
    case CompressorKind::kRandomK:
    case CompressorKind::kFractional: {
      int64_t k_total = 0;
      const std::vector<int64_t> want = sparse_counts(spec, segs, &k_total);
      const std::vector<int64_t> got = count_per_bucket(segs, c.idx.data(), c.idx.size(), kFn);
      for (int s = 0; s < segs.count; ++s)
        if (got[s] != want[s])
          throw std::invalid_argument(cat(kFn, ": ", to_string(spec.kind), " bucket ", s, " holds ",
                                          got[s], " indices, expected topk_count(", segs.length(s),
                                          ", ", spec.density, ") = ", want[s]));
      encode_indices(spec.index_codec, spec.density, segs, c.idx.data(), got.data(), out);
      if (spec.kind != CompressorKind::kFractional) {
        append_floats(out, c.val.data(), c.val.size());
        break;
      }
      // Per kept value: sign bit (1 = negative), then the interval in q-1 bits.
      const int32_t nint = fractional_intervals(spec.bits);
      BitPacker bits(out);
      for (size_t i = 0; i < c.code.size(); ++i) {
        const int32_t code = c.code[i];
        if (code == 0 || code < -nint || code > nint)
          throw std::invalid_argument(cat(kFn, ": fractional code[", i, "] = ", code,
                                          " is not +-(interval + 1) with interval in [0, ", nint,
                                          ")"));
        const uint32_t interval = static_cast<uint32_t>((code < 0 ? -code : code) - 1);
        bits.put((code < 0 ? 1u : 0u) | (interval << 1), spec.bits);
      }
      bits.flush();
      append_floats(out, c.scale.data(), c.scale.size());
      break;
    }
    case CompressorKind::kQsgd: {
      const int32_t s_levels = qsgd_levels(spec.bits);
      append_floats(out, c.scale.data(), c.scale.size());
      BitPacker bits(out);
      for (int s = 0; s < segs.count; ++s) {
        const bool zero_norm = c.scale[s] == 0.0f;
        for (int64_t i = segs.offsets[s]; i < segs.offsets[s + 1]; ++i) {
          const int32_t code = c.code[i];
          if (code < -s_levels || code > s_levels)
            throw std::invalid_argument(cat(kFn, ": qsgd code[", i, "] = ", code, " is outside [-",
                                            s_levels, ", ", s_levels, "]"));
          if (zero_norm && code != 0)
            throw std::invalid_argument(cat(kFn, ": qsgd code[", i, "] = ", code,
                                            " is non-zero in bucket ", s, " whose norm is 0"));
          const uint32_t level = static_cast<uint32_t>(code < 0 ? -code : code);
          bits.put((code < 0 ? 1u : 0u) | (level << 1), spec.bits + 1);
        }
      }
      bits.flush();
      break;
    }
    case CompressorKind::kSign: {
      append_floats(out, c.scale.data(), c.scale.size());
      BitPacker bits(out);
      for (int64_t i = 0; i < d; ++i) {
        if (c.code[i] != 1 && c.code[i] != -1)
          throw std::invalid_argument(
              cat(kFn, ": sign code[", i, "] = ", c.code[i], " is not +1 or -1"));
        bits.put(c.code[i] < 0 ? 1u : 0u, 1);
      }
      bits.flush();
      break;
    }
    case CompressorKind::kMinMax8: {
      append_floats(out, c.scale.data(), c.scale.size());
      for (int64_t i = 0; i < d; ++i) {
        if (c.code[i] < 0 || c.code[i] > 255)
          throw std::invalid_argument(
              cat(kFn, ": minmax8 code[", i, "] = ", c.code[i], " is outside [0, 255]"));
        out.push_back(static_cast<uint8_t>(c.code[i]));
      }
      break;
    }
  }
}

}  // namespace

size_t encoded_size(const CompressorSpec& spec, SegmentView segs, const Compressed& c) {
  validate(spec);
  check_segments(segs, "encoded_size");
  check_shape(spec, segs, c, "encoded_size");
  return payload_size(spec, segs);
}

void encode(const CompressorSpec& spec, SegmentView segs, const Compressed& c,
            std::vector<uint8_t>& out) {
  constexpr const char* kFn = "encode";
  validate(spec);
  check_segments(segs, kFn);
  check_shape(spec, segs, c, kFn);
  const size_t start = out.size();
  try {
    encode_row(spec, segs, c, out);
  } catch (...) {
    out.resize(start);  // a rejected row leaves out as it was
    throw;
  }
  if (out.size() - start != payload_size(spec, segs))
    throw std::logic_error(
        cat(kFn, ": wrote ", out.size() - start, " bytes, expected ", payload_size(spec, segs)));
}

void decode(const CompressorSpec& spec, SegmentView segs, const uint8_t* data, size_t n,
            Compressed& out) {
  constexpr const char* kFn = "decode";
  validate(spec);
  check_segments(segs, kFn);
  const size_t want = payload_size(spec, segs);
  if (n != want)
    throw std::runtime_error(cat(kFn, ": ", to_string(spec.kind), " payload has ", n,
                                 " bytes, expected ", want, " (",
                                 n < want ? "truncated" : "extra bytes", ")"));
  if (n > 0 && data == nullptr) throw std::invalid_argument(cat(kFn, ": data is null"));
  const int64_t d = segs.total();
  const int nseg = segs.count;
  out.kind = spec.kind;
  out.idx.clear();
  out.val.clear();
  out.scale.clear();
  out.code.clear();
  const uint8_t* p = data;
  auto read_floats = [&](std::vector<float>& v, size_t count) {
    v.resize(count);
    if (count) std::memcpy(v.data(), p, 4 * count);
    p += 4 * count;
  };
  switch (spec.kind) {
    case CompressorKind::kIdentity:
      read_floats(out.val, static_cast<size_t>(d));
      for (size_t i = 0; i < out.val.size(); ++i) check_nan(out.val[i], kFn, "identity val", i);
      return;
    case CompressorKind::kTopK:
    case CompressorKind::kRandomK:
    case CompressorKind::kFractional: {
      if (spec.index_codec == IndexCodec::kLocal16) check_local16(segs, kFn);
      int64_t k_total = 0;
      std::vector<int64_t> counts = sparse_counts(spec, segs, &k_total);
      const std::vector<int64_t> expected = counts;
      const size_t idx_bytes = index_bytes(spec.index_codec, spec.density, segs, k_total);
      const size_t used = decode_indices(spec.index_codec, spec.density, segs, p, idx_bytes,
                                         out.idx, counts.data());
      if (used != idx_bytes)
        throw std::runtime_error(cat(kFn, ": ", to_string(spec.index_codec), " indices use ", used,
                                     " bytes, expected ", idx_bytes, " for ", k_total, " indices"));
      for (int s = 0; s < nseg; ++s)
        if (counts[s] != expected[s])
          throw std::runtime_error(cat(kFn, ": ", to_string(spec.kind), " bucket ", s, " holds ",
                                       counts[s], " indices, expected topk_count(", segs.length(s),
                                       ", ", spec.density, ") = ", expected[s]));
      p += used;
      if (spec.kind != CompressorKind::kFractional) {
        read_floats(out.val, static_cast<size_t>(k_total));
        for (size_t i = 0; i < out.val.size(); ++i) check_nan(out.val[i], kFn, "val", i);
        return;
      }
      const int32_t nint = fractional_intervals(spec.bits);
      const size_t bit_bytes = static_cast<size_t>(ceil_div(k_total * spec.bits, 8));
      BitUnpacker bits(p, bit_bytes, "fractional value");
      out.code.resize(static_cast<size_t>(k_total));
      for (int64_t i = 0; i < k_total; ++i) {
        const uint32_t w = bits.get(spec.bits);
        const int32_t mag = static_cast<int32_t>(w >> 1) + 1;
        out.code[i] = static_cast<int16_t>((w & 1u) ? -mag : mag);
      }
      bits.finish();
      p += bit_bytes;
      read_floats(out.scale, static_cast<size_t>(nseg) * nint);
      out.val.resize(static_cast<size_t>(k_total));
      int64_t i = 0;
      for (int s = 0; s < nseg; ++s) {
        const float* means = out.scale.data() + static_cast<size_t>(s) * nint;
        for (int64_t e = i + counts[s]; i < e; ++i) {
          const int32_t interval = (out.code[i] < 0 ? -out.code[i] : out.code[i]) - 1;
          const float m = means[interval];
          if (!(m >= 0.0f) || std::isinf(m))
            throw std::runtime_error(cat(kFn, ": fractional mean ", interval, " of bucket ", s,
                                         " is ", m, ", expected a finite non-negative number"));
          out.val[i] = dequant_fractional(means, out.code[i]);
        }
      }
      return;
    }
    case CompressorKind::kQsgd: {
      const int32_t s_levels = qsgd_levels(spec.bits);
      read_floats(out.scale, static_cast<size_t>(nseg));
      BitUnpacker bits(p, n - (p - data), "qsgd level");
      out.code.resize(static_cast<size_t>(d));
      out.val.resize(static_cast<size_t>(d));
      for (int s = 0; s < nseg; ++s) {
        const float norm = out.scale[s];
        // The compressor keeps norm * s finite (compress.cpp); an infinite norm would decode
        // level 0 to inf * 0 = NaN.
        if (segs.length(s) > 0 &&
            (!(norm >= 0.0f) || std::isinf(norm * static_cast<float>(s_levels))))
          throw std::runtime_error(cat(kFn, ": qsgd norm of bucket ", s, " is ", norm,
                                       ", expected a non-negative number with norm * ", s_levels,
                                       " finite in fp32"));
        for (int64_t i = segs.offsets[s]; i < segs.offsets[s + 1]; ++i) {
          const uint32_t w = bits.get(spec.bits + 1);
          const int32_t level = static_cast<int32_t>(w >> 1);
          if (level > s_levels)
            throw std::runtime_error(
                cat(kFn, ": qsgd level ", level, " at element ", i, " exceeds s = ", s_levels));
          if ((w & 1u) && level == 0)
            throw std::runtime_error(
                cat(kFn, ": qsgd element ", i, " has level 0 with the sign bit set (bad level)"));
          if (level != 0 && norm == 0.0f)
            throw std::runtime_error(cat(kFn, ": qsgd element ", i, " has level ", level,
                                         " in bucket ", s, " whose norm is 0 (bad level)"));
          const int32_t code = (w & 1u) ? -level : level;
          out.code[i] = static_cast<int16_t>(code);
          out.val[i] = dequant_qsgd(norm, code, s_levels);
        }
      }
      bits.finish();
      return;
    }
    case CompressorKind::kSign: {
      read_floats(out.scale, static_cast<size_t>(nseg));
      BitUnpacker bits(p, n - (p - data), "sign");
      out.code.resize(static_cast<size_t>(d));
      out.val.resize(static_cast<size_t>(d));
      for (int s = 0; s < nseg; ++s) {
        const float scale = out.scale[s];
        if (segs.length(s) > 0 && (!(scale >= 0.0f) || std::isinf(scale)))
          throw std::runtime_error(cat(kFn, ": sign scale of bucket ", s, " is ", scale,
                                       ", expected a finite non-negative number"));
        for (int64_t i = segs.offsets[s]; i < segs.offsets[s + 1]; ++i) {
          const int32_t code = bits.get(1) ? -1 : 1;
          out.code[i] = static_cast<int16_t>(code);
          out.val[i] = dequant_sign(scale, code);
        }
      }
      bits.finish();
      return;
    }
    case CompressorKind::kMinMax8: {
      read_floats(out.scale, 2 * static_cast<size_t>(nseg));
      out.code.resize(static_cast<size_t>(d));
      out.val.resize(static_cast<size_t>(d));
      for (int s = 0; s < nseg; ++s) {
        const float lo = out.scale[2 * s], hi = out.scale[2 * s + 1];
        const float scale = minmax8_scale(lo, hi);
        if (segs.length(s) > 0 && !(lo <= hi))
          throw std::runtime_error(cat(kFn, ": minmax8 bucket ", s, " has lo = ", lo, ", hi = ", hi,
                                       ", expected lo <= hi"));
        // The compressor keeps lo, hi and (hi - lo) / 255 finite (compress.cpp); an infinite
        // step would decode code 0 to lo + inf * 0 = NaN.
        if (segs.length(s) > 0 && !std::isfinite(scale))
          throw std::runtime_error(cat(kFn, ": minmax8 bucket ", s, " has lo = ", lo, ", hi = ", hi,
                                       ", expected finite bounds with (hi - lo) / 255 finite"));
        for (int64_t i = segs.offsets[s]; i < segs.offsets[s + 1]; ++i) {
          out.code[i] = p[i];
          out.val[i] = dequant_minmax8(lo, scale, p[i]);
        }
      }
      return;
    }
  }
  throw std::invalid_argument(cat(kFn, ": unknown compressor kind ", static_cast<int>(spec.kind)));
}

}  // namespace spush::kernels
