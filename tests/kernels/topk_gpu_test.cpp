// Top-K on the GPU (topk_batched_cuda) against the CPU implementation (topk_batched_cpu), which
// its own tests check against a full sort: indices compared exactly and values bit for bit, on
// random inputs of many sizes (one item, many items, ragged last items), batched rows with
// padding, layer tables with empty and length-1 segments, and the top-K edge cases (ties at
// the K-th magnitude across work items, all-equal keys, +-inf, -0.0, denormals, narrow ranges,
// K = 0 for empty segments, 1, length). NaN, inconsistent tables and K = 0 for a non-empty
// segment set the error flag.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "spush/kernels/segments.h"
#include "spush/kernels/topk.h"

namespace spush::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

using Result = test::TopkResult;

Result run_gpu(const std::vector<float>& x, int64_t rows, int64_t ld,
               const std::vector<int64_t>& off, const std::vector<int64_t>& koff,
               cudaStream_t stream = nullptr) {
  return test::run_topk_gpu(x, rows, ld, off, koff, stream);
}

void expect_matches_cpu(const std::vector<float>& x, int64_t rows, int64_t ld,
                        const std::vector<int64_t>& off, const std::vector<int64_t>& koff,
                        const std::string& what) {
  const int nseg = static_cast<int>(off.size()) - 1;
  const size_t k_total = static_cast<size_t>(rows * koff.back());
  std::vector<int32_t> idx(k_total, -7);
  std::vector<float> val(k_total, std::numeric_limits<float>::quiet_NaN());
  topk_batched_cpu(x.data(), rows, ld, SegmentView{off.data(), nseg}, koff.data(), idx.data(),
                   val.data());
  const Result g = run_gpu(x, rows, ld, off, koff);
  ASSERT_EQ(g.flag, 0) << what;
  for (size_t j = 0; j < k_total; ++j) {
    ASSERT_EQ(g.idx[j], idx[j]) << what << " position " << j;
    ASSERT_EQ(bits_of(g.val[j]), bits_of(val[j]))
        << what << " position " << j << ": " << g.val[j] << " vs " << val[j];
  }
}

std::vector<int64_t> global_table(int64_t n) { return {0, n}; }

std::vector<float> normal_values(uint32_t seed, size_t n) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<float> x(n);
  for (auto& v : x) v = dist(rng);
  return x;
}

// Value generators for the distributions of the top-K edge cases.
std::vector<float> distribution(int kind, uint32_t seed, size_t n) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::cauchy_distribution<float> cauchy;
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t r = rng();
    switch (kind) {
      case 0:
        x[i] = r % 2 ? normal(rng) : (r % 4 ? 0.0f : -0.0f);
        break;  // 50% signed zeros
      case 1:
        x[i] = cauchy(rng);
        break;  // heavy tails
      case 2:
        x[i] = 1.0f + static_cast<float>(r % 64) * 1.1920929e-7f;
        break;  // narrow range
      case 3:
        x[i] = -2.5f;
        break;  // all equal
      case 4:
        x[i] = static_cast<float>(static_cast<int>(r % 9) - 4);
        break;  // many ties
      case 5:
        x[i] = r % 97 == 0 ? (r % 2 ? kInf : -kInf) : normal(rng);
        break;  // +-inf
      case 6:
        x[i] = std::ldexp(static_cast<float>(r % 1000 + 1), -149 + static_cast<int>(r % 3));
        break;  // denormals
      default:  // one shared leading pattern, differences only in the low mantissa bits
        x[i] = std::bit_cast<float>(0x40490000u | (r & 0xFFFFu)) * (r & 0x10000u ? -1.0f : 1.0f);
    }
  }
  return x;
}

TEST(TopkGpu, GlobalRandomSizesAndDensities) {
  SPUSH_REQUIRE_GPU();
  for (int64_t n : {1, 2, 3, 31, 255, 256, 257, 8191, 8192, 8193, 16385, 100003, 269722, 1 << 20}) {
    const uint32_t seed = static_cast<uint32_t>(n * 7919 + 1);
    const std::vector<float> x = normal_values(seed, static_cast<size_t>(n));
    const auto off = global_table(n);
    std::vector<int64_t> ks{1, n};
    for (double rho : {0.001, 0.01, 0.1}) ks.push_back(topk_count(n, rho));
    for (int64_t k : ks) {
      expect_matches_cpu(
          x, 1, n, off, {0, k},
          "n=" + std::to_string(n) + " k=" + std::to_string(k) + " seed=" + std::to_string(seed));
    }
  }
}

