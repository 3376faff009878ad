// Top-K selection (topk_cpu, topk_batched_cpu) and the per-segment counts (topk_count,
// topk_offsets) against independent references: a full stable sort of the indices by |x|
// descending (so equal magnitudes keep the lower index first), truncated to K and re-sorted
// by index; counts against exact integer arithmetic on rational densities.
#include "spush/kernels/topk.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "spush/kernels/backend.h"
#include "spush/kernels/segments.h"

namespace spush::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Selection {
  std::vector<int32_t> idx;
  std::vector<float> val;
};

// Reference: stable sort by |x| descending, first k, indices ascending.
Selection reference_topk(const float* x, int64_t n, int64_t k, int64_t base = 0) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [x](int32_t a, int32_t b) { return std::fabs(x[a]) > std::fabs(x[b]); });
  order.resize(static_cast<size_t>(k));
  std::sort(order.begin(), order.end());
  Selection s;
  for (int32_t i : order) {
    s.idx.push_back(static_cast<int32_t>(base + i));
    s.val.push_back(x[i]);
  }
  return s;
}

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

// Values compared bit for bit (so -0.0 != +0.0 and the sign of a kept zero is checked).
void expect_same(const Selection& want, const int32_t* idx, const float* val, int64_t k,
                 const std::string& what) {
  ASSERT_EQ(static_cast<int64_t>(want.idx.size()), k) << what;
  for (int64_t j = 0; j < k; ++j) {
    ASSERT_EQ(idx[j], want.idx[j]) << what << " position " << j;
    ASSERT_EQ(bits_of(val[j]), bits_of(want.val[j]))
        << what << " position " << j << ": " << val[j] << " vs " << want.val[j];
  }
}

Selection run_topk(const std::vector<float>& x, int64_t k) {
  Selection s;
  s.idx.assign(static_cast<size_t>(k), -7);  // poison: unwritten entries are caught
  s.val.assign(static_cast<size_t>(k), kNaN);
  topk_cpu(x.data(), static_cast<int64_t>(x.size()), k, s.idx.data(), s.val.data());
  return s;
}

void check_topk(const std::vector<float>& x, int64_t k, const std::string& what) {
  const Selection got = run_topk(x, k);
  expect_same(reference_topk(x.data(), static_cast<int64_t>(x.size()), k), got.idx.data(),
              got.val.data(), k,
              what + " n=" + std::to_string(x.size()) + " k=" + std::to_string(k));
}

// ---- counts ----------------------------------------------------------------------------

TEST(TopkCount, MatchesExactRationalCeiling) {
  // density = p / q exactly; K = max(1, ceil(p * len / q)) in integers, clamped to len.
  const int64_t p[] = {1, 1, 1, 3, 1, 7, 1, 9, 1};
  const int64_t q[] = {1000, 100, 10, 10, 2, 100, 1, 10, 3};
  for (size_t t = 0; t < std::size(p); ++t) {
    const double density = static_cast<double>(p[t]) / static_cast<double>(q[t]);
    for (int64_t len = 0; len <= 2000; ++len) {
      int64_t want = len == 0 ? 0 : std::max<int64_t>(1, (p[t] * len + q[t] - 1) / q[t]);
      want = std::min(want, len);
      ASSERT_EQ(topk_count(len, density), want)
          << "len " << len << " density " << p[t] << "/" << q[t];
    }
  }
}

TEST(TopkCount, KnownValues) {
  EXPECT_EQ(topk_count(0, 0.5), 0);
  EXPECT_EQ(topk_count(1, 0.001), 1);
  EXPECT_EQ(topk_count(100, 0.01), 1);
  EXPECT_EQ(topk_count(101, 0.01), 2);
  EXPECT_EQ(topk_count(100, 0.07), 7);  // 0.07 * 100 == 7.000000000000001 in double
  EXPECT_EQ(topk_count(10, 0.25), 3);
  EXPECT_EQ(topk_count(1000, 1.0), 1000);
  EXPECT_EQ(topk_count(270000, 0.001), 270);
  EXPECT_EQ(topk_count(int64_t{1} << 40, 0.5), int64_t{1} << 39);
}

TEST(TopkCount, RejectsBadInput) {
  EXPECT_THROW(topk_count(10, 0.0), std::invalid_argument);
  EXPECT_THROW(topk_count(10, -0.5), std::invalid_argument);
  EXPECT_THROW(topk_count(10, 1.5), std::invalid_argument);
  EXPECT_THROW(topk_count(10, kNaN), std::invalid_argument);
  EXPECT_THROW(topk_count(-1, 0.5), std::invalid_argument);
  try {
    topk_count(10, 2.0);
    FAIL() << "density 2 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("(0, 1]"), std::string::npos) << e.what();
  }
}

