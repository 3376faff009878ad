// Helpers shared by the libFuzzer harnesses of this folder: reading typed fields off the front
// of an input, failing on a broken invariant (libFuzzer records the input as a crash), and the
// compressor spec + segment table that the two codec harnesses build from a few bytes.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "spush/kernels/compress.h"
#include "spush/kernels/segments.h"

namespace spush::fuzz {

// Fixed-size fields first (zero once the input is used up), then the rest as a payload.
class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  template <typename T>
  T take() {
    T v{};
    const size_t n = std::min(sizeof(T), left());
    if (n) std::memcpy(&v, data_ + pos_, n);
    pos_ += n;
    return v;
  }
  uint8_t byte() { return take<uint8_t>(); }
  std::span<const uint8_t> take_bytes(size_t n) {
    n = std::min(n, left());
    std::span<const uint8_t> s(data_ + pos_, n);
    pos_ += n;
    return s;
  }
  std::span<const uint8_t> rest() { return take_bytes(left()); }
  size_t left() const { return size_ - pos_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// An invariant of the code under test does not hold: print it and abort.
#define FUZZ_CHECK(cond, what)                                                                \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "%s:%d: invariant violated: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   std::string(what).c_str());                                                \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

// A compressor spec and a segment table of 0..4 buckets from 5 + nseg bytes. Mostly valid specs
// (so that decoding is reached), a few invalid ones (validate()'s errors); bucket lengths up to
// 247, or multiples of 20000 (beyond local16's 65536 limit).
struct CodecCase {
  kernels::CompressorSpec spec;
  std::vector<int64_t> offsets{0};
  kernels::SegmentView segs() const {
    return {offsets.data(), static_cast<int>(offsets.size()) - 1};
  }
};

inline CodecCase read_codec_case(FuzzInput& in) {
  using kernels::CompressorKind;
  CodecCase c;
  const uint8_t kind = in.byte(), codec = in.byte(), bits = in.byte(), dens = in.byte();
  const uint8_t nseg = in.byte();
  c.spec.kind = static_cast<CompressorKind>(kind % 7);
  c.spec.index_codec = static_cast<kernels::IndexCodec>(codec % 3);
  static constexpr int kQsgdBits[] = {1, 2, 4, 8};
  if (bits >= 240) {
    c.spec.bits = static_cast<int>(bits) - 245;  // -5..10, mostly invalid
  } else {
    c.spec.bits = c.spec.kind == CompressorKind::kQsgd ? kQsgdBits[bits % 4] : 2 + bits % 8;
  }
  static constexpr double kDensity[] = {1.0, 0.5,   0.25, 0.125, 0.1, 0.07, 0.01, 1.0 / 64,
                                        0.3, 0.999, 1e-6, 1e-12, 0.0, -0.5, 1.5,  NAN};
  c.spec.density = dens < 16 ? kDensity[dens] : (dens - 15) / 241.0;
  for (int s = 0; s < nseg % 5; ++s) {
    const uint8_t b = in.byte();
    const int64_t len = b < 248 ? b : int64_t{b - 247} * 20000;
    c.offsets.push_back(c.offsets.back() + len);
  }
  return c;
}

}  // namespace spush::fuzz
