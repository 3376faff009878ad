// Compression operators with error feedback (compress_ef_cpu, axpy_compressed_cpu) checked
// against closed forms and independent references: error feedback conserves v = c + e, top-K
// equals topk_batched_cpu, QSGD and scaled random-K are unbiased (mean over many Philox draws
// within 5 standard errors), sign / min-max / fractional parameters recomputed from v, and
// spec parsing and validation.
#include "spush/kernels/compress.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "spush/kernels/dequant.h"
#include "spush/kernels/philox.h"
#include "spush/kernels/topk.h"

namespace spush::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

CompressorSpec make_spec(CompressorKind kind, double density = 0.1, int bits = 8,
                         bool scale = false) {
  CompressorSpec s;
  s.kind = kind;
  s.density = density;
  s.bits = bits;
  s.randomk_scale = scale;
  s.seed = 0x5EEDu;
  return s;
}

std::string describe(const CompressorSpec& s) {
  return std::string(to_string(s.kind)) + " density " + std::to_string(s.density) + " bits " +
         std::to_string(s.bits) + (s.randomk_scale ? " scaled" : "");
}

// Buckets of assorted lengths, with an empty one and a length-1 one.
const std::vector<int64_t> kOffsets{0, 100, 100, 357, 358, 1358, 1400};
SegmentView layered() { return SegmentView{kOffsets.data(), 6}; }

std::vector<float> random_row(uint32_t seed, int64_t d, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> x(static_cast<size_t>(d));
  for (float& v : x) v = normal(rng);
  return x;
}

// Bucket sums in the order bucket_sum.h prescribes (the GPU's order), written independently:
// sequential sums of 256-element tiles, of 256 tiles per group, then of the groups.
template <typename Term>
double tiled_sum(const float* v, int64_t len, Term term) {
  std::vector<double> tiles, groups;
  for (int64_t t = 0; t < len; t += 256) {
    double acc = 0;
    for (int64_t i = t; i < std::min(len, t + 256); ++i) acc += term(v[i]);
    tiles.push_back(acc);
  }
  for (size_t g = 0; g < tiles.size(); g += 256) {
    double acc = 0;
    for (size_t t = g; t < std::min(tiles.size(), g + 256); ++t) acc += tiles[t];
    groups.push_back(acc);
  }
  double acc = 0;
  for (double g : groups) acc += g;
  return acc;
}

// The message expanded to a dense row (0 where nothing is sent).
std::vector<float> dense_of(const Compressed& c, int64_t d) {
  if (!is_sparse(c.kind)) return c.val;
  std::vector<float> out(static_cast<size_t>(d), 0.0f);
  for (size_t j = 0; j < c.idx.size(); ++j) out[c.idx[j]] = c.val[j];
  return out;
}

std::vector<CompressorSpec> all_specs() {
  std::vector<CompressorSpec> specs{
      make_spec(CompressorKind::kIdentity),     make_spec(CompressorKind::kTopK, 0.01),
      make_spec(CompressorKind::kTopK, 0.3),    make_spec(CompressorKind::kTopK, 1.0),
      make_spec(CompressorKind::kRandomK, 0.1), make_spec(CompressorKind::kRandomK, 0.1, 8, true),
      make_spec(CompressorKind::kSign),         make_spec(CompressorKind::kMinMax8),
  };
  for (int b : {1, 2, 4, 8}) specs.push_back(make_spec(CompressorKind::kQsgd, 0.1, b));
  for (int q : {2, 3, 5, 9}) specs.push_back(make_spec(CompressorKind::kFractional, 0.2, q));
  return specs;
}

// ---- error feedback ------------------------------------------------------------------------

TEST(CompressEf, ErrorFeedbackLosesNothing) {
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  for (const CompressorSpec& spec : all_specs()) {
    SCOPED_TRACE(describe(spec));
    for (uint32_t seed : {1u, 2u, 3u}) {
      SCOPED_TRACE("seed " + std::to_string(seed));
      const std::vector<float> x = random_row(seed, d);
      std::vector<float> e = random_row(seed + 100, d, 0.3f);
      std::vector<float> v(static_cast<size_t>(d));
      for (int64_t i = 0; i < d; ++i) v[i] = x[i] + e[i];
      Compressed out;
      compress_ef_cpu(spec, segs, x.data(), e.data(), out, 3, 17);
      ASSERT_EQ(out.kind, spec.kind);
      const std::vector<float> c = dense_of(out, d);
      ASSERT_EQ(static_cast<int64_t>(c.size()), d);
      const bool exact = spec.kind == CompressorKind::kIdentity ||
                         spec.kind == CompressorKind::kTopK ||
                         (spec.kind == CompressorKind::kRandomK && !spec.randomk_scale);
      for (int64_t i = 0; i < d; ++i) {
        // e is v - c rounded once: c + e equals v up to half an ulp of e.
        const double gap = static_cast<double>(c[i]) + e[i] - v[i];
        if (exact) {
          ASSERT_EQ(gap, 0.0) << "index " << i;
        } else {
          const double ulp_e = std::nextafter(std::fabs(e[i]), kInf) - std::fabs(e[i]);
          ASSERT_LE(std::fabs(gap), 0.5 * ulp_e) << "index " << i;
        }
        ASSERT_EQ(bits_of(e[i]), bits_of(v[i] - c[i])) << "index " << i;
      }
    }
  }
}

