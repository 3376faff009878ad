// The cpu backend (kernels/backend.h): owned arrays (poisoned, uploaded, downloaded, grown),
// strided row copies, the workspace pool, the error word (an op's failure sets its flag and
// keeps the text, take_errors clears it), axpby_rows exactly as its formula (aliasing included),
// and what supports() accepts. The cuda backend is compared with it in backend_gpu_test.cpp.
#include "spush/kernels/backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "spush/kernels/codec_cuda.h"

namespace spush::kernels {
namespace {

TEST(CpuBackend, ArraysArePoisonedAndRoundTrip) {
  auto be = make_cpu_backend();
  EXPECT_STREQ(be->name(), "cpu");
  EXPECT_TRUE(be->host_memory());
  Array<float> a(*be, 5);
  EXPECT_EQ(a.size(), 5u);
  for (float v : a.download()) EXPECT_TRUE(std::isnan(v)) << "fresh arrays are poisoned";
  a.upload({1, 2, 3});
  EXPECT_EQ(a.download()[2], 3.0f);
  a.zero();
  for (float v : a.download()) EXPECT_EQ(v, 0.0f);
  EXPECT_THROW(a.upload(std::vector<float>(6)), std::logic_error);
  a.reserve(3);  // no shrink
  EXPECT_EQ(a.size(), 5u);
  a.reserve(9);
  EXPECT_EQ(a.size(), 9u);
  Array<int32_t> b(*be, std::vector<int32_t>{7, 8});
  Array<int32_t> c = std::move(b);
  EXPECT_EQ(c.download(), (std::vector<int32_t>{7, 8}));
  EXPECT_EQ(b.get(), nullptr);
  Array<double> empty(*be, 0);
  EXPECT_NE(empty.get(), nullptr);
  EXPECT_TRUE(empty.download().empty());
}

TEST(CpuBackend, RowCopiesHonourBothStrides) {
  auto be = make_cpu_backend();
  std::vector<float> host(3 * 7);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i);
  Array<float> dev(*be, 3 * 16);
  dev.zero();
  be->upload_rows(dev.get(), 16, host.data(), 7, 5, 3);
  const auto d = dev.download();
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 16; ++k) EXPECT_EQ(d[r * 16 + k], k < 5 ? host[r * 7 + k] : 0.0f);
  std::vector<float> back(3 * 6, -1.0f);
  be->download_rows(back.data(), 6, dev.get(), 16, 5, 3);
  for (int r = 0; r < 3; ++r) {
    for (int k = 0; k < 5; ++k) EXPECT_EQ(back[r * 6 + k], host[r * 7 + k]);
    EXPECT_EQ(back[r * 6 + 5], -1.0f);
  }
}

TEST(CpuBackend, WorkspacePoolGrowsOnly) {
  auto be = make_cpu_backend();
  EXPECT_EQ(be->workspace_bytes(), 0u);
  be->reserve_workspace(1000);
  void* p = be->workspace();
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(be->workspace_bytes(), 1000u);
  be->reserve_workspace(10);
  EXPECT_EQ(be->workspace(), p);
  be->reserve_workspace(5000);
  EXPECT_EQ(be->workspace_bytes(), 5000u);
}