TEST(TopkGpu, EdgeCaseDistributions) {
  SPUSH_REQUIRE_GPU();
  for (int kind = 0; kind < 8; ++kind) {
    for (int64_t n : {1000, 100003, 1 << 18}) {
      const uint32_t seed = static_cast<uint32_t>(kind * 1000 + n);
      const std::vector<float> x = distribution(kind, seed, static_cast<size_t>(n));
      for (int64_t k : {int64_t{1}, topk_count(n, 0.01), topk_count(n, 0.5), n}) {
        expect_matches_cpu(x, 1, n, global_table(n), {0, k},
                           "distribution " + std::to_string(kind) + " n=" + std::to_string(n) +
                               " k=" + std::to_string(k) + " seed=" + std::to_string(seed));
      }
    }
  }
}

TEST(TopkGpu, TiesAcrossManyWorkItems) {
  SPUSH_REQUIRE_GPU();
  // 2^22 + 5 equal magnitudes of both signs: the lowest K indices win, across ~500 work items.
  const int64_t n = (int64_t{1} << 22) + 5;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[i] = i % 3 ? 0.75f : -0.75f;
  x[n - 1] = 0.5f;  // one smaller key at the very end
  for (int64_t k : {int64_t{1}, int64_t{8191}, int64_t{8193}, n / 2, n - 1, n})
    expect_matches_cpu(x, 1, n, global_table(n), {0, k}, "all-equal k=" + std::to_string(k));
}

TEST(TopkGpu, BatchedRowsWithLayerSegments) {
  SPUSH_REQUIRE_GPU();
  // A layer table with empty, length-1 and multi-item segments; 16 rows with padding.
  const std::vector<int64_t> lens{432, 32, 0, 2304, 1, 1, 9216, 0, 36864, 8192, 8193, 640, 10, 0};
  std::vector<int64_t> off{0};
  for (int64_t len : lens) off.push_back(off.back() + len);
  const int64_t d = off.back(), ld = d + 13, rows = 16;
  const SegmentView segs{off.data(), static_cast<int>(lens.size())};
  std::vector<float> x = normal_values(77, static_cast<size_t>(rows * ld));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = d; j < ld; ++j) x[r * ld + j] = 1e30f;  // padding is never selected
  for (double rho : {0.001, 0.01, 0.1, 1.0}) {
    expect_matches_cpu(x, rows, ld, off, topk_offsets(segs, rho),
                       "layers rho=" + std::to_string(rho));
  }
  // Hand-made counts: K = length, K = 1, K = 2 (K = 0 only where the segment is empty).
  std::vector<int64_t> koff{0};
  for (size_t s = 0; s < lens.size(); ++s) {
    const int64_t len = lens[s];
    const int64_t k =
        s % 3 == 0 ? std::min<int64_t>(len, 2) : (s % 3 == 1 ? len : std::min<int64_t>(len, 1));
    koff.push_back(koff.back() + k);
  }
  expect_matches_cpu(x, rows, ld, off, koff, "layers with K in {0 if empty, 1, 2, len}");
  // K = 0 for a non-empty segment is an inconsistent table (topk.h): flag 2, nothing written.
  // Segment 3 (length 2304) keeps 0: its K (2, as s % 3 == 0) comes off every later offset.
  std::vector<int64_t> zero_k = koff;
  const int64_t k3 = koff[4] - koff[3];
  ASSERT_EQ(k3, 2);
  for (size_t s = 4; s < zero_k.size(); ++s) zero_k[s] -= k3;
  ASSERT_EQ(zero_k[4] - zero_k[3], 0);
  const Result bad = run_gpu(x, rows, ld, off, zero_k);
  EXPECT_EQ(bad.flag, 2);
  for (size_t j = 0; j < bad.idx.size(); ++j) ASSERT_EQ(bad.idx[j], -1) << "written at " << j;
}