TEST(CompressEf, SparseKeptEntriesZeroTheError) {
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  const std::vector<float> x = random_row(8, d);
  std::vector<float> e = random_row(9, d, 0.5f);
  const std::vector<float> e0 = e;
  Compressed out;
  compress_ef_cpu(make_spec(CompressorKind::kTopK, 0.05), segs, x.data(), e.data(), out, 0, 0);
  std::vector<bool> kept(static_cast<size_t>(d), false);
  for (int32_t i : out.idx) kept[i] = true;
  for (int64_t i = 0; i < d; ++i) {
    const float v = x[i] + e0[i];
    if (kept[i]) {
      ASSERT_EQ(bits_of(e[i]), bits_of(0.0f)) << i;
    } else {
      ASSERT_EQ(bits_of(e[i]), bits_of(v)) << i;
    }
  }
}

TEST(CompressEf, IdentitySendsVAndClearsError) {
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  const std::vector<float> x = random_row(4, d);
  std::vector<float> e = random_row(5, d);
  const std::vector<float> e0 = e;
  Compressed out;
  compress_ef_cpu(make_spec(CompressorKind::kIdentity), segs, x.data(), e.data(), out, 0, 0);
  EXPECT_TRUE(out.idx.empty());
  EXPECT_TRUE(out.scale.empty());
  EXPECT_TRUE(out.code.empty());
  for (int64_t i = 0; i < d; ++i) {
    ASSERT_EQ(out.val[i], x[i] + e0[i]);
    ASSERT_EQ(e[i], 0.0f);
  }
  // Without error feedback v = x.
  compress_ef_cpu(make_spec(CompressorKind::kIdentity), segs, x.data(), nullptr, out, 0, 0);
  EXPECT_EQ(out.val, x);
}

TEST(CompressEf, EmptyRow) {
  for (const CompressorSpec& spec : all_specs()) {
    Compressed out;
    out.val.assign(3, 1.0f);
    compress_ef_cpu(spec, SegmentView{}, nullptr, nullptr, out, 0, 0);
    EXPECT_TRUE(out.val.empty()) << describe(spec);
    EXPECT_TRUE(out.idx.empty()) << describe(spec);
  }
}

// ---- top-K ---------------------------------------------------------------------------------

TEST(CompressTopK, EqualsTopkCpuPerBucket) {
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  for (double density : {0.001, 0.01, 0.25, 1.0}) {
    SCOPED_TRACE("density " + std::to_string(density));
    const std::vector<float> x = random_row(21, d);
    std::vector<float> e = random_row(22, d, 0.1f);
    std::vector<float> v(static_cast<size_t>(d));
    for (int64_t i = 0; i < d; ++i) v[i] = x[i] + e[i];
    Compressed out;
    compress_ef_cpu(make_spec(CompressorKind::kTopK, density), segs, x.data(), e.data(), out, 1, 2);
    const std::vector<int64_t> koff = topk_offsets(segs, density);
    std::vector<int32_t> idx(static_cast<size_t>(koff.back()));
    std::vector<float> val(static_cast<size_t>(koff.back()));
    topk_batched_cpu(v.data(), 1, d, segs, koff.data(), idx.data(), val.data());
    EXPECT_EQ(out.idx, idx);
    EXPECT_EQ(out.val, val);
    // Global selection (one bucket) matches topk_cpu.
    const int64_t whole[2] = {0, d};
    compress_ef_cpu(make_spec(CompressorKind::kTopK, density), SegmentView{whole, 1}, v.data(),
                    nullptr, out, 1, 2);
    const int64_t k = topk_count(d, density);
    idx.resize(k);
    val.resize(k);
    topk_cpu(v.data(), d, k, idx.data(), val.data());
    EXPECT_EQ(out.idx, idx);
    EXPECT_EQ(out.val, val);
  }
}

// ---- QSGD ----------------------------------------------------------------------------------

TEST(CompressQsgd, LevelsNormAndDequantizedFormula) {
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  const std::vector<float> x = random_row(31, d);
  for (int bits : {1, 2, 4, 8}) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    const int s = (1 << bits) - 1;
    Compressed out;
    compress_ef_cpu(make_spec(CompressorKind::kQsgd, 0.1, bits), segs, x.data(), nullptr, out, 2,
                    5);
    ASSERT_EQ(out.scale.size(), 6u);
    ASSERT_EQ(out.code.size(), static_cast<size_t>(d));
    for (int b = 0; b < segs.count; ++b) {
      const int64_t len = kOffsets[b + 1] - kOffsets[b];
      const float norm = static_cast<float>(
          std::sqrt(tiled_sum(x.data() + kOffsets[b], len, [](float a) { return double(a) * a; })));
      long double exact = 0;
      for (int64_t i = kOffsets[b]; i < kOffsets[b + 1]; ++i) exact += (long double)x[i] * x[i];
      ASSERT_NEAR(norm, std::sqrt((double)exact), 1e-6 * norm) << "bucket " << b;
      ASSERT_EQ(out.scale[b], norm) << "bucket " << b;
      for (int64_t i = kOffsets[b]; i < kOffsets[b + 1]; ++i) {
        const int code = out.code[i];
        ASSERT_LE(std::abs(code), s);
        const double l = s * std::fabs(double(x[i])) / norm;  // exact level, before rounding
        ASSERT_GE(std::abs(code), std::floor(l - 1e-4)) << i;
        ASSERT_LE(std::abs(code), std::ceil(l + 1e-4)) << i;
        if (code != 0) {
          ASSERT_EQ(code < 0, x[i] < 0) << i;
        }
        // c = sign * ((norm * level) / s) in fp32; level 0 gives +0 whatever the sign of v.
        const float mag = (norm * static_cast<float>(std::abs(code))) / static_cast<float>(s);
        ASSERT_EQ(bits_of(out.val[i]), bits_of(code < 0 ? -mag : mag)) << i;
      }
    }
  }
}