TEST(CpuBackend, OpFailuresSetTheErrorWordWithTheirText) {
  auto be = make_cpu_backend();
  EXPECT_FALSE(be->take_errors().any());
  // A NaN row: compress_ef flags it (word [0] = non-finite) instead of throwing.
  const int64_t d = 40, rows = 3;
  std::vector<int64_t> offsets{0, d};
  const SegmentView segs{offsets.data(), 1};
  CompressorSpec spec;
  spec.density = 0.1;
  const std::vector<int64_t> koff = topk_offsets(segs, spec.density);
  std::vector<float> x(rows * d, 1.0f), e(rows * d, 0.0f);
  x[1 * d + 7] = std::nanf("");
  std::vector<int32_t> idx(rows * koff.back());
  std::vector<float> val(rows * koff.back());
  DeviceMessage msg;
  msg.idx = idx.data();
  msg.val = val.data();
  be->compress_ef(spec, rows, segs, koff.data(), x.data(), d, e.data(), d, msg, 0, 0, nullptr, 0,
                  be->error_word());
  BackendErrors err = be->take_errors();
  EXPECT_EQ(err.compressor, kErrorNonFinite);
  EXPECT_EQ(err.messages, 0);
  EXPECT_NE(err.detail.find("row 1"), std::string::npos) << err.detail;
  EXPECT_NE(err.describe().find("NaN"), std::string::npos) << err.describe();
  EXPECT_FALSE(be->take_errors().any()) << "take_errors clears the word";
  // A malformed payload: the decoder flags word [1].
  const SparseWireLayout layout = sparse_wire_layout(spec, segs);
  std::vector<uint8_t> garbage(sparse_wire_pitch(layout), 0xAB);
  be->decode_sparse_rows(layout, layout.tables.data(), 1, garbage.data(), garbage.size(),
                         idx.data(), val.data(), be->error_word() + 1);
  err = be->take_errors();
  EXPECT_EQ(err.compressor, 0);
  EXPECT_EQ(err.messages, kErrorInput);
  EXPECT_NE(err.describe().find("malformed"), std::string::npos);
  // A mixing term that names a message outside the table.
  std::vector<float> target(d, 0.0f);
  const MixTerm bad{0, 0, 1.0f};
  const std::vector<int64_t> offs{0, 1};
  const std::vector<int32_t> bad_idx{static_cast<int32_t>(d + 5)};
  const std::vector<float> one{1.0f};
  be->gossip_mix_sparse(target.data(), 1, d, nullptr, &bad, 1, offs.data(), 1, bad_idx.data(),
                        one.data(), nullptr, be->error_word() + 1);
  EXPECT_EQ(be->take_errors().messages, kErrorInput);
  for (float v : target) EXPECT_EQ(v, 0.0f) << "a rejected mix writes nothing";
}

TEST(CpuBackend, AxpbyRowsIsItsFormulaAndMayAlias) {
  auto be = make_cpu_backend();
  const int64_t rows = 3, d = 70000, ld = d + 16;
  std::mt19937 rng(4);
  std::normal_distribution<float> dist;
  std::vector<float> x(rows * ld), y(rows * ld), out(rows * ld, -7.0f);
  for (auto& v : x) v = dist(rng);
  for (auto& v : y) v = dist(rng);
  be->axpby_rows(rows, d, 1.0f, x.data(), ld, -0.3f, y.data(), ld, out.data(), ld);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < d; ++k) {
      const float want = 1.0f * x[r * ld + k] + -0.3f * y[r * ld + k];
      ASSERT_EQ(out[r * ld + k], want) << r << "," << k;
    }
    EXPECT_EQ(out[r * ld + d], -7.0f) << "padding untouched";
  }
  std::vector<float> alias = x;
  be->axpby_rows(rows, d, 1.0f, alias.data(), ld, 0.25f, y.data(), ld, alias.data(), ld);
  for (int64_t k = 0; k < d; ++k) EXPECT_EQ(alias[k], x[k] + 0.25f * y[k]);
  EXPECT_THROW(be->axpby_rows(1, 10, 1, x.data(), 5, 1, y.data(), 10, out.data(), 10),
               std::invalid_argument);
}

TEST(CpuBackend, SupportsEveryValidCompressor) {
  auto be = make_cpu_backend();
  for (CompressorKind k :
       {CompressorKind::kIdentity, CompressorKind::kTopK, CompressorKind::kRandomK,
        CompressorKind::kQsgd, CompressorKind::kSign, CompressorKind::kFractional,
        CompressorKind::kMinMax8}) {
    CompressorSpec s;
    s.kind = k;
    s.bits = 4;
    EXPECT_TRUE(be->supports(s)) << to_string(k);
  }
  CompressorSpec bad;
  bad.density = 2;
  std::string why;
  EXPECT_FALSE(be->supports(bad, &why));
  EXPECT_NE(why.find("density"), std::string::npos) << why;
}

TEST(Backend, FactoryNamesAndRefusals) {
  EXPECT_STREQ(make_backend("cpu")->name(), "cpu");
  EXPECT_THROW(make_backend("gpu"), std::invalid_argument);
  if (!cuda_available()) {
    EXPECT_THROW(make_backend("cuda"), std::runtime_error);
    EXPECT_STREQ(make_backend("auto")->name(), "cpu");
  }
}

}  // namespace
}  // namespace spush::kernels
