// Device discovery for builds without CUDA: no devices.
#include "spush/kernels/device.h"

#ifndef SPUSH_HAVE_CUDA
namespace spush::kernels {
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
}  // namespace spush::kernels
#endif