TEST(TopkOffsets, PrefixSumsOfCounts) {
  const int64_t off[] = {0, 10, 10, 110, 111, 1111};
  const SegmentView segs{off, 5};
  EXPECT_EQ(topk_offsets(segs, 0.05), (std::vector<int64_t>{0, 1, 1, 6, 7, 57}));
  EXPECT_EQ(topk_offsets(segs, 1.0), (std::vector<int64_t>{0, 10, 10, 110, 111, 1111}));
  EXPECT_EQ(topk_offsets(SegmentView{}, 0.5), (std::vector<int64_t>{0}));
  const int64_t bad[] = {0, 10, 5};
  EXPECT_THROW(topk_offsets(SegmentView{bad, 2}, 0.5), std::invalid_argument);
  EXPECT_THROW(topk_offsets(segs, 0.0), std::invalid_argument);
}

// ---- global selection ------------------------------------------------------------------

TEST(TopkCpu, RandomSizesMatchSort) {
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const int64_t n = std::uniform_int_distribution<int64_t>(1, 3000)(rng);
    const int64_t k = std::uniform_int_distribution<int64_t>(1, n)(rng);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = normal(rng);
    // Some repeated magnitudes with both signs, so ties occur near the threshold.
    for (int64_t i = 0; i < n / 8; ++i) {
      const size_t a = rng() % n, b = rng() % n;
      x[a] = (rng() & 1) ? x[b] : -x[b];
    }
    check_topk(x, k, "random");
    check_topk(x, 1, "k=1");
    check_topk(x, n, "k=n");
  }
}

TEST(TopkCpu, QuantizedValuesManyTies) {
  // Few distinct magnitudes: every K lands inside a large tie group.
  std::mt19937 rng(7);
  std::vector<float> x(2000);
  for (float& v : x) v = static_cast<float>(static_cast<int>(rng() % 9) - 4) * 0.25f;
  for (int64_t k : {1, 2, 17, 100, 999, 1000, 1001, 1999, 2000}) check_topk(x, k, "ties");
}

TEST(TopkCpu, KZeroIsRejectedForNonEmptyInput) {
  // K = 0 is valid only for n = 0 (topk.h); otherwise an error, and nothing is written.
  std::vector<float> x{1.0f, 2.0f};
  int32_t idx = -7;
  float val = 5.0f;
  EXPECT_THROW(topk_cpu(x.data(), 2, 0, &idx, &val), std::invalid_argument);
  EXPECT_EQ(idx, -7);
  EXPECT_EQ(val, 5.0f);
  topk_cpu(nullptr, 0, 0, nullptr, nullptr);
}

TEST(TopkCpu, AllEqualKeysTakeLowestIndices) {
  std::vector<float> x(257);
  for (size_t i = 0; i < x.size(); ++i) x[i] = (i % 3 == 0) ? -1.5f : 1.5f;
  for (int64_t k : {1, 5, 128, 256, 257}) {
    const Selection s = run_topk(x, k);
    for (int64_t j = 0; j < k; ++j) {
      ASSERT_EQ(s.idx[j], j) << "k=" << k;
      ASSERT_EQ(s.val[j], x[j]);
    }
  }
}

