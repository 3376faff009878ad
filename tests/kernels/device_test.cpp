// Device discovery never throws and agrees with the build configuration.
#include "spush/kernels/device.h"

#include <gtest/gtest.h>


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

}  // namespace
}  // namespace spush::kernels