TEST(CompressQsgd, UnbiasedOverManyDraws) {
  // Mean of c over N iterations -> v; |mean - v| <= 5 standard errors, where one draw has
  // variance (norm/s)^2 f(1-f), f = frac(s|v|/norm). Philox makes the test deterministic.
  const int64_t off[] = {0, 40, 64};
  const SegmentView segs{off, 2};
  const std::vector<float> x = random_row(41, 64);
  constexpr int kDraws = 4000;
  for (int bits : {1, 2, 4, 8}) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    const int s = (1 << bits) - 1;
    const CompressorSpec spec = make_spec(CompressorKind::kQsgd, 0.1, bits);
    std::vector<double> sum(64, 0.0);
    Compressed out;
    for (int it = 0; it < kDraws; ++it) {
      compress_ef_cpu(spec, segs, x.data(), nullptr, out, 7, static_cast<uint64_t>(it));
      for (int i = 0; i < 64; ++i) sum[i] += out.val[i];
    }
    for (int b = 0; b < 2; ++b) {
      const double norm = out.scale[b];
      for (int64_t i = off[b]; i < off[b + 1]; ++i) {
        const double l = s * std::fabs(double(x[i])) / norm;
        const double f = l - std::floor(l);
        const double se = norm / s * std::sqrt(f * (1 - f) / kDraws);
        const double mean = sum[i] / kDraws;
        ASSERT_NEAR(mean, x[i], 5 * se + 1e-6 * norm) << "element " << i << " level " << l;
      }
    }
  }
}

TEST(CompressQsgd, DeterministicPerSeedNodeIteration) {
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  const std::vector<float> x = random_row(51, d);
  CompressorSpec spec = make_spec(CompressorKind::kQsgd, 0.1, 2);
  Compressed a, b;
  compress_ef_cpu(spec, segs, x.data(), nullptr, a, 4, 9);
  compress_ef_cpu(spec, segs, x.data(), nullptr, b, 4, 9);
  EXPECT_EQ(a.code, b.code);
  EXPECT_EQ(a.val, b.val);
  compress_ef_cpu(spec, segs, x.data(), nullptr, b, 4, 10);
  EXPECT_NE(a.code, b.code) << "iteration does not change the draws";
  compress_ef_cpu(spec, segs, x.data(), nullptr, b, 5, 9);
  EXPECT_NE(a.code, b.code) << "node does not change the draws";
  spec.seed += 1;
  compress_ef_cpu(spec, segs, x.data(), nullptr, b, 4, 9);
  EXPECT_NE(a.code, b.code) << "seed does not change the draws";
  // The draw of element i is philox_uniform(seed, node, iteration, i): recompute the levels.
  spec.seed -= 1;
  for (int bk = 0; bk < segs.count; ++bk) {
    const float norm = a.scale[bk];
    for (int64_t i = kOffsets[bk]; i < kOffsets[bk + 1]; ++i) {
      const float l = (std::fabs(x[i]) / norm) * 3.0f;
      const float fl = std::floor(l);
      const float u = philox_uniform(spec.seed, 4, 9, static_cast<uint64_t>(i));
      const int level = std::min(3, static_cast<int>(fl) + (u < l - fl ? 1 : 0));
      ASSERT_EQ(std::abs(a.code[i]), level) << i;
    }
  }
}

TEST(CompressQsgd, LargeBucketSumsInBlockedOrder) {
  // 70,000 elements: two groups of bucket_sum.h. Multiples of 1/64 sum exactly in any order;
  // random values must follow the blocked order bit for bit.
  const int64_t n = 70000;
  const int64_t off[] = {0, n};
  std::mt19937 rng(141);
  std::vector<float> exact(n);
  for (float& v : exact) v = static_cast<float>(static_cast<int>(rng() % 129) - 64) / 64.0f;
  double ss = 0, sa = 0;
  for (float v : exact) {
    ss += double(v) * v;
    sa += std::fabs(v);
  }
  Compressed out;
  compress_ef_cpu(make_spec(CompressorKind::kQsgd, 0.1, 4), SegmentView{off, 1}, exact.data(),
                  nullptr, out, 0, 0);
  EXPECT_EQ(out.scale[0], static_cast<float>(std::sqrt(ss)));
  compress_ef_cpu(make_spec(CompressorKind::kSign), SegmentView{off, 1}, exact.data(), nullptr, out,
                  0, 0);
  EXPECT_EQ(out.scale[0], static_cast<float>(sa / n));
  const std::vector<float> x = random_row(142, n);
  compress_ef_cpu(make_spec(CompressorKind::kQsgd, 0.1, 4), SegmentView{off, 1}, x.data(), nullptr,
                  out, 0, 0);
  EXPECT_EQ(
      out.scale[0],
      static_cast<float>(std::sqrt(tiled_sum(x.data(), n, [](float a) { return double(a) * a; }))));
  compress_ef_cpu(make_spec(CompressorKind::kSign), SegmentView{off, 1}, x.data(), nullptr, out, 0,
                  0);
  EXPECT_EQ(
      out.scale[0],
      static_cast<float>(tiled_sum(x.data(), n, [](float a) { return std::fabs(double(a)); }) / n));
}

