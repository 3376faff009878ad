// Error-feedback compression on the GPU (compress_ef_cuda) against compress_ef_cpu row by row:
// top-K, identity, QSGD 1/2/4/8 bits, scaled sign and min-max 8-bit over batched rows with
// padding and layer tables (empty, length-1, multi-group buckets longer than 65,536). Integer
// outputs are compared exactly and floats bit for bit: both sides sum the qsgd norm and the
// sign scale in the blocked order of bucket_sum.h, which the test also checks on its own.
// Non-finite inputs and overflowing bucket parameters set the error flag.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "spush/kernels/bucket_sum.h"
#include "spush/kernels/compress.h"
#include "spush/kernels/compress_cuda.h"
#include "spush/kernels/segments.h"

namespace spush::kernels {
namespace {

using test::bits_of;

CompressorSpec make_spec(CompressorKind kind, double density = 0.01, int bits = 8) {
  CompressorSpec s;
  s.kind = kind;
  s.density = density;
  s.bits = bits;
  s.seed = 0xC0FFEEu;
  return s;
}

std::vector<CompressorSpec> gpu_specs() {
  std::vector<CompressorSpec> specs{
      make_spec(CompressorKind::kIdentity),  make_spec(CompressorKind::kTopK, 0.01),
      make_spec(CompressorKind::kTopK, 0.3), make_spec(CompressorKind::kTopK, 1.0),
      make_spec(CompressorKind::kSign),      make_spec(CompressorKind::kMinMax8)};
  for (int b : {1, 2, 4, 8}) specs.push_back(make_spec(CompressorKind::kQsgd, 0.1, b));
  return specs;
}

std::string describe(const CompressorSpec& s) {
  return std::string(to_string(s.kind)) + " density " + std::to_string(s.density) + " bits " +
         std::to_string(s.bits);
}

struct Batch {
  std::vector<int64_t> off;
  int64_t rows = 1, ld = 0;
  std::vector<float> x, e;  // [rows][ld]; e empty: no error feedback
  int nseg() const { return static_cast<int>(off.size()) - 1; }
  int64_t d() const { return off.back(); }
};

struct Message {
  std::vector<int32_t> idx;
  std::vector<float> val, scale, e;
  std::vector<int16_t> code;
  int flag = 0;
};

constexpr uint32_t kNodeBase = 5;
constexpr uint64_t kIteration = 7;

Message run_gpu(const CompressorSpec& spec, const Batch& b, bool with_val = true) {
  const int nseg = b.nseg();
  int64_t max_len = 0;
  for (int s = 0; s < nseg; ++s) max_len = std::max(max_len, b.off[s + 1] - b.off[s]);
  const std::vector<int64_t> koff = topk_offsets(SegmentView{b.off.data(), nseg}, spec.density);
  const bool sparse = spec.kind == CompressorKind::kTopK;
  const size_t nval =
      sparse ? static_cast<size_t>(b.rows * koff.back()) : static_cast<size_t>(b.rows * b.ld);
  const int per = scales_per_bucket(spec.kind);
  test::DeviceBuffer<float> dx(b.x), de(b.e.empty() ? std::vector<float>(1) : b.e);
  test::DeviceBuffer<int64_t> doff(b.off), dkoff(koff);
  test::DeviceBuffer<int32_t> didx(sparse ? nval : 0);
  test::DeviceBuffer<float> dval(nval), dscale(static_cast<size_t>(b.rows * nseg * per));
  test::DeviceBuffer<int16_t> dcode(sparse ? 0 : nval);
  test::DeviceBuffer<int> dflag(std::vector<int>{0});
  const size_t ws = compress_ef_workspace_size(spec, b.rows, b.ld, nseg, max_len);
  test::DeviceBuffer<uint8_t> dws(ws);
  DeviceMessage msg;
  msg.idx = didx.get();
  msg.val = with_val ? dval.get() : nullptr;
  msg.code = dcode.get();
  msg.scale = dscale.get();
  msg.ld_msg = b.ld;
  compress_ef_cuda(spec, b.rows, SegmentView{doff.get(), nseg}, dkoff.get(), dx.get(), b.ld,
                   b.e.empty() ? nullptr : de.get(), b.ld, msg, kNodeBase, kIteration, dws.get(),
                   ws, dflag.get(), nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  Message m;
  m.flag = dflag.download()[0];
  if (sparse) m.idx = didx.download();
  m.val = dval.download();
  m.scale = dscale.download();
  if (!sparse) m.code = dcode.download();
  if (!b.e.empty()) m.e = de.download();
  return m;
}

// Compares the GPU message of every row with compress_ef_cpu, bit for bit.
void compare(const CompressorSpec& spec, const Batch& b, bool with_val = true) {
  SCOPED_TRACE(describe(spec) + " rows " + std::to_string(b.rows) + " d " + std::to_string(b.d()));
  const Message g = run_gpu(spec, b, with_val);
  EXPECT_EQ(g.flag, 0);
  const int nseg = b.nseg();
  const SegmentView segs{b.off.data(), nseg};
  const int64_t d = b.d();
  const std::vector<int64_t> koff = topk_offsets(segs, spec.density);
  const int per = scales_per_bucket(spec.kind);
  for (int64_t r = 0; r < b.rows; ++r) {
    SCOPED_TRACE("row " + std::to_string(r));
    std::vector<float> e;
    if (!b.e.empty()) e.assign(b.e.begin() + r * b.ld, b.e.begin() + r * b.ld + d);
    Compressed c;
    compress_ef_cpu(spec, segs, b.x.data() + r * b.ld, e.empty() ? nullptr : e.data(), c,
                    kNodeBase + static_cast<uint32_t>(r), kIteration);
    for (int s = 0; s < nseg && per > 0; ++s) {
      if (b.off[s + 1] == b.off[s]) continue;
      for (int q = 0; q < per; ++q) {
        const float got = g.scale[(r * nseg + s) * per + q], want = c.scale[s * per + q];
        ASSERT_EQ(bits_of(got), bits_of(want))
            << "bucket " << s << " scale " << got << " vs " << want;
      }
    }
    if (spec.kind == CompressorKind::kTopK) {
      const int64_t k_row = koff.back();
      for (int64_t j = 0; j < k_row; ++j) {
        ASSERT_EQ(g.idx[r * k_row + j], c.idx[j]) << "position " << j;
        ASSERT_EQ(bits_of(g.val[r * k_row + j]), bits_of(c.val[j])) << "position " << j;
      }
    } else {
      for (int s = 0; s < nseg; ++s) {
        for (int64_t i = b.off[s]; i < b.off[s + 1]; ++i) {
          if (spec.kind != CompressorKind::kIdentity) {
            ASSERT_EQ(g.code[r * b.ld + i], c.code[i]) << "element " << i;
          }
          if (with_val) {
            ASSERT_EQ(bits_of(g.val[r * b.ld + i]), bits_of(c.val[i])) << "element " << i;
          }
          if (!e.empty()) {
            ASSERT_EQ(bits_of(g.e[r * b.ld + i]), bits_of(e[i])) << "element " << i;
          }
        }
      }
    }
    if (!e.empty() && spec.kind == CompressorKind::kTopK) {
      for (int64_t i = 0; i < d; ++i) {
        ASSERT_EQ(bits_of(g.e[r * b.ld + i]), bits_of(e[i])) << "e element " << i;
      }
    }
    for (int64_t i = d; i < b.ld && !b.e.empty(); ++i) {  // padding of e is never touched
      ASSERT_EQ(bits_of(g.e[r * b.ld + i]), bits_of(b.e[r * b.ld + i])) << "padding " << i;
    }
  }
}

// rows x ld values: normal (scaled) or exact multiples of 1/64 with |v| <= 16.
std::vector<float> values(uint32_t seed, size_t n, bool dyadic, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(n);
  for (float& f : v) {
    if (dyadic) {
      f = static_cast<float>(static_cast<int>(rng() % 1025) - 512) / 64.0f;
    } else {
      f = normal(rng);
    }
  }
  return v;
}

Batch make_batch(std::vector<int64_t> lens, int64_t rows, int64_t pad, bool with_e, bool dyadic,
                 uint32_t seed) {
  Batch b;
  b.off = {0};
  for (int64_t len : lens) b.off.push_back(b.off.back() + len);
  b.rows = rows;
  b.ld = b.d() + pad;
  b.x = values(seed, static_cast<size_t>(rows * b.ld), dyadic, 1.0f);
  if (with_e) b.e = values(seed + 1, static_cast<size_t>(rows * b.ld), dyadic, 0.3f);
  return b;
}

const std::vector<int64_t> kLayers{432, 32, 0, 1, 2304, 32, 9216, 64, 36864, 128, 640, 10};

TEST(CompressGpu, LayeredBatchesMatchTheCpu) {
  SPUSH_REQUIRE_GPU();
  for (bool with_e : {true, false}) {
    const Batch b = make_batch(kLayers, 3, 7, with_e, false, with_e ? 11u : 12u);
    for (const CompressorSpec& spec : gpu_specs()) compare(spec, b);
  }
}

TEST(CompressGpu, ExactSumsMatchTheCpuForEveryBucketLength) {
  SPUSH_REQUIRE_GPU();
  // Multiples of 1/64: squares and absolute values sum exactly in double in any order, so the
  // scales are the exact values whatever the order (a check independent of the blocked order).
  for (const std::vector<int64_t>& lens :
       {std::vector<int64_t>{1 << 20}, std::vector<int64_t>{200003, 65536, 65537, 1, 255, 257},
        kLayers}) {
    const Batch b = make_batch(lens, 2, 3, true, true, 21);
    for (const CompressorSpec& spec : gpu_specs()) compare(spec, b);
  }
}

TEST(CompressGpu, LongRandomBucketsFollowTheBlockedOrder) {
  SPUSH_REQUIRE_GPU();
  const Batch b = make_batch({(1 << 20) + 3, 300000, 65536}, 2, 0, true, false, 31);
  for (const CompressorSpec& spec : gpu_specs()) compare(spec, b);
  // The scales against bucket_sum.h directly, on v = x + e formed here.
  for (CompressorKind kind : {CompressorKind::kQsgd, CompressorKind::kSign}) {
    const CompressorSpec spec = make_spec(kind, 0.1, 4);
    const Message g = run_gpu(spec, b);
    for (int64_t r = 0; r < b.rows; ++r) {
      for (int s = 0; s < b.nseg(); ++s) {
        std::vector<float> v;
        for (int64_t i = b.off[s]; i < b.off[s + 1]; ++i)
          v.push_back(b.x[r * b.ld + i] + b.e[r * b.ld + i]);
        const int64_t n = static_cast<int64_t>(v.size());
        const float want =
            kind == CompressorKind::kQsgd
                ? static_cast<float>(std::sqrt(sum_squares_blocked(v.data(), n)))
                : static_cast<float>(sum_abs_blocked(v.data(), n) / static_cast<double>(n));
        EXPECT_EQ(bits_of(g.scale[r * b.nseg() + s]), bits_of(want))
            << describe(spec) << " row " << r << " bucket " << s;
      }
    }
  }
}

TEST(CompressGpu, ZerosOfBothSignsAndConstantBuckets) {
  SPUSH_REQUIRE_GPU();
  Batch b = make_batch({300, 70000, 5}, 2, 1, true, false, 41);
  for (size_t i = 0; i < b.x.size(); ++i) {
    if (i % 3 == 0) b.x[i] = i % 2 ? -0.0f : 0.0f;
    if (i % 5 == 0) b.e[i] = -b.x[i];
  }
  for (int64_t i = 300; i < 70300; ++i) {  // bucket 1 of row 1: constant v
    b.x[b.ld + i] = 1.5f;
    b.e[b.ld + i] = 0.0f;
  }
  for (const CompressorSpec& spec : gpu_specs()) compare(spec, b);
}

TEST(CompressGpu, DenseWithoutDequantizedValues) {
  SPUSH_REQUIRE_GPU();
  const Batch b = make_batch(kLayers, 2, 0, true, true, 51);
  for (const CompressorSpec& spec : gpu_specs()) {
    if (spec.kind == CompressorKind::kTopK || spec.kind == CompressorKind::kIdentity) continue;
    compare(spec, b, false);
  }
}

TEST(CompressGpu, NonFiniteAndOverflowSetTheErrorFlag) {
  SPUSH_REQUIRE_GPU();
  for (const CompressorSpec& spec : gpu_specs()) {
    SCOPED_TRACE(describe(spec));
    for (float bad :
         {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      Batch b = make_batch(kLayers, 2, 0, true, false, 61);
      b.x[b.ld + 5000] = bad;
      const Message g = run_gpu(spec, b);
      EXPECT_EQ(g.flag, 1);
      if (spec.kind != CompressorKind::kTopK) {
        EXPECT_EQ(g.e, b.e) << "dense kinds leave e as it was";
      }
    }
  }
  Batch big = make_batch({1000}, 1, 0, false, false, 71);
  for (float& v : big.x) v *= 1e37f;  // qsgd: norm * s overflows; minmax8: hi - lo overflows
  big.x[0] = -3e38f;
  big.x[1] = 3e38f;
  EXPECT_EQ(run_gpu(make_spec(CompressorKind::kQsgd, 0.1, 8), big).flag, 1);
  EXPECT_EQ(run_gpu(make_spec(CompressorKind::kMinMax8), big).flag, 1);
}

TEST(CompressGpu, RejectsUnsupportedKinds) {
  SPUSH_REQUIRE_GPU();
  EXPECT_FALSE(compress_cuda_supports(CompressorKind::kFractional));
  EXPECT_THROW(compress_ef_workspace_size(make_spec(CompressorKind::kRandomK), 1, 10, 1, 10),
               std::invalid_argument);
}

}  // namespace
}  // namespace spush::kernels