TEST(TopkGpu, RandomTablesAndRows) {
  SPUSH_REQUIRE_GPU();
  std::mt19937 rng(2024);
  for (int trial = 0; trial < 20; ++trial) {
    const int nseg = 1 + static_cast<int>(rng() % 40);
    std::vector<int64_t> off{0};
    for (int s = 0; s < nseg; ++s) {
      const uint32_t r = rng();
      off.push_back(off.back() + (r % 7 == 0 ? 0 : (r % 5 == 0 ? 1 : r % 30000)));
    }
    const int64_t rows = 1 + rng() % 5, ld = off.back() + rng() % 9;
    const std::vector<float> x =
        distribution(static_cast<int>(rng() % 8), rng(), static_cast<size_t>(rows * ld));
    const double rho = std::vector<double>{0.001, 0.01, 0.1, 0.3}[rng() % 4];
    expect_matches_cpu(x, rows, ld, off, topk_offsets(SegmentView{off.data(), nseg}, rho),
                       "trial " + std::to_string(trial));
  }
}

TEST(TopkGpu, NonDefaultStreamAndRepeatedRuns) {
  SPUSH_REQUIRE_GPU();
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));
  const int64_t n = 300001;
  const std::vector<float> x = normal_values(5, static_cast<size_t>(n));
  const std::vector<int64_t> koff{0, topk_count(n, 0.01)};
  const Result a = run_gpu(x, 1, n, global_table(n), koff, stream);
  const Result b = run_gpu(x, 1, n, global_table(n), koff, stream);
  CUDA_CHECK(cudaStreamDestroy(stream));
  EXPECT_EQ(a.idx, b.idx);
  for (size_t j = 0; j < a.val.size(); ++j) ASSERT_EQ(bits_of(a.val[j]), bits_of(b.val[j]));
  expect_matches_cpu(x, 1, n, global_table(n), koff, "default stream");
}

TEST(TopkGpu, NaNSetsTheErrorFlag) {
  SPUSH_REQUIRE_GPU();
  const std::vector<int64_t> off{0, 5000, 20000};
  std::vector<float> x = normal_values(9, 3 * 20000);
  x[2 * 20000 + 12345] = std::numeric_limits<float>::quiet_NaN();  // row 2, second segment
  const Result r = run_gpu(x, 3, 20000, off, topk_offsets(SegmentView{off.data(), 2}, 0.01));
  EXPECT_EQ(r.flag, 1);
  x[2 * 20000 + 12345] = kInf;  // +-inf is a valid key for top-K
  EXPECT_EQ(run_gpu(x, 3, 20000, off, topk_offsets(SegmentView{off.data(), 2}, 0.01)).flag, 0);
}

TEST(TopkGpu, InconsistentTablesSetTheErrorFlag) {
  SPUSH_REQUIRE_GPU();
  const std::vector<float> x = normal_values(3, 1000);
  EXPECT_EQ(run_gpu(x, 1, 1000, {0, 600, 1000}, {0, 601, 602}).flag, 2);  // K > length
  EXPECT_EQ(run_gpu(x, 1, 1000, {0, 600, 500}, {0, 1, 2}).flag, 2);       // decreasing
  EXPECT_EQ(run_gpu(x, 1, 500, {0, 500, 1000}, {0, 1, 2}).flag, 2);       // row longer than ld
  // The device is still usable afterwards.
  // k_offsets are cumulative: K = 6 for [0, 600) and K = 4 for [600, 1000).
  expect_matches_cpu(x, 1, 1000, {0, 600, 1000}, {0, 6, 10}, "after errors");
}

TEST(TopkGpu, RejectsSmallWorkspaceAndBadArguments) {
  SPUSH_REQUIRE_GPU();
  test::DeviceBuffer<float> x(100);
  test::DeviceBuffer<int64_t> off(std::vector<int64_t>{0, 100}), koff(std::vector<int64_t>{0, 1});
  test::DeviceBuffer<int32_t> idx(1);
  test::DeviceBuffer<float> val(1);
  test::DeviceBuffer<int> flag(1);
  test::DeviceBuffer<uint8_t> ws(16);
  EXPECT_THROW(topk_batched_cuda(x.get(), 1, 100, SegmentView{off.get(), 1}, koff.get(), idx.get(),
                                 val.get(), ws.get(), 16, flag.get(), nullptr),
               std::invalid_argument);
  EXPECT_THROW(topk_batched_workspace_size(-1, 100, 1, 100), std::invalid_argument);
  EXPECT_THROW(topk_batched_workspace_size(1, 100, 1, 101), std::invalid_argument);
}

}  // namespace
}  // namespace spush::kernels