TEST(CompressSign, ScaleFollowsBlockedOrderAtARoundingTie) {
  // Tile 0 = {1, 2^-24, 0...}: 1 + 2^-24 is halfway between two floats. Tile 1 = 256 x 2^-53.
  // Summed sequentially each 2^-53 is a half-ulp tie that rounds away, leaving the halfway
  // value (which rounds to the even float 1); in the blocked order tile 1 adds 2^-45 first and
  // the sum rounds up to 1 + 2^-23. len = 512 keeps the division exact.
  const int64_t off[] = {0, 512};
  std::vector<float> x(512, 0.0f);
  x[0] = 1.0f;
  x[1] = std::ldexp(1.0f, -24);
  for (int i = 256; i < 512; ++i) x[i] = std::ldexp(1.0f, -53);
  Compressed out;
  compress_ef_cpu(make_spec(CompressorKind::kSign), SegmentView{off, 1}, x.data(), nullptr, out, 0,
                  0);
  EXPECT_EQ(out.scale[0], std::nextafter(1.0f, 2.0f) / 512.0f);
}

TEST(CompressQsgd, ZeroBucketSendsZeros) {
  const int64_t off[] = {0, 5, 10};
  std::vector<float> x{0, 0, -0.0f, 0, 0, 1, -2, 3, 0, 4};
  std::vector<float> e(10, 0.0f);
  Compressed out;
  compress_ef_cpu(make_spec(CompressorKind::kQsgd, 0.1, 4), SegmentView{off, 2}, x.data(), e.data(),
                  out, 0, 0);
  EXPECT_EQ(out.scale[0], 0.0f);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(out.val[i], 0.0f);
    EXPECT_EQ(out.code[i], 0);
    EXPECT_EQ(e[i], 0.0f);
  }
  EXPECT_EQ(out.scale[1], std::sqrt(30.0f));
}

// ---- scaled sign ---------------------------------------------------------------------------

TEST(CompressSign, ScaleIsMeanAbsAndSignOfZeroIsPlus) {
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  std::vector<float> x = random_row(61, d);
  x[5] = 0.0f;
  x[6] = -0.0f;
  Compressed out;
  compress_ef_cpu(make_spec(CompressorKind::kSign), segs, x.data(), nullptr, out, 0, 0);
  ASSERT_EQ(out.scale.size(), 6u);
  for (int b = 0; b < segs.count; ++b) {
    const int64_t len = kOffsets[b + 1] - kOffsets[b];
    const double sa = tiled_sum(x.data() + kOffsets[b], len, [](float a) { return std::fabs(a); });
    const float scale = len ? static_cast<float>(sa / len) : 0.0f;
    long double exact = 0;
    for (int64_t i = kOffsets[b]; i < kOffsets[b + 1]; ++i) exact += std::fabs((long double)x[i]);
    if (len) {
      ASSERT_NEAR(scale, (double)(exact / len), 1e-6 * scale) << "bucket " << b;
    }
    ASSERT_EQ(out.scale[b], scale) << "bucket " << b;
    for (int64_t i = kOffsets[b]; i < kOffsets[b + 1]; ++i) {
      const int sign = x[i] < 0 ? -1 : 1;
      ASSERT_EQ(out.code[i], sign) << i;
      ASSERT_EQ(out.val[i], sign * scale) << i;
    }
  }
  EXPECT_EQ(out.code[5], 1);
  EXPECT_EQ(out.code[6], 1);
}

// ---- min-max 8-bit -------------------------------------------------------------------------

TEST(CompressMinMax8, ErrorWithinHalfStep) {
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  const std::vector<float> x = random_row(71, d, 3.0f);
  Compressed out;
  compress_ef_cpu(make_spec(CompressorKind::kMinMax8), segs, x.data(), nullptr, out, 0, 0);
  ASSERT_EQ(out.scale.size(), 12u);
  for (int b = 0; b < segs.count; ++b) {
    if (kOffsets[b + 1] == kOffsets[b]) continue;
    const auto [lo_it, hi_it] =
        std::minmax_element(x.begin() + kOffsets[b], x.begin() + kOffsets[b + 1]);
    const float lo = *lo_it, hi = *hi_it;
    ASSERT_EQ(out.scale[2 * b], lo);
    ASSERT_EQ(out.scale[2 * b + 1], hi);
    const float stepf = (hi - lo) / 255.0f;
    const double step = stepf;
    for (int64_t i = kOffsets[b]; i < kOffsets[b + 1]; ++i) {
      ASSERT_GE(out.code[i], 0);
      ASSERT_LE(out.code[i], 255);
      const double err = std::fabs(double(out.val[i]) - x[i]);
      ASSERT_LE(err, step * (0.5 + 1e-4) + 1e-6 * std::fabs(x[i])) << i;
      ASSERT_EQ(out.val[i], lo + stepf * static_cast<float>(out.code[i])) << i;
    }
    ASSERT_EQ(out.code[lo_it - x.begin()], 0);
    if (hi > lo) {
      ASSERT_EQ(out.code[hi_it - x.begin()], 255);
    }
  }
}

