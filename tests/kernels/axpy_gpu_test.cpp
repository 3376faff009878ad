// The CUDA plumbing end to end: a trivial kernel against its CPU implementation.
#include <random>

#include "gpu_test_util.h"
#include "spush/kernels/axpy.h"

namespace spush::kernels {
namespace {

TEST(AxpyGpu, MatchesCpuOnRandomInputs) {
  SPUSH_REQUIRE_GPU();
  for (int64_t n : {1, 255, 256, 257, 100003, 1 << 22}) {
    std::mt19937 rng(static_cast<unsigned>(n));
    std::normal_distribution<float> dist;
    std::vector<float> x(n), y(n);
    for (auto& v : x) v = dist(rng);
    for (auto& v : y) v = dist(rng);
    test::DeviceBuffer<float> dx(x), dy(y);
    axpy_cuda(n, 0.75f, dx.get(), dy.get(), nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> ref = y;
    axpy_cpu(n, 0.75f, x.data(), ref.data());
    const auto got = dy.download();
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(got[i], ref[i], 1e-6f * (1 + std::abs(ref[i]))) << "n=" << n << " i=" << i;
  }
}

}  // namespace
}  // namespace spush::kernels
