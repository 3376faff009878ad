// Device discovery: any error from the runtime counts as "no GPU".
#include <cuda_runtime.h>

#include "spush/kernels/device.h"

namespace spush::kernels {

bool cuda_compiled() { return true; }

int cuda_device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky error so later queries start clean
      return 0;
    }
    return n;
  }();
  return count;
}

}  // namespace spush::kernels