TEST(TopkCpu, TiesAtKthMagnitudeGoToLowerIndex) {
  const std::vector<float> x{1.0f, 3.0f, 2.0f, -2.0f, 2.0f, -2.0f, 0.5f};
  Selection s = run_topk(x, 3);
  EXPECT_EQ(s.idx, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(s.val, (std::vector<float>{3.0f, 2.0f, -2.0f}));
  s = run_topk(x, 4);
  EXPECT_EQ(s.idx, (std::vector<int32_t>{1, 2, 3, 4}));
  s = run_topk(x, 6);
  EXPECT_EQ(s.idx, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
}

TEST(TopkCpu, InfinitiesAreLargestAndTie) {
  const std::vector<float> x{1.0f, -kInf, 3e38f, kInf, -5.0f};
  Selection s = run_topk(x, 1);
  EXPECT_EQ(s.idx, (std::vector<int32_t>{1}));
  EXPECT_EQ(s.val[0], -kInf);
  s = run_topk(x, 2);
  EXPECT_EQ(s.idx, (std::vector<int32_t>{1, 3}));
  s = run_topk(x, 3);
  EXPECT_EQ(s.idx, (std::vector<int32_t>{1, 2, 3}));
}

TEST(TopkCpu, SignedZerosTieAndKeepTheirSign) {
  const std::vector<float> x{-0.0f, 0.0f, -0.0f, 0.0f};
  Selection s = run_topk(x, 2);
  EXPECT_EQ(s.idx, (std::vector<int32_t>{0, 1}));
  EXPECT_TRUE(std::signbit(s.val[0]));
  EXPECT_FALSE(std::signbit(s.val[1]));
  const float tiny = std::numeric_limits<float>::denorm_min();
  const std::vector<float> y{0.0f, -0.0f, -tiny, 0.0f, tiny};
  s = run_topk(y, 2);
  EXPECT_EQ(s.idx, (std::vector<int32_t>{2, 4}));
  s = run_topk(y, 3);
  EXPECT_EQ(s.idx, (std::vector<int32_t>{0, 2, 4}));
  check_topk(y, 4, "zeros");
}

TEST(TopkCpu, Denormals) {
  std::mt19937 rng(11);
  const float dmin = std::numeric_limits<float>::denorm_min();
  const float fmin = std::numeric_limits<float>::min();
  std::vector<float> x(1500);
  for (float& v : x) {
    switch (rng() % 4) {
      case 0:
        v = dmin * static_cast<float>(rng() % 50);
        break;  // tiny denormals, many ties
      case 1:
        v = fmin * std::uniform_real_distribution<float>(0.0f, 1.0f)(rng);
        break;
      case 2:
        v = fmin * std::uniform_real_distribution<float>(1.0f, 4.0f)(rng);
        break;
      default:
        v = 0.0f;
    }
    if (rng() & 1) v = -v;
  }
  for (int64_t k : {1, 10, 300, 700, 1200, 1500}) check_topk(x, k, "denormals");
}

TEST(TopkCpu, SharedLeadingBits) {
  // 1 + i ulp, shuffled, random signs: all keys share the top 23+ bits and differ only in
  // the lowest digits; the same in a narrow band that crosses a byte boundary of the bits.
  std::mt19937 rng(5);
  std::vector<float> x;
  float v = 1.0f;
  for (int i = 0; i < 1000; ++i, v = std::nextafter(v, 2.0f)) x.push_back(v);
  float w = std::nextafter(1.0f + 255.0f * 1.1920929e-7f, 0.0f);
  for (int i = 0; i < 600; ++i, w = std::nextafter(w, 2.0f)) x.push_back(w);
  std::shuffle(x.begin(), x.end(), rng);
  for (float& f : x) f = (rng() & 1) ? -f : f;
  for (int64_t k : {1, 2, 255, 256, 257, 800, 1599, 1600}) check_topk(x, k, "leading bits");
  // Keys that differ only in the top digit (exponent) and otherwise equal.
  std::vector<float> y;
  for (int e = -20; e <= 20; ++e) {
    for (int r = 0; r < 5; ++r) y.push_back(std::ldexp(1.0f, e) * ((r & 1) ? -1.0f : 1.0f));
  }
  std::shuffle(y.begin(), y.end(), rng);
  for (int64_t k : {1, 3, 5, 6, 100, 205}) check_topk(y, k, "exponents");
}

TEST(TopkCpu, LargeRow) {
  std::mt19937 rng(3);
  std::vector<float> x(300000);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  check_topk(x, 3000, "large");
}

TEST(TopkCpu, RejectsNaNNamingPosition) {
  for (float bad : {kNaN, -kNaN}) {
    std::vector<float> x(40, 1.0f);
    x[17] = bad;
    std::vector<int32_t> idx(5);
    std::vector<float> val(5);
    try {
      topk_cpu(x.data(), 40, 5, idx.data(), val.data());
      FAIL() << "NaN accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("index 17"), std::string::npos) << e.what();
    }
    // k == n rejects it too (k == 0 is an error for n > 0 anyway).
    EXPECT_THROW(topk_cpu(x.data(), 40, 0, idx.data(), val.data()), std::invalid_argument);
    std::vector<int32_t> all_idx(40);
    std::vector<float> all_val(40);
    EXPECT_THROW(topk_cpu(x.data(), 40, 40, all_idx.data(), all_val.data()), std::invalid_argument);
  }
}

TEST(TopkCpu, RejectsBadK) {
  std::vector<float> x(4, 1.0f);
  std::vector<int32_t> idx(5);
  std::vector<float> val(5);
  EXPECT_THROW(topk_cpu(x.data(), 4, 5, idx.data(), val.data()), std::invalid_argument);
  EXPECT_THROW(topk_cpu(x.data(), 4, -1, idx.data(), val.data()), std::invalid_argument);
}

// ---- batched, segmented ----------------------------------------------------------------

// Random segment table of total length d with empty and length-1 segments mixed in.
std::vector<int64_t> random_offsets(std::mt19937& rng, int nseg, int64_t max_len) {
  std::vector<int64_t> off{0};
  for (int s = 0; s < nseg; ++s) {
    int64_t len;
    switch (rng() % 5) {
      case 0:
        len = 0;
        break;
      case 1:
        len = 1;
        break;
      default:
        len = std::uniform_int_distribution<int64_t>(2, max_len)(rng);
    }
    off.push_back(off.back() + len);
  }
  return off;
}

void check_batched(const std::vector<float>& x, int64_t rows, int64_t ld,
                   const std::vector<int64_t>& off, const std::vector<int64_t>& koff,
                   const std::string& what) {
  const SegmentView segs{off.data(), static_cast<int>(off.size()) - 1};
  const int64_t k_row = koff.back();
  std::vector<int32_t> idx(static_cast<size_t>(rows * k_row), -7);
  std::vector<float> val(static_cast<size_t>(rows * k_row), kNaN);
  topk_batched_cpu(x.data(), rows, ld, segs, koff.data(), idx.data(), val.data());
  for (int64_t r = 0; r < rows; ++r) {
    for (int s = 0; s < segs.count; ++s) {
      const int64_t k = koff[s + 1] - koff[s];
      const int64_t out = r * k_row + koff[s];
      const Selection want = reference_topk(x.data() + r * ld + off[s], segs.length(s), k, off[s]);
      expect_same(want, idx.data() + out, val.data() + out, k,
                  what + " row " + std::to_string(r) + " segment " + std::to_string(s));
    }
  }
}

TEST(TopkBatchedCpu, RowsWithPaddingAndSegments) {
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const std::vector<int64_t> off = random_offsets(rng, 1 + static_cast<int>(rng() % 20), 400);
    const int64_t d = off.back();
    const int64_t rows = 1 + rng() % 6;
    const int64_t ld = d + rng() % 40 + 1;
    std::vector<float> x(static_cast<size_t>(rows * ld));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < ld; ++i) {
        // Padding columns hold NaN: they are outside every segment and must be ignored.
        x[r * ld + i] = i < d ? normal(rng) : kNaN;
      }
    }
    const SegmentView segs{off.data(), static_cast<int>(off.size()) - 1};
    for (double density : {0.001, 0.05, 0.3, 1.0}) {
      check_batched(x, rows, ld, off, topk_offsets(segs, density),
                    "density " + std::to_string(density));
    }
  }
}

