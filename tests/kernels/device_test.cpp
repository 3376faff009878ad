// Device discovery never throws and agrees with the build configuration.
#include "spush/kernels/device.h"

#include <gtest/gtest.h>

#include <vector>

#include "spush/kernels/axpy.h"

namespace spush::kernels {
namespace {

TEST(Device, QueryNeverThrows) {
  int n = -1;
  EXPECT_NO_THROW(n = cuda_device_count());
  EXPECT_GE(n, 0);
  if (!cuda_compiled()) {
    EXPECT_EQ(n, 0);
  }
  EXPECT_EQ(cuda_available(), n > 0);
}

TEST(Axpy, Cpu) {
  std::vector<float> x{1, 2, 3}, y{1, 1, 1};
  axpy_cpu(3, 2.0f, x.data(), y.data());
  EXPECT_EQ(y, (std::vector<float>{3, 5, 7}));
}

}  // namespace
}  // namespace spush::kernels