TEST(CompressMinMax8, ConstantBucketIsExact) {
  const int64_t off[] = {0, 4};
  std::vector<float> x(4, -2.5f);
  std::vector<float> e(4, 0.0f);
  Compressed out;
  compress_ef_cpu(make_spec(CompressorKind::kMinMax8), SegmentView{off, 1}, x.data(), e.data(), out,
                  0, 0);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(out.val[i], -2.5f);
    EXPECT_EQ(out.code[i], 0);
    EXPECT_EQ(e[i], 0.0f);
  }
}

TEST(CompressMinMax8, RoundsHalfToEven) {
  // lo = 0, hi = 255: step 1, codes are v rounded half to even.
  const int64_t off[] = {0, 6};
  std::vector<float> x{0.0f, 255.0f, 2.5f, 3.5f, 100.5f, 7.49f};
  Compressed out;
  compress_ef_cpu(make_spec(CompressorKind::kMinMax8), SegmentView{off, 1}, x.data(), nullptr, out,
                  0, 0);
  EXPECT_EQ(out.code, (std::vector<int16_t>{0, 255, 2, 4, 100, 7}));
}

// ---- fractional ----------------------------------------------------------------------------

TEST(CompressFractional, IntervalsAndMeans) {
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  const std::vector<float> x = random_row(81, d);
  for (int q : {2, 3, 4, 6, 9}) {
    SCOPED_TRACE("bits " + std::to_string(q));
    const int L = 1 << (q - 1);
    const double density = 0.3;
    Compressed out;
    compress_ef_cpu(make_spec(CompressorKind::kFractional, density, q), segs, x.data(), nullptr,
                    out, 0, 0);
    const std::vector<int64_t> koff = topk_offsets(segs, density);
    ASSERT_EQ(out.scale.size(), static_cast<size_t>(segs.count * L));
    ASSERT_EQ(out.idx.size(), static_cast<size_t>(koff.back()));
    std::vector<int32_t> want_idx(koff.back());
    std::vector<float> kept(koff.back());
    topk_batched_cpu(x.data(), 1, d, segs, koff.data(), want_idx.data(), kept.data());
    ASSERT_EQ(out.idx, want_idx);
    for (int b = 0; b < segs.count; ++b) {
      if (koff[b + 1] == koff[b]) continue;
      double vmax = 0, vmin = kInf;
      for (int64_t j = koff[b]; j < koff[b + 1]; ++j) {
        vmax = std::max(vmax, double(std::fabs(kept[j])));
        vmin = std::min(vmin, double(std::fabs(kept[j])));
      }
      // [MV, Sec. 4.3.2] numbering: I_l = [vmax / a^l, vmax / a^(l-1)], a = (vmax/vmin)^(1/L).
      std::vector<double> sum(L, 0.0), lo(L, kInf), hi(L, 0.0);
      std::vector<int> count(L, 0);
      for (int64_t j = koff[b]; j < koff[b + 1]; ++j) {
        const double a = std::fabs(kept[j]);
        const int code = out.code[j];
        ASSERT_TRUE(code != 0 && std::abs(code) <= L) << code;
        ASSERT_EQ(code < 0, kept[j] < 0);
        const int interval = std::abs(code) - 1;
        if (vmax > vmin) {
          const double t = L * std::log(vmax / a) / std::log(vmax / vmin);
          if (std::fabs(t - std::round(t)) > 1e-6) {
            ASSERT_EQ(interval, std::min(L - 1, static_cast<int>(std::floor(t))))
                << "value " << a << " t " << t;
          }
        }
        sum[interval] += a;
        ++count[interval];
        lo[interval] = std::min(lo[interval], a);
        hi[interval] = std::max(hi[interval], a);
      }
      for (int t = 0; t < L; ++t) {
        const float mean = out.scale[b * L + t];
        if (count[t] == 0) {
          ASSERT_EQ(mean, 0.0f);
          continue;
        }
        ASSERT_NEAR(mean, sum[t] / count[t], 1e-6 * sum[t] / count[t]) << "interval " << t;
        ASSERT_GE(mean, static_cast<float>(lo[t]));
        ASSERT_LE(mean, static_cast<float>(hi[t]));
      }
      for (int64_t j = koff[b]; j < koff[b + 1]; ++j) {
        const float m = out.scale[b * L + std::abs(out.code[j]) - 1];
        ASSERT_EQ(out.val[j], kept[j] < 0 ? -m : m) << j;
      }
    }
  }
}

