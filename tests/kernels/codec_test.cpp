// Wire codec tests (codec.h, bitstream.h): every compressor kind x index codec round-trips
// random rows bit for bit, payload sizes equal the analytic formulas, the block position code
// of [MV, Sec. 4.3.1] (docs/ALGORITHMS.md §2.5) matches a reference built with BitWriter and
// costs ~log2(1/rho) + 2 bits per index, and malformed payloads (truncated, extra bytes, bad
// indices, counts or levels) throw errors that name the problem. Compressed rows are built by
// hand, not by the compressor.
#include "spush/kernels/codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "spush/kernels/bitstream.h"

namespace spush::kernels {
namespace {

struct Segs {
  std::vector<int64_t> off{0};
  explicit Segs(const std::vector<int64_t>& lens) {
    for (int64_t l : lens) off.push_back(off.back() + l);
  }
  SegmentView view() const { return SegmentView{off.data(), static_cast<int>(off.size()) - 1}; }
  int count() const { return static_cast<int>(off.size()) - 1; }
  int64_t len(int s) const { return off[s + 1] - off[s]; }
  int64_t total() const { return off.back(); }
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Block length of the block position code, independently: smallest power of two >= 1/rho.
int64_t ref_block(double rho) {
  int64_t b = 1;
  while (static_cast<double>(b) * rho < 1.0 - 1e-9) b *= 2;
  return b;
}
int ref_log2(int64_t b) {
  int l = 0;
  while ((int64_t{1} << l) < b) ++l;
  return l;
}

// K sorted distinct values from [0, len) (Floyd's sampling).
std::vector<int64_t> sample_sorted(int64_t len, int64_t k, std::mt19937_64& rng) {
  std::vector<int64_t> picked;
  std::vector<char> in(static_cast<size_t>(len), 0);
  for (int64_t j = len - k; j < len; ++j) {
    const int64_t t = std::uniform_int_distribution<int64_t>(0, j)(rng);
    const int64_t v = in[t] ? j : t;
    in[v] = 1;
    picked.push_back(v);
  }
  std::sort(picked.begin(), picked.end());
  return picked;
}

std::vector<uint32_t> bits_of(const std::vector<float>& v) {
  std::vector<uint32_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = std::bit_cast<uint32_t>(v[i]);
  return b;
}

template <typename E>
void expect_throw_with(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an exception mentioning '" << needle << "', none was thrown";
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' does not mention '" << needle << "'";
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type, message: " << e.what();
  }
}

// A hand-built Compressed row of the given kind, with values following the dequantization
// formulas of docs/ALGORITHMS.md §2.2 (written out here, independently of the library's
// dequant.h).
Compressed make_compressed(const CompressorSpec& spec, const Segs& segs, std::mt19937_64& rng) {
  Compressed c;
  c.kind = spec.kind;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> coin(0, 1);
  const int64_t d = segs.total();
  switch (spec.kind) {
    case CompressorKind::kIdentity:
      for (int64_t i = 0; i < d; ++i) c.val.push_back(normal(rng));
      break;
    case CompressorKind::kTopK:
    case CompressorKind::kRandomK:
    case CompressorKind::kFractional: {
      const int L = 1 << (spec.bits - 1);
      if (spec.kind == CompressorKind::kFractional) {
        for (int s = 0; s < segs.count(); ++s)
          for (int j = 0; j < L; ++j) c.scale.push_back(coin(rng) ? std::fabs(normal(rng)) : 0.0f);
      }
      for (int s = 0; s < segs.count(); ++s) {
        const int64_t k = topk_count(segs.len(s), spec.density);
        for (int64_t local : sample_sorted(segs.len(s), k, rng)) {
          c.idx.push_back(static_cast<int32_t>(segs.off[s] + local));
          if (spec.kind == CompressorKind::kFractional) {
            const int interval = std::uniform_int_distribution<int>(0, L - 1)(rng);
            const bool neg = coin(rng);
            c.code.push_back(static_cast<int16_t>(neg ? -(interval + 1) : interval + 1));
            const float m = c.scale[static_cast<size_t>(s) * L + interval];
            c.val.push_back(neg ? -m : m);
          } else {
            c.val.push_back(normal(rng));
          }
        }
      }
      break;
    }
    case CompressorKind::kQsgd: {
      const int levels = (1 << spec.bits) - 1;
      for (int s = 0; s < segs.count(); ++s) {
        const float norm = s % 3 == 2 ? 0.0f : 1.0f + std::fabs(normal(rng));
        c.scale.push_back(norm);
        for (int64_t i = segs.off[s]; i < segs.off[s + 1]; ++i) {
          const int level = norm == 0.0f ? 0 : std::uniform_int_distribution<int>(0, levels)(rng);
          const bool neg = level != 0 && coin(rng);
          const float t = norm * static_cast<float>(level) / static_cast<float>(levels);
          c.code.push_back(static_cast<int16_t>(neg ? -level : level));
          c.val.push_back(neg ? -t : t);
        }
      }
      break;
    }
    case CompressorKind::kSign:
      for (int s = 0; s < segs.count(); ++s) {
        const float scale = std::fabs(normal(rng));
        c.scale.push_back(scale);
        for (int64_t i = segs.off[s]; i < segs.off[s + 1]; ++i) {
          const bool neg = coin(rng);
          c.code.push_back(neg ? -1 : 1);
          c.val.push_back(neg ? -scale : scale);
        }
      }
      break;
    case CompressorKind::kMinMax8:
      for (int s = 0; s < segs.count(); ++s) {
        float lo = normal(rng), hi = normal(rng);
        if (lo > hi) std::swap(lo, hi);
        if (s % 4 == 3) hi = lo;  // constant bucket: scale 0
        c.scale.push_back(lo);
        c.scale.push_back(hi);
        const float scale = (hi - lo) / 255.0f;
        for (int64_t i = segs.off[s]; i < segs.off[s + 1]; ++i) {
          const int code = std::uniform_int_distribution<int>(0, 255)(rng);
          c.code.push_back(static_cast<int16_t>(code));
          c.val.push_back(lo + scale * static_cast<float>(code));
        }
      }
      break;
  }
  return c;
}

int64_t kept(const CompressorSpec& spec, const Segs& segs) {
  int64_t k = 0;
  for (int s = 0; s < segs.count(); ++s) k += topk_count(segs.len(s), spec.density);
  return k;
}

// Payload bytes from the formulas of codec.h.
size_t analytic_size(const CompressorSpec& spec, const Segs& segs) {
  const int64_t d = segs.total(), nseg = segs.count();
  auto index_bytes = [&](int64_t k) -> int64_t {
    switch (spec.index_codec) {
      case IndexCodec::kRaw32:
        return 4 * k;
      case IndexCodec::kLocal16:
        return 2 * k;
      case IndexCodec::kBlockPosition: {
        const int64_t b = ref_block(spec.density);
        int64_t bits = k * (1 + ref_log2(b));
        for (int s = 0; s < segs.count(); ++s) bits += ceil_div(segs.len(s), b);
        return ceil_div(bits, 8);
      }
    }
    return -1;
  };
  switch (spec.kind) {
    case CompressorKind::kIdentity:
      return 4 * d;
    case CompressorKind::kTopK:
    case CompressorKind::kRandomK:
      return index_bytes(kept(spec, segs)) + 4 * kept(spec, segs);
    case CompressorKind::kFractional:
      return index_bytes(kept(spec, segs)) + ceil_div(kept(spec, segs) * spec.bits, 8) +
             4 * nseg * (int64_t{1} << (spec.bits - 1));
    case CompressorKind::kQsgd:
      return 4 * nseg + ceil_div(d * (spec.bits + 1), 8);
    case CompressorKind::kSign:
      return 4 * nseg + ceil_div(d, 8);
    case CompressorKind::kMinMax8:
      return 8 * nseg + d;
  }
  return 0;
}

// Bitwise comparison of two float vectors, reporting the first difference.
void expect_bits_equal(const char* field, const std::vector<float>& want,
                       const std::vector<float>& got) {
  ASSERT_EQ(want.size(), got.size()) << field;
  const std::vector<uint32_t> a = bits_of(want), b = bits_of(got);
  const auto diff = std::mismatch(a.begin(), a.end(), b.begin());
  if (diff.first != a.end()) {
    const size_t i = static_cast<size_t>(diff.first - a.begin());
    ADD_FAILURE() << field << "[" << i << "]: sent " << want[i] << " (0x" << std::hex << a[i]
                  << "), decoded " << got[i] << " (0x" << b[i] << std::dec << ")";
  }
}

void expect_same(const Compressed& a, const Compressed& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.idx, b.idx);
  expect_bits_equal("val", a.val, b.val);
  expect_bits_equal("scale", a.scale, b.scale);
  EXPECT_EQ(a.code, b.code);
}

// Encodes c after a 3-byte prefix, checks sizes, decodes into a dirty Compressed, compares.
void round_trip(const CompressorSpec& spec, const Segs& segs, const Compressed& c) {
  const std::vector<uint8_t> prefix{0xAB, 0xCD, 0xEF};
  std::vector<uint8_t> out = prefix;
  encode(spec, segs.view(), c, out);
  ASSERT_TRUE(std::equal(prefix.begin(), prefix.end(), out.begin())) << "encode overwrote";
  const size_t n = out.size() - prefix.size();
  EXPECT_EQ(n, encoded_size(spec, segs.view(), c));
  EXPECT_EQ(n, analytic_size(spec, segs));
  Compressed back;
  back.kind = CompressorKind::kSign;
  back.idx = {5, 6};
  back.val = {1.0f};
  back.scale = {2.0f, 3.0f};
  back.code = {7};
  decode(spec, segs.view(), out.data() + prefix.size(), n, back);
  expect_same(c, back);
}

const std::vector<std::vector<int64_t>> kTables = {
    {1000}, {0, 1, 7, 300, 4096, 0, 17}, {65536, 3}, {}, {0}, {1}, {2, 2, 2}, {129, 127, 128}};

TEST(Codec, RoundTripEveryKindAndIndexCodec) {
  const uint64_t seed = 20240611;
  std::mt19937_64 rng(seed);
  const CompressorKind sparse[] = {CompressorKind::kTopK, CompressorKind::kRandomK,
                                   CompressorKind::kFractional};
  const IndexCodec codecs[] = {IndexCodec::kRaw32, IndexCodec::kLocal16,
                               IndexCodec::kBlockPosition};
  int cases = 0;
  for (const auto& lens : kTables) {
    const Segs segs(lens);
    for (CompressorKind kind : sparse)
      for (IndexCodec codec : codecs)
        for (double rho : {1.0, 0.5, 0.3, 0.1, 0.01, 0.003}) {
          CompressorSpec spec;
          spec.kind = kind;
          spec.index_codec = codec;
          spec.density = rho;
          spec.bits = 2 + cases % 8;  // fractional: 2..9
          SCOPED_TRACE(testing::Message() << "seed " << seed << " kind " << to_string(kind)
                                          << " codec " << to_string(codec) << " rho " << rho
                                          << " bits " << spec.bits << " table " << cases);
          round_trip(spec, segs, make_compressed(spec, segs, rng));
          ++cases;
        }
    for (int bits : {1, 2, 4, 8}) {
      CompressorSpec spec;
      spec.kind = CompressorKind::kQsgd;
      spec.bits = bits;
      SCOPED_TRACE(testing::Message() << "seed " << seed << " qsgd bits " << bits);
      round_trip(spec, segs, make_compressed(spec, segs, rng));
    }
    for (CompressorKind kind :
         {CompressorKind::kSign, CompressorKind::kMinMax8, CompressorKind::kIdentity}) {
      CompressorSpec spec;
      spec.kind = kind;
      SCOPED_TRACE(testing::Message() << "seed " << seed << " kind " << to_string(kind));
      round_trip(spec, segs, make_compressed(spec, segs, rng));
    }
  }
}

TEST(Codec, AnalyticSizesOfTheHeaderComment) {
  const Segs segs({1000, 500, 24});  // d = 1524, 3 buckets
  std::mt19937_64 rng(7);
  CompressorSpec spec;
  spec.density = 0.01;  // K = 10 + 5 + 1 = 16
  spec.kind = CompressorKind::kTopK;
  spec.index_codec = IndexCodec::kLocal16;
  Compressed c = make_compressed(spec, segs, rng);
  EXPECT_EQ(encoded_size(spec, segs.view(), c), 6u * 16);
  spec.index_codec = IndexCodec::kRaw32;
  EXPECT_EQ(encoded_size(spec, segs.view(), c), 8u * 16);
  // block: B = 128, 8 bits per index, blocks 8 + 4 + 1 -> ceil((128 + 13) / 8) = 18 bytes.
  spec.index_codec = IndexCodec::kBlockPosition;
  EXPECT_EQ(encoded_size(spec, segs.view(), c), 18u + 4 * 16);
  spec.kind = CompressorKind::kQsgd;
  spec.bits = 4;
  c = make_compressed(spec, segs, rng);
  EXPECT_EQ(encoded_size(spec, segs.view(), c), 4u * 3 + (1524 * 5 + 7) / 8);
  spec.kind = CompressorKind::kSign;
  c = make_compressed(spec, segs, rng);
  EXPECT_EQ(encoded_size(spec, segs.view(), c), 4u * 3 + (1524 + 7) / 8);
  spec.kind = CompressorKind::kMinMax8;
  c = make_compressed(spec, segs, rng);
  EXPECT_EQ(encoded_size(spec, segs.view(), c), 8u * 3 + 1524);
  spec.kind = CompressorKind::kIdentity;
  c = make_compressed(spec, segs, rng);
  EXPECT_EQ(encoded_size(spec, segs.view(), c), 4u * 1524);
}

TEST(Codec, BlockLength) {
  EXPECT_EQ(block_position_block(1.0), 1);
  EXPECT_EQ(block_position_block(0.5), 2);
  EXPECT_EQ(block_position_block(0.3), 4);
  EXPECT_EQ(block_position_block(0.25), 4);
  EXPECT_EQ(block_position_block(0.1), 16);
  EXPECT_EQ(block_position_block(1.0 / 64), 64);
  EXPECT_EQ(block_position_block(0.01), 128);
  EXPECT_EQ(block_position_block(0.001), 1024);
  EXPECT_EQ(block_position_block(1.0 / 3), 4);
  EXPECT_THROW(block_position_block(0.0), std::invalid_argument);
  EXPECT_THROW(block_position_block(1.5), std::invalid_argument);
  EXPECT_THROW(block_position_block(std::nan("")), std::invalid_argument);
}

// Reference block position encoder: BitWriter, one bit at a time, as [MV, Sec. 4.3.1]
// describes.
std::vector<uint8_t> ref_block_encode(int64_t block, const Segs& segs,
                                      const std::vector<int32_t>& idx,
                                      const std::vector<int64_t>& counts) {
  std::vector<uint8_t> out;
  BitWriter w(out);
  const int lb = ref_log2(block);
  size_t i = 0;
  for (int s = 0; s < segs.count(); ++s) {
    const size_t end = i + static_cast<size_t>(counts[s]);
    for (int64_t b = 0; b * block < segs.len(s); ++b) {
      for (; i < end && idx[i] - segs.off[s] < (b + 1) * block; ++i) {
        w.put(1, 1);
        w.put(static_cast<uint32_t>(idx[i] - segs.off[s] - b * block), lb);
      }
      w.put(0, 1);
    }
  }
  return out;
}

TEST(IndexCodecs, RoundTripAndReferenceBitStream) {
  const uint64_t seed = 99;
  std::mt19937_64 rng(seed);
  for (const auto& lens : kTables) {
    const Segs segs(lens);
    for (int trial = 0; trial < 4; ++trial) {
      // Random counts per bucket, including 0 and the full bucket; trial 3 keeps bucket edges.
      std::vector<int64_t> counts;
      std::vector<int32_t> idx;
      for (int s = 0; s < segs.count(); ++s) {
        const int64_t len = segs.len(s);
        int64_t k = std::uniform_int_distribution<int64_t>(0, len)(rng);
        if (trial == 1) k = len;
        if (trial == 2) k = std::min<int64_t>(len, 1);
        std::vector<int64_t> pick = sample_sorted(len, k, rng);
        if (trial == 3 && len > 0)
          pick = len > 1 ? std::vector<int64_t>{0, len - 1} : std::vector<int64_t>{0};
        counts.push_back(static_cast<int64_t>(pick.size()));
        for (int64_t p : pick) idx.push_back(static_cast<int32_t>(segs.off[s] + p));
      }
      for (IndexCodec codec :
           {IndexCodec::kRaw32, IndexCodec::kLocal16, IndexCodec::kBlockPosition}) {
        for (double rho : {1.0, 0.1, 0.01}) {
          SCOPED_TRACE(testing::Message() << "seed " << seed << " codec " << to_string(codec)
                                          << " rho " << rho << " trial " << trial);
          std::vector<uint8_t> out;
          encode_indices(codec, rho, segs.view(), idx.data(), counts.data(), out);
          if (codec == IndexCodec::kBlockPosition) {
            EXPECT_EQ(out, ref_block_encode(ref_block(rho), segs, idx, counts));
          } else {
            EXPECT_EQ(out.size(), idx.size() * (codec == IndexCodec::kRaw32 ? 4 : 2));
          }
          std::vector<int32_t> back{42};
          std::vector<int64_t> back_counts = codec == IndexCodec::kBlockPosition
                                                 ? std::vector<int64_t>(counts.size(), -1)
                                                 : counts;
          const size_t used = decode_indices(codec, rho, segs.view(), out.data(), out.size(), back,
                                             back_counts.data());
          EXPECT_EQ(used, out.size());
          EXPECT_EQ(back, idx);
          EXPECT_EQ(back_counts, counts);
        }
      }
    }
  }
}

TEST(IndexCodecs, Local16BucketLimit) {
  // 65536 positions fit (local index 65535 at the boundary); 65537 are rejected.
  const Segs ok({3, 65536, 2});
  std::vector<int32_t> idx{2, 3, 3 + 65535, 65539};
  std::vector<int64_t> counts{1, 2, 1};
  std::vector<uint8_t> out;
  encode_indices(IndexCodec::kLocal16, 0.5, ok.view(), idx.data(), counts.data(), out);
  const std::vector<uint8_t> want{2, 0, 0, 0, 0xFF, 0xFF, 0, 0};
  EXPECT_EQ(out, want);
  std::vector<int32_t> back;
  EXPECT_EQ(decode_indices(IndexCodec::kLocal16, 0.5, ok.view(), out.data(), out.size(), back,
                           counts.data()),
            8u);
  EXPECT_EQ(back, idx);

  const Segs bad({65537});
  std::vector<int32_t> one{65536};
  std::vector<int64_t> c1{1};
  out.clear();
  expect_throw_with<std::invalid_argument>(
      [&] { encode_indices(IndexCodec::kLocal16, 0.5, bad.view(), one.data(), c1.data(), out); },
      "65537");
  const std::vector<uint8_t> two{0, 0};
  expect_throw_with<std::invalid_argument>(
      [&] {
        decode_indices(IndexCodec::kLocal16, 0.5, bad.view(), two.data(), 2, back, c1.data());
      },
      "65536");
  CompressorSpec spec;
  spec.kind = CompressorKind::kTopK;
  spec.index_codec = IndexCodec::kLocal16;
  spec.density = 1.0 / 65537;
  Compressed c;
  c.kind = spec.kind;
  c.idx = {65536};
  c.val = {1.0f};
  expect_throw_with<std::invalid_argument>([&] { encode(spec, bad.view(), c, out); }, "local16");
  // raw32 and block have no such limit.
  for (IndexCodec codec : {IndexCodec::kRaw32, IndexCodec::kBlockPosition}) {
    spec.index_codec = codec;
    round_trip(spec, bad, c);
  }
}

TEST(IndexCodecs, BlockPositionCostPerIndex) {
  const uint64_t seed = 31337;
  std::mt19937_64 rng(seed);
  const int64_t len = int64_t{1} << 20;
  const Segs segs({len});
  for (double rho : {0.1, 0.01, 0.001}) {
    const int64_t k = static_cast<int64_t>(std::llround(rho * static_cast<double>(len)));
    std::vector<int32_t> idx;
    for (int64_t p : sample_sorted(len, k, rng)) idx.push_back(static_cast<int32_t>(p));
    std::vector<int64_t> counts{k};
    std::vector<uint8_t> out;
    encode_indices(IndexCodec::kBlockPosition, rho, segs.view(), idx.data(), counts.data(), out);
    const double per_index = 8.0 * static_cast<double>(out.size()) / static_cast<double>(k);
    const double lg = std::log2(1.0 / rho);
    SCOPED_TRACE(testing::Message()
                 << "seed " << seed << " rho " << rho << " bits/index " << per_index);
    EXPECT_GE(per_index, lg + 1.0);
    EXPECT_LE(per_index, lg + 2.5);
    const int64_t b = ref_block(rho);
    EXPECT_EQ(static_cast<int64_t>(out.size()), ceil_div(k * (1 + ref_log2(b)) + len / b, 8));
    std::vector<int32_t> back;
    std::vector<int64_t> back_counts{0};
    decode_indices(IndexCodec::kBlockPosition, rho, segs.view(), out.data(), out.size(), back,
                   back_counts.data());
    EXPECT_EQ(back, idx);
  }
}

TEST(BitStream, WriterReaderRoundTrip) {
  const uint64_t seed = 5;
  std::mt19937_64 rng(seed);
  std::vector<std::pair<uint32_t, int>> items;
  size_t total = 0;
  for (int i = 0; i < 5000; ++i) {
    const int nbits = std::uniform_int_distribution<int>(0, 32)(rng);
    uint32_t v = static_cast<uint32_t>(rng());
    if (nbits < 32) v &= (1u << nbits) - 1;
    items.emplace_back(v, nbits);
    total += static_cast<size_t>(nbits);
  }
  std::vector<uint8_t> buf;
  BitWriter w(buf);
  for (auto [v, nb] : items) w.put(v, nb);
  EXPECT_EQ(w.bits(), total);
  EXPECT_EQ(buf.size(), (total + 7) / 8);
  BitReader r(buf.data(), buf.size());
  for (auto [v, nb] : items) ASSERT_EQ(r.get(nb), v) << "seed " << seed;
  EXPECT_EQ(r.position(), total);
  // Layout: bit i is bit i % 8 of byte i / 8.
  std::vector<uint8_t> small;
  BitWriter ws(small);
  ws.put(1, 1);
  ws.put(0, 2);
  ws.put(0b101, 3);
  ws.put(0xB, 4);
  const std::vector<uint8_t> want{0b11101001, 0b10};
  EXPECT_EQ(small, want);
  BitReader rs(small.data(), small.size());
  rs.get(10);
  EXPECT_THROW(rs.get(7), std::runtime_error);
}

// ---- malformed payloads -------------------------------------------------------------------

CompressorSpec sparse_spec(CompressorKind kind, IndexCodec codec, double rho) {
  CompressorSpec spec;
  spec.kind = kind;
  spec.index_codec = codec;
  spec.density = rho;
  spec.bits = 3;
  return spec;
}

std::vector<uint8_t> encoded(const CompressorSpec& spec, const Segs& segs, const Compressed& c) {
  std::vector<uint8_t> out;
  encode(spec, segs.view(), c, out);
  return out;
}

void expect_decode_error(const CompressorSpec& spec, const Segs& segs,
                         const std::vector<uint8_t>& bytes, const std::string& needle) {
  Compressed out;
  expect_throw_with<std::runtime_error>(
      [&] { decode(spec, segs.view(), bytes.data(), bytes.size(), out); }, needle);
}

TEST(CodecErrors, TruncatedAndExtraBytes) {
  std::mt19937_64 rng(11);
  const Segs segs({100, 37});
  const CompressorSpec specs[] = {
      sparse_spec(CompressorKind::kTopK, IndexCodec::kRaw32, 0.1),
      sparse_spec(CompressorKind::kRandomK, IndexCodec::kLocal16, 0.1),
      sparse_spec(CompressorKind::kFractional, IndexCodec::kBlockPosition, 0.1),
      [] {
        CompressorSpec s;
        s.kind = CompressorKind::kQsgd;
        s.bits = 2;
        return s;
      }(),
      [] {
        CompressorSpec s;
        s.kind = CompressorKind::kSign;
        return s;
      }(),
      [] {
        CompressorSpec s;
        s.kind = CompressorKind::kMinMax8;
        return s;
      }(),
      [] {
        CompressorSpec s;
        s.kind = CompressorKind::kIdentity;
        return s;
      }()};
  for (const CompressorSpec& spec : specs) {
    SCOPED_TRACE(to_string(spec.kind));
    std::vector<uint8_t> bytes = encoded(spec, segs, make_compressed(spec, segs, rng));
    std::vector<uint8_t> shorter(bytes.begin(), bytes.end() - 1);
    expect_decode_error(spec, segs, shorter, "truncated");
    std::vector<uint8_t> longer = bytes;
    longer.push_back(0);
    expect_decode_error(spec, segs, longer, "extra bytes");
    expect_decode_error(spec, segs, {}, "expected " + std::to_string(bytes.size()));
  }
}

// Writes a uint32 / uint16 at byte offset at.
void poke32(std::vector<uint8_t>& b, size_t at, uint32_t v) { std::memcpy(b.data() + at, &v, 4); }
void poke16(std::vector<uint8_t>& b, size_t at, uint16_t v) { std::memcpy(b.data() + at, &v, 2); }

TEST(CodecErrors, BadIndicesRaw32AndLocal16) {
  const Segs segs({10, 20});
  // density 0.2: K = 2 + 4.
  Compressed c;
  c.kind = CompressorKind::kTopK;
  c.idx = {0, 9, 10, 11, 20, 29};
  c.val = {1, 2, 3, 4, 5, 6};
  for (IndexCodec codec : {IndexCodec::kRaw32, IndexCodec::kLocal16}) {
    SCOPED_TRACE(to_string(codec));
    const CompressorSpec spec = sparse_spec(CompressorKind::kTopK, codec, 0.2);
    const std::vector<uint8_t> good = encoded(spec, segs, c);
    Compressed back;
    decode(spec, segs.view(), good.data(), good.size(), back);
    EXPECT_EQ(back.idx, c.idx);
    auto set = [&](std::vector<uint8_t>& b, size_t i, uint32_t v) {
      if (codec == IndexCodec::kRaw32)
        poke32(b, 4 * i, v);
      else
        poke16(b, 2 * i, static_cast<uint16_t>(v));
    };
    std::vector<uint8_t> b = good;
    set(b, 1, codec == IndexCodec::kRaw32 ? 10 : 10);  // bucket 0 holds [0, 10)
    expect_decode_error(spec, segs, b, "outside bucket 0");
    b = good;
    set(b, 5, codec == IndexCodec::kRaw32 ? 30 : 20);  // past the row / bucket 1
    expect_decode_error(spec, segs, b, "outside bucket 1");
    b = good;
    set(b, 3, codec == IndexCodec::kRaw32 ? 10 : 0);  // duplicate of the previous index
    expect_decode_error(spec, segs, b, "ascending");
    b = good;
    set(b, 0, codec == IndexCodec::kRaw32 ? 9 : 9);  // 9 then 9
    expect_decode_error(spec, segs, b, "ascending");
    if (codec == IndexCodec::kRaw32) {
      b = good;
      set(b, 2, 0xFFFFFFFFu);
      expect_decode_error(spec, segs, b, "outside bucket 1");
    }
    // NaN value.
    b = good;
    const size_t at = good.size() - 4 * 6 + 4 * 2;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(b.data() + at, &nan, 4);
    expect_decode_error(spec, segs, b, "NaN");
  }
}

TEST(CodecErrors, BadBlockPositionStreams) {
  // Bucket of 18 at density 0.25: B = 4, 2 offset bits, 5 blocks (the last holds 16, 17);
  // K = ceil(4.5) = 5, so indices take ceil((5 * 3 + 5) / 8) = 3 bytes, then 20 value bytes.
  const Segs segs({18});
  const CompressorSpec spec = sparse_spec(CompressorKind::kTopK, IndexCodec::kBlockPosition, 0.25);
  auto stream = [](const std::vector<std::pair<int, std::vector<int>>>& blocks) {
    std::vector<uint8_t> out;
    BitWriter w(out);
    for (const auto& [unused, offsets] : blocks) {
      for (int o : offsets) {
        w.put(1, 1);
        w.put(static_cast<uint32_t>(o), 2);
      }
      w.put(0, 1);
    }
    out.resize(3, 0);
    out.resize(3 + 20, 0);
    return out;
  };
  // Valid: {1, 2, 5, 12, 17}.
  std::vector<uint8_t> good = stream({{0, {1, 2}}, {1, {1}}, {2, {}}, {3, {0}}, {4, {1}}});
  Compressed back;
  decode(spec, segs.view(), good.data(), good.size(), back);
  EXPECT_EQ(back.idx, (std::vector<int32_t>{1, 2, 5, 12, 17}));
  expect_decode_error(spec, segs, stream({{0, {1, 2}}, {1, {1}}, {2, {}}, {3, {0}}, {4, {3}}}),
                      "outside bucket 0");
  expect_decode_error(spec, segs, stream({{0, {2, 1}}, {1, {1}}, {2, {}}, {3, {0}}, {4, {1}}}),
                      "ascending");
  expect_decode_error(spec, segs, stream({{0, {1, 1}}, {1, {1}}, {2, {}}, {3, {0}}, {4, {1}}}),
                      "ascending");
  // 4 indices: 17 bits still fill 3 bytes, so only the count gives it away.
  expect_decode_error(spec, segs, stream({{0, {1, 2}}, {1, {1}}, {2, {}}, {3, {0}}, {4, {}}}),
                      "holds 4 indices, expected");
  // Non-zero padding bits after the 20-bit stream.
  std::vector<uint8_t> pad = good;
  pad[2] |= 0x80;
  expect_decode_error(spec, segs, pad, "padding");
  // Counts moved between buckets: same bits, wrong per-bucket counts.
  const Segs two({8, 8});  // B = 4, K = 2 + 2, 2 blocks each: 4*3 + 4 = 16 bits
  std::vector<uint8_t> moved;
  {
    BitWriter w(moved);
    for (int o : {0, 1, 2}) {
      w.put(1, 1);
      w.put(static_cast<uint32_t>(o), 2);
    }
    w.put(0, 1);
    w.put(0, 1);
    w.put(1, 1);
    w.put(3, 2);
    w.put(0, 1);
    w.put(0, 1);
  }
  moved.resize(2 + 16, 0);
  expect_decode_error(spec, two, moved, "bucket 0 holds 3 indices, expected");
}

TEST(CodecErrors, BadLevelsAndParameters) {
  std::mt19937_64 rng(3);
  const Segs segs({9, 7});
  CompressorSpec q;
  q.kind = CompressorKind::kQsgd;
  q.bits = 2;  // 3 bits per element: norms 8 bytes, then 48 bits
  Compressed c = make_compressed(q, segs, rng);
  c.scale = {1.5f, 2.0f};
  for (int i = 0; i < 16; ++i) c.code[i] = static_cast<int16_t>(i % 7 - 3);
  std::vector<uint8_t> good = encoded(q, segs, c);
  {
    std::vector<uint8_t> b = good;
    // element 3 has code 0; set its sign bit (bit 9 of the stream) -> "negative zero" level.
    ASSERT_EQ(c.code[3], 0);
    b[8 + 1] |= 0x02;
    expect_decode_error(q, segs, b, "bad level");
  }
  {
    Compressed z = c;
    z.scale[1] = 0.0f;
    for (int i = 9; i < 16; ++i) z.code[i] = 0;
    std::vector<uint8_t> b = encoded(q, segs, z);
    b[8 + (10 * 3 + 1) / 8] |= static_cast<uint8_t>(1u << ((10 * 3 + 1) % 8));  // level of 10
    expect_decode_error(q, segs, b, "bad level");
    Compressed nz = z;
    nz.code[10] = 1;
    expect_throw_with<std::invalid_argument>([&] { encoded(q, segs, nz); }, "norm is 0");
  }
  {
    std::vector<uint8_t> b = good;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(b.data(), &nan, 4);
    expect_decode_error(q, segs, b, "norm of bucket 0");
  }
  CompressorSpec sg;
  sg.kind = CompressorKind::kSign;
  {
    std::vector<uint8_t> b = encoded(sg, segs, make_compressed(sg, segs, rng));
    const float neg = -1.0f;
    std::memcpy(b.data() + 4, &neg, 4);
    expect_decode_error(sg, segs, b, "scale of bucket 1");
  }
  CompressorSpec mm;
  mm.kind = CompressorKind::kMinMax8;
  {
    std::vector<uint8_t> b = encoded(mm, segs, make_compressed(mm, segs, rng));
    const float lo = 5.0f, hi = 4.0f;
    std::memcpy(b.data() + 8, &lo, 4);
    std::memcpy(b.data() + 12, &hi, 4);
    expect_decode_error(mm, segs, b, "lo <= hi");
  }
  {
    // Every byte is a valid minmax8 code.
    Compressed m = make_compressed(mm, segs, rng);
    for (int i = 0; i < 16; ++i) m.code[i] = static_cast<int16_t>(i == 0 ? 255 : i * 13);
    const float scale = (m.scale[1] - m.scale[0]) / 255.0f;
    for (int i = 0; i < 9; ++i) m.val[i] = m.scale[0] + scale * static_cast<float>(m.code[i]);
    const float scale1 = (m.scale[3] - m.scale[2]) / 255.0f;
    for (int i = 9; i < 16; ++i) m.val[i] = m.scale[2] + scale1 * static_cast<float>(m.code[i]);
    round_trip(mm, segs, m);
  }
  CompressorSpec fr = sparse_spec(CompressorKind::kFractional, IndexCodec::kRaw32, 0.25);
  fr.bits = 3;  // L = 4
  {
    Compressed f = make_compressed(fr, segs, rng);  // K = 3 + 2
    const int interval = std::abs(f.code[0]) - 1;
    std::vector<uint8_t> b = encoded(fr, segs, f);
    const size_t means_at = b.size() - 4 * 8;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(b.data() + means_at + 4 * interval, &nan, 4);
    expect_decode_error(fr, segs, b, "fractional mean");
    // A mean that no value refers to passes through unchecked and bit-exact.
    int unused = -1;
    for (int j = 0; j < 4 && unused < 0; ++j) {
      bool used = false;
      for (int i = 0; i < 3; ++i) used |= std::abs(f.code[i]) - 1 == j;
      if (!used) unused = j;
    }
    ASSERT_GE(unused, 0);
    f.scale[unused] = -2.0f;
    round_trip(fr, segs, f);
  }
}

// Found by fuzz/codec_fuzzer: bucket parameters the compressor never sends (infinite qsgd
// norm, minmax8 bounds, sign scale, fractional mean) were accepted, and the first two decoded
// to NaN (inf * 0). Each is now a decode error; the largest finite ones still decode.
TEST(CodecErrors, NonFiniteBucketParameters) {
  std::mt19937_64 rng(5);
  const Segs segs({9, 7});
  const float inf = std::numeric_limits<float>::infinity();
  const auto set = [](std::vector<uint8_t> b, size_t at, float v) {
    std::memcpy(b.data() + at, &v, 4);
    return b;
  };
  CompressorSpec q;
  q.kind = CompressorKind::kQsgd;
  q.bits = 2;  // s = 3
  Compressed c = make_compressed(q, segs, rng);
  const std::vector<uint8_t> qb = encoded(q, segs, c);
  expect_decode_error(q, segs, set(qb, 0, inf), "qsgd norm of bucket 0 is inf");
  // norm * s must stay finite, as the compressor guarantees: FLT_MAX / 2 * 3 overflows.
  const float big = std::numeric_limits<float>::max();
  expect_decode_error(q, segs, set(qb, 4, big / 2), "norm * 3 finite");
  Compressed out;
  decode(q, segs.view(), set(qb, 4, big / 4).data(), qb.size(), out);  // * 3 < FLT_MAX
  for (float v : out.val) EXPECT_FALSE(std::isnan(v));

  CompressorSpec mm;
  mm.kind = CompressorKind::kMinMax8;
  const std::vector<uint8_t> mb = encoded(mm, segs, make_compressed(mm, segs, rng));
  for (const auto& [lo, hi] :
       std::vector<std::pair<float, float>>{{-inf, 0.0f}, {0.0f, inf}, {inf, inf}, {-big, big}}) {
    SCOPED_TRACE(std::to_string(lo) + " " + std::to_string(hi));
    expect_decode_error(mm, segs, set(set(mb, 0, lo), 4, hi), "(hi - lo) / 255 finite");
  }
  decode(mm, segs.view(), set(set(mb, 0, -big / 2), 4, big / 2).data(), mb.size(), out);
  for (float v : out.val) EXPECT_TRUE(std::isfinite(v));

  CompressorSpec sg;
  sg.kind = CompressorKind::kSign;
  const std::vector<uint8_t> sb = encoded(sg, segs, make_compressed(sg, segs, rng));
  expect_decode_error(sg, segs, set(sb, 4, inf), "sign scale of bucket 1 is inf");

  CompressorSpec fr = sparse_spec(CompressorKind::kFractional, IndexCodec::kRaw32, 0.25);
  fr.bits = 3;  // L = 4
  const Compressed f = make_compressed(fr, segs, rng);
  const std::vector<uint8_t> fb = encoded(fr, segs, f);
  const size_t mean_at = fb.size() - 4 * 8 + 4 * (std::abs(f.code[0]) - 1);
  expect_decode_error(fr, segs, set(fb, mean_at, inf), "expected a finite non-negative number");
}

TEST(CodecErrors, EncodeRejectsInconsistentRows) {
  std::mt19937_64 rng(17);
  const Segs segs({10, 20});
  const CompressorSpec spec = sparse_spec(CompressorKind::kTopK, IndexCodec::kRaw32, 0.2);
  const Compressed good = make_compressed(spec, segs, rng);  // K = 2 + 4
  std::vector<uint8_t> out;
  Compressed c = good;
  c.kind = CompressorKind::kRandomK;
  expect_throw_with<std::invalid_argument>([&] { encode(spec, segs.view(), c, out); }, "kind");
  c = good;
  c.val.pop_back();
  expect_throw_with<std::invalid_argument>([&] { encode(spec, segs.view(), c, out); }, "val");
  expect_throw_with<std::invalid_argument>([&] { encoded_size(spec, segs.view(), c); }, "val");
  c = good;
  c.idx = {0, 1, 2, 10, 11, 12};  // 3 + 3 instead of 2 + 4
  expect_throw_with<std::invalid_argument>([&] { encode(spec, segs.view(), c, out); },
                                           "bucket 0 holds 3 indices");
  c.idx = {0, 1, 12, 11, 13, 14};
  expect_throw_with<std::invalid_argument>([&] { encode(spec, segs.view(), c, out); }, "ascending");
  c.idx = {0, 1, 10, 11, 12, 30};
  expect_throw_with<std::invalid_argument>([&] { encode(spec, segs.view(), c, out); },
                                           "outside the row");
  CompressorSpec q;
  q.kind = CompressorKind::kQsgd;
  q.bits = 1;
  c = make_compressed(q, segs, rng);
  c.code[4] = 2;
  expect_throw_with<std::invalid_argument>([&] { encode(q, segs.view(), c, out); }, "code[4]");
  CompressorSpec sg;
  sg.kind = CompressorKind::kSign;
  c = make_compressed(sg, segs, rng);
  c.code[7] = 0;
  expect_throw_with<std::invalid_argument>([&] { encode(sg, segs.view(), c, out); }, "code[7]");
  CompressorSpec mm;
  mm.kind = CompressorKind::kMinMax8;
  c = make_compressed(mm, segs, rng);
  c.code[2] = 256;
  expect_throw_with<std::invalid_argument>([&] { encode(mm, segs.view(), c, out); }, "code[2]");
  c.scale.pop_back();
  expect_throw_with<std::invalid_argument>([&] { encode(mm, segs.view(), c, out); }, "scale");
  CompressorSpec fr = sparse_spec(CompressorKind::kFractional, IndexCodec::kLocal16, 0.2);
  fr.bits = 2;
  c = make_compressed(fr, segs, rng);
  c.code[1] = 3;  // L = 2: codes are +-1, +-2
  expect_throw_with<std::invalid_argument>([&] { encode(fr, segs.view(), c, out); }, "code[1]");
  c.code[1] = 0;
  expect_throw_with<std::invalid_argument>([&] { encode(fr, segs.view(), c, out); }, "code[1]");
  // Index codecs on their own.
  std::vector<int32_t> idx{3, 2};
  std::vector<int64_t> counts{2, 0};
  expect_throw_with<std::invalid_argument>(
      [&] {
        encode_indices(IndexCodec::kBlockPosition, 0.1, segs.view(), idx.data(), counts.data(),
                       out);
      },
      "ascending");
  idx = {3, 12};
  counts = {2, 0};
  expect_throw_with<std::invalid_argument>(
      [&] { encode_indices(IndexCodec::kRaw32, 0.1, segs.view(), idx.data(), counts.data(), out); },
      "outside bucket 0");
  EXPECT_TRUE(out.empty()) << "a rejected row must not be appended";
}

TEST(Codec, EmptyRowAndSingleElementBuckets) {
  std::mt19937_64 rng(23);
  const Segs none({});
  const Segs zeros({0, 0});
  const Segs ones({1, 1, 1});
  for (const Segs* segs : {&none, &zeros, &ones}) {
    for (CompressorKind kind :
         {CompressorKind::kIdentity, CompressorKind::kTopK, CompressorKind::kRandomK,
          CompressorKind::kFractional, CompressorKind::kQsgd, CompressorKind::kSign,
          CompressorKind::kMinMax8}) {
      for (IndexCodec codec :
           {IndexCodec::kRaw32, IndexCodec::kLocal16, IndexCodec::kBlockPosition}) {
        CompressorSpec spec = sparse_spec(kind, codec, 0.001);
        spec.bits = kind == CompressorKind::kQsgd ? 8 : 9;
        SCOPED_TRACE(testing::Message() << to_string(kind) << " " << to_string(codec) << " d "
                                        << segs->total() << " nseg " << segs->count());
        const Compressed c = make_compressed(spec, *segs, rng);
        round_trip(spec, *segs, c);
        if (segs->count() == 0) {
          EXPECT_EQ(encoded_size(spec, segs->view(), c), 0u);
        }
      }
    }
  }
}

}  // namespace
}  // namespace spush::kernels
