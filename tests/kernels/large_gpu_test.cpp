// 64-bit index arithmetic of the kernels: a global top-K over N = 2^27 + 3 values, and a node
// matrix of 17 rows x (2^27 + 16) floats (9.1 GB) whose last row starts past element 2^31, run
// through top-K, error-feedback top-K compression, the scaled-sign compressor, sparse and dense
// gossip mixing and the de-bias. An offset computed in 32 bits would read or write another row:
// each row carries its own large values ("spikes") at its own positions, every row's result is
// checked for them, and the first and the last row are compared with the CPU implementation bit
// for bit. Needs about 40 GB of free device memory (an H200 has 141 GB); skips with a message
// otherwise. Host memory: about 2.5 GB.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "spush/kernels/compress.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/mixing.h"
#include "spush/kernels/mixing_cuda.h"
#include "spush/kernels/segments.h"
#include "spush/kernels/topk.h"

namespace spush::kernels {
namespace {

using test::bits_of;

constexpr int64_t kRows = 17;
constexpr int64_t kD = (int64_t{1} << 27) + 5;  // row length: N >= 2^27
constexpr int64_t kLd = kD + 11;                // 2^27 + 16
constexpr int kSpikes = 40;                     // per row
constexpr float kPadding = 1e30f;               // columns [kD, kLd): never selected or mixed
static_assert((kRows - 1) * kLd > (int64_t{1} << 31), "the last row must start past 2^31");

#define SPUSH_REQUIRE_DEVICE_MEMORY(bytes)                                              \
  do {                                                                                  \
    SPUSH_REQUIRE_GPU();                                                                \
    size_t free_ = 0, total_ = 0;                                                       \
    CUDA_CHECK(cudaMemGetInfo(&free_, &total_));                                        \
    if (free_ < (bytes) + (size_t{1} << 30))                                            \
      GTEST_SKIP() << "needs " << ((bytes) >> 30) << " GiB of free device memory, has " \
                   << (free_ >> 30) << " GiB";                                          \
  } while (0)

uint32_t mix32(uint64_t v) {  // splitmix64's finalizer, folded to 32 bits
  v += 0x9E3779B97F4A7C15ull;
  v = (v ^ (v >> 30)) * 0xBF58476D1CE4E5B9ull;
  v = (v ^ (v >> 27)) * 0x94D049BB133111EBull;
  return static_cast<uint32_t>((v ^ (v >> 31)) >> 32);
}

// The row every row starts from: values in [-1, 1) with 2^24 distinct levels (so ties occur),
// padding columns set to kPadding.
std::vector<float> base_row() {
  std::vector<float> row(static_cast<size_t>(kLd), kPadding);
  for (int64_t i = 0; i < kD; ++i)
    row[i] = static_cast<float>(mix32(static_cast<uint64_t>(i)) >> 8) * 0x1p-23f - 1.0f;
  return row;
}

// Row r's spikes: position -> value, |value| >= 2 and distinct per row.
std::map<int64_t, float> spikes(int64_t r) {
  std::map<int64_t, float> s;
  for (int j = 0; j < kSpikes; ++j) {
    const int64_t pos = mix32(static_cast<uint64_t>(r) * 1000003 + static_cast<uint64_t>(j)) % kD;
    s[pos] = (j % 2 ? -1.0f : 1.0f) * (2.0f + static_cast<float>(r) + static_cast<float>(j) / 64);
  }
  return s;
}

std::vector<float> host_row(const std::vector<float>& base, int64_t r) {
  std::vector<float> row = base;
  for (const auto& [pos, v] : spikes(r)) row[pos] = v;
  return row;
}

// x [kRows][kLd] on the device: the base row copied to every row, then each row's spikes.
void fill_matrix(float* x, const std::vector<float>& base) {
  CUDA_CHECK(cudaMemcpy(x, base.data(), base.size() * sizeof(float), cudaMemcpyHostToDevice));
  for (int64_t r = 1; r < kRows; ++r)
    CUDA_CHECK(cudaMemcpy(x + r * kLd, x, kLd * sizeof(float), cudaMemcpyDeviceToDevice));
  for (int64_t r = 0; r < kRows; ++r)
    for (const auto& [pos, v] : spikes(r))
      CUDA_CHECK(cudaMemcpy(x + r * kLd + pos, &v, sizeof(float), cudaMemcpyHostToDevice));
}

template <typename T>
std::vector<T> download_range(const T* p, int64_t offset, int64_t n) {
  std::vector<T> h(static_cast<size_t>(n));
  CUDA_CHECK(cudaMemcpy(h.data(), p + offset, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

// Index of the first element whose bits differ, or -1 (memcmp first: the rows are 2^27 long).
template <typename T>
int64_t first_difference(const T* a, const T* b, int64_t n) {
  if (std::memcmp(a, b, static_cast<size_t>(n) * sizeof(T)) == 0) return -1;
  for (int64_t i = 0; i < n; ++i)
    if (std::memcmp(a + i, b + i, sizeof(T)) != 0) return i;
  return -1;
}

#define EXPECT_SAME_BITS(got, want, n, what)                                                     \
  do {                                                                                           \
    const int64_t at_ = first_difference((got), (want), (n));                                    \
    EXPECT_EQ(at_, -1) << (what) << ": first difference at element " << at_ << ": "              \
                       << (at_ >= 0 ? (got)[at_] : 0) << " vs " << (at_ >= 0 ? (want)[at_] : 0); \
  } while (0)

constexpr size_t kMatrixBytes = sizeof(float) * kRows * kLd;  // 9.1 GB

// Top-K output of one row: every spike kept with its value, indices ascending inside each
// segment and inside it.
void expect_spikes_kept(int64_t r, const int32_t* idx, const float* val,
                        const std::vector<int64_t>& off, const std::vector<int64_t>& koff) {
  SCOPED_TRACE("row " + std::to_string(r));
  std::map<int64_t, float> want = spikes(r);
  for (size_t s = 0; s + 1 < off.size(); ++s) {
    for (int64_t j = koff[s]; j < koff[s + 1]; ++j) {
      ASSERT_GE(idx[j], off[s]) << "position " << j;
      ASSERT_LT(idx[j], off[s + 1]) << "position " << j;
      if (j > koff[s]) {
        ASSERT_GT(idx[j], idx[j - 1]) << "position " << j;
      }
      auto it = want.find(idx[j]);
      if (it != want.end()) {
        ASSERT_EQ(bits_of(val[j]), bits_of(it->second)) << "spike at " << idx[j];
        want.erase(it);
      }
    }
  }
  EXPECT_TRUE(want.empty()) << want.size() << " spikes missing, e.g. at " << want.begin()->first;
}

TEST(LargeGpu, TopkGlobalTwoToThe27) {
  SPUSH_REQUIRE_DEVICE_MEMORY(4 * kMatrixBytes / kRows);
  const std::vector<float> x = host_row(base_row(), 3);
  const std::vector<int64_t> off{0, kD}, koff{0, topk_count(kD, 0.01)};
  test::DeviceBuffer<float> dx(x);
  test::DeviceBuffer<int64_t> doff(off), dkoff(koff);
  test::DeviceBuffer<int32_t> didx(static_cast<size_t>(koff[1]));
  test::DeviceBuffer<float> dval(static_cast<size_t>(koff[1]));
  test::DeviceBuffer<int> dflag(std::vector<int>{0});
  const size_t ws = topk_batched_workspace_size(1, kLd, 1, kD);
  test::DeviceBuffer<uint8_t> dws(ws);
  topk_batched_cuda(dx.get(), 1, kLd, SegmentView{doff.get(), 1}, dkoff.get(), didx.get(),
                    dval.get(), dws.get(), ws, dflag.get(), nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  ASSERT_EQ(dflag.download()[0], 0);
  std::vector<int32_t> idx(static_cast<size_t>(koff[1]));
  std::vector<float> val(idx.size());
  topk_batched_cpu(x.data(), 1, kLd, SegmentView{off.data(), 1}, koff.data(), idx.data(),
                   val.data());
  const int64_t k = koff[1];
  const std::vector<int32_t> gidx = didx.download();
  const std::vector<float> gval = dval.download();
  EXPECT_SAME_BITS(gidx.data(), idx.data(), k, "idx");
  EXPECT_SAME_BITS(gval.data(), val.data(), k, "val");
}

TEST(LargeGpu, TopkRowsBeyondTwoToThe31) {
  const size_t ws = topk_batched_workspace_size(kRows, kLd, 2, kD - kD / 2);
  SPUSH_REQUIRE_DEVICE_MEMORY(kMatrixBytes + ws);
  const std::vector<float> base = base_row();
  test::DeviceBuffer<float> dx(static_cast<size_t>(kRows * kLd));
  fill_matrix(dx.get(), base);
  const std::vector<int64_t> off{0, kD / 2, kD};
  const std::vector<int64_t> koff{0, kSpikes + 500, 2 * kSpikes + 1000};
  const int64_t k_row = koff.back();
  test::DeviceBuffer<int64_t> doff(off), dkoff(koff);
  test::DeviceBuffer<int32_t> didx(static_cast<size_t>(kRows * k_row));
  test::DeviceBuffer<float> dval(static_cast<size_t>(kRows * k_row));
  test::DeviceBuffer<int> dflag(std::vector<int>{0});
  test::DeviceBuffer<uint8_t> dws(ws);
  topk_batched_cuda(dx.get(), kRows, kLd, SegmentView{doff.get(), 2}, dkoff.get(), didx.get(),
                    dval.get(), dws.get(), ws, dflag.get(), nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  ASSERT_EQ(dflag.download()[0], 0);
  const std::vector<int32_t> gidx = didx.download();
  const std::vector<float> gval = dval.download();
  for (int64_t r = 0; r < kRows; ++r)
    expect_spikes_kept(r, gidx.data() + r * k_row, gval.data() + r * k_row, off, koff);
  for (int64_t r : {int64_t{0}, kRows - 1}) {
    SCOPED_TRACE("row " + std::to_string(r) + " against the CPU");
    const std::vector<float> row = host_row(base, r);
    std::vector<int32_t> idx(static_cast<size_t>(k_row));
    std::vector<float> val(idx.size());
    topk_batched_cpu(row.data(), 1, kLd, SegmentView{off.data(), 2}, koff.data(), idx.data(),
                     val.data());
    EXPECT_SAME_BITS(gidx.data() + r * k_row, idx.data(), k_row, "idx");
    EXPECT_SAME_BITS(gval.data() + r * k_row, val.data(), k_row, "val");
  }
}

CompressorSpec spec_of(CompressorKind kind, double density) {
  CompressorSpec s;
  s.kind = kind;
  s.density = density;
  return s;
}

TEST(LargeGpu, ErrorFeedbackTopkRowsBeyondTwoToThe31) {
  const CompressorSpec spec = spec_of(CompressorKind::kTopK, 1e-6);  // 135 kept per row
  const size_t ws = compress_ef_workspace_size(spec, kRows, kLd, 1, kD);
  SPUSH_REQUIRE_DEVICE_MEMORY(2 * kMatrixBytes + ws);
  const std::vector<float> base = base_row();
  test::DeviceBuffer<float> dx(static_cast<size_t>(kRows * kLd)),
      de(static_cast<size_t>(kRows * kLd));
  fill_matrix(dx.get(), base);
  de.zero();
  const std::vector<int64_t> off{0, kD};
  const std::vector<int64_t> koff = topk_offsets(SegmentView{off.data(), 1}, spec.density);
  const int64_t k_row = koff.back();
  ASSERT_GE(k_row, kSpikes);
  test::DeviceBuffer<int64_t> doff(off), dkoff(koff);
  test::DeviceBuffer<int32_t> didx(static_cast<size_t>(kRows * k_row));
  test::DeviceBuffer<float> dval(static_cast<size_t>(kRows * k_row));
  test::DeviceBuffer<int> dflag(std::vector<int>{0});
  test::DeviceBuffer<uint8_t> dws(ws);
  DeviceMessage msg;
  msg.idx = didx.get();
  msg.val = dval.get();
  compress_ef_cuda(spec, kRows, SegmentView{doff.get(), 1}, dkoff.get(), dx.get(), kLd, de.get(),
                   kLd, msg, 0, 1, dws.get(), ws, dflag.get(), nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  ASSERT_EQ(dflag.download()[0], 0);
  const std::vector<int32_t> gidx = didx.download();
  const std::vector<float> gval = dval.download();
  for (int64_t r = 0; r < kRows; ++r)
    expect_spikes_kept(r, gidx.data() + r * k_row, gval.data() + r * k_row, off, koff);
  for (int64_t r : {int64_t{0}, kRows - 1}) {
    SCOPED_TRACE("row " + std::to_string(r) + " against the CPU");
    const std::vector<float> row = host_row(base, r);
    std::vector<float> e(static_cast<size_t>(kD), 0.0f);
    Compressed c;
    compress_ef_cpu(spec, SegmentView{off.data(), 1}, row.data(), e.data(), c,
                    static_cast<uint32_t>(r), 1);
    ASSERT_EQ(static_cast<int64_t>(c.idx.size()), k_row);
    EXPECT_SAME_BITS(gidx.data() + r * k_row, c.idx.data(), k_row, "idx");
    EXPECT_SAME_BITS(gval.data() + r * k_row, c.val.data(), k_row, "val");
    const std::vector<float> ge = download_range(de.get(), r * kLd, kLd);
    EXPECT_SAME_BITS(ge.data(), e.data(), kD, "e");
    const std::vector<float> zeros(static_cast<size_t>(kLd - kD), 0.0f);
    EXPECT_SAME_BITS(ge.data() + kD, zeros.data(), kLd - kD, "e padding (never written)");
  }
}

TEST(LargeGpu, SignCompressorRowsBeyondTwoToThe31) {
  // A dense kind: code [rows][ld] int16 and dequantized values [rows][ld], bucket scales per row.
  const CompressorSpec spec = spec_of(CompressorKind::kSign, 0.01);
  const size_t ws = compress_ef_workspace_size(spec, kRows, kLd, 1, kD);
  SPUSH_REQUIRE_DEVICE_MEMORY(2 * kMatrixBytes + kMatrixBytes / 2 + ws);
  const std::vector<float> base = base_row();
  test::DeviceBuffer<float> dx(static_cast<size_t>(kRows * kLd)),
      dval(static_cast<size_t>(kRows * kLd));
  test::DeviceBuffer<int16_t> dcode(static_cast<size_t>(kRows * kLd));
  test::DeviceBuffer<float> dscale(static_cast<size_t>(kRows));
  fill_matrix(dx.get(), base);
  const std::vector<int64_t> off{0, kD};
  test::DeviceBuffer<int64_t> doff(off);
  test::DeviceBuffer<int> dflag(std::vector<int>{0});
  test::DeviceBuffer<uint8_t> dws(ws);
  DeviceMessage msg;
  msg.code = dcode.get();
  msg.val = dval.get();
  msg.scale = dscale.get();
  msg.ld_msg = kLd;
  compress_ef_cuda(spec, kRows, SegmentView{doff.get(), 1}, nullptr, dx.get(), kLd, nullptr, kLd,
                   msg, 0, 1, dws.get(), ws, dflag.get(), nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  ASSERT_EQ(dflag.download()[0], 0);
  const std::vector<float> scales = dscale.download();
  for (int64_t r = 0; r < kRows; ++r) {  // each row's spikes, as the row's own sign and scale
    SCOPED_TRACE("row " + std::to_string(r));
    for (const auto& [pos, v] : spikes(r)) {
      const int16_t code = download_range(dcode.get(), r * kLd + pos, 1)[0];
      ASSERT_EQ(code, v < 0 ? -1 : 1) << "spike at " << pos;
      ASSERT_EQ(bits_of(download_range(dval.get(), r * kLd + pos, 1)[0]),
                bits_of(v < 0 ? -scales[r] : scales[r]))
          << "spike at " << pos;
    }
  }
  for (int64_t r : {int64_t{0}, kRows - 1}) {
    SCOPED_TRACE("row " + std::to_string(r) + " against the CPU");
    const std::vector<float> row = host_row(base, r);
    Compressed c;
    compress_ef_cpu(spec, SegmentView{off.data(), 1}, row.data(), nullptr, c,
                    static_cast<uint32_t>(r), 1);
    ASSERT_EQ(bits_of(scales[r]), bits_of(c.scale[0]));
    const std::vector<int16_t> code = download_range(dcode.get(), r * kLd, kD);
    const std::vector<float> val = download_range(dval.get(), r * kLd, kD);
    ASSERT_EQ(static_cast<int64_t>(c.code.size()), kD);
    EXPECT_SAME_BITS(code.data(), c.code.data(), kD, "code");
    EXPECT_SAME_BITS(val.data(), c.val.data(), kD, "dequantized value");
  }
}

TEST(LargeGpu, MixingAndDebiasRowsBeyondTwoToThe31) {
  SPUSH_REQUIRE_DEVICE_MEMORY(2 * kMatrixBytes);
  const std::vector<float> base = base_row();
  test::DeviceBuffer<float> dx(static_cast<size_t>(kRows * kLd)),
      dz(static_cast<size_t>(kRows * kLd));
  fill_matrix(dx.get(), base);
  // Two sparse messages spanning the whole row (the last column included), into rows 16 and 0.
  std::vector<int64_t> moff{0};
  std::vector<int32_t> midx;
  std::vector<float> mval;
  for (int m = 0; m < 2; ++m) {
    for (int64_t i = m; i < kD; i += 1 + mix32(static_cast<uint64_t>(i) + 77) % 200000) {
      midx.push_back(static_cast<int32_t>(i));
      mval.push_back(static_cast<float>(m + 1) * 0.375f);
    }
    if (midx.back() != kD - 1) {
      midx.push_back(static_cast<int32_t>(kD - 1));
      mval.push_back(-1.5f);
    }
    moff.push_back(static_cast<int64_t>(midx.size()));
  }
  const std::vector<MixTerm> sterms{{16, 0, 0.5f}, {0, 1, 0.25f}, {16, 1, -0.125f}};
  std::vector<float> u(static_cast<size_t>(kRows)), msg_u{0.5f, 0.75f}, row_u(u.size());
  for (int64_t r = 0; r < kRows; ++r) {
    u[r] = 1.0f + static_cast<float>(r) / 32;
    row_u[r] = 0.5f + static_cast<float>(r) / 64;  // the dense messages' weights
  }
  // Dense terms: messages are rows of x itself (15 and 16), into rows 16, 0 and 15.
  const std::vector<MixTerm> dterms{{0, 16, 0.5f}, {16, 15, 0.25f}, {15, 16, -0.5f}};
  test::DeviceBuffer<MixTerm> dst(sterms), ddt(dterms);
  test::DeviceBuffer<int64_t> dmoff(moff);
  test::DeviceBuffer<int32_t> dmidx(midx);
  test::DeviceBuffer<float> dmval(mval), du(u), dmu(msg_u), drow_u(row_u);
  test::DeviceBuffer<int> dflag(std::vector<int>{0});
  gossip_mix_sparse_cuda(dx.get(), kRows, kLd, du.get(), dst.get(), 3, dmoff.get(), 2, dmidx.get(),
                         dmval.get(), dmu.get(), dflag.get(), nullptr);
  gossip_mix_dense_cuda(dx.get(), kRows, kLd, kD, du.get(), ddt.get(), 3, dx.get(), kRows, kLd,
                        drow_u.get(), dflag.get(), nullptr);
  debias_cuda(dx.get(), kLd, du.get(), kRows, kD, dz.get(), kLd, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  ASSERT_EQ(dflag.download()[0], 0);

  // The CPU on the rows involved, renumbered 0 -> 0, 15 -> 1, 16 -> 2.
  std::vector<float> hx;
  for (int64_t r : {0, 15, 16}) {
    const std::vector<float> row = host_row(base, r);
    hx.insert(hx.end(), row.begin(), row.end());
  }
  std::vector<float> hu{u[0], u[15], u[16]};
  const std::vector<MixTerm> s3{{2, 0, 0.5f}, {0, 1, 0.25f}, {2, 1, -0.125f}};
  const std::vector<MixTerm> d3{{0, 2, 0.5f}, {2, 1, 0.25f}, {1, 2, -0.5f}};
  gossip_mix_sparse_cpu(hx.data(), kLd, hu.data(), s3.data(), 3, moff.data(), midx.data(),
                        mval.data(), msg_u.data());
  const std::vector<float> hrow_u{row_u[0], row_u[15], row_u[16]};
  gossip_mix_dense_cpu(hx.data(), kLd, kD, hu.data(), d3.data(), 3, hx.data(), kLd, hrow_u.data());
  std::vector<float> hz(hx.size(), 0.0f);
  debias_cpu(hx.data(), kLd, hu.data(), 3, kD, hz.data(), kLd);
  const std::vector<float> gu = du.download();
  const int64_t rows3[3] = {0, 15, 16};
  for (int q = 0; q < 3; ++q) {
    const int64_t r = rows3[q];
    SCOPED_TRACE("row " + std::to_string(r));
    ASSERT_EQ(bits_of(gu[r]), bits_of(hu[q]));
    const std::vector<float> gx = download_range(dx.get(), r * kLd, kLd);
    const std::vector<float> gz = download_range(dz.get(), r * kLd, kD);
    EXPECT_SAME_BITS(gx.data(), hx.data() + q * kLd, kLd, "x");
    EXPECT_SAME_BITS(gz.data(), hz.data() + q * kLd, kD, "z");
  }
  // A row nobody mixed into keeps its values; its z is x / u.
  const std::vector<float> x8 = download_range(dx.get(), 8 * kLd, kLd);
  const std::vector<float> row8 = host_row(base, 8);
  EXPECT_SAME_BITS(x8.data(), row8.data(), kLd, "row 8");
  EXPECT_EQ(bits_of(gu[8]), bits_of(u[8]));
}

}  // namespace
}  // namespace spush::kernels
