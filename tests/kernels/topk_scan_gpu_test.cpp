// Top-K on the GPU where the per-segment scans carry sums from one block-wide pass to the next
// (kernels/cuda/topk_compact.cu: the count kernel scans a segment's work items 1024 at a time,
// kThreads x kScanPer, carrying the ties and kept counts; kernels/cuda/topk_select.cu: the setup
// kernel scans the segments' chunk counts 256 at a time): a segment of more than 1024 work
// items (8192 elements each), with ties and survivors on both sides of item 1024, batched rows
// whose later segments start after such a segment, a table of more than 256 segments, the same
// through compress_ef_cuda's fused error feedback, and K = 0 for a non-empty segment, which both
// entry points reject through the error flag. All against the CPU implementations, bit for bit.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "spush/kernels/compress.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/segments.h"
#include "spush/kernels/topk.h"

namespace spush::kernels {
namespace {

using test::bits_of;

constexpr int64_t kItem = 8192;                 // elements per work item (topk_internal.cuh kChunk)
constexpr int64_t kScanItems = 1024;            // items per pass of the count kernel's scan
constexpr int64_t kLong = 1100 * kItem + 4321;  // a segment of 1101 work items

using Result = test::TopkResult;

Result run_gpu(const std::vector<float>& x, int64_t rows, int64_t ld,
               const std::vector<int64_t>& off, const std::vector<int64_t>& koff,
               cudaStream_t stream = nullptr) {
  return test::run_topk_gpu(x, rows, ld, off, koff, stream);
}

void expect_matches_cpu(const std::vector<float>& x, int64_t rows, int64_t ld,
                        const std::vector<int64_t>& off, const std::vector<int64_t>& koff,
                        const std::string& what) {
  SCOPED_TRACE(what);
  const int nseg = static_cast<int>(off.size()) - 1;
  const size_t k_total = static_cast<size_t>(rows * koff.back());
  std::vector<int32_t> idx(k_total, -7);
  std::vector<float> val(k_total);
  topk_batched_cpu(x.data(), rows, ld, SegmentView{off.data(), nseg}, koff.data(), idx.data(),
                   val.data());
  const Result g = run_gpu(x, rows, ld, off, koff);
  ASSERT_EQ(g.flag, 0);
  for (size_t j = 0; j < k_total; ++j) {
    ASSERT_EQ(g.idx[j], idx[j]) << "position " << j;
    ASSERT_EQ(bits_of(g.val[j]), bits_of(val[j])) << "position " << j;
  }
}

std::vector<float> normal_values(uint32_t seed, size_t n) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

TEST(TopkScanGpu, SegmentOfMoreThan1024WorkItems) {
  SPUSH_REQUIRE_GPU();
  const int64_t n = kLong;
  ASSERT_GT((n + kItem - 1) / kItem, kScanItems);
  // Equal magnitudes of both signs: the kept ties are the lowest indices, so the cut at K lies
  // in the item K / 8192, and the items past 1024 only keep the right ties when the tie count
  // of items 0..1023 is carried into the second pass of the scan.
  std::vector<float> ties(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ties[i] = i % 3 ? 0.5f : -0.5f;
  ties[n - 2] = 0.25f;  // a smaller key near the end
  for (int64_t k : {kScanItems * kItem - 1, kScanItems * kItem, kScanItems * kItem + 77,
                    1050 * kItem + 4096, n - 2, n - 1, n}) {
    expect_matches_cpu(ties, 1, n, {0, n}, {0, k}, "ties, K = " + std::to_string(k));
  }
  // Random values: every item has survivors above the threshold, and the output offsets of
  // items past 1024 need the carried kept count.
  const std::vector<float> x = normal_values(11, static_cast<size_t>(n));
  for (double rho : {0.001, 0.01, 0.2}) {
    expect_matches_cpu(x, 1, n, {0, n}, {0, topk_count(n, rho)},
                       "normal, density " + std::to_string(rho));
  }
}

TEST(TopkScanGpu, BatchedRowsAfterALongSegment) {
  SPUSH_REQUIRE_GPU();
  // Two rows of [a 1101-item segment, an empty one, 10000, 1]: the second row's items and the
  // later segments start after the long one.
  const std::vector<int64_t> off{0, kLong, kLong, kLong + 10000, kLong + 10001};
  const int64_t rows = 2, ld = off.back() + 5;
  std::vector<float> x = normal_values(12, static_cast<size_t>(rows * ld));
  for (int64_t i = 0; i < kLong; i += 7) x[ld + i] = 3.0f;  // many ties in row 1 only
  const SegmentView segs{off.data(), 4};
  for (double rho : {0.01, 0.3}) {
    expect_matches_cpu(x, rows, ld, off, topk_offsets(segs, rho),
                       "rows, density " + std::to_string(rho));
  }
}

TEST(TopkScanGpu, MoreSegmentsThanTheSetupBlock) {
  SPUSH_REQUIRE_GPU();
  // 700 segments: the setup kernel's chunk scan runs three passes of 256, carrying the running
  // chunk count; a few multi-item segments sit in each pass.
  std::mt19937 rng(13);
  std::vector<int64_t> off{0};
  for (int s = 0; s < 700; ++s) {
    const uint32_t r = rng();
    const int64_t len = s % 97 == 5 ? 30000 + r % 5000 : (r % 9 == 0 ? 0 : r % 2000);
    off.push_back(off.back() + len);
  }
  const int64_t rows = 3, ld = off.back() + 3;
  const std::vector<float> x = normal_values(14, static_cast<size_t>(rows * ld));
  const SegmentView segs{off.data(), 700};
  for (double rho : {0.01, 0.5}) {
    expect_matches_cpu(x, rows, ld, off, topk_offsets(segs, rho),
                       "700 segments, density " + std::to_string(rho));
  }
}

CompressorSpec topk_spec(double density) {
  CompressorSpec s;
  s.kind = CompressorKind::kTopK;
  s.density = density;
  return s;
}

TEST(TopkScanGpu, ErrorFeedbackOverMoreThan1024WorkItems) {
  SPUSH_REQUIRE_GPU();
  // compress_ef_cuda's top-K (v = x + e formed in pass 1, e = v - c after the write pass) on
  // one long bucket, against compress_ef_cpu: message and residual bit for bit.
  const int64_t n = kLong;
  const std::vector<int64_t> off{0, n};
  const CompressorSpec spec = topk_spec(0.01);
  const std::vector<int64_t> koff = topk_offsets(SegmentView{off.data(), 1}, spec.density);
  const std::vector<float> x = normal_values(15, static_cast<size_t>(n));
  std::vector<float> e = normal_values(16, static_cast<size_t>(n));
  for (float& v : e) v *= 0.1f;
  test::DeviceBuffer<float> dx(x), de(e);
  test::DeviceBuffer<int64_t> doff(off), dkoff(koff);
  test::DeviceBuffer<int32_t> didx(static_cast<size_t>(koff.back()));
  test::DeviceBuffer<float> dval(static_cast<size_t>(koff.back()));
  test::DeviceBuffer<int> dflag(std::vector<int>{0});
  const size_t ws = compress_ef_workspace_size(spec, 1, n, 1, n);
  test::DeviceBuffer<uint8_t> dws(ws);
  DeviceMessage msg;
  msg.idx = didx.get();
  msg.val = dval.get();
  compress_ef_cuda(spec, 1, SegmentView{doff.get(), 1}, dkoff.get(), dx.get(), n, de.get(), n, msg,
                   3, 9, dws.get(), ws, dflag.get(), nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  ASSERT_EQ(dflag.download()[0], 0);
  Compressed c;
  compress_ef_cpu(spec, SegmentView{off.data(), 1}, x.data(), e.data(), c, 3, 9);
  const std::vector<int32_t> gidx = didx.download();
  const std::vector<float> gval = dval.download(), ge = de.download();
  ASSERT_EQ(c.idx.size(), gidx.size());
  for (size_t j = 0; j < gidx.size(); ++j) {
    ASSERT_EQ(gidx[j], c.idx[j]) << "position " << j;
    ASSERT_EQ(bits_of(gval[j]), bits_of(c.val[j])) << "position " << j;
  }
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(bits_of(ge[i]), bits_of(e[i])) << "e element " << i;
}

TEST(TopkScanGpu, ZeroKForANonEmptySegmentIsRejected) {
  SPUSH_REQUIRE_GPU();
  // Segment 1 (length 20000) keeps K = 0: flag 2 and nothing written, for top-K and for the
  // fused compression; K = 0 for the empty segment 2 is fine.
  const std::vector<int64_t> off{0, 5000, 25000, 25000, 30000};
  const int64_t rows = 2, ld = 30000;
  const std::vector<float> x = normal_values(17, static_cast<size_t>(rows * ld));
  const std::vector<int64_t> zero_k{0, 50, 50, 50, 100};
  const Result bad = run_gpu(x, rows, ld, off, zero_k);
  EXPECT_EQ(bad.flag, 2);
  for (size_t j = 0; j < bad.idx.size(); ++j) ASSERT_EQ(bad.idx[j], -1) << "written at " << j;
  expect_matches_cpu(x, rows, ld, off, {0, 50, 250, 250, 300}, "K = 0 for the empty segment");

  test::DeviceBuffer<float> dx(x), de(std::vector<float>(static_cast<size_t>(rows * ld), 0.0f));
  test::DeviceBuffer<int64_t> doff(off), dkoff(zero_k);
  test::DeviceBuffer<int32_t> didx(static_cast<size_t>(rows * zero_k.back()));
  test::DeviceBuffer<float> dval(static_cast<size_t>(rows * zero_k.back()));
  test::DeviceBuffer<int> dflag(std::vector<int>{0});
  const CompressorSpec spec = topk_spec(0.01);
  const size_t ws = compress_ef_workspace_size(spec, rows, ld, 4, 20000);
  test::DeviceBuffer<uint8_t> dws(ws);
  DeviceMessage msg;
  msg.idx = didx.get();
  msg.val = dval.get();
  compress_ef_cuda(spec, rows, SegmentView{doff.get(), 4}, dkoff.get(), dx.get(), ld, de.get(), ld,
                   msg, 0, 0, dws.get(), ws, dflag.get(), nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(dflag.download()[0], 2);
  for (int32_t i : didx.download()) ASSERT_EQ(i, -1);
  // The same through the cuda backend: its error word names inconsistent tables.
  Backend& be = test::gpu_backend();
  be.topk_batched(dx.get(), rows, ld, SegmentView{doff.get(), 4}, dkoff.get(), didx.get(),
                  dval.get(), dws.get(), ws, be.error_word());
  const BackendErrors err = be.take_errors();
  EXPECT_EQ(err.compressor, 2);
  EXPECT_NE(err.describe().find("inconsistent"), std::string::npos) << err.describe();
}

}  // namespace
}  // namespace spush::kernels