TEST(CompressFractional, ZerosAndEqualMagnitudes) {
  // Bucket 0: kept zeros go to the lowest interval; bucket 1: all kept magnitudes equal;
  // bucket 2: only zeros.
  const int64_t off[] = {0, 6, 10, 13};
  std::vector<float> x{4.0f, 0.0f, -1.0f, 0.0f, 2.0f, -0.0f, 3.0f, -3.0f, 3.0f, 3.0f, 0, 0, 0};
  std::vector<float> e(13, 0.0f);
  Compressed out;
  compress_ef_cpu(make_spec(CompressorKind::kFractional, 1.0, 3), SegmentView{off, 3}, x.data(),
                  e.data(), out, 0, 0);
  // L = 4; bucket 0: vmax 4, vmin 1 (nonzero), a = sqrt(2): I_0 = [2.83, 4], I_1 = [2, 2.83),
  // I_2 = [1.41, 2), I_3 = [1, 1.41) plus the zeros.
  EXPECT_EQ(out.code, (std::vector<int16_t>{1, 4, -4, 4, 2, 4, 1, -1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(std::vector<float>(out.scale.begin(), out.scale.begin() + 4),
            (std::vector<float>{4.0f, 2.0f, 0.0f, 0.25f}));
  EXPECT_EQ(out.scale[4], 3.0f);
  EXPECT_EQ(out.scale[8], 0.0f);
  for (int i = 0; i < 13; ++i) EXPECT_EQ(out.val[i] + e[i], x[i]) << i;
}

// ---- random-K ------------------------------------------------------------------------------

TEST(CompressRandomK, PicksSmallestPhiloxKeysPerBucket) {
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  const std::vector<float> x = random_row(91, d);
  const CompressorSpec spec = make_spec(CompressorKind::kRandomK, 0.1);
  Compressed out;
  compress_ef_cpu(spec, segs, x.data(), nullptr, out, 6, 33);
  const std::vector<int64_t> koff = topk_offsets(segs, 0.1);
  ASSERT_EQ(out.idx.size(), static_cast<size_t>(koff.back()));
  for (int b = 0; b < segs.count; ++b) {
    std::vector<int32_t> order(kOffsets[b + 1] - kOffsets[b]);
    std::iota(order.begin(), order.end(), static_cast<int32_t>(kOffsets[b]));
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t c) {
      return philox_uniform(spec.seed, 6, 33, a) < philox_uniform(spec.seed, 6, 33, c);
    });
    order.resize(koff[b + 1] - koff[b]);
    std::sort(order.begin(), order.end());
    const std::vector<int32_t> got(out.idx.begin() + koff[b], out.idx.begin() + koff[b + 1]);
    ASSERT_EQ(got, order) << "bucket " << b;
    ASSERT_EQ(std::set<int32_t>(got.begin(), got.end()).size(), got.size());
    for (int64_t j = koff[b]; j < koff[b + 1]; ++j) ASSERT_EQ(out.val[j], x[out.idx[j]]);
  }
  Compressed other;
  compress_ef_cpu(spec, segs, x.data(), nullptr, other, 6, 34);
  EXPECT_NE(out.idx, other.idx) << "iteration does not change the selection";
}

TEST(CompressRandomK, ScaledIsUnbiased) {
  const int64_t off[] = {0, 20, 50};
  const SegmentView segs{off, 2};
  const std::vector<float> x = random_row(101, 50);
  const CompressorSpec spec = make_spec(CompressorKind::kRandomK, 0.25, 8, true);
  constexpr int kDraws = 4000;
  std::vector<double> sum(50, 0.0);
  std::vector<int> picked(50, 0);
  Compressed out;
  for (int it = 0; it < kDraws; ++it) {
    compress_ef_cpu(spec, segs, x.data(), nullptr, out, 1, static_cast<uint64_t>(it));
    ASSERT_EQ(out.idx.size(), 5u + 8u);
    for (size_t j = 0; j < out.idx.size(); ++j) {
      sum[out.idx[j]] += out.val[j];
      ++picked[out.idx[j]];
    }
  }
  for (int b = 0; b < 2; ++b) {
    const int64_t len = off[b + 1] - off[b];
    const int64_t k = topk_count(len, 0.25);
    const float scale = static_cast<float>(double(len) / double(k));
    for (int64_t i = off[b]; i < off[b + 1]; ++i) {
      // One draw: v*len/K with probability K/len, else 0.
      const double se = std::fabs(x[i]) * std::sqrt((double(len) / k - 1) / kDraws);
      ASSERT_NEAR(sum[i] / kDraws, x[i], 5 * se + 1e-6) << "element " << i;
      ASSERT_EQ(sum[i], double(picked[i]) * double(x[i] * scale)) << "element " << i;
    }
  }
}

// ---- agreement with the wire decoder's formulas --------------------------------------------

TEST(CompressEf, DequantizedValuesFollowDequantH) {
  // A receiver rebuilds c from (scale, code) with dequant.h; it must equal what was sent.
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  const std::vector<float> x = random_row(131, d);
  for (const CompressorSpec& spec : all_specs()) {
    SCOPED_TRACE(describe(spec));
    Compressed out;
    compress_ef_cpu(spec, segs, x.data(), nullptr, out, 2, 3);
    switch (spec.kind) {
      case CompressorKind::kQsgd:
        for (int b = 0; b < segs.count; ++b) {
          for (int64_t i = kOffsets[b]; i < kOffsets[b + 1]; ++i) {
            ASSERT_EQ(bits_of(out.val[i]),
                      bits_of(dequant_qsgd(out.scale[b], out.code[i], qsgd_levels(spec.bits))));
          }
        }
        break;
      case CompressorKind::kSign:
        for (int b = 0; b < segs.count; ++b) {
          for (int64_t i = kOffsets[b]; i < kOffsets[b + 1]; ++i) {
            ASSERT_EQ(bits_of(out.val[i]), bits_of(dequant_sign(out.scale[b], out.code[i])));
          }
        }
        break;
      case CompressorKind::kMinMax8:
        for (int b = 0; b < segs.count; ++b) {
          const float lo = out.scale[2 * b], hi = out.scale[2 * b + 1];
          for (int64_t i = kOffsets[b]; i < kOffsets[b + 1]; ++i) {
            ASSERT_EQ(bits_of(out.val[i]),
                      bits_of(dequant_minmax8(lo, minmax8_scale(lo, hi), out.code[i])));
          }
        }
        break;
      case CompressorKind::kFractional: {
        const std::vector<int64_t> koff = topk_offsets(segs, spec.density);
        const int L = fractional_intervals(spec.bits);
        for (int b = 0; b < segs.count; ++b) {
          for (int64_t j = koff[b]; j < koff[b + 1]; ++j) {
            ASSERT_EQ(bits_of(out.val[j]),
                      bits_of(dequant_fractional(out.scale.data() + b * L, out.code[j])));
          }
        }
        break;
      }
      default:
        EXPECT_TRUE(out.code.empty());
        EXPECT_TRUE(out.scale.empty());
    }
  }
}

// ---- spec parsing and validation -----------------------------------------------------------

TEST(CompressorSpecText, RoundTripsAndRejectsUnknownNames) {
  for (CompressorKind k : {CompressorKind::kIdentity, CompressorKind::kTopK,
                           CompressorKind::kRandomK, CompressorKind::kQsgd, CompressorKind::kSign,
                           CompressorKind::kFractional, CompressorKind::kMinMax8}) {
    EXPECT_EQ(compressor_kind_from_string(to_string(k)), k) << to_string(k);
  }
  EXPECT_EQ(compressor_kind_from_string("none"), CompressorKind::kIdentity);
  for (IndexCodec c : {IndexCodec::kRaw32, IndexCodec::kLocal16, IndexCodec::kBlockPosition}) {
    EXPECT_EQ(index_codec_from_string(to_string(c)), c) << to_string(c);
  }
  EXPECT_STREQ(to_string(IndexCodec::kBlockPosition), "block");
  try {
    compressor_kind_from_string("top-k");
    FAIL() << "accepted top-k";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("top-k"), std::string::npos) << msg;
    for (const char* name :
         {"identity", "none", "topk", "randomk", "qsgd", "sign", "fractional", "minmax8"}) {
      EXPECT_NE(msg.find(name), std::string::npos) << msg << " lacks " << name;
    }
  }
  try {
    index_codec_from_string("");
    FAIL() << "accepted an empty codec name";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    for (const char* name : {"raw32", "local16", "block"}) {
      EXPECT_NE(msg.find(name), std::string::npos) << msg << " lacks " << name;
    }
  }
  EXPECT_TRUE(is_sparse(CompressorKind::kTopK));
  EXPECT_TRUE(is_sparse(CompressorKind::kRandomK));
  EXPECT_TRUE(is_sparse(CompressorKind::kFractional));
  EXPECT_FALSE(is_sparse(CompressorKind::kIdentity));
  EXPECT_FALSE(is_sparse(CompressorKind::kQsgd));
  EXPECT_FALSE(is_sparse(CompressorKind::kSign));
  EXPECT_FALSE(is_sparse(CompressorKind::kMinMax8));
}