TEST(TopkBatchedCpu, ManyRowsParallel) {
  // Enough work to take the OpenMP path; the result must not depend on the schedule.
  std::mt19937 rng(99);
  const std::vector<int64_t> off{0, 1, 1, 5000, 5001, 20000, 20000, 40000};
  const int64_t rows = 8, ld = 40003;
  std::vector<float> x(static_cast<size_t>(rows * ld));
  for (float& v : x) v = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) * 1e-3f;
  const SegmentView segs{off.data(), 7};
  check_batched(x, rows, ld, off, topk_offsets(segs, 0.01), "parallel");
}

TEST(TopkBatchedCpu, GlobalIsOneSegment) {
  std::mt19937 rng(4);
  std::vector<float> x(1000);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  const int64_t off[2] = {0, 1000};
  const std::vector<int64_t> koff = topk_offsets(SegmentView{off, 1}, 0.01);
  ASSERT_EQ(koff, (std::vector<int64_t>{0, 10}));
  std::vector<int32_t> idx(10);
  std::vector<float> val(10);
  topk_batched_cpu(x.data(), 1, 1000, SegmentView{off, 1}, koff.data(), idx.data(), val.data());
  expect_same(reference_topk(x.data(), 1000, 10), idx.data(), val.data(), 10, "global");
}

