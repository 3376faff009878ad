// The cuda backend against the cpu backend: memory (poison, round trips, strided row copies,
// copies within the device), the error word as the kernels set it, and axpby_rows bit for bit
// on random inputs, odd sizes and aliased outputs. The compression, codec and mixing ops are
// compared with their CPU twins in their own gpu tests and, through the engine, in
// tests/runtime/engine_gpu_test.cpp.
#include <cmath>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "spush/kernels/backend.h"

namespace spush::kernels {
namespace {

TEST(CudaBackend, MemoryRoundTrips) {
  SPUSH_REQUIRE_GPU();
  Backend& be = test::gpu_backend();
  EXPECT_STREQ(be.name(), "cuda");
  EXPECT_FALSE(be.host_memory());
  Array<float> a(be, 1000);
  for (float v : a.download()) ASSERT_TRUE(std::isnan(v));
  std::vector<float> h(1000);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(i) * 0.5f;
  a.upload(h);
  Array<float> b(be, 1000);
  be.copy(b.get(), a.get(), 1000 * sizeof(float));
  EXPECT_EQ(b.download(), h);
  std::vector<float> rows(3 * 7, 0.0f), back(3 * 7, -1.0f);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<float>(i);
  Array<float> m(be, 3 * 16);
  be.upload_rows(m.get(), 16, rows.data(), 7, 5, 3);
  be.download_rows(back.data(), 7, m.get(), 16, 5, 3);
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 7; ++k) EXPECT_EQ(back[r * 7 + k], k < 5 ? rows[r * 7 + k] : -1.0f);
}

TEST(CudaBackend, AxpbyRowsMatchesTheCpuBitForBit) {
  SPUSH_REQUIRE_GPU();
  Backend& gpu = test::gpu_backend();
  auto cpu = make_cpu_backend();
  for (int64_t d : {1, 255, 256, 257, 100003, 300000}) {
    const int64_t rows = 5, ld = d + 13;
    std::mt19937 rng(static_cast<unsigned>(d));
    std::normal_distribution<float> dist;
    std::vector<float> x(rows * ld), y(rows * ld);
    for (auto& v : x) v = dist(rng);
    for (auto& v : y) v = dist(rng) * 1e-3f;
    for (float a : {1.0f, -0.75f}) {
      for (float b : {0.3f, -1.0f}) {
        std::vector<float> want(rows * ld, 0.0f);
        cpu->axpby_rows(rows, d, a, x.data(), ld, b, y.data(), ld, want.data(), ld);
        test::DeviceBuffer<float> dx(x), dy(y);
        gpu.axpby_rows(rows, d, a, dx.get(), ld, b, dy.get(), ld, dx.get(), ld);  // aliased
        const auto got = dx.download();
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t k = 0; k < d; ++k)
            ASSERT_EQ(test::bits_of(got[r * ld + k]), test::bits_of(want[r * ld + k]))
                << "d=" << d << " a=" << a << " b=" << b << " at " << r << "," << k;
          for (int64_t k = d; k < ld; ++k) ASSERT_EQ(got[r * ld + k], x[r * ld + k]);
        }
      }
    }
  }
}

TEST(CudaBackend, ErrorWordIsReadAndCleared) {
  SPUSH_REQUIRE_GPU();
  Backend& be = test::gpu_backend();
  be.take_errors();
  const int one = kErrorInput;
  be.upload(be.error_word() + 1, &one, sizeof(int));
  const BackendErrors e = be.take_errors();
  EXPECT_EQ(e.compressor, 0);
  EXPECT_EQ(e.messages, kErrorInput);
  EXPECT_FALSE(be.take_errors().any());
}

}  // namespace
}  // namespace spush::kernels