TEST(CompressorSpecValidate, RejectsOutOfRangeFields) {
  for (CompressorKind k :
       {CompressorKind::kTopK, CompressorKind::kRandomK, CompressorKind::kFractional}) {
    for (double bad : {0.0, -0.1, 1.0000001, 2.0, double(kNaN)}) {
      CompressorSpec s = make_spec(k, bad, 4);
      try {
        validate(s);
        FAIL() << to_string(k) << " accepted density " << bad;
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("density"), std::string::npos) << e.what();
      }
    }
    EXPECT_NO_THROW(validate(make_spec(k, 1.0, 4)));
    EXPECT_NO_THROW(validate(make_spec(k, 1e-6, 4)));
  }
  for (int bad : {0, 3, 5, 16, -1}) {
    try {
      validate(make_spec(CompressorKind::kQsgd, 0.1, bad));
      FAIL() << "qsgd accepted bits " << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("bits"), std::string::npos) << e.what();
    }
  }
  for (int ok : {1, 2, 4, 8}) EXPECT_NO_THROW(validate(make_spec(CompressorKind::kQsgd, 0.1, ok)));
  for (int bad : {0, 1, 10}) {
    EXPECT_THROW(validate(make_spec(CompressorKind::kFractional, 0.1, bad)), std::invalid_argument);
  }
  for (int ok = 2; ok <= 9; ++ok) {
    EXPECT_NO_THROW(validate(make_spec(CompressorKind::kFractional, 0.1, ok)));
  }
  // Fields a kind does not use are not checked.
  EXPECT_NO_THROW(validate(make_spec(CompressorKind::kQsgd, 0.0, 8)));
  EXPECT_NO_THROW(validate(make_spec(CompressorKind::kSign, 5.0, 3)));
  CompressorSpec bad_kind = make_spec(CompressorKind::kTopK);
  bad_kind.kind = static_cast<CompressorKind>(42);
  EXPECT_THROW(validate(bad_kind), std::invalid_argument);
  // compress_ef_cpu validates too.
  std::vector<float> x(10, 1.0f);
  const int64_t off[] = {0, 10};
  Compressed out;
  EXPECT_THROW(compress_ef_cpu(make_spec(CompressorKind::kQsgd, 0.1, 3), SegmentView{off, 1},
                               x.data(), nullptr, out, 0, 0),
               std::invalid_argument);
}