TEST(TopkBatchedCpu, RejectsNaNNamingRowAndIndex) {
  const std::vector<int64_t> off{0, 3, 10};
  const std::vector<int64_t> koff{0, 1, 2};
  const int64_t rows = 4, ld = 12;
  std::vector<float> x(rows * ld, 1.0f);
  x[2 * ld + 5] = kNaN;
  x[3 * ld + 1] = kNaN;  // a later NaN; the first in (row, index) order is reported
  std::vector<int32_t> idx(rows * 2);
  std::vector<float> val(rows * 2);
  try {
    topk_batched_cpu(x.data(), rows, ld, SegmentView{off.data(), 2}, koff.data(), idx.data(),
                     val.data());
    FAIL() << "NaN accepted";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("row 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("index 5"), std::string::npos) << msg;
  }
}

TEST(TopkBatchedCpu, RejectsBadTables) {
  std::vector<float> x(20, 1.0f);
  std::vector<int32_t> idx(20);
  std::vector<float> val(20);
  const std::vector<int64_t> off{0, 3, 10};
  const std::vector<int64_t> too_many{0, 4, 5};  // segment 0 has length 3
  EXPECT_THROW(topk_batched_cpu(x.data(), 1, 10, SegmentView{off.data(), 2}, too_many.data(),
                                idx.data(), val.data()),
               std::invalid_argument);
  const std::vector<int64_t> koff{0, 1, 2};
  EXPECT_THROW(topk_batched_cpu(x.data(), 2, 9, SegmentView{off.data(), 2}, koff.data(), idx.data(),
                                val.data()),
               std::invalid_argument);  // ld < d
  const std::vector<int64_t> decreasing{0, 5, 3};
  EXPECT_THROW(topk_batched_cpu(x.data(), 1, 10, SegmentView{decreasing.data(), 2}, koff.data(),
                                idx.data(), val.data()),
               std::invalid_argument);
}

TEST(TopkBatchedCpu, RejectsKZeroForANonEmptySegment) {
  // topk_offsets never gives K = 0 for a non-empty segment (max(1, ceil(density * len)));
  // a hand-made table that does is an error naming the segment, not an empty selection.
  std::vector<float> x(10, 1.0f);
  x[4] = -3.0f;
  std::vector<int32_t> idx(10, -7);
  std::vector<float> val(10, kNaN);
  const std::vector<int64_t> off{0, 3, 3, 10};
  const std::vector<int64_t> zero_k{0, 1, 1, 1};  // segment 2 (length 7) keeps 0
  try {
    topk_batched_cpu(x.data(), 1, 10, SegmentView{off.data(), 3}, zero_k.data(), idx.data(),
                     val.data());
    FAIL() << "K = 0 for a non-empty segment accepted";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("segment 2 of length 7"), std::string::npos) << msg;
    EXPECT_NE(msg.find("K = 0"), std::string::npos) << msg;
  }
  EXPECT_EQ(idx[0], -7) << "nothing is written before the check";
  // K = 0 for the empty segment 1 is the one valid K there.
  const std::vector<int64_t> koff = topk_offsets(SegmentView{off.data(), 3}, 0.1);
  ASSERT_EQ(koff, (std::vector<int64_t>{0, 1, 1, 2}));
  check_batched(x, 1, 10, off, koff, "empty segment with K = 0");
  // Global form: k = 0 only for n = 0.
  EXPECT_THROW(topk_cpu(x.data(), 10, 0, idx.data(), val.data()), std::invalid_argument);
  EXPECT_NO_THROW(topk_cpu(x.data(), 0, 0, idx.data(), val.data()));
  // The cpu backend turns the exception into its error word, with the text.
  auto be = make_cpu_backend();
  be->topk_batched(x.data(), 1, 10, SegmentView{off.data(), 3}, zero_k.data(), idx.data(),
                   val.data(), nullptr, 0, be->error_word());
  const BackendErrors err = be->take_errors();
  EXPECT_TRUE(err.any());
  EXPECT_NE(err.detail.find("K = 0"), std::string::npos) << err.detail;
}

TEST(TopkCuda, ThrowsWithoutCudaBuild) {
  if (cuda_compiled()) GTEST_SKIP() << "CUDA build: covered by the GPU tests";
  EXPECT_THROW(topk_batched_workspace_size(1, 10, 1, 10), std::runtime_error);
  EXPECT_THROW(topk_batched_cuda(nullptr, 1, 10, SegmentView{}, nullptr, nullptr, nullptr, nullptr,
                                 0, nullptr, nullptr),
               std::runtime_error);
}

}  // namespace
}  // namespace spush::kernels