// ---- non-finite input ----------------------------------------------------------------------

TEST(CompressEf, RejectsNonFiniteAndLeavesErrorUntouched) {
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  for (const CompressorSpec& spec : all_specs()) {
    SCOPED_TRACE(describe(spec));
    std::vector<float> x = random_row(111, d);
    std::vector<float> e = random_row(112, d, 0.1f);
    x[400] = kNaN;
    const std::vector<float> e0 = e;
    Compressed out;
    try {
      compress_ef_cpu(spec, segs, x.data(), e.data(), out, 0, 0);
      FAIL() << "NaN accepted";
    } catch (const std::invalid_argument& ex) {
      const std::string msg = ex.what();
      EXPECT_NE(msg.find("NaN"), std::string::npos) << msg;
      EXPECT_NE(msg.find("index 400"), std::string::npos) << msg;
    }
    EXPECT_EQ(std::memcmp(e.data(), e0.data(), d * sizeof(float)), 0);
    x[400] = 1.0f;
    e[7] = kInf;  // v infinite through the error buffer
    EXPECT_THROW(compress_ef_cpu(spec, segs, x.data(), e.data(), out, 0, 0), std::invalid_argument);
    e[7] = 0.0f;
    x[9] = 3e38f;  // finite x and e whose sum overflows
    e[9] = 3e38f;
    EXPECT_THROW(compress_ef_cpu(spec, segs, x.data(), e.data(), out, 0, 0), std::invalid_argument);
  }
}

TEST(CompressQsgd, RejectsNormOverflow) {
  const int64_t off[] = {0, 2};
  std::vector<float> x{3e38f, 3e38f};
  std::vector<float> e{0.0f, 0.0f};
  Compressed out;
  EXPECT_THROW(compress_ef_cpu(make_spec(CompressorKind::kQsgd, 0.1, 8), SegmentView{off, 1},
                               x.data(), e.data(), out, 0, 0),
               std::invalid_argument);
  EXPECT_EQ(e, (std::vector<float>{0.0f, 0.0f}));
}

TEST(CompressRandomK, RejectsScaledOverflow) {
  const int64_t off[] = {0, 4};
  std::vector<float> x(4, 3e38f);
  Compressed out;
  EXPECT_THROW(compress_ef_cpu(make_spec(CompressorKind::kRandomK, 0.25, 8, true),
                               SegmentView{off, 1}, x.data(), nullptr, out, 0, 0),
               std::invalid_argument);
  EXPECT_NO_THROW(compress_ef_cpu(make_spec(CompressorKind::kRandomK, 0.25, 8, false),
                                  SegmentView{off, 1}, x.data(), nullptr, out, 0, 0));
}

TEST(CompressMinMax8, RejectsRangeOverflow) {
  const int64_t off[] = {0, 2};
  std::vector<float> x{-3e38f, 3e38f};
  Compressed out;
  EXPECT_THROW(compress_ef_cpu(make_spec(CompressorKind::kMinMax8), SegmentView{off, 1}, x.data(),
                               nullptr, out, 0, 0),
               std::invalid_argument);
}

// ---- axpy of a message ---------------------------------------------------------------------

TEST(AxpyCompressed, MatchesDenseAxpy) {
  const SegmentView segs = layered();
  const int64_t d = segs.total();
  const std::vector<float> x = random_row(121, d);
  for (const CompressorSpec& spec : all_specs()) {
    SCOPED_TRACE(describe(spec));
    Compressed c;
    compress_ef_cpu(spec, segs, x.data(), nullptr, c, 0, 0);
    const std::vector<float> dense = dense_of(c, d);
    std::vector<float> y = random_row(122, d);
    std::vector<float> want = y;
    for (int64_t i = 0; i < d; ++i) want[i] += 0.375f * dense[i];
    axpy_compressed_cpu(0.375f, c, segs, y.data());
    for (int64_t i = 0; i < d; ++i) ASSERT_EQ(y[i], want[i]) << i;
  }
}

TEST(AxpyCompressed, RejectsMalformedMessages) {
  const SegmentView segs = layered();
  std::vector<float> y(segs.total(), 0.0f);
  Compressed c;
  c.kind = CompressorKind::kQsgd;
  c.val.assign(10, 1.0f);  // wrong dense length
  EXPECT_THROW(axpy_compressed_cpu(1.0f, c, segs, y.data()), std::invalid_argument);
  c.kind = CompressorKind::kTopK;
  c.idx = {1, 2};
  c.val = {1.0f};  // count mismatch
  EXPECT_THROW(axpy_compressed_cpu(1.0f, c, segs, y.data()), std::invalid_argument);
  c.idx = {1, 5000};
  c.val = {1.0f, 2.0f};  // out of range
  EXPECT_THROW(axpy_compressed_cpu(1.0f, c, segs, y.data()), std::invalid_argument);
  c.idx = {5, 5};  // not ascending
  EXPECT_THROW(axpy_compressed_cpu(1.0f, c, segs, y.data()), std::invalid_argument);
}

}  // namespace
}  // namespace spush::kernels
